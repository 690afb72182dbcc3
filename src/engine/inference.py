"""Fold-ensemble inference with flip TTA: logits averaged over TTA views and checkpoints, then sigmoid.

Each checkpoint carries its own config, so a run's folds (or checkpoints of different runs) are read
with the view, normalisation, image size and data geometry (observation_shape) they were trained with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from src.core.config import Config
from src.core.errors import StorageError, out_of_space
from src.core.files import write_csv_atomically, write_text_atomically
from src.data.datasets import PackedCadenceDataset, loader_workers, make_eval_loader, open_cadences
from src.data.kaggle import SAMPLE_SUBMISSION, read_sample_submission, read_test_labels, require_cadence_files
from src.engine.checkpoint import CheckpointInfo, load_weights, read_checkpoint_info
from src.models.classifier import build_model
from src.transforms.augment import tta_view
from src.transforms.images import batch_to_images, image_shape


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    loader: DataLoader,
    accelerator: Accelerator,
    cfg: Config,
    tta: Sequence[str] = ("identity",),
) -> tuple[np.ndarray, np.ndarray]:
    """Logits averaged over the TTA views, with dataset indices, over a (sharded) loader, gathered from all
    processes without the padding duplicates of uneven shards. Only the logits are kept: memory stays flat
    however many cadences stream through."""
    model.eval()
    all_logits, all_index = [], []
    for batch in loader:
        images = batch_to_images(batch["observations"], cfg)
        with accelerator.autocast():
            views = [model(tta_view(images, name))["logits"].float() for name in tta]
        logits, index = accelerator.gather_for_metrics((torch.stack(views).mean(0), batch["index"]))
        all_logits.append(logits.cpu())
        all_index.append(index.cpu())
    return torch.cat(all_logits).numpy(), torch.cat(all_index).numpy()


def ordered_by_index(values: np.ndarray, index: np.ndarray, size: int, what: str) -> np.ndarray:
    """Put gathered values back into dataset order, checking every sample came back exactly once."""
    if len(index) != size or len(np.unique(index)) != size or (size and (index.min() < 0 or index.max() >= size)):
        raise RuntimeError(f"{what}: gathered {len(index)} predictions for {len(np.unique(index))} of {size} samples")
    ordered = np.empty(size, dtype=values.dtype)
    ordered[index] = values
    return ordered


def halved_batch_size(batch_size: int, accelerator: Accelerator) -> int:
    """Half the batch after running out of memory, with the device cache released and the user told."""
    clear_device_cache(garbage_collection=True)
    accelerator.print(f"out of memory: evaluation batch size halved to {batch_size // 2}")
    return batch_size // 2


def fitting_batch_size(
    model: torch.nn.Module,
    input_shape: Sequence[int],
    batch_size: int,
    accelerator: Accelerator,
    tta: Sequence[str],
    channels_last: bool = False,
) -> int:
    """The batch size, halved until a full batch of the TTA views fits on every process.

    Probed on blank images of the real shape (memory depends only on it), and agreed over processes: a process
    that ran out of memory alone inside a collective would leave the others waiting forever."""
    while True:
        try:
            with torch.no_grad(), accelerator.autocast():
                blank = torch.zeros((batch_size, *input_shape), device=accelerator.device)
                if channels_last:
                    blank = blank.contiguous(memory_format=torch.channels_last)
                for name in tta:
                    model(tta_view(blank, name))
            fits = True
        except RuntimeError as err:
            if not should_reduce_batch_size(err):
                raise
            fits = False
        blank = None
        clear_device_cache()  # the probe's activations
        if accelerator.num_processes > 1:
            fits_here = torch.tensor(float(fits), device=accelerator.device)
            fits = bool(accelerator.reduce(fits_here, "sum") == accelerator.num_processes)
        if fits:
            return batch_size
        if batch_size == 1:
            raise RuntimeError("evaluation runs out of memory even at batch size 1")
        batch_size = halved_batch_size(batch_size, accelerator)


def checkpoint_logits(
    info: CheckpointInfo,
    data_dir: str | Path,
    split: str,
    ids: Sequence[str],
    tta: Sequence[str],
    batch_size: int,
    num_workers: int | None,
    accelerator: Accelerator,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """One checkpoint's TTA-averaged logits for `ids`, in the order of `ids`, on every process.

    On running out of memory the batch is halved: up front on every process together, and again if the real
    pass still fails in a single process (a multi-process pass cannot be restarted by one process alone)."""
    cfg = info.config
    model = build_model(cfg, load_pretrained=False)
    load_weights(model, info.path)
    model = model.to(accelerator.device).eval()
    if cfg.compile:
        model = torch.compile(model)
    dataset, note = open_cadences(
        data_dir, split, ids, None, cfg.view, cache_dir, cfg.background, observation_shape=cfg.observation_shape
    )
    accelerator.print(note)
    workers = loader_workers(num_workers, accelerator.num_processes, isinstance(dataset, PackedCadenceDataset))
    batch_size = fitting_batch_size(
        model,
        image_shape(cfg.view, cfg.image_size, cfg.observation_shape),
        batch_size,
        accelerator,
        tta,
        cfg.channels_last,
    )
    while True:
        try:
            loader = accelerator.prepare(make_eval_loader(dataset, batch_size, workers, cfg.prefetch_factor))
            logits, index = predict_logits(model, loader, accelerator, cfg, tta)
            break
        except RuntimeError as err:
            if accelerator.num_processes > 1 or batch_size == 1 or not should_reduce_batch_size(err):
                raise
            batch_size = halved_batch_size(batch_size, accelerator)
    accelerator.free_memory()
    return ordered_by_index(logits, index, len(ids), str(info.path))


def ensemble_logits(
    infos: Sequence[CheckpointInfo],
    data_dir: str | Path,
    split: str,
    ids: Sequence[str],
    tta: Sequence[str] | None,
    batch_size: int | None,
    num_workers: int | None,
    accelerator: Accelerator,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """Logits of `ids` averaged over the checkpoints, each averaged over its TTA views (its config's unless given)."""
    total = np.zeros(len(ids), dtype=np.float64)
    for info in infos:
        views = tuple(tta or info.config.tta)
        accelerator.print(f"{info.path}: fold {info.fold}, {info.config.model_name}, TTA {', '.join(views)}")
        total += checkpoint_logits(
            info,
            data_dir,
            split,
            ids,
            views,
            batch_size or info.config.eval_batch_size,
            num_workers,
            accelerator,
            cache_dir,
        )
    return total / len(infos)


def append_to_report(report: Path, out_path: Path, summary: dict) -> None:
    """Add the evaluation to the run's report.md, next to the cross-validation table."""
    lines = [
        "",
        f"## Evaluation: `{out_path.name}`",
        "",
        f"{summary['n_predictions']} cadences, {len(summary['checkpoints'])} checkpoint(s), TTA: {summary['tta']}, "
        f"{summary['seconds']:.0f} s.",
    ]
    if "test_auc" in summary:
        lines.append(f"Test ROC AUC against the synthetic truth: **{summary['test_auc']:.4f}**.")
    with report.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def evaluate(
    checkpoints: Sequence[Path],
    data_dir: str | Path,
    out_path: Path,
    split: str = "test",
    tta: Sequence[str] | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    mixed_precision: str = "no",
    overwrite: bool = False,
    report: Path | None = None,
    cache_dir: str | Path | None = None,
) -> dict:
    """Write `out_path` (a submission: the sample submission's ids, in its order) and a summary beside it."""
    accelerator = Accelerator(
        mixed_precision=mixed_precision, dataloader_config=DataLoaderConfiguration(non_blocking=True)
    )
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path}: already exists; pass --overwrite to replace it or choose --out")
    infos = [read_checkpoint_info(p) for p in checkpoints]
    submission = read_sample_submission(data_dir)
    ids = submission["id"].tolist()
    require_cadence_files(data_dir, split, ids, Path(data_dir) / SAMPLE_SUBMISSION)  # never a partial submission
    started = time.time()
    logits = ensemble_logits(infos, data_dir, split, ids, tta, batch_size, num_workers, accelerator, cache_dir)
    submission["target"] = expit(logits)
    summary = {
        "checkpoints": [str(i.path) for i in infos],
        "tta": ", ".join(tta) if tta else "each checkpoint's config",
        "n_predictions": len(ids),
        "seconds": round(time.time() - started, 1),
    }
    truth = read_test_labels(data_dir) if split == "test" else None
    if truth is not None:
        aligned = submission[["id"]].merge(truth, on="id", how="left")
        if aligned["target"].notna().all():
            summary["test_auc"] = float(roc_auc_score(aligned["target"].astype(int), logits))
    if accelerator.is_main_process:
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            write_csv_atomically(submission, out_path)
            write_text_atomically(out_path.with_name(out_path.stem + "_summary.json"), json.dumps(summary, indent=2))
        except OSError as err:
            if not out_of_space(err):
                raise
            raise StorageError(
                f"{out_path}: no space left on the device to write the submission (nothing half-written is left); "
                "free space or choose another --out, and run the same command again"
            ) from None
        message = f"wrote {out_path} ({len(ids)} rows)"
        if "test_auc" in summary:
            message += f"; test ROC AUC {summary['test_auc']:.4f} against {data_dir}/test_labels.csv"
        accelerator.print(message)
        if report is not None and report.is_file():
            try:
                append_to_report(report, out_path, summary)
            except OSError as err:  # a read-only run folder (a Kaggle dataset): the submission stands
                accelerator.print(f"note: {report} was not updated ({err.strerror or err}); the submission is written")
    accelerator.wait_for_everyone()
    return summary
