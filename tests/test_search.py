"""The search study: every candidate trained once, resumable, failures recorded, settings fingerprinted."""

import json
import subprocess
import sys
from dataclasses import replace

import optuna
import pytest

from scaler.budget import Budget
from scaler.cli import main
from scaler.errors import ScalerError
from scaler.search import QUICK, prepare_study, report, search
from scaler.train import TrainingFailed

# Smaller still than --quick: one epoch on a few images, for the machinery only.
TINY = replace(QUICK, epochs=1, train_size=128, val_size=64, alpha_range=(1.1, 1.2), beta_range=(1.05, 1.05))


def storage_in(tmp_path):
    return f"sqlite:///{tmp_path}/study.db"


def trained_points(study):
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    return sorted((t.params["kind"], t.params["alpha"], t.params["beta"], t.params["gamma"]) for t in done)


@pytest.mark.slow
def test_every_candidate_is_trained_once_and_a_rerun_trains_nothing(tmp_path):
    storage = storage_in(tmp_path)
    first = search(TINY, Budget(macs=1e9), "s", storage, device="cpu")
    study = optuna.load_study(study_name="s", storage=storage)
    points = trained_points(study)
    assert len(points) == len(TINY.candidates()) == len(set(points)) == 6
    assert first.best is not None and first.best.kind == "compound"
    assert first.fit is not None and first.fit.macs <= 1e9
    assert json.loads((tmp_path / "best.json").read_text())["resolution"] == first.fit.spec.resolution
    again = search(TINY, Budget(macs=1e9), "s", storage, device="cpu")
    assert len(optuna.load_study(study_name="s", storage=storage).get_trials()) == len(study.get_trials())
    assert again.best == first.best and again.fit.phi == first.fit.phi


@pytest.mark.slow
def test_an_interrupted_trial_is_trained_again_on_resume(tmp_path, monkeypatch):
    """Ctrl-C during the third training: that trial is recorded as interrupted and the next run trains it."""
    import scaler.search as module

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
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(trained_points(study)) == 2
    search(TINY, None, "s", storage, device="cpu")
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(trained_points(study)) == len(TINY.candidates())
    failed = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["failure"] == "interrupted"


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_passed_over(tmp_path, monkeypatch):
    import scaler.search as module

    original, calls = module.train, []

    def fail_on_depth(network, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # queued second: the depth-only reference
            raise TrainingFailed("RuntimeError: injected")
        return original(network, *args, **kwargs)

    monkeypatch.setattr(module, "train", fail_on_depth)
    storage = storage_in(tmp_path)
    result = search(TINY, None, "s", storage, device="cpu")
    failed = [t for t in result.trials if t.state == "FAIL"]
    assert [t.kind for t in failed] == ["depth"] and failed[0].failure == "RuntimeError: injected"
    assert sum(t.state == "COMPLETE" for t in result.trials) == len(TINY.candidates()) - 1


def test_other_settings_are_refused(tmp_path):
    storage = storage_in(tmp_path)
    prepare_study(TINY, "s", storage)
    prepare_study(TINY, "s", storage)  # the same settings join
    with pytest.raises(ScalerError, match="made with other settings"):
        prepare_study(replace(TINY, seed=1), "s", storage)
    with pytest.raises(ScalerError, match="made with other settings"):
        prepare_study(replace(TINY, step=0.05), "s", storage)


def test_candidates_are_queued_once(tmp_path):
    storage = storage_in(tmp_path)
    prepare_study(TINY, "s", storage)
    study = prepare_study(TINY, "s", storage)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == len(TINY.candidates())


def test_report_of_an_untrained_study_has_no_winner(tmp_path):
    storage = storage_in(tmp_path)
    prepare_study(TINY, "s", storage)
    result = report("s", storage, Budget(macs=1e9), TINY)
    assert result.best is None and result.fit is None


@pytest.mark.parametrize("args, message", [
    (["--budget-gflops", "0"], "macs"),
    (["--budget-gflops", "-4"], "macs"),
    (["--budget-gflops", "nan"], "macs"),
    (["--budget-gflops", "x"], "--budget-gflops"),
    (["--data", "nope"], "unknown kind"),
    (["--storage", "redis://nowhere"], "not a storage URL"),
    (["--epochs", "0"], "epochs"),
    (["--device", "cuda:9"], "cuda:9"),
    (["--proxy-width", "0"], "proxy width"),
    (["--proxy-resolution", "-8"], "proxy resolution"),
])
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--quick", *args])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("study:")]
    assert exit_info.value.code == 2 and len(lines) == 1 and message in lines[0], err


@pytest.mark.slow
def test_quick_search_command_end_to_end(tmp_path):
    # The default device, auto, is the CPU here.
    result = subprocess.run([sys.executable, "-m", "scaler", "search", "--quick", "--budget-gflops", "4", "--json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert {"best", "phi", "final", "trials"} <= set(out)
    assert out["final"]["macs"] <= 4e9 and out["phi"] > 0
    assert len(out["trials"]) == len(QUICK.candidates()) >= 3 + 4
    assert (tmp_path / "studies" / "quick.db").exists() and (tmp_path / "studies" / "best.json").exists()
    assert "trial 1/" in result.stderr
