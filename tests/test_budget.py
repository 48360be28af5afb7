"""Fitting phi to a budget: exact at the boundary for every kind of limit, the binding limit named, impossible
budgets refused in one line, and the monotonicity in phi that the bisection relies on."""

from __future__ import annotations

import json
import math
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scaler.measurement as measurement_module
from scaler.baselines import get_baseline
from scaler.budget import (
    LIMITS,
    Budget,
    costs,
    excess,
    fit_phi,
    fits,
    floor_phi,
)
from scaler.errors import ScalerError
from scaler.estimator import estimate
from scaler.measurement import measure_latency_ms
from scaler.scaling import compound
from scaler.spec import Head, Spec, Stage, Stem

B0 = get_baseline("efficientnet-b0")
TINY = Spec(
    name="tiny",
    stem=Stem(8, 3, 2),
    stages=(Stage("mbconv", 1, 16, 2, 3, 4.0, 0.25), Stage("mbconv", 2, 24, 2, 3, 4.0, 0.25)),
    head=Head(64),
    resolution=32,
    num_classes=10,
)


def _at(phi: float, base: Spec = B0) -> Spec:
    return compound(base, phi=phi)


def _cost(name: str, phi: float, base: Spec = B0, batch_size: int = 1) -> int:
    e = estimate(_at(phi, base), batch_size=batch_size)
    return {"macs": e.macs, "params": e.params, "memory_bytes": e.peak_training_memory_bytes}[name]


def _brute_force(name: str, limit: float, batch_size: int = 1) -> float:
    """The largest phi on the 0.01 grid in [-2, 5] whose cost fits, by trying every one."""
    return max(k / 100 for k in range(-200, 501) if _cost(name, k / 100, batch_size=batch_size) <= limit)


# ---------------------------------------------------------------- exact at the boundary


@pytest.mark.parametrize("name, batch_size", [("macs", 1), ("params", 1), ("memory_bytes", 32)])
def test_fit_is_exact_at_the_boundary(name, batch_size):
    limit = _cost(name, 1.23, batch_size=batch_size)  # exactly the cost of a network the rule makes
    fit = fit_phi(B0, Budget(**{name: limit}, batch_size=batch_size))
    assert fit.phi >= 1.23
    assert getattr(fit, name) <= limit
    assert _cost(name, round(fit.phi + 0.01, 10), batch_size=batch_size) > limit
    assert fit.phi == _brute_force(name, limit, batch_size)
    assert fit.binding == (name,)
    assert fit.spec == _at(fit.phi)
    # One unit less and phi = 1.23 no longer fits.
    assert fit_phi(B0, Budget(**{name: limit - 1}, batch_size=batch_size)).phi < 1.23


def test_fit_reports_the_estimate_of_its_network():
    fit = fit_phi(B0, Budget(macs=2e9, batch_size=8, dtype="bfloat16", optimizer="sgd"))
    e = estimate(fit.spec, batch_size=8, dtype="bfloat16", optimizer="sgd")
    assert (fit.macs, fit.params, fit.memory_bytes, fit.latency_ms) == (e.macs, e.params,
                                                                          e.peak_training_memory_bytes, None)


def test_phi_is_a_clean_multiple_of_the_step():
    for macs in (0.7e9, 1.3e9, 2.9e9, 6.1e9):
        phi = fit_phi(B0, Budget(macs=macs)).phi
        assert phi == round(phi, 2) and len(repr(phi).split(".")[1]) <= 2
    assert (fit_phi(B0, Budget(macs=2e9), step=0.25).phi * 4).is_integer()


def test_below_the_baseline_phi_goes_negative():
    fit = fit_phi(B0, Budget(macs=0.2e9))
    assert fit.phi < 0 and fit.macs <= 0.2e9 < _cost("macs", round(fit.phi + 0.01, 10))


def test_paper_b0_at_4_gflops():
    fit = fit_phi("efficientnet-b0", Budget(macs=4e9))
    print(f"B0 at 4 GFLOPs: phi={fit.phi}, macs={fit.macs:,}, params={fit.params:,}, {fit.spec.resolution} px")
    assert 2 <= fit.phi <= 4
    assert fit.macs <= 4e9 < _cost("macs", round(fit.phi + 0.01, 10))
    assert fit.binding == ("macs",)


