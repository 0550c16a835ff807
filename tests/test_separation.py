"""Where algorithms separate: the smallest budget from which every seed of one beats every seed of the other."""

from __future__ import annotations

import pytest

from mabcq_bench.report import separation
from mabcq_bench.report.leaderboard import write_leaderboard
from mabcq_bench.report.tables import build_tables

from test_leaderboard import make_record


def _run(variant: str, seed: int, scores: list[float], gaps: list[float] | None = None, task: str = "hopper") -> dict:
    gaps = gaps or [1.0] * len(scores)
    rec = make_record(task, variant, seed, scores[-1], gaps[-1])
    rec["curve"] = [{"updates": 1000 * (i + 1), "return_mean": 10 * s, "normalized_score": s, "coordination_gap": g} for i, (s, g) in enumerate(zip(scores, gaps))]
    return rec


def _board(curves: dict[str, list[list[float]]]):
    return build_tables([_run(v, k, c) for v, seeds in curves.items() for k, c in enumerate(seeds)], "lite", reps=50)


def test_separates_from_the_first_point_of_the_final_streak():
    board = _board({
        # mabcq is above bcq at 2k, crosses back at 3k, and stays above from 4k on
        "mabcq": [[5, 30, 20, 50, 60], [6, 31, 21, 51, 61], [7, 32, 22, 52, 62]],
        "bcq": [[5, 10, 25, 40, 40], [8, 11, 26, 41, 41], [9, 12, 27, 42, 42]],
        "ddpg": [[50, 50, 50, 50, 70], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]],  # one seed overlaps to the end
    })
    s = separation.compare(board, "hopper", "mabcq", "bcq")
    assert s.above_from == 4000 and s.below_from is None and s.verdict == "mabcq above from 4,000 updates"
    assert s.updates == (1000, 2000, 3000, 4000, 5000) and s.mean_a[-1] == pytest.approx(61.0) and s.mean_b[-1] == pytest.approx(41.0)
    assert s.p_final == pytest.approx(0.05)  # 3 v 3, every run of one above every run of the other: 1/20
    d = separation.compare(board, "hopper", "mabcq", "ddpg")
    assert d.above_from is None and d.below_from is None and d.verdict == "not separated" and d.p_final > 0.05
    back = separation.compare(board, "hopper", "bcq", "mabcq")
    assert back.below_from == 4000 and back.p_final == pytest.approx(1.0)
    assert separation.compare(board, "hopper", "mabcq", "behavior") is None  # no runs of behavior
    assert [(x.a, x.b, x.key) for x in separation.separations(board)] == [("mabcq", "bcq", "normalized_score"), ("mabcq", "ddpg", "normalized_score")]


def test_coordination_gap_of_mabcq_against_no_tn():
    runs = [_run("mabcq", k, [10, 20], [1.0 + k, 2.0 + k]) for k in range(3)]
    runs += [_run("mabcq-no-tn", k, [10, 20], [0.5 + k, 9.0 + k]) for k in range(3)]
    board = build_tables(runs, "lite", reps=50)
    (score, gap) = separation.separations(board)
    assert score.key == "normalized_score" and score.verdict == "not separated"
    assert gap.key == "coordination_gap" and gap.below_from == 2000 and gap.mean_a == (2.0, 3.0) and gap.mean_b == (1.5, 10.0)
    # Lower is the claim for the gap, so its test is "mabcq's gap is lower": 1/20 at 3 v 3. In a
    # family of two (with the score row) Holm doubles it, and no verdict is called.
    assert gap.p_final == pytest.approx(0.05) and gap.family == 2 and gap.p_holm == pytest.approx(0.1)
    assert gap.verdict == "not significant: mabcq below from 2,000 updates, Holm p 0.10"
    assert separation.compare(board, "hopper", "mabcq", "mabcq-no-tn", separation.GAP).verdict == "mabcq below from 2,000 updates"
    behavior = [_run("behavior", k, [5, 5]) for k in range(3)]
    for rec in behavior:  # no Q-function: its curve has no gap, only its score is compared
        for point in rec["curve"]:
            point["coordination_gap"] = None
    board = build_tables(runs + behavior, "lite", reps=50)
    assert [(x.b, x.key) for x in separation.separations(board)] == [
        ("behavior", "normalized_score"), ("mabcq-no-tn", "normalized_score"), ("mabcq-no-tn", "coordination_gap")]


def test_only_points_every_run_has_are_compared():
    board = _board({"mabcq": [[10, 90], [11, 91], [12, 92]], "bcq": [[1, 2, 3], [2, 3, 4], [3, 4, 5]]})
    s = separation.compare(board, "hopper", "mabcq", "bcq")
    assert s.updates == (1000, 2000) and s.above_from == 1000 and s.verdict == "mabcq above from 1,000 updates"


def test_no_verdict_with_fewer_than_three_runs_a_side():
    board = _board({"mabcq": [[10, 90], [11, 91], [12, 92]], "mabcq-no-vd": [[1, 2]]})
    s = separation.compare(board, "hopper", "mabcq", "mabcq-no-vd")
    assert s.above_from == 1000 and s.verdict == "too few runs to tell (needs 3 each)"


def test_leaderboard_markdown_has_the_section(tmp_path):
    board_records = [_run(v, k, c) for v, seeds in {"mabcq": [[5, 60], [6, 61], [7, 62]], "bcq": [[9, 40], [8, 41], [7, 42]]}.items() for k, c in enumerate(seeds)]
    write_leaderboard(board_records, tmp_path, reps=50)
    md = (tmp_path / "lite.md").read_text()
    assert "## Where the algorithms separate" in md
    assert "Holm–Bonferroni within each task, over that task's comparisons with at least 3 runs a side (1 per task;" in md
    # a family of one: the adjusted p is the raw p, and 3 v 3 fully ordered passes at 0.05
    assert "| hopper | mabcq vs bcq (3 v 3 runs) | score | 61.0 vs 41.0 at 2,000 | 0.05 | 0.05 | mabcq above from 2,000 updates |" in md
    assert "no comparison can pass" not in md


