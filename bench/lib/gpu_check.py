"""The GPU check (bench/gpu_check.py): what a GPU machine must run right, measured in one short run, one report.

Parts, each in its own process where Accelerate's process-wide state must differ, each written to the report as
soon as it ends (a run cut short keeps what it measured):

1. steps: a few training steps of every recipe in configs/ through the pipeline's own training step
   (`src.engine.train.train_one_epoch`: Accelerate's autocast, gradient scaling, clipping, EMA, injection),
   in fp16 (with Accelerate's gradient scaler) and in bf16, each checked: finite losses, weights moved, the
   scaler present exactly in fp16 on a GPU;
2. compile: one recipe's steps in bf16 as shipped, with `channels_last`, and with `channels_last` plus
   `torch.compile` (through Accelerate's dynamo plugin);
3. detection: the detection recipe for 2 epochs through `accelerate launch main.py`, as a user runs it;
4. throughput: bench/throughput.py's GPU items for every recipe (training and inference samples/s on in-memory
   tensors, training steps fed by the packed loader against the same steps on a batch already on the device)
   and the full Kaggle test inference estimated from them.

A dry run (`dry_run`) goes through every part on this machine's CPU with tiny data, one step and tiny batches,
and traces `torch.compile` with dynamo's eager backend (no code generation): it checks that the check runs, not
what a GPU measures. Parts that need a GPU say so in the report when there is none.
"""

from __future__ import annotations

import json
import multiprocessing
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, TorchDynamoPlugin

from bench.lib.throughput import (
    fed_vs_in_memory,
    kaggle_inference_estimate,
    machine,
    model_results,
    packed_subset,
)
from src.core.cadence import OBSERVATION_SHAPE
from src.core.config import Config, load_config
from src.core.files import write_text_atomically
from src.data.datasets import loader_workers, open_cadences
from src.data.kaggle import read_train_labels
from src.engine.resume import Progress
from src.engine.train import make_train_loader, prepare_training, train_one_epoch

REPO = Path(__file__).resolve().parents[2]
PRECISIONS = ("fp16", "bf16")


@dataclass(frozen=True)
class CheckSettings:
    out_dir: Path
    work_dir: Path  # generated data and the detection run
    recipes: tuple[Path, ...]
    kaggle_data: Path | None = None  # Kaggle-geometry cadences; generated under work_dir when None
    snippet_data: Path | None = None  # snippets for recipes of another observation_shape; generated when None
    n_kaggle: int = 4500  # generated like `make detection-report`'s training data
    n_snippets: int = 1000
    steps: int = 5  # timed training steps per recipe and precision (after as many warm-up steps)
    batch_cap: int | None = None  # a smaller batch than the recipes' (dry run)
    image_cap: int | None = None  # a smaller image than the recipes' (dry run)
    compile_recipe: Path = Path("configs/nfnet_l0_1st.yaml")
    compile_backend: str = "inductor"
    detection_recipe: Path = Path("configs/detection_cpu.yaml")
    detection_epochs: int = 2
    throughput_steps: int = 20
    part_timeout_s: float = 300.0
    dry_run: bool = False
    workers: int | None = None  # data generation and loaders; default: the usable CPUs

    @classmethod
    def dry(cls, out_dir: Path, work_dir: Path, recipes: tuple[Path, ...], **overrides) -> CheckSettings:
        """Tiny sizes for a run on the CPU that goes through every part (CI)."""
        tiny = {
            "n_kaggle": 20,
            "n_snippets": 16,
            "steps": 1,
            "batch_cap": 2,
            "image_cap": 64,
            "compile_recipe": Path("configs/demo_cpu.yaml"),
            "compile_backend": "eager",
            "throughput_steps": 1,
            "dry_run": True,
        }
        return cls(out_dir=out_dir, work_dir=work_dir, recipes=recipes, **{**tiny, **overrides})


