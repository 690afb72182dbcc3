"""One-pass evaluation: every test cadence is read once, whatever the number of checkpoints, and the submission
is the same, byte for byte, as the mean of the checkpoints' own evaluations (each once read the data itself).

In process on the hand-written `small_dataset` (3 test cadences, eval batch 2: a full and a partial batch), with
tiny random-weight checkpoints; the refusal of mixed data geometries through evaluate.py itself."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from accelerate import Accelerator
from scipy.special import expit

import src.engine.inference
from src.core.files import write_csv_atomically
from src.data.datasets import CadenceDataset, make_eval_loader, open_cadences
from src.data.kaggle import read_sample_submission
from src.engine.checkpoint import load_weights, read_checkpoint_info, save_checkpoint
from src.engine.inference import evaluate, ordered_by_index, predict_logits
from src.models.classifier import build_model

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# image settings that differ in what the loader must read (ON only, all six) and in the batch transform
ON_VIEW = {"view": "on", "image_size": (32, 32), "tta": ("identity",)}
CHANNELS_VIEW = {"view": "channels", "image_size": (32, 64), "tta": ("identity", "hflip")}
CLEANED_VIEW = {"view": "channels", "image_size": (32, 64), "background": "off_spectrum", "normalize": "observation"}


@pytest.fixture
def write_checkpoint(make_cfg, small_dataset, tmp_path):
    """Checkpoint factory: random weights (from `seed`) of the tiny test model under a config of these fields."""
    data_dir, _, _ = small_dataset

    def write(name: str, seed: int, **fields) -> Path:
        cfg = make_cfg(data_dir=str(data_dir), **{"eval_batch_size": 2, **CHANNELS_VIEW, **fields})
        torch.manual_seed(seed)
        path = tmp_path / "checkpoints" / f"{name}.safetensors"
        path.parent.mkdir(exist_ok=True)
        save_checkpoint(path, build_model(cfg, load_pretrained=False), cfg, fold=seed, epoch=1, metrics={})
        return path

    return write


def alone_logits(paths: list[Path], data_dir: Path) -> list[np.ndarray]:
    """Each checkpoint's logits as evaluation made them before the one pass: a loader of its own, reading its
    view's observations, at its own eval batch size, into its model alone."""
    ids, accelerator = read_sample_submission(data_dir)["id"].tolist(), Accelerator()
    logits = []
    for path in paths:
        cfg = read_checkpoint_info(path).config
        model = build_model(cfg, load_pretrained=False)
        load_weights(model, path)
        dataset, _ = open_cadences(data_dir, "test", ids, None, cfg.view, background=cfg.background)
        loader = make_eval_loader(dataset, cfg.eval_batch_size, num_workers=0)
        values, index = predict_logits(model.eval(), loader, accelerator, cfg, cfg.tta)
        logits.append(ordered_by_index(values, index, len(ids), str(path)))
    return logits


def mean_submission(logits: list[np.ndarray], data_dir: Path, path: Path) -> bytes:
    """The submission of the checkpoints' mean logit: float64 sum in their order over their count, then sigmoid."""
    total = np.zeros(len(logits[0]), dtype=np.float64)
    for model_logits in logits:
        total += model_logits
    submission = read_sample_submission(data_dir)
    submission["target"] = expit(total / len(logits))
    write_csv_atomically(submission, path)
    return path.read_bytes()


def count_cadence_reads(monkeypatch) -> list[int]:
    """Record the indices of every cadence the datasets read."""
    read: list[int] = []
    real_getitems = CadenceDataset.__getitems__

    def getitems(self, indices):
        read.extend(indices)
        return real_getitems(self, indices)

    monkeypatch.setattr(CadenceDataset, "__getitems__", getitems)
    return read


def test_three_checkpoints_give_the_bytes_of_their_mean_logit(write_checkpoint, small_dataset, tmp_path):
    data_dir, _, _ = small_dataset
    paths = [write_checkpoint(f"c{seed}", seed) for seed in range(3)]
    out = tmp_path / "submission.csv"
    evaluate(paths, data_dir, out, num_workers=0)
    assert out.read_bytes() == mean_submission(alone_logits(paths, data_dir), data_dir, tmp_path / "expected.csv")


def test_five_checkpoints_read_each_cadence_once(write_checkpoint, small_dataset, tmp_path, monkeypatch):
    data_dir, _, test_ids = small_dataset
    paths = [write_checkpoint(f"c{seed}", seed) for seed in range(5)]
    read = count_cadence_reads(monkeypatch)
    evaluate(paths[:1], data_dir, tmp_path / "one.csv", num_workers=0)
    assert sorted(read) == list(range(len(test_ids)))
    read.clear()
    evaluate(paths, data_dir, tmp_path / "five.csv", num_workers=0)
    assert sorted(read) == list(range(len(test_ids)))


