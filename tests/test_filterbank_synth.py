"""Tests for src/synth/filterbank.py and `python -m src.synth.filterbank`: headers, reproducibility, where the
signals are (needles in ON only, RFI in all six, --shapes, RFI near needles), the bandpass and DC spike, the tables
and the command's errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.core.cadence import DF_HZ, DT_S, OFF_OBSERVATIONS, ON_OBSERVATIONS
from src.data.filterbank import read_block, read_header
from src.synth import filterbank as fb

REPO = Path(__file__).resolve().parents[1]
FINE, COARSE, ROWS = 4096, 2, 16
QUIET = {"n_cadences": 2, "needles": 3, "rfi": 0, "snr_min": 100.0, "snr_max": 150.0, "max_drift": 1.0, "seed": 5}
BUSY = {"n_cadences": 2, "needles": 2, "rfi": 8, "snr_min": 100.0, "snr_max": 150.0, "max_drift": 1.0, "seed": 7}


def settings(out: Path, **overrides) -> fb.Settings:
    return fb.Settings(out=out, coarse_channels=COARSE, fine_channels=FINE, rows=ROWS, **overrides)


@pytest.fixture(scope="module")
def quiet(tmp_path_factory):
    """Needles only (bright, drifts up to 1 Hz/s): the OFF observations hold nothing but noise."""
    s = settings(tmp_path_factory.mktemp("quiet") / "set", **QUIET)
    fb.generate(s)
    return s


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """Needles and RFI of every kind."""
    s = settings(tmp_path_factory.mktemp("busy") / "set", **BUSY)
    fb.generate(s)
    return s


def cadence(s: fb.Settings, index: int):
    """The cadence's plan, headers and data (small enough to read whole)."""
    catalog = pd.read_csv(s.out / fb.CATALOG)
    headers = [read_header(s.out / p) for p in catalog[catalog.cadence == index].path]
    return fb.plan_cadence(s, index), headers, [read_block(h, 0, h.nchans) for h in headers]


def path_channels(plan: fb.CadencePlan, signal: fb.Signal, obs: fb.Observation) -> np.ndarray:
    """The file channels the signal's path runs through during one observation (its edges and each row's)."""
    times = obs.start_s + np.arange(ROWS + 1) * DT_S
    return (plan.fch1_mhz * 1e6 - signal.path()(times)) / DF_HZ


def pad(signal: fb.Signal) -> float:
    return 3 + 2 * signal.width_hz / DF_HZ


def isolated(plan: fb.CadencePlan, signal: fb.Signal, obs: fb.Observation) -> bool:
    """No other line in this observation comes near enough to spoil path_excess's window or its noise estimate."""
    ends = path_channels(plan, signal, obs)
    for other in plan.signals:
        if other is signal or other.kind == "rfi_broadband" or obs.index not in other.observations:
            continue
        near = path_channels(plan, other, obs)
        gap = max(near.min() - ends.max(), ends.min() - near.max())
        if gap < pad(signal) + pad(other) + 70:
            return False
    return True


def path_excess(data: np.ndarray, plan: fb.CadencePlan, signal: fb.Signal, obs: fb.Observation) -> float:
    """Excess power in the channels the signal's path crosses, row by row, in units of the noise of those pixels
    (level and noise from the 60 channels either side: near enough for the bandpass's ripple not to matter;
    DC spikes replaced by a neighbour)."""
    data = data.copy()
    centres = np.arange(COARSE) * FINE + FINE // 2
    data[:, centres] = data[:, centres - 1]
    ends, excess, count, noise = path_channels(plan, signal, obs), 0.0, 0, []
    for row in range(ROWS):
        lo = int(min(ends[row], ends[row + 1]) - pad(signal))
        hi = int(np.ceil(max(ends[row], ends[row + 1]) + pad(signal))) + 1
        around = np.r_[data[row, lo - 60 : lo], data[row, hi : hi + 60]]
        noise.append(around.std())
        excess += float((data[row, lo:hi] - around.mean()).sum())
        count += hi - lo
    return excess / (np.mean(noise) * np.sqrt(count))


# ----------------------------------------------------------------- headers ---


