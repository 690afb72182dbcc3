"""SAM (src/engine/sam.py): the gradient it applies is the gradient at w + rho g/|g|, over the whole update's
micro-batches; the weights come back exactly; batch norm counts each batch once; an overflow moves nothing; the
update differs from AdamW's and the loss falls on a toy problem."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from accelerate import Accelerator

from src.engine.sam import ascent_offsets, sharpness_aware_gradients

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RHO = 0.05


def loss_of(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(model(images).squeeze(-1), targets)


def toy(seed: int = 0, norm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(8, 16), nn.BatchNorm1d(16) if norm else nn.Identity(), nn.Tanh(), nn.Linear(16, 1)]
    return nn.Sequential(*layers)


def toy_data(n: int = 64, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    return x, (x[:, 0] - 0.5 * x[:, 1] > 0).float()


def gradient_at(model: nn.Module, weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The loss's gradient with the model's parameters set to `weights` (a copy of the model: independent)."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for parameter, value in zip(other.parameters(), weights, strict=True):
            parameter.copy_(value)
    return list(torch.autograd.grad(loss_of(other, x, y), list(other.parameters())))


def sam_step_gradients(model: nn.Module, micro_batches, accumulation: int) -> list[torch.Tensor]:
    """The gradients SAM leaves for the optimizer, through Accelerate's accumulation as training does."""
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    prepared = accelerator.prepare(model)
    replay = []
    for x, y in micro_batches:
        with accelerator.accumulate(prepared):
            accelerator.backward(loss_of(prepared, x, y))
            replay.append((x, y))
    assert accelerator.sync_gradients
    assert sharpness_aware_gradients(prepared, replay, loss_of, accelerator, RHO)
    return [p.grad.clone() for p in prepared.parameters()]


def test_the_applied_gradient_is_the_gradient_at_the_ascent_point_and_the_weights_come_back():
    model, (x, y) = toy(), toy_data()
    before = [p.detach().clone() for p in model.parameters()]
    plain = gradient_at(model, before, x, y)
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in plain]))
    expected = gradient_at(model, [w + RHO * g / norm for w, g in zip(before, plain, strict=True)], x, y)

    applied = sam_step_gradients(model, [(x, y)], accumulation=1)
    for got, want, first in zip(applied, expected, plain, strict=True):
        assert torch.allclose(got, want, atol=1e-6)
        assert not torch.allclose(got, first, atol=1e-6)  # not the plain gradient
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), before, strict=True))


def test_with_accumulation_the_perturbation_follows_the_whole_update():
    """Two micro-batches of 32 accumulated: the same gradients as SAM on the batch of 64 at once."""
    x, y = toy_data(64)
    whole = sam_step_gradients(toy(), [(x, y)], accumulation=1)
    accumulated = sam_step_gradients(toy(), [(x[:32], y[:32]), (x[32:], y[32:])], accumulation=2)
    for a, b in zip(whole, accumulated, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # perturbing by each micro-batch's own gradient would differ
    per_micro_batch = [
        sam_step_gradients(toy(), [(x[:32], y[:32])], accumulation=1),
        sam_step_gradients(toy(), [(x[32:], y[32:])], accumulation=1),
    ]
    mean = [(a + b) / 2 for a, b in zip(*per_micro_batch, strict=True)]
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, mean, strict=True))


def test_the_second_pass_leaves_batch_norm_running_statistics_alone():
    model, (x, y) = toy(norm=True), toy_data()
    model.train()
    loss_of(model, x, y).backward()  # the first pass moves the running mean once
    norm = model[1]
    after_first = (norm.running_mean.clone(), norm.running_var.clone(), norm.momentum)
    accelerator = Accelerator(cpu=True)
    assert sharpness_aware_gradients(model, [(x, y)], loss_of, accelerator, RHO)
    assert torch.equal(norm.running_mean, after_first[0]) and torch.equal(norm.running_var, after_first[1])
    assert norm.momentum == after_first[2]


def test_the_direction_ignores_the_loss_scale_and_an_overflow_moves_nothing():
    model, (x, y) = toy(), toy_data()
    loss_of(model, x, y).backward()
    parameters = list(model.parameters())
    unscaled = ascent_offsets(parameters, RHO)
    for p in parameters:
        p.grad *= 65536.0  # fp16's GradScaler multiplies the loss, so every gradient
    scaled = ascent_offsets(parameters, RHO)
    assert all(torch.allclose(a, b, rtol=1e-5) for a, b in zip(unscaled, scaled, strict=True))
    assert torch.linalg.vector_norm(torch.stack([o.norm() for o in scaled])) == pytest.approx(RHO, rel=1e-5)

    parameters[0].grad[0, 0] = float("inf")
    before = [p.detach().clone() for p in parameters]
    assert ascent_offsets(parameters, RHO) is None
    assert not sharpness_aware_gradients(model, [(x, y)], loss_of, Accelerator(cpu=True), RHO)
    assert all(torch.equal(p, w) for p, w in zip(parameters, before, strict=True))


def train_toy(sam: bool, steps: int = 60) -> tuple[list[float], list[torch.Tensor]]:
    model, (x, y) = toy(seed=3), toy_data(128)
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.02)
    model, optimizer = accelerator.prepare(model, optimizer)
    losses = []
    for _ in range(steps):
        loss = loss_of(model, x, y)
        accelerator.backward(loss)
        if sam:
            sharpness_aware_gradients(model, [(x, y)], loss_of, accelerator, RHO)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    return losses, [p.detach().clone() for p in model.parameters()]


def test_sam_updates_differ_from_adamw_and_the_loss_falls():
    sam_losses, sam_weights = train_toy(sam=True)
    adamw_losses, adamw_weights = train_toy(sam=False)
    assert sam_losses[0] == adamw_losses[0]  # the same start
    # AdamW's first update is lr * sign(gradient) whichever gradient it is given; the next ones differ
    assert sam_losses[2:6] != adamw_losses[2:6]
    assert sam_losses[-1] < 0.5 * sam_losses[0]
    assert not all(torch.allclose(a, b) for a, b in zip(sam_weights, adamw_weights, strict=True))
