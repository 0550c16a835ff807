"""The decentralized trainer: a tiny three-agent Hopper run on synthetic data, joint evaluation
in the real task, the coordination diagnostic, resuming after an interruption, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from conftest import synthetic_agent_data
from mabcq_bench.data.buffer import AgentData
from mabcq_bench.errors import UserError
from mabcq_bench.runs.learn import TrainResult, train_agents
from mabcq_bench.data.tasks import get_task

HOPPER = get_task("hopper")  # 3 agents, state 11, one action each
TINY = {"batch_size": 32, "hidden": (16, 16)}




DATA = [synthetic_agent_data(i) for i in range(3)]


def run(algo: str = "mabcq", updates: int = 20, seed: int = 0, **kwargs) -> TrainResult:
    options = {"eval_every": 10, "eval_episodes": 2, "diag_states": 50, "threads": 1, "overrides": TINY}
    options.update(kwargs)
    return train_agents(HOPPER, DATA, algo, updates=updates, seed=seed, **options)


def parameters(result: TrainResult) -> list[torch.Tensor]:
    return [p.detach() for learner in result.learners for m in learner.modules.values() for p in m.parameters()]


def same_parameters(a: TrainResult, b: TrainResult) -> bool:
    return all(torch.equal(x, y) for x, y in zip(parameters(a), parameters(b)))


@pytest.fixture(scope="module")
def straight() -> TrainResult:
    return run()


def test_tiny_run_trains_every_agent_and_evaluates_jointly(straight):
    assert straight.updates == 20 and len(straight.learners) == 3
    assert [e.update for e in straight.evaluations] == [10, 20]
    for e in straight.evaluations:
        assert len(e.returns) == 2 and np.isfinite(e.returns).all()
        assert e.coordination_gap is not None and np.isfinite(e.coordination_gap) and e.coordination_gap >= 0
    assert [m["update"] for m in straight.metrics] == [10, 20]
    assert np.isfinite(straight.metrics[-1]["losses/q"])
    assert straight.config["epsilon"] == HOPPER.epsilon and straight.config["batch_size"] == 32
    assert all(learner.act(DATA[0].observations[:4]).shape == (4, 1) for learner in straight.learners)


def test_agents_learn_independently(straight):
    # Same algorithm, different data and seeds: no two agents share parameters.
    critics = [learner.modules["critic"].flat for learner in straight.learners]
    assert not torch.equal(critics[0], critics[1]) and not torch.equal(critics[1], critics[2])


def test_same_seed_same_result_other_seed_other_result(straight):
    again = run()
    assert same_parameters(straight, again)
    assert [e.returns for e in again.evaluations] == [e.returns for e in straight.evaluations]
    assert again.metrics == straight.metrics
    assert not same_parameters(straight, run(seed=1))


def test_a_run_counts_its_cpu_time_beside_its_wall_time(straight):
    """One torch thread, the environments stepped in this process: the process's CPU time is
    positive and at most the wall time (less where the process waited for a shared core)."""
    assert 0 < straight.total_cpu_s == straight.cpu_s <= straight.wall_s * 1.05
    for e in straight.evaluations:
        assert e.cpu_s is not None and 0 < e.cpu_s <= e.wall_s * 1.05
    with_final = run(updates=10, eval_every=5, final_eval_episodes=4, final_checkpoints=2)
    assert with_final.final is not None and with_final.final.cpu_s is not None and 0 < with_final.final.cpu_s <= with_final.final.wall_s * 1.05


def _burn(seconds: float) -> None:
    """Spend ``seconds`` of this process's CPU time (which a sleep would not)."""
    begun = time.process_time()
    while time.process_time() - begun < seconds:
        pass


