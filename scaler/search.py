"""The compound-coefficient search: an Optuna study with one trial per candidate (alpha, beta, gamma), each scored
by a short proxy training, then the largest phi whose full-size network fits the budget.

Every candidate is put in the study's queue as a WAITING trial with fixed parameters, and a worker only ever
takes queued trials (Optuna hands each one to exactly one worker), never the sampler's: this avoids the
GridSampler's known faults (points trained twice, or never after an interruption). Running the same command
again resumes: completed candidates are kept, candidates whose trial was interrupted (Ctrl-C) or whose worker
died (kill -9: its process is gone) are queued again, and candidates that failed for a reason of their own
(out of memory, non-finite loss) stay recorded as failed. The grid and the proxy settings are fingerprinted
in the study, so a worker with different settings is refused.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from scaler.baselines import resolve_spec
from scaler.budget import Budget, Fit, fit_phi
from scaler.data import load_data
from scaler.errors import ScalerError, check_int, check_number
from scaler.estimate import estimate
from scaler.grid import KINDS, Candidate, compound_grid, fingerprint, references
from scaler.scaling import compound, scale
from scaler.spec import Spec, save_spec
from scaler.train import NonFiniteLoss, OutOfMemory, TrainingError, resolve_device, train

VERSION = "1"  # bump when a change would make old trials incomparable


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a study's scores: the proxy network, the data, the training, the grid."""

    baseline: str = "efficientnet-b0"
    data: str = "synthetic"
    epochs: int = 4
    proxy_resolution: int = 64
    proxy_width: float = 0.5
    proxy_depth: float = 0.5
    batch_size: int = 64
    train_size: int = 5000
    val_size: int = 1000
    seed: int = 0
    alpha_range: tuple[float, float] = (1.0, 1.4)
    beta_range: tuple[float, float] = (1.0, 1.4)
    step: float = 0.05

    def __post_init__(self) -> None:
        for name in ("epochs", "proxy_resolution", "batch_size", "train_size", "val_size"):
            check_int(name.replace("_", " "), getattr(self, name))
        check_int("seed", self.seed, 0)
        for name in ("proxy_width", "proxy_depth"):
            check_number(name.replace("_", " "), getattr(self, name), 0, above_low=True)

    def candidates(self) -> tuple[Candidate, ...]:
        """The references first (baseline, depth-, width-, resolution-only), then the grid, in a fixed order."""
        return references() + compound_grid(self.alpha_range, self.beta_range, self.step)

    def proxy(self) -> Spec:
        """The baseline shrunk for scoring: the network each candidate's phi = 1 scaling starts from."""
        return scale(resolve_spec(self.baseline), width=self.proxy_width, depth=self.proxy_depth,
                     resolution=self.proxy_resolution)


# Sized so that the whole `scaler search --quick` (4 references + 6 candidates) finishes in about a minute and a
# half on a 2-core CPU: it checks the machinery end to end; its scores are too noisy to rank candidates.
QUICK = Recipe(epochs=3, proxy_resolution=32, proxy_width=0.5, proxy_depth=0.34, batch_size=32, train_size=1024,
               val_size=256, alpha_range=(1.1, 1.3), beta_range=(1.05, 1.15), step=0.1)


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str
    kind: str
    alpha: float
    beta: float
    gamma: float
    top1: float | None
    flops_ratio: float | None
    params: int | None
    macs: int | None
    failure: str | None


@dataclass(frozen=True)
class SearchResult:
    study_name: str
    storage: str
    best: TrialRecord | None
    fit: Fit | None
    trials: tuple[TrialRecord, ...]
    spec_path: str | None = None

    def to_dict(self) -> dict:
        best = None if self.best is None else {"alpha": self.best.alpha, "beta": self.best.beta,
                                               "gamma": self.best.gamma, "top1": self.best.top1}
        final = None
        if self.fit is not None:
            final = {"params": self.fit.params, "macs": self.fit.macs, "resolution": self.fit.spec.resolution,
                     "memory_bytes": self.fit.memory_bytes, "latency_ms": self.fit.latency_ms,
                     "binding": list(self.fit.binding), "spec": self.fit.to_dict()["spec"]}
        return {"study_name": self.study_name, "storage": self.storage, "best": best,
                "phi": None if self.fit is None else self.fit.phi, "final": final, "spec_path": self.spec_path,
                "trials": [asdict(t) for t in self.trials]}


