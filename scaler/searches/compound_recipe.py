"""A compound search's recipe: the baseline, the proxy that scores candidates, and which candidates there are;
read from a TOML file, from a study, or assembled from the CLI's options.

A recipe is written flat, in files and in a study's stored settings alike: the proxy's settings beside the rest
(`epochs = 4`, `proxy_resolution = 48`, `alpha_range = [1.0, 1.4]`, ...), so that a recipe file lists every key
a user can set and a study made before the Proxy value existed keeps its fingerprint.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from scaler.baselines import resolve_spec
from scaler.equal_cost import CURRENCIES
from scaler.errors import ScalerError, check_choice, check_int, check_number, read_text
from scaler.grid import RULE_REFERENCE_KINDS, Candidate, compound_grid, references
from scaler.scaling import STAGE_RULES, StageRule, stage_rule
from scaler.spec import Spec
from scaler.study.proxy import FLAT_NAMES, QUICK_PROXY, Proxy, split_settings

VERSION = "9"  # bump when a change would make old trials incomparable (5: candidates at equal real FLOPs; 6: rules
# as references; 7: the synthetic set's salient gratings on the squares only, objects of 0.05 to 0.14; 8: the
# training's warm-up over 30 % of the steps; 9: half the synthetic images faint, the first epoch on the others)
SAMPLERS = ("grid", "tpe")
SAMPLED_STEP = 0.01  # TPE proposes alpha and beta on this grid: finer than a short proxy can tell apart
DEFAULT_REPEATS, QUICK_REPEATS = 2, 1  # extra seeds for the deciding candidates (scaler.study.verdict)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a study's scores: the proxy network, the data, the training, the candidates.
    All but `trials` are fingerprinted; `trials` (TPE proposals) may be raised to search on."""

    baseline: str = "efficientnet-b0"
    proxy: Proxy = field(default_factory=Proxy)
    alpha_range: tuple[float, float] = (1.0, 1.4)
    beta_range: tuple[float, float] = (1.0, 1.4)
    step: float = 0.05
    sampler: str = "grid"
    trials: int = 20
    stage_scaling: tuple[str, ...] = ("uniform",)  # each rule scores the whole grid (scaler.scaling.StageRule)
    max_resolution: int = 0  # the full-size network's resolution cap; 0: the rule's own (v2: 480 px, uniform: none)
    reference_rules: tuple[str, ...] = ("fast",)  # published rules trained as references (scaler.grid.rule_reference)
    equal_cost: str = "flops"  # the currency candidates are trained at equal cost in (scaler.equal_cost.CURRENCIES)

    def __post_init__(self) -> None:
        if not isinstance(self.baseline, str) or not self.baseline:
            raise ScalerError(f"baseline: expected a non-empty string, got {self.baseline!r}")
        check_int("trials", self.trials)
        check_number("step", self.step, 0, above_low=True)
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
        named = self.reference_rules
        if isinstance(named, str) or not isinstance(named, (tuple, list)):
            raise ScalerError(f"references: expected a list of rules ({', '.join(RULE_REFERENCE_KINDS)}), got "
                              f"{named!r}")
        for name in named:
            check_choice("references", name, tuple(RULE_REFERENCE_KINDS))
        if len(set(named)) < len(named):
            raise ScalerError(f"references: a rule is named twice in {', '.join(named)}")
        object.__setattr__(self, "reference_rules", tuple(named))
        check_choice("equal cost", self.equal_cost, CURRENCIES)
        compound_grid(self.alpha_range, self.beta_range, self.step if self.sampler == "grid" else SAMPLED_STEP)

    def to_dict(self) -> dict:
        """Every setting, flat (as a recipe file writes them)."""
        rest = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "proxy"}
        return {"baseline": self.baseline} | self.proxy.settings() | rest

    def settings(self) -> dict:
        """What a worker must share with the study: every setting but `trials`, and the version; `equal_cost` only
        where it is not FLOPs, so that a study made before it could be chosen keeps its fingerprint."""
        return {k: v for k, v in self.to_dict().items()
                if k != "trials" and (k, v) != ("equal_cost", "flops")} | {"version": VERSION}

    def candidates(self) -> tuple[Candidate, ...]:
        """The queued candidates: the references first (baseline, depth-, width-, resolution-only, then the
        published rules named), then, for the grid sampler, the grid, in a fixed order; all of it for the first
        stage rule, and for each further rule the grid and the references a stage rule changes (those that grow
        depth)."""
        grid = compound_grid(self.alpha_range, self.beta_range, self.step) if self.sampler == "grid" else ()
        first, *others = self.stage_scaling
        wanted = references(rules=self.reference_rules) + grid
        chosen = [replace(c, stage_scaling=first) for c in wanted]
        for rule in others:
            chosen += [replace(c, stage_scaling=rule) for c in wanted
                       if c.kind == "compound" or (c.kind != "baseline" and c.alpha > 1)]
        return tuple(chosen)

    def total(self) -> int:
        """How many candidates the study scores."""
        return len(self.candidates()) + (self.trials if self.sampler == "tpe" else 0)

    def proxy_network(self) -> Spec:
        """The baseline shrunk for scoring: the network each candidate's phi = 1 scaling starts from."""
        return self.proxy.shrink(resolve_spec(self.baseline))

    def rule(self, name: str) -> StageRule:
        """The stage rule `name` for the full-size network, with this recipe's resolution cap."""
        return stage_rule(name, self.max_resolution or None)

    def proxy_rule(self, name: str) -> StageRule:
        """The same rule for the proxy: its cap shrunk as the proxy's resolution is (480 of 224 px: 103 of 48)."""
        full = self.rule(name)
        if full.max_resolution is None:
            return full
        shrink = self.proxy.resolution / resolve_spec(self.baseline).resolution
        return replace(full, max_resolution=max(self.proxy.resolution, round(full.max_resolution * shrink)))


