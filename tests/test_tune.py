"""tune.py: search spaces checked before any trial (one-line errors), a 2-trial search of 1 epoch on a local Ray
through the entry point, and a search killed mid-way and continued with --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from matplotlib.image import imread

from src.core.config import load_config
from src.core.errors import ConfigError, DataError, ModelError
from src.engine.tuning import check_before_trials, parse_range, read_space, search_base
from src.synth.generator import SynthConfig, write_dataset

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = [
    "--model-name", "test_efficientnet", "--view", "channels", "--image-size", "32,64", "--n-folds", "2",
    "--batch-size", "8", "--num-workers", "0", "--tracker", "none",
]  # fmt: skip
SPACE = "lr: loguniform(1.0e-4, 1.0e-2)\nmodel_name: choice([test_efficientnet, test_resnet])\n"


def environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "WANDB_MODE": "disabled"}


def tune_command(data_dir: Path, space: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "tune.py",
        "--space",
        str(space),
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        *TINY,
        *extra,
    ]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tune") / "input"
    write_dataset(path, SynthConfig(seed=3, pos_frac=0.3), n_train=31, n_test=4, workers=1, progress=False)
    return path


@pytest.mark.parametrize(
    ("text", "sampler", "arguments"),
    [
        ("loguniform(1e-5, 1e-2)", "loguniform", (1e-5, 1e-2)),
        ("uniform(0, 0.3)", "uniform", (0, 0.3)),
        ("quniform(0.0, 1.0, 0.25)", "quniform", (0.0, 1.0, 0.25)),
        ("randint(8, 33)", "randint", (8, 33)),
        ("choice([resnet10t, eca_nfnet_l0])", "choice", (["resnet10t", "eca_nfnet_l0"],)),
    ],
)
def test_ranges_are_read(text, sampler, arguments):
    found = parse_range("x", text, "space.yaml")
    assert (found.sampler, found.arguments) == (sampler, arguments)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loguniform(1e-2, 1e-5)", "empty range"),
        ("uniform(0.3, 0.3)", "empty range"),
        ("loguniform(0, 1)", "positive low end"),
        ("choice([])", "non-empty list"),
        ("normal(0, 1)", "unknown range 'normal'"),
        ("uniform(0, a)", "needs numbers"),
        ("uniform(0, 1, 2)", "uniform takes 2 argument"),
        ("randint(1.5, 4)", "whole numbers"),
        ("0.001", "expected one of"),
    ],
)
def test_bad_ranges_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_range("lr", text, "space.yaml")


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("learning_rate: loguniform(1e-4, 1e-2)\n", "learning_rate: not a config field"),
        ("data_dir: choice([a, b])\n", "cannot be searched"),
        ("epochs: uniform(1.5, 4.5)\n", "epochs"),  # an int field given fractions
        ("epochs: uniform(1, 5)\n", "epochs: a whole number; uniform would draw fractions"),
        ("view: choice([channels, sideways])\n", "view"),  # a value the Config refuses
        ("batch_size: choice([16, big])\n", "batch_size"),
        ("", "the search space is empty"),
    ],
)
def test_spaces_are_checked_against_the_config(tmp_path, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(space)
    with pytest.raises(ConfigError, match=message):
        read_space(path, {"model_name": "test_efficientnet"})


def test_the_trials_paths_are_absolute_defaults_included(tmp_path, monkeypatch):
    """Ray Tune runs each trial in its own folder: `data_dir` from the Config's default ('input') too."""
    monkeypatch.chdir(tmp_path)
    base = search_base({"model_name": "test_efficientnet", "epochs": "2", "pretrained": "weights"}, "cli")
    assert base["data_dir"] == str(tmp_path / "input") and base["pretrained"] == str(tmp_path / "weights")
    assert base["epochs"] == 2 and "cache_dir" not in base  # typed; unset paths stay unset


@pytest.mark.parametrize(
    ("base", "space", "error", "message"),
    [
        ({"data_dir": "nowhere"}, "lr: loguniform(1.0e-4, 1.0e-2)\n", DataError, "data directory not found"),
        ({}, "model_name: choice([test_resnet, no_such_net])\n", ModelError, "'no_such_net' is not a timm model"),
        ({"n_folds": 40}, "lr: loguniform(1.0e-4, 1.0e-2)\n", DataError, "too few for 40 folds"),
    ],
)
def test_what_would_fail_every_trial_is_found_before_ray_starts(tiny_data, tmp_path, base, space, error, message):
    path = tmp_path / "space.yaml"
    path.write_text(space)
    values = {"data_dir": str(tiny_data), "model_name": "test_efficientnet", "n_folds": 2, **base}
    if base.get("data_dir"):
        values["data_dir"] = str(tmp_path / base["data_dir"])
    with pytest.raises(error, match=message):
        check_before_trials(values, read_space(path, values))


