"""Where two algorithms separate: the smallest training budget from which one beats the other.

A leaderboard's final scores say who is ahead at the tier's budget; whether that budget is large
enough to tell the algorithms apart is a different question. Every run records its learning curve
(the normalized score every ``eval_every`` updates), so the same runs answer it for every smaller
budget as well:

- at each evaluation point, variant A is *above* B when every seed of A scores higher than every
  seed of B (with 3 seeds against 3, the only ordering of the six runs whose one-sided exact
  Mann–Whitney p is the smallest attainable, 1/20 = 0.05);
- A is *ordered above* B from budget u when A is above B at u and at every later evaluation
  point, so a lucky crossing half-way through training does not count;
- the test: a one-sided exact Mann–Whitney test, at the last evaluation point, of "A is better
  than B" (a higher score; a *lower* coordination gap, the paper's claim for λ_tn). The direction
  is fixed by the pair, never chosen after looking at the data;
- a table makes many such tests, so its p-values are adjusted with Holm–Bonferroni over the
  family of all its comparisons (every pair on every task with enough runs, :func:`separations`):
  A *separates from* B when it is ordered better from some budget on **and** the adjusted p is at
  most :data:`ALPHA`. The family-wise error rate of the table's verdicts is then at most ALPHA.

A consequence worth knowing: with n_a against n_b runs no p can be below 1/C(n_a + n_b, n_a), so
3 seeds against 3 (0.05) pass in a family of one only, and 5 against 5 (1/252) in a family of at
most 12. The Markdown says when a table's runs cannot reach a verdict at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import comb
from typing import TYPE_CHECKING, Sequence

import numpy as np
from scipy.stats import mannwhitneyu

from mabcq_bench.report.aggregate import holm_bonferroni

if TYPE_CHECKING:
    from mabcq_bench.report.tables import Leaderboard

SCORE, GAP = "normalized_score", "coordination_gap"

#: Quantities where lower is better: a pair (A, B, quantity) tests "A better than B".
LOWER_IS_BETTER = frozenset({GAP})

#: Family-wise error rate of a table's verdicts (Holm–Bonferroni over its comparisons).
ALPHA = 0.05

#: Runs each side needs before a separation is called (with fewer, "every seed above every seed"
#: is too easy to meet by chance: 1 v 3 happens with probability 1/4).
MIN_RUNS = 3

#: The comparisons the paper's claims are about: (A, B, curve quantity). Scores: Figure 2 and the
#: ablations; the coordination gap of MABCQ against MABCQ without λ_tn: Figure 3 (lower is the claim).
PAIRS: tuple[tuple[str, str, str], ...] = (
    ("mabcq", "bcq", SCORE),
    ("mabcq", "ddpg", SCORE),
    ("mabcq", "behavior", SCORE),
    ("mabcq", "bc", SCORE),
    ("mabcq", "mabcq-no-vd", SCORE),
    ("mabcq", "mabcq-no-tn", SCORE),
    ("bcq", "behavior", SCORE),
    ("mabcq", "mabcq-no-tn", GAP),
)


def _p_text(p: float) -> str:
    """A p-value for a table: two decimals, or two significant digits below 0.01 (1/252 = 0.004)."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.2g}"


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
    p_final: float  # one-sided exact Mann–Whitney p of "a better than b" at the last common point
    above_from: int | None  # smallest budget from which every seed of a stays above every seed of b
    below_from: int | None  # the same with a below b
    p_holm: float | None = None  # p_final adjusted over the family; None: too few runs, not tested
    family: int = 1  # number of comparisons the adjustment is over

    @property
    def tested(self) -> bool:
        """Whether the comparison has the runs for a verdict (and so belongs to the family)."""
        return min(self.n_a, self.n_b) >= MIN_RUNS

    @property
    def verdict(self) -> str:
        if not self.tested:
            return f"too few runs to tell (needs {MIN_RUNS} each)"
        lower = self.key in LOWER_IS_BETTER
        better, worse = ("below", "above") if lower else ("above", "below")
        better_from, worse_from = (self.below_from, self.above_from) if lower else (self.above_from, self.below_from)
        if better_from is not None:
            if self.p_holm is not None and self.p_holm <= ALPHA:
                return f"{self.a} {better} from {better_from:,} updates"
            return f"not significant: {self.a} {better} from {better_from:,} updates, Holm p {_p_text(self.p_holm)}"
        if worse_from is not None:
            return f"the other way: {self.a} {worse} from {worse_from:,} updates (untested)"
        return "not separated"


