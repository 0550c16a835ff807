"""The paper's claims tested on a board (issue 26, 4): exact p-values, Holm over the page, verdicts,
runs left out by name, and the FINDINGS block filled from the records."""

from __future__ import annotations

import json
from math import comb

import pytest
from click.testing import CliRunner

from mabcq_bench.cli import main
from mabcq_bench.errors import UserError
from mabcq_bench.report import claims
from mabcq_bench.report.claims import Claim
from mabcq_bench.report.tables import build_tables

from test_leaderboard import make_record

BCQ = Claim("fig2-bcq", "Fig. 2", "MABCQ outperforms BCQ", (claims.Test(("hopper",), "mabcq", "bcq"),))


def _runs(variant: str, scores, task: str = "hopper", gap: float = 1.0, algo: str | None = None) -> list[dict]:
    return [make_record(task, variant, k, s, gap if not isinstance(gap, list) else gap[k], algo=algo) for k, s in enumerate(scores)]


def _board(*groups: list[dict]):
    return build_tables([r for g in groups for r in g], "lite", reps=200)


def test_five_seeds_all_above_hold_with_the_exact_p_and_holm_multiplies_by_the_family():
    board = _board(_runs("mabcq", [60, 61, 62, 63, 64]), _runs("bcq", [40, 41, 42, 43, 44]), _runs("ddpg", [50, 30, 31, 32, 33]))
    (r,) = claims.evaluate(board, [BCQ])
    assert r.p == pytest.approx(1 / 252) and r.p_min == pytest.approx(1 / 252) and r.statistic == 25.0
    assert r.p_holm == pytest.approx(1 / 252) and r.family == 1 and r.verdict == "holds"
    assert r.seeds_a == r.seeds_b == (0, 1, 2, 3, 4) and r.diff[0] == pytest.approx(20.0)
    # a family of three, p = 1/252, 1/252 and 19/252 (bcq against ddpg: one ddpg run, 50, above all
    # five, U = 20; 19 of the 252 orderings have U ≥ 20): Holm makes them 3/252, 3/252 (step-down:
    # never below an earlier step, max(3, 2)/252) and 19/252
    three = Claim("x", "Fig. 2", "…", (claims.Test(("hopper",), "mabcq", "bcq"), claims.Test(("hopper",), "mabcq", "ddpg"), claims.Test(("hopper",), "bcq", "ddpg")))
    first, second, third = claims.evaluate(board, [three])
    assert first.family == second.family == third.family == 3
    assert first.p_holm == pytest.approx(3 / 252) and second.p_holm == pytest.approx(3 / 252) and first.verdict == second.verdict == "holds"
    assert third.p == pytest.approx(19 / 252) and third.p_holm == pytest.approx(19 / 252) and third.statistic == 20.0 and third.verdict == "not shown"


def test_a_reversed_board_is_contradicted_and_not_shown_is_neither():
    board = _board(_runs("mabcq", [40, 41, 42, 43, 44]), _runs("bcq", [60, 61, 62, 63, 64]))
    (r,) = claims.evaluate(board, [BCQ])
    assert r.p == pytest.approx(1.0) and r.p_other == pytest.approx(1 / 252) and r.verdict == "contradicted: bcq better"
    board = _board(_runs("mabcq", [40, 61, 42, 63, 44]), _runs("bcq", [60, 41, 62, 43, 64]))
    assert claims.evaluate(board, [BCQ])[0].verdict == "not shown"


def test_three_seeds_cannot_reach_alpha_and_the_block_says_so():
    board = _board(_runs("mabcq", [60, 61, 62]), _runs("bcq", [40, 41, 42]), _runs("mabcq-no-vd", [40, 41, 42]))
    results = claims.evaluate(board)
    ran = [r for r in results if r.p is not None]
    assert len(ran) == 4  # mabcq > no-vd, mabcq > bcq, no-vd like bcq (hopper), mabcq no worse than no-vd
    best = min(ran, key=lambda r: r.p)
    assert best.p == pytest.approx(1 / comb(6, 3)) and best.p_holm == pytest.approx(4 / 20) and best.verdict == "not shown"
    text = "\n".join(claims.render(board))
    assert "**With these runs no test can reach α**: the smallest attainable Holm p is 0.20." in text
    assert "Holm–Bonferroni over each task (a pooled test its own family): 4 tests (family size 4)" in text
    # one family for the page is the conservative alternative; here it is the same family (one task)
    assert [r.p_holm for r in claims.evaluate(board, scope="page")] == [r.p_holm for r in results]


