"""Check a whole data folder up front: the id tables and every cadence file, with one summary at the end.

Every cadence is read through `src.data.kaggle.load_cadence`, the reader training and evaluation use, so a
file that passes here loads there. `.npy` files that no table names are warnings. The command is
`python -m src.validate` (src/validate.py); training reuses `scan_cadences` and `write_bad_list` for
`--skip-bad`.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from src.core.cadence import OBSERVATION_SHAPE
from src.core.cli import progress_bar
from src.core.errors import DataError
from src.core.files import write_csv_atomically
from src.data.kaggle import (
    CADENCE_PROBLEMS,
    SAMPLE_SUBMISSION,
    SPLIT_TABLES,
    TEST_LABELS,
    CadenceError,
    cadence_path,
    load_cadence,
    read_split_table,
    read_test_labels,
)

# Threads, not processes: reading releases the GIL (measured on 2 cores, 500 cached cadences: 0.45 s serial,
# 0.31 s with 4 threads, 0.46 s with a 2-process pool), and a thread pool is safe inside a process that
# already holds a GPU, which a forked pool is not.
DEFAULT_WORKERS = min(8, 2 * (os.cpu_count() or 1))
BAD_LIST_COLUMNS = ("id", "path", "problem")
SHOWN_PER_KIND = 10  # bad files listed per problem kind in the printed summary


@dataclass(frozen=True)
class BadCadence:
    """A cadence file that cannot be used: its id, path, what is wrong, and the kind (one of CADENCE_PROBLEMS)."""

    id: str
    path: str
    problem: str
    kind: str


def check_cadence(
    sample_id: str, path: Path, observation_shape: Sequence[int] = OBSERVATION_SHAPE
) -> BadCadence | None:
    """None when the cadence loads (with observations of `observation_shape`); else what is wrong, without the
    path the message starts with."""
    try:
        load_cadence(path, observation_shape)
    except CadenceError as err:
        return BadCadence(sample_id, str(path), str(err).removeprefix(f"{path}: "), err.kind)
    return None


def scan_cadences(
    data_dir: str | Path,
    split: str,
    ids: Sequence[str],
    workers: int = DEFAULT_WORKERS,
    progress: bool = True,
    observation_shape: Sequence[int] = OBSERVATION_SHAPE,
) -> list[BadCadence]:
    """Load every cadence of `ids` as training would (observations of `observation_shape`); the bad ones, in the
    order of `ids` whatever `workers`."""
    paths = [cadence_path(data_dir, split, i) for i in ids]
    shapes = [tuple(observation_shape)] * len(paths)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = progress_bar(
            pool.map(check_cadence, ids, paths, shapes),
            total=len(paths),
            desc=f"checking {split}",
            unit="file",
            show=progress,
        )
        return [bad for bad in results if bad is not None]


def write_bad_list(bad: Sequence[BadCadence], path: str | Path) -> None:
    """`id,path,problem` CSV of the skipped or bad files (header only when there are none), written atomically."""
    table = pd.DataFrame([(b.id, b.path, b.problem) for b in bad], columns=list(BAD_LIST_COLUMNS))
    write_csv_atomically(table, path)


@dataclass
class SplitReport:
    """One split: the table that names its ids, how it read, and what the scan of its files found."""

    split: str
    table: str
    ids: int = 0
    positives: int | None = None  # train only
    table_error: str | None = None  # the split's files are not checked when its table cannot be read
    bad: list[BadCadence] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # .npy files on disk that the table does not name

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["bad_by_kind"] = dict(Counter(b.kind for b in self.bad))
        return values


@dataclass
class ValidationSummary:
    """Everything found in one data folder: problems make the command exit 1, warnings do not."""

    data_dir: str
    splits: list[SplitReport]
    test_labels: dict[str, Any] | None = None  # rows/positives, or error; None when the file is absent
    notes: list[str] = field(default_factory=list)  # warnings that are not about one split's files

    @property
    def bad(self) -> list[BadCadence]:
        return [b for s in self.splits for b in s.bad]

    @property
    def table_errors(self) -> list[str]:
        errors = [s.table_error for s in self.splits if s.table_error]
        if self.test_labels and "error" in self.test_labels:
            errors.append(self.test_labels["error"])
        return errors

    @property
    def problems(self) -> list[str]:
        return self.table_errors + [f"{b.path}: {b.problem}" for b in self.bad]

    @property
    def warnings(self) -> list[str]:
        unlisted = [
            f"{len(s.unlisted)} .npy file(s) under {Path(self.data_dir) / s.split} not in {s.table}, "
            f"e.g. {s.unlisted[0]}"
            for s in self.splits
            if s.unlisted
        ]
        return unlisted + self.notes

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "ok": self.ok,
            "splits": {s.split: s.to_dict() for s in self.splits},
            "test_labels": self.test_labels,
            "problems": self.problems,
            "warnings": self.warnings,
        }

    def format(self) -> str:
        """The human summary the command prints."""
        lines = [f"data folder: {self.data_dir}"]
        lines += [f"  {describe_split(s)}" for s in self.splits]
        if self.test_labels is not None and "error" not in self.test_labels:
            lines.append(f"  {TEST_LABELS}: {self.test_labels['rows']} rows, {self.test_labels['positives']} positive")
        if self.table_errors:
            lines += ["unreadable tables:", *[f"  {t}" for t in self.table_errors]]
        if self.bad:
            lines += ["bad cadence files:", *format_bad(self.bad)]
        if self.warnings:
            lines += ["warnings:", *[f"  {w}" for w in self.warnings]]
        lines.append(f"result: {len(self.problems)} problem(s)" if self.problems else "result: OK, no problems")
        return "\n".join(lines)


def describe_split(report: SplitReport) -> str:
    if report.table_error:
        return f"{report.split}: {report.table} unreadable, files not checked"
    balance = ""
    if report.positives is not None:
        share = report.positives / report.ids
        balance = f" ({report.positives} positive, {report.ids - report.positives} negative: {share:.1%} positive)"
    return f"{report.split}: {report.ids} ids in {report.table}{balance}, {len(report.bad)} bad file(s)"


def format_bad(bad: Sequence[BadCadence]) -> list[str]:
    """Bad files grouped by kind, in CADENCE_PROBLEMS order, at most SHOWN_PER_KIND of each."""
    lines = []
    for kind in CADENCE_PROBLEMS:
        group = [b for b in bad if b.kind == kind]
        if not group:
            continue
        lines.append(f"  {kind} ({len(group)}):")
        lines += [f"    {b.path}: {b.problem}" for b in group[:SHOWN_PER_KIND]]
        if len(group) > SHOWN_PER_KIND:
            lines.append(f"    ... and {len(group) - SHOWN_PER_KIND} more (write them all with --bad-list)")
    return lines


def unlisted_files(data_dir: Path, split: str, ids: Sequence[str]) -> list[str]:
    """.npy files under data_dir/split, at any depth, that are not the expected file of a listed id."""
    expected = {cadence_path(data_dir, split, i) for i in ids}
    return sorted(str(p) for p in (data_dir / split).rglob("*.npy") if p not in expected)


def check_split(
    data_dir: Path, split: str, workers: int, progress: bool, observation_shape: Sequence[int] = OBSERVATION_SHAPE
) -> tuple[SplitReport, list[str] | None]:
    """The split's report and its ids (None when its table cannot be read)."""
    report = SplitReport(split, SPLIT_TABLES[split])
    try:
        table = read_split_table(data_dir, split)
    except DataError as err:
        report.table_error = str(err)
        return report, None
    ids = table["id"].tolist()
    report.ids = len(ids)
    if split == "train":
        report.positives = int(table["target"].sum())
    report.bad = scan_cadences(data_dir, split, ids, workers, progress, observation_shape)
    report.unlisted = unlisted_files(data_dir, split, ids)
    return report, ids


