"""A compound study read back: one record per trial, the study's result (winner, verdict, budget fit), and where
its fitted network's file goes. Reading imports no torch (`scaler studies`, `plot` and `report` only read), and
writes nothing but what `write_best` is asked to write."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields, replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from scaler.baselines import resolve_spec
from scaler.budget import Budget, Fit, fit_phi
from scaler.grid import Candidate
from scaler.searches.compound_recipe import Recipe, recipe_from_dict
from scaler.spec import save_spec
from scaler.study.storage import load_study, storage_failures, storage_folder
from scaler.study.trials import failure_text, hidden, top1_per_epoch
from scaler.study.verdict import Verdict, judge


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
    effective: tuple[float, float, float] | None = None  # alpha, beta, gamma of the network trained (equal cost)
    cost_ratio: float | None = None  # the network's cost against the proxy's in the study's currency (equal_cost)


@dataclass(frozen=True)
class SearchResult:
    study_name: str
    storage: str
    recipe: Recipe
    best: TrialRecord | None
    fit: Fit | None
    trials: tuple[TrialRecord, ...]
    spec_path: str | None = None
    verdict: Verdict | None = None
    latency_table: dict | None = None  # equal cost in latency: the table's device, pieces, build time and error

    def to_dict(self) -> dict:
        best = None if self.best is None else {"alpha": self.best.alpha, "beta": self.best.beta,
                                               "gamma": self.best.gamma, "stage_scaling": self.best.stage_scaling,
                                               "top1": self.best.top1}
        final = None
        if self.fit is not None:
            final = {"params": self.fit.params, "macs": self.fit.macs, "resolution": self.fit.spec.resolution,
                     "memory_bytes": self.fit.memory_bytes, "latency_ms": self.fit.latency_ms,
                     "binding": list(self.fit.binding), "spec": self.fit.to_dict()["spec"]}
        return {"study_name": self.study_name, "storage": self.storage, "recipe": self.recipe.to_dict(),
                "best": best, "phi": None if self.fit is None else self.fit.phi, "final": final,
                "spec_path": self.spec_path, "confidence": None if self.verdict is None else self.verdict.to_dict(),
                "latency_table": self.latency_table, "trials": [asdict(t) for t in self.trials]}


CANDIDATE_FIELDS = tuple((f.name, f.default) for f in fields(Candidate))


def candidate_key(attrs: dict) -> tuple | None:
    """A trial's candidate (its user attributes) as a tuple; None for a trial that holds none."""
    if "kind" not in attrs:
        return None
    return tuple(attrs[name] if default is MISSING else attrs.get(name, default) for name, default in CANDIDATE_FIELDS)


def record(trial: FrozenTrial) -> TrialRecord:
    attrs = trial.user_attrs
    return TrialRecord(
        number=trial.number, state=trial.state.name, kind=attrs.get("kind", "?"), alpha=attrs.get("alpha", 0.0),
        beta=attrs.get("beta", 0.0), gamma=attrs.get("gamma", 0.0), phi=attrs.get("phi", 1.0),
        repeat=attrs.get("repeat", 0), epochs=attrs.get("epochs", 0),
        top1=trial.value if trial.state == TrialState.COMPLETE else None, top1_per_epoch=top1_per_epoch(trial),
        resolution=attrs.get("resolution"), flops_ratio=attrs.get("flops_ratio"), params=attrs.get("params"),
        macs=attrs.get("macs"), activations=attrs.get("activations"), wall_seconds=attrs.get("wall_seconds"),
        failure=failure_text(trial), same_network_as=attrs.get("same_network_as"),
        stage_scaling=attrs.get("stage_scaling", "uniform"),
        effective=tuple(attrs["effective"]) if attrs.get("effective") else None, cost_ratio=attrs.get("cost_ratio"),
    )


def trial_candidate(t: TrialRecord) -> tuple:
    """A record's candidate, as `candidate_key` gives it from the trial's attributes."""
    return tuple(getattr(t, name) for name, _ in CANDIDATE_FIELDS)


def records(study: optuna.Study) -> tuple[TrialRecord, ...]:
    """Every trial that scores a candidate, in trial order (bookkeeping trials left out)."""
    return tuple(record(t) for t in study.get_trials(deepcopy=False)
                 if not hidden(t) and candidate_key(t.user_attrs))


def best_spec_path(study_name: str, storage: str, output: str | None = None) -> str:
    """Where a study's fitted network goes: `output`, or <study>-best.json beside the study (one file per study, so
    that one study never replaces another's)."""
    return output or str(storage_folder(storage) / f"{study_name}-best.json")


def write_best(result: SearchResult, output: str | None = None) -> SearchResult:
    """Write the fitted network's spec (when a budget was fitted) to `best_spec_path`."""
    if result.fit is None:
        return result
    path = best_spec_path(result.study_name, result.storage, output)
    save_spec(replace(result.fit.spec, name=f"{resolve_spec(result.recipe.baseline).name}@phi={result.fit.phi:g}"),
              path)
    return replace(result, spec_path=path)


def study_total(study: optuna.Study) -> int:
    """How many candidates the study scores: its recipe's, and those queued after it (repeats, validation)."""
    recipe = stored_recipe(study)
    extra = {candidate_key(c) for c in study.user_attrs.get("extra", [])} - \
        {candidate_key(asdict(c)) for c in recipe.candidates()}
    return recipe.total() + len(extra)  # the validation at phi = 1 repeats the references


def stored_recipe(study: optuna.Study) -> Recipe:
    """The recipe a study was made with (from its user attributes)."""
    settings = {k: v for k, v in study.user_attrs.get("recipe", {}).items() if k != "version"}
    settings.setdefault("reference_rules", [])  # a study made before published rules were references has none
    recipe = recipe_from_dict(settings, where=f"study {study.study_name}")
    return replace(recipe, trials=study.user_attrs.get("trials", recipe.trials))


def read_search(study_name: str, storage: str, budget: Budget | None = None) -> SearchResult:
    """Read a study back (writes nothing): its trials, the best compound candidate and its verdict, and the fit
    of phi to `budget`."""
    with storage_failures():
        study = load_study(study_name, storage)
        recipe = stored_recipe(study)
        trials = records(study)
        latency = latency_summary(study.user_attrs)
    best, verdict = judge(trials)
    fit = None
    if best is not None and budget is not None:
        fit = fit_phi(recipe.baseline, budget, best.alpha, best.beta, best.gamma, rule=recipe.rule(best.stage_scaling))
    return SearchResult(study_name, storage, recipe, best, fit, trials, None, verdict, latency)


def latency_summary(attrs: dict) -> dict | None:
    """A latency-equalised study's table in brief, from its user attributes (`latency_table`, `latency_error`):
    its device, how many pieces, the seconds spent timing them, and its error against whole-network timings
    (scaler.latency_table.TableError); None for other studies."""
    table = attrs.get("latency_table")
    if table is None:
        return None
    return {"device": table["device"], "pieces": len(table["entries"]), "seconds": table["seconds"],
            "error": attrs.get("latency_error")}
