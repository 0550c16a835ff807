"""The scoring harness: records, skip and resume, foreign configurations, bad input, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_PROTOCOL, scored
from mabcq_bench.runs import execute, plan, protocol, sweep
from mabcq_bench.runs.protocol import load_protocol
from mabcq_bench.cli import main
from mabcq_bench.errors import UserError
from mabcq_bench.data.tasks import TASKS


def _runs(algo="mabcq", seeds=(0,), overrides=()):
    protocol = load_protocol("tiny")
    specs = [plan.RunSpec("tiny", "hopper", algo, s, tuple(overrides)) for s in seeds]
    return plan.prepare(specs, protocol, "tiny")


def test_record_holds_what_the_leaderboard_needs(store):
    (run,) = _runs()
    record = execute.execute(run, store["results"])
    path = store["results"] / "tiny-p2" / "hopper" / "mabcq" / "seed0.json"
    assert json.loads(path.read_text()) == record
    assert record["status"] == "finished" and record["updates"] == 6
    assert [p["updates"] for p in record["curve"]] == [3, 6]
    assert record["config"]["batch_size"] == 32 and record["config"]["epsilon"] == TASKS["hopper"].epsilon
    lo, hi = record["ref_min_score"], record["ref_max_score"]
    expected = 100 * (record["final"]["return_mean"] - lo) / (hi - lo)
    assert record["final"]["normalized_score"] == pytest.approx(expected)
    assert record["final"]["coordination_gap"] >= 0
    # protocol 2: the score is a separate final evaluation; the window is the last curve points' mean
    assert record["schema"] == 2 and record["protocol"]["version"] == 2 and record["tier"] == "tiny-p2"
    assert record["final"]["episodes"] == len(record["final"]["returns"]) == 2
    assert record["window"]["evaluations"] == 2 and record["window"]["from_update"] == 3
    assert record["window"]["normalized_score"] == pytest.approx(np.mean([p["normalized_score"] for p in record["curve"]]))
    assert [d["id"] for d in record["datasets"]] == [f"mabcq/hopper/tiny-agent{i}-v0" for i in range(3)]
    assert not run.spec.checkpoint_path(store["results"]).exists()
    # the process's CPU time beside each wall time: what a run costs, whatever else the machine did
    # (+ one unit of the rounding: a record keeps 0.1 s of training time, 0.01 s of an evaluation's)
    assert 0 < record["train_cpu_s"] <= record["train_wall_s"] * 1.05 + 0.1
    for timed in [*record["curve"], record["final"]]:
        assert 0 <= timed["cpu_s"] <= timed["wall_s"] * 1.05 + 0.01


class Stop(Exception):
    pass


def _interrupt_at(update: int, run: plan.PreparedRun, results: Path) -> None:
    """Run ``run`` into ``results`` and crash it at ``update`` (after its checkpoints before then)."""
    import mabcq_bench.runs.learn as learn

    original = learn.train_seeds

    def train_with_hook(*args, on_update=None, **kwargs):
        def hook(done, metrics):
            if done == update:
                raise Stop
            on_update[0](done, metrics)

        return original(*args, on_update=[hook], **kwargs)

    learn.train_seeds = train_with_hook
    try:
        with pytest.raises(Stop):
            execute.execute(run, results)
    finally:
        learn.train_seeds = original


def test_interrupted_run_resumes_to_the_same_record(store):
    (run,) = _runs(seeds=(1,))
    straight = execute.execute(run, store["results"] / "a")
    _interrupt_at(5, run, store["results"] / "b")
    assert run.spec.checkpoint_path(store["results"] / "b").exists()
    assert not run.spec.record_path(store["results"] / "b").exists()  # a crashed run has no record
    resumed = execute.execute(run, store["results"] / "b")
    assert scored(resumed) == scored(straight) and resumed["config_fingerprint"] == straight["config_fingerprint"]
    assert resumed["train_cpu_s"] > 0 and all("cpu_s" in p for p in [*resumed["curve"], resumed["final"]])


def test_a_checkpoint_without_cpu_time_resumes_and_its_record_says_it_lacks_it(store):
    """A checkpoint of an older version keeps no CPU time: the run resumes to the same scores, and
    its record leaves out ``train_cpu_s`` and the CPU time of the evaluations made before."""
    import torch

    (run,) = _runs(seeds=(1,))
    straight = execute.execute(run, store["results"] / "a")
    _interrupt_at(5, run, store["results"] / "b")  # checkpoints at 2 and 4, the curve's evaluation at 3
    ckpt = run.spec.checkpoint_path(store["results"] / "b")
    state = torch.load(ckpt, weights_only=True)
    del state["elapsed_cpu_s"]
    for e in state["evaluations"]:
        del e["cpu_s"]
    torch.save(state, ckpt)
    resumed = execute.execute(run, store["results"] / "b")
    assert scored(resumed) == scored(straight)
    assert "train_cpu_s" in straight and "train_cpu_s" not in resumed and resumed["train_wall_s"] > 0
    assert ["cpu_s" in p for p in resumed["curve"]] == [False, True] and "cpu_s" in resumed["final"]


def test_rerun_skips_finished_runs(store):
    runs = _runs(seeds=(0, 1))
    first = sweep.run_sweep(runs, store["results"], workers=1, progress=False, log=lambda _: None)
    assert first.skipped == 0 and len(first.records) == 2 and not first.failures
    stamps = [r.spec.record_path(store["results"]).stat().st_mtime_ns for r in runs]
    again = sweep.run_sweep(runs, store["results"], workers=1, progress=False, log=lambda _: None)
    assert again.skipped == 2 and [scored(r) for r in again.records] == [scored(r) for r in first.records]
    assert [r.spec.record_path(store["results"]).stat().st_mtime_ns for r in runs] == stamps


def test_runs_of_another_configuration_are_refused_not_overwritten(store):
    (run,) = _runs()
    execute.execute(run, store["results"])
    before = run.spec.record_path(store["results"]).read_text()
    path = protocol.BASELINES_DIR / "tiny.toml"
    original = path.read_text()
    path.write_text(original.replace("lr_q = 0.001", "lr_q = 0.002", 1))
    try:
        (changed,) = _runs()
        assert changed.fingerprint != run.fingerprint
        with pytest.raises(UserError, match="holds hopper/mabcq seed 0 of another configuration"):
            sweep.run_sweep([changed], store["results"], workers=1, progress=False, log=lambda _: None)
    finally:
        path.write_text(original)
    assert run.spec.record_path(store["results"]).read_text() == before


def test_overrides_name_the_variant_and_change_the_config(store):
    (run,) = _runs(overrides=plan.parse_overrides(["epsilon=0.4"]))
    assert run.spec.variant == "mabcq epsilon=0.4" and run.config["epsilon"] == 0.4 and run.epsilon == 0.4
    (bcq,) = _runs(algo="bcq")
    assert bcq.epsilon is None  # no value deviation, no ε


def test_corrupt_record_is_reported(store):
    (run,) = _runs()
    path = run.spec.record_path(store["results"])
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    with pytest.raises(UserError, match="is corrupt"):
        sweep.run_sweep([run], store["results"], workers=1, progress=False, log=lambda _: None)
    assert path.read_text() == "{ not json"


def test_missing_datasets_name_the_make_data_command(store):
    with pytest.raises(UserError, match=r"make them with `mabcq-bench make-data --env walker --preset tiny`"):
        plan.prepare([plan.RunSpec("tiny", "walker", "bcq", 0)], load_protocol("tiny"), "tiny")


def test_datasets_that_do_not_match_the_task(store, tmp_path, monkeypatch):
    root = tmp_path / "minari"
    shutil.copytree(store["MINARI_DATASETS_PATH"], root)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    agent0, agent1 = root / "mabcq/hopper/tiny-agent0-v0", root / "mabcq/hopper/tiny-agent1-v0"
    shutil.rmtree(agent0)
    shutil.copytree(agent1, agent0)  # agent 1's data under agent 0's id
    with pytest.raises(UserError, match="does not match task hopper"):
        _runs()


def _cli(args):
    result = CliRunner().invoke(main, args)
    return result


def test_cli_errors_are_one_line():
    for args, message in [
        (["run", "--algo", "sac"], "unknown algorithm 'sac'; valid algorithms: mabcq, mabcq-no-tn, mabcq-no-vd, bcq, ddpg, "),
        (["run", "--env", "swimmer"], "unknown task 'swimmer'"),
        (["run", "--preset", "huge"], "unknown tier 'huge'"),
        (["run", "--seeds", "x"], "--seeds takes a count"),
        (["run", "--set", "nonsense"], "--set takes key=value"),
        (["leaderboard", "--results", "/nonexistent/runs"], "does not exist"),
    ]:
        result = _cli(args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code != 0 and len(lines) == 1 and message in lines[0], result.output


def test_cli_run_then_leaderboard(store, tmp_path):
    out = tmp_path / "board"
    result = _cli(["run", "--algo", "bcq,behavior", "--env", "hopper", "--preset", "tiny", "--seeds", "2", "--results", str(store["results"]), "--workers", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "bcq" in result.output and "4 runs finished" in result.output
    result = _cli(["leaderboard", "--results", str(store["results"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "tiny-p2.md").exists() and (out / "tiny-p2.csv").exists() and (out / "tiny-p2-curves.png").stat().st_size > 0
    md = (out / "tiny-p2.md").read_text()
    assert "| bcq |" in md
    assert "each run's final evaluation (2 episodes" in md and "last 2 learning-curve evaluations" in md
    assert "hopper_window" in (out / "tiny-p2.csv").read_text().splitlines()[0]


def test_regress_passes_on_its_reference_and_fails_when_tampered(store, tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"tier": "tiny", "tasks": ["hopper"], "algos": ["bcq"], "seeds": [0], "tolerance": 0.5, "tolerance_note": "test", "scores": {"hopper/bcq": 0.0}}))
    result = _cli(["regress", "--reference", str(ref), "--update", "--no-progress", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(ref.read_text())["tolerance"] == 0.5
    result = _cli(["regress", "--reference", str(ref), "--no-progress", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "hopper/bcq" in result.output and "within" in result.output
    data = json.loads(ref.read_text())
    data["scores"]["hopper/bcq"] += 5.0
    ref.write_text(json.dumps(data))
    result = _cli(["regress", "--reference", str(ref), "--no-progress", "--workers", "1"])
    assert result.exit_code != 0 and "DRIFT" in result.output


def test_ctrl_c_stops_the_sweep_at_once_and_a_rerun_completes_it(store):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it."""
    import signal
    import subprocess
    import sys
    import time

    results = store["results"]
    protocol = str(store["base"] / "baselines" / "tiny.toml")
    cmd = [sys.executable, "-m", "mabcq_bench.cli", "run", "--algo", "bcq", "--env", "hopper", "--preset", protocol, "--seeds", "8", "--results", str(results), "--workers", "2", "--no-progress"]
    env = {**os.environ, "MINARI_DATASETS_PATH": store["MINARI_DATASETS_PATH"], "MABCQ_BENCH_HOME": store["MABCQ_BENCH_HOME"]}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list(results.glob("tiny-p2/hopper/bcq/seed*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "Aborted" in out
    finished = sorted(results.glob("tiny-p2/hopper/bcq/seed*.json"))
    assert 1 <= len(finished) < 8  # it stopped; the runs that were cut have no record
    result = CliRunner().invoke(main, cmd[3:])
    assert result.exit_code == 0, result.output
    assert len(list(results.glob("tiny-p2/hopper/bcq/seed*.json"))) == 8
    assert not list(results.glob("tiny-p2/hopper/bcq/*.ckpt*"))


def _is_worker(pid: int) -> bool:
    """Whether ``pid`` is (still) a multiprocessing pool worker."""
    try:
        return "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_killed_sweep_leaves_no_worker_training_behind(store, how):
    """kill <pid> of the sweep alone (not its process group): its pool workers stop too."""
    import signal
    import subprocess
    import sys
    import time

    results = store["results"]
    protocol = str(store["base"] / "baselines" / "tiny.toml")
    cmd = [sys.executable, "-m", "mabcq_bench.cli", "run", "--algo", "bcq", "--env", "hopper", "--preset", protocol, "--seeds", "0,1,2,3,4,5,6,7,8,9", "--results", str(results), "--workers", "2", "--no-progress"]
    env = {**os.environ, "MINARI_DATASETS_PATH": store["MINARI_DATASETS_PATH"], "MABCQ_BENCH_HOME": store["MABCQ_BENCH_HOME"]}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and proc.poll() is None:
        workers = [c for c in _children(proc.pid) if _is_worker(c)]
        if len(workers) == 2 and list(results.glob("tiny-p2/hopper/bcq/seed*.ckpt")):
            break
        time.sleep(0.05)
    assert len(workers) == 2, "the sweep never had two workers running"
    os.kill(proc.pid, getattr(signal, how))
    proc.communicate(timeout=30)
    deadline = time.time() + 20
    while any(map(_is_worker, workers)) and time.time() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if _is_worker(w)]
    assert not alive, f"workers {alive} kept running after the sweep got {how}"
    assert len(list(results.glob("tiny-p2/hopper/bcq/seed*.json"))) < 10  # it did stop


def test_a_tier_can_train_on_another_tiers_datasets(store, tmp_path):
    """A budget tier (more updates) runs on an existing tier's datasets: ``datasets = "<tier>"``."""
    text = (store["base"] / "baselines" / "tiny.toml").read_text()
    longer = text.replace('tier = "tiny"', 'tier = "tiny-long"\ndatasets = "tiny"').replace("updates = 6", "updates = 9")
    path = tmp_path / "tiny-long.toml"
    path.write_text(longer)
    protocol = load_protocol(str(path))
    assert (protocol.tier, protocol.datasets, protocol.protocol["updates"]) == ("tiny-long", "tiny", 9)
    assert load_protocol("tiny").datasets == "tiny"
    result = _cli(["run", "--algo", "bcq", "--env", "hopper", "--preset", str(path), "--seeds", "1", "--results", str(store["results"]), "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    record = json.loads((store["results"] / "tiny-long-p2" / "hopper" / "bcq" / "seed0.json").read_text())
    assert record["tier"] == "tiny-long-p2" and record["updates"] == 9 and [p["updates"] for p in record["curve"]] == [3, 6, 9]
    assert [d["id"] for d in record["datasets"]] == [f"mabcq/hopper/tiny-agent{i}-v0" for i in range(3)]
    path.write_text(longer.replace('datasets = "tiny"', "datasets = 3"))
    result = _cli(["run", "--preset", str(path)])
    assert result.exit_code == 1 and "datasets = '<tier>'" in result.output


def test_a_learner_runs_its_own_budget_and_its_record_says_which(store, tmp_path):
    """Issue 24 (3): ``[protocol.budgets.<algo>]`` sets a learner's updates on every task
    (``updates``) or on one (the task's name, which wins); the others keep the tier's budget and
    their fingerprints, and every record says which budget it ran."""
    text = (store["base"] / "baselines" / "tiny.toml").read_text()
    own = text.replace(
        "[algos.mabcq]",
        "[protocol.tasks.hopper]\nupdates = 4\n[protocol.budgets.bc]\nupdates = 9\nnot_plateaued = [\"updates\"]\n"
        "[protocol.budgets.bcq]\nupdates = 7\nhopper = 8\nnot_plateaued = [\"updates\"]\n\n[algos.mabcq]",
        1,
    )
    path = tmp_path / "tiny.toml"
    path.write_text(own)
    specs = [plan.RunSpec("tiny", "hopper", a, 0) for a in ("bc", "bcq", "ddpg")]
    runs = {r.spec.algo: r for r in plan.prepare(specs, load_protocol(str(path)), "tiny")}
    assert {a: (r.protocol["updates"], r.budget) for a, r in runs.items()} == {
        "bc": (9, "protocol.budgets.bc.updates"),
        "bcq": (8, "protocol.budgets.bcq.hopper"),
        "ddpg": (4, "protocol.tasks.hopper.updates"),
    }
    # a learner without a budget of its own keeps the fingerprint it has without any budgets
    plain = text.replace("[algos.mabcq]", "[protocol.tasks.hopper]\nupdates = 4\n\n[algos.mabcq]", 1)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "tiny.toml").write_text(plain)
    (before,) = plan.prepare(specs[2:], load_protocol(str(tmp_path / "plain" / "tiny.toml")), "tiny")
    assert before.fingerprint == runs["ddpg"].fingerprint and runs["ddpg"].protocol == before.protocol
    record = execute.execute(runs["bc"], store["results"])
    assert record["updates"] == 9 and record["protocol"]["updates"] == 9 and [p["updates"] for p in record["curve"]] == [3, 6, 9]
    # bc's every-task budget is listed as not plateaued; bcq's hopper key is not, though its other one is
    assert record["budget"] == {"updates": 9, "from": "protocol.budgets.bc.updates", "plateaued": False}
    assert {a: r.plateaued for a, r in runs.items()} == {"bc": False, "bcq": True, "ddpg": True}
    for bad, message in [
        ("[protocol.budgets.sarsa]\nupdates = 9", "[protocol.budgets.sarsa] is not an algorithm"),
        ("[protocol.budgets.bc]\ncartpole = 9", "[protocol.budgets.bc] may set only updates (every task), task names"),
        ("[protocol.budgets.bc]\nhopper = 9\nnot_plateaued = [\"walker\"]", "[protocol.budgets.bc] not_plateaued must list keys the table sets"),
        ("[protocol.budgets.bc]\nhopper = 9\nnot_plateaued = \"hopper\"", "[protocol.budgets.bc] not_plateaued must list keys the table sets"),
        ("[protocol.budgets.bc]\nhopper = 0", "[protocol.budgets.bc] hopper must be a positive integer"),
    ]:
        path.write_text(text.replace("[algos.mabcq]", f"{bad}\n\n[algos.mabcq]", 1))
        with pytest.raises(UserError, match=re.escape(message)):
            load_protocol(str(path))


def test_a_protocol_3_run_is_scored_over_its_last_checkpoints_and_filed_apart(store, tmp_path):
    text = (store["base"] / "baselines" / "tiny.toml").read_text()
    path = tmp_path / "tiny.toml"
    path.write_text(text.replace("version = 2", "version = 3\nfinal_checkpoints = 2"))
    (run,) = plan.prepare([plan.RunSpec("tiny", "hopper", "bc", 0)], load_protocol(str(path)), "tiny")
    record = execute.execute(run, store["results"])
    assert record["tier"] == "tiny-p3" and record["protocol"]["final_checkpoints"] == 2
    assert record["final"]["checkpoints"] == [6, 3] and record["final"]["episodes"] == 2
    assert (store["results"] / "tiny-p3" / "hopper" / "bc" / "seed0.json").exists()


def test_a_copied_protocol_with_a_new_tier_is_told_which_key_picks_the_datasets(store, tmp_path):
    """Issue 27 (7): a copy of a protocol with a new tier and no ``datasets`` key trains on datasets
    of that tier, which no recipe makes: the message names the key, never ``make-data --preset <new tier>``."""
    text = (store["base"] / "baselines" / "tiny.toml").read_text().replace('tier = "tiny"', 'tier = "mytier"')
    path = tmp_path / "mytier.toml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        plan.prepare([plan.RunSpec("mytier", "hopper", "bcq", 0)], load_protocol(str(path)), "mytier")
    message = str(err.value)
    assert "--preset mytier" not in message
    assert f"protocol {path} trains on the mytier datasets" in message
    assert 'Add the line datasets = "tiny"' in message and "`mabcq-bench make-data --env hopper --preset tiny`" in message
    path.write_text(text.replace('tier = "mytier"', 'tier = "mytier"\ndatasets = "tiny"'))  # what the message says to do
    (run,) = plan.prepare([plan.RunSpec("mytier", "hopper", "bcq", 0)], load_protocol(str(path)), "tiny")
    assert [i for i, _ in run.datasets] == [f"mabcq/hopper/tiny-agent{i}-v0" for i in range(3)]
    readme = (Path(__file__).resolve().parents[1] / "baselines" / "README.md").read_text()
    assert '**`datasets`** names the datasets a protocol trains on' in readme


def test_a_run_another_process_is_training_is_refused_not_trained_twice(store):
    from mabcq_bench.util import exclusive_lock

    (run,) = _runs(seeds=(3,))
    lock = run.spec.checkpoint_path(store["results"]).with_suffix(".lock")
    with exclusive_lock(lock, "a run"):  # as another sweep over the same store holds it
        with pytest.raises(UserError, match=r"another mabcq-bench process is working on run tiny-p2/hopper/mabcq/seed3"):
            execute.execute(run, store["results"])
    assert not run.spec.record_path(store["results"]).exists()
    record = execute.execute(run, store["results"])
    assert record["seed"] == 3 and not lock.exists() and not run.spec.checkpoint_path(store["results"]).exists()


def test_shipped_protocol_files_are_what_the_registry_generates():
    """baselines/<tier>.toml lists every hyperparameter: regenerate it when a default changes."""
    for tier, (proto, note, datasets, budget_notes) in protocol.DEFAULT_PROTOCOLS.items():
        path = protocol.BASELINES_DIR / f"{tier}.toml"
        assert path.read_text() == protocol.protocol_text(tier, proto, note, datasets, budget_notes), f"run `mabcq-bench baselines --write` ({path})"
    long, lite = load_protocol("lite-long"), load_protocol("lite")
    studies = [load_protocol("plateau60"), load_protocol("plateau120")]
    assert long.datasets == studies[0].datasets == studies[1].datasets == "lite"
    # every task's lite budget lies within the budget study's runs (where it was read off), on their grid
    for task in TASKS:
        updates = lite.for_task(task)["updates"]
        assert updates <= max(s.for_task(task)["updates"] for s in studies)
        assert all(updates % s.for_task(task)["eval_every"] == 0 for s in studies)


def test_runs_on_another_dataset_version_are_filed_and_tabulated_apart(store, tmp_path, monkeypatch):
    """v0 and v1 datasets are different experiments: their runs never share a folder or a cell."""
    from mabcq_bench.report.records import load_records
    from mabcq_bench.report.tables import build_tables
    from mabcq_bench.data.recipes import load_recipe

    minari_copy = tmp_path / "minari"  # the shared tiny store stays as it was for other tests
    shutil.copytree(store["MINARI_DATASETS_PATH"], minari_copy)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_copy))
    (v0,) = _runs("bcq")
    execute.execute(v0, store["results"])
    assert v0.spec.tier == "tiny-p2" and v0.datasets[0][0].endswith("-v0")
    # the same tier, version 1 of its datasets (a recipe with dataset_version = 1)
    from conftest import tiny_recipe_text
    from mabcq_bench.data.datasets import make_data

    recipe_path = store["base"] / "recipes" / "tiny.toml"
    original = recipe_path.read_text()
    try:
        recipe_path.write_text("dataset_version = 1\n" + tiny_recipe_text())
        make_data(load_recipe("tiny").for_task("hopper"), progress=False, log=lambda _: None)
        (v1,) = _runs("bcq")
        assert v1.spec.tier == "tiny-v1-p2" and v1.datasets[0][0].endswith("-v1")
        execute.execute(v1, store["results"])
    finally:
        recipe_path.write_text(original)
    records = load_records(store["results"])
    assert sorted(r["tier"] for r in records) == ["tiny-p2", "tiny-v1-p2"]
    assert (store["results"] / "tiny-v1-p2" / "hopper" / "bcq" / "seed0.json").exists()
    assert [c.n for c in build_tables(records, "tiny-p2").rows[0].cells.values()] == [1]
    assert [c.n for c in build_tables(records, "tiny-v1-p2").rows[0].cells.values()] == [1]


