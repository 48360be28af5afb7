"""Pictures of a study: accuracy against FLOPs (the EfficientNet paper's argument), the alpha-beta landscape, and
a baseline search's candidates (the family figure is scaler.plot_family's).

Each figure is drawn from a plain data value that the tests compare with the study (`study_plot_data`,
`baseline_plot_data`), never from pixels. Figures are matplotlib `Figure`s (no pyplot, no global state), written as
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

from scaler.figures import FLOPS_AXIS, STYLE, check_output, save_figure
from scaler.searches.baseline_recipe import BAND
from scaler.searches.baseline_records import BaselineResult
from scaler.searches.compound_records import SearchResult, TrialRecord, trial_candidate
from scaler.studies import read_study
from scaler.study.storage import find_study, storage_folder
from scaler.study.trials import candidate_states
from scaler.study.verdict import candidate_key, seed_scores, standing


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
        for kind in ("family", "depth", "width", "resolution", "fast", "paper"):
            points = [(t.phi, t.macs, mean[t.number]) for t in scored if t.kind == kind and t.stage_scaling == rule]
            if points:  # a published rule only where the study trains it
                curves.append((STYLE[kind][0], tuple(sorted(start + points))))
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
    if data.scored:  # below the axes: inside, it hid points wherever it went
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=3)
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
    save_figure(draw_study(data), path)
    return data


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
    save_figure(draw_baseline(data), path)
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
