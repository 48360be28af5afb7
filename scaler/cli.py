"""The `scaler` command: parses, calls the API, prints. Results go to stdout (tables, or JSON with --json);
errors a user can cause are one line on stderr and exit status 2."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import click
import optuna

from scaler.baselines import baseline_names, get_baseline, resolve_spec
from scaler.errors import ScalerError, check_number
from scaler.estimate import DTYPE_BYTES, OPTIMIZER_STATES, Estimate, estimate
from scaler.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, STAGE_RULES, compound, multipliers, stage_rule
from scaler.spec import Spec, save_spec, to_dict
from scaler.budget import Budget
from scaler.baseline_search import (MNAS_W, QUICK_BASELINE, BaselineRecipe, baseline_report, baseline_search,
                                    is_baseline_study)
from scaler.search import QUICK, SAMPLERS, Recipe, WorkerFailed, load_recipe, recipe_from_dict, report, search
from scaler.studies import list_studies
from scaler.plot import DEFAULT_RULES, check_output, plot_baseline, plot_family, plot_study
from scaler.report import stage_table, write_report
from scaler.storage import StorageFailed, find_study, storage_folder
from scaler.train import NONFINITE_CHECK_EVERY, TrainingError, train

FLOPS_NOTE = "FLOPs are multiply-adds of conv and linear layers, per image, as in the EfficientNet paper."

# `--progressive` alone is EfficientNetV2's 4 stages; `--progressive K` chooses; absent, the recipe's (off).
PROGRESSIVE_OPTION = click.option(
    "--progressive", type=int, is_flag=False, flag_value=4, default=None,
    help="Progressive learning: image size, dropout and augmentation ramped over K stages (K = 4 when given alone).")


def _table(headers: list[str], rows: list[list]) -> str:
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


def _giga(value: int) -> str:
    return f"{value / 1e9:.3f} G"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f} MiB"


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def _spec_table(spec: Spec) -> str:
    return _table(*stage_table(spec))


def _settings_line(spec: Spec) -> str:
    return (f"{spec.name}: {spec.resolution} px, {spec.num_classes} classes, {spec.activation}, {spec.norm}, "
            f"dropout {spec.dropout:g}, drop-path {spec.drop_path:g}, rounding {spec.rounding} (divisor {spec.divisor})")


def _part_summaries(spec: Spec) -> list[str]:
    """What each row of the estimate's per-part table is, e.g. 'mbconv x2 24ch k3 s2 e6 se0.25'."""
    stem = spec.stem
    texts = [f"{stem.kernel}x{stem.kernel} conv {stem.channels}ch s{stem.stride}"]
    for s in spec.stages:
        texts.append(f"{s.block} x{s.repeats} {s.channels}ch k{s.kernel} s{s.stride} e{s.expansion:g}"
                     + (f" se{s.se_ratio:g}" if s.se_ratio else ""))
    head = f"{spec.head.channels}ch, " if spec.head.channels else ""
    return texts + [f"{head}pool, linear {spec.num_classes}"]


def _costs_table(spec: Spec, e: Estimate) -> str:
    rows = [[p.name, summary, f"{p.params:,}", f"{p.macs:,}", f"{p.fvcore_flops:,}", f"{p.activations:,}",
             _mib(p.saved_activation_bytes), "x".join(map(str, p.output_shape))]
            for p, summary in zip(e.parts, _part_summaries(spec))]
    rows.append(["total", "", f"{e.params:,}", f"{e.macs:,}", f"{e.fvcore_flops:,}", f"{e.activations:,}",
                 _mib(e.saved_activation_bytes), ""])
    header = ["part", "what", "params", "FLOPs (MACs)", "fvcore", "activations", "saved (train)", "output"]
    return _table(header, rows)


def _summary(e: Estimate) -> str:
    return "\n".join([
        f"{e.name} at {e.resolution} px, batch {e.batch_size}, {e.dtype}, {e.optimizer}",
        f"  params                   {e.params:>16,}",
        f"  FLOPs (multiply-adds)    {e.macs:>16,}  ({_giga(e.macs)})",
        f"  fvcore FLOPs             {e.fvcore_flops:>16,}  (adds norms and pooling)",
        f"  activations              {e.activations:>16,}  (conv and linear outputs)",
        f"  saved activations        {e.saved_activation_bytes:>16,}  bytes ({_mib(e.saved_activation_bytes)})",
        f"  peak training memory     {e.peak_training_memory_bytes:>16,}  bytes ({_mib(e.peak_training_memory_bytes)}, "
        f"estimate: weights {_mib(e.weight_bytes)}, gradients {_mib(e.gradient_bytes)}, "
        f"optimizer {_mib(e.optimizer_state_bytes)}, transient {_mib(e.transient_bytes)})",
    ])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scaler")
