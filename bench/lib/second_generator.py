"""A second, evaluation-only generator: Kaggle-layout cadences made with setigen's public API alone.

The detection benchmark's held-out set comes from the project's own generator (src/synth), the same code
that makes the training data; a model can do well on it by learning that generator's habits. This module
makes another held-out set with its own, independent choices, so that the gap between "our data" and
"other data" is measured, not assumed. It imports nothing from src/ (tests/test_second_generator.py checks
that): only numpy, pandas and setigen (`Frame`, `OrderedCadence`, `Frame.add_noise`,
`Frame.add_noise_from_obs`, `Frame.add_signal` with setigen's path, t_profile, f_profile and bp_profile
functions).

Layout (test split only, readable by bench/detection.py --data-dir and evaluate.py): `test/<id[0]>/<id>.npy`
float16 (6, 273, 256), observed ABACAD (0, 2, 4 ON), each observation standardised (mean 0, std 1) after
injection; `test_labels.csv` and `sample_submission.csv` (`id,target`); `metadata.csv` (METADATA_COLUMNS).
The same seed gives the same bytes whatever the number of workers.

Its choices (where the project's generator differs, in brackets):

- frames: setigen's default Breakthrough Listen resolution (2.79 Hz x 18.25 s, the Kaggle data's), 8.4 GHz,
  a slew between observations drawn uniform in 10-40 s per cadence [20 s fixed];
- noise per cadence: chi-squared at a mean level drawn per cadence with a 10% spread between observations
  (35%), Gaussian with a relative std of 5-30% (25%), or setigen's noise drawn from real GBT observation
  statistics, `add_noise_from_obs`, chi-squared (25%) or truncated Gaussian (15%), each observation its own
  [chi-squared, 5% spread, always]; in 30% of cadences a smooth bandpass gain (a 0.3-3% ripple of 60-400
  channels plus a tilt of up to 4% across the band, the same in all six) multiplies signal and noise
  [none];
- SNR (setigen's, against each frame's own noise): 3 + Gamma(2, 9), at most 100 (mean 21, median 18) for
  needles, 5 + Gamma(2, 12), at most 150, for interference [log-uniform 10-50, or 4-60 for the benchmark];
- needle paths: `linear` (35%; |drift| uniform up to 0.04 Hz/s for 60% of them, Normal(0, 0.01 Hz/s) for
  the rest), `sine` (20%; setigen's `sine_path`, period log-uniform 0.3-8 observations, amplitude 3-60
  channels, drift up to 0.015 Hz/s), `quadratic` (15%; a drift up to 0.02 Hz/s plus setigen's
  `squared_path` bending 20-250 channels over the cadence), `random_walk` (15%; setigen's `simple_rfi_path`
  random walk, Normal steps of FWHM 0.2-0.8 channels a row around a drift up to 0.03 Hz/s; the walk
  restarts in each observation) and `pulsed` (15%; a linear path with setigen's
  `periodic_gaussian_t_profile`: Gaussian pulses of FWHM 3-15 rows every 10-60 rows, jittered) [linear, sine,
  quadratic, square-pulsed; drift up to 0.025 Hz/s]; a fifth of the unpulsed needles are also modulated
  in intensity (setigen's `sine_t_profile`, depth 30-90%, period 5-200 rows);
- spectral profiles: Gaussian FWHM 0.7-6 channels (50%), sinc squared FWHM 1-4 (20%), Lorentzian FWHM
  0.5-3 (15%), box 1-4 channels (15%) [Gaussian or sinc squared, 1-4 channels];
- needles inside the window half way through the ON observations, so a steep one still leaves it (then
  counted as `leaves_window`);
- partial needles, 35% of the needles drawn so [30% in the benchmark preset]: `leaves_window` (15%: a linear,
  quadratic or random-walk path of |drift| 0.025-0.07 Hz/s, starting inside the window at the first ON
  observation or ending inside it at the last, free to leave), `switches` (10%: a smooth on/off window,
  rise of 1-5 rows, lasting 0.3-2.5 observation lengths from a random time of the cadence), `subset` (10%:
  in one or two ON observations, each of the six proper subsets equally likely). `n_on_present` counts the
  ON observations where the needle's rendered signal reaches a quarter of its peak level somewhere in the
  window;
- interference shapes (`rfi_shape`), equally likely: `stationary` (setigen's `simple_rfi_path`, jittering by
  up to 3 channels around a drift of Normal(0, 0.0015 Hz/s)), `linear` (up to 0.03 Hz/s), `sine`,
  `quadratic`, `random_walk` (as the needles'), `wide` (Gaussian FWHM 8-30 channels, near-still), `pulsed`
  (as the needles' pulses), `fading` (one or two OFF observations at 5-35% of the level, the other
  observations at 60-100%, one level per observation) [the generator's shapes, half nearly still; with
  --wide-rfi also wide and fading];
- the mix: 35% positives [30%], a quarter of them with all-six interference [a third]; negatives: noise only
  40%, interference in all six observations (`rfi`) 35%, in the OFF observations only (`off`) 12%, in some
  observations, at least one ON and one OFF but not all six (`mixed`, a negative: seen in an OFF
  observation) 13% [`rfi` a third, `off` 15%].

Measured on the 2-core development CPU (another job running): see docs/detection.md#the-second-generator.
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

N_OBS, N_ROWS, N_CHANNELS = 6, 273, 256
ORDER = "ABACAD"
ON, OFF = (0, 2, 4), (1, 3, 5)
FCH1_GHZ = 8.4
SLEW_S = (10.0, 40.0)
NOISE_KINDS = {"chi2": 0.35, "gaussian": 0.25, "chi2_obs": 0.25, "gaussian_obs": 0.15}
BANDPASS_SHARE = 0.3
NEEDLE_SHAPES = {"linear": 0.35, "sine": 0.2, "quadratic": 0.15, "random_walk": 0.15, "pulsed": 0.15}
MODULATED_SHARE = 0.2  # of the unpulsed needles
F_PROFILES = {"gaussian": 0.5, "sinc2": 0.2, "lorentzian": 0.15, "box": 0.15}
PARTIAL = {"none": 0.65, "leaves_window": 0.15, "switches": 0.1, "subset": 0.1}
RFI_SHAPES = ("stationary", "linear", "sine", "quadratic", "random_walk", "wide", "pulsed", "fading")
NEGATIVE_KINDS = {"noise": 0.4, "rfi": 0.35, "off": 0.12, "mixed": 0.13}
POS_FRAC = 0.35
POS_RFI_SHARE = 0.25
VISIBLE = 0.25  # an ON observation holds the needle when its signal reaches this share of the peak level
METADATA = "metadata.csv"
OUTPUT_FILES = ("test_labels.csv", "sample_submission.csv", METADATA)
METADATA_COLUMNS = [
    "id",
    "split",
    "target",
    "kind",
    "shape",
    "snr",
    "drift_rate",
    "f_start",
    "width",
    "f_profile",
    "t_profile",
    "n_on_present",
    "partial",
    "interference",
    "rfi_shape",
    "rfi_snr",
    "noise",
    "bandpass",
    "slew_s",
]


@dataclasses.dataclass(frozen=True)
class SecondConfig:
    """What changes the set: the seed, its size and its share of positives (the rest is fixed above)."""

    seed: int = 2024
    n: int = 2000
    pos_frac: float = POS_FRAC

    def __post_init__(self):
        if self.n < 1:
            raise ValueError("n must be >= 1")
        if not 0.0 <= self.pos_frac <= 1.0:
            raise ValueError("pos_frac must lie in [0, 1]")


def _setigen():
    """setigen and astropy's units, imported quietly (blimpy warns on import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import setigen
        from astropy import units

    return setigen, units


