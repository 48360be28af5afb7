"""The baseline search: the space around a start, MnasNet's reward, the FLOPs band checked before training, resume,
two objectives, its outputs (a spec file other commands take, a table, a plot), and bad input as one line."""

import json
import shutil
from dataclasses import replace

import optuna
import pytest

import scaler.study.engine as module  # where the proxy training is called from, for both searches
from scaler.searches.baseline import baseline_search
from scaler.searches.baseline_records import read_baseline_search as baseline_report
from scaler.searches.baseline_recipe import (BAND, MNAS_W, QUICK_BASELINE, BaselineRecipe, StageChoice, candidate_spec,
                                             reward, space_span, start_spec)
from scaler.baselines import get_baseline
from scaler.build import build_model
from scaler.errors import ScalerError
from scaler.estimator import estimate
from scaler.plot import baseline_plot_data, pareto_front, plot_baseline
from scaler.budget import Budget, fit_phi
from scaler.searches.compound import search
from scaler.searches.compound_recipe import QUICK, recipe_from_dict
from scaler.spec import load_spec
from scaler.study.storage import open_storage
from scaler.errors import OutOfMemory
from test_train import run_cli

B0 = get_baseline("efficientnet-b0")
# One epoch of the quick proxy on a few images: for the machinery only.
TINY = replace(QUICK_BASELINE, trials=3, proxy=replace(QUICK_BASELINE.proxy, epochs=1, train_size=64, val_size=32))


def storage_in(tmp_path):
    return f"sqlite:///{tmp_path}/b.db"


def counting_train(monkeypatch):
    """Count the trainings (and the networks trained) without changing them."""
    calls, original = [], module.train

    def counted(network, *args, **kwargs):
        calls.append(network)
        return original(network, *args, **kwargs)

    monkeypatch.setattr(module, "train", counted)
    return calls


# ---------------------------------------------------------------- the space and the reward


def test_the_reward_is_mnasnets():
    assert reward(0.8, 400e6, 400e6) == 0.8
    assert reward(0.8, 800e6, 400e6) == pytest.approx(0.8 * 2 ** -0.07)
    assert reward(0.8, 200e6, 400e6) == pytest.approx(0.8 * 2 ** 0.07)  # cheaper pays
    assert reward(0.8, 800e6, 400e6, w=0.0) == 0.8
    assert MNAS_W == -0.07 and BaselineRecipe().w == -0.07


def test_a_candidate_is_the_start_with_each_stage_as_chosen():
    same = tuple(StageChoice(s.block, s.kernel, int(s.expansion), s.se_ratio > 0, s.repeats, 1.0) for s in B0.stages)
    assert candidate_spec(B0, same, name=B0.name) == B0
    choices = (StageChoice("fused_mbconv", 5, 4, True, 2, 1.25),) + same[1:]
    spec = candidate_spec(B0, choices)
    first = spec.stages[0]
    assert (first.block, first.kernel, first.expansion, first.repeats, first.channels) == ("fused_mbconv", 5, 4, 2, 24)
    assert first.se_ratio == 0  # Fused-MBConv has no squeeze-excitation
    assert choices[0].label(24) == "Fk5e4x2c24" and same[1].label(24) == "Mk3e6sex2c24"
    assert (spec.stem, spec.head, spec.resolution) == (B0.stem, B0.head, B0.resolution)
    assert [s.stride for s in spec.stages] == [s.stride for s in B0.stages]
    assert sum(p.numel() for p in build_model(spec).parameters()) == estimate(spec).params
    narrow = candidate_spec(B0, tuple(replace(c, width=0.75) for c in same))
    assert [s.channels for s in narrow.stages] == [16, 24, 32, 64, 88, 144, 240]  # 0.75x, V1 rounding


