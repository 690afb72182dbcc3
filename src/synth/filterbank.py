"""Realistic Breakthrough Listen filterbank cadences with known signals, for testing and timing a filterbank search
(a de-Doppler hit search plus an ON/OFF cadence filter, like turbo_seti). The command:

    python -m src.synth.filterbank --out input/fb --seed 0     # 8 cadences: 48 .h5 files, 4.8 GB, ~21 s on 2 cores

Each cadence is six observation files, ABACAD (ON, OFF, ON, OFF, ON, OFF), in `cadence_NNN/`, named
`obs{i}_{ON|OFF}_{source}.h5` (or `.fil`), with the high-resolution product's geometry (2.79 Hz x 18.25 s, `nfpc`
fine channels per coarse channel, descending frequency) and true headers: the target's name for ON, another name
for each OFF, `tstart` advancing by the observation plus a 15-30 s slew. One coarse channel is built and written at
a time, and each signal touches only the channels it crosses, so memory stays flat in the file size.

Per coarse channel: chi-squared noise at a level drawn from real GBT statistics (setigen's
`Frame.add_noise_from_obs`), a polyphase-filterbank bandpass (flat top, rolling off towards both edges, a slight
ripple) multiplying noise and signals alike, and a DC spike at the centre fine channel (`nfpc // 2`).

Signals are setigen paths on the cadence's clock (t = 0 at the first row of observation 0), so a signal's frequency
at any observation follows from its path through the observations and slews before it. Doppler smearing spreads a
drift of more than a channel per row over the channels it crosses in that row, conserving the row's power.
- needles, in the three ON observations only: linear, sine (a linear drift with a sinusoidal wobble), quadratic
  (the drift rate changing over the cadence) or pulsed (linear, on and off in time), equally likely among those
  --shapes names (default all four); |drift| up to --max-drift, both signs, each of the bins 0-1/8, 1/8-1/4,
  1/4-1/2 and 1/2-1 of it equally likely, plus some near zero; kept inside the inner 90% of their coarse channel
  during the ON observations.
- RFI, in all six observations: zero-drift lines, drifting lines (one drift across the cadence), and broadband
  bursts (a row or two of raised power over a whole coarse channel in one to three observations).
- RFI near needles (--rfi-near-needles SHARE, default 0: none): for round(SHARE x the cadence's needles) needles,
  picked at random, one more line in all six observations and the needle's coarse channel that meets the
  needle's path during an ON observation: at a moment drawn uniformly in one of the three ON observations it is
  within NEAR_RFI_CHANNELS (30) channels of the needle (offset uniform in +-30). A zero-drift line (45 : 40 odds,
  as for RFI) sits at a frequency the needle passes, a drifting line (a drift drawn as for any RFI) crosses or
  passes the needle's path; SNR as for RFI (10-500). Needles in cadences with all-six RFI beside their path, that
  a search must still find. These lines follow the cadence's other signals (signal_id from coarse_channels x
  (needles + rfi) on), one per chosen needle, in the needles' order. They and the choice of needles come from a
  generator stream of their own, so every other draw, and the files and truth without them, stay the same.

SNR is setigen's: a signal of SNR s has a per-pixel level of s * noise_std / sqrt(rows) (`Frame.get_intensity`),
i.e. s is the SNR of its power summed over one observation's rows, relative to the noise of one pixel; noise_std
is that observation's and coarse channel's, and the bandpass scales both alike.

`truth.csv` holds one row per signal: cadence, signal_id, kind (needle, rfi_zero_drift, rfi_drift,
rfi_broadband), shape, snr, drift_hz_s (Hz/s at t = 0), coarse_channel, f_mhz_obs0..5 (the frequency at each
observation's start, empty where the signal is absent), chan_obs0..5 (the file's channel index there), width_hz
(FWHM), burst_rows (broadband: `obs:row` pairs), f_mhz_min_obs0..5 and f_mhz_max_obs0..5 (the lowest and the
highest frequency of the signal's path while it is present in that observation, sampled as the path is drawn:
rows x PATH_SAMPLES_PER_ROW steps over the observation's own time span; they bracket f_mhz_obs<k>, equal it for a
zero-drift line, and are empty where the signal is absent and for broadband bursts, which have no path); with
--rfi-near-needles > 0 only (so that a set made without it has no such column), a last column rfi_near: True for
a needle given a line near it, False for every other row. `catalog.csv` lists the files (`cadence,path`, relative
to it) in ABACAD order. The same settings give byte-identical files, whatever the number of workers; --shapes
naming all four shapes (in any order) and --rfi-near-needles 0 give the same set as leaving them out.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from src.core.cadence import CADENCE_ORDER, DF_HZ, DT_S, ON_OBSERVATIONS
from src.core.cli import ErrorLineParser, ignore_interrupts, run_cli
from src.core.errors import ConfigError, incomplete_set_at
from src.core.files import write_atomically, write_csv_atomically
from src.data.filterbank import FilterbankHeader, with_path, write_fil, write_h5
from src.synth.libraries import import_setigen

N_OBS = len(CADENCE_ORDER)
ALL_OBSERVATIONS = tuple(range(N_OBS))
FORMATS = {"h5": write_h5, "fil": write_fil}
BANDPASSES = ("pfb", "flat")
CATALOG, TRUTH = "catalog.csv", "truth.csv"
FCH1_MHZ = 8421.38671875  # channel 0 of a GBT C-band node's file; each cadence moves down by whole coarse channels
FCH1_COARSE_SHIFTS = 32
MJD_RANGE = (58000.0, 60500.0)
SLEW_S = (15.0, 30.0)
TELESCOPE_GBT = 6
MIN_FINE_CHANNELS = 256
EDGE_FRACTION = 0.05  # needles and drifting RFI keep out of this share of the coarse channel at each edge
# Drift rates: bins as shares of --max-drift, each drawn equally often, and a share of near-zero drifts
DRIFT_BINS = (0.0, 0.125, 0.25, 0.5, 1.0)
NEAR_ZERO_SHARE = 0.1
NEAR_ZERO_HZ_S = 0.05  # a few of turbo_seti's drift steps (df / observation length = 0.0096 Hz/s)
NEEDLE_SHAPES = ("linear", "sine", "quadratic", "pulsed")
SINE_WOBBLE_RATE = (0.05, 0.25)  # the wobble's peak rate, as a share of --max-drift
SINE_PERIOD_OBSERVATIONS = (0.5, 3.0)
QUADRATIC_RATE_CHANGE = (0.1, 0.5)  # the rate's change over the cadence, as a share of --max-drift
PULSE_PERIOD_ROWS = (2.0, 6.0)
PULSE_DUTY = (0.3, 0.7)
NEEDLE_WIDTH_CHANNELS = (1.5, 3.0)  # FWHM
RFI_WIDTH_CHANNELS = (1.5, 6.0)
RFI_KINDS = ("rfi_zero_drift", "rfi_drift", "rfi_broadband")
RFI_SHARES = (0.45, 0.4, 0.15)
RFI_SNR = (10.0, 500.0)
BURST_OBSERVATIONS = (1, 3)
# Bandpass of one coarse channel: gain = floor + (1 - floor) / (1 + (|x| / knee)^(2 steepness)) with x the position
# in the channel (-0.5..0.5), times a slight tilt and ripple; drawn once per cadence (one filterbank, one receiver)
BANDPASS_KNEE = (0.43, 0.47)
BANDPASS_STEEPNESS = (6.0, 10.0)
BANDPASS_FLOOR = (0.03, 0.08)
BANDPASS_TILT = (-0.04, 0.04)
BANDPASS_RIPPLE = (0.005, 0.02)
BANDPASS_RIPPLE_CYCLES = (4.0, 12.0)
DC_SPIKE_FACTOR = (4.0, 10.0)  # the centre channel's level over its neighbours'
NOISE_JITTER = 0.03  # an observation's noise level differs from its cadence's by up to this share (pointing)
PATH_SAMPLES_PER_ROW = 8
# RFI near needles: a line within this many channels of the needle's path at a moment of an ON observation
NEAR_RFI_CHANNELS = 30.0
NEAR_RFI_KINDS = ("rfi_zero_drift", "rfi_drift")
NEAR_RFI_SHARES = (0.45 / 0.85, 0.4 / 0.85)  # RFI_SHARES' odds of the two line kinds
NEAR_RFI_RATE_TRIES = 20  # drifts drawn for a drifting line before settling for a zero-drift one that fits
PLAN_STREAM, NOISE_STREAM, NEAR_STREAM = 0, 1, 2
TRUTH_COLUMNS = [
    "cadence",
    "signal_id",
    "kind",
    "shape",
    "snr",
    "drift_hz_s",
    "coarse_channel",
    *[f"f_mhz_obs{i}" for i in ALL_OBSERVATIONS],
    *[f"chan_obs{i}" for i in ALL_OBSERVATIONS],
    "width_hz",
    "burst_rows",
    *[f"f_mhz_min_obs{i}" for i in ALL_OBSERVATIONS],
    *[f"f_mhz_max_obs{i}" for i in ALL_OBSERVATIONS],
]
RFI_NEAR_COLUMN = "rfi_near"  # only with --rfi-near-needles > 0


# ---------------------------------------------------------------- settings ---


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the command was asked for; checked on creation so a bad value fails before anything is written."""

    out: Path
    n_cadences: int = 8
    coarse_channels: int = 2
    fine_channels: int = 1 << 20
    rows: int = 16
    format: str = "h5"
    bandpass: str = "pfb"  # "flat": no bandpass shape (the DC spike stays); every other draw is the same
    seed: int = 0
    max_drift: float = 4.0
    snr_min: float = 5.0
    snr_max: float = 50.0
    needles: int = 19  # per coarse channel per cadence: 8 x 2 x 19 = 304 needles at the defaults
    rfi: int = 12
    overwrite: bool = False
    workers: int = 1
    shapes: tuple[str, ...] | str = NEEDLE_SHAPES  # a tuple or "linear,sine"; kept as a tuple in NEEDLE_SHAPES' order
    rfi_near_needles: float = 0.0  # the share of needles given an all-six line near their path

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "shapes", parse_shapes(self.shapes))
        if not (math.isfinite(self.rfi_near_needles) and 0 <= self.rfi_near_needles <= 1):
            raise ConfigError(f"--rfi-near-needles must be a share from 0 to 1, got {self.rfi_near_needles}")
        for name, least in (("n_cadences", 1), ("coarse_channels", 1), ("fine_channels", MIN_FINE_CHANNELS)):
            if getattr(self, name) < least:
                raise ConfigError(f"{flag_name(name)} must be at least {least}, got {getattr(self, name)}")
        for name, least in (("rows", 2), ("needles", 0), ("rfi", 0), ("workers", 1)):
            if getattr(self, name) < least:
                raise ConfigError(f"{flag_name(name)} must be at least {least}, got {getattr(self, name)}")
        if self.bandpass not in BANDPASSES:
            raise ConfigError(f"--bandpass must be one of {', '.join(BANDPASSES)}, got {self.bandpass!r}")
        if self.format not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if not (math.isfinite(self.max_drift) and self.max_drift >= 0):
            raise ConfigError(f"--max-drift must be a finite rate >= 0 Hz/s, got {self.max_drift}")
        if not (math.isfinite(self.snr_max) and 0 < self.snr_min <= self.snr_max):
            raise ConfigError(f"need 0 < --snr-min <= --snr-max, got {self.snr_min} and {self.snr_max}")
        self._check_drift_fits()

    def _check_drift_fits(self) -> None:
        """A path at --max-drift must fit inside the inner 90% of a coarse channel for the whole cadence."""
        span = self.max_drift * cadence_length_s(self.rows, SLEW_S[1]) / DF_HZ
        room = self.fine_channels - 1 - 2 * edge_channels(self.fine_channels, RFI_WIDTH_CHANNELS[1] * DF_HZ)
        if span > room:
            raise ConfigError(
                f"--max-drift {self.max_drift} Hz/s moves a signal {span:.0f} channels over the cadence, more than "
                f"the {room} channels inside a coarse channel's edges: lower --max-drift or --rows, or raise "
                f"--fine-channels"
            )


