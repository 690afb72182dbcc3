"""A killed run resumes to exactly the result of an uninterrupted one; run folders are never silently replaced.

The central test SIGKILLs `python main.py` twice (mid-epoch in fold 0, then mid-epoch in fold 1), resumes it
with `main.py --resume` each time, and compares everything with the same run left alone: folds, per-fold best
epochs and AUCs, out-of-fold logits, checkpoint weights and the metrics log. On one CPU with the same thread
count the comparison is exact: every batch's randomness is derived from its position in the run, and the saved
state restores weights, optimizer moments, scheduler and the accumulation counter bit for bit.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from src.core.config import ConfigError, save_config
from src.engine.checkpoint import CheckpointError
from src.engine.resume import (
    PREVIOUS_DIR,
    PROGRESS_JSON,
    STAGING_DIR,
    STATE_DIR,
    Progress,
    latest_state,
    load_training_state,
    read_progress,
    save_training_state,
)
from src.engine.tracking import METRICS_CSV, drop_metrics_after
from src.engine.train import prepare_run_dir, resume_config
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
    "3",
    "--n-folds",
    "2",
    "--batch-size",
    "2",
    "--eval-batch-size",
    "5",
    "--grad-accum-steps",
    "2",
    "--num-workers",
    "0",
    "--tracker",
    "none",
    "--lr",
    "1e-3",
    # every source of randomness a resumed run has to replay: sampler, flips, mixing, dropout; and EMA weights
    "--sampler-strength",
    "0.5",
    "--mix",
    "both",
    "--mix-prob",
    "0.5",
    "--drop-rate",
    "0.2",
    "--ema-decay",
    "0.9",
    "--save-every-minutes",
    "0",
]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def main_py(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "main.py", *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600
    )
    if check:
        assert result.returncode == 0, (
            f"main.py {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def progress_now(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / STATE_DIR / PROGRESS_JSON).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def kill_when(run_dir: Path, args: list[str], reached) -> dict:
    """Start main.py, SIGKILL it as soon as its saved progress satisfies `reached`; returns that progress."""
    process = subprocess.Popen(
        [sys.executable, "main.py", *args],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            progress = progress_now(run_dir)
            if progress is not None and reached(progress):
                process.send_signal(signal.SIGKILL)
                process.wait()
                return progress
            if process.poll() is not None:
                pytest.fail(
                    f"main.py ended (code {process.returncode}) before the kill point:\n{process.stderr.read()[-4000:]}"
                )
            time.sleep(0.005)
        pytest.fail("kill point not reached in time")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "input"
    write_dataset(path, SynthConfig(seed=11, pos_frac=0.4), n_train=30, n_test=2, workers=1, progress=False)
    return path


def test_killed_run_resumes_to_the_uninterrupted_result(data_dir, tmp_path):
    common = [*TRAINING, "--data-dir", str(data_dir), "--out-dir", str(tmp_path)]
    main_py(*common, "--run-name", "straight")
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    first = kill_when(
        killed,
        [*common, "--run-name", "killed"],
        lambda p: p["fold"] == 0 and p["epoch"] == 1 and p["batches_done"] > 0,
    )
    assert not (killed / "oof.csv").exists() and (killed / STATE_DIR).is_dir()
    second = kill_when(
        killed, ["--resume", str(killed)], lambda p: p["fold"] == 1 and p["epoch"] == 1 and p["batches_done"] > 0
    )
    assert (killed / "oof_fold0.csv").is_file() and not (killed / "oof.csv").exists()
    resumed = main_py("--resume", str(killed))
    assert "resuming fold 1 at epoch" in resumed.stdout
    assert (first["fold"], first["epoch"]) == (0, 1) and (second["fold"], second["epoch"]) == (1, 1)

    pd.testing.assert_frame_equal(pd.read_csv(straight / "folds.csv"), pd.read_csv(killed / "folds.csv"))
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (straight, killed))
    assert a["folds"] == b["folds"] and a["oof_auc"] == b["oof_auc"]
    oof_a, oof_b = pd.read_csv(straight / "oof.csv"), pd.read_csv(killed / "oof.csv")
    np.testing.assert_array_equal(oof_a["logit"].to_numpy(), oof_b["logit"].to_numpy())
    for fold in (0, 1):
        weights_a, weights_b = (load_file(d / f"fold{fold}.safetensors") for d in (straight, killed))
        assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    log_a, log_b = pd.read_csv(straight / METRICS_CSV), pd.read_csv(killed / METRICS_CSV)
    assert len(log_a) == len(log_b) == 6  # epochs replayed after a kill are logged once
    timing = [c for c in log_a.columns if "seconds" in c]  # wall time is the one thing a kill changes
    assert {"train_loss", "valid_loss", "valid_auc", "lr"} <= set(log_a.columns)
    pd.testing.assert_frame_equal(log_a.drop(columns=timing), log_b.drop(columns=timing))
    assert not (killed / STATE_DIR).exists()  # a finished run drops its resume state


def test_resume_of_a_foreign_folder(data_dir, tmp_path):
    result = main_py("--resume", str(tmp_path / "nothing"), check=False)
    assert result.returncode == 2 and "error:" in result.stderr and "config.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_folder_is_never_silently_replaced(data_dir, tmp_path):
    common = [*TRAINING, "--epochs", "1", "--data-dir", str(data_dir), "--out-dir", str(tmp_path), "--run-name", "mine"]
    main_py(*common)
    log = (tmp_path / "mine" / METRICS_CSV).read_text()
    finished = main_py("--resume", str(tmp_path / "mine"), check=False)
    assert finished.returncode == 2 and "the run is complete" in finished.stderr
    assert (tmp_path / "mine" / METRICS_CSV).read_text() == log
    marker = tmp_path / "mine" / "notes.txt"
    marker.write_text("my notes")
    refused = main_py(*common, check=False)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr and marker.read_text() == "my notes"
    main_py(*common, "--overwrite")
    assert not marker.exists() and (tmp_path / "mine" / "oof.csv").is_file()


# ------------------------------------------------------------------------------ units ---


def test_resume_config_keeps_the_recipe_and_follows_a_moved_folder(make_cfg, tmp_path):
    run_dir = tmp_path / "moved" / "run7"
    run_dir.mkdir(parents=True)
    save_config(make_cfg(out_dir="/somewhere/else", run_name="old-name", lr=3e-4), run_dir / "config.yaml")
    cfg = resume_config(run_dir, {"num_workers": 3, "data_dir": "/data"})
    assert (cfg.out_dir, cfg.run_name) == (str(tmp_path / "moved"), "run7")
    assert (cfg.lr, cfg.num_workers, cfg.data_dir) == (3e-4, 3, "/data")
    with pytest.raises(ConfigError, match="cannot change lr"):
        resume_config(run_dir, {"lr": 1e-3})


def test_prepare_run_dir_refuses_a_used_folder_unless_told(make_cfg, tmp_path):
    cfg = make_cfg(out_dir=str(tmp_path), run_name="r")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "fold0.safetensors").write_text("precious")
    with pytest.raises(FileExistsError, match="--resume"):
        prepare_run_dir(cfg, "x")
    _, run_dir = prepare_run_dir(cfg, "x", resume=True)
    assert (run_dir / "fold0.safetensors").read_text() == "precious"
    _, run_dir = prepare_run_dir(cfg, "x", overwrite=True)
    assert list(run_dir.iterdir()) == []


def tiny_prepared(seed: int = 0):
    torch.manual_seed(seed)
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    return accelerator, *accelerator.prepare(model, optimizer)


def test_state_round_trip_and_swap(tmp_path):
    accelerator, model, _ = tiny_prepared()
    progress = Progress(
        fold=1, epoch=2, batches_done=3, step=40, best={"auc": 0.9}, skipped_batches=1, train_seconds=5.0
    )
    save_training_state(accelerator, tmp_path, progress, np.arange(3.0))
    save_training_state(accelerator, tmp_path, progress, np.arange(3.0))  # the second save swaps the first out
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_DIR]
    state_dir = latest_state(tmp_path)
    assert read_progress(state_dir) == progress
    saved_weight = model.weight.detach().clone()
    accelerator, model, _ = tiny_prepared(seed=1)
    assert not torch.equal(model.weight, saved_weight)
    np.testing.assert_array_equal(load_training_state(accelerator, state_dir), np.arange(3.0))
    assert torch.equal(model.weight, saved_weight)
    accelerator.free_memory()


def test_a_kill_during_the_swap_leaves_a_complete_state(tmp_path):
    accelerator, *_ = tiny_prepared()
    save_training_state(accelerator, tmp_path, Progress(fold=0, step=7), None)
    (tmp_path / STATE_DIR).rename(tmp_path / PREVIOUS_DIR)  # killed between the two renames
    (tmp_path / STAGING_DIR).mkdir()  # and a half-written new state without progress.json
    assert latest_state(tmp_path) == tmp_path / PREVIOUS_DIR
    assert read_progress(latest_state(tmp_path)).step == 7
    accelerator.free_memory()


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_state_carrying_pickled_code_is_refused(tmp_path):
    accelerator, *_ = tiny_prepared()
    save_training_state(accelerator, tmp_path, Progress(fold=0), None)
    marker = tmp_path / "pwned.txt"
    with (tmp_path / STATE_DIR / "optimizer.bin").open("wb") as handle:
        pickle.dump({"state": _RunsCode(marker)}, handle)
    accelerator, *_ = tiny_prepared()
    with pytest.raises(CheckpointError, match=r"optimizer\.bin|cannot be loaded"):
        load_training_state(accelerator, tmp_path / STATE_DIR)
    assert not marker.exists()
    accelerator.free_memory()


def test_damaged_progress_is_a_checkpoint_error(tmp_path):
    (tmp_path / PROGRESS_JSON).write_text('{"fold": 0, "unknown": 1}')
    with pytest.raises(CheckpointError, match=r"progress\.json"):
        read_progress(tmp_path)


def test_drop_metrics_after(tmp_path):
    pd.DataFrame({"step": [4, 8, 12], "valid_auc": [0.5, 0.6, 0.7]}).to_csv(tmp_path / METRICS_CSV, index=False)
    drop_metrics_after(tmp_path, 8)
    assert pd.read_csv(tmp_path / METRICS_CSV)["step"].tolist() == [4, 8]