def cli() -> None:
    """Find how to scale a convolutional network for a hardware budget.

    FLOPs everywhere are multiply-adds of conv and linear layers, per image, as in the EfficientNet paper.

    Example: scaler scale --phi 3 --output b3-like.json && scaler estimate b3-like.json --breakdown
    """


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def baselines(as_json: bool) -> None:
    """The baseline networks scaler knows, with their exact cost.

    Example: scaler baselines --json
    """
    rows = []
    for name in baseline_names():
        spec, e = get_baseline(name), estimate(name)
        rows.append({"name": name, "family": spec.family, "resolution": spec.resolution, "params": e.params,
                     "macs": e.macs, "fvcore_flops": e.fvcore_flops, "stages": len(spec.stages),
                     "blocks": sum(s.repeats for s in spec.stages)})
    if as_json:
        _emit_json(rows)
        return
    click.echo(_table(["name", "family", "resolution", "params", "FLOPs (MACs)", "blocks"],
                      [[r["name"], r["family"], r["resolution"], f"{r['params']:,}", _giga(r["macs"]), r["blocks"]]
                       for r in rows]))
    click.echo(FLOPS_NOTE)


@cli.command()
@click.argument("network")
@click.option("--json", "as_json", is_flag=True, help="Print the spec as JSON.")
def show(network: str, as_json: bool) -> None:
    """Per-stage table of NETWORK (a baseline name or a spec file).

    Example: scaler show efficientnet-b3
    """
    spec = resolve_spec(network)
    if as_json:
        _emit_json(to_dict(spec))
        return
    click.echo(_settings_line(spec))
    click.echo(_spec_table(spec))


@cli.command(name="estimate")
@click.argument("network")
@click.option("--resolution", "-r", type=int, help="Input resolution in pixels (default: the spec's).")
@click.option("--batch-size", "-b", type=int, default=1, show_default=True, help="Images per training step.")
@click.option("--dtype", type=click.Choice(list(DTYPE_BYTES)), default="float32", show_default=True,
              help="Training dtype of weights and activations.")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZER_STATES)), default="adamw", show_default=True,
              help="Optimizer, for the size of its state.")