def _pick(rng: np.random.Generator, weights: dict) -> str:
    """One key of `weights`, drawn with those probabilities."""
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return str(keys[int(rng.choice(len(keys), p=p / p.sum()))])


# ---------------------------------------------------------------- frames ---


def _frames(rng: np.random.Generator):
    """Six noisy frames in an ABACAD OrderedCadence (times overwritten with this cadence's slew); the noise kind."""
    stg, u = _setigen()
    noise = _pick(rng, NOISE_KINDS)
    mean = float(rng.uniform(5, 50))
    rel_std = float(rng.uniform(0.05, 0.3))
    frames = []
    for _ in range(N_OBS):
        frame = stg.Frame(fchans=N_CHANNELS, tchans=N_ROWS, fch1=FCH1_GHZ * u.GHz, seed=int(rng.integers(2**63)))
        level = mean * float(rng.uniform(0.9, 1.1))
        if noise == "chi2":
            frame.add_noise(x_mean=level, noise_type="chi2")
        elif noise == "gaussian":
            frame.add_noise(x_mean=level, x_std=level * rel_std, noise_type="gaussian")
        else:
            frame.add_noise_from_obs(noise_type="chi2" if noise == "chi2_obs" else "gaussian")
        frames.append(frame)
    slew = float(rng.uniform(*SLEW_S))
    cadence = stg.OrderedCadence(frames, order=ORDER, t_slew=slew, t_overwrite=True)
    return cadence, noise, slew


