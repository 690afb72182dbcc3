"""Six-observation snippets cut from cleaned filterbank blocks around a signal: what a model at the files' own
resolution reads, cut the same way for the scan's candidates (src/search/scan.py) and for the synthetic
training cadences (src/synth/snippets.py), so the model sees at training what it scores in a real file.

A snippet is (6, rows, channels): each observation's rows as recorded and `channels` frequency pixels around
where the signal is in that observation. The windows follow the signal: observation k's window is centred on
the signal's channel at the middle of observation k (its start channel there plus half its drift over the
observation), so a needle stays in view across the cadence however far it drifts between observations, and
sits near the centre of every observation that holds it. OFF observations are cut where the signal's track
predicts it, which is where interference moving like it would be.

Frequency is binned by the signal's boxcar width `b` (the hit search's: 1 up to one channel per row, else the
power of two that holds the drift rate): pixel j of a window is the sum of b fine channels divided by sqrt(b),
so unit noise stays unit noise, and a needle smeared over b channels per row by its drift is gathered into one
pixel, moving at most about one pixel per row. Pixels outside the block are 0, the noise mean of a cleaned
block. Channels keep the file's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

SNIPPET_CHANNELS = 256  # frequency pixels per observation in the shipped recipe (configs/scan_cpu.yaml)


def boxcar_width(drift_per_row: np.ndarray | float) -> np.ndarray:
    """The hit search's boxcar for a drift rate in channels per row (src/search/hits.py's octave bands): 1 up to
    one channel per row, else the power of two w with w/2 < |rate| <= w."""
    rate = np.abs(np.asarray(drift_per_row, dtype=float))
    width = 2.0 ** np.ceil(np.log2(np.maximum(rate, 1.0)))
    return width.astype(np.int64)


def window_starts(
    starts: np.ndarray, drifts: np.ndarray, widths: np.ndarray, n_rows: Sequence[int], n_channels: int
) -> np.ndarray:
    """(n, n_obs) first fine channel of every window: centred on start + drift / 2 (the signal's channel at the
    middle of the observation; `drifts` in channels between the first and last row) and n_channels x width wide."""
    rows = np.asarray(n_rows, dtype=float)[None]
    centre = np.asarray(starts, float) + np.asarray(drifts, float) * (rows > 1) / 2
    return np.floor(centre - n_channels * np.asarray(widths, float)[:, None] / 2 + 0.5).astype(np.int64)


def cut_observation(block: torch.Tensor, first: np.ndarray, widths: np.ndarray, n_channels: int) -> torch.Tensor:
    """(n, rows, n_channels) windows of one cleaned (rows, chans) block: window i has n_channels pixels of
    widths[i] fine channels from channel first[i], each the channels' sum / sqrt(width); outside the block 0.
    Sums come from a float64 running sum, so they are exact however long the block."""
    n_rows, n_chans = block.shape
    running = torch.zeros(n_rows, n_chans + 1, dtype=torch.float64, device=block.device)
    torch.cumsum(block.to(torch.float64), dim=1, out=running[:, 1:])
    pixel = torch.arange(n_channels + 1, device=block.device)
    width = torch.tensor(np.asarray(widths), device=block.device)  # a copy: the arrays may be read-only views
    edges = torch.tensor(np.asarray(first), device=block.device)[:, None] + width[:, None] * pixel[None]
    inside = (edges[:, :-1] >= 0) & (edges[:, 1:] <= n_chans)  # whole pixels only
    edges = edges.clamp(0, n_chans)
    sums = running[:, edges[:, 1:]] - running[:, edges[:, :-1]]  # (rows, n, n_channels)
    scale = 1.0 / torch.sqrt(width.to(torch.float64))
    values = (sums * scale[None, :, None] * inside[None]).to(torch.float32)
    return values.permute(1, 0, 2)


def cut_snippets(
    blocks: Sequence[torch.Tensor],
    starts: np.ndarray,
    drifts: np.ndarray,
    widths: np.ndarray,
    n_channels: int = SNIPPET_CHANNELS,
) -> torch.Tensor:
    """(n, n_obs, rows, n_channels) float32 snippets of n signals from the cadence's cleaned blocks (one
    (rows, chans) block per observation, the same channels in each): `starts` (n, n_obs) the signal's channel at
    each observation's first row, `drifts` (n, n_obs) its drift over each observation in channels (first to
    last row), `widths` (n,) the boxcar. Every observation must have the same number of rows."""
    rows = {int(b.shape[0]) for b in blocks}
    if len(rows) != 1:
        raise ValueError(f"snippets need observations of equal rows, got {sorted(rows)}")
    starts, drifts = np.atleast_2d(starts), np.atleast_2d(drifts)
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    if starts.shape != drifts.shape or starts.shape != (len(widths), len(blocks)):
        raise ValueError(f"starts {starts.shape}, drifts {drifts.shape}: expected ({len(widths)}, {len(blocks)})")
    n_rows = [int(b.shape[0]) for b in blocks]
    first = window_starts(starts, drifts, widths, n_rows, n_channels)
    if len(widths) == 0:
        return torch.zeros(0, len(blocks), n_rows[0], n_channels)
    return torch.stack([cut_observation(b, first[:, k], widths, n_channels) for k, b in enumerate(blocks)], dim=1)