def exact_mann_whitney(x: np.ndarray, y: np.ndarray, alternative: str) -> tuple[float, float]:
    """The exact Mann–Whitney test of two groups of runs: ``(U of x, p)``.

    ``alternative``: ``"greater"`` (x tends higher), ``"less"`` or ``"two-sided"``, as in
    :func:`scipy.stats.mannwhitneyu`. The smallest attainable p with n_x against n_y runs is
    :func:`min_p` of them. Every Mann–Whitney p of the reports is made here."""
    res = mannwhitneyu(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), alternative=alternative, method="exact")
    return float(res.statistic), float(res.pvalue)


def min_p(n_x: int, n_y: int, alternative: str = "greater") -> float:
    """The smallest p :func:`exact_mann_whitney` can give with n_x against n_y runs: 1/C(n_x + n_y, n_x)
    one-sided, twice that two-sided."""
    return min(1.0, (2.0 if alternative == "two-sided" else 1.0) / comb(n_x + n_y, n_x))


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
    they share no evaluation point.

    On its own a comparison is a family of one (``p_holm`` is its raw p); :func:`separations`
    adjusts the p-values of a whole table together."""
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
    alternative = "less" if key in LOWER_IS_BETTER else "greater"
    p = exact_mann_whitney(sa[last], sb[last], alternative)[1]
    s = Separation(
        task, a, b, len(ra), len(rb), key, tuple(points),
        tuple(float(sa[u].mean()) for u in points), tuple(float(sb[u].mean()) for u in points),
        p, _first_of_final_streak(above, points), _first_of_final_streak(below, points),
    )
    return replace(s, p_holm=p if s.tested else None)


def separations(board: "Leaderboard", pairs: Sequence[tuple[str, str, str]] = PAIRS) -> list[Separation]:
    """Every comparison of ``pairs`` on every task of the board where both variants have runs,
    with Holm–Bonferroni within each task: the family is that task's comparisons that have
    enough runs for a verdict (a reader asks "on this task, which differences are real?")."""
    out = []
    for task in board.tasks:
        seps = [s for a, b, key in pairs if (s := compare(board, task, a, b, key)) is not None]
        family = [s for s in seps if s.tested]
        adjusted = iter(holm_bonferroni([s.p_final for s in family]).tolist()) if family else iter(())
        out += [replace(s, p_holm=next(adjusted) if s.tested else None, family=len(family)) for s in seps]
    return out


def _reachable(s: Separation) -> bool:
    """Whether the comparison's smallest attainable p, 1/C(n_a + n_b, n_a), survives Holm's first step."""
    return s.family * min_p(s.n_a, s.n_b) <= ALPHA


def format_markdown(seps: Sequence[Separation]) -> str:
    """The "where they separate" section of ``<tier>.md``."""
    if not seps:
        return ""
    family = [s for s in seps if s.tested]
    sizes = sorted({s.family for s in family})
    size_text = " or ".join(map(str, sizes)) if sizes else "0"
    lines = [
        "## Where the algorithms separate",
        "",
        "From the learning curves of the same runs: *above from u* means every seed of the first variant has a "
        "higher value (score, or coordination gap) than every seed of the second at u updates and at every later evaluation. "
        "p is the one-sided exact Mann–Whitney p at the last evaluation of \"the first is better\" (a higher score; a lower "
        "coordination gap). "
        f"Multiple comparisons: Holm–Bonferroni within each task, over that task's comparisons with at least {MIN_RUNS} runs a side "
        f"({size_text} per task; family-wise error rate ≤ {ALPHA:g} per task); a separation is called only when the Holm-adjusted p "
        f"is ≤ {ALPHA:g}. An ordering the other way is shown but not tested.",
    ]
    if family and not any(map(_reachable, family)):
        n_a, n_b = max(((s.n_a, s.n_b) for s in family), key=lambda n: comb(sum(n), n[0]))
        lines[-1] += (
            f" With these runs no comparison can pass: with {n_a} v {n_b} runs no p is below 1/{comb(n_a + n_b, n_a)}, "
            f"and {max(sizes)} × that is above {ALPHA:g}."
        )
    lines += [
        "",
        "| task | comparison | quantity | mean at the end | p | p (Holm) | separation |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for s in seps:
        means = f"{s.mean_a[-1]:.1f} vs {s.mean_b[-1]:.1f} at {s.updates[-1]:,}"
        what = "score" if s.key == SCORE else "coord. gap" if s.key == GAP else s.key
        holm = "–" if s.p_holm is None else _p_text(s.p_holm)
        lines.append(f"| {s.task} | {s.a} vs {s.b} ({s.n_a} v {s.n_b} runs) | {what} | {means} | {_p_text(s.p_final)} | {holm} | {s.verdict} |")
    return "\n".join(lines) + "\n"

