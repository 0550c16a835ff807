"""The networks every learner is built from: a batched MLP, BCQ's conditional VAE, the
perturbation net ξ; and the stacking of several agents' nets into one.

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
* Without autograd (the target pass, acting), a hidden layer's bias and ReLU are one pass over
  its output (:func:`_add_relu_`) instead of a bias copy before the GEMM and a ReLU after it.

Stacking (groups). The same batching carries G agents: :func:`stack` makes one module of G
agents' nets of one architecture (``groups = G``, weights ``(G·heads, in, out)``, group g's
heads at rows ``g·heads … g·heads + heads − 1``). Its conditions and inputs then carry a leading
group dim, ``(G, B, C)`` and ``(G, B, k, X)``: each group's rows meet only its own weights, so
agent g's numbers are its lone net's, each layer one call for all the agents (what a GPU needs,
where one small agent's update is bound by kernel launches). Noise is drawn per group from that
group's own generator (:func:`normal`). A lone net is the case G = 1, and code written for the
grouped shapes serves both (``mabcq.MABCQ`` is). :func:`unstack` writes a stack's values back
into the lone nets.

Parameters are initialized like ``torch.nn.Linear`` (uniform in ±1/sqrt(fan_in)) but from an
explicit generator, so a learner's initial weights depend on its seed only.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence, Union

import torch
from torch import Tensor, nn

#: One generator (a lone net's inputs), or one per group (a stack's grouped inputs): see :func:`normal`.
Generators = Union[torch.Generator, Sequence[torch.Generator]]


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound


def normal(shape: Sequence[int], generator: Generators, device: torch.device | str) -> Tensor:
    """Standard normal noise of ``shape`` on ``device``.

    With one generator per group, ``shape[0]`` is the group count and group g's slice is drawn
    from generator g alone: the numbers a lone draw of ``shape[1:]`` from it gives. Stacking
    agents therefore changes no agent's noise, and no agent's noise depends on another's stream.
    """
    if isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0]} groups")
    if len(generator) == 1:
        return torch.randn(tuple(shape[1:]), generator=generator[0], device=device).unsqueeze(0)
    out = torch.empty(tuple(shape), device=device)
    for row, gen in zip(out, generator):
        row.normal_(generator=gen)  # what torch.randn does, into group g's slice
    return out


class MLP(nn.Module):
    """``heads`` ReLU MLPs ``[c, x] -> hidden... -> out`` with batched weights.

    All parameters are views of one flat tensor (``self.flat``), and their gradients views of
    another (``self.flat_grad``, where autograd accumulates them). The optimizer, the target
    update and ``zero_grad`` then touch one tensor per net instead of one per layer, which
    matters at these sizes, where per-tensor overhead rivals the arithmetic. After anything that
    reallocates parameters (``.to(device)``, ``copy.deepcopy``) call :meth:`rebind`.

    A net made by :func:`stack` holds ``groups`` agents' nets: every weight is
    ``(groups·heads, in, out)``, group-major.

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
        self.groups = 1  # agents stacked in this net (see stack)
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

    def group_rows(self, flat: Tensor) -> Tensor:
        """A vector laid out as ``self.flat`` (the parameters, their gradients, an optimizer's
        moments) as ``(groups, n)``: row g is group g's part, laid out as a lone net's ``flat``."""
        parts = flat.split([p.numel() for p in self.parameters()])
        return torch.cat([part.view(self.groups, -1) for part in parts], 1)

    def from_group_rows(self, rows: Tensor) -> Tensor:
        """The inverse of :meth:`group_rows`: ``(groups, n)`` to one vector laid out as ``self.flat``."""
        parts = rows.split([p.numel() // self.groups for p in self.parameters()], 1)
        return torch.cat([part.reshape(-1) for part in parts])

    def unpack(self, head: int | None = None, frozen: bool = False) -> tuple[Tensor, Tensor | None, Tensor, list[Tensor], list[Tensor]]:
        """The layers ``(w_cond, w_x, b_in, weights, biases)``; ``head`` keeps one head of every
        group (a leading dim of ``groups``), ``frozen`` detaches them."""
        parts = [self.w_cond, self.w_x, self.b_in, *self.weights, *self.biases]
        if head is not None:
            parts = [None if t is None else t[head :: self.heads] for t in parts]
        if frozen:
            parts = [None if t is None else t.detach() for t in parts]
        n = len(self.weights)
        return parts[0], parts[1], parts[2], parts[3 : 3 + n], parts[3 + n :]

    def _spread(self, t: Tensor, heads: int) -> Tensor:
        """``t`` as one ``(rows, D)`` slab per head, ``(groups·heads, rows, D)``.

        ``t`` is ``(rows, D)``, shared by every group, or ``(groups, rows, D)``, one per group;
        a group's slab is repeated for its heads (a view, no copy, unless there are both several
        groups and several heads).
        """
        if t.dim() == 2:
            return t.unsqueeze(0).expand(self.groups * heads, -1, -1)
        groups, rows, dim = t.shape
        if groups != self.groups:
            raise ValueError(f"inputs of {groups} groups for a net of {self.groups}")
        if heads == 1:
            return t
        if groups == 1:
            return t.expand(heads, rows, dim)
        return t.unsqueeze(1).expand(groups, heads, rows, dim).reshape(groups * heads, rows, dim)

    # The pieces below are public so that a caller can share the condition part between row
    # groups (MABCQ's target pass); ``forward`` is what everything else uses.

    def project_cond(self, cond: Tensor) -> Tensor:
        """First-layer pre-activation from ``c`` alone, bias included: ``(groups·heads, B, H)``."""
        return torch.baddbmm(self.b_in, self._spread(cond, self.heads), self.w_cond)

    def project_x(self, x: Tensor) -> Tensor:
        """First-layer pre-activation from ``x``, ``([G,] B, k, X)``, alone: ``(groups·heads, B, k, H)``."""
        *lead, b, k, dim = x.shape
        return torch.bmm(self._spread(x.reshape(*lead, b * k, dim), self.heads), self.w_x).view(self.groups * self.heads, b, k, -1)

    def tail(self, pre: Tensor) -> Tensor:
        """ReLU of the first-layer pre-activation ``(groups·heads, B, k, H)``, then the other layers."""
        rows, b, k, width = pre.shape
        return _layers(pre.relu_().view(rows, b * k, width), list(self.weights), list(self.biases)).view(rows, b, k, -1)

    def paired(self, cond: Tensor, x: Tensor, extra_cond: Tensor, extra_x: Tensor) -> Tensor:
        """``forward(cond, x)`` for ``k`` inputs per state and, in the same pass, one more column:
        ``forward(extra_cond, extra_x)``. Each state's part of the first layer is computed once
        and broadcast over its columns.

        Args:
            cond: ``([G,] B, C)``; x: ``([G,] B, k, X)``; extra_cond: ``([G,] B, C)``;
                extra_x: ``([G,] B, X)`` (the group dim as in :meth:`forward`).

        Returns:
            ``(groups·heads, B, k + 1, out)``: columns ``0..k-1`` at ``(cond, x)``, column ``k``
            at ``(extra_cond, extra_x)``.
        """
        k, b = x.shape[-2], cond.shape[-2]
        pre = self.project_x(torch.cat([x, extra_x.unsqueeze(-2)], -2))  # (G·heads, B, k+1, H)
        state_part = self.project_cond(torch.cat([cond, extra_cond], -2))  # (G·heads, 2B, H)
        first = _add_relu_(pre[:, :, :k], state_part[:, :b].unsqueeze(2))
        last = _add_relu_(pre[:, :, k], state_part[:, b:])
        if torch.is_grad_enabled():  # _add_relu_ was out of place
            pre = torch.cat([first, last.unsqueeze(2)], 2)
        rows, _, _, width = pre.shape
        return _layers(pre.view(rows, b * (k + 1), width), list(self.weights), list(self.biases)).view(rows, b, k + 1, -1)

    def forward(self, cond: Tensor, x: Tensor | None = None, *, head: int | None = None, frozen: bool = False) -> Tensor:
        """Evaluate the nets.

        Args:
            cond: ``(B, C)``, the same for every group, or ``(groups, B, C)``, one per group.
            x: ``(B, k, X)`` or ``(groups, B, k, X)`` likewise, or ``None`` for a net without
                ``x`` (then k = 1).
            head: evaluate this head of every group only (output ``(groups, B, k, out)``).
            frozen: use detached weights, so gradients reach the inputs but not this net's
                parameters (e.g. ξ's objective through the critic).

        Returns:
            ``(groups·heads, B, k, out)``, group-major; for a lone net ``(heads, B, k, out)``.
        """
        if head is None and not frozen:
            w_cond, w_x, b_in, weights, biases = self.w_cond, self.w_x, self.b_in, list(self.weights), list(self.biases)
        else:
            w_cond, w_x, b_in, weights, biases = self.unpack(head, frozen)
        heads = self.heads if head is None else 1
        rows, b = self.groups * heads, cond.shape[-2]
        pre = torch.baddbmm(b_in, self._spread(cond, heads), w_cond)  # (rows, B, H)
        if x is None:
            k = 1
            h = pre.relu_()
        else:
            *lead, _, k, dim = x.shape
            hx = torch.bmm(self._spread(x.reshape(*lead, b * k, dim), heads), w_x).view(rows, b, k, -1)
            h = _add_relu_(hx, pre.unsqueeze(2)).view(rows, b * k, -1)
        return _layers(h, weights, biases).view(rows, b, k, -1)


def _add_relu_(x: Tensor, y: Tensor) -> Tensor:
    """``relu(x + y)`` (``y`` broadcast to ``x``), in ``x``'s storage where autograd allows.

    Without autograd it is aten's fused ``_add_relu_``: one pass over ``x`` instead of two, which
    matters on the target pass's 10k-row activations (measured on an AVX-512 Xeon, 1 thread, for
    the twin critics' 2 × 11,264 × 64 hidden layer: ``baddbmm`` then ``relu_`` 1.79 ms, ``bmm``
    then ``_add_relu_`` 1.38 ms; the same bits). aten has no derivative for it, so with autograd
    it is ``x + y`` (out of place: on a view, an in-place add makes autograd copy the gradient)
    then ``relu_``. aten has the fused kernel for the CPU alone: elsewhere (cuda) it is
    ``add_`` then ``relu_``, in place.
    """
    if torch.is_grad_enabled():
        return (x + y).relu_()
    if x.device.type != "cpu":
        return x.add_(y).relu_()
    return torch._add_relu_(x, y)


def _layers(h: Tensor, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
    """Hidden ReLU layers then the output layer, for activations ``h (heads, rows, H)``."""
    for w, bias in zip(weights[:-1], biases[:-1]):
        h = torch.baddbmm(bias, h, w).relu_() if torch.is_grad_enabled() else _add_relu_(torch.bmm(h, w), bias)
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

    G¹ conditions on ``c = s``; G² on ``c = [s, s']``. Every method takes a lone net's shapes
    (``c (B, C)``, one generator) or, for a stack of G agents' VAEs, the same with a leading
    group dim (``c (G, B, C)``, one generator per group), and returns likewise.
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
        """Mean and log standard deviation ``([G,] B, L)`` of q(z | c, a); log σ clamped to [-4, 15] (BCQ)."""
        out = _own_groups(self.encoder(cond, action.unsqueeze(-2))[:, :, 0], cond)
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std.clamp(-4.0, 15.0)

    def decode(self, cond: Tensor, z: Tensor) -> Tensor:
        """Actions ``([G,] B, k, A)`` in [-1, 1] decoded from latents ``z ([G,] B, k, L)``."""
        return torch.tanh(_own_groups(self.decoder(cond, z), cond))

    def sample(self, cond: Tensor, k: int, generator: Generators) -> Tensor:
        """``k`` actions per state ``([G,] B, k, A)`` from the prior N(0, I) clipped to [-0.5, 0.5] (BCQ)."""
        z = normal((*cond.shape[:-1], k, self.latent_dim), generator, cond.device)
        return self.decode(cond, z.clamp_(-0.5, 0.5))

    def loss(self, cond: Tensor, action: Tensor, generator: Generators, kl_weight: float) -> tuple[Tensor, Tensor]:
        """BCQ's VAE objective ``MSE(â, a) + kl_weight · KL(q(z|c,a) ‖ N(0, I))`` (means over the batch).

        Returns:
            the loss (a scalar; per group ``(G,)``) and the encoder mean ``μ ([G,] B, L)`` (not
            detached).
        """
        mean, log_std = self.encode(cond, action)
        std = log_std.exp()
        z = mean + std * normal(mean.shape, generator, mean.device)
        recon = self.decode(cond, z.unsqueeze(-2))[..., 0, :]
        recon_loss = (recon - action).square().mean((-2, -1))
        kl = -0.5 * (1.0 + 2.0 * log_std - mean.square() - std.square()).mean((-2, -1))
        return recon_loss + kl_weight * kl, mean


class Perturbation(nn.Module):
    """BCQ's perturbation net: ``a + Φ·tanh(ξ(s, a))``, clamped to the action box [-1, 1]."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int], phi: float, *, generator: torch.Generator) -> None:
        super().__init__()
        self.phi = phi
        self.net = MLP(state_dim, action_dim, hidden, action_dim, generator=generator)

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        """Perturbed actions ``([G,] B, k, A)`` for states ``([G,] B, S)`` and actions ``([G,] B, k, A)``."""
        return (actions + self.phi * torch.tanh(_own_groups(self.net(states, actions), states))).clamp(-1.0, 1.0)


def _own_groups(out: Tensor, cond: Tensor) -> Tensor:
    """A one-head net's output ``(groups, ...)`` with the group dim kept for grouped inputs
    (``cond`` is ``(G, B, C)``) and dropped for a lone net's ``(B, C)``."""
    return out if cond.dim() == 3 else out[0]


def nets_of(module: nn.Module) -> list[MLP]:
    """The MLPs of ``module``, in a fixed order (the order of their flat tensors in an optimizer)."""
    return [m for m in module.modules() if isinstance(m, MLP)]


def stack(modules: Sequence[nn.Module]) -> nn.Module:
    """One module that computes ``modules`` (lone modules of one architecture, e.g. the critics
    of G agents) as G groups, group g starting from a copy of ``modules[g]``'s parameters.

    The stack has storage of its own: :func:`unstack` copies its values back.
    """
    if not modules:
        raise ValueError("stack: no modules")
    shapes = [[p.shape for p in m.parameters()] for m in modules]
    if any(s != shapes[0] for s in shapes) or any(net.groups != 1 for m in modules for net in nets_of(m)):
        raise ValueError("stack: the modules must be lone nets of one architecture")
    stacked = copy.deepcopy(modules[0])
    for net, *lone in zip(nets_of(stacked), *(nets_of(m) for m in modules)):
        net.groups = len(modules)
        for p, *ps in zip(net.parameters(), *(m.parameters() for m in lone)):
            p.grad = None
            p.data = torch.cat([q.detach() for q in ps])
        net.rebind()
    return stacked


@torch.no_grad()
def unstack(stacked: nn.Module, modules: Sequence[nn.Module]) -> None:
    """Copy group g of ``stacked`` (made by :func:`stack`) into ``modules[g]``, parameter for parameter."""
    for net, *lone in zip(nets_of(stacked), *(nets_of(m) for m in modules)):
        for member, row in zip(lone, net.group_rows(net.flat)):
            member.flat.copy_(row)
