"""The crash-safe worker loop both searches run: every candidate scored exactly once, whatever happens to the
workers.

- A search (a subclass of `Search`) says what its candidates are (`key_of`), which must be queued (`wanted`), how
  a lost one is queued again (`requeued`), whether there is work left (`has_work`) and how one is scored (`score`).
- Candidates are queued as WAITING trials; Optuna hands each queued trial to exactly one worker.
- Before scoring, a trial checks its candidate against the study (`duplicate_of`): if another trial of it is
  finished, or running under an earlier number, this one is surplus (never trained, in no table), or takes the
  finished score when the search says so (a repeated TPE proposal).
- `settle` fails the trials whose worker is gone (a dead process on this machine at once; on another machine by
  the storage's heartbeat) and queues every wanted or lost candidate that is neither finished nor pending. A trial
  cut off by Ctrl-C is recorded as interrupted and trained again; one that failed for a reason of its own (out of
  memory, non-finite loss) stays failed.
- The settings and their fingerprint are stored in a new study; a worker with other settings is refused.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from scaler.errors import NonFiniteLoss, OutOfMemory, ScalerError, TrainingError, WorkerFailed
from scaler.grid import Candidate, fingerprint
from scaler.spec import Spec
from scaler.study.interrupts import interruptible, safe_interrupts, take_interrupt
from scaler.study.storage import open_storage, ride_out
from scaler.study.trials import FINAL_FAILURES, SETTLED_FAILURES, TrialFailure, finished, hidden, pending
from scaler.training import TrainResult, train


class Search(ABC):
    """What a search defines for the engine: its candidates and its objective. Subclasses set `study` and `device`
    and define the abstract methods."""

    study: optuna.Study
    device: torch.device

    @abstractmethod
    def key_of(self, params: dict, attrs: dict) -> Hashable | None:
        """The candidate a trial (its parameters and user attributes) scores; None for a trial of none."""

    def key(self, trial: FrozenTrial | optuna.Trial) -> Hashable | None:
        params = trial.params
        if not params and isinstance(trial, FrozenTrial):  # a queued trial holds its parameters here until it runs
            params = trial.system_attrs.get("fixed_params", {})
        return self.key_of(params, trial.user_attrs)

    def wanted(self) -> Iterable[tuple[dict, dict]]:
        """(params, user attributes) of every candidate that must be queued; none for a sampler-driven search."""
        return ()

    @abstractmethod
    def requeued(self, trial: FrozenTrial) -> tuple[dict, dict]:
        """(params, user attributes) that queue a failed trial's candidate again."""

    @abstractmethod
    def has_work(self) -> bool:
        """Whether this worker should take another trial (it may queue work to say yes)."""

    def load_data(self) -> None:
        """Load what scoring needs, once, before the first trial (so a data error is not a trial's)."""

    @abstractmethod
    def score(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        """Score the trial's candidate: its objective value(s)."""

    def ended(self, trial: FrozenTrial) -> None:
        """A trial ended (in this process, or in a worker process): report progress."""

    def objective(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        return run_owned(trial, self.device, self.score)


def open_study(study_name: str, storage: str, settings: dict, candidates: tuple[Candidate, ...] = (),
               directions: tuple[str, ...] = ("maximize",), sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Open or create the study, and check (or, when new, store) its settings and the fingerprint of the settings
    and the queued `candidates`."""
    study = optuna.create_study(study_name=study_name, storage=open_storage(storage, create=True),
                                directions=list(directions), load_if_exists=True, sampler=sampler, pruner=pruner)
    stored = json.loads(json.dumps(settings))  # as a study stores them: tuples become lists
    check_settings(study, stored, fingerprint(candidates, **stored))
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


def _dead_local_owner(trial: FrozenTrial) -> bool:
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


def fail_lost_trials(study: optuna.Study) -> None:
    """Record as failed the running trials whose worker is gone: a dead process on this machine at once, a
    silent one on another machine by the storage's heartbeat."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # other machines' dead workers (relational storages)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _dead_local_owner(trial):
            study.tell(trial.number, state=TrialState.FAIL)


def held_keys(search: Search, failures: tuple[str, ...] = SETTLED_FAILURES, with_pending: bool = True) -> set:
    """The candidates that are finished and, `with_pending`, those queued or running."""
    return {key for t in search.study.get_trials(deepcopy=False)
            if not hidden(t) and (key := search.key(t)) is not None
            and (finished(t, failures) or (with_pending and pending(t)))}


def settle(search: Search, retry_errors: bool = False) -> int:
    """Fail the trials whose worker is gone, then queue every wanted candidate, and every lost one, that is neither
    finished nor pending. `retry_errors` also queues candidates whose training raised an unexpected error (once
    per command). Returns how many candidates were queued."""
    fail_lost_trials(search.study)
    held = held_keys(search, FINAL_FAILURES if retry_errors else SETTLED_FAILURES)
    queue: dict = {}
    for params, attrs in search.wanted():
        queue.setdefault(search.key_of(params, attrs), (params, attrs))
    for trial in search.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        key = search.key(trial)
        if key is not None and not hidden(trial):
            queue.setdefault(key, search.requeued(trial))
    queued = 0
    for key, (params, attrs) in queue.items():
        if key not in held:
            search.study.enqueue_trial(params, user_attrs=attrs)
            held.add(key)
            queued += 1
    return queued


def duplicate_of(search: Search, trial: optuna.Trial) -> FrozenTrial | None:
    """Another trial of the same candidate that is finished, or running under an earlier number."""
    key = search.key(trial)
    for other in search.study.get_trials(deepcopy=False):
        if other.number == trial.number or hidden(other) or search.key(other) != key:
            continue
        if (other.state == TrialState.RUNNING and other.number < trial.number) or finished(other, FINAL_FAILURES):
            return other
    return None


def take_duplicate(trial: optuna.Trial, other: FrozenTrial, reuse: bool) -> float | tuple[float, ...]:
    """A trial whose candidate `other` holds: with `reuse` (a repeated proposal), the finished score, untrained;
    otherwise (or while `other` still trains) surplus."""
    if reuse and other.state == TrialState.COMPLETE:
        trial.set_user_attr("copy_of", other.number)  # in no table: its candidate is `other`'s
        return tuple(other.values) if len(other.values) > 1 else other.value
    trial.set_user_attr("failure_kind", "surplus")
    raise TrialFailure(f"surplus: trial {other.number} has this candidate")


def run_owned(trial: optuna.Trial, device: torch.device, score: Callable[[optuna.Trial], float | tuple]):
    """`score(trial)` as this process's work: the trial first names its worker (so that its loss is noticed, see
    `fail_lost_trials`), and a Ctrl-C anywhere in it, or one that came while the trial was taken, is recorded as
    an interruption (trained again)."""
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid(), "device": str(device),
                                   "threads": torch.get_num_threads()})
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


def work(search: Search) -> None:
    """One worker: score the search's candidates until it has no work left (others may still be running). A
    storage that stops answering is waited for (`ride_out`); a Ctrl-C is taken at a safe point."""
    outage = None
    with safe_interrupts():
        while True:
            take_interrupt()
            try:
                if not search.has_work():
                    break
                with interruptible():
                    search.load_data()
                search.study.optimize(search.objective, n_trials=1, catch=(TrialFailure,),
                                      callbacks=[lambda _, trial: search.ended(trial)])
                outage = None
            except Exception as error:  # noqa: BLE001 -- ride_out re-raises all but a storage failure
                # The database went away (a restart, a network cut): wait for it. The trial it cut off stays
                # RUNNING, and is trained again once its heartbeat is stale or this process has ended.
                outage = ride_out(error, outage)


def run_worker_processes(search: Search, target: Callable, arguments: list[tuple],
                         poll_seconds: float = 1.0) -> None:
    """Run `target(*arguments[i])` in one process each (each a worker on the same study) and report every trial
    that ends through `search.ended`; a worker that fails is a WorkerFailed once all have ended."""
    context = multiprocessing.get_context("spawn")  # fork would copy torch's threads and CUDA state
    processes = [context.Process(target=target, name=f"scaler-worker-{i}", args=args)
                 for i, args in enumerate(arguments)]
    for p in processes:
        p.start()
    seen = {t.number for t in search.study.get_trials(deepcopy=False) if t.state.is_finished()}
    try:
        while True:
            alive = any(p.is_alive() for p in processes)
            for t in search.study.get_trials(deepcopy=False):
                if t.state.is_finished() and t.number not in seen:
                    seen.add(t.number)
                    search.ended(t)
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
