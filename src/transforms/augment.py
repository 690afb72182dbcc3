"""Batch-level augmentation and test-time views, run on whole (B, C, H, W) batches on the training device.

Axes: H (dim -2) is time, W (dim -1) is frequency. A horizontal flip reverses frequency (a drift of the
opposite sign), a vertical flip reverses the rows of the image.
"""

from __future__ import annotations

import math

import torch

TTA_FLIP_DIMS = {"identity": (), "hflip": (-1,), "vflip": (-2,), "hvflip": (-2, -1)}


def tta_view(images: torch.Tensor, name: str) -> torch.Tensor:
    """One test-time view of a batch; every view is its own inverse."""
    dims = TTA_FLIP_DIMS[name]
    return images.flip(dims) if dims else images


def random_flips(
    images: torch.Tensor, hflip_p: float, vflip_p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Flip each sample of the batch independently along frequency (p=hflip_p) and time (p=vflip_p)."""
    batch = images.shape[0]
    for dim, p in ((-1, hflip_p), (-2, vflip_p)):
        if p <= 0:
            continue
        chosen = (torch.rand(batch, generator=generator) < p).to(images.device)
        images = torch.where(chosen[:, None, None, None], images.flip(dim), images)
    return images


def combine_labels(targets: torch.Tensor, partner: torch.Tensor, weight: torch.Tensor, mode: str) -> torch.Tensor:
    """Label of a mixed sample. `weight` is the share of the original sample actually kept."""
    if mode == "max":
        return torch.maximum(targets, partner)
    if mode == "or":
        return targets + partner - targets * partner
    return weight * targets + (1 - weight) * partner


def mixup(
    images: torch.Tensor,
    targets: torch.Tensor,
    alpha: float,
    label_mode: str = "mix",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each sample with a random partner, weight lam ~ Beta(alpha, alpha) per sample.

    The blend is rescaled by 1/sqrt(lam^2 + (1-lam)^2) so two standardised cadences give a standardised
    result: a needle keeps its contrast against the noise instead of fading into a quieter background.
    """
    batch = images.shape[0]
    partner_index = torch.randperm(batch, generator=generator).to(images.device)
    lam = _beta(alpha, batch, generator).to(images.device)
    # variance of the blend of two independent unit-variance samples; a sample drawn as its own partner keeps 1
    self_paired = (partner_index == torch.arange(batch, device=images.device)).to(lam.dtype)
    scale = torch.rsqrt(lam**2 + (1 - lam) ** 2 + 2 * lam * (1 - lam) * self_paired)
    shape = (batch,) + (1,) * (images.dim() - 1)
    mixed = (lam.view(shape) * images + (1 - lam).view(shape) * images[partner_index]) * scale.view(shape)
    labels = combine_labels(targets, targets[partner_index], lam.to(targets.dtype), label_mode)
    return mixed.to(images.dtype), labels


def cutmix(
    images: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a random (time x frequency) box from a partner sample into each sample.

    The box spans all channels and its size is drawn per batch from Beta(alpha, alpha); labels are mixed by
    the fraction of pixels actually pasted after the box is clipped to the image.
    """
    batch, _, height, width = images.shape
    partner_index = torch.randperm(batch, generator=generator).to(images.device)
    lam = float(_beta(alpha, 1, generator)[0])
    cut = math.sqrt(1.0 - lam)
    box_h, box_w = round(height * cut), round(width * cut)
    center_y = int(torch.randint(height, (1,), generator=generator))
    center_x = int(torch.randint(width, (1,), generator=generator))
    top, bottom = max(center_y - box_h // 2, 0), min(center_y + box_h - box_h // 2, height)
    left, right = max(center_x - box_w // 2, 0), min(center_x + box_w - box_w // 2, width)
    mixed = images.clone()
    mixed[:, :, top:bottom, left:right] = images[partner_index, :, top:bottom, left:right]
    pasted = (bottom - top) * (right - left) / (height * width)
    kept = torch.full_like(targets, 1.0 - pasted)
    return mixed, combine_labels(targets, targets[partner_index], kept, "mix")


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    mode: str,
    prob: float,
    mixup_alpha: float,
    cutmix_alpha: float,
    label_mode: str,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """With probability `prob`, apply mixup or cutmix (`both`: either, 50/50) to the whole batch."""
    if mode == "none" or images.shape[0] < 2 or float(torch.rand(1, generator=generator)) >= prob:
        return images, targets
    if mode == "both":
        mode = "mixup" if float(torch.rand(1, generator=generator)) < 0.5 else "cutmix"
    if mode == "mixup":
        return mixup(images, targets, mixup_alpha, label_mode, generator)
    return cutmix(images, targets, cutmix_alpha, generator)


def _beta(alpha: float, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n draws of Beta(alpha, alpha); torch.distributions takes no generator, so seed a private RNG from it."""
    dist = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    if generator is None:
        return dist.sample((n,))
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return dist.sample((n,))
