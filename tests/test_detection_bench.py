"""Detection benchmark (bench/lib/detection.py, bench/detection.py): metrics on hand-made scores, subgroup
definitions, input checks, the turbo_seti skip, and one end-to-end run: benchmark preset -> tiny trained run ->
bench/detection.py -> report files."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.lib import detection as db
from src.core.errors import DataError
from src.search import turboseti

REPO = Path(__file__).resolve().parents[1]
TURBO_SETI = importlib.util.find_spec("turbo_seti") is not None


def toy_meta() -> pd.DataFrame:
    """Eight hand-made rows covering every subgroup kind."""
    return pd.DataFrame(
        {
            "id": [f"{i:015x}" for i in range(8)],
            "split": "test",
            "target": [1, 1, 1, 1, 0, 0, 0, 0],
            "shape": ["linear", "sine", "linear", "pulsed", "", "", "", ""],
            "snr": [5.0, 8.0, 12.0, 40.0, np.nan, np.nan, np.nan, np.nan],
            "interference": ["none", "none", "rfi", "none", "none", "rfi", "off", "none"],
        }
    )


# ----------------------------------------------------------------- metrics ---


def test_a_perfect_scorer_gets_auc_1_and_recall_1():
    y = np.array([0] * 500 + [1] * 50)
    s = np.where(y == 1, 2.0, 0.0) + np.random.default_rng(0).uniform(0, 1, len(y))
    m = db.problem_metrics(y, s)
    assert m["auc"] == 1.0 and m["recall_at_1pct_fpr"] == 1.0 and m["recall_at_0.1pct_fpr"] == 1.0
    assert (m["n_pos"], m["n_neg"]) == (50, 500)
    assert db.problem_metrics(y, -s)["auc"] == 0.0 and db.problem_metrics(y, -s)["recall_at_1pct_fpr"] == 0.0


def test_recall_at_fpr_picks_the_threshold_from_the_negatives():
    neg = np.arange(100.0)  # 100 negatives scored 0..99
    pos = np.array([99.5, 98.5, 97.5, 50.0])
    y = np.r_[np.zeros(100), np.ones(4)].astype(int)
    s = np.r_[neg, pos]
    one = db.recall_at_fpr(y, s, 0.01)  # one negative (99) may pass: threshold 98
    assert one["threshold"] == 98 and one["fpr"] == 0.01 and one["recall"] == 0.5
    tenth = db.recall_at_fpr(y, s, 0.001)  # fewer than 1000 negatives: above the highest negative
    assert tenth["threshold"] == 99 and tenth["fpr"] == 0.0 and tenth["recall"] == 0.25
    assert db.recall_at_fpr(y, s, 0.05)["threshold"] == 94
    assert db.recall_at_fpr(np.ones(3, int), np.arange(3.0), 0.01) is None
    assert db.roc_auc(np.ones(3, int), np.arange(3.0)) is None


def test_snr_at_recall_from_a_monotone_fit():
    snr = np.geomspace(4, 60, 200)
    assert db.snr_at_recall(snr, snr >= 10) == pytest.approx(snr[snr >= 10][0])
    noisy = (snr >= 20) | (np.arange(200) % 7 == 0)  # a few lucky detections below 20 do not pull it down much
    assert 15 < db.snr_at_recall(snr, noisy) <= 20.5
    assert db.snr_at_recall(snr, snr >= 1000) is None and db.snr_at_recall(snr[:0], snr[:0] > 0) is None
    assert db.snr_at_recall(snr, snr >= snr[-5]) is None  # only the 5 strongest detected: too few to tell


def test_recall_vs_snr_bins():
    edges = np.array([4.0, 10.0, 60.0])
    curve = db.recall_vs_snr(np.array([5.0, 6.0, 20.0, 60.0]), np.array([True, False, True, True]), edges)
    assert curve["n"] == [2, 2] and curve["recall"] == [0.5, 1.0]
    assert curve["snr_centres"][0] == pytest.approx(np.sqrt(40))


def test_subgroups_select_the_right_rows():
    groups = {name: set(np.flatnonzero(mask)) for name, (mask, _) in db.subgroups(toy_meta()).items()}
    negatives = {4, 5, 6, 7}
    assert groups["all"] == set(range(8))
    assert groups["SNR < 6"] == {0} | negatives and groups["SNR 6-10"] == {1} | negatives
    assert groups["SNR 10-20"] == {2} | negatives and groups["SNR >= 20"] == {3} | negatives
    assert groups["shape linear"] == {0, 2} | negatives and groups["shape quadratic"] == negatives
    assert groups["clean"] == {0, 1, 3, 4, 7}
    assert groups["vs all-six-interference negatives"] == {0, 1, 2, 3, 5}
    assert groups["vs OFF-only negatives"] == {0, 1, 2, 3, 6}
    assert groups["positives with interference"] == {2} | negatives
    assert groups["clean linear SNR >= 10"] == {4, 7}  # the clean linear positive has SNR 5


def partial_meta() -> pd.DataFrame:
    """Ten hand-made rows with the new columns: needles in 1, 2 or 3 ON observations, interference by shape."""
    return pd.DataFrame(
        {
            "id": [f"{i:015x}" for i in range(10)],
            "split": "test",
            "target": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
            "shape": ["linear", "sine", "linear", "random_walk", "linear", "", "", "", "", ""],
            "snr": [25.0, 30.0, 8.0, 40.0, 22.0, np.nan, np.nan, np.nan, np.nan, np.nan],
            "interference": ["none", "none", "none", "rfi", "none", "none", "rfi", "rfi", "off", "none"],
            "n_on_present": [1, 2, 1, 3, 3, 0, 0, 0, 0, 0],
            "partial": ["leaves_window", "subset", "switches", "none", "none", "", "", "", "", ""],
            "rfi_shape": ["", "", "", "wide", "", "", "wide", "fading", "sine", ""],
        }
    )


def test_subgroups_by_on_observations_and_interference_shape():
    meta = partial_meta()
    groups = {name: set(np.flatnonzero(mask)) for name, (mask, _) in db.subgroups(meta).items()}
    negatives, clean_negatives = {5, 6, 7, 8, 9}, {5, 9}
    assert groups["in 1 ON observation"] == {0, 2} | negatives
    assert groups["in 2 ON observations"] == {1} | negatives
    assert groups["in 3 ON observations"] == {3, 4} | negatives
    assert groups["partial leaves_window"] == {0} | negatives and "partial none" not in groups
    assert groups["shape random_walk"] == {3} | negatives  # another generator's own shape
    positives = {0, 1, 2, 3, 4}
    assert groups["vs all-six-interference negatives: wide"] == positives | {6}
    assert groups["vs all-six-interference negatives: fading"] == positives | {7}
    assert "vs all-six-interference negatives: sine" not in groups  # the sine one is OFF-only
    assert groups["clean SNR >= 20"] == {0, 1, 4} | clean_negatives
    assert groups["clean SNR >= 20 in 1 ON observation"] == {0} | clean_negatives  # the SNR 8 one is not
    assert groups["clean SNR >= 20 in 2 ON observations"] == {1} | clean_negatives
    assert groups["clean SNR >= 20 in 3 ON observations"] == {4} | clean_negatives  # the SNR 40 one has rfi
    # scored by hand: a model that misses the needles in one ON observation only
    scores = np.array([0.1, 0.9, 0.2, 0.95, 0.8, 0.3, 0.5, 0.4, 0.15, 0.25])
    m = db.method_metrics(meta, scores, db.curve_edges(meta))["subgroups"]
    assert m["in 1 ON observation"]["auc"] == pytest.approx(0.1)  # 0.1 and 0.2 beat one negative in ten pairs
    assert m["in 2 ON observations"]["auc"] == 1.0 and m["in 3 ON observations"]["auc"] == 1.0
    assert m["in 1 ON observation"]["recall_at_1pct_fpr"] == 0.0
    assert m["clean SNR >= 20 in 1 ON observation"] == {
        "n_pos": 1,
        "n_neg": 2,
        "auc": 0.0,
        "recall_at_1pct_fpr": 0.0,
        "recall_at_0.1pct_fpr": 0.0,
    }
    assert m["vs all-six-interference negatives: wide"]["n_neg"] == 1


def test_older_sets_without_the_new_columns_get_no_new_groups():
    old = set(db.subgroups(toy_meta()))
    assert not any(
        name.startswith(("in ", "partial ", "clean SNR >= 20 in", "vs all-six-interference negatives:")) for name in old
    )
    assert "clean SNR >= 20" in old
    with_shapes = set(db.subgroups(toy_meta().assign(rfi_shape=["", "", "linear", "", "", "sine", "", ""])))
    assert with_shapes - old == {"vs all-six-interference negatives: sine"}
    report = db.build_report(partial_meta(), [], {}, {"command": "x", "data_dir": "d", "split": "test"})
    assert report["data"]["positives_by_n_on_present"] == {"1": 2, "2": 1, "3": 2}
    assert "positives_by_n_on_present" not in db.build_report(toy_meta(), [], {}, {})["data"]


def test_method_metrics_skip_unscored_cadences():
    meta = toy_meta()
    scores = np.array([0.9, 0.8, np.nan, 0.7, 0.1, 0.2, np.nan, 0.3])
    m = db.method_metrics(meta, scores, db.curve_edges(meta))
    assert m["n_scored"] == 6 and m["auc"] == 1.0 and m["subgroups"]["positives with interference"]["n_pos"] == 0
    assert m["subgroups"]["positives with interference"]["auc"] is None
    assert sum(m["recall_vs_snr"]["n"]) == 3


# ------------------------------------------------------------------ inputs ---


def test_load_benchmark_names_the_file(tmp_path):
    with pytest.raises(DataError, match="data directory not found"):
        db.load_benchmark(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"metadata\.csv: file not found"):
        db.load_benchmark(tmp_path)
    meta = toy_meta()
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    loaded = db.load_benchmark(tmp_path)
    assert loaded["id"].tolist() == meta["id"].tolist() and loaded["shape"].iloc[-1] == ""
    with pytest.raises(DataError, match="no cadences of split 'train'"):
        db.load_benchmark(tmp_path, "train")
    meta.assign(target=0).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(DataError, match="both classes"):
        db.load_benchmark(tmp_path)
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    meta[["id", "target"]].assign(target=1 - meta["target"]).to_csv(tmp_path / "test_labels.csv", index=False)
    with pytest.raises(DataError, match=r"test_labels\.csv: targets disagree"):
        db.load_benchmark(tmp_path)
    meta.drop(columns="interference").to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(DataError, match="missing column"):
        db.load_benchmark(tmp_path)


def test_refuses_to_overwrite_a_report(tmp_path):
    db.check_out_dir(tmp_path / "new", overwrite=False)
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"report\.json: already exists"):
        db.check_out_dir(tmp_path, overwrite=False)
    db.check_out_dir(tmp_path, overwrite=True)


# -------------------------------------------------------------- turbo_seti ---


def test_turbo_seti_time_average_and_availability():
    x = np.arange(273 * 4, dtype=np.float32).reshape(273, 4)
    avg = turboseti.time_average(x)
    assert avg.shape == (16, 4) and np.allclose(avg[0], x[:17].mean(0)) and np.allclose(avg[-1], x[255:272].mean(0))
    reason = turboseti.unavailable_reason()
    assert (reason is None) == TURBO_SETI
    if not TURBO_SETI:
        assert reason.startswith("turbo_seti not installed")


@pytest.mark.skipif(not TURBO_SETI, reason="turbo_seti not installed")
def test_turbo_seti_finds_a_strong_needle_and_not_interference():
    from src.synth.generator import SynthConfig, make_cadence

    cfg = SynthConfig(snr_min=40, snr_max=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        needle, _ = make_cadence(cfg, 1, 1, shape="linear", interference="none")
        rfi, _ = make_cadence(cfg, 2, 0, interference="rfi")
        noise, _ = make_cadence(cfg, 3, 0, interference="none")
    assert turboseti.score_cadence(needle) > 20
    assert turboseti.score_cadence(rfi) == 0.0 and turboseti.score_cadence(noise) == 0.0


# -------------------------------------------------------------- end to end ---


def run(command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def test_benchmark_end_to_end(synth_dir, tiny_benchmark, tmp_path):
    """Held-out set from the benchmark preset, a tiny run trained through main.py, bench/detection.py over both."""
    bench_dir = tiny_benchmark
    train_dir, _ = synth_dir
    outputs = tmp_path / "outputs"
    run(
        [
            sys.executable,
            "main.py",
            "--data-dir",
            str(train_dir),
            "--out-dir",
            str(outputs),
            "--run-name",
            "tiny",
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
            "8",
            "--num-workers",
            "0",
            "--tracker",
            "none",
        ]
    )
    out = tmp_path / "report"
    bench = [
        sys.executable,
        "bench/detection.py",
        "--runs",
        str(outputs / "tiny"),
        "--data-dir",
        str(bench_dir),
        "--out",
        str(out),
        "--tta",
        "identity",
        "--num-workers",
        "0",
        "--turbo-seti-limit",
        "3",
    ]
    run(bench)

    for name in db.REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    expected = {"model: tiny", "de-Doppler"} | ({"turbo_seti"} if TURBO_SETI else set())
    assert set(report["methods"]) == expected
    assert report["data"]["n"] == 24 and report["data"]["n_pos"] == 7
    assert set(report["data"]["subgroups"]) == set(report["definitions"])
    if not TURBO_SETI:
        assert report["skipped"]["turbo_seti"].startswith("turbo_seti not installed")
    for name, m in report["methods"].items():
        assert m["n_scored"] == (3 if name == "turbo_seti" else 24)
        values = [m["auc"], m["recall_at_1pct_fpr"], m["recall_at_0.1pct_fpr"]]
        assert all((v is None and name == "turbo_seti") or 0 <= v <= 1 for v in values)  # 3 cadences may hold one class
        assert m["seconds"] > 0 and set(m["snr_at_90pct_recall_1pct_fpr"]) == {"all", "clean linear"}
        assert all(r is None or 0 <= r <= 1 for r in m["recall_vs_snr"]["recall"])
        if name != "turbo_seti":
            assert set(m["subgroups"]) == set(report["definitions"])
    assert report["methods"]["model: tiny"]["details"]["checkpoints"] == ["fold0.safetensors", "fold1.safetensors"]
    scores = pd.read_csv(out / "scores.csv", dtype={"id": str})
    assert len(scores) == 24
    assert {"score: model: tiny", "score: de-Doppler", "dedoppler_snr0", "dedoppler_drift5"} <= set(scores.columns)
    markdown = (out / "report.md").read_text()
    assert "| model: tiny |" in markdown and "positives with interference" in markdown and "roc.png" in markdown

    # an existing report is never replaced silently; the references alone run without --runs
    failed = run(bench, check=False)
    assert failed.returncode == 2 and "already exists" in failed.stderr
    run(
        [
            sys.executable,
            "bench/detection.py",
            "--data-dir",
            str(bench_dir),
            "--out",
            str(out),
            "--overwrite",
            "--turbo-seti",
            "off",
        ]
    )
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == {"de-Doppler"} and report["skipped"] == {"turbo_seti": "--turbo-seti off"}


def cli_exit(monkeypatch, *args: str) -> int:
    """Run bench/detection.py's entry point in-process; its exit code."""
    spec = importlib.util.spec_from_file_location("bench_detection", REPO / "bench" / "detection.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["bench/detection.py", *args])
    with pytest.raises(SystemExit) as exit_info:
        module.run_cli(module.main)
    return exit_info.value.code


def test_cli_errors_name_the_problem(tmp_path, monkeypatch, capsys):
    assert cli_exit(monkeypatch, "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")) == 2
    assert "metadata.csv: file not found" in capsys.readouterr().err
    if not TURBO_SETI:
        assert cli_exit(monkeypatch, "--data-dir", str(tmp_path), "--turbo-seti", "on") == 2
        assert "--turbo-seti on: turbo_seti not installed" in capsys.readouterr().err