def test_checkpoints_of_other_views_in_one_pass_give_their_own_logits(
    write_checkpoint, small_dataset, tmp_path, monkeypatch
):
    """An ON-only view, two alike channels views (sharing their images) and one that cleans the background: the
    loader reads all six observations once, each checkpoint takes its own, with its own TTA views."""
    data_dir, _, test_ids = small_dataset
    paths = [
        write_checkpoint("on", 0, **ON_VIEW),
        write_checkpoint("channels", 1),
        write_checkpoint("cleaned", 2, **CLEANED_VIEW),
        write_checkpoint("channels-again", 3),
    ]
    expected = mean_submission(alone_logits(paths, data_dir), data_dir, tmp_path / "expected.csv")
    transforms = []
    real_batch_to_images = src.engine.inference.batch_to_images

    def batch_to_images(observations, cfg):
        transforms.append((cfg.view, observations.shape[1]))
        return real_batch_to_images(observations, cfg)

    monkeypatch.setattr(src.engine.inference, "batch_to_images", batch_to_images)
    read = count_cadence_reads(monkeypatch)
    out = tmp_path / "submission.csv"
    evaluate(paths, data_dir, out, num_workers=0)
    assert out.read_bytes() == expected
    assert sorted(read) == list(range(len(test_ids)))
    assert transforms == [("on", 3), ("channels", 6), ("channels", 6)] * 2  # two batches, three kinds of image


def test_two_processes_feed_every_checkpoint_one_prediction_per_cadence(write_checkpoint, small_dataset, tmp_path):
    """Uneven shards (3 cadences, 2 processes, batches of 1): each checkpoint's logits are gathered without the
    padding duplicates, and the submission matches the single-process one."""
    data_dir, _, _ = small_dataset
    paths = [write_checkpoint("on", 0, **ON_VIEW), write_checkpoint("channels", 1), write_checkpoint("c", 2)]
    single = tmp_path / "single.csv"
    evaluate(paths, data_dir, single, batch_size=1, num_workers=0)
    launch = [str(BIN / "accelerate"), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mpirun_hostfile", "configs/localhost.hostfile", "--mixed_precision", "no", "--dynamo_backend", "no"]
    out = tmp_path / "two.csv"
    command = [*launch, "evaluate.py", "--checkpoints", *map(str, paths), "--data-dir", str(data_dir)]
    command += ["--out", str(out), "--batch-size", "1", "--num-workers", "0"]
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    two, one = pd.read_csv(out, dtype={"id": str}), pd.read_csv(single, dtype={"id": str})
    assert two["id"].tolist() == one["id"].tolist()
    np.testing.assert_allclose(two["target"], one["target"], rtol=0, atol=1e-6)


def test_one_pass_takes_the_smallest_eval_batch_size(write_checkpoint, small_dataset, tmp_path, monkeypatch):
    data_dir, _, _ = small_dataset
    paths = [write_checkpoint("large", 0, eval_batch_size=8), write_checkpoint("small", 1, eval_batch_size=2)]
    sizes = []
    real_loader = src.engine.inference.make_eval_loader

    def make_eval_loader(dataset, batch_size, *args):
        sizes.append(batch_size)
        return real_loader(dataset, batch_size, *args)

    monkeypatch.setattr(src.engine.inference, "make_eval_loader", make_eval_loader)
    evaluate(paths, data_dir, tmp_path / "smallest.csv", num_workers=0)
    evaluate(paths, data_dir, tmp_path / "given.csv", batch_size=3, num_workers=0)
    assert sizes == [2, 3]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_counts_cadences_and_leaves_one_summary_line(
    write_checkpoint, small_dataset, tmp_path, capsys, monkeypatch
):
    """On a terminal a bar over the cadences, with their rate, that erases itself (no empty line left); in a log
    file no bar at all; in both one line with the pass's rate."""
    data_dir, _, test_ids = small_dataset
    paths = [write_checkpoint(f"c{seed}", seed) for seed in range(2)]
    evaluate(paths, data_dir, tmp_path / "logged.csv", num_workers=0)
    logged = capsys.readouterr()
    assert "\r" not in logged.err and "%|" not in logged.err
    assert f"{len(test_ids)} cadences read once for 2 checkpoint(s) in" in logged.out
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    evaluate(paths, data_dir, tmp_path / "terminal.csv", num_workers=0)
    drawn = terminal.getvalue()
    assert f"0/{len(test_ids)}" in drawn and "cadence/s" in drawn
    assert "\n" not in drawn and drawn.endswith("\r") and not drawn.split("\r")[-2].strip()  # erased at the end
    assert f"{len(test_ids)} cadences read once for 2 checkpoint(s) in" in capsys.readouterr().out


def test_checkpoints_of_another_data_geometry_are_refused(write_checkpoint, small_dataset, tmp_path):
    data_dir, _, _ = small_dataset
    kaggle = write_checkpoint("kaggle", 0)
    snippets = write_checkpoint("snippets", 1, observation_shape=(16, 256))
    out = tmp_path / "submission.csv"
    command = ["evaluate.py", "--checkpoints", str(kaggle), str(snippets), "--data-dir", str(data_dir), "--out"]
    result = subprocess.run([sys.executable, *command, str(out)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines() == [
        f"error: {snippets}: trained on observations of 16 x 256, but {kaggle} on 273 x 256; one evaluation reads "
        "one data geometry: evaluate them separately"
    ]
    assert not out.exists()
