"""Ensembles across runs (src/engine/ensemble.py, evaluate.py --ensemble): the four rules on known logits, the
weights fitted on out-of-fold predictions, the refusals, and evaluate() itself on two tiny runs written by hand
(random-weight checkpoints, out-of-fold tables and folds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import expit, logit
from sklearn.metrics import roc_auc_score

from src.core.errors import CheckpointError, ConfigError
from src.engine.checkpoint import save_checkpoint
from src.engine.ensemble import Member, Weights, combine, fit_weights, members_of
from src.engine.inference import evaluate
from src.models.classifier import build_model

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------- rules ---


def test_members_are_the_run_folders_in_order():
    paths = [Path("b/fold0.safetensors"), Path("a/fold0.safetensors"), Path("b/fold1.safetensors")]
    assert members_of(paths) == [Member(Path("b"), (0, 2)), Member(Path("a"), (1,))]


def test_the_four_rules_on_known_logits():
    logits = np.array([[-2.0, 0.0, 3.0, 1.0], [10.0, 20.0, 40.0, 30.0], [0.5, -0.5, -1.0, 2.0]])
    np.testing.assert_allclose(combine(logits, "mean"), expit(logits.mean(axis=0)))
    # ranks in each row: [1, 2, 4, 3], [1, 2, 4, 3], [3, 2, 1, 4], over 4 cadences
    np.testing.assert_allclose(combine(logits, "rank"), np.array([5, 6, 9, 10]) / 12)
    np.testing.assert_allclose(combine(logits, "vote"), [2 / 3, 2 / 3, 2 / 3, 1.0])  # probability >= 0.5
    np.testing.assert_allclose(combine(logits, "vote", vote_threshold=expit(2.5)), [1 / 3, 1 / 3, 2 / 3, 1 / 3])
    weights = Weights(np.array([1.0, 0.0, 2.0]), -0.5)
    np.testing.assert_allclose(combine(logits, "weighted", weights), expit(-0.5 + logits[0] + 2 * logits[2]))
    with pytest.raises(ConfigError, match="choose from"):
        combine(logits, "median")


def test_fitted_weights_favour_the_informative_run_and_are_never_negative():
    """Three runs' out-of-fold logits: one informative, one pure noise, one informative but inverted (a negative
    weight would use it; weights are kept >= 0). The fitted ensemble is at least as good as the best run."""
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, 2000)
    good = 2.0 * (target - 0.5) + rng.normal(0, 1, target.size)
    noise = rng.normal(0, 3, target.size)
    inverted = -good + rng.normal(0, 1, target.size)
    logits = np.stack([good, noise, inverted])
    fitted = fit_weights(logits, target)
    assert (fitted.weights >= 0).all()
    assert fitted.weights[0] > 0.5 and fitted.weights[1] < 0.05 and fitted.weights[2] < 1e-6
    auc = roc_auc_score(target, combine(logits, "weighted", fitted))
    assert auc >= roc_auc_score(target, good) - 1e-9
    assert roc_auc_score(target, combine(logits, "mean")) < auc  # the plain mean is hurt by the other two


# ----------------------------------------------------------- two tiny runs ---


@pytest.fixture
def two_runs(make_cfg, small_dataset, tmp_path):
    """Two run folders of two random-weight checkpoints each, with out-of-fold tables (logits that rank the
    train cadences well in run a, badly in run b) and the same folds."""
    data_dir, _, _ = small_dataset
    labels = pd.read_csv(data_dir / "train_labels.csv", dtype={"id": str})
    folds = labels.assign(fold=np.arange(len(labels)) % 2)
    runs = []
    for name, seed, sign in (("a", 0, 1.0), ("b", 10, -0.3)):
        run = tmp_path / name
        run.mkdir()
        for fold in (0, 1):
            cfg = make_cfg(data_dir=str(data_dir), eval_batch_size=2, view="channels", image_size=(32, 64))
            torch.manual_seed(seed + fold)
            model = build_model(cfg, load_pretrained=False)
            save_checkpoint(run / f"fold{fold}.safetensors", model, cfg, fold=fold, epoch=1, metrics={})
        folds.to_csv(run / "folds.csv", index=False)
        oof = folds.assign(logit=sign * (2 * folds.target - 1) + 0.1 * np.arange(len(folds)))
        oof.assign(pred=expit(oof.logit)).to_csv(run / "oof.csv", index=False)
        runs.append(run)
    return data_dir, runs


def checkpoints_of(runs):
    return [run / f"fold{k}.safetensors" for run in runs for k in (0, 1)]


def run_logits(data_dir, run, tmp_path) -> np.ndarray:
    """A run's mean logit per test cadence, from its own mean-rule submission."""
    out = tmp_path / f"{run.name}-alone.csv"
    evaluate(checkpoints_of([run]), data_dir, out, num_workers=0)
    return logit(pd.read_csv(out)["target"].to_numpy())


