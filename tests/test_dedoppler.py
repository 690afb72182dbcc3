"""Brute-force de-Doppler (src/search/dedoppler.py): exact line sums, SNR scale, ON-minus-OFF score, batching."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from src.search import dedoppler as dd
from src.synth.generator import SynthConfig, make_cadence

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROWS, CHANS = dd.N_ROWS, dd.N_CHANS


def noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def add_line(obs: torch.Tensor, start: int, drift: int, snr: float) -> None:
    """A one-channel straight line of setigen SNR `snr` (per-pixel level snr / sqrt(rows)) on the staircase."""
    shifts = dd.row_shifts(torch.tensor([drift]), obs.shape[-2])[0]
    obs[torch.arange(obs.shape[-2]), start + shifts] += snr / ROWS**0.5


def test_line_sums_equal_the_brute_force_loop():
    x = noise(3, ROWS, CHANS)
    max_drift = 7
    sums = dd.line_sums(x, max_drift)
    shifts = dd.row_shifts(dd.drift_grid(max_drift), ROWS)
    for i, drift in enumerate(dd.drift_grid(max_drift).tolist()):
        for f in (0, 5, 128, CHANS - 1):
            channels = f + shifts[i]
            inside = (channels >= 0) & (channels < CHANS)
            rows = torch.arange(ROWS)[inside]
            expected = x[:, rows, channels[inside]].sum(-1)
            torch.testing.assert_close(sums[:, i, f], expected, atol=1e-3, rtol=1e-4, msg=f"drift {drift} channel {f}")


def test_a_straight_line_is_found_at_its_drift_start_and_snr():
    cadences = noise(1, 6, ROWS, CHANS)
    for obs in dd.ON_OBSERVATIONS:
        add_line(cadences[0, obs], start=100, drift=-37, snr=25.0)
    result = dd.search(cadences)
    on = list(dd.ON_OBSERVATIONS)
    assert (result.drift[0, on] == -37).all() and (result.channel[0, on] == 100).all()
    assert (result.snr[0, on] > 20).all() and (result.snr[0, on] < 32).all()  # the injected SNR, within noise
    assert result.score()[0] > 15


def test_pure_noise_scores_near_zero():
    result = dd.search(noise(8, 6, ROWS, CHANS, seed=1))
    assert result.snr.abs().max() < 7  # the largest of ~25k correlated unit-variance lines
    assert result.score().abs().max() < 2.5


def test_a_signal_in_all_six_observations_scores_low():
    cadences = noise(1, 6, ROWS, CHANS, seed=2)
    for obs in range(6):
        add_line(cadences[0, obs], start=60, drift=3, snr=30.0)
    result = dd.search(cadences)
    assert (result.snr[0] > 20).all()
    assert result.score()[0] < 5


def test_batched_equals_one_by_one():
    cadences = noise(3, 6, ROWS, CHANS, seed=3)
    add_line(cadences[1, 2], start=200, drift=20, snr=15.0)
    batched = dd.search(cadences, width=2)
    for i in range(3):
        single = dd.search(cadences[i : i + 1], width=2)
        torch.testing.assert_close(single.snr, batched.snr[i : i + 1], atol=1e-4, rtol=1e-5)
        assert torch.equal(single.drift, batched.drift[i : i + 1]) and torch.equal(
            single.channel, batched.channel[i : i + 1]
        )


def test_valid_lines_stay_in_band():
    mask = dd.valid_lines(CHANS, 10, width=3)
    drifts = dd.drift_grid(10)
    assert mask.shape == (21, CHANS - 2)
    assert mask[drifts == 0].sum() == CHANS - 2
    assert mask[drifts == 10].sum() == CHANS - 2 - 10 and not mask[drifts == 10, -10:].any()
    assert mask[drifts == -10].sum() == CHANS - 2 - 10 and not mask[drifts == -10, :10].any()


def test_default_drift_range_covers_the_generator():
    assert dd.drift_hz_per_s(dd.MAX_DRIFT) >= SynthConfig().max_drift
    assert dd.fft_size(CHANS + dd.MAX_DRIFT) == 320 and dd.fft_size(7) == 8
    with pytest.raises(ValueError):
        dd.search(torch.zeros(6, ROWS, CHANS))


def test_project_generator_needle_found_at_its_drift():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, meta = make_cadence(SynthConfig(snr_min=30, snr_max=30), 7, 1, shape="linear", interference="none")
    result = dd.search(torch.from_numpy(x.astype(np.float32))[None])
    drift = meta["drift_rate"] / dd.drift_hz_per_s(1.0)
    on = list(dd.ON_OBSERVATIONS)
    assert (result.drift[0, on] - drift).abs().max() <= 1
    assert result.score()[0] > 10


def test_drift_steps_are_the_integers_or_evenly_spaced():
    assert dd.drift_steps(3).tolist() == [-3, -2, -1, 0, 1, 2, 3]
    assert dd.drift_steps(7, 5).tolist() == [-7.0, -3.5, 0.0, 3.5, 7.0]
    with pytest.raises(ValueError, match="n_drifts"):
        dd.drift_steps(7, 1)


def test_line_sums_on_spaced_drifts_equal_the_brute_force_loop():
    x = noise(2, ROWS, CHANS, seed=4)
    drifts = dd.drift_steps(9, 4)
    sums = dd.line_sums(x, 9, n_drifts=4)
    assert sums.shape == (2, 4, CHANS)
    shifts = dd.row_shifts(drifts, ROWS)
    for i in range(4):
        for f in (0, 77, CHANS - 1):
            channels = f + shifts[i]
            inside = (channels >= 0) & (channels < CHANS)
            expected = x[:, torch.arange(ROWS)[inside], channels[inside]].sum(-1)
            torch.testing.assert_close(sums[:, i, f], expected, atol=1e-3, rtol=1e-4)


def generated_signal(target: int, interference: str, seed: int) -> torch.Tensor:
    """The project generator's noiseless signal (noise-sigma units) for one cadence: linear paths only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, _ = make_cadence(
            SynthConfig(snr_min=40, snr_max=40, shapes=("linear",)),
            seed,
            target,
            interference=interference,
            noise=False,
        )
    return torch.from_numpy(x.astype(np.float32))[None]


