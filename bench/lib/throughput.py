"""Loader, training-step and inference throughput, and evaluation memory, measured side by side (bench/throughput.py).

Loaders, all over the same cadences in the same random order, page cache warm (each is run once untimed first):
  1. public-pipeline: per-file np.load, per-sample stacking, float32, normalisation and resize in the Dataset;
  2. plain per-file np.load in one process, no per-sample work: the file-tree ceiling;
  3. this project's loader from the file tree, plus the batch work (conversion, normalisation, resize);
  4. this project's loader from the packed cache, plus the same batch work, on this machine's CPU;
  5. a raw in-memory copy of the same packed bytes: the limit for the loader's own delivery.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from src.core.cadence import loaded_observations, view_observations
from src.core.config import Config, load_config
from src.core.errors import DataError
from src.core.files import link_layout, write_text_atomically
from src.data.datasets import CadenceDataset, PackedCadenceDataset, loader_options, loader_workers
from src.data.kaggle import SAMPLE_SUBMISSION, TRAIN_LABELS, cadence_path, read_train_labels
from src.data.packed import open_packed, pack_split
from src.engine.checkpoint import save_checkpoint
from src.models.classifier import build_model
from src.search.dedoppler import cadence_planes
from src.transforms.images import CHANNEL_VIEWS, batch_to_images, image_shape, robust_normalize


@dataclass(frozen=True)
class BenchSettings:
    data_dir: Path
    out_dir: Path
    recipes: tuple[Path, ...]
    n_loader: int = 1024
    batch_size: int = 32
    workers: int | None = None
    model_batch_size: int = 8
    model_steps: int = 3
    rss_sizes: tuple[int, ...] = (1000, 4000)
    rss_recipe: Path = Path("configs/demo_cpu.yaml")  # its model runs evaluate.py for the memory figures
    feed_steps: int = 20
    feed_on_cpu: bool = False  # the loader-fed step comparison is a GPU measurement; on CPU only when asked
    seed: int = 0


# ------------------------------------------------------------------ loaders ---


class PublicPipelineDataset(Dataset):
    """What public notebooks do per sample inside the Dataset: load, stack, float32, normalise, resize (and, for
    the dedoppler view, which no public notebook has, its de-Doppler planes, also per sample)."""

    def __init__(self, paths: Sequence[Path], cfg: Config) -> None:
        self.paths, self.cfg = list(paths), cfg
        self.observations = list(view_observations(cfg.view))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        cadence = np.load(self.paths[index])[self.observations].astype(np.float32)
        if self.cfg.normalize == "robust":  # per observation, before the observations are stacked
            cadence = robust_normalize(torch.from_numpy(cadence)).numpy()
        # the channel views keep the observations as channels; the others stack them in time
        image = cadence if self.cfg.view in CHANNEL_VIEWS else np.vstack(cadence)[None]
        if self.cfg.normalize == "sample":
            image = (image - image.mean()) / (image.std() + 1e-6)
        elif self.cfg.normalize == "observation":
            image = (image - image.mean(axis=(-2, -1), keepdims=True)) / (
                image.std(axis=(-2, -1), keepdims=True) + 1e-6
            )
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        size = tuple(self.cfg.image_size or tensor.shape[-2:])
        resized = (
            F.interpolate(tensor[None], size=size, mode="bilinear", antialias=True)[0]
            if self.cfg.image_size
            else tensor
        )
        if self.cfg.view == "dedoppler":
            planes = cadence_planes(tensor[None], n_drifts=size[0])
            resized = torch.cat([resized, F.interpolate(planes, size=size, mode="bilinear", antialias=True)[0]])
        return {"image": resized, "target": torch.tensor(0.0)}


def second_pass_rate(one_pass: Callable[[], int]) -> float:
    """Samples per second of the second of two passes (each returns its sample count): the first, untimed, warms
    the page cache and the loader's workers."""
    one_pass()
    started = time.perf_counter()
    count = one_pass()
    return count / (time.perf_counter() - started)