def _cadence_seconds(cadence) -> float:
    """From the cadence's start to the end of its last observation."""
    return float(cadence[N_OBS - 1].t_start + N_ROWS * cadence.dt - cadence[0].t_start)


def _add(cadence, observations, path, t_profile, f_profile, snr: float) -> dict[int, float]:
    """Add one signal to the chosen observations: `path(t)` (Hz) and `t_profile(t)` (relative level) in seconds
    from the cadence's start, scaled to `snr` against each frame's own noise. Returns, per observation, the
    largest value the signal reached inside the window as a share of its peak level."""
    stg, _ = _setigen()
    t0 = cadence[0].t_start
    reached = {}
    for i in observations:
        frame = cadence[i]
        shift = frame.t_start - t0
        level = frame.get_intensity(snr=snr)
        before = frame.data.copy()
        frame.add_signal(
            lambda t, s=shift: path(np.asarray(t) + s),
            lambda t, s=shift, a=level: a * np.asarray(t_profile(np.asarray(t) + s), dtype=float),
            f_profile,
            stg.constant_bp_profile(level=1),
        )
        reached[i] = float((frame.data - before).max() / level)
    return reached


# ---------------------------------------------------------------- signals ---


def _f_profile(rng: np.random.Generator, df: float, wide: bool = False):
    """A spectral profile and its width in channels (FWHM; the box's full width)."""
    stg, _ = _setigen()
    if wide:
        width = float(rng.uniform(8, 30))
        return stg.gaussian_f_profile(width * df), width, "gaussian"
    kind = _pick(rng, F_PROFILES)
    if kind == "gaussian":
        width = float(rng.uniform(0.7, 6))
        return stg.gaussian_f_profile(width * df), width, kind
    if kind == "sinc2":
        width = float(rng.uniform(1, 4))
        return stg.sinc2_f_profile(width * df, width_mode="fwhm"), width, kind
    if kind == "lorentzian":
        width = float(rng.uniform(0.5, 3))
        return stg.lorentzian_f_profile(width * df), width, kind
    width = float(rng.uniform(1, 4))
    return stg.box_f_profile(width * df), width, kind


