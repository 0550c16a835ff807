"""A learner's networks as flat parameters (``nets.MLP``): what the optimizer steps, target copies
and their Polyak updates."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from mabcq_bench.algos.common.nets import MLP


def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging θ' ← (1 − τ)θ' + τθ, one fused call over the nets' flat parameters."""
    targets, onlines = flat_params([target]), flat_params([online])
    torch._foreach_lerp_([t for t, _ in targets], [o for o, _ in onlines], tau)


def target_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to serve as its target network."""
    target = copy.deepcopy(module)
    rebind(target)
    target.requires_grad_(False)
    return target


def rebind(module: nn.Module) -> None:
    """Re-create the flat parameter storage of every ``nets.MLP`` in ``module`` (after a copy or
    a move, which give each parameter its own storage)."""
    for m in module.modules():
        if isinstance(m, MLP):
            m.rebind()


def flat_params(modules: list[nn.Module]) -> list[tuple[Tensor, Tensor]]:
    """``(flat, flat_grad)`` of every ``nets.MLP`` in ``modules``: what the optimizer steps."""
    return [(m.flat, m.flat_grad) for module in modules for m in module.modules() if isinstance(m, MLP)]