def test_a_family_per_task_by_default_the_page_as_the_conservative_alternative():
    runs = [_runs("mabcq", [60, 61, 62, 63, 64], task=t) + _runs("bcq", [40, 41, 42, 43, 44], task=t) for t in ("hopper", "walker")]
    board = _board(*runs)
    both = Claim("fig2-bcq", "Fig. 2", "MABCQ outperforms BCQ", tuple(claims.Test((t,), "mabcq", "bcq") for t in ("hopper", "walker")))
    by_task = [r for r in claims.evaluate(board, [both]) if r.p is not None]
    page = [r for r in claims.evaluate(board, [both], scope="page") if r.p is not None]
    assert len(by_task) == 2 and all(r.p_holm == pytest.approx(1 / 252) and r.verdict == "holds" for r in by_task)
    assert all(r.p_holm == pytest.approx(2 / 252) for r in page)


def _curve_run(variant: str, seed: int, curve: list[float], final: float, task: str = "hopper") -> dict:
    rec = make_record(task, variant, seed, final, 1.0)
    rec["curve"] = [{"updates": 1000 * (i + 1), "return_mean": 0.0, "normalized_score": s, "coordination_gap": 1.0} for i, s in enumerate(curve)]
    rec["updates"], rec["protocol"] = 1000 * len(curve), {"score_window": 2}
    return rec


def test_late_drop_is_the_best_window_before_the_last_fifth_minus_the_final_score():
    # 10 evaluations, windows of 2 ending at 2k..8k; the best is (50 + 70) / 2 at 5k–6k: the 9k–10k peak is too late
    rec = _curve_run("bcq", 0, [10, 20, 30, 40, 50, 70, 30, 20, 90, 90], final=35.0)
    assert claims.late_drop(rec) == pytest.approx(60.0 - 35.0)
    assert claims.late_drop(_curve_run("bcq", 0, [10, 20, 30, 40, 50], final=5.0)) == pytest.approx(35.0 - 5.0)  # windows end by 4k: (30 + 40) / 2
    assert claims.late_drop(_curve_run("bcq", 0, [10], final=5.0)) is None


def test_descends_late_pools_both_tasks_with_the_exact_signed_rank_p():
    drops = {"halfcheetah": [1.0, 2.0, 3.0, 4.0, 5.0], "hopper": [6.0, 7.0, 8.0, 9.0, -10.0]}
    runs = [_curve_run("bcq", k, [50.0] * 10, final=50.0 - d, task=t) for t, ds in drops.items() for k, d in enumerate(ds)]
    results = claims.evaluate(_board(runs), [c for c in claims.CLAIMS if c.id == "bcq-descends"])
    (r,) = [r for r in results if r.test.kind == "descends"]
    (more,) = [r for r in results if r.test.kind == "descends-more"]
    assert more.p is None and more.verdict.startswith("not run: no runs of mabcq")  # and out of the family
    # 10 pairs, the one negative the largest: W+ = 1 + … + 9 = 45. P(W+ ≥ 45) under the null: the
    # sign patterns whose negative ranks sum to at most 10, 43 of 2^10 (1, 1, 1, 2, 2, 3, 4, 5, 6, 8, 10 for sums 0..10)
    assert r.statistic == 45.0 and r.p == pytest.approx(43 / 1024) and r.p_min == pytest.approx(1 / 1024)
    assert r.verdict == "holds" and len(r.seeds_a) == 10 and r.diff[0] == pytest.approx(3.5)


