"""bench/ablation.py end to end on tiny data: variants trained through main.py (a pseudo-labelled second
stage included), scored by bench/detection.py, tabulated; a second call keeps the finished runs."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.lib.ablation import VARIANTS, AblationSettings, markdown, metric
from src.core.config import add_config_arguments, config_from_args

REPO = Path(__file__).resolve().parents[1]
TINY = (
    "--model-name test_efficientnet --image-size 32,64 --epochs 1 --n-folds 2 --batch-size 4 --num-workers 0 "
    "--tta identity"
)


def test_variants_are_distinct_and_the_baseline_comes_first():
    names = [v.name for v in VARIANTS]
    assert names[0] == "baseline" and len(set(names)) == len(names)
    assert {v.kind for v in VARIANTS} == {"train", "tta", "pseudo"}


def test_every_variant_sets_what_it_names():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    base = ["--config", str(REPO / "configs" / "ablation_cpu.yaml")]
    configs = {v.name: config_from_args(parser.parse_args([*base, *v.flags])) for v in VARIANTS}
    assert configs["partial-injection"].inject_partial_prob == 0.3 and configs["partial-injection"].inject_prob == 0.3
    assert configs["injection"].inject_partial_prob == 0.0  # the row it is compared with has whole needles only


def test_a_subgroup_the_benchmark_set_lacks_is_not_applicable():
    method = {"subgroups": {"all": {"auc": 0.9}}}
    assert metric(method, "all", "auc") == 0.9
    assert metric(method, "clean SNR >= 20 in 1 ON observation", "recall_at_1pct_fpr") is None


def test_markdown_shows_differences_from_the_baseline(tmp_path):
    settings = AblationSettings(Path("base.yaml"), tmp_path, tmp_path, tmp_path)
    row = {
        "overall AUC": 0.9,
        "clean AUC": 0.95,
        "vs all-six-interference negatives": None,
        "positives with interference": 0.8,
        "clean linear SNR >= 10, recall at 1% FPR": 1.0,
    }
    rows = [
        {"variant": "baseline", "technique": "base", **row},
        {"variant": "gem", "technique": "GeM", **row, "overall AUC": 0.925},
    ]
    text = markdown(settings, rows, "3 epochs", "python bench/ablation.py")
    assert "| gem | GeM | 0.9250 (+0.0250) | 0.9500 (+0.0000) | n/a |" in text
    assert "| baseline | base | 0.9000 | 0.9500 | n/a |" in text


def test_ablation_end_to_end(synth_dir, tiny_benchmark, tmp_path):
    bench_dir = tiny_benchmark
    train_dir, _ = synth_dir
    out = tmp_path / "ablation"
    command = [
        sys.executable,
        "bench/ablation.py",
        "--data-dir",
        str(train_dir),
        "--bench-dir",
        str(bench_dir),
        "--out",
        str(out),
        "--variants",
        "baseline,tta-identity,injection,pseudo",
        "--main-flags",
        TINY,
    ]
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((out / "ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["baseline", "tta-identity", "injection", "pseudo", "de-Doppler"]
    assert all(0 <= r["overall AUC"] <= 1 for r in rows)
    assert rows[0]["train_seconds"] > 0 and rows[-1]["train_seconds"] is None
    assert "join the training set" in (out / "ablation.log").read_text()  # the pseudo stage used its labels
    assert (out / "benchmark" / "report.md").is_file() and (out / "benchmark-identity" / "report.json").is_file()
    text = (out / "ablation.md").read_text()
    assert "| injection | on-the-fly needle injection (30% of samples) |" in text and "Budget:" in text

    trained = (out / "runs" / "baseline" / "fold0.safetensors").stat().st_mtime_ns
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "runs" / "baseline" / "fold0.safetensors").stat().st_mtime_ns == trained  # kept, not retrained
