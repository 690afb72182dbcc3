"""A cadence of filterbank observations: which files, which are ON (the target) and which OFF, and the checks
that they can be searched together; and the catalog of many cadences (`--catalog cadences.csv`).

The six files of an ABACAD cadence share one frequency axis (fch1, foff, nchans) and follow each other in
time without overlapping. ON and OFF come from the source names (the first file's source is the target: every
file of that source is ON, every other file OFF, as turbo_seti's find_event assumes with on_off_first="ON") or
from a pattern the user gives (`ABACAD`, `ABABAB`: `A` marks the ON files), which also allows cadences of
other than six files.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from src.core.errors import ConfigError, FilterbankError
from src.data.filterbank import SECONDS_PER_DAY, FilterbankHeader, read_header

CADENCE_LENGTH = 6
ON_LETTER = "A"
TIME_TOLERANCE_S = 1.0  # observations may touch within this, not overlap
CATALOG_COLUMNS = ("cadence", "path")


@dataclass(frozen=True)
class Cadence:
    """Checked observations of one cadence, in time order."""

    name: str
    headers: tuple[FilterbankHeader, ...]
    on: tuple[bool, ...]

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(h.path for h in self.headers)

    @property
    def target(self) -> str:
        return next(h.source_name for h, on in zip(self.headers, self.on, strict=True) if on)

    def start_seconds(self) -> list[float]:
        """Each observation's start, in seconds after the first one's."""
        first = self.headers[0].tstart
        return [(h.tstart - first) * SECONDS_PER_DAY for h in self.headers]

    def pattern(self) -> str:
        """The cadence as letters: A for ON, and B, C, D, ... for each OFF in turn."""
        letters, off = [], 0
        for on in self.on:
            letters.append(ON_LETTER if on else chr(ord("B") + off))
            off += not on
        return "".join(letters)


def on_from_pattern(pattern: str, n_files: int) -> tuple[bool, ...]:
    if not re.fullmatch(r"[A-Za-z]+", pattern or ""):
        raise FilterbankError(f"--pattern {pattern!r}: letters only, A for ON files (e.g. ABACAD)")
    if len(pattern) != n_files:
        raise FilterbankError(f"--pattern {pattern} names {len(pattern)} observations but {n_files} files were given")
    on = tuple(letter.upper() == ON_LETTER for letter in pattern)
    if all(on) or not any(on):
        raise FilterbankError(f"--pattern {pattern}: a cadence needs ON (A) and OFF (other letters) observations")
    return on


def on_from_sources(headers: list[FilterbankHeader]) -> tuple[bool, ...]:
    """ON where the source is the first file's (the target)."""
    target = headers[0].source_name
    on = tuple(h.source_name == target for h in headers)
    if all(on):
        raise FilterbankError(
            f"{headers[0].path}: every file's source is {target!r}, so ON and OFF cannot be told apart: "
            "give the cadence's pattern, e.g. --pattern ABACAD"
        )
    return on


def check_shared_band(headers: list[FilterbankHeader]) -> None:
    """All files on the first file's frequency axis (and time resolution)."""
    first = headers[0]
    for h in headers[1:]:
        for key in ("fch1", "foff", "tsamp"):
            a, b = getattr(first, key), getattr(h, key)
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                raise FilterbankError(
                    f"{h.path}: {key} is {b!r}, but {first.path.name} has {a!r} (one cadence, one band)"
                )
        if h.nchans != first.nchans:
            raise FilterbankError(f"{h.path}: {h.nchans} channels, but {first.path.name} has {first.nchans}")


def check_time_order(headers: list[FilterbankHeader]) -> None:
    for before, after in itertools.pairwise(headers):
        gap_s = (after.tstart - before.tstop) * SECONDS_PER_DAY
        if after.tstart <= before.tstart:
            raise FilterbankError(
                f"{after.path}: starts at MJD {after.tstart:.6f}, not after {before.path.name} "
                f"(MJD {before.tstart:.6f}): list the files in observation order"
            )
        if gap_s < -TIME_TOLERANCE_S:
            raise FilterbankError(f"{after.path}: overlaps {before.path.name} by {-gap_s:.1f} s")


def open_cadence(paths: list[str | Path], pattern: str | None = None, name: str | None = None) -> Cadence:
    """Read and check the headers of a cadence's files (given in observation order)."""
    if not pattern and len(paths) != CADENCE_LENGTH:
        raise FilterbankError(
            f"{paths[0] if paths else 'cadence'}: {len(paths)} files given; a cadence is {CADENCE_LENGTH} (ABACAD) "
            "unless --pattern names its ON/OFF order"
        )
    seen = set()
    for path in paths:
        if Path(path).resolve() in seen:
            raise FilterbankError(f"{path}: listed twice in one cadence")
        seen.add(Path(path).resolve())
    headers = [read_header(path) for path in paths]
    on = on_from_pattern(pattern, len(headers)) if pattern else on_from_sources(headers)
    check_shared_band(headers)
    check_time_order(headers)
    target = headers[on.index(True)].source_name
    if name is not None and ("/" in name or "\\" in name or name.startswith(".")):
        raise ConfigError(f"--name {name!r}: one folder name under --out, without '/' or a leading '.'")
    return Cadence(name=safe_name(name or target or headers[0].path.stem), headers=tuple(headers), on=on)


def safe_name(text: str) -> str:
    """A cadence name usable as one folder name under --out (no separators, no leading dots: never `..`)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "cadence"


def read_catalog(path: str | Path) -> list[tuple[str, list[Path]]]:
    """(cadence name, its files in order) for each cadence of a catalog CSV: one row per file with columns
    `cadence` and `path` (relative paths are relative to the catalog's folder), rows grouped by cadence."""
    path = Path(path)
    if not path.is_file():
        raise FilterbankError(f"{path}: no such catalog file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise FilterbankError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    missing = [c for c in CATALOG_COLUMNS if c not in table.columns]
    if missing:
        raise FilterbankError(f"{path}: lacks column(s) {', '.join(missing)} (one row per file: cadence,path)")
    if table.empty:
        raise FilterbankError(f"{path}: no rows")
    cadences: dict[str, list[Path]] = {}
    previous = None
    for row in table.itertuples(index=False):
        name = str(row.cadence).strip()
        if not name or not str(row.path).strip():
            raise FilterbankError(f"{path}: a row with an empty cadence or path")
        if name in cadences and name != previous:
            raise FilterbankError(f"{path}: the rows of cadence {name!r} are not together (group them)")
        file = Path(row.path)
        cadences.setdefault(name, []).append(file if file.is_absolute() else path.parent / file)
        previous = name
    names = [safe_name(n) for n in cadences]
    if len(set(names)) != len(names):
        raise FilterbankError(f"{path}: two cadence names map to the same folder name")
    return [(safe_name(name), files) for name, files in cadences.items()]
