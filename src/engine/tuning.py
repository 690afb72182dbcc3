"""Hyperparameter search on Ray Tune: Optuna proposes, ASHA stops bad trials early, each trial is this
project's own training of one fold (`train`, the code path of main.py) reporting its validation every epoch.

A search space is a YAML mapping of config fields to ranges, checked against the Config before any trial starts:

    lr: loguniform(1e-4, 1e-2)
    weight_decay: loguniform(1e-4, 1e-1)
    model_name: choice([resnet10t, resnet18d])
    batch_size: choice([16, 32])
    drop_rate: uniform(0.0, 0.3)

Writes into the search folder: trials/<trial id>/ (each trial's run folder), tune/ (Ray Tune's experiment, what
`--resume` restores), results.csv and results.md (trials sorted by their best validation AUC), best.yaml (the base
recipe with the best trial's values: a recipe for main.py) and search.png (AUC against each searched field).
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from accelerate.tracking import GeneralTracker
from matplotlib.figure import Figure

from src.core.config import Config, make_config, read_yaml
from src.core.errors import ConfigError, Interrupted, TrainingError
from src.core.files import write_csv_atomically, write_text_atomically
from src.data.kaggle import TRAIN_LABELS, check_fold_sizes, read_train_labels, require_cadence_files
from src.engine.pictures import save_figure
from src.engine.resume import latest_state
from src.engine.tracking import METRICS_CSV
from src.engine.train import train
from src.models.classifier import build_model
from src.search.scan import ray_session

METRIC = "valid_auc"
TIME_ATTRIBUTE = "epoch"  # ASHA's clock: the run's own epoch, the same after a resumed trial
EXPERIMENT = "tune"
TRIALS = "trials"
RESULTS_CSV, RESULTS_MD, BEST_YAML, SEARCH_PNG = "results.csv", "results.md", "best.yaml", "search.png"
SEARCH_YAML = "search.yaml"
SAMPLERS = {  # name -> number of arguments (choice: one list)
    "uniform": 2,
    "loguniform": 2,
    "quniform": 3,
    "randint": 2,
    "choice": 1,
}
PATH_FIELDS = ("data_dir", "cache_dir", "pretrained", "pseudo_labels")  # read by every trial, from its own folder
# what a trial's folder, data and fold are, not how it trains
NOT_SEARCHABLE = ("data_dir", "cache_dir", "out_dir", "run_name", "folds", "n_folds", "tracker", "pretrained")
EXPRESSION = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$", re.DOTALL)
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class Range:
    """One searched field: a sampler of Ray Tune (`tune.<sampler>(*arguments)`)."""

    field: str
    sampler: str
    arguments: tuple

    def tune_domain(self):
        from ray import tune

        return getattr(tune, self.sampler)(*self.arguments)

    def examples(self) -> list[Any]:
        """Values the range can give, each checked against the Config: the ends, or every choice."""
        if self.sampler == "choice":
            return list(self.arguments[0])
        if self.sampler == "randint":  # Ray's upper bound is exclusive
            return [self.arguments[0], self.arguments[1] - 1]
        return list(self.arguments[:2])

    @property
    def logarithmic(self) -> bool:
        return self.sampler == "loguniform"


def number(value: Any) -> Any:
    """A YAML value, with numbers PyYAML leaves as text (`1e-5`: YAML 1.1 wants `1.0e-5`) read as numbers."""
    return float(value) if isinstance(value, str) and NUMBER.fullmatch(value.strip()) else value


def parse_range(field: str, text: Any, source: str) -> Range:
    """`loguniform(1e-5, 1e-2)` -> Range; the arguments are read as YAML (numbers, names, lists)."""
    match = EXPRESSION.match(str(text)) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(
            f"{source}: {field}: expected one of {', '.join(f'{s}(...)' for s in SAMPLERS)}, got {text!r}"
        )
    sampler, body = match.groups()
    if sampler not in SAMPLERS:
        raise ConfigError(f"{source}: {field}: unknown range {sampler!r}; use one of {', '.join(SAMPLERS)}")
    try:
        arguments = tuple(yaml.safe_load(f"[{body}]"))
    except yaml.YAMLError:
        raise ConfigError(f"{source}: {field}: cannot read the arguments of {text!r}") from None
    arguments = tuple([number(v) for v in a] if isinstance(a, list) else number(a) for a in arguments)
    if len(arguments) != SAMPLERS[sampler]:
        raise ConfigError(f"{source}: {field}: {sampler} takes {SAMPLERS[sampler]} argument(s), got {len(arguments)}")
    if sampler == "choice":
        if not isinstance(arguments[0], list) or not arguments[0]:
            raise ConfigError(f"{source}: {field}: choice needs a non-empty list, e.g. choice([a, b])")
    else:
        if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in arguments):
            raise ConfigError(f"{source}: {field}: {sampler} needs numbers, got {list(arguments)}")
        low, high = arguments[:2]
        if not low < high:
            raise ConfigError(
                f"{source}: {field}: empty range {sampler}({low}, {high}): the low end must be below the high"
            )
        if sampler == "loguniform" and low <= 0:
            raise ConfigError(f"{source}: {field}: loguniform needs a positive low end, got {low}")
        if sampler == "randint" and not all(isinstance(a, int) for a in arguments):
            raise ConfigError(f"{source}: {field}: randint needs whole numbers, got {list(arguments)}")
    return Range(field, sampler, arguments)


def read_space(path: str | Path, base: Mapping[str, Any]) -> list[Range]:
    """The search space of a YAML file, each range checked: a known, searchable field, and every end (or choice)
    a value the Config accepts on top of `base` (right type, valid setting)."""
    values = read_yaml(path)
    if not values:
        raise ConfigError(
            f"{path}: the search space is empty; map config fields to ranges, e.g. lr: loguniform(1e-4, 1e-2)"
        )
    hints = typing.get_type_hints(Config)
    known = set(hints)
    ranges = []
    for field, text in values.items():
        if field not in known:
            raise ConfigError(f"{path}: {field}: not a config field (see docs/configuration.md)")
        if field in NOT_SEARCHABLE:
            raise ConfigError(f"{path}: {field}: says where or what a trial trains, not how; it cannot be searched")
        found = parse_range(field, text, str(path))
        if hints[field] is int and found.sampler in ("uniform", "loguniform"):
            raise ConfigError(
                f"{path}: {field}: a whole number; {found.sampler} would draw fractions - use randint(a, b), "
                "quniform(a, b, 1) or choice([...])"
            )
        for example in found.examples():
            try:
                make_config({**base, field: example}, f"{path}: {field} = {example!r}")
            except ConfigError as err:
                raise ConfigError(str(err)) from None
        ranges.append(found)
    return ranges


class TuneReport(GeneralTracker):
    """An Accelerate tracker that hands each epoch's validation to Ray Tune: the trial's report, ASHA's cue."""

    name = "ray_tune"
    requires_logging_directory = False

    @property
    def tracker(self) -> None:
        return None

    def store_init_configuration(self, values: dict) -> None:
        pass

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        if METRIC in values:
            from ray import tune

            # the epoch's learning rate under another name than the searched `lr` it would shadow in Tune's tables
            renamed = {("lr_now" if k == "lr" else k): v for k, v in values.items() if isinstance(v, (int, float))}
            tune.report(renamed)


