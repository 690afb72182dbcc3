"""Detection benchmark: trained runs against brute-force de-Doppler (and turbo_seti) on a held-out synthetic set.

    # a held-out set: SNR log-uniform 4-60, a third of cadences with all-six interference, OFF-only signals, all shapes
    python -m src.synth --preset benchmark --out input/bench --n-test 2000 --seed 1001
    # one or more trained runs, plus the classical references, on the same cadences
    python bench/detection.py --runs outputs/runA outputs/runB --data-dir input/bench --out bench/results/detection
    # the classical reference alone (no runs)
    python bench/detection.py --data-dir input/bench --out bench/results/dedoppler

Writes report.md, report.json, scores.csv, roc.png and recall_vs_snr.png into --out, and refuses to replace an
earlier report unless --overwrite is given. turbo_seti (`--turbo-seti auto`, the default) runs when it can be
imported and is skipped with a note in the report otherwise.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find src/

from bench.lib.detection import TURBO_SETI_MODES, BenchSettings, run_benchmark
from src.core.cli import run_cli
from src.core.config import TTA_VIEWS
from src.search import dedoppler, turboseti


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--runs", type=Path, nargs="*", default=[], help="run folders of main.py (none: references only)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="held-out set with metadata.csv (python -m src.synth --preset benchmark)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results/detection"), help="report folder (default: %(default)s)"
    )
    parser.add_argument("--split", default="test", help="sub-folder of the held-out cadences (default: test)")
    parser.add_argument(
        "--tta", help=f"comma-separated subset of {','.join(TTA_VIEWS)} (default: each checkpoint's config)"
    )
    parser.add_argument("--batch-size", type=int, help="model batch size (default: each checkpoint's eval_batch_size)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers for the models (default: 2)")
    parser.add_argument(
        "--turbo-seti",
        choices=TURBO_SETI_MODES,
        default="auto",
        help="auto: run turbo_seti when it is installed; on: require it; off: skip it (default: auto)",
    )
    parser.add_argument(
        "--turbo-seti-limit",
        type=int,
        help="score only this many (seeded random) cadences with turbo_seti, ~0.5 s each (default: all)",
    )
    parser.add_argument(
        "--turbo-seti-max-drift",
        type=float,
        default=turboseti.MAX_DRIFT_HZ_S,
        help="FindDoppler max_drift, Hz/s (default: %(default)s)",
    )
    parser.add_argument(
        "--turbo-seti-min-snr",
        type=float,
        default=turboseti.MIN_SNR,
        help="FindDoppler hit threshold (default: %(default)s)",
    )
    parser.add_argument("--dedoppler-batch", type=int, default=16, help="cadences per de-Doppler batch (default: 16)")
    parser.add_argument(
        "--max-drift",
        type=int,
        default=dedoppler.MAX_DRIFT,
        help="de-Doppler drift range, +- channels per observation (default: %(default)s = 0.027 Hz/s)",
    )
    parser.add_argument(
        "--width", type=int, default=dedoppler.WIDTH, help="de-Doppler line width in channels (default: 1)"
    )
    parser.add_argument(
        "--dedoppler-device", default="cpu", help="torch device of the de-Doppler search (default: cpu)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    tta = tuple(args.tta.split(",")) if args.tta else None
    if tta and not set(tta) <= set(TTA_VIEWS):
        parser.error(f"--tta: choose from {','.join(TTA_VIEWS)}")
    if args.turbo_seti == "on" and (reason := turboseti.unavailable_reason()):
        parser.error(f"--turbo-seti on: {reason}")
    run_benchmark(
        BenchSettings(
            data_dir=args.data_dir,
            out_dir=args.out,
            runs=tuple(args.runs),
            split=args.split,
            tta=tta,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            turbo_seti=args.turbo_seti,
            turbo_seti_limit=args.turbo_seti_limit,
            turbo_seti_max_drift=args.turbo_seti_max_drift,
            turbo_seti_min_snr=args.turbo_seti_min_snr,
            dedoppler_batch=args.dedoppler_batch,
            max_drift=args.max_drift,
            width=args.width,
            dedoppler_device=args.dedoppler_device,
            overwrite=args.overwrite,
            command=" ".join(shlex.quote(a) for a in ["python", *sys.argv]),
        )
    )


if __name__ == "__main__":
    run_cli(main)
