"""Scan benchmark (bench/lib/scan.py, bench/scan.py): matching events to injected signals on hand-made tables (exact
counts of found needles, false events and duplicates), the recall curve, the needle groups, reading turbo_seti's
event tables, the command's errors, and one end-to-end run on tiny generated cadences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import write_scan_checkpoint

from bench.lib import scan as sb

REPO = Path(__file__).resolve().parents[1]
TURBO_SETI_PYTHON = sb.DEFAULT_TURBO_SETI_PYTHON
HAS_TURBO_SETI = TURBO_SETI_PYTHON.exists()
DF_HZ, OBS_LENGTH_S = 2.0, 100.0  # tolerance: max(40 Hz, 50 s x |drift|)
F0 = 1000.0  # MHz


def mhz(hz: float) -> float:
    return F0 + hz * 1e-6


def signal(cadence, signal_id, kind, f_hz, drift, shape="linear", snr=20.0, on_only=True, obs2_shift_hz=0.0) -> dict:
    """A truth row: present in observations 0, 2, 4 (needles) or all six (RFI)."""
    row = {"cadence": cadence, "signal_id": signal_id, "kind": kind, "shape": shape, "snr": snr, "drift_hz_s": drift}
    for k in range(6):
        present = not (on_only and k % 2)
        row[f"f_mhz_obs{k}"] = mhz(f_hz + (obs2_shift_hz if k == 2 else 0.0)) if present else np.nan
    return row


def toy_truth() -> pd.DataFrame:
    rows = [
        signal("0", 0, "needle", 0.0, 0.1, obs2_shift_hz=5000.0),  # A: tolerance 40 Hz; elsewhere in observation 2
        signal("0", 1, "needle", 10_000.0, -2.0),  # B: tolerance 100 Hz (0.5 x 2 Hz/s x 100 s)
        signal("0", 2, "needle", 20_000.0, 0.0),  # C: never found
        signal("0", 3, "rfi_zero_drift", 30_000.0, 0.0, shape="constant", on_only=False),
        signal("0", 4, "rfi_broadband", 40_000.0, np.nan, shape="burst", on_only=False),  # never matched
        signal("0", 5, "needle", 50_000.0, 0.1),  # E
        signal("0", 6, "needle", 50_060.0, 0.1),  # F, 60 Hz above E
        signal("0", 7, "rfi_zero_drift", 60_000.0, 0.0, shape="constant", on_only=False),
        signal("0", 8, "needle", 60_030.0, 0.1),  # G: 30 Hz above an RFI line
        signal("1", 0, "needle", 0.0, 0.1),  # D: A's frequency, another cadence
    ]
    return pd.DataFrame(rows)


def toy_events() -> pd.DataFrame:
    rows = [
        ("0", 0, 30.0, "A"),
        ("0", 2, 5010.0, "A"),  # A again, measured in observation 2: a duplicate
        ("0", 0, 10_000.0 - 90.0, "B"),  # inside B's drift tolerance
        ("0", 0, 10_000.0 + 150.0, "none"),  # outside it
        ("0", 0, 30_005.0, "rfi"),
        ("0", 0, 40_000.0, "none"),  # the broadband burst's centre: not a match
        ("0", 1, 0.0, "none"),  # an OFF observation, where A is absent
        ("0", 0, -45.0, "none"),  # just outside A's 40 Hz
        ("1", 0, 10.0, "D"),
        ("0", 0, 50_035.0, "F"),  # within E (35 Hz) and F (25 Hz): the nearest
        ("0", 0, 60_010.0, "G"),  # within the RFI line (10 Hz) and G (20 Hz): the needle
    ]
    return pd.DataFrame(
        {
            "cadence": [r[0] for r in rows],
            "obs": [r[1] for r in rows],
            "freq_mhz": [mhz(r[2]) for r in rows],
            "expected": [r[3] for r in rows],
        }
    )


NEEDLE_ROWS = {"A": 0, "B": 1, "D": 9, "F": 6, "G": 8}


# ---------------------------------------------------------------- matching ---


def test_match_events_counts_found_false_and_duplicates():
    truth, events = toy_truth(), toy_events()
    matched = sb.match_events(events, truth, DF_HZ, OBS_LENGTH_S)
    expected_rows = [NEEDLE_ROWS.get(e, sb.NO_MATCH) for e in events["expected"]]
    assert matched["needle_row"].tolist() == expected_rows
    assert matched["match"].tolist() == [e if e in ("rfi", "none") else "needle" for e in events["expected"]]
    assert matched.loc[matched["match"] == "rfi", "rfi_row"].tolist() == [3]
    assert matched.loc[0, "offset_hz"] == pytest.approx(30.0, abs=1e-3)
    assert matched.loc[2, "offset_hz"] == pytest.approx(-90.0, abs=1e-3)

    needles = truth[truth["kind"] == "needle"]
    m = sb.point_metrics(matched, len(needles), n_cadences=2)
    assert (m["needles"], m["found"], m["needle_events"]) == (7, 5, 6)
    assert (m["false_events"], m["rfi_events"], m["unmatched_events"]) == (5, 1, 4)
    assert m["false_per_cadence"] == 2.5 and m["recall"] == pytest.approx(5 / 7)
    assert m["events_per_found_needle"] == pytest.approx(6 / 5) and m["max_events_per_needle"] == 2

    empty = sb.point_metrics(matched.iloc[:0], len(needles), 2)
    assert (empty["found"], empty["false_events"], empty["recall"], empty["events_per_found_needle"]) == (0, 0, 0, None)


def test_an_events_measured_drift_widens_the_tolerance():
    """A curved path drifts faster in a later observation than at the cadence's start: the event's own rate counts."""
    truth = toy_truth()
    events = pd.DataFrame(
        {"cadence": "0", "obs": 0, "freq_mhz": [mhz(20_070.0)] * 3, "drift_hz_s": [0.1, -2.0, np.nan]}
    )  # 70 Hz above needle C (drift 0: 40 Hz)
    matched = sb.match_events(events, truth, DF_HZ, OBS_LENGTH_S)
    assert matched["needle_row"].tolist() == [sb.NO_MATCH, 2, sb.NO_MATCH]  # 0.1 Hz/s: 40 Hz; 2 Hz/s: 100 Hz
    ignored = sb.match_events(events, truth, DF_HZ, OBS_LENGTH_S, drift_column=None)
    assert (ignored["needle_row"] == sb.NO_MATCH).all()


def with_spans(truth: pd.DataFrame, spans: dict | None = None) -> pd.DataFrame:
    """truth.csv with the span columns: a straight path over each observation (from f_mhz_obs<k> by its drift x
    OBS_LENGTH_S), or the spans given ({row: {obs: (low Hz, high Hz)}}, in Hz from F0)."""
    truth = truth.copy()
    for k in range(6):
        start = truth[f"f_mhz_obs{k}"]
        end = start + np.nan_to_num(truth["drift_hz_s"]) * OBS_LENGTH_S * 1e-6
        truth[f"f_mhz_min_obs{k}"], truth[f"f_mhz_max_obs{k}"] = np.minimum(start, end), np.maximum(start, end)
    for row, by_obs in (spans or {}).items():
        for k, (low, high) in by_obs.items():
            truth.loc[row, [f"f_mhz_min_obs{k}", f"f_mhz_max_obs{k}"]] = [mhz(low), mhz(high)]
    return truth


def curved_truth() -> pd.DataFrame:
    """Sine needles S at 0 Hz and T at 200 Hz: in observation 2 the path of S dips to -120 Hz and comes back to its
    start (span -120 .. 0 Hz), that of T spans 200 .. 230 Hz; elsewhere straight spans; an RFI line at -150 Hz.
    Tolerance 40 Hz (20 channels of 2 Hz) for drifts up to 0.8 Hz/s."""
    rows = [
        signal("0", 0, "needle", 0.0, -0.6, shape="sine"),  # S
        signal("0", 1, "needle", 200.0, 0.3, shape="sine"),  # T
        signal("0", 2, "rfi_zero_drift", -150.0, 0.0, shape="constant", on_only=False),
    ]
    return with_spans(pd.DataFrame(rows), {0: {2: (-120.0, 0.0)}, 1: {2: (200.0, 230.0)}})


def test_a_piece_of_a_curved_needle_is_matched_along_its_path():
    """The straight line fitted to a piece of a sine needle starts 104 Hz from the path's start (tolerance 40 Hz)
    but runs on frequencies the path covers there: a needle event. Tracks more than 20 channels (40 Hz) from the
    path's span are not, nor steep tracks that cross the span without sweeping as far as it is wide (within 40
    channels), nor is anything matched by the span in an observation where the needle is absent."""
    truth = curved_truth()
    rows = [
        (2, -104.0, 0.59, 0),  # the piece: -104 .. -45 Hz, inside the span
        (2, -300.0, 0.59, None),  # -300 .. -241 Hz: 121 Hz below the span
        (2, -218.0, 0.59, 0),  # -218 .. -159: 39 Hz below it, in (and 9 Hz from the RFI line: the needle first)
        (2, -222.0, 0.59, 2),  # -222 .. -163: 43 Hz below it, out; 13 Hz from the RFI line
        (2, 89.0, -0.5, 0),  # 39 .. 89 Hz, falling: 39 Hz above the span, in
        (2, 95.0, -0.5, None),  # 45 .. 95: out
        (2, 140.0, -1.5, 0),  # -10 .. 140: overlaps S's span, 60 Hz below T's: S
        (2, 150.0, 0.6, 1),  # 150 .. 210: overlaps T's span, 150 Hz above S's: T
        (2, -10.0, 2.5, 0),  # -10 .. 240: overlaps both; 10 Hz from S's start, 210 Hz from T's: S
        (2, 185.0, np.nan, 1),  # no drift: the point alone, 15 Hz below T's span (and its start)
        (3, -60.0, 0.59, None),  # an OFF observation: S is absent
        (4, -104.0, 0.59, 0),  # observation 4: S's span is its straight path there, -60 .. 0 Hz
        (4, -170.0, 0.59, 2),  # -170 .. -111: 51 Hz from it, out; 20 Hz from the RFI line's frequency
        (2, 330.0, -2.0, None),  # 130 .. 330: crosses T's span but sweeps 200 Hz to its 30 (> 40 channels): out
        (2, -270.0, 2.2, None),  # -270 .. -50: crosses S's span and the RFI line, sweeping 220 Hz to 120 and 0
    ]
    events = pd.DataFrame(
        {
            "cadence": "0",
            "obs": [r[0] for r in rows],
            "freq_mhz": [mhz(r[1]) for r in rows],
            "drift_hz_s": [r[2] for r in rows],
        }
    )
    matched = sb.match_events(events, truth, DF_HZ, OBS_LENGTH_S)
    expected = [r[3] for r in rows]
    needles = [e if e in (0, 1) else sb.NO_MATCH for e in expected]
    assert matched["needle_row"].tolist() == needles
    assert matched["match"].tolist() == ["needle" if e in (0, 1) else "rfi" if e == 2 else "none" for e in expected]
    assert matched.loc[0, "offset_hz"] == pytest.approx(-104.0, abs=1e-3)  # from the path's start, as before

    start_rule = sb.match_events(events, truth, DF_HZ, OBS_LENGTH_S, spans=False)
    old = truth.drop(columns=[c for c in truth if c.startswith(("f_mhz_min_", "f_mhz_max_"))])
    pd.testing.assert_frame_equal(start_rule, sb.match_events(events, old, DF_HZ, OBS_LENGTH_S))
    assert start_rule.loc[0, "match"] == "none"  # the start rule alone misses the piece


def test_old_truth_without_spans_matches_as_before():
    """A truth.csv made before the span columns, or spans=False, gives the start rule alone: the toy events'
    expectations hold, and straight spans added to the toy truth change none of them."""
    truth, events = toy_truth(), toy_events()
    before = sb.match_events(events, truth, DF_HZ, OBS_LENGTH_S)
    assert before["needle_row"].tolist() == [NEEDLE_ROWS.get(e, sb.NO_MATCH) for e in events["expected"]]
    spanned = with_spans(truth)
    pd.testing.assert_frame_equal(sb.match_events(events, spanned, DF_HZ, OBS_LENGTH_S, spans=False), before)
    pd.testing.assert_frame_equal(sb.match_events(events, spanned, DF_HZ, OBS_LENGTH_S), before)


def test_read_dat_hits(tmp_path):
    header = "# -------------------------- o --------------------------\n# File ID: x.h5 \n" + "# --\n" * 7
    rows = (
        "000001\t  0.051021\t 35.975933\t   8420.827925\t   8420.827925\t200000\t   8420.830116\t   8420.825738\t"
        "0.0\t      0.000000\t0\t508\t\n"
        "000002\t -0.346945\t 39.130676\t   8419.989388\t   8419.989388\t500124\t   8419.991579\t   8419.987201\t"
        "0.0\t      0.000000\t0\t508\t\n"
    )
    (tmp_path / "x.dat").write_text(header + rows)
    hits = sb.read_dat_hits(tmp_path / "x.dat")
    assert hits["drift_hz_s"].tolist() == [0.051021, -0.346945] and hits["freq_mhz"].tolist() == [
        8420.827925,
        8419.989388,
    ]
    assert sb.read_dat_hits(tmp_path / "x.dat").shape == (2, 3)
    (tmp_path / "empty.dat").write_text(header)
    assert sb.read_dat_hits(tmp_path / "empty.dat").empty


def test_tolerance_is_twenty_channels_or_half_the_drift_over_an_observation():
    assert sb.tolerance_hz([0.0, 0.1, 2.0, -4.0], 2.0, 100.0).tolist() == [40.0, 40.0, 100.0, 200.0]


def test_recall_curve_and_threshold():
    matched = pd.DataFrame({"score": [5.0, 5.0, 4.0, 3.0, 2.0], "needle_row": [0, sb.NO_MATCH, 0, 1, sb.NO_MATCH]})
    curve = sb.recall_curve(matched, n_needles=4, n_cadences=2)
    assert curve["threshold"].tolist() == [np.inf, 5.0, 4.0, 3.0, 2.0]  # tied scores enter together
    assert curve["events"].tolist() == [0, 2, 3, 4, 5]
    assert curve["false_events"].tolist() == [0, 1, 1, 1, 2]
    assert curve["found"].tolist() == [0, 1, 1, 2, 2]
    assert curve["recall"].tolist() == [0.0, 0.25, 0.25, 0.5, 0.5]
    assert curve["false_per_cadence"].tolist() == [0.0, 0.5, 0.5, 0.5, 1.0]
    assert sb.threshold_at(curve, 0) == np.inf and sb.threshold_at(curve, 1) == 3.0 and sb.threshold_at(curve, 9) == 2
    assert sb.recall_curve(matched.iloc[:0], 4, 2)["found"].tolist() == [0]


def test_either_selection_reads_both_lists_within_the_false_budget():
    """Needle 0 only the filter ranks high, needle 1 only the model; each list's next event is false, so with no
    false event allowed the union finds both, and with one allowed a third needle behind either list's false
    event."""
    events = pd.DataFrame(
        {
            "level": [3, 3, 1, 1, 2, 1],
            "score": [9.0, 8.0, -1.0, -2.0, 1.0, -3.0],
            "model_score": [0.2, 0.1, 0.99, 0.95, 0.05, 0.9],
            "needle_row": [0, sb.NO_MATCH, 1, sb.NO_MATCH, 3, 2],
        }
    )
    chosen, a, b = sb.either_selection(events, 0)
    assert sorted(chosen["needle_row"]) == [0, 1] and (a, b) == (9.0, 0.99)
    chosen, a, b = sb.either_selection(events, 1)  # several (a, b) find 3 needles with 4 events
    assert (chosen["needle_row"] == sb.NO_MATCH).sum() == 1 and chosen["needle_row"].nunique() == 4
    assert len(chosen) == 4
    chosen, a, b = sb.either_selection(events[events["needle_row"] == sb.NO_MATCH], 0)
    assert chosen.empty and a == np.inf and b == np.inf


def test_needle_groups_bins_and_shapes():
    needles = pd.DataFrame(
        {
            "snr": [5.0, 9.99, 10.0, 20.0, 50.0, 60.0],
            "drift_hz_s": [0.0, -0.5, 0.99, -1.0, 4.0, 4.5],
            "shape": ["linear", "sine", "pulsed", "quadratic", "linear", "spiral"],
        }
    )
    groups = {name: np.flatnonzero(mask).tolist() for name, mask in sb.needle_groups(needles).items()}
    assert groups["all"] == [0, 1, 2, 3, 4, 5]
    assert groups["SNR 5-10"] == [0, 1] and groups["SNR 10-20"] == [2] and groups["SNR 20-50"] == [3, 4]
    assert groups["|drift| 0-0.5"] == [0] and groups["|drift| 0.5-1"] == [1, 2]
    assert groups["|drift| 1-2"] == [3] and groups["|drift| 2-4"] == [4]  # 60 and 4.5 Hz/s fall in no bin
    assert [g for g in groups if g.startswith("shape")] == [
        "shape linear",
        "shape sine",
        "shape quadratic",
        "shape pulsed",
        "shape spiral",
    ]
    recall = sb.group_recall({0, 4}, needles)
    assert recall["all"] == {"needles": 6, "found": 2, "recall": pytest.approx(1 / 3)}
    assert recall["shape linear"]["recall"] == 1.0 and recall["shape sine"]["recall"] == 0.0
    assert "all-six RFI near" not in groups  # only for sets made with --rfi-near-needles
    near = sb.needle_groups(needles.assign(rfi_near=[True, False, "True", "False", False, True]))
    assert np.flatnonzero(near["all-six RFI near"]).tolist() == [0, 2, 5]
    assert np.flatnonzero(near["no RFI near"]).tolist() == [1, 3, 4]


def test_turbo_seti_events_one_per_hit_id_at_its_on_hit(tmp_path):
    """Level 3 rows grouped by Hit_ID, placed at the level-2 ON hit the Hit_ID names (also when find_events
    dropped that row); level 2: each row an event; the observation from FileID."""
    files = [f"obs{k}_{'ON' if k % 2 == 0 else 'OFF'}_T.h5" for k in range(6)]
    base = {"TopHitNum": 1, "SNR": 20.0, "DriftRate": 0.5, "Source": "SYN_T"}
    level2 = pd.DataFrame(
        [
            {**base, "row": 3, "FileID": files[0], "Freq": 1000.1, "status": "on_table_1"},
            {**base, "row": 7, "FileID": files[0], "Freq": 1000.2, "status": "on_table_1"},
            {**base, "row": 12, "FileID": files[2], "Freq": 1000.3, "status": "on_table_2"},
        ]
    ).set_index("row")
    level3 = pd.DataFrame(
        [
            {**base, "row": 12, "FileID": files[2], "Freq": 1000.1004, "status": "on_table_2", "Hit_ID": "SYN_T_3"},
            {**base, "row": 7, "FileID": files[0], "Freq": 1000.2, "status": "on_table_1", "Hit_ID": "SYN_T_7"},
            {**base, "row": 12, "FileID": files[2], "Freq": 1000.2004, "status": "on_table_2", "Hit_ID": "SYN_T_7"},
        ]
    ).set_index("row")
    level2.to_csv(tmp_path / "f2.csv", index_label="row")
    level3.to_csv(tmp_path / "f3.csv", index_label="row")
    result = {"events": {"c": {"3": {"csv": str(tmp_path / "f3.csv")}, "2": {"csv": str(tmp_path / "f2.csv")}}}}
    cadence = SimpleNamespace(name="c", headers=[SimpleNamespace(path=Path(f"/x/{f}")) for f in files])
    events = sb.turbo_seti_events(result, [cadence])
    assert events[3]["event"].tolist() == ["SYN_T_3", "SYN_T_7"]
    assert events[3]["freq_mhz"].tolist() == [1000.1, 1000.2] and events[3]["obs"].tolist() == [0, 0]
    assert events[2]["obs"].tolist() == [0, 0, 2] and len(events[2]) == 3


def test_settings_are_checked():
    with pytest.raises(sb.ConfigError, match="--fine-channels 0"):
        sb.BenchSettings(data=Path("d"), out=Path("o"), fine_channels=0)
    with pytest.raises(sb.ConfigError, match="--plot-top 2"):
        sb.BenchSettings(data=Path("d"), out=Path("o"), plot_top=2)
    with pytest.raises(sb.ConfigError, match="--turbo-seti maybe"):
        sb.BenchSettings(data=Path("d"), out=Path("o"), turbo_seti="maybe")
    assert sb.BenchSettings(data=Path("d"), out=Path("r/scan")).work_dir == REPO / "outputs" / "scan-bench" / "scan"


# -------------------------------------------------------------- command ---


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def bench(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "bench/scan.py",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
        "--work",
        str(tmp_path / "work"),
        *extra,
    ]


def events_of(work: Path) -> pd.DataFrame:
    """Every cadence's events under a benchmark's scan folder."""
    return pd.concat([pd.read_csv(p) for p in sorted(work.glob("*/events.csv"))], ignore_index=True)


def test_command_errors_are_one_line(tmp_path):
    missing = run(bench(tmp_path, "--turbo-seti", "off", "--skip-memory"))
    assert missing.returncode == 2 and "catalog.csv: not found; pass --generate" in missing.stderr
    assert missing.stderr.strip().count("\n") == 0 and missing.stderr.startswith("error: ")
    no_python = run(bench(tmp_path, "--turbo-seti", "on", "--turbo-seti-python", str(tmp_path / "nopython")))
    assert no_python.returncode == 2 and "error: --turbo-seti on:" in no_python.stderr
    assert "no such interpreter" in no_python.stderr
    bad_flag = run(bench(tmp_path, "--fine-channels", "x"))
    assert bad_flag.returncode == 2 and bad_flag.stderr.startswith("error: argument --fine-channels")


def test_benchmark_end_to_end(tmp_path):
    """Tiny cadences generated by the command itself, both searches (turbo_seti when /tmp/ts exists) and the scan
    with a model (random weights: the plumbing, not the figures), one memory run at a tiny size, the report files;
    an existing report is not replaced without --overwrite."""
    checkpoint = write_scan_checkpoint(tmp_path / "model" / "fold0.safetensors")
    command = bench(
        tmp_path,
        "--generate",
        "--n-cadences",
        "2",
        "--coarse-channels",
        "2",
        "--fine-channels",
        "4096",
        "--memory-coarse-channels",
        "1",
        "--memory-fine-channels",
        "4096",
        "--plot-top",
        "3",
        "--turbo-seti",
        "auto" if HAS_TURBO_SETI else "off",
        "--checkpoints",
        str(checkpoint.parent),
        "--model-snr",
        "8",
    )
    result = run(command)
    assert result.returncode == 0, result.stderr[-5000:]
    out = tmp_path / "out"
    for name in sb.REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "recall_vs_false.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "results.json").read_text())
    assert report["data"]["cadences"] == 2 and report["data"]["coarse_channels_per_file"] == 2
    assert report["data"]["fine_channels_per_coarse"] == 4096 and report["data"]["needles"] > 0
    points = report["points"]
    assert {"ours level 3", "ours level >= 2 (all)"} <= set(points)
    for p in points.values():
        assert 0 <= p["recall"] <= 1 and p["found"] <= p["needles"] and p["false_events"] <= p["events"]
        assert set(p["groups"]) >= {"all", "SNR 5-10", "|drift| 2-4", "shape linear"}
    assert points["ours level >= 2 (all)"]["found"] >= points["ours level 3"]["found"]
    model = report["model"]
    assert "ours + model @ our level 3 false count" in points and model["snr"] == 8
    assert model["events"] >= len(events_of(tmp_path / "work" / "scan")) and model["snippets_per_second"] > 0
    assert (out / "curve_model.csv").is_file() and model["seconds"] > 0
    timing = report["timing"]
    assert timing["ours"]["per_coarse_channel_per_observation_s"]["n"] == 4  # 2 cadences x 2 coarse channels
    if HAS_TURBO_SETI:
        assert {"turbo_seti level 3", "turbo_seti level 2", "ours @ turbo_seti L3 false count"} <= set(points)
        assert timing["turbo_seti"]["per_coarse_channel_per_observation_s"]["n"] == 12 and report["headline"]
        assert timing["ratio_turbo_seti_over_ours"]["median"] > 0
    else:
        assert report["skipped"]["turbo_seti"] == "--turbo-seti off" and report["headline"] is None
    assert [m["coarse_channels"] for m in report["memory"]] == [1]  # one tiny run: the ratio needs the real sizes
    assert all(m["peak_rss_mib"] > 50 for m in report["memory"])
    assert 1 <= len(report["plots"]) <= 3 and all((out / p["file"]).is_file() for p in report["plots"])
    markdown = (out / "report.md").read_text()
    assert "## Headline" in markdown and "-core CPU" in markdown and "candidate_1_" in markdown
    assert "Model (" in markdown and "snippets/s" in markdown
    assert report["command"].startswith("python bench/scan.py") and report["date"]
    results = pd.read_csv(out / "results.csv")
    assert {"section", "method", "metric", "value", "command", "machine", "date"} <= set(results.columns)
    events = pd.read_csv(out / "events.csv")
    assert set(events["match"]) <= {"needle", "rfi", "none"}

    again = run(command)
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr
