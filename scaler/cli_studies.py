"""The study commands of `scaler`: search, baseline-search, studies, plot and report. Like every command they
parse, call one library function and print; the libraries a study needs load inside each command."""

from __future__ import annotations

from dataclasses import asdict

import click

from scaler import tables
from scaler.budget import budget_from_units
from scaler.cli_shared import (THREADS_OPTION, budget_limits, budget_options, emit, proxy_options, say,
                               numbers, show_trial_training, study_options)
from scaler.equal_cost import CURRENCIES
from scaler.errors import ScalerError
from scaler.scaling import STAGE_RULES
from scaler.searches.baseline_recipe import MNAS_W, assemble_baseline_recipe
from scaler.searches.compound_recipe import SAMPLERS, assemble_recipe, default_repeats, default_study_name


def _quiet_optuna() -> None:
    """Optuna's own log lines off: the progress lines say what happens."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


@click.command(name="search")
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
@click.option("--references", "reference_rules", help="Published rules trained as references beside the baseline "
              "and the single dimensions, at the same real FLOPs: fast (Dollar et al.'s dWr), compound (the paper's "
              "1.2, 1.1, 1.15), comma-separated, or none (default fast).")
@click.option("--equal-cost", "equal_cost", type=click.Choice(CURRENCIES), help="The cost candidates are trained "
              "at equally, each within ±3 % of 2^phi times the baseline's: flops (default; on the proxy network), "
              "or on each candidate's full-size counterpart params, activations, memory (peak training memory at "
              "the proxy's batch) or latency (timed on --device from a latency table built once per study: "
              "latency-aware compound scaling).")
@click.option("--prune", is_flag=True, help="Stop candidates whose top-1 falls below the median (Optuna pruner).")
@click.option("--repeats", type=int, help="Train the baseline, the 3 best candidates and the best reference this "
              "many more times with other seeds, to measure the proxy's noise (default 2; 1 with --quick).")
@click.option("--check-ranks", type=int, default=0, help="Then train the best candidates for this many epochs and "
              "report Kendall's tau between the short and the long proxy's rankings.")
@click.option("--check-top", type=int, default=5, show_default=True, help="How many candidates --check-ranks trains.")
@click.option("--validate-phi", "validate_phi", help="After the search, train the found family at these phis "
              "(e.g. 0,1,2), and single-dimension scaling and the published rules of --references at the same "
              "FLOPs, into the study.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Worker processes here (one per GPU in turn); more than 1 needs a journal file or PostgreSQL.")
@THREADS_OPTION
@click.option("--plan", is_flag=True, help="Only show the candidates the study would train: each one's network at "
              "equal FLOPs, params and projected time here (a few batches are trained to time this machine).")
@study_options("'quick' or 'default'", "Spec file for the network fitted to the budget, .json or .toml (default "
               "<study-name>-best.json beside the study's database).")
def search_command(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, precision, quick, recipe,
                   baseline, sampler, trials, stage_scaling, max_resolution, reference_rules, equal_cost, prune,
                   repeats, check_ranks, check_top, validate_phi, workers, threads, plan, study_name, storage, output,
                   device, as_json, **proxy) -> None:
    """Search alpha, beta, gamma by proxy training, then fit phi to the budget.

    Running the same command again resumes the study: nothing completed is trained again. Several machines
    may run the same command against one PostgreSQL study (--storage postgresql://...).

    Example: scaler search --quick --budget-gflops 4
    """
    from scaler.progress import Eta, search_line
    from scaler.searches.compound import search

    settings = assemble_recipe(quick, recipe, baseline=baseline, sampler=sampler, trials=trials,
                               max_resolution=max_resolution, stage_scaling=stage_scaling,
                               reference_rules=reference_rules, equal_cost=equal_cost, **proxy)
    limits = budget_limits(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, precision)
    budget = budget_from_units(**limits, batch_size=settings.proxy.batch_size, device=device)
    name = study_name or default_study_name(quick, recipe)
    phis = numbers("--validate-phi", validate_phi) if validate_phi else ()
    repeats = default_repeats(quick) if repeats is None else repeats
    if settings.equal_cost == "latency":
        say("equal cost in latency: the pieces of the networks the study needs are timed on the device once each, "
            "into its latency table (minutes on a CPU for a new study)")
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
                    on_progress=show_trial_training, threads=threads, output=output)
    emit(as_json, result.to_dict(), lambda: tables.search_text(result))


@click.command(name="baseline-search")
@click.option("--target-mflops", type=float, required=True, help="FLOPs target T (millions of multiply-adds).")
@click.option("--start", help="The baseline searched around: a name or spec file of MBConv / Fused-MBConv stages "
              "(default efficientnet-b0).")
@click.option("--w", "w", type=float, help=f"Reward exponent: top-1 x (FLOPs / T)^w (default {MNAS_W:g}, MnasNet's).")
@click.option("--pareto", is_flag=True, help="Two objectives (top-1 up, FLOPs down) instead of one reward.")
@click.option("--trials", type=int, help="Candidates to train, counting earlier runs' (default 30; 5 with --quick).")
@click.option("--quick", is_flag=True, help="A tiny proxy and few candidates: the whole command in minutes on a CPU.")
@proxy_options
@THREADS_OPTION
@study_options("'baseline' or 'baseline-quick'", "Spec file for the best baseline (default "
               "<study-name>-baseline.json beside the study's database).")
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
                                f"MFLOPs"), show_trial_training, threads)
    if result.note:
        say(f"scaler: {result.note}")
    emit(as_json, result.to_dict(), lambda: tables.baseline_search_text(result))


@click.group(name="studies", invoke_without_command=True)
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
    from scaler.searches.baseline_records import BaselineResult
    from scaler.studies import read_study

    result = read_study(name, storage)
    emit(as_json, result.to_dict(), lambda: tables.baseline_search_text(result)
         if isinstance(result, BaselineResult) else tables.study_text(result))


def _plot_study(study: str, storage: str | None, output: str | None, as_json: bool) -> None:
    from scaler.plot import BaselinePlot, plot_saved_study

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


@click.command(name="plot")
@click.argument("study", required=False)
@click.option("--family", is_flag=True, help="Plot costs against phi for scaling rules (no training) instead.")
@click.option("--storage", help="Optuna storage URL (default: the study's file in studies/).")
@click.option("--output", "-o", help="File to write: .png, .svg or .pdf (default studies/STUDY.png, or "
              "studies/family.png).")
@click.option("--baseline", help="With --family: the baseline (default: the study's, or efficientnet-b0).")
@click.option("--alpha", type=float, help="With --family: coefficients to plot (all three), instead of a study's.")
@click.option("--beta", type=float, help="With --family: the width coefficient (with --alpha and --gamma).")
@click.option("--gamma", type=float, help="With --family: the resolution coefficient (with --alpha and --beta).")
@click.option("--rules", help="With --family: the rules to draw, from compound, fast, depth, width and resolution "
              "(default compound,depth,width,resolution); a study's or the given coefficients are drawn beside them.")
@click.option("--max-phi", type=float, default=6.0, show_default=True, help="With --family: phi from 0 to this.")
@click.option("--stage-scaling", type=click.Choice(STAGE_RULES),
              help="With --family: uniform or v2 for every curve (default: the study's winning rule, or uniform).")
@click.option("--max-resolution", type=int, help="With --family: cap the resolution (pixels; v2's default 480).")
@click.option("--batch-size", "-b", type=int, default=1, show_default=True, help="Batch size for memory figures.")
@budget_options
@click.option("--device", help="With --family: also measure each rule's forward latency here (cpu, cuda, ...) at "
              "the whole phis; and the device of --budget-latency-ms (default auto).")
@click.option("--json", "as_json", is_flag=True, help="Print the plotted data as JSON.")
def plot_command(study, family, storage, output, baseline, alpha, beta, gamma, rules, max_phi, stage_scaling,
                 max_resolution, batch_size, budget_gflops, budget_params, budget_memory_gb, budget_latency_ms,
                 precision, device, as_json) -> None:
    """Plot a study: top-1 against FLOPs with the Pareto front, and the alpha-beta landscape.

    With --family: FLOPs, params, activations and peak training memory against phi for the study's found
    coefficients (or --alpha --beta --gamma) beside the --rules named (the paper's and each single-dimension
    rule by default); a budget marks where each rule meets it.

    Example: scaler plot quick -o quick.svg
    """
    if not family:
        if study is None:
            raise ScalerError("plot: give a STUDY, or --family")
        _plot_study(study, storage, output, as_json)
        return
    from scaler.plot_family import DEFAULT_RULE_NAMES, plot_rules

    figure = plot_rules(study, storage, output, baseline, (alpha, beta, gamma), max_phi, stage_scaling,
                        max_resolution, batch_size,
                        budget_limits(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, precision),
                        device, tuple(rules.split(",")) if rules else DEFAULT_RULE_NAMES)

    emit(as_json, {"output": str(figure.path), "curves": [asdict(c) for c in figure.curves]},
         lambda: tables.family_text(figure))


@click.command(name="report")
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
                        budget_limits(budget_gflops, budget_params, budget_memory_gb, budget_latency_ms, precision),
                        batch_size, device)
    click.echo(f"wrote {path}")
