"""The matrix game on the command line: reading a payoff table and behaviour policies, printing
the solution of :func:`mabcq_bench.algos.matrix_game.solve`."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mabcq_bench.algos.matrix_game import MatrixGameResult
from mabcq_bench.errors import UserError


def _nested_shape(obj: Any, where: str) -> tuple[int, ...]:
    """Shape of a nested JSON list of numbers, raising UserError if ragged, empty or non-numeric."""
    if isinstance(obj, bool) or not isinstance(obj, (int, float, list)):
        raise UserError(f"payoff must contain only numbers, found {json.dumps(obj)} at {where}")
    if not isinstance(obj, list):
        return ()
    if not obj:
        raise UserError(f"payoff has an empty list at {where}: every agent needs at least one action")
    shapes = {_nested_shape(item, f"{where}[{k}]") for k, item in enumerate(obj)}
    if len(shapes) > 1:
        raise UserError(f"payoff is not rectangular: the entries of {where} have different shapes")
    return (len(obj), *shapes.pop())


def parse_payoff(text: str) -> np.ndarray:
    """Parse ``--payoff``: a nested JSON list with one dimension per agent.

    Args:
        text: e.g. ``"[[1,5],[6,1]]"`` (two agents with two actions each).

    Returns:
        Float array of shape ``(n_actions_0, ..., n_actions_{N-1})``.

    Raises:
        UserError: not JSON, not a list, ragged, empty, or not finite numbers.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"payoff is not valid JSON ({exc.msg} at char {exc.pos}): {text!r}") from None
    if not isinstance(obj, list):
        raise UserError(
            f"payoff must be a nested list with one dimension per agent, e.g. [[1,5],[6,1]]; got {text!r}"
        )
    _nested_shape(obj, "payoff")
    payoff = np.asarray(obj, dtype=float)
    if not np.isfinite(payoff).all():
        raise UserError("payoff must contain only finite numbers (no NaN or Infinity)")
    return payoff


def parse_behavior(text: str, agent: int) -> np.ndarray:
    """Parse one ``--behavior``: comma-separated action probabilities, e.g. ``"0.8,0.2"``.

    Args:
        text: the option's value.
        agent: 0-based agent index, for the error message.

    Returns:
        Float array of shape ``(n_actions,)``; validated against the payoff by :func:`solve`.

    Raises:
        UserError: an entry is not a number.
    """
    parts = [part.strip() for part in text.split(",")]
    try:
        return np.array([float(part) for part in parts], dtype=float)
    except ValueError:
        raise UserError(
            f"behavior of agent {agent} must be comma-separated probabilities like 0.8,0.2; got {text!r}"
        ) from None


def format_table(result: MatrixGameResult) -> str:
    """A small readable table: per agent, each action's transitions and value; then the pick.

    Indices are 0-based (the paper's ``a_1`` is action 0). A transition reads
    ``(cell)=payoff:p``, with ``p`` the modified probability.
    """
    on_off = {True: "on", False: "off"}
    eps = "none" if result.epsilon is None else f"{result.epsilon:g}"
    lines = [
        f"algo {result.algo}: value deviation {on_off[result.use_vd]}, "
        f"transition normalization {on_off[result.use_tn]}, epsilon {eps}"
    ]
    for i, agent in enumerate(result.actions):
        rows = []
        for act in agent:
            if act.value is None:
                rows.append((str(act.action), "not in dataset (behaviour p = 0), never chosen", "-"))
                continue
            trans = "  ".join(
                f"({','.join(map(str, t.cell))})={t.payoff:g}:{t.p:.2f}" for t in act.transitions
            )
            rows.append((str(act.action), trans, f"{act.value:.2f}"))
        width = max(len("transitions (cell)=payoff:p"), *(len(r[1]) for r in rows))
        behavior = ", ".join(f"{act.behavior_p:g}" for act in agent)
        lines.append(f"agent {i} (behaviour {behavior})")
        lines.append(f"  action  {'transitions (cell)=payoff:p':<{width}}  value")
        lines.extend(f"  {a:<6}  {trans:<{width}}  {value}" for a, trans, value in rows)
    joint = ", ".join(map(str, result.joint_action))
    lines.append(f"joint action ({joint}), return {result.payoff_return:g}")
    return "\n".join(lines)
