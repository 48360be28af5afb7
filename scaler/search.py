"""The compound-coefficient search: an Optuna study with one trial per candidate (alpha, beta, gamma), each scored
by a short proxy training, then the largest phi whose full-size network fits the budget.

How every candidate is trained exactly once, whatever happens to the workers:

- A candidate is a trial's user attributes `kind, alpha, beta, gamma, stage_scaling, ...` (its key). The grid and
  the references are put in the study's queue as WAITING trials; Optuna hands each queued trial to exactly one
  worker. Optuna's GridSampler is not used: it trains points twice under parallel workers and stops "exhausted"
  with points never trained after an interruption.
- Before training, a worker checks the key against the study: if another trial of the same candidate is
  finished, or running under an earlier trial number, its own trial is surplus (recorded as such, never
  trained, left out of every table). So two workers that queue the same candidate at once cost nothing.
- `settle` fails trials whose worker is gone (a dead process on this machine at once; on another machine by
  the storage's heartbeat) and queues again every candidate that is neither finished nor pending. A trial cut
  off by Ctrl-C is recorded as interrupted and trained again on the next run; a trial that failed for a reason
  of its own (out of memory, non-finite loss) stays failed.
- `--sampler tpe --trials N`: after the references, Optuna's TPE proposes N candidates over the alpha and beta
  ranges (gamma derived); a proposal with gamma < 1 is infeasible and pruned untrained, a repeat of a finished
  candidate takes its score without training.

The grid, proxy settings, seed and `VERSION` are fingerprinted in the study, so a worker with other settings is
refused.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import socket
import statistics
import sys
import threading
import time
import tomllib
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from scaler.baselines import resolve_spec
from scaler.budget import Budget, Fit, fit_phi
from scaler.confidence import compare, kendall_tau, seed_noise
from scaler.data import load_data, parse_data
from scaler.errors import ScalerError, check_choice, check_int, check_number, read_text
from scaler.estimate import estimate
from scaler.grid import Candidate, compound_grid, family_candidates, fingerprint, references
from scaler.scaling import (PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, STAGE_RULES, StageRule, check_cap, compound, scale,
                            stage_rule)
from scaler.spec import Spec, save_spec, to_dict
from scaler.storage import (StorageFailed, default_storage, is_sqlite, load_study, open_storage, ride_out,
                            storage_folder)
from scaler.train import (NonFiniteLoss, OutOfMemory, TrainingError, TrainResult, check_progressive, resolve_device,
                          train)

TEST = "one-sided two-sample t-test at 95 % with the pooled seed noise"
VERSION = "3"  # bump when a change would make old trials incomparable (3: residual branches start at zero)
SAMPLERS = ("grid", "tpe")
SAMPLED_STEP = 0.01  # TPE proposes alpha and beta on this grid: finer than a short proxy can tell apart
FINAL_FAILURES = ("oom", "nonfinite")  # failures of the candidate itself: never trained again
SETTLED_FAILURES = (*FINAL_FAILURES, "error")  # an unexpected error is tried again once per command
HIDDEN = ("surplus", "infeasible")  # bookkeeping trials, left out of every table and count


# The recipe's fields that say how a candidate is shrunk and trained (the rest say which candidates there are).
PROXY_FIELDS = ("data", "epochs", "proxy_resolution", "proxy_width", "proxy_depth", "batch_size", "train_size",
                "val_size", "seed", "progressive")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a study's scores: the proxy network, the data, the training, the candidates.
    All but `trials` are fingerprinted; `trials` (TPE proposals) may be raised to search on."""

    baseline: str = "efficientnet-b0"
    data: str = "synthetic"
    epochs: int = 4
    proxy_resolution: int = 48  # below the synthetic set's native 64 px, so resolution scaling can add detail
    proxy_width: float = 0.5
    proxy_depth: float = 0.5
    batch_size: int = 64
    train_size: int = 5000
    val_size: int = 1000
    seed: int = 0
    alpha_range: tuple[float, float] = (1.0, 1.4)
    beta_range: tuple[float, float] = (1.0, 1.4)
    step: float = 0.05
    sampler: str = "grid"
    trials: int = 20
    stage_scaling: tuple[str, ...] = ("uniform",)  # each rule scores the whole grid (scaler.scaling.StageRule)
    max_resolution: int = 0  # the full-size network's resolution cap; 0: the rule's own (v2: 480 px, uniform: none)
    progressive: int = 0  # K >= 2: progressive learning in K stages (scaler.train); 0: off

    def __post_init__(self) -> None:
        for name in ("baseline", "data"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ScalerError(f"{name}: expected a non-empty string, got {getattr(self, name)!r}")
        for name in ("epochs", "proxy_resolution", "batch_size", "train_size", "val_size", "trials"):
            check_int(name.replace("_", " "), getattr(self, name))
        check_int("seed", self.seed, 0)
        for name in ("proxy_width", "proxy_depth", "step"):
            check_number(name.replace("_", " "), getattr(self, name), 0, above_low=True)
        for name in ("alpha_range", "beta_range"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ScalerError(f"{name.replace('_', ' ')}: expected [low, high], got {value!r}")
            object.__setattr__(self, name, (check_number(f"{name.replace('_', ' ')} start", value[0], 1),
                                            check_number(f"{name.replace('_', ' ')} end", value[1], value[0])))
        check_choice("sampler", self.sampler, SAMPLERS)
        rules = self.stage_scaling
        if isinstance(rules, str) or not isinstance(rules, (tuple, list)) or not rules:
            raise ScalerError(f"stage scaling: expected a list of rules ({', '.join(STAGE_RULES)}), got {rules!r}")
        for name in rules:
            check_choice("stage scaling", name, STAGE_RULES)
        if len(set(rules)) < len(rules):
            raise ScalerError(f"stage scaling: a rule is named twice in {', '.join(rules)}")
        object.__setattr__(self, "stage_scaling", tuple(rules))
        check_int("max resolution", self.max_resolution, 0)
        check_progressive(self.progressive)
        compound_grid(self.alpha_range, self.beta_range, self.step if self.sampler == "grid" else SAMPLED_STEP)

    def settings(self) -> dict:
        """What a worker must share with the study: every field but `trials`, and the version."""
        return {k: v for k, v in asdict(self).items() if k != "trials"} | {"version": VERSION}

    def candidates(self) -> tuple[Candidate, ...]:
        """The queued candidates: the references first (baseline, depth-, width-, resolution-only), then, for the
        grid sampler, the grid, in a fixed order; all of it for the first stage rule, and for each further rule the
        grid and the one reference a stage rule changes (depth only)."""
        grid = compound_grid(self.alpha_range, self.beta_range, self.step) if self.sampler == "grid" else ()
        first, *others = self.stage_scaling
        chosen = [replace(c, stage_scaling=first) for c in references() + grid]
        for rule in others:
            chosen += [replace(c, stage_scaling=rule) for c in references() + grid
                       if c.kind in ("depth", "compound")]
        return tuple(chosen)

    def total(self) -> int:
        """How many candidates the study scores."""
        return len(self.candidates()) + (self.trials if self.sampler == "tpe" else 0)

    def proxy(self) -> Spec:
        """The baseline shrunk for scoring: the network each candidate's phi = 1 scaling starts from."""
        return self.shrink(resolve_spec(self.baseline))

    def shrink(self, spec: Spec) -> Spec:
        """Any network shrunk as this recipe's proxy is: its width, depth and resolution."""
        return scale(spec, width=self.proxy_width, depth=self.proxy_depth, resolution=self.proxy_resolution)

    def rule(self, name: str) -> StageRule:
        """The stage rule `name` for the full-size network, with this recipe's resolution cap."""
        return stage_rule(name, self.max_resolution or None)

    def proxy_rule(self, name: str) -> StageRule:
        """The same rule for the proxy: its cap shrunk as the proxy's resolution is (480 of 224 px: 103 of 48)."""
        full = self.rule(name)
        if full.max_resolution is None:
            return full
        shrink = self.proxy_resolution / resolve_spec(self.baseline).resolution
        return replace(full, max_resolution=max(self.proxy_resolution, round(full.max_resolution * shrink)))


# Sized so that the whole `scaler search --quick` (4 references + 6 candidates) finishes in about a minute and a
# half on a 2-core CPU: it checks the machinery end to end; its scores are too noisy to rank candidates.
QUICK = Recipe(epochs=3, proxy_resolution=32, proxy_width=0.5, proxy_depth=0.34, batch_size=32, train_size=1024,
               val_size=256, alpha_range=(1.1, 1.3), beta_range=(1.05, 1.15), step=0.1)


def recipe_from_dict(data: dict, base: Recipe = Recipe(), where: str = "recipe") -> Recipe:
    """A recipe from a TOML/JSON table: `base` with the keys given; unknown keys and wrong types are one error."""
    known = [f.name for f in fields(Recipe)]
    if not isinstance(data, dict):
        raise ScalerError(f"{where}: expected a table of settings, got {type(data).__name__}")
    for key in data:
        if key not in known:
            raise ScalerError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
    try:
        return replace(base, **data)
    except ScalerError as error:
        raise ScalerError(f"{where}: {error}") from None


def load_recipe(path: str | Path, base: Recipe = Recipe()) -> Recipe:
    """Read a study recipe (TOML): any of Recipe's fields; what it leaves out comes from `base`."""
    path = Path(path)
    text = read_text(path, f"recipe {path}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScalerError(f"recipe {path}: not valid TOML: {error}") from None
    return recipe_from_dict(data, base, f"recipe {path}")


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str
    kind: str
    alpha: float
    beta: float
    gamma: float
    phi: float
    repeat: int
    epochs: int  # 0: the recipe's proxy; more: the longer proxy of a rank check
    top1: float | None
    top1_per_epoch: tuple[float, ...]
    resolution: int | None
    flops_ratio: float | None
    params: int | None
    macs: int | None
    activations: int | None
    wall_seconds: float | None
    failure: str | None
    same_network_as: int | None
    stage_scaling: str = "uniform"


@dataclass(frozen=True)
class SearchResult:
    study_name: str
    storage: str
    recipe: Recipe
    best: TrialRecord | None
    fit: Fit | None
    trials: tuple[TrialRecord, ...]
    spec_path: str | None = None
    confidence: dict | None = None  # see `judge`

    def to_dict(self) -> dict:
        best = None if self.best is None else {"alpha": self.best.alpha, "beta": self.best.beta,
                                               "gamma": self.best.gamma, "stage_scaling": self.best.stage_scaling,
                                               "top1": self.best.top1}
        final = None
        if self.fit is not None:
            final = {"params": self.fit.params, "macs": self.fit.macs, "resolution": self.fit.spec.resolution,
                     "memory_bytes": self.fit.memory_bytes, "latency_ms": self.fit.latency_ms,
                     "binding": list(self.fit.binding), "spec": self.fit.to_dict()["spec"]}
        return {"study_name": self.study_name, "storage": self.storage, "recipe": asdict(self.recipe), "best": best,
                "phi": None if self.fit is None else self.fit.phi, "final": final, "spec_path": self.spec_path,
                "confidence": self.confidence,
                "trials": [asdict(t) for t in self.trials]}


class TrialFailure(Exception):
    """A trial that ends FAIL with its reason in the user attributes; the worker goes on."""


CANDIDATE_FIELDS = tuple((f.name, f.default) for f in fields(Candidate))


def _key(attrs: dict) -> tuple | None:
    """A trial's candidate (its user attributes) as a tuple; None for a trial that holds none."""
    if "kind" not in attrs:
        return None
    return tuple(attrs[name] if default is MISSING else attrs.get(name, default) for name, default in CANDIDATE_FIELDS)


def _candidate(attrs: dict) -> Candidate:
    return Candidate(**{name: attrs[name] for name, _ in CANDIDATE_FIELDS if name in attrs})


def _hidden(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.user_attrs.get("failure_kind") in HIDDEN or "copy_of" in trial.user_attrs


def _record(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    attrs = trial.user_attrs
    failure = attrs.get("failure")
    if trial.state == TrialState.FAIL and failure is None:
        failure = "worker lost"  # killed, or gone silent: found by process id or heartbeat
    if trial.state == TrialState.PRUNED:
        failure = f"pruned after epoch {len(attrs.get('top1_per_epoch', []))}"
    return TrialRecord(
        number=trial.number, state=trial.state.name, kind=attrs.get("kind", "?"), alpha=attrs.get("alpha", 0.0),
        beta=attrs.get("beta", 0.0), gamma=attrs.get("gamma", 0.0), phi=attrs.get("phi", 1.0),
        repeat=attrs.get("repeat", 0), epochs=attrs.get("epochs", 0),
        top1=trial.value if trial.state == TrialState.COMPLETE else None,
        top1_per_epoch=tuple(attrs.get("top1_per_epoch") or ()), resolution=attrs.get("resolution"),
        flops_ratio=attrs.get("flops_ratio"),
        params=attrs.get("params"), macs=attrs.get("macs"), activations=attrs.get("activations"),
        wall_seconds=attrs.get("wall_seconds"), failure=failure, same_network_as=attrs.get("same_network_as"),
        stage_scaling=attrs.get("stage_scaling", "uniform"),
    )


def records(study: optuna.Study) -> tuple[TrialRecord, ...]:
    """Every trial that scores a candidate, in trial order (bookkeeping trials left out)."""
    return tuple(_record(t) for t in study.get_trials(deepcopy=False) if not _hidden(t) and _key(t.user_attrs))


def _dead_local_owner(trial: optuna.trial.FrozenTrial) -> bool:
    """A RUNNING trial whose worker ran on this machine and whose process is gone (killed, crashed)."""
    owner = trial.user_attrs.get("worker")
    if not owner or owner.get("host") != socket.gethostname():
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _sampler(recipe: Recipe, worker: int) -> optuna.samplers.BaseSampler:
    if recipe.sampler == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Each worker its own seed, or parallel workers would propose the same candidates.
            return optuna.samplers.TPESampler(seed=recipe.seed + worker, multivariate=True)
    return optuna.samplers.RandomSampler(seed=recipe.seed + worker)  # never asked: every grid trial is queued


def open_study(recipe: Recipe, study_name: str, storage: str, worker: int = 0, prune: bool = False) -> optuna.Study:
    """Open or create the study and check its fingerprint."""
    pruner = optuna.pruners.MedianPruner(n_startup_trials=len(references()) + 1, n_warmup_steps=1) if prune \
        else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=study_name, storage=open_storage(storage, create=True),
                                direction="maximize", load_if_exists=True, sampler=_sampler(recipe, worker),
                                pruner=pruner)
    settings = json.loads(json.dumps(recipe.settings()))  # as stored: tuples become lists
    check_settings(study, settings, fingerprint(recipe.candidates(), **settings))
    if recipe.sampler == "tpe" and study.user_attrs.get("trials", 0) < recipe.trials:
        study.set_user_attr("trials", recipe.trials)
    return study


def check_settings(study: optuna.Study, settings: dict, mark: str) -> None:
    """Store the settings and their fingerprint `mark` in a new study; refuse an existing study made with other
    settings, naming what differs."""
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", mark)
        study.set_user_attr("recipe", settings)
    elif stored != mark:
        theirs = study.user_attrs.get("recipe", {})
        differ = sorted(k for k in set(settings) | set(theirs) if settings.get(k) != theirs.get(k))
        raise ScalerError(f"study {study.study_name!r} was made with other settings ({', '.join(differ) or 'grid'} "
                          f"differ); use the same settings, or another --study-name")


class _Interrupt:
    """Where a worker is with Ctrl-C: `live` inside an `interruptible` stretch (where it is taken at once),
    `pending` when one came outside it and waits for a safe point."""
    live = False
    pending = False


@contextmanager
def safe_interrupts() -> Iterator[None]:
    """A worker loop's Ctrl-C, taken only where it loses nothing: at once where `interruptible` (a trial's scoring,
    which `run_owned` records on the trial), else at the next such stretch or the loop's next step. Optuna's
    own bookkeeping is never cut in half: a Ctrl-C inside `study.ask`, after it took a queued trial and before the
    trial named its worker, left that trial RUNNING with no owner, so no command ever trained it again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum, frame):
        if _Interrupt.live:
            raise KeyboardInterrupt
        _Interrupt.pending = True

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    take_interrupt()


def take_interrupt() -> None:
    """Raise the Ctrl-C that came at an unsafe moment, now that the moment is safe."""
    if _Interrupt.pending:
        _Interrupt.pending = False
        raise KeyboardInterrupt


@contextmanager
def interruptible() -> Iterator[None]:
    """A stretch of a worker loop where a Ctrl-C loses nothing, so it is taken at once (one that came before it,
    at once on entry): a trial's scoring, loading the data."""
    _Interrupt.live = True
    try:
        take_interrupt()
        yield
    finally:
        _Interrupt.live = False


def run_owned(trial: optuna.Trial, device: torch.device, score: Callable[[optuna.Trial], float | tuple]):
    """`score(trial)` as this process's work: the trial first names its worker (so that its loss is noticed, see
    `fail_lost_trials`), and a Ctrl-C anywhere in it, or one that came while the trial was taken, is recorded as
    an interruption (trained again)."""
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid(), "device": str(device)})
    try:
        with interruptible():
            return score(trial)
    except KeyboardInterrupt:
        trial.set_user_attr("failure", "interrupted")
        raise


def train_for_trial(trial: optuna.Trial, network: Spec, data, **kwargs) -> TrainResult:
    """`train`, with a failure recorded on the trial: out of memory or a non-finite loss is the candidate's own
    (never trained again), any other training error is tried again by the next command."""
    try:
        return train(network, data, **kwargs)
    except TrainingError as error:
        kind = "oom" if isinstance(error, OutOfMemory) else "nonfinite" if isinstance(error, NonFiniteLoss) \
            else "error"
        trial.set_user_attr("failure", error.reason)
        trial.set_user_attr("failure_kind", kind)
        raise TrialFailure(error.reason) from None


def _finished(trial: optuna.trial.FrozenTrial, failures: tuple[str, ...] = SETTLED_FAILURES) -> bool:
    """Complete, pruned, or failed for one of `failures` (reasons of the candidate's own): not trained again."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and trial.user_attrs.get("failure_kind") in failures)


def _pending(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.state in (TrialState.RUNNING, TrialState.WAITING)


def _settled_keys(study: optuna.Study, settled_failures: tuple[str, ...] = SETTLED_FAILURES,
                  pending: bool = True) -> set[tuple]:
    """The candidates that are finished and, with `pending`, those queued or running."""
    return {_key(t.user_attrs) for t in study.get_trials(deepcopy=False)
            if _key(t.user_attrs) is not None and not _hidden(t)
            and (_finished(t, settled_failures) or (pending and _pending(t)))}


def fail_lost_trials(study: optuna.Study) -> None:
    """Record as failed the running trials whose worker is gone: a dead process on this machine at once, a
    silent one on another machine by the storage's heartbeat."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # other machines' dead workers (relational storages)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _dead_local_owner(trial):
            study.tell(trial.number, state=TrialState.FAIL)


def settle(study: optuna.Study, recipe: Recipe, retry_errors: bool = False, extra: tuple[Candidate, ...] = ()) -> int:
    """Fail the trials whose worker is gone, then queue every candidate (the recipe's and `extra`) that is neither
    finished nor pending. `retry_errors` also queues candidates whose training raised an unexpected error (once
    per command).
    Returns how many candidates were queued."""
    fail_lost_trials(study)
    settled = _settled_keys(study, FINAL_FAILURES if retry_errors else SETTLED_FAILURES)
    wanted = {}
    for c in recipe.candidates() + tuple(extra):
        wanted.setdefault(_key(asdict(c)), asdict(c))
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        key = _key(trial.user_attrs)
        if key is not None and not _hidden(trial):
            names = [name for name, _ in CANDIDATE_FIELDS] + ["sampled"]
            wanted.setdefault(key, {k: trial.user_attrs[k] for k in names if k in trial.user_attrs})
    queued = 0
    for key, attrs in wanted.items():
        if key not in settled:
            params = _params(attrs, recipe) if attrs["kind"] == "compound" else {}
            study.enqueue_trial(params, user_attrs=attrs)
            queued += 1
    return queued


def _params(attrs: dict, recipe: Recipe) -> dict:
    """A compound candidate as the sampler's parameters: alpha and beta, and the stage rule when there is a choice."""
    params = {"alpha": attrs["alpha"], "beta": attrs["beta"]}
    if len(recipe.stage_scaling) > 1:
        params["stage_scaling"] = attrs.get("stage_scaling", "uniform")
    return params


def _proposed(study: optuna.Study, before: int | None = None) -> int:
    """How many TPE proposals count towards --trials (those before trial number `before`, if given)."""
    count = 0
    for t in study.get_trials(deepcopy=False):
        if before is not None and t.number >= before:
            break
        if not t.user_attrs.get("sampled") or t.user_attrs.get("failure_kind") in HIDDEN:
            continue
        if _finished(t) or _pending(t):
            count += 1
    return count


def _has_work(study: optuna.Study, recipe: Recipe) -> bool:
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return True
    return recipe.sampler == "tpe" and _proposed(study) < study.user_attrs.get("trials", recipe.trials)


class _Objective:
    """Scores one trial: takes its candidate (queued, or proposed by TPE), checks it is not done or running
    elsewhere, scales the proxy, records its costs, trains it, reports each epoch (for the pruner)."""

    def __init__(self, study: optuna.Study, recipe: Recipe, device: torch.device, prune: bool):
        self.study, self.recipe, self.device, self.prune = study, recipe, device, prune
        self.proxy = recipe.proxy()
        self.base_macs = estimate(self.proxy).macs
        self.data = None

    def load_data(self) -> None:
        """The proxy data, once, before the first trial (so a data error is not a trial's)."""
        if self.data is None:
            r = self.recipe
            self.data = load_data(r.data, r.train_size, r.val_size, r.seed, self.device)

    def _distribution(self, name: str) -> dict:
        low, high = getattr(self.recipe, f"{name}_range")
        return {"low": low, "high": high, "step": SAMPLED_STEP if self.recipe.sampler == "tpe" else None}

    def _propose(self, trial: optuna.Trial) -> dict:
        """A TPE proposal, or surplus when --trials are already proposed (another worker got there first)."""
        if self.recipe.sampler != "tpe" or _proposed(self.study, trial.number) >= \
                self.study.user_attrs.get("trials", self.recipe.trials):
            trial.set_user_attr("failure_kind", "surplus")
            raise TrialFailure("surplus: nothing left to train")
        alpha = round(trial.suggest_float("alpha", **self._distribution("alpha")), 10)
        beta = round(trial.suggest_float("beta", **self._distribution("beta")), 10)
        rules = self.recipe.stage_scaling
        rule = trial.suggest_categorical("stage_scaling", rules) if len(rules) > 1 else rules[0]
        gamma_squared = 2.0 / (alpha * beta * beta)
        attrs = {"kind": "compound", "alpha": alpha, "beta": beta,
                 "gamma": round(math.sqrt(max(1.0, gamma_squared)), 10), "stage_scaling": rule, "sampled": True}
        for name, value in attrs.items():
            trial.set_user_attr(name, value)
        if gamma_squared < 1 - 1e-12:
            trial.set_user_attr("failure_kind", "infeasible")
            raise optuna.TrialPruned(f"alpha * beta^2 = {alpha * beta * beta:.3f} > 2 leaves gamma < 1")
        return attrs

    def _duplicate_of(self, trial: optuna.Trial, key: tuple) -> optuna.trial.FrozenTrial | None:
        """Another trial of the same candidate that is finished, or running under an earlier number."""
        for other in self.study.get_trials(deepcopy=False):
            if other.number == trial.number or _hidden(other) or _key(other.user_attrs) != key:
                continue
            if other.state == TrialState.RUNNING and other.number < trial.number:
                return other
            if _finished(other, FINAL_FAILURES):
                return other
        return None

    def _same_network(self, trial: optuna.Trial, network: Spec, candidate: Candidate
                      ) -> optuna.trial.FrozenTrial | None:
        """A trained trial whose candidate rounds to the very same network: its score is this one's (training is
        deterministic), so it is not trained again. Shallow proxies make this common: ceil rounding gives every
        alpha in (1, 2] two blocks for a one-block stage."""
        digest = fingerprint((), network={k: v for k, v in to_dict(network).items() if k != "name"},
                             repeat=candidate.repeat, epochs=candidate.epochs)
        trial.set_user_attr("network", digest)
        return next((t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if t.user_attrs.get("network") == digest and "same_network_as" not in t.user_attrs), None)

    def __call__(self, trial: optuna.Trial) -> float:
        return run_owned(trial, self.device, self._score)

    def _score(self, trial: optuna.Trial) -> float:
        attrs = dict(trial.user_attrs)
        if "kind" not in attrs:
            attrs = self._propose(trial)
        elif attrs["kind"] == "compound":
            trial.suggest_float("alpha", **self._distribution("alpha"))
            trial.suggest_float("beta", **self._distribution("beta"))
            if len(self.recipe.stage_scaling) > 1:
                trial.suggest_categorical("stage_scaling", self.recipe.stage_scaling)
        other = self._duplicate_of(trial, _key(attrs))
        if other is not None:
            if attrs.get("sampled") and other.state == TrialState.COMPLETE:
                trial.set_user_attr("copy_of", other.number)  # a repeated proposal takes the score, untrained
                return other.value
            trial.set_user_attr("failure_kind", "surplus")
            raise TrialFailure(f"surplus: trial {other.number} has this candidate")
        return self._train(trial, _candidate(attrs))

    def _train(self, trial: optuna.Trial, candidate: Candidate) -> float:
        if candidate.kind == "baseline":
            network = self.proxy
        else:
            network = compound(self.proxy, candidate.alpha, candidate.beta, candidate.gamma, candidate.phi,
                               rule=self.recipe.proxy_rule(candidate.stage_scaling))
        cost = estimate(network)
        trial.set_user_attr("flops_ratio", cost.macs / self.base_macs)
        trial.set_user_attr("nominal_flops_ratio", candidate.nominal_flops_ratio ** candidate.phi)
        trial.set_user_attr("params", cost.params)
        trial.set_user_attr("macs", cost.macs)
        trial.set_user_attr("activations", cost.activations)
        trial.set_user_attr("resolution", network.resolution)
        twin = self._same_network(trial, network, candidate)
        if twin is not None:
            for name in ("top1_per_epoch", "images_per_second"):
                trial.set_user_attr(name, twin.user_attrs.get(name))
            trial.set_user_attr("same_network_as", twin.number)
            return twin.value
        per_epoch = []

        def report_epoch(epoch: int, top1: float) -> None:
            per_epoch.append(top1)
            trial.set_user_attr("top1_per_epoch", per_epoch)
            trial.report(top1, epoch)
            if self.prune and candidate.kind == "compound" and trial.should_prune():
                raise optuna.TrialPruned(f"top-1 {top1:.3f} after epoch {epoch + 1} is below the median")

        result = train_for_trial(trial, network, self.data, epochs=candidate.epochs or self.recipe.epochs,
                                 batch_size=self.recipe.batch_size, device=self.device,
                                 seed=self.recipe.seed + candidate.repeat, progressive=self.recipe.progressive,
                                 on_epoch=report_epoch)
        trial.set_user_attr("images_per_second", result.images_per_second)
        trial.set_user_attr("wall_seconds", result.wall_seconds)
        return result.top1


Progress = Callable[[TrialRecord, int, int], None]  # (the trial that ended, candidates done, candidates in all)


def _report_progress(study: optuna.Study, trial: optuna.trial.FrozenTrial, on_trial: Progress | None) -> None:
    if on_trial is None or _hidden(trial) or not _key(trial.user_attrs):
        return
    on_trial(_record(trial), len(_settled_keys(study, pending=False)), study_total(study))


def work(study: optuna.Study, recipe: Recipe, device: torch.device, prune: bool = False,
         on_trial: Progress | None = None) -> None:
    """One worker: train candidates of the study until none is left to train (others may still be running)."""
    objective = _Objective(study, recipe, device, prune)

    def finished(_, trial: optuna.trial.FrozenTrial) -> None:
        _report_progress(study, trial, on_trial)

    outage = None
    with safe_interrupts():
        while True:
            take_interrupt()
            try:
                if not (_has_work(study, recipe) or settle(study, recipe)):
                    break
                with interruptible():
                    objective.load_data()
                study.optimize(objective, n_trials=1, catch=(TrialFailure,), callbacks=[finished])
                outage = None
            except Exception as error:  # noqa: BLE001 -- ride_out re-raises all but a storage failure
                # The database went away (a restart, a network cut): wait for it. The trial it cut off stays
                # RUNNING, and is trained again once its heartbeat is stale or this process has ended.
                outage = ride_out(error, outage)


def worker_devices(device: str, workers: int) -> list[torch.device]:
    """The device of each worker: one per GPU in turn when 'auto' or 'cuda' finds several; else all on one."""
    check_int("workers", workers)
    resolved = resolve_device(device)
    count = torch.cuda.device_count() if resolved.type == "cuda" else 0
    if str(device) in ("auto", "cuda") and count > 1:
        return [torch.device(f"cuda:{i % count}") for i in range(workers)]
    return [resolved] * workers


def _worker_process(recipe: Recipe, study_name: str, storage: str, device: str, prune: bool, worker: int,
                    threads: int) -> None:
    """A worker process of `search(workers=N)`: errors are one line on stderr and the exit status."""
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        work(open_study(recipe, study_name, storage, worker, prune), recipe, torch.device(device), prune)
    except KeyboardInterrupt:
        sys.exit(130)
    except (ScalerError, TrainingError, StorageFailed, optuna.exceptions.StorageInternalError) as error:
        print(f"scaler: worker {worker}: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(2 if isinstance(error, ScalerError) else 1)


class WorkerFailed(RuntimeError):
    """A worker process ended with an error; the study keeps what was done."""


def _run_workers(recipe: Recipe, study_name: str, storage: str, devices: list[torch.device], prune: bool,
                 on_trial: Progress | None, poll_seconds: float = 1.0) -> None:
    context = multiprocessing.get_context("spawn")  # fork would copy torch's threads and CUDA state
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    processes = [context.Process(target=_worker_process, name=f"scaler-worker-{i}",
                                 args=(recipe, study_name, storage, str(d), prune, i, threads))
                 for i, d in enumerate(devices)]
    for p in processes:
        p.start()
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    try:
        while True:
            alive = any(p.is_alive() for p in processes)
            for t in study.get_trials(deepcopy=False):
                if t.state.is_finished() and t.number not in seen:
                    seen.add(t.number)
                    _report_progress(study, t, on_trial)
            if not alive:
                break
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        # From a terminal every worker gets the same Ctrl-C, records its trial as interrupted and exits; a worker
        # still running after a grace period (the interrupt was sent to this process alone) is interrupted too.
        for p in processes:
            p.join(timeout=10)
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
                p.join()
        raise
    failed = [f"worker {i} exited with status {p.exitcode}" for i, p in enumerate(processes) if p.exitcode]
    if failed:
        raise WorkerFailed("; ".join(failed) + "; what finished is kept: run the same command to go on")


def search(
    recipe: Recipe = Recipe(),
    budget: Budget | None = None,
    study_name: str = "default",
    storage: str | None = None,
    device: str = "auto",
    on_trial: Progress | None = None,
    workers: int = 1,
    prune: bool = False,
    validate_phis: tuple[float, ...] = (),
    repeats: int = 0,
    check_ranks: int = 0,
    check_top: int = 5,
    on_start: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """Train every candidate of the study not yet trained, with `workers` processes, then fit phi to `budget`
    with the best compound candidate. A finished study is reported, not retrained.

    `repeats`: then train the baseline, the three best compound candidates and the best single-dimension
    reference `repeats` more times with other seeds, measuring the proxy's seed noise (see `judge`).
    `check_ranks`: then train the `check_top` best compound candidates for that many epochs, and compare the
    rankings (Kendall's tau, see `rank_check`).
    `validate_phis`: then train the found family at those phis on the proxy, and depth-, width- and
    resolution-only scaling at the same nominal FLOPs, into the same study (the paper's scaling curves).

    `on_start(done, total)` is called once the inputs are checked and the study is open, before any training;
    `on_trial(record, done, total)` as each trial ends (progress). Several machines may run this against one
    PostgreSQL study at once; each trains what is left.
    """
    devices = worker_devices(device, workers)
    storage = storage or default_storage(study_name)
    if workers > 1 and is_sqlite(storage):
        raise ScalerError(f"workers: {workers} workers cannot share SQLite (it locks under parallel writers); "
                          f"use a journal file (--storage studies/{study_name}.log) or PostgreSQL")
    parse_data(recipe.data)
    for rule in recipe.stage_scaling:
        if budget is not None:
            # Before any training: a budget no network of the rule can meet (below the smallest, or above phi =
            # MAX_PHI) is refused now, not after the study. Any coefficients > 1 reach the same smallest network.
            fit_phi(recipe.baseline, budget, PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, rule=recipe.rule(rule))
        else:
            check_cap(resolve_spec(recipe.baseline), recipe.rule(rule))
    for phi in validate_phis:
        check_number("validate phi", phi, 0, 8)
    check_int("repeats", repeats, 0)
    if check_ranks:
        check_int("check ranks", check_ranks, recipe.epochs + 1)
        check_int("check top", check_top, 2)
    study = open_study(recipe, study_name, storage, prune=prune)
    settle(study, recipe, retry_errors=True)
    if on_start is not None:
        on_start(len(_settled_keys(study, pending=False)), study_total(study))

    def train_what_is_queued() -> None:
        if workers == 1:
            work(study, recipe, devices[0], prune, on_trial)
        else:
            _run_workers(recipe, study_name, storage, devices, prune, on_trial)

    train_what_is_queued()
    found = report(study_name, storage)
    extra = ()
    if found.best is not None:
        b = found.best
        extra = repeat_candidates(found.trials, repeats) + family_candidates(
            b.alpha, b.beta, b.gamma, tuple(sorted({float(phi) for phi in validate_phis})),
            stage_scaling=b.stage_scaling)
        if check_ranks:
            extra += rank_candidates(found.trials, check_ranks, check_top)
    if extra:
        known = [Candidate(**c) for c in study.user_attrs.get("extra", [])]
        study.set_user_attr("extra", [asdict(c) for c in dict.fromkeys(known + list(extra))])
        settle(study, recipe, extra=extra)
        train_what_is_queued()
    result = report(study_name, storage, budget)
    if result.confidence is not None:
        study.set_user_attr("seed_noise", result.confidence["noise"])  # for any tool that opens the study
    return result


def study_total(study: optuna.Study) -> int:
    """How many candidates the study scores: its recipe's, and those queued after it (repeats, validation)."""
    recipe = stored_recipe(study)
    extra = {_key(c) for c in study.user_attrs.get("extra", [])} - {_key(asdict(c)) for c in recipe.candidates()}
    return recipe.total() + len(extra)  # the validation at phi = 1 repeats the references


def stored_recipe(study: optuna.Study) -> Recipe:
    """The recipe a study was made with (from its user attributes)."""
    settings = {k: v for k, v in study.user_attrs.get("recipe", {}).items() if k != "version"}
    recipe = recipe_from_dict(settings, where=f"study {study.study_name}")
    return replace(recipe, trials=study.user_attrs.get("trials", recipe.trials))


def report(study_name: str, storage: str, budget: Budget | None = None) -> SearchResult:
    """Read a study back: its trials, the best compound candidate, and the fit of phi to `budget` (the fitted
    spec is written as best.json beside the study's database)."""
    study = load_study(study_name, storage)
    recipe = stored_recipe(study)
    trials = records(study)
    best, confidence = judge(trials)
    if confidence is not None:
        confidence["ranks"] = rank_check(trials)
    fit, spec_path = None, None
    if best is not None and budget is not None:
        fit = fit_phi(recipe.baseline, budget, best.alpha, best.beta, best.gamma, rule=recipe.rule(best.stage_scaling))
        spec_path = str(storage_folder(storage) / "best.json")
        save_spec(replace(fit.spec, name=f"{resolve_spec(recipe.baseline).name}@phi={fit.phi:g}"), spec_path)
    return SearchResult(study_name, storage, recipe, best, fit, trials, spec_path, confidence)


def _scores(trials: tuple[TrialRecord, ...], trained: bool = False) -> dict[tuple, list[float]]:
    """Top-1 of each candidate at phi = 1 over its seeds (the first training and any repeats); with `trained`,
    only trainings of their own (not the shared score of a candidate that rounds to an already trained network,
    which would count one measurement twice)."""
    scores: dict[tuple, list[float]] = {}
    for t in trials:
        if t.top1 is not None and t.phi == 1.0 and t.epochs == 0 and not (trained and t.same_network_as is not None):
            scores.setdefault((t.kind, t.alpha, t.beta, t.gamma, t.stage_scaling), []).append(t.top1)
    return scores


def judge(trials: tuple[TrialRecord, ...]) -> tuple[TrialRecord | None, dict | None]:
    """The best compound candidate by mean top-1 over its seeds (its first trial), and how sure that is: the
    seed noise, and the winner against the runner-up and the best single-dimension reference."""
    scores = _scores(trials)
    compounds = sorted((k for k in scores if k[0] == "compound"), key=lambda k: -statistics.fmean(scores[k]))
    if not compounds:
        return None, None
    winner = compounds[0]
    best = next(t for t in trials if (t.kind, t.alpha, t.beta, t.gamma, t.stage_scaling) == winner and t.phi == 1.0
                and t.repeat == 0 and t.top1 is not None)
    noise = seed_noise(_scores(trials, trained=True))
    if noise is None:
        return best, {"noise": None, "test": TEST, "message": "seed noise not measured (--repeats 0): the winner "
                      "may be a coin toss"}
    references = sorted((k for k in scores if k[0] in ("depth", "width", "resolution")),
                        key=lambda k: -statistics.fmean(scores[k]))
    rivals = {"runner_up": compounds[1] if len(compounds) > 1 else None,
              "best_reference": references[0] if references else None}
    result = {"noise": {"std": noise.std, "dof": noise.dof}, "test": TEST}
    for name, rival in rivals.items():
        if rival is not None:
            c = compare(scores[winner], scores[rival], noise)
            result[name] = {"kind": rival[0], "alpha": rival[1], "beta": rival[2], "gamma": rival[3],
                            "stage_scaling": rival[4], "difference": c.difference, "t": c.t, "critical": c.critical,
                            "significant": c.significant}
    tied = [k for k in compounds[1:] if not compare(scores[winner], scores[k], noise).significant]
    several_rules = len({k[4] for k in compounds}) > 1  # then every point names its stage rule

    def point(k: tuple) -> str:
        return f"({k[1]:g}, {k[2]:g}, {k[4]})" if several_rules else f"({k[1]:g}, {k[2]:g})"

    if tied:
        points = ", ".join(point(k) for k in [winner, *tied])
        names = "alpha, beta, stage rule" if several_rules else "alpha, beta"
        result["message"] = f"{names} in {{{points}}} are indistinguishable on this proxy"
    else:
        rule = f" ({winner[4]} stage scaling)" if several_rules else ""
        result["message"] = (f"alpha={winner[1]:g}, beta={winner[2]:g}{rule} beats every other compound candidate by "
                             f"more than the seed noise")
    if "best_reference" in result:
        beaten = result["best_reference"]["significant"]
        result["message"] += (f"; it {'beats' if beaten else 'does not beat'} the best single-dimension reference "
                              f"({result['best_reference']['kind']}-only) by more than the noise")
    return best, result


def repeat_candidates(trials: tuple[TrialRecord, ...], repeats: int, top: int = 3) -> tuple[Candidate, ...]:
    """The baseline, the `top` best compound candidates and the best single-dimension reference, each to be
    trained `repeats` more times with other seeds: the seed noise, where it matters for the answer."""
    scores = _scores(tuple(t for t in trials if t.repeat == 0))
    ranked = sorted(scores, key=lambda k: -statistics.fmean(scores[k]))
    chosen = [k for k in ranked if k[0] == "baseline"] + [k for k in ranked if k[0] == "compound"][:top] + \
        [k for k in ranked if k[0] in ("depth", "width", "resolution")][:1]
    return tuple(Candidate(alpha, beta, gamma, kind, 1.0, r, stage_scaling=rule)
                 for kind, alpha, beta, gamma, rule in chosen for r in range(1, repeats + 1))


def rank_candidates(trials: tuple[TrialRecord, ...], epochs: int, top: int) -> tuple[Candidate, ...]:
    """The `top` best compound candidates again, trained for `epochs` (a longer proxy) with the first seed."""
    scores = _scores(tuple(t for t in trials if t.repeat == 0))
    ranked = sorted((k for k in scores if k[0] == "compound"), key=lambda k: -statistics.fmean(scores[k]))
    return tuple(Candidate(alpha, beta, gamma, kind, 1.0, 0, epochs, rule)
                 for kind, alpha, beta, gamma, rule in ranked[:top])


def rank_check(trials: tuple[TrialRecord, ...]) -> dict | None:
    """Kendall's tau between the short proxy's first scores and the longer proxy's for the same candidates; a
    warning when it is below 0.5 (the short proxy then ranks candidates unlike a longer training)."""
    long = {(t.alpha, t.beta, t.gamma, t.stage_scaling): t for t in trials if t.epochs > 0 and t.top1 is not None}
    short = {(t.alpha, t.beta, t.gamma, t.stage_scaling): t.top1 for t in trials
             if t.kind == "compound" and t.epochs == 0 and t.repeat == 0 and t.phi == 1.0 and t.top1 is not None}
    keys = [k for k in long if k in short]
    if len(keys) < 2:
        return None
    tau = kendall_tau([short[k] for k in keys], [long[k].top1 for k in keys])
    return {"epochs": next(iter(long.values())).epochs, "candidates": len(keys), "kendall_tau": tau,
            "warning": tau < 0.5}
