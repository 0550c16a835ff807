"""Per-agent offline datasets written as standard Minari datasets: make, check, read.

Agent ``i``'s dataset ``mabcq/<task>/<tier>-agent<i>-v<N>`` holds the episodes of the four parts
of :mod:`mabcq_bench.data.mixture` with only agent i's slice of the joint action: the full state,
agent i's own action, the shared reward, the next state and the termination/truncation flags,
never another agent's action. Its metadata holds the expert's reference returns (measured on
seeds that did not choose its checkpoints: :func:`mabcq_bench.data.references.measure_references`),
the recipe and its fingerprint, the package versions, ``incomplete_episodes`` (the piece cut at
each part's end) and a checksum of the data alone; its description is the dataset card
(:mod:`mabcq_bench.data.card`).

The task's joint-action dataset ``mabcq/<task>/<tier>-joint-v<N>`` (the centralized reference's
data) holds every transition of the N agents' datasets once, with the joint action in place of
a_i and the same states, rewards, next states and flags, bit for bit: the early part once (it is
one SAC's experience, the same episodes in every agent's dataset), then each agent's other three
parts (each agent's are rollouts of their own). It is made in the same pass as the agents'
datasets, from the same joint-action episodes (:func:`make_data`); where an agent's dataset
exists already, its episodes are rolled out again from the same seeds, which gives the same bits.

Writing and reading the files is :mod:`mabcq_bench.data.store`'s (atomic writes).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mabcq_bench.data.buffer import AgentData
from mabcq_bench.data.experts import Expert, get_expert
from mabcq_bench.data.mixture import agent_episodes
from mabcq_bench.data.recipes import Recipe
from mabcq_bench.data.rollout import Episode
from mabcq_bench.data.store import (  # noqa: F401  (datasets_root, dataset_path, remake_instruction: used from here by callers)
    STAGING,
    _first_line,
    _quiet,
    _staging_prefix,
    dataset_path,
    datasets_root,
    read_metadata,
    remake_instruction,
    write_dataset,
    write_joint_dataset,
)
from mabcq_bench.data.tasks import get_task
from mabcq_bench.errors import UserError
from mabcq_bench.util import ensure_writable, exclusive_lock

@dataclass(frozen=True)
class DatasetStatus:
    dataset_id: str
    path: Path
    total_steps: int
    checksum: str
    created: bool  # made by this call (False: it existed and was reused)


def make_data(
    recipe: Recipe, retrain: bool = False, progress: bool = True, log: Callable[[str], None] = print, joint: bool = True
) -> list[DatasetStatus]:
    """Make (or reuse) every agent's dataset of ``recipe.task`` from its expert: the shipped one,
    or with ``retrain`` (or a recipe nothing ships for) one trained here; then, with ``joint``,
    the task's joint-action dataset from the same episodes.

    Existing datasets with the same recipe are kept as they are; a dataset under one of the ids
    that is corrupt or was made by another recipe stops the run before anything is written.

    Returns:
        one status per agent's dataset, in agent order, then the joint dataset's (with ``joint``).

    Raises:
        UserError: the dataset folder is not writable; a dataset is corrupt or from another recipe.
    """
    task = get_task(recipe.task)
    ensure_writable(datasets_root(), "Minari dataset folder (MINARI_DATASETS_PATH)")
    ids = [recipe.dataset_id(i) for i in range(task.n_agents)] + ([recipe.joint_dataset_id] if joint else [])
    existing = [verify_dataset(dataset_id, recipe) for dataset_id in ids]
    if all(existing):
        log(f"[{task.name}] {recipe.tier} datasets are up to date")
        return [_status(info, False) for info in existing]
    expert = get_expert(recipe, retrain=retrain, progress=progress, log=log)
    # the joint-action episodes of every agent's rollouts, kept for the joint dataset (one pass)
    rollouts: dict[int, dict[str, list[Episode]]] | None = {} if joint and existing[-1] is None else None
    statuses = [make_agent_dataset(recipe, agent, expert, progress=progress, log=log, rollouts=rollouts) for agent in range(task.n_agents)]
    if joint:
        statuses.append(make_joint_dataset(recipe, expert, progress=progress, log=log, rollouts=rollouts))
    return statuses


def make_agent_dataset(
    recipe: Recipe,
    agent: int,
    expert: Expert | None = None,
    retrain: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    rollouts: dict[int, dict[str, list[Episode]]] | None = None,
) -> DatasetStatus:
    """Make (or reuse) one agent's dataset: the unit of work a cluster runs in parallel.

    Without ``expert``, the recipe's expert is found (or trained: cached and locked) here. When
    the dataset is made here and ``rollouts`` is given, its joint-action episodes are kept in
    ``rollouts[agent]`` (for :func:`make_joint_dataset`).
    """
    task = get_task(recipe.task)
    dataset_id = recipe.dataset_id(agent)
    root = datasets_root()
    name = _staging_prefix(recipe, agent)
    with exclusive_lock(root / STAGING / f"{name}.lock", f"dataset {dataset_id}"):
        for stale in (root / STAGING).glob(f"{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a run killed mid-write (even after the rename)
        info = verify_dataset(dataset_id, recipe)  # another process may have made it meanwhile
        if info is not None:
            return _status(info, False)
        expert = expert or get_expert(recipe, retrain=retrain, progress=progress, log=log)
        started = time.perf_counter()
        episodes = agent_episodes(task, recipe, expert, agent, progress=progress)
        info = write_dataset(task, recipe, expert, agent, episodes)
        if rollouts is not None:
            rollouts[agent] = episodes
        log(f"[{task.name}] agent{agent}: dataset written in {time.perf_counter() - started:.1f}s")
    return _status(info, True)


def make_joint_dataset(
    recipe: Recipe,
    expert: Expert | None = None,
    retrain: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    rollouts: dict[int, dict[str, list[Episode]]] | None = None,
) -> DatasetStatus:
    """Make (or reuse) the task's joint-action dataset.

    Its episodes are the agents' joint-action episodes: ``rollouts[agent]`` where given (kept by
    :func:`make_agent_dataset` in the same pass), else rolled out again from the recipe's seeds,
    which gives the same bits (the rollouts are deterministic: :mod:`mabcq_bench.data.exact`).
    """
    task = get_task(recipe.task)
    dataset_id = recipe.joint_dataset_id
    root = datasets_root()
    name = _staging_prefix(recipe, None)
    with exclusive_lock(root / STAGING / f"{name}.lock", f"dataset {dataset_id}"):
        for stale in (root / STAGING).glob(f"{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        info = verify_dataset(dataset_id, recipe)
        if info is not None:
            return _status(info, False)
        expert = expert or get_expert(recipe, retrain=retrain, progress=progress, log=log)
        started = time.perf_counter()
        rollouts = dict(rollouts or {})
        for agent in range(task.n_agents):
            if agent not in rollouts:  # its dataset existed: the same seeds give the same episodes
                rollouts[agent] = agent_episodes(task, recipe, expert, agent, progress=progress)
        info = write_joint_dataset(task, recipe, expert, [rollouts[a] for a in range(task.n_agents)])
        log(f"[{task.name}] joint: dataset written in {time.perf_counter() - started:.1f}s")
    return _status(info, True)


def _status(info: dict, created: bool) -> DatasetStatus:
    return DatasetStatus(info["dataset_id"], dataset_path(info["dataset_id"]), info["total_steps"], info["checksum"], created)


def verify_dataset(dataset_id: str, recipe: Recipe) -> dict | None:
    """Check the dataset under ``dataset_id``: ``None`` if absent, its metadata if it is complete
    and was made by ``recipe``.

    Raises:
        UserError: it exists but is unreadable, incomplete, or made by another recipe.
    """
    path = dataset_path(dataset_id)
    if not path.exists():
        return None
    md = read_metadata(dataset_id)
    fingerprint = md.get("recipe_fingerprint")
    if fingerprint != recipe.fingerprint:
        raise UserError(
            f"dataset {dataset_id} at {path} was made by a different recipe "
            f"(fingerprint {fingerprint} here, {recipe.fingerprint} asked for); delete it or use another tier name"
        )
    size = recipe.joint_transitions(get_task(recipe.task).n_agents) if dataset_id == recipe.joint_dataset_id else recipe.transitions_per_agent
    if md.get("total_steps") != size or "checksum" not in md:
        raise UserError(f"dataset {dataset_id} is corrupt (incomplete); {remake_instruction(dataset_id)}")
    if md["computed_checksum"] != md["checksum"]:
        raise UserError(f"dataset {dataset_id} is corrupt (its data does not match its checksum); {remake_instruction(dataset_id)}")
    return md



def load_agent_data(dataset_id: str) -> AgentData:
    """Agent data (flat transitions) of one of our Minari datasets."""
    import minari

    try:
        with _quiet():
            ds = minari.load_dataset(dataset_id)
            incomplete = ds.storage.metadata.get("incomplete_episodes", [])
            return AgentData.from_episodes(ds.iterate_episodes(), incomplete)
    except FileNotFoundError:
        raise UserError(f"dataset {dataset_id} not found in {datasets_root()}; make it with `mabcq-bench make-data`") from None
    except Exception as exc:
        raise UserError(f"dataset {dataset_id} is corrupt ({type(exc).__name__}: {_first_line(exc)}); {remake_instruction(dataset_id)}") from None


