"""Tests for src/synth/snippets.py and `python -m src.synth.snippets`: the Kaggle layout it writes, labels and
metadata, reproducibility across workers, what a snippet shows (a needle in the ON windows only, interference in
all six), the command's errors, and the candidate geometry against the scan's own hit search."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from src.core.cadence import DF_HZ, DT_S, OFF_OBSERVATIONS, ON_OBSERVATIONS
from src.core.cli import run_cli
from src.data import kaggle
from src.data.clean import clean_block
from src.data.snippets import boxcar_width
from src.search.hits import dedoppler_profile, find_hits
from src.synth import filterbank as fb
from src.synth import snippets as sn

REPO = Path(__file__).resolve().parents[1]
ROWS, CHANNELS = 16, 256
CENTRE = slice(CHANNELS // 2 - 12, CHANNELS // 2 + 12)
EDGES = np.r_[0:64, CHANNELS - 64 : CHANNELS]


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Small blocks: one torch thread is faster here (conftest's fixture restores the setting afterwards)."""


def settings(out: Path, **overrides) -> sn.Settings:
    values = {"n_train": 6, "n_test": 4, "seed": 3, "workers": 1}
    values.update(overrides)
    return sn.Settings(out=out, **values)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def load(out: Path, split: str, sample_id: str) -> np.ndarray:
    """A snippet through the reader training uses, which checks its shape, dtype and values."""
    snippet = kaggle.load_cadence(kaggle.cadence_path(out, split, sample_id), shape=(ROWS, CHANNELS))
    assert snippet.dtype == np.float16
    return snippet


def snippets_of(out: Path, meta: pd.DataFrame) -> list[np.ndarray]:
    return [load(out, row.split, row.id).astype(np.float32) for row in meta.itertuples()]


# ------------------------------------------------------------------ layout ---


def test_writes_the_kaggle_layout_with_labels_matching_the_metadata(tmp_path):
    s = settings(tmp_path / "set")
    meta = sn.generate(s, progress=False)
    train = kaggle.read_train_labels(s.out)
    test = kaggle.read_test_labels(s.out)
    assert len(train) == 6 and len(test) == 4
    assert kaggle.read_sample_submission(s.out)["id"].tolist() == test["id"].tolist()
    table = pd.read_csv(s.out / sn.METADATA, dtype={"id": str})
    assert table.columns.tolist() == sn.METADATA_COLUMNS
    assert len(table) == 10 and table["id"].is_unique
    for split, labels in (("train", train), ("test", test)):
        part = table[table.split == split]
        assert part["id"].tolist() == labels["id"].tolist()
        assert part["target"].tolist() == labels["target"].tolist()
        kaggle.require_cadence_files(s.out, split, labels["id"].tolist(), split)
    assert train["target"].sum() == 3 and test["target"].sum() == 2  # exactly --pos-frac of each split
    assert set(table.kind[table.target == 1]) == {"needle"}
    assert set(table.kind[table.target == 0]) <= set(sn.NEGATIVE_KINDS)
    assert (table.boxcar == boxcar_width(table.drift_channels / (ROWS - 1))).all()
    for snippet in snippets_of(s.out, table):
        assert abs(float(np.median(snippet))) < 0.2  # cleaned: unit noise around 0
    assert meta["id"].tolist() == table["id"].tolist()


def test_other_shapes_and_every_kind(tmp_path):
    s = settings(tmp_path / "set", n_train=40, n_test=0, rows=8, channels=64, pos_frac=0.25, max_drift=0.1, seed=11)
    meta = sn.generate(s, progress=False)
    for row in meta.itertuples():
        snippet = np.load(kaggle.cadence_path(s.out, row.split, row.id))
        assert snippet.shape == (6, 8, 64) and snippet.dtype == np.float16 and np.isfinite(snippet).all()
    assert set(meta.kind) == {"needle", *sn.NEGATIVE_KINDS}
    needles = meta[meta.kind == "needle"]
    assert (needles.n_on_present == 3).all() and (needles.n_off_present == 0).all()
    assert (meta[meta.kind == "off_only"].n_on_present == 0).all()
    assert (meta[meta.kind == "rfi"].n_on_present == 3).all()
    assert (meta.boxcar == 1).all()  # drifts of at most 0.1 Hz/s: under a channel per row
    assert meta.real_background.any()  # blocks of 64 + 64 channels and 8 rows fit the real file


