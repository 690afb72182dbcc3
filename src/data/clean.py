"""Cleaning one coarse channel of a real observation before the hit search, in torch (CPU or GPU).

A coarse channel of a Breakthrough Listen spectrum is shaped by the polyphase filterbank that made it: a
scalloped bandpass that rolls off towards both edges, and a spike at the centre fine channel (the "DC spike").
Left in, the bandpass makes the noise level depend on the channel and the spike is the strongest "signal" of
every coarse channel. So, per block of one coarse channel:

1. the DC spike is replaced by the median of the channels beside it (every row);
2. the bandpass, estimated as the running median of the time-mean spectrum over bins of `bandpass_bin`
   channels (wide against a narrowband signal, narrow against the roll-off) and interpolated between bins, is
   divided out;
3. each row is normalised to zero median and unit robust standard deviation (1.4826 x MAD): noise then has the
   same scale in every row and channel, so a line sum's SNR follows from its length;
4. rows whose median stood more than `burst_sigma` of their own noise sigmas above the typical row's before the
   normalisation (broadband bursts: a row raised over the whole coarse channel) are set to zero, the noise mean.
   Subtracting the row's median removes a burst's level but not its ripple: the bandpass estimate's small errors,
   multiplied by a strong burst, leave a pattern across the row that steep drift tracks through it pick up as
   hits. Real rows differ by a few hundredths of a noise sigma (setigen's GBT sample), a burst by whole sigmas;
5. optionally, channels whose time-mean stands above `flag_sigma` sigmas of the mean's own noise (persistent
   narrowband interference) are set to zero.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

MAD_TO_STD = 1.4826
DC_NEIGHBOURS = 3  # channels each side whose median replaces the DC spike
MIN_BANDPASS_BIN = 16
BANDPASS_BINS = 1024  # bins per coarse channel: 1,024 channels each at 2^20 channels
STATISTICS_SAMPLE = 1 << 16  # values per row used for the median and MAD (a strided subset of big rows)
BURST_SIGMA = 1.0  # a row raised by this many of its noise sigmas over the whole coarse channel is a burst


class Flagged(NamedTuple):
    """What the cleaning zeroed: persistent narrowband channels and broadband-burst rows."""

    channels: int
    rows: int


def blank_dc(block: torch.Tensor, dc_channel: int | None) -> torch.Tensor:
    """Replace the DC channel of every row by the median of its `DC_NEIGHBOURS` neighbours on each side."""
    if dc_channel is None or not 0 <= dc_channel < block.shape[-1]:
        return block
    lo, hi = max(dc_channel - DC_NEIGHBOURS, 0), min(dc_channel + DC_NEIGHBOURS + 1, block.shape[-1])
    neighbours = torch.cat([block[:, lo:dc_channel], block[:, dc_channel + 1 : hi]], dim=1)
    if neighbours.shape[1]:
        block[:, dc_channel] = neighbours.median(dim=1).values
    return block


def bandpass(block: torch.Tensor, bin_channels: int | None = None) -> torch.Tensor:
    """(chans,) smooth bandpass: medians over bins of the time-mean spectrum, linearly interpolated (the bins'
    medians ignore narrowband signals; a broadband burst scales the whole spectrum, which the rows'
    normalisation then removes)."""
    n_chans = block.shape[-1]
    spectrum = block.mean(dim=0)
    width = bin_channels or max(MIN_BANDPASS_BIN, n_chans // BANDPASS_BINS)
    n_bins = max(1, n_chans // width)
    binned = spectrum[: n_bins * width].reshape(n_bins, width).median(dim=1).values
    if n_bins == 1:
        return binned.expand(n_chans).clone()
    centres = (torch.arange(n_bins, device=block.device, dtype=torch.float32) + 0.5) * width - 0.5
    position = torch.arange(n_chans, device=block.device, dtype=torch.float32)
    index = torch.searchsorted(centres, position).clamp(1, n_bins - 1)
    left, right = centres[index - 1], centres[index]
    weight = ((position - left) / (right - left)).clamp(0, 1)
    return binned[index - 1] * (1 - weight) + binned[index] * weight


def row_statistics(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, 1) median and robust standard deviation of each row (from a strided subset of big rows)."""
    step = max(1, math.ceil(block.shape[-1] / STATISTICS_SAMPLE))
    sample = block[:, ::step]
    median = sample.median(dim=1, keepdim=True).values
    mad = (sample - median).abs().median(dim=1, keepdim=True).values
    return median, (MAD_TO_STD * mad).clamp_min(torch.finfo(block.dtype).tiny)


def burst_rows(median: torch.Tensor, sigma: torch.Tensor, burst_sigma: float) -> torch.Tensor:
    """(rows,) True where a row's median stands more than `burst_sigma` of its sigmas above the median row's."""
    typical = median.flatten().median()
    return ((median - typical) / sigma).flatten() > burst_sigma


def flag_persistent(block: torch.Tensor, flag_sigma: float) -> tuple[torch.Tensor, int]:
    """Zero the channels whose time-mean exceeds `flag_sigma` sigmas of a noise channel's mean; returns the
    block and how many channels were flagged."""
    mean = block.mean(dim=0)
    flagged = mean > flag_sigma / math.sqrt(block.shape[0])
    block[:, flagged] = 0.0
    return block, int(flagged.sum())


def clean_block(
    block: torch.Tensor,
    dc_channel: int | None,
    bandpass_bin: int | None = None,
    flag_sigma: float | None = None,
    burst_sigma: float | None = BURST_SIGMA,
) -> tuple[torch.Tensor, Flagged]:
    """A raw (rows, chans) block of one coarse channel -> unit-noise float32 block, and what was zeroed
    (`burst_sigma` None: no burst rows are zeroed)."""
    block = blank_dc(block.float().clone(), dc_channel)
    shape = bandpass(block, bandpass_bin)
    block = block / shape.clamp_min(torch.finfo(block.dtype).tiny)
    median, sigma = row_statistics(block)
    block = (block - median) / sigma
    n_rows = 0
    if burst_sigma is not None:
        bursts = burst_rows(median, sigma, burst_sigma)
        block[bursts] = 0.0
        n_rows = int(bursts.sum())
    n_channels = 0
    if flag_sigma is not None:
        block, n_channels = flag_persistent(block, flag_sigma)
    return block, Flagged(n_channels, n_rows)
