"""Check a whole data folder before a run: the id tables and every cadence file, one summary at the end.

    python -m src.validate --data-dir input                            # train and test, human summary
    python -m src.validate --data-dir input --split train --bad-list bad_files.csv
    python -m src.validate --data-dir /kaggle/input/seti-breakthrough-listen --workers 8 --json summary.json
    python -m src.validate --data-dir input/snippets --observation-shape 16 256   # other data than Kaggle's

Exit code 0: no problems; 1: problems listed (unreadable tables, missing or bad cadence files); 2: the data
folder itself is missing.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from src.core.cadence import observation_shape_problem
from src.core.cli import add_observation_shape_argument, run_cli
from src.core.files import write_text_atomically
from src.data import validation


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m src.validate",
        description=f"{__doc__}\n{validation.__doc__}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    workers = validation.DEFAULT_WORKERS
    parser.add_argument("--data-dir", default="input", help="Kaggle-layout data folder (default: input)")
    parser.add_argument("--workers", type=int, default=workers, help=f"reader threads (default: {workers})")
    parser.add_argument("--split", choices=("train", "test", "all"), default="all", help="which split to check")
    add_observation_shape_argument(parser, "a file of another shape is a problem")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--bad-list", type=Path, help="write the bad cadence files here as id,path,problem CSV")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers: must be >= 1")
    problem = observation_shape_problem(args.observation_shape)
    if problem:
        parser.error(f"--observation-shape: {problem}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Print the summary; 0 when clean, 1 when there is any problem (a missing folder raises DataError)."""
    args = parse_args(argv)
    splits = ("train", "test") if args.split == "all" else (args.split,)
    summary = validation.validate_data_dir(
        args.data_dir,
        args.workers,
        splits,
        progress=not args.no_progress,
        observation_shape=tuple(args.observation_shape),
    )
    print(summary.format())
    if args.json:
        write_text_atomically(args.json, json.dumps(summary.to_dict(), indent=2) + "\n")
    if args.bad_list:
        validation.write_bad_list(summary.bad, args.bad_list)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
