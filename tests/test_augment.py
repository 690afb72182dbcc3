"""Tests for src/transforms/augment.py: flips, TTA views, CutMix, mixup and their labels, reproducibility."""

from __future__ import annotations

import pytest
import torch

from src.transforms.augment import TTA_FLIP_DIMS, combine_labels, cutmix, mix_batch, mixup, random_flips, tta_view

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b=6, c=1, h=5, w=7, seed=0) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=gen(seed))


# ---------------------------------------------------------------- flips ---


def test_hflip_p1_flips_every_sample_along_frequency():
    images = batch()
    out = random_flips(images, hflip_p=1.0, vflip_p=0.0, generator=gen(0))
    assert torch.equal(out, images.flip(-1))
    assert not torch.equal(out, images.flip(-2))


def test_vflip_p1_flips_every_sample_along_time():
    images = batch()
    out = random_flips(images, hflip_p=0.0, vflip_p=1.0, generator=gen(0))
    assert torch.equal(out, images.flip(-2))
    assert not torch.equal(out, images.flip(-1))


def test_both_flips_p1():
    images = batch(c=3)
    assert torch.equal(random_flips(images, 1.0, 1.0, gen(0)), images.flip(-2).flip(-1))


def test_p0_leaves_batch_unchanged():
    images = batch()
    assert torch.equal(random_flips(images, 0.0, 0.0, gen(0)), images)


@pytest.mark.parametrize(
    "dim, kwargs", [(-1, {"hflip_p": 0.5, "vflip_p": 0.0}), (-2, {"hflip_p": 0.0, "vflip_p": 0.5})]
)
def test_p_half_flips_about_half_each_sample_whole(dim, kwargs):
    images = batch(b=400, c=2, h=3, w=4)
    out = random_flips(images, generator=gen(1), **kwargs)
    flipped = torch.tensor([torch.equal(o, i.flip(dim)) for o, i in zip(out, images, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images, strict=True)])
    assert torch.all(flipped ^ kept)  # every sample is either flipped whole (all channels) or untouched
    assert 150 < int(flipped.sum()) < 250


