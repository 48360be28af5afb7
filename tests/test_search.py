"""The search study: every candidate trained exactly once whatever happens to the workers (rerun, Ctrl-C, kill -9,
a worker lost on another machine, parallel workers on journal and PostgreSQL storage), failures recorded,
settings fingerprinted, TPE and pruning, recipes, and bad input as one line."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import optuna
import pytest
import tomli_w

import scaler.searches.compound as compound_module
import scaler.searches.compound_recipe as recipe_module
import scaler.study.engine as module  # where the proxy training is called from, for both searches
from scaler.budget import Budget, fit_phi
from scaler.cli import main
from scaler.errors import NonFiniteLoss, OutOfMemory, ScalerError, TrainingFailed
from scaler.spec import load_spec
from scaler.device import thread_share
from scaler.searches.compound import CompoundSearch, _sampler, open_study, planned_total, search
from scaler.searches.compound_records import read_search as report
from scaler.searches.compound_records import records
from scaler.searches.compound_recipe import QUICK, Recipe, load_recipe, recipe_from_dict
from scaler.plot import study_plot_data as plot_data
from scaler.report import report_study
from scaler.studies import list_studies
from scaler.study.storage import open_storage

from recipes import TEN, TINY


def storage_in(tmp_path):
    return f"sqlite:///{tmp_path}/study.db"


def settle(study, recipe):
    """Queue the recipe's candidates in the study (as the first worker does); how many were queued."""
    return module.settle(CompoundSearch(study, recipe, "cpu"))


def count_proposed(study, recipe):
    """How many TPE proposals count towards --trials."""
    return CompoundSearch(study, recipe, "cpu").proposed()


def write_recipe(path, recipe=TINY, **changes):
    data = {k: list(v) if isinstance(v, tuple) else v
            for k, v in recipe_from_dict(changes, recipe).to_dict().items()}
    path.write_text(tomli_w.dumps(data))
    return path


def completed(study_name, storage):
    """The candidate of every COMPLETE trial (a candidate trained twice would show twice; a seed repeat or a
    longer proxy is another candidate, and shows as one)."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    return sorted((r.kind, r.alpha, r.beta, r.gamma) + ((r.repeat,) if r.repeat else ()) +
                  ((r.epochs,) if r.epochs else ()) for r in records(study) if r.state == "COMPLETE")


def expected(recipe):
    return sorted((c.kind, c.alpha, c.beta, c.gamma) for c in recipe.candidates())


def run_scaler(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "scaler", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def trainers(study_name, storage):
    """The process ids that trained the study's trials (copies of a twin network trained nothing)."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    return {t.user_attrs["worker"]["pid"] for t in study.get_trials() if t.state.name == "COMPLETE"
            and "same_network_as" not in t.user_attrs}


@pytest.mark.slow
def test_every_candidate_is_trained_once_and_a_rerun_trains_nothing(tmp_path):
    storage = storage_in(tmp_path)
    first = search(TINY, Budget(macs=1e9), "s", storage, device="cpu")
    assert completed("s", storage) == expected(TINY) and len(expected(TINY)) == 7
    assert first.best is not None and first.best.kind == "compound"
    assert first.fit is not None and first.fit.macs <= 1e9
    assert json.loads((tmp_path / "s-best.json").read_text())["resolution"] == first.fit.spec.resolution
    assert first.spec_path == str(tmp_path / "s-best.json")
    trials = len(optuna.load_study(study_name="s", storage=storage).get_trials())
    again = search(TINY, Budget(macs=1e9), "s", storage, device="cpu")
    assert len(optuna.load_study(study_name="s", storage=storage).get_trials()) == trials
    assert again.best == first.best and again.fit.phi == first.fit.phi


@pytest.mark.slow
def test_each_trial_records_its_network_and_training(tmp_path):
    result = search(TINY, None, "s", storage_in(tmp_path), device="cpu")
    by_kind = {t.kind: t for t in result.trials}
    assert by_kind["baseline"].flops_ratio == 1.0 and by_kind["baseline"].effective == (1.0, 1.0, 1.0)
    for t in result.trials:
        assert t.params > 0 and t.macs > 0 and t.activations > 0 and len(t.top1_per_epoch) == TINY.proxy.epochs
        assert t.top1 == t.top1_per_epoch[-1]
        if t.kind != "baseline":  # every other candidate at 2x the baseline's real FLOPs, within 3 %
            assert abs(t.flops_ratio / 2 - 1) <= 0.03 and len(t.effective) == 3, t
    # A grid study records alpha, beta and gamma as parameters of every trial, references included, over one
    # range each (optuna-dashboard's parameter plots show the whole study).
    study = optuna.load_study(study_name="s", storage=storage_in(tmp_path))
    assert all(t.params == {k: t.user_attrs[k] for k in ("alpha", "beta", "gamma")} for t in study.trials)
    assert len({repr(t.distributions) for t in study.trials}) == 1
    # The depth-only reference doubles every stage's blocks; the stem and head stay, so the width makes up the rest.
    depth = by_kind["depth"]
    assert depth.effective[0] == 2.0 and depth.effective[1] > 1.0
    assert abs(by_kind["resolution"].resolution / (TINY.proxy.resolution * 2**0.5) - 1) <= 0.12