@pytest.mark.parametrize("fmt", ["h5", "fil"])
def test_headers_read_back(tmp_path, fmt):
    s = settings(tmp_path / "set", n_cadences=1, needles=1, rfi=1, format=fmt)
    fb.generate(s)
    plan, headers, _ = cadence(s, 0)
    assert [h.path.suffix for h in headers] == [f".{fmt}"] * 6
    for h in headers:
        assert (h.nchans, h.n_rows, h.nifs, h.nbits, h.telescope_id) == (COARSE * FINE, ROWS, 1, 32, 6)
        assert h.fch1 == plan.fch1_mhz and h.foff == pytest.approx(-2.7939677238464355e-6, rel=1e-12)
        assert h.tsamp == pytest.approx(18.253611008)
        assert h.nfpc == (FINE if fmt == "h5" else None)  # a .fil header has no key for it
        assert 0 <= h.src_raj < 24 and -90 <= h.src_dej <= 90
    gaps = np.diff([h.tstart for h in headers]) * 86400 - ROWS * DT_S
    assert np.all((gaps >= 15) & (gaps <= 30))
    names = [h.source_name for h in headers]
    assert names[0] == names[2] == names[4] == "SYNTH_T000"
    assert len({names[i] for i in OFF_OBSERVATIONS} | {names[0]}) == 4
    assert {(h.src_raj, h.src_dej) for h in headers[::2]} == {(headers[0].src_raj, headers[0].src_dej)}
    assert [h.path.name for h in headers][:2] == ["obs0_ON_SYNTH_T000." + fmt, "obs1_OFF_SYNTH_R000B." + fmt]


# ---------------------------------------------------------- reproducibility ---


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_new_flags_at_their_defaults_change_nothing(tmp_path):
    """--shapes with all four (in any order) and --rfi-near-needles 0 give the set made without them, byte for
    byte, with today's truth columns."""
    base = ["--n-cadences", "1", "--fine-channels", str(FINE), "--needles", "3", "--rfi", "3", "--workers", "1"]
    base += ["--seed", "4", "--max-drift", "1"]
    fb.main(["--out", str(tmp_path / "a"), *base])
    explicit = ["--shapes", "linear,sine,quadratic,pulsed", "--rfi-near-needles", "0"]
    fb.main(["--out", str(tmp_path / "b"), *base, *explicit])
    fb.main(["--out", str(tmp_path / "c"), *base, "--shapes", "pulsed,quadratic, sine,linear"])
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == 8 and a == b == c
    assert list(pd.read_csv(tmp_path / "a" / fb.TRUTH).columns) == fb.TRUTH_COLUMNS


def test_new_flags_are_deterministic_whatever_the_workers(tmp_path):
    kwargs = {"n_cadences": 1, "needles": 2, "rfi": 1, "shapes": "linear,quadratic", "rfi_near_needles": 0.5}
    fb.generate(settings(tmp_path / "a", workers=1, **kwargs))
    fb.generate(settings(tmp_path / "b", workers=2, **kwargs))
    fb.generate(settings(tmp_path / "c", workers=1, n_cadences=1, needles=2, rfi=1))
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == 8 and a == b and a != c
    truth = pd.read_csv(tmp_path / "a" / fb.TRUTH)
    assert truth.rfi_near.sum() == 2  # half of 2 coarse channels x 2 needles


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    kwargs = {"n_cadences": 1, "needles": 2, "rfi": 3}
    fb.generate(settings(tmp_path / "a", workers=1, **kwargs))
    fb.generate(settings(tmp_path / "b", workers=2, **kwargs))
    fb.generate(settings(tmp_path / "c", seed=1, **kwargs))
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == 8 and a == b
    assert a.keys() == c.keys() and a["cadence_000/obs0_ON_SYNTH_T000.h5"] != c["cadence_000/obs0_ON_SYNTH_T000.h5"]


# ----------------------------------------------------------------- signals ---


def test_needles_are_in_the_on_observations_only(quiet):
    truth = pd.read_csv(quiet.out / fb.TRUTH)
    assert len(truth) == 2 * COARSE * 3 and set(truth.kind) == {"needle"}
    checked = 0
    for index in range(2):
        plan, _, data = cadence(quiet, index)
        for signal in plan.signals:
            for obs in plan.observations:
                z = path_excess(data[obs.index], plan, signal, obs)
                if obs.on and isolated(plan, signal, obs):
                    assert z > 20, (signal, obs.index, z)
                    checked += 1
                if not obs.on:
                    assert abs(z) < 5, (signal, obs.index, z)
    assert checked > 20


