"""Decentralized offline training of all agents of a task, with joint evaluation.

Every agent i gets its own learner, built from a registry name, and trains on minibatches drawn
from its own dataset B_i with its own seeded generator. No parameters, actions or critics are
shared: the agents meet only at evaluation, where their policies act together in the real task
(:func:`mabcq_bench.data.rollout.decentralized`).

The centralized reference is this same trainer on a one-agent view of the task
(:meth:`mabcq_bench.data.tasks.Task.centralized`): its single learner's action is the whole joint
action and its dataset the joint-action dataset.

With ``stack_agents`` (the default on a GPU), algorithms that support it (``AlgoSpec.stacks``:
the mabcq family) update all agents as one batched computation
(:meth:`~mabcq_bench.algos.common.learner.TorchLearner.stack`): the same per-agent maths, data, optimizer
states and random streams, each step one call for all the agents. The agents' learners stay
what is evaluated and checkpointed (the stack writes its values back into them first), so a
checkpoint does not say how it was trained and resumes either way.

:func:`train_seeds` trains several seeds of one task and algorithm together, in lockstep; with
``stack_seeds`` (the default on a GPU) every agent of every seed is a group of one stack, so one
update step of all of them is one batched computation. Each seed keeps its own learners, data
streams, evaluations and checkpoint (:mod:`mabcq_bench.runs.seed_run`).

Runs are resumable: with a checkpoint path, the whole training state (networks, optimizers, the
learners' torch generators, the samplers' numpy generators, the logs so far) is written atomically
every ``checkpoint_every`` updates, and a later call with the same arguments continues from it.
An interrupted and resumed run ends with the same parameters as an uninterrupted one (on the same
machine and thread count).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from mabcq_bench.algos import Batch, get_algo
from mabcq_bench.algos.common.process import torch_threads, tune_malloc
from mabcq_bench.data.buffer import AgentData
from mabcq_bench.errors import UserError
from mabcq_bench.data.tasks import Task
from mabcq_bench.runs.evaluation import Evaluation, TrainResult
from mabcq_bench.runs.seed_run import Schedule, SeedRun, coordination_gap

__all__ = ["Evaluation", "TrainResult", "coordination_gap", "train_agents", "train_seeds", "will_stack", "will_stack_seeds"]


def train_agents(
    task: Task,
    datasets: Sequence[AgentData],
    algo: str,
    *,
    updates: int,
    seed: int,
    eval_every: int = 0,
    eval_episodes: int = 10,
    final_eval_episodes: int = 0,
    final_checkpoints: int = 1,
    diag_states: int = 1000,
    checkpoint: Path | str | None = None,
    checkpoint_every: int = 0,
    device: str = "cpu",
    threads: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    on_update: Callable[[int, list[dict[str, float]]], None] | None = None,
    stack_agents: bool | None = None,
    cuda_graph: bool | None = None,
) -> TrainResult:
    """Train one learner per agent on its own dataset and evaluate them jointly.

    Args:
        task: the task (its ε goes into the config of algorithms that have one).
        datasets: agent i's dataset B_i at index i.
        algo: a name from :data:`mabcq_bench.algos.ALGOS`.
        updates: updates per agent (each agent takes one step per update, in turn).
        seed: seeds everything: learners, samplers, evaluation episodes, diagnostic states.
        eval_every: evaluate every this many updates (0: only at the end; the end always is).
        eval_episodes: episodes per learning-curve evaluation, run as one batch of environments.
        final_eval_episodes: episodes of a final evaluation after the last update (0: none), on
            evaluation seeds of its own, run as one batch of environments.
        final_checkpoints: spread the final evaluation's episodes evenly over this many last
            evaluation points (``updates``, ``updates − eval_every``, ...; protocol 3: 5), each
            share on its own of the final seeds, so one lucky or unlucky checkpoint cannot make
            the score; 1: all after the last update (protocol 2).
        diag_states: how many states of agent 0's dataset make the fixed set of the
            coordination diagnostic.
        checkpoint: file of the resumable training state; resumed from when it exists.
        checkpoint_every: write it every this many updates (0: only at the end).
        device: torch device of the learners and data.
        threads: torch CPU threads during the run (restored after); ``None``: torch's setting.
        overrides: config values over the algorithm's defaults (e.g. ``{"batch_size": 256}``).
        on_update: called after every update with the update count and each agent's metrics.
        stack_agents: update the agents as one batched computation where the algorithm supports
            it (``AlgoSpec.stacks``) and the agents' actions have one size; other algorithms
            update agent by agent whatever this says. ``None``: stack on a GPU, where an agent's
            update is bound by kernel launches, not on the CPU, where it gains little (0 to 11 %
            at Table 6's sizes, ``mabcq-bench bench``) and rounds the last bits differently
            from the lone update, so CPU runs stay the bits they always were.
        cuda_graph: on a CUDA device, replay each update (stacked or not) from a CUDA graph
            captured once, where the algorithm's update captures (``TorchLearner.captures``):
            on a GPU an eager update of these small networks is bound by kernel launches.
            ``None``: on a CUDA device. The same maths, in other rounding (Adam's step count
            lives on the device); off the GPU it changes nothing.

    Returns:
        the :class:`TrainResult`.
    """
    (result,) = train_seeds(
        task, datasets, algo, updates=updates, seeds=[seed], eval_every=eval_every, eval_episodes=eval_episodes,
        final_eval_episodes=final_eval_episodes, final_checkpoints=final_checkpoints, diag_states=diag_states,
        checkpoints=[checkpoint], checkpoint_every=checkpoint_every, device=device, threads=threads, overrides=overrides,
        on_update=[on_update], stack_agents=stack_agents, stack_seeds=False, cuda_graph=cuda_graph,
    )  # fmt: skip
    return result


def train_seeds(
    task: Task,
    datasets: Sequence[AgentData],
    algo: str,
    *,
    updates: int,
    seeds: Sequence[int],
    eval_every: int = 0,
    eval_episodes: int = 10,
    final_eval_episodes: int = 0,
    final_checkpoints: int = 1,
    diag_states: int = 1000,
    checkpoints: Sequence[Path | str | None] | None = None,
    checkpoint_every: int = 0,
    device: str = "cpu",
    threads: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    on_update: Sequence[Callable[[int, list[dict[str, float]]], None] | None] | None = None,
    stack_agents: bool | None = None,
    stack_seeds: bool | None = None,
    cuda_graph: bool | None = None,
) -> list[TrainResult]:
    """:func:`train_agents` for several seeds of one task and algorithm at once, in lockstep:
    one :class:`TrainResult` per seed, each run as :func:`train_agents` would run it alone (its
    own learners, samplers, evaluation seeds, checkpoint ``checkpoints[k]`` and ``on_update[k]``).

    With ``stack_seeds`` (see :func:`will_stack_seeds`; ``None``: on a GPU), every agent of every
    seed is one group of a single stacked learner, so each update step of all the seeds is one
    batched computation, which a CUDA graph then replays: on a GPU the small networks of one run
    leave the device mostly idle. Each seed's numbers are still its own (a group sees only its
    own batch, parameters, optimizer state and random streams), to float rounding. Checkpoints
    stay per seed; seeds resumed from checkpoints at different updates first bring the ones
    behind up to the others, then go on together. A seed's times in its result are its own
    evaluations and an even share of each update step it took part in.
    """
    _check_datasets(task, datasets)
    if updates < 1:
        raise UserError(f"updates must be at least 1, got {updates}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"seeds must be distinct and at least one, got {list(seeds)}")
    if final_checkpoints > 1 and (final_eval_episodes % final_checkpoints or updates <= (final_checkpoints - 1) * eval_every or not eval_every):
        raise UserError(
            f"{final_eval_episodes} final episodes over {final_checkpoints} checkpoints every {eval_every} updates of {updates}: "
            "the episodes must divide evenly and the checkpoints lie within the run"
        )
    checkpoints = list(checkpoints) if checkpoints is not None else [None] * len(seeds)
    callbacks = list(on_update) if on_update is not None else [None] * len(seeds)
    if len(checkpoints) != len(seeds) or len(callbacks) != len(seeds):
        raise ValueError("train_seeds: one checkpoint and one on_update per seed")
    schedule = Schedule(updates, eval_every, eval_episodes, final_eval_episodes, final_checkpoints, diag_states, checkpoint_every)
    tune_malloc()
    with torch_threads(threads):
        return _train(task, datasets, algo, schedule, seeds, checkpoints, callbacks, device, overrides, stack_agents, stack_seeds, cuda_graph)


def will_stack(task: Task, algo: str, device: str, stack_agents: bool | None = None) -> bool:
    """Whether a run of ``algo`` on ``task`` stacks its agents (see :func:`train_agents`)."""
    wanted = torch.device(device).type == "cuda" if stack_agents is None else stack_agents
    return bool(wanted) and get_algo(algo).stacks_on(task)


def will_stack_seeds(task: Task, algo: str, device: str, stack_seeds: bool | None = None, stack_agents: bool | None = None) -> bool:
    """Whether runs of ``algo`` on ``task`` that differ only in their seed train as one stack
    (:func:`train_seeds`): asked for (``None``: on a GPU), an algorithm that stacks, agents whose
    actions have one size (one agent included: the centralized setting), and agents not kept
    apart by ``stack_agents=False``."""
    wanted = torch.device(device).type == "cuda" if stack_seeds is None else stack_seeds
    return bool(wanted) and stack_agents is not False and get_algo(algo).stacks and len(set(task.action_dims)) == 1


def _train(
    task: Task,
    datasets: Sequence[AgentData],
    algo: str,
    schedule: Schedule,
    seeds: Sequence[int],
    checkpoints: Sequence[Path | str | None],
    callbacks: Sequence[Callable[[int, list[dict[str, float]]], None] | None],
    device: str,
    overrides: Mapping[str, Any] | None,
    stack_agents: bool | None,
    stack_seeds: bool | None,
    cuda_graph: bool | None,
) -> list[TrainResult]:
    clock = _Clock()
    spec = get_algo(algo)
    seeds_stacked = len(seeds) > 1 and will_stack_seeds(task, algo, device, stack_seeds, stack_agents)
    stacked = (seeds_stacked and task.n_agents > 1) or will_stack(task, algo, device, stack_agents)
    on_gpu = torch.device(device).type == "cuda"
    graphed = on_gpu and (cuda_graph is None or cuda_graph) and bool(getattr(spec.learner, "captures", False))
    config = spec.config(task, **dict(overrides or {}))
    batch_size = int(config.batch_size)
    data = [Batch.from_agent_data(d, device) for d in datasets]
    group = len(seeds) if seeds_stacked else 1
    runs: list[SeedRun] = []
    for seed, ckpt, cb in zip(seeds, checkpoints, callbacks):
        runs.append(SeedRun(task, spec, config, datasets, data, seed, schedule, ckpt, device, graphed, stacked, group, cb))
        runs[-1].charge(*clock.lap())  # its learners and its checkpoint's loading
    shared = clock.lap()  # the data put on the device, for all: an even share each
    for r in runs:
        r.charge(shared[0] / len(runs), shared[1] / len(runs))

    # Stacks start from the learners as built or loaded and write their values back into them
    # before they are evaluated or saved. The seeds that are behind (resumed from an older
    # checkpoint) step first, so the runs that step together are always at one update count.
    # Each run's time is its own evaluations and saves, and an even share of the steps it took part in.
    stacks: list[Any] = []
    members: list[SeedRun] = []
    while True:
        todo = [r for r in runs if r.done < schedule.updates]
        if not todo:
            break
        low = min(r.done for r in todo)
        active = [r for r in todo if r.done == low]
        if active != members:
            for s in stacks:
                s.unstack()
            if seeds_stacked:
                stacks = [spec.learner.stack([l for r in active for l in r.learners])]
            elif stacked:
                stacks = [spec.learner.stack(r.learners) for r in active]
            else:
                stacks = []
            members = active
        batches = [r.batches(batch_size) for r in active]
        if seeds_stacked:
            flat = stacks[0].train_stacked([b for run_batches in batches for b in run_batches])
            n = task.n_agents
            per_run = [flat[k * n : (k + 1) * n] for k in range(len(active))]
        elif stacked:
            per_run = [s.train_stacked(b) for s, b in zip(stacks, batches)]
        else:
            per_run = [[learner.train(batch) for learner, batch in zip(r.learners, b)] for r, b in zip(active, batches)]
        for r, m in zip(active, per_run):
            r.stepped(m)
        due = [r for r in active if any(schedule.due(r.done))]
        if due:
            for s in stacks:
                s.unstack()
        step = clock.lap()
        for r in active:
            r.charge(step[0] / len(active), step[1] / len(active))
        for r in due:
            r.checkpoint_work(clock)
    for r in runs:
        r.finish(clock)  # protocol 2's final evaluation after the last update
    return [r.result(algo, graphed) for r in runs]


class _Clock:
    """Wall and CPU seconds since the last :meth:`lap`."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def _check_datasets(task: Task, datasets: Sequence[AgentData]) -> None:
    if len(datasets) != task.n_agents:
        raise UserError(f"{task.name} has {task.n_agents} agents, got {len(datasets)} datasets")
    for i, d in enumerate(datasets):
        if d.size == 0:
            raise UserError(f"agent {i}'s dataset is empty")
        if d.observations.shape[1] != task.state_dim or d.next_observations.shape[1] != task.state_dim:
            raise UserError(f"agent {i}'s states have {d.observations.shape[1]} dimensions, {task.name} has {task.state_dim}")
        if d.actions.shape[1] != task.action_dims[i]:
            raise UserError(f"agent {i}'s actions have {d.actions.shape[1]} dimensions, {task.name} gives it {task.action_dims[i]}")
