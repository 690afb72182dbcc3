"""Train K folds of a timm backbone on cadences in the Kaggle layout.

    accelerate launch main.py --config configs/swin_tiny.yaml --data-dir input
    accelerate launch --multi_gpu --num_processes 4 main.py --config configs/nfnet_l0_1st.yaml \
        --data-dir /kaggle/input/seti-breakthrough-listen --pretrained /kaggle/input/timm-weights/eca_nfnet_l0
    python main.py --config configs/demo_cpu.yaml --epochs 1 --tracker none     # single process
    accelerate launch main.py --resume outputs/<run>       # continue a killed run from its last saved state

Every field of src/core/config.py's Config is a flag (--epochs, --model-name, --image-size 256,256, ...).
"""

import argparse
import dataclasses
from pathlib import Path

from src.core.cli import run_cli
from src.core.config import Config, add_config_arguments, config_from_args
from src.engine.train import RESUME_OVERRIDES, resume_config, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run = parser.add_mutually_exclusive_group()
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help=f"continue a run folder with its saved config (may change: {', '.join(RESUME_OVERRIDES)})",
    )
    run.add_argument("--overwrite", action="store_true", help="replace an existing run folder of the same name")
    add_config_arguments(parser)
    args = parser.parse_args()
    if args.resume:
        if args.config:
            parser.error("--resume uses the run's saved config.yaml; drop --config")
        fields = {f.name for f in dataclasses.fields(Config)}
        train(resume_config(args.resume, {k: v for k, v in vars(args).items() if k in fields}), resume=True)
    else:
        cfg = config_from_args(args)
        train(cfg, recipe_name=Path(args.config).stem if args.config else "run", overwrite=args.overwrite)


if __name__ == "__main__":
    run_cli(main)
