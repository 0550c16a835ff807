"""Stacking the agents of a run into one batched update: the stacked nets against the lone ones,
a stack of G learners against the G lone learners, the independence of the agents inside a stack,
checkpoints across stacking, and whole runs with and without it."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import TINY_PROTOCOL, random_batch, synthetic_agent_data
from mabcq_bench.algos import ALGOS, Batch, MABCQ, make_learner
from mabcq_bench.algos.common.nets import MLP, VAE, normal, stack, unstack
from mabcq_bench.algos.common.process import torch_threads
from mabcq_bench.cli import main
from mabcq_bench.data.tasks import get_task
from mabcq_bench.runs import execute, plan
from mabcq_bench.runs.learn import TrainResult, train_agents, train_seeds, will_stack
from mabcq_bench.runs.protocol import load_protocol

SMALL = {"batch_size": 32, "hidden": (16, 16)}
STATE = 6
HOPPER = get_task("hopper")  # 3 agents, one action each

#: Stacked and lone computations are the same maths in other batched BLAS calls, which may round
#: differently in the last bit (seen here: only where a matrix has a dimension of one).
ATOL = 1e-6

#: The stacking tests run on every device torch has here: CI's CPU, and a GPU where one is (the
#: path ``--device cuda`` takes, which stacks by default).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


def lone(algo: str, action_dim: int, seed: int, device: str = "cpu", **overrides) -> MABCQ:
    return make_learner(algo, STATE, action_dim, seed=seed, device=device, **{**SMALL, **overrides})  # type: ignore[return-value]


def on(device: str, batch: Batch) -> Batch:
    return Batch(*(t.to(device) for t in batch))


def batches(count: int, action_dim: int, update: int, shift: int = 0, device: str = "cpu") -> list[Batch]:
    """Agent g's minibatch at ``update`` (``shift`` changes every agent's data)."""
    return [on(device, random_batch(32, STATE, action_dim, seed=1000 * g + update + shift)) for g in range(count)]


def params(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for m in learner.modules.values() for p in m.parameters()]


def moments(learner) -> list[torch.Tensor]:
    return [t.clone() for o in learner.optimizers.values() for t in o.exp_avg + o.exp_avg_sq]


def close(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.allclose(x, y, rtol=0, atol=ATOL) for x, y in zip(a, b))


def test_per_group_noise_is_each_generator_s_own_draw():
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    grouped = normal((3, 5, 4), gens, "cpu")
    for row, seed in zip(grouped, (1, 2, 3)):
        assert torch.equal(row, torch.randn(5, 4, generator=torch.Generator().manual_seed(seed)))
    assert all(g.initial_seed() == s for g, s in zip(gens, (1, 2, 3)))
    with pytest.raises(ValueError, match="2 generators for 3 groups"):
        normal((3, 5), gens[:2], "cpu")


@pytest.mark.parametrize("heads", [1, 2])
def test_stacked_mlp_computes_each_group_with_its_own_net(heads):
    nets = [MLP(STATE, 3, (16, 16), 2, heads=heads, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    stacked = stack(nets)
    assert stacked.groups == 3 and stacked.w_cond.shape == (3 * heads, STATE, 16)
    cond, x = torch.randn(3, 5, STATE), torch.randn(3, 5, 4, 3)
    out = stacked(cond, x)  # (3·heads, 5, 4, 2), group-major
    extra = stacked.paired(cond, x, cond, x[:, :, 0])
    for g, net in enumerate(nets):
        torch.testing.assert_close(out[g * heads : (g + 1) * heads], net(cond[g], x[g]), rtol=0, atol=ATOL)
        torch.testing.assert_close(stacked(cond, x, head=heads - 1)[g], net(cond[g], x[g], head=heads - 1)[0], rtol=0, atol=ATOL)
        torch.testing.assert_close(extra[g * heads : (g + 1) * heads], net.paired(cond[g], x[g], cond[g], x[g, :, 0]), rtol=0, atol=ATOL)
    # a flat vector's group rows are each lone net's flat layout, and back
    rows = stacked.group_rows(stacked.flat)
    assert all(torch.equal(row, net.flat) for row, net in zip(rows, nets))
    assert torch.equal(stacked.from_group_rows(rows), stacked.flat)
    with pytest.raises(ValueError, match="inputs of 2 groups for a net of 3"):
        stacked(cond[:2], x[:2])


def test_stack_refuses_nets_of_other_shapes_and_unstack_writes_back():
    a = VAE(STATE, 2, 4, (8,), generator=torch.Generator().manual_seed(0))
    b = VAE(STATE, 3, 4, (8,), generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="one architecture"):
        stack([a, b])
    c = VAE(STATE, 2, 4, (8,), generator=torch.Generator().manual_seed(1))
    stacked = stack([a, c])
    with torch.no_grad():
        for p in stacked.parameters():
            p.add_(1.0)
    before = [p.detach().clone() for p in c.parameters()]
    unstack(stacked, [a, c])
    assert all(torch.equal(p, q + 1.0) for p, q in zip(c.parameters(), before))


@pytest.mark.parametrize(
    "algo, action_dim, overrides",
    [
        ("mabcq", 1, {}),
        ("mabcq", 3, {}),
        ("bcq", 2, {}),
        ("mabcq-no-tn", 1, {}),
        ("mabcq-no-vd", 3, {"xi_actions": "data", "vae_pretrain_updates": 2, "weight_norm": "none"}),
    ],
)
@pytest.mark.parametrize("device", DEVICES)
def test_a_stack_of_g_learners_trains_as_the_g_lone_learners(algo, action_dim, overrides, device):
    """Each group keeps its agent's initial weights, Adam state and noise: after N updates on
    the same batches the unstacked members are the lone learners, to float rounding."""
    alone = [lone(algo, action_dim, seed=s, device=device, **overrides) for s in (3, 4, 5)]
    members = [lone(algo, action_dim, seed=s, device=device, **overrides) for s in (3, 4, 5)]
    stacked = type(members[0]).stack(members)
    assert stacked.groups == 3 and stacked.critic.w_cond.shape[0] == 6  # twin critics: 2G heads
    for u in range(6):
        bs = batches(3, action_dim, u, device=device)
        want = [learner.train(b) for learner, b in zip(alone, bs)]
        got = stacked.train_stacked(bs)
        for w, g in zip(want, got):
            assert w.keys() == g.keys()
            for key in w:
                assert g[key] == pytest.approx(w[key], rel=1e-5, abs=1e-6), key
    stacked.unstack()
    for a, m in zip(alone, members):
        assert close(params(a), params(m)) and close(moments(a), moments(m))
        assert m.updates == a.updates == 6
        assert all(o.steps == p.steps for o, p in zip(m.optimizers.values(), a.optimizers.values()))
        # the same noise was drawn from each agent's own stream, no more, no less
        assert torch.equal(m.generators["train"].get_state(), a.generators["train"].get_state())
        states = np.random.default_rng(0).normal(size=(5, STATE)).astype(np.float32)
        np.testing.assert_allclose(m.act(states), a.act(states), rtol=0, atol=ATOL)


@pytest.mark.parametrize("device", DEVICES)
def test_agent_i_does_not_see_agent_j_s_data(device):
    """Changing agent 2's batches leaves agents 0 and 1 bit for bit as they were, and a stack of
    one agent is that agent's lone learner bit for bit."""
    runs = []
    for shift in (0, 77):
        stacked = MABCQ.stack([lone("mabcq", 2, seed=s, device=device) for s in (0, 1, 2)])
        metrics = []
        for u in range(5):
            bs = batches(3, 2, u, device=device)
            bs[2] = on(device, random_batch(32, STATE, 2, seed=5000 + u + shift))
            metrics.append(stacked.train_stacked(bs))
        stacked.unstack()
        runs.append((stacked.members, metrics))
    (first, m1), (second, m2) = runs
    for i in (0, 1):
        assert all(torch.equal(p, q) for p, q in zip(params(first[i]), params(second[i])))
        assert all(torch.equal(p, q) for p, q in zip(moments(first[i]), moments(second[i])))
        assert [m[i] for m in m1] == [m[i] for m in m2]
    assert not all(torch.equal(p, q) for p, q in zip(params(first[2]), params(second[2])))
    alone, member = lone("mabcq", 2, seed=9, device=device), lone("mabcq", 2, seed=9, device=device)
    one = MABCQ.stack([member])
    for u in range(4):
        (b,) = batches(1, 2, u, device=device)
        assert one.train_stacked([b]) == [alone.train(b)]
    one.unstack()
    assert all(torch.equal(p, q) for p, q in zip(params(alone), params(member)))


