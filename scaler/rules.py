"""Scaling rules as values: how depth, width and resolution grow together as a network grows.

Every rule here is a `ScalingRule`: depth alpha^phi, width beta^phi and resolution gamma^phi, as in compound
scaling. The other published rules are coefficients too, once their FLOPs shares are written as such: a rule that
gives depth, width and resolution the shares e_d, e_w, e_r (summing to 1) of a FLOPs growth s multiplies depth by
s^e_d, width by s^(e_w / 2) and resolution by s^(e_r / 2), since FLOPs grow as depth x width^2 x resolution^2.
With one unit of phi set to double the nominal FLOPs, alpha = 2^e_d, beta = 2^(e_w / 2), gamma = 2^(e_r / 2).

- `compound`: EfficientNet's coefficients (Tan and Le, 2019; the paper's 1.2, 1.1, 1.15 by default).
- `fast`: Dollár, Singh and Girshick's fast compound scaling (CVPR 2021), most of the growth on width; its dWr
  default gives depth, width and resolution 1/10, 8/10 and 1/10 of the FLOPs growth.
- `depth`, `width`, `resolution`: one dimension alone, at 2x nominal FLOPs per unit of phi.
- a study's found coefficients (`found_rule`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaler.equal_cost import TOLERANCE, match_cost
from scaler.errors import ScalerError, check_number
from scaler.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, UNIFORM, StageRule, check_cap, compound, multipliers
from scaler.spec import Spec

RULE_NAMES = ("compound", "fast", "depth", "width", "resolution")
FAST_SHARES = (0.1, 0.8, 0.1)  # dWr: Dollár et al.'s default


@dataclass(frozen=True)
class ScalingRule:
    """Depth alpha^phi, width beta^phi, resolution gamma^phi; `label` names it in tables and legends."""

    name: str
    label: str
    alpha: float
    beta: float
    gamma: float

    @property
    def coefficients(self) -> tuple[float, float, float]:
        return self.alpha, self.beta, self.gamma

    @property
    def growth(self) -> float:
        """Nominal FLOPs growth per unit of phi: alpha x beta^2 x gamma^2."""
        return self.alpha * self.beta ** 2 * self.gamma ** 2

    def shares(self) -> tuple[float, float, float]:
        """The shares of the FLOPs growth that depth, width and resolution take (they sum to 1)."""
        total = math.log(self.growth)
        return (math.log(self.alpha) / total, 2 * math.log(self.beta) / total, 2 * math.log(self.gamma) / total)

    def exponents(self) -> tuple[float, float, float]:
        """Depth, width and resolution multipliers as powers of the nominal FLOPs growth s: s^e for each."""
        depth, width, resolution = self.shares()
        return depth, width / 2, resolution / 2

    def phi_for(self, flops_ratio: float) -> float:
        """The phi at which this rule's nominal FLOPs are `flops_ratio` times the baseline's."""
        check_number("flops ratio", flops_ratio, 0, above_low=True)
        return math.log(flops_ratio) / math.log(self.growth)


def compound_rule(alpha: float = PAPER_ALPHA, beta: float = PAPER_BETA, gamma: float = PAPER_GAMMA,
                  label: str | None = None) -> ScalingRule:
    """Compound scaling with these coefficients (each at least 1, and growing the FLOPs)."""
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        check_number(name, value)
        if value < 1:
            raise ScalerError(f"{name}: must be at least 1 (a rule never shrinks a dimension as another grows), "
                              f"got {value!r}")
    if alpha * beta ** 2 * gamma ** 2 <= 1:
        raise ScalerError("alpha, beta, gamma: all 1 grows nothing; give at least one coefficient above 1")
    return ScalingRule("compound", label or f"compound ({alpha:g}, {beta:g}, {gamma:g})", alpha, beta, gamma)


def fast_rule(shares: tuple[float, float, float] = FAST_SHARES) -> ScalingRule:
    """Fast compound scaling: depth, width and resolution take these shares of the FLOPs growth (summing to 1)."""
    if len(shares) != 3:
        raise ScalerError(f"shares: give three (depth, width, resolution), got {len(shares)}")
    for name, value in zip(("depth", "width", "resolution"), shares):
        check_number(f"{name} share", value, 0, 1)
    if abs(sum(shares) - 1) > 1e-6:
        raise ScalerError(f"shares: depth, width and resolution must sum to 1, got {sum(shares):g}")
    depth, width, resolution = shares
    name = "dWr" if tuple(shares) == FAST_SHARES else f"{depth:g}, {width:g}, {resolution:g}"
    return ScalingRule("fast", f"fast ({name})", 2 ** depth, 2 ** (width / 2), 2 ** (resolution / 2))


def named_rule(name: str, coefficients: tuple[float | None, float | None, float | None] = (None,) * 3,
               shares: tuple[float, float, float] | None = None) -> ScalingRule:
    """A rule by its name (`RULE_NAMES`): compound takes `coefficients` (the paper's where None), fast takes
    `shares`; the others take neither."""
    given = any(value is not None for value in coefficients)
    if name not in RULE_NAMES:
        raise ScalerError(f"rule: unknown rule {name!r}; choose one of {', '.join(RULE_NAMES)}")
    if given and name != "compound":
        raise ScalerError(f"rule: --alpha, --beta and --gamma belong to the compound rule, not {name!r}")
    if shares is not None and name != "fast":
        raise ScalerError(f"rule: --shares belong to the fast rule, not {name!r}")
    if name == "compound":
        paper = (PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA)
        alpha, beta, gamma = (p if v is None else v for v, p in zip(coefficients, paper))
        return compound_rule(alpha, beta, gamma, "paper (1.2, 1.1, 1.15)" if not given else None)
    if name == "fast":
        return fast_rule(shares or FAST_SHARES)
    single = {"depth": (2.0, 1.0, 1.0), "width": (1.0, math.sqrt(2), 1.0), "resolution": (1.0, 1.0, math.sqrt(2))}
    return ScalingRule(name, f"{name} only", *single[name])


def found_rule(alpha: float, beta: float, gamma: float) -> ScalingRule:
    """A study's found coefficients, as a rule."""
    return compound_rule(alpha, beta, gamma, f"found ({alpha:g}, {beta:g}, {gamma:.3f})")


def grow(spec: Spec, rule: ScalingRule, phi: float | None = None, flops_ratio: float | None = None,
         stage_rule: StageRule = UNIFORM) -> Spec:
    """`spec` grown by `rule`, at `phi` (each dimension rounded as EfficientNet rounds it), or at a real FLOPs ratio
    `flops_ratio` within ±3 %: the rule's multipliers at the phi of that nominal growth, depth rounded as a whole,
    then the resolution in whole pixels and the width solved to land on the ratio (scaler.equal_cost), so that
    rules are compared at the cost they really have. Exactly one of `phi` and `flops_ratio`."""
    if (phi is None) == (flops_ratio is None):
        raise ScalerError("scale: give --phi or --flops-ratio (one of them)")
    if phi is not None:
        return compound(spec, *rule.coefficients, phi, rule=stage_rule)
    phi = rule.phi_for(flops_ratio)
    depth, width, resolution = multipliers(*rule.coefficients, phi)
    check_cap(spec, stage_rule)
    match = match_cost(spec, depth, width, resolution, flops_ratio, stage_rule,
                       name=f"{spec.name}@{rule.name}x{flops_ratio:g}")
    if match.network is None:
        raise ScalerError(f"flops ratio: {rule.label} cannot grow {spec.name} to {flops_ratio:g}x its FLOPs "
                          f"within ±{TOLERANCE:.0%}: {match.reason}")
    return match.network
