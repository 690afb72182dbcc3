"""The technique ablation (bench/ablation.py): one base recipe and one training budget, each technique switched
alone, every run scored on the held-out detection benchmark next to the baseline.

Runs go through the same entry points a user types (main.py, evaluate.py, bench/detection.py); a run folder that
is already complete is kept, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from src.core.files import link_layout, write_text_atomically
from src.data.kaggle import SAMPLE_SUBMISSION, TRAIN_LABELS
from src.engine.train import OOF_CSV

REPO = Path(__file__).resolve().parents[2]
BASELINE = "baseline"
# the benchmark's problems reported in the table: (column title, subgroup, metric)
COLUMNS = (
    ("overall AUC", "all", "auc"),
    ("clean AUC", "clean", "auc"),
    ("vs all-six-interference negatives", "vs all-six-interference negatives", "auc"),
    ("positives with interference", "positives with interference", "auc"),
    ("clean linear SNR >= 10, recall at 1% FPR", "clean linear SNR >= 10", "recall_at_1pct_fpr"),
    (
        "clean SNR >= 20 in 1 ON observation, recall at 1% FPR",
        "clean SNR >= 20 in 1 ON observation",
        "recall_at_1pct_fpr",
    ),
)


@dataclass(frozen=True)
class Variant:
    name: str
    technique: str
    flags: tuple[str, ...] = ()  # main.py flags over the base recipe
    kind: str = "train"  # train | tta (the baseline scored with the identity view only) | pseudo (second stage)


VARIANTS = (
    Variant(BASELINE, "base recipe"),
    Variant("view-on", "ON-only vertical stack (3 x 273 rows -> 192x128)", ("--view", "on", "--image-size", "192,128")),
    Variant("view-all", "all six stacked (6 x 273 rows -> 192x128)", ("--view", "all", "--image-size", "192,128")),
    Variant(
        "view-dedoppler",
        "six channels plus their de-Doppler planes aligned across the cadence (12 channels)",
        ("--view", "dedoppler"),
    ),
    Variant("stem-stride-1x2", "first-conv stride (1, 2)", ("--first-conv-stride", "1,2")),
    Variant("gem", "GeM pooling", ("--pool", "gem")),
    Variant(
        "mixup-max",
        "mixup Beta(5,5), max label",
        ("--mix", "mixup", "--mix-prob", "1", "--mixup-alpha", "5", "--mix-label", "max"),
    ),
    Variant(
        "mixup-or",
        "mixup Beta(5,5), OR label",
        ("--mix", "mixup", "--mix-prob", "1", "--mixup-alpha", "5", "--mix-label", "or"),
    ),
    Variant("cutmix", "CutMix (p 0.5)", ("--mix", "cutmix", "--mix-prob", "0.5")),
    Variant("no-flips", "flips off", ("--hflip-p", "0", "--vflip-p", "0")),
    Variant("tta-identity", "flip TTA off (the baseline scored on the identity view only)", kind="tta"),
    Variant("ema", "EMA weights (decay 0.99)", ("--ema-decay", "0.99")),
    Variant("sam", "SAM around AdamW (rho 0.05): two forward-backward passes per update", ("--optimizer", "sam")),
    Variant("off-background", "background cleaning with the OFF observations", ("--background", "off_spectrum")),
    Variant("injection", "on-the-fly needle injection (30% of samples)", ("--inject-prob", "0.3")),
    Variant(
        "partial-injection",
        "needle injection (30%) with 30% of the needles in only part of the cadence (compare with 'injection')",
        ("--inject-prob", "0.3", "--inject-partial-prob", "0.3"),
    ),
    Variant(
        "interference-injection",
        "on-the-fly all-six interference injection (30% of samples)",
        ("--inject-rfi-prob", "0.3"),
    ),
    Variant("pseudo", "soft pseudo-labels on the benchmark's cadences (second stage from the baseline)", kind="pseudo"),
    Variant("folds-3", "3-fold ensemble instead of fold 0 alone", ("--folds", "0,1,2")),
)


@dataclass(frozen=True)
class AblationSettings:
    base: Path
    data_dir: Path
    bench_dir: Path
    out_dir: Path
    variants: tuple[str, ...] = tuple(v.name for v in VARIANTS)
    extra_flags: tuple[str, ...] = field(default_factory=tuple)  # given to every main.py run (e.g. a smaller budget)


def run(command: Sequence[str], log: Path) -> None:
    """Run an entry point, its output appended to `log`; a failure stops the ablation naming the log."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    with log.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}); see {log}")


def complete(run_dir: Path) -> bool:
    return (run_dir / OOF_CSV).is_file()


def pseudo_data_dir(settings: AblationSettings) -> Path:
    """The training data with the benchmark's cadences as its test split (links only, nothing copied)."""
    return link_layout(
        settings.out_dir / "pseudo-data",
        {
            "train": settings.data_dir / "train",
            TRAIN_LABELS: settings.data_dir / TRAIN_LABELS,
            "test": settings.bench_dir / "test",
            SAMPLE_SUBMISSION: settings.bench_dir / SAMPLE_SUBMISSION,
        },
    )


