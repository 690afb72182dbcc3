"""K-fold training with one Accelerator owning devices, precision, accumulation, trackers and resume state.

Writes into `<out_dir>/<run_name>/`: config.yaml, folds.csv, fold{k}.safetensors (the epoch `select_by` chooses),
oof_fold{k}.csv and oof.csv (out-of-fold predictions), metrics.csv (per-epoch log), metrics.json, report.md,
curves.png, roc.png, confusion.png and gradcam.png (src/engine/pictures.py),
bad_files.csv (with skip_bad) and, while the run is unfinished, state/ (what `main.py --resume` continues from).

Every batch's randomness (sampler order, flips, mixing, dropout) is a function of (seed, fold, epoch, batch,
process), so a resumed run replays exactly what the uninterrupted run would have done.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator, PartialState
from accelerate.tracking import GeneralTracker
from accelerate.utils import (
    DataLoaderConfiguration,
    TorchDynamoPlugin,
    broadcast_object_list,
    parse_flag_from_env,
    set_seed,
)
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from src.core.cadence import loaded_observations
from src.core.cli import progress_bar
from src.core.config import Config, load_config, save_config
from src.core.errors import (
    USER_ERRORS,
    CheckpointError,
    ConfigError,
    Interrupted,
    StorageError,
    TrainingError,
    out_of_space,
)
from src.core.files import write_csv_atomically, write_text_atomically
from src.data.datasets import (
    CadenceDataset,
    CombinedCadences,
    PackedCadenceDataset,
    loader_options,
    loader_workers,
    make_eval_loader,
    run_cadences,
)
from src.data.kaggle import (
    TRAIN_LABELS,
    check_fold_sizes,
    make_folds,
    read_pseudo_labels,
    read_train_labels,
    require_cadence_files,
)
from src.data.validation import scan_cadences, write_bad_list
from src.engine.checkpoint import checkpoint_name, read_checkpoint_info, save_checkpoint
from src.engine.inference import ordered_by_index, predict_logits
from src.engine.pictures import PICTURES_HEADING, write_run_pictures
from src.engine.resume import (
    STAGING_DIR,
    Progress,
    clear_training_state,
    latest_state,
    load_training_state,
    read_progress,
    save_training_state,
)
from src.engine.sam import sharpness_aware_gradients
from src.engine.tracking import METRICS_CSV, CSVTracker, drop_metrics_after, tracker_init_kwargs
from src.models.classifier import build_model
from src.synth.inject import inject_signals
from src.transforms.augment import mix_batch, random_flips
from src.transforms.images import batch_to_images

CONFIG_YAML = "config.yaml"
FOLDS_CSV = "folds.csv"
OOF_CSV = "oof.csv"
REPORT_MD = "report.md"
BAD_FILES_CSV = "bad_files.csv"
# what may change when a run is resumed: where the data is and how it is read, never what is trained
RESUME_OVERRIDES = (
    "data_dir",
    "cache_dir",
    "num_workers",
    "prefetch_factor",
    "eval_batch_size",
    "save_every_minutes",
    "tracker",
)


def oof_fold_name(fold: int) -> str:
    return f"oof_fold{fold}.csv"


def machine_without_rank(num_processes: int, environ: Mapping[str, str]) -> str | None:
    """The main machine's address when Accelerate's CPU launcher started this process for several machines without a
    rank, else None. `accelerate launch --cpu --num_machines N --main_process_ip IP` starts one plain process per
    machine and hands it only MASTER_ADDR=IP (its own default is 127.0.0.1, for several processes on one machine); the
    rank must come from the environment (RANK and WORLD_SIZE, or mpirun's), and without one each machine is a
    1-process job of its own."""
    address = environ.get("MASTER_ADDR", "")
    cpu_launcher = environ.get("ACCELERATE_USE_CPU", "").lower() in ("y", "yes", "t", "true", "on", "1")
    if num_processes > 1 or not address or not cpu_launcher:
        return None
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name
        loopback = address == "localhost"
    return None if loopback else address


def prepare_run_dir(
    cfg: Config, recipe_name: str, overwrite: bool = False, resume: bool = False
) -> tuple[Config, Path]:
    """Name the run (same name on every process) and create its folder.

    A non-empty folder is refused unless the run is resumed (kept) or `overwrite` is given (emptied first)."""
    # Accelerator reads ACCELERATE_USE_CPU itself; a bare PartialState would not, and would miss MULTI_CPU runs
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    address = machine_without_rank(state.num_processes, os.environ)
    if address:
        raise ConfigError(
            f"accelerate launch --cpu started this process for several machines (main process at {address}) but "
            "gave it no rank, so every machine would train the whole run alone into the same run folder. Give each "
            "machine's launch its place: RANK=<machine rank> WORLD_SIZE=<number of machines> accelerate launch "
            "--cpu ... (docs/training.md, Several machines), or start all processes from one machine with "
            "--mpirun_hostfile"
        )
    name = [cfg.run_name or f"{recipe_name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"]
    if state.num_processes > 1:
        broadcast_object_list(name)
    cfg = dataclasses.replace(cfg, run_name=name[0])
    run_dir = Path(cfg.out_dir) / cfg.run_name
    if state.is_main_process and not resume:
        if run_dir.exists() and any(run_dir.iterdir()) and failed_start(run_dir, cfg):
            print(f"replacing {run_dir}: it holds only what a start that failed wrote (no training state)")
            shutil.rmtree(run_dir)
        if run_dir.exists() and any(run_dir.iterdir()):
            if not overwrite:
                raise FileExistsError(
                    f"{run_dir}: run folder already exists and is not empty; choose another --run-name, continue it "
                    f"with --resume {run_dir}, or replace it with --overwrite"
                )
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    return cfg, run_dir


def failed_start(run_dir: Path, cfg: Config) -> bool:
    """Whether a run folder holds only what a start writes before training (its config, folds, an empty log):
    no saved state, no fold checkpoint, no predictions, and nothing else. Such a folder is no run to keep or
    resume, so it must not block the corrected command."""
    start_files = {CONFIG_YAML, FOLDS_CSV, METRICS_CSV, BAD_FILES_CSV, STAGING_DIR, "wandb", cfg.project}
    return latest_state(run_dir) is None and all(entry.name in start_files for entry in run_dir.iterdir())


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """The saved config of a run to resume, pointed at where the run folder is now."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_YAML).is_file():
        raise ConfigError(
            f"{run_dir}: no {CONFIG_YAML}; not a run folder of main.py (or it was killed before starting)"
        )
    overrides = dict(overrides or {})
    refused = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if refused:
        raise ConfigError(
            f"--resume continues {run_dir} with its saved {CONFIG_YAML}; cannot change {', '.join(refused)} "
            f"(only {', '.join(RESUME_OVERRIDES)})"
        )
    return load_config(run_dir / CONFIG_YAML, {**overrides, "out_dir": str(run_dir.parent), "run_name": run_dir.name})


def class_balanced_weights(targets: np.ndarray, strength: float) -> np.ndarray:
    """Per-sample weights ~ class_frequency^-strength: 0 keeps the natural mix, 1 gives balanced batches."""
    labels = (np.asarray(targets) >= 0.5).astype(int)  # soft pseudo-labels count with the class they lean to
    classes, counts = np.unique(labels, return_counts=True)
    class_weight = dict(zip(classes, (counts / counts.sum()) ** -strength, strict=True))
    return np.array([class_weight[t] for t in labels], dtype=np.float64)


def make_train_loader(
    dataset: CadenceDataset | CombinedCadences, cfg: Config, workers: int, generator: torch.Generator
) -> DataLoader:
    """Shuffled (or class-weighted) loader whose order is set by `generator`, reseeded at every epoch."""
    if cfg.sampler_strength > 0:
        weights = class_balanced_weights(dataset.targets, cfg.sampler_strength)
        sampler = WeightedRandomSampler(weights, num_samples=len(dataset), replacement=True, generator=generator)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        drop_last=len(dataset) >= cfg.batch_size,
        persistent_workers=workers > 0,
        **loader_options(workers, cfg.prefetch_factor),
    )


