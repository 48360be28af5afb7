"""Equal cost in the user's currency (`--equal-cost`): params, activations, peak training memory or measured
latency of each candidate's full-size counterpart, within ±3 % of 2^phi times the baseline's; a candidate whose
direction does not move the currency is skipped with that reason; latency comes from a table built once per
study, its build time and its error against whole-network timings reported."""

import json
from dataclasses import replace

import pytest
import torch

from scaler.baselines import get_baseline
from scaler.build import build_model
from scaler.cli import main
from scaler.equal_cost import TOLERANCE, full_size, study_currency
from scaler.errors import ScalerError
from scaler.estimator import estimate
from scaler.grid import family_candidates
from scaler.latency_table import LatencyTable, piece_keys, pieces, table_error
from scaler.searches.compound import candidate_network, search
from scaler.searches.compound_recipe import QUICK, Recipe
from scaler.spec import save_spec
from scaler.study.proxy import Proxy

from recipes import TINY


def small_baseline():
    """EfficientNet-B0 at half its width and depth and 32 px: quick to build and time on a CPU."""
    return replace(Proxy(width=0.5, depth=0.5, resolution=32).shrink(get_baseline("efficientnet-b0")), name="small")


MEASURES = {"params": lambda spec, batch: estimate(spec).params,
            "activations": lambda spec, batch: estimate(spec).activations,
            "memory": lambda spec, batch: estimate(spec, batch_size=batch).peak_training_memory_bytes}


@pytest.mark.parametrize("currency", sorted(MEASURES))
@pytest.mark.parametrize("phi", [1.0, 2.0])
def test_every_quick_candidate_is_within_3_percent_in_the_chosen_currency(currency, phi):
    recipe = replace(QUICK, stage_scaling=("uniform", "v2"), equal_cost=currency)
    proxy, baseline = recipe.proxy_network(), get_baseline(recipe.baseline)
    batch = recipe.proxy.batch_size
    base = MEASURES[currency](baseline, batch)
    candidates = [replace(c, phi=phi) for c in recipe.candidates() if c.kind != "baseline"]
    best = max((c for c in candidates if c.kind == "compound"), key=lambda c: c.alpha)
    candidates += family_candidates(best.alpha, best.beta, best.gamma, (phi,), rules=("fast", "compound"))
    skipped = set()
    for candidate in candidates:
        match = candidate_network(recipe, proxy, candidate)
        if match.network is None and "capped at" in match.reason:
            # v2 caps the resolution: a resolution-heavy candidate cannot reach 4x params below it, and says so
            assert candidate.stage_scaling == "v2" and currency == "params" and phi == 2, candidate
            continue
        if match.network is None:
            skipped.add(candidate.kind)
            assert match.unmoved and "does not change them" in match.reason, (candidate, match.reason)
            continue
        real = MEASURES[currency](full_size(match.network, proxy, baseline), batch) / base
        assert real == pytest.approx(match.ratio) and match.currency == currency
        assert abs(real / 2**phi - 1) <= TOLERANCE, (candidate, real)
    # Resolution leaves params alone: resolution-only scaling cannot be matched on them, and is the only one.
    assert skipped == ({"resolution"} if currency == "params" else set())


def test_each_candidate_is_scaled_along_its_own_direction_to_reach_the_currency():
    """At equal params a width-only candidate is about 1.41x wide, as at equal FLOPs; a depth-only one needs more
    than 2x the blocks (the early stages hold few params); at equal activations, width grows about 2x."""
    proxy = QUICK.proxy_network()
    width = candidate_network(replace(QUICK, equal_cost="params"), proxy, replace(QUICK.candidates()[2]))
    assert QUICK.candidates()[2].kind == "width" and 1.3 < width.width < 1.6 and width.resolution == 1
    depth = candidate_network(replace(QUICK, equal_cost="params"), proxy, QUICK.candidates()[1])
    assert depth.depth > 2.0 and depth.width == pytest.approx(1.0, abs=0.05)
    wide = candidate_network(replace(QUICK, equal_cost="activations"), proxy, QUICK.candidates()[2])
    assert wide.width > 1.8