def test_board_names_keep_datasets_and_protocols_apart():
    assert plan.board_name("lite", 0) == "lite"  # the first leaderboard: v0 datasets, protocol 1
    assert plan.board_name("lite", 1) == "lite-v1"
    assert plan.board_name("lite", 1, 2) == "lite-v1-p2"
    assert plan.board_name("lite", 0, 2) == "lite-p2"


def test_protocol_files_of_another_version_or_without_the_new_keys_are_refused(tmp_path):
    text = protocol.protocol_text("t", dict(TINY_PROTOCOL), "test")
    cases = {
        "old": (text.replace("final_eval_episodes = 2\n", ""), "[protocol] has no final_eval_episodes (regenerate the file with `mabcq-bench baselines --write`, or add it)"),
        "v1": (text.replace("version = 2", "version = 1"), "is protocol version 1; this mabcq-bench runs versions 2, 3"),
        "v3 without its key": (text.replace("version = 2", "version = 3"), "version 3 needs [protocol] final_checkpoints"),
        "v3 uneven": (text.replace("version = 2", "version = 3\nfinal_checkpoints = 3"), "final_eval_episodes must be a multiple of final_checkpoints"),
        "v2 with a v3 key": (text.replace("version = 2", "version = 2\nfinal_checkpoints = 2"), "unknown [protocol] key(s) final_checkpoints"),
        "zero": (text.replace("score_window = 2", "score_window = 0"), "[protocol] score_window must be a positive integer"),
        "task": (text.replace("[algos.mabcq]", "[protocol.tasks.hopper]\nupdates = 9\n\n[algos.mabcq]", 1), None),
        "badtask": (text.replace("[algos.mabcq]", "[protocol.tasks.cartpole]\nupdates = 9\n\n[algos.mabcq]", 1), "[protocol.tasks.cartpole] is not a task"),
        "badkey": (text.replace("[algos.mabcq]", "[protocol.tasks.hopper]\nthreads = 2\n\n[algos.mabcq]", 1), "[protocol.tasks.hopper] may set only updates, eval_every, checkpoint_every"),
    }
    for name, (body, message) in cases.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(body)
        if message is None:
            loaded = protocol.load_protocol(str(path))
            assert loaded.for_task("hopper")["updates"] == 9 and loaded.for_task("ant")["updates"] == TINY_PROTOCOL["updates"]
            assert "tasks" not in loaded.for_task("hopper")
            continue
        with pytest.raises(UserError) as err:
            protocol.load_protocol(str(path))
        assert message in str(err.value), name


