"""Labelled six-observation snippets like the ones the filterbank scan cuts around its candidates, for training and
testing a model that scores those candidates. The command:

    python -m src.synth.snippets --out input/snippets --n-train 6000 --n-test 1000 --seed 0   # ~40 samples/s a core

The scan (src/search/scan.py) turns the hits of a real cadence (ABACAD, 2.79 Hz x 18.25 s, 16 rows per
observation) into candidates, and `src.data.snippets.cut_snippets` cuts each one from the cleaned blocks as a
(6, rows, channels) snippet: windows that follow the candidate's drift across the cadence, frequency binned by
the hit's boxcar width. A model scoring candidates must be trained on exactly that kind of picture, so each
sample here is made the way the scan would see it:

1. A cadence clock: six observations of --rows rows of 18.25 s, with slews drawn from filterbank.py's SLEW_S.
2. The candidate, one of
   - a needle (target 1, a share --pos-frac): filterbank.py's `draw_needle` (linear, sine, quadratic or pulsed;
     |drift| up to --max-drift; setigen SNR log-uniform in [--snr-min, --snr-max]), in the ON observations only;
     in POSITIVE_RFI_SHARE of them also interference in all six observations crossing the snippet's window, in
     PATH_CROSSING_SHARE of those meeting the needle's own path in an ON observation that holds it (within
     PATH_CROSSING_CHANNELS), as a line crossing a real needle does;
   - interference in all six observations (`rfi`): filterbank.py's zero-drift and drifting lines, or lines of
     the needles' shapes (sine, quadratic, pulsed too), so shape alone does not tell them apart; SNR drawn like
     the needles' (sometimes up to RFI_SNR_MAX); in RFI_FADE_SHARE of them faint or absent in one or two OFF
     observations, as real interference fades; in NEEDLE_ACROSS_RFI_SHARE of them a needle meets the line in an
     ON observation (the scan reports the line as well as the needle, and the line's snippet shows the needle
     crossing its ON windows: still interference, since the candidate is the line);
   - bright interference crossing a noise track during an ON observation (`rfi_crossing`): where a track crosses
     a bright line the search reports a hit, whose snippet shows the line in all six windows away from their
     centres (the most common false event of a real scan, and one a model must not take for a needle);
   - pure noise with a random candidate track (`noise`; in NOISE_RFI_SHARE of them with interference elsewhere
     in the window), a signal in the OFF observations only (`off_only`), or broadband bursts (filterbank.py's
     `add_burst`) in a few observations with a noise track (`burst`), in the shares NEGATIVE_SHARES;
   - a chance hit (`noise_hit`): pure noise whose sum along the track stands at a hit's SNR (CHANCE_HIT_SNR) in
     one ON observation and, in some others, at the SNR that holds an event along a predicted track
     (CHANCE_HOLD_SNR), as the noise is where a scan at a low threshold finds a hit in it (`bring_track_to`
     conditions the noise on that sum). Most false events of a scan at SNR 5 are these; a track through
     noise where nothing was picked (`noise`) shows nothing of the kind;
   - a chance hit with a needle beside it (`needle_aside`): a noise_hit whose window also shows a needle, whose
     path stays at least ASIDE_PIXELS off the track in every ON observation holding it (in ASIDE_PARALLEL_SHARE
     of them drifting as the track does, so it is in every ON window). Beside a bright needle, a scan at SNR 5
     finds chance hits whose windows, binned by their boxcars, show that needle off their centre: the candidate
     is still the chance hit.
3. Each observation's block: rows x (channels x b + MARGIN_CHANNELS) fine channels around its window, of
   chi-squared noise at a level drawn from real GBT statistics (filterbank.py's `real_noise`), the signals
   rendered by filterbank.py's `add_line` / `add_burst` (Doppler smearing included); b is the hit search's
   boxcar for the candidate's estimated drift (`src.data.snippets.boxcar_width`). In REAL_BACKGROUND_SHARE of
   the samples, needles and negatives alike, one or more observations' noise is real GBT data instead:
   setigen's bundled `assets/sample.fil` (32 rows x 1,024 channels), rows and channels cut at random, brought
   to the block's noise mean and standard deviation ("real_background" in the metadata). Its blocks must fit
   the file, so such a sample's signals drift less than a channel per row (b = 1).
4. Each block cleaned as the scan cleans a coarse channel (`src.data.clean.clean_block`, no DC spike, bandpass
   bins of the scan's 1,024 channels or the whole block if narrower).
5. The candidate's track as the scan reports it: a reference ON observation holding the signal (for negatives,
   a random ON one) gives the start channel at its first row and the drift over its rows, each off the truth as
   the hit search is (measured on bright straight needles, tests/test_snippet_synth.py): the drift by up to one
   drift step (one channel, or b/2), the track's middle by up to 0.5 + b/8 channels. In every other observation
   the start is where that drift carries it along the clock (slews included), except in ON observations where
   the signal is strong enough for a hit of its own (SNR >= HIT_SNR once its drift's smearing is allowed for),
   which use their own position, as the cadence filter (src/search/events.py) does. Then `cut_snippets`, with
   that one drift in every observation as the scan's candidate table gives it (a curved path may so sit off the
   centre of the other observations' windows).

Written in the Kaggle layout, which `main.py` reads with `--observation-shape 16,256 --window follows_drift`:
`train/<id[0]>/<id>.npy` and `test/...` (float16, (6, rows, channels)), `train_labels.csv` and `test_labels.csv`
(id,target), `sample_submission.csv` (the test ids, target 0.5) and `metadata.csv`: id, split, target, kind (needle,
rfi, rfi_crossing, noise, noise_hit, off_only, burst, needle_aside), shape, snr, drift_hz_s (the candidate
signal's rate at the cadence's start, or the noise track's), drift_channels (the candidate's estimated drift over
an observation), boxcar, rfi_with_needle, rfi_across_path (the interference meets the needle's path in an ON
observation holding it), needle_across (an interference negative with a needle across its line), rfi_shape,
rfi_snr, real_background, n_on_present, n_off_present (observations holding the candidate's signal), faded
(`obs:level` pairs where it is there at only that share of its SNR) and chance (a noise_hit's or needle_aside's
`obs:snr` pairs; its snr column is the hit's). The same flags give byte-identical files whatever --workers; an
earlier set is never replaced without --overwrite.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.core.cadence import DF_HZ, DT_S, OFF_OBSERVATIONS, ON_OBSERVATIONS
from src.core.cli import ErrorLineParser, ignore_interrupts, progress_bar, run_cli
from src.core.errors import ConfigError, incomplete_set_at
from src.core.files import write_csv_atomically, write_npy_atomically
from src.data.clean import BANDPASS_BINS, clean_block
from src.data.filterbank import FINE_CHANNELS_PER_COARSE_GBT, read_block, read_header
from src.data.kaggle import SAMPLE_SUBMISSION, TEST_LABELS, TRAIN_LABELS, cadence_path
from src.data.snippets import boxcar_width, cut_snippets, window_starts
from src.synth import filterbank as fb
from src.synth.generator import METADATA, make_ids
from src.synth.libraries import import_setigen

N_OBS = fb.N_OBS
SPLITS = ("train", "test")
SPLIT_CODES = {"train": 0, "test": 1}
SAMPLE_STREAM, TARGET_STREAM = 7, 8
OUTPUT_FILES = (TRAIN_LABELS, TEST_LABELS, SAMPLE_SUBMISSION, METADATA)
# What a negative is centred on, and how often
NEGATIVE_KINDS = ("rfi", "noise", "noise_hit", "off_only", "burst", "rfi_crossing", "needle_aside")
NEGATIVE_SHARES = (0.32, 0.10, 0.21, 0.07, 0.05, 0.17, 0.08)
# noise_hit: the noise along the track brought to a hit's SNR in one ON observation (the search picked it there),
# and in others of them, each with CHANCE_HOLD_SHARE, to the SNR at which the cadence filter's measurement along
# a predicted track holds an event (src/search/events.py's ON_TRACK_FRACTION of a hit threshold of 5-8)
CHANCE_HIT_SNR = (5.0, 8.0)
CHANCE_HOLD_SNR = (2.5, 5.0)
CHANCE_HOLD_SHARE = 0.35
CHANCE_KINDS = ("noise_hit", "needle_aside")  # negatives centred on a chance hit (their snr is the hit's)
# needle_aside: a chance hit with a needle elsewhere in its window, as beside every needle a scan at SNR 5 finds
# chance hits whose windows (256 boxcars wide) show the needle off their centre: the candidate is the chance hit
ASIDE_PIXELS = 16  # the needle's path stays at least this many window pixels (boxcars) off the track in every ON
ASIDE_TRIES = 100  # placements tried per needle before another needle is drawn
ASIDE_NEEDLES = 1000  # needles drawn before the window is declared too narrow for one aside
ASIDE_PARALLEL_SHARE = 0.5  # of them, the needle drifts as the track does (within a boxcar an observation), so it
# stays in view in every ON window, as beside the needle whose chance hits showed the model its needle
NOISE_RFI_SHARE = 0.3  # noise tracks that also have interference in all six observations somewhere in the window
POSITIVE_RFI_SHARE = 0.3  # needles that also have interference in all six observations crossing their window
PATH_CROSSING_SHARE = 0.5  # of those, the line meets the needle's own path (not just somewhere in the window)
PATH_CROSSING_CHANNELS = 3.0  # how far from the path (channels) it meets it
NEEDLE_ACROSS_RFI_SHARE = 0.25  # interference negatives with a needle meeting the line in an ON observation
# Interference lines: filterbank.py's (zero-drift and linear, RFI widths) or the needles' shapes and widths
RFI_LINE_SHARE = 0.5
RFI_BRIGHT_SHARE = 0.2  # SNR log-uniform from --snr-min up to RFI_SNR_MAX instead of --snr-max
RFI_SNR_MAX = 500.0
CROSSING_SNR = (20.0, RFI_SNR_MAX)  # rfi_crossing: interference bright enough to make a hit where a track crosses it
RFI_FADE_SHARE = 0.2  # RFI faint or absent in one or two OFF observations
RFI_FADE_OBSERVATIONS = (1, 2)
RFI_ABSENT_SHARE = 0.5  # of the faded observations, those where it is gone; the rest keep a share of its SNR
RFI_FAINT_LEVEL = (0.1, 0.5)
# Real GBT background from setigen's bundled file
REAL_BACKGROUND_SHARE = 0.1  # of the samples, needles and negatives alike
REAL_BACKGROUND_DRIFT = 0.9 * DF_HZ / DT_S  # Hz/s: their signals drift under a channel per row, so b = 1
SAMPLE_FIL = ("assets", "sample.fil")
# Blocks, cleaning and the hit search's view of the candidate
MARGIN_CHANNELS = 64  # fine channels a block has beyond its window
SCAN_BANDPASS_BIN = FINE_CHANNELS_PER_COARSE_GBT // BANDPASS_BINS  # the scan's bandpass bins at 2^20 channels
HIT_SNR = 10.0  # the scan's default hit threshold
MID_JITTER = (0.5, 1 / 8)  # the track's middle: up to 0.5 + b/8 channels off
VIRTUAL_TOP_HZ = fb.FCH1_MHZ * 1e6  # channel 0 of the coarse channel signals are drawn in (only offsets matter)
MAX_DRIFT_LIMIT = 20.0  # Hz/s: a 128-channel boxcar and ~33,000-channel blocks at 256 pixels
MAX_ROWS = 256
MIN_CHANNELS = 8
METADATA_COLUMNS = [
    "id",
    "split",
    "target",
    "kind",
    "shape",
    "snr",
    "drift_hz_s",
    "drift_channels",
    "boxcar",
    "rfi_with_needle",
    "rfi_across_path",
    "needle_across",
    "rfi_shape",
    "rfi_snr",
    "real_background",
    "n_on_present",
    "n_off_present",
    "faded",
    "chance",
]


# ---------------------------------------------------------------- settings ---


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the command was asked for; checked on creation so a bad value fails before anything is written."""

    out: Path
    n_train: int = 1000
    n_test: int = 200
    seed: int = 0
    pos_frac: float = 0.5
    snr_min: float = 5.0
    snr_max: float = 50.0
    max_drift: float = 4.0
    channels: int = 256
    rows: int = 16
    workers: int = 1
    overwrite: bool = False

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))
        for name, least in (("n_train", 0), ("n_test", 0), ("workers", 1), ("rows", 2), ("channels", MIN_CHANNELS)):
            if getattr(self, name) < least:
                raise ConfigError(f"{fb.flag_name(name)} must be at least {least}, got {getattr(self, name)}")
        if self.n_train + self.n_test < 1:
            raise ConfigError("--n-train and --n-test are both 0: nothing to write")
        if self.rows > MAX_ROWS:
            raise ConfigError(f"--rows must be at most {MAX_ROWS}, got {self.rows}")
        if not (math.isfinite(self.pos_frac) and 0.0 <= self.pos_frac <= 1.0):
            raise ConfigError(f"--pos-frac must lie in [0, 1], got {self.pos_frac}")
        if not (math.isfinite(self.snr_max) and 0 < self.snr_min <= self.snr_max):
            raise ConfigError(f"need 0 < --snr-min <= --snr-max, got {self.snr_min} and {self.snr_max}")
        if not (math.isfinite(self.max_drift) and 0 <= self.max_drift <= MAX_DRIFT_LIMIT):
            raise ConfigError(f"--max-drift must be a rate in [0, {MAX_DRIFT_LIMIT:g}] Hz/s, got {self.max_drift}")

    def slow(self) -> Settings:
        """The same settings with drifts under REAL_BACKGROUND_DRIFT, for a sample on real background."""
        return dataclasses.replace(self, max_drift=min(self.max_drift, REAL_BACKGROUND_DRIFT))

    def signal_settings(self) -> fb.Settings:
        """filterbank.py's settings for its signal draws: one virtual 2^20-channel coarse channel."""
        return fb.Settings(
            out=self.out,
            fine_channels=FINE_CHANNELS_PER_COARSE_GBT,
            rows=self.rows,
            max_drift=self.max_drift,
            snr_min=self.snr_min,
            snr_max=self.snr_max,
        )