@dataclass
class Report:
    """What the check found so far; rewritten (json and markdown) after every part."""

    command: str
    settings: dict
    environment: dict
    parts: dict = field(default_factory=dict)  # part name -> {"seconds", "rows" or "error", ...}

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(out_dir / "report.json", json.dumps(asdict(self), indent=2, default=str))
        write_text_atomically(out_dir / "report.md", report_markdown(self))


# ------------------------------------------------------------------ environment ---


def environment() -> dict:
    import accelerate
    import timm

    found = {**machine(), "accelerate": accelerate.__version__, "timm": timm.__version__}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        found.update(
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    return found


# ------------------------------------------------------------------ data ---


def generate(command: list[str], log: Path) -> float:
    """Run a data generator (`python -m ...`) from the repository root; seconds taken."""
    started = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - started


def prepared_data(settings: CheckSettings) -> tuple[CheckSettings, dict]:
    """The settings with both data folders filled in, generating the ones not given (seeded, as the reports'
    own data are), and what was done."""
    done = {}
    workers = ["--workers", str(settings.workers)] if settings.workers else []
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    if settings.kaggle_data is None:
        folder = settings.work_dir / "kaggle"
        if not (folder / "train_labels.csv").is_file():
            command = [sys.executable, "-m", "src.synth", "--preset", "benchmark", "--out", str(folder)]
            command += ["--n-train", str(settings.n_kaggle), "--n-test", "10", "--seed", "77", *workers]
            done["kaggle"] = {
                "command": shlex.join(command[1:]),
                "seconds": round(generate(command, folder.with_suffix(".log")), 1),
            }
        settings = replace(settings, kaggle_data=folder)
    if settings.snippet_data is None:
        folder = settings.work_dir / "snippets"
        if not (folder / "train_labels.csv").is_file():
            command = [sys.executable, "-m", "src.synth.snippets", "--out", str(folder)]
            command += ["--n-train", str(settings.n_snippets), "--n-test", "10", "--seed", "5", *workers]
            done["snippets"] = {
                "command": shlex.join(command[1:]),
                "seconds": round(generate(command, folder.with_suffix(".log")), 1),
            }
        settings = replace(settings, snippet_data=folder)
    return settings, done


def recipe_config(recipe: Path, settings: CheckSettings, **overrides) -> Config:
    """The recipe as the check runs it: its data folder by geometry, no trackers, no pretrained weights, the
    check's loader workers, and in a dry run a tiny batch and image (track_evidence reads native snippets: kept)."""
    cfg = load_config(REPO / recipe, {"tracker": (), "pretrained": None})
    data = settings.kaggle_data if tuple(cfg.observation_shape) == OBSERVATION_SHAPE else settings.snippet_data
    changes = {"data_dir": str(data), **overrides}
    if settings.workers is not None:
        changes["num_workers"] = settings.workers
    elif settings.dry_run:
        changes["num_workers"] = 0  # no worker processes to start on a small CPU
    if settings.batch_cap:
        changes["batch_size"] = min(cfg.batch_size, settings.batch_cap)
    if settings.image_cap and not cfg.track_evidence:
        height, width = cfg.image_size or cfg.observation_shape
        changes["image_size"] = (min(height, settings.image_cap), min(width, settings.image_cap))
    return replace(cfg, **changes)


# ------------------------------------------------------------------ training steps ---


def parameters_moved(before: list[torch.Tensor], model: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters(), strict=True))


