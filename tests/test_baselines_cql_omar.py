"""The cql and omar baselines: their updates move what their papers say they move, checkpoints
continue bit for bit, decentralized runs resume exactly, and they are in the benchmark."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import random_batch, synthetic_agent_data
from mabcq_bench.algos import ALGOS, make_learner
from mabcq_bench.algos.common.process import torch_threads
from mabcq_bench.algos.cql import tanh_gaussian_log_prob
from mabcq_bench.algos.common.nets import MLP
from mabcq_bench.algos.omar import rectify
from mabcq_bench.cli import main
from mabcq_bench.data.tasks import get_task
from mabcq_bench.errors import UserError
from mabcq_bench.runs.learn import TrainResult, train_agents

STATE, ACTION = 6, 2
SMALL = {"batch_size": 64, "hidden": (32, 32)}
HOPPER = get_task("hopper")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


def params(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for m in learner.modules.values() for p in m.parameters()]


# ---------------------------------------------------------------------------------------- CQL


def _soft_gap(learner, batch, samples: int = 200) -> float:
    """mean_s [min_j Q_j(s, a_data) − log mean_i exp min_j Q_j(s, a_i)], a_i uniform: how far the
    data's actions stand above the average out-of-data action."""
    g = torch.Generator().manual_seed(123)
    s, a = batch.states, batch.actions
    with torch.no_grad():
        q_data = learner.critic(s, a.unsqueeze(1))[..., 0, 0].amin(0)
        uniform = torch.rand(len(s), samples, a.shape[1], generator=g) * 2 - 1
        q_rand = learner.critic(s, uniform)[..., 0].amin(0)  # (B, samples)
        soft_max = torch.logsumexp(q_rand, 1) - math.log(samples)
    return float((q_data - soft_max).mean())


def test_cql_term_lowers_q_off_the_data_and_raises_it_on_the_data():
    """Against plain SAC (α_cql = 0) from the same seed on the same fixed batch, CQL's critic
    ranks the data's actions above random ones by a wider margin."""
    batch = random_batch(64, STATE, ACTION, seed=3)
    cql = make_learner("cql", STATE, ACTION, seed=0, lr_q=3e-3, **SMALL)  # a faster critic: fewer updates
    sac = make_learner("cql", STATE, ACTION, seed=0, lr_q=3e-3, cql_alpha=0.0, **SMALL)
    before = _soft_gap(cql, batch)
    assert before == _soft_gap(sac, batch)  # same initial critic
    for _ in range(60):
        m_cql, m_sac = cql.train(batch), sac.train(batch)
    assert m_sac["losses/cql"] == 0.0 and m_cql["losses/cql"] > 0.0
    gap_cql, gap_sac = _soft_gap(cql, batch), _soft_gap(sac, batch)
    assert gap_cql > gap_sac + 0.2 and gap_cql > before + 0.2, (before, gap_sac, gap_cql)
    assert m_cql["values/cql_gap"] < m_sac["values/cql_gap"]


def _set_log_std(learner, log_std: float) -> None:
    """Make the CQL actor's log σ the constant ``log_std`` (output weights of that half zeroed)."""
    net = learner.actor
    with torch.no_grad():
        net.weights[-1][..., ACTION:] = 0.0
        net.biases[-1][..., ACTION:] = log_std


@pytest.mark.parametrize("log_std, rises", [(0.0, False), (-8.0, True)])
def test_cql_temperature_moves_toward_the_target_entropy(log_std, rises):
    """α falls while the policy's entropy is above the target −|A| and rises while it is below."""
    learner = make_learner("cql", STATE, ACTION, seed=0, **SMALL)
    _set_log_std(learner, log_std)
    m = learner.train(random_batch(64, STATE, ACTION))
    assert learner.target_entropy == -ACTION
    assert (m["values/entropy"] < learner.target_entropy) == rises
    alpha = float(learner.alpha().detach())
    assert (alpha > 1.0) if rises else (alpha < 1.0), alpha


def test_cql_output_layers_start_small_as_in_the_cql_code():
    """rlkit's init in the CQL code: the critics' last layer uniform in ±3e-3, the actor's ±1e-3
    (weights and biases); hidden layers keep nets.MLP's torch.nn.Linear init."""
    learner = make_learner("cql", STATE, ACTION, seed=0, **SMALL)
    for net, bound in ((learner.critic, 3e-3), (learner.actor, 1e-3)):
        for p in (net.weights[-1], net.biases[-1]):
            assert p.abs().max() <= bound and p.abs().max() > bound / 2
    assert learner.critic.weights[0].abs().max() > 0.1  # a hidden layer: ±1/sqrt(32)
    assert torch.equal(learner.critic_target.weights[-1], learner.critic.weights[-1])


