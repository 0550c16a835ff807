"""Scores and aggregates against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mabcq_bench.report.aggregate import iqm, mean_std, stratified_bootstrap_iqm
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
