"""Faults a new user met (issue 17): each ends with one line and leaves nothing that blocks the next command.

Unreadable weights through --pretrained; NaN and infinity in the config, from flags and from YAML; a key given
twice in a recipe; start-up errors that used to leave a run folder behind, and such a folder blocking the
corrected command; a read-only run folder failing a finished evaluation; Ctrl-C during training; and
`python -m src.synth` exiting 2 like every other entry point."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from src.core.cli import run_cli
from src.synth.generator import SynthConfig, write_dataset

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "disabled"}
TINY = ["--model-name", "test_efficientnet", "--view", "channels", "--image-size", "32,64", "--n-folds", "2"]
TINY += ["--batch-size", "8", "--num-workers", "0", "--tracker", "none", "--epochs", "1"]


def run(*args, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600, **popen
    )


def one_error_line(result: subprocess.CompletedProcess, exit_code: int = 2, prefix: str = "error: ") -> str:
    assert result.returncode == exit_code, f"exit {result.returncode}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr
    shown = result.stderr.replace("\r", "\n").split("\n")
    lines = [line for line in shown if line.strip() and "it/s" not in line and "s/it" not in line]  # progress bars
    lines = [line for line in lines if not line.startswith(("train:", "run folder:"))]
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "input"
    write_dataset(path, SynthConfig(seed=7, pos_frac=0.5), n_train=16, n_test=4, workers=1, progress=False)
    return path


def train(data: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    return run("main.py", "--data-dir", data, "--out-dir", out, "--run-name", "r", *TINY, *extra)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
@pytest.mark.parametrize("start", [b"", b"\x80\xe5"], ids=["random", "odd-pickle-protocol"])
def test_random_bytes_as_pretrained_weights(data, tmp_path, suffix, start):
    """Any bytes: one error line; a pickle header with an unknown protocol (torch warns about it) included."""
    weights = tmp_path / f"x{suffix}"
    weights.write_bytes(start + os.urandom(5000))
    message = one_error_line(train(data, tmp_path / "out", "--pretrained", weights))
    assert str(weights) in message
    assert "weights_only=False" not in message  # never a hint to turn the safe loader off
    assert not (tmp_path / "out").exists()  # checked before the run folder is made


@pytest.mark.parametrize(
    ("flag", "value"), [("--lr", "nan"), ("--weight-decay", "nan"), ("--grad-clip", "nan"), ("--min-lr", "inf")]
)
def test_non_finite_config_values_are_refused_up_front(data, tmp_path, flag, value):
    message = one_error_line(train(data, tmp_path / "out", flag, value))
    assert "must be a finite number" in message and flag[2:].replace("-", "_") in message
    assert not (tmp_path / "out").exists()


def test_nan_and_duplicate_keys_in_a_recipe(data, tmp_path):
    nan_recipe = tmp_path / "nan.yaml"
    nan_recipe.write_text("lr: .nan\n")
    assert "lr: must be a finite number" in one_error_line(train(data, tmp_path / "out", "--config", nan_recipe))
    twice = tmp_path / "twice.yaml"
    twice.write_text("epochs: 1\nlr: 0.001\nepochs: 3\n")
    assert "key 'epochs' given twice" in one_error_line(train(data, tmp_path / "out", "--config", twice))
    assert not (tmp_path / "out").exists()


def test_unknown_backbone_leaves_no_folder_and_a_failed_start_does_not_block(data, tmp_path):
    out = tmp_path / "out"
    one_error_line(train(data, out, "--model-name", "nope"))
    assert not out.exists()
    # what an older failed start left: its config and folds, no training state
    (out / "r").mkdir(parents=True)
    (out / "r" / "config.yaml").write_text("model_name: nope\n")
    (out / "r" / "folds.csv").write_text("id,target,fold\n")
    result = train(data, out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "holds only what a start that failed wrote" in result.stdout
    assert (out / "r" / "fold0.safetensors").is_file()


def test_a_folder_with_other_files_still_blocks(data, tmp_path):
    out = tmp_path / "out"
    (out / "r").mkdir(parents=True)
    (out / "r" / "config.yaml").write_text("x: 1\n")
    (out / "r" / "notes.txt").write_text("mine")
    assert "run folder already exists" in one_error_line(train(data, out))
    assert (out / "r" / "notes.txt").read_text() == "mine"


def test_evaluation_from_a_read_only_run_folder_keeps_its_submission(data, tmp_path):
    out = tmp_path / "out"
    assert train(data, out).returncode == 0
    run_dir = out / "r"
    (run_dir / "report.md").unlink()
    (run_dir / "report.md").symlink_to("/proc/version")  # a file that cannot be appended to, even by root
    submission = tmp_path / "elsewhere" / "submission.csv"
    result = run("evaluate.py", "--run-dir", run_dir, "--out", submission)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"note: {run_dir / 'report.md'} was not updated" in result.stdout + result.stderr
    assert len(pd.read_csv(submission)) == 4


def test_ctrl_c_during_training_is_one_line_with_the_resume_command(data, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "main.py", "--data-dir", data, "--out-dir", out, "--run-name", "r", *TINY]
    command[command.index("--epochs") + 1] = "12"
    process = subprocess.Popen(
        [str(c) for c in command],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's foreground job
    )
    deadline = time.monotonic() + 300
    while not (out / "r" / "state").is_dir() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(command, process.returncode, "", stderr)
    message = one_error_line(result, exit_code=130, prefix="interrupted: ")
    assert message.endswith(f"main.py --resume {out / 'r'}")
    resumed = run("main.py", "--resume", out / "r")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "r" / "oof.csv").is_file()


def test_synth_refusal_exits_2(tmp_path):
    (tmp_path / "train_labels.csv").write_text("id,target\n")
    message = one_error_line(run("-m", "src.synth", "--out", tmp_path, "--n-train", "2", "--n-test", "1"))
    assert "train_labels.csv" in message
    assert "n_train and n_test must be >= 0" in one_error_line(
        run("-m", "src.synth", "--out", tmp_path / "new", "--n-train", "2", "--n-test", "-1")
    )
    shutil.rmtree(tmp_path / "new", ignore_errors=True)


class SmallDisk(type(Path())):
    """A path on a small tmpfs that can grow in place."""

    def grow(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KiB tmpfs (root and mount needed, else skipped)."""
    mount_point = SmallDisk(tmp_path / "disk")
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_disk_full_in_training_is_one_line_and_resume_continues(data, small_disk):
    message = one_error_line(train(data, small_disk))
    assert message.startswith(f"error: {small_disk / 'r'}: no space left on the device")
    assert message.endswith(f"main.py --resume {small_disk / 'r'}")
    small_disk.grow("64m")
    resumed = run("main.py", "--resume", small_disk / "r")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (small_disk / "r" / "oof.csv").is_file()


