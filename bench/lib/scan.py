"""Scan benchmark: this project's filterbank scan (scan.py, src/search/scan.py) against turbo_seti on the same files.

One run searches a generated set of cadences (python -m src.synth.filterbank: realistic .h5 files plus truth.csv)
with both pipelines and compares what each finds with what was injected:

1. turbo_seti 2.3.2 (optional, in its own interpreter through bench/lib/turboseti_runner.py): FindDoppler on every
   file (max_drift 4, snr 10, n_coarse_chan = the file's coarse channels, its other defaults), timed per file, then
   find_events over each ABACAD cadence at filter levels 3 and 2;
2. this project's scan (`scan_catalog`, in this process) with the same max_drift and snr at filter level 1, so
   events.csv holds every event with its level and score; each coarse channel's search time is in its done.json.

Events are matched to the injected signals by frequency (`match_events`): recall of the needles against false
events (events matching no needle) per cadence, as a curve for our scan (events of level >= 2 ranked by score)
and as points for turbo_seti (level 3, level 2); recall by SNR, drift and path shape at turbo_seti's level-3
false-event count; duplicate events per found needle; time per coarse channel per observation; peak RSS of
scan.py for 1 and 4 coarse channels per file; three candidate plots. The command line is bench/scan.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from src.core.errors import ConfigError, DataError
from src.core.files import write_atomically
from src.search.windows import WINDOW_LEVEL

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "turboseti_runner.py"
DEFAULT_TURBO_SETI_PYTHON = Path("/tmp/ts/bin/python")
TURBO_SETI_MODES = ("auto", "on", "off")
REPORT_FILES = (
    "report.md",
    "results.json",
    "results.csv",
    "curve.csv",
    "events.csv",
    "needles.csv",
    "recall_vs_false.png",
    "recall_by_group.png",
)
PLOT_PREFIX = "candidate_"  # the copied candidate plots: candidate_<n>_<cadence>_rank<r>.png
CATALOG, TRUTH = "catalog.csv", "truth.csv"
TURBO_SETI_LEVELS = (3, 2)
# Matching: an event matches a signal when its frequency at the start of the observation it was measured in lies
# within max(20 channels, 0.5 x |drift| x observation length) of the signal's frequency there, or when its straight
# track over that observation comes within 20 channels of the span of frequencies the signal's path covers there
TOLERANCE_CHANNELS = 20.0
SWEEP_TOLERANCE_CHANNELS = 2 * TOLERANCE_CHANNELS  # span rule: the track's sweep and the span's width alike
TOLERANCE_DRIFT_SHARE = 0.5
NO_MATCH = -1
SNR_BINS = ((5.0, 10.0, "SNR 5-10"), (10.0, 20.0, "SNR 10-20"), (20.0, 50.0, "SNR 20-50"))
DRIFT_BINS = (
    (0.0, 0.5, "|drift| 0-0.5"),
    (0.5, 1.0, "|drift| 0.5-1"),
    (1.0, 2.0, "|drift| 1-2"),
    (2.0, 4.0, "|drift| 2-4"),
)
SHAPE_ORDER = ("linear", "sine", "quadratic", "pulsed")
N_PLOTS = 3


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What bench/scan.py was asked to do."""

    data: Path
    out: Path
    work: Path | None = None  # scan folders, turbo_seti's .dat files, memory scans; default outputs/scan-bench/<out>
    generate: bool = False
    n_cadences: int = 8
    coarse_channels: int = 2
    fine_channels: int = 1 << 20
    seed: int = 11
    turbo_seti: str = "auto"
    turbo_seti_python: Path | None = None
    max_drift: float = 4.0
    snr: float = 10.0
    plot_top: int = 10
    torch_threads: int | None = None  # our scan's torch threads; None: torch's default (the CPU count)
    memory: bool = True
    memory_coarse_channels: tuple[int, ...] = (1, 4)
    memory_fine_channels: int = 1 << 20
    memory_data: Path | None = None  # default <data>/memory
    checkpoints: tuple[Path, ...] = ()  # a scan model's checkpoints or run folders: the scan with the model too
    model_snr: float | None = None  # hit SNR threshold of the scan with the model (default: --snr)
    windows: bool = False  # the scan with the model also scores every window of the ON bands (scan.py --windows)
    overwrite: bool = False
    command: str = ""

    def __post_init__(self):
        if self.turbo_seti not in TURBO_SETI_MODES:
            raise ConfigError(f"--turbo-seti {self.turbo_seti}: choose from {', '.join(TURBO_SETI_MODES)}")
        positive = {
            "n_cadences": self.n_cadences,
            "coarse_channels": self.coarse_channels,
            "fine_channels": self.fine_channels,
            "memory_fine_channels": self.memory_fine_channels,
            "max_drift": self.max_drift,
            "snr": self.snr,
        }
        for name, value in positive.items():
            if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
                raise ConfigError(f"--{name.replace('_', '-')} {value}: must be positive")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"--torch-threads {self.torch_threads}: at least 1")
        if self.plot_top < N_PLOTS:
            raise ConfigError(f"--plot-top {self.plot_top}: at least {N_PLOTS} (the report copies {N_PLOTS} plots)")
        if self.memory and (not self.memory_coarse_channels or min(self.memory_coarse_channels) < 1):
            raise ConfigError("--memory-coarse-channels: one or more counts >= 1")
        if self.windows and not self.checkpoints:
            raise ConfigError("--windows: the windows are for a model to score; give --checkpoints")

    @property
    def work_dir(self) -> Path:
        return self.work or REPO / "outputs" / "scan-bench" / self.out.resolve().name

    @property
    def memory_dir(self) -> Path:
        return self.memory_data or self.data / "memory"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -------------------------------------------------------------------- data ---


def generator_command(out: Path, n_cadences: int, coarse: int, fine: int, seed: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "src.synth.filterbank",
        "--out",
        str(out),
        "--n-cadences",
        str(n_cadences),
        "--coarse-channels",
        str(coarse),
        "--fine-channels",
        str(fine),
        "--seed",
        str(seed),
    ]


def ensure_data(folder: Path, generate: bool, command: list[str], what: str) -> bool:
    """A generated set in `folder` (catalog.csv and truth.csv): made with `command` when missing and asked to.
    Returns whether it was generated now."""
    if (folder / CATALOG).is_file() and (folder / TRUTH).is_file():
        return False
    if not generate:
        raise DataError(
            f"{folder / CATALOG}: not found; pass --generate to make the {what} "
            "(python -m src.synth.filterbank), or point --data at a generated set"
        )
    log(f"generating the {what}: {' '.join(command[1:])}")
    result = subprocess.run(command, cwd=REPO, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode})")
    return True


def load_truth(data: Path) -> pd.DataFrame:
    """truth.csv with cadence names as the scan names its folders."""
    from src.search.cadence import safe_name

    truth = pd.read_csv(data / TRUTH, dtype={"cadence": str, "kind": str, "shape": str})
    needed = {"cadence", "signal_id", "kind", "shape", "snr", "drift_hz_s", "f_mhz_obs0"}
    if missing := sorted(needed - set(truth.columns)):
        raise DataError(f"{data / TRUTH}: missing column(s) {', '.join(missing)}")
    truth["cadence"] = truth["cadence"].map(safe_name)
    return truth.reset_index(drop=True)


def data_summary(cadences, truth: pd.DataFrame) -> dict:
    """Sizes read from the files themselves, and the signal counts."""
    from src.data.filterbank import fine_channels_per_coarse

    first = cadences[0].headers[0]
    fine = fine_channels_per_coarse(first)
    kinds = truth["kind"].value_counts()
    return {
        "cadences": len(cadences),
        "files": sum(len(c.headers) for c in cadences),
        "coarse_channels_per_file": first.nchans // fine,
        "fine_channels_per_coarse": fine,
        "rows": first.n_rows,
        "tsamp_s": first.tsamp,
        "df_hz": first.df_hz,
        "obs_length_s": first.duration_s,
        "needles": int(kinds.get("needle", 0)),
        "rfi": {k: int(v) for k, v in kinds.items() if k != "needle"},
        "bytes": sum(h.path.stat().st_size for c in cadences for h in c.headers),
    }


def warm_page_cache(paths: Sequence[Path], chunk: int = 1 << 24) -> float:
    """Read every file once so neither pipeline pays for the first read from disk; returns the seconds."""
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(chunk):
                pass
    return time.perf_counter() - started


# -------------------------------------------------------------- turbo_seti ---


def turbo_seti_python(settings: BenchSettings) -> Path:
    return settings.turbo_seti_python or DEFAULT_TURBO_SETI_PYTHON


def turbo_seti_unavailable(python: Path) -> str | None:
    """None when `python` can import turbo_seti's FindDoppler and find_event, else a one-line reason."""
    if not python.exists():
        return f"{python}: no such interpreter (give --turbo-seti-python)"
    probe = "import turbo_seti.find_doppler.find_doppler, turbo_seti.find_event.find_event"
    try:
        result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{python}: cannot run it ({err})"
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        return f"{python} cannot import turbo_seti ({lines[-1] if lines else f'exit {result.returncode}'})"
    return None