def recipe_steps(cfg: Config, recipe: str, accelerator: Accelerator, steps: int) -> dict:
    """`steps` warm-up then `steps` timed training steps of the recipe through the pipeline's training step, on
    the first cadences of its data, with the checks that must hold."""
    labels = read_train_labels(cfg.data_dir).head(steps * cfg.batch_size)
    dataset, _ = open_cadences(
        cfg.data_dir,
        "train",
        labels["id"].tolist(),
        labels["target"].tolist(),
        cfg.view,
        None,
        cfg.background,
        access="map",
        observation_shape=cfg.observation_shape,
    )
    loader = make_train_loader(dataset, cfg, loader_workers(cfg.num_workers), torch.Generator().manual_seed(0))
    model, optimizer, loader, _, scheduler, ema = prepare_training(cfg, accelerator, loader, None)
    before = [p.detach().clone() for p in model.parameters()]
    progress, generator = Progress(fold=0), torch.Generator()
    cuda = accelerator.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds, losses = [], []
    for epoch in range(2):  # a warm-up epoch (allocator, cuDNN's algorithm search, compilation), then the timed one
        progress.epoch, progress.batches_done = epoch, 0
        started = time.perf_counter()
        losses.append(
            train_one_epoch(
                model, loader, optimizer, scheduler, accelerator, cfg, progress, generator, lambda: None, ema
            )
        )
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    scaler = accelerator.scaler
    row = {
        "recipe": recipe,
        "model_name": cfg.model_name,
        "precision": accelerator.mixed_precision,
        "channels_last": cfg.channels_last,
        "compile": cfg.compile,
        "batch_size": cfg.batch_size,
        "steps": len(loader),
        "warmup_seconds": round(seconds[0], 2),
        "step_seconds": round(seconds[1] / len(loader), 4),
        "losses": [round(loss, 4) for loss in losses],
        "skipped_batches": progress.skipped_batches,
        "weights_moved": parameters_moved(before, model),
        "grad_scaler": scaler is not None,
        "loss_scale": float(scaler.get_scale()) if scaler is not None else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    }
    row["problems"] = step_problems(row, cuda)
    accelerator.free_memory()
    return row


def step_problems(row: dict, cuda: bool) -> list[str]:
    """What is wrong with a recipe's steps: the check fails on any."""
    problems = []
    if not all(np.isfinite(row["losses"])) or row["skipped_batches"]:
        problems.append(f"non-finite training loss ({row['losses']}, {row['skipped_batches']} batch(es) left out)")
    if not row["weights_moved"]:
        problems.append("the optimizer did not change the weights")
    if cuda and row["grad_scaler"] != (row["precision"] == "fp16"):
        problems.append(f"gradient scaler {'present' if row['grad_scaler'] else 'missing'} in {row['precision']}")
    return problems


def steps_in_process(precision: str, runs: list[tuple[str, dict]], steps: int, dynamo_backend: str, out: str) -> None:
    """One process's part: Accelerate's precision and dynamo backend are process-wide, so each combination runs in
    its own process. `runs` are (recipe name, config as a dict); rows (or the error) go to `out` as JSON."""
    accelerator = Accelerator(
        mixed_precision=precision,
        dataloader_config=DataLoaderConfiguration(non_blocking=True),
        dynamo_plugin=TorchDynamoPlugin(backend=dynamo_backend),
    )
    rows = []
    for recipe, fields in runs:
        try:
            rows.append(recipe_steps(Config(**fields), recipe, accelerator, steps))
        except Exception as err:  # one recipe failing must not hide the others' results
            rows.append({"recipe": recipe, "precision": precision, "problems": [failure(err)]})
        Path(out).write_text(json.dumps(rows))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def failure(err: BaseException) -> str:
    last = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}{where}"


def isolated(target: Callable, args: tuple, out: Path, timeout_s: float) -> list[dict]:
    """Run `target(*args, out)` in a fresh (spawned) process and return the rows it wrote, adding one row for a
    process that died or ran past `timeout_s` (killed)."""
    out.unlink(missing_ok=True)
    process = multiprocessing.get_context("spawn").Process(target=target, args=(*args, str(out)))
    process.start()
    process.join(timeout_s)
    rows = json.loads(out.read_text()) if out.is_file() else []
    if process.is_alive():
        process.kill()
        process.join()
        rows.append({"recipe": "(rest)", "problems": [f"killed after {timeout_s:.0f} s"]})
    elif process.exitcode != 0:
        rows.append({"recipe": "(rest)", "problems": [f"the process ended with exit code {process.exitcode}"]})
    return rows


