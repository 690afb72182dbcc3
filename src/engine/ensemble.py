"""Ensembles across runs (evaluate.py --ensemble): the checkpoints of one run folder (its folds) are one member,
their logits averaged; the members are then combined by the user's rule:

- mean (the default): the mean logit over every checkpoint, then the sigmoid, as a run's folds are averaged;
- rank: the mean over the members of each member's rank of a cadence among all of them, in (0, 1]: members on
  different scales (another backbone, another loss) count alike;
- vote: the share of members whose probability reaches the vote threshold, the majority rule of the Kaggle
  projects our users come from (a share rather than 0/1, so that cadences stay ranked);
- weighted: sigmoid(b + sum of w_m x member m's logit), w >= 0 and b fitted by log loss on the members'
  out-of-fold logits (each run's oof.csv). The runs must have the same folds, or their out-of-fold predictions
  would disagree about which cadences each model was kept from.

Every member's out-of-fold ROC AUC, and the ensemble's by the same rule, go into the evaluation's summary (the
weighted ensemble's is measured on the predictions its weights were fitted to: optimistic, and said so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit, logit
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from src.core.errors import CheckpointError, ConfigError

ENSEMBLE_MODES = ("mean", "rank", "vote", "weighted")
OOF_FILE, FOLDS_FILE = "oof.csv", "folds.csv"


@dataclass(frozen=True)
class Member:
    """One run of an ensemble: its folder and the positions of its checkpoints in the evaluated list."""

    run_dir: Path
    checkpoints: tuple[int, ...]


@dataclass(frozen=True)
class Weights:
    """The weighted ensemble's logit weights (one per member, >= 0) and bias."""

    weights: np.ndarray
    bias: float


def members_of(checkpoints: list[Path]) -> list[Member]:
    """The checkpoints grouped by run folder (their parent), in the order the folders first appear."""
    groups: dict[Path, list[int]] = {}
    for position, path in enumerate(checkpoints):
        groups.setdefault(Path(path).parent, []).append(position)
    return [Member(run_dir, tuple(positions)) for run_dir, positions in groups.items()]


def member_logits(checkpoint_logits: list[np.ndarray], members: list[Member]) -> np.ndarray:
    """(members, cadences): each member's mean logit over its checkpoints."""
    return np.stack([np.mean([checkpoint_logits[i] for i in m.checkpoints], axis=0) for m in members])


def combine(logits: np.ndarray, mode: str, weights: Weights | None = None, vote_threshold: float = 0.5):
    """The ensemble's score of each cadence from its members' logits (members, cadences)."""
    if mode == "mean":
        return expit(logits.mean(axis=0))
    if mode == "rank":
        return np.mean([rankdata(row) / row.size for row in logits], axis=0)
    if mode == "vote":
        return (logits >= logit(vote_threshold)).mean(axis=0)
    if mode == "weighted":
        return expit(weights.bias + weights.weights @ logits)
    raise ConfigError(f"--ensemble: choose from {', '.join(ENSEMBLE_MODES)}, got {mode!r}")


def fit_weights(logits: np.ndarray, target: np.ndarray) -> Weights:
    """Non-negative weights and a bias minimising the log loss of sigmoid(b + w . logits) (L-BFGS-B)."""
    n_members = logits.shape[0]
    signs = 2.0 * target - 1.0

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        margin = signs * (params[-1] + params[:-1] @ logits)
        value = -log_expit(margin).mean()
        slope = -expit(-margin) * signs / len(target)
        return value, np.append(logits @ slope, slope.sum())

    start = np.append(np.full(n_members, 1.0 / n_members), 0.0)
    bounds = [(0.0, None)] * n_members + [(None, None)]
    fitted = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return Weights(weights=fitted.x[:-1], bias=float(fitted.x[-1]))


def read_oof(run_dir: Path) -> pd.DataFrame:
    """A run's out-of-fold predictions (id, target, fold, logit), or an error naming the missing file."""
    path = run_dir / OOF_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path}: not found; an ensemble's out-of-fold figures need each run's out-of-fold predictions "
            "(a finished main.py run folder)"
        )
    return pd.read_csv(path, dtype={"id": str})


def require_same_folds(members: list[Member]) -> None:
    """Refuse runs whose folds.csv assign the cadences to other folds than the first run's."""
    first = None
    for member in members:
        path = member.run_dir / FOLDS_FILE
        if not path.is_file():
            raise CheckpointError(f"{path}: not found; --ensemble weighted needs each run's folds")
        folds = pd.read_csv(path, dtype={"id": str})[["id", "fold"]].sort_values("id").reset_index(drop=True)
        if first is None:
            first = (path, folds)
        elif not folds.equals(first[1]):
            raise CheckpointError(
                f"{path}: its folds differ from {first[0]}; --ensemble weighted fits its weights on out-of-fold "
                "predictions, which need the same folds in every run"
            )