def check_test_labels(data_dir: Path, test_ids: list[str] | None) -> tuple[dict[str, Any] | None, list[str]]:
    """test_labels.csv (synthetic data only): its size, or its error; a note when it does not cover the test ids."""
    try:
        truth = read_test_labels(data_dir)
    except DataError as err:
        return {"error": str(err)}, []
    if truth is None:
        return None, []
    info = {"rows": len(truth), "positives": int(truth["target"].sum())}
    uncovered = len(set(test_ids or []) - set(truth["id"]))
    if uncovered:
        note = (
            f"{data_dir / TEST_LABELS}: {uncovered} of {len(test_ids)} {SAMPLE_SUBMISSION} ids have no truth row; "
            "evaluate.py will not report a test ROC AUC"
        )
        return info, [note]
    return info, []


def validate_data_dir(
    data_dir: str | Path,
    workers: int = DEFAULT_WORKERS,
    splits: Sequence[str] = ("train", "test"),
    progress: bool = True,
    observation_shape: Sequence[int] = OBSERVATION_SHAPE,
) -> ValidationSummary:
    """Check the tables and every cadence of `splits` (observations of `observation_shape`, Kaggle's by default);
    table problems are reported, not raised, so one run shows everything. Only a missing data folder raises
    (DataError)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    summary = ValidationSummary(str(data_dir), [])
    for split in splits:
        report, ids = check_split(data_dir, split, workers, progress, observation_shape)
        summary.splits.append(report)
        if split == "test":
            summary.test_labels, summary.notes = check_test_labels(data_dir, ids)
    return summary
