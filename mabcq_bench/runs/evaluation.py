"""What training returns: the joint evaluations of a run and its result (:func:`mabcq_bench.runs.learn.train_agents`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mabcq_bench.algos.common.batch import Learner


@dataclass
class Evaluation:
    """One joint evaluation during training.

    Attributes:
        update: updates done (per agent) when it ran.
        returns: undiscounted return of each evaluation episode.
        coordination_gap: the paper's Figure 3 diagnostic, mean over a fixed set of states of
            max_i V_i(s) − min_i V_i(s); ``None`` when an algorithm has no value function.
        wall_s: seconds the evaluation took (episodes and diagnostic); 0 in checkpoints written
            before it was measured.
        checkpoints: for a final evaluation spread over the last evaluation points (protocol
            3), the updates of each share, in the order of ``returns``; else ``None``.
        cpu_s: CPU seconds of the process during the evaluation (the environments step in
            it): what it took of a core, whatever else the machine did; ``None`` in checkpoints
            written before it was measured.
    """

    update: int
    returns: list[float]
    coordination_gap: float | None
    wall_s: float = 0.0
    checkpoints: list[int] | None = None
    cpu_s: float | None = None

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))


@dataclass
class TrainResult:
    """What :func:`train_agents` returns.

    Attributes:
        task, algo, seed: what was run.
        updates: updates done per agent.
        config: the algorithm's resolved config (same for all agents).
        evaluations: the joint learning-curve evaluations, in order.
        final: the final evaluation (``final_eval_episodes`` episodes after the last update, on
            their own evaluation seeds), or ``None`` when none was asked for.
        metrics: per evaluation interval, the learners' training metrics averaged over the
            interval's updates and over agents (keys as the learners return them, plus ``update``).
        learners: the trained learners, agent order.
        threads: torch CPU threads used (results are bitwise reproducible for a given count).
        stacked: whether the agents' updates were stacked into one batched update.
        stacked_seeds: how many seeds' runs trained as one batched update with this one (their
            agents' learners in one stack, :func:`~mabcq_bench.runs.learn.train_seeds`); 1: alone.
            The times below are then this run's evaluations and an even share of the updates it
            made together with the others.
        cuda_graph: whether the updates were replayed from CUDA graphs.
        wall_s: seconds spent in this call (not in earlier, interrupted ones).
        total_wall_s: seconds spent training this run, summed over this call and the interrupted
            ones it resumed (up to their last checkpoint; checkpoints from before this field
            count as 0).
        cpu_s: CPU seconds of the process in this call (``time.process_time``): unlike the wall
            time, not counting time the process was paused or waited for a shared core.
        total_cpu_s: CPU seconds training this run over this call and the interrupted ones it
            resumed (up to their last checkpoint); ``None`` when it resumed a checkpoint from
            before CPU time was kept, whose share is unknown.
    """

    task: str
    algo: str
    seed: int
    updates: int
    config: dict[str, Any]
    evaluations: list[Evaluation]
    metrics: list[dict[str, float]]
    learners: list[Learner] = field(repr=False)
    threads: int = 1
    stacked: bool = False
    stacked_seeds: int = 1
    cuda_graph: bool = False
    wall_s: float = 0.0
    total_wall_s: float = 0.0
    cpu_s: float = 0.0
    total_cpu_s: float | None = None
    final: Evaluation | None = None

    @property
    def final_return(self) -> float:
        """The final evaluation's mean return (the last curve evaluation's without one)."""
        return (self.final or self.evaluations[-1]).mean_return