def flag_name(name: str) -> str:
    """A settings field as its command-line flag: snr_min -> --snr-min."""
    return "--" + name.replace("_", "-")


def parse_shapes(shapes: str | Sequence[str]) -> tuple[str, ...]:
    """The needle shapes named (a comma-separated string or a sequence), in NEEDLE_SHAPES' order: the order given
    does not change the draw, and all four give the default set."""
    names = [n.strip() for n in (shapes.split(",") if isinstance(shapes, str) else shapes)]
    unknown = [n for n in names if n not in NEEDLE_SHAPES]
    if unknown or not names:
        raise ConfigError(
            f"--shapes takes a comma-separated list of {', '.join(NEEDLE_SHAPES)}, got {','.join(names)!r}"
        )
    return tuple(shape for shape in NEEDLE_SHAPES if shape in names)


def observation_length_s(rows: int) -> float:
    return rows * DT_S


def cadence_length_s(rows: int, slew_s: float) -> float:
    """From the first row of the first observation to the end of the last."""
    return N_OBS * observation_length_s(rows) + (N_OBS - 1) * slew_s


def edge_channels(fine_channels: int, width_hz: float) -> int:
    """Channels kept free at each edge of a coarse channel: its outer 5% plus the signal's own width."""
    return math.ceil(EDGE_FRACTION * fine_channels) + math.ceil(2 * width_hz / DF_HZ) + 1


