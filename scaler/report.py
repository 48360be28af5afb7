"""A study as a self-contained Markdown report: settings, grid, every trial, the winner, the budget fit and the
final network's per-stage table, with the figures written as files beside it."""

from __future__ import annotations

from pathlib import Path

from scaler.baselines import resolve_spec
from scaler.budget import budget_from_units
from scaler.errors import ScalerError
from scaler.plot import plot_study
from scaler.plot_family import DEFAULT_RULES, plot_family
from scaler.rules import found_rule
from scaler.scaling import compound
from scaler.searches.baseline_records import BaselineResult
from scaler.searches.compound_records import SearchResult, read_search, trial_candidate
from scaler.studies import read_study
from scaler.study.storage import find_study, storage_folder
from scaler.study.trials import candidate_states
from scaler.study.verdict import candidate_key, seed_scores, standing
from scaler.tables import equal_cost_lines, markdown_table, mean_text, stage_table


def trial_rows(result: SearchResult) -> tuple[list[str], list[list]]:
    header = ["trial", "state", "kind", "stage rule", "phi", "alpha", "beta", "gamma", "px", "FLOPs ratio", "params",
              "MFLOPs (MACs)", "top-1 per epoch", "top-1", "note"]
    rows = []
    for t in result.trials:
        note = t.failure or (f"same network as trial {t.same_network_as}" if t.same_network_as is not None else "")
        rows.append([t.number, t.state.lower(), f"{t.kind} (seed +{t.repeat})" if t.repeat else t.kind,
                     t.stage_scaling, f"{t.phi:g}", f"{t.alpha:g}", f"{t.beta:g}",
                     f"{t.gamma:.4f}", t.resolution or "-", "-" if t.flops_ratio is None else f"{t.flops_ratio:.2f}",
                     "-" if t.params is None else f"{t.params:,}", "-" if t.macs is None else f"{t.macs / 1e6:.2f}",
                     ", ".join(f"{v:.3f}" for v in t.top1_per_epoch) or "-",
                     "-" if t.top1 is None else f"{t.top1:.4f}", note])
    return header, rows


def write_report(result: SearchResult, folder: str | Path, figures: dict[str, Path]) -> Path:
    """Write `folder`/report.md for the study; `figures` (caption -> file in `folder`) are linked from it."""
    folder = Path(folder)
    r = result.recipe
    settings = [[name, f"`{value}`"] for name, value in r.to_dict().items()]
    states = candidate_states(result.trials, trial_candidate)
    compounds = sum(k[3] == "compound" and k[4:7] == (1.0, 0, 0) for k in states)  # kind; phi, repeat, epochs
    done = list(states.values()).count("COMPLETE")
    parts = [
        f"# Study `{result.study_name}`",
        f"Storage: `{result.storage}`. {len(states)} candidates, {done} scored, in {len(result.trials)} trials. "
        "FLOPs are multiply-adds of conv and linear layers per image, as in the EfficientNet paper.",
        "## Settings",
        markdown_table(["setting", "value"], settings),
        "## Grid",
        (f"Sampler `{r.sampler}`: alpha in [{r.alpha_range[0]:g}, {r.alpha_range[1]:g}], beta in "
         f"[{r.beta_range[0]:g}, {r.beta_range[1]:g}]" + (f", step {r.step:g}" if r.sampler == "grid" else
                                                          f", {r.trials} TPE proposals") +
         f"; gamma from alpha·beta²·gamma² = 2, kept where gamma >= 1: {compounds} compound candidates, "
         f"plus the baseline and depth-, width- and resolution-only references at the same nominal FLOPs. Every "
         f"candidate scales `{r.baseline}` shrunk to width {r.proxy.width:g}, depth {r.proxy.depth:g} and "
         f"{r.proxy.resolution} px, trained {r.proxy.epochs} epochs"
         f"{f' (progressive learning in {r.proxy.progressive} stages)' if r.proxy.progressive else ''} on "
         f"{r.proxy.train_size:,} images of `{r.proxy.data}`. Stage "
         f"scaling: {', '.join(r.stage_scaling)} (docs/STAGE_SCALING.md)."),
        *equal_cost_lines(r.equal_cost, result.latency_table),
    ]
    for caption, path in figures.items():
        parts += [f"## {caption}", f"![{caption}]({path.name})"]
    parts += ["## Trials", markdown_table(*trial_rows(result))]
    parts += _winner_section(result) + _budget_section(result)
    path = folder / "report.md"
    try:
        path.write_text("\n\n".join(parts) + "\n")
    except OSError as error:
        raise ScalerError(f"output: cannot write {path}: {error.strerror}") from None
    return path


