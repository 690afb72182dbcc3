"""Experiment trackers, all driven through Accelerate: a local CSV log always, plus wandb / TensorBoard."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pandas as pd
from accelerate.tracking import GeneralTracker, on_main_process

from src.core.files import write_csv_atomically

METRICS_CSV = "metrics.csv"


class CSVTracker(GeneralTracker):
    """Appends each `accelerator.log` call as one row of `<run_dir>/metrics.csv` (main process only)."""

    name = "csv"
    requires_logging_directory = False

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__()
        self.path = Path(run_dir) / METRICS_CSV
        self.columns: list[str] = list(pd.read_csv(self.path, nrows=0).columns) if self.path.is_file() else []

    @property
    def tracker(self) -> Path:
        return self.path

    @on_main_process
    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        row = {"step": step, **values}
        new_columns = [k for k in row if k not in self.columns]
        if new_columns:  # rewrite with the wider header; the log is small (one row per epoch)
            rows = self._read_rows()
            self.columns += new_columns
            self._write([*rows, row])
        else:
            with self.path.open("a", newline="") as handle:
                csv.DictWriter(handle, self.columns).writerow(row)

    def _read_rows(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(rows)


def drop_metrics_after(run_dir: str | Path, step: int) -> None:
    """Forget rows logged after `step`: a resumed run trains those epochs again and logs them anew."""
    path = Path(run_dir) / METRICS_CSV
    if path.is_file():
        rows = pd.read_csv(path)
        write_csv_atomically(rows[rows["step"] <= step], path)


def wandb_mode() -> str:
    """Online only with credentials; an explicit WANDB_MODE always wins. Kaggle kernels have no internet."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def tracker_init_kwargs(run_dir: Path, run_name: str) -> dict[str, dict[str, Any]]:
    """wandb writes into the run folder, quietly: it says where its data is, not a run summary of ~20 lines at the
    end (the run's own report.md has one)."""
    return {"wandb": {"dir": str(run_dir), "name": run_name, "mode": wandb_mode(), "settings": {"quiet": True}}}
