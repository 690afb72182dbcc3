"""Scan benchmark: this project's filterbank scan against turbo_seti, side by side on the same generated files.

    # the full benchmark: 8 cadences x 2 coarse channels x 2^20 fine channels, generated when missing
    python bench/scan.py --data input/fb-bench --out bench/results/scan --generate
    # a smaller one, without turbo_seti or the memory runs
    python bench/scan.py --data input/fb-small --out bench/results/scan-small --generate --n-cadences 2 \\
        --fine-channels 65536 --turbo-seti off --skip-memory

turbo_seti runs in its own interpreter (--turbo-seti-python, default /tmp/ts/bin/python): FindDoppler on every file
(max drift 4 Hz/s, SNR 10, n_coarse_chan = the file's coarse channels), find_events at levels 3 and 2 over each
ABACAD cadence. Our scan (scan_catalog, the same max drift and SNR, filter level 1) runs in this process. Both are
matched against the generator's truth.csv. The memory part runs scan.py on one generated cadence with 1 and with 4
coarse channels (--memory-coarse-channels) and reads each run's peak RSS.

Writes report.md, results.json, results.csv, curve.csv, events.csv, needles.csv, recall_vs_false.png,
recall_by_group.png and three candidate plots into --out, and refuses to replace an earlier report unless
--overwrite is given. Working files (scan folders, turbo_seti's .dat files, logs) go to --work.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find src/

from bench.lib.scan import DEFAULT_TURBO_SETI_PYTHON, TURBO_SETI_MODES, BenchSettings, run_benchmark
from src.core.cli import ErrorLineParser, run_cli


def build_parser() -> argparse.ArgumentParser:
    d = BenchSettings(data=Path("."), out=Path("."))
    parser = ErrorLineParser(
        prog="bench/scan.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="generated set (catalog.csv, truth.csv, cadence_*/)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/scan"), help="report folder (%(default)s)")
    parser.add_argument("--work", type=Path, help="working folder (default: outputs/scan-bench/<name of --out>)")
    parser.add_argument("--generate", action="store_true", help="generate --data (and the memory sets) when missing")
    parser.add_argument("--n-cadences", type=int, default=d.n_cadences, help="with --generate (default: %(default)s)")
    parser.add_argument(
        "--coarse-channels", type=int, default=d.coarse_channels, help="per file (default: %(default)s)"
    )
    parser.add_argument(
        "--fine-channels", type=int, default=d.fine_channels, help="per coarse channel (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="generator seed (default: %(default)s)")
    parser.add_argument(
        "--turbo-seti",
        choices=TURBO_SETI_MODES,
        default="auto",
        help="auto: run it when its interpreter imports it; on: require it; off: skip it (default: auto)",
    )
    parser.add_argument(
        "--turbo-seti-python",
        type=Path,
        help=f"interpreter with turbo_seti installed (default: {DEFAULT_TURBO_SETI_PYTHON})",
    )
    parser.add_argument("--max-drift", type=float, default=d.max_drift, help="Hz/s, both searches (default: 4)")
    parser.add_argument("--snr", type=float, default=d.snr, help="hit SNR threshold, both searches (default: 10)")
    parser.add_argument("--plot-top", type=int, default=d.plot_top, help="candidate plots per cadence (default: 10)")
    parser.add_argument(
        "--torch-threads", type=int, help="torch threads of our scan (default: torch's, the CPU count; turbo_seti: 1)"
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-RSS runs of scan.py")
    parser.add_argument(
        "--memory-coarse-channels",
        type=int,
        nargs="+",
        default=list(d.memory_coarse_channels),
        help="coarse channels per file of the memory runs (default: 1 4)",
    )
    parser.add_argument(
        "--memory-fine-channels",
        type=int,
        default=d.memory_fine_channels,
        help="fine channels per coarse channel of the memory runs (default: %(default)s)",
    )
    parser.add_argument("--memory-data", type=Path, help="where the memory cadences live (default: <data>/memory)")
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        type=Path,
        default=(),
        help="a scan model's checkpoints or run folders: also "
        "run the scan with the model (scan.py --checkpoints) and report it beside the scan alone",
    )
    parser.add_argument("--model-snr", type=float, help="hit SNR threshold of the scan with the model (default --snr)")
    parser.add_argument(
        "--windows",
        action="store_true",
        help="the scan with the model also scores every window of the ON bands where no hit is (scan.py --windows)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report and working files")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    run_benchmark(
        BenchSettings(
            data=args.data,
            out=args.out,
            work=args.work,
            generate=args.generate,
            n_cadences=args.n_cadences,
            coarse_channels=args.coarse_channels,
            fine_channels=args.fine_channels,
            seed=args.seed,
            turbo_seti=args.turbo_seti,
            turbo_seti_python=args.turbo_seti_python,
            max_drift=args.max_drift,
            snr=args.snr,
            plot_top=args.plot_top,
            torch_threads=args.torch_threads,
            memory=not args.skip_memory,
            memory_coarse_channels=tuple(args.memory_coarse_channels),
            memory_fine_channels=args.memory_fine_channels,
            memory_data=args.memory_data,
            checkpoints=tuple(args.checkpoints),
            model_snr=args.model_snr,
            windows=args.windows,
            overwrite=args.overwrite,
            command=" ".join(shlex.quote(a) for a in ["python", *sys.argv]),
        )
    )


if __name__ == "__main__":
    run_cli(main)