@pytest.mark.slow
def test_candidates_that_round_to_one_network_are_trained_once(tmp_path):
    """Two candidates a hair apart (alpha 1.1 and 1.1001) give the same network at equal cost."""
    result = search(replace(TINY, alpha_range=(1.1, 1.1001), step=0.0001), None, "s", storage_in(tmp_path),
                    device="cpu")
    first, second = [t for t in result.trials if t.kind == "compound"]
    assert (first.params, first.macs, first.resolution) == (second.params, second.macs, second.resolution)
    assert second.same_network_as == first.number and second.top1 == first.top1
    assert first.same_network_as is None and first.wall_seconds > 0


@pytest.mark.slow
def test_an_interrupted_trial_is_trained_again_on_resume(tmp_path, monkeypatch):
    """Ctrl-C during the third training: that trial is recorded as interrupted and the next run trains it."""
    original, calls = module.train, []

    def interrupted_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    storage = storage_in(tmp_path)
    monkeypatch.setattr(module, "train", interrupted_third)
    with pytest.raises(KeyboardInterrupt):
        search(TINY, None, "s", storage, device="cpu")
    monkeypatch.setattr(module, "train", original)
    assert len(completed("s", storage)) == 2
    search(TINY, None, "s", storage, device="cpu")
    assert completed("s", storage) == expected(TINY)
    study = optuna.load_study(study_name="s", storage=storage)
    failed = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["failure"] == "interrupted"
    # The candidate trained again counts as done, not failed, in every count: the studies table and the report.
    summary = list_studies(storage)[0]
    assert (summary.complete, summary.failed, summary.total) == (len(TINY.candidates()), 0, len(TINY.candidates()))
    assert plot_data(report("s", storage)).unscored == ()
    report_path = report_study("s", storage, tmp_path / "report")
    assert f"{len(TINY.candidates())} candidates, {len(TINY.candidates())} scored" in report_path.read_text()


@pytest.mark.slow
def test_the_winner_by_its_mean_is_the_answer_everywhere(tmp_path, capsys):
    """The winner is the best mean over its seeds, shown with its mean, n and standard error by `search`,
    `studies`, `studies show`, the plot and the report, and named in the study; the family validated is that
    winner's, chosen after the repeats."""
    storage = storage_in(tmp_path)
    result = search(TEN, None, "w", storage, device="cpu", repeats=1, validate_phis=(1.0, 2.0))
    best, winner = result.best, result.verdict.winner
    seeds = [t.top1 for t in result.trials if (t.kind, t.alpha, t.beta, t.gamma, t.phi, t.epochs) ==
             (best.kind, best.alpha, best.beta, best.gamma, 1.0, 0)]
    assert winner.n == len(seeds) == 2 and winner.mean == pytest.approx(sum(seeds) / 2)
    assert winner.standard_error == pytest.approx(result.verdict.noise.std / 2**0.5)
    shown = f"top-1 {winner.mean:.3f} ± {winner.standard_error:.3f} (mean of 2 seeds)"
    family = [t for t in result.trials if t.kind == "family"]
    assert family and all((t.alpha, t.beta, t.gamma) == (best.alpha, best.beta, best.gamma) for t in family)
    # At phi 2 beside the family: each single dimension and the recipe's published rule, at the same real cost.
    doubled = {t.kind: t for t in result.trials if t.phi == 2.0}
    assert set(doubled) == {"family", "depth", "width", "resolution", "fast"}
    assert all(abs(t.flops_ratio / 4 - 1) <= 0.03 and t.top1 is not None for t in doubled.values())
    stored = optuna.load_study(study_name="w", storage=storage).user_attrs["winner"]
    assert (stored["alpha"], stored["beta"], stored["mean"], stored["n"]) == (best.alpha, best.beta, winner.mean, 2)
    for args in (["search", "--recipe", write_recipe(tmp_path / "w.toml", TEN), "--study-name", "w", "--storage",
                  storage, "--repeats", "1", "--validate-phi", "1,2", "--device", "cpu"],
                 ["studies", "--storage", storage], ["studies", "show", "w", "--storage", storage]):
        main([str(a) for a in args])
        assert shown in capsys.readouterr().out, args
    summary = list_studies(storage)[0]
    assert summary.winner == winner and summary.best.number == best.number
    data = plot_data(result)
    assert data.means[[t.number for t in data.scored].index(best.number)] == pytest.approx(winner.mean)
    assert dict(data.curves)["found family"][1][2] == pytest.approx(winner.mean)  # phi 1: the winner, at its mean
    text = report_study("w", storage, tmp_path / "report").read_text()
    assert shown.replace("top-1 ", "") in text
    # The references beside it by their means too (the baseline is repeated: two seeds), and the difference of
    # the means.
    baseline = [t.top1 for t in result.trials if t.kind == "baseline"]
    mean = sum(baseline) / 2
    assert f"- baseline: top-1 {mean:.3f} ± {winner.standard_error:.3f} (mean of 2 seeds)" in text
    assert f"({winner.mean - mean:+.3f} for the winner)" in text