def test_checkpoints_stay_per_agent_and_a_stack_resumes_from_them_bit_for_bit():
    """A stack unstacked, saved per agent, loaded into other lone learners and stacked again
    continues exactly as the stack that was never interrupted; the saved states load into lone
    learners as any lone learner's do."""
    straight = MABCQ.stack([lone("mabcq", 1, seed=s) for s in (0, 1, 2)])
    interrupted = MABCQ.stack([lone("mabcq", 1, seed=s) for s in (0, 1, 2)])
    for u in range(3):
        straight.train_stacked(batches(3, 1, u))
        interrupted.train_stacked(batches(3, 1, u))
    interrupted.unstack()
    buffer = io.BytesIO()
    torch.save([m.state_dict() for m in interrupted.members], buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh = [lone("mabcq", 1, seed=99) for _ in range(3)]
    for learner, state in zip(fresh, saved):
        learner.load_state_dict(state)
    assert saved[0].keys() == lone("mabcq", 1, seed=0).state_dict().keys()
    resumed = MABCQ.stack(fresh)
    for u in range(3, 6):
        assert resumed.train_stacked(batches(3, 1, u)) == straight.train_stacked(batches(3, 1, u))
    straight.unstack()
    resumed.unstack()
    for a, b in zip(straight.members, resumed.members):
        assert all(torch.equal(p, q) for p, q in zip(params(a), params(b)))
        assert all(torch.equal(p, q) for p, q in zip(moments(a), moments(b)))


def test_what_cannot_be_stacked_says_so():
    assert [name for name, spec in ALGOS.items() if spec.stacks] == ["mabcq", "mabcq-no-tn", "mabcq-no-vd", "bcq"]
    td3bc = make_learner("td3bc", STATE, 2, seed=0)
    with pytest.raises(ValueError, match="TD3BC does not stack"):
        type(td3bc).stack([td3bc])
    with pytest.raises(ValueError, match="one config"):
        MABCQ.stack([lone("mabcq", 2, seed=0), lone("bcq", 2, seed=1)])
    with pytest.raises(ValueError, match="one architecture"):
        MABCQ.stack([lone("mabcq", 2, seed=0), lone("mabcq", 3, seed=1)])
    trained = lone("mabcq", 2, seed=0)
    trained.train(batches(1, 2, 0)[0])
    with pytest.raises(ValueError, match="same number of updates"):
        MABCQ.stack([trained, lone("mabcq", 2, seed=1)])
    stacked = MABCQ.stack([lone("mabcq", 2, seed=s) for s in (0, 1)])
    with pytest.raises(ValueError, match="1 batches for a learner of 2"):
        stacked.train(batches(1, 2, 0)[0])
    for call in (stacked.state_dict, lambda: stacked.act(np.zeros((1, STATE), np.float32)), lambda: stacked.reseed("act", 0)):
        with pytest.raises(ValueError, match="unstack"):
            call()
    with pytest.raises(ValueError, match="not a stack"):
        lone("mabcq", 2, seed=0).unstack()


def run(algo: str = "mabcq", **kwargs) -> TrainResult:
    """A tiny hopper run at TINY_PROTOCOL's schedule on synthetic data."""
    p = TINY_PROTOCOL
    options = {
        "updates": p["updates"], "eval_every": p["eval_every"], "eval_episodes": p["eval_episodes"],
        "final_eval_episodes": p["final_eval_episodes"], "diag_states": p["diag_states"], "threads": p["threads"],
        "overrides": SMALL, "seed": 0,
    }  # fmt: skip
    options.update(kwargs)
    return train_agents(HOPPER, [synthetic_agent_data(i) for i in range(3)], algo, **options)


def same_run(a: TrainResult, b: TrainResult) -> None:
    """The same evaluations, diagnostic, metrics and parameters, to float rounding."""
    assert [e.update for e in a.evaluations] == [e.update for e in b.evaluations]
    for x, y in zip(a.evaluations + [a.final], b.evaluations + [b.final]):
        np.testing.assert_allclose(x.returns, y.returns, rtol=1e-5)
        assert x.coordination_gap == pytest.approx(y.coordination_gap, rel=1e-5, abs=1e-6)
    for x, y in zip(a.metrics, b.metrics):
        assert x.keys() == y.keys() and all(math.isclose(x[k], y[k], rel_tol=1e-5, abs_tol=1e-6) for k in x)
    for la, lb in zip(a.learners, b.learners):
        assert close(params(la), params(lb))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algo", ["mabcq", "bcq"])
def test_a_stacked_run_is_the_run_without_stacking(algo, device):
    plain, stacked = run(algo, stack_agents=False, device=device), run(algo, stack_agents=True, device=device)
    assert not plain.stacked and stacked.stacked
    same_run(plain, stacked)


def test_stacking_is_on_for_cuda_off_for_cpu_and_only_where_the_algorithm_stacks():
    assert not will_stack(HOPPER, "mabcq", "cpu") and will_stack(HOPPER, "mabcq", "cuda")
    assert will_stack(HOPPER, "bcq", "cpu", True) and not will_stack(HOPPER, "mabcq", "cuda:0", False)
    assert not will_stack(HOPPER, "td3bc", "cuda") and not will_stack(HOPPER, "td3bc", "cpu", True)
    td3bc = run("td3bc", updates=2, eval_every=0, final_eval_episodes=0, stack_agents=True)
    assert not td3bc.stacked  # runs agent by agent, as it always does
    assert td3bc.evaluations[0].returns == run("td3bc", updates=2, eval_every=0, final_eval_episodes=0).evaluations[0].returns


class Interrupt(Exception):
    pass


def stop_at_5(update: int, _metrics) -> None:
    """An ``on_update`` that interrupts a run after its 5th update."""
    if update == 5:
        raise Interrupt


@pytest.mark.parametrize("first, then", [(True, False), (False, True)])
def test_a_run_checkpointed_one_way_resumes_the_other(tmp_path, first, then):
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        run(checkpoint=checkpoint, checkpoint_every=2, on_update=stop_at_5, stack_agents=first)
    assert torch.load(checkpoint, weights_only=True)["stacked"] is first
    with pytest.warns(UserWarning, match="stack"):
        resumed = run(checkpoint=checkpoint, checkpoint_every=2, stack_agents=then)
    same_run(run(stack_agents=first), resumed)


def test_cli_run_stacks_where_it_can(store):
    results = store["results"]
    result = CliRunner().invoke(
        main, ["run", "--algo", "mabcq,bc", "--env", "hopper", "--preset", "tiny", "--seeds", "1", "--results", str(results), "--workers", "1", "--no-progress", "--stack-agents"]
    )
    assert result.exit_code == 0, result.output
    assert "--stack-agents: bc cannot stack; its agents update one after the other" in result.output
    protocol = load_protocol("tiny")
    (stacked_run,) = plan.prepare([plan.RunSpec("tiny", "hopper", "mabcq", 0)], protocol, "tiny", stack_agents=True)
    (plain_run,) = plan.prepare([plan.RunSpec("tiny", "hopper", "mabcq", 0)], protocol, "tiny")
    assert stacked_run.fingerprint == plain_run.fingerprint  # how it computes, not what
    stacked = execute.existing_record(stacked_run, results)
    plain = execute.execute(plain_run, results / "plain")
    assert stacked["stacked_agents"] is True and plain["stacked_agents"] is False
    assert stacked["cuda_graph"] is False  # the CPU has no graphs (and run refuses --cuda-graph there)
    assert stacked["final"]["normalized_score"] == pytest.approx(plain["final"]["normalized_score"], rel=1e-5)
    assert [c["return_mean"] for c in stacked["curve"]] == pytest.approx([c["return_mean"] for c in plain["curve"]], rel=1e-5)


# --- seeds stacked: the seeds of one (task, algorithm) as one batched update (run --stack-seeds)


def seeds_run(algo: str = "mabcq", seeds=(0, 1), **kwargs) -> list[TrainResult]:
    """:func:`run` for several seeds at once, through train_seeds."""
    p = TINY_PROTOCOL
    options = {
        "updates": p["updates"], "eval_every": p["eval_every"], "eval_episodes": p["eval_episodes"],
        "final_eval_episodes": p["final_eval_episodes"], "diag_states": p["diag_states"], "threads": p["threads"],
        "overrides": SMALL,
    }  # fmt: skip
    options.update(kwargs)
    return train_seeds(HOPPER, [synthetic_agent_data(i) for i in range(3)], algo, seeds=list(seeds), **options)


@pytest.mark.parametrize("device", DEVICES)
def test_seeds_trained_as_one_stack_are_each_seed_alone(device):
    together = seeds_run(seeds=(0, 1, 2), stack_seeds=True, device=device)
    assert [r.seed for r in together] == [0, 1, 2]
    assert all(r.stacked and r.stacked_seeds == 3 for r in together)
    for result in together:
        alone = run(seed=result.seed, stack_agents=False, device=device)
        assert alone.stacked_seeds == 1
        same_run(alone, result)
    # the seeds do differ: a stack that mixed their groups up would give three equal runs
    assert not close(params(together[0].learners[0]), params(together[1].learners[0]))


def test_seeds_resumed_at_other_updates_catch_up_then_train_together(tmp_path):
    first, second = tmp_path / "seed0.pt", tmp_path / "seed1.pt"
    with pytest.raises(Interrupt):  # seed 0 alone, checkpointed at update 4
        run(seed=0, checkpoint=first, checkpoint_every=2, on_update=stop_at_5)
    assert torch.load(first, weights_only=True)["updates"] == 4
    seen: dict[int, list[int]] = {0: [], 1: []}
    with pytest.warns(UserWarning, match="stacked 2 seeds' agents"):  # the checkpoint's run did not stack
        together = seeds_run(
            stack_seeds=True, checkpoints=[first, second], checkpoint_every=2,
            on_update=[lambda n, _m: seen[0].append(n), lambda n, _m: seen[1].append(n)],
        )  # fmt: skip
    assert seen == {0: [5, 6], 1: [1, 2, 3, 4, 5, 6]}  # seed 1 from scratch, seed 0 from its checkpoint
    # each seed's time is its own: seed 1 made four updates and an evaluation more in this call
    assert together[1].cpu_s > together[0].cpu_s > 0 and together[1].wall_s > together[0].wall_s
    for result in together:
        assert result.updates == TINY_PROTOCOL["updates"]
        same_run(run(seed=result.seed), result)
    assert torch.load(second, weights_only=True)["stacked_seeds"] == 2


def test_what_stacks_seeds_and_what_does_not():
    from mabcq_bench.runs.learn import will_stack_seeds

    assert will_stack_seeds(HOPPER, "mabcq", "cuda") and not will_stack_seeds(HOPPER, "mabcq", "cpu")
    assert will_stack_seeds(HOPPER, "bcq", "cpu", True) and not will_stack_seeds(HOPPER, "bcq", "cuda", False)
    assert not will_stack_seeds(HOPPER, "mabcq", "cuda", True, stack_agents=False)
    assert not will_stack_seeds(HOPPER, "td3bc", "cuda", True)
    assert will_stack_seeds(HOPPER.in_setting("centralized"), "bcq", "cpu", True)  # one agent: its seeds still stack
    plain = seeds_run("td3bc", updates=2, eval_every=0, final_eval_episodes=0, stack_seeds=True)
    assert [r.stacked_seeds for r in plain] == [1, 1]  # runs seed after seed, as it always does


def test_cli_run_stacks_seeds_into_one_unit_and_each_seed_keeps_its_record(store):
    results = store["results"]
    args = ["run", "--algo", "mabcq,bc", "--env", "hopper", "--preset", "tiny", "--seeds", "2", "--workers", "1", "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--results", str(results), "--stack-seeds"])
    assert result.exit_code == 0, result.output
    assert "--stack-seeds: bc cannot stack; its seeds run one by one" in result.output
    protocol = load_protocol("tiny")
    specs = [plan.RunSpec("tiny", "hopper", a, s) for a in ("mabcq", "bc") for s in (0, 1)]
    runs = plan.prepare(specs, protocol, "tiny", stack_seeds=True)
    assert [[(r.spec.algo, r.spec.seed) for r in unit] for unit in plan.work_units(runs)] == [[("mabcq", 0), ("mabcq", 1)], [("bc", 0)], [("bc", 1)]]
    assert [len(unit) for unit in plan.work_units(plan.prepare(specs, protocol, "tiny"))] == [1, 1, 1, 1]  # the CPU's default
    plain = CliRunner().invoke(main, [*args, "--results", str(results / "plain")])
    assert plain.exit_code == 0, plain.output
    for run_ in runs:
        stacked, alone = execute.existing_record(run_, results), execute.existing_record(run_, results / "plain")
        assert stacked["device"] == "cpu" and stacked["stacked_seeds"] == (2 if run_.spec.algo == "mabcq" else 1)
        assert alone["stacked_seeds"] == 1 and stacked["config_fingerprint"] == alone["config_fingerprint"]
        assert stacked["final"]["normalized_score"] == pytest.approx(alone["final"]["normalized_score"], rel=1e-5)
    bad = CliRunner().invoke(main, [*args, "--results", str(results), "--stack-seeds", "--no-stack-agents"])
    assert bad.exit_code == 2 and "--stack-seeds puts every agent of every seed in one stack" in bad.output


