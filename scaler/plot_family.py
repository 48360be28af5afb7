"""The costs of a scaling family against phi, for several rules side by side (`scaler plot --family`): from the
estimator alone, so no tensor, study or sampler is loaded unless a study's found coefficients are asked for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from scaler.baselines import resolve_spec
from scaler.budget import Budget, budget_from_units, fit_phi
from scaler.errors import ScalerError, check_number
from scaler.estimator import estimate
from scaler.figures import STYLE, check_output, save_figure
from scaler.rules import fast_rule, found_rule, named_rule
from scaler.scaling import UNIFORM, StageRule, compound, stage_rule
from scaler.study import STUDIES_FOLDER

# The rules drawn unless others are asked for: the paper's coefficients and each single dimension alone.
DEFAULT_RULE_NAMES = ("compound", "depth", "width", "resolution")
DEFAULT_RULES = {r.label: r.coefficients for r in map(named_rule, DEFAULT_RULE_NAMES)}
# The same colour for a rule in every figure: the single-dimension rules as in the study figure.
RULE_COLOURS = {"paper (1.2, 1.1, 1.15)": "tab:blue", "depth only": STYLE["depth"][2],
                "width only": STYLE["width"][2], "resolution only": STYLE["resolution"][2],
                fast_rule().label: "tab:cyan"}



@dataclass(frozen=True)
class FamilyCurve:
    """One scaling rule's costs at each phi, and the largest phi that meets the budget (if one was given)."""

    label: str
    alpha: float
    beta: float
    gamma: float
    phis: tuple[float, ...]
    macs: tuple[int, ...]
    params: tuple[int, ...]
    activations: tuple[int, ...]
    memory_bytes: tuple[int, ...]
    budget_phi: float | None
    stage_scaling: str = "uniform"
    max_resolution: int | None = None
    budget_note: str | None = None  # why the rule cannot meet the budget, when it cannot
    latency_phis: tuple[float, ...] = ()  # the whole phis where latency was measured (with a device)
    latency_ms: tuple[float, ...] = ()  # forward latency at batch 1 there, milliseconds


def family_data(baseline, rules: dict[str, tuple[float, float, float]] | None = None,
                phis: tuple[float, ...] | None = None, batch_size: int = 1, budget: Budget | None = None,
                stage_rule: StageRule = UNIFORM, latency_device: str | None = None) -> tuple[FamilyCurve, ...]:
    """Costs against phi, from the estimator alone, for each rule (default: the paper's coefficients and the
    single-dimension rules), every one spread over the stages by `stage_rule`. The budget's phi is fitted exactly
    (to 0.01) on each rule's rounded networks. With `latency_device`, each rule's forward latency at batch 1 is
    measured there at the whole phis (`latency_phis`): a measurement builds and runs the network, so not at every
    quarter."""
    base = resolve_spec(baseline)
    rules = rules or DEFAULT_RULES
    phis = phis or tuple(i / 4 for i in range(0, 25))
    curves = []
    for label, (alpha, beta, gamma) in rules.items():
        networks = {phi: compound(base, alpha, beta, gamma, phi, rule=stage_rule) for phi in phis}
        costs = [estimate(network, batch_size=batch_size) for network in networks.values()]
        budget_phi, budget_note = None, None
        if budget is not None:
            try:
                budget_phi = fit_phi(base, budget, alpha, beta, gamma, rule=stage_rule).phi
            except ScalerError as error:  # below the smallest network the rule makes, or past MAX_PHI
                budget_note = str(error)
        latency_phis = tuple(phi for phi in phis if phi == int(phi)) if latency_device is not None else ()
        latency = tuple(_latency(networks[phi], latency_device) for phi in latency_phis)
        curves.append(FamilyCurve(label, alpha, beta, gamma, tuple(phis), tuple(c.macs for c in costs),
                                  tuple(c.params for c in costs), tuple(c.activations for c in costs),
                                  tuple(c.peak_training_memory_bytes for c in costs), budget_phi,
                                  stage_rule.name, stage_rule.max_resolution, budget_note, latency_phis, latency))
    return tuple(curves)


def _latency(spec, device: str) -> float:
    from scaler.measurement import measure_latency_ms  # builds and runs the network: torch only when asked

    return measure_latency_ms(spec, device)


