"""Shared fixtures. Every test gets its own Minari store and expert cache (never the user's)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*Adroit.*")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_stores(tmp_path, monkeypatch):
    """Point Minari and the expert cache at temporary folders for every test."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("MABCQ_BENCH_HOME", str(tmp_path / "home"))


def tiny_recipe_text(**overrides) -> str:
    """A recipe smaller than smoke, for tests that generate data more than once."""
    values = {
        "tier": "tiny",
        "seed": 0,
        "transitions_per_agent": 1500,
        "policy_noise": 0.1,
        "num_envs": 4,
        "eval_episodes": 2,
        "eval_seed": 100,
        "reference_episodes": 5,
        "total_steps": 600,
        "early_steps": 300,
        "early_snapshot_every": 100,
        "checkpoint_every": 100,
        "learning_starts": 200,
    }
    values.update(overrides)
    return f"""
tier = "{values['tier']}"
seed = {values['seed']}
transitions_per_agent = {values['transitions_per_agent']}
policy_noise = {values['policy_noise']}
num_envs = {values['num_envs']}
eval_episodes = {values['eval_episodes']}
eval_seed = {values['eval_seed']}
reference_episodes = {values['reference_episodes']}
[mixture]
early = 0.2
self_intermediate = 0.35
self_expert = 0.35
all_expert = 0.1
[expert]
name = "tiny"
total_steps = {values['total_steps']}
early_steps = {values['early_steps']}
early_snapshot_every = {values['early_snapshot_every']}
checkpoint_every = {values['checkpoint_every']}
learning_starts = {values['learning_starts']}
net_arch = [32, 32]
batch_size = 64
"""


@pytest.fixture
def tiny_recipe_file(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_recipe_text())
    return path


@pytest.fixture(scope="session")
def smoke_hopper(tmp_path_factory):
    """The smoke tier's hopper datasets, made once per test session with the real CLI path.

    Yields the (minari root, home) folders; tests that read them set the variables themselves.
    """
    from mabcq_bench.data.datasets import make_data
    from mabcq_bench.data.recipes import load_recipe

    base = tmp_path_factory.mktemp("smoke")
    env = {"MINARI_DATASETS_PATH": str(base / "minari"), "MABCQ_BENCH_HOME": str(base / "home")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        recipe = load_recipe("smoke").for_task("hopper")
        statuses = make_data(recipe, progress=False, log=lambda _: None)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"recipe": recipe, "statuses": statuses, **env}


def use_store(store: dict, monkeypatch) -> None:
    """Point Minari and the project at a store made by a fixture (``smoke_hopper``) or a test."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", store["MINARI_DATASETS_PATH"])
    monkeypatch.setenv("MABCQ_BENCH_HOME", store["MABCQ_BENCH_HOME"])


#: A protocol small enough for tests: 6 updates, evaluations at 3 and 6, checkpoints every 2.
TINY_PROTOCOL = {"version": 2, "updates": 6, "eval_every": 3, "eval_episodes": 1, "final_eval_episodes": 2, "score_window": 2, "diag_states": 32, "checkpoint_every": 2, "threads": 1}


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """Tiny hopper datasets (tier 'tiny') and a matching tiny protocol, made once."""
    from mabcq_bench.runs import protocol
    from mabcq_bench.data.datasets import make_data
    from mabcq_bench.data.recipes import load_recipe

    base = tmp_path_factory.mktemp("tiny")
    (base / "recipes").mkdir()
    (base / "recipes" / "tiny.toml").write_text(tiny_recipe_text())
    (base / "baselines").mkdir()
    text = protocol.protocol_text("tiny", TINY_PROTOCOL, "test protocol").replace("batch_size = 1024", "batch_size = 32")
    (base / "baselines" / "tiny.toml").write_text(text)
    env = {"MINARI_DATASETS_PATH": str(base / "minari"), "MABCQ_BENCH_HOME": str(base / "home")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        make_data(load_recipe(str(base / "recipes" / "tiny.toml")).for_task("hopper"), progress=False, log=lambda _: None)
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return {"base": base, **env}


@pytest.fixture
def store(tiny_store, monkeypatch, tmp_path):
    """The tiny store in use: datasets, experts, and the 'tiny' recipe and protocol as tiers."""
    from mabcq_bench.runs import protocol

    monkeypatch.setenv("MINARI_DATASETS_PATH", tiny_store["MINARI_DATASETS_PATH"])
    monkeypatch.setenv("MABCQ_BENCH_HOME", tiny_store["MABCQ_BENCH_HOME"])
    monkeypatch.setattr(protocol, "BASELINES_DIR", tiny_store["base"] / "baselines")
    import mabcq_bench.data.recipes as recipes

    monkeypatch.setattr(recipes, "RECIPES_DIR", tiny_store["base"] / "recipes")
    return {**tiny_store, "results": tmp_path / "runs"}




def random_batch(n: int = 32, state_dim: int = 5, action_dim: int = 2, seed: int = 0):
    """A seeded minibatch of made-up transitions (10 % terminal) for learner tests."""
    import torch

    from mabcq_bench.algos import Batch

    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.randn(n, state_dim, generator=g),
        torch.rand(n, action_dim, generator=g) * 2 - 1,
        torch.randn(n, generator=g),
        torch.randn(n, state_dim, generator=g),
        (torch.rand(n, generator=g) < 0.1).float(),
    )


def synthetic_agent_data(agent: int, n: int = 300, state_dim: int = 11, action_dim: int = 1):
    """Made-up transitions for agent ``agent`` of a hopper-sized task (seeded by the agent)."""
    import numpy as np

    from mabcq_bench.data.buffer import AgentData

    rng = np.random.default_rng(agent)
    f32 = np.float32
    return AgentData(
        rng.normal(size=(n, state_dim)).astype(f32),
        rng.uniform(-1, 1, size=(n, action_dim)).astype(f32),
        rng.normal(1.0, 0.5, size=n).astype(f32),
        rng.normal(size=(n, state_dim)).astype(f32),
        (rng.random(n) < 0.05).astype(f32),
    )


def plain_mlp(net, inputs, head: int = 0):
    """One head of a ``nets.MLP`` as an ordinary MLP on concatenated inputs ``(B, in) -> (B, out)``
    (no split, no batching): what the fused nets are checked against."""
    import torch

    w_cond, w_x, b_in, weights, biases = net.unpack(head=head)
    first = torch.cat([w_cond[0], w_x[0]]) if w_x is not None else w_cond[0]
    h = torch.relu(inputs @ first + b_in[0])
    for w, b in zip(weights[:-1], biases[:-1]):
        h = torch.relu(h @ w[0] + b[0])
    return h @ weights[-1][0] + biases[-1][0]


def scored(record: dict) -> tuple[dict, list[dict]]:
    """A record's final evaluation and learning curve without their wall and CPU times (which
    differ between two runs of the same computation): what must be equal bit for bit."""

    def timeless(entry: dict) -> dict:
        return {k: v for k, v in entry.items() if k not in ("wall_s", "cpu_s")}

    return timeless(record["final"]), [timeless(point) for point in record["curve"]]
