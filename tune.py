"""Search hyperparameters on Ray Tune: each trial trains one fold with main.py's training, Optuna proposes,
ASHA stops bad trials early; a results table, the best recipe and a plot at the end.

    python tune.py --config configs/demo_cpu.yaml --space configs/search/demo_cpu.yaml --trials 12 --out outputs/tune
    python tune.py --config configs/swin_tiny.yaml --space my_space.yaml --gpus-per-trial 0.5 --address auto
    python tune.py --resume --out outputs/tune        # continue a killed search (Ray Tune's restore)

Any config field is a flag too (--data-dir, --epochs, ...), fixed for every trial. The search space's format:
docs/training.md#hyperparameter-search.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from src.core.cli import ErrorLineParser, run_cli
from src.core.config import Config, add_config_arguments, make_config, read_yaml
from src.engine.tuning import (
    RESULTS_MD,
    Search,
    check_before_trials,
    prepare_out,
    read_space,
    resumed_search,
    run_search,
    search_base,
    write_search,
)


def base_values(args: argparse.Namespace) -> dict:
    """The base recipe's values with the command line's over them (see `search_base`)."""
    names = {f.name for f in dataclasses.fields(Config)}
    values = {**(read_yaml(args.config) if args.config else {}), **{k: v for k, v in vars(args).items() if k in names}}
    return search_base(values, args.config or "config")


def main() -> None:
    parser = ErrorLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, help="YAML of config fields and their ranges (not with --resume)")
    parser.add_argument("--out", type=Path, default=Path("outputs/tune"), help="the search folder (outputs/tune)")
    parser.add_argument("--trials", type=int, default=8, help="trials in all (default 8)")
    parser.add_argument("--fold", type=int, default=0, help="the fold every trial trains and is judged on (0)")
    parser.add_argument("--grace-epochs", type=int, default=1, help="ASHA: epochs before a trial may be stopped (1)")
    parser.add_argument("--reduction-factor", type=int, default=3, help="ASHA: keep 1 in this many at each rung (3)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray resources of one trial (1)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="may be a fraction, e.g. 0.5 (0)")
    parser.add_argument("--concurrent", type=int, help="trials at once (default: as many as the resources allow)")
    parser.add_argument("--search-seed", type=int, default=0, help="Optuna's sampler seed (0)")
    parser.add_argument("--address", help="an existing Ray cluster (auto or host:6379); default: a local Ray")
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue the search in --out (Ray Tune's restore)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing search folder")
    add_config_arguments(parser)
    args = parser.parse_args()
    for name in ("trials", "grace_epochs", "reduction_factor", "concurrent"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        parser.error("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    out = args.out.resolve()
    if args.resume:
        search = resumed_search(out)
    else:
        if args.space is None:
            parser.error("--space is needed (the fields to search and their ranges)")
        base = base_values(args)
        n_folds = make_config(base).n_folds
        if not 0 <= args.fold < n_folds:
            parser.error(f"--fold: must be in [0, n_folds = {n_folds})")
        ranges = tuple(read_space(args.space, base))
        check_before_trials(base, ranges)
        prepare_out(out, args.overwrite)
        search = Search(
            base, ranges, out, args.fold, args.trials, args.grace_epochs, args.reduction_factor,
            args.cpus_per_trial, args.gpus_per_trial, args.concurrent, args.search_seed,
        )  # fmt: skip
        write_search(search)
    command = " ".join(["python tune.py", *sys.argv[1:]])
    table = run_search(search, command, args.resume, args.address)
    best = table.iloc[0]
    print(f"best validation ROC AUC {best['best_valid_auc']:.4f} (trial {best['trial']}); {out / RESULTS_MD}")


if __name__ == "__main__":
    run_cli(main)
