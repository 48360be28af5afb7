"""The `scaler` command, run through `scaler.cli.main` (which owns the error handling) and, for a few cases,
as a real process: tables and JSON agree with the API and the published figures; a user's mistake is one line
on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import scaler
from scaler.baselines import baseline_names, get_baseline
from scaler.build import build_model
from scaler.cli import cli, main
from scaler.estimator import estimate
from scaler.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, compound
from scaler.spec import load_spec, to_dict

PUBLISHED_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "published.json"
B0 = get_baseline("efficientnet-b0")


@functools.cache
def published() -> dict:
    assert PUBLISHED_PATH.is_file(), f"reference figures missing: {PUBLISHED_PATH} (they ship beside the repository)"
    return json.loads(PUBLISHED_PATH.read_text())["models"]


def run(capsys, *args) -> tuple[int, str, str]:
    """`scaler ARGS` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys, *args) -> str:
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "Traceback" not in out + err
    return out


def ok_json(capsys, *args):
    return json.loads(ok(capsys, *args, "--json"))


def scaler_command() -> list[str]:
    """`python -m scaler` where the package has a __main__, else the console script beside this Python."""
    if (Path(scaler.__file__).parent / "__main__.py").is_file():
        return [sys.executable, "-m", "scaler"]
    script = Path(sys.executable).parent / "scaler"
    assert script.is_file(), "neither scaler/__main__.py nor a `scaler` console script next to sys.executable"
    return [str(script)]