def _path(rng: np.random.Generator, shape: str, f_start: float, drift: float, cadence):
    """A path (Hz vs s from the cadence's start) of the given shape through channel `f_start` at time 0."""
    stg, _ = _setigen()
    df, t_obs, t_all = cadence.df, N_ROWS * cadence.dt, _cadence_seconds(cadence)
    f0 = cadence[0].get_frequency(f_start)
    if shape == "sine":
        period = t_obs * float(np.exp(rng.uniform(np.log(0.3), np.log(8.0))))
        return stg.sine_path(f0, drift, period, float(rng.uniform(3, 60)) * df)
    if shape == "quadratic":
        bend = float(rng.choice([-1, 1]) * rng.uniform(20, 250)) * df
        line, curve = stg.constant_path(f0, drift), stg.squared_path(0.0, 2 * bend / t_all**2)
        return lambda t: line(t) + curve(t)
    if shape == "random_walk":
        step = float(rng.uniform(0.2, 0.8)) * df
        return stg.simple_rfi_path(
            f0, drift, step, spread_type="normal", rfi_type="random_walk", seed=int(rng.integers(2**63))
        )
    if shape == "stationary":
        return stg.simple_rfi_path(
            f0, drift, float(rng.uniform(0, 3)) * df, spread_type="normal", seed=int(rng.integers(2**63))
        )
    return stg.constant_path(f0, drift)  # linear, pulsed, wide, fading


def _drift(rng: np.random.Generator, shape: str) -> float:
    """Drift rate (Hz/s) by shape."""
    if shape == "linear" or shape == "pulsed":
        return float(rng.uniform(-0.04, 0.04) if rng.random() < 0.6 else rng.normal(0, 0.01))
    if shape == "sine":
        return float(rng.uniform(-0.015, 0.015))
    if shape == "quadratic":
        return float(rng.uniform(-0.02, 0.02))
    if shape == "stationary" or shape == "wide":
        return float(rng.normal(0, 0.0015))
    return float(rng.uniform(-0.03, 0.03))  # random_walk, fading, RFI linear


def _pulses(rng: np.random.Generator, dt: float):
    """setigen's jittered Gaussian pulse train (relative level, 0 between pulses)."""
    stg, _ = _setigen()
    period = float(rng.uniform(10, 60)) * dt
    return stg.periodic_gaussian_t_profile(
        pulse_width=float(rng.uniform(3, 15)) * dt,
        period=period,
        phase=float(rng.uniform(0, period)),
        pulse_offset_width=0.1 * period,
        pulse_direction="up",
        amplitude=1.0,
        level=0.0,
        seed=int(rng.integers(2**63)),
    )


def _window(rng: np.random.Generator, cadence):
    """A smooth on/off window: on at a random time of the cadence for 0.3-2.5 observation lengths."""
    t_obs, t_all, rise = N_ROWS * cadence.dt, _cadence_seconds(cadence), float(rng.uniform(1, 5)) * cadence.dt
    t_on = float(rng.uniform(-0.5 * t_obs, t_all - 0.3 * t_obs))
    t_off = t_on + float(rng.uniform(0.3, 2.5)) * t_obs

    def window(t):
        t = np.asarray(t, dtype=float)
        return 1 / (1 + np.exp(-(t - t_on) / rise)) / (1 + np.exp((t - t_off) / rise))

    return window


