"""Detection benchmark: trained runs against the classical references on one labelled held-out set.

Users choose a pipeline by how many needles it finds at a false-positive rate they can afford to review,
and by whether it beats what Breakthrough Listen already runs. This module scores the same cadences with
every method (each run's fold ensemble, brute-force de-Doppler, and turbo_seti when it is installed), joins
the scores with the generator's metadata and writes report.md, report.json, scores.csv, roc.png and
recall_vs_snr.png. The command line is bench/detection.py; run it as one process (python, not a
multi-process accelerate launch).

Every metric is a binary problem "these positives against these negatives" (see `subgroups`): ROC AUC, and
recall at a false-positive rate whose threshold comes from that problem's negatives.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score, roc_curve

from src.core.errors import DataError
from src.core.files import write_atomically
from src.data.kaggle import TEST_LABELS, cadence_path, load_cadence, read_id_table
from src.engine.checkpoint import find_checkpoints, read_checkpoint_info
from src.engine.inference import ensemble_logits
from src.search import dedoppler, turboseti
from src.synth.generator import METADATA, SHAPES

REPORT_FILES = ("report.md", "report.json", "scores.csv", "roc.png", "recall_vs_snr.png")
FPRS = (0.01, 0.001)
RECALL_LEVEL = 0.9  # the "SNR at which recall reaches 90%" figure, at 1% FPR
MIN_SUPPORT = 10  # positives needed at or above that SNR
SNR_BINS = ((0.0, 6.0, "SNR < 6"), (6.0, 10.0, "SNR 6-10"), (10.0, 20.0, "SNR 10-20"), (20.0, math.inf, "SNR >= 20"))
CURVE_BINS = 8  # log-spaced SNR bins of the recall-vs-SNR curves
NEEDED_COLUMNS = ("id", "split", "target", "shape", "snr", "interference")
ON_COUNTS = (1, 2, 3)  # ON observations a needle can be in (metadata n_on_present)
TURBO_SETI_MODES = ("auto", "on", "off")


@dataclasses.dataclass
class MethodScores:
    """One method's scores on the benchmark cadences (NaN where it did not score a cadence)."""

    name: str
    kind: str  # model, dedoppler or turbo_seti
    scores: np.ndarray
    seconds: float
    details: dict = dataclasses.field(default_factory=dict)
    columns: pd.DataFrame | None = None  # extra per-cadence values for scores.csv


# ------------------------------------------------------------------ data ---


