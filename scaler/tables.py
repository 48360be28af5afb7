"""Results as text for people: aligned tables and one-line summaries of specs, estimates, studies and searches.
Pure functions of the library's results; the CLI prints what they return (or the results' JSON). No torch, no
optuna, no matplotlib: the light commands print through here and start at once."""

from __future__ import annotations

from scaler.baselines import resolve_spec
from scaler.equal_cost import CURRENCY_LABELS
from scaler.estimator import Estimate, estimate
from scaler.spec import Spec

FLOPS_NOTE = "FLOPs are multiply-adds of conv and linear layers, per image, as in the EfficientNet paper."
STAGE_HEADER = ["part", "block", "repeats", "channels", "stride", "kernel", "expansion", "se", "output"]


def table(headers: list[str], rows: list[list]) -> str:
    """Columns aligned: text to the left, numbers to the right."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(c[:1].isdigit() for c in (row[i] for row in cells[1:]) if c) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     .rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def giga(value: int) -> str:
    return f"{value / 1e9:.3f} G"


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f} MiB"


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


def spec_text(spec: Spec) -> str:
    return table(*stage_table(spec))


def settings_line(spec: Spec) -> str:
    return (f"{spec.name}: {spec.resolution} px, {spec.num_classes} classes, {spec.activation}, {spec.norm}, "
            f"dropout {spec.dropout:g}, drop-path {spec.drop_path:g}, rounding {spec.rounding} "
            f"(divisor {spec.divisor})")


def _part_summaries(spec: Spec) -> list[str]:
    """What each row of the estimate's per-part table is, e.g. 'mbconv x2 24ch k3 s2 e6 se0.25'."""
    stem = spec.stem
    texts = [f"{stem.kernel}x{stem.kernel} conv {stem.channels}ch s{stem.stride}"]
    for s in spec.stages:
        texts.append(f"{s.block} x{s.repeats} {s.channels}ch k{s.kernel} s{s.stride} e{s.expansion:g}"
                     + (f" se{s.se_ratio:g}" if s.se_ratio else ""))
    head = f"{spec.head.channels}ch, " if spec.head.channels else ""
    return texts + [f"{head}pool, linear {spec.num_classes}"]


def costs_table(spec: Spec, e: Estimate) -> str:
    rows = [[p.name, summary, f"{p.params:,}", f"{p.macs:,}", f"{p.fvcore_flops:,}", f"{p.activations:,}",
             mib(p.saved_activation_bytes), "x".join(map(str, p.output_shape))]
            for p, summary in zip(e.parts, _part_summaries(spec))]
    rows.append(["total", "", f"{e.params:,}", f"{e.macs:,}", f"{e.fvcore_flops:,}", f"{e.activations:,}",
                 mib(e.saved_activation_bytes), ""])
    return table(["part", "what", "params", "FLOPs (MACs)", "fvcore", "activations", "saved (train)", "output"], rows)


def estimate_summary(e: Estimate) -> str:
    return "\n".join([
        f"{e.name} at {e.resolution} px, batch {e.batch_size}, {e.dtype}, {e.optimizer}",
        f"  params                   {e.params:>16,}",
        f"  FLOPs (multiply-adds)    {e.macs:>16,}  ({giga(e.macs)})",
        f"  fvcore FLOPs             {e.fvcore_flops:>16,}  (adds norms and pooling)",
        f"  activations              {e.activations:>16,}  (conv and linear outputs)",
        f"  saved activations        {e.saved_activation_bytes:>16,}  bytes ({mib(e.saved_activation_bytes)})",
        f"  peak training memory     {e.peak_training_memory_bytes:>16,}  bytes ({mib(e.peak_training_memory_bytes)}, "
        f"estimate: weights {mib(e.weight_bytes)}, gradients {mib(e.gradient_bytes)}, "
        f"optimizer {mib(e.optimizer_state_bytes)}, "
        + (f"half copies of the weights {mib(e.weight_cast_bytes)}, " if e.weight_cast_bytes else "")
        + f"transient {mib(e.transient_bytes)})",
    ])


def verification_table(e: Estimate, measured: dict) -> str:
    """The estimate beside what the built network measured (scaler.measurement)."""
    rows = []
    for key, value in measured.items():
        analytic = getattr(e, key)
        if value is None:
            rows.append([key, f"{analytic:,}", "not measured (needs --device cuda)", ""])
            continue
        rows.append([key, f"{analytic:,}", f"{value:,}", f"{(analytic - value) / value:+.2%}" if value else "-"])
    return table(["figure", "analytic", "measured", "difference"], rows)


