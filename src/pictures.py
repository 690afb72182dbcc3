"""Draw a finished run's pictures again: curves.png, roc.png, confusion.png and gradcam.png, and their section
of report.md (main.py draws them at the end of training; this is for runs trained before, or moved data).

    python -m src.pictures outputs/<run>
    python -m src.pictures outputs/<run> --data-dir /elsewhere/input --device cuda
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from src.core.cli import ErrorLineParser, run_cli
from src.core.errors import CheckpointError
from src.engine.train import OOF_CSV, append_pictures


def device(name: str) -> torch.device:
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = ErrorLineParser(
        prog="python -m src.pictures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a run folder of main.py whose training finished")
    parser.add_argument("--data-dir", help="the training data (default: the run's data_dir), for Grad-CAM")
    parser.add_argument(
        "--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu", help="Grad-CAM's device"
    )
    args = parser.parse_args(argv)
    oof = args.run_dir / OOF_CSV
    if not oof.is_file():
        raise CheckpointError(f"{oof}: not found; pictures are drawn for a run whose training finished")
    append_pictures(args.run_dir, pd.read_csv(oof, dtype={"id": str}), args.device, args.data_dir)
    print(f"wrote the pictures of {args.run_dir} and their section of its report.md")


if __name__ == "__main__":
    run_cli(main)