def test_flops_stay_the_default_and_counted_on_the_proxy_itself():
    recipe = Recipe()
    assert recipe.equal_cost == "flops" and "equal_cost" not in recipe.settings()  # old studies keep their print
    assert replace(recipe, equal_cost="params").settings()["equal_cost"] == "params"
    proxy = recipe.proxy_network()
    match = candidate_network(recipe, proxy, recipe.candidates()[4])
    assert match.currency == "flops"
    assert match.ratio == pytest.approx(estimate(match.network).macs / estimate(proxy).macs)


def test_the_full_size_counterpart_grows_the_baseline_by_the_proxy_networks_own_ratios():
    recipe = Recipe()
    proxy, baseline = recipe.proxy_network(), get_baseline(recipe.baseline)
    assert replace(full_size(proxy, proxy, baseline), name=baseline.name) == baseline
    grown = candidate_network(recipe, proxy, recipe.candidates()[1]).network  # depth-only: twice the blocks
    counterpart = full_size(grown, proxy, baseline)
    assert [s.channels for s in counterpart.stages] == [s.channels for s in baseline.stages]
    assert counterpart.resolution == baseline.resolution
    assert sum(s.repeats for s in counterpart.stages) == pytest.approx(
        2 * sum(s.repeats for s in baseline.stages), rel=0.15)
    wide = replace(proxy, resolution=72, stages=tuple(replace(s, channels=2 * s.channels) for s in proxy.stages))
    doubled = full_size(wide, proxy, baseline)
    assert doubled.resolution == 336 and [s.channels for s in doubled.stages] == [
        2 * s.channels for s in baseline.stages]


def test_latency_needs_its_table():
    with pytest.raises(ScalerError, match="no latency table"):
        study_currency("latency", QUICK.proxy_network(), get_baseline("efficientnet-b0"))


@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnetv2-s", "mobilenetv2", "resnet50",
                                  "convnext-tiny"])
def test_a_networks_pieces_run_one_after_another_are_its_forward_pass(name):
    spec = Proxy(resolution=40).shrink(get_baseline(name))
    model = build_model(spec).eval()
    x = torch.randn(2, 3, 40, 40)
    keys, parts = piece_keys(spec), pieces(model, spec)
    assert len(keys) == len(parts) == 2 + sum(s.repeats for s in spec.stages) + (
        sum(s.stride > 1 for s in spec.stages) if name == "convnext-tiny" else 0)
    y = x
    with torch.no_grad():
        for (key, shape), part in zip(keys, parts):
            assert tuple(y.shape[1:]) == shape, key
            y = part(y)
        assert torch.equal(y, model(x))


def test_the_table_times_each_piece_once_and_sums_them(monkeypatch):
    table = LatencyTable("cpu")
    spec = Proxy(resolution=32).shrink(get_baseline("efficientnet-b0"))
    first = table.latency_ms(spec)
    keys = piece_keys(spec)
    assert len(table.entries) == len({k for k, _ in keys}) and table.seconds > 0
    assert first == pytest.approx(sum(table.entries[k] for k, _ in keys))
    monkeypatch.setattr("scaler.latency_table.time_forward_ms", lambda *a, **k: pytest.fail("timed again"))
    assert table.latency_ms(spec) == first  # every piece known: nothing is timed
    stages = list(spec.stages)
    assert stages[3].repeats == 2
    stages[3] = replace(stages[3], repeats=3)  # one more of a block the table holds
    second = keys[1 + sum(s.repeats for s in spec.stages[:3]) + 1][0]
    assert table.latency_ms(replace(spec, stages=tuple(stages))) == pytest.approx(first + table.entries[second])
    with pytest.raises(ScalerError, match="measured on cpu, not cuda:0; resume it with --device cpu"):
        LatencyTable.from_dict(table.to_dict(), "cuda:0")
    assert LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())), "cpu").entries == table.entries
    on_gpu = replace(table, device="cuda:0").to_dict()
    assert LatencyTable.from_dict(on_gpu, "cuda:1").device == "cuda:1"  # a worker on another GPU times on its own


def test_the_table_error_compares_its_sums_with_whole_network_timings(monkeypatch):
    table = LatencyTable("cpu", entries={})
    spec = Proxy(resolution=32).shrink(get_baseline("efficientnet-b0"))
    total = table.latency_ms(spec)
    monkeypatch.setattr("scaler.latency_table.measure_latency_ms", lambda spec, device, batch: total / 1.25)
    error = table_error(table, [spec])
    assert (error.networks, error.mean, error.worst, error.bias) == (1, pytest.approx(0.25), pytest.approx(0.25),
                                                                      pytest.approx(0.25))