def test_cql_actor_log_std_is_clamped_to_the_cql_codes_range():
    """The CQL code's TanhGaussianPolicy clamps log σ to [-5, 2] (upstream rlkit: [-20, 2])."""
    learner = make_learner("cql", STATE, ACTION, seed=0, **SMALL)
    s = random_batch(8, STATE, ACTION, seed=2).states
    for raw, clamped in ((-8.0, -5.0), (-3.0, -3.0), (4.0, 2.0)):
        _set_log_std(learner, raw)
        torch.testing.assert_close(learner._gaussian(s)[1], torch.full((8, ACTION), clamped))


@pytest.mark.parametrize("target_gap, rises", [(-100.0, True), (100.0, False)])
def test_cql_lagrange_weight_rises_while_the_gap_exceeds_its_target(target_gap, rises):
    learner = make_learner("cql", STATE, ACTION, seed=0, lagrange=True, target_gap=target_gap, **SMALL)
    m = learner.train(random_batch(64, STATE, ACTION))
    assert m["values/alpha_prime"] == 1.0  # α' before its first step
    alpha_prime = float(learner.alpha_prime().detach())
    assert (alpha_prime > 1.0) if rises else (alpha_prime < 1.0), alpha_prime
    assert make_learner("cql", STATE, ACTION, seed=0).alpha_prime is None  # off by default (Gym setting)


def test_cql_behaviour_cloning_warm_start_pulls_the_policy_to_the_data():
    batch = random_batch(64, STATE, ACTION, seed=1)
    batch = batch._replace(actions=torch.full_like(batch.actions, 0.5))
    learner = make_learner("cql", STATE, ACTION, seed=0, bc_warmup_updates=200, lr_actor=3e-3, **SMALL)
    for _ in range(200):
        learner.train(batch)
    np.testing.assert_allclose(learner.act(batch.states.numpy()), 0.5, atol=0.1)


def test_cql_warm_start_lasts_bc_warmup_updates_updates():
    """Learners that differ only in the warm start's length take the same steps while both clone
    and part on the first update where one of them has switched to the SAC actor loss."""
    batches = [random_batch(64, STATE, ACTION, seed=i) for i in range(3)]
    short, long = (make_learner("cql", STATE, ACTION, seed=0, bc_warmup_updates=n, **SMALL) for n in (2, 3))
    for i, b in enumerate(batches):
        assert (short.train(b) == long.train(b)) == (i < 2)


def test_cql_defaults_are_the_cql_codes_gym_setting():
    c = ALGOS["cql"].config(HOPPER)
    assert (c.hidden, c.batch_size, c.gamma, c.tau, c.lr_q, c.lr_actor, c.lr_alpha) == ((64, 64), 256, 0.99, 0.005, 3e-4, 1e-4, 1e-4)
    assert (c.cql_alpha, c.n_actions, c.cql_temperature, c.lagrange, c.backup_entropy) == (5.0, 10, 1.0, False, False)
    assert (c.bc_warmup_updates, c.target_gap, c.lr_alpha_prime) == (40_000, 5.0, 3e-4)


def test_cql_warm_start_scores_data_actions_with_the_mean_clamped_at_9():
    """As the CQL code's ``log_prob``: a pre-tanh mean beyond ±9 scores the data actions as ±9
    does, so the warm start's gradient does not push a saturated mean further."""
    actions = torch.tensor([[0.999, -0.5], [0.2, 0.9]])
    log_std = torch.full((2, 2), -1.0)
    at_9 = tanh_gaussian_log_prob(torch.tensor([[9.0, -9.0], [9.0, 0.0]]), log_std, actions)
    beyond = tanh_gaussian_log_prob(torch.tensor([[20.0, -15.0], [9.5, 0.0]]), log_std, actions)
    torch.testing.assert_close(beyond, at_9)
    inside = tanh_gaussian_log_prob(torch.tensor([[8.0, -9.0], [9.0, 0.0]]), log_std, actions)
    assert not torch.allclose(inside, at_9)


