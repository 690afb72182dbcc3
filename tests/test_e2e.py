"""End to end through the entry points a user types: synthesise -> main.py -> evaluate.py -> submission.csv.

Also the same training as two processes (`accelerate launch --cpu --num_processes 2`, MPI-launched), which
must still give exactly one out-of-fold prediction per training cadence and a complete submission.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import accelerate_launch
from matplotlib.image import imread

from src.synth.generator import SynthConfig, write_dataset

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_TRAINING = [
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
    "8",
    "--eval-batch-size",
    "7",  # does not divide the fold sizes: exercises padding removal
    "--num-workers",
    "0",
    "--tracker",
    "none",
    "--lr",
    "1e-3",
]


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "WANDB_MODE": "disabled", **env}
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """31 train cadences (odd on purpose), 11 test cadences."""
    path = tmp_path_factory.mktemp("e2e") / "input"
    write_dataset(path, SynthConfig(seed=3, pos_frac=0.3), n_train=31, n_test=11, workers=1, progress=False)
    return path


def check_run(run_dir: Path, data_dir: Path) -> None:
    labels = pd.read_csv(data_dir / "train_labels.csv", dtype={"id": str})
    oof = pd.read_csv(run_dir / "oof.csv", dtype={"id": str})
    assert len(oof) == len(labels) and set(oof["id"]) == set(labels["id"])
    merged = oof.merge(labels, on="id", suffixes=("", "_truth"))
    assert (merged["target"] == merged["target_truth"]).all()
    assert oof["pred"].between(0, 1).all()
    folds = pd.read_csv(run_dir / "folds.csv", dtype={"id": str})
    assert sorted(folds["fold"].unique()) == [0, 1]
    assert (oof.set_index("id")["fold"] == folds.set_index("id")["fold"].loc[oof["id"]].values).all()
    for fold in (0, 1):
        assert (run_dir / f"fold{fold}.safetensors").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_oof"] == len(labels) and 0 <= metrics["oof_auc"] <= 1
    assert metrics["mean_fold_auc"] == pytest.approx(np.mean([f["auc"] for f in metrics["folds"]]))
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 2  # one row per fold-epoch
    assert (run_dir / "config.yaml").is_file() and "out-of-fold" in (run_dir / "report.md").read_text()
    check_pictures(run_dir, oof)


def check_pictures(run_dir: Path, oof: pd.DataFrame) -> None:
    """The four pictures are valid PNGs, and the report's section states the confusion at probability 0.5 that
    the out-of-fold predictions give."""
    for name in ("curves.png", "roc.png", "confusion.png", "gradcam.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert min(imread(run_dir / name).shape[:2]) >= 200, name
    report = (run_dir / "report.md").read_text()
    assert report.count("## Pictures") == 1 and "![Grad-CAM](gradcam.png)" in report
    truth, called = oof["target"] == 1, oof["pred"] >= 0.5
    counts = [sum(~truth & ~called), sum(~truth & called), sum(truth & ~called), sum(truth & called)]
    assert f"| probability 0.5 | 0.00 | {' | '.join(map(str, counts))} |" in report


def check_submission(path: Path, data_dir: Path) -> None:
    sample = pd.read_csv(data_dir / "sample_submission.csv", dtype={"id": str})
    submission = pd.read_csv(path, dtype={"id": str})
    assert list(submission.columns) == ["id", "target"]
    assert submission["id"].tolist() == sample["id"].tolist()  # same ids, same order, no duplicates
    assert submission["target"].between(0, 1).all() and submission["target"].notna().all()


def test_single_process_train_and_evaluate(data_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "outputs"
    run(
        [
            sys.executable,
            "main.py",
            "--data-dir",
            str(data_dir),
            "--out-dir",
            str(out_dir),
            "--run-name",
            "tiny",
            *TINY_TRAINING,
        ]
    )
    run_dir = out_dir / "tiny"
    check_run(run_dir, data_dir)

    result = run([sys.executable, "evaluate.py", "--run-dir", str(run_dir)])
    check_submission(run_dir / "submission.csv", data_dir)
    assert "test ROC AUC" in result.stdout  # synthetic data carries test truth
    summary = json.loads((run_dir / "submission_summary.json").read_text())
    assert summary["n_predictions"] == 11 and len(summary["checkpoints"]) == 2
    for name in ("submission_roc.png", "submission_confusion.png"):  # labelled (synthetic) test data
        assert imread(run_dir / name).shape[0] >= 200
    assert sum(map(sum, summary["confusion"]["probability 0.5"]["confusion"])) == 11
    assert "![confusion matrices](submission_confusion.png)" in (run_dir / "report.md").read_text()

    # the pictures drawn again replace their report section, not add a second
    (run_dir / "gradcam.png").unlink()
    run([sys.executable, "-m", "src.pictures", str(run_dir)])
    check_pictures(run_dir, pd.read_csv(run_dir / "oof.csv", dtype={"id": str}))
    report = (run_dir / "report.md").read_text()
    assert report.index("## Pictures") < report.index("## Evaluation: `submission.csv`")  # evaluate's section stays

    # an existing submission is never replaced silently
    failed = subprocess.run(
        [sys.executable, "evaluate.py", "--run-dir", str(run_dir)], cwd=REPO, capture_output=True, text=True
    )
    assert failed.returncode != 0 and "already exists" in failed.stderr
    # nor is an existing run folder
    failed = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--data-dir",
            str(data_dir),
            "--out-dir",
            str(out_dir),
            "--run-name",
            "tiny",
            *TINY_TRAINING,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert failed.returncode != 0 and "already exists" in failed.stderr


def test_two_process_cpu_launch(data_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "outputs"
    launch = accelerate_launch(2, "--mixed_precision", "no", "--dynamo_backend", "no")
    result = run(
        [
            *launch,
            "main.py",
            "--data-dir",
            str(data_dir),
            "--out-dir",
            str(out_dir),
            "--run-name",
            "ddp",
            *TINY_TRAINING,
        ]
    )
    assert "2 process(es)" in result.stdout  # really distributed, not two independent single-process runs
    check_run(out_dir / "ddp", data_dir)

    run([*launch, "evaluate.py", "--run-dir", str(out_dir / "ddp"), "--batch-size", "4"])
    check_submission(out_dir / "ddp" / "submission.csv", data_dir)
    # the same checkpoints in one process give the same prediction for every id: nothing shifted between shards
    single = tmp_path / "single.csv"
    run([sys.executable, "evaluate.py", "--run-dir", str(out_dir / "ddp"), "--out", str(single)])
    two = pd.read_csv(out_dir / "ddp" / "submission.csv", dtype={"id": str})
    one = pd.read_csv(single, dtype={"id": str})
    assert two["id"].tolist() == one["id"].tolist()
    assert np.allclose(two["target"], one["target"], atol=1e-5)


def test_sam_in_two_processes_with_accumulation_clipping_and_ema(data_dir: Path, tmp_path: Path) -> None:
    """optimizer sam through `accelerate launch --cpu --num_processes 2`: the replayed micro-batches of each
    update sync once across the processes (a mismatch would hang or fail), with clipping and the EMA after it."""
    out_dir = tmp_path / "outputs"
    launch = accelerate_launch(2, "--mixed_precision", "no", "--dynamo_backend", "no")
    sam = [
        "--optimizer",
        "sam",
        "--sam-rho",
        "0.1",
        "--grad-accum-steps",
        "2",
        "--grad-clip",
        "1",
        "--ema-decay",
        "0.9",
    ]
    result = run(
        [
            *launch,
            "main.py",
            "--data-dir",
            str(data_dir),
            "--out-dir",
            str(out_dir),
            "--run-name",
            "sam",
            *TINY_TRAINING,
            *sam,
        ]
    )
    assert "2 process(es)" in result.stdout
    check_run(out_dir / "sam", data_dir)
    config = (out_dir / "sam" / "config.yaml").read_text()
    assert "optimizer: sam" in config and "sam_rho: 0.1" in config


def test_training_options_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    """bf16 autocast, gradient accumulation, CutMix+Mixup, a class-balanced sampler, GeM, stem stride, OFF
    background cleaning, needle and interference injection and the TensorBoard tracker, all through main.py on
    the stacked ON view."""
    out_dir = tmp_path / "outputs"
    options = [
        "--view",
        "on",
        "--image-size",
        "64,32",
        "--mixed-precision",
        "bf16",
        "--grad-accum-steps",
        "2",
        "--mix",
        "both",
        "--mix-prob",
        "1",
        "--mix-label",
        "or",
        "--sampler-strength",
        "1",
        "--pool",
        "gem",
        "--first-conv-stride",
        "1,2",
        "--tracker",
        "tensorboard",
        "--background",
        "off_spectrum",
        "--inject-prob",
        "0.5",
        "--inject-rfi-prob",
        "0.5",
        "--inject-snr",
        "10,40",
    ]
    run(
        [
            sys.executable,
            "main.py",
            "--data-dir",
            str(data_dir),
            "--out-dir",
            str(out_dir),
            "--run-name",
            "options",
            *TINY_TRAINING,
            *options,
        ]
    )
    run_dir = out_dir / "options"
    check_run(run_dir, data_dir)
    assert list(run_dir.rglob("events.out.tfevents.*")), "no TensorBoard event file written"
    config = (run_dir / "config.yaml").read_text()
    assert "mixed_precision: bf16" in config and "pool: gem" in config and "background: off_spectrum" in config
    assert "inject_rfi_prob: 0.5" in config


def test_dedoppler_view_trains_and_evaluates_through_the_entry_points(data_dir: Path, tmp_path: Path) -> None:
    """The 12-channel view (observations plus aligned de-Doppler planes) with interference injection, through
    main.py and evaluate.py with flip TTA."""
    out_dir = tmp_path / "outputs"
    run(
        [
            sys.executable,
            "main.py",
            "--data-dir",
            str(data_dir),
            "--out-dir",
            str(out_dir),
            "--run-name",
            "dd",
            *TINY_TRAINING,
            "--view",
            "dedoppler",
            "--inject-rfi-prob",
            "0.5",
        ]
    )
    check_run(out_dir / "dd", data_dir)
    assert "view: dedoppler" in (out_dir / "dd" / "config.yaml").read_text()
    run([sys.executable, "evaluate.py", "--run-dir", str(out_dir / "dd"), "--tta", "identity,hflip"])
    check_submission(out_dir / "dd" / "submission.csv", data_dir)


def test_pseudo_labelled_second_stage(data_dir: Path, tmp_path: Path) -> None:
    """--pseudo-labels with a submission file: the test cadences join every fold's training set."""
    sample = pd.read_csv(data_dir / "sample_submission.csv", dtype={"id": str})
    pseudo = sample.assign(target=np.linspace(0.05, 0.95, len(sample)))
    pseudo.to_csv(tmp_path / "stage1.csv", index=False)
    out_dir = tmp_path / "outputs"
    result = run(
        [
            sys.executable,
            "main.py",
            "--data-dir",
            str(data_dir),
            "--out-dir",
            str(out_dir),
            "--run-name",
            "stage2",
            *TINY_TRAINING,
            "--pseudo-labels",
            str(tmp_path / "stage1.csv"),
            "--sampler-strength",
            "1",
        ]
    )
    assert f"{len(sample)} pseudo-labelled cadences join the training set" in result.stdout
    check_run(out_dir / "stage2", data_dir)  # validation and out-of-fold predictions are the labelled cadences only