def run_process(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*scaler_command(), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def _row(table: str, label: str) -> list[str]:
    """The cells of the table row whose first column is `label` (cells are separated by two spaces or more)."""
    for line in table.splitlines():
        if line.startswith(label + "  "):
            return [c.strip() for c in line[len(label):].split("  ") if c.strip()]
    raise AssertionError(f"no row {label!r} in:\n{table}")


# ---------------------------------------------------------------- baselines


def test_baselines_lists_every_name(capsys):
    out = ok(capsys, "baselines")
    names = [line.split()[0] for line in out.splitlines()[2:] if line.strip() and not line.startswith("FLOPs")]
    assert names == baseline_names()
    assert len(names) == 19
    assert "multiply-adds" in out


def test_baselines_json_matches_published(capsys):
    rows = ok_json(capsys, "baselines")
    assert [r["name"] for r in rows] == baseline_names()
    for row in rows:
        if row["name"].startswith("efficientnetv2-b"):  # not in the published set: tests/test_baselines.py
            continue
        ref = published()[row["name"]]
        assert row["params"] == ref["params"], row["name"]
        assert row["macs"] == ref["macs_conv_linear"], row["name"]
        assert row["fvcore_flops"] == ref["fvcore_total"], row["name"]
        assert row["resolution"] == ref["resolution"], row["name"]


# ---------------------------------------------------------------- show


def test_show_b3_stage_table(capsys):
    out = ok(capsys, "show", "efficientnet-b3")
    assert out.splitlines()[0].startswith("efficientnet-b3: 300 px")
    spec = get_baseline("efficientnet-b3")
    # part | block repeats channels stride kernel expansion se output
    stage1 = _row(out, "stage 1")
    assert stage1[:3] == ["mbconv", "2", "24"]
    assert _row(out, "stem")[2] == "40"
    for i, stage in enumerate(spec.stages):
        row = _row(out, f"stage {i + 1}")
        assert row[1:5] == [str(stage.repeats), str(stage.channels), str(stage.stride), str(stage.kernel)]
    assert _row(out, "head")[2] == "1536"
    assert _row(out, "stage 7")[-1] == "10x10"  # 300 px / 32, rounded up by the convolutions' padding


def test_show_json_is_the_spec(capsys):
    assert ok_json(capsys, "show", "resnet50") == json.loads(json.dumps(to_dict(get_baseline("resnet50"))))


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_show_a_spec_file_written_by_scale(capsys, tmp_path, suffix):
    path = tmp_path / f"b0-phi1{suffix}"
    ok(capsys, "scale", "--phi", "1", "-o", path)
    expected = compound(B0, phi=1)
    out = ok(capsys, "show", path)
    assert out.splitlines()[0].startswith(f"{expected.name}: {expected.resolution} px")
    for i, stage in enumerate(expected.stages):
        assert _row(out, f"stage {i + 1}")[1:3] == [str(stage.repeats), str(stage.channels)]
    assert ok_json(capsys, "show", path) == json.loads(json.dumps(to_dict(expected)))


# ---------------------------------------------------------------- estimate


REQUIRED = {"params", "macs", "fvcore_flops", "activations", "saved_activation_bytes", "peak_training_memory_bytes",
            "resolution"}


@pytest.mark.parametrize("name", ["efficientnet-b0", "resnet18", "convnext-tiny", "efficientnetv2-s"])
def test_estimate_json_fields_match_api(capsys, name):
    data = ok_json(capsys, "estimate", name)
    assert REQUIRED <= set(data)
    assert "parts" not in data and "measured" not in data
    e = estimate(name)
    for key in REQUIRED:
        assert data[key] == getattr(e, key), key
    assert data["params"] == published()[name]["params"]
    assert data["macs"] == published()[name]["macs_conv_linear"]


def test_estimate_table_says_flops_are_multiply_adds(capsys):
    out = ok(capsys, "estimate", "efficientnet-b0")
    assert f"{published()['efficientnet-b0']['params']:,}" in out
    assert f"{published()['efficientnet-b0']['macs_conv_linear']:,}" in out
    assert "multiply-adds" in out


def test_estimate_breakdown_adds_parts(capsys):
    data = ok_json(capsys, "estimate", "efficientnet-b0", "--breakdown")
    parts = data["parts"]
    assert [p["name"] for p in parts] == ["stem", *(f"stage {i}" for i in range(1, 8)), "head"]
    for key in ("params", "macs", "fvcore_flops", "activations", "saved_activation_bytes"):
        assert sum(p[key] for p in parts) == data[key], key
    table = ok(capsys, "estimate", "efficientnet-b0", "--breakdown")
    for part in ("stem", "stage 1", "stage 7", "head", "total"):
        _row(table, part)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet-b0"])
def test_estimate_verify_measures_the_same(capsys, name):
    data = ok_json(capsys, "estimate", name, "--verify", "--resolution", "64", "--batch-size", "2")
    measured = data["measured"]
    assert data["resolution"] == 64
    for key in ("params", "macs", "fvcore_flops", "activations"):
        assert measured[key] == data[key], key
    assert abs(measured["saved_activation_bytes"] - data["saved_activation_bytes"]) \
        <= 0.05 * measured["saved_activation_bytes"]
    assert measured["peak_training_memory_bytes"] is None  # only measured on CUDA


def test_estimate_verify_table(capsys):
    out = ok(capsys, "estimate", "resnet18", "--verify", "--resolution", "64", "--batch-size", "2")
    assert _row(out, "params")[:3] == [f"{11689512:,}", f"{11689512:,}", "+0.00%"]
    assert "not measured" in _row(out, "peak_training_memory_bytes")[1]


def test_estimate_latency_is_measured_on_the_device(capsys):
    data = ok_json(capsys, "estimate", "efficientnet-b0", "-r", "32", "--latency")
    assert 0 < data["latency_ms"] < 10_000 and data["resolution"] == 32
    out = ok(capsys, "estimate", "efficientnet-b0", "-r", "32", "--latency")
    assert "forward latency" in out and "ms on cpu (median of 7 passes)" in out
    code, out, err = run(capsys, "estimate", "efficientnet-b0", "--latency", "--device", "banana")
    assert code == 2 and err.strip().splitlines() == ["scaler: error: device: unknown device 'banana'; use auto, "
                                                      "cpu, cuda or cuda:K"]


def test_estimate_batch_size_and_dtype(capsys):
    base = ok_json(capsys, "estimate", "efficientnet-b0")
    b8 = ok_json(capsys, "estimate", "efficientnet-b0", "--batch-size", "8")
    b8_bf16 = ok_json(capsys, "estimate", "efficientnet-b0", "--batch-size", "8", "--dtype", "bfloat16")
    assert (b8["batch_size"], b8_bf16["batch_size"], b8_bf16["dtype"]) == (8, 8, "bfloat16")
    assert b8["saved_activation_bytes"] > 7 * base["saved_activation_bytes"]
    assert b8["saved_activation_bytes"] == 2 * b8_bf16["saved_activation_bytes"]  # no int64 indices in B0
    assert b8_bf16["saved_activation_bytes"] == estimate("efficientnet-b0", 8, "bfloat16").saved_activation_bytes
    assert b8_bf16["peak_training_memory_bytes"] < b8["peak_training_memory_bytes"]
    assert b8_bf16["params"] == b8["params"] == base["params"]
    sgd = ok_json(capsys, "estimate", "efficientnet-b0", "--optimizer", "sgd")
    assert sgd["optimizer_state_bytes"] == 0 < base["optimizer_state_bytes"]


def test_estimate_resolution_option(capsys):
    data = ok_json(capsys, "estimate", "mobilenetv2", "-r", "97")
    assert data["resolution"] == 97
    assert data["macs"] == estimate("mobilenetv2", resolution=97).macs < published()["mobilenetv2"]["macs_conv_linear"]


# ---------------------------------------------------------------- scale


def test_scale_phi3_table(capsys):
    out = ok(capsys, "scale", "--phi", "3")
    expected = compound(B0, phi=3)
    for i, (old, new) in enumerate(zip(B0.stages, expected.stages)):
        row = _row(out, f"stage {i + 1}")
        assert " ".join(row[1:]) == f"{old.repeats} -> {new.repeats} {old.channels} -> {new.channels}"
    assert f"resolution  224 -> {expected.resolution}" in out
    assert f"{estimate(expected).macs:,}" in out
    assert "x8.432 after rounding" in out
    assert "multiply-adds" in out


def test_scale_phi3_json_flops_ratio(capsys):
    data = ok_json(capsys, "scale", "--phi", "3")
    assert (data["alpha"], data["beta"], data["gamma"], data["phi"]) == (PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, 3)
    assert data["flops_ratio"] == pytest.approx(8.43, abs=0.005)  # DESIGN.md: "8.43x at phi = 3"
    expected = compound(B0, phi=3)
    assert data["flops_ratio"] == estimate(expected).macs / estimate(B0).macs
    assert data["scaled"]["spec"] == json.loads(json.dumps(to_dict(expected)))
    assert data["scaled"]["resolution"] == expected.resolution
    assert data["baseline"]["macs"] == published()["efficientnet-b0"]["macs_conv_linear"]
    assert data["multipliers"]["depth"] == pytest.approx(1.2**3)
    assert data["output"] is None


def test_scale_with_the_v2_stage_rule(capsys):
    data = ok_json(capsys, "scale", "--phi", "7", "--baseline", "efficientnetv2-b0", "--stage-scaling", "v2")
    expected = compound(get_baseline("efficientnetv2-b0"), phi=7, rule=scaler.stage_rule("v2"))
    assert (data["stage_scaling"], data["max_resolution"]) == ("v2", 480)
    assert data["scaled"]["spec"] == json.loads(json.dumps(to_dict(expected)))
    assert data["scaled"]["resolution"] == 480 < compound(get_baseline("efficientnetv2-b0"), phi=7).resolution
    capped = ok_json(capsys, "scale", "--phi", "3", "--max-resolution", "300")
    assert (capped["stage_scaling"], capped["max_resolution"], capped["scaled"]["resolution"]) == ("uniform", 300, 300)
    out = ok(capsys, "scale", "--phi", "2", "--stage-scaling", "v2")
    assert "v2 stage scaling, capped at 480 px" in out


@pytest.mark.parametrize("phi, low, high", [(-1.5, 0.3, 0.9), (-1, 0.3, 0.9), (0, 1, 1), (1, 2.0, 2.5)])
def test_scale_any_phi(capsys, phi, low, high):
    data = ok_json(capsys, "scale", "--phi", phi)
    assert low <= data["flops_ratio"] <= high
    assert (data["scaled"]["resolution"] < 224) == (phi < 0)
    if phi == 0:
        assert data["scaled"]["spec"] == json.loads(json.dumps(to_dict(B0)))


def test_scale_other_baseline_and_coefficients(capsys):
    data = ok_json(capsys, "scale", "--phi", "1", "--baseline", "resnet18", "--alpha", "1.0", "--beta", "1.0",
                   "--gamma", "1.3")
    assert data["scaled"]["params"] == published()["resnet18"]["params"]  # only the resolution changed
    assert data["scaled"]["resolution"] == 288
    assert data["flops_ratio"] > 1.5


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_scale_output_file_is_accepted_everywhere(capsys, tmp_path, suffix):
    path = tmp_path / f"b3-like{suffix}"
    out = ok(capsys, "scale", "--phi", "3", "--output", path)
    assert f"wrote {path}" in out
    expected = compound(B0, phi=3)
    assert load_spec(path) == expected
    assert ok_json(capsys, "estimate", path)["macs"] == estimate(expected).macs
    ok(capsys, "show", path)
    model = scaler.build_model(path)
    assert sum(p.numel() for p in model.parameters()) == estimate(expected).params


def test_scale_output_with_json(capsys, tmp_path):
    path = tmp_path / "small.json"
    data = ok_json(capsys, "scale", "--phi", "-2", "-o", path)
    assert data["output"] == str(path)
    spec = load_spec(path)
    assert to_dict(spec) == data["scaled"]["spec"]
    assert sum(p.numel() for p in build_model(spec).parameters()) == data["scaled"]["params"]


# ---------------------------------------------------------------- user errors


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _spec_with_even_kernel(tmp_path: Path) -> Path:
    data = to_dict(B0)
    data["stages"][0]["kernel"] = 4
    return _write(tmp_path, "even-kernel.json", json.dumps(data))


BAD = [
    # (id, args with {tmp} for the test's folder, fragments the one line must contain)
    ("unknown baseline show", ["show", "efficientnet-b9"], ["efficientnet-b9", *baseline_names()]),
    ("unknown baseline estimate", ["estimate", "efficientnet-b9"], ["efficientnet-b9", "efficientnet-b0", "resnet50"]),
    ("unknown baseline scale", ["scale", "--phi", "1", "--baseline", "nope"], ["nope", "efficientnet-b0"]),
    ("json syntax", ["show", "{tmp}/broken.json"], ["broken.json", "JSON"]),
    ("toml syntax", ["estimate", "{tmp}/broken.toml"], ["broken.toml", "TOML"]),
    ("field error", ["show", "{tmp}/even-kernel.json"], ["even-kernel.json", "stages[0].kernel"]),
    ("missing file", ["estimate", "{tmp}/missing.json"], ["missing.json"]),
    ("phi abc", ["scale", "--phi", "abc"], ["phi", "abc"]),
    ("phi nan", ["scale", "--phi", "nan"], ["phi"]),
    ("phi inf", ["scale", "--phi", "inf"], ["phi"]),
    ("phi -inf", ["scale", "--phi", "-inf"], ["phi"]),
    ("phi missing", ["scale"], ["phi"]),
    ("alpha 0.9", ["scale", "--phi", "1", "--alpha", "0.9"], ["alpha", "0.9"]),
    ("gamma nan", ["scale", "--phi", "1", "--gamma", "nan"], ["gamma"]),
    ("resolution 0", ["estimate", "efficientnet-b0", "--resolution", "0"], ["resolution"]),
    ("resolution -5", ["estimate", "efficientnet-b0", "--resolution", "-5"], ["resolution"]),
    ("resolution below stride", ["estimate", "resnet18", "-r", "16"], ["resolution", "32"]),
    ("resolution abc", ["estimate", "resnet18", "-r", "abc"], ["resolution", "abc"]),
    ("batch size 0", ["estimate", "efficientnet-b0", "--batch-size", "0"], ["batch size"]),
    ("batch size -3", ["estimate", "efficientnet-b0", "-b", "-3"], ["batch size"]),
    ("unknown dtype", ["estimate", "efficientnet-b0", "--dtype", "int8"], ["dtype", "int8"]),
    ("unknown optimizer", ["estimate", "efficientnet-b0", "--optimizer", "lion"], ["optimizer", "lion"]),
    ("unknown option", ["estimate", "efficientnet-b0", "--bogus"], ["--bogus"]),
    ("unknown command", ["bogus"], ["bogus"]),
    ("missing argument", ["show"], ["NETWORK"]),
    ("verify on cuda without cuda", ["estimate", "resnet18", "--verify", "--device", "cuda", "-r", "32", "-b", "2"],
     ["cuda"]),
    ("output in /proc", ["scale", "--phi", "1", "-o", "/proc/nope.json"], ["/proc/nope.json"]),
    ("output in missing dir", ["scale", "--phi", "1", "-o", "{tmp}/no-such-dir/x.json"], ["no-such-dir/x.json"]),
    ("output is a directory", ["scale", "--phi", "1", "-o", "{tmp}"], ["directory"]),
    ("output suffix", ["scale", "--phi", "1", "-o", "{tmp}/spec.yaml"], ["spec.yaml", ".json"]),
    ("bad spec as baseline", ["scale", "--phi", "1", "--baseline", "{tmp}/even-kernel.json"], ["stages[0].kernel"]),
    ("unknown stage rule", ["scale", "--phi", "1", "--stage-scaling", "v3"], ["--stage-scaling", "v3"]),
    ("cap below the baseline", ["scale", "--phi", "1", "--stage-scaling", "v2", "--max-resolution", "192"],
     ["max resolution", "192", "224"]),
    ("cap zero", ["scale", "--phi", "1", "--max-resolution", "0"], ["max resolution"]),
    ("cap abc", ["scale", "--phi", "1", "--max-resolution", "abc"], ["--max-resolution", "abc"]),
]


def _prepare(tmp_path: Path, args: list[str]) -> list[str]:
    _write(tmp_path, "broken.json", '{"name": "x", "stem": ')
    _write(tmp_path, "broken.toml", 'name = \n')
    _spec_with_even_kernel(tmp_path)
    return [a.replace("{tmp}", str(tmp_path)) for a in args]


NEEDS_NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")


@pytest.mark.parametrize("args, fragments", [
    pytest.param(a, f, id=i, marks=NEEDS_NO_CUDA if "cuda" in a else ()) for i, a, f in BAD])
def test_user_error_is_one_line_and_status_2(capsys, tmp_path, args, fragments):
    args = _prepare(tmp_path, args)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert out == ""
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("scaler: error: ")
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), (fragment, lines[0])
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
    assert not Path("/proc/nope.json").exists()


