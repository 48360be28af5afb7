"""Pictures of a study and of a scaling family: accuracy against FLOPs (the EfficientNet paper's argument) and
the costs of a family against phi.

Each figure is drawn from a plain data value that the tests compare with the study (`study_plot_data`,
`family_data`), never from pixels. Figures are matplotlib `Figure`s (no pyplot, no global state), written as
PNG, SVG or PDF by the file's suffix. FLOPs are multiply-adds of conv and linear layers, per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from scaler.baselines import resolve_spec
from scaler.budget import Budget, budget_from_units, fit_phi
from scaler.errors import ScalerError, check_number, check_output_file
from scaler.estimator import estimate
from scaler.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, UNIFORM, StageRule, compound, stage_rule
from scaler.searches.baseline import BAND, BaselineResult
from scaler.searches.compound import SearchResult, TrialRecord, trial_candidate
from scaler.studies import read_study
from scaler.study.storage import STUDIES_FOLDER, find_study, storage_folder
from scaler.study.trials import candidate_states
from scaler.study.verdict import candidate_key, seed_scores, standing

FORMATS = (".png", ".svg", ".pdf")
FLOPS_AXIS = "FLOPs per image (multiply-adds, millions)"
# How each kind of trial is drawn: (label, marker, colour).
STYLE = {
    "compound": ("compound (grid)", "o", "tab:blue"),
    "baseline": ("baseline", "*", "black"),
    "depth": ("depth only", "s", "tab:orange"),
    "width": ("width only", "^", "tab:green"),
    "resolution": ("resolution only", "D", "tab:red"),
    "family": ("found family", "P", "tab:purple"),
}
# The paper's coefficients, and the single-dimension rules at the same nominal FLOPs (2x per unit of phi).
DEFAULT_RULES = {"paper (1.2, 1.1, 1.15)": (PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA), "depth only": (2.0, 1.0, 1.0),
                 "width only": (1.0, math.sqrt(2), 1.0), "resolution only": (1.0, 1.0, math.sqrt(2))}
# The same colour for a rule in every figure: the single-dimension rules as in the study figure.
RULE_COLOURS = {"paper (1.2, 1.1, 1.15)": "tab:blue", "depth only": STYLE["depth"][2],
                "width only": STYLE["width"][2], "resolution only": STYLE["resolution"][2]}


def check_output(path: str | Path) -> Path:
    """An image file to write (.png, .svg or .pdf), checked before any work."""
    return check_output_file(path, FORMATS)


def _save(figure: Figure, path: Path) -> Path:
    try:
        figure.savefig(path, format=path.suffix[1:].lower(), bbox_inches="tight", dpi=150)
    except OSError as error:
        raise ScalerError(f"output: cannot write {path}: {error.strerror}") from None
    return path


@dataclass(frozen=True)
class StudyPlot:
    """What the study figure shows: every trial (by state), the Pareto front, the chosen candidate, and the
    alpha-beta landscape of the compound candidates."""

    study_name: str
    trials: tuple[TrialRecord, ...]  # every trial that scores a candidate, failed and pruned included
    scored: tuple[TrialRecord, ...]  # those with a top-1 and FLOPs: the points of the accuracy panel
    pareto: tuple[int, ...]  # trial numbers on the front (no other trial has more top-1 for no more FLOPs)
    chosen: int | None
    landscape: tuple[tuple[float, float, float, float], ...]  # (alpha, beta, gamma, top-1) of compound trials
    # ... of this stage rule (the chosen candidate's); the accuracy panel draws every rule, v2 in hollow markers
    unscored: tuple[TrialRecord, ...]  # failed, pruned, running or waiting: listed, not plotted as points
    # With a family validation (--validate-phi): per rule, (phi, MACs, top-1) from phi = 0 (the baseline) up.
    curves: tuple[tuple[str, tuple[tuple[float, int, float], ...]], ...] = ()
    noise_std: float | None = None  # the study's seed noise
    landscape_rule: str = "uniform"
    # Per point of `scored`: its candidate's mean top-1 over its seeds (where it is drawn), how many seeds, and
    # the standard error of that mean (the error bar; None while the seed noise is unknown).
    means: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    standard_errors: tuple[float | None, ...] = ()


def pareto_front(points: list[tuple[int, float, float]]) -> tuple[int, ...]:
    """Numbers of the (number, cost, score) points that no other point beats: less or equal cost and more score,
    or less cost and equal score. In order of cost."""
    front, best = [], -math.inf
    for number, _, score in sorted(points, key=lambda p: (p[1], -p[2])):
        if score > best:
            front.append(number)
            best = score
    return tuple(front)


def study_plot_data(result: SearchResult) -> StudyPlot:
    """Each candidate once, at its first training on the study's proxy, drawn at its mean over its seeds with the
    standard error of that mean; a rank check's longer trainings are another proxy and are left out."""
    scored = tuple(t for t in result.trials if t.top1 is not None and t.macs is not None and t.repeat == 0
                   and t.epochs == 0)
    noise = None if result.verdict is None else result.verdict.noise
    by_seed = seed_scores(result.trials)

    def seeds_of(t: TrialRecord) -> dict[int, float]:
        """A point's seeds: the family at phi = 1 is the winner itself, and shares its seeds."""
        if t.kind == "family" and t.phi == 1.0:
            return by_seed.get(("compound", *candidate_key(t)[1:]), {0: t.top1})
        return by_seed.get(candidate_key(t), {0: t.top1}) if t.phi == 1.0 else {0: t.top1}

    standings = [standing(seeds_of(t), noise) for t in scored]
    mean = {t.number: s.mean for t, s in zip(scored, standings)}
    rule = result.best.stage_scaling if result.best is not None else result.recipe.stage_scaling[0]
    landscape = tuple((t.alpha, t.beta, t.gamma, mean[t.number]) for t in scored
                      if t.kind == "compound" and t.stage_scaling == rule)
    curves = []
    if any(t.kind == "family" for t in scored):
        start = [(0.0, t.macs, mean[t.number]) for t in scored if t.kind == "baseline"]
        for kind in ("family", "depth", "width", "resolution"):
            points = sorted(start + [(t.phi, t.macs, mean[t.number]) for t in scored
                                     if t.kind == kind and t.stage_scaling == rule])
            curves.append((STYLE[kind][0], tuple(points)))
    return StudyPlot(
        study_name=result.study_name, trials=result.trials, scored=scored,
        pareto=pareto_front([(t.number, t.macs, mean[t.number]) for t in scored]),
        chosen=None if result.best is None else result.best.number, landscape=landscape,
        unscored=unscored(result.trials), curves=tuple(curves),
        noise_std=None if noise is None else noise.std, landscape_rule=rule,
        means=tuple(s.mean for s in standings), seeds=tuple(s.n for s in standings),
        standard_errors=tuple(s.standard_error for s in standings),
    )


