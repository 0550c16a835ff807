"""Sweeps and data generation on a Ray cluster (``--executor ray``). Optional: ``pip install "mabcq-bench[ray]"``.

Every independent unit is one Ray task with its resource request: one (task, algorithm, seed)
run (``threads`` CPUs, and a GPU for ``--device cuda``), one expert (its ``torch_threads``
CPUs), one agent's dataset (1 CPU). Results land in the same store as local runs.

**Files, not the object store.** Workers read the datasets from ``MINARI_DATASETS_PATH`` and
write checkpoints and records into the results folder, so both must be on a filesystem every
node sees (NFS, a cluster's shared home). That is what makes a worker's death cheap: Ray
retries the task (``max_retries``), possibly on another node, and it resumes from the run's last
checkpoint in the shared folder; shipping datasets through the object store would still leave
checkpoints needing shared storage, and would copy every task's data to every node. The driver
passes its ``MINARI_DATASETS_PATH`` and ``MABCQ_BENCH_HOME`` to every task.

A retry never counts a run twice: records are written atomically once a run ends, and a retried
run whose record exists returns it without training again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

from mabcq_bench.errors import UserError

#: How often Ray reruns a task whose worker process or node died.
MAX_RETRIES = 3
_ENV = ("MINARI_DATASETS_PATH", "MABCQ_BENCH_HOME")


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError('--executor ray needs Ray: pip install "mabcq-bench[ray]"') from None
    return ray


def _connect(address: str | None, workers: int | None):
    """Connect to the cluster at ``address``, or start a local Ray with ``workers`` CPUs.

    Returns whether this call started Ray (and so should shut it down).
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {str(exc).splitlines()[0]}") from None
    return True


def _environment() -> dict[str, str]:
    return {k: str(Path(os.environ[k]).resolve()) for k in _ENV if k in os.environ}


def _run_task(unit, results: str, env: dict[str, str]):
    os.environ.update(env)
    from mabcq_bench.runs.execute import run_unit

    return run_unit(unit, Path(results))


def ray_pool(
    pending: Sequence, results: Path, workers: int, on_progress: Callable[[int, bool], None], address: str | None = None
) -> Iterator[tuple[str, dict | None, str | None]]:
    """Run every pending unit (one run, or seeds that stack: :func:`~mabcq_bench.runs.plan.work_units`)
    as a Ray task; yields (key, record, error) per run as the units finish."""
    ray = _ray()
    started = _connect(address, workers)
    remote = ray.remote(_run_task)
    env = _environment()
    refs = {}
    for unit in pending:
        gpus = 1 if unit[0].device.startswith("cuda") else 0
        ref = remote.options(num_cpus=unit[0].protocol["threads"], num_gpus=gpus, max_retries=MAX_RETRIES).remote(unit, str(Path(results).resolve()), env)
        refs[ref] = unit
    try:
        while refs:
            (ref,), _ = ray.wait(list(refs), num_returns=1)
            unit = refs.pop(ref)
            try:
                outcomes = ray.get(ref)
            except ray.exceptions.RayError as exc:  # retries used up, or the task could not run
                line = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                outcomes = [(run.spec.key, None, line) for run in unit]
            on_progress(sum(run.protocol["updates"] for run in unit), False)
            yield from outcomes
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def _expert_task(recipe, retrain: bool, env: dict[str, str]) -> None:
    os.environ.update(env)
    from mabcq_bench.data.experts import get_expert

    get_expert(recipe, retrain=retrain, progress=False, log=lambda _: None)


def _dataset_task(recipe, agent: int, retrain: bool, env: dict[str, str]):
    os.environ.update(env)
    from mabcq_bench.data.datasets import make_agent_dataset

    return make_agent_dataset(recipe, agent, retrain=retrain, progress=False, log=lambda _: None)


def _joint_task(recipe, retrain: bool, env: dict[str, str]):
    os.environ.update(env)
    from mabcq_bench.data.datasets import make_joint_dataset

    return make_joint_dataset(recipe, retrain=retrain, progress=False, log=lambda _: None)


def make_data_ray(
    recipes: Sequence, address: str | None = None, workers: int | None = None, retrain: bool = False, log: Callable[[str], None] = print, joint: bool = True
) -> list:
    """``make-data`` on Ray: the experts in parallel (shipped ones are only checked), then
    every agent's dataset in parallel, and with ``joint`` each task's joint-action dataset beside
    them (a task of its own, which rolls the agents' episodes out again from the same seeds)."""
    from mabcq_bench.data.datasets import datasets_root
    from mabcq_bench.data.tasks import get_task
    from mabcq_bench.util import ensure_writable

    ray = _ray()
    ensure_writable(datasets_root(), "Minari dataset folder (MINARI_DATASETS_PATH)")
    started = _connect(address, workers)
    env = _environment()
    try:
        expert = ray.remote(_expert_task)
        dataset = ray.remote(_dataset_task)
        log(f"finding (or training) {len(recipes)} expert(s) as Ray tasks")
        ray.get([expert.options(num_cpus=r.expert.torch_threads, max_retries=MAX_RETRIES).remote(r, retrain, env) for r in recipes])
        jobs = [(r, agent) for r in recipes for agent in range(get_task(r.task).n_agents)]
        log(f"writing {len(jobs)} agent dataset(s) as Ray tasks")
        refs = [dataset.options(num_cpus=1, max_retries=MAX_RETRIES).remote(r, agent, retrain, env) for r, agent in jobs]
        if joint:
            log(f"writing {len(recipes)} joint-action dataset(s) as Ray tasks")
            refs += [ray.remote(_joint_task).options(num_cpus=1, max_retries=MAX_RETRIES).remote(r, retrain, env) for r in recipes]
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"a make-data task failed on Ray: {type(cause).__name__}: {str(cause).splitlines()[0]}") from None
    finally:
        if started:
            ray.shutdown()
