"""Tests for src/data/filterbank.py (reading and writing .h5/.fil, coarse channels) and src/search/cadence.py
(checking a cadence's files, ON/OFF, the catalog): round trips, the real GBT file setigen ships, and every kind
of bad file or cadence, each a FilterbankError whose message starts with the offending file and says the problem.
"""

from __future__ import annotations

import multiprocessing
import re
import warnings
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from src.core.errors import FilterbankError
from src.data.filterbank import (
    FINE_CHANNELS_PER_COARSE_GBT,
    SECONDS_PER_DAY,
    FilterbankHeader,
    fine_channels_per_coarse,
    read_block,
    read_header,
    with_path,
    write_fil,
    write_h5,
)
from src.search.cadence import open_cadence, read_catalog

ROWS, CHANNELS = 16, 64
TSAMP = 18.253611008
SLEW_S = 20.0
OBS_DAYS = (ROWS * TSAMP + SLEW_S) / SECONDS_PER_DAY
CADENCE_SOURCES = ("TARGET", "OFF_B", "TARGET", "OFF_C", "TARGET", "OFF_D")


def make_header(path: Path, **changes) -> FilterbankHeader:
    values = {
        "fch1": 8421.38671875,
        "foff": -2.7939677238464355e-06,
        "nchans": CHANNELS,
        "n_rows": ROWS,
        "tsamp": TSAMP,
        "tstart": 58674.5,
        "source_name": "TARGET",
        "src_raj": 17.7875,
        "src_dej": -28.3831,
    }
    values.update(changes)
    return FilterbankHeader(path=Path(path), **values)


