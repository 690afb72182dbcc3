"""On-the-fly signal injection: fresh drifting narrowband signals added to training batches on the device.

Every batch draws new paths (linear, quadratic, sinusoidal or pulsed), widths and SNRs, so the model never
sees the same signal twice. A signal is drawn the way the generator draws one (src/synth/generator.py), in the same
units: setigen's SNR is that of the time-summed spectrum of one observation, so its per-pixel peak is
snr * noise_std / sqrt(273); the noise std is measured on each observation of the cadence itself. Signals
follow one continuous path across the cadence (the telescope slews between observations).

- a needle goes into the ON observations only and makes the sample a positive (`add_needles`);
- interference goes into all six observations and leaves the label alone (`add_interference`): drawn
  like a needle, often with the near-zero drift of terrestrial RFI, it is the negative that only the OFF
  observations tell apart from a needle - the crux of the task - made fresh every batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from src.core.cadence import CADENCE_SHAPE, DF_HZ, DT_S, ON_OBSERVATIONS
from src.synth.generator import (
    EDGE_MARGIN,
    F_PROFILES,
    NEAR_ZERO_DRIFT,
    PULSE_DUTY,
    PULSE_PERIOD_ROWS,
    QUADRATIC_BEND_CHANNELS,
    SINE_AMPLITUDE_CHANNELS,
    SINE_DRIFT_SCALE,
    SINE_PERIOD_OBSERVATIONS,
    WIDTH_CHANNELS,
    SynthConfig,
)

N_TIME, N_FREQ = CADENCE_SHAPE[1:]
SLEW_ROWS = 1  # about one 18 s row between observations (synth's t_slew of 20 s)
MAX_DRIFT_CHANNELS_PER_ROW = SynthConfig.max_drift * DT_S / DF_HZ  # the generator's default largest drift
INJECTED_SHAPES = ("linear", "quadratic", "sine", "pulsed")
SINC2_HALF_MAXIMUM = 0.442946470689452  # sinc(x)^2 = 1/2 at this x (setigen's FWHM of a sinc squared)


def draw_uniform(n: int, bounds: Sequence[float], generator: torch.Generator | None) -> torch.Tensor:
    """n draws, uniform in [low, high), from the batch's generator (on the CPU: the same on any device)."""
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=generator)


def observation_rows(observation_ids: Sequence[int], device: torch.device) -> torch.Tensor:
    """(n_obs, 273) cadence-time row index of every row of the given observations."""
    start = torch.tensor([o * (N_TIME + SLEW_ROWS) for o in observation_ids], dtype=torch.float32, device=device)
    return start[:, None] + torch.arange(N_TIME, dtype=torch.float32, device=device)[None]


def needle_paths(
    n: int,
    rows: torch.Tensor,
    fit: torch.Tensor,
    generator: torch.Generator,
    shape: torch.Tensor,
    near_zero: bool = False,
) -> torch.Tensor:
    """(n, n_obs, 273) channel of the signal's centre at every row: a drift (plus curvature or a sine for the
    quadratic and sine shapes, indices into INJECTED_SHAPES; pulsed paths are linear), with the generator's
    parameter ranges (src/synth/generator.py; a sine's phase is drawn here, where the generator starts it at zero). Over
    the observations marked in `fit` the path stays inside the band: one that would span more channels than
    the band holds is flattened to fit, then its start is drawn. `near_zero` gives half of the paths the small
    drift of RFI."""

    def uniform(low: float, high: float) -> torch.Tensor:
        return draw_uniform(n, (low, high), generator)

    span = 6 * (N_TIME + SLEW_ROWS)
    sine = shape == INJECTED_SHAPES.index("sine")
    drift = uniform(-MAX_DRIFT_CHANNELS_PER_ROW, MAX_DRIFT_CHANNELS_PER_ROW)
    if near_zero:
        drift = torch.where(torch.rand(n, generator=generator) < 0.5, drift * NEAR_ZERO_DRIFT, drift)
    drift = torch.where(sine, drift * SINE_DRIFT_SCALE, drift)
    bend = uniform(*QUADRATIC_BEND_CHANNELS) * torch.sign(uniform(-1, 1))
    bend = torch.where(shape == INJECTED_SHAPES.index("quadratic"), bend, torch.zeros(n))
    amplitude = torch.where(sine, uniform(*SINE_AMPLITUDE_CHANNELS), torch.zeros(n))
    period = N_TIME * torch.exp(uniform(*(math.log(p) for p in SINE_PERIOD_OBSERVATIONS)))
    phase = uniform(0, 2 * math.pi)
    t = rows.reshape(-1).cpu()
    offset = (
        drift[:, None] * t
        + bend[:, None] * (t / span) ** 2
        + amplitude[:, None] * torch.sin(2 * math.pi * t / period[:, None] + phase[:, None])
    )
    fitted = offset[:, fit.repeat_interleave(rows.shape[1]).cpu()]
    band = N_FREQ - 1 - 2 * EDGE_MARGIN
    flatten = (band / (fitted.max(dim=1).values - fitted.min(dim=1).values)).clamp(max=1.0)[:, None]
    offset, fitted = offset * flatten, fitted * flatten
    low = EDGE_MARGIN - fitted.min(dim=1).values
    high = N_FREQ - 1 - EDGE_MARGIN - fitted.max(dim=1).values
    start = low + (high - low).clamp(min=0) * torch.rand(n, generator=generator)
    return (start[:, None] + offset).reshape(n, *rows.shape)


