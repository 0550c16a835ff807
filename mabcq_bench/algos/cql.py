"""Conservative Q-learning (Kumar et al., 2020), CQL(H) on SAC, for one agent's own dataset.

The agent runs the offline SAC of the CQL paper's continuous-control experiments on B_i: a
tanh-Gaussian actor, twin critics with target networks, automatic entropy tuning, and the CQL(H)
regularizer added to each critic's TD loss,

    α_cql · ( E_s[ log ∫ exp Q(s, a) da ] − E_(s,a)~B_i[ Q(s, a) ] ),

which pushes Q down on actions outside the data and up on the data's own actions. The integral is
estimated by importance sampling as in the CQL code (``min_q_version=3``): N uniform actions on
[-1, 1]^A and N policy actions at s and at s', each Q minus the log-density it was drawn from.

One update (:meth:`CQL.train`), in order, everything from the networks as they were at its start
(as the CQL code computes all losses before stepping any optimizer):

1. Actor at s and s' in one pass: mean and log σ of the Gaussian before tanh.
2. Temperature: minimize −log α · (log π(ã|s) + H̄), ã ~ π(s), H̄ = −|A|.
3. Actor: minimize α·log π(ã|s) − min(Q1, Q2)(s, ã) (through the frozen critic); during the first
   ``bc_warmup_updates`` updates α·log π(ã|s) − log π(a|s) instead, the code's behaviour-cloning
   warm start (``policy_eval_start``), with log π(a|s) of the dataset's actions scored as the
   code's ``log_prob`` does (the Gaussian's mean clamped to ±9).
4. Critic: y = r + γ(1 − d)·min(Q̂1, Q̂2)(s', a'), a' ~ π(s') (no entropy term: the code's
   deterministic backup); loss Σ_j (Q_j(s, a) − y)² + α_cql·gap_j, with the gap of
   :func:`conservative_gap` (or, with ``lagrange``, α'·(α_cql·gap_j − τ) and α' tuned so that
   α_cql·gap stays near the target τ).
5. Target critic: Polyak averaging with τ.

``act`` is the deterministic tanh(mean); ``value`` is min(Q1, Q2) at that action, the value the
actor maximizes. :func:`conservative_gap` is shared with OMAR's critic (``omar.py``).

Settings are the CQL code's for the Gym MuJoCo tasks (``d4rl/examples/cql_mujoco_new.py`` with
the README's command: α_cql = 5 without the Lagrangian, policy rate 1e-4), its networks'
initialization (rlkit: output layers uniform in ±1e-3 for the actor, ±3e-3 for the critics; log σ
clamped to [-5, 2]), raw rewards (``reward_scale=1``) and raw states, as the code trains.

Where we deviate from the paper, and why:

* Networks are MLP (64, 64) (MABCQ's Table 6), not the code's 3 × 256, so that every learner
  of the benchmark has the same capacity; hidden layers are initialized like ``torch.nn.Linear``
  (``nets.MLP``, shared by every learner), where rlkit draws them fan-in uniform with biases 0.1.
* log(1 − tanh(u)²) in log π is computed in closed form, where rlkit adds 1e-6 inside the log:
  the two differ by more than 0.04 per dimension only where |u| > 6, an action within about 1e-5
  of its bound, where the code's floor cuts the log-density's gradient; the closed form is exact
  there (as torch's ``TanhTransform`` and CORL compute it).
* The warm start lasts exactly ``bc_warmup_updates`` updates; the code's counter gives it one
  fewer (39,999 of 40,000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mabcq_bench.algos.common.batch import Batch
from mabcq_bench.algos.common.learner import TorchLearner, to_floats
from mabcq_bench.algos.common.nets import MLP
from mabcq_bench.algos.common.optim import Adam, adam
from mabcq_bench.algos.common.params import soft_update, target_copy

#: Clamp of the actor's log σ: the CQL code's TanhGaussianPolicy (``rlkit/torch/sac/policies.py``
#: of the CQL repository, LOG_SIG_MIN = -5, LOG_SIG_MAX = 2; upstream rlkit and CORL clamp at -20).
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
#: Clamp of the Gaussian's mean where the CQL code's policy scores given actions (its
#: ``log_prob``, used by the behaviour-cloning warm start; MEAN_MIN, MEAN_MAX); sampling does not clamp it.
MEAN_MIN, MEAN_MAX = -9.0, 9.0
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class CQLConfig:
    """Hyperparameters of CQL; defaults are the CQL paper's Gym MuJoCo setting (its code,
    ``examples/cql_mujoco_new.py`` and README) except the network sizes, which are Table 6's."""

    hidden: tuple[int, ...] = (64, 64)  # MLP units of actor and both critics, ReLU (Table 6; the CQL code: 3 × 256)
    batch_size: int = 256  # transitions per update (CQL code, batch_size)
    gamma: float = 0.99  # discount γ (CQL code, discount)
    tau: float = 0.005  # Polyak rate of the target critics (CQL code, soft_target_tau)
    lr_q: float = 3e-4  # Adam learning rate of the twin critics (CQL code, qf_lr)
    lr_actor: float = 1e-4  # Adam learning rate of the actor (CQL README for Gym, policy_lr)
    lr_alpha: float = 1e-4  # Adam learning rate of the entropy temperature log α (CQL code: policy_lr)
    cql_alpha: float = 5.0  # weight α_cql of the CQL(H) term (CQL README for Gym: min_q_weight 5.0, no Lagrange)
    n_actions: int = 10  # N: uniform actions, and policy actions at s and at s', in the log-sum-exp (CQL code, num_random)
    cql_temperature: float = 1.0  # temperature of the log-sum-exp (CQL code, temp)
    lagrange: bool = False  # tune α' by dual descent on the gap (CQL code, with_lagrange; off for Gym)
    target_gap: float = 5.0  # with lagrange: the threshold τ the weighted gap is held at (CQL code, --lagrange_thresh's default)
    lr_alpha_prime: float = 3e-4  # with lagrange: Adam learning rate of log α' (CQL code: qf_lr)
    backup_entropy: bool = False  # subtract α·log π(a'|s') in the target (CQL code: deterministic_backup=True, so no)
    bc_warmup_updates: int = 40_000  # first updates whose actor loss is behaviour cloning (CQL code, --policy_eval_start's default)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)

    def inert_fields(self) -> set[str]:
        """Options that change nothing under this config: the Lagrangian's without it."""
        return set() if self.lagrange else {"target_gap", "lr_alpha_prime"}