@dataclass(frozen=True)
class Search:
    """What the search trains and where: the base recipe's values (with the command line's), the fold of every
    trial, its folder, and Ray Tune's settings."""

    base: dict[str, Any]
    ranges: tuple[Range, ...]
    out_dir: Path
    fold: int = 0
    trials: int = 8
    grace_epochs: int = 1
    reduction_factor: int = 3
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    concurrent: int | None = None
    seed: int = 0

    @property
    def epochs(self) -> int:
        """The most epochs a trial runs: the base recipe's."""
        return make_config(self.base).epochs

    def trial_config(self, sampled: Mapping[str, Any], trial_id: str) -> Config:
        return make_config(
            {
                **self.base,
                **sampled,
                "folds": [self.fold],
                "out_dir": str(self.out_dir / TRIALS),
                "run_name": trial_id,
                "tracker": [],
            },
            f"trial {trial_id}",
        )


def search_base(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The values every trial shares, as the Config reads them (numbers, lists: for best.yaml), checked; and the
    paths among the config's, defaults included (`data_dir: input`), made absolute: a trial runs in its own
    folder under Ray Tune, and perhaps on another machine."""
    cfg = make_config(dict(values), source)
    typed = cfg.to_dict()
    base = {name: typed[name] for name in values}
    for name in PATH_FIELDS:
        if typed[name]:
            base[name] = str(Path(typed[name]).resolve())
    return base


def check_before_trials(base: Mapping[str, Any], ranges: Sequence[Range]) -> None:
    """What would make every trial fail, checked once before Ray starts: the training data (its labels, its
    cadence files, enough of them for the folds), and each backbone the search may pick (a timm model that fits
    the recipe, its pretrained weights readable)."""
    cfg = make_config(dict(base))
    labels = read_train_labels(cfg.data_dir)
    labels_path = Path(cfg.data_dir) / TRAIN_LABELS
    if not cfg.skip_bad:
        require_cadence_files(cfg.data_dir, "train", labels["id"].tolist(), labels_path)
    check_fold_sizes(labels, cfg.n_folds, labels_path)
    searched = {r.field: r for r in ranges}
    names = searched["model_name"].examples() if "model_name" in searched else [cfg.model_name]
    for name in names:
        build_model(dataclasses.replace(cfg, model_name=name))


def write_search(search: Search) -> None:
    """search.yaml: what `--resume` needs to rebuild the trials' training (Ray Tune keeps the rest)."""
    ranges = {r.field: {"sampler": r.sampler, "arguments": list(r.arguments)} for r in search.ranges}
    settings = {
        f.name: getattr(search, f.name) for f in dataclasses.fields(Search) if f.name not in ("ranges", "out_dir")
    }
    text = yaml.safe_dump({**settings, "ranges": ranges}, sort_keys=False)
    write_text_atomically(search.out_dir / SEARCH_YAML, text)


def resumed_search(out_dir: Path) -> Search:
    """The search of a folder `write_search` wrote (its Ray Tune experiment is checked when Ray has started)."""
    saved = out_dir / SEARCH_YAML
    if not saved.is_file():
        raise ConfigError(f"{out_dir}: no search to continue here (no {SEARCH_YAML}, which tune.py writes first)")
    values = read_yaml(saved)
    ranges = tuple(Range(k, v["sampler"], tuple(v["arguments"])) for k, v in values.pop("ranges").items())
    return Search(ranges=ranges, out_dir=out_dir, **values)


def prepare_out(out_dir: Path, overwrite: bool) -> None:
    """A new search's folder: an existing non-empty one is refused unless `overwrite` (then emptied)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out_dir}: already holds a search; continue it with --resume, choose another --out, or replace it "
                "with --overwrite"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def run_trial(sampled: dict[str, Any], search: Search) -> None:
    """One trial inside a Ray worker: the project's training of one fold, reporting every epoch through
    TuneReport. When Ray Tune restarts a trial after a kill, its run folder continues from its own saved state,
    or starts again when the kill came before the first one (the folder then holds nothing worth keeping)."""
    from ray import tune

    torch.set_num_threads(max(1, math.floor(search.cpus_per_trial)))
    trial_id = tune.get_context().get_trial_id()
    cfg = search.trial_config(sampled, trial_id)
    resume = latest_state(search.out_dir / TRIALS / trial_id) is not None
    train(cfg, recipe_name="trial", overwrite=not resume, resume=resume, trackers=[TuneReport()])


def tuner(search: Search, resume: bool):
    """Ray Tune's Tuner for the search: a new experiment, or the killed one restored."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, search=search),
        {"cpu": search.cpus_per_trial, "gpu": search.gpus_per_trial},
    )
    experiment = search.out_dir / EXPERIMENT
    if resume:
        if not tune.Tuner.can_restore(str(experiment)):
            raise ConfigError(f"{experiment}: no Ray Tune experiment to restore (the search stopped before it began)")
        return tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, restart_errored=True)
    epochs = search.epochs
    return tune.Tuner(
        trainable,
        param_space={r.field: r.tune_domain() for r in search.ranges},
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(metric=METRIC, mode="max", seed=search.seed),
            scheduler=ASHAScheduler(
                time_attr=TIME_ATTRIBUTE,
                metric=METRIC,
                mode="max",
                # one past the last epoch: a trial that reaches it ends by itself and finishes its run folder
                # (out-of-fold table, report, pictures) instead of being stopped at its last report
                max_t=epochs + 1,
                grace_period=min(search.grace_epochs, epochs),
                reduction_factor=search.reduction_factor,
            ),
            num_samples=search.trials,
            max_concurrent_trials=search.concurrent,
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(search.out_dir.resolve()), verbose=1),
    )


