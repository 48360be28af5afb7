"""The `scaler` command: parses, calls one library function per command, prints. Results go to stdout (text from
scaler.tables, or JSON with --json, through `emit`); progress goes to stderr (`say`); errors a user can cause are
one line on stderr and exit status 2 (any ScalerError: its own line and status).

The network commands live here, the study commands in scaler.cli_studies, what both share (printing, options) in
scaler.cli_shared. Only click and the analytic half load at start-up: a command that trains, searches or plots
imports torch, optuna or matplotlib inside itself, so `scaler --help`, `baselines`, `show`, `scale` and `estimate`
start at once.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import click

from scaler import tables
from scaler.baselines import baseline_names, get_baseline, resolve_spec
from scaler.cli_shared import PROGRESSIVE_OPTION, THREADS_OPTION, emit, numbers, show_training
from scaler.cli_studies import (baseline_search_command, plot_command, report_command, search_command,
                                studies_command)
from scaler.errors import ScalerError
from scaler.estimator import OPTIMIZER_STATES, PRECISIONS, estimate
from scaler.rules import RULE_NAMES, grow, named_rule
from scaler.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, STAGE_RULES, multipliers, stage_rule
from scaler.spec import save_spec, to_dict

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
@click.option("--latency", is_flag=True, help="Also measure the forward latency on --device: the median of 7 passes "
              "of --batch-size images in --dtype, after 3 warm-up passes.")
@click.option("--device", default="cpu", show_default=True,
              help="Device for --verify (cuda measures peak memory) and --latency.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def estimate_command(network, resolution, batch_size, dtype, optimizer, breakdown, verify, latency, device,
                     as_json) -> None:
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
    if latency:
        from scaler.measurement import measure_latency_ms

        spec = resolve_spec(network)
        data["latency_ms"] = measure_latency_ms(replace(spec, resolution=resolution or spec.resolution), device,
                                                batch_size, dtype)

    def text() -> str:
        parts = [tables.estimate_summary(e)]
        if breakdown:
            parts += ["", tables.costs_table(resolve_spec(network), e)]
        if measured is not None:
            parts += ["", tables.verification_table(e, measured)]
        if latency:
            parts.append(f"  forward latency          {data['latency_ms']:>16.1f}  ms on {device} (median of 7 passes)")
        return "\n".join(parts + [tables.FLOPS_NOTE])

    emit(as_json, data, text)


@cli.command()
@click.option("--phi", type=float, help="Compound coefficient; negative shrinks (or give --flops-ratio).")
@click.option("--flops-ratio", type=float, help="Grow the nominal FLOPs by this factor instead of giving --phi.")
@click.option("--rule", type=click.Choice(RULE_NAMES), default="compound", show_default=True,
              help="compound (--alpha/--beta/--gamma), fast (Dollar et al.: --shares), or depth, width or resolution "
              "alone.")
@click.option("--baseline", default="efficientnet-b0", show_default=True, help="Baseline name or spec file.")
@click.option("--alpha", type=float, help=f"Depth coefficient (>= 1; default {PAPER_ALPHA:g}, the paper's).")
@click.option("--beta", type=float, help=f"Width coefficient (>= 1; default {PAPER_BETA:g}, the paper's).")
@click.option("--gamma", type=float, help=f"Resolution coefficient (>= 1; default {PAPER_GAMMA:g}, the paper's).")
@click.option("--shares", help="With --rule fast: the shares of the FLOPs growth for depth, width and resolution, "
              "summing to 1 (default 0.1,0.8,0.1: dWr).")
@click.option("--stage-scaling", type=click.Choice(STAGE_RULES), default="uniform", show_default=True,
              help="uniform: every stage's depth alike (EfficientNet); v2: later stages deeper, resolution capped.")
@click.option("--max-resolution", type=int, help="Cap the scaled resolution (pixels; v2's default 480).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the scaled spec (.json or .toml).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def scale(phi, flops_ratio, rule, baseline, alpha, beta, gamma, shares, stage_scaling, max_resolution, output,
          as_json) -> None:
    """Scale a baseline by depth alpha^phi, width beta^phi, resolution gamma^phi, under a scaling rule.

    Example: scaler scale --phi 3 -o b3-like.json; scaler scale --rule fast --flops-ratio 4
    """
    scaling = named_rule(rule, (alpha, beta, gamma), numbers("--shares", shares) if shares else None)
    base = resolve_spec(baseline)
    rule = stage_rule(stage_scaling, max_resolution)
    scaled = grow(base, scaling, phi, flops_ratio, rule)
    alpha, beta, gamma = scaling.coefficients
    phi = scaling.phi_for(flops_ratio) if phi is None else phi
    depth, width, res = multipliers(alpha, beta, gamma, phi)
    before, after = estimate(base), estimate(scaled)
    if output:
        save_spec(scaled, output)
    data = {"rule": {"name": scaling.name, "label": scaling.label, "shares": scaling.shares(),
                     "exponents": scaling.exponents()},
            "alpha": alpha, "beta": beta, "gamma": gamma, "phi": phi, "stage_scaling": rule.name,
            "max_resolution": rule.max_resolution, "multipliers": {"depth": depth, "width": width, "resolution": res},
            "baseline": {"params": before.params, "macs": before.macs, "resolution": base.resolution},
            "scaled": {"params": after.params, "macs": after.macs, "fvcore_flops": after.fvcore_flops,
                       "resolution": scaled.resolution, "spec": to_dict(scaled)},
            "flops_ratio": after.macs / before.macs, "requested_flops_ratio": flops_ratio, "output": output}

    def text() -> str:
        cap = "" if rule.max_resolution is None else f", capped at {rule.max_resolution} px"
        rows = [["stem", "conv", "1 -> 1", f"{base.stem.channels} -> {scaled.stem.channels}"]]
        rows += [[f"stage {i + 1}", old.block, f"{old.repeats} -> {new.repeats}", f"{old.channels} -> {new.channels}"]
                 for i, (old, new) in enumerate(zip(base.stages, scaled.stages))]
        if base.head.channels:
            rows.append(["head", "conv 1x1", "1 -> 1", f"{base.head.channels} -> {scaled.head.channels}"])
        e_depth, e_width, e_res = scaling.exponents()
        return "\n".join([
            f"rule {scaling.label}: depth s^{e_depth:.4f}, width s^{e_width:.4f}, resolution s^{e_res:.4f} for a "
            f"nominal FLOPs growth s (x{scaling.growth:.4f} per unit of phi)",
            f"alpha={alpha:g} beta={beta:g} gamma={gamma:g} phi={phi:g}: depth x{depth:.4f}, width x{width:.4f}, "
            f"resolution x{res:.4f} (nominal FLOPs x{(alpha * beta**2 * gamma**2) ** phi:.3f}); "
            f"{rule.name} stage scaling{cap}",
            tables.table(["part", "block", "repeats", "channels"], rows),
            f"resolution  {base.resolution} -> {scaled.resolution}",
            f"params      {before.params:,} -> {after.params:,}",
            f"FLOPs       {before.macs:,} -> {after.macs:,} (x{after.macs / before.macs:.3f} after rounding)",
            *([f"wrote {output}"] if output else []), tables.FLOPS_NOTE])

    emit(as_json, data, text)


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
              progressive=progressive or 0, on_progress=show_training, threads=threads)
    emit(as_json, r.to_dict(), lambda: "\n".join([
        f"top-1 {r.top1:.4f} after {r.epochs} epoch{'s' * (r.epochs != 1)} "
        f"({', '.join(f'{t:.3f}' for t in r.top1_per_epoch)}), validation loss {r.val_loss:.4f}",
        f"{r.resolution} px, batch {r.batch_size}, {r.train_size} train / {r.val_size} val images, "
        f"{r.num_classes} classes, {r.device}",
        f"{r.images_per_second:,.0f} img/s, {tables.duration(r.wall_seconds)} wall, peak memory "
        f"{tables.mib(r.peak_memory_bytes)} ({r.peak_memory_kind})"]))


for command in (search_command, baseline_search_command, studies_command, plot_command, report_command):
    cli.add_command(command)


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
