"""Where training has converged: the budget from which the score stops moving and Q̂ stops moving.

A tier's ``updates`` should sit where the learners have converged, not where their critics are
still climbing (issue: at lite's first 10k updates Q̂ rose linearly in every run). From the runs
of a long tier this module finds, per task and variant, the smallest budget ``U`` on the
evaluation grid from which both of these hold:

- the score stops moving: on the seed-mean curve ``m_k`` at points ``u_k``, ``U`` is the first
  point at which (1) the score is at its final level and (2) a straight line fitted to the curve
  from ``U`` to the end predicts no change. (1): the final level ``L`` is the mean of the points of
  the last fifth (``u ≥ 0.8 u_last``, ``n_L`` of them); the trailing window ``W`` is the mean of
  the points in ``[0.8 U, U]`` and at least the last :data:`SMOOTH` (``n`` in all);
  ``|W − L| ≤ max(SCORE_POINTS, SDS σ √(1/n + 1/n_L))``. (2): the least-squares line over the
  points in ``[U, u_last]`` predicts the change ``Δ = slope (u_last − U)``, with standard error
  ``SE = σ (u_last − U) / √Σ(u − ū)²``; ``|Δ| ≤ max(SCORE_POINTS, SDS SE)`` (two-sided: a late
  descent also moves). Candidates ``U`` have a full window (from the :data:`SMOOTH`-th point on)
  and leave at least :data:`MIN_POINTS` points and the last fifth to the line (``U ≤ 0.8 u_last``). ``σ`` is the curve's
  checkpoint-to-checkpoint sd, from its successive differences over its second half
  (``σ² = mean((m_{k+1} − m_k)²) / 2``, which a slow trend barely moves); it shrinks with more
  seeds because ``m`` is their mean. (1) alone would accept a curve on its way down through
  ``L``; (2) alone would accept the tail of a rise, which a line over a long flat stretch barely
  tilts for (``tools/plateau_rules.py`` measures both, and the old rule of (1) at every later point);
- Q̂ (the critic's batch mean, ``values/q_mean``, averaged over seeds) moved by less than
  :data:`Q_FRACTION` of its value over the last fifth of training, from ``0.8 U`` to ``U``, at
  ``U`` and every later point, read off the curve by linear interpolation between evaluation points.

A learner without Q̂ is judged on its score alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

from mabcq_bench.report.tables import curve_stats
from mabcq_bench.util import run_times

if TYPE_CHECKING:
    from mabcq_bench.report.tables import Leaderboard

#: The least tolerance of the score's checks (normalized points), however quiet the curve.
SCORE_POINTS = 2.0
#: The score's tolerances in standard errors (of the window's distance from L, of the line's change).
SDS = 2.0
#: The fewest evaluation points a line is fitted to.
MIN_POINTS = 6
#: The last fifth of training may move Q̂'s mean by less than this fraction of its value.
Q_FRACTION = 0.05
#: The fewest learning-curve evaluations in a trailing window (and in the smoothed score of the
#: "score move" column).
SMOOTH = 3
#: The learner metric that is Q̂.
Q_METRIC = "values/q_mean"


@dataclass(frozen=True)
class Plateau:
    """The convergence of one variant on one task, from its runs' curves (scores in normalized points)."""

    task: str
    variant: str
    runs: int
    last: int  # the last evaluation point all runs have
    score_from: int | None  # first budget at which the score is at its final level and the line after it is flat
    q_from: int | None  # first budget from which Q̂'s criterion holds to the end (None also without Q̂)
    score_move: float  # the smoothed score's move over the last fifth of the whole curve
    q_move: float | None  # Q̂'s relative move over that fifth
    level: float  # the final level L: the seed-mean score over the last fifth of the run
    sigma: float  # the seed-mean curve's checkpoint-to-checkpoint sd, from successive differences
    change: float  # the line's predicted change from score_from to the end (from the last candidate without one)
    change_tol: float  # its tolerance there, max(SCORE_POINTS, SDS SE)

    @property
    def budget(self) -> int | None:
        """From where both hold (the score alone for a learner without Q̂)."""
        if self.score_from is None or (self.q_move is not None and self.q_from is None):
            return None
        return max(self.score_from, self.q_from or 0)


