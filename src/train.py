"""K-fold training with one Accelerator owning devices, precision, accumulation and trackers.

Writes into `<out_dir>/<run_name>/`: config.yaml, folds.csv, fold{k}.safetensors (best validation AUC),
oof.csv (out-of-fold predictions), metrics.csv (per-epoch log), metrics.json and report.md.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env, set_seed
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler
from tqdm.auto import tqdm

from .augment import mix_batch, random_flips
from .checkpoint import checkpoint_name, save_checkpoint
from .config import Config, save_config
from .data import CadenceDataset, make_eval_loader, make_folds, read_train_labels
from .inference import ordered_by_index, predict_logits
from .model import build_model
from .tracking import CSVTracker, tracker_init_kwargs

FOLDS_CSV = "folds.csv"
OOF_CSV = "oof.csv"


def resolve_run_dir(cfg: Config, recipe_name: str) -> tuple[Config, Path]:
    """Name the run (same name on every process) and create its folder; never reuse a non-empty one."""
    # Accelerator reads ACCELERATE_USE_CPU itself; a bare PartialState would not, and would miss MULTI_CPU runs
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    name = [cfg.run_name or f"{recipe_name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"]
    if state.num_processes > 1:
        broadcast_object_list(name)
    cfg = dataclasses.replace(cfg, run_name=name[0])
    run_dir = Path(cfg.out_dir) / cfg.run_name
    if state.is_main_process:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise FileExistsError(f"{run_dir}: run folder already exists and is not empty; choose another --run-name")
        run_dir.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    return cfg, run_dir


def class_balanced_weights(targets: np.ndarray, strength: float) -> np.ndarray:
    """Per-sample weights ~ class_frequency^-strength: 0 keeps the natural mix, 1 gives balanced batches."""
    classes, counts = np.unique(targets, return_counts=True)
    class_weight = dict(zip(classes, (counts / counts.sum()) ** -strength))
    return np.array([class_weight[t] for t in targets], dtype=np.float64)


def make_train_loader(dataset: CadenceDataset, cfg: Config, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    if cfg.sampler_strength > 0:
        weights = class_balanced_weights(dataset.targets, cfg.sampler_strength)
        sampler = WeightedRandomSampler(weights, num_samples=len(dataset), replacement=True, generator=generator)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        drop_last=len(dataset) >= cfg.batch_size,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=cfg.num_workers > 0,
    )


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float):
    """LR multiplier: linear warm-up to 1, then cosine decay to `min_ratio`."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def train_one_epoch(
    model, loader, optimizer, scheduler, accelerator: Accelerator, cfg: Config, generator: torch.Generator, desc: str
) -> float:
    model.train()
    total, count = torch.zeros((), device=accelerator.device), 0
    bar = tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False, dynamic_ncols=True)
    for batch in bar:
        with accelerator.accumulate(model):
            images = random_flips(batch["image"], cfg.hflip_p, cfg.vflip_p, generator)
            images, targets = mix_batch(
                images, batch["target"], cfg.mix, cfg.mix_prob, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_label, generator
            )
            with accelerator.autocast():
                logits = model(images)["logits"]
            loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float())
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        total += loss.detach()
        count += 1
        if count % 10 == 0:
            bar.set_postfix(loss=f"{total.item() / count:.4f}")
    mean_loss = accelerator.reduce(total / max(count, 1), reduction="mean")
    return float(mean_loss)


