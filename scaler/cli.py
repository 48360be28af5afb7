"""The `scaler` command: parses, calls one library function per command, prints. Results go to stdout (text from
scaler.tables, or JSON with --json, through `emit`); progress goes to stderr (`say`); errors a user can cause are
one line on stderr and exit status 2 (any ScalerError: its own line and status).

Only click and the analytic half load at start-up: a command that trains, searches or plots imports torch, optuna
or matplotlib inside itself, so `scaler --help`, `baselines`, `show`, `scale` and `estimate` start at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict

import click

from scaler import tables
from scaler.baselines import baseline_names, get_baseline, resolve_spec
from scaler.budget import budget_from_units
from scaler.errors import ScalerError
from scaler.estimator import OPTIMIZER_STATES, PRECISIONS, estimate
from scaler.progress import PROGRESS_EVERY, epoch_line
from scaler.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, STAGE_RULES, compound, multipliers, stage_rule
from scaler.searches.baseline_recipe import MNAS_W, assemble_baseline_recipe
from scaler.searches.compound_recipe import SAMPLERS, assemble_recipe, default_repeats, default_study_name
from scaler.spec import save_spec, to_dict

# `--progressive` alone is EfficientNetV2's 4 stages; `--progressive K` chooses; absent, the recipe's (off).
PROGRESSIVE_OPTION = click.option(
    "--progressive", type=int, is_flag=False, flag_value=4, default=None,
    help="Progressive learning: image size, dropout and augmentation ramped over K stages (K = 4 when given alone).")


def emit(as_json: bool, data, text: Callable[[], str]) -> None:
    """The one way a result is printed: its JSON, or its text for people."""
    click.echo(json.dumps(data, indent=2) if as_json else text())


def say(line: str) -> None:
    """The one way progress is printed: a line on stderr (on a terminal, over a live line left there)."""
    click.echo(f"\r\033[K{line}" if sys.stderr.isatty() else line, err=True)


def live(line: str, last: bool, first: bool) -> None:
    """A line that a long step rewrites in place on a terminal; in a log, only when it is `first` or `last`."""
    if sys.stderr.isatty():
        click.echo(f"\r{line}\033[K", err=True, nl=last)
    elif first or last:
        click.echo(line, err=True)


THREADS_OPTION = click.option("--threads", type=int, help="CPU threads to train with (default: every core this "
                              "process may use; with several workers, split among them).")


def _budget_limits(gflops, params, memory_gb, latency_ms, precision) -> dict:
    return {"gflops": gflops, "params": params, "memory_gb": memory_gb, "latency_ms": latency_ms,
            "precision": precision}


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
    emit(as_json, rows, lambda: "\n".join([tables.table(
        ["name", "family", "resolution", "params", "FLOPs (MACs)", "blocks"],
        [[r["name"], r["family"], r["resolution"], f"{r['params']:,}", tables.giga(r["macs"]), r["blocks"]]
         for r in rows]), tables.FLOPS_NOTE]))


@cli.command()
@click.argument("network")
@click.option("--json", "as_json", is_flag=True, help="Print the spec as JSON.")
def show(network: str, as_json: bool) -> None:
    """Per-stage table of NETWORK (a baseline name or a spec file).

    Example: scaler show efficientnet-b3
    """
    spec = resolve_spec(network)
    emit(as_json, to_dict(spec), lambda: f"{tables.settings_line(spec)}\n{tables.spec_text(spec)}")


@cli.command(name="estimate")
@click.argument("network")
@click.option("--resolution", "-r", type=int, help="Input resolution in pixels (default: the spec's).")
@click.option("--batch-size", "-b", type=int, default=1, show_default=True, help="Images per training step.")
@click.option("--dtype", type=click.Choice(PRECISIONS), default="float32", show_default=True,
              help="Training precision: one dtype for weights and activations, or bf16-mixed / fp16-mixed (float32 "
              "weights and optimizer state, half activations: what scaler train does on CUDA).")
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
        from scaler.measurement import measure

        measured = measure(network, batch_size, dtype, optimizer, resolution, device).to_dict()
    data = e.to_dict()
    if not breakdown:
        del data["parts"]
    if measured is not None:
        data["measured"] = measured

    def text() -> str:
        parts = [tables.estimate_summary(e)]
        if breakdown:
            parts += ["", tables.costs_table(resolve_spec(network), e)]
        if measured is not None:
            parts += ["", tables.verification_table(e, measured)]
        return "\n".join(parts + [tables.FLOPS_NOTE])

    emit(as_json, data, text)


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
    data = {"alpha": alpha, "beta": beta, "gamma": gamma, "phi": phi, "stage_scaling": rule.name,
            "max_resolution": rule.max_resolution, "multipliers": {"depth": depth, "width": width, "resolution": res},
            "baseline": {"params": before.params, "macs": before.macs, "resolution": base.resolution},
            "scaled": {"params": after.params, "macs": after.macs, "fvcore_flops": after.fvcore_flops,
                       "resolution": scaled.resolution, "spec": to_dict(scaled)},
            "flops_ratio": after.macs / before.macs, "output": output}

    def text() -> str:
        cap = "" if rule.max_resolution is None else f", capped at {rule.max_resolution} px"
        rows = [["stem", "conv", "1 -> 1", f"{base.stem.channels} -> {scaled.stem.channels}"]]
        rows += [[f"stage {i + 1}", old.block, f"{old.repeats} -> {new.repeats}", f"{old.channels} -> {new.channels}"]
                 for i, (old, new) in enumerate(zip(base.stages, scaled.stages))]
        if base.head.channels:
            rows.append(["head", "conv 1x1", "1 -> 1", f"{base.head.channels} -> {scaled.head.channels}"])
        return "\n".join([
            f"alpha={alpha:g} beta={beta:g} gamma={gamma:g} phi={phi:g}: depth x{depth:.4f}, width x{width:.4f}, "
            f"resolution x{res:.4f} (nominal FLOPs x{(alpha * beta**2 * gamma**2) ** phi:.3f}); "
            f"{rule.name} stage scaling{cap}",
            tables.table(["part", "block", "repeats", "channels"], rows),
            f"resolution  {base.resolution} -> {scaled.resolution}",
            f"params      {before.params:,} -> {after.params:,}",
            f"FLOPs       {before.macs:,} -> {after.macs:,} (x{after.macs / before.macs:.3f} after rounding)",
            *([f"wrote {output}"] if output else []), tables.FLOPS_NOTE])

    emit(as_json, data, text)


def _first_report(progress) -> bool:
    return progress.epoch == 1 and progress.step <= PROGRESS_EVERY


def _show_training(progress) -> None:
    """`scaler train`'s status: rewritten in place on a terminal, a line per epoch in a log."""
    live(epoch_line(progress), progress.epoch == progress.epochs and progress.step == progress.steps,
         _first_report(progress) or progress.step == progress.steps)