def oof_matrix(members: list[Member]) -> tuple[np.ndarray, np.ndarray]:
    """(members, cadences) out-of-fold logits over the cadences every run predicted, and their targets."""
    tables = [read_oof(m.run_dir)[["id", "target", "logit"]] for m in members]
    joined = tables[0].rename(columns={"logit": "logit_0"})
    for k, table in enumerate(tables[1:], start=1):
        renamed = table.rename(columns={"logit": f"logit_{k}", "target": "target_k"})
        joined = joined.merge(renamed, on="id")
        if (joined["target"] != joined.pop("target_k")).any():
            raise CheckpointError(
                f"{members[k].run_dir / OOF_FILE}: its labels differ from {members[0].run_dir / OOF_FILE}'s for "
                "the same ids; the runs were trained on different data"
            )
    if joined.empty:
        raise CheckpointError(f"{members[0].run_dir / OOF_FILE}: no out-of-fold cadence is shared by every run")
    logits = joined[[f"logit_{k}" for k in range(len(members))]].to_numpy(dtype=np.float64).T
    return logits, joined["target"].to_numpy(dtype=np.int64)


def out_of_fold_summary(
    members: list[Member],
    oof: tuple[np.ndarray, np.ndarray],
    mode: str,
    weights: Weights | None,
    vote_threshold: float,
) -> dict[str, object]:
    """Each member's out-of-fold AUC and the ensemble's by `mode`, from `oof_matrix`'s logits and targets."""
    logits, target = oof
    rows = [
        {"run": str(m.run_dir), "checkpoints": len(m.checkpoints), "oof_auc": float(roc_auc_score(target, row))}
        for m, row in zip(members, logits, strict=True)
    ]
    score = combine(logits, mode, weights, vote_threshold)
    return {"members": rows, "ensemble_oof_auc": float(roc_auc_score(target, score)), "n_oof": int(target.size)}


def ensemble_lines(summary: dict) -> list[str]:
    """The ensemble's rule and its members' out-of-fold AUCs, as Markdown lines (none for one run's mean)."""
    if "members" not in summary:
        return []
    lines = ["", f"Ensemble: **{summary['ensemble']}** of {len(summary['members'])} run(s).", ""]
    lines += ["| run | checkpoints | weight | out-of-fold AUC |", "|---|---:|---:|---:|"]
    weights = summary.get("weights", {})
    for member in summary["members"]:
        weight = f"{weights[member['run']]:.3f}" if member["run"] in weights else ""
        lines.append(f"| {member['run']} | {member['checkpoints']} | {weight} | {member['oof_auc']:.4f} |")
    fitted = " (its weights fitted on these predictions: optimistic)" if summary["ensemble"] == "weighted" else ""
    lines.append(
        f"| **ensemble** | | | **{summary['ensemble_oof_auc']:.4f}** |\n\nOut-of-fold AUCs over the "
        f"{summary['n_oof']} cadences every run predicted{fitted}."
    )
    return lines


def ensemble_summary(
    checkpoints: Sequence[Path], ensemble: str, vote_threshold: float
) -> tuple[list[Member], Weights | None, dict]:
    """The runs of an ensemble, the weighted rule's weights, and the out-of-fold figures for the summary (when
    every run folder has its oof.csv; required by the weighted rule)."""
    if ensemble not in ENSEMBLE_MODES:
        raise ConfigError(f"--ensemble: choose from {', '.join(ENSEMBLE_MODES)}, got {ensemble!r}")
    if not 0.0 < vote_threshold < 1.0:
        raise ConfigError(f"--vote-threshold must lie strictly between 0 and 1, got {vote_threshold}")
    members = members_of(list(checkpoints))
    if ensemble != "mean" and len(members) < 2:
        raise ConfigError(
            f"--ensemble {ensemble}: needs the checkpoints of at least two runs (run folders), got only "
            f"{members[0].run_dir}"
        )
    weights, summary = None, {"ensemble": ensemble}
    if ensemble == "weighted":
        require_same_folds(members)
    if len(members) > 1 and (ensemble == "weighted" or all((m.run_dir / OOF_FILE).is_file() for m in members)):
        oof = oof_matrix(members)
        if ensemble == "weighted":
            weights = fit_weights(*oof)
            summary["weights"] = {str(m.run_dir): float(w) for m, w in zip(members, weights.weights, strict=True)}
            summary["bias"] = weights.bias
        summary.update(out_of_fold_summary(members, oof, ensemble, weights, vote_threshold))
    return members, weights, summary
