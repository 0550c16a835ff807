"""The paper's matrix game (Section 3.1-3.2, Appendix B), solved exactly in tabular form.

Every agent ``i`` sees only its own dataset ``B_i`` of ``(a_i, s')`` pairs, collected while all
agents followed their behaviour policies ``beta_j``. The game is one step: the next state ``s'``
is the joint-action cell, and its value is the cell's payoff (``gamma`` plays no role). So the
transition probability that agent ``i`` estimates from ``B_i`` is

    P_Bi(cell | a_i) = prod_{j != i} beta_j(a_j)      (cells whose i-th index is a_i)

and the value of ``a_i`` is the expected payoff of the next cell. The variants modify ``P_Bi``
with the paper's importance weights before taking that expectation:

* transition normalization, ``lambda_tn = 1 / P_Bi`` divided by ``c^2`` (the number of next
  states present in ``B_i`` given ``a_i``): ``P_Bi`` becomes uniform over those next states;
* value deviation, ``lambda_vd = 1 + (V(s') - E) / |E|`` with ``E`` the expected next-state value
  under the probabilities being modified (after ``lambda_tn`` when both are on), optionally
  clipped to ``[1 - epsilon, 1 + epsilon]``; the product is renormalized (``c_i``) to sum to 1.

Two rules the paper leaves open, chosen here and applied by every variant:

* ``E == 0`` (``|E| <= 1e-12 * max|V|``): the relative deviation is undefined, so ``lambda_vd = 1``
  (no deviation). Theorem 1 assumes positive rewards; shift payoffs up to get optimism there.
* A negative ``lambda_vd`` (possible with negative payoffs) is clamped to 0 before renormalizing:
  a probability cannot be negative. The sum stays positive because ``sum_s' P * lambda_vd = 1``
  before clipping, so some next state keeps a positive weight.

Actions with zero behaviour probability never appear in ``B_i``; like BCQ, every variant only
chooses among in-dataset actions, and those actions get no value (``None``). Cells with zero
probability are not in the dataset either, so they are not next states for ``lambda_tn``. Each
agent picks the in-dataset action of highest value; ties (within ``rtol=1e-9``) go to the lowest
index.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np

from mabcq_bench.errors import UserError


class AlgoSpec(NamedTuple):
    """Which importance weights a variant applies to ``P_Bi``."""

    use_vd: bool  # value deviation, lambda_vd (Section 3.2.1)
    use_tn: bool  # transition normalization, lambda_tn (Section 3.2.2)


# Name -> weights. BCQ is the unweighted baseline; the ablations drop one weight each (Appendix B).
ALGOS: dict[str, AlgoSpec] = {
    "bcq": AlgoSpec(use_vd=False, use_tn=False),
    "mabcq-no-tn": AlgoSpec(use_vd=True, use_tn=False),
    "mabcq-no-vd": AlgoSpec(use_vd=False, use_tn=True),
    "mabcq": AlgoSpec(use_vd=True, use_tn=True),
}

PROB_TOL = 1e-6  # how far a behaviour policy may sum from 1
_ZERO_E_RTOL = 1e-12  # |E| at or below this times max|V| counts as E == 0
_TIE_RTOL = 1e-9  # values this close count as a tie (lowest index wins)


@dataclass(frozen=True)
class Transition:
    """One next state of ``(a_i, s')`` in ``B_i``.

    Attributes:
        cell: the joint action (one 0-based index per agent) that is the next state.
        payoff: the cell's payoff, i.e. ``V(s')``.
        p_dataset: ``P_Bi(cell | a_i)`` as estimated from the dataset.
        p: the same probability after the algorithm's importance weights.
    """

    cell: tuple[int, ...]
    payoff: float
    p_dataset: float
    p: float


@dataclass(frozen=True)
class ActionResult:
    """Agent ``i``'s view of one of its actions.

    Attributes:
        action: 0-based action index of the agent.
        behavior_p: ``beta_i(a_i)``; 0 means the action is not in ``B_i`` (out of distribution).
        transitions: next states with their probabilities; empty for an out-of-dataset action.
        value: expected payoff of the next cell under the modified ``p``; ``None`` when out of
            dataset (never chosen).
    """

    action: int
    behavior_p: float
    transitions: tuple[Transition, ...]
    value: float | None


@dataclass(frozen=True)
class MatrixGameResult:
    """What every agent computes from its dataset, and the joint action they arrive at.

    Attributes:
        algo: name in :data:`ALGOS`.
        use_vd: whether value deviation was applied.
        use_tn: whether transition normalization was applied.
        epsilon: the clip half-width on ``lambda_vd``, or ``None`` for unclipped.
        actions: ``actions[i][a]`` is agent ``i``'s view of its action ``a``.
        joint_action: the action each agent picks (0-based), one per agent.
        payoff_return: the payoff of ``joint_action`` (``"return"`` in :meth:`to_dict`).
    """

    algo: str
    use_vd: bool
    use_tn: bool
    epsilon: float | None
    actions: tuple[tuple[ActionResult, ...], ...]
    joint_action: tuple[int, ...]
    payoff_return: float

    @property
    def values(self) -> list[list[float | None]]:
        """``values[i][a]``: expected return of agent ``i``'s action ``a`` (``None``: OOD)."""
        return [[act.value for act in agent] for agent in self.actions]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: algo, weights, joint_action, return, values, transitions.

        ``transitions[i][a]`` is a list of ``{cell, payoff, p_dataset, p}``; ``in_dataset[i][a]``
        says whether the action appears in ``B_i`` at all.
        """
        return {
            "algo": self.algo,
            "use_vd": self.use_vd,
            "use_tn": self.use_tn,
            "epsilon": self.epsilon,
            "joint_action": list(self.joint_action),
            "return": self.payoff_return,
            "values": self.values,
            "in_dataset": [[act.behavior_p > 0 for act in agent] for agent in self.actions],
            "transitions": [
                [
                    [
                        {"cell": list(t.cell), "payoff": t.payoff, "p_dataset": t.p_dataset, "p": t.p}
                        for t in act.transitions
                    ]
                    for act in agent
                ]
                for agent in self.actions
            ],
        }


# --- parsing user input ----------------------------------------------------------------------


# --- validation ------------------------------------------------------------------------------


def _check_inputs(
    payoff: np.ndarray, behavior: Sequence[np.ndarray], algo: str, epsilon: float | None
) -> None:
    if algo not in ALGOS:
        raise UserError(f"unknown algo {algo!r}; choose one of: {', '.join(ALGOS)}")
    if epsilon is not None and not (math.isfinite(epsilon) and epsilon >= 0):
        raise UserError(f"epsilon must be a finite number >= 0, got {epsilon}")
    if payoff.ndim < 1 or payoff.size == 0:
        raise UserError("payoff needs at least one dimension (one per agent) and one action per agent")
    if not np.isfinite(payoff).all():
        raise UserError("payoff must contain only finite numbers (no NaN or Infinity)")
    if len(behavior) != payoff.ndim:
        raise UserError(
            f"payoff has {payoff.ndim} dimension(s), so give {payoff.ndim} --behavior "
            f"(one per agent); got {len(behavior)}"
        )
    for i, beta in enumerate(behavior):
        if beta.ndim != 1 or len(beta) != payoff.shape[i]:
            raise UserError(
                f"behavior of agent {i} has {beta.size} probabilities, but the payoff gives agent {i} "
                f"{payoff.shape[i]} actions (shape {list(payoff.shape)})"
            )
        if not np.isfinite(beta).all() or (beta < 0).any():
            raise UserError(f"behavior of agent {i} has a negative or non-finite probability: {beta.tolist()}")
        if abs(beta.sum() - 1.0) > PROB_TOL:
            raise UserError(
                f"behavior of agent {i} must sum to 1 (tolerance {PROB_TOL:g}); it sums to {beta.sum():.6g}"
            )


# --- the maths -------------------------------------------------------------------------------


def dataset_transitions(
    payoff: np.ndarray, behavior: Sequence[np.ndarray], agent: int, action: int
) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """``P_Bi(cell | a_i)``: the next cells in agent ``i``'s dataset after action ``a_i``.

    The other agents act by their behaviour policies, so a cell's weight is
    ``prod_{j != i} beta_j(a_j)``; cells of weight 0 never occur in ``B_i`` and are left out.
    Every cell is its own next state, even when two cells have equal payoffs.

    Args:
        payoff: shape ``(n_0, ..., n_{N-1})``.
        behavior: N arrays, ``behavior[j]`` of shape ``(n_j,)``.
        agent: ``i``.
        action: ``a_i``, with ``behavior[i][a_i] > 0``.

    Returns:
        The cells (one 0-based index per agent) and their probabilities, shape ``(n_cells,)``,
        summing to 1.
    """
    axes = [range(n) if j != agent else [action] for j, n in enumerate(payoff.shape)]
    cells, weights = [], []
    for cell in itertools.product(*axes):
        weight = math.prod(float(behavior[j][a_j]) for j, a_j in enumerate(cell) if j != agent)
        if weight > 0:
            cells.append(tuple(cell))
            weights.append(weight)
    p = np.asarray(weights, dtype=float)
    # num(a_i, s') / sum num(a_i, s'): normalizing also absorbs behaviours summing to 1 +- tolerance.
    return cells, p / p.sum()


def transition_normalization(p: np.ndarray) -> np.ndarray:
    """``P * lambda_tn / c^2`` with ``lambda_tn = 1/P`` and ``c^2`` = number of next states.

    Args:
        p: ``P_Bi(s' | a_i)`` over the next states present in ``B_i``, shape ``(n,)``, all > 0.

    Returns:
        Uniform probabilities, shape ``(n,)``.
    """
    lambda_tn = 1.0 / p
    return p * lambda_tn / len(p)


def value_deviation_weights(p: np.ndarray, v: np.ndarray, epsilon: float | None = None) -> np.ndarray:
    """``lambda_vd = 1 + (V(s') - E) / |E|`` with ``E = sum_s' p V``, clipped and clamped.

    Args:
        p: the probabilities being modified, shape ``(n,)``.
        v: next-state values ``V(s')`` (payoffs), shape ``(n,)``.
        epsilon: if given, clip ``lambda_vd`` to ``[1 - epsilon, 1 + epsilon]`` (Section 3.3).

    Returns:
        Unnormalized weights, shape ``(n,)``, all >= 0. All ones when ``E == 0`` (the relative
        deviation is undefined); negative weights are clamped to 0.
    """
    expected = float(p @ v)
    if abs(expected) <= _ZERO_E_RTOL * float(np.abs(v).max()):
        return np.ones_like(p)
    lambda_vd = 1.0 + (v - expected) / abs(expected)
    if epsilon is not None:
        lambda_vd = np.clip(lambda_vd, 1.0 - epsilon, 1.0 + epsilon)
    return np.maximum(lambda_vd, 0.0)


def modified_transitions(
    p: np.ndarray, v: np.ndarray, spec: AlgoSpec, epsilon: float | None = None
) -> np.ndarray:
    """``P_hat = P * lambda_tn * lambda_vd / c_i`` for the weights that ``spec`` turns on.

    Args:
        p: ``P_Bi(s' | a_i)``, shape ``(n,)``, all > 0, summing to 1.
        v: ``V(s')``, shape ``(n,)``.
        spec: which weights to apply.
        epsilon: clip half-width for ``lambda_vd``, or ``None``.

    Returns:
        Modified probabilities, shape ``(n,)``, summing to 1.
    """
    if spec.use_tn:
        p = transition_normalization(p)
    if spec.use_vd:
        # E is taken under the probabilities being modified, i.e. after lambda_tn when both are on.
        weighted = p * value_deviation_weights(p, v, epsilon)
        p = weighted / weighted.sum()  # c_i
    return p


def _argmax_lowest(values: list[float | None]) -> int:
    """Index of the highest non-None value; ties (within _TIE_RTOL) go to the lowest index."""
    best = max(v for v in values if v is not None)
    return next(
        a for a, v in enumerate(values) if v is not None and math.isclose(v, best, rel_tol=_TIE_RTOL)
    )


def solve(
    payoff: np.ndarray, behavior: Sequence[np.ndarray], algo: str, epsilon: float | None = None
) -> MatrixGameResult:
    """Solve the one-step matrix game as each agent sees it from its own dataset.

    Args:
        payoff: shape ``(n_0, ..., n_{N-1})``, one axis per agent (N >= 1), finite.
        behavior: N behaviour policies, ``behavior[i]`` of shape ``(n_i,)``, >= 0, summing to 1.
        algo: a name in :data:`ALGOS` (``bcq``, ``mabcq-no-tn``, ``mabcq-no-vd``, ``mabcq``).
        epsilon: clip ``lambda_vd`` to ``[1 - epsilon, 1 + epsilon]``; ``None`` leaves it unclipped.

    Returns:
        Per agent and action, the modified transitions and the value; the joint action of the
        agents' argmax picks (in-dataset actions only, ties to the lowest index) and its payoff.

    Raises:
        UserError: any input is malformed (see the messages).
    """
    payoff = np.asarray(payoff, dtype=float)
    behavior = [np.asarray(beta, dtype=float) for beta in behavior]
    _check_inputs(payoff, behavior, algo, epsilon)
    spec = ALGOS[algo]

    # Written once, applied to every agent: each sees only its own B_i.
    actions: list[tuple[ActionResult, ...]] = []
    for i, beta in enumerate(behavior):
        per_action = []
        for a in range(payoff.shape[i]):
            if beta[a] <= 0:  # never taken by the behaviour policy: out of distribution
                per_action.append(ActionResult(a, 0.0, (), None))
                continue
            cells, p_data = dataset_transitions(payoff, behavior, i, a)
            v = np.array([payoff[cell] for cell in cells])
            p_hat = modified_transitions(p_data, v, spec, epsilon)
            transitions = tuple(
                Transition(cell, float(v_k), float(pd_k), float(p_k))
                for cell, v_k, pd_k, p_k in zip(cells, v, p_data, p_hat)
            )
            per_action.append(ActionResult(a, float(beta[a]), transitions, float(p_hat @ v)))
        actions.append(tuple(per_action))

    joint = tuple(_argmax_lowest([act.value for act in agent]) for agent in actions)
    return MatrixGameResult(
        algo=algo,
        use_vd=spec.use_vd,
        use_tn=spec.use_tn,
        epsilon=epsilon,
        actions=tuple(actions),
        joint_action=joint,
        payoff_return=float(payoff[joint]),
    )


# --- presentation ----------------------------------------------------------------------------