def timed_passes(loader: DataLoader, to_images: Callable | None = None) -> float:
    """Samples/s a loader delivers, with `to_images` (the batch work) applied to each batch when given."""

    def one_pass() -> int:
        return sum(
            (to_images(batch) if to_images else batch.get("image", batch.get("observations"))).shape[0]
            for batch in loader
        )

    return second_pass_rate(one_pass)


def fixed_order_loader(dataset: Dataset, order: np.ndarray, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), **loader_options(workers, 4))


def plain_np_load(paths: Sequence[Path], order: np.ndarray) -> float:
    def one_pass() -> int:
        for index in order:
            np.load(paths[index])
        return len(order)

    return second_pass_rate(one_pass)


def raw_copy(packed_rows: np.ndarray, order: np.ndarray, batch_size: int) -> float:
    """Batches gathered from the packed bytes already in memory: the delivery limit of any loader."""

    def one_pass() -> int:
        for first in range(0, len(order), batch_size):
            torch.from_numpy(packed_rows[np.sort(order[first : first + batch_size])])
        return len(order)

    return second_pass_rate(one_pass)


def bytes_read_per_sample(dataset: CadenceDataset, n: int) -> float:
    """Bytes this process read through system calls (/proc/self/io rchar) per sample delivered."""

    def rchar() -> int:
        with open("/proc/self/io") as handle:
            return int(next(line for line in handle if line.startswith("rchar")).split()[1])

    before = rchar()
    for first in range(0, n, 32):
        dataset.__getitems__(list(range(first, min(first + 32, n))))
    return (rchar() - before) / n


def subset_folder(data_dir: Path, ids: Sequence[str], root: Path, split_as: str) -> Path:
    """A Kaggle-layout folder naming only `ids` (train split, linked), seen as split `split_as`."""
    folder = link_layout(root / f"subset-{split_as}-{len(ids)}", {split_as: data_dir / "train"})
    table = pd.DataFrame({"id": list(ids), "target": 0})
    table.to_csv(folder / (TRAIN_LABELS if split_as == "train" else SAMPLE_SUBMISSION), index=False)
    return folder


def packed_subset(data_dir: Path, ids: Sequence[str], cfg: Config, root: Path, workers: int) -> PackedCadenceDataset:
    """`ids` of the train split packed under `root` (ON-only when the recipe reads only those), opened as
    training reads the cache (memory-mapped)."""
    observations = loaded_observations(cfg.view, cfg.background)
    pack_view = "on" if observations == view_observations("on") else "all"
    folder = pack_split(
        subset_folder(data_dir, ids, root, "train"),
        "train",
        root / "cache",
        pack_view,
        shard_size=512,
        workers=workers,
        progress=False,
        observation_shape=cfg.observation_shape,
    )
    return PackedCadenceDataset(open_packed(folder), ids, None, observations, "map", cfg.observation_shape)