def test_truth_follows_the_path_across_the_cadence_clock(busy):
    """A needle's frequency at each ON start is its path at that time, the OFF observations and slews included."""
    truth = pd.read_csv(busy.out / fb.TRUTH)
    plan, headers, _ = cadence(busy, 0)
    starts = (np.array([h.tstart for h in headers]) - headers[0].tstart) * 86400
    assert starts == pytest.approx([o.start_s for o in plan.observations], abs=1e-4)
    for signal, row in zip(plan.signals, truth[truth.cadence == 0].itertuples(), strict=True):
        for i in signal.observations:
            f_hz = getattr(row, f"f_mhz_obs{i}") * 1e6
            if signal.kind != "rfi_broadband":
                assert f_hz == pytest.approx(signal.path()(starts[i]), abs=1e-3)
                if signal.shape in ("linear", "pulsed", "constant"):
                    assert f_hz - row.f_mhz_obs0 * 1e6 == pytest.approx(row.drift_hz_s * starts[i], abs=1e-3)
            assert getattr(row, f"chan_obs{i}") == round((headers[i].fch1 * 1e6 - f_hz) / DF_HZ)
            lo = row.coarse_channel * FINE
            assert lo + 0.05 * FINE <= getattr(row, f"chan_obs{i}") < lo + 0.95 * FINE


def test_rfi_is_in_all_six_observations(busy):
    truth = pd.read_csv(busy.out / fb.TRUTH)
    assert set(truth.kind) == {"needle", "rfi_zero_drift", "rfi_drift", "rfi_broadband"}
    lines = truth[truth.kind.isin(["rfi_zero_drift", "rfi_drift"])]
    assert lines[[f"f_mhz_obs{i}" for i in range(6)]].notna().all().all()
    assert (truth[truth.kind == "rfi_zero_drift"].drift_hz_s == 0).all()
    assert (truth[truth.kind == "rfi_drift"].drift_hz_s != 0).all()
    checked = 0
    for index in range(2):
        plan, _, data = cadence(busy, index)
        for signal in plan.signals:
            if signal.kind in ("rfi_zero_drift", "rfi_drift") and signal.snr > 20:
                for obs in plan.observations:
                    if isolated(plan, signal, obs):
                        assert path_excess(data[obs.index], plan, signal, obs) > 5, (signal, obs.index)
                        checked += 1
    assert checked > 20


def test_broadband_bursts_raise_whole_rows(busy):
    plan, _, data = cadence(busy, 0)
    bursts = [s for s in plan.signals if s.kind == "rfi_broadband"]
    assert bursts
    for signal in bursts:
        lo, hi = signal.coarse_channel * FINE, (signal.coarse_channel + 1) * FINE
        for obs, row in signal.burst_rows:
            level = np.median(data[obs][:, lo:hi], axis=1)
            same = [other for other in bursts if other.coarse_channel == signal.coarse_channel]
            raised = [r for other in same for o, r in other.burst_rows if o == obs]
            assert level[row] > np.max(np.delete(level, raised)) * 1.1


def test_doppler_smearing_keeps_each_rows_power():
    """A fast drift spreads a row's power over the channels it crosses; the row's total stays the same."""
    noise = fb.Noise(mean=1.0, std=0.1, chi2_df=204)
    obs = fb.Observation(0, True, "T", 0.0, 60000.0, 1.0, 2.0)
    top = 8e9
    sums, peaks = [], []
    for rate in (0.0, 4.0):
        block = np.zeros((ROWS, FINE), np.float32)
        signal = fb.Signal(
            0, "needle", "linear", 0, (0,), 40.0, rate=rate, f0_hz=top - 1000 * DF_HZ, width_hz=1.5 * DF_HZ
        )
        fb.add_line(block, signal, obs, noise, top)
        sums.append(block.sum(axis=1))
        peaks.append(block.max())
    assert sums[1] == pytest.approx(sums[0], rel=0.02)
    assert peaks[1] < peaks[0] / 10


def test_snr_is_setigens():
    stg = fb.import_setigen()
    frame = stg.Frame(fchans=16, tchans=ROWS, df=DF_HZ, dt=DT_S, t_start=0.0, seed=0)
    frame.add_noise_from_obs()
    noise = fb.real_noise(np.random.default_rng(0), ROWS)
    assert noise.chi2_df == frame.chi2_df == 4 * round(DF_HZ * DT_S)
    assert noise.intensity(25.0, ROWS) == pytest.approx(25.0 * noise.std / np.sqrt(ROWS))
    frame.noise_std = noise.std
    assert noise.intensity(25.0, ROWS) == pytest.approx(frame.get_intensity(25.0))


