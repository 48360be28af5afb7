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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import optuna
import torch
from optuna.trial import TrialState

from scaler.baselines import resolve_spec
from scaler.data import load_data, parse_data
from scaler.errors import ScalerError, check_int, check_number, check_output_file
from scaler.estimate import estimate
from scaler.grid import fingerprint
from scaler.scaling import round_channels
from scaler.search import (PROXY_FIELDS, QUICK, Recipe, TrialFailure, check_settings, fail_lost_trials,
                           run_owned, safe_interrupts, take_interrupt, train_for_trial)
from scaler.spec import Spec, Stage, save_spec
from scaler.storage import default_storage, load_study, open_storage, ride_out, storage_folder
from scaler.train import resolve_device

VERSION = "2"  # bump when a change would make old trials incomparable (2: residual branches start at zero)
BLOCKS = ("mbconv", "fused_mbconv")
KERNELS = (3, 5)
EXPANSIONS = (1, 4, 6)
WIDTHS = (0.75, 1.0, 1.25)
SE_RATIO = 0.25
BAND = (0.5, 1.5)  # a candidate's FLOPs must lie within these multiples of the target, or it is not trained
MNAS_W = -0.07
REJECTIONS_PER_TRIAL = 50  # TPE proposals outside the band tolerated per trained candidate before stopping
FINAL_FAILURES = ("oom", "nonfinite")  # the candidate's own: never trained again
HIDDEN = ("surplus", "outside", "copy")  # bookkeeping, rejected and repeated candidates: not in any table


@dataclass(frozen=True)
class StageChoice:
    """What the search chose for one stage: the block, its kernel, expansion, squeeze-excitation, repeats, and
    the width as a multiple of the start's channels."""

    block: str
    kernel: int
    expansion: int
    se: bool
    repeats: int
    width: float

    @property
    def squeeze_excitation(self) -> bool:
        """Whether the stage has squeeze-excitation: chosen, and an MBConv stage (Fused-MBConv has none)."""
        return self.se and self.block == "mbconv"

    def label(self, channels: int) -> str:
        """A compact name, as in MnasNet's block strings: M (MBConv) or F (Fused-MBConv), k kernel, e expansion,
        se, x repeats, c channels."""
        kind = "F" if self.block == "fused_mbconv" else "M"
        se = "se" if self.squeeze_excitation else ""
        return f"{kind}k{self.kernel}e{self.expansion}{se}x{self.repeats}c{channels}"


@dataclass(frozen=True)
class BaselineRecipe:
    """Everything that decides a baseline study's scores. All but `trials` are fingerprinted; `trials` (the number
    of candidates to train) may be raised to search on."""

    start: str = "efficientnet-b0"
    target_mflops: float = 400.0
    w: float = MNAS_W
    pareto: bool = False
    trials: int = 30
    proxy: Recipe = field(default_factory=Recipe)  # only its PROXY_FIELDS matter

    def __post_init__(self) -> None:
        if not isinstance(self.start, str) or not self.start:
            raise ScalerError(f"start: expected a baseline name or spec file, got {self.start!r}")
        check_number("target MFLOPs", self.target_mflops, 0, above_low=True)
        check_number("w", self.w, -1, 0)
        if not isinstance(self.pareto, bool):
            raise ScalerError(f"pareto: expected true or false, got {self.pareto!r}")
        check_int("trials", self.trials)

    def settings(self) -> dict:
        """What a worker must share with the study: every setting but `trials`, and the version."""
        proxy = {name: getattr(self.proxy, name) for name in PROXY_FIELDS}
        return {"start": self.start, "target_mflops": self.target_mflops, "w": self.w, "pareto": self.pareto,
                "version": VERSION} | proxy

    @property
    def target_macs(self) -> float:
        return self.target_mflops * 1e6


# Sized like `scaler search --quick`: a few candidates on the quick proxy, to check the machinery in minutes on a CPU.
QUICK_BASELINE = BaselineRecipe(trials=5, proxy=QUICK)


def reward(top1: float, macs: float, target_macs: float, w: float = MNAS_W) -> float:
    """MnasNet's soft-constraint reward: accuracy times (FLOPs / target)^w; w < 0 pays for being cheaper."""
    return top1 * (macs / target_macs) ** w


