"""Searching the baseline before scaling it: EfficientNet-B0 was itself found by a search (MnasNet's reward at a
400M-FLOPs target) and only then scaled; this is that first step, on the user's own data and budget.

Around a starting baseline (EfficientNet-B0 by default), Optuna's TPE chooses for each stage the block kind
(MBConv or Fused-MBConv), kernel (3, 5), expansion (1, 4, 6), squeeze-excitation (on or off: MBConv only, since
Fused-MBConv has none, as in EfficientNetV2), repeats (one fewer to one more) and width (0.75, 1 or 1.25 times);
stem, head, strides and resolution stay the start's. A candidate whose full-size FLOPs, by the analytic estimator,
lie outside [0.5 T, 1.5 T] is rejected before any training. The others are shrunk and trained as `scaler search`
scores its candidates (the same proxy recipe) and rewarded ACC x (FLOPs / T)^w, MnasNet's soft constraint
(w = -0.07); with `pareto`, the study has two objectives instead (top-1 up, FLOPs down).

Resume and storage are as for the compound search: the study lives in any Optuna storage; running the same command
again trains only what is missing up to `trials` trained candidates; a candidate cut off by Ctrl-C or a lost worker
is queued and trained once more; a candidate that runs out of memory or diverges stays failed, with its reason.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Hashable
from dataclasses import asdict, replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from scaler.data import load_data, parse_data
from scaler.device import resolve_device, thread_share, use_threads
from scaler.errors import check_output_file
from scaler.estimator import estimate
from scaler.searches.baseline_recipe import (BAND, BLOCKS, EXPANSIONS, KERNELS, REJECTIONS_PER_TRIAL, WIDTHS,
                                             BaselineRecipe, StageChoice, candidate_spec, check_target, reward)
from scaler.searches.baseline_records import BaselineResult, BaselineTrial, read_baseline_search, record
from scaler.spec import Spec, save_spec
from scaler.study import engine
from scaler.study.storage import default_storage, storage_failures, storage_folder
from scaler.study.trials import FINAL_FAILURES, TrialFailure, finished, hidden, record_epoch

def _suggest(trial: optuna.Trial, start: Spec) -> tuple[StageChoice, ...]:
    choices = []
    for i, stage in enumerate(start.stages):
        choices.append(StageChoice(
            block=trial.suggest_categorical(f"stage{i + 1}_block", BLOCKS),
            kernel=trial.suggest_categorical(f"stage{i + 1}_kernel", KERNELS),
            expansion=trial.suggest_categorical(f"stage{i + 1}_expansion", EXPANSIONS),
            se=trial.suggest_categorical(f"stage{i + 1}_se", (False, True)),
            repeats=trial.suggest_int(f"stage{i + 1}_repeats", max(1, stage.repeats - 1), stage.repeats + 1),
            width=trial.suggest_categorical(f"stage{i + 1}_width", WIDTHS),
        ))
    return tuple(choices)


def open_baseline_study(recipe: BaselineRecipe, study_name: str, storage: str) -> optuna.Study:
    """Open or create the study (one objective, the reward; or two with `pareto`) and check its settings."""
    directions = ("maximize", "minimize") if recipe.pareto else ("maximize",)
    study = engine.open_study(study_name, storage, recipe.settings(), directions=directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # multivariate: a stage's choices act together (a wide stage wants a smaller expansion, say). The seed
        # moves on with the study, or a resumed run would draw the first run's random start-up proposals again.
        study.sampler = optuna.samplers.TPESampler(seed=recipe.proxy.seed + len(study.get_trials(deepcopy=False)),
                                                   multivariate=True)
    study.set_user_attr("kind", "baseline")
    if study.user_attrs.get("trials", 0) < recipe.trials:
        study.set_user_attr("trials", recipe.trials)
    return study


TrialEnded = Callable[[BaselineTrial, int, int], None]  # (the candidate trained, candidates trained, wanted)


class BaselineSearch(engine.Search):
    """The baseline search's candidates (TPE's proposals around the start) and objective, for the engine."""

    def __init__(self, study: optuna.Study, recipe: BaselineRecipe, start: Spec, device,
                 on_trial: TrialEnded | None = None, on_progress: Callable | None = None):
        self.study, self.recipe, self.start, self.device, self.on_trial = study, recipe, start, device, on_trial
        self.on_progress = on_progress
        self.data = None
        self.rejected_here = 0
        self.note: str | None = None  # why the search stopped short of its trials, if it did

    def key_of(self, params: dict, attrs: dict) -> Hashable | None:
        return json.dumps(params, sort_keys=True) if params else None

    def requeued(self, trial: FrozenTrial) -> tuple[dict, dict]:
        return trial.params, {"requeued_from": trial.number}

    def wanted_count(self) -> int:
        return self.study.user_attrs.get("trials", self.recipe.trials)

    def counts(self, before: int | None = None) -> tuple[int, int, int]:
        """(trained, running, queued) candidates, among trials numbered below `before` if given."""
        trained = running = waiting = 0
        for t in self.study.get_trials(deepcopy=False):
            if (before is not None and t.number >= before) or hidden(t):
                continue
            trained += finished(t, FINAL_FAILURES)
            running += t.state == TrialState.RUNNING
            waiting += t.state == TrialState.WAITING
        return trained, running, waiting

    def has_work(self) -> bool:
        trained, running, waiting = self.counts()
        if not waiting and trained + running >= self.wanted_count():
            return False  # done here; candidates running on other machines are theirs to finish
        if self.rejected_here >= REJECTIONS_PER_TRIAL * self.wanted_count():
            self.note = (f"stopped after {self.rejected_here} proposals outside the FLOPs band with {trained} of "
                         f"{self.wanted_count()} candidates trained: widen the space (--start) or move the target")
            return False
        return True

    def ended(self, trial: FrozenTrial) -> None:
        if trial.user_attrs.get("failure_kind") == "outside":
            self.rejected_here += 1
        elif self.on_trial is not None and not hidden(trial):
            self.on_trial(record(trial), self.counts()[0], self.wanted_count())

    def score(self, trial: optuna.Trial):
        if sum(self.counts(before=trial.number)) >= self.wanted_count():
            trial.set_user_attr("failure_kind", "surplus")
            raise TrialFailure("surplus: enough candidates are trained or running")
        choices = _suggest(trial, self.start)
        other = engine.duplicate_of(self, trial)
        if other is not None:  # TPE proposed a candidate again: its score, untrained (surplus while it trains)
            trial.set_user_attr("failure_kind", "copy")  # not a candidate of its own: counts towards no trials
            return engine.take_duplicate(trial, other, reuse=True)
        spec = candidate_spec(self.start, choices)
        cost = estimate(spec)
        trial.set_user_attr("choices", [asdict(c) for c in choices])
        trial.set_user_attr("stages", " ".join(c.label(s.channels) for c, s in zip(choices, spec.stages)))
        trial.set_user_attr("macs", cost.macs)
        trial.set_user_attr("params", cost.params)
        low, high = (self.recipe.target_macs * bound for bound in BAND)
        if not low <= cost.macs <= high:
            trial.set_user_attr("failure_kind", "outside")
            raise optuna.TrialPruned(f"{cost.macs / 1e6:,.0f} MFLOPs outside [{low / 1e6:,.0f}, {high / 1e6:,.0f}]")
        if self.data is None:  # only once a candidate is to be trained: rejections need no data
            p = self.recipe.proxy
            self.data = load_data(p.data, p.train_size, p.val_size, p.seed, self.device)
        top1 = self._train(trial, spec)
        value = reward(top1, cost.macs, self.recipe.target_macs, self.recipe.w)
        trial.set_user_attr("reward", value)
        return (top1, cost.macs / 1e6) if self.recipe.pareto else value

    def _train(self, trial: optuna.Trial, spec: Spec) -> float:
        per_epoch = []
        p = self.recipe.proxy
        result = engine.train_for_trial(trial, p.shrink(spec), self.data, epochs=p.epochs, batch_size=p.batch_size,
                                        device=self.device, seed=p.seed, progressive=p.progressive,
                                        on_epoch=lambda _, top1: record_epoch(trial, per_epoch, top1),
                                        on_progress=self.on_progress)
        trial.set_user_attr("top1", result.top1)
        trial.set_user_attr("wall_seconds", result.wall_seconds)
        return result.top1


def baseline_search(
    recipe: BaselineRecipe,
    study_name: str = "baseline",
    storage: str | None = None,
    device: str = "auto",
    output: str | None = None,
    on_trial: TrialEnded | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Callable | None = None,
    threads: int | None = None,
) -> BaselineResult:
    """Train candidates until `recipe.trials` are trained (counting those of earlier runs), then write the best
    baseline's spec to `output` (default: <study_name>-baseline.json beside the study's database).

    A target the space cannot reach is refused before any training. TPE proposals outside the FLOPs band cost
    an estimate each; after REJECTIONS_PER_TRIAL of them per wanted candidate the search stops and says so.
    `on_progress` gets each training's progress; `threads`: the CPU threads to train with (default: all cores).
    """
    device = resolve_device(device)
    use_threads(thread_share(threads))
    start = check_target(recipe)
    parse_data(recipe.proxy.data)
    if output is not None:
        check_output_file(output, (".json", ".toml"))  # before any training, not after it
    storage = storage or default_storage(study_name)
    path = output or str(storage_folder(storage) / f"{study_name}-baseline.json")
    with storage_failures():
        study = open_baseline_study(recipe, study_name, storage)
        here = BaselineSearch(study, recipe, start, device, on_trial, on_progress)
        engine.settle(here, retry_errors=True)
        if on_start is not None:
            on_start(here.counts()[0], here.wanted_count())
        engine.work(here)
    result = replace(read_baseline_search(study_name, storage), note=here.note)
    if result.spec is not None:
        save_spec(result.spec, path)
        result = replace(result, spec_path=path)
    return result
