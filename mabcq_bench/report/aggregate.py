"""Aggregates of scores: mean ± std over seeds, IQM with a bootstrap interval (the scores themselves
are normalized where runs are scored: :func:`mabcq_bench.runs.execute.normalized_score`).

Everything here is plain numpy/scipy on arrays of numbers; reading results and writing tables is
:mod:`mabcq_bench.report.leaderboard`'s job.

The robust estimators follow Agarwal et al. (2021, "Deep RL at the edge of the statistical
precipice", the method of ``rliable``), each with a percentile interval from a *stratified*
bootstrap that resamples the seeds of every task separately, so every resample keeps each task's
number of runs:

- :func:`stratified_bootstrap_iqm`: the interquartile mean (IQM) of all runs of all tasks;
- :func:`probability_of_improvement`: P(X > Y), per task the Mann–Whitney U statistic over the
  runs of X and Y divided by the number of pairs (ties count ½), averaged over tasks;
- :func:`bootstrap_mean_difference`: the difference of two groups' means (two strata);
- :func:`performance_profile`: the run-score distribution, the fraction of runs above τ for each
  τ of a grid, per task, averaged over tasks.

:func:`holm_bonferroni` adjusts a family of p-values for multiple comparisons (Holm 1979).

They are computed here with numpy/scipy: ``rliable`` installs under the pinned set but does not
import (its dependency ``arch`` calls a pandas 2 function that pandas 3 changed).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from mabcq_bench.errors import UserError


def _finite_1d(x: ArrayLike, what: str) -> np.ndarray:
    """``x`` as a non-empty 1-D float array of finite numbers, else a UserError."""
    arr = np.asarray(x, dtype=np.float64).ravel()
    if arr.size == 0:
        raise UserError(f"{what}: no values")
    if not np.all(np.isfinite(arr)):
        raise UserError(f"{what}: values must be finite, got {arr.tolist()}")
    return arr


def _check_bootstrap(reps: int, ci: float, what: str) -> None:
    if int(reps) != reps or reps < 1:
        raise UserError(f"{what}: reps must be a positive integer, got {reps}")
    if not 0.0 < ci < 1.0:
        raise UserError(f"{what}: ci must lie in (0, 1), got {ci}")


def _tasks(scores_by_task: Mapping[str, ArrayLike], what: str) -> tuple[list[str], list[np.ndarray]]:
    """Task names in sorted order (so results do not depend on a mapping's order) and their runs."""
    if not scores_by_task:
        raise UserError(f"{what}: no tasks")
    tasks = sorted(scores_by_task)
    return tasks, [_finite_1d(scores_by_task[t], f"{what}: scores of task {t!r}") for t in tasks]


def _resample(runs: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, n) bootstrap draws of one task's n runs, with replacement: one stratum."""
    return runs[rng.integers(0, runs.size, size=(reps, runs.size))]


def _percentiles(boot: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``(1 − ci)/2`` and ``(1 + ci)/2`` percentiles of bootstrap values along axis 0."""
    low, high = np.percentile(boot, [50.0 * (1.0 - ci), 50.0 * (1.0 + ci)], axis=0)
    return low, high


def mean_std(x: ArrayLike) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) of scores over seeds.

    Args:
        x: the values, any shape (flattened), e.g. one normalized score per seed.

    Returns:
        ``(mean, std)``. With a single value the sample std is undefined; it is reported as 0.0
        (the table's ``(n)`` says that only one run stands behind it).

    Raises:
        UserError: no values, or a value that is not finite.
    """
    arr = _finite_1d(x, "mean_std")
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else 0.0
    return float(np.mean(arr)), std


def iqm(x: ArrayLike) -> float:
    """Interquartile mean: the mean of the middle 50 % of the values.

    It is ``scipy.stats.trim_mean(x, 0.25)`` (as in ``rliable``): ``int(0.25 · n)`` values are
    cut from each end of the sorted values before averaging. So IQM([1..8]) = mean(3, 4, 5, 6)
    = 4.5, and with fewer than 4 values nothing is cut (the plain mean).

    Args:
        x: the values, any shape (flattened).

    Raises:
        UserError: no values, or a value that is not finite.
    """
    return float(stats.trim_mean(_finite_1d(x, "iqm"), 0.25))


def stratified_bootstrap_iqm(
    scores_by_task: Mapping[str, ArrayLike],
    reps: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """IQM over all runs of all tasks, with a stratified-bootstrap percentile interval.

    Every bootstrap resample draws, for each task separately, as many runs as that task has,
    with replacement from that task's runs; the resample's IQM is taken over the pooled draws.
    The interval is the ``(1 − ci)/2`` and ``(1 + ci)/2`` percentiles of the ``reps`` resampled
    IQMs. Tasks are visited in sorted name order, so the result depends only on the scores,
    ``reps``, ``ci`` and ``seed`` (not on the mapping's order).

    Args:
        scores_by_task: task name -> 1-D array of one score per run (seed), e.g. normalized
            scores; tasks may have different numbers of runs.
        reps: number of bootstrap resamples.
        ci: coverage of the interval, in (0, 1).
        seed: seed of the resampling generator.

    Returns:
        ``(iqm, low, high)`` in the units of the scores.

    Raises:
        UserError: no tasks, a task without runs, a non-finite score, or bad ``reps``/``ci``.
    """
    _check_bootstrap(reps, ci, "stratified_bootstrap_iqm")
    _, per_task = _tasks(scores_by_task, "stratified_bootstrap_iqm")
    point = float(stats.trim_mean(np.concatenate(per_task), 0.25))

    rng = np.random.default_rng(seed)
    # (reps, n_task) draws per task, pooled along the run axis -> (reps, total runs).
    resampled = np.concatenate([_resample(s, int(reps), rng) for s in per_task], axis=1)
    low, high = _percentiles(stats.trim_mean(resampled, 0.25, axis=1), ci)
    return point, float(low), float(high)


def bootstrap_mean(scores: ArrayLike, reps: int = 2000, ci: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of one task's runs with the bootstrap percentile interval the tables use.

    The same resampling as :func:`stratified_bootstrap_iqm` on a single stratum (the task's runs,
    drawn with replacement, as many as there are), with the mean as the statistic: the interval
    of a table cell's mean, where the aggregate column holds the IQM's.

    Args:
        scores: one score per run (seed), any shape (flattened).
        reps, ci, seed: as in :func:`stratified_bootstrap_iqm`.

    Returns:
        ``(mean, low, high)`` in the units of the scores; one run gives ``(x, x, x)``.

    Raises:
        UserError: no scores, a non-finite score, or bad ``reps``/``ci``.
    """
    _check_bootstrap(reps, ci, "bootstrap_mean")
    runs = _finite_1d(scores, "bootstrap_mean")
    low, high = _percentiles(_resample(runs, int(reps), np.random.default_rng(seed)).mean(axis=1), ci)
    return float(runs.mean()), float(low), float(high)


def bootstrap_mean_difference(x: ArrayLike, y: ArrayLike, reps: int = 2000, ci: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """mean(x) − mean(y) of two groups of runs, with a two-stratum bootstrap percentile interval.

    Each resample draws, for X and for Y separately, as many runs as that group has, with
    replacement from its own runs (X's draws first, then Y's, so the interval is a function of
    the seed): the stratified bootstrap of :func:`stratified_bootstrap_iqm` with the two groups
    as strata and the difference of their means as the statistic.

    Args:
        x, y: one value per run (seed) of each group, in the same units; the groups may have
            different numbers of runs.
        reps, ci, seed: as in :func:`stratified_bootstrap_iqm`.

    Returns:
        ``(difference, low, high)`` in the units of the values; one run a side gives ``(d, d, d)``.

    Raises:
        UserError: a group without values, a non-finite value, or bad ``reps``/``ci``.
    """
    what = "bootstrap_mean_difference"
    _check_bootstrap(reps, ci, what)
    xs, ys = _finite_1d(x, f"{what}: x"), _finite_1d(y, f"{what}: y")
    rng = np.random.default_rng(seed)
    boot = _resample(xs, int(reps), rng).mean(axis=1) - _resample(ys, int(reps), rng).mean(axis=1)
    low, high = _percentiles(boot, ci)
    return float(xs.mean() - ys.mean()), float(low), float(high)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(x > y) over all pairs of the last axis, ties ½: the Mann–Whitney U of x over n_x · n_y.

    ``x`` (..., n_x) and ``y`` (..., n_y) share their leading (bootstrap) axes; the result has them.
    """
    xs, ys = x[..., :, None], y[..., None, :]
    return np.mean((xs > ys) + 0.5 * (xs == ys), axis=(-2, -1))


def probability_of_improvement(
    x_by_task: Mapping[str, ArrayLike],
    y_by_task: Mapping[str, ArrayLike],
    reps: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Probability of improvement P(X > Y) of algorithm X over algorithm Y, with a percentile interval.

    Per task m, P(X_m > Y_m) is the fraction of the n_x · n_y pairs (a run of X, a run of Y) where
    X's score is higher, a tie counting ½: the Mann–Whitney U statistic of X divided by n_x · n_y.
    P(X > Y) is its mean over tasks, every task weighing the same whatever its number of runs. So
    0.5 means neither tends to do better, 1 that every run of X beats every run of Y on every task.

    The interval is a stratified bootstrap's: each resample draws, for every task and for X and
    Y independently, as many runs as that side has there, with replacement from its own runs.

    Args:
        x_by_task, y_by_task: task name -> 1-D array of one score per run (seed); both need the
            same tasks, and the scores must be in the same units (e.g. normalized scores).
        reps: number of bootstrap resamples.
        ci: coverage of the interval, in (0, 1).
        seed: seed of the resampling generator (tasks are visited in sorted name order).

    Returns:
        ``(p, low, high)``, probabilities in [0, 1].

    Raises:
        UserError: no tasks, different tasks for X and Y, a task without runs, a non-finite
            score, or bad ``reps``/``ci``.
    """
    what = "probability_of_improvement"
    _check_bootstrap(reps, ci, what)
    if set(x_by_task) != set(y_by_task):
        raise UserError(f"{what}: X and Y need the same tasks, got {sorted(x_by_task)} and {sorted(y_by_task)}")
    tasks, xs = _tasks(x_by_task, what)
    _, ys = _tasks(y_by_task, what)
    point = float(np.mean([_improvement(x, y) for x, y in zip(xs, ys)]))

    rng = np.random.default_rng(seed)
    # per task: X's draws, then Y's (the fixed order makes the interval a function of the seed)
    boot = np.mean([_improvement(_resample(x, int(reps), rng), _resample(y, int(reps), rng)) for x, y in zip(xs, ys)], axis=0)
    low, high = _percentiles(boot, ci)
    return point, float(low), float(high)


def _fraction_above(runs: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of runs (last axis of ``runs``) scoring strictly above each τ: shape (..., len(taus))."""
    return np.mean(runs[..., :, None] > taus, axis=-2)


def performance_profile(
    scores_by_task: Mapping[str, ArrayLike],
    taus: ArrayLike,
    reps: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Performance profile (run-score distribution) of one algorithm, with a pointwise interval.

    At each threshold τ the profile is the fraction of runs whose score is strictly above τ,
    taken per task and averaged over tasks (with the same number of runs on every task this is
    the fraction of all runs above τ, ``rliable``'s ``score_distributions``). The band is
    pointwise: per τ, the percentiles of a stratified bootstrap that resamples each task's runs.

    Args:
        scores_by_task: task name -> 1-D array of one score per run (seed).
        taus: 1-D grid of thresholds, in the scores' units.
        reps: number of bootstrap resamples.
        ci: coverage of the interval, in (0, 1).
        seed: seed of the resampling generator (tasks are visited in sorted name order).

    Returns:
        ``(profile, low, high)``, each of shape (len(taus),), fractions in [0, 1]; the profile
        does not increase with τ.

    Raises:
        UserError: no tasks, a task without runs, a non-finite score or τ, no τ, or bad
            ``reps``/``ci``.
    """
    what = "performance_profile"
    _check_bootstrap(reps, ci, what)
    grid = _finite_1d(taus, f"{what}: taus")
    _, per_task = _tasks(scores_by_task, what)
    profile = np.mean([_fraction_above(runs, grid) for runs in per_task], axis=0)

    rng = np.random.default_rng(seed)
    boot = np.mean([_fraction_above(_resample(runs, int(reps), rng), grid) for runs in per_task], axis=0)  # (reps, taus)
    low, high = _percentiles(boot, ci)
    return profile, low, high


def holm_bonferroni(pvalues: ArrayLike) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (Holm 1979).

    With the m p-values sorted, p_(1) ≤ … ≤ p_(m), the adjusted value of p_(k) is
    max over j ≤ k of min(1, (m − j + 1) · p_(j)). Rejecting every hypothesis whose adjusted
    p is at most α keeps the probability of any false rejection in the family at most α, whatever
    the dependence between the tests; it rejects all that Bonferroni (m · p ≤ α) rejects, and
    possibly more.

    Args:
        pvalues: 1-D p-values of the family, in [0, 1]; may be empty.

    Returns:
        The adjusted p-values, in the input's order.

    Raises:
        UserError: a p-value that is not a number in [0, 1].
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if not np.all((p >= 0.0) & (p <= 1.0)):  # NaN fails both comparisons
        raise UserError(f"holm_bonferroni: p-values must lie in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(steps)  # step-down: never below an earlier step
    return adjusted