def trial_id(result) -> str:
    """A Ray Tune result's trial id: from its reports, else from its folder's name (`run_trial_<id>_<n>_...`)."""
    return (result.metrics or {}).get("trial_id") or Path(result.path).name.removeprefix(
        f"{run_trial.__name__}_"
    ).split("_")[0]


def trial_table(results, search: Search) -> pd.DataFrame:
    """One row per trial, the best first: its values, best validation AUC and the epoch it came at, the epochs
    it ran (fewer than the recipe's: ASHA stopped it), its training seconds and its state. Read from each trial's
    own metrics.csv, which holds every epoch even when Ray Tune restarted the trial after a kill."""
    rows = []
    for result in results:
        trial = trial_id(result)
        row = {"trial": trial, **{r.field: result.config.get(r.field) for r in search.ranges}}
        metrics = search.out_dir / TRIALS / trial / METRICS_CSV
        history = pd.read_csv(metrics) if metrics.is_file() else pd.DataFrame()
        if METRIC in history and history[METRIC].notna().any():
            best = history.loc[history[METRIC].idxmax()]
            row |= {
                "best_valid_auc": float(best[METRIC]),
                "best_epoch": int(best[TIME_ATTRIBUTE]),
                "epochs_run": int(history[TIME_ATTRIBUTE].max()),
                "train_seconds": round(float(history["epoch_seconds"].sum()), 1),
            }
        row["state"] = "error" if result.error else "done"
        rows.append(row)
    table = pd.DataFrame(rows)
    if "best_valid_auc" not in table:
        table["best_valid_auc"] = np.nan
    return table.sort_values("best_valid_auc", ascending=False, na_position="last").reset_index(drop=True)


