"""Tests for src/synth/generator.py and python -m src.synth: layout, labels, reproducibility, signal placement."""

import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.core.cadence import DT_S, OFF_OBSERVATIONS, ON_OBSERVATIONS
from src.core.errors import ConfigError
from src.synth import generator as synth
from src.synth.__main__ import main as synth_main
from src.synth.generator import SynthConfig, make_cadence, write_dataset

N_TRAIN, N_TEST = 40, 12
CFG = SynthConfig(seed=3, pos_frac=0.5, snr_min=15.0, snr_max=30.0, rfi_frac=0.3, off_frac=0.3, pos_rfi_frac=0.3)
T_OBS = synth.TCHANS * DT_S


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """One small dataset written with 2 workers, shared by the layout tests."""
    out = tmp_path_factory.mktemp("synth") / "data"
    meta = write_dataset(out, CFG, N_TRAIN, N_TEST, workers=2, progress=False)
    return out, meta


def _files(root: Path) -> dict:
    """Relative path -> bytes of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _quiet(fn, *args, **kwargs):
    """Call fn with warnings silenced (setigen's imports are noisy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _signal(cfg, seed, target, **kw):
    """Noiseless cadence (signal only, in noise-std units) and its metadata."""
    x, meta = _quiet(make_cadence, cfg, seed, target, noise=False, **kw)
    return x.astype(np.float32), meta


def _energy(x):
    """Per-observation signal energy."""
    return (x.astype(np.float64) ** 2).sum(axis=(1, 2))


# ------------------------------------------------------------------ layout ---


def test_layout_dtype_shape_ids(dataset):
    out, meta = dataset
    assert len(meta) == N_TRAIN + N_TEST
    assert meta.id.is_unique
    assert all(re.fullmatch(r"[0-9a-f]{15}", i) for i in meta.id)
    npys = sorted(out.rglob("*.npy"))
    assert len(npys) == N_TRAIN + N_TEST
    for row in meta.itertuples():
        path = out / row.split / row.id[0] / f"{row.id}.npy"
        x = np.load(path)
        assert x.dtype == np.float16 and x.shape == (6, 273, 256)
        assert np.isfinite(x).all()
        # each observation normalised on its own (no per-file label leak)
        xs = x.astype(np.float64)
        assert np.abs(xs.mean(axis=(1, 2))).max() < 1e-2
        assert np.abs(xs.std(axis=(1, 2)) - 1).max() < 1e-2


def test_csvs_match_files_and_metadata(dataset):
    out, meta = dataset
    train = pd.read_csv(out / "train_labels.csv", dtype={"id": str})
    test = pd.read_csv(out / "test_labels.csv", dtype={"id": str})
    sub = pd.read_csv(out / "sample_submission.csv", dtype={"id": str})
    disk = pd.read_csv(out / "metadata.csv", dtype={"id": str})
    assert list(train.columns) == ["id", "target"] == list(sub.columns) == list(test.columns)
    assert list(disk.columns) == synth.METADATA_COLUMNS
    assert len(train) == N_TRAIN and len(test) == N_TEST
    assert train.id.tolist() == meta[meta.split == "train"].id.tolist()
    assert sub.id.tolist() == test.id.tolist() == meta[meta.split == "test"].id.tolist()
    assert (sub.target == 0.5).all()
    assert test.target.tolist() == meta[meta.split == "test"].target.tolist()
    assert disk.id.tolist() == meta.id.tolist()
    assert set(train.id).isdisjoint(test.id)
    on_disk = {(p.parent.parent.name, p.stem) for p in out.rglob("*.npy")}
    assert on_disk == set(zip(meta.split, meta.id, strict=True))


def test_positive_fraction(dataset):
    _, meta = dataset
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        assert meta[meta.split == split].target.sum() == round(CFG.pos_frac * n)
    # Kaggle-like default: 10 % positives
    assert synth.make_targets(SynthConfig(), "train", 1000).sum() == 100


def test_metadata_values(dataset):
    _, meta = dataset
    pos, neg = meta[meta.target == 1], meta[meta.target == 0]
    assert set(pos["shape"]) == set(synth.SHAPES)  # every shape is produced
    assert pos.snr.between(CFG.snr_min, CFG.snr_max).all()
    assert pos.width.between(synth.DF_HZ, 4 * synth.DF_HZ).all()
    assert pos.f_start.notna().all() and pos.drift_rate.abs().max() <= CFG.max_drift
    assert neg.snr.isna().all() and (neg["shape"].fillna("") == "").all()
    assert set(neg.interference) == {"none", "rfi", "off"}
    assert set(pos.interference) <= {"none", "rfi"} and "rfi" in set(pos.interference)
    with_rfi = meta[meta.interference != "none"]
    assert with_rfi.rfi_snr.between(CFG.snr_min, CFG.snr_max).all()
    assert with_rfi.rfi_shape.isin(synth.SHAPES).all()
    assert meta[meta.interference == "none"].rfi_snr.isna().all()


# --------------------------------------------------------- reproducibility ---


def test_same_seed_identical_bytes_any_workers(dataset, tmp_path):
    out, _ = dataset
    again = tmp_path / "again"
    write_dataset(again, CFG, N_TRAIN, N_TEST, workers=1, progress=False)
    a, b = _files(out), _files(again)
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)


