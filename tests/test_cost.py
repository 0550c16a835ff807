"""What a sweep costs before it runs (`run --dry-run`): planned runs priced from records with
known CPU and wall times, with no dataset, no training and no file written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mabcq_bench.algos import ALGOS
from mabcq_bench.cli import main
from mabcq_bench.runs import cost
from mabcq_bench.runs.plan import RunSpec, plan_runs
from mabcq_bench.runs.protocol import Protocol, _protocol, protocol_text

from test_cli_errors import _fails, _tree
from test_leaderboard import make_record, write_store

#: Every record's learning curve: an evaluation of 10 episodes every 1,000 of 10,000 updates.
CURVE = range(1000, 10001, 1000)


def timed_record(task: str, algo: str, update_ms: float, episode_s: float, *, seed: int = 0, tier: str = "study", variant: str | None = None, **extra) -> dict:
    """A finished record whose wall times make exactly ``update_ms`` per update and ``episode_s``
    per evaluation episode (10 at each curve point, 50 in the final)."""
    rec = make_record(task, variant or algo, seed, 50.0, None, algo=algo, tier=tier)
    rec["curve"] = [{"updates": u, "normalized_score": 50.0, "returns": [0.0] * 10, "wall_s": 10 * episode_s} for u in CURVE]
    rec["final"].update(returns=[0.0] * 50, wall_s=50 * episode_s)
    rec.update(updates=CURVE[-1], protocol={"threads": 1, "eval_episodes": 10}, overrides={}, stacked_agents=False, cuda_graph=False)
    rec["train_wall_s"] = CURVE[-1] * update_ms / 1000 + (len(CURVE) * 10 + 50) * episode_s
    rec.update(extra)
    return rec


def with_cpu(rec: dict, update_ms: float, episode_s: float) -> dict:
    """``rec`` with CPU times that make exactly ``update_ms`` per update and ``episode_s`` per
    evaluation episode (its wall times stay what they were)."""
    for point in rec["curve"]:
        point["cpu_s"] = 10 * episode_s
    rec["final"]["cpu_s"] = 50 * episode_s
    rec["train_cpu_s"] = CURVE[-1] * update_ms / 1000 + (len(CURVE) * 10 + 50) * episode_s
    return rec


#: A version-3 tier: 20,000 updates, 10 episodes every 2,000, the final's 50 as 10 at each of the last 5 points; td3bc
#: runs 40,000 updates on hopper (its own budget).
PROTO = _protocol(20000, 2000, 10, 50, 5, 2000, final_checkpoints=5, budgets={"td3bc": {"hopper": 40000}})


def _plan(algos: list[str], seeds=(0, 1), overrides=()) -> list:
    protocol = Protocol("t", Path("t.toml"), PROTO, {a: {} for a in ALGOS})
    return plan_runs([RunSpec("t", "hopper", a, s, tuple(overrides)) for a in algos for s in seeds], protocol)


def _by_variant(priced) -> dict[str, list]:
    out: dict[str, list] = {}
    for c in priced:
        out.setdefault(c.run.spec.variant, []).append(c)
    return out


def test_evaluation_points_are_those_a_run_makes():
    points = cost.evaluation_points(PROTO)
    assert points[:10] == [(u, 10) for u in range(2000, 20001, 2000)]  # the learning curve
    assert points[10:] == [(20000, 10), (18000, 10), (16000, 10), (14000, 10), (12000, 10)]  # protocol 3's final shares
    p2 = dict(PROTO, version=2, updates=5000, final_checkpoints=1)
    assert cost.evaluation_points(p2) == [(2000, 10), (4000, 10), (5000, 10), (5000, 50)]  # the last update too; the final after it


def test_known_wall_times_give_the_known_cpu_hours_and_per_learner_budgets():
    costs = cost.measure([timed_record("hopper", "bc", 5.0, 0.2), timed_record("hopper", "td3bc", 10.0, 0.3)])
    priced = _by_variant(cost.estimate(_plan(["bc", "td3bc"]), costs))
    # bc: 20,000 updates × 5 ms + (10 curve points + 5 final shares) × 10 episodes × 0.2 s
    assert [c.update_s for c in priced["bc"]] == pytest.approx([100.0, 100.0])
    assert [c.eval_s for c in priced["bc"]] == pytest.approx([30.0, 30.0])
    # td3bc on hopper: its own 40,000 updates × 10 ms + (20 + 5) × 10 × 0.3 s
    assert [c.run.protocol["updates"] for c in priced["td3bc"]] == [40000, 40000]
    assert priced["td3bc"][0].cpu_s == pytest.approx(400.0 + 75.0)
    text = cost.format_estimate([*priced["bc"], *priced["td3bc"]], workers=2)
    assert f"total: {2 * (130 + 475) / 3600:.2f} CPU-hours for 4 of 4 runs" in text
    assert "wall time at 2 runs at once, each on a core of its own: 10 min" in text  # 130 + 475 s on each core
    assert cost.wall_s([475, 475, 130, 130], 1) == pytest.approx(1210) and cost.wall_s([475, 130, 130], 2) == pytest.approx(475)


def test_evaluations_are_priced_at_the_rate_of_their_point_on_the_curve():
    rec = timed_record("hopper", "bc", 5.0, 0.2)
    for i, point in enumerate(rec["curve"]):  # episodes lengthen as the policy learns: 0.1 s at 1,000 updates to 1.0 s at 10,000
        point["wall_s"] = 10 * 0.1 * (i + 1)
    m = cost.measure([rec]).measured["decentralized", "hopper", "bc"]
    assert m.episode_s(500) == pytest.approx(0.1) and m.episode_s(4500) == pytest.approx(0.45) and m.episode_s(30000) == pytest.approx(1.0)
    assert m.update_ms == pytest.approx((rec["train_wall_s"] - sum(p["wall_s"] for p in rec["curve"]) - 10.0) / 10)


def test_an_unmeasured_cell_is_reported_and_left_out_of_the_total():
    untimed = timed_record("hopper", "ddpg", 5.0, 0.2, tier="old")
    del untimed["final"]["wall_s"]  # a record from before evaluations were timed
    costs = cost.measure([timed_record("hopper", "bc", 5.0, 0.2), untimed])
    priced = _by_variant(cost.estimate(_plan(["bc", "ddpg", "iql"]), costs))
    assert priced["ddpg"][0].measured is None and priced["ddpg"][0].note == "not measured: its records do not time their evaluations (old)"
    assert priced["iql"][0].measured is None and priced["iql"][0].note == "not measured: no record"
    text = cost.format_estimate([c for cs in priced.values() for c in cs], workers=2)
    (row,) = [line.split(None, 7) for line in text.splitlines() if line.startswith("hopper  iql")]
    assert row == ["hopper", "iql", "2", "20,000", "–", "–", "–", "not measured: no record"]
    assert f"total: {2 * 130 / 3600:.2f} CPU-hours for 2 of 6 runs; 4 runs (2 task-learner cells) not measured, left out" in text


def test_variants_ablations_and_reference_rows_fall_back_as_documented():
    own_vd = timed_record("hopper", "mabcq-no-vd", 8.0, 0.2)
    costs = cost.measure([
        timed_record("hopper", "mabcq", 10.0, 0.2),
        own_vd,
        timed_record("hopper", "mabcq", 1.0, 0.2, variant="mabcq epsilon=0.2", overrides={"epsilon": 0.2}),  # a variant measures nothing
        timed_record("hopper", "random", 0.5, 0.1),
    ])  # fmt: skip
    assert costs.measured["decentralized", "hopper", "mabcq"].update_ms == pytest.approx(10.0)
    priced = _by_variant(cost.estimate(_plan(["mabcq", "mabcq-no-tn", "mabcq-no-vd", "random", "zero-action"], seeds=(0,)), costs))
    assert priced["mabcq-no-tn"][0].note == "as mabcq, no timed mabcq-no-tn record" and priced["mabcq-no-tn"][0].update_s == pytest.approx(200.0)
    assert priced["mabcq-no-vd"][0].note == "" and priced["mabcq-no-vd"][0].update_s == pytest.approx(160.0)  # its own records
    assert priced["random"][0].note == "evaluations only" and priced["random"][0].update_s == 0.0 and priced["random"][0].eval_s == pytest.approx(15.0)
    assert priced["zero-action"][0].measured is None  # never guessed from another row
    (variant,) = cost.estimate(_plan(["mabcq"], seeds=(0,), overrides=[("epsilon", 0.2)]), costs)
    assert variant.run.spec.variant == "mabcq epsilon=0.2" and variant.note == "as mabcq" and variant.update_s == pytest.approx(200.0)


def test_cpu_times_price_a_record_where_it_has_them_all_else_its_wall_times():
    """A record whose run was paused or shared its core has wall times above its CPU times: the
    CPU times price it, and a cell with any CPU-timed record is priced from those alone."""
    wall = timed_record("hopper", "bc", 5.0, 0.2)
    cpu = with_cpu(timed_record("hopper", "bc", 9.0, 0.4, seed=1), 4.0, 0.1)  # its wall times: 9 ms, 0.4 s
    m = cost.measure([cpu]).measured["decentralized", "hopper", "bc"]
    assert (m.clock, m.update_ms, m.episode_s(5000)) == ("cpu", pytest.approx(4.0), pytest.approx(0.1))
    m = cost.measure([wall]).measured["decentralized", "hopper", "bc"]
    assert (m.clock, m.update_ms, m.episode_s(5000)) == ("wall", pytest.approx(5.0), pytest.approx(0.2))
    m = cost.measure([wall, cpu]).measured["decentralized", "hopper", "bc"]  # never the clocks mixed
    assert (m.clock, m.runs, m.update_ms, m.episode_s(5000)) == ("cpu", 1, pytest.approx(4.0), pytest.approx(0.1))
    # a CPU time missing anywhere (a run resumed from a checkpoint that did not keep it): its wall times
    no_total = with_cpu(timed_record("hopper", "bc", 9.0, 0.4), 4.0, 0.1)
    del no_total["train_cpu_s"]
    no_point = with_cpu(timed_record("hopper", "bc", 9.0, 0.4), 4.0, 0.1)
    del no_point["curve"][0]["cpu_s"]
    for partial in (no_total, no_point):
        m = cost.measure([partial]).measured["decentralized", "hopper", "bc"]
        assert (m.clock, m.update_ms) == ("wall", pytest.approx(9.0))
    # priced: 20,000 updates × 4 ms + (10 curve points + 5 final shares) × 10 episodes × 0.1 s, and the table says cpu
    priced = cost.estimate(_plan(["bc", "td3bc"]), cost.measure([wall, cpu, timed_record("hopper", "td3bc", 10.0, 0.3)]))
    bc = [c for c in priced if c.run.spec.variant == "bc"]
    assert [(c.update_s, c.eval_s) for c in bc] == [(pytest.approx(80.0), pytest.approx(15.0))] * 2
    text = cost.format_estimate(priced, workers=2)
    assert [line.rsplit("  ", 1)[-1] for line in text.splitlines() if line.startswith("hopper")] == ["study (1 run, cpu)", "study (1 run, wall)"]
    assert "(cpu: priced from the records' CPU time; wall: from their wall time, which also counts pauses and a shared core)" in text


def test_only_runs_made_as_a_cpu_sweep_makes_them_measure():
    for changed in ({"stacked_agents": True}, {"cuda_graph": True}, {"protocol": {"threads": 2, "eval_episodes": 10}}):
        assert cost.measure([timed_record("hopper", "bc", 5.0, 0.2, **changed)]).measured == {}, changed
    central = timed_record("hopper", "bc", 5.0, 0.2, tier="study-centralized", setting="centralized")
    assert list(cost.measure([central]).measured) == [("centralized", "hopper", "bc")]


@pytest.fixture
def priced_setup(tmp_path, monkeypatch):
    """A protocol file, a records folder with hopper's bc and td3bc timed, and a --results path."""
    preset = tmp_path / "t.toml"
    preset.write_text(protocol_text("t", PROTO, "t: a test tier"))
    records = write_store(tmp_path / "records", [timed_record("hopper", "bc", 5.0, 0.2), timed_record("hopper", "td3bc", 10.0, 0.3)])

    def no_training(*args, **kwargs):
        raise AssertionError("a dry run prepared or ran the sweep")

    monkeypatch.setattr("mabcq_bench.runs.plan.prepare", no_training)
    monkeypatch.setattr("mabcq_bench.runs.sweep.run_sweep", no_training)
    return preset, records, tmp_path / "runs"