def train_fold(
    cfg: Config, fold: int, folds: pd.DataFrame, accelerator: Accelerator, run_dir: Path, step_offset: int
) -> tuple[dict[str, Any], pd.DataFrame, int]:
    """Train one fold; returns its best result, its out-of-fold predictions and the global step reached."""
    set_seed(cfg.seed + fold)  # same initial weights on every process
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + fold * 100 + accelerator.process_index)
    train_rows, valid_rows = folds[folds["fold"] != fold], folds[folds["fold"] == fold]

    def dataset(rows: pd.DataFrame) -> CadenceDataset:
        return CadenceDataset(cfg.data_dir, "train", rows["id"].tolist(), rows["target"].tolist(), cfg.view, cfg.normalize, cfg.image_size)

    train_loader = make_train_loader(dataset(train_rows), cfg, seed=cfg.seed + fold)
    valid_loader = make_eval_loader(dataset(valid_rows), cfg.eval_batch_size, cfg.num_workers)
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

    best: dict[str, Any] = {"fold": fold, "auc": -1.0, "epoch": -1}
    best_logits = None
    valid_targets = valid_rows["target"].to_numpy()
    step = step_offset
    for epoch in range(cfg.epochs):
        started = time.time()
        train_loss = train_one_epoch(
            model, train_loader, optimizer, scheduler, accelerator, cfg, generator, f"fold {fold} epoch {epoch + 1}/{cfg.epochs}"
        )
        step += len(train_loader)
        logits, index = predict_logits(model, valid_loader, accelerator)
        logits = ordered_by_index(logits, index, len(valid_rows), f"fold {fold} validation")
        auc = float(roc_auc_score(valid_targets, logits))
        valid_loss = float(F.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(valid_targets, dtype=torch.float32)))
        record = {
            "fold": fold,
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "valid_loss": valid_loss,
            "valid_auc": auc,
            "lr": scheduler.get_last_lr()[0],
            "epoch_seconds": time.time() - started,
        }
        accelerator.log(record, step=step)
        improved = auc > best["auc"]
        if improved:
            best = {"fold": fold, "auc": auc, "epoch": epoch + 1, "valid_loss": valid_loss}
            best_logits = logits
            if accelerator.is_main_process:
                save_checkpoint(
                    run_dir / checkpoint_name(fold), accelerator.unwrap_model(model), cfg, fold, epoch + 1,
                    {"valid_auc": auc, "valid_loss": valid_loss},
                )
        accelerator.print(
            f"fold {fold} epoch {epoch + 1}/{cfg.epochs}: train_loss {train_loss:.4f} valid_loss {valid_loss:.4f} "
            f"valid_auc {auc:.4f}{' *' if improved else ''} ({record['epoch_seconds']:.0f}s)"
        )
        accelerator.wait_for_everyone()
    oof = valid_rows[["id", "target", "fold"]].assign(logit=best_logits, pred=expit(best_logits))
    accelerator.free_memory()
    return best, oof, step


def write_report(run_dir: Path, cfg: Config, fold_results: list[dict[str, Any]], oof: pd.DataFrame, seconds: float) -> dict:
    oof_auc = float(roc_auc_score(oof["target"], oof["logit"]))
    summary = {
        "run_name": cfg.run_name,
        "model_name": cfg.model_name,
        "view": cfg.view,
        "folds": fold_results,
        "oof_auc": oof_auc,
        "n_oof": len(oof),
        "train_seconds": round(seconds, 1),
    }
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    lines = [
        f"# Run {cfg.run_name}",
        "",
        f"Model `{cfg.model_name}`, view `{cfg.view}`, image size {cfg.image_size or 'native'}, "
        f"{cfg.epochs} epochs, {len(fold_results)} folds, {seconds / 60:.1f} min.",
        "",
        "| fold | best epoch | valid ROC AUC |",
        "|---:|---:|---:|",
        *[f"| {r['fold']} | {r['epoch']} | {r['auc']:.4f} |" for r in fold_results],
        f"| **out-of-fold** | | **{oof_auc:.4f}** ({len(oof)} samples) |",
        "",
    ]
    (run_dir / "report.md").write_text("\n".join(lines))
    return summary


def hyperparameters(cfg: Config) -> dict[str, Any]:
    """The config as scalars, the only values every tracker (TensorBoard's hparams included) accepts."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in cfg.to_dict().items()}


def train(cfg: Config, recipe_name: str = "run") -> dict[str, Any]:
    """Train every configured fold; returns the summary written to metrics.json."""
    cfg, run_dir = resolve_run_dir(cfg, recipe_name)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        log_with=[CSVTracker(run_dir), *cfg.tracker],
        project_dir=str(run_dir),
    )
    labels = read_train_labels(cfg.data_dir)
    if accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")
        make_folds(labels, cfg.n_folds, cfg.seed).to_csv(run_dir / FOLDS_CSV, index=False)
    accelerator.wait_for_everyone()
    folds = pd.read_csv(run_dir / FOLDS_CSV, dtype={"id": str})
    accelerator.init_trackers(cfg.project, config=hyperparameters(cfg), init_kwargs=tracker_init_kwargs(run_dir, cfg.run_name))
    accelerator.print(f"run folder: {run_dir}  ({len(folds)} cadences, {accelerator.num_processes} process(es), {accelerator.device})")

    started, step = time.time(), 0
    fold_results, oof_parts = [], []
    for fold in cfg.train_folds:
        result, oof, step = train_fold(cfg, fold, folds, accelerator, run_dir, step)
        fold_results.append(result)
        oof_parts.append(oof)
    summary = {}
    if accelerator.is_main_process:
        oof = pd.concat(oof_parts).sort_values(["fold", "id"]).reset_index(drop=True)
        oof.to_csv(run_dir / OOF_CSV, index=False)
        summary = write_report(run_dir, cfg, fold_results, oof, time.time() - started)
        accelerator.print((run_dir / "report.md").read_text())
    accelerator.end_training()
    return summary
