"""MABCQ's importance weights λ_vd and λ_tn (paper §3.2–3.3): hand-computed values, clipping,
and the ablations that fix them to one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import random_batch
from mabcq_bench.algos import ALGOS, Batch, make_learner
from mabcq_bench.algos.common.process import torch_threads
from mabcq_bench.algos.weights import combine, transition_normalization, value_deviation
from mabcq_bench.data.tasks import TASKS


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: small nets run fastest so, and it stays fast when other work shares the CPU."""
    with torch_threads(1):
        yield


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# γ = 0.5 keeps E = (Q̂(s, a) − r)/γ easy to compute by hand.
Q_SA = t(3.0, 3.0, -2.0, 3.0, 1.3)
REWARD = t(1.0, 1.0, 0.0, 1.0, 1.2)
V_NEXT = t(6.0, 2.0, -1.0, 5.0, 0.5)
TERMINAL = t(0.0, 0.0, 0.0, 1.0, 0.0)
# E = [4, 4, -4, 4, 0.2]
#   row 0: 1 + (6 − 4)/4 = 1.5                 (next state better than expected)
#   row 1: 1 + (2 − 4)/4 = 0.5                 (worse)
#   row 2: 1 + (−1 − (−4))/|−4| = 1.75         (negative values: |E| keeps the direction)
#   row 3: terminal, masked V = 0: 1 + (0 − 4)/4 = 0
#   row 4: |E| = 0.2 floored at 1: 1 + (0.5 − 0.2)/1 = 1.3
EXPECTED_VD = [1.5, 0.5, 1.75, 0.0, 1.3]


def test_value_deviation_by_hand():
    got = value_deviation(V_NEXT, Q_SA, REWARD, TERMINAL, gamma=0.5, epsilon=None)
    np.testing.assert_allclose(got.numpy(), EXPECTED_VD, rtol=1e-6)


def test_value_deviation_is_clipped_to_one_plus_minus_epsilon():
    got = value_deviation(V_NEXT, Q_SA, REWARD, TERMINAL, gamma=0.5, epsilon=0.6)
    np.testing.assert_allclose(got.numpy(), np.clip(EXPECTED_VD, 0.4, 1.6), rtol=1e-6)


def test_value_deviation_terminal_mode_one_gives_weight_one_at_terminals():
    got = value_deviation(V_NEXT, Q_SA, REWARD, TERMINAL, gamma=0.5, epsilon=None, terminal_mode="one")
    np.testing.assert_allclose(got.numpy(), [1.5, 0.5, 1.75, 1.0, 1.3], rtol=1e-6)


def test_value_deviation_floor_keeps_zero_expectation_finite():
    # E = 0 exactly: without a floor the ratio is 0/0.
    got = value_deviation(t(0.0, 2.0), t(1.0, 1.0), t(1.0, 1.0), t(0.0, 0.0), gamma=0.99, epsilon=None, e_floor=1.0)
    np.testing.assert_allclose(got.numpy(), [1.0, 3.0], rtol=1e-6)
    unfloored = value_deviation(t(0.0), t(1.0), t(1.0), t(0.0), gamma=0.99, epsilon=None, e_floor=0.0)
    assert not torch.isfinite(unfloored).all()


def test_value_deviation_rejects_an_unknown_terminal_mode():
    with pytest.raises(ValueError, match="terminal_mode"):
        value_deviation(V_NEXT, Q_SA, REWARD, TERMINAL, gamma=0.5, epsilon=None, terminal_mode="ignore")


def _gaussian_density(mu: np.ndarray) -> np.ndarray:
    return (2 * math.pi) ** (-mu.shape[-1] / 2) * np.exp(-0.5 * (mu**2).sum(-1))


def test_transition_normalization_is_the_ratio_of_unit_gaussian_densities():
    mu1 = np.array([[1.0, 0.0, 0.5], [0.2, -0.3, 0.0], [0.0, 0.0, 0.0]])
    mu2 = np.array([[0.0, 0.0, 0.0], [0.1, 0.1, 0.4], [0.5, 0.5, 0.0]])
    expected = _gaussian_density(mu1) / _gaussian_density(mu2)  # [e^-0.625, ~0.95, e^0.25]
    got = transition_normalization(torch.tensor(mu1, dtype=torch.float32), torch.tensor(mu2, dtype=torch.float32), clip=None)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_transition_normalization_clip_and_log_space():
    mu1 = torch.tensor([[2.0, 0.0], [0.0, 0.0], [20.0, 0.0]])
    mu2 = torch.tensor([[0.0, 0.0], [2.0, 0.0], [20.0, 0.0]])
    # e^-2 = 0.135 -> 0.2; e^2 = 7.39 -> 1.4; the third has densities e^-200 (0 in float32) but
    # equal, so the ratio is 1, not 0/0.
    got = transition_normalization(mu1, mu2, clip=(0.2, 1.4))
    np.testing.assert_allclose(got.numpy(), [0.2, 1.4, 1.0], rtol=1e-6)
    unclipped = transition_normalization(mu1, mu2, clip=None)
    np.testing.assert_allclose(unclipped.numpy(), [math.exp(-2), math.exp(2), 1.0], rtol=1e-6)


def test_combine_normalizes_by_the_batch_mean_or_not():
    vd, tn = t(0.5, 1.5, 1.0), t(1.0, 1.2, 0.4)
    np.testing.assert_allclose(combine(vd, tn, "none").numpy(), [0.5, 1.8, 0.4], rtol=1e-6)
    np.testing.assert_allclose(combine(vd, tn, "batch_mean").numpy(), np.array([0.5, 1.8, 0.4]) / 0.9, rtol=1e-6)
    with pytest.raises(ValueError):
        combine(vd, tn, "sum")


def test_epsilon_comes_from_the_task():
    for task in TASKS.values():
        assert ALGOS["mabcq"].config(task).epsilon == task.epsilon
    assert ALGOS["mabcq"].config(TASKS["walker"], epsilon=0.1).epsilon == 0.1


def _batch(n: int = 64, state_dim: int = 5, action_dim: int = 2, seed: int = 0) -> Batch:
    return random_batch(n, state_dim, action_dim, seed)


@pytest.mark.parametrize(
    ("algo", "vd_fixed", "tn_fixed"),
    [("mabcq", False, False), ("mabcq-no-tn", False, True), ("mabcq-no-vd", True, False), ("bcq", True, True)],
)
def test_ablations_fix_their_weights_to_one(algo, vd_fixed, tn_fixed):
    learner = make_learner(algo, 5, 2, seed=0, epsilon=0.3, batch_size=64)
    batch = _batch()
    for _ in range(3):
        m = learner.train(batch)
    for name, fixed in (("lambda_vd", vd_fixed), ("lambda_tn", tn_fixed)):
        if fixed:
            assert m[f"weights/{name}_min"] == m[f"weights/{name}_max"] == 1.0
        else:
            assert m[f"weights/{name}_std"] > 0
    if not vd_fixed:
        assert 0.7 - 1e-6 <= m["weights/lambda_vd_min"] <= m["weights/lambda_vd_max"] <= 1.3 + 1e-6
    if not tn_fixed:
        assert 0.2 - 1e-6 <= m["weights/lambda_tn_min"] <= m["weights/lambda_tn_max"] <= 1.4 + 1e-6
    assert ("losses/vae2" in m) == (not tn_fixed)  # G² exists only where λ_tn is used
