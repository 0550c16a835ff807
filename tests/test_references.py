"""Reference returns: measured on seeds that never chose a checkpoint, at least 100 episodes each,
written into expert.json by `mabcq-bench references` without touching the checkpoints."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from mabcq_bench.cli import main
from mabcq_bench.data import experts, recipes, references
from mabcq_bench.data.experts import FILES, find_expert
from mabcq_bench.data.references import REFERENCES, measure_references
from mabcq_bench.data.recipes import load_recipe
from mabcq_bench.data.tasks import TASKS
from mabcq_bench.errors import UserError

from conftest import tiny_recipe_text

#: Every shipped expert recipe, with the tiers that use it.
SHIPPED = {"smoke": ("smoke",), "sac-v1": ("lite", "paper")}


def _span(seeds: dict) -> range:
    return range(seeds["first"], seeds["last"] + 1)


@pytest.mark.parametrize("name", list(SHIPPED))
@pytest.mark.parametrize("task", list(TASKS))
def test_every_shipped_expert_has_100_references_on_seeds_that_did_not_choose_it(name, task):
    info = json.loads((recipes.RECIPES_DIR / "experts" / name / task / "expert.json").read_text())
    block = info["references"]
    chose = set(info["eval_seeds"])  # the seeds every checkpoint was evaluated on
    fresh = _span(block["seeds"])
    assert not chose & set(fresh)
    assert _span(block["selection_seeds"]) == range(min(chose), max(chose) + 1)
    for policy in REFERENCES:
        r = block["returns"][policy]
        assert r["n"] == len(r["returns"]) == len(fresh) >= 100
        assert _span(r["seeds"]) == fresh
        assert r["mean"] == pytest.approx(np.mean(r["returns"])) and r["std"] == pytest.approx(np.std(r["returns"]))
    assert block["normalized"]["random"] == 0.0 and block["normalized"]["expert"] == 100.0
    for tier in SHIPPED[name]:  # measured as every tier using this expert asks
        recipe = load_recipe(tier).for_task(task)
        assert recipe.expert.name == name and find_expert(recipe).has_references(recipe)
        assert recipe.reference_seeds == fresh and recipe.selection_seeds == range(min(chose), max(chose) + 1)


def test_overlapping_seeds_are_refused_by_the_recipe_and_by_the_measurement(tmp_path):
    path = tmp_path / "overlap.toml"
    path.write_text(tiny_recipe_text().replace("eval_seed = 100", "eval_seed = 100\nreference_seed = 98"))
    with pytest.raises(UserError, match=r"\(task halfcheetah\): the reference seeds 98–102 overlap the checkpoint-selection seeds 100–101 \(e.g. 100\)"):
        load_recipe(str(path))
    path.write_text(tiny_recipe_text())
    recipe = load_recipe(str(path)).for_task("hopper")
    assert recipe.reference_seeds == range(1_000_000, 1_000_005) and recipe.selection_seeds == range(100, 102)
    with pytest.raises(UserError, match="overlap the checkpoint-selection seeds 100–101"):
        dataclasses.replace(recipe, reference_seed=101).reference_seeds
    # seeds that chose an expert's checkpoints (its expert.json's eval_seeds) are refused too,
    # before any episode is played
    never = {"intermediate": lambda s: pytest.fail("evaluated"), "expert": lambda s: pytest.fail("evaluated")}
    with pytest.raises(UserError, match="overlap"):
        measure_references(TASKS["hopper"], recipe, never, selection_seeds=[999_999, 1_000_000, 1_000_001])


@pytest.fixture
def smoke_copy(tmp_path, monkeypatch):
    """The shipped recipes and experts copied; the smoke tier asks for 5 reference episodes, and
    the copied hopper expert has no references yet."""
    folder = tmp_path / "recipes"
    shutil.copytree(recipes.RECIPES_DIR, folder)
    monkeypatch.setattr(recipes, "RECIPES_DIR", folder)
    toml = folder / "smoke.toml"
    toml.write_text(toml.read_text().replace("reference_episodes = 100", "reference_episodes = 5"))
    d = folder / "experts" / "smoke" / "hopper"
    info = json.loads((d / "expert.json").read_text())
    info.pop("references")
    (d / "expert.json").write_text(json.dumps(info))
    return d, info


def test_references_command_writes_only_expert_json_and_resumes(smoke_copy, monkeypatch):
    d, before = smoke_copy
    files = {name: (d / name).read_bytes() for name in FILES}
    recipe = load_recipe("smoke").for_task("hopper")
    assert not find_expert(recipe).has_references(recipe)
    with pytest.raises(UserError, match=r"has no reference returns on 5 episodes.*mabcq-bench references --env hopper --preset smoke"):
        experts.get_expert(recipe)  # make-data never rewrites a shipped expert by itself

    calls = []
    real = references.evaluate

    def crash_on_third(task, policy, episodes, seed):
        calls.append(seed)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during the intermediate policy
        return real(task, policy, episodes, seed)

    monkeypatch.setattr(references, "evaluate", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        experts.add_references(recipe, find_expert(recipe), log=lambda _: None)
    assert "references" not in json.loads((d / "expert.json").read_text())  # nothing half-written

    calls.clear()
    monkeypatch.setattr(references, "evaluate", lambda *a: (calls.append(a[3]), real(*a))[1])
    result = CliRunner().invoke(main, ["references", "--env", "hopper", "--preset", "smoke"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 2 and "resuming the reference returns: random, zero_action already measured" in result.output
    assert calls == [1_000_000, 1_000_000]  # the intermediate and the expert, on the fresh seeds

    after = json.loads((d / "expert.json").read_text())
    block = after.pop("references")
    assert after == before  # the checkpoint-selection record is kept as it was
    assert {name: (d / name).read_bytes() for name in FILES} == files
    assert block["episodes"] == 5 and block["seeds"] == {"first": 1_000_000, "last": 1_000_004}
    assert block["selection_seeds"] == {"first": 10_000, "last": 10_002}
    assert [block["returns"][p]["n"] for p in REFERENCES] == [5, 5, 5, 5]
    expert = find_expert(recipe)  # its checksums still pass
    assert expert.has_references(recipe) and expert.mean_return("expert") == block["returns"]["expert"]["mean"]

    result = CliRunner().invoke(main, ["references", "--env", "hopper", "--preset", "smoke"])
    assert result.exit_code == 0 and "\tkept" in result.output and len(calls) == 2


def test_references_of_a_missing_expert_is_one_line(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_recipe_text())
    result = CliRunner().invoke(main, ["references", "--env", "hopper", "--preset", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == ["Error: no expert of hopper for recipe tiny (expert tiny); train it with `mabcq-bench train-expert --env hopper --preset " + str(path) + "`"]
