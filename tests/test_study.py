"""Learners' own budgets from the budget study (report/study.py, `baselines --budgets-from`): the
longest study board decides unless seeds it lacks settle later, budgets fall on the target's evaluation grid, a learner that has not
plateaued gets the longest measured budget and is flagged, what is not budgeted is not, ablations
follow MABCQ where not studied, the printed tables load as a protocol file; and lite's own
budgets are held to the committed study's records."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from test_budget import GRID, LONG, _climb, _rise
from test_cli_errors import _fails
from test_leaderboard import make_record, write_store
from mabcq_bench.cli import main
from mabcq_bench.cli.baselines import _learners, study_proposals
from mabcq_bench.data.tasks import TASKS
from mabcq_bench.report import study
from mabcq_bench.report.records import load_records
from mabcq_bench.runs.protocol import BASELINES_DIR, DEFAULT_PROTOCOLS, load_protocol

REPO = Path(__file__).resolve().parents[1]
#: The target tier's evaluation grid in the unit tests: budgets round up to multiples of 5k,
#: and no budget is below its last 5 evaluations, 25k.
EVERY = {task: 5000 for task in TASKS}
LAST = 5
LEARNERS = ["mabcq", "mabcq-no-tn", "mabcq-no-vd", "bcq", "ddpg", "td3bc"]
ABLATIONS = {"mabcq-no-tn": "mabcq", "mabcq-no-vd": "mabcq"}


def _flat(u: float) -> float:
    return 30.0


def _cell(board: str, task: str, variant: str, score, grid: list[int], q=lambda u: 100.0, seeds: int = 1) -> list[dict]:
    """A study cell's records: ``score(u)`` and Q̂ ``q(u)`` at every point of ``grid``."""
    recs = []
    for seed in range(seeds):
        rec = make_record(task, variant, seed, score(grid[-1]), None, tier=board)
        rec["curve"] = [{"updates": u, "return_mean": 10.0 * score(u), "normalized_score": score(u), "coordination_gap": None} for u in grid]
        rec["metrics"] = [{"update": float(u), **({} if q is None else {"values/q_mean": q(u)})} for u in grid]
        rec["updates"] = grid[-1]
        recs.append(rec)
    return recs


def _propose(records: list[dict], boards=("short", "long"), learners=LEARNERS) -> dict[tuple[str, str], study.Proposal]:
    proposals = study.propose(records, boards, learners, EVERY, LAST, ABLATIONS)
    return {(p.task, p.learner): p for p in proposals}


def test_the_longest_board_decides_and_budgets_round_up_to_the_grid():
    records = [
        *_cell("short", "hopper", "bcq", _flat, GRID),  # stops moving from 6k on the 60k board ...
        *_cell("long", "hopper", "bcq", _rise, LONG),  # ... but the 200k board says 44k: it wins
        *_cell("long", "walker", "bcq", _rise, LONG),  # equal length: the cell with more runs wins
        *_cell("long2", "walker", "bcq", _flat, LONG, seeds=2),
        *_cell("short", "walker", "mabcq", _flat, GRID, q=lambda u: min(u, 30_000) / 100),  # Q̂ is last, at 36k
    ]
    got = _propose(records, boards=("long2", "long", "short"))  # the order of the boards decides nothing
    hopper = got[("hopper", "bcq")]
    assert (hopper.board, hopper.runs, hopper.measured, hopper.score_from, hopper.plateaued) == ("long", 1, 200_000, 44_000, True)
    assert hopper.budget == 45_000  # 44k up to the 5k grid
    walker = got[("walker", "bcq")]
    assert (walker.board, walker.runs, walker.score_from, walker.budget) == ("long2", 2, LONG[2], 25_000)  # 12k: the floor, 5 × 5k
    mabcq = got[("walker", "mabcq")]
    assert (mabcq.score_from, mabcq.q_from, mabcq.both_from, mabcq.budget) == (GRID[2], 36_000, 36_000, 40_000)


