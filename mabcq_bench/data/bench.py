"""Benchmark of dataset collection against raw stepping of the same MuJoCo task.

Rates in transitions per second, all measured in one run on the same task:

- ``collect``: :func:`mabcq_bench.data.rollout.collect` with the real collection policy (two SAC actors
  mixed per agent, plus noise), including building the episodes;
- ``raw_vector``: raw stepping of the *same trajectory*: the vector environment replaying the
  actions collection issued, from the same seeds (the task is deterministic, so every step and
  reset repeats) — the cost of the simulator and gymnasium alone;
- ``raw_single_random``: one environment stepped in a loop with random actions, for reference.

The collection policy uses the task's cached expert when there is one, otherwise freshly
initialised SAC actors of the recipe's size (the same arithmetic per step).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mabcq_bench.data.mixture import mixed_policy
from mabcq_bench.data.experts import find_expert, sac_policy
from mabcq_bench.data.recipes import Recipe
from mabcq_bench.data.rollout import collect
from mabcq_bench.data.tasks import get_task


def bench_collection(recipe: Recipe, transitions: int = 20_000, num_envs: int | None = None) -> dict:
    """Measure the three rates; returns them with a printable ``table``."""
    task = get_task(recipe.task)
    num_envs = num_envs or recipe.num_envs
    torch.set_num_threads(recipe.expert.torch_threads)

    expert = find_expert(recipe)
    if expert is not None:
        own, others, source = expert.policy("intermediate"), expert.policy("expert"), f"expert {expert.dir}"
    else:
        own, others, source = _fresh_actor(task, recipe, 1), _fresh_actor(task, recipe, 2), "untrained SAC actors"
    policy = mixed_policy(task, 0, own, others, recipe.policy_noise, seed=0)
    issued: list[np.ndarray] = []

    def logged(states: np.ndarray) -> np.ndarray:
        action = policy(states)
        issued.append(np.asarray(action, dtype=np.float32))
        return action

    t0 = time.perf_counter()
    collect(task, logged, transitions, num_envs, seed=0)
    collect_s = time.perf_counter() - t0
    rate = transitions / collect_s

    # Raw stepping of the very same trajectory: the env is deterministic, so replaying the
    # issued actions from the same reset seeds repeats every step and every reset, without the
    # policy and without collect's bookkeeping.
    venv = task.make_vector_env(num_envs)
    venv.reset(seed=0)
    t0 = time.perf_counter()
    for a in issued:
        venv.step(a)
    raw_vector = len(issued) * num_envs / (time.perf_counter() - t0)
    venv.close()

    # One plain environment in a loop, random actions: the simulator and gymnasium, nothing else.
    env = task.make_env()
    actions = np.random.default_rng(0).uniform(env.action_space.low, env.action_space.high, (transitions, task.joint_action_dim)).astype(np.float32)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    raw_single = transitions / (time.perf_counter() - t0)
    env.close()

    states = np.random.default_rng(0).normal(size=(num_envs, task.state_dim))
    calls = max(1, transitions // num_envs)
    t0 = time.perf_counter()
    for _ in range(calls):
        policy(states)
    policy_us = (time.perf_counter() - t0) / calls * 1e6

    result = {
        "task": task.name,
        "env_id": task.env_id,
        "num_envs": num_envs,
        "transitions": transitions,
        "policy": source,
        "raw_vector_tps": round(raw_vector),
        "raw_single_random_tps": round(raw_single),
        "collect_tps": round(rate),
        "collect_vs_raw": round(rate / raw_vector, 3),
        "policy_us_per_batch": round(policy_us, 1),
    }
    result["table"] = "\n".join(
        [
            f"{task.env_id}: {transitions:,} transitions, {num_envs} envs per batch, policy: {source}",
            f"  raw stepping, same trajectory   {raw_vector:>9,.0f} transitions/s  (vector env replaying the issued actions)",
            f"  collection                      {rate:>9,.0f} transitions/s  = {rate / raw_vector:.0%} of raw stepping",
            f"  one env, random actions         {raw_single:>9,.0f} transitions/s  (for reference)",
            f"  policy call per batch           {policy_us:>9,.0f} us  (two SAC actors + noise)",
        ]
    )
    return result


def _fresh_actor(task, recipe: Recipe, seed: int):
    from stable_baselines3 import SAC

    model = SAC(
        "MlpPolicy", task.make_env(), policy_kwargs={"net_arch": list(recipe.expert.net_arch)}, learning_starts=0, buffer_size=1, seed=seed, device="cpu"
    )
    return sac_policy(model)