@pytest.mark.slow
def test_a_ctrl_c_while_a_trial_is_taken_from_the_queue_loses_nothing(tmp_path, monkeypatch):
    """A real SIGINT just after Optuna took a queued trial, before the trial named its worker: it is taken at
    the trial's start, recorded as an interruption, and the next run trains that candidate (it was left RUNNING
    with no owner, never trained again, when the Ctrl-C cut `ask` in half)."""
    original, asked = optuna.Study.ask, []

    def interrupted_ask(self, *args, **kwargs):
        trial = original(self, *args, **kwargs)
        asked.append(trial.number)
        if len(asked) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return trial

    storage = storage_in(tmp_path)
    monkeypatch.setattr(optuna.Study, "ask", interrupted_ask)
    with pytest.raises(KeyboardInterrupt):
        search(TINY, None, "s", storage, device="cpu")
    monkeypatch.undo()
    study = optuna.load_study(study_name="s", storage=storage)
    taken = study.trials[asked[1]]
    assert taken.state == optuna.trial.TrialState.FAIL and taken.user_attrs["failure"] == "interrupted"
    assert "macs" not in taken.user_attrs and len(completed("s", storage)) == 1  # never scored
    search(TINY, None, "s", storage, device="cpu")
    assert completed("s", storage) == expected(TINY)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))


def test_a_ctrl_c_while_the_data_load_is_taken_at_once(tmp_path, monkeypatch):
    """Loading the data holds no trial, so a Ctrl-C there ends the command at once, and no trial is begun."""
    def interrupted_load(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        pytest.fail("the Ctrl-C waited")

    storage = storage_in(tmp_path)
    monkeypatch.setattr(compound_module, "load_data", interrupted_load)
    with pytest.raises(KeyboardInterrupt):
        search(TINY, None, "s", storage, device="cpu")
    study = optuna.load_study(study_name="s", storage=storage)
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.WAITING}


def inject(monkeypatch, error, on_call=2):
    """Make the `on_call`-th training raise `error` (the depth-only reference: it is queued second)."""
    original, calls = module.train, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == on_call:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "train", failing)
    return original


@pytest.mark.slow
@pytest.mark.parametrize("error", [OutOfMemory("out of memory at batch size 32: injected"),
                                   NonFiniteLoss("loss became nan in epoch 1, step 3")])
def test_a_candidate_that_fails_by_itself_is_recorded_and_not_retrained(tmp_path, monkeypatch, error):
    storage = storage_in(tmp_path)
    original = inject(monkeypatch, error)
    result = search(TINY, None, "s", storage, device="cpu")
    failed = [t for t in result.trials if t.state == "FAIL"]
    assert [t.kind for t in failed] == ["depth"] and failed[0].failure == error.reason
    assert sum(t.state == "COMPLETE" for t in result.trials) == len(TINY.candidates()) - 1
    monkeypatch.setattr(module, "train", original)
    again = search(TINY, None, "s", storage, device="cpu")
    assert again.trials == result.trials


@pytest.mark.slow
def test_an_unexpected_training_error_is_passed_over_then_tried_again_by_the_next_run(tmp_path, monkeypatch):
    storage = storage_in(tmp_path)
    original = inject(monkeypatch, TrainingFailed("RuntimeError: injected"))
    result = search(TINY, None, "s", storage, device="cpu")
    assert [(t.kind, t.failure) for t in result.trials if t.state == "FAIL"] == [("depth", "RuntimeError: injected")]
    monkeypatch.setattr(module, "train", original)
    search(TINY, None, "s", storage, device="cpu")
    assert completed("s", storage) == expected(TINY)


def test_other_settings_are_refused_naming_what_differs(tmp_path):
    storage = storage_in(tmp_path)
    open_study(TINY, "s", storage)
    open_study(TINY, "s", storage)  # the same settings join
    open_study(replace(TINY, trials=50), "s", storage)  # trials is not a setting of the scores
    with pytest.raises(ScalerError, match=r"made with other settings \(seed differ"):
        open_study(recipe_from_dict({"seed": 1}, TINY), "s", storage)
    with pytest.raises(ScalerError, match=r"\(step differ"):
        open_study(replace(TINY, step=0.05), "s", storage)


def test_a_study_scored_by_an_older_version_is_refused(tmp_path, monkeypatch):
    storage = storage_in(tmp_path)
    monkeypatch.setattr(recipe_module, "VERSION", str(int(recipe_module.VERSION) - 1))
    open_study(TINY, "s", storage)
    monkeypatch.undo()
    with pytest.raises(ScalerError, match=r"\(version differ"):
        open_study(TINY, "s", storage)


def test_candidates_are_queued_once(tmp_path):
    storage = storage_in(tmp_path)
    study = open_study(TINY, "s", storage)
    assert settle(study, TINY) == len(TINY.candidates())
    assert settle(study, TINY) == 0
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == len(TINY.candidates())


@pytest.mark.slow
def test_a_candidate_queued_twice_is_trained_once(tmp_path):
    """Two workers that queue the same candidate at once: the second copy is surplus, never trained or shown."""
    storage = storage_in(tmp_path)
    study = open_study(TINY, "s", storage)
    settle(study, TINY)
    first = study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0]
    study.enqueue_trial(first.params, user_attrs=first.user_attrs)
    result = search(TINY, None, "s", storage, device="cpu")
    assert completed("s", storage) == expected(TINY) and len(result.trials) == len(TINY.candidates())
    surplus = [t for t in optuna.load_study(study_name="s", storage=storage).get_trials()
               if t.user_attrs.get("failure_kind") == "surplus"]
    assert len(surplus) == 1 and surplus[0].state.name == "FAIL"