# ------------------------------------------------------------------ tracks ---


def true_track(signal: fb.Signal, obs: fb.Observation, rows: int, top_hz: float = VIRTUAL_TOP_HZ):
    """(start, drift) of a signal's path in one observation, in channels of the coarse channel whose channel 0
    is at `top_hz`: its channel at the centre of the first row, and how far it moves to the centre of the last
    (a Doppler-smeared row's power is centred there), as the hit search reports a hit."""
    times = obs.start_s + np.array([0.5, rows - 0.5]) * DT_S
    channels = (top_hz - signal.path()(times)) / DF_HZ
    return float(channels[0]), float(channels[1] - channels[0])


def jitter_bounds(width: int) -> tuple[float, float]:
    """How far the hit search's track may be off a signal's, for a boxcar `width`: (the track's middle, in
    channels; its drift over the observation, one drift step: a channel, or half the boxcar)."""
    return MID_JITTER[0] + MID_JITTER[1] * width, max(1.0, width / 2)


def jittered_track(rng: np.random.Generator, start: float, drift: float, rows: int) -> tuple[float, float]:
    """A hit's (start, drift) for a signal's true ones: the drift off by up to one step, the middle of the track
    by up to jitter_bounds' first value, so the start is off by both (the search trades one for the other)."""
    mid_bound, drift_bound = jitter_bounds(int(boxcar_width(drift / max(rows - 1, 1))))
    drift_error = rng.uniform(-drift_bound, drift_bound)
    mid_error = rng.uniform(-mid_bound, mid_bound)
    return start + mid_error - drift_error / 2, drift + drift_error