def test_a_bad_space_is_one_line_before_any_trial(tiny_data, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform(1e-2, 1e-5)\n")
    started = time.monotonic()
    result = subprocess.run(
        tune_command(tiny_data, space, tmp_path / "search"), cwd=REPO, env=environment(), capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {space}: lr: empty range loguniform(0.01, 1e-05): the low end must be below the high"
    ]
    assert not (tmp_path / "search").exists() and time.monotonic() - started < 30  # no Ray, no folder


def test_two_trials_of_one_epoch_on_a_local_ray(tiny_data, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "search"
    result = subprocess.run(
        tune_command(tiny_data, space, out, "--epochs", "1", "--trials", "2"),
        cwd=REPO, env=environment(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(out / "results.csv", dtype={"trial": str})
    assert len(table) == 2 and (table["state"] == "done").all()
    assert table["best_valid_auc"].between(0, 1).all()
    assert table["best_valid_auc"].is_monotonic_decreasing  # sorted, best first
    assert table["lr"].between(1e-4, 1e-2).all() and set(table["model_name"]) <= {"test_efficientnet", "test_resnet"}
    for trial in table["trial"]:  # each trial is a run folder of the project's training of fold 0
        metrics = pd.read_csv(out / "trials" / trial / "metrics.csv")
        assert metrics["fold"].tolist() == [0] and metrics["valid_auc"].max() == pytest.approx(
            table.set_index("trial").loc[trial, "best_valid_auc"]
        )
    best = load_config(out / "best.yaml")  # a ready recipe
    assert best.lr == pytest.approx(table.loc[0, "lr"]) and best.model_name == table.loc[0, "model_name"]
    assert best.epochs == 1 and best.image_size == (32, 64)
    assert "| trial | lr | model_name | best_valid_auc |" in (out / "results.md").read_text()
    assert imread(out / "search.png").shape[1] >= 400
    assert "best validation ROC AUC" in result.stdout

    again = subprocess.run(tune_command(tiny_data, space, out, "--epochs", "1"), cwd=REPO, env=environment(),
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 2 and "already holds a search" in again.stderr  # never replaced silently


def test_a_killed_search_continues_with_resume(tiny_data, tmp_path):
    """SIGKILL to the whole search (driver, Ray and trials) once a second trial has saved its state; --resume
    finishes it: every trial reaches its last epoch or was stopped by ASHA, and the continued trial's metrics.csv
    holds each epoch once."""
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "search"
    command = tune_command(
        tiny_data, space, out, "--epochs", "4", "--trials", "3", "--concurrent", "1", "--grace-epochs", "2"
    )
    search = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and search.poll() is None:
        states = list((out / "trials").glob("*/state/progress.json"))
        if len(list((out / "trials").glob("*"))) >= 2 and states:
            break
        time.sleep(0.5)
    assert search.poll() is None, "the search ended before it could be killed"
    os.killpg(search.pid, signal.SIGKILL)
    search.wait()
    assert not (out / "results.csv").exists()

    result = subprocess.run([sys.executable, "tune.py", "--resume", "--out", str(out)], cwd=REPO, env=environment(),
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(out / "results.csv", dtype={"trial": str})
    assert len(table) == 3 and (table["state"] == "done").all()
    for trial in table["trial"]:
        epochs = pd.read_csv(out / "trials" / trial / "metrics.csv")["epoch"].tolist()
        assert epochs == list(range(1, len(epochs) + 1))  # each epoch once, in order
    assert (table["epochs_run"] == 4).any()
    saved = yaml.safe_load((out / "search.yaml").read_text())
    assert saved["trials"] == 3 and set(saved["ranges"]) == {"lr", "model_name"}


def test_ctrl_c_stops_the_search_with_one_line(tiny_data, tmp_path):
    """Ctrl-C from a terminal reaches the whole foreground group: Ray Tune stops and saves the search, and
    tune.py says so in one line (exit 130) without writing results for a search that did not end."""
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "search"
    command = tune_command(tiny_data, space, out, "--epochs", "3", "--trials", "2", "--concurrent", "1")
    search = subprocess.Popen(
        command,
        cwd=REPO,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's foreground job has it
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and search.poll() is None and not list((out / "trials").glob("*/metrics.csv")):
        time.sleep(0.5)
    assert search.poll() is None, "the search ended before Ctrl-C"
    os.killpg(search.pid, signal.SIGINT)
    _, stderr = search.communicate(timeout=120)
    assert search.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith(("interrupted:", "error:"))]
    assert lines == [
        f"interrupted: {out}: the search stopped before its 2 trials ended; Ray Tune saved it: continue with "
        f"python tune.py --resume --out {out}"
    ]
    assert not (out / "results.csv").exists()
