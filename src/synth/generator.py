"""Synthetic SETI cadences in the exact Kaggle layout, made with setigen (the command: `python -m src.synth`).

Writes ``train/{id[0]}/{id}.npy``, ``test/{id[0]}/{id}.npy`` (float16, shape
(6, 273, 256), cadence ABACAD: 0, 2, 4 ON target, 1, 3, 5 OFF),
``train_labels.csv``, ``sample_submission.csv``, ``test_labels.csv`` and
``metadata.csv``. Needles (target=1) are only in the ON observations, on a
path continuous over the whole cadence; hard negatives hold interference in
all six observations (``rfi``) or only in the OFF ones (``off``). The same
config and seed give byte-identical files whatever the number of workers.

Two options, both off by default (and then no extra random draw is made, so
the files are those of the generator before they existed):

- ``partial_share``: that share of the needles is present in only part of the
  cadence, as the Kaggle data allows ("some or all" of the ON observations),
  always absent from the OFF ones: ``leaves_window`` (a steep path, not
  redrawn to fit, enters or leaves the 256 channels), ``switches`` (switched on
  late and/or off early) or ``subset`` (in one or two ON observations only).
  metadata.csv gains ``n_on_present`` (ON observations holding some visible
  part of the needle) and ``partial`` (none or the kind).
- ``wide_rfi``: interference in all six observations drawn as widely as the
  needles: every needle shape with a needle's drift (only a quarter nearly
  still), plus ``wide`` (6-20 channels) and ``fading`` (faint in one or two
  OFF observations, fading and returning); metadata.csv gains ``rfi_path``,
  ``rfi_width`` and ``rfi_off_level`` and ``rfi_shape`` names the variant.
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
from src.core.cli import ignore_interrupts, progress_bar
from src.core.files import write_npy_atomically
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
# Partial needles (SynthConfig.partial_share), shared with the injection.
PARTIAL_KINDS = ("leaves_window", "switches", "subset")
SWITCH_MODES = ("on_late", "off_early", "burst")
LEAVING_DRIFT = (0.4, 1.0)  # leaves_window: |drift| in this share of max_drift (steep enough to leave)
MIN_VISIBLE_ROWS = 60  # a present ON observation holds >= this many rows of the needle, so does its dark part
SIGNAL_PAD_CHANNELS = 3 * WIDTH_CHANNELS[1] + 2  # farthest a needle's profile reaches from its centre (_inject's pad)
# Interference drawn as widely as needles (SynthConfig.wide_rfi), shared with the injection.
RFI_VARIANTS = ("wide", "fading")  # on top of the path shapes
RFI_WIDE_CHANNELS = (6.0, 20.0)  # FWHM of a wide one
RFI_NEAR_ZERO_SHARE = 0.5  # this share is drawn near_zero (itself half nearly still): a quarter in all
RFI_FAINT_LEVEL = (0.1, 0.5)  # fading: the faint OFF observations' level, relative to the nominal
RFI_STEADY_LEVEL = (0.7, 1.0)  # fading: every other observation's level
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
PARTIAL_COLUMNS = ["n_on_present", "partial"]  # with partial_share > 0
WIDE_RFI_COLUMNS = ["rfi_path", "rfi_width", "rfi_off_level"]  # with wide_rfi


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
    partial_share: float = 0.0  # share of needles present in only part of the cadence (PARTIAL_KINDS)
    wide_rfi: bool = False  # all-six interference drawn as widely as needles (RFI_VARIANTS too)

    def __post_init__(self):
        """Fail early on settings that cannot produce a dataset."""
        object.__setattr__(self, "shapes", tuple(self.shapes))
        bad = [s for s in self.shapes if s not in SHAPES]
        if not self.shapes or bad:
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {self.shapes}")
        for name in ("pos_frac", "rfi_frac", "off_frac", "pos_rfi_frac", "noise_jitter", "partial_share"):
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
        object.__setattr__(self, "wide_rfi", bool(self.wide_rfi))


def metadata_columns(cfg: SynthConfig) -> list[str]:
    """metadata.csv's columns: today's, plus those of the options switched on (none by default)."""
    return (
        METADATA_COLUMNS
        + (PARTIAL_COLUMNS if cfg.partial_share > 0 else [])
        + (WIDE_RFI_COLUMNS if cfg.wide_rfi else [])
    )


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
    """Intensity vs time: constant, or an on/off square pulse train for 'pulsed'; times a switch-on window
    (`t_window`, partial needles) and a fade across the cadence (`fade`, fading interference) when p has them."""
    if p["shape"] != "pulsed":
        base = import_setigen().constant_t_profile(level=level)
    else:
        period, duty, phase = p["pulse_period"], p["duty"], p["phase"]

        def base(t):
            return level * (np.mod(np.asarray(t) - phase, period) < duty * period)

    if "t_window" not in p and "fade" not in p:
        return base
    t_on, t_off = p.get("t_window", (-np.inf, np.inf))
    centres, levels = p.get("fade", ((0.0,), (1.0,)))

    def profile(t):
        t = np.asarray(t, dtype=float)
        window = (t >= t_on) & (t < t_off)
        return base(t) * np.ones_like(t) * window * np.interp(t, centres, levels)

    return profile


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


def _fit_ok(counts: np.ndarray, dark: int) -> bool:
    """A partial needle worth the name: each ON observation holds none of it or >= MIN_VISIBLE_ROWS rows of it,
    it is seen for >= MIN_VISIBLE_ROWS rows in all and missing for as many (no sliver either way)."""
    shown = counts[counts > 0]
    return bool(shown.size and (shown >= MIN_VISIBLE_ROWS).all() and dark >= MIN_VISIBLE_ROWS)


def _present(counts: np.ndarray) -> tuple[int, ...]:
    """The ON observations (cadence indices) holding some of the needle, from rows per ON observation."""
    return tuple(int(o) for o, c in zip(ON_OBSERVATIONS, counts, strict=True) if c > 0)


def _switch_window(rng, cfg: SynthConfig) -> tuple[tuple[float, float], np.ndarray]:
    """A switch-on window (s of cadence time) cutting a needle on late, off early or both (a burst), inside the
    ON observations; and the needle's rows per ON observation."""
    times = _obs_times(cfg, ON_OBSERVATIONS)  # ON rows in time order
    n = len(times)
    edges = np.append(times - DT_S / 2, np.inf)  # switch between rows, never on a row's own time
    for _ in range(1000):
        mode = str(rng.choice(SWITCH_MODES))
        first = int(rng.integers(MIN_VISIBLE_ROWS, n - MIN_VISIBLE_ROWS)) if mode != "off_early" else 0
        last = n if mode == "on_late" else int(rng.integers(first + MIN_VISIBLE_ROWS, n + 1))
        if mode == "off_early" and last > n - MIN_VISIBLE_ROWS:
            continue
        on = np.zeros(n, bool)
        on[first:last] = True
        counts = on.reshape(len(ON_OBSERVATIONS), TCHANS).sum(axis=1)
        if _fit_ok(counts, int((~on).sum())):
            return (float(edges[first]), float(edges[last])), counts
    raise RuntimeError("could not draw a switch-on window")


