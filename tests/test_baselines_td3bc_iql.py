"""TD3+BC and IQL: their updates against straightforward code written from the papers, what each
loss does, TD3+BC's state normalization and policy delay, IQL's expectile, checkpoints, resuming
through the trainer, and their place in the registry and the benchmark."""

from __future__ import annotations

import copy
import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from conftest import plain_mlp, random_batch
from mabcq_bench.algos import ALGOS, Batch, make_learner
from mabcq_bench.algos.common.process import torch_threads
from mabcq_bench.algos.iql import IQL, expectile_loss, split_returns
from mabcq_bench.algos.common.nets import MLP
from mabcq_bench.algos.td3bc import TD3BC
from mabcq_bench.cli import main
from mabcq_bench.data.buffer import AgentData
from mabcq_bench.data.tasks import get_task
from mabcq_bench.errors import UserError
from mabcq_bench.runs.learn import TrainResult, train_agents

STATE, ACTION = 6, 2
SMALL = {"batch_size": 32, "hidden": (16, 16)}
HOPPER = get_task("hopper")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


def shifted_batch(n: int = 32, seed: int = 0) -> Batch:
    """A random batch whose states are far from mean 0, std 1 (so normalization matters)."""
    b = random_batch(n, STATE, ACTION, seed)
    scale = torch.linspace(0.5, 4.0, STATE)
    return b._replace(states=b.states * scale + 3.0, next_states=b.next_states * scale + 3.0)


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def twin(net: MLP, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return plain_mlp(net, inputs, 0)[:, 0], plain_mlp(net, inputs, 1)[:, 0]


def polyak(target: torch.nn.Module, online: torch.nn.Module, tau: float) -> None:
    with torch.no_grad():
        for pt, p in zip(target.parameters(), online.parameters()):
            pt.mul_(1 - tau).add_(tau * p)


def reloaded(learner, name: str):
    """A new ``name`` learner of another seed, never prepared, loaded from ``learner``'s
    checkpoint written to bytes and read back."""
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)
    buffer.seek(0)
    other = make_learner(name, STATE, ACTION, seed=99, **SMALL)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    return other


# --- TD3+BC -------------------------------------------------------------------------------------


def td3bc(**overrides) -> TD3BC:
    return make_learner("td3bc", STATE, ACTION, seed=0, **{**SMALL, **overrides})  # type: ignore[return-value]


