"""On-the-fly injection (src/synth/inject.py): where needles and interference go, how strong they are, their labels."""

from __future__ import annotations

import math

import pytest
import torch

from src.core.cadence import DF_HZ, ON_OBSERVATIONS, view_observations
from src.synth.generator import SINE_AMPLITUDE_CHANNELS, SINE_DRIFT_SCALE, SINE_PERIOD_OBSERVATIONS
from src.synth.inject import (
    INJECTED_SHAPES,
    MAX_DRIFT_CHANNELS_PER_ROW,
    MAX_FOLLOWED_DRIFT,
    N_FREQ,
    N_TIME,
    NEAR_ZERO_DRIFT,
    POSITION_JITTER_CHANNELS,
    inject_signals,
    needle_paths,
    observation_rows,
    pulse_trains,
    spectral_profiles,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def inject_needles(observations, targets, ids, probability, snr_range, generator=None):
    return inject_signals(observations, targets, ids, probability, 0.0, snr_range, generator)


def inject_interference(observations, ids, probability, snr_range, generator=None):
    return inject_signals(observations, torch.zeros(len(observations)), ids, 0.0, probability, snr_range, generator)[0]


def noise_batch(batch: int, n_obs: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, n_obs, N_TIME, N_FREQ, generator=torch.Generator().manual_seed(seed)).half()


def test_needles_go_into_on_observations_only_and_make_positives():
    ids = view_observations("all")
    observations, targets = noise_batch(6, 6), torch.zeros(6)
    injected, labels = inject_needles(observations, targets, ids, 1.0, (30, 30), torch.Generator().manual_seed(1))
    added = injected - observations.float()
    assert (
        injected.dtype == torch.float32 and torch.equal(labels, torch.ones(6)) and torch.equal(targets, torch.zeros(6))
    )
    for position, observation in enumerate(ids):
        power = added[:, position].abs().sum(dim=(-2, -1))
        assert bool((power > 0).all()) == (observation in ON_OBSERVATIONS)
        assert bool((power == 0).all()) == (observation not in ON_OBSERVATIONS)


def test_injected_needle_has_the_setigen_snr():
    """Summed along its path over one observation, the needle stands `snr` noise-sigmas above the background."""
    ids = view_observations("on")
    observations = noise_batch(1, 3)
    injected, _ = inject_needles(observations, torch.zeros(1), ids, 1.0, (40, 40), torch.Generator().manual_seed(2))
    added = (injected - observations.float())[0, 0]  # (time, freq)
    peak_per_row = added.max(dim=1).values
    expected_peak = 40 * float(observations[0, 0].float().std()) / math.sqrt(N_TIME)
    inside = peak_per_row[peak_per_row > 0]
    assert len(inside) > N_TIME // 2  # most rows of the path are inside the band
    assert float(inside.max()) == pytest.approx(expected_peak, rel=0.01)


def test_probability_zero_changes_nothing_and_probability_picks_a_share():
    observations, targets = noise_batch(4, 3), torch.tensor([0.0, 1.0, 0.0, 0.0])
    unchanged, same_targets = inject_needles(observations, targets, ON_OBSERVATIONS, 0.0, (5, 60))
    assert torch.equal(unchanged, observations.float()) and torch.equal(same_targets, targets)
    generator = torch.Generator().manual_seed(3)
    counts = [
        int(inject_needles(noise_batch(8, 3), torch.zeros(8), ON_OBSERVATIONS, 0.5, (5, 60), generator)[1].sum())
        for _ in range(20)
    ]
    assert 40 < sum(counts) < 120  # about half of 160


def test_injection_is_reproducible_from_the_generator():
    observations = noise_batch(3, 6)
    first = inject_needles(observations, torch.zeros(3), range(6), 1.0, (5, 60), torch.Generator().manual_seed(9))[0]
    again = inject_needles(observations, torch.zeros(3), range(6), 1.0, (5, 60), torch.Generator().manual_seed(9))[0]
    other = inject_needles(observations, torch.zeros(3), range(6), 1.0, (5, 60), torch.Generator().manual_seed(10))[0]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_paths_are_smooth_and_inside_the_band_at_the_on_observations():
    rows = observation_rows(range(6), torch.device("cpu"))
    assert rows[1, 0] - rows[0, -1] == 2  # one slew row between observations
    on = torch.tensor([o in ON_OBSERVATIONS for o in range(6)])
    generator = torch.Generator().manual_seed(4)
    shapes = torch.randint(len(INJECTED_SHAPES), (500,), generator=generator)
    paths = needle_paths(500, rows, on, generator, shapes)
    assert paths.shape == (500, 6, N_TIME)
    steps = (paths[:, :, 1:] - paths[:, :, :-1]).abs()
    # the steepest the generator's paths get: its fastest, widest sine plus a sine's largest drift
    steepest = (
        2 * math.pi * SINE_AMPLITUDE_CHANNELS[1] / (SINE_PERIOD_OBSERVATIONS[0] * N_TIME)
        + SINE_DRIFT_SCALE * MAX_DRIFT_CHANNELS_PER_ROW
    )
    assert float(steps.max()) <= steepest + 1e-3  # a smooth path, not scattered points
    at_on = paths[:, list(ON_OBSERVATIONS)]
    assert float(at_on.min()) >= 4 - 1e-4 and float(at_on.max()) <= N_FREQ - 1 - 4 + 1e-4


def test_interference_goes_into_all_six_observations_and_keeps_labels():
    observations = noise_batch(5, 6)
    injected = inject_interference(observations, range(6), 1.0, (30, 30), torch.Generator().manual_seed(5))
    added = injected - observations.float()
    assert injected.dtype == torch.float32
    assert bool((added.abs().sum(dim=(-2, -1)) > 0).all())  # every observation of every sample
    # one continuous path: the signal's channel at the last row of an observation and the first of the next agree
    centre = (added.clamp(min=0) * torch.arange(N_FREQ)).sum(-1) / added.clamp(min=0).sum(-1).clamp(min=1e-6)
    lit = added.amax(dim=-1) > 0
    for sample in range(5):
        for obs in range(5):
            if lit[sample, obs, -1] and lit[sample, obs + 1, 0]:
                assert abs(float(centre[sample, obs, -1] - centre[sample, obs + 1, 0])) < 3
    with pytest.raises(ValueError, match="all six"):
        inject_interference(noise_batch(1, 3), ON_OBSERVATIONS, 1.0, (30, 30))


def test_interference_probability_picks_a_share_and_is_reproducible():
    observations = noise_batch(8, 6)
    touched = [
        int(
            (
                (
                    inject_interference(observations, range(6), 0.5, (5, 60), torch.Generator().manual_seed(s))
                    - observations.float()
                )
                .abs()
                .sum(dim=(1, 2, 3))
                > 0
            ).sum()
        )
        for s in range(10)
    ]
    assert 20 < sum(touched) < 60  # about half of 80
    first = inject_interference(observations, range(6), 0.5, (5, 60), torch.Generator().manual_seed(1))
    assert torch.equal(
        first, inject_interference(observations, range(6), 0.5, (5, 60), torch.Generator().manual_seed(1))
    )


def test_needles_and_interference_together_make_one_copy_in_the_order_training_draws_them():
    observations, targets = noise_batch(4, 6), torch.tensor([0.0, 1.0, 0.0, 0.0])
    both, labels = inject_signals(observations, targets, range(6), 1.0, 1.0, (30, 30), torch.Generator().manual_seed(7))
    assert torch.equal(labels, torch.ones(4)) and torch.equal(targets, torch.tensor([0.0, 1.0, 0.0, 0.0]))
    # needles are drawn first, then interference from where the generator stands
    generator = torch.Generator().manual_seed(7)
    needles_only, _ = inject_signals(observations, targets, range(6), 1.0, 0.0, (30, 30), generator)
    then_interference, _ = inject_signals(needles_only, targets, range(6), 0.0, 1.0, (30, 30), generator)
    assert torch.equal(both, then_interference)
    added = both - observations.float()
    assert bool((added.abs().sum(dim=(-2, -1)) > 0).all())


def test_interference_has_its_own_snr_range_and_needles_keep_theirs():
    """`interference_snr_range` gives the interference the SNRs of a (30, 30) draw, the needles still theirs: the
    same draws as injecting the needles at (10, 10), then the interference at (30, 30)."""
    observations, targets = noise_batch(4, 6), torch.zeros(4)
    both, _ = inject_signals(
        observations,
        targets,
        range(6),
        1.0,
        1.0,
        (10, 10),
        torch.Generator().manual_seed(8),
        interference_snr_range=(30, 30),
    )
    generator = torch.Generator().manual_seed(8)
    needles_only, _ = inject_signals(observations, targets, range(6), 1.0, 0.0, (10, 10), generator)
    then_interference, _ = inject_signals(needles_only, targets, range(6), 0.0, 1.0, (30, 30), generator)
    assert torch.equal(both, then_interference)
    generator = torch.Generator().manual_seed(8)
    needles_only, _ = inject_signals(observations, targets, range(6), 1.0, 0.0, (10, 10), generator)
    same_range, _ = inject_signals(needles_only, targets, range(6), 0.0, 1.0, (10, 10), generator)
    assert not torch.equal(both, same_range)


def test_near_zero_drift_keeps_half_of_the_interference_nearly_still():
    rows = observation_rows(range(6), torch.device("cpu"))
    linear = torch.zeros(2000, dtype=torch.long)
    still = needle_paths(
        2000, rows, torch.ones(6, dtype=torch.bool), torch.Generator().manual_seed(6), linear, near_zero=True
    )
    moving = needle_paths(2000, rows, torch.ones(6, dtype=torch.bool), torch.Generator().manual_seed(6), linear)
    drift = lambda paths: (paths[:, -1, -1] - paths[:, 0, 0]).abs()  # noqa: E731
    limit = NEAR_ZERO_DRIFT * MAX_DRIFT_CHANNELS_PER_ROW * float(rows[-1, -1] - rows[0, 0]) + 1e-3
    assert 0.4 < float((drift(still) <= limit).float().mean()) < 0.6
    assert float((drift(moving) <= limit).float().mean()) < 0.2


def test_pulse_trains_switch_pulsed_signals_on_and_off():
    rows = observation_rows(range(6), torch.device("cpu"))
    pulsed = torch.tensor([True, False] * 50)
    intensity = pulse_trains(100, rows, pulsed, torch.Generator().manual_seed(7))
    assert set(intensity.unique().tolist()) <= {0.0, 1.0}
    assert bool((intensity[~pulsed] == 1).all())
    duty = intensity[pulsed].mean(dim=(1, 2))
    assert float(duty.min()) > 0.2 and float(duty.max()) < 0.8  # duty cycles of 0.3-0.7
    changes = (intensity[pulsed, :, 1:] != intensity[pulsed, :, :-1]).sum(dim=(1, 2))
    assert int(changes.min()) >= 2 * 6 * N_TIME // 60 - 12  # a period of at most 60 rows: many pulses per cadence


def test_sine_paths_cover_the_generators_fast_sines_and_slow_drifts():
    """Sines as the generator draws them: periods from 0.75 observation, so some swing over a channel a row
    (the steepest of periods from 1.5 observations stayed under 0.9), on a drift at most 0.4 of a linear one's."""
    rows = observation_rows(range(6), torch.device("cpu"))
    sine = torch.full((2000,), INJECTED_SHAPES.index("sine"))
    paths = needle_paths(2000, rows, torch.ones(6, dtype=torch.bool), torch.Generator().manual_seed(8), sine)
    steepest = (paths[:, :, 1:] - paths[:, :, :-1]).abs().amax(dim=(1, 2))
    assert float((steepest > 1.0).float().mean()) > 0.05
    linear = torch.zeros(2000, dtype=torch.long)
    straight = needle_paths(2000, rows, torch.ones(6, dtype=torch.bool), torch.Generator().manual_seed(8), linear)
    span = float(rows[-1, -1] - rows[0, 0])
    drift = lambda paths: ((paths[:, -1, -1] - paths[:, 0, 0]) / span).abs()  # noqa: E731
    # over the cadence a sine's own swing adds at most twice its amplitude to the path's net change
    sine_drift_bound = SINE_DRIFT_SCALE * MAX_DRIFT_CHANNELS_PER_ROW + 2 * SINE_AMPLITUDE_CHANNELS[1] / span
    assert float(drift(paths).max()) <= sine_drift_bound + 1e-4
    assert float(drift(straight).max()) > sine_drift_bound  # linear paths drift faster than any sine's drift


@pytest.mark.parametrize("kind", ["gaussian", "sinc2"])
def test_spectral_profiles_match_setigens(kind):
    """The injected signal's spectral shape is setigen's (peak 1, the same FWHM; sinc2 cut at its first zeros)."""
    import setigen as stg

    fwhm = torch.tensor([1.0, 2.5, 4.0])
    offset = torch.linspace(-8, 8, 161).expand(3, -1)
    ours = spectral_profiles(offset, fwhm, torch.full((3,), kind == "sinc2"))
    for width, row in zip(fwhm.tolist(), ours, strict=True):
        profile = (
            stg.sinc2_f_profile(width * DF_HZ, width_mode="fwhm")
            if kind == "sinc2"
            else stg.gaussian_f_profile(width * DF_HZ)
        )
        theirs = profile(offset[0].double().numpy() * DF_HZ, 0.0)
        assert row.double().numpy() == pytest.approx(theirs, abs=1e-5)


def test_follows_drift_needles_restart_near_a_common_channel_in_every_on_observation():
    """Snippets whose windows follow the candidate's drift, (B, 6, 16, 256): a needle in the ON observations only,
    inside the band, moving at most one channel a row within an observation, each ON observation's path starting
    within 2 channels of a common start channel."""
    rows = observation_rows(range(6), torch.device("cpu"), 16)
    on = torch.tensor([o in ON_OBSERVATIONS for o in range(6)])
    generator = torch.Generator().manual_seed(11)
    shapes = torch.randint(len(INJECTED_SHAPES), (1000,), generator=generator)
    paths = needle_paths(1000, rows, on, generator, shapes, n_channels=256, window="follows_drift")
    assert paths.shape == (1000, 6, 16)
    steps = (paths[..., 1:] - paths[..., :-1]).abs()
    assert MAX_FOLLOWED_DRIFT == 1 and float(steps.max()) <= 1 + 1e-4  # within an observation
    linear = shapes == INJECTED_SHAPES.index("linear")
    drift = (paths[linear, 0, -1] - paths[linear, 0, 0]) / 15
    assert float(drift.min()) < -0.8 and float(drift.max()) > 0.8  # drifts drawn over +-1 channel per row
    starts = paths[:, list(ON_OBSERVATIONS), 0]
    assert float((starts.amax(dim=1) - starts.amin(dim=1)).max()) <= 2 * POSITION_JITTER_CHANNELS + 1e-4
    assert float((starts.amax(dim=1) - starts.amin(dim=1)).max()) > 3  # each observation has its own jitter
    at_on = paths[:, list(ON_OBSERVATIONS)]
    assert float(at_on.min()) >= 4 - 1e-4 and float(at_on.max()) <= 255 - 4 + 1e-4
    assert float(paths[:, 0, 0].std()) > 50  # the common start is drawn across the band

    observations, targets = (
        torch.randn(6, 6, 16, 256, generator=torch.Generator().manual_seed(12)).half(),
        torch.zeros(6),
    )
    injected, labels = inject_signals(
        observations, targets, range(6), 1.0, 0.0, (40, 40), torch.Generator().manual_seed(13), window="follows_drift"
    )
    assert torch.equal(labels, torch.ones(6))
    added = injected - observations.float()
    power = added.abs().sum(dim=(-2, -1))
    assert bool((power[:, list(ON_OBSERVATIONS)] > 0).all()) and bool((power[:, [1, 3, 5]] == 0).all())
    # the setigen SNR over 16 rows: the per-pixel peak is snr * noise_std / sqrt(16)
    expected_peak = 40 * float(observations[0, 0].float().std()) / 4
    assert float(added[0, 0].max()) == pytest.approx(expected_peak, rel=0.05)
    # the brightest channel of every lit row: within the band, moving at most about a channel a row
    peak_channel = added.argmax(dim=-1).float()[:, list(ON_OBSERVATIONS)]
    lit = added.amax(dim=-1)[:, list(ON_OBSERVATIONS)] > 0
    assert bool(((peak_channel >= 2) & (peak_channel <= 253))[lit].all())
    both_lit = lit[..., 1:] & lit[..., :-1]
    assert float((peak_channel[..., 1:] - peak_channel[..., :-1]).abs()[both_lit].max()) <= 2


def test_follows_drift_injected_needles_are_the_candidate_at_the_centre_and_interference_lies_anywhere():
    """A scan snippet is centred on its candidate at each observation's middle row, and its label speaks of that
    signal: an injected needle crosses the centre there (within the position jitter) in every ON observation,
    whatever its shape; injected interference is drawn across the window."""
    rows = observation_rows(range(6), torch.device("cpu"), 16)
    on = torch.tensor([o in ON_OBSERVATIONS for o in range(6)])
    generator = torch.Generator().manual_seed(21)
    shapes = torch.randint(len(INJECTED_SHAPES), (1000,), generator=generator)
    paths = needle_paths(1000, rows, on, generator, shapes, n_channels=256, window="follows_drift", centred=True)
    middle = paths[:, list(ON_OBSERVATIONS), 7:9].mean(dim=-1)
    assert float((middle - 128).abs().max()) <= POSITION_JITTER_CHANNELS + 1e-4
    assert float((middle - 128).abs().max()) > 1  # each observation keeps its own jitter
    steps = (paths[..., 1:] - paths[..., :-1]).abs()
    assert float(steps.max()) <= MAX_FOLLOWED_DRIFT + 1e-4 and float(steps.max()) > 0.8  # still drifting

    observations = torch.randn(64, 6, 16, 256, generator=torch.Generator().manual_seed(22))
    for needles, interference in ((1.0, 0.0), (0.0, 1.0)):
        injected = inject_signals(
            observations,
            torch.zeros(64),
            range(6),
            needles,
            interference,
            (60, 60),
            torch.Generator().manual_seed(23),
            window="follows_drift",
        )[0]
        added = (injected - observations)[:, 0, 7:9]  # first ON observation, its middle rows
        lit = added.amax(dim=-1).amin(dim=-1) > 1  # pulsed needles may be off there
        peak = added.sum(dim=1).argmax(dim=-1).float()[lit]
        assert len(peak) > 40
        if needles:
            assert float((peak - 128).abs().max()) <= POSITION_JITTER_CHANNELS + 2
        else:
            assert float(peak.std()) > 40


def test_follows_drift_interference_goes_into_all_six_and_the_fixed_window_is_unchanged():
    observations = torch.randn(4, 6, 16, 256, generator=torch.Generator().manual_seed(14)).half()
    injected = inject_signals(
        observations, torch.zeros(4), range(6), 0.0, 1.0, (30, 30), torch.Generator().manual_seed(15), "follows_drift"
    )[0]
    assert bool(((injected - observations.float()).abs().sum(dim=(-2, -1)) > 0).all())
    fixed = inject_signals(
        observations, torch.zeros(4), range(6), 1.0, 1.0, (30, 30), torch.Generator().manual_seed(15)
    )
    default = inject_signals(
        observations, torch.zeros(4), range(6), 1.0, 1.0, (30, 30), torch.Generator().manual_seed(15), window="fixed"
    )
    assert torch.equal(fixed[0], default[0])
    with pytest.raises(ValueError, match="window"):
        inject_signals(observations, torch.zeros(4), range(6), 1.0, 0.0, (30, 30), window="sliding")
