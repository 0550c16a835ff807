"""Where two algorithms separate: the smallest training budget from which one beats the other.

A leaderboard's final scores say who is ahead at the tier's budget; whether that budget is large
enough to tell the algorithms apart is a different question. Every run records its learning curve
(the normalized score every ``eval_every`` updates), so the same runs answer it for every smaller
budget as well:

- at each evaluation point, variant A is *above* B when every seed of A scores higher than every
  seed of B. With 3 seeds against 3 this is the one-sided exact Mann–Whitney test at its smallest
  attainable p = 1/20 = 0.05 (it is the only ordering of the six runs that gives that p);
- A *separates from* B at budget u when A is above B at u and at every later evaluation point, so
  a lucky crossing half-way through training does not count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from scipy.stats import mannwhitneyu

if TYPE_CHECKING:
    from mabcq_bench.report.tables import Leaderboard

SCORE, GAP = "normalized_score", "coordination_gap"

#: Runs each side needs before a separation is called (with fewer, "every seed above every seed"
#: is too easy to meet by chance: 1 v 3 happens with probability 1/4).
MIN_RUNS = 3

#: The comparisons the paper's claims are about: (A, B, curve quantity). Scores: Figure 2 and the
#: ablations; the coordination gap of MABCQ against MABCQ without λ_tn: Figure 3 (lower is the claim).
PAIRS: tuple[tuple[str, str, str], ...] = (
    ("mabcq", "bcq", SCORE),
    ("mabcq", "ddpg", SCORE),
    ("mabcq", "behavior", SCORE),
    ("mabcq", "mabcq-no-vd", SCORE),
    ("mabcq", "mabcq-no-tn", SCORE),
    ("bcq", "behavior", SCORE),
    ("mabcq", "mabcq-no-tn", GAP),
)


@dataclass(frozen=True)
class Separation:
    """How variant ``a`` compares with variant ``b`` on one task over training."""

    task: str
    a: str
    b: str
    n_a: int
    n_b: int
    key: str  # the curve quantity compared
    updates: tuple[int, ...]  # evaluation points both variants' runs all have
    mean_a: tuple[float, ...]
    mean_b: tuple[float, ...]
    p_final: float  # one-sided exact Mann–Whitney p of "a > b" at the last common point
    above_from: int | None  # smallest budget from which every seed of a stays above every seed of b
    below_from: int | None  # the same with a below b

    @property
    def verdict(self) -> str:
        if min(self.n_a, self.n_b) < MIN_RUNS:
            return f"too few runs to tell (needs {MIN_RUNS} each)"
        if self.above_from is not None:
            return f"{self.a} above from {self.above_from:,} updates"
        if self.below_from is not None:
            return f"{self.a} below from {self.below_from:,} updates"
        return "not separated"


def _per_seed(recs: Sequence[dict], key: str) -> dict[int, np.ndarray]:
    """Evaluation point -> the runs' values of ``key`` there (points every run has a number at)."""
    curves = [{int(p["updates"]): float(p[key]) for p in rec["curve"] if p.get(key) is not None} for rec in recs]
    common = set.intersection(*(set(c) for c in curves))
    return {u: np.array([c[u] for c in curves]) for u in sorted(common)}


def _first_of_final_streak(flags: Sequence[bool], points: Sequence[int]) -> int | None:
    """The first point of the run of True values that reaches the end (None if the last is False)."""
    start = None
    for flag, u in zip(flags, points):
        start = (start if start is not None else u) if flag else None
    return start


def compare(board: "Leaderboard", task: str, a: str, b: str, key: str = SCORE) -> Separation | None:
    """Compare two variants' ``key`` curves on one task; None when either has no runs there or
    they share no evaluation point."""
    ra, rb = board.runs.get((task, a)), board.runs.get((task, b))
    if not ra or not rb:
        return None
    sa, sb = _per_seed(ra, key), _per_seed(rb, key)
    points = [u for u in sa if u in sb]
    if not points:
        return None
    above = [bool(sa[u].min() > sb[u].max()) for u in points]
    below = [bool(sa[u].max() < sb[u].min()) for u in points]
    last = points[-1]
    p = float(mannwhitneyu(sa[last], sb[last], alternative="greater", method="exact").pvalue)
    return Separation(
        task, a, b, len(ra), len(rb), key, tuple(points),
        tuple(float(sa[u].mean()) for u in points), tuple(float(sb[u].mean()) for u in points),
        p, _first_of_final_streak(above, points), _first_of_final_streak(below, points),
    )


def separations(board: "Leaderboard", pairs: Sequence[tuple[str, str, str]] = PAIRS) -> list[Separation]:
    """Every comparison of ``pairs`` on every task of the board where both variants have runs."""
    return [s for task in board.tasks for a, b, key in pairs if (s := compare(board, task, a, b, key)) is not None]


def format_markdown(seps: Sequence[Separation]) -> str:
    """The "where they separate" section of ``<tier>.md``."""
    if not seps:
        return ""
    lines = [
        "## Where the algorithms separate",
        "",
        "From the learning curves of the same runs: *above from u* means every seed of the first variant has a "
        "higher value (score, or coordination gap) than every seed of the second at u updates and at every later evaluation (with 3 seeds against 3, "
        "the one-sided exact Mann–Whitney test at p = 0.05). p is that test's p-value at the last evaluation.",
        "",
        "| task | comparison | quantity | mean at the end | p (end) | separation |",
        "|---|---|---|---:|---:|---|",
    ]
    for s in seps:
        means = f"{s.mean_a[-1]:.1f} vs {s.mean_b[-1]:.1f} at {s.updates[-1]:,}"
        what = "score" if s.key == SCORE else "coord. gap" if s.key == GAP else s.key
        lines.append(f"| {s.task} | {s.a} vs {s.b} ({s.n_a} v {s.n_b} runs) | {what} | {means} | {s.p_final:.2f} | {s.verdict} |")
    return "\n".join(lines) + "\n"

