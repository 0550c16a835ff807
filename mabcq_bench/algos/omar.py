"""OMAR (Pan et al., 2022, "Plan Better Amid Conservatism: Offline Multi-Agent RL with Actor
Rectification"), run fully decentralized: each agent has its own critic and actor and sees only
its own dataset B_i (the paper builds its methods "on the independent TD3 based on decentralized
critics"; no centralized critic).

The critic is CQL-regularized twin Q (TD3's clipped double-Q target, CQL(H)'s gap of
:func:`~mabcq_bench.algos.cql.conservative_gap`). The actor is deterministic, and its loss mixes
the policy gradient with a regression onto the best action a zeroth-order search finds on Q1:

    (1 − τ_omar)·(−Q1(s, π(s))) + τ_omar·‖π(s) − â‖² + c_a·‖π(s)‖²

(``omar_coef`` is τ_omar; squared norms are means over the batch and action dimensions, as the
code's ``mse_loss``; ``action_l2`` is c_a). The search (:func:`rectify`) is the code's iterative
sampling: draw ``search_samples`` actions from a Gaussian (initially mean 0 or π(s), std
``search_std``), clip them to [-1, 1], keep the ``search_elites`` best by Q1 (the previous
elites compete too), refit mean and std to the elites, ``search_iters`` times; â is the best
elite, or π(s) when that is at least as good.

States are normalized by the mean and standard deviation of the agent's own dataset, taken once
by :meth:`OMAR.prepare` (the OMAR code's networks normalize their input with a BatchNorm layer,
see below); acting and valuing normalize the same way, and the statistics travel in checkpoints.

One update (:meth:`OMAR.train`), in the order of the OMAR code:

1. Critic (:meth:`OMAR.update_critic`): y = r + γ(1 − d)·min(Q̂1, Q̂2)(s', π̂(s')) (no target
   smoothing, no policy delay); loss Σ_j (Q_j(s, a) − y)² + α_cql·gap_j, with N uniform actions
   and the policy proposals π(s) + ε and π(s') + ε, ε ~ N(0, σ_cql²), clipped to [-1, 1], all
   valued at s; gradient norm clipped; one Adam step.
2. Actor (:meth:`OMAR.update_actor`), through the updated critic, with the search on it;
   gradient norm clipped.
3. Target critic and actor: Polyak averaging with τ.

``act`` is π(s) without noise, as the code evaluates; ``value`` is Q1(s, π(s)).

Settings are the OMAR code's for multi-agent MuJoCo (``main.py``: batch 256, rate 3e-4 for both
nets, τ 0.005, γ 0.99, a search of 2 iterations × 20 samples keeping 5 elites from N(0, 2²);
``algorithms/maddpg.py``: 10 sampled actions, σ_cql 0.2, gradient norms clipped at 0.5, the
actor's 1e-3 penalty on π(s)², its output weights uniform in ±3e-3), raw rewards. The code sets
α_cql and τ_omar per dataset (HalfCheetah: random 1.0 and 1.0, medium-replay 5.0 and 0.9, medium
1.0 and 0.7, expert 5.0 and 0.5); our datasets are none of those four (each mixes early,
intermediate and expert behaviour), and we take the medium values, the middle of the range
(``cql_alpha``, ``omar_coef`` change them).

Where we deviate from the paper, and why:

* Networks are MLP (64, 64) (MABCQ's Table 6), not the code's 256 wide, so that every learner of
  the benchmark has the same capacity.
* States are normalized by fixed dataset statistics where the code puts a BatchNorm layer at the
  input of actor and critics. In training a BatchNorm normalizes every forward pass by that
  pass's own batch (the critic's actions included), so the CQL term's uniform actions, the
  policy's proposals and the data actions each meet a different normalization of one Q
  function; at evaluation it uses running averages of the statistics. We normalize the states
  (not the actions, already in [-1, 1]) by the whole dataset, the same in every pass: what the
  code's BatchNorm converges to at evaluation, without making Q(s, a) depend on the other
  actions of its pass. BatchNorm's learnable scale and shift are left out (the first linear
  layer absorbs them).
* The proposals' importance weight is their log-density log N(ε; 0, σ_cql²), as in CQL's
  estimator; the code's ``calc_gaussian_pdf`` returns the density itself, which it then
  subtracts from Q as if it were the log-density.
* With τ_omar = 0 the search is skipped (its result has no weight), so the actor is exactly
  DDPG's.
* The search keeps a std of 0 as a point mass (a coordinate where all elites agree, common with
  one-dimensional actions clipped to ±1), where ``torch.distributions.Normal`` would refuse it.
* Each agent observes the full state s, as every learner of the benchmark (the code's agents
  see MaMuJoCo's local observation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from mabcq_bench.algos.common.batch import Batch
from mabcq_bench.algos.common.learner import TorchLearner, to_floats
from mabcq_bench.algos.common.nets import MLP
from mabcq_bench.algos.common.normalize import StateNorm
from mabcq_bench.algos.common.optim import Adam, adam
from mabcq_bench.algos.common.params import soft_update, target_copy
from mabcq_bench.algos.cql import conservative_gap, init_output


@dataclass
class OMARConfig:
    """Hyperparameters of OMAR; defaults are the OMAR code's multi-agent MuJoCo (HalfCheetah 2x3)
    setting (``main.py``, ``algorithms/maddpg.py``) except the network sizes, which are Table 6's."""

    hidden: tuple[int, ...] = (64, 64)  # MLP units of actor and both critics, ReLU (Table 6; the OMAR code: 256)
    batch_size: int = 256  # transitions per update (OMAR code, MaMuJoCo)
    gamma: float = 0.99  # discount γ (OMAR code, MaMuJoCo)
    tau: float = 0.005  # Polyak rate of the target networks (OMAR code, MaMuJoCo)
    lr_q: float = 3e-4  # Adam learning rate of the twin critics (OMAR code, MaMuJoCo lr)
    lr_actor: float = 3e-4  # Adam learning rate of the actor (OMAR code, MaMuJoCo lr)
    cql_alpha: float = 1.0  # weight α_cql of the CQL(H) term (OMAR code, HalfCheetah medium; 5.0 for medium-replay and expert)
    n_actions: int = 10  # uniform actions, and noisy policy actions at s and at s', in the log-sum-exp (OMAR code, num_sampled_actions)
    cql_temperature: float = 1.0  # temperature of the log-sum-exp (OMAR code, lse_temp)
    cql_noise: float = 0.2  # std σ_cql of the Gaussian noise on the policy's proposals (OMAR code, cql_sample_noise_level)
    omar_coef: float = 0.7  # τ_omar, weight of the regression onto â (OMAR code, HalfCheetah medium; 0.9 medium-replay, 0.5 expert)
    search_iters: int = 2  # iterations of the sampling search (OMAR code, MaMuJoCo omar_iters)
    search_samples: int = 20  # actions sampled per iteration and state (OMAR code, MaMuJoCo omar_num_samples)
    search_elites: int = 5  # best samples kept to refit the Gaussian (OMAR code, MaMuJoCo omar_num_elites)
    search_std: float = 2.0  # initial std σ₀ of the search Gaussian (OMAR code, omar_sigma)
    search_mean: Literal["zero", "policy"] = "zero"  # initial mean: 0 (OMAR code, omar_mu = 0) or π(s), a search around the policy
    action_l2: float = 1e-3  # weight c_a of the actor's penalty on mean π(s)² (OMAR code)
    grad_clip: float = 0.5  # max gradient norm of critic and actor updates (OMAR code, clip_grad_norm); 0: no clipping
    normalize: bool = True  # normalize states by the dataset's mean and std (the OMAR code's nets normalize their input with BatchNorm)
    norm_eps: float = 1e-3  # added to the states' std, so a constant feature does not divide by zero (as TD3+BC's)

    def __post_init__(self) -> None:
        if self.search_mean not in ("zero", "policy"):
            raise ValueError(f"search_mean must be 'zero' or 'policy', got {self.search_mean!r}")
        if self.search_elites > self.search_samples:
            raise ValueError(f"search_elites ({self.search_elites}) cannot exceed search_samples ({self.search_samples})")
        self.hidden = tuple(int(h) for h in self.hidden)

    def inert_fields(self) -> set[str]:
        """Options that change nothing under this config: the search's when τ_omar = 0, the
        normalization's ε without normalization."""
        out = {"search_iters", "search_samples", "search_elites", "search_std", "search_mean"} if self.omar_coef == 0 else set()
        return out if self.normalize else out | {"norm_eps"}