class LogScalar(nn.Module):
    """One learnable scalar kept as its logarithm (SAC's log α, CQL's log α'), with a gradient
    buffer that the project's :class:`~mabcq_bench.algos.common.optim.Adam` steps in place."""

    def __init__(self, log_value: float = 0.0) -> None:
        super().__init__()
        self.log_value = nn.Parameter(torch.tensor([log_value]))

    def optimizer(self, lr: float) -> Adam:
        """Adam over this scalar (call after the module is on its device)."""
        p = self.log_value
        p.grad = torch.zeros_like(p)
        return Adam([(p, p.grad)], lr)

    def forward(self) -> Tensor:
        """The scalar itself, exp(log value), shape ``(1,)``."""
        return self.log_value.exp()


def init_output(net: MLP, bound: float, generator: torch.Generator, bias: bool = True) -> None:
    """Draw the output layer's weights (and biases) uniform in ±``bound``: the small last-layer
    init of the CQL and OMAR actors, so that initial actions sit near 0 rather than saturate tanh."""
    with torch.no_grad():
        layers = [net.weights[-1]] + ([net.biases[-1]] if bias else [])
        for p in layers:
            p.copy_((torch.rand(p.shape, generator=generator) * 2.0 - 1.0) * bound)


def _log_tanh_jacobian(u: Tensor) -> Tensor:
    """log(1 − tanh(u)²), written to stay finite for large |u|."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


def sample_tanh_gaussian(mean: Tensor, log_std: Tensor, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``k`` actions per state a = tanh(μ + σ·ε), ε ~ N(0, I), and their log-densities.

    Reparameterized: gradients reach ``mean`` and ``log_std``.

    Args:
        mean, log_std: ``(B, A)`` of the Gaussian before tanh.

    Returns:
        actions ``(B, k, A)`` in (-1, 1) and log π(a|s) ``(B, k)`` (change of variables through tanh).
    """
    eps = torch.randn(mean.shape[0], k, mean.shape[1], generator=generator, device=mean.device)
    u = mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps
    log_prob = (-0.5 * eps.square() - log_std.unsqueeze(1) - _LOG_SQRT_2PI - _log_tanh_jacobian(u)).sum(-1)
    return torch.tanh(u), log_prob


