"""A baseline search's recipe and its space: the choices per stage around a starting network, the FLOPs band
around the target, and MnasNet's reward. No torch and no optuna: the CLI's help and the band checks need neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from scaler.baselines import resolve_spec
from scaler.errors import ScalerError, check_int, check_number
from scaler.estimator import estimate
from scaler.scaling import round_channels
from scaler.spec import Spec, Stage
from scaler.study.proxy import QUICK_PROXY, Proxy, split_settings

VERSION = "7"  # bump when a change would make old trials incomparable (4: proxy channels to multiples of 2; 5: the
# synthetic set's salient gratings on the squares only, objects of 0.05 to 0.14; 6: the training's warm-up over
# 30 % of the steps; 7: half the synthetic images faint, the first epoch on the others)
BLOCKS = ("mbconv", "fused_mbconv")
KERNELS = (3, 5)
EXPANSIONS = (1, 4, 6)
WIDTHS = (0.75, 1.0, 1.25)
SE_RATIO = 0.25
BAND = (0.5, 1.5)  # a candidate's FLOPs must lie within these multiples of the target, or it is not trained
MNAS_W = -0.07
REJECTIONS_PER_TRIAL = 50  # TPE proposals outside the band tolerated per trained candidate before stopping


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
    proxy: Proxy = field(default_factory=Proxy)

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
        return {"start": self.start, "target_mflops": self.target_mflops, "w": self.w, "pareto": self.pareto,
                "version": VERSION} | self.proxy.settings()

    @property
    def target_macs(self) -> float:
        return self.target_mflops * 1e6


# Sized like `scaler search --quick`: a few candidates on the quick proxy, to check the machinery in minutes on a CPU.
QUICK_BASELINE = BaselineRecipe(trials=5, proxy=QUICK_PROXY)


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


def assemble_baseline_recipe(quick: bool = False, **options) -> BaselineRecipe:
    """The recipe of a `scaler baseline-search` command: --quick's or the default, with the options given (flat
    names, the proxy's among them; None leaves a setting as it is)."""
    base = QUICK_BASELINE if quick else BaselineRecipe()
    proxy, rest = split_settings({k: v for k, v in options.items() if v is not None})
    try:
        settings = replace(base.proxy, **proxy)
    except ScalerError as error:
        raise ScalerError(f"options: {error}") from None
    return replace(base, proxy=settings, **rest)