def steps_part(settings: CheckSettings) -> dict:
    runs = [(r.stem, asdict(recipe_config(r, settings))) for r in settings.recipes]
    rows = []
    for precision in PRECISIONS:
        out = settings.work_dir / f"steps-{precision}.json"
        rows += isolated(steps_in_process, (precision, runs, settings.steps, "no"), out, settings.part_timeout_s)
    return {"rows": rows}


def compile_part(settings: CheckSettings) -> dict:
    """The compile recipe in bf16 as shipped, with channels_last, and with channels_last + torch.compile."""
    recipe = settings.compile_recipe
    shipped = asdict(recipe_config(recipe, settings))
    nhwc = asdict(recipe_config(recipe, settings, channels_last=True))
    compiled = asdict(recipe_config(recipe, settings, channels_last=True, compile=True))
    eager_runs = [(recipe.stem, shipped), (recipe.stem, nhwc)]
    out = settings.work_dir / "compile-eager.json"
    rows = isolated(steps_in_process, ("bf16", eager_runs, settings.steps, "no"), out, settings.part_timeout_s)
    out = settings.work_dir / "compile.json"
    runs = [(recipe.stem, compiled)]
    rows += isolated(
        steps_in_process, ("bf16", runs, settings.steps, settings.compile_backend), out, settings.part_timeout_s
    )
    return {"rows": rows, "backend": settings.compile_backend}


# ------------------------------------------------------------------ the detection recipe ---


def detection_part(settings: CheckSettings) -> dict:
    """The detection recipe through `accelerate launch main.py`, as a user types it, for a few epochs."""
    cfg = recipe_config(settings.detection_recipe, settings)
    run_name = f"detection-{settings.detection_epochs}-epochs"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1"]
    command += ["--mixed_precision", cfg.mixed_precision, "--dynamo_backend", "no"]
    command += ["main.py", "--config", str(settings.detection_recipe), "--data-dir", cfg.data_dir]
    command += ["--out-dir", str(settings.work_dir / "runs"), "--run-name", run_name, "--overwrite"]
    command += ["--epochs", str(settings.detection_epochs), "--tracker", "none"]
    if cfg.num_workers is not None:
        command += ["--num-workers", str(cfg.num_workers)]
    if settings.batch_cap:
        command += ["--batch-size", str(cfg.batch_size), "--eval-batch-size", str(cfg.batch_size)]
    if settings.image_cap and cfg.image_size:
        command += ["--image-size", ",".join(map(str, cfg.image_size))]
    log = settings.work_dir / "detection.log"
    started = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(
            command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, timeout=settings.part_timeout_s
        )
    seconds = time.perf_counter() - started
    shown = "accelerate launch " + shlex.join(command[command.index("--num_processes") :])
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        return {"command": shown, "seconds": round(seconds, 1), "problems": [f"exit {done.returncode}: {tail[0]}"]}
    metrics = pd.read_csv(settings.work_dir / "runs" / run_name / "metrics.csv")
    epochs = metrics.dropna(subset=["valid_auc"])
    return {
        "command": shown,
        "seconds": round(seconds, 1),
        "epochs": [
            {
                "epoch": int(r.epoch),
                "seconds": round(float(r.epoch_seconds), 1),
                "train_loss": round(float(r.train_loss), 4),
                "valid_auc": round(float(r.valid_auc), 4),
            }
            for r in epochs.itertuples()
        ],
        "problems": [] if len(epochs) == settings.detection_epochs else [f"{len(epochs)} epochs logged"],
    }


# ------------------------------------------------------------------ throughput ---


