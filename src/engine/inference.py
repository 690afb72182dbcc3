"""Fold-ensemble inference with flip TTA: logits averaged over TTA views and checkpoints, then sigmoid.

Each checkpoint carries its own config, so a run's folds (or checkpoints of different runs) are read
with the view, normalisation, image size and data geometry (observation_shape) they were trained with.
Evaluation reads every cadence once, whatever the number of checkpoints: the Kaggle test set is 34 GB, and
reading it again for every fold made a 5-fold submission read 170 GB. One loader delivers the observations that
any checkpoint needs; each batch goes to every model, and checkpoints that make the same images of it share them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size
from scipy.special import expit, logit
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from src.core.cadence import loaded_observations
from src.core.cli import progress_bar
from src.core.config import Config
from src.core.errors import CheckpointError, StorageError, out_of_space
from src.core.files import write_csv_atomically, write_text_atomically
from src.data.datasets import (
    CadenceDataset,
    PackedCadenceDataset,
    loader_workers,
    make_eval_loader,
    open_observations,
)
from src.data.kaggle import SAMPLE_SUBMISSION, read_sample_submission, read_test_labels, require_cadence_files
from src.engine.checkpoint import CheckpointInfo, load_weights, read_checkpoint_info
from src.engine.ensemble import combine, ensemble_lines, ensemble_summary, member_logits
from src.engine.pictures import CONFUSION_PNG, ROC_PNG, confusion_lines, labelled_pictures
from src.models.classifier import build_model
from src.transforms.augment import tta_view
from src.transforms.images import batch_to_images, image_settings, image_shape

if TYPE_CHECKING:
    from tqdm import tqdm

SCORE_EPSILON = 1e-7  # scores of exactly 0 or 1 (a unanimous vote) are this far inside, for a finite logit


@dataclass(frozen=True)
class PassModel:
    """One model fed by a pass over the data: its config (the batch transform), TTA views, and where its
    observations sit in the loaded batch (None: the batch holds exactly its observations)."""

    name: str
    model: torch.nn.Module
    cfg: Config
    tta: tuple[str, ...]
    positions: tuple[int, ...] | None = None


def image_groups(models: Sequence[PassModel]) -> list[list[int]]:
    """The models' numbers grouped by their image settings, in first-seen order (one pass reads one data
    geometry, so the settings `batch_to_images` reads decide alone)."""
    groups: dict[tuple, list[int]] = {}
    for number, member in enumerate(models):
        groups.setdefault(image_settings(member.cfg), []).append(number)
    return list(groups.values())


def tta_logits(
    model: torch.nn.Module, images: torch.Tensor, tta: Sequence[str], accelerator: Accelerator
) -> torch.Tensor:
    """A model's logits for a batch of images, the float32 mean over the TTA views."""
    with accelerator.autocast():
        views = [model(tta_view(images, name))["logits"].float() for name in tta]
    return torch.stack(views).mean(0)


def batch_logits(
    models: Sequence[PassModel], groups: Sequence[Sequence[int]], observations: torch.Tensor, accelerator: Accelerator
) -> list[torch.Tensor]:
    """Every model's TTA-averaged logits for one batch of loaded observations. The batch transform runs once per
    group of alike models, on the group's own observations, and its images are let go before the next group's."""
    logits: dict[int, torch.Tensor] = {}
    for group in groups:
        first = models[group[0]]
        own = observations if first.positions is None else observations[:, list(first.positions)]
        images = batch_to_images(own, first.cfg)
        for number in group:
            logits[number] = tta_logits(models[number].model, images, models[number].tta, accelerator)
    return [logits[number] for number in range(len(models))]