def test_fit_to_dict_is_json():
    data = json.loads(json.dumps(fit_phi(B0, Budget(params=10e6)).to_dict()))
    assert data["binding"] == ["params"] and data["spec"]["name"] == f"efficientnet-b0@phi={data['phi']:g}"


# ---------------------------------------------------------------- combined budgets


def test_combined_budget_binds_on_the_tighter_limit():
    macs, params = _cost("macs", 1.0), _cost("params", 3.0)
    fit = fit_phi(B0, Budget(macs=macs, params=params))
    assert fit.binding == ("macs",) and fit.phi == fit_phi(B0, Budget(macs=macs)).phi
    macs, params = _cost("macs", 3.0), _cost("params", 1.0)
    fit = fit_phi(B0, Budget(macs=macs, params=params))
    assert fit.binding == ("params",) and fit.phi == fit_phi(B0, Budget(params=params)).phi
    memory = _cost("memory_bytes", 0.5, batch_size=16)
    fit = fit_phi(B0, Budget(macs=macs, params=params, memory_bytes=memory, batch_size=16))
    assert fit.binding == ("memory_bytes",) and fit.phi < 1


def test_limits_broken_together_are_all_named():
    spec = _at(2.0)
    e = estimate(spec)
    fit = fit_phi(B0, Budget(macs=e.macs, params=e.params))
    assert set(fit.binding) <= {"macs", "params"} and fit.binding
    over = excess(costs(_at(3.0), Budget(macs=e.macs, params=e.params)), Budget(macs=e.macs, params=e.params))
    assert set(over) == {"macs", "params"} and all(ratio > 1 for ratio in over.values())


def test_fits():
    macs = estimate(B0).macs
    assert fits(B0, Budget(macs=macs)) and not fits(B0, Budget(macs=macs - 1))
    assert excess(costs(B0, Budget(macs=macs / 2)), Budget(macs=macs / 2)) == {"macs": 2.0}


# ---------------------------------------------------------------- latency


def test_latency_fit_on_a_tiny_network():
    base = measure_latency_ms(TINY, "cpu", batch_size=2)
    limit = 3 * base
    fit = fit_phi(TINY, Budget(latency_ms=limit, device="cpu", batch_size=2))
    assert fit.latency_ms is not None and fit.latency_ms <= limit
    assert fit.phi > 0 and "latency_ms" in fit.binding
    # Monotone sanity: a far smaller network, found by FLOPs alone, is not slower than the limit allows.
    assert measure_latency_ms(compound(TINY, phi=-2.0), "cpu", batch_size=2) <= limit


def test_latency_boundary_is_exact_with_a_deterministic_clock(monkeypatch):
    monkeypatch.setattr(measurement_module, "measure_latency_ms", lambda spec, *args: estimate(spec).macs / 1e6)
    limit = _cost("macs", 1.5) / 1e6
    fit = fit_phi(B0, Budget(latency_ms=limit, device="cpu"))
    assert fit.phi == _brute_force("macs", _cost("macs", 1.5)) and fit.binding == ("latency_ms",)
    assert fit.latency_ms == fit.macs / 1e6


def test_noisy_latency_still_returns_a_phi_measured_to_fit(monkeypatch):
    """With noise the cost is no longer monotone; the answer must still have been measured inside the limit
    and its successor measured outside it, each network measured once."""
    rng, measured = random.Random(0), {}

    def noisy(spec, *args):
        assert spec.name not in measured, "a network was measured twice"
        measured[spec.name] = estimate(spec).macs / 1e6 * rng.uniform(0.7, 1.3)
        return measured[spec.name]

    monkeypatch.setattr(measurement_module, "measure_latency_ms", noisy)
    limit = _cost("macs", 2.0) / 1e6
    fit = fit_phi(B0, Budget(latency_ms=limit, device="cpu"))
    assert fit.latency_ms == measured[fit.spec.name] <= limit
    assert measured[_at(round(fit.phi + 0.01, 10)).name] > limit
    assert 1.0 < fit.phi < 3.0


# ---------------------------------------------------------------- impossible budgets


def test_budget_below_the_smallest_network_names_it():
    with pytest.raises(ScalerError) as caught:
        fit_phi(B0, Budget(macs=1e4))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("budget: 1e-05 GFLOPs is below")
    found = re.search(r"smallest network this rule can make \((\S+) GFLOPs at phi=(\S+)\)", message)
    smallest, phi = float(found[1]) * 1e9, float(found[2])
    assert phi < -10
    # phi is where the rule stops shrinking: the same network far below it, a bigger one a step above.
    assert _cost("macs", phi) == _cost("macs", phi - 30) == pytest.approx(smallest, rel=1e-3)
    assert _cost("macs", round(phi + 0.01, 10)) > _cost("macs", phi)


