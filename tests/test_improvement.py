"""The probability-of-improvement table of the leaderboard, against hand-computed values."""

from __future__ import annotations

import pytest

from mabcq_bench.report import improvement, separation
from mabcq_bench.report.leaderboard import write_leaderboard
from mabcq_bench.report.tables import build_tables

from test_leaderboard import fake_records, make_record


def test_improvement_of_the_fake_board_by_hand():
    board = build_tables(fake_records(), "lite", reps=300)
    imps = {(i.a, i.b, i.key): i for i in improvement.improvements(board)}
    # Only pairs whose variants both have runs: mabcq, bcq and behavior are on the fake board.
    assert list(imps) == [("mabcq", "bcq", "normalized_score"), ("mabcq", "behavior", "normalized_score"), ("bcq", "behavior", "normalized_score")]
    # mabcq vs bcq: hopper (40, 50, 60) against (20, 30, 40): 40 wins 2 of 3 and ties one (½), 50 and
    # 60 win all, (2.5 + 3 + 3) / 9; walker (70, 80, 90) against (10, 10, 10): 1. Mean of the tasks.
    first = imps["mabcq", "bcq", "normalized_score"]
    assert first.p == pytest.approx((8.5 / 9 + 1.0) / 2)
    assert first.low <= first.p <= first.high <= 1.0
    assert (first.tasks, first.n_a, first.n_b) == (("walker", "hopper"), 6, 6)
    # every run of mabcq above behavior's single run on both tasks: 1, whatever the resample
    behavior = imps["mabcq", "behavior", "normalized_score"]
    assert (behavior.p, behavior.low, behavior.high, behavior.n_b) == (1.0, 1.0, 1.0, 2)
    assert improvement.improvements(board) == improvement.improvements(board)  # the board's seed fixes it


def test_lower_coordination_gap_is_the_improvement():
    # mabcq's gaps (1, 2, 3) against no-tn's (2.5, 4, 5) on hopper only: mabcq is lower in
    # 3 + 3 + 2 of 9 pairs; no-tn has no walker runs, so that task is left out.
    records = fake_records() + [make_record("hopper", "mabcq-no-tn", s, 50.0, g) for s, g in enumerate((2.5, 4.0, 5.0))]
    board = build_tables(records, "lite", reps=300)
    (gap,) = [i for i in improvement.improvements(board) if i.key == separation.GAP]
    assert (gap.a, gap.b, gap.tasks, gap.n_a, gap.n_b) == ("mabcq", "mabcq-no-tn", ("hopper",), 3, 3)
    assert gap.p == pytest.approx(8 / 9)
    # behavior has no gap: no gap row for a pair with it, and no failure
    assert improvement.improvements(board, [("mabcq", "behavior", separation.GAP)]) == []


def test_leaderboard_markdown_has_the_table(tmp_path):
    write_leaderboard(fake_records(), tmp_path, reps=300)
    md = (tmp_path / "lite.md").read_text(encoding="utf-8")
    assert "## Probability of improvement" in md and "95% percentile interval of a stratified bootstrap (300 resamples" in md
    assert md.index("## Probability of improvement") < md.index("## Where the algorithms separate")
    assert "| comparison | quantity | tasks | runs | P(A better than B) [low, high] |" in md
    assert "| mabcq vs behavior | score | all 2 | 6 v 2 | 1.00 [1.00, 1.00] |" in md
    assert "| mabcq vs bcq | score | all 2 | 6 v 6 | 0.97 [" in md
    assert improvement.format_markdown([], build_tables(fake_records(), "lite", reps=10)) == ""
