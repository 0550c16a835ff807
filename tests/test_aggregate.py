"""Scores and aggregates against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mabcq_bench.report.aggregate import (
    bootstrap_mean_difference,
    holm_bonferroni,
    iqm,
    mean_std,
    performance_profile,
    probability_of_improvement,
    stratified_bootstrap_iqm,
)
from mabcq_bench.runs.execute import normalized_score
from mabcq_bench.errors import UserError


def test_normalized_score_by_hand():
    # Hopper-like references: random 20.1, expert 2900.0; the midpoint is 1460.05.
    scores = normalized_score([20.1, 2900.0, 1460.05, -267.89], 20.1, 2900.0)
    np.testing.assert_allclose(scores, [0.0, 100.0, 50.0, -10.0], atol=1e-9)
    one = normalized_score(1460.05, 20.1, 2900.0)
    assert isinstance(one, float) and one == pytest.approx(50.0)
    assert normalized_score(np.ones((2, 3)) * 3.0, 1.0, 5.0).shape == (2, 3)


def test_normalized_score_rejects_a_degenerate_scale():
    with pytest.raises(UserError, match="ref_max_score equals ref_min_score"):
        normalized_score([1.0], 7.0, 7.0)


def test_mean_std_is_the_sample_std():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert std == pytest.approx(np.sqrt(5.0 / 3.0))  # squares 2.25+0.25+0.25+2.25 = 5 over n-1 = 3
    assert mean_std([40.0, 50.0, 60.0]) == (50.0, 10.0)
    assert mean_std([7.5]) == (7.5, 0.0)  # one run: std reported as 0.0


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_mean_std_and_iqm_reject_empty_or_non_finite(bad):
    with pytest.raises(UserError):
        mean_std(bad)
    with pytest.raises(UserError):
        iqm(bad)


def test_iqm_by_hand():
    assert iqm(np.arange(1, 9)) == 4.5  # cuts 2 of 8 at each end: mean(3, 4, 5, 6)
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5  # order does not matter
    assert iqm([1.0, 2.0, 3.0, 100.0]) == 2.5  # cuts int(0.25 * 4) = 1 at each end
    assert iqm([1.0, 2.0, 9.0]) == 4.0  # int(0.75) = 0: nothing cut, the plain mean
    x = np.random.default_rng(3).normal(size=13)
    assert iqm(x) == pytest.approx(stats.trim_mean(x, 0.25))


SCORES = {"hopper": np.array([10.0, 20.0, 30.0, 40.0, 50.0]), "walker": np.array([60.0, 75.0, 80.0])}


def test_bootstrap_contains_the_point_and_is_deterministic():
    point, low, high = stratified_bootstrap_iqm(SCORES, reps=500, seed=1)
    assert point == iqm(np.concatenate(list(SCORES.values())))
    assert low < point < high
    assert stratified_bootstrap_iqm(SCORES, reps=500, seed=1) == (point, low, high)
    reordered = {"walker": SCORES["walker"], "hopper": SCORES["hopper"]}
    assert stratified_bootstrap_iqm(reordered, reps=500, seed=1) == (point, low, high)
    assert stratified_bootstrap_iqm(SCORES, reps=500, seed=2) != (point, low, high)
    _, low90, high90 = stratified_bootstrap_iqm(SCORES, reps=500, ci=0.5, seed=1)
    assert low <= low90 <= high90 <= high  # a narrower coverage gives a narrower interval


def test_bootstrap_collapses_when_every_score_is_equal():
    assert stratified_bootstrap_iqm({"a": [42.0] * 4, "b": [42.0] * 2}, reps=200) == (42.0, 42.0, 42.0)


def test_bootstrap_is_stratified_by_task():
    # Each task is constant, so every stratified resample is the same set of scores: the interval
    # collapses. (Pooling the tasks before resampling would let the IQM vary between 0 and 100.)
    point, low, high = stratified_bootstrap_iqm({"a": [0.0] * 4, "b": [100.0] * 4}, reps=300)
    assert point == low == high == 50.0


@pytest.mark.parametrize(
    "scores, kwargs",
    [({}, {}), ({"a": []}, {}), ({"a": [1.0, float("nan")]}, {}), ({"a": [1.0]}, {"ci": 1.0}), ({"a": [1.0]}, {"reps": 0})],
)
def test_bootstrap_rejects_bad_input(scores, kwargs):
    with pytest.raises(UserError):
        stratified_bootstrap_iqm(scores, **kwargs)


# Probability of improvement (Agarwal et al. 2021, section 4): per task, the fraction of (run of X,
# run of Y) pairs where X scores higher, ties counting 1/2; then the mean over tasks.

def test_bootstrap_mean_difference_resamples_each_group_apart():
    # one run a side: nothing to resample
    assert bootstrap_mean_difference([7.0], [2.0]) == (5.0, 5.0, 5.0)
    # a constant X leaves only Y's resampling: 60 − (means of draws from Y); pooling the groups
    # into one stratum would let draws of 60 into Y's mean and reach below 60 − 40
    y = [21.3, 24.7, 30.1, 33.9, 40.0]  # uneven, so the percentiles fall between draws and move with the seed
    d, low, high = bootstrap_mean_difference([60.0] * 3, y, reps=2000, seed=0)
    assert d == pytest.approx(30.0) and 60.0 - 40.0 < low < 30.0 < high < 60.0 - 21.3
    assert bootstrap_mean_difference([60.0] * 3, y, reps=2000, seed=0) == (d, low, high)
    assert bootstrap_mean_difference([60.0] * 3, y, reps=2000, seed=1)[1:] != (low, high)
    with pytest.raises(UserError, match="bootstrap_mean_difference: y: no values"):
        bootstrap_mean_difference([1.0], [])
    with pytest.raises(UserError, match="ci must lie in"):
        bootstrap_mean_difference([1.0], [2.0], ci=1.0)


def test_probability_of_improvement_by_hand():
    # Task a: X = (1, 3) against Y = (0, 2, 3). Pairs won by X: 1>0, 3>0, 3>2; the tie 3=3 counts
    # 1/2; 1<2, 1<3 lost: (3 + 0.5) / 6 = 7/12. Task b: all tied: 1/2. Mean over tasks: 13/24.
    x = {"a": [1.0, 3.0], "b": [5.0, 5.0]}
    y = {"a": [0.0, 2.0, 3.0], "b": [5.0, 5.0, 5.0, 5.0]}
    p, low, high = probability_of_improvement(x, y, reps=500)
    assert p == pytest.approx(13 / 24)
    assert low <= p <= high and 0.0 <= low and high <= 1.0
    # Every task weighs the same: pooling the runs of both tasks would give (3.5 + 4) / 14 instead.
    assert p != pytest.approx(7.5 / 14)
    # It is the Mann–Whitney U statistic of X over n_x * n_y (rliable's implementation).
    u = stats.mannwhitneyu(x["a"], y["a"]).statistic
    assert probability_of_improvement({"a": x["a"]}, {"a": y["a"]}, reps=10)[0] == pytest.approx(u / 6)
    # And P(X > Y) + P(Y > X) = 1.
    assert probability_of_improvement(y, x, reps=10)[0] == pytest.approx(1 - 13 / 24)


def test_probability_of_improvement_extremes_and_stratification():
    # Every run of X above every run of Y on every task: 1, and every resample says so too.
    assert probability_of_improvement({"a": [5.0, 6.0], "b": [1.0]}, {"a": [1.0, 2.0, 3.0], "b": [0.0]}, reps=200) == (1.0, 1.0, 1.0)
    # Constant within each task: a stratified resample cannot change any pair, so the interval
    # collapses onto (1 + 0) / 2, although X wins one task and loses the other.
    assert probability_of_improvement({"a": [2.0] * 3, "b": [0.0] * 3}, {"a": [1.0] * 3, "b": [1.0] * 3}, reps=200) == (0.5, 0.5, 0.5)


def test_probability_of_improvement_is_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    x = {t: rng.normal(size=5) for t in ("hopper", "walker", "ant")}
    y = {t: rng.normal(size=5) + 0.3 for t in ("hopper", "walker", "ant")}
    first = probability_of_improvement(x, y, reps=400, seed=3)
    assert first[1] <= first[0] <= first[2]
    assert probability_of_improvement(dict(reversed(list(x.items()))), y, reps=400, seed=3) == first  # order of tasks
    assert probability_of_improvement(x, y, reps=400, seed=4) != first
    _, low50, high50 = probability_of_improvement(x, y, reps=400, ci=0.5, seed=3)
    assert first[1] <= low50 <= high50 <= first[2]


@pytest.mark.parametrize(
    "x, y, kwargs, message",
    [
        ({}, {}, {}, "no tasks"),
        ({"a": [1.0]}, {"b": [1.0]}, {}, "same tasks"),
        ({"a": []}, {"a": [1.0]}, {}, "no values"),
        ({"a": [1.0]}, {"a": [float("nan")]}, {}, "finite"),
        ({"a": [1.0]}, {"a": [1.0]}, {"reps": 0}, "reps"),
        ({"a": [1.0]}, {"a": [1.0]}, {"ci": 0.0}, "ci"),
    ],
)
def test_probability_of_improvement_rejects_bad_input(x, y, kwargs, message):
    with pytest.raises(UserError, match=message):
        probability_of_improvement(x, y, **kwargs)


# Performance profiles (Agarwal et al. 2021, section 4): the run-score distribution, the fraction
# of runs with a score strictly above tau, per task, averaged over tasks.

def test_performance_profile_by_hand():
    scores = {"a": [10.0, 20.0, 30.0, 40.0], "b": [50.0, 60.0]}
    taus = [0.0, 25.0, 55.0, 60.0]
    # task a above tau: 4/4, 2/4, 0/4, 0/4; task b: 2/2, 2/2, 1/2, 0/2 (60 is not above 60)
    profile, low, high = performance_profile(scores, taus, reps=500)
    np.testing.assert_allclose(profile, [1.0, 0.75, 0.25, 0.0])
    assert np.all(low <= profile) and np.all(profile <= high)
    # per-task averaging: pooling all six runs would give 4/6 at tau = 25, not 3/4
    assert profile[1] != pytest.approx(4 / 6)
    # With equal runs per task it is rliable's np.mean(scores > tau) over all runs.
    equal = {"a": [1.0, 4.0, 2.0], "b": [3.0, 3.0, 0.0]}
    grid = np.linspace(-1.0, 5.0, 13)
    pooled = np.array([1.0, 4.0, 2.0, 3.0, 3.0, 0.0])
    np.testing.assert_allclose(performance_profile(equal, grid, reps=10)[0], [(pooled > t).mean() for t in grid])


def test_performance_profile_band_collapses_when_each_task_is_constant():
    profile, low, high = performance_profile({"a": [0.0] * 3, "b": [100.0] * 5}, [-1.0, 50.0, 100.0], reps=200)
    for curve in (profile, low, high):
        np.testing.assert_array_equal(curve, [1.0, 0.5, 0.0])


def test_performance_profile_is_deterministic_and_monotone():
    rng = np.random.default_rng(1)
    scores = {t: rng.uniform(0, 100, size=5) for t in ("hopper", "walker")}
    taus = np.linspace(0.0, 100.0, 21)
    first = performance_profile(scores, taus, reps=300, seed=7)
    again = performance_profile({"walker": scores["walker"], "hopper": scores["hopper"]}, taus, reps=300, seed=7)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], performance_profile(scores, taus, reps=300, seed=8)[1])
    for curve in first:
        assert curve.shape == (21,) and np.all(np.diff(curve) <= 0)  # never rises with tau
    assert np.all(first[1] <= first[0]) and np.all(first[0] <= first[2])


@pytest.mark.parametrize(
    "scores, taus, message",
    [({}, [0.0], "no tasks"), ({"a": []}, [0.0], "no values"), ({"a": [float("inf")]}, [0.0], "finite"),
     ({"a": [1.0]}, [], "taus: no values"), ({"a": [1.0]}, [float("nan")], "taus")],
)
def test_performance_profile_rejects_bad_input(scores, taus, message):
    with pytest.raises(UserError, match=message):
        performance_profile(scores, taus)


def test_holm_bonferroni_by_hand():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> max so far 0.06
    np.testing.assert_allclose(holm_bonferroni([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm_bonferroni([0.5, 0.2]), [0.5, 0.4])
    np.testing.assert_allclose(holm_bonferroni([0.3, 0.6, 0.9]), [0.9, 1.0, 1.0])  # capped at 1
    assert holm_bonferroni([0.05]).tolist() == [0.05]  # a family of one: unchanged
    assert holm_bonferroni([]).size == 0
    # 3 seeds against 3: the smallest exact one-sided p is 1/20, so any family of two or more
    # leaves nothing at 0.05; 5 against 5 (1/252) survives a family of 12, not of 13.
    assert holm_bonferroni([0.05, 0.05]).min() == pytest.approx(0.1)
    assert holm_bonferroni([1 / 252] * 12).max() <= 0.05 < holm_bonferroni([1 / 252] * 13).min()


@pytest.mark.parametrize("bad", [[0.1, 1.5], [-0.1], [float("nan")]])
def test_holm_bonferroni_rejects_values_that_are_not_p_values(bad):
    with pytest.raises(UserError, match="holm_bonferroni"):
        holm_bonferroni(bad)
