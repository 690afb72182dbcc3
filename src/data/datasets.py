"""Reading the Kaggle layout and turning a cadence into the image a model sees.

Layout (the competition's, also written by `python -m src.synth`):
    <data_dir>/train_labels.csv          id,target
    <data_dir>/sample_submission.csv     id,target
    <data_dir>/{train,test}/{id[0]}/{id}.npy   float16 (6, 273, 256): ABACAD observations x time x frequency
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedKFold
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info

from src.core.errors import DataError

if TYPE_CHECKING:
    from src.core.config import Config

CADENCE_SHAPE = (6, 273, 256)  # observations, time rows, frequency channels
ON_OBSERVATIONS = (0, 2, 4)  # cadence order ABACAD: the target star is observed 1st, 3rd and 5th
TRAIN_LABELS = "train_labels.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
TEST_LABELS = "test_labels.csv"  # truth for the test part; only synthetic data has it
CADENCE_DTYPES = ("float16", "float32", "float64")  # Kaggle's files are float16; wider floats are accepted
PACKED_READ_THREADS = 4  # at most; positioned reads and numpy's copies release the GIL
NORMALIZE_CHUNK_BYTES = 4 << 20  # float32 groups standardised together on a CPU: a working set that stays in cache
PACKED_ACCESS = ("map", "read")  # how a packed cache is read: memory map (training) or positioned reads (evaluation)
CADENCE_PROBLEMS = ("missing", "unreadable", "shape", "dtype", "non-finite")  # kinds of CadenceError
MISSING_EXAMPLES = 3  # ids quoted in a "files missing" message


class CadenceError(DataError):
    """One cadence file that cannot be used; `kind` (one of CADENCE_PROBLEMS) groups such files in summaries.

    Built from the message alone as well, because DataLoader workers re-raise exceptions that way."""

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind


def cadence_path(data_dir: str | Path, split: str, sample_id: str) -> Path:
    return Path(data_dir) / split / sample_id[0] / f"{sample_id}.npy"


def read_id_table(path: str | Path, need_binary_target: bool = True) -> pd.DataFrame:
    """Read an `id,target` CSV (labels or sample submission) and check what the pipeline relies on."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        table = pd.read_csv(path, dtype={"id": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: not a readable CSV ({err})") from None
    missing = {"id", "target"} - set(table.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected id,target")
    if table.empty:
        raise DataError(f"{path}: has no rows")
    duplicated = table["id"][table["id"].duplicated()]
    if len(duplicated):
        raise DataError(f"{path}: {len(duplicated)} duplicate id(s), e.g. {duplicated.iloc[0]}")
    if need_binary_target and not table["target"].isin([0, 1]).all():
        bad = table.loc[~table["target"].isin([0, 1]), "target"].tolist()  # Python values: 2, not np.int64(2)
        raise DataError(f"{path}: target must be 0 or 1, found {bad[0]!r} in {len(bad)} row(s)")
    return table[["id", "target"]].reset_index(drop=True)


def read_train_labels(data_dir: str | Path) -> pd.DataFrame:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    labels = read_id_table(data_dir / TRAIN_LABELS)
    labels["target"] = labels["target"].astype(int)
    return labels


def read_sample_submission(data_dir: str | Path) -> pd.DataFrame:
    return read_id_table(Path(data_dir) / SAMPLE_SUBMISSION, need_binary_target=False)


def read_test_labels(data_dir: str | Path) -> Optional[pd.DataFrame]:
    """Truth for the test split when the data is synthetic; None for the real competition data."""
    path = Path(data_dir) / TEST_LABELS
    return read_id_table(path) if path.is_file() else None


def load_cadence(path: str | Path) -> np.ndarray:
    """A (6, 273, 256) float cadence with only finite values, or a CadenceError naming the file and the problem."""
    path = Path(path)
    try:
        cadence = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CadenceError(f"{path}: cadence file not found", "missing") from None
    except ValueError as err:
        raise CadenceError(f"{path}: not a readable .npy file ({load_problem(path, err)})") from None
    except (OSError, EOFError) as err:
        raise CadenceError(f"{path}: not a readable .npy file ({err})") from None
    if not isinstance(cadence, np.ndarray):  # an .npz archive under a .npy name
        cadence.close()
        raise CadenceError(f"{path}: holds an .npz archive, expected a single array")
    if cadence.shape != CADENCE_SHAPE:
        raise CadenceError(f"{path}: shape {cadence.shape}, expected {CADENCE_SHAPE}", "shape")
    if cadence.dtype.newbyteorder("=").name not in CADENCE_DTYPES:  # in either byte order
        raise CadenceError(f"{path}: dtype {cadence.dtype}, expected one of {', '.join(CADENCE_DTYPES)}", "dtype")
    check_finite(cadence, path)
    return cadence


def load_problem(path: Path, err: ValueError) -> str:
    """np.load takes any file without the .npy magic for a pickle and suggests allow_pickle=True: say what it is."""
    with path.open("rb") as handle:
        if handle.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
            return "no .npy header: the file does not start with the NumPy magic bytes"
    return str(err)


def check_finite(cadence: np.ndarray, path: Path) -> None:
    """NaN or inf would poison normalisation and the loss silently; say where the first one is."""
    finite = np.isfinite(cadence)
    if finite.all():
        return
    bad = ~finite
    first_observation = int(bad.any(axis=(1, 2)).argmax())
    raise CadenceError(
        f"{path}: {int(bad.sum())} non-finite value(s) (NaN or inf), the first in observation {first_observation}",
        "non-finite",
    )


def missing_cadence_ids(data_dir: str | Path, split: str, ids: Sequence[str]) -> list[str]:
    """Ids, in their order, whose cadence file does not exist: a stat per id, no reading."""
    return [i for i in ids if not cadence_path(data_dir, split, i).is_file()]


def require_cadence_files(data_dir: str | Path, split: str, ids: Sequence[str], source: str | Path) -> None:
    """Stop before any model runs when the table `source` names ids without a cadence file under data_dir/split."""
    missing = missing_cadence_ids(data_dir, split, ids)
    if missing:
        examples = ", ".join(missing[:MISSING_EXAMPLES]) + (", ..." if len(missing) > MISSING_EXAMPLES else "")
        raise DataError(
            f"{source}: {len(missing)} of {len(ids)} ids have no cadence file under {Path(data_dir) / split}, "
            f"e.g. {examples} (expected {cadence_path(data_dir, split, missing[0])})"
        )


def view_observations(view: str) -> tuple[int, ...]:
    return ON_OBSERVATIONS if view == "on" else tuple(range(CADENCE_SHAPE[0]))


def loaded_observations(view: str, background: str = "none") -> tuple[int, ...]:
    """What the loader reads for a view: its observations, or all six when the background is cleaned with the OFFs."""
    return tuple(range(CADENCE_SHAPE[0])) if background != "none" else view_observations(view)


def subtract_off_spectrum(observations: torch.Tensor) -> torch.Tensor:
    """Subtract, per sample and frequency channel, the OFF observations' mean over their time rows from all six
    (B, 6, time, freq) observations, in place: a band-pass ripple or a steady narrowband line present in the
    OFF pointings is removed from the ON ones too, while a drifting needle (a channel for a few rows) barely
    moves the mean."""
    off = [o for o in range(CADENCE_SHAPE[0]) if o not in ON_OBSERVATIONS]
    observations -= observations[:, off].mean(dim=(1, 2), keepdim=True)
    return observations


CHANNEL_VIEWS = ("channels", "dedoppler")  # views that keep the observations as channels (not stacked in time)


def view_channels(view: str) -> int:
    """Input channels of the model for a view: the six observations, plus their de-Doppler planes for dedoppler."""
    return {"channels": CADENCE_SHAPE[0], "dedoppler": 2 * CADENCE_SHAPE[0]}.get(view, 1)


def normalize(observations: torch.Tensor, mode: str) -> torch.Tensor:
    """Standardise (..., n_obs, time, freq) stacks as float32: over each whole sample, per observation, or not at
    all. Always a new tensor. Written as a few in-place passes (mean, centre, norm, scale) over one float32 copy:
    on a CPU this is several times faster than torch.std_mean, with the same two-pass accuracy. On a CPU the
    groups go a few MB at a time, so the passes after the conversion run in cache rather than memory (a quarter
    faster for a batch of 32 ON-only cadences)."""
    values = torch.empty(observations.shape, dtype=torch.float32, device=observations.device)
    if mode == "none":
        return values.copy_(observations)
    per_group = math.prod(values.shape[-2:] if mode == "observation" else values.shape[-3:])
    source, groups = observations.reshape(-1, per_group), values.view(-1, per_group)  # one row per observation or sample
    step = max(1, NORMALIZE_CHUNK_BYTES // (4 * per_group)) if values.device.type == "cpu" else len(groups)
    for first in range(0, len(groups), step):
        chunk = groups[first:first + step]
        chunk.copy_(source[first:first + step])
        chunk.sub_(chunk.mean(dim=1, keepdim=True))
        std = torch.linalg.vector_norm(chunk, dim=1, keepdim=True) / math.sqrt(max(per_group - 1, 1))
        chunk.mul_(1.0 / (std + 1e-6))
    return values


def arrange(observations: torch.Tensor, view: str) -> torch.Tensor:
    """(B, n_obs, time, freq) -> (B, channels, height, width): stacked in time for on/all, as channels otherwise."""
    if view in CHANNEL_VIEWS:
        return observations
    batch, n_obs, n_time, n_freq = observations.shape
    return observations.reshape(batch, 1, n_obs * n_time, n_freq)


def resize(images: torch.Tensor, size: Optional[Sequence[int]]) -> torch.Tensor:
    """Bilinear resize of a (B, C, H, W) batch with antialiasing, so a one-channel-wide needle survives downsampling.
    The filter is separable, so it runs as two one-axis passes, the one that leaves the smaller intermediate
    first: the same result to float rounding, and 2-5x faster on a CPU than PyTorch's single call when the
    tall stacked views (819 or 1638 rows) are shrunk in height and widened."""
    if size is None:
        return images
    (height, width), (new_height, new_width) = images.shape[-2:], tuple(size)
    if new_height * width <= height * new_width:
        steps = ((new_height, width), (new_height, new_width))
    else:
        steps = ((height, new_width), (new_height, new_width))
    for step in steps:
        if tuple(images.shape[-2:]) != step:
            images = F.interpolate(images, size=step, mode="bilinear", antialias=True, align_corners=False)
    return images


def image_shape(view: str, image_size: Optional[Sequence[int]]) -> tuple[int, int, int]:
    """(channels, height, width) of the model's input."""
    n_obs = len(view_observations(view))
    native = (CADENCE_SHAPE[1] if view in CHANNEL_VIEWS else n_obs * CADENCE_SHAPE[1], CADENCE_SHAPE[2])
    return (view_channels(view), *(tuple(image_size) if image_size is not None else native))


def observations_to_images(
    observations: torch.Tensor,
    view: str,
    normalization: str,
    image_size: Optional[Sequence[int]],
    channels_last: bool = False,
    background: str = "none",
) -> torch.Tensor:
    """The model's input for a batch as the loader delivers it, (B, n_obs, 273, 256) float16, on its device:
    convert, clean the background (all six observations needed), normalise, arrange, resize; for the dedoppler
    view, add the observations' aligned de-Doppler planes (one drift rate per image row) as six more channels.
    Done once per batch on the accelerator, not per sample in the workers."""
    if background != "none":
        cleaned = subtract_off_spectrum(observations.to(torch.float32, copy=True))
        observations = cleaned[:, list(view_observations(view))]
    normalized = normalize(observations, normalization)
    images = resize(arrange(normalized, view), image_size)
    if view == "dedoppler":
        from src.search.dedoppler import cadence_planes  # imported here: src.search.dedoppler builds on this module

        planes = cadence_planes(normalized, n_drifts=images.shape[-2])
        images = torch.cat([images, resize(planes, images.shape[-2:])], dim=1)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def batch_to_images(observations: torch.Tensor, cfg: "Config") -> torch.Tensor:
    """`observations_to_images` with a run's settings: what training, evaluation and the benchmarks feed the model."""
    return observations_to_images(observations, cfg.view, cfg.normalize, cfg.image_size, cfg.channels_last, cfg.background)


def cadence_to_image(
    cadence: np.ndarray, view: str, normalization: str, image_size: Optional[Sequence[int]], background: str = "none"
) -> torch.Tensor:
    """The model's input for one cadence file's array (a batch of one, through the same path as the loaders)."""
    loaded = list(loaded_observations(view, background))
    observations = torch.from_numpy(np.ascontiguousarray(cadence[loaded], dtype=np.float16))
    return observations_to_images(observations[None], view, normalization, image_size, background=background)[0]


def to_float16(cadence: np.ndarray, path: Path) -> np.ndarray:
    """The loaders deliver float16 (the competition's own dtype, half the bytes of float32); values that do not
    fit are an error, not inf."""
    if cadence.dtype == np.float16:
        return cadence
    with np.errstate(over="ignore"):
        converted = cadence.astype(np.float16)
    if not np.isfinite(converted).all():
        raise CadenceError(f"{path}: values beyond float16's range (|x| > 65504)", "non-finite")
    return converted


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


def target_array(targets: Optional[Sequence[float]], n: int) -> np.ndarray:
    """Targets as float32; -1 for every sample when they are unknown (test)."""
    return np.full(n, -1.0, np.float32) if targets is None else np.asarray(targets, np.float32)


class BatchReadDataset(Dataset):
    """A dataset that reads whole batches (`__getitems__`); one sample is a batch of one."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


class CadenceDataset(BatchReadDataset):
    """Cadences of one split read from the file tree: each sample's view observations as float16
    (n_obs, 273, 256); `target` is -1 when unknown (test). Batches are read whole into one array."""

    source = "file tree"

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        ids: Sequence[str],
        targets: Optional[Sequence[float]],
        observations: Sequence[int],
    ) -> None:
        self.paths = [cadence_path(data_dir, split, i) for i in ids]
        self.targets = target_array(targets, len(ids))
        self.observations = list(observations)

    def __len__(self) -> int:
        return len(self.paths)

    def read_into(self, out: np.ndarray, index: int) -> None:
        path = self.paths[index]
        out[...] = to_float16(load_cadence(path)[self.observations], path)

    def read_batch_into(self, array: np.ndarray, indices: Sequence[int]) -> None:
        for row, index in enumerate(indices):
            self.read_into(array[row], index)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        observations = batch_tensor((len(indices), len(self.observations), *CADENCE_SHAPE[1:]))
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
        targets: Optional[Sequence[float]],
        observations: Sequence[int],
        access: str = "read",
    ) -> None:
        if access not in PACKED_ACCESS:
            raise ValueError(f"access must be one of {PACKED_ACCESS}, got {access!r}")
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
        self._threads: Optional[ThreadPoolExecutor] = None
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
                out[done:done + count] = self._maps[shard][row, first:first + count]
                done += count
            return
        base = self.packed.offsets[shard] + row * self.packed.row_bytes
        out_bytes = out.reshape(-1).view(np.uint8)
        done = 0
        for first, count in self.runs:
            size = count * self.observation_bytes
            read = os.preadv(self._files[shard], [out_bytes[done:done + size]], base + first * self.observation_bytes)
            if read != size:
                raise CadenceError(f"{self.packed.shard_path(shard)}: short read at row {row}; the cache is damaged, repack")
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
    """Datasets read as one, e.g. a fold's training cadences and the pseudo-labelled test cadences."""

    def __init__(self, parts: Sequence[CadenceDataset]) -> None:
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])
        self.targets = np.concatenate([p.targets for p in self.parts])
        self.source = " + ".join(p.source for p in self.parts)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        indices = np.asarray(indices, dtype=np.int64)
        part_of = np.searchsorted(self.starts, indices, side="right") - 1
        shape = (len(self.parts[0].observations), *CADENCE_SHAPE[1:])
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


