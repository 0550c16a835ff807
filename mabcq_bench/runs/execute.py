"""Executing one run: train every agent on its own dataset, evaluate, write the record.

For each (task, algorithm, seed) a run loads every agent's Minari dataset, trains each agent on
its own (:func:`mabcq_bench.runs.learn.train_agents`; in the centralized setting the task's one
agent owns every joint and trains on the joint-action dataset), evaluates the joint decentralized policy
every ``eval_every`` updates on fixed evaluation seeds (the learning curve), evaluates it on
``final_eval_episodes`` episodes of their own seeds (the run's score: after the last update in
protocol 2, in equal shares at the last ``final_checkpoints`` evaluation points in protocol 3),
and writes one record. Beside the score the record holds ``window``: the mean of the last ``score_window``
learning-curve evaluations, which says whether the score is a lucky last point.

A record is written atomically once the run has finished, so a crashed run never leaves one that
looks finished. While a run trains, its state is checkpointed next to where the record will be
(``seed<k>.ckpt``); an interrupted run resumes from it. Every record carries a fingerprint of its
configuration (algorithm config, protocol, dataset checksums): a results folder holding a run of
another configuration under the same name is an error, never silently mixed or overwritten.

:func:`run_unit` is what every executor calls (a process pool here, Ray tasks on a cluster), with one
run or several seeds of one (task, algorithm) that train together (:func:`~mabcq_bench.runs.plan.work_units`).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from mabcq_bench.errors import UserError
from mabcq_bench.runs.plan import PreparedRun, existing_record
from mabcq_bench.util import exclusive_lock, versions, write_json

#: Schema 2 (protocol version 2) adds ``final.episodes`` and ``window``; ``final`` is then the
#: separate final evaluation, not the last learning-curve point.
RECORD_SCHEMA = 2

#: What an executor reports for each run: (run key, record or None, one-line error or None).
Outcome = tuple[str, "dict | None", "str | None"]


def normalized_score(returns: ArrayLike, ref_min: float, ref_max: float) -> float | np.ndarray:
    """Normalize raw episode returns: 0 = the random policy, 100 = the expert.

    ``100 · (R − ref_min) / (ref_max − ref_min)``, the convention of D4RL and Minari (times 100).

    Args:
        returns: one return or an array of returns (any shape), in the task's reward units.
        ref_min: mean return of the random policy (the dataset's ``ref_min_score``).
        ref_max: mean return of the expert (the dataset's ``ref_max_score``).

    Returns:
        A float for a scalar input, else an array of the input's shape (percent of the expert).

    Raises:
        UserError: ``ref_max == ref_min`` (the scale is undefined) or a reference is not finite.
    """
    if not (np.isfinite(ref_min) and np.isfinite(ref_max)):
        raise UserError(f"reference scores must be finite numbers, got ref_min={ref_min}, ref_max={ref_max}")
    if ref_max == ref_min:
        raise UserError(f"cannot normalize: ref_max_score equals ref_min_score ({ref_min}); the dataset's reference scores are broken")
    scores = 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)
    return float(scores) if scores.ndim == 0 else scores


def execute(run: PreparedRun, results: Path, progress: Callable[[int, bool], None] | None = None) -> dict:
    """Train and evaluate one run (resuming from its checkpoint) and write its record.

    A run is locked while it trains (``seed<k>.lock``, released by the OS if the process dies):
    a second process given the same run, such as two sweeps over one store, fails it with one
    line instead of training it twice.
    """
    (outcome,) = execute_group([run], results, progress)
    if isinstance(outcome, UserError):
        raise outcome
    return outcome


def execute_group(runs: Sequence[PreparedRun], results: Path, progress: Callable[[int, bool], None] | None = None) -> list[dict | UserError]:
    """:func:`execute` for runs that differ only in their seed (a unit of
    :func:`~mabcq_bench.runs.plan.work_units`), trained together
    (:func:`~mabcq_bench.runs.learn.train_seeds`: one stack of all their agents where they stack
    seeds). Per run, in order: its record, or the one-line error that kept it from training (its
    lock held by another process, a checkpoint of another configuration), which does not stop
    the others. Each run keeps its own lock, checkpoint and record."""
    outcomes: dict[str, dict | UserError] = {}
    with ExitStack() as held:
        todo = []
        for run in runs:
            try:
                done = existing_record(run, results)  # a retry of a run whose worker died after writing its record
                if done is None:
                    done = _claim(run, results, held)
            except UserError as exc:
                outcomes[run.spec.key] = exc
                continue
            if done is not None:
                outcomes[run.spec.key] = done
            else:
                todo.append(run)
        if todo:
            outcomes.update(zip((r.spec.key for r in todo), _train_and_record(todo, results, progress)))
    return [outcomes[run.spec.key] for run in runs]


def _claim(run: PreparedRun, results: Path, held: ExitStack) -> dict | None:
    """Lock ``run`` for this process (held until ``held`` closes) and check its checkpoint;
    its record if another process finished it meanwhile, else None (it is this process's to train).

    Raises:
        UserError: the lock is held by a live process, or the checkpoint is of another configuration.
    """
    lock = run.spec.lock_path(results)
    held.enter_context(exclusive_lock(lock, f"run {run.spec.tier}/{run.spec.task}/{run.spec.variant}/seed{run.spec.seed}"))
    held.callback(lock.unlink, missing_ok=True)  # a failed run leaves its checkpoint (a rerun resumes it), not its lock
    ckpt = run.spec.checkpoint_path(results)
    for debris in ckpt.parent.glob(f".{ckpt.name}*"):  # temp files of a writer that was killed
        debris.unlink(missing_ok=True)
    done = existing_record(run, results)  # finished by another process while we waited to start
    if done is None and ckpt.exists():
        marker = ckpt.with_suffix(".ckpt.json")
        saved = json.loads(marker.read_text()) if marker.exists() else {}
        if saved.get("config_fingerprint") != run.fingerprint:
            raise UserError(f"checkpoint {ckpt} belongs to another configuration; use another --results folder")
    return done


def _progress_reporter(progress: Callable[[int, bool], None] | None, updates: int) -> Callable[[int, object], None]:
    """``train_agents``' ``on_update`` that reports progress every 25 updates and at the end. A run
    resumed from a checkpoint first reports the checkpoint's updates once, flagged ``resumed``
    (made before, so they are not new work for an ETA)."""
    last: list[int | None] = [None]  # updates reported so far; None until the first update

    def on_update(done: int, _metrics) -> None:
        if progress is None:
            return
        if last[0] is None:
            last[0] = done - 1
            if last[0]:
                progress(last[0], True)
        if done - last[0] >= 25 or done == updates:
            progress(done - last[0], False)
            last[0] = done

    return on_update


def _train_and_record(runs: Sequence[PreparedRun], results: Path, progress: Callable[[int, bool], None] | None) -> list[dict]:
    from mabcq_bench.runs.learn import train_seeds
    from mabcq_bench.data.tasks import get_task

    first = runs[0]
    spec, proto = first.spec, first.protocol
    task = get_task(spec.task).in_setting(spec.setting)  # centralized: one agent owning every joint
    started = time.time()
    for run in runs:  # the marker names the process working on the run (for a person, or a test, looking in)
        marker = run.spec.checkpoint_path(results).with_suffix(".ckpt.json")
        write_json(marker, {"config_fingerprint": run.fingerprint, "pid": os.getpid(), "host": os.uname().nodename})
    datasets = [_agent_data(dataset_id, checksum) for dataset_id, checksum in first.datasets]
    trained = train_seeds(
        task,
        datasets,
        spec.algo,
        updates=proto["updates"],
        seeds=[run.spec.seed for run in runs],
        eval_every=proto["eval_every"],
        eval_episodes=proto["eval_episodes"],
        final_eval_episodes=proto["final_eval_episodes"],
        final_checkpoints=proto.get("final_checkpoints", 1),
        diag_states=proto["diag_states"],
        checkpoints=[run.spec.checkpoint_path(results) for run in runs],
        checkpoint_every=proto["checkpoint_every"],
        threads=proto["threads"],
        device=first.device,
        overrides=dict(first.config),
        on_update=[_progress_reporter(progress, proto["updates"]) for _ in runs],
        stack_agents=first.stack_agents,
        stack_seeds=first.stack_seeds,
        cuda_graph=first.cuda_graph,
    )
    out = []
    for run, result in zip(runs, trained):
        record = _record(run, result, time.time() - started)
        write_json(run.spec.record_path(results), record)
        ckpt = run.spec.checkpoint_path(results)
        ckpt.unlink(missing_ok=True)
        ckpt.with_suffix(".ckpt.json").unlink(missing_ok=True)
        out.append(record)
    return out


def _record(run: PreparedRun, result, wall_s: float) -> dict:
    """The record of a finished run (``wall_s``: this call's seconds, loading to scoring)."""
    spec, proto = run.spec, run.protocol

    def score(returns) -> float:
        return float(normalized_score(float(np.mean(returns)), run.ref_min, run.ref_max))

    final = result.final
    assert final is not None  # the protocol always asks for one (final_eval_episodes >= 1)
    curve = [
        {
            "updates": e.update,
            "return_mean": e.mean_return,
            "normalized_score": score(e.returns),
            "coordination_gap": e.coordination_gap,
            "returns": e.returns,  # per episode, on the same evaluation seeds at every point
            "wall_s": round(e.wall_s, 2),
            **_cpu(e.cpu_s),  # the process's CPU time in it: its wall time less pauses and shared cores
        }
        for e in result.evaluations
    ]
    last = curve[-int(proto["score_window"]) :]
    return {
        "schema": RECORD_SCHEMA,
        "status": "finished",
        "tier": spec.tier,
        "task": spec.task,
        "setting": spec.setting,  # decentralized (the benchmark) or centralized (the reference; filed on a board of its own)
        "algo": spec.algo,
        "variant": spec.variant,
        "overrides": {k: v for k, v in spec.overrides},
        "epsilon": run.epsilon,
        "seed": spec.seed,
        "config_fingerprint": run.fingerprint,
        "config": run.config,
        "protocol": proto,
        # which budget of the protocol file it ran, and whether the study saw the learner plateau there
        "budget": {"updates": proto["updates"], "from": run.budget, "plateaued": run.plateaued},
        "versions": versions(),
        "datasets": [{"id": i, "checksum": c} for i, c in run.datasets],
        "ref_min_score": run.ref_min,
        "ref_max_score": run.ref_max,
        "final": {
            "episodes": len(final.returns),
            "returns": final.returns,
            "return_mean": final.mean_return,
            "normalized_score": score(final.returns),
            "coordination_gap": final.coordination_gap,
            "wall_s": round(final.wall_s, 2),
            **_cpu(final.cpu_s),
            **({"checkpoints": final.checkpoints} if final.checkpoints else {}),  # protocol 3: the update of each share of the returns
        },
        "window": {
            "evaluations": len(last),
            "from_update": last[0]["updates"],
            "normalized_score": float(np.mean([c["normalized_score"] for c in last])),
        },
        "curve": curve,
        "metrics": result.metrics,
        "updates": result.updates,
        # how it computed, none of it part of the fingerprint (a device other than the CPU is, in it)
        "device": run.device,
        "stacked_agents": result.stacked,  # one batched update of all agents
        "stacked_seeds": result.stacked_seeds,  # and of this many seeds' agents (1: the run alone)
        "cuda_graph": result.cuda_graph,  # updates replayed from CUDA graphs
        "wall_s": round(wall_s, 1),  # this call: loading, training, scoring (of the whole group, where seeds stacked)
        # training over every call of this run (stacked seeds: its evaluations and an even share of the updates it made with the others)
        "train_wall_s": round(result.total_wall_s, 1),
        # its CPU time; left out when the run resumed a checkpoint that did not keep it
        **({"train_cpu_s": round(result.total_cpu_s, 1)} if result.total_cpu_s is not None else {}),
    }


def _cpu(seconds: float | None) -> dict[str, float]:
    """``{"cpu_s": seconds}`` rounded, or nothing where the time is unknown (a share done before a
    resume from a checkpoint that did not keep CPU times)."""
    return {} if seconds is None else {"cpu_s": round(seconds, 2)}


_DATA_CACHE: dict[tuple[str, str], Any] = {}


def _agent_data(dataset_id: str, checksum: str):
    """Agent data, cached per worker process (a worker runs many seeds of one task)."""
    from mabcq_bench.data.datasets import load_agent_data

    key = (dataset_id, checksum)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_agent_data(dataset_id)
    return _DATA_CACHE[key]


def run_unit(runs: Sequence[PreparedRun], results: Path, progress: Callable[[int, bool], None] | None = None) -> list[Outcome]:
    """:func:`execute_group`, reporting instead of raising: an :data:`Outcome` per run. What
    fails the group's training fails each of its runs, with the same line."""
    try:
        outcomes = execute_group(runs, Path(results), progress=progress)
    except UserError as exc:
        return [(run.spec.key, None, str(exc)) for run in runs]
    except Exception as exc:  # a crash: the runs have no record and will be retried on rerun
        return [(run.spec.key, None, f"{type(exc).__name__}: {exc}".splitlines()[0]) for run in runs]
    return [(run.spec.key, None, str(o)) if isinstance(o, UserError) else (run.spec.key, o, None) for run, o in zip(runs, outcomes)]
