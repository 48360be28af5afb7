"""Reliability, measured: fuzzed input (spec files, recipe files, options) is either accepted or one line with exit
status 2; a study survives Ctrl-C, a PostgreSQL restart and a second study in its database, and eight workers on
one PostgreSQL study train exactly the grid. docs/RELIABILITY.md lists these with the commands that reproduce
them."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.cli import main
from scaler.errors import ScalerError
from scaler.searches.compound import open_study
from scaler.searches.compound_records import records
from scaler.searches.compound_recipe import Recipe, load_recipe, recipe_from_dict
from scaler.spec import loads, to_dict
from scaler.baselines import get_baseline
from test_search import TEN, completed, expected, run_scaler, settle, trainers, wait_for, write_recipe

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(value=json_values)
def test_any_json_document_is_a_spec_or_one_spec_error(value):
    try:
        loads(json.dumps(value), "json")
    except ScalerError as error:
        assert "\n" not in str(error)


@FUZZ
@given(text=st.text(max_size=200), fmt=st.sampled_from(["json", "toml"]))
def test_any_text_is_a_spec_or_one_spec_error(text, fmt):
    try:
        loads(text, fmt)
    except ScalerError as error:
        assert str(error)


@FUZZ
@given(path=st.lists(st.sampled_from(["stem", "stages", "head", 0, 1, "channels", "repeats", "kernel", "stride",
                                      "expansion", "se_ratio", "block", "resolution", "dropout", "norm_eps"]),
                     min_size=1, max_size=3), value=json_values)
def test_a_baseline_with_any_field_replaced_is_a_spec_or_one_spec_error(path, value):
    """Change one field (or part of one) of a real baseline to anything: valid or one error, never a crash."""
    data = to_dict(get_baseline("efficientnet-b0"))
    target = data
    for key in path[:-1]:
        try:
            target = target[key]
        except (KeyError, IndexError, TypeError):
            return
    try:
        target[path[-1]] = value
    except (IndexError, TypeError):
        return
    try:
        loads(json.dumps(data), "json")
    except ScalerError as error:
        assert str(error)


recipe_values = st.one_of(st.integers(-5, 100_000), st.floats(), st.text(max_size=8), st.booleans(),
                          st.lists(st.floats(0.5, 3), max_size=3), st.lists(st.integers(0, 3), max_size=3))


@FUZZ
@given(data=st.dictionaries(st.sampled_from(list(Recipe.__dataclass_fields__) + ["nope"]), recipe_values,
                            max_size=6))
def test_any_recipe_table_is_a_recipe_or_one_error(data):
    try:
        recipe = recipe_from_dict(data)
    except ScalerError as error:
        assert str(error).startswith("recipe: ") and "\n" not in str(error)
    else:
        assert recipe.total() >= 4


@FUZZ
@given(text=st.text(max_size=200))
def test_any_recipe_file_is_a_recipe_or_one_error(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    try:
        load_recipe(path)
    except ScalerError as error:
        assert str(error).startswith(f"recipe {path}")


option_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str), st.integers().map(str),
                          st.text(max_size=8), st.sampled_from(["", "-1", "0", "1e309", "nan", "inf", "--json"]))


def exit_status(capsys, args):
    try:
        main(args)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr()


@FUZZ
@given(phi=option_values, alpha=option_values, resolution=option_values, batch=option_values,
       dtype=st.sampled_from(["float32", "bfloat16", "int8", ""]))
def test_fuzzed_options_are_accepted_or_one_line_exit_2(capsys, phi, alpha, resolution, batch, dtype):
    for args in (["scale", "--phi", phi, "--alpha", alpha], ["scale", "--phi", phi, "--baseline", "resnet18"],
                 ["scale", "--phi", phi, "--stage-scaling", "v2", "--max-resolution", resolution],
                 ["estimate", "efficientnet-b0", "--resolution", resolution, "--batch-size", batch, "--dtype", dtype],
                 ["show", alpha], ["estimate", phi]):
        code, captured = exit_status(capsys, args)
        assert code in (0, 2), (args, captured.err)
        if code == 2:
            lines = captured.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("scaler: error: "), (args, captured.err)


def test_a_server_that_does_not_answer_is_one_line(tmp_path, monkeypatch, capsys):
    """A port that takes the connection and never speaks: refused after the connect timeout, not a hang."""
    monkeypatch.setattr("scaler.study.storage.CONNECT_SECONDS", 2)
    monkeypatch.chdir(tmp_path)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/none"
        started = time.monotonic()
        code, captured = exit_status(capsys, ["search", "--quick", "--storage", url])
    assert code == 2 and time.monotonic() - started < 30
    assert captured.err.strip().startswith("scaler: error: storage: cannot open postgresql+psycopg://"), captured.err
    assert len(captured.err.strip().splitlines()) == 1 and not (tmp_path / "studies").exists()


def start(command, cwd, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "scaler", *map(str, command)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def some_done_one_running(name, storage):
    from scaler.study.storage import open_storage

    try:
        study = optuna.load_study(study_name=name, storage=open_storage(storage))
    except (KeyError, ScalerError):
        return False
    states = [t.state.name for t in study.get_trials()]
    return states.count("COMPLETE") >= 2 and "RUNNING" in states


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_then_the_same_command_completes_every_candidate_once(tmp_path, workers):
    recipe = write_recipe(tmp_path / "c.toml", TEN, epochs=2)
    storage = str(tmp_path / "c.log")
    command = ["search", "--repeats", "0", "--recipe", recipe, "--storage", storage, "--workers", workers, "--device", "cpu"]
    process = start(command, tmp_path, start_new_session=True)  # its own process group, as a terminal's job
    wait_for(lambda: some_done_one_running("c", storage))
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches every process of the job
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err.strip().endswith("scaler: interrupted"), err[-2000:]
    assert "Traceback" not in err
    result = run_scaler(*command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert completed("c", storage) == expected(TEN)
    from scaler.study.storage import open_storage

    failed = [r for r in records(optuna.load_study(study_name="c", storage=open_storage(storage)))
              if r.state == "FAIL"]
    assert failed and all(r.failure == "interrupted" for r in failed)


@pytest.mark.slow
def test_a_postgresql_restart_mid_study_loses_nothing(tmp_path, postgres_server, postgres_url):
    recipe = write_recipe(tmp_path / "r.toml", TEN, epochs=2)
    command = ["search", "--repeats", "0", "--recipe", recipe, "--storage", postgres_url, "--device", "cpu"]
    process = start(command, tmp_path)
    wait_for(lambda: some_done_one_running("r", postgres_url))
    postgres_server.restart()
    _, err = process.communicate(timeout=300)
    # The running command either rides over the restart or stops with one line; nothing is lost either way.
    assert process.returncode in (0, 1) and "Traceback" not in err, err[-2000:]
    result = run_scaler(*command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert completed("r", postgres_url) == expected(TEN)


@pytest.mark.slow
def test_two_studies_share_one_database(tmp_path, postgres_url):
    """Two studies with other settings in one PostgreSQL database, run at the same time: each completes its own
    grid once, and neither's fingerprint stops the other."""
    first = write_recipe(tmp_path / "a.toml", TEN)
    second = write_recipe(tmp_path / "b.toml", TEN, seed=7, alpha_range=(1.0, 1.2))
    processes = [start(["search", "--repeats", "0", "--threads", "1", "--recipe", recipe, "--storage", postgres_url,
                        "--device", "cpu"], tmp_path)
                 for recipe in (first, second)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-1000:] for _, err in outputs]
    assert completed("a", postgres_url) == expected(TEN)
    assert completed("b", postgres_url) == expected(load_recipe(second))
    assert sorted(optuna.get_all_study_names(postgres_url.replace("postgresql:", "postgresql+psycopg:"))) == ["a", "b"]


@pytest.mark.slow
def test_eight_workers_on_one_postgresql_study_train_exactly_the_grid(tmp_path, postgres_url):
    """Load: eight worker processes of one command against one PostgreSQL study, a tiny real proxy: exactly the
    grid completes, nothing twice, no worker fails."""
    load = recipe_from_dict({"alpha_range": (1.0, 1.4), "beta_range": (1.0, 1.2), "step": 0.1}, TEN)
    assert len(load.candidates()) >= 16
    recipe = write_recipe(tmp_path / "load.toml", load)
    settle(open_study(load, "load", postgres_url), load)  # made once, first; the workers join it
    result = run_scaler("search", "--repeats", "0", "--recipe", recipe, "--storage", postgres_url, "--workers", 8,
                        "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert completed("load", postgres_url) == expected(load)
    assert len(trainers("load", postgres_url)) >= 3
