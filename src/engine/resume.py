"""Resumable training: the run's latest state, saved often and swapped into place whole.

`<run>/state/` holds what Accelerate's `save_state` writes (model as safetensors; optimizer, scheduler, scaler
and RNG states as tensor-only pickles that Accelerate reads back with `weights_only=True`) plus this
module's `progress.json` (where in the run the state was taken) and the current fold's best validation logits.
A new state is written to `state.tmp/` and swapped in by renames, `progress.json` last, so a kill at any moment
leaves either the previous complete state or the new one.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn
from accelerate import Accelerator
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from src.core.errors import CheckpointError, error_summary
from src.core.files import write_npy_atomically, write_text_atomically

STATE_DIR = "state"
STAGING_DIR = "state.tmp"
PREVIOUS_DIR = "state.old"
PROGRESS_JSON = "progress.json"
BEST_LOGITS = "best_valid_logits.npy"
EMA_WEIGHTS = "ema.safetensors"


@dataclass
class Progress:
    """Where a run stands: the state was taken after `batches_done` batches of epoch `epoch` of `fold`."""

    fold: int
    epoch: int = 0  # 0-based epoch in progress (== epochs once the fold's training is over)
    batches_done: int = 0  # batches of `epoch` already trained; 0 at an epoch boundary
    step: int = 0  # tracker step: training batches seen by the run so far
    best: dict[str, Any] = field(default_factory=dict)  # best validation result of this fold so far
    skipped_batches: int = 0  # batches left out for a non-finite loss in this fold
    ema_updates: int = 0  # optimizer updates folded into the EMA weights in this fold (drives its warm-up)
    train_seconds: float = 0.0  # wall time spent training the run, over all sessions
    epoch_loss_sum: float = 0.0  # training loss summed over the batches of `epoch` done (all processes)
    epoch_loss_count: int = 0  # the batches in that sum: a resumed epoch reports the mean of all its batches


def save_training_state(
    accelerator: Accelerator,
    run_dir: Path,
    progress: Progress,
    best_logits: np.ndarray | None,
    ema_model: nn.Module | None = None,
) -> None:
    """Save the prepared objects, the RNG states, the EMA weights and `progress`; call on every process."""
    staging, current, previous = run_dir / STAGING_DIR, run_dir / STATE_DIR, run_dir / PREVIOUS_DIR
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))  # each process writes its own RNG state
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if best_logits is not None:
            write_npy_atomically(best_logits, staging / BEST_LOGITS)
        if ema_model is not None:
            save_model(ema_model, str(staging / EMA_WEIGHTS))
        write_text_atomically(staging / PROGRESS_JSON, json.dumps(dataclasses.asdict(progress), indent=1))
        shutil.rmtree(previous, ignore_errors=True)
        if current.exists():
            current.rename(previous)
        staging.rename(current)
        shutil.rmtree(previous, ignore_errors=True)
    accelerator.wait_for_everyone()


def latest_state(run_dir: Path) -> Path | None:
    """The newest complete state folder of a run (a kill during the swap leaves it as state.old), or None."""
    for name in (STATE_DIR, PREVIOUS_DIR):
        if (run_dir / name / PROGRESS_JSON).is_file():
            return run_dir / name
    return None


def read_progress(state_dir: Path) -> Progress:
    path = state_dir / PROGRESS_JSON
    try:
        return Progress(**json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: damaged training progress ({err})") from None


def load_training_state(
    accelerator: Accelerator, state_dir: Path, ema_model: nn.Module | None = None
) -> np.ndarray | None:
    """Restore the prepared objects (and the EMA weights) from `state_dir`; returns the fold's best validation
    logits so far."""
    try:
        accelerator.load_state(str(state_dir))
        if ema_model is not None:
            load_model(ema_model, str(state_dir / EMA_WEIGHTS), device=str(accelerator.device))
    except (pickle.UnpicklingError, RuntimeError, ValueError, KeyError, OSError, SafetensorError) as err:
        raise CheckpointError(
            f"{state_dir}: saved training state cannot be loaded ({error_summary(err)}). Files holding anything but "
            "tensors are refused, so a state that carries pickled code never runs."
        ) from None
    best_logits = state_dir / BEST_LOGITS
    return np.load(best_logits, allow_pickle=False) if best_logits.is_file() else None


def clear_training_state(run_dir: Path) -> None:
    """Remove the resume state once the run is complete: it is large and no longer needed."""
    for name in (STATE_DIR, STAGING_DIR, PREVIOUS_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)
