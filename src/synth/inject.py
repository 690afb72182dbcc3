"""On-the-fly signal injection: fresh drifting narrowband signals added to training batches on the device.

Every batch draws new paths (linear, quadratic, sinusoidal or pulsed), widths and SNRs, so the model never
sees the same signal twice. A signal is drawn the way the generator draws one (src/synth/generator.py), in the same
units: setigen's SNR is that of the time-summed spectrum of one observation, so its per-pixel peak is
snr * noise_std / sqrt(rows); the noise std is measured on each observation of the cadence itself. Rows and
channels are the batch's own (Kaggle's 273 x 256, or a run's `observation_shape`).

- a needle goes into the ON observations only and makes the sample a positive (`add_needles`);
- interference goes into all six observations and leaves the label alone (`add_interference`): drawn
  like a needle, often with the near-zero drift of terrestrial RFI, it is the negative that only the OFF
  observations tell apart from a needle - the crux of the task - made fresh every batch.

Two options mirror the generator's (both off by default, and then nothing extra is drawn from the batch's
generator, so runs without them replay the same batches):

- `partial_probability` (Config.inject_partial_prob): that share of the injected needles is present in only part
  of the cadence, as the generator's `partial_share` makes them (PARTIAL_KINDS): `leaves_window` (a steep path,
  not flattened to fit, crossing a band edge at a random ON row: entering or leaving), `switches` (on late, off
  early, or a burst, over the ON rows) or `subset` (in one or two ON observations). Always absent from the OFF
  observations; label 1.
- `wide` (Config.inject_rfi_wide): interference drawn as widely as needles, as the generator's `wide_rfi`: a
  quarter (not half) of it nearly still, a sixth `wide` (RFI_WIDE_CHANNELS) and a sixth `fading` (one or two OFF
  observations at RFI_FAINT_LEVEL, the others at RFI_STEADY_LEVEL, interpolated between observation centres).

Where a path runs depends on how the data's frequency windows were cut (`window`, the run's Config.window):

- `fixed` (Kaggle): the same channels in all six observations; a signal follows one continuous path across
  the cadence (the telescope slews between observations), with the generator's parameters in channels and
  rows of the Kaggle frame;
- `follows_drift` (snippets cut around scan candidates): each observation's window is centred where the
  candidate is at that observation, so the signal restarts near the same channel in every observation (a
  common start plus a jitter of up to POSITION_JITTER_CHANNELS, the candidate's position error) and moves
  within it at most MAX_FOLLOWED_DRIFT channels per row (the scan bins frequency by the candidate's boxcar).
  An injected needle is the candidate itself, so its path crosses the window's centre at each observation's
  middle row (within the jitter), where the scan centres a snippet on its candidate: the label speaks of the
  signal at the centre, and a needle elsewhere in the window is not a positive (the snippet synth's
  `needle_aside` negatives hold one). Injected interference lies anywhere in the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from src.core.cadence import ALL_OBSERVATIONS, CADENCE_SHAPE, DF_HZ, DT_S, OFF_OBSERVATIONS, ON_OBSERVATIONS
from src.synth.generator import (
    EDGE_MARGIN,
    F_PROFILES,
    LEAVING_DRIFT,
    MIN_VISIBLE_ROWS,
    NEAR_ZERO_DRIFT,
    PARTIAL_KINDS,
    PULSE_DUTY,
    PULSE_PERIOD_ROWS,
    QUADRATIC_BEND_CHANNELS,
    RFI_FAINT_LEVEL,
    RFI_NEAR_ZERO_SHARE,
    RFI_STEADY_LEVEL,
    RFI_VARIANTS,
    RFI_WIDE_CHANNELS,
    SINE_AMPLITUDE_CHANNELS,
    SINE_DRIFT_SCALE,
    SINE_PERIOD_OBSERVATIONS,
    WIDTH_CHANNELS,
    SynthConfig,
)

N_TIME, N_FREQ = CADENCE_SHAPE[1:]  # Kaggle's; the functions here take the batch's own rows and channels
SLEW_ROWS = 1  # about one 18 s row between observations (synth's t_slew of 20 s)
MAX_DRIFT_CHANNELS_PER_ROW = SynthConfig.max_drift * DT_S / DF_HZ  # the generator's default largest drift
INJECTED_SHAPES = ("linear", "quadratic", "sine", "pulsed")
SINC2_HALF_MAXIMUM = 0.442946470689452  # sinc(x)^2 = 1/2 at this x (setigen's FWHM of a sinc squared)
WINDOWS = ("fixed", "follows_drift")  # how the data's frequency windows were cut (Config.window)
MAX_FOLLOWED_DRIFT = 1.0  # follows_drift: channels per row at most, the linear drift drawn uniform in +-this
POSITION_JITTER_CHANNELS = 2.0  # follows_drift: each observation's start, uniform within +-this of a common one


def draw_uniform(n: int, bounds: Sequence[float], generator: torch.Generator | None) -> torch.Tensor:
    """n draws, uniform in [low, high), from the batch's generator (on the CPU: the same on any device)."""
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=generator)


