"""The compound-coefficient search: an Optuna study with one trial per candidate (alpha, beta, gamma), each scored
by a short proxy training, then the largest phi whose full-size network fits the budget.

What is this search's own: the candidates (the recipe's references and grid, queued; or TPE's proposals over the
alpha and beta ranges, gamma derived, a proposal with gamma < 1 pruned untrained), the objective (scale the proxy,
record the rounded network's costs, train, report each epoch for the pruner), and what follows the first pass
(repeats for the seed noise, a longer proxy for the ranking, the found family at other phis). The worker loop,
crash-safety and requeueing are the engine's (scaler.study.engine); the verdict is scaler.study.verdict's.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Hashable
from dataclasses import asdict, replace
from functools import partial

import numpy
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from scaler.baselines import resolve_spec
from scaler.budget import Budget, fit_phi
from scaler.data import load_data, parse_data
from scaler.device import thread_share, use_threads, worker_devices
from scaler.equal_cost import CostMatch, Currency, full_size, match_along, study_currency
from scaler.errors import ScalerError, check_int, check_number, check_output_file
from scaler.estimator import estimate
from scaler.grid import Candidate, family_candidates, fingerprint, references
from scaler.latency_table import store_latency_table, store_table_error, study_latency_table
from scaler.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, check_cap
from scaler.searches.compound_recipe import SAMPLED_STEP, Recipe
from scaler.searches.compound_records import (CANDIDATE_FIELDS, SearchResult, TrialRecord, candidate_key, read_search,
                                              record, study_total, write_best)
from scaler.spec import Spec, to_dict
from scaler.study import engine
from scaler.study.storage import default_storage, is_sqlite, storage_failures
from scaler.study.trials import HIDDEN, TrialFailure, finished, hidden, pending, record_epoch
from scaler.study.verdict import judge, rank_candidates, repeat_candidates


TrialEnded = Callable[[TrialRecord, int, int], None]  # (the trial that ended, candidates done, candidates in all)


def proposal_gamma(alpha: float, beta: float) -> float | None:
    """The gamma that puts a proposal on alpha * beta^2 * gamma^2 = 2; None where alpha * beta^2 > 2 leaves
    gamma below 1 (an infeasible proposal)."""
    gamma = math.sqrt(2.0 / (alpha * beta * beta))
    return round(max(1.0, gamma), 10) if gamma >= 1 - 1e-12 else None


def parameter_ranges(recipe: Recipe) -> dict[str, optuna.distributions.BaseDistribution]:
    """What every trial records alpha, beta and gamma (and the stage rule, when there is a choice) over: one range
    each that holds every candidate the study can train (the references', the grid's, TPE's proposals'), so that
    optuna-dashboard's parameter plots show the whole study under one set of distributions."""
    candidates = recipe.candidates()
    highs = {name: max(getattr(c, name) for c in candidates) for name in ("alpha", "beta", "gamma")}
    if recipe.sampler == "tpe":
        (alpha_low, alpha_high), (beta_low, beta_high) = recipe.alpha_range, recipe.beta_range
        highs = {"alpha": max(highs["alpha"], alpha_high), "beta": max(highs["beta"], beta_high),
                 "gamma": max(highs["gamma"], proposal_gamma(alpha_low, beta_low) or 1.0)}
    ranges = {name: optuna.distributions.FloatDistribution(1.0, high) for name, high in highs.items()}
    if len(recipe.stage_scaling) > 1:
        ranges["stage_scaling"] = optuna.distributions.CategoricalDistribution(recipe.stage_scaling)
    return ranges


