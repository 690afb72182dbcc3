"""The pictures people judge a run by: loss and AUC curves per fold, the out-of-fold ROC curve, confusion
matrices at stated thresholds, and Grad-CAM overlays (the `grad-cam` library) of what the network looks at.

main.py writes them into the run folder at the end of training (`write_run_pictures`); `python -m src.pictures
RUN_DIR` draws them again for a finished run; evaluate.py draws the ROC and confusion of a labelled test set.
Figures use matplotlib's object API (no pyplot), so drawing changes no global state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget
from sklearn.metrics import roc_auc_score, roc_curve

from src.core.cadence import ON_OBSERVATIONS, view_observations
from src.core.errors import ModelError
from src.core.files import write_atomically
from src.data.datasets import run_cadences
from src.engine.checkpoint import checkpoint_name, load_weights, read_checkpoint_info
from src.models.classifier import build_model
from src.transforms.images import CHANNEL_VIEWS, batch_to_images

CURVES_PNG = "curves.png"
ROC_PNG = "roc.png"
CONFUSION_PNG = "confusion.png"
GRADCAM_PNG = "gradcam.png"
MAX_FALSE_POSITIVE_RATE = 0.01  # the operating point the pictures and the report state, beside probability 0.5
EXAMPLES_PER_KIND = 2  # Grad-CAM columns per kind: the most confident true positives, false positives, misses
DPI = 110
GRADCAM_DPI = 80  # its panels are noise, which PNG cannot compress: fewer pixels keep the file under ~1 MB
PICTURES_HEADING = "## Pictures"
AT_FPR = f"{MAX_FALSE_POSITIVE_RATE:.0%} false-positive rate"  # the label of the threshold at that rate


@dataclass(frozen=True)
class Threshold:
    """A decision threshold on the logit, with the words that say how it was chosen."""

    label: str
    logit: float


def save_figure(figure: Figure, path: Path, dpi: int = DPI) -> None:
    """Write a PNG through a temporary file, so a kill never leaves half a picture."""
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=dpi))


def operating_threshold(targets: np.ndarray, logits: np.ndarray, max_fpr: float = MAX_FALSE_POSITIVE_RATE) -> float:
    """The lowest logit threshold whose false-positive rate is at most `max_fpr` (a cadence is called a needle
    at or above it): the point of the ROC curve with the most recall there."""
    fpr, _, thresholds = roc_curve(targets, logits)
    allowed = np.flatnonzero(fpr <= max_fpr)
    return float(thresholds[allowed[-1]])


def stated_thresholds(targets: np.ndarray, logits: np.ndarray) -> list[Threshold]:
    """The two thresholds every picture and report states: 1% false positives, and probability 0.5."""
    return [Threshold(AT_FPR, operating_threshold(targets, logits)), Threshold("probability 0.5", 0.0)]


def confusion_counts(targets: np.ndarray, logits: np.ndarray, threshold: float) -> np.ndarray:
    """[[true negatives, false positives], [false negatives, true positives]], a needle called at logit >=
    threshold."""
    truth, called = np.asarray(targets).astype(bool), np.asarray(logits) >= threshold
    return np.array(
        [[np.sum(~truth & ~called), np.sum(~truth & called)], [np.sum(truth & ~called), np.sum(truth & called)]]
    )


def plot_curves(metrics: pd.DataFrame, path: Path) -> Figure:
    """Training and validation loss, and validation ROC AUC, against the epoch; one colour per fold."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    loss_axes, auc_axes = figure.subplots(1, 2)
    for index, (fold, rows) in enumerate(metrics.sort_values(["fold", "epoch"]).groupby("fold")):
        colour = f"C{index % 10}"
        loss_axes.plot(rows["epoch"], rows["train_loss"], "-o", color=colour, ms=3, label=f"fold {fold} train")
        loss_axes.plot(rows["epoch"], rows["valid_loss"], "--s", color=colour, ms=3, label=f"fold {fold} valid")
        auc_axes.plot(rows["epoch"], rows["valid_auc"], "-o", color=colour, ms=3, label=f"fold {fold}")
    loss_axes.set(xlabel="epoch", ylabel="binary cross-entropy", title="loss (solid: training, dashed: validation)")
    auc_axes.set(xlabel="epoch", ylabel="ROC AUC", title="validation ROC AUC")
    for axes in (loss_axes, auc_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small", ncols=2 if axes is loss_axes else 1)
    save_figure(figure, path)
    return figure


def plot_roc(
    targets: np.ndarray, logits: np.ndarray, path: Path, what: str, at_fpr: float, folds: np.ndarray | None = None
) -> Figure:
    """The ROC curve of `logits` (each fold's faintly, with `folds`), its AUC, and the point of threshold `at_fpr`
    (`operating_threshold`'s)."""
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    axes = figure.subplots()
    if folds is not None and len(np.unique(folds)) > 1:
        for fold in np.unique(folds):
            mine = folds == fold
            if len(np.unique(targets[mine])) == 2:
                fpr, tpr, _ = roc_curve(targets[mine], logits[mine])
                axes.plot(fpr, tpr, color="grey", lw=0.8, alpha=0.6, label="each fold" if fold == folds.min() else None)
    fpr, tpr, _ = roc_curve(targets, logits)
    auc = roc_auc_score(targets, logits)
    axes.plot(fpr, tpr, color="C0", lw=2, label=f"{what}: AUC {auc:.4f}")
    (tn, fp), (fn, tp) = confusion_counts(targets, logits, at_fpr)
    axes.plot(
        fp / (fp + tn), tp / (tp + fn), "o", color="C3", label=f"logit >= {at_fpr:.2f}: recall {tp / (tp + fn):.3f}"
    )
    axes.plot([0, 1], [0, 1], ":", color="black", lw=0.8)
    axes.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", title=f"ROC, {len(targets)} cadences")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    save_figure(figure, path)
    return figure


def plot_confusion(targets: np.ndarray, logits: np.ndarray, path: Path, thresholds: list[Threshold]) -> Figure:
    """One confusion matrix per threshold, counts and shares of each true class."""
    figure = Figure(figsize=(5 * len(thresholds), 4.4), layout="constrained")
    for axes, threshold in zip(np.atleast_1d(figure.subplots(1, len(thresholds))), thresholds, strict=True):
        counts = confusion_counts(targets, logits, threshold.logit)
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for (row, column), count in np.ndenumerate(counts):
            colour = "white" if shares[row, column] > 0.5 else "black"
            axes.text(column, row, f"{count}\n{shares[row, column]:.1%}", ha="center", va="center", color=colour)
        axes.set_xticks([0, 1], ["no needle", "needle"])
        axes.set_yticks([0, 1], ["no needle", "needle"])
        axes.set(xlabel="called", ylabel="true", title=f"{threshold.label}\n(logit >= {threshold.logit:.2f})")
    save_figure(figure, path)
    return figure


def pick_examples(predictions: pd.DataFrame, threshold: float, per_kind: int = EXAMPLES_PER_KIND) -> pd.DataFrame:
    """The most confident true positives (highest logits of needles called), false positives (highest logits of
    cadences without one) and misses (lowest logits of needles not called) at `threshold`, with a `kind` column."""
    called, needle = predictions["logit"] >= threshold, predictions["target"] == 1
    kinds = {
        "true positive": predictions[called & needle].nlargest(per_kind, "logit"),
        "false positive": predictions[called & ~needle].nlargest(per_kind, "logit"),
        "missed needle": predictions[~called & needle].nsmallest(per_kind, "logit"),
    }
    return pd.concat([rows.assign(kind=kind) for kind, rows in kinds.items()], ignore_index=True)


class LogitOf(nn.Module):
    """The classifier's logit as a plain tensor, the output the Grad-CAM library differentiates."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images)["logits"]


def last_feature_layer(classifier: nn.Module) -> tuple[nn.Module, Any]:
    """The backbone's deepest feature stage (timm's feature_info) and how to turn its output into (B, C, H, W):
    channels-last stages (Swin) are permuted; token sequences (ViT) are laid back on their patch grid."""
    backbone = classifier.backbone
    info = getattr(backbone, "feature_info", None)
    if not info:
        raise ModelError(f"Grad-CAM: {type(backbone).__name__} does not list its feature stages (timm feature_info)")
    layer = backbone.get_submodule(info[-1]["module"])
    channels_last = getattr(backbone, "output_fmt", "NCHW") == "NHWC"
    grid = getattr(getattr(backbone, "patch_embed", None), "grid_size", None)
    prefix = getattr(backbone, "num_prefix_tokens", 0)

    def to_nchw(activations: torch.Tensor) -> torch.Tensor:
        if activations.dim() == 3 and grid is not None:  # (B, tokens, C)
            tokens = activations[:, prefix:]
            return tokens.reshape(tokens.shape[0], *grid, tokens.shape[-1]).permute(0, 3, 1, 2)
        if activations.dim() == 4 and channels_last:
            return activations.permute(0, 3, 1, 2)
        return activations

    return layer, to_nchw


def activation_maps(classifier: nn.Module, images: torch.Tensor) -> np.ndarray:
    """Grad-CAM of the needle logit at the last feature stage: (B, H, W) in [0, 1] at the images' size, where
    the evidence for a needle lies (for a miss, what little the network found)."""
    layer, to_nchw = last_feature_layer(classifier)
    classifier.eval()
    with GradCAM(LogitOf(classifier), [layer], reshape_transform=to_nchw) as cam:
        return cam(images, targets=[BinaryClassifierOutputTarget(1)] * len(images))


def stacked_observations(image: np.ndarray, view: str) -> tuple[np.ndarray, int]:
    """A model input (C, H, W) as one tall picture of its observations and the number of observations: stacked
    views already are; channel views put their observation channels one under the other."""
    n_obs = len(view_observations(view))
    if view in CHANNEL_VIEWS:
        return np.concatenate(list(image[:n_obs]), axis=0), n_obs
    return image[0], n_obs


def plot_gradcam(examples: pd.DataFrame, images: np.ndarray, maps: np.ndarray, view: str, path: Path) -> Figure:
    """One column per example: its observations as the model sees them, the Grad-CAM heat over them."""
    figure = Figure(figsize=(2.3 * max(len(examples), 1), 7.5), layout="constrained")
    if examples.empty:
        figure.text(0.5, 0.5, "no examples to show", ha="center")
        save_figure(figure, path)
        return figure
    names = [("ON" if o in ON_OBSERVATIONS else "OFF") for o in view_observations(view)]
    for axes, (_, example), image, heat in zip(
        np.atleast_1d(figure.subplots(1, len(examples))), examples.iterrows(), images, maps, strict=True
    ):
        picture, n_obs = stacked_observations(image, view)
        heat = np.tile(heat, (n_obs, 1)) if view in CHANNEL_VIEWS else heat
        low, high = np.percentile(picture, [1, 99.5])
        axes.imshow(picture, cmap="gray", vmin=low, vmax=high, aspect="auto", interpolation="nearest")
        axes.imshow(heat, cmap="jet", alpha=0.35, vmin=0, vmax=1, aspect="auto", interpolation="bilinear")
        height = picture.shape[0] / n_obs
        for boundary in range(1, n_obs):
            axes.axhline(boundary * height - 0.5, color="white", lw=0.8)
        axes.set_yticks([(k + 0.5) * height for k in range(n_obs)], names)
        axes.set_xticks([])
        axes.set_title(f"{example['kind']}\n{example['id']}\np = {1 / (1 + np.exp(-example['logit'])):.3f}", fontsize=9)
    save_figure(figure, path, GRADCAM_DPI)
    return figure


def fold_examples(
    run_dir: Path, fold: int, examples: pd.DataFrame, device: torch.device, data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """The model inputs and Grad-CAM maps of one fold's examples, by that fold's checkpoint (which predicted them
    out of fold), and the checkpoint's view; the cadences from `data_dir` (default: the checkpoint's)."""
    path = run_dir / checkpoint_name(fold)
    cfg = read_checkpoint_info(path).config
    # the checkpoint's weights, without re-reading pretrained ones; plain forward passes for the CAM's hooks
    classifier = build_model(dataclasses.replace(cfg, grad_checkpointing=False), load_pretrained=False)
    load_weights(classifier, path)
    classifier.to(device)
    dataset, _ = run_cadences(cfg, "train", examples["id"].tolist(), examples["target"].tolist(), "map", data_dir)
    observations = torch.stack([dataset[i]["observations"] for i in range(len(examples))]).to(device)
    images = batch_to_images(observations, cfg).float().contiguous()
    return images.cpu().numpy(), activation_maps(classifier, images), cfg.view


def write_gradcam(
    run_dir: Path, oof: pd.DataFrame, threshold: float, device: torch.device, data_dir: str | Path | None = None
) -> Path:
    """gradcam.png of a run folder: each example drawn with the fold checkpoint that scored it."""
    examples = pick_examples(oof, threshold)
    images, maps, view = [None] * len(examples), [None] * len(examples), "all"
    for fold, rows in examples.groupby("fold"):
        fold_images, fold_maps, view = fold_examples(run_dir, int(fold), rows, device, data_dir)
        for position, image, heat in zip(rows.index, fold_images, fold_maps, strict=True):
            images[position], maps[position] = image, heat
    plot_gradcam(examples, images, maps, view, run_dir / GRADCAM_PNG)
    return run_dir / GRADCAM_PNG


def labelled_pictures(
    targets: np.ndarray, logits: np.ndarray, folder: Path, prefix: str, what: str, folds: np.ndarray | None = None
) -> dict[str, Any]:
    """`<prefix>roc.png` and `<prefix>confusion.png` in `folder` for labelled predictions; returns the counts at
    each stated threshold, for the report."""
    thresholds = stated_thresholds(targets, logits)
    plot_roc(targets, logits, folder / f"{prefix}{ROC_PNG}", what, thresholds[0].logit, folds)
    plot_confusion(targets, logits, folder / f"{prefix}{CONFUSION_PNG}", thresholds)
    return {
        t.label: {"logit": t.logit, "confusion": confusion_counts(targets, logits, t.logit).tolist()}
        for t in thresholds
    }


def write_run_pictures(
    run_dir: Path, oof: pd.DataFrame, metrics: pd.DataFrame, device: torch.device, data_dir: str | Path | None = None
) -> list[str]:
    """curves.png, roc.png, confusion.png and gradcam.png of a finished run; returns the report's section on them."""
    plot_curves(metrics, run_dir / CURVES_PNG)
    targets, logits = oof["target"].to_numpy().astype(int), oof["logit"].to_numpy()
    counts = labelled_pictures(targets, logits, run_dir, "", "out-of-fold", oof["fold"].to_numpy())
    write_gradcam(run_dir, oof, counts[AT_FPR]["logit"], device, data_dir)
    return [
        PICTURES_HEADING,
        "",
        f"![loss and AUC per fold]({CURVES_PNG}) ![out-of-fold ROC]({ROC_PNG})",
        "",
        *confusion_lines(counts, CONFUSION_PNG),
        f"Grad-CAM of the needle logit (the folds' deepest feature stage) on the most confident true positives, "
        f"false positives and missed needles at the {MAX_FALSE_POSITIVE_RATE:.0%}-false-positive threshold, each by "
        "the fold model that predicted it out of fold:",
        "",
        f"![Grad-CAM]({GRADCAM_PNG})",
        "",
    ]


def confusion_lines(counts: dict[str, Any], png: str) -> list[str]:
    """The confusion counts at each stated threshold, as report lines with the picture."""
    lines = [
        "| threshold | logit | true negatives | false positives | missed needles | needles found |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, entry in counts.items():
        (tn, fp), (fn, tp) = entry["confusion"]
        lines.append(f"| {label} | {entry['logit']:.2f} | {tn} | {fp} | {fn} | {tp} |")
    return [*lines, "", f"![confusion matrices]({png})", ""]
