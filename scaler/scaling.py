"""Scaling rules: pure functions from a spec and multipliers to a new, concrete spec.

Rounding is where published networks and naive formulas part ways, so every rule is spelled out:
channels go to a multiple of the spec's divisor (EfficientNet V1 never loses more than 10 % of the
exact width, V2 does not guard), repeats go up (with a guard against float error: 5 x 2.2 is 11),
resolution goes to the nearest multiple of 8.

Two stage rules say where compound scaling puts extra depth: `uniform` (EfficientNet: every stage's repeats times
the same multiplier) and `v2` (EfficientNetV2: later stages get more of it, and the resolution is capped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scaler.errors import ScalerError, check_choice, check_int, check_number
from scaler.spec import Head, Spec

PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA = 1.2, 1.1, 1.15
# No dimension grows past this factor: B0 at 10,000x depth already has 160,000 blocks. Beyond it a network is not
# a sensible request (and would take minutes to estimate and overflow floats), so it is one clear error.
MAX_MULTIPLIER = 10_000.0


STAGE_RULES = ("uniform", "v2")
V2_MAX_RESOLUTION = 480  # EfficientNetV2 trains and evaluates its largest models at 480 px, and no larger


@dataclass(frozen=True)
class StageRule:
    """Where compound scaling puts extra depth, and the largest resolution it may reach (None: no cap).

    `uniform` multiplies every stage's repeats by the depth multiplier d. `v2` adds the same number of blocks in
    all, (d - 1) x (the baseline's blocks), but the last `later_stages` stages get `later_weight` times as many new
    blocks per existing block as the others, as EfficientNetV2 grew V2-S into V2-M and V2-L ("gradually add more
    layers to later stages"). The defaults, 2 and 1.5, fit those published stage depths best (docs/STAGE_SCALING.md
    shows how close they come). Shrinking (d < 1) is uniform under both rules.
    """

    name: str = "uniform"
    max_resolution: int | None = None
    later_stages: int = 2
    later_weight: float = 1.5

    def __post_init__(self) -> None:
        check_choice("stage scaling", self.name, STAGE_RULES)
        if self.max_resolution is not None:
            check_int("max resolution", self.max_resolution)
        check_int("later stages", self.later_stages)
        check_number("later weight", self.later_weight, 1, MAX_MULTIPLIER)


UNIFORM = StageRule()


def stage_rule(name: str = "uniform", max_resolution: int | None = None) -> StageRule:
    """A rule by name; `v2` caps the resolution at 480 px unless `max_resolution` says otherwise."""
    if max_resolution is None and name == "v2":
        max_resolution = V2_MAX_RESOLUTION
    return StageRule(name, max_resolution)


def stage_depths(repeats: tuple[int, ...], depth: float, rule: StageRule = UNIFORM) -> tuple[float, ...]:
    """Each stage's depth multiplier under `rule` (see StageRule): all `depth` for uniform scaling."""
    if rule.name == "uniform" or depth <= 1:
        return (float(depth),) * len(repeats)
    weights = [rule.later_weight if i >= len(repeats) - rule.later_stages else 1.0 for i in range(len(repeats))]
    share = sum(repeats) / sum(r * w for r, w in zip(repeats, weights))
    return tuple(1 + (depth - 1) * w * share for w in weights)


def round_channels(channels: float, divisor: int = 8, ninety_rule: bool = True) -> int:
    """Nearest multiple of `divisor`, never below `divisor`; with `ninety_rule`, never below 90 % of `channels`."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if ninety_rule and rounded < 0.9 * channels:
        rounded += divisor
    return rounded


def round_repeats(repeats: int, multiplier: float) -> int:
    """ceil(repeats * multiplier), at least 1; a product within 1e-9 of an integer counts as that integer."""
    exact = repeats * multiplier
    nearest = round(exact)
    if abs(exact - nearest) < 1e-9:
        return max(1, nearest)
    return max(1, math.ceil(exact))


def round_resolution(resolution: float, multiple: int = 8) -> int:
    """Nearest multiple of `multiple` (halves round up), at least `multiple`."""
    return max(multiple, math.floor(resolution / multiple + 0.5) * multiple)


def scale(
    spec: Spec,
    width: float = 1.0,
    depth: float = 1.0,
    resolution: int | None = None,
    dropout: float | None = None,
    name: str | None = None,
    rule: StageRule = UNIFORM,
) -> Spec:
    """Multiply every stage's channels by `width` and repeats by `depth` (spread over the stages by `rule`); set
    the resolution.

    Stem and head widths scale too, as in EfficientNet. `resolution` is taken as given (the paper's B1-B7
    resolutions are hand-picked); `compound` rounds its own and applies the rule's cap.
    """
    width = check_number("width", width, 0, MAX_MULTIPLIER, above_low=True)
    depth = check_number("depth", depth, 0, MAX_MULTIPLIER, above_low=True)
    ninety = spec.rounding == "v1"

    def channels(c: int) -> int:
        return c if width == 1.0 else round_channels(c * width, spec.divisor, ninety)

    depths = stage_depths(tuple(stage.repeats for stage in spec.stages), depth, rule)
    stages = tuple(
        replace(stage, repeats=round_repeats(stage.repeats, d), channels=channels(stage.channels))
        for stage, d in zip(spec.stages, depths)
    )
    return replace(
        spec,
        name=name or spec.name,
        stem=replace(spec.stem, channels=channels(spec.stem.channels)),
        stages=stages,
        head=Head(channels(spec.head.channels) if spec.head.channels else 0),
        resolution=spec.resolution if resolution is None else resolution,
        dropout=spec.dropout if dropout is None else dropout,
    )


def multipliers(alpha: float, beta: float, gamma: float, phi: float) -> tuple[float, float, float]:
    """(depth, width, resolution) multipliers alpha^phi, beta^phi, gamma^phi, after checking the inputs."""
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        check_number(name, value)
        if value < 1:
            raise ScalerError(f"{name}: must be at least 1 (compound scaling never shrinks a dimension "
                              f"as another grows; use a negative phi to shrink), got {value!r}")
    check_number("phi", phi)
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if phi * math.log(value) > math.log(MAX_MULTIPLIER):
            raise ScalerError(f"phi: {phi:g} makes {name}^phi = {value:g}^{phi:g} larger than {MAX_MULTIPLIER:,.0f}x, "
                              f"the most scaler scales a dimension")
    return alpha**phi, beta**phi, gamma**phi


def compound(
    spec: Spec,
    alpha: float = PAPER_ALPHA,
    beta: float = PAPER_BETA,
    gamma: float = PAPER_GAMMA,
    phi: float = 1.0,
    resolution_multiple: int = 8,
    rule: StageRule = UNIFORM,
) -> Spec:
    """EfficientNet's compound scaling: depth alpha^phi, width beta^phi, resolution gamma^phi, for any real phi,
    with depth spread over the stages and the resolution capped by `rule`.

    phi = 0 is the baseline as given; any other phi rounds channels, repeats and resolution.
    """
    depth, width, res = multipliers(alpha, beta, gamma, phi)
    check_cap(spec, rule)
    if phi == 0:
        return spec
    label = f"{spec.name}@phi={phi:g}" if phi else spec.name
    # Never below the network's total stride: the last feature map keeps at least one pixel. A resolution
    # multiplier of exactly 1 (gamma = 1) keeps the resolution as given, as width 1 keeps the channels.
    smallest = -(-spec.total_stride // resolution_multiple) * resolution_multiple
    resolution = spec.resolution if res == 1.0 else max(smallest, round_resolution(spec.resolution * res,
                                                                                     resolution_multiple))
    if rule.max_resolution is not None:
        resolution = min(resolution, rule.max_resolution)
    return scale(spec, width=width, depth=depth, resolution=resolution, name=label, rule=rule)


def check_cap(spec: Spec, rule: StageRule) -> None:
    """A cap below the baseline's own resolution would shrink the images as the network grows: refused."""
    if rule.max_resolution is not None and rule.max_resolution < spec.resolution:
        raise ScalerError(f"max resolution: {rule.max_resolution} px is below {spec.name}'s own resolution "
                          f"({spec.resolution} px)")