def derived_seeds(*keys: int, count: int = 1) -> list[int]:
    """Well-mixed 63-bit seeds for a position in the run, e.g. (seed, fold, epoch, batch, process)."""
    return [int(s >> np.uint64(1)) for s in np.random.SeedSequence(list(keys)).generate_state(count, np.uint64)]


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float):
    """LR multiplier: linear warm-up to 1, then cosine decay to `min_ratio`."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def agree(accelerator: Accelerator, loss_finite: bool, save_due: bool) -> tuple[bool, bool]:
    """One collective for both per-batch decisions, so every process takes the same branch:
    the loss is finite on all processes; a save is due on any."""
    if accelerator.num_processes == 1:
        return loss_finite, save_due
    flags = accelerator.gather(torch.tensor([[float(loss_finite), float(save_due)]], device=accelerator.device))
    return bool(flags[:, 0].min() > 0), bool(flags[:, 1].max() > 0)


def has_gradients(model: torch.nn.Module) -> bool:
    return any(p.grad is not None for p in model.parameters())


def train_one_epoch(
    model,
    loader,
    optimizer,
    scheduler,
    accelerator: Accelerator,
    cfg: Config,
    progress: Progress,
    generator: torch.Generator,
    save_state: Callable[[], None],
    ema: ModelEmaV3 | None = None,
) -> float:
    """Train from batch `progress.batches_done` of `progress.epoch` to the end of the epoch; returns the mean loss.

    A non-finite loss stops the run before the optimizer steps (nonfinite_loss=stop) or leaves the batch out
    (skip); with `optimizer: sam` each update's micro-batches are kept for SAM's second pass (src/engine/sam.py);
    the resume state is saved at update boundaries once `save_every_minutes` have passed."""
    model.train()
    # the batches of this epoch trained before a resume count too (once: on the main process), summed in float32
    # in the same order as an uninterrupted epoch sums them
    carried = progress.epoch_loss_sum if accelerator.is_main_process else 0.0
    total = torch.tensor(carried, dtype=torch.float32, device=accelerator.device)
    count = progress.epoch_loss_count if accelerator.is_main_process else 0
    first = progress.batches_done
    bar = progress_bar(
        loader,
        initial=first,
        total=first + len(loader),
        desc=f"fold {progress.fold} epoch {progress.epoch + 1}/{cfg.epochs}",
        show=accelerator.is_local_main_process,
    )
    last_save = time.monotonic()
    loaded = loaded_observations(cfg.view, cfg.background)  # the observations each batch holds, for injection

    def loss_of(model, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with accelerator.autocast():
            logits = model(images)["logits"]
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())

    replay: list[tuple[torch.Tensor, torch.Tensor]] = []  # SAM: this update's micro-batches, for its second pass
    for batch_index, batch in enumerate(bar, start=first):
        global_seed, augment_seed = derived_seeds(
            cfg.seed, progress.fold, progress.epoch, batch_index, accelerator.process_index, count=2
        )
        torch.manual_seed(global_seed)  # dropout and stochastic depth
        generator.manual_seed(augment_seed)  # flips and mixing
        with accelerator.accumulate(model):
            observations, targets = batch["observations"], batch["target"]
            if cfg.inject_prob > 0 or cfg.inject_rfi_prob > 0:
                observations, targets = inject_signals(
                    observations,
                    targets,
                    loaded,
                    cfg.inject_prob,
                    cfg.inject_rfi_prob,
                    cfg.inject_snr,
                    generator,
                    window=cfg.window,
                    partial_probability=cfg.inject_partial_prob,
                    wide_interference=cfg.inject_rfi_wide,
                    interference_snr_range=cfg.inject_rfi_snr,
                )
            images = random_flips(batch_to_images(observations, cfg), cfg.hflip_p, cfg.vflip_p, generator)
            images, targets = mix_batch(
                images, targets, cfg.mix, cfg.mix_prob, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_label, generator
            )
            loss = loss_of(model, images, targets)
            save_due = time.monotonic() - last_save >= cfg.save_every_minutes * 60
            loss_finite, save_due = agree(accelerator, bool(torch.isfinite(loss.detach())), save_due)
            if loss_finite:
                accelerator.backward(loss)
                if cfg.optimizer == "sam":
                    replay.append((images, targets))
                total += loss.detach()
                count += 1
            elif cfg.nonfinite_loss == "stop":
                raise TrainingError(
                    f"fold {progress.fold} epoch {progress.epoch + 1} batch {batch_index + 1}: the training loss is "
                    f"{loss.item()} on at least one process. Stopped before the optimizer step, so no checkpoint or "
                    "saved state holds weights from it. Try a lower --lr, --grad-clip 1, bf16 instead of fp16, or "
                    "--nonfinite-loss skip; then continue with --resume."
                )
            else:
                progress.skipped_batches += 1
                accelerator.print(
                    f"fold {progress.fold} epoch {progress.epoch + 1} batch {batch_index + 1}: "
                    f"non-finite loss, batch left out ({progress.skipped_batches} in this fold)"
                )
            if accelerator.sync_gradients:
                if replay:  # SAM: the update's gradients again, at the loss's sharpest point nearby
                    sharpness_aware_gradients(model, replay, loss_of, accelerator, cfg.sam_rho)
                    replay.clear()
                if loss_finite and cfg.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if loss_finite or has_gradients(model):  # with nothing to apply, fp16's scaler would refuse to step
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None and accelerator.sync_gradients:
                progress.ema_updates += 1
                ema.update(accelerator.unwrap_model(model, keep_torch_compile=False), step=progress.ema_updates)
        progress.batches_done, progress.step = batch_index + 1, progress.step + 1
        if count and count % 10 == 0:
            bar.set_postfix(loss=f"{total.item() / count:.4f}")
        if accelerator.sync_gradients and save_due and progress.batches_done < first + len(loader):
            progress.epoch_loss_sum, progress.epoch_loss_count = epoch_loss(accelerator, total, count)
            save_state()
            last_save = time.monotonic()
    loss_sum, loss_count = epoch_loss(accelerator, total, count)
    return loss_sum / max(loss_count, 1)


def epoch_loss(accelerator: Accelerator, total: torch.Tensor, count: int) -> tuple[float, int]:
    """The epoch's training loss sum and batch count over every process (saved with the state, so that a resumed
    epoch reports the mean of all its batches, as the uninterrupted one does)."""
    sums = accelerator.reduce(torch.stack([total, torch.tensor(float(count), device=total.device)]), "sum")
    return float(sums[0]), round(float(sums[1]))


def validate(
    model, loader, accelerator: Accelerator, cfg: Config, targets: np.ndarray, what: str
) -> tuple[np.ndarray, float, float]:
    """Validation logits in dataset order, ROC AUC and loss."""
    logits, index = predict_logits(model, loader, accelerator, cfg)
    logits = ordered_by_index(logits, index, len(targets), what)
    if not np.isfinite(logits).all():
        raise TrainingError(f"{what}: the model gives non-finite logits; training diverged (try a lower --lr)")
    auc = float(roc_auc_score(targets, logits))
    loss = float(F.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(targets, dtype=torch.float32)))
    return logits, auc, loss


def prepare_training(
    cfg: Config, accelerator: Accelerator, train_loader: DataLoader, valid_loader: DataLoader | None
) -> tuple:
    """The recipe's model, AdamW, warm-up + cosine schedule and loaders prepared by `accelerator`, and the EMA of
    the weights (None without `ema_decay`): (model, optimizer, train_loader, valid_loader, scheduler, ema)."""
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # counted on the un-sharded loader: Accelerate steps a prepared scheduler once per process per update
    updates_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(cfg.epochs * updates_per_epoch, int(cfg.warmup_epochs * updates_per_epoch), cfg.min_lr / cfg.lr),
    )
    model, optimizer, train_loader, valid_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, valid_loader, scheduler
    )
    # the average of the weights, on every process alike (DDP keeps their weights equal); validated and saved
    ema = (
        ModelEmaV3(accelerator.unwrap_model(model, keep_torch_compile=False), decay=cfg.ema_decay, use_warmup=True)
        if cfg.ema_decay
        else None
    )
    return model, optimizer, train_loader, valid_loader, scheduler, ema


def improves(select_by: str, auc: float, valid_loss: float, best: dict[str, Any]) -> bool:
    """Whether this epoch's validation beats the fold's best so far by the `select_by` measure."""
    if not best:
        return True
    return auc > best["auc"] if select_by == "valid_auc" else valid_loss < best["valid_loss"]


def train_fold(
    cfg: Config,
    folds: pd.DataFrame,
    accelerator: Accelerator,
    run_dir: Path,
    progress: Progress,
    state_dir: Path | None = None,
    pseudo: pd.DataFrame | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train fold `progress.fold` (from `state_dir` when resuming); returns its best result and its OOF predictions.
    `pseudo` (id, soft target) test cadences join the fold's training cadences."""
    fold = progress.fold
    set_seed(cfg.seed + fold)  # same initial weights on every process
    train_rows, valid_rows = folds[folds["fold"] != fold], folds[folds["fold"] == fold]

    def dataset(rows: pd.DataFrame) -> tuple[CadenceDataset, str]:
        # access "map": every epoch reads the same cadences again
        return run_cadences(cfg, "train", rows["id"].tolist(), rows["target"].tolist(), access="map")

    def workers(found: CadenceDataset) -> int:
        return loader_workers(cfg.num_workers, accelerator.num_processes, isinstance(found, PackedCadenceDataset))

    sampler_generator = torch.Generator()
    (train_set, train_note), (valid_set, valid_note) = dataset(train_rows), dataset(valid_rows)
    if fold == cfg.train_folds[0] or state_dir is not None:  # the same for every fold: said once a session
        for note in dict.fromkeys([train_note, valid_note]):
            accelerator.print(note)
    if pseudo is not None:
        test_set, note = run_cadences(cfg, "test", pseudo["id"].tolist(), pseudo["target"].tolist(), access="map")
        accelerator.print(f"{note}; {len(pseudo)} pseudo-labelled cadences join the training set")
        train_set = CombinedCadences([train_set, test_set])
    train_loader = make_train_loader(train_set, cfg, workers(train_set), sampler_generator)
    valid_loader = make_eval_loader(valid_set, cfg.eval_batch_size, workers(valid_set), cfg.prefetch_factor)
    model, optimizer, train_loader, valid_loader, scheduler, ema = prepare_training(
        cfg, accelerator, train_loader, valid_loader
    )
    ema_model = ema.module if ema is not None else None
    best_logits = load_training_state(accelerator, state_dir, ema_model) if state_dir is not None else None
    if state_dir is not None:
        accelerator.print(
            f"resuming fold {fold} at epoch {progress.epoch + 1}, batch {progress.batches_done + 1} from {state_dir}"
        )

    def save_state() -> None:
        save_training_state(accelerator, run_dir, progress, best_logits, ema_model)

    augment_generator = torch.Generator()
    valid_targets = valid_rows["target"].to_numpy()
    while progress.epoch < cfg.epochs:
        epoch, started = progress.epoch, time.time()
        sampler_generator.manual_seed(derived_seeds(cfg.seed, fold, epoch)[0])
        loader = (
            accelerator.skip_first_batches(train_loader, progress.batches_done)
            if progress.batches_done
            else train_loader
        )
        train_loss = train_one_epoch(
            model, loader, optimizer, scheduler, accelerator, cfg, progress, augment_generator, save_state, ema
        )
        evaluated = ema_model if ema_model is not None else model
        logits, auc, valid_loss = validate(
            evaluated, valid_loader, accelerator, cfg, valid_targets, f"fold {fold} validation"
        )
        improved = improves(cfg.select_by, auc, valid_loss, progress.best)
        if improved:
            progress.best = {"fold": fold, "auc": auc, "epoch": epoch + 1, "valid_loss": valid_loss}
            best_logits = logits
            if accelerator.is_main_process:
                weights = accelerator.unwrap_model(evaluated, keep_torch_compile=False)
                save_checkpoint(
                    run_dir / checkpoint_name(fold),
                    weights,
                    cfg,
                    fold,
                    epoch + 1,
                    {"valid_auc": auc, "valid_loss": valid_loss, "skipped_batches": progress.skipped_batches},
                )
        seconds = time.time() - started
        progress.train_seconds += seconds
        accelerator.log(
            {
                "fold": fold,
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "valid_loss": valid_loss,
                "valid_auc": auc,
                "lr": scheduler.get_last_lr()[0],
                "epoch_seconds": seconds,
            },
            step=progress.step,
        )
        progress.epoch, progress.batches_done = epoch + 1, 0
        progress.epoch_loss_sum, progress.epoch_loss_count = 0.0, 0
        save_state()
        accelerator.print(
            f"fold {fold} epoch {epoch + 1}/{cfg.epochs}: train_loss {train_loss:.4f} valid_loss {valid_loss:.4f} "
            f"valid_auc {auc:.4f}{' *' if improved else ''} ({seconds:.0f}s)"
        )
    logits = best_logits.astype(np.float64)  # as a fold read back from its CSV, so resumed runs write the same digits
    oof = valid_rows[["id", "target", "fold"]].assign(logit=logits, pred=expit(logits))
    if accelerator.is_main_process:
        write_csv_atomically(oof, run_dir / oof_fold_name(fold))  # marks the fold as complete
    accelerator.wait_for_everyone()
    accelerator.free_memory()
    return dict(progress.best), oof


