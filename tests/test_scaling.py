"""Scaling rules: channel, repeat and resolution rounding, and EfficientNet's compound scaling."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.baselines import baseline_names, get_baseline
from scaler.errors import ScalerError
from scaler.budget import Budget, fit_phi
from scaler.estimator import estimate
from scaler.scaling import (
    PAPER_ALPHA,
    PAPER_BETA,
    PAPER_GAMMA,
    UNIFORM,
    StageRule,
    compound,
    multipliers,
    round_channels,
    round_repeats,
    round_resolution,
    scale,
    stage_depths,
    stage_rule,
)
from scaler.spec import Spec, validate

B0 = get_baseline("efficientnet-b0")


# ---------------------------------------------------------------- round_channels


def test_ninety_percent_rule_b3_first_stage():
    # 16 * 1.2 = 19.2: nearest multiple of 8 is 16, which is below 90 % (17.28), so V1 goes up to 24.
    assert round_channels(16 * 1.2) == 24
    assert round_channels(16 * 1.2, ninety_rule=False) == 16


def test_b3_first_stage_has_24_channels():
    assert get_baseline("efficientnet-b3").stages[0].channels == 24


@pytest.mark.parametrize(
    "channels, expected",
    [(32.0, 32), (35.0, 32), (35.9, 40), (36.0, 40), (38.4, 40), (44.8, 48), (112 * 1.4, 160), (1280 * 1.1, 1408)],
)
def test_round_channels_nearest_multiple(channels, expected):
    assert round_channels(channels) == expected


@pytest.mark.parametrize("channels", [0.1, 1, 3, 7.9, 8.8])
@pytest.mark.parametrize("ninety", [True, False])
def test_round_channels_minimum_is_divisor(channels, ninety):
    assert round_channels(channels, 8, ninety) == 8
    assert round_channels(channels / 2, 16, ninety) == 16


def test_round_channels_ninety_rule_just_above_minimum():
    # 11.9: nearest multiple is 8, which is below 90 % (10.71): V1 gives 16, V2 keeps 8
    assert round_channels(11.9) == 16
    assert round_channels(11.9, ninety_rule=False) == 8


def test_round_channels_other_divisors():
    assert round_channels(19.2, 4) == 20
    assert round_channels(19.2, 1) == 19
    assert round_channels(100, 32) == 96
    assert round_channels(100, 64) == 128  # 64 < 90 % of 100, so up


@given(st.floats(0.01, 10_000, allow_nan=False), st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_round_channels_properties(channels, divisor):
    v1 = round_channels(channels, divisor)
    v2 = round_channels(channels, divisor, ninety_rule=False)
    for value in (v1, v2):
        assert isinstance(value, int)
        assert value % divisor == 0 and value >= divisor
    assert v1 >= 0.9 * channels
    assert v1 in (v2, v2 + divisor)
    assert abs(v2 - channels) <= divisor / 2 or v2 == divisor


# ---------------------------------------------------------------- round_repeats


def test_round_repeats_float_error_guard():
    assert 25 * 2.2 != 55  # the float product is 55.00000000000001
    assert round_repeats(25, 2.2) == 55
    assert round_repeats(5, 2.2) == 11
    assert round_repeats(3, 1.1) == 4  # 3.3000000000000003: a real fraction, so up


@pytest.mark.parametrize(
    "repeats, multiplier, expected",
    [(3, 1.1, 4), (1, 1.1, 2), (2, 1.0, 2), (4, 1.8, 8), (3, 1.4, 5), (2, 1.2, 3), (4, 3.1, 13), (1, 3.1, 4),
     (3, 0.5, 2), (1, 0.01, 1), (4, 0.1, 1), (2, 0.5, 1)],
)
def test_round_repeats_ceil(repeats, multiplier, expected):
    assert round_repeats(repeats, multiplier) == expected


@given(st.integers(1, 50), st.floats(0.001, 10, allow_nan=False))
def test_round_repeats_properties(repeats, multiplier):
    value = round_repeats(repeats, multiplier)
    assert isinstance(value, int) and value >= 1
    assert value >= repeats * multiplier - 1e-9
    assert value < repeats * multiplier + 1


# ---------------------------------------------------------------- round_resolution


@pytest.mark.parametrize(
    "resolution, expected",
    [(224, 224), (224 * 1.15, 256), (227.9, 224), (228.1, 232), (3, 8), (0.5, 8), (643.2, 640), (644.1, 648)],
)
def test_round_resolution_nearest_multiple_of_8(resolution, expected):
    assert round_resolution(resolution) == expected


def test_round_resolution_other_multiple():
    assert round_resolution(250, 32) == 256
    assert round_resolution(10, 32) == 32


# ---------------------------------------------------------------- compound


def test_compound_defaults_are_the_papers():
    assert (PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA) == (1.2, 1.1, 1.15)
    params = inspect.signature(compound).parameters
    assert (params["alpha"].default, params["beta"].default, params["gamma"].default) == (1.2, 1.1, 1.15)
    assert compound(B0, phi=1) == compound(B0, 1.2, 1.1, 1.15, phi=1)
    assert compound(B0, phi=1) != compound(B0, 1.3, 1.1, 1.15, phi=1)


def test_compound_phi_one_on_b0():
    spec = compound(B0, phi=1)
    # depth 1.2: repeats ceil(r * 1.2); width 1.1: channels rounded to 8 with the 90 % rule
    assert [s.repeats for s in spec.stages] == [2, 3, 3, 4, 4, 5, 2]
    assert [s.channels for s in spec.stages] == [round_channels(s.channels * 1.1) for s in B0.stages]
    assert spec.stem.channels == 32 and spec.head.channels == 1408
    assert spec.resolution == 256
    assert spec.name == "efficientnet-b0@phi=1"
    validate(spec)


def test_multipliers():
    d, w, r = multipliers(1.2, 1.1, 1.15, 2)
    assert (d, w, r) == pytest.approx((1.44, 1.21, 1.3225))
    assert multipliers(1.2, 1.1, 1.15, 0) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("name", baseline_names())
def test_phi_zero_returns_the_same_spec(name):
    # phi=0 is the baseline as given, even where its resolution is not a multiple of 8 (B2's 260, B3's 300).
    spec = get_baseline(name)
    assert compound(spec, phi=0) == spec


def test_negative_phi_shrinks():
    small = compound(B0, phi=-2)
    assert small.resolution < B0.resolution
    assert all(a.repeats <= b.repeats for a, b in zip(small.stages, B0.stages))
    assert all(a.channels <= b.channels for a, b in zip(small.stages, B0.stages))
    assert sum(s.repeats for s in small.stages) < sum(s.repeats for s in B0.stages)


@pytest.mark.parametrize("name", baseline_names())
def test_very_negative_phi_floors(name):
    spec = get_baseline(name)
    tiny = compound(spec, phi=-10)
    validate(tiny)
    assert all(1 <= a.repeats <= b.repeats for a, b in zip(tiny.stages, spec.stages))
    assert all(s.channels >= 8 and s.channels % 8 == 0 for s in tiny.stages)
    assert tiny.stem.channels >= 8
    if spec.head.channels:
        assert tiny.head.channels >= 8 and tiny.head.channels % 8 == 0
    else:
        assert tiny.head.channels == 0
    assert tiny.resolution >= 8 and tiny.resolution % 8 == 0
    assert len(tiny.stages) == len(spec.stages)
    floor = compound(spec, phi=-100)
    assert all(s.channels == 8 and s.repeats == 1 for s in floor.stages)
    assert floor.stem.channels == 8
    # the resolution stops at the network's total stride (rounded up to the multiple of 8), so the last
    # feature map keeps at least one pixel
    assert floor.resolution == -(-spec.total_stride // 8) * 8 == 32


def test_very_negative_phi_on_b0_exact():
    tiny = compound(B0, phi=-10)
    # width 1.1^-10 = 0.3855: e.g. 24 -> 9.25 -> nearest 8 is below 90 % -> 16; 320 -> 123.4 -> 120
    assert [s.channels for s in tiny.stages] == [8, 16, 16, 32, 40, 72, 120]
    assert (tiny.stem.channels, tiny.head.channels) == (16, 496)
    assert [s.repeats for s in tiny.stages] == [1] * 7
    assert tiny.resolution == round_resolution(224 * 1.15**-10) == 56


def test_resolution_floor_is_total_stride_rounded_up():
    from scaler.spec import Stage, Stem

    spec = Spec("odd-stride", Stem(16, 3, 2), (Stage("mbconv", 2, 24, 2, 3, 4.0), Stage("mbconv", 2, 40, 3, 3, 4.0)),
                resolution=96)
    assert spec.total_stride == 12
    assert compound(spec, phi=-100).resolution == 16
    assert compound(spec, phi=-100, resolution_multiple=4).resolution == 12
    assert compound(spec, phi=0).resolution == 96


@pytest.mark.parametrize("coefficient", ["alpha", "beta", "gamma"])
@pytest.mark.parametrize("value", [0.99, 0.5, 0.0, -1.0])
def test_coefficient_below_one_raises_naming_it(coefficient, value):
    with pytest.raises(ScalerError, match=rf"^{coefficient}:"):
        compound(B0, **{coefficient: value}, phi=1)


@pytest.mark.parametrize("coefficient", ["alpha", "beta", "gamma"])
@pytest.mark.parametrize("value", [math.nan, math.inf, "1.2", None, True])
def test_coefficient_not_a_finite_number_raises_naming_it(coefficient, value):
    with pytest.raises(ScalerError, match=rf"^{coefficient}:"):
        compound(B0, **{coefficient: value}, phi=1)


def test_coefficient_exactly_one_is_allowed():
    spec = compound(B0, alpha=1.0, beta=1.0, gamma=1.0, phi=3)
    assert spec.stages == B0.stages and spec.resolution == B0.resolution


@pytest.mark.parametrize("phi", [math.nan, math.inf, -math.inf, "1", None, True, [1]])
def test_bad_phi_raises(phi):
    with pytest.raises(ScalerError, match=r"^phi:"):
        compound(B0, phi=phi)


def test_compound_returns_new_frozen_spec_input_unchanged():
    before = dataclasses.replace(B0)
    text_before = repr(B0)
    scaled = compound(B0, phi=2)
    assert scaled is not B0
    assert isinstance(scaled, Spec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scaled.resolution = 1
    assert B0 == before and repr(B0) == text_before
    assert get_baseline("efficientnet-b0") == before


def test_v2_rounding_differs_where_ninety_rule_matters():
    v2 = dataclasses.replace(B0, rounding="v2")
    assert scale(B0, width=1.2).stages[0].channels == 24
    assert scale(v2, width=1.2).stages[0].channels == 16
    phi = math.log(1.2) / math.log(1.1)  # beta^phi == 1.2
    assert compound(B0, phi=phi).stages[0].channels == 24
    assert compound(v2, phi=phi).stages[0].channels == 16


def test_divisor_from_spec():
    spec = dataclasses.replace(B0, divisor=16)
    scaled = scale(spec, width=1.3)
    assert all(s.channels % 16 == 0 for s in scaled.stages)
    assert scaled.stem.channels % 16 == 0 and scaled.head.channels % 16 == 0


def test_scale_rejects_bad_multipliers():
    for bad in (0, -1, math.nan, math.inf, "2", True):
        with pytest.raises(ScalerError, match=r"^width:"):
            scale(B0, width=bad)
        with pytest.raises(ScalerError, match=r"^depth:"):
            scale(B0, depth=bad)


def test_scale_keeps_head_none():
    resnet = get_baseline("resnet18")
    assert scale(resnet, width=1.5).head.channels == 0


# ---------------------------------------------------------------- property


_coefficient = st.floats(1.0, 2.0, allow_nan=False)
_phi = st.floats(-3.0, 3.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(baseline_names()),
    alpha=_coefficient, beta=_coefficient, gamma=_coefficient,
    phi=_phi, phi2=_phi,
)
def test_compound_property(name, alpha, beta, gamma, phi, phi2):
    spec = get_baseline(name)
    low, high = sorted((phi, phi2))
    a = compound(spec, alpha, beta, gamma, phi=low)
    b = compound(spec, alpha, beta, gamma, phi=high)
    for scaled, p in ((a, low), (b, high)):
        validate(scaled)  # a valid spec
        if p == 0:
            assert scaled == spec  # phi = 0 is the baseline as given
            continue
        assert scaled.family == spec.family and len(scaled.stages) == len(spec.stages)
        assert all(s.channels % spec.divisor == 0 for s in scaled.stages)
        assert scaled.stem.channels % spec.divisor == 0
        assert scaled.head.channels % spec.divisor == 0
        assert all(s.repeats >= 1 for s in scaled.stages)
        if gamma**p == 1.0:  # a resolution multiplier of exactly 1 keeps the resolution as given
            assert scaled.resolution == spec.resolution
        else:
            assert scaled.resolution % 8 == 0 and scaled.resolution >= spec.total_stride
        # everything but the scaled dimensions is kept
        assert [(s.block, s.stride, s.kernel, s.expansion, s.se_ratio) for s in scaled.stages] == \
               [(s.block, s.stride, s.kernel, s.expansion, s.se_ratio) for s in spec.stages]
    # monotone in phi
    assert all(x.repeats <= y.repeats for x, y in zip(a.stages, b.stages))
    assert all(x.channels <= y.channels for x, y in zip(a.stages, b.stages))
    assert a.stem.channels <= b.stem.channels and a.head.channels <= b.head.channels
    assert a.resolution <= b.resolution


# ---------------------------------------------------------------- stage rules: uniform and v2

V2 = stage_rule("v2")
V2_S = get_baseline("efficientnetv2-s")
# The published V2-M and V2-L stage depths, their new 7th stage (same feature-map size as the 6th) counted with the
# 6th: no scaling of a 6-stage spec can invent a 7th stage (docs/STAGE_SCALING.md).
V2_M = (3, 5, 5, 7, 14, 18 + 5)
V2_L = (4, 7, 7, 10, 19, 25 + 7)


def _grown(rule, published):
    depth = sum(published) / sum(stage.repeats for stage in V2_S.stages)
    return tuple(stage.repeats for stage in scale(V2_S, depth=depth, rule=rule).stages)


def _error(grown, published):
    return sum(abs(a - b) for a, b in zip(grown, published))


def test_v2_rule_grows_v2_s_close_to_the_published_v2_m_and_v2_l():
    assert _grown(V2, V2_M) == (3, 6, 6, 8, 14, 23)
    assert _grown(V2, V2_L) == (4, 7, 7, 11, 20, 32)
    assert _grown(UNIFORM, V2_M) == (3, 6, 6, 9, 13, 22)
    assert _grown(UNIFORM, V2_L) == (4, 8, 8, 12, 18, 30)
    # Blocks off in all, over the six stages: v2 is 3 and 2 blocks off where uniform is 6 and 7.
    assert (_error(_grown(V2, V2_M), V2_M), _error(_grown(V2, V2_L), V2_L)) == (3, 2)
    assert (_error(_grown(UNIFORM, V2_M), V2_M), _error(_grown(UNIFORM, V2_L), V2_L)) == (6, 7)
    # Where it differs: stages 2-4 get one block more than published (V2-M, V2-L grew stage 4 least of all).
    assert [a - b for a, b in zip(_grown(V2, V2_M), V2_M)] == [0, 1, 1, 1, 0, 0]


def test_the_example_program_prints_the_same_fit():
    import runpy
    from pathlib import Path

    fit = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "stage_rule_fit.py"))
    assert fit["error"](V2, "efficientnetv2-m") == 3 and fit["error"](V2, "efficientnetv2-l") == 2
    assert fit["PUBLISHED"] == {"efficientnetv2-m": V2_M, "efficientnetv2-l": V2_L}


def test_v2_adds_as_many_blocks_as_uniform_before_rounding_and_more_of_them_late():
    repeats = tuple(stage.repeats for stage in B0.stages)
    for depth in (1.2, 1.728, 2.0736, 3.1):
        depths = stage_depths(repeats, depth, V2)
        assert sum(r * d for r, d in zip(repeats, depths)) == pytest.approx(depth * sum(repeats))
        assert depths[-1] == depths[-2] > depth > depths[0] == depths[-3]
        assert depths[-1] - 1 == pytest.approx(1.5 * (depths[0] - 1))  # later_weight
    uniform, v2 = compound(B0, phi=3), compound(B0, phi=3, rule=V2)
    assert [s.repeats for s in v2.stages][-2:] > [s.repeats for s in uniform.stages][-2:]


@pytest.mark.parametrize("depth", [1.0, 0.5, 0.25])
def test_shrinking_is_uniform_under_both_rules(depth):
    assert scale(V2_S, depth=depth, rule=V2) == scale(V2_S, depth=depth)
    assert stage_depths((1, 2, 3), depth, V2) == (depth,) * 3


def test_uniform_rule_is_the_default_and_unchanged():
    assert compound(B0, phi=2, rule=UNIFORM) == compound(B0, phi=2)
    assert stage_rule("uniform") == UNIFORM and UNIFORM.max_resolution is None


def test_v2_caps_the_resolution_at_480_by_default_and_at_any_cap_given():
    assert compound(B0, phi=7).resolution == 592  # 224 x 1.15^7 = 595.8, to the nearest multiple of 8
    assert compound(B0, phi=7, rule=V2).resolution == 480
    assert compound(B0, phi=7, rule=stage_rule("v2", 320)).resolution == 320
    assert compound(B0, phi=7, rule=stage_rule("uniform", 400)).resolution == 400
    assert compound(B0, phi=1, rule=V2).resolution == compound(B0, phi=1).resolution  # below the cap: as before
    # Under the cap the rest of the network still grows: FLOPs keep rising with phi, more slowly.
    flops = [estimate(compound(B0, phi=phi, rule=V2)).macs for phi in (6, 7, 8)]
    assert flops == sorted(flops) and flops[-1] < estimate(compound(B0, phi=8)).macs


def test_the_budget_fit_follows_the_stage_rule():
    budget = Budget(macs=40e9)
    uniform, v2 = fit_phi(B0, budget), fit_phi(B0, budget, rule=V2)
    assert v2.spec.resolution <= 480 < uniform.spec.resolution
    assert v2.phi > uniform.phi and v2.macs <= 40e9  # the capped resolution leaves room for more depth and width
    assert v2.spec == compound(B0, PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, v2.phi, rule=V2)


def test_a_cap_below_the_baseline_resolution_is_refused():
    with pytest.raises(ScalerError, match="max resolution: 200 px is below efficientnet-b0's own resolution"):
        compound(B0, phi=1, rule=stage_rule("v2", 200))
    with pytest.raises(ScalerError, match="max resolution: 200 px"):
        fit_phi(B0, Budget(macs=4e9), rule=stage_rule("v2", 200))
    compound(B0, phi=1, rule=stage_rule("v2", 224))  # the baseline's own resolution is a valid cap


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "v3"}, "stage scaling: must be one of uniform, v2"),
    ({"name": "v2", "max_resolution": 0}, "max resolution: must be at least 1"),
    ({"name": "v2", "max_resolution": 480.5}, "max resolution: expected an integer"),
    ({"name": "v2", "later_stages": 0}, "later stages"),
    ({"name": "v2", "later_weight": 0.5}, "later weight"),
    ({"name": "v2", "later_weight": math.nan}, "later weight"),
])
def test_bad_stage_rules_name_the_field(kwargs, message):
    with pytest.raises(ScalerError, match=message):
        StageRule(**kwargs)
