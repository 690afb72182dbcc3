"""turbo_seti, Breakthrough Listen's own pipeline, as an optional reference scorer for the detection benchmark.

Each cadence's six observations are written as filterbank .h5 files (setigen's Frame), averaged in time to
16 rows (turbo_seti's CPU tree pads the number of time steps to a power of two: 273 rows would become 512,
mostly padding), searched one by one with FindDoppler, and the six hit lists are filtered with find_events
at filter level 3 (in all ON observations, in no OFF observation) over the ABACAD cadence. The cadence's
score is the SNR of its best event, 0 when there is none.

turbo_seti is not a requirement of the project: `unavailable_reason()` says why it cannot be used here, and
the benchmark skips it with that message.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from src.core.cadence import CADENCE_SHAPE, DF_HZ, DT_S, FCH1_MHZ, ON_OBSERVATIONS
from src.data.kaggle import cadence_path, load_cadence
from src.synth.generator import SynthConfig, obs_start_times
from src.synth.libraries import import_setigen

TIME_ROWS = 16  # a power of two: turbo_seti's CPU search pads the time axis to one
MAX_DRIFT_HZ_S = 0.05  # the OFF veto spans +-max_drift x observation length, so keep it small
MIN_SNR = 10.0  # FindDoppler's hit threshold (turbo_seti's usual setting)
FILTER_LEVEL = 3  # events in every ON observation and in no OFF observation


def unavailable_reason() -> str | None:
    """None when turbo_seti can be imported, else a one-line reason for the report."""
    try:
        with _quiet():
            import turbo_seti.find_doppler.find_doppler
            import turbo_seti.find_event.find_event  # noqa: F401
    except ImportError as err:
        return f"turbo_seti not installed ({err})"
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence turbo_seti/blimpy's prints, logging and warnings."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


class _HitCount(np.ndarray):
    """turbo_seti's one-element hit counter that `"%i" %` accepts under numpy 2.

    FindDoppler formats `max_val.total_n_hits`, a 1-element array, with `%i` after each coarse channel;
    numpy 2 refuses the implicit conversion, which aborts the search before the .dat file is closed.
    """

    def __int__(self) -> int:
        return int(self[0])


@contextlib.contextmanager
def numpy2_compatible() -> Iterator[None]:
    """Swap FindDoppler's `max_vals` for one whose hit counter formats with %i; restored on exit."""
    from turbo_seti.find_doppler import find_doppler

    original = find_doppler.max_vals

    class MaxVals(original):
        def __setattr__(self, name, value):
            if name == "total_n_hits" and isinstance(value, np.ndarray):
                value = value.view(_HitCount)
            super().__setattr__(name, value)

    find_doppler.max_vals = MaxVals
    try:
        yield
    finally:
        find_doppler.max_vals = original


def time_average(observation: np.ndarray, rows: int = TIME_ROWS) -> np.ndarray:
    """(273, chans) -> (rows, chans) means over equal consecutive blocks (the remainder rows are dropped)."""
    block = observation.shape[0] // rows
    return observation[: block * rows].astype(np.float32).reshape(rows, block, -1).mean(axis=1)


def write_cadence_h5(cadence: np.ndarray, folder: Path, rows: int = TIME_ROWS) -> list[Path]:
    """The six observations as filterbank .h5 files, with the cadence's start times and source names."""
    from astropy import units as u

    stg = import_setigen()
    block = CADENCE_SHAPE[1] // rows
    starts = obs_start_times(SynthConfig())
    paths = []
    for i, observation in enumerate(cadence):
        source = "target" if i in ON_OBSERVATIONS else f"off{i}"
        frame = stg.Frame(
            fchans=observation.shape[1],
            tchans=rows,
            df=DF_HZ * u.Hz,
            dt=block * DT_S * u.s,
            fch1=FCH1_MHZ * u.MHz,
            data=time_average(observation, rows),
            t_start=1.7e9 + starts[i],
            source_name=source,
        )
        path = folder / f"obs{i}_{source}.h5"
        frame.save_h5(str(path))
        paths.append(path)
    return paths


def search_observation(h5: Path, out_dir: Path, max_drift: float = MAX_DRIFT_HZ_S, min_snr: float = MIN_SNR) -> Path:
    """FindDoppler over one observation; returns its .dat hit list."""
    from turbo_seti.find_doppler.find_doppler import FindDoppler

    finder = FindDoppler(
        str(h5),
        max_drift=max_drift,
        snr=min_snr,
        out_dir=str(out_dir),
        n_coarse_chan=1,
        blank_dc=False,
        log_level_int=logging.WARNING,
    )
    with numpy2_compatible():
        finder.search()
    return out_dir / (h5.stem + ".dat")


def best_event_snr(dat_files: Sequence[Path], filter_level: int = FILTER_LEVEL) -> float:
    """Best SNR among the events find_events keeps over an ABACAD cadence of .dat files; 0 without one."""
    from turbo_seti.find_event.find_event import find_events

    events = find_events([str(p) for p in dat_files], filter_threshold=filter_level, on_off_first="ON")
    if events is None or len(events) == 0:
        return 0.0
    return float(events["SNR"].max())


def score_cadence(cadence: np.ndarray, max_drift: float = MAX_DRIFT_HZ_S, min_snr: float = MIN_SNR) -> float:
    """turbo_seti's score of one (6, 273, 256) cadence, worked out in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="turboseti-") as tmp, _quiet():
        folder = Path(tmp)
        dats = [search_observation(h5, folder, max_drift, min_snr) for h5 in write_cadence_h5(cadence, folder)]
        return best_event_snr(dats)


def score_cadences(
    data_dir: str | Path,
    split: str,
    ids: Sequence[str],
    max_drift: float = MAX_DRIFT_HZ_S,
    min_snr: float = MIN_SNR,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, float]:
    """Scores of the cadences `ids` (in order) and the seconds they took."""
    started = time.time()
    scores = np.empty(len(ids))
    for n, sample_id in enumerate(ids):
        scores[n] = score_cadence(load_cadence(cadence_path(data_dir, split, sample_id)), max_drift, min_snr)
        if progress is not None:
            progress(n + 1)
    return scores, time.time() - started