def draw_family(curves: tuple[FamilyCurve, ...], baseline_name: str, batch_size: int,
                budget: Budget | None = None, stage_rule: StageRule = UNIFORM) -> Figure:
    """Real FLOPs against phi (where each rule meets the budget), then each other cost against real FLOPs: at the
    same FLOPs, which rule is cheapest to store, to train and (measured, when it was) to run."""
    latency = any(curve.latency_ms for curve in curves)
    figure = Figure(figsize=(17, 8.5) if latency else (12, 8.5), layout="constrained")
    axes = figure.subplots(2, 3 if latency else 2).ravel()
    panels = [("params", "parameters", "params"),
              ("activations", "activations per image (conv and linear outputs)", None),
              ("memory_bytes", f"peak training memory at batch {batch_size} (bytes)", "memory_bytes")]
    if latency:
        panels.append(("latency_ms", "forward latency at batch 1 (ms, measured)", "latency_ms"))
    _draw_flops_against_phi(axes[0], curves, budget)
    for ax, (field, label, limit) in zip(axes[1:], panels):
        for curve in curves:
            colour = RULE_COLOURS.get(curve.label, "tab:purple")  # a study's or the user's coefficients: purple
            phis = curve.latency_phis if field == "latency_ms" else curve.phis
            ax.plot([curve.macs[curve.phis.index(p)] for p in phis], getattr(curve, field), marker=".",
                    label=curve.label, color=colour)
        if budget is not None and limit is not None and getattr(budget, limit) is not None:
            ax.axhline(getattr(budget, limit), color="red", linewidth=1, label="budget")
        if budget is not None and budget.macs is not None:
            ax.axvline(budget.macs, color="red", linewidth=1, linestyle="--", label="FLOPs budget")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("real FLOPs per image (multiply-adds, rounded network)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    for ax in axes[1 + len(panels):]:
        ax.set_visible(False)
    axes[1].legend(fontsize=8)
    cap = "" if stage_rule.max_resolution is None else f", resolution capped at {stage_rule.max_resolution} px"
    figure.suptitle(f"{baseline_name}: each rule's costs against its real FLOPs, {stage_rule.name} stage "
                    f"scaling{cap}")
    return figure


def _draw_flops_against_phi(ax, curves: tuple[FamilyCurve, ...], budget: Budget | None) -> None:
    for curve in curves:
        colour = RULE_COLOURS.get(curve.label, "tab:purple")
        ax.plot(curve.phis, curve.macs, marker=".", label=curve.label, color=colour)
        if curve.budget_phi is not None:  # each rule's own line, named in the legend with its phi
            ax.axvline(curve.budget_phi, color=colour, linestyle=":", linewidth=1.4,
                       label=f"{curve.label}: phi {curve.budget_phi:.2f} within the budget")
    if budget is not None and budget.macs is not None:
        ax.axhline(budget.macs, color="red", linewidth=1, label="budget")
    ax.set_yscale("log")
    ax.set_xlabel("phi")
    ax.set_ylabel("real FLOPs per image (multiply-adds)")
    ax.set_title("FLOPs against phi" + (" (dotted: largest phi within the budget)" if budget is not None else ""),
                 fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def plot_family(baseline, path: str | Path, rules=None, phis=None, batch_size: int = 1,
                budget: Budget | None = None, stage_rule: StageRule = UNIFORM,
                latency_device: str | None = None) -> tuple[FamilyCurve, ...]:
    """Write the family figure to `path` and return its curves."""
    path = check_output(path)
    curves = family_data(baseline, rules, phis, batch_size, budget, stage_rule, latency_device)
    save_figure(draw_family(curves, resolve_spec(baseline).name, batch_size, budget, stage_rule), path)
    return curves


@dataclass(frozen=True)
class FamilyFigure:
    """The family figure as written: its curves, the stage rule they follow and the phis they span."""

    path: Path
    curves: tuple[FamilyCurve, ...]
    stage_rule: StageRule
    phis: tuple[float, ...]


def plot_rules(study_name: str | None = None, storage: str | None = None, output: str | Path | None = None,
               baseline: str | None = None, coefficients: tuple[float | None, float | None, float | None] = (None,) * 3,
               max_phi: float = 6.0, stage_scaling: str | None = None, max_resolution: int | None = None,
               batch_size: int = 1, budget_limits: dict | None = None, device: str | None = None,
               rule_names: tuple[str, ...] = DEFAULT_RULE_NAMES) -> FamilyFigure:
    """Costs against phi (`scaler plot --family`) for a study's found coefficients or the `coefficients` given,
    the paper's and each single-dimension rule; `budget_limits` (user units, scaler.budget.budget_from_units)
    mark where each rule meets the budget. With a `device`, each rule's latency is measured there too."""
    given = [v for v in coefficients if v is not None]
    if given and (study_name or len(given) < 3):
        raise ScalerError("plot --family: give --alpha, --beta and --gamma together, or a STUDY, not both")
    rules = {}
    if study_name:
        from scaler.searches.baseline_records import BaselineResult  # a study to read: optuna is needed now
        from scaler.studies import read_study

        result = read_study(study_name, storage)
        if isinstance(result, BaselineResult):
            raise ScalerError(f"plot --family: study {study_name!r} is a baseline search; plot the costs of its best "
                              f"baseline with --family --baseline FILE (its spec file)")
        if result.best is None:
            raise ScalerError(f"plot --family: study {study_name!r} has no scored compound candidate yet")
        found = found_rule(result.best.alpha, result.best.beta, result.best.gamma)
        rules = {found.label: found.coefficients}
        baseline = baseline or result.recipe.baseline
        rule = result.recipe.rule(stage_scaling or result.best.stage_scaling)
        if max_resolution is not None:
            rule = stage_rule(rule.name, max_resolution)
    else:
        rule = stage_rule(stage_scaling or "uniform", max_resolution)
        if given:
            alpha, beta, gamma = coefficients
            rules[f"given ({alpha:g}, {beta:g}, {gamma:g})"] = (alpha, beta, gamma)
    check_number("--max-phi", max_phi, 0, 12, above_low=True)
    if output is None:
        STUDIES_FOLDER.mkdir(exist_ok=True)  # beside the studies' own figures, never in the working folder
    path = check_output(output or STUDIES_FOLDER / "family.png")
    budget = budget_from_units(**(budget_limits or {}), batch_size=batch_size, device=device or "auto")
    phis = tuple(i / 4 for i in range(int(max_phi * 4) + 1))
    named = {r.label: r.coefficients for r in map(named_rule, rule_names)}
    curves = plot_family(baseline or "efficientnet-b0", path, rules | named, phis, batch_size, budget, rule, device)
    return FamilyFigure(path, curves, rule, phis)