def default_storage(study_name: str) -> str:
    """sqlite:///studies/<study-name>.db under the current directory (the folder is made if missing)."""
    Path("studies").mkdir(exist_ok=True)
    return f"sqlite:///studies/{study_name}.db"


def _storage(url: str) -> optuna.storages.BaseStorage:
    """Any Optuna storage URL; a journal file for many local workers; one clear error when it cannot open."""
    try:
        if url.startswith(("sqlite:", "postgresql", "mysql")):
            return optuna.storages.RDBStorage(url)
        if url.endswith((".log", ".journal")):
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    except Exception as error:  # SQLAlchemy and drivers raise many kinds; the user needs one line
        raise ScalerError(f"storage: cannot open {url}: {str(error).splitlines()[0]}") from None
    raise ScalerError(f"storage: {url!r} is not a storage URL (sqlite:///FILE.db, postgresql://..., or a "
                      f"journal file ending in .log)")


def _record(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    attrs, params = trial.user_attrs, trial.params
    return TrialRecord(
        number=trial.number, state=trial.state.name, kind=params.get("kind", "?"), alpha=params.get("alpha", 0.0),
        beta=params.get("beta", 0.0), gamma=params.get("gamma", 0.0),
        top1=trial.value if trial.state == TrialState.COMPLETE else None,
        flops_ratio=attrs.get("flops_ratio"), params=attrs.get("params"), macs=attrs.get("macs"),
        failure=attrs.get("failure"),
    )


def _key(params: dict) -> tuple:
    return (params.get("kind"), params.get("alpha"), params.get("beta"), params.get("gamma"))


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


def prepare_study(recipe: Recipe, study_name: str, storage: str) -> optuna.Study:
    """Open or create the study, check its fingerprint, and queue every candidate that still needs training."""
    candidates = recipe.candidates()
    settings = asdict(recipe) | {"version": VERSION}
    mark = fingerprint(candidates, **settings)
    study = optuna.create_study(study_name=study_name, storage=_storage(storage), direction="maximize",
                                load_if_exists=True)
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", mark)
        study.set_user_attr("recipe", settings)
    elif stored != mark:
        raise ScalerError(f"study {study_name!r} was made with other settings (grid, proxy, seed or version "
                          f"{study.user_attrs.get('recipe', {}).get('version', '?')}); use the same settings, "
                          f"or another --study-name")
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _dead_local_owner(trial):  # failed without a failure kind, so it is queued again below
            study.tell(trial.number, state=TrialState.FAIL)
    settled = {}
    for trial in study.get_trials(deepcopy=False):
        key = _key(trial.params or trial.system_attrs.get("fixed_params", {}))
        if trial.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.PRUNED):
            settled[key] = True
        elif trial.state == TrialState.FAIL and trial.user_attrs.get("failure_kind") in ("oom", "nonfinite"):
            settled[key] = True
    for c in candidates:
        params = {"kind": c.kind, "alpha": c.alpha, "beta": c.beta, "gamma": c.gamma}
        if not settled.get(_key(params)):
            study.enqueue_trial(params)
    return study