def _smoothed(values: np.ndarray) -> np.ndarray:
    """Trailing mean over :data:`SMOOTH` points (fewer at the start)."""
    sums = np.cumsum(values)
    out = np.empty_like(values, dtype=np.float64)
    for i in range(len(values)):
        lo = max(0, i - SMOOTH + 1)
        out[i] = (sums[i] - (sums[lo - 1] if lo else 0.0)) / (i - lo + 1)
    return out


def _fifth_moves(updates: np.ndarray, values: np.ndarray, relative: bool) -> np.ndarray:
    """At every evaluation point U, how far ``values`` moved from ``0.8 U`` to ``U``."""
    earlier = np.interp(0.8 * updates, updates, values)
    moves = np.abs(values - earlier)
    return moves / np.maximum(np.abs(values), 1e-12) if relative else moves


def _holds_from(updates: np.ndarray, ok: np.ndarray) -> int | None:
    """The first evaluation point from which ``ok`` holds at every later point."""
    if not ok[-1]:
        return None
    first = len(ok) - 1
    while first > 0 and ok[first - 1]:
        first -= 1
    return int(updates[first])


def _noise_sd(values: np.ndarray) -> float:
    """The checkpoint-to-checkpoint sd of a curve, from its successive differences over its
    second half: two independent draws of sd σ differ by a variance of 2σ², and a slow trend adds
    only its squared step to each difference."""
    steps = np.diff(values[len(values) // 2 :])
    return float(np.sqrt(np.mean(steps**2) / 2)) if len(steps) else 0.0


def _trailing_windows(updates: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At every point ``u_i``, the mean of ``values`` over the points in ``[0.8 u_i, u_i]`` (and at
    least the last :data:`SMOOTH`), and how many points that is. ``updates`` are integers, so
    ``5 u ≥ 4 u_i`` decides membership exactly."""
    index = np.arange(len(values))
    lo = np.minimum(np.searchsorted(5 * updates, 4 * updates, side="left"), np.maximum(0, index - SMOOTH + 1))
    sums = np.concatenate([[0.0], np.cumsum(values)])
    counts = index + 1 - lo
    return (sums[index + 1] - sums[lo]) / counts, counts


class ScoreFit(NamedTuple):
    """Where a score curve stops moving, with what the page shows of its checks."""

    score_from: int | None  # the first candidate U passing both checks, None if none does
    level: float  # L, the mean of the last fifth
    sigma: float  # σ, the checkpoint-to-checkpoint sd
    change: float  # Δ at score_from, else at the last candidate (NaN without candidates)
    change_tol: float  # max(SCORE_POINTS, SDS SE) there


def _line_change(updates: np.ndarray, values: np.ndarray, sigma: float) -> tuple[float, float]:
    """The change a least-squares line over the points predicts from the first to the last, and
    its standard error for points of independent noise ``sigma``: slope (u_last − u_0), with
    var(slope) = σ² / Σ(u − ū)²."""
    du = updates - updates.mean()
    sxx = float(np.sum(du**2))
    slope = float(np.sum(du * (values - values.mean()))) / sxx
    span = float(updates[-1] - updates[0])
    return slope * span, float(sigma * span / np.sqrt(sxx))


def stops_moving(updates: np.ndarray, values: np.ndarray) -> ScoreFit:
    """Where the curve ``values`` (seed means, normalized points) at the integer evaluation points
    ``updates`` stops moving: the first candidate at its final level with a flat line after it
    (see the module's docstring)."""
    last_fifth = 5 * updates >= 4 * updates[-1]
    level, n_level = float(values[last_fifth].mean()), int(last_fifth.sum())
    sigma = _noise_sd(values)
    windows, counts = _trailing_windows(updates, values)
    at_level = np.abs(windows - level) <= np.maximum(SCORE_POINTS, SDS * sigma * np.sqrt(1.0 / counts + 1.0 / n_level))
    change, tol = float("nan"), float("nan")
    # candidates have a full trailing window before them and MIN_POINTS and the last fifth after them
    for i in range(SMOOTH - 1, len(values) - MIN_POINTS + 1):
        if 5 * updates[i] > 4 * updates[-1]:
            break
        change, se = _line_change(updates[i:].astype(np.float64), values[i:], sigma)
        tol = max(SCORE_POINTS, SDS * se)
        if at_level[i] and abs(change) <= tol:
            return ScoreFit(int(updates[i]), level, sigma, change, tol)
    return ScoreFit(None, level, sigma, change, tol)


def _q_curve(recs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    """Q̂'s mean over seeds at the evaluation points every run has, or None without Q̂."""
    per_run = [{int(m["update"]): m[Q_METRIC] for m in r.get("metrics", []) if Q_METRIC in m} for r in recs]
    common = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    if not common:
        return None
    return np.array(common, dtype=np.float64), np.array([[d[u] for u in common] for d in per_run]).mean(axis=0)


def plateau(recs: Sequence[dict], task: str, variant: str) -> Plateau | None:
    """The :class:`Plateau` of one cell's runs; None when their curves share fewer than 3 points."""
    stats = curve_stats(recs, "normalized_score")
    if stats is None or len(stats[0]) < 3:
        return None
    updates, mean, _ = stats
    updates = updates.astype(np.int64)
    fit = stops_moving(updates, mean)
    score_move = float(_fifth_moves(updates.astype(np.float64), _smoothed(mean), relative=False)[-1])
    q_from, q_move = None, None
    q = _q_curve(recs)
    if q is not None and len(q[0]) >= 3:
        q_moves = _fifth_moves(q[0], q[1], relative=True)
        q_from, q_move = _holds_from(q[0], q_moves < Q_FRACTION), float(q_moves[-1])
    return Plateau(
        task, variant, len(recs), int(updates[-1]), fit.score_from, q_from, score_move, q_move, fit.level, fit.sigma, fit.change, fit.change_tol
    )


def plateaus(board: "Leaderboard") -> list[Plateau]:
    """Every cell's :class:`Plateau`, tasks in column order, variants in row order."""
    out = []
    for task in board.tasks:
        for row in board.rows:
            recs = board.runs.get((task, row.variant))
            if recs and (p := plateau(recs, task, row.variant)) is not None:
                out.append(p)
    return out


def format_markdown(plats: Sequence[Plateau]) -> str:
    """The "where training converges" section of ``<tier>.md``."""
    plats = [p for p in plats if p.runs]
    if not plats:
        return ""

    def at(u: int | None, last: int) -> str:
        return f"{u:,}" if u is not None else f"not within {last:,}"

    lines = [
        "## Where training converges",
        "",
        "The smallest budget U at which the score has stopped moving and from which Q̂ (the critic's batch mean, over "
        "seeds) has stopped moving. On the score's mean over seeds: the final level L is its mean over the last fifth of the "
        "run (n_L evaluations), and σ its sd from one evaluation to the next, from the differences between successive "
        "evaluations over the second half of the curve (σ² = half their mean square). The score has stopped moving at the "
        f"first U at which both (1) its mean over 0.8 U to U (at least the last {SMOOTH} evaluations, n in all) is within "
        f"max({SCORE_POINTS:g}, {SDS:g}σ √(1/n + 1/n_L)) points of L and (2) a straight line fitted to it from U to the last "
        f"evaluation predicts a change Δ (its slope times the span) of at most max({SCORE_POINTS:g}, {SDS:g} SE) points "
        f"either way, SE = σ · span / √Σ(u − ū)². Candidates U have a full window (at least {SMOOTH} evaluations up to U) and "
        f"leave the line the last fifth of the run and {MIN_POINTS} evaluations at least. The column *Δ ± tol* gives that "
        "change and its tolerance at U (where no U qualifies: over the last fifth). Q̂ has stopped moving from U when it moved by less than {Q_FRACTION:.0%} from 0.8 u to u "
        f"at U and every later u. The last two columns are the moves over the last fifth of the whole curve (the score's "
        f"smoothed over {SMOOTH} evaluations). How this rule and the one it replaced do on curves of known shape: "
        "`python tools/plateau_rules.py`.",
        "",
        "| task | variant | runs | score stops moving from | final level | σ | Δ ± tol | Q̂ plateaus from | both from | score move | Q̂ move |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in plats:
        q_move = "–" if p.q_move is None else f"{p.q_move:.1%}"
        q_from = "–" if p.q_move is None else at(p.q_from, p.last)
        change = "–" if np.isnan(p.change) else f"{p.change:+.1f} ± {p.change_tol:.1f}"
        lines.append(
            f"| {p.task} | {p.variant} | {p.runs} | {at(p.score_from, p.last)} | {p.level:.1f} | {p.sigma:.1f} | {change} | "
            f"{q_from} | {at(p.budget, p.last)} | {p.score_move:.1f} | {q_move} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Spread:
    """How much a cell's score moves from checkpoint to checkpoint against from episode to
    episode, over the last fifth of its runs' curves (normalized points, means over runs)."""

    task: str
    variant: str
    runs: int
    checkpoint_sd: float  # sd of the curve's scores (each the mean of ``episodes`` episodes)
    episode_sd: float  # sd of one episode's score at one checkpoint
    episodes: int  # episodes per curve evaluation

    @property
    def policy_sd(self) -> float:
        """The checkpoints' own spread: what is left of ``checkpoint_sd`` once the episodes'
        share (``episode_sd² / episodes``) is taken out. The curve plays the same seeds at every
        checkpoint, so the episodes' share is smaller than that and this a lower bound."""
        return float(np.sqrt(max(0.0, self.checkpoint_sd**2 - self.episode_sd**2 / self.episodes)))

    def error_sd(self, episodes: int, checkpoints: int) -> float:
        """The sd of a score from ``episodes`` episodes in equal shares at ``checkpoints``
        checkpoints (protocol 2: 50 at 1; protocol 3: 50 at 5)."""
        return float(np.sqrt(self.policy_sd**2 / checkpoints + self.episode_sd**2 / episodes))


def _normalized(returns: Sequence[float], rec: dict) -> np.ndarray:
    lo, hi = rec["ref_min_score"], rec["ref_max_score"]
    return 100.0 * (np.asarray(returns, dtype=np.float64) - lo) / (hi - lo)


def spread(recs: Sequence[dict], task: str, variant: str) -> Spread | None:
    """The :class:`Spread` of one cell; None without 5 curve points in its last fifth. The
    episodes' sd comes from the curve's own episodes where records keep them, else from the
    final evaluation's."""
    ckpt, eps, n = [], [], []
    for rec in recs:
        curve = rec.get("curve", [])
        tail = [p for p in curve if p["updates"] >= 0.8 * curve[-1]["updates"]] if curve else []
        if len(tail) < 5:
            return None
        ckpt.append(np.std([p["normalized_score"] for p in tail], ddof=1))
        per_point = [np.std(_normalized(p["returns"], rec), ddof=1) for p in tail if len(p.get("returns", [])) > 1]
        final = rec.get("final", {}).get("returns", [])
        episodes = rec.get("protocol", {}).get("eval_episodes")
        if not episodes or not (per_point or len(final) > 1):  # records of protocol 1 keep neither
            return None
        eps.append(np.mean(per_point) if per_point else np.std(_normalized(final, rec), ddof=1))
        n.append(int(episodes))
    return Spread(task, variant, len(recs), float(np.mean(ckpt)), float(np.mean(eps)), min(n))


def spreads(board: "Leaderboard") -> list[Spread]:
    """Every cell's :class:`Spread`, tasks in column order, variants in row order."""
    return [
        s
        for task in board.tasks
        for row in board.rows
        if (recs := board.runs.get((task, row.variant))) and (s := spread(recs, task, row.variant)) is not None
    ]


def format_spreads(items: Sequence[Spread], episodes: int = 50, checkpoints: int = 5) -> str:
    """The "checkpoints against episodes" section of a study's page."""
    if not items:
        return ""
    lines = [
        "## Checkpoints against episodes",
        "",
        "Over the last fifth of each curve: the sd of the evaluations' scores from one checkpoint to the next, the sd of one "
        "episode's score, and what the checkpoints add of their own (a lower bound: the curve plays the same seeds at every "
        f"checkpoint). The last two columns are the sd of a score of {episodes} episodes at the last checkpoint (protocol 2) "
        f"and in equal shares at the last {checkpoints} (protocol 3), from these spreads.",
        "",
        "| task | variant | runs | checkpoint sd | episode sd | checkpoints' own sd | score sd, 1 checkpoint | score sd, 5 checkpoints |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in items:
        lines.append(
            f"| {s.task} | {s.variant} | {s.runs} | {s.checkpoint_sd:.1f} | {s.episode_sd:.1f} | {s.policy_sd:.1f} | "
            f"{s.error_sd(episodes, 1):.1f} | {s.error_sd(episodes, checkpoints):.1f} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Cost:
    """What a cell's runs cost, from the times they recorded (means over runs).

    Those with CPU times where any has them, else all of them on wall time
    (:func:`mabcq_bench.util.run_times`): ``runs`` counts the runs used.
    """

    task: str
    variant: str
    runs: int
    update_ms: float  # training time per update (all agents), evaluations taken out
    evaluation_s: float  # one learning-curve evaluation (its episodes and the diagnostic)
    eval_share: float  # the evaluations' (curve and final) share of the run's training time
    clock: str  # "cpu": the process's CPU time; "wall": wall time, which also counts pauses and a shared core


def cost(recs: Sequence[dict], task: str, variant: str) -> Cost | None:
    """The :class:`Cost` of one cell; None where a record of it predates per-evaluation times."""
    times = [run_times(rec) for rec in recs]
    if any(t is None for t in times):
        return None
    timed = [(rec, t) for rec, t in zip(recs, times) if t is not None]
    timed = [(rec, t) for rec, t in timed if t.clock == "cpu"] or timed  # CPU times where any run has them: never the clocks mixed
    update_ms, each, share = [], [], []
    for rec, t in timed:
        evaluations = sum(t.curve_s) + t.final_s
        update_ms.append(1000.0 * (t.train_s - evaluations) / rec["updates"])
        each.append(float(np.mean(t.curve_s)))
        share.append(evaluations / t.train_s)
    return Cost(task, variant, len(timed), float(np.mean(update_ms)), float(np.mean(each)), float(np.mean(share)), timed[0][1].clock)


def format_costs(board: "Leaderboard") -> str:
    """The "what a run costs" section of a tier's page (cells whose records time their evaluations)."""
    items = [
        c
        for task in board.tasks
        for row in board.rows
        if (recs := board.runs.get((task, row.variant))) and (c := cost(recs, task, row.variant)) is not None
    ]
    if not items:
        return ""
    lines = [
        "## What a run costs",
        "",
        "From the times the runs recorded on the machine they ran on: training time per update of all the task's agents "
        "with the evaluations taken out, the time of one learning-curve evaluation, and the evaluations' share of the run. "
        "Clock: cpu where the runs kept their process's CPU time (what a run took of a core, whatever else the machine did), "
        "else wall (their wall time, which also counts pauses and a shared core).",
        "",
        "| task | variant | runs | ms per update | s per evaluation | evaluations' share | clock |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [f"| {c.task} | {c.variant} | {c.runs} | {c.update_ms:.1f} | {c.evaluation_s:.1f} | {c.eval_share:.1%} | {c.clock} |" for c in items]
    return "\n".join(lines) + "\n"