def candidate_text(record, digits: int = 3) -> str:
    """alpha=... beta=... gamma=..., and the stage rule when it is not the default."""
    rule = "" if record.stage_scaling == "uniform" else f" ({record.stage_scaling})"
    return f"alpha={record.alpha:g} beta={record.beta:g} gamma={record.gamma:.{digits}f}{rule}"


def mean_text(winner) -> str:
    """A winner's mean top-1, its standard error and its number of seeds (scaler.study.verdict.Standing)."""
    error = "" if winner.standard_error is None else f" ± {winner.standard_error:.3f}"
    return f"top-1 {winner.mean:.3f}{error} (mean of {winner.n} seed{'s' * (winner.n > 1)})"


def best_line(best, verdict) -> str:
    """The winner, by its mean over its seeds."""
    return f"best: {candidate_text(best, 4)} {mean_text(verdict.winner)}"


def verdict_text(verdict) -> str:
    """The seed noise and what it says about the winner, and the rank check (scaler.study.verdict.Verdict)."""
    noise, ranks = verdict.noise, verdict.ranks
    line = verdict.message if noise is None else (f"seed noise: top-1 std {noise.std:.4f} ({noise.dof} degrees of "
                                                  f"freedom){_difference_text(verdict)}; {verdict.message}")
    if ranks is not None:
        line += (f"\nrank check: Kendall's tau {ranks.kendall_tau:.2f} between the proxy's ranking and a "
                 f"{ranks.epochs}-epoch one over {ranks.candidates} candidates"
                 + ("; WARNING: low, the short proxy does not rank candidates as a longer training does"
                    if ranks.warning else ""))
    return line


def _difference_text(verdict) -> str:
    d = verdict.difference_noise
    return "" if d is None else f", of a per-seed difference {d.std:.4f} ({d.dof})"


def trials_table(trials, equal_cost: str = "flops") -> str:
    """One row per candidate, with the effective alpha/beta/gamma of the network it was trained as (at equal
    cost; a study equalised in another currency than FLOPs shows that ratio too); a candidate that rounds to an
    already trained network says which one it shares. In a study of several stage rules each kind names its
    rule."""
    several_rules = len({t.stage_scaling for t in trials}) > 1
    other = [] if equal_cost == "flops" else [f"{equal_cost} ratio"]
    rows = []
    for t in trials:
        time_taken = "-" if t.wall_seconds is None else duration(t.wall_seconds)
        if t.same_network_as is not None:
            time_taken = f"= trial {t.same_network_as}"
        kind = f"{t.kind} (seed +{t.repeat})" if t.repeat else f"{t.kind} ({t.epochs} epochs)" if t.epochs else t.kind
        if several_rules:
            kind += f" [{t.stage_scaling}]"
        rows.append([t.number, kind, f"{t.alpha:g}", f"{t.beta:g}", f"{t.gamma:.3f}",
                     "-" if t.effective is None else "/".join(f"{v:.2f}" for v in t.effective),
                     "-" if t.resolution is None else t.resolution,
                     *(["-" if t.cost_ratio is None else f"{t.cost_ratio:.2f}"] if other else []),
                     "-" if t.flops_ratio is None else f"{t.flops_ratio:.2f}",
                     "-" if t.params is None else f"{t.params:,}",
                     f"{t.top1:.3f}" if t.top1 is not None else (t.failure or t.state.lower()), time_taken])
    return table(["trial", "kind", "alpha", "beta", "gamma", "trained as", "px", *other, "FLOPs ratio", "params",
                  "top-1", "time"], rows)


def equal_cost_lines(equal_cost: str, latency_table: dict | None) -> list[str]:
    """What a study's candidates were equalised on, when not FLOPs; with latency, its table's build and error."""
    if equal_cost == "flops":
        return []
    lines = [f"equal cost in {CURRENCY_LABELS[equal_cost]}: each candidate's full-size counterpart (the baseline grown "
             f"by the trained network's own depth, width and resolution ratios) within ±3 % of 2^phi times the "
             f"baseline's ('{equal_cost} ratio'), each scaled along its own coefficients to reach it"]
    if latency_table is not None:
        t, e = latency_table, latency_table["error"]
        line = (f"latency table: {t['pieces']:,} pieces (stem, blocks, tail) timed on {t['device']} in "
                f"{t['seconds']:.1f} s")
        if e is not None:
            line += (f"; its sums are {e['mean']:.1%} off timing the {e['networks']} networks whole on average "
                     f"(worst {e['worst']:.1%}, bias {e['bias']:+.1%})")
        lines.append(line)
    return lines