def _needle(rng: np.random.Generator, cadence) -> dict:
    """One needle in the ON observations (all, some, or leaving the window); its metadata."""
    df, dt = cadence.df, cadence.dt
    partial = _pick(rng, PARTIAL)
    shape = _pick(rng, NEEDLE_SHAPES)
    observations = ON
    if partial == "leaves_window":
        shape = str(rng.choice(["linear", "quadratic", "random_walk"]))
        drift = float(rng.choice([-1, 1]) * rng.uniform(0.025, 0.07))
    else:
        drift = _drift(rng, shape)
    t_last = cadence[ON[-1]].t_start + N_ROWS * dt - cadence[0].t_start
    inside = float(rng.uniform(10, N_CHANNELS - 10))
    if partial == "leaves_window":  # inside the window at the start of the first ON, or (enters) the end of the last
        f_start = inside - drift * t_last / df if rng.random() < 0.5 else inside
    else:  # inside the window half way through the ON observations (a steep one still leaves)
        f_start = inside - drift * t_last / 2 / df
    path = _path(rng, shape, f_start, drift, cadence)
    f_profile, width, f_kind = _f_profile(rng, df)
    t_kind = "pulsed" if shape == "pulsed" else ("modulated" if rng.random() < MODULATED_SHARE else "constant")
    if t_kind == "pulsed":
        profile = _pulses(rng, dt)
    elif t_kind == "modulated":
        stg, _ = _setigen()
        depth = float(rng.uniform(0.3, 0.9))
        profile = stg.sine_t_profile(
            float(rng.uniform(5, 200)) * dt, float(rng.uniform(0, 1e4)), depth / 2, 1 - depth / 2
        )
    else:
        profile = lambda t: np.ones_like(np.asarray(t, dtype=float))  # noqa: E731
    if partial == "switches":
        window, base = _window(rng, cadence), profile
        profile = lambda t: base(t) * window(t)  # noqa: E731
    elif partial == "subset":
        k = int(rng.integers(1, 3))
        observations = tuple(sorted(int(o) for o in rng.choice(ON, size=k, replace=False)))
    snr = float(min(3 + rng.gamma(2.0, 9.0), 100.0))
    reached = _add(cadence, observations, path, profile, f_profile, snr)
    n_on_present = sum(reached.get(o, 0.0) >= VISIBLE for o in ON)
    if partial == "none" and n_on_present < len(ON):  # drawn whole, but its drift carried it out of the window
        partial = "leaves_window"
    return {
        "shape": shape,
        "snr": snr,
        "drift_rate": drift,
        "f_start": f_start,
        "width": width,
        "f_profile": f_kind,
        "t_profile": t_kind,
        "n_on_present": n_on_present,
        "partial": partial,
    }


def _interference(rng: np.random.Generator, cadence, observations) -> dict:
    """One interference signal in the given observations; its metadata."""
    df, dt = cadence.df, cadence.dt
    shape = str(rng.choice(RFI_SHAPES))
    drift = _drift(rng, shape)
    path = _path(rng, shape, float(rng.uniform(5, N_CHANNELS - 5)), drift, cadence)
    f_profile, _, _ = _f_profile(rng, df, wide=shape == "wide")
    if shape == "pulsed":
        profile = _pulses(rng, dt)
    elif shape == "fading":
        levels = rng.uniform(0.6, 1.0, size=N_OBS)
        faint = rng.choice(OFF, size=int(rng.integers(1, 3)), replace=False)
        levels[faint] = rng.uniform(0.05, 0.35, size=len(faint))
        starts = np.array([cadence[i].t_start - cadence[0].t_start for i in range(N_OBS)])

        def profile(t):
            index = np.clip(np.searchsorted(starts, np.asarray(t, dtype=float), side="right") - 1, 0, N_OBS - 1)
            return levels[index]
    else:
        profile = lambda t: np.ones_like(np.asarray(t, dtype=float))  # noqa: E731
    snr = float(min(5 + rng.gamma(2.0, 12.0), 150.0))
    _add(cadence, observations, path, profile, f_profile, snr)
    return {"rfi_shape": shape, "rfi_snr": snr}


def _bandpass(rng: np.random.Generator) -> np.ndarray:
    """A smooth gain across the band: a ripple plus a tilt."""
    c = np.arange(N_CHANNELS)
    ripple = rng.uniform(0.003, 0.03) * np.sin(2 * np.pi * c / rng.uniform(60, 400) + rng.uniform(0, 2 * np.pi))
    return 1 + ripple + rng.uniform(-0.04, 0.04) * (c / (N_CHANNELS - 1) - 0.5)