class ProposalSampler(optuna.samplers.BaseSampler):
    """TPE over the recipe's alpha and beta ranges (and the stage rules), modelled on the study's earlier
    proposals alone; gamma follows from alpha and beta. The references and the later trainings (repeats, the
    longer proxy, the family) lie outside those ranges or score another thing, so each proposal's model is an
    in-memory study of the proposals only, while the study records every trial over `parameter_ranges`."""

    def __init__(self, recipe: Recipe, worker: int):
        self.seed, self.worker = recipe.proxy.seed, worker
        self.searched: dict[str, optuna.distributions.BaseDistribution] = {
            name: optuna.distributions.FloatDistribution(*getattr(recipe, f"{name}_range"), step=SAMPLED_STEP)
            for name in ("alpha", "beta")}
        if len(recipe.stage_scaling) > 1:
            self.searched["stage_scaling"] = optuna.distributions.CategoricalDistribution(recipe.stage_scaling)
        self.gamma = parameter_ranges(recipe)["gamma"]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict:
        return self.searched | {"gamma": self.gamma}  # gamma proposed too, as it follows from alpha and beta

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict) -> dict:
        if not search_space:
            return {}
        # Each proposal its own seed (the worker's and the trial's number): a resumed study proposes afresh.
        seed = int(numpy.random.SeedSequence([self.seed, self.worker, trial.number]).generate_state(1)[0])
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per proposal for the model's study
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                model = optuna.create_study(directions=study.directions,
                                            sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
        finally:
            optuna.logging.set_verbosity(verbosity)
        model.add_trials([optuna.trial.create_trial(
            state=t.state, values=t.values, intermediate_values=t.intermediate_values,
            params={name: t.params[name] for name in self.searched}, distributions=self.searched)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.user_attrs.get("sampled") and self.searched.keys() <= t.params.keys()])
        proposal = {name: round(value, 10) if isinstance(value, float) else value
                    for name, value in model.ask(self.searched).params.items()}
        gamma = proposal_gamma(proposal["alpha"], proposal["beta"])
        return proposal | ({"gamma": gamma} if gamma is not None else {})

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution):
        raise RuntimeError(f"{param_name!r} is not a parameter the proposals have")  # a bug, never bad input


def _sampler(recipe: Recipe, worker: int) -> optuna.samplers.BaseSampler:
    if recipe.sampler == "tpe":
        return ProposalSampler(recipe, worker)
    return optuna.samplers.RandomSampler(seed=recipe.proxy.seed + worker)  # never asked: every grid trial is queued


def open_study(recipe: Recipe, study_name: str, storage: str, worker: int = 0, prune: bool = False) -> optuna.Study:
    """Open or create the study and check its fingerprint."""
    pruner = optuna.pruners.MedianPruner(n_startup_trials=len(references(rules=recipe.reference_rules)) + 1,
                                         n_warmup_steps=1) if prune \
        else optuna.pruners.NopPruner()
    study = engine.open_study(study_name, storage, recipe.settings(), recipe.candidates(),
                              sampler=_sampler(recipe, worker), pruner=pruner)
    if recipe.sampler == "tpe" and study.user_attrs.get("trials", 0) < recipe.trials:
        study.set_user_attr("trials", recipe.trials)
    return study