def test_needle_drifts_fill_the_bins_and_stay_inside_their_channel():
    """Planning only (no files): the default geometry, many needles."""
    s = fb.Settings(out=Path("unused"), n_cadences=1, needles=400, rfi=0)
    plan = fb.plan_cadence(s, 0)
    rates = np.abs([signal.rate for signal in plan.signals])
    shares = np.histogram(rates, [0, 0.05, 0.5, 1, 2, 4])[0] / len(rates)
    assert shares[0] > 0.05 and np.all(shares[1:] > 0.15)
    assert {signal.shape for signal in plan.signals} == set(fb.NEEDLE_SHAPES)
    starts = [o.start_s for o in plan.observations]
    times = fb.observation_times(starts, fb.ALL_OBSERVATIONS, s.rows)
    on_times = fb.observation_times(starts, ON_OBSERVATIONS, s.rows)
    for signal in plan.signals:
        path = signal.path()
        assert np.abs(np.gradient(path(times), times)).max() <= s.max_drift * 1.001
        channels = (plan.top_hz(signal.coarse_channel, s.fine_channels) - path(on_times)) / DF_HZ
        assert channels.min() >= 0.05 * s.fine_channels and channels.max() <= 0.95 * s.fine_channels


def test_shapes_restrict_the_needles(tmp_path):
    s = settings(tmp_path / "set", n_cadences=1, needles=6, rfi=1, shapes="sine,pulsed")
    assert s.shapes == ("sine", "pulsed")
    fb.generate(s)
    truth = pd.read_csv(s.out / fb.TRUTH)
    assert set(truth[truth.kind == "needle"]["shape"]) == {"sine", "pulsed"}
    plan = fb.plan_cadence(fb.Settings(out=Path("unused"), n_cadences=1, needles=50, rfi=0, shapes=["quadratic"]), 0)
    assert {signal.shape for signal in plan.signals} == {"quadratic"}


def test_rfi_near_needles_takes_its_share_and_leaves_the_other_draws():
    """Planning only: round(share x needles) needles per cadence get a line, drawn after everything else."""
    plain = fb.Settings(out=Path("unused"), coarse_channels=COARSE, fine_channels=FINE, needles=5, rfi=3)
    base = fb.plan_cadence(plain, 0).signals
    for share, count in ((0.25, 3), (0.5, 5), (1.0, 10)):
        signals = fb.plan_cadence(fb.dataclasses.replace(plain, rfi_near_needles=share), 0).signals
        assert len(signals) == len(base) + count
        assert [fb.dataclasses.replace(x, near=None) for x in signals[: len(base)]] == list(base)
        lines = signals[len(base) :]
        assert [x.signal_id for x in lines] == list(range(len(base), len(base) + count))
        assert [signals[line.near].near for line in lines] == [line.signal_id for line in lines]
        assert sorted(line.near for line in lines) == [line.near for line in lines]


def test_rfi_near_needles_meet_their_needle_in_an_on_observation(tmp_path):
    """--rfi-near-needles 1: every needle has an all-six line in its coarse channel which, from its truth
    (frequency at each observation's start and drift), comes within NEAR_RFI_CHANNELS of the needle's path
    during an ON observation; rfi_near marks the needles; the lines are in the files."""
    s = settings(tmp_path / "set", n_cadences=2, needles=3, rfi=2, rfi_near_needles=1.0, snr_min=30.0, seed=2)
    fb.generate(s)
    truth = pd.read_csv(s.out / fb.TRUTH)
    assert list(truth.columns) == [*fb.TRUTH_COLUMNS, "rfi_near"]
    assert truth.rfi_near.dtype == bool and truth.rfi_near.eq(truth.kind == "needle").all()
    assert len(truth) == 2 * COARSE * (3 + 2 + 3)
    checked = 0
    for index in range(2):
        plan, _, data = cadence(s, index)
        rows = truth[truth.cadence == index].set_index("signal_id")
        starts = np.array([o.start_s for o in plan.observations])
        for needle in plan.signals:
            if needle.kind != "needle":
                continue
            line = rows.loc[needle.near]
            assert line.kind in ("rfi_zero_drift", "rfi_drift") and line.coarse_channel == needle.coarse_channel
            assert 10 <= line.snr <= 500 and (line.drift_hz_s == 0) == (line.kind == "rfi_zero_drift")
            assert line[[f"f_mhz_obs{i}" for i in range(6)]].notna().all()
            gaps = []
            for i in ON_OBSERVATIONS:
                t = starts[i] + np.linspace(0.0, ROWS * DT_S, ROWS * 8 + 1)
                line_hz = line[f"f_mhz_obs{i}"] * 1e6 + line.drift_hz_s * (t - starts[i])
                gaps.append(np.abs(line_hz - needle.path()(t)).min() / DF_HZ)
            assert min(gaps) <= fb.NEAR_RFI_CHANNELS, (needle, gaps)
            signal = plan.signals[needle.near]
            for obs in plan.observations:
                if not obs.on and isolated(plan, signal, obs):  # the needle is absent from OFF observations
                    assert path_excess(data[obs.index], plan, signal, obs) > 5, (signal, obs.index)
                    checked += 1
    assert checked > 10