def finished_fold(run_dir: Path, fold: int) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """A fold completed in an earlier session: its result (from its checkpoint) and OOF predictions."""
    oof_path = run_dir / oof_fold_name(fold)
    if not oof_path.is_file():
        return None
    info = read_checkpoint_info(run_dir / checkpoint_name(fold))
    result = {
        "fold": fold,
        "auc": info.metrics["valid_auc"],
        "epoch": info.epoch,
        "valid_loss": info.metrics["valid_loss"],
    }
    return result, pd.read_csv(oof_path, dtype={"id": str})


SELECTION_WORDS = {"valid_auc": "best valid ROC AUC", "valid_loss": "lowest valid loss"}


def write_report(
    run_dir: Path, cfg: Config, fold_results: list[dict[str, Any]], oof: pd.DataFrame, seconds: float
) -> dict:
    oof_auc = float(roc_auc_score(oof["target"], oof["logit"]))
    mean_fold_auc = float(np.mean([r["auc"] for r in fold_results]))
    summary = {
        "run_name": cfg.run_name,
        "model_name": cfg.model_name,
        "view": cfg.view,
        "folds": fold_results,
        "oof_auc": oof_auc,
        "mean_fold_auc": mean_fold_auc,
        "n_oof": len(oof),
        "train_seconds": round(seconds, 1),
    }
    write_text_atomically(run_dir / "metrics.json", json.dumps(summary, indent=2))
    lines = [
        f"# Run {cfg.run_name}",
        "",
        f"Model `{cfg.model_name}`, view `{cfg.view}`, image size {cfg.image_size or 'native'}, "
        f"{cfg.epochs} epochs, {len(fold_results)} folds, {seconds / 60:.1f} min.",
        "",
        f"| fold | chosen epoch ({SELECTION_WORDS[cfg.select_by]}) | valid ROC AUC | valid loss |",
        "|---:|---:|---:|---:|",
        *[f"| {r['fold']} | {r['epoch']} | {r['auc']:.4f} | {r['valid_loss']:.4f} |" for r in fold_results],
        f"| mean of folds | | {mean_fold_auc:.4f} | |",
        f"| **out-of-fold** | | **{oof_auc:.4f}** ({len(oof)} samples) | |",
        "",
        "Each fold's ROC AUC ranks that fold's validation cadences by its own model. The out-of-fold AUC ranks all "
        "folds' predictions together, so it also needs the folds' logits on one scale: well below the mean of "
        "folds, it says some fold's chosen checkpoint is miscalibrated (a high valid loss; see metrics.csv), and a "
        "fold ensemble would average logits of different scales too. `select_by: valid_loss` keeps calibrated "
        "checkpoints.",
        "",
    ]
    write_text_atomically(run_dir / REPORT_MD, "\n".join(lines))
    return summary


