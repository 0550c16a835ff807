"""Where training converges (report/budget.py): the plateau criterion on curves whose answer is
known in closed form, and its section of the leaderboard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from test_leaderboard import make_record
from mabcq_bench.report import budget
from mabcq_bench.report.leaderboard import write_leaderboard
from mabcq_bench.report.tables import build_tables

GRID = list(range(2000, 60001, 2000))


def _record(seed: int, score, q, variant: str = "bcq") -> dict:
    rec = make_record("hopper", variant, seed, score(GRID[-1]), None)
    rec["curve"] = [{"updates": u, "return_mean": 10.0 * score(u), "normalized_score": score(u), "coordination_gap": None} for u in GRID]
    rec["metrics"] = [{"update": float(u), **({} if q is None else {"values/q_mean": q(u)})} for u in GRID]
    return rec


def _first_on_grid(ok) -> int:
    """The first grid point from which ``ok(u)`` holds to the end (what the criterion returns)."""
    start = None
    for u in GRID:
        if ok(u):
            start = u if start is None else start
        else:
            start = None
    return start


def test_an_exponential_approach_plateaus_where_its_closed_form_says():
    T = 12_000.0
    q = lambda u: 220.0 * (1 - math.exp(-u / T))  # noqa: E731
    score = lambda u: 60.0  # noqa: E731  (flat from the first evaluation)
    recs = [_record(s, score, q) for s in range(3)]
    (p,) = budget.plateaus(build_tables(recs, "lite", reps=20))
    # Q's relative move over the last fifth: (e^{-0.8U/T} − e^{-U/T}) / (1 − e^{-U/T}) < 5 %
    expected = _first_on_grid(lambda u: (math.exp(-0.8 * u / T) - math.exp(-u / T)) / (1 - math.exp(-u / T)) < 0.05)
    assert p.q_from == expected and 30_000 <= expected <= 40_000
    assert p.score_from == GRID[0] and p.budget == expected
    assert p.q_move == pytest.approx((math.exp(-0.8 * 60000 / T) - math.exp(-60000 / T)) / (1 - math.exp(-60000 / T)))


def test_a_still_climbing_critic_has_no_budget_and_a_late_climb_resets_it():
    linear = budget.plateau([_record(0, lambda u: 50.0, lambda u: u / 100.0)], "hopper", "bcq")
    assert linear.q_from is None and linear.budget is None and linear.q_move == pytest.approx(0.2)
    # flat score, then a climb of 10 points from 30k to 40k: the plateau must start after the climb
    late = lambda u: 50.0 if u <= 30_000 else 50.0 + min(10.0, (u - 30_000) / 1000.0)  # noqa: E731
    p = budget.plateau([_record(0, late, lambda u: 100.0)], "hopper", "bcq")
    assert p.q_from == GRID[0] and p.score_from is not None and p.score_from > 40_000


def test_a_learner_without_a_critic_is_judged_by_its_score():
    p = budget.plateau([_record(0, lambda u: 30.0, None, variant="bc")], "hopper", "bc")
    assert p.q_move is None and p.q_from is None and p.budget == p.score_from == GRID[0]


def test_the_leaderboard_has_the_section(tmp_path):
    T = 12_000.0
    recs = [_record(s, lambda u: 60.0, lambda u: 220.0 * (1 - math.exp(-u / T))) for s in range(2)]
    recs += [_record(s, lambda u: 50.0, lambda u: u / 100.0, variant="mabcq") for s in range(2)]
    write_leaderboard(recs, tmp_path, reps=20)
    md = (tmp_path / "lite.md").read_text()
    assert "## Where training converges" in md
    assert "| hopper | mabcq | 2 | 2,000 | not within 60,000 | not within 60,000 | 0.0 | 20.0% |" in md
    assert np.isfinite(budget.SCORE_POINTS)


def test_checkpoint_spread_is_split_from_the_episodes_spread():
    """Issue 24 (4): a curve whose checkpoints alternate ±a around a level while every episode
    of a checkpoint scores ±e around the checkpoint's mean: the checkpoint sd, the episode sd and
    the checkpoints' own share come out in closed form, and spreading 50 episodes over 5
    checkpoints divides the checkpoints' share of the score's variance by 5."""
    a, e, n = 6.0, 4.0, 10
    rec = _record(0, lambda u: 50.0, None)
    rec["ref_min_score"], rec["ref_max_score"] = 0.0, 100.0  # returns are normalized scores
    rec["protocol"] = {"eval_episodes": n}
    for k, point in enumerate(rec["curve"]):
        level = 50.0 + (a if k % 2 else -a)
        point["normalized_score"] = level
        point["returns"] = [level + (e if j % 2 else -e) for j in range(n)]
    s = budget.spread([rec], "hopper", "bcq")
    tail = [p["normalized_score"] for p in rec["curve"] if p["updates"] >= 0.8 * GRID[-1]]
    assert s.checkpoint_sd == pytest.approx(np.std(tail, ddof=1))
    assert s.episode_sd == pytest.approx(np.std([-e, e] * (n // 2), ddof=1))
    assert s.policy_sd == pytest.approx(math.sqrt(s.checkpoint_sd**2 - s.episode_sd**2 / n))
    assert s.error_sd(50, 5) ** 2 == pytest.approx(s.policy_sd**2 / 5 + s.episode_sd**2 / 50)
    assert s.error_sd(50, 5) < s.error_sd(50, 1)
    assert "| hopper | bcq | 1 |" in budget.format_spreads([s])
    short = _record(0, lambda u: 50.0, None)
    short["curve"] = short["curve"][-3:]
    assert budget.spread([short], "hopper", "bcq") is None  # fewer than 5 points in the last fifth


def test_a_runs_cost_takes_its_evaluations_out_of_its_training_time():
    rec = _record(0, lambda u: 50.0, None)
    for point in rec["curve"]:
        point["wall_s"] = 2.0
    rec["final"]["wall_s"] = 10.0
    rec["updates"], rec["train_wall_s"] = GRID[-1], 700.0  # 30 evaluations of 2 s and a final of 10: 70 s
    c = budget.cost([rec], "hopper", "bcq")
    assert c.update_ms == pytest.approx(1000.0 * 630.0 / GRID[-1]) and c.evaluation_s == 2.0 and c.eval_share == pytest.approx(0.1)
    del rec["final"]["wall_s"]  # a record from before evaluations were timed
    assert budget.cost([rec], "hopper", "bcq") is None
