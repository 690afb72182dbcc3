"""Training stops on a bad training file, naming it, unless told to skip bad files, which it then lists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.data.kaggle import cadence_path
from src.synth.generator import SynthConfig, write_dataset

REPO = Path(__file__).resolve().parents[1]
TRAINING = [
    "--model-name",
    "test_efficientnet",
    "--view",
    "channels",
    "--image-size",
    "32,64",
    "--epochs",
    "1",
    "--n-folds",
    "2",
    "--batch-size",
    "4",
    "--tracker",
    "none",
    "--save-every-minutes",
    "0",
]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def main_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """20 good training cadences plus one truncated and one holding NaN."""
    data_dir = tmp_path_factory.mktemp("skip") / "input"
    write_dataset(data_dir, SynthConfig(seed=21, pos_frac=0.4), n_train=22, n_test=2, workers=1, progress=False)
    ids = pd.read_csv(data_dir / "train_labels.csv", dtype={"id": str})["id"].tolist()
    truncated, with_nan = cadence_path(data_dir, "train", ids[3]), cadence_path(data_dir, "train", ids[7])
    truncated.write_bytes(truncated.read_bytes()[:5000])
    cadence = np.load(with_nan)
    cadence[2, 10, 100] = np.nan
    np.save(with_nan, cadence)
    return data_dir, {ids[3]: truncated, ids[7]: with_nan}


def test_a_bad_training_file_stops_the_run_naming_it(damaged, tmp_path):
    data_dir, bad = damaged
    result = main_py(
        *TRAINING, "--num-workers", "1", "--data-dir", str(data_dir), "--out-dir", str(tmp_path), "--run-name", "r"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and any(str(path) in error[0] for path in bad.values()), result.stderr[-2000:]


def test_skip_bad_trains_without_them_and_lists_them(damaged, tmp_path):
    data_dir, bad = damaged
    result = main_py(
        *TRAINING,
        "--num-workers",
        "0",
        "--skip-bad",
        "--data-dir",
        str(data_dir),
        "--out-dir",
        str(tmp_path),
        "--run-name",
        "r",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "r"
    listed = pd.read_csv(run_dir / "bad_files.csv", dtype={"id": str})
    assert sorted(listed["id"]) == sorted(bad) and list(listed.columns) == ["id", "path", "problem"]
    problems = dict(zip(listed["id"], listed["problem"], strict=True))
    assert any("non-finite" in p for p in problems.values()) and any("readable" in p for p in problems.values())
    oof = pd.read_csv(run_dir / "oof.csv", dtype={"id": str})
    assert len(oof) == 20 and not set(bad) & set(oof["id"])
    assert "leaving out 2 unreadable" in result.stdout