class Interrupt(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(straight, tmp_path):
    checkpoint = tmp_path / "run.pt"

    def stop_at_15(update: int, metrics: list[dict[str, float]]) -> None:
        assert len(metrics) == 3
        if update == 5:
            _burn(0.5)  # before the checkpoint at 10: the resumed run's total wall and CPU time include it
        if update == 15:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(checkpoint=checkpoint, checkpoint_every=10, on_update=stop_at_15)
    assert checkpoint.exists()  # written at update 10
    assert not list(tmp_path.glob(".run.pt.*"))  # no temporary file left behind
    resumed = run(checkpoint=checkpoint, checkpoint_every=10)
    assert same_parameters(straight, resumed)
    assert [(e.update, e.returns, e.coordination_gap) for e in resumed.evaluations] == [
        (e.update, e.returns, e.coordination_gap) for e in straight.evaluations
    ]
    assert resumed.metrics == straight.metrics
    assert resumed.total_wall_s >= resumed.wall_s + 0.5 and straight.total_wall_s == straight.wall_s
    assert resumed.total_cpu_s is not None and resumed.total_cpu_s >= resumed.cpu_s + 0.5


def test_a_checkpoint_from_before_cpu_time_was_kept_resumes_with_its_cpu_time_unknown(straight, tmp_path):
    checkpoint = tmp_path / "run.pt"

    def stop_at_15(update: int, metrics: list[dict[str, float]]) -> None:
        if update == 15:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(checkpoint=checkpoint, checkpoint_every=10, on_update=stop_at_15)
    state = torch.load(checkpoint, weights_only=True)
    assert state["elapsed_cpu_s"] > 0
    del state["elapsed_cpu_s"]  # as an older version wrote it: no CPU time, and none per evaluation
    for e in state["evaluations"]:
        del e["cpu_s"]
    torch.save(state, checkpoint)
    resumed = run(checkpoint=checkpoint, checkpoint_every=10)
    assert same_parameters(straight, resumed) and [e.returns for e in resumed.evaluations] == [e.returns for e in straight.evaluations]
    assert resumed.total_cpu_s is None and resumed.cpu_s > 0  # the part before the interruption is unknown, so the total is
    assert [e.cpu_s is None for e in resumed.evaluations] == [True, False]  # the evaluation at 10 came from the checkpoint
    assert "elapsed_cpu_s" not in torch.load(checkpoint, weights_only=True)  # and stays unknown for a later resume


def test_checkpoint_of_another_run_is_refused(tmp_path):
    checkpoint = tmp_path / "run.pt"
    run("bcq", updates=2, eval_every=0, checkpoint=checkpoint)
    with pytest.raises(UserError, match="algo"):
        run("mabcq", updates=2, eval_every=0, checkpoint=checkpoint)
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        run("bcq", updates=2, eval_every=0, checkpoint=checkpoint)


def test_behavior_has_no_coordination_gap():
    result = run("behavior", updates=3, eval_every=0)
    assert [e.update for e in result.evaluations] == [3]
    assert result.evaluations[0].coordination_gap is None


def test_datasets_must_match_the_task():
    with pytest.raises(UserError, match="3 agents"):
        train_agents(HOPPER, DATA[:2], "bcq", updates=1, seed=0)
    d = DATA[0]
    wide = AgentData(d.observations, np.zeros((300, 2), np.float32), d.rewards, d.next_observations, d.terminals)
    with pytest.raises(UserError, match="actions"):
        train_agents(HOPPER, [wide, DATA[1], DATA[2]], "bcq", updates=1, seed=0)
    with pytest.raises(UserError, match="valid algorithms"):
        train_agents(HOPPER, DATA, "sac", updates=1, seed=0)


def test_final_evaluation_has_its_own_episodes_and_seeds():
    result = run(updates=10, eval_every=5, final_eval_episodes=4)
    assert [e.update for e in result.evaluations] == [5, 10] and len(result.evaluations[-1].returns) == 2
    assert result.final is not None and result.final.update == 10 and len(result.final.returns) == 4
    assert result.final_return == pytest.approx(np.mean(result.final.returns))
    # its episodes start from other evaluation seeds than the learning curve's
    assert result.final.returns[:2] != result.evaluations[-1].returns


def test_protocol_3_spreads_the_final_episodes_over_the_last_checkpoints(tmp_path):
    """Issue 24 (4): 4 final episodes over the last 2 evaluation points (20 and 10), 2 each, on
    the blocks of the final seeds; protocol 2's final evaluation (all 4 at 20) plays the same
    seeds with the last policy; a resumed run keeps the share it made before the interruption."""
    spread = run(updates=20, eval_every=10, final_eval_episodes=4, final_checkpoints=2)
    once = run(updates=20, eval_every=10, final_eval_episodes=4)
    assert spread.final is not None and once.final is not None
    assert spread.final.checkpoints == [20, 10] and once.final.checkpoints is None
    assert len(spread.final.returns) == 4 and spread.final_return == pytest.approx(np.mean(spread.final.returns))
    # the share at 20 plays seeds 0-1 of the final block with the last policy, as protocol 2 does
    # (the acting noise differs by share; mabcq's greedy action over sampled candidates uses it)
    assert spread.final.returns[2:] != once.final.returns[2:]  # the share at 10: an earlier policy
    checkpoint = tmp_path / "run.pt"

    def stop_at_15(update: int, metrics: list[dict[str, float]]) -> None:
        if update == 15:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(updates=20, eval_every=10, final_eval_episodes=4, final_checkpoints=2, checkpoint=checkpoint, checkpoint_every=10, on_update=stop_at_15)
    resumed = run(updates=20, eval_every=10, final_eval_episodes=4, final_checkpoints=2, checkpoint=checkpoint, checkpoint_every=10)
    assert resumed.final is not None and resumed.final.returns == spread.final.returns and resumed.final.checkpoints == [20, 10]
    with pytest.raises(UserError, match="divide evenly"):
        run(updates=20, eval_every=10, final_eval_episodes=5, final_checkpoints=2)
    with pytest.raises(UserError, match="lie within the run"):
        run(updates=20, eval_every=10, final_eval_episodes=4, final_checkpoints=3)


def test_what_is_evaluated_depends_neither_on_the_schedule_nor_on_the_diagnostic():
    """Acting noise restarts per evaluation: the final evaluation is the same whether the run
    was evaluated along the way or not, and whatever the diagnostic consumed."""
    base = run(updates=10, eval_every=5, final_eval_episodes=3)
    no_curve = run(updates=10, eval_every=0, final_eval_episodes=3)
    other_diag = run(updates=10, eval_every=5, final_eval_episodes=3, diag_states=7)
    assert same_parameters(base, no_curve) and same_parameters(base, other_diag)
    assert no_curve.final.returns == base.final.returns == other_diag.final.returns
    assert no_curve.evaluations[-1].returns == base.evaluations[-1].returns  # the update-10 curve point too
    assert other_diag.evaluations[-1].returns == base.evaluations[-1].returns
    # the noise does matter: MABCQ acts by sampling G¹, so the streams are not idle
    learner = base.learners[0]
    learner.reseed("act", 1)
    first = learner.act(DATA[0].observations[:8])
    learner.reseed("act", 2)
    assert not np.array_equal(first, learner.act(DATA[0].observations[:8]))
    learner.reseed("act", 1)
    assert np.array_equal(first, learner.act(DATA[0].observations[:8]))
    with pytest.raises(ValueError, match="stream must be"):
        learner.reseed("train", 0)
