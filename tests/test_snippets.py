"""The snippet cutter (src/data/snippets.py): windows that follow a signal, frequency binned by the hit search's
boxcar, exact sums, zeros outside the block, and the boxcar rule pinned to the hit search itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.snippets import boxcar_width, cut_snippets, window_starts
from src.search.hits import dedoppler_profile, find_hits

ROWS = 16


def line_block(rate: float, start: float, snr_per_row: float = 8.0, chans: int = 8192, seed: int = 0) -> torch.Tensor:
    """Unit noise with a straight line of `rate` channels per row, its power spread over the channels it crosses
    in each row (as a spectrometer integrating a drifting tone records it)."""
    block = torch.randn(ROWS, chans, generator=torch.Generator().manual_seed(seed))
    for row in range(ROWS):
        low = int(np.floor(start + rate * row))
        spread = max(1, int(np.ceil(abs(rate))))
        first = low if rate >= 0 else low - spread + 1
        block[row, first : first + spread] += snr_per_row / np.sqrt(spread)
    return block


@pytest.mark.parametrize("rate", [0.3, 0.9, 1.6, 3.2, 7.0, 13.0])
def test_boxcar_rule_is_the_hit_search_width(rate):
    """The hit search reports the boxcar of boxcar_width(rate) for a straight line of that rate."""
    block = line_block(rate, 3000.0)
    profile = dedoppler_profile(block, 16.0)
    hits = find_hits(profile, 10.0)
    best = hits[np.argmax(profile.snr[hits])]
    assert profile.width[best] == boxcar_width(rate)
    assert abs(best - 3000) <= boxcar_width(rate)


def test_boxcar_width_values():
    assert boxcar_width([0.0, 1.0, 1.01, 2.0, -3.0, 4.0, 4.5]).tolist() == [1, 1, 2, 2, 4, 4, 8]


@pytest.mark.parametrize("rate", [-0.8, 0.5, 2.5, -6.0, 11.0])
def test_a_line_cut_along_its_hit_stays_centred_and_moves_at_most_about_a_pixel_per_row(rate):
    block = line_block(rate, 4000.0, snr_per_row=30.0)
    profile = dedoppler_profile(block, 16.0)
    hits = find_hits(profile, 10.0)
    best = hits[np.argmax(profile.snr[hits])]
    width = int(profile.width[best])
    snippet = cut_snippets(
        [block] * 6, np.full((1, 6), float(best)), np.full((1, 6), float(profile.drift[best])), [width]
    )
    peaks = snippet[0].argmax(dim=-1).float()  # (6, rows)
    assert snippet.shape == (1, 6, ROWS, 256)
    assert (peaks - 128).abs().max() <= 12
    assert (peaks[:, 1:] - peaks[:, :-1]).abs().max() <= 2
    assert float(snippet[0].max(dim=-1).values.mean()) > 8  # the line's power is gathered, not smeared


def test_pixels_are_scaled_sums_of_fine_channels_and_zero_outside_the_block():
    block = torch.randn(ROWS, 600, generator=torch.Generator().manual_seed(1))
    starts = np.array([[100.0, -50.0, 580.0]])
    drifts = np.array([[4.0, 0.0, -8.0]])
    width, n_channels = 2, 64
    snippet = cut_snippets([block] * 3, starts, drifts, [width], n_channels)[0].double()
    first = window_starts(starts, drifts, np.array([width]), [ROWS] * 3, n_channels)[0]
    for k in range(3):
        for pixel in range(n_channels):
            low = first[k] + pixel * width
            if low < 0 or low + width > block.shape[1]:
                assert float(snippet[k, :, pixel].abs().max()) == 0.0
            else:
                expected = block[:, low : low + width].double().sum(dim=1) / np.sqrt(width)
                torch.testing.assert_close(snippet[k, :, pixel], expected, rtol=1e-6, atol=1e-6)


def test_window_is_centred_mid_observation():
    """A window is centred where the signal is at the middle of its observation: start + drift / 2."""
    first = window_starts(np.array([[1000.0]]), np.array([[30.0]]), np.array([2]), [ROWS], 256)
    assert first[0, 0] == 1015 - 256


def test_noise_stays_unit_noise_whatever_the_boxcar():
    block = torch.randn(ROWS, 40000, generator=torch.Generator().manual_seed(2))
    for width in (1, 4, 16):
        snippet = cut_snippets([block], np.array([[20000.0]]), np.zeros((1, 1)), [width])
        assert 0.9 < float(snippet.std()) < 1.1


def test_bad_shapes_are_refused():
    block = torch.zeros(ROWS, 512)
    with pytest.raises(ValueError, match="equal rows"):
        cut_snippets([block, torch.zeros(ROWS + 1, 512)], np.zeros((1, 2)), np.zeros((1, 2)), [1])
    with pytest.raises(ValueError, match="expected"):
        cut_snippets([block, block], np.zeros((1, 3)), np.zeros((1, 3)), [1])
    assert cut_snippets([block] * 6, np.zeros((0, 6)), np.zeros((0, 6)), [], 32).shape == (0, 6, ROWS, 32)
