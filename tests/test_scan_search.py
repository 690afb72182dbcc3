"""Unit tests of the filterbank search's stages: cleaning, the Taylor tree, the drift bands and hits, the track
SNR, and the cadence filter's matching, veto and levels."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from src.data.clean import bandpass, blank_dc, clean_block, flag_persistent
from src.search.events import ObservationClock, carried_start, event_columns, find_events
from src.search.hits import (
    Profile,
    boxcar,
    dedoppler_profile,
    drift_bands,
    find_hits,
    mask_lines,
    merged_spans,
    search_block,
    signal_widths,
    taylor_tree,
    track_snr,
    tracks_meet,
)
from src.search.windows import WINDOW_LEVEL, best_line_per_window, free_lines, window_events

ROWS, TSAMP = 16, 18.25


def add_line(block: torch.Tensor, start: float, drift: float, power: float) -> torch.Tensor:
    """A straight signal starting at channel `start`, drifting `drift` channels from the first to the last row,
    `power` per row spread over the channels it crosses within the row (as a spectrometer smears it). `power` is
    scaled by sqrt(channels per row), so that the best possible SNR, power x sqrt(rows), does not depend on the
    drift."""
    n_rows = block.shape[0]
    per_row = drift / (n_rows - 1)
    power *= math.sqrt(max(1.0, abs(per_row)))
    for t in range(n_rows):
        lo = start + per_row * (t - 0.5)
        hi = lo + per_row
        a, b = sorted((lo, hi))
        first, last = round(a), max(round(a), round(b) - 1) if abs(per_row) > 1 else round(a)
        channels = torch.arange(first, last + 1)
        block[t, channels] += power / len(channels)
    return block


def noise(n_chans: int, seed: int = 0, n_rows: int = ROWS) -> torch.Tensor:
    return torch.randn(n_rows, n_chans, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- cleaning ---


def test_blank_dc_replaces_the_spike_by_its_neighbours():
    block = torch.ones(4, 64)
    block[:, 32] = 50.0
    cleaned = blank_dc(block.clone(), 32)
    assert torch.all(cleaned[:, 32] == 1.0)
    assert torch.equal(blank_dc(block.clone(), None), block)


def test_bandpass_follows_a_scalloped_shape_and_ignores_a_narrow_signal():
    channels = torch.arange(4096, dtype=torch.float32)
    shape = 1.0 - 0.8 * ((channels - 2048) / 2048) ** 4
    block = shape * (1 + 0.01 * noise(4096))
    block[:, 1000] += 5.0  # a strong narrowband line
    estimate = bandpass(block, 64)
    assert torch.allclose(estimate[64:-64], shape[64:-64], rtol=0.02)
    assert abs(float(estimate[1000] / shape[1000]) - 1) < 0.02


def test_clean_block_gives_unit_noise_flat_across_the_band_and_removes_a_burst():
    channels = torch.arange(8192, dtype=torch.float32)
    shape = 1e9 * (1.0 - 0.8 * ((channels - 4096) / 4096) ** 4)
    raw = shape * (1 + 0.05 * noise(8192))
    raw[3] *= 1.5  # a broadband burst in one row
    raw[:, 4096] *= 8  # the DC spike
    cleaned, flagged = clean_block(raw, 4096)
    assert flagged == 0
    sigma = 1.4826 * (cleaned - cleaned.median()).abs().median()
    assert abs(float(sigma) - 1) < 0.05
    assert abs(float(cleaned[3].median())) < 0.05
    edges, middle = cleaned[:, :512].std(), cleaned[:, 3500:4000].std()
    assert abs(float(edges / middle) - 1) < 0.1
    assert abs(float(cleaned[:, 4096].mean())) < 1.0


def test_flag_persistent_zeroes_only_the_lasting_line():
    block = noise(1024)
    block[:, 100] += 3.0  # 12 sigma of a 16-row mean
    block[5, 200] += 20.0  # one bright pixel: not persistent
    flagged_block, count = flag_persistent(block.clone(), 6.0)
    assert count == 1
    assert torch.all(flagged_block[:, 100] == 0)
    assert flagged_block[5, 200] == block[5, 200]


# --------------------------------------------------------------- the tree ---


def staircase(n: int, drift: int) -> list[int]:
    """The tree's shift of each row for a drift, read off by feeding it one impulse per row."""
    shifts = []
    for t in range(n):
        rows = torch.zeros(n, 3 * n + 10)
        rows[t, n + 5] = 1.0
        sums = taylor_tree(rows)[drift]
        shifts.append(n + 5 - int(torch.nonzero(sums)[0]))
    return shifts


