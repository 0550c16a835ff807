"""What decentralization costs (issue 25): a board's centralized reference set beside its
decentralized runs, from fixed fake records (no training)."""

from __future__ import annotations

import csv

import pytest
from test_leaderboard import make_record

from mabcq_bench.report.decentralization import CSV_COLUMNS, SUFFIX, compare, comparisons, format_csv, format_markdown
from mabcq_bench.report.leaderboard import write_leaderboard
from mabcq_bench.report.tables import build_tables, format_csv as table_csv, format_long_csv

BOARD = "lite-v2-p3"
REFERENCE = BOARD + SUFFIX

# (board, task, variant) -> [(score, Q̂ at the end, TD error at the end) per seed]; None: no critic.
RUNS = {
    (BOARD, "hopper", "bcq"): [(20.0, 100.0, 2.0), (30.0, 110.0, 2.0), (40.0, 120.0, 2.0)],
    (REFERENCE, "hopper", "bcq"): [(50.0, 150.0, 1.0), (60.0, 150.0, 1.0), (70.0, 150.0, 1.0)],
    (BOARD, "walker", "bcq"): [(15.0, 80.0, 3.0), (15.0, 80.0, 3.0), (15.0, 80.0, 3.0)],
    (REFERENCE, "walker", "bcq"): [(5.0, 90.0, 4.5), (5.0, 90.0, 4.5), (5.0, 90.0, 4.5)],
    (BOARD, "hopper", "bc"): [(10.0, None, None), (12.0, None, None)],
    (REFERENCE, "hopper", "bc"): [(15.0, None, None)],
    (BOARD, "hopper", "mabcq"): [(80.0, 130.0, 2.5), (90.0, 140.0, 2.5)],  # no centralized mabcq
    (REFERENCE, "walker", "td3bc"): [(70.0, 200.0, 1.0)],  # no decentralized td3bc
}


def _record(board: str, task: str, variant: str, seed: int, score: float, q: float | None, td: float | None) -> dict:
    rec = make_record(task, variant, seed, score, None if q is None else 1.0, tier=board)
    rec["setting"] = "centralized" if board.endswith(SUFFIX) else "decentralized"
    rec["protocol"] = {"updates": 100, "eval_every": 50}
    rec["updates"] = 100
    # an earlier interval with other values: only the last one (the end of training) may count
    critic = {} if q is None else {"values/q_mean": q, "losses/q": td}
    early = {} if q is None else {"values/q_mean": q / 2, "losses/q": 10 * td}
    rec["metrics"] = [{"update": 50.0, "losses/vae": 0.2, **early}, {"update": 100.0, "losses/vae": 0.1, **critic}]
    return rec


def records(runs=RUNS) -> list[dict]:
    return [_record(board, task, variant, seed, *run) for (board, task, variant), seeds in runs.items() for seed, run in enumerate(seeds)]


def _boards(recs, reps=500, seed=0):
    return {b: build_tables(recs, b, reps=reps, seed=seed) for b in sorted({r["tier"] for r in recs})}


def _rows(recs, **kw):
    return {(r.task, r.variant): r for r in comparisons(_boards(recs, **kw))[BOARD].rows}


def test_the_difference_is_centralized_minus_decentralized_per_task_and_learner():
    rows = _rows(records())
    # tasks in column order, learners in the decentralized ranking's order; one setting only: no row
    assert list(rows) == [("walker", "bcq"), ("hopper", "bcq"), ("hopper", "bc")]
    bcq = rows["hopper", "bcq"]
    assert (bcq.centralized, bcq.decentralized, bcq.difference) == (60.0, 30.0, 30.0)
    assert (bcq.n_centralized, bcq.n_decentralized) == (3, 3)
    assert rows["walker", "bcq"].difference == -10.0  # negative: decentralized does better there
    bc = rows["hopper", "bc"]
    assert (bc.difference, bc.n_centralized, bc.n_decentralized) == (4.0, 1, 2)


