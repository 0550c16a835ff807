"""The optimizer of every learner: Adam over the flat parameter tensors of ``nets.MLP``, with a
device-side step count for CUDA-graph capture (:mod:`mabcq_bench.algos.common.graphs`)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mabcq_bench.algos.common.params import flat_params


class Adam:
    """Adam (Kingma & Ba, 2015) over flat parameter tensors, in a handful of fused calls.

    The same update as ``torch.optim.Adam`` without weight decay or amsgrad, written out because
    at these network sizes the general optimizer's bookkeeping costs more than its arithmetic.
    It steps ``(param, grad)`` pairs of flat tensors (see ``nets.MLP``); :meth:`zero_grad` zeroes
    the gradient buffers in place, where autograd accumulates.
    """

    def __init__(self, pairs: list[tuple[Tensor, Tensor]], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = [p for p, _ in pairs]
        self.grads = [g for _, g in pairs]
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self._device_steps: Tensor | None = None  # the step count on the device (capturable)

    def capturable(self) -> None:
        """Step with the step count and its bias corrections on the device, so that a CUDA graph
        can capture a step (a Python count would be frozen into it). The same update in other
        rounding: the corrections are float32 on the device instead of Python floats."""
        if self._device_steps is None:
            self._device_steps = torch.tensor(float(self.steps), device=self.params[0].device)

    def zero_grad(self) -> None:
        torch._foreach_zero_(self.grads)

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        grads = self.grads
        torch._foreach_lerp_(self.exp_avg, grads, 1.0 - beta1)  # m ← β1·m + (1 − β1)·g
        torch._foreach_mul_(self.exp_avg_sq, beta2)  # v ← β2·v + (1 − β2)·g²
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1.0 - beta2)
        if self._device_steps is not None:
            self._device_step()
            return
        bias1 = 1.0 - beta1**self.steps
        bias2 = 1.0 - beta2**self.steps
        denom = torch._foreach_sqrt(self.exp_avg_sq)  # sqrt(v / (1 − β2^t)) + eps
        torch._foreach_div_(denom, math.sqrt(bias2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, -self.lr / bias1)  # θ ← θ − lr·m̂/denom

    def _device_step(self) -> None:
        """The bias-corrected step of :meth:`step` with the count on the device."""
        t = self._device_steps
        assert t is not None
        t.add_(1.0)
        beta1, beta2 = self.betas
        bias2_sqrt = (1.0 - torch.pow(beta2, t)).sqrt()
        step_size = (torch.pow(beta1, t) - 1.0) / self.lr  # −(1 − β1^t)/lr: denom over it gives −lr·m̂/denom
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, [bias2_sqrt] * len(denom))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_mul_(denom, [step_size] * len(denom))
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "exp_avg": [t.clone() for t in self.exp_avg], "exp_avg_sq": [t.clone() for t in self.exp_avg_sq]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        if self._device_steps is not None:
            self._device_steps.fill_(float(self.steps))
        for mine, saved in zip(self.exp_avg + self.exp_avg_sq, list(state["exp_avg"]) + list(state["exp_avg_sq"])):
            mine.copy_(saved)


def adam(module: nn.Module | list[nn.Module], lr: float) -> Adam:
    """Adam over the networks of one or more modules.

    One optimizer over several modules is the same as one per module: Adam's state is per
    parameter, and the step count is the same for all.
    """
    return Adam(flat_params(module if isinstance(module, list) else [module]), lr)
