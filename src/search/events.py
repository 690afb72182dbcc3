"""The cadence filter: hits of the six observations matched along their drift into events, with turbo_seti's
filter levels, an SNR for every observation, and a score to rank them by.

A hit is a straight track: its start channel at the first row of its observation and its drift. Carried along
the cadence's clock (slews included) it predicts where the same signal starts in another observation.

Matching ON hits (one event per signal, not one per pair):
- two ON hits are one signal when the later one starts where the mean of their two drift rates carries the
  earlier one (less the change of rate over half an observation, since rates are measured mid-observation),
  within the frequency tolerance
      TOLERANCE_CHANNELS + boxcar widths / 4 + (drift steps / 2) x (time between them) / 2,
  a drift step being one channel (or half a boxcar) over an observation: exact for a straight path and for one
  whose drift rate changes steadily (a quadratic path); and only when both are "clean" (nothing moving like
  them in any OFF observation) or both not: a needle's hit and a hit of interference crossing its path, whose
  rates differ, can line up by that rule, and joined they made one event vetoed by the interference's OFF hits;
- groups of "clean" hits (nothing moving like them in any OFF observation) from different ON observations are
  then joined when a path no faster than CURVE_SPEED_FACTOR x their fastest local rate connects them, which
  links the pieces of a wobbling (sine) path; two groups that share an observation never join.

In every observation without one of the event's hits, the signal is measured along the strongest hit's track
(track_snr: start within the tolerance, drift within DRIFT_TOLERANCE_STEPS steps; in OFF observations the
rows' median times the rows, so that interference crossing the track does not veto it; in ON observations the
same median wherever the best line meets a stronger hit that moves otherwise, so that interference crossing
the track does not confirm it either, while a pulsed needle alone keeps its plain sum). An observation "holds"
the event when it has one of its hits, or when that SNR reaches the hit threshold (an OFF observation) or
ON_TRACK_FRACTION of it (an ON observation: a measurement along a predicted track makes a few hundred trials,
not a blind search's billions); an OFF observation also holds it when one of its hits moves like the track and
meets it. Levels, as turbo_seti's find_event defines them: 1 = hits above the SNR cut
with a non-zero drift; 2 = held by at least one ON observation and by no OFF one; 3 = by every ON observation
and by no OFF one. The score ranks events:
    sqrt(n_on) x (mean of the ON SNRs, each at least 0, - max(0, strongest OFF SNR))
so that a signal's ON observations add up (a needle of SNR s in three ONs scores ~1.7 s) and interference as
strong in an OFF observation as in the ONs scores ~0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from src.search.hits import Profile, band_of_width, track_snr, tracks_meet

TOLERANCE_CHANNELS = 2.0
DRIFT_TOLERANCE_STEPS = 2.0
CURVE_SPEED_FACTOR = 1.5
ON_TRACK_FRACTION = 0.5  # an ON observation holds an event at this fraction of the hit threshold along its track


@dataclass(frozen=True)
class ObservationClock:
    """What matching needs of each observation: whether it is ON, its first row's centre time (s from the
    cadence's start), its rows and seconds per row."""

    on: bool
    t_start_s: float
    n_rows: int
    tsamp: float

    def rate(self, drift_channels: np.ndarray | float) -> np.ndarray | float:
        """Channels per second of a drift given in channels between the first and last row."""
        return np.asarray(drift_channels) / (max(self.n_rows - 1, 1) * self.tsamp)

    def drift_step_rate(self, width: np.ndarray | float) -> np.ndarray | float:
        """One drift step of the search (one channel, or half a boxcar, over the observation), in channels/s."""
        return self.rate(np.maximum(1.0, np.asarray(width) / 2))


def carried_start(channel: float, drift: float, clock: ObservationClock, other: ObservationClock) -> float:
    """Where a straight track (start `channel` at the first row of `clock`'s observation, `drift` channels over
    it) starts in `other`'s observation, carried along the cadence's clock (slews included)."""
    return float(channel + clock.rate(drift) * (other.t_start_s - clock.t_start_s))


