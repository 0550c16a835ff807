"""IQL, Implicit Q-Learning (Kostrikov, Nair & Levine, 2022), for one agent on its own dataset B_i.

IQL never evaluates Q at an action outside the dataset. One update (:meth:`IQL.train`), in the
order of the paper's code:

1. Value: V(s) by expectile regression onto the target twin critics' min_j Q̂_j(s, a) at the
   dataset's own actions, L_V = E[|τ − 1(u < 0)|·u²], u = Q̂(s, a) − V(s)  (paper eq. 5). With
   τ > 0.5 V(s) leans towards the better actions in the data: an in-sample maximum.
2. Policy: advantage-weighted regression, maximize E[exp(β·(Q̂(s, a) − V(s)))·log π(a | s)] with
   the updated V and the weights clipped at ``max_weight``  (eq. 7).
3. Critics: Q1, Q2 regress onto y = r + γ(1 − d)·V(s') with the updated V  (eq. 6).
4. Target critics: Polyak averaging with τ_target.

The policy is the paper's for MuJoCo: a Gaussian with mean tanh(μ(s)) and a state-independent,
learned log σ (clipped to [log_std_min, log_std_max]); it acts with its mean (the paper
evaluates deterministically), so acting needs no noise.

The data are prepared as the authors prepare locomotion data (:meth:`IQL.prepare`, from the
agent's own dataset only, kept in checkpoints as buffers):

* Rewards are multiplied by 1000 / (max − min) of the returns of the dataset's complete episodes
  (the paper's code for MuJoCo locomotion), so that β = 3 weighs advantages in the units the
  authors tuned it in. Without known episodes (a user's flat transitions) the episodes are split
  where a transition is terminal or the next row does not start where it ended, as the authors'
  code splits D4RL's data.
* States are normalized by the dataset's mean and standard deviation (+ ``norm_eps``), as
  CORL's IQL does by default.

Where we deviate from the paper, and why:

* Networks are MLP (64, 64) (MABCQ's Table 6), not the paper's (256, 256), so that every
  algorithm of the benchmark has the same capacity; they are initialized like
  ``torch.nn.Linear`` (``nets.MLP``), not orthogonally as the paper's code, and log σ starts at 0.
* The paper's cosine decay of the actor's learning rate over the run is left out: a learner does
  not know how many updates its run has (protocols differ by tier). The actor's rate is constant.
* :meth:`IQL.value` is min_j Q_j(s, π(s)), the twin critics' min (the Q that IQL's value and
  policy losses use) at the action :meth:`IQL.act` takes, divided by the reward scale: in the
  task's reward units, so the coordination diagnostic compares agents whose datasets (and so
  scales) differ, and compares it with the other algorithms' Q(s, π(s)). The logged values
  (``values/*``) are in the task's units too; the losses are in the scaled units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mabcq_bench.algos.common.batch import Batch
from mabcq_bench.algos.common.learner import TorchLearner, to_floats
from mabcq_bench.algos.common.nets import MLP
from mabcq_bench.algos.common.normalize import RewardScale, StateNorm
from mabcq_bench.algos.common.optim import Adam, adam
from mabcq_bench.algos.common.params import flat_params, soft_update, target_copy


@dataclass
class IQLConfig:
    """Hyperparameters of IQL: the paper's MuJoCo locomotion values except the network size (Table 6)."""

    hidden: tuple[int, ...] = (64, 64)  # MLP units of V, the twin Q and the policy, ReLU (Table 6; the paper: 256, 256)
    batch_size: int = 256  # transitions per update (paper default)
    gamma: float = 0.99  # discount γ (paper default; Table 6)
    tau: float = 0.005  # Polyak rate of the target critics (paper default)
    lr_q: float = 3e-4  # Adam learning rate of the twin critics (paper default)
    lr_v: float = 3e-4  # Adam learning rate of the value net (paper default)
    lr_actor: float = 3e-4  # Adam learning rate of the policy, constant here (paper: cosine decay over the run)
    expectile: float = 0.7  # expectile τ of V's regression (paper, MuJoCo locomotion)
    beta: float = 3.0  # inverse temperature β of the advantage weights (paper, MuJoCo locomotion)
    max_weight: float = 100.0  # the advantage weights exp(β·A) are clipped at this (paper's code)
    log_std_min: float = -10.0  # lower clip of the policy's log σ (paper's code)
    log_std_max: float = 2.0  # upper clip of the policy's log σ (paper's code)
    reward_range: float = 1000.0  # rewards × this / (max − min) of the complete episodes' returns (paper's code, locomotion); 0: raw rewards
    normalize: bool = True  # normalize states by the dataset's mean and std (CORL's IQL default)
    norm_eps: float = 1e-3  # added to the states' std (CORL)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"log_std_min must be below log_std_max, got {self.log_std_min} and {self.log_std_max}")
        if self.reward_range < 0:
            raise ValueError(f"reward_range must be >= 0 (0: raw rewards), got {self.reward_range}")

    def inert_fields(self) -> set[str]:
        """Options that change nothing under this config: the normalization's ε without it."""
        return set() if self.normalize else {"norm_eps"}


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """The asymmetric squared loss of expectile regression, mean of |τ − 1(u < 0)|·u² over ``diff``.

    Args:
        diff: ``u = target − prediction``, any shape.
        expectile: τ in (0, 1): positive residuals (the target above the prediction) weigh τ,
            negative ones 1 − τ; τ = 0.5 is half the mean squared error.
    """
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff.square()).mean()


