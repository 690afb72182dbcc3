"""The hit search of one observation's block (a whole coarse channel): exact de-Doppler over every drift up to
the maximum, with the power of fast drifts gathered rather than lost, and one hit per signal.

A signal drifting by rho channels per time row spreads each row's power over ~|rho| channels once |rho| > 1
(the spectrometer integrates while the signal moves), so a single-channel line keeps only 1/|rho| of it.
The drifts are searched in octave bands: band 0 holds |rho| <= 1 with single-channel lines at every integer
drift (channels between the first and last row); band j >= 1 holds w/2 < |rho| <= w for w = 2^j, and sums
w-channel boxcars, taken every w/2 channels, along lines whose drift steps by w/2 channels; a line is then at
most w/4 channels off a straight signal in any row, inside its boxcar. Every line sum is exact (integer
shifts of whole rows, in torch, on the block's device); each band's sums become SNRs with the band's own
robust noise (median and 1.4826 x MAD over a sample of its sums), which also absorbs the correlation of
neighbouring fine channels.

One hit per signal: the best line at every start channel is kept, local maxima above the threshold become
candidates, and candidates are accepted strongest first, each removing every weaker candidate whose track
(start channel to end channel over the observation, widened by the boxcars) meets its own. A strong signal
thus yields one hit, not a cluster of its neighbours and of the lines that cross it. A strong signal's own
width is measured in the block (the channels beside its line whose mean along it stands above one noise
sigma): bright interference is often several channels wide, and a steep track that only grazes its wing in a
row or two collects enough of its power to pass the threshold.

Beside a bright signal the best line at a start channel is often one crossing it, which that signal's hit
removes, and a fainter signal starting there is lost with it; `search_block` masks the bright hits' lines and
searches their neighbourhoods again (`hits_beside_bright`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MAD_TO_STD = 1.4826
NOISE_SAMPLE = 1 << 16  # line sums per band used for its median and MAD
LOCAL_MAX_RADIUS = 2  # channels each side a candidate must top
CPU_TILE = 1 << 16  # start positions per tree on a CPU: a tile's tree stays in cache
MAX_CANDIDATES = 200_000  # strongest local maxima kept per block before the one-hit-per-signal pass
TRACK_TOLERANCE = 1.0  # extra channels between two tracks that still count as meeting
WING_SIGMA = 1.0  # a signal's width: the channels beside its line whose mean along it exceeds this (noise sigmas)
WIDTH_RADIUS = 32  # channels each side looked at for a signal's width
STRONG_FACTOR = 3.0  # candidates of this many times the threshold have their width measured (weaker ones cannot
# lift a crossing track over the threshold), and the hits among them are masked for the search beside them
MASK_MARGIN = 1.0  # channels masked beyond each side of a bright signal's measured width
MASK_SIGMA = 5.0  # pixels above this (noise sigmas, alone or over 3 channels) near a bright signal are masked too:
# a needle of SNR s has s / sqrt(rows) per pixel (3 at SNR 12, 16 rows), a bright signal's curve off its track more
ALIKE_DRIFT_STEPS = 2.0  # two hits whose drifts differ by at most this many drift steps move alike


@dataclass(frozen=True)
class DriftBand:
    """One octave of drift rates: boxcar width, stride between boxcars (both in channels), and whether the
    tree runs on rows pre-shifted by one stride per row (drifts of one to two strides per row)."""

    width: int
    stride: int
    preshift: bool

    def drift_per_row(self, tree_drift: torch.Tensor, n_tree_rows: int) -> torch.Tensor:
        """Channels per row of the tree's drift index d (it shifts d positions over n_tree_rows - 1 rows)."""
        rate = tree_drift.float() / max(n_tree_rows - 1, 1) + (1.0 if self.preshift else 0.0)
        return rate * self.stride


