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

Runs are resumable: with a checkpoint path, the whole training state (networks, optimizers, the
learners' torch generators, the samplers' numpy generators, the logs so far) is written atomically
every ``checkpoint_every`` updates, and a later call with the same arguments continues from it.
An interrupted and resumed run ends with the same parameters as an uninterrupted one (on the same
machine and thread count).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from mabcq_bench.data import rollout
from mabcq_bench.algos import Batch, Learner, get_algo
from mabcq_bench.algos.common.configs import config_dict, plain
from mabcq_bench.algos.common.process import torch_threads, tune_malloc
from mabcq_bench.data.buffer import AgentData
from mabcq_bench.errors import UserError
from mabcq_bench.data.tasks import Task
from mabcq_bench.runs.evaluation import Evaluation, TrainResult
from mabcq_bench.util import atomic_path, derive_seed

__all__ = ["Evaluation", "TrainResult", "coordination_gap", "train_agents", "will_stack"]

CHECKPOINT_FORMAT = 1


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
    _check_datasets(task, datasets)
    if updates < 1:
        raise UserError(f"updates must be at least 1, got {updates}")
    if final_checkpoints > 1 and (final_eval_episodes % final_checkpoints or updates <= (final_checkpoints - 1) * eval_every or not eval_every):
        raise UserError(
            f"{final_eval_episodes} final episodes over {final_checkpoints} checkpoints every {eval_every} updates of {updates}: "
            "the episodes must divide evenly and the checkpoints lie within the run"
        )
    tune_malloc()
    with torch_threads(threads):
        return _train(
            task, datasets, algo, updates, seed, eval_every, eval_episodes, (final_eval_episodes, final_checkpoints), diag_states,
            checkpoint, checkpoint_every, device, overrides, on_update, stack_agents, cuda_graph,
        )  # fmt: skip


def will_stack(task: Task, algo: str, device: str, stack_agents: bool | None = None) -> bool:
    """Whether a run of ``algo`` on ``task`` stacks its agents (see :func:`train_agents`)."""
    wanted = torch.device(device).type == "cuda" if stack_agents is None else stack_agents
    return bool(wanted) and get_algo(algo).stacks_on(task)