def test_bcq_descends_more_than_mabcq_against_the_same_window_bias():
    """The best window before the last fifth is biased up for any noisy curve; BCQ's drops against
    MABCQ's carry that bias on both sides (one-sided exact Mann–Whitney, the two tasks pooled)."""
    bcq = [_curve_run("bcq", k, [50.0] * 10, final=40.0 - k, task="hopper") for k in range(5)]
    mabcq = [_curve_run("mabcq", k, [50.0] * 10, final=50.0 - 0.1 * k, task="hopper") for k in range(5)]
    results = claims.evaluate(_board(bcq, mabcq), [c for c in claims.CLAIMS if c.id == "bcq-descends"])
    (more,) = [r for r in results if r.test.kind == "descends-more"]
    assert more.p == pytest.approx(1 / 252) and more.family == 2 and more.p_holm == pytest.approx(2 / 252)
    assert more.verdict == "holds" and more.diff[0] == pytest.approx(12.0 - 0.2)
    reversed_ = claims.evaluate(_board(mabcq, [_curve_run("bcq", k, [50.0] * 10, final=50.0, task="hopper") for k in range(5)]),
                                [c for c in claims.CLAIMS if c.id == "bcq-descends"])
    (more,) = [r for r in reversed_ if r.test.kind == "descends-more"]
    assert more.verdict == "contradicted: mabcq descends more"


def test_the_coordination_gap_claim_is_lower_is_better():
    board = _board(_runs("mabcq", [50] * 5, gap=[1.0, 1.1, 1.2, 1.3, 1.4]), _runs("mabcq-no-tn", [50] * 5, gap=[5.0, 5.1, 5.2, 5.3, 5.4]))
    fig3 = [c for c in claims.CLAIMS if c.id == "fig3"]
    (r,) = [r for r in claims.evaluate(board, fig3) if r.p is not None]
    assert r.test.key == "coordination_gap" and r.p == pytest.approx(1 / 252) and r.verdict == "holds"
    reversed_ = _board(_runs("mabcq", [50] * 5, gap=5.0), _runs("mabcq-no-tn", [50] * 5, gap=[1.0, 1.1, 1.2, 1.3, 1.4]))
    assert [r for r in claims.evaluate(reversed_, fig3) if r.p is not None][0].verdict == "contradicted: mabcq-no-tn better"


def test_the_epsilon_claim_names_the_variants_and_can_only_be_contradicted():
    fig4 = next(c for c in claims.CLAIMS if c.id == "fig4")
    assert {(t.a, t.b, t.kind) for t in fig4.tests} == {("mabcq epsilon=0.2", "mabcq-no-vd", "no-worse"), ("mabcq", "mabcq-no-vd", "no-worse")}
    eps = _runs("mabcq epsilon=0.2", [10, 11, 12, 13, 14], algo="mabcq")
    board = _board(eps, _runs("mabcq-no-vd", [60, 61, 62, 63, 64]), _runs("mabcq", [60, 62, 64, 66, 68]))
    res = {r.test.a: r for r in claims.evaluate(board, [fig4]) if r.p is not None}
    assert res["mabcq epsilon=0.2"].verdict == "contradicted: mabcq epsilon=0.2 worse" and res["mabcq epsilon=0.2"].p == pytest.approx(1 / 252)
    assert res["mabcq"].verdict == "not contradicted (cannot show 'no worse')"


def test_is_like_reports_the_difference_never_equality():
    like = Claim("like", "§5.2", "…", (claims.Test(("hopper",), "mabcq-no-vd", "bcq", kind="like"),))
    (r,) = claims.evaluate(_board(_runs("mabcq-no-vd", [40, 42, 44]), _runs("bcq", [41, 43, 45])), [like])
    assert r.p_min == pytest.approx(0.1) and r.verdict == "no difference shown (a test cannot show equality)"
    assert r.diff[0] == pytest.approx(-1.0) and r.diff[1] <= -1.0 <= r.diff[2]
    (r,) = claims.evaluate(_board(_runs("mabcq-no-vd", [60, 61, 62, 63, 64]), _runs("bcq", [40, 41, 42, 43, 44])), [like])
    assert r.p == pytest.approx(2 / 252) and r.verdict == "difference shown"


