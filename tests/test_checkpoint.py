"""Tests for src/engine/checkpoint.py: self-describing safetensors checkpoints, refusal of foreign or unsafe files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from src.core.config import Config
from src.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    checkpoint_name,
    find_checkpoints,
    load_weights,
    read_checkpoint_info,
    save_checkpoint,
)
from src.models.classifier import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMG = (32, 32)


def built(cfg: Config, seed: int):
    torch.manual_seed(seed)
    return build_model(cfg, load_pretrained=False).eval()


@pytest.fixture
def saved(tmp_path, make_cfg):
    """A gem/strided test_efficientnet checkpoint with a non-default config, plus the model that wrote it."""
    cfg = make_cfg(
        view="channels",
        pool="gem",
        first_conv_stride=(1, 2),
        image_size=IMG,
        normalize="observation",
        tta=("identity", "vflip"),
        run_name="unit",
        folds=(2,),
    )
    model = built(cfg, seed=0)
    with torch.no_grad():  # make the BN buffers non-default so they are checked too
        model.backbone.bn1.running_mean.uniform_(-1, 1)
        model.pool.p.fill_(2.5)
    path = tmp_path / checkpoint_name(2)
    save_checkpoint(path, model, cfg, fold=2, epoch=7, metrics={"valid_auc": 0.75, "valid_loss": 0.3})
    return path, model, cfg


def test_checkpoint_name():
    assert checkpoint_name(3) == "fold3.safetensors"


def test_round_trip(saved):
    path, model, cfg = saved
    info = read_checkpoint_info(path)
    assert info.path == path
    assert info.config == cfg
    assert (info.fold, info.epoch) == (2, 7)
    assert info.metrics == {"valid_auc": 0.75, "valid_loss": 0.3}
    # the evaluate flow: the embedded config alone rebuilds the model, then the weights go in
    restored = built(info.config, seed=1)
    x = torch.randn(3, 6, *IMG)
    with torch.no_grad():
        assert not torch.allclose(restored(x)["logits"], model(x)["logits"])  # different init: a real check
        load_weights(restored, path)
        assert torch.equal(restored(x)["logits"], model(x)["logits"])
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert float(restored.pool.p.detach()) == pytest.approx(2.5)


def test_no_temporary_file_left(saved):
    path, _, _ = saved
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_save_overwrites_atomically(saved):
    path, model, cfg = saved
    save_checkpoint(path, model, cfg, fold=2, epoch=9, metrics={"valid_auc": 0.8})
    assert read_checkpoint_info(path).epoch == 9
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_metadata_readable_by_safetensors_tools(saved):
    from safetensors import safe_open

    path, _, cfg = saved
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == CHECKPOINT_FORMAT
    assert meta["model_name"] == cfg.model_name and meta["view"] == "channels"
    assert json.loads(meta["image_size"]) == list(IMG)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"fold0\.safetensors"):
        read_checkpoint_info(tmp_path / "fold0.safetensors")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 10, b"\xff" * 8 + b"{}"])
def test_not_safetensors(tmp_path, content):
    path = tmp_path / "fold0.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"fold0\.safetensors"):
        read_checkpoint_info(path)


def test_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "fold0.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match=CHECKPOINT_FORMAT):
        read_checkpoint_info(path)
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "something-else"})
    with pytest.raises(CheckpointError):
        read_checkpoint_info(path)


@pytest.mark.parametrize(
    "metadata",
    [
        {"format": CHECKPOINT_FORMAT},  # no config
        {"format": CHECKPOINT_FORMAT, "config": "{not json", "fold": "0", "epoch": "1", "metrics": "{}"},
        {"format": CHECKPOINT_FORMAT, "config": json.dumps({"epochz": 1}), "fold": "0", "epoch": "1", "metrics": "{}"},
        {
            "format": CHECKPOINT_FORMAT,
            "config": json.dumps({"view": "bad"}),
            "fold": "0",
            "epoch": "1",
            "metrics": "{}",
        },
        {"format": CHECKPOINT_FORMAT, "config": "{}", "fold": "zero", "epoch": "1", "metrics": "{}"},
    ],
)
def test_damaged_metadata(tmp_path, metadata):
    path = tmp_path / "fold0.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=r"fold0\.safetensors"):
        read_checkpoint_info(path)


class _Trap:
    """Unpickling this object would write a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_torch_file_is_refused_without_unpickling(tmp_path, make_cfg):
    marker = tmp_path / "UNPICKLED"
    path = tmp_path / "fold0.safetensors"
    torch.save({"state_dict": {"w": torch.ones(2)}, "trap": _Trap(marker)}, path)
    with pytest.raises(CheckpointError):
        read_checkpoint_info(path)
    model = build_model(make_cfg(), load_pretrained=False)
    with pytest.raises(CheckpointError):
        load_weights(model, path)
    assert not marker.exists(), "the pickle was executed"


