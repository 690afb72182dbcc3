"""The Kaggle layout on disk: its id tables, one cadence file's reader and checks, folds and pseudo-labels.

Layout (the competition's, also written by `python -m src.synth`):
    <data_dir>/train_labels.csv          id,target
    <data_dir>/sample_submission.csv     id,target
    <data_dir>/{train,test}/{id[0]}/{id}.npy   float16 (6, 273, 256): ABACAD observations x time x frequency
                                         (other data in this layout: (6, rows, channels), as its run's
                                         config's observation_shape says)

Every reader here names the file and the problem in its error (DataError, CadenceError), which the entry
points print as one `error:` line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from src.core.cadence import CADENCE_SHAPE, cadence_shape
from src.core.errors import DataError

TRAIN_LABELS = "train_labels.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
TEST_LABELS = "test_labels.csv"  # truth for the test part; only synthetic data has it
SPLIT_TABLES = {"train": TRAIN_LABELS, "test": SAMPLE_SUBMISSION}  # the table that lists each split's ids
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


def read_split_table(data_dir: str | Path, split: str) -> pd.DataFrame:
    """The table that lists a split's ids: the training labels, or the sample submission for the test split."""
    return read_train_labels(data_dir) if split == "train" else read_sample_submission(data_dir)


def read_test_labels(data_dir: str | Path) -> pd.DataFrame | None:
    """Truth for the test split when the data is synthetic; None for the real competition data."""
    path = Path(data_dir) / TEST_LABELS
    return read_id_table(path) if path.is_file() else None


def load_cadence(path: str | Path, shape: Sequence[int] = CADENCE_SHAPE) -> np.ndarray:
    """A float cadence of `shape` with only finite values, or a CadenceError naming the file and the problem.

    `shape` is the whole cadence's (6, rows, channels), Kaggle's (6, 273, 256) by default, or one observation's
    (rows, channels), e.g. a run's `observation_shape`."""
    path = Path(path)
    expected = tuple(shape) if len(shape) == len(CADENCE_SHAPE) else cadence_shape(tuple(shape))
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
    if cadence.shape != expected:
        raise CadenceError(f"{path}: shape {cadence.shape}, expected {expected}", "shape")
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


def missing_cadence_ids(data_dir: str | Path, split: str, ids: Sequence[str]) -> list[str]:
    """Ids, in their order, whose cadence file does not exist: a stat per id, no reading."""
    return [i for i in ids if not cadence_path(data_dir, split, i).is_file()]


def require_cadence_files(data_dir: str | Path, split: str, ids: Sequence[str], source: str | Path) -> None:
    """Stop before any model runs when the table `source` names ids without a cadence file under data_dir/split."""
    missing = missing_cadence_ids(data_dir, split, ids)
    if missing:
        padded = [i for i in missing if i != i.strip()]
        if padded:  # the usual cause: spaces around the ids in the table
            raise DataError(
                f"{source}: {len(padded)} id(s) have spaces around them, e.g. {padded[0]!r}, and no cadence file "
                f"under {Path(data_dir) / split} matches them; remove the spaces from the table"
            )
        examples = ", ".join(missing[:MISSING_EXAMPLES]) + (", ..." if len(missing) > MISSING_EXAMPLES else "")
        raise DataError(
            f"{source}: {len(missing)} of {len(ids)} ids have no cadence file under {Path(data_dir) / split}, "
            f"e.g. {examples} (expected {cadence_path(data_dir, split, missing[0])})"
        )


def read_pseudo_labels(path: str | Path, data_dir: str | Path, train_ids: Sequence[str]) -> pd.DataFrame:
    """Soft labels for test cadences from an earlier run's submission (`id,target` probabilities), checked: every
    id has a test file, no id is also a training id, every target is a probability."""
    path = Path(path)
    table = read_id_table(path, need_binary_target=False)
    targets = pd.to_numeric(table["target"], errors="coerce")
    if targets.isna().any() or not targets.between(0, 1).all():
        bad = table["target"][targets.isna() | ~targets.between(0, 1)].tolist()[
            0
        ]  # a Python value: 1.7, not np.float64
        raise DataError(f"{path}: target must be a probability in [0, 1], found {bad!r}")
    overlap = set(table["id"]) & set(train_ids)
    if overlap:
        raise DataError(
            f"{path}: {len(overlap)} id(s) are training cadences too (e.g. {sorted(overlap)[0]}); "
            "pseudo-labels are for the test split"
        )
    require_cadence_files(data_dir, "test", table["id"].tolist(), path)
    return table.assign(target=targets.astype(np.float32))


def check_fold_sizes(labels: pd.DataFrame, n_folds: int, source: str | Path = TRAIN_LABELS) -> None:
    """Every fold needs a positive and a negative to validate on."""
    n_pos = int(labels["target"].sum())
    if min(n_pos, len(labels) - n_pos) < n_folds:
        raise DataError(f"{source}: {n_pos} positives / {len(labels) - n_pos} negatives: too few for {n_folds} folds")


def make_folds(labels: pd.DataFrame, n_folds: int, seed: int, source: str | Path = TRAIN_LABELS) -> pd.DataFrame:
    """Stratified K folds: `labels` with a `fold` column. Deterministic for a given seed and label order."""
    check_fold_sizes(labels, n_folds, source)
    folds = labels.reset_index(drop=True)
    folds["fold"] = -1
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, valid_index) in enumerate(splitter.split(folds["id"], folds["target"])):
        folds.loc[valid_index, "fold"] = fold
    return folds