def plan_text(plan) -> str:
    """`scaler search --plan` (scaler.searches.compound_plan.Plan): each candidate's network and projected time."""
    rows = []
    for i, c in enumerate(plan.candidates):
        k, m, net = c.candidate, c.match, c.match.network
        shape = ["-", "-", "-"] if net is None else ["-".join(str(s.repeats) for s in net.stages),
                                                     "-".join(str(s.channels) for s in net.stages), net.resolution]
        effective = "-" if net is None else "/".join(f"{v:.2f}" for v in m.coefficients(k.phi))
        note = m.reason and f"skipped: {m.reason}" or (f"= {c.same_network_as}" if c.same_network_as is not None
                                                       else duration(c.seconds))
        other = [] if plan.recipe.equal_cost == "flops" else [f"{m.ratio:.3f}"]
        rows.append([i, k.kind if len(plan.recipe.stage_scaling) == 1 else f"{k.kind} [{k.stage_scaling}]",
                     f"{k.alpha:g}/{k.beta:g}/{k.gamma:.3f}", effective, *shape, f"{m.target:.2f}", *other,
                     "-" if c.flops_ratio is None else f"{c.flops_ratio:.3f}",
                     "-" if c.params is None else f"{c.params:,}", note])
    trained = sum(1 for c in plan.candidates if c.seconds)
    other = [] if plan.recipe.equal_cost == "flops" else [f"{plan.recipe.equal_cost} ratio"]
    lines = [table(["#", "kind", "alpha/beta/gamma", "trained as", "blocks per stage", "channels per stage", "px",
                    "nominal", *other, "real FLOPs", "params", "time"], rows),
             *equal_cost_lines(plan.recipe.equal_cost, plan.latency_table),
             f"{len(plan.candidates)} candidates, {trained} to train (the others share a network or are skipped)"
             + (f", then {plan.recipe.trials} TPE proposals" if plan.recipe.sampler == "tpe" else "")
             + (f", then {plan.later} trainings chosen by the first pass (repeats, rank check, validation)"
                if plan.later else ""),
             f"projected: {duration(plan.total_seconds)} on {plan.device} (the proxy baseline trains at "
             f"{plan.images_per_second:,.0f} img/s here; each candidate's time drawn from it and one candidate's "
             f"by FLOPs, later trainings at the mean)"]
    return "\n".join(lines)


def search_text(result) -> str:
    """A compound search's trials, winner, verdict and budget fit (scaler.searches.compound_records.SearchResult)."""
    lines = [trials_table(result.trials, result.recipe.equal_cost),
             *equal_cost_lines(result.recipe.equal_cost, result.latency_table)]
    if result.best is not None:
        lines += [best_line(result.best, result.verdict), verdict_text(result.verdict)]
    if result.fit is not None:
        f = result.fit
        lines += [f"phi {f.phi:.2f}: {f.params:,} params, {f.macs:,} FLOPs (MACs), {f.spec.resolution} px, peak "
                  f"training memory {mib(f.memory_bytes)} at batch {result.recipe.proxy.batch_size} in "
                  f"{f.precision}; limited by "
                  f"{', '.join(f.binding) or '-'}"]
        if f.phi < 0:
            lines.append(shrink_note(result.recipe.baseline, f))
        lines += [spec_text(f.spec), f"wrote {result.spec_path}"]
    return "\n".join(lines + [FLOPS_NOTE])


def shrink_note(baseline: str, fit) -> str:
    """A negative phi said plainly: the budget is below the baseline, which was shrunk, by how much."""
    base = resolve_spec(baseline)
    e = estimate(base)
    blocks = sum(s.repeats for s in fit.spec.stages), sum(s.repeats for s in base.stages)
    return (f"note: phi is negative: the budget is below {base.name} itself, so it was shrunk, not scaled up: "
            f"{fit.macs / e.macs:.1%} of its FLOPs and {fit.params / e.params:.1%} of its params, {blocks[0]} of "
            f"{blocks[1]} blocks, {fit.spec.resolution} px instead of {base.resolution}")


