"""turbo_seti's side of the scan benchmark (bench/lib/scan.py), run as a script by turbo_seti's own interpreter:

    /tmp/ts/bin/python bench/lib/turboseti_runner.py JOB.json

turbo_seti cannot be imported from the project's venv (it needs numba), so the benchmark writes a job file and
runs this script in a separate Python that has turbo_seti. It imports only turbo_seti, numpy, pandas, the standard
library and the project's `numpy2_compatible` (src/search/turboseti.py, with the repository root on sys.path).

The job (JSON): `out_dir`, `max_drift`, `snr`, `levels` (find_event filter levels, e.g. [3, 2]) and `cadences`, a
list of {"name", "files": [{"path", "n_coarse_chan"}, ...]} in ABACAD order. For every file, FindDoppler (its usual
settings: DC blanking on, min_drift 1e-5, the given max_drift, snr and n_coarse_chan) writes
`out_dir/<cadence>/<file stem>.dat`, timed in wall seconds (constructor and search); then find_events runs over the
cadence's .dat files at each level, and its table is written to `out_dir/<cadence>/events_f<level>.csv` with the
table's own index as the first column, `row` (level 3's Hit_ID ends with the level-2 row of its ON hit). Everything
measured goes to `out_dir/result.json`; turbo_seti's own printing goes to `out_dir/<cadence>/turboseti.log`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def count_hits(dat: Path) -> int:
    return sum(1 for line in dat.read_text().splitlines() if line.strip() and not line.startswith("#"))


def find_doppler(path: Path, folder: Path, job: dict, n_coarse_chan: int, printed) -> dict:
    """FindDoppler over one file; its wall seconds, hit count and .dat path."""
    from turbo_seti.find_doppler.find_doppler import FindDoppler

    from src.search.turboseti import numpy2_compatible  # the repository root is on sys.path (see the end)

    started = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        finder = FindDoppler(
            str(path),
            max_drift=job["max_drift"],
            snr=job["snr"],
            out_dir=str(folder),
            n_coarse_chan=n_coarse_chan,
            log_level_int=logging.WARNING,
        )
        with numpy2_compatible():
            finder.search()
    seconds = time.perf_counter() - started
    dat = folder / f"{path.stem}.dat"
    return {
        "path": str(path),
        "dat": str(dat),
        "n_coarse_chan": n_coarse_chan,
        "seconds": seconds,
        "hits": count_hits(dat),
    }


def find_events(dats: list[str], level: int, printed) -> pd.DataFrame | None:
    from turbo_seti.find_event.find_event import find_events as turbo_find_events

    with contextlib.redirect_stdout(printed):
        return turbo_find_events(dats, filter_threshold=level, on_off_first="ON")


def run(job: dict) -> dict:
    out = Path(job["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    from importlib.metadata import version

    result = {
        "turbo_seti": version("turbo_seti"),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": sys.version.split()[0],
        "files": [],
        "events": {},
        "find_event_seconds": {},
    }
    started = time.perf_counter()
    for cadence in job["cadences"]:
        name = cadence["name"]
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "turboseti.log").open("w") as printed:
            dats = []
            for item in cadence["files"]:
                measured = find_doppler(Path(item["path"]), folder, job, int(item["n_coarse_chan"]), printed)
                result["files"].append({"cadence": name, **measured})
                dats.append(measured["dat"])
                log(
                    f"turbo_seti: {name}/{Path(item['path']).name}: {measured['seconds']:.1f} s, "
                    f"{measured['hits']} hits"
                )
            result["events"][name], result["find_event_seconds"][name] = {}, {}
            for level in job["levels"]:
                tick = time.perf_counter()
                table = find_events(dats, int(level), printed)
                result["find_event_seconds"][name][str(level)] = time.perf_counter() - tick
                path = folder / f"events_f{level}.csv"
                if table is None:
                    table = pd.DataFrame()
                table.to_csv(path, index=True, index_label="row")
                result["events"][name][str(level)] = {"csv": str(path), "rows": len(table)}
    result["seconds"] = time.perf_counter() - started
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: turboseti_runner.py JOB.json")
    job = json.loads(Path(sys.argv[1]).read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blimpy/hdf5plugin deprecation warnings
        logging.disable(logging.INFO)  # data_handler logs at INFO whatever log_level_int says
        run(job)


if __name__ == "__main__":
    sys.path[0] = str(REPO)  # the repository root for `src`, instead of bench/lib (whose modules must shadow nothing)
    main()