def test_a_sweep_says_its_plan_before_any_run_starts(store, monkeypatch):
    """Issue 27 (12): a bare ``run`` is 13 algorithms × 5 seeds; it says so before starting."""
    specs = [plan.RunSpec("tiny", "hopper", a, s) for a in ("bcq", "bc", "mabcq") for s in range(2)]
    runs = plan.prepare(specs, load_protocol("tiny"), "tiny")
    assert plan.describe_plan(runs) == "6 runs = 3 algorithms × 1 task × 2 seeds; hopper 6 updates per agent (3 agents)"
    eps = _runs(seeds=(0,), overrides=[("epsilon", 0.4)]) + _runs(seeds=(0,))
    assert plan.describe_plan(eps).startswith("2 runs = 2 variants × 1 task × 1 seed;")
    out = []

    def fake_executor(pending, results, workers, on_progress, address):
        assert out and out[0] == "plan: 6 runs = 3 algorithms × 1 task × 2 seeds; hopper 6 updates per agent (3 agents)"
        for (run,) in pending:  # units of one run each on the CPU
            yield f"hopper/{run.spec.variant}/seed{run.spec.seed}", {"final": {"normalized_score": 1.0}, "wall_s": 1.0}, None

    monkeypatch.setitem(sweep.EXECUTORS, "fake", fake_executor)
    result = sweep.run_sweep(runs, store["results"], workers=1, progress=False, log=out.append, executor="fake")
    assert len(result.records) == 6


