"""Batched collection: exact budgets, consistent episodes, determinism."""

import numpy as np

from mabcq_bench.data.rollout import collect, decentralized, evaluate, random_policy
from mabcq_bench.data.tasks import TASKS


def test_collect_returns_exactly_the_budget_as_consistent_episodes():
    task = TASKS["hopper"]
    episodes = collect(task, random_policy(task, 0), 1003, num_envs=4, seed=5)
    assert sum(len(e) for e in episodes) == 1003
    for e in episodes:
        T = len(e)
        assert e.observations.shape == (T + 1, 11) and e.actions.shape == (T, 3)
        # an episode ends exactly once, at its last step, and is never both terminated and truncated
        done = e.terminations | e.truncations
        assert done[-1] and not done[:-1].any()
        assert not (e.terminations & e.truncations).any()
    assert episodes[-1].truncations[-1]  # the budget cut


def test_collect_matches_a_plain_rollout():
    """The vectorized bookkeeping gives exactly what stepping one env by hand gives."""
    task = TASKS["hopper"]
    actions = np.random.default_rng(0).uniform(-1, 1, (400, 3)).astype(np.float32)
    it = iter(actions)
    episodes = collect(task, lambda s: next(it)[None], 200, num_envs=1, seed=9)
    env = task.make_env()
    obs, _ = env.reset(seed=9)
    e = episodes[0]
    np.testing.assert_allclose(e.observations[0], obs)
    for t in range(len(e)):
        obs, r, term, trunc, _ = env.step(actions[t])
        np.testing.assert_allclose(e.observations[t + 1], obs)
        assert e.rewards[t] == r and e.terminations[t] == term


def test_collect_is_deterministic():
    task = TASKS["halfcheetah"]
    a = collect(task, random_policy(task, 1), 300, num_envs=3, seed=2)
    b = collect(task, random_policy(task, 1), 300, num_envs=3, seed=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.observations, y.observations)
        np.testing.assert_array_equal(x.actions, y.actions)


def test_evaluate_runs_one_episode_per_seed_with_a_decentralized_policy():
    task = TASKS["hopper"]
    zero = [lambda s, d=d: np.zeros((len(s), d)) for d in task.action_dims]
    returns = evaluate(task, decentralized(task, zero), episodes=2, seed=0)
    assert returns.shape == (2,) and np.all(np.isfinite(returns)) and np.all(returns > 0)