def _train(
    task: Task,
    datasets: Sequence[AgentData],
    algo: str,
    updates: int,
    seed: int,
    eval_every: int,
    eval_episodes: int,
    final_eval: tuple[int, int],
    diag_states: int,
    checkpoint: Path | str | None,
    checkpoint_every: int,
    device: str,
    overrides: Mapping[str, Any] | None,
    on_update: Callable[[int, list[dict[str, float]]], None] | None,
    stack_agents: bool | None,
    cuda_graph: bool | None,
) -> TrainResult:
    started, cpu_started = time.perf_counter(), time.process_time()
    stacked = will_stack(task, algo, device, stack_agents)
    spec = get_algo(algo)
    on_gpu = torch.device(device).type == "cuda"
    graphed = on_gpu and (cuda_graph is None or cuda_graph) and bool(getattr(spec.learner, "captures", False))
    config = spec.config(task, **dict(overrides or {}))
    batch_size = int(config.batch_size)

    learners = [
        spec.learner(task.state_dim, task.action_dims[i], config, seed=derive_seed(seed, "learner", i), device=device)
        for i in range(task.n_agents)
    ]
    if graphed:
        for learner in learners:
            learner.cuda_graph = True
    samplers = [np.random.default_rng(derive_seed(seed, "sampler", i)) for i in range(task.n_agents)]
    data = [Batch.from_agent_data(d, device) for d in datasets]
    for learner, d, own in zip(learners, data, datasets):  # its own dataset only, as everything else it sees
        if hasattr(learner, "prepare"):  # optional for a user's learner (TorchLearner has it)
            learner.prepare(d, own.episode_returns)
    diag_rng = np.random.default_rng(derive_seed(seed, "diagnostic"))
    n0 = datasets[0].size
    diag = np.asarray(datasets[0].observations)[np.sort(diag_rng.choice(n0, size=min(diag_states, n0), replace=False))]
    eval_seed = derive_seed(seed, "evaluation")

    identity = {"task": task.name, "algo": algo, "seed": seed, "config": config_dict(config)}
    done = 0
    evaluations: list[Evaluation] = []
    final_eval_episodes, final_checkpoints = final_eval
    final_seed = derive_seed(seed, "final evaluation")
    # protocol 3: the final episodes in equal shares at the last evaluation points, share k on
    # the final seeds' k-th block (the same 50 seeds as protocol 2's, in other hands)
    share = final_eval_episodes // final_checkpoints
    final_at = [updates - k * eval_every for k in range(final_checkpoints)] if final_checkpoints > 1 else []
    finals: list[Evaluation] = []
    metrics_log: list[dict[str, float]] = []
    pending: dict[str, float] = {}
    pending_count = 0
    earlier_s = 0.0  # training time of interrupted calls, from the checkpoint
    earlier_cpu_s: float | None = 0.0  # their CPU time; None: a checkpoint from before it was kept, so it is unknown
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = _load(path)
        for key, value in identity.items():
            if plain(state[key]) != value:
                raise UserError(f"checkpoint {path} is for {key}={state[key]!r}, not {value!r}; delete it or use another path")
        if state["threads"] != torch.get_num_threads():
            warnings.warn(
                f"checkpoint {path} was written with {state['threads']} torch threads, now {torch.get_num_threads()}: "
                "the resumed run may differ in the last bits from an uninterrupted one",
                stacklevel=2,
            )
        if state.get("stacked", False) != stacked:
            warnings.warn(
                f"checkpoint {path} was written by a run that {'stacked' if state.get('stacked', False) else 'did not stack'} its agents, "
                f"this one {'does' if stacked else 'does not'}: the resumed run may differ in the last bits from an uninterrupted one",
                stacklevel=2,
            )
        done = int(state["updates"])
        if done > updates:
            raise UserError(f"checkpoint {path} already has {done} updates, more than the {updates} asked for")
        for learner, saved in zip(learners, state["learners"]):
            learner.load_state_dict(saved)
        for sampler, saved in zip(samplers, state["samplers"]):
            sampler.bit_generator.state = saved
        evaluations = [Evaluation(**e) for e in state["evaluations"]]
        finals = [Evaluation(**e) for e in state.get("finals", [])]
        metrics_log = list(state["metrics"])
        pending, pending_count = dict(state["pending"]), int(state["pending_count"])
        earlier_s = float(state.get("elapsed_s", 0.0))
        earlier_cpu_s = float(state["elapsed_cpu_s"]) if "elapsed_cpu_s" in state else None
    # The stack starts from the agents' learners as built or loaded, and writes its values back
    # into them before they are evaluated or saved.
    stack = spec.learner.stack(learners) if stacked else None

    def save() -> None:
        if path is None:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            **identity,
            "threads": torch.get_num_threads(),
            "stacked": stacked,
            "updates": done,
            "learners": [learner.state_dict() for learner in learners],
            "samplers": [sampler.bit_generator.state for sampler in samplers],
            "evaluations": [vars(e) for e in evaluations],
            "finals": [vars(e) for e in finals],
            "metrics": metrics_log,
            "pending": pending,
            "pending_count": pending_count,
            "elapsed_s": earlier_s + time.perf_counter() - started,
        }
        if earlier_cpu_s is not None:  # left out once unknown, so that a later resume still knows it is partial
            state["elapsed_cpu_s"] = earlier_cpu_s + time.process_time() - cpu_started
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    while done < updates:
        batches = []
        for sampler, d in zip(samplers, data):  # each agent's minibatch from its own dataset and sampler
            index = torch.from_numpy(sampler.integers(0, d.size, size=batch_size)).to(d.rewards.device)
            batches.append(d.take(index))
        if stack is not None:
            step_metrics = stack.train_stacked(batches)
        else:
            step_metrics = [learner.train(batch) for learner, batch in zip(learners, batches)]
        done += 1
        for m in step_metrics:
            for key, value in m.items():
                pending[key] = pending.get(key, 0.0) + value / len(step_metrics)
        pending_count += 1
        if on_update is not None:
            on_update(done, step_metrics)
        evaluate_now = done == updates or (eval_every and done % eval_every == 0)
        save_now = done == updates or (checkpoint_every and done % checkpoint_every == 0)
        final_now = done in final_at
        if stack is not None and (evaluate_now or save_now or final_now):
            stack.unstack()
        if final_now:
            k = final_at.index(done)
            finals.append(_evaluate(task, learners, share, final_seed + k * share, diag, done, derive_seed(seed, "final acting", k)))
        if evaluate_now:
            evaluations.append(_evaluate(task, learners, eval_episodes, eval_seed, diag, done, derive_seed(seed, "acting", done)))
            metrics_log.append({"update": float(done), **{k: v / pending_count for k, v in pending.items()}})
            pending, pending_count = {}, 0
        if save_now:
            save()

    final = None
    if final_at:  # one evaluation of the shares, last checkpoint's first (seed blocks 0, 1, ...)
        finals.sort(key=lambda e: -e.update)
        gaps = [e.coordination_gap for e in finals if e.coordination_gap is not None]
        cpu = [e.cpu_s for e in finals if e.cpu_s is not None]  # a share from an old checkpoint has none: then the sum is unknown
        final = Evaluation(
            done, [r for e in finals for r in e.returns], float(np.mean(gaps)) if gaps else None, sum(e.wall_s for e in finals), [e.update for e in finals],
            cpu_s=sum(cpu) if len(cpu) == len(finals) else None,
        )  # fmt: skip
    elif final_eval_episodes:  # after the last checkpoint: a resumed run redoes only this
        final = _evaluate(task, learners, final_eval_episodes, final_seed, diag, done, derive_seed(seed, "final acting"))
    elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return TrainResult(
        task=task.name,
        algo=algo,
        seed=seed,
        updates=done,
        config=config_dict(config),
        evaluations=evaluations,
        metrics=metrics_log,
        learners=learners,
        threads=torch.get_num_threads(),
        stacked=stacked,
        cuda_graph=graphed,
        wall_s=elapsed,
        total_wall_s=earlier_s + elapsed,
        cpu_s=elapsed_cpu,
        total_cpu_s=None if earlier_cpu_s is None else earlier_cpu_s + elapsed_cpu,
        final=final,
    )


