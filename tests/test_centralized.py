"""The centralized reference (issue 25): one learner owning every joint, on the joint-action
dataset, under the decentralized runs' protocol and normalization, filed apart."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from mabcq_bench.algos import ALGOS, resolve_algos
from mabcq_bench.cli import main
from mabcq_bench.data.tasks import TASKS
from mabcq_bench.errors import UserError
from mabcq_bench.runs import execute, plan
from mabcq_bench.runs.protocol import load_protocol

CENTRALIZED = ["bc", "behavior", "bcq", "ddpg", "td3bc", "iql", "cql"]


def _runs(algo: str, setting: str = "centralized"):
    return plan.prepare([plan.RunSpec("tiny", "hopper", algo, 0, (), setting)], load_protocol("tiny"), "tiny")


def test_the_centralized_task_is_one_agent_owning_every_joint():
    task = TASKS["hopper"].centralized()
    assert task.n_agents == 1 and task.action_dims == (3,) and task.partition == ((0, 1, 2),)
    assert task.agent_partition == TASKS["hopper"].partition and task.state_dim == 11 and task.env_id == "Hopper-v5"
    joint = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(task.assemble(task.split(joint)), joint)
    assert TASKS["ant"].centralized().action_dims == (8,)


@pytest.mark.parametrize("algo", CENTRALIZED)
def test_a_centralized_run_trains_on_the_joint_dataset_and_says_its_setting(store, algo):
    (run,) = _runs(algo)
    (decentralized,) = _runs(algo, "decentralized")
    record = execute.execute(run, store["results"])
    assert record["setting"] == "centralized" and record["status"] == "finished" and record["updates"] == 6
    # filed apart: never in the decentralized board's folder or table
    assert record["tier"] == "tiny-p2-centralized" and decentralized.spec.tier == "tiny-p2"
    path = store["results"] / "tiny-p2-centralized" / "hopper" / algo / "seed0.json"
    assert json.loads(path.read_text()) == record
    assert [d["id"] for d in record["datasets"]] == ["mabcq/hopper/tiny-joint-v0"]
    # the same normalization and protocol as the decentralized runs; another fingerprint
    assert (record["ref_min_score"], record["ref_max_score"]) == (decentralized.ref_min, decentralized.ref_max)
    assert record["protocol"] == decentralized.protocol and record["config"] == decentralized.config
    assert run.fingerprint != decentralized.fingerprint
    assert np.isfinite(record["final"]["normalized_score"])
    # one agent has no coordination gap (max_i V_i − min_i V_i over one agent would be a constant 0)
    assert record["final"]["coordination_gap"] is None and all(p["coordination_gap"] is None for p in record["curve"])


@pytest.mark.parametrize("algo", ["mabcq", "mabcq-no-tn", "mabcq-no-vd", "omar"])
def test_multi_agent_methods_are_refused_centralized_in_one_line(store, algo):
    with pytest.raises(UserError) as err:
        _runs(algo)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{algo} does not run centralized:")
    assert ("have no meaning" in message) if algo.startswith("mabcq") else ("multi-agent method" in message)
    with pytest.raises(UserError, match="does not run centralized"):
        resolve_algos(algo, "centralized")


def test_the_refusal_for_mabcq_says_why():
    with pytest.raises(UserError) as err:
        resolve_algos("bcq,mabcq", "centralized")
    assert str(err.value) == (
        "mabcq does not run centralized: its weights λ_vd and λ_tn correct for the other agents' actions being hidden from "
        "each agent's data; one agent owning every joint sees the whole joint action, so they have no meaning (its centralized "
        "counterpart is bcq) (centralized learners: bcq, ddpg, td3bc, iql, cql, bc, behavior)"
    )


def test_all_means_every_centralized_learner():
    assert sorted(a.name for a in resolve_algos("all", "centralized")) == sorted(CENTRALIZED)
    assert len(resolve_algos("all")) == len(ALGOS)


def test_cli_run_setting_centralized(store):
    runner = CliRunner()
    assert "--setting [decentralized|centralized]" in runner.invoke(main, ["run", "--help"]).output
    args = ["run", "--env", "hopper", "--preset", "tiny", "--seeds", "1", "--results", str(store["results"]), "--workers", "1", "--no-progress"]
    result = runner.invoke(main, [*args, "--algo", "bc", "--setting", "centralized"])
    assert result.exit_code == 0, result.output
    assert (store["results"] / "tiny-p2-centralized" / "hopper" / "bc" / "seed0.json").exists()
    result = runner.invoke(main, [*args, "--algo", "mabcq", "--setting", "centralized"])
    assert result.exit_code == 1 and "mabcq does not run centralized" in result.output and "Traceback" not in result.output


def test_missing_joint_dataset_names_make_data(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty"))
    with pytest.raises(UserError, match=r"joint-action datasets .* of hopper are missing; make them with `mabcq-bench make-data --env hopper --preset tiny`"):
        _runs("bc")


def test_a_centralized_learner_runs_its_own_budget_else_the_decentralized_one(store, tmp_path):
    """Issue 25 (4): ``[protocol.centralized_budgets.<algo>]`` sets a one-agent learner's updates
    (it may plateau elsewhere than the N agents); without one a centralized run takes the
    learner's decentralized budget; decentralized runs never read the centralized tables."""
    text = (store["base"] / "baselines" / "tiny.toml").read_text()
    tables = "[protocol.budgets.bc]\nupdates = 9\n[protocol.budgets.bcq]\nhopper = 8\n[protocol.centralized_budgets.bc]\nhopper = 5\n\n"
    path = tmp_path / "tiny.toml"
    path.write_text(text.replace("[algos.mabcq]", tables + "[algos.mabcq]", 1))
    protocol = load_protocol(str(path))
    specs = [plan.RunSpec("tiny", "hopper", a, 0, (), s) for a in ("bc", "bcq", "ddpg") for s in ("decentralized", "centralized")]
    runs = {(r.spec.algo, r.spec.setting): (r.protocol["updates"], r.budget) for r in plan.prepare(specs, protocol, "tiny")}
    assert runs == {
        ("bc", "decentralized"): (9, "protocol.budgets.bc.updates"),
        ("bc", "centralized"): (5, "protocol.centralized_budgets.bc.hopper"),
        ("bcq", "decentralized"): (8, "protocol.budgets.bcq.hopper"),
        ("bcq", "centralized"): (8, "protocol.budgets.bcq.hopper"),
        ("ddpg", "decentralized"): (6, "protocol.updates"),
        ("ddpg", "centralized"): (6, "protocol.updates"),
    }
    for bad, message in [
        ("[protocol.centralized_budgets.mabcq]\nupdates = 9", "[protocol.centralized_budgets.mabcq] is not a centralized learner"),
        ("[protocol.centralized_budgets.bc]\nhopper = -1", "[protocol.centralized_budgets.bc] hopper must be a positive integer"),
    ]:
        path.write_text(text.replace("[algos.mabcq]", f"{bad}\n\n[algos.mabcq]", 1))
        with pytest.raises(UserError, match=re.escape(message)):
            load_protocol(str(path))
