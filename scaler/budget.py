"""Fit phi to a hardware budget: the largest phi whose concrete, rounded network fits every given limit.

The limits are judged on the network `compound` actually makes, not on the idealised 2^phi: rounding moves
real FLOPs well off it (B0 at phi=3 costs 8.4x, not 7.1x). FLOPs (multiply-adds per image), parameters and
peak training memory come from the analytic estimator, so a fit takes milliseconds and imports no torch.
Latency is measured:
the network is built and run on the budget's device, so it holds for that machine, its load and its
PyTorch build only, and two runs can disagree near the boundary.

Every cost is non-decreasing in phi (depth, width and resolution each round monotonically; the tests check
it), so the search brackets the answer with steps of 1 in phi (each roughly doubles the cost, so nothing
built is much larger than the budget) and bisects over integer multiples of `step`. Bisection keeps a
bracket of one point measured to fit and one measured not to, so even with noisy, non-monotone latency the
answer was measured to fit and the next step measured not to.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from scaler.baselines import resolve_spec
from scaler.errors import ScalerError, check_choice, check_int, check_number
from scaler.device import resolve_device
from scaler.estimator import OPTIMIZER_STATES, PRECISIONS, estimate
from scaler.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, UNIFORM, StageRule, check_cap, compound, multipliers
from scaler.spec import Spec, to_dict

LIMITS = ("macs", "params", "memory_bytes", "latency_ms")
# How each limit reads in a message: (divisor, unit). GB are 10^9 bytes.
_UNITS = {"macs": (1e9, "GFLOPs"), "params": (1e6, "M params"), "memory_bytes": (1e9, "GB peak training memory"),
          "latency_ms": (1.0, "ms latency")}
MAX_PHI = 20.0


@dataclass(frozen=True)
class Budget:
    """Upper limits on one network; None leaves a figure free, at least one must be given.

    `macs` are multiply-adds per image (a GFLOPs budget G is macs=G*1e9). `memory_bytes` is peak training
    memory for `batch_size` images in `dtype` (a precision: a dtype, or a mixed precision such as bf16-mixed) with
    `optimizer`'s state. `latency_ms` is the median forward
    pass of `batch_size` images in `dtype` on `device`, in eval mode.
    """

    macs: float | None = None
    params: float | None = None
    memory_bytes: float | None = None
    latency_ms: float | None = None
    batch_size: int = 1
    dtype: str = "float32"
    optimizer: str = "adamw"
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in LIMITS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_number(name, value, 0, above_low=True))
        if all(getattr(self, name) is None for name in LIMITS):
            raise ScalerError(f"budget: give at least one limit ({', '.join(LIMITS)})")
        check_int("batch_size", self.batch_size)
        check_choice("dtype", self.dtype, PRECISIONS)
        check_choice("optimizer", self.optimizer, OPTIMIZER_STATES)
        if self.latency_ms is not None:
            resolve_device(self.device)  # fail now, not after the first build


def training_precision(device: str = "auto") -> str:
    """The precision `scaler train` trains in on `device`: bf16 autocast on CUDA, float32 elsewhere."""
    return "bf16-mixed" if resolve_device(device).type == "cuda" else "float32"


def budget_from_units(gflops: float | None = None, params: float | None = None, memory_gb: float | None = None,
                      latency_ms: float | None = None, batch_size: int = 1, device: str = "auto",
                      precision: str | None = None) -> Budget | None:
    """A budget from the units a user types (GFLOPs, parameters, GB of peak training memory, milliseconds);
    None when no limit is given. A value out of range is an error naming the option and the value as typed.
    Memory and latency are in `precision`, by default the one `scaler train` uses on `device`."""
    typed = {"--budget-gflops": gflops, "--budget-params": params, "--budget-memory-gb": memory_gb,
             "--budget-latency-ms": latency_ms}
    for option, value in typed.items():
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ScalerError(f"{option}: must be a positive number, got {value:g}" if isinstance(value, (int, float))
                              else f"{option}: must be a positive number, got {value!r}")
    limits = {"macs": gflops and gflops * 1e9, "params": params, "memory_bytes": memory_gb and memory_gb * 1e9,
              "latency_ms": latency_ms}
    given = {name: value for name, value in limits.items() if value is not None}
    if precision is not None:
        check_choice("--precision", precision, PRECISIONS)
    elif memory_gb is not None or latency_ms is not None:
        precision = training_precision(device)
    return Budget(**given, batch_size=batch_size, device=device, dtype=precision or "float32") if given else None


@dataclass(frozen=True)
class Costs:
    """What a budget limits, for one network; latency only when the budget limits it (it costs a run)."""

    macs: int
    params: int
    memory_bytes: int
    latency_ms: float | None


@dataclass(frozen=True)
class Fit:
    """The largest phi that fits, its network and costs, and `binding`: the limits phi + step breaks."""

    phi: float
    spec: Spec
    macs: int
    params: int
    memory_bytes: int
    latency_ms: float | None
    binding: tuple[str, ...]
    precision: str = "float32"  # what memory_bytes and latency_ms are in

    def to_dict(self) -> dict:
        return {"phi": self.phi, "macs": self.macs, "params": self.params, "memory_bytes": self.memory_bytes,
                "latency_ms": self.latency_ms, "binding": list(self.binding), "precision": self.precision,
                "spec": to_dict(self.spec)}


def costs(spec: Spec, budget: Budget) -> Costs:
    """The network's figures for the budget's batch size, dtype and optimizer."""
    e = estimate(spec, budget.batch_size, budget.dtype, budget.optimizer)
    latency = None
    if budget.latency_ms is not None:
        from scaler import measurement  # builds and runs the network: torch only when latency is limited

        latency = measurement.measure_latency_ms(spec, budget.device, budget.batch_size, budget.dtype)
    return Costs(e.macs, e.params, e.peak_training_memory_bytes, latency)


def excess(spent: Costs, budget: Budget) -> dict[str, float]:
    """The limits these costs break, each with cost / limit (above 1); empty when they fit."""
    limits = {name: getattr(budget, name) for name in LIMITS if getattr(budget, name) is not None}
    return {name: getattr(spent, name) / limit for name, limit in limits.items() if getattr(spent, name) > limit}


def fits(spec: Spec, budget: Budget) -> bool:
    """Whether one network keeps within every limit (latency measured once, so it may differ next time)."""
    return not excess(costs(spec, budget), budget)


def floor_phi(spec: Spec, alpha: float, beta: float, gamma: float, resolution_multiple: int = 8) -> float:
    """A phi at or below which `compound` makes its smallest network: every stage 1 repeat, every width the
    divisor, the resolution the total stride (rounded up to `resolution_multiple`). A dimension whose
    coefficient is 1 never changes and sets no bound. At most 0."""
    widths = [spec.stem.channels, spec.head.channels, *(s.channels for s in spec.stages)]
    smallest = -(-spec.total_stride // resolution_multiple) * resolution_multiple
    # coefficient^phi <= target takes each dimension to its floor: ceil(repeats * d) = 1, channels * w
    # rounds to the divisor, resolution * r rounds to at most `smallest`.
    bounds = [(alpha, 1 / max(s.repeats for s in spec.stages)), (beta, spec.divisor / max(widths)),
              (gamma, smallest / spec.resolution)]
    return min([0.0] + [math.log(target) / math.log(c) for c, target in bounds if c > 1])


def _last_true(predicate: Callable[[int], bool], lo: int, hi: int) -> int:
    """The k in [lo, hi) with predicate(k) and not predicate(k + 1), given predicate(lo) and not predicate(hi).
    The bracket only ever moves to points seen on the right side, so this holds for a noisy predicate too."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if predicate(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _show(name: str, value: float) -> str:
    divisor, unit = _UNITS[name]
    return f"{value / divisor:.4g} {unit}"