def unscored(trials: tuple[TrialRecord, ...]) -> tuple[TrialRecord, ...]:
    """Trials without a score whose candidate has none either: failed, pruned, running or waiting. A trial cut off
    and trained again by a later one is done, not failed."""
    scored = {trial_candidate(t) for t in trials if t.top1 is not None}
    return tuple(t for t in trials if t.top1 is None and trial_candidate(t) not in scored)


def point_series(data: StudyPlot) -> tuple[tuple[str, str, str, bool, tuple[TrialRecord, ...]], ...]:
    """The accuracy panel's points, one series per kind of trial and stage rule: (legend label, marker, colour,
    hollow, trials). The stage rules are told apart: uniform in filled markers, v2 in hollow ones, and each rule
    named in the legend when the study has another than uniform."""
    rules = sorted({t.stage_scaling for t in data.trials}, key=lambda r: r != "uniform")
    series = []
    for kind, (label, marker, colour) in STYLE.items():
        for rule in rules:
            points = tuple(t for t in data.scored if t.kind == kind and t.stage_scaling == rule)
            if points:
                named = label + (f" [{rule}]" if rules != ["uniform"] else "")
                series.append((named, marker, colour, rule != "uniform", points))
    return tuple(series)


def draw_study(data: StudyPlot) -> Figure:
    """The accuracy panel (each candidate at its mean, the Pareto front, the chosen one ringed and named in the
    legend) beside the alpha-beta landscape as a heat map over the grid. Constrained layout keeps the panels, their
    titles, the legend and the colour bar apart; every label sits inside its own axes."""
    figure = Figure(figsize=(13, 5.6), layout="constrained")
    ax, land = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    by_number = {t.number: t for t in data.scored}
    mean = dict(zip(by_number, data.means))
    error = dict(zip(by_number, data.standard_errors))
    for label, marker, colour, hollow, points in point_series(data):
        kind = points[0].kind
        ax.scatter([t.macs / 1e6 for t in points], [mean[t.number] for t in points], marker=marker,
                   s=90 if kind != "compound" else 40, label=label, zorder=3,
                   facecolors="none" if hollow else colour, edgecolors=colour if hollow else "white",
                   linewidths=1.2 if hollow else 0.5)
        if data.noise_std is not None:
            ax.errorbar([t.macs / 1e6 for t in points], [mean[t.number] for t in points],
                        yerr=[error[t.number] for t in points], fmt="none", ecolor=colour, alpha=0.5, capsize=2,
                        zorder=2)
    colours = {label: colour for label, _, colour in STYLE.values()}
    for label, points in data.curves:
        ax.plot([macs / 1e6 for _, macs, _ in points], [top1 for _, _, top1 in points], color=colours[label],
                linewidth=1.2, alpha=0.8, zorder=2)
        for phi, macs, top1 in points[1:]:
            ax.annotate(f"phi {phi:g}", (macs / 1e6, top1), xytext=(4, 4), textcoords="offset points", fontsize=7,
                        color=colours[label], annotation_clip=True, clip_on=True)
    front = [by_number[n] for n in data.pareto]
    if front:
        ax.step([t.macs / 1e6 for t in front], [mean[t.number] for t in front], where="post", color="gray",
                linestyle="--", linewidth=1, label="Pareto front", zorder=2)
    if data.chosen is not None:
        best = by_number[data.chosen]
        ax.scatter([best.macs / 1e6], [mean[best.number]], s=260, facecolors="none", edgecolors="red",
                   linewidths=1.8, zorder=4,
                   label=f"chosen: alpha {best.alpha:g}, beta {best.beta:g}, gamma {best.gamma:.3f}")
    failed = [t for t in data.unscored if t.state == "FAIL"]
    pruned = [t for t in data.unscored if t.state == "PRUNED"]
    note = ", ".join(part for part in (f"{len(failed)} failed" if failed else "",
                                       f"{len(pruned)} pruned" if pruned else "") if part)
    ax.margins(0.1)  # room inside the axes for the "phi" labels beside the outermost points
    ax.set_xlabel(FLOPS_AXIS)
    ax.set_ylabel("top-1 on the proxy" + ("" if data.noise_std is None else " (mean ± standard error)"))
    ax.set_title(f"study {data.study_name}: top-1 against FLOPs" + (f"\n({note}, not shown)" if note else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    if data.scored:
        ax.legend(fontsize=8, loc="best")
    rule = "" if data.landscape_rule == "uniform" and len({t.stage_scaling for t in data.trials}) < 2 \
        else f", {data.landscape_rule} stage scaling"
    land.set_title(f"alpha-beta landscape{rule}\n(colour: top-1; text: gamma; red: chosen)", fontsize=10)
    if data.landscape:
        _draw_landscape(figure, land, data, by_number)
    else:
        land.text(0.5, 0.5, "no compound candidate scored yet", ha="center", va="center", transform=land.transAxes)
        land.set_xlabel("alpha (depth)")
        land.set_ylabel("beta (width)")
    return figure


def _draw_landscape(figure: Figure, land, data: StudyPlot, by_number: dict) -> None:
    """The compound candidates as a heat map: one cell of the same size per grid point (alpha across, beta up),
    an empty cell where the grid has no candidate, each cell's gamma written in black or white, whichever reads
    on its colour."""
    alphas = sorted({a for a, _, _, _ in data.landscape})
    betas = sorted({b for _, b, _, _ in data.landscape})
    top1 = np.full((len(betas), len(alphas)), np.nan)
    for alpha, beta, _, score in data.landscape:
        top1[betas.index(beta), alphas.index(alpha)] = score
    low, high = float(np.nanmin(top1)), float(np.nanmax(top1))
    norm = Normalize(low, high if high > low else low + 1e-9)
    cmap = colormaps["viridis"]
    mesh = land.pcolormesh(np.arange(len(alphas) + 1) - 0.5, np.arange(len(betas) + 1) - 0.5,
                           np.ma.masked_invalid(top1), cmap=cmap, norm=norm, edgecolors="white", linewidth=0.5)
    for alpha, beta, gamma, score in data.landscape:
        red, green, blue, _ = cmap(norm(score))
        ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
        land.text(alphas.index(alpha), betas.index(beta), f"{gamma:.2f}", ha="center", va="center",
                  fontsize=8 if len(alphas) <= 9 else 6, color=ink, clip_on=True)
    figure.colorbar(mesh, ax=land, label="top-1 on the proxy")
    if data.chosen is not None:
        best = by_number[data.chosen]
        if best.alpha in alphas and best.beta in betas:
            land.add_patch(Rectangle((alphas.index(best.alpha) - 0.5, betas.index(best.beta) - 0.5), 1, 1,
                                     fill=False, edgecolor="red", linewidth=2.5))
    land.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    land.set_yticks(range(len(betas)), [f"{b:g}" for b in betas])
    land.set_xlabel("alpha (depth)")
    land.set_ylabel("beta (width)")
    land.set_aspect("equal" if len(alphas) * 2 > len(betas) and len(betas) * 2 > len(alphas) else "auto")


def plot_study(result: SearchResult, path: str | Path) -> StudyPlot:
    """Write the study figure to `path` (.png, .svg or .pdf) and return the data it shows."""
    path = check_output(path)
    data = study_plot_data(result)
    _save(draw_study(data), path)
    return data


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


def family_data(baseline, rules: dict[str, tuple[float, float, float]] | None = None,
                phis: tuple[float, ...] | None = None, batch_size: int = 1, budget: Budget | None = None,
                stage_rule: StageRule = UNIFORM) -> tuple[FamilyCurve, ...]:
    """Costs against phi, from the estimator alone, for each rule (default: the paper's coefficients and the
    single-dimension rules), every one spread over the stages by `stage_rule`. The budget's phi is fitted exactly
    (to 0.01) on each rule's rounded networks."""
    base = resolve_spec(baseline)
    rules = rules or DEFAULT_RULES
    phis = phis or tuple(i / 4 for i in range(0, 25))
    curves = []
    for label, (alpha, beta, gamma) in rules.items():
        costs = [estimate(compound(base, alpha, beta, gamma, phi, rule=stage_rule), batch_size=batch_size)
                 for phi in phis]
        budget_phi, budget_note = None, None
        if budget is not None:
            try:
                budget_phi = fit_phi(base, budget, alpha, beta, gamma, rule=stage_rule).phi
            except ScalerError as error:  # below the smallest network the rule makes, or past MAX_PHI
                budget_note = str(error)
        curves.append(FamilyCurve(label, alpha, beta, gamma, tuple(phis), tuple(c.macs for c in costs),
                                  tuple(c.params for c in costs), tuple(c.activations for c in costs),
                                  tuple(c.peak_training_memory_bytes for c in costs), budget_phi,
                                  stage_rule.name, stage_rule.max_resolution, budget_note))
    return tuple(curves)


def draw_family(curves: tuple[FamilyCurve, ...], baseline_name: str, batch_size: int,
                budget: Budget | None = None, stage_rule: StageRule = UNIFORM) -> Figure:
    figure = Figure(figsize=(12, 8.5), layout="constrained")
    axes = figure.subplots(2, 2).ravel()
    panels = [("macs", "FLOPs per image (multiply-adds)", "macs"), ("params", "parameters", "params"),
              ("activations", "activations per image (conv and linear outputs)", None),
              ("memory_bytes", f"peak training memory at batch {batch_size} (bytes)", "memory_bytes")]
    for ax, (field, label, limit) in zip(axes, panels):
        for curve in curves:
            colour = RULE_COLOURS.get(curve.label, "tab:purple")  # a study's or the user's coefficients: purple
            ax.plot(curve.phis, getattr(curve, field), marker=".", label=curve.label, color=colour)
            if curve.budget_phi is not None:  # each rule's own line, named in the legend with its phi
                ax.axvline(curve.budget_phi, color=colour, linestyle=":", linewidth=1.4,
                           label=f"{curve.label}: phi {curve.budget_phi:.2f} within the budget")
        if budget is not None and limit is not None and getattr(budget, limit) is not None:
            ax.axhline(getattr(budget, limit), color="red", linewidth=1, label="budget")
        ax.set_yscale("log")
        ax.set_xlabel("phi")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    cap = "" if stage_rule.max_resolution is None else f", resolution capped at {stage_rule.max_resolution} px"
    figure.suptitle(f"{baseline_name}: costs against phi, {stage_rule.name} stage scaling{cap}"
                    + (" (dotted: largest phi within the budget)" if budget is not None else ""))
    return figure


def plot_family(baseline, path: str | Path, rules=None, phis=None, batch_size: int = 1,
                budget: Budget | None = None, stage_rule: StageRule = UNIFORM) -> tuple[FamilyCurve, ...]:
    """Write the family figure to `path` and return its curves."""
    path = check_output(path)
    curves = family_data(baseline, rules, phis, batch_size, budget, stage_rule)
    _save(draw_family(curves, resolve_spec(baseline).name, batch_size, budget, stage_rule), path)
    return curves


@dataclass(frozen=True)
class BaselinePlot:
    """What the baseline-study figure shows: every trained candidate as (trial, FLOPs, top-1, reward), the Pareto
    front of top-1 against FLOPs, the best by reward, the target and its band, and what was left out."""

    study_name: str
    target_macs: float
    band: tuple[float, float]  # the FLOPs a candidate had to lie within to be trained
    points: tuple[tuple[int, int, float, float], ...]
    pareto: tuple[int, ...]
    best: int | None
    rejected: int  # proposals outside the band, never trained
    failed: int  # trainings that failed (out of memory, non-finite loss, interrupted)


def baseline_plot_data(result: BaselineResult) -> BaselinePlot:
    points = tuple((t.number, t.macs, t.top1, t.reward) for t in result.trials if t.reward is not None)
    target = result.recipe.target_macs
    return BaselinePlot(
        study_name=result.study_name, target_macs=target, band=(BAND[0] * target, BAND[1] * target),
        points=points, pareto=pareto_front([(n, macs, top1) for n, macs, top1, _ in points]),
        best=None if result.best is None else result.best.number, rejected=result.rejected,
        failed=list(candidate_states(result.trials, lambda t: t.choices).values()).count("FAIL"),
    )


def draw_baseline(data: BaselinePlot) -> Figure:
    figure = Figure(figsize=(13, 5.2))
    accuracy, rewards = figure.subplots(1, 2)
    by_number = {n: (macs / 1e6, top1, value) for n, macs, top1, value in data.points}
    for ax, index, label in ((accuracy, 1, "top-1 on the proxy"), (rewards, 2, "reward: top-1 x (FLOPs / target)^w")):
        ax.axvspan(data.band[0] / 1e6, data.band[1] / 1e6, color="tab:green", alpha=0.08, label="FLOPs band trained")
        ax.axvline(data.target_macs / 1e6, color="tab:green", linewidth=1, label="target")
        if data.points:
            ax.scatter([p[0] for p in by_number.values()], [p[index] for p in by_number.values()], s=30,
                       color="tab:blue", label="candidates", zorder=3)
        if data.best is not None:
            x, *values = by_number[data.best]
            ax.scatter([x], [values[index - 1]], s=160, facecolors="none", edgecolors="red", linewidths=2,
                       label=f"best (trial {data.best})", zorder=4)
        ax.set_xlabel(FLOPS_AXIS)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    front = [by_number[n] for n in data.pareto]
    if front:
        accuracy.step([p[0] for p in front], [p[1] for p in front], where="post", color="gray", linestyle="--",
                      linewidth=1, label="Pareto front", zorder=2)
    accuracy.legend(fontsize=8, loc="best")
    left_out = ", ".join(part for part in (f"{data.rejected} rejected outside the band" if data.rejected else "",
                                           f"{data.failed} failed" if data.failed else "") if part)
    figure.suptitle(f"baseline study {data.study_name}: {len(data.points)} candidates trained"
                    + (f" ({left_out}, not shown)" if left_out else ""), fontsize=10)
    return figure


def plot_baseline(result: BaselineResult, path: str | Path) -> BaselinePlot:
    """Write the baseline-study figure to `path` (.png, .svg or .pdf) and return the data it shows."""
    path = check_output(path)
    data = baseline_plot_data(result)
    _save(draw_baseline(data), path)
    return data


@dataclass(frozen=True)
class StudyFigure:
    """A study's figure as written: where, and what it shows (a StudyPlot, or a BaselinePlot for a baseline
    search)."""

    path: Path
    data: StudyPlot | BaselinePlot


def plot_saved_study(study_name: str, storage: str | None = None, output: str | Path | None = None) -> StudyFigure:
    """The figure of a study of either kind, written to `output` (default: STUDY.png beside its storage)."""
    url = find_study(study_name, storage)
    path = check_output(output or storage_folder(url) / f"{study_name}.png")
    result = read_study(study_name, url)
    data = plot_baseline(result, path) if isinstance(result, BaselineResult) else plot_study(result, path)
    return StudyFigure(path, data)


@dataclass(frozen=True)
class FamilyFigure:
    """The family figure as written: its curves, the stage rule they follow and the phis they span."""

    path: Path
    curves: tuple[FamilyCurve, ...]
    stage_rule: StageRule
    phis: tuple[float, ...]


def found_rule(result: SearchResult) -> dict[str, tuple[float, float, float]]:
    """A study's winning coefficients, named as the family figure's legend names them."""
    b = result.best
    return {f"found ({b.alpha:g}, {b.beta:g}, {b.gamma:.3f})": (b.alpha, b.beta, b.gamma)}


def plot_rules(study_name: str | None = None, storage: str | None = None, output: str | Path | None = None,
               baseline: str | None = None, coefficients: tuple[float | None, float | None, float | None] = (None,) * 3,
               max_phi: float = 6.0, stage_scaling: str | None = None, max_resolution: int | None = None,
               batch_size: int = 1, budget_limits: dict | None = None, device: str = "auto") -> FamilyFigure:
    """Costs against phi (`scaler plot --family`) for a study's found coefficients or the `coefficients` given,
    the paper's and each single-dimension rule; `budget_limits` (user units, scaler.budget.budget_from_units)
    mark where each rule meets the budget."""
    given = [v for v in coefficients if v is not None]
    if given and (study_name or len(given) < 3):
        raise ScalerError("plot --family: give --alpha, --beta and --gamma together, or a STUDY, not both")
    rules = {}
    if study_name:
        result = read_study(study_name, storage)
        if isinstance(result, BaselineResult):
            raise ScalerError(f"plot --family: study {study_name!r} is a baseline search; plot the costs of its best "
                              f"baseline with --family --baseline FILE (its spec file)")
        if result.best is None:
            raise ScalerError(f"plot --family: study {study_name!r} has no scored compound candidate yet")
        rules = found_rule(result)
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
    budget = budget_from_units(**(budget_limits or {}), batch_size=batch_size, device=device)
    phis = tuple(i / 4 for i in range(int(max_phi * 4) + 1))
    curves = plot_family(baseline or "efficientnet-b0", path, rules | DEFAULT_RULES, phis, batch_size, budget, rule)
    return FamilyFigure(path, curves, rule, phis)