class CompoundSearch(engine.Search):
    """The compound search's candidates and objective, for the engine."""

    def __init__(self, study: optuna.Study, recipe: Recipe, device: torch.device, prune: bool = False,
                 on_trial: TrialEnded | None = None, on_progress: Callable | None = None, planned: int = 0):
        self.study, self.recipe, self.device, self.prune, self.on_trial = study, recipe, device, prune, on_trial
        self.on_progress, self.planned = on_progress, planned
        self.proxy = recipe.proxy_network()
        self.base_macs = estimate(self.proxy).macs
        self.data = None
        self.ranges = parameter_ranges(recipe)
        self.latency = study_latency_table(study, device) if recipe.equal_cost == "latency" else None
        self.currency = study_currency(recipe.equal_cost, self.proxy, resolve_spec(recipe.baseline),
                                       recipe.proxy.batch_size, self.latency and self.latency.latency_ms)

    def key_of(self, params: dict, attrs: dict) -> Hashable | None:
        return candidate_key(attrs)

    def wanted(self):
        extra = [Candidate(**c) for c in self.study.user_attrs.get("extra", [])]
        for c in self.recipe.candidates() + tuple(extra):
            yield self._params(asdict(c)), asdict(c)

    def requeued(self, trial: FrozenTrial) -> tuple[dict, dict]:
        names = [name for name, _ in CANDIDATE_FIELDS] + ["sampled"]
        attrs = {k: trial.user_attrs[k] for k in names if k in trial.user_attrs}
        return self._params(attrs), attrs

    def _params(self, attrs: dict) -> dict:
        """A candidate as the parameters every trial records (`parameter_ranges`)."""
        params = {name: attrs[name] for name in ("alpha", "beta", "gamma")}
        if "stage_scaling" in self.ranges:
            params["stage_scaling"] = attrs.get("stage_scaling", "uniform")
        return params

    def proposed(self, before: int | None = None) -> int:
        """How many TPE proposals count towards --trials (those before trial number `before`, if given): a repeated
        proposal that took a finished score counts, as TPE spent a trial on it."""
        count = 0
        for t in self.study.get_trials(deepcopy=False):
            if before is not None and t.number >= before:
                break
            if t.user_attrs.get("sampled") and t.user_attrs.get("failure_kind") not in HIDDEN and (
                    finished(t) or pending(t)):
                count += 1
        return count

    def has_work(self) -> bool:
        if self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return True
        wanted = self.study.user_attrs.get("trials", self.recipe.trials)
        return (self.recipe.sampler == "tpe" and self.proposed() < wanted) or engine.settle(self) > 0

    def load_data(self) -> None:
        if self.data is None:
            p = self.recipe.proxy
            self.data = load_data(p.data, p.train_size, p.val_size, p.seed, self.device)

    def ended(self, trial: FrozenTrial) -> None:
        if self.on_trial is not None and not hidden(trial) and candidate_key(trial.user_attrs):
            done = len(engine.held_keys(self, with_pending=False))
            self.on_trial(record(trial), done, max(self.planned, study_total(self.study)))

    def _propose(self, trial: optuna.Trial) -> dict:
        """A TPE proposal (`ProposalSampler`), or surplus when --trials are already proposed (another worker got
        there first)."""
        if self.recipe.sampler != "tpe" or self.proposed(trial.number) >= \
                self.study.user_attrs.get("trials", self.recipe.trials):
            trial.set_user_attr("failure_kind", "surplus")
            raise TrialFailure("surplus: nothing left to train")
        alpha, beta = self._suggest(trial, "alpha"), self._suggest(trial, "beta")
        rule = self._suggest(trial, "stage_scaling") if "stage_scaling" in self.ranges else \
            self.recipe.stage_scaling[0]
        gamma = proposal_gamma(alpha, beta)
        attrs = {"kind": "compound", "alpha": alpha, "beta": beta, "gamma": gamma or 1.0, "stage_scaling": rule,
                 "sampled": True}
        for name, value in attrs.items():
            trial.set_user_attr(name, value)
        if gamma is None:
            trial.set_user_attr("failure_kind", "infeasible")
            raise optuna.TrialPruned(f"alpha * beta^2 = {alpha * beta * beta:.3f} > 2 leaves gamma < 1")
        self._suggest(trial, "gamma")
        return attrs

    def _suggest(self, trial: optuna.Trial, name: str):
        """The trial's parameter `name`, recorded over its `parameter_ranges` range: a queued candidate's fixed
        value, or the sampler's proposal."""
        distribution = self.ranges[name]
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            return trial.suggest_categorical(name, distribution.choices)
        return trial.suggest_float(name, distribution.low, distribution.high)

    def score(self, trial: optuna.Trial) -> float:
        attrs = dict(trial.user_attrs)
        if "kind" not in attrs:
            attrs = self._propose(trial)
        else:  # a queued candidate: its parameters are fixed, and recorded with their distributions
            for name in self.ranges:
                self._suggest(trial, name)
        other = engine.duplicate_of(self, trial)
        if other is not None:  # a repeated proposal takes the score, untrained
            return engine.take_duplicate(trial, other, reuse=bool(attrs.get("sampled")))
        return self._train(trial, Candidate(**{name: attrs[name] for name, _ in CANDIDATE_FIELDS if name in attrs}))

    def network(self, candidate: Candidate) -> CostMatch:
        """The proxy network that scores `candidate`, at equal real cost (or why there is none)."""
        pieces = len(self.latency.entries) if self.latency else 0
        match = candidate_network(self.recipe, self.proxy, candidate, self.currency)
        if self.latency is not None and len(self.latency.entries) > pieces:
            store_latency_table(self.study, self.latency)
        return match

    def measure_latency_table(self) -> None:
        """Build the latency table for every queued candidate, timing the full-size counterparts of the proxy and
        of each candidate's network whole once to measure the table's error (scaler.latency_table); stored once,
        at the end, not after each candidate."""
        matches = [candidate_network(self.recipe, self.proxy, c, self.currency) for c in self.recipe.candidates()]
        baseline = resolve_spec(self.recipe.baseline)
        store_table_error(self.study, self.latency, list({network_key(m.network): full_size(
            m.network, self.proxy, baseline) for m in matches if m.network is not None}.values()))

    def _same_network(self, trial: optuna.Trial, network: Spec, candidate: Candidate) -> FrozenTrial | None:
        """A trained trial whose candidate rounds to the very same network: its score is this one's (training is
        deterministic), so it is not trained again."""
        digest = network_key(network, candidate.repeat, candidate.epochs)
        trial.set_user_attr("network", digest)
        return next((t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if t.user_attrs.get("network") == digest and "same_network_as" not in t.user_attrs), None)

    def _train(self, trial: optuna.Trial, candidate: Candidate) -> float:
        match = self.network(candidate)
        trial.set_user_attr("nominal_flops_ratio", match.target)
        if match.network is None:
            trial.set_user_attr("flops_ratio" if match.currency == "flops" else "cost_ratio", match.ratio)
            trial.set_user_attr("failure", f"skipped: {match.reason}")
            trial.set_user_attr("failure_kind", "off_cost")
            raise TrialFailure(match.reason)
        network = match.network
        cost = estimate(network)
        for name, value in {"cost_ratio": match.ratio, "flops_ratio": cost.macs / self.base_macs,
                            "params": cost.params, "macs": cost.macs,
                            "activations": cost.activations, "resolution": network.resolution,
                            "effective": list(match.coefficients(candidate.phi))}.items():
            trial.set_user_attr(name, value)
        twin = self._same_network(trial, network, candidate)
        if twin is not None:
            for name in ("top1_per_epoch", "images_per_second"):
                trial.set_user_attr(name, twin.user_attrs.get(name))
            trial.set_user_attr("same_network_as", twin.number)
            return twin.value
        per_epoch = []

        def report_epoch(epoch: int, top1: float) -> None:
            record_epoch(trial, per_epoch, top1)
            trial.report(top1, epoch)
            if self.prune and candidate.kind == "compound" and trial.should_prune():
                raise optuna.TrialPruned(f"top-1 {top1:.3f} after epoch {epoch + 1} is below the median")

        p = self.recipe.proxy
        result = engine.train_for_trial(trial, network, self.data, epochs=candidate.epochs or p.epochs,
                                        batch_size=p.batch_size, device=self.device, seed=p.seed + candidate.repeat,
                                        progressive=p.progressive, on_epoch=report_epoch,
                                        on_progress=self.on_progress)
        trial.set_user_attr("images_per_second", result.images_per_second)
        trial.set_user_attr("wall_seconds", result.wall_seconds)
        return result.top1


