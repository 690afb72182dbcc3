"""Shared fixtures for the unit tests: tiny configs, distinguishable cadences, small on-disk datasets.

Everything here is CPU-only, offline and small: timm's `test_*` models, a handful of cadences.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from src.core.cadence import CADENCE_SHAPE
from src.core.config import Config
from src.data.kaggle import SAMPLE_SUBMISSION, TRAIN_LABELS, cadence_path


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