def _winner_section(result: SearchResult) -> list[str]:
    """The winner against each reference (single dimensions, published rules), the seed noise and the verdict, the
    rank check."""
    r, best = result.recipe, result.best
    if best is None:
        return ["## Winner", "No compound candidate has been scored yet."]
    references = {t.kind if t.stage_scaling == r.stage_scaling[0] else f"{t.kind} [{t.stage_scaling}]": t
                  for t in result.trials if t.kind in ("baseline", "depth", "width", "resolution", "fast", "paper")
                  and t.phi == 1.0 and t.repeat == 0 and t.epochs == 0 and t.top1 is not None}
    lines = [f"alpha = {best.alpha:g}, beta = {best.beta:g}, gamma = {best.gamma:.4f}, {best.stage_scaling} stage "
             f"scaling (trial {best.number}): {mean_text(result.verdict.winner)} at {best.flops_ratio:.2f}x the "
             f"proxy's FLOPs."]
    verdict = result.verdict
    seeds = seed_scores(result.trials)
    for kind, t in references.items():  # by its mean over its seeds, as the winner
        reference = standing(seeds[candidate_key(t)], verdict.noise)
        lines.append(f"- {kind}: {mean_text(reference)} at {t.flops_ratio:.2f}x "
                     f"({verdict.winner.mean - reference.mean:+.3f} for the winner)")
    if verdict.noise is not None:
        lines.append(f"\nSeed noise: top-1 standard deviation {verdict.noise.std:.4f} "
                     f"({verdict.noise.dof} degrees of freedom). Test: {verdict.test}.")
    lines.append(f"\n{verdict.message[0].upper()}{verdict.message[1:]}.")
    ranks = verdict.ranks
    if ranks is not None:
        lines.append(f"\nRank check: Kendall's tau {ranks.kendall_tau:.2f} between the proxy's ranking and a "
                     f"{ranks.epochs}-epoch training of the best {ranks.candidates} candidates"
                     + (" (low: the short proxy does not rank them as a longer training does)."
                        if ranks.warning else "."))
    return ["## Winner", "\n".join(lines)]


def _budget_section(result: SearchResult) -> list[str]:
    """The fit of phi to the budget and the final network; without a budget, the winner at phi = 1."""
    r, best, fit = result.recipe, result.best, result.fit
    if fit is not None:
        return ["## Budget fit",
                f"phi = {fit.phi:.2f}: {fit.params:,} params, {fit.macs:,} FLOPs (MACs), {fit.spec.resolution} px, "
                f"peak training memory {fit.memory_bytes / 2**20:,.1f} MiB at batch {r.proxy.batch_size}"
                + (f", latency {fit.latency_ms:.2f} ms" if fit.latency_ms is not None else "")
                + f"; limited by {', '.join(fit.binding) or '-'}.",
                "## Final network", markdown_table(*stage_table(fit.spec))]
    if best is None:
        return []
    spec = compound(resolve_spec(r.baseline), best.alpha, best.beta, best.gamma, 1.0, rule=r.rule(best.stage_scaling))
    return ["## Budget fit", "No budget given (`--budget-gflops`, `--budget-params`, `--budget-memory-gb` or "
            "`--budget-latency-ms`): the table shows the full-size baseline scaled by the winner at phi = 1.",
            "## Final network", markdown_table(*stage_table(spec))]


def report_study(study_name: str, storage: str | None = None, output: str | Path | None = None,
                 budget_limits: dict | None = None, batch_size: int | None = None, device: str = "auto") -> Path:
    """Write a study's Markdown report and its figures into `output` (default: STUDY-report beside its storage):
    the study figure, and the costs against phi of the found family; with `budget_limits` (user units), the fit
    of phi to them. Returns the report's path."""
    url = find_study(study_name, storage)
    result = read_study(study_name, url)
    if isinstance(result, BaselineResult):
        raise ScalerError(f"report: study {study_name!r} is a baseline search, which `scaler report` does not "
                          f"write up; `scaler studies show {study_name}` lists its candidates and `scaler plot "
                          f"{study_name}` draws them")
    recipe = result.recipe
    batch_size = batch_size or recipe.proxy.batch_size
    budget = budget_from_units(**(budget_limits or {}), batch_size=batch_size, device=device)
    folder = Path(output) if output else storage_folder(url) / f"{study_name}-report"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ScalerError(f"output: cannot make {folder}: {error.strerror}") from None
    if budget is not None:
        result = read_search(study_name, url, budget)  # read again with the fit of phi to the budget
    figures = {"Top-1 against FLOPs": folder / "study.png"}
    plot_study(result, figures["Top-1 against FLOPs"])
    if result.best is not None:
        figures["Costs against phi"] = folder / "family.png"
        found = found_rule(result.best.alpha, result.best.beta, result.best.gamma)
        plot_family(recipe.baseline, figures["Costs against phi"], {found.label: found.coefficients} | DEFAULT_RULES,
                    batch_size=batch_size, budget=budget, stage_rule=recipe.rule(result.best.stage_scaling))
    return write_report(result, folder, figures)