# ----------------------------------------------------------------- signals ---


@dataclasses.dataclass(frozen=True)
class Signal:
    """One injected signal; its path runs on the cadence's clock, whichever observations it appears in."""

    signal_id: int
    kind: str
    shape: str
    coarse_channel: int
    observations: tuple[int, ...]
    snr: float
    rate: float = 0.0  # Hz/s at t = 0
    f0_hz: float = 0.0  # frequency at t = 0
    width_hz: float = DF_HZ  # FWHM
    wobble: tuple[float, float] = (0.0, 1.0)  # sine: amplitude (Hz, signed), period (s)
    acceleration: float = 0.0  # quadratic: Hz/s^2
    pulse: tuple[float, float, float] = (1.0, 1.0, 0.0)  # pulsed: period (s), duty cycle, phase (s)
    burst_rows: tuple[tuple[int, int], ...] = ()  # broadband: (observation, row)
    near: int | None = None  # a needle: the signal_id of the line placed near it; such a line: the needle's

    def path(self):
        """Frequency (Hz) against cadence time (s), from setigen's path functions; its slope at t = 0 is `rate`."""
        stg = import_setigen()
        if self.shape == "sine":
            amplitude, period = self.wobble
            return stg.sine_path(self.f0_hz, self.rate - 2 * np.pi * amplitude / period, period, amplitude)
        linear = stg.constant_path(self.f0_hz, self.rate)
        if self.shape == "quadratic":
            bend = stg.squared_path(0.0, self.acceleration)
            return lambda t: linear(t) + bend(t)
        return linear

    def t_profile(self, level: float, t0_s: float):
        """Level against an observation's own time; a pulsed needle switches on and off on the cadence's clock."""
        if self.shape != "pulsed":
            return import_setigen().constant_t_profile(level=level)
        period, duty, phase = self.pulse
        return lambda t: level * (np.mod(np.asarray(t) + t0_s - phase, period) < duty * period)


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def draw_rate(rng: np.random.Generator, max_drift: float) -> float:
    """A drift rate (Hz/s): near zero for a share, else uniform in one of the bins of --max-drift picked evenly."""
    if rng.random() < NEAR_ZERO_SHARE:
        magnitude = rng.uniform(0.0, min(NEAR_ZERO_HZ_S, max_drift))
    else:
        low, high = DRIFT_BINS[(b := rng.integers(len(DRIFT_BINS) - 1))], DRIFT_BINS[b + 1]
        magnitude = max_drift * rng.uniform(low, high)
    return float(magnitude * rng.choice((-1.0, 1.0)))