def throughput_part(settings: CheckSettings) -> dict:
    """bench/throughput.py's GPU items for every recipe, on this machine's device."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models, fed, n_folds = [], [], {}
    workers = loader_workers(settings.workers, packed=True)
    for recipe in settings.recipes:
        cfg = recipe_config(recipe, settings)
        n_folds[recipe.stem] = cfg.n_folds
        models.append(model_results(cfg, recipe.stem, cfg.batch_size, settings.throughput_steps, device))
        ids = read_train_labels(cfg.data_dir)["id"].tolist()[: (settings.throughput_steps + 2) * cfg.batch_size]
        dataset = packed_subset(Path(cfg.data_dir), ids, cfg, settings.work_dir / "packed" / recipe.stem, workers + 1)
        fed.append(
            fed_vs_in_memory(cfg, recipe.stem, dataset, cfg.batch_size, settings.throughput_steps, workers, device)
        )
    found = {"device": str(device), "models": models, "fed": fed}
    if device.type == "cuda":
        found["kaggle_estimate"] = kaggle_inference_estimate(models, n_folds)
    return found


# ------------------------------------------------------------------ the run ---

PARTS = {"steps": steps_part, "compile": compile_part, "detection": detection_part, "throughput": throughput_part}


def part_problems(found: dict) -> list[str]:
    """A part's own problems and those of its rows (one per recipe and precision)."""
    rows = found.get("rows", [])
    return [
        *found.get("problems", []),
        *(
            f"{' '.join(filter(None, (r['recipe'], r.get('precision'))))}: {p}"
            for r in rows
            for p in r.get("problems", [])
        ),
    ]


def run_check(settings: CheckSettings, command: str, progress: Callable[[str], None] = print) -> Report:
    """Every part in turn, the report rewritten after each; a part that fails is recorded and the next runs."""
    report = Report(
        command=command, settings={k: str(v) for k, v in asdict(settings).items()}, environment=environment()
    )
    if not torch.cuda.is_available() and not settings.dry_run:
        report.parts["gpu"] = {"problems": ["no GPU is visible to torch: run with --dry-run to check on the CPU"]}
        report.write(settings.out_dir)
        return report
    started = time.perf_counter()
    settings, generated = prepared_data(settings)
    report.parts["data"] = {"seconds": round(time.perf_counter() - started, 1), "generated": generated}
    report.write(settings.out_dir)
    for name, part in PARTS.items():
        progress(f"gpu check: {name}")
        started = time.perf_counter()
        try:
            found = part(settings)
        except Exception as err:  # recorded; the next part still runs
            found = {"problems": [failure(err)]}
        found["seconds"] = round(time.perf_counter() - started, 1)
        report.parts[name] = found
        report.write(settings.out_dir)
    return report


def problems(report: Report) -> list[str]:
    return [f"{name}: {p}" for name, found in report.parts.items() for p in part_problems(found)]


# ------------------------------------------------------------------ report ---


def gpu_line(env: dict) -> str:
    if not env.get("cuda"):
        return "none (dry run on the CPU)"
    return (
        f"{env['gpu']}, {env['gpu_memory_gib']} GiB, compute capability {env['compute_capability']}, "
        f"CUDA {env['cuda']}, cuDNN {env['cudnn']}"
    )