def run_turbo_seti(python: Path, cadences, work: Path, settings: BenchSettings) -> dict:
    """turbo_seti over every cadence in its own interpreter; the runner's result.json plus the process's wall
    seconds and peak RSS."""
    from src.data.filterbank import fine_channels_per_coarse

    work.mkdir(parents=True, exist_ok=True)
    job = {
        "out_dir": str(work.resolve()),
        "max_drift": settings.max_drift,
        "snr": settings.snr,
        "levels": list(TURBO_SETI_LEVELS),
        "cadences": [
            {
                "name": c.name,
                "files": [
                    {"path": str(h.path.resolve()), "n_coarse_chan": h.nchans // fine_channels_per_coarse(h)}
                    for h in c.headers
                ],
            }
            for c in cadences
        ],
    }
    job_path = work / "job.json"
    job_path.write_text(json.dumps(job, indent=1))
    with (work / "runner.log").open("w") as printed:
        returncode, seconds, rss_kib = run_measured([str(python), str(RUNNER), str(job_path)], printed, None)
    if returncode != 0:
        raise RuntimeError(f"turbo_seti runner failed (exit {returncode}); see {work / 'runner.log'} and above")
    result = json.loads((work / "result.json").read_text())
    result["process_seconds"] = seconds
    result["peak_rss_mib"] = rss_kib / 1024
    return result


def run_measured(command: list[str], stdout, stderr) -> tuple[int, float, int]:
    """Run a command to its end; (exit code, wall seconds, peak RSS in KiB of it and its waited-for children),
    the peak from os.wait4 on that one process, so nothing else this process ran is counted."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=stderr)
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:  # interrupted: do not leave it running
        process.kill()
        process.wait()
        raise
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, time.perf_counter() - started, int(usage.ru_maxrss)


def turbo_seti_events(result: dict, cadences) -> dict[int, pd.DataFrame]:
    """turbo_seti's events per level, one row per event: cadence, obs, freq_mhz, snr, drift, status, Hit_ID.

    Level 2 returns ON hits, each its own event. Level 3 returns rows grouped by Hit_ID (`<SOURCE>_<row>`, the row
    of its ON hit in the level-2 table); one event per Hit_ID, placed at that ON hit, which find_events may have
    dropped from its own rows (it de-duplicates on TopHitNum, which repeats across files)."""
    index = {c.name: {h.path.stem: k for k, h in enumerate(c.headers)} for c in cadences}
    tables: dict[int, list[pd.DataFrame]] = {level: [] for level in TURBO_SETI_LEVELS}
    for name, levels in result["events"].items():
        read = {int(level): pd.read_csv(item["csv"], index_col="row") for level, item in levels.items()}
        level2 = read[2]
        for level, table in read.items():
            if table.empty:
                continue
            if level == 3:
                rows = []
                for hit_id, group in table.groupby("Hit_ID", sort=False):
                    row = int(str(hit_id).rsplit("_", 1)[1])
                    on_hit = level2.loc[row] if row in level2.index else group.iloc[0]
                    rows.append(on_hit.to_frame().T.assign(Hit_ID=hit_id, rows_in_table=len(group)))
                table = pd.concat(rows)
            events = pd.DataFrame(
                {
                    "cadence": name,
                    "obs": [index[name][Path(str(f)).stem] for f in table["FileID"]],
                    "freq_mhz": table["Freq"].astype(float).to_numpy(),
                    "snr": table["SNR"].astype(float).to_numpy(),
                    "drift_hz_s": table["DriftRate"].astype(float).to_numpy(),
                    "status": table["status"].to_numpy(),
                    "event": table["Hit_ID"].astype(str).to_numpy()
                    if level == 3
                    else [f"{f}:{int(n)}" for f, n in zip(table["FileID"], table["TopHitNum"], strict=True)],
                }
            )
            tables[level].append(events)
    columns = ["cadence", "obs", "freq_mhz", "snr", "drift_hz_s", "status", "event"]
    return {
        level: (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns))
        for level, parts in tables.items()
    }


def read_dat_hits(path: Path) -> pd.DataFrame:
    """A FindDoppler .dat's hits: drift_hz_s, snr, freq_mhz (columns 1, 2, 3 of its rows)."""
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip() and not line.startswith("#")]
    return pd.DataFrame(
        {
            "drift_hz_s": [float(r[1]) for r in rows],
            "snr": [float(r[2]) for r in rows],
            "freq_mhz": [float(r[3]) for r in rows],
        }
    )


def turbo_seti_on_hits(result: dict, cadences) -> pd.DataFrame:
    """Every FindDoppler hit of the ON files, before find_events: cadence, obs, freq_mhz, snr, drift_hz_s."""
    index = {c.name: {h.path.stem: (k, c.on[k]) for k, h in enumerate(c.headers)} for c in cadences}
    parts = []
    for f in result["files"]:
        obs, on = index[f["cadence"]][Path(f["path"]).stem]
        if on:
            parts.append(read_dat_hits(Path(f["dat"])).assign(cadence=f["cadence"], obs=obs))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["cadence", "obs", "freq_mhz"])


def turbo_seti_noise_estimate(header) -> dict:
    """turbo_seti's noise estimate of the first coarse channel of a file against the noise itself.

    FindDoppler's SNR divides by the standard deviation of the zero-drift spectrum (rows summed) between its 5th and
    95th percentiles; a bandpass that is not flat inflates it. The noise itself: the standard deviation of the
    difference of neighbouring channels of that spectrum, / sqrt(2)."""
    from src.data.filterbank import fine_channels_per_coarse, read_block

    spectrum = read_block(header, 0, fine_channels_per_coarse(header)).astype(np.float64).sum(axis=0)
    lo, hi = np.percentile(spectrum, [5, 95])
    clipped = float(spectrum[(spectrum > lo) & (spectrum < hi)].std())
    noise = float(np.std(np.diff(spectrum)) / np.sqrt(2))
    return {"file": header.path.name, "clipped_std": clipped, "noise_std": noise, "ratio": clipped / noise}


# --------------------------------------------------------------- our scan ---


def run_scan(cadences, work: Path, settings: BenchSettings, with_model: bool = False) -> dict:
    """scan_catalog over every cadence at filter level 1 (every event in events.csv), timed; `with_model`: the
    same scan keeping snippets, with every event scored by the model of `settings.checkpoints`."""
    import torch

    from src.engine.scan_model import open_scan_model, scan_with_model
    from src.search.scan import Execution, ScanSettings, scan_catalog

    snr = settings.model_snr if with_model and settings.model_snr else settings.snr
    scan_settings = ScanSettings(
        max_drift=settings.max_drift,
        snr=snr,
        filter_level=1,
        plot_top=settings.plot_top,
        windows=with_model and settings.windows,
    )
    previous = torch.get_num_threads()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    try:
        threads = torch.get_num_threads()
        started = time.perf_counter()
        if with_model:
            model = open_scan_model(settings.checkpoints)
            folders = scan_with_model(cadences, work, scan_settings, model, Execution())
        else:
            folders = scan_catalog(cadences, work, scan_settings)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    return {
        "seconds": seconds,
        "folders": [str(f) for f in folders],
        "torch_threads": threads,
        "settings": dataclasses.asdict(scan_settings),
    }


def chunk_seconds(folder: Path) -> list[float]:
    """Search seconds of each coarse channel (all observations of the cadence) from the chunks' done.json."""
    from src.search.outputs import CHUNK_FOLDER

    return [json.loads(p.read_text())["seconds"] for p in sorted((folder / CHUNK_FOLDER).glob("*.done.json"))]


