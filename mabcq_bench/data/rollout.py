"""Batched rollouts of a joint policy in the real task: data collection and evaluation.

A *policy* here is a function from a batch of states ``(B, state_dim)`` to a batch of joint
actions ``(B, joint_action_dim)``. A decentralized policy is built from per-agent policies with
:func:`decentralized`: each agent maps the state to its own action and the task assembles them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mabcq_bench.data.tasks import Task

#: Batch of states ``(B, state_dim)`` -> batch of joint actions ``(B, joint_action_dim)``.
PolicyFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Episode:
    """One episode (or a cut piece of one) of joint experience.

    Attributes:
        observations: ``(T + 1, state_dim)`` states, the last one is the state after the last step.
        actions: ``(T, joint_action_dim)`` joint actions.
        rewards: ``(T,)`` shared rewards.
        terminations: ``(T,)`` true where the task ended (the robot fell).
        truncations: ``(T,)`` true where the episode was cut: the time limit, or the end of a
            dataset part (then ``complete`` is false).
        seed: the reset seed of the episode's environment when it is the first episode of that
            environment, else ``None``.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    seed: int | None = None

    def __len__(self) -> int:
        return len(self.rewards)

    #: False for a piece cut from a longer episode (at the end of a dataset part).
    complete: bool = True

    def cut(self, length: int) -> "Episode":
        """The first ``length`` steps, marked truncated (and incomplete) if they end early."""
        if length >= len(self):
            return self
        trunc = self.truncations[:length].copy()
        trunc[-1] = True
        return Episode(
            self.observations[: length + 1],
            self.actions[:length],
            self.rewards[:length],
            self.terminations[:length].copy(),
            trunc,
            self.seed,
            complete=False,
        )


def decentralized(task: Task, agent_policies: Sequence[Callable[[np.ndarray], np.ndarray]]) -> PolicyFn:
    """Joint policy from per-agent policies ``state (B, S) -> own action (B, a_i)``."""

    def joint(states: np.ndarray) -> np.ndarray:
        return task.assemble([pi(states) for pi in agent_policies])

    return joint


def random_policy(task: Task, seed: int) -> PolicyFn:
    """Uniform random joint actions in the task's action box, from a seeded generator."""
    rng = np.random.default_rng(seed)
    space = task.make_env().action_space
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)

    def act(states: np.ndarray) -> np.ndarray:
        return rng.uniform(low, high, size=(len(states), len(low)))

    return act


def zero_policy(task: Task) -> PolicyFn:
    """Sends zero actions: what doing nothing scores (about 1,000 on Ant-v5, +1 per step alive)."""

    def act(states: np.ndarray) -> np.ndarray:
        return np.zeros((len(states), task.joint_action_dim))

    return act


def collect(
    task: Task,
    policy: PolicyFn,
    n_transitions: int,
    num_envs: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    cut_last: bool = True,
) -> list[Episode]:
    """Run ``policy`` in ``num_envs`` copies of the task until ``n_transitions`` are collected
    in complete episodes.

    Every environment runs episodes back to back, each from a reset to its termination or the
    time limit. Finished episodes are taken in the order they end (ties by environment index)
    until they hold ``n_transitions``; the last one taken is cut to make the count exact and
    marked truncated (with ``cut_last=False`` it is kept whole and the count may be exceeded).
    Episodes still running when the count is reached are dropped.

    Args:
        task: the task to run.
        policy: joint policy, see :data:`PolicyFn`.
        n_transitions: transitions to return.
        num_envs: environments stepped as one batch (one policy call per step).
        seed: environment ``k`` is reset with ``seed + k``; later resets continue its generator.
        progress: called with the number of transitions finished after each batched step.
        cut_last: cut the last episode to return exactly ``n_transitions``.
    """
    if n_transitions <= 0:
        return []
    env = task.make_vector_env(num_envs)
    finished: list[Episode] = []
    try:
        current: list[dict[str, list]] = [_new_trace() for _ in range(num_envs)]
        first = [True] * num_envs
        obs, _ = env.reset(seed=seed)
        for k in range(num_envs):
            current[k]["obs"].append(obs[k])
        total = 0
        while total < n_transitions:
            before = total
            action = np.asarray(policy(obs), dtype=np.float32)
            obs, reward, term, trunc, info = env.step(action)
            for k in range(num_envs):
                trace = current[k]
                trace["act"].append(action[k])
                trace["rew"].append(reward[k])
                trace["term"].append(bool(term[k]))
                trace["trunc"].append(bool(trunc[k]))
                if term[k] or trunc[k]:
                    trace["obs"].append(info["final_obs"][k])
                    episode = _episode(trace)
                    episode.seed = seed + k if first[k] else None
                    finished.append(episode)
                    total += len(episode)
                    first[k] = False
                    current[k] = _new_trace()
                    current[k]["obs"].append(obs[k])
                else:
                    trace["obs"].append(obs[k])
            if progress is not None:
                progress(min(total, n_transitions) - before)
    finally:
        env.close()
    # finished is in the order episodes ended, ties by environment index (the loop order)
    out, total = [], 0
    for episode in finished:
        if total >= n_transitions:
            break
        if cut_last:
            episode = episode.cut(n_transitions - total)
        out.append(episode)
        total += len(episode)
    return out


def _new_trace() -> dict[str, list]:
    return {"obs": [], "act": [], "rew": [], "term": [], "trunc": []}


def _episode(trace: dict[str, list]) -> Episode:
    return Episode(
        np.array(trace["obs"], dtype=np.float64),
        np.array(trace["act"], dtype=np.float32),
        np.array(trace["rew"], dtype=np.float64),
        np.array(trace["term"], dtype=bool),
        np.array(trace["trunc"], dtype=bool),
    )


def evaluate(task: Task, policy: PolicyFn, episodes: int, seed: int) -> np.ndarray:
    """Undiscounted return of one episode per evaluation seed ``seed, seed + 1, ...``.

    All episodes run at once as one batch; each environment stops counting after its first
    episode ends (the task's time limit bounds it).

    Returns:
        ``(episodes,)`` returns.
    """
    env = task.make_vector_env(episodes)
    try:
        obs, _ = env.reset(seed=seed)
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        while running.any():
            action = np.asarray(policy(obs), dtype=np.float32)
            obs, reward, term, trunc, _ = env.step(action)
            returns += np.where(running, reward, 0.0)
            running &= ~(term | trunc)
    finally:
        env.close()
    return returns
