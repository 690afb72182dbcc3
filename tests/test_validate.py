"""Tests for src/data/validation.py and python -m src.validate (src/validate.py): the parallel scan, the data-folder
summary, the command and the bad-files list."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from src.core.cadence import CADENCE_SHAPE
from src.core.cli import run_cli
from src.data.kaggle import SAMPLE_SUBMISSION, TEST_LABELS, TRAIN_LABELS, cadence_path
from src.data.validation import BadCadence, scan_cadences, validate_data_dir, write_bad_list
from src.validate import main


def plant(data_dir: Path, split: str, sample_id: str, how: str) -> None:
    """Spoil one cadence file of a good dataset in the way `how` names."""
    path = cadence_path(data_dir, split, sample_id)
    if how == "missing":
        path.unlink()
    elif how == "unreadable":
        path.write_bytes(path.read_bytes()[:1000])
    elif how == "shape":
        np.save(path, np.zeros((6, 273, 128), np.float16))
    elif how == "dtype":
        np.save(path, np.zeros(CADENCE_SHAPE, np.int8))
    elif how == "non-finite":
        cadence = np.load(path)
        cadence[1, 2, 3] = np.nan
        np.save(path, cadence)


@pytest.fixture
def planted(small_dataset):
    """small_dataset with one train file of each bad kind (not in id order), a missing test file and a stray file."""
    data_dir, train_ids, test_ids = small_dataset
    kinds = {
        train_ids[6]: "missing",
        train_ids[1]: "non-finite",
        train_ids[4]: "unreadable",
        train_ids[3]: "dtype",
        train_ids[7]: "shape",
    }
    for sample_id, how in kinds.items():
        plant(data_dir, "train", sample_id, how)
    plant(data_dir, "test", test_ids[0], "missing")
    stray = cadence_path(data_dir, "train", "ffffffffffffff9")
    np.save(stray, np.zeros(CADENCE_SHAPE, np.float16))
    expected_train = [(i, kinds[i]) for i in train_ids if i in kinds]  # in the order of the labels
    return data_dir, train_ids, test_ids, expected_train, stray


def test_scan_of_good_files_finds_nothing(small_dataset):
    data_dir, train_ids, test_ids = small_dataset
    assert scan_cadences(data_dir, "train", train_ids, progress=False) == []
    assert scan_cadences(data_dir, "test", test_ids, progress=False) == []


def test_scan_finds_exactly_the_planted_files(planted):
    data_dir, train_ids, _, expected, _ = planted
    bad = scan_cadences(data_dir, "train", train_ids, workers=2, progress=False)
    assert [(b.id, b.kind) for b in bad] == expected
    assert all(b.path == str(cadence_path(data_dir, "train", b.id)) for b in bad)
    problems = {b.kind: b.problem for b in bad}
    assert problems["missing"] == "cadence file not found"
    assert problems["shape"] == "shape (6, 273, 128), expected (6, 273, 256)"
    assert problems["dtype"] == "dtype int8, expected one of float16, float32, float64"
    assert problems["non-finite"] == "1 non-finite value(s) (NaN or inf), the first in observation 1"
    assert problems["unreadable"].startswith("not a readable .npy file")


def test_scan_order_follows_the_ids_whatever_the_workers(planted):
    data_dir, train_ids, _, _, _ = planted
    one = scan_cadences(data_dir, "train", train_ids, workers=1, progress=False)
    two = scan_cadences(data_dir, "train", train_ids, workers=2, progress=True)
    assert one == two and len(one) == 5
    reversed_scan = scan_cadences(data_dir, "train", train_ids[::-1], workers=2, progress=False)
    assert reversed_scan == one[::-1]


def test_summary_of_a_data_folder(planted):
    data_dir, _, test_ids, expected, stray = planted
    summary = validate_data_dir(data_dir, workers=2, progress=False)
    train, test = summary.splits
    assert (train.split, train.ids, train.positives, train.table_error) == ("train", 8, 4, None)
    assert [(b.id, b.kind) for b in train.bad] == expected
    assert train.unlisted == [str(stray)]
    assert (test.split, test.ids, test.positives) == ("test", 3, None)
    assert [(b.id, b.kind) for b in test.bad] == [(test_ids[0], "missing")]
    assert summary.test_labels is None  # the real competition data has none
    assert not summary.ok and len(summary.problems) == 6
    assert summary.warnings == [f"1 .npy file(s) under {data_dir / 'train'} not in {TRAIN_LABELS}, e.g. {stray}"]
    text = summary.format()
    assert "train: 8 ids in train_labels.csv (4 positive, 4 negative: 50.0% positive), 5 bad file(s)" in text
    for kind in ("missing (2):", "unreadable (1):", "shape (1):", "dtype (1):", "non-finite (1):"):
        assert kind in text
    assert text.endswith("result: 6 problem(s)")


def test_a_clean_folder_with_unlisted_files_is_ok_with_a_warning(small_dataset):
    data_dir, _, _ = small_dataset
    stray = data_dir / "test" / "loose.npy"
    np.save(stray, np.zeros(CADENCE_SHAPE, np.float16))
    summary = validate_data_dir(data_dir, workers=2, progress=False)
    assert summary.ok and summary.problems == []
    assert summary.splits[1].unlisted == [str(stray)]
    assert summary.format().endswith("result: OK, no problems")


def test_table_errors_are_reported_and_the_other_split_still_checked(planted):
    data_dir, _, _, expected, _ = planted
    (data_dir / SAMPLE_SUBMISSION).write_text("id,prediction\nx,0.5\n")
    summary = validate_data_dir(data_dir, workers=2, progress=False)
    assert (
        summary.splits[1].table_error == f"{data_dir / SAMPLE_SUBMISSION}: missing column(s) target; expected id,target"
    )
    assert summary.problems[0] == summary.splits[1].table_error
    assert [(b.id, b.kind) for b in summary.splits[0].bad] == expected  # train scanned all the same
    assert "sample_submission.csv unreadable, files not checked" in summary.format()


def test_test_labels_are_reported_and_checked_against_the_submission(small_dataset):
    data_dir, _, test_ids = small_dataset
    (data_dir / TEST_LABELS).write_text(f"id,target\n{test_ids[0]},1\n{test_ids[1]},0\n")
    summary = validate_data_dir(data_dir, workers=1, splits=("test",), progress=False)
    assert summary.test_labels == {"rows": 2, "positives": 1}
    assert summary.ok  # a warning, not a problem
    assert summary.warnings == [
        f"{data_dir / TEST_LABELS}: 1 of 3 {SAMPLE_SUBMISSION} ids have no truth row; "
        "evaluate.py will not report a test ROC AUC"
    ]
    (data_dir / TEST_LABELS).write_text(f"id,target\n{test_ids[0]},3\n")
    summary = validate_data_dir(data_dir, workers=1, splits=("test",), progress=False)
    assert summary.problems == [f"{data_dir / TEST_LABELS}: target must be 0 or 1, found 3 in 1 row(s)"]


def test_command_exit_codes_and_json(planted, tmp_path, capsys):
    data_dir, _, _, expected, _ = planted
    report = tmp_path / "summary.json"
    assert main(["--data-dir", str(data_dir), "--json", str(report), "--no-progress"]) == 1
    assert "result: 6 problem(s)" in capsys.readouterr().out
    written = json.loads(report.read_text())
    assert written["ok"] is False and len(written["problems"]) == 6
    assert written["splits"]["train"]["bad_by_kind"] == {
        "missing": 1,
        "non-finite": 1,
        "unreadable": 1,
        "dtype": 1,
        "shape": 1,
    }
    assert [b["id"] for b in written["splits"]["train"]["bad"]] == [i for i, _ in expected]
    assert written["splits"]["test"]["bad_by_kind"] == {"missing": 1}

    # --split test: only that split is checked and reported
    assert main(["--data-dir", str(data_dir), "--split", "test", "--no-progress", "--json", str(report)]) == 1
    assert list(json.loads(report.read_text())["splits"]) == ["test"]

    for sample_id, _ in expected:  # repair the train split: now clean
        np.save(cadence_path(data_dir, "train", sample_id), np.zeros(CADENCE_SHAPE, np.float16))
    assert main(["--data-dir", str(data_dir), "--split", "train", "--no-progress"]) == 0
    assert "result: OK, no problems" in capsys.readouterr().out


def test_command_missing_data_dir_is_a_user_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: sys.exit(main(["--data-dir", str(tmp_path / "nowhere"), "--no-progress"])))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nowhere'}: data directory not found\n"


def test_command_writes_the_bad_list(planted, tmp_path):
    data_dir, _, test_ids, expected, _ = planted
    bad_list = tmp_path / "bad_files.csv"
    assert main(["--data-dir", str(data_dir), "--bad-list", str(bad_list), "--no-progress", "--workers", "1"]) == 1
    lines = bad_list.read_text().splitlines()
    assert lines[0] == "id,path,problem"
    assert [line.split(",")[0] for line in lines[1:]] == [i for i, _ in expected] + [test_ids[0]]


def test_write_bad_list_content(tmp_path):
    path = tmp_path / "bad_files.csv"
    bad = [
        BadCadence("0abc", "input/train/0/0abc.npy", "shape (3, 273, 256), expected (6, 273, 256)", "shape"),
        BadCadence("beef", "input/train/b/beef.npy", "cadence file not found", "missing"),
    ]
    write_bad_list(bad, path)
    assert path.read_text() == (
        "id,path,problem\n"
        '0abc,input/train/0/0abc.npy,"shape (3, 273, 256), expected (6, 273, 256)"\n'
        "beef,input/train/b/beef.npy,cadence file not found\n"
    )
    write_bad_list([], path)  # replaced whole: a run with nothing skipped says so
    assert path.read_text() == "id,path,problem\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_files.csv"]  # no temporary left behind


def test_command_checks_snippets_of_another_observation_shape(snippet_dataset, capsys):
    """--observation-shape ROWS CHANNELS: (6, 16, 256) snippets are clean with 16 256, all shape problems without."""
    data_dir, train_ids, test_ids = snippet_dataset
    assert main(["--data-dir", str(data_dir), "--observation-shape", "16", "256", "--no-progress"]) == 0
    assert "result: OK, no problems" in capsys.readouterr().out
    assert main(["--data-dir", str(data_dir), "--no-progress"]) == 1
    assert f"shape ({len(train_ids) + len(test_ids)}):" in capsys.readouterr().out
    assert scan_cadences(data_dir, "test", test_ids, progress=False, observation_shape=(16, 256)) == []
    with pytest.raises(SystemExit) as exit_info:
        main(["--data-dir", str(data_dir), "--observation-shape", "2", "256"])
    assert exit_info.value.code == 2 and "--observation-shape: must be [rows, channels]" in capsys.readouterr().err