def _show_trial_training(progress) -> None:
    """The same status inside a search's trial: in place on a terminal (the trial's own line replaces it when it
    ends), its first report alone in a log, so that a log has one such line per trial."""
    live(epoch_line(progress), False, _first_report(progress))


@cli.command(name="train")
@click.argument("network")
@click.option("--data", default="synthetic", show_default=True,
              help="synthetic, cifar10:PATH, cifar100:PATH or imagefolder:PATH.")
@click.option("--epochs", type=int, default=5, show_default=True, help="Passes over the training images.")
@click.option("--batch-size", "-b", type=int, default=64, show_default=True, help="Images per training step.")
@click.option("--lr", type=float, default=4e-3, show_default=True, help="Peak learning rate (AdamW).")
@click.option("--resolution", "-r", type=int, help="Training resolution in pixels (default: the spec's).")
@click.option("--train-size", type=int, help="Use at most this many training images (synthetic: 5000).")
@click.option("--val-size", type=int, help="Use at most this many validation images (synthetic: 1000).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initial weights, data order and augmentation (and the synthetic set).")
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model (pays off on long GPU runs).")
@PROGRESSIVE_OPTION
@THREADS_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train_command(network, data, epochs, batch_size, lr, resolution, train_size, val_size, device, seed,
                  use_compile, progressive, threads, as_json) -> None:
    """Train NETWORK briefly from scratch and report validation top-1 (a proxy score).

    Progress goes to stderr, the result to stdout.

    Example: scaler train efficientnet-b0 --resolution 64 --epochs 3 --train-size 2000
    """
    from scaler.training import train

    r = train(network, data, epochs=epochs, batch_size=batch_size, lr=lr, resolution=resolution,
              train_size=train_size, val_size=val_size, device=device, seed=seed, compile=use_compile,
              progressive=progressive or 0, on_progress=_show_training, threads=threads)
    emit(as_json, r.to_dict(), lambda: "\n".join([
        f"top-1 {r.top1:.4f} after {r.epochs} epoch{'s' * (r.epochs != 1)} "
        f"({', '.join(f'{t:.3f}' for t in r.top1_per_epoch)})",
        f"{r.resolution} px, batch {r.batch_size}, {r.train_size} train / {r.val_size} val images, "
        f"{r.num_classes} classes, {r.device}",
        f"{r.images_per_second:,.0f} img/s, {tables.duration(r.wall_seconds)} wall, peak memory "
        f"{tables.mib(r.peak_memory_bytes)} ({r.peak_memory_kind})"]))


