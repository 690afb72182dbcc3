"""A second, evaluation-only held-out set, made with setigen's public API and nothing from src/.

    python bench/second_generator.py --out input/second --n 2000 --seed 2024 [--workers 2]
    python bench/detection.py --runs outputs/<run> --data-dir input/second --out bench/results/detection-second

Writes the Kaggle layout's test split (test/<id[0]>/<id>.npy, float16 (6, 273, 256)), test_labels.csv,
sample_submission.csv and metadata.csv; refuses to write where a set already is. Its choices (noise, SNR,
widths, drifts, path shapes, partial needles, interference shapes and the mix) are its own, listed in
bench/lib/second_generator.py and docs/detection.md (The second generator). Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find bench/

from bench.lib.second_generator import POS_FRAC, SecondConfig, default_workers, write_set


class OneLineParser(argparse.ArgumentParser):
    """A bad flag ends in one `error:` line and exit 2, as in every other command (argparse prints its usage
    first); its own, since this generator takes nothing from src/."""

    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (must hold no set yet)")
    parser.add_argument("--n", type=int, default=2000, help="number of cadences (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=2024, help="master seed (default: %(default)s)")
    parser.add_argument("--pos-frac", type=float, default=POS_FRAC, help="share of positives (default: %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="processes; the output does not depend on it"
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = SecondConfig(seed=args.seed, n=args.n, pos_frac=args.pos_frac)
        meta, seconds = write_set(args.out, cfg, workers=args.workers)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {len(meta)} cadences ({int(meta.target.sum())} positives) to {args.out} in {seconds:.1f} s "
        f"({len(meta) / seconds:.1f} cadences/s, {args.workers} worker(s))",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
