"""Self-describing fold checkpoints: safetensors weights + the run's config and result as metadata.

A checkpoint is all `evaluate.py` needs: the config inside says which backbone, view, normalisation and
image size made it. safetensors holds only tensors, so loading one can never run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from src.core.config import Config, make_config
from src.core.errors import CheckpointError, ConfigError, error_summary
from src.core.files import write_atomically

CHECKPOINT_FORMAT = "seti-bl-checkpoint-v1"


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    config: Config
    fold: int
    epoch: int
    metrics: dict[str, float]


def checkpoint_name(fold: int) -> str:
    return f"fold{fold}.safetensors"


def save_checkpoint(
    path: str | Path, model: nn.Module, cfg: Config, fold: int, epoch: int, metrics: dict[str, float]
) -> None:
    """Write weights and metadata to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(cfg.to_dict()),
        "fold": str(fold),
        "epoch": str(epoch),
        "metrics": json.dumps(metrics),
        # duplicated from config for people inspecting the file with safetensors tools
        "model_name": cfg.model_name,
        "view": cfg.view,
        "image_size": json.dumps(cfg.image_size),
        "normalize": cfg.normalize,
    }
    write_atomically(path, lambda temporary: save_model(model, str(temporary), metadata=metadata))


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({err})") from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint written by this pipeline (no {CHECKPOINT_FORMAT} metadata)")
    try:
        config = make_config(json.loads(metadata["config"]), f"{path} (embedded config)")
        return CheckpointInfo(
            path=path,
            config=config,
            fold=int(metadata["fold"]),
            epoch=int(metadata["epoch"]),
            metrics=json.loads(metadata["metrics"]),
        )
    except (KeyError, ValueError, ConfigError) as err:
        raise CheckpointError(f"{path}: damaged metadata ({err})") from None


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load checkpoint weights into a model built from the checkpoint's config, strictly."""
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, RuntimeError) as err:
        raise CheckpointError(f"{path}: weights do not fit the model ({error_summary(err)})") from None
    if missing or unexpected:
        missing, unexpected = sorted(missing), sorted(unexpected)
        raise CheckpointError(
            f"{path}: weights do not fit the model: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )


def find_checkpoints(run_dir: str | Path) -> list[Path]:
    run_dir = Path(run_dir)
    paths = sorted(run_dir.glob("fold*.safetensors"), key=lambda p: int(p.stem[4:]) if p.stem[4:].isdigit() else -1)
    if not paths:
        raise CheckpointError(f"{run_dir}: no fold*.safetensors checkpoints (is this a run folder of main.py?)")
    return paths
