"""Aggregates of scores: mean ± std over seeds, IQM with a bootstrap interval (the scores themselves
are normalized where runs are scored: :func:`mabcq_bench.runs.execute.normalized_score`).

Everything here is plain numpy/scipy on arrays of numbers; reading results and writing tables is
:mod:`mabcq_bench.report.leaderboard`'s job.

The robust aggregate follows Agarwal et al. (2021, "Deep RL at the edge of the statistical
precipice", the method of ``rliable``): the interquartile mean (IQM) of all runs of all tasks,
with a percentile interval from a *stratified* bootstrap that resamples the seeds of every task
separately, so every resample keeps each task's number of runs. It is computed here with
numpy/scipy (``rliable``'s dependencies do not import under pandas 3).
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
    if not scores_by_task:
        raise UserError("stratified_bootstrap_iqm: no tasks")
    if int(reps) != reps or reps < 1:
        raise UserError(f"stratified_bootstrap_iqm: reps must be a positive integer, got {reps}")
    if not 0.0 < ci < 1.0:
        raise UserError(f"stratified_bootstrap_iqm: ci must lie in (0, 1), got {ci}")
    tasks = sorted(scores_by_task)
    per_task = [_finite_1d(scores_by_task[t], f"scores of task {t!r}") for t in tasks]
    point = float(stats.trim_mean(np.concatenate(per_task), 0.25))

    rng = np.random.default_rng(seed)
    # (reps, n_task) draws per task, pooled along the run axis -> (reps, total runs).
    resampled = np.concatenate([s[rng.integers(0, s.size, size=(int(reps), s.size))] for s in per_task], axis=1)
    boot = stats.trim_mean(resampled, 0.25, axis=1)
    low, high = np.percentile(boot, [50.0 * (1.0 - ci), 50.0 * (1.0 + ci)])
    return point, float(low), float(high)