def append_pictures(run_dir: Path, oof: pd.DataFrame, device: torch.device, data_dir: str | None = None) -> None:
    """Draw the run's pictures (src/engine/pictures.py) and put their section into report.md after the
    cross-validation table (a redraw replaces it; sections evaluate.py appended stay)."""
    metrics = pd.read_csv(run_dir / METRICS_CSV)
    section = "\n".join(write_run_pictures(run_dir, oof, metrics, device, data_dir))
    report = (run_dir / REPORT_MD).read_text()
    start = report.find(f"\n{PICTURES_HEADING}\n")
    if start < 0:
        before, after = report.rstrip("\n"), ""
    else:
        end = report.find("\n## ", start + 1)
        before, after = report[:start].rstrip("\n"), (report[end + 1 :] if end >= 0 else "")
    write_text_atomically(run_dir / REPORT_MD, f"{before}\n\n{section}" + (f"\n{after}" if after else ""))


def hyperparameters(cfg: Config) -> dict[str, Any]:
    """The config as scalars, the only values every tracker (TensorBoard's hparams included) accepts."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in cfg.to_dict().items()}


def usable_labels(cfg: Config, run_dir: Path, labels: pd.DataFrame, accelerator: Accelerator) -> pd.DataFrame:
    """The labelled cadences to train on: all of them, or (skip_bad) those whose files read cleanly."""
    if not cfg.skip_bad:
        return labels
    bad_list = run_dir / BAD_FILES_CSV
    if accelerator.is_main_process:
        bad = scan_cadences(
            cfg.data_dir, "train", labels["id"].tolist(), progress=True, observation_shape=cfg.observation_shape
        )
        write_bad_list(bad, bad_list)
        if bad:
            accelerator.print(f"skip_bad: leaving out {len(bad)} unreadable training cadence(s), listed in {bad_list}")
    accelerator.wait_for_everyone()
    bad_ids = set(pd.read_csv(bad_list, dtype={"id": str})["id"])
    kept = labels[~labels["id"].isin(bad_ids)].reset_index(drop=True)
    if kept.empty:
        raise TrainingError(f"{bad_list}: every training cadence is unreadable; nothing to train on")
    return kept


def train(
    cfg: Config,
    recipe_name: str = "run",
    overwrite: bool = False,
    resume: bool = False,
    trackers: Sequence[GeneralTracker] = (),
) -> dict[str, Any]:
    """Train every configured fold (continuing from the run's saved state when `resume`); returns the summary
    written to metrics.json. `trackers` receive every epoch's log too (a search's trial reports through one)."""
    labels = read_train_labels(cfg.data_dir)
    if not cfg.skip_bad:
        require_cadence_files(cfg.data_dir, "train", labels["id"].tolist(), Path(cfg.data_dir) / TRAIN_LABELS)
    # read and checked once, before any folder is made
    pseudo = read_pseudo_labels(cfg.pseudo_labels, cfg.data_dir, labels["id"].tolist()) if cfg.pseudo_labels else None
    if not resume:  # what can be checked is checked before the run folder is made
        check_fold_sizes(labels, cfg.n_folds, Path(cfg.data_dir) / TRAIN_LABELS)
        if cfg.cache_dir:  # an incomplete or damaged packed cache
            run_cadences(cfg, "train", labels["id"].tolist(), None)
        build_model(cfg)  # an unknown backbone or unreadable pretrained weights
    cfg, run_dir = prepare_run_dir(cfg, recipe_name, overwrite, resume)
    resume_command = f"{launcher()} main.py --resume {run_dir}"
    try:
        return train_in(cfg, run_dir, labels, pseudo, resume, trackers)
    except USER_ERRORS as err:
        # a bad training cadence found at its first read: a run that never saved a state leaves no folder behind
        # (a TrainingError says how to go on with --resume, so its folder stays)
        stays = resume or isinstance(err, TrainingError) or not PartialState().is_main_process
        if not stays and run_dir.is_dir() and failed_start(run_dir, cfg):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except KeyboardInterrupt:
        raise Interrupted(f"{run_dir}: its last saved state is intact; continue with: {resume_command}") from None
    except Exception as err:
        if not out_of_space(err):
            raise
        what = getattr(err, "filename", None) or "a checkpoint or the training state"
        raise StorageError(
            f"{run_dir}: no space left on the device to write {what}; the last saved state is intact: free space, "
            f"then continue with: {resume_command}"
        ) from None


def launcher() -> str:
    """How main.py was started, for the resume command: Accelerate's launcher sets its variables."""
    return "accelerate launch" if any(k.startswith("ACCELERATE_") for k in os.environ) else "python"


