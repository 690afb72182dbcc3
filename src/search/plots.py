"""Pictures of a scan: a candidate's six observations stacked as waterfalls with its drift line drawn over them
(as turbo_seti's plot_event draws an event), and the cadence's hits and events against frequency.

A candidate's window follows its track: every panel spans the same channels, wide enough for the track over
the whole cadence, time runs down from the first observation's start, and each panel is scaled by its own
median and robust sigma so that a faint line shows against the noise. OFF panels are marked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.data.filterbank import SECONDS_PER_DAY, read_block

MIN_WINDOW_CHANNELS = 64
MAX_WINDOW_CHANNELS = 8192


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def candidate_window(candidate, cadence) -> tuple[int, int]:
    """[lo, hi) channels that hold the candidate's track in every observation, clipped to its coarse channel."""
    n_obs = len(cadence.headers)
    ends = []
    for k in range(n_obs):
        start = getattr(candidate, f"channel_obs{k}")
        ends += [start, start + candidate.drift_channels]
    lo, hi = min(ends), max(ends)
    half = min(max(MIN_WINDOW_CHANNELS, (hi - lo) / 2 + 8 * candidate.width + 16), MAX_WINDOW_CHANNELS / 2)
    centre = (lo + hi) / 2
    first, last = candidate.chunk_start, candidate.chunk_start + candidate.chunk_channels
    a = int(max(first, np.floor(centre - half)))
    b = int(min(last, np.ceil(centre + half)))
    return a, max(b, a + 1)


def _scaled(block: np.ndarray) -> np.ndarray:
    median = np.median(block)
    sigma = 1.4826 * np.median(np.abs(block - median)) or 1.0
    return (block - median) / sigma


def plot_candidate(path: Path, candidate, cadence) -> None:
    plt = _pyplot()
    lo, hi = candidate_window(candidate, cadence)
    first = cadence.headers[0]
    centre_mhz = float(first.frequency_mhz((lo + hi) / 2))
    offsets_hz = (first.frequency_mhz(np.array([lo - 0.5, hi - 0.5])) - centre_mhz) * 1e6
    n_obs = len(cadence.headers)
    fig, axes = plt.subplots(n_obs, 1, figsize=(7, 1.35 * n_obs + 1.2), sharex=True)
    for k, (ax, header, on) in enumerate(zip(np.atleast_1d(axes), cadence.headers, cadence.on, strict=True)):
        t0 = (header.tstart - first.tstart) * SECONDS_PER_DAY
        image = _scaled(read_block(header, lo, hi))
        ax.imshow(
            image,
            aspect="auto",
            cmap="viridis",
            vmin=-1,
            vmax=max(4.0, float(np.percentile(image, 99.9))),
            extent=(offsets_hz[0], offsets_hz[1], t0 + header.duration_s, t0),
            interpolation="nearest",
        )
        start = getattr(candidate, f"channel_obs{k}")
        track = np.array([start, start + candidate.drift_channels])
        ax.plot(
            (first.frequency_mhz(track) - centre_mhz) * 1e6,
            [t0 + header.tsamp / 2, t0 + header.duration_s - header.tsamp / 2],
            color="white" if on else "red",
            linestyle="--",
            linewidth=1,
        )
        ax.set_xlim(offsets_hz.min(), offsets_hz.max())
        label = f"{'ON' if on else 'OFF'}  {header.source_name}  SNR {getattr(candidate, f'snr_obs{k}'):.1f}"
        ax.text(0.01, 0.08, label, transform=ax.transAxes, color="white", fontsize=8, weight="bold" if on else None)
        ax.set_ylabel("s", fontsize=8)
        ax.tick_params(labelsize=7)
    ax.set_xlabel(f"frequency - {centre_mhz:.6f} MHz (Hz)")
    fig.suptitle(
        f"{cadence.name} #{candidate.rank}: {candidate.frequency:.6f} MHz, {candidate.drift_rate:+.4f} Hz/s, "
        f"level {candidate.level}, score {candidate.score:.1f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def plot_overview(path: Path, hits, events, cadence) -> None:
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for on, marker, label in ((True, "o", "ON hits"), (False, "x", "OFF hits")):
        these = hits[hits["on"] == on]
        top.scatter(these["frequency"], these["drift_rate"], s=8, marker=marker, label=label, alpha=0.6)
        bottom.scatter(these["frequency"], these["snr"], s=8, marker=marker, label=label, alpha=0.6)
    for level, colour in ((2, "orange"), (3, "red")):
        these = events[events["level"] == level]
        top.scatter(
            these["Freq"], these["DriftRate"], s=60, facecolors="none", edgecolors=colour, label=f"level {level}"
        )
        bottom.scatter(these["Freq"], these["score"], s=60, marker="*", color=colour, label=f"level {level} score")
    top.set_ylabel("drift rate (Hz/s)")
    bottom.set_ylabel("SNR / score")
    if (hits["snr"] > 0).any() or (events["score"] > 0).any():
        bottom.set_yscale("log")
    bottom.set_xlabel("frequency (MHz)")
    top.legend(fontsize=7, loc="upper right")
    top.set_title(f"{cadence.name}: {len(hits)} hits, {int((events['level'] == 3).sum())} level-3 events", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
