"""Scanning cadences of filterbank files: one coarse channel at a time, resumable, then the outputs.

For each coarse channel ("chunk") of a cadence, each observation's block is read, cleaned (clean.py) and
searched (hits.py); the six hit lists go through the cadence filter (events.py), and the chunk's hits and
events are written to `chunks/` under the cadence's folder, the done marker last. Memory therefore holds one
coarse channel of one observation plus six de-Doppler profiles, whatever the file's size. A killed scan,
rerun with the same command, skips the chunks already done; a folder holding a scan with other settings or
other files is never overwritten without `overwrite`. When every chunk is done, the cadence's outputs
(outputs.py, plots.py) are assembled from the chunk files.

A catalog runs one cadence per worker: in this process (`workers=1`), in a local process pool, or as one
Ray task per cadence on a local or existing Ray cluster (`engine="ray"`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.core.cli import progress_bar
from src.core.errors import USER_ERRORS, ConfigError
from src.core.files import write_csv_atomically, write_npy_atomically, write_text_atomically
from src.data.clean import clean_block
from src.data.filterbank import fine_channels_per_coarse, read_block
from src.data.snippets import cut_snippets
from src.search.cadence import Cadence
from src.search.events import ObservationClock, find_events
from src.search.hits import search_block
from src.search.outputs import (
    CHUNK_FOLDER,
    chunk_paths,
    snippet_path,
    write_cadence_outputs,
    write_catalog_outputs,
)
from src.search.windows import window_events

STATE_FILE = "scan.json"
ASSEMBLY_SETTINGS = ("filter_level", "plot_top")  # settings of the outputs only: a rerun may change them
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ScanSettings:
    """Everything that decides a scan's results (saved in each cadence folder as scan.json)."""

    max_drift: float = 4.0  # Hz/s, both signs
    snr: float = 10.0  # hit threshold
    filter_level: int = 3  # the candidate table keeps events of this level and above
    fine_per_coarse: int | None = None  # fine channels per coarse channel; None: from the file
    bandpass_bin: int | None = None  # channels per bandpass bin; None: 1/1024 of a coarse channel
    flag_sigma: float | None = None  # zero channels whose time-mean exceeds this many sigmas
    keep_zero_drift: bool = False  # let zero-drift hits into events (turbo_seti's level 1 drops them)
    pattern: str | None = None  # ON/OFF letters; None: from the source names
    plot_top: int = 10  # candidate plots per cadence
    windows: bool = False  # with a model: also every window of the ON bands where no hit is (windows.py)

    def __post_init__(self):
        checks = {
            "max_drift": self.max_drift > 0,
            "snr": self.snr > 0,
            "filter_level": self.filter_level in (1, 2, 3),
            "fine_per_coarse": self.fine_per_coarse is None or self.fine_per_coarse > 0,
            "bandpass_bin": self.bandpass_bin is None or self.bandpass_bin > 0,
            "flag_sigma": self.flag_sigma is None or self.flag_sigma > 0,
            "plot_top": self.plot_top >= 0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and value != value):  # NaN passes every comparison
                raise ValueError(f"--{name.replace('_', '-')} {value}: out of range")


