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

FLOPs are the default currency; a study may equalise its candidates on the params, activations, peak training
memory or measured latency of each candidate's full-size counterpart instead (`study_currency`). Those do not
grow with a candidate's nominal multipliers as FLOPs do (resolution leaves params alone; activations grow with
width, not its square), so there each candidate is first scaled along its own direction (depth alpha^t, width
beta^t, resolution gamma^t) to the t where its cost in the currency reaches the target (`match_along`), then
matched as above; a direction that does not move the currency (resolution-only under params) is skipped with
that reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from scaler.errors import ScalerError, check_choice
from scaler.estimator import estimate
from scaler.scaling import UNIFORM, StageRule, multipliers, round_channels, scale, stage_depths
from scaler.spec import Spec

TOLERANCE = 0.03  # the largest relative gap between a trained network's FLOPs ratio and its nominal one
RESOLUTION_SLACK = 0.12  # the solved resolution stays within this share of the nominal one
WIDTH_SLACK = 0.2  # ... and where it must move, the width within this share of its nominal multiplier
WIDTH_STEP = 0.005  # the width moves are tried in steps of this share
STRETCH = 8  # match_along scales a candidate up to this many times its phi to reach its cost in a currency,
LARGEST = 16  # ... and no dimension past this multiplier
CURRENCIES = ("flops", "params", "activations", "memory", "latency")
CURRENCY_LABELS = {"flops": "FLOPs", "params": "params", "activations": "activations",
                   "memory": "peak training memory", "latency": "latency"}


@dataclass(frozen=True)
class Currency:
    """A cost candidates are equalised on: its name (CURRENCIES), how a table says it, and its measure of a network
    (any unit: only ratios to the proxy's are used). Every measure but latency's grows with width at any
    resolution, as the width search of `match_cost` needs; latency's is checked where it lands."""

    name: str
    label: str
    of: Callable[[Spec], float]


FLOPS = Currency("flops", "FLOPs", lambda spec: estimate(spec).macs)


def study_currency(name: str, proxy: Spec, baseline: Spec, batch_size: int = 1,
                   latency_ms: Callable[[Spec], float] | None = None) -> Currency:
    """The currency `name` of a study that scores `baseline` through `proxy`. FLOPs are counted on the proxy
    network itself (their ratios hold at any size); the others on the network's full-size counterpart
    (`full_size`), the network a user trains and deploys: a proxy's training memory is mostly its weights' where
    the full-size network's is its activations', and its latency mostly per-layer overhead. Memory is peak
    training memory at `batch_size`; latency needs its measure (scaler.latency_table.LatencyTable.latency_ms)."""
    check_choice("equal cost", name, CURRENCIES)
    if name == "flops":
        return FLOPS
    if name == "latency":
        if latency_ms is None:
            raise ScalerError("equal cost: latency is measured, and no latency table was given")
        measure = latency_ms
    elif name == "memory":
        def measure(spec: Spec) -> float:
            return estimate(spec, batch_size=batch_size).peak_training_memory_bytes
    else:
        def measure(spec: Spec) -> float:
            return getattr(estimate(spec), name)
    return Currency(name, f"full-size {CURRENCY_LABELS[name]}", lambda network: measure(full_size(network, proxy,
                                                                                                   baseline)))


def full_size(network: Spec, proxy: Spec, baseline: Spec) -> Spec:
    """The full-size network a proxy network stands for: `baseline` with each stage's repeats and channels, the
    stem's and the head's, and the resolution grown by the network's own ratios to `proxy` (channels rounded as
    the baseline rounds them)."""
    ninety = baseline.rounding == "v1"

    def channels(full: int, small: int, big: int) -> int:
        return full if full == 0 or big == small else round_channels(full * big / small, baseline.divisor, ninety)

    stages = tuple(replace(b, repeats=max(1, round(b.repeats * n.repeats / p.repeats)),
                           channels=channels(b.channels, p.channels, n.channels))
                   for b, p, n in zip(baseline.stages, proxy.stages, network.stages))
    return replace(baseline, name=network.name, stages=stages,
                   stem=replace(baseline.stem, channels=channels(baseline.stem.channels, proxy.stem.channels,
                                                                 network.stem.channels)),
                   head=replace(baseline.head, channels=channels(baseline.head.channels, proxy.head.channels,
                                                                 network.head.channels)),
                   resolution=max(baseline.total_stride,
                                  round(baseline.resolution * network.resolution / proxy.resolution)))