def test_cql_acts_deterministically_with_the_policy_mode():
    learner = make_learner("cql", STATE, ACTION, seed=0, **SMALL)
    learner.train(random_batch(64, STATE, ACTION))
    s = random_batch(8, STATE, ACTION, seed=2).states
    first = learner.act(s.numpy())
    learner.reseed("act", 5)
    assert np.array_equal(first, learner.act(s.numpy()))
    with torch.no_grad():
        mode = torch.tanh(learner.actor(s)[0, :, 0, :ACTION])
        q = learner.critic(s, mode.unsqueeze(1))[..., 0, 0].amin(0)
    np.testing.assert_allclose(first, mode.numpy(), rtol=0, atol=1e-7)
    np.testing.assert_allclose(learner.value(s.numpy()), q.numpy(), rtol=1e-6, atol=1e-6)  # min of the twin


# --------------------------------------------------------------------------------------- OMAR

#: A hand-made Q(a) for one-dimensional actions, the same at every state, with a local peak
#: Q(−0.5) = 0 and the global peak Q(0.6) = 1 (Q(−1) = −0.5, Q(0) = −0.5, Q(1) = 0.5).
KNOTS = [-1.0, -0.5, 0.0, 0.6]
SLOPE_CHANGES = [1.0, -2.0, 3.5, -3.75]


def two_peaks(a: torch.Tensor) -> torch.Tensor:
    return -0.5 + sum(w * torch.relu(a - k) for w, k in zip(SLOPE_CHANGES, KNOTS))


def _install_two_peaks(critic: MLP) -> None:
    """Q_j(s, a) = two_peaks(a) on both heads of a (4, 4) critic, exactly."""
    with torch.no_grad():
        for p in critic.parameters():
            p.zero_()
        critic.w_x[:, 0, :] = 1.0
        critic.b_in[:, 0, :] = -torch.tensor(KNOTS)
        critic.weights[0][:] = torch.eye(4)
        critic.weights[1][:, :, 0] = torch.tensor(SLOPE_CHANGES)
        critic.biases[1][:] = -0.5


def _omar(state_dim: int = STATE, action_dim: int = 1, **overrides):
    return make_learner("omar", state_dim, action_dim, seed=0, **{"hidden": (4, 4), "batch_size": 64, **overrides})


def _start_at(learner, action: float) -> None:
    """π(s) = ``action`` at every state."""
    with torch.no_grad():
        learner.actor.weights[-1].zero_()
        learner.actor.biases[-1].fill_(math.atanh(action))


def test_two_peaks_critic_is_what_it_says():
    learner = _omar()
    _install_two_peaks(learner.critic)
    a = torch.tensor([-1.0, -0.5, 0.0, 0.6, 1.0, 0.3])
    s = torch.randn(len(a), STATE)
    q = learner.critic(s, a.view(-1, 1, 1))[..., 0, 0]
    torch.testing.assert_close(q, two_peaks(a).expand(2, -1))
    torch.testing.assert_close(two_peaks(a[:5]), torch.tensor([-0.5, 0.0, -0.5, 1.0, 0.5]))


@pytest.mark.parametrize("mean", ["zero", "policy"])
def test_search_never_returns_worse_than_the_policy_and_finds_the_global_peak(mean):
    learner = _omar(search_mean=mean)
    _install_two_peaks(learner.critic)
    s = torch.randn(256, STATE)
    pi = torch.rand(256, 1) * 2 - 1  # policy actions anywhere, some better than most samples
    q_pi = two_peaks(pi)[:, 0]
    c, g = learner.config, torch.Generator().manual_seed(0)
    best, q_best = rectify(
        learner.critic, s, pi, q_pi, iters=c.search_iters, samples=c.search_samples, elites=c.search_elites,
        init_std=c.search_std, around_policy=mean == "policy", generator=g,
    )  # fmt: skip
    assert best.shape == (256, 1) and best.abs().max() <= 1.0
    torch.testing.assert_close(q_best, two_peaks(best)[:, 0])  # the value returned is the action's
    assert (q_best >= q_pi).all()
    kept = (best == pi).all(1)
    assert (q_pi[kept] >= q_best[kept]).all()  # π(s) is kept only where the search found nothing better
    assert (best[~kept] - 0.6).abs().median() < 0.1  # with σ₀ = 2 most searches end near the global peak