def effective_snr(signal: fb.Signal, drift: float, rows: int, level: float = 1.0) -> float:
    """The best SNR a search gets from one observation: a drift of r > 1 channels per row spreads each row's
    power over ~r channels (SNR / sqrt(r)); a pulsed signal is on for its duty cycle."""
    duty = signal.pulse[1] if signal.shape == "pulsed" else 1.0
    return signal.snr * level * duty / math.sqrt(max(1.0, abs(drift) / max(rows - 1, 1)))


# ----------------------------------------------------------------- samples ---


@dataclasses.dataclass(frozen=True)
class Sample:
    """Everything drawn for one sample; its snippet follows from it and its own noise draws."""

    kind: str
    observations: tuple[fb.Observation, ...]
    noise: tuple[fb.Noise, ...]
    candidate: fb.Signal  # its path is the candidate's track; rendered where `levels` > 0
    levels: tuple[float, ...]  # the candidate signal's SNR share in each observation (0: absent)
    extra: tuple[tuple[fb.Signal, tuple[float, ...]], ...]  # other signals and their levels
    starts: np.ndarray  # the candidate's estimated start channel in each observation
    drift: float  # its estimated drift over an observation (channels)
    width: int  # the boxcar
    real_background: tuple[int, ...]  # observations whose noise is real GBT data
    chance: tuple[float, ...] = (0.0,) * N_OBS  # the SNR the noise along the track is brought to (0: as drawn)


