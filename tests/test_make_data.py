"""make-data end to end: Minari round trip, mixture, determinism, resume, and bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import minari
import numpy as np
import pytest
from click.testing import CliRunner

from mabcq_bench.cli import main
from mabcq_bench.data import manifest
from mabcq_bench.data.card import LOADING_INSTALL
from mabcq_bench.data.datasets import dataset_path, make_data
from mabcq_bench.errors import UserError
from mabcq_bench.data.experts import find_expert, local_dir, shipped_dir
from mabcq_bench.data.recipes import load_recipe
from mabcq_bench.data.tasks import TASKS
from mabcq_bench.util import versions

from conftest import tiny_recipe_text, use_store

QUIET = {"progress": False, "log": lambda _: None}
ROOT = Path(__file__).resolve().parents[1]


# --- the smoke tier, end to end -----------------------------------------------------------------


def test_smoke_hopper_round_trip_with_reference_scores(smoke_hopper, monkeypatch):
    use_store(smoke_hopper, monkeypatch)
    recipe = smoke_hopper["recipe"]
    expert = find_expert(recipe)
    assert expert.dir == shipped_dir(recipe)  # made from the shipped expert, no SAC trained
    assert not Path(smoke_hopper["MABCQ_BENCH_HOME"], "experts").exists()
    for agent in range(3):
        ds = minari.load_dataset(f"mabcq/hopper/smoke-agent{agent}-v2")
        md = ds.storage.metadata
        assert ds.total_steps == 5000
        assert ds.action_space.shape == (1,)  # its own action only
        assert ds.observation_space.shape == (11,)  # the full state
        # the references of expert.json, on 100 fresh seeds: never the returns that chose the checkpoint
        refs = expert.info["references"]
        assert md["ref_min_score"] == refs["returns"]["random"]["mean"]
        assert md["ref_max_score"] == refs["returns"]["expert"]["mean"]
        scores = minari.get_normalized_score(ds, np.array([md["ref_min_score"], md["ref_max_score"]]))
        np.testing.assert_allclose(scores, [0.0, 1.0])
        assert md["mixture"] == {"early": 1000, "self_intermediate": 1750, "self_expert": 1750, "all_expert": 500}
        for p in ("random", "zero_action", "intermediate", "expert"):
            assert md[f"{p}_return"] == refs["returns"][p]
            assert md[f"{p}_return"]["n"] == len(md[f"{p}_return"]["returns"]) == 100
        assert md["normalized_references"] == refs["normalized"]
        assert md["reference_seeds"] == {"first": 1_000_000, "last": 1_000_099}
        assert md["checkpoint_selection"]["seeds"] == {"first": 10_000, "last": 10_002}
        assert md["checkpoint_selection"]["returns"]["expert"] == pytest.approx(expert.selection_returns["expert"]["mean"], abs=1e-3)
        assert md["num_episodes_average_score"] == 100
        assert "zero actions (doing nothing)" in md["description"] and "minari download" in md["description"]
        assert f"| {refs['returns']['expert']['mean']:.1f} ± {refs['returns']['expert']['std']:.1f} | 100 |" in md["description"]
        assert "seeds 1,000,000–1,000,099" in md["description"] and "chosen on seeds 10,000–10,002" in md["description"]
        assert md["recipe"]["tier"] == "smoke" and md["seed"] == 0 and "stable-baselines3" in md["versions"]
        assert "paper §4.1" in md["description"] and "never holds another agent's action" in md["description"]
        assert ds.recover_environment(eval_env=True).spec.id == "Hopper-v5"
        assert LOADING_INSTALL in md["description"]  # the card says what loading it elsewhere needs


def test_the_install_line_for_loading_without_the_project_names_pillow():
    """Issue 27 (13): Minari 0.5.4's HDF5 storage imports pillow without requiring it, and
    ``recover_environment`` needs MuJoCo: the line a colleague copies (datasets/CARD.md and every
    dataset's card) installs both, at the versions the data were made with."""
    words = LOADING_INSTALL.split()
    assert words[:2] == ["pip", "install"] and "pillow" in words
    assert '"minari[hdf5]==0.5.4"' in words and any(w.startswith('"gymnasium[mujoco]') for w in words)
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line and not line.startswith("#"))
    for package in ("minari", "gymnasium", "mujoco"):
        assert f"{package}=={pins[package]}" in LOADING_INSTALL.replace("[hdf5]", "").replace("[mujoco]", ""), package
    assert f"```\n{LOADING_INSTALL}\n```" in (ROOT / "datasets" / "CARD.md").read_text()


