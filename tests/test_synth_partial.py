"""The generator's partial needles (--partial-share) and widely drawn interference (--wide-rfi): where they are,
what the metadata says, and that with both off the files are those of the generator before them (byte for byte
here; the test allows another CPU's last-bit differences)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.core.cadence import ALL_OBSERVATIONS, OFF_OBSERVATIONS, ON_OBSERVATIONS
from src.synth import generator as synth
from src.synth.__main__ import main as synth_main
from src.synth.generator import SynthConfig, make_cadence, write_dataset

BRIGHT = SynthConfig(seed=3, snr_min=150.0, snr_max=150.0, partial_share=1.0)

# What the generator wrote before these options (commit 58820f6, whose output was byte-identical to today's with
# the options off): `python -m src.synth --out X --n-train 6 --n-test 4 --seed 0 --workers 1` (default/) and
# `python -m src.synth --preset benchmark --out X --n-test 12 --seed 1001 --workers 1` (benchmark/; the preset had
# no partial needles and no wide interference then): its CSVs, and each array's mean, standard deviation and
# largest magnitude. Compared with a tolerance far below what one extra random draw changes, and far above the
# last-bit differences another CPU's vectorised maths could make.
BEFORE = Path(__file__).parent / "fixtures" / "synth-before-options"


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def assert_same_as_before(root: Path, before: Path) -> None:
    """The set at `root` is the one recorded in `before`: the same CSVs and files, arrays alike (see BEFORE)."""
    for csv in sorted(before.glob("*.csv")):
        pd.testing.assert_frame_equal(pd.read_csv(root / csv.name), pd.read_csv(csv), rtol=1e-9)
    recorded = json.loads((before / "arrays.json").read_text())
    arrays = {str(p.relative_to(root)): np.load(p).astype(np.float64) for p in sorted(root.rglob("*.npy"))}
    assert sorted(arrays) == sorted(recorded)
    for name, x in arrays.items():
        np.testing.assert_allclose([x.mean(), x.std(), np.abs(x).max()], recorded[name], rtol=1e-4, atol=1e-6)


def _energy(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) ** 2).sum(axis=(1, 2))


# --------------------------------------------------------- byte-identical ---


def test_default_output_is_that_of_the_generator_before_the_options(tmp_path):
    _quiet(
        synth_main,
        ["--out", str(tmp_path / "a"), "--n-train", "6", "--n-test", "4", "--seed", "0", "--workers", "1"],
    )
    assert_same_as_before(tmp_path / "a", BEFORE / "default")
    assert list(pd.read_csv(tmp_path / "a" / "metadata.csv").columns) == synth.METADATA_COLUMNS


def test_benchmark_preset_with_both_options_off_gives_the_old_benchmark_set(tmp_path):
    args = ["--preset", "benchmark", "--n-test", "12", "--seed", "1001", "--workers", "1"]
    _quiet(synth_main, [*args, "--out", str(tmp_path / "old"), "--partial-share", "0", "--wide-rfi", "off"])
    assert_same_as_before(tmp_path / "old", BEFORE / "benchmark")
    _quiet(synth_main, [*args, "--out", str(tmp_path / "new")])  # the preset now has both kinds
    meta = pd.read_csv(tmp_path / "new" / "metadata.csv")
    assert list(meta.columns) == synth.METADATA_COLUMNS + synth.PARTIAL_COLUMNS + synth.WIDE_RFI_COLUMNS
    with pytest.raises(AssertionError):
        assert_same_as_before(tmp_path / "new", BEFORE / "benchmark")


# ----------------------------------------------------------- partial needles ---


@pytest.mark.parametrize("kind", synth.PARTIAL_KINDS)
def test_partial_needles_are_absent_from_off_and_missed_on_observations(kind):
    """A bright needle (SNR 150: ~9 sigma a pixel): its ON observations hold it, the others hold only noise."""
    seen = set()
    for seed in range(6):
        signal, meta = _quiet(make_cadence, BRIGHT, seed, 1, partial=kind, interference="none", noise=False)
        noisy, same = _quiet(make_cadence, BRIGHT, seed, 1, partial=kind, interference="none")
        assert meta == same or all(meta[k] == same[k] or meta[k] != meta[k] for k in meta)  # NaN != NaN
        energy = _energy(signal)
        holds = [o for o in ON_OBSERVATIONS if energy[o] > 0]
        assert meta["partial"] == kind and meta["n_on_present"] == len(holds) >= 1
        assert (energy[list(OFF_OBSERVATIONS)] == 0).all()  # not one pixel of it in an OFF observation
        bright = (noisy.astype(np.float32) > 5).sum(axis=(1, 2))  # pixels above 5 sigma, per observation
        for o in ALL_OBSERVATIONS:
            if o in holds:
                assert bright[o] > 30, (kind, seed, o, bright)
            else:  # noise alone: a chi-squared 5-sigma pixel is rare
                assert bright[o] <= 5, (kind, seed, o, bright)
        seen.add(len(holds))
        if kind == "subset":
            assert len(holds) in (1, 2)
        rows = [int((np.abs(signal[o]).max(axis=1) > 0).sum()) for o in holds]
        if meta["shape"] != "pulsed":
            assert min(rows) >= synth.MIN_VISIBLE_ROWS  # no sliver of a needle in an observation said to hold it
    assert seen <= {1, 2, 3}
    if kind == "subset":
        assert seen == {1, 2}


def test_a_leaving_needle_is_steep_and_not_refitted_into_the_window():
    steep = []
    for seed in range(10):
        signal, meta = _quiet(
            make_cadence, BRIGHT, seed, 1, shape="linear", partial="leaves_window", interference="none", noise=False
        )
        steep.append(abs(meta["drift_rate"]) / BRIGHT.max_drift)
        energy = _energy(signal)
        lit = [o for o in ON_OBSERVATIONS if energy[o] > 0]
        # where the straight path is at each ON observation's first row: outside the 256 channels somewhere
        starts = synth.obs_start_times(BRIGHT)
        centre = [meta["f_start"] + meta["drift_rate"] * starts[o] / synth.DF_HZ for o in ON_OBSERVATIONS]
        ends = [c + meta["drift_rate"] * synth.TCHANS * synth.DT_S / synth.DF_HZ for c in centre]
        outside = [min(a, b) < 0 or max(a, b) > synth.FCHANS - 1 for a, b in zip(centre, ends, strict=True)]
        assert any(outside)
        assert meta["n_on_present"] == len(lit)
    assert min(steep) >= synth.LEAVING_DRIFT[0] - 1e-9


def test_switched_needles_are_dark_before_or_after_the_switch():
    for seed in range(6):
        signal, _ = _quiet(
            make_cadence, BRIGHT, seed, 1, shape="linear", partial="switches", interference="none", noise=False
        )
        lit = np.concatenate([np.abs(signal[o]).max(axis=1) > 0 for o in ON_OBSERVATIONS])  # ON rows, in time order
        first, last = np.flatnonzero(lit)[[0, -1]]
        assert lit[first : last + 1].all()  # one window: on once, off once
        assert (~lit).sum() >= synth.MIN_VISIBLE_ROWS and lit.sum() >= synth.MIN_VISIBLE_ROWS


def test_share_of_partial_needles_and_metadata_columns(tmp_path):
    cfg = SynthConfig(seed=4, pos_frac=1.0, partial_share=0.5, shapes=("linear",))
    meta = _quiet(write_dataset, tmp_path / "d", cfg, 0, 24, workers=2, progress=False)
    disk = pd.read_csv(tmp_path / "d" / "metadata.csv")
    assert list(disk.columns) == synth.METADATA_COLUMNS + synth.PARTIAL_COLUMNS
    assert set(meta.partial) <= {"none", *synth.PARTIAL_KINDS}
    assert 4 <= int((meta.partial != "none").sum()) <= 20  # about half of 24
    assert (meta.loc[meta.partial == "none", "n_on_present"] == 3).all()
    assert meta.n_on_present.between(1, 3).all()
    again = _quiet(write_dataset, tmp_path / "e", cfg, 0, 24, workers=1, progress=False)
    assert again.equals(meta)  # whatever the number of workers


def test_partial_options_are_checked():
    with pytest.raises(ValueError, match="partial_share"):
        SynthConfig(partial_share=1.5)
    with pytest.raises(ValueError, match="partial"):
        make_cadence(SynthConfig(), 0, 1, partial="sometimes")


# --------------------------------------------------------- wide interference ---


def test_wide_interference_draws_every_shape_and_variant():
    cfg = SynthConfig(wide_rfi=True)
    rng = np.random.default_rng(0)
    drawn = [synth.sample_rfi_signal(rng, cfg) for _ in range(300)]
    shapes = {q["rfi_shape"] for q in drawn}
    assert shapes == set(synth.SHAPES) | set(synth.RFI_VARIANTS)
    limit = synth.NEAR_ZERO_DRIFT * cfg.max_drift
    still = np.mean([abs(q["drift_rate"]) <= limit for q in drawn if q["rfi_path"] == "linear"])
    before = [synth.sample_signal(rng, cfg, "linear", ALL_OBSERVATIONS, near_zero=True) for _ in range(300)]
    still_before = np.mean([abs(q["drift_rate"]) <= limit for q in before])
    assert 0.2 < still < 0.5 and still_before > still + 0.1  # a quarter drawn nearly still, not half
    wide = [q["width"] / synth.DF_HZ for q in drawn if q["rfi_shape"] == "wide"]
    assert min(wide) >= synth.RFI_WIDE_CHANNELS[0]
    fading = [q for q in drawn if q["rfi_shape"] == "fading"]
    assert all(synth.RFI_FAINT_LEVEL[0] <= q["off_level"] <= synth.RFI_FAINT_LEVEL[1] for q in fading)
    curved = {q["rfi_path"] for q in drawn if q["rfi_shape"] in synth.RFI_VARIANTS}
    assert curved == set(synth.SHAPES)


def test_wide_interference_spans_all_six_observations_and_fades_in_some_off_ones():
    cfg = SynthConfig(seed=1, wide_rfi=True, snr_min=40.0, snr_max=40.0)
    found = {}
    for seed in range(60):
        x, meta = _quiet(make_cadence, cfg, seed, 0, interference="rfi", noise=False)
        found.setdefault(meta["rfi_shape"], (x, meta))
        if len(found) == len(synth.SHAPES) + len(synth.RFI_VARIANTS):
            break
    assert set(found) == set(synth.SHAPES) | set(synth.RFI_VARIANTS)
    for shape, (x, meta) in found.items():
        energy = _energy(x)
        assert (energy > 0).all(), shape  # in all six observations
        assert meta["rfi_path"] in synth.SHAPES and meta["rfi_width"] > 0
    x, meta = found["fading"]
    energy = _energy(x)
    assert energy[list(OFF_OBSERVATIONS)].min() < 0.5 * energy.max() and meta["rfi_off_level"] < 0.5
    x, meta = found["wide"]
    assert (x[0].astype(np.float32) > 0.5 * x[0].max()).sum(axis=1).max() >= 5  # many channels a row
    assert meta["rfi_width"] >= synth.RFI_WIDE_CHANNELS[0] * synth.DF_HZ


def test_wide_rfi_flag_and_columns(tmp_path):
    _quiet(
        synth_main,
        [
            "--out",
            str(tmp_path / "w"),
            "--n-train",
            "0",
            "--n-test",
            "8",
            "--rfi-frac",
            "1",
            "--off-frac",
            "0",
            "--pos-frac",
            "0",
            "--wide-rfi",
            "on",
            "--workers",
            "1",
        ],
    )
    meta = pd.read_csv(tmp_path / "w" / "metadata.csv")
    assert list(meta.columns) == synth.METADATA_COLUMNS + synth.WIDE_RFI_COLUMNS
    assert (meta.interference == "rfi").all() and meta.rfi_shape.isin([*synth.SHAPES, *synth.RFI_VARIANTS]).all()
    assert dataclasses.replace(SynthConfig(), wide_rfi=1).wide_rfi is True
