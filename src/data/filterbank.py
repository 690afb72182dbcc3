"""Breakthrough Listen filterbank files: the header, reading one frequency block at a time, and writing.

Two containers hold the same thing, a (time rows, nifs, channels) array of power with a header of sigproc keys:
HDF5 `.h5` (dataset `data`, header keys as its attributes, usually bitshuffle-compressed: hdf5plugin registers
the filter with h5py) and sigproc `.fil` (a binary keyword header, then the samples time-major). Reading takes a
channel range, so a 4 GB file is searched in blocks of one coarse channel and memory does not grow with the file:
`.h5` reads the block's slice of its chunks, `.fil` maps the file and copies the block's columns.

Every problem is a `FilterbankError` whose message starts with the file's path and says what is wrong.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from src.core.errors import FilterbankError

SUFFIXES = (".h5", ".fil")
FINE_CHANNELS_PER_COARSE_GBT = 1 << 20  # the high frequency resolution product (.0000): 2.79 Hz channels
FLOAT_KEYS = ("fch1", "foff", "tsamp", "tstart", "src_raj", "src_dej", "az_start", "za_start")
INT_KEYS = ("nchans", "nifs", "nbits", "telescope_id", "machine_id", "data_type", "nbeams", "ibeam")
REQUIRED_KEYS = ("fch1", "foff", "nchans", "tsamp", "tstart")
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class FilterbankHeader:
    """What a search needs to know about one observation file; `extra` keeps its other header keys."""

    path: Path
    fch1: float  # MHz, centre frequency of channel 0
    foff: float  # MHz per channel, negative when frequency descends with the channel index (GBT's usual)
    nchans: int
    n_rows: int  # time integrations
    tsamp: float  # s per row
    tstart: float  # MJD of the first row
    source_name: str = ""
    nifs: int = 1
    nbits: int = 32
    src_raj: float = 0.0  # hours
    src_dej: float = 0.0  # degrees
    telescope_id: int = 6  # 6 = GBT in sigproc's numbering
    nfpc: int | None = None  # fine channels per coarse channel, when the file says (rawspec's `nfpc`)
    data_offset: int = 0  # .fil: byte offset of the first sample
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def container(self) -> str:
        return "h5" if self.path.suffix.lower() == ".h5" else "fil"

    @property
    def duration_s(self) -> float:
        return self.n_rows * self.tsamp

    @property
    def tstop(self) -> float:
        """MJD at the end of the last row."""
        return self.tstart + self.duration_s / SECONDS_PER_DAY

    @property
    def df_hz(self) -> float:
        return abs(self.foff) * 1e6

    def frequency_mhz(self, channel: float | np.ndarray) -> float | np.ndarray:
        return self.fch1 + self.foff * np.asarray(channel, dtype=np.float64)

    def sigproc(self) -> dict:
        """The header as sigproc keys (what .fil and .h5 files store)."""
        keys = {
            "fch1": self.fch1,
            "foff": self.foff,
            "nchans": self.nchans,
            "tsamp": self.tsamp,
            "tstart": self.tstart,
            "source_name": self.source_name,
            "nifs": self.nifs,
            "nbits": self.nbits,
            "src_raj": self.src_raj,
            "src_dej": self.src_dej,
            "telescope_id": self.telescope_id,
            "data_type": 1,
            "machine_id": 10,
            **self.extra,
        }
        if self.nfpc:
            keys["nfpc"] = self.nfpc
        return keys


def _fail(path: Path, problem: str) -> FilterbankError:
    return FilterbankError(f"{path}: {problem}")


def _value(raw):
    """An attribute value as a plain Python value (h5py gives numpy scalars and bytes)."""
    if isinstance(raw, bytes):
        return raw.decode("ascii", errors="replace")
    if isinstance(raw, np.ndarray) and raw.size == 1:
        raw = raw.reshape(()).item()
    if isinstance(raw, np.generic):
        return raw.item()
    return raw


def _angle(value) -> float:
    """A sigproc angle as blimpy gives it (an astropy Angle) or as a number."""
    return float(getattr(value, "value", value))


def read_header(path: str | Path) -> FilterbankHeader:
    """The header of a `.h5` or `.fil` file, checked against the data it describes."""
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a file")
    if path.suffix.lower() not in SUFFIXES:
        raise _fail(path, f"not a filterbank file (expected {' or '.join(SUFFIXES)})")
    if not os.access(path, os.R_OK):
        raise _fail(path, "not readable (permission denied)")
    keys, shape, offset = _read_h5_keys(path) if path.suffix.lower() == ".h5" else _read_fil_keys(path)
    missing = [k for k in REQUIRED_KEYS if k not in keys]
    if missing:
        raise _fail(path, f"header lacks {', '.join(missing)}")
    try:
        values = {k: float(keys[k]) for k in FLOAT_KEYS if k in keys and k not in ("src_raj", "src_dej")}
        values.update({k: int(keys[k]) for k in INT_KEYS if k in keys})
        values.update({k: _angle(keys[k]) for k in ("src_raj", "src_dej") if k in keys})
    except (TypeError, ValueError) as err:
        raise _fail(path, f"header value is not a number ({err})") from None
    bad = [k for k in ("fch1", "foff", "tsamp", "tstart") if not math.isfinite(values[k])]
    if bad:
        raise _fail(path, f"header {', '.join(bad)} not finite")
    if values["foff"] == 0:
        raise _fail(path, "header foff is 0 (no channel width)")
    if values["tsamp"] <= 0:
        raise _fail(path, f"header tsamp must be > 0, got {values['tsamp']}")
    nifs = values.get("nifs", 1)
    if nifs != 1:
        raise _fail(path, f"nifs is {nifs}: only total intensity (nifs = 1) can be searched")
    n_rows, nchans = shape
    if nchans != values["nchans"]:
        raise _fail(path, f"header says nchans={values['nchans']} but the data has {nchans} channels")
    if n_rows < 2:
        raise _fail(path, f"{n_rows} time rows: a drift search needs at least 2")
    nfpc = keys.get("nfpc")
    extra = {
        k: _value(v) for k, v in keys.items() if k not in (*FLOAT_KEYS, *INT_KEYS, "source_name", "nfpc", "nsamples")
    }
    return FilterbankHeader(
        path=path,
        fch1=values["fch1"],
        foff=values["foff"],
        nchans=int(nchans),
        n_rows=int(n_rows),
        tsamp=values["tsamp"],
        tstart=values["tstart"],
        source_name=str(keys.get("source_name", "")).strip(),
        nifs=1,
        nbits=values.get("nbits", 32),
        src_raj=values.get("src_raj", 0.0),
        src_dej=values.get("src_dej", 0.0),
        telescope_id=values.get("telescope_id", 6),
        nfpc=int(nfpc) if nfpc else None,
        data_offset=offset,
        extra={k: v for k, v in extra.items() if isinstance(v, int | float | str)},
    )


def _read_h5_keys(path: Path) -> tuple[dict, tuple[int, int], int]:
    import h5py
    import hdf5plugin  # noqa: F401  (registers the bitshuffle filter that Breakthrough Listen files use)

    try:
        with h5py.File(path, "r") as h5:
            if "data" not in h5:
                raise _fail(path, "no 'data' dataset: not a filterbank .h5")
            data = h5["data"]
            keys = {k: _value(v) for k, v in data.attrs.items()}
            shape = data.shape
    except FilterbankError:
        raise
    except OSError as err:
        raise _fail(path, f"unreadable HDF5 ({str(err).splitlines()[0]})") from None
    if len(shape) != 3:
        raise _fail(path, f"data is shaped {shape}, expected (time, nifs, channels)")
    if shape[1] != 1:
        raise _fail(path, f"nifs is {shape[1]}: only total intensity (nifs = 1) can be searched")
    return keys, (shape[0], shape[2]), 0


def _sigproc():
    """blimpy's sigproc module; blimpy's own import of pkg_resources warns on every start, silenced here only."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        from blimpy.io import sigproc
    return sigproc