@torch.no_grad()
def pass_logits(
    models: Sequence[PassModel], loader: DataLoader, accelerator: Accelerator, bar: tqdm | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each model's TTA-averaged logits, with dataset indices, over one pass of a (sharded) loader: every batch is
    read once and fed to all the models. Gathered from all processes without the padding duplicates of uneven
    shards. Only the logits are kept: memory stays flat however many cadences stream through. `bar` counts the
    cadences."""
    for member in models:
        member.model.eval()
    groups = image_groups(models)
    all_logits: list[list[torch.Tensor]] = [[] for _ in models]
    all_index = []
    for batch in loader:
        logits, index = accelerator.gather_for_metrics(
            (batch_logits(models, groups, batch["observations"], accelerator), batch["index"])
        )
        for kept, model_logits in zip(all_logits, logits, strict=True):
            kept.append(model_logits.cpu())
        all_index.append(index.cpu())
        if bar is not None:
            bar.update(len(index))
    return [torch.cat(kept).numpy() for kept in all_logits], torch.cat(all_index).numpy()


def predict_logits(
    model: torch.nn.Module,
    loader: DataLoader,
    accelerator: Accelerator,
    cfg: Config,
    tta: Sequence[str] = ("identity",),
) -> tuple[np.ndarray, np.ndarray]:
    """One model's logits averaged over the TTA views, with dataset indices (see `pass_logits`); the loader
    delivers the observations its config reads (validation in training)."""
    (logits,), index = pass_logits([PassModel("model", model, cfg, tuple(tta))], loader, accelerator)
    return logits, index


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


def pass_batch_size(models: Sequence[PassModel], batch_size: int, accelerator: Accelerator) -> int:
    """The batch size, halved until every model fits a full batch of its TTA views (with all of them on the
    device); the models run one after another on a batch, so each is probed alone."""
    for member in models:
        cfg = member.cfg
        shape = image_shape(cfg.view, cfg.image_size, cfg.observation_shape)
        batch_size = fitting_batch_size(member.model, shape, batch_size, accelerator, member.tta, cfg.channels_last)
    return batch_size


@contextmanager
def cadence_bar(total: int, n_models: int, accelerator: Accelerator) -> Iterator[tqdm]:
    """A bar over the cadences with their rate, on the local main process's terminal (see `progress_bar`); it
    erases itself when done, and one line of the pass's rate stays in its place, in a log file too."""
    started = time.monotonic()
    desc, show = f"evaluating {n_models} checkpoint(s)", accelerator.is_local_main_process
    with progress_bar(total=total, desc=desc, unit="cadence", show=show) as bar:
        yield bar
    seconds = time.monotonic() - started
    accelerator.print(
        f"{total} cadences read once for {n_models} checkpoint(s) in {seconds:.0f} s "
        f"({total / max(seconds, 1e-9):.1f} cadence/s)"
    )


def one_pass_logits(
    models: Sequence[PassModel],
    dataset: CadenceDataset,
    batch_size: int,
    workers: int,
    prefetch_factor: int,
    accelerator: Accelerator,
) -> list[np.ndarray]:
    """Each model's TTA-averaged logits for the dataset's cadences, in dataset order, on every process, from one
    read of every cadence.

    On running out of memory the batch is halved: up front on every process together, and again if the real
    pass still fails in a single process (a multi-process pass cannot be restarted by one process alone)."""
    batch_size = pass_batch_size(models, batch_size, accelerator)
    while True:
        try:
            loader = accelerator.prepare(make_eval_loader(dataset, batch_size, workers, prefetch_factor))
            with cadence_bar(len(dataset), len(models), accelerator) as bar:
                logits, index = pass_logits(models, loader, accelerator, bar)
            break
        except RuntimeError as err:
            if accelerator.num_processes > 1 or batch_size == 1 or not should_reduce_batch_size(err):
                raise
            batch_size = halved_batch_size(batch_size, accelerator)
    accelerator.free_memory()
    return [
        ordered_by_index(model_logits, index, len(dataset), member.name)
        for model_logits, member in zip(logits, models, strict=True)
    ]


def shared_observation_shape(infos: Sequence[CheckpointInfo]) -> tuple[int, int]:
    """The data geometry all the checkpoints were trained on: one pass reads cadences of one shape."""
    shape = tuple(infos[0].config.observation_shape)
    for info in infos[1:]:
        other = tuple(info.config.observation_shape)
        if other != shape:
            raise CheckpointError(
                f"{info.path}: trained on observations of {other[0]} x {other[1]}, but {infos[0].path} on "
                f"{shape[0]} x {shape[1]}; one evaluation reads one data geometry: evaluate them separately"
            )
    return shape


def pass_model(
    info: CheckpointInfo, tta: Sequence[str] | None, loaded: Sequence[int], accelerator: Accelerator
) -> PassModel:
    """A checkpoint's model on the device, ready to evaluate: built from its own config, its weights loaded
    strictly, compiled when the config says so; with its TTA views (its config's unless `tta`) and its
    observations' places among the `loaded` ones."""
    cfg = info.config
    model = build_model(cfg, load_pretrained=False)
    load_weights(model, info.path)
    model = model.to(accelerator.device).eval()
    if cfg.compile:
        model = torch.compile(model)
    own = loaded_observations(cfg.view, cfg.background)
    positions = None if tuple(own) == tuple(loaded) else tuple(loaded.index(o) for o in own)
    return PassModel(str(info.path), model, cfg, tuple(tta or cfg.tta), positions)


def checkpoint_logits(
    infos: Sequence[CheckpointInfo],
    data_dir: str | Path,
    split: str,
    ids: Sequence[str],
    tta: Sequence[str] | None,
    batch_size: int | None,
    num_workers: int | None,
    accelerator: Accelerator,
    cache_dir: str | Path | None = None,
) -> list[np.ndarray]:
    """Each checkpoint's logits of `ids`, averaged over its TTA views (its config's unless given), from one read
    of every cadence, however many checkpoints: all their models are on the device at once. One pass has one
    batch size: `batch_size` if given, else the smallest `eval_batch_size` of the checkpoints, halved until every
    model fits."""
    observation_shape = shared_observation_shape(infos)
    loaded = sorted(set().union(*(loaded_observations(i.config.view, i.config.background) for i in infos)))
    models = []
    for info in infos:
        member = pass_model(info, tta, loaded, accelerator)
        accelerator.print(f"{info.path}: fold {info.fold}, {info.config.model_name}, TTA {', '.join(member.tta)}")
        models.append(member)
    dataset, note = open_observations(data_dir, split, ids, None, loaded, cache_dir, "read", observation_shape)
    accelerator.print(note)
    workers = loader_workers(num_workers, accelerator.num_processes, isinstance(dataset, PackedCadenceDataset))
    batch_size = batch_size or min(info.config.eval_batch_size for info in infos)
    prefetch_factor = infos[0].config.prefetch_factor  # a loader setting: the first checkpoint's
    return one_pass_logits(models, dataset, batch_size, workers, prefetch_factor, accelerator)


def mean_logits(logits: Sequence[np.ndarray]) -> np.ndarray:
    """The float64 sum over the checkpoints in the given order divided by their number, as when each checkpoint
    read the data itself: the same bytes in the submission."""
    total = np.zeros(len(logits[0]), dtype=np.float64)
    for model_logits in logits:
        total += model_logits
    return total / len(logits)


def ensemble_logits(infos: Sequence[CheckpointInfo], *args, **kwargs) -> np.ndarray:
    """Logits averaged over the checkpoints (`checkpoint_logits`' arguments)."""
    return mean_logits(checkpoint_logits(infos, *args, **kwargs))


def score_logits(scores: np.ndarray) -> np.ndarray:
    """A rank, vote or weighted ensemble's scores in [0, 1] on the logit scale, where the pictures' thresholds are
    stated (0: a score of 0.5); a vote's 0 and 1 stay finite. The mean ensemble has its logits already."""
    return logit(np.clip(scores, SCORE_EPSILON, 1 - SCORE_EPSILON))


def append_to_report(report: Path, out_path: Path, summary: dict) -> None:
    """Add the evaluation to the run's report.md, next to the cross-validation table."""
    lines = [
        "",
        f"## Evaluation: `{out_path.name}`",
        "",
        f"{summary['n_predictions']} cadences, {len(summary['checkpoints'])} checkpoint(s), TTA: {summary['tta']}, "
        f"{summary['seconds']:.0f} s.",
    ]
    lines += ensemble_lines(summary)
    if "test_auc" in summary:
        lines += [f"Test ROC AUC against the synthetic truth: **{summary['test_auc']:.4f}**.", ""]
        lines += confusion_lines(summary["confusion"], f"{out_path.stem}_{CONFUSION_PNG}")
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
    ensemble: str = "mean",
    vote_threshold: float = 0.5,
) -> dict:
    """Write `out_path` (a submission: the sample submission's ids, in its order) and a summary beside it; the
    checkpoints combined by `ensemble` (src/engine/ensemble.py)."""
    accelerator = Accelerator(
        mixed_precision=mixed_precision, dataloader_config=DataLoaderConfiguration(non_blocking=True)
    )
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path}: already exists; pass --overwrite to replace it or choose --out")
    members, weights, ensemble_figures = ensemble_summary(checkpoints, ensemble, vote_threshold)
    infos = [read_checkpoint_info(p) for p in checkpoints]
    submission = read_sample_submission(data_dir)
    ids = submission["id"].tolist()
    require_cadence_files(data_dir, split, ids, Path(data_dir) / SAMPLE_SUBMISSION)  # never a partial submission
    started = time.time()
    logits = checkpoint_logits(infos, data_dir, split, ids, tta, batch_size, num_workers, accelerator, cache_dir)
    if ensemble == "mean":
        combined = mean_logits(logits)
        scores = expit(combined)
    else:
        scores = combine(member_logits(logits, members), ensemble, weights, vote_threshold)
        combined = score_logits(scores)
    submission["target"] = scores
    summary = {
        "checkpoints": [str(i.path) for i in infos],
        "tta": ", ".join(tta) if tta else "each checkpoint's config",
        "n_predictions": len(ids),
        "seconds": round(time.time() - started, 1),
        **ensemble_figures,
    }
    truth = read_test_labels(data_dir) if split == "test" else None
    if truth is not None:
        aligned = submission[["id"]].merge(truth, on="id", how="left")
        if aligned["target"].notna().all():
            labelled = aligned["target"].to_numpy().astype(int)
            summary["test_auc"] = float(roc_auc_score(labelled, scores))
    if accelerator.is_main_process:
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            write_csv_atomically(submission, out_path)
            if "test_auc" in summary:
                summary["confusion"] = labelled_pictures(
                    labelled, combined, out_path.parent, f"{out_path.stem}_", "test"
                )
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
            message += (
                f"; test ROC AUC {summary['test_auc']:.4f} against {data_dir}/test_labels.csv "
                f"(pictures: {out_path.stem}_{ROC_PNG}, {out_path.stem}_{CONFUSION_PNG})"
            )
        accelerator.print(message)
        if report is not None and report.is_file():
            try:
                append_to_report(report, out_path, summary)
            except OSError as err:  # a read-only run folder (a Kaggle dataset): the submission stands
                accelerator.print(f"note: {report} was not updated ({err.strerror or err}); the submission is written")
    accelerator.wait_for_everyone()
    return summary