def test_verify_with_one_pixel_feature_map_is_one_line(capsys):
    code, out, err = run(capsys, "estimate", "resnet18", "--verify", "--resolution", "32")
    assert "Traceback" not in out + err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "batch size 1" in err


# ---------------------------------------------------------------- help


def test_top_level_help(capsys):
    out = ok(capsys, "--help")
    for name in cli.commands:
        assert name in out
    assert "multiply-adds" in out


def test_top_level_help_has_an_example(capsys):
    assert "example" in ok(capsys, "--help").lower()


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_command_help_has_an_example(capsys, command):
    for flag in ("--help", "-h"):
        out = ok(capsys, command, flag)
        assert out.startswith(f"Usage: scaler {command}")
        assert f"Example: scaler {command}" in out


def test_version(capsys):
    assert ok(capsys, "--version").strip().endswith("0.1.0")


# ---------------------------------------------------------------- as a real process


def test_process_baselines_json():
    result = run_process("baselines", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    params = {r["name"]: r["params"] for r in rows}
    assert {n: params[n] for n in published()} == {n: m["params"] for n, m in published().items()}
    assert params["efficientnetv2-b3"] == 14_358_406


def test_process_scale_writes_spec(tmp_path):
    result = run_process("scale", "--phi", "1", "-o", "b0.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert load_spec(tmp_path / "b0.toml") == compound(B0, phi=1)


@pytest.mark.parametrize("args, fragment", [
    (["show", "efficientnet-b9"], "efficientnet-b9"),
    (["scale", "--phi", "nan"], "phi"),
    (["scale", "--phi", "1", "-o", "/proc/nope.json"], "/proc/nope.json"),
])
def test_process_user_error(args, fragment):
    result = run_process(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip("\n").splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def test_process_help():
    result = run_process("--help")
    assert result.returncode == 0
    assert "Usage: scaler" in result.stdout and result.stderr == ""


def _packages_loaded(args: list[str], folder) -> set[str]:
    """The top-level packages a command imported (run in a fresh process in `folder`); it must print something."""
    args = [a.format(tmp=folder) for a in args]
    script = ("import sys\nfrom scaler.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True,
                          cwd=folder)
    assert done.stdout
    return set(done.stderr.strip().splitlines()[-1].split())


@pytest.mark.parametrize("args", [["--help"], ["baselines"], ["show", "efficientnet-b3"], ["scale", "--phi", "3"],
                                  ["estimate", "efficientnet-b0", "--breakdown"], ["search", "--help"],
                                  ["plot", "--family", "-o", "{tmp}/family.png", "--help"]])
def test_light_commands_import_no_torch_optuna_or_matplotlib(args, tmp_path):
    """What needs no tensor, study or figure starts at once: the heavy libraries are never imported."""
    loaded = _packages_loaded(args, tmp_path)
    assert not loaded & {"torch", "optuna", "matplotlib", "fvcore", "numpy"}, loaded


@pytest.mark.parametrize("args, unneeded", [
    (["studies"], {"torch", "matplotlib", "fvcore"}),  # reads studies: optuna, never a tensor or a figure
    (["plot", "--family", "-o", "{tmp}/family.png"], {"torch", "optuna", "fvcore"}),  # a figure from the estimator
])
def test_commands_that_read_or_draw_import_only_what_they_need(args, unneeded, tmp_path):
    loaded = _packages_loaded(args, tmp_path)
    assert not loaded & unneeded, loaded & unneeded


@pytest.mark.slow
def test_an_early_ctrl_c_is_one_line_and_status_130(tmp_path):
    """A Ctrl-C at any moment while `scaler train` loads its libraries: `scaler: interrupted`, exit status 130, no
    traceback, and never swallowed (one that came while torch's C start-up imported numpy went on to train)."""
    for delay in (0.3, 0.6, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.2, 1.5, 2.0, 3.0):
        process = subprocess.Popen([sys.executable, "-m", "scaler", "train", "efficientnet-b0", "--device", "cpu"],
                                   cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"a Ctrl-C {delay} s after the start was swallowed: {err[-300:]}")
        # Exit status 130, or ended by the signal itself: a shell reports both as 130.
        assert process.returncode in (130, -signal.SIGINT) and err.strip() == "scaler: interrupted", (delay, err)


def test_every_option_of_every_command_says_what_it_does():
    def options(group, prefix=""):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from options(command, f"{prefix}{name} ")
            yield from ((f"{prefix}{name}", p) for p in command.params if p.param_type_name == "option")

    missing = [(name, option.opts) for name, option in options(cli) if not option.help and "--help" not in option.opts]
    assert not missing


def test_a_negative_phi_says_how_far_the_baseline_was_shrunk():
    from scaler.budget import Budget, fit_phi
    from scaler.tables import shrink_note

    fit = fit_phi("efficientnet-b0", Budget(macs=1e6))  # 1 MFLOP: far below B0's 390
    note = shrink_note("efficientnet-b0", fit)
    assert fit.phi < -10 and note.startswith("note: phi is negative: the budget is below efficientnet-b0 itself")
    assert f"{fit.spec.resolution} px instead of 224" in note and "% of its FLOPs" in note
