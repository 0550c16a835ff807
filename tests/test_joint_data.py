"""The joint-action datasets: every agent's transitions, once, with the joint action (issue 25)."""

from __future__ import annotations

import json

import minari
import numpy as np
import pytest
from click.testing import CliRunner

from mabcq_bench.cli import main
from mabcq_bench.data import manifest
from mabcq_bench.data.datasets import make_data
from mabcq_bench.data.recipes import load_recipe
from mabcq_bench.data.tasks import TASKS

from conftest import use_store


def test_joint_dataset_holds_every_agents_transitions_with_the_joint_action(smoke_hopper, monkeypatch):
    use_store(smoke_hopper, monkeypatch)
    task = TASKS["hopper"]
    joint = minari.load_dataset("mabcq/hopper/smoke-joint-v2")
    md = joint.storage.metadata
    assert md["agent_action_indices"] == [list(p) for p in task.partition]
    assert joint.action_space.shape == (task.joint_action_dim,)
    joint_eps = list(joint.iterate_episodes())
    seen = set()
    for agent in range(task.n_agents):
        own = minari.load_dataset(f"mabcq/hopper/smoke-agent{agent}-v2")
        index = md["agent_episode_index"][f"agent{agent}"]
        eps = list(own.iterate_episodes())
        assert len(index) == len(eps)
        for ep, j in zip(eps, index):  # transition by transition, bit for bit
            je = joint_eps[j]
            for field in ("observations", "rewards", "terminations", "truncations"):
                np.testing.assert_array_equal(getattr(je, field), getattr(ep, field))
            np.testing.assert_array_equal(je.actions[:, md["agent_action_indices"][agent]], ep.actions)
            seen.add(j)
    # each transition once: the early part (the same in every agent's dataset) once, nothing else
    assert seen == set(range(len(joint_eps)))
    early = md["mixture"]["early"]
    assert joint.total_steps == early + 3 * (5000 - early) == 13_000
    assert md["checksum"] == md.get("checksum") and "agent" not in md and md["agents"] == 3


def test_joint_dataset_loads_scores_and_recovers_the_joint_task(smoke_hopper, monkeypatch):
    use_store(smoke_hopper, monkeypatch)
    joint = minari.load_dataset("mabcq/hopper/smoke-joint-v2")
    agent0 = minari.load_dataset("mabcq/hopper/smoke-agent0-v2")
    md, md0 = joint.storage.metadata, agent0.storage.metadata
    assert (md["ref_min_score"], md["ref_max_score"]) == (md0["ref_min_score"], md0["ref_max_score"])
    scores = minari.get_normalized_score(joint, np.array([md["ref_min_score"], md["ref_max_score"]]))
    np.testing.assert_allclose(scores, [0.0, 1.0])
    for env in (joint.recover_environment(), joint.recover_environment(eval_env=True)):
        assert env.spec.id == "Hopper-v5" and env.action_space.shape == (3,)
        env.close()
    assert "joint action" in md["description"] and "once" in md["description"]


def test_per_agent_datasets_stay_the_manifests_and_the_joint_one_is_listed(smoke_hopper, monkeypatch):
    use_store(smoke_hopper, monkeypatch)
    listed = manifest.read_manifest(manifest.manifest_path("smoke"))
    checks = manifest.check([smoke_hopper["recipe"]], listed)
    assert [c.dataset_id for c in checks] == [f"mabcq/hopper/smoke-agent{i}-v2" for i in range(3)] + ["mabcq/hopper/smoke-joint-v2"]
    assert [c.verdict for c in checks] == ["identical"] * 4, [c.detail for c in checks]
    assert listed["mabcq/hopper/smoke-joint-v2"]["joint_of_agents"] == 3


def test_joint_dataset_made_after_the_agents_is_the_same_bits(smoke_hopper, tmp_path, monkeypatch):
    """Made apart from the agents' datasets (they exist: their episodes are rolled out again from
    the same seeds), the joint dataset has the same checksum as made in one pass."""
    use_store(smoke_hopper, monkeypatch)
    recipe = smoke_hopper["recipe"]
    one_pass = minari.load_dataset(recipe.joint_dataset_id).storage.metadata["checksum"]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    statuses = make_data(recipe, progress=False, log=lambda _: None, joint=False)
    assert [s.dataset_id for s in statuses] == [recipe.dataset_id(i) for i in range(3)]
    assert not (tmp_path / "minari" / recipe.joint_dataset_id).exists()
    statuses = make_data(recipe, progress=False, log=lambda _: None)
    assert [s.created for s in statuses] == [False, False, False, True]
    assert statuses[-1].checksum == one_pass


def test_no_joint_flag_skips_the_joint_dataset(tmp_path, monkeypatch):
    result = CliRunner().invoke(main, ["make-data", "--env", "hopper", "--preset", "smoke", "--no-joint", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "joint" not in result.output
    assert not (tmp_path / "minari" / "mabcq" / "hopper" / "smoke-joint-v2").exists()
    help_text = CliRunner().invoke(main, ["make-data", "--help"]).output
    assert "--no-joint" in help_text


@pytest.mark.parametrize("tier", ["smoke", "lite", "paper"])
def test_the_manifest_lists_a_joint_dataset_for_every_task(tier):
    doc = json.loads(manifest.manifest_path(tier).read_text())
    ids = {e["dataset_id"] for e in doc["datasets"]}
    recipes = load_recipe(tier)
    assert {recipes.for_task(t).joint_dataset_id for t in TASKS} <= ids