def test_random_flips_reproducible_with_generator():
    images = batch(b=32)
    a = random_flips(images, 0.5, 0.5, gen(3))
    b = random_flips(images, 0.5, 0.5, gen(3))
    c = random_flips(images, 0.5, 0.5, gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ---------------------------------------------------------------- TTA ---


def test_tta_views():
    images = batch(c=2)
    assert torch.equal(tta_view(images, "identity"), images)
    assert torch.equal(tta_view(images, "hflip"), images.flip(-1))
    assert torch.equal(tta_view(images, "vflip"), images.flip(-2))
    assert torch.equal(tta_view(images, "hvflip"), images.flip(-1).flip(-2))
    assert set(TTA_FLIP_DIMS) == {"identity", "hflip", "vflip", "hvflip"}


@pytest.mark.parametrize("name", ["identity", "hflip", "vflip", "hvflip"])
def test_tta_view_is_its_own_inverse(name):
    images = batch(c=2)
    assert torch.equal(tta_view(tta_view(images, name), name), images)
    if name != "identity":
        assert not torch.equal(tta_view(images, name), images)


# ---------------------------------------------------------------- labels ---


def test_combine_labels_hand_computed():
    y = torch.tensor([0.0, 1.0, 0.3, 1.0])
    partner = torch.tensor([1.0, 0.0, 0.8, 1.0])
    weight = torch.tensor([0.25, 0.6, 0.5, 0.1])
    assert torch.allclose(combine_labels(y, partner, weight, "mix"), torch.tensor([0.75, 0.6, 0.55, 1.0]))
    assert torch.allclose(combine_labels(y, partner, weight, "max"), torch.tensor([1.0, 1.0, 0.8, 1.0]))
    assert torch.allclose(combine_labels(y, partner, weight, "or"), torch.tensor([1.0, 1.0, 0.86, 1.0]))


# ---------------------------------------------------------------- cutmix ---


def constant_batch(b, c=1, h=20, w=24):
    """Sample i is the constant i+1 everywhere: every pixel says which sample it came from."""
    return (torch.arange(b, dtype=torch.float32) + 1).view(b, 1, 1, 1).expand(b, c, h, w).contiguous()


def check_cutmix(images, targets, mixed, labels):
    """Each sample: pixels either its own or one partner's, in one box spanning all channels; label = area mix.
    Returns the number of changed pixels."""
    b = images.shape[0]
    changed_total = 0
    for i in range(b):
        own = float(images[i, 0, 0, 0])
        changed = mixed[i] != own
        values = mixed[i][changed].unique()
        assert len(values) <= 1, "pixels from more than one partner"
        assert torch.equal(changed, changed[:1].expand_as(changed)), "box must span all channels"
        frac = float(changed[0].float().mean())
        if frac > 0:
            j = int(values[0]) - 1
            rows, cols = changed[0].any(dim=1), changed[0].any(dim=0)
            assert int(rows.sum()) * int(cols.sum()) == int(changed[0].sum()), "pasted region is not a box"
            expected = (1 - frac) * targets[i] + frac * targets[j]
        else:
            expected = targets[i]  # nothing pasted (box clipped away, or paired with itself)
        assert float(labels[i]) == pytest.approx(float(expected), abs=1e-6)
        changed_total += int(changed[0].sum())
    return changed_total


def test_cutmix_one_channel_really_mixes_pixels_and_labels_match_area():
    b = 8
    images = constant_batch(b)
    targets = torch.linspace(0.05, 0.95, b)  # distinct soft labels make the area weighting visible
    changed = 0
    for seed in range(20):
        mixed, labels = cutmix(images, targets, alpha=1.0, generator=gen(seed))
        assert mixed.shape == images.shape
        changed += check_cutmix(images, targets, mixed, labels)
    # the public pipeline cut the box along the channel axis of a 1-channel image: nothing was ever pasted
    assert changed > 0.05 * 20 * images[:, 0].numel()
    assert torch.equal(images, constant_batch(b)), "cutmix must not modify its input in place"


def test_cutmix_multi_channel_box_spans_channels():
    b = 6
    images = constant_batch(b, c=6, h=12, w=10)
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    changed = sum(check_cutmix(images, targets, *cutmix(images, targets, 1.0, gen(s))) for s in range(10))
    assert changed > 0


# ---------------------------------------------------------------- mixup ---


def one_hot_batch(b):
    """Sample i is 1 at pixel i and 0 elsewhere: a mixed sample shows its partner and both weights."""
    return torch.eye(b).view(b, 1, 1, b)


def decode_mixup(mixed, i):
    """(partner index, lam) of mixed sample i, from a one-hot batch; lam None when paired with itself."""
    row = mixed[i, 0, 0]
    others = [j for j in range(len(row)) if j != i and float(row[j]) > 1e-6]
    if not others:
        return i, None
    (j,) = others
    a, c = float(row[i]), float(row[j])
    return j, a / (a + c)


@pytest.mark.parametrize("mode", ["mix", "max", "or"])
def test_mixup_labels_hand_computed(mode):
    b = 8
    images = one_hot_batch(b)
    targets = torch.tensor([0.0, 1.0, 0.2, 0.9, 1.0, 0.0, 0.5, 0.7])
    paired = 0
    for seed in range(5):
        mixed, labels = mixup(images, targets, alpha=2.0, label_mode=mode, generator=gen(seed))
        for i in range(b):
            j, lam = decode_mixup(mixed, i)
            y, yp = float(targets[i]), float(targets[j])
            if mode == "max":
                expected = max(y, yp)
            elif mode == "or":
                expected = y + yp - y * yp
            else:
                expected = y if lam is None else lam * y + (1 - lam) * yp
            assert float(labels[i]) == pytest.approx(expected, abs=1e-5), (seed, i, j, lam)
            if lam is not None:
                paired += 1
                # the rescale 1/sqrt(lam^2 + (1-lam)^2): the two weights have unit norm
                row = mixed[i, 0, 0]
                assert float(row[i]) ** 2 + float(row[j]) ** 2 == pytest.approx(1.0, abs=1e-5)
    assert paired > 20


def test_mixup_keeps_independent_standardised_batches_at_unit_variance():
    b = 64
    images = torch.randn(b, 1, 64, 64, generator=gen(0))
    images = (images - images.mean(dim=(1, 2, 3), keepdim=True)) / images.std(dim=(1, 2, 3), keepdim=True)
    mixed, _ = mixup(images, torch.zeros(b), alpha=5.0, generator=gen(1))  # lam ~ 0.5: unscaled std ~ 0.71
    flat_in, flat_out = images.flatten(1), mixed.flatten(1)
    checked = 0
    for i in range(b):
        self_pair = torch.allclose(flat_out[i] / flat_out[i].norm(), flat_in[i] / flat_in[i].norm(), atol=1e-4)
        if not self_pair:
            assert float(flat_out[i].std()) == pytest.approx(1.0, abs=0.06)
            checked += 1
    assert checked > b // 2


def test_mixup_sample_paired_with_itself_keeps_its_scale():
    b = 4  # a random permutation of 4 has a fixed point with probability 5/8
    images = torch.randn(b, 1, 16, 16, generator=gen(0))
    for seed in range(30):
        mixed, _ = mixup(images, torch.zeros(b), alpha=5.0, generator=gen(seed))
        for i in range(b):
            if torch.allclose(mixed[i] / mixed[i].norm(), images[i] / images[i].norm(), atol=1e-5):
                assert torch.allclose(mixed[i], images[i], atol=1e-5), f"seed {seed}: sample {i} rescaled"


def test_mixup_reproducible_and_leaves_global_rng_alone():
    images, targets = batch(b=8), torch.rand(8, generator=gen(9))
    state = torch.random.get_rng_state()
    a = mixup(images, targets, 1.0, "mix", gen(5))
    assert torch.equal(torch.random.get_rng_state(), state), "a seeded mixup must not consume the global RNG"
    b = mixup(images, targets, 1.0, "mix", gen(5))
    c = mixup(images, targets, 1.0, "mix", gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_mixup_keeps_dtype():
    images = batch(b=4).half()
    mixed, labels = mixup(images, torch.ones(4), 1.0, generator=gen(0))
    assert mixed.dtype == torch.float16 and labels.shape == (4,)


# ---------------------------------------------------------------- mix_batch ---


@pytest.mark.parametrize("mode, prob", [("none", 1.0), ("mixup", 0.0), ("cutmix", 0.0), ("both", 0.0)])
def test_mix_batch_off_returns_batch_unchanged(mode, prob):
    images, targets = batch(b=8), torch.tensor([0.0, 1.0] * 4)
    for seed in range(5):
        out, labels = mix_batch(images, targets, mode, prob, 1.0, 1.0, "mix", gen(seed))
        assert torch.equal(out, images) and torch.equal(labels, targets)


def test_mix_batch_single_sample_unchanged():
    images, targets = batch(b=1), torch.ones(1)
    out, labels = mix_batch(images, targets, "mixup", 1.0, 1.0, 1.0, "mix", gen(0))
    assert torch.equal(out, images) and torch.equal(labels, targets)


def test_mix_batch_prob1_mixes():
    images, targets = one_hot_batch(8), torch.tensor([0.0, 1.0] * 4)
    out, _ = mix_batch(images, targets, "mixup", 1.0, 1.0, 1.0, "max", gen(0))
    assert not torch.equal(out, images)
    out, _ = mix_batch(constant_batch(8), targets, "cutmix", 1.0, 1.0, 1.0, "mix", gen(0))
    assert out.shape == (8, 1, 20, 24)


def test_mix_batch_both_uses_mixup_and_cutmix():
    images, targets = constant_batch(8), torch.linspace(0, 1, 8)
    kinds = set()
    for seed in range(30):
        out, _ = mix_batch(images, targets, "both", 1.0, 1.0, 1.0, "mix", gen(seed))
        values = set(out.unique().tolist())
        if values <= set(range(1, 9)):  # only original constants: a (possibly empty) cutmix paste
            kinds.add("cutmix")
        else:
            kinds.add("mixup")
    assert kinds == {"mixup", "cutmix"}


def test_mix_batch_probability_is_respected():
    images, targets = one_hot_batch(4), torch.zeros(4)
    g = gen(0)
    mixed = sum(
        not torch.equal(mix_batch(images, targets, "mixup", 0.3, 1.0, 1.0, "mix", g)[0], images) for _ in range(300)
    )
    assert 60 < mixed < 120  # ~90 expected


def test_mix_batch_reproducible():
    images, targets = batch(b=8), torch.rand(8, generator=gen(1))
    a = mix_batch(images, targets, "both", 0.7, 1.0, 1.0, "or", gen(11))
    b = mix_batch(images, targets, "both", 0.7, 1.0, 1.0, "or", gen(11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