def _fil_header_length(path: Path) -> int:
    """Bytes up to the end of the HEADER_END keyword (blimpy's len_header misses one that spans 4 KiB reads)."""
    marker, seen = b"HEADER_END", b""
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            seen += chunk
            if marker in seen:
                return seen.index(marker) + len(marker)
    raise ValueError("no HEADER_END")


def _read_fil_keys(path: Path) -> tuple[dict, tuple[int, int], int]:
    sigproc = _sigproc()

    try:
        keys = sigproc.read_header(str(path))
        offset = _fil_header_length(path)
    except Exception as err:  # blimpy raises bare errors (KeyError, struct.error, RuntimeError) on bad headers
        raise _fail(path, f"unreadable sigproc header ({type(err).__name__}: {err})") from None
    for key in ("nchans", "nbits"):
        if key not in keys:
            raise _fail(path, f"header lacks {key}")
    nifs, nbits, nchans = int(keys.get("nifs", 1)), int(keys["nbits"]), int(keys["nchans"])
    if nifs != 1:
        raise _fail(path, f"nifs is {nifs}: only total intensity (nifs = 1) can be searched")
    if nbits not in (8, 16, 32):
        raise _fail(path, f"nbits is {nbits}: only 8, 16 and 32-bit samples are read")
    if nchans <= 0:
        raise _fail(path, f"header nchans is {nchans}")
    row_bytes = nchans * nbits // 8
    data_bytes = path.stat().st_size - offset
    if data_bytes < row_bytes or data_bytes % row_bytes:
        raise _fail(path, f"truncated: {data_bytes} data bytes is not a whole number of {row_bytes}-byte rows")
    return keys, (data_bytes // row_bytes, nchans), offset


FIL_DTYPES = {8: np.uint8, 16: np.uint16, 32: np.float32}


def read_block(header: FilterbankHeader, start: int, stop: int) -> np.ndarray:
    """Channels [start, stop) of every row, as a (rows, stop - start) float32 array."""
    if not 0 <= start < stop <= header.nchans:
        raise ValueError(f"channel range [{start}, {stop}) outside 0..{header.nchans}")
    path = header.path
    try:
        if header.container == "h5":
            import h5py
            import hdf5plugin  # noqa: F401

            with h5py.File(path, "r") as h5:
                block = h5["data"][:, 0, start:stop]
        else:
            dtype = FIL_DTYPES[header.nbits]
            samples = np.memmap(
                path, dtype=dtype, mode="r", offset=header.data_offset, shape=(header.n_rows, header.nchans)
            )
            block = np.array(samples[:, start:stop])
            del samples
    except (OSError, KeyError, ValueError) as err:
        raise _fail(path, f"cannot read channels {start}-{stop} ({str(err).splitlines()[0]})") from None
    return np.ascontiguousarray(block, dtype=np.float32)


def fine_channels_per_coarse(header: FilterbankHeader, override: int | None = None) -> int:
    """How many fine channels one coarse channel holds: the user's value, else the file's `nfpc`, else 2^20 for
    the high-resolution product whose channel count is a multiple of it, else the whole band as one block."""
    if override:
        value = override
    elif header.nfpc:
        value = header.nfpc
    elif header.nchans % FINE_CHANNELS_PER_COARSE_GBT == 0 and header.df_hz < 10:
        value = FINE_CHANNELS_PER_COARSE_GBT
    else:
        value = header.nchans
    if header.nchans % value:
        raise _fail(header.path, f"{header.nchans} channels are not a whole number of {value}-channel coarse channels")
    return value


def write_h5(header: FilterbankHeader, blocks: Iterable[np.ndarray], chunk_channels: int | None = None) -> Path:
    """Write `blocks` ((rows, channels) arrays in channel order, covering nchans) as a bitshuffle-compressed
    Breakthrough Listen .h5 at `header.path`: dataset `data` (time, 1, channels) with the header as attributes.
    The file is made in memory and written in one call, so that a full disk is an ordinary ENOSPC OSError
    (HDF5 writing a file itself fails again on every close, and prints those failures as the process exits)."""
    import h5py
    import hdf5plugin

    chunk = min(header.nchans, chunk_channels or header.nfpc or header.nchans, 1 << 16)
    image = io.BytesIO()
    with h5py.File(image, "w") as h5:
        h5.attrs["CLASS"] = "FILTERBANK"
        h5.attrs["VERSION"] = "1.0"
        data = h5.create_dataset(
            "data",
            shape=(header.n_rows, 1, header.nchans),
            dtype="float32",
            chunks=(header.n_rows, 1, chunk),
            **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
        )
        for axis, label in enumerate(("time", "feed_id", "frequency")):
            data.dims[axis].label = label
        for key, value in header.sigproc().items():
            data.attrs[key] = value
        _fill(header, blocks, lambda a, b, block: data.__setitem__((slice(None), 0, slice(a, b)), block))
    Path(header.path).write_bytes(image.getbuffer())
    return header.path


def write_fil(header: FilterbankHeader, blocks: Iterable[np.ndarray]) -> Path:
    """Write `blocks` as a 32-bit sigproc .fil at `header.path` (the header keys blimpy knows, then the samples)."""
    sigproc = _sigproc()

    keys = header.sigproc()
    encoded = sigproc.to_sigproc_keyword("HEADER_START")
    for key, value in keys.items():
        if key in ("src_raj", "src_dej"):
            encoded += sigproc.to_sigproc_keyword(key) + np.float64(_sigproc_angle(value)).tobytes()
        elif key in sigproc.header_keyword_types and key != "nbits":
            encoded += sigproc.to_sigproc_keyword(key, value)
    encoded += sigproc.to_sigproc_keyword("nbits", 32) + sigproc.to_sigproc_keyword("HEADER_END")
    with open(header.path, "wb") as out:
        out.write(encoded)
        out.truncate(len(encoded) + header.n_rows * header.nchans * 4)
    samples = np.memmap(
        header.path, dtype=np.float32, mode="r+", offset=len(encoded), shape=(header.n_rows, header.nchans)
    )
    _fill(header, blocks, lambda a, b, block: samples.__setitem__((slice(None), slice(a, b)), block))
    samples.flush()
    return header.path


def _sigproc_angle(value: float) -> float:
    """Hours or degrees as sigproc's ddmmss.s number."""
    sign = -1.0 if value < 0 else 1.0
    value = abs(value)
    whole = math.floor(value)
    minutes = math.floor((value - whole) * 60)
    seconds = ((value - whole) * 60 - minutes) * 60
    return sign * (whole * 10000 + minutes * 100 + seconds)


def _fill(header: FilterbankHeader, blocks: Iterable[np.ndarray], put) -> None:
    start = 0
    for block in blocks:
        if block.ndim != 2 or block.shape[0] != header.n_rows:
            raise ValueError(f"block shaped {block.shape}, expected ({header.n_rows}, channels)")
        put(start, start + block.shape[1], block.astype(np.float32, copy=False))
        start += block.shape[1]
    if start != header.nchans:
        raise ValueError(f"blocks cover {start} channels, the header says {header.nchans}")


def with_path(header: FilterbankHeader, path: str | Path) -> FilterbankHeader:
    return replace(header, path=Path(path))