@pytest.mark.parametrize("coef, peak", [(1.0, 0.6), (0.0, -0.5)])
def test_actor_follows_the_search_at_coef_one_and_the_gradient_at_coef_zero(coef, peak):
    """τ_omar = 1 regresses π(s) onto the search's best action, out of the local optimum it starts
    in; τ_omar = 0 is plain gradient ascent on Q1, which stays at the local peak."""
    learner = _omar(omar_coef=coef, action_l2=0.0, lr_actor=3e-3)
    _install_two_peaks(learner.critic)
    _start_at(learner, -0.4)
    s = torch.randn(64, STATE, generator=torch.Generator().manual_seed(0))
    for _ in range(400):
        logs = learner.update_actor(s)
    actions = learner.act(s.numpy())
    assert abs(np.median(actions) - peak) < 0.05 and np.abs(actions - peak).max() < 0.2  # â jitters around the peak
    assert (float(logs["losses/mimic"]) > 0) == (coef > 0)


def test_coef_zero_is_exactly_a_deterministic_policy_gradient_step():
    learner, reference = (_omar(action_dim=ACTION, hidden=(16, 16), omar_coef=0.0, action_l2=0.0, grad_clip=0.0) for _ in range(2))
    for l in (learner, reference):  # the same seed and history: the same networks
        l.train(random_batch(64, STATE, ACTION))
    s = random_batch(64, STATE, ACTION, seed=4).states
    learner.update_actor(s)
    pi = torch.tanh(reference.actor(s)[0, :, 0])
    loss = -reference.critic(s, pi.unsqueeze(1), head=0, frozen=True).mean()  # DDPG's actor loss on Q1
    reference.optimizers["actor"].zero_grad()
    loss.backward()
    reference.optimizers["actor"].step()
    for a, b in zip(params(learner), params(reference)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def _far_from_unit(n: int, seed: int):
    """A batch whose states have mean 3 and std 2 per feature, so normalizing them matters."""
    b = random_batch(n, STATE, ACTION, seed=seed)
    return b._replace(states=3.0 + 2.0 * b.states, next_states=3.0 + 2.0 * b.next_states)


def test_omar_normalizes_states_by_its_own_dataset_in_training_acting_and_valuing():
    """The OMAR code's nets start with a BatchNorm of their input; ours normalize states by the
    agent's dataset statistics. An OMAR prepared on its data learns, acts and values on raw
    states exactly as an unnormalized OMAR does on the same states normalized by hand."""
    data = _far_from_unit(300, seed=5)
    learner = make_learner("omar", STATE, ACTION, seed=0, **SMALL)
    by_hand = make_learner("omar", STATE, ACTION, seed=0, normalize=False, **SMALL)
    np.testing.assert_array_equal(learner.state_norm.mean.numpy(), 0.0)  # identity until prepared
    learner.prepare(data)
    by_hand.prepare(data)
    mean, std = data.states.mean(0), data.states.std(0, correction=0) + 1e-3
    torch.testing.assert_close(learner.state_norm.mean, mean)
    torch.testing.assert_close(learner.state_norm.std, std)
    assert torch.equal(by_hand.state_norm.std, torch.ones(STATE))  # normalize=False: never fitted
    normalize = lambda b: b._replace(states=(b.states - mean) / std, next_states=(b.next_states - mean) / std)  # noqa: E731
    for i in range(3):
        b = _far_from_unit(64, seed=i)
        learner.train(b)
        by_hand.train(normalize(b))
    for pa, pb in zip(params(learner), params(by_hand)):  # (the statistics are buffers, not parameters)
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-5)
    raw = data.states[:9]
    np.testing.assert_allclose(learner.act(raw.numpy()), by_hand.act(((raw - mean) / std).numpy()), atol=1e-6)
    np.testing.assert_allclose(learner.value(raw.numpy()), by_hand.value(((raw - mean) / std).numpy()), atol=1e-5)
    assert ALGOS["omar"].inert({"norm_eps": 0.1, "normalize": False}) == ["norm_eps"]


def test_omar_defaults_are_the_omar_codes_mamujoco_medium_setting():
    c = ALGOS["omar"].config(HOPPER)
    assert (c.hidden, c.batch_size, c.gamma, c.tau, c.lr_q, c.lr_actor, c.grad_clip, c.action_l2) == ((64, 64), 256, 0.99, 0.005, 3e-4, 3e-4, 0.5, 1e-3)
    assert (c.cql_alpha, c.n_actions, c.cql_temperature, c.cql_noise, c.omar_coef) == (1.0, 10, 1.0, 0.2, 0.7)
    assert (c.search_iters, c.search_samples, c.search_elites, c.search_std, c.search_mean) == (2, 20, 5, 2.0, "zero")
    assert c.normalize and c.norm_eps == 1e-3


