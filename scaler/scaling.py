"""Scaling rules: pure functions from a spec and multipliers to a new, concrete spec.

Rounding is where published networks and naive formulas part ways, so every rule is spelled out:
channels go to a multiple of the spec's divisor (EfficientNet V1 never loses more than 10 % of the
exact width, V2 does not guard), repeats go up (with a guard against float error: 5 x 2.2 is 11),
resolution goes to the nearest multiple of 8.
"""

from __future__ import annotations

import math
from dataclasses import replace

from scaler.errors import ScalerError, check_number
from scaler.spec import Head, Spec

PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA = 1.2, 1.1, 1.15
# No dimension grows past this factor: B0 at 10,000x depth already has 160,000 blocks. Beyond it a network is not
# a sensible request (and would take minutes to estimate and overflow floats), so it is one clear error.
MAX_MULTIPLIER = 10_000.0


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
) -> Spec:
    """Multiply every stage's channels by `width` and repeats by `depth`; set the resolution.

    Stem and head widths scale too, as in EfficientNet. `resolution` is taken as given (the paper's B1-B7
    resolutions are hand-picked); `compound` rounds its own.
    """
    width = check_number("width", width, 0, MAX_MULTIPLIER, above_low=True)
    depth = check_number("depth", depth, 0, MAX_MULTIPLIER, above_low=True)
    ninety = spec.rounding == "v1"

    def channels(c: int) -> int:
        return c if width == 1.0 else round_channels(c * width, spec.divisor, ninety)

    stages = tuple(
        replace(stage, repeats=round_repeats(stage.repeats, depth), channels=channels(stage.channels))
        for stage in spec.stages
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
) -> Spec:
    """EfficientNet's compound scaling: depth alpha^phi, width beta^phi, resolution gamma^phi, for any real phi.

    phi = 0 is the baseline as given; any other phi rounds channels, repeats and resolution.
    """
    depth, width, res = multipliers(alpha, beta, gamma, phi)
    if phi == 0:
        return spec
    label = f"{spec.name}@phi={phi:g}" if phi else spec.name
    # Never below the network's total stride: the last feature map keeps at least one pixel. A resolution
    # multiplier of exactly 1 (gamma = 1) keeps the resolution as given, as width 1 keeps the channels.
    smallest = -(-spec.total_stride // resolution_multiple) * resolution_multiple
    resolution = spec.resolution if res == 1.0 else max(smallest, round_resolution(spec.resolution * res,
                                                                                     resolution_multiple))
    return scale(spec, width=width, depth=depth, resolution=resolution, name=label)
