"""Synthetic SETI cadences in the exact Kaggle layout, made with setigen (the command: `python -m src.synth`).

Writes ``train/{id[0]}/{id}.npy``, ``test/{id[0]}/{id}.npy`` (float16, shape
(6, 273, 256), cadence ABACAD: 0, 2, 4 ON target, 1, 3, 5 OFF),
``train_labels.csv``, ``sample_submission.csv``, ``test_labels.csv`` and
``metadata.csv``. Needles (target=1) are only in the ON observations, on a
path continuous over the whole cadence; hard negatives hold interference in
all six observations (``rfi``) or only in the OFF ones (``off``). The same
config and seed give byte-identical files whatever the number of workers.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from src.core.cadence import (
    ALL_OBSERVATIONS,
    CADENCE_ORDER,
    CADENCE_SHAPE,
    DF_HZ,
    DT_S,
    FCH1_MHZ,
    OFF_OBSERVATIONS,
    ON_OBSERVATIONS,
    T_SLEW_S,
)
from src.core.cli import progress_bar
from src.data.kaggle import SAMPLE_SUBMISSION, TEST_LABELS, TRAIN_LABELS
from src.synth.libraries import import_setigen

N_OBS, TCHANS, FCHANS = CADENCE_SHAPE
SHAPES = ("linear", "sine", "quadratic", "pulsed")
INTERFERENCE = ("none", "rfi", "off")
SNR_DISTRIBUTIONS = ("log-uniform", "uniform")
SPLIT_CODES = {"train": 0, "test": 1}
# Shape parameters, shared with the on-the-fly injection (src/synth/inject.py) so the two draw the same signals.
NEAR_ZERO_DRIFT = 0.1  # interference mimicking terrestrial RFI: half of it drifts at most this share of max_drift
SINE_DRIFT_SCALE = 0.4  # a sine's drift is this share of a linear one's
SINE_PERIOD_OBSERVATIONS = (0.75, 5.0)  # log-uniform, in observation lengths
SINE_AMPLITUDE_CHANNELS = (10.0, 50.0)
QUADRATIC_BEND_CHANNELS = (40.0, 200.0)  # how far the curvature bends the path over the cadence
PULSE_PERIOD_ROWS = (4.0, 60.0)
PULSE_DUTY = (0.3, 0.7)
WIDTH_CHANNELS = (1.0, 4.0)  # FWHM
F_PROFILES = ("gaussian", "sinc2")
EDGE_MARGIN = 4  # channels kept free at each band edge
X_MEAN = 10.0  # chi2 noise mean (irrelevant after normalisation)
METADATA = "metadata.csv"
OUTPUT_FILES = (TRAIN_LABELS, SAMPLE_SUBMISSION, TEST_LABELS, METADATA)
METADATA_COLUMNS = [
    "id",
    "split",
    "target",
    "shape",
    "snr",
    "drift_rate",
    "f_start",
    "width",
    "f_profile",
    "interference",
    "rfi_shape",
    "rfi_snr",
    "rfi_drift_rate",
    "rfi_f_start",
]


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """All knobs that change the generated data (workers do not)."""

    seed: int = 0
    pos_frac: float = 0.1
    snr_min: float = 10.0
    snr_max: float = 50.0
    snr_dist: str = "log-uniform"
    shapes: tuple = SHAPES
    rfi_frac: float = 0.2
    off_frac: float = 0.1
    pos_rfi_frac: float = 0.1
    max_drift: float = 0.025  # Hz/s; keeps a straight path in band over 5 obs
    t_slew: float = T_SLEW_S  # s between observations (about one time row)
    noise_jitter: float = 0.05  # relative noise-mean spread between obs

    def __post_init__(self):
        """Fail early on settings that cannot produce a dataset."""
        object.__setattr__(self, "shapes", tuple(self.shapes))
        bad = [s for s in self.shapes if s not in SHAPES]
        if not self.shapes or bad:
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {self.shapes}")
        for name in ("pos_frac", "rfi_frac", "off_frac", "pos_rfi_frac", "noise_jitter"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]")
        if self.rfi_frac + self.off_frac > 1.0:
            raise ValueError("rfi_frac + off_frac must not exceed 1")
        if not 0.0 < self.snr_min <= self.snr_max:
            raise ValueError("need 0 < snr_min <= snr_max")
        if self.snr_dist not in SNR_DISTRIBUTIONS:
            raise ValueError(f"snr_dist must be one of {SNR_DISTRIBUTIONS}, got {self.snr_dist!r}")
        if not 0.0 <= self.max_drift <= 0.028:
            raise ValueError("max_drift must lie in [0, 0.028] Hz/s to fit 256 channels")
        if self.t_slew < 0:
            raise ValueError("t_slew must be >= 0")


# ---------------------------------------------------------------- setigen ---


def obs_start_times(cfg: SynthConfig) -> np.ndarray:
    """Start of each observation (s) from the cadence start, as t_overwrite sets it."""
    return np.arange(N_OBS) * (TCHANS * DT_S + cfg.t_slew)


def _obs_times(cfg: SynthConfig, frames) -> np.ndarray:
    """Cadence-time of every row of the chosen observations, for band checks."""
    rows = np.arange(TCHANS) * DT_S
    return np.concatenate([obs_start_times(cfg)[i] + rows for i in frames])


@functools.lru_cache(maxsize=1)
def _template_frame():
    """Empty Frame with the real Kaggle/BL parameters, built once per process."""
    from astropy import units as u

    return import_setigen().Frame(
        fchans=FCHANS, tchans=TCHANS, df=DF_HZ * u.Hz, dt=DT_S * u.s, fch1=FCH1_MHZ * u.MHz, t_start=0.0
    )


def new_frame(seed: int):
    """Same as ``stg.Frame(..., seed=seed)`` but copied from a template.

    Frame.__init__ sigma-clips its empty data (a quarter of the cost of a
    cadence); a deep copy with a freshly seeded rng is identical and cheaper.
    """
    frame = copy.deepcopy(_template_frame())
    frame.rng = np.random.default_rng(seed)
    return frame


def _make_frames(cfg: SynthConfig, rng: np.random.Generator, noise: bool):
    """Six chi2-noise frames in an ABACAD cadence with a fixed time origin."""
    seeds = rng.integers(0, 2**63, size=N_OBS)
    means = X_MEAN * rng.uniform(1 - cfg.noise_jitter, 1 + cfg.noise_jitter, size=N_OBS)
    frames = []
    for seed, x_mean in zip(seeds, means, strict=True):
        frame = new_frame(int(seed))
        frame.add_noise(x_mean=float(x_mean), noise_type="chi2")
        if not noise:  # keep noise_std (for get_intensity) but drop the noise
            frame.data[:] = 0.0
        frames.append(frame)
    return import_setigen().OrderedCadence(frames, order=CADENCE_ORDER, t_slew=cfg.t_slew, t_overwrite=True)


def add_signal_to_frames(cadence, frames, path, t_profile, f_profile, bp_profile=None, pad_channels=None):
    """Add a signal whose time axis is the WHOLE cadence to a subset of frames.

    ``Cadence.add_signal`` measures time from the first frame of the cadence it
    is called on, so a sub-cadence of OFF frames would restart the path; this
    shifts each frame's ``ts`` by its offset from ``cadence.t_start`` as
    setigen does. With ``pad_channels``, each frame only computes the channels
    within that distance of its part of the path (same result, much faster).
    """
    for i in frames:
        frame = cadence[i]
        shift = frame.t_start - cadence.t_start
        frame.ts += shift
        try:
            bounds = None
            if pad_channels is not None:
                bounds = _bounds(frame, path(frame.ts), pad_channels)
                if bounds is None:
                    continue
            frame.add_signal(path, t_profile, f_profile, bp_profile, bounding_f_range=bounds)
        finally:
            frame.ts -= shift


def _bounds(frame, path_hz, pad):
    """Frequency range covering the path +/- pad channels, or None if off-band."""
    ch = (path_hz - frame.fmin) / frame.df
    lo = max(int(np.floor(ch.min() - pad)), 0)
    hi = min(int(np.ceil(ch.max() + pad)) + 1, frame.fchans)
    if lo >= hi:
        return None
    return frame.get_frequency(lo), frame.get_frequency(hi)


# ---------------------------------------------------------------- signals ---


def _sample_shape_params(rng, cfg: SynthConfig, shape: str, near_zero: bool) -> dict:
    """Draw the shape-specific parameters; near_zero mimics terrestrial RFI."""
    t_obs = TCHANS * DT_S
    if near_zero and rng.random() < 0.5:
        drift = rng.uniform(-NEAR_ZERO_DRIFT, NEAR_ZERO_DRIFT) * cfg.max_drift
    elif rng.random() < 0.05:
        drift = 0.0
    else:
        drift = rng.uniform(-cfg.max_drift, cfg.max_drift)
    p = {"shape": shape, "drift_rate": float(drift)}
    if shape == "sine":  # period and amplitude of the order of the cadence
        p["drift_rate"] = float(drift * SINE_DRIFT_SCALE)
        p["period"] = float(t_obs * np.exp(rng.uniform(*np.log(SINE_PERIOD_OBSERVATIONS))))
        p["amplitude"] = float(rng.uniform(*SINE_AMPLITUDE_CHANNELS) * DF_HZ)
    elif shape == "quadratic":  # curvature bending the path 40-200 channels
        t_end = obs_start_times(cfg)[-1] + t_obs
        bend = rng.choice([-1, 1]) * rng.uniform(*QUADRATIC_BEND_CHANNELS) * DF_HZ
        p["curvature"] = float(2 * bend / t_end**2)
    elif shape == "pulsed":  # square pulse train, several pulses per observation
        period = rng.uniform(*PULSE_PERIOD_ROWS) * DT_S
        p["pulse_period"] = float(period)
        p["duty"] = float(rng.uniform(*PULSE_DUTY))
        p["phase"] = float(rng.uniform(0, period))
    return p


def _path(p: dict, f_start_hz: float):
    """Frequency path (Hz) vs cadence time, built from setigen's path functions."""
    stg = import_setigen()
    if p["shape"] == "sine":
        return stg.sine_path(f_start_hz, p["drift_rate"], p["period"], p["amplitude"])
    linear = stg.constant_path(f_start_hz, p["drift_rate"])
    if p["shape"] == "quadratic":
        bend = stg.squared_path(0.0, p["curvature"])
        return lambda t: linear(t) + bend(t)
    return linear