def candidate_spec(start: Spec, choices: tuple[StageChoice, ...], name: str | None = None) -> Spec:
    """The start baseline with each stage as chosen (channels rounded as the start's rule rounds them)."""
    stages = []
    for stage, choice in zip(start.stages, choices, strict=True):
        channels = stage.channels if choice.width == 1.0 else round_channels(stage.channels * choice.width,
                                                                             start.divisor, start.rounding == "v1")
        se = SE_RATIO if choice.squeeze_excitation else 0.0
        stages.append(Stage(choice.block, choice.repeats, channels, stage.stride, choice.kernel,
                            float(choice.expansion), se))
    return replace(start, name=name or f"{start.name}-searched", stages=tuple(stages))


def start_spec(start: str) -> Spec:
    """The starting baseline, which must be built of MBConv or Fused-MBConv stages (the space's block kinds)."""
    spec = resolve_spec(start)
    kinds = {stage.block for stage in spec.stages}
    if not kinds <= set(BLOCKS):
        raise ScalerError(f"start: {spec.name} has {', '.join(sorted(kinds - set(BLOCKS)))} stages; the baseline "
                          f"search chooses among {' and '.join(BLOCKS)} blocks, so start from an EfficientNet-like "
                          f"network (efficientnet-b0, efficientnetv2-b0, or a spec file of such stages)")
    return spec


def _extreme(start: Spec, block: str, smallest: bool) -> tuple[StageChoice, ...]:
    pick = min if smallest else max
    return tuple(StageChoice(block, pick(KERNELS), pick(EXPANSIONS), not smallest and block == "mbconv",
                             max(1, stage.repeats - 1) if smallest else stage.repeats + 1, pick(WIDTHS))
                 for stage in start.stages)


def space_span(start: Spec) -> tuple[int, int]:
    """The FLOPs of the smallest and the largest candidate around `start` (every choice at its least, or most)."""
    smallest = min(estimate(candidate_spec(start, _extreme(start, b, True))).macs for b in BLOCKS)
    largest = max(estimate(candidate_spec(start, _extreme(start, b, False))).macs for b in BLOCKS)
    return smallest, largest


def check_target(recipe: BaselineRecipe) -> Spec:
    """The start spec, once the band around the target is known to hold some candidate of the space."""
    start = start_spec(recipe.start)
    low, high = space_span(start)
    if recipe.target_macs * BAND[1] < low or recipe.target_macs * BAND[0] > high:
        raise ScalerError(f"target: {recipe.target_mflops:g} MFLOPs is out of reach: candidates must lie within "
                          f"{BAND[0]:g}-{BAND[1]:g}x the target, and the space around {start.name} spans "
                          f"{low / 1e6:,.0f} to {high / 1e6:,.0f} MFLOPs")
    return start


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


def _trained(trial: optuna.trial.FrozenTrial) -> bool:
    """Scored, or failed for a reason of the candidate's own: counts towards `trials` and is not trained again."""
    return trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.FAIL and trial.user_attrs.get("failure_kind") in FINAL_FAILURES)


