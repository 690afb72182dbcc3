"""Reading the Kaggle layout and turning a cadence into the image a model sees.

Layout (the competition's, also written by `python -m src.synth`):
    <data_dir>/train_labels.csv          id,target
    <data_dir>/sample_submission.csv     id,target
    <data_dir>/{train,test}/{id[0]}/{id}.npy   float16 (6, 273, 256): ABACAD observations x time x frequency
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedKFold
from torch.utils.data import DataLoader, Dataset

from .errors import DataError

CADENCE_SHAPE = (6, 273, 256)  # observations, time rows, frequency channels
ON_OBSERVATIONS = (0, 2, 4)  # cadence order ABACAD: the target star is observed 1st, 3rd and 5th
TRAIN_LABELS = "train_labels.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
TEST_LABELS = "test_labels.csv"  # truth for the test part; only synthetic data has it
CADENCE_DTYPES = ("float16", "float32", "float64")  # Kaggle's files are float16; wider floats are accepted
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


def view_channels(view: str) -> int:
    """Input channels of the model for a view."""
    return CADENCE_SHAPE[0] if view == "channels" else 1


def normalize(observations: torch.Tensor, mode: str) -> torch.Tensor:
    """Standardise a (n_obs, time, freq) stack: over the whole sample, per observation, or not at all."""
    if mode == "none":
        return observations
    dims = (-3, -2, -1) if mode == "sample" else (-2, -1)
    mean = observations.mean(dim=dims, keepdim=True)
    std = observations.std(dim=dims, keepdim=True)
    return (observations - mean) / (std + 1e-6)


def arrange(observations: torch.Tensor, view: str) -> torch.Tensor:
    """(n_obs, time, freq) -> (channels, height, width): stacked in time for on/all, as channels otherwise."""
    if view == "channels":
        return observations
    n_obs, n_time, n_freq = observations.shape
    return observations.reshape(1, n_obs * n_time, n_freq)


def resize(image: torch.Tensor, size: Optional[Sequence[int]]) -> torch.Tensor:
    """Bilinear resize with antialiasing, so a one-channel-wide needle survives downsampling."""
    if size is None or tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[0]


def cadence_to_image(
    cadence: np.ndarray, view: str, normalization: str, image_size: Optional[Sequence[int]]
) -> torch.Tensor:
    """The model's input for one cadence: select the view's observations, normalise, arrange, resize."""
    observations = torch.from_numpy(cadence[list(view_observations(view))].astype(np.float32))
    return resize(arrange(normalize(observations, normalization), view), image_size)


class CadenceDataset(Dataset):
    """Cadences of one split as model inputs; `target` is -1 when unknown (test)."""

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        ids: Sequence[str],
        targets: Optional[Sequence[float]],
        view: str,
        normalization: str,
        image_size: Optional[Sequence[int]],
    ) -> None:
        self.paths = [cadence_path(data_dir, split, i) for i in ids]
        self.targets = np.full(len(ids), -1.0, np.float32) if targets is None else np.asarray(targets, np.float32)
        self.view, self.normalization, self.image_size = view, normalization, image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = cadence_to_image(load_cadence(self.paths[index]), self.view, self.normalization, self.image_size)
        return {"image": image, "target": torch.tensor(self.targets[index]), "index": torch.tensor(index)}


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


def make_eval_loader(dataset: CadenceDataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )
