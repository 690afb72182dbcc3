"""On-the-fly needle injection: fresh drifting narrowband signals added to training batches on the device.

Every batch draws new paths (linear, quadratic or sinusoidal drift), widths and SNRs, so the model never
sees the same needle twice. A needle is drawn the way the generator draws one (src/synth.py), in the same
units: setigen's SNR is that of the time-summed spectrum of one observation, so its per-pixel peak is
snr * noise_std / sqrt(273); the noise std is measured on each observation of the cadence itself. It is
added to the ON observations only, on one continuous path across the cadence (the telescope slews between
observations), so a cadence that held interference in all six observations and receives a needle becomes
a positive that only the ON/OFF pattern tells apart.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .data import CADENCE_SHAPE, ON_OBSERVATIONS

N_TIME, N_FREQ = CADENCE_SHAPE[1:]
SLEW_ROWS = 1  # about one 18 s row between observations (synth's t_slew of 20 s)
MAX_DRIFT_CHANNELS_PER_ROW = 0.025 * 18.253611008 / 2.7939677238464355  # synth's max_drift, 0.025 Hz/s
INJECTED_SHAPES = ("linear", "quadratic", "sine")
EDGE_MARGIN = 4


def observation_rows(observation_ids: Sequence[int], device: torch.device) -> torch.Tensor:
    """(n_obs, 273) cadence-time row index of every row of the given observations."""
    start = torch.tensor([o * (N_TIME + SLEW_ROWS) for o in observation_ids], dtype=torch.float32, device=device)
    return start[:, None] + torch.arange(N_TIME, dtype=torch.float32, device=device)[None]


def needle_paths(n: int, rows: torch.Tensor, fit: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(n, n_obs, 273) channel of the needle's centre at every row: a drift (plus curvature or a sine for two
    thirds of them). Over the observations marked in `fit` (the ON ones) the path stays inside the band: one
    that would span more channels than the band holds is flattened to fit, then its start is drawn."""
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    span = 6 * (N_TIME + SLEW_ROWS)
    shape = torch.randint(len(INJECTED_SHAPES), (n,), generator=generator)
    drift = uniform(-MAX_DRIFT_CHANNELS_PER_ROW, MAX_DRIFT_CHANNELS_PER_ROW)
    bend = torch.where(shape == 1, uniform(40, 200) * torch.sign(uniform(-1, 1)), torch.zeros(n))
    amplitude = torch.where(shape == 2, uniform(10, 50), torch.zeros(n))
    period = span * torch.exp(uniform(math.log(0.25), math.log(1.5)))
    phase = uniform(0, 2 * math.pi)
    t = rows.reshape(-1).cpu()
    offset = (drift[:, None] * t + bend[:, None] * (t / span) ** 2
              + amplitude[:, None] * torch.sin(2 * math.pi * t / period[:, None] + phase[:, None]))
    fitted = offset[:, fit.repeat_interleave(rows.shape[1]).cpu()]
    band = N_FREQ - 1 - 2 * EDGE_MARGIN
    flatten = (band / (fitted.max(dim=1).values - fitted.min(dim=1).values)).clamp(max=1.0)[:, None]
    offset, fitted = offset * flatten, fitted * flatten
    low = EDGE_MARGIN - fitted.min(dim=1).values
    high = N_FREQ - 1 - EDGE_MARGIN - fitted.max(dim=1).values
    start = low + (high - low).clamp(min=0) * torch.rand(n, generator=generator)
    return (start[:, None] + offset).reshape(n, *rows.shape)


def inject_needles(
    observations: torch.Tensor,
    targets: torch.Tensor,
    observation_ids: Sequence[int],
    probability: float,
    snr_range: Sequence[float],
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add a fresh needle to each sample of a (B, n_obs, 273, 256) batch with `probability`; those samples'
    targets become 1. Returns float32 observations (a new tensor) and the targets."""
    chosen = torch.rand(observations.shape[0], generator=generator) < probability  # drawn on the CPU: same on any device
    observations = observations.to(torch.float32, copy=True)
    n = int(chosen.sum())
    if n == 0:
        return observations, targets
    device = observations.device
    rows = observation_rows(observation_ids, device)
    on = torch.tensor([o in ON_OBSERVATIONS for o in observation_ids], device=device)
    centre = needle_paths(n, rows, on, generator).to(device)  # (n, n_obs, 273)
    low, high = math.log(snr_range[0]), math.log(snr_range[1])
    snr = torch.exp(low + (high - low) * torch.rand(n, generator=generator)).to(device)
    fwhm = (1.0 + 3.0 * torch.rand(n, generator=generator)).to(device)  # channels, as synth's 1-4 channel widths
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    channels = torch.arange(N_FREQ, dtype=torch.float32, device=device)
    profile = torch.exp(-0.5 * ((channels - centre[..., None]) / sigma[:, None, None, None]) ** 2)
    chosen = chosen.to(device)
    selected = observations[chosen]
    noise_std = selected.std(dim=(-2, -1), keepdim=True)
    level = snr[:, None, None, None] * noise_std / math.sqrt(N_TIME) * on.float()[None, :, None, None]
    observations[chosen] = selected + level * profile
    targets = targets.clone()
    targets[chosen.to(targets.device)] = 1.0
    return observations, targets