def test_run_help_says_the_preset_may_be_a_path():
    result = _cli(["run", "--help"])
    text = " ".join(result.output.split())
    assert "or a path to a protocol .toml" in text and 'datasets = "<tier>"' in text


def test_baselines_lists_the_tiers_and_shows_one(tmp_path, monkeypatch):
    """Issue 27 (12): ``baselines`` printed every file (1,321 lines) with no way to pick one."""
    listing = _cli(["baselines"])
    assert listing.exit_code == 0 and len(listing.output.splitlines()) < 20
    lines = {line.split()[0]: line for line in listing.output.splitlines() if line.strip()}
    assert set(protocol.DEFAULT_PROTOCOLS) <= set(lines)
    assert lines["lite-long"].split()[1] == "lite" and lines["smoke"].rstrip().endswith("CI only (the regression gate).")
    shown = _cli(["baselines", "--preset", "smoke"])
    assert shown.output == f"# --- {protocol.BASELINES_DIR / 'smoke.toml'}\n" + (protocol.BASELINES_DIR / "smoke.toml").read_text()
    copy = tmp_path / "mine.toml"
    copy.write_text((protocol.BASELINES_DIR / "smoke.toml").read_text().replace('tier = "smoke"', 'tier = "mine"'))
    assert 'tier = "mine"' in _cli(["baselines", "--preset", str(copy)]).output
    assert "unknown tier 'nope'" in _cli(["baselines", "--preset", "nope"]).output
    monkeypatch.setattr(protocol, "BASELINES_DIR", tmp_path / "baselines")
    written = _cli(["baselines", "--write", "--preset", "smoke"])
    assert written.exit_code == 0 and [p.name for p in (tmp_path / "baselines").iterdir()] == ["smoke.toml"]