def study_text(result) -> str:
    """`scaler studies show` of a compound study: its settings in one line, its trials, winner and verdict."""
    r, p = result.recipe, result.recipe.proxy
    lines = [f"study {result.study_name} ({result.storage}): {r.baseline} at width {p.width:g}, depth {p.depth:g}, "
             f"{p.resolution} px; {p.data}, {p.epochs} epochs"
             f"{f' (progressive, {p.progressive} stages)' if p.progressive else ''}, {r.sampler} sampler, "
             f"{', '.join(r.stage_scaling)} stage scaling", trials_table(result.trials, r.equal_cost),
             *equal_cost_lines(r.equal_cost, result.latency_table)]
    if result.best is not None:
        lines += [best_line(result.best, result.verdict), verdict_text(result.verdict)]
    return "\n".join(lines)


def baseline_search_text(result) -> str:
    """The best candidates by reward, the winner's per-stage table, and where its spec went
    (scaler.searches.baseline.BaselineResult)."""
    r = result.recipe
    lines = [f"baseline study {result.study_name}: around {r.start}, target {r.target_mflops:g} MFLOPs, reward "
             f"top-1 x (FLOPs / target)^{r.w:g}{' (two objectives)' if r.pareto else ''}; {len(result.trials)} "
             f"candidates trained, {result.rejected} rejected outside the FLOPs band untrained"]
    rows = [[t.number, f"{t.reward:.4f}", f"{t.top1:.3f}", f"{t.macs / 1e6:,.1f}", f"{t.params:,}", t.stages]
            for t in result.top()]
    lines.append(table(["trial", "reward", "top-1", "MFLOPs", "params", "stages"], rows))
    if result.spec is not None:
        lines.append(spec_text(result.spec))
        if result.spec_path:
            lines.append(f"wrote {result.spec_path}")
    return "\n".join(lines + [FLOPS_NOTE])


def studies_table(summaries) -> str:
    rows = []
    for s in summaries:
        if s.best is None:
            best = "-"
        elif s.kind == "baseline":
            best = f"{s.best.stages} top-1 {s.best.top1:.3f} reward {s.best.reward:.4f}"
        else:
            best = f"{candidate_text(s.best)} {mean_text(s.winner)}"
        rows.append([s.name, s.kind, s.sampler, f"{s.complete}/{s.total}", s.failed, s.pruned, s.running, best,
                     s.storage])
    return table(["study", "kind", "sampler", "done", "failed", "pruned", "running", "best", "storage"], rows)


def family_text(figure) -> str:
    """`scaler plot --family`'s table (scaler.plot_family.FamilyFigure): each rule's coefficients and costs at the
    largest phi (latency at the largest whole phi, when measured), and where it meets the budget or why not."""
    last, rule = figure.phis[-1], figure.stage_rule
    budget = any(c.budget_phi is not None or c.budget_note for c in figure.curves)
    latency = any(c.latency_ms for c in figure.curves)
    header = ["rule", "alpha", "beta", "gamma", f"FLOPs at phi {last:g}", f"params at phi {last:g}",
              f"activations at phi {last:g}"]
    if latency:
        header.append(f"latency at phi {figure.curves[0].latency_phis[-1]:g}")
    if budget:
        header.append("phi within budget")
    rows = []
    for c in figure.curves:
        row = [c.label, f"{c.alpha:g}", f"{c.beta:g}", f"{c.gamma:.3f}", f"{c.macs[-1] / 1e9:.2f} G", f"{c.params[-1]:,}",
               f"{c.activations[-1] / 1e6:.1f} M"]
        if latency:
            row.append(f"{c.latency_ms[-1]:.1f} ms")
        if budget:
            row.append(f"{c.budget_phi:.2f}" if c.budget_phi is not None else "none (below)")
        rows.append(row)
    cap = "" if rule.max_resolution is None else f", resolution capped at {rule.max_resolution} px"
    notes = [f"{c.label} cannot meet the budget: {c.budget_note}" for c in figure.curves if c.budget_note]
    return "\n".join([table(header, rows), *notes, f"{rule.name} stage scaling{cap}; wrote {figure.path}", FLOPS_NOTE])