def budget_options(command):
    """The four budget options, shared by every command that fits phi to a budget."""
    options = [
        click.option("--budget-gflops", type=float, help="Fit phi to this many GFLOPs (multiply-adds) per image."),
        click.option("--budget-params", type=float, help="Fit phi to at most this many parameters."),
        click.option("--budget-memory-gb", type=float,
                     help="Fit phi to this peak training memory (GB, 10^9 bytes) at --batch-size."),
        click.option("--budget-latency-ms", type=float, help="Fit phi to this forward latency, measured on --device."),
        click.option("--precision", type=click.Choice(PRECISIONS),
                     help="Precision the full network trains and runs in, for the memory and latency budgets "
                     "(default: what scaler train uses on --device: bf16-mixed on CUDA, float32 on CPU)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def proxy_options(command):
    """The proxy-training options, shared by the two searches (each candidate is shrunk and trained alike)."""
    options = [
        click.option("--data", help="Proxy data (default synthetic)."),
        click.option("--epochs", type=int, help="Epochs of proxy training per candidate (default 4; 3 with --quick)."),
        click.option("--proxy-resolution", type=int, help="Proxy training resolution in pixels (default 48)."),
        click.option("--proxy-width", type=float, help="Shrink each candidate's width for scoring (default 0.5)."),
        click.option("--proxy-depth", type=float, help="Shrink each candidate's depth for scoring (default 0.5)."),
        click.option("--batch-size", "-b", type=int, help="Proxy batch size (default 64; 32 with --quick); a search's "
                     "memory and latency budgets use it too."),
        click.option("--train-size", type=int, help="Proxy training images (default 5000)."),
        click.option("--val-size", type=int, help="Proxy validation images (default 1000)."),
        click.option("--seed", type=int, help="Proxy seed."),
        PROGRESSIVE_OPTION,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _numbers(option: str, text: str) -> tuple[float, ...]:
    """'0,1,2' -> (0.0, 1.0, 2.0); anything else is one error naming the option."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ScalerError(f"{option}: expected numbers separated by commas, got {text!r}") from None


def _quiet_optuna() -> None:
    """Optuna's own log lines off: the progress lines say what happens."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


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
@THREADS_OPTION
@click.option("--plan", is_flag=True, help="Only show the candidates the study would train: each one's network at "
              "equal FLOPs, params and projected time here (a few batches are trained to time this machine).")
@click.option("--study-name", default=None, help="Study name (default: 'quick' or 'default').")
@click.option("--storage", help="Optuna storage URL (default sqlite:///studies/<study-name>.db).")
@click.option("--output", "-o", help="Spec file for the network fitted to the budget, .json or .toml (default "
              "<study-name>-best.json beside the study's database).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def search_command(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, precision, quick, recipe,
                   baseline, sampler, trials, stage_scaling, max_resolution, prune, repeats, check_ranks, check_top,
                   validate_phi, workers, threads, plan, study_name, storage, output, device, as_json, **proxy) -> None:
    """Search alpha, beta, gamma by proxy training, then fit phi to the budget.

    Running the same command again resumes the study: nothing completed is trained again. Several machines
    may run the same command against one PostgreSQL study (--storage postgresql://...).

    Example: scaler search --quick --budget-gflops 4
    """
    from scaler.progress import Eta, search_line
    from scaler.searches.compound import search

    settings = assemble_recipe(quick, recipe, baseline=baseline, sampler=sampler, trials=trials,
                               max_resolution=max_resolution, stage_scaling=stage_scaling, **proxy)
    limits = _budget_limits(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, precision)
    budget = budget_from_units(**limits, batch_size=settings.proxy.batch_size, device=device)
    name = study_name or default_study_name(quick, recipe)
    phis = _numbers("--validate-phi", validate_phi) if validate_phi else ()
    repeats = default_repeats(quick) if repeats is None else repeats
    if plan:
        from scaler.searches.compound_plan import plan_search
        from scaler.study.storage import default_storage

        planned = plan_search(settings, device, repeats, phis, check_ranks, check_top, threads,
                              storage or default_storage(name), name, budget)
        emit(as_json, planned.to_dict(), lambda: tables.plan_text(planned))
        return
    eta, several_rules = Eta(), len(settings.stage_scaling) > 1
    _quiet_optuna()
    result = search(settings, budget, name, storage, device,
                    lambda record, done, total: say(search_line(record, done, total, eta, several_rules)),
                    workers=workers, prune=prune, validate_phis=phis,
                    repeats=repeats, check_ranks=check_ranks,
                    check_top=check_top,
                    on_start=lambda done, total: say(f"study {name}: {total} candidates, {done} done, {workers} "
                                                     f"worker{'s' * (workers > 1)}"),
                    on_progress=_show_trial_training, threads=threads, output=output)
    emit(as_json, result.to_dict(), lambda: tables.search_text(result))


@cli.command(name="baseline-search")
@click.option("--target-mflops", type=float, required=True, help="FLOPs target T (millions of multiply-adds).")
@click.option("--start", help="The baseline searched around: a name or spec file of MBConv / Fused-MBConv stages "
              "(default efficientnet-b0).")
@click.option("--w", "w", type=float, help=f"Reward exponent: top-1 x (FLOPs / T)^w (default {MNAS_W:g}, MnasNet's).")
@click.option("--pareto", is_flag=True, help="Two objectives (top-1 up, FLOPs down) instead of one reward.")
@click.option("--trials", type=int, help="Candidates to train, counting earlier runs' (default 30; 5 with --quick).")
@click.option("--quick", is_flag=True, help="A tiny proxy and few candidates: the whole command in minutes on a CPU.")
@proxy_options
@THREADS_OPTION
@click.option("--study-name", default=None, help="Study name (default 'baseline' or 'baseline-quick').")
@click.option("--storage", help="Optuna storage URL (default sqlite:///studies/<study-name>.db).")
@click.option("--output", "-o", help="Spec file for the best baseline (default <study-name>-baseline.json beside "
              "the study's database).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def baseline_search_command(target_mflops, start, w, pareto, trials, quick, threads, study_name, storage, output,
                            device, as_json, **proxy) -> None:
    """Search a baseline network for a FLOPs target, as B0 was found before it was scaled.

    TPE chooses each stage's block (MBConv or Fused-MBConv), kernel, expansion, squeeze-excitation, repeats and
    width around --start; candidates outside 0.5-1.5x the target are rejected untrained, the rest scored by proxy
    training. The best is written as a spec file for `scaler search --baseline FILE` and `scaler scale`.

    Example: scaler baseline-search --quick --target-mflops 400
    """
    from scaler.progress import Eta, baseline_search_line
    from scaler.searches.baseline import baseline_search

    settings = assemble_baseline_recipe(quick, target_mflops=target_mflops, pareto=pareto, start=start, w=w,
                                        trials=trials, **proxy)
    name = study_name or ("baseline-quick" if quick else "baseline")
    eta = Eta()
    _quiet_optuna()
    result = baseline_search(
        settings, name, storage, device, output,
        lambda record, done, total: say(baseline_search_line(record, done, total, eta)),
        lambda done, total: say(f"study {name}: {done} of {total} candidates trained, target {target_mflops:g} "
                                f"MFLOPs"), _show_trial_training, threads)
    if result.note:
        say(f"scaler: {result.note}")
    emit(as_json, result.to_dict(), lambda: tables.baseline_search_text(result))


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
    from scaler.studies import list_studies

    summaries = list_studies(storage, lambda url, why: say(f"scaler: skipped {url}: {why}"))
    emit(as_json, [asdict(s) for s in summaries], lambda: tables.studies_table(summaries) if summaries else
         "no studies" + (f" in {storage}" if storage else " in studies/"))


@studies_command.command(name="show")
@click.argument("name")
@click.option("--storage", help="Optuna storage URL (default: the study's file in studies/).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def studies_show(name, storage, as_json) -> None:
    """Print the settings and trials of study NAME.

    Example: scaler studies show quick
    """
    from scaler.searches.baseline import BaselineResult
    from scaler.studies import read_study

    result = read_study(name, storage)
    emit(as_json, result.to_dict(), lambda: tables.baseline_search_text(result)
         if isinstance(result, BaselineResult) else tables.study_text(result))


@cli.command(name="plot")
@click.argument("study", required=False)
@click.option("--family", is_flag=True, help="Plot costs against phi for scaling rules (no training) instead.")
@click.option("--storage", help="Optuna storage URL (default: the study's file in studies/).")
@click.option("--output", "-o", help="File to write: .png, .svg or .pdf (default studies/STUDY.png, or "
              "studies/family.png).")
@click.option("--baseline", help="With --family: the baseline (default: the study's, or efficientnet-b0).")
@click.option("--alpha", type=float, help="With --family: coefficients to plot (all three), instead of a study's.")
@click.option("--beta", type=float, help="With --family: the width coefficient (with --alpha and --gamma).")
@click.option("--gamma", type=float, help="With --family: the resolution coefficient (with --alpha and --beta).")
@click.option("--max-phi", type=float, default=6.0, show_default=True, help="With --family: phi from 0 to this.")
@click.option("--stage-scaling", type=click.Choice(STAGE_RULES),
              help="With --family: uniform or v2 for every curve (default: the study's winning rule, or uniform).")
@click.option("--max-resolution", type=int, help="With --family: cap the resolution (pixels; v2's default 480).")
@click.option("--batch-size", "-b", type=int, default=1, show_default=True, help="Batch size for memory figures.")
@budget_options
@click.option("--device", default="auto", show_default=True, help="Device for --budget-latency-ms.")
@click.option("--json", "as_json", is_flag=True, help="Print the plotted data as JSON.")
def plot_command(study, family, storage, output, baseline, alpha, beta, gamma, max_phi, stage_scaling,
                 max_resolution, batch_size, budget_gflops, budget_params, budget_memory_gb, budget_latency_ms,
                 precision, device, as_json) -> None:
    """Plot a study: top-1 against FLOPs with the Pareto front, and the alpha-beta landscape.

    With --family: FLOPs, params, activations and peak training memory against phi for the study's found
    coefficients (or --alpha --beta --gamma), the paper's, and each single-dimension rule; a budget marks
    where each rule meets it.

    Example: scaler plot quick -o quick.svg
    """
    from scaler.plot import BaselinePlot, plot_rules, plot_saved_study

    if not family:
        if study is None:
            raise ScalerError("plot: give a STUDY, or --family")
        figure = plot_saved_study(study, storage, output)
        data = figure.data
        if isinstance(data, BaselinePlot):
            text = (f"wrote {figure.path}: {len(data.points)} candidates plotted, {len(data.pareto)} on the Pareto "
                    f"front; {data.rejected} rejected outside the FLOPs band and {data.failed} failed not plotted")
        else:
            text = (f"wrote {figure.path}: {len(data.scored)} trials plotted, {len(data.pareto)} on the Pareto front; "
                    f"{sum(t.state == 'FAIL' for t in data.unscored)} failed and "
                    f"{sum(t.state == 'PRUNED' for t in data.unscored)} pruned not plotted")
        emit(as_json, {"output": str(figure.path)} | asdict(data), lambda: text)
        return
    figure = plot_rules(study, storage, output, baseline, (alpha, beta, gamma), max_phi, stage_scaling,
                        max_resolution, batch_size,
                        _budget_limits(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, precision),
                        device)

    def text() -> str:
        last, rule = figure.phis[-1], figure.stage_rule
        budget = any(c.budget_phi is not None or c.budget_note for c in figure.curves)
        rows = [[c.label, f"{c.alpha:g}", f"{c.beta:g}", f"{c.gamma:.3f}", f"{c.macs[-1] / 1e9:.2f} G",
                 f"{c.params[-1]:,}"] + ([f"{c.budget_phi:.2f}" if c.budget_phi is not None else "none (below)"]
                                         if budget else []) for c in figure.curves]
        cap = "" if rule.max_resolution is None else f", resolution capped at {rule.max_resolution} px"
        notes = [f"{c.label} cannot meet the budget: {c.budget_note}" for c in figure.curves if c.budget_note]
        return "\n".join([tables.table(["rule", "alpha", "beta", "gamma", f"FLOPs at phi {last:g}",
                                        f"params at phi {last:g}"] + (["phi within budget"] if budget else []), rows),
                          *notes, f"{rule.name} stage scaling{cap}; wrote {figure.path}", tables.FLOPS_NOTE])

    emit(as_json, {"output": str(figure.path), "curves": [asdict(c) for c in figure.curves]}, text)


@cli.command(name="report")
@click.argument("study")
@click.option("--storage", help="Optuna storage URL (default: the study's file in studies/).")
@click.option("--output", "-o", help="Folder for report.md and its figures (default studies/STUDY-report).")
@budget_options
@click.option("--batch-size", "-b", type=int, help="Batch size for the memory budget (default: the study's).")
@click.option("--device", default="auto", show_default=True, help="Device for --budget-latency-ms.")
def report_command(study, storage, output, budget_gflops, budget_params, budget_memory_gb, budget_latency_ms,
                   precision, batch_size, device) -> None:
    """Write a self-contained Markdown report of a study, its figures beside it.

    Example: scaler report quick --budget-gflops 4
    """
    from scaler.report import report_study

    path = report_study(study, storage, output,
                        _budget_limits(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, precision),
                        batch_size, device)
    click.echo(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: every user error is one line on stderr and exit status 2, never a traceback; a training or a
    storage that fails is one line and exit status 1; Ctrl-C is exit status 130."""
    try:
        cli.main(args=argv, prog_name="scaler", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("scaler: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        click.echo(f"scaler: error: {error.format_message()}", err=True)
        sys.exit(2)
    except ScalerError as error:
        click.echo(f"scaler: {error.line()}", err=True)
        sys.exit(error.exit_status)