def best_recipe(search: Search, table: pd.DataFrame, source: str) -> str:
    """The base recipe with the best trial's values, as YAML for main.py (checked by the Config)."""
    best = table.iloc[0]
    values = {**search.base, **{r.field: to_plain(best[r.field]) for r in search.ranges}}
    make_config(values, "the best trial's recipe")
    header = (
        f"# The best of {len(table)} trials (validation ROC AUC {best['best_valid_auc']:.4f} on fold {search.fold}, "
        f"trial {best['trial']}), found by: {source}\n"
    )
    return header + yaml.safe_dump(values, sort_keys=False)


def to_plain(value: Any) -> Any:
    """numpy scalars as Python's, so the recipe YAML holds plain numbers."""
    return value.item() if isinstance(value, np.generic) else value


def results_markdown(search: Search, table: pd.DataFrame, command: str, seconds: float) -> str:
    fields = [r.field for r in search.ranges]
    columns = ["trial", *fields, "best_valid_auc", "best_epoch", "epochs_run", "train_seconds", "state"]
    shown = table.reindex(columns=columns)
    lines = [
        "# Hyperparameter search",
        "",
        f"`{command}`",
        "",
        f"{len(table)} trials of fold {search.fold}, {search.epochs} epochs at most (ASHA: "
        f"grace {search.grace_epochs} epoch(s), reduction factor {search.reduction_factor}), Optuna's TPE; "
        f"this command took {seconds / 60:.1f} min. Sorted by the best validation ROC AUC; `epochs_run` below the "
        "maximum: ASHA stopped the trial.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for _, row in shown.iterrows():
        cells = [
            f"{v:.4g}"
            if isinstance(v, float) and not math.isnan(v)
            else ("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
            for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Best recipe: [{BEST_YAML}]({BEST_YAML}). ![AUC against each searched field]({SEARCH_PNG})", ""]
    return "\n".join(lines)


def plot_search(table: pd.DataFrame, ranges: Sequence[Range], path: Path) -> Figure:
    """Each trial's best validation AUC against each searched field (log scale for loguniform ranges)."""
    done = table.dropna(subset=["best_valid_auc"])
    figure = Figure(figsize=(4 * len(ranges) + 1, 3.6), layout="constrained")
    all_axes = np.atleast_1d(figure.subplots(1, len(ranges)))
    colours = {"c": done["epochs_run"], "cmap": "viridis", "vmin": 1, "vmax": max(int(done["epochs_run"].max()), 2)}
    for axes, found in zip(all_axes, ranges, strict=True):
        values = done[found.field]
        if found.sampler == "choice":
            labels = [str(v) for v in found.arguments[0]]
            positions = [labels.index(str(v)) for v in values]
            axes.set_xticks(range(len(labels)), labels, rotation=20)
            points = axes.scatter(positions, done["best_valid_auc"], **colours)
        else:
            points = axes.scatter(values.astype(float), done["best_valid_auc"], **colours)
            if found.logarithmic:
                axes.set_xscale("log")
        axes.set(xlabel=found.field, ylabel="best validation ROC AUC")
        axes.grid(alpha=0.3)
    epochs = range(colours["vmin"], colours["vmax"] + 1)
    figure.colorbar(points, ax=list(all_axes), ticks=list(epochs), label="epochs run (fewer: stopped by ASHA)")
    figure.suptitle(f"{len(done)} trials: each one's best validation ROC AUC", fontsize=10)
    save_figure(figure, path)
    return figure


def write_results(search: Search, table: pd.DataFrame, command: str, seconds: float) -> None:
    write_csv_atomically(table, search.out_dir / RESULTS_CSV)
    write_text_atomically(search.out_dir / RESULTS_MD, results_markdown(search, table, command, seconds))
    if table["best_valid_auc"].notna().any():
        write_text_atomically(search.out_dir / BEST_YAML, best_recipe(search, table, command))
        plot_search(table, search.ranges, search.out_dir / SEARCH_PNG)


def run_search(search: Search, command: str, resume: bool, address: str | None) -> pd.DataFrame:
    """The search on a local Ray (or the cluster at `address`); returns the trial table it writes."""
    started = time.time()
    with ray_session(address):
        results = tuner(search, resume).fit()
    if results.num_terminated + results.num_errors < search.trials:  # Ctrl-C: Ray Tune stopped and saved the search
        raise Interrupted(
            f"{search.out_dir}: the search stopped before its {search.trials} trials ended; Ray Tune saved it: "
            f"continue with python tune.py --resume --out {search.out_dir}"
        )
    table = trial_table(results, search)
    write_results(search, table, command, time.time() - started)
    if table["best_valid_auc"].isna().all():
        where = search.out_dir / EXPERIMENT
        raise TrainingError(
            f"{search.out_dir}: no trial reported a validation AUC; see the trials' errors under {where}"
        )
    return table