def train_variants(settings: AblationSettings, progress: Callable[[str], None] = print) -> None:
    """Train every selected variant that is not complete yet."""
    runs, log = settings.out_dir / "runs", settings.out_dir / "ablation.log"
    runs.mkdir(parents=True, exist_ok=True)
    for variant in (v for v in VARIANTS if v.name in settings.variants):
        if variant.kind == "tta" or complete(runs / variant.name):
            continue
        data_dir, flags = settings.data_dir, list(variant.flags)
        if variant.kind == "pseudo":
            data_dir = pseudo_data_dir(settings)
            stage1 = settings.out_dir / "pseudo-stage1.csv"
            if not stage1.is_file():
                progress("pseudo: stage-1 predictions of the baseline")
                run(
                    [
                        sys.executable,
                        "evaluate.py",
                        "--run-dir",
                        str(runs / BASELINE),
                        "--data-dir",
                        str(data_dir),
                        "--out",
                        str(stage1),
                    ],
                    log,
                )
            flags += ["--pseudo-labels", str(stage1)]
        progress(f"{variant.name}: training")
        run(
            [
                sys.executable,
                "main.py",
                "--config",
                str(settings.base),
                "--data-dir",
                str(data_dir),
                "--out-dir",
                str(runs),
                "--run-name",
                variant.name,
                "--overwrite",
                *settings.extra_flags,
                *flags,
            ],
            log,
        )


def score_variants(settings: AblationSettings, progress: Callable[[str], None] = print) -> tuple[dict, dict | None]:
    """The detection benchmark over every trained variant, and over the baseline with the identity view alone."""
    runs, log = settings.out_dir / "runs", settings.out_dir / "ablation.log"
    trained = [runs / v.name for v in VARIANTS if v.name in settings.variants and v.kind != "tta"]
    progress("scoring every run on the benchmark")
    run(
        [
            sys.executable,
            "bench/detection.py",
            "--runs",
            *map(str, trained),
            "--data-dir",
            str(settings.bench_dir),
            "--out",
            str(settings.out_dir / "benchmark"),
            "--turbo-seti",
            "off",
            "--overwrite",
        ],
        log,
    )
    report = json.loads((settings.out_dir / "benchmark" / "report.json").read_text())
    identity = None
    if "tta-identity" in settings.variants:
        run(
            [
                sys.executable,
                "bench/detection.py",
                "--runs",
                str(runs / BASELINE),
                "--data-dir",
                str(settings.bench_dir),
                "--out",
                str(settings.out_dir / "benchmark-identity"),
                "--tta",
                "identity",
                "--turbo-seti",
                "off",
                "--overwrite",
            ],
            log,
        )
        identity = json.loads((settings.out_dir / "benchmark-identity" / "report.json").read_text())
    return report, identity


def metric(method: dict, subgroup: str, name: str) -> float | None:
    """A subgroup's figure; None where the benchmark set has no such subgroup (an older set without n_on_present)."""
    return method["subgroups"].get(subgroup, {}).get(name)


def ablation_rows(settings: AblationSettings, report: dict, identity: dict | None) -> list[dict]:
    """One row per variant: its benchmark figures and their difference from the baseline's."""
    methods = report["methods"]
    rows = []
    for variant in (v for v in VARIANTS if v.name in settings.variants):
        if variant.kind == "tta":
            method = identity["methods"][f"model: {BASELINE}"] if identity else None
        else:
            method = methods.get(f"model: {variant.name}")
        if method is None:
            continue
        rows.append(
            {
                "variant": variant.name,
                "technique": variant.technique,
                **{title: metric(method, group, name) for title, group, name in COLUMNS},
            }
        )
    dedoppler = next((m for name, m in methods.items() if m["kind"] == "dedoppler"), None)
    if dedoppler is not None:
        rows.append(
            {
                "variant": "de-Doppler",
                "technique": "classical reference (no training)",
                **{title: metric(dedoppler, group, name) for title, group, name in COLUMNS},
            }
        )
    return rows


def markdown(settings: AblationSettings, rows: list[dict], budget: str, command: str) -> str:
    baseline = next((r for r in rows if r["variant"] == BASELINE), None)
    titles = [title for title, _, _ in COLUMNS]
    lines = [
        "# Technique ablation",
        "",
        f"`{command}`",
        "",
        f"Budget: {budget}",
        "",
        f"Held-out benchmark: `{settings.bench_dir}` (see its report in `benchmark/`). Each row switches one technique "
        "against the baseline; in brackets the difference from the baseline.",
        "",
        "| variant | technique | " + " | ".join(titles) + " |",
        "|---|---|" + "---:|" * len(titles),
    ]
    for row in rows:
        cells = []
        for title in titles:
            value, base = row.get(title), baseline.get(title) if baseline else None
            if value is None:
                cells.append("n/a")
            elif base is None or row is baseline or row["variant"] == "de-Doppler":
                cells.append(f"{value:.4f}")
            else:
                cells.append(f"{value:.4f} ({value - base:+.4f})")
        lines.append(f"| {row['variant']} | {row['technique']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(
    settings: AblationSettings, budget: str, command: str, progress: Callable[[str], None] = print
) -> list[dict]:
    """Train what is missing, score everything, write ablation.md and ablation.json; returns the table's rows."""
    train_variants(settings, progress)
    report, identity = score_variants(settings, progress)
    rows = ablation_rows(settings, report, identity)
    for row in rows:
        metrics = settings.out_dir / "runs" / row["variant"] / "metrics.json"
        row["train_seconds"] = json.loads(metrics.read_text())["train_seconds"] if metrics.is_file() else None
    minutes = sorted(r["train_seconds"] / 60 for r in rows if r["train_seconds"] and r["variant"] != "folds-3")
    if minutes:
        budget += (
            f" Training took {minutes[len(minutes) // 2]:.1f} min per run (median; {minutes[0]:.1f}-{minutes[-1]:.1f})."
        )
    write_text_atomically(settings.out_dir / "ablation.json", json.dumps(rows, indent=2))
    write_text_atomically(settings.out_dir / "ablation.md", markdown(settings, rows, budget, command))
    return rows