def _shape_params(rng: np.random.Generator, shape: str, rate: float, settings: Settings, span_s: float) -> dict:
    """Shape-specific parameters; a wobble or bend leans towards zero so |rate| never passes --max-drift."""
    if shape == "sine":
        peak_rate = settings.max_drift * rng.uniform(*SINE_WOBBLE_RATE)
        period = observation_length_s(settings.rows) * rng.uniform(*SINE_PERIOD_OBSERVATIONS)
        return {"wobble": (math.copysign(peak_rate * period / (2 * np.pi), rate or 1.0), period)}
    if shape == "quadratic":
        change = settings.max_drift * rng.uniform(*QUADRATIC_RATE_CHANGE) * rng.choice((-1.0, 1.0))
        if abs(rate + change) > settings.max_drift:
            change = -change
        return {"acceleration": float(change / span_s)}
    if shape == "pulsed":
        period = DT_S * rng.uniform(*PULSE_PERIOD_ROWS)
        return {"pulse": (float(period), float(rng.uniform(*PULSE_DUTY)), float(rng.uniform(0.0, period)))}
    return {}


def observation_times(starts_s: Sequence[float], observations: Sequence[int], rows: int) -> np.ndarray:
    """Cadence times sampling the chosen observations finely enough to bound a path's channels."""
    local = np.linspace(0.0, observation_length_s(rows), rows * PATH_SAMPLES_PER_ROW + 1)
    return np.concatenate([starts_s[i] + local for i in observations])


def place(rng: np.random.Generator, signal: Signal, starts_s, settings: Settings, top_hz: float) -> Signal:
    """The signal with f0_hz drawn so its path stays inside its coarse channel's edges while it is present."""
    fine = settings.fine_channels
    times = observation_times(starts_s, signal.observations, settings.rows)
    offsets = -(signal.path()(times) - signal.f0_hz) / DF_HZ  # channels move opposite to frequency (foff < 0)
    edge = edge_channels(fine, signal.width_hz)
    start = rng.uniform(edge - offsets.min(), fine - 1 - edge - offsets.max())
    return dataclasses.replace(signal, f0_hz=float(top_hz - start * DF_HZ))


def draw_needle(rng, settings: Settings, starts_s, top_hz: float, coarse: int, signal_id: int) -> Signal:
    """A needle of a random shape, in the ON observations only, placed to stay inside its coarse channel there."""
    shape = settings.shapes[rng.integers(len(settings.shapes))]
    rate = draw_rate(rng, settings.max_drift)
    span_s = starts_s[-1] + observation_length_s(settings.rows)
    needle = Signal(
        signal_id=signal_id,
        kind="needle",
        shape=shape,
        coarse_channel=coarse,
        observations=ON_OBSERVATIONS,
        snr=log_uniform(rng, settings.snr_min, settings.snr_max),
        rate=rate,
        width_hz=float(DF_HZ * rng.uniform(*NEEDLE_WIDTH_CHANNELS)),
        **_shape_params(rng, shape, rate, settings, span_s),
    )
    return place(rng, needle, starts_s, settings, top_hz)


def draw_rfi(rng, settings: Settings, starts_s, top_hz: float, coarse: int, signal_id: int) -> Signal:
    """Interference of a random kind: a line on one path through all six observations, or a burst of a few rows."""
    kind = str(rng.choice(RFI_KINDS, p=RFI_SHARES))
    snr = log_uniform(rng, *RFI_SNR)
    if kind == "rfi_broadband":
        count = rng.integers(BURST_OBSERVATIONS[0], BURST_OBSERVATIONS[1] + 1)
        chosen = tuple(sorted(int(i) for i in rng.choice(N_OBS, size=count, replace=False)))
        burst = []
        for obs in chosen:
            first = int(rng.integers(settings.rows - 1))
            burst += [(obs, row) for row in range(first, first + int(rng.integers(1, 3)))]
        return Signal(signal_id, kind, "burst", coarse, chosen, snr, width_hz=np.nan, burst_rows=tuple(burst))
    rate = 0.0 if kind == "rfi_zero_drift" else draw_rate(rng, settings.max_drift)
    width = float(DF_HZ * rng.uniform(*RFI_WIDTH_CHANNELS))
    shape = "constant" if kind == "rfi_zero_drift" else "linear"
    line = Signal(signal_id, kind, shape, coarse, ALL_OBSERVATIONS, snr, rate=rate, width_hz=width)
    return place(rng, line, starts_s, settings, top_hz)


def fits(signal: Signal, starts_s, settings: Settings, top_hz: float) -> bool:
    """Whether the signal's path stays inside its coarse channel's edges while it is present (as `place` keeps it)."""
    times = observation_times(starts_s, signal.observations, settings.rows)
    channels = (top_hz - signal.path()(times)) / DF_HZ
    edge = edge_channels(settings.fine_channels, signal.width_hz)
    return bool(channels.min() >= edge and channels.max() <= settings.fine_channels - 1 - edge)


