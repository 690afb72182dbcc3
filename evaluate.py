"""Predict the test cadences with every fold checkpoint of a run and write submission.csv.

    python evaluate.py --run-dir outputs/<run>                        # data dir from the run's config
    accelerate launch --num_processes 2 evaluate.py --run-dir outputs/<run> --data-dir input
    python evaluate.py --checkpoints a/fold0.safetensors b/fold3.safetensors --data-dir \
        /kaggle/input/seti-breakthrough-listen --out /kaggle/working/submission.csv
    python evaluate.py --run-dir outputs/nfnet outputs/effnet outputs/swin --ensemble vote --out vote.csv

Logits are averaged over the TTA views and the checkpoints, then passed through a sigmoid. With checkpoints of
several runs, --ensemble says how the runs (each the mean of its folds) are combined: mean (the default), rank,
vote or weighted (weights fitted on the runs' out-of-fold predictions); docs/training.md#ensembles-across-runs.
Every cadence is read once, whatever the number of checkpoints: each batch goes to all their models.
"""

import argparse
from pathlib import Path

from src.core.cli import ErrorLineParser, run_cli
from src.core.config import PRECISIONS, TTA_VIEWS
from src.engine.checkpoint import find_checkpoints, read_checkpoint_info
from src.engine.ensemble import ENSEMBLE_MODES
from src.engine.inference import evaluate


def main() -> None:
    parser = ErrorLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--run-dir", type=Path, nargs="+", help="run folder(s) of main.py: uses all their fold*.safetensors"
    )
    source.add_argument("--checkpoints", type=Path, nargs="+", help="explicit checkpoint files (any runs)")
    parser.add_argument("--data-dir", help="folder with sample_submission.csv and test/ (default: the run's data_dir)")
    parser.add_argument(
        "--out", type=Path, help="submission path (default: <run-dir>/submission.csv for one run, else ./)"
    )
    parser.add_argument("--split", default="test", help="sub-folder holding the cadences (default: test)")
    parser.add_argument(
        "--tta", help=f"comma-separated subset of {','.join(TTA_VIEWS)} (default: each checkpoint's config)"
    )
    parser.add_argument(
        "--batch-size", type=int, help="one for all checkpoints (default: the smallest eval_batch_size of theirs)"
    )
    parser.add_argument("--num-workers", type=int, help="loader worker processes (default: from the CPUs available)")
    parser.add_argument(
        "--cache-dir", help="packed cache root (python -m src.pack); the file tree is read without a match"
    )
    parser.add_argument("--mixed-precision", choices=PRECISIONS, default="no")
    parser.add_argument(
        "--ensemble", choices=ENSEMBLE_MODES, default="mean", help="how the runs are combined (default: mean)"
    )
    parser.add_argument(
        "--vote-threshold", type=float, default=0.5, help="--ensemble vote: a run votes at this probability (0.5)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing submission file")
    args = parser.parse_args()

    checkpoints = [p for run in args.run_dir for p in find_checkpoints(run)] if args.run_dir else args.checkpoints
    data_dir = args.data_dir or read_checkpoint_info(checkpoints[0]).config.data_dir
    one_run = args.run_dir[0] if args.run_dir and len(args.run_dir) == 1 else None
    out = args.out or (one_run / "submission.csv" if one_run else Path("submission.csv"))
    tta = args.tta.split(",") if args.tta else None
    if tta and not set(tta) <= set(TTA_VIEWS):
        parser.error(f"--tta: choose from {','.join(TTA_VIEWS)}")
    evaluate(
        checkpoints,
        data_dir,
        out,
        args.split,
        tta,
        args.batch_size,
        args.num_workers,
        args.mixed_precision,
        args.overwrite,
        report=one_run / "report.md" if one_run else None,
        cache_dir=args.cache_dir,
        ensemble=args.ensemble,
        vote_threshold=args.vote_threshold,
    )


if __name__ == "__main__":
    run_cli(main)