def test_real_background_is_as_common_in_both_classes_and_drifts_slowly():
    s = settings(Path("unused"))
    drawn = [(t, sn.draw_sample(s, np.random.default_rng([1, i]), t)) for i in range(400) for t in (0, 1)]
    for target in (0, 1):
        share = np.mean([bool(sample.real_background) for t, sample in drawn if t == target])
        assert 0.05 < share < 0.16, (target, share)
    real = [sample for _, sample in drawn if sample.real_background]
    assert all(sample.width == 1 for sample in real)
    assert all(abs(sample.candidate.rate) <= sn.REAL_BACKGROUND_DRIFT for sample in real)


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    sn.generate(settings(tmp_path / "a", workers=1), progress=False)
    sn.generate(settings(tmp_path / "b", workers=2), progress=False)
    sn.generate(settings(tmp_path / "c", seed=4), progress=False)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == 10 + 4 and a == b
    assert a != c


# ---------------------------------------------------------------- pictures ---


def contrast(snippet: np.ndarray) -> np.ndarray:
    """Each observation's mean over the centre columns less its mean over the edge columns. A cleaned block has
    zero median, not zero mean (chi-squared noise is skewed a little), and a pixel of b channels sums b such
    offsets, so levels are compared with the window's own edges."""
    return snippet[:, :, CENTRE].mean(axis=(1, 2)) - snippet[:, :, EDGES].mean(axis=(1, 2))


def test_a_bright_needle_is_in_the_on_windows_and_not_the_off_ones(tmp_path):
    """Straight needles (linear, pulsed): a curved one's windows are cut along the reference observation's drift,
    as the scan cuts them, and may show it off centre in the other ON observations."""
    s = settings(tmp_path / "set", n_train=24, n_test=0, pos_frac=1.0, snr_min=1000.0, snr_max=1200.0, seed=5)
    meta = sn.generate(s, progress=False)
    clean = meta[~meta.rfi_with_needle & ~meta.real_background & meta["shape"].isin(["linear", "pulsed"])]
    assert len(clean) >= 2
    for snippet, row in zip(snippets_of(s.out, clean), clean.itertuples(), strict=True):
        edges = snippet[:, :, EDGES].mean(axis=(1, 2))
        assert np.ptp(edges) < 0.3, (row.shape, edges)  # noise alike in all six
        level = contrast(snippet)  # noise: ~0.06 standard deviation
        assert (level[list(ON_OBSERVATIONS)] > 1.0).all(), (row.shape, level)
        assert (np.abs(level[list(OFF_OBSERVATIONS)]) < 0.3).all(), (row.shape, level)


def test_interference_negatives_show_the_signal_in_all_six(tmp_path):
    s = settings(tmp_path / "set", n_train=40, n_test=0, pos_frac=0.0, snr_min=1000.0, snr_max=1200.0, seed=6)
    meta = sn.generate(s, progress=False)
    full = (meta.n_off_present == 3) & (meta.faded.fillna("") == "")  # neither absent nor faint in an OFF one
    steady = meta[(meta.kind == "rfi") & full & meta["shape"].isin(["constant", "linear"])]
    assert len(steady) >= 2
    for snippet, row in zip(snippets_of(s.out, steady), steady.itertuples(), strict=True):
        assert (contrast(snippet) > 1.0).all(), (row.shape, row.boxcar, contrast(snippet))
    quiet = meta[meta.kind.isin(["noise", "burst"]) & (meta.rfi_shape.fillna("") == "")]  # no line elsewhere
    assert len(quiet) >= 2
    for snippet, row in zip(snippets_of(s.out, quiet), quiet.itertuples(), strict=True):
        assert (np.abs(contrast(snippet)) < 0.3).all(), (row.kind, contrast(snippet))