def test_a_zero_column_terminal_gets_plain_lines_not_blank_bars():
    """Issue 27 (9): tqdm draws blank bars on a terminal that reports 0 columns."""
    import fcntl
    import struct
    import termios

    from mabcq_bench.util import bars_fit

    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as terminal:
            for columns, bars in ((0, False), (80, True)):
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
                assert bars_fit(True, terminal) is bars, columns
            assert not bars_fit(False, terminal)  # --no-progress
    finally:
        os.close(master)
        os.close(slave)


def test_progress_lines_come_at_most_once_a_minute_with_updates_and_eta():
    now, out = [0.0], []
    ticker = sweep.ProgressLines(runs=2, updates=1000, log=out.append, every=60, clock=lambda: now[0])
    for t in range(10, 200, 10):  # 25 updates every 10 s
        now[0] = float(t)
        ticker.updated(25)
        if t == 150:
            ticker.run_done()
    assert out == [
        "progress: 0 of 2 runs finished, 150 of 1,000 updates (15.0%), 60 s elapsed, ETA 6 min",
        "progress: 0 of 2 runs finished, 300 of 1,000 updates (30.0%), 2 min elapsed, ETA 5 min",
        "progress: 1 of 2 runs finished, 450 of 1,000 updates (45.0%), 3 min elapsed, ETA 4 min",
    ]