def _t_profile(p: dict, level: float):
    """Intensity vs time: constant, or an on/off square pulse train for 'pulsed'."""
    if p["shape"] != "pulsed":
        return import_setigen().constant_t_profile(level=level)
    period, duty, phase = p["pulse_period"], p["duty"], p["phase"]
    return lambda t: level * (np.mod(np.asarray(t) - phase, period) < duty * period)


def _f_profile(p: dict):
    """Spectral profile; width is the FWHM in Hz for both kinds."""
    stg = import_setigen()
    if p["f_profile"] == "sinc2":
        return stg.sinc2_f_profile(p["width"], width_mode="fwhm")
    return stg.gaussian_f_profile(p["width"])


def sample_signal(rng, cfg: SynthConfig, shape: str, frames, near_zero=False) -> dict:
    """Draw a signal whose path stays inside the band during `frames`.

    Every path is f_start + g(t); the band fixes an interval for f_start given
    g, so only the shape parameters are rejected and redrawn.
    """
    times = _obs_times(cfg, frames)
    lo_band, hi_band = EDGE_MARGIN, FCHANS - 1 - EDGE_MARGIN
    for _ in range(1000):
        p = _sample_shape_params(rng, cfg, shape, near_zero)
        g = _path(p, 0.0)(times) / DF_HZ
        lo, hi = lo_band - g.min(), hi_band - g.max()
        if lo <= hi:
            break
    else:
        raise RuntimeError(f"could not fit a {shape} path inside the band")
    p["f_start"] = float(rng.uniform(lo, hi))
    p["snr"] = _sample_snr(rng, cfg)
    p["width"] = float(rng.uniform(*WIDTH_CHANNELS) * DF_HZ)
    p["f_profile"] = str(rng.choice(list(F_PROFILES)))
    return p


