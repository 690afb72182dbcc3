"""The cadence: what one sample is, in which order its observations come, and the resolution it was taken at.

A Kaggle cadence snippet is 6 observations x 273 time rows x 256 frequency channels of Breakthrough Listen's
high-resolution product (2.79 Hz x 18.25 s), observed ABACAD: the target star (A, "ON") 1st, 3rd and 5th,
three other stars ("OFF") in between, with a slew of about one time row from each observation to the next.
Every stage reads these facts from here. Other data (snippets cut from filterbank files at their own resolution)
has another per-observation geometry: a run's config says which (`Config.observation_shape`, `resolution`,
`window`), and every stage takes it from there; the constants here are Kaggle's, the defaults.
"""

from __future__ import annotations

CADENCE_SHAPE = (6, 273, 256)  # observations, time rows, frequency channels
OBSERVATION_SHAPE = CADENCE_SHAPE[1:]  # one Kaggle observation: time rows, frequency channels
MIN_OBSERVATION_ROWS = 4  # the smallest observation a run accepts: time rows ...
MIN_OBSERVATION_CHANNELS = 8  # ... and frequency channels
CADENCE_ORDER = "ABACAD"
ON_OBSERVATIONS = (0, 2, 4)  # cadence order ABACAD: the target star is observed 1st, 3rd and 5th
OFF_OBSERVATIONS = tuple(o for o in range(CADENCE_SHAPE[0]) if o not in ON_OBSERVATIONS)
ALL_OBSERVATIONS = tuple(range(CADENCE_SHAPE[0]))

# Frame parameters of the Breakthrough Listen high-resolution product
DF_HZ = 2.7939677238464355  # channel width
DT_S = 18.253611008  # time row
T_SLEW_S = 20.0  # telescope slew between observations
FCH1_MHZ = 6095.214842353016  # frequency of the first channel (the generator's; the Kaggle files carry none)


def cadence_shape(observation_shape: tuple[int, int] = OBSERVATION_SHAPE) -> tuple[int, int, int]:
    """(6, rows, channels): a whole cadence of observations of the given (rows, channels)."""
    return (len(ALL_OBSERVATIONS), *observation_shape)


def observation_shape_problem(shape) -> str | None:
    """Why `shape` is no usable (rows, channels) of one observation, or None when it is."""
    if len(shape) != 2 or shape[0] < MIN_OBSERVATION_ROWS or shape[1] < MIN_OBSERVATION_CHANNELS:
        return (
            f"must be [rows, channels] with rows >= {MIN_OBSERVATION_ROWS} and channels >= "
            f"{MIN_OBSERVATION_CHANNELS}, got {list(shape)}"
        )
    return None


def view_observations(view: str) -> tuple[int, ...]:
    """The observations a view shows the model: the three ON ones for `on`, all six otherwise."""
    return ON_OBSERVATIONS if view == "on" else ALL_OBSERVATIONS


def loaded_observations(view: str, background: str = "none") -> tuple[int, ...]:
    """What the loader reads for a view: its observations, or all six when the background is cleaned with the OFFs."""
    return ALL_OBSERVATIONS if background != "none" else view_observations(view)
