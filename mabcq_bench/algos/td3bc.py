"""TD3+BC (Fujimoto & Gu, 2021, "A Minimalist Approach to Offline Reinforcement Learning") for
one agent, on its own dataset B_i only.

TD3 with one term added to the actor's objective and the states normalized:

* Critic (TD3): twin critics Q1, Q2 regress onto the clipped double-Q target with target policy
  smoothing, y = r + γ(1 − d)·min_j Q̂_j(s', clip(π̂(s') + clip(ε, −c, c), −1, 1)), ε ~ N(0, σ²).
* Actor, every ``policy_delay``-th update (TD3's delayed policy update): minimize
  −λ·Q1(s, π(s)) + (π(s) − a)², λ = α / mean|Q1(s, π(s))| with the mean detached (paper eq. 3),
  so α sets the balance between RL and behaviour cloning whatever the scale of the rewards.
  The target networks move (Polyak τ) on the same updates, as TD3 does.
* States: normalized with the mean and standard deviation of the agent's own dataset (paper §5),
  taken once by :meth:`TD3BC.prepare`; acting and valuing normalize the same way, and the
  statistics travel in checkpoints (buffers of the ``state_norm`` module).

Where we deviate from the paper, and why:

* Networks are MLP (64, 64) (MABCQ's Table 6), not the paper's (256, 256), so that every
  algorithm of the benchmark has the same capacity.
* The deterministic tanh actor outputs actions in the box [-1, 1] (the paper's ``max_action``
  is 1 here), and every net is initialized like ``torch.nn.Linear`` (``nets.MLP``), as the paper's.
* ``losses/actor`` is reported on every update: on the updates that do not step the actor it is
  the objective of the current actor on the batch, computed without gradients, so that the
  trainer's per-interval averages are not diluted by updates without an actor step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mabcq_bench.algos.common.batch import Batch
from mabcq_bench.algos.common.learner import TorchLearner, to_floats
from mabcq_bench.algos.common.nets import MLP
from mabcq_bench.algos.common.normalize import StateNorm
from mabcq_bench.algos.common.optim import adam
from mabcq_bench.algos.common.params import soft_update, target_copy


@dataclass
class TD3BCConfig:
    """Hyperparameters of TD3+BC: the paper's defaults except the network size (Table 6)."""

    hidden: tuple[int, ...] = (64, 64)  # MLP units of actor and critics, ReLU (Table 6; the paper: 256, 256)
    batch_size: int = 256  # transitions per update (paper default)
    gamma: float = 0.99  # discount γ (paper default; Table 6)
    tau: float = 0.005  # Polyak rate of the target networks (paper default)
    lr_q: float = 3e-4  # Adam learning rate of the twin critics (paper default)
    lr_actor: float = 3e-4  # Adam learning rate of the actor (paper default)
    policy_noise: float = 0.2  # std σ of the target policy smoothing noise (paper default, TD3)
    noise_clip: float = 0.5  # the smoothing noise is clipped to [−c, c] (paper default, TD3)
    policy_delay: int = 2  # the actor and the targets update every this many critic updates (paper default, TD3)
    alpha: float = 2.5  # α of λ = α / mean|Q|: weight of the RL term against behaviour cloning (paper default)
    normalize: bool = True  # normalize states by the dataset's mean and std (paper §5)
    norm_eps: float = 1e-3  # added to the states' std, so a constant feature does not divide by zero (paper default)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)

    def inert_fields(self) -> set[str]:
        """Options that change nothing under this config: the normalization's ε without it."""
        return set() if self.normalize else {"norm_eps"}