def test_report_of_an_untrained_study_has_no_winner(tmp_path):
    storage = storage_in(tmp_path)
    settle(open_study(TINY, "s", storage), TINY)
    result = report("s", storage, Budget(macs=1e9))
    assert result.best is None and result.fit is None and result.recipe == TINY


@pytest.mark.slow
def test_tpe_proposes_feasible_candidates_and_resumes_to_more_trials(tmp_path):
    storage = storage_in(tmp_path)
    recipe = replace(TINY, sampler="tpe", trials=3, alpha_range=(1.0, 1.4), beta_range=(1.0, 1.4))
    result = search(recipe, None, "t", storage, device="cpu")
    proposed = [t for t in result.trials if t.kind == "compound"]
    # A repeat of a trained candidate takes its score untrained and is not listed twice: at most 3 are listed.
    assert 1 <= len(proposed) <= 3 and len(result.trials) == len(proposed) + 5  # + the 5 references
    for t in proposed:
        assert 1.0 <= t.alpha <= 1.4 and 1.0 <= t.beta <= 1.4 and t.gamma >= 1
        assert round(t.alpha, 2) == t.alpha and round(t.beta, 2) == t.beta
        assert t.alpha * t.beta**2 * t.gamma**2 == pytest.approx(2.0)
    study = optuna.load_study(study_name="t", storage=storage)
    assert count_proposed(study, recipe) == 3
    # Every trial of a TPE study, references and proposals alike, records alpha, beta and gamma over one range
    # each, so optuna-dashboard's parameter plots show the whole study.
    listed = [t for t in study.trials if t.user_attrs.get("failure_kind") not in ("surplus", "infeasible")]
    assert len(listed) >= 8 and {t.user_attrs["kind"] for t in listed} >= {"baseline", "depth", "compound"}
    assert all(t.params == {k: t.user_attrs[k] for k in ("alpha", "beta", "gamma")} for t in listed)
    assert len({repr(t.distributions) for t in listed}) == 1
    search(recipe, None, "t", storage, device="cpu")
    assert count_proposed(optuna.load_study(study_name="t", storage=storage), recipe) == 3
    search(replace(recipe, trials=5), None, "t", storage, device="cpu")
    assert count_proposed(optuna.load_study(study_name="t", storage=storage), recipe) == 5
    keys = completed("t", storage)
    assert len(keys) == len(set(keys))


def _tpe_study_with(recipe, proposals, reference_score):
    """An in-memory TPE study holding `proposals` ((alpha, beta, top-1) each, recorded as the search records them)
    and the recipe's references, every one scoring `reference_score`."""
    study = optuna.create_study(direction="maximize", sampler=_sampler(recipe, 0))
    ranges = compound_module.parameter_ranges(recipe)
    for c in recipe.candidates():
        study.add_trial(optuna.trial.create_trial(
            value=reference_score, params={"alpha": c.alpha, "beta": c.beta, "gamma": c.gamma},
            distributions=ranges, user_attrs={"kind": c.kind}))
    for alpha, beta, top1 in proposals:
        gamma = compound_module.proposal_gamma(alpha, beta)
        study.add_trial(optuna.trial.create_trial(
            value=top1, params={"alpha": alpha, "beta": beta, "gamma": gamma}, distributions=ranges,
            user_attrs={"kind": "compound", "alpha": alpha, "beta": beta, "gamma": gamma, "sampled": True}))
    return study


def test_tpe_models_its_proposals_alone_and_records_every_parameter():
    """TPE's model is the proposals', not the references' (which lie outside the ranges, alpha 2 for depth-only):
    however the references scored, the next proposal is the same, on the step grid, with its gamma derived and
    every parameter recorded over the study's one set of ranges."""
    recipe = replace(TINY, sampler="tpe", trials=20, alpha_range=(1.0, 1.4), beta_range=(1.0, 1.2))
    proposals = [(round(1.0 + 0.03 * i, 2), round(1.0 + 0.01 * i, 2), 0.5 + 0.02 * i) for i in range(12)]
    proposed = []
    for reference_score in (0.01, 0.99):
        study = _tpe_study_with(recipe, proposals, reference_score)
        trial = study.ask()
        attrs = CompoundSearch(study, recipe, "cpu")._propose(trial)
        proposed.append(attrs)
        assert 1.0 <= attrs["alpha"] <= 1.4 and 1.0 <= attrs["beta"] <= 1.2 and attrs["sampled"]
        assert round(attrs["alpha"], 2) == attrs["alpha"] and round(attrs["beta"], 2) == attrs["beta"]
        assert attrs["alpha"] * attrs["beta"] ** 2 * attrs["gamma"] ** 2 == pytest.approx(2.0)
        frozen = study.trials[-1]
        assert frozen.params == {k: attrs[k] for k in ("alpha", "beta", "gamma")}
        assert frozen.distributions == study.trials[0].distributions == compound_module.parameter_ranges(recipe)
    assert proposed[0] == proposed[1]
    # The model is TPE's own, not a random draw: it proposes near the best proposals (the last ones, high alpha).
    near = [_propose_next(recipe, proposals, number) for number in range(5)]
    assert all(a["alpha"] >= 1.25 for a in near), near