def split_returns(data: Batch) -> np.ndarray:
    """The returns of the episodes of flat transitions, split where a transition is terminal or
    the next row's state is not this row's next state (the IQL authors' split of D4RL's data;
    the last row ends an episode).

    Returns:
        ``(E,)`` float64 undiscounted returns, episodes in row order.
    """
    states, next_states = data.states.cpu().numpy(), data.next_states.cpu().numpy()
    ends = data.terminals.cpu().numpy() > 0
    ends[:-1] |= np.any(next_states[:-1] != states[1:], axis=1)
    ends[-1] = True
    sums = np.cumsum(data.rewards.cpu().numpy().astype(np.float64))[ends]
    return np.diff(sums, prepend=0.0)


class GaussianPolicy(nn.Module):
    """π(a | s) = N(tanh(μ(s)), diag(σ²)) with σ = exp(log σ) one learned parameter per action dim."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int], *, generator: torch.Generator) -> None:
        super().__init__()
        self.net = MLP(state_dim, 0, hidden, action_dim, generator=generator)
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def mean(self, states: Tensor) -> Tensor:
        """The mean action tanh(μ(s)) ``(B, A)``, in (-1, 1)."""
        return torch.tanh(self.net(states)[0, :, 0])

    def log_prob(self, states: Tensor, actions: Tensor, log_std_min: float, log_std_max: float) -> Tensor:
        """log π(a | s) ``(B,)`` of ``actions (B, A)``, summed over action dims."""
        log_std = self.log_std.clamp(log_std_min, log_std_max)
        z = (actions - self.mean(states)) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - 0.5 * math.log(2.0 * math.pi)).sum(-1)

    def optimizer(self, lr: float) -> Adam:
        """Adam over the MLP's flat parameters and log σ (whose gradient buffer it creates, so
        autograd accumulates into the tensor the optimizer steps)."""
        self.log_std.grad = torch.zeros_like(self.log_std)
        return Adam(flat_params([self.net]) + [(self.log_std, self.log_std.grad)], lr)


class IQL(TorchLearner):
    """One agent's IQL: value net V(s), twin critics Q(s, a) and their targets, Gaussian policy.

    Args:
        state_dim: size of s.
        action_dim: size of the agent's own action a_i.
        config: hyperparameters.
        seed: seeds the initial weights.
        device: torch device.
    """

    def __init__(self, state_dim: int, action_dim: int, config: IQLConfig | None = None, *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        config = config or IQLConfig()
        super().__init__(config, seed, device)
        g = self.init_generator
        self.modules = {
            "critic": MLP(state_dim, action_dim, config.hidden, 1, heads=2, generator=g),
            "value": MLP(state_dim, 0, config.hidden, 1, generator=g),
            "actor": GaussianPolicy(state_dim, action_dim, config.hidden, generator=g),
            "state_norm": StateNorm(state_dim),
            "reward_scale": RewardScale(),
        }
        self.modules["critic_target"] = target_copy(self.modules["critic"])
        self._finish_init()
        m = self.modules
        self.critic, self.value_net, self.critic_target = m["critic"], m["value"], m["critic_target"]
        self.actor: GaussianPolicy = m["actor"]  # type: ignore[assignment]
        self.state_norm, self.reward_scale = m["state_norm"], m["reward_scale"]
        self.optimizers = {
            "value": adam(self.value_net, config.lr_v),
            "actor": self.actor.optimizer(config.lr_actor),
            "critic": adam(self.critic, config.lr_q),
        }

    def prepare(self, data: Batch, episode_returns: np.ndarray | None = None) -> None:
        """Take the reward scale and the state statistics from the agent's whole dataset."""
        if self.config.reward_range:
            if episode_returns is None:
                episode_returns = split_returns(data)
            self.reward_scale.fit(episode_returns, self.config.reward_range)
        if self.config.normalize:
            self.state_norm.fit(data.states, self.config.norm_eps)

    def train(self, batch: Batch) -> dict[str, float]:
        c = self.config
        s, a, r, s2, d = batch
        s, s2, r = self.state_norm(s), self.state_norm(s2), self.reward_scale(r)
        unit = 1.0 / self.reward_scale.scale  # the logged values in the task's reward units
        self.updates += 1

        # 1. Value: expectile regression of V(s) onto min_j Q̂_j(s, a), the dataset's actions only.
        with torch.no_grad():
            q_data = self.critic_target(s, a.unsqueeze(1))[..., 0, 0].amin(0)  # (B,)
        v = self.value_net(s)[0, :, 0, 0]
        v_loss = expectile_loss(q_data - v, c.expectile)
        self.optimizers["value"].zero_grad()
        v_loss.backward()
        self.optimizers["value"].step()

        # The updated V at s (for the advantages) and at s' (for the critics' target), one pass.
        with torch.no_grad():
            v_both = self.value_net(torch.cat([s, s2]))[0, :, 0, 0]
            v_new, v_next = v_both[: len(r)], v_both[len(r) :]
            advantage = q_data - v_new
            weights = torch.exp(c.beta * advantage).clamp_(max=c.max_weight)
            y = r + c.gamma * (1.0 - d) * v_next

        # 2. Policy: advantage-weighted regression, −mean exp(β·A)·log π(a | s).
        actor_loss = -(weights * self.actor.log_prob(s, a, c.log_std_min, c.log_std_max)).mean()
        self.optimizers["actor"].zero_grad()
        actor_loss.backward()
        self.optimizers["actor"].step()

        # 3. Critics: MSE(Q1, y) + MSE(Q2, y), y = r + γ(1 − d)·V(s').
        q = self.critic(s, a.unsqueeze(1))[..., 0, 0]  # (2, B)
        q_loss = (q - y).square().mean(1).sum()
        self.optimizers["critic"].zero_grad()
        q_loss.backward()
        self.optimizers["critic"].step()

        # 4. Target critics.
        soft_update(self.critic_target, self.critic, c.tau)

        return to_floats(
            {
                "losses/value": v_loss.detach(),
                "losses/actor": actor_loss.detach(),
                "losses/q": q_loss.detach(),
                "values/v_mean": v.detach().mean() * unit,
                "values/q_mean": q.detach().mean() * unit,
                "values/target_mean": y.mean() * unit,
                "values/advantage_mean": advantage.mean() * unit,
                "weights/awr_mean": weights.mean(),
                "weights/awr_max": weights.max(),
                "weights/clipped_fraction": (weights >= c.max_weight).float().mean(),
                "values/log_std_mean": self.actor.log_std.detach().clamp(c.log_std_min, c.log_std_max).mean(),
            }
        )

    @torch.no_grad()
    def act(self, states: np.ndarray) -> np.ndarray:
        """The policy's mean tanh(μ(s)) for raw states: deterministic, as the paper evaluates."""
        return self.actor.mean(self.state_norm(self._states(states))).cpu().numpy()

    @torch.no_grad()
    def value(self, states: np.ndarray) -> np.ndarray:
        """min_j Q_j(s, π(s)) at the action :meth:`act` takes, in the task's reward units."""
        s = self.state_norm(self._states(states))
        q = self.critic(s, self.actor.mean(s).unsqueeze(1))[..., 0, 0].amin(0)
        return (q / self.reward_scale.scale).cpu().numpy()
