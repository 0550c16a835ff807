"""The batch type and the learner interface.

A *learner* is one agent's algorithm. It sees only its own dataset B_i (batches of
``(s, a_i, r, s', terminal)``), never another agent's actions or parameters.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from mabcq_bench.data.buffer import AgentData


class Batch(NamedTuple):
    """A minibatch (or a whole dataset) of one agent's transitions as tensors on one device.

    Attributes:
        states: ``(B, state_dim)`` s.
        actions: ``(B, action_dim)`` the agent's own a_i, in [-1, 1].
        rewards: ``(B,)`` r.
        next_states: ``(B, state_dim)`` s'.
        terminals: ``(B,)`` 1.0 where s' is terminal (no bootstrapping), else 0.0.
    """

    states: Tensor
    actions: Tensor
    rewards: Tensor
    next_states: Tensor
    terminals: Tensor

    @classmethod
    def from_agent_data(cls, data: AgentData, device: torch.device | str = "cpu") -> "Batch":
        """The whole of ``data`` as float32 tensors on ``device``."""
        fields = (data.observations, data.actions, data.rewards, data.next_observations, data.terminals)
        return cls(*(torch.as_tensor(np.asarray(f, dtype=np.float32), device=device) for f in fields))

    def take(self, index: Tensor) -> "Batch":
        """The rows ``index`` (a 1-D integer tensor on the same device)."""
        return Batch(*(t.index_select(0, index) for t in self))

    @property
    def size(self) -> int:
        """Number of transitions (``len()`` is the tuple's, 5, as for any NamedTuple)."""
        return self.rewards.shape[0]

    @classmethod
    def stacked(cls, batches: Sequence["Batch"]) -> "Batch":
        """G agents' minibatches of one size as one, every field with a leading group dim
        (``states (G, B, state_dim)``...): what a stacked learner's update takes. One batch is
        viewed, not copied."""
        if len(batches) == 1:
            return cls(*(t.unsqueeze(0) for t in batches[0]))
        return cls(*(torch.stack(fields) for fields in zip(*batches)))


@runtime_checkable
class Learner(Protocol):
    """The interface the decentralized trainer, the benchmark and the tests use."""

    #: False for learners without a Q-function (then :meth:`value` returns NaN).
    has_value: bool

    #: False for reference rows whose updates do nothing (the speed benchmark skips them).
    trains: bool

    def train(self, batch: Batch) -> dict[str, float]:
        """One update on a minibatch; returns namespaced metrics (``losses/q``, ``weights/...``)."""

    def act(self, states: np.ndarray) -> np.ndarray:
        """The agent's action ``(B, action_dim)`` float32 for states ``(B, state_dim)``."""

    def value(self, states: np.ndarray) -> np.ndarray:
        """``(B,)`` Q_i(s, π_i(s)), the agent's own estimate of the state's value."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training bit for bit: nets, optimizers, RNG states."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the learner must have the same config)."""

    def reseed(self, stream: str, seed: int) -> None:
        """Restart the random stream ``act`` or ``value`` from ``seed`` (the trainer does so before
        every evaluation). Optional: a learner without one acts without noise."""

    def prepare(self, data: Batch, episode_returns: np.ndarray | None = None) -> None:
        """See the agent's whole dataset B_i once, before the first update (and again before a
        checkpoint is loaded): where a learner takes statistics of its data, e.g. TD3+BC's state
        normalization or IQL's reward scale. ``episode_returns`` are the returns of the dataset's
        complete episodes (``None`` where unknown). Optional: the trainer calls it where it exists."""