def test_compiled_training_writes_plain_checkpoints(data_dir: Path, tmp_path: Path) -> None:
    """--compile (torch.compile through Accelerate) trains, and its checkpoints load into an uncompiled model."""
    from safetensors import safe_open

    out_dir = tmp_path / "outputs"
    run(
        [
            sys.executable,
            "main.py",
            "--data-dir",
            str(data_dir),
            "--out-dir",
            str(out_dir),
            "--run-name",
            "compiled",
            *TINY_TRAINING,
            "--compile",
            "--channels-last",
            "--ema-decay",
            "0.9",
        ]
    )
    run_dir = out_dir / "compiled"
    check_run(run_dir, data_dir)
    with safe_open(str(run_dir / "fold0.safetensors"), framework="pt") as handle:
        assert not [k for k in handle.keys() if "_orig_mod" in k]  # noqa: SIM118 (a safetensors handle, not a dict)
    run([sys.executable, "evaluate.py", "--run-dir", str(run_dir)])  # the checkpoint's config compiles it again
    check_submission(run_dir / "submission.csv", data_dir)


def test_snippets_of_another_geometry_train_and_evaluate_through_the_entry_points(tmp_path: Path) -> None:
    """Scan-style snippets, (6, 16, 256) per cadence with each observation's window following the drift: the run
    config says so (observation_shape, window), injection draws needles and interference in that frame, and
    evaluate.py reads the test snippets with the checkpoint's geometry."""
    from conftest import write_snippet_dataset

    data_dir = tmp_path / "snippets"
    write_snippet_dataset(data_dir, n_train=40, n_test=10, shape=(16, 256), seed=4)
    out_dir = tmp_path / "outputs"
    geometry = ["--observation-shape", "16,256", "--window", "follows_drift", "--view", "channels"]
    options = ["--inject-prob", "0.3", "--inject-rfi-prob", "0.3", "--model-name", "resnet10t"]
    tiny = ["--first-conv-stride", "1,2", "--epochs", "1", "--n-folds", "2", "--batch-size", "8", "--lr", "1e-3"]
    quiet = ["--num-workers", "0", "--tracker", "none"]
    command = [sys.executable, "main.py", "--data-dir", str(data_dir), "--out-dir", str(out_dir), "--run-name", "fb"]
    run([*command, *geometry, *options, *tiny, *quiet])
    run_dir = out_dir / "fb"
    check_run(run_dir, data_dir)
    config = (run_dir / "config.yaml").read_text()
    assert "window: follows_drift" in config and "observation_shape:\n- 16\n- 256" in config
    result = run([sys.executable, "evaluate.py", "--run-dir", str(run_dir)])
    check_submission(run_dir / "submission.csv", data_dir)
    assert len(pd.read_csv(run_dir / "submission.csv")) == 10 and "test ROC AUC" in result.stdout


def test_a_run_folder_from_before_the_layout_change_still_evaluates(small_dataset, tmp_path):
    """tests/fixtures/run-1c281e3 holds a checkpoint and config written by commit 1c281e3 (the flat src/ of
    before the rooms), and the submission that commit's evaluate.py made from it on the `small_dataset`
    cadences (the dedoppler view, OFF-spectrum cleaning, per-observation normalisation, a resize and two TTA
    views). Today's evaluate.py reads it and gives the same predictions."""
    data_dir, _, _ = small_dataset
    fixture = REPO / "tests" / "fixtures" / "run-1c281e3"
    out = tmp_path / "submission.csv"
    run([sys.executable, "evaluate.py", "--run-dir", str(fixture), "--data-dir", str(data_dir), "--out", str(out)])
    submission, expected = (
        pd.read_csv(out, dtype={"id": str}),
        pd.read_csv(fixture / "expected_submission.csv", dtype={"id": str}),
    )
    assert submission["id"].tolist() == expected["id"].tolist()
    np.testing.assert_allclose(submission["target"], expected["target"], rtol=0, atol=1e-6)
    assert sorted(p.name for p in fixture.iterdir()) == ["config.yaml", "expected_submission.csv", "fold0.safetensors"]
