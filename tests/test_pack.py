"""The packed cache (src.data.packed): what it holds, how it resumes, how it fails, and that training and evaluation
read exactly the same values from it as from the file tree."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from src.core.cadence import view_observations
from src.core.errors import DataError
from src.data.datasets import CadenceDataset, PackedCadenceDataset, collate_batch, contiguous_runs, open_cadences
from src.data.kaggle import CadenceError, cadence_path, load_cadence
from src.data.packed import CACHE_META, open_packed, pack_split, partial_shard_name, shard_name

REPO = Path(__file__).resolve().parents[1]


def packed_dataset(cache: Path, split: str, ids, view: str, access: str = "read") -> PackedCadenceDataset:
    dataset, note = open_cadences("unused", split, ids, None, view, cache, access=access)
    assert isinstance(dataset, PackedCadenceDataset), note
    return dataset


def test_contiguous_runs():
    assert contiguous_runs([0, 1, 2, 4]) == [(0, 3), (4, 1)]
    assert contiguous_runs([0, 2, 4]) == [(0, 1), (2, 1), (4, 1)]
    assert contiguous_runs([]) == []


@pytest.mark.parametrize("access", ["read", "map"])
@pytest.mark.parametrize("pack_view, read_view", [("on", "on"), ("all", "on"), ("all", "all"), ("all", "channels")])
def test_cache_delivers_exactly_the_file_tree_values(small_dataset, tmp_path, pack_view, read_view, access):
    data_dir, train_ids, _ = small_dataset
    cache = tmp_path / "cache"
    folder = pack_split(data_dir, "train", cache, pack_view, shard_size=3, workers=2, progress=False)
    assert folder.name == f"train-{pack_view}"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [CACHE_META, "index.csv", shard_name(0), shard_name(1), shard_name(2)]
    )
    order = [5, 0, 7, 3, 3, 1]  # out of order, across shards, one id twice
    ids = [train_ids[i] for i in order]
    from_cache = packed_dataset(cache, "train", ids, read_view, access)
    assert from_cache.access == access
    from_files = CadenceDataset(data_dir, "train", ids, None, view_observations(read_view))
    batch = from_cache.__getitems__(list(range(len(ids))))
    assert torch.equal(batch["observations"], from_files.__getitems__(list(range(len(ids))))["observations"])
    expected = load_cadence(cadence_path(data_dir, "train", ids[2]))[list(view_observations(read_view))]
    np.testing.assert_array_equal(batch["observations"][2].numpy(), expected)


def test_mapped_cache_reads_in_loader_workers_and_after_pickling(small_dataset, tmp_path):
    """A loader worker (forked, or given a pickled copy) maps the shards itself and delivers the same batches."""
    data_dir, train_ids, _ = small_dataset
    pack_split(data_dir, "train", tmp_path / "cache", "all", shard_size=4, workers=1, progress=False)
    dataset = packed_dataset(tmp_path / "cache", "train", train_ids, "on", "map")
    expected = dataset.__getitems__(list(range(len(train_ids))))["observations"]
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._maps == [] and torch.equal(copy.__getitems__(list(range(len(train_ids))))["observations"], expected)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_batch)
    assert torch.equal(torch.cat([batch["observations"] for batch in loader]), expected)


def test_shard_maps_need_the_layout_open_packed_checked(small_dataset, tmp_path):
    data_dir, _, _ = small_dataset
    folder = pack_split(data_dir, "train", tmp_path / "cache", "on", shard_size=4, workers=1, progress=False)
    packed = open_packed(folder)
    fifth = load_cadence(cadence_path(data_dir, "train", packed.ids[4]))[list(view_observations("on"))]
    np.testing.assert_array_equal(packed.shard_map(1)[0], fifth)  # shard 1's first row
    with pytest.raises(ValueError, match="open_packed"):
        dataclasses.replace(packed, offsets=()).shard_map(0)


def test_packed_access_must_be_known(small_dataset, tmp_path):
    data_dir, train_ids, _ = small_dataset
    pack_split(data_dir, "train", tmp_path / "cache", "on", workers=1, progress=False)
    with pytest.raises(ValueError, match="access must be one of"):
        packed_dataset(tmp_path / "cache", "train", train_ids, "on", "mmap")


def test_on_cache_holds_half_the_bytes_of_the_files(small_dataset, tmp_path):
    data_dir, train_ids, _ = small_dataset
    folder = pack_split(data_dir, "train", tmp_path / "cache", "on", shard_size=8, workers=1, progress=False)
    file_bytes = sum(cadence_path(data_dir, "train", i).stat().st_size for i in train_ids)
    assert (folder / shard_name(0)).stat().st_size <= file_bytes / 2
    assert np.load(folder / shard_name(0), mmap_mode="r").shape == (8, 3, 273, 256)


def test_on_cache_does_not_serve_a_view_needing_off_observations(small_dataset, tmp_path):
    data_dir, train_ids, _ = small_dataset
    pack_split(data_dir, "train", tmp_path / "cache", "on", workers=1, progress=False)
    dataset, note = open_cadences(data_dir, "train", train_ids, None, "channels", tmp_path / "cache")
    assert type(dataset) is CadenceDataset and "reading the file tree" in note and "no train cache" in note


def test_cache_lacking_ids_falls_back_to_the_file_tree(small_dataset, tmp_path):
    data_dir, train_ids, test_ids = small_dataset
    pack_split(data_dir, "train", tmp_path / "cache", "on", workers=1, progress=False)
    dataset, note = open_cadences(data_dir, "train", [*train_ids, "fffffffffffffff"], None, "on", tmp_path / "cache")
    assert type(dataset) is CadenceDataset and "lacks 1 of the 9 ids" in note
    dataset, note = open_cadences(data_dir, "test", test_ids, None, "on", tmp_path / "cache")
    assert type(dataset) is CadenceDataset and "no test cache" in note


def test_interrupted_pack_continues_and_keeps_finished_shards(small_dataset, tmp_path):
    data_dir, train_ids, _ = small_dataset
    bad = cadence_path(data_dir, "train", train_ids[4])  # row 4: shard 1 of shard size 3
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:1000])
    with pytest.raises(CadenceError, match=f"{bad}: not a readable .npy"):
        pack_split(data_dir, "train", tmp_path / "cache", "on", shard_size=3, workers=1, progress=False)
    folder = tmp_path / "cache" / "train-on"
    assert not json.loads((folder / CACHE_META).read_text())["complete"]
    with pytest.raises(DataError, match="packing was interrupted"):
        open_packed(folder)
    first = (folder / shard_name(0)).stat()
    assert (folder / partial_shard_name(1)).is_file() and not (folder / shard_name(1)).exists()

    bad.write_bytes(good_bytes)
    pack_split(data_dir, "train", tmp_path / "cache", "on", shard_size=3, workers=1, progress=False)
    assert (folder / shard_name(0)).stat().st_mtime_ns == first.st_mtime_ns  # not packed again
    assert not list(folder.glob(".*.tmp"))
    fresh = pack_split(data_dir, "train", tmp_path / "fresh", "on", shard_size=3, workers=1, progress=False)
    for shard in range(3):
        assert (folder / shard_name(shard)).read_bytes() == (fresh / shard_name(shard)).read_bytes()


def test_pack_refuses_a_cache_of_other_cadences_without_overwrite(small_dataset, tmp_path):
    data_dir, train_ids, _ = small_dataset
    pack_split(data_dir, "train", tmp_path / "cache", "on", workers=1, progress=False)
    labels = pd.read_csv(data_dir / "train_labels.csv", dtype={"id": str}).iloc[:5]
    labels.to_csv(data_dir / "train_labels.csv", index=False)
    with pytest.raises(DataError, match="other cadences or settings; pass --overwrite"):
        pack_split(data_dir, "train", tmp_path / "cache", "on", workers=1, progress=False)
    folder = pack_split(data_dir, "train", tmp_path / "cache", "on", workers=1, overwrite=True, progress=False)
    assert open_packed(folder).ids == tuple(train_ids[:5])


def test_damaged_cache_is_named(small_dataset, tmp_path):
    data_dir, _, _ = small_dataset
    folder = pack_split(data_dir, "train", tmp_path / "cache", "on", shard_size=4, workers=1, progress=False)
    shard = folder / shard_name(1)
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match=f"{shard}: .*; repack"):
        open_packed(folder)
    (folder / CACHE_META).write_text("{}")
    with pytest.raises(DataError, match="not a cache written by"):
        open_packed(folder)


def test_pack_rejects_values_beyond_float16(small_dataset, tmp_path):
    data_dir, train_ids, _ = small_dataset
    path = cadence_path(data_dir, "train", train_ids[1])
    wide = load_cadence(path).astype(np.float32)
    wide[0, 0, 0] = 1e9
    np.save(path, wide)
    with pytest.raises(CadenceError, match=f"{path}: values beyond float16's range"):
        pack_split(data_dir, "train", tmp_path / "cache", "on", workers=1, progress=False)


def test_cache_of_another_observation_shape(snippet_dataset, tmp_path):
    """Snippets of (6, 16, 256) pack with --observation-shape 16 256: the cache records the sample shape, serves a
    run of that shape, and is not used (a fallback with the reason) for a run asking for another shape."""
    data_dir, train_ids, _ = snippet_dataset
    cache = tmp_path / "cache"
    with pytest.raises(CadenceError, match=r"expected \(6, 273, 256\)"):  # Kaggle's shape by default
        pack_split(data_dir, "train", cache, "all", workers=1, progress=False)
    flags = f"--view all --split train --observation-shape 16 256 --workers 1 --overwrite --out {cache}".split()
    run([sys.executable, "-m", "src.pack", "--data-dir", str(data_dir), *flags])
    folder = cache / "train-all"
    assert json.loads((folder / CACHE_META).read_text())["sample_shape"] == [6, 16, 256]
    assert open_packed(folder).observation_shape == (16, 256)
    dataset, note = open_cadences(data_dir, "train", train_ids, None, "channels", cache, observation_shape=(16, 256))
    assert isinstance(dataset, PackedCadenceDataset), note
    from_files = CadenceDataset(data_dir, "train", train_ids, None, view_observations("channels"), (16, 256))
    everything = list(range(len(train_ids)))
    assert torch.equal(
        dataset.__getitems__(everything)["observations"], from_files.__getitems__(everything)["observations"]
    )
    dataset, note = open_cadences(data_dir, "train", train_ids, None, "on", cache, observation_shape=(16, 128))
    assert type(dataset) is CadenceDataset and "16 rows x 256 channels" in note and "--observation-shape 16 128" in note
    dataset, note = open_cadences(data_dir, "train", train_ids, None, "on", cache)  # Kaggle's shape by default
    assert type(dataset) is CadenceDataset and "the run's observation_shape is 273 x 256" in note
    with pytest.raises(DataError, match="16 rows x 256 channels, expected 273 x 256"):
        PackedCadenceDataset(open_packed(folder), train_ids, None, view_observations("on"))
    with pytest.raises(DataError, match="--observation-shape: must be"):
        pack_split(data_dir, "train", cache, "all", workers=1, progress=False, observation_shape=(16, 4))


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "WANDB_MODE": "disabled",
    }
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_training_and_evaluation_from_the_cache_equal_the_file_tree(synth_dir, tmp_path):
    """Through the entry points: pack, then the same run with and without --cache-dir gives the same bytes."""
    data_dir, _ = synth_dir
    cache = tmp_path / "cache"
    run(
        [
            sys.executable,
            "-m",
            "src.pack",
            "--data-dir",
            str(data_dir),
            "--out",
            str(cache),
            "--view",
            "all",
            "--workers",
            "2",
        ]
    )
    training = [
        "--model-name",
        "test_efficientnet",
        "--view",
        "channels",
        "--image-size",
        "32,64",
        "--epochs",
        "1",
        "--n-folds",
        "2",
        "--batch-size",
        "4",
        "--num-workers",
        "1",
        "--tracker",
        "none",
        "--mix",
        "mixup",
        "--mix-prob",
        "1",
        "--sampler-strength",
        "1",
        "--out-dir",
        str(tmp_path / "runs"),
        "--data-dir",
        str(data_dir),
    ]
    run([sys.executable, "main.py", *training, "--run-name", "files"])
    packed = run([sys.executable, "main.py", *training, "--run-name", "packed", "--cache-dir", str(cache)])
    assert f"reading the packed cache {cache / 'train-all'}" in packed.stdout
    files_run, packed_run = tmp_path / "runs" / "files", tmp_path / "runs" / "packed"
    assert (files_run / "oof.csv").read_bytes() == (packed_run / "oof.csv").read_bytes()
    for fold in (0, 1):
        weights = load_file(files_run / f"fold{fold}.safetensors")
        packed_weights = load_file(packed_run / f"fold{fold}.safetensors")
        assert all(torch.equal(weights[k], packed_weights[k]) for k in weights)
    for name, extra in (("files", []), ("packed", ["--cache-dir", str(cache)])):
        run(
            [sys.executable, "evaluate.py", "--run-dir", str(files_run), "--out", str(tmp_path / f"{name}.csv"), *extra]
        )
    assert (tmp_path / "files.csv").read_bytes() == (tmp_path / "packed.csv").read_bytes()