def scan_events(folders: Sequence[Path], cadences) -> pd.DataFrame:
    """Our events (every level): cadence, obs (the reference hit's observation), freq_mhz (its frequency there),
    freq_first_on_mhz (the event's track carried to the first ON observation), level, score, event (Hit_ID)."""
    parts = []
    for folder, cadence in zip(folders, cadences, strict=True):
        table = pd.read_csv(folder / "events.csv")
        first_on = cadence.on.index(True)
        parts.append(
            pd.DataFrame(
                {
                    "cadence": cadence.name,
                    "obs": table["obs"].astype(int).to_numpy(),
                    "freq_mhz": table["Freq"].astype(float).to_numpy(),
                    "freq_first_on_mhz": table[f"freq_obs{first_on}"].astype(float).to_numpy(),
                    "level": table["level"].astype(int).to_numpy(),
                    "score": table["score"].astype(float).fillna(-np.inf).to_numpy(),
                    "snr": table["SNR"].astype(float).to_numpy(),
                    "drift_hz_s": table["DriftRate"].astype(float).to_numpy(),
                    "event": table["Hit_ID"].astype(str).to_numpy(),
                    **(
                        {"model_score": table["model_score"].astype(float).to_numpy()} if "model_score" in table else {}
                    ),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------- matching ---


def tolerance_hz(drift_hz_s, df_hz: float, obs_length_s: float) -> np.ndarray:
    """How far (Hz) an event's frequency may lie from a signal's: max(20 channels, 0.5 x |drift| x obs length)."""
    drift = np.abs(np.asarray(drift_hz_s, dtype=float))
    return np.maximum(TOLERANCE_CHANNELS * df_hz, TOLERANCE_DRIFT_SHARE * drift * obs_length_s)


def span_columns(obs: int) -> tuple[str, str]:
    """truth.csv's span of a signal's path during observation `obs` (MHz): lowest and highest frequency."""
    return f"f_mhz_min_obs{obs}", f"f_mhz_max_obs{obs}"


def match_events(
    events: pd.DataFrame,
    truth: pd.DataFrame,
    df_hz: float,
    obs_length_s: float,
    freq_column: str = "freq_mhz",
    drift_column: str | None = "drift_hz_s",
    spans: bool = True,
) -> pd.DataFrame:
    """Each event matched to an injected signal of its cadence.

    `events`: columns cadence, obs, `freq_column` (MHz, the event's frequency at the start of observation `obs`) and
    optionally `drift_column` (the event's drift rate, Hz/s); `truth`: truth.csv (cadence, kind, drift_hz_s,
    f_mhz_obs<k>, and in sets generated since they were added f_mhz_min_obs<k> / f_mhz_max_obs<k>). An event matches
    a signal present in observation `obs` by either of two rules:
    - start: |frequency - the signal's f_mhz_obs<obs>| <= tolerance_hz(max(|signal's drift|, |event's drift|)),
      the signal's drift being truth's rate at the cadence's start and the event's its measured rate, which
      follows a curved (sine, quadratic) path's rate in that observation;
    - span (`spans` and truth has the signal's span in observation `obs`): the event's straight track over the
      observation, from its frequency to frequency + drift x obs_length_s (only its frequency without a drift),
      and the span of the signal's path there, [f_mhz_min_obs<obs>, f_mhz_max_obs<obs>], lie within
      TOLERANCE_CHANNELS channels of each other and the track sweeps as far as the span is wide (within
      SWEEP_TOLERANCE_CHANNELS): the event runs along the path there, which the straight line fitted to a piece
      of a curved path does even when it starts far from the path's start, and a line merely crossing it does not.
    Several signals matching: the nearest, by the gap between track and span (0 when they overlap; only with the
    span rule) and then by |frequency - f_mhz_obs<obs>|. Needles first; an event matching no needle is checked
    against the RFI lines the same way (broadband bursts have no frequency and are never matched). `spans=False`
    (or a truth without the span columns) gives the start rule alone; pass it when `freq_column` is not the
    event's frequency in observation `obs`'s own frame. Returns a copy with needle_row / rfi_row (the signal's row
    in `truth`, or -1), offset_hz (event - signal's f_mhz_obs<obs>) and match ("needle", "rfi" or "none")."""
    out = events.copy()
    out["needle_row"] = NO_MATCH
    out["rfi_row"] = NO_MATCH
    out["offset_hz"] = np.nan
    out["match"] = "none"
    lines = truth[(truth["kind"] != "rfi_broadband") & truth["drift_hz_s"].notna()]
    measured = drift_column is not None and drift_column in out.columns
    for (cadence, obs), index in out.groupby(["cadence", "obs"]).groups.items():
        signals = lines[lines["cadence"] == cadence]
        column = f"f_mhz_obs{int(obs)}"
        if signals.empty or column not in signals:
            continue
        freq = out.loc[index, freq_column].to_numpy(dtype=float)
        offsets = (freq[:, None] - signals[column].to_numpy(dtype=float)[None, :]) * 1e6
        drift = np.abs(signals["drift_hz_s"].to_numpy(dtype=float))[None, :]
        event_drift = np.nan_to_num(out.loc[index, drift_column].to_numpy(dtype=float)) if measured else 0 * freq
        if measured:
            drift = np.maximum(drift, np.abs(event_drift)[:, None])
        within = np.abs(offsets) <= tolerance_hz(drift, df_hz, obs_length_s)  # NaN (absent there): False
        gap = np.zeros_like(offsets)
        low_column, high_column = span_columns(int(obs))
        if spans and low_column in signals and high_column in signals:
            sweep = event_drift * obs_length_s * 1e-6
            gap = track_gap_hz(freq, sweep, signals[low_column], signals[high_column])
            width = (signals[high_column] - signals[low_column]).to_numpy(dtype=float)[None, :]
            alike = np.abs(np.abs(sweep)[:, None] - width) * 1e6 <= SWEEP_TOLERANCE_CHANNELS * df_hz
            within |= (gap <= TOLERANCE_CHANNELS * df_hz) & alike  # NaN (absent there): False
        needle = (signals["kind"] == "needle").to_numpy()
        for kind, mask, column_out in (("needle", needle, "needle_row"), ("rfi", ~needle, "rfi_row")):
            ok = within & mask[None, :]
            # nearest: the smallest gap, then the smallest offset (lexsort's last key is its first)
            distance = np.where(ok, np.abs(np.nan_to_num(offsets, nan=np.inf)), np.inf)
            best = np.lexsort((distance, np.where(ok, gap, np.inf)), axis=1)[:, 0]
            hit = ok.any(axis=1) & (out.loc[index, "match"] == "none").to_numpy()
            rows = np.asarray(index)[hit]
            out.loc[rows, column_out] = signals.index.to_numpy()[best[hit]]
            out.loc[rows, "offset_hz"] = offsets[hit, best[hit]]
            out.loc[rows, "match"] = kind
    return out


def track_gap_hz(freq_mhz: np.ndarray, sweep_mhz: np.ndarray, low_mhz, high_mhz) -> np.ndarray:
    """Gap (Hz) between each event's track, from freq_mhz to freq_mhz + sweep_mhz, and each signal's span
    [low_mhz, high_mhz]: 0 where they overlap, NaN where the signal has no span (absent); events x signals."""
    ends = np.stack([freq_mhz, freq_mhz + sweep_mhz])
    lo, hi = ends.min(axis=0)[:, None], ends.max(axis=0)[:, None]
    low = np.asarray(low_mhz, dtype=float)[None, :]
    high = np.asarray(high_mhz, dtype=float)[None, :]
    return np.maximum(np.maximum(low - hi, lo - high), 0.0) * 1e6


def point_metrics(matched: pd.DataFrame, n_needles: int, n_cadences: int) -> dict:
    """Counts of one set of events: found needles, false events (matching no needle; RFI or nothing), duplicates."""
    needle_rows = matched.loc[matched["needle_row"] != NO_MATCH, "needle_row"]
    found = needle_rows.nunique()
    n_false = int((matched["needle_row"] == NO_MATCH).sum())
    return {
        "events": len(matched),
        "false_events": n_false,
        "false_per_cadence": n_false / n_cadences if n_cadences else None,
        "rfi_events": int((matched["match"] == "rfi").sum()),
        "unmatched_events": int((matched["match"] == "none").sum()),
        "needle_events": len(needle_rows),
        "found": int(found),
        "needles": n_needles,
        "recall": found / n_needles if n_needles else None,
        "events_per_found_needle": len(needle_rows) / found if found else None,
        "max_events_per_needle": int(needle_rows.value_counts().max()) if found else 0,
    }


def recall_curve(matched: pd.DataFrame, n_needles: int, n_cadences: int) -> pd.DataFrame:
    """Recall against false events as the score threshold falls: one row per distinct score (events with a score
    >= threshold are kept), starting from no event at all (threshold +inf)."""
    ranked = matched.sort_values("score", ascending=False, kind="stable")
    needle = ranked["needle_row"].to_numpy()
    is_false = needle == NO_MATCH
    first_find = (~is_false) & ~pd.Series(needle).duplicated().to_numpy()
    score = ranked["score"].to_numpy(dtype=float)
    last_of_tie = np.r_[score[1:] != score[:-1], True] if len(score) else np.zeros(0, bool)
    curve = pd.DataFrame(
        {
            "threshold": score,
            "events": np.arange(1, len(score) + 1),
            "false_events": np.cumsum(is_false),
            "found": np.cumsum(first_find),
        }
    )[last_of_tie]
    start = pd.DataFrame({"threshold": [np.inf], "events": [0], "false_events": [0], "found": [0]})
    curve = pd.concat([start, curve], ignore_index=True)
    curve["recall"] = curve["found"] / n_needles if n_needles else np.nan
    curve["false_per_cadence"] = curve["false_events"] / n_cadences
    return curve


def threshold_at(curve: pd.DataFrame, false_budget: int) -> float:
    """The lowest score threshold whose events hold at most `false_budget` false events."""
    return float(curve.loc[curve["false_events"] <= false_budget, "threshold"].iloc[-1])


def either_selection(events: pd.DataFrame, false_budget: int) -> tuple[pd.DataFrame, float, float]:
    """The events that the cadence filter's score (level >= 2, score >= a) or the model's (model_score >= b)
    passes, (a, b) chosen together to find the most needles with at most `false_budget` false events (then the
    fewest events): the two rankings' union, for a reviewer who reads both lists. Returns the events, a and b
    (inf: that list is not used)."""
    filtered = (events["level"] >= 2).to_numpy()
    score, model = events["score"].to_numpy(dtype=float), events["model_score"].to_numpy(dtype=float)
    false = (events["needle_row"] == NO_MATCH).to_numpy()
    best, best_key = (np.zeros(len(events), bool), np.inf, np.inf), (0, 0)
    for a in np.r_[np.inf, np.unique(score[filtered])[::-1]]:
        chosen = filtered & (score >= a)
        left = false_budget - int((chosen & false).sum())
        if left < 0:
            break
        rest = np.flatnonzero(~chosen)
        order = rest[np.argsort(-model[rest], kind="stable")]
        cumulative_false = np.cumsum(false[order])
        values = model[order]
        last_of_tie = np.r_[values[1:] != values[:-1], True] if len(values) else np.zeros(0, bool)
        allowed = np.flatnonzero(last_of_tie & (cumulative_false <= left))
        b = values[allowed[-1]] if len(allowed) else np.inf
        selected = chosen | (model >= b)
        found = events.loc[selected & ~false, "needle_row"].nunique()
        key = (found, -int(selected.sum()))
        if key > best_key:
            best, best_key = (selected, float(a), float(b)), key
    selected, a, b = best
    return events[selected], a, b


def needle_groups(needles: pd.DataFrame) -> dict[str, np.ndarray]:
    """Masks over the needles: all, SNR bins, |drift| bins (Hz/s), path shapes (a bin holds its lower edge; the
    last bin of each also its upper one) and, where truth says, whether all-six interference crosses their path."""
    snr = needles["snr"].to_numpy(dtype=float)
    drift = np.abs(needles["drift_hz_s"].to_numpy(dtype=float))
    groups = {"all": np.ones(len(needles), bool)}
    for bins, values in ((SNR_BINS, snr), (DRIFT_BINS, drift)):
        for i, (lo, hi, name) in enumerate(bins):
            groups[name] = (values >= lo) & ((values < hi) | ((values == hi) & (i == len(bins) - 1)))
    shapes = [s for s in SHAPE_ORDER if s in set(needles["shape"])]
    shapes += sorted(set(needles["shape"]) - set(SHAPE_ORDER))
    for shape in shapes:
        groups[f"shape {shape}"] = (needles["shape"] == shape).to_numpy()
    if "rfi_near" in needles:  # sets made with --rfi-near-needles: all-six interference across the needle's path
        near = needles["rfi_near"].astype(str).str.lower() == "true"
        groups["all-six RFI near"] = near.to_numpy()
        groups["no RFI near"] = (~near).to_numpy()
    return groups


def group_recall(found_rows: set, needles: pd.DataFrame) -> dict[str, dict]:
    found = needles.index.isin(list(found_rows))
    return {
        name: {
            "needles": int(mask.sum()),
            "found": int(found[mask].sum()),
            "recall": _ratio(found[mask].sum(), mask.sum()),
        }
        for name, mask in needle_groups(needles).items()
    }


def _ratio(a, b) -> float | None:
    return float(a / b) if b else None


@dataclasses.dataclass
class Point:
    """One operating point: a method's selection of events."""

    name: str
    method: str  # "ours" or "turbo_seti"
    rule: str
    events: pd.DataFrame  # matched


def evaluate_points(points: Sequence[Point], needles: pd.DataFrame, n_cadences: int) -> dict:
    out = {}
    for p in points:
        metrics = point_metrics(p.events, len(needles), n_cadences)
        found = set(p.events.loc[p.events["needle_row"] != NO_MATCH, "needle_row"])
        out[p.name] = {"method": p.method, "rule": p.rule, **metrics, "groups": group_recall(found, needles)}
    return out


# ------------------------------------------------------------------ memory ---


def memory_sets(settings: BenchSettings) -> list[tuple[int, Path]]:
    """One generated cadence per coarse-channel count of the memory runs (made now when missing and asked to)."""
    sets = []
    for coarse in settings.memory_coarse_channels:
        data = settings.memory_dir / f"coarse{coarse}-fine{settings.memory_fine_channels}"
        ensure_data(
            data,
            settings.generate,
            generator_command(data, 1, coarse, settings.memory_fine_channels, settings.seed),
            f"memory cadence ({coarse} coarse channels)",
        )
        sets.append((coarse, data))
    return sets


def memory_runs(settings: BenchSettings, sets: Sequence[tuple[int, Path]], work: Path) -> list[dict]:
    """Peak RSS of scan.py (a subprocess, same settings as the benchmark's scan but the default filter level) on each
    memory cadence."""
    runs = []
    for coarse, data in sets:
        out = work / f"coarse{coarse}"
        command = [
            sys.executable,
            "scan.py",
            "--catalog",
            str(data / CATALOG),
            "--out",
            str(out),
            "--max-drift",
            str(settings.max_drift),
            "--snr",
            str(settings.snr),
            "--plot-top",
            str(settings.plot_top),
        ]
        log(f"memory: scan.py on 1 cadence x {coarse} coarse channel(s) x {settings.memory_fine_channels:,} channels")
        work.mkdir(parents=True, exist_ok=True)
        with (work / f"coarse{coarse}.log").open("w") as printed:
            returncode, seconds, rss_kib = run_measured(command, printed, subprocess.STDOUT)
        if returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed (exit {returncode}); see {work / f'coarse{coarse}.log'}")
        runs.append(
            {
                "coarse_channels": coarse,
                "fine_channels": settings.memory_fine_channels,
                "file_mib": sum(p.stat().st_size for p in data.rglob("*.h5")) / 6 / 2**20,
                "peak_rss_mib": rss_kib / 1024,
                "seconds": seconds,
                "command": " ".join(["python", *command[1:]]),
            }
        )
        log(f"memory: {coarse} coarse channel(s): peak RSS {rss_kib / 1024:.0f} MiB in {seconds:.0f} s")
    return runs


# ------------------------------------------------------------------ timing ---


def stats(values: Sequence[float]) -> dict:
    values = np.asarray(values, dtype=float)
    if not len(values):
        return {"n": 0}
    return {
        "n": len(values),
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "first": float(values[0]),
    }


def timing(turbo: dict | None, scan: dict, folders: Sequence[Path], cadences) -> dict:
    """Seconds per coarse channel per observation: turbo_seti's FindDoppler per file / its coarse channels, our
    search per coarse channel / the cadence's observations."""
    ours = [s / len(c.headers) for f, c in zip(folders, cadences, strict=True) for s in chunk_seconds(Path(f))]
    out = {
        "ours": {
            "per_coarse_channel_per_observation_s": stats(ours),
            "search_seconds": float(sum(sum(chunk_seconds(Path(f))) for f in folders)),
            "whole_run_seconds": scan["seconds"],
            "torch_threads": scan["torch_threads"],
        }
    }
    if turbo is not None:
        per = [f["seconds"] / f["n_coarse_chan"] for f in turbo["files"]]
        out["turbo_seti"] = {
            "per_coarse_channel_per_observation_s": stats(per),
            "find_doppler_seconds": float(sum(f["seconds"] for f in turbo["files"])),
            "find_event_seconds": float(sum(sum(v.values()) for v in turbo["find_event_seconds"].values())),
            "whole_run_seconds": turbo["process_seconds"],
            "peak_rss_mib": turbo["peak_rss_mib"],
        }
        a, b = (
            out["turbo_seti"]["per_coarse_channel_per_observation_s"],
            out["ours"]["per_coarse_channel_per_observation_s"],
        )
        out["ratio_turbo_seti_over_ours"] = {k: a[k] / b[k] for k in ("median", "mean") if b.get(k)}
    return out


# ------------------------------------------------------------------- plots ---


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _footer(fig, report: dict) -> None:
    import textwrap

    command = textwrap.wrap(report["command"], 190, break_on_hyphens=False)
    fig.text(
        0.005,
        0.005,
        "\n".join([*command, f"{report['machine']['summary']}, {report['date']}"]),
        fontsize=6,
        color="dimgrey",
        va="bottom",
        ha="left",
    )


def _footer_room(report: dict) -> float:
    """Share of the figure's height the footer needs (figures of ~5 inches)."""
    return 0.03 + 0.022 * (len(report["command"]) // 190 + 1)


POINT_COLOURS = {
    "turbo_seti level 3": "C3",
    "turbo_seti level 2": "C1",
    "ours @ turbo_seti L3 false count": "C0",
    "ours @ turbo_seti L2 false count": "C9",
    "ours level 3": "C2",
}


def plot_recall_vs_false(
    path: Path, curve: pd.DataFrame, report: dict, model_curve: pd.DataFrame | None = None
) -> None:
    """Our recall-vs-false-events curve (and the scan's with the model, when it ran) with turbo_seti's points,
    linear and symmetric-log false-event axes."""
    plt = _pyplot()
    points = report["points"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
    markers = {
        "turbo_seti level 3": ("s", POINT_COLOURS["turbo_seti level 3"], "turbo_seti level 3"),
        "turbo_seti level 2": ("D", POINT_COLOURS["turbo_seti level 2"], "turbo_seti level 2"),
        "ours level 3": ("o", POINT_COLOURS["ours level 3"], "ours: level 3 events"),
    }
    headline = report.get("headline")
    x = curve["false_per_cadence"].to_numpy(dtype=float)
    xs = [*x, *(p["false_per_cadence"] for p in points.values() if p["false_per_cadence"] is not None)]
    right = max(max(xs, default=0.0), 1.0) * 1.05
    for ax, log_x in zip(axes, (False, True), strict=True):
        ax.step(x, curve["recall"], where="post", color="C0", label="ours: events of level >= 2 ranked by score")
        if model_curve is not None:
            ax.step(
                model_curve["false_per_cadence"],
                model_curve["recall"],
                where="post",
                color="C3",
                label="ours + model: every event ranked by the model",
            )
        for name, (marker, colour, label) in markers.items():
            if name in points and points[name]["recall"] is not None:
                p = points[name]
                ax.plot(p["false_per_cadence"], p["recall"], marker, color=colour, ms=8, label=label)
        if headline and headline.get("ours") is not None:
            ax.axvline(headline["false_per_cadence"], color="grey", ls="--", lw=0.8)
            ax.plot(
                headline["false_per_cadence"],
                headline["ours"],
                "*",
                color="C0",
                mec="black",
                ms=14,
                label="ours at turbo_seti level 3's false events",
            )
        if log_x:
            positive = [v for v in xs if v > 0]
            ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
        ax.set_xlim(-0.02 * right if not log_x else 0.0, right)
        ax.set(
            xlabel="false events per cadence (events matching no needle)",
            ylabel="recall of injected needles",
            ylim=(-0.02, 1.02),
            title="linear" if not log_x else "symmetric-log false-event axis",
        )
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(loc="lower right", fontsize=8)
    d = report["data"]
    fig.suptitle(
        f"Recall vs false events: {d['cadences']} cadences x {d['coarse_channels_per_file']} coarse channels x "
        f"{d['fine_channels_per_coarse']:,} channels, {d['needles']} needles"
    )
    fig.tight_layout(rect=(0, _footer_room(report), 1, 1))
    _footer(fig, report)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def plot_recall_by_group(path: Path, report: dict) -> None:
    """Recall per needle group (SNR, drift, shape) at each operating point, as grouped bars."""
    plt = _pyplot()
    names = [n for n in report["points"] if n != "ours level >= 2 (all)"]
    groups = list(next(iter(report["points"].values()))["groups"])
    fig, ax = plt.subplots(figsize=(13, 5.4))
    width = 0.8 / len(names)
    x = np.arange(len(groups))
    for i, name in enumerate(names):
        values = [report["points"][name]["groups"][g]["recall"] or 0.0 for g in groups]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=name, color=POINT_COLOURS.get(name))
    counts = [report["points"][names[0]]["groups"][g]["needles"] for g in groups]
    ax.set_xticks(x, [f"{g}\n({n})" for g, n in zip(groups, counts, strict=True)], fontsize=8)
    ax.set(ylabel="recall of injected needles", ylim=(0, 1.02), title="Recall by needle group (needles in brackets)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout(rect=(0, _footer_room(report), 1, 1))
    _footer(fig, report)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def choose_plots(matched: pd.DataFrame, folders: Sequence[Path], truth: pd.DataFrame, n: int = N_PLOTS) -> list[dict]:
    """Up to n plotted candidates of our scan: of level >= 2, the best-scored needle, the best-scored false event
    and the faintest (truth SNR) needle found; then the next best by score, level >= 2 first."""
    plotted = []
    for folder in folders:
        candidates = pd.read_csv(Path(folder) / "candidates.csv")
        for c in candidates.itertuples(index=False):
            png = Path(folder) / "plots" / f"candidate_{int(c.rank):03d}.png"
            if png.is_file():
                plotted.append({"cadence": str(c.cadence), "event": str(c.event), "rank": int(c.rank), "png": png})
    if not plotted:
        return []
    every = pd.DataFrame(plotted).merge(matched, on=["cadence", "event"], how="inner")
    every = every.sort_values("score", ascending=False, kind="stable")
    table = every[every["level"] >= 2]
    picks: list[int] = []
    needles = table[table["match"] == "needle"]
    false = table[table["match"] != "needle"]
    if len(needles):
        picks.append(needles.index[0])
    if len(false):
        picks.append(false.index[0])
    if len(needles):
        faint = needles.assign(truth_snr=truth.loc[needles["needle_row"], "snr"].to_numpy()).sort_values("truth_snr")
        picks += [i for i in faint.index[:1] if i not in picks]
    picks += [i for i in table.index if i not in picks]
    picks += [i for i in every.index if i not in picks]  # then level 1, when fewer were plotted
    chosen = []
    for i in picks[:n]:
        row = every.loc[i]
        chosen.append(
            {k: row[k] for k in ("cadence", "event", "rank", "png", "score", "level", "match", "needle_row", "rfi_row")}
        )
    return chosen


def describe_match(row: dict, truth: pd.DataFrame) -> str:
    if row["match"] == "needle":
        s = truth.loc[row["needle_row"]]
        return f"needle {int(s['signal_id'])} ({s['shape']}, SNR {s['snr']:.1f}, drift {s['drift_hz_s']:+.3f} Hz/s)"
    if row["match"] == "rfi":
        s = truth.loc[row["rfi_row"]]
        return f"false: RFI {int(s['signal_id'])} ({s['kind']}, SNR {s['snr']:.0f}, drift {s['drift_hz_s']:+.3f} Hz/s)"
    return "false: matches no injected signal"


# ------------------------------------------------------------------ report ---


def machine() -> dict:
    import torch

    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "platform": platform.platform(),
        "cpu": model or platform.processor() or platform.machine(),
        "cpus": cpus,
        "gpu": gpu,
        "torch": torch.__version__,
        "summary": f"{cpus}-core CPU ({model or platform.machine()}), {'GPU ' + gpu if gpu else 'no GPU'}",
    }


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    return [
        "| " + " | ".join(map(str, header)) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(map(str, row)) + " |" for row in rows),
    ]


def _f(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _loads(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def markdown(report: dict) -> str:
    d, points, t = report["data"], report["points"], report["timing"]
    lines = [
        "# Scan benchmark: this project's scan against turbo_seti",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']['summary']}; {report['machine']['platform']}. Date: {report['date']}.",
        "",
        (
            f"Data: `{report['settings']['data']}`: {d['cadences']} ABACAD cadences ({d['files']} .h5 files, "
            f"{d['bytes'] / 2**30:.2f} GiB), {d['coarse_channels_per_file']} coarse channel(s) of "
            f"{d['fine_channels_per_coarse']:,} fine channels ({d['df_hz']:.3f} Hz) x {d['rows']} rows of "
            f"{d['tsamp_s']:.2f} s per file; {d['needles']} needles (ON only), RFI: "
            + ", ".join(f"{k} {v}" for k, v in d["rfi"].items())
            + f". Both searches: max drift {report['settings']['max_drift']:g} Hz/s, hit SNR >= "
            f"{report['settings']['snr']:g}, on the same files in this one run."
        ),
        "",
        "## Headline",
        "",
    ]
    h = report.get("headline")
    if h:
        lines.append(
            f"At turbo_seti's level-3 false-event count ({h['false_events']} false events, "
            f"{h['false_per_cadence']:.2f} per cadence), our scan finds **{_f(h['ours'])}** of the injected needles "
            f"(score threshold {h['threshold']:.2f}); turbo_seti level 3 finds **{_f(h['turbo_seti'])}**."
        )
        if h.get("ours_with_model") is not None:
            lines.append(
                f"With the model ranking every event, our scan finds **{_f(h['ours_with_model'])}** at that count; "
                "with the model's list and the cadence filter's read together, "
                f"**{_f(h['ours_with_model_or_filter'])}**."
            )
    else:
        lines.append(f"turbo_seti was skipped: {report['skipped'].get('turbo_seti')}. Our points only.")
    m = report.get("model")
    if m:
        lines += [
            "",
            f"Model ({', '.join(m['checkpoints'])}; hit SNR >= {m['snr']:g}): {m['events']} events scored, "
            f"{m['needle_events']} of them matching a needle; ROC AUC of its scores, needle events against all "
            f"others (RFI and noise): **{_f(m['snippet_auc'])}**. The scan with the model took {m['seconds']:.1f} s "
            f"against {m['scan_seconds']:.1f} s without ({_f(m['seconds_per_coarse_channel'], 2)} s against "
            f"{_f(m['scan_seconds_per_coarse_channel'], 2)} s per coarse channel, all six observations: "
            f"{100 * m['added_share']:+.0f}%, outputs and plots included in both). Scoring alone: "
            f"{_f(m['snippets_per_second'], 0)} snippets/s ({m['snippets_timed']} snippets, "
            f"{m.get('torch_threads')} torch thread(s)).",
        ]
        if m.get("windows"):
            lines.append(
                f"With `--windows`: the model also scored every window of the ON bands where no hit is (its best "
                f"line); the {m['windows_kept']} it passed (score >= 0.5) are among the events above as level 0, "
                "the rest are not in events.csv, so the AUC and the curve below a score of 0.5 leave them out."
            )
    noise = report.get("turbo_seti_noise_estimate")
    if noise:
        lines += [
            "",
            "turbo_seti's noise estimate (the 5-95 percentile standard deviation of the rows-summed spectrum) is "
            f"{noise['ratio']:.1f}x the noise itself (from neighbouring-channel differences) in the first coarse "
            f"channel of {noise['file']}: FindDoppler does not remove the coarse channel's bandpass, so its SNRs come "
            "out about that many times lower than against the noise alone.",
        ]
    lines += ["", "## Operating points", ""]
    lines += _table(
        [
            "point",
            "rule",
            "events",
            "false events",
            "false / cadence",
            "RFI / unmatched",
            "found",
            "recall",
            "events per found needle",
        ],
        [
            [
                name,
                p["rule"],
                p["events"],
                p["false_events"],
                _f(p["false_per_cadence"], 2),
                f"{p['rfi_events']} / {p['unmatched_events']}",
                f"{p['found']} / {p['needles']}",
                _f(p["recall"]),
                _f(p["events_per_found_needle"], 2) + f" (max {p['max_events_per_needle']})",
            ]
            for name, p in points.items()
        ],
    )
    lines += [
        "",
        "False events: events matching no needle (an RFI line or nothing). Events per found needle: the events "
        "matched to each found needle, averaged (1.00 = no duplicates).",
        "",
        "Before the cadence filter: "
        + "; ".join(
            f"{name}: {p['events']} ({p['needle_events']} matching {p['found']} needles, recall {_f(p['recall'])}; "
            f"{p['rfi_events']} RFI, {p['unmatched_events']} unmatched)"
            for name, p in report["before_filter"].items()
        )
        + ".",
        "",
        "![recall vs false events](recall_vs_false.png)",
        "",
        "## Recall by needle group",
        "",
    ]
    names = list(points)
    groups = list(next(iter(points.values()))["groups"])
    lines += _table(
        ["group", "needles", *names],
        [
            [g, points[names[0]]["groups"][g]["needles"], *(_f(points[n]["groups"][g]["recall"]) for n in names)]
            for g in groups
        ],
    )
    lines += [
        "",
        "SNR is setigen's (of one observation's time-summed spectrum); |drift| in Hz/s at the cadence's start; a bin "
        "holds its lower edge, the last bin also its upper one.",
        "",
        "![recall by group](recall_by_group.png)",
        "",
        "## Time per coarse channel per observation",
        "",
    ]
    rows = []
    for method, key in (
        ("turbo_seti FindDoppler", "turbo_seti"),
        ("ours (search of one chunk / observations)", "ours"),
    ):
        if key in t:
            s = t[key]["per_coarse_channel_per_observation_s"]
            rows.append(
                [
                    method,
                    s["n"],
                    _f(s["median"], 2),
                    _f(s["mean"], 2),
                    f"{_f(s['min'], 2)}-{_f(s['max'], 2)}",
                    _f(s["first"], 2),
                ]
            )
    lines += _table(["method", "measurements", "median s", "mean s", "range s", "first s"], rows)
    lines.append("")
    if "ratio_turbo_seti_over_ours" in t:
        r = t["ratio_turbo_seti_over_ours"]
        lines.append(
            f"Ratio turbo_seti / ours: **{_f(r.get('median'), 2)}x** (medians), {_f(r.get('mean'), 2)}x (means); "
            "above 1, our scan is faster."
        )
        lines.append("")
    ours = t["ours"]
    whole = f"Whole runs: ours {ours['whole_run_seconds']:.1f} s (scan_catalog: search {ours['search_seconds']:.1f} s, "
    whole += f"plus outputs and plots; torch {ours['torch_threads']} thread(s), one cadence at a time"
    whole += ", --torch-threads 1 for one like turbo_seti)" if ours["torch_threads"] > 1 else ")"
    if "turbo_seti" in t:
        ts = t["turbo_seti"]
        whole += (
            f"; turbo_seti {ts['whole_run_seconds']:.1f} s (its process: FindDoppler "
            f"{ts['find_doppler_seconds']:.1f} s, find_events {ts['find_event_seconds']:.1f} s, single-threaded "
            f"numba; peak RSS {ts['peak_rss_mib']:.0f} MiB)"
        )
    lines += [
        whole + ". turbo_seti's time per file is its FindDoppler constructor and search in wall seconds (the first "
        "file includes numba's compilation); ours is each chunk's `seconds` in its done.json (reading, cleaning and "
        f"searching the {d['files'] // d['cadences']} observations, plus the cadence filter). Files were read "
        f"once beforehand ({report['page_cache_seconds']:.1f} s), so neither pays for the first read from disk. "
        "Load average (1, 5, 15 min) at the start, after turbo_seti and after our scan: "
        + ", ".join(_loads(report["load_average"][k]) for k in ("start", "after_turbo_seti", "after_scan"))
        + f"; above {report['machine']['cpus']}, other processes shared the "
        "CPUs and the seconds above are inflated and noisy (the two methods ran one after the other, so not "
        "necessarily under the same load).",
        "",
        "## Peak memory of scan.py",
        "",
    ]
    mem = report.get("memory") or []
    if mem:
        lines += _table(
            ["coarse channels per file", "fine channels each", "file MiB", "peak RSS MiB", "seconds"],
            [
                [
                    m["coarse_channels"],
                    f"{m['fine_channels']:,}",
                    f"{m['file_mib']:.0f}",
                    f"{m['peak_rss_mib']:.0f}",
                    f"{m['seconds']:.0f}",
                ]
                for m in mem
            ],
        )
        if len(mem) >= 2:
            lines += [
                "",
                f"Ratio {mem[-1]['coarse_channels']} / {mem[0]['coarse_channels']} coarse channels: "
                f"**{mem[-1]['peak_rss_mib'] / mem[0]['peak_rss_mib']:.2f}x**. One generated cadence each "
                "(same seed), scan.py as a subprocess with the benchmark's max drift, SNR and plot count; peak RSS "
                "from os.wait4 on that process.",
            ]
        lines += ["", "Commands: " + "; ".join(f"`{m['command']}`" for m in mem)]
    else:
        lines.append(f"Skipped: {report['skipped'].get('memory', 'not asked')}.")
    lines += ["", "## Candidate plots (our scan)", ""]
    for i, p in enumerate(report["plots"], start=1):
        lines += [
            f"{i}. cadence {p['cadence']}, rank {p['rank']} (score {p['score']:.1f}, level {p['level']}): {p['what']}. "
            f"Original: `{p['source']}`",
            "",
            f"   ![candidate {i}]({p['file']})",
            "",
        ]
    if not report["plots"]:
        lines += ["No candidate was plotted.", ""]
    lines += ["## Matching", "", *(f"- {line}" for line in report["notes"]), ""]
    lines += [
        "## Files",
        "",
        "results.json (every figure, settings, machine), results.csv (the same figures, one per row), curve.csv (our "
        "recall-vs-false curve), events.csv (every event of both methods with its match), needles.csv (each needle "
        "and whether each point found it). Scan folders, turbo_seti's .dat files and logs: "
        f"`{report['settings']['work']}`.",
        "",
    ]
    return "\n".join(lines)


def results_rows(report: dict) -> pd.DataFrame:
    """Every figure as one row: section, point/method, group, metric, value, with the command, machine and date."""
    rows = []
    for name, p in report["points"].items():
        for k in ("events", "false_events", "false_per_cadence", "rfi_events", "unmatched_events", "found", "recall"):
            rows.append(("points", name, "all", k, p[k]))
        rows.append(("duplicates", name, "all", "events_per_found_needle", p["events_per_found_needle"]))
        for g, v in p["groups"].items():
            rows.append(("recall_by_group", name, g, "recall", v["recall"]))
    for name, p in report["before_filter"].items():
        for k in ("events", "needle_events", "found", "recall", "rfi_events", "unmatched_events"):
            rows.append(("before_filter", name, "all", k, p[k]))
    if report.get("turbo_seti_noise_estimate"):
        noise = report["turbo_seti_noise_estimate"]
        rows.append(
            ("turbo_seti_noise", noise["file"], "first coarse channel", "clipped_std_over_noise", noise["ratio"])
        )
    if report.get("headline"):
        for k, v in report["headline"].items():
            rows.append(("headline", "ours vs turbo_seti level 3", "all", k, v))
    for method, values in report["timing"].items():
        if method == "ratio_turbo_seti_over_ours":
            for k, v in values.items():
                rows.append(("timing", "turbo_seti / ours", "per coarse channel per observation", f"ratio_{k}", v))
            continue
        for k, v in values.items():
            if isinstance(v, dict):
                rows += [("timing", method, "per coarse channel per observation", f"{s}_s", x) for s, x in v.items()]
            else:
                rows.append(("timing", method, "run", k, v))
    for m in report.get("memory") or []:
        rows.append(
            ("memory", "ours scan.py", f"{m['coarse_channels']} coarse channels", "peak_rss_mib", m["peak_rss_mib"])
        )
    table = pd.DataFrame(rows, columns=["section", "method", "group", "metric", "value"])
    table["command"] = report["command"]
    table["machine"] = report["machine"]["summary"]
    table["date"] = report["date"]
    return table


def check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    existing = [n for n in REPORT_FILES if (out / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out / existing[0]}: already exists; pass --overwrite to replace the report or choose --out"
        )


def work_parts(work: Path) -> list[Path]:
    return [work / name for name in ("scan", "model", "turboseti", "memory")]


def check_work(work: Path, overwrite: bool) -> None:
    """Refuse to reuse the benchmark's working folders without --overwrite (a scan there would resume, not rerun)."""
    existing = [p for p in work_parts(work) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: already exists; pass --overwrite to rerun there or choose --work")


def clear_work(work: Path) -> None:
    """Empty the benchmark's own working folders (never anything else in `work`)."""
    for p in work_parts(work):
        if p.exists():
            shutil.rmtree(p)
    work.mkdir(parents=True, exist_ok=True)


def write_report(
    out: Path,
    report: dict,
    curve: pd.DataFrame,
    events: pd.DataFrame,
    needles: pd.DataFrame,
    model_curve: pd.DataFrame | None = None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    writers: dict[str, Callable[[Path], None]] = {
        "results.json": lambda p: p.write_text(json.dumps(report, indent=1, default=_json_default)),
        "results.csv": lambda p: results_rows(report).to_csv(p, index=False),
        "curve.csv": lambda p: curve.to_csv(p, index=False),
        **({"curve_model.csv": lambda p: model_curve.to_csv(p, index=False)} if model_curve is not None else {}),
        "events.csv": lambda p: events.to_csv(p, index=False),
        "needles.csv": lambda p: needles.to_csv(p, index=False),
        "recall_vs_false.png": lambda p: plot_recall_vs_false(p, curve, report, model_curve),
        "recall_by_group.png": lambda p: plot_recall_by_group(p, report),
        "report.md": lambda p: p.write_text(markdown(report)),
    }
    for name, write in writers.items():
        write_atomically(out / name, write)


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def copy_plots(chosen: Sequence[dict], out: Path, truth: pd.DataFrame) -> list[dict]:
    for old in out.glob(f"{PLOT_PREFIX}*.png"):
        old.unlink()
    copied = []
    for i, c in enumerate(chosen, start=1):
        name = f"{PLOT_PREFIX}{i}_{c['cadence']}_rank{c['rank']:03d}.png"
        shutil.copyfile(c["png"], out / name)
        copied.append(
            {
                "file": name,
                "source": str(c["png"]),
                "cadence": c["cadence"],
                "rank": int(c["rank"]),
                "score": float(c["score"]),
                "level": int(c["level"]),
                "what": describe_match(c, truth),
            }
        )
    return copied


# ------------------------------------------------------------------- entry ---


NOTES = (
    "An event matches an injected signal when its frequency at the start of the observation it was measured in lies "
    "within max(20 channels, 0.5 x |drift| x observation length) of the signal's frequency there (truth.csv's "
    "f_mhz_obs<k>): 55.9 Hz for slow drifts, 584 Hz at 4 Hz/s with 292 s observations. |drift| is the larger of the "
    "signal's rate at the cadence's start (truth.csv's drift_hz_s) and the event's measured rate: a sine or quadratic "
    "path drifts at another rate in a later observation, and the straight line that best fits its curve there can "
    "start well away from the path's own start. It also matches when its straight track over that observation, from "
    "its frequency to its frequency + its measured drift x the observation's length, comes within 20 channels of the "
    "frequencies the signal's path covers there (truth.csv's f_mhz_min_obs<k> to f_mhz_max_obs<k>, in sets that "
    "have them) and sweeps as far as that span is wide (within 40 channels): the line fitted to a piece of a sine or "
    "quadratic needle runs along the needle even when it starts far from the path's start, and a line that merely "
    "crosses the path does not. Several needles in range: the nearest (the gap between the event's track "
    "and the path's span, 0 when they overlap, then the distance between the start frequencies). An event matching "
    "no needle is a false event; it is an RFI event when it matches an RFI line (zero-drift or drifting) by the "
    "same rules, unmatched otherwise. Broadband bursts have no frequency and are never matched.",
    "turbo_seti level 3: one event per Hit_ID, placed at its ON hit (the level-2 row named in the Hit_ID; its "
    "on_table_1 row when find_events kept it). Level 2: every returned ON hit is an event, so a needle seen in three "
    "ON observations counts three times. The observation is read from FileID, not from status: find_events numbers "
    "on_table_<k> over the ON files that have hits.",
    "Ours: the event's reference hit (its strongest ON hit, `obs` in events.csv) and its `Freq`, the frequency at the "
    "start of that observation; `freq_obs0` (the track carried from the reference hit to the first ON observation "
    "along a straight line) is checked as an alternative below, by the start rule alone.",
)


def model_report(scored: pd.DataFrame, modelled: dict, scan: dict, s: BenchSettings) -> dict:
    """The model's own figures: ROC AUC of its scores, needle events against all others (RFI and noise), and
    the time it adds to the scan per coarse channel."""
    from sklearn.metrics import roc_auc_score

    rate = snippet_rate([Path(f) for f in modelled["folders"]], s.checkpoints, s.torch_threads)
    is_needle = (scored["needle_row"] != NO_MATCH).to_numpy()
    auc = float(roc_auc_score(is_needle, scored["model_score"])) if 0 < is_needle.sum() < len(is_needle) else None
    chunks = sum(len(chunk_seconds(Path(f))) for f in scan["folders"])
    return {
        "checkpoints": [str(p) for p in s.checkpoints],
        "snr": s.model_snr or s.snr,
        "events": len(scored),
        "needle_events": int(is_needle.sum()),
        "windows": s.windows,
        "windows_kept": int((scored["level"] == WINDOW_LEVEL).sum()),
        "snippet_auc": auc,
        "seconds": modelled["seconds"],
        "scan_seconds": scan["seconds"],
        "seconds_per_coarse_channel": modelled["seconds"] / chunks if chunks else None,
        "scan_seconds_per_coarse_channel": scan["seconds"] / chunks if chunks else None,
        "added_share": modelled["seconds"] / scan["seconds"] - 1 if scan["seconds"] else None,
        **rate,
    }


def snippet_rate(
    folders: Sequence[Path], checkpoints: Sequence[Path], threads: int | None = None, most: int = 4096
) -> dict:
    """Snippets the model scores per second in this process with the scan's torch threads (its own timing, after
    one warm-up batch), on up to `most` of the snippets the scan kept."""
    import torch

    from src.engine.scan_model import SnippetScorer, open_scan_model
    from src.search.outputs import CHUNK_FOLDER

    parts, total = [], 0
    for path in (p for f in folders for p in sorted((f / CHUNK_FOLDER).glob("*.snippets.npy"))):
        if total >= most:
            break
        parts.append(np.load(path))
        total += len(parts[-1])
    snippets = np.concatenate(parts)[:most] if parts else np.zeros((0,))
    model = open_scan_model(checkpoints)
    scorer = SnippetScorer(model)
    if len(snippets) == 0:
        return {"snippets_timed": 0, "snippets_per_second": None}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        scorer(snippets[: model.batch_size])
        started = time.perf_counter()
        scorer(snippets)
        seconds = time.perf_counter() - started
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    return {"snippets_timed": len(snippets), "snippets_per_second": len(snippets) / seconds, "torch_threads": used}


def run_benchmark(s: BenchSettings) -> dict:
    """Generate (when asked), run both pipelines, match, measure memory, and write the report; returns it."""
    from src.search.cadence import open_cadence, read_catalog

    check_out_dir(s.out, s.overwrite)
    load_start = os.getloadavg()
    skipped = {}
    python = turbo_seti_python(s)
    reason = "--turbo-seti off" if s.turbo_seti == "off" else turbo_seti_unavailable(python)
    if reason and s.turbo_seti == "on":
        raise ConfigError(f"--turbo-seti on: {reason}")
    if reason:
        skipped["turbo_seti"] = reason
        if s.turbo_seti == "auto":
            log(f"turbo_seti skipped: {reason}")
    work = s.work_dir
    check_work(work, s.overwrite)
    ensure_data(
        s.data,
        s.generate,
        generator_command(s.data, s.n_cadences, s.coarse_channels, s.fine_channels, s.seed),
        "benchmark set",
    )
    sets = memory_sets(s) if s.memory else []
    clear_work(work)
    cadences = [open_cadence(files, None, name) for name, files in read_catalog(s.data / CATALOG)]
    truth = load_truth(s.data)
    data = data_summary(cadences, truth)
    log(
        f"benchmark: {data['cadences']} cadences x {data['coarse_channels_per_file']} coarse channels x "
        f"{data['fine_channels_per_coarse']:,} channels, {data['needles']} needles"
    )
    cache_seconds = warm_page_cache([h.path for c in cadences for h in c.headers])

    turbo = None
    if not reason:
        log(f"turbo_seti: FindDoppler on {data['files']} files with {python}")
        turbo = run_turbo_seti(python, cadences, work / "turboseti", s)
        log(f"turbo_seti: {turbo['process_seconds']:.1f} s")
    load_between = os.getloadavg()
    log("our scan: scan_catalog")
    scan = run_scan(cadences, work / "scan", s)
    folders = [Path(f) for f in scan["folders"]]
    log(f"our scan: {scan['seconds']:.1f} s")
    load_after_scan = os.getloadavg()
    modelled = None
    if s.checkpoints:
        log("our scan with the model: scan_with_model")
        modelled = run_scan(cadences, work / "model", s, with_model=True)
        log(f"our scan with the model: {modelled['seconds']:.1f} s")

    df_hz, obs_length = data["df_hz"], data["obs_length_s"]
    needles = truth[truth["kind"] == "needle"]
    n_cad = len(cadences)
    ours = match_events(scan_events(folders, cadences), truth, df_hz, obs_length)
    # freq_first_on_mhz is the track carried to the first ON observation while `obs` stays the reference hit's,
    # so the event's track is not in observation `obs`'s frame: the start rule alone, as this check always was
    ours_obs0 = match_events(scan_events(folders, cadences), truth, df_hz, obs_length, "freq_first_on_mhz", spans=False)
    ranked = ours[ours["level"] >= 2]
    curve = recall_curve(ranked, len(needles), n_cad)
    points: list[Point] = []
    headline = None
    all_events = [ours.assign(method="ours")]
    if turbo is not None:
        ts = {
            level: match_events(t, truth, df_hz, obs_length) for level, t in turbo_seti_events(turbo, cadences).items()
        }
        points += [
            Point(f"turbo_seti level {lv}", "turbo_seti", f"find_events filter level {lv}", ts[lv]) for lv in (3, 2)
        ]
        for lv in (3, 2):
            budget = int((ts[lv]["needle_row"] == NO_MATCH).sum())
            threshold = threshold_at(curve, budget)
            points.append(
                Point(
                    f"ours @ turbo_seti L{lv} false count",
                    "ours",
                    f"level >= 2, score >= {threshold:.2f} (at most {budget} false events)",
                    ranked[ranked["score"] >= threshold],
                )
            )
            all_events.append(ts[lv].assign(method=f"turbo_seti level {lv}"))
    points += [
        Point("ours level 3", "ours", "events of level 3 (every ON, no OFF)", ours[ours["level"] == 3]),
        Point("ours level >= 2 (all)", "ours", "every event of level >= 2", ranked),
    ]
    model_curve, model_summary = None, None
    if modelled is not None:
        model_folders = [Path(f) for f in modelled["folders"]]
        scored = match_events(scan_events(model_folders, cadences), truth, df_hz, obs_length)
        model_curve = recall_curve(scored.assign(score=scored["model_score"]), len(needles), n_cad)
        budgets = {"our level 3": int((ours[ours["level"] == 3]["needle_row"] == NO_MATCH).sum())}
        if turbo is not None:
            budgets["turbo_seti L3"] = int((ts[3]["needle_row"] == NO_MATCH).sum())
        for label, budget in budgets.items():
            cut = threshold_at(model_curve, budget)
            points.append(
                Point(
                    f"ours + model @ {label} false count",
                    "ours + model",
                    f"every event, model score >= {cut:.3f} (at most {budget} false events)",
                    scored[scored["model_score"] >= cut],
                )
            )
            either, a, b = either_selection(scored, budget)
            points.append(
                Point(
                    f"ours + model, or the filter @ {label} false count",
                    "ours + model",
                    f"level >= 2 and score >= {a:.2f}, or model score >= {b:.3f} (at most {budget} false events)",
                    either,
                )
            )
        all_events.append(scored.assign(method="ours + model"))
        model_summary = model_report(scored, modelled, scan, s)
    evaluated = evaluate_points(points, needles, n_cad)
    if turbo is not None:
        l3 = evaluated["turbo_seti level 3"]
        headline = {
            "false_events": l3["false_events"],
            "false_per_cadence": l3["false_per_cadence"],
            "threshold": threshold_at(curve, l3["false_events"]),
            "ours": evaluated["ours @ turbo_seti L3 false count"]["recall"],
            "turbo_seti": l3["recall"],
        }
        if modelled is not None:
            headline["ours_with_model"] = evaluated["ours + model @ turbo_seti L3 false count"]["recall"]
            either = evaluated["ours + model, or the filter @ turbo_seti L3 false count"]
            headline["ours_with_model_or_filter"] = either["recall"]
    check = {
        name: point_metrics(m, len(needles), n_cad)["recall"]
        for name, m in (
            ("level 3", ours_obs0[ours_obs0["level"] == 3]),
            ("level >= 2", ours_obs0[ours_obs0["level"] >= 2]),
        )
    }
    before_filter = {"ours: events of every level": point_metrics(ours, len(needles), n_cad)}
    if turbo is not None:
        hits = match_events(turbo_seti_on_hits(turbo, cadences), truth, df_hz, obs_length)
        before_filter["turbo_seti: FindDoppler hits of the ON files"] = point_metrics(hits, len(needles), n_cad)
    moved = ours[(ours["level"] >= 2)]
    not_first = int((moved["obs"] != cadences[0].on.index(True)).sum())
    notes = [
        *NOTES,
        f"Check: matched at `freq_obs0` instead, our recall would be {_f(check['level 3'])} (level 3) and "
        f"{_f(check['level >= 2'])} (level >= 2), against {_f(evaluated['ours level 3']['recall'])} and "
        f"{_f(evaluated['ours level >= 2 (all)']['recall'])} above; {not_first} of our {len(moved)} events of level "
        ">= 2 have their reference hit in a later ON observation.",
    ]

    memory = []
    if s.memory:
        memory = memory_runs(s, sets, work / "memory")
    else:
        skipped["memory"] = "--skip-memory"

    report = {
        "command": s.command,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "settings": {
            k: _json_default(v) if isinstance(v, Path | tuple) else v for k, v in dataclasses.asdict(s).items()
        }
        | {"work": str(work)},
        "data": data,
        "tolerance": {"channels": TOLERANCE_CHANNELS, "drift_share_of_obs_length": TOLERANCE_DRIFT_SHARE},
        "headline": headline,
        "points": evaluated,
        "timing": timing(turbo, scan, folders, cadences),
        "memory": memory,
        "page_cache_seconds": cache_seconds,
        "load_average": {
            "start": list(load_start),
            "after_turbo_seti": list(load_between),
            "after_scan": list(load_after_scan),
            "end": list(os.getloadavg()),
        },
        "turbo_seti": None
        if turbo is None
        else {k: turbo[k] for k in ("turbo_seti", "numpy", "pandas", "python")} | {"interpreter": str(python)},
        "scan_settings": scan["settings"],
        "before_filter": before_filter,
        "model": model_summary,
        "turbo_seti_noise_estimate": turbo_seti_noise_estimate(cadences[0].headers[0]) if turbo is not None else None,
        "skipped": skipped,
        "notes": notes,
        "plots": [],
    }
    s.out.mkdir(parents=True, exist_ok=True)
    report["plots"] = copy_plots(choose_plots(ours, folders, truth), s.out, truth)
    events_table = pd.concat(all_events, ignore_index=True)
    needle_table = needles.copy()
    for p in points:
        needle_table[f"found: {p.name}"] = needle_table.index.isin(list(p.events["needle_row"]))
    write_report(s.out, report, curve, events_table, needle_table, model_curve)
    log(f"wrote {s.out / 'report.md'}")
    return report
