"""Tests for src/models/track_evidence.py: the tracks searched, their sums as SNRs, the features that tell a needle
from a chance hit and from interference, and the classifier built with them."""

from __future__ import annotations

import math

import pytest
import torch

from src.core.config import ConfigError
from src.models.classifier import build_model
from src.models.track_evidence import (
    CENTRE_OFFSETS,
    DRIFT_STEPS,
    MAX_PIXELS_PER_ROW,
    N_FEATURES,
    track_columns,
    track_features,
    track_medians,
    track_pixels,
    track_sums,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS, CHANNELS = 16, 64


def with_track(images: torch.Tensor, observations, level: float, drift: float, offset: int = 0) -> torch.Tensor:
    """Add a straight track of `level` per pixel through the centre (plus `offset`) of the given observations."""
    t = torch.arange(ROWS) - (ROWS - 1) / 2
    columns = (CHANNELS // 2 + offset + drift * t).round().long()
    for o in observations:
        images[:, o, torch.arange(ROWS), columns] += level
    return images


def test_tracks_cross_the_centre_at_every_drift_and_offset():
    columns = track_columns(ROWS, CHANNELS)
    assert columns.shape == (len(CENTRE_OFFSETS) * DRIFT_STEPS, ROWS)
    still = columns[(columns == columns[:, :1]).all(dim=1)]  # the zero-drift tracks (and those within rounding of it)
    assert sorted(set(still[:, 0].tolist())) == [CHANNELS // 2 + o for o in CENTRE_OFFSETS]
    middle = columns[:, ROWS // 2 - 1 : ROWS // 2 + 1].float().mean(dim=1)
    assert float((middle - CHANNELS // 2).abs().max()) <= max(CENTRE_OFFSETS) + MAX_PIXELS_PER_ROW
    span = (columns[:, -1] - columns[:, 0]).abs()
    assert abs(int(span.max()) - MAX_PIXELS_PER_ROW * (ROWS - 1)) <= 1  # the steepest drift searched (rounded)
    assert int(columns.min()) >= 0 and int(columns.max()) < CHANNELS


def test_a_track_sum_is_the_snr_of_a_line_on_unit_noise():
    noise = torch.randn(2000, 6, ROWS, CHANNELS, generator=torch.Generator().manual_seed(0))
    sums = track_sums(track_pixels(noise, track_columns(ROWS, CHANNELS)))
    assert float(sums.std()) == pytest.approx(1.0, rel=0.05)  # unit noise gives unit-variance sums
    lit = with_track(torch.zeros(1, 6, ROWS, CHANNELS), [0], 0.5, 0.625, 1)
    lit = track_sums(track_pixels(lit, track_columns(ROWS, CHANNELS)))
    assert float(lit[0, 0].max()) == pytest.approx(0.5 * math.sqrt(ROWS))  # the exact track is among those searched
    assert float(lit[0, 1:].abs().max()) == 0


def test_a_track_median_gives_a_steady_line_its_snr_and_ignores_a_few_bright_pixels():
    steady = torch.full((1, 1, 1, ROWS), 0.5)
    assert float(track_medians(steady)) == pytest.approx(0.5 * math.sqrt(ROWS))
    crossed = torch.zeros(1, 1, 1, ROWS)
    crossed[..., 5:8] = 40.0  # a bright line crossing the track for three rows
    assert float(track_sums(crossed)) == pytest.approx(120 / math.sqrt(ROWS))
    assert float(track_medians(crossed)) == 0
    odd = torch.arange(5.0).reshape(1, 1, 1, 5)
    assert float(track_medians(odd)) == pytest.approx(2 * math.sqrt(5))  # an odd count: the middle pixel
    noise = torch.randn(4000, 1, 1, ROWS, generator=torch.Generator().manual_seed(2))
    assert abs(float(track_medians(noise).mean())) < 0.05  # no bias from an even count's two middle pixels


def test_features_tell_a_needle_from_a_chance_hit_and_from_interference():
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(3, 6, ROWS, CHANNELS, generator=generator)
    needle = with_track(noise[0:1].clone(), [0, 2, 4], 2.5, -0.7)  # SNR 10 in every ON observation
    chance = with_track(noise[1:2].clone(), [2], 2.5, -0.7)  # SNR 10 in one of them
    interference = with_track(noise[2:3].clone(), range(6), 2.5, 0.4)  # in all six
    features = track_features(track_pixels(torch.cat([needle, chance, interference]), track_columns(ROWS, CHANNELS)))
    assert features.shape == (3, N_FEATURES)
    strongest, common, along = features[:, :6], features[:, 6], features[:, 7:13]
    robust_common, robust_along = features[:, 13], features[:, 14:]
    assert float(strongest[0, [0, 2, 4]].min()) > 6 and float(strongest[0, [1, 3, 5]].max()) < 4.5
    assert float(common[0]) > 14 and float(common[1]) < 10  # ~10 sqrt(3) for the needle, ~10 / sqrt(3) + noise
    assert float(along[0, [0, 2, 4]].min()) > 6  # the common track is the needle's
    assert float(strongest[2].min()) > 6  # interference is as strong in the OFF observations
    assert float(along[2, [1, 3, 5]].min()) > 6
    assert float(robust_common[0]) > 14 and float(robust_common[1]) < 10  # medians tell them apart the same way
    assert float(robust_along[0, [0, 2, 4]].min()) > 6 and float(robust_along[2, [1, 3, 5]].min()) > 6


def test_a_line_crossing_a_needle_moves_its_sums_not_its_medians():
    """A bright line across the window in all six observations, crossing the needle's track: the OFF tracks'
    sums light up where it crosses, their medians stay at the noise's, and the ON medians keep the needle's."""
    noise = torch.randn(1, 6, ROWS, CHANNELS, generator=torch.Generator().manual_seed(3))
    needle = with_track(noise, [0, 2, 4], 2.5, -0.7)
    crossing = needle.clone()
    t = torch.arange(ROWS)  # a line of 3 pixels a row, steeper than any track searched, crossing the centre
    crossing[:, :, t, (CHANNELS // 2 - 24 + 3 * t).clamp(0, CHANNELS - 1)] += 30.0
    clean, crossed = track_features(track_pixels(torch.cat([needle, crossing]), track_columns(ROWS, CHANNELS)))
    off = [7 + 1, 7 + 3, 7 + 5]
    robust_off = [14 + 1, 14 + 3, 14 + 5]
    assert float((crossed[off] - clean[off]).max()) > 5  # the line lights up the sum along an OFF track
    assert float((crossed[robust_off] - clean[robust_off]).abs().max()) < 1.5  # the median barely moves
    assert float(crossed[[14, 14 + 2, 14 + 4]].min()) > 6  # the needle's ON medians stay


def test_the_classifier_with_track_evidence_scores_snippets_and_the_default_is_unchanged(make_cfg):
    geometry = {"view": "channels", "window": "follows_drift", "observation_shape": (ROWS, CHANNELS)}
    model = build_model(make_cfg(model_name="resnet10t", track_evidence=True, **geometry)).eval()
    plain = build_model(make_cfg(model_name="resnet10t", **geometry)).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 6, ROWS, CHANNELS))["logits"].shape == (3,)
    keys = set(model.state_dict())
    assert any(k.startswith("evidence.") for k in keys) and "head.1.weight" in keys
    assert not any(k.startswith(("evidence.", "head.")) for k in plain.state_dict())  # old checkpoints still load
    gem = build_model(make_cfg(model_name="resnet10t", track_evidence=True, pool="gem", **geometry)).eval()
    with torch.no_grad():
        assert gem(torch.randn(2, 6, ROWS, CHANNELS))["logits"].shape == (2,)


@pytest.mark.parametrize(
    "fields",
    [{"view": "on"}, {"view": "channels", "window": "fixed"}, {"view": "channels", "image_size": (32, 64)}],
)
def test_track_evidence_needs_centred_scan_snippets(make_cfg, fields):
    geometry = {"view": "channels", "window": "follows_drift", "observation_shape": (ROWS, CHANNELS)}
    with pytest.raises(ConfigError, match="track_evidence"):
        make_cfg(track_evidence=True, **{**geometry, **fields})
