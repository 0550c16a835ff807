"""Updates replayed from CUDA graphs against the eager updates: the same training, to float
rounding, for lone and stacked learners, through pretraining, checkpoints and whole runs.

The graph tests need a GPU and are skipped without one (``tools/cuda-check.sh`` runs them on a
lent GPU). The device-side Adam step that capture needs runs anywhere, so it is checked here too.
"""

from __future__ import annotations

import pytest
import torch

from conftest import random_batch
from mabcq_bench.algos import ALGOS, MABCQ, make_learner
from mabcq_bench.algos.common.process import torch_threads
from test_stack import SMALL, STATE, Interrupt, moments, on, params, run, same_run, stop_at_5

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


def near(a: list[torch.Tensor], b: list[torch.Tensor], rel: float = 1e-4) -> bool:
    """Each tensor within ``rel`` of the other in norm: rounding, not another update."""
    return len(a) == len(b) and all(x.shape == y.shape and float(torch.linalg.norm(x - y)) <= rel * float(torch.linalg.norm(x)) + 1e-9 for x, y in zip(a, b))


def learner(algo: str, action_dim: int, seed: int, device: str, **overrides) -> MABCQ:
    return make_learner(algo, STATE, action_dim, seed=seed, device=device, **{**SMALL, **overrides})  # type: ignore[return-value]


def test_the_device_side_adam_step_is_the_python_one_to_rounding():
    eager, device_steps = learner("mabcq", 2, 0, "cpu"), learner("mabcq", 2, 0, "cpu")
    for opt in device_steps.optimizers.values():
        opt.capturable()
    for u in range(20):
        b = random_batch(32, STATE, 2, seed=u)
        want, got = eager.train(b), device_steps.train(b)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert near(params(eager), params(device_steps)) and near(moments(eager), moments(device_steps))
    state = device_steps.state_dict()  # the Python count stays the checkpoint's
    assert all(o["steps"] == 20 for o in state["optimizers"].values())
    fresh = learner("mabcq", 2, 5, "cpu")
    fresh.optimizers["critic"].capturable()
    fresh.load_state_dict(state)
    assert fresh.optimizers["critic"]._device_steps.item() == 20.0


def test_off_the_gpu_cuda_graph_changes_nothing():
    plain, flagged = learner("mabcq", 1, 0, "cpu"), learner("mabcq", 1, 0, "cpu")
    flagged.cuda_graph = True
    for u in range(5):
        b = random_batch(32, STATE, 1, seed=u)
        assert flagged.train(b) == plain.train(b)
    assert flagged._captured is None
    result = run("mabcq", updates=2, eval_every=0, final_eval_episodes=0, cuda_graph=True)
    assert not result.cuda_graph


@CUDA
@pytest.mark.parametrize(
    "algo, action_dim, groups, overrides",
    [("mabcq", 2, 1, {}), ("bcq", 3, 1, {}), ("mabcq", 1, 3, {}), ("mabcq-no-tn", 2, 2, {"vae_pretrain_updates": 4})],
)
def test_a_graphed_learner_trains_as_the_eager_one(algo, action_dim, groups, overrides):
    """Eager updates, warm-up, capture and replays: every update's metrics, the parameters, Adam
    and the random streams match the eager learner's (the streams exactly: a replay draws what the
    eager update draws)."""

    def build(graph: bool):
        members = [learner(algo, action_dim, 10 + g, "cuda", **overrides) for g in range(groups)]
        out = members[0] if groups == 1 else type(members[0]).stack(members)
        out.cuda_graph = graph
        return out, members

    (eager, eager_members), (graphed, graphed_members) = build(False), build(True)
    for u in range(15):
        bs = [on("cuda", random_batch(32, STATE, action_dim, seed=100 * g + u)) for g in range(groups)]
        want, got = eager.train_stacked(bs), graphed.train_stacked(bs)
        for w, g in zip(want, got):
            assert g == pytest.approx(w, rel=1e-4, abs=1e-5), u
    assert graphed._captured is not None and eager._captured is None
    assert graphed.updates == eager.updates == 15
    if groups > 1:
        eager.unstack()
        graphed.unstack()
    for e, g in zip(eager_members, graphed_members):
        # Adam's moments to a looser tolerance: a last-bit difference that moves a pre-activation
        # across zero changes that sample's share of a gradient (seen on an H100: a few elements
        # of a stacked learner's moments 0.3-0.8 % apart after 15 updates, the metrics within 1e-4).
        assert near(params(e), params(g)) and near(moments(e), moments(g), rel=1e-2)
        assert [o.steps for o in e.optimizers.values()] == [o.steps for o in g.optimizers.values()]
        assert g.optimizers["vae"].steps == 15  # the critic's and ξ's wait for the VAEs' pretraining
        assert torch.equal(e.generators["train"].get_state(), g.generators["train"].get_state())


@CUDA
def test_a_graph_replays_the_batch_it_is_given():
    """The graph reads each replay's batch from its own inputs: another batch, another update."""
    a, b = learner("mabcq", 2, 0, "cuda"), learner("mabcq", 2, 0, "cuda")
    a.cuda_graph = b.cuda_graph = True
    for u in range(6):
        batch = on("cuda", random_batch(32, STATE, 2, seed=u))
        a.train(batch)
        b.train(batch)
    assert near(params(a), params(b))
    a.train(on("cuda", random_batch(32, STATE, 2, seed=50)))
    b.train(on("cuda", random_batch(32, STATE, 2, seed=51)))
    assert not near(params(a), params(b), rel=1e-3)


@CUDA
@pytest.mark.parametrize("stack", [True, False])
def test_a_graphed_run_is_the_eager_run(stack):
    graphed = run("mabcq", device="cuda", stack_agents=stack, cuda_graph=True)
    eager = run("mabcq", device="cuda", stack_agents=stack, cuda_graph=False)
    assert graphed.cuda_graph and not eager.cuda_graph
    same_run(graphed, eager)


@CUDA
def test_a_graphed_run_resumes_from_its_checkpoint(tmp_path):
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        run(device="cuda", checkpoint=checkpoint, checkpoint_every=2, on_update=stop_at_5)
    same_run(run(device="cuda"), run(device="cuda", checkpoint=checkpoint, checkpoint_every=2))


def test_only_mabcq_s_family_captures():
    assert [name for name, spec in ALGOS.items() if getattr(spec.learner, "captures", False)] == ["mabcq", "mabcq-no-tn", "mabcq-no-vd", "bcq"]