def clip_grad_norm(optimizer: Adam, max_norm: float) -> Tensor:
    """Scale the optimizer's gradients so their joint L2 norm is at most ``max_norm`` (as
    ``torch.nn.utils.clip_grad_norm_``); returns the norm before clipping."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in optimizer.grads]))
    if max_norm > 0:
        torch._foreach_mul_(optimizer.grads, (max_norm / (norm + 1e-6)).clamp(max=1.0))
    return norm


@torch.no_grad()
def rectify(
    critic: MLP,
    states: Tensor,
    policy_actions: Tensor,
    policy_q: Tensor,
    *,
    iters: int,
    samples: int,
    elites: int,
    init_std: float,
    around_policy: bool,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """OMAR's zeroth-order search for a better action than π(s) on Q1 (head 0 of ``critic``).

    Args:
        states: ``(B, S)``; policy_actions: π(s) ``(B, A)``; policy_q: Q1(s, π(s)) ``(B,)``.
        iters, samples, elites: the search's iterations, samples per iteration, elites kept.
        init_std: std of the first Gaussian; its mean is π(s) if ``around_policy`` else 0.
        generator: the noise of the samples.

    Returns:
        â ``(B, A)`` and Q1(s, â) ``(B,)``: the best elite of the last iteration, or π(s) where
        Q1(s, π(s)) is at least as high, so Q1(s, â) ≥ Q1(s, π(s)) always.
    """
    b, a_dim = policy_actions.shape
    mean = policy_actions.clone() if around_policy else torch.zeros_like(policy_actions)
    std = torch.full_like(policy_actions, init_std)
    elite_a = elite_q = None
    for _ in range(iters):
        noise = torch.randn(b, samples, a_dim, generator=generator, device=states.device)
        cand = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(-1.0, 1.0)  # (B, N, A)
        q = critic(states, cand, head=0)[0, :, :, 0]  # (B, N)
        if elite_a is not None:  # last iteration's elites compete with the new samples
            cand, q = torch.cat([cand, elite_a], 1), torch.cat([q, elite_q], 1)
        elite_q, index = q.topk(elites, dim=1)  # sorted, best first
        elite_a = cand.gather(1, index.unsqueeze(-1).expand(-1, -1, a_dim))
        mean = elite_a.mean(1)
        std = elite_a.std(1) if elites > 1 else torch.zeros_like(mean)  # one elite: a point mass
    assert elite_a is not None and elite_q is not None
    keep = (policy_q >= elite_q[:, 0]).unsqueeze(1)
    return torch.where(keep, policy_actions, elite_a[:, 0]), torch.maximum(policy_q, elite_q[:, 0])


class OMAR(TorchLearner):
    """One agent's OMAR learner: CQL critic, deterministic actor with actor rectification.

    Args:
        state_dim: size of s.
        action_dim: size of the agent's own action a_i.
        config: hyperparameters.
        seed: seeds the initial weights and the noise of training.
        device: torch device.
    """

    def __init__(self, state_dim: int, action_dim: int, config: OMARConfig | None = None, *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        config = config or OMARConfig()
        super().__init__(config, seed, device)
        c, g = config, self.init_generator
        actor = MLP(state_dim, 0, c.hidden, action_dim, generator=g)
        init_output(actor, 3e-3, g, bias=False)  # the OMAR code's actor: output weights uniform ±3e-3
        self.modules = {
            "critic": MLP(state_dim, action_dim, c.hidden, 1, heads=2, generator=g),
            "actor": actor,
            "state_norm": StateNorm(state_dim),
        }
        self.modules["critic_target"] = target_copy(self.modules["critic"])
        self.modules["actor_target"] = target_copy(self.modules["actor"])
        self._finish_init()
        m = self.modules
        self.critic, self.actor, self.state_norm = m["critic"], m["actor"], m["state_norm"]
        self.critic_target, self.actor_target = m["critic_target"], m["actor_target"]
        self.optimizers = {"critic": adam(self.critic, c.lr_q), "actor": adam(self.actor, c.lr_actor)}

    def prepare(self, data: Batch, episode_returns: np.ndarray | None = None) -> None:
        """Take the state normalization's statistics from the agent's whole dataset."""
        if self.config.normalize:
            self.state_norm.fit(data.states, self.config.norm_eps)

    @staticmethod
    def _pi(actor: MLP, states: Tensor) -> Tensor:
        """π(s) ``(B, A)`` in [-1, 1] for normalized states ``(B, S)``."""
        return torch.tanh(actor(states)[0, :, 0])

    def train(self, batch: Batch) -> dict[str, float]:
        self.updates += 1
        batch = batch._replace(states=self.state_norm(batch.states), next_states=self.state_norm(batch.next_states))
        logs = self.update_critic(batch)
        logs.update(self.update_actor(batch.states))
        soft_update(self.critic_target, self.critic, self.config.tau)
        soft_update(self.actor_target, self.actor, self.config.tau)
        return to_floats(logs)

    def update_critic(self, batch: Batch) -> dict[str, Tensor]:
        """Step 1: one step of the CQL-regularized twin critic on a batch whose states are
        normalized; returns its metrics (tensors)."""
        c, gen = self.config, self.generators["train"]
        s, a, r, s2, d = batch
        b, n = len(r), c.n_actions
        with torch.no_grad():
            # TD target from the target networks: clipped double Q at (s', π̂(s')).
            q_next = self.critic_target(s2, self._pi(self.actor_target, s2).unsqueeze(1))[..., 0, 0].amin(0)
            y = r + c.gamma * (1.0 - d) * q_next
            # Proposals: π(s) + ε and π(s') + ε (the online actor), n each, valued at s.
            pi = self._pi(self.actor, torch.cat([s, s2]))  # (2B, A)
            noise = torch.randn(2 * b, n, pi.shape[1], generator=gen, device=s.device) * c.cql_noise
            proposals = (pi.unsqueeze(1) + noise).clamp(-1.0, 1.0)
            log_probs = (-0.5 * (noise / c.cql_noise).square() - math.log(c.cql_noise) - 0.5 * math.log(2.0 * math.pi)).sum(-1)
            proposals = torch.cat([proposals[:b], proposals[b:]], 1)  # (B, 2n, A)
            log_probs = torch.cat([log_probs[:b], log_probs[b:]], 1)
        q, gap = conservative_gap(self.critic, s, a, proposals, log_probs, n_random=n, temperature=c.cql_temperature, generator=gen)
        td_loss = (q - y).square().mean(1).sum()  # Σ_j mean_b (Q_j(s, a) − y)²
        q_loss = td_loss + c.cql_alpha * gap.sum()
        self.optimizers["critic"].zero_grad()
        q_loss.backward()
        grad_norm = clip_grad_norm(self.optimizers["critic"], c.grad_clip)
        self.optimizers["critic"].step()
        return {
            "losses/q": td_loss.detach(),
            "losses/cql": (c.cql_alpha * gap.sum()).detach(),
            "values/cql_gap": gap.detach().mean(),
            "values/q_mean": q.detach().mean(),
            "values/target_mean": y.mean(),
            "values/critic_grad_norm": grad_norm,
        }

    def update_actor(self, states: Tensor) -> dict[str, Tensor]:
        """Step 2: one actor step, (1 − τ_omar)·(−Q1(s, π(s))) + τ_omar·‖π(s) − â‖² + c_a·‖π(s)‖²,
        with â from :func:`rectify` on the current critic, at normalized states ``(B, S)``;
        returns its metrics (tensors)."""
        c = self.config
        pi = self._pi(self.actor, states)  # (B, A)
        q_pi = self.critic(states, pi.unsqueeze(1), head=0, frozen=True)[0, :, 0, 0]  # Q1(s, π(s))
        if c.omar_coef > 0:
            target, q_target = rectify(
                self.critic, states, pi.detach(), q_pi.detach(),
                iters=c.search_iters, samples=c.search_samples, elites=c.search_elites,
                init_std=c.search_std, around_policy=c.search_mean == "policy", generator=self.generators["train"],
            )  # fmt: skip
            mimic = (pi - target).square().mean()
        else:  # τ_omar = 0: the plain deterministic policy gradient, no search
            q_target, mimic = q_pi.detach(), pi.new_zeros(())
        actor_loss = c.omar_coef * mimic - (1.0 - c.omar_coef) * q_pi.mean() + c.action_l2 * pi.square().mean()
        self.optimizers["actor"].zero_grad()
        actor_loss.backward()
        clip_grad_norm(self.optimizers["actor"], c.grad_clip)
        self.optimizers["actor"].step()
        return {
            "losses/actor": actor_loss.detach(),
            "losses/mimic": mimic.detach(),
            "values/search_gain": (q_target - q_pi.detach()).mean(),
        }

    @torch.no_grad()
    def act(self, states: np.ndarray) -> np.ndarray:
        """π(s) for raw states: normalized as in training, deterministic (the code acts without
        exploration noise at evaluation, its BatchNorm on the running statistics)."""
        return self._pi(self.actor, self.state_norm(self._states(states))).cpu().numpy()

    @torch.no_grad()
    def value(self, states: np.ndarray) -> np.ndarray:
        """Q1(s, π(s)): the head the actor maximizes, at the action :meth:`act` takes (no noise)."""
        s = self.state_norm(self._states(states))
        return self.critic(s, self._pi(self.actor, s).unsqueeze(1), head=0)[0, :, 0, 0].cpu().numpy()
