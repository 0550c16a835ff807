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
        "total_steps": 600,
        "intermediate_step": 300,
        "early_steps": 300,
        "checkpoint_every": 200,
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
[mixture]
early = 0.2
self_intermediate = 0.35
self_expert = 0.35
all_expert = 0.1
[expert]
total_steps = {values['total_steps']}
intermediate_step = {values['intermediate_step']}
early_steps = {values['early_steps']}
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
    from mabcq_bench.datasets import make_data
    from mabcq_bench.recipes import load_recipe

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