@pytest.mark.parametrize("n", [2, 4, 16])
def test_taylor_tree_sums_one_pixel_per_row_along_a_staircase(n):
    rows = noise(64, seed=3, n_rows=n)
    sums = taylor_tree(rows)
    for drift in range(n):
        shifts = staircase(n, drift)
        assert shifts[0] == 0 and shifts[-1] == drift
        assert all(0 <= b - a <= 1 for a, b in itertools.pairwise(shifts))
        expected = sum(rows[t, shifts[t] : 64 - drift + shifts[t]] for t in range(n))
        assert torch.allclose(sums[drift, : 64 - drift], expected, atol=1e-5)


def test_drift_bands_cover_the_rates_asked_for():
    assert [(b.width, b.stride, b.preshift) for b in drift_bands(1.0)] == [(1, 1, False)]
    bands = drift_bands(26.1)  # 4 Hz/s at 2.79 Hz x 18.25 s
    assert [b.width for b in bands] == [1, 2, 4, 8, 16, 32]
    assert all(b.stride == b.width // 2 for b in bands[1:])


def test_boxcar_sums_adjacent_channels():
    block = torch.arange(8.0)[None]
    assert boxcar(block, 4, 2).tolist() == [[6.0, 14.0, 22.0]]


# ------------------------------------------------------------------- hits ---


@pytest.mark.parametrize("drift", [0.0, 9.0, -15.0, 75.0, -300.0])
def test_profile_finds_a_line_at_its_start_and_drift(drift):
    block = add_line(noise(16384, seed=1), 6000, drift, power=4.0)
    profile = dedoppler_profile(block, max_drift_per_row=26.0)
    hits = find_hits(profile, 8.0)
    assert len(hits) == 1
    hit = hits[0]
    width = profile.width[hit]
    assert abs(hit - 6000) <= max(1, width / 2)
    assert abs(profile.drift[hit] - drift) <= max(1.0, width)
    ideal = 4.0 * math.sqrt(ROWS)  # power x rows over the noise of the channels the smeared power covers
    assert 0.6 * ideal < profile.snr[hit] < 1.3 * ideal


def test_ten_hz_per_second_is_searched():
    per_row = 10 * TSAMP / 2.7939677  # 10 Hz/s at 2.79 Hz x 18.25 s: 65 channels per row
    assert [b.width for b in drift_bands(per_row)][-1] == 128
    block = add_line(noise(32768, seed=9), 20000, -60.0 * (ROWS - 1), power=4.0)
    profile = dedoppler_profile(block, per_row)
    hits = find_hits(profile, 9.0)
    assert len(hits) == 1 and abs(profile.drift[hits[0]] + 900) <= profile.width[hits[0]]


@pytest.mark.parametrize("n_chans", [8, 64, 1024])
def test_drifts_faster_than_the_block_is_wide_are_left_out(n_chans):
    profile = dedoppler_profile(noise(n_chans, seed=11), max_drift_per_row=500.0)
    assert profile.snr.shape == (n_chans,) and np.isfinite(profile.snr[: n_chans // 2]).all()
    assert profile.width.max() <= n_chans // 2


def test_fast_drift_keeps_its_power_where_single_channels_lose_it():
    block = add_line(noise(16384, seed=2), 5000, -300.0, power=4.0)  # 20 channels per row: best SNR 16
    single = dedoppler_profile(block, max_drift_per_row=1.0)  # band 0 only: single-channel lines
    banded = dedoppler_profile(block, max_drift_per_row=26.0)
    assert banded.snr.max() > 2.5 * single.snr[4900:5100].max()


def test_a_strong_signal_is_one_hit_not_a_cluster():
    block = add_line(noise(16384, seed=4), 8000, 12.0, power=150.0)  # SNR ~600
    profile = dedoppler_profile(block, max_drift_per_row=26.0)
    assert (profile.snr > 10).sum() > 20  # many lines cross or graze it
    assert len(find_hits(profile, 10.0)) == 1


def wide_interference_and_a_needle(seed: int) -> torch.Tensor:
    """Bright zero-drift interference 9 channels wide (FWHM) at 4000 and a faint needle at 4300."""
    channels = torch.arange(8192, dtype=torch.float32)
    block = noise(8192, seed=seed) + 250 * torch.exp(-0.5 * ((channels - 4000) / 4) ** 2)
    return add_line(block, 4300, 20.0, power=3.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_steep_tracks_grazing_wide_interference_are_not_hits(seed):
    """An 8-channel boxcar at 8 channels per row that meets the line's wing in a row or two collects enough of
    it to pass the threshold; measured as wide as it is, the interference removes those tracks."""
    block = wide_interference_and_a_needle(seed)
    profile = dedoppler_profile(block, max_drift_per_row=8.5)

    def grazing(hits):
        return [h for h in hits if abs(h - 4000) < 200 and abs(profile.drift[h]) >= 100]

    assert grazing(find_hits(profile, 5.0))  # the boxcar width alone lets them through
    hits = find_hits(profile, 5.0, block)
    assert not grazing(hits)
    assert any(abs(h - 4000) <= 1 for h in hits) and any(abs(h - 4300) <= 2 for h in hits)  # both signals kept


def test_signal_width_is_where_the_mean_along_the_line_stands_above_noise():
    block = wide_interference_and_a_needle(0)
    widths = signal_widths(block, np.array([4000.0, 4300.0, 6000.0]), np.array([0.0, 20.0, 0.0]))
    assert 21 <= widths[0] <= 31  # 250 x exp(-x^2 / 32) > 1 for |x| <= 9.4, noise aside
    assert widths[1] <= 5 and widths[2] <= 3  # a faint needle, pure noise


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("start", "drift", "least_snr"), [(3930, 0.5, 10.0), (3960, 100.0, 5.0)])
def test_a_needle_beside_or_across_bright_interference_is_found_beside_it(seed, start, drift, least_snr):
    """A needle of SNR ~12 starting 70 channels from a bright line (or crossing it steeply) loses its start
    channel's best line to one crossing the line, which the line's hit then removes: find_hits misses it. The
    search beside bright hits (the line masked, its neighbourhood searched again) finds it."""
    channels = torch.arange(8192, dtype=torch.float32)
    block = noise(8192, seed=seed) + 250 * torch.exp(-0.5 * ((channels - 4000) / 4) ** 2)
    block = add_line(block, start, drift, power=3.0)
    profile = dedoppler_profile(block, max_drift_per_row=8.5)

    def needle(channel, drifts):
        return [
            i
            for i, (c, d) in enumerate(zip(channel, drifts, strict=True))
            if abs(c - start) <= 6 and abs(d - drift) <= 6
        ]

    first = find_hits(profile, 5.0, block)
    assert not needle(first, profile.drift[first])
    _, hits = search_block(block, 8.5, 5.0)
    found = needle(hits.channel, hits.drift)
    assert len(found) == 1 and hits.snr[found[0]] >= least_snr
    assert any(abs(c - 4000) <= 1 for c in hits.channel) and len(hits) <= len(first) + 1


def test_the_search_beside_bright_lines_adds_no_hits_in_noise():
    """Bright lines of three kinds (wide and still, steep, slow) every 3,000 channels in noise: the search
    beside them finds neither their leftover wings nor more chance hits than the rest of the band holds."""
    channels = torch.arange(65536, dtype=torch.float32)
    for seed in range(2):
        block = noise(65536, seed=seed)
        for i, centre in enumerate(range(2000, 64000, 3000)):
            if i % 3 == 0:
                block += 250 * torch.exp(-0.5 * ((channels - centre) / 4) ** 2)
            else:
                block = add_line(block, centre, 60.0 if i % 3 == 1 else -8.0, 40.0 if i % 3 == 1 else 100.0)
        profile = dedoppler_profile(block, 8.5)
        first = find_hits(profile, 5.0, block)
        _, hits = search_block(block, 8.5, 5.0)
        assert len(hits) == len(first) and set(hits.channel.astype(int)) == set(first.tolist())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("slope", "power"), [(3, 10.0), (6, 12.0), (-4, 8.0)])
def test_a_bent_bright_signal_leaves_no_hit_beside_it(seed, slope, power):
    """A bright signal still for half the observation, then drifting: its hit is one straight track, and the
    half off it, bright in every pixel, is masked too (MASK_SIGMA) rather than found again beside it."""
    block = noise(8192, seed=seed)
    for t in range(ROWS):
        block[t, 4000 + (0 if t < 8 else slope * (t - 7))] += power
    first = find_hits(dedoppler_profile(block, 8.5), 5.0, block)
    _, hits = search_block(block, 8.5, 5.0)
    assert len(hits) == len(first)


def test_a_bent_bright_signal_three_channels_wide_leaves_almost_no_hit_beside_it():
    """The same bend in a signal 3 channels wide, 4-4.5 sigmas a pixel: most of its pixels stay under
    MASK_SIGMA alone, their 3-channel sums do not. Over 16 such blocks the search beside adds at most one hit
    (three with single pixels masked only)."""
    added = 0
    for seed in range(4):
        for slope, power in [(3, 4.5), (6, 4.5), (-4, 4.0), (12, 4.5)]:
            block = noise(8192, seed=seed)
            for t in range(ROWS):
                centre = 4000 + (0 if t < 8 else slope * (t - 7))
                block[t, centre - 1 : centre + 2] += power
            first = find_hits(dedoppler_profile(block, 8.5), 5.0, block)
            added += len(search_block(block, 8.5, 5.0)[1]) - len(first)
    assert 0 <= added <= 1


def test_mask_lines_zeroes_each_row_around_the_line():
    block = torch.ones(4, 40)
    masked = mask_lines(block, np.array([10.0]), np.array([6.0]), np.array([1.5]))
    assert torch.equal(block, torch.ones(4, 40))  # a copy
    for row, centre in enumerate([10, 12, 14, 16]):
        assert masked[row, centre - 1 : centre + 2].eq(0).all() and masked[row].eq(0).sum() == 3


def test_merged_spans_join_overlaps_and_clip_to_the_block():
    spans = merged_spans(np.array([50.0, -10.0, 20.0, 90.0]), np.array([70.0, 25.0, 30.0, 130.0]), 100)
    assert spans == [(0, 30), (50, 70), (90, 100)]


def test_two_signals_two_hits():
    block = add_line(noise(16384, seed=5), 3000, 5.0, power=5.0)
    block = add_line(block, 9000, -40.0, power=8.0)
    hits = sorted(find_hits(dedoppler_profile(block, 26.0), 9.0))
    assert len(hits) == 2 and abs(hits[0] - 3000) <= 2 and abs(hits[1] - 9000) <= 4


def test_pure_noise_gives_no_hit_at_ten_sigma():
    assert len(find_hits(dedoppler_profile(noise(65536, seed=6), 26.0), 10.0)) == 0


def test_tracks_meet_by_crossing_or_coming_close():
    starts, drifts, widths = np.array([10.0, 30.0, 30.0, 0.0]), np.array([0.0, -25.0, 5.0, 0.0]), np.ones(4)
    meets = tracks_meet(0.0, 20.0, 1.0, starts, drifts, widths, tol=1.0)
    assert meets.tolist() == [True, True, False, True]  # crosses, crosses, stays 15 away, starts together


def test_track_snr_ignores_interference_crossing_the_track():
    block = add_line(noise(4096, seed=7), 1000, 40.0, power=3.0)  # best SNR 12
    profile = dedoppler_profile(block, 26.0)
    level = profile.noise[2]  # the band of 4-channel boxcars
    quiet, _ = track_snr(block, 1000, 40.0, 4, level, 3, 4, robust=True)
    crossed = block.clone()
    crossed[:, 1020] += 40.0  # a bright zero-drift line the track crosses
    loud, _ = track_snr(crossed, 1000, 40.0, 4, level, 3, 4, robust=True)
    assert quiet > 8 and abs(loud - quiet) < 0.3 * quiet
    assert track_snr(crossed, 1000, 40.0, 4, level, 3, 4)[0] > 1.5 * quiet  # a plain sum takes the crossing in
    empty, _ = track_snr(noise(4096, seed=8), 1000, 40.0, 4, level, 3, 4, robust=True)
    assert empty < 5


# ----------------------------------------------------------------- events ---

CLOCKS = [ObservationClock(on=k % 2 == 0, t_start_s=k * 320.0, n_rows=ROWS, tsamp=TSAMP) for k in range(6)]


def cadence_blocks(signals, n_chans=8192, seed=10):
    """Six noise blocks with straight signals: (observations, start channel at t=0, channels/s, power)."""
    blocks = [noise(n_chans, seed=seed + k) for k in range(6)]
    for observations, start, rate, power in signals:
        for k in observations:
            clock = CLOCKS[k]
            add_line(blocks[k], start + rate * clock.t_start_s, rate * (ROWS - 1) * TSAMP, power)
    return blocks


def events_of(blocks, snr=10.0):
    profiles = [dedoppler_profile(b, 26.0) for b in blocks]
    hits = pd.concat(
        [
            pd.DataFrame(
                {"obs": k, "channel": h.astype(float), "drift": p.drift[h], "width": p.width[h], "snr": p.snr[h]}
            )
            for k, p in enumerate(profiles)
            for h in [find_hits(p, snr)]
        ],
        ignore_index=True,
    )
    return find_events(hits, CLOCKS, profiles, blocks, snr)


def test_a_needle_in_every_on_is_one_level_3_event():
    events = events_of(cadence_blocks([((0, 2, 4), 2000, 0.05, 4.0)]))
    assert len(events) == 1
    event = events.iloc[0]
    assert event.level == 3 and event.in_n_ons == 3 and event.n_hits == 3
    assert all(event[f"snr_obs{k}"] > 10 for k in (0, 2, 4))
    assert all(event[f"snr_obs{k}"] < 5 for k in (1, 3, 5))
    assert abs(event.channel_obs4 - (2000 + 0.05 * CLOCKS[4].t_start_s)) <= 2


def test_interference_in_all_six_is_vetoed():
    events = events_of(cadence_blocks([((0, 1, 2, 3, 4, 5), 3000, -0.04, 4.0)]))
    assert (events["level"] == 1).all() and len(events) >= 1


def test_crossing_interference_does_not_veto_a_needle():
    needle = ((0, 2, 4), 2000, 0.05, 4.0)
    rfi_line = ((0, 1, 2, 3, 4, 5), 2000 + 0.05 * 1100, 0.0, 60.0)  # zero drift, in the needle's way in obs 3
    events = events_of(cadence_blocks([needle, rfi_line]))
    moving = events[events["drift"] != 0]
    assert moving["level"].max() == 3


def test_crossing_interference_does_not_confirm_a_needle_either():
    """A needle in the second ON observation only; its track carried back to the first ON observation crosses a
    bright zero-drift line there (interference of the first two observations), whose power a plain sum along
    the track collects."""
    needle = ((2,), 2500, 0.08, 4.0)
    rfi_line = ((0, 1), 2511, 0.0, 60.0)
    blocks = cadence_blocks([needle, rfi_line])
    level = dedoppler_profile(blocks[0], 26.0).noise[1]
    drift = 0.08 * (ROWS - 1) * TSAMP
    assert track_snr(blocks[0], 2500, drift, 2, level, 8, 4)[0] > 10  # the crossing, summed
    moving = events_of(blocks).query("drift != 0")
    assert len(moving) == 1
    event = moving.iloc[0]
    assert event.level == 2 and event.in_n_ons == 1 and event.snr_obs0 < 5


def test_a_needle_is_never_one_signal_with_interference_its_hits_happen_to_line_up_with():
    """A slow needle in the first and last ON observations; a steep line in all six, placed where the mean of
    the two rates carries the needle's first hit to the line's hit in the last ON observation. Only one of the
    two is in the OFF observations, so they are not one signal: the needle stays an event of its own."""
    needle_rate, line_rate, t_last = 0.02, 0.3, CLOCKS[4].t_start_s
    half_line_s = (ROWS - 1) * TSAMP / 2
    meets = 2000 + (needle_rate + line_rate) / 2 * t_last - (line_rate - needle_rate) * half_line_s
    blocks = cadence_blocks(
        [((0, 4), 2000, needle_rate, 4.0), ((0, 1, 2, 3, 4, 5), meets - line_rate * t_last, line_rate, 4.0)]
    )
    events = events_of(blocks)
    assert (events["level"] >= 2).sum() == 1
    top = events[events["level"] >= 2].iloc[0]
    assert top.n_hits == 2 and abs(top.channel_obs0 - 2000) <= 2


def test_a_quadratic_path_is_one_event():
    blocks = [noise(8192, seed=20 + k) for k in range(6)]
    acceleration = 1e-4  # channels / s^2
    for k in (0, 2, 4):
        t0 = CLOCKS[k].t_start_s
        rate = 0.02 + acceleration * (t0 + (ROWS - 1) * TSAMP / 2)  # its rate mid-observation
        start = 3000 + 0.02 * t0 + acceleration * t0**2 / 2
        add_line(blocks[k], start, rate * (ROWS - 1) * TSAMP, 4.0)
    events = events_of(blocks)
    assert len(events) == 1 and events.iloc[0].n_hits == 3 and events.iloc[0].level == 3


def test_needle_in_one_on_is_level_2_and_zero_drift_makes_no_event():
    events = events_of(cadence_blocks([((2,), 2500, 0.08, 4.0), ((0, 2, 4), 6000, 0.0, 4.0)]))
    assert len(events) == 1
    assert events.iloc[0].level == 2 and events.iloc[0].in_n_ons == 1


# ---------------------------------------------------------------- windows ---


def test_best_line_per_window_takes_each_stretch_s_strongest_line():
    snr = np.array([1.0, 7.0, 2.0, 3.0, -np.inf, -np.inf, -np.inf, -np.inf, 0.5, 4.0], dtype=np.float32)
    profile = Profile(snr=snr, drift=np.zeros(10), width=np.ones(10, dtype=np.int64), noise=((0.0, 1.0),))
    assert best_line_per_window(profile, 4).tolist() == [1, 9]  # the unsearched stretch gives none
    free = np.ones(10, dtype=bool)
    free[[1, 8, 9]] = False
    assert best_line_per_window(profile, 4, free).tolist() == [3]  # the next best; none left in the last


def test_free_lines_pass_over_the_lines_crossing_a_known_track():
    n = 200
    drift = np.where(np.arange(n) < 100, 10.0, 0.0)  # lines from channels 0-99 drift 10 channels, the rest none
    profile = Profile(snr=np.ones(n), drift=drift, width=np.ones(n, dtype=np.int64), noise=((0.0, 1.0),))
    free = free_lines(profile, (np.array([50.0]), np.array([0.0]), np.array([1.0])))  # a still line at 50
    assert not free[38:53].any() and free[:37].all() and free[54:].all()  # lines from 40-50 cross it


def test_windows_show_the_model_a_needle_below_the_hit_threshold_and_skip_known_signals():
    """Every ON band is cut into windows; the window of a needle too faint for a hit is its own track, carried
    along the clock like an event's; a window meeting a hit (or an event's track) is left out; OFF bands give none."""
    bright, faint = ((0, 2, 4), 2000, 0.05, 4.0), ((0, 2, 4), 6000, -0.02, 2.0)  # SNR ~16 and ~8
    blocks = cadence_blocks([bright, faint])
    profiles = [dedoppler_profile(b, 26.0) for b in blocks]
    hits = pd.concat(
        [
            pd.DataFrame(
                {"obs": k, "channel": h.astype(float), "drift": p.drift[h], "width": p.width[h], "snr": p.snr[h]}
            )
            for k, p in enumerate(profiles)
            for h in [find_hits(p, 10.0)]
        ],
        ignore_index=True,
    )
    events = find_events(hits, CLOCKS, profiles, blocks, 10.0)
    assert len(events) == 1  # only the bright needle is an event
    windows = window_events(hits, events, profiles, CLOCKS, 256)
    assert list(windows.columns) == event_columns(6) and (windows["level"] == WINDOW_LEVEL).all()
    assert set(windows["obs"]) == {0, 2, 4}
    event = events.iloc[0]
    for k in (0, 2, 4):
        mine = windows[windows["obs"] == k]
        assert len(mine) == 8192 // 256  # one per window: beside the needle, the best line not crossing it
        bright_start = event[f"channel_obs{k}"]
        bright_drift = CLOCKS[int(event["obs"])].rate(event["drift"]) * (ROWS - 1) * TSAMP
        meets = tracks_meet(
            bright_start, bright_drift, event["width"], *mine[["channel", "drift", "width"]].T.values, 1
        )
        assert not meets.any()
        faint_here = 6000 - 0.02 * CLOCKS[k].t_start_s
        found = mine[abs(mine["channel"] - faint_here) <= 2]
        assert len(found) == 1 and abs(found["drift"].iloc[0] - (-0.02 * (ROWS - 1) * TSAMP)) <= 1.5
        assert found["snr"].iloc[0] < 10.0
        row = found.iloc[0]
        for j in range(6):
            assert row[f"channel_obs{j}"] == pytest.approx(
                carried_start(row["channel"], row["drift"], CLOCKS[k], CLOCKS[j])
            )
        assert abs(row["channel_obs4"] - (6000 - 0.02 * CLOCKS[4].t_start_s)) <= 3