def tanh_gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """log π(a|s) ``(B,)`` of given actions ``(B, A)`` (clipped just inside ±1 so atanh is finite),
    with the mean clamped to [MEAN_MIN, MEAN_MAX] as the CQL code's ``log_prob`` does."""
    u = torch.atanh(actions.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
    z = (u - mean.clamp(MEAN_MIN, MEAN_MAX)) / log_std.exp()
    return (-0.5 * z.square() - log_std - _LOG_SQRT_2PI - _log_tanh_jacobian(u)).sum(-1)


def conservative_gap(
    critic: MLP,
    states: Tensor,
    data_actions: Tensor,
    proposals: Tensor,
    proposal_log_probs: Tensor,
    *,
    n_random: int,
    temperature: float,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """CQL(H)'s regularizer for each head of a critic, and Q of the data actions.

    log ∫ exp Q(s, a) da is estimated by importance sampling (the CQL code's ``min_q_version=3``):
    ``n_random`` actions uniform on [-1, 1]^A (log-density −A·log 2) and the ``proposals`` (e.g.
    policy actions at s and at s'), each contributing Q(s, a_i) − log p(a_i); the constant log of
    the sample count is left out, as in the code (it carries no gradient)::

        gap_j = mean_b T·logsumexp_i((Q_j(s_b, a_i) − log p(a_i)) / T) − mean_b Q_j(s_b, a_b)

    Every action is valued at s, the proposals for s' too (as the code does), in one pass of the
    critic with ``n_random + k + 1`` inputs per state.

    Args:
        critic: the critic (any number of heads H).
        states: ``(B, S)``; data_actions: ``(B, A)`` the dataset's a_i.
        proposals: ``(B, k, A)`` sampled actions, no gradient needed.
        proposal_log_probs: ``(B, k)`` their log-densities (treated as constants).
        n_random: uniform actions per state, drawn from ``generator``.
        temperature: T of the log-sum-exp.

    Returns:
        Q_j(s, a) ``(H, B)`` of the data actions (the TD loss uses it) and the gaps ``(H,)``.
    """
    b, a_dim = data_actions.shape
    uniform = torch.rand(b, n_random, a_dim, generator=generator, device=states.device) * 2.0 - 1.0
    actions = torch.cat([uniform, proposals, data_actions.unsqueeze(1)], 1)  # (B, n + k + 1, A)
    q = critic(states, actions)[..., 0]  # (H, B, n + k + 1)
    log_density = torch.cat([torch.full((b, n_random), -a_dim * math.log(2.0), device=states.device), proposal_log_probs.detach()], 1)
    weighted = q[:, :, :-1] - log_density  # Q − log p: the importance-sampled terms
    q_data = q[:, :, -1]
    gap = temperature * torch.logsumexp(weighted / temperature, dim=2).mean(1) - q_data.mean(1)
    return q_data, gap


class CQL(TorchLearner):
    """One agent's CQL(H)-SAC learner.

    Args:
        state_dim: size of s.
        action_dim: size of the agent's own action a_i.
        config: hyperparameters.
        seed: seeds the initial weights and the noise of training.
        device: torch device.
    """

    def __init__(self, state_dim: int, action_dim: int, config: CQLConfig | None = None, *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        config = config or CQLConfig()
        super().__init__(config, seed, device)
        c, g = config, self.init_generator
        self.action_dim = action_dim
        self.target_entropy = -float(action_dim)  # H̄ = −|A| (SAC's heuristic, the CQL code's default)
        actor = MLP(state_dim, 0, c.hidden, 2 * action_dim, generator=g)  # [mean, log σ]
        init_output(actor, 1e-3, g)  # rlkit's TanhGaussianPolicy: last layers uniform ±1e-3
        critic = MLP(state_dim, action_dim, c.hidden, 1, heads=2, generator=g)
        init_output(critic, 3e-3, g)  # rlkit's Mlp (the CQL code's FlattenMlp critics): last layer uniform ±3e-3
        self.modules = {
            "critic": critic,
            "actor": actor,
            "log_alpha": LogScalar(),  # α starts at 1 (CQL code)
        }
        if c.lagrange:
            self.modules["log_alpha_prime"] = LogScalar()  # α' starts at 1 (CQL code)
        self.modules["critic_target"] = target_copy(self.modules["critic"])
        self._finish_init()
        m = self.modules
        self.critic, self.actor, self.critic_target = m["critic"], m["actor"], m["critic_target"]
        self.alpha: LogScalar = m["log_alpha"]  # type: ignore[assignment]
        self.alpha_prime: LogScalar | None = m.get("log_alpha_prime")  # type: ignore[assignment]
        self.optimizers = {
            "critic": adam(self.critic, c.lr_q),
            "actor": adam(self.actor, c.lr_actor),
            "alpha": self.alpha.optimizer(c.lr_alpha),
        }
        if self.alpha_prime is not None:
            self.optimizers["alpha_prime"] = self.alpha_prime.optimizer(c.lr_alpha_prime)

    def _gaussian(self, states: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clamped log σ ``(B, A)`` of the actor's Gaussian before tanh."""
        mean, log_std = self.actor(states)[0, :, 0].chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def train(self, batch: Batch) -> dict[str, float]:
        c, gen = self.config, self.generators["train"]
        s, a, r, s2, d = batch
        b, n = len(r), c.n_actions
        self.updates += 1

        # 1. The actor at s and s' in one pass.
        mean, log_std = self._gaussian(torch.cat([s, s2]))
        mean_s, log_std_s = mean[:b], log_std[:b]

        # 2. Temperature: log α descends on −log α · (log π + H̄), so α falls while the policy's
        #    entropy is above H̄ and rises when it is below.
        a_pi, log_pi = sample_tanh_gaussian(mean_s, log_std_s, 1, gen)  # (B, 1, A), (B, 1)
        alpha_loss = -(self.alpha.log_value * (log_pi.detach() + self.target_entropy)).mean()
        self.optimizers["alpha"].zero_grad()
        alpha_loss.backward()
        self.optimizers["alpha"].step()
        alpha = self.alpha().detach()  # the stepped α, as the CQL code uses it

        # 3. Actor: maximize min(Q1, Q2)(s, ã) + α·H through the critic, whose weights are frozen here.
        if self.updates <= c.bc_warmup_updates:
            actor_loss = (alpha * log_pi[:, 0] - tanh_gaussian_log_prob(mean_s, log_std_s, a)).mean()
        else:
            q_pi = self.critic(s, a_pi, frozen=True)[..., 0, 0].amin(0)  # (B,)
            actor_loss = (alpha * log_pi[:, 0] - q_pi).mean()
        self.optimizers["actor"].zero_grad()
        actor_loss.backward()
        self.optimizers["actor"].step()

        # 4. Critic. Policy actions come from the actor as it was at the start of the update.
        with torch.no_grad():
            mean, log_std = mean.detach(), log_std.detach()
            a_next, log_pi_next = sample_tanh_gaussian(mean[b:], log_std[b:], 1, gen)
            q_next = self.critic_target(s2, a_next)[..., 0, 0].amin(0)  # min(Q̂1, Q̂2)(s', a')
            if c.backup_entropy:
                q_next = q_next - alpha * log_pi_next[:, 0]
            y = r + c.gamma * (1.0 - d) * q_next
            # Proposals of the log-sum-exp: N policy actions at s and N at s', with log-densities.
            proposals, log_probs = sample_tanh_gaussian(mean, log_std, n, gen)  # (2B, N, A), (2B, N)
            proposals = torch.cat([proposals[:b], proposals[b:]], 1)  # (B, 2N, A)
            log_probs = torch.cat([log_probs[:b], log_probs[b:]], 1)
        q, gap = conservative_gap(self.critic, s, a, proposals, log_probs, n_random=n, temperature=c.cql_temperature, generator=gen)
        td_loss = (q - y).square().mean(1).sum()  # Σ_j mean_b (Q_j(s, a) − y)²
        logs: dict[str, Tensor] = {}
        if self.alpha_prime is not None:
            # Lagrangian: α' ascends on α'·(α_cql·gap − τ) (descends on its negative, averaged
            # over the twin heads, as the code does); the critic sees α' as a constant.
            alpha_prime = self.alpha_prime().clamp(0.0, 1e6)
            excess = c.cql_alpha * gap - c.target_gap  # (2,)
            alpha_prime_loss = -0.5 * (alpha_prime * excess.detach()).sum()
            self.optimizers["alpha_prime"].zero_grad()
            alpha_prime_loss.backward()
            self.optimizers["alpha_prime"].step()
            cql_loss = (alpha_prime.detach() * excess).sum()
            logs["values/alpha_prime"] = alpha_prime.detach()[0]
            logs["losses/alpha_prime"] = alpha_prime_loss.detach()
        else:
            cql_loss = c.cql_alpha * gap.sum()
        q_loss = td_loss + cql_loss
        self.optimizers["critic"].zero_grad()
        q_loss.backward()
        self.optimizers["critic"].step()

        # 5. Target critic.
        soft_update(self.critic_target, self.critic, c.tau)

        logs.update(
            {
                "losses/q": td_loss.detach(),
                "losses/cql": cql_loss.detach(),
                "losses/actor": actor_loss.detach(),
                "losses/alpha": alpha_loss.detach(),
                "values/alpha": alpha[0],
                "values/entropy": -log_pi.detach().mean(),
                "values/cql_gap": gap.detach().mean(),
                "values/q_mean": q.detach().mean(),
                "values/target_mean": y.mean(),
            }
        )
        return to_floats(logs)

    @torch.no_grad()
    def _mode(self, states: Tensor) -> Tensor:
        """The deterministic action tanh(mean) ``(B, 1, A)``."""
        return torch.tanh(self._gaussian(states)[0]).unsqueeze(1)

    @torch.no_grad()
    def act(self, states: np.ndarray) -> np.ndarray:
        """tanh(mean): the deterministic policy CQL is evaluated with (rlkit's MakeDeterministic)."""
        return self._mode(self._states(states))[:, 0].cpu().numpy()

    @torch.no_grad()
    def value(self, states: np.ndarray) -> np.ndarray:
        """min(Q1, Q2)(s, tanh(mean)): the twin minimum the actor maximizes, at the action
        :meth:`act` takes (no noise)."""
        s = self._states(states)
        return self.critic(s, self._mode(s))[..., 0, 0].amin(0).cpu().numpy()
