"""One seed's run inside the trainer (:func:`mabcq_bench.runs.learn.train_seeds`): its learners,
samplers, schedule of evaluations and checkpoints, its checkpoint file, and the joint evaluation.

Several seeds of one (task, algorithm) may train together as one stack; each keeps everything
here of its own, so its checkpoint and result are what it would have alone.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mabcq_bench.algos import Batch, Learner
from mabcq_bench.algos.common.configs import config_dict, plain
from mabcq_bench.data import rollout
from mabcq_bench.data.buffer import AgentData
from mabcq_bench.data.tasks import Task
from mabcq_bench.errors import UserError
from mabcq_bench.runs.evaluation import Evaluation, TrainResult
from mabcq_bench.util import atomic_path, derive_seed

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Schedule:
    """When a run (of any seed) updates, evaluates and checkpoints."""

    updates: int
    eval_every: int
    eval_episodes: int
    final_eval_episodes: int
    final_checkpoints: int
    diag_states: int
    checkpoint_every: int

    @property
    def final_at(self) -> list[int]:
        """Protocol 3: the updates after which a share of the final episodes is played."""
        if self.final_checkpoints <= 1:
            return []
        return [self.updates - k * self.eval_every for k in range(self.final_checkpoints)]

    def due(self, done: int) -> tuple[bool, bool, bool]:
        """(evaluate, save, final share) after update ``done``."""
        last = done == self.updates
        return (
            bool(last or (self.eval_every and done % self.eval_every == 0)),
            bool(last or (self.checkpoint_every and done % self.checkpoint_every == 0)),
            done in self.final_at,
        )


class SeedRun:
    """One seed's run inside :func:`~mabcq_bench.runs.learn.train_seeds`: its learners, samplers, evaluations and checkpoint."""

    def __init__(self, task: Task, spec: Any, config: Any, datasets: Sequence[AgentData], data: Sequence[Batch], seed: int,
                 schedule: Schedule, checkpoint: Path | str | None, device: str, graphed: bool, stacked: bool, stacked_seeds: int,
                 on_update: Callable[[int, list[dict[str, float]]], None] | None) -> None:  # fmt: skip
        self.task, self.seed, self.schedule, self.on_update = task, seed, schedule, on_update
        self.stacked, self.stacked_seeds = stacked, stacked_seeds
        self.learners = [
            spec.learner(task.state_dim, task.action_dims[i], config, seed=derive_seed(seed, "learner", i), device=device)
            for i in range(task.n_agents)
        ]
        if graphed:
            for learner in self.learners:
                learner.cuda_graph = True
        self.samplers = [np.random.default_rng(derive_seed(seed, "sampler", i)) for i in range(task.n_agents)]
        self.data = data
        for learner, d, own in zip(self.learners, data, datasets):  # its own dataset only, as everything else it sees
            if hasattr(learner, "prepare"):  # optional for a user's learner (TorchLearner has it)
                learner.prepare(d, own.episode_returns)
        diag_rng = np.random.default_rng(derive_seed(seed, "diagnostic"))
        n0 = datasets[0].size
        self.diag = np.asarray(datasets[0].observations)[np.sort(diag_rng.choice(n0, size=min(schedule.diag_states, n0), replace=False))]
        self.eval_seed = derive_seed(seed, "evaluation")
        self.final_seed = derive_seed(seed, "final evaluation")
        self.identity = {"task": task.name, "algo": spec.name, "seed": seed, "config": config_dict(config)}
        self.done = 0
        self.evaluations: list[Evaluation] = []
        self.finals: list[Evaluation] = []
        self.metrics_log: list[dict[str, float]] = []
        self.pending: dict[str, float] = {}
        self.pending_count = 0
        self.earlier_s = 0.0  # training time of interrupted calls, from the checkpoint
        self.earlier_cpu_s: float | None = 0.0  # their CPU time; None: a checkpoint from before it was kept, so it is unknown
        self.wall_s = self.cpu_s = 0.0  # this call's time of this run (:meth:`charge`)
        self.final: Evaluation | None = None
        self.path = Path(checkpoint) if checkpoint is not None else None
        if self.path is not None and self.path.exists():
            self._resume(_load(self.path))

    def _resume(self, state: dict[str, Any]) -> None:
        path = self.path
        for key, value in self.identity.items():
            if plain(state[key]) != value:
                raise UserError(f"checkpoint {path} is for {key}={state[key]!r}, not {value!r}; delete it or use another path")
        if state["threads"] != torch.get_num_threads():
            warnings.warn(
                f"checkpoint {path} was written with {state['threads']} torch threads, now {torch.get_num_threads()}: "
                "the resumed run may differ in the last bits from an uninterrupted one",
                stacklevel=4,
            )
        was = (state.get("stacked", False), int(state.get("stacked_seeds", 1)))
        if was != (self.stacked, self.stacked_seeds):
            warnings.warn(
                f"checkpoint {path} was written by a run that {_how(*was)}, this one {_how(self.stacked, self.stacked_seeds)}: "
                "the resumed run may differ in the last bits from an uninterrupted one",
                stacklevel=4,
            )
        self.done = int(state["updates"])
        if self.done > self.schedule.updates:
            raise UserError(f"checkpoint {path} already has {self.done} updates, more than the {self.schedule.updates} asked for")
        for learner, saved in zip(self.learners, state["learners"]):
            learner.load_state_dict(saved)
        for sampler, saved in zip(self.samplers, state["samplers"]):
            sampler.bit_generator.state = saved
        self.evaluations = [Evaluation(**e) for e in state["evaluations"]]
        self.finals = [Evaluation(**e) for e in state.get("finals", [])]
        self.metrics_log = list(state["metrics"])
        self.pending, self.pending_count = dict(state["pending"]), int(state["pending_count"])
        self.earlier_s = float(state.get("elapsed_s", 0.0))
        self.earlier_cpu_s = float(state["elapsed_cpu_s"]) if "elapsed_cpu_s" in state else None

    def batches(self, batch_size: int) -> list[Batch]:
        """Each agent's next minibatch, from its own dataset and sampler."""
        out = []
        for sampler, d in zip(self.samplers, self.data):
            index = torch.from_numpy(sampler.integers(0, d.size, size=batch_size)).to(d.rewards.device)
            out.append(d.take(index))
        return out

    def stepped(self, step_metrics: list[dict[str, float]]) -> None:
        """Count one update of every agent (their metrics, agent order)."""
        self.done += 1
        for m in step_metrics:
            for key, value in m.items():
                self.pending[key] = self.pending.get(key, 0.0) + value / len(step_metrics)
        self.pending_count += 1
        if self.on_update is not None:
            self.on_update(self.done, step_metrics)

    def charge(self, wall_s: float, cpu_s: float) -> None:
        """Count ``wall_s`` and ``cpu_s`` seconds of this call as this run's."""
        self.wall_s += wall_s
        self.cpu_s += cpu_s

    def checkpoint_work(self, clock: Any) -> None:
        """After an update: the evaluations, final share and checkpoint due now (the learners
        hold the current values: a stack has been unstacked), their time this run's
        (``clock.lap()``: the seconds since the trainer last took its time)."""
        evaluate_now, save_now, final_now = self.schedule.due(self.done)
        done, seed = self.done, self.seed
        if final_now:
            k = self.schedule.final_at.index(done)
            share = self.schedule.final_eval_episodes // self.schedule.final_checkpoints
            self.finals.append(evaluate(self.task, self.learners, share, self.final_seed + k * share, self.diag, done, derive_seed(seed, "final acting", k)))
        if evaluate_now:
            self.evaluations.append(evaluate(self.task, self.learners, self.schedule.eval_episodes, self.eval_seed, self.diag, done, derive_seed(seed, "acting", done)))
            self.metrics_log.append({"update": float(done), **{k: v / self.pending_count for k, v in self.pending.items()}})
            self.pending, self.pending_count = {}, 0
        self.charge(*clock.lap())
        if save_now:
            self.save()
            self.charge(*clock.lap())

    def save(self) -> None:
        if self.path is None:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            **self.identity,
            "threads": torch.get_num_threads(),
            "stacked": self.stacked,
            "stacked_seeds": self.stacked_seeds,
            "updates": self.done,
            "learners": [learner.state_dict() for learner in self.learners],
            "samplers": [sampler.bit_generator.state for sampler in self.samplers],
            "evaluations": [vars(e) for e in self.evaluations],
            "finals": [vars(e) for e in self.finals],
            "metrics": self.metrics_log,
            "pending": self.pending,
            "pending_count": self.pending_count,
            "elapsed_s": self.earlier_s + self.wall_s,
        }
        if self.earlier_cpu_s is not None:  # left out once unknown, so that a later resume still knows it is partial
            state["elapsed_cpu_s"] = self.earlier_cpu_s + self.cpu_s
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def finish(self, clock: Any) -> None:
        """The final evaluation (protocol 3: its shares, made at their checkpoints; protocol 2:
        after the last update, which a resumed run redoes alone), its time this run's."""
        if self.schedule.final_at:  # one evaluation of the shares, last checkpoint's first (seed blocks 0, 1, ...)
            finals = sorted(self.finals, key=lambda e: -e.update)
            gaps = [e.coordination_gap for e in finals if e.coordination_gap is not None]
            cpu = [e.cpu_s for e in finals if e.cpu_s is not None]  # a share from an old checkpoint has none: then the sum is unknown
            self.final = Evaluation(
                self.done, [r for e in finals for r in e.returns], float(np.mean(gaps)) if gaps else None, sum(e.wall_s for e in finals),
                [e.update for e in finals], cpu_s=sum(cpu) if len(cpu) == len(finals) else None,
            )  # fmt: skip
        elif self.schedule.final_eval_episodes:
            self.final = evaluate(self.task, self.learners, self.schedule.final_eval_episodes, self.final_seed, self.diag, self.done, derive_seed(self.seed, "final acting"))
        self.charge(*clock.lap())

    def result(self, algo: str, graphed: bool) -> TrainResult:
        """What the run made, after :meth:`finish`."""
        return TrainResult(
            task=self.task.name,
            algo=algo,
            seed=self.seed,
            updates=self.done,
            config=self.identity["config"],
            evaluations=self.evaluations,
            metrics=self.metrics_log,
            learners=self.learners,
            threads=torch.get_num_threads(),
            stacked=self.stacked,
            stacked_seeds=self.stacked_seeds,
            cuda_graph=graphed,
            wall_s=self.wall_s,
            total_wall_s=self.earlier_s + self.wall_s,
            cpu_s=self.cpu_s,
            total_cpu_s=None if self.earlier_cpu_s is None else self.earlier_cpu_s + self.cpu_s,
            final=self.final,
        )


def _how(stacked: bool, seeds: int) -> str:
    if seeds > 1:
        return f"stacked {seeds} seeds' agents"
    return "stacked its agents" if stacked else "did not stack its agents"


def coordination_gap(learners: Sequence[Learner], states: np.ndarray) -> float | None:
    """Mean over ``states`` of max_i V_i(s) − min_i V_i(s) (paper, Figure 3): how far the agents'
    own value estimates of the same state disagree. ``None`` if a learner has no value function,
    and for a single agent (the centralized setting), which has no one to disagree with."""
    if len(learners) < 2 or not all(learner.has_value for learner in learners):
        return None
    values = np.stack([learner.value(states) for learner in learners])  # (agents, states)
    return float(np.mean(values.max(0) - values.min(0)))


def evaluate(task: Task, learners: Sequence[Learner], episodes: int, seed: int, diag: np.ndarray, update: int, noise_seed: int) -> Evaluation:
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


def _load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise UserError(f"cannot read checkpoint {path}: {exc}; delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a mabcq-bench training checkpoint (format {CHECKPOINT_FORMAT}); delete it to start over")
    return state
