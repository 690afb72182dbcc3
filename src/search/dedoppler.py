"""Brute-force de-Doppler: the matched filter for a linearly drifting narrowband signal, batched in torch.

For every observation (273 time rows x 256 channels) it sums the pixels along every straight line that
starts at channel f in the first row and drifts by d channels by the last row, for every integer d in
[-max_drift, max_drift] (the row-t pixel is channel f + round(d * t / (rows - 1)), the classical brute-force
/ Taylor-tree staircase). The sums of all lines are computed at once in the Fourier domain: a shift along
frequency is a phase ramp, so the sum over rows of shifted rows is one batched complex matrix product per
frequency bin (exactly the integer-shift sums, up to float rounding; the band is zero padded so nothing
wraps). Each observation's line sums become an SNR with a robust noise estimate (median and MAD over all
its lines), and a cadence is scored ON minus OFF: the weakest ON observation's best line SNR minus the
strongest OFF observation's.

Units: one channel is 2.79 Hz and one observation spans 272 row steps of 18.25 s, so a drift of one
channel per observation is 0.00056 Hz/s; the default max_drift of 48 channels (0.027 Hz/s) covers the
generator's linear drifts (|rate| <= 0.025 Hz/s, i.e. <= 44.4 channels per observation).

The same line sums, aligned across the cadence, are also a model input (`cadence_planes`, the `dedoppler`
view): the matched filter gathers a faint needle's power into one pixel, which a CNN's small kernels cannot.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from src.core.cadence import CADENCE_SHAPE, DF_HZ, DT_S, OFF_OBSERVATIONS, ON_OBSERVATIONS, T_SLEW_S

N_OBS, N_ROWS, N_CHANS = CADENCE_SHAPE
MAX_DRIFT = 48  # channels over one observation: 0.027 Hz/s, above the generator's 0.025 Hz/s
WIDTH = 1  # channels summed across each line (boxcar); 1 = single-channel lines
MAD_TO_STD = 1.4826  # MAD of a Gaussian times this is its standard deviation
OBSERVATION_STEP_ROWS = N_ROWS + T_SLEW_S / DT_S  # rows from one Kaggle observation's start to the next's
REFERENCE_OBSERVATION = ON_OBSERVATIONS[1]  # the planes are aligned at the first row of the middle ON observation


@dataclass(frozen=True)
class DedopplerResult:
    """Per-observation best line of a batch of cadences (all tensors shaped (batch, 6))."""

    snr: torch.Tensor  # best line SNR of each observation
    drift: torch.Tensor  # its drift, channels per observation
    channel: torch.Tensor  # its start channel (first row)

    def score(self) -> torch.Tensor:
        """Cadence score: weakest ON observation's best SNR minus strongest OFF observation's."""
        return cadence_score(self.snr)


def drift_hz_per_s(drift_channels: float, n_rows: int = N_ROWS) -> float:
    """A drift in channels per observation as a rate in Hz/s."""
    return drift_channels * DF_HZ / ((n_rows - 1) * DT_S)


def drift_grid(max_drift: int) -> torch.Tensor:
    """Integer drifts -max_drift..max_drift, channels between the first and last row."""
    if max_drift < 0:
        raise ValueError(f"max_drift must be >= 0, got {max_drift}")
    return torch.arange(-max_drift, max_drift + 1)


def drift_steps(max_drift: int, n_drifts: int | None = None) -> torch.Tensor:
    """The drifts searched, in channels between the first and last row: every integer in [-max_drift, max_drift],
    or `n_drifts` evenly spaced over that range (a model input's height)."""
    if n_drifts is None:
        return drift_grid(max_drift)
    if n_drifts < 2:
        raise ValueError(f"n_drifts must be >= 2, got {n_drifts}")
    return torch.linspace(-max_drift, max_drift, n_drifts, dtype=torch.float64)


def row_shifts(drifts: torch.Tensor, n_rows: int) -> torch.Tensor:
    """(drifts, rows) channel offset of each row on each line: round(d * t / (rows - 1)), symmetric in d."""
    t = torch.arange(n_rows, dtype=torch.float64)
    return torch.round(drifts.double()[:, None] * t / max(n_rows - 1, 1)).long()


def fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFT lengths that pocketfft handles fast."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def line_sums(x: torch.Tensor, max_drift: int = MAX_DRIFT, n_drifts: int | None = None) -> torch.Tensor:
    """Sums along every straight line: (..., rows, chans) -> (..., drifts, chans), float32, for the drifts of
    `drift_steps(max_drift, n_drifts)`.

    Entry [d, f] sums row t at channel f + shift[d, t]; channels outside the band count as zero.
    """
    *lead, n_rows, n_chans = x.shape
    n_fft = fft_size(n_chans + max_drift)
    ramp = shift_ramp(n_rows, max_drift, n_fft, n_drifts, x.device)
    spectra = torch.fft.rfft(x.float().reshape(-1, n_rows, n_chans), n=n_fft, dim=-1)  # (n, rows, bins)
    summed = torch.matmul(spectra.permute(2, 0, 1).contiguous(), ramp)  # (bins, n, drifts)
    sums = torch.fft.irfft(summed.permute(1, 2, 0), n=n_fft, dim=-1)[..., :n_chans]
    return sums.reshape(*lead, ramp.shape[-1], n_chans)


@functools.lru_cache(maxsize=4)
def shift_ramp(
    n_rows: int, max_drift: int, n_fft: int, n_drifts: int | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(bins, rows, drifts) complex64 phase ramps: multiplying a row's spectrum shifts it by its line's offset.
    Kept per device, so a training loop on a GPU does not copy them there at every batch."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    shifts = row_shifts(drift_steps(max_drift, n_drifts), n_rows).T.double()  # (rows, drifts)
    return torch.exp(2j * torch.pi * k[:, None, None] * shifts[None] / n_fft).to(device, torch.complex64)


def valid_lines(n_chans: int, max_drift: int, width: int = WIDTH) -> torch.Tensor:
    """(drifts, chans - width + 1) mask of the lines (and their width-channel bands) that stay in the band."""
    drifts = drift_grid(max_drift)[:, None]
    start = torch.arange(n_chans - width + 1)[None]
    return (start + drifts.clamp(max=0) >= 0) & (start + width - 1 + drifts.clamp(min=0) < n_chans)


def line_snr(sums: torch.Tensor, max_drift: int = MAX_DRIFT, width: int = WIDTH) -> torch.Tensor:
    """Line sums (..., drifts, chans) -> SNR of each width-channel line, NaN where the line leaves the band.

    The noise level is robust to the signal itself: median and MAD over all the observation's lines.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    *lead, n_drifts, n_chans = sums.shape
    flat = sums.reshape(-1, 1, n_chans)
    banded = F.avg_pool1d(flat, width, stride=1) * width if width > 1 else flat
    banded = banded.reshape(*lead, n_drifts, n_chans - width + 1)
    banded = banded.masked_fill(~valid_lines(n_chans, max_drift, width), float("nan"))
    values = banded.flatten(-2)
    median = values.nanmedian(dim=-1, keepdim=True).values
    mad = (values - median).abs().nanmedian(dim=-1, keepdim=True).values
    snr = (values - median) / (MAD_TO_STD * mad).clamp_min(1e-12)
    return snr.reshape(banded.shape)


def search(cadences: torch.Tensor, max_drift: int = MAX_DRIFT, width: int = WIDTH) -> DedopplerResult:
    """Best line of every observation of a batch of cadences (batch, 6, rows, chans)."""
    if cadences.ndim != 4 or cadences.shape[1] != N_OBS:
        raise ValueError(f"expected cadences shaped (batch, {N_OBS}, rows, chans), got {tuple(cadences.shape)}")
    snr = line_snr(line_sums(cadences, max_drift), max_drift, width)
    flat = snr.nan_to_num(nan=-torch.inf).flatten(-2)
    best, where = flat.max(dim=-1)
    n_start = snr.shape[-1]
    return DedopplerResult(snr=best, drift=where // n_start - max_drift, channel=where % n_start)


def cadence_score(snr: torch.Tensor) -> torch.Tensor:
    """(batch, 6) best SNRs -> ON-minus-OFF score: min over ON observations minus max over OFF."""
    return snr[:, list(ON_OBSERVATIONS)].amin(dim=1) - snr[:, list(OFF_OBSERVATIONS)].amax(dim=1)


def observation_step_rows(n_rows: int, row_seconds: float = DT_S) -> float:
    """Rows from one observation's start to the next's: its own rows plus the slew, in rows of `row_seconds`."""
    return n_rows + T_SLEW_S / row_seconds


def cadence_planes(
    observations: torch.Tensor, n_drifts: int, max_drift: int = MAX_DRIFT, row_seconds: float = DT_S
) -> torch.Tensor:
    """(B, 6, rows, chans) normalised observations -> (B, 6, n_drifts, chans) de-Doppler planes aligned across
    the cadence, in noise sigmas for unit-variance input. Any rows and chans: the observations follow each other
    at the batch's own row count plus the slew in rows of `row_seconds` (Kaggle's: 273 + 20 s / 18.25 s). The
    observations must share one frequency window (a fixed window, not one that follows a candidate's drift).

    Entry [k, d, f] sums observation k along the straight line of drift d (channels per observation) that is at
    channel f at the first row of the middle ON observation, continued across the slews. A linearly drifting
    signal so lands on the same pixel in every observation that holds it: a needle in the three ON planes only,
    interference in all six, so the model compares ON with OFF pixel by pixel. Lines outside the band sum to 0.
    """
    batch, n_obs, n_rows, n_chans = observations.shape
    if n_obs != N_OBS:
        raise ValueError(f"cadence planes need all {N_OBS} observations, got {n_obs}")
    sums = line_sums(observations, max_drift, n_drifts) / math.sqrt(
        n_rows
    )  # (B, 6, D, F), each line from its own start
    drifts = drift_steps(max_drift, n_drifts)
    step_rows = observation_step_rows(n_rows, row_seconds)
    steps = (torch.arange(N_OBS, dtype=torch.float64) - REFERENCE_OBSERVATION) * step_rows / (n_rows - 1)
    offsets = (
        torch.round(steps[:, None] * drifts[None]).long().to(observations.device)
    )  # (6, D): channel shift at obs start
    index = torch.arange(n_chans, device=observations.device) + offsets[..., None]  # (6, D, F)
    inside = (index >= 0) & (index < n_chans)
    gathered = sums.gather(-1, index.clamp(0, n_chans - 1).expand(batch, -1, -1, -1))
    return gathered * inside