def test_a_bad_currency_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--quick", "--equal-cost", "dollars"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "dollars" in err
    (tmp_path / "r.toml").write_text('equal_cost = "dollars"\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--recipe", "r.toml", "--plan"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "equal cost" in err and "dollars" in err
    assert not (tmp_path / "studies").exists()


@pytest.mark.slow
def test_a_study_equal_in_params_trains_each_candidate_at_its_params_and_says_so(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/p.db"
    recipe = replace(TINY, equal_cost="params")
    result = search(recipe, None, "p", storage, device="cpu")
    by_kind = {t.kind: t for t in result.trials if not t.repeat}
    assert "does not change them" in by_kind["resolution"].failure
    for t in result.trials:
        if t.kind not in ("baseline", "resolution"):
            assert abs(t.cost_ratio / 2 - 1) <= TOLERANCE, t
    main(["studies", "show", "p", "--storage", storage])
    out = capsys.readouterr().out
    assert "params ratio" in out and "equal cost in params" in out
    main(["report", "p", "--storage", storage, "-o", str(tmp_path / "report")])
    assert "equal cost in params" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_a_study_equal_in_latency_builds_its_table_once_and_reports_its_error(tmp_path, capsys):
    """On a small baseline (B0 at half width and depth, 32 px), so that timing its full-size networks is quick on a
    CPU."""
    save_spec(small_baseline(), tmp_path / "small.json")
    recipe = replace(TINY, baseline=str(tmp_path / "small.json"), equal_cost="latency")
    storage = f"sqlite:///{tmp_path}/l.db"
    result = search(recipe, None, "l", storage, device="cpu")
    table = result.latency_table
    assert table["device"] == "cpu" and table["pieces"] > 0 and table["seconds"] > 0
    assert table["error"]["networks"] >= 2 and table["error"]["worst"] >= table["error"]["mean"] >= 0
    # Every candidate trained is within the tolerance by the table; one the table cannot place there (timings
    # differ between machines) is skipped, saying so, never trained off-cost.
    trained = [t for t in result.trials if t.state == "COMPLETE" and t.kind != "baseline"]
    assert trained and all(abs(t.cost_ratio / 2 - 1) <= TOLERANCE for t in trained), [t.cost_ratio for t in trained]
    skipped = [t for t in result.trials if t.state == "FAIL"]
    assert all(t.failure.startswith("skipped: ") and abs(t.cost_ratio / 2 - 1) > TOLERANCE for t in skipped), [
        (t.failure, t.cost_ratio) for t in skipped]
    again = search(recipe, None, "l", storage, device="cpu")  # resumed: the stored table, not a new one
    assert again.latency_table == table
    main(["studies", "show", "l", "--storage", storage])
    out = capsys.readouterr().out
    assert "latency ratio" in out and "latency table:" in out and "networks whole" in out


@pytest.mark.slow
def test_the_plan_builds_a_latency_table_and_reports_it(tmp_path, monkeypatch, capsys):
    """The plan solves with a table of its own (timed here by a stand-in that grows with each piece's work, so
    that the test is quick; the real timing is the study test's) and says what it holds and how far off it is."""
    def work(piece, shape, device, batch_size=1):
        return 0.01 + 1e-7 * sum(p.numel() for p in piece.parameters()) * shape[1] * shape[2]

    monkeypatch.setattr("scaler.latency_table.time_forward_ms", work)
    monkeypatch.setattr("scaler.latency_table.measure_latency_ms", lambda spec, device, batch: 1.0)
    monkeypatch.chdir(tmp_path)
    save_spec(small_baseline(), tmp_path / "small.json")
    main(["search", "--quick", "--baseline", "small.json", "--plan", "--equal-cost", "latency", "--json"])
    plan = json.loads(capsys.readouterr().out)
    table = plan["latency_table"]
    assert table["device"] == "cpu" and table["pieces"] > 0 and table["error"]["networks"] >= 2
    for c in plan["candidates"]:
        assert c["equal_cost"] == "latency" and abs(c["cost_ratio"] / c["nominal_flops_ratio"] - 1) <= TOLERANCE
    assert not (tmp_path / "studies").exists()