def test_a_resumed_runs_checkpoint_counts_as_done_not_as_speed():
    """A run resumed at 800 of 1,000 updates: its ETA is priced from the updates made since, not
    from the 800 its checkpoint had (which made a 25-minute remainder read "ETA 13 s")."""
    now, out = [0.0], []
    ticker = sweep.ProgressLines(runs=1, updates=1000, log=out.append, every=60, clock=lambda: now[0])
    ticker.updated(800, True)
    for t in range(10, 70, 10):  # 10 updates every 10 s
        now[0] = float(t)
        ticker.updated(10)
    assert out == ["progress: 0 of 1 runs finished, 860 of 1,000 updates (86.0%), 60 s elapsed, ETA 2 min"]


def test_a_resumed_run_reports_its_checkpoint_once_as_resumed(tmp_path):
    """execute's progress: the updates a checkpoint had arrive once, flagged resumed; the rest as
    new work, and all of them add up to the run's updates."""
    from mabcq_bench.runs import execute

    events = []
    report = execute._progress_reporter(lambda n, resumed: events.append((n, resumed)), 100)
    for done in range(41, 101):  # resumed from a checkpoint at 40 updates
        report(done, [])
    assert events[0] == (40, True)
    assert all(not resumed for _, resumed in events[1:])
    assert sum(n for n, _ in events) == 100
    events.clear()
    report = execute._progress_reporter(lambda n, resumed: events.append((n, resumed)), 100)
    for done in range(1, 101):  # a fresh run
        report(done, [])
    assert all(not resumed for _, resumed in events) and sum(n for n, _ in events) == 100