def test_disk_full_in_evaluation_and_packing(data, tmp_path, small_disk):
    assert train(data, tmp_path / "out").returncode == 0
    with open(small_disk / "filler", "wb", buffering=0) as filler, pytest.raises(OSError, match="No space left"):
        while True:  # fill the disk
            filler.write(b"\0" * 4096)
    message = one_error_line(run("evaluate.py", "--run-dir", tmp_path / "out" / "r", "--out", small_disk / "s.csv"))
    assert "s.csv: no space left on the device" in message
    assert not (small_disk / "s.csv").exists()
    (small_disk / "filler").unlink()
    message = one_error_line(
        run("-m", "src.pack", "--data-dir", data, "--out", small_disk / "packed", "--workers", "1")
    )
    assert "no space left on the device while packing" in message and "run the same command again" in message


@pytest.mark.parametrize(
    ("command", "again"),
    [
        (("-m", "src.synth.snippets", "--n-train", "60", "--n-test", "0", "--workers", "2"), "with --overwrite"),
        (("-m", "src.synth", "--n-train", "400", "--n-test", "0", "--workers", "2"), "remove it and make it again"),
        # one worker: the second cadence's file meets the disk's last ~180 KiB, a short write (what np.save writing
        # to a file reports without an errno) every time
        (("-m", "src.synth", "--n-train", "400", "--n-test", "0", "--workers", "1"), "remove it and make it again"),
        (
            ("-m", "src.synth.filterbank", "--n-cadences", "1", "--coarse-channels", "1", "--fine-channels", "65536"),
            "with --overwrite",
        ),
    ],
)
def test_disk_full_in_a_generator_is_one_line(small_disk, command, again):
    """A generator filling the disk (here, in its worker processes) ends with one line naming its folder."""
    message = one_error_line(run(*command, "--out", small_disk / "set"))
    assert message.startswith(f"error: {small_disk / 'set'}: no space left on the device; the set is incomplete")
    assert again in message