def read_pseudo_labels(path: str | Path, data_dir: str | Path, train_ids: Sequence[str]) -> pd.DataFrame:
    """Soft labels for test cadences from an earlier run's submission (`id,target` probabilities), checked: every
    id has a test file, no id is also a training id, every target is a probability."""
    path = Path(path)
    table = read_id_table(path, need_binary_target=False)
    targets = pd.to_numeric(table["target"], errors="coerce")
    if targets.isna().any() or not targets.between(0, 1).all():
        bad = table["target"][targets.isna() | ~targets.between(0, 1)].tolist()[0]  # a Python value: 1.7, not np.float64
        raise DataError(f"{path}: target must be a probability in [0, 1], found {bad!r}")
    overlap = set(table["id"]) & set(train_ids)
    if overlap:
        raise DataError(f"{path}: {len(overlap)} id(s) are training cadences too (e.g. {sorted(overlap)[0]}); "
                        "pseudo-labels are for the test split")
    require_cadence_files(data_dir, "test", table["id"].tolist(), path)
    return table.assign(target=targets.astype(np.float32))


def contiguous_runs(positions: Sequence[int]) -> list[tuple[int, int]]:
    """[0, 1, 2, 4] -> [(0, 3), (4, 1)]: observations that can be read in one go."""
    runs: list[tuple[int, int]] = []
    for position in positions:
        if runs and runs[-1][0] + runs[-1][1] == position:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((position, 1))
    return runs