def train_in(
    cfg: Config, run_dir: Path, labels: pd.DataFrame, pseudo, resume: bool, trackers: Sequence[GeneralTracker] = ()
) -> dict[str, Any]:
    """The training of a prepared run folder (see `train`)."""
    state_dir = latest_state(run_dir) if resume else None
    if resume and not (run_dir / FOLDS_CSV).is_file():
        raise CheckpointError(f"{run_dir}: no {FOLDS_CSV}; the run stopped before training began - start it again")
    if resume and (run_dir / OOF_CSV).is_file():
        raise ConfigError(
            f"--resume {run_dir}: the run is complete ({OOF_CSV} exists); to train it again use --overwrite"
        )
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        dataloader_config=DataLoaderConfiguration(non_blocking=True),  # with pinned memory: copies overlap compute
        dynamo_plugin=TorchDynamoPlugin(backend="inductor" if cfg.compile else "no"),
        log_with=[CSVTracker(run_dir), *cfg.tracker, *trackers],
        project_dir=str(run_dir),
    )
    progress = read_progress(state_dir) if state_dir is not None else Progress(fold=cfg.train_folds[0])
    if not resume:
        folds = make_folds(
            usable_labels(cfg, run_dir, labels, accelerator), cfg.n_folds, cfg.seed, Path(cfg.data_dir) / TRAIN_LABELS
        )
        if accelerator.is_main_process:
            save_config(cfg, run_dir / CONFIG_YAML)
            write_csv_atomically(folds, run_dir / FOLDS_CSV)
    elif accelerator.is_main_process:
        drop_metrics_after(run_dir, progress.step)  # epochs logged after the saved state are trained again
    accelerator.wait_for_everyone()
    folds = pd.read_csv(run_dir / FOLDS_CSV, dtype={"id": str})
    accelerator.init_trackers(
        cfg.project, config=hyperparameters(cfg), init_kwargs=tracker_init_kwargs(run_dir, cfg.run_name)
    )
    accelerator.print(
        f"run folder: {run_dir}  ({len(folds)} cadences, {accelerator.num_processes} process(es), {accelerator.device})"
    )

    fold_results, oof_parts = [], []
    for fold in cfg.train_folds:
        finished = finished_fold(run_dir, fold)
        if finished is None:
            resuming_this_fold = state_dir is not None and progress.fold == fold
            if not resuming_this_fold:
                progress = Progress(fold=fold, step=progress.step, train_seconds=progress.train_seconds)
            finished = train_fold(
                cfg, folds, accelerator, run_dir, progress, state_dir if resuming_this_fold else None, pseudo
            )
        fold_results.append(finished[0])
        oof_parts.append(finished[1])
    summary = {}
    if accelerator.is_main_process:
        oof = pd.concat(oof_parts).sort_values(["fold", "id"]).reset_index(drop=True)
        write_csv_atomically(oof, run_dir / OOF_CSV)
        summary = write_report(run_dir, cfg, fold_results, oof, progress.train_seconds)
        clear_training_state(run_dir)  # the run is complete; its pictures can be drawn again by src.pictures
        append_pictures(run_dir, oof, accelerator.device)
        accelerator.print((run_dir / REPORT_MD).read_text())
    accelerator.end_training()
    return summary
