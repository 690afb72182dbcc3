"""timm backbones as cadence classifiers: one logit per cadence, returned in a dict.

Pretrained weights come only from a local file or folder the user names (a Kaggle dataset, a local
cache); nothing is ever downloaded. timm adapts the first convolution to the input channels and drops
the ImageNet classifier while loading.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError

from src.core.config import Config
from src.core.errors import ModelError, error_summary
from src.models.track_evidence import HIDDEN as EVIDENCE_FEATURES
from src.models.track_evidence import TrackEvidence
from src.transforms.images import view_channels


class GeM(nn.Module):
    """Generalised-mean pooling with a trainable exponent (p=1: average, p->inf: max)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(features.float().clamp(min=self.eps).pow(self.p), 1)
        return pooled.pow(1.0 / self.p).flatten(1).to(features.dtype)


class CadenceClassifier(nn.Module):
    """A timm backbone with a one-logit head. `pool='gem'` replaces timm's pooling by trainable GeM; `evidence`
    (a TrackEvidence) adds its features of the snippet's central tracks to the pooled ones before the head."""

    def __init__(self, backbone: nn.Module, pool: str, drop_rate: float, evidence: TrackEvidence | None = None):
        super().__init__()
        self.backbone = backbone
        self.pool = GeM() if pool == "gem" else None
        self.evidence = evidence
        own_head = self.pool is not None or evidence is not None
        width = backbone.num_features + (EVIDENCE_FEATURES if evidence is not None else 0)
        self.head = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(width, 1)) if own_head else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.head is None:
            return {"logits": self.backbone(images).squeeze(-1)}
        features = self.pooled_features(images)
        if self.evidence is not None:
            features = torch.cat([features, self.evidence(images).to(features.dtype)], dim=1)
        return {"logits": self.head(features).squeeze(-1)}

    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool is None:
            return self.backbone(images)  # built without a classifier: timm's pooled features
        features = self.backbone.forward_features(images)
        if getattr(self.backbone, "output_fmt", "NCHW") == "NHWC":  # Swin and other channels-last backbones
            features = features.permute(0, 3, 1, 2)
        if features.dim() != 4:
            raise ModelError(
                f"pool=gem needs a spatial feature map; this backbone returns shape {tuple(features.shape)}"
            )
        return self.pool(features)


def pretrained_overlay(path: str | Path) -> dict:
    """timm's pretrained_cfg_overlay pointing at a local weights file or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        return {"file": str(path), "source": "local-dir"}
    if path.is_file():
        return {"file": str(path)}
    raise ModelError(f"pretrained weights not found: {path} (give a local file or folder; nothing is downloaded)")


def set_first_conv_stride(model: nn.Module, stride: Sequence[int]) -> None:
    """Change the stride of the stem's first convolution, e.g. (1, 2) to keep time resolution."""
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise ModelError("first_conv_stride: this backbone has no Conv2d stem")
    first_conv.stride = tuple(stride)


def create_backbone(
    model_name: str,
    in_chans: int,
    image_size: Sequence[int] | None,
    pool: str,
    drop_rate: float,
    drop_path_rate: float,
    pretrained: str | None,
    own_head: bool = False,
) -> nn.Module:
    """A timm model: with its one-logit classifier, or, for a head of our own (`own_head`), its pooled features
    (without its pooling too for pool=gem)."""
    kwargs = {"in_chans": in_chans, "drop_rate": drop_rate}
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    if pool == "gem":
        kwargs.update(num_classes=0, global_pool="")
    else:
        kwargs["num_classes"] = 0 if own_head else 1
    if not timm.is_model(model_name):
        raise ModelError(f"model_name: {model_name!r} is not a timm model (see timm.list_models())")
    if timm.get_pretrained_cfg(model_name, allow_unregistered=True).fixed_input_size:
        if image_size is None:
            raise ModelError(f"model_name: {model_name} needs a fixed input size; set image_size: [height, width]")
        kwargs["img_size"] = tuple(image_size)
    if pretrained is None:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    overlay = pretrained_overlay(pretrained)
    seed = int(torch.randint(2**62, (1,)))
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # a file that is not a pickle can start with any "protocol" byte: torch warns before it fails, and the
            # failure below is the one line a user needs
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            torch.manual_seed(seed)
            model = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except (pickle.UnpicklingError, RuntimeError) as err:
        if not isinstance(err, pickle.UnpicklingError) and "weights_only" not in str(err):
            raise ModelError(f"pretrained weights {pretrained} do not fit {model_name}: {error_summary(err)}") from None
        # torch's safe loader refused it: pickled code, or not a weights file at all
        raise ModelError(
            f"pretrained weights {pretrained}: not a plain weights file (the safe loader refused it; "
            "weights are never loaded unsafely)"
        ) from None
    except (SafetensorError, OSError, EOFError) as err:  # unreadable: random bytes, truncated, a folder
        raise ModelError(f"pretrained weights {pretrained}: unreadable ({error_summary(err)})") from None
    except (KeyError, ValueError) as err:
        raise ModelError(f"pretrained weights {pretrained} do not fit {model_name}: {error_summary(err)}") from None
    except Exception as err:  # random bytes reach the unpickler, which fails in any way (IndexError, struct.error)
        raise ModelError(f"pretrained weights {pretrained}: unreadable ({type(err).__name__}: {err})") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        untouched = timm.create_model(model_name, pretrained=False, **kwargs)
    _check_weights_loaded(model, untouched, pretrained, model_name)
    return model


def _check_weights_loaded(loaded: nn.Module, untouched: nn.Module, path: str, model_name: str) -> None:
    """timm loads non-strictly when it swaps the classifier, so weights of another architecture can match
    no key and load nothing. Compare with the same random initialisation to tell."""
    initial = dict(untouched.named_parameters())
    # constant initialisations (norm scales 1, biases 0) may legitimately equal a checkpoint's values
    random_init = [n for n, p in initial.items() if p.numel() > 1 and not torch.all(p == p.flatten()[0])]
    loaded_params = dict(loaded.named_parameters())
    unchanged = [n for n in random_init if torch.equal(loaded_params[n], initial[n])]
    if len(unchanged) > len(random_init) // 2:
        raise ModelError(
            f"pretrained weights {path} do not fit {model_name}: {len(unchanged)} of {len(random_init)} "
            f"weight tensors were not in the file (e.g. {unchanged[0]})"
        )


def build_model(cfg: Config, load_pretrained: bool = True) -> CadenceClassifier:
    """The classifier a Config describes. `load_pretrained=False` when checkpoint weights follow anyway."""
    backbone = create_backbone(
        cfg.model_name,
        in_chans=view_channels(cfg.view),
        image_size=cfg.image_size,
        pool=cfg.pool,
        drop_rate=cfg.drop_rate,
        drop_path_rate=cfg.drop_path_rate,
        pretrained=cfg.pretrained if load_pretrained else None,
        own_head=cfg.track_evidence,
    )
    if cfg.first_conv_stride is not None:
        set_first_conv_stride(backbone, cfg.first_conv_stride)
    if cfg.grad_checkpointing:
        try:
            backbone.set_grad_checkpointing(True)
        except (AssertionError, NotImplementedError, AttributeError):
            raise ModelError(f"grad_checkpointing: timm's {cfg.model_name} does not support it") from None
    evidence = TrackEvidence(*cfg.observation_shape) if cfg.track_evidence else None
    model = CadenceClassifier(backbone, cfg.pool, cfg.drop_rate, evidence)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model