def test_weights_of_another_model_shape_clash(saved, make_cfg):
    path, _, _ = saved
    other = build_model(make_cfg(view="on", pool="gem", image_size=IMG), load_pretrained=False)  # 1-channel stem
    with pytest.raises(CheckpointError, match=path.name):
        load_weights(other, path)


def test_weights_for_another_image_size(tmp_path, make_cfg):
    cfg = make_cfg(model_name="test_vit", image_size=(32, 32))
    path = tmp_path / "fold0.safetensors"
    save_checkpoint(path, built(cfg, 0), cfg, 0, 1, {})
    bigger = built(make_cfg(model_name="test_vit", image_size=(64, 64)), 0)
    with pytest.raises(CheckpointError, match=r"fold0\.safetensors"):
        load_weights(bigger, path)


def test_weights_of_another_architecture_with_clashing_shapes(saved, make_cfg):
    path, _, _ = saved
    other = build_model(make_cfg(model_name="test_nfnet", view="channels", pool="gem"), load_pretrained=False)
    with pytest.raises(CheckpointError, match=path.name):
        load_weights(other, path)


@pytest.mark.parametrize(
    "written, loaded",
    [
        ({"pool": "avg"}, {"model_name": "test_nfnet", "pool": "avg"}),  # another architecture, no key in common
        ({"pool": "gem"}, {"pool": "avg"}),  # same backbone, other head: only key names differ
    ],
)
def test_weights_with_other_keys(tmp_path, make_cfg, written, loaded):
    cfg = make_cfg(**written)
    path = tmp_path / "fold0.safetensors"
    save_checkpoint(path, built(cfg, 0), cfg, 0, 1, {})
    model = build_model(make_cfg(**loaded), load_pretrained=False)
    with pytest.raises(CheckpointError, match=path.name):
        load_weights(model, path)


def touch_checkpoints(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        save_file({"w": torch.zeros(1)}, str(folder / name))


def test_find_checkpoints_numeric_order(tmp_path):
    names = ["fold10.safetensors", "fold2.safetensors", "fold0.safetensors", "fold1.safetensors"]
    touch_checkpoints(tmp_path / "run", names)
    (tmp_path / "run" / "config.yaml").write_text("x: 1\n")
    (tmp_path / "run" / "fold3.safetensors.tmp").write_bytes(b"half")
    found = find_checkpoints(tmp_path / "run")
    assert [p.name for p in found] == [
        "fold0.safetensors",
        "fold1.safetensors",
        "fold2.safetensors",
        "fold10.safetensors",
    ]
    assert all(p.parent == tmp_path / "run" for p in found)


def test_find_checkpoints_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty"):
        find_checkpoints(tmp_path / "empty")


def test_a_checkpoint_saved_before_the_data_geometry_fields_reads_as_kaggle_geometry():
    """tests/fixtures/run-1c281e3's checkpoint has no observation_shape, resolution or window in its config:
    read, they take the defaults, Kaggle's geometry."""
    from pathlib import Path

    from safetensors import safe_open

    from src.core.cadence import CADENCE_SHAPE, DF_HZ, DT_S

    path = Path(__file__).parent / "fixtures" / "run-1c281e3" / "fold0.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        saved = json.loads(handle.metadata()["config"])
    assert not {"observation_shape", "resolution", "window"} & set(saved)
    cfg = read_checkpoint_info(path).config
    assert cfg.observation_shape == CADENCE_SHAPE[1:] and cfg.cadence_shape == CADENCE_SHAPE
    assert cfg.resolution == (DF_HZ, DT_S) and cfg.window == "fixed" and cfg.view == "dedoppler"


def test_the_data_geometry_round_trips_through_a_checkpoint(tmp_path, make_cfg):
    cfg = make_cfg(view="channels", observation_shape=(16, 256), resolution=(22.35, 18.25), window="follows_drift")
    save_checkpoint(tmp_path / "fold0.safetensors", built(cfg, 0), cfg, 0, 1, {"valid_auc": 0.5})
    read = read_checkpoint_info(tmp_path / "fold0.safetensors").config
    assert read == cfg and read.cadence_shape == (6, 16, 256)
