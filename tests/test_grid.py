"""The search grid: on the constraint, deterministic, fingerprinted, with honest FLOPs ratios."""

import math

import pytest

from scaler.baselines import get_baseline
from scaler.errors import ScalerError
from scaler.grid import Candidate, compound_grid, fingerprint, flops_ratio, references


def test_default_grid_lies_on_the_constraint():
    grid = compound_grid()
    assert len(grid) > 20
    for c in grid:
        assert c.gamma >= 1
        assert c.nominal_flops_ratio == pytest.approx(2.0, rel=1e-9)
        assert 1.0 <= c.alpha <= 1.4 and 1.0 <= c.beta <= 1.4 and c.kind == "compound"
    assert len({(c.alpha, c.beta) for c in grid}) == len(grid)


def test_grid_holds_the_papers_neighbourhood_and_drops_gamma_below_one():
    pairs = {(c.alpha, c.beta) for c in compound_grid()}
    assert (1.2, 1.1) in pairs
    assert (1.4, 1.4) not in pairs  # 1.4 * 1.4^2 > 2 would need gamma < 1
    paper = next(c for c in compound_grid() if (c.alpha, c.beta) == (1.2, 1.1))
    assert paper.gamma == pytest.approx(math.sqrt(2 / (1.2 * 1.1**2)))


def test_grid_values_are_exact_steps():
    # 1.0 + 3 * 0.05 is 1.1500000000000001 in floats; the grid must say 1.15 on every machine
    assert 1.15 in {c.alpha for c in compound_grid()}


def test_same_grid_same_fingerprint_and_any_change_shows():
    a = fingerprint(compound_grid(), seed=0, version="1")
    assert a == fingerprint(compound_grid(), seed=0, version="1")
    assert a != fingerprint(compound_grid(), seed=1, version="1")
    assert a != fingerprint(compound_grid(step=0.1), seed=0, version="1")
    assert a != fingerprint(tuple(reversed(compound_grid())), seed=0, version="1")


def test_references_are_single_dimension_at_the_same_nominal_flops():
    kinds = {c.kind: c for c in references()}
    assert set(kinds) == {"baseline", "depth", "width", "resolution"}
    for kind in ("depth", "width", "resolution"):
        assert kinds[kind].nominal_flops_ratio == pytest.approx(2.0)
        assert sorted((kinds[kind].alpha, kinds[kind].beta, kinds[kind].gamma))[:2] == [1.0, 1.0]


def test_flops_ratio_is_the_rounded_networks():
    b0 = get_baseline("efficientnet-b0")
    paper = Candidate(1.2, 1.1, 1.15)
    assert paper.nominal_flops_ratio == pytest.approx(1.9203, abs=1e-4)
    assert flops_ratio(b0, paper) == pytest.approx(2.229, abs=1e-3)
    assert flops_ratio(b0, paper, phi=3) == pytest.approx(8.432, abs=1e-3)
    assert flops_ratio(b0, references()[0]) == 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"step": 0}, "step"),
    ({"step": float("nan")}, "step"),
    ({"target": 1.0}, "target"),
    ({"alpha_range": (0.9, 1.2)}, "alpha range start"),
    ({"beta_range": (1.3, 1.1)}, "beta range end"),
    ({"alpha_range": (1.5, 1.6), "beta_range": (1.5, 1.6)}, "gamma >= 1"),
])
def test_bad_grids(kwargs, message):
    with pytest.raises(ScalerError, match=message):
        compound_grid(**kwargs)