def _leaving_signal(rng, cfg: SynthConfig, shape: str) -> tuple[dict, np.ndarray]:
    """Shape parameters and start of a steep needle that enters or leaves the window during the ON observations
    (the path is not redrawn until it fits: it leaves); its rows inside the window per ON observation. An ON
    observation without it has its centre beyond SIGNAL_PAD_CHANNELS of the window throughout (nothing of its
    profile is drawn there)."""
    times = _obs_times(cfg, ON_OBSERVATIONS)
    for _ in range(1000):
        p = _sample_shape_params(rng, cfg, shape, near_zero=False)
        steep = rng.uniform(*LEAVING_DRIFT) * cfg.max_drift * (SINE_DRIFT_SCALE if shape == "sine" else 1.0)
        p["drift_rate"] = float(steep if rng.random() < 0.5 else -steep)
        g = (_path(p, 0.0)(times) / DF_HZ).reshape(len(ON_OBSERVATIONS), TCHANS)
        for _ in range(20):
            f_start = rng.uniform(-g.max(), FCHANS - 1 - g.min())
            centre = f_start + g
            inside = (centre >= 0) & (centre <= FCHANS - 1)
            far = (centre < -SIGNAL_PAD_CHANNELS) | (centre > FCHANS - 1 + SIGNAL_PAD_CHANNELS)
            counts = inside.sum(axis=1)
            absent_far = all(far[k].all() for k in range(len(counts)) if counts[k] == 0)
            if absent_far and _fit_ok(counts, int((~inside).sum())):
                p["f_start"] = float(f_start)
                return p, counts
    raise RuntimeError(f"could not draw a {shape} path leaving the window")