def _hidden(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.user_attrs.get("failure_kind") in HIDDEN


def _counts(study: optuna.Study, before: int | None = None) -> tuple[int, int, int]:
    """(trained, running, queued) candidates, among trials numbered below `before` if given."""
    trained = running = waiting = 0
    for t in study.get_trials(deepcopy=False):
        if (before is not None and t.number >= before) or _hidden(t):
            continue
        trained += _trained(t)
        running += t.state == TrialState.RUNNING
        waiting += t.state == TrialState.WAITING
    return trained, running, waiting


def _requeue_lost(study: optuna.Study) -> None:
    """Queue again each candidate cut off (Ctrl-C, a lost worker, an unexpected error) that is not trained,
    running or queued under another trial: it is trained once more."""
    fail_lost_trials(study)
    trials = study.get_trials(deepcopy=False)
    held = {json.dumps(t.params, sort_keys=True) for t in trials
            if not _hidden(t) and (_trained(t) or t.state in (TrialState.RUNNING, TrialState.WAITING))}
    for t in trials:
        key = json.dumps(t.params, sort_keys=True)
        if t.state == TrialState.FAIL and not _hidden(t) and not _trained(t) and t.params and key not in held:
            study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
            held.add(key)


def open_baseline_study(recipe: BaselineRecipe, study_name: str, storage: str) -> optuna.Study:
    """Open or create the study (one objective, the reward; or two with `pareto`) and check its settings."""
    directions = ["maximize", "minimize"] if recipe.pareto else ["maximize"]
    study = optuna.create_study(study_name=study_name, storage=open_storage(storage, create=True),
                                directions=directions, load_if_exists=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # multivariate: a stage's choices act together (a wide stage wants a smaller expansion, say). The seed
        # moves on with the study, or a resumed run would draw the first run's random start-up proposals again.
        study.sampler = optuna.samplers.TPESampler(seed=recipe.proxy.seed + len(study.get_trials(deepcopy=False)),
                                                   multivariate=True)
    settings = json.loads(json.dumps(recipe.settings()))
    check_settings(study, settings, fingerprint((), **settings))
    study.set_user_attr("kind", "baseline")
    if study.user_attrs.get("trials", 0) < recipe.trials:
        study.set_user_attr("trials", recipe.trials)
    return study


class _Objective:
    def __init__(self, study: optuna.Study, recipe: BaselineRecipe, start: Spec, device: torch.device):
        self.study, self.recipe, self.start, self.device = study, recipe, start, device
        self.data = None

    def __call__(self, trial: optuna.Trial):
        return run_owned(trial, self.device, self._score)

    def _score(self, trial: optuna.Trial):
        if sum(_counts(self.study, before=trial.number)) >= self.study.user_attrs.get("trials", self.recipe.trials):
            trial.set_user_attr("failure_kind", "surplus")
            raise TrialFailure("surplus: enough candidates are trained or running")
        choices = _suggest(trial, self.start)
        twin = self._twin(trial)
        if twin is not None:  # TPE proposed a candidate again: its score, untrained (or nothing, while it trains)
            trial.set_user_attr("failure_kind", "copy")
            if twin.state == TrialState.COMPLETE:
                return tuple(twin.values) if self.recipe.pareto else twin.value
            raise TrialFailure(f"copy of trial {twin.number}")
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
        if self.data is None:
            p = self.recipe.proxy
            self.data = load_data(p.data, p.train_size, p.val_size, p.seed, self.device)
        top1 = self._train(trial, spec)
        value = reward(top1, cost.macs, self.recipe.target_macs, self.recipe.w)
        trial.set_user_attr("reward", value)
        return (top1, cost.macs / 1e6) if self.recipe.pareto else value

    def _twin(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """Another trial of the same candidate that is trained, or running under an earlier number."""
        for other in self.study.get_trials(deepcopy=False):
            if other.number != trial.number and not _hidden(other) and other.params == trial.params and (
                    _trained(other) or (other.state == TrialState.RUNNING and other.number < trial.number)):
                return other
        return None

    def _train(self, trial: optuna.Trial, spec: Spec) -> float:
        per_epoch = []

        def record_epoch(_: int, top1: float) -> None:
            per_epoch.append(top1)
            trial.set_user_attr("top1_per_epoch", per_epoch)

        p = self.recipe.proxy
        result = train_for_trial(trial, p.shrink(spec), self.data, epochs=p.epochs, batch_size=p.batch_size,
                                 device=self.device, seed=p.seed, progressive=p.progressive, on_epoch=record_epoch)
        trial.set_user_attr("top1", result.top1)
        trial.set_user_attr("wall_seconds", result.wall_seconds)
        return result.top1


def _record(trial: optuna.trial.FrozenTrial) -> BaselineTrial:
    attrs = trial.user_attrs
    failure = attrs.get("failure") or ("worker lost" if trial.state == TrialState.FAIL else None)
    return BaselineTrial(
        number=trial.number, state=trial.state.name, choices=_choices(attrs), stages=attrs.get("stages", ""),
        macs=attrs.get("macs"), params=attrs.get("params"),
        top1=attrs.get("top1") if trial.state == TrialState.COMPLETE else None,
        top1_per_epoch=tuple(attrs.get("top1_per_epoch") or ()),
        reward=attrs.get("reward") if trial.state == TrialState.COMPLETE else None,
        wall_seconds=attrs.get("wall_seconds"), failure=failure,
    )


def baseline_records(study: optuna.Study) -> tuple[BaselineTrial, ...]:
    """Every candidate trained, training or failed in training, in trial order (rejections and bookkeeping left
    out)."""
    return tuple(_record(t) for t in study.get_trials(deepcopy=False) if not _hidden(t) and "choices" in t.user_attrs)


def best_candidate(trials: tuple[BaselineTrial, ...]) -> BaselineTrial | None:
    """The highest reward (in a two-objective study too: the reward ranks the Pareto front's members)."""
    return max((t for t in trials if t.reward is not None), key=lambda t: t.reward, default=None)


def stored_baseline_recipe(study: optuna.Study) -> BaselineRecipe:
    settings = dict(study.user_attrs.get("recipe", {}))
    try:
        top = {k: settings.pop(k) for k in ("start", "target_mflops", "w", "pareto")}
    except KeyError:
        raise ScalerError(f"study {study.study_name!r} is not a baseline search") from None
    proxy = replace(Recipe(), **{k: v for k, v in settings.items() if k in PROXY_FIELDS})
    return BaselineRecipe(**top, trials=study.user_attrs.get("trials", 1), proxy=proxy)


def is_baseline_study(study_name: str, storage: str) -> bool:
    """Whether the study is a baseline search (False when it does not exist: reading it says so)."""
    try:
        return load_study(study_name, storage).user_attrs.get("kind") == "baseline"
    except ScalerError:
        return False


def baseline_report(study_name: str, storage: str) -> BaselineResult:
    """Read a baseline study back: its candidates, how many were rejected, the best by reward."""
    study = load_study(study_name, storage)
    recipe = stored_baseline_recipe(study)
    trials = baseline_records(study)
    rejected = sum(t.user_attrs.get("failure_kind") == "outside" for t in study.get_trials(deepcopy=False))
    best = best_candidate(trials)
    spec = None if best is None else candidate_spec(resolve_spec(recipe.start), best.choices, f"{study_name}-baseline")
    return BaselineResult(study_name, storage, recipe, trials, rejected, best, spec)


Progress = Callable[[BaselineTrial | None, int, int], None]  # (the trial trained, or None for a rejection; done; all)


def baseline_search(
    recipe: BaselineRecipe,
    study_name: str = "baseline",
    storage: str | None = None,
    device: str = "auto",
    output: str | None = None,
    on_trial: Progress | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> BaselineResult:
    """Train candidates until `recipe.trials` are trained (counting those of earlier runs), then write the best
    baseline's spec to `output` (default: <study_name>-baseline.json beside the study's database).

    A target the space cannot reach is refused before any training. TPE proposals outside the FLOPs band cost
    an estimate each; after REJECTIONS_PER_TRIAL of them per wanted candidate the search stops and says so.
    """
    device = resolve_device(device)
    start = check_target(recipe)
    parse_data(recipe.proxy.data)
    if output is not None:
        check_output_file(output, (".json", ".toml"))  # before any training, not after it
    storage = storage or default_storage(study_name)
    path = output or str(storage_folder(storage) / f"{study_name}-baseline.json")
    study = open_baseline_study(recipe, study_name, storage)
    _requeue_lost(study)
    wanted = study.user_attrs["trials"]
    if on_start is not None:
        on_start(_counts(study)[0], wanted)
    objective = _Objective(study, recipe, start, device)
    rejected_here, outage = 0, None

    def finished(_, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal rejected_here
        if trial.user_attrs.get("failure_kind") == "outside":
            rejected_here += 1
        elif on_trial is not None and not _hidden(trial):
            on_trial(_record(trial), _counts(study)[0], wanted)

    note = None
    with safe_interrupts():
        while True:
            take_interrupt()
            trained, running, waiting = _counts(study)
            if not waiting and trained + running >= wanted:
                break  # done here; candidates running on other machines are theirs to finish
            if rejected_here >= REJECTIONS_PER_TRIAL * wanted:
                note = (f"stopped after {rejected_here} proposals outside the FLOPs band with {trained} of "
                        f"{wanted} candidates trained: widen the space (--start) or move the target")
                break
            try:
                study.optimize(objective, n_trials=1, catch=(TrialFailure,), callbacks=[finished])
                outage = None
            except Exception as error:  # noqa: BLE001 -- ride_out re-raises all but a storage failure
                outage = ride_out(error, outage)
    result = replace(baseline_report(study_name, storage), note=note)
    if result.spec is not None:
        save_spec(result.spec, path)
        result = replace(result, spec_path=path)
    return result
