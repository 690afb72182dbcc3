"""Tests for src/models/classifier.py with timm's tiny test models: views, GeM, stem stride, local pretrained
weights."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
from safetensors.torch import save_file

from src.models.classifier import GeM, ModelError, build_model, set_first_conv_stride

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMG = (32, 32)


@pytest.fixture(scope="module")
def imagenet_like_weights(tmp_path_factory):
    """A 3-channel, 1000-class test_efficientnet state_dict saved like a downloaded pretrained file."""
    torch.manual_seed(123)
    source = timm.create_model("test_efficientnet", pretrained=False)
    assert source.num_classes == 1000 and source.conv_stem.in_channels == 3
    state = {k: v.detach().clone().contiguous() for k, v in source.state_dict().items()}
    folder = tmp_path_factory.mktemp("weights")
    file = folder / "test_efficientnet.safetensors"
    save_file(state, str(file))
    hub_dir = folder / "hf_folder"
    hub_dir.mkdir()
    save_file(state, str(hub_dir / "model.safetensors"))
    return state, file, hub_dir


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


# ---------------------------------------------------------------- shapes ---


@pytest.mark.parametrize("view, in_chans", [("on", 1), ("all", 1), ("channels", 6)])
@pytest.mark.parametrize("pool", ["avg", "gem"])
def test_build_model_per_view(make_cfg, view, in_chans, pool):
    model = build_model(make_cfg(view=view, pool=pool, image_size=IMG)).eval()
    assert first_conv(model).in_channels == in_chans
    with torch.no_grad():
        out = model(torch.randn(3, in_chans, *IMG))
    assert set(out) == {"logits"}
    assert out["logits"].shape == (3,)
    with torch.no_grad():
        assert model(torch.randn(1, in_chans, *IMG))["logits"].shape == (1,)  # batch of one stays a vector


def test_model_accepts_non_square_native_size(make_cfg):
    model = build_model(make_cfg(view="on")).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 96, 32))["logits"].shape == (2,)


def test_nfnet_builds(make_cfg):
    model = build_model(make_cfg(model_name="test_nfnet", pool="gem", first_conv_stride=(1, 2))).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 48, 32))["logits"].shape == (2,)


# ---------------------------------------------------------------- GeM ---


def test_gem_p_is_trainable(make_cfg):
    torch.manual_seed(0)
    model = build_model(make_cfg(pool="gem"))
    params = dict(model.named_parameters())
    p = model.pool.p
    assert isinstance(p, nn.Parameter) and p.requires_grad
    assert any(v is p for v in params.values())
    assert float(p.detach()) == pytest.approx(3.0)
    model.train()
    # 128x128 -> a 4x4 feature map (at 32x32 the map is 1x1 and GeM does not depend on p)
    model(torch.randn(2, 1, 128, 128, generator=torch.Generator().manual_seed(0)))["logits"].sum().backward()
    assert p.grad is not None and float(p.grad.abs()) > 1e-4  # the loss reaches p


def test_gem_pool_math():
    features = torch.rand(2, 3, 4, 5) + 0.1
    gem = GeM(p=1.0)
    gem.requires_grad_(False)
    assert torch.allclose(gem(features), features.mean(dim=(2, 3)), atol=1e-5)
    gem.p.data.fill_(200.0)  # p -> inf: max pooling; here within (1/20)^(1/200) ~ 1.5% of the max
    maxed = features.amax(dim=(2, 3))
    assert torch.all(gem(features) <= maxed + 1e-5) and torch.allclose(gem(features), maxed, rtol=0.02)
    gem.p.data.fill_(3.0)
    assert torch.allclose(gem(features), features.pow(3).mean(dim=(2, 3)).pow(1 / 3), atol=1e-5)


def test_avg_pool_has_no_gem(make_cfg):
    model = build_model(make_cfg(pool="avg"))
    assert model.pool is None
    assert not any(name.endswith(".p") or name == "pool.p" for name, _ in model.named_parameters())


def test_gem_on_a_token_backbone_is_a_clear_error(make_cfg):
    model = build_model(make_cfg(model_name="test_vit", image_size=IMG, pool="gem"))
    with pytest.raises(ValueError, match="gem"):
        model(torch.randn(1, 1, *IMG))


# ---------------------------------------------------------------- stem stride ---


@pytest.mark.parametrize("name", ["test_efficientnet", "test_nfnet"])
def test_first_conv_stride(make_cfg, name):
    default = build_model(make_cfg(model_name=name))
    strided = build_model(make_cfg(model_name=name, first_conv_stride=(1, 2)))
    assert first_conv(default).stride == (2, 2)
    assert first_conv(strided).stride == (1, 2)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        a = default.eval().backbone.forward_features(x)
        b = strided.eval().backbone.forward_features(x)
    assert b.shape[-2] == 2 * a.shape[-2] and b.shape[-1] == a.shape[-1]  # time resolution kept, not frequency


def test_set_first_conv_stride_without_conv():
    with pytest.raises(ValueError, match="Conv2d"):
        set_first_conv_stride(nn.Sequential(nn.Linear(2, 2)), (1, 2))


# ---------------------------------------------------------------- model names ---


def test_fixed_input_size_model_needs_image_size(make_cfg):
    with pytest.raises(ValueError, match="image_size"):
        build_model(make_cfg(model_name="test_vit"))
    model = build_model(make_cfg(model_name="test_vit", image_size=IMG)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, *IMG))["logits"].shape == (2,)


def test_unknown_model_name(make_cfg):
    with pytest.raises(ValueError, match="no_such_net_xyz"):
        build_model(make_cfg(model_name="no_such_net_xyz"))


# ---------------------------------------------------------------- pretrained ---


def assert_backbone_loaded(model, state):
    """Every saved tensor outside the stem and the classifier arrived unchanged."""
    loaded = model.backbone.state_dict()
    compared = 0
    for key, value in state.items():
        if key.startswith(("conv_stem.", "classifier.")):
            continue
        assert torch.equal(loaded[key], value), key
        compared += 1
    assert compared > 50


@pytest.mark.parametrize("view", ["on", "channels"])
@pytest.mark.parametrize("pool", ["avg", "gem"])
def test_pretrained_from_local_file(make_cfg, imagenet_like_weights, view, pool):
    state, file, _ = imagenet_like_weights
    model = build_model(make_cfg(view=view, pool=pool, pretrained=str(file)))
    assert_backbone_loaded(model, state)
    stem = model.backbone.conv_stem.weight
    assert stem.shape[1] == (6 if view == "channels" else 1)
    if view == "on":  # timm folds the RGB filters into one channel by summing them
        assert torch.allclose(stem, state["conv_stem.weight"].sum(dim=1, keepdim=True))
    with torch.no_grad():
        assert model.eval()(torch.randn(2, stem.shape[1], *IMG))["logits"].shape == (2,)


def test_without_pretrained_weights_differ(make_cfg, imagenet_like_weights):
    state, file, _ = imagenet_like_weights
    fresh = build_model(make_cfg())
    key = "blocks.3.0.conv_pw.weight"
    assert not torch.equal(fresh.backbone.state_dict()[key], state[key])
    # load_pretrained=False skips the file entirely (checkpoint weights follow)
    skipped = build_model(make_cfg(pretrained=str(file.parent / "missing.safetensors")), load_pretrained=False)
    assert not torch.equal(skipped.backbone.state_dict()[key], state[key])


def test_pretrained_from_folder(make_cfg, imagenet_like_weights):
    state, _, hub_dir = imagenet_like_weights
    model = build_model(make_cfg(pretrained=str(hub_dir)))
    assert_backbone_loaded(model, state)


def test_pretrained_missing_path(make_cfg, tmp_path):
    missing = tmp_path / "nowhere" / "weights.safetensors"
    with pytest.raises(ModelError, match=r"weights\.safetensors"):
        build_model(make_cfg(pretrained=str(missing)))


def test_pretrained_of_another_architecture_shape_clash(make_cfg, imagenet_like_weights):
    _, file, _ = imagenet_like_weights
    with pytest.raises(ValueError) as err:
        build_model(make_cfg(model_name="test_resnet", pretrained=str(file)))
    assert file.name in str(err.value)


def test_pretrained_of_another_architecture_disjoint_keys(make_cfg, imagenet_like_weights):
    _, file, _ = imagenet_like_weights
    with pytest.raises(ValueError) as err:
        build_model(make_cfg(model_name="test_nfnet", pretrained=str(file)))
    assert file.name in str(err.value)


# ---------------------------------------------------------------- speed options ---


def test_grad_checkpointing_gives_the_same_gradients(make_cfg):
    images = torch.randn(2, 6, *IMG)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_model(make_cfg(view="channels", image_size=IMG, grad_checkpointing=checkpointing)).train()
        model(images)["logits"].sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


def test_grad_checkpointing_unsupported_is_a_clear_error(make_cfg, monkeypatch):
    def unsupported(self, enable=True):
        raise AssertionError("gradient checkpointing not supported")

    monkeypatch.setattr(timm.models.efficientnet.EfficientNet, "set_grad_checkpointing", unsupported)
    with pytest.raises(ModelError, match="grad_checkpointing: timm's test_efficientnet does not support it"):
        build_model(make_cfg(view="channels", image_size=IMG, grad_checkpointing=True))


def test_channels_last_model_gives_the_same_logits(make_cfg):
    images = torch.randn(3, 6, *IMG)
    torch.manual_seed(0)
    plain = build_model(make_cfg(view="channels", image_size=IMG)).eval()
    torch.manual_seed(0)
    nhwc = build_model(make_cfg(view="channels", image_size=IMG, channels_last=True)).eval()
    assert nhwc.backbone.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = plain(images)["logits"]
        got = nhwc(images.contiguous(memory_format=torch.channels_last))["logits"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
