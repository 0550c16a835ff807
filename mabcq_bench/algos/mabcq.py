"""MABCQ (paper §3.3) for one agent, and its ablations: ``mabcq-no-tn``, ``mabcq-no-vd``, ``bcq``.

The four algorithms are this one learner with flags: ``use_vd=False`` fixes λ_vd to 1 and
``use_tn=False`` fixes λ_tn to 1 (and skips G², which only λ_tn needs). With both off the update
is BCQ's (Fujimoto et al., 2019), at Table 6's sizes.

One update (:meth:`MABCQ.train`), in order:

1. VAEs. G¹(s, a) and G²(s, a, s') take one step on their ELBO. Their encoder means μ¹, μ² from
   this forward pass give λ_tn (so λ_tn uses the VAEs as they were at the start of the step).
2. Target, one no-grad pass of the target networks: n actions per s' decoded by G¹, perturbed by
   the target ξ̂, valued by the target twin critics with the soft clipped double-Q rule
   ``λ·min(Q̂1, Q̂2) + (1 − λ)·max(Q̂1, Q̂2)``; the best of the n is V(s') = Q̂(s', π̂(s')). The same
   pass values (s, a) for λ_vd's E. Then y = r + γ(1 − d)·V(s'), λ_vd, and the weight w.
3. Critic: minimize mean_b w_b·[(Q1(s, a) − y)² + (Q2(s, a) − y)²]  (eq. 1).
4. ξ: maximize mean_b w_b·Q1(s, ã + ξ(s, ã)), ã ~ G¹(s)  (eq. 2), through the updated critic.
5. Target networks: Polyak averaging with τ.

Where the paper is silent we chose as follows; each choice is a field of :class:`MABCQConfig`:

* terminal transitions in λ_vd (``vd_terminal="mask"``): V(s') enters as (1 − d)·V(s'), the
  quantity the target bootstraps from, so that V and E = (Q̂(s, a) − r)/γ measure the same thing;
* E near zero (``vd_e_floor=1.0``): the denominator |E| is floored at one reward unit;
* the normalizer c_i (``weight_norm="batch_mean"``): λ_vd·λ_tn is divided by its minibatch mean
  (self-normalized importance weights, BCQ's loss scale); ``"none"`` is eq. (1) literally;
* λ_tn is clipped to the paper's observed range [0.2, 1.4] (``tn_clip``);
* the VAEs train jointly with Q and ξ from the first update, as BCQ's does
  (``vae_pretrain_updates=0``); a positive value pre-fits them first, as Algorithm 1 line 4;
* ξ's objective perturbs actions sampled from G¹, as BCQ and the policy π do
  (``xi_actions="vae"``); ``"data"`` uses the dataset's a_i as eq. (2) is written.

The implementation is fused for speed (one batched net for the twin critics, the state part of
first layers computed once per state, the target pass shared by y and λ_vd, flat parameters and
a few-call Adam) but computes the same update as the straightforward code;
``tests/test_algos.py`` checks this against a plain BCQ-style implementation.

The update is written once, for G agents at a time: every tensor carries a leading group dim
(``s (G, B, S)``, weights ``(G, B)``, each metric ``(G,)``), means are taken per group, and the
twin critics are 2G heads. A lone learner is G = 1 (:meth:`MABCQ.train`). :meth:`MABCQ.stack`
builds one learner from G agents' lone learners (same config and sizes, different seeds, as the
trainer makes them): each group keeps its agent's parameters, Adam moments and random streams and
sees only its own batch, so agent i's update does not depend on agent j's data; what changes is
that every step of the update is one batched call for all the agents instead of one per agent
(``mabcq-bench bench``, ``joint_stacked``). ``tests/test_stack.py`` checks a stack against the lone
learners it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from mabcq_bench.algos import weights as W
from mabcq_bench.algos.common import graphs
from mabcq_bench.algos.common.batch import Batch
from mabcq_bench.algos.common.learner import TorchLearner, group_floats
from mabcq_bench.algos.common.nets import MLP, VAE, Perturbation
from mabcq_bench.algos.common.optim import adam
from mabcq_bench.algos.common.params import soft_update, target_copy


@dataclass
class MABCQConfig:
    """Hyperparameters of MABCQ; the defaults are the paper's Table 6 (or BCQ's where it is silent)."""

    hidden: tuple[int, ...] = (64, 64)  # MLP units of every network (Q, ξ, both VAEs), ReLU (Table 6)
    latent_dim: int = 10  # size of the VAEs' latent z
    batch_size: int = 1024  # transitions per update, sampled uniformly from B_i (Table 6)
    gamma: float = 0.99  # discount γ (Table 6)
    tau: float = 0.005  # Polyak rate of the target networks Q̂ and ξ̂ (BCQ)
    lr_q: float = 1e-3  # Adam learning rate of the twin critics (Table 6)
    lr_xi: float = 1e-4  # Adam learning rate of the perturbation net ξ (Table 6)
    lr_vae: float = 1e-4  # Adam learning rate of G¹ and G² (Table 6)
    phi: float = 0.05  # bound Φ of the perturbation, |ξ| ≤ Φ (Table 6)
    n_actions: int = 10  # n actions sampled from G¹ per state, in the target and in acting (Table 6)
    soft_clip: float = 0.75  # λ of the soft clipped double-Q target λ·min + (1 − λ)·max (BCQ)
    kl_weight: float = 0.5  # weight of the KL term in the VAEs' loss (BCQ)
    epsilon: float = 0.8  # optimism level ε: λ_vd is clipped to [1 − ε, 1 + ε]; per task (tasks.py)
    use_vd: bool = True  # apply value deviation λ_vd; False fixes it to 1 (mabcq-no-vd, bcq)
    use_tn: bool = True  # apply transition normalization λ_tn; False fixes it to 1 and drops G² (mabcq-no-tn, bcq)
    vd_terminal: Literal["mask", "one"] = "mask"  # terminal s' in λ_vd: "mask" uses (1 − d)·V(s') as y does; "one" sets λ_vd = 1
    vd_e_floor: float = 1.0  # |E| in λ_vd's denominator is at least this (reward units), so E ≈ 0 cannot flip or blow up λ_vd
    tn_clip: tuple[float, float] | None = (0.2, 1.4)  # clip range of λ_tn (the paper's observed range); None: unclipped
    weight_norm: Literal["batch_mean", "none"] = "batch_mean"  # the normalizer c_i: divide λ_vd·λ_tn by its batch mean, or not
    vae_pretrain_updates: int = 0  # first updates that fit only G¹, G² (Algorithm 1, line 4); 0: VAEs train jointly with Q, as BCQ's
    xi_actions: Literal["vae", "data"] = "vae"  # actions ξ perturbs in its objective: sampled from G¹ (BCQ, as in acting) or the dataset's a_i (eq. 2 literally)

    def __post_init__(self) -> None:
        if self.vd_terminal not in ("mask", "one"):
            raise ValueError(f"vd_terminal must be 'mask' or 'one', got {self.vd_terminal!r}")
        if self.weight_norm not in ("batch_mean", "none"):
            raise ValueError(f"weight_norm must be 'batch_mean' or 'none', got {self.weight_norm!r}")
        if self.xi_actions not in ("vae", "data"):
            raise ValueError(f"xi_actions must be 'vae' or 'data', got {self.xi_actions!r}")
        if self.tn_clip is not None:
            self.tn_clip = (float(self.tn_clip[0]), float(self.tn_clip[1]))
        self.hidden = tuple(int(h) for h in self.hidden)

    def inert_fields(self) -> set[str]:
        """Options that change nothing under this config: λ_vd's without λ_vd, λ_tn's without λ_tn."""
        out = set()
        if not self.use_vd:
            out |= {"epsilon", "vd_terminal", "vd_e_floor"}
        if not self.use_tn:
            out |= {"tn_clip"}
        return out


class MABCQ(TorchLearner):
    """One agent's MABCQ learner (or an ablation, by its config's flags); stacked, G agents' (see
    :meth:`stack`).

    Args:
        state_dim: size of s.
        action_dim: size of the agent's own action a_i.
        config: hyperparameters.
        seed: seeds the initial weights and the noise of training and acting.
        device: torch device (``"cpu"``, ``"cuda"``).
    """

    stacks = True
    captures = True

    def __init__(self, state_dim: int, action_dim: int, config: MABCQConfig | None = None, *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        config = config or MABCQConfig()
        super().__init__(config, seed, device)
        c, g = config, self.init_generator
        self.state_dim, self.action_dim = state_dim, action_dim
        self.modules = {
            "critic": MLP(state_dim, action_dim, c.hidden, 1, heads=2, generator=g),
            "xi": Perturbation(state_dim, action_dim, c.hidden, c.phi, generator=g),
            "vae1": VAE(state_dim, action_dim, c.latent_dim, c.hidden, generator=g),
        }
        if c.use_tn:
            self.modules["vae2"] = VAE(2 * state_dim, action_dim, c.latent_dim, c.hidden, generator=g)
        self.modules["critic_target"] = target_copy(self.modules["critic"])
        self.modules["xi_target"] = target_copy(self.modules["xi"])
        self._finish_init()
        self.optimizers = {
            "critic": adam(self.critic, c.lr_q),
            "xi": adam(self.xi, c.lr_xi),
            # G¹ and G² share one Adam (same lr): identical to two, with one step call.
            "vae": adam([self.vae1] + ([self.vae2] if self.vae2 is not None else []), c.lr_vae),
        }

    # The networks by name: properties, so that a stack's names are its own stacked modules.

    @property
    def critic(self) -> MLP:
        """The twin critics Q1, Q2: one MLP of two heads (per group)."""
        return self.modules["critic"]  # type: ignore[return-value]

    @property
    def xi(self) -> Perturbation:
        """The perturbation net ξ."""
        return self.modules["xi"]  # type: ignore[return-value]

    @property
    def vae1(self) -> VAE:
        """G¹(s, a): the behaviour policy's VAE."""
        return self.modules["vae1"]  # type: ignore[return-value]

    @property
    def vae2(self) -> VAE | None:
        """G²(s, a, s') for λ_tn; ``None`` without λ_tn."""
        return self.modules.get("vae2")  # type: ignore[return-value]

    @property
    def critic_target(self) -> MLP:
        """The target critics Q̂."""
        return self.modules["critic_target"]  # type: ignore[return-value]

    @property
    def xi_target(self) -> Perturbation:
        """The target perturbation net ξ̂."""
        return self.modules["xi_target"]  # type: ignore[return-value]

    def train(self, batch: Batch) -> dict[str, float]:
        """One update on a minibatch ``batch`` of this agent's transitions; its metrics."""
        return self.train_stacked([batch])[0]

    def train_stacked(self, batches: Sequence[Batch]) -> list[dict[str, float]]:
        """One update of each group, group g on ``batches[g]`` (batches of one size); the
        metrics of each group."""
        if len(batches) != self.groups:
            raise ValueError(f"{len(batches)} batches for a learner of {self.groups} group(s)")
        return group_floats(graphs.run_update(self, self._update, Batch.stacked(batches)))

    def eager_updates(self) -> int:
        return self.config.vae_pretrain_updates

    def _update(self, batch: Batch) -> dict[str, Tensor]:
        """The update of every group on its rows of ``batch`` (fields ``(G, B, ...)``); metrics ``(G,)``.

        The groups' losses are independent, so backpropagating their sum gives each group's
        parameters the gradient of its own loss.
        """
        c, gens = self.config, self.group_generators("train")
        s, a, r, s2, d = batch
        n, groups = c.n_actions, self.groups
        self.updates += 1
        logs: dict[str, Tensor] = {}

        # 1. VAEs: ELBO steps of G¹(s, a) and G²(s, a, s'); their encoder means feed λ_tn.
        vae_loss, mu1 = self.vae1.loss(s, a, gens, c.kl_weight)  # (G,), (G, B, L)
        logs["losses/vae"] = vae_loss.detach()
        total = vae_loss
        if self.vae2 is not None:
            vae2_loss, mu2 = self.vae2.loss(torch.cat([s, s2], -1), a, gens, c.kl_weight)
            logs["losses/vae2"] = vae2_loss.detach()
            total = total + vae2_loss
        self.optimizers["vae"].zero_grad()
        total.sum().backward()
        self.optimizers["vae"].step()
        if self.updates <= c.vae_pretrain_updates:
            return logs

        with torch.no_grad():
            # 2. Target networks, one pass. Columns 0..n-1: (s', ã_j + ξ̂(s', ã_j)), ã_j ~ G¹(s');
            #    column n (only for λ_vd): (s, a).
            a_next = self.xi_target(s2, self.vae1.sample(s2, n, gens))  # (G, B, n, A)
            if c.use_vd:
                q_pair = self.critic_target.paired(s2, a_next, s, a)[..., 0]  # (2G, B, n+1)
            else:
                q_pair = self.critic_target(s2, a_next)[..., 0]  # (2G, B, n)
            q_pair = q_pair.unflatten(0, (groups, 2))  # (G, twin, B, n[+1])
            # Soft clipped double Q: λ·min + (1 − λ)·max over the twin heads.
            q_soft = c.soft_clip * q_pair.amin(1) + (1.0 - c.soft_clip) * q_pair.amax(1)  # (G, B, n[+1])
            v_next = q_soft[..., :n].amax(-1)  # V(s') = Q̂(s', π̂(s')): the best of the n candidates
            y = r + c.gamma * (1.0 - d) * v_next  # (G, B)

            if c.use_vd:
                lambda_vd = W.value_deviation(
                    v_next, q_soft[..., n], r, d, gamma=c.gamma, epsilon=c.epsilon,
                    e_floor=c.vd_e_floor, terminal_mode=c.vd_terminal,
                )  # fmt: skip
            else:
                lambda_vd = torch.ones_like(r)
            if self.vae2 is not None:
                lambda_tn = W.transition_normalization(mu1.detach(), mu2.detach(), clip=c.tn_clip)
            else:
                lambda_tn = torch.ones_like(r)
            w = W.combine(lambda_vd, lambda_tn, c.weight_norm)  # (G, B), normalized per group

        # 3. Critic: weighted squared TD errors of both heads (eq. 1).
        q = self.critic(s, a.unsqueeze(-2))[..., 0, 0].unflatten(0, (groups, 2))  # (G, twin, B)
        q_loss = (w.unsqueeze(1) * (q - y.unsqueeze(1)).square()).sum(1).mean(-1)  # (G,)
        self.optimizers["critic"].zero_grad()
        q_loss.sum().backward()
        self.optimizers["critic"].step()

        # 4. ξ: weighted Q1 of the perturbed actions (eq. 2), through the updated critic whose
        #    weights are frozen here (its gradient is not needed).
        with torch.no_grad():
            base = self.vae1.sample(s, 1, gens) if c.xi_actions == "vae" else a.unsqueeze(-2)
        perturbed = self.xi(s, base)  # (G, B, 1, A)
        q1 = self.critic(s, perturbed, head=0, frozen=True)[:, :, 0, 0]  # (G, B)
        xi_loss = -(w * q1).mean(-1)  # (G,)
        self.optimizers["xi"].zero_grad()
        xi_loss.sum().backward()
        self.optimizers["xi"].step()

        # 5. Target networks.
        soft_update(self.critic_target, self.critic, c.tau)
        soft_update(self.xi_target, self.xi, c.tau)

        logs["losses/q"] = q_loss.detach()
        logs["losses/xi"] = xi_loss.detach()
        logs["values/q_mean"] = q.detach().mean((1, 2))
        logs["values/target_mean"] = y.mean(-1)
        for name, lam in (("lambda_vd", lambda_vd), ("lambda_tn", lambda_tn)):
            logs[f"weights/{name}_mean"] = lam.mean(-1)
            logs[f"weights/{name}_std"] = lam.std(-1)
            logs[f"weights/{name}_min"] = lam.amin(-1)
            logs[f"weights/{name}_max"] = lam.amax(-1)
        logs["weights/w_max"] = w.amax(-1)
        return logs

    @torch.no_grad()
    def _policy(self, states: Tensor, gens: list[torch.Generator]) -> tuple[Tensor, Tensor]:
        """π(s): the best by Q1 of n perturbed G¹ samples (paper §3.3; BCQ), with the noise of
        ``gens`` (one per group). Returns actions ``(G, B, A)`` and their Q1 values ``(G, B)``
        for states ``(G, B, S)``."""
        candidates = self.xi(states, self.vae1.sample(states, self.config.n_actions, gens))  # (G, B, n, A)
        q1 = self.critic(states, candidates, head=0)[..., 0]  # (G, B, n)
        best = q1.argmax(-1, keepdim=True)  # (G, B, 1)
        actions = candidates.gather(2, best.unsqueeze(-1).expand(-1, -1, -1, candidates.shape[-1]))[:, :, 0]
        return actions, q1.gather(-1, best)[..., 0]

    def act(self, states: np.ndarray) -> np.ndarray:
        actions, _ = self._policy(self._states(states).unsqueeze(0), [self.generators["act"]])
        return actions[0].cpu().numpy()

    def value(self, states: np.ndarray) -> np.ndarray:
        """Q1(s, π(s)): the value of the action :meth:`act` would take (the critic that picks it),
        with π's noise from the ``value`` stream, so valuing does not change what is acted."""
        _, q1 = self._policy(self._states(states).unsqueeze(0), [self.generators["value"]])
        return q1[0].cpu().numpy()
