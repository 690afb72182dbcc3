"""Run under `accelerate launch --num_processes 2`: predict_logits over datasets whose sizes do not divide
evenly by batch size x processes, and write what came back (see tests/test_guards.py).

Each sample's image holds its own index, and the model returns that value, so a duplicated, missing or shifted
prediction shows up as a wrong value, not only as a wrong count."""

import json
import sys

import torch
from accelerate import Accelerator
from torch.utils.data import Dataset

from src.core.config import Config
from src.data.datasets import make_eval_loader
from src.engine.inference import ordered_by_index, predict_logits


class IndexImages(Dataset):
    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        observations = torch.full((1, 4, 4), float(index), dtype=torch.float16)
        return {"observations": observations, "target": torch.tensor(-1.0), "index": torch.tensor(index)}


class ReadIndex(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": images.flatten(1).mean(1)}


def main(out_path: str) -> None:
    accelerator = Accelerator(cpu=True)
    model = ReadIndex()
    cfg = Config(view="channels", normalize="none", tracker=())  # the loader's values reach the model unchanged
    results = []
    for size in (1, 2, 3, 5, 7, 13, 33):
        for batch_size in (1, 4, 6):
            loader = accelerator.prepare(make_eval_loader(IndexImages(size), batch_size, num_workers=0))
            logits, index = predict_logits(model, loader, accelerator, cfg, tta=("identity", "hflip"))
            ordered = ordered_by_index(logits, index, size, f"size {size}")
            results.append(
                {"size": size, "batch_size": batch_size, "n_returned": len(index), "values": ordered.tolist()}
            )
            accelerator.free_memory()
    if accelerator.is_main_process:
        with open(out_path, "w") as handle:
            json.dump({"num_processes": accelerator.num_processes, "results": results}, handle)


if __name__ == "__main__":
    main(sys.argv[1])
