"""A baseline study read back: one record per trained candidate, the best by reward, and the recipe it was made
with. Reading imports no torch (`scaler studies` only reads)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from scaler.baselines import resolve_spec
from scaler.errors import ScalerError
from scaler.searches.baseline_recipe import BaselineRecipe, StageChoice, candidate_spec
from scaler.spec import Spec
from scaler.study.proxy import Proxy, with_settings
from scaler.study.storage import load_study, storage_failures
from scaler.study.trials import failure_text, hidden, top1_per_epoch


@dataclass(frozen=True)
class BaselineTrial:
    number: int
    state: str
    choices: tuple[StageChoice, ...]
    stages: str  # the chosen stages, labelled (StageChoice.label)
    macs: int | None
    params: int | None
    top1: float | None
    top1_per_epoch: tuple[float, ...]
    reward: float | None
    wall_seconds: float | None
    failure: str | None


@dataclass(frozen=True)
class BaselineResult:
    study_name: str
    storage: str
    recipe: BaselineRecipe
    trials: tuple[BaselineTrial, ...]  # every candidate trained or failing in training, in trial order
    rejected: int  # candidates outside the FLOPs band, never trained
    best: BaselineTrial | None  # the highest reward
    spec: Spec | None  # the best candidate at full size
    spec_path: str | None = None
    note: str | None = None  # why the search stopped short of its trials, if it did

    def top(self, count: int = 5) -> tuple[BaselineTrial, ...]:
        """The `count` best candidates by reward."""
        scored = sorted((t for t in self.trials if t.reward is not None), key=lambda t: -t.reward)
        return tuple(scored[:count])

    def to_dict(self) -> dict:
        return {"study_name": self.study_name, "storage": self.storage,
                "recipe": {k: v for k, v in asdict(self.recipe).items() if k != "proxy"} | self.recipe.settings(),
                "rejected": self.rejected, "best": None if self.best is None else asdict(self.best),
                "spec": None if self.spec is None else json.loads(json.dumps(asdict(self.spec))),
                "spec_path": self.spec_path, "note": self.note, "trials": [asdict(t) for t in self.trials]}


def _choices(attrs: dict) -> tuple[StageChoice, ...]:
    return tuple(StageChoice(**c) for c in attrs.get("choices", ()))


def record(trial: FrozenTrial) -> BaselineTrial:
    attrs = trial.user_attrs
    complete = trial.state == TrialState.COMPLETE
    return BaselineTrial(
        number=trial.number, state=trial.state.name, choices=_choices(attrs), stages=attrs.get("stages", ""),
        macs=attrs.get("macs"), params=attrs.get("params"), top1=attrs.get("top1") if complete else None,
        top1_per_epoch=top1_per_epoch(trial), reward=attrs.get("reward") if complete else None,
        wall_seconds=attrs.get("wall_seconds"), failure=failure_text(trial),
    )


def baseline_records(study: optuna.Study) -> tuple[BaselineTrial, ...]:
    """Every candidate trained, training or failed in training, in trial order (rejections and bookkeeping left
    out)."""
    return tuple(record(t) for t in study.get_trials(deepcopy=False) if not hidden(t) and "choices" in t.user_attrs)


def best_candidate(trials: tuple[BaselineTrial, ...]) -> BaselineTrial | None:
    """The highest reward (in a two-objective study too: the reward ranks the Pareto front's members)."""
    return max((t for t in trials if t.reward is not None), key=lambda t: t.reward, default=None)


def stored_baseline_recipe(study: optuna.Study) -> BaselineRecipe:
    settings = dict(study.user_attrs.get("recipe", {}))
    try:
        top = {k: settings.pop(k) for k in ("start", "target_mflops", "w", "pareto")}
    except KeyError:
        raise ScalerError(f"study {study.study_name!r} is not a baseline search") from None
    proxy = with_settings(Proxy(), settings)
    return BaselineRecipe(**top, trials=study.user_attrs.get("trials", 1), proxy=proxy)


def read_baseline_search(study_name: str, storage: str) -> BaselineResult:
    """Read a baseline study back (writes nothing): its candidates, how many were rejected, the best by reward."""
    with storage_failures():
        study = load_study(study_name, storage)
        recipe = stored_baseline_recipe(study)
        trials = baseline_records(study)
        rejected = sum(t.user_attrs.get("failure_kind") == "outside" for t in study.get_trials(deepcopy=False))
    best = best_candidate(trials)
    spec = None if best is None else candidate_spec(resolve_spec(recipe.start), best.choices, f"{study_name}-baseline")
    return BaselineResult(study_name, storage, recipe, trials, rejected, best, spec)