@pytest.mark.parametrize("target, interference, lit", [(1, "none", dd.ON_OBSERVATIONS), (0, "rfi", tuple(range(6)))])
def test_cadence_planes_put_a_linear_signal_on_one_pixel_of_every_observation_holding_it(target, interference, lit):
    """Aligned across the slews, the generator's straight path peaks at the same (drift, channel) in each plane
    of an observation that holds it: a needle in the three ON planes, interference in all six."""
    for seed in range(3):
        planes = dd.cadence_planes(generated_signal(target, interference, seed), n_drifts=64)[0]  # (6, 64, 256)
        assert planes.shape == (6, 64, CHANS)
        peaks = torch.tensor([divmod(int(planes[o].flatten().argmax()), CHANS) for o in lit])
        spread = peaks.amax(dim=0) - peaks.amin(dim=0)
        # within the drift grid's step (1.5 channels per observation here); unaligned, a needle's ON peaks would
        # lie up to 2 x 48 channels apart
        assert spread[0] <= 2 and spread[1] <= 5, (seed, peaks.tolist())
        assert float(planes[list(lit)].amax(dim=(1, 2)).min()) > 25  # most of the SNR-40 signal on one line
        dark = [o for o in range(6) if o not in lit]
        if dark:
            assert float(planes[dark].abs().max()) == 0.0  # nothing of the needle leaks into the OFF planes


def test_cadence_planes_of_noise_are_in_noise_sigmas_and_need_six_observations():
    planes = dd.cadence_planes(noise(2, 6, ROWS, CHANS, seed=5), n_drifts=32)
    inside = planes[planes != 0]
    assert 0.85 < float(inside.std()) < 1.15 and abs(float(inside.mean())) < 0.05
    with pytest.raises(ValueError, match="all 6"):
        dd.cadence_planes(noise(1, 3, ROWS, CHANS), n_drifts=32)


def test_cadence_planes_align_observations_of_any_row_count():
    """16-row observations with a slew of exactly one row (row_seconds = the 20 s slew): a straight path at one
    channel per row across the cadence peaks on the same (drift, channel) pixel of every ON plane."""
    rows, step = 16, 17
    x = torch.zeros(1, 6, rows, CHANS)
    for obs in dd.ON_OBSERVATIONS:
        r = torch.arange(rows)
        x[0, obs, r, 100 + (obs - dd.REFERENCE_OBSERVATION) * step + r] = 1.0
    planes = dd.cadence_planes(x, n_drifts=97, row_seconds=dd.T_SLEW_S)[0]  # integer drifts -48..48
    peaks = {divmod(int(planes[o].flatten().argmax()), CHANS) for o in dd.ON_OBSERVATIONS}
    assert peaks == {(48 + rows - 1, 100)}  # drift 15 channels per observation, channel 100 at the reference row
    assert float(planes[list(dd.ON_OBSERVATIONS)].amax()) == pytest.approx(rows / rows**0.5)
    assert dd.observation_step_rows(ROWS) == dd.OBSERVATION_STEP_ROWS  # Kaggle's, unchanged
