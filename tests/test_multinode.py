"""Training across several machines with Accelerate's own multi-node launch, two "machines" on this host.

One `accelerate launch --cpu --num_machines 2 --machine_rank R --main_process_ip 127.0.0.1 --main_process_port P
--num_processes 2 main.py ...` per machine, as a user types it on each, must train as one 2-process job (gloo over
TCP) into one run folder and write the same out-of-fold predictions, byte for byte, as the 2-process launch on one
machine (MPI-started, as in test_e2e.py), and the same fold checkpoints, tensor for tensor.

What Accelerate (1.15) does, and why the launches are written as they are:

- Its `--cpu` launcher starts the script as one plain process and hands it MASTER_ADDR and MASTER_PORT, but no rank
  (`--machine_rank` reaches only the GPU launcher, torchrun). Each machine's process learns its place from RANK and
  WORLD_SIZE, as a cluster's scheduler exports them (or PMI_RANK/PMI_SIZE under mpirun); without them each machine
  would train the whole run alone, as a separate 1-process job, and main.py refuses to (the last two tests).
- It sets OMP_NUM_THREADS to the physical cores divided by the processes it starts on that machine: 1 thread each for
  the MPI launch of 2 processes on a 2-core host, but 2 for each "machine" here, each believing it has the host to
  itself. The intra-op thread count changes how the CPU kernels split their sums: with 1 thread against 2, every
  out-of-fold logit differed, by up to 1.1e-4 (4.5%) after this training's two epochs (2.5e-9 after test_e2e.py's
  one). Backend and reduction are the same in both launches (gloo; two ranks, so each all-reduce adds the same two
  numbers), and with equal thread counts the two launches give identical bytes (checked with 1 and with 2 threads).
  Every launch here is given `--num_cpu_threads_per_process 1`, which also keeps the comparison independent of the
  host's core count.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import accelerate_launch
from safetensors.torch import load_file

from src.engine.train import machine_without_rank
from src.synth.generator import SynthConfig, write_dataset

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAUNCH_TIMEOUT_S = 300  # per launch (both machines together); CI never waits longer
# the same tiny training as test_e2e.py, with smaller batches and two epochs so that every fold takes several
# optimizer steps whose gradients are all-reduced across the machines
TRAINING = [
    "--model-name",
    "test_efficientnet",
    "--view",
    "channels",
    "--image-size",
    "32,64",
    "--epochs",
    "2",
    "--n-folds",
    "2",
    "--batch-size",
    "4",
    "--eval-batch-size",
    "7",  # does not divide the fold sizes: padding removed across machines too
    "--num-workers",
    "0",
    "--tracker",
    "none",
    "--lr",
    "1e-3",
]
# the same on every launch: CPU, full precision, no compilation, one intra-op thread per process (see above)
COMMON = ["--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1"]
# where a distributed process reads its place; none may leak in from the environment that runs the tests
PLACE = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "PMI_RANK", "PMI_SIZE")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """test_e2e.py's tiny data: 31 train cadences (odd on purpose), 11 test cadences."""
    path = tmp_path_factory.mktemp("multinode") / "input"
    write_dataset(path, SynthConfig(seed=3, pos_frac=0.3), n_train=31, n_test=11, workers=1, progress=False)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], log: Path, **env: str) -> tuple[subprocess.Popen, Path]:
    """Start `command` in its own process group (the launcher and the training process it starts), output to `log`."""
    environment = {k: v for k, v in os.environ.items() if k not in PLACE and not k.startswith("ACCELERATE_")}
    environment |= {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "WANDB_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return process, log


def finish(launches: dict[str, tuple[subprocess.Popen, Path]], timeout: float = LAUNCH_TIMEOUT_S) -> None:
    """Wait for every launch to succeed. The first failure, or the deadline, kills all of them (a machine left alone
    would wait for its peer until gloo's 30-minute timeout) and fails the test with every log."""
    deadline, failure = time.monotonic() + timeout, None
    try:
        while failure is None:
            codes = {name: process.poll() for name, (process, _) in launches.items()}
            if all(code == 0 for code in codes.values()):
                return
            failed = [name for name, code in codes.items() if code not in (None, 0)]
            if failed:
                failure = f"{', '.join(failed)} failed"
            elif time.monotonic() > deadline:
                failure = f"not finished after {timeout:.0f} s"
            else:
                time.sleep(0.2)
    finally:
        for process, _ in launches.values():
            if process.poll() is None:  # its process group is still ours: kill the launcher and what it started
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    logs = "\n".join(
        f"----- {name} (exit {process.returncode}): {log}\n{log.read_text()[-6000:]}"
        for name, (process, log) in launches.items()
    )
    pytest.fail(f"{failure}\n{logs}")


def test_two_machines_train_exactly_as_two_processes_on_one_machine(data_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    train = ["main.py", "--data-dir", str(data_dir), *TRAINING]

    # the reference: 2 processes on one machine, MPI-started (test_e2e.py's launch)
    # --main_process_port: not the default 29500, which another test's launch may hold
    one_machine = accelerate_launch(2, "--main_process_port", str(free_port()), *COMMON)
    reference = tmp_path / "one-machine"
    log = tmp_path / "one-machine.log"
    finish({"one machine": start([*one_machine, *train, "--out-dir", str(reference), "--run-name", "ddp"], log)})
    assert "2 process(es)" in log.read_text()
    reference_run = reference / "ddp"

    # two machines, one process each, each started by its own `accelerate launch`; no --run-name: the machines must
    # agree on the timestamped name that rank 0 chooses
    port, out_dir, machines = free_port(), tmp_path / "two-machines", {}
    for rank in (0, 1):
        multi_node = ["--num_machines", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1"]
        command = [
            str(BIN / "accelerate"),
            "launch",
            "--cpu",
            *multi_node,
            "--main_process_port",
            str(port),
            "--num_processes",
            "2",
            *COMMON,
            *train,
            "--out-dir",
            str(out_dir),
        ]
        machines[f"machine {rank}"] = start(command, tmp_path / f"machine{rank}.log", RANK=str(rank), WORLD_SIZE="2")
    finish(machines)

    runs = list(out_dir.iterdir())
    assert len(runs) == 1, f"the machines wrote {len(runs)} run folders: {runs}"
    run_dir = runs[0]
    for _, log in machines.values():  # each machine joined the one 2-process job, in the same run folder
        assert f"run folder: {run_dir}  (31 cadences, 2 process(es)" in log.read_text()

    oof = (run_dir / "oof.csv").read_bytes()
    assert len(pd.read_csv(run_dir / "oof.csv")) == 31
    assert oof == (reference_run / "oof.csv").read_bytes(), "out-of-fold predictions differ between the launches"
    assert (run_dir / "folds.csv").read_bytes() == (reference_run / "folds.csv").read_bytes()
    for fold in (0, 1):
        weights, expected = (load_file(run / f"fold{fold}.safetensors") for run in (run_dir, reference_run))
        assert weights.keys() == expected.keys()
        assert all(torch.equal(weights[name], expected[name]) for name in expected), f"fold {fold} weights differ"
    assert not (run_dir / "state").exists()  # the run completed: its resume state is cleared
    print(f"one-machine and two-machine launches, identical oof.csv: {time.monotonic() - started:.1f} s")


def test_a_machine_started_without_a_rank_is_refused_before_any_run_folder(data_dir: Path, tmp_path: Path) -> None:
    """The same launch without RANK/WORLD_SIZE: Accelerate's `--cpu` launcher makes it a 1-process job of its own,
    which would train the whole run alone into the folder the other machines share (seen before the check: both
    machines trained everything into one timestamped folder, metrics.csv holding each epoch twice). main.py says
    so and stops with exit 2 before writing anything. The main process address is never contacted (a documentation
    address, RFC 5737): a process without a rank joins no group."""
    out_dir = tmp_path / "outputs"
    command = [
        str(BIN / "accelerate"),
        "launch",
        "--cpu",
        "--num_machines",
        "2",
        "--machine_rank",
        "1",
        "--main_process_ip",
        "192.0.2.1",
        "--main_process_port",
        "29500",
        "--num_processes",
        "2",
        *COMMON,
        "main.py",
        "--data-dir",
        str(data_dir),
        "--out-dir",
        str(out_dir),
        *TRAINING,
    ]
    process, log = start(command, tmp_path / "machine1.log")
    try:
        process.wait(timeout=LAUNCH_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert "error: accelerate launch --cpu started this process for several machines (main process at 192.0.2.1)" in (
        output
    ), output[-6000:]
    assert "RANK=<machine rank> WORLD_SIZE=<number of machines>" in output
    assert not out_dir.exists()


@pytest.mark.parametrize(
    ("num_processes", "environ", "refused"),
    [
        (1, {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "10.0.0.1"}, "10.0.0.1"),
        (1, {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "node001"}, "node001"),
        (2, {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "10.0.0.1"}, None),  # it has its rank
        (1, {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"}, None),  # --num_processes 2 on one machine
        (1, {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "localhost"}, None),
        (1, {"ACCELERATE_USE_CPU": "True"}, None),  # one process asked for
        (1, {"ACCELERATE_USE_CPU": "False", "MASTER_ADDR": "10.0.0.1"}, None),  # not the CPU launcher
        (1, {"MASTER_ADDR": "10.0.0.1"}, None),  # python main.py
    ],
)
def test_which_processes_lack_a_rank(num_processes: int, environ: dict[str, str], refused: str | None) -> None:
    assert machine_without_rank(num_processes, environ) == refused