def load_benchmark(data_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """The labelled cadences of `split` with their metadata, checked against test_labels.csv when present."""
    data_dir = Path(data_dir)
    path = data_dir / METADATA
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    if not path.is_file():
        raise DataError(
            f"{path}: file not found; the benchmark needs the generator's metadata "
            "(python -m src.synth --preset benchmark ...)"
        )
    meta = pd.read_csv(path, dtype={"id": str, "shape": str, "interference": str})
    missing = [c for c in NEEDED_COLUMNS if c not in meta.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    meta = meta[meta["split"] == split].reset_index(drop=True)
    if meta.empty:
        raise DataError(f"{path}: no cadences of split {split!r}")
    if not meta["target"].isin([0, 1]).all() or meta["target"].nunique() < 2:
        raise DataError(f"{path}: split {split!r} needs targets 0 and 1 (both classes) to measure detection")
    meta["shape"] = meta["shape"].fillna("")
    labels = data_dir / TEST_LABELS
    if split == "test" and labels.is_file():
        truth = read_id_table(labels).set_index("id")["target"]
        if not truth.reindex(meta["id"]).eq(meta["target"].to_numpy()).all():
            raise DataError(f"{labels}: targets disagree with {path}")
    return meta


# ---------------------------------------------------------------- metrics ---


def roc_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """ROC AUC, or None when one class is missing."""
    if len(np.unique(y)) < 2:
        return None
    return float(roc_auc_score(y, s))


def recall_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float) -> dict | None:
    """Recall at the threshold that flags at most `fpr` of the negatives (strictly above it).

    The threshold is the (floor(fpr * n_neg) + 1)-th highest negative score; with fewer than 1 / fpr
    negatives it is the highest negative, i.e. recall at zero false positives.
    """
    neg, pos = np.sort(s[y == 0])[::-1], s[y == 1]
    if len(neg) == 0 or len(pos) == 0:
        return None
    allowed = math.floor(fpr * len(neg) + 1e-9)
    threshold = neg[allowed] if allowed < len(neg) else -np.inf
    return {
        "recall": float(np.mean(pos > threshold)),
        "threshold": float(threshold),
        "fpr": float(np.mean(neg > threshold)),
        "n_neg": len(neg),
    }


def snr_at_recall(
    snr: np.ndarray, detected: np.ndarray, level: float = RECALL_LEVEL, min_support: int = MIN_SUPPORT
) -> float | None:
    """Lowest SNR from which a monotone (isotonic, in log SNR) fit of detected-vs-SNR reaches `level`.

    Isotonic regression needs no bin choice and cannot dip back below the level once it is reached. None
    when the fit never reaches it with at least `min_support` positives at or above that SNR (a few lucky
    detections at the top of the range are no evidence).
    """
    if len(snr) == 0:
        return None
    order = np.argsort(snr, kind="stable")
    fit = IsotonicRegression(increasing=True).fit_transform(np.log(snr[order]), detected[order].astype(float))
    reached = np.flatnonzero(fit >= level)
    if len(reached) == 0 or len(snr) - reached[0] < min_support:
        return None
    return float(snr[order][reached[0]])


def recall_vs_snr(snr: np.ndarray, detected: np.ndarray, edges: np.ndarray) -> dict:
    """Binned recall of the positives: per log-spaced SNR bin, the fraction detected and the count."""
    index = np.clip(np.searchsorted(edges, snr, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(index, minlength=len(edges) - 1)
    hits = np.bincount(index, weights=detected.astype(float), minlength=len(edges) - 1)
    recall = [float(h / c) if c else None for h, c in zip(hits, counts, strict=True)]
    centres = np.sqrt(edges[:-1] * edges[1:])
    return {"snr_edges": edges.tolist(), "snr_centres": centres.tolist(), "recall": recall, "n": counts.tolist()}


def _column(meta: pd.DataFrame, name: str) -> np.ndarray | None:
    """A text column of the metadata with NaN as "", or None when the set has no such column (older sets)."""
    return meta[name].fillna("").astype(str).to_numpy() if name in meta.columns else None


def subgroups(meta: pd.DataFrame) -> dict[str, tuple[np.ndarray, str]]:
    """Named binary problems over the benchmark rows: mask of the rows taking part, and its definition.

    The groups that need a metadata column the set lacks are left out: `n_on_present` (the ON observations
    holding the needle: the generator's --partial-share, the second generator), `partial` (its kind) and
    `rfi_shape` (the shape of the all-six interference)."""
    pos = meta["target"].to_numpy() == 1
    neg = ~pos
    kind = meta["interference"].to_numpy()
    snr = meta["snr"].to_numpy(dtype=float)
    shape = meta["shape"].to_numpy()
    clean = kind == "none"
    n_on = meta["n_on_present"].to_numpy(dtype=float) if "n_on_present" in meta.columns else None
    groups = {"all": (np.ones(len(meta), bool), "every cadence")}
    for lo, hi, name in SNR_BINS:
        groups[name] = (
            neg | (pos & (snr >= lo) & (snr < hi)),
            f"positives with {name} (a bin holds its lower edge) against all negatives",
        )
    other_shapes = sorted(set(shape[pos]) - set(SHAPES) - {""})  # another generator's own shapes
    for s in (*SHAPES, *other_shapes):
        groups[f"shape {s}"] = (neg | (pos & (shape == s)), f"positives with a {s} path against all negatives")
    if n_on is not None:
        for k in ON_COUNTS:
            groups[on_group(k)] = (
                neg | (pos & (n_on == k)),
                f"positives whose needle is in {k} of the 3 ON observations (n_on_present) against all negatives",
            )
    partial = _column(meta, "partial")
    if partial is not None:
        for p in sorted(set(partial[pos]) - {"", "none"}):
            groups[f"partial {p}"] = (
                neg | (pos & (partial == p)),
                f"positives whose needle is partial of kind {p} against all negatives",
            )
    groups["clean"] = (clean, "cadences without interference (interference = none), positives and negatives")
    groups["vs all-six-interference negatives"] = (
        pos | (neg & (kind == "rfi")),
        "all positives against the negatives with interference in all six observations (rfi)",
    )
    rfi_shape = _column(meta, "rfi_shape")
    if rfi_shape is not None:
        found = set(rfi_shape[neg & (kind == "rfi")]) - {""}
        for s in [*(s for s in SHAPES if s in found), *sorted(found - set(SHAPES))]:
            groups[f"vs all-six-interference negatives: {s}"] = (
                pos | (neg & (kind == "rfi") & (rfi_shape == s)),
                f"all positives against the negatives with all-six interference of shape {s} (rfi_shape)",
            )
    groups["vs OFF-only negatives"] = (
        pos | (neg & (kind == "off")),
        "all positives against the negatives with a signal only in OFF observations",
    )
    groups["positives with interference"] = (
        neg | (pos & (kind == "rfi")),
        "positives whose cadence also holds all-six interference (rfi) against all negatives",
    )
    groups["clean linear SNR >= 10"] = (
        clean & (neg | ((shape == "linear") & (snr >= 10))),
        "clean positives with a linear path and SNR >= 10 against clean negatives",
    )
    groups["clean SNR >= 20"] = (
        clean & (neg | (snr >= 20)),
        "clean positives with SNR >= 20, whatever their shape and ON observations, against clean negatives",
    )
    if n_on is not None:
        for k in ON_COUNTS:
            groups[f"clean SNR >= 20 {on_group(k)}"] = (
                clean & (neg | ((snr >= 20) & (n_on == k))),
                f"clean positives with SNR >= 20 whose needle is in {k} of the 3 ON observations against clean "
                "negatives",
            )
    return groups


def on_group(k: int) -> str:
    """The subgroup name of the needles in k ON observations."""
    return f"in {k} ON observation" + ("" if k == 1 else "s")


def problem_metrics(y: np.ndarray, s: np.ndarray) -> dict:
    """Counts, ROC AUC and recall at each FPR of one binary problem."""
    out = {"n_pos": int((y == 1).sum()), "n_neg": int((y == 0).sum()), "auc": roc_auc(y, s)}
    for fpr in FPRS:
        r = recall_at_fpr(y, s, fpr)
        out[fpr_key(fpr)] = None if r is None else r["recall"]
    return out


def fpr_key(fpr: float) -> str:
    return f"recall_at_{fpr * 100:g}pct_fpr"


def method_metrics(meta: pd.DataFrame, scores: np.ndarray, edges: np.ndarray) -> dict:
    """Every metric of one method over the cadences it scored."""
    scored = ~np.isnan(scores)
    meta, s = meta[scored].reset_index(drop=True), scores[scored]
    y = meta["target"].to_numpy()
    out = {"n_scored": int(scored.sum()), "subgroups": {}}
    for name, (mask, _) in subgroups(meta).items():
        out["subgroups"][name] = problem_metrics(y[mask], s[mask])
    out.update({k: out["subgroups"]["all"][k] for k in ("auc", *map(fpr_key, FPRS))})
    snr = meta["snr"].to_numpy(dtype=float)
    clean_linear = (meta["interference"].to_numpy() == "none") & ((y == 0) | (meta["shape"].to_numpy() == "linear"))
    out["snr_at_90pct_recall_1pct_fpr"] = {
        "all": snr90(y, s, snr),
        "clean linear": snr90(y[clean_linear], s[clean_linear], snr[clean_linear]),
    }
    r = recall_at_fpr(y, s, 0.01)
    pos = y == 1
    detected = s[pos] > r["threshold"] if r else np.zeros(int(pos.sum()), bool)
    out["recall_vs_snr"] = recall_vs_snr(snr[pos], detected, edges)
    return out


def snr90(y: np.ndarray, s: np.ndarray, snr: np.ndarray) -> float | None:
    """SNR where recall at 1% FPR (threshold from these negatives) reaches 90%."""
    r = recall_at_fpr(y, s, 0.01)
    if r is None:
        return None
    return snr_at_recall(snr[y == 1], s[y == 1] > r["threshold"])


def curve_edges(meta: pd.DataFrame, n_bins: int = CURVE_BINS) -> np.ndarray:
    """Log-spaced SNR bin edges spanning the positives (shared by every method's curve)."""
    snr = meta.loc[meta["target"] == 1, "snr"].to_numpy(dtype=float)
    return np.geomspace(snr.min(), snr.max() * (1 + 1e-9), n_bins + 1)


# ----------------------------------------------------------------- scorers ---


def run_logits(
    run_dir: Path,
    data_dir: Path,
    split: str,
    ids: Sequence[str],
    tta: Sequence[str] | None,
    batch_size: int | None,
    num_workers: int,
    accelerator,
) -> MethodScores:
    """A run's fold ensemble: each checkpoint's TTA-averaged logits, averaged over the checkpoints."""
    started = time.time()
    infos = [read_checkpoint_info(p) for p in find_checkpoints(run_dir)]
    logits = ensemble_logits(infos, data_dir, split, ids, tta, batch_size, num_workers, accelerator)
    cfg = infos[0].config
    details = {
        "run": str(run_dir),
        "checkpoints": [p.path.name for p in infos],
        "model_name": cfg.model_name,
        "view": cfg.view,
        "image_size": cfg.image_size,
        "tta": ", ".join(tta) if tta else "each checkpoint's config",
        "device": str(accelerator.device),
    }
    return MethodScores(f"model: {run_dir.name}", "model", logits, time.time() - started, details)


def dedoppler_scores(
    data_dir: Path,
    split: str,
    ids: Sequence[str],
    batch_size: int = 16,
    max_drift: int = dedoppler.MAX_DRIFT,
    width: int = dedoppler.WIDTH,
    device: str = "cpu",
) -> MethodScores:
    """Brute-force de-Doppler over every cadence: the ON-minus-OFF score plus each observation's best line."""
    started, compute = time.time(), 0.0
    parts = []
    for first in range(0, len(ids), batch_size):
        batch = np.stack([load_cadence(cadence_path(data_dir, split, i)) for i in ids[first : first + batch_size]])
        tick = time.time()
        found = dedoppler.search(torch.from_numpy(batch.astype(np.float32)).to(device), max_drift, width)
        parts.append([found.snr.cpu(), found.drift.cpu(), found.channel.cpu()])  # .cpu() waits for a GPU
        compute += time.time() - tick
    snr, drift, channel = (torch.cat(values).numpy() for values in zip(*parts, strict=True))
    columns = pd.DataFrame(
        {
            **{f"dedoppler_snr{o}": snr[:, o] for o in range(snr.shape[1])},
            **{f"dedoppler_drift{o}": drift[:, o] for o in range(snr.shape[1])},
            **{f"dedoppler_channel{o}": channel[:, o] for o in range(snr.shape[1])},
        }
    )
    details = {
        "max_drift_channels": max_drift,
        "max_drift_hz_per_s": round(dedoppler.drift_hz_per_s(max_drift), 5),
        "drift_step_hz_per_s": round(dedoppler.drift_hz_per_s(1), 6),
        "width_channels": width,
        "score": "min over ON observations of the best line SNR - max over OFF observations",
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "compute_seconds": round(compute, 2),
    }
    score = dedoppler.cadence_score(torch.from_numpy(snr)).numpy().astype(float)
    return MethodScores("de-Doppler", "dedoppler", score, time.time() - started, details, columns)


def turbo_seti_scores(
    data_dir: Path,
    split: str,
    ids: Sequence[str],
    limit: int | None,
    max_drift: float,
    min_snr: float,
) -> MethodScores:
    """turbo_seti over all cadences, or a seeded random `limit` of them (the rest stay NaN)."""
    chosen = np.arange(len(ids))
    if limit is not None and limit < len(ids):
        chosen = np.sort(np.random.default_rng(0).choice(len(ids), size=limit, replace=False))
    scores = np.full(len(ids), np.nan)
    values, seconds = turboseti.score_cadences(data_dir, split, [ids[i] for i in chosen], max_drift, min_snr)
    scores[chosen] = values
    details = {
        "time_rows": turboseti.TIME_ROWS,
        "max_drift_hz_per_s": max_drift,
        "min_snr": min_snr,
        "filter_level": turboseti.FILTER_LEVEL,
        "score": "best event SNR (0 without an event)",
        "cadences": len(chosen),
    }
    return MethodScores("turbo_seti", "turbo_seti", scores, seconds, details)


# ------------------------------------------------------------------ report ---


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace an earlier report unless asked to."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a directory")
    existing = [name for name in REPORT_FILES if (out_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir / existing[0]}: already exists; pass --overwrite to replace the report or choose --out"
        )


def machine() -> dict:
    """Where the timings were taken."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def build_report(meta: pd.DataFrame, methods: Sequence[MethodScores], skipped: dict, settings: dict) -> dict:
    """The JSON report: data counts, subgroup definitions and every method's metrics and time."""
    edges = curve_edges(meta)
    groups = subgroups(meta)
    y = meta["target"].to_numpy()
    report = {
        "data": {
            "n": len(meta),
            "n_pos": int(y.sum()),
            "n_neg": int((1 - y).sum()),
            "by_interference": {
                f"{k} ({'positive' if t else 'negative'})": int(n)
                for (t, k), n in meta.groupby(["target", "interference"]).size().items()
            },
            **(
                {
                    "positives_by_n_on_present": {
                        str(int(k)): int(n)
                        for k, n in meta.loc[meta["target"] == 1, "n_on_present"].value_counts().sort_index().items()
                    }
                }
                if "n_on_present" in meta.columns
                else {}
            ),
            "subgroups": {
                name: {"n_pos": int(y[m].sum()), "n_neg": int((1 - y[m]).sum())} for name, (m, _) in groups.items()
            },
        },
        "definitions": {name: text for name, (_, text) in groups.items()},
        "notes": {
            "recall_at_fpr": "threshold = the (floor(fpr x n_neg) + 1)-th highest score among the problem's negatives; "
            "a cadence is detected when its score is strictly above it",
            "snr_at_90pct_recall_1pct_fpr": "lowest SNR from which an isotonic (monotone) fit of detected-vs-log(SNR) "
            "of the positives reaches 0.9 with >= 10 positives at or above it, "
            "threshold at 1% FPR; "
            "null = not reached",
        },
        "settings": settings,
        "machine": machine(),
        "methods": {},
        "skipped": skipped,
    }
    for m in methods:
        metrics = method_metrics(meta, m.scores, edges)
        n = metrics["n_scored"]
        report["methods"][m.name] = {
            "kind": m.kind,
            "seconds": round(m.seconds, 2),
            "cadences_per_s": round(n / m.seconds, 2) if m.seconds > 0 else None,
            "details": m.details,
            **metrics,
        }
    return report


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    """report.md: headline table, subgroup tables, definitions and plots."""
    methods, d, settings = report["methods"], report["data"], report["settings"]
    names = list(methods)
    kinds = ", ".join(f"{k}: {v}" for k, v in d["by_interference"].items())
    lines = [
        "# Detection benchmark",
        "",
        f"Command: `{settings['command']}`",
        "",
        (
            f"Data: `{settings['data_dir']}` split `{settings['split']}`: {d['n']} cadences, {d['n_pos']} positives, "
            f"{d['n_neg']} negatives ({kinds})."
        ),
        "",
    ]
    if "positives_by_n_on_present" in d:
        counts = ", ".join(f"{k}: {n}" for k, n in d["positives_by_n_on_present"].items())
        lines += [f"Positives by the number of ON observations holding the needle ({counts}).", ""]
    lines += [
        "## Headline",
        "",
    ]
    lines += _table(
        [
            "method",
            "cadences",
            "ROC AUC",
            "recall @ 1% FPR",
            "recall @ 0.1% FPR",
            "SNR for 90% recall @ 1% FPR (all / clean linear)",
            "seconds",
            "cadences/s",
        ],
        [
            [
                name,
                m["n_scored"],
                _fmt(m["auc"]),
                _fmt(m["recall_at_1pct_fpr"], 3),
                _fmt(m["recall_at_0.1pct_fpr"], 3),
                " / ".join(_fmt(v, 1) for v in m["snr_at_90pct_recall_1pct_fpr"].values()),
                f"{m['seconds']:.1f}",
                _fmt(m["cadences_per_s"], 1),
            ]
            for name, m in methods.items()
        ],
    )
    for key, title in (
        ("auc", "ROC AUC by subgroup"),
        ("recall_at_1pct_fpr", "Recall at 1% FPR by subgroup"),
        ("recall_at_0.1pct_fpr", "Recall at 0.1% FPR by subgroup"),
    ):
        rows = [
            [
                group,
                c["n_pos"],
                c["n_neg"],
                *(_fmt(methods[n]["subgroups"][group][key], 4 if key == "auc" else 3) for n in names),
            ]
            for group, c in d["subgroups"].items()
        ]
        lines += ["", f"## {title}", "", *_table(["subgroup", "positives", "negatives", *names], rows)]
    if any(methods[n]["n_scored"] < d["n"] for n in names):
        lines += [
            "",
            (
                "Counts are those of the whole set; a method that scored fewer cadences (see the headline) "
                "is measured on its own cadences only."
            ),
        ]
    lines += ["", "## Definitions", "", *(f"- **{group}**: {text}." for group, text in report["definitions"].items())]
    lines.append(
        f"- **recall at FPR**: {report['notes']['recall_at_fpr']}. Each subgroup is its own problem, so its "
        "threshold comes from its own negatives: all negatives, except for the `clean` rows (clean negatives) "
        "and the `vs` rows (those negatives)."
    )
    lines.append(
        f"- **SNR for 90% recall**: {report['notes']['snr_at_90pct_recall_1pct_fpr']}; all: all positives against all "
        "negatives; clean linear: clean linear positives against clean negatives."
    )
    lines.append("- **SNR** is setigen's: that of the time-summed spectrum of one observation.")
    if d["n_neg"] < 1000:
        lines.append(
            f"- With {d['n_neg']} negatives, recall at 0.1% FPR is recall above the highest negatives "
            "(at most floor(0.001 x negatives) false positives)."
        )
    lines += ["", "## Methods", ""]
    for name, m in methods.items():
        lines.append(f"- **{name}** ({m['kind']}): " + ", ".join(f"{k}: {v}" for k, v in m["details"].items()) + ".")
    lines += [f"- **{name}**: skipped: {why}." for name, why in report["skipped"].items()]
    mach = report["machine"]
    gpu = f", GPU {mach['gpu']}" if "gpu" in mach else ""
    threads = mach["torch_threads"]
    lines += [
        "",
        f"Machine: {mach['platform']}, {mach['cpu_count']} CPUs, torch {mach['torch']} ({threads} threads){gpu}.",
        "",
        "## Plots",
        "",
        "![ROC curves](roc.png)",
        "",
        "![Recall vs SNR](recall_vs_snr.png)",
        "",
    ]
    return "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    """A Markdown table as lines."""
    return [
        "| " + " | ".join(map(str, header)) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(map(str, row)) + " |" for row in rows),
    ]


def plot_roc(meta: pd.DataFrame, methods: Sequence[MethodScores], path: Path) -> None:
    """Every method's ROC curve on one figure: linear axes and log false-positive rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = meta["target"].to_numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for m in methods:
        scored = ~np.isnan(m.scores)
        auc = roc_auc(y[scored], m.scores[scored])
        if auc is None:  # its cadences hold one class: no curve
            continue
        fpr, tpr, _ = roc_curve(y[scored], m.scores[scored])
        for ax in axes:
            ax.plot(fpr, tpr, label=f"{m.name} (AUC {auc:.3f})")
    n_neg = int((y == 0).sum())
    axes[0].plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    axes[1].set_xscale("log")
    axes[1].set_xlim(max(1.0 / max(n_neg, 1), 1e-4), 1)
    for ax, title in zip(axes, ("ROC", "ROC, log false-positive rate"), strict=True):
        ax.axvline(0.01, color="grey", lw=0.6, ls="--")
        ax.set(xlabel="false-positive rate", ylabel="recall (true-positive rate)", title=title)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")  # the path may be a temporary name without .png
    plt.close(fig)


def plot_recall_vs_snr(report: dict, path: Path) -> None:
    """Every method's recall at 1% FPR against SNR (log-spaced bins) on one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.8))
    for name, m in report["methods"].items():
        curve = m["recall_vs_snr"]
        x = [c for c, r in zip(curve["snr_centres"], curve["recall"], strict=True) if r is not None]
        r = [r for r in curve["recall"] if r is not None]
        ax.plot(x, r, marker="o", label=name)
    ax.axhline(RECALL_LEVEL, color="grey", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_xticks(
        [t for t in (2, 3, 4, 6, 10, 15, 20, 30, 40, 60, 100) if curve["snr_edges"][0] <= t <= curve["snr_edges"][-1]]
    )
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(
        xlabel="SNR (setigen, time-summed spectrum of one observation)",
        ylabel="recall at 1% FPR",
        ylim=(-0.02, 1.02),
        title="Recall at 1% FPR vs SNR (all positives, log-spaced bins)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")  # the path may be a temporary name without .png
    plt.close(fig)


def scores_table(meta: pd.DataFrame, methods: Sequence[MethodScores]) -> pd.DataFrame:
    """scores.csv: metadata plus every method's score (and de-Doppler's per-observation values)."""
    table = meta.copy()
    for m in methods:
        table[f"score: {m.name}"] = m.scores
        if m.columns is not None:
            table = pd.concat([table, m.columns.set_axis(table.index)], axis=1)
    return table


def write_report(out_dir: Path, meta: pd.DataFrame, methods: Sequence[MethodScores], report: dict) -> None:
    """All report files, each written to a temporary name and renamed into place."""
    out_dir.mkdir(parents=True, exist_ok=True)
    writers: dict[str, Callable[[Path], None]] = {
        "report.json": lambda p: p.write_text(json.dumps(report, indent=2)),
        "report.md": lambda p: p.write_text(markdown(report)),
        "scores.csv": lambda p: scores_table(meta, methods).to_csv(p, index=False),
        "roc.png": lambda p: plot_roc(meta, methods, p),
        "recall_vs_snr.png": lambda p: plot_recall_vs_snr(report, p),
    }
    for name, write in writers.items():
        write_atomically(out_dir / name, write)


# ------------------------------------------------------------------- entry ---


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What bench/detection.py was asked to do."""

    data_dir: Path
    out_dir: Path
    runs: tuple[Path, ...] = ()
    split: str = "test"
    tta: tuple[str, ...] | None = None
    batch_size: int | None = None
    num_workers: int = 2
    turbo_seti: str = "auto"
    turbo_seti_limit: int | None = None
    turbo_seti_max_drift: float = turboseti.MAX_DRIFT_HZ_S
    turbo_seti_min_snr: float = turboseti.MIN_SNR
    dedoppler_batch: int = 16
    max_drift: int = dedoppler.MAX_DRIFT
    width: int = dedoppler.WIDTH
    dedoppler_device: str = "cpu"
    overwrite: bool = False
    command: str = ""


def json_value(value):
    """Settings as JSON: paths as strings."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [json_value(v) for v in value]
    return value


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(s: BenchSettings) -> dict:
    """Score the held-out cadences with every method and write the report; returns the JSON report."""
    if s.turbo_seti not in TURBO_SETI_MODES:
        raise ValueError(f"turbo_seti must be one of {TURBO_SETI_MODES}")
    check_out_dir(s.out_dir, s.overwrite)
    meta = load_benchmark(s.data_dir, s.split)
    skip_turbo_seti = turboseti.unavailable_reason() if s.turbo_seti != "off" else "--turbo-seti off"
    if skip_turbo_seti and s.turbo_seti == "on":
        raise RuntimeError(f"--turbo-seti on: {skip_turbo_seti}")
    ids = meta["id"].tolist()
    log(f"benchmark: {len(ids)} cadences ({int(meta['target'].sum())} positives) from {s.data_dir}")
    methods = []
    if s.runs:
        from accelerate import Accelerator

        accelerator = Accelerator()
        for run in s.runs:
            scored = run_logits(run, s.data_dir, s.split, ids, s.tta, s.batch_size, s.num_workers, accelerator)
            if any(m.name == scored.name for m in methods):  # two runs with the same folder name
                scored.name = f"model: {run}"
            methods.append(scored)
            log(f"{scored.name}: {scored.seconds:.1f} s")
    methods.append(
        dedoppler_scores(s.data_dir, s.split, ids, s.dedoppler_batch, s.max_drift, s.width, s.dedoppler_device)
    )
    log(f"de-Doppler: {methods[-1].seconds:.1f} s ({methods[-1].details['compute_seconds']} s searching)")
    skipped = {}
    if skip_turbo_seti:
        skipped["turbo_seti"] = skip_turbo_seti
        log(f"turbo_seti skipped: {skip_turbo_seti}")
    else:
        methods.append(
            turbo_seti_scores(
                s.data_dir, s.split, ids, s.turbo_seti_limit, s.turbo_seti_max_drift, s.turbo_seti_min_snr
            )
        )
        log(f"turbo_seti: {methods[-1].seconds:.1f} s")
    settings = {k: json_value(v) for k, v in dataclasses.asdict(s).items()}
    report = build_report(meta, methods, skipped, settings)
    write_report(s.out_dir, meta, methods, report)
    log(f"wrote {s.out_dir / 'report.md'}")
    return report
