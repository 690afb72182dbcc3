"""Windows of the band for a model to look at where the hit search found nothing (`scan.py --windows`).

The hit search reports a signal only when its straight-track sum passes the threshold in an observation. A
pulsed needle (its sum diluted by the rows it is off), a faint curved one, or one the search's one-hit-per-signal
pass gave to a brighter line never becomes a hit, so a model that scores only the events never sees it. In this
mode every ON observation's band is cut into windows of the model's width (`snippet channels` fine channels) and
each window's best line, the de-Doppler profile's strongest track starting in it whatever its SNR, becomes an
event of level 0 with its snippet cut along that track like any event's. Lines that meet a hit of their
observation, or an event's track carried there, are passed over (the event already shows that signal), so a
window beside a bright signal shows the best line that does not cross it. The model then scores every window
(2^20 / 256 = 4,096 per coarse channel per ON observation), which is cheap on a GPU and about ten times the
search's own time on a CPU core.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from src.search.events import ObservationClock, carried_start, event_columns
from src.search.hits import Profile, tracks_meet

WINDOW_LEVEL = 0  # a window's level in events.csv: no hit, only the model's look
MEET_TOLERANCE = 2.0  # channels between a window's track and a hit's or event's that still count as meeting


def best_line_per_window(profile: Profile, window: int, free: np.ndarray | None = None) -> np.ndarray:
    """The start channel of the strongest line in each `window`-channel stretch of a profile, among the start
    channels `free` allows (default all); a stretch with none (or none searched, at the band's end) gives none."""
    n_chans = len(profile.snr)
    n_windows = -(-n_chans // window)
    padded = np.full(n_windows * window, -np.inf)
    padded[:n_chans] = np.nan_to_num(profile.snr, nan=-np.inf, neginf=-np.inf)
    if free is not None:
        padded[:n_chans][~free] = -np.inf
    best = padded.reshape(n_windows, window).argmax(axis=1) + np.arange(n_windows) * window
    return best[np.isfinite(padded[best])]


def free_lines(profile: Profile, known: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Which start channels' best lines meet none of the `known` tracks (start channels, drifts, widths): beside a
    bright signal the best line is often one crossing it, and the window should show what else is there. Only
    the channels within a line's reach of each track are tested."""
    n_chans = len(profile.snr)
    free = np.isfinite(profile.snr)
    if not free.any():
        return free
    reach = np.abs(profile.drift[free]).max() + profile.width[free].max() + MEET_TOLERANCE
    for start, drift, width in zip(*known, strict=True):
        low = max(0, math.floor(min(start, start + drift) - width / 2 - reach))
        high = min(n_chans, math.ceil(max(start, start + drift) + width / 2 + reach) + 1)
        channels = np.arange(low, high)
        meet = tracks_meet(
            start, drift, width, channels, profile.drift[channels], profile.width[channels], MEET_TOLERANCE
        )
        free[channels[meet]] = False
    return free


def tracks_in(obs: int, hits: pd.DataFrame, events: pd.DataFrame, clocks: Sequence[ObservationClock]):
    """The straight tracks already known in observation `obs`: its hits, and every event's track carried there
    (start channels, drifts over the observation, widths)."""
    own = hits[hits["obs"] == obs]
    here = clocks[obs]
    rates = np.array([clocks[int(o)].rate(d) for o, d in zip(events["obs"], events["drift"], strict=True)], float)
    return (
        np.concatenate([own["channel"].to_numpy(float), events[f"channel_obs{obs}"].to_numpy(float)]),
        np.concatenate([own["drift"].to_numpy(float), rates * max(here.n_rows - 1, 1) * here.tsamp]),
        np.concatenate([own["width"].to_numpy(float), events["width"].to_numpy(float)]),
    )


def window_events(
    hits: pd.DataFrame,
    events: pd.DataFrame,
    profiles: Sequence[Profile],
    clocks: Sequence[ObservationClock],
    window: int,
) -> pd.DataFrame:
    """Level-0 events, one per `window` channels of each ON observation's band where no hit or event is: the
    window's best line, carried along the cadence's clock to give its start in every observation (channels within
    the block, as `find_events`' are). Its SNR is the profile's there; the other observations' are not measured."""
    n_obs = len(clocks)
    rows = []
    for obs, clock in enumerate(clocks):
        if not clock.on:
            continue
        profile = profiles[obs]
        for channel in best_line_per_window(profile, window, free_lines(profile, tracks_in(obs, hits, events, clocks))):
            drift, width, snr = float(profile.drift[channel]), int(profile.width[channel]), float(profile.snr[channel])
            rows.append(
                {
                    "level": WINDOW_LEVEL,
                    "in_n_ons": 0,
                    "n_off_hits": 0,
                    "n_hits": 0,
                    "obs": obs,
                    "channel": float(channel),
                    "drift": drift,
                    "width": width,
                    "snr": snr,
                    "score": np.nan,
                    **{f"channel_obs{k}": carried_start(channel, drift, clock, clocks[k]) for k in range(n_obs)},
                    **{f"snr_obs{k}": snr if k == obs else np.nan for k in range(n_obs)},
                    **{f"hit_obs{k}": 0 for k in range(n_obs)},
                }
            )
    return pd.DataFrame(rows, columns=event_columns(n_obs))