def test_the_space_spans_tiny_to_huge_around_b0_and_needs_an_efficientnet_like_start():
    low, high = space_span(B0)
    assert low < 0.5 * estimate(B0).macs and high > 10 * estimate(B0).macs
    assert start_spec("efficientnetv2-b0").name == "efficientnetv2-b0"
    with pytest.raises(ScalerError, match="start: resnet18 has basic stages"):
        start_spec("resnet18")


@pytest.mark.parametrize("kwargs, message", [
    ({"target_mflops": 0}, "target MFLOPs"),
    ({"target_mflops": float("nan")}, "target MFLOPs"),
    ({"w": 0.5}, "w: must be a finite number in"),
    ({"trials": 0}, "trials"),
    ({"start": ""}, "start"),
    ({"pareto": "yes"}, "pareto"),
])
def test_bad_recipes_name_the_field(kwargs, message):
    with pytest.raises(ScalerError, match=message):
        BaselineRecipe(**kwargs)


# ---------------------------------------------------------------- the search


def test_candidates_outside_the_flops_band_are_never_trained(tmp_path, monkeypatch):
    calls = counting_train(monkeypatch)
    result = baseline_search(TINY, "b", storage_in(tmp_path), device="cpu")
    low, high = (bound * TINY.target_macs for bound in BAND)
    assert len(calls) == len(result.trials) == 3 and result.rejected > 0
    assert all(low <= t.macs <= high and t.state == "COMPLETE" for t in result.trials)
    study = optuna.load_study(study_name="b", storage=storage_in(tmp_path))
    outside = [t for t in study.get_trials() if t.user_attrs.get("failure_kind") == "outside"]
    assert len(outside) == result.rejected
    assert all(t.state.name == "PRUNED" and not low <= t.user_attrs["macs"] <= high for t in outside)
    # Each trained network is the candidate shrunk as the proxy recipe shrinks any network.
    assert calls[0] == TINY.proxy.shrink(candidate_spec(B0, result.trials[0].choices))


@pytest.mark.slow
def test_the_best_is_written_as_a_spec_other_commands_take(tmp_path, monkeypatch, capsys):
    result = baseline_search(TINY, "b", storage_in(tmp_path), device="cpu")
    assert result.best == max(result.trials, key=lambda t: t.reward)
    for t in result.trials:
        assert t.reward == pytest.approx(reward(t.top1, t.macs, TINY.target_macs))
    spec = load_spec(result.spec_path)
    assert result.spec_path == str(tmp_path / "b-baseline.json")
    assert spec == candidate_spec(B0, result.best.choices, "b-baseline") == result.spec
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "scale", "--baseline", result.spec_path, "--phi", "1", "--json")
    assert code == 0 and json.loads(out)["baseline"]["macs"] == estimate(spec).macs, err
    found = search(recipe_from_dict({"epochs": 1, "train_size": 128, "val_size": 64, "alpha_range": (1.1, 1.2),
                                     "beta_range": (1.05, 1.05), "baseline": result.spec_path}, QUICK),
                   Budget(macs=2e9), "s", f"sqlite:///{tmp_path}/s.db", device="cpu")
    assert found.trials[0].params == estimate(TINY.proxy.shrink(spec)).params  # the baseline trial: the found one
    assert found.fit.spec == fit_phi(spec, Budget(macs=2e9), found.best.alpha, found.best.beta, found.best.gamma).spec
    assert [t.number for t in result.top(2)] == [t.number for t in sorted(result.trials, key=lambda t: -t.reward)][:2]


def test_a_rerun_trains_nothing_more_and_more_trials_train_only_the_new(tmp_path, monkeypatch):
    calls = counting_train(monkeypatch)
    storage = storage_in(tmp_path)
    baseline_search(replace(TINY, trials=2), "b", storage, device="cpu")
    assert len(calls) == 2
    baseline_search(replace(TINY, trials=2), "b", storage, device="cpu")
    assert len(calls) == 2
    result = baseline_search(replace(TINY, trials=3), "b", storage, device="cpu")
    assert len(calls) == 3 and len(result.trials) == 3
    params = [json.dumps(t.choices, default=str) for t in result.trials]
    assert len(set(params)) == len(params)


