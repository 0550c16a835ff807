"""Every registered learner: one update, shapes, checkpoints, determinism; the fused networks
against a plain computation; the benchmark's FLOP count and command."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from conftest import plain_mlp, random_batch
from mabcq_bench.algos import ALGOS, Batch, Learner, get_algo, make_learner, resolve_algos
from mabcq_bench.algos.common.nets import MLP
from mabcq_bench.algos.common.process import torch_threads
from mabcq_bench.algos.reference import ZeroAction
from mabcq_bench.algos.bench import update_flops
from mabcq_bench.cli import main
from mabcq_bench.data.tasks import TASKS
from mabcq_bench.errors import UserError

STATE, ACTION = 6, 2
SMALL = {"batch_size": 32, "hidden": (16, 16)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: small nets run fastest so, and it stays fast when other work shares the CPU."""
    with torch_threads(1):
        yield


def batch(n: int = 32, seed: int = 0) -> Batch:
    return random_batch(n, STATE, ACTION, seed)


def states(n: int = 7) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, STATE)).astype(np.float32)


def learner(name: str, seed: int = 0) -> Learner:
    fields = {f.name for f in dataclasses.fields(ALGOS[name].config_cls)}
    return make_learner(name, STATE, ACTION, seed=seed, **{k: v for k, v in SMALL.items() if k in fields})


#: The algorithms that learn (the reference rows zero-action and random train nothing).
LEARNERS = [name for name, spec in ALGOS.items() if not issubclass(spec.learner, ZeroAction)]


def params(l: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for m in l.modules.values() for p in m.parameters()]


@pytest.mark.parametrize("name", LEARNERS)
def test_one_update_finite_losses_and_shapes(name):
    l = learner(name)
    assert isinstance(l, Learner)
    metrics = l.train(batch())
    assert metrics and all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert all("/" in k for k in metrics)  # namespaced: losses/..., weights/..., values/...
    assert any(k.startswith("losses/") for k in metrics)
    actions = l.act(states())
    assert actions.shape == (7, ACTION) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1.0)
    values = l.value(states())
    assert values.shape == (7,)
    assert np.isfinite(values).all() == l.has_value


@pytest.mark.parametrize("name", list(ALGOS))
def test_checkpoint_round_trip(name):
    a = learner(name, seed=0)
    for i in range(3):
        a.train(batch(seed=i))
    a.act(states())  # advance the acting noise too
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = learner(name, seed=99)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    np.testing.assert_array_equal(a.act(states()), b.act(states()))
    assert a.train(batch(seed=5)) == b.train(batch(seed=5))
    for pa, pb in zip(params(a), params(b)):
        assert torch.equal(pa, pb)


def test_checkpoint_of_another_config_is_refused():
    a, b = learner("mabcq"), make_learner("mabcq", STATE, ACTION, seed=0, batch_size=16, hidden=(16, 16))
    with pytest.raises(ValueError, match="config"):
        b.load_state_dict(a.state_dict())


@pytest.mark.parametrize("name", ["mabcq", "ddpg"])
def test_same_seed_same_parameters(name):
    a, b, c = learner(name, seed=3), learner(name, seed=3), learner(name, seed=4)
    for i in range(4):
        for l in (a, b, c):
            l.train(batch(seed=i))
    for pa, pb in zip(params(a), params(b)):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(params(a), params(c)))


def test_registry_and_config_errors():
    assert [s.name for s in resolve_algos("all")] == list(ALGOS)
    assert [s.name for s in resolve_algos("bcq, ddpg")] == ["bcq", "ddpg"]
    assert [s.name for s in resolve_algos("bc,ddpg, bc,ddpg")] == ["bc", "ddpg"]  # once each, in order
    with pytest.raises(UserError, match=r"no algorithm given \(' , '\); give a name"):
        resolve_algos(" , ")
    with pytest.raises(UserError, match="valid algorithms"):
        get_algo("sac")
    with pytest.raises(UserError, match="no option"):
        make_learner("ddpg", STATE, ACTION, seed=0, epsilon=0.5)
    assert ALGOS["bcq"].config().use_vd is False and ALGOS["bcq"].config().use_tn is False
    assert ALGOS["mabcq"].learner is ALGOS["bcq"].learner  # the ablations are flags, not copies


