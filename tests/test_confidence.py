"""The statistics of a study's confidence on constructed inputs: known noise, known rankings, significance both
ways."""

import math
import random
from dataclasses import asdict, replace

import optuna
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.confidence import (Agreement, Noise, compare, compare_paired, difference_noise, kendall_tau,
                               resolved_agreement, seed_noise, t_critical)
from scaler.errors import ScalerError
from scaler.searches.compound import search
from scaler.searches.compound_records import TrialRecord
from scaler.study.verdict import RankCheck, judge, rank_check, repeat_candidates

from recipes import TEN, TINY


def test_seed_noise_pools_the_variance_of_repeated_candidates():
    noise = seed_noise({"a": [0.5, 0.6], "b": [0.3, 0.5, 0.4], "c": [0.9]})
    # a: variance 0.005 with 1 degree of freedom; b: 0.01 with 2; c: one run, no information.
    assert noise.dof == 3
    assert noise.std == pytest.approx(math.sqrt((0.005 * 1 + 0.01 * 2) / 3))
    assert seed_noise({"a": [0.5], "b": [0.4]}) is None


def test_seed_noise_recovers_a_known_standard_deviation():
    rng = random.Random(0)
    runs = {k: [0.6 + rng.gauss(0, 0.02) for _ in range(5)] for k in range(200)}
    noise = seed_noise(runs)
    assert noise.dof == 800 and noise.std == pytest.approx(0.02, rel=0.05)


def test_a_difference_beyond_the_noise_is_significant_and_one_within_it_is_not():
    noise = Noise(std=0.01, dof=10)
    clear = compare([0.70, 0.71, 0.70], [0.65, 0.66, 0.65], noise)
    assert clear.significant and clear.difference == pytest.approx(0.05)
    assert clear.t == pytest.approx(0.05 / (0.01 * math.sqrt(2 / 3)))
    close = compare([0.701], [0.699], noise)
    assert not close.significant and close.critical == 1.812
    worse = compare([0.60], [0.70], noise)
    assert not worse.significant and worse.t < 0


def test_critical_values_follow_the_table_and_are_cautious_between_rows():
    assert t_critical(1) == 6.314 and t_critical(30) == 1.697
    assert t_critical(35) == 1.697 and t_critical(1000) == 1.645
    with pytest.raises(ScalerError):
        t_critical(0)


def test_kendall_tau_on_known_rankings():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx((5 - 1) / 6)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(3 * 2))
    with pytest.raises(ScalerError):
        kendall_tau([1], [1])


def test_resolved_agreement_counts_only_the_pairs_the_reference_separates():
    reference = [[0.90, 0.92], [0.80, 0.82], [0.905, 0.915]]
    noise = Noise(0.01, 10)
    # The standard error of a difference of two-seed means is 0.01, the critical t 1.812: a and c (both 0.91) are
    # inside the noise, b is 0.10 below both.
    assert resolved_agreement([3, 1, 2], reference, noise) == Agreement(pairs=3, resolved=2, same=2)
    assert resolved_agreement([1, 2, 3], reference, noise) == Agreement(pairs=3, resolved=2, same=1)
    assert resolved_agreement([1, 1, 1], reference, noise) == Agreement(pairs=3, resolved=2, same=0)
    assert resolved_agreement([3, 1, 2], reference, Noise(0.1, 10)).resolved == 0
    with pytest.raises(ScalerError):
        resolved_agreement([1, 2], reference, noise)


@given(st.lists(st.floats(-1, 1), min_size=2, max_size=12, unique=True))
def test_kendall_tau_is_one_with_itself_and_minus_one_reversed(values):
    assert kendall_tau(values, values) == pytest.approx(1.0)
    assert kendall_tau(values, [-v for v in values]) == pytest.approx(-1.0)
    shuffled = values[:]
    random.Random(0).shuffle(shuffled)
    assert -1.0 <= kendall_tau(values, shuffled) <= 1.0


