"""Dataset manifests: a user who regenerates a tier's datasets can check they got the same data."""

from __future__ import annotations

import json
import platform

import minari
import numpy as np
import pytest
from click.testing import CliRunner

from mabcq_bench.data import manifest
from mabcq_bench.cli import main
from mabcq_bench.data.recipes import load_recipe
from mabcq_bench.util import versions

from conftest import use_store


def test_committed_smoke_manifest_matches_regenerated_data(smoke_hopper, monkeypatch):
    """The published smoke manifest is what make-data produces from the shipped experts, on any
    x86-64 CPU (the data's bits do not depend on the CPU: mabcq_bench.data.exact)."""
    use_store(smoke_hopper, monkeypatch)
    doc = json.loads(manifest.manifest_path("smoke").read_text())
    listed = {e["dataset_id"]: e for e in doc["datasets"]}
    agents = [("halfcheetah", 2), ("walker", 2), ("hopper", 3), ("ant", 4)]
    joint = {f"mabcq/{t}/smoke-joint-v2" for t, _ in agents}  # the joint-action datasets (issue 25): v2 only
    assert {f"mabcq/{t}/smoke-agent{i}-v{v}" for t, n in agents for i in range(n) for v in (1, 2)} | joint == set(listed)
    if platform.machine() != "x86_64" or listed["mabcq/hopper/smoke-agent0-v2"]["versions"] != versions():
        pytest.skip("identical bits are promised on x86-64 with the pinned package versions (constraints.txt)")
    checks = manifest.check([smoke_hopper["recipe"]], listed)
    assert [c.verdict for c in checks] == ["identical"] * 4, [c.detail for c in checks]
    assert [c.dataset_id.split("/")[-1] for c in checks] == [f"smoke-agent{i}-v2" for i in range(3)] + ["smoke-joint-v2"]
    result = CliRunner().invoke(main, ["manifest", "--env", "hopper", "--preset", "smoke"])
    assert result.exit_code == 0, result.output
    assert result.output.count("matches the manifest") == 4


def test_v2_datasets_hold_the_v1_transitions(smoke_hopper, monkeypatch):
    """v2 changes the reference returns only: the smoke v2 datasets made by today's code have the
    checksums (of the data alone) of the published v1 datasets, and every tier's v2 entries
    have their v1 entries' checksums, sizes and per-part returns, with the new references."""
    from mabcq_bench.data.experts import REFERENCES, find_expert

    use_store(smoke_hopper, monkeypatch)
    smoke = manifest.read_manifest(manifest.manifest_path("smoke"))
    if platform.machine() != "x86_64" or smoke["mabcq/hopper/smoke-agent0-v1"]["versions"] != versions():
        pytest.skip("identical bits are promised on x86-64 with the pinned package versions (constraints.txt)")
    for status in smoke_hopper["statuses"][:3]:  # the agents' (the joint dataset is new in v2)
        assert status.dataset_id.endswith("-v2") and status.checksum == smoke[status.dataset_id[:-1] + "1"]["checksum"]
    for tier in ("smoke", "lite", "paper"):
        listed = manifest.read_manifest(manifest.manifest_path(tier))
        recipe_file = load_recipe(tier)
        v2 = [e for e in listed.values() if e["dataset_id"].endswith("-v2") and "-agent" in e["dataset_id"]]
        assert len(v2) == 11, tier
        for e in v2:
            v1 = listed[e["dataset_id"][:-1] + "1"]
            same = ("checksum", "transitions", "episodes", "incomplete_episodes", "transitions_in_complete_episodes", "parts")
            assert {k: e[k] for k in same} == {k: v1[k] for k in same}
            recipe = recipe_file.for_task(e["task"])
            assert e["recipe_fingerprint"] == recipe.fingerprint and v1["recipe_fingerprint"] == recipe.fingerprint_at(1)
            refs = find_expert(recipe).references
            assert {p: e[f"{p}_return"] for p in REFERENCES} == {p: round(refs[p]["mean"], 3) for p in REFERENCES}