def network_key(network: Spec, repeat: int = 0, epochs: int = 0) -> str:
    """What makes two trainings the same: the network as trained (its name apart), the seed and the epochs."""
    return fingerprint((), network={k: v for k, v in to_dict(network).items() if k != "name"}, repeat=repeat,
                       epochs=epochs)


def candidate_network(recipe: Recipe, proxy: Spec, candidate: Candidate,
                      currency: Currency | None = None) -> CostMatch:
    """The network `candidate` is trained as: `proxy` scaled along its coefficients to its nominal cost ratio
    (alpha * beta^2 * gamma^2)^phi within ±3 % in the recipe's currency (`currency`, needed for latency; FLOPs:
    its multipliers at phi; scaler.equal_cost); the baseline is the proxy itself."""
    if candidate.kind == "baseline":
        return CostMatch(proxy, 1.0, 1.0, 1.0, 1.0, 1.0, currency=recipe.equal_cost)
    currency = currency or study_currency(recipe.equal_cost, proxy, resolve_spec(recipe.baseline),
                                          recipe.proxy.batch_size)
    return match_along(proxy, candidate.alpha, candidate.beta, candidate.gamma, candidate.phi,
                       candidate.nominal_flops_ratio ** candidate.phi, recipe.proxy_rule(candidate.stage_scaling),
                       f"{proxy.name}@{candidate.kind}", currency)


