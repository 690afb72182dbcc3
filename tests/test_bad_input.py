"""Every kind of bad input stops with an error that names the file and the problem.

The matrix: data folder, labels table, cadence files, the sample submission, config files and checkpoints,
each asserting the error type, the file and the problem. Then the same through the entry points a user
types: exit code 2, one `error:` line, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from src.core.cadence import CADENCE_SHAPE, ON_OBSERVATIONS
from src.core.config import Config, ConfigError, load_config
from src.core.errors import DataError
from src.data.datasets import CadenceDataset
from src.data.kaggle import (
    SAMPLE_SUBMISSION,
    TRAIN_LABELS,
    CadenceError,
    cadence_path,
    load_cadence,
    read_sample_submission,
    read_train_labels,
    require_cadence_files,
)
from src.data.validation import scan_cadences
from src.engine.checkpoint import CheckpointError, load_weights, read_checkpoint_info, save_checkpoint
from src.models.classifier import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """What to run, and what its error must be and say."""

    run: Callable[[], object]
    error: type[Exception]
    file: str  # a part of the message naming the file
    problem: str  # a part of the message saying what is wrong


@dataclass(frozen=True)
class Data:
    dir: Path
    train_ids: list[str]
    test_ids: list[str]

    def train_file(self, index: int = 0) -> Path:
        return cadence_path(self.dir, "train", self.train_ids[index])


def labels_with(data: Data, text: str | None, problem: str) -> Case:
    """train_labels.csv with this text (None: no file at all), read as training does."""
    path = data.dir / TRAIN_LABELS
    if text is None:
        path.unlink()
    else:
        path.write_text(text)
    return Case(lambda: read_train_labels(data.dir), DataError, str(path), problem)


def cadence_with(data: Data, array: np.ndarray, problem: str) -> Case:
    np.save(data.train_file(), array, allow_pickle=False)
    return Case(lambda: load_cadence(data.train_file()), CadenceError, str(data.train_file()), problem)


def cadence_bytes(data: Data, spoil: Callable[[bytes], bytes], problem: str) -> Case:
    path = data.train_file()
    path.write_bytes(spoil(path.read_bytes()))
    return Case(lambda: load_cadence(path), CadenceError, str(path), f"not a readable .npy file ({problem}")


def good_cadence() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(CADENCE_SHAPE).astype(np.float16)


def non_finite(values: dict[tuple[int, int, int], float]) -> np.ndarray:
    cadence = good_cadence()
    for index, value in values.items():
        cadence[index] = value
    return cadence


def missing_through_dataset(data: Data) -> Case:
    data.train_file(3).unlink()
    dataset = CadenceDataset(data.dir, "train", data.train_ids, None, ON_OBSERVATIONS)
    return Case(lambda: dataset[3], CadenceError, str(data.train_file(3)), "cadence file not found")


def submission_without_test_files(data: Data) -> Case:
    for sample_id in data.test_ids[1:]:
        cadence_path(data.dir, "test", sample_id).unlink()
    source = data.dir / SAMPLE_SUBMISSION
    ids = read_sample_submission(data.dir)["id"].tolist()
    expected = cadence_path(data.dir, "test", data.test_ids[1])
    return Case(
        lambda: require_cadence_files(data.dir, "test", ids, source),
        DataError,
        str(source),
        f"2 of 3 ids have no cadence file under {data.dir / 'test'}, e.g. {data.test_ids[1]}, {data.test_ids[2]} "
        f"(expected {expected})",
    )


def recipe(data: Data, text: str, problem: str) -> Case:
    path = data.dir.parent / "recipe.yaml"
    path.write_text(text)
    return Case(lambda: load_config(path), ConfigError, str(path), problem)


def tiny(model_name: str, **values) -> Config:
    return Config(model_name=model_name, view="channels", tracker=(), num_workers=0, **values)


def checkpoint_disagreeing(data: Data, trained: Config, embedded: Config, detail: str) -> Case:
    """Weights of `trained` saved with the config `embedded`: the evaluate flow builds from the embedded config."""
    path = data.dir.parent / "fold0.safetensors"
    save_checkpoint(path, build_model(trained, load_pretrained=False), embedded, fold=0, epoch=1, metrics={})

    def evaluate_flow() -> None:
        info = read_checkpoint_info(path)
        load_weights(build_model(info.config, load_pretrained=False), info.path)

    return Case(evaluate_flow, CheckpointError, str(path), f"weights do not fit the model (size mismatch for {detail}")


CASES: dict[str, Callable[[Data], Case]] = {
    "data-dir-missing": lambda d: Case(
        lambda: read_train_labels(d.dir / "nowhere"), DataError, str(d.dir / "nowhere"), "data directory not found"
    ),
    "labels-missing": lambda d: labels_with(d, None, "file not found"),
    "labels-empty-file": lambda d: labels_with(d, "", "not a readable CSV"),
    "labels-header-only": lambda d: labels_with(d, "id,target\n", "has no rows"),
    "labels-missing-column": lambda d: labels_with(
        d, "id,label\na1,0\nb2,1\n", "missing column(s) target; expected id,target"
    ),
    "labels-duplicate-ids": lambda d: labels_with(d, "id,target\na1,0\nb2,1\na1,1\n", "1 duplicate id(s), e.g. a1"),
    "labels-target-not-0-1": lambda d: labels_with(d, "id,target\na1,0\nb2,2\n", "target must be 0 or 1, found 2"),
    "cadence-missing": missing_through_dataset,
    "cadence-truncated": lambda d: cadence_bytes(d, lambda raw: raw[: len(raw) // 3], "Failed to read all data"),
    "cadence-corrupt-bytes": lambda d: cadence_bytes(
        d, lambda raw: bytes(200) + raw[200:], "no .npy header: the file does not start with the NumPy magic bytes"
    ),
    "cadence-wrong-shape": lambda d: cadence_with(
        d, np.zeros((6, 256, 273), np.float16), "shape (6, 256, 273), expected (6, 273, 256)"
    ),
    "cadence-wrong-dtype": lambda d: cadence_with(
        d, np.zeros(CADENCE_SHAPE, np.int16), "dtype int16, expected one of float16, float32, float64"
    ),
    "cadence-nan": lambda d: cadence_with(
        d,
        non_finite({(2, 5, 7): np.nan, (5, 0, 0): np.nan}),
        "2 non-finite value(s) (NaN or inf), the first in observation 2",
    ),
    "cadence-inf": lambda d: cadence_with(
        d,
        non_finite({(4, 1, 1): np.inf, (4, 2, 2): -np.inf, (3, 0, 9): np.inf}),
        "3 non-finite value(s) (NaN or inf), the first in observation 3",
    ),
    "submission-ids-without-test-file": submission_without_test_files,
    "config-unknown-key": lambda d: recipe(d, "epochs: 2\nlearning_rate: 0.1\n", "unknown key(s) learning_rate"),
    "config-bad-value": lambda d: recipe(d, "epochs: 0\n", "epochs: must be >= 1, got 0"),
    "config-bad-type": lambda d: recipe(d, "lr: fast\n", "lr: expected a number, got 'fast'"),
    "checkpoint-other-architecture": lambda d: checkpoint_disagreeing(
        d, trained=tiny("test_efficientnet"), embedded=tiny("test_resnet"), detail="backbone.bn1.weight"
    ),
    "checkpoint-other-image-size": lambda d: checkpoint_disagreeing(
        d,
        trained=tiny("test_vit", image_size=(32, 32)),
        embedded=tiny("test_vit", image_size=(64, 64)),
        detail="backbone.pos_embed",
    ),
}


@pytest.fixture
def data(small_dataset) -> Data:
    data_dir, train_ids, test_ids = small_dataset
    return Data(data_dir, train_ids, test_ids)


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input_gives_an_error_naming_file_and_problem(kind, data):
    case = CASES[kind](data)
    with pytest.raises(case.error) as caught:
        case.run()
    message = str(caught.value)
    assert message.startswith(case.file), message
    assert case.problem in message, message


@pytest.mark.parametrize("dtype", ["int16", "int64", "uint8", "bool", "complex64", "longdouble"])
def test_only_float16_32_64_cadences_are_accepted(tmp_path, dtype):
    path = tmp_path / "c.npy"
    np.save(path, np.zeros(CADENCE_SHAPE, dtype))
    with pytest.raises(CadenceError, match=f"c.npy: dtype {np.dtype(dtype)}, expected") as caught:
        load_cadence(path)
    assert caught.value.kind == "dtype"


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", ">f2"])
def test_float_cadences_of_any_width_and_byte_order_load(tmp_path, dtype):
    path = tmp_path / "c.npy"
    np.save(path, good_cadence().astype(dtype))
    assert load_cadence(path).dtype == np.dtype(dtype)


def test_the_problem_kinds_say_what_is_wrong(data):
    kinds = {}
    for name, expected in [
        ("cadence-missing", "missing"),
        ("cadence-truncated", "unreadable"),
        ("cadence-wrong-shape", "shape"),
        ("cadence-wrong-dtype", "dtype"),
        ("cadence-nan", "non-finite"),
    ]:
        with pytest.raises(CadenceError) as caught:
            CASES[name](data).run()
        kinds[name] = (caught.value.kind, expected)
    assert all(kind == expected for kind, expected in kinds.values()), kinds


def test_cadence_error_survives_a_dataloader_worker(data):
    """Workers re-raise an exception from its message alone; it must still be a CadenceError, so still a user error."""
    data.train_file(2).unlink()
    dataset = CadenceDataset(data.dir, "train", data.train_ids[2:3], None, ON_OBSERVATIONS)
    error = first_error(torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=1))
    assert isinstance(error, CadenceError), repr(error)
    assert f"{data.train_ids[2]}.npy: cadence file not found" in str(error)


def first_error(loader: torch.utils.data.DataLoader) -> Exception | None:
    """The loader's exception without its traceback, so the iterator and its worker are shut down here and now
    (kept alive by the traceback, they would be reaped later, after a 5 s join timeout)."""
    try:
        list(loader)
    except Exception as err:
        return err.with_traceback(None)
    return None


def test_a_missing_cadence_is_listed_by_the_scan(data):
    data.train_file(5).unlink()
    bad = scan_cadences(data.dir, "train", data.train_ids, workers=2, progress=False)
    assert [(b.id, b.path, b.problem, b.kind) for b in bad] == [
        (data.train_ids[5], str(data.train_file(5)), "cadence file not found", "missing")
    ]


def test_require_cadence_files_passes_when_all_exist_and_quotes_a_few(data):
    require_cadence_files(data.dir, "train", data.train_ids, data.dir / TRAIN_LABELS)  # complete: no error
    for n in range(5):
        data.train_file(n).unlink()
    with pytest.raises(DataError) as caught:
        require_cadence_files(data.dir, "train", data.train_ids, data.dir / TRAIN_LABELS)
    assert f"5 of 8 ids have no cadence file under {data.dir / 'train'}, e.g. " in str(caught.value)
    assert ", ".join(data.train_ids[:3]) + ", ... (expected" in str(caught.value)


def test_yaml_python_tags_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.yaml"
    path.write_text(f"epochs: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml: not valid YAML"):
        load_config(path)
    assert not marker.exists()


def test_checkpoint_with_agreeing_config_loads(data):
    """The control for the two checkpoint cases: with the config it was trained with, the same file loads."""
    for trained in (tiny("test_efficientnet"), tiny("test_vit", image_size=(32, 32))):
        path = data.dir.parent / "fold0.safetensors"
        save_checkpoint(path, build_model(trained, load_pretrained=False), trained, fold=0, epoch=1, metrics={})
        load_weights(build_model(read_checkpoint_info(path).config, load_pretrained=False), path)


# ---------------------------------------------------------------- through the entry points ---

TINY_TRAINING = [
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
    "0",
    "--tracker",
    "none",
]
TEST_IDS = ["a0000000000000", "b0000000000001", "c0000000000002"]


@dataclass(frozen=True)
class Command:
    process: subprocess.Popen
    expected: tuple[str, ...]  # parts of the one `error:` line
    must_not_exist: Path | None = None  # an output the failed command must not have written


def bad_data_dir(root: Path) -> Path:
    """Labels with a target of 2; a sample submission whose last id has no test file."""
    data_dir = root / "data"
    for sample_id in TEST_IDS[:2]:
        path = cadence_path(data_dir, "test", sample_id)
        path.parent.mkdir(parents=True)
        np.save(path, good_cadence())
    (data_dir / TRAIN_LABELS).write_text("id,target\n" + "".join(f"t{i},{i % 3}\n" for i in range(8)))
    (data_dir / SAMPLE_SUBMISSION).write_text("id,target\n" + "".join(f"{i},0.5\n" for i in TEST_IDS))
    return data_dir


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> dict[str, Command]:
    """The bad-input commands a user could type, started together: each spends seconds importing torch, so on a
    small machine running them side by side saves most of the wait. Each test then checks its own."""
    root = tmp_path_factory.mktemp("entry_points")
    data_dir = bad_data_dir(root)
    cfg = tiny("test_efficientnet", image_size=(32, 64))
    checkpoint = root / "fold0.safetensors"
    save_checkpoint(checkpoint, build_model(cfg, load_pretrained=False), cfg, fold=0, epoch=1, metrics={})
    missing_test_file = cadence_path(data_dir, "test", TEST_IDS[2])

    def start(*args: str) -> subprocess.Popen:
        env = {**os.environ, "WANDB_MODE": "disabled"}
        return subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    started = {
        "main-bad-labels": Command(
            start("main.py", "--data-dir", str(data_dir), "--out-dir", str(root / "out"), *TINY_TRAINING),
            (str(data_dir / TRAIN_LABELS), "target must be 0 or 1, found 2 in 2 row(s)"),
            root / "out" / "run" / "fold0.safetensors",
        ),
        "evaluate-missing-checkpoint": Command(
            start(
                "evaluate.py",
                "--checkpoints",
                str(root / "fold7.safetensors"),
                "--data-dir",
                str(data_dir),
                "--out",
                str(root / "sub_a.csv"),
            ),
            (str(root / "fold7.safetensors"), "checkpoint not found"),
            root / "sub_a.csv",
        ),
        "evaluate-submission-ids-without-test-file": Command(
            start(
                "evaluate.py",
                "--checkpoints",
                str(checkpoint),
                "--data-dir",
                str(data_dir),
                "--out",
                str(root / "sub_b.csv"),
                "--num-workers",
                "2",
            ),
            (str(data_dir / SAMPLE_SUBMISSION), "1 of 3 ids have no cadence file", TEST_IDS[2], str(missing_test_file)),
            root / "sub_b.csv",
        ),
        "validate-missing-data-dir": Command(
            start("-m", "src.validate", "--data-dir", str(root / "nowhere")),
            (str(root / "nowhere"), "data directory not found"),
        ),
        "synth-bad-flag": Command(
            start(
                "-m", "src.synth", "--out", str(root / "synth"), "--n-train", "2", "--n-test", "1", "--wide-rfi", "1"
            ),
            ("--wide-rfi", "invalid choice"),
            root / "synth",
        ),
        "second-generator-bad-flag": Command(
            start("bench/second_generator.py", "--out", str(root / "second"), "--n", "many"),
            ("--n", "invalid int value"),
            root / "second",
        ),
        "pictures-of-an-unfinished-run": Command(
            start("-m", "src.pictures", str(root / "no-run")),
            (str(root / "no-run" / "oof.csv"), "not found"),
            root / "no-run",
        ),
        "tune-resume-without-a-search": Command(
            start("tune.py", "--resume", "--out", str(root / "no-search")),
            (str(root / "no-search"), "no search to continue here"),
            root / "no-search" / "tune",
        ),
    }
    yield started
    for command in started.values():
        if command.process.poll() is None:
            command.process.kill()
            command.process.communicate()


@pytest.mark.parametrize(
    "name",
    [
        "main-bad-labels",
        "evaluate-missing-checkpoint",
        "evaluate-submission-ids-without-test-file",
        "validate-missing-data-dir",
        "synth-bad-flag",
        "second-generator-bad-flag",
        "pictures-of-an-unfinished-run",
        "tune-resume-without-a-search",
    ],
)
def test_entry_point_ends_with_one_error_line(commands, name):
    """Exit code 2 and one `error:` line naming the file and the problem, without a traceback, nothing written."""
    command = commands[name]
    _, stderr = command.process.communicate(timeout=300)
    assert command.process.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    for part in command.expected:
        assert part in errors[0], errors[0]
    assert command.must_not_exist is None or not command.must_not_exist.exists()
