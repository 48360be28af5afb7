"""Candidates at equal real cost: the network a candidate is trained as, its FLOPs within ±3 % of the nominal ratio.

alpha * beta^2 * gamma^2 = 2 holds only before rounding. On a small proxy, rounding each stage's repeats up and
each width to a channel multiple moved the default grid's networks from 1.39x to 3.74x the proxy's FLOPs, so a
candidate could win by being bigger, not better shaped. Here depth is rounded as a whole (the network's total
blocks, spread over the stages by the stage rule, largest remainders first); then the resolution, in whole
pixels, and the width, in the proxy's fine channel steps, are solved together for the FLOPs that are left, with
the least distortion of the nominal pair. The resolution alone cannot do it on a proxy: its last feature maps are
2 to 4 pixels wide, so FLOPs(resolution) is a staircase (a pixel can add a row and column to every late map:
48 -> 49 px is +22 %, 64 -> 65 px +54 %), which the width's fine steps fill in. Every move is bounded: a
candidate that cannot be matched within them is skipped, its reason recorded, never trained off-cost. The
effective multipliers say what was really trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scaler.estimator import estimate
from scaler.scaling import UNIFORM, StageRule, scale, stage_depths
from scaler.spec import Spec

TOLERANCE = 0.03  # the largest relative gap between a trained network's FLOPs ratio and its nominal one
RESOLUTION_SLACK = 0.12  # the solved resolution stays within this share of the nominal one
WIDTH_SLACK = 0.2  # ... and where it must move, the width within this share of its nominal multiplier
WIDTH_STEP = 0.005  # the width moves are tried in steps of this share


@dataclass(frozen=True)
class CostMatch:
    """A candidate's network at equal cost, or why there is none (`network` None, `reason` says why). The
    multipliers are the effective ones, measured on the network against the proxy; `flops_ratio` is the real
    ratio (the closest reached, when skipped)."""

    network: Spec | None
    target: float
    flops_ratio: float
    depth: float
    width: float
    resolution: float
    reason: str | None = None

    @property
    def gap(self) -> float:
        """The relative gap between the real and the nominal FLOPs ratio."""
        return self.flops_ratio / self.target - 1

    def coefficients(self, phi: float) -> tuple[float, float, float]:
        """The effective alpha, beta, gamma: the multipliers' phi-th roots."""
        return tuple(m ** (1 / phi) for m in (self.depth, self.width, self.resolution))


def stage_repeats(spec: Spec, depth: float, rule: StageRule = UNIFORM) -> tuple[int, ...]:
    """Each stage's blocks at `depth`: the network's total rounded as a whole (never a stage's repeats rounded up
    one by one, which doubles every one-block stage of a shallow proxy for any depth above 1), spread over the
    stages as `rule` spreads it, largest remainders first (the earlier stage on a tie), at least one each."""
    repeats = tuple(stage.repeats for stage in spec.stages)
    exact = [r * d for r, d in zip(repeats, stage_depths(repeats, depth, rule))]
    total = max(len(repeats), round(sum(exact)))
    counts = [max(1, math.floor(e + 1e-9)) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - math.floor(exact[i] + 1e-9)), i))
    for i in order[:max(0, total - sum(counts))]:
        counts[i] += 1
    return tuple(counts)


def _total_channels(spec: Spec) -> int:
    return spec.stem.channels + sum(stage.channels for stage in spec.stages) + spec.head.channels


def _network(proxy: Spec, repeats: tuple[int, ...], width: float, resolution: int, name: str) -> Spec:
    scaled = scale(proxy, width=width, resolution=resolution, name=name)
    return replace(scaled, stages=tuple(replace(s, repeats=r) for s, r in zip(scaled.stages, repeats)))


def match_cost(proxy: Spec, depth: float, width: float, resolution: float, target: float,
               rule: StageRule = UNIFORM, name: str | None = None, tolerance: float = TOLERANCE) -> CostMatch:
    """The network that scales `proxy` by `depth`, `width` and `resolution` (multipliers) at `target` times its
    FLOPs within `tolerance`. Depth is rounded first (`stage_repeats`); then, over the whole pixels within
    RESOLUTION_SLACK of the nominal resolution (capped by `rule`) and the widths within WIDTH_SLACK of the nominal
    width, the pair that lands within the tolerance with the least distortion (|ln w/w0| + |ln r/r0|: the nominal
    width and the nearest pixel where one lands)."""
    base = estimate(proxy).macs
    repeats = stage_repeats(proxy, depth, rule)
    nominal = proxy.resolution * resolution
    low = max(proxy.total_stride, math.ceil(nominal * (1 - RESOLUTION_SLACK)))
    high = math.floor(nominal * (1 + RESOLUTION_SLACK))
    capped = rule.max_resolution is not None and rule.max_resolution < high
    if capped:
        high = rule.max_resolution
    steps = int(round(WIDTH_SLACK / WIDTH_STEP))
    widths = [round(width * (1 + k * WIDTH_STEP), 10) for k in range(-steps, steps + 1)]  # ascending
    label = name or proxy.name
    if high < low:  # the stage rule's cap is below every pixel allowed: say how close the cap itself comes
        network = _network(proxy, repeats, width, high, label)
        return _skip(proxy, network, target, estimate(network).macs / base, tolerance, high)
    best, closest = None, None
    for r in range(low, high + 1):
        ratios: dict[int, tuple[Spec, float]] = {}

        def at(i: int) -> float:
            if i not in ratios:
                network = _network(proxy, repeats, widths[i], r, label)
                ratios[i] = (network, estimate(network).macs / base)
            return ratios[i][1]

        # FLOPs never fall as the width grows: the widths that land form one run [first, last] of the list.
        first = _first_index(len(widths), lambda i: at(i) >= target * (1 - tolerance))
        last = _first_index(len(widths), lambda i: at(i) > target * (1 + tolerance)) - 1
        for i in (first - 1, first, last, last + 1):
            if 0 <= i < len(widths) and (closest is None or abs(at(i) / target - 1) < abs(closest[1] / target - 1)):
                closest = ratios[i]
        if first > last:
            continue
        i = min(max(steps, first), last)  # the width nearest the nominal one within the run
        at(i)
        distortion = abs(math.log(widths[i] / width)) + abs(math.log(r / nominal))
        if best is None or distortion < best[0] - 1e-12:
            best = (distortion, *ratios[i])
    if best is not None:
        return _match(proxy, best[1], target, best[2])
    return _skip(proxy, closest[0], target, closest[1], tolerance, high if capped else None)


def _skip(proxy: Spec, network: Spec, target: float, ratio: float, tolerance: float, cap: int | None) -> CostMatch:
    """No network at equal cost: why, and the closest one's ratio."""
    miss = _match(proxy, network, target, ratio)
    return replace(miss, network=None, reason=(
        f"no network within ±{tolerance:.0%} of {target:.3g}x FLOPs: the closest is {ratio:.3g}x "
        f"({miss.gap:+.1%}), with the width moved up to ±{WIDTH_SLACK:.0%} and the resolution up to "
        f"±{RESOLUTION_SLACK:.0%}" + (f", capped at {cap} px by the stage rule" if cap is not None else "")))


def _first_index(count: int, holds) -> int:
    """The first index in range(count) where `holds` (false, then true) is true; `count` if none."""
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        if holds(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _match(proxy: Spec, network: Spec, target: float, ratio: float) -> CostMatch:
    blocks = sum(s.repeats for s in network.stages) / sum(s.repeats for s in proxy.stages)
    return CostMatch(network, target, ratio, blocks, _total_channels(network) / _total_channels(proxy),
                     network.resolution / proxy.resolution)
