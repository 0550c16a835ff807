"""What a ``--device cuda`` run costs, measured on a lent GPU (``tools/cuda-check.sh`` runs this).

``run``: a short run of :func:`~mabcq_bench.runs.learn.train_agents` on cuda for hopper on
made-up data with real MuJoCo evaluations, its agents stacked, with updates replayed from a CUDA
graph (what ``run --device cuda`` does) and eager: wall time, Q̂ and scores, printed as lines of
JSON; then ``seeds``: 5 seeds of the same run trained as one graphed stack
(:func:`~mabcq_bench.runs.learn.train_seeds`, ``run --stack-seeds``), its wall time beside 5 times
the lone graphed run's. The update alone is timed by ``mabcq-bench bench --device cuda``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

from mabcq_bench.data.buffer import AgentData
from mabcq_bench.data.tasks import get_task
from mabcq_bench.runs.learn import train_agents, train_seeds

DEV = torch.device(os.environ.get("CHECK_DEVICE", "cuda"))  # cpu: a dry run of the script here


def emit(kind: str, **fields) -> None:
    print(json.dumps({"kind": kind, **fields}), flush=True)


def made_up(agent: int, task, n: int = 50_000) -> AgentData:
    rng = np.random.default_rng(agent)
    f32 = np.float32
    s = rng.normal(size=(n, task.state_dim)).astype(f32)
    return AgentData(s, rng.uniform(-1, 1, size=(n, task.action_dims[agent])).astype(f32), rng.normal(1.0, 0.5, size=n).astype(f32), rng.normal(size=(n, task.state_dim)).astype(f32), (rng.random(n) < 0.01).astype(f32))


def runs(updates: int) -> None:
    task = get_task("hopper")
    data = [made_up(i, task) for i in range(task.n_agents)]
    schedule = {"updates": updates, "eval_every": updates // 2, "eval_episodes": 10, "final_eval_episodes": 50, "diag_states": 1000, "device": str(DEV)}
    lone = {}
    for stack, graph in ((True, True), (True, False)):
        t = time.perf_counter()
        result = train_agents(task, data, "mabcq", seed=0, stack_agents=stack, cuda_graph=graph, **schedule)
        wall = time.perf_counter() - t
        emit(
            "run", task="hopper", algo="mabcq", stacked=result.stacked, cuda_graph=result.cuda_graph, updates=updates, wall_s=round(wall, 1),
            curve=[round(e.mean_return, 3) for e in result.evaluations], final=round(result.final.mean_return, 3),
            q_mean=round(result.metrics[-1]["values/q_mean"], 4), train_wall_s=round(result.wall_s, 1),
        )  # fmt: skip
        lone[graph] = (wall, result)
    t = time.perf_counter()
    seeds = train_seeds(task, data, "mabcq", seeds=[0, 1, 2, 3, 4], stack_seeds=True, cuda_graph=True, **schedule)
    wall = time.perf_counter() - t
    alone_wall, alone = lone[True]
    emit(
        "seeds", task="hopper", algo="mabcq", seeds=len(seeds), stacked_seeds=seeds[0].stacked_seeds, updates=updates, wall_s=round(wall, 1),
        five_lone_wall_s=round(5 * alone_wall, 1), seed0_q_mean=round(seeds[0].metrics[-1]["values/q_mean"], 4),
        lone_q_mean=round(alone.metrics[-1]["values/q_mean"], 4), finals=[round(r.final.mean_return, 3) for r in seeds],
    )  # fmt: skip


if __name__ == "__main__":
    gpu = torch.cuda.get_device_name() if DEV.type == "cuda" else None
    emit("env", torch=torch.__version__, gpu=gpu, tf32=torch.backends.cuda.matmul.allow_tf32)
    runs(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
