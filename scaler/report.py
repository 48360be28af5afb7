"""A study as a self-contained Markdown report: settings, grid, every trial, the winner, the budget fit and the
final network's per-stage table, with the figures written as files beside it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from scaler.baselines import resolve_spec
from scaler.errors import ScalerError
from scaler.estimate import estimate
from scaler.scaling import compound
from scaler.search import SearchResult
from scaler.spec import Spec

STAGE_HEADER = ["part", "block", "repeats", "channels", "stride", "kernel", "expansion", "se", "output"]


def stage_table(spec: Spec) -> tuple[list[str], list[list]]:
    """(header, rows) of a network's parts: stem, each stage, head, with each part's output shape."""
    e = estimate(spec)
    stem = {"resnet": "conv+maxpool", "convnext": "patchify"}.get(spec.family, "conv")
    rows = [["stem", stem, 1, spec.stem.channels, spec.stem.stride, spec.stem.kernel, "-", "-",
             "x".join(map(str, e.parts[0].output_shape[1:]))]]
    for i, (stage, part) in enumerate(zip(spec.stages, e.parts[1:-1])):
        rows.append([f"stage {i + 1}", stage.block, stage.repeats, stage.channels, stage.stride, stage.kernel,
                     f"{stage.expansion:g}", f"{stage.se_ratio:g}", "x".join(map(str, part.output_shape[1:]))])
    if spec.head.channels:
        rows.append(["head", "conv 1x1", 1, spec.head.channels, 1, 1, "-", "-", rows[-1][-1]])
    return STAGE_HEADER, rows


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


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
    settings = [[name, f"`{value}`"] for name, value in asdict(r).items()]
    compound_trials = [t for t in result.trials if t.kind == "compound"]
    done = sum(t.state == "COMPLETE" for t in result.trials)
    parts = [
        f"# Study `{result.study_name}`",
        f"Storage: `{result.storage}`. {len(result.trials)} candidates recorded, {done} complete. FLOPs are "
        "multiply-adds of conv and linear layers per image, as in the EfficientNet paper.",
        "## Settings",
        markdown_table(["setting", "value"], settings),
        "## Grid",
        (f"Sampler `{r.sampler}`: alpha in [{r.alpha_range[0]:g}, {r.alpha_range[1]:g}], beta in "
         f"[{r.beta_range[0]:g}, {r.beta_range[1]:g}]" + (f", step {r.step:g}" if r.sampler == "grid" else
                                                          f", {r.trials} TPE proposals") +
         f"; gamma from alpha·beta²·gamma² = 2, kept where gamma >= 1: {len(compound_trials)} compound candidates, "
         f"plus the baseline and depth-, width- and resolution-only references at the same nominal FLOPs. Every "
         f"candidate scales `{r.baseline}` shrunk to width {r.proxy_width:g}, depth {r.proxy_depth:g} and "
         f"{r.proxy_resolution} px, trained {r.epochs} epochs"
         f"{f' (progressive learning in {r.progressive} stages)' if r.progressive else ''} on {r.train_size:,} "
         f"images of `{r.data}`. Stage "
         f"scaling: {', '.join(r.stage_scaling)} (docs/STAGE_SCALING.md)."),
    ]
    for caption, path in figures.items():
        parts += [f"## {caption}", f"![{caption}]({path.name})"]
    parts += ["## Trials", markdown_table(*trial_rows(result))]
    best = result.best
    if best is None:
        parts += ["## Winner", "No compound candidate has been scored yet."]
    else:
        references = {t.kind if t.stage_scaling == r.stage_scaling[0] else f"{t.kind} [{t.stage_scaling}]": t
                      for t in result.trials if t.kind in ("baseline", "depth", "width", "resolution")
                      and t.phi == 1.0 and t.repeat == 0 and t.epochs == 0 and t.top1 is not None}
        lines = [f"alpha = {best.alpha:g}, beta = {best.beta:g}, gamma = {best.gamma:.4f}, {best.stage_scaling} stage "
                 f"scaling (trial {best.number}): top-1 {best.top1:.4f} at {best.flops_ratio:.2f}x the proxy's FLOPs."]
        lines += [f"- {kind}: top-1 {t.top1:.4f} at {t.flops_ratio:.2f}x ({best.top1 - t.top1:+.4f} for the winner)"
                  for kind, t in references.items()]
        confidence = result.confidence
        if confidence["noise"] is not None:
            lines.append(f"\nSeed noise: top-1 standard deviation {confidence['noise']['std']:.4f} "
                         f"({confidence['noise']['dof']} degrees of freedom). Test: {confidence['test']}.")
        lines.append(f"\n{confidence['message'][0].upper()}{confidence['message'][1:]}.")
        ranks = confidence.get("ranks")
        if ranks is not None:
            lines.append(f"\nRank check: Kendall's tau {ranks['kendall_tau']:.2f} between the proxy's ranking and a "
                         f"{ranks['epochs']}-epoch training of the best {ranks['candidates']} candidates"
                         + (" (low: the short proxy does not rank them as a longer training does)."
                            if ranks["warning"] else "."))
        parts += ["## Winner", "\n".join(lines)]
    fit = result.fit
    if fit is not None:
        parts += ["## Budget fit",
                  f"phi = {fit.phi:.2f}: {fit.params:,} params, {fit.macs:,} FLOPs (MACs), {fit.spec.resolution} px, "
                  f"peak training memory {fit.memory_bytes / 2**20:,.1f} MiB at batch {r.batch_size}"
                  + (f", latency {fit.latency_ms:.2f} ms" if fit.latency_ms is not None else "")
                  + f"; limited by {', '.join(fit.binding) or '-'}.",
                  "## Final network", markdown_table(*stage_table(fit.spec))]
    elif best is not None:
        spec = compound(resolve_spec(r.baseline), best.alpha, best.beta, best.gamma, 1.0,
                        rule=r.rule(best.stage_scaling))
        parts += ["## Budget fit", "No budget given (`--budget-gflops`, `--budget-params`, `--budget-memory-gb` or "
                  "`--budget-latency-ms`): the table shows the full-size baseline scaled by the winner at phi = 1.",
                  "## Final network", markdown_table(*stage_table(spec))]
    path = folder / "report.md"
    try:
        path.write_text("\n\n".join(parts) + "\n")
    except OSError as error:
        raise ScalerError(f"output: cannot write {path}: {error.strerror}") from None
    return path
