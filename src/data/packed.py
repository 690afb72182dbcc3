"""A packed cadence cache: the observations a recipe reads, as float16 rows of sharded .npy files.

Written by `python -m src.pack` (src/pack.py); read by src/data/datasets.py when a run names a `cache_dir`.

Layout of one packed split, `<out>/<split>-<on|all>/`:
    cache.json         what it holds: split, observations, sample shape, shard size, source, complete or not
    index.csv          the ids, in row order (row r lives in shard r // shard_size)
    shard_00000.npy    (rows, n_observations, 273, 256) float16, a plain .npy (np.load(mmap_mode="r") opens it);
                       other data: (rows, n_observations, *observation_shape), as packed with --observation-shape

Every cadence is read and checked (shape, dtype, finite values, and within float16's range) as it is packed.
Shards are filled in parallel worker processes, each under a hidden temporary name renamed into place when
complete, so an interrupted pack continues where it stopped when the same command is run again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from src.core.cadence import OBSERVATION_SHAPE, observation_shape_problem, view_observations
from src.core.cli import progress_bar
from src.core.errors import DataError
from src.core.files import write_csv_atomically, write_text_atomically
from src.data.kaggle import (
    SPLIT_TABLES,
    cadence_path,
    load_cadence,
    read_split_table,
    require_cadence_files,
    to_float16,
)

CACHE_FORMAT = "seti-bl-packed-v1"
CACHE_META = "cache.json"
CACHE_INDEX = "index.csv"
PACKED_DTYPE = np.dtype("float16")
CHUNK_ROWS = 32  # cadences per worker task: small enough for a live progress bar, large enough to amortise


def shard_name(shard: int) -> str:
    return f"shard_{shard:05d}.npy"


def allocate(path: Path) -> None:
    """Give a new (sparse) shard file its disk blocks now: writing through a memory map into a sparse file on a
    full disk kills the writer with SIGBUS, while allocating first fails with an ordinary ENOSPC OSError."""
    with open(path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)


def partial_shard_name(shard: int) -> str:
    return f".{shard_name(shard)}.tmp"


def cache_folder_name(split: str, observations: Sequence[int]) -> str:
    key = "on" if tuple(observations) == view_observations("on") else "all"
    return f"{split}-{key}"


@dataclass(frozen=True)
class PackedSplit:
    """An opened cache folder: where each id's row is, and the shard files holding the rows."""

    path: Path
    split: str
    observations: tuple[int, ...]
    shard_size: int
    ids: tuple[str, ...]
    offsets: tuple[int, ...] = ()  # byte offset of row 0 in each shard file, read once by open_packed
    observation_shape: tuple[int, int] = OBSERVATION_SHAPE  # time rows, frequency channels of one observation

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (len(self.observations), *self.observation_shape)

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.sample_shape)) * PACKED_DTYPE.itemsize

    def shard_path(self, shard: int) -> Path:
        return self.path / shard_name(shard)

    @property
    def n_shards(self) -> int:
        return -(-len(self.ids) // self.shard_size)

    def rows_in_shard(self, shard: int) -> int:
        return min(self.shard_size, len(self.ids) - shard * self.shard_size)

    def data_offset(self, shard: int) -> int:
        """Byte offset of row 0 in a shard file (after the .npy header)."""
        try:
            shard_array = np.load(self.shard_path(shard), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"{self.shard_path(shard)}: not a readable shard ({err}); repack") from None
        shape, dtype, offset = shard_array.shape, shard_array.dtype, shard_array.offset
        del shard_array
        expected = (self.rows_in_shard(shard), *self.sample_shape)
        if shape != expected or dtype != PACKED_DTYPE:
            raise DataError(
                f"{self.shard_path(shard)}: holds {shape} {dtype}, expected {expected} {PACKED_DTYPE}; repack"
            )
        return offset

    def shard_map(self, shard: int) -> np.memmap:
        """A read-only memory map of a shard's rows, laid out as `open_packed` checked it (no header parsed again)."""
        if not self.offsets:
            raise ValueError(f"{self.path}: open the cache with open_packed before mapping its shards")
        return np.memmap(
            self.shard_path(shard),
            dtype=PACKED_DTYPE,
            mode="r",
            offset=self.offsets[shard],
            shape=(self.rows_in_shard(shard), *self.sample_shape),
        )


def read_meta(folder: Path) -> dict:
    path = folder / CACHE_META
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable cache description ({err})") from None
    if meta.get("format") != CACHE_FORMAT:
        raise DataError(f"{path}: not a cache written by `python -m src.pack` (no {CACHE_FORMAT})")
    return meta


def open_packed(folder: str | Path) -> PackedSplit:
    """A complete cache folder, checked down to every shard file's size; DataError says what is wrong."""
    folder = Path(folder)
    meta = read_meta(folder)
    if not meta.get("complete"):
        raise DataError(
            f"{folder}: packing was interrupted; run the same `python -m src.pack` command again to finish it"
        )
    index = pd.read_csv(folder / CACHE_INDEX, dtype={"id": str})
    observations = tuple(meta["observations"])
    sample_shape = tuple(meta.get("sample_shape", (len(observations), *OBSERVATION_SHAPE)))
    if len(sample_shape) != 3 or sample_shape[0] != len(observations):
        raise DataError(f"{folder / CACHE_META}: sample_shape {list(sample_shape)} does not fit {list(observations)}")
    packed = PackedSplit(
        folder,
        meta["split"],
        observations,
        int(meta["shard_size"]),
        tuple(index["id"]),
        observation_shape=tuple(int(n) for n in sample_shape[1:]),
    )
    if len(packed.ids) != meta["n_cadences"]:
        raise DataError(f"{folder / CACHE_INDEX}: {len(packed.ids)} ids, {CACHE_META} says {meta['n_cadences']}")
    offsets = []
    for shard in range(packed.n_shards):
        path = packed.shard_path(shard)
        if not path.is_file():
            raise DataError(f"{path}: shard missing from the cache; repack")
        offsets.append(packed.data_offset(shard))
        if path.stat().st_size != offsets[-1] + packed.rows_in_shard(shard) * packed.row_bytes:
            raise DataError(f"{path}: truncated or padded shard ({path.stat().st_size} bytes); repack")
    return dataclasses.replace(packed, offsets=tuple(offsets))


def find_packed(
    cache_dir: str | Path,
    split: str,
    ids: Sequence[str],
    observations: Sequence[int],
    observation_shape: Sequence[int] = OBSERVATION_SHAPE,
) -> tuple[PackedSplit | None, str]:
    """The cache under `cache_dir` that holds `ids` of `split` with at least `observations`, each of
    `observation_shape` (rows, channels), or None and why not."""
    observation_shape = tuple(observation_shape)
    names = (cache_folder_name(split, observations), cache_folder_name(split, view_observations("all")))
    other_shape = None  # a cache of the right observations, but of another shape
    for name in dict.fromkeys(names):  # the view's own cache first, then one of all six (once, if that is the same)
        folder = Path(cache_dir) / name
        if not (folder / CACHE_META).is_file():
            continue
        packed = open_packed(folder)
        if not set(observations) <= set(packed.observations):
            continue
        if packed.observation_shape != observation_shape:
            other_shape = other_shape or (
                f"{folder} holds observations of {packed.observation_shape[0]} rows x "
                f"{packed.observation_shape[1]} channels, the run's observation_shape is {observation_shape[0]} x "
                f"{observation_shape[1]}; repack it with --observation-shape {observation_shape[0]} "
                f"{observation_shape[1]}"
            )
            continue
        missing = set(ids) - set(packed.ids)
        if missing:
            return None, f"{folder} lacks {len(missing)} of the {len(ids)} ids (e.g. {sorted(missing)[0]}); repack it"
        return packed, f"{folder}"
    return None, other_shape or f"no {split} cache with observations {list(observations)} under {cache_dir}"


def split_ids(data_dir: Path, split: str) -> list[str]:
    if split not in SPLIT_TABLES:
        raise DataError(f"--split: {split!r}; packable splits: {', '.join(SPLIT_TABLES)}")
    ids = read_split_table(data_dir, split)["id"].tolist()
    require_cadence_files(data_dir, split, ids, data_dir / SPLIT_TABLES[split])
    return ids


def fill_rows(
    shard_file: str,
    first_row: int,
    paths: Sequence[str],
    observations: Sequence[int],
    observation_shape: Sequence[int] = OBSERVATION_SHAPE,
) -> int:
    """Worker task: write the cadences at `paths` (each of `observation_shape`) into rows first_row... of an
    open shard file."""
    shard = np.load(shard_file, mmap_mode="r+")
    for row, path in enumerate(paths, start=first_row):
        shard[row] = to_float16(load_cadence(path, observation_shape)[list(observations)], Path(path))
    shard.flush()
    del shard
    return len(paths)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def pack_split(
    data_dir: str | Path,
    split: str,
    out_dir: str | Path,
    view: str = "on",
    shard_size: int = 1024,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    observation_shape: Sequence[int] = OBSERVATION_SHAPE,
) -> Path:
    """Pack one split of cadences whose observations are `observation_shape` (rows, channels; Kaggle's by
    default; a file of another shape stops the pack); continues an interrupted pack of the same ids and shape;
    returns the cache folder."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    if shard_size < 1:
        raise DataError(f"--shard-size: must be >= 1, got {shard_size}")
    observation_shape = tuple(int(n) for n in observation_shape)
    problem = observation_shape_problem(observation_shape)
    if problem:
        raise DataError(f"--observation-shape: {problem}")
    observations = view_observations(view)
    ids = split_ids(data_dir, split)
    folder = Path(out_dir) / cache_folder_name(split, observations)
    meta = {
        "format": CACHE_FORMAT,
        "split": split,
        "observations": list(observations),
        "sample_shape": [len(observations), *observation_shape],
        "dtype": PACKED_DTYPE.name,
        "shard_size": shard_size,
        "n_cadences": len(ids),
        "source": str(data_dir.resolve()),
        "complete": False,
    }
    start_or_continue(folder, meta, ids, overwrite)
    packed = PackedSplit(folder, split, observations, shard_size, tuple(ids), observation_shape=observation_shape)
    todo = [s for s in range(packed.n_shards) if not packed.shard_path(s).is_file()]
    for shard in todo:  # a partial shard of an interrupted pack is simply filled again
        np.lib.format.open_memmap(
            folder / partial_shard_name(shard),
            mode="w+",
            dtype=PACKED_DTYPE,
            shape=(packed.rows_in_shard(shard), *packed.sample_shape),
        ).flush()
        allocate(folder / partial_shard_name(shard))
    tasks = []  # (shard, first row in it, the cadence files for rows first...)
    for shard in todo:
        rows = packed.rows_in_shard(shard)
        for first in range(0, rows, CHUNK_ROWS):
            chunk = ids[shard * shard_size + first : shard * shard_size + min(first + CHUNK_ROWS, rows)]
            tasks.append((shard, first, [str(cadence_path(data_dir, split, i)) for i in chunk]))
    remaining = {shard: packed.rows_in_shard(shard) for shard in todo}
    done = len(ids) - sum(remaining.values())
    bar = progress_bar(total=len(ids), initial=done, desc=f"packing {split} -> {folder}", unit="cadence", show=progress)
    with ProcessPoolExecutor(max_workers=workers or default_workers()) as pool:
        futures = {
            pool.submit(
                fill_rows, str(folder / partial_shard_name(shard)), first, paths, observations, observation_shape
            ): shard
            for shard, first, paths in tasks
        }
        try:
            for future in as_completed(futures):
                shard = futures[future]
                count = future.result()  # a bad cadence stops the pack here, naming its file
                bar.update(count)
                remaining[shard] -= count
                if remaining[shard] == 0:
                    os.replace(folder / partial_shard_name(shard), packed.shard_path(shard))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # finished shards stay; the same command continues from them
            raise
    bar.close()
    write_text_atomically(folder / CACHE_META, json.dumps({**meta, "complete": True}, indent=2))
    open_packed(folder)  # the finished cache reads back with the right sizes
    return folder


def start_or_continue(folder: Path, meta: dict, ids: Sequence[str], overwrite: bool) -> None:
    """Create the cache folder, or keep an earlier (interrupted or complete) pack of exactly the same ids."""
    if (folder / CACHE_META).is_file() and not overwrite:
        earlier = read_meta(folder)
        same = {k: v for k, v in earlier.items() if k not in ("complete", "source")} == {
            k: v for k, v in meta.items() if k not in ("complete", "source")
        }
        if same and (folder / CACHE_INDEX).is_file():
            packed_ids = pd.read_csv(folder / CACHE_INDEX, dtype={"id": str})["id"].tolist()
            if packed_ids == list(ids):
                if earlier.get("complete"):
                    write_text_atomically(folder / CACHE_META, json.dumps({**meta, "complete": False}, indent=2))
                return
        raise DataError(f"{folder}: holds a cache of other cadences or settings; pass --overwrite to replace it")
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise DataError(f"{folder}: exists and is not a cache; choose another --out or pass --overwrite")
        for path in folder.iterdir():
            path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / CACHE_META, json.dumps(meta, indent=2))
    write_csv_atomically(pd.DataFrame({"id": list(ids)}), folder / CACHE_INDEX)