def test_dry_run_prints_plan_and_costs_and_writes_nothing(priced_setup, tmp_path):
    preset, records, results = priced_setup
    before = _tree(tmp_path)
    args = ["run", "--preset", str(preset), "--env", "hopper", "--algo", "bc,td3bc,iql", "--seeds", "2", "--results", str(results), "--workers", "2"]
    out = CliRunner().invoke(main, [*args, "--dry-run", "--cost-records", str(records)])
    assert out.exit_code == 0, out.output
    assert "plan: 6 runs = 3 algorithms × 1 task × 2 seeds; hopper 20,000 or 40,000 updates per agent (3 agents)" in out.output
    assert f"total: {2 * (130 + 475) / 3600:.2f} CPU-hours for 4 of 6 runs; 2 runs (1 task-learner cell) not measured" in out.output
    assert "not measured: no record" in out.output
    assert _tree(tmp_path) == before and not results.exists()  # no record, checkpoint or folder; datasets never needed


def test_dry_run_bad_input_is_one_line(priced_setup, tmp_path):
    preset, records, _ = priced_setup
    args = ["run", "--preset", str(preset), "--env", "hopper", "--seeds", "1", "--dry-run"]
    assert "--cost-records" in _fails([*args, "--algo", "bc", "--cost-records", str(tmp_path / "nowhere")])
    assert "none of the 1 planned runs is measured" in _fails([*args, "--algo", "cql", "--cost-records", str(records)])
    assert "--dry-run prices CPU runs" in _fails([*args, "--algo", "bc", "--cost-records", str(records), "--device", "cuda"])
    usage = CliRunner().invoke(main, ["run", "--cost-records", str(records)])
    assert usage.exit_code == 2 and "it needs --dry-run" in usage.output
