"""Train K folds of a timm backbone on cadences in the Kaggle layout.

    accelerate launch main.py --config configs/swin_tiny.yaml --data-dir input
    accelerate launch --multi_gpu --num_processes 4 main.py --config configs/nfnet_l0_1st.yaml \
        --data-dir /kaggle/input/seti-breakthrough-listen --pretrained /kaggle/input/timm-weights/eca_nfnet_l0
    python main.py --config configs/demo_cpu.yaml --epochs 1 --tracker none     # single process

Every field of src/config.py's Config is a flag (--epochs, --model-name, --image-size 256,256, ...).
"""
import argparse
from pathlib import Path

from src.cli import run_cli
from src.config import add_config_arguments, config_from_args
from src.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    args = parser.parse_args()
    cfg = config_from_args(args)
    train(cfg, recipe_name=Path(args.config).stem if args.config else "run")


if __name__ == "__main__":
    run_cli(main)
