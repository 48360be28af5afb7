"""The programs and spec files in examples/ keep working."""

import subprocess
import sys
from pathlib import Path

import pytest

import scaler

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("program", ["compound_sweep.py", "train_step.py"])
def test_example_program_runs(program):
    result = subprocess.run([sys.executable, f"examples/{program}"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "params" in result.stdout


def test_example_spec_loads_builds_and_scales():
    spec = scaler.load_spec(ROOT / "examples/small_cifar_net.toml")
    model = scaler.build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == scaler.estimate(spec).params
    assert scaler.compound(spec, phi=2).resolution > spec.resolution
