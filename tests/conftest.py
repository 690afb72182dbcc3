"""Shared fixtures for the unit tests: tiny configs, distinguishable cadences, small on-disk datasets.

Everything here is CPU-only, offline and small: timm's `test_*` models, a handful of cadences.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from src.core.cadence import CADENCE_SHAPE, ON_OBSERVATIONS
from src.core.config import Config
from src.data.kaggle import SAMPLE_SUBMISSION, TEST_LABELS, TRAIN_LABELS, cadence_path


@pytest.fixture
def one_torch_thread():
    """Tiny tensors on a 2-core machine: one intra-op thread is faster and steadier (restored afterwards).

    Used by this suite's modules through `pytestmark`, not autouse, so other test files keep their settings."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def make_cfg():
    """Config factory: the tiny timm test model, no external tracker, plus any overrides."""

    def factory(**overrides) -> Config:
        values = {"model_name": "test_efficientnet", "tracker": (), "num_workers": 0}
        values.update(overrides)
        return Config(**values)

    return factory


def distinct_cadence(seed: int = 0) -> np.ndarray:
    """A float16 (6, 273, 256) cadence whose six observations are told apart by content and by offset.

    Observation k is random noise plus 10*k, so every pixel identifies its observation and its place.
    """
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(CADENCE_SHAPE)
    offsets = 10.0 * np.arange(CADENCE_SHAPE[0])[:, None, None]
    return (noise + offsets).astype(np.float16)


@pytest.fixture
def cadence() -> np.ndarray:
    return distinct_cadence(0)


@pytest.fixture
def small_dataset(tmp_path):
    """A Kaggle-layout folder written by hand: 8 train cadences (4 positive), 3 test cadences."""
    data_dir = tmp_path / "data"
    # two all-digit ids with a leading zero (must stay strings), the rest spread over id[0] folders
    train_ids = ["000000000000123", "012345678901234"] + [f"{c}{i:014x}" for i, c in enumerate("9abcef")]
    test_ids = [f"{c}{i:014x}" for i, c in enumerate("5d0")]
    for split, ids in (("train", train_ids), ("test", test_ids)):
        for n, sample_id in enumerate(ids):
            path = cadence_path(data_dir, split, sample_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, distinct_cadence(100 + n + (50 if split == "test" else 0)))
    pd.DataFrame({"id": train_ids, "target": [1, 0] * 4}).to_csv(data_dir / TRAIN_LABELS, index=False)
    pd.DataFrame({"id": test_ids, "target": 0.5}).to_csv(data_dir / SAMPLE_SUBMISSION, index=False)
    return data_dir, train_ids, test_ids


def write_snippet_dataset(data_dir, n_train: int, n_test: int, shape=(16, 256), seed: int = 0):
    """A Kaggle-layout folder of (6, rows, channels) float16 snippets, as cut around scan candidates: noise, and in
    half of them (alternately) a bright line in the ON observations restarting near the middle channel of each
    (the windows follow the drift). Test truth in test_labels.csv. Returns (train ids, test ids)."""
    rng = np.random.default_rng(seed)
    rows, channels = shape
    written = {}
    for split, count in (("train", n_train), ("test", n_test)):
        ids = [f"{'0123456789abcdef'[n % 16]}{split[:2]}{n:012d}" for n in range(count)]
        targets = [n % 2 for n in range(count)]
        for sample_id, target in zip(ids, targets, strict=True):
            snippet = rng.standard_normal((6, rows, channels))
            if target:
                drift = rng.uniform(-1, 1)
                for observation in ON_OBSERVATIONS:
                    start = channels // 2 + rng.uniform(-2, 2)
                    channel = np.round(start + drift * np.arange(rows)).astype(int)
                    snippet[observation, np.arange(rows), channel] += 4.0
            path = cadence_path(data_dir, split, sample_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, snippet.astype(np.float16))
        written[split] = (ids, targets)
    (train_ids, train_targets), (test_ids, test_targets) = written["train"], written["test"]
    pd.DataFrame({"id": train_ids, "target": train_targets}).to_csv(data_dir / TRAIN_LABELS, index=False)
    pd.DataFrame({"id": test_ids, "target": 0.5}).to_csv(data_dir / SAMPLE_SUBMISSION, index=False)
    pd.DataFrame({"id": test_ids, "target": test_targets}).to_csv(data_dir / TEST_LABELS, index=False)
    return train_ids, test_ids


@pytest.fixture
def snippet_dataset(tmp_path):
    """A Kaggle-layout folder of 8 train and 3 test (6, 16, 256) snippets (see write_snippet_dataset)."""
    data_dir = tmp_path / "snippets"
    train_ids, test_ids = write_snippet_dataset(data_dir, 8, 3)
    return data_dir, train_ids, test_ids


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A tiny dataset made by the project's own generator (src.synth), shared by the whole session."""
    from src.synth.generator import SynthConfig, write_dataset

    out = tmp_path_factory.mktemp("synth") / "data"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = write_dataset(out, SynthConfig(seed=5, pos_frac=0.5), 10, 4, workers=1, progress=False)
    return out, meta


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory):
    """A 24-cadence held-out set from the benchmark preset (src.synth --preset benchmark), shared by the session."""
    from src.synth.__main__ import main as synth_main

    out = tmp_path_factory.mktemp("benchmark") / "bench"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synth_main(["--preset", "benchmark", "--out", str(out), "--n-test", "24", "--seed", "1001", "--workers", "1"])
    return out


# A scan model's checkpoint (scan.py --checkpoints) with random weights: for the plumbing, not the model's findings
SCAN_MODEL_GEOMETRY = {"observation_shape": [16, 64], "window": "follows_drift"}


def write_scan_checkpoint(path: Path, fold: int = 0, seed: int = 0, weights_of: dict | None = None, **fields) -> Path:
    """Checkpoint of a tiny resnet10t on 16 x 64 scan snippets (config `fields` override it); `weights_of`: the
    weights come from a model built with these other fields (weights that do not fit the config)."""
    from src.core.config import make_config
    from src.engine.checkpoint import save_checkpoint
    from src.models.classifier import build_model

    values = {"model_name": "resnet10t", "view": "channels", "first_conv_stride": [1, 2], "tracker": []}
    values |= {"tta": ["identity", "hflip"], **SCAN_MODEL_GEOMETRY, **fields}
    torch.manual_seed(seed)
    network = build_model(make_config({**values, **(weights_of or {})}), load_pretrained=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, network, make_config(values), fold, 1, {})
    return path


def accelerate_launch(n_processes: int = 2, *options: str) -> list[str]:
    """`accelerate launch --cpu` of `n_processes` on this machine, MPI-started from configs/localhost.hostfile (a
    plain `--cpu --num_processes 2` on one machine starts a single process), with `options` after it."""
    import sys

    accelerate = str(Path(sys.executable).parent / "accelerate")
    machine = ["--num_processes", str(n_processes), "--num_machines", "1"]
    return [accelerate, "launch", "--cpu", *machine, "--mpirun_hostfile", "configs/localhost.hostfile", *options]