def test_interference_crossing_a_noise_track_shows_in_all_six_windows(tmp_path):
    """`rfi_crossing`: a bright line crossing the candidate's track in an ON observation, as the scan's false events
    next to bright interference are. A steady (zero-drift) one shows in the windows however they move (all but
    at most one: a window that follows a drifting track across the cadence can leave the line at its far end)."""
    s = settings(tmp_path / "set", n_train=120, n_test=0, pos_frac=0.0, seed=8)
    meta = sn.generate(s, progress=False)
    crossing = meta[(meta.kind == "rfi_crossing") & (meta.faded.fillna("") == "")]
    steady = crossing[crossing.rfi_shape == "constant"]
    assert len(crossing) >= 10 and len(steady) >= 2 and (crossing.rfi_snr >= sn.CROSSING_SNR[0]).all()
    for snippet, row in zip(snippets_of(s.out, steady), steady.itertuples(), strict=True):
        strongest = snippet.mean(axis=1).max(axis=1)  # each observation's brightest column, averaged over rows
        assert (strongest > 2.0).sum() >= 5, (row.rfi_snr, row.boxcar, strongest)


def line_snr(snippet: np.ndarray, row, s: sn.Settings) -> np.ndarray:
    """Each observation's snippet summed along the candidate's line (its pixel in every row), less the edges'
    level, in noise sigmas (a cleaned pixel has unit noise)."""
    rows = np.arange(s.rows)
    centres = (s.channels * row.boxcar / 2 + row.drift_channels * (rows / (s.rows - 1) - 0.5)) / row.boxcar
    pixels = np.clip(np.floor(centres).astype(int), 0, s.channels - 1)
    along = snippet[:, rows, pixels].mean(axis=1) - snippet[:, :, EDGES].mean(axis=(1, 2))
    return along * np.sqrt(s.rows)


def test_a_chance_hit_shows_along_the_track_in_its_on_observations_only(tmp_path):
    """`noise_hit`: pure noise brought to a hit's SNR along the candidate's line in one ON observation (and to a
    holding SNR in some other ON ones), nothing added in the OFF ones; the snippet shows that line."""
    s = settings(tmp_path / "set", n_train=160, n_test=0, pos_frac=0.0, seed=9)
    meta = sn.generate(s, progress=False)
    hits = meta[(meta.kind == "noise_hit") & (meta.rfi_shape.fillna("") == "")]
    assert len(hits) >= 12
    assert (meta[~meta.kind.isin(["noise_hit", "needle_aside"])].chance.fillna("") == "").all()
    on, off, chosen = [], [], []
    for snippet, row in zip(snippets_of(s.out, hits), hits.itertuples(), strict=True):
        levels = dict(pair.split(":") for pair in row.chance.split())
        levels = {int(k): float(v) for k, v in levels.items()}
        assert set(levels) <= set(ON_OBSERVATIONS) and max(levels.values()) == pytest.approx(row.snr, abs=0.01)
        assert sn.CHANCE_HIT_SNR[0] <= row.snr <= sn.CHANCE_HIT_SNR[1] and row.n_on_present == 0
        hit = max(levels, key=levels.get)
        assert all(sn.CHANCE_HOLD_SNR[0] - 0.01 <= v <= sn.CHANCE_HOLD_SNR[1] for k, v in levels.items() if k != hit)
        snr = line_snr(snippet, row, s)
        on.append(snr[hit])
        chosen.append(row.snr)
        off.extend(snr[list(OFF_OBSERVATIONS)])
    assert np.mean(on) > 0.5 * np.mean(chosen), (np.mean(on), np.mean(chosen))
    assert abs(np.mean(off)) < 0.5 and np.std(off) < 1.5, (np.mean(off), np.std(off))


@pytest.mark.parametrize("seed", range(6))
def test_a_needle_aside_is_in_view_and_never_on_the_track(seed):
    """`needle_aside`: the needle crosses the window of an ON observation holding it, and in every ON observation
    holding it stays at least ASIDE_PIXELS off the candidate's track, on one side of it."""
    s = settings(Path("unused"))
    rng = np.random.default_rng(seed)
    observations = sn.cadence_clock(rng, s.rows)
    track = sn.noise_track(rng, s)
    starts, drift, width = sn.estimate_track(rng, s, track, sn.present(()), observations)
    needle, levels = sn.needle_aside(rng, s, starts, drift, width, observations)
    assert needle.kind == "needle" and all(levels[k] == 0 for k in OFF_OBSERVATIONS)
    holding = [k for k in ON_OBSERVATIONS if levels[k] > 0]
    gaps = [sn.track_gap_pixels(needle, starts, drift, width, s.rows, observations, k) for k in holding]
    for gap in gaps:
        assert np.abs(gap).min() >= sn.ASIDE_PIXELS and (gap.min() > 0 or gap.max() < 0)
    assert min(np.abs(gap).min() for gap in gaps) <= s.channels / 2  # in the window somewhere