def test_a_candidate_proposed_again_takes_its_score_untrained(tmp_path, monkeypatch):
    calls = counting_train(monkeypatch)
    storage = storage_in(tmp_path)
    first = baseline_search(replace(TINY, trials=1), "b", storage, device="cpu")
    study = optuna.load_study(study_name="b", storage=open_storage(storage))
    trained = next(t for t in study.get_trials() if t.number == first.trials[0].number)
    study.enqueue_trial(trained.params)  # as TPE would propose it again
    result = baseline_search(replace(TINY, trials=2), "b", storage, device="cpu")
    assert len(calls) == 2 and len(result.trials) == 2
    copies = [t for t in optuna.load_study(study_name="b", storage=open_storage(storage)).get_trials()
              if t.user_attrs.get("failure_kind") == "copy"]
    assert len(copies) == 1 and copies[0].value == trained.value and copies[0].params == trained.params


def test_an_interrupted_candidate_is_trained_again_on_resume(tmp_path, monkeypatch):
    storage, original, calls = storage_in(tmp_path), module.train, []

    def interrupted_second(network, *args, **kwargs):
        calls.append(network)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(network, *args, **kwargs)

    monkeypatch.setattr(module, "train", interrupted_second)
    with pytest.raises(KeyboardInterrupt):
        baseline_search(TINY, "b", storage, device="cpu")
    result = baseline_search(TINY, "b", storage, device="cpu")
    assert calls[2] == calls[1]  # the cut-off candidate, first of the resumed run
    complete = [t for t in result.trials if t.state == "COMPLETE"]
    assert len(complete) == 3 and [t.failure for t in result.trials if t.state == "FAIL"] == ["interrupted"]


def test_a_candidate_that_fails_by_itself_is_recorded_and_counts(tmp_path, monkeypatch):
    original, calls = module.train, []

    def out_of_memory_first(network, *args, **kwargs):
        calls.append(network)
        if len(calls) == 1:
            raise OutOfMemory("out of memory at batch size 32: injected")
        return original(network, *args, **kwargs)

    monkeypatch.setattr(module, "train", out_of_memory_first)
    result = baseline_search(TINY, "b", storage_in(tmp_path), device="cpu")
    assert len(calls) == 3 and [t.state for t in result.trials].count("FAIL") == 1
    assert result.trials[0].failure == "out of memory at batch size 32: injected"
    assert baseline_search(TINY, "b", storage_in(tmp_path), device="cpu").trials == result.trials  # not retried


def test_two_objectives_keep_accuracy_and_flops_apart(tmp_path):
    result = baseline_search(replace(TINY, pareto=True), "p", storage_in(tmp_path), device="cpu")
    study = optuna.load_study(study_name="p", storage=open_storage(storage_in(tmp_path)))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert t.values == [t.user_attrs["top1"], t.user_attrs["macs"] / 1e6]
    assert result.best is not None and result.spec_path is not None


def test_the_proxy_options_pass_through_to_training(tmp_path, monkeypatch, capsys):
    seen, original = [], module.train

    def recorded(network, *args, **kwargs):
        seen.append((network.resolution, kwargs["epochs"], kwargs["progressive"]))
        return original(network, *args, **kwargs)

    monkeypatch.setattr(module, "train", recorded)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "baseline-search", "--quick", "--target-mflops", "400", "--trials", "1",
                           "--epochs", "2", "--train-size", "128", "--val-size", "64", "--proxy-resolution", "40",
                           "--progressive", "--device", "cpu")
    assert code == 0, err
    assert seen == [(40, 2, 4)]


def test_other_settings_are_refused_naming_what_differs(tmp_path):
    baseline_search(replace(TINY, trials=1), "b", storage_in(tmp_path), device="cpu")
    with pytest.raises(ScalerError, match=r"other settings \(target_mflops differ\)"):
        baseline_search(replace(TINY, trials=1, target_mflops=300), "b", storage_in(tmp_path), device="cpu")


