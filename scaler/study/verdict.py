"""A compound study's answer and how sure it is: the winner by mean top-1 over its seeds, the seed noise, the
winner against the runner-up, each single-dimension reference and each published rule trained as a reference
(scaler.confidence's test), and whether a longer proxy ranks the candidates alike. Also which candidates deserve
more seeds, or a longer proxy.

A candidate here is (kind, alpha, beta, gamma, stage_scaling); the records are a compound search's
(scaler.searches.compound_records.TrialRecord): any object with those fields and `top1, phi, epochs, repeat,
same_network_as`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

from scaler.confidence import Comparison, Noise, compare_seeds, difference_noise, kendall_tau, seed_noise
from scaler.grid import Candidate

TEST = ("one-sided paired t-test at 95 % on the per-seed differences (seeds are common random numbers); the "
        "two-sample t-test with the pooled seed noise where two candidates share fewer than two seeds")
SINGLE_DIMENSIONS = ("depth", "width", "resolution")
RULE_KINDS = {"fast": "the fast rule (dWr)", "paper": "the paper's compound rule"}  # published rules as references
RIVAL_NAMES = {kind: f"{kind}-only scaling" for kind in SINGLE_DIMENSIONS} | RULE_KINDS
LOW_TAU = 0.5  # below this, a short proxy ranks candidates unlike a longer training


@dataclass(frozen=True)
class Rival:
    """A candidate the winner is compared with, and whether the winner beats it by more than the noise."""

    kind: str
    alpha: float
    beta: float
    gamma: float
    stage_scaling: str
    difference: float  # winner's mean top-1 minus this candidate's (paired: the mean per-seed difference)
    t: float
    critical: float
    significant: bool
    paired: bool = False  # the paired test on the seeds both share; else the two-sample test
    standard_error: float = 0.0


@dataclass(frozen=True)
class RankCheck:
    """Kendall's tau between the short proxy's ranking and a longer one's over the same candidates."""

    epochs: int
    candidates: int
    kendall_tau: float
    warning: bool


@dataclass(frozen=True)
class Standing:
    """The winner's score: its mean top-1 over its seeds, how many, and the standard error of that mean (None
    while the seed noise is unknown)."""

    mean: float
    n: int
    standard_error: float | None


@dataclass(frozen=True)
class Verdict:
    """How sure the winner is: its mean, the seed noise (None when no candidate was repeated) and the noise of a
    per-seed difference between two candidates, the comparisons, the rank check, and all of it said in one
    `message`."""

    noise: Noise | None
    message: str
    runner_up: Rival | None = None
    dimensions: tuple[Rival, ...] = ()  # the winner against each single-dimension reference, best first
    ranks: RankCheck | None = None
    test: str = TEST
    winner: Standing | None = None
    difference_noise: Noise | None = None
    rules: tuple[Rival, ...] = ()  # the winner against each published rule trained as a reference

    def to_dict(self) -> dict:
        data = {"noise": None if self.noise is None else asdict(self.noise), "test": self.test,
                "message": self.message, "winner": None if self.winner is None else asdict(self.winner),
                "difference_noise": None if self.difference_noise is None else asdict(self.difference_noise)}
        if self.runner_up is not None:
            data["runner_up"] = asdict(self.runner_up)
        return data | {"ranks": None if self.ranks is None else asdict(self.ranks),
                       "dimensions": [asdict(rival) for rival in self.dimensions],
                       "rules": [asdict(rival) for rival in self.rules]}


def candidate_key(record) -> tuple:
    return record.kind, record.alpha, record.beta, record.gamma, record.stage_scaling


def seed_scores(trials: tuple, trained: bool = False) -> dict[tuple, dict[int, float]]:
    """Top-1 of each candidate at phi = 1 by seed (repeat index: 0 for the first training); with `trained`, only
    trainings of their own (not the shared score of a candidate that rounds to an already trained network,
    which would count one measurement twice)."""
    found: dict[tuple, dict[int, float]] = {}
    for t in trials:
        if t.top1 is not None and t.phi == 1.0 and t.epochs == 0 and not (trained and t.same_network_as is not None):
            found.setdefault(candidate_key(t), {})[t.repeat] = t.top1
    return found


def scores(trials: tuple, trained: bool = False) -> dict[tuple, list[float]]:
    """Top-1 of each candidate at phi = 1 over its seeds (see `seed_scores`)."""
    return {key: list(by_seed.values()) for key, by_seed in seed_scores(trials, trained).items()}


def _by_mean(found: dict[tuple, list[float]], kinds: tuple[str, ...]) -> list[tuple]:
    """The candidates of `kinds`, best mean first."""
    return sorted((k for k in found if k[0] in kinds), key=lambda k: -statistics.fmean(found[k]))


def _rival(key: tuple, c: Comparison) -> Rival:
    return Rival(*key, difference=c.difference, t=c.t, critical=c.critical, significant=c.significant,
                 paired=c.paired, standard_error=c.standard_error)


def standing(by_seed: dict[int, float], noise: Noise | None) -> Standing:
    """A candidate's mean over its seeds, their number, and the standard error by the seed noise."""
    n = len(by_seed)
    return Standing(statistics.fmean(by_seed.values()), n, None if noise is None else noise.std / math.sqrt(n))


