"""Search Breakthrough Listen filterbank cadences (.h5/.fil) for drifting narrowband signals in the ON
observations but not the OFF ones, and report ranked, plotted candidates.

    python scan.py --cadence A1.h5 B.h5 A2.h5 C.h5 A3.h5 D.h5 --out scans/run1     # one cadence, ABACAD order
    python scan.py --catalog cadences.csv --out scans/night1                       # many: one row per file
    python scan.py --catalog cadences.csv --out scans/night1 --workers 2            # two cadences at a time
    python scan.py --catalog cadences.csv --out scans/night1 --engine ray --address auto   # on a Ray cluster
    python scan.py --catalog cadences.csv --out scans/night1 --checkpoints outputs/<run>   # ranked by a model
    python scan.py --catalog cadences.csv --out scans/night1 --checkpoints outputs/<run> --windows --device cuda

Each cadence gets a folder under --out with hits/*.dat (turbo_seti's format), hits.csv, events.csv,
candidates.csv, plots/ and report.md; --out also holds all candidates and a summary report. A killed scan,
rerun with the same command, continues from the coarse channels already done. With --checkpoints, a model
trained on scan snippets (configs/scan_cpu.yaml) scores every event and ranks the candidates. See docs/scan.md.
"""

import argparse
from pathlib import Path

from src.core.cli import run_cli
from src.core.errors import ConfigError
from src.engine.scan_model import open_scan_model, scan_with_model
from src.search.cadence import open_cadence, read_catalog
from src.search.scan import ENGINES, Execution, ScanSettings, check_device, scan_catalog


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cadence", nargs="+", type=Path, metavar="FILE", help="one cadence's files, in time order")
    source.add_argument("--catalog", type=Path, help="CSV with columns cadence,path: one row per file, grouped")
    parser.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per cadence)")
    parser.add_argument("--name", help="the cadence's folder name with --cadence (default: the target's source name)")
    parser.add_argument("--pattern", help="ON/OFF order, A = ON (e.g. ABACAD, ABABAB); default: from source names")
    parser.add_argument("--max-drift", type=float, default=4.0, help="largest |drift rate| searched, Hz/s (default 4)")
    parser.add_argument("--snr", type=float, default=10.0, help="hit SNR threshold (default 10)")
    parser.add_argument(
        "--filter-level",
        type=int,
        choices=(1, 2, 3),
        help="lowest event level in the candidate table (default 3; 1 with --checkpoints: the model ranks them all)",
    )
    parser.add_argument("--fine-per-coarse", type=int, help="fine channels per coarse channel (default: from the file)")
    parser.add_argument("--bandpass-bin", type=int, help="channels per bandpass bin (default: 1/1024 coarse channel)")
    parser.add_argument("--flag-sigma", type=float, help="zero channels whose time-mean exceeds this many sigmas")
    parser.add_argument("--keep-zero-drift", action="store_true", help="let zero-drift hits make events")
    parser.add_argument("--plot-top", type=int, default=10, help="candidates plotted per cadence (default 10)")
    parser.add_argument("--device", default="cpu", help="torch device for the search (cpu, cuda, cuda:1)")
    parser.add_argument("--engine", choices=ENGINES, default="local", help="run cadences here or as Ray tasks")
    parser.add_argument("--workers", type=int, default=1, help="cadences at a time with --engine local (default 1)")
    parser.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--cpus-per-task", type=float, default=1.0, help="Ray CPUs per cadence (default 1)")
    parser.add_argument("--gpus-per-task", type=float, default=0.0, help="Ray GPUs per cadence (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace cadence folders holding another scan")
    model = parser.add_argument_group("scoring with a model (trained on scan snippets, e.g. configs/scan_cpu.yaml)")
    model.add_argument("--checkpoints", nargs="+", type=Path, metavar="PATH", help="checkpoint files or run folders")
    model.add_argument(
        "--model-threshold", type=float, default=0.5, help="probability a candidate needs to be reviewed (default 0.5)"
    )
    model.add_argument("--model-batch-size", type=int, default=256, help="snippets per model batch (default 256)")
    model.add_argument(
        "--model-actors", type=int, default=1, help="Ray Data scoring actors with --engine ray (default 1)"
    )
    model.add_argument(
        "--windows",
        action="store_true",
        help="the model also scores every window of the ON bands where no hit is (its best line); those it passes "
        "are candidates of level 0. Thousands per coarse channel: meant for a GPU (docs/scan.md)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        settings = ScanSettings(
            max_drift=args.max_drift,
            snr=args.snr,
            filter_level=args.filter_level or (1 if args.checkpoints else 3),
            fine_per_coarse=args.fine_per_coarse,
            bandpass_bin=args.bandpass_bin,
            flag_sigma=args.flag_sigma,
            keep_zero_drift=args.keep_zero_drift,
            pattern=args.pattern,
            plot_top=args.plot_top,
            windows=args.windows,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if args.windows and not args.checkpoints:
        raise ConfigError("--windows: the windows are for a model to score; give --checkpoints")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: at least 1")
    if args.engine == "local":  # Ray tasks take their devices on the cluster
        check_device(args.device)
    if args.model_actors < 1:
        raise ConfigError(f"--model-actors {args.model_actors}: at least 1")
    model = open_scan_model(args.checkpoints, args.model_threshold, args.model_batch_size) if args.checkpoints else None
    if args.cadence:
        cadences = [open_cadence(args.cadence, args.pattern, args.name)]
    else:
        cadences = [open_cadence(files, args.pattern, name) for name, files in read_catalog(args.catalog)]
    run = Execution(
        device=args.device,
        engine=args.engine,
        workers=args.workers,
        address=args.address,
        cpus_per_task=args.cpus_per_task,
        gpus_per_task=args.gpus_per_task,
        overwrite=args.overwrite,
    )
    if model is None:
        scan_catalog(cadences, args.out, settings, run)
    else:
        scan_with_model(cadences, args.out, settings, model, run, args.model_actors)
    print(f"scanned {len(cadences)} cadence(s): {args.out / 'report.md'}")


if __name__ == "__main__":
    run_cli(main)