def pulse_trains(n: int, rows: torch.Tensor, pulsed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(n, n_obs, 273) intensity of each signal at every row: 1, or for `pulsed` ones an on/off square train
    with the generator's pulse periods (4-60 rows) and duty cycles (0.3-0.7)."""
    period = draw_uniform(n, PULSE_PERIOD_ROWS, generator)
    duty = draw_uniform(n, PULSE_DUTY, generator)
    phase = period * torch.rand(n, generator=generator)
    t = rows.reshape(1, -1).cpu()
    on = torch.remainder(t - phase[:, None], period[:, None]) < (duty * period)[:, None]
    return torch.where(pulsed[:, None], on.float(), torch.ones(())).reshape(n, *rows.shape)


def spectral_profiles(offset: torch.Tensor, fwhm: torch.Tensor, sinc2: torch.Tensor) -> torch.Tensor:
    """Peak-1 spectral profiles of the generator's two kinds, at `offset` channels from each signal's centre
    (n, ...): a Gaussian of that FWHM, or (where `sinc2`) setigen's sinc squared of that FWHM cut at its
    first zeros."""
    shape = (-1,) + (1,) * (offset.ndim - 1)
    sigma = (fwhm / (2 * math.sqrt(2 * math.log(2)))).reshape(shape)
    gaussian = torch.exp(-0.5 * (offset / sigma) ** 2)
    first_zero = (fwhm / 2 / SINC2_HALF_MAXIMUM).reshape(shape)
    main_lobe = torch.where(offset.abs() < first_zero, torch.sinc(offset / first_zero) ** 2, torch.zeros(()))
    return torch.where(sinc2.reshape(shape), main_lobe, gaussian)


def add_signals(
    observations: torch.Tensor,
    chosen: torch.Tensor,
    observation_ids: Sequence[int],
    present: Sequence[int],
    snr_range: Sequence[float],
    generator: torch.Generator | None,
    near_zero: bool = False,
) -> None:
    """Add, in place, one fresh signal to each `chosen` sample of a float32 (B, n_obs, 273, 256) batch, in
    the observations listed in `present` (cadence indices) and kept inside the band there."""
    n = int(chosen.sum())
    if n == 0:
        return
    device = observations.device
    rows = observation_rows(observation_ids, device)
    holds = torch.tensor([o in present for o in observation_ids], device=device)
    shape = torch.randint(len(INJECTED_SHAPES), (n,), generator=generator)
    centre = needle_paths(n, rows, holds, generator, shape, near_zero).to(device)  # (n, n_obs, 273)
    intensity = pulse_trains(n, rows, shape == INJECTED_SHAPES.index("pulsed"), generator).to(device)
    low, high = math.log(snr_range[0]), math.log(snr_range[1])
    snr = torch.exp(low + (high - low) * torch.rand(n, generator=generator)).to(device)
    fwhm = draw_uniform(n, WIDTH_CHANNELS, generator)
    sinc2 = torch.rand(n, generator=generator) < 1 / len(F_PROFILES)
    channels = torch.arange(N_FREQ, dtype=torch.float32, device=device)
    profile = spectral_profiles(channels - centre[..., None], fwhm.to(device), sinc2.to(device))
    chosen = chosen.to(device)
    selected = observations[chosen]
    noise_std = selected.std(dim=(-2, -1), keepdim=True)
    level = snr[:, None, None, None] * noise_std / math.sqrt(N_TIME) * holds.float()[None, :, None, None]
    observations[chosen] = selected + level * intensity[..., None] * profile


def add_needles(
    observations: torch.Tensor,
    targets: torch.Tensor,
    observation_ids: Sequence[int],
    probability: float,
    snr_range: Sequence[float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Add, in place, a fresh needle to the ON observations of each sample of a float32 (B, n_obs, 273, 256)
    batch with `probability`; returns the targets with those samples' set to 1 (a new tensor when any are)."""
    chosen = (
        torch.rand(observations.shape[0], generator=generator) < probability
    )  # drawn on the CPU: same on any device
    if not chosen.any():
        return targets
    add_signals(observations, chosen, observation_ids, ON_OBSERVATIONS, snr_range, generator)
    targets = targets.clone()
    targets[chosen.to(targets.device)] = 1.0
    return targets


def add_interference(
    observations: torch.Tensor,
    observation_ids: Sequence[int],
    probability: float,
    snr_range: Sequence[float],
    generator: torch.Generator | None = None,
) -> None:
    """Add, in place, fresh interference to all six observations of each sample of a float32 (B, 6, 273, 256)
    batch with `probability`, labels unchanged: a negative stays a negative that holds a needle-like signal in
    its OFF observations too, a positive becomes a positive with interference. Needs all six observations:
    interference seen only in the ON ones would be a needle."""
    if sorted(observation_ids) != list(range(6)):
        raise ValueError(f"interference injection needs all six observations loaded, got {list(observation_ids)}")
    chosen = torch.rand(observations.shape[0], generator=generator) < probability
    add_signals(observations, chosen, observation_ids, range(6), snr_range, generator, near_zero=True)


def inject_signals(
    observations: torch.Tensor,
    targets: torch.Tensor,
    observation_ids: Sequence[int],
    needle_probability: float,
    interference_probability: float,
    snr_range: Sequence[float],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch (B, n_obs, 273, 256) as float32 observations (one new tensor; the loader's batch is
    left alone) with fresh needles in a `needle_probability` share of its samples (made positives), then fresh
    all-six interference in an `interference_probability` share (labels kept). Returns observations, targets."""
    observations = observations.to(torch.float32, copy=True)
    if needle_probability > 0:
        targets = add_needles(observations, targets, observation_ids, needle_probability, snr_range, generator)
    if interference_probability > 0:
        add_interference(observations, observation_ids, interference_probability, snr_range, generator)
    return observations, targets