def test_a_run_s_time_covers_its_evaluations_and_its_final_one():
    (result,) = seeds_run(seeds=(0,))
    spent = sum(e.cpu_s for e in result.evaluations) + result.final.cpu_s
    assert result.total_cpu_s >= spent and result.total_wall_s >= sum(e.wall_s for e in result.evaluations) + result.final.wall_s


def test_a_seed_another_process_holds_does_not_stop_the_others(store):
    from mabcq_bench.util import exclusive_lock

    protocol = load_protocol("tiny")
    runs = plan.prepare([plan.RunSpec("tiny", "hopper", "mabcq", s) for s in (0, 1)], protocol, "tiny", stack_seeds=True)
    (unit,) = plan.work_units(runs)
    results = store["results"]
    with exclusive_lock(runs[1].spec.lock_path(results), "a run"):  # as another sweep over the same store holds it
        first, second = execute.run_unit(unit, results)
    assert first[1]["seed"] == 0 and first[2] is None
    assert second[1] is None and "another mabcq-bench process is working on run" in second[2]
    assert not runs[1].spec.record_path(results).exists()
    again = execute.run_unit(unit, results)  # the held seed trains now; the finished one is kept
    assert again[0][1] == first[1] and again[1][1]["seed"] == 1 and again[1][2] is None
