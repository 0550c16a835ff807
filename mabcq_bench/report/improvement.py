"""Probability of improvement for the comparisons of the separation table, on final values.

Where :mod:`~mabcq_bench.report.separation` asks *from which budget* one variant beats another,
task by task, this asks *how likely* a run of one does better than a run of the other at the
tier's budget, over all tasks at once: for every pair (A, B, quantity) the separation table
shows, P(A better than B) of :func:`mabcq_bench.report.aggregate.probability_of_improvement`
(Agarwal et al. 2021) on the runs' final values, over the tasks where both have runs, with the
board's stratified-bootstrap settings. "Better" is a higher normalized score and a *lower*
coordination gap (:data:`~mabcq_bench.report.separation.LOWER_IS_BETTER`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mabcq_bench.report.aggregate import probability_of_improvement
from mabcq_bench.report.records import _optional_number
from mabcq_bench.report.separation import GAP, LOWER_IS_BETTER, PAIRS, SCORE

if TYPE_CHECKING:
    from mabcq_bench.report.tables import Leaderboard


@dataclass(frozen=True)
class Improvement:
    """P(a better than b) on one quantity's final values, over the tasks both have runs on."""

    a: str
    b: str
    key: str  # the final quantity compared: normalized_score or coordination_gap
    tasks: tuple[str, ...]  # tasks with final values of both, in table order
    n_a: int  # runs of a on those tasks
    n_b: int
    p: float  # probability of improvement, in [0, 1]; 0.5 when neither tends to do better
    low: float  # percentile interval of the stratified bootstrap
    high: float


def _finals(recs: Sequence[dict], key: str) -> np.ndarray:
    """The runs' final values of ``key`` that are numbers (an algorithm without a Q has no gap)."""
    values = np.array([_optional_number(rec["final"].get(key)) for rec in recs], dtype=np.float64)
    return values[np.isfinite(values)]


def improvements(board: "Leaderboard", pairs: Sequence[tuple[str, str, str]] = PAIRS) -> list[Improvement]:
    """P(A better than B) for every pair with final values of both variants on some task.

    Args:
        board: the tier's table; its ``reps``, ``ci`` and ``boot_seed`` set the bootstrap (every
            pair is resampled with that seed, so the table is a function of the records).
        pairs: (A, B, quantity) as in :data:`~mabcq_bench.report.separation.PAIRS`.

    Returns:
        One :class:`Improvement` per pair, in ``pairs`` order; a pair without a task where both
        have final values is left out.
    """
    out = []
    for a, b, key in pairs:
        xs, ys = {}, {}
        for task in board.tasks:
            x, y = (_finals(board.runs.get((task, v)) or [], key) for v in (a, b))
            if x.size and y.size:
                xs[task], ys[task] = x, y
        if not xs:
            continue
        sign = -1.0 if key in LOWER_IS_BETTER else 1.0  # "better" is then "lower": P(-x > -y) = P(x < y)
        p, low, high = probability_of_improvement(
            {t: sign * x for t, x in xs.items()}, {t: sign * y for t, y in ys.items()}, reps=board.reps, ci=board.ci, seed=board.boot_seed,
        )
        n_a, n_b = sum(x.size for x in xs.values()), sum(y.size for y in ys.values())
        out.append(Improvement(a, b, key, tuple(xs), n_a, n_b, p, low, high))
    return out


def format_markdown(imps: Sequence[Improvement], board: "Leaderboard") -> str:
    """The "probability of improvement" section of ``<tier>.md`` ("" when there is no comparison)."""
    if not imps:
        return ""
    lines = [
        "## Probability of improvement",
        "",
        "P(A better than B), Agarwal et al. (2021): on each task, the probability that a run of A has a better final value "
        "than a run of B (a higher score; a lower coordination gap), ties counting ½, i.e. the Mann–Whitney U statistic over "
        "the number of pairs of runs; then the mean over the tasks where both have runs, each task weighing the same. "
        "0.5: neither tends to do better; 1: every run of A beats every run of B on every task. "
        f"[low, high]: {board.ci * 100:g}% percentile interval of a stratified bootstrap ({board.reps} resamples of each "
        f"variant's runs within each task, generator seed {board.boot_seed}). Each interval holds for its own comparison; "
        "they are not adjusted for multiple comparisons.",
        "",
        "| comparison | quantity | tasks | runs | P(A better than B) [low, high] |",
        "|---|---|---|---:|---:|",
    ]
    for imp in imps:
        what = "score" if imp.key == SCORE else "coord. gap" if imp.key == GAP else imp.key
        tasks = f"all {len(imp.tasks)}" if len(imp.tasks) == len(board.tasks) > 1 else ", ".join(imp.tasks)  # never "all 1"
        lines.append(f"| {imp.a} vs {imp.b} | {what} | {tasks} | {imp.n_a} v {imp.n_b} | {imp.p:.2f} [{imp.low:.2f}, {imp.high:.2f}] |")
    return "\n".join(lines) + "\n"
