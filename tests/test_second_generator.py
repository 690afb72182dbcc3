"""The second, evaluation-only generator (bench/second_generator.py, bench/lib/second_generator.py): its layout,
labels and metadata, the same bytes for the same seed, nothing imported from src/, and bench/detection.py
reading what it writes."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.lib import second_generator as sg

REPO = Path(__file__).resolve().parents[1]
MODULES = (REPO / "bench" / "lib" / "second_generator.py", REPO / "bench" / "second_generator.py")
CFG = sg.SecondConfig(seed=3, n=16)


@pytest.fixture(scope="module")
def second_set(tmp_path_factory):
    """16 cadences written by the command line with 2 workers, shared by the tests here."""
    out = tmp_path_factory.mktemp("second") / "set"
    result = run(
        [sys.executable, "bench/second_generator.py", "--out", str(out), "--n", "16", "--seed", "3", "--workers", "2"]
    )
    assert "cadences/s" in result.stderr
    return out


def run(command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    result = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_labels_and_metadata(second_set):
    meta = pd.read_csv(second_set / "metadata.csv", dtype={"id": str})
    labels = pd.read_csv(second_set / "test_labels.csv", dtype={"id": str})
    submission = pd.read_csv(second_set / "sample_submission.csv", dtype={"id": str})
    assert list(meta.columns) == sg.METADATA_COLUMNS and len(meta) == 16 and meta["id"].is_unique
    assert labels["id"].tolist() == submission["id"].tolist() == meta["id"].tolist()
    assert labels["target"].tolist() == meta["target"].tolist() and (submission["target"] == 0.5).all()
    assert int(meta["target"].sum()) == round(sg.POS_FRAC * 16) and (meta["split"] == "test").all()
    assert sorted(p.relative_to(second_set).parts[0] for p in second_set.iterdir() if p.is_dir()) == ["test"]
    for row in meta.itertuples():
        x = np.load(second_set / "test" / row.id[0] / f"{row.id}.npy")
        assert x.dtype == np.float16 and x.shape == (6, 273, 256) and np.isfinite(x).all()
        assert np.abs(x.astype(np.float64).mean(axis=(1, 2))).max() < 1e-2  # each observation standardised
    pos, neg = meta[meta["target"] == 1], meta[meta["target"] == 0]
    assert pos["n_on_present"].between(0, 3).all() and (neg["n_on_present"] == 0).all()
    assert pos["snr"].between(3, 100).all() and neg["snr"].isna().all()
    assert set(pos["interference"]) <= {"none", "rfi"} and set(neg["interference"]) <= {"none", "rfi", "off", "mixed"}
    assert set(neg["kind"]) <= set(sg.NEGATIVE_KINDS) and set(pos["kind"]) <= {"needle", "needle+rfi"}
    with_rfi = meta[meta["interference"] != "none"]
    assert (
        with_rfi["rfi_shape"].isin(sg.RFI_SHAPES).all()
        and meta.loc[meta["interference"] == "none", "rfi_shape"].isna().all()
    )


def test_same_seed_same_bytes_whatever_the_workers_and_another_seed_differs(second_set, tmp_path):
    meta, seconds = sg.write_set(tmp_path / "again", CFG, workers=1)
    assert seconds > 0 and len(meta) == 16
    a, b = files(second_set), files(tmp_path / "again")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    x, m = sg.make_cadence([4, 2, 0], 1)
    y, _ = sg.make_cadence([4, 2, 0], 1)
    z, _ = sg.make_cadence([5, 2, 0], 1)
    assert x.tobytes() == y.tobytes() and x.tobytes() != z.tobytes() and m["target"] == 1
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        sg.write_set(tmp_path / "again", CFG)


def test_partial_needles_are_where_the_metadata_says():
    """Needles in one, two or three ON observations (n_on_present, measured on the rendered signal); a subset one
    in one or two."""
    found = set()
    for index in range(40):
        seed = [11, 2, index]
        _, meta = sg.make_cadence(seed, 1)
        if meta["interference"] != "none":
            continue
        found.add(meta["n_on_present"])
        if meta["partial"] == "subset":
            assert meta["n_on_present"] in (1, 2)
        assert meta["partial"] in sg.PARTIAL
    assert {1, 2, 3} <= found


def test_imports_nothing_from_src():
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                assert node.level == 0, f"{path}: relative import"
            for name in names:
                assert name != "src" and not name.startswith("src."), f"{path} imports {name}"
                assert not name.startswith("bench") or name == "bench.lib.second_generator", f"{path} imports {name}"
    # and at run time: making a cadence loads no module of src/
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from bench.lib import second_generator as g\n"
        "g.make_cadence([1, 2, 3], 1)\n"
        "print(sorted(m for m in sys.modules if m == 'src' or m.startswith('src.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_detection_benchmark_reads_the_set(second_set, tmp_path):
    out = tmp_path / "report"
    run(
        [
            sys.executable,
            "bench/detection.py",
            "--data-dir",
            str(second_set),
            "--out",
            str(out),
            "--turbo-seti",
            "off",
        ]
    )
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == {"de-Doppler"} and report["data"]["n"] == 16
    groups = set(report["definitions"])
    assert {"in 1 ON observation", "clean SNR >= 20 in 1 ON observation", "clean SNR >= 20"} <= groups
    assert set(report["methods"]["de-Doppler"]["subgroups"]) == groups
    assert "positives_by_n_on_present" in report["data"]


def test_cli_refuses_to_overwrite(second_set):
    result = run([sys.executable, "bench/second_generator.py", "--out", str(second_set), "--n", "2"], check=False)
    assert result.returncode == 2 and "refusing to overwrite" in result.stderr