def cadence_clock(rng: np.random.Generator, rows: int) -> tuple[fb.Observation, ...]:
    """Six observations of `rows` rows with slews drawn from filterbank.py's SLEW_S between them."""
    observations, start = [], 0.0
    for i in range(N_OBS):
        observations.append(fb.Observation(i, i in ON_OBSERVATIONS, "", start, 0.0, 0.0, 0.0))
        start += fb.observation_length_s(rows) + rng.uniform(*fb.SLEW_S)
    return tuple(observations)


def draw_rfi_line(rng: np.random.Generator, settings: Settings, starts_s: Sequence[float]) -> fb.Signal:
    """Interference on one path through all six observations: filterbank.py's lines (zero-drift or drifting), or
    a line of a needle's shape (linear, sine, quadratic, pulsed) and width; SNR like the needles', sometimes up
    to RFI_SNR_MAX."""
    signal_settings = settings.signal_settings()
    if rng.random() < RFI_LINE_SHARE:
        line = fb.draw_rfi(rng, signal_settings, starts_s, VIRTUAL_TOP_HZ, 0, 1)
        while line.kind == "rfi_broadband":
            line = fb.draw_rfi(rng, signal_settings, starts_s, VIRTUAL_TOP_HZ, 0, 1)
    else:
        line = fb.draw_needle(rng, signal_settings, starts_s, VIRTUAL_TOP_HZ, 0, 1)
    high = RFI_SNR_MAX if rng.random() < RFI_BRIGHT_SHARE else settings.snr_max
    snr = fb.log_uniform(rng, settings.snr_min, max(high, settings.snr_min))
    return dataclasses.replace(line, kind="rfi", observations=fb.ALL_OBSERVATIONS, snr=snr)


def draw_burst(rng: np.random.Generator, settings: Settings, starts_s: Sequence[float]) -> fb.Signal:
    """filterbank.py's broadband interference: a row or two of raised power in one to three observations."""
    signal_settings = settings.signal_settings()
    burst = fb.draw_rfi(rng, signal_settings, starts_s, VIRTUAL_TOP_HZ, 0, 2)
    while burst.kind != "rfi_broadband":
        burst = fb.draw_rfi(rng, signal_settings, starts_s, VIRTUAL_TOP_HZ, 0, 2)
    return burst


def noise_track(rng: np.random.Generator, settings: Settings) -> fb.Signal:
    """A candidate track through noise: a straight path, its drift drawn like a needle's; never rendered."""
    rate = fb.draw_rate(rng, settings.max_drift)
    f0 = VIRTUAL_TOP_HZ - rng.uniform(0.25, 0.75) * FINE_CHANNELS_PER_COARSE_GBT * DF_HZ
    return fb.Signal(0, "noise", "linear", 0, (), float("nan"), rate=rate, f0_hz=float(f0))


def fade_levels(rng: np.random.Generator) -> tuple[float, ...]:
    """Interference levels in the six observations: all 1, or in one or two OFF ones faint or absent."""
    levels = [1.0] * N_OBS
    if rng.random() < RFI_FADE_SHARE:
        count = int(rng.integers(RFI_FADE_OBSERVATIONS[0], RFI_FADE_OBSERVATIONS[1] + 1))
        for k in rng.choice(OFF_OBSERVATIONS, size=count, replace=False):
            levels[int(k)] = 0.0 if rng.random() < RFI_ABSENT_SHARE else float(rng.uniform(*RFI_FAINT_LEVEL))
    return tuple(levels)


def chance_levels(rng: np.random.Generator) -> tuple[float, ...]:
    """A noise_hit's SNRs along its track: a hit's in one ON observation, in each other ON one with
    CHANCE_HOLD_SHARE the SNR that holds an event along a predicted track, nothing added in the OFF ones."""
    levels = [0.0] * N_OBS
    hit = int(rng.choice(ON_OBSERVATIONS))
    levels[hit] = float(rng.uniform(*CHANCE_HIT_SNR))
    for k in ON_OBSERVATIONS:
        if k != hit and rng.random() < CHANCE_HOLD_SHARE:
            levels[k] = float(rng.uniform(*CHANCE_HOLD_SNR))
    return tuple(levels)


def present(observations: Sequence[int]) -> tuple[float, ...]:
    return tuple(1.0 if k in observations else 0.0 for k in range(N_OBS))


def estimate_track(
    rng: np.random.Generator,
    settings: Settings,
    candidate: fb.Signal,
    levels: Sequence[float],
    observations: Sequence[fb.Observation],
) -> tuple[np.ndarray, float, int]:
    """The candidate as the scan reports it: (start channel in each observation, drift over an observation,
    boxcar). The reference ON observation's hit is the truth jittered; other observations are predicted along
    its drift, except ON observations bright enough for a hit of their own."""
    rows = settings.rows
    truth = [true_track(candidate, obs, rows) for obs in observations]
    holding = [k for k in ON_OBSERVATIONS if levels[k] > 0]
    reference = int(rng.choice(holding or ON_OBSERVATIONS))
    start, drift = jittered_track(rng, *truth[reference], rows)
    rate = drift / (max(rows - 1, 1) * DT_S)  # channels per second
    starts = np.empty(N_OBS)
    for k, obs in enumerate(observations):
        own = k in holding and k != reference
        if own and effective_snr(candidate, truth[k][1], rows, levels[k]) >= HIT_SNR:
            starts[k] = jittered_track(rng, *truth[k], rows)[0]
        else:
            starts[k] = start + rate * (obs.start_s - observations[reference].start_s)
    return starts, drift, int(boxcar_width(drift / max(rows - 1, 1)))