def draw_near_rfi(rng, settings: Settings, starts_s, top_hz: float, needle: Signal, signal_id: int) -> Signal:
    """A line in all six observations and the needle's coarse channel that, at a moment drawn in one of the ON
    observations, is within NEAR_RFI_CHANNELS of the needle: zero-drift (a frequency the needle passes) or
    drifting (crossing or passing its path). A drifting line is redrawn until it keeps inside the coarse channel's
    edges, and becomes a zero-drift one if none does; a zero-drift line nearer an edge than allowed moves inwards,
    which keeps it within NEAR_RFI_CHANNELS (the needle's own edge margin is at most 9 channels narrower)."""
    kind = str(rng.choice(NEAR_RFI_KINDS, p=NEAR_RFI_SHARES))
    snr = log_uniform(rng, *RFI_SNR)
    width = float(DF_HZ * rng.uniform(*RFI_WIDTH_CHANNELS))
    obs = ON_OBSERVATIONS[rng.integers(len(ON_OBSERVATIONS))]
    meet_s = starts_s[obs] + observation_length_s(settings.rows) * rng.uniform()
    meet_hz = float(needle.path()(meet_s)) + DF_HZ * rng.uniform(-NEAR_RFI_CHANNELS, NEAR_RFI_CHANNELS)
    line = Signal(signal_id, "rfi_zero_drift", "constant", needle.coarse_channel, ALL_OBSERVATIONS, snr)
    line = dataclasses.replace(line, width_hz=width, near=needle.signal_id)
    if kind == "rfi_drift":
        for _ in range(NEAR_RFI_RATE_TRIES):
            rate = draw_rate(rng, settings.max_drift)
            drifting = dataclasses.replace(line, kind=kind, shape="linear", rate=rate, f0_hz=meet_hz - rate * meet_s)
            if rate != 0 and fits(drifting, starts_s, settings, top_hz):
                return drifting
    edge = edge_channels(settings.fine_channels, width)
    channel = min(max((top_hz - meet_hz) / DF_HZ, edge), settings.fine_channels - 1 - edge)
    return dataclasses.replace(line, f0_hz=float(top_hz - channel * DF_HZ))


def add_near_rfi(settings: Settings, plan_index: int, signals: list[Signal], starts_s, top_of) -> list[Signal]:
    """The signals with lines near round(--rfi-near-needles x needles) of the needles, from the cadence's own
    NEAR_STREAM (so the other draws do not change), each line after all the others; `top_of(coarse)` is a coarse
    channel's top frequency."""
    needles = [i for i, signal in enumerate(signals) if signal.kind == "needle"]
    count = math.floor(settings.rfi_near_needles * len(needles) + 0.5)
    if count == 0:
        return signals
    rng = np.random.default_rng([settings.seed, plan_index, NEAR_STREAM])
    chosen = sorted(int(k) for k in rng.choice(len(needles), size=count, replace=False))
    signals = list(signals)
    for k in chosen:
        needle = signals[needles[k]]
        line = draw_near_rfi(rng, settings, starts_s, top_of(needle.coarse_channel), needle, len(signals))
        signals[needles[k]] = dataclasses.replace(needle, near=line.signal_id)
        signals.append(line)
    return signals


# ------------------------------------------------------------------- plans ---