def report_markdown(report: Report) -> str:
    env = report.environment
    lines = [
        "# GPU check",
        "",
        f"`{report.command}`",
        "",
        f"GPU: {gpu_line(env)}; {env['cpus_usable']} usable CPUs; torch {env['torch']}, "
        f"accelerate {env['accelerate']}, timm {env['timm']}.",
        "",
    ]
    found = problems(report)
    lines += [f"**{len(found)} problem(s):**", "", *(f"- {p}" for p in found)] if found else ["**Every check passed.**"]
    lines.append("")
    data = report.parts.get("data")
    if data:
        lines += [
            f"Data ({data['seconds']} s): "
            + (
                "; ".join(f"`python {d['command']}` ({d['seconds']} s)" for d in data["generated"].values()) or "given."
            ),
            "",
        ]
    steps = report.parts.get("steps")
    if steps:
        lines += [
            f"## Training steps of every recipe, fp16 and bf16 ({steps['seconds']} s)",
            "",
            "Through the pipeline's own training step (`train_one_epoch`) under Accelerate; the data loader included. "
            "A warm-up epoch, then the timed one.",
            "",
            *step_table(steps.get("rows", [])),
            "",
        ]
    compiled = report.parts.get("compile")
    if compiled:
        lines += [
            f"## channels_last and torch.compile, bf16 ({compiled['seconds']} s; "
            f"dynamo backend {compiled.get('backend', '?')})",
            "",
            "The warm-up column holds the compilation.",
            "",
            *step_table(compiled.get("rows", [])),
            "",
        ]
    detection = report.parts.get("detection")
    if detection:
        lines += [f"## The detection recipe, {len(detection.get('epochs', []))} epochs ({detection['seconds']} s)", ""]
        if "command" in detection:
            lines += [f"`{detection['command']}`", ""]
        if detection.get("epochs"):
            lines += ["| epoch | seconds | train loss | valid AUC |", "|---:|---:|---:|---:|"]
            lines += [
                f"| {e['epoch']} | {e['seconds']} | {e['train_loss']} | {e['valid_auc']} |" for e in detection["epochs"]
            ]
            lines.append("")
    throughput = report.parts.get("throughput")
    if throughput and "models" in throughput:
        lines += [
            f"## Throughput on {throughput['device']} ({throughput['seconds']} s)",
            "",
            "In-memory tensors of each recipe's input, at its batch size and precision:",
            "",
            "| recipe | model | input | batch | precision | training samples/s | inference samples/s (one view) |",
            "|---|---|---|---:|---|---:|---:|",
            *(
                f"| {m['recipe']} | {m['model_name']} | {'x'.join(map(str, m['input_shape']))} | "
                f"{m['batch_size']} | {m['mixed_precision']} | {m['train_samples_per_second']:.1f} | "
                f"{m['inference_samples_per_second']:.1f} |"
                for m in throughput["models"]
            ),
            "",
            "Training steps fed by the packed loader against the same steps on a batch already on the device:",
            "",
            "| recipe | batch | steps | in memory (s/step) | loader-fed (s/step) | fed / in memory |",
            "|---|---:|---:|---:|---:|---:|",
            *(
                f"| {r['recipe']} | {r['batch_size']} | {r['steps']} | {r['in_memory_step_seconds']} | "
                f"{r['loader_fed_step_seconds']} | {r['fed_over_in_memory']:.2f}x |"
                for r in throughput["fed"]
            ),
            "",
        ]
        if "kaggle_estimate" in throughput:
            lines += [
                "Full Kaggle test inference (39,995 cadences x folds x 4 TTA views) from the inference rate above:",
                "",
                "| recipe | folds | forward passes | estimated minutes |",
                "|---|---:|---:|---:|",
                *(
                    f"| {r['recipe']} | {r['folds']} | {r['forward_passes']:,} | {r['minutes']} |"
                    for r in throughput["kaggle_estimate"]
                ),
                "",
            ]
    return "\n".join(lines)


def step_table(rows: list[dict]) -> list[str]:
    lines = [
        "| recipe | precision | channels_last | compile | batch | steps | warm-up (s) | s/step | losses "
        "| scaler (scale) | peak GiB | check |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in rows:
        if "step_seconds" not in r:
            lines.append(f"| {r['recipe']} | {r.get('precision', '')} |" + " |" * 9 + f" {'; '.join(r['problems'])} |")
            continue
        scaler = f"yes ({r['loss_scale']:g})" if r["grad_scaler"] else "no"
        peak = r["peak_memory_gib"] if r["peak_memory_gib"] is not None else ""
        flags = " | ".join("yes" if r[k] else "no" for k in ("channels_last", "compile"))
        lines.append(
            f"| {r['recipe']} | {r['precision']} | {flags} | {r['batch_size']} | {r['steps']} | "
            f"{r['warmup_seconds']} | {r['step_seconds']} | {' / '.join(map(str, r['losses']))} | {scaler} | "
            f"{peak} | {'; '.join(r['problems']) or 'ok'} |"
        )
    return lines