def loader_results(
    settings: BenchSettings, cfg: Config, recipe: str, ids: list[str], cache_root: Path
) -> tuple[dict, PackedCadenceDataset]:
    observations = loaded_observations(cfg.view, cfg.background)
    workers = loader_workers(settings.workers)
    packed_workers = loader_workers(settings.workers, packed=True)
    order = np.random.default_rng(settings.seed).permutation(len(ids))
    paths = [cadence_path(settings.data_dir, "train", i) for i in ids]
    started = time.perf_counter()
    cached = packed_subset(settings.data_dir, ids, cfg, cache_root, workers + 1)
    pack_seconds = time.perf_counter() - started
    packed = cached.packed
    shape = cfg.observation_shape
    files = CadenceDataset(settings.data_dir, "train", ids, None, observations, shape)

    def batch_work(batch):
        return batch_to_images(batch["observations"], cfg)

    in_memory = np.concatenate([np.load(packed.shard_path(s)) for s in range(packed.n_shards)])
    in_memory = in_memory[:, [packed.observations.index(o) for o in observations]]
    b = settings.batch_size
    rates = {
        "public_pipeline": timed_passes(fixed_order_loader(PublicPipelineDataset(paths, cfg), order, b, workers)),
        "plain_np_load": plain_np_load(paths, order),
        "project_file_tree": timed_passes(fixed_order_loader(files, order, b, workers), batch_work),
        "project_packed": timed_passes(fixed_order_loader(cached, order, b, packed_workers), batch_work),
        "project_file_tree_delivery": timed_passes(fixed_order_loader(files, order, b, workers)),
        "project_packed_delivery": timed_passes(fixed_order_loader(cached, order, b, packed_workers)),
        "raw_copy": raw_copy(in_memory, order, b),
    }
    n_bytes = min(len(ids), 256)
    return cached, {
        "recipe": recipe,
        "view": cfg.view,
        "image_size": list(cfg.image_size) if cfg.image_size else None,
        "normalize": cfg.normalize,
        "n_cadences": len(ids),
        "batch_size": b,
        "loader_workers": workers,
        "packed_loader_workers": packed_workers,
        "samples_per_second": {k: round(v, 1) for k, v in rates.items()},
        "packed_vs_public": round(rates["project_packed"] / rates["public_pipeline"], 2),
        "packed_delivery_vs_raw_copy": round(rates["raw_copy"] / rates["project_packed_delivery"], 2),
        "bytes_read_per_sample": {
            "file_tree": round(bytes_read_per_sample(files, n_bytes)),
            "packed": round(
                bytes_read_per_sample(PackedCadenceDataset(packed, ids, None, observations, "read", shape), n_bytes)
            ),
            "raw_file_size": paths[0].stat().st_size,
        },
        "pack_cadences_per_second": round(len(ids) / pack_seconds, 1),
    }


# ------------------------------------------------------------------ models ---


