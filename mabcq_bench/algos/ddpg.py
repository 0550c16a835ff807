"""Independent DDPG on one agent's dataset, with no constraint on the actions it learns.

The offline baseline of the paper: the agent treats B_i as a replay buffer and runs DDPG on it.
Nothing keeps its actor near the data, so it suffers the full extrapolation error that BCQ's
generative model and MABCQ's weights address.

One update (:meth:`DDPG.train`): the critic regresses onto y = r + γ(1 − d)·Q̂(s', μ̂(s')) (one
critic, target networks), then the actor ascends Q(s, μ(s)) through the updated critic, then
both targets move by Polyak averaging with τ; ``act`` is μ(s) without noise.

Settings: the MABCQ paper gives its baselines "the same neural network architectures and
hyperparameters as MABCQ" (§4.1), so this is DDPG at Table 6's sizes, batch and rates (Q 1e-3;
the actor takes ξ's 1e-4) with BCQ's τ = 0.005, as MABCQ's critic and ξ use them.

Where we deviate from the paper, and why (the paper cites Lillicrap et al., 2016, and its code
is not public; Fujimoto's offline DDPG baseline in the BCQ repository, ``DDPG.py``, is the
nearest published one):

* The critic has no L2 weight decay (Lillicrap's and the BCQ repository's DDPG: 1e-2) and takes
  the action at its input (theirs: at the second layer): the paper gives DDPG MABCQ's critic,
  which has neither. This is the update of the TD3 repository's re-tuned DDPG (``OurDDPG.py``).
* Networks are MLP (64, 64) with ``torch.nn.Linear`` initialization (``nets.MLP``), batch 1024
  and τ = 0.005 (Table 6 and BCQ), where Lillicrap's are 400-300 with ±3e-3 output layers, an
  input BatchNorm, batch 64 and τ = 0.001 and the BCQ repository's 400-300 with batch 100. The
  learning rates, 1e-3 for the critic and 1e-4 for the actor, are the same in all three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mabcq_bench.algos.common.batch import Batch
from mabcq_bench.algos.common.learner import TorchLearner, to_floats
from mabcq_bench.algos.common.nets import MLP
from mabcq_bench.algos.common.optim import adam
from mabcq_bench.algos.common.params import soft_update, target_copy


@dataclass
class DDPGConfig:
    """Hyperparameters of DDPG; sizes and rates follow Table 6 so it differs from MABCQ only in method."""

    hidden: tuple[int, ...] = (64, 64)  # MLP units of actor and critic, ReLU (Table 6)
    batch_size: int = 1024  # transitions per update (Table 6)
    gamma: float = 0.99  # discount γ (Table 6)
    tau: float = 0.005  # Polyak rate of the target networks
    lr_q: float = 1e-3  # Adam learning rate of the critic (Table 6's rate of Q)
    lr_actor: float = 1e-4  # Adam learning rate of the actor (Table 6's rate of ξ, MABCQ's policy net)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)


class DDPG(TorchLearner):
    """One agent's DDPG: deterministic tanh actor μ(s), critic Q(s, a), target networks."""

    def __init__(self, state_dim: int, action_dim: int, config: DDPGConfig | None = None, *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        config = config or DDPGConfig()
        super().__init__(config, seed, device)
        g = self.init_generator
        self.modules = {
            "critic": MLP(state_dim, action_dim, config.hidden, 1, generator=g),
            "actor": MLP(state_dim, 0, config.hidden, action_dim, generator=g),
        }
        self.modules["critic_target"] = target_copy(self.modules["critic"])
        self.modules["actor_target"] = target_copy(self.modules["actor"])
        self._finish_init()
        m = self.modules
        self.critic, self.actor = m["critic"], m["actor"]
        self.critic_target, self.actor_target = m["critic_target"], m["actor_target"]
        self.optimizers = {"critic": adam(self.critic, config.lr_q), "actor": adam(self.actor, config.lr_actor)}

    @staticmethod
    def _mu(actor: MLP, states: Tensor) -> Tensor:
        """μ(s) ``(B, 1, A)`` in [-1, 1]."""
        return torch.tanh(actor(states)[0])

    def train(self, batch: Batch) -> dict[str, float]:
        c = self.config
        s, a, r, s2, d = batch
        self.updates += 1

        # Critic: y = r + γ(1 − d)·Q'(s', μ'(s')).
        with torch.no_grad():
            y = r + c.gamma * (1.0 - d) * self.critic_target(s2, self._mu(self.actor_target, s2))[0, :, 0, 0]
        q = self.critic(s, a.unsqueeze(1))[0, :, 0, 0]
        q_loss = (q - y).square().mean()
        self.optimizers["critic"].zero_grad()
        q_loss.backward()
        self.optimizers["critic"].step()

        # Actor: maximize Q(s, μ(s)) through the (frozen) updated critic.
        actor_loss = -self.critic(s, self._mu(self.actor, s), frozen=True).mean()
        self.optimizers["actor"].zero_grad()
        actor_loss.backward()
        self.optimizers["actor"].step()

        soft_update(self.critic_target, self.critic, c.tau)
        soft_update(self.actor_target, self.actor, c.tau)
        return to_floats(
            {
                "losses/q": q_loss.detach(),
                "losses/actor": actor_loss.detach(),
                "values/q_mean": q.detach().mean(),
                "values/target_mean": y.mean(),
            }
        )

    @torch.no_grad()
    def act(self, states: np.ndarray) -> np.ndarray:
        return self._mu(self.actor, self._states(states))[:, 0].cpu().numpy()

    @torch.no_grad()
    def value(self, states: np.ndarray) -> np.ndarray:
        s = self._states(states)
        return self.critic(s, self._mu(self.actor, s))[0, :, 0, 0].cpu().numpy()