def test_a_learner_that_has_not_plateaued_gets_the_longest_measured_budget_and_is_flagged():
    records = [*_cell("short", "hopper", "ddpg", _flat, GRID), *_cell("long", "hopper", "ddpg", _climb, LONG)]
    records += _cell("long", "walker", "ddpg", _flat, LONG, q=lambda u: u / 100)  # its critic never stops climbing
    got = _propose(records)
    for task in ("hopper", "walker"):
        p = got[(task, "ddpg")]
        assert (p.board, p.budget, p.measured, p.plateaued, p.both_from) == ("long", 200_000, 200_000, False, None)
    assert got[("hopper", "ddpg")].score_from is None and got[("walker", "ddpg")].q_from is None
    table = study.format_proposals(list(got.values()))
    assert table.count("not within 200,000 (longest measured)") == 2
    _, notes = study.budget_tables(list(got.values()))
    assert notes["ddpg"] == (
        "budget study: walker from long (1 run; not within 200,000, the longest measured); hopper from long (1 run; not within 200,000, the longest measured)"
    )


def test_a_seed_the_longest_board_lacks_counts_where_it_settles_later():
    def seed(records: list[dict], n: int) -> list[dict]:
        for rec in records:
            rec["seed"] = n
        return records

    flat_long = _cell("long", "hopper", "bcq", _flat, LONG)  # seed 0 settles at once on the 200k board
    alone = _propose(flat_long)[("hopper", "bcq")]
    late = seed(_cell("short", "hopper", "bcq", lambda u: 50.0 * min(1.0, u / 30_000), GRID), 1)  # seed 1 climbs to 30k
    got = _propose([*flat_long, *_cell("short", "hopper", "bcq", _flat, GRID), *late])[("hopper", "bcq")]
    assert (got.seed, got.board, got.runs, got.measured) == (1, "short", 1, 60_000)
    assert got.plateaued and got.both_from > alone.both_from and got.both_from >= 30_000
    assert got.budget == max(25_000, -(-got.both_from // 5000) * 5000)
    assert "hopper from short (its seed 1 alone, which the longest board lacks)" in study.budget_tables([got])[1]["bcq"]
    assert "yes; its seed 1 alone, which the longest board lacks" in study.format_proposals([got])
    # a second seed still moving at the end of its run: that run's length, flagged
    climbing = seed(_cell("short", "hopper", "bcq", lambda u: u / 1000, GRID), 1)
    got = _propose([*flat_long, *climbing])[("hopper", "bcq")]
    assert (got.seed, got.budget, got.plateaued) == (1, 60_000, False)
    assert "not within 60,000, the end of its run" in study.budget_tables([got])[1]["bcq"]
    # a second seed that settles before the longest board's: the longest board decides, as alone
    rise_long = _cell("long", "hopper", "bcq", _rise, LONG)
    got = _propose([*rise_long, *seed(_cell("short", "hopper", "bcq", _flat, GRID), 1)])[("hopper", "bcq")]
    assert got == _propose(rise_long)[("hopper", "bcq")] and (got.seed, got.board, got.budget) == (None, "long", 45_000)


def test_set_variants_reference_rows_and_other_boards_are_not_budgeted():
    records = [
        *_cell("long", "hopper", "mabcq mabcq_epsilon=0.2", _flat, LONG),  # a --set variant of mabcq
        *_cell("long", "hopper", "zero-action", _flat, LONG, q=None),
        *_cell("long", "hopper", "random", _flat, LONG, q=None),
        *_cell("lite-v1-p3", "hopper", "bcq", _flat, GRID),  # not a study board
        *_cell("long", "hopper", "td3bc", _flat, LONG),
    ]
    learners = _learners()
    assert "zero-action" not in learners and "random" not in learners and "td3bc" in learners
    proposals = study.propose(records, ("short", "long"), learners, EVERY, LAST, ABLATIONS)
    assert [(p.task, p.learner) for p in proposals] == [("hopper", "td3bc")]
    missing = study.unstudied(proposals, ["hopper"], learners)
    assert {"mabcq", "bcq"} <= set(missing["hopper"]) and "td3bc" not in missing["hopper"]


def test_ablations_have_their_own_cell_where_studied_and_follow_mabcq_elsewhere():
    records = [
        *_cell("long", "hopper", "mabcq", _rise, LONG),
        *_cell("long", "walker", "mabcq", _flat, LONG),
        *_cell("short", "hopper", "mabcq-no-vd", _flat, GRID),
    ]
    got = _propose(records)
    assert got[("hopper", "mabcq-no-vd")].follows == "" and got[("hopper", "mabcq-no-vd")].board == "short"
    assert got[("hopper", "mabcq-no-vd")].budget == 25_000
    for task, ablation in [("walker", "mabcq-no-vd"), ("hopper", "mabcq-no-tn"), ("walker", "mabcq-no-tn")]:
        p, mabcq = got[(task, ablation)], got[(task, "mabcq")]
        assert p.follows == "mabcq" and (p.budget, p.board) == (mabcq.budget, mabcq.board)
    assert ("hopper", "bcq") not in got  # no one to follow
    tables, notes = study.budget_tables(list(got.values()), LEARNERS)
    assert list(tables) == ["mabcq", "mabcq-no-tn", "mabcq-no-vd"]  # learners' order
    assert notes["mabcq-no-tn"].startswith("budget study, as mabcq (not studied itself): walker from long")
    assert notes["mabcq-no-vd"] == "budget study: walker as mabcq (not studied itself) from long (1 run); hopper from short (1 run)"
    assert "as mabcq, not studied itself" in study.format_proposals(list(got.values()))


def test_the_printed_tables_load_as_lites_budgets_and_nothing_is_written(tmp_path):
    records = [
        *_cell("plateau200-v1-p2", "hopper", "td3bc", _rise, LONG),
        *_cell("plateau200-v1-p2", "hopper", "ddpg", _climb, LONG),
        *_cell("plateau60-v1-p2", "walker", "mabcq", _flat, GRID),
        *_cell("plateau200-v1-p2", "hopper", "zero-action", _flat, LONG, q=None),
    ]
    store = write_store(tmp_path / "records", records)
    before = {p: p.read_bytes() for p in [*store.rglob("*.json"), BASELINES_DIR / "lite.toml"]}
    result = CliRunner().invoke(main, ["baselines", "--budgets-from", str(store)])
    assert result.exit_code == 0, result.output
    rows = {tuple(line.split()[:3]) for line in result.output.splitlines()}
    assert {("hopper", "td3bc", "44,000"), ("hopper", "ddpg", "200,000"), ("walker", "mabcq", "10,000")} <= rows  # 6k: at least 5 × 2k
    assert "not within 200,000 (longest measured)" in result.output and "zero-action" not in result.output
    assert "not studied yet on hopper:" in result.output
    shipped = load_protocol("lite").protocol.get("budgets")
    assert ("sets no learner budgets" if not shipped else "lite.toml differs: ") in result.output  # the shipped file against this study
    toml = result.output.split("tables for ")[1].split("\n", 1)[1].split("\n\n")[0]
    assert tomllib.loads(toml)["protocol"]["budgets"]["td3bc"] == {"hopper": 44_000}
    assert "[protocol.budgets.ddpg]  # budget study: hopper from plateau200-v1-p2 (1 run; not within 200,000, the longest measured)" in toml
    assert tomllib.loads(toml)["protocol"]["budgets"]["ddpg"] == {"hopper": 200_000, "not_plateaued": ["hopper"]}
    lite = re.sub(r"(?m)^\[protocol\.budgets\.[^]]+\][^\n]*\n(?:[^\[\n][^\n]*\n)*", "", (BASELINES_DIR / "lite.toml").read_text())  # its own tables out
    path = tmp_path / "lite.toml"
    path.write_text(lite.replace("\n[algos.mabcq]", f"\n{toml}\n\n[algos.mabcq]", 1))
    protocol = load_protocol(str(path))
    assert protocol.for_run("hopper", "td3bc") == ({**protocol.for_task("hopper"), "updates": 44_000}, "protocol.budgets.td3bc.hopper")
    assert protocol.for_run("walker", "mabcq-no-vd")[0]["updates"] == 10_000  # follows mabcq
    assert protocol.for_run("walker", "td3bc")[1] == "protocol.updates"  # not studied: the tier's budget
    assert not protocol.plateaued("hopper", "ddpg") and protocol.plateaued("hopper", "td3bc") and protocol.plateaued("walker", "td3bc")
    # the tier's file against the study: it agrees once the tables are in it
    again = CliRunner().invoke(main, ["baselines", "--budgets-from", str(store), "--preset", str(path)])
    assert again.exit_code == 0 and f"{path} agrees with the study" in again.output and f"paste the tables into {path}" in again.output
    assert {p: p.read_bytes() for p in before} == before


def test_a_bad_folder_or_a_tier_without_a_study_is_one_line(tmp_path):
    assert _fails(["baselines", "--budgets-from", str(tmp_path / "none")]) == (
        f"Error: --budgets-from {tmp_path / 'none'} is not a folder of run records (<board>/<task>/<variant>/seed<k>.json)"
    )
    write_store(tmp_path / "other", _cell("lite-v1-p3", "hopper", "bcq", _flat, GRID))
    assert "holds no records of lite's budget study (boards plateau60-v1-p2, plateau120-v1-p2, plateau200-v1-p2)" in _fails(
        ["baselines", "--budgets-from", str(tmp_path / "other")]
    )
    assert "tier paper has no budget study" in _fails(["baselines", "--budgets-from", str(tmp_path / "other"), "--preset", "paper"])
    result = CliRunner().invoke(main, ["baselines", "--budgets-from", str(tmp_path / "other"), "--write"])
    assert result.exit_code == 2 and "writes nothing" in result.output


def test_disagreements_read_updates_as_every_task_without_a_key_of_its_own():
    got = _propose([*_cell("long", "hopper", "td3bc", _rise, LONG), *_cell("long", "walker", "td3bc", _flat, LONG)])
    proposals = list(got.values())
    assert study.disagreements({"td3bc": {"hopper": 45_000, "walker": 25_000}}, proposals, ["hopper", "walker"]) == []
    assert study.disagreements({"td3bc": {"updates": 25_000, "hopper": 45_000}}, proposals, ["hopper", "walker"]) == []
    assert study.disagreements({"td3bc": {"updates": 45_000}}, proposals, ["hopper", "walker", "ant"]) == [
        "protocol.budgets.td3bc.updates = 45000 on walker: the study proposes 25000 (walker from long (1 run))",
        "protocol.budgets.td3bc.updates = 45000 on ant: the study has no cell of td3bc on ant",
    ]
    # the not_plateaued list is held to the study too
    assert study.disagreements({"td3bc": {"hopper": 45_000, "walker": 25_000, "not_plateaued": ["walker"]}}, proposals, ["hopper", "walker"]) == [
        "protocol.budgets.td3bc.not_plateaued lists walker on walker: the study saw it plateau (walker from long (1 run))"
    ]


def _hold_lite_to_the_study() -> list[study.Proposal]:
    """Every ``[protocol.budgets.<algo>]`` entry of the shipped lite protocol is what the committed
    study records propose; returns the proposals."""
    proposals = study_proposals(load_protocol("lite"), load_records(REPO / "leaderboard" / "records"))
    differ = study.disagreements(DEFAULT_PROTOCOLS["lite"].protocol.get("budgets", {}), proposals, TASKS)
    assert not differ, "lite's learner budgets are not the study's (`mabcq-bench baselines --budgets-from leaderboard/records`): " + "; ".join(differ)
    return proposals


def test_lites_learner_budgets_are_what_the_committed_study_proposes():
    _hold_lite_to_the_study()  # vacuous while lite has no learner budgets


def test_the_hold_fails_a_lite_budget_that_disagrees_with_the_study(monkeypatch):
    proposals = _hold_lite_to_the_study()
    p = next(p for p in proposals if p.learner == "mabcq" and p.task == "hopper")
    lite = DEFAULT_PROTOCOLS["lite"].protocol
    monkeypatch.setitem(lite, "budgets", {"mabcq": {"hopper": p.budget}})
    _hold_lite_to_the_study()
    monkeypatch.setitem(lite, "budgets", {"mabcq": {"hopper": p.budget + 2000}})
    with pytest.raises(AssertionError, match=f"protocol.budgets.mabcq.hopper = {p.budget + 2000} on hopper: the study proposes {p.budget}"):
        _hold_lite_to_the_study()