def sample_partial_signal(rng, cfg: SynthConfig, shape: str, kind: str) -> dict:
    """A needle present in only part of the cadence (`kind` from PARTIAL_KINDS), never in the OFF observations.

    leaves_window: a steep path entering or leaving the window; switches: a path inside the window in every ON
    observation, switched on late, off early or both; subset: a path continuous over the cadence, inside the
    window in one or two ON observations and absent from the others. Returns the parameters with `present`
    (the ON observations holding some of it) and `partial` (the kind).
    """
    if kind == "subset":
        k = int(rng.integers(1, len(ON_OBSERVATIONS)))
        present = tuple(sorted(int(o) for o in rng.choice(ON_OBSERVATIONS, size=k, replace=False)))
        p = sample_signal(rng, cfg, shape, present)
    elif kind == "switches":
        p = sample_signal(rng, cfg, shape, ON_OBSERVATIONS)
        p["t_window"], counts = _switch_window(rng, cfg)
        present = _present(counts)
    elif kind == "leaves_window":
        p, counts = _leaving_signal(rng, cfg, shape)
        present = _present(counts)
        p["snr"] = _sample_snr(rng, cfg)
        p["width"] = float(rng.uniform(*WIDTH_CHANNELS) * DF_HZ)
        p["f_profile"] = str(rng.choice(list(F_PROFILES)))
    else:
        raise ValueError(f"partial kind must be one of {PARTIAL_KINDS}, got {kind!r}")
    p.update(present=present, partial=kind)
    return p