def _message(winner: tuple, compounds: list[tuple], seeds: dict, noise: Noise, rivals: tuple[Rival, ...]) -> str:
    tied = [k for k in compounds[1:] if not compare_seeds(seeds[winner], seeds[k], noise).significant]
    several_rules = len({k[4] for k in compounds}) > 1  # then every point names its stage rule

    def point(k: tuple) -> str:
        return f"({k[1]:g}, {k[2]:g}, {k[4]})" if several_rules else f"({k[1]:g}, {k[2]:g})"

    if tied:
        names = "alpha, beta, stage rule" if several_rules else "alpha, beta"
        message = f"{names} in {{{', '.join(point(k) for k in [winner, *tied])}}} are indistinguishable on this proxy"
    else:
        rule = f" ({winner[4]} stage scaling)" if several_rules else ""
        message = (f"alpha={winner[1]:g}, beta={winner[2]:g}{rule} beats every other compound candidate by more "
                   f"than the seed noise")
    for rival in rivals:
        message += (f"; it {'beats' if rival.significant else 'does not beat'} {RIVAL_NAMES[rival.kind]} by more "
                    f"than the noise (difference {rival.difference:+.3f})")
    return message


def judge(trials: tuple):
    """The best compound candidate by mean top-1 over its seeds (its first trial), and its Verdict; (None, None)
    when no compound candidate is scored."""
    seeds = seed_scores(trials)
    found = {key: list(by_seed.values()) for key, by_seed in seeds.items()}
    compounds = _by_mean(found, ("compound",))
    if not compounds:
        return None, None
    winner = compounds[0]
    best = next(t for t in trials if candidate_key(t) == winner and t.phi == 1.0 and t.repeat == 0
                and t.top1 is not None)
    noise = seed_noise(scores(trials, trained=True))
    ranks = rank_check(trials)
    if noise is None:
        return best, Verdict(None, "seed noise not measured (--repeats 0): the winner may be a coin toss",
                             ranks=ranks, winner=standing(seeds[winner], None))
    runner_up = _rival(compounds[1], compare_seeds(seeds[winner], seeds[compounds[1]], noise)) \
        if len(compounds) > 1 else None

    def rivals(kinds: tuple[str, ...]) -> tuple[Rival, ...]:
        """The winner against each reference of `kinds`, best first: under the winner's stage rule where there is
        one (only the references that grow depth are trained under each rule), else the one there is."""
        own = {k[0] for k in found if k[0] in kinds and k[4] == winner[4]}
        return tuple(_rival(k, compare_seeds(seeds[winner], seeds[k], noise)) for k in _by_mean(found, kinds)
                     if k[4] == winner[4] or k[0] not in own)

    dimensions, rules = rivals(SINGLE_DIMENSIONS), rivals(tuple(RULE_KINDS))
    return best, Verdict(noise, _message(winner, compounds, seeds, noise, dimensions + rules), runner_up, dimensions,
                         ranks, winner=standing(seeds[winner], noise), difference_noise=difference_noise(seeds),
                         rules=rules)


def repeat_candidates(trials: tuple, repeats: int, top: int = 3) -> tuple[Candidate, ...]:
    """The baseline, the `top` best compound candidates, each single-dimension reference and each published rule,
    each to be trained `repeats` more times with other seeds: the seed noise, where it matters for the answer,
    and paired comparisons with every reference the answer is compared with."""
    found = scores(tuple(t for t in trials if t.repeat == 0))
    chosen = _by_mean(found, ("baseline",)) + _by_mean(found, ("compound",))[:top] + \
        _by_mean(found, SINGLE_DIMENSIONS) + _by_mean(found, tuple(RULE_KINDS))
    return tuple(Candidate(alpha, beta, gamma, kind, 1.0, r, stage_scaling=rule)
                 for kind, alpha, beta, gamma, rule in chosen for r in range(1, repeats + 1))


def rank_candidates(trials: tuple, epochs: int, top: int) -> tuple[Candidate, ...]:
    """The `top` best compound candidates again, trained for `epochs` (a longer proxy) with the first seed."""
    found = scores(tuple(t for t in trials if t.repeat == 0))
    return tuple(Candidate(alpha, beta, gamma, kind, 1.0, 0, epochs, rule)
                 for kind, alpha, beta, gamma, rule in _by_mean(found, ("compound",))[:top])


def rank_check(trials: tuple) -> RankCheck | None:
    """Kendall's tau between the short proxy's first scores and the longer proxy's for the same candidates; a
    warning when it is below LOW_TAU. None until two candidates have both."""
    long = {(t.alpha, t.beta, t.gamma, t.stage_scaling): t for t in trials if t.epochs > 0 and t.top1 is not None}
    short = {(t.alpha, t.beta, t.gamma, t.stage_scaling): t.top1 for t in trials
             if t.kind == "compound" and t.epochs == 0 and t.repeat == 0 and t.phi == 1.0 and t.top1 is not None}
    keys = [k for k in long if k in short]
    if len(keys) < 2:
        return None
    tau = kendall_tau([short[k] for k in keys], [long[k].top1 for k in keys])
    return RankCheck(next(iter(long.values())).epochs, len(keys), tau, tau < LOW_TAU)