def drift_bands(max_drift_per_row: float) -> list[DriftBand]:
    """The octave bands that cover drift rates up to `max_drift_per_row` channels per row: band 0 (single
    channels, up to one channel per row), then boxcars of 2, 4, 8, ... channels for up to 2, 4, 8, ..."""
    bands = [DriftBand(1, 1, False)]
    width = 2
    while max_drift_per_row > width // 2:
        bands.append(DriftBand(width, width // 2, True))
        width *= 2
    return bands


def boxcar(block: torch.Tensor, width: int, stride: int) -> torch.Tensor:
    """(rows, chans) -> (rows, positions): sums of `width` adjacent channels every `stride` channels."""
    if width == 1:
        return block
    return F.avg_pool1d(block[:, None], width, stride)[:, 0] * width


def tree_rows(n_rows: int) -> int:
    """The tree's row count: the next power of two (missing rows are zeros, as in turbo_seti's tree)."""
    return 1 << max(0, math.ceil(math.log2(max(n_rows, 1))))


def taylor_tree(rows: torch.Tensor) -> torch.Tensor:
    """(n, positions) with n a power of two -> (n, positions): entry [d, p] sums row t at position
    p + shift_d(t), a staircase from 0 to d over the n rows (Taylor 1974). Each of the log2(n) stages merges
    pairs of row groups: a line of drift d over a merged group is the line of drift d // 2 over its first
    half plus that over its second half started d - d // 2 positions later. Positions past the end count as 0.
    """
    n_pos = rows.shape[1]
    state = rows[:, None, :]  # (groups, drifts per group, positions)
    while state.shape[0] > 1:
        first, second = state[0::2], state[1::2]
        groups, drifts, _ = first.shape
        merged = torch.empty(groups, 2 * drifts, n_pos, dtype=rows.dtype, device=rows.device)
        for d in range(2 * drifts):
            half, keep = d // 2, max(n_pos - (d - d // 2), 0)  # the second half starts d - d // 2 later
            torch.add(first[:, half, :keep], second[:, half, n_pos - keep :], out=merged[:, d, :keep])
            merged[:, d, keep:] = first[:, half, keep:]
        state = merged
    return state[0]


def preshift_rows(rows: torch.Tensor) -> torch.Tensor:
    """Row t moved t positions towards 0 (zeros enter at the end): the tree's drifts then start at one position
    per row."""
    shifted = torch.zeros_like(rows)
    for t in range(min(rows.shape[0], rows.shape[1])):
        shifted[t, : rows.shape[1] - t] = rows[t, t:]
    return shifted


def best_lines(
    rows: torch.Tensor, band: DriftBand, drifts: range, tile: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best positive-drift line per start position of (n_tree, positions) boxcar rows, over the tree drifts
    `drifts`: (best sum, its drift index, a strided sample of all sums for the noise level). Lines that run
    past the end are left out. Positions go in tiles of `tile` (plus the lines' reach), so that the tree's
    stages work in cache on a CPU; on a GPU one tile is the whole block."""
    n_tree, n_pos = rows.shape
    reach = (n_tree - 1) * (2 if band.preshift else 1)
    reaches = torch.arange(n_tree, device=rows.device) + (n_tree - 1 if band.preshift else 0)
    best = torch.empty(n_pos, device=rows.device)
    index = torch.empty(n_pos, dtype=torch.long, device=rows.device)
    sample_step = max(1, n_pos * len(drifts) // NOISE_SAMPLE)
    samples = []
    for start in range(0, n_pos, tile):
        stop = min(start + tile, n_pos)
        segment = rows[:, start : min(stop + reach, n_pos)]
        tree = taylor_tree(preshift_rows(segment) if band.preshift else segment)
        sums = tree[drifts.start : drifts.stop, : stop - start]
        if stop + reach > n_pos:  # the last positions' lines leave the block
            ends = torch.arange(start, stop, device=rows.device)[None] + reaches[drifts.start : drifts.stop, None]
            sums = sums.masked_fill(ends >= n_pos, -torch.inf)
        best[start:stop], index[start:stop] = sums.max(dim=0)
        samples.append(sums.reshape(-1)[::sample_step])
    index += drifts.start
    return best, index, torch.cat(samples)


def robust_level(sample: torch.Tensor) -> tuple[float, float]:
    """Median and 1.4826 x MAD of the finite values of a sample of line sums."""
    sample = sample[torch.isfinite(sample)]
    median = sample.median()
    mad = (sample - median).abs().median()
    return float(median), float(MAD_TO_STD * mad) or 1.0


@dataclass(frozen=True)
class Profile:
    """The best line at every start channel of a block, over all bands (numpy, (chans,) each)."""

    snr: np.ndarray
    drift: np.ndarray  # channels between the first and last row (float: a boxcar line's centre)
    width: np.ndarray  # boxcar channels
    noise: tuple[tuple[float, float], ...]  # (median, sigma) of each band, for measuring a given line later


def dedoppler_profile(
    block: torch.Tensor,
    max_drift_per_row: float,
    tile: int | None = None,
    noise: Sequence[tuple[float, float]] | None = None,
) -> Profile:
    """Search a cleaned (rows, chans) block for lines of every drift up to `max_drift_per_row` channels per
    row; drifts are reported in channels between the first and last row. With `noise` (another profile's),
    SNRs are against those bands' levels instead of this block's own (a piece of a block searched again)."""
    n_rows, n_chans = block.shape
    tile = tile or (n_chans if block.device.type == "cuda" else CPU_TILE)
    n_tree = tree_rows(n_rows)
    snr = torch.full((n_chans,), -torch.inf, device=block.device)
    drift = torch.zeros(n_chans, device=block.device)
    width = torch.ones(n_chans, device=block.device)
    levels = []
    for band in drift_bands(max_drift_per_row):
        if band.width > n_chans // 2:  # a line that fast leaves the block within two rows
            break
        rows = F.pad(boxcar(block, band.width, band.stride), (0, 0, 0, n_tree - n_rows))
        rate = band.drift_per_row(torch.arange(n_tree, device=block.device), n_tree)
        fastest = int((rate <= max(max_drift_per_row, 1.0)).sum())  # rates rise with the tree's drift index
        # position p's line starts at the centre of its boxcar: channel p * stride + (width - 1) // 2
        first = (band.width - 1) // 2
        n_pos = min(rows.shape[1], (n_chans - 1 - first) // band.stride + 1)
        view = slice(first, first + (n_pos - 1) * band.stride + 1, band.stride)
        level = noise[len(levels)] if noise is not None and len(levels) < len(noise) else None
        halves = ((1.0, rows, range(fastest)), (-1.0, rows.flip(-1), range(int(not band.preshift), fastest)))
        for sign, data, drifts in halves:  # drift 0 belongs to the positive half only
            best, index, sample = best_lines(data, band, drifts, tile)
            if sign < 0:
                best, index = best.flip(0), index.flip(0)
            level = level or robust_level(sample)
            band_snr = (best[:n_pos] - level[0]) / level[1]
            better = band_snr > snr[view]
            snr[view] = torch.where(better, band_snr, snr[view])
            drift[view] = torch.where(better, sign * rate[index[:n_pos]] * (n_rows - 1), drift[view])
            width[view] = torch.where(better, float(band.width), width[view])
        levels.append(level)
    return Profile(
        snr=snr.cpu().numpy(),
        drift=drift.cpu().numpy(),
        width=width.cpu().numpy().astype(np.int64),
        noise=tuple(levels),
    )


def local_maxima(snr: np.ndarray, threshold: float, radius: int = LOCAL_MAX_RADIUS) -> np.ndarray:
    """Channels at or above `threshold` that are the maximum within `radius` channels each side."""
    values = torch.from_numpy(np.nan_to_num(snr, nan=-np.inf, neginf=-1e30))
    peaks = F.max_pool1d(values[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]
    keep = (values >= threshold) & (values == peaks)
    return np.flatnonzero(keep.numpy())


def tracks_meet(
    start: float, drift: float, width: float, starts: np.ndarray, drifts: np.ndarray, widths: np.ndarray, tol: float
) -> np.ndarray:
    """Whether straight tracks (start channel at the first row, drift to the last row) come within
    (w1 + w2) / 2 + tol channels of one track: the gap is linear in time, so its ends decide."""
    gap_first = starts - start
    gap_last = gap_first + (drifts - drift)
    reach = (widths + width) / 2 + tol
    crossing = np.sign(gap_first) != np.sign(gap_last)
    return crossing | (np.minimum(np.abs(gap_first), np.abs(gap_last)) <= reach)


def signal_widths(
    block: torch.Tensor, starts: np.ndarray, drifts: np.ndarray, radius: int = WIDTH_RADIUS
) -> np.ndarray:
    """Each line's signal width in channels: 1 + twice the longer run of channels, on either side of the line,
    whose mean along the line stays above WING_SIGMA (the block's noise is unit)."""
    if len(starts) == 0:
        return np.zeros(0)
    n_rows, n_chans = block.shape
    rows = torch.arange(n_rows, device=block.device)
    centres = torch.as_tensor(starts, device=block.device)[:, None] + torch.as_tensor(drifts, device=block.device)[
        :, None
    ] * rows / max(n_rows - 1, 1)
    offsets = torch.arange(-radius, radius + 1, device=block.device)
    channels = (torch.round(centres).long()[..., None] + offsets).clamp(0, n_chans - 1)  # (K, T, O)
    above = block[rows[None, :, None], channels].mean(dim=1) > WING_SIGMA  # (K, O)
    right = above[:, radius + 1 :].int().cumprod(dim=1).sum(dim=1)
    left = above[:, :radius].flip(1).int().cumprod(dim=1).sum(dim=1)
    return (1 + 2 * torch.maximum(left, right)).cpu().numpy().astype(np.float64)


def one_hit_per_signal(
    profile: Profile, candidates: np.ndarray, tol: float = TRACK_TOLERANCE, widths: np.ndarray | None = None
) -> np.ndarray:
    """Candidates accepted strongest first, each removing the weaker ones whose tracks meet its own; `widths`:
    each candidate's track width in channels (default: its boxcar)."""
    ranked = np.argsort(-profile.snr[candidates], kind="stable")[:MAX_CANDIDATES]
    order = candidates[ranked]
    starts = order.astype(np.float64)
    drifts = profile.drift[order].astype(np.float64)
    widths = (profile.width[candidates] if widths is None else widths)[ranked].astype(np.float64)
    alive = np.ones(order.shape[0], dtype=bool)
    accepted = []
    for i in range(order.shape[0]):
        if not alive[i]:
            continue
        accepted.append(order[i])
        rest = slice(i + 1, None)
        alive[rest] &= ~tracks_meet(starts[i], drifts[i], widths[i], starts[rest], drifts[rest], widths[rest], tol)
    return np.asarray(accepted, dtype=np.int64)


def find_hits(profile: Profile, threshold: float, block: torch.Tensor | None = None) -> np.ndarray:
    """Start channels of the hits of a block: one per signal, SNR >= threshold, strongest first (with the
    cleaned `block`, strong signals as wide as they are)."""
    candidates = local_maxima(profile.snr, threshold)
    if block is None:
        return one_hit_per_signal(profile, candidates)
    widths = profile.width[candidates].astype(np.float64)
    strong = profile.snr[candidates] >= STRONG_FACTOR * threshold
    measured = signal_widths(block, candidates[strong].astype(np.float64), profile.drift[candidates[strong]])
    widths[strong] = np.maximum(widths[strong], measured)
    return one_hit_per_signal(profile, candidates, widths=widths)


@dataclass(frozen=True)
class Hits:
    """Hits of one block (numpy, one entry each): start channel at the first row, drift (channels between the
    first and last row), boxcar width, SNR."""

    channel: np.ndarray
    drift: np.ndarray
    width: np.ndarray
    snr: np.ndarray

    @classmethod
    def at(cls, profile: Profile, channels: np.ndarray, offset: int | np.ndarray = 0) -> Hits:
        """The profile's lines at `channels`, their start channels moved by `offset` (each one's, or one for all:
        from a piece of the profile's block back to the block's own channels)."""
        channels = np.asarray(channels, dtype=np.int64)
        return cls(
            channel=(channels + offset).astype(np.float64),
            drift=profile.drift[channels].astype(np.float64),
            width=profile.width[channels].astype(np.int64),
            snr=profile.snr[channels].astype(np.float64),
        )

    def __len__(self) -> int:
        return len(self.channel)

    def take(self, index: np.ndarray) -> Hits:
        return Hits(self.channel[index], self.drift[index], self.width[index], self.snr[index])

    @staticmethod
    def join(parts: Sequence[Hits]) -> Hits:
        """All the parts' hits, strongest first."""
        joined = Hits(*(np.concatenate([getattr(p, name) for p in parts]) for name in Hits.__dataclass_fields__))
        return joined.take(np.argsort(-joined.snr, kind="stable"))


def search_block(block: torch.Tensor, max_drift_per_row: float, threshold: float) -> tuple[Profile, Hits]:
    """The hit search of a cleaned block: its profile, and its hits (find_hits' and those beside bright ones)."""
    profile = dedoppler_profile(block, max_drift_per_row)
    hits = Hits.at(profile, find_hits(profile, threshold, block))
    return profile, Hits.join([hits, hits_beside_bright(block, profile, hits, threshold, max_drift_per_row)])


def hits_beside_bright(
    block: torch.Tensor, profile: Profile, hits: Hits, threshold: float, max_drift_per_row: float
) -> Hits:
    """Hits that bright signals hid. Beside a bright line the best line at a start channel is one crossing it,
    whose candidate the bright hit removes, and a fainter signal starting there goes with it (a needle beside
    or across interference). The hits of at least STRONG_FACTOR x the threshold are masked (their measured
    width and MASK_MARGIN each side set to the cleaned noise's median, 0), the channels within a line's reach
    of them searched again against the block's own noise levels with bright pixels masked too (`bright_pixels`:
    a curved bright signal is not all on its straight track, and its pieces off it would be hits), and a new
    hit is kept unless it moves like a hit already found and meets it (that signal again, or a bright line's
    leftover wing)."""
    bright = hits.snr >= STRONG_FACTOR * threshold
    if not bright.any():
        return hits.take(np.zeros(0, dtype=np.int64))
    lines = hits.take(np.flatnonzero(bright))
    widths = np.maximum(lines.width, signal_widths(block, lines.channel, lines.drift))
    masked = mask_lines(block, lines.channel, lines.drift, widths / 2 + MASK_MARGIN)
    n_rows, n_chans = block.shape
    reach = max(max_drift_per_row, 1.0) * (n_rows + 1) + widths.max() / 2 + MASK_MARGIN
    lows = np.minimum(lines.channel, lines.channel + lines.drift) - reach
    highs = np.maximum(lines.channel, lines.channel + lines.drift) + reach
    spans = merged_spans(lows, highs, n_chans)
    # the spans side by side in one block, each followed by a line's reach of zeros so no line joins two
    gap = math.ceil(reach)
    firsts = np.cumsum([0] + [high - low + gap for low, high in spans])[:-1]
    pieces = [F.pad(masked[:, low:high], (0, gap)) for low, high in spans]
    stacked = torch.cat(pieces, dim=1)
    stacked = stacked.masked_fill(bright_pixels(stacked), 0.0)  # what a curved bright signal leaves off its track
    stacked_profile = dedoppler_profile(stacked, max_drift_per_row, noise=profile.noise)
    found = find_hits(stacked_profile, threshold, stacked)
    piece = np.searchsorted(firsts, found, side="right") - 1
    lows_in_block = np.array([low for low, _ in spans])
    lengths = np.array([high - low for low, high in spans])
    inside = found - firsts[piece] < lengths[piece]  # starts in a gap are not channels of the block
    new = Hits.at(stacked_profile, found[inside], offset=lows_in_block[piece[inside]] - firsts[piece[inside]])
    known_widths = hits.width.astype(np.float64)
    known_widths[bright] = widths
    return new.take(np.flatnonzero(~moves_like_any(new, hits, known_widths)))


def bright_pixels(block: torch.Tensor) -> torch.Tensor:
    """Pixels above MASK_SIGMA, alone or as the sum of the three channels centred on them (a signal a few
    channels wide), in noise sigmas."""
    local = F.avg_pool1d(block[:, None], 3, 1, padding=1, count_include_pad=True)[:, 0] * math.sqrt(3.0)
    return (block > MASK_SIGMA) | (local > MASK_SIGMA)


def mask_lines(block: torch.Tensor, starts: np.ndarray, drifts: np.ndarray, halves: np.ndarray) -> torch.Tensor:
    """A copy of the block with every channel within `halves` of each straight line set to 0, row by row."""
    masked = block.clone()
    n_rows, n_chans = block.shape
    for start, drift, half in zip(starts, drifts, halves, strict=True):
        for row in range(n_rows):
            centre = start + drift * row / max(n_rows - 1, 1)
            low, high = max(0, math.ceil(centre - half)), min(n_chans, math.floor(centre + half) + 1)
            if low < high:
                masked[row, low:high] = 0.0
    return masked


def merged_spans(lows: np.ndarray, highs: np.ndarray, n_chans: int) -> list[tuple[int, int]]:
    """The union of channel spans [low, high), clipped to the block, as sorted disjoint (low, high) pairs."""
    spans = []
    for low, high in sorted(zip(np.floor(lows).astype(int), np.ceil(highs).astype(int), strict=True)):
        low, high = max(low, 0), min(high, n_chans)
        if high <= low:
            continue
        if spans and low <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], high))
        else:
            spans.append((low, high))
    return spans


def moves_like_any(new: Hits, known: Hits, known_widths: np.ndarray) -> np.ndarray:
    """Whether each new hit meets a known one (of width `known_widths`) whose drift is within
    ALIKE_DRIFT_STEPS drift steps (one channel, or half the wider boxcar) of its own."""
    alike = np.zeros(len(new), dtype=bool)
    for i in range(len(new)):
        step = ALIKE_DRIFT_STEPS * np.maximum(1.0, np.maximum(known.width, new.width[i]) / 2)
        close = np.abs(known.drift - new.drift[i]) <= step
        meet = tracks_meet(
            new.channel[i], new.drift[i], new.width[i], known.channel, known.drift, known_widths, TRACK_TOLERANCE
        )
        alike[i] = bool((close & meet).any())
    return alike


def band_of_width(width: int) -> int:
    """The drift band whose boxcar is `width` channels wide."""
    return round(math.log2(width)) if width > 1 else 0


def track_snr(
    block: torch.Tensor,
    start: float,
    drift: float,
    width: int,
    level: tuple[float, float],
    position_tolerance: float,
    drift_tolerance: float,
    robust: bool = False,
) -> tuple[float, float]:
    """Best SNR, and its start channel, of the width-channel lines near a given track in a cleaned block: start
    within `position_tolerance` channels, drift within `drift_tolerance` (channels over the observation).
    This measures a signal where it is expected (below the hit threshold too), and only signals that move
    like it. With `robust`, a line's sum is its rows' median times the rows, which a steady signal keeps and
    interference crossing the track for a row or two does not move (its noise is ~1.25x a plain sum's; a pulsed
    signal loses the rows it is off). -inf off the block."""
    n_rows, n_chans = block.shape
    device = block.device
    positions = torch.arange(
        math.floor(start - position_tolerance), math.ceil(start + position_tolerance) + 1, device=device
    ).double()
    drifts = torch.linspace(drift - drift_tolerance, drift + drift_tolerance, 5, device=device, dtype=torch.float64)
    rows = torch.arange(n_rows, device=device)
    centres = positions[:, None, None] + drifts[None, :, None] * rows / max(n_rows - 1, 1)  # (P, D, T)
    first = torch.round(centres - (width - 1) / 2).long()
    channels = first[..., None] + torch.arange(width, device=device)  # (P, D, T, W)
    inside = ((channels >= 0) & (channels < n_chans)).flatten(2).all(dim=-1)  # (P, D)
    per_row = block[rows[None, None, :, None], channels.clamp(0, n_chans - 1)].sum(dim=-1)  # (P, D, T)
    sums = per_row.median(dim=-1).values * n_rows if robust else per_row.sum(dim=-1)
    sums = sums.masked_fill(~inside, -torch.inf)
    best = sums.max()
    if not torch.isfinite(best):
        return -math.inf, start
    where = int(sums.flatten().argmax()) // sums.shape[1]
    median, sigma = level
    return float((best - median) / sigma), float(positions[where])
