"""The candidates a compound-scaling search scores: (alpha, beta, gamma) on the constraint alpha*beta^2*gamma^2 = 2,
and the single-dimension references that show whether compound scaling won.

The default grid steps alpha (depth) and beta (width) by 0.05 over [1.0, 1.4] and derives gamma (resolution) from
the constraint, keeping only gamma >= 1: the paper's searched point (1.2, 1.1, 1.15) lies on it, 1.4 is past the
largest single-dimension multiplier the paper found useful at phi = 1, and 0.05 is about the resolution a short
proxy can tell apart. A grid is fingerprinted, so that every worker of a study can prove it builds the same one.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

from scaler.errors import ScalerError, check_number
from scaler.estimator import estimate
from scaler.rules import named_rule
from scaler.scaling import compound, stage_rule
from scaler.spec import Spec

KINDS = ("compound", "baseline", "depth", "width", "resolution", "fast", "paper", "family")
# Published rules a study may train as references (`--references`), and the kind their trials carry (a
# single-dimension rule's kind is its name).
RULE_REFERENCE_KINDS = {"fast": "fast", "compound": "paper"}


@dataclass(frozen=True)
class Candidate:
    """One point to score: coefficients and what kind of scaling they are."""

    alpha: float
    beta: float
    gamma: float
    kind: str = "compound"
    phi: float = 1.0  # the search scores phi = 1; a family validation scores other phis
    repeat: int = 0  # 0 for the first training; k > 0 trains again with the recipe's seed + k (seed noise)
    epochs: int = 0  # 0: the recipe's proxy epochs; more: a longer proxy, to check the short one's ranking
    stage_scaling: str = "uniform"  # how the extra depth is spread over the stages (scaler.scaling.StageRule)

    @property
    def nominal_flops_ratio(self) -> float:
        """alpha * beta^2 * gamma^2: the FLOPs factor one step of phi would give without rounding."""
        return self.alpha * self.beta**2 * self.gamma**2


def _steps(low: float, high: float, step: float) -> list[float]:
    """low, low + step, ... up to high, rounded so that equal grids compare equal across machines."""
    count = int(math.floor((high - low) / step + 1e-9))
    return [round(low + i * step, 10) for i in range(count + 1)]


def compound_grid(alpha_range: tuple[float, float] = (1.0, 1.4), beta_range: tuple[float, float] = (1.0, 1.4),
                  step: float = 0.05, target: float = 2.0) -> tuple[Candidate, ...]:
    """Every (alpha, beta) on the grid with gamma = sqrt(target / (alpha * beta^2)) >= 1, in a fixed order."""
    check_number("step", step, 0, above_low=True)
    check_number("target", target, 1, above_low=True)
    for name, (low, high) in (("alpha range", alpha_range), ("beta range", beta_range)):
        check_number(f"{name} start", low, 1)
        check_number(f"{name} end", high, low)
    grid = []
    for alpha in _steps(*alpha_range, step):
        for beta in _steps(*beta_range, step):
            gamma_squared = target / (alpha * beta * beta)
            if gamma_squared >= 1 - 1e-12:
                grid.append(Candidate(alpha, beta, round(math.sqrt(max(1.0, gamma_squared)), 10)))
    if not grid:
        raise ScalerError(f"grid: no (alpha, beta) in {alpha_range} x {beta_range} leaves gamma >= 1 for a FLOPs "
                          f"target of {target:g}")
    return tuple(grid)


def references(target: float = 2.0, rules: tuple[str, ...] = ()) -> tuple[Candidate, ...]:
    """The unscaled baseline, and depth-only, width-only and resolution-only scaling to the same nominal FLOPs;
    then each published rule named in `rules`: every one a rule of scaler.rules (`rule_reference`)."""
    return (Candidate(1.0, 1.0, 1.0, "baseline"),) + tuple(
        rule_reference(name, target) for name in ("depth", "width", "resolution", *rules))


def rule_reference(name: str, target: float = 2.0) -> Candidate:
    """A scaling rule (scaler.rules) as a reference at phi = 1: its coefficients raised to the power that makes
    its nominal FLOPs growth `target`, the same rule at another phi (the paper's (1.2, 1.1, 1.15) grows 1.92x per
    unit of phi; at 2x it is its own phi 1.06). Trained at equal real cost like every candidate."""
    rule = named_rule(name)
    power = math.log(target) / math.log(rule.growth)
    alpha, beta, gamma = (round(c ** power, 10) for c in rule.coefficients)
    return Candidate(alpha, beta, gamma, RULE_REFERENCE_KINDS.get(name, name))


def family_candidates(alpha: float, beta: float, gamma: float, phis: tuple[float, ...],
                      target: float = 2.0, stage_scaling: str = "uniform",
                      rules: tuple[str, ...] = ()) -> tuple[Candidate, ...]:
    """The family the search found, at each phi > 0, and the single-dimension rules and the published `rules` at
    the same nominal FLOPs (target^phi), all under the found stage rule: the curves of the EfficientNet paper's
    scaling figures, and every rule the study compares with at each cost. Phi = 0 is the baseline itself."""
    rules = [Candidate(alpha, beta, gamma, "family")] + [c for c in references(target, rules)
                                                         if c.kind != "baseline"]
    return tuple(Candidate(c.alpha, c.beta, c.gamma, c.kind, float(phi), stage_scaling=stage_scaling)
                 for phi in phis if phi > 0 for c in rules)


def fingerprint(candidates: tuple[Candidate, ...], **settings) -> str:
    """A short hash of the candidates (values and order) and any settings that must match between workers."""
    text = json.dumps({"candidates": [asdict(c) for c in candidates], "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def flops_ratio(baseline: Spec, candidate: Candidate, phi: float = 1.0) -> float:
    """The FLOPs factor the *rounded* network at `phi` really has (2.23x, not 1.92x, for the paper's point on B0)."""
    if candidate.kind == "baseline":
        return 1.0
    scaled = compound(baseline, candidate.alpha, candidate.beta, candidate.gamma, phi,
                      rule=stage_rule(candidate.stage_scaling))
    return estimate(scaled).macs / estimate(baseline).macs