def test_missing_variants_are_not_run_by_name_and_stay_out_of_the_family():
    board = _board(_runs("mabcq", [60, 61, 62, 63, 64]), _runs("bcq", [40, 41, 42, 43, 44]))
    results = claims.evaluate(board)
    skipped = [r for r in results if r.p is None]
    assert "not run: no runs of mabcq-no-tn on hopper" in {r.verdict for r in skipped}
    assert "not run: no runs of mabcq-no-tn or mabcq-no-vd on walker" not in {r.verdict for r in skipped}
    assert "not run: no runs of bcq on halfcheetah+hopper" not in {r.verdict for r in skipped}
    ran = [r for r in results if r.p is not None]
    assert [(r.claim.id, r.test.a, r.test.b) for r in ran] == [("fig2-bcq", "mabcq", "bcq")]
    assert ran[0].family == 1 and ran[0].verdict == "holds"
    assert "not run: no runs of bcq with a full window before the last fifth on halfcheetah+hopper" in {r.verdict for r in skipped}


def test_the_block_round_trips_through_the_markers_and_the_cli(tmp_path):
    recs = _runs("mabcq", [60, 61, 62, 63, 64]) + _runs("bcq", [40, 41, 42, 43, 44])
    text = "# Findings\n\nprose before\n<!-- claims:lite -->\nold\n<!-- /claims:lite -->\n<!-- claims:paper -->\nkept\n<!-- /claims:paper -->\nprose after\n"
    filled = claims.fill_findings(text, recs, reps=200)
    assert filled.filled == ["lite"] and filled.left == ["paper"] and filled.changed
    assert filled.text.startswith("# Findings\n\nprose before\n<!-- claims:lite -->\n") and filled.text.endswith("<!-- claims:paper -->\nkept\n<!-- /claims:paper -->\nprose after\n")
    assert "| fig2-bcq | hopper | mabcq vs bcq | better | score | 5 v 5 | 25.0 |" in filled.text and "old\n" not in filled.text
    assert claims.fill_findings(filled.text, recs, reps=200).text == filled.text  # a second fill changes nothing
    # the CLI: a store, a FINDINGS file; the same block as the library's (the pages' bootstrap settings)
    store = tmp_path / "runs"
    for r in recs:
        path = store / "lite" / r["task"] / r["variant"] / f"seed{r['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
    findings = tmp_path / "FINDINGS.md"
    findings.write_text(text)
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(store), "--out", str(tmp_path / "lb"), "--findings", str(findings)])
    assert out.exit_code == 0, out.output
    assert f"{findings}: wrote the claims of lite" in out.output
    assert findings.read_text() == claims.fill_findings(text, recs).text


def test_a_findings_file_without_claims_blocks_is_refused_before_anything_is_written(tmp_path):
    findings = tmp_path / "FINDINGS.md"
    findings.write_text("<!-- leaderboard:lite -->\n<!-- /leaderboard:lite -->\n")
    with pytest.raises(UserError, match="has no claims block: put a line <!-- claims:<board> -->"):
        claims.check_findings(findings)
    findings.write_text("<!-- claims:lite -->\n")
    with pytest.raises(UserError, match=r"<!-- claims:lite --> has no end marker <!-- /claims:lite -->"):
        claims.check_findings(findings)


def test_modern_baselines_get_an_order_per_task_and_their_own_two_sided_family():
    board = _board(_runs("mabcq", [60, 61, 62, 63, 64]), _runs("iql", [70, 71, 72, 73, 74]), _runs("bc", [60, 62, 64, 66, 68]))
    res = {r.test.b: r for r in claims.modern(board, ["iql", "bc"])}
    assert res["iql"].p == pytest.approx(2 / 252) and res["iql"].family == 2 and res["iql"].p_holm == pytest.approx(4 / 252)
    text = "\n".join(claims.render(board))
    assert "- hopper: **iql** 72.0 > **bc** 64.0 > mabcq 62.0" in text
    assert "Holm over these 2 comparisons (a family of their own): hopper: mabcq below iql (Holm p 0.02)." in text
