"""Sharpness-aware minimisation (SAM, Foret et al. 2021) around the run's AdamW, under Accelerate.

One update takes two forward-backward passes over the same micro-batches: the first gives the gradient g at
the weights w; the weights move to w + rho * g / |g| (the loss's steepest ascent within rho); the second pass
there gives the gradient AdamW then applies at w. `optimizer: sam` in a config.

Why not pytorch-optimizer's SAM: its `second_step` steps its base optimizer itself, past Accelerate's
wrapper and the fp16 GradScaler (no unscaling, no skipped step on overflow), and the scaler refuses the closure
its `step` needs. Here AdamW, the scaler, clipping and the EMA stay exactly where plain training has them:

- gradient accumulation: the micro-batches of one update are kept and replayed at w + e, so the perturbation
  follows the gradient of the whole update, not of one micro-batch;
- several processes: the first pass's gradients are already averaged over the processes when the update
  syncs, so every process perturbs alike; the replay syncs only on its last micro-batch;
- fp16: the direction g / |g| does not depend on the loss scale, so the scaled gradients serve; if they
  overflowed, the weights are not moved and the scaler skips the step as it would without SAM;
- clipping and the EMA act after the second pass, on the gradient that is applied;
- batch norm: the second pass leaves the running statistics alone (momentum 0), so each batch counts once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn
from accelerate import Accelerator

MicroBatch = tuple[torch.Tensor, torch.Tensor]  # (images, targets) as the first pass trained on them


@contextmanager
def running_statistics_frozen(model: nn.Module) -> Iterator[None]:
    """Batch-norm layers normalise by the batch as in training, but leave their running statistics unchanged."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.momentum = 0.0
    try:
        yield
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum


def ascent_offsets(parameters: Sequence[nn.Parameter], rho: float) -> list[torch.Tensor] | None:
    """rho * g / |g| for each parameter (|g| over all of them), or None when the gradient is zero or not finite
    (an fp16 overflow)."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in parameters]))
    if not bool(torch.isfinite(norm)) or float(norm) == 0.0:
        return None
    return [(p.grad.float() * (rho / norm)).to(p.dtype) for p in parameters]


def sharpness_aware_gradients(
    model: nn.Module,
    micro_batches: Sequence[MicroBatch],
    loss_of: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    accelerator: Accelerator,
    rho: float,
) -> bool:
    """Replace the gradients of the update (the first pass over `micro_batches`, synced) by those at the
    perturbed weights, then put the weights back. Returns False when the weights were not moved (the plain
    gradients stay)."""
    parameters = [p for p in model.parameters() if p.grad is not None]
    if not parameters:
        return False
    offsets = ascent_offsets(parameters, rho)
    if offsets is None:
        return False
    saved = [p.detach().clone() for p in parameters]
    with torch.no_grad():
        for parameter, offset in zip(parameters, offsets, strict=True):
            parameter.add_(offset)
    for parameter in model.parameters():
        parameter.grad = None
    try:
        with running_statistics_frozen(model):
            for index, (images, targets) in enumerate(micro_batches):
                last = index == len(micro_batches) - 1
                with nullcontext() if last else accelerator.no_sync(model):
                    accelerator.backward(loss_of(model, images, targets))
    finally:
        with torch.no_grad():
            for parameter, weights in zip(parameters, saved, strict=True):
                parameter.copy_(weights)
    return True
