"""The SAC experts: exact policies, shipped files with checksums, training from scratch."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from stable_baselines3 import SAC

from mabcq_bench.data import exact
from mabcq_bench.data import recipes
from mabcq_bench.cli import main
from mabcq_bench.data.experts import FILES, find_expert, local_dir, sac_policy, shipped_dir, train_expert
from mabcq_bench.data.recipes import load_recipe
from mabcq_bench.data.tasks import TASKS

QUIET = {"progress": False, "log": lambda _: None}


def test_exact_exp_tanh_and_linear_agree_with_numpy():
    x = np.random.default_rng(0).normal(0, 8, 20_000)
    np.testing.assert_allclose(exact.exp(x), np.exp(x), rtol=1e-15)
    np.testing.assert_allclose(exact.tanh(x), np.tanh(x), rtol=0, atol=4e-16)
    assert exact.tanh(np.array([0.0, 40.0, -40.0])).tolist() == [0.0, 1.0, -1.0]
    g = np.random.default_rng(1)
    w, b, s = g.normal(size=(33, 17)), g.normal(size=33), g.normal(size=(5, 17))
    np.testing.assert_allclose(exact.linear(s, w, b), s @ w.T + b, rtol=1e-13, atol=1e-13)


def test_exact_policy_equals_sb3_predict():
    model = SAC("MlpPolicy", TASKS["walker"].make_env(), buffer_size=1, policy_kwargs={"net_arch": [32, 16]}, seed=3)
    states = np.random.default_rng(0).normal(size=(7, 17))
    expected, _ = model.predict(states, deterministic=True)
    np.testing.assert_allclose(sac_policy(model)(states), expected, atol=1e-5)


def test_exact_stochastic_actor_matches_sb3_distribution():
    """The early part's actor samples tanh(mu + std * eps) as SB3's SAC actor does."""
    import torch

    model = SAC("MlpPolicy", TASKS["hopper"].make_env(), buffer_size=1, policy_kwargs={"net_arch": [16]}, seed=1)
    actor = exact.Actor.from_sb3(model)
    s = np.random.default_rng(0).normal(size=(4, 11))
    with torch.no_grad():
        mean, log_std, _ = model.actor.get_action_dist_params(torch.as_tensor(s, dtype=torch.float32))
    rng = np.random.default_rng(5)
    eps = np.random.default_rng(5).standard_normal((4, 3))
    expected = np.tanh(mean.numpy() + np.exp(log_std.numpy()) * eps)
    np.testing.assert_allclose(actor.sample(s, rng), expected, atol=1e-5)
    back = exact.Actor.from_arrays(actor.to_arrays())
    np.testing.assert_array_equal(back.deterministic(s), actor.deterministic(s))


@pytest.mark.parametrize("task", list(TASKS))
def test_shipped_smoke_experts_pass_their_checksums_and_open_with_sac_load(task):
    recipe = load_recipe("smoke").for_task(task)
    expert = find_expert(recipe)
    assert expert is not None and expert.dir == shipped_dir(recipe)
    for name in ("intermediate", "expert"):
        model = SAC.load(expert.path(name), device="cpu")
        action, _ = model.predict(np.zeros(TASKS[task].state_dim), deterministic=True)
        assert action.shape == (TASKS[task].joint_action_dim,)
    info = expert.info
    assert set(info["files"]) == set(FILES)
    assert {"random", "zero_action", "intermediate", "expert"} <= set(info["returns"]) == set(info["references"]["returns"])
    assert info["intermediate_step"] < info["expert_step"] or info["intermediate_step"] == info["expert_step"]
    total = sum(v["bytes"] for v in info["files"].values())
    assert total < 1_000_000  # smoke experts are small


@pytest.fixture
def copied_experts(tmp_path, monkeypatch):
    """The shipped recipes and experts copied, so a test may damage them."""
    folder = tmp_path / "recipes"
    shutil.copytree(recipes.RECIPES_DIR, folder)
    monkeypatch.setattr(recipes, "RECIPES_DIR", folder)
    return folder / "experts" / "smoke" / "hopper"


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_damaged_shipped_expert_is_one_clear_line(copied_experts, damage):
    target = copied_experts / "expert.zip"
    if damage == "missing":
        target.unlink()
    else:
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["make-data", "--env", "hopper", "--preset", "smoke", "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert ("is missing" if damage == "missing" else "fails its checksum") in line and "expert.zip" in line


def test_sac_trains_from_scratch_keeps_checkpoints_and_is_reused(tiny_recipe_file, monkeypatch, tmp_path):
    import tempfile

    recipe = load_recipe(str(tiny_recipe_file)).for_task("hopper")
    assert find_expert(recipe) is None  # nothing ships for the tiny recipe
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    (tmp_path / "tmp").mkdir()
    first = train_expert(recipe, **QUIET)
    assert first.dir == local_dir(recipe)
    assert list((tmp_path / "tmp").glob("SB3-*")) == []  # issue 27 (12): SB3's logger left an empty SB3-<time> folder per segment
    info = first.info
    assert sorted(int(s) for s in info["checkpoint_returns"]) == [100, 200, 300, 400, 500, 600]
    assert info["sac_steps_trained"] == 600 and not info["target_met"]  # no target: the best checkpoint
    best = max(info["checkpoint_returns"].values())
    assert info["checkpoint_returns"][str(info["expert_step"])] == best
    assert [s for s, _ in first.early_actors()] == [100, 200]
    for name in ("expert", "intermediate"):
        SAC.load(first.path(name), device="cpu")  # ordinary SB3 checkpoints
    for key in ("random", "zero_action", "intermediate", "expert"):
        assert len(first.selection_returns[key]["returns"]) == recipe.eval_episodes  # the seeds that chose the checkpoints
        assert first.references[key]["n"] == len(first.references[key]["returns"]) == recipe.reference_episodes  # fresh seeds
    assert first.has_references(recipe) and info["references"]["seeds"] == {"first": 1_000_000, "last": 1_000_004}
    import mabcq_bench.data.experts as experts

    monkeypatch.setattr(experts, "train_segments", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = train_expert(recipe, **QUIET)
    assert again.info == first.info


def test_training_stops_at_the_target(tmp_path):
    from conftest import tiny_recipe_text

    path = tmp_path / "t.toml"
    path.write_text(tiny_recipe_text() + "\n[tasks.hopper.expert]\ntarget_return = -1000\n")
    recipe = load_recipe(str(path)).for_task("hopper")
    expert = train_expert(recipe, **QUIET)
    # every checkpoint reaches -1000; the first one past the early window (300) is the expert
    assert expert.info["target_met"] and expert.info["expert_step"] == 300 and expert.info["sac_steps_trained"] == 300
    assert json.loads((local_dir(recipe) / "training" / "state.json").read_text())["num_timesteps"] == 300


def _shipped_v1() -> list[str]:
    folder = recipes.RECIPES_DIR / "experts" / load_recipe("lite").for_task("hopper").expert.name
    return sorted(p.name for p in folder.iterdir() if (p / "expert.json").exists()) if folder.exists() else []


@pytest.mark.parametrize("task", _shipped_v1() or [pytest.param("none", marks=pytest.mark.skip(reason="no sac-v1 expert shipped yet"))])
def test_every_shipped_lite_expert_reaches_its_target_with_a_medium_intermediate(task):
    """The issue's bar for a real expert: its target return over >= 20 episodes on the seeds that
    chose it, far above doing nothing, and an intermediate between 25 % and 45 % of it on the
    normalized scale. On fresh seeds (the references) ant's expert falls below its target
    (datasets/CARD.md), which is why the references, not the selection returns, set the scale."""
    recipe = load_recipe("lite").for_task(task)
    expert = find_expert(recipe)
    assert expert is not None and expert.dir == shipped_dir(recipe)
    info = expert.info
    assert info["target_met"] and len(info["returns"]["expert"]["returns"]) >= 20
    assert info["returns"]["expert"]["mean"] >= recipe.expert.target_return
    norm = info["references"]["normalized"]
    assert 25.0 <= norm["intermediate"] <= 45.0
    assert norm["zero_action"] < 50.0 and norm["random"] == 0.0
    assert expert.mean_return("expert") >= 0.8 * recipe.expert.target_return
    assert sum(f["bytes"] for f in info["files"].values()) < 12_000_000