def check_device(device: str) -> None:
    """A torch device this machine has (`cpu`, `cuda`, `cuda:1`, ...)."""
    try:
        kind = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if kind.type == "cuda" and (not torch.cuda.is_available() or (kind.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def chunk_bounds(cadence: Cadence, settings: ScanSettings) -> list[tuple[int, int]]:
    """[start, stop) channels of each coarse channel."""
    first = cadence.headers[0]
    width = fine_channels_per_coarse(first, settings.fine_per_coarse)
    if settings.bandpass_bin and settings.bandpass_bin > width:
        raise ConfigError(f"--bandpass-bin {settings.bandpass_bin}: wider than a coarse channel ({width} channels)")
    return [(start, start + width) for start in range(0, first.nchans, width)]


def clocks(cadence: Cadence) -> list[ObservationClock]:
    return [
        ObservationClock(on=on, t_start_s=start + h.tsamp / 2, n_rows=h.n_rows, tsamp=h.tsamp)
        for h, on, start in zip(cadence.headers, cadence.on, cadence.start_seconds(), strict=True)
    ]


def event_snippets(events: pd.DataFrame, blocks: list[torch.Tensor], cadence: Cadence, n_channels: int) -> np.ndarray:
    """(events, n_obs, rows, n_channels) float16 snippets of a chunk's events (channels within the block), each
    observation's window where the event's track is in it (src/data/snippets.py)."""
    n_obs = len(cadence.headers)
    starts = events[[f"channel_obs{k}" for k in range(n_obs)]].to_numpy(float).reshape(len(events), n_obs)
    clock = clocks(cadence)
    rates = np.array([clock[o].rate(d) for o, d in zip(events["obs"], events["drift"], strict=True)], dtype=float)
    spans = np.array([(c.n_rows - 1) * c.tsamp for c in clock], dtype=float)
    drifts = rates.reshape(-1, 1) * spans[None]
    snippets = cut_snippets(blocks, starts, drifts, events["width"].to_numpy(), n_channels)
    return snippets.to(torch.float16).cpu().numpy()


def search_chunk(
    cadence: Cadence,
    chunk: int,
    bounds: tuple[int, int],
    settings: ScanSettings,
    device: torch.device,
    snippet_channels: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray | None]:
    """Hits (every observation) and events of one coarse channel, channels counted in the file, and with
    `snippet_channels` every event's snippet (in the events' order) for a model to score; with
    `settings.windows`, the windows of the ON bands that hold no hit are events too (level 0)."""
    if settings.windows and not snippet_channels:
        raise ConfigError("--windows: the windows are for a model to score; scan with --checkpoints")
    start, stop = bounds
    profiles, hits, blocks = [], [], []
    for k, header in enumerate(cadence.headers):
        raw = torch.from_numpy(read_block(header, start, stop)).to(device)
        block, _ = clean_block(raw, (stop - start) // 2, settings.bandpass_bin, settings.flag_sigma)
        del raw
        profile, found = search_block(block, settings.max_drift * header.tsamp / header.df_hz, settings.snr)
        blocks.append(block)
        hits.append(
            pd.DataFrame(
                {"obs": k, "channel": found.channel, "drift": found.drift, "width": found.width, "snr": found.snr}
            )
        )
        profiles.append(profile)
    hit_table = pd.concat(hits, ignore_index=True)
    events = find_events(hit_table, clocks(cadence), profiles, blocks, settings.snr, settings.keep_zero_drift)
    if settings.windows:
        windows = window_events(hit_table, events, profiles, clocks(cadence), snippet_channels)
        parts = [table for table in (events, windows) if len(table)]
        events = pd.concat(parts, ignore_index=True) if parts else events
    snippets = event_snippets(events, blocks, cadence, snippet_channels) if snippet_channels else None
    for table in (hit_table, events):
        table.insert(0, "chunk", chunk)
        for column in [c for c in table.columns if c == "channel" or c.startswith("channel_obs")]:
            table[column] += start
    return hit_table, events, snippets


def state_of(cadence: Cadence, settings: ScanSettings) -> dict:
    """What a finished chunk's results depend on: the search's settings (not ASSEMBLY_SETTINGS, which only shape
    the tables and plots assembled from the chunks on every run) and the files (path, size, modification time)."""
    files = [
        {"path": str(p.resolve()), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in cadence.paths
    ]
    search = {k: v for k, v in dataclasses.asdict(settings).items() if k not in ASSEMBLY_SETTINGS}
    if not settings.windows:  # folders scanned before the option existed stay resumable
        del search["windows"]
    return {"settings": search, "files": files, "pattern": cadence.pattern()}


def prepare_folder(folder: Path, state: dict, overwrite: bool) -> None:
    """Create the cadence folder, or continue in one that holds the same scan; anything else is refused
    unless `overwrite`."""
    state_path = folder / STATE_FILE
    if folder.exists() and any(folder.iterdir()):
        same = state_path.is_file() and json.loads(state_path.read_text()) == state
        if same and not overwrite:
            return
        if not overwrite:
            what = "a scan with other settings or files" if state_path.is_file() else "files that are not a scan"
            raise FileExistsError(f"{folder}: holds {what}; pass --overwrite to replace it, or choose another --out")
        shutil.rmtree(folder)
    (folder / CHUNK_FOLDER).mkdir(parents=True, exist_ok=True)
    write_text_atomically(state_path, json.dumps(state, indent=1))


def scan_cadence(
    cadence: Cadence,
    out: Path,
    settings: ScanSettings,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool = True,
    snippet_channels: int | None = None,
    assemble: bool = True,
) -> Path:
    """Scan one cadence into `out/<cadence name>/`; returns that folder. With `snippet_channels`, each chunk also
    keeps its events' snippets (a chunk done without them is searched again: the same results, plus them);
    `assemble` writes the cadence's outputs at the end (a model's scores are added first when it is False)."""
    folder = Path(out) / cadence.name
    bounds = chunk_bounds(cadence, settings)  # checked before anything is written
    torch_device = torch.device(device)
    prepare_folder(folder, state_of(cadence, settings), overwrite)
    with progress_bar(total=len(bounds), desc=cadence.name, unit="chunk", show=progress) as bar:
        for chunk, chunk_range in enumerate(bounds):
            hits_path, events_path, done_path = chunk_paths(folder, chunk)
            snippets_path = snippet_path(folder, chunk)
            if not done_path.is_file() or (snippet_channels and not snippets_path.is_file()):
                started = time.perf_counter()
                hits, events, snippets = search_chunk(
                    cadence, chunk, chunk_range, settings, torch_device, snippet_channels
                )
                write_csv_atomically(hits, hits_path)
                write_csv_atomically(events, events_path)
                if snippets is not None:
                    write_npy_atomically(snippets, snippets_path)
                summary = {"seconds": time.perf_counter() - started, "hits": len(hits), "events": len(events)}
                write_text_atomically(done_path, json.dumps(summary))
            bar.update(1)
    if assemble:
        write_cadence_outputs(folder, cadence, settings, bounds)
    return folder


@dataclass(frozen=True)
class Execution:
    """How a catalog is run; none of it changes the results. `snippet_channels`: keep every event's snippet of
    that many channels for a model; `assemble`: write each cadence's outputs when its search ends (False when a
    model's scores are to be added first)."""

    device: str = "cpu"
    engine: str = "local"
    workers: int = 1
    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    overwrite: bool = False
    snippet_channels: int | None = None
    assemble: bool = True


def _scan_task(cadence: Cadence, out: Path, settings: ScanSettings, run: Execution) -> Path:
    """One cadence in a worker (a pool process or a Ray task): no progress bar of its own."""
    torch.set_num_threads(1)
    return scan_cadence(cadence, out, settings, run.overwrite, run.device, False, run.snippet_channels, run.assemble)


def scan_catalog(
    cadences: list[Cadence], out: Path, settings: ScanSettings, run: Execution = Execution()
) -> list[Path]:
    """Scan every cadence (one per worker) and, when `run.assemble`, write the catalog's summary into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in cadences]
    if len(set(names)) != len(names):
        raise ConfigError("two cadences share a name; name them in the catalog's cadence column")
    with progress_bar(total=len(cadences), desc="cadences", unit="cadence", show=len(cadences) > 1) as bar:
        if run.engine == "ray":
            with ray_session(run.address):
                folders = _run_ray(cadences, out, settings, run, bar.update)
        elif run.workers > 1 and len(cadences) > 1:
            folders = _run_pool(cadences, out, settings, run, bar.update)
        else:
            folders = []
            for cadence in cadences:
                folders.append(
                    scan_cadence(
                        cadence, out, settings, run.overwrite, run.device, True, run.snippet_channels, run.assemble
                    )
                )
                bar.update(1)
    if run.assemble:
        write_catalog_outputs(out, folders)
    return folders


def _run_pool(cadences, out, settings, run: Execution, done: Callable[[int], object]) -> list[Path]:
    folders: dict[str, Path] = {}
    with ProcessPoolExecutor(max_workers=run.workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_scan_task, c, out, settings, run): c.name for c in cadences}
        for future in as_completed(futures):
            folders[futures[future]] = future.result()
            done(1)
    return [folders[c.name] for c in cadences]


@contextmanager
def ray_session(address: str | None):
    """Ray for the block: the one already running in this process, else one started here (a fresh local
    instance for address None, never a stale one recorded in /tmp/ray; or the cluster at `address`, "auto" or
    "host:6379", whose nodes must all see the output folder) and shut down at the end."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray's default, set so that it does not warn about it
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address or "local",
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def ray_result(ray, ref):
    """A finished Ray task's value; a user's error raised in the task comes back as itself, not Ray's trace."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, USER_ERRORS):
            raise err.cause from None
        raise


def _run_ray(cadences, out, settings, run: Execution, done: Callable[[int], object]) -> list[Path]:
    """One Ray task per cadence with the resources asked for."""
    import ray

    available = ray.cluster_resources().get("GPU", 0)
    if run.gpus_per_task > available:
        raise ConfigError(f"--gpus-per-task {run.gpus_per_task:g}: the Ray cluster has {available:g} GPU(s)")
    task = ray.remote(_scan_task).options(num_cpus=run.cpus_per_task, num_gpus=run.gpus_per_task)
    pending = {task.remote(c, out.resolve(), settings, run): c.name for c in cadences}
    folders: dict[str, Path] = {}
    waiting = list(pending)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        folders[pending[ready[0]]] = ray_result(ray, ready[0])
        done(1)
    return [folders[c.name] for c in cadences]
