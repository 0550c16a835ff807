"""The algorithm registry: every learner the benchmark runs, by name.

Adding an algorithm is one entry in :data:`ALGOS`: a learner class implementing
:class:`~mabcq_bench.algos.base.Learner`, its config dataclass, and the config values that make
this entry what it is (the ablations are MABCQ with a weight switched off, not copies).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from mabcq_bench.algos.base import Batch, Learner, TorchLearner
from mabcq_bench.algos.behavior import Behavior, BehaviorConfig
from mabcq_bench.algos.ddpg import DDPG, DDPGConfig
from mabcq_bench.algos.mabcq import MABCQ, MABCQConfig
from mabcq_bench.errors import UserError
from mabcq_bench.tasks import Task


@dataclass(frozen=True)
class AlgoSpec:
    """One registered algorithm.

    Attributes:
        name: registry key (``mabcq-no-tn``).
        learner: class built as ``learner(state_dim, action_dim, config, seed=..., device=...)``.
        config_cls: its config dataclass.
        preset: config values that define this entry (e.g. ``use_tn=False``).
        summary: one line for listings.
    """

    name: str
    learner: Callable[..., Learner]
    config_cls: type
    preset: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""

    def config(self, task: Task | None = None, **overrides: Any) -> Any:
        """The resolved config: class defaults, then the preset, then the task's ε (where the
        config has that field), then ``overrides``."""
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise UserError(f"{self.name} has no option {', '.join(unknown)}; its options: {', '.join(sorted(names))}")
        values = dict(self.preset)
        if task is not None and "epsilon" in names:
            values["epsilon"] = task.epsilon
        values.update(overrides)
        return self.config_cls(**values)


ALGOS: dict[str, AlgoSpec] = {
    "mabcq": AlgoSpec("mabcq", MABCQ, MABCQConfig, {}, "BCQ with value deviation and transition normalization"),
    "mabcq-no-tn": AlgoSpec("mabcq-no-tn", MABCQ, MABCQConfig, {"use_tn": False}, "MABCQ without transition normalization (λ_tn = 1)"),
    "mabcq-no-vd": AlgoSpec("mabcq-no-vd", MABCQ, MABCQConfig, {"use_vd": False}, "MABCQ without value deviation (λ_vd = 1)"),
    "bcq": AlgoSpec("bcq", MABCQ, MABCQConfig, {"use_vd": False, "use_tn": False}, "independent BCQ (both weights 1)"),
    "ddpg": AlgoSpec("ddpg", DDPG, DDPGConfig, {}, "independent DDPG, no action constraint"),
    "behavior": AlgoSpec("behavior", Behavior, BehaviorConfig, {}, "behaviour cloning: the action decoded by G¹"),
}


def get_algo(name: str) -> AlgoSpec:
    """Look an algorithm up by name, with a one-line error listing the valid names."""
    try:
        return ALGOS[name]
    except KeyError:
        raise UserError(f"unknown algorithm {name!r}; valid algorithms: {', '.join(ALGOS)}") from None


def resolve_algos(spec: str) -> list[AlgoSpec]:
    """Parse ``all`` or a comma-separated list of algorithm names."""
    if spec == "all":
        return list(ALGOS.values())
    return [get_algo(name.strip()) for name in spec.split(",") if name.strip()]


def make_learner(
    name: str,
    state_dim: int,
    action_dim: int,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    task: Task | None = None,
    **overrides: Any,
) -> Learner:
    """Build one agent's learner of algorithm ``name`` (config as in :meth:`AlgoSpec.config`)."""
    spec = get_algo(name)
    return spec.learner(state_dim, action_dim, spec.config(task, **overrides), seed=seed, device=device)


__all__ = [
    "ALGOS",
    "AlgoSpec",
    "Batch",
    "Behavior",
    "BehaviorConfig",
    "DDPG",
    "DDPGConfig",
    "Learner",
    "MABCQ",
    "MABCQConfig",
    "TorchLearner",
    "get_algo",
    "make_learner",
    "resolve_algos",
]
