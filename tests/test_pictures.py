"""The run's pictures: thresholds and counts, each figure's content, Grad-CAM's wiring, valid PNG files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from matplotlib.image import AxesImage, imread
from sklearn.metrics import roc_curve

from src.engine.pictures import (
    activation_maps,
    confusion_counts,
    labelled_pictures,
    operating_threshold,
    pick_examples,
    plot_confusion,
    plot_curves,
    plot_gradcam,
    plot_roc,
    stated_thresholds,
)
from src.models.classifier import CadenceClassifier, build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_size=(200, 200)) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(path).shape[:2]
    assert height >= min_size[0] and width >= min_size[1]


def scored(n_neg=400, n_pos=100, seed=0):
    rng = np.random.default_rng(seed)
    targets = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    logits = np.r_[rng.normal(-2, 1, n_neg), rng.normal(1.5, 1.5, n_pos)]
    return targets, logits


def test_operating_threshold_keeps_false_positives_at_one_percent_with_the_most_recall():
    targets, logits = scored()
    threshold = operating_threshold(targets, logits)
    negatives = np.sort(logits[targets == 0])
    assert np.mean(negatives >= threshold) <= 0.01
    # one step lower (the next negative below) passes 1%
    below = negatives[negatives < threshold].max()
    assert np.mean(negatives >= below) > 0.01


def test_confusion_counts():
    counts = confusion_counts(np.array([0, 0, 1, 1, 1]), np.array([-1.0, 2.0, 0.5, -0.5, 0.0]), 0.0)
    assert counts.tolist() == [[1, 1], [1, 2]]


def test_pick_examples_takes_the_most_confident_of_each_kind():
    frame = pd.DataFrame(
        {
            "id": list("abcdefgh"),
            "target": [1, 1, 1, 0, 0, 0, 1, 1],
            "logit": [5.0, 3.0, 4.0, 2.0, 1.5, -3.0, -4.0, -1.0],
            "fold": 0,
        }
    )
    picked = pick_examples(frame, threshold=1.0, per_kind=2)
    by_kind = picked.groupby("kind")["id"].apply(list).to_dict()
    assert by_kind == {"true positive": ["a", "c"], "false positive": ["d", "e"], "missed needle": ["g", "h"]}


def test_curves_plot_every_fold_and_measure(tmp_path):
    metrics = pd.DataFrame(
        {
            "fold": [0, 0, 0, 1, 1, 1],
            "epoch": [1, 2, 3, 1, 2, 3],
            "train_loss": [0.7, 0.5, 0.4, 0.69, 0.52, 0.41],
            "valid_loss": [0.6, 0.55, 0.5, 0.62, 0.5, 0.49],
            "valid_auc": [0.6, 0.7, 0.8, 0.65, 0.75, 0.85],
        }
    )
    figure = plot_curves(metrics, tmp_path / "curves.png")
    loss_axes, auc_axes = figure.axes
    assert len(loss_axes.lines) == 4 and len(auc_axes.lines) == 2
    assert auc_axes.lines[1].get_ydata().tolist() == [0.65, 0.75, 0.85]
    assert_png(tmp_path / "curves.png")


def test_roc_plot_is_sklearns_curve_with_the_operating_point(tmp_path):
    targets, logits = scored()
    at_fpr = operating_threshold(targets, logits)
    figure = plot_roc(targets, logits, tmp_path / "roc.png", "test", at_fpr, folds=np.arange(len(targets)) % 2)
    (axes,) = figure.axes
    fpr, tpr, _ = roc_curve(targets, logits)
    curve = next(line for line in axes.lines if line.get_label().startswith("test: AUC"))
    assert np.allclose(curve.get_xdata(), fpr) and np.allclose(curve.get_ydata(), tpr)
    assert sum(line.get_label() == "each fold" for line in axes.lines) == 1  # two fold curves, one legend entry
    point = next(line for line in axes.lines if line.get_label().startswith("logit >="))
    assert point.get_xdata()[0] <= 0.01
    assert_png(tmp_path / "roc.png")


def test_confusion_plot_writes_the_counts_it_computes(tmp_path):
    targets, logits = scored(seed=1)
    thresholds = stated_thresholds(targets, logits)
    figure = plot_confusion(targets, logits, tmp_path / "confusion.png", thresholds)
    assert len(figure.axes) == 2
    for axes, threshold in zip(figure.axes, thresholds, strict=True):
        called = logits >= threshold.logit
        expected = [
            np.sum((targets == 0) & ~called),
            np.sum((targets == 0) & called),
            np.sum((targets == 1) & ~called),
            np.sum((targets == 1) & called),
        ]
        assert [int(t.get_text().split("\n")[0]) for t in axes.texts] == expected
    assert thresholds[1].logit == 0.0  # probability 0.5
    assert_png(tmp_path / "confusion.png")


def test_labelled_pictures_name_their_files_by_prefix(tmp_path):
    targets, logits = scored()
    counts = labelled_pictures(targets, logits, tmp_path, "sub_", "test")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub_confusion.png", "sub_roc.png"]
    assert sum(map(sum, counts["probability 0.5"]["confusion"])) == len(targets)


class PeakBackbone(nn.Module):
    """A needle detector whose logit is the brightest smoothed pixel: its evidence lies where the signal is."""

    num_features = 1

    def __init__(self) -> None:
        super().__init__()
        self.feature_info = [{"module": "features", "num_chs": 1}]
        self.features = nn.Conv2d(1, 1, kernel_size=3, padding=1, bias=False)
        nn.init.constant_(self.features.weight, 1 / 9)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images).amax(dim=(2, 3))


@pytest.mark.parametrize("corner", [(5, 10), (40, 50), (20, 3)])
def test_gradcam_heat_lies_on_the_evidence_for_a_needle(corner):
    images = torch.randn(1, 1, 48, 64) * 0.1
    row, column = corner
    images[0, 0, row : row + 4, column : column + 4] += 3.0
    heat = activation_maps(CadenceClassifier(PeakBackbone(), pool="none", drop_rate=0.0), images)
    assert heat.shape == (1, 48, 64) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    peak_row, peak_column = np.unravel_index(heat[0].argmax(), heat[0].shape)
    assert row - 1 <= peak_row <= row + 4 and column - 1 <= peak_column <= column + 4


@pytest.mark.parametrize(
    ("model_name", "image_size"),
    [("test_efficientnet", (32, 64)), ("test_mambaout", (32, 64)), ("test_vit", (160, 160))],
)
def test_gradcam_reads_convolutional_channels_last_and_token_backbones(make_cfg, model_name, image_size):
    cfg = make_cfg(model_name=model_name, view="channels", image_size=list(image_size))
    images = torch.randn(2, 6, *image_size)
    heat = activation_maps(build_model(cfg), images)
    assert heat.shape == (2, *image_size) and np.isfinite(heat).all()
    assert heat.min() >= 0 and heat.max() <= 1 + 1e-6


@pytest.mark.parametrize(("view", "channels"), [("channels", 6), ("all", 1), ("on", 1)])
def test_gradcam_plot_shows_each_observation_under_its_heat(tmp_path, view, channels):
    n_obs = 3 if view == "on" else 6
    height = 16 if view == "channels" else 16 * n_obs
    examples = pd.DataFrame({"id": ["x", "y", "z"], "logit": [3.0, 2.0, -2.0], "kind": ["true positive"] * 3})
    images = np.random.default_rng(0).normal(size=(3, channels, height, 32))
    maps = np.random.default_rng(1).uniform(size=(3, height, 32))
    figure = plot_gradcam(examples, images, maps, view, tmp_path / "gradcam.png")
    assert len(figure.axes) == 3
    for axes in figure.axes:
        picture, heat = [child for child in axes.get_children() if isinstance(child, AxesImage)]
        assert picture.get_array().shape == heat.get_array().shape == (16 * n_obs, 32)
        names = ["ON", "OFF"] * 3 if n_obs == 6 else ["ON"] * 3
        assert [t.get_text() for t in axes.get_yticklabels()] == names
    assert "true positive" in figure.axes[0].get_title() and "x" in figure.axes[0].get_title()
    assert_png(tmp_path / "gradcam.png")