def test_budget_below_the_smallest_network_names_every_broken_limit():
    with pytest.raises(ScalerError, match=r"^budget: .*GFLOPs.*; .*M params.*phi=") as caught:
        fit_phi(B0, Budget(macs=1e3, params=10, memory_bytes=1e15))
    assert "GB" not in str(caught.value)


@pytest.mark.parametrize("base", ["efficientnet-b0", "resnet18", "convnext-tiny", "efficientnetv2-s"])
def test_floor_phi_reaches_the_smallest_network(base):
    spec = get_baseline(base)
    phi = floor_phi(spec, 1.2, 1.1, 1.15)
    smallest = compound(spec, 1.2, 1.1, 1.15, phi)
    assert all(s.repeats == 1 and s.channels == spec.divisor for s in smallest.stages)
    assert smallest.resolution == spec.total_stride
    assert estimate(compound(spec, 1.2, 1.1, 1.15, phi - 40)).macs == estimate(smallest).macs
    # A coefficient of 1 leaves its dimension alone: width-only scaling keeps depth and resolution.
    width_only = compound(spec, 1.0, 1.1, 1.0, floor_phi(spec, 1.0, 1.1, 1.0))
    assert width_only.resolution == spec.resolution and width_only.stages[0].channels == spec.divisor


def test_budget_beyond_the_phi_cap_is_refused():
    with pytest.raises(ScalerError, match=r"^budget: 1e\+21 GFLOPs still fits the network at phi=20,"):
        fit_phi(B0, Budget(macs=1e30))
    with pytest.raises(ScalerError, match=r"at phi=2,"):
        fit_phi(B0, Budget(macs=1e30), max_phi=2)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", LIMITS)
@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, math.inf, -math.inf, "4", True, [4]])
def test_bad_limit_names_the_field(name, value):
    with pytest.raises(ScalerError, match=rf"^{name}: "):
        Budget(**{name: value}, device="cpu")


def test_no_limit_at_all():
    with pytest.raises(ScalerError, match=r"^budget: give at least one limit"):
        Budget(batch_size=8)


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("batch_size", 2.0), ("dtype", "int8"),
                                          ("optimizer", "lion"), ("device", "tpu")])
def test_bad_setting_names_the_field(field, value):
    with pytest.raises(ScalerError, match=rf"^{field}: "):
        Budget(latency_ms=5, **{field: value})


@pytest.mark.parametrize("kwargs, field", [({"step": 0}, "step"), ({"step": -0.01}, "step"),
                                           ({"step": math.nan}, "step"), ({"alpha": 0.9}, "alpha"),
                                           ({"gamma": "x"}, "gamma"), ({"max_phi": 0}, "max_phi")])
def test_bad_search_argument_names_it(kwargs, field):
    with pytest.raises(ScalerError, match=rf"^{field}: "):
        fit_phi(B0, Budget(macs=1e9), **kwargs)


# ---------------------------------------------------------------- the monotonicity the bisection needs


@settings(max_examples=25, deadline=None)
@given(
    base=st.sampled_from(["efficientnet-b0", "efficientnet-b3", "mobilenetv2", "resnet18", "convnext-tiny",
                          "efficientnetv2-s"]),
    alpha=st.floats(1.0, 1.5),
    beta=st.floats(1.0, 1.4),
    gamma=st.one_of(st.just(1.0), st.floats(1.0, 1.4)),
)
def test_costs_are_non_decreasing_in_phi(base, alpha, beta, gamma):
    """B3 is in on purpose: its 300 px is off the rounding grid, and with gamma = 1 it must stay 300 px at every
    phi, not dip to 300 at phi = 0 between 304s."""
    spec = get_baseline(base)
    previous = None
    for k in range(-300, 401):
        e = estimate(compound(spec, alpha, beta, gamma, round(k * 0.01, 10)), batch_size=4)
        now = (e.macs, e.params, e.peak_training_memory_bytes)
        if previous is not None:
            assert all(a <= b for a, b in zip(previous, now)), f"phi={k / 100}: {previous} -> {now}"
        previous = now
