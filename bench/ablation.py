"""Technique ablation: train a base recipe with one technique switched at a time, score every run on the
held-out detection benchmark, and write a table.

    python -m src.synth --preset benchmark --out input/wide --n-train 4500 --n-test 10 --seed 77   # training data
    python -m src.synth --preset benchmark --out input/bench --n-test 2000 --seed 1001             # held-out set
    python bench/ablation.py --base configs/ablation_cpu.yaml --data-dir input/wide --bench-dir input/bench \
        --out bench/results/ablation-cpu

Writes <out>/ablation.md and ablation.json, <out>/benchmark/ (the full detection report of every run) and keeps
the runs in <out>/runs/ (git-ignored); run it again to continue an interrupted ablation. See README.md.
"""

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib.ablation import VARIANTS, AblationSettings, run_ablation
from src.core.cli import run_cli
from src.core.config import load_config
from src.data.kaggle import read_train_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("configs/ablation_cpu.yaml"), help="base recipe")
    parser.add_argument("--data-dir", type=Path, required=True, help="training data (Kaggle layout)")
    parser.add_argument(
        "--bench-dir", type=Path, required=True, help="held-out benchmark set (src.synth --preset benchmark)"
    )
    parser.add_argument("--out", type=Path, required=True, help="ablation folder")
    parser.add_argument(
        "--variants",
        default=",".join(v.name for v in VARIANTS),
        help="comma-separated subset (default: all): " + ", ".join(v.name for v in VARIANTS),
    )
    parser.add_argument("--main-flags", default="", help="extra main.py flags for every run, e.g. '--epochs 1'")
    args = parser.parse_args()
    names = tuple(args.variants.split(","))
    unknown = sorted(set(names) - {v.name for v in VARIANTS})
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}")
    extra = tuple(shlex.split(args.main_flags))
    settings = AblationSettings(
        base=args.base,
        data_dir=args.data_dir,
        bench_dir=args.bench_dir,
        out_dir=args.out,
        variants=names,
        extra_flags=extra,
    )
    cfg = load_config(args.base)
    n_train = len(read_train_labels(args.data_dir))
    budget = (
        f"`{args.base}` ({cfg.model_name}, view {cfg.view}, {cfg.epochs} epochs, fold(s) {list(cfg.train_folds)} of "
        f"{cfg.n_folds}: about {n_train * (cfg.n_folds - 1) // cfg.n_folds:,} training cadences of `{args.data_dir}`)"
        + (f" with `{args.main_flags}`" if args.main_flags else "")
        + ", on the CPU of this machine."
    )
    command = "python bench/ablation.py " + shlex.join(sys.argv[1:])
    run_ablation(settings, budget, command)
    print((args.out / "ablation.md").read_text())


if __name__ == "__main__":
    run_cli(main)
