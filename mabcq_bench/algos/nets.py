"""The networks every learner is built from: a batched MLP, BCQ's conditional VAE, the
perturbation net ξ.

Shapes follow one convention: a *condition* ``c`` has one row per state, ``(B, C)``, and an
*input* ``x`` has ``k`` rows per state, ``(B, k, X)`` (k sampled actions, or k = 1). Every MLP
maps ``[c, x] -> (heads, B, k, out)``.

What makes the update cheap without changing its maths (``mabcq-bench bench`` measures it):

* ``heads`` independent MLPs share one set of batched weights ``(heads, in, out)``, so BCQ's twin
  critics are a single module evaluated with one ``baddbmm`` per layer instead of two networks.
* The first layer is split, ``W·[c; x] = W_c·c + W_x·x``: the state part is computed once per
  state instead of once for each of the n sampled actions that share it.
* The narrow output layer's (1 to 20 units) weight gradient is computed transposed, where CPU
  BLAS is fast.
* A net's parameters and gradients live in two flat tensors, so optimizer steps and target
  updates are a few calls per net, not a few per layer.

Parameters are initialized like ``torch.nn.Linear`` (uniform in ±1/sqrt(fan_in)) but from an
explicit generator, so a learner's initial weights depend on its seed only.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound


class MLP(nn.Module):
    """``heads`` ReLU MLPs ``[c, x] -> hidden... -> out`` with batched weights.

    All parameters are views of one flat tensor (``self.flat``), and their gradients views of
    another (``self.flat_grad``, where autograd accumulates them). The optimizer, the target
    update and ``zero_grad`` then touch one tensor per net instead of one per layer, which
    matters at these sizes, where per-tensor overhead rivals the arithmetic. After anything that
    reallocates parameters (``.to(device)``, ``copy.deepcopy``) call :meth:`rebind`.

    Args:
        cond_dim: size of the per-state condition ``c``.
        x_dim: size of the per-sample input ``x`` (0: the net reads ``c`` only).
        hidden: hidden layer sizes, e.g. ``(64, 64)``.
        out_dim: output size.
        heads: number of independent nets evaluated together (2 for twin critics).
        generator: CPU generator for the initial weights.
    """

    def __init__(
        self,
        cond_dim: int,
        x_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        *,
        heads: int = 1,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("an MLP needs at least one hidden layer")
        self.heads = heads
        fan_in, width = cond_dim + x_dim, hidden[0]
        self.w_cond = nn.Parameter(_uniform((heads, cond_dim, width), fan_in, generator))
        self.w_x = nn.Parameter(_uniform((heads, x_dim, width), fan_in, generator)) if x_dim else None
        self.b_in = nn.Parameter(_uniform((heads, 1, width), fan_in, generator))
        dims = [*hidden, out_dim]
        self.weights = nn.ParameterList(nn.Parameter(_uniform((heads, i, o), i, generator)) for i, o in zip(dims[:-1], dims[1:]))
        self.biases = nn.ParameterList(nn.Parameter(_uniform((heads, 1, o), i, generator)) for i, o in zip(dims[:-1], dims[1:]))
        self.rebind()

    def rebind(self) -> None:
        """Gather the parameters into ``flat`` (and zeroed gradients into ``flat_grad``) and make
        every parameter and its ``.grad`` a view of them."""
        params = list(self.parameters())
        with torch.no_grad():
            self.flat = torch.cat([p.reshape(-1) for p in params])
        self.flat_grad = torch.zeros_like(self.flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.data = self.flat[offset : offset + n].view(p.shape)
            p.grad = self.flat_grad[offset : offset + n].view(p.shape)
            offset += n

    def unpack(self, head: int | None = None, frozen: bool = False) -> tuple[Tensor, Tensor | None, Tensor, list[Tensor], list[Tensor]]:
        """The layers ``(w_cond, w_x, b_in, weights, biases)``; ``head`` keeps one head (a
        ``heads`` dim of size 1), ``frozen`` detaches them."""
        parts = [self.w_cond, self.w_x, self.b_in, *self.weights, *self.biases]
        if head is not None:
            parts = [None if t is None else t[head : head + 1] for t in parts]
        if frozen:
            parts = [None if t is None else t.detach() for t in parts]
        n = len(self.weights)
        return parts[0], parts[1], parts[2], parts[3 : 3 + n], parts[3 + n :]

    # The pieces below are public so that a caller can share the condition part between row
    # groups (MABCQ's target pass); ``forward`` is what everything else uses.

    def project_cond(self, cond: Tensor) -> Tensor:
        """First-layer pre-activation from ``c`` alone, bias included: ``(heads, B, H)``."""
        return torch.baddbmm(self.b_in, cond.unsqueeze(0).expand(self.heads, -1, -1), self.w_cond)

    def project_x(self, x: Tensor) -> Tensor:
        """First-layer pre-activation from ``x (B, k, X)`` alone: ``(heads, B, k, H)``."""
        b, k, dim = x.shape
        return torch.bmm(x.reshape(1, b * k, dim).expand(self.heads, -1, -1), self.w_x).view(self.heads, b, k, -1)

    def tail(self, pre: Tensor) -> Tensor:
        """ReLU of the first-layer pre-activation ``(heads, B, k, H)``, then the other layers."""
        heads, b, k, width = pre.shape
        return _layers(pre.relu_().view(heads, b * k, width), list(self.weights), list(self.biases)).view(heads, b, k, -1)

    def paired(self, cond: Tensor, x: Tensor, extra_cond: Tensor, extra_x: Tensor) -> Tensor:
        """``forward(cond, x)`` for ``k`` inputs per state and, in the same pass, one more column:
        ``forward(extra_cond, extra_x)``. Each state's part of the first layer is computed once
        and broadcast over its columns.

        Args:
            cond: ``(B, C)``; x: ``(B, k, X)``; extra_cond: ``(B, C)``; extra_x: ``(B, X)``.

        Returns:
            ``(heads, B, k + 1, out)``: columns ``0..k-1`` at ``(cond, x)``, column ``k`` at
            ``(extra_cond, extra_x)``.
        """
        k = x.shape[1]
        pre = self.project_x(torch.cat([x, extra_x.unsqueeze(1)], 1))  # (heads, B, k+1, H)
        state_part = self.project_cond(torch.cat([cond, extra_cond]))  # (heads, 2B, H)
        pre[:, :, :k] += state_part[:, : len(cond)].unsqueeze(2)
        pre[:, :, k] += state_part[:, len(cond) :]
        return self.tail(pre)

    def forward(self, cond: Tensor, x: Tensor | None = None, *, head: int | None = None, frozen: bool = False) -> Tensor:
        """Evaluate the nets.

        Args:
            cond: ``(B, C)``.
            x: ``(B, k, X)``, or ``None`` for a net without ``x`` (then k = 1).
            head: evaluate this head only (output ``(1, B, k, out)``).
            frozen: use detached weights, so gradients reach the inputs but not this net's
                parameters (e.g. ξ's objective through the critic).

        Returns:
            ``(heads, B, k, out)``.
        """
        if head is None and not frozen:
            w_cond, w_x, b_in, weights, biases = self.w_cond, self.w_x, self.b_in, list(self.weights), list(self.biases)
        else:
            w_cond, w_x, b_in, weights, biases = self.unpack(head, frozen)
        heads, b = w_cond.shape[0], cond.shape[0]
        pre = torch.baddbmm(b_in, cond.unsqueeze(0).expand(heads, -1, -1), w_cond)  # (heads, B, H)
        if x is None:
            k = 1
            h = pre.relu_()
        else:
            k = x.shape[1]
            hx = torch.bmm(x.reshape(1, b * k, -1).expand(heads, -1, -1), w_x).view(heads, b, k, -1)
            # In place only without autograd: on a view, autograd would copy the gradient.
            h = hx.add_(pre.unsqueeze(2)) if not torch.is_grad_enabled() else hx + pre.unsqueeze(2)
            h = h.relu_().view(heads, b * k, -1)
        return _layers(h, weights, biases).view(heads, b, k, -1)


def _layers(h: Tensor, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
    """Hidden ReLU layers then the output layer, for activations ``h (heads, rows, H)``."""
    for w, bias in zip(weights[:-1], biases[:-1]):
        h = torch.baddbmm(bias, h, w).relu_()
    return _NarrowOutput.apply(h, weights[-1], biases[-1])


class _NarrowOutput(torch.autograd.Function):
    """The output layer ``h·W + b`` with its weight gradient computed transposed.

    The same numbers as ``torch.baddbmm(b, h, W)`` and its autograd backward. With an output
    1 to 20 units wide, CPU BLAS computes the weight gradient ``hᵀ·g`` (a 64 × N result summed
    over thousands of rows) about twice as fast as ``(gᵀ·h)ᵀ``, whose long dimension is the
    output; the forward pass is fastest as it is written (measured on an AVX-512 Xeon: the
    transposed forward was 2.9× slower). ``mabcq-bench bench`` measures the whole update.
    """

    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(h, w)
        return torch.baddbmm(bias, h, w)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        h, w = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad
        grad_h = torch.bmm(grad, w.transpose(1, 2)) if need_h else None
        grad_w = torch.bmm(grad.transpose(1, 2), h).transpose(1, 2) if need_w else None
        grad_b = grad.sum(1, keepdim=True) if need_b else None
        return grad_h, grad_w, grad_b


class VAE(nn.Module):
    """BCQ's conditional VAE ``G = {E(μ, σ | c, a), D(a | c, z)}`` with tanh-bounded decoded actions.

    G¹ conditions on ``c = s``; G² on ``c = [s, s']``.
    """

    def __init__(
        self,
        cond_dim: int,
        action_dim: int,
        latent_dim: int,
        hidden: Sequence[int],
        *,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = MLP(cond_dim, action_dim, hidden, 2 * latent_dim, generator=generator)
        self.decoder = MLP(cond_dim, latent_dim, hidden, action_dim, generator=generator)

    def encode(self, cond: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log standard deviation ``(B, L)`` of q(z | c, a); log σ clamped to [-4, 15] (BCQ)."""
        out = self.encoder(cond, action.unsqueeze(1))[0, :, 0]
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std.clamp(-4.0, 15.0)

    def decode(self, cond: Tensor, z: Tensor) -> Tensor:
        """Actions ``(B, k, A)`` in [-1, 1] decoded from latents ``z (B, k, L)``."""
        return torch.tanh(self.decoder(cond, z)[0])

    def sample(self, cond: Tensor, k: int, generator: torch.Generator) -> Tensor:
        """``k`` actions per state ``(B, k, A)`` from the prior N(0, I) clipped to [-0.5, 0.5] (BCQ)."""
        z = torch.randn(cond.shape[0], k, self.latent_dim, generator=generator, device=cond.device)
        return self.decode(cond, z.clamp_(-0.5, 0.5))

    def loss(self, cond: Tensor, action: Tensor, generator: torch.Generator, kl_weight: float) -> tuple[Tensor, Tensor]:
        """BCQ's VAE objective ``MSE(â, a) + kl_weight · KL(q(z|c,a) ‖ N(0, I))`` (means over the batch).

        Returns:
            the scalar loss and the encoder mean ``μ (B, L)`` (not detached).
        """
        mean, log_std = self.encode(cond, action)
        std = log_std.exp()
        z = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)
        recon = self.decode(cond, z.unsqueeze(1))[:, 0]
        recon_loss = (recon - action).square().mean()
        kl = -0.5 * (1.0 + 2.0 * log_std - mean.square() - std.square()).mean()
        return recon_loss + kl_weight * kl, mean


class Perturbation(nn.Module):
    """BCQ's perturbation net: ``a + Φ·tanh(ξ(s, a))``, clamped to the action box [-1, 1]."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int], phi: float, *, generator: torch.Generator) -> None:
        super().__init__()
        self.phi = phi
        self.net = MLP(state_dim, action_dim, hidden, action_dim, generator=generator)

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        """Perturbed actions ``(B, k, A)`` for states ``(B, S)`` and actions ``(B, k, A)``."""
        return (actions + self.phi * torch.tanh(self.net(states, actions)[0])).clamp(-1.0, 1.0)