def fit_phi(
    baseline: Spec | str | Path,
    budget: Budget,
    alpha: float = PAPER_ALPHA,
    beta: float = PAPER_BETA,
    gamma: float = PAPER_GAMMA,
    step: float = 0.01,
    max_phi: float = MAX_PHI,
    rule: StageRule = UNIFORM,
) -> Fit:
    """The largest phi, a multiple of `step` up to `max_phi`, whose `compound(baseline, alpha, beta, gamma, phi,
    rule=rule)` fits `budget`.

    A budget below the smallest network the rule can make, or one that still fits at `max_phi`, is a
    ScalerError naming the figure.
    """
    base = resolve_spec(baseline)
    multipliers(alpha, beta, gamma, 0.0)  # checks the coefficients
    check_cap(base, rule)
    step = check_number("step", step, 0, 1, above_low=True)
    max_phi = check_number("max_phi", max_phi, 0, above_low=True)
    seen: dict[int, tuple[Spec, Costs, dict[str, float]]] = {}

    def phi_of(k: int) -> float:
        return round(k * step, 10)

    def check(k: int) -> tuple[Spec, Costs, dict[str, float]]:
        if k not in seen:
            spec = compound(base, alpha, beta, gamma, phi_of(k), rule=rule)
            spent = costs(spec, budget)
            seen[k] = spec, spent, excess(spent, budget)
        return seen[k]

    def fit(k: int) -> bool:
        return not check(k)[2]

    unit, top = max(1, round(1 / step)), math.floor(max_phi / step + 1e-9)
    if fit(0):
        lo, hi = 0, None
        while hi is None:
            if lo >= top:
                given = ", ".join(_show(name, getattr(budget, name)) for name in LIMITS if getattr(budget, name))
                raise ScalerError(f"budget: {given} still fits the network at phi={phi_of(top):g}, the largest "
                                  f"this search tries; the budget is too large for this rule")
            k = min(lo + unit, top)
            lo, hi = (k, None) if fit(k) else (lo, k)
    else:
        bottom = math.floor(floor_phi(base, alpha, beta, gamma) / step)
        lo, hi = None, 0
        while lo is None:
            if hi <= bottom:
                first = _smallest_from(lambda k: compound(base, alpha, beta, gamma, phi_of(k), rule=rule), bottom)
                raise _too_small(budget, check(bottom)[1:], phi_of(first))
            k = max(hi - unit, bottom)
            lo, hi = (k, hi) if fit(k) else (None, k)
    k = _last_true(fit, lo, hi)
    spec, spent, _ = check(k)
    return Fit(phi_of(k), spec, spent.macs, spent.params, spent.memory_bytes, spent.latency_ms,
               tuple(check(k + 1)[2]), budget.dtype)


def _smallest_from(make: Callable[[int], Spec], bottom: int) -> int:
    """The largest k whose network `make(k)` is already the smallest one, the one at `bottom`."""
    smallest = make(bottom)

    def same(k: int) -> bool:
        return replace(make(k), name=smallest.name) == smallest

    return 0 if same(0) else _last_true(same, bottom, 0)


def _too_small(budget: Budget, floor: tuple[Costs, dict[str, float]], phi: float) -> ScalerError:
    """One line per broken limit, joined: what was asked, and the least this rule can make."""
    spent, broken = floor
    reasons = [f"{_show(name, getattr(budget, name))} is below the smallest network this rule can make "
               f"({_show(name, getattr(spent, name))} at phi={phi:g})" for name in broken]
    return ScalerError("budget: " + "; ".join(reasons))