def test_significance_is_calibrated_on_equal_candidates():
    """Two candidates with the same true score: the test says 'better' in about 5 % of studies, not more."""
    rng = random.Random(1)
    hits = 0
    for _ in range(2000):
        a = [0.6 + rng.gauss(0, 0.02) for _ in range(3)]
        b = [0.6 + rng.gauss(0, 0.02) for _ in range(3)]
        noise = seed_noise({"a": a, "b": b})
        hits += compare(a, b, noise).significant
    assert 0.03 < hits / 2000 < 0.07


def record(number, kind, alpha, beta, top1, repeat=0, gamma=1.0, epochs=0):
    return TrialRecord(number=number, state="COMPLETE", kind=kind, alpha=alpha, beta=beta, gamma=gamma, phi=1.0,
                       repeat=repeat, epochs=epochs, top1=top1, top1_per_epoch=(top1,), resolution=32, flops_ratio=2.0, params=1,
                       macs=1, activations=1, wall_seconds=1.0, failure=None, same_network_as=None)


def study_trials(winner, runner_up, reference, spread, correlated=False):
    """Three seeds each of two compound candidates and a width-only reference, +-`spread` around the means: the
    seeds push each candidate its own way, or (`correlated`, as common random numbers can) all alike."""
    orders = [(0.0, 1, -1)] * 3 if correlated else [(0.0, 1, -1), (1, -1, 0.0), (-1, 0.0, 1)]
    trials, number = [], 0
    for (kind, alpha, beta, mean), order in zip((("compound", 1.2, 1.1, winner), ("compound", 1.1, 1.2, runner_up),
                                                 ("width", 1.0, 1.414, reference)), orders):
        for repeat, offset in enumerate(order):
            trials.append(record(number, kind, alpha, beta, mean + offset * spread, repeat))
            number += 1
    return tuple(trials)


def test_the_verdict_says_when_the_winner_is_clear():
    best, verdict = judge(study_trials(0.80, 0.70, 0.60, 0.005))
    assert (best.alpha, best.beta, best.repeat) == (1.2, 1.1, 0)
    assert verdict.runner_up.significant and [(r.kind, r.significant) for r in verdict.dimensions] == [("width", True)]
    assert verdict.noise.dof == 6 and verdict.noise.std == pytest.approx(0.005)
    assert verdict.message == ("alpha=1.2, beta=1.1 beats every other compound candidate by more than the seed "
                                  "noise; it beats width-only scaling by more than the noise (difference +0.200)")


def test_the_verdict_compares_the_winner_with_each_published_rule_by_the_paired_test():
    """A fast-rule reference clearly below the winner and a paper's-rule reference level with it, three common
    seeds each: the verdict names both, one beaten and one not, and repeats would train both again."""
    trials = list(study_trials(0.80, 0.70, 0.60, 0.005))
    number = len(trials)
    for kind, alpha, beta, mean in (("fast", 1.0718, 1.3195, 0.72), ("paper", 1.2137, 1.1066, 0.80)):
        for repeat, offset in enumerate((0.0, 1, -1)):
            trials.append(record(number, kind, alpha, beta, mean + offset * 0.005, repeat))
            number += 1
    _, verdict = judge(tuple(trials))
    rivals = {r.kind: r for r in verdict.rules}
    assert set(rivals) == {"fast", "paper"} and all(r.paired for r in rivals.values())
    assert rivals["fast"].significant and rivals["fast"].difference == pytest.approx(0.08)
    assert not rivals["paper"].significant
    assert "it beats the fast rule (dWr) by more than the noise (difference +0.080)" in verdict.message
    assert "it does not beat the paper's compound rule by more than the noise (difference +0.000)" in verdict.message
    assert [r["kind"] for r in verdict.to_dict()["rules"]] == [r.kind for r in verdict.rules]
    chosen = repeat_candidates(tuple(t for t in trials if t.repeat == 0), 1)
    assert {"fast", "paper"} <= {c.kind for c in chosen}