def sample_rfi_signal(rng, cfg: SynthConfig) -> dict:
    """Interference for all six observations drawn as widely as needles (SynthConfig.wide_rfi).

    `rfi_shape` is one of the configured path shapes or a variant of RFI_VARIANTS on one of them (`rfi_path`):
    `wide` (FWHM RFI_WIDE_CHANNELS) or `fading` (one or two OFF observations at RFI_FAINT_LEVEL of the level, the
    others at RFI_STEADY_LEVEL, interpolated between observation centres: it fades and returns). A needle's drift,
    but RFI_NEAR_ZERO_SHARE of them drawn like today's interference (half of those nearly still).
    """
    rfi_shape = str(rng.choice(list(cfg.shapes) + list(RFI_VARIANTS)))
    path = rfi_shape if rfi_shape in SHAPES else str(rng.choice(cfg.shapes))
    near_zero = bool(rng.random() < RFI_NEAR_ZERO_SHARE)
    q = sample_signal(rng, cfg, path, ALL_OBSERVATIONS, near_zero=near_zero)
    q.update(rfi_shape=rfi_shape, rfi_path=path, off_level=1.0)
    if rfi_shape == "wide":
        q["width"] = float(rng.uniform(*RFI_WIDE_CHANNELS) * DF_HZ)
    elif rfi_shape == "fading":
        levels = rng.uniform(*RFI_STEADY_LEVEL, size=N_OBS)
        faint = rng.choice(OFF_OBSERVATIONS, size=int(rng.integers(1, 3)), replace=False)
        levels[faint] = rng.uniform(*RFI_FAINT_LEVEL, size=len(faint))
        centres = obs_start_times(cfg) + TCHANS * DT_S / 2
        q["fade"] = (tuple(float(c) for c in centres), tuple(float(v) for v in levels))
        q["off_level"] = float(levels[list(OFF_OBSERVATIONS)].min())
    return q


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
    cfg: SynthConfig,
    seed_or_rng,
    target: int,
    *,
    shape=None,
    interference=None,
    partial=None,
    noise: bool = True,
) -> tuple[np.ndarray, dict]:
    """One cadence (float16, (6, 273, 256)) and its metadata.

    `shape` / `interference` / `partial` force the needle shape / interference
    kind / partial kind ("none" or one of PARTIAL_KINDS) (otherwise drawn from
    cfg); `noise=False` returns only the injected signal (in noise-std units,
    not normalised), with the same draws, for tests. The metadata dict holds
    every column of every option; write_dataset keeps those of cfg's.
    """
    rng = np.random.default_rng(seed_or_rng)
    cadence = _make_frames(cfg, rng, noise)
    shape = shape or str(rng.choice(cfg.shapes))
    interference = interference or _draw_interference(rng, cfg, target)
    if interference not in INTERFERENCE:
        raise ValueError(f"interference must be one of {INTERFERENCE}")
    if partial not in (None, "none", *PARTIAL_KINDS):
        raise ValueError(f"partial must be none or one of {PARTIAL_KINDS}, got {partial!r}")
    meta = dict.fromkeys(METADATA_COLUMNS[2:] + PARTIAL_COLUMNS + WIDE_RFI_COLUMNS, np.nan)
    meta.update(target=int(target), shape="", f_profile="", interference=interference, rfi_shape="")
    meta.update(n_on_present=0, partial="", rfi_path="")
    if target:
        if partial is None:  # drawn only when the option is on: no extra draw by default
            partial = "none"
            if cfg.partial_share > 0 and rng.random() < cfg.partial_share:
                partial = str(rng.choice(PARTIAL_KINDS))
        if partial == "none":
            p = sample_signal(rng, cfg, shape, ON_OBSERVATIONS)
            present = ON_OBSERVATIONS
        else:
            p = sample_partial_signal(rng, cfg, shape, partial)
            present = p["present"]
        _inject(cadence, p, present)
        meta.update({k: p[k] for k in ("shape", "snr", "drift_rate", "f_start", "width", "f_profile")})
        meta.update(n_on_present=len(present), partial=partial)
    if interference != "none":
        frames = ALL_OBSERVATIONS if interference == "rfi" else OFF_OBSERVATIONS
        if interference == "rfi" and cfg.wide_rfi:
            q = sample_rfi_signal(rng, cfg)
        else:
            q = sample_signal(rng, cfg, str(rng.choice(cfg.shapes)), frames, near_zero=interference == "rfi")
        _inject(cadence, q, frames)
        meta.update(rfi_shape=q["shape"], rfi_snr=q["snr"], rfi_drift_rate=q["drift_rate"], rfi_f_start=q["f_start"])
        meta.update(rfi_shape=q.get("rfi_shape", q["shape"]), rfi_path=q.get("rfi_path", q["shape"]))
        meta.update(rfi_width=q["width"], rfi_off_level=q.get("off_level", 1.0))
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
    """Pool initializer: Ctrl-C left to the parent, astropy/blimpy/setigen warnings silenced in workers."""
    ignore_interrupts()
    warnings.simplefilter("ignore")
    import_setigen()


def _job(task) -> dict:
    """Make one cadence, save it at its Kaggle path, return its metadata row."""
    out_dir, cfg, split, index, sid, target = task
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, meta = make_cadence(cfg, sample_rng(cfg, split, index), target)
    write_npy_atomically(x, Path(out_dir) / split / sid[0] / f"{sid}.npy")
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
    meta = pd.DataFrame(_run_jobs(tasks, workers, progress), columns=metadata_columns(cfg))
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