@click.option("--breakdown", is_flag=True, help="Add the per-stage table.")
@click.option("--verify", is_flag=True, help="Also build the network and measure every figure (slow).")
@click.option("--device", default="cpu", show_default=True, help="Device for --verify (cuda measures peak memory).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def estimate_command(network, resolution, batch_size, dtype, optimizer, breakdown, verify, device, as_json) -> None:
    """Params, FLOPs, activations and training memory of NETWORK, computed without building it.

    Example: scaler estimate efficientnet-b0 --batch-size 64 --dtype bfloat16 --breakdown
    """
    e = estimate(network, batch_size=batch_size, dtype=dtype, optimizer=optimizer, resolution=resolution)
    measured = None
    if verify:
        from scaler.measure import measure

        measured = measure(network, batch_size, dtype, optimizer, resolution, device)
    if as_json:
        data = e.to_dict()
        if not breakdown:
            del data["parts"]
        if measured is not None:
            data["measured"] = measured.to_dict()
        _emit_json(data)
        return
    click.echo(_summary(e))
    if breakdown:
        click.echo()
        click.echo(_costs_table(resolve_spec(network), e))
    if measured is not None:
        rows = []
        for key, value in measured.to_dict().items():
            analytic = getattr(e, key)
            if value is None:
                rows.append([key, f"{analytic:,}", "not measured (needs --device cuda)", ""])
                continue
            rows.append([key, f"{analytic:,}", f"{value:,}", f"{(analytic - value) / value:+.2%}" if value else "-"])
        click.echo()
        click.echo(_table(["figure", "analytic", "measured", "difference"], rows))
    click.echo(FLOPS_NOTE)


@cli.command()
@click.option("--phi", type=float, required=True, help="Compound coefficient; negative shrinks.")
@click.option("--baseline", default="efficientnet-b0", show_default=True, help="Baseline name or spec file.")
@click.option("--alpha", type=float, default=PAPER_ALPHA, show_default=True, help="Depth coefficient (>= 1).")
@click.option("--beta", type=float, default=PAPER_BETA, show_default=True, help="Width coefficient (>= 1).")
@click.option("--gamma", type=float, default=PAPER_GAMMA, show_default=True, help="Resolution coefficient (>= 1).")
@click.option("--stage-scaling", type=click.Choice(STAGE_RULES), default="uniform", show_default=True,
              help="uniform: every stage's depth alike (EfficientNet); v2: later stages deeper, resolution capped.")
@click.option("--max-resolution", type=int, help="Cap the scaled resolution (pixels; v2's default 480).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the scaled spec (.json or .toml).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def scale(phi, baseline, alpha, beta, gamma, stage_scaling, max_resolution, output, as_json) -> None:
    """Scale a baseline by depth alpha^phi, width beta^phi, resolution gamma^phi.

    Example: scaler scale --phi 3 -o b3-like.json
    """
    base = resolve_spec(baseline)
    depth, width, res = multipliers(alpha, beta, gamma, phi)
    rule = stage_rule(stage_scaling, max_resolution)
    scaled = compound(base, alpha, beta, gamma, phi, rule=rule)
    before, after = estimate(base), estimate(scaled)
    if output:
        save_spec(scaled, output)
    if as_json:
        _emit_json({
            "alpha": alpha, "beta": beta, "gamma": gamma, "phi": phi,
            "stage_scaling": rule.name, "max_resolution": rule.max_resolution,
            "multipliers": {"depth": depth, "width": width, "resolution": res},
            "baseline": {"params": before.params, "macs": before.macs, "resolution": base.resolution},
            "scaled": {"params": after.params, "macs": after.macs, "fvcore_flops": after.fvcore_flops,
                       "resolution": scaled.resolution, "spec": to_dict(scaled)},
            "flops_ratio": after.macs / before.macs,
            "output": output,
        })
        return
    cap = "" if rule.max_resolution is None else f", capped at {rule.max_resolution} px"
    click.echo(f"alpha={alpha:g} beta={beta:g} gamma={gamma:g} phi={phi:g}: depth x{depth:.4f}, width x{width:.4f}, "
               f"resolution x{res:.4f} (nominal FLOPs x{(alpha * beta**2 * gamma**2) ** phi:.3f}); "
               f"{rule.name} stage scaling{cap}")
    rows = []
    for i, (old, new) in enumerate(zip(base.stages, scaled.stages)):
        rows.append([f"stage {i + 1}", old.block, f"{old.repeats} -> {new.repeats}",
                     f"{old.channels} -> {new.channels}"])
    rows.insert(0, ["stem", "conv", "1 -> 1", f"{base.stem.channels} -> {scaled.stem.channels}"])
    if base.head.channels:
        rows.append(["head", "conv 1x1", "1 -> 1", f"{base.head.channels} -> {scaled.head.channels}"])
    click.echo(_table(["part", "block", "repeats", "channels"], rows))
    click.echo(f"resolution  {base.resolution} -> {scaled.resolution}")
    click.echo(f"params      {before.params:,} -> {after.params:,}")
    click.echo(f"FLOPs       {before.macs:,} -> {after.macs:,} (x{after.macs / before.macs:.3f} after rounding)")
    if output:
        click.echo(f"wrote {output}")
    click.echo(FLOPS_NOTE)


def _show_progress(progress) -> None:
    """One status line on stderr: rewritten in place on a terminal, a line per epoch in a log."""
    text = (f"epoch {progress.epoch}/{progress.epochs}  step {progress.step}/{progress.steps}  "
            f"{progress.images_per_second:,.0f} img/s  ETA {_duration(progress.eta_seconds)}")
    if sys.stderr.isatty():
        click.echo(f"\r{text}\033[K", err=True, nl=progress.epoch == progress.epochs and
                   progress.step == progress.steps)
    elif progress.step == progress.steps or (progress.epoch == 1 and progress.step <= NONFINITE_CHECK_EVERY):
        click.echo(text, err=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@cli.command(name="train")
@click.argument("network")
@click.option("--data", default="synthetic", show_default=True,
              help="synthetic, cifar10:PATH, cifar100:PATH or imagefolder:PATH.")
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--batch-size", "-b", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=4e-3, show_default=True, help="Peak learning rate (AdamW).")
@click.option("--resolution", "-r", type=int, help="Training resolution in pixels (default: the spec's).")
@click.option("--train-size", type=int, help="Use at most this many training images (synthetic: 5000).")
@click.option("--val-size", type=int, help="Use at most this many validation images (synthetic: 1000).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model (pays off on long GPU runs).")
@PROGRESSIVE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train_command(network, data, epochs, batch_size, lr, resolution, train_size, val_size, device, seed,
                  use_compile, progressive, as_json) -> None:
    """Train NETWORK briefly from scratch and report validation top-1 (a proxy score).

    Progress goes to stderr, the result to stdout.

    Example: scaler train efficientnet-b0 --resolution 64 --epochs 3 --train-size 2000
    """
    result = train(network, data, epochs=epochs, batch_size=batch_size, lr=lr, resolution=resolution,
                   train_size=train_size, val_size=val_size, device=device, seed=seed, compile=use_compile,
                   progressive=progressive or 0, on_progress=_show_progress)
    if as_json:
        _emit_json(result.to_dict())
        return
    per_epoch = ", ".join(f"{t:.3f}" for t in result.top1_per_epoch)
    click.echo(f"top-1 {result.top1:.4f} after {result.epochs} epochs ({per_epoch})")
    click.echo(f"{result.resolution} px, batch {result.batch_size}, {result.train_size} train / {result.val_size} val "
               f"images, {result.num_classes} classes, {result.device}")
    click.echo(f"{result.images_per_second:,.0f} img/s, {_duration(result.wall_seconds)} wall, peak memory "
               f"{_mib(result.peak_memory_bytes)} ({result.peak_memory_kind})")


def budget_options(command):
    """The four budget options, shared by every command that fits phi to a budget."""
    options = [
        click.option("--budget-gflops", type=float, help="Fit phi to this many GFLOPs (multiply-adds) per image."),
        click.option("--budget-params", type=float, help="Fit phi to at most this many parameters."),
        click.option("--budget-memory-gb", type=float,
                     help="Fit phi to this peak training memory (GB, 10^9 bytes) at --batch-size."),
        click.option("--budget-latency-ms", type=float, help="Fit phi to this forward latency, measured on --device."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def proxy_options(command):
    """The proxy-training options, shared by the two searches (each candidate is shrunk and trained alike)."""
    options = [
        click.option("--data", help="Proxy data (default synthetic)."),
        click.option("--epochs", type=int, help="Proxy epochs per candidate."),
        click.option("--proxy-resolution", type=int, help="Proxy training resolution in pixels (default 48)."),
        click.option("--proxy-width", type=float, help="Shrink each candidate's width for scoring (default 0.5)."),
        click.option("--proxy-depth", type=float, help="Shrink each candidate's depth for scoring (default 0.5)."),
        click.option("--batch-size", "-b", type=int, help="Proxy batch size (and the memory and latency budgets')."),
        click.option("--train-size", type=int, help="Proxy training images (default 5000)."),
        click.option("--val-size", type=int, help="Proxy validation images (default 1000)."),
        click.option("--seed", type=int, help="Proxy seed."),
        PROGRESSIVE_OPTION,
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command(name="search")
@budget_options
@click.option("--quick", is_flag=True, help="A tiny proxy and grid: the whole command in minutes on a CPU.")
@click.option("--recipe", type=click.Path(dir_okay=False), help="Study recipe (TOML); options given here override it.")
@click.option("--baseline", help="Baseline to scale: a name or a spec file (default efficientnet-b0).")
@proxy_options
@click.option("--sampler", type=click.Choice(SAMPLERS), help="grid (default) or tpe (a continuous search).")
@click.option("--trials", type=int, help="With --sampler tpe: how many candidates TPE proposes (default 20).")
@click.option("--stage-scaling", help="Stage rules to score, e.g. uniform,v2: each scores the grid (default uniform).")
@click.option("--max-resolution", type=int,
              help="Cap the full-size network's resolution in pixels (default: none for uniform, 480 for v2).")
@click.option("--prune", is_flag=True, help="Stop candidates whose top-1 falls below the median (Optuna pruner).")
@click.option("--repeats", type=int, help="Train the baseline, the 3 best candidates and the best reference this "
              "many more times with other seeds, to measure the proxy's noise (default 2; 1 with --quick).")
@click.option("--check-ranks", type=int, default=0, help="Then train the best candidates for this many epochs and "
              "report Kendall's tau between the short and the long proxy's rankings.")
@click.option("--check-top", type=int, default=5, show_default=True, help="How many candidates --check-ranks trains.")
@click.option("--validate-phi", "validate_phi", help="After the search, train the found family at these phis "
              "(e.g. 0,1,2) and single-dimension scaling at the same FLOPs, into the study.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Worker processes here (one per GPU in turn); more than 1 needs a journal file or PostgreSQL.")
@click.option("--study-name", default=None, help="Study name (default: 'quick' or 'default').")
@click.option("--storage", help="Optuna storage URL (default sqlite:///studies/<study-name>.db).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def search_command(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, quick, recipe, baseline,
                   sampler, trials, stage_scaling, max_resolution, prune, repeats, check_ranks, check_top, validate_phi,
                   workers, study_name, storage, device, as_json, **proxy) -> None:
    """Search alpha, beta, gamma by proxy training, then fit phi to the budget.

    Running the same command again resumes the study: nothing completed is trained again. Several machines
    may run the same command against one PostgreSQL study (--storage postgresql://...).

    Example: scaler search --quick --budget-gflops 4
    """
    if quick and recipe:
        raise ScalerError("--quick and --recipe: give one of them")
    settings = load_recipe(recipe) if recipe else QUICK if quick else Recipe()
    changes = proxy | {"baseline": baseline, "sampler": sampler, "trials": trials, "max_resolution": max_resolution,
                       "stage_scaling": stage_scaling and tuple(part.strip() for part in stage_scaling.split(","))}
    settings = recipe_from_dict({k: v for k, v in changes.items() if v is not None}, settings, "options")
    budget = _budget(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, settings.batch_size, device)
    name = study_name or (Path(recipe).stem if recipe else "quick" if quick else "default")
    started, ended_here = time.monotonic(), []
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the progress lines below say what happens

    def progress(record, done, total) -> None:
        ended_here.append(record)
        top1 = f"top-1 {record.top1:.3f}" if record.top1 is not None else record.failure or record.state.lower()
        eta = (time.monotonic() - started) / len(ended_here) * (total - done)
        rule = f" ({record.stage_scaling})" if len(settings.stage_scaling) > 1 else ""
        click.echo(f"trial {done}/{total}  {record.kind}{rule} alpha={record.alpha:g} beta={record.beta:g} "
                   f"gamma={record.gamma:.3f}  {top1}  ETA {_duration(eta)}", err=True)

    def begin(done, total) -> None:
        click.echo(f"study {name}: {total} candidates, {done} done, {workers} worker{'s' * (workers > 1)}",
                   err=True)

    phis = _numbers("--validate-phi", validate_phi) if validate_phi else ()
    result = search(settings, budget, name, storage, device, progress, workers=workers, prune=prune,
                    validate_phis=phis, repeats=(1 if quick else 2) if repeats is None else repeats,
                    check_ranks=check_ranks, check_top=check_top, on_start=begin)
    if as_json:
        _emit_json(result.to_dict())
        return
    click.echo(_trials_table(result.trials))
    if result.best is not None:
        click.echo(_best_line(result.best))
        click.echo(_confidence_line(result.confidence))
    if result.fit is not None:
        f = result.fit
        click.echo(f"phi {f.phi:.2f}: {f.params:,} params, {f.macs:,} FLOPs (MACs), {f.spec.resolution} px, "
                   f"peak training memory {_mib(f.memory_bytes)} at batch {settings.batch_size}; limited by "
                   f"{', '.join(f.binding) or '-'}")
        click.echo(_spec_table(f.spec))
        click.echo(f"wrote {result.spec_path}")
    click.echo(FLOPS_NOTE)


@cli.command(name="baseline-search")
@click.option("--target-mflops", type=float, required=True, help="FLOPs target T (millions of multiply-adds).")
@click.option("--start", help="The baseline searched around: a name or spec file of MBConv / Fused-MBConv stages "
              "(default efficientnet-b0).")
@click.option("--w", "w", type=float, help=f"Reward exponent: top-1 x (FLOPs / T)^w (default {MNAS_W:g}, MnasNet's).")
@click.option("--pareto", is_flag=True, help="Two objectives (top-1 up, FLOPs down) instead of one reward.")
@click.option("--trials", type=int, help="Candidates to train, counting earlier runs' (default 30; 5 with --quick).")
@click.option("--quick", is_flag=True, help="A tiny proxy and few candidates: the whole command in minutes on a CPU.")
@proxy_options
@click.option("--study-name", default=None, help="Study name (default 'baseline' or 'baseline-quick').")
@click.option("--storage", help="Optuna storage URL (default sqlite:///studies/<study-name>.db).")
@click.option("--output", "-o", help="Spec file for the best baseline (default <study-name>-baseline.json beside "
              "the study's database).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def baseline_search_command(target_mflops, start, w, pareto, trials, quick, study_name, storage, output, device,
                            as_json, **proxy) -> None:
    """Search a baseline network for a FLOPs target, as B0 was found before it was scaled.

    TPE chooses each stage's block (MBConv or Fused-MBConv), kernel, expansion, squeeze-excitation, repeats and
    width around --start; candidates outside 0.5-1.5x the target are rejected untrained, the rest scored by proxy
    training. The best is written as a spec file for `scaler search --baseline FILE` and `scaler scale`.

    Example: scaler baseline-search --quick --target-mflops 400
    """
    base = QUICK_BASELINE if quick else BaselineRecipe()
    given = {k: v for k, v in proxy.items() if v is not None}
    settings = replace(base, proxy=recipe_from_dict(given, base.proxy, "options"),
                       **{k: v for k, v in {"start": start, "w": w, "trials": trials}.items() if v is not None},
                       target_mflops=target_mflops, pareto=pareto)
    name = study_name or ("baseline-quick" if quick else "baseline")
    started, ended_here = time.monotonic(), []
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    def begin(done, total) -> None:
        click.echo(f"study {name}: {done} of {total} candidates trained, target {target_mflops:g} MFLOPs", err=True)

    def progress(record, done, total) -> None:
        ended_here.append(record)
        eta = (time.monotonic() - started) / len(ended_here) * max(0, total - done)
        score = f"top-1 {record.top1:.3f} reward {record.reward:.4f}" if record.top1 is not None else record.failure
        click.echo(f"trial {done}/{total}  {record.macs / 1e6:,.0f} MFLOPs  {record.stages}  {score}  "
                   f"ETA {_duration(eta)}", err=True)

    result = baseline_search(settings, name, storage, device, output, progress, begin)
    if result.note:
        click.echo(f"scaler: {result.note}", err=True)
    if as_json:
        _emit_json(result.to_dict())
        return
    _print_baseline_result(result)


def _print_baseline_result(result) -> None:
    """The best candidates by reward, the winner's per-stage table, and where its spec went."""
    r = result.recipe
    click.echo(f"baseline study {result.study_name}: around {r.start}, target {r.target_mflops:g} MFLOPs, reward "
               f"top-1 x (FLOPs / target)^{r.w:g}{' (two objectives)' if r.pareto else ''}; {len(result.trials)} "
               f"candidates trained, {result.rejected} rejected outside the FLOPs band untrained")
    rows = [[t.number, f"{t.reward:.4f}", f"{t.top1:.3f}", f"{t.macs / 1e6:,.1f}", f"{t.params:,}", t.stages]
            for t in result.top()]
    click.echo(_table(["trial", "reward", "top-1", "MFLOPs", "params", "stages"], rows))
    if result.spec is not None:
        click.echo(_spec_table(result.spec))
        if result.spec_path:
            click.echo(f"wrote {result.spec_path}")
    click.echo(FLOPS_NOTE)


def _numbers(option: str, text: str) -> tuple[float, ...]:
    """'0,1,2' -> (0.0, 1.0, 2.0); anything else is one error naming the option."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ScalerError(f"{option}: expected numbers separated by commas, got {text!r}") from None


def _budget(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, batch_size, device) -> Budget | None:
    limits = {"macs": budget_gflops and budget_gflops * 1e9, "params": budget_params,
              "memory_bytes": budget_memory_gb and budget_memory_gb * 1e9, "latency_ms": budget_latency_ms}
    given = {k: v for k, v in limits.items() if v is not None}
    return Budget(**given, batch_size=batch_size, device=device) if given else None


def _best_line(best) -> str:
    return f"best: {_candidate_text(best, 4)} top-1 {best.top1:.3f}"


def _candidate_text(record, digits: int = 3) -> str:
    """alpha=... beta=... gamma=..., and the stage rule when it is not the default."""
    rule = "" if record.stage_scaling == "uniform" else f" ({record.stage_scaling})"
    return f"alpha={record.alpha:g} beta={record.beta:g} gamma={record.gamma:.{digits}f}{rule}"


def _confidence_line(confidence: dict) -> str:
    """The seed noise and what it says about the winner, in one line."""
    noise, ranks = confidence["noise"], confidence.get("ranks")
    line = confidence["message"] if noise is None else (f"seed noise: top-1 std {noise['std']:.4f} ({noise['dof']} "
                                                        f"degrees of freedom); {confidence['message']}")
    if ranks is not None:
        line += (f"\nrank check: Kendall's tau {ranks['kendall_tau']:.2f} between the proxy's ranking and a "
                 f"{ranks['epochs']}-epoch one over {ranks['candidates']} candidates"
                 + ("; WARNING: low, the short proxy does not rank candidates as a longer training does"
                    if ranks["warning"] else ""))
    return line


def _trials_table(trials) -> str:
    """One row per candidate; a candidate that rounds to an already trained network says which one it shares.
    In a study of several stage rules each kind names its rule."""
    several_rules = len({t.stage_scaling for t in trials}) > 1
    rows = []
    for t in trials:
        time_taken = "-" if t.wall_seconds is None else _duration(t.wall_seconds)
        if t.same_network_as is not None:
            time_taken = f"= trial {t.same_network_as}"
        kind = f"{t.kind} (seed +{t.repeat})" if t.repeat else f"{t.kind} ({t.epochs} epochs)" if t.epochs else t.kind
        if several_rules:
            kind += f" [{t.stage_scaling}]"
        rows.append([t.number, kind, f"{t.alpha:g}", f"{t.beta:g}", f"{t.gamma:.3f}",
                     "-" if t.resolution is None else t.resolution,
                     "-" if t.flops_ratio is None else f"{t.flops_ratio:.2f}",
                     "-" if t.params is None else f"{t.params:,}",
                     f"{t.top1:.3f}" if t.top1 is not None else (t.failure or t.state.lower()), time_taken])
    return _table(["trial", "kind", "alpha", "beta", "gamma", "px", "FLOPs ratio", "params", "top-1", "time"], rows)


@cli.group(name="studies", invoke_without_command=True)
@click.option("--storage", help="Optuna storage URL (default: every study in studies/).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def studies_command(context, storage, as_json) -> None:
    """List studies with their progress and best result; `scaler studies show NAME` prints one's trials.

    Example: scaler studies --storage postgresql://me@db.example/studies
    """
    if context.invoked_subcommand is not None:
        return
    summaries = list_studies(storage)
    if as_json:
        _emit_json([asdict(s) for s in summaries])
        return
    if not summaries:
        click.echo("no studies" + (f" in {storage}" if storage else " in studies/"))
        return
    rows = []
    for s in summaries:
        if s.best is None:
            best = "-"
        elif s.kind == "baseline":
            best = f"{s.best.stages} top-1 {s.best.top1:.3f} reward {s.best.reward:.4f}"
        else:
            best = f"{_candidate_text(s.best)} top-1 {s.best.top1:.3f}"
        rows.append([s.name, s.kind, s.sampler, f"{s.complete}/{s.total}", s.failed, s.pruned, s.running, best,
                     s.storage])
    click.echo(_table(["study", "kind", "sampler", "done", "failed", "pruned", "running", "best", "storage"], rows))


@studies_command.command(name="show")
@click.argument("name")
@click.option("--storage", help="Optuna storage URL (default: the study's file in studies/).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def studies_show(name, storage, as_json) -> None:
    """Print the settings and trials of study NAME.

    Example: scaler studies show quick
    """
    url = find_study(name, storage)
    if is_baseline_study(name, url):
        result = baseline_report(name, url)
        if as_json:
            _emit_json(result.to_dict())
        else:
            _print_baseline_result(result)
        return
    result = report(name, url)
    if as_json:
        _emit_json(result.to_dict())
        return
    r = result.recipe
    click.echo(f"study {name} ({result.storage}): {r.baseline} at width {r.proxy_width:g}, depth {r.proxy_depth:g}, "
               f"{r.proxy_resolution} px; {r.data}, {r.epochs} epochs"
               f"{f' (progressive, {r.progressive} stages)' if r.progressive else ''}, {r.sampler} sampler, "
               f"{', '.join(r.stage_scaling)} stage scaling")
    click.echo(_trials_table(result.trials))
    if result.best is not None:
        click.echo(_best_line(result.best))
        click.echo(_confidence_line(result.confidence))


@cli.command(name="plot")
@click.argument("study", required=False)
@click.option("--family", is_flag=True, help="Plot costs against phi for scaling rules (no training) instead.")
@click.option("--storage", help="Optuna storage URL (default: the study's file in studies/).")
@click.option("--output", "-o", help="File to write: .png, .svg or .pdf (default studies/STUDY.png, or family.png).")
@click.option("--baseline", help="With --family: the baseline (default: the study's, or efficientnet-b0).")
@click.option("--alpha", type=float, help="With --family: coefficients to plot (all three), instead of a study's.")
@click.option("--beta", type=float)
@click.option("--gamma", type=float)
@click.option("--max-phi", type=float, default=6.0, show_default=True, help="With --family: phi from 0 to this.")
@click.option("--stage-scaling", type=click.Choice(STAGE_RULES),
              help="With --family: uniform or v2 for every curve (default: the study's winning rule, or uniform).")
@click.option("--max-resolution", type=int, help="With --family: cap the resolution (pixels; v2's default 480).")
@click.option("--batch-size", "-b", type=int, default=1, show_default=True, help="Batch size for memory figures.")
@budget_options
@click.option("--device", default="auto", show_default=True, help="Device for --budget-latency-ms.")
@click.option("--json", "as_json", is_flag=True, help="Print the plotted data as JSON.")
def plot_command(study, family, storage, output, baseline, alpha, beta, gamma, max_phi, stage_scaling,
                 max_resolution, batch_size, budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, device,
                 as_json) -> None:
    """Plot a study: top-1 against FLOPs with the Pareto front, and the alpha-beta landscape.

    With --family: FLOPs, params, activations and peak training memory against phi for the study's found
    coefficients (or --alpha --beta --gamma), the paper's, and each single-dimension rule; a budget marks
    where each rule meets it.

    Example: scaler plot quick -o quick.svg
    """
    if not family:
        if study is None:
            raise ScalerError("plot: give a STUDY, or --family")
        url = find_study(study, storage)
        path = check_output(output or storage_folder(url) / f"{study}.png")
        if is_baseline_study(study, url):
            data = plot_baseline(baseline_report(study, url), path)
            if as_json:
                _emit_json({"output": str(path)} | asdict(data))
                return
            click.echo(f"wrote {path}: {len(data.points)} candidates plotted, {len(data.pareto)} on the Pareto "
                       f"front; {data.rejected} rejected outside the FLOPs band and {data.failed} failed not plotted")
            return
        data = plot_study(report(study, url), path)
        if as_json:
            _emit_json({"output": str(path)} | asdict(data))
            return
        failed = sum(t.state == "FAIL" for t in data.unscored)
        pruned = sum(t.state == "PRUNED" for t in data.unscored)
        click.echo(f"wrote {path}: {len(data.scored)} trials plotted, {len(data.pareto)} on the Pareto front; "
                   f"{failed} failed and {pruned} pruned not plotted")
        return
    given = [v for v in (alpha, beta, gamma) if v is not None]
    if given and (study or len(given) < 3):
        raise ScalerError("plot --family: give --alpha, --beta and --gamma together, or a STUDY, not both")
    rules = {}
    if study:
        url = find_study(study, storage)
        if is_baseline_study(study, url):
            raise ScalerError(f"plot --family: study {study!r} is a baseline search; plot the costs of its best "
                              f"baseline with --family --baseline FILE (its spec file)")
        result = report(study, url)
        if result.best is None:
            raise ScalerError(f"plot --family: study {study!r} has no scored compound candidate yet")
        b = result.best
        rules[f"found ({b.alpha:g}, {b.beta:g}, {b.gamma:.3f})"] = (b.alpha, b.beta, b.gamma)
        baseline = baseline or result.recipe.baseline
        rule = result.recipe.rule(stage_scaling or b.stage_scaling)
        if max_resolution is not None:
            rule = stage_rule(rule.name, max_resolution)
    else:
        rule = stage_rule(stage_scaling or "uniform", max_resolution)
        if given:
            rules[f"given ({alpha:g}, {beta:g}, {gamma:g})"] = (alpha, beta, gamma)
    check_number("--max-phi", max_phi, 0, 12, above_low=True)
    path = check_output(output or "family.png")
    budget = _budget(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, batch_size, device)
    phis = tuple(i / 4 for i in range(int(max_phi * 4) + 1))
    curves = plot_family(baseline or "efficientnet-b0", path, rules | DEFAULT_RULES, phis, batch_size, budget, rule)
    if as_json:
        _emit_json({"output": str(path), "curves": [asdict(c) for c in curves]})
        return
    rows = [[c.label, f"{c.alpha:g}", f"{c.beta:g}", f"{c.gamma:.3f}", f"{c.macs[-1] / 1e9:.2f} G",
             f"{c.params[-1]:,}", "-" if c.budget_phi is None else f"{c.budget_phi:.2f}"] for c in curves]
    click.echo(_table(["rule", "alpha", "beta", "gamma", f"FLOPs at phi {phis[-1]:g}", f"params at phi {phis[-1]:g}",
                       "phi within budget"], rows))
    cap = "" if rule.max_resolution is None else f", resolution capped at {rule.max_resolution} px"
    click.echo(f"{rule.name} stage scaling{cap}; wrote {path}")
    click.echo(FLOPS_NOTE)


@cli.command(name="report")
@click.argument("study")
@click.option("--storage", help="Optuna storage URL (default: the study's file in studies/).")
@click.option("--output", "-o", help="Folder for report.md and its figures (default studies/STUDY-report).")
@budget_options
@click.option("--batch-size", "-b", type=int, help="Batch size for the memory budget (default: the study's).")
@click.option("--device", default="auto", show_default=True, help="Device for --budget-latency-ms.")
def report_command(study, storage, output, budget_gflops, budget_params, budget_memory_gb, budget_latency_ms,
                   batch_size, device) -> None:
    """Write a self-contained Markdown report of a study, its figures beside it.

    Example: scaler report quick --budget-gflops 4
    """
    url = find_study(study, storage)
    result = report(study, url)
    recipe = result.recipe
    budget = _budget(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms,
                     batch_size or recipe.batch_size, device)
    folder = Path(output) if output else storage_folder(url) / f"{study}-report"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ScalerError(f"output: cannot make {folder}: {error.strerror}") from None
    if budget is not None:
        result = report(study, url, budget)  # read again with the fit of phi to the budget
    figures = {"Top-1 against FLOPs": folder / "study.png"}
    plot_study(result, figures["Top-1 against FLOPs"])
    if result.best is not None:
        b = result.best
        figures["Costs against phi"] = folder / "family.png"
        plot_family(recipe.baseline, figures["Costs against phi"],
                    {f"found ({b.alpha:g}, {b.beta:g}, {b.gamma:.3f})": (b.alpha, b.beta, b.gamma)} | DEFAULT_RULES,
                    batch_size=batch_size or recipe.batch_size, budget=budget,
                    stage_rule=recipe.rule(b.stage_scaling))
    click.echo(f"wrote {write_report(result, folder, figures)}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: every user error is one line on stderr and exit status 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="scaler", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("scaler: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        click.echo(f"scaler: error: {error.format_message()}", err=True)
        sys.exit(2)
    except ScalerError as error:
        click.echo(f"scaler: error: {error}", err=True)
        sys.exit(2)
    except TrainingError as error:
        click.echo(f"scaler: training failed: {error.reason}", err=True)
        sys.exit(1)
    except WorkerFailed as error:
        click.echo(f"scaler: {error}", err=True)
        sys.exit(1)
    except (StorageFailed, optuna.exceptions.StorageInternalError) as error:  # the database went away mid-study
        first = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        click.echo(f"scaler: storage failed: {first}; what finished is kept: run the same command to go on",
                   err=True)
        sys.exit(1)
