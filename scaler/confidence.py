"""How sure a study's answer is: the proxy's seed noise, whether one candidate beats another by more than it, and
whether two proxies rank candidates alike.

A short proxy training is noisy: the same candidate trained with another seed scores differently. The noise is
measured by training some candidates with several seeds and pooling their variances (`seed_noise`).

Repeat k of every candidate shares its data order, augmentation draws and initialisation seed (common random
numbers), so two candidates trained with the same seeds are compared pair by pair: a one-sided paired t-test on
the per-seed differences (`compare_paired`), whose noise (`difference_noise`) is what decides, and is smaller than
a score's noise when the seeds push both candidates alike. Candidates that share fewer than two seeds are told
apart by a one-sided two-sample t-test with the pooled seed noise (`compare`). Either way the winner's mean must
exceed the other's by more than the 95 % critical value of Student's t times the standard error of the difference.
Rank agreement between a short and a long proxy is Kendall's tau-b (`kendall_tau`), which allows ties; where the
long proxy cannot tell every pair apart (it saturates, or its noise is as large as the differences), tau against it
is partly noise, so `resolved_agreement` counts only the pairs it separates beyond its own seed noise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations
from dataclasses import dataclass

from scaler.errors import ScalerError

# One-sided 95 % critical values of Student's t by degrees of freedom (standard tables); beyond 120, the normal's.
T_95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812,
        11: 1.796, 12: 1.782, 13: 1.771, 14: 1.761, 15: 1.753, 16: 1.746, 17: 1.740, 18: 1.734, 19: 1.729,
        20: 1.725, 21: 1.721, 22: 1.717, 23: 1.714, 24: 1.711, 25: 1.708, 26: 1.706, 27: 1.703, 28: 1.701,
        29: 1.699, 30: 1.697, 40: 1.684, 60: 1.671, 120: 1.658}
Z_95 = 1.645


def t_critical(dof: int) -> float:
    """The one-sided 95 % critical value for `dof` degrees of freedom; between table rows, the row below (the
    larger, more cautious value)."""
    if dof < 1:
        raise ScalerError(f"degrees of freedom: must be at least 1, got {dof}")
    if dof > 120:
        return Z_95
    return T_95[max(d for d in T_95 if d <= dof)]


@dataclass(frozen=True)
class Noise:
    """The pooled standard deviation of top-1 between seeds, and its degrees of freedom."""

    std: float
    dof: int


def seed_noise(runs: dict[Hashable, Sequence[float]]) -> Noise | None:
    """Pool the variance of every candidate trained with two or more seeds; None when none was."""
    repeated = [values for values in runs.values() if len(values) >= 2]
    dof = sum(len(values) - 1 for values in repeated)
    if dof == 0:
        return None
    pooled = sum(statistics.variance(values) * (len(values) - 1) for values in repeated) / dof
    return Noise(math.sqrt(pooled), dof)


@dataclass(frozen=True)
class Comparison:
    """Whether candidate `a` beats candidate `b` by more than the noise."""

    difference: float  # mean top-1 of a minus mean top-1 of b (paired: the mean of the per-seed differences)
    standard_error: float
    t: float
    critical: float
    significant: bool
    paired: bool = False  # a paired test on the seeds both share, or the two-sample test with the pooled noise
    dof: int = 0


def compare(a: Sequence[float], b: Sequence[float], noise: Noise) -> Comparison:
    """One-sided two-sample t-test of mean(a) > mean(b) with the pooled seed noise."""
    if not a or not b:
        raise ScalerError("compare: each side needs at least one score")
    difference = statistics.fmean(a) - statistics.fmean(b)
    error = noise.std * math.sqrt(1 / len(a) + 1 / len(b))
    t = _t(difference, error)
    critical = t_critical(noise.dof)
    return Comparison(difference, error, t, critical, t > critical, False, noise.dof)


def _t(difference: float, error: float) -> float:
    return difference / error if error > 0 else math.copysign(math.inf, difference) if difference else 0.0


def compare_paired(a: Mapping[int, float], b: Mapping[int, float]) -> Comparison | None:
    """One-sided paired t-test of mean(a - b) > 0 over the seeds (repeat indices) both were trained with; None
    when they share fewer than two."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return None
    differences = [a[k] - b[k] for k in shared]
    mean = statistics.fmean(differences)
    error = statistics.stdev(differences) / math.sqrt(len(shared))
    t, critical = _t(mean, error), t_critical(len(shared) - 1)
    return Comparison(mean, error, t, critical, t > critical, True, len(shared) - 1)


def compare_seeds(a: Mapping[int, float], b: Mapping[int, float], noise: Noise) -> Comparison:
    """The paired test where the candidates share two or more seeds, else the two-sample test with `noise`."""
    return compare_paired(a, b) or compare(list(a.values()), list(b.values()), noise)


def difference_noise(runs: Mapping[Hashable, Mapping[int, float]]) -> Noise | None:
    """The pooled standard deviation of the per-seed difference between two candidates, over every pair that
    shares two or more seeds; None when no pair does. Beside `seed_noise`, it says how much common random numbers
    take out of a comparison."""
    variances = []
    for a, b in combinations(runs.values(), 2):
        shared = sorted(set(a) & set(b))
        if len(shared) >= 2:
            variances.append((statistics.variance([a[k] - b[k] for k in shared]), len(shared) - 1))
    dof = sum(d for _, d in variances)
    return Noise(math.sqrt(sum(v * d for v, d in variances) / dof), dof) if dof else None


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b between two scorings of the same candidates: 1 for the same order, -1 for the reverse."""
    if len(x) != len(y) or len(x) < 2:
        raise ScalerError(f"kendall tau: needs two scorings of the same two or more candidates, got {len(x)} and "
                          f"{len(y)}")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else 0.0


@dataclass(frozen=True)
class Agreement:
    """How a ranking orders the pairs of candidates that a reference tells apart beyond the reference's noise."""

    pairs: int  # every pair of candidates
    resolved: int  # the pairs whose reference scores differ significantly, either way
    same: int  # of those, the pairs the ranking orders as the reference does (a tie in the ranking is not)


def resolved_agreement(ranking: Sequence[float], reference: Sequence[Sequence[float]], noise: Noise) -> Agreement:
    """Compare `ranking` (one score per candidate) with `reference` (each candidate's per-seed scores) on the pairs
    the reference separates: one candidate's reference mean above the other's by the one-sided two-sample test
    with the reference's pooled seed noise (`compare`)."""
    if len(ranking) != len(reference) or len(ranking) < 2:
        raise ScalerError(f"resolved agreement: needs a ranking and a reference of the same two or more candidates, "
                          f"got {len(ranking)} and {len(reference)}")
    resolved = same = 0
    for i, j in combinations(range(len(ranking)), 2):
        for better, worse in ((i, j), (j, i)):
            if compare(reference[better], reference[worse], noise).significant:
                resolved += 1
                same += ranking[better] > ranking[worse]
    return Agreement(len(ranking) * (len(ranking) - 1) // 2, resolved, same)