def test_twin_mlp_matches_two_plain_mlps():
    """The fused twin critic (batched weights, split first layer) computes what two ordinary
    MLPs on cat([s, a]) compute, head by head, for k samples per state."""
    net = MLP(STATE, ACTION, (16, 16), 1, heads=2, generator=torch.Generator().manual_seed(0))
    s = torch.randn(5, STATE)
    x = torch.randn(5, 3, ACTION)  # k = 3 samples per state
    out = net(s, x)  # (2, 5, 3, 1)
    w_cond, w_x, b_in, weights, biases = net.unpack()
    inputs = torch.cat([s.unsqueeze(1).expand(-1, 3, -1), x], -1)  # (5, 3, S + A)
    for h in range(2):
        z = torch.relu(inputs @ torch.cat([w_cond[h], w_x[h]]) + b_in[h])
        z = torch.relu(z @ weights[0][h] + biases[0][h])
        plain = z @ weights[1][h] + biases[1][h]
        torch.testing.assert_close(out[h], plain, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(net(s, x, head=h)[0], plain, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the no-grad path (transposed output layer) and the split pieces
        torch.testing.assert_close(net(s, x), out.detach(), rtol=1e-5, atol=1e-6)
        pieces = net.tail(net.project_x(x) + net.project_cond(s).unsqueeze(2))
        torch.testing.assert_close(pieces, out.detach(), rtol=1e-5, atol=1e-6)
    # paired: the k columns and the extra one, with autograd (add, ReLU) and without (fused).
    s2, extra = torch.randn(5, STATE), torch.randn(5, ACTION)
    expect = torch.cat([net(s, x), net(s2, extra.unsqueeze(1))], 2)
    torch.testing.assert_close(net.paired(s, x, s2, extra), expect, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(net.paired(s, x, s2, extra), expect.detach(), rtol=1e-5, atol=1e-6)


def test_frozen_head_passes_gradient_to_inputs_only():
    net = MLP(STATE, ACTION, (8,), 1, heads=2, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 1, ACTION, requires_grad=True)
    net(torch.randn(4, STATE), x, head=0, frozen=True).sum().backward()
    assert x.grad is not None and not net.flat_grad.any()


@pytest.mark.parametrize("name", ["bcq", "mabcq", "mabcq-no-tn", "mabcq-no-vd"])
def test_analytic_flop_count_matches_torch_flop_counter(name):
    spec = ALGOS[name]
    l = spec.learner(17, 3, spec.config(batch_size=128), seed=0)
    g = torch.Generator().manual_seed(0)
    b = Batch(torch.randn(128, 17, generator=g), torch.rand(128, 3, generator=g), torch.randn(128, generator=g), torch.randn(128, 17, generator=g), torch.zeros(128))
    with FlopCounterMode(display=False) as counter:
        l.train(b)
    assert counter.get_total_flops() == update_flops(l.config, 17, 3)


def test_bench_command_prints_one_json_object():
    result = CliRunner().invoke(main, ["bench", "--repeats", "1", "--updates", "1", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"bcq_ms", "mabcq_ms", "ratio", "gflops", "peak_gflops"} <= set(data)
    assert data["bcq_ms"] > 0 and data["mabcq_ms"] > 0 and data["peak_gflops"] > 0
    assert data["ratio"] == pytest.approx(data["mabcq_ms"] / data["bcq_ms"], rel=0.01)
    # joint: every task, every algorithm that trains (the reference rows train nothing)
    trained = {name for name, spec in ALGOS.items() if spec.learner.trains}
    assert set(data["joint"]) == set(TASKS)
    for task, row in data["joint"].items():
        assert set(row) == trained, task
        assert all(ms > 0 for ms in row.values())
    assert "zero-action" not in trained and "mabcq" in trained
    # joint_stacked: the same step stacked, for the algorithms that stack
    assert set(data["joint_stacked"]) == set(TASKS)
    for task, row in data["joint_stacked"].items():
        assert set(row) == {"mabcq", "mabcq-no-tn", "mabcq-no-vd", "bcq"}, task
        assert all(ms > 0 for ms in row.values())
    assert data["adam"]["ours"] > 0 and data["adam"]["torch_fused"] > 0
    assert data["graphed_ms"] == {} and data["joint_graphed"] == {} and data["seeds_graphed"] == {}  # CUDA graphs: on a GPU only


def test_bench_joint_takes_the_tasks_given():
    result = CliRunner().invoke(main, ["bench", "--repeats", "1", "--updates", "1", "--threads", "1", "--env", "hopper"])
    assert result.exit_code == 0, result.output
    assert "hopper" in result.output and "walker" not in result.output
    assert "stacked into one batched update" in result.output
    result = CliRunner().invoke(main, ["bench", "--env", "cartpole"])
    assert result.exit_code == 1 and "unknown task 'cartpole'" in result.output


def test_bench_command_rejects_a_bad_device():
    result = CliRunner().invoke(main, ["bench", "--device", "tpu9"])
    assert result.exit_code == 1
    assert "unknown device" in result.output


def _reference_mabcq_update(l, b: Batch) -> dict[str, float]:
    """A straightforward MABCQ update, written as BCQ's reference code is (repeat_interleave,
    separate twin heads, torch.optim.Adam), on ``l``'s networks and random stream."""
    F = torch.nn.functional
    c, gen = l.config, l.generators["train"]
    s, a, r, s2, d = b
    n, size = c.n_actions, len(r)
    vae_opt = torch.optim.Adam(list(l.vae1.parameters()) + list(l.vae2.parameters()), lr=c.lr_vae)
    critic_opt = torch.optim.Adam(l.critic.parameters(), lr=c.lr_q)
    xi_opt = torch.optim.Adam(l.xi.parameters(), lr=c.lr_xi)

    def vae_loss(vae, cond):
        mean, log_std = plain_mlp(vae.encoder, torch.cat([cond, a], 1)).chunk(2, -1)
        log_std = log_std.clamp(-4, 15)
        std = log_std.exp()
        z = mean + std * torch.randn(mean.shape, generator=gen)
        recon = torch.tanh(plain_mlp(vae.decoder, torch.cat([cond, z], 1)))
        kl = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
        return F.mse_loss(recon, a) + 0.5 * kl, mean.detach()

    def perturb(net, states, actions):
        return (actions + c.phi * torch.tanh(plain_mlp(net, torch.cat([states, actions], 1)))).clamp(-1, 1)

    def soft(net, states, actions):
        x = torch.cat([states, actions], 1)
        q1, q2 = plain_mlp(net, x, 0)[:, 0], plain_mlp(net, x, 1)[:, 0]
        return c.soft_clip * torch.min(q1, q2) + (1 - c.soft_clip) * torch.max(q1, q2)

    loss1, mu1 = vae_loss(l.vae1, s)
    loss2, mu2 = vae_loss(l.vae2, torch.cat([s, s2], 1))
    vae_opt.zero_grad()
    (loss1 + loss2).backward()
    vae_opt.step()
    with torch.no_grad():
        rep = s2.repeat_interleave(n, 0)
        z = torch.randn(size, n, c.latent_dim, generator=gen).clamp(-0.5, 0.5).reshape(size * n, -1)
        sampled = torch.tanh(plain_mlp(l.vae1.decoder, torch.cat([rep, z], 1)))
        v_next = soft(l.critic_target, rep, perturb(l.xi_target.net, rep, sampled)).reshape(size, n).max(1).values
        y = r + c.gamma * (1 - d) * v_next
        expected = (soft(l.critic_target, s, a) - r) / c.gamma
        lambda_vd = (1 + ((1 - d) * v_next - expected) / expected.abs().clamp_min(c.vd_e_floor)).clamp(1 - c.epsilon, 1 + c.epsilon)
        density = lambda mu: torch.exp(-0.5 * mu.pow(2).sum(1))  # noqa: E731  (constants cancel)
        lambda_tn = (density(mu1) / density(mu2)).clamp(*c.tn_clip)
        w = lambda_vd * lambda_tn
        w = w / w.mean()
    x = torch.cat([s, a], 1)
    q_loss = (w * (plain_mlp(l.critic, x, 0)[:, 0] - y) ** 2).mean() + (w * (plain_mlp(l.critic, x, 1)[:, 0] - y) ** 2).mean()
    critic_opt.zero_grad()
    q_loss.backward()
    critic_opt.step()
    with torch.no_grad():
        z = torch.randn(size, 1, c.latent_dim, generator=gen).clamp(-0.5, 0.5)[:, 0]
        sampled = torch.tanh(plain_mlp(l.vae1.decoder, torch.cat([s, z], 1)))
    xi_loss = -(w * plain_mlp(l.critic, torch.cat([s, perturb(l.xi.net, s, sampled)], 1), 0)[:, 0]).mean()
    xi_opt.zero_grad()
    xi_loss.backward()
    xi_opt.step()
    with torch.no_grad():
        for target, online in ((l.critic_target, l.critic), (l.xi_target, l.xi)):
            for pt, p in zip(target.parameters(), online.parameters()):
                pt.mul_(1 - c.tau).add_(c.tau * p)
    return {
        "losses/vae": loss1.item(),
        "losses/vae2": loss2.item(),
        "losses/q": q_loss.item(),
        "losses/xi": xi_loss.item(),
        "weights/lambda_vd_mean": lambda_vd.mean().item(),
        "weights/lambda_tn_mean": lambda_tn.mean().item(),
    }


def test_fast_mabcq_update_equals_a_straightforward_one():
    """The fused, split, transposed update computes the same step as plain BCQ-style code
    (and the hand-written Adam steps as torch.optim.Adam does)."""
    fast = make_learner("mabcq", 17, 3, seed=0, batch_size=256, epsilon=0.5)
    plain = copy.deepcopy(fast)
    b = batch_for(256, 17, 3)
    got = fast.train(b)
    want = _reference_mabcq_update(plain, b)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for name in ("critic", "xi", "vae1", "vae2", "critic_target", "xi_target"):
        flat = [torch.cat([p.detach().flatten() for p in l.modules[name].parameters()]) for l in (fast, plain)]
        torch.testing.assert_close(flat[0], flat[1], rtol=0, atol=1e-6, msg=name)


def batch_for(n: int, state_dim: int, action_dim: int) -> Batch:
    g = torch.Generator().manual_seed(7)
    return Batch(
        torch.randn(n, state_dim, generator=g),
        torch.rand(n, action_dim, generator=g) * 2 - 1,
        torch.rand(n, generator=g) * 2,
        torch.randn(n, state_dim, generator=g),
        (torch.rand(n, generator=g) < 0.1).float(),
    )


def test_epsilon_zero_is_exactly_mabcq_without_value_deviation():
    """ε = 0 clips λ_vd to [1, 1]: the same learner as mabcq-no-vd, parameter for parameter, so the
    ablation's runs are the ε = 0 point of the ε sweep (Figure 4); ε > 0 changes the update."""
    zero = make_learner("mabcq", STATE, ACTION, seed=3, epsilon=0.0, **SMALL)
    no_vd = make_learner("mabcq-no-vd", STATE, ACTION, seed=3, **SMALL)
    some = make_learner("mabcq", STATE, ACTION, seed=3, epsilon=0.5, **SMALL)
    for i in range(5):
        for l in (zero, no_vd, some):
            l.train(batch(seed=i))
    for pa, pb in zip(params(zero), params(no_vd)):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(params(zero), params(some)))


def test_bc_acts_deterministically_and_behavior_samples_g1_like_bcq():
    bc, behavior = (make_learner(name, 17, 3, seed=0, batch_size=64) for name in ("bc", "behavior"))
    assert bc.config.sample_latent is False and behavior.config.sample_latent is True
    batch = random_batch(64, 17, 3)
    for learner in (bc, behavior):
        learner.train(batch)
    states = batch.states[:16].numpy()
    assert np.array_equal(bc.act(states), bc.act(states))  # the prior's mode: no noise
    first, second = behavior.act(states), behavior.act(states)
    assert not np.array_equal(first, second)  # a fresh latent per call, from the act stream
    behavior.reseed("act", 3)
    again = behavior.act(states)
    behavior.reseed("act", 3)
    assert np.array_equal(again, behavior.act(states))
    # the same G¹ (same seed, same data) decodes both: at z = 0 the behaviour policy is bc
    with torch.no_grad():
        z0 = torch.zeros(16, 1, behavior.vae1.latent_dim)
        assert np.allclose(behavior.vae1.decode(batch.states[:16], z0)[:, 0].numpy(), bc.act(states))


def test_the_bench_report_shows_cuda_graph_figures_beside_the_joint_ones():
    from mabcq_bench.algos.bench import format_report

    result = {
        "device": "cuda", "threads": 1, "repeats": 7, "bcq_ms": 10.2, "mabcq_ms": 13.2, "ratio": 1.29, "bcq_gflop": 0.578,
        "mabcq_gflop": 0.683, "bcq_gflops": 56.7, "gflops": 51.7, "peak_gflops": 51224.1, "load_avg": None,
        "graphed_ms": {"bcq": 1.11, "mabcq": 1.39},
        "joint": {"hopper": {"mabcq": 44.0, "td3bc": 14.0}}, "joint_stacked": {"hopper": {"mabcq": 13.2}},
        "joint_graphed": {"hopper": {"mabcq": 2.2}}, "seeds_graphed": {"hopper": {"mabcq": 0.55}},
    }  # fmt: skip
    report = format_report(result)
    assert "0.55 (0.01×)" in report.split("5 seeds' agents in one graphed stack, ms per seed")[1]
    assert "replayed from a CUDA graph (what a cuda run does): bcq 1.11 ms, mabcq 1.39 ms" in report
    graphed = report.split("stacked and replayed from a CUDA graph")[1]
    assert "2.20 (0.05×)" in graphed and "13.20 (0.30×)" in report.split("stacked and replayed")[0]
