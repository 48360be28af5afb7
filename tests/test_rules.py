"""Scaling rules as values (scaler.rules): exact exponents, phi from a FLOPs growth, the CLI's `scale --rule` and
`plot --family --rules`, and bad input as one line with exit status 2."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from scaler.baselines import get_baseline
from scaler.cli import cli, main
from scaler.errors import ScalerError
from scaler.estimator import estimate
from scaler.equal_cost import TOLERANCE
from scaler.rules import RULE_NAMES, compound_rule, fast_rule, found_rule, grow, named_rule
from scaler.scaling import compound, multipliers


def test_fast_dwr_gives_depth_width_resolution_a_tenth_eight_tenths_and_a_tenth_of_the_flops_growth():
    rule = fast_rule()
    assert rule.label == "fast (dWr)"
    assert rule.shares() == pytest.approx((0.1, 0.8, 0.1), abs=1e-12)
    assert rule.exponents() == pytest.approx((0.1, 0.4, 0.05), abs=1e-12)
    assert rule.growth == pytest.approx(2.0, abs=1e-12)  # one unit of phi doubles the nominal FLOPs
    assert rule.coefficients == pytest.approx((2 ** 0.1, 2 ** 0.4, 2 ** 0.05), abs=1e-12)


def test_the_papers_compound_rule_and_the_single_dimension_rules():
    paper = named_rule("compound")
    assert paper.coefficients == (1.2, 1.1, 1.15) and paper.label == "paper (1.2, 1.1, 1.15)"
    assert sum(paper.shares()) == pytest.approx(1.0)
    assert paper.shares()[0] == pytest.approx(math.log(1.2) / math.log(1.2 * 1.1 ** 2 * 1.15 ** 2))
    for name, shares in (("depth", (1, 0, 0)), ("width", (0, 1, 0)), ("resolution", (0, 0, 1))):
        rule = named_rule(name)
        assert rule.growth == pytest.approx(2.0) and rule.shares() == pytest.approx(shares, abs=1e-12)
    assert named_rule("compound", (1.3, None, 1.1)).coefficients == (1.3, 1.1, 1.1)  # the paper's where not given
    assert found_rule(1.2, 1.2, 1.0426).label == "found (1.2, 1.2, 1.043)"


@pytest.mark.parametrize("s, expected", [
    (4, (1.148698354997035, 1.7411011265922482, 1.0717734625362931)),  # 4^0.1, 4^0.4, 4^0.05
    (16, (1.3195079107728942, 3.0314331330207964, 1.148698354997035)),  # 16^0.1, 16^0.4, 16^0.05
])
def test_dwr_multipliers_at_a_flops_growth_by_hand(s, expected):
    rule = fast_rule()
    assert multipliers(*rule.coefficients, rule.phi_for(s)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("baseline", ["efficientnet-b0", "resnet18"])
@pytest.mark.parametrize("name", RULE_NAMES)
def test_every_rules_network_at_a_flops_ratio_is_within_3_percent_of_it(baseline, name):
    base = get_baseline(baseline)
    before = estimate(base).macs
    for s in (2.0, 4.0, 16.0):
        network = grow(base, named_rule(name), flops_ratio=s)
        assert abs(estimate(network).macs / before / s - 1) <= TOLERANCE, (name, s)


def test_a_cost_the_rule_cannot_reach_within_3_percent_is_refused_with_the_reason():
    from scaler.scaling import stage_rule

    with pytest.raises(ScalerError, match="resolution only cannot grow efficientnet-b0 to 16x.*capped at 480 px"):
        grow(get_baseline("efficientnet-b0"), named_rule("resolution"), flops_ratio=16, stage_rule=stage_rule("v2"))


@pytest.mark.parametrize("s", [4.0, 8.0, 16.0])
def test_the_fast_rules_activations_are_below_compounds_at_equal_real_flops(s):
    base = get_baseline("efficientnet-b0")
    fast, paper = (estimate(grow(base, named_rule(name), flops_ratio=s)) for name in ("fast", "compound"))
    assert abs(fast.macs / paper.macs - 1) <= 2 * TOLERANCE  # the same real cost
    assert fast.activations < paper.activations


@pytest.mark.parametrize("name", RULE_NAMES)
def test_phi_for_a_flops_ratio_grows_the_nominal_flops_by_that_ratio(name):
    rule = named_rule(name)
    assert rule.growth ** rule.phi_for(4.0) == pytest.approx(4.0)
    assert rule.phi_for(1.0) == 0.0


def test_fast_scaling_grows_activations_about_as_the_square_root_of_flops_compound_nearly_linearly():
    """Dollár et al.'s argument, on B0: at 16x nominal FLOPs the fast rule's activations are about half of
    compound scaling's (on this network 5.5x against 11.2x the baseline's)."""
    base = get_baseline("efficientnet-b0")
    before = estimate(base)
    growth = {}
    for name in ("compound", "fast"):
        rule = named_rule(name)
        after = estimate(compound(base, *rule.coefficients, rule.phi_for(16.0)))
        growth[name] = after.activations / before.activations
    assert growth["fast"] < 0.6 * growth["compound"]
    assert growth["fast"] < 2 * math.sqrt(16)


@pytest.mark.parametrize("make, match", [
    (lambda: fast_rule((0.2, 0.5, 0.2)), "sum to 1"),
    (lambda: fast_rule((0.1, 0.9)), "three"),
    (lambda: fast_rule((-0.1, 1.0, 0.1)), "depth share"),
    (lambda: compound_rule(0.9, 1.1, 1.1), "alpha: must be at least 1"),
    (lambda: compound_rule(1.0, 1.0, 1.0), "grows nothing"),
    (lambda: named_rule("resnet-rs"), "unknown rule"),
    (lambda: named_rule("width", (1.3, None, None)), "belong to the compound rule"),
    (lambda: named_rule("compound", shares=(0.1, 0.8, 0.1)), "belong to the fast rule"),
    (lambda: named_rule("fast").phi_for(0), "flops ratio"),
])
def test_impossible_rules_are_refused_naming_the_problem(make, match):
    with pytest.raises(ScalerError, match=match):
        make()


def test_scale_with_the_fast_rule_and_a_flops_ratio_shows_its_exact_exponents():
    done = CliRunner().invoke(cli, ["scale", "--rule", "fast", "--flops-ratio", "4"])
    assert done.exit_code == 0, done.output
    first, second = done.output.splitlines()[:2]
    assert first.startswith("rule fast (dWr): depth s^0.1000, width s^0.4000, resolution s^0.0500")
    assert "phi=2:" in second and "nominal FLOPs x4.000" in second
    data = json.loads(CliRunner().invoke(cli, ["scale", "--rule", "fast", "--shares", "0.2,0.6,0.2",
                                               "--flops-ratio", "4", "--json"]).output)
    assert data["rule"]["shares"] == pytest.approx([0.2, 0.6, 0.2])
    assert data["rule"]["exponents"] == pytest.approx([0.2, 0.3, 0.1])
    assert data["phi"] == pytest.approx(2.0)
    assert data["multipliers"]["width"] == pytest.approx(4 ** 0.3)
    assert data["requested_flops_ratio"] == 4 and abs(data["flops_ratio"] / 4 - 1) <= TOLERANCE


def test_scale_phi_alone_is_still_the_papers_compound_scaling():
    data = json.loads(CliRunner().invoke(cli, ["scale", "--phi", "1", "--json"]).output)
    assert (data["alpha"], data["beta"], data["gamma"]) == (1.2, 1.1, 1.15)
    assert data["rule"]["name"] == "compound"


@pytest.mark.parametrize("args, message", [
    (["scale"], "give --phi or --flops-ratio"),
    (["scale", "--phi", "1", "--flops-ratio", "2"], "give --phi or --flops-ratio"),
    (["scale", "--rule", "depth", "--beta", "1.2", "--phi", "1"], "belong to the compound rule"),
    (["scale", "--rule", "fast", "--shares", "0.5,0.5,0.5", "--phi", "1"], "sum to 1"),
    (["scale", "--rule", "fast", "--shares", "a,b,c", "--phi", "1"], "--shares: expected numbers"),
    (["scale", "--rule", "fast", "--shares", "-0.1,1,0.1", "--phi", "1"], "depth share"),
    (["scale", "--rule", "bogus", "--phi", "1"], "Invalid value for '--rule'"),
    (["scale", "--rule", "resolution", "--flops-ratio", "16", "--stage-scaling", "v2"], "capped at 480 px"),
    (["scale", "--flops-ratio", "-2"], "flops ratio"),
    (["plot", "--family", "--rules", "compound,tiny", "-o", "x.png"], "unknown rule 'tiny'"),
    (["search", "--quick", "--plan", "--references", "fast,resnet-rs"], "references: must be one of"),
    (["search", "--quick", "--plan", "--references", "fast,fast"], "references: a rule is named twice"),
])
def test_bad_rule_input_is_one_line_and_exit_status_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_plot_family_draws_the_rules_named(tmp_path):
    done = CliRunner().invoke(cli, ["plot", "--family", "--rules", "compound,fast", "-o", str(tmp_path / "f.png"),
                                    "--json"])
    assert done.exit_code == 0, done.output
    labels = [curve["label"] for curve in json.loads(done.output)["curves"]]
    assert labels == ["paper (1.2, 1.1, 1.15)", "fast (dWr)"]
    assert (tmp_path / "f.png").stat().st_size > 0