def _sample_snr(rng, cfg: SynthConfig) -> float:
    """One setigen SNR from the configured distribution (one uniform draw either way)."""
    if cfg.snr_dist == "uniform":
        return float(rng.uniform(cfg.snr_min, cfg.snr_max))
    return float(np.exp(rng.uniform(np.log(cfg.snr_min), np.log(cfg.snr_max))))


def _inject(cadence, p: dict, frames):
    """Add signal p to the chosen frames, level from setigen's SNR definition."""
    first = cadence[0]
    add_signal_to_frames(
        cadence,
        frames,
        _path(p, first.get_frequency(p["f_start"])),
        _t_profile(p, first.get_intensity(snr=p["snr"])),
        _f_profile(p),
        import_setigen().constant_bp_profile(level=1),
        pad_channels=3 * p["width"] / DF_HZ + 2,
    )


def _draw_interference(rng, cfg: SynthConfig, target: int) -> str:
    """Interference kind from the configured fractions for this class."""
    u = rng.random()
    if target:
        return "rfi" if u < cfg.pos_rfi_frac else "none"
    if u < cfg.rfi_frac:
        return "rfi"
    return "off" if u < cfg.rfi_frac + cfg.off_frac else "none"


def _normalise(cadence, noise: bool) -> np.ndarray:
    """Per-observation zero mean / unit std so file statistics do not leak labels.

    Without noise, return the bare signal in units of each frame's noise std.
    """
    out = np.empty((N_OBS, TCHANS, FCHANS), dtype=np.float16)
    for i, frame in enumerate(cadence):
        x = frame.data
        if noise:
            out[i] = (x - x.mean()) / x.std()
        else:
            out[i] = x / frame.noise_std
    return out


