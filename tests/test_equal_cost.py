"""Candidates at equal real cost (scaler.equal_cost): every candidate is trained within ±3 % of its nominal FLOPs
ratio, measured by the estimator on the rounded network, or skipped with its reason; `--plan` shows the networks
a study would train, and trains none of them."""

import json
from dataclasses import replace

import optuna
import pytest

from scaler.cli import main
from scaler.equal_cost import TOLERANCE, match_cost, stage_repeats
from scaler.estimator import estimate
from scaler.grid import family_candidates
from scaler.scaling import compound, stage_rule
from scaler.searches.compound import candidate_network, search
from scaler.searches.compound_plan import plan_search
from scaler.searches.compound_recipe import QUICK, Recipe

from recipes import TINY


def assert_every_candidate_at_equal_cost(recipe: Recipe, phi: float) -> None:
    proxy = recipe.proxy_network()
    base = estimate(proxy).macs
    candidates = [replace(c, phi=phi) for c in recipe.candidates() if c.kind != "baseline"]
    best = max((c for c in candidates if c.kind == "compound"), key=lambda c: c.alpha)
    candidates += family_candidates(best.alpha, best.beta, best.gamma, (phi,), rules=("fast", "compound"))
    for candidate in candidates:
        match = candidate_network(recipe, proxy, candidate)
        assert match.network is not None, (candidate, match.reason)
        real = estimate(match.network).macs / base
        assert real == pytest.approx(match.ratio)
        assert abs(real / 2**phi - 1) <= TOLERANCE, (candidate, real)


@pytest.mark.parametrize("phi", [1.0, 2.0])
def test_every_quick_candidate_is_within_3_percent_of_its_nominal_flops(phi):
    assert_every_candidate_at_equal_cost(replace(QUICK, stage_scaling=("uniform", "v2")), phi)


@pytest.mark.slow
@pytest.mark.parametrize("phi", [1.0, 2.0])
def test_every_default_candidate_is_within_3_percent_of_its_nominal_flops(phi):
    assert_every_candidate_at_equal_cost(Recipe(stage_scaling=("uniform", "v2")), phi)


def test_the_old_rounding_was_far_off_cost_on_the_proxy():
    """Why this exists: rounding each stage up and widths to multiples of 8 put candidates far from 2x."""
    proxy = Recipe().proxy_network()
    base = estimate(proxy).macs
    ratios = [estimate(compound(proxy, c.alpha, c.beta, c.gamma)).macs / base
              for c in Recipe().candidates() if c.kind != "baseline"]
    assert max(ratios) / min(ratios) > 1.5


def test_depth_is_rounded_as_a_whole_not_stage_by_stage():
    proxy = Recipe().proxy_network()
    assert [s.repeats for s in proxy.stages] == [1, 1, 1, 2, 2, 2, 1]
    assert stage_repeats(proxy, 1.0) == (1, 1, 1, 2, 2, 2, 1)
    assert sum(stage_repeats(proxy, 1.1)) == 11  # stage by stage, ceil made it 17
    assert sum(stage_repeats(proxy, 1.3)) == 13 and min(stage_repeats(proxy, 1.3)) >= 1
    assert stage_repeats(proxy, 2.0) == (2, 2, 2, 4, 4, 4, 2)
    uniform, v2 = stage_repeats(proxy, 1.4), stage_repeats(proxy, 1.4, stage_rule("v2"))
    assert sum(uniform) == sum(v2) == 14 and sum(v2[-2:]) > sum(uniform[-2:])  # v2: more to the later stages


def test_the_effective_coefficients_are_what_was_trained():
    proxy = Recipe().proxy_network()
    match = match_cost(proxy, 1.2, 1.1, 2 / (1.2 * 1.1**2), 2.0)
    blocks = sum(s.repeats for s in match.network.stages)
    assert match.depth == blocks / 10 and match.resolution == match.network.resolution / 48
    alpha, beta, gamma = match.coefficients(2.0)
    assert alpha == pytest.approx(match.depth ** 0.5) and gamma == pytest.approx(match.resolution ** 0.5)
    assert abs(match.gap) <= TOLERANCE


def test_a_target_no_bounded_move_reaches_is_skipped_with_its_reason():
    proxy = Recipe().proxy_network()
    match = match_cost(proxy, 1.0, 1.0, 1.0, 3.0)  # 3x the FLOPs from the baseline's own shape
    assert match.network is None and match.ratio < 3 * (1 - TOLERANCE)
    assert match.reason.startswith("no network within ±3% of 3x FLOPs: the closest is")
    capped = match_cost(proxy, 1.0, 1.0, 2.0, 4.0, stage_rule("v2", max_resolution=64))
    assert capped.network is None and "capped at 64 px by the stage rule" in capped.reason


def test_a_validation_no_network_can_meet_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    """Under v2's resolution cap the resolution-only reference cannot reach 8x at phi 3: refused before training."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--quick", "--stage-scaling", "v2", "--validate-phi", "3"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("scaler: error: proxy: the resolution-only reference at phi 3 (v2 stage scaling) cannot "
                          "be trained at equal cost: no network within ±3% of 8x FLOPs")
    assert not (tmp_path / "studies").exists()


def test_the_plan_refuses_what_the_search_would_refuse(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--quick", "--plan", "--budget-gflops", "0.00001"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "below the smallest network this rule can make" in err


@pytest.mark.slow
def test_the_plan_trains_nothing_and_agrees_with_what_the_search_trains(tmp_path):
    storage = f"sqlite:///{tmp_path}/t.db"
    plan = plan_search(TINY, "cpu", storage=storage, study_name="t")
    assert not (tmp_path / "t.db").exists()  # no study: nothing was trained into one
    assert len(plan.candidates) == len(TINY.candidates()) and plan.total_seconds > 0
    result = search(TINY, None, "t", storage, device="cpu")
    trials = {(t.kind, t.alpha, t.beta): t for t in result.trials}
    for planned in plan.candidates:
        c, net = planned.candidate, planned.match.network
        trained = trials[(c.kind, c.alpha, c.beta)]
        assert (trained.resolution, trained.params) == (net.resolution, planned.params)
        assert trained.flops_ratio == pytest.approx(planned.match.ratio)
        assert trained.effective == pytest.approx(planned.match.coefficients(c.phi))
    study = optuna.load_study(study_name="t", storage=storage)
    assert sorted({round(t.user_attrs["nominal_flops_ratio"], 9) for t in study.trials}) == [1.0, 2.0]


@pytest.mark.slow
def test_the_plan_command_prints_every_candidate_and_its_projected_time(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["search", "--quick", "--plan", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert len(out["candidates"]) == len(QUICK.candidates()) and out["total_seconds"] > 0
    for c in out["candidates"]:
        assert abs(c["flops_ratio"] / c["nominal_flops_ratio"] - 1) <= TOLERANCE and c["skipped"] is None
        assert len(c["stage_repeats"]) == len(c["stage_channels"]) == 7 and c["resolution"] > 0
    assert not (tmp_path / "studies").exists()
    main(["search", "--quick", "--plan"])
    text = capsys.readouterr().out
    assert "blocks per stage" in text and "projected:" in text