def _propose_next(recipe, proposals, extra):
    study = _tpe_study_with(recipe, proposals + [(1.0, 1.0, 0.1)] * extra, 0.5)
    return CompoundSearch(study, recipe, "cpu")._propose(study.ask())


@pytest.mark.slow
def test_prune_stops_candidates_below_the_median(tmp_path, monkeypatch):
    """Compound candidates that report chance-level top-1 are pruned once past the pruner's warm-up."""
    original = module.train

    def poor_compound(network, *args, on_epoch=None, **kwargs):
        poor = network.name.endswith("@compound")  # the proxy network of a compound candidate

        def report_epoch(epoch, top1):
            on_epoch(epoch, 0.0 if poor else top1 + 0.5)

        return original(network, *args, on_epoch=report_epoch, **kwargs)

    monkeypatch.setattr(module, "train", poor_compound)
    storage = storage_in(tmp_path)
    recipe = recipe_from_dict({"epochs": 2}, TEN)
    result = search(recipe, None, "p", storage, device="cpu", prune=True)
    states = {t.kind: t.state for t in result.trials if t.kind != "compound"}
    assert set(states.values()) == {"COMPLETE"}  # references are never pruned
    pruned = [t for t in result.trials if t.state == "PRUNED"]
    assert pruned and all(t.kind == "compound" and t.failure == "pruned after epoch 2" for t in pruned)
    assert len(search(recipe, None, "p", storage, device="cpu", prune=True).trials) == len(result.trials)


def test_a_recipe_file_sets_every_field_and_names_its_errors(tmp_path):
    path = write_recipe(tmp_path / "r.toml", TEN, seed=3, sampler="tpe", trials=7)
    assert load_recipe(path) == recipe_from_dict({"seed": 3, "sampler": "tpe", "trials": 7}, TEN)
    (tmp_path / "part.toml").write_text('data = "synthetic"\nepochs = 2\n')
    assert load_recipe(tmp_path / "part.toml") == recipe_from_dict({"epochs": 2}, Recipe())
    cases = {
        'epochs = "two"': "epochs: expected an integer",
        "epoch = 2": "unknown key 'epoch'",
        "alpha_range = [1.0]": "alpha range: expected [low, high]",
        "alpha_range = [1.3, 1.1]": "alpha range end",
        "proxy_width = -1": "proxy width",
        'sampler = "random"': "sampler: must be one of grid, tpe",
        "epochs = ": "not valid TOML",
        "seed = true": "seed: expected an integer",
    }
    for text, message in cases.items():
        (tmp_path / "bad.toml").write_text(text + "\n")
        with pytest.raises(ScalerError, match=message.replace("[", r"\[").replace("(", r"\(")):
            load_recipe(tmp_path / "bad.toml")
    with pytest.raises(ScalerError, match="cannot read"):
        load_recipe(tmp_path / "missing.toml")


def test_each_stage_rule_scores_the_grid_and_the_reference_it_changes():
    both = replace(TEN, stage_scaling=("uniform", "v2"))
    uniform = [c for c in both.candidates() if c.stage_scaling == "uniform"]
    v2 = [c for c in both.candidates() if c.stage_scaling == "v2"]
    assert [replace(c, stage_scaling="uniform") for c in uniform] == list(TEN.candidates())
    grid = [c for c in uniform if c.kind == "compound"]
    # baseline, width, resolution grow no depth: no stage rule changes them; depth and the fast rule do
    assert [c.kind for c in v2] == ["depth", "fast"] + ["compound"] * len(grid)
    assert both.total() == TEN.total() + 2 + len(grid)
    assert {c.stage_scaling for c in replace(TEN, stage_scaling=["v2"]).candidates()} == {"v2"}
    assert both.rule("v2").max_resolution == 480 and both.rule("uniform").max_resolution is None
    assert replace(both, max_resolution=300).rule("uniform").max_resolution == 300
    # On the proxy the cap shrinks with the resolution: TEN's proxy is 32 px of B0's 224.
    assert both.proxy_rule("v2").max_resolution == round(480 * 32 / 224)
    for bad, message in [("v2", "expected a list"), ((), "expected a list"), (("v2", "x"), "must be one of"),
                         (("v2", "v2"), "named twice")]:
        with pytest.raises(ScalerError, match=message):
            replace(TEN, stage_scaling=bad)