def reference_td3bc(l: TD3BC, batches: list[Batch]) -> list[dict[str, float]]:
    """TD3+BC as the paper's Algorithm 1 reads, on ``l``'s networks and random stream, with
    ``torch.optim.Adam`` and separate twin heads."""
    c, gen = l.config, l.generators["train"]
    critic_opt = torch.optim.Adam(l.critic.parameters(), lr=c.lr_q)
    actor_opt = torch.optim.Adam(l.actor.parameters(), lr=c.lr_actor)
    mean, std = l.state_norm.mean, l.state_norm.std
    logs = []
    for it, b in enumerate(batches, start=1):
        s, a, r, s2, d = b
        s, s2 = (s - mean) / std, (s2 - mean) / std
        with torch.no_grad():
            noise = (torch.randn(a.shape, generator=gen) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
            a2 = (torch.tanh(plain_mlp(l.actor_target, s2)) + noise).clamp(-1, 1)
            y = r + c.gamma * (1 - d) * torch.min(*twin(l.critic_target, torch.cat([s2, a2], 1)))
        q1, q2 = twin(l.critic, torch.cat([s, a], 1))
        q_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        critic_opt.zero_grad()
        q_loss.backward()
        critic_opt.step()
        log = {"losses/q": q_loss.item()}
        if it % c.policy_delay == 0:
            pi = torch.tanh(plain_mlp(l.actor, s))
            q = plain_mlp(l.critic, torch.cat([s, pi], 1), 0)
            lmbda = c.alpha / q.abs().mean().detach()
            actor_loss = -lmbda * q.mean() + F.mse_loss(pi, a)
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            polyak(l.critic_target, l.critic, c.tau)
            polyak(l.actor_target, l.actor, c.tau)
            log |= {"losses/actor": actor_loss.item(), "weights/lambda": lmbda.item()}
        logs.append(log)
    return logs


def _assert_matches_reference(fast, reference, batches, modules) -> None:
    """``fast``'s updates on ``batches`` give the metrics of ``reference`` (the paper's update
    written plainly, run on a copy) and end with the same parameters in ``modules``."""
    plain = copy.deepcopy(fast)
    want = reference(plain, batches)
    for b, expected in zip(batches, want):
        got = fast.train(b)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for name in modules:
        flat = [torch.cat([p.detach().flatten() for p in l.modules[name].parameters()]) for l in (fast, plain)]
        torch.testing.assert_close(flat[0], flat[1], rtol=0, atol=1e-6, msg=name)


def test_td3bc_updates_equal_the_papers_algorithm():
    fast = td3bc(batch_size=64)
    batches = [shifted_batch(64, seed=i) for i in range(4)]
    fast.prepare(Batch(*(torch.cat(t) for t in zip(*batches))))
    _assert_matches_reference(fast, reference_td3bc, batches, ("critic", "actor", "critic_target", "actor_target"))


@pytest.mark.parametrize("delay", [2, 3])
def test_td3bc_actor_and_targets_move_every_policy_delay_updates(delay):
    l = td3bc(policy_delay=delay)
    b = shifted_batch()
    frozen = [params(l.actor), params(l.actor_target), params(l.critic_target)]
    for _ in range(delay - 1):
        critic = params(l.critic)
        l.train(b)
        assert not same(critic, params(l.critic))  # the critic steps every update
        assert same(frozen[0], params(l.actor)) and same(frozen[1], params(l.actor_target)) and same(frozen[2], params(l.critic_target))
    l.train(b)
    assert not same(frozen[0], params(l.actor)) and not same(frozen[1], params(l.actor_target)) and not same(frozen[2], params(l.critic_target))


def test_td3bc_lambda_is_alpha_over_mean_abs_q():
    l = td3bc(alpha=2.5)
    b = shifted_batch()
    l.prepare(b)
    metrics = l.train(b)  # update 1: the critic steps, the actor does not
    with torch.no_grad():
        s = l.state_norm(b.states)
        pi = torch.tanh(plain_mlp(l.actor, s))
        q1 = plain_mlp(l.critic, torch.cat([s, pi], 1), 0)
    assert metrics["weights/lambda"] == pytest.approx(2.5 / q1.abs().mean().item(), rel=1e-5)
    assert metrics["losses/bc"] == pytest.approx(F.mse_loss(pi, b.actions).item(), rel=1e-5)


def test_td3bc_critic_loss_falls_on_a_fixed_batch():
    l = td3bc()
    b = shifted_batch()
    l.prepare(b)
    losses = [l.train(b)["losses/q"] for _ in range(300)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_td3bc_with_alpha_zero_clones_the_data_actions():
    """α = 0 leaves only (π(s) − a)²: the actor regresses onto the dataset's actions."""
    l = td3bc(alpha=0.0, lr_actor=1e-3)
    b = shifted_batch()
    l.prepare(b)
    before = np.mean((l.act(b.states.numpy()) - b.actions.numpy()) ** 2)
    for _ in range(600):
        metrics = l.train(b)
    after = np.mean((l.act(b.states.numpy()) - b.actions.numpy()) ** 2)
    assert metrics["weights/lambda"] == 0.0
    assert after < 0.2 * before and metrics["losses/bc"] < 0.2 * before


def test_td3bc_normalizes_states_by_its_own_dataset():
    l = td3bc()
    data = shifted_batch(200, seed=3)
    states = data.states.numpy()
    np.testing.assert_array_equal(l.state_norm.mean.numpy(), 0.0)  # identity until prepared
    l.prepare(data)
    np.testing.assert_allclose(l.state_norm.mean.numpy(), states.mean(0), rtol=1e-5)
    np.testing.assert_allclose(l.state_norm.std.numpy(), states.std(0) + 1e-3, rtol=1e-5)  # population std + eps
    l.train(data.take(torch.arange(32)))
    query = states[:9]
    with torch.no_grad():
        raw = torch.tanh(plain_mlp(l.actor, torch.from_numpy((query - states.mean(0)) / (states.std(0) + 1e-3))))
    np.testing.assert_allclose(l.act(query), raw.numpy(), rtol=1e-5, atol=1e-6)
    off = td3bc(normalize=False)
    off.prepare(data)
    np.testing.assert_array_equal(off.state_norm.std.numpy(), 1.0)
    assert ALGOS["td3bc"].inert({"norm_eps": 0.1, "normalize": False}) == ["norm_eps"]


def test_td3bc_checkpoint_restores_normalization_and_training():
    a = td3bc()
    data = shifted_batch(200, seed=4)
    a.prepare(data)
    for i in range(3):
        a.train(shifted_batch(seed=i))
    b = reloaded(a, "td3bc")
    assert torch.equal(a.state_norm.mean, b.state_norm.mean) and torch.equal(a.state_norm.std, b.state_norm.std)
    states = data.states[:9].numpy()
    np.testing.assert_array_equal(a.act(states), b.act(states))
    np.testing.assert_array_equal(a.value(states), b.value(states))
    for i in range(3, 6):  # through an actor step (update 4) and one without (5)
        assert a.train(shifted_batch(seed=i)) == b.train(shifted_batch(seed=i))
    assert same(params(a.actor), params(b.actor)) and same(params(a.critic_target), params(b.critic_target))


# --- IQL ----------------------------------------------------------------------------------------


def iql(**overrides) -> IQL:
    return make_learner("iql", STATE, ACTION, seed=0, **{**SMALL, **overrides})  # type: ignore[return-value]


def reference_iql(l: IQL, batches: list[Batch]) -> list[dict[str, float]]:
    """IQL as the paper's equations (5), (6), (7) read, in its code's order (V, then the policy
    and Q with the new V, then the target), with torch.optim.Adam and torch's Normal."""
    c = l.config
    value_opt = torch.optim.Adam(l.value_net.parameters(), lr=c.lr_v)
    actor_opt = torch.optim.Adam(list(l.actor.net.parameters()) + [l.actor.log_std], lr=c.lr_actor)
    critic_opt = torch.optim.Adam(l.critic.parameters(), lr=c.lr_q)
    logs = []
    mean, std, scale = l.state_norm.mean, l.state_norm.std, l.reward_scale.scale
    for s, a, r, s2, d in batches:
        s, s2, r = (s - mean) / std, (s2 - mean) / std, r * scale  # the authors' prepared data
        with torch.no_grad():
            q_hat = torch.min(*twin(l.critic_target, torch.cat([s, a], 1)))
        u = q_hat - plain_mlp(l.value_net, s)[:, 0]
        v_loss = (torch.abs(c.expectile - (u < 0).float()) * u**2).mean()  # eq. 5
        value_opt.zero_grad()
        v_loss.backward()
        value_opt.step()
        with torch.no_grad():
            w = torch.exp(c.beta * (q_hat - plain_mlp(l.value_net, s)[:, 0])).clamp(max=c.max_weight)
            y = r + c.gamma * (1 - d) * plain_mlp(l.value_net, s2)[:, 0]
        dist = torch.distributions.Normal(torch.tanh(plain_mlp(l.actor.net, s)), l.actor.log_std.clamp(c.log_std_min, c.log_std_max).exp())
        actor_loss = -(w * dist.log_prob(a).sum(-1)).mean()  # eq. 7
        actor_opt.zero_grad()
        actor_loss.backward()
        actor_opt.step()
        q1, q2 = twin(l.critic, torch.cat([s, a], 1))
        q_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)  # eq. 6
        critic_opt.zero_grad()
        q_loss.backward()
        critic_opt.step()
        polyak(l.critic_target, l.critic, c.tau)
        logs.append({"losses/value": v_loss.item(), "losses/actor": actor_loss.item(), "losses/q": q_loss.item(), "weights/awr_max": w.max().item()})
    return logs


def test_iql_updates_equal_the_papers_equations():
    fast = iql(batch_size=64, beta=50.0)  # β large enough that some weights (14 to 20 %) reach the clip
    batches = [random_batch(64, STATE, ACTION, seed=i) for i in range(3)]
    batches = [b._replace(rewards=b.rewards * 5) for b in batches]
    _assert_matches_reference(fast, reference_iql, batches, ("critic", "value", "actor", "critic_target"))


def test_iql_updates_equal_the_papers_equations_on_prepared_data():
    fast = iql(batch_size=64, beta=50.0)
    fast.prepare(shifted_batch(300, seed=7), np.array([10.0, 250.0, 60.0]))  # scale 1000 / 240
    assert fast.reward_scale.scale.item() == pytest.approx(1000.0 / 240.0)
    batches = [shifted_batch(64, seed=i) for i in range(3)]
    _assert_matches_reference(fast, reference_iql, batches, ("critic", "value", "actor", "critic_target"))


def episodes_with_returns(returns: list[float], length: int = 4) -> list[dict[str, np.ndarray]]:
    """Minari-shaped episodes of ``length`` steps whose rewards sum to ``returns``."""
    rng = np.random.default_rng(0)
    return [
        {
            "observations": rng.normal(size=(length + 1, STATE)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(length, ACTION)).astype(np.float32),
            "rewards": np.full(length, ret / length, np.float32),
            "terminations": np.eye(length, dtype=bool)[-1],
        }
        for ret in returns
    ]


def test_iql_scales_rewards_by_the_return_range_of_complete_episodes():
    # episode 2 is cut short (incomplete): its return (-500) must not widen the range
    data = AgentData.from_episodes(episodes_with_returns([100.0, 300.0, -500.0, 900.0]), incomplete=[2])
    np.testing.assert_allclose(data.episode_returns, [100.0, 300.0, 900.0], rtol=1e-6)
    l = iql()
    l.prepare(Batch.from_agent_data(data), data.episode_returns)
    assert l.reward_scale.scale.item() == pytest.approx(1000.0 / 800.0)
    raw = iql(reward_range=0.0)
    raw.prepare(Batch.from_agent_data(data), data.episode_returns)
    assert raw.reward_scale.scale.item() == 1.0
    # without known episodes: split where a row is terminal or the next row does not continue it
    flat = Batch.from_agent_data(data)
    np.testing.assert_allclose(split_returns(flat), [100.0, 300.0, -500.0, 900.0], rtol=1e-6)
    l2 = iql()
    l2.prepare(flat)
    assert l2.reward_scale.scale.item() == pytest.approx(1000.0 / 1400.0)
    with pytest.raises(ValueError, match="different returns"):
        iql().prepare(flat, np.array([5.0, 5.0]))


def test_iql_checkpoint_keeps_the_reward_scale_and_state_statistics():
    a = iql()
    data = shifted_batch(200, seed=4)
    a.prepare(data, np.array([0.0, 400.0]))
    for i in range(3):
        a.train(shifted_batch(seed=i))
    b = reloaded(a, "iql")
    assert b.reward_scale.scale.item() == 2.5
    assert torch.equal(a.state_norm.mean, b.state_norm.mean) and torch.equal(a.state_norm.std, b.state_norm.std)
    states = data.states[:9].numpy()
    np.testing.assert_array_equal(a.act(states), b.act(states))
    np.testing.assert_array_equal(a.value(states), b.value(states))
    assert a.train(shifted_batch(seed=5)) == b.train(shifted_batch(seed=5))


def test_iql_values_are_in_the_tasks_reward_units():
    a, b = iql(), iql()
    data = shifted_batch(200, seed=4)
    a.prepare(data, np.array([0.0, 1000.0]))  # scale 1
    b.prepare(data, np.array([0.0, 100.0]))  # scale 10: the same task seen in other units
    batch = shifted_batch(seed=1)
    batch = batch._replace(terminals=torch.ones_like(batch.terminals))  # every s' terminal: the critics' target is the (scaled) reward
    ma, mb = a.train(batch), b.train(batch)
    assert ma["values/target_mean"] == pytest.approx(batch.rewards.mean().item(), rel=1e-5)
    assert mb["values/target_mean"] == pytest.approx(batch.rewards.mean().item(), rel=1e-5)  # logged in the task's units
    states = data.states[:5].numpy()
    with torch.no_grad():
        s = b.state_norm(torch.from_numpy(states))
        q = torch.min(*twin(b.critic, torch.cat([s, torch.tanh(plain_mlp(b.actor.net, s))], 1)))
    np.testing.assert_allclose(b.value(states), q.numpy() / 10.0, rtol=1e-5, atol=1e-6)


def test_expectile_loss_weighs_residuals_above_and_below_asymmetrically():
    one = torch.tensor([1.0])
    assert expectile_loss(one, 0.7).item() == pytest.approx(0.7)  # target above V: weight τ
    assert expectile_loss(-one, 0.7).item() == pytest.approx(0.3)  # target below V: weight 1 − τ
    assert expectile_loss(torch.tensor([2.0, -2.0]), 0.9).item() == pytest.approx((0.9 * 4 + 0.1 * 4) / 2)
    u = torch.randn(50, generator=torch.Generator().manual_seed(0))
    assert expectile_loss(u, 0.5).item() == pytest.approx(0.5 * u.square().mean().item())
    # Its minimizer is the τ-expectile: above the mean for τ > 0.5, towards the maximum as τ → 1.
    samples = torch.tensor([0.0, 0.0, 0.0, 1.0])
    for tau, expected in ((0.5, 0.25), (0.7, 0.4375), (0.9, 0.75)):
        m = torch.zeros((), requires_grad=True)
        opt = torch.optim.SGD([m], lr=0.5)
        for _ in range(300):
            opt.zero_grad()
            expectile_loss(samples - m, tau).backward()
            opt.step()
        assert m.item() == pytest.approx(expected, abs=1e-4)  # τ·Σ(x − m)⁺ = (1 − τ)·Σ(m − x)⁺


def test_iql_losses_fall_on_a_fixed_batch_and_weights_are_clipped():
    l = iql()
    b = random_batch(32, STATE, ACTION, seed=1)
    logs = [l.train(b) for _ in range(400)]
    q = [m["losses/q"] for m in logs]
    assert np.mean(q[-10:]) < 0.75 * np.mean(q[:10])
    actor = [m["losses/actor"] for m in logs]
    assert np.mean(actor[-10:]) < np.mean(actor[:10])  # −weighted log-likelihood of the data actions
    assert all(m["weights/awr_max"] <= l.config.max_weight for m in logs)
    hot = iql(beta=200.0)
    metrics = [hot.train(b) for _ in range(20)][-1]
    assert metrics["weights/awr_max"] == 100.0 and metrics["weights/clipped_fraction"] > 0


def test_iql_acts_with_the_policy_mean_and_values_with_the_twin_min():
    l = iql()
    for i in range(3):
        l.train(random_batch(32, STATE, ACTION, seed=i))
    states = random_batch(9, STATE, ACTION, seed=9).states
    first = l.act(states.numpy())
    l.reseed("act", 5)
    np.testing.assert_array_equal(first, l.act(states.numpy()))  # deterministic: no noise used
    with torch.no_grad():
        mean = torch.tanh(plain_mlp(l.actor.net, states))
        q = torch.min(*twin(l.critic, torch.cat([states, mean], 1)))
    np.testing.assert_allclose(first, mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l.value(states.numpy()), q.numpy(), rtol=1e-5, atol=1e-5)


def test_iql_checkpoint_round_trip_includes_log_std():
    a = iql()
    for i in range(3):
        a.train(random_batch(32, STATE, ACTION, seed=i))
    assert not torch.equal(a.actor.log_std.detach(), torch.zeros(ACTION))  # log σ is learned
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = make_learner("iql", STATE, ACTION, seed=99, **SMALL)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    for i in range(3, 5):
        assert a.train(random_batch(32, STATE, ACTION, seed=i)) == b.train(random_batch(32, STATE, ACTION, seed=i))
    assert torch.equal(a.actor.log_std, b.actor.log_std) and same(params(a.value_net), params(b.value_net))


# --- both, through the registry and the trainer -------------------------------------------------


@pytest.mark.parametrize(
    "name, option, value, message",
    [
        ("iql", "expectile", 1.0, r"expectile must be in \(0, 1\)"),
        ("iql", "beta", 0.0, "beta must be in"),
        ("td3bc", "alpha", -1.0, r"alpha must be in \[0, inf\)"),
        ("td3bc", "policy_delay", 0, "policy_delay must be in"),
        ("td3bc", "noise_clip", -0.1, "noise_clip must be in"),
        ("iql", "log_std_min", 3.0, "log_std_min must be below log_std_max"),
    ],
)
def test_config_ranges_are_checked(name, option, value, message):
    with pytest.raises(UserError, match=message):
        make_learner(name, STATE, ACTION, seed=0, **{option: value})


def test_paper_defaults_at_table_6_sizes():
    t, i = ALGOS["td3bc"].config(HOPPER), ALGOS["iql"].config(HOPPER)
    assert (t.hidden, t.batch_size, t.alpha, t.policy_noise, t.noise_clip, t.policy_delay, t.lr_q, t.lr_actor) == ((64, 64), 256, 2.5, 0.2, 0.5, 2, 3e-4, 3e-4)
    assert (i.hidden, i.batch_size, i.expectile, i.beta, i.max_weight, i.tau, i.lr_v) == ((64, 64), 256, 0.7, 3.0, 100.0, 0.005, 3e-4)


def synthetic(agent: int, n: int = 300) -> AgentData:
    """Hopper-shaped data whose states are far from mean 0, std 1."""
    rng = np.random.default_rng(agent)
    f32 = np.float32
    states = rng.normal(3.0, 2.0, size=(n + 1, 11)).astype(f32)
    return AgentData(states[:-1], rng.uniform(-1, 1, size=(n, 1)).astype(f32), rng.normal(1.0, 0.5, size=n).astype(f32), states[1:], (rng.random(n) < 0.05).astype(f32))


DATA = [synthetic(i) for i in range(3)]


def run(algo: str, **kwargs) -> TrainResult:
    options = {"eval_every": 3, "eval_episodes": 2, "diag_states": 50, "threads": 1, "overrides": SMALL}
    options.update(kwargs)
    return train_agents(HOPPER, DATA, algo, updates=6, seed=0, **options)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("algo", ["td3bc", "iql"])
def test_resume_equals_uninterrupted_with_a_finite_coordination_gap(algo, tmp_path):
    straight = run(algo)
    assert ALGOS[algo].learner.has_value
    for e in straight.evaluations:
        assert e.coordination_gap is not None and math.isfinite(e.coordination_gap) and e.coordination_gap >= 0
    assert all(math.isfinite(v) for v in straight.metrics[-1].values())
    if algo == "td3bc":  # each agent normalized by its own dataset
        for learner, d in zip(straight.learners, DATA):
            np.testing.assert_allclose(learner.state_norm.mean.numpy(), d.observations.mean(0), rtol=1e-5)

    def stop_at_5(update: int, metrics: list[dict[str, float]]) -> None:
        if update == 5:
            raise Interrupt

    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupt):  # checkpoint at update 3: mid-way through TD3's policy delay
        run(algo, checkpoint=checkpoint, checkpoint_every=3, on_update=stop_at_5)
    resumed = run(algo, checkpoint=checkpoint, checkpoint_every=3)
    pairs = [(m, n) for a, b in zip(straight.learners, resumed.learners) for m, n in zip(a.modules.values(), b.modules.values())]
    assert all(same(params(m), params(n)) and same(list(m.buffers()), list(n.buffers())) for m, n in pairs)
    assert [(e.update, e.returns, e.coordination_gap) for e in resumed.evaluations] == [(e.update, e.returns, e.coordination_gap) for e in straight.evaluations]
    assert resumed.metrics == straight.metrics


def test_bench_times_both_in_the_joint_table():
    result = CliRunner().invoke(main, ["bench", "--repeats", "1", "--updates", "1", "--threads", "1", "--env", "hopper", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["joint"]["hopper"]
    assert row["td3bc"] > 0 and row["iql"] > 0