def test_the_verdict_compares_the_winner_with_each_single_dimension_reference():
    """Three seeds each of depth-, width- and resolution-only beside a v2 winner: each is compared, best first, and
    each is repeated. Depth-only is met as trained under the winner's stage rule; width- and resolution-only,
    which no stage rule changes, as trained once (under uniform)."""
    trials, number = [], 0
    for kind, alpha, beta, gamma, mean, rule in (("compound", 1.2, 1.1, 1.15, 0.80, "v2"),
                                                 ("compound", 1.1, 1.2, 1.12, 0.70, "uniform"),
                                                 ("depth", 2.0, 1.0, 1.0, 0.75, "uniform"),
                                                 ("depth", 2.0, 1.0, 1.0, 0.60, "v2"),
                                                 ("width", 1.0, 1.414, 1.0, 0.78, "uniform"),
                                                 ("resolution", 1.0, 1.0, 1.414, 0.79, "uniform")):
        for repeat, offset in enumerate((0.0, 1, -1)):
            trials.append(replace(record(number, kind, alpha, beta, mean + offset * 0.005, repeat, gamma),
                                  stage_scaling=rule))
            number += 1
    _, verdict = judge(tuple(trials))
    assert [(r.kind, r.stage_scaling) for r in verdict.dimensions] == [
        ("resolution", "uniform"), ("width", "uniform"), ("depth", "v2")]
    assert [r.difference for r in verdict.dimensions] == pytest.approx([0.01, 0.02, 0.20])
    assert all(r.paired for r in verdict.dimensions) and verdict.dimensions[-1].significant
    assert "it beats depth-only scaling by more than the noise (difference +0.200)" in verdict.message
    assert [r["kind"] for r in verdict.to_dict()["dimensions"]] == ["resolution", "width", "depth"]
    chosen = repeat_candidates(tuple(t for t in trials if t.repeat == 0), 1)
    assert sorted((c.kind, c.stage_scaling) for c in chosen if c.kind not in ("baseline", "compound")) == [
        ("depth", "uniform"), ("depth", "v2"), ("resolution", "uniform"), ("width", "uniform")]


def test_the_verdict_says_plainly_when_candidates_are_indistinguishable():
    _, verdict = judge(study_trials(0.705, 0.70, 0.69, 0.02))
    assert not verdict.runner_up.significant and not verdict.dimensions[0].significant
    assert verdict.message.startswith("alpha, beta in {(1.2, 1.1), (1.1, 1.2)} are indistinguishable")
    assert verdict.message.endswith("does not beat width-only scaling by more than the noise (difference +0.015)")


def test_the_paired_test_on_hand_computed_values():
    a, b = {0: 0.70, 1: 0.74, 2: 0.69}, {0: 0.66, 1: 0.71, 2: 0.64, 3: 0.9}
    c = compare_paired(a, b)  # differences 0.04, 0.03, 0.05 over the three shared seeds
    assert c.paired and c.dof == 2 and c.difference == pytest.approx(0.04)
    assert c.standard_error == pytest.approx(0.01 / math.sqrt(3))
    assert c.t == pytest.approx(0.04 / (0.01 / math.sqrt(3))) and c.critical == 2.920 and c.significant
    assert compare_paired({0: 0.7}, {0: 0.6, 1: 0.5}) is None  # one shared seed: no paired test


def test_the_noise_of_a_difference_pools_every_pair_that_shares_seeds():
    runs = {"a": {0: 0.70, 1: 0.74, 2: 0.69}, "b": {0: 0.66, 1: 0.71, 2: 0.64}, "c": {0: 0.5}}
    noise = difference_noise(runs)  # only a-b share two or more seeds: differences 0.04, 0.03, 0.05
    assert noise.dof == 2 and noise.std == pytest.approx(0.01)
    assert difference_noise({"a": {0: 0.7}, "b": {1: 0.6}}) is None