def test_derived_entries_need_a_recipe_making_the_same_transitions(tmp_path):
    import dataclasses

    from mabcq_bench.errors import UserError

    recipe = load_recipe("smoke").for_task("walker")
    listed = manifest.read_manifest(manifest.manifest_path("smoke"))
    refs = {p: {"mean": float(i)} for i, p in enumerate(("random", "zero_action", "intermediate", "expert"))}
    entries = manifest.derive_entries(recipe, 1, listed, refs)
    assert [e["derived_from"] for e in entries] == ["mabcq/walker/smoke-agent0-v1", "mabcq/walker/smoke-agent1-v1"]
    assert [e["dataset_id"] for e in entries] == ["mabcq/walker/smoke-agent0-v2", "mabcq/walker/smoke-agent1-v2"]
    assert entries[1]["checksum"] == listed["mabcq/walker/smoke-agent1-v1"]["checksum"] and entries[1]["expert_return"] == 3.0
    other = dataclasses.replace(recipe, policy_noise=0.2)  # other transitions: nothing is derived
    with pytest.raises(UserError, match="whose transitions are not this recipe's"):
        manifest.derive_entries(other, 1, listed, refs)
    with pytest.raises(UserError, match="the manifest has no entry mabcq/walker/smoke-agent0-v7"):
        manifest.derive_entries(recipe, 7, listed, refs)


@pytest.fixture
def tiny(store, tmp_path, monkeypatch):
    """The tiny store, with its recipe folder copied per test (manifests are written beside it)."""
    import shutil

    from mabcq_bench.data import recipes

    folder = tmp_path / "recipes"
    shutil.copytree(recipes.RECIPES_DIR, folder)
    monkeypatch.setattr(recipes, "RECIPES_DIR", folder)
    return store


def test_write_then_check_round_trip_and_what_a_difference_says(tiny, monkeypatch):
    recipe = load_recipe("tiny").for_task("hopper")
    runner = CliRunner()
    result = runner.invoke(main, ["manifest", "--env", "hopper", "--preset", "tiny"])
    assert result.exit_code == 1 and "tier 'tiny' has no published manifest" in result.output
    assert "Traceback" not in result.output

    result = runner.invoke(main, ["manifest", "--env", "hopper", "--preset", "tiny", "--write"])
    assert result.exit_code == 0, result.output
    path = manifest.manifest_path("tiny")
    doc = json.loads(path.read_text())
    assert [e["dataset_id"] for e in doc["datasets"]] == [f"mabcq/hopper/tiny-agent{i}-v0" for i in range(3)] + ["mabcq/hopper/tiny-joint-v0"]
    e0 = doc["datasets"][0]
    assert e0["transitions"] == 1500 and len(e0["checksum"]) == 64 and e0["episodes"] > 0
    md = minari.load_dataset("mabcq/hopper/tiny-agent0-v0").storage.metadata
    assert e0["checksum"] == md["checksum"] and e0["expert_return"] == pytest.approx(md["ref_max_score"], abs=1e-3)
    assert e0["random_return"] == pytest.approx(md["ref_min_score"], abs=1e-3) and e0["versions"] == md["versions"]
    assert {p: v["transitions"] for p, v in e0["parts"].items()} == md["mixture"]
    assert sum(v["episodes"] for v in e0["parts"].values()) == e0["episodes"]
    lo, hi = md["mixture_episodes"]["all_expert"]
    complete = [i for i in range(lo, hi) if i not in md["incomplete_episodes"]]  # the cut last piece is left out
    assert len(complete) >= hi - lo - 1
    expect = np.mean([ep.rewards.sum() for ep in minari.load_dataset("mabcq/hopper/tiny-agent0-v0").iterate_episodes(complete)])
    assert e0["parts"]["all_expert"]["mean_return"] == pytest.approx(expect, abs=0.05)
    assert runner.invoke(main, ["manifest", "--env", "hopper", "--preset", "tiny"]).exit_code == 0

    # a dataset whose data differ is named, with its checksum and the manifest's
    e0["checksum"] = "0" * 64
    path.write_text(json.dumps(doc))
    result = runner.invoke(main, ["manifest", "--env", "hopper", "--preset", "tiny"])
    assert "mabcq/hopper/tiny-agent0-v0\tequivalent\tchecksum" in result.output and "the manifest's 0000000000000000 (same package versions)" in result.output
    assert "every part's mean return within 5%" in result.output
    assert result.exit_code == 0  # equivalent is not a failure, but it is never called identical

    # other data: a part's returns far from the manifest's
    e0["parts"]["self_expert"]["mean_return"] += 1000.0
    path.write_text(json.dumps(doc))
    result = runner.invoke(main, ["manifest", "--env", "hopper", "--preset", "tiny"])
    assert "mabcq/hopper/tiny-agent0-v0\tdiffers\tchecksum" in result.output and "part self_expert's mean return is 1000.0 off" in result.output
    assert "tiny-agent1-v0\tmatches the manifest" in result.output and result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "Error: the local datasets differ from the manifest (see above)"

    # make-data reports the comparison once a manifest exists
    result = runner.invoke(main, ["make-data", "--env", "hopper", "--preset", "tiny", "--no-progress"])
    lines = {line.split("\t")[0]: line.split("\t") for line in result.output.splitlines() if line.startswith("mabcq/")}
    assert result.exit_code == 0 and lines["mabcq/hopper/tiny-agent0-v0"][3].startswith("differs from the manifest: checksum")
    assert lines["mabcq/hopper/tiny-agent2-v0"][3:] == ["matches the manifest", "kept"]
    assert recipe.dataset_id(0) == "mabcq/hopper/tiny-agent0-v0"