def test_parts_are_where_the_metadata_says(smoke_hopper, monkeypatch):
    use_store(smoke_hopper, monkeypatch)
    ds = minari.load_dataset("mabcq/hopper/smoke-agent1-v2")
    md = ds.storage.metadata
    ranges, sizes, cut = md["mixture_episodes"], md["mixture"], set(md["incomplete_episodes"])
    episodes = list(ds.iterate_episodes())
    for part, (start, stop) in ranges.items():
        assert sum(len(e.rewards) for e in episodes[start:stop]) == sizes[part]
        assert cut & set(range(start, stop)) <= {stop - 1}  # only a part's last episode may be cut
    env = TASKS["hopper"].make_env()
    for i, e in enumerate(episodes):
        done = e.terminations | e.truncations
        assert done[-1] and not done[:-1].any()
        assert np.all(np.abs(e.actions) <= 1.0)
        if i not in cut:  # a complete episode: from a reset to termination or the time limit
            assert e.terminations[-1] or len(e.rewards) == 1000
            reset_state = np.concatenate([env.unwrapped.init_qpos[1:], env.unwrapped.init_qvel])
            assert np.all(np.abs(e.observations[0] - reset_state) <= 5e-3 + 1e-12)  # Hopper's reset noise
    in_complete = sum(len(e.rewards) for i, e in enumerate(episodes) if i not in cut)
    assert in_complete / ds.total_steps >= 0.9  # smoke parts are short; lite and paper hold >= 98 %


def test_early_part_re_enacts_sac_and_is_each_agents_slice_of_the_same_experience(smoke_hopper, monkeypatch):
    use_store(smoke_hopper, monkeypatch)
    recipe = smoke_hopper["recipe"]
    expert = find_expert(recipe)
    assert [s for s, _ in expert.early_actors()] == [250, 500, 750]
    joint = []
    for agent, part in enumerate(TASKS["hopper"].partition):
        ds = minari.load_dataset(f"mabcq/hopper/smoke-agent{agent}-v2")
        start, stop = ds.storage.metadata["mixture_episodes"]["early"]
        eps = list(ds.iterate_episodes(range(start, stop)))
        joint.append((np.concatenate([e.observations for e in eps]), np.concatenate([e.rewards for e in eps])))
        assert sum(len(e.rewards) for e in eps) == 1000
    for obs, rew in joint[1:]:  # every agent holds the same states and rewards: one SAC's experience
        np.testing.assert_array_equal(obs, joint[0][0])
        np.testing.assert_array_equal(rew, joint[0][1])


def test_the_rollout_bar_ends_at_100_percent(smoke_hopper, monkeypatch):
    """Issue 27 (12): the bar counted only each early policy's share, not the whole episode that
    overshoots it, and stopped at 99 %."""
    import tqdm.auto

    import mabcq_bench.data.mixture as mixture

    bars = []

    class Bar:  # what the bar is told, as a terminal would draw it
        def __init__(self, total, **kwargs):
            self.total, self.n = total, 0
            bars.append(self)

        def update(self, n):
            self.n += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    use_store(smoke_hopper, monkeypatch)
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    monkeypatch.setattr(mixture, "bars_fit", lambda progress: progress)  # as on a terminal
    recipe = smoke_hopper["recipe"]
    parts = mixture.agent_episodes(TASKS["hopper"], recipe, find_expert(recipe), 0, progress=True)
    (bar,) = bars
    assert sum(len(e.rewards) for eps in parts.values() for e in eps) == bar.total == 5000
    assert bar.n == bar.total


def test_rerun_reuses_finished_datasets(smoke_hopper, monkeypatch):
    use_store(smoke_hopper, monkeypatch)
    files = sorted(Path(smoke_hopper["MINARI_DATASETS_PATH"]).rglob("*.hdf5"))
    before = [(f, f.stat().st_mtime_ns) for f in files]
    statuses = make_data(smoke_hopper["recipe"], **QUIET)
    assert [s.created for s in statuses] == [False, False, False, False]  # three agents' and the joint dataset
    assert [s.checksum for s in statuses] == [s.checksum for s in smoke_hopper["statuses"]]
    assert [(f, f.stat().st_mtime_ns) for f in files] == before


