"""The GPU check: every recipe's training steps in fp16 and bf16, channels_last and torch.compile, 2 epochs of the
detection recipe and the GPU throughput items, on one GPU in a few minutes, into one report.

    python bench/gpu_check.py --out bench/results/gpu-check                # on a GPU machine; data generated
    python bench/gpu_check.py --out /tmp/gpu-check --dry-run               # the same parts on the CPU, tiny

Data are generated under --work (seeded, as `make detection-report` and `make scan-model-report` make theirs)
unless --kaggle-data / --snippet-data name existing folders. Writes <out>/report.md and report.json after every
part; exits 1 if any check failed. See docs/throughput.md#the-gpu-check.
"""

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib.gpu_check import CheckSettings, problems, run_check
from src.core.cli import ErrorLineParser, run_cli
from src.core.errors import ConfigError, DataError

RECIPES = Path(__file__).resolve().parents[1] / "configs"


def main() -> None:
    parser = ErrorLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--work", type=Path, help="generated data and runs (default: <out>/work)")
    parser.add_argument("--dry-run", action="store_true", help="every part on this machine's CPU with tiny sizes")
    parser.add_argument("--recipes", type=Path, nargs="+", help="default: every configs/*.yaml")
    parser.add_argument("--kaggle-data", type=Path, help="Kaggle-layout cadences (default: generated)")
    parser.add_argument(
        "--snippet-data", type=Path, help="scan snippets, for recipes of their geometry (default: generated)"
    )
    parser.add_argument("--steps", type=int, help="timed training steps per recipe and precision (default: 5)")
    parser.add_argument("--compile-recipe", type=Path, help="default: configs/nfnet_l0_1st.yaml")
    parser.add_argument("--workers", type=int, help="data generation and loader workers (default: the usable CPUs)")
    parser.add_argument(
        "--part-timeout", type=float, help="seconds one part may run before it is stopped (default: 300)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    args = parser.parse_args()
    if (args.out / "report.md").exists() and not args.overwrite:
        raise ConfigError(
            f"{args.out / 'report.md'}: already exists; pass --overwrite to replace it or choose another --out"
        )
    for folder in (args.kaggle_data, args.snippet_data):
        if folder is not None and not (folder / "train_labels.csv").is_file():
            raise DataError(
                f"{folder}: no train_labels.csv; name a Kaggle-layout folder, or leave the flag out to generate one"
            )
    recipes = tuple(args.recipes or sorted(p.relative_to(RECIPES.parent) for p in RECIPES.glob("*.yaml")))
    given = {
        "kaggle_data": args.kaggle_data,
        "snippet_data": args.snippet_data,
        "steps": args.steps,
        "compile_recipe": args.compile_recipe,
        "workers": args.workers,
        "part_timeout_s": args.part_timeout,
    }
    given = {k: v for k, v in given.items() if v is not None}
    work = args.work or args.out / "work"
    make = CheckSettings.dry if args.dry_run else CheckSettings
    settings = make(out_dir=args.out, work_dir=work, recipes=recipes, **given)
    report = run_check(settings, "python bench/gpu_check.py " + shlex.join(sys.argv[1:]))
    print((args.out / "report.md").read_text())
    if problems(report):
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