def test_write_keeps_other_tasks_entries_and_a_missing_dataset_is_reported(tiny, tmp_path, monkeypatch):
    path = manifest.manifest_path("tiny")
    other = {"dataset_id": "mabcq/walker/tiny-agent0-v0", "checksum": "ab" * 32, "recipe_fingerprint": "x", "transitions": 1, "versions": {}}
    path.write_text(json.dumps({"manifest_version": 1, "tier": "tiny", "machine": platform.machine(), "datasets": [other]}))
    assert CliRunner().invoke(main, ["manifest", "--env", "hopper", "--preset", "tiny", "--write"]).exit_code == 0
    ids = [e["dataset_id"] for e in json.loads(path.read_text())["datasets"]]
    assert ids == ["mabcq/hopper/tiny-agent0-v0", "mabcq/hopper/tiny-agent1-v0", "mabcq/hopper/tiny-agent2-v0", "mabcq/hopper/tiny-joint-v0", "mabcq/walker/tiny-agent0-v0"]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(main, ["manifest", "--env", "hopper", "--preset", "tiny"])
    assert result.exit_code == 1 and result.output.count("\tmissing\t") == 4 and "make it with make-data" in result.output


def test_malformed_manifest_is_one_line(tiny):
    manifest.manifest_path("tiny").write_text("{not json")
    result = CliRunner().invoke(main, ["manifest", "--env", "hopper", "--preset", "tiny"])
    assert result.exit_code == 1 and result.output.startswith("Error: manifest ") and "malformed" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_lite_datasets_of_every_shipped_expert_are_the_manifests(tmp_path, monkeypatch):
    """make-data of the lite tier, from each shipped sac-v1 expert, gives the published bits
    (about 2 minutes per task on 2 cores)."""
    from mabcq_bench.data.datasets import make_data
    from mabcq_bench.data.experts import shipped_dir

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    lite = load_recipe("lite")
    listed = manifest.read_manifest(manifest.manifest_path("lite"))
    recipes = [lite.for_task(t) for t in ("halfcheetah", "walker", "hopper", "ant") if (shipped_dir(lite.for_task(t)) / "expert.json").exists()]
    assert recipes, "no sac-v1 expert ships yet"
    for recipe in recipes:
        make_data(recipe, progress=False, log=lambda _: None)
    checks = manifest.check(recipes, listed)
    assert checks and all(c.verdict == "identical" for c in checks), [(c.dataset_id, c.verdict, c.detail) for c in checks]
    for check in checks:  # the bar: at least 98 % of every dataset in complete episodes
        assert listed[check.dataset_id]["transitions_in_complete_episodes"] >= 0.98