def coordination_gap(learners: Sequence[Learner], states: np.ndarray) -> float | None:
    """Mean over ``states`` of max_i V_i(s) − min_i V_i(s) (paper, Figure 3): how far the agents'
    own value estimates of the same state disagree. ``None`` if a learner has no value function,
    and for a single agent (the centralized setting), which has no one to disagree with."""
    if len(learners) < 2 or not all(learner.has_value for learner in learners):
        return None
    values = np.stack([learner.value(states) for learner in learners])  # (agents, states)
    return float(np.mean(values.max(0) - values.min(0)))


def _evaluate(task: Task, learners: Sequence[Learner], episodes: int, seed: int, diag: np.ndarray, update: int, noise_seed: int) -> Evaluation:
    """Evaluate the agents jointly on ``episodes`` episodes (evaluation seeds ``seed, seed + 1,
    ...``) and take the coordination diagnostic on ``diag``.

    Each agent's acting and valuing noise restarts from ``noise_seed`` first (per agent and
    stream), so the result depends only on the networks and these seeds: not on earlier
    evaluations, and the diagnostic does not change what is evaluated.
    """
    started, cpu_started = time.perf_counter(), time.process_time()  # environments step in this process (SyncVectorEnv)
    for i, learner in enumerate(learners):
        if hasattr(learner, "reseed"):  # optional for a user's learner without acting noise
            learner.reseed("act", derive_seed(noise_seed, "act", i))
            learner.reseed("value", derive_seed(noise_seed, "value", i))
    policy = rollout.decentralized(task, [learner.act for learner in learners])
    returns = rollout.evaluate(task, policy, episodes, seed)
    gap = coordination_gap(learners, diag)
    return Evaluation(
        update=update, returns=[float(r) for r in returns], coordination_gap=gap, wall_s=time.perf_counter() - started, cpu_s=time.process_time() - cpu_started
    )


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


def _load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise UserError(f"cannot read checkpoint {path}: {exc}; delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a mabcq-bench training checkpoint (format {CHECKPOINT_FORMAT}); delete it to start over")
    return state
