"""Batched rollouts of a joint policy in the real task: data collection and evaluation.

A *policy* here is a function from a batch of states ``(B, state_dim)`` to a batch of joint
actions ``(B, joint_action_dim)``. A decentralized policy is built from per-agent policies with
:func:`decentralized`: each agent maps the state to its own action and the task assembles them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mabcq_bench.tasks import Task

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
            collection budget.
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

    def cut(self, length: int) -> "Episode":
        """The first ``length`` steps, marked truncated at the cut if they end early."""
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


def collect(
    task: Task,
    policy: PolicyFn,
    n_transitions: int,
    num_envs: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> list[Episode]:
    """Run ``policy`` in ``num_envs`` copies of the task until ``n_transitions`` are collected.

    Every environment runs episodes back to back. When the budget is reached, unfinished
    episodes are kept, marked truncated, and the last ones are cut so that exactly
    ``n_transitions`` transitions come back. The order is deterministic: finished episodes by the
    step they ended at (ties by environment index), then unfinished ones by environment index.

    Args:
        task: the task to run.
        policy: joint policy, see :data:`PolicyFn`.
        n_transitions: transitions to return.
        num_envs: environments stepped as one batch (one policy call per step).
        seed: environment ``k`` is reset with ``seed + k``.
        progress: called with the number of transitions added after each batched step.
    """
    if n_transitions <= 0:
        return []
    steps = -(-n_transitions // num_envs)
    env = task.make_vector_env(num_envs)
    try:
        state_dim = env.single_observation_space.shape[0]
        obs_buf = np.empty((steps + 1, num_envs, state_dim))
        act_buf = np.empty((steps, num_envs, task.joint_action_dim), dtype=np.float32)
        rew_buf = np.empty((steps, num_envs))
        term_buf = np.zeros((steps, num_envs), dtype=bool)
        trunc_buf = np.zeros((steps, num_envs), dtype=bool)
        final_obs: dict[tuple[int, int], np.ndarray] = {}

        obs, _ = env.reset(seed=seed)
        for t in range(steps):
            obs_buf[t] = obs
            action = np.asarray(policy(obs), dtype=np.float32)
            obs, reward, term, trunc, info = env.step(action)
            act_buf[t], rew_buf[t], term_buf[t], trunc_buf[t] = action, reward, term, trunc
            done = term | trunc
            if done.any():
                for k in np.flatnonzero(done):
                    final_obs[(t, int(k))] = info["final_obs"][k]
            if progress is not None:
                progress(min(num_envs, n_transitions - t * num_envs))
        obs_buf[steps] = obs
    finally:
        env.close()

    finished: list[tuple[int, int, Episode]] = []
    unfinished: list[Episode] = []
    for k in range(num_envs):
        start, first = 0, True
        for t in range(steps):
            if term_buf[t, k] or trunc_buf[t, k]:
                observations = np.concatenate([obs_buf[start : t + 1, k], final_obs[(t, k)][None]])
                episode = _episode(observations, act_buf, rew_buf, term_buf, trunc_buf, start, t + 1, k)
                episode.seed = seed + k if first else None
                finished.append((t, k, episode))
                start, first = t + 1, False
        if start < steps:
            episode = _episode(obs_buf[start : steps + 1, k], act_buf, rew_buf, term_buf, trunc_buf, start, steps, k)
            episode.truncations[-1] = True
            episode.seed = seed + k if first else None
            unfinished.append(episode)

    ordered = [e for _, _, e in sorted(finished, key=lambda x: (x[0], x[1]))] + unfinished
    out, total = [], 0
    for episode in ordered:
        if total >= n_transitions:
            break
        episode = episode.cut(n_transitions - total)
        out.append(episode)
        total += len(episode)
    return out


def _episode(observations, act_buf, rew_buf, term_buf, trunc_buf, start: int, stop: int, k: int) -> Episode:
    return Episode(
        observations.copy(),
        act_buf[start:stop, k].copy(),
        rew_buf[start:stop, k].copy(),
        term_buf[start:stop, k].copy(),
        trunc_buf[start:stop, k].copy(),
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