def tolerance(width: float, step_rate: float, dt_s: float) -> float:
    return TOLERANCE_CHANNELS + width / 2 + step_rate * abs(dt_s) / 2


class _Groups:
    """Union-find over hit indices."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)

    def members(self) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            groups.setdefault(self.find(i), []).append(i)
        return list(groups.values())


def find_events(
    hits: pd.DataFrame,
    clocks: Sequence[ObservationClock],
    profiles: Sequence[Profile],
    blocks: Sequence[torch.Tensor],
    snr_threshold: float,
    keep_zero_drift: bool = False,
) -> pd.DataFrame:
    """Events of one block from its hits (columns obs, channel, drift, width, snr; channels within the block)
    and the observations' cleaned blocks (for the SNR along each event's track).

    Returns one row per event: level, in_n_ons, n_off_hits (OFF detections along the track), n_hits,
    reference hit (its obs, channel, drift, width, snr), the score, and in every observation the start channel,
    the SNR and whether they are the event's own hit there (hit_obs = 1) or measured along its track (0); best
    first."""
    n_obs = len(clocks)
    candidates = hits if keep_zero_drift else hits[hits["drift"] != 0]
    on_hits = candidates[[clocks[int(o)].on for o in candidates["obs"]]].reset_index(drop=True)
    if on_hits.empty:
        return pd.DataFrame([], columns=event_columns(n_obs))
    track = _Tracks(clocks, profiles, blocks, hits, snr_threshold)
    clean = [not any(track.measure(hit, k)[2] for k in track.off) for hit in on_hits.itertuples(index=False)]
    groups = _link_curved(on_hits, _match_on_hits(on_hits, clocks, clean), clean, clocks)
    rows = [_event(on_hits, group, track) for group in groups]
    events = pd.DataFrame(rows, columns=event_columns(n_obs))
    return events.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


class _Tracks:
    """Measuring a hit's straight track in the other observations of its block."""

    def __init__(self, clocks, profiles, blocks, hits, snr_threshold):
        self.clocks, self.profiles, self.blocks = clocks, profiles, blocks
        self.hits, self.snr_threshold = hits, snr_threshold
        self.off_hits = hits[[not clocks[int(o)].on for o in hits["obs"]]]
        self.off = [k for k, c in enumerate(clocks) if not c.on]
        self.n_on = len(clocks) - len(self.off)

    def measure(self, hit, k: int) -> tuple[float, float, bool]:
        """(predicted start channel, SNR along the track, detected) in observation k; detected means an SNR at
        the threshold, or (in an OFF observation) a hit that moves like the track and meets it."""
        clock, other = self.clocks[int(hit.obs)], self.clocks[k]
        rate, step = clock.rate(hit.drift), clock.drift_step_rate(hit.width)
        dt = other.t_start_s - clock.t_start_s
        start, tol = carried_start(hit.channel, hit.drift, clock, other), tolerance(hit.width, step, dt)
        drift_here = float(rate * max(other.n_rows - 1, 1) * other.tsamp)  # the track's drift in that observation
        noise = self.profiles[k].noise
        level = noise[min(band_of_width(int(hit.width)), len(noise) - 1)]
        drift_tol = DRIFT_TOLERANCE_STEPS * max(1.0, hit.width / 2)
        args = (self.blocks[k], start, drift_here, int(hit.width), level, tol, drift_tol)
        snr, where = track_snr(*args, robust=not other.on)
        if other.on and _crosses_stronger_hit(self.hits, k, where, drift_here, hit.width, snr, drift_tol):
            snr, _ = track_snr(*args, robust=True)
        detected = snr >= self.snr_threshold * (1.0 if not other.on else ON_TRACK_FRACTION)
        if not other.on and not detected:
            detected = _off_hits_along(self.off_hits, k, start, drift_here, hit.width, tol)
        return start, snr, bool(detected)