class TD3BC(TorchLearner):
    """One agent's TD3+BC: deterministic tanh actor π(s), twin critics, targets, state normalization.

    Args:
        state_dim: size of s.
        action_dim: size of the agent's own action a_i.
        config: hyperparameters.
        seed: seeds the initial weights and the smoothing noise.
        device: torch device.
    """

    def __init__(self, state_dim: int, action_dim: int, config: TD3BCConfig | None = None, *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        config = config or TD3BCConfig()
        super().__init__(config, seed, device)
        g = self.init_generator
        self.modules = {
            "critic": MLP(state_dim, action_dim, config.hidden, 1, heads=2, generator=g),
            "actor": MLP(state_dim, 0, config.hidden, action_dim, generator=g),
            "state_norm": StateNorm(state_dim),
        }
        self.modules["critic_target"] = target_copy(self.modules["critic"])
        self.modules["actor_target"] = target_copy(self.modules["actor"])
        self._finish_init()
        m = self.modules
        self.critic, self.actor, self.state_norm = m["critic"], m["actor"], m["state_norm"]
        self.critic_target, self.actor_target = m["critic_target"], m["actor_target"]
        self.optimizers = {"critic": adam(self.critic, config.lr_q), "actor": adam(self.actor, config.lr_actor)}

    def prepare(self, data: Batch, episode_returns: np.ndarray | None = None) -> None:
        """Take the state normalization's statistics from the agent's whole dataset (paper §5)."""
        if self.config.normalize:
            self.state_norm.fit(data.states, self.config.norm_eps)

    @staticmethod
    def _pi(actor: MLP, states: Tensor) -> Tensor:
        """π(s) ``(B, A)`` in [-1, 1] for normalized states ``(B, S)``."""
        return torch.tanh(actor(states)[0, :, 0])

    def train(self, batch: Batch) -> dict[str, float]:
        c, gen = self.config, self.generators["train"]
        s, a, r, s2, d = batch
        s, s2 = self.state_norm(s), self.state_norm(s2)
        self.updates += 1

        # Critic: clipped double Q-learning with target policy smoothing (TD3).
        with torch.no_grad():
            noise = (torch.randn(a.shape, generator=gen, device=a.device) * c.policy_noise).clamp_(-c.noise_clip, c.noise_clip)
            a_next = (self._pi(self.actor_target, s2) + noise).clamp_(-1.0, 1.0)
            q_next = self.critic_target(s2, a_next.unsqueeze(1))[..., 0, 0].amin(0)  # min_j Q̂_j(s', ã')
            y = r + c.gamma * (1.0 - d) * q_next
        q = self.critic(s, a.unsqueeze(1))[..., 0, 0]  # (2, B)
        q_loss = (q - y).square().mean(1).sum()  # MSE(Q1, y) + MSE(Q2, y)
        self.optimizers["critic"].zero_grad()
        q_loss.backward()
        self.optimizers["critic"].step()

        # Actor (delayed): −λ·Q1(s, π(s)) + (π(s) − a)², λ = α / mean|Q1| detached, through the
        # updated critic with its weights frozen. Off the delay, the same objective without grad.
        step_actor = self.updates % c.policy_delay == 0
        with torch.set_grad_enabled(step_actor):
            pi = self._pi(self.actor, s)
            q1 = self.critic(s, pi.unsqueeze(1), head=0, frozen=True)[0, :, 0, 0]
            lmbda = c.alpha / q1.abs().mean().detach()
            bc_loss = (pi - a).square().mean()
            actor_loss = -lmbda * q1.mean() + bc_loss
        if step_actor:
            self.optimizers["actor"].zero_grad()
            actor_loss.backward()
            self.optimizers["actor"].step()
            soft_update(self.critic_target, self.critic, c.tau)
            soft_update(self.actor_target, self.actor, c.tau)

        return to_floats(
            {
                "losses/q": q_loss.detach(),
                "losses/actor": actor_loss.detach(),
                "losses/bc": bc_loss.detach(),
                "weights/lambda": lmbda,
                "values/q_mean": q.detach().mean(),
                "values/target_mean": y.mean(),
            }
        )

    @torch.no_grad()
    def act(self, states: np.ndarray) -> np.ndarray:
        """π(s) for raw states: normalized as in training, deterministic (TD3 evaluates without noise)."""
        return self._pi(self.actor, self.state_norm(self._states(states))).cpu().numpy()

    @torch.no_grad()
    def value(self, states: np.ndarray) -> np.ndarray:
        """Q1(s, π(s)): the critic the actor maximizes, at the action :meth:`act` takes."""
        s = self.state_norm(self._states(states))
        return self.critic(s, self._pi(self.actor, s).unsqueeze(1), head=0)[0, :, 0, 0].cpu().numpy()