def test_the_interval_resamples_each_setting_and_is_deterministic():
    bcq = _rows(records())["hopper", "bcq"]
    # every resample's difference lies between 50 − 40 and 70 − 20; the interval holds the point
    assert 10.0 <= bcq.low < bcq.difference < bcq.high <= 50.0
    assert _rows(records())["hopper", "bcq"] == bcq  # the same records give the same interval
    other = _rows(records(), seed=1)["hopper", "bcq"]
    assert other.difference == bcq.difference and (other.low, other.high) != (bcq.low, bcq.high)  # it is the seed's
    # no spread in either setting: no spread in the interval
    walker = _rows(records())["walker", "bcq"]
    assert walker.low == walker.high == -10.0


def test_q_and_td_differences_come_from_the_last_logged_interval():
    rows = _rows(records())
    assert rows["hopper", "bcq"].diagnostics == (pytest.approx(40.0), pytest.approx(-1.0))  # Q̂ 150 − 110, TD 1 − 2
    assert rows["walker", "bcq"].diagnostics == (pytest.approx(10.0), pytest.approx(1.5))
    assert rows["hopper", "bc"].diagnostics == (None, None)  # no critic


def test_the_decentralized_ranking_is_the_same_with_the_reference_among_the_records(tmp_path):
    decentralized = [r for r in records() if r["tier"] == BOARD]
    alone, beside = build_tables(decentralized, BOARD, reps=300), build_tables(records(), BOARD, reps=300)
    assert [r.texts() for r in beside.rows] == [r.texts() for r in alone.rows]
    assert [r.variant for r in beside.rows] == ["mabcq", "bcq", "bc"]  # no td3bc: it ran centralized only
    assert table_csv(beside) == table_csv(alone) and format_long_csv(beside) == format_long_csv(alone)

    write_leaderboard(decentralized, tmp_path / "alone", reps=300)
    write_leaderboard(records(), tmp_path / "beside", reps=300)
    for name in (f"{BOARD}.csv", f"{BOARD}.long.csv"):
        assert (tmp_path / "beside" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes()
    page = (tmp_path / "beside" / f"{BOARD}.md").read_text(encoding="utf-8")
    section = format_markdown(BOARD, comparisons(_boards(records(), reps=300)))
    assert section in page and page.replace(section + "\n", "") == (tmp_path / "alone" / f"{BOARD}.md").read_text(encoding="utf-8")


def test_the_pages_show_the_table_and_link_to_it(tmp_path):
    written = write_leaderboard(records(), tmp_path, reps=300)
    names = [p.name for p in written]
    assert names[:4] == [f"{BOARD}.md", f"{BOARD}.csv", f"{BOARD}.long.csv", f"{BOARD}.decentralization.csv"]
    assert f"{REFERENCE}.decentralization.csv" not in names and not (tmp_path / f"{REFERENCE}.decentralization.csv").exists()

    page = (tmp_path / f"{BOARD}.md").read_text(encoding="utf-8").splitlines()
    start = page.index("## What decentralization costs")
    assert "positive is what the agents lose by each learning from its own data alone" in " ".join(page[start : start + 8])
    table = [line for line in page[start:] if line.startswith("| ")][:4]
    assert table[0] == "| task | learner | centralized | decentralized | C − D [low, high] | seeds C / D | updates C / D | Q̂ C − D | TD error C − D |"
    assert table[1] == "| walker | bcq | 5.0 | 15.0 | -10.0 [-10.0, -10.0] | 3 / 3 | 100 / 100 | +10.0 | +1.5 |"
    assert table[2].startswith("| hopper | bcq | 60.0 | 30.0 | +30.0 [+") and table[2].endswith(" | 3 / 3 | 100 / 100 | +40.0 | -1.0 |")
    assert table[3] == "| hopper | bc | 15.0 | 11.0 | +4.0 [+3.0, +5.0] | 1 / 2 | 100 / 100 | – | – |"
    assert f"[`{REFERENCE}`]({REFERENCE}.md)" in "\n".join(page)

    reference = (tmp_path / f"{REFERENCE}.md").read_text(encoding="utf-8")
    assert f"This board is the centralized reference of `{BOARD}`" in reference
    assert f"({BOARD}.md#what-decentralization-costs)" in reference and "| task | learner |" not in reference
    assert "Final normalized score of the centralized policy" in reference
    assert "Final normalized score of the joint decentralized policy" in "\n".join(page)


def test_the_csv_round_trips_the_rows(tmp_path):
    write_leaderboard(records(), tmp_path, reps=300)
    with open(tmp_path / f"{BOARD}.decentralization.csv", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        read = list(reader)
    rows = list(comparisons(_boards(records(), reps=300))[BOARD].rows)
    assert [(r["task"], r["variant"]) for r in read] == [(r.task, r.variant) for r in rows]
    for got, want in zip(read, rows):
        assert (int(got["n_centralized"]), int(got["n_decentralized"])) == (want.n_centralized, want.n_decentralized)
        numbers = (want.centralized, want.decentralized, want.difference, want.low, want.high)
        assert [float(got[k]) for k in ("centralized_mean", "decentralized_mean", "difference", "ci_low", "ci_high")] == pytest.approx(numbers, abs=1e-4)
        for key, value in zip(("q_mean_difference", "td_error_difference"), want.diagnostics):
            assert got[key] == "" if value is None else float(got[key]) == pytest.approx(value, abs=1e-4)
    assert read[1]["difference"] == "30.0" and read[2]["q_mean_difference"] == ""

    # without the reference among the records, the table and its csv are gone (an old one too)
    write_leaderboard([r for r in records() if r["tier"] == BOARD], tmp_path, reps=300)
    assert not (tmp_path / f"{BOARD}.decentralization.csv").exists()
    assert "What decentralization costs" not in (tmp_path / f"{BOARD}.md").read_text(encoding="utf-8")


def test_each_setting_runs_at_its_own_budget_and_the_rows_say_both():
    recs = records()
    for r in recs:
        if (r["tier"], r["task"], r["variant"]) == (REFERENCE, "hopper", "bcq"):
            r["protocol"] = {"updates": 200000, "eval_every": 50}
            r["updates"] = 200000
    comp = comparisons(_boards(recs))[BOARD]
    assert [(r.task, r.variant) for r in comp.rows] == [("walker", "bcq"), ("hopper", "bcq"), ("hopper", "bc")]
    assert comp.mismatched == ()
    rows = {(r.task, r.variant): r for r in comp.rows}
    assert rows["hopper", "bcq"].updates == (200000, 100) and rows["hopper", "bc"].updates == (100, 100)
    section = format_markdown(BOARD, {BOARD: comp})
    assert "| hopper | bcq | 60.0 | 30.0 | +30.0 [" in section and "| 3 / 3 | 200,000 / 100 |" in section
    assert "hopper,bcq,3,3,200000,100," in format_csv(comp)


def test_a_pair_run_under_another_protocol_is_named_not_compared():
    recs = records()
    for r in recs:
        if (r["tier"], r["task"], r["variant"]) == (REFERENCE, "hopper", "bcq"):
            r["protocol"] = {"updates": 100, "eval_every": 25}
    comp = comparisons(_boards(recs))[BOARD]
    assert [(r.task, r.variant) for r in comp.rows] == [("walker", "bcq"), ("hopper", "bc")]
    assert comp.mismatched == (("hopper", "bcq"),)
    section = format_markdown(BOARD, {BOARD: comp})
    assert "other hyperparameters or another protocol: hopper bcq." in section
    assert "| hopper | bcq |" not in section and "hopper,bcq" not in format_csv(comp)


def test_a_reference_without_shared_learners_says_so():
    runs = {k: v for k, v in RUNS.items() if k[2] in ("mabcq", "td3bc")}
    comp = comparisons(_boards(records(runs)))[BOARD]
    assert comp.rows == () and format_csv(comp) == ",".join(CSV_COLUMNS) + "\n"
    assert "No learner has comparable finished runs in both settings" in format_markdown(BOARD, {BOARD: comp})
    assert compare(build_tables(records(runs), BOARD, reps=500), build_tables(records(runs), REFERENCE, reps=500)) == comp


def test_the_suffix_is_the_one_runs_are_filed_under():
    from mabcq_bench.runs.plan import board_name

    assert board_name("lite", 2, 3, "centralized") == board_name("lite", 2, 3) + SUFFIX == REFERENCE
