"""The cadence: what one sample is, in which order its observations come, and the resolution it was taken at.

A cadence snippet is 6 observations x 273 time rows x 256 frequency channels of Breakthrough Listen's
high-resolution product (2.79 Hz x 18.25 s), observed ABACAD: the target star (A, "ON") 1st, 3rd and 5th,
three other stars ("OFF") in between, with a slew of about one time row from each observation to the next.
Every stage reads these facts from here.
"""

from __future__ import annotations

CADENCE_SHAPE = (6, 273, 256)  # observations, time rows, frequency channels
CADENCE_ORDER = "ABACAD"
ON_OBSERVATIONS = (0, 2, 4)  # cadence order ABACAD: the target star is observed 1st, 3rd and 5th
OFF_OBSERVATIONS = tuple(o for o in range(CADENCE_SHAPE[0]) if o not in ON_OBSERVATIONS)
ALL_OBSERVATIONS = tuple(range(CADENCE_SHAPE[0]))

# Frame parameters of the Breakthrough Listen high-resolution product
DF_HZ = 2.7939677238464355  # channel width
DT_S = 18.253611008  # time row
T_SLEW_S = 20.0  # telescope slew between observations
FCH1_MHZ = 6095.214842353016  # frequency of the first channel (the generator's; the Kaggle files carry none)


def view_observations(view: str) -> tuple[int, ...]:
    """The observations a view shows the model: the three ON ones for `on`, all six otherwise."""
    return ON_OBSERVATIONS if view == "on" else ALL_OBSERVATIONS


def loaded_observations(view: str, background: str = "none") -> tuple[int, ...]:
    """What the loader reads for a view: its observations, or all six when the background is cleaned with the OFFs."""
    return ALL_OBSERVATIONS if background != "none" else view_observations(view)
