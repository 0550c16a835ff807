"""Benchmark of dataset collection against raw stepping of the same MuJoCo task.

Three rates, in transitions per second, all measured in one run on the same task:

- ``raw_single``: one gymnasium environment stepped in a loop with random actions (what the
  simulator and gymnasium cost, nothing else);
- ``raw_vector``: the vector environment that collection uses, stepped with random actions;
- ``collect``: :func:`mabcq_bench.rollout.collect` with the real collection policy (two SAC actors
  mixed per agent, plus noise), including building the episodes.

The collection policy uses the task's cached expert when there is one, otherwise freshly
initialised SAC actors of the recipe's size (the same arithmetic per step).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mabcq_bench.datasets import mixed_policy
from mabcq_bench.experts import load_expert, sac_policy
from mabcq_bench.recipes import Recipe
from mabcq_bench.rollout import collect
from mabcq_bench.tasks import get_task


def bench_collection(recipe: Recipe, transitions: int = 20_000, num_envs: int | None = None) -> dict:
    """Measure the three rates; returns them with a printable ``table``."""
    task = get_task(recipe.task)
    num_envs = num_envs or recipe.num_envs
    torch.set_num_threads(recipe.expert.torch_threads)

    env = task.make_env()
    rng = np.random.default_rng(0)
    actions = rng.uniform(env.action_space.low, env.action_space.high, (transitions, task.joint_action_dim)).astype(np.float32)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    raw_single = transitions / (time.perf_counter() - t0)
    env.close()

    venv = task.make_vector_env(num_envs)
    venv.reset(seed=0)
    batches = actions[: transitions - transitions % num_envs].reshape(-1, num_envs, task.joint_action_dim)
    t0 = time.perf_counter()
    for a in batches:
        venv.step(a)
    raw_vector = batches.shape[0] * num_envs / (time.perf_counter() - t0)
    venv.close()

    expert = load_expert(recipe)
    if expert is not None:
        own, others, source = expert.policy("intermediate"), expert.policy("expert"), "cached expert"
    else:
        own, others, source = _fresh_actor(task, recipe, 1), _fresh_actor(task, recipe, 2), "untrained SAC actors"
    policy = mixed_policy(task, 0, own, others, recipe.policy_noise, seed=0)
    t0 = time.perf_counter()
    collect(task, policy, transitions, num_envs, seed=0)
    rate = transitions / (time.perf_counter() - t0)

    # how much of the collection time is the policy itself (two actors + noise per batch)
    states = np.random.default_rng(0).normal(size=(num_envs, task.state_dim))
    t0 = time.perf_counter()
    calls = max(1, transitions // num_envs)
    for _ in range(calls):
        policy(states)
    policy_us = (time.perf_counter() - t0) / calls * 1e6

    result = {
        "task": task.name,
        "env_id": task.env_id,
        "num_envs": num_envs,
        "transitions": transitions,
        "policy": source,
        "raw_single_tps": round(raw_single),
        "raw_vector_tps": round(raw_vector),
        "collect_tps": round(rate),
        "collect_vs_raw_single": round(rate / raw_single, 3),
        "collect_vs_raw_vector": round(rate / raw_vector, 3),
        "policy_us_per_batch": round(policy_us, 1),
    }
    result["table"] = "\n".join(
        [
            f"{task.env_id}: {transitions:,} transitions, {num_envs} envs per batch, policy: {source}",
            f"  raw stepping, one env      {raw_single:>10,.0f} transitions/s",
            f"  raw stepping, vector env   {raw_vector:>10,.0f} transitions/s",
            f"  collection (policy+noise)  {rate:>10,.0f} transitions/s  = {rate / raw_single:.0%} of one env, {rate / raw_vector:.0%} of the vector env",
            f"  policy call per batch      {policy_us:>10,.0f} us",
        ]
    )
    return result


def _fresh_actor(task, recipe: Recipe, seed: int):
    from stable_baselines3 import SAC

    model = SAC(
        "MlpPolicy", task.make_env(), policy_kwargs={"net_arch": list(recipe.expert.net_arch)}, learning_starts=0, buffer_size=1, seed=seed, device="cpu"
    )
    return sac_policy(model)