@pytest.mark.parametrize("channels", [16, 8])
def test_a_needle_aside_fits_a_narrow_window(channels):
    """A window narrower than 4 x ASIDE_PIXELS keeps the needle a quarter of its width off the track (before, no
    placement was drawn at all: numpy refused a distance range from 16 pixels to half a window of under 32)."""
    s = dataclasses.replace(settings(Path("unused")), channels=channels)
    rng = np.random.default_rng(3)
    observations = sn.cadence_clock(rng, s.rows)
    starts, drift, width = sn.estimate_track(rng, s, sn.noise_track(rng, s), sn.present(()), observations)
    needle, levels = sn.needle_aside(rng, s, starts, drift, width, observations)
    holding = [k for k in ON_OBSERVATIONS if levels[k] > 0]
    gaps = [sn.track_gap_pixels(needle, starts, drift, width, s.rows, observations, k) for k in holding]
    assert min(np.abs(gap).min() for gap in gaps) >= channels // 4


def test_a_needle_aside_shows_off_the_centre_of_a_chance_hit(tmp_path):
    """The snippet of a `needle_aside` negative: the needle's power in the ON windows away from their centre,
    the chance hit's line at the centre; nothing of the needle in the OFF windows."""
    s = settings(tmp_path / "set", n_train=120, n_test=0, pos_frac=0.0, seed=4)
    meta = sn.generate(s, progress=False)
    aside = meta[meta.kind == "needle_aside"]
    assert len(aside) >= 4 and (aside.n_on_present == 0).all() and (aside.chance.str.len() > 0).all()
    on_wins, off_centre = [], []
    for snippet, row in zip(snippets_of(s.out, aside), aside.itertuples(), strict=True):
        assert sn.CHANCE_HIT_SNR[0] <= row.snr <= sn.CHANCE_HIT_SNR[1]
        columns = snippet.mean(axis=1)  # (6, channels): a needle's power gathers in a few columns
        on_peak = columns[list(ON_OBSERVATIONS)].max(axis=0)
        off_peak = columns[list(OFF_OBSERVATIONS)].max(axis=0)
        on_wins.append(on_peak.max() > off_peak.max() + 0.3)
        if on_wins[-1]:  # a needle bright enough to show: its brightest column is off the centre
            off_centre.append(abs(int(on_peak.argmax()) - s.channels // 2) >= sn.ASIDE_PIXELS - 2)
    # needles of SNR 5-50 (log-uniform), often steep and binned: the faint ones do not stand out in a column mean
    assert len(off_centre) >= 2, on_wins
    assert all(off_centre), off_centre


@pytest.mark.parametrize(("rate", "seed"), [(0.0, 0), (0.4, 1), (2.0, 2), (6.0, 3), (20.0, 4)])
def test_a_chance_line_is_a_hit_of_about_its_snr(rate, seed):
    """bring_track_to in a whole block of noise: the scan's hit search finds a hit on the line, at no more than
    the SNR asked for (the noise is conditioned, not given a signal) and not far under it (the search's lines
    are staircases, a little off a straight one)."""
    rng = np.random.default_rng(seed)
    noise = fb.real_noise(rng, ROWS)
    block = noise.draw(rng, (ROWS, 4096))
    width, start, target = int(boxcar_width(rate)), 2000.3, 7.0
    sn.bring_track_to(block, start, rate * (ROWS - 1), width, target, noise)
    cleaned, _ = clean_block(torch.from_numpy(block), None, sn.SCAN_BANDPASS_BIN)
    profile = dedoppler_profile(cleaned, 4.0 * DT_S / DF_HZ)
    near = [int(h) for h in find_hits(profile, 4.0) if abs(int(h) - start) <= width + 2]
    assert near, "no hit on the line"
    best = max(profile.snr[h] for h in near)
    assert 0.7 * target <= best <= target + 0.5, best


# -------------------------------------------------------- candidate geometry ---


@pytest.mark.parametrize(("rate", "seed"), [(0.5, 0), (-0.7, 1), (3.0, 2), (-6.0, 3), (12.5, 4)])
def test_the_track_and_boxcar_are_the_hit_searchs(rate, seed):
    """A bright straight needle rendered into a whole block and found by the scan's hit search: the hit's boxcar
    is boxcar_width of the true rate, and its start, middle and drift are off the truth by no more than the
    jitter the generator gives its candidates (with half a channel of slack for the noise)."""
    rng = np.random.default_rng(seed)
    obs = fb.Observation(0, True, "", 0.0, 0.0, 0.0, 0.0)
    noise = fb.real_noise(rng, ROWS)
    block_channels, true_start = 2048, 1000.0 + rng.uniform(0.0, 1.0)
    rate_hz_s = -rate * DF_HZ / DT_S  # channels rise as frequency falls
    f0 = sn.VIRTUAL_TOP_HZ - true_start * DF_HZ - rate_hz_s * DT_S / 2  # at the first row's centre: true_start
    needle = fb.Signal(0, "needle", "linear", 0, (0,), 200.0 * np.sqrt(max(1.0, abs(rate))), rate_hz_s, f0, 2 * DF_HZ)
    start, drift = sn.true_track(needle, obs, ROWS)
    assert start == pytest.approx(true_start) and drift == pytest.approx(rate * (ROWS - 1))
    block = noise.draw(rng, (ROWS, block_channels))
    sn.render(block, 0, needle, 1.0, obs, noise)
    cleaned, _ = clean_block(torch.from_numpy(block), None, sn.SCAN_BANDPASS_BIN)
    profile = dedoppler_profile(cleaned, 4.0 * DT_S / DF_HZ)
    hits = find_hits(profile, sn.HIT_SNR)
    assert len(hits) == 1
    hit = int(hits[0])
    width = int(boxcar_width(rate))
    assert profile.width[hit] == width
    mid_bound, drift_bound = sn.jitter_bounds(width)
    start_error, drift_error = hit - start, float(profile.drift[hit]) - drift
    assert abs(drift_error) <= drift_bound + 0.5
    assert abs(start_error + drift_error / 2) <= mid_bound + 0.5
    assert abs(start_error) <= mid_bound + drift_bound / 2 + 0.5
    if width <= 4:
        assert abs(start_error) <= 2.0


def test_estimated_tracks_follow_the_reference_or_own_hits():
    """A faint needle's track is its reference ON observation's hit carried along the clock; a bright one's ON
    starts are each observation's own hit; every hit is within the jitter bounds of the truth."""
    s = settings(Path("unused"))
    rng = np.random.default_rng(0)
    observations = sn.cadence_clock(rng, ROWS)
    starts_s = np.array([o.start_s for o in observations])
    for trial in range(40):
        needle = fb.draw_needle(rng, s.signal_settings(), list(starts_s), sn.VIRTUAL_TOP_HZ, 0, 0)
        bright = trial % 2 == 1
        needle = fb.dataclasses.replace(needle, shape="linear", snr=1e4 if bright else 1.0)
        starts, drift, width = sn.estimate_track(rng, s, needle, sn.present(ON_OBSERVATIONS), observations)
        assert width == boxcar_width(drift / (ROWS - 1))
        truth = [sn.true_track(needle, o, ROWS) for o in observations]
        mid_bound, drift_bound = sn.jitter_bounds(int(boxcar_width(truth[0][1] / (ROWS - 1))))
        assert abs(drift - truth[0][1]) <= drift_bound + 1e-9
        close = [abs(starts[k] - truth[k][0]) <= mid_bound + drift_bound / 2 + 1e-9 for k in ON_OBSERVATIONS]
        rate = drift / ((ROWS - 1) * DT_S)
        along = [np.allclose(starts - starts[k], rate * (starts_s - starts_s[k])) for k in ON_OBSERVATIONS]
        if bright:
            assert all(close)
        else:
            assert any(c and a for c, a in zip(close, along, strict=True))


# ----------------------------------------------------------------- command ---


def run_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src.synth.snippets", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_refuses_a_non_empty_out_without_overwrite(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_command("--out", str(out), "--n-train", "2", "--n-test", "0", "--workers", "1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "--overwrite" in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_overwrite_replaces_an_earlier_set(tmp_path):
    s = settings(tmp_path / "set")
    sn.generate(s, progress=False)
    before = _files(s.out)
    with pytest.raises(FileExistsError, match="not empty"):
        sn.generate(settings(s.out, seed=9), progress=False)
    assert _files(s.out) == before
    sn.generate(settings(s.out, seed=9, n_train=2, overwrite=True), progress=False)
    after = _files(s.out)
    assert len(after) == 2 + 4 + 4 and not set(after) & {k for k in before if k.endswith(".npy")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pos-frac", "1.5"], "--pos-frac must lie in [0, 1]"),
        (["--n-train", "-1"], "--n-train must be at least 0"),
        (["--snr-min", "60"], "need 0 < --snr-min <= --snr-max"),
        (["--max-drift", "nan"], "--max-drift must be a rate in [0, 20] Hz/s"),
        (["--channels", "4"], "--channels must be at least 8"),
        (["--rows", "many"], "argument --rows: invalid int value"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_flags_give_one_error_line(tmp_path, capsys, args, message):
    """In this process, through run_cli as `python -m src.synth.snippets` runs it (the import is the slow part)."""
    with pytest.raises(SystemExit) as stop:
        run_cli(lambda: sn.main(["--out", str(tmp_path / "set"), *args]))
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "set").exists()


def test_command_end_to_end(tmp_path):
    out = tmp_path / "set"
    result = run_command("--out", str(out), "--n-train", "4", "--n-test", "2", "--workers", "2", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert "wrote 6 snippets (3 needles) of shape (6, 16, 256)" in result.stderr
    assert "samples/s" in result.stderr
    assert len(kaggle.read_train_labels(out)) == 4


def test_some_needles_have_interference_across_their_own_path():
    """About POSITIVE_RFI_SHARE x PATH_CROSSING_SHARE of the needles have a line meeting their path in an ON
    observation that holds them; the metadata flag says which, and the line really is that close there."""
    s = settings(Path("unused"))
    drawn = [sn.draw_sample(s, np.random.default_rng([2, i]), 1) for i in range(600)]
    flags = [sn.metadata(sample, 1, s.rows)["rfi_across_path"] for sample in drawn]
    expected = sn.POSITIVE_RFI_SHARE * sn.PATH_CROSSING_SHARE
    assert expected - 0.05 < np.mean(flags) < expected + 0.08, np.mean(flags)
    for sample, flag in zip(drawn, flags, strict=True):
        lines = [line for line, _ in sample.extra if line.kind == "rfi"]
        starts_s = [o.start_s for o in sample.observations]
        holding = [k for k in ON_OBSERVATIONS if sample.levels[k] > 0]
        times = fb.observation_times(starts_s, holding, s.rows)
        gaps = [np.abs(line.path()(times) - sample.candidate.path()(times)).min() / DF_HZ for line in lines]
        if flag:
            assert lines and min(gaps) < 2 * sn.PATH_CROSSING_CHANNELS  # sampled path: a crossing between samples
        elif lines:
            assert min(gaps) > sn.PATH_CROSSING_CHANNELS * 0.99
    negatives = [sn.metadata(sn.draw_sample(s, np.random.default_rng([4, i]), 0), 0, s.rows) for i in range(100)]
    assert not any(m["rfi_across_path"] for m in negatives)


def test_some_interference_negatives_have_a_needle_across_their_line():
    """About NEEDLE_ACROSS_RFI_SHARE of the `rfi` negatives hold a needle, in the ON observations only, that meets
    the candidate line there; no other kind of negative does, and they stay negatives."""
    s = settings(Path("unused"))
    drawn = [sn.draw_sample(s, np.random.default_rng([5, i]), 0) for i in range(800)]
    rfi = [sample for sample in drawn if sample.kind == "rfi"]
    across = [sample for sample in rfi if sn.metadata(sample, 0, s.rows)["needle_across"]]
    assert abs(len(across) / len(rfi) - sn.NEEDLE_ACROSS_RFI_SHARE) < 0.08, (len(across), len(rfi))
    assert not any(sn.metadata(x, 0, s.rows)["needle_across"] for x in drawn if x.kind != "rfi")
    for sample in across:
        (needle, levels), *_ = [(line, levels) for line, levels in sample.extra if line.kind == "needle"]
        assert [k for k, level in enumerate(levels) if level > 0] == list(ON_OBSERVATIONS)
        assert sn.across_path(sample.candidate, needle, levels, s.rows, sample.observations)
