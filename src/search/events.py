"""The cadence filter: hits of the six observations matched along their drift into events, with turbo_seti's
filter levels, an SNR for every observation, and a score to rank them by.

A hit is a straight track: its start channel at the first row of its observation and its drift. Carried along
the cadence's clock (slews included) it predicts where the same signal starts in every other observation:
    predicted channel = channel + rate x (start of that observation - start of the hit's), rate in channels/s.
Two ON hits are the same signal when the other's start lies within the frequency tolerance of the prediction
and their drifts agree within `DRIFT_TOLERANCE_STEPS` drift steps. The frequency tolerance grows with the
time between the observations, because a drift is only known to half a drift step:
    tolerance = TOLERANCE_CHANNELS + boxcar width / 2 + (drift step / 2) x (time between them),
a drift step being one channel (or half a boxcar) between an observation's first and last row. Matched ON
hits are grouped (one event per signal, not one per pair). An OFF hit vetoes the event when its track meets
the predicted track in its observation within the same tolerance, whatever its drift.

Levels, as turbo_seti's find_event defines them: 1 = a hit above the SNR cut with a non-zero drift;
2 = in at least one ON observation and in no OFF one; 3 = in every ON observation and in no OFF one.

The SNR of the event in each observation is the best line within the tolerance of its predicted start (from
that observation's de-Doppler profile, so below the hit threshold too), and the event's score is
    sum of its ON SNRs / sqrt(number of ON observations) - max(0, its strongest OFF SNR)
so that a signal present in every ON observation and absent from the OFF ones ranks first.
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
    reference hit (its obs, channel, drift, width, snr), the start channel and SNR in every observation, and
    the score, best first."""
    n_obs = len(clocks)
    candidates = hits if keep_zero_drift else hits[hits["drift"] != 0]
    on_hits = candidates[[clocks[int(o)].on for o in candidates["obs"]]].reset_index(drop=True)
    if on_hits.empty:
        return pd.DataFrame([], columns=event_columns(n_obs))
    groups = _match_on_hits(on_hits, clocks)
    off_hits = hits[[not clocks[int(o)].on for o in hits["obs"]]]  # any OFF hit may veto, zero drift too
    n_on = sum(c.on for c in clocks)
    rows = [
        _event(on_hits, group, off_hits, clocks, profiles, blocks, n_on, snr_threshold) for group in groups.values()
    ]
    events = pd.DataFrame(rows, columns=event_columns(n_obs))
    return events.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def _match_on_hits(on_hits: pd.DataFrame, clocks: Sequence[ObservationClock]) -> dict[int, list[int]]:
    """Groups of ON hits that are one signal: each pair's positions agree under the mean of their drift
    rates between them (exact for a drift rate that changes steadily, as a quadratic path's does)."""
    obs = on_hits["obs"].to_numpy(int)
    channel = on_hits["channel"].to_numpy(float)
    width = on_hits["width"].to_numpy(float)
    rate = np.array([clocks[o].rate(d) for o, d in zip(obs, on_hits["drift"], strict=True)], dtype=float)
    step = np.array([clocks[o].drift_step_rate(w) for o, w in zip(obs, width, strict=True)], dtype=float)
    start = np.array([clocks[o].t_start_s for o in obs])
    half_line_s = np.array([(clocks[o].n_rows - 1) * clocks[o].tsamp / 2 for o in obs])
    groups = _Groups(len(on_hits))
    for i in range(len(on_hits)):
        other = obs != obs[i]
        dt = start - start[i]
        # rates are measured mid-observation, positions at the first row: the mean rate between the two
        # first rows is the mean of the two rates less the change of rate over half a line
        predicted = channel[i] + (rate[i] + rate) / 2 * dt - (rate - rate[i]) * (half_line_s + half_line_s[i]) / 2
        tol = TOLERANCE_CHANNELS + (width[i] + width) / 4 + (step[i] + step) / 2 * np.abs(dt) / 2
        for j in np.flatnonzero(other & (np.abs(channel - predicted) <= tol)):
            groups.join(i, int(j))
    members: dict[int, list[int]] = {}
    for i in range(len(on_hits)):
        members.setdefault(groups.find(i), []).append(i)
    return members


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
    ]


def _event(on_hits, group, off_hits, clocks, profiles, blocks, n_on, snr_threshold) -> dict:
    ref = max(group, key=lambda i: on_hits.at[i, "snr"])
    clock = clocks[int(on_hits.at[ref, "obs"])]
    channel, drift, width = (float(on_hits.at[ref, k]) for k in ("channel", "drift", "width"))
    rate, step = clock.rate(drift), clock.drift_step_rate(width)
    members = on_hits.loc[group]
    predicted, snrs, on_detections, off_detections = [], [], 0, 0
    for k, other in enumerate(clocks):
        dt = other.t_start_s - clock.t_start_s
        mine = members[members["obs"] == k]
        if len(mine):  # the signal's own hit in this observation
            best = mine.loc[mine["snr"].idxmax()]
            predicted.append(float(best["channel"]))
            snrs.append(float(best["snr"]))
            continue
        tol = tolerance(width, step, dt)
        drift_here = float(rate * max(other.n_rows - 1, 1) * other.tsamp)  # the track's drift in that observation
        level = profiles[k].noise[min(band_of_width(int(width)), len(profiles[k].noise) - 1)]
        drift_tol = DRIFT_TOLERANCE_STEPS * max(1.0, width / 2)
        snr, _ = track_snr(blocks[k], channel + rate * dt, drift_here, int(width), level, tol, drift_tol)
        predicted.append(channel + rate * dt)
        snrs.append(snr)
        if other.on:
            on_detections += snr >= snr_threshold
        else:
            off_detections += (snr >= snr_threshold) or _off_hits_along(
                off_hits, k, predicted[-1], drift_here, width, tol
            )
    in_n_ons = int(members["obs"].nunique()) + on_detections
    level = 3 if (off_detections == 0 and in_n_ons == n_on) else 2 if off_detections == 0 else 1
    on_snr = [max(s, 0.0) for s, c in zip(snrs, clocks, strict=True) if c.on]
    off_snr = [s for s, c in zip(snrs, clocks, strict=True) if not c.on]
    score = sum(on_snr) / math.sqrt(max(len(on_snr), 1)) - max(0.0, max(off_snr, default=0.0))
    return {
        "level": level,
        "in_n_ons": in_n_ons,
        "n_off_hits": int(off_detections),
        "n_hits": len(group),
        "obs": int(on_hits.at[ref, "obs"]),
        "channel": channel,
        "drift": drift,
        "width": int(width),
        "snr": float(on_hits.at[ref, "snr"]),
        "score": score,
        **{f"channel_obs{k}": c for k, c in enumerate(predicted)},
        **{f"snr_obs{k}": s for k, s in enumerate(snrs)},
    }


def _off_hits_along(off_hits, k, start, drift, width, tol) -> bool:
    """Whether an OFF hit of observation k moves like the track (drift within the tolerance) and meets it."""
    these = off_hits[off_hits["obs"] == k]
    if these.empty:
        return False
    step = DRIFT_TOLERANCE_STEPS * np.maximum(1.0, np.maximum(width, these["width"].to_numpy(float)) / 2)
    alike = np.abs(these["drift"].to_numpy(float) - drift) <= step
    meet = tracks_meet(
        start,
        drift,
        width,
        these["channel"].to_numpy(float),
        these["drift"].to_numpy(float),
        these["width"].to_numpy(float),
        tol - width / 2,
    )
    return bool((alike & meet).any())
