"""Loader, training-step and inference throughput and evaluate.py's memory, side by side, into a report.

    python -m src.synth --preset benchmark --out input/wide --n-train 4500 --n-test 10 --seed 77   # once
    python bench/throughput.py --data-dir input/wide --out bench/results/throughput-cpu
    python bench/throughput.py --data-dir input/wide --out /tmp/tp --recipes configs/demo_cpu.yaml \
        --n-loader 256 --rss-sizes 100,400 --overwrite                                              # a quick look

Writes <out>/report.md and report.json. See README.md, "Throughput benchmark".
"""

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib.throughput import BenchSettings, run_benchmark
from src.core.cli import run_cli

SHIPPED_RECIPES = (
    "configs/demo_cpu.yaml",
    "configs/detection_cpu.yaml",
    "configs/nfnet_l0_1st.yaml",
    "configs/swin_tiny.yaml",
    "configs/effnet_b5_2nd.yaml",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="Kaggle-layout folder; its train split is read")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument(
        "--recipes",
        type=Path,
        nargs="+",
        default=[Path(r) for r in SHIPPED_RECIPES],
        help="recipes to measure (default: the four shipped ones)",
    )
    parser.add_argument("--n-loader", type=int, default=1024, help="cadences each loader delivers (default: 1024)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--workers", type=int, help="loader workers (default: as the pipeline chooses for this machine)"
    )
    parser.add_argument("--model-batch-size", type=int, default=8)
    parser.add_argument("--model-steps", type=int, default=3, help="timed steps per model (after one warm-up step)")
    parser.add_argument("--rss-sizes", default="1000,4000", help="cadence counts for evaluate.py's peak RSS")
    parser.add_argument(
        "--rss-recipe",
        type=Path,
        default=Path("configs/demo_cpu.yaml"),
        help="recipe whose (untrained) model evaluate.py runs for the memory figures",
    )
    parser.add_argument(
        "--feed-steps",
        type=int,
        default=20,
        help="on a GPU: timed training steps, loader-fed and in-memory (and the model timings' steps)",
    )
    parser.add_argument("--feed-on-cpu", action="store_true", help="run the loader-fed comparison without a GPU too")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    args = parser.parse_args()
    settings = BenchSettings(
        data_dir=args.data_dir,
        out_dir=args.out,
        recipes=tuple(args.recipes),
        n_loader=args.n_loader,
        batch_size=args.batch_size,
        workers=args.workers,
        model_batch_size=args.model_batch_size,
        model_steps=args.model_steps,
        rss_sizes=tuple(int(n) for n in args.rss_sizes.split(",")),
        feed_steps=args.feed_steps,
        feed_on_cpu=args.feed_on_cpu,
        rss_recipe=args.rss_recipe,
    )
    command = "python bench/throughput.py " + shlex.join(sys.argv[1:])
    run_benchmark(settings, command, overwrite=args.overwrite)
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    run_cli(main)