def _worker_process(recipe: Recipe, study_name: str, storage: str, device: str, prune: bool, worker: int,
                    threads: int) -> None:
    """A worker process of `search(workers=N)`: errors are one line on stderr and the exit status."""
    use_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with storage_failures():
            study = open_study(recipe, study_name, storage, worker, prune)
            engine.work(CompoundSearch(study, recipe, torch.device(device), prune))
    except KeyboardInterrupt:
        sys.exit(130)
    except ScalerError as error:
        print(f"scaler: worker {worker}: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(error.exit_status)


def check_request(recipe: Recipe, budget: Budget | None, storage: str, study_name: str, workers: int,
                  validate_phis: tuple[float, ...], repeats: int, check_ranks: int, check_top: int) -> None:
    """Everything a search can refuse before it trains: one ScalerError naming the problem."""
    if workers > 1 and is_sqlite(storage):
        raise ScalerError(f"workers: {workers} workers cannot share SQLite (it locks under parallel writers); "
                          f"use a journal file (--storage studies/{study_name}.log) or PostgreSQL")
    parse_data(recipe.proxy.data)
    for rule in recipe.stage_scaling:
        if budget is not None:
            # A budget no network of the rule can meet (below the smallest, or above phi = MAX_PHI) is refused
            # now, not after the study. Any coefficients > 1 reach the same smallest network.
            fit_phi(recipe.baseline, budget, PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, rule=recipe.rule(rule))
        else:
            check_cap(resolve_spec(recipe.baseline), recipe.rule(rule))
    for phi in validate_phis:
        check_number("validate phi", phi, 0, 8)
    proxy = recipe.proxy_network()
    for rule in recipe.stage_scaling if recipe.equal_cost != "latency" else ():  # latency is measured later
        for phi in sorted({1.0, *(float(p) for p in validate_phis if p > 0)}):
            for reference in references(rules=recipe.reference_rules):
                match = candidate_network(recipe, proxy, replace(reference, phi=phi, stage_scaling=rule))
                if match.network is None and not match.unmoved:  # an unmoved one is recorded as skipped
                    raise ScalerError(f"proxy: the {reference.kind}-only reference at phi {phi:g} ({rule} stage "
                                      f"scaling) cannot be trained at equal cost: {match.reason}")
    check_int("repeats", repeats, 0)
    if check_ranks:
        check_int("check ranks", check_ranks, recipe.proxy.epochs + 1)
        check_int("check top", check_top, 2)


def search(
    recipe: Recipe = Recipe(),
    budget: Budget | None = None,
    study_name: str = "default",
    storage: str | None = None,
    device: str = "auto",
    on_trial: TrialEnded | None = None,
    workers: int = 1,
    prune: bool = False,
    validate_phis: tuple[float, ...] = (),
    repeats: int = 0,
    check_ranks: int = 0,
    check_top: int = 5,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Callable | None = None,
    threads: int | None = None,
    output: str | None = None,
) -> SearchResult:
    """Train every candidate of the study not yet trained, with `workers` processes, then fit phi to `budget`
    with the best compound candidate and write its spec to `output` (.json or .toml; default <study>-best.json
    beside the study). A finished study is reported, not retrained.

    `repeats`: then train the baseline, the three best compound candidates and every other reference (depth-,
    width- and resolution-only, the published rules) `repeats` more times with other seeds, measuring the proxy's
    seed noise (scaler.study.verdict).
    `check_ranks`: then train the `check_top` best compound candidates for that many epochs, and compare the
    rankings (Kendall's tau). `validate_phis`: then train the found family at those phis on the proxy, and depth-,
    width- and resolution-only scaling and the recipe's published rules at the same nominal FLOPs (the paper's
    scaling curves, and the rules compared at each cost).

    `on_start(done, total)` is called once the inputs are checked and the study is open, before any training;
    `on_trial(record, done, total)` as each trial ends (`total` counts the repeats and validations to come);
    `on_progress` gets the training's progress inside each trial (scaler.training.TrainingProgress) with one
    worker. `threads`: the CPU threads to use (default: this process's cores), split among the workers. Several
    machines may run this against one PostgreSQL study at once; each trains what is left.
    """
    devices = worker_devices(device, workers)
    share = thread_share(threads, workers)
    storage = storage or default_storage(study_name)
    check_request(recipe, budget, storage, study_name, workers, validate_phis, repeats, check_ranks, check_top)
    if output is not None:
        check_output_file(output, (".json", ".toml"))  # before any training, not after it
    if workers == 1:
        use_threads(share)
    with storage_failures():
        study = open_study(recipe, study_name, storage, prune=prune)
        here = CompoundSearch(study, recipe, devices[0], prune, on_trial, on_progress,
                              planned_total(recipe, repeats, validate_phis, check_ranks, check_top))
        engine.settle(here, retry_errors=True)
        if here.latency is not None and "latency_error" not in study.user_attrs:
            here.measure_latency_table()
        if on_start is not None:
            on_start(len(engine.held_keys(here, with_pending=False)), max(here.planned, study_total(study)))

        train_what_is_queued = partial(_train_queued, here, devices, share, study_name, storage)
        train_what_is_queued()
        # The repeats (and a longer proxy) first, then the family of the winner they leave: the one the answer names.
        for extra in (lambda trials: _decisive(trials, repeats, check_ranks, check_top),
                      lambda trials: _family(trials, validate_phis, recipe.reference_rules)):
            if _queue_extra(here, extra(read_search(study_name, storage).trials)):
                train_what_is_queued()
        result = read_search(study_name, storage, budget)
        if result.verdict is not None:
            _name_winner(study, result)
    return write_best(result, output)


def _train_queued(here: CompoundSearch, devices: list, threads: int, study_name: str, storage: str) -> None:
    """Train what the study has queued: in this process, or in one worker process per device."""
    if len(devices) == 1:
        engine.work(here)
    else:
        engine.run_worker_processes(here, _worker_process, [
            (here.recipe, study_name, storage, str(d), here.prune, i, threads) for i, d in enumerate(devices)])


def _decisive(trials: tuple[TrialRecord, ...], repeats: int, check_ranks: int,
              check_top: int) -> tuple[Candidate, ...]:
    """The candidates that decide the answer, again: with more seeds (`repeats`), and on a longer proxy."""
    if judge(trials)[0] is None:
        return ()
    return repeat_candidates(trials, repeats) + (rank_candidates(trials, check_ranks, check_top) if check_ranks
                                                 else ())


def _family(trials: tuple[TrialRecord, ...], validate_phis: tuple[float, ...],
            rules: tuple[str, ...]) -> tuple[Candidate, ...]:
    """The winner's family at the phis to validate (and single-dimension scaling and the published `rules` at the
    same FLOPs)."""
    best, _ = judge(trials)
    if best is None:
        return ()
    return family_candidates(best.alpha, best.beta, best.gamma, tuple(sorted({float(p) for p in validate_phis})),
                             stage_scaling=best.stage_scaling, rules=rules)


def _queue_extra(here: CompoundSearch, extra: tuple[Candidate, ...]) -> bool:
    """Add candidates to the study's own (stored, so every worker and every later command sees them) and queue
    what is not yet finished or pending; whether there were any."""
    if not extra:
        return False
    known = [Candidate(**c) for c in here.study.user_attrs.get("extra", [])]
    here.study.set_user_attr("extra", [asdict(c) for c in dict.fromkeys(known + list(extra))])
    engine.settle(here)
    return True


def _name_winner(study: optuna.Study, result: SearchResult) -> None:
    """The answer in the study itself, for any tool that opens it (optuna-dashboard shows user attributes)."""
    b, v = result.best, result.verdict
    study.set_user_attr("winner", {"alpha": b.alpha, "beta": b.beta, "gamma": b.gamma,
                                   "stage_scaling": b.stage_scaling, **asdict(v.winner)})
    if v.noise is not None:
        study.set_user_attr("seed_noise", asdict(v.noise))


def planned_total(recipe: Recipe, repeats: int, validate_phis: tuple[float, ...], check_ranks: int,
                  check_top: int) -> int:
    """How many candidates a search command will score in all, before it knows its winner: the recipe's, the
    repeats of the baseline, the three best compound candidates and every other reference (single-dimension and
    published rules, under each stage rule they are trained under), the family's phis (the family, the three
    single dimensions and the published rules at each), and a rank check's."""
    candidates = recipe.candidates()
    compounds = sum(c.kind == "compound" for c in candidates) or (recipe.trials if recipe.sampler == "tpe" else 0)
    references = sum(c.kind not in ("baseline", "compound") for c in candidates)
    per_phi = len(family_candidates(1.0, 1.0, 1.0, (1.0,), rules=recipe.reference_rules))
    family = sum(1 if phi == 1 else per_phi for phi in {float(phi) for phi in validate_phis if phi > 0})  # at phi 1,
    # the references are the recipe's own and the family is the winner's network
    return (recipe.total() + repeats * (1 + min(3, compounds) + references) + family
            + (min(check_top, compounds) if check_ranks else 0))
