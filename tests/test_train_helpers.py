"""Tests for the pure helpers of src/engine/train.py and src/engine/inference.py: sampler weights, LR schedule,
re-ordering gathered predictions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from src.engine.inference import ordered_by_index
from src.engine.train import class_balanced_weights, improves, warmup_cosine

# ---------------------------------------------------------------- sampler weights ---

TARGETS = np.array([0.0] * 90 + [1.0] * 10, dtype=np.float32)


def class_totals(targets, weights):
    return {c: float(weights[targets == c].sum()) for c in np.unique(targets)}


def test_strength_zero_gives_equal_weights():
    weights = class_balanced_weights(TARGETS, 0.0)
    assert weights.shape == TARGETS.shape
    assert np.allclose(weights, weights[0]) and weights[0] > 0


def test_strength_one_balances_class_totals():
    weights = class_balanced_weights(TARGETS, 1.0)
    totals = class_totals(TARGETS, weights)
    assert totals[0.0] == pytest.approx(totals[1.0])
    assert weights[TARGETS == 1][0] == pytest.approx(9 * weights[TARGETS == 0][0])


def test_strength_half_is_in_between():
    totals = class_totals(TARGETS, class_balanced_weights(TARGETS, 0.5))
    share = totals[1.0] / (totals[0.0] + totals[1.0])
    assert 0.1 < share < 0.5
    # per sample 0.9^-0.5 : 0.1^-0.5 = 1 : 3, so the class totals are 90 : 30
    assert share == pytest.approx(30 / (90 + 30))


def test_weights_follow_sample_order():
    targets = np.array([1, 0, 0, 1, 0])
    weights = class_balanced_weights(targets, 1.0)
    assert weights[0] == weights[3] > weights[1] == weights[2] == weights[4]


# ---------------------------------------------------------------- schedule ---


def test_warmup_cosine_shape():
    total, warmup, floor = 110, 10, 0.01
    f = warmup_cosine(total, warmup, floor)
    values = [f(s) for s in range(total + 1)]
    assert values[0] == pytest.approx(0.1)  # starts small: 1/warmup
    assert values[0] < values[5] < values[9]  # linear rise
    assert all(b > a for a, b in itertools.pairwise(values[:warmup]))
    assert values[warmup - 1] == pytest.approx(1.0)  # reaches 1 at the end of the warm-up
    assert values[warmup] == pytest.approx(1.0)
    after = values[warmup:]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(after))  # monotone decreasing after warm-up
    assert values[total] == pytest.approx(floor)  # ends at the min ratio
    assert min(values) >= floor - 1e-12
    # cosine, not linear: a quarter of the way down it is still at (1 + cos(pi/4)) / 2 ~ 0.85 of the range
    for progress in (0.25, 0.5, 0.75):
        step = warmup + int(progress * (total - warmup))
        expected = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        assert values[step] == pytest.approx(expected)
    assert f(total + 50) == pytest.approx(floor)  # stays at the floor if stepped past the end


def test_warmup_cosine_without_warmup():
    f = warmup_cosine(50, 0, 0.0)
    assert f(0) == pytest.approx(1.0)
    assert f(50) == pytest.approx(0.0, abs=1e-12)


def test_warmup_cosine_drives_lambda_lr():
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(20, 4, 0.05))
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1 / 4)
    assert max(lrs) == pytest.approx(0.1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.05)


# ---------------------------------------------------------------- re-ordering ---


def test_ordered_by_index_restores_order():
    values = np.array([10.0, 20.0, 30.0, 40.0], dtype=np.float32)
    index = np.array([2, 0, 3, 1])
    out = ordered_by_index(values, index, 4, "test")
    assert out.tolist() == [20.0, 40.0, 10.0, 30.0]
    assert out.dtype == np.float32


@pytest.mark.parametrize(
    "index, size",
    [
        (np.array([0, 1, 1]), 3),  # duplicate
        (np.array([0, 2]), 3),  # missing
        (np.array([0, 1, 2, 2]), 3),  # padding duplicate (what gather without gather_for_metrics returns)
    ],
)
def test_ordered_by_index_refuses_duplicates_and_gaps(index, size):
    with pytest.raises(RuntimeError, match="fold 3 validation"):
        ordered_by_index(np.zeros(len(index)), index, size, "fold 3 validation")


def test_checkpoint_selection_by_auc_or_by_loss():
    best = {"auc": 0.97, "valid_loss": 0.48}  # the best AUC so far came with a miscalibrated, high loss
    assert improves("valid_auc", 0.98, 0.50, best) and not improves("valid_auc", 0.968, 0.09, best)
    assert improves("valid_loss", 0.968, 0.09, best) and not improves("valid_loss", 0.98, 0.50, best)
    assert improves("valid_loss", 0.5, 9.0, {}) and improves("valid_auc", 0.5, 9.0, {})  # the first epoch is kept