def model_results(cfg: Config, recipe: str, batch_size: int, steps: int, device: torch.device) -> dict:
    """Training-step and inference samples/s on in-memory tensors of the recipe's input shape."""
    model, optimizer, autocast = bench_model(cfg, device)
    images = torch.randn(batch_size, *image_shape(cfg.view, cfg.image_size, cfg.observation_shape), device=device)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 2, (batch_size,), device=device).float()

    def train_step() -> None:
        with autocast:
            logits = model(images)["logits"]
        F.binary_cross_entropy_with_logits(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer_step() -> None:
        with torch.no_grad(), autocast:
            model(images)

    model.train()
    train_rate = steps * batch_size / timed_steps(train_step, steps, device)
    model.eval()
    infer_rate = steps * batch_size / timed_steps(infer_step, steps, device)
    return {
        "recipe": recipe,
        "model_name": cfg.model_name,
        "input_shape": list(images.shape[1:]),
        "batch_size": batch_size,
        "mixed_precision": cfg.mixed_precision if device.type == "cuda" else "no",
        "train_samples_per_second": round(train_rate, 2),
        "inference_samples_per_second": round(infer_rate, 2),
        "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
    }


def bench_model(cfg: Config, device: torch.device):
    """The recipe's model, optimizer and autocast context on `device` (mixed precision only on a GPU)."""
    torch.manual_seed(0)
    model = build_model(replace(cfg, pretrained=None)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    enabled = device.type == "cuda" and cfg.mixed_precision != "no"
    dtype = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float16
    return model, optimizer, torch.autocast(device.type, dtype=dtype, enabled=enabled)


def timed_steps(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds for `steps` calls after one warm-up call, waiting for the device at both ends."""
    step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fed_vs_in_memory(
    cfg: Config,
    recipe: str,
    dataset: PackedCadenceDataset,
    batch_size: int,
    steps: int,
    workers: int,
    device: torch.device,
) -> dict:
    """Training steps fed by the packed loader (copy to the device, batch work there) against the same steps on
    one batch already on the device."""
    model, optimizer, autocast = bench_model(cfg, device)
    model.train()
    order = np.random.default_rng(1).permutation(len(dataset))
    order = np.resize(order, (steps + FED_WARMUP_STEPS) * batch_size)  # batches for the warm-up and the timed steps
    options = {**loader_options(workers, 4), "pin_memory": device.type == "cuda"}
    loader = DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), drop_last=True, **options)

    def step(observations: torch.Tensor) -> None:
        images = batch_to_images(observations, cfg)
        targets = torch.zeros(images.shape[0], device=device)
        with autocast:
            logits = model(images)["logits"]
        F.binary_cross_entropy_with_logits(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    resident = dataset.__getitems__(order[:batch_size].tolist())["observations"].to(device)
    in_memory = timed_steps(lambda: step(resident), steps, device) / steps
    batches = iter(loader)
    for _ in range(FED_WARMUP_STEPS):  # workers started and the prefetch queue in its steady state
        step(next(batches)["observations"].to(device, non_blocking=True))
    synchronize(device)
    started = time.perf_counter()
    for batch in batches:
        step(batch["observations"].to(device, non_blocking=True))
    synchronize(device)
    fed = (time.perf_counter() - started) / steps
    return {
        "recipe": recipe,
        "device": str(device),
        "batch_size": batch_size,
        "steps": steps,
        "in_memory_step_seconds": round(in_memory, 4),
        "loader_fed_step_seconds": round(fed, 4),
        "fed_over_in_memory": round(fed / in_memory, 3),
    }


FED_WARMUP_STEPS = 2
KAGGLE_TEST_CADENCES = 39_995
KAGGLE_TTA_VIEWS = 4


def kaggle_inference_estimate(models: Sequence[dict], n_folds: dict[str, int]) -> list[dict]:
    """Full Kaggle test inference time from measured inference samples/s: 39,995 cadences x folds x 4 views."""
    estimates = []
    for m in models:
        passes = KAGGLE_TEST_CADENCES * n_folds[m["recipe"]] * KAGGLE_TTA_VIEWS
        minutes = round(passes / m["inference_samples_per_second"] / 60, 1)
        estimates.append(
            {"recipe": m["recipe"], "folds": n_folds[m["recipe"]], "forward_passes": passes, "minutes": minutes}
        )
    return estimates


# ------------------------------------------------------------------ memory ---


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of the process, RSS summed over it and its children) in bytes, from /proc."""

    def rss(p: int) -> int:
        try:
            with open(f"/proc/{p}/status") as handle:
                return int(next(line for line in handle if line.startswith("VmRSS")).split()[1]) * 1024
        except (OSError, StopIteration):
            return 0

    def children(p: int) -> list[int]:
        try:
            with open(f"/proc/{p}/task/{p}/children") as handle:
                return [int(c) for c in handle.read().split()]
        except OSError:
            return []

    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss(p)
        stack.extend(children(p))
    return rss(pid), total


def evaluate_peak_rss(data_dir: Path, ids: Sequence[str], work: Path, checkpoint: Path) -> dict:
    """Run evaluate.py on `ids` and sample the memory of its process tree every 20 ms."""
    folder = subset_folder(data_dir, ids, work, "test")
    out = work / f"submission-{len(ids)}.csv"
    command = [
        sys.executable,
        "evaluate.py",
        "--checkpoints",
        str(checkpoint),
        "--data-dir",
        str(folder),
        "--out",
        str(out),
        "--tta",
        "identity",
        "--overwrite",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak_main = peak_tree = 0
    while process.poll() is None:
        main_rss, total = tree_rss(process.pid)
        peak_main, peak_tree = max(peak_main, main_rss), max(peak_tree, total)
        time.sleep(0.02)
    output = process.stdout.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return {
        "n_cadences": len(ids),
        "peak_rss_main_mib": round(peak_main / 2**20, 1),
        "peak_rss_tree_mib": round(peak_tree / 2**20, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def rss_results(settings: BenchSettings, ids: list[str], work: Path) -> list[dict]:
    cfg = load_config(settings.rss_recipe, {"data_dir": str(settings.data_dir), "tracker": (), "pretrained": None})
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "random.safetensors"
    torch.manual_seed(0)
    save_checkpoint(checkpoint, build_model(cfg), cfg, 0, 0, {})
    return [evaluate_peak_rss(settings.data_dir, ids[:n], work, checkpoint) for n in settings.rss_sizes]


# ------------------------------------------------------------------ report ---


def machine() -> dict:
    return {
        "cpus_usable": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def report_markdown(result: dict) -> str:
    lines = [
        "# Throughput benchmark",
        "",
        f"`{result['command']}`",
        "",
        f"Machine: {result['machine']['cpus_usable']} usable CPUs ({result['machine']['processor']}), "
        f"GPU: {result['machine']['gpu'] or 'none'}, torch {result['machine']['torch']}. Page cache warm: every loader "
        "makes one untimed pass over the same cadences before its timed pass.",
        "",
        "## Loaders (samples/s delivered to the training step, batch work on this CPU included where named)",
        "",
        "| recipe | view, size | 1 public pipeline | 2 plain np.load | 3 project, file tree | 4 project, packed "
        "| 5 raw copy | 4 / 1 | packed delivery (no batch work) | 5 / delivery "
        "| bytes read per sample: files / packed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["loaders"]:
        s = r["samples_per_second"]
        size = "x".join(map(str, r["image_size"])) if r["image_size"] else "native"
        lines.append(
            f"| {r['recipe']} | {r['view']}, {size} | {s['public_pipeline']:.0f} | {s['plain_np_load']:.0f} | "
            f"{s['project_file_tree']:.0f} | {s['project_packed']:.0f} | {s['raw_copy']:.0f} | "
            f"**{r['packed_vs_public']:.1f}x** | {s['project_packed_delivery']:.0f} | "
            f"{r['packed_delivery_vs_raw_copy']:.2f}x | "
            f"{r['bytes_read_per_sample']['file_tree']:,} / {r['bytes_read_per_sample']['packed']:,} |"
        )
    first = result["loaders"][0]
    lines += [
        "",
        f"{first['n_cadences']} cadences, batch {first['batch_size']}; {first['loader_workers']} loader worker "
        f"process(es) for the file-tree loaders (1 and 3), {first['packed_loader_workers']} for the packed cache (4; "
        "read by threads of the training process, the pipeline's default); "
        f"packing ran at {first['pack_cadences_per_second']:.0f} cadences/s. Column 4 / 1 is the speed-up over the "
        "public pipeline; 5 / delivery is how far the packed loader's own delivery is from a copy of bytes already in "
        "memory.",
        "",
        f"## Models (samples/s on in-memory tensors, {result['machine']['gpu'] or 'this CPU'})",
        "",
        "| recipe | model | input | batch | precision | training step | inference (one view) | parameters (M) |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    for r in result["models"]:
        lines.append(
            f"| {r['recipe']} | {r['model_name']} | {'x'.join(map(str, r['input_shape']))} | {r['batch_size']} | "
            f"{r['mixed_precision']} | {r['train_samples_per_second']:.2f} | {r['inference_samples_per_second']:.2f} | "
            f"{r['parameters_millions']} |"
        )
    if result["fed"]:
        lines += [
            "",
            "## Training steps fed by the packed loader vs the same steps on a batch already on the device",
            "",
            "| recipe | device | batch | steps | in memory (s/step) | loader-fed (s/step) | fed / in memory |",
            "|---|---|---:|---:|---:|---:|---:|",
            *[
                f"| {r['recipe']} | {r['device']} | {r['batch_size']} | {r['steps']} | {r['in_memory_step_seconds']} | "
                f"{r['loader_fed_step_seconds']} | {r['fed_over_in_memory']:.3f}x |"
                for r in result["fed"]
            ],
        ]
    lines += ["", "## Full Kaggle test inference (39,995 cadences x folds x 4 TTA views), one GPU", ""]
    if "kaggle_estimate" in result:
        lines += [
            "| recipe | folds | forward passes | estimated minutes |",
            "|---|---:|---:|---:|",
            *[
                f"| {r['recipe']} | {r['folds']} | {r['forward_passes']:,} | {r['minutes']} |"
                for r in result["kaggle_estimate"]
            ],
            "",
            "From the inference samples/s above; loading is not the limit when the loader outpaces the model.",
        ]
    else:
        lines.append("Not estimated: this run had no GPU. Run the same command on a GPU machine to get it.")
    lines += [
        "",
        f"## evaluate.py memory ({result['rss_recipe']} model, one checkpoint, identity view, file tree)",
        "",
        "| cadences | peak RSS, main process (MiB) | peak RSS, with loader workers (MiB) | seconds |",
        "|---:|---:|---:|---:|",
        *[
            f"| {r['n_cadences']} | {r['peak_rss_main_mib']} | {r['peak_rss_tree_mib']} | {r['seconds']} |"
            for r in result["rss"]
        ],
    ]
    if len(result["rss"]) >= 2:
        small, large = result["rss"][0], result["rss"][-1]
        lines += [
            "",
            f"Peak RSS at {large['n_cadences']} vs {small['n_cadences']} cadences: "
            f"{large['peak_rss_main_mib'] / small['peak_rss_main_mib']:.3f}x (main process), "
            f"{large['peak_rss_tree_mib'] / small['peak_rss_tree_mib']:.3f}x (with workers).",
        ]
    return "\n".join(lines) + "\n"


def run_benchmark(
    settings: BenchSettings, command: str, overwrite: bool = False, progress: Callable[[str], None] = print
) -> dict:
    report = settings.out_dir / "report.md"
    if report.exists() and not overwrite:
        raise FileExistsError(f"{report}: already exists; pass --overwrite to replace it or choose another --out")
    labels = read_train_labels(settings.data_dir)
    needed = max(settings.n_loader, *settings.rss_sizes)
    if len(labels) < needed:
        raise DataError(
            f"{settings.data_dir / TRAIN_LABELS}: {len(labels)} cadences, the benchmark needs {needed} "
            "(lower --n-loader / --rss-sizes or make more with python -m src.synth)"
        )
    ids = labels["id"].tolist()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {
        "command": command,
        "machine": machine(),
        "loaders": [],
        "models": [],
        "fed": [],
        "rss": [],
        "rss_recipe": settings.rss_recipe.stem,
    }
    n_folds = {}
    with tempfile.TemporaryDirectory(prefix="throughput-") as scratch:
        scratch = Path(scratch)
        for recipe in settings.recipes:
            cfg = load_config(recipe, {"data_dir": str(settings.data_dir), "tracker": (), "pretrained": None})
            n_folds[recipe.stem] = cfg.n_folds
            progress(f"{recipe.stem}: loaders")
            cached, loaders = loader_results(
                settings, cfg, recipe.stem, ids[: settings.n_loader], scratch / recipe.stem
            )
            result["loaders"].append(loaders)
            progress(f"{recipe.stem}: model on {device}")
            on_gpu = device.type == "cuda"
            batch_size = cfg.batch_size if on_gpu else settings.model_batch_size
            steps = settings.feed_steps if on_gpu else settings.model_steps
            result["models"].append(model_results(cfg, recipe.stem, batch_size, steps, device))
            if on_gpu or settings.feed_on_cpu:
                progress(f"{recipe.stem}: loader-fed vs in-memory steps on {device}")
                packed_workers = loader_workers(settings.workers, packed=True)
                result["fed"].append(
                    fed_vs_in_memory(cfg, recipe.stem, cached, batch_size, settings.feed_steps, packed_workers, device)
                )
        if device.type == "cuda":
            result["kaggle_estimate"] = kaggle_inference_estimate(result["models"], n_folds)
        progress("evaluate.py memory")
        result["rss"] = rss_results(settings, ids, scratch / "rss")
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(settings.out_dir / "report.json", json.dumps(result, indent=2))
    write_text_atomically(report, report_markdown(result))
    return result