def test_ctrl_c_in_a_generator_is_one_line_naming_the_incomplete_set(tmp_path):
    """Ctrl-C while the snippet generator's two workers write: one line (no worker's traceback), exit 130, no
    temporary file left, and no label table (the tables are written last: a set with labels is whole)."""
    out = tmp_path / "set"
    command = [sys.executable, "-m", "src.synth.snippets", "--out", str(out), "--n-train", "3000", "--workers", "2"]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's foreground job
    )
    deadline = time.monotonic() + 120
    while not any(out.rglob("*.npy")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the workers too
    stderr = process.communicate(timeout=120)[1]
    lines = [line for line in stderr.replace("\r", "\n").split("\n") if line.strip() and "it/s" not in line]
    assert process.returncode == 130 and lines == [
        f"interrupted: {out}: the set is incomplete: make it again with --overwrite"
    ]
    assert not list(out.rglob(".*.tmp")) and not (out / "train_labels.csv").exists()


def test_a_full_disk_any_command_meets_is_one_line_and_other_os_errors_stay_bugs(capsys):
    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "out/x.csv")

    def denied():
        raise PermissionError(errno.EACCES, "Permission denied", "out/x.csv")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(full)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "error: out/x.csv: no space left on the device; free space, then run the command again\n"
    )
    with pytest.raises(PermissionError):
        run_cli(denied)


def test_too_few_cadences_for_the_folds_names_the_table_and_writes_nothing(data, tmp_path):
    message = one_error_line(train(data, tmp_path / "out", "--n-folds", "20"))
    assert message.startswith(f"error: {data / 'train_labels.csv'}: ") and "too few for 20 folds" in message
    assert not (tmp_path / "out").exists()


def test_ids_with_spaces_are_named_as_the_cause(data, tmp_path):
    copy = tmp_path / "input"
    shutil.copytree(data, copy)
    labels = pd.read_csv(copy / "train_labels.csv", dtype=str)
    labels.loc[0, "id"] = f" {labels.loc[0, 'id']}"
    labels.to_csv(copy / "train_labels.csv", index=False)
    message = one_error_line(train(copy, tmp_path / "out"))
    assert "have spaces around them" in message and repr(labels.loc[0, "id"]) in message


def test_an_incomplete_cache_is_refused_before_the_run_folder(data, tmp_path):
    packed = run(
        "-m", "src.pack", "--data-dir", data, "--out", tmp_path / "packed", "--split", "train", "--workers", "1"
    )
    assert packed.returncode == 0, packed.stderr[-2000:]
    for shard in (tmp_path / "packed" / "train-on").glob("shard_*.npy"):
        shard.unlink()
    message = one_error_line(train(data, tmp_path / "out", "--cache-dir", tmp_path / "packed", "--view", "on"))
    assert "shard missing from the cache" in message
    assert not (tmp_path / "out").exists()


def test_a_bad_training_cadence_found_in_training_leaves_no_folder(data, tmp_path):
    copy = tmp_path / "input"
    shutil.copytree(data, copy)
    first = pd.read_csv(copy / "train_labels.csv", dtype=str)["id"][0]
    path = copy / "train" / first[0] / f"{first}.npy"
    path.write_bytes(path.read_bytes()[:1000])  # truncated: found when training first reads it
    message = one_error_line(train(copy, tmp_path / "out"))
    assert f"{path}: not a readable .npy file" in message
    assert not (tmp_path / "out" / "r").exists()