def _match_on_hits(on_hits: pd.DataFrame, clocks: Sequence[ObservationClock], clean: Sequence[bool]) -> list[list[int]]:
    """Groups of ON hits that are one signal: each pair's positions agree under the mean of their drift
    rates between them (exact for a drift rate that changes steadily, as a quadratic path's does), and both
    are clean or both are not (`clean`: nothing like the hit in any OFF observation)."""
    obs = on_hits["obs"].to_numpy(int)
    channel = on_hits["channel"].to_numpy(float)
    width = on_hits["width"].to_numpy(float)
    rate = np.array([clocks[o].rate(d) for o, d in zip(obs, on_hits["drift"], strict=True)], dtype=float)
    step = np.array([clocks[o].drift_step_rate(w) for o, w in zip(obs, width, strict=True)], dtype=float)
    start = np.array([clocks[o].t_start_s for o in obs])
    half_line_s = np.array([(clocks[o].n_rows - 1) * clocks[o].tsamp / 2 for o in obs])
    clean = np.asarray(clean, dtype=bool)
    groups = _Groups(len(on_hits))
    for i in range(len(on_hits)):
        other = obs != obs[i]
        dt = start - start[i]
        # rates are measured mid-observation, positions at the first row: the mean rate between the two
        # first rows is the mean of the two rates less the change of rate over half a line
        predicted = channel[i] + (rate[i] + rate) / 2 * dt - (rate - rate[i]) * (half_line_s + half_line_s[i]) / 2
        tol = TOLERANCE_CHANNELS + (width[i] + width) / 4 + (step[i] + step) / 2 * np.abs(dt) / 2
        alike = clean == clean[i]  # needle and interference never one signal
        for j in np.flatnonzero(other & alike & (np.abs(channel - predicted) <= tol)):
            groups.join(i, int(j))
    return groups.members()


def _link_curved(
    on_hits: pd.DataFrame, groups: list[list[int]], clean: list[bool], clocks: Sequence[ObservationClock]
) -> list[list[int]]:
    """Join groups of clean hits (nothing like them in any OFF observation) from different ON observations
    that one path of bounded speed can connect: a wobbling path's local drift rates need not predict where it
    is an observation later, but it gets there no faster than CURVE_SPEED_FACTOR x its fastest local rate.
    Groups join only if they hold no observation in common, so two complete signals never merge."""
    obs = on_hits["obs"].to_numpy(int)
    channel = on_hits["channel"].to_numpy(float)
    width = on_hits["width"].to_numpy(float)
    speed = np.abs([clocks[o].rate(d) for o, d in zip(obs, on_hits["drift"], strict=True)])
    start = np.array([clocks[o].t_start_s for o in obs])
    pairs = []
    for a, first in enumerate(groups):
        for b in range(a + 1, len(groups)):
            second = groups[b]
            if not all(clean[i] for i in first + second) or set(obs[first]) & set(obs[second]):
                continue
            gaps = [
                abs(channel[i] - channel[j])
                - (CURVE_SPEED_FACTOR * max(speed[i], speed[j]) * abs(start[j] - start[i]) + TOLERANCE_CHANNELS)
                - (width[i] + width[j]) / 2
                for i in first
                for j in second
            ]
            if min(gaps) <= 0:
                pairs.append((min(gaps), a, b))
    merged = _Groups(len(groups))
    held = [set(obs[g]) for g in groups]
    for _, a, b in sorted(pairs):
        ra, rb = merged.find(a), merged.find(b)
        if ra != rb and not held[ra] & held[rb]:
            merged.join(ra, rb)
            held[rb] |= held[ra]
    return [[i for g in members for i in groups[g]] for members in merged.members()]