def test_a_sweep_without_bars_prints_progress_while_a_run_trains(tmp_path, monkeypatch):
    """Issue 27 (9): a single long run printed nothing until it ended; now lines come while it
    trains, with --no-progress too (progress reports of a fake executor, one line per report)."""
    runs = [
        plan.PreparedRun(plan.RunSpec("tiny", "hopper", "bc", s), {}, {"updates": 100}, (), 0.0, 1.0, None, "0" * 16)
        for s in range(2)
    ]

    def fake_executor(pending, results, workers, on_progress, address):
        for (run,) in pending:
            for _ in range(4):
                on_progress(25)
            yield f"hopper/bc/seed{run.spec.seed}", {"final": {"normalized_score": 50.0}, "wall_s": 1.0}, None

    monkeypatch.setitem(sweep.EXECUTORS, "fake", fake_executor)
    for progress in (True, False):  # pytest's stderr is no terminal; --no-progress never draws bars
        out = []
        sweep.run_sweep(runs, tmp_path / f"runs-{progress}", workers=1, progress=progress, log=out.append, executor="fake", line_every=0)
        ticks = [line for line in out if line.startswith("progress: ")]
        assert len(ticks) == 8 and ticks[3].startswith("progress: 0 of 2 runs finished, 100 of 200 updates (50.0%)")
        assert ticks[-1].startswith("progress: 1 of 2 runs finished, 200 of 200 updates (100.0%)")
        assert [line.split()[0] for line in out if line.startswith("[")] == ["[1/2]", "[2/2]"]


def test_progress_lines_reach_a_pipe_while_the_sweep_runs(store):
    """Without a TTY (a log file, a pipe) each finished run's line arrives at once, not at exit."""
    import subprocess
    import sys

    protocol = str(store["base"] / "baselines" / "tiny.toml")
    cmd = [sys.executable, "-m", "mabcq_bench.cli", "run", "--algo", "bcq", "--env", "hopper", "--preset", protocol, "--seeds", "3", "--results", str(store["results"]), "--workers", "1"]
    env = {**os.environ, "MINARI_DATASETS_PATH": store["MINARI_DATASETS_PATH"], "MABCQ_BENCH_HOME": store["MABCQ_BENCH_HOME"]}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        while line and not line.startswith("[1/3]"):
            line = proc.stdout.readline()
        assert line.startswith("[1/3] hopper/bcq/seed"), line
        assert proc.poll() is None  # two runs still to go: the line was not held back until exit
    finally:
        proc.communicate(timeout=120)
    assert proc.returncode == 0