@dataclass(frozen=True)
class CostMatch:
    """A candidate's network at equal cost, or why there is none (`network` None, `reason` says why). The
    multipliers are the effective ones, measured on the network against the proxy; `ratio` is the real cost
    ratio in `currency` (the closest reached, when skipped)."""

    network: Spec | None
    target: float
    ratio: float
    depth: float
    width: float
    resolution: float
    reason: str | None = None
    currency: str = "flops"
    unmoved: bool = False  # skipped because the candidate's direction does not change the currency at all

    @property
    def gap(self) -> float:
        """The relative gap between the real and the nominal cost ratio."""
        return self.ratio / self.target - 1

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
               rule: StageRule = UNIFORM, name: str | None = None, tolerance: float = TOLERANCE,
               currency: Currency = FLOPS) -> CostMatch:
    """The network that scales `proxy` by `depth`, `width` and `resolution` (multipliers) at `target` times its
    cost in `currency` (FLOPs by default) within `tolerance`. Depth is rounded first (`stage_repeats`); then, over
    the whole pixels within RESOLUTION_SLACK of the nominal resolution (capped by `rule`) and the widths within
    WIDTH_SLACK of the nominal width, the pair that lands within the tolerance with the least distortion
    (|ln w/w0| + |ln r/r0|: the nominal width and the nearest pixel where one lands)."""
    base = currency.of(proxy)
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
        return _skip(proxy, network, target, currency.of(network) / base, tolerance, high, currency)
    best, closest = None, None
    # The pixels nearest the nominal one first: once a match is found, a pixel farther off than its whole
    # distortion cannot beat it, and is not tried (a measured currency pays for every network it sees).
    for r in sorted(range(low, high + 1), key=lambda r: (abs(math.log(r / nominal)), r)):
        if best is not None and abs(math.log(r / nominal)) >= best[0] - 1e-12:
            break
        ratios: dict[int, tuple[Spec, float]] = {}

        def at(i: int) -> float:
            if i not in ratios:
                network = _network(proxy, repeats, widths[i], r, label)
                ratios[i] = (network, currency.of(network) / base)
            return ratios[i][1]

        # FLOPs never fall as the width grows: the widths that land form one run [first, last] of the list.
        first = _first_index(len(widths), lambda i: at(i) >= target * (1 - tolerance))
        last = _first_index(len(widths), lambda i: at(i) > target * (1 + tolerance)) - 1
        for i in (first - 1, first, last, last + 1):
            if 0 <= i < len(widths) and (closest is None or abs(at(i) / target - 1) < abs(closest[1] / target - 1)):
                closest = ratios[i]
        if first <= last:
            at(min(max(steps, first), last))  # the width nearest the nominal one within the run
        # A measured currency need not rise with the width everywhere: of the widths seen, those that landed, the
        # nearest the nominal one (for FLOPs, the one just seen); never a skip while one of them landed.
        landed = [i for i, (_, ratio) in ratios.items() if abs(ratio / target - 1) <= tolerance]
        if not landed:
            continue
        i = min(landed, key=lambda i: (abs(i - steps), i))
        distortion = abs(math.log(widths[i] / width)) + abs(math.log(r / nominal))
        if best is None or distortion < best[0] - 1e-12:
            best = (distortion, *ratios[i])
    if best is not None:
        return _match(proxy, best[1], target, best[2], currency)
    return _skip(proxy, closest[0], target, closest[1], tolerance, high if capped else None, currency)


def match_along(proxy: Spec, alpha: float, beta: float, gamma: float, phi: float, target: float,
                rule: StageRule = UNIFORM, name: str | None = None, currency: Currency = FLOPS) -> CostMatch:
    """The network that scales `proxy` along the direction (alpha, beta, gamma) to `target` times its cost in
    `currency`. In FLOPs that is phi itself (the multipliers' nominal FLOPs are the target); in another currency,
    the t where the network of the multipliers at t (depth rounded, nominal width and resolution) crosses the
    target, found by bisection up to STRETCH x phi (and LARGEST x any dimension), then matched as `match_cost`
    does. A direction whose cost does not reach the target by then is skipped with that reason."""
    if currency.name == "flops":
        return match_cost(proxy, *multipliers(alpha, beta, gamma, phi), target, rule, name)
    base = currency.of(proxy)

    def ratio(t: float) -> tuple[Spec, float]:
        depth, width, resolution = multipliers(alpha, beta, gamma, t)
        pixels = max(proxy.total_stride, round(proxy.resolution * resolution))
        if rule.max_resolution is not None:
            pixels = min(pixels, rule.max_resolution)
        network = _network(proxy, stage_repeats(proxy, depth, rule), width, pixels, name or proxy.name)
        return network, currency.of(network) / base

    low, high = 0.0, min([STRETCH * phi] + [math.log(LARGEST) / math.log(c) for c in (alpha, beta, gamma) if c > 1])
    network, reached = ratio(high)
    if reached < target * (1 - TOLERANCE):
        miss = _match(proxy, network, target, reached, currency)
        unmoved = reached == 1
        return replace(miss, network=None, unmoved=unmoved, reason=(
            f"scaling along ({alpha:g}, {beta:g}, {gamma:.3g}) does not grow {currency.label} to {target:.3g}x: "
            + ("it does not change them" if unmoved else
               f"at most {reached:.3g}x within {STRETCH}x its phi and {LARGEST}x any dimension")))
    for _ in range(30):
        middle = (low + high) / 2
        if ratio(middle)[1] >= target:
            high = middle
        else:
            low = middle
    # Depth rounds in whole blocks: of the two sides of the step, the nearer leaves the width and the resolution
    # the least to move.
    nearer = min((low, high), key=lambda t: abs(math.log(ratio(t)[1] / target)))
    return match_cost(proxy, *multipliers(alpha, beta, gamma, nearer), target, rule, name, currency=currency)


def _skip(proxy: Spec, network: Spec, target: float, ratio: float, tolerance: float, cap: int | None,
          currency: Currency = FLOPS) -> CostMatch:
    """No network at equal cost: why, and the closest one's ratio."""
    miss = _match(proxy, network, target, ratio, currency)
    return replace(miss, network=None, reason=(
        f"no network within ±{tolerance:.0%} of {target:.3g}x {currency.label}: the closest is {ratio:.3g}x "
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


def _match(proxy: Spec, network: Spec, target: float, ratio: float, currency: Currency = FLOPS) -> CostMatch:
    blocks = sum(s.repeats for s in network.stages) / sum(s.repeats for s in proxy.stages)
    return CostMatch(network, target, ratio, blocks, _total_channels(network) / _total_channels(proxy),
                     network.resolution / proxy.resolution, currency=currency.name)
