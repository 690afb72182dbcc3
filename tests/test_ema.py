"""EMA weights (ema_decay > 0): they are what is validated and saved, and they leave training itself unchanged."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from src.core.config import ConfigError
from src.engine.checkpoint import checkpoint_name, read_checkpoint_info
from src.engine.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(make_cfg, data_dir, out_dir, name, ema_decay):
    cfg = make_cfg(
        data_dir=str(data_dir),
        out_dir=str(out_dir),
        run_name=name,
        view="channels",
        image_size=(32, 64),
        epochs=2,
        n_folds=2,
        folds=(0,),
        batch_size=2,
        lr=1e-2,
        ema_decay=ema_decay,
    )
    train(cfg)
    return out_dir / name


def test_ema_weights_are_validated_and_saved_without_changing_training(make_cfg, small_dataset, tmp_path):
    data_dir, _, _ = small_dataset
    plain, averaged = (run(make_cfg, data_dir, tmp_path, name, decay) for name, decay in (("plain", 0.0), ("ema", 0.9)))
    log_plain, log_ema = (pd.read_csv(d / "metrics.csv") for d in (plain, averaged))
    pd.testing.assert_series_equal(log_plain["train_loss"], log_ema["train_loss"])  # the same training
    assert not log_plain["valid_loss"].equals(log_ema["valid_loss"])  # another model validated
    weights_plain, weights_ema = (load_file(d / checkpoint_name(0)) for d in (plain, averaged))
    assert weights_plain.keys() == weights_ema.keys()
    assert not all(torch.equal(weights_plain[k], weights_ema[k]) for k in weights_plain)
    assert read_checkpoint_info(averaged / checkpoint_name(0)).config.ema_decay == 0.9


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_ema_decay_out_of_range(make_cfg, decay):
    with pytest.raises(ConfigError, match="ema_decay"):
        make_cfg(ema_decay=decay)
