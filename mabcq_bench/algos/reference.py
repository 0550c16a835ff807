"""Reference rows that train nothing: what doing nothing and acting at random score.

``zero-action`` sends a zero action (on Ant-v5 that alone collects about +1 per step alive);
``random`` sends a uniform action in the action box [-1, 1] from the learner's ``act`` stream.
They run through the same protocol as every algorithm, so every leaderboard shows at once what
a score above them is worth. Their updates do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mabcq_bench.algos.common.batch import Batch
from mabcq_bench.algos.common.learner import TorchLearner


@dataclass
class ReferenceConfig:
    """No hyperparameters: the trainer still draws a minibatch per update (of this size)."""

    batch_size: int = 1  # transitions the trainer samples per (ignored) update


class ZeroAction(TorchLearner):
    """Always the zero action."""

    has_value = False
    trains = False

    def __init__(self, state_dim: int, action_dim: int, config: ReferenceConfig | None = None, *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        super().__init__(config or ReferenceConfig(), seed, device)
        self.action_dim = action_dim

    def train(self, batch: Batch) -> dict[str, float]:
        self.updates += 1
        return {}

    def act(self, states: np.ndarray) -> np.ndarray:
        return np.zeros((len(states), self.action_dim), dtype=np.float32)

    def value(self, states: np.ndarray) -> np.ndarray:
        """No Q-function: NaN for every state."""
        return np.full(len(states), np.nan, dtype=np.float32)


class RandomAction(ZeroAction):
    """A uniform action in [-1, 1] per agent and state, from the seeded ``act`` generator."""

    def act(self, states: np.ndarray) -> np.ndarray:
        u = torch.rand(len(states), self.action_dim, generator=self.generators["act"], device=self.device)
        return (2.0 * u - 1.0).cpu().numpy()
