"""Write a synthetic dataset in the Kaggle layout (src/synth/generator.py).

python -m src.synth --out input/synth --n-train 2000 --n-test 500 --seed 0
python -m src.synth --preset benchmark --out input/bench --n-test 2000 --seed 1001
"""

import argparse
import os
import sys

from src.core.cli import ErrorLineParser, run_cli
from src.core.errors import ConfigError, incomplete_set_at
from src.synth import generator
from src.synth.generator import SHAPES, SNR_DISTRIBUTIONS, SynthConfig, write_dataset

# Named settings for datasets with a purpose; explicit flags override them.
# benchmark: a held-out set for bench/detection.py, wider than the training
# defaults (SNR log-uniform 4-60, a third of cadences with all-six
# interference drawn as widely as needles, some OFF-only signals, every path
# shape, 30% of the needles in only part of the cadence), test split only.
PRESETS = {
    "benchmark": {
        "n_train": 0,
        "pos_frac": 0.3,
        "snr_min": 4.0,
        "snr_max": 60.0,
        "snr_dist": "log-uniform",
        "shapes": SHAPES,
        "rfi_frac": 1 / 3,
        "off_frac": 0.15,
        "pos_rfi_frac": 1 / 3,
        "partial_share": 0.3,
        "wide_rfi": True,
    },
}
CONFIG_FLAGS = (
    "seed",
    "pos_frac",
    "snr_min",
    "snr_max",
    "snr_dist",
    "shapes",
    "rfi_frac",
    "off_frac",
    "pos_rfi_frac",
    "partial_share",
    "wide_rfi",
)
SWITCHES = {"on": True, "off": False}


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface mirroring SynthConfig (flags left unset take the preset's or the default)."""
    d = SynthConfig()
    ap = ErrorLineParser(
        prog="python -m src.synth",
        description=f"{__doc__}\n{generator.__doc__}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", required=True, help="output folder (must hold no dataset yet)")
    ap.add_argument("--preset", choices=sorted(PRESETS), help=f"named settings: benchmark = {PRESETS['benchmark']}")
    ap.add_argument("--n-train", type=int, help="number of train cadences (required without a preset)")
    ap.add_argument("--n-test", type=int, required=True, help="number of test cadences")
    ap.add_argument("--seed", type=int, help=f"master seed (default {d.seed})")
    ap.add_argument(
        "--pos-frac", type=float, help=f"fraction of positives per split (default {d.pos_frac}, like Kaggle)"
    )
    ap.add_argument("--snr-min", type=float, help=f"lowest setigen SNR (default {d.snr_min})")
    ap.add_argument("--snr-max", type=float, help=f"highest setigen SNR (default {d.snr_max})")
    ap.add_argument(
        "--snr-dist", choices=SNR_DISTRIBUTIONS, help=f"how SNR is drawn in [snr-min, snr-max] (default {d.snr_dist})"
    )
    ap.add_argument(
        "--shapes",
        type=lambda v: tuple(s.strip() for s in v.split(",") if s.strip()),
        help=f"comma list of needle path shapes from {','.join(SHAPES)} (default all)",
    )
    ap.add_argument(
        "--rfi-frac",
        type=float,
        help=f"fraction of negatives with interference in all six observations (default {d.rfi_frac})",
    )
    ap.add_argument(
        "--off-frac",
        type=float,
        help=f"fraction of negatives with a signal only in the OFF observations (default {d.off_frac})",
    )
    ap.add_argument(
        "--pos-rfi-frac",
        type=float,
        help=f"fraction of positives also holding all-six interference (default {d.pos_rfi_frac})",
    )
    ap.add_argument(
        "--partial-share",
        type=float,
        help=(
            "share of needles present in only part of the cadence: leaving the window, switched on late or off "
            f"early, or in one or two ON observations (default {d.partial_share}; benchmark preset 0.3)"
        ),
    )
    ap.add_argument(
        "--wide-rfi",
        choices=sorted(SWITCHES),
        help=(
            "on: all-six interference drawn as widely as needles (every shape with a needle's drift, wide, "
            "fading in some OFF observations) (default off; benchmark preset on)"
        ),
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count(),
        help="worker processes; output does not depend on it (default: CPU count)",
    )
    return ap


def resolve(args: argparse.Namespace) -> tuple[SynthConfig, int]:
    """Config and train size from defaults <- preset <- explicit flags."""
    preset = dict(PRESETS[args.preset]) if args.preset else {}
    n_train = args.n_train if args.n_train is not None else preset.pop("n_train", None)
    preset.pop("n_train", None)
    if n_train is None:
        raise ValueError("--n-train is required without --preset")
    given = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k) is not None}
    if "wide_rfi" in given:
        given["wide_rfi"] = SWITCHES[given["wide_rfi"]]
    return SynthConfig(**{**preset, **given}), n_train


def main(argv=None) -> None:
    """Parse flags, build the config and write the dataset."""
    a = build_parser().parse_args(argv)
    try:
        cfg, n_train = resolve(a)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        with incomplete_set_at(a.out, again="remove it and make it again"):
            meta = write_dataset(a.out, cfg, n_train, a.n_test, workers=a.workers)
    except ValueError as e:  # the generator's own checks of its settings
        raise ConfigError(str(e)) from None
    print(f"wrote {len(meta)} cadences ({int(meta.target.sum())} positives) to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