def open_cadences(
    data_dir: str | Path,
    split: str,
    ids: Sequence[str],
    targets: Optional[Sequence[float]],
    view: str,
    cache_dir: Optional[str | Path] = None,
    background: str = "none",
    access: str = "read",
) -> tuple[CadenceDataset, str]:
    """The dataset for `ids`: from the packed cache under `cache_dir` when one holds them with the observations
    the view (and background cleaning) reads (with `access`, see PackedCadenceDataset), else from the file tree.
    All deliver the same float16 values. Returns it and a line saying which source it reads and, on a fallback, why."""
    observations = loaded_observations(view, background)
    if cache_dir is not None:
        from src.data.packed import find_packed

        packed, reason = find_packed(cache_dir, split, ids, observations)
        if packed is not None:
            dataset = PackedCadenceDataset(packed, ids, targets, observations, access)
            return dataset, f"{split}: reading the packed cache {reason}"
        note = f"{split}: reading the file tree under {data_dir} ({reason})"
    else:
        note = f"{split}: reading the file tree under {data_dir}"
    return CadenceDataset(data_dir, split, ids, targets, observations), note


def make_folds(labels: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    """Stratified K folds: `labels` with a `fold` column. Deterministic for a given seed and label order."""
    n_pos = int(labels["target"].sum())
    if min(n_pos, len(labels) - n_pos) < n_folds:
        raise DataError(f"{TRAIN_LABELS}: {n_pos} positives / {len(labels) - n_pos} negatives: too few for {n_folds} folds")
    folds = labels.reset_index(drop=True)
    folds["fold"] = -1
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, valid_index) in enumerate(splitter.split(folds["id"], folds["target"])):
        folds.loc[valid_index, "fold"] = fold
    return folds


def loader_workers(num_workers: Optional[int], num_processes: int = 1, packed: bool = False) -> int:
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
