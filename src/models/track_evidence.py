"""Track evidence: the matched-filter sums of straight tracks through the centre of a scan snippet, handed to the
classifier's head beside the backbone's features (Config.track_evidence).

A scan snippet (`window: follows_drift`) is centred on its candidate at every observation's middle row, and the
candidate moves at most about one pixel a row there. Whether it is a needle turns on how strong a straight track
through that centre is in each observation: in every ON observation for a needle, in one for a chance hit of the
search, in the OFF ones too for interference. A small network learns such a sum only approximately at SNR 5, where
the scan's false events are; here it is computed exactly, over the drifts and centre offsets a snippet allows, on
the normalised input (unit noise per observation), so each sum is an SNR.

Each track is also measured by its pixels' median (times sqrt(rows), the same SNR scale for a steady line), as the
scan's cadence filter measures OFF observations: interference crossing a needle's track lights a few of its pixels
and moves its sum, not its median, so a needle with a line across it still shows a clean OFF track and a full ON
one, and a line through one ON window cannot pose as the track common to all three.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from src.core.cadence import ALL_OBSERVATIONS, ON_OBSERVATIONS

MAX_PIXELS_PER_ROW = 1.25  # drifts searched, +- pixels per row: the scan's windows follow up to 1, plus its error
DRIFT_STEPS = 41  # drifts searched between the extremes: 1/16 pixel a row apart, a quarter pixel at the ends
CENTRE_OFFSETS = (-2, -1, 0, 1, 2)  # pixels off the window's centre searched: the candidate's position error
N_FEATURES = len(ALL_OBSERVATIONS) + 2 * (1 + len(ALL_OBSERVATIONS))  # track_features: strongest, two common tracks
FEATURE_SCALE = 0.1  # SNRs of ~10 enter the head at ~1
HIDDEN = 64


def track_columns(rows: int, channels: int) -> torch.Tensor:
    """(tracks, rows) pixel column of every searched straight track at every row: through the window's centre
    (channels // 2) plus an offset at the middle row, at each drift; clamped to the window."""
    drifts = torch.linspace(-MAX_PIXELS_PER_ROW, MAX_PIXELS_PER_ROW, DRIFT_STEPS)
    offsets = torch.tensor(CENTRE_OFFSETS, dtype=torch.float32)
    t = torch.arange(rows, dtype=torch.float32) - (rows - 1) / 2
    columns = channels // 2 + offsets[:, None, None] + drifts[None, :, None] * t[None, None, :]
    return columns.round().clamp(0, channels - 1).long().reshape(-1, rows)


def track_pixels(images: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """(B, n_obs, rows, channels) normalised snippets -> (B, n_obs, tracks, rows): each track's pixels."""
    rows = torch.arange(columns.shape[1], device=images.device).expand_as(columns)
    return images[:, :, rows, columns.to(images.device)].float()


def track_sums(pixels: torch.Tensor) -> torch.Tensor:
    """(B, n_obs, tracks, rows) -> (B, n_obs, tracks): each track's sum over the rows divided by sqrt(rows) (an
    SNR on unit noise)."""
    return pixels.sum(dim=-1) / math.sqrt(pixels.shape[-1])


def track_medians(pixels: torch.Tensor) -> torch.Tensor:
    """(B, n_obs, tracks, rows) -> (B, n_obs, tracks): each track's median pixel (the mean of the middle two for
    an even count) times sqrt(rows): a steady line's SNR, as its sum gives it, unmoved by a few bright pixels."""
    ordered = pixels.sort(dim=-1).values
    rows = pixels.shape[-1]
    middle = ordered[..., (rows - 1) // 2 : rows // 2 + 1].mean(dim=-1)
    return middle * math.sqrt(rows)


def common_track(sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 6, tracks) -> the strongest track common to the ON observations (their values added, over
    sqrt(3)) and every observation's value along it: (B,), (B, 6)."""
    common = sums[:, list(ON_OBSERVATIONS)].sum(dim=1) / math.sqrt(len(ON_OBSERVATIONS))
    best, index = common.max(dim=-1)
    return best, sums.gather(2, index[:, None, None].expand(-1, sums.shape[1], 1))[..., 0]


def track_features(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 6, tracks, rows) -> (B, N_FEATURES): every observation's strongest track sum; the strongest track
    common to the ON observations by sums and every observation's sum along it; the strongest common track by
    medians and every observation's median along that one."""
    sums, medians = track_sums(pixels), track_medians(pixels)
    best, along = common_track(sums)
    robust_best, robust_along = common_track(medians)
    return torch.cat([sums.amax(dim=-1), best[:, None], along, robust_best[:, None], robust_along], dim=1)


class TrackEvidence(nn.Module):
    """Snippets (B, 6, rows, channels) -> (B, HIDDEN) features of their central tracks' sums and medians."""

    def __init__(self, rows: int, channels: int) -> None:
        super().__init__()
        self.register_buffer("columns", track_columns(rows, channels), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(N_FEATURES, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, HIDDEN), nn.GELU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = track_features(track_pixels(images, self.columns)) * FEATURE_SCALE
        return self.mlp(features.to(self.mlp[0].weight.dtype))