@pytest.mark.slow
def test_a_study_of_both_stage_rules(tmp_path, capsys):
    """Both rules in one study: v2 candidates that round to a uniform network share its score, the others train;
    the winner names its rule, and the budget fit uses it."""
    storage = storage_in(tmp_path)
    recipe = replace(TINY, stage_scaling=("uniform", "v2"))
    result = search(recipe, Budget(macs=40e9), "b", storage, device="cpu")
    rules = {(t.kind, t.stage_scaling) for t in result.trials}
    assert rules == {("baseline", "uniform"), ("depth", "uniform"), ("width", "uniform"), ("resolution", "uniform"),
                     ("fast", "uniform"), ("compound", "uniform"), ("depth", "v2"), ("fast", "v2"), ("compound", "v2")}
    assert len(result.trials) == len(recipe.candidates()) and all(t.state == "COMPLETE" for t in result.trials)
    depth = {t.stage_scaling: t for t in result.trials if t.kind == "depth"}
    # At depth 2 on this 10-block proxy, v2's extra weight on the last two stages is under half a block: rounded
    # as a whole, its depth-only network is uniform's, and takes its score untrained.
    assert depth["v2"].params == depth["uniform"].params and depth["v2"].same_network_as == depth["uniform"].number
    keys = [(t.kind, t.alpha, t.beta, t.stage_scaling) for t in result.trials]
    assert len(keys) == len(set(keys))
    study = optuna.load_study(study_name="b", storage=storage)
    assert all(t.params["stage_scaling"] == t.user_attrs["stage_scaling"] and "gamma" in t.params
               for t in study.trials)
    best = result.best
    assert result.to_dict()["best"]["stage_scaling"] == best.stage_scaling
    assert result.fit.spec == fit_phi(recipe.baseline, Budget(macs=40e9), best.alpha, best.beta, best.gamma,
                                      rule=recipe.rule(best.stage_scaling)).spec
    assert len(search(recipe, None, "b", storage, device="cpu").trials) == len(result.trials)  # nothing retrained
    main(["studies", "show", "b", "--storage", storage])
    out = capsys.readouterr().out
    assert "uniform, v2 stage scaling" in out and "depth [v2]" in out and "compound [uniform]" in out


@pytest.mark.slow
def test_tpe_chooses_the_stage_rule_too(tmp_path):
    storage = storage_in(tmp_path)
    recipe = replace(TINY, sampler="tpe", trials=4, alpha_range=(1.0, 1.4), beta_range=(1.0, 1.4),
                     stage_scaling=("uniform", "v2"))
    search(recipe, None, "t", storage, device="cpu")
    study = optuna.load_study(study_name="t", storage=storage)
    proposed = [t for t in study.get_trials() if t.user_attrs.get("sampled")]
    assert proposed and all(t.params["stage_scaling"] == t.user_attrs["stage_scaling"] in ("uniform", "v2")
                            for t in proposed if "stage_scaling" in t.params)
    assert count_proposed(study, recipe) == 4


def test_the_proxy_trains_progressively_when_the_recipe_says(tmp_path, monkeypatch):
    seen, original = [], module.train

    def recorded(*args, **kwargs):
        seen.append(kwargs["progressive"])
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "train", recorded)
    recipe = recipe_from_dict({"epochs": 2, "progressive": 2}, TINY)
    search(recipe, None, "g", storage_in(tmp_path), device="cpu")
    assert seen and set(seen) == {2}  # every training (twin networks share one)
    assert "progressive" in recipe.settings()
    assert recipe.settings() != recipe_from_dict({"progressive": 0}, recipe).settings()
    with pytest.raises(ScalerError, match="progressive"):
        recipe_from_dict({"progressive": 1}, TINY)


def test_the_shipped_recipes_load():
    from pathlib import Path

    folder = Path(__file__).parents[1] / "studies"
    assert load_recipe(folder / "default.toml") == Recipe()
    cifar = load_recipe(folder / "cifar10.toml")
    assert cifar.proxy.data.startswith("cifar10:")