QUICK = Recipe(proxy=QUICK_PROXY, alpha_range=(1.1, 1.3), beta_range=(1.05, 1.15), step=0.1)


def recipe_from_dict(data: dict, base: Recipe = Recipe(), where: str = "recipe") -> Recipe:
    """A recipe from a flat table of settings (a TOML file, a study, the CLI): `base` with the keys given; unknown
    keys and wrong types are one error naming `where`."""
    known = ["baseline", *FLAT_NAMES.values(), *(f.name for f in fields(Recipe) if f.name not in ("baseline",
                                                                                                  "proxy"))]
    if not isinstance(data, dict):
        raise ScalerError(f"{where}: expected a table of settings, got {type(data).__name__}")
    for key in data:
        if key not in known:
            raise ScalerError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
    proxy, rest = split_settings(data)
    try:
        return replace(base, proxy=replace(base.proxy, **proxy), **rest)
    except ScalerError as error:
        raise ScalerError(f"{where}: {error}") from None


def load_recipe(path: str | Path, base: Recipe = Recipe()) -> Recipe:
    """Read a study recipe (TOML): any of the flat settings; what it leaves out comes from `base`."""
    path = Path(path)
    text = read_text(path, f"recipe {path}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScalerError(f"recipe {path}: not valid TOML: {error}") from None
    return recipe_from_dict(data, base, f"recipe {path}")


def assemble_recipe(quick: bool = False, recipe_file: str | Path | None = None, **options) -> Recipe:
    """The recipe of a `scaler search` command: --quick's, a recipe file's or the default, with the options given
    (flat names; None leaves a setting as it is). `stage_scaling` may be a comma-separated string."""
    if quick and recipe_file:
        raise ScalerError("--quick and --recipe: give one of them")
    base = load_recipe(recipe_file) if recipe_file else QUICK if quick else Recipe()
    for name in ("stage_scaling", "reference_rules"):  # comma-separated on the command line
        if isinstance(options.get(name), str):
            parts = tuple(part.strip() for part in options[name].split(","))
            options[name] = () if parts == ("none",) else parts
    return recipe_from_dict({k: v for k, v in options.items() if v is not None}, base, "options")


def default_study_name(quick: bool = False, recipe_file: str | Path | None = None) -> str:
    """A study's name when none is given: the recipe file's stem, 'quick' or 'default'."""
    return Path(recipe_file).stem if recipe_file else "quick" if quick else "default"


def default_repeats(quick: bool) -> int:
    return QUICK_REPEATS if quick else DEFAULT_REPEATS

