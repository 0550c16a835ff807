"""The reference rows that train nothing: zero-action and random."""

from __future__ import annotations

import numpy as np

from mabcq_bench.algos import ALGOS
from mabcq_bench.data.rollout import evaluate, zero_policy
from mabcq_bench.data.tasks import TASKS
from mabcq_bench.runs import execute, plan
from mabcq_bench.runs.protocol import load_protocol
from mabcq_bench.util import derive_seed

from conftest import random_batch


def test_zero_and_random_actions_and_no_value():
    states = np.zeros((6, 5))
    zero = ALGOS["zero-action"].learner(5, 2, ALGOS["zero-action"].config(), seed=0)
    assert zero.train(random_batch()) == {} and zero.updates == 1
    np.testing.assert_array_equal(zero.act(states), np.zeros((6, 2), dtype=np.float32))
    assert not zero.has_value and np.isnan(zero.value(states)).all()

    rand = ALGOS["random"].learner(5, 2, ALGOS["random"].config(), seed=0)
    a = rand.act(states)
    assert a.shape == (6, 2) and (np.abs(a) <= 1.0).all() and a.std() > 0.2
    assert not np.array_equal(rand.act(states), a)  # a fresh draw every call


def test_random_resumes_its_stream_from_a_checkpoint():
    spec = ALGOS["random"]
    first = spec.learner(5, 2, spec.config(), seed=3)
    first.act(np.zeros((4, 5)))
    state = first.state_dict()
    expected = first.act(np.zeros((4, 5)))
    resumed = spec.learner(5, 2, spec.config(), seed=3)
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(resumed.act(np.zeros((4, 5))), expected)


def test_zero_action_run_scores_what_doing_nothing_scores(store):
    (run,) = plan.prepare([plan.RunSpec("tiny", "hopper", "zero-action", 0)], load_protocol("tiny"), "tiny")
    record = execute.execute(run, store["results"])
    episodes = run.protocol["final_eval_episodes"]
    direct = evaluate(TASKS["hopper"], zero_policy(TASKS["hopper"]), episodes, derive_seed(0, "final evaluation"))
    assert record["final"]["returns"] == [float(r) for r in direct]
    curve = evaluate(TASKS["hopper"], zero_policy(TASKS["hopper"]), run.protocol["eval_episodes"], derive_seed(0, "evaluation"))
    assert record["curve"][-1]["return_mean"] == float(np.mean(curve))
    assert record["final"]["coordination_gap"] is None
