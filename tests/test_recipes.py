"""Tier recipes: loading, the mixture proportions, and one-line errors for bad files."""

import pytest

from mabcq_bench.errors import UserError
from mabcq_bench.data.recipes import PARTS, load_recipe
from mabcq_bench.data.tasks import TASKS

from conftest import tiny_recipe_text


@pytest.mark.parametrize("tier", ["smoke", "lite", "paper"])
def test_shipped_tiers_load_and_mix_20_35_35_10(tier):
    recipe_file = load_recipe(tier)
    assert recipe_file.tier == tier
    for task in TASKS:
        r = recipe_file.for_task(task)
        sizes = r.part_sizes()
        assert sum(sizes.values()) == r.transitions_per_agent
        assert [sizes[p] / r.transitions_per_agent for p in PARTS] == pytest.approx([0.20, 0.35, 0.35, 0.10], abs=1e-3)
        assert r.dataset_id(1) == f"mabcq/{task}/{tier}-agent1-v2"


def test_paper_tier_has_table6_size():
    assert load_recipe("paper").for_task("ant").transitions_per_agent == 1_000_000


def test_lite_and_paper_share_one_expert_per_task_with_the_issue_targets():
    targets = {"halfcheetah": 9000, "hopper": 3000, "walker": 3800, "ant": 4000}
    lite, paper = load_recipe("lite"), load_recipe("paper")
    for task, target in targets.items():
        assert lite.for_task(task).expert_fingerprint == paper.for_task(task).expert_fingerprint
        e = lite.for_task(task).expert
        assert e.target_return == target and e.total_steps == 1_000_000 and e.learning_starts == 10_000
        assert lite.for_task(task).eval_episodes >= 20


def test_part_sizes_sum_exactly_when_rounding(tmp_path):
    path = tmp_path / "odd.toml"
    path.write_text(tiny_recipe_text(transitions_per_agent=1001))
    sizes = load_recipe(str(path)).for_task("hopper").part_sizes()
    assert sum(sizes.values()) == 1001
    # 200.2, 350.35, 350.35, 100.1: the one leftover goes to the largest remainder (first in order)
    assert sizes == {"early": 200, "self_intermediate": 351, "self_expert": 350, "all_expert": 100}


def test_per_task_override(tmp_path):
    path = tmp_path / "o.toml"
    path.write_text(tiny_recipe_text() + "\n[tasks.ant.expert]\ntotal_steps = 900\n")
    rf = load_recipe(str(path))
    assert rf.for_task("ant").expert.total_steps == 900
    assert rf.for_task("hopper").expert.total_steps == 600
    assert rf.for_task("ant").expert_fingerprint != load_recipe(str(path)).for_task("hopper").expert_fingerprint


def test_fingerprint_changes_with_the_data_not_the_description(tmp_path):
    a, b, c = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "c.toml"
    a.write_text(tiny_recipe_text())
    b.write_text('description = "words"\n' + tiny_recipe_text())
    c.write_text(tiny_recipe_text(policy_noise=0.2))
    fa, fb, fc = (load_recipe(str(p)).for_task("hopper") for p in (a, b, c))
    assert fa.fingerprint == fb.fingerprint
    assert fa.fingerprint != fc.fingerprint
    assert fa.expert_fingerprint == fc.expert_fingerprint  # noise does not change the expert


def test_unknown_tier_lists_valid_ones():
    with pytest.raises(UserError, match=r"unknown tier 'huge'; valid tiers: lite, paper, smoke"):
        load_recipe("huge")


@pytest.mark.parametrize(
    "text, message",
    [
        ("tier = [", "malformed recipe"),
        (tiny_recipe_text().replace("transitions_per_agent = 1500", "transitions_per_agent = 'many'"), "transitions_per_agent must be an integer"),
        (tiny_recipe_text().replace("early = 0.2", "early = 0.3"), "must sum to 1"),
        (tiny_recipe_text().replace("all_expert = 0.1", "everything = 0.1"), "mixture must give exactly the parts"),
        (tiny_recipe_text().replace("seed = 0", ""), "missing key 'seed'"),
        (tiny_recipe_text() + "\nbogus = 1\n", "unknown key"),
        (tiny_recipe_text(early_steps=100), "learning_starts < early_steps"),
        (tiny_recipe_text(early_snapshot_every=150), "multiples of expert.checkpoint_every"),
        (tiny_recipe_text().replace('name = "tiny"', 'name = "a/b"'), "expert.name must be a name"),
        (tiny_recipe_text() + "\n[tasks.hopper.expert]\ntarget_return = 'high'\n", "target_return must be a number"),
        (tiny_recipe_text() + "\n[tasks.swimmer]\nseed = 1\n", r"\[tasks.swimmer\] is not a task"),
        (tiny_recipe_text(tier="no spaces"), "'tier' must be a name"),
    ],
)
def test_malformed_recipe_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        load_recipe(str(path))
    assert "\n" not in str(info.value)
