"""The task registry against the paper's Table 6 and MaMuJoCo's own action mapping."""

import numpy as np
import pytest

from mabcq_bench.errors import UserError
from mabcq_bench.data.tasks import TASKS, get_task, resolve_tasks

# Table 6: agents, state size, action size per agent, epsilon
TABLE6 = {
    "halfcheetah": (2, 17, 3, 0.80),
    "walker": (2, 17, 3, 0.48),
    "hopper": (3, 11, 1, 0.80),
    "ant": (4, 27, 2, 0.64),
}


@pytest.mark.parametrize("name", TABLE6)
def test_table6_numbers(name):
    agents, state, action, eps = TABLE6[name]
    task = TASKS[name]
    assert task.n_agents == agents
    assert task.state_dim == state
    assert task.action_dims == (action,) * agents
    assert task.epsilon == eps
    # every joint actuator belongs to exactly one agent
    assert sorted(i for part in task.partition for i in part) == list(range(task.joint_action_dim))


@pytest.mark.parametrize("name", TABLE6)
def test_split_and_assemble_round_trip(name):
    task = TASKS[name]
    joint = np.random.default_rng(0).uniform(-1, 1, (5, task.joint_action_dim))
    parts = task.split(joint)
    assert [p.shape for p in parts] == [(5, d) for d in task.action_dims]
    np.testing.assert_array_equal(task.assemble(parts), joint)


@pytest.mark.parametrize("name", TABLE6)
def test_assembly_matches_mamujoco(name):
    """Our joint action is MaMuJoCo's, and a step of the joint task is a step of MaMuJoCo."""
    task = TASKS[name]
    ma = task.make_mamujoco()
    ma.reset(seed=3)
    env = task.make_env()
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(5):
        local = {agent: rng.uniform(-1, 1, ma.action_space(agent).shape).astype(np.float32) for agent in ma.agents}
        ours = task.assemble([local[agent] for agent in ma.agents])
        np.testing.assert_array_equal(ma.map_local_actions_to_global_action(local), ours)
        _, rewards, *_ = ma.step(local)
        obs, reward, *_ = env.step(ours)
        np.testing.assert_allclose(ma.state(), obs)
        assert rewards[ma.agents[0]] == pytest.approx(reward)


def test_walker_partition_is_not_contiguous_order():
    # MaMuJoCo lists Walker's joints foot-to-thigh: the registry must keep that order
    assert TASKS["walker"].partition == ((2, 1, 0), (5, 4, 3))


def test_unknown_task_lists_valid_ones():
    with pytest.raises(UserError, match="unknown task 'swimmer'; valid tasks: halfcheetah, walker, hopper, ant"):
        get_task("swimmer")
    assert [t.name for t in resolve_tasks("all")] == list(TASKS)
    assert [t.name for t in resolve_tasks("hopper,ant")] == ["hopper", "ant"]
    assert [t.name for t in resolve_tasks("hopper,ant, hopper")] == ["hopper", "ant"]  # once each, in order
    with pytest.raises(UserError, match=r"no task given \(''\); give a name"):
        resolve_tasks("")


def test_agent_data_is_a_plain_namedtuple():
    from mabcq_bench.data.buffer import AgentData

    d = AgentData(*(np.zeros((4, k), np.float32) for k in (11, 1)), np.zeros(4, np.float32), np.zeros((4, 11), np.float32), np.zeros(4, np.float32))
    assert d.size == 4 and len(d) == 6  # six fields; the transition count is .size
    assert d.episode_returns is None  # unknown for flat transitions (IQL then splits them itself)
    assert d._replace(rewards=np.ones(4, np.float32)).rewards.sum() == 4