@dataclasses.dataclass(frozen=True)
class Noise:
    """Chi-squared radiometer noise as setigen models it: `chi2_df` degrees of freedom scaled to mean `mean`."""

    mean: float
    std: float
    chi2_df: int

    def scaled(self, factor: float) -> Noise:
        return dataclasses.replace(self, mean=self.mean * factor, std=self.std * factor)

    def intensity(self, snr: float, rows: int) -> float:
        """A pixel level of setigen's SNR `snr` (`Frame.get_intensity`: snr * noise_std / sqrt(tchans))."""
        return snr * self.std / np.sqrt(rows)

    def draw(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        """float32 chi-squared samples (a gamma of half the degrees of freedom: the fastest exact draw)."""
        block = rng.standard_gamma(self.chi2_df / 2, size=shape, dtype=np.float32)
        block *= np.float32(2 * self.mean / self.chi2_df)
        return block


def real_noise(rng: np.random.Generator, rows: int) -> Noise:
    """A noise level from setigen's statistics of real GBT observations, scaled to this product's resolution."""
    stg = import_setigen()
    frame = stg.Frame(fchans=8, tchans=rows, df=DF_HZ, dt=DT_S, t_start=0.0, seed=rng)
    frame.add_noise_from_obs()
    return Noise(float(frame.noise_mean), float(frame.noise_std), int(frame.chi2_df))


@dataclasses.dataclass(frozen=True)
class Bandpass:
    """The polyphase filterbank's response across one coarse channel, and the DC spike at its centre."""

    knee: float
    steepness: float
    floor: float
    tilt: float
    ripple: float
    ripple_cycles: float
    ripple_phase: float
    dc_factor: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Bandpass:
        ranges = (BANDPASS_KNEE, BANDPASS_STEEPNESS, BANDPASS_FLOOR, BANDPASS_TILT, BANDPASS_RIPPLE)
        values = [float(rng.uniform(*r)) for r in (*ranges, BANDPASS_RIPPLE_CYCLES, (0, 2 * np.pi), DC_SPIKE_FACTOR)]
        return cls(*values)

    def gains(self, fine_channels: int) -> np.ndarray:
        x = (np.arange(fine_channels) + 0.5) / fine_channels - 0.5
        roll_off = self.floor + (1 - self.floor) / (1 + (np.abs(x) / self.knee) ** (2 * self.steepness))
        ripple = 1 + self.ripple * np.cos(2 * np.pi * self.ripple_cycles * x + self.ripple_phase)
        return (roll_off * (1 + self.tilt * x) * ripple).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Observation:
    index: int
    on: bool
    source_name: str
    start_s: float  # from the first row of observation 0
    tstart_mjd: float
    ra_hours: float
    dec_degrees: float

    @property
    def name(self) -> str:
        suffix = "ON" if self.on else "OFF"
        return f"obs{self.index}_{suffix}_{self.source_name}"


@dataclasses.dataclass(frozen=True)
class CadencePlan:
    """Everything drawn for one cadence; the files follow from it and their own noise seeds."""

    index: int
    fch1_mhz: float
    observations: tuple[Observation, ...]
    bandpass: Bandpass
    noise: tuple[tuple[Noise, ...], ...]  # [coarse channel][observation]
    signals: tuple[Signal, ...]

    @property
    def folder(self) -> str:
        return f"cadence_{self.index:03d}"

    def file(self, obs: Observation, fmt: str) -> str:
        return f"{self.folder}/{obs.name}.{fmt}"

    def top_hz(self, coarse: int, fine_channels: int) -> float:
        """Frequency of a coarse channel's first (highest) fine channel."""
        return self.fch1_mhz * 1e6 - coarse * fine_channels * DF_HZ


def _observations(rng: np.random.Generator, index: int, rows: int) -> tuple[Observation, ...]:
    """ABACAD pointings: the target, then three other stars a few degrees away, with slews in between."""
    mjd0 = rng.uniform(*MJD_RANGE)
    ra, dec = rng.uniform(0.0, 24.0), rng.uniform(-20.0, 80.0)
    observations, start = [], 0.0
    for i, letter in enumerate(CADENCE_ORDER):
        on = i in ON_OBSERVATIONS
        name = f"SYNTH_T{index:03d}" if on else f"SYNTH_R{index:03d}{letter}"
        ra_i = ra if on else (ra + rng.uniform(-0.3, 0.3)) % 24.0
        dec_i = dec if on else float(np.clip(dec + rng.uniform(-3.0, 3.0), -90.0, 90.0))
        observations.append(Observation(i, on, name, start, mjd0 + start / 86400.0, float(ra_i), dec_i))
        start += observation_length_s(rows) + rng.uniform(*SLEW_S)
    return tuple(observations)


def plan_cadence(settings: Settings, index: int) -> CadencePlan:
    """Draw one cadence's pointings, bandpass, noise levels and signals from (seed, index) alone."""
    rng = np.random.default_rng([settings.seed, index, PLAN_STREAM])
    fine_mhz = DF_HZ * 1e-6
    fch1 = FCH1_MHZ - int(rng.integers(FCH1_COARSE_SHIFTS)) * settings.fine_channels * fine_mhz
    observations = _observations(rng, index, settings.rows)
    bandpass = Bandpass.draw(rng)
    noise = []
    for _ in range(settings.coarse_channels):
        base = real_noise(rng, settings.rows)
        noise.append(tuple(base.scaled(rng.uniform(1 - NOISE_JITTER, 1 + NOISE_JITTER)) for _ in observations))
    plan = CadencePlan(index, float(fch1), observations, bandpass, tuple(noise), ())
    starts = [o.start_s for o in observations]
    signals = []
    for coarse in range(settings.coarse_channels):
        top = plan.top_hz(coarse, settings.fine_channels)
        for _ in range(settings.needles):
            signals.append(draw_needle(rng, settings, starts, top, coarse, len(signals)))
        for _ in range(settings.rfi):
            signals.append(draw_rfi(rng, settings, starts, top, coarse, len(signals)))
    if settings.rfi_near_needles > 0:
        signals = add_near_rfi(settings, index, signals, starts, lambda c: plan.top_hz(c, settings.fine_channels))
    return dataclasses.replace(plan, signals=tuple(signals))


# ------------------------------------------------------------------- files ---


def add_line(block: np.ndarray, signal: Signal, obs: Observation, noise: Noise, top_hz: float) -> None:
    """Add a narrowband signal to one observation's coarse-channel block, through a setigen Frame covering only
    the channels its path crosses (plus its width)."""
    stg = import_setigen()
    rows, fine = block.shape
    path = signal.path()
    local = np.linspace(0.0, observation_length_s(rows), rows * PATH_SAMPLES_PER_ROW + 1)
    channels = (top_hz - path(obs.start_s + local)) / DF_HZ
    margin = 4 * signal.width_hz / DF_HZ + 2
    lo = max(math.floor(channels.min() - margin), 0)
    hi = min(math.ceil(channels.max() + margin) + 1, fine)
    # enough copies per row for Doppler smearing to sample every channel a fast drift crosses
    smearing = max(10, math.ceil(2 * np.abs(np.diff(channels)).max() * PATH_SAMPLES_PER_ROW))
    frame = stg.Frame(fchans=hi - lo, tchans=rows, df=DF_HZ, dt=DT_S, fch1=top_hz - lo * DF_HZ, t_start=0.0)
    frame.add_signal(
        lambda t: path(obs.start_s + t),
        signal.t_profile(noise.intensity(signal.snr, rows), obs.start_s),
        stg.gaussian_f_profile(signal.width_hz),
        integrate_t_profile=signal.shape == "pulsed",
        doppler_smearing=True,
        smearing_subsamples=smearing,
    )
    block[:, lo:hi] += frame.data[:, ::-1]  # a Frame's columns ascend in frequency, the file's descend


def add_burst(block: np.ndarray, signal: Signal, obs: Observation, noise: Noise) -> None:
    rows = [row for o, row in signal.burst_rows if o == obs.index]
    block[rows, :] += np.float32(noise.intensity(signal.snr, block.shape[0]))


def coarse_block(settings: Settings, plan: CadencePlan, obs: Observation, coarse: int) -> np.ndarray:
    """One observation's coarse channel: noise plus its signals, through the bandpass, with the DC spike."""
    noise = plan.noise[coarse][obs.index]
    rng = np.random.default_rng([settings.seed, plan.index, NOISE_STREAM, obs.index, coarse])
    block = noise.draw(rng, (settings.rows, settings.fine_channels))
    top = plan.top_hz(coarse, settings.fine_channels)
    for signal in plan.signals:
        if signal.coarse_channel != coarse or obs.index not in signal.observations:
            continue
        if signal.kind == "rfi_broadband":
            add_burst(block, signal, obs, noise)
        else:
            add_line(block, signal, obs, noise, top)
    gains = plan.bandpass.gains(settings.fine_channels) if settings.bandpass == "pfb" else np.ones(block.shape[1])
    block *= gains.astype(np.float32)
    centre = settings.fine_channels // 2
    block[:, centre] += np.float32((plan.bandpass.dc_factor - 1) * gains[centre] * noise.mean)
    return block


def observation_blocks(settings: Settings, plan: CadencePlan, obs: Observation) -> Iterator[np.ndarray]:
    for coarse in range(settings.coarse_channels):
        yield coarse_block(settings, plan, obs, coarse)


def header(settings: Settings, plan: CadencePlan, obs: Observation) -> FilterbankHeader:
    return FilterbankHeader(
        path=settings.out / plan.file(obs, settings.format),
        fch1=plan.fch1_mhz,
        foff=-DF_HZ * 1e-6,
        nchans=settings.coarse_channels * settings.fine_channels,
        n_rows=settings.rows,
        tsamp=DT_S,
        tstart=obs.tstart_mjd,
        source_name=obs.source_name,
        src_raj=obs.ra_hours,
        src_dej=obs.dec_degrees,
        telescope_id=TELESCOPE_GBT,
        nfpc=settings.fine_channels,
    )


def write_observation(task: tuple[Settings, CadencePlan, int]) -> Path:
    """Write one file, whole or not at all (a temporary name renamed into place)."""
    settings, plan, index = task
    obs = plan.observations[index]
    target = header(settings, plan, obs)
    writer = FORMATS[settings.format]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # setigen and blimpy warn on import
        write_atomically(
            target.path, lambda tmp: writer(with_path(target, tmp), observation_blocks(settings, plan, obs))
        )
    return target.path


# ------------------------------------------------------------------ tables ---


def truth_rows(settings: Settings, plan: CadencePlan) -> list[dict]:
    """One row per signal: where it is at each observation's start, empty where it is absent."""
    fch1_hz, rows = plan.fch1_mhz * 1e6, []
    for signal in plan.signals:
        row = {
            "cadence": plan.index,
            "signal_id": signal.signal_id,
            "kind": signal.kind,
            "shape": signal.shape,
            "snr": signal.snr,
            "drift_hz_s": np.nan if signal.kind == "rfi_broadband" else signal.rate,
            "coarse_channel": signal.coarse_channel,
            "width_hz": signal.width_hz,
            "burst_rows": " ".join(f"{o}:{r}" for o, r in signal.burst_rows),
        }
        if settings.rfi_near_needles > 0:
            row[RFI_NEAR_COLUMN] = signal.kind == "needle" and signal.near is not None
        centre_hz = plan.top_hz(signal.coarse_channel, settings.fine_channels) - settings.fine_channels // 2 * DF_HZ
        for obs in plan.observations:
            present = obs.index in signal.observations
            f_hz = (centre_hz if signal.kind == "rfi_broadband" else signal.path()(obs.start_s)) if present else None
            row[f"f_mhz_obs{obs.index}"] = f_hz / 1e6 if present else np.nan
            row[f"chan_obs{obs.index}"] = round((fch1_hz - f_hz) / DF_HZ) if present else None
            low, high = path_span_hz(signal, obs, settings.rows, f_hz) if present else (np.nan, np.nan)
            row[f"f_mhz_min_obs{obs.index}"], row[f"f_mhz_max_obs{obs.index}"] = low / 1e6, high / 1e6
        rows.append(row)
    return rows


def path_span_hz(signal: Signal, obs: Observation, rows: int, start_hz: float) -> tuple[float, float]:
    """The lowest and highest frequency (Hz) of a line's path during one observation, sampled as add_line samples
    it (rows x PATH_SAMPLES_PER_ROW steps over the observation), the start frequency `start_hz` (truth's
    f_mhz_obs<k>) included so that the span always brackets it; NaN for a broadband burst (no path)."""
    if signal.kind == "rfi_broadband":
        return np.nan, np.nan
    local = np.linspace(0.0, observation_length_s(rows), rows * PATH_SAMPLES_PER_ROW + 1)
    f_hz = np.append(signal.path()(obs.start_s + local), start_hz)
    return float(f_hz.min()), float(f_hz.max())


def truth_table(settings: Settings, plans: Sequence[CadencePlan]) -> pd.DataFrame:
    columns = TRUTH_COLUMNS + ([RFI_NEAR_COLUMN] if settings.rfi_near_needles > 0 else [])
    table = pd.DataFrame([row for plan in plans for row in truth_rows(settings, plan)], columns=columns)
    for i in ALL_OBSERVATIONS:
        table[f"chan_obs{i}"] = table[f"chan_obs{i}"].astype("Int64")
    return table


def catalog_table(settings: Settings, plans: Sequence[CadencePlan]) -> pd.DataFrame:
    rows = [{"cadence": p.index, "path": p.file(o, settings.format)} for p in plans for o in p.observations]
    return pd.DataFrame(rows, columns=["cadence", "path"])


# ----------------------------------------------------------------- command ---


def check_output(settings: Settings, catalog: pd.DataFrame) -> None:
    """Refuse to replace an earlier set (its catalog, truth or any file this run would write) unless --overwrite."""
    out = settings.out
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if settings.overwrite:
        return
    for name in (CATALOG, TRUTH, *catalog.path):
        if (out / name).exists():
            raise FileExistsError(f"{out / name} already exists; refusing to overwrite it (pass --overwrite)")


def _run(tasks: list, workers: int) -> None:
    """Write the files in order, in this process or on a pool; each file depends only on its own task."""
    if workers <= 1:
        for task in tasks:
            write_observation(task)
        return
    with mp.get_context("fork").Pool(workers, initializer=ignore_interrupts) as pool:
        for _ in pool.imap(write_observation, tasks):
            pass


def generate(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write every cadence's files, then truth.csv and catalog.csv (last: a set with a catalog is whole)."""
    plans = [plan_cadence(settings, k) for k in range(settings.n_cadences)]
    catalog = catalog_table(settings, plans)
    check_output(settings, catalog)
    for plan in plans:
        (settings.out / plan.folder).mkdir(parents=True, exist_ok=True)
    tasks = [(settings, plan, obs.index) for plan in plans for obs in plan.observations]
    _run(tasks, min(settings.workers, len(tasks)))
    truth = truth_table(settings, plans)
    write_csv_atomically(truth, settings.out / TRUTH)
    write_csv_atomically(catalog, settings.out / CATALOG)
    return catalog, truth


def build_parser() -> argparse.ArgumentParser:
    d = Settings(out=Path("."))
    parser = ErrorLineParser(
        prog="python -m src.synth.filterbank", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (must hold no earlier set)")
    parser.add_argument("--n-cadences", type=int, default=d.n_cadences, help="cadences of six files (default: 8)")
    parser.add_argument("--coarse-channels", type=int, default=d.coarse_channels, help="per file (default: 2)")
    parser.add_argument(
        "--fine-channels", type=int, default=d.fine_channels, help="per coarse channel, the header's nfpc (2^20)"
    )
    parser.add_argument("--rows", type=int, default=d.rows, help="time rows of 18.25 s per file (default: 16)")
    parser.add_argument("--format", default=d.format, help="h5 (bitshuffle HDF5) or fil (sigproc) (default: h5)")
    parser.add_argument(
        "--bandpass", default=d.bandpass, help="pfb (scalloped coarse channels) or flat (no shape) (default: pfb)"
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="the same seed gives byte-identical files (0)")
    parser.add_argument("--max-drift", type=float, default=d.max_drift, help="largest |drift| in Hz/s (default: 4)")
    parser.add_argument("--snr-min", type=float, default=d.snr_min, help="needles' lowest setigen SNR (default: 5)")
    parser.add_argument("--snr-max", type=float, default=d.snr_max, help="needles' highest SNR, log-uniform (50)")
    parser.add_argument("--needles", type=int, default=d.needles, help="per coarse channel per cadence (default: 19)")
    parser.add_argument("--rfi", type=int, default=d.rfi, help="RFI signals per coarse channel per cadence (12)")
    parser.add_argument(
        "--shapes",
        default=",".join(d.shapes),
        help="needle shapes to draw from, equally likely, comma-separated (default: linear,sine,quadratic,pulsed)",
    )
    parser.add_argument(
        "--rfi-near-needles",
        type=float,
        default=d.rfi_near_needles,
        help="share of needles given an all-six RFI line meeting their path in an ON observation (default: 0)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier set in --out")
    parser.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes; output does not depend on it"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings(**vars(build_parser().parse_args(argv)))
    began = time.perf_counter()
    with incomplete_set_at(settings.out):
        catalog, truth = generate(settings)
    needles = int((truth.kind == "needle").sum())
    near = f" ({int(truth[RFI_NEAR_COLUMN].sum())} with RFI near)" if RFI_NEAR_COLUMN in truth else ""
    print(
        f"wrote {len(catalog)} files ({settings.n_cadences} cadences), {needles} needles{near} and "
        f"{len(truth) - needles} RFI signals to {settings.out} in {time.perf_counter() - began:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_cli(main)