def test_epsilon_variants_are_compared_with_epsilon_zero(tmp_path):
    """Figure 4's claim (no ε > 0 below ε = 0) gets its rows; a variant overriding something else does not."""
    curves = {
        "mabcq-no-vd": ([[50, 60], [51, 61], [52, 62]], None),
        "mabcq epsilon=0.2": ([[55, 40], [56, 41], [57, 42]], {"epsilon": 0.2}),
        "mabcq epsilon=0.4": ([[45, 70], [50, 58], [52, 64]], {"epsilon": 0.4}),
        "mabcq phi=0.1": ([[1, 2], [1, 2], [1, 2]], {"phi": 0.1}),
    }
    records = []
    for variant, (seeds, overrides) in curves.items():
        for k, c in enumerate(seeds):
            rec = _run(variant, k, c)
            rec["overrides"] = overrides or {}
            rec["epsilon"] = (overrides or {}).get("epsilon")
            records.append(rec)
    write_leaderboard(records, tmp_path, reps=50)
    md = (tmp_path / "lite.md").read_text()
    # Each row tests "the ε variant scores higher than ε = 0": ε = 0.2 ending below on every seed
    # is shown, but it is the untested direction (its p of "higher" is 1).
    assert "| hopper | mabcq epsilon=0.2 vs mabcq-no-vd (3 v 3 runs) | score | 41.0 vs 61.0 at 2,000 | 1.00 | 1.00 | the other way: mabcq epsilon=0.2 below from 2,000 updates (untested) |" in md
    assert "| hopper | mabcq epsilon=0.4 vs mabcq-no-vd (3 v 3 runs) | score | 64.0 vs 61.0 at 2,000 | 0.35 | 0.70 | not separated |" in md
    assert "phi=0.1 vs" not in md


def _two_task_records(seeds: int) -> list[dict]:
    """Ordered on every seed from the first evaluation: mabcq above bcq above behavior on hopper
    (three comparisons of PAIRS), mabcq above bcq on walker (one)."""
    variants = {"hopper": (("mabcq", 50), ("bcq", 20), ("behavior", 0)), "walker": (("mabcq", 50), ("bcq", 20))}
    return [_run(variant, k, [base + k, base + 10 + k], task=task) for task, vs in variants.items() for variant, base in vs for k in range(seeds)]


def test_holm_within_each_task_at_3_and_5_seeds(tmp_path):
    # 3 v 3: each raw p is 1/20. Hopper's family has 3 comparisons: Holm makes each 3/20 = 0.15,
    # no separation. Walker's has one: p stays 0.05 and mabcq separates from bcq there.
    seps = separation.separations(build_tables(_two_task_records(3), "lite", reps=50))
    assert sorted((s.task, s.a, s.b, s.family) for s in seps) == [
        ("hopper", "bcq", "behavior", 3), ("hopper", "mabcq", "bcq", 3), ("hopper", "mabcq", "behavior", 3), ("walker", "mabcq", "bcq", 1),
    ]  # fmt: skip
    for s in seps:
        assert s.above_from == 1000 and s.p_final == pytest.approx(0.05)
        if s.task == "hopper":
            assert s.p_holm == pytest.approx(0.15) and s.verdict == f"not significant: {s.a} above from 1,000 updates, Holm p 0.15"
        else:
            assert s.p_holm == pytest.approx(0.05) and s.verdict == "mabcq above from 1,000 updates"
    write_leaderboard(_two_task_records(3), tmp_path, reps=50)
    md = (tmp_path / "lite.md").read_text()
    assert "Holm–Bonferroni within each task, over that task's comparisons with at least 3 runs a side (1 or 3 per task;" in md
    assert "no comparison can pass" not in md  # walker's can
    # 5 v 5: raw p 1/252, adjusted 3/252 = 0.012 on hopper: every comparison separates.
    seps = separation.separations(build_tables(_two_task_records(5), "lite", reps=50))
    for s in seps:
        assert s.p_final == pytest.approx(1 / 252) and s.p_holm == pytest.approx(s.family / 252)
        assert s.verdict == f"{s.a} above from 1,000 updates"
    write_leaderboard(_two_task_records(5), tmp_path, reps=50)
    md = (tmp_path / "lite.md").read_text()
    assert "| hopper | mabcq vs bcq (5 v 5 runs) | score | 62.0 vs 32.0 at 2,000 | 0.004 | 0.01 | mabcq above from 1,000 updates |" in md


def test_when_no_comparison_can_pass_the_table_says_so(tmp_path):
    records = [r for r in _two_task_records(3) if r["task"] == "hopper"]
    write_leaderboard(records, tmp_path, reps=50)
    md = (tmp_path / "lite.md").read_text()
    assert "With these runs no comparison can pass: with 3 v 3 runs no p is below 1/20, and 3 × that is above 0.05." in md


def test_comparisons_with_too_few_runs_are_left_out_of_the_family():
    records = _two_task_records(3)
    records += [_run("ddpg", 0, [1, 2], task="hopper")]  # one run: shown, never tested
    seps = separation.separations(build_tables(records, "lite", reps=50))
    ddpg = next(s for s in seps if s.b == "ddpg")
    assert ddpg.p_holm is None and ddpg.verdict == "too few runs to tell (needs 3 each)"
    assert {(s.task, s.family) for s in seps} == {("hopper", 3), ("walker", 1)}
