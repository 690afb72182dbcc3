"""On-the-fly injection's partial needles (inject_partial_prob) and widely drawn interference (inject_rfi_wide)."""

from __future__ import annotations

import pytest
import torch

from src.core.cadence import OFF_OBSERVATIONS, ON_OBSERVATIONS
from src.core.config import Config
from src.synth.generator import LEAVING_DRIFT, MIN_VISIBLE_ROWS, PARTIAL_KINDS, RFI_WIDE_CHANNELS
from src.synth.inject import (
    INJECTED_SHAPES,
    MAX_DRIFT_CHANNELS_PER_ROW,
    N_FREQ,
    N_TIME,
    inject_signals,
    needle_paths,
    observation_rows,
    partial_presence,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ON = torch.tensor([o in ON_OBSERVATIONS for o in range(6)])


def noise_batch(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 6, N_TIME, N_FREQ, generator=torch.Generator().manual_seed(seed))


def test_partial_needles_are_positives_never_in_off_observations_and_miss_part_of_the_on_ones():
    observations = noise_batch(24)
    injected, labels = inject_signals(
        observations,
        torch.zeros(24),
        range(6),
        1.0,
        0.0,
        (40, 40),
        torch.Generator().manual_seed(1),
        partial_probability=1.0,
    )
    added = injected - observations
    assert torch.equal(labels, torch.ones(24))
    assert float(added[:, list(OFF_OBSERVATIONS)].abs().max()) == 0.0
    lit = added[:, list(ON_OBSERVATIONS)].abs().amax(dim=-1) > 0  # (24, 3 ON, rows)
    assert bool(lit.flatten(1).any(dim=1).all())  # every needle is somewhere
    observations_lit = lit.any(dim=-1).sum(dim=1)
    assert int((observations_lit < 3).sum()) >= 8  # many are missing from whole ON observations
    assert set(observations_lit.tolist()) <= {1, 2, 3}


def test_without_the_option_needles_are_whole_and_nothing_more_is_drawn():
    observations = noise_batch(6)
    whole, _ = inject_signals(
        observations, torch.zeros(6), range(6), 1.0, 0.0, (40, 40), torch.Generator().manual_seed(2)
    )
    generator = torch.Generator().manual_seed(2)
    same, _ = inject_signals(
        observations,
        torch.zeros(6),
        range(6),
        1.0,
        0.0,
        (40, 40),
        generator,
        partial_probability=0.0,
        wide_interference=False,
    )
    assert torch.equal(whole, same)
    on_lit = (whole - observations)[:, list(ON_OBSERVATIONS)].abs().amax(dim=(-2, -1)) > 0
    assert bool(on_lit.all())
    after = torch.Generator().manual_seed(2)
    inject_signals(observations, torch.zeros(6), range(6), 1.0, 0.0, (40, 40), after)
    assert torch.equal(generator.get_state(), after.get_state())


def test_partial_presence_per_kind():
    rows = observation_rows(range(6), torch.device("cpu"))
    n = 60
    kind = torch.arange(n) % 4 - 1  # -1 whole, then each kind in PARTIAL_KINDS
    presence = partial_presence(n, rows, ON, kind, torch.Generator().manual_seed(3))
    assert presence.shape == (n, 6, N_TIME)
    assert bool((presence[kind == -1] == 1).all())
    assert bool((presence[kind == PARTIAL_KINDS.index("leaves_window")] == 1).all())  # it leaves through its path
    subset = presence[kind == PARTIAL_KINDS.index("subset")][:, list(ON_OBSERVATIONS)]
    kept = subset.amax(dim=-1)
    assert bool((subset.amin(dim=-1) == kept).all())  # whole observations, kept or not
    assert set(kept.sum(dim=1).tolist()) == {1.0, 2.0}
    switched = presence[kind == PARTIAL_KINDS.index("switches")][:, list(ON_OBSERVATIONS)].flatten(1)  # ON rows
    for row in switched:
        lit = torch.nonzero(row).flatten()
        assert int(lit[-1] - lit[0]) + 1 == len(lit)  # one window of ON rows
        assert len(lit) >= MIN_VISIBLE_ROWS and len(row) - len(lit) >= MIN_VISIBLE_ROWS


def test_leaving_paths_are_steep_and_cross_a_band_edge_at_the_on_observations():
    rows = observation_rows(range(6), torch.device("cpu"))
    n = 400
    shapes = torch.zeros(n, dtype=torch.long)  # linear
    leaving = torch.arange(n) % 2 == 0
    paths = needle_paths(n, rows, ON, torch.Generator().manual_seed(4), shapes, leaving=leaving)
    on = paths[:, list(ON_OBSERVATIONS)].flatten(1)
    inside = (on >= 0) & (on <= N_FREQ - 1)
    share = inside.float().mean(dim=1)
    assert bool((share[leaving] < 1).all() & (share[leaving] > 0).all())  # enters or leaves
    assert bool((share[~leaving] == 1).all())  # the others still fit
    keep = MIN_VISIBLE_ROWS / on.shape[1]
    assert float(share[leaving].min()) >= keep - 0.01 and float(share[leaving].max()) <= 1 - keep + 0.01
    slope = (paths[:, 0, -1] - paths[:, 0, 0]).abs() / (N_TIME - 1)
    assert float(slope[leaving].min()) >= LEAVING_DRIFT[0] * MAX_DRIFT_CHANNELS_PER_ROW - 1e-4


def test_wide_interference_spans_all_six_is_sometimes_wide_and_sometimes_faint_in_off_observations():
    observations = noise_batch(48, seed=5)
    injected, labels = inject_signals(
        observations,
        torch.zeros(48),
        range(6),
        0.0,
        1.0,
        (40, 40),
        torch.Generator().manual_seed(6),
        wide_interference=True,
    )
    added = injected - observations
    assert torch.equal(labels, torch.zeros(48))
    peak = added.abs().amax(dim=(-2, -1))  # (48, 6)
    assert bool((peak > 0).all())  # every observation of every sample
    row = added[:, 0].clamp(min=0)
    half = (row > 0.5 * row.amax(dim=-1, keepdim=True)).sum(dim=-1).float().median(dim=-1).values  # channels a row
    assert int((half >= RFI_WIDE_CHANNELS[0] - 1).sum()) >= 3  # some are wide (a sixth of 48)
    energy = (added**2).sum(dim=(-2, -1))
    faint = energy[:, list(OFF_OBSERVATIONS)].amin(dim=1) / energy.amax(dim=1)
    assert int((faint < 0.3).sum()) >= 3  # some fade in an OFF observation, never to nothing
    plain, _ = inject_signals(
        observations, torch.zeros(48), range(6), 0.0, 1.0, (40, 40), torch.Generator().manual_seed(6)
    )
    plain_energy = ((plain - observations) ** 2).sum(dim=(-2, -1))
    assert int((plain_energy[:, list(OFF_OBSERVATIONS)].amin(dim=1) / plain_energy.amax(dim=1) < 0.3).sum()) == 0


def test_config_fields():
    assert Config().inject_partial_prob == 0.0 and Config().inject_rfi_wide is False
    with pytest.raises(Exception, match="inject_partial_prob"):
        Config(inject_partial_prob=1.5)
    assert len(INJECTED_SHAPES) == 4