def search(
    recipe: Recipe = Recipe(),
    budget: Budget | None = None,
    study_name: str = "default",
    storage: str | None = None,
    device: str = "auto",
    on_trial: Callable[[TrialRecord, int, int], None] | None = None,
) -> SearchResult:
    """Train every queued candidate of the study, then fit phi to `budget` with the best compound candidate.

    `on_trial(record, done, total)` is called after each trial (progress). A finished study is reported, not
    retrained.
    """
    device = resolve_device(device)
    storage = storage or default_storage(study_name)
    study = prepare_study(recipe, study_name, storage)
    proxy = recipe.proxy()
    base_macs = estimate(proxy).macs
    total = len(recipe.candidates())
    data = None
    while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if data is None:
            data = load_data(recipe.data, recipe.train_size, recipe.val_size, recipe.seed, device)
        trial = study.ask()
        if "fixed_params" not in study.get_trials(deepcopy=False)[trial.number].system_attrs:
            # Another worker took the last queued candidate first: this trial is not one of ours.
            study.tell(trial, state=TrialState.FAIL)
            break
        _run_trial(study, trial, recipe, proxy, base_macs, data, device)
        if on_trial is not None:
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
            on_trial(_record(trials[trial.number]), done, total)
    return report(study_name, storage, budget, recipe)


def _run_trial(study, trial, recipe: Recipe, proxy: Spec, base_macs: int, data, device) -> None:
    kind = trial.suggest_categorical("kind", KINDS)
    alpha = trial.suggest_float("alpha", 1.0, 4.0)
    beta = trial.suggest_float("beta", 1.0, 4.0)
    gamma = trial.suggest_float("gamma", 1.0, 4.0)
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
    candidate = Candidate(alpha, beta, gamma, kind)
    network = proxy if kind == "baseline" else compound(proxy, alpha, beta, gamma, 1.0)
    cost = estimate(network)
    trial.set_user_attr("flops_ratio", cost.macs / base_macs if kind != "baseline" else 1.0)
    trial.set_user_attr("params", cost.params)
    trial.set_user_attr("macs", cost.macs)
    trial.set_user_attr("activations", cost.activations)
    trial.set_user_attr("nominal_flops_ratio", candidate.nominal_flops_ratio)

    def report_epoch(epoch: int, top1: float) -> None:
        trial.report(top1, epoch)

    try:
        result = train(network, data, epochs=recipe.epochs, batch_size=recipe.batch_size, device=device,
                       seed=recipe.seed, on_epoch=report_epoch)
    except TrainingError as error:
        kind_of = "oom" if isinstance(error, OutOfMemory) else "nonfinite" if isinstance(error, NonFiniteLoss) \
            else "error"
        trial.set_user_attr("failure", error.reason)
        trial.set_user_attr("failure_kind", kind_of)
        study.tell(trial, state=TrialState.FAIL)
        return
    except BaseException:
        trial.set_user_attr("failure", "interrupted")
        study.tell(trial, state=TrialState.FAIL)
        raise
    trial.set_user_attr("top1_per_epoch", list(result.top1_per_epoch))
    trial.set_user_attr("images_per_second", result.images_per_second)
    trial.set_user_attr("wall_seconds", result.wall_seconds)
    study.tell(trial, result.top1)


def report(study_name: str, storage: str, budget: Budget | None, recipe: Recipe) -> SearchResult:
    """Read a study back: its trials, the best compound candidate, and the fit of phi to `budget`."""
    study = optuna.load_study(study_name=study_name, storage=_storage(storage))
    trials = tuple(_record(t) for t in study.get_trials(deepcopy=False))
    compound_trials = [t for t in trials if t.kind == "compound" and t.top1 is not None]
    best = max(compound_trials, key=lambda t: t.top1, default=None)
    fit, spec_path = None, None
    if best is not None and budget is not None:
        fit = fit_phi(recipe.baseline, budget, best.alpha, best.beta, best.gamma)
        folder = Path(storage.removeprefix("sqlite:///")).parent if storage.startswith("sqlite:///") else Path(".")
        spec_path = str(folder / "best.json")
        save_spec(replace(fit.spec, name=f"{resolve_spec(recipe.baseline).name}@phi={fit.phi:g}"), spec_path)
    return SearchResult(study_name, storage, best, fit, trials, spec_path)
