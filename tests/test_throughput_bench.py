"""bench/throughput.py end to end on a few cadences: every loader, model and memory figure is measured and
reported, and the ON-only cache reads half the bytes of the files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from bench.lib.throughput import PublicPipelineDataset, kaggle_inference_estimate, tree_rss
from src.core.config import Config
from src.data.kaggle import load_cadence
from src.transforms.images import cadence_to_image

REPO = Path(__file__).resolve().parents[1]


def test_public_pipeline_dataset_gives_the_same_model_input_as_the_project(synth_dir):
    """The baseline does the same work, only per sample: its images match the project's batch transform."""
    data_dir, _ = synth_dir
    path = next((data_dir / "train").rglob("*.npy"))
    cases = (
        ("on", "observation", None),
        ("all", "sample", (64, 32)),
        ("channels", "observation", (32, 64)),
        ("dedoppler", "observation", (32, 256)),
    )
    for view, normalization, size in cases:
        cfg = Config(view=view, normalize=normalization, image_size=size, tracker=())
        image = PublicPipelineDataset([path], cfg)[0]["image"]
        torch.testing.assert_close(
            image, cadence_to_image(load_cadence(path), view, normalization, size), rtol=1e-3, atol=1e-3
        )


def test_kaggle_estimate_counts_every_fold_and_view():
    (estimate,) = kaggle_inference_estimate([{"recipe": "r", "inference_samples_per_second": 1000.0}], {"r": 5})
    assert estimate["forward_passes"] == 39_995 * 5 * 4
    assert estimate["minutes"] == round(39_995 * 5 * 4 / 1000 / 60, 1)


def test_tree_rss_counts_this_process():
    own, total = tree_rss(os.getpid())
    assert 0 < own <= total


def test_throughput_benchmark_end_to_end(synth_dir, tmp_path):
    data_dir, _ = synth_dir
    recipe = tmp_path / "tiny_on.yaml"
    recipe.write_text("model_name: test_efficientnet\nview: 'on'\nnormalize: observation\nimage_size: [64, 32]\n")
    out = tmp_path / "report"
    command = [
        sys.executable,
        "bench/throughput.py",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--recipes",
        str(recipe),
        "--n-loader",
        "8",
        "--batch-size",
        "3",
        "--workers",
        "1",
        "--model-batch-size",
        "2",
        "--model-steps",
        "1",
        "--rss-sizes",
        "4,8",
        "--feed-on-cpu",
        "--feed-steps",
        "2",
        "--rss-recipe",
        str(recipe),
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    (loaders,) = report["loaders"]
    rates = loaders["samples_per_second"]
    assert set(rates) == {
        "public_pipeline",
        "plain_np_load",
        "project_file_tree",
        "project_packed",
        "project_file_tree_delivery",
        "project_packed_delivery",
        "raw_copy",
    }
    assert all(v > 0 for v in rates.values())
    read = loaders["bytes_read_per_sample"]
    assert read["packed"] <= read["raw_file_size"] / 2 < read["file_tree"]
    (model,) = report["models"]
    assert model["train_samples_per_second"] > 0 and model["inference_samples_per_second"] > 0
    (fed,) = report["fed"]
    assert fed["device"] == "cpu" and fed["in_memory_step_seconds"] > 0 and fed["loader_fed_step_seconds"] > 0
    assert [r["n_cadences"] for r in report["rss"]] == [4, 8] and all(
        r["peak_rss_main_mib"] > 50 for r in report["rss"]
    )
    text = (out / "report.md").read_text()
    assert "| tiny_on | on, 64x32 |" in text and "Peak RSS at 8 vs 4 cadences" in text
    assert ("Not estimated: this run had no GPU" in text) == (not torch.cuda.is_available())
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "already exists" in again.stderr  # a report is never silently replaced
    assert np.isfinite(list(rates.values())).all()