def test_make_cadence_reproducible_and_seed_dependent():
    x1, m1 = _quiet(make_cadence, CFG, 11, 1)
    x2, m2 = _quiet(make_cadence, CFG, 11, 1)
    x3, m3 = _quiet(make_cadence, CFG, 12, 1)
    assert x1.tobytes() == x2.tobytes() and _nan_equal(m1, m2)
    assert x1.tobytes() != x3.tobytes() and m1["f_start"] != m3["f_start"]


def _nan_equal(a, b):
    """Dict equality where NaN == NaN."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and np.isnan(a[k]) and np.isnan(b[k])) for k in a
    )


def test_different_seed_different_data(dataset, tmp_path):
    out, meta = dataset
    other = tmp_path / "other"
    cfg = dataclasses.replace(CFG, seed=CFG.seed + 1)
    meta2 = write_dataset(other, cfg, 4, 0, workers=1, progress=False)
    assert set(meta2.id).isdisjoint(meta.id)
    x_a = np.load(out / "train" / meta.id[0][0] / f"{meta.id[0]}.npy")
    x_b = np.load(other / "train" / meta2.id[0][0] / f"{meta2.id[0]}.npy")
    assert not np.array_equal(x_a, x_b)


# ------------------------------------------------------------ no overwrite ---


@pytest.mark.parametrize("name", [*synth.OUTPUT_FILES, "train/0/abc.npy", "test/x.npy"])
def test_refuses_to_overwrite(tmp_path, name):
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("precious")
    with pytest.raises(FileExistsError, match=re.escape(name.split("/")[0])):
        write_dataset(tmp_path, CFG, 2, 1, workers=1, progress=False)
    assert target.read_text() == "precious"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [name]


def test_cli_refuses_with_message_and_accepts_empty_dir(tmp_path):
    (tmp_path / "metadata.csv").write_text("keep")
    with pytest.raises(FileExistsError, match=r"metadata\.csv"):
        synth_main(["--out", str(tmp_path), "--n-train", "1", "--n-test", "1", "--workers", "1"])
    assert (tmp_path / "metadata.csv").read_text() == "keep"
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)  # empty folders are fine
    _quiet(
        synth_main,
        [
            "--out",
            str(empty),
            "--n-train",
            "3",
            "--n-test",
            "2",
            "--workers",
            "1",
            "--seed",
            "5",
            "--shapes",
            "linear,sine",
            "--pos-frac",
            "0.5",
        ],
    )
    meta = pd.read_csv(empty / "metadata.csv")
    assert len(meta) == 5 and set(meta["shape"].dropna()) <= {"linear", "sine"}


def test_benchmark_preset_writes_a_test_only_set_and_flags_override_it(tmp_path):
    out = tmp_path / "bench"
    _quiet(
        synth_main,
        [
            "--preset",
            "benchmark",
            "--out",
            str(out),
            "--n-test",
            "10",
            "--workers",
            "1",
            "--seed",
            "9",
            "--snr-max",
            "5",
        ],
    )
    assert pd.read_csv(out / "train_labels.csv").empty and not list((out / "train").iterdir())
    meta = pd.read_csv(out / "metadata.csv")
    assert len(meta) == 10 and (meta.split == "test").all() and meta.target.sum() == 3  # preset pos_frac 0.3
    assert meta.snr.dropna().between(4.0, 5.0).all()  # preset snr_min, explicit --snr-max
    with pytest.raises(ConfigError, match="--n-train is required"):
        synth_main(["--out", str(tmp_path / "x"), "--n-test", "1"])


def test_snr_distribution_option():
    rng_draws = {
        d: [
            synth._sample_snr(np.random.default_rng(i), SynthConfig(snr_min=4, snr_max=60, snr_dist=d))
            for i in range(400)
        ]
        for d in synth.SNR_DISTRIBUTIONS
    }
    for draws in rng_draws.values():
        assert min(draws) >= 4 and max(draws) <= 60
    # log-uniform puts about half the draws below the geometric mean (15.5); uniform about a tenth
    assert 0.4 < np.mean(np.array(rng_draws["log-uniform"]) < 15.5) < 0.6
    assert np.mean(np.array(rng_draws["uniform"]) < 15.5) < 0.3
    with pytest.raises(ValueError, match="snr_dist"):
        SynthConfig(snr_dist="normal")


def test_config_validation():
    with pytest.raises(ValueError):
        SynthConfig(shapes=("zigzag",))
    with pytest.raises(ValueError):
        SynthConfig(rfi_frac=0.7, off_frac=0.5)
    with pytest.raises(ValueError):
        SynthConfig(snr_min=20, snr_max=10)


# -------------------------------------------------------- signal placement ---


@pytest.mark.parametrize("shape", synth.SHAPES)
def test_needle_only_in_on_observations(shape):
    x, meta = _signal(CFG, 21, 1, shape=shape, interference="none")
    e = _energy(x)
    assert meta["shape"] == shape
    assert (e[list(ON_OBSERVATIONS)] > 0).all()
    assert (e[list(OFF_OBSERVATIONS)] == 0).all()


def test_off_signal_only_in_off_and_rfi_in_all_six():
    x, meta = _signal(CFG, 22, 0, interference="off")
    e = _energy(x)
    assert meta["interference"] == "off" and np.isnan(meta["snr"])
    assert (e[list(OFF_OBSERVATIONS)] > 0).all() and (e[list(ON_OBSERVATIONS)] == 0).all()
    for target in (0, 1):
        x, meta = _signal(CFG, 23, target, interference="rfi")
        assert meta["interference"] == "rfi" and (_energy(x) > 0).all()
    x, _ = _signal(CFG, 24, 0, interference="none")
    assert (_energy(x) == 0).all()


def test_needle_amplitude_follows_setigen_snr():
    cfg = dataclasses.replace(CFG, noise_jitter=0.0)
    x, meta = _signal(cfg, 25, 1, shape="linear", interference="none")
    peak = meta["snr"] / np.sqrt(synth.TCHANS)  # setigen: snr * std / sqrt(tchans)
    assert 0.45 * peak <= x[0].max() <= 1.01 * peak


def _peak_channels(x_obs):
    """Channel of the maximum in every row of one observation."""
    return x_obs.argmax(axis=1).astype(float)


def test_linear_paths_continuous_across_cadence():
    cfg = dataclasses.replace(CFG, shapes=("linear",))
    starts = synth.obs_start_times(cfg)
    biggest_shift = 0.0
    for seed in range(30, 38):
        x, meta = _signal(cfg, seed, 1, shape="linear", interference="rfi")
        x_needle, _ = _signal(cfg, seed, 1, shape="linear", interference="none")
        for obs in ON_OBSERVATIONS:  # needle alone (rfi only added on top)
            want = meta["f_start"] + meta["drift_rate"] * starts[obs] / synth.DF_HZ
            assert abs(_peak_channels(x_needle[obs])[0] - want) <= 2
            biggest_shift = max(biggest_shift, abs(want - meta["f_start"]))
        for obs in OFF_OBSERVATIONS:  # the rfi alone in the OFF observations
            want = meta["rfi_f_start"] + meta["rfi_drift_rate"] * starts[obs] / synth.DF_HZ
            assert abs(_peak_channels(x[obs])[0] - want) <= 2
    assert biggest_shift > 20  # the check could tell a restarted path apart


def test_off_signal_continues_cadence_time():
    cfg = dataclasses.replace(CFG, shapes=("linear",))
    starts = synth.obs_start_times(cfg)
    for seed in range(40, 46):
        x, meta = _signal(cfg, seed, 0, interference="off")
        for obs in OFF_OBSERVATIONS:
            want = meta["rfi_f_start"] + meta["rfi_drift_rate"] * starts[obs] / synth.DF_HZ
            assert abs(_peak_channels(x[obs])[0] - want) <= 2


def _line_residual(x):
    """Max distance (channels) of the ON-row peaks from their best straight line."""
    t = np.concatenate([synth.obs_start_times(CFG)[i] + np.arange(synth.TCHANS) * DT_S for i in ON_OBSERVATIONS])
    ch = np.concatenate([_peak_channels(x[i]) for i in ON_OBSERVATIONS])
    return np.abs(ch - np.polyval(np.polyfit(t, ch, 1), t)).max()


@pytest.mark.parametrize("seed", [50, 51, 52])
def test_shapes_have_their_geometry(seed):
    lin, _ = _signal(CFG, seed, 1, shape="linear", interference="none")
    assert _line_residual(lin) <= 1.5
    for shape in ("sine", "quadratic"):
        x, _ = _signal(CFG, seed, 1, shape=shape, interference="none")
        assert _line_residual(x) > 2.5, shape
    x, _ = _signal(CFG, seed, 1, shape="pulsed", interference="none")
    rows_on = np.concatenate([x[i].max(axis=1) for i in ON_OBSERVATIONS]) > 0
    assert 0.1 < rows_on.mean() < 0.9  # on/off pulses along time
    for i in ON_OBSERVATIONS:
        assert x[i].max(axis=1).max() > 0  # present in each ON observation


# ------------------------------------------------------- setigen plumbing ---


def _cadence(seed):
    return _quiet(synth._make_frames, CFG, np.random.default_rng(seed), True)


def _linear_args(cadence):
    stg = synth.import_setigen()
    f0 = cadence[0].get_frequency(60)
    return (
        stg.constant_path(f0, 0.02),
        stg.constant_t_profile(level=5.0),
        stg.gaussian_f_profile(2 * synth.DF_HZ),
        stg.constant_bp_profile(level=1),
    )


def test_subset_helper_matches_setigen_cadence_add_signal():
    # ON subset: same as setigen's by_label("A").add_signal
    a, b = _cadence(1), _cadence(1)
    a.by_label("A").add_signal(*_linear_args(a))
    synth.add_signal_to_frames(b, ON_OBSERVATIONS, *_linear_args(b), pad_channels=8)
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_allclose(fa.data, fb.data, atol=1e-9)
    # OFF subset: what the whole-cadence signal puts into frames 1, 3, 5
    a, b = _cadence(2), _cadence(2)
    a.add_signal(*_linear_args(a))
    synth.add_signal_to_frames(b, OFF_OBSERVATIONS, *_linear_args(b))
    for i in range(6):
        if i in OFF_OBSERVATIONS:
            np.testing.assert_allclose(a[i].data, b[i].data, atol=1e-9)
        else:
            assert not np.allclose(a[i].data, b[i].data)
            assert np.array_equal(b[i].data, _cadence(2)[i].data)


def test_new_frame_equals_setigen_frame():
    from astropy import units as u

    stg = synth.import_setigen()
    ref = _quiet(
        stg.Frame,
        fchans=256,
        tchans=273,
        df=2.7939677238464355 * u.Hz,
        dt=18.253611008 * u.s,
        fch1=6095.214842353016 * u.MHz,
        seed=9,
        t_start=0.0,
    )
    ref.add_noise(x_mean=10, noise_type="chi2")
    new = _quiet(synth.new_frame, 9)
    new.add_noise(x_mean=10, noise_type="chi2")
    assert np.array_equal(ref.data, new.data) and np.array_equal(ref.fs, new.fs)
    assert ref.noise_std == new.noise_std and ref.chi2_df == new.chi2_df