def test_evaluate_combines_the_runs_by_each_rule(two_runs, tmp_path):
    data_dir, runs = two_runs
    members = np.stack([run_logits(data_dir, run, tmp_path) for run in runs])
    for rule in ("rank", "vote", "weighted"):
        out = tmp_path / f"{rule}.csv"
        summary = evaluate(checkpoints_of(runs), data_dir, out, num_workers=0, ensemble=rule)
        written = pd.read_csv(out)["target"].to_numpy()
        weights = (
            Weights(np.array([summary["weights"][str(r)] for r in runs]), summary["bias"])
            if rule == "weighted"
            else None
        )
        np.testing.assert_allclose(written, combine(members, rule, weights), rtol=1e-6, atol=1e-9)
        assert summary["ensemble"] == rule and [m["run"] for m in summary["members"]] == [str(r) for r in runs]
        assert summary["members"][0]["oof_auc"] == 1.0 and summary["members"][1]["oof_auc"] == 0.0
        assert json.loads(out.with_name(f"{rule}_summary.json").read_text())["ensemble"] == rule
    assert summary["weights"][str(runs[1])] == 0.0 and summary["ensemble_oof_auc"] == 1.0  # run b is ignored


def test_evaluate_refuses_what_an_ensemble_cannot_use(two_runs, tmp_path):
    data_dir, runs = two_runs
    with pytest.raises(ConfigError, match="at least two runs"):
        evaluate(checkpoints_of(runs[:1]), data_dir, tmp_path / "x.csv", num_workers=0, ensemble="rank")
    with pytest.raises(ConfigError, match="vote-threshold"):
        evaluate(checkpoints_of(runs), data_dir, tmp_path / "x.csv", num_workers=0, ensemble="vote", vote_threshold=1)
    oof = pd.read_csv(runs[1] / "oof.csv")
    oof.assign(target=1 - oof.target).to_csv(runs[1] / "oof.csv", index=False)
    with pytest.raises(CheckpointError, match="labels differ"):
        evaluate(checkpoints_of(runs), data_dir, tmp_path / "x.csv", num_workers=0, ensemble="weighted")
    (runs[1] / "oof.csv").unlink()
    with pytest.raises(CheckpointError, match=r"oof\.csv: not found"):
        evaluate(checkpoints_of(runs), data_dir, tmp_path / "x.csv", num_workers=0, ensemble="weighted")
    assert not (tmp_path / "x.csv").exists()
    folds = pd.read_csv(runs[1] / "folds.csv")
    folds.assign(fold=1 - folds.fold).to_csv(runs[1] / "folds.csv", index=False)
    with pytest.raises(CheckpointError, match="folds differ"):
        evaluate(checkpoints_of(runs), data_dir, tmp_path / "x.csv", num_workers=0, ensemble="weighted")
    assert not (tmp_path / "x.csv").exists()


def test_the_command_takes_several_run_folders(two_runs, tmp_path):
    data_dir, runs = two_runs
    out = tmp_path / "vote.csv"
    command = [sys.executable, "evaluate.py", "--run-dir", *map(str, runs), "--data-dir", str(data_dir)]
    done = subprocess.run(
        [*command, "--ensemble", "vote", "--out", str(out), "--num-workers", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(pd.read_csv(out)["target"]) <= {0.0, 0.5, 1.0}  # each of two runs votes or not


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ensemble", "median"], "argument --ensemble: invalid choice: 'median'"),
        (["--ensemble", "vote", "--vote-threshold", "1.5"], "--vote-threshold must lie strictly between 0 and 1"),
    ],
)
def test_bad_ensemble_flags_are_one_error_line(two_runs, tmp_path, flags, message):
    data_dir, runs = two_runs
    command = [sys.executable, "evaluate.py", "--run-dir", *map(str, runs), "--data-dir", str(data_dir)]
    done = subprocess.run(
        [*command, *flags, "--out", str(tmp_path / "x.csv")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "x.csv").exists()