# ------------------------------------------------------- bandpass and noise ---


def test_bandpass_dc_spike_and_noise(quiet):
    """An OFF observation of the needles-only set: nothing but noise, bandpass and spike."""
    _, _, data = cadence(quiet, 0)
    for coarse in range(COARSE):
        block = data[1][:, coarse * FINE : (coarse + 1) * FINE]
        spectrum = np.median(block, axis=0)
        centre = FINE // 2
        assert spectrum[centre] > 3 * np.median(spectrum[centre - 50 : centre + 50])
        binned = np.median(block[:, : FINE // 64 * 64].reshape(ROWS, -1, 64), axis=(0, 2))
        middle = binned[len(binned) // 4 : 3 * len(binned) // 4]
        assert middle.max() / middle.min() < 1.1  # flat top, slight ripple
        assert binned[0] < 0.5 * middle.mean() and binned[-1] < 0.5 * middle.mean()  # rolls off at both edges
        flat = block[:, FINE // 4 : FINE // 4 + 256]
        assert flat.std() / flat.mean() == pytest.approx(np.sqrt(2 / 204), rel=0.15)  # chi-squared, 204 dof


# ------------------------------------------------------------------ tables ---


def test_truth_and_catalog_columns(busy):
    truth = pd.read_csv(busy.out / fb.TRUTH)
    catalog = pd.read_csv(busy.out / fb.CATALOG)
    assert list(truth.columns[:19]) == [
        "cadence",
        "signal_id",
        "kind",
        "shape",
        "snr",
        "drift_hz_s",
        "coarse_channel",
        *[f"f_mhz_obs{i}" for i in range(6)],
        *[f"chan_obs{i}" for i in range(6)],
    ]
    assert len(truth) == 2 * COARSE * (2 + 8)
    needles = truth[truth.kind == "needle"]
    assert needles[[f"f_mhz_obs{i}" for i in OFF_OBSERVATIONS]].isna().all().all()
    assert needles[[f"chan_obs{i}" for i in ON_OBSERVATIONS]].notna().all().all()
    assert needles.snr.between(100, 150).all() and truth.snr.between(10, 500).all()
    assert list(catalog.columns) == ["cadence", "path"]
    assert catalog.cadence.tolist() == [0] * 6 + [1] * 6
    assert [p.split("/")[1][:7] for p in catalog.path[:6]] == [
        "obs0_ON",
        "obs1_OF",
        "obs2_ON",
        "obs3_OF",
        "obs4_ON",
        "obs5_OF",
    ]
    assert all((busy.out / p).is_file() for p in catalog.path)


def test_truth_spans_bracket_the_start_and_follow_the_path(busy):
    """f_mhz_min/max_obs<k>: the lowest and highest frequency of the path during observation k, sampled as it is
    drawn; they bracket f_mhz_obs<k>, equal it for a zero-drift line, and are empty where the signal is absent and
    for broadband bursts."""
    truth = pd.read_csv(busy.out / fb.TRUTH)
    assert list(truth.columns) == fb.TRUTH_COLUMNS
    plan, checked = fb.plan_cadence(busy, 0), {"zero drift": 0, "straight": 0, "empty": 0}
    for signal, row in zip(plan.signals, truth[truth.cadence == 0].itertuples(), strict=True):
        for obs in plan.observations:
            start, low, high = (getattr(row, f"f_mhz{part}_obs{obs.index}") for part in ("", "_min", "_max"))
            if obs.index not in signal.observations or signal.kind == "rfi_broadband":
                assert np.isnan(low) and np.isnan(high)
                checked["empty"] += 1
                continue
            assert low <= start <= high
            dense = signal.path()(obs.start_s + np.linspace(0.0, ROWS * DT_S, 4001)) / 1e6
            assert low == pytest.approx(dense.min(), abs=0.5e-6) and high == pytest.approx(dense.max(), abs=0.5e-6)
            if signal.shape == "constant":
                assert low == start == high
                checked["zero drift"] += 1
            elif signal.shape in ("linear", "pulsed"):  # a straight path: from its start to its end
                assert high - low == pytest.approx(abs(signal.rate) * ROWS * DT_S * 1e-6, abs=1e-9)
                checked["straight"] += 1
    assert min(checked.values()) > 0, checked


def test_truth_keeps_its_earlier_columns_and_values():
    """The span columns come after the others and draw nothing: the earlier columns, values and CSV text are
    those of the table made before the spans existed (its digest), with and without --rfi-near-needles. Values
    to 12 significant digits: numpy's sine and exponential differ in the last bit between CPUs with and without
    AVX-512 (these digests are the same on both)."""
    import hashlib

    digests = {
        0.0: "8921a209b5e922106c7a8c4084dadf7a62411cddf4df8e302d3ed71ec07e03fa",
        0.5: "59bcb16ee5e7afb22b7b1133d832a04cf3d4c937ee9c40e160e89dbf63b0bceb",
    }
    for share, digest in digests.items():
        s = settings(Path("unused"), n_cadences=2, needles=3, rfi=4, seed=4, max_drift=1.0, rfi_near_needles=share)
        table = fb.truth_table(s, [fb.plan_cadence(s, k) for k in range(2)])
        earlier = [c for c in table.columns if not c.startswith(("f_mhz_min_", "f_mhz_max_"))]
        assert earlier == fb.TRUTH_COLUMNS[:21] + (["rfi_near"] if share else [])
        text = table[earlier].to_csv(index=False, float_format="%.12g")
        assert hashlib.sha256(text.encode()).hexdigest() == digest


# ----------------------------------------------------------------- command ---


def run_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src.synth.filterbank", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_refuses_to_overwrite_an_earlier_set(tmp_path):
    s = settings(tmp_path / "set", n_cadences=1, needles=1, rfi=1)
    fb.generate(s)
    before = _files(s.out)
    with pytest.raises(FileExistsError, match=r"catalog\.csv already exists"):
        fb.generate(settings(s.out, n_cadences=1, needles=1, rfi=1, seed=3))
    assert _files(s.out) == before
    fb.generate(settings(s.out, n_cadences=1, needles=1, rfi=1, seed=3, overwrite=True))
    assert _files(s.out) != before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "1"], "--rows must be at least 2"),
        (["--format", "npy"], "--format must be one of h5, fil"),
        (["--snr-min", "0"], "need 0 < --snr-min <= --snr-max"),
        (["--max-drift", "40"], "--max-drift 40.0 Hz/s moves a signal"),
        (["--needles", "many"], "argument --needles: invalid int value"),
        (["--shapes", "linear,spiral"], "--shapes takes a comma-separated list of linear, sine, quadratic, pulsed"),
        (["--rfi-near-needles", "1.5"], "--rfi-near-needles must be a share from 0 to 1, got 1.5"),
    ],
)
def test_bad_flags_give_one_error_line(tmp_path, args, message):
    result = run_command("--out", str(tmp_path / "set"), "--fine-channels", str(FINE), *args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "set").exists()


def test_command_end_to_end(tmp_path):
    out = tmp_path / "set"
    args = ["--out", str(out), "--n-cadences", "1", "--fine-channels", str(FINE), "--needles", "2", "--rfi", "2"]
    result = run_command(*args, "--format", "fil", "--seed", "9")
    assert result.returncode == 0, result.stderr
    assert "wrote 6 files (1 cadences), 4 needles and 4 RFI signals" in result.stderr
    catalog = pd.read_csv(out / fb.CATALOG)
    assert [read_header(out / p).nchans for p in catalog.path] == [COARSE * FINE] * 6
    again = run_command(*args)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--overwrite" in again.stderr