def make_cadence(
    cfg: SynthConfig, seed_or_rng, target: int, *, shape=None, interference=None, noise: bool = True
) -> tuple[np.ndarray, dict]:
    """One cadence (float16, (6, 273, 256)) and its metadata.

    `shape` / `interference` force the needle shape / interference kind
    (otherwise drawn from cfg); `noise=False` returns only the injected signal
    (in noise-std units, not normalised), with the same draws, for tests.
    """
    rng = np.random.default_rng(seed_or_rng)
    cadence = _make_frames(cfg, rng, noise)
    shape = shape or str(rng.choice(cfg.shapes))
    interference = interference or _draw_interference(rng, cfg, target)
    if interference not in INTERFERENCE:
        raise ValueError(f"interference must be one of {INTERFERENCE}")
    meta = dict.fromkeys(METADATA_COLUMNS[2:], np.nan)
    meta.update(target=int(target), shape="", f_profile="", interference=interference, rfi_shape="")
    if target:
        p = sample_signal(rng, cfg, shape, ON_OBSERVATIONS)
        _inject(cadence, p, ON_OBSERVATIONS)
        meta.update({k: p[k] for k in ("shape", "snr", "drift_rate", "f_start", "width", "f_profile")})
    if interference != "none":
        frames = ALL_OBSERVATIONS if interference == "rfi" else OFF_OBSERVATIONS
        q = sample_signal(rng, cfg, str(rng.choice(cfg.shapes)), frames, near_zero=interference == "rfi")
        _inject(cadence, q, frames)
        meta.update(rfi_shape=q["shape"], rfi_snr=q["snr"], rfi_drift_rate=q["drift_rate"], rfi_f_start=q["f_start"])
    return _normalise(cadence, noise), meta


# ---------------------------------------------------------------- dataset ---


def make_ids(seed: int, n: int) -> list[str]:
    """n unique 15-hex-character ids (like Kaggle's) drawn from the seed."""
    rng = np.random.default_rng([seed, 2, 0])
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        for x in rng.integers(0, 2**60, size=n - len(ids)):
            s = f"{int(x):015x}"
            if s not in seen:
                seen.add(s)
                ids.append(s)
    return ids