def test_cli_make_data_reports_kept_datasets(smoke_hopper, monkeypatch):
    use_store(smoke_hopper, monkeypatch)
    result = CliRunner().invoke(main, ["make-data", "--env", "hopper", "--preset", "smoke", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "mabcq/hopper/smoke-agent2-v2\t5,000 transitions" in result.output and "kept" in result.output


def test_cli_make_data_lists_each_dataset_once(smoke_hopper, monkeypatch):
    """Issue 27 (12): the datasets were listed twice (status, then the manifest check), as 5000
    and as 5,000; now one line each, the manifest's verdict in it."""
    use_store(smoke_hopper, monkeypatch)
    result = CliRunner().invoke(main, ["make-data", "--env", "hopper", "--preset", "smoke", "--no-progress"])
    assert result.exit_code == 0, result.output
    for status in smoke_hopper["statuses"]:  # the agents', then the joint dataset
        (line,) = [line for line in result.output.splitlines() if line.startswith(status.dataset_id + "\t")]
        assert line.split("\t")[:3] == [status.dataset_id, f"{status.total_steps:,} transitions", f"sha256 {status.checksum[:16]}"]
        assert line.split("\t")[-1] == "kept" and "5000" not in line
        if manifest.read_manifest(manifest.manifest_path("smoke"))[status.dataset_id]["versions"] == versions():
            assert line.split("\t")[3] == "matches the manifest"


# --- determinism and resume (a recipe smaller than smoke) ----------------------------------


def _tiny(tmp_path: Path, **overrides):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_recipe_text(**overrides))
    return path, load_recipe(str(path)).for_task("hopper")


def _stores(tmp_path: Path, name: str) -> dict[str, str]:
    return {"MINARI_DATASETS_PATH": str(tmp_path / name / "minari"), "MABCQ_BENCH_HOME": str(tmp_path / name / "home")}


def _make_in(store: dict, recipe, monkeypatch):
    use_store(store, monkeypatch)
    return [s.checksum for s in make_data(recipe, **QUIET)]


def test_same_recipe_and_seed_give_identical_datasets(tmp_path, monkeypatch):
    _, recipe = _tiny(tmp_path)
    a = _make_in(_stores(tmp_path, "a"), recipe, monkeypatch)
    b = _make_in(_stores(tmp_path, "b"), recipe, monkeypatch)
    assert a == b and len(set(a)) == 4  # identical runs; different agents' data (and the joint dataset) differ
    _, other_seed = _tiny(tmp_path, seed=1)
    assert _make_in(_stores(tmp_path, "c"), other_seed, monkeypatch) != a


def _run_and_kill(path: Path, store: dict, ready) -> None:
    """Start the real CLI, SIGKILL it once ``ready()`` holds (a hard crash, no cleanup)."""
    env = {**os.environ, **store}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mabcq_bench.cli", "make-data", "--env", "hopper", "--preset", str(path), "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the job finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("when", ["expert training", "dataset writing"])
def test_killed_run_resumes_to_the_same_datasets(tmp_path, monkeypatch, when):
    path, recipe = _tiny(tmp_path)
    reference = _make_in(_stores(tmp_path, "ref"), recipe, monkeypatch)

    store = _stores(tmp_path, "killed")
    root = Path(store["MINARI_DATASETS_PATH"])
    home = Path(store["MABCQ_BENCH_HOME"])
    if when == "expert training":
        ready = lambda: any(home.glob("experts/tiny/hopper/*/training/state.json"))  # noqa: E731
    else:
        ready = lambda: (root / "mabcq/hopper/tiny-agent0-v0").exists()  # noqa: E731
    _run_and_kill(path, store, ready)
    # no half-written dataset is visible under its id after the crash
    use_store(store, monkeypatch)
    visible = sorted(minari.list_local_datasets()) if root.exists() else []
    assert all(minari.load_dataset(i).total_steps == 1500 for i in visible)
    assert _make_in(store, recipe, monkeypatch) == reference
    assert not [p for p in (root / ".mabcq-staging").iterdir() if p.is_dir()]  # stale staging cleared


# --- bad input: one clear line, non-zero exit, nothing lost -----------------------------------


def _cli(args: list[str]):
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_unknown_task_and_tier_list_valid_ones():
    assert "unknown task 'swimmer'; valid tasks: halfcheetah, walker, hopper, ant" in _cli(["make-data", "--env", "swimmer"])
    assert "unknown tier 'huge'; valid tiers: lite, paper, smoke" in _cli(["make-data", "--preset", "huge"])


def test_malformed_recipe_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("tier = 'x'\nseed = \n")
    assert "malformed recipe" in _cli(["make-data", "--preset", str(bad)])


def test_unwritable_dataset_folder(tmp_path, monkeypatch, tiny_recipe_file):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(blocker / "datasets"))
    assert "cannot write to the Minari dataset folder" in _cli(["make-data", "--preset", str(tiny_recipe_file)])


def test_corrupt_dataset_is_reported_and_others_kept(tmp_path, monkeypatch):
    path, recipe = _tiny(tmp_path)
    checksums = _make_in(_stores(tmp_path, "s"), recipe, monkeypatch)
    victim = next((dataset_path(recipe.dataset_id(1)) / "data").glob("*.hdf5"))
    victim.write_bytes(b"not an hdf5 file")
    line = _cli(["make-data", "--preset", str(path)])
    assert "mabcq/hopper/tiny-agent1-v0" in line and "is corrupt" in line
    assert minari.load_dataset(recipe.dataset_id(0)).storage.metadata["checksum"] == checksums[0]


