"""What MABCQ's weights are at the end of training (issue 26, 4): FINDINGS' table of λ_vd and λ_tn,
from the logged batch statistics of the last fifth of each run, worked out by hand here."""

from __future__ import annotations

import pytest

from mabcq_bench.report import claims, weights
from mabcq_bench.report.tables import build_tables

from test_leaderboard import make_record


def _log(update, vd=(1.0, 0.05, 0.5, 1.5), tn=(0.9, 0.2, 0.2, 1.2), w_max=1.8):
    row = {"update": float(update), "weights/w_max": w_max}
    for name, (mean, std, low, high) in (("lambda_vd", vd), ("lambda_tn", tn)):
        row.update({f"weights/{name}_mean": mean, f"weights/{name}_std": std, f"weights/{name}_min": low, f"weights/{name}_max": high})
    return row


def _run(seed, logs, variant="mabcq", eps=0.8, use_vd=True, use_tn=True, task="hopper"):
    rec = make_record(task, variant, seed, 50.0, 1.0)
    rec["updates"] = 100
    rec["config"] = {"epsilon": eps, "use_vd": use_vd, "use_tn": use_tn}
    rec["metrics"] = logs
    return rec


def test_only_the_last_fifth_counts_and_runs_are_averaged_after_their_logs():
    # logs at 20..100: the last fifth is update > 80, i.e. 90 and 100 only; the early log's wild
    # values must not show
    early = _log(20, vd=(3.0, 9.0, -5.0, 9.0), tn=(5.0, 5.0, 0.0, 9.0), w_max=50.0)
    a = _run(0, [early, _log(90, vd=(1.0, 0.04, 0.5, 1.4)), _log(100, vd=(1.002, 0.06, 0.6, 1.5))])
    b = _run(1, [early, _log(90, vd=(1.004, 0.05, 0.7, 1.7), w_max=2.2), _log(100, vd=(1.006, 0.05, 0.3, 1.3), w_max=2.2)])
    s = weights.summarize([a, b], "lambda_vd")
    assert s.runs == 2
    assert s.mean == pytest.approx((1.001 + 1.005) / 2)  # per-run means 1.001 and 1.005
    assert s.mean_sd == pytest.approx(0.002 * 2 ** 0.5)  # sd (ddof 1) of 1.001 and 1.005
    assert s.sd == pytest.approx((0.05 + 0.05) / 2)
    assert (s.low, s.high) == (0.3, 1.7)
    assert s.at_clip == 0.0  # ε = 0.8: the clip is [0.2, 1.8]
    assert s.w_max == pytest.approx((1.8 + 2.2) / 2)
    assert weights.summarize([a, b], "lambda_tn").mean == pytest.approx(0.9)


def test_the_clip_share_counts_the_logs_whose_batch_reaches_one_plus_or_minus_epsilon():
    logs = [_log(85, vd=(1.0, 0.1, 0.8, 1.1)), _log(90, vd=(1.0, 0.1, 0.9, 1.2)), _log(95, vd=(1.0, 0.1, 0.8, 1.2)), _log(100, vd=(1.0, 0.1, 0.85, 1.15))]
    s = weights.summarize([_run(0, logs, eps=0.2)], "lambda_vd")
    assert s.at_clip == pytest.approx(3 / 4)  # three batches touch 0.8 or 1.2
    assert s.mean_sd == 0.0 and s.runs == 1


def test_a_run_without_late_logs_is_no_summary():
    assert weights.summarize([_run(0, [_log(40), _log(80)])], "lambda_vd") is None  # 80 is not after 80% of 100


def test_the_table_shows_switched_off_weights_as_off_and_leaves_bcq_out():
    logs = [_log(90), _log(100)]
    board = build_tables([
        _run(0, logs), _run(1, logs),
        _run(0, logs, variant="mabcq-no-vd", use_vd=False),
        _run(0, logs, variant="bcq", use_vd=False, use_tn=False),
    ], "lite", reps=100)
    lines = weights.render(board)
    rows = [line for line in lines if line.startswith("| hopper")]
    assert [r.split(" | ")[1] for r in rows] == ["mabcq", "mabcq-no-vd"]
    assert rows[0] == "| hopper | mabcq | 2 | 1.000 ± 0.000 | 0.050 | 0.50–1.50 | 0% | 0.900 ± 0.000 | 0.200 | 0.20–1.20 | 1.80 |"
    assert rows[1] == "| hopper | mabcq-no-vd | 1 | off |  |  |  | 0.900 | 0.200 | 0.20–1.20 | 1.80 |"
    assert "hopper 0.8" in lines[0]


def test_a_board_without_weights_says_so_and_the_claims_block_carries_the_table():
    plain = build_tables([make_record("hopper", "bc", 0, 40.0, None)], "lite", reps=100)
    assert weights.render(plain) == ["MABCQ's weights: no run on board `lite` logs λ_vd or λ_tn."]
    board = build_tables([_run(0, [_log(90), _log(100)])], "lite", reps=100)
    block = claims.render(board)
    assert "What MABCQ's weights are at the end of training:" in block
    assert any(line.startswith("| hopper | mabcq | 1 | 1.000 |") for line in block)
