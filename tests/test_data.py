"""Tests for src/data/kaggle.py, src/data/datasets.py and src/transforms/images.py: the Kaggle layout, input checks,
views, normalisation, resizing, folds."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import distinct_cadence

import src.transforms.images as images_module
from src.core.cadence import CADENCE_SHAPE, ON_OBSERVATIONS, view_observations
from src.core.errors import DataError
from src.data.datasets import CadenceDataset, loader_options, loader_workers
from src.data.kaggle import (
    TRAIN_LABELS,
    CadenceError,
    cadence_path,
    load_cadence,
    make_folds,
    read_id_table,
    read_sample_submission,
    read_test_labels,
    read_train_labels,
)
from src.search.dedoppler import cadence_planes
from src.transforms.images import (
    arrange,
    cadence_to_image,
    image_shape,
    normalize,
    observations_to_images,
    resize,
    view_channels,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T = CADENCE_SHAPE[1]  # 273 time rows per observation


# ---------------------------------------------------------------- id tables ---


def write_csv(path, text):
    path.write_text(text)
    return path


def test_read_id_table_all_digit_ids_stay_strings(tmp_path):
    path = write_csv(tmp_path / "labels.csv", "id,target\n000000000000123,1\n012345678901234,0\n")
    assert read_id_table(path)["id"].tolist() == ["000000000000123", "012345678901234"]


def test_read_id_table_keeps_ids_as_strings(tmp_path):
    path = write_csv(tmp_path / "labels.csv", "id,target,extra\n000000000000123,1,x\n0abc,0,y\n")
    table = read_id_table(path)
    assert list(table.columns) == ["id", "target"]
    assert table["id"].tolist() == ["000000000000123", "0abc"]  # leading zeros kept
    assert table["target"].tolist() == [1, 0]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("nocol.csv", "id,label\na,1\nb,0\n", "target"),
        ("noid.csv", "name,target\na,1\n", "id"),
        ("norows.csv", "id,target\n", "no rows"),
        ("empty.csv", "", "CSV"),
        ("dups.csv", "id,target\na,1\nb,0\na,0\n", "duplicate"),
        ("two.csv", "id,target\na,1\nb,2\n", "0 or 1"),
        ("half.csv", "id,target\na,0.5\nb,0\n", "0 or 1"),
        ("blank.csv", "id,target\na,\nb,0\n", "0 or 1"),
    ],
)
def test_read_id_table_errors_name_the_file(tmp_path, name, text, message):
    path = write_csv(tmp_path / name, text)
    with pytest.raises(DataError) as err:
        read_id_table(path)
    assert name in str(err.value)
    assert message in str(err.value)


def test_read_id_table_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.csv"):
        read_id_table(tmp_path / "nothere.csv")


def test_sample_submission_target_need_not_be_binary(tmp_path):
    write_csv(tmp_path / "sample_submission.csv", "id,target\na,0.5\nb,0.25\n")
    assert read_sample_submission(tmp_path)["target"].tolist() == [0.5, 0.25]
    with pytest.raises(DataError):  # ...but labels must be
        read_id_table(tmp_path / "sample_submission.csv")


def test_read_train_labels(small_dataset):
    data_dir, train_ids, _ = small_dataset
    labels = read_train_labels(data_dir)
    assert labels["id"].tolist() == train_ids
    assert labels["target"].tolist() == [1, 0] * 4
    assert labels["target"].dtype.kind == "i"


def test_read_train_labels_missing_dir(tmp_path):
    with pytest.raises(DataError, match="nodata"):
        read_train_labels(tmp_path / "nodata")


def test_read_train_labels_missing_file(tmp_path):
    with pytest.raises(DataError, match=TRAIN_LABELS):
        read_train_labels(tmp_path)


def test_read_test_labels_absent_is_none(small_dataset):
    data_dir, _, _ = small_dataset
    assert read_test_labels(data_dir) is None


def test_synthetic_dataset_reads_back(synth_dir):
    out, meta = synth_dir
    labels = read_train_labels(out)
    truth = read_test_labels(out)
    submission = read_sample_submission(out)
    train_meta, test_meta = meta[meta.split == "train"], meta[meta.split == "test"]
    assert labels["id"].tolist() == train_meta["id"].tolist()
    assert labels["target"].tolist() == train_meta["target"].tolist()
    assert truth is not None and truth["id"].tolist() == submission["id"].tolist() == test_meta["id"].tolist()
    for sample_id in submission["id"]:
        assert load_cadence(cadence_path(out, "test", sample_id)).shape == CADENCE_SHAPE


# ---------------------------------------------------------------- cadences ---


def test_cadence_path_layout(tmp_path):
    assert cadence_path(tmp_path, "train", "abc123") == tmp_path / "train" / "a" / "abc123.npy"
    assert cadence_path(str(tmp_path), "test", "0ff") == tmp_path / "test" / "0" / "0ff.npy"


def test_load_cadence_round_trip(tmp_path, cadence):
    path = tmp_path / "c.npy"
    np.save(path, cadence)
    loaded = load_cadence(path)
    assert loaded.dtype == np.float16 and loaded.shape == CADENCE_SHAPE
    np.testing.assert_array_equal(loaded, cadence)


def test_load_cadence_missing(tmp_path):
    with pytest.raises(DataError, match=r"gone\.npy"):
        load_cadence(tmp_path / "gone.npy")


@pytest.mark.parametrize("shape", [(3, 273, 256), (6, 256, 273), (6 * 273 * 256,), (1, 6, 273, 256)])
def test_load_cadence_wrong_shape(tmp_path, shape):
    path = tmp_path / "shape.npy"
    np.save(path, np.zeros(shape, np.float16))
    with pytest.raises(DataError) as err:
        load_cadence(path)
    assert "shape.npy" in str(err.value) and str(shape) in str(err.value)


def test_load_cadence_of_another_observation_shape(tmp_path):
    """Snippets of 16 rows x 256 channels per observation load with that shape, and only with it."""
    path = tmp_path / "snippet.npy"
    snippet = np.random.default_rng(0).standard_normal((6, 16, 256)).astype(np.float16)
    np.save(path, snippet)
    np.testing.assert_array_equal(load_cadence(path, (16, 256)), snippet)
    np.testing.assert_array_equal(load_cadence(path, (6, 16, 256)), snippet)
    with pytest.raises(CadenceError, match=r"shape \(6, 16, 256\), expected \(6, 273, 256\)") as err:
        load_cadence(path)
    assert err.value.kind == "shape"
    with pytest.raises(CadenceError, match=r"shape \(6, 16, 256\), expected \(6, 16, 128\)"):
        load_cadence(path, (16, 128))


def test_datasets_and_images_take_the_observation_shape(tmp_path):
    """A Kaggle-layout folder of (6, 16, 256) snippets: the dataset reads them whole with the shape given (and
    refuses them with Kaggle's), and every view's images have the shape image_shape says."""
    ids = ["a0", "b1", "c2"]
    snippets = np.random.default_rng(1).standard_normal((3, 6, 16, 256)).astype(np.float16)
    for sample_id, snippet in zip(ids, snippets, strict=True):
        cadence_path(tmp_path, "train", sample_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(cadence_path(tmp_path, "train", sample_id), snippet)
    channels = view_observations("channels")
    batch = CadenceDataset(tmp_path, "train", ids, None, channels, (16, 256)).__getitems__([2, 0])
    np.testing.assert_array_equal(batch["observations"].numpy(), snippets[[2, 0]])
    with pytest.raises(CadenceError, match="expected"):
        CadenceDataset(tmp_path, "train", ids, None, channels).__getitems__([0])
    for view, size in (("on", None), ("all", None), ("channels", None), ("channels", (32, 64)), ("dedoppler", None)):
        loaded = torch.from_numpy(snippets[:, list(view_observations(view))])
        images = observations_to_images(loaded, view, "observation", size)
        assert images.shape == (3, *image_shape(view, size, (16, 256)))
    assert image_shape("on", None, (16, 256)) == (1, 48, 256) and image_shape("channels", None, (16, 64)) == (6, 16, 64)


def _corrupt(path, cadence, how):
    np.save(path, cadence)
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "header_only":
        path.write_bytes(raw[:60])
    elif how == "garbage":
        path.write_bytes(b"\x00\x01 not an npy file " * 40)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("how", ["truncated", "header_only", "garbage", "empty", "object"])
def test_load_cadence_corrupt_bytes(tmp_path, cadence, how):
    path = tmp_path / f"{how}.npy"
    _corrupt(path, cadence, how)
    with pytest.raises(DataError) as err:
        load_cadence(path)
    assert f"{how}.npy" in str(err.value)


def test_load_cadence_zip_bytes_is_a_data_error(tmp_path, cadence):
    path = tmp_path / "zipped.npy"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"whatever")
    with pytest.raises(DataError, match=r"zipped\.npy"):
        load_cadence(path)


# ---------------------------------------------------------------- views ---


def test_view_observations_and_channels():
    assert view_observations("on") == (0, 2, 4)
    assert view_observations("all") == (0, 1, 2, 3, 4, 5)
    assert view_observations("channels") == (0, 1, 2, 3, 4, 5)
    assert view_observations("dedoppler") == (0, 1, 2, 3, 4, 5)
    assert (view_channels("on"), view_channels("all"), view_channels("channels"), view_channels("dedoppler")) == (
        1,
        1,
        6,
        12,
    )


def test_on_view_stacks_on_observations_in_time(cadence):
    image = cadence_to_image(cadence, "on", "none", None)
    assert image.shape == (1, 3 * T, 256) and image.dtype == torch.float32
    expected = cadence.astype(np.float32)
    for position, obs in enumerate((0, 2, 4)):
        np.testing.assert_array_equal(image[0, position * T : (position + 1) * T].numpy(), expected[obs])


def test_all_view_stacks_all_observations_in_time(cadence):
    image = cadence_to_image(cadence, "all", "none", None)
    assert image.shape == (1, 6 * T, 256)
    np.testing.assert_array_equal(image[0].numpy(), cadence.astype(np.float32).reshape(6 * T, 256))
    # the time axis is the height: row T is the first row of observation 1
    np.testing.assert_array_equal(image[0, T].numpy(), cadence[1, 0].astype(np.float32))


def test_channels_view_keeps_observations_as_channels(cadence):
    image = cadence_to_image(cadence, "channels", "none", None)
    assert image.shape == (6, T, 256)
    np.testing.assert_array_equal(image.numpy(), cadence.astype(np.float32))


def test_dedoppler_view_is_the_channels_view_plus_aligned_de_doppler_planes(cadence):
    image = cadence_to_image(cadence, "dedoppler", "observation", (48, 128))
    assert image.shape == image_shape("dedoppler", (48, 128)) == (12, 48, 128)
    torch.testing.assert_close(image[:6], cadence_to_image(cadence, "channels", "observation", (48, 128)))
    normalized = normalize(torch.from_numpy(cadence[None]), "observation")
    planes = resize(cadence_planes(normalized, n_drifts=48), (48, 128))[0]  # one drift rate per row
    torch.testing.assert_close(image[6:], planes)


def test_arrange_does_not_transpose():
    obs = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    assert torch.equal(arrange(obs, "all")[0, 0], torch.cat([obs[0, 0], obs[0, 1]], dim=0))


@pytest.mark.parametrize(
    "view, normalization, size",
    [
        ("on", "sample", (64, 32)),
        ("all", "observation", None),
        ("channels", "observation", (64, 128)),
        ("on", "none", None),
        ("dedoppler", "observation", (32, 256)),
    ],
)
def test_batch_transform_equals_each_sample_alone(view, normalization, size):
    """The device-side batch transform treats every sample as if it were alone in the batch."""
    cadences = [distinct_cadence(seed) * np.float16(seed + 1) for seed in range(3)]
    observations = torch.from_numpy(np.stack([c[list(view_observations(view))] for c in cadences]))
    batch = observations_to_images(observations, view, normalization, size)
    assert batch.shape == (3, *image_shape(view, size)) and batch.dtype == torch.float32
    for row, cadence in enumerate(cadences):
        torch.testing.assert_close(
            batch[row], cadence_to_image(cadence, view, normalization, size), rtol=1e-5, atol=1e-5
        )


def test_batch_transform_channels_last_is_the_same_values(cadence):
    observations = torch.from_numpy(cadence[None])
    plain = observations_to_images(observations, "channels", "observation", (32, 64))
    nhwc = observations_to_images(observations, "channels", "observation", (32, 64), channels_last=True)
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not plain.is_contiguous(
        memory_format=torch.channels_last
    )
    assert torch.equal(plain, nhwc)


# ---------------------------------------------------------------- normalisation ---


def test_normalize_sample(cadence):
    obs = torch.from_numpy(cadence.astype(np.float32))
    out = normalize(obs, "sample")
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(out.std()) == pytest.approx(1.0, abs=1e-4)
    # one mean/std for the whole sample: the observations keep their different levels
    means = out.mean(dim=(1, 2))
    assert torch.all(means[1:] > means[:-1])


def test_normalize_observation(cadence):
    obs = torch.from_numpy(cadence.astype(np.float32))
    out = normalize(obs, "observation")
    assert torch.allclose(out.mean(dim=(1, 2)), torch.zeros(6), atol=1e-4)
    assert torch.allclose(out.std(dim=(1, 2)), torch.ones(6), atol=1e-4)


@pytest.mark.parametrize("mode", ["observation", "sample"])
def test_normalize_in_chunks_equals_one_pass(monkeypatch, mode):
    """On a CPU the groups are standardised a few at a time; the chunk size does not change the result."""
    batch = torch.from_numpy(np.stack([distinct_cadence(seed) * np.float16(seed + 1) for seed in range(5)]))
    monkeypatch.setattr(images_module, "NORMALIZE_CHUNK_BYTES", 1 << 40)
    one_pass = normalize(batch, mode)
    monkeypatch.setattr(images_module, "NORMALIZE_CHUNK_BYTES", 4 * 273 * 256 * 2)  # two observations at a time
    chunked = normalize(batch, mode)
    torch.testing.assert_close(chunked, one_pass, rtol=1e-6, atol=1e-6)
    assert chunked.dtype == torch.float32 and batch.dtype == torch.float16  # a new tensor, input untouched


def needle_beside_bright_line(line_sigma: float, seed: int = 0) -> torch.Tensor:
    """(6, 16, 256) unit noise; a needle of 3 sigma a pixel at channel 100 in the ON observations and an
    interference line of `line_sigma` at channels 140-143 in all six."""
    observations = torch.from_numpy(np.random.default_rng(seed).standard_normal((6, 16, 256)).astype(np.float32))
    observations[list(ON_OBSERVATIONS), :, 100] += 3.0
    observations[:, :, 140:144] += line_sigma
    return observations


def test_normalize_robust_keeps_the_noise_scale_whatever_the_interference():
    """Per observation by median and MAD: a bright line in the window does not shrink the needle beside it, as a
    mean and standard deviation do; the line itself is compressed."""
    faint, bright = (normalize(needle_beside_bright_line(level), "robust") for level in (0.0, 100.0))
    needle = (slice(None), slice(None), 100)
    torch.testing.assert_close(bright[needle], faint[needle], rtol=0.02, atol=0.1)
    assert float(bright[0, :, :90].std()) == pytest.approx(1.0, abs=0.05)
    assert float(bright[0, :, 140:144].mean()) < 0.5 * 100.0  # compressed (asinh beyond ROBUST_KNEE_SIGMA)
    assert torch.all(bright[0, :, 140:144] > bright[0, :, 100:101])  # but still the brightest thing there
    plain = normalize(needle_beside_bright_line(100.0), "observation")
    assert float(plain[0, :, 100].mean()) < 0.5 * float(bright[0, :, 100].mean())  # what robust is for


def test_normalize_robust_per_observation_and_stable():
    """Each observation on its own scale; a window mostly of one value (zeroed channels) or constant stays finite,
    and faint pixels are left nearly linear."""
    observations = needle_beside_bright_line(0.0) * torch.arange(1, 7, dtype=torch.float32)[:, None, None]
    out = normalize(observations[None].half(), "robust")[0]
    assert out.dtype == torch.float32
    mad_std = [1.4826 * float((o - o.median()).abs().median()) for o in out]
    assert mad_std == pytest.approx([1.0] * 6, abs=0.06)  # asinh barely bends the noise
    mostly_zero = torch.zeros(1, 6, 16, 256)
    mostly_zero[..., :64] = torch.randn(1, 6, 16, 64)
    assert torch.isfinite(normalize(mostly_zero, "robust")).all()
    assert float(normalize(mostly_zero, "robust")[..., :64].std()) == pytest.approx(2.0, rel=0.1)  # plain std
    assert torch.equal(normalize(torch.full((2, 6, 4, 8), 3.0), "robust"), torch.zeros(2, 6, 4, 8))


def test_normalize_none_is_unchanged(cadence):
    obs = torch.from_numpy(cadence.astype(np.float32))
    assert torch.equal(normalize(obs, "none"), obs)


def test_normalize_constant_input_stays_finite():
    out = normalize(torch.full((3, 4, 5), 7.0), "observation")
    assert torch.isfinite(out).all() and torch.allclose(out, torch.zeros_like(out))


def test_view_normalisation_uses_only_the_view_observations(cadence):
    # 'on' + 'sample': mean/std over observations 0, 2, 4 only
    image = cadence_to_image(cadence, "on", "sample", None)
    assert float(image.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(image.std()) == pytest.approx(1.0, abs=1e-4)


# ---------------------------------------------------------------- resizing ---


@pytest.mark.parametrize("view, channels", [("on", 1), ("all", 1), ("channels", 6)])
def test_resize_to_configured_size(cadence, view, channels):
    image = cadence_to_image(cadence, view, "sample", (64, 32))
    assert image.shape == (channels, 64, 32)
    assert torch.isfinite(image).all()


def test_resize_none_or_same_size_is_unchanged():
    image = torch.randn(1, 1, 20, 16)
    assert resize(image, None) is image
    assert torch.equal(resize(image, (20, 16)), image)


@pytest.mark.parametrize("size", [(448, 448), (60, 300), (300, 60), (819, 64), (40, 256)])
def test_resize_in_two_passes_matches_one_antialiased_call(size):
    """The two one-axis passes give PyTorch's single separable call, whichever axis goes first."""
    image = torch.randn(2, 1, 819, 256, generator=torch.Generator().manual_seed(1))
    expected = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(resize(image, size), expected, atol=1e-5)


def test_resize_keeps_vertical_order():
    # the observations stay in order after a resize: the per-row level rises from top to bottom
    image = torch.arange(6, dtype=torch.float32).repeat_interleave(T)[None, :, None].expand(1, 6 * T, 256)
    out = resize(image.contiguous()[None], (60, 16))[0]
    row_means = out[0].mean(dim=1)
    assert torch.all(row_means[1:] >= row_means[:-1] - 1e-5)
    assert float(row_means[0]) == pytest.approx(0.0, abs=1e-3) and float(row_means[-1]) == pytest.approx(5.0, abs=1e-3)


def test_antialiased_downsampling_keeps_a_one_channel_needle():
    # column 100 falls between the sample points of plain bilinear x4 downsampling (it reads 97/98, 101/102):
    # without antialiasing the needle vanishes
    generator = torch.Generator().manual_seed(0)
    image = 0.3 * torch.randn(1, 3 * T, 256, generator=generator)
    image[0, :, 100] += 1.0
    out = resize(image[None], (256, 64))[0]
    column_means = out[0].mean(dim=0)
    peak = int(column_means.argmax())
    assert abs(peak - 100 / 4) <= 1
    background = torch.cat([column_means[: peak - 2], column_means[peak + 3 :]])
    assert float(column_means[peak] - background.mean()) > 10 * float(background.std())


# ---------------------------------------------------------------- dataset ---


def test_dataset_items_are_the_view_observations_as_float16(small_dataset):
    data_dir, train_ids, _ = small_dataset
    dataset = CadenceDataset(data_dir, "train", train_ids, [1, 0] * 4, ON_OBSERVATIONS)
    assert len(dataset) == len(train_ids)
    item = dataset[3]
    assert set(item) == {"observations", "target", "index"}
    assert item["observations"].shape == (3, T, 256) and item["observations"].dtype == torch.float16
    assert float(item["target"]) == 0.0 and int(item["index"]) == 3 and float(dataset[0]["target"]) == 1.0
    cadence = load_cadence(cadence_path(data_dir, "train", train_ids[3]))
    np.testing.assert_array_equal(item["observations"].numpy(), cadence[[0, 2, 4]])


def test_dataset_unknown_target_is_minus_one(small_dataset):
    data_dir, _, test_ids = small_dataset
    dataset = CadenceDataset(data_dir, "test", test_ids, None, view_observations("channels"))
    item = dataset[1]
    assert float(item["target"]) == -1.0
    assert item["observations"].shape == CADENCE_SHAPE


def test_dataset_missing_file_is_a_data_error(small_dataset):
    data_dir, _, _ = small_dataset
    dataset = CadenceDataset(data_dir, "train", ["fffffffffffffff"], [0], ON_OBSERVATIONS)
    with pytest.raises(DataError, match=r"fffffffffffffff\.npy"):
        dataset[0]


def test_float32_files_are_delivered_as_float16_and_overflow_is_an_error(small_dataset):
    data_dir, train_ids, _ = small_dataset
    path = cadence_path(data_dir, "train", train_ids[0])
    wide = load_cadence(path).astype(np.float32)
    np.save(path, wide)
    dataset = CadenceDataset(data_dir, "train", train_ids, None, ON_OBSERVATIONS)
    np.testing.assert_array_equal(dataset[0]["observations"].numpy(), wide[[0, 2, 4]].astype(np.float16))
    wide[2, 5, 7] = 1e6
    np.save(path, wide)
    with pytest.raises(CadenceError, match="float16's range"):
        dataset[0]


def test_dataset_reads_whole_batches_through_a_dataloader(small_dataset):
    data_dir, train_ids, _ = small_dataset
    dataset = CadenceDataset(data_dir, "train", train_ids, [1, 0] * 4, view_observations("all"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, **loader_options(0, 2))
    batch = next(iter(loader))
    assert batch["observations"].shape == (4, 6, T, 256) and batch["observations"].dtype == torch.float16
    assert batch["target"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert batch["index"].tolist() == [0, 1, 2, 3]
    assert torch.equal(batch["observations"][2], dataset[2]["observations"])


def test_loader_workers_follow_the_cpus(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert loader_workers(3) == 3 and loader_workers(0) == 0
    assert loader_workers(None) == 8  # 15 left after the feeding process, capped at 8
    assert loader_workers(None, num_processes=4) == 3  # 16 CPUs shared by 4 processes, one each feeds its GPU
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert loader_workers(None) == 1 and loader_workers(None, num_processes=2) == 1


# ---------------------------------------------------------------- folds ---


def make_labels(n=103, n_pos=17):
    ids = [f"{i:015x}" for i in range(n)]
    targets = np.zeros(n, int)
    targets[np.random.default_rng(1).choice(n, n_pos, replace=False)] = 1
    return pd.DataFrame({"id": ids, "target": targets})


def test_make_folds_is_stratified_and_complete():
    labels = make_labels()
    folds = make_folds(labels, 5, seed=0)
    assert len(folds) == len(labels)
    assert folds["id"].tolist() == labels["id"].tolist()  # every id once, order kept
    assert folds["target"].tolist() == labels["target"].tolist()
    assert set(folds["fold"]) == set(range(5))
    positives = folds.groupby("fold")["target"].sum()
    sizes = folds.groupby("fold").size()
    assert positives.max() - positives.min() <= 1
    assert sizes.max() - sizes.min() <= 1
    assert "fold" not in labels.columns  # input untouched


def test_make_folds_deterministic_per_seed():
    labels = make_labels()
    a, b = make_folds(labels, 5, seed=7), make_folds(labels, 5, seed=7)
    assert a["fold"].tolist() == b["fold"].tolist()
    c = make_folds(labels, 5, seed=8)
    assert a["fold"].tolist() != c["fold"].tolist()


def test_make_folds_too_few_positives():
    labels = make_labels(n=50, n_pos=3)
    with pytest.raises(DataError, match="positives"):
        make_folds(labels, 5, seed=0)
    assert make_folds(labels, 3, seed=0)["fold"].nunique() == 3


def test_make_folds_too_few_negatives():
    labels = make_labels(n=10, n_pos=8)
    with pytest.raises(DataError):
        make_folds(labels, 5, seed=0)


def test_make_folds_shuffled_labels_stay_stratified():
    labels = make_labels(n=100, n_pos=20).sample(frac=1.0, random_state=0)  # index is a permutation of 0..99
    folds = make_folds(labels, 5, seed=0)
    assert sorted(folds["id"]) == sorted(labels["id"])
    positives = folds.groupby("fold")["target"].sum()
    assert positives.max() - positives.min() <= 1


def test_make_folds_on_a_subset_of_labels():
    labels = make_labels(n=140, n_pos=30).iloc[40:]  # e.g. a quick run on part of the data
    folds = make_folds(labels, 5, seed=0)
    assert len(folds) == len(labels) and set(folds["fold"]) == set(range(5))


# ---------------------------------------------------------------- background cleaning, pseudo-labels ---


def test_off_spectrum_removes_a_steady_line_and_keeps_an_on_only_needle():
    from src.transforms.images import subtract_off_spectrum

    observations = torch.randn(1, 6, T, 256, generator=torch.Generator().manual_seed(0))
    observations[:, :, :, 40] += 5.0  # steady narrowband interference in all six observations
    rows = torch.arange(T)
    for on in ON_OBSERVATIONS:
        observations[0, on, rows, 100 + rows // 30] += 3.0  # a drifting needle in the ON observations
    cleaned = subtract_off_spectrum(observations.clone())
    assert float(cleaned[0, 0, :, 40].mean()) == pytest.approx(0.0, abs=0.2)
    assert float(cleaned[0, 0, rows, 100 + rows // 30].mean()) == pytest.approx(3.0, abs=0.2)


def test_background_cleaning_reads_all_six_and_gives_the_view(cadence):
    from src.core.cadence import loaded_observations

    assert loaded_observations("on", "off_spectrum") == tuple(range(6)) and loaded_observations("on") == (0, 2, 4)
    image = cadence_to_image(cadence, "on", "sample", None, background="off_spectrum")
    assert image.shape == (1, 3 * T, 256)
    assert not torch.allclose(image, cadence_to_image(cadence, "on", "sample", None))


def test_combined_cadences_read_both_parts_in_one_batch(small_dataset):
    from src.data.datasets import CombinedCadences

    data_dir, train_ids, test_ids = small_dataset
    train = CadenceDataset(data_dir, "train", train_ids[:3], [1, 0, 1], ON_OBSERVATIONS)
    test = CadenceDataset(data_dir, "test", test_ids, [0.2, 0.9, 0.5], ON_OBSERVATIONS)
    combined = CombinedCadences([train, test])
    assert len(combined) == 6
    batch = combined.__getitems__([4, 0, 5, 2])
    assert torch.allclose(batch["target"], torch.tensor([0.9, 1.0, 0.5, 1.0]))
    assert torch.equal(batch["observations"][0], test[1]["observations"])
    assert torch.equal(batch["observations"][3], train[2]["observations"])


def test_pseudo_labels_are_checked(small_dataset, tmp_path):
    from src.data.kaggle import read_pseudo_labels

    data_dir, train_ids, test_ids = small_dataset
    path = tmp_path / "stage1.csv"
    pd.DataFrame({"id": test_ids, "target": [0.1, 0.7, 1.0]}).to_csv(path, index=False)
    assert read_pseudo_labels(path, data_dir, train_ids)["target"].tolist() == pytest.approx([0.1, 0.7, 1.0])
    pd.DataFrame({"id": test_ids, "target": [0.1, 1.7, 1.0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"must be a probability in \[0, 1\], found 1\.7"):
        read_pseudo_labels(path, data_dir, train_ids)
    pd.DataFrame({"id": [train_ids[0]], "target": [0.5]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="are training cadences too"):
        read_pseudo_labels(path, data_dir, train_ids)
    pd.DataFrame({"id": ["fffffffffffffff"], "target": [0.5]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="have no cadence file under"):
        read_pseudo_labels(path, data_dir, train_ids)