def test_common_random_numbers_tell_apart_what_the_noise_of_a_score_cannot():
    """Seeds that push every candidate alike: the scores spread by 0.02, their differences not at all. The paired
    test sees the 0.005 lead; the two-sample test would not."""
    _, verdict = judge(study_trials(0.705, 0.70, 0.69, 0.02, correlated=True))
    assert verdict.runner_up.paired and verdict.runner_up.significant
    assert verdict.noise.std == pytest.approx(0.02) and verdict.difference_noise.std == pytest.approx(0.0, abs=1e-9)
    assert not compare([0.705, 0.725, 0.685], [0.70, 0.72, 0.68], verdict.noise).significant
    assert verdict.winner.mean == pytest.approx(0.705) and verdict.winner.n == 3
    assert verdict.winner.standard_error == pytest.approx(0.02 / math.sqrt(3))


def test_without_repeats_the_verdict_says_the_noise_is_unknown():
    trials = tuple(t for t in study_trials(0.8, 0.7, 0.6, 0.01) if t.repeat == 0)
    best, verdict = judge(trials)
    assert best.alpha == 1.2 and verdict.noise is None and "not measured" in verdict.message


@pytest.mark.slow
def test_a_quick_study_with_repeats_measures_the_noise(tmp_path):
    result = search(TINY, None, "r", f"sqlite:///{tmp_path}/r.db", device="cpu", repeats=1)
    repeated = [t for t in result.trials if t.repeat == 1]
    kinds = sorted(t.kind for t in repeated)
    # the baseline, TINY's 2 compound candidates, the depth-, width- and resolution-only references, the fast rule
    assert kinds == ["baseline", "compound", "compound", "depth", "fast", "resolution", "width"]
    assert result.verdict.noise.dof >= 2 and result.verdict.test.startswith("one-sided")
    stored = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path}/r.db").user_attrs["seed_noise"]
    assert stored == asdict(result.verdict.noise)
    again = search(TINY, None, "r", f"sqlite:///{tmp_path}/r.db", device="cpu", repeats=1)
    assert again.trials == result.trials  # nothing trained again


def ranked_trials(short, long):
    """Compound candidates with a short-proxy score each and a 12-epoch score each."""
    trials = [record(i, "compound", 1.0 + i / 20, 1.0, score) for i, score in enumerate(short)]
    trials += [record(len(short) + i, "compound", 1.0 + i / 20, 1.0, score, epochs=12) for i, score in enumerate(long)]
    return tuple(trials)


def test_rank_check_agrees_when_the_long_proxy_ranks_alike():
    ranks = rank_check(ranked_trials([0.5, 0.6, 0.7, 0.8], [0.6, 0.7, 0.8, 0.9]))
    assert ranks == RankCheck(epochs=12, candidates=4, kendall_tau=1.0, warning=False)


def test_rank_check_warns_when_the_long_proxy_ranks_otherwise():
    ranks = rank_check(ranked_trials([0.5, 0.6, 0.7, 0.8], [0.9, 0.7, 0.8, 0.6]))
    assert ranks.kendall_tau == pytest.approx(-4 / 6) and ranks.warning
    assert rank_check(ranked_trials([0.5, 0.6], [])) is None


def test_the_long_proxy_is_kept_out_of_the_winner_and_the_noise():
    trials = ranked_trials([0.5, 0.6], [0.9, 0.1])
    best, _ = judge(trials)
    assert best.top1 == 0.6 and best.epochs == 0


@pytest.mark.slow
def test_a_study_checks_its_ranking_with_a_longer_proxy(tmp_path):
    result = search(TEN, None, "k", f"sqlite:///{tmp_path}/k.db", device="cpu", check_ranks=2, check_top=3)
    long = [t for t in result.trials if t.epochs == 2]
    assert len(long) == 3 and all(t.kind == "compound" and len(t.top1_per_epoch) == 2 for t in long)
    ranks = result.verdict.ranks
    assert ranks.epochs == 2 and ranks.candidates == 3 and -1 <= ranks.kendall_tau <= 1
    assert ranks.warning == (ranks.kendall_tau < 0.5)
