"""Datasets and loaders: cadences of one split read as whole float16 batches, from the file tree or a packed cache.

The loaders deliver raw observations only; the batch transform (src/transforms/images.py) runs on the
accelerator. Every source delivers the same float16 values, so a run's results do not depend on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info

from src.core.cadence import OBSERVATION_SHAPE, loaded_observations
from src.core.config import Config
from src.core.errors import DataError
from src.data.kaggle import CadenceError, cadence_path, load_cadence, to_float16
from src.data.packed import find_packed

PACKED_READ_THREADS = 4  # at most; positioned reads and numpy's copies release the GIL
PACKED_ACCESS = ("map", "read")  # how a packed cache is read: memory map (training) or positioned reads (evaluation)


def collate_batch(samples):
    """A dataset's `__getitems__` already returns a whole batch; anything else is collated as usual."""
    return samples if isinstance(samples, dict) else default_collate(samples)


def batch_tensor(shape: Sequence[int]) -> torch.Tensor:
    """An empty float16 batch. In a loader worker it is made in shared memory (as default_collate does), so
    handing the batch to the training process copies nothing."""
    if get_worker_info() is None:
        return torch.empty(tuple(shape), dtype=torch.float16)
    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)) * 2)
    return torch.tensor([], dtype=torch.float16).set_(storage, 0, tuple(shape))


def target_array(targets: Sequence[float] | None, n: int) -> np.ndarray:
    """Targets as float32; -1 for every sample when they are unknown (test)."""
    return np.full(n, -1.0, np.float32) if targets is None else np.asarray(targets, np.float32)