def windows(settings: Settings, starts: np.ndarray, drift: float, width: int) -> np.ndarray:
    """The first channel of each observation's snippet window (src.data.snippets.window_starts)."""
    drifts = np.full((1, N_OBS), drift)
    return window_starts(starts[None], drifts, np.array([width]), [settings.rows] * N_OBS, settings.channels)[0]


def moved_through(signal: fb.Signal, t_s: float, f_hz: float) -> fb.Signal:
    """The signal shifted in frequency so that its path passes `f_hz` at cadence time `t_s`."""
    return dataclasses.replace(signal, f0_hz=signal.f0_hz + f_hz - float(signal.path()(t_s)))


def cross_window(rng: np.random.Generator, signal: fb.Signal, settings: Settings, sample_windows, width, observations):
    """The signal moved so that its path crosses the snippet's window of a random observation at a random time."""
    k = int(rng.integers(N_OBS))
    t = observations[k].start_s + rng.uniform(0.0, fb.observation_length_s(settings.rows))
    channel = sample_windows[k] + rng.uniform(0.0, settings.channels * width)
    return moved_through(signal, t, VIRTUAL_TOP_HZ - channel * DF_HZ)


def cross_path(rng: np.random.Generator, signal: fb.Signal, other: fb.Signal, levels, rows: int, observations):
    """The signal moved so that its path meets the other's, within PATH_CROSSING_CHANNELS, at a random time of a
    random ON observation where `levels` (the needle's) hold it: interference across a needle's track (a needle
    with a line in all six windows near their centres, still a needle), or a needle across the interference a
    candidate sits on (a needle in the ON windows, yet the candidate is the interference)."""
    k = int(rng.choice([k for k in ON_OBSERVATIONS if levels[k] > 0] or ON_OBSERVATIONS))
    t = observations[k].start_s + rng.uniform(0.0, fb.observation_length_s(rows))
    offset = DF_HZ * rng.uniform(-PATH_CROSSING_CHANNELS, PATH_CROSSING_CHANNELS)
    return moved_through(signal, t, float(other.path()(t)) + offset)


def track_channel(starts: np.ndarray, drift: float, rows: int, k: int, row):
    """The candidate's estimated track in observation k at `row` (a number or an array of rows), in channels."""
    return starts[k] + drift / max(rows - 1, 1) * row


def cross_track(rng: np.random.Generator, signal: fb.Signal, starts: np.ndarray, drift: float, rows: int, observations):
    """The signal moved so that its path crosses the candidate's estimated track at a random row of a random ON
    observation: where a bright line crosses a track, the track's sum picks up the line and the search reports a
    hit there, whose snippet shows the line in all six windows away from their centres."""
    k = int(rng.choice(ON_OBSERVATIONS))
    row = rng.uniform(0.0, rows - 1)
    t = observations[k].start_s + row * DT_S
    channel = track_channel(starts, drift, rows, k, row)
    return moved_through(signal, t, VIRTUAL_TOP_HZ - channel * DF_HZ)


def track_gap_pixels(signal: fb.Signal, starts: np.ndarray, drift: float, width: int, rows: int, observations, k: int):
    """How far (window pixels, signed, every row) the signal's path lies from the candidate's track in observation k."""
    times = observations[k].start_s + (np.arange(rows) + 0.5) * DT_S
    path = (VIRTUAL_TOP_HZ - signal.path()(times)) / DF_HZ
    return (path - track_channel(starts, drift, rows, k, np.arange(rows))) / width


