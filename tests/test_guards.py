"""Guards under load and against bad files: a non-finite loss, running out of memory in evaluation, exactly one
prediction per id from two processes, and checkpoints or weights that carry pickled code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import accelerate_launch
from safetensors.torch import load_file

import src.engine.inference
import src.engine.train
from src.engine.checkpoint import CheckpointError, checkpoint_name, read_checkpoint_info, save_checkpoint
from src.engine.inference import evaluate
from src.engine.resume import STATE_DIR
from src.engine.train import TrainingError, train
from src.models.classifier import ModelError, build_model

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cfg(make_cfg, data_dir: Path, out_dir: Path, **overrides):
    values = {
        "data_dir": str(data_dir),
        "out_dir": str(out_dir),
        "run_name": "guard",
        "view": "channels",
        "image_size": (32, 64),
        "epochs": 2,
        "n_folds": 2,
        "batch_size": 2,
        "eval_batch_size": 4,
        "lr": 1e-3,
        "save_every_minutes": 0.0,
    }
    return make_cfg(**{**values, **overrides})


def poison_training_batches(monkeypatch, poisoned: set[int]) -> None:
    """Models built by training return NaN logits on the given training forward calls (1-based)."""
    real_build_model = src.engine.train.build_model
    calls = {"n": 0}

    def poison(module, inputs, output):
        if module.training:
            calls["n"] += 1
            if calls["n"] in poisoned:
                return {"logits": output["logits"] * float("nan")}
        return None

    def build(cfg, load_pretrained=True):
        model = real_build_model(cfg, load_pretrained)
        model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(src.engine.train, "build_model", build)


def all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


# ---------------------------------------------------------------- non-finite loss ---


def test_nan_loss_stops_before_anything_bad_is_saved(make_cfg, small_dataset, tmp_path, monkeypatch):
    data_dir, _, _ = small_dataset
    poison_training_batches(monkeypatch, {3})  # the first batch of the second epoch of fold 0
    with pytest.raises(TrainingError, match=r"fold 0 epoch 2 batch 1: the training loss is nan"):
        train(tiny_cfg(make_cfg, data_dir, tmp_path))
    run_dir = tmp_path / "guard"
    assert all_finite(load_file(run_dir / checkpoint_name(0)))  # the epoch-1 checkpoint, untouched
    assert read_checkpoint_info(run_dir / checkpoint_name(0)).epoch == 1
    assert all_finite(load_file(run_dir / STATE_DIR / "model.safetensors"))
    progress = json.loads((run_dir / STATE_DIR / "progress.json").read_text())
    assert (progress["fold"], progress["epoch"]) == (0, 1)  # resumable from the last good state


def test_nan_loss_skip_leaves_the_batch_out(make_cfg, small_dataset, tmp_path, monkeypatch):
    data_dir, _, _ = small_dataset
    poison_training_batches(monkeypatch, {2})
    summary = train(tiny_cfg(make_cfg, data_dir, tmp_path, nonfinite_loss="skip", epochs=1))
    run_dir = tmp_path / "guard"
    assert [r["fold"] for r in summary["folds"]] == [0, 1]
    info = read_checkpoint_info(run_dir / checkpoint_name(0))
    assert info.metrics["skipped_batches"] == 1
    assert read_checkpoint_info(run_dir / checkpoint_name(1)).metrics["skipped_batches"] == 0
    assert all_finite(load_file(run_dir / checkpoint_name(0)))


# ------------------------------------------------------------------- out of memory ---


@pytest.fixture
def checkpoint(make_cfg, small_dataset, tmp_path):
    data_dir, _, _ = small_dataset
    cfg = make_cfg(
        data_dir=str(data_dir), view="channels", image_size=(32, 64), eval_batch_size=16, tta=("identity", "hflip")
    )
    torch.manual_seed(0)
    path = tmp_path / checkpoint_name(0)
    save_checkpoint(path, build_model(cfg, load_pretrained=False), cfg, fold=0, epoch=1, metrics={"valid_auc": 0.5})
    return path, data_dir


def limit_batch(monkeypatch, largest: int, only_real_data: bool) -> list[int]:
    """Evaluation models raise CUDA-style out-of-memory errors on batches above `largest` (on every batch, or
    only on real data so the blank probe passes); returns the batch sizes seen."""
    real_build_model = src.engine.inference.build_model
    seen: list[int] = []

    def check(module, inputs):
        images = inputs[0]
        seen.append(len(images))
        if len(images) > largest and not (only_real_data and not images.any()):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB.")

    def build(cfg, load_pretrained=True):
        model = real_build_model(cfg, load_pretrained)
        model.register_forward_pre_hook(check)
        return model

    monkeypatch.setattr(src.engine.inference, "build_model", build)
    return seen


@pytest.mark.parametrize("only_real_data", [False, True], ids=["probe-finds-it", "real-pass-retries"])
def test_evaluation_halves_its_batch_on_out_of_memory(checkpoint, tmp_path, monkeypatch, capsys, only_real_data):
    path, data_dir = checkpoint
    expected = tmp_path / "expected.csv"
    evaluate([path], data_dir, expected, batch_size=2)
    seen = limit_batch(monkeypatch, largest=2, only_real_data=only_real_data)
    out = tmp_path / "submission.csv"
    evaluate([path], data_dir, out, batch_size=8)
    assert "batch size halved to 4" in capsys.readouterr().out
    assert max(seen) == 8 and 2 in seen and all(size <= 2 for size in seen[-3:])
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(expected), atol=1e-6)


def test_other_runtime_errors_are_not_taken_for_out_of_memory(checkpoint, tmp_path, monkeypatch):
    path, data_dir = checkpoint
    real_build_model = src.engine.inference.build_model

    def build(cfg, load_pretrained=True):
        model = real_build_model(cfg, load_pretrained)
        model.register_forward_pre_hook(lambda module, inputs: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
        return model

    monkeypatch.setattr(src.engine.inference, "build_model", build)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        evaluate([path], data_dir, tmp_path / "submission.csv", batch_size=8)
    assert not (tmp_path / "submission.csv").exists()


# ------------------------------------------------------- two processes, one prediction each ---


def test_two_processes_return_exactly_one_prediction_per_sample(tmp_path):
    out = tmp_path / "predictions.json"
    command = accelerate_launch(2, "--mixed_precision", "no", "--dynamo_backend", "no")
    command += ["tests/scripts/distributed_predict.py", str(out)]
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["num_processes"] == 2
    assert len(report["results"]) == 21
    for case in report["results"]:
        assert case["n_returned"] == case["size"], case  # no padding duplicates, none missing
        np.testing.assert_array_equal(case["values"], np.arange(case["size"]))  # each its own value


# ------------------------------------------------------------- files carrying code ---


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture
def pickled_code(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}, "payload": RunsCode(marker)}, path)
    return path, marker


def test_checkpoint_with_pickled_code_is_refused_by_evaluate(pickled_code, small_dataset, tmp_path):
    path, marker = pickled_code
    data_dir, _, _ = small_dataset
    for name in ("fold0.safetensors", "fold0.pth"):
        disguised = tmp_path / name
        disguised.write_bytes(path.read_bytes())
        with pytest.raises(CheckpointError, match=f"{name}: not a safetensors checkpoint"):
            read_checkpoint_info(disguised)
    result = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "--checkpoints",
            str(tmp_path / "fold0.pth"),
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / "submission.csv"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "error:" in result.stderr and "fold0.pth" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "submission.csv").exists()


def test_pretrained_weights_with_pickled_code_are_refused(pickled_code, make_cfg):
    path, marker = pickled_code
    with pytest.raises(ModelError, match=r"weights\.pth"):
        build_model(make_cfg(pretrained=str(path)))
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the proof that the file is dangerous: a plain unpickle runs it
    assert marker.exists()
