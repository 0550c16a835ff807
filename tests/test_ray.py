"""The Ray executor on a real local Ray instance with 2 CPUs (no mocks)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import minari
import pytest
import ray

from mabcq_bench.runs import execute, plan, protocol, sweep
from mabcq_bench.runs.protocol import load_protocol
from mabcq_bench.data.recipes import load_recipe

from conftest import TINY_PROTOCOL, scored

QUIET = {"progress": False, "log": lambda _: None}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def _runs(protocol_name="tiny", algos=("bcq",), seeds=(0, 1)):
    protocol = load_protocol(protocol_name)
    specs = [plan.RunSpec("tiny", "hopper", a, s) for a in algos for s in seeds]
    return plan.prepare(specs, protocol, "tiny")


def _finals(records):
    return {(r["variant"], r["seed"]): scored(r) for r in records}


def test_a_sweep_through_ray_equals_the_local_pool(store, local_ray):
    runs = _runs(algos=("bcq", "behavior"))
    local = sweep.run_sweep(runs, store["results"] / "local", workers=2, executor="local", **QUIET)
    via_ray = sweep.run_sweep(runs, store["results"] / "ray", workers=2, executor="ray", **QUIET)
    assert not via_ray.failures and len(via_ray.records) == 4
    assert _finals(via_ray.records) == _finals(local.records)
    again = sweep.run_sweep(runs, store["results"] / "ray", workers=2, executor="ray", **QUIET)
    assert again.skipped == 4  # the same store: finished runs are skipped, whoever ran them


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(store, local_ray):
    slow = {**TINY_PROTOCOL, "updates": 150, "eval_every": 150, "checkpoint_every": 10}
    text = protocol.protocol_text("tiny", slow, "slower test protocol").replace("batch_size = 1024", "batch_size = 32")
    (protocol.BASELINES_DIR / "tiny-slow.toml").write_text(text)
    runs = _runs("tiny-slow", seeds=(0, 1))
    reference = {(r.spec.variant, r.spec.seed): execute.execute(r, store["results"] / "reference") for r in runs}

    results = store["results"] / "killed"
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=sweep.run_sweep(runs, results, workers=2, executor="ray", **QUIET)))
    thread.start()
    killed = None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline and thread.is_alive():
        for ckpt in results.glob("tiny-p2/hopper/bcq/seed*.ckpt"):
            marker = json.loads(ckpt.with_suffix(".ckpt.json").read_text())
            os.kill(marker["pid"], signal.SIGKILL)  # the Ray worker process running this run
            killed = ckpt
            break
        time.sleep(0.02)
    thread.join(timeout=300)
    assert killed is not None, "no run reached a checkpoint to kill"
    result = outcome["result"]
    assert not result.failures and len(result.records) == 2
    assert sorted(p.name for p in results.glob("tiny-p2/hopper/bcq/*")) == ["seed0.json", "seed1.json"]
    for record in result.records:
        ref = reference[(record["variant"], record["seed"])]
        assert scored(record) == scored(ref)  # resumed, nothing counted twice


def test_make_data_through_ray_gives_the_same_datasets(store, local_ray, tmp_path, monkeypatch):
    from mabcq_bench.runs.ray import make_data_ray

    recipe = load_recipe("tiny").for_task("hopper")
    ids = [recipe.dataset_id(i) for i in range(3)] + [recipe.joint_dataset_id]  # the joint dataset: its own Ray task
    expected = [minari.load_dataset(i).storage.metadata["checksum"] for i in ids]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("MABCQ_BENCH_HOME", str(tmp_path / "home"))
    statuses = make_data_ray([recipe], log=lambda _: None)
    assert [s.checksum for s in statuses] == expected and all(s.created for s in statuses)