def check_window(window: str) -> None:
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")


def edge_margin(n_channels: int) -> int:
    """Channels kept free at each band edge: the generator's EDGE_MARGIN, less in a band too narrow for it."""
    return min(EDGE_MARGIN, (n_channels - 1) // 4)


def observation_rows(observation_ids: Sequence[int], device: torch.device, n_rows: int = N_TIME) -> torch.Tensor:
    """(n_obs, n_rows) cadence-time row index of every row of the given observations."""
    start = torch.tensor([o * (n_rows + SLEW_ROWS) for o in observation_ids], dtype=torch.float32, device=device)
    return start[:, None] + torch.arange(n_rows, dtype=torch.float32, device=device)[None]


def needle_paths(
    n: int,
    rows: torch.Tensor,
    fit: torch.Tensor,
    generator: torch.Generator,
    shape: torch.Tensor,
    near_zero: bool = False,
    n_channels: int = N_FREQ,
    window: str = "fixed",
    leaving: torch.Tensor | None = None,
    near_zero_share: float = 0.5,
    centred: bool = False,
) -> torch.Tensor:
    """(n, n_obs, rows) channel of the signal's centre at every row (of `rows`, from `observation_rows`) in a
    band of `n_channels`: a drift (plus curvature or a sine for the quadratic and sine shapes, indices into
    INJECTED_SHAPES; pulsed paths are linear), with the generator's parameter ranges (src/synth/generator.py; a
    sine's phase is drawn here, where the generator starts it at zero). Over the observations marked in `fit`
    the path stays inside the band: one that would span more channels than the band holds is flattened to fit,
    then its start is drawn. `near_zero` gives half of the paths the small drift of RFI.

    `window` fixed: one continuous path across the cadence. follows_drift: within each observation the path is
    drift * row (drift uniform in +-MAX_FOLLOWED_DRIFT channels per row), plus the bend and the sine measured from
    that observation's first row, flattened where it would move more than MAX_FOLLOWED_DRIFT channels in a row;
    each observation's path starts at the common start plus its own jitter (uniform in
    +-POSITION_JITTER_CHANNELS). `centred` (follows_drift): the path is the candidate's own, so it crosses the
    band's centre at each observation's middle row (plus the jitter), where the scan's snippet is centred.

    `near_zero_share`: the share of near_zero paths given the small drift. `leaving` (fixed window; a mask of the
    n paths, or None to draw nothing more): those paths are steep (|drift| rescaled into LEAVING_DRIFT of the
    largest), never flattened, and cross a band edge (either, drawn) at a random row of the `fit` observations
    at least min(MIN_VISIBLE_ROWS, a quarter of them) from their ends: they enter or leave the band there."""
    check_window(window)
    follows = window == "follows_drift"

    def uniform(low: float, high: float) -> torch.Tensor:
        return draw_uniform(n, (low, high), generator)

    n_obs, n_rows = rows.shape
    span = 6 * (n_rows + SLEW_ROWS)
    sine = shape == INJECTED_SHAPES.index("sine")
    largest = MAX_FOLLOWED_DRIFT if follows else MAX_DRIFT_CHANNELS_PER_ROW
    drift = uniform(-largest, largest)
    if near_zero:
        drift = torch.where(torch.rand(n, generator=generator) < near_zero_share, drift * NEAR_ZERO_DRIFT, drift)
    if leaving is not None:  # the same draw, rescaled: |drift| from [0, 1] to LEAVING_DRIFT of the largest
        low, high = LEAVING_DRIFT
        steep = torch.sign(drift) * (low * largest + (high - low) * drift.abs())
        drift = torch.where(leaving, steep, drift)
    drift = torch.where(sine, drift * SINE_DRIFT_SCALE, drift)
    bend = uniform(*QUADRATIC_BEND_CHANNELS) * torch.sign(uniform(-1, 1))
    bend = torch.where(shape == INJECTED_SHAPES.index("quadratic"), bend, torch.zeros(n))
    amplitude = torch.where(sine, uniform(*SINE_AMPLITUDE_CHANNELS), torch.zeros(n))
    period = n_rows * torch.exp(uniform(*(math.log(p) for p in SINE_PERIOD_OBSERVATIONS)))
    phase = uniform(0, 2 * math.pi)
    t = (rows - rows[:, :1] if follows else rows).reshape(-1).cpu()  # follows_drift: rows within the observation
    offset = (
        drift[:, None] * t
        + bend[:, None] * (t / span) ** 2
        + amplitude[:, None] * torch.sin(2 * math.pi * t / period[:, None] + phase[:, None])
    )
    if follows:
        offset = offset.reshape(n, n_obs, n_rows)
        if centred:  # from the middle row (the mean of the two middle rows for an even count)
            origin = offset[..., (n_rows - 1) // 2 : n_rows // 2 + 1].mean(dim=-1, keepdim=True)
        else:  # from the first row
            origin = offset[..., :1]
        offset = offset - origin  # each observation's path from a common point
        steepest = (offset[..., 1:] - offset[..., :-1]).abs().amax(dim=(1, 2)).clamp(min=1e-12)
        offset = offset * (MAX_FOLLOWED_DRIFT / steepest).clamp(max=1.0)[:, None, None]
        jitter = draw_uniform(n * n_obs, (-POSITION_JITTER_CHANNELS, POSITION_JITTER_CHANNELS), generator)
        offset = (offset + jitter.reshape(n, n_obs, 1)).reshape(n, -1)
    fitted = offset[:, fit.repeat_interleave(n_rows).cpu()]
    margin = edge_margin(n_channels)
    band = n_channels - 1 - 2 * margin
    flatten = (band / (fitted.max(dim=1).values - fitted.min(dim=1).values)).clamp(max=1.0)[:, None]
    if leaving is not None:
        flatten = torch.where(leaving[:, None], torch.ones(()), flatten)
    offset, fitted = offset * flatten, fitted * flatten
    low = margin - fitted.min(dim=1).values
    high = n_channels - 1 - margin - fitted.max(dim=1).values
    start = low + (high - low).clamp(min=0) * torch.rand(n, generator=generator)
    if follows and centred:
        start = torch.full_like(start, n_channels / 2)
    if leaving is not None:
        n_fit = fitted.shape[1]
        keep = min(MIN_VISIBLE_ROWS, n_fit // 4)
        cross = (keep + (n_fit - 2 * keep) * torch.rand(n, generator=generator)).long().clamp(max=n_fit - 1)
        edge = torch.where(torch.rand(n, generator=generator) < 0.5, 0.0, float(n_channels - 1))
        crossing = edge - fitted.gather(1, cross[:, None])[:, 0]
        start = torch.where(leaving, crossing, start)
    return (start[:, None] + offset).reshape(n, *rows.shape)


def pulse_trains(n: int, rows: torch.Tensor, pulsed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(n, n_obs, rows) intensity of each signal at every row: 1, or for `pulsed` ones an on/off square train
    with the generator's pulse periods (4-60 rows) and duty cycles (0.3-0.7)."""
    period = draw_uniform(n, PULSE_PERIOD_ROWS, generator)
    duty = draw_uniform(n, PULSE_DUTY, generator)
    phase = period * torch.rand(n, generator=generator)
    t = rows.reshape(1, -1).cpu()
    on = torch.remainder(t - phase[:, None], period[:, None]) < (duty * period)[:, None]
    return torch.where(pulsed[:, None], on.float(), torch.ones(())).reshape(n, *rows.shape)


def spectral_profiles(offset: torch.Tensor, fwhm: torch.Tensor, sinc2: torch.Tensor) -> torch.Tensor:
    """Peak-1 spectral profiles of the generator's two kinds, at `offset` channels from each signal's centre
    (n, ...): a Gaussian of that FWHM, or (where `sinc2`) setigen's sinc squared of that FWHM cut at its
    first zeros."""
    shape = (-1,) + (1,) * (offset.ndim - 1)
    sigma = (fwhm / (2 * math.sqrt(2 * math.log(2)))).reshape(shape)
    gaussian = torch.exp(-0.5 * (offset / sigma) ** 2)
    first_zero = (fwhm / 2 / SINC2_HALF_MAXIMUM).reshape(shape)
    main_lobe = torch.where(offset.abs() < first_zero, torch.sinc(offset / first_zero) ** 2, torch.zeros(()))
    return torch.where(sinc2.reshape(shape), main_lobe, gaussian)


def partial_presence(
    n: int,
    rows: torch.Tensor,
    on: torch.Tensor,
    kind: torch.Tensor,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(n, n_obs, rows) 1/0 presence of partial needles (`kind`: indices into PARTIAL_KINDS, -1 for a whole
    needle) over the observations of `rows` marked `on` (the ON ones): `switches` keeps a window of the ON rows
    (on late, off early or a burst: MODES as the generator's, at least min(MIN_VISIBLE_ROWS, a quarter of the ON
    rows) lit and as many dark), `subset` keeps one or two of the ON observations; every other row is 1
    (`leaves_window` leaves through its path, see `needle_paths`). Draws the same numbers whatever `kind` holds."""
    n_obs, n_rows = rows.shape
    n_on = int(on.sum())
    total = n_on * n_rows
    keep = min(MIN_VISIBLE_ROWS, total // 4)
    mode = torch.randint(3, (n,), generator=generator)  # on_late, off_early, burst
    a, b = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    first = torch.where(mode == 1, torch.zeros(n), keep + a * (total - 2 * keep))
    last = torch.where(
        mode == 0,
        torch.full((n,), float(total)),
        torch.where(mode == 1, keep + b * (total - 2 * keep), first + keep + b * (total - first - keep)),
    )
    position = torch.zeros(n_obs, n_rows)  # each ON row's index among the ON rows, in time order
    position[on.cpu()] = torch.arange(total, dtype=torch.float32).reshape(n_on, n_rows)
    lit = (position[None] >= first.floor()[:, None, None]) & (position[None] < last.floor()[:, None, None])
    score = torch.rand(n, n_on, generator=generator)  # subset: the k lowest scores are kept
    k = 1 + (torch.rand(n, generator=generator) < 0.5).long()
    kept_on = score.argsort(dim=1).argsort(dim=1) < k[:, None]
    kept = torch.ones(n, n_obs, dtype=torch.bool)
    kept[:, on.cpu()] = kept_on
    switches, subset = kind == PARTIAL_KINDS.index("switches"), kind == PARTIAL_KINDS.index("subset")
    presence = torch.ones(n, n_obs, n_rows)
    presence = torch.where(switches[:, None, None], lit.float(), presence)
    return torch.where(subset[:, None, None], kept[..., None].float().expand(-1, -1, n_rows), presence)


def fading_levels(n: int, rows: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(n, n_obs, rows) level of fading interference: one or two OFF observations at RFI_FAINT_LEVEL, the others
    at RFI_STEADY_LEVEL, interpolated linearly in time between the observations' centres (held before the first
    and after the last), as the generator's `fading` interference."""
    n_rows = rows.shape[1]
    levels = draw_uniform(n * 6, RFI_STEADY_LEVEL, generator).reshape(n, 6)
    faint = draw_uniform(n * 3, RFI_FAINT_LEVEL, generator).reshape(n, 3)
    score = torch.rand(n, 3, generator=generator)
    k = 1 + (torch.rand(n, generator=generator) < 0.5).long()
    is_faint = score.argsort(dim=1).argsort(dim=1) < k[:, None]
    off = list(OFF_OBSERVATIONS)
    levels[:, off] = torch.where(is_faint, faint, levels[:, off])
    step = n_rows + SLEW_ROWS
    centre0 = (n_rows - 1) / 2
    t = rows.reshape(-1).cpu()
    segment = ((t - centre0) / step).floor().clamp(0, 4).long()
    weight = ((t - centre0 - segment * step) / step).clamp(0, 1)
    level = levels[:, segment] * (1 - weight) + levels[:, segment + 1] * weight
    return level.reshape(n, *rows.shape)


def add_signals(
    observations: torch.Tensor,
    chosen: torch.Tensor,
    observation_ids: Sequence[int],
    present: Sequence[int],
    snr_range: Sequence[float],
    generator: torch.Generator | None,
    near_zero: bool = False,
    window: str = "fixed",
    partial_probability: float = 0.0,
    wide: bool = False,
    centred: bool = False,
) -> None:
    """Add, in place, one fresh signal to each `chosen` sample of a float32 (B, n_obs, rows, channels) batch, in
    the observations listed in `present` (cadence indices) and kept inside the band there, on a path for the
    data's `window` (see `needle_paths`). `partial_probability`: that share is present in only part of them
    (`partial_presence`, `needle_paths`' leaving; under follows_drift, whose windows follow the signal, a leaving
    one is a subset one); `wide`: drawn as widely as needles, with wide and fading ones (see the module's
    docstring). Neither draws anything when off. `centred`: the signal is the candidate (`needle_paths`)."""
    check_window(window)
    n = int(chosen.sum())
    if n == 0:
        return
    device = observations.device
    n_rows, n_channels = observations.shape[-2:]
    rows = observation_rows(observation_ids, device, n_rows)
    holds = torch.tensor([o in present for o in observation_ids], device=device)
    shape = torch.randint(len(INJECTED_SHAPES), (n,), generator=generator)
    leaving, kind = None, None
    if partial_probability > 0:
        partial = torch.rand(n, generator=generator) < partial_probability
        kind = torch.where(partial, torch.randint(len(PARTIAL_KINDS), (n,), generator=generator), -1)
        if window == "follows_drift":
            kind = torch.where(kind == PARTIAL_KINDS.index("leaves_window"), PARTIAL_KINDS.index("subset"), kind)
        leaving = kind == PARTIAL_KINDS.index("leaves_window")
    near_zero_share = RFI_NEAR_ZERO_SHARE * 0.5 if wide else 0.5
    centre = needle_paths(
        n, rows, holds, generator, shape, near_zero, n_channels, window, leaving, near_zero_share, centred
    )  # (n, n_obs, rows)
    centre = centre.to(device)
    intensity = pulse_trains(n, rows, shape == INJECTED_SHAPES.index("pulsed"), generator).to(device)
    if kind is not None:
        intensity = intensity * partial_presence(n, rows, holds, kind, generator).to(device)
    low, high = math.log(snr_range[0]), math.log(snr_range[1])
    snr = torch.exp(low + (high - low) * torch.rand(n, generator=generator)).to(device)
    fwhm = draw_uniform(n, WIDTH_CHANNELS, generator)
    sinc2 = torch.rand(n, generator=generator) < 1 / len(F_PROFILES)
    if wide:
        variant = torch.randint(len(INJECTED_SHAPES) + len(RFI_VARIANTS), (n,), generator=generator)
        is_wide = variant == len(INJECTED_SHAPES) + RFI_VARIANTS.index("wide")
        fwhm = torch.where(is_wide, draw_uniform(n, RFI_WIDE_CHANNELS, generator), fwhm)
        fading = variant == len(INJECTED_SHAPES) + RFI_VARIANTS.index("fading")
        fade = fading_levels(n, rows, generator)
        intensity = intensity * torch.where(fading[:, None, None], fade, torch.ones(())).to(device)
    channels = torch.arange(n_channels, dtype=torch.float32, device=device)
    profile = spectral_profiles(channels - centre[..., None], fwhm.to(device), sinc2.to(device))
    chosen = chosen.to(device)
    selected = observations[chosen]
    noise_std = selected.std(dim=(-2, -1), keepdim=True)
    level = snr[:, None, None, None] * noise_std / math.sqrt(n_rows) * holds.float()[None, :, None, None]
    observations[chosen] = selected + level * intensity[..., None] * profile


def add_needles(
    observations: torch.Tensor,
    targets: torch.Tensor,
    observation_ids: Sequence[int],
    probability: float,
    snr_range: Sequence[float],
    generator: torch.Generator | None = None,
    window: str = "fixed",
    partial_probability: float = 0.0,
) -> torch.Tensor:
    """Add, in place, a fresh needle to the ON observations of each sample of a float32 (B, n_obs, rows,
    channels) batch with `probability`, a `partial_probability` share of them present in only part of the
    cadence; returns the targets with those samples' set to 1 (a new tensor when any are). Under follows_drift
    the needle is the candidate, at the window's centre (`needle_paths`' centred)."""
    chosen = (
        torch.rand(observations.shape[0], generator=generator) < probability
    )  # drawn on the CPU: same on any device
    if not chosen.any():
        return targets
    add_signals(
        observations,
        chosen,
        observation_ids,
        ON_OBSERVATIONS,
        snr_range,
        generator,
        window=window,
        partial_probability=partial_probability,
        centred=True,
    )
    targets = targets.clone()
    targets[chosen.to(targets.device)] = 1.0
    return targets


def add_interference(
    observations: torch.Tensor,
    observation_ids: Sequence[int],
    probability: float,
    snr_range: Sequence[float],
    generator: torch.Generator | None = None,
    window: str = "fixed",
    wide: bool = False,
) -> None:
    """Add, in place, fresh interference to all six observations of each sample of a float32 (B, 6, rows,
    channels) batch with `probability`, labels unchanged: a negative stays a negative that holds a needle-like
    signal in its OFF observations too, a positive becomes a positive with interference. Needs all six observations:
    interference seen only in the ON ones would be a needle. `wide`: drawn as widely as needles (wide and fading
    ones too, see the module's docstring)."""
    if sorted(observation_ids) != list(ALL_OBSERVATIONS):
        raise ValueError(f"interference injection needs all six observations loaded, got {list(observation_ids)}")
    chosen = torch.rand(observations.shape[0], generator=generator) < probability
    add_signals(observations, chosen, observation_ids, ALL_OBSERVATIONS, snr_range, generator, True, window, wide=wide)


def inject_signals(
    observations: torch.Tensor,
    targets: torch.Tensor,
    observation_ids: Sequence[int],
    needle_probability: float,
    interference_probability: float,
    snr_range: Sequence[float],
    generator: torch.Generator | None = None,
    window: str = "fixed",
    partial_probability: float = 0.0,
    wide_interference: bool = False,
    interference_snr_range: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch (B, n_obs, rows, channels) as float32 observations (one new tensor; the loader's batch is
    left alone) with fresh needles in a `needle_probability` share of its samples (made positives; a
    `partial_probability` share of them in only part of the cadence), then fresh all-six interference in an
    `interference_probability` share (labels kept; drawn as widely as needles with `wide_interference`; SNRs in
    `interference_snr_range`, else `snr_range`), on paths for the data's `window` (see `needle_paths`). Returns
    observations, targets."""
    check_window(window)
    observations = observations.to(torch.float32, copy=True)
    if needle_probability > 0:
        targets = add_needles(
            observations,
            targets,
            observation_ids,
            needle_probability,
            snr_range,
            generator,
            window=window,
            partial_probability=partial_probability,
        )
    if interference_probability > 0:
        add_interference(
            observations,
            observation_ids,
            interference_probability,
            snr_range if interference_snr_range is None else interference_snr_range,
            generator,
            window=window,
            wide=wide_interference,
        )
    return observations, targets