def make_targets(cfg: SynthConfig, split: str, n: int) -> np.ndarray:
    """Exactly round(pos_frac * n) positives in a seeded random order."""
    y = np.zeros(n, dtype=np.int64)
    y[: round(cfg.pos_frac * n)] = 1
    return np.random.default_rng([cfg.seed, SPLIT_CODES[split], 0]).permutation(y)


def sample_rng(cfg: SynthConfig, split: str, index: int) -> np.random.Generator:
    """Per-sample RNG from (seed, split, index): independent of worker layout."""
    return np.random.default_rng([cfg.seed, SPLIT_CODES[split], 1, index])


def check_output_dir(out_dir) -> None:
    """Refuse to write where a dataset already is: raise FileExistsError."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    for name in OUTPUT_FILES:
        if (out / name).exists():
            raise FileExistsError(f"{out / name} already exists; refusing to overwrite")
    for name in ("train", "test"):
        d = out / name
        if d.exists() and (not d.is_dir() or any(d.iterdir())):
            raise FileExistsError(f"{d} already exists and is not empty; refusing to overwrite")


def _quiet_worker():
    """Pool initializer: silence astropy/blimpy/setigen warnings in workers."""
    warnings.simplefilter("ignore")
    import_setigen()


def _job(task) -> dict:
    """Make one cadence, save it at its Kaggle path, return its metadata row."""
    out_dir, cfg, split, index, sid, target = task
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, meta = make_cadence(cfg, sample_rng(cfg, split, index), target)
    np.save(Path(out_dir) / split / sid[0] / f"{sid}.npy", x)
    return {"id": sid, "split": split, **meta}


def _run_jobs(tasks, workers: int, progress: bool) -> list[dict]:
    """Run tasks in order, in-process or on a process pool, with a progress bar."""

    _template_frame()  # import setigen once here: forked workers inherit it
    bar = progress_bar(total=len(tasks), desc="synth", unit="cadence", show=progress)
    rows = []
    if workers <= 1:
        for t in tasks:
            rows.append(_job(t))
            bar.update()
    else:
        import multiprocessing as mp

        chunk = max(1, min(32, len(tasks) // (workers * 8)))
        with mp.Pool(workers, initializer=_quiet_worker) as pool:
            for row in pool.imap(_job, tasks, chunksize=chunk):
                rows.append(row)
                bar.update()
    bar.close()
    return rows


def write_dataset(
    out_dir, cfg: SynthConfig, n_train: int, n_test: int, *, workers: int | None = None, progress: bool = True
) -> pd.DataFrame:
    """Write a synthetic dataset in the Kaggle layout; return its metadata.

    Raises FileExistsError (before writing anything) if out_dir holds data.
    """
    if n_train < 0 or n_test < 0:
        raise ValueError("n_train and n_test must be >= 0")
    check_output_dir(out_dir)
    out = Path(out_dir)
    ids = make_ids(cfg.seed, n_train + n_test)
    split_ids = {"train": ids[:n_train], "test": ids[n_train:]}
    tasks = []
    for split, n in (("train", n_train), ("test", n_test)):
        (out / split).mkdir(parents=True, exist_ok=True)
        for i, (sid, y) in enumerate(zip(split_ids[split], make_targets(cfg, split, n), strict=True)):
            (out / split / sid[0]).mkdir(exist_ok=True)
            tasks.append((str(out), cfg, split, i, sid, int(y)))
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    meta = pd.DataFrame(_run_jobs(tasks, workers, progress), columns=METADATA_COLUMNS)
    _write_csvs(out, meta)
    return meta


def _write_csvs(out: Path, meta: pd.DataFrame) -> None:
    """Label, submission-template, test-truth and metadata CSVs."""
    train = meta[meta.split == "train"][["id", "target"]]
    test = meta[meta.split == "test"][["id", "target"]]
    train.to_csv(out / TRAIN_LABELS, index=False)
    test.to_csv(out / TEST_LABELS, index=False)
    test.assign(target=0.5).to_csv(out / SAMPLE_SUBMISSION, index=False)
    meta.to_csv(out / METADATA, index=False)