def data_for(header: FilterbankHeader, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((header.n_rows, header.nchans)).astype(np.float32) + 10.0


def write(header: FilterbankHeader, data: np.ndarray | None = None, seed: int = 0) -> Path:
    data = data_for(header, seed) if data is None else data
    writer = write_h5 if header.path.suffix == ".h5" else write_fil
    return writer(header, [data[:, : header.nchans // 2], data[:, header.nchans // 2 :]])


def write_cadence(folder: Path, suffix: str = ".h5", sources=CADENCE_SOURCES, **changes) -> list[Path]:
    """Six small observations in ABACAD order, each starting a slew after the previous one ends."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, source in enumerate(sources):
        header = make_header(folder / f"obs{k}{suffix}", source_name=source, tstart=58674.5 + k * OBS_DAYS, **changes)
        paths.append(write(header, seed=k))
    return paths


def rewrite(path: Path, seed: int = 0, **changes) -> Path:
    """Replace one observation by one with some header values changed (same path)."""
    header = replace(read_header(path), **changes)
    return write(header, seed=seed)


def set_h5_attr(path: Path, key: str, value) -> Path:
    with h5py.File(path, "r+") as h5:
        h5["data"].attrs[key] = value
    return path


def raises(path_or_text, *problem: str):
    """pytest.raises for a FilterbankError whose message starts with `path_or_text` and contains each `problem`."""
    return pytest.raises(
        FilterbankError, match=r"(?s)^" + re.escape(str(path_or_text)) + "".join(f".*{re.escape(p)}" for p in problem)
    )


# --------------------------------------------------------------------------------------------- round trips ---


@pytest.mark.parametrize("suffix", [".h5", ".fil"])
def test_write_then_read_round_trip(tmp_path, suffix):
    header = make_header(tmp_path / f"obs{suffix}", source_name="VOYAGER1", nfpc=32)
    data = data_for(header, seed=3)
    path = write(header, data)

    back = read_header(path)
    assert back.path == path and back.container == suffix[1:]
    for key in ("fch1", "foff", "tsamp", "tstart"):
        assert getattr(back, key) == getattr(header, key), key  # float64 in both containers: exact
    assert (back.nchans, back.n_rows, back.nifs, back.nbits) == (CHANNELS, ROWS, 1, 32)
    assert back.source_name == "VOYAGER1" and back.telescope_id == 6
    assert back.src_raj == pytest.approx(17.7875, abs=1e-6)
    assert back.src_dej == pytest.approx(-28.3831, abs=1e-6)
    assert back.tstop == pytest.approx(header.tstart + ROWS * TSAMP / SECONDS_PER_DAY)
    assert back.frequency_mhz(CHANNELS - 1) == pytest.approx(header.fch1 + (CHANNELS - 1) * header.foff)
    # sigproc has no nfpc keyword: only the .h5 keeps it
    assert back.nfpc == (32 if suffix == ".h5" else None)

    whole = read_block(back, 0, CHANNELS)
    assert whole.dtype == np.float32 and whole.flags.c_contiguous
    np.testing.assert_array_equal(whole, data)
    for start, stop in ((0, 1), (5, 37), (CHANNELS - 3, CHANNELS)):
        np.testing.assert_array_equal(read_block(back, start, stop), data[:, start:stop])


@pytest.mark.parametrize("start, stop", [(-1, 4), (4, 4), (10, 5), (0, CHANNELS + 1)])
def test_read_block_rejects_channel_ranges_outside_the_file(tmp_path, start, stop):
    header = read_header(write(make_header(tmp_path / "obs.h5")))
    with pytest.raises(ValueError, match="outside"):
        read_block(header, start, stop)


def test_writers_check_the_blocks_cover_the_band(tmp_path):
    header = make_header(tmp_path / "obs.h5")
    with pytest.raises(ValueError, match="cover 32 channels"):
        write_h5(header, [np.zeros((ROWS, 32), np.float32)])
    with pytest.raises(ValueError, match="expected"):
        write_fil(with_path(header, tmp_path / "obs.fil"), [np.zeros((ROWS + 1, CHANNELS), np.float32)])


def test_reads_8_bit_fil(tmp_path):
    """blimpy's sigproc keywords with nbits = 8: samples are uint8, returned as float32."""
    from src.data.filterbank import _sigproc

    sigproc = _sigproc()
    header = make_header(tmp_path / "obs8.fil", nbits=8)
    data = np.random.default_rng(1).integers(0, 256, (ROWS, CHANNELS), dtype=np.uint8)
    encoded = sigproc.to_sigproc_keyword("HEADER_START")
    for key in ("fch1", "foff", "nchans", "tsamp", "tstart", "nifs", "nbits", "source_name", "telescope_id"):
        encoded += sigproc.to_sigproc_keyword(key, header.sigproc()[key])
    encoded += sigproc.to_sigproc_keyword("HEADER_END")
    header.path.write_bytes(encoded + data.tobytes())

    back = read_header(header.path)
    assert (back.nbits, back.n_rows, back.data_offset) == (8, ROWS, len(encoded))
    np.testing.assert_array_equal(read_block(back, 3, 9), data[:, 3:9].astype(np.float32))


@pytest.fixture(scope="module")
def gbt_file() -> Path:
    setigen = pytest.importorskip("setigen")
    path = Path(setigen.__file__).parent / "assets" / "sample.fil"
    if not path.is_file():
        pytest.skip(f"setigen ships no {path}")
    return path


def waterfall(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from blimpy import Waterfall

        return Waterfall(str(path))


def test_real_gbt_file_reads_as_blimpy_reads_it(gbt_file):
    header = read_header(gbt_file)
    assert (header.nchans, header.n_rows, header.nbits, header.nifs) == (1024, 32, 32, 1)
    assert header.foff == pytest.approx(-1.397e-6, rel=1e-3)
    assert header.source_name == "DIAG_SGR_B2" and header.telescope_id == 6
    assert header.df_hz == pytest.approx(1.397, rel=1e-3)

    wf = waterfall(gbt_file)
    for key in ("fch1", "foff", "tsamp", "tstart"):
        assert getattr(header, key) == pytest.approx(wf.header[key], rel=1e-12), key
    assert header.src_raj == pytest.approx(wf.header["src_raj"].value)
    assert header.src_dej == pytest.approx(wf.header["src_dej"].value)
    expected = wf.data[:, 0, :]
    np.testing.assert_array_equal(read_block(header, 0, header.nchans), expected)
    np.testing.assert_array_equal(read_block(header, 100, 612), expected[:, 100:612])
    assert fine_channels_per_coarse(header) == 1024  # no nfpc, not the 2^20 product: the whole band


@pytest.mark.parametrize("suffix", [".h5", ".fil"])
def test_real_gbt_file_survives_rewriting(gbt_file, tmp_path, suffix):
    header = read_header(gbt_file)
    data = read_block(header, 0, header.nchans)
    copy = with_path(header, tmp_path / f"copy{suffix}")
    (write_h5 if suffix == ".h5" else write_fil)(copy, [data[:, :300], data[:, 300:]])
    back = read_header(copy.path)
    for key in ("fch1", "foff", "nchans", "n_rows", "tsamp", "tstart", "source_name", "telescope_id"):
        assert getattr(back, key) == getattr(header, key), key
    assert back.src_raj == pytest.approx(header.src_raj, abs=1e-6)
    assert back.src_dej == pytest.approx(header.src_dej, abs=1e-6)
    np.testing.assert_array_equal(read_block(back, 0, back.nchans), data)


# ----------------------------------------------------------------------------------------------- bad files ---


def _random_bytes(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return path


def _no_data_h5(path: Path) -> Path:
    with h5py.File(path, "w") as h5:
        h5.create_dataset("spectra", data=np.zeros((ROWS, 1, CHANNELS), np.float32))
    return path


def _truncated_fil(path: Path) -> Path:
    write(make_header(path))
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size - CHANNELS * 4 - 10)  # one row and a bit: cut mid-row
    return path


def _truncated_h5(path: Path) -> Path:
    write(make_header(path, nchans=4096))
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    return path


def _two_ifs_h5(path: Path) -> Path:
    header = make_header(path)
    with h5py.File(path, "w") as h5:
        data = h5.create_dataset("data", data=np.ones((ROWS, 2, CHANNELS), np.float32))
        for key, value in header.sigproc().items():
            data.attrs[key] = value
        data.attrs["nifs"] = 2
    return path


def _two_ifs_fil(path: Path) -> Path:
    return write(make_header(path, nifs=2))


def _h5_with(path: Path, key: str, value) -> Path:
    return set_h5_attr(write(make_header(path)), key, value)


def _h5_without(path: Path, key: str) -> Path:
    write(make_header(path))
    with h5py.File(path, "r+") as h5:
        del h5["data"].attrs[key]
    return path


def _one_row(path: Path) -> Path:
    return write(make_header(path, n_rows=1))


BAD_FILES = {
    "missing": (lambda p: p / "nope.h5", "no such file"),
    "directory": (lambda p: (p / "folder.h5").mkdir() or p / "folder.h5", "not a file"),
    "wrong suffix": (lambda p: write(make_header(p / "obs.h5")).rename(p / "obs.npy"), "not a filterbank file"),
    "random bytes .h5": (lambda p: _random_bytes(p / "noise.h5"), "unreadable HDF5"),
    "random bytes .fil": (lambda p: _random_bytes(p / "noise.fil"), "unreadable sigproc header"),
    "empty .fil": (lambda p: (p / "empty.fil").write_bytes(b"") or p / "empty.fil", "unreadable sigproc header"),
    "truncated .h5": (lambda p: _truncated_h5(p / "cut.h5"), "unreadable HDF5", "truncated file"),
    "h5 without data": (lambda p: _no_data_h5(p / "other.h5"), "no 'data' dataset"),
    "truncated .fil": (lambda p: _truncated_fil(p / "cut.fil"), "truncated", "256-byte rows"),
    "nifs=2 .h5": (lambda p: _two_ifs_h5(p / "pol.h5"), "nifs is 2", "total intensity"),
    "nifs=2 .fil": (lambda p: _two_ifs_fil(p / "pol.fil"), "nifs is 2"),
    "nchans disagrees": (lambda p: _h5_with(p / "n.h5", "nchans", 128), "nchans=128", "64 channels"),
    "foff = 0": (lambda p: write(make_header(p / "flat.h5", foff=0.0)), "foff is 0"),
    "NaN tstart": (lambda p: write(make_header(p / "when.h5", tstart=float("nan"))), "tstart not finite"),
    "infinite fch1 .fil": (lambda p: write(make_header(p / "inf.fil", fch1=float("inf"))), "fch1 not finite"),
    "tsamp <= 0": (lambda p: _h5_with(p / "t.h5", "tsamp", -1.0), "tsamp must be > 0"),
    "no tstart": (lambda p: _h5_without(p / "nt.h5", "tstart"), "header lacks tstart"),
    "text foff": (lambda p: _h5_with(p / "text.h5", "foff", "wide"), "not a number"),
    "one row": (lambda p: _one_row(p / "short.fil"), "1 time rows"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_a_filterbank_error_naming_it(tmp_path, kind):
    make, *problem = BAD_FILES[kind]
    path = make(tmp_path)
    with raises(path, *problem):
        read_header(path)
    # the same through a cadence: the error still names the bad file, not the cadence's first
    paths = write_cadence(tmp_path / "cadence")
    paths[3] = path
    with raises(path, *problem):
        open_cadence(paths)


def test_corrupt_h5_chunk_fails_when_read(tmp_path):
    """A header that reads but a compressed chunk that does not: the block read names the file and channels."""
    header = make_header(tmp_path / "bad.h5", nchans=4096)
    path = write_h5(header, [data_for(header)], chunk_channels=1024)
    with h5py.File(path, "r") as h5:
        offset = h5["data"].id.get_chunk_info(2).byte_offset  # the third chunk: channels 2048-3071
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 4096)
    header = read_header(path)
    np.testing.assert_array_equal(read_block(header, 0, 1024), data_for(header)[:, :1024])  # other chunks still read
    with raises(path, "cannot read channels 2000-2100"):
        read_block(header, 2000, 2100)


def _read_header_in_child(path: str, queue) -> None:
    try:
        read_header(path)
        queue.put("read")
    except FilterbankError as err:
        queue.put(f"FilterbankError: {err}")
    except Exception as err:
        queue.put(f"{type(err).__name__}: {err}")


def test_fil_header_ending_across_4096_bytes_is_read(tmp_path):
    """A valid .fil whose header is a little over 4 KiB (a long source name): read in a child, which hangs."""
    probe = write(make_header(tmp_path / "probe.fil", source_name="X"))
    from src.data.filterbank import _sigproc

    base = _sigproc().len_header(str(probe))
    header = make_header(tmp_path / "long.fil", source_name="X" * (1 + 4096 - base + 5))
    write(header)
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_read_header_in_child, args=(str(header.path), queue))
    child.start()
    child.join(3)
    hung = child.is_alive()
    if hung:
        child.kill()
        child.join()
    assert not hung, "read_header did not return within 3 s"
    assert queue.get(timeout=1) == "read"


# -------------------------------------------------------------------------------------------- bad cadences ---


def test_good_cadence_from_source_names(tmp_path):
    paths = write_cadence(tmp_path)
    cadence = open_cadence(paths)
    assert cadence.on == (True, False, True, False, True, False)
    assert cadence.pattern() == "ABACAD" and cadence.target == "TARGET" and cadence.name == "TARGET"
    assert cadence.paths == tuple(paths)
    starts = cadence.start_seconds()
    assert starts[0] == 0 and np.diff(starts) == pytest.approx([ROWS * TSAMP + SLEW_S] * 5, abs=1e-3)
    assert open_cadence([str(p) for p in paths], name="night 1").name == "night_1"  # one folder name


def test_pattern_names_on_and_off_and_allows_other_lengths(tmp_path):
    paths = write_cadence(tmp_path, sources=["SAME"] * 6)
    assert open_cadence(paths, "ABABAB").on == (True, False) * 3
    assert open_cadence(paths, "abacad").pattern() == "ABACAD"
    four = open_cadence(paths[:4], "ABAC")
    assert four.on == (True, False, True, False) and four.name == "SAME"


def test_fil_cadence_opens(tmp_path):
    cadence = open_cadence(write_cadence(tmp_path, ".fil"))
    assert cadence.pattern() == "ABACAD" and all(h.container == "fil" for h in cadence.headers)


def _swap(paths: list[Path], i: int, j: int) -> list[Path]:
    paths[i], paths[j] = paths[j], paths[i]
    return paths


def _overlap(paths: list[Path]) -> list[Path]:
    before = read_header(paths[1])
    rewrite(paths[2], seed=2, tstart=before.tstart + 0.5 * before.duration_s / SECONDS_PER_DAY)
    return paths


def _changed(k: int, **changes):
    """The cadence with observation k rewritten with other header values."""

    def change(paths: list[Path]):
        rewrite(paths[k], seed=k, **changes)
        return paths, None

    return change


BAD_CADENCES = {
    # name: (the six paths -> (paths, pattern), index of the file the message must start with, what it must say)
    "different foff": (_changed(2, foff=-5.58e-6), 2, ["foff is", "but obs0.h5 has", "one band"]),
    "different fch1": (_changed(4, fch1=8000.0), 4, ["fch1 is 8000.0"]),
    "different nchans": (_changed(1, nchans=128), 1, ["128 channels", "obs0.h5 has 64"]),
    "different tsamp": (_changed(5, tsamp=1.0), 5, ["tsamp is 1.0"]),
    "out of time order": (lambda ps: (_swap(ps, 2, 3), None), 3, ["not after obs3.h5", "observation order"]),
    "overlapping": (lambda ps: (_overlap(ps), None), 2, ["overlaps obs1.h5 by 146"]),
    "five files": (lambda ps: (ps[:5], None), 0, ["5 files given", "--pattern"]),
    "seven files": (lambda ps: ([*ps, ps[0].with_name("x.h5")], None), 0, ["7 files given"]),
    "same file twice": (lambda ps: ([*ps[:5], ps[2]], None), 5, ["listed twice"]),
    "same file by another path": (
        lambda ps: ([*ps[:5], ps[2].parent / ".." / ps[2].parent.name / "obs2.h5"], None),
        5,
        ["listed twice"],
    ),
}


@pytest.mark.parametrize("kind", list(BAD_CADENCES))
def test_bad_cadence_names_the_file_and_problem(tmp_path, kind):
    change, index, problem = BAD_CADENCES[kind]
    paths, pattern = change(write_cadence(tmp_path / "c"))
    with raises(paths[index], *problem):
        open_cadence(paths, pattern)


def test_all_sources_equal_cannot_tell_on_from_off(tmp_path):
    paths = write_cadence(tmp_path, sources=["SAME"] * 6)
    with raises(paths[0], "every file's source is 'SAME'", "--pattern ABACAD"):
        open_cadence(paths)


@pytest.mark.parametrize(
    "pattern, problem",
    [
        ("AB-CAD", "letters only"),
        ("AB1CAD", "letters only"),
        ("ABACADA", "names 7 observations but 6 files"),
        ("ABA", "names 3 observations but 6 files"),
        ("AAAAAA", "needs ON (A) and OFF"),
        ("BCDBCD", "needs ON (A) and OFF"),
    ],
)
def test_bad_pattern(tmp_path, pattern, problem):
    paths = write_cadence(tmp_path)
    with pytest.raises(FilterbankError, match=r"^--pattern .*" + re.escape(problem)):
        open_cadence(paths, pattern)


def test_touching_observations_are_allowed(tmp_path):
    """Back to back within the 1 s tolerance is not an overlap."""
    paths = write_cadence(tmp_path)
    before = read_header(paths[0])
    rewrite(paths[1], seed=1, tstart=before.tstop - 0.5 / SECONDS_PER_DAY)
    assert open_cadence(paths).pattern() == "ABACAD"


# --------------------------------------------------------------------------------------------------- catalog ---


def write_catalog(folder: Path, text: str) -> Path:
    path = folder / "catalog.csv"
    path.write_text(text)
    return path


def test_catalog_groups_rows_and_resolves_relative_paths(tmp_path):
    a = write_cadence(tmp_path / "a")
    b = write_cadence(tmp_path / "b")
    rows = [f"night one,{p.relative_to(tmp_path)}" for p in a] + [f"7,{p}" for p in b]
    catalog = read_catalog(write_catalog(tmp_path, "cadence,path\n" + "\n".join(rows) + "\n"))
    assert [name for name, _ in catalog] == ["night_one", "7"]
    assert catalog[0][1] == [tmp_path / p.relative_to(tmp_path) for p in a]
    assert catalog[1][1] == b
    assert [open_cadence(files, name=name).name for name, files in catalog] == ["night_one", "7"]


BAD_CATALOGS = {
    "missing columns": ("cadence,file\n0,a.h5\n", ["lacks column(s) path"]),
    "no columns at all": ("path\na.h5\n", ["lacks column(s) cadence"]),
    "header only": ("cadence,path\n", ["no rows"]),
    "empty file": ("", ["not a readable CSV"]),
    "ungrouped": ("cadence,path\na,1.h5\nb,2.h5\na,3.h5\n", ["rows of cadence 'a' are not together"]),
    "empty path": ("cadence,path\na,1.h5\na,\n", ["empty cadence or path"]),
    "names collide": ("cadence,path\na b,1.h5\na_b,2.h5\n", ["same folder name"]),
}


@pytest.mark.parametrize("kind", list(BAD_CATALOGS))
def test_bad_catalog(tmp_path, kind):
    text, problem = BAD_CATALOGS[kind]
    path = write_catalog(tmp_path, text)
    with raises(path, *problem):
        read_catalog(path)


def test_missing_catalog(tmp_path):
    with raises(tmp_path / "none.csv", "no such catalog file"):
        read_catalog(tmp_path / "none.csv")


def test_catalog_row_naming_a_missing_file_fails_on_that_file(tmp_path):
    paths = write_cadence(tmp_path)
    rows = [p.name for p in paths[:5]] + ["gone.h5"]
    ((name, files),) = read_catalog(write_catalog(tmp_path, "cadence,path\n" + "".join(f"x,{r}\n" for r in rows)))
    with raises(tmp_path / "gone.h5", "no such file"):
        open_cadence(files, name=name)


# ------------------------------------------------------------------------------------ coarse channel widths ---


def _header(**changes) -> FilterbankHeader:
    return make_header(Path("/data/obs.h5"), **changes)


@pytest.mark.parametrize(
    "changes, override, expected",
    [
        ({"nchans": 8192, "nfpc": 4096}, 1024, 1024),  # the user's value first
        ({"nchans": 8192, "nfpc": 4096}, None, 4096),  # the file's nfpc
        ({"nchans": 3 * FINE_CHANNELS_PER_COARSE_GBT}, None, FINE_CHANNELS_PER_COARSE_GBT),  # 2.79 Hz product
        ({"nchans": FINE_CHANNELS_PER_COARSE_GBT}, None, FINE_CHANNELS_PER_COARSE_GBT),
        ({"nchans": 2 * FINE_CHANNELS_PER_COARSE_GBT, "foff": -2.86e-5}, None, 2 * FINE_CHANNELS_PER_COARSE_GBT),
        ({"nchans": 8192}, None, 8192),  # nothing says: the whole band
        ({"nchans": 1000}, None, 1000),
        ({"nchans": 1024}, 1024, 1024),
    ],
)
def test_fine_channels_per_coarse(changes, override, expected):
    assert fine_channels_per_coarse(_header(**changes), override) == expected


@pytest.mark.parametrize("changes, override", [({"nchans": 8192}, 3000), ({"nchans": 8192, "nfpc": 3000}, None)])
def test_fine_channels_per_coarse_must_divide_the_band(changes, override):
    with raises("/data/obs.h5", "8192 channels are not a whole number of 3000-channel coarse channels"):
        fine_channels_per_coarse(_header(**changes), override)
