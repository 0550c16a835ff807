"""MABCQ's importance weights (paper §3.2–3.3) as pure functions of tensors.

Both weights are per-sample, carry no gradient, and multiply the per-sample Q loss (eq. 1) and the
ξ objective (eq. 2). They are kept free of networks so that they can be checked by hand
(``tests/test_weights.py``) and reused by other code.

* value deviation   λ_vd = 1 + (V(s') − E) / |E|,   E = (Q̂(s, a_i) − r) / γ,
  clipped to [1 − ε, 1 + ε];
* transition normalization  λ_tn = ρ_N(0,I)(μ¹) / ρ_N(0,I)(μ²) = exp(½‖μ²‖² − ½‖μ¹‖²),
  with μ¹ = E¹'s mean at (s, a_i) and μ² = E²'s mean at (s, a_i, s').
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

#: How λ_vd treats a terminal transition (s' ended the episode), see :func:`value_deviation`.
TerminalMode = Literal["mask", "one"]
#: How the product λ_vd·λ_tn is normalized (the paper's c_i), see :func:`combine`.
WeightNorm = Literal["batch_mean", "none"]


def value_deviation(
    v_next: Tensor,
    q_sa: Tensor,
    reward: Tensor,
    terminal: Tensor,
    *,
    gamma: float,
    epsilon: float | None,
    e_floor: float = 1.0,
    terminal_mode: TerminalMode = "mask",
) -> Tensor:
    """λ_vd for a batch of transitions (paper §3.2.1 and §3.3).

    ``E = (Q̂(s, a) − r)/γ`` is the sample estimate of the expected next-state value
    E_{s'}[V(s')] that the target Q-network has learned; ``V(s') = Q̂(s', π̂(s'))`` is the value of
    the observed next state. A next state worth more than expected gets a weight above one.

    Choices where the paper is silent (each is a config flag of the learner):

    * ``terminal_mode="mask"`` (default): the next-state value is ``(1 − terminal)·V(s')``, the same
      quantity the Bellman target bootstraps from, so V and E measure the same thing (Q̂(s, a) ≈
      r + γ·E[(1 − d)V(s')]); a transition that ends the episode where others from the same (s, a)
      go on is then a low-value next state. ``"one"``: λ_vd = 1 on terminal transitions.
    * ``e_floor``: the denominator is ``max(|E|, e_floor)`` (reward units). With |E| ≈ 0 the ratio
      is 0/0 and its sign is noise; the floor shrinks the deviation there instead. The default 1.0
      is below one step's reward on the MuJoCo tasks, whose values are in the hundreds, so it
      only acts near terminals and where values cross zero. The sign convention is the paper's:
      dividing by |E| keeps "V above its expectation ⇒ weight above one" for negative values too.

    Args:
        v_next: ``(B,)`` V(s') from the target networks.
        q_sa: ``(B,)`` Q̂(s, a) from the target Q-network.
        reward: ``(B,)`` r.
        terminal: ``(B,)`` 1.0 where s' is terminal, else 0.0.
        gamma: discount γ.
        epsilon: optimism level ε; the result is clipped to [1 − ε, 1 + ε]. ``None``: no clip.
        e_floor: lower bound of |E| in the denominator (0 disables; then E = 0 gives inf/nan).
        terminal_mode: ``"mask"`` or ``"one"``, see above.

    Returns:
        ``(B,)`` λ_vd.
    """
    if terminal_mode not in ("mask", "one"):
        raise ValueError(f"terminal_mode must be 'mask' or 'one', got {terminal_mode!r}")
    expected = (q_sa - reward) / gamma
    value = v_next * (1.0 - terminal) if terminal_mode == "mask" else v_next
    scale = expected.abs()
    if e_floor > 0:
        scale = scale.clamp_min(e_floor)
    weight = 1.0 + (value - expected) / scale
    if terminal_mode == "one":
        weight = torch.where(terminal > 0, torch.ones_like(weight), weight)
    if epsilon is not None:
        weight = weight.clamp(1.0 - epsilon, 1.0 + epsilon)
    return weight


def transition_normalization(mu1: Tensor, mu2: Tensor, *, clip: tuple[float, float] | None = (0.2, 1.4)) -> Tensor:
    """λ_tn = ρ_N(0,I)(μ¹) / ρ_N(0,I)(μ²) for a batch (paper §3.3).

    Computed in log space: the normalizing constants of the two unit Gaussians cancel, leaving
    ``exp(½‖μ²‖² − ½‖μ¹‖²)``, which never under- or overflows before the exponential.

    ``clip`` bounds the result. The paper reports that λ_tn "falls into [0.2, 1.4] for almost all
    samples"; the default enforces that range so that a VAE that is still poorly fit (they are
    trained jointly with Q, see the learner's config) cannot put a huge weight on a few samples.
    ``None`` leaves it unclipped.

    Args:
        mu1: ``(B, L)`` G¹'s encoder mean at (s, a_i).
        mu2: ``(B, L)`` G²'s encoder mean at (s, a_i, s').
        clip: ``(low, high)`` or ``None``.

    Returns:
        ``(B,)`` λ_tn.
    """
    log_ratio = 0.5 * (mu2.square().sum(-1) - mu1.square().sum(-1))
    weight = log_ratio.exp()
    if clip is not None:
        weight = weight.clamp(clip[0], clip[1])
    return weight


def combine(lambda_vd: Tensor, lambda_tn: Tensor, norm: WeightNorm = "batch_mean") -> Tensor:
    """The per-sample loss weight λ_vd·λ_tn/c_i.

    The paper folds its normalizer c_i into the sampling probability of (s, a_i), where it cancels
    in expectation (§3.2.3), so eq. (1) uses the bare product. ``"batch_mean"`` (default) divides by
    the product's mean over the minibatch (self-normalized importance sampling): the loss keeps
    BCQ's scale whatever the overall level of the weights (λ_tn's level depends on how two
    separately trained VAEs place their latents), and only the *relative* weights within a batch
    act. ``"none"`` uses the product as is (eq. 1 literally).

    The mean is over the last dim: for a stack of agents' minibatches ``(G, B)``, each agent's
    weights are normalized by its own minibatch's mean.
    """
    weight = lambda_vd * lambda_tn
    if norm == "batch_mean":
        return weight / weight.mean(-1, keepdim=True)
    if norm == "none":
        return weight
    raise ValueError(f"norm must be 'batch_mean' or 'none', got {norm!r}")
