"""What the README promises about `make demo`: the demo recipe run twice with the same seed on the same machine
gives the same bytes (out-of-fold predictions, checkpoints' tensors, submission), and its console is one line per
epoch and per evaluation, with no progress-bar residue when the output goes to a log file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
# the demo recipe itself, shrunk only in size: the same model, view, normalisation, sampler, EMA and selection
DEMO_SIZED_DOWN = ["--config", "configs/demo_cpu.yaml", "--epochs", "2", "--n-folds", "2", "--batch-size", "8"]
DEMO_SIZED_DOWN += ["--eval-batch-size", "8", "--num-workers", "0", "--tracker", "none"]


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def demo_run(data_dir: Path, out: Path, name: str) -> tuple[Path, subprocess.CompletedProcess]:
    command = [sys.executable, "main.py", *DEMO_SIZED_DOWN, "--data-dir", str(data_dir), "--out-dir", str(out)]
    trained = run([*command, "--run-name", name])
    run_dir = out / name
    evaluated = run([sys.executable, "evaluate.py", "--run-dir", str(run_dir)])
    return run_dir, subprocess.CompletedProcess(
        trained.args, 0, trained.stdout + evaluated.stdout, trained.stderr + evaluated.stderr
    )


def test_same_seed_same_machine_gives_the_same_bytes_and_a_clean_console(synth_dir, tmp_path):
    data_dir, _ = synth_dir
    first, console = demo_run(data_dir, tmp_path, "first")
    second, _ = demo_run(data_dir, tmp_path, "second")
    assert (first / "oof.csv").read_bytes() == (second / "oof.csv").read_bytes()
    assert (first / "submission.csv").read_bytes() == (second / "submission.csv").read_bytes()
    for fold in (0, 1):
        a, b = load_file(first / f"fold{fold}.safetensors"), load_file(second / f"fold{fold}.safetensors")
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)

    # captured output is not a terminal: no bars, no carriage returns, no blank runs; one line per epoch
    for stream in (console.stdout, console.stderr):
        assert "\r" not in stream and "%|" not in stream
    epoch_lines = [line for line in console.stdout.splitlines() if line.startswith("fold ") and " epoch " in line]
    assert [line.split(":")[0] for line in epoch_lines] == [f"fold {f} epoch {e}/2" for f in (0, 1) for e in (1, 2)]
    assert "\n\n\n" not in console.stdout
