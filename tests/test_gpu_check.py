"""bench/gpu_check.py: its dry run goes through every part on the CPU (so the GPU check cannot rot between the
sessions that have a GPU), and its checks fail where they must."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.lib.gpu_check import Report, isolated, report_markdown, step_problems

REPO = Path(__file__).resolve().parents[1]


def sleep_then_write(seconds: float, out: str) -> None:
    time.sleep(seconds)
    Path(out).write_text("[]")


def exit_hard(out: str) -> None:
    Path(out).write_text(json.dumps([{"recipe": "first", "problems": []}]))
    os._exit(3)


def good_row(**changes) -> dict:
    row = {
        "recipe": "demo_cpu",
        "model_name": "resnet10t",
        "precision": "fp16",
        "channels_last": False,
        "compile": False,
        "batch_size": 32,
        "steps": 5,
        "warmup_seconds": 1.0,
        "step_seconds": 0.1,
        "losses": [0.7, 0.6],
        "skipped_batches": 0,
        "weights_moved": True,
        "grad_scaler": True,
        "loss_scale": 65536.0,
        "peak_memory_gib": 1.5,
        "problems": [],
    }
    return {**row, **changes}


def test_step_checks_catch_what_must_not_pass():
    assert step_problems(good_row(), cuda=True) == []
    assert "non-finite" in step_problems(good_row(losses=[0.7, float("nan")]), cuda=True)[0]
    assert "non-finite" in step_problems(good_row(skipped_batches=1), cuda=True)[0]
    assert "did not change" in step_problems(good_row(weights_moved=False), cuda=True)[0]
    assert "scaler missing in fp16" in step_problems(good_row(grad_scaler=False, loss_scale=None), cuda=True)[0]
    assert "scaler present in bf16" in step_problems(good_row(precision="bf16"), cuda=True)[0]
    assert step_problems(good_row(grad_scaler=False), cuda=False) == []  # Accelerate has no scaler on a CPU


def test_isolated_part_reports_a_killed_or_crashed_process(tmp_path):
    started = time.perf_counter()
    rows = isolated(sleep_then_write, (60.0,), tmp_path / "slow.json", timeout_s=3)
    assert time.perf_counter() - started < 30
    assert rows == [{"recipe": "(rest)", "problems": ["killed after 3 s"]}]
    rows = isolated(exit_hard, (), tmp_path / "crash.json", timeout_s=60)
    assert rows[0]["recipe"] == "first"
    assert rows[1]["problems"] == ["the process ended with exit code 3"]


def test_report_lists_every_problem():
    env = {"cpus_usable": 2, "torch": "x", "accelerate": "y", "timm": "z", "gpu": None}
    report = Report("python bench/gpu_check.py", {}, env)
    report.parts["steps"] = {
        "seconds": 1.0,
        "rows": [good_row(), {"recipe": "swin_tiny", "precision": "bf16", "problems": ["RuntimeError: boom"]}],
    }
    report.parts["detection"] = {"seconds": 2.0, "problems": ["exit 1: error: bad"]}
    text = report_markdown(report)
    assert "**2 problem(s):**" in text
    assert "- steps: swin_tiny bf16: RuntimeError: boom" in text
    assert "- detection: exit 1: error: bad" in text
    assert "| demo_cpu | fp16 | no | no | 32 | 5 | 1.0 | 0.1 | 0.7 / 0.6 | yes (65536) | 1.5 | ok |" in text


def test_dry_run_goes_through_every_part(tmp_path):
    out = tmp_path / "check"
    command = [sys.executable, "bench/gpu_check.py", "--out", str(out), "--dry-run"]
    command += ["--recipes", "configs/demo_cpu.yaml", "configs/scan_cpu.yaml"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    parts = report["parts"]
    assert set(parts) == {"data", "steps", "compile", "detection", "throughput"}
    assert set(parts["data"]["generated"]) == {"kaggle", "snippets"}  # both generators, as on a GPU machine
    steps = parts["steps"]["rows"]
    assert [(r["recipe"], r["precision"]) for r in steps] == [
        ("demo_cpu", "fp16"),
        ("scan_cpu", "fp16"),
        ("demo_cpu", "bf16"),
        ("scan_cpu", "bf16"),
    ]
    for row in steps + parts["compile"]["rows"]:
        assert row["problems"] == [] and row["weights_moved"] and len(row["losses"]) == 2
    assert [(r["channels_last"], r["compile"]) for r in parts["compile"]["rows"]] == [
        (False, False),
        (True, False),
        (True, True),
    ]
    assert [e["epoch"] for e in parts["detection"]["epochs"]] == [1, 2]
    assert [m["recipe"] for m in parts["throughput"]["models"]] == ["demo_cpu", "scan_cpu"]
    assert all(f["loader_fed_step_seconds"] > 0 for f in parts["throughput"]["fed"])
    text = (out / "report.md").read_text()
    assert "**Every check passed.**" in text and "none (dry run on the CPU)" in text

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 2
    assert (
        again.stderr.strip()
        == f"error: {out / 'report.md'}: already exists; pass --overwrite to replace it or choose another --out"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the real check runs")
def test_without_a_gpu_the_real_check_says_so(tmp_path):
    out = tmp_path / "check"
    command = [sys.executable, "bench/gpu_check.py", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "no GPU is visible to torch" in (out / "report.md").read_text()


def test_a_data_folder_that_is_not_one_is_refused_in_one_line(tmp_path):
    command = [sys.executable, "bench/gpu_check.py", "--out", str(tmp_path / "check"), "--dry-run"]
    done = subprocess.run(
        [*command, "--kaggle-data", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: {tmp_path}: no train_labels.csv; name a Kaggle-layout folder, or leave the flag out to generate one"
    )
    assert not (tmp_path / "check").exists()
