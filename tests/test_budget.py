"""Where training converges (report/budget.py): the final-level criterion for the score and the
plateau criterion for Q̂, on curves whose answer is known in closed form or by hand, and its
section of the leaderboard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from test_leaderboard import make_record
from mabcq_bench.report import budget
from mabcq_bench.report.leaderboard import write_leaderboard
from mabcq_bench.report.tables import build_tables

GRID = list(range(2000, 60001, 2000))
#: The grid of a 200k-update study run (plateau200).
LONG = list(range(2000, 200001, 2000))


def _record(seed: int, score, q, variant: str = "bcq", grid: list[int] = GRID) -> dict:
    rec = make_record("hopper", variant, seed, score(grid[-1]), None)
    rec["curve"] = [{"updates": u, "return_mean": 10.0 * score(u), "normalized_score": score(u), "coordination_gap": None} for u in grid]
    rec["metrics"] = [{"update": float(u), **({} if q is None else {"values/q_mean": q(u)})} for u in grid]
    return rec


def _noisy(level, sd: float, seed: int, grid: list[int] = LONG):
    """``level(u)`` plus independent normal noise of sd ``sd`` at every grid point (seeded)."""
    noise = dict(zip(grid, np.random.default_rng(seed).normal(0.0, sd, len(grid))))
    return lambda u: level(u) + noise[u]


def _first_on_grid(ok, grid: list[int] = GRID) -> int:
    """The first grid point from which ``ok(u)`` holds to the end (what the criterion returns)."""
    start = None
    for u in grid:
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


def test_a_noisy_flat_curve_reaches_its_level_at_the_end_of_its_rise():
    """A rise to 50 by 40k, then 50 with evaluation noise of sd 8 to 200k: the smoothed score still
    moves by more than 2 points over the last fifth (the fixed threshold never settles), but the
    window reaches the final level within its noise-based tolerance just before the rise ends.
    (Seed 3 is a draw whose windows all stay within the 2σ tolerance; with ~80 windows tested, a
    third of draws stray once after the rise and land later.)"""
    rise = lambda u: 50.0 * min(1.0, u / 40_000)  # noqa: E731
    p = budget.plateau([_record(0, _noisy(rise, 8.0, seed=3), None, "bc", LONG)], "hopper", "bc")
    assert p.score_move > budget.SCORE_POINTS  # by the fixed 2-point threshold: not within 200,000
    assert p.sigma == pytest.approx(9.02, abs=0.01) and p.tolerance > budget.SCORE_POINTS
    assert p.score_from == p.budget == 38_000


def test_a_curve_still_rising_reaches_its_level_only_at_the_end():
    """A straight climb from 0 to 60 over 200k: the level is the last fifth's mean, 54, and a
    window gets within 2 points of it only a few evaluations before the end."""
    climb = lambda u: 60.0 * u / 200_000  # noqa: E731
    p = budget.plateau([_record(0, climb, None, "bc", LONG)], "hopper", "bc")
    level = np.mean([climb(u) for u in LONG if u >= 160_000])

    def window(u: int) -> float:  # the points from 0.8 u to u (at least 3 of them)
        points = [v for v in LONG if 0.8 * u <= v <= u]
        return np.mean([climb(v) for v in (points if len(points) >= 3 else [v for v in LONG if v <= u][-3:])])

    # σ² is half the squared step, 0.18: below the 2-point floor
    assert p.level == pytest.approx(54.0) and p.sigma == pytest.approx(math.sqrt(0.18)) and p.tolerance == 2.0
    assert p.score_from == _first_on_grid(lambda u: abs(window(u) - level) <= 2.0, LONG) == 194_000


def test_a_second_climb_moves_the_level_past_it():
    """Flat at 20 from 20k to 60k, up to 60 by 100k, flat to 200k, with noise: the score reaches
    its final level after the second climb, never on the first flat stretch."""
    two = lambda u: 20.0 * min(1.0, u / 20_000) if u <= 60_000 else min(60.0, 20.0 + (u - 60_000) / 1000)  # noqa: E731
    for seed in range(4):
        p = budget.plateau([_record(0, _noisy(two, 5.0, seed), None, "bc", LONG)], "hopper", "bc")
        assert p.level == pytest.approx(60.0, abs=2.0) and 100_000 < p.score_from < 120_000


def test_a_dip_after_the_level_is_reached_resets_it():
    """At 50 from 20k, a dip to 40 from 100k to 120k, then 50 again: the score is at its final level
    from 22k to 98k, but it must hold at every later point, so the budget comes after the dip
    (once the window from 0.8 u no longer reaches into it)."""
    dip = lambda u: 50.0 * min(1.0, u / 20_000) - (10.0 if 100_000 <= u <= 120_000 else 0.0)  # noqa: E731
    p = budget.plateau([_record(0, dip, None, "bc", LONG)], "hopper", "bc")
    assert p.level == 50.0 and p.score_from == 144_000


def test_noise_comes_from_successive_differences_over_the_second_half():
    """A six-point curve checked by hand. Second half 21, 25, 22: steps 4 and −3, σ² = (16 + 9) / 2
    / 2 = 6.25. Last fifth (u ≥ 48k): 25, 22, L = 23.5, n_L = 2. At 60k the window is the last 3
    points (mean 22.67, n = 3), tolerance 2 · 2.5 · √(1/3 + 1/2) = 4.56: at the level; at 50k the
    window is 20, 21, 25 (mean 22): at the level; at 40k it is 10, 20, 21 (mean 17): 6.5 away, not."""
    grid = [10_000, 20_000, 30_000, 40_000, 50_000, 60_000]
    values = dict(zip(grid, [0.0, 10.0, 20.0, 21.0, 25.0, 22.0]))
    p = budget.plateau([_record(0, values.__getitem__, None, "bc", grid)], "hopper", "bc")
    assert p.sigma == pytest.approx(2.5) and p.level == pytest.approx(23.5)
    assert p.tolerance == pytest.approx(5.0 * math.sqrt(1 / 3 + 1 / 2))
    assert p.score_from == 50_000


def test_more_seeds_shrink_the_tolerance():
    """The curve is the mean over seeds, so its noise falls as 1/√seeds, and the tolerance with it."""
    flat = lambda u: 50.0  # noqa: E731
    one = budget.plateau([_record(0, _noisy(flat, 8.0, 0), None, "bc", LONG)], "hopper", "bc")
    four = budget.plateau([_record(s, _noisy(flat, 8.0, s), None, "bc", LONG) for s in range(4)], "hopper", "bc")
    assert 0.35 < four.sigma / one.sigma < 0.65
    assert four.tolerance < one.tolerance and one.tolerance == pytest.approx(2.0 * one.sigma * math.sqrt(2 / 21))


def test_the_leaderboard_has_the_section(tmp_path):
    T = 12_000.0
    recs = [_record(s, lambda u: 60.0, lambda u: 220.0 * (1 - math.exp(-u / T))) for s in range(2)]
    recs += [_record(s, lambda u: 50.0, lambda u: u / 100.0, variant="mabcq") for s in range(2)]
    write_leaderboard(recs, tmp_path, reps=20)
    md = (tmp_path / "lite.md").read_text()
    assert "## Where training converges" in md
    assert "| hopper | mabcq | 2 | 2,000 | 50.0 ± 2.0 | 0.0 | not within 60,000 | not within 60,000 | 0.0 | 20.0% |" in md
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