@pytest.mark.parametrize("args, message", [
    (["--budget-gflops", "0"], "--budget-gflops: must be a positive number, got 0"),
    (["--budget-gflops", "-4"], "--budget-gflops: must be a positive number, got -4"),
    (["--budget-gflops", "nan"], "--budget-gflops: must be a positive number, got nan"),
    (["--budget-gflops", "x"], "--budget-gflops"),
    (["--budget-params", "0"], "--budget-params: must be a positive number, got 0"),
    (["--budget-memory-gb", "-2"], "--budget-memory-gb: must be a positive number, got -2"),
    (["--budget-latency-ms", "0"], "--budget-latency-ms: must be a positive number, got 0"),
    (["--storage", "mysql://me@127.0.0.1:1/none"], "for MySQL install one"),
    (["--budget-gflops", "4", "-o", "fitted.txt"], "output: fitted.txt must end in .json, .toml"),
    (["--budget-gflops", "0.0001"], "smallest"),
    (["--data", "nope"], "unknown kind"),
    (["--data", "cifar10:/no/such/folder"], "not a folder"),
    (["--storage", "redis://nowhere"], "not a storage URL"),
    (["--storage", "postgresql://postgres@127.0.0.1:1/none"], "cannot open"),
    (["--epochs", "0"], "epochs"),
    (["--device", "cuda:9"], "cuda:9"),
    (["--proxy-width", "0"], "proxy width"),
    (["--proxy-resolution", "-8"], "proxy resolution"),
    (["--workers", "0"], "workers: must be at least 1"),
    (["--workers", "2"], "cannot share SQLite"),
    (["--sampler", "random"], "--sampler"),
    (["--trials", "0"], "trials"),
    (["--repeats", "-1"], "repeats"),
    (["--check-ranks", "2"], "check ranks: must be at least 3"),
    (["--check-ranks", "9", "--check-top", "1"], "check top"),
    (["--baseline", "nope"], "nope"),
    (["--recipe", "missing.toml"], "cannot read"),
    (["--recipe", "x.toml", "--quick"], "--quick and --recipe"),
    (["--stage-scaling", "v3"], "stage scaling: must be one of uniform, v2, got 'v3'"),
    (["--stage-scaling", "v2,v2"], "stage scaling: a rule is named twice"),
    (["--stage-scaling", "uniform,v2", "--max-resolution", "100"], "max resolution: 100 px is below"),
    (["--stage-scaling", "v2", "--max-resolution", "100", "--budget-gflops", "4"], "max resolution: 100 px"),
    (["--max-resolution", "-1"], "max resolution: must be at least 0"),
    (["--progressive", "1"], "progressive: expected 0 (off) or at least 2 stages"),
])
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    quick = [] if "--recipe" in args else ["--quick"]
    with pytest.raises(SystemExit) as exit_info:
        main(["search", *quick, *args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "studies").exists()  # nothing written


def test_a_recipe_with_an_error_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text("epochs = 0\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--repeats", "0", "--recipe", "r.toml"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "scaler: error: recipe r.toml: epochs: must be at least 1, got 0"


@pytest.mark.slow
def test_quick_search_command_end_to_end(quick_study):
    # The default device, auto, is the CPU here.
    folder, result = quick_study
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert {"best", "phi", "final", "trials"} <= set(out)
    assert out["final"]["macs"] <= 4e9 and out["phi"] > 0
    # --quick repeats the baseline, the 3 best compound candidates, the depth-, width- and resolution-only
    # references and the fast rule once, for the noise and for paired comparisons.
    assert len([t for t in out["trials"] if t["repeat"] == 0]) == len(QUICK.candidates()) >= 3 + 5
    assert len([t for t in out["trials"] if t["repeat"] == 1]) == 8
    assert out["confidence"]["noise"]["dof"] >= 1 and "message" in out["confidence"]
    # The fast rule was trained at the study's cost, with two seeds, and the verdict compares the winner with it.
    fast = [t for t in out["trials"] if t["kind"] == "fast"]
    assert len(fast) == 2 and all(abs(t["flops_ratio"] / 2 - 1) <= 0.03 and t["top1"] is not None for t in fast)
    (rival,) = out["confidence"]["rules"]
    assert rival["kind"] == "fast" and rival["paired"]
    assert "the fast rule (dWr)" in out["confidence"]["message"]
    assert (folder / "studies" / "quick.db").exists() and (folder / "studies" / "quick-best.json").exists()
    assert "trial 1/" in result.stderr and "ETA" in result.stderr
    listed = json.loads(run_scaler("studies", "--json", cwd=folder).stdout)
    assert [(s["name"], s["complete"], s["total"]) for s in listed] == [("quick", len(out["trials"]),
                                                                          len(out["trials"]))]
    assert "seed noise: top-1 std" in run_scaler("search", "--quick", cwd=folder).stdout  # resumed, reported
    shown = run_scaler("studies", "show", "quick", cwd=folder)
    assert shown.returncode == 0 and "resolution" in shown.stdout and "best: alpha=" in shown.stdout


def test_studies_show_of_an_unknown_study_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["studies", "show", "nope"])
    assert exit_info.value.code == 2 and "study 'nope' not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["studies", "--storage", "sqlite:///missing.db"])
    assert exit_info.value.code == 2 and "missing.db does not exist" in capsys.readouterr().err


def wait_for(condition, timeout=240, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError("timed out")


def running_after_one_complete(storage):
    try:
        study = optuna.load_study(study_name="k", storage=storage)
    except KeyError:
        return False
    states = [t.state.name for t in study.get_trials()]
    return "COMPLETE" in states and "RUNNING" in states


@pytest.mark.slow
def test_kill_9_of_a_search_then_the_same_command_completes_every_candidate_once(tmp_path):
    recipe = write_recipe(tmp_path / "k.toml", TEN, epochs=2)
    storage = f"sqlite:///{tmp_path}/k.db"
    command = ["search", "--repeats", "0", "--recipe", recipe, "--storage", storage, "--device", "cpu"]
    process = subprocess.Popen([sys.executable, "-m", "scaler", *map(str, command)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: running_after_one_complete(storage))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    result = run_scaler(*command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert completed("k", storage) == expected(TEN)
    lost = [r for r in records(optuna.load_study(study_name="k", storage=storage)) if r.state == "FAIL"]
    assert len(lost) == 1 and lost[0].failure == "worker lost"


@pytest.mark.slow
def test_a_worker_lost_on_another_machine_is_found_by_its_heartbeat(tmp_path, monkeypatch):
    """A worker on 'another machine' (its host name differs, so its process id means nothing here) is killed
    mid-trial; once its heartbeat is older than the grace period, its candidate is trained again."""
    recipe = write_recipe(tmp_path / "k.toml", TEN, epochs=2)
    storage = f"sqlite:///{tmp_path}/k.db"
    remote = ("import socket, sys; import scaler.study.storage as s; s.HEARTBEAT_SECONDS = 1; s.GRACE_SECONDS = 3; "
              "socket.gethostname = lambda: 'another-machine'; from scaler.cli import main; main(sys.argv[1:])")
    process = subprocess.Popen([sys.executable, "-c", remote, "search", "--repeats", "0", "--recipe", str(recipe), "--storage", storage,
                                "--device", "cpu"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: running_after_one_complete(storage))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    monkeypatch.setattr("scaler.study.storage.HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr("scaler.study.storage.GRACE_SECONDS", 3)
    time.sleep(4)
    search(load_recipe(recipe), None, "k", storage, device="cpu")
    assert completed("k", storage) == expected(TEN)
    lost = [r for r in records(optuna.load_study(study_name="k", storage=storage)) if r.state == "FAIL"]
    assert len(lost) == 1 and lost[0].failure == "worker lost"


@pytest.mark.slow
def test_three_workers_on_a_journal_file_train_every_candidate_once(tmp_path):
    recipe = write_recipe(tmp_path / "w.toml", TEN)
    storage = str(tmp_path / "w.log")
    result = run_scaler("search", "--repeats", "0", "--recipe", recipe, "--storage", storage, "--workers", 3, "--device", "cpu",
                        "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert completed("w", storage) == expected(TEN)
    assert len(trainers("w", storage)) >= 2
    assert len(json.loads(result.stdout)["trials"]) == len(TEN.candidates())
    assert result.stderr.count("trial ") >= len(TEN.candidates())


@pytest.mark.slow
def test_three_machines_on_one_postgresql_study_train_every_candidate_once(tmp_path, postgres_url):
    """Three separate `scaler search` commands (as on three machines) against one study on a real server."""
    recipe = write_recipe(tmp_path / "pg.toml", TEN)
    command = [sys.executable, "-m", "scaler", "search", "--repeats", "0", "--threads", "1", "--recipe", str(recipe),
               "--storage", postgres_url, "--device", "cpu"]
    # The study is made once, first (many workers creating the schema at once can collide); then all three join.
    settle(open_study(TEN, "pg", postgres_url), TEN)
    processes = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err[-1000:] for _, err in outputs]
    assert completed("pg", postgres_url) == expected(TEN)
    assert len(trainers("pg", postgres_url)) >= 2
    listed = json.loads(run_scaler("studies", "--storage", postgres_url, "--json", cwd=tmp_path).stdout)
    assert [(s["name"], s["complete"], s["total"]) for s in listed] == [("pg", 11, 11)]


def test_workers_split_the_cores_and_never_fewer_than_one():
    assert thread_share(4, 2) == 2 and thread_share(3, 2) == 1 and thread_share(1, 8) == 1
    assert thread_share(None, 1) == len(os.sched_getaffinity(0))
    with pytest.raises(ScalerError, match="threads"):
        thread_share(0)


def test_the_first_total_counts_every_trial_that_will_run():
    """--quick scores 11 candidates, then repeats 8 of them once: the first ETA counts all 19."""
    assert planned_total(QUICK, 1, (), 0, 5) == 19
    # phi 1 adds only the family; phi 2 the family, the three single dimensions and the fast rule
    assert planned_total(QUICK, 2, (0, 1, 2), 3, 3) == 11 + 2 * 8 + 1 + 5 + 3
    assert planned_total(replace(QUICK, reference_rules=()), 1, (), 0, 5) == 17
    # With two stage rules the grid and the references that grow depth (depth-only, the fast rule) are trained,
    # and those references repeated, under each: 19 candidates, then the baseline, 3 compound, 6 references.
    assert planned_total(replace(QUICK, stage_scaling=("uniform", "v2")), 1, (), 0, 5) == 19 + 1 + 3 + 6


@pytest.mark.slow
def test_trials_record_their_threads_and_a_log_gets_one_progress_line_per_trained_trial(tmp_path, capsys):
    storage = storage_in(tmp_path)
    main(["search", "--recipe", str(write_recipe(tmp_path / "t.toml", TINY)), "--storage", storage, "--repeats", "0",
          "--threads", "1", "--device", "cpu"])
    err = capsys.readouterr().err
    trials = optuna.load_study(study_name="t", storage=storage).get_trials()
    trained = [t for t in trials if "wall_seconds" in t.user_attrs]
    assert trained and all(t.user_attrs["worker"]["threads"] == 1 for t in trials)
    assert sum(line.startswith("epoch 1/") for line in err.splitlines()) == len(trained), err
    assert f"study t: {len(TINY.candidates())} candidates" in err


def test_studies_lists_the_rest_when_a_file_in_studies_is_unreadable(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    settle(open_study(TINY, "good", "sqlite:///studies/good.db"), TINY)
    (tmp_path / "studies" / "broken.db").write_text("not a database")
    main(["studies"])
    captured = capsys.readouterr()
    assert "good" in captured.out and "broken" not in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scaler: skipped sqlite:///studies/broken.db: storage: "), lines
    with pytest.raises(SystemExit) as exit_info:  # named by the user, it must be readable
        main(["studies", "--storage", "sqlite:///studies/broken.db"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_each_study_writes_its_own_fitted_network_or_the_file_named(tmp_path):
    """Two studies beside each other never replace each other's fitted network; -o chooses the file."""
    storage = storage_in(tmp_path)
    one = search(TINY, Budget(macs=1e9), "one", storage, device="cpu")
    two = search(recipe_from_dict({"seed": 1}, TINY), Budget(macs=2e9), "two", storage, device="cpu")
    assert (one.spec_path, two.spec_path) == (str(tmp_path / "one-best.json"), str(tmp_path / "two-best.json"))
    assert load_spec(one.spec_path) != load_spec(two.spec_path)
    chosen = search(TINY, Budget(macs=1e9), "one", storage, device="cpu", output=str(tmp_path / "mine.toml"))
    assert chosen.spec_path == str(tmp_path / "mine.toml") and load_spec(chosen.spec_path) == load_spec(one.spec_path)
