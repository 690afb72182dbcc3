"""End to end through the command a user types, `python scan.py`, on tiny generated cadences: every output of a
cadence and of a catalog, turbo_seti's .dat format, resuming (a rerun, a killed scan), refusing to mix scans,
bad input as one `error:` line, and the same candidates from a process pool and from Ray.

Each scan.py process spends most of its time importing torch, so independent commands run two at a time
(`run_all`): the machine has two cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_scan_checkpoint

from src.synth.filterbank import main as synthesise

REPO = Path(__file__).resolve().parents[1]
TURBO_SETI_PYTHON = Path("/tmp/ts/bin/python")
# tiny cadences: coarse channels of 1024 fine channels x 16 rows, drifts up to 1 Hz/s, bright needles
SYNTH = ["--fine-channels", "1024", "--max-drift", "1", "--snr-min", "30", "--snr-max", "80", "--needles", "3"]
SYNTH += ["--rfi", "3", "--workers", "1"]
SCAN = ["--max-drift", "1", "--plot-top", "0"]  # plots take a good part of a tiny scan
ONE = ["--max-drift", "1", "--plot-top", "1"]  # the scan whose candidate plot is checked
CADENCE_OUTPUTS = ("hits.csv", "events.csv", "candidates.csv", "plots/overview.png", "report.md", "scan.json")
DAT_COLUMNS = [
    "Top_Hit_#",
    "Drift_Rate",
    "SNR",
    "Uncorrected_Frequency",
    "Corrected_Frequency",
    "Index",
    "freq_start",
    "freq_end",
    "SEFD",
    "SEFD_freq",
    "Coarse_Channel_Number",
    "Full_number_of_hits",
]
ENV = {
    **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    "RAY_AUTH_MODE": "disabled",  # Ray's token mode warns on every start
    "PYTHONWARNINGS": "ignore",
}
TIMEOUT_S = 300


def scan_command(*args) -> list[str]:
    return [sys.executable, "scan.py", *map(str, args)]


def run_all(commands: dict[str, list[str]], at_once: int = 2, env: dict | None = None) -> dict:
    """Run the commands (in the repository root), `at_once` at a time; their CompletedProcess by name."""
    pending, running, results = list(commands.items()), {}, {}
    deadline = time.monotonic() + TIMEOUT_S
    with contextlib.ExitStack() as files:
        try:
            while pending or running:
                while pending and len(running) < at_once:
                    name, command = pending.pop(0)
                    # newline="": carriage returns stay as written, so a cleared progress bar is not a line
                    out, err = (files.enter_context(tempfile.TemporaryFile("w+", newline="")) for _ in range(2))
                    process = subprocess.Popen(command, cwd=REPO, env=env or ENV, stdout=out, stderr=err, text=True)
                    running[name] = (command, process, out, err)
                for name, (command, process, out, err) in list(running.items()):
                    if process.poll() is not None:
                        out.seek(0), err.seek(0)
                        results[name] = subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())
                        del running[name]
                assert time.monotonic() < deadline, f"still running after {TIMEOUT_S} s: {list(running)}"
                time.sleep(0.05)
        finally:
            for _, process, _, _ in running.values():
                process.kill()
                process.wait()
    return results


def scan(*args, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = run_all({"scan": scan_command(*args)}, env=env)["scan"]
    if check:
        succeeded(result)
    return result


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{' '.join(result.args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The user error a failed scan printed: exit code 2, exactly one stderr line `error: ...` as a terminal shows
    it (a progress bar cleared with carriage returns is not a line), no traceback."""
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stderr[-5000:]}"
    assert "Traceback" not in result.stderr, result.stderr
    shown = [line.rsplit("\r", 1)[-1] for line in result.stderr.split("\n")]
    lines = [line for line in shown if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def synth(out: Path, *args: str) -> Path:
    synthesise(["--out", str(out), *SYNTH, *args])
    return out


def cadence_files(data: Path, cadence: int = 0) -> list[Path]:
    catalog = pd.read_csv(data / "catalog.csv")
    return [data / p for p in catalog[catalog["cadence"] == cadence]["path"]]


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder`: (size, modification time)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def chunk_marks(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (folder / "chunks").glob("*.done.json")}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """`catalog`: two cadences of 2 coarse channels and their catalog.csv; `fil`: the first of them as .fil files
    (the same samples and headers, less the header's nfpc); `long`: one cadence of 6 coarse channels."""
    root = tmp_path_factory.mktemp("data")
    return {
        "catalog": synth(root / "catalog", "--n-cadences", "2", "--coarse-channels", "2", "--seed", "3"),
        "fil": synth(root / "fil", "--n-cadences", "1", "--coarse-channels", "2", "--seed", "3", "--format", "fil"),
        "long": synth(root / "long", "--n-cadences", "1", "--coarse-channels", "6", "--seed", "11"),
    }


@pytest.fixture(scope="module")
def scans(data, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """The scans the tests read, run two at a time: cadence 0 given file by file (`one`), the catalog in one
    process (`catalog`) and in a pool of two (`pool`), cadence 0 as .fil files (`fil`; sigproc headers have no
    nfpc, so the coarse channel width is given), the 6-coarse-channel cadence whole (`long`) and cadence 0 with
    a threshold no hit passes (`quiet`: not checked here)."""
    root = tmp_path_factory.mktemp("scans")
    catalog = data["catalog"] / "catalog.csv"
    commands = {
        "one": ("--cadence", *cadence_files(data["catalog"]), "--out", root / "one", *ONE),
        "catalog": ("--catalog", catalog, "--out", root / "catalog", *SCAN),
        "pool": ("--catalog", catalog, "--out", root / "pool", *SCAN, "--workers", "2"),
        "fil": ("--cadence", *cadence_files(data["fil"]), "--out", root / "fil", *SCAN, "--fine-per-coarse", "1024"),
        "long": ("--cadence", *cadence_files(data["long"]), "--out", root / "long", *SCAN),
        "quiet": ("--cadence", *cadence_files(data["catalog"]), "--out", root / "quiet", *SCAN, "--snr", "1e6"),
    }
    results = run_all({name: scan_command(*args) for name, args in commands.items()})
    return {name: (results[name] if name == "quiet" else succeeded(results[name]), root / name) for name in commands}


# ------------------------------------------------------------------------------------------------ outputs ---


def test_one_cadence_writes_every_output(scans, data):
    result, out = scans["one"]
    files = cadence_files(data["catalog"])
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    assert folder.name == "SYNTH_T000"  # the target's source name
    assert sorted(p.name for p in (folder / "hits").glob("*.dat")) == sorted(f"{f.stem}.dat" for f in files)
    for name in CADENCE_OUTPUTS:
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    assert (out / "report.md").is_file() and (out / "candidates.csv").is_file()
    assert str(out / "report.md") in result.stdout

    hits = pd.read_csv(folder / "hits.csv")
    assert len(hits) > 0 and set(hits["obs"]) <= set(range(6))
    candidates = pd.read_csv(folder / "candidates.csv")
    assert len(candidates) > 0, "bright needles in every ON: some level-3 candidates"
    assert candidates["rank"].tolist() == list(range(1, len(candidates) + 1))
    assert candidates["score"].is_monotonic_decreasing and (candidates["level"] >= 3).all()
    assert (candidates["off_hits"] == 0).all() and (candidates["in_n_ons"] == 3).all()
    plots = sorted(p.name for p in (folder / "plots").glob("candidate_*.png"))
    assert plots == ["candidate_001.png"]  # --plot-top 1
    report = (folder / "report.md").read_text()
    assert "pattern ABACAD" in report and "SYNTH_T000" in report

    total = pd.read_csv(out / "candidates.csv")
    assert total["catalog_rank"].tolist() == list(range(1, len(candidates) + 1))
    pd.testing.assert_frame_equal(total.drop(columns="catalog_rank"), candidates)
    # the same cadence scanned from the catalog (folder "0") found the same candidates
    from_catalog = pd.read_csv(scans["catalog"][1] / "0" / "candidates.csv")
    pd.testing.assert_frame_equal(candidates.drop(columns="cadence"), from_catalog.drop(columns="cadence"))


def test_fil_cadence_finds_what_the_h5_cadence_finds(scans, data):
    h5, fil = scans["one"][1] / "SYNTH_T000", scans["fil"][1] / "SYNTH_T000"
    assert sorted(p.name for p in (fil / "hits").glob("*.dat")) == sorted(p.name for p in (h5 / "hits").glob("*.dat"))
    pd.testing.assert_frame_equal(pd.read_csv(fil / "candidates.csv"), pd.read_csv(h5 / "candidates.csv"))
    fil_hits, h5_hits = pd.read_csv(fil / "hits.csv"), pd.read_csv(h5 / "hits.csv")
    assert fil_hits["file"].str.endswith(".fil").all()
    pd.testing.assert_frame_equal(fil_hits.drop(columns="file"), h5_hits.drop(columns="file"))


def test_cadence_without_hits_gets_every_output(scans):
    result, out = scans["quiet"]
    succeeded(result)
    folder = out / "SYNTH_T000"
    for name in CADENCE_OUTPUTS:
        assert (folder / name).is_file(), name
    assert len(pd.read_csv(folder / "hits.csv")) == 0 and len(pd.read_csv(folder / "candidates.csv")) == 0
    dats = list((folder / "hits").glob("*.dat"))
    assert len(dats) == 6 and all(len(p.read_text().splitlines()) == 9 for p in dats)
    assert "No candidate passed" in (folder / "report.md").read_text()
    assert (out / "report.md").is_file()


def dat_files(scans) -> list[Path]:
    return sorted((scans["one"][1] / "SYNTH_T000" / "hits").glob("*.dat"))


def test_dat_files_have_turbo_seti_layout(scans, data):
    folder = scans["one"][1] / "SYNTH_T000"
    hits = pd.read_csv(folder / "hits.csv")
    for k, path in enumerate(cadence_files(data["catalog"])):
        lines = (folder / "hits" / f"{path.stem}.dat").read_text().splitlines()
        header, rows = lines[:9], lines[9:]
        assert header[0] == header[2] == "# -------------------------- o --------------------------"
        assert header[1] == f"# File ID: {path.stem}.h5 "  # turbo_seti writes the trailing space too
        assert header[3] == f"# Source:{path.stem.split('_', 2)[2]}"
        assert [f.split(":")[0] for f in header[4].split("\t")] == ["# MJD", "RA", "DEC"]
        assert [f.split(":")[0] for f in header[5].split("\t")] == [
            "# DELTAT",
            "DELTAF(Hz)",
            "max_drift_rate",
            "obs_length",
        ]
        assert float(header[5].split("\t")[2].split(":")[1]) == 1.0  # --max-drift
        assert header[6] == header[8] == "# --------------------------"
        assert header[7] == "# " + "".join(f"{c} \t" for c in DAT_COLUMNS)  # turbo_seti's column line, exactly
        these = hits[hits["obs"] == k]
        assert len(rows) == len(these)
        for number, row in enumerate(rows, start=1):
            fields = row.rstrip("\t").split("\t")
            assert len(fields) == 12, row
            assert fields[0] == f"{number:06d}"
            [float(f) for f in fields]
        if rows:
            first = rows[0].split("\t")
            assert float(first[3]) == pytest.approx(these["frequency"].iloc[0], abs=1e-6)
            assert float(first[1]) == pytest.approx(these["drift_rate"].iloc[0], abs=1e-6)


def test_dat_files_read_by_turbo_seti_here(scans):
    """In an interpreter with turbo_seti installed (not this project's venv: see the next test)."""
    find_event = pytest.importorskip("turbo_seti.find_event.find_event", reason="turbo_seti is not installed here")
    for path in dat_files(scans):
        assert len(find_event.read_dat(str(path))) == len(path.read_text().splitlines()) - 9


READ_DATS = """
import json, sys
from turbo_seti.find_event.find_event import read_dat
out = {}
for name in sys.argv[1:]:
    t = read_dat(name)
    first = t.iloc[0] if len(t) else {}
    out[name] = {
        "n": len(t),
        "columns": list(t.columns),
        "drift": [float(x) for x in t["DriftRate"]] if len(t) else [],
        "freq": [float(x) for x in t["Freq"]] if len(t) else [],
        "source": str(first.get("Source", "")),
        "max_drift": str(first.get("max_drift_rate", "")),
    }
print(json.dumps(out))
"""


@pytest.mark.skipif(not TURBO_SETI_PYTHON.exists(), reason=f"no turbo_seti interpreter at {TURBO_SETI_PYTHON}")
def test_dat_files_read_by_turbo_seti_read_dat(scans):
    paths = dat_files(scans)
    result = subprocess.run(
        [str(TURBO_SETI_PYTHON), "-W", "ignore", "-c", READ_DATS, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tables = json.loads(result.stdout.strip().splitlines()[-1])
    hits = pd.read_csv(scans["one"][1] / "SYNTH_T000" / "hits.csv")
    assert sum(t["n"] for t in tables.values()) == len(hits) > 0
    for k, path in enumerate(paths):
        table, these = tables[str(path)], hits[hits["obs"] == k]
        assert table["n"] == len(these)
        assert {"DriftRate", "SNR", "Freq", "ChanIndx", "CoarseChanNum", "FullNumHitsInRange", "MJD"} <= set(
            table["columns"]
        )
        assert table["drift"] == pytest.approx(these["drift_rate"].tolist(), abs=1e-6)
        assert table["freq"] == pytest.approx(these["frequency"].tolist(), abs=1e-6)
        if table["n"]:
            assert table["source"] == these["source"].iloc[0].upper() and float(table["max_drift"]) == 1.0


def test_catalog_scans_every_cadence(scans):
    out = scans["catalog"][1]
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["0", "1"]  # the catalog's cadence column names the folders
    tables = []
    for name in folders:
        assert len(list((out / name / "hits").glob("*.dat"))) == 6
        for output in CADENCE_OUTPUTS:
            assert (out / name / output).is_file(), f"{name}/{output}"
        tables.append(pd.read_csv(out / name / "candidates.csv"))
    combined = pd.read_csv(out / "candidates.csv")
    assert len(combined) == sum(map(len, tables)) > 0
    assert combined["catalog_rank"].tolist() == list(range(1, len(combined) + 1))
    assert combined["score"].is_monotonic_decreasing
    with_candidates = [int(n) for n, t in zip(folders, tables, strict=True) if len(t)]
    assert sorted(combined["cadence"].unique()) == with_candidates
    report = (out / "report.md").read_text()
    assert "[0](0/report.md)" in report and "[1](1/report.md)" in report


def test_process_pool_finds_what_one_process_finds(scans):
    pool, alone = scans["pool"][1], scans["catalog"][1]
    pd.testing.assert_frame_equal(pd.read_csv(pool / "candidates.csv"), pd.read_csv(alone / "candidates.csv"))
    for name in ("0", "1"):
        for table in ("events.csv", "hits.csv"):
            pd.testing.assert_frame_equal(
                pd.read_csv(pool / name / table), pd.read_csv(alone / name / table), obj=f"{name}/{table}"
            )


# ------------------------------------------------------------------------------------------------ resuming ---


def test_rerun_is_a_no_op_and_overwrite_replaces(scans, data, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(scans["one"][1], out)
    folder, files = out / "SYNTH_T000", cadence_files(data["catalog"])
    before, marks = (folder / "candidates.csv").read_bytes(), chunk_marks(folder)
    assert len(marks) == 2

    scan("--cadence", *files, "--out", out, *ONE)  # the same command: nothing searched again
    assert (folder / "candidates.csv").read_bytes() == before
    assert chunk_marks(folder) == marks

    scan("--cadence", *files, "--out", out, *ONE, "--snr", "12", "--overwrite")
    assert json.loads((folder / "scan.json").read_text())["settings"]["snr"] == 12
    assert len(chunk_marks(folder)) == 2 and (folder / "candidates.csv").is_file()
    assert not set(chunk_marks(folder).items()) & set(marks.items())  # every chunk searched again


def test_killed_scan_resumes_to_the_same_candidates(scans, data, tmp_path):
    out = tmp_path / "interrupted"
    command = scan_command("--cadence", *cadence_files(data["long"]), "--out", out, *SCAN)
    process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not list(out.glob("*/chunks/*.done.json")):
            assert process.poll() is None, "the scan ended before its first chunk was done"
            assert time.monotonic() < deadline, f"no chunk done within {TIMEOUT_S} s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    done_when_killed = chunk_marks(folder)
    assert 1 <= len(done_when_killed) < 6, "killed after the first and before the last of 6 chunks"
    assert not (folder / "candidates.csv").exists()

    scan(*command[2:])  # the same command again
    resumed = chunk_marks(folder)
    assert len(resumed) == 6
    assert {k: resumed[k] for k in done_when_killed} == done_when_killed  # chunks done before were not redone

    whole = scans["long"][1]
    for name in ("candidates.csv", "events.csv", "hits.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(folder / name), pd.read_csv(whole / folder.name / name), obj=name)
    pd.testing.assert_frame_equal(pd.read_csv(out / "candidates.csv"), pd.read_csv(whole / "candidates.csv"))
    assert len(pd.read_csv(out / "candidates.csv")) > 0


# ---------------------------------------------------------------------------------------------- bad input ---

CHECKED_BEFORE_WRITING = [  # each once wrote a folder or a traceback before it was checked
    "catalog with other settings",
    "fine-per-coarse not a divisor",
    "unknown device",
    "bandpass bin wider than a coarse channel",
    "name leaving --out",
    "windows without a model",
]


@pytest.fixture(scope="module")
def bad_runs(scans, data, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path, dict, list[str]]]:
    """Every bad command, each with its own folder holding --out: (result, that folder, its files before, what the
    error must say)."""
    root = tmp_path_factory.mktemp("bad")
    files, catalog = cadence_files(data["catalog"]), data["catalog"] / "catalog.csv"
    one = root / "other settings" / "out"
    shutil.copytree(scans["one"][1], one)
    catalog_copy = root / "catalog with other settings" / "out"
    shutil.copytree(scans["catalog"][1], catalog_copy)
    not_a_scan = root / "not a scan" / "out" / "SYNTH_T000"
    not_a_scan.mkdir(parents=True)
    (not_a_scan / "notes.txt").write_text("mine")

    def cadence(name: str, *args, given=files) -> list[str]:
        return scan_command("--cadence", *given, "--out", root / name / "out", *args)

    cases = {
        # name: (command, what the error says)
        "missing file": (
            cadence("missing file", *SCAN, given=[*files[:5], root / "gone.h5"]),
            [f"{root}/gone.h5: no such file"],
        ),
        "five files": (cadence("five files", *SCAN, given=files[:5]), [f"{files[0]}: 5 files given", "--pattern"]),
        "max drift nan": (cadence("max drift nan", "--max-drift", "nan"), ["--max-drift nan"]),
        "max drift -1": (cadence("max drift -1", "--max-drift", "-1"), ["--max-drift -1"]),
        "other settings": (
            cadence("other settings", *ONE, "--snr", "12"),
            [f"{one}/SYNTH_T000: holds a scan", "--overwrite"],
        ),
        "not a scan": (cadence("not a scan", *SCAN), [f"{not_a_scan}: holds files that are not a scan", "--overwrite"]),
        "catalog with other settings": (
            scan_command("--catalog", catalog, "--out", catalog_copy, *SCAN, "--snr", "12"),
            [f"{catalog_copy}/0: holds a scan", "--overwrite"],
        ),
        "fine-per-coarse not a divisor": (
            cadence("fine-per-coarse not a divisor", *SCAN, "--fine-per-coarse", "3000"),
            ["3000-channel coarse channels"],
        ),
        "unknown device": (cadence("unknown device", *SCAN, "--device", "bogus"), ["bogus"]),
        "bandpass bin wider than a coarse channel": (
            cadence("bandpass bin wider than a coarse channel", *SCAN, "--bandpass-bin", "100000"),
            ["--bandpass-bin"],
        ),
        "name leaving --out": (cadence("name leaving --out", *SCAN, "--name", "../escaped"), ["--name"]),
        "windows without a model": (
            cadence("windows without a model", *SCAN, "--windows"),
            ["--windows", "--checkpoints"],
        ),
    }
    for name in cases:
        (root / name).mkdir(parents=True, exist_ok=True)
    before = {name: tree(root / name) for name in cases}
    results = run_all({name: command for name, (command, _) in cases.items()})
    return {name: (results[name], root / name, before[name], says) for name, (_, says) in cases.items()}


BAD_INPUT = [
    "missing file",
    "five files",
    "max drift nan",
    "max drift -1",
    "other settings",
    "not a scan",
    *CHECKED_BEFORE_WRITING,
]


@pytest.mark.parametrize(
    "name",
    BAD_INPUT,
)
def test_bad_input_is_one_error_line_and_changes_nothing(bad_runs, name):
    result, folder, before, says = bad_runs[name]
    message = one_error_line(result)
    for part in says:
        assert part in message, message
    assert tree(folder) == before, "a failed scan wrote or changed files"


# ----------------------------------------------------------------------------------------------------- Ray ---


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray started here (address="local": never a stale cluster recorded in /tmp/ray); its address."""
    previous = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        import ray
    except ImportError as err:
        pytest.skip(f"ray is not installed in this interpreter ({err}); it is being added to requirements.txt")
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()
    if previous is None:
        os.environ.pop("RAY_AUTH_MODE")
    else:
        os.environ["RAY_AUTH_MODE"] = previous


def test_ray_engine_finds_what_one_process_finds(ray_cluster, scans, data, tmp_path):
    out, alone = tmp_path / "ray", scans["catalog"][1]
    scan("--catalog", data["catalog"] / "catalog.csv", "--out", out, *SCAN, "--engine", "ray", "--address", ray_cluster)
    pd.testing.assert_frame_equal(pd.read_csv(out / "candidates.csv"), pd.read_csv(alone / "candidates.csv"))
    for name in ("0", "1"):
        assert len(list((out / name / "hits").glob("*.dat"))) == 6
        pd.testing.assert_frame_equal(
            pd.read_csv(out / name / "events.csv"), pd.read_csv(alone / name / "events.csv"), obj=name
        )


def test_ray_task_refusing_a_folder_is_one_error_line(ray_cluster, scans, data, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(scans["one"][1], out)
    refused = scan(
        *("--cadence", *cadence_files(data["catalog"]), "--out", out, *ONE, "--snr", "12"),
        *("--engine", "ray", "--address", ray_cluster),
        check=False,
    )
    assert f"{out}/SYNTH_T000: holds a scan" in one_error_line(refused)


class _RayInitCalled(Exception):
    pass


@pytest.mark.parametrize("address, expected", [(None, "local"), ("auto", "auto"), ("10.0.0.1:6379", "10.0.0.1:6379")])
def test_ray_engine_without_address_starts_a_fresh_local_ray(monkeypatch, tmp_path, address, expected):
    """Without --address the scan starts its own Ray (address="local"): a plain ray.init() would join the cluster
    recorded in /tmp/ray/ray_current_cluster, and where that cluster is gone it retries for minutes (seen here).
    Checked with a stand-in for ray (a real start takes ~10 s on this machine)."""
    from src.search.scan import Execution, ScanSettings, scan_catalog

    addresses = []

    def init(*args, **kwargs):
        addresses.append(kwargs.get("address", args[0] if args else None))
        raise _RayInitCalled

    fake_ray = types.SimpleNamespace(is_initialized=lambda: False, init=init, shutdown=lambda: None)
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(_RayInitCalled):
        scan_catalog([], tmp_path, ScanSettings(), Execution(engine="ray", address=address))
    assert addresses == [expected]


# ------------------------------------------------------------------------------------ scoring with a model ---
# Checkpoints made here with random weights: what is tested is the plumbing (snippets, scores, ranking,
# resuming, refusals, Ray); what a trained model finds is the benchmark's (bench/scan.py).
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """`run`: a run folder of two folds; `other`: another model of the same geometry; `kaggle`: the Kaggle
    geometry; `rows`: 32 rows per observation; `damaged`: weights of another backbone than its config names."""
    root = tmp_path_factory.mktemp("checkpoints")
    write_scan_checkpoint(root / "run" / "fold0.safetensors", 0, seed=0)
    write_scan_checkpoint(root / "run" / "fold1.safetensors", 1, seed=1)
    return {
        "run": root / "run",
        "other": write_scan_checkpoint(root / "other.safetensors", seed=2),
        "kaggle": write_scan_checkpoint(root / "kaggle.safetensors", observation_shape=[273, 256], window="fixed"),
        "rows": write_scan_checkpoint(root / "rows.safetensors", observation_shape=[32, 64]),
        "damaged": write_scan_checkpoint(root / "damaged.safetensors", weights_of={"model_name": "resnet18d"}),
    }


@pytest.fixture(scope="module")
def model_scans(data, checkpoints, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """The catalog scored by the two-fold run (`model`), cadence 0 searched first and scored afterwards in the
    same folder (`later`), and the refusals (run on cadence 0)."""
    root = tmp_path_factory.mktemp("model-scans")
    catalog, one = data["catalog"] / "catalog.csv", cadence_files(data["catalog"])
    first = scan("--cadence", *one, "--out", root / "later", *SCAN)  # searched without a model
    assert first.returncode == 0
    commands = {
        "model": ("--catalog", catalog, "--out", root / "model", *SCAN, "--checkpoints", checkpoints["run"]),
        "later": ("--cadence", *one, "--out", root / "later", *SCAN, "--checkpoints", checkpoints["run"]),
    }
    for name in ("kaggle", "rows", "damaged"):
        commands[name] = ("--cadence", *one, "--out", root / name, *SCAN, "--checkpoints", checkpoints[name])
    commands["missing"] = ("--cadence", *one, "--out", root / "missing", "--checkpoints", root / "no-such-run")
    results = run_all({name: scan_command(*args) for name, args in commands.items()})
    return {name: (results[name], root / name) for name in commands}


def test_model_scores_every_event_and_ranks_the_candidates(model_scans, scans):
    result, out = model_scans["model"]
    succeeded(result)
    for name in ("0", "1"):
        events = pd.read_csv(out / name / "events.csv")
        plain = pd.read_csv(scans["catalog"][1] / name / "events.csv")
        assert len(events) > 0 and events["model_logit"].notna().all()
        assert events["model_score"].between(0, 1).all()
        # keeping snippets changes nothing the search reports
        pd.testing.assert_frame_equal(events.drop(columns=["model_logit", "model_score"]), plain, obj=name)
        candidates = pd.read_csv(out / name / "candidates.csv")
        assert len(candidates) == len(events)  # --checkpoints lowers the default filter level to 1: the model ranks all
        assert candidates["model_score"].is_monotonic_decreasing
        report = (out / name / "report.md").read_text()
        assert "Model: 2 checkpoint(s) of resnet10t, TTA identity, hflip" in report
        passing = int((candidates["model_score"] >= 0.5).sum())
        assert f"At the threshold 0.5: **{passing}** of {len(candidates)} to review" in report
    combined = pd.read_csv(out / "candidates.csv")
    assert combined["model_score"].is_monotonic_decreasing and len(combined) == sum(
        len(pd.read_csv(out / n / "candidates.csv")) for n in ("0", "1")
    )


def test_model_scores_are_the_fold_ensemble_of_the_snippets(model_scans, checkpoints):
    """The scores written are the two checkpoints' TTA-averaged logits of the chunk's snippets, averaged; and
    each event's snippet follows it: a bright needle's ON windows hold its line near their centre."""
    import numpy as np

    from src.engine.scan_model import SnippetScorer, open_scan_model

    out = model_scans["model"][1] / "0"
    snippets = np.load(out / "chunks" / "00000.snippets.npy")
    events = pd.read_csv(out / "chunks" / "00000.events.csv")
    assert snippets.shape == (len(events), 6, 16, 64) and snippets.dtype == np.float16
    written = pd.read_csv(out / "chunks" / "00000.model.csv")["model_logit"].to_numpy()
    folds = [checkpoints["run"] / f"fold{k}.safetensors" for k in (0, 1)]
    each = [SnippetScorer(open_scan_model([p]))(snippets) for p in folds]
    np.testing.assert_allclose(written, (each[0] + each[1]) / 2, rtol=1e-4, atol=1e-4)
    assert not np.allclose(each[0], each[1])
    best = events.sort_values("snr", ascending=False).index[0]
    centre = np.abs(snippets[best].astype(float)).argmax(axis=-1)[[0, 2, 4]]  # (ON observations, rows)
    assert np.median(np.abs(centre - 32)) <= 4


def test_a_searched_folder_is_scored_without_a_new_search_and_a_rerun_changes_nothing(model_scans):
    result, out = model_scans["later"]
    succeeded(result)
    folder = out / "SYNTH_T000"
    assert (folder / "model.json").is_file() and len(list((folder / "chunks").glob("*.model.csv"))) == 2
    kept = {k: v for k, v in tree(out).items() if "/chunks/" in k or k.endswith("model.json")}
    succeeded(scan(*result.args[2:]))  # the same command again: nothing searched or scored again
    assert kept == {k: v for k, v in tree(out).items() if "/chunks/" in k or k.endswith("model.json")}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("kaggle", "kaggle.safetensors: trained on Kaggle-style snippets (273 rows x 256 channels"),
        ("rows", "rows.safetensors: trained on 32 rows per observation; "),
        ("damaged", "damaged.safetensors: weights do not fit the model"),
        ("missing", "no-such-run: no such checkpoint file or run folder"),
    ],
)
def test_a_model_that_does_not_fit_is_one_error_line_before_anything_is_written(model_scans, name, expected):
    result, out = model_scans[name]
    assert expected in one_error_line(result)
    assert not out.exists() or not any(out.rglob("*.csv"))


def test_other_checkpoints_on_a_scored_folder_are_refused(model_scans, checkpoints, data):
    out = model_scans["later"][1]
    before = tree(out)
    refused = scan(
        "--cadence",
        *cadence_files(data["catalog"]),
        "--out",
        out,
        *SCAN,
        "--checkpoints",
        checkpoints["other"],
        check=False,
    )
    assert "holds scores of other checkpoints (model.json); pass --overwrite" in one_error_line(refused)
    assert tree(out) == before


def test_ray_engine_scores_what_one_process_scores(ray_cluster, model_scans, data, checkpoints, tmp_path):
    out, alone = tmp_path / "ray", model_scans["model"][1]
    scan(
        *("--catalog", data["catalog"] / "catalog.csv", "--out", out, *SCAN, "--checkpoints", checkpoints["run"]),
        *("--engine", "ray", "--address", ray_cluster, "--model-actors", "2"),
    )
    for name in ("0", "1"):
        pd.testing.assert_frame_equal(
            pd.read_csv(out / name / "events.csv"), pd.read_csv(alone / name / "events.csv"), obj=name, atol=1e-4
        )
    pd.testing.assert_frame_equal(pd.read_csv(out / "candidates.csv"), pd.read_csv(alone / "candidates.csv"), atol=1e-4)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny model trained the way a user trains the shipped one: `python -m src.synth.snippets` data and
    `main.py --config configs/scan_cpu.yaml`, shrunk (64-pixel windows, one epoch, one fold of two)."""
    root = tmp_path_factory.mktemp("trained")
    generate = [sys.executable, "-m", "src.synth.snippets", "--out", root / "snippets", "--n-train", "48"]
    generate += ["--n-test", "16", "--channels", "64", "--seed", "0", "--workers", "1"]
    made = subprocess.run(list(map(str, generate)), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    succeeded(made)
    command = [sys.executable, "main.py", "--config", "configs/scan_cpu.yaml", "--data-dir", root / "snippets"]
    command += ["--out-dir", root / "runs", "--run-name", "tiny", "--observation-shape", "16,64", "--epochs", "1"]
    command += ["--n-folds", "2", "--batch-size", "16", "--eval-batch-size", "32", "--num-workers", "0"]
    trained = subprocess.run(list(map(str, command)), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    succeeded(trained)
    return root / "runs" / "tiny"


def test_a_model_trained_by_main_py_scans_a_cadence_here_and_on_ray(trained_run, ray_cluster, data, tmp_path):
    """What CI runs end to end: the trained run folder given to scan.py, in this process and with Ray's actors."""
    files = cadence_files(data["catalog"])
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    scan("--cadence", *files, "--out", local, *SCAN, "--checkpoints", trained_run)
    scan(
        "--cadence",
        *files,
        "--out",
        on_ray,
        *SCAN,
        "--checkpoints",
        trained_run,
        "--engine",
        "ray",
        "--address",
        ray_cluster,
    )
    events = pd.read_csv(local / "SYNTH_T000" / "events.csv")
    assert len(events) and events["model_score"].between(0, 1).all()
    assert (
        "Model: 1 checkpoint(s) of resnet10t, TTA identity, hflip" in (local / "SYNTH_T000" / "report.md").read_text()
    )
    pd.testing.assert_frame_equal(events, pd.read_csv(on_ray / "SYNTH_T000" / "events.csv"), atol=1e-4)


def test_windows_are_scored_here_and_on_ray_alike(trained_run, ray_cluster, data, tmp_path):
    """--windows: the trained model also scores a window of every ON band's stretch where no hit is; those it
    passes are level-0 events and candidates, the events of the hits are unchanged, and Ray gives the same."""
    files = cadence_files(data["catalog"])
    local, on_ray, plain = tmp_path / "local", tmp_path / "ray", tmp_path / "plain"
    common = ("--cadence", *files, *SCAN, "--checkpoints", trained_run)
    scan(*common, "--out", plain)
    scan(*common, "--windows", "--out", local)
    scan(*common, "--windows", "--out", on_ray, "--engine", "ray", "--address", ray_cluster)
    folder = local / "SYNTH_T000"
    chunk_events = pd.concat(pd.read_csv(p) for p in sorted((folder / "chunks").glob("*.events.csv")))
    logits = pd.concat(pd.read_csv(p) for p in sorted((folder / "chunks").glob("*.model.csv")))["model_logit"]
    window_logits = logits.to_numpy()[chunk_events["level"].to_numpy() == 0]
    window_rows = chunk_events[chunk_events["level"] == 0]
    assert len(window_logits) > 0 and set(window_rows["obs"]) <= {0, 2, 4}  # ON observations only
    assert window_rows.groupby(["chunk", "obs"]).size().max() <= 1024 // 64  # one per 64-channel window at most
    events = pd.read_csv(folder / "events.csv")
    windows = events[events["level"] == 0]
    assert len(windows) == int((window_logits >= 0).sum())  # kept where the model gives at least 0.5
    assert windows["model_score"].ge(0.5).all() and windows["score"].isna().all()
    # the same events of hits in the same order; Hit_IDs number the rows of the table, the windows' included
    assert events["Hit_ID"].tolist() == [f"SYNTH_T000_{i}" for i in range(len(events))]
    pd.testing.assert_frame_equal(
        events[events["level"] > 0].drop(columns="Hit_ID").reset_index(drop=True),
        pd.read_csv(plain / "SYNTH_T000" / "events.csv").drop(columns="Hit_ID"),
        atol=1e-4,
    )
    assert (pd.read_csv(folder / "candidates.csv")["level"] == 0).sum() == len(windows)
    report = (folder / "report.md").read_text()
    assert f"(level 0): {len(window_logits)} scored by the model, {len(windows)} at or above its threshold" in report
    pd.testing.assert_frame_equal(events, pd.read_csv(on_ray / "SYNTH_T000" / "events.csv"), atol=1e-4)