def make_cadence(seed, target: int) -> tuple[np.ndarray, dict]:
    """One cadence (float16 (6, 273, 256)) and its metadata row (without id and split)."""
    rng = np.random.default_rng(seed)
    cadence, noise, slew = _frames(rng)
    meta = dict.fromkeys(METADATA_COLUMNS[2:], np.nan)
    meta.update(target=int(target), noise=noise, slew_s=slew, shape="", f_profile="", t_profile="", partial="")
    meta.update(rfi_shape="", n_on_present=0)
    if target:
        meta.update(_needle(rng, cadence))
        interference = "rfi" if rng.random() < POS_RFI_SHARE else "none"
        kind = "needle+rfi" if interference == "rfi" else "needle"
    else:
        kind = _pick(rng, NEGATIVE_KINDS)
        interference = "none" if kind == "noise" else kind
    if interference == "rfi":
        meta.update(_interference(rng, cadence, range(N_OBS)))
    elif interference == "off":
        meta.update(_interference(rng, cadence, OFF))
    elif interference == "mixed":
        chosen = [int(rng.choice(ON)), int(rng.choice(OFF))]
        others = [o for o in range(N_OBS) if o not in chosen]
        chosen += [int(o) for o in rng.choice(others, size=int(rng.integers(0, 3)), replace=False)]
        meta.update(_interference(rng, cadence, sorted(chosen)))
    meta.update(kind=kind, interference=interference)
    gain = _bandpass(rng) if rng.random() < BANDPASS_SHARE else None
    meta["bandpass"] = "ripple" if gain is not None else "flat"
    x = np.empty((N_OBS, N_ROWS, N_CHANNELS), dtype=np.float16)
    for i, frame in enumerate(cadence):
        data = frame.data * gain if gain is not None else frame.data
        x[i] = (data - data.mean()) / data.std()
    return x, meta


# ---------------------------------------------------------------- the set ---


def make_ids(seed: int, n: int) -> list[str]:
    """n distinct 15-hex-character ids drawn from the seed."""
    rng = np.random.default_rng([seed, 15])
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        for value in rng.integers(0, 16**15, size=n - len(ids)):
            text = f"{int(value):015x}"
            if text not in seen:
                seen.add(text)
                ids.append(text)
    return ids


def make_targets(cfg: SecondConfig) -> np.ndarray:
    """round(pos_frac * n) positives in a seeded order."""
    y = np.zeros(cfg.n, dtype=np.int64)
    y[: round(cfg.pos_frac * cfg.n)] = 1
    return np.random.default_rng([cfg.seed, 1]).permutation(y)


def _job(task) -> dict:
    out, seed, index, sid, target = task
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, meta = make_cadence([seed, 2, index], target)
    npy = io.BytesIO()  # serialised first: np.save to a file reports a full disk as a short write, no errno
    np.save(npy, x)
    (Path(out) / "test" / sid[0] / f"{sid}.npy").write_bytes(npy.getbuffer())
    return {"id": sid, "split": "test", **meta}


def _quiet():
    warnings.simplefilter("ignore")
    _setigen()


def check_output_dir(out: Path) -> None:
    """Refuse to write where a set already is."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    for name in OUTPUT_FILES:
        if (out / name).exists():
            raise FileExistsError(f"{out / name} already exists; refusing to overwrite")
    test = out / "test"
    if test.exists() and any(test.iterdir()):
        raise FileExistsError(f"{test} already exists and is not empty; refusing to overwrite")


def write_set(out, cfg: SecondConfig, workers: int = 1) -> tuple[pd.DataFrame, float]:
    """Write the set into `out`; its metadata and the seconds it took."""
    started = time.time()
    out = Path(out)
    check_output_dir(out)
    ids = make_ids(cfg.seed, cfg.n)
    tasks = []
    for index, (sid, target) in enumerate(zip(ids, make_targets(cfg), strict=True)):
        (out / "test" / sid[0]).mkdir(parents=True, exist_ok=True)
        tasks.append((str(out), cfg.seed, index, sid, int(target)))
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = [_job(t) for t in tasks]
    else:
        with multiprocessing.Pool(workers, initializer=_quiet) as pool:
            rows = pool.map(_job, tasks, chunksize=max(1, len(tasks) // (workers * 8)))
    meta = pd.DataFrame(rows, columns=METADATA_COLUMNS)
    labels = meta[["id", "target"]]
    labels.to_csv(out / "test_labels.csv", index=False)
    labels.assign(target=0.5).to_csv(out / "sample_submission.csv", index=False)
    meta.to_csv(out / METADATA, index=False)
    return meta, time.time() - started


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
