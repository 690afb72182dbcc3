"""Tests for src/engine/tracking.py: the always-on CSV log and the wandb mode choice."""

from __future__ import annotations

import csv

import pytest

from src.engine.tracking import METRICS_CSV, CSVTracker, tracker_init_kwargs, wandb_mode


def read(path):
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def test_csv_tracker_writes_header_and_rows(tmp_path):
    tracker = CSVTracker(tmp_path)
    assert tracker.tracker == tmp_path / METRICS_CSV
    assert tracker.name == "csv"
    tracker.log({"fold": 0, "train_loss": 0.5}, step=10)
    tracker.log({"fold": 0, "train_loss": 0.25}, step=20)
    header, rows = read(tmp_path / METRICS_CSV)
    assert header == ["step", "fold", "train_loss"]
    assert rows == [["10", "0", "0.5"], ["20", "0", "0.25"]]


def test_csv_tracker_widens_header_and_keeps_old_rows(tmp_path):
    tracker = CSVTracker(tmp_path)
    tracker.log({"a": 1}, step=1)
    tracker.log({"a": 2}, step=2)
    tracker.log({"a": 3, "b": 30}, step=3)  # new key: rewrite with the wider header
    tracker.log({"b": 40}, step=4)  # a missing key is left blank
    tracker.log({"a": 5, "b": 50, "c": "x"}, step=5)
    header, rows = read(tmp_path / METRICS_CSV)
    assert header == ["step", "a", "b", "c"]
    assert rows == [
        ["1", "1", "", ""],
        ["2", "2", "", ""],
        ["3", "3", "30", ""],
        ["4", "", "40", ""],
        ["5", "5", "50", "x"],
    ]


def test_csv_tracker_step_none(tmp_path):
    tracker = CSVTracker(tmp_path)
    tracker.log({"oof_auc": 0.9})
    header, rows = read(tmp_path / METRICS_CSV)
    assert header == ["step", "oof_auc"] and rows == [["", "0.9"]]


@pytest.mark.parametrize(
    "mode, key, expected",
    [
        ("disabled", None, "disabled"),
        ("offline", "secret", "offline"),  # an explicit mode wins over credentials
        ("online", None, "online"),
        (None, "secret", "online"),
        (None, None, "offline"),
        ("", None, "offline"),  # empty means unset
        ("", "secret", "online"),
    ],
)
def test_wandb_mode(monkeypatch, mode, key, expected):
    for name, value in (("WANDB_MODE", mode), ("WANDB_API_KEY", key)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert wandb_mode() == expected


def test_tracker_init_kwargs(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    kwargs = tracker_init_kwargs(tmp_path, "run-1")
    assert kwargs == {"wandb": {"dir": str(tmp_path), "name": "run-1", "mode": "offline", "settings": {"quiet": True}}}