def needle_aside(
    rng: np.random.Generator, settings: Settings, starts: np.ndarray, drift: float, width: int, observations
):
    """A needle (ON observations only) whose path crosses the candidate's window in an ON observation that holds
    it, at least ASIDE_PIXELS (a quarter of a window narrower than 64) off the track there and in every other ON
    observation holding it: in view, never on the candidate's track; in ASIDE_PARALLEL_SHARE of them drifting as
    the track does. Returns (needle, levels)."""
    signal_settings = settings.signal_settings()
    starts_s = [o.start_s for o in observations]
    half = settings.channels / 2
    aside = min(ASIDE_PIXELS, settings.channels // 4)  # a narrow window keeps a needle in view beside the track
    span_s = max(settings.rows - 1, 1) * DT_S
    for _ in range(ASIDE_NEEDLES):
        needle = fb.draw_needle(rng, signal_settings, starts_s, VIRTUAL_TOP_HZ, 0, 3)
        if rng.random() < ASIDE_PARALLEL_SHARE:  # channels grow as frequency falls
            rate = -(drift + rng.uniform(-1.0, 1.0) * width) * DF_HZ / span_s
            needle = dataclasses.replace(needle, rate=float(rate))
        levels = present(needle.observations)
        holding = [k for k in ON_OBSERVATIONS if levels[k] > 0]
        for _ in range(ASIDE_TRIES):
            k = int(rng.choice(holding))
            row = rng.uniform(0.0, settings.rows - 1)
            side = rng.choice((-1.0, 1.0))
            channel = track_channel(starts, drift, settings.rows, k, row) + side * rng.uniform(aside, half) * width
            t = observations[k].start_s + (row + 0.5) * DT_S
            moved = moved_through(needle, t, VIRTUAL_TOP_HZ - channel * DF_HZ)
            gaps = [track_gap_pixels(moved, starts, drift, width, settings.rows, observations, j) for j in holding]
            if all(np.abs(g).min() >= aside and (g.min() > 0 or g.max() < 0) for g in gaps):
                return moved, levels
    raise ConfigError(
        f"--channels {settings.channels} x --rows {settings.rows}: no needle fits beside a candidate's track in "
        f"{ASIDE_NEEDLES} draws (needle_aside negatives); use wider snippets"
    )


def draw_sample(settings: Settings, rng: np.random.Generator, target: int) -> Sample:
    """Draw one sample's cadence, candidate, other signals and estimated track."""
    observations = cadence_clock(rng, settings.rows)
    starts_s = [o.start_s for o in observations]
    rows, channels = real_background_shape()
    fits = settings.rows <= rows and settings.channels + MARGIN_CHANNELS <= channels
    on_real_background = rng.random() < REAL_BACKGROUND_SHARE and fits
    if on_real_background:  # slow drifts: the boxcar is 1 and the block fits the real file
        settings = settings.slow()
    base = fb.real_noise(rng, settings.rows)
    noise = tuple(base.scaled(rng.uniform(1 - fb.NOISE_JITTER, 1 + fb.NOISE_JITTER)) for _ in observations)
    signal_settings = settings.signal_settings()
    extra, chance = [], (0.0,) * N_OBS
    if target:
        kind = "needle"
        candidate = fb.draw_needle(rng, signal_settings, starts_s, VIRTUAL_TOP_HZ, 0, 0)
        levels = present(candidate.observations)
    else:
        kind = NEGATIVE_KINDS[int(rng.choice(len(NEGATIVE_KINDS), p=NEGATIVE_SHARES))]
        if kind == "rfi":
            candidate = draw_rfi_line(rng, settings, starts_s)
            levels = fade_levels(rng)
            if rng.random() < NEEDLE_ACROSS_RFI_SHARE:
                needle = fb.draw_needle(rng, signal_settings, starts_s, VIRTUAL_TOP_HZ, 0, 2)
                needle_levels = present(needle.observations)
                needle = cross_path(rng, needle, candidate, needle_levels, settings.rows, observations)
                extra.append((needle, needle_levels))
        elif kind == "off_only":
            needle = fb.draw_needle(rng, signal_settings, starts_s, VIRTUAL_TOP_HZ, 0, 0)
            candidate = dataclasses.replace(needle, kind="off_only", observations=OFF_OBSERVATIONS)
            levels = present(OFF_OBSERVATIONS)
        else:
            candidate = noise_track(rng, settings)
            levels = present(())
            if kind in CHANCE_KINDS:
                chance = chance_levels(rng)
            if kind == "burst":
                burst = draw_burst(rng, settings, starts_s)
                extra.append((burst, present(burst.observations)))
    starts, drift, width = estimate_track(rng, settings, candidate, levels, observations)
    if kind == "needle_aside":
        extra.append(needle_aside(rng, settings, starts, drift, width, observations))
    if (target and rng.random() < POSITIVE_RFI_SHARE) or (
        kind in ("noise", "noise_hit") and rng.random() < NOISE_RFI_SHARE
    ):
        line = draw_rfi_line(rng, settings, starts_s)
        if target and rng.random() < PATH_CROSSING_SHARE:
            line = cross_path(rng, line, candidate, levels, settings.rows, observations)
        else:
            line = cross_window(rng, line, settings, windows(settings, starts, drift, width), width, observations)
        extra.append((line, fade_levels(rng)))
    if kind == "rfi_crossing":
        line = dataclasses.replace(draw_rfi_line(rng, settings, starts_s), snr=fb.log_uniform(rng, *CROSSING_SNR))
        extra.append((cross_track(rng, line, starts, drift, settings.rows, observations), fade_levels(rng)))
    real = ()
    if on_real_background:
        count = int(rng.integers(1, N_OBS + 1))
        real = tuple(sorted(int(k) for k in rng.choice(N_OBS, size=count, replace=False)))
        if width > 1:  # never at these drifts (at most 0.9 channels per row, estimated within a channel)
            real = ()
    return Sample(kind, observations, noise, candidate, levels, tuple(extra), starts, drift, width, real, chance)


# ------------------------------------------------------------------ blocks ---


@functools.lru_cache(maxsize=1)
def real_background_data() -> np.ndarray:
    """setigen's bundled GBT observation (32 rows x 1,024 channels, 1.4 Hz x 1.43 s), read once per process."""
    path = Path(import_setigen().__file__).parent.joinpath(*SAMPLE_FIL)
    header = read_header(path)
    return read_block(header, 0, header.nchans)


@functools.lru_cache(maxsize=1)
def real_background_shape() -> tuple[int, int]:
    return tuple(real_background_data().shape)


def real_background(rng: np.random.Generator, rows: int, channels: int, noise: fb.Noise) -> np.ndarray:
    """`rows` consecutive rows and `channels` channels of the real file, at random, brought to the noise's mean
    and standard deviation (its distribution's shape and its structure stay the real ones)."""
    data = real_background_data()
    r0 = int(rng.integers(data.shape[0] - rows + 1))
    c0 = int(rng.integers(data.shape[1] - channels + 1))
    window = data[r0 : r0 + rows, c0 : c0 + channels].astype(np.float64)
    scaled = (window - window.mean()) / window.std() * noise.std + noise.mean
    return scaled.astype(np.float32)


def path_channels(signal: fb.Signal, obs: fb.Observation, rows: int) -> np.ndarray:
    """The channels (of the virtual coarse channel) the signal's path crosses during an observation."""
    local = np.linspace(0.0, fb.observation_length_s(rows), rows * fb.PATH_SAMPLES_PER_ROW + 1)
    return (VIRTUAL_TOP_HZ - signal.path()(obs.start_s + local)) / DF_HZ


def render(block: np.ndarray, origin: int, signal: fb.Signal, level: float, obs: fb.Observation, noise: fb.Noise):
    """Add a signal at a share `level` of its SNR to a block whose channel 0 is channel `origin` of the virtual
    coarse channel, with filterbank.py's add_line / add_burst; a line that misses the block is skipped."""
    if level <= 0:
        return
    signal = dataclasses.replace(signal, snr=signal.snr * level)
    if signal.kind == "rfi_broadband":
        fb.add_burst(block, signal, obs, noise)
        return
    channels = path_channels(signal, obs, block.shape[0]) - origin
    reach = 4 * signal.width_hz / DF_HZ + 2  # add_line's own margin
    if channels.max() + reach < 1 or channels.min() - reach > block.shape[1] - 2:
        return
    fb.add_line(block, signal, obs, noise, VIRTUAL_TOP_HZ - origin * DF_HZ)


def track_pixels(start: float, drift: float, width: int, rows: int, n_channels: int) -> tuple[np.ndarray, ...]:
    """(row, channel) indices of a hit's line in a block: in each row the `width` channels centred on
    start + drift x row / (rows - 1), those inside the block."""
    centres = start + drift * np.arange(rows) / max(rows - 1, 1)
    channels = np.floor(centres - (width - 1) / 2 + 0.5).astype(np.int64)[:, None] + np.arange(width)
    row_index = np.broadcast_to(np.arange(rows)[:, None], channels.shape)
    inside = (channels >= 0) & (channels < n_channels)
    return row_index[inside], channels[inside]


def bring_track_to(block: np.ndarray, start: float, drift: float, width: int, snr: float, noise: fb.Noise) -> None:
    """The block's noise conditioned on its line's sum standing `snr` sigmas above the mean, as a hit of that SNR
    picked from pure noise has it: every pixel of the line is shifted by the same amount (Gaussian noise
    conditioned on a sum moves each term equally), so the line is the search's own and no narrower or brighter
    anywhere than chance makes it. A line already above `snr` is left as it is."""
    pixels = track_pixels(start, drift, width, block.shape[0], block.shape[1])
    count = len(pixels[0])
    if count == 0:
        return
    scale = noise.std * math.sqrt(count)
    found = (float(block[pixels].sum(dtype=np.float64)) - count * noise.mean) / scale
    if found < snr:
        block[pixels] += np.float32((snr - found) * scale / count)


def make_snippet(settings: Settings, sample: Sample, rng: np.random.Generator) -> np.ndarray:
    """The sample's (6, rows, channels) float16 snippet, cut from its cleaned blocks as the scan cuts one."""
    width = sample.width
    n_channels = settings.channels * width + MARGIN_CHANNELS
    origins = windows(settings, sample.starts, sample.drift, width) - MARGIN_CHANNELS // 2
    blocks = []
    for k, obs in enumerate(sample.observations):
        noise = sample.noise[k]
        if k in sample.real_background:
            block = real_background(rng, settings.rows, n_channels, noise)
        else:
            block = noise.draw(rng, (settings.rows, n_channels))
        render(block, int(origins[k]), sample.candidate, sample.levels[k], obs, noise)
        for signal, levels in sample.extra:
            render(block, int(origins[k]), signal, levels[k], obs, noise)
        if sample.chance[k] > 0:
            bring_track_to(block, sample.starts[k] - origins[k], sample.drift, width, sample.chance[k], noise)
        cleaned, _ = clean_block(torch.from_numpy(block), None, min(SCAN_BANDPASS_BIN, n_channels))
        blocks.append(cleaned)
    local = (sample.starts - origins)[None]
    snippet = cut_snippets(blocks, local, np.full((1, N_OBS), sample.drift), np.array([width]), settings.channels)
    finite = np.finfo(np.float16).max
    return np.clip(snippet[0].numpy(), -finite, finite).astype(np.float16)


def across_path(line: fb.Signal, needle: fb.Signal, levels: Sequence[float], rows: int, observations) -> bool:
    """Whether the line comes within PATH_CROSSING_CHANNELS of the needle's path, or crosses it, during an ON
    observation that holds the needle."""
    starts_s = [o.start_s for o in observations]
    for k in ON_OBSERVATIONS:
        if levels[k] > 0:
            times = fb.observation_times(starts_s, [k], rows)
            gap = (line.path()(times) - needle.path()(times)) / DF_HZ
            if np.abs(gap).min() <= PATH_CROSSING_CHANNELS or gap.min() < 0 < gap.max():
                return True
    return False


def metadata(sample: Sample, target: int, rows: int) -> dict:
    candidate = sample.candidate
    rfi = [s for s, _ in sample.extra if s.kind == "rfi"]
    burst = [s for s, _ in sample.extra if s.kind == "rfi_broadband"]
    snr = (
        burst[0].snr if sample.kind == "burst" else max(sample.chance) if sample.kind in CHANCE_KINDS else candidate.snr
    )
    return {
        "target": int(target),
        "kind": sample.kind,
        "shape": "burst"
        if sample.kind == "burst"
        else "none"
        if sample.kind == "noise" or sample.kind in CHANCE_KINDS
        else candidate.shape,
        "snr": float(snr),
        "drift_hz_s": float(candidate.rate),
        "drift_channels": float(sample.drift),
        "boxcar": int(sample.width),
        "rfi_with_needle": bool(target and rfi),
        "rfi_across_path": bool(
            target and any(across_path(r, candidate, sample.levels, rows, sample.observations) for r in rfi)
        ),
        "needle_across": bool(sample.kind == "rfi" and any(s.kind == "needle" for s, _ in sample.extra)),
        "rfi_shape": rfi[0].shape if rfi else "",
        "rfi_snr": float(rfi[0].snr) if rfi else float("nan"),
        "real_background": bool(sample.real_background),
        "n_on_present": sum(sample.levels[k] > 0 for k in ON_OBSERVATIONS),
        "n_off_present": sum(sample.levels[k] > 0 for k in OFF_OBSERVATIONS),
        "faded": " ".join(f"{k}:{level:.2f}" for k, level in enumerate(sample.levels) if 0 < level < 1),
        "chance": " ".join(f"{k}:{snr:.2f}" for k, snr in enumerate(sample.chance) if snr > 0),
    }


def make_sample(settings: Settings, rng: np.random.Generator, target: int) -> tuple[np.ndarray, dict]:
    """One labelled snippet and its metadata, from the sample's generator alone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # setigen and astropy warn on import and on some frames
        sample = draw_sample(settings, rng, target)
        return make_snippet(settings, sample, rng), metadata(sample, target, settings.rows)


# ----------------------------------------------------------------- dataset ---


def sample_rng(settings: Settings, split: str, index: int) -> np.random.Generator:
    """Per-sample generator from (seed, split, index): independent of the workers."""
    return np.random.default_rng([settings.seed, SPLIT_CODES[split], SAMPLE_STREAM, index])


def make_targets(settings: Settings, split: str, n: int) -> np.ndarray:
    """Exactly round(pos_frac * n) positives, in a seeded random order."""
    targets = np.zeros(n, dtype=np.int64)
    targets[: round(settings.pos_frac * n)] = 1
    return np.random.default_rng([settings.seed, SPLIT_CODES[split], TARGET_STREAM]).permutation(targets)


def check_output(settings: Settings) -> None:
    """Refuse a non-empty --out unless --overwrite; with it, remove what an earlier set of ours holds."""
    out = settings.out
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not settings.overwrite:
        raise FileExistsError(f"{out} is not empty; refusing to overwrite it (pass --overwrite, or another --out)")
    for split in SPLITS:
        if (out / split).is_dir():
            shutil.rmtree(out / split)
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)


def _init_worker() -> None:
    """Pool initializer: Ctrl-C left to the parent, quiet warnings, one torch thread (the same sums in every
    process), setigen loaded."""
    ignore_interrupts()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    import_setigen()


def _job(task) -> dict:
    """Make one snippet, write it at its Kaggle path, return its metadata row."""
    settings, split, index, sample_id, target = task
    snippet, meta = make_sample(settings, sample_rng(settings, split, index), target)
    write_npy_atomically(snippet, cadence_path(settings.out, split, sample_id))
    return {"id": sample_id, "split": split, **meta}


def _run(tasks: list, workers: int, progress: bool) -> list[dict]:
    """Make the samples in order, here or on a pool of forked processes, with a progress bar."""

    rows = []
    with progress_bar(total=len(tasks), desc="snippets", unit="sample", show=progress) as bar:
        if workers <= 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for task in tasks:
                    rows.append(_job(task))
                    bar.update()
            finally:
                torch.set_num_threads(threads)
        else:
            chunk = max(1, min(16, len(tasks) // (workers * 8)))
            with mp.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
                for row in pool.imap(_job, tasks, chunksize=chunk):
                    rows.append(row)
                    bar.update()
    return rows


def generate(settings: Settings, progress: bool = True) -> pd.DataFrame:
    """Write every snippet, then the tables (last: a set with its labels is whole); returns the metadata."""
    check_output(settings)
    ids = make_ids(settings.seed, settings.n_train + settings.n_test)
    split_ids = {"train": ids[: settings.n_train], "test": ids[settings.n_train :]}
    tasks = []
    for split, n in (("train", settings.n_train), ("test", settings.n_test)):
        (settings.out / split).mkdir(parents=True, exist_ok=True)
        targets = make_targets(settings, split, n)
        for index, (sample_id, target) in enumerate(zip(split_ids[split], targets, strict=True)):
            (settings.out / split / sample_id[0]).mkdir(exist_ok=True)
            tasks.append((settings, split, index, sample_id, int(target)))
    meta = pd.DataFrame(_run(tasks, min(settings.workers, len(tasks)), progress), columns=METADATA_COLUMNS)
    write_csv_atomically(meta, settings.out / METADATA)
    test = meta[meta.split == "test"][["id", "target"]]
    write_csv_atomically(test.assign(target=0.5), settings.out / SAMPLE_SUBMISSION)
    write_csv_atomically(test, settings.out / TEST_LABELS)
    write_csv_atomically(meta[meta.split == "train"][["id", "target"]], settings.out / TRAIN_LABELS)
    return meta


# ----------------------------------------------------------------- command ---


def build_parser() -> argparse.ArgumentParser:
    d = Settings(out=Path("."))
    parser = ErrorLineParser(
        prog="python -m src.synth.snippets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be empty, or --overwrite)")
    parser.add_argument("--n-train", type=int, default=d.n_train, help=f"training snippets (default: {d.n_train})")
    parser.add_argument("--n-test", type=int, default=d.n_test, help=f"test snippets (default: {d.n_test})")
    parser.add_argument("--seed", type=int, default=d.seed, help="the same seed gives byte-identical files (0)")
    parser.add_argument("--pos-frac", type=float, default=d.pos_frac, help="share of needles per split (0.5)")
    parser.add_argument("--snr-min", type=float, default=d.snr_min, help="lowest setigen SNR (default: 5)")
    parser.add_argument("--snr-max", type=float, default=d.snr_max, help="highest SNR, log-uniform (default: 50)")
    parser.add_argument("--max-drift", type=float, default=d.max_drift, help="largest |drift| in Hz/s (default: 4)")
    parser.add_argument("--channels", type=int, default=d.channels, help="snippet pixels per observation (256)")
    parser.add_argument("--rows", type=int, default=d.rows, help="time rows of 18.25 s per observation (16)")
    parser.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes; output does not depend on it"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier set in --out")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings(**vars(build_parser().parse_args(argv)))
    began = time.perf_counter()
    with incomplete_set_at(settings.out):
        meta = generate(settings)
    seconds = time.perf_counter() - began
    print(
        f"wrote {len(meta)} snippets ({int(meta.target.sum())} needles) of shape (6, {settings.rows}, "
        f"{settings.channels}) to {settings.out} in {seconds:.1f} s ({len(meta) / seconds:.1f} samples/s)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_cli(main)