def test_omar_config_errors():
    with pytest.raises(UserError, match="search_elites"):
        make_learner("omar", STATE, 1, seed=0, search_elites=30)
    with pytest.raises(UserError, match="omar_coef must be in"):
        make_learner("omar", STATE, 1, seed=0, omar_coef=1.5)
    with pytest.raises(UserError, match="search_mean must be one of"):
        make_learner("omar", STATE, 1, seed=0, search_mean="data")


# -------------------------------------------------------------------------------------- both

SETTINGS = {"cql": {"lagrange": True}, "omar": {}}  # cql with its Lagrangian: log α and log α' in the checkpoint


@pytest.mark.parametrize("name", ["cql", "omar"])
def test_checkpoint_round_trip_continues_bit_for_bit(name):
    a = make_learner(name, STATE, ACTION, seed=0, **SMALL, **SETTINGS[name])
    for i in range(3):
        a.train(random_batch(64, STATE, ACTION, seed=i))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = make_learner(name, STATE, ACTION, seed=99, **SMALL, **SETTINGS[name])
    b.load_state_dict(torch.load(buffer, weights_only=True))
    s = random_batch(16, STATE, ACTION, seed=9).states.numpy()
    assert np.array_equal(a.act(s), b.act(s)) and np.array_equal(a.value(s), b.value(s))
    for i in range(3, 6):
        assert a.train(random_batch(64, STATE, ACTION, seed=i)) == b.train(random_batch(64, STATE, ACTION, seed=i))
    for pa, pb in zip(params(a), params(b)):
        assert torch.equal(pa, pb)
    if name == "cql":
        assert float(a.alpha().detach()) != 1.0 and float(a.alpha_prime().detach()) != 1.0  # both temperatures trained...
        assert torch.equal(a.alpha.log_value, b.alpha.log_value) and torch.equal(a.alpha_prime.log_value, b.alpha_prime.log_value)


TINY = {"batch_size": 32, "hidden": (16, 16)}




DATA = [synthetic_agent_data(i) for i in range(3)]


def run(algo: str, **kwargs) -> TrainResult:
    options = {"updates": 20, "seed": 0, "eval_every": 10, "eval_episodes": 2, "diag_states": 50, "threads": 1, "overrides": TINY}
    options.update(kwargs)
    return train_agents(HOPPER, DATA, algo, **options)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", ["cql", "omar"])
def test_decentralized_run_resumes_exactly_and_has_a_coordination_gap(name, tmp_path):
    straight = run(name)
    assert all(learner.has_value for learner in straight.learners)
    for e in straight.evaluations:
        assert np.isfinite(e.returns).all()
        assert e.coordination_gap is not None and np.isfinite(e.coordination_gap) and e.coordination_gap >= 0
    assert np.isfinite(straight.metrics[-1]["losses/q"]) and np.isfinite(straight.metrics[-1]["losses/cql"])

    def stop_at_15(update: int, metrics: list[dict[str, float]]) -> None:
        if update == 15:
            raise Interrupt

    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        run(name, checkpoint=checkpoint, checkpoint_every=10, on_update=stop_at_15)
    resumed = run(name, checkpoint=checkpoint, checkpoint_every=10)
    assert all(torch.equal(x, y) for x, y in zip(params_of(straight), params_of(resumed)))
    assert [(e.update, e.returns, e.coordination_gap) for e in resumed.evaluations] == [
        (e.update, e.returns, e.coordination_gap) for e in straight.evaluations
    ]
    assert resumed.metrics == straight.metrics


def params_of(result: TrainResult) -> list[torch.Tensor]:
    return [p.detach() for learner in result.learners for p in params(learner)]


def test_bench_times_both_in_the_joint_table():
    result = CliRunner().invoke(main, ["bench", "--repeats", "1", "--updates", "1", "--threads", "1", "--env", "hopper", "--json"])
    assert result.exit_code == 0, result.output
    joint = json.loads(result.output)["joint"]
    assert set(joint) == {"hopper"}
    assert joint["hopper"]["cql"] > 0 and joint["hopper"]["omar"] > 0