def test_the_plot_shows_the_studys_candidates(tmp_path):
    result = baseline_search(TINY, "b", storage_in(tmp_path), device="cpu")
    data = plot_baseline(baseline_report("b", storage_in(tmp_path)), tmp_path / "b.svg")
    assert data.points == tuple((t.number, t.macs, t.top1, t.reward) for t in result.trials)
    assert data.best == result.best.number and data.rejected == result.rejected
    assert data.band == (200e6, 600e6) and data.target_macs == 400e6
    assert data.pareto == pareto_front([(n, m, a) for n, m, a, _ in data.points])
    assert (tmp_path / "b.svg").stat().st_size > 10_000
    assert baseline_plot_data(result) == data


@pytest.mark.slow
def test_quick_baseline_search_command_end_to_end(tmp_path, monkeypatch, capsys, quick_baseline_study):
    trained, done = quick_baseline_study
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert len(data["trials"]) == 5 and data["best"]["reward"] == max(t["reward"] for t in data["trials"])
    assert load_spec(trained / data["spec_path"]).name == "baseline-quick-baseline"
    assert "candidate 1/5 (trial " in done.stderr and "ETA" in done.stderr
    shutil.copytree(trained / "studies", tmp_path / "studies")
    (tmp_path / "studies" / "baseline-quick-baseline.json").unlink()  # the rerun writes it again
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "baseline-search", "--quick", "--target-mflops", "400")
    assert code == 0 and "5 candidates trained" in out and "wrote studies/baseline-quick-baseline.json" in out
    code, out, _ = run_cli(capsys, "studies")
    assert code == 0 and "baseline-quick  baseline" in out
    code, out, _ = run_cli(capsys, "studies", "show", "baseline-quick")
    assert code == 0 and "reward" in out and "stages" in out
    code, out, err = run_cli(capsys, "plot", "baseline-quick")
    assert code == 0 and "5 candidates plotted" in out and (tmp_path / "studies" / "baseline-quick.png").exists()
    code, out, err = run_cli(capsys, "report", "baseline-quick")  # said in words, not "unknown key 'start'"
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is a baseline search" in err, err


@pytest.mark.parametrize("args, message", [
    ([], "Missing option '--target-mflops'"),
    (["--target-mflops", "0"], "target MFLOPs"),
    (["--target-mflops", "-5"], "target MFLOPs"),
    (["--target-mflops", "nan"], "target MFLOPs"),
    (["--target-mflops", "x"], "--target-mflops"),
    (["--target-mflops", "1"], "target: 1 MFLOPs is out of reach"),
    (["--target-mflops", "400", "--w", "0.3"], "w: must be"),
    (["--target-mflops", "400", "--trials", "0"], "trials"),
    (["--target-mflops", "400", "--start", "resnet18"], "start: resnet18 has basic stages"),
    (["--target-mflops", "400", "--start", "missing.json"], "missing.json"),
    (["--target-mflops", "400", "--data", "nope"], "unknown kind"),
    (["--target-mflops", "400", "--epochs", "0"], "epochs"),
    (["--target-mflops", "400", "-o", "best.yaml"], "must end in .json, .toml"),
    (["--target-mflops", "400", "-o", "no/such/folder/b.json"], "folder no/such/folder does not exist"),
    (["--target-mflops", "400", "--device", "cuda:9"], "cuda:9"),
    (["--target-mflops", "400", "--storage", "redis://nowhere"], "not a storage URL"),
])
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "baseline-search", "--quick", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "studies").exists()  # nothing written


def test_plot_family_of_a_baseline_study_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    baseline_search(replace(TINY, trials=1), "b", "sqlite:///studies/b.db", device="cpu")
    code, _, err = run_cli(capsys, "plot", "--family", "b")
    assert code == 2 and "is a baseline search" in err and "--baseline FILE" in err
