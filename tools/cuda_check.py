"""What ``--device cuda`` costs, measured on a lent GPU (``tools/cuda-check.sh`` runs this).

Three measurements, each printed as a line of JSON (the shell script collects them):

* ``graph``: one update of a learner, eager against the same update captured once in a CUDA
  graph and replayed, for a lone agent at Table 6's sizes and for each task's agents stacked.
  An experiment, not a code path of the project: Adam's bias corrections and the pretraining
  branch are frozen at their capture-time values, so replays time the update's kernels without
  its launch overhead but do not train correctly past the first replay.
* ``run``: a short run of :func:`~mabcq_bench.runs.learn.train_agents` on cuda for hopper on
  made-up data with real MuJoCo evaluations, stacked and agent by agent: wall time and the
  scores of the two (the same maths, so the same scores to rounding).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np
import torch

from mabcq_bench.algos import ALGOS, Batch
from mabcq_bench.algos.bench import ACTION_DIM, STATE_DIM, _random_batch
from mabcq_bench.data.buffer import AgentData
from mabcq_bench.data.tasks import TASKS, get_task
from mabcq_bench.runs.learn import train_agents

DEV = torch.device(os.environ.get("CHECK_DEVICE", "cuda"))  # cpu: a dry run of the script here


def sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def emit(kind: str, **fields) -> None:
    print(json.dumps({"kind": kind, **fields}), flush=True)


def timed_ms(step, repeats: int = 7, calls: int = 20) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        for _ in range(calls):
            step()
        sync()
        times.append((time.perf_counter() - t) / calls)
    return round(statistics.median(times) * 1e3, 3)


def graph_vs_eager(label: str, learner, batch: Batch) -> None:
    """Eager ``_update`` (no metric sync) against a captured replay of it."""
    for _ in range(5):
        learner._update(batch)
    eager = timed_ms(lambda: learner._update(batch))
    eager_sync = timed_ms(lambda: learner.train_stacked([Batch(*(t[g] for t in batch)) for g in range(batch.states.shape[0])]))
    try:
        graph = torch.cuda.CUDAGraph()
        for gen in {id(g): g for g in learner.group_generators("train")}.values():
            graph.register_generator_state(gen)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                learner._update(batch)
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(graph):
            learner._update(batch)
        for _ in range(3):
            graph.replay()
        replay = timed_ms(graph.replay)
        emit("graph", label=label, eager_ms=eager, eager_with_metrics_ms=eager_sync, replay_ms=replay, speedup=round(eager / replay, 2))
    except Exception as error:  # an experiment: report why it failed, go on
        emit("graph", label=label, eager_ms=eager, eager_with_metrics_ms=eager_sync, error=f"{type(error).__name__}: {error}"[:400])


def graphs() -> None:
    gen = torch.Generator(device=DEV).manual_seed(0)
    for name in ("bcq", "mabcq"):
        spec = ALGOS[name]
        learner = spec.learner(STATE_DIM, ACTION_DIM, spec.config(), seed=0, device=DEV)
        batch = Batch.stacked([_random_batch(STATE_DIM, ACTION_DIM, 1024, gen, DEV)])
        graph_vs_eager(f"{name} one agent, Table 6 sizes", learner, batch)
    for task in TASKS.values():
        spec = ALGOS["mabcq"]
        config = spec.config(task)
        members = [spec.learner(task.state_dim, dim, config, seed=i, device=DEV) for i, dim in enumerate(task.action_dims)]
        stack = spec.learner.stack(members)
        batch = Batch.stacked([_random_batch(task.state_dim, dim, config.batch_size, gen, DEV) for dim in task.action_dims])
        graph_vs_eager(f"mabcq {task.name}, {task.n_agents} agents stacked", stack, batch)


def made_up(agent: int, task, n: int = 50_000) -> AgentData:
    rng = np.random.default_rng(agent)
    f32 = np.float32
    s = rng.normal(size=(n, task.state_dim)).astype(f32)
    return AgentData(s, rng.uniform(-1, 1, size=(n, task.action_dims[agent])).astype(f32), rng.normal(1.0, 0.5, size=n).astype(f32), rng.normal(size=(n, task.state_dim)).astype(f32), (rng.random(n) < 0.01).astype(f32))


def runs(updates: int) -> None:
    task = get_task("hopper")
    data = [made_up(i, task) for i in range(task.n_agents)]
    for stack in (True, False):
        t = time.perf_counter()
        result = train_agents(task, data, "mabcq", updates=updates, seed=0, eval_every=updates // 2, eval_episodes=10, final_eval_episodes=50, diag_states=1000, device=str(DEV), stack_agents=stack)
        wall = time.perf_counter() - t
        emit(
            "run", task="hopper", algo="mabcq", stacked=result.stacked, updates=updates, wall_s=round(wall, 1),
            curve=[round(e.mean_return, 3) for e in result.evaluations], final=round(result.final.mean_return, 3),
            q_mean=round(result.metrics[-1]["values/q_mean"], 4), train_wall_s=round(result.wall_s, 1),
        )  # fmt: skip


if __name__ == "__main__":
    what = sys.argv[1:] or ["graphs", "runs"]
    gpu = torch.cuda.get_device_name() if DEV.type == "cuda" else None
    emit("env", torch=torch.__version__, gpu=gpu, tf32=torch.backends.cuda.matmul.allow_tf32)
    if "graphs" in what:
        graphs()
    if "runs" in what:
        runs(int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
