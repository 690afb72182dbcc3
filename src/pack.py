"""Pack a Kaggle-layout data folder into the cache training and evaluation read fastest (src/data/packed.py).

    python -m src.pack --data-dir input --out input/packed --view on     # train and test, ON observations only
    python -m src.pack --data-dir /kaggle/input/seti-breakthrough-listen --out /kaggle/working/packed \\
        --split test --view all --workers 4
    python -m src.pack --data-dir input/snippets --out input/snippets/packed --view all --observation-shape 16 256
"""

import argparse
from collections.abc import Sequence

from src.core.cli import add_observation_shape_argument, run_cli
from src.core.errors import StorageError, out_of_space
from src.data import packed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m src.pack",
        description=f"{__doc__}\n{packed.__doc__}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", required=True, help="Kaggle-layout folder (train_labels.csv, train/, test/, ...)")
    parser.add_argument("--out", required=True, help="cache root; each split goes to <out>/<split>-<on|all>/")
    parser.add_argument("--split", choices=(*packed.SPLIT_TABLES, "both"), default="both")
    parser.add_argument(
        "--view",
        choices=("on", "all"),
        default="on",
        help="on: observations 0,2,4 (what view=on reads: half the bytes); all: all six (any view)",
    )
    add_observation_shape_argument(parser, "a file of another shape stops the pack")
    parser.add_argument("--shard-size", type=int, default=1024, help="cadences per shard file (default: 1024)")
    parser.add_argument("--workers", type=int, help="worker processes (default: the CPUs this process may use)")
    parser.add_argument("--overwrite", action="store_true", help="replace a cache of other cadences or settings")
    args = parser.parse_args(argv)
    splits = tuple(packed.SPLIT_TABLES) if args.split == "both" else (args.split,)
    for split in splits:
        try:
            folder = packed.pack_split(
                args.data_dir,
                split,
                args.out,
                args.view,
                args.shard_size,
                args.workers,
                args.overwrite,
                observation_shape=tuple(args.observation_shape),
            )
        except OSError as err:
            if not out_of_space(err):
                raise
            raise StorageError(
                f"{args.out}: no space left on the device while packing {split}; the shards already written are "
                "kept: free space, then run the same command again to continue"
            ) from None
        print(f"packed {split}: {folder}")


if __name__ == "__main__":
    run_cli(main)