class BatchReadDataset(Dataset):
    """A dataset that reads whole batches (`__getitems__`); one sample is a batch of one."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


class CadenceDataset(BatchReadDataset):
    """Cadences of one split read from the file tree: each sample's view observations as float16
    (n_obs, rows, channels), `observation_shape` (Kaggle's 273 x 256 by default; a file of another shape is a
    CadenceError); `target` is -1 when unknown (test). Batches are read whole into one array."""

    source = "file tree"

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        ids: Sequence[str],
        targets: Sequence[float] | None,
        observations: Sequence[int],
        observation_shape: Sequence[int] = OBSERVATION_SHAPE,
    ) -> None:
        self.paths = [cadence_path(data_dir, split, i) for i in ids]
        self.targets = target_array(targets, len(ids))
        self.observations = list(observations)
        self.observation_shape = tuple(observation_shape)

    def __len__(self) -> int:
        return len(self.paths)

    def read_into(self, out: np.ndarray, index: int) -> None:
        path = self.paths[index]
        out[...] = to_float16(load_cadence(path, self.observation_shape)[self.observations], path)

    def read_batch_into(self, array: np.ndarray, indices: Sequence[int]) -> None:
        for row, index in enumerate(indices):
            self.read_into(array[row], index)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        observations = batch_tensor((len(indices), len(self.observations), *self.observation_shape))
        self.read_batch_into(observations.numpy(), indices)
        return {
            "observations": observations,
            "target": torch.from_numpy(self.targets[list(indices)]),
            "index": torch.as_tensor(indices, dtype=torch.int64),
        }


class PackedCadenceDataset(CadenceDataset):
    """The same samples read from a packed cache (`python -m src.pack`): each run of observations copied
    straight into the batch array (no parsing, no conversion), rows in parallel threads.

    Meant to be read in the training process itself (the default, see `loader_workers`): handing a batch over
    from a worker process costs more than reading it. Two ways in (`access`):
    - "map" (training, which reads the same cadences every epoch): the shards are memory-mapped, so once a row's
      pages are mapped a read is a plain memory copy, about twice the rate of a system call per row. The mapped
      pages are page cache the kernel can drop at any time, but they count in the process's RSS.
    - "read" (evaluation, one streaming pass): one positioned read per run, which maps nothing, so the process's
      memory stays flat however much of the cache streams through."""

    def __init__(
        self,
        packed,
        ids: Sequence[str],
        targets: Sequence[float] | None,
        observations: Sequence[int],
        access: str = "read",
        observation_shape: Sequence[int] = OBSERVATION_SHAPE,
    ) -> None:
        if access not in PACKED_ACCESS:
            raise ValueError(f"access must be one of {PACKED_ACCESS}, got {access!r}")
        (rows, channels), (want_rows, want_channels) = packed.observation_shape, observation_shape
        if (rows, channels) != (want_rows, want_channels):
            raise DataError(
                f"{packed.path}: holds observations of {rows} rows x {channels} channels, expected {want_rows} x "
                f"{want_channels}; repack with --observation-shape {want_rows} {want_channels}"
            )
        self.observation_shape = packed.observation_shape
        self.access = access
        self.packed = packed
        self.source = f"packed cache {packed.path}"
        self.targets = target_array(targets, len(ids))
        self.observations = list(observations)
        row_of = {sample_id: row for row, sample_id in enumerate(packed.ids)}
        self.rows = np.array([row_of[i] for i in ids], dtype=np.int64)
        positions = [packed.observations.index(o) for o in self.observations]
        self.observation_bytes = packed.row_bytes // len(packed.observations)
        self.runs = contiguous_runs(positions)  # (first position in the cache row, count) to read
        self._files: list[int] = []
        self._maps: list[np.ndarray] = []
        self._threads: ThreadPoolExecutor | None = None
        self._n_threads = 1
        self._pid = -1

    def __len__(self) -> int:
        return len(self.rows)

    def _open(self) -> None:
        """Shard files and reader threads, once per process (a forked loader worker gets its own)."""
        if self._pid != os.getpid():
            shards = range(self.packed.n_shards)
            if self.access == "map":
                self._maps = [self.packed.shard_map(shard) for shard in shards]
            else:
                self._files = [os.open(self.packed.shard_path(shard), os.O_RDONLY) for shard in shards]
            self._n_threads = min(PACKED_READ_THREADS, len(os.sched_getaffinity(0)))
            self._threads = ThreadPoolExecutor(self._n_threads)
            self._pid = os.getpid()

    def read_into(self, out: np.ndarray, index: int) -> None:
        self._open()
        shard, row = divmod(int(self.rows[index]), self.packed.shard_size)
        if self.access == "map":
            done = 0
            for first, count in self.runs:
                out[done : done + count] = self._maps[shard][row, first : first + count]
                done += count
            return
        base = self.packed.offsets[shard] + row * self.packed.row_bytes
        out_bytes = out.reshape(-1).view(np.uint8)
        done = 0
        for first, count in self.runs:
            size = count * self.observation_bytes
            read = os.preadv(self._files[shard], [out_bytes[done : done + size]], base + first * self.observation_bytes)
            if read != size:
                raise CadenceError(
                    f"{self.packed.shard_path(shard)}: short read at row {row}; the cache is damaged, repack"
                )
            done += size

    def read_batch_into(self, array: np.ndarray, indices: Sequence[int]) -> None:
        """One task per thread over a contiguous share of the batch's rows: a task per row costs more in
        thread hand-overs than the read itself for the ON-only rows (0.4 MB)."""
        self._open()
        shares = np.array_split(np.arange(len(indices)), self._n_threads)

        def read_share(rows: np.ndarray) -> None:
            for row in rows:
                self.read_into(array[row], indices[row])

        list(self._threads.map(read_share, [rows for rows in shares if len(rows)]))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": [], "_maps": [], "_threads": None, "_pid": -1}

    def __del__(self) -> None:
        if getattr(self, "_pid", -1) == os.getpid():
            for descriptor in self._files:
                os.close(descriptor)
            self._threads.shutdown(wait=False)


class CombinedCadences(BatchReadDataset):
    """Datasets read as one, e.g. a fold's training cadences and the pseudo-labelled test cadences; all parts
    deliver the same observations of the same shape (`observation_shape`, taken from them)."""

    def __init__(self, parts: Sequence[CadenceDataset]) -> None:
        self.parts = list(parts)
        shapes = {(tuple(p.observations), p.observation_shape) for p in self.parts}
        if len(shapes) != 1:
            raise ValueError(f"combined datasets must deliver the same observations and shape, got {sorted(shapes)}")
        self.observation_shape = self.parts[0].observation_shape
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])
        self.targets = np.concatenate([p.targets for p in self.parts])
        self.source = " + ".join(p.source for p in self.parts)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        indices = np.asarray(indices, dtype=np.int64)
        part_of = np.searchsorted(self.starts, indices, side="right") - 1
        shape = (len(self.parts[0].observations), *self.observation_shape)
        observations = batch_tensor((len(indices), *shape))
        for number, part in enumerate(self.parts):
            rows = np.flatnonzero(part_of == number)
            if len(rows):
                read = np.empty((len(rows), *shape), np.float16)
                part.read_batch_into(read, (indices[rows] - self.starts[number]).tolist())
                observations.numpy()[rows] = read
        return {
            "observations": observations,
            "target": torch.from_numpy(self.targets[indices]),
            "index": torch.from_numpy(indices),
        }


def contiguous_runs(positions: Sequence[int]) -> list[tuple[int, int]]:
    """[0, 1, 2, 4] -> [(0, 3), (4, 1)]: observations that can be read in one go."""
    runs: list[tuple[int, int]] = []
    for position in positions:
        if runs and runs[-1][0] + runs[-1][1] == position:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((position, 1))
    return runs


def run_cadences(
    cfg: Config,
    split: str,
    ids: Sequence[str],
    targets: Sequence[float] | None,
    access: str = "read",
    data_dir: str | Path | None = None,
) -> tuple[CadenceDataset, str]:
    """`open_cadences` with a run's settings (its data, view, cache, background cleaning and geometry); the data
    from `data_dir` when given."""
    return open_cadences(
        data_dir or cfg.data_dir,
        split,
        ids,
        targets,
        cfg.view,
        cfg.cache_dir,
        cfg.background,
        access=access,
        observation_shape=cfg.observation_shape,
    )


def open_cadences(
    data_dir: str | Path,
    split: str,
    ids: Sequence[str],
    targets: Sequence[float] | None,
    view: str,
    cache_dir: str | Path | None = None,
    background: str = "none",
    access: str = "read",
    observation_shape: Sequence[int] = OBSERVATION_SHAPE,
) -> tuple[CadenceDataset, str]:
    """The dataset for `ids` delivering the observations the view (and background cleaning) reads: see
    `open_observations`."""
    observations = loaded_observations(view, background)
    return open_observations(data_dir, split, ids, targets, observations, cache_dir, access, observation_shape)


def open_observations(
    data_dir: str | Path,
    split: str,
    ids: Sequence[str],
    targets: Sequence[float] | None,
    observations: Sequence[int],
    cache_dir: str | Path | None = None,
    access: str = "read",
    observation_shape: Sequence[int] = OBSERVATION_SHAPE,
) -> tuple[CadenceDataset, str]:
    """The dataset for `ids` delivering `observations` (e.g. all that several views read, for one pass feeding
    them all): from the packed cache under `cache_dir` when one holds them with these observations of
    `observation_shape` (with `access`, see PackedCadenceDataset), else from the file tree, whose files must
    have that shape. All deliver the same float16 values. Returns it and a line saying which source it reads
    and, on a fallback, why."""
    observations = tuple(observations)
    observation_shape = tuple(observation_shape)
    if cache_dir is not None:
        packed, reason = find_packed(cache_dir, split, ids, observations, observation_shape)
        if packed is not None:
            dataset = PackedCadenceDataset(packed, ids, targets, observations, access, observation_shape)
            return dataset, f"{split}: reading the packed cache {reason}"
        note = f"{split}: reading the file tree under {data_dir} ({reason})"
    else:
        note = f"{split}: reading the file tree under {data_dir}"
    return CadenceDataset(data_dir, split, ids, targets, observations, observation_shape), note


def loader_workers(num_workers: int | None, num_processes: int = 1, packed: bool = False) -> int:
    """Loader worker processes: as configured, or (None) none for a packed cache (read by threads of the
    training process), else the CPUs this process may use, shared among the training processes on this
    machine, minus one for the process feeding the accelerator; 1 to 8."""
    if num_workers is not None:
        return num_workers
    if packed:
        return 0
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", num_processes))
    return max(1, min(8, len(os.sched_getaffinity(0)) // max(local_processes, 1) - 1))


def loader_options(num_workers: int, prefetch_factor: int) -> dict:
    """DataLoader keywords shared by training and evaluation: whole-batch reads, pinned memory on a GPU."""
    options = {"num_workers": num_workers, "collate_fn": collate_batch, "pin_memory": torch.cuda.is_available()}
    if num_workers > 0:
        options["prefetch_factor"] = prefetch_factor
    return options


def make_eval_loader(dataset: Dataset, batch_size: int, num_workers: int, prefetch_factor: int = 2) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **loader_options(num_workers, prefetch_factor))