def event_columns(n_obs: int) -> list[str]:
    return [
        "level",
        "in_n_ons",
        "n_off_hits",
        "n_hits",
        "obs",
        "channel",
        "drift",
        "width",
        "snr",
        "score",
        *[f"channel_obs{k}" for k in range(n_obs)],
        *[f"snr_obs{k}" for k in range(n_obs)],
        *[f"hit_obs{k}" for k in range(n_obs)],
    ]


def _event(on_hits: pd.DataFrame, group: list[int], track: _Tracks) -> dict:
    members = on_hits.loc[group]
    ref = members.loc[members["snr"].idxmax()]
    predicted, snrs, own, on_detections, off_detections = [], [], [], 0, 0
    for k, clock in enumerate(track.clocks):
        mine = members[members["obs"] == k]
        if len(mine):  # the signal's own hit in this observation
            best = mine.loc[mine["snr"].idxmax()]
            predicted.append(float(best["channel"]))
            snrs.append(float(best["snr"]))
            own.append(1)
            continue
        start, snr, detected = track.measure(ref, k)
        predicted.append(start)
        snrs.append(snr)
        own.append(0)
        on_detections += clock.on and detected
        off_detections += (not clock.on) and detected
    in_n_ons = int(members["obs"].nunique()) + on_detections
    level = 3 if (off_detections == 0 and in_n_ons == track.n_on) else 2 if off_detections == 0 else 1
    on_snr = [max(s, 0.0) for s, c in zip(snrs, track.clocks, strict=True) if c.on]
    off_snr = [s for s, c in zip(snrs, track.clocks, strict=True) if not c.on]
    # sqrt(#ON) x (mean ON SNR - strongest OFF SNR): a needle's ON SNRs add up, interference in all six scores ~0
    score = (sum(on_snr) - len(on_snr) * max(0.0, max(off_snr, default=0.0))) / math.sqrt(max(len(on_snr), 1))
    return {
        "level": level,
        "in_n_ons": in_n_ons,
        "n_off_hits": int(off_detections),
        "n_hits": len(group),
        "obs": int(ref["obs"]),
        "channel": float(ref["channel"]),
        "drift": float(ref["drift"]),
        "width": int(ref["width"]),
        "snr": float(ref["snr"]),
        "score": score,
        **{f"channel_obs{k}": c for k, c in enumerate(predicted)},
        **{f"snr_obs{k}": s for k, s in enumerate(snrs)},
        **{f"hit_obs{k}": h for k, h in enumerate(own)},
    }


def _meet(hits: pd.DataFrame, start: float, drift: float, width: float, tol: float) -> np.ndarray:
    """Which hits' tracks meet the track (start, drift, width) within `tol` channels."""
    columns = (hits[c].to_numpy(float) for c in ("channel", "drift", "width"))
    return tracks_meet(start, drift, width, *columns, tol)


def _crosses_stronger_hit(hits, k, start, drift, width, snr, drift_tol) -> bool:
    """Whether the line measured in observation k meets a hit there that is stronger and moves otherwise:
    interference crossing the track, whose power the line's plain sum collects."""
    these = hits[(hits["obs"] == k) & (hits["snr"] > snr)]
    if these.empty:
        return False
    other = np.abs(these["drift"].to_numpy(float) - drift) > drift_tol
    return bool((other & _meet(these, start, drift, width, TOLERANCE_CHANNELS)).any())


def _off_hits_along(off_hits, k, start, drift, width, tol) -> bool:
    """Whether an OFF hit of observation k moves like the track (drift within the tolerance) and meets it."""
    these = off_hits[off_hits["obs"] == k]
    if these.empty:
        return False
    step = DRIFT_TOLERANCE_STEPS * np.maximum(1.0, np.maximum(width, these["width"].to_numpy(float)) / 2)
    alike = np.abs(these["drift"].to_numpy(float) - drift) <= step
    return bool((alike & _meet(these, start, drift, width, tol - width / 2)).any())
