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
   same scale in every row and channel, so a line sum's SNR follows from its length, and a broadband burst
   (a row raised over all channels) is removed with the row's median;
4. optionally, channels whose time-mean stands above `flag_sigma` sigmas of the mean's own noise (persistent
   narrowband interference) are set to zero, the noise mean.
"""

from __future__ import annotations

import math

import torch

MAD_TO_STD = 1.4826
DC_NEIGHBOURS = 3  # channels each side whose median replaces the DC spike
MIN_BANDPASS_BIN = 16
BANDPASS_BINS = 1024  # bins per coarse channel: 1,024 channels each at 2^20 channels
STATISTICS_SAMPLE = 1 << 16  # values per row used for the median and MAD (a strided subset of big rows)


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


def robust_normalise(block: torch.Tensor) -> torch.Tensor:
    """Each row to zero median and unit robust standard deviation (statistics from a strided subset)."""
    step = max(1, math.ceil(block.shape[-1] / STATISTICS_SAMPLE))
    sample = block[:, ::step]
    median = sample.median(dim=1, keepdim=True).values
    mad = (sample - median).abs().median(dim=1, keepdim=True).values
    return (block - median) / (MAD_TO_STD * mad).clamp_min(torch.finfo(block.dtype).tiny)


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
) -> tuple[torch.Tensor, int]:
    """A raw (rows, chans) block of one coarse channel -> unit-noise float32 block, and the flagged count."""
    block = blank_dc(block.float().clone(), dc_channel)
    shape = bandpass(block, bandpass_bin)
    block = block / shape.clamp_min(torch.finfo(block.dtype).tiny)
    block = robust_normalise(block)
    if flag_sigma is None:
        return block, 0
    return flag_persistent(block, flag_sigma)