def test_run_and_make_data_say_the_same_about_a_corrupt_dataset_and_it_works(tmp_path, monkeypatch):
    """A dataset whose data no longer matches its checksum: run and make-data both give the
    command that deletes it; following it, make-data makes it again, the others kept."""
    import shlex
    import shutil

    import h5py

    from mabcq_bench.runs.plan import check_datasets

    path, recipe = _tiny(tmp_path)
    checksums = _make_in(_stores(tmp_path, "s"), recipe, monkeypatch)
    victim = dataset_path(recipe.dataset_id(1))
    with h5py.File(next((victim / "data").glob("*.hdf5")), "r+") as f:  # readable, but not the data it was made of
        obs = f["episode_0/observations"]
        obs[0, 0] = obs[0, 0] + 1.0
    with pytest.raises(UserError) as run_says:
        check_datasets(TASKS["hopper"], "tiny")  # what `run` checks before it starts
    make_data_says = _cli(["make-data", "--preset", str(path)])
    delete = f"delete it with `rm -r {shlex.quote(str(victim))}` and rerun"
    assert "is corrupt (its data does not match its checksum)" in str(run_says.value) and delete in str(run_says.value)
    assert "is corrupt (its data does not match its checksum)" in make_data_says and delete in make_data_says
    assert minari.load_dataset(recipe.dataset_id(0)).storage.metadata["checksum"] == checksums[0]  # make-data overwrote nothing
    rm, flag, target = shlex.split(delete.split("`")[1])
    assert (rm, flag, Path(target)) == ("rm", "-r", victim)
    shutil.rmtree(target)
    statuses = make_data(recipe, **QUIET)
    assert [s.created for s in statuses] == [False, True, False, False] and [s.checksum for s in statuses] == checksums


def test_dataset_from_another_recipe_is_not_overwritten(tmp_path, monkeypatch):
    path, recipe = _tiny(tmp_path)
    checksums = _make_in(_stores(tmp_path, "s"), recipe, monkeypatch)
    path.write_text(tiny_recipe_text(policy_noise=0.3))  # same tier name, other data
    line = _cli(["make-data", "--preset", str(path)])
    assert "was made by a different recipe" in line
    assert minari.load_dataset(recipe.dataset_id(0)).storage.metadata["checksum"] == checksums[0]


def test_library_raises_user_error_not_a_traceback(tmp_path, monkeypatch):
    path, recipe = _tiny(tmp_path)
    blocker = tmp_path / "f"
    blocker.write_text("")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(blocker))
    with pytest.raises(UserError):
        make_data(recipe, **QUIET)


def test_missing_dataset_is_remade_without_retraining_the_expert(tmp_path, monkeypatch):
    import shutil

    _, recipe = _tiny(tmp_path)
    checksums = _make_in(_stores(tmp_path, "s"), recipe, monkeypatch)
    returns = local_dir(recipe) / "expert.json"
    stamp = returns.stat().st_mtime_ns
    shutil.rmtree(dataset_path(recipe.dataset_id(2)))
    statuses = make_data(recipe, **QUIET)
    assert [s.created for s in statuses] == [False, False, True, False]
    assert [s.checksum for s in statuses] == checksums
    assert returns.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_smoke_tier_for_every_task():
    """`make-data --env all --preset smoke`: every task's agents get datasets of the right shapes."""
    recipe_file = load_recipe("smoke")
    for name, task in TASKS.items():
        statuses = make_data(recipe_file.for_task(name), **QUIET)
        assert len(statuses) == task.n_agents
        for agent, status in enumerate(statuses):
            ds = minari.load_dataset(status.dataset_id)
            assert ds.total_steps == 5000
            assert ds.observation_space.shape == (task.state_dim,)
            assert ds.action_space.shape == (task.action_dims[agent],)
            md = ds.storage.metadata
            assert np.isfinite([md["ref_min_score"], md["ref_max_score"]]).all()
            assert md["partition"] == [list(p) for p in task.partition]


@pytest.mark.parametrize("n", [7, 30, 333, 1000])
def test_early_part_has_exactly_its_size_with_only_its_last_episode_cut(n):
    """Each early-training policy's last episode is kept whole; when that overshoots the part,
    the part's last episode is cut, never the size missed."""
    from mabcq_bench.data.experts import find_expert
    from mabcq_bench.data.mixture import early_episodes

    recipe = load_recipe("smoke").for_task("hopper")
    episodes = early_episodes(TASKS["hopper"], recipe, find_expert(recipe), n, seed=3)
    assert sum(len(e) for e in episodes) == n
    assert all(e.complete for e in episodes[:-1])
    again = early_episodes(TASKS["hopper"], recipe, find_expert(recipe), n, seed=3)
    assert all(np.array_equal(a.observations, b.observations) for a, b in zip(episodes, again))
