"""The SAC expert: its fast policy equals SB3's, and training resumes into the same numbers."""

import numpy as np
from stable_baselines3 import SAC

from mabcq_bench.experts import expert_dir, sac_policy, train_expert
from mabcq_bench.recipes import load_recipe
from mabcq_bench.tasks import TASKS


def test_numpy_policy_equals_sb3_predict():
    model = SAC("MlpPolicy", TASKS["walker"].make_env(), buffer_size=1, policy_kwargs={"net_arch": [32, 16]}, seed=3)
    states = np.random.default_rng(0).normal(size=(7, 17))
    expected, _ = model.predict(states, deterministic=True)
    np.testing.assert_allclose(sac_policy(model)(states), expected, atol=1e-5)


def test_cached_expert_is_reused(tiny_recipe_file, monkeypatch):
    recipe = load_recipe(str(tiny_recipe_file)).for_task("hopper")
    first = train_expert(recipe, progress=False, log=lambda _: None)
    import mabcq_bench.experts as experts

    monkeypatch.setattr(experts, "_train_segments", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = train_expert(recipe, progress=False, log=lambda _: None)
    assert again.returns == first.returns and again.dir == expert_dir(recipe)
    for key in ("random", "intermediate", "expert"):
        assert len(first.returns[key]["returns"]) == recipe.eval_episodes
