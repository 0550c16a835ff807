"""What a learner takes from its own dataset before training, as modules whose statistics are
buffers (so they travel in ``state_dict`` and checkpoints): a state normalization (TD3+BC, IQL,
OMAR) and a reward scale (IQL)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class StateNorm(nn.Module):
    """``(s − mean) / std`` with the statistics as buffers (so they are part of ``state_dict``).

    Starts as the identity (mean 0, std 1) until :meth:`fit` sees the dataset.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, state_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(state_dim))
        self.register_buffer("std", torch.ones(state_dim))

    @torch.no_grad()
    def fit(self, states: Tensor, eps: float) -> None:
        """Take the mean and the (population) std + ``eps`` of ``states (N, S)``, per feature."""
        self.mean.copy_(states.mean(0))
        self.std.copy_(states.std(0, correction=0) + eps)

    def forward(self, states: Tensor) -> Tensor:
        return (states - self.mean) / self.std


class RewardScale(nn.Module):
    """A reward multiplier as a buffer (so it travels in ``state_dict``); 1 until :meth:`fit`."""

    scale: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()))

    @torch.no_grad()
    def fit(self, episode_returns: np.ndarray, target_range: float) -> None:
        """``scale = target_range / (max − min)`` of ``episode_returns``: the IQL authors' reward
        normalization for locomotion (1000 / the return range of the dataset's episodes).

        Raises:
            ValueError: fewer than two distinct episode returns (no range to normalize by).
        """
        returns = np.asarray(episode_returns, dtype=np.float64)
        spread = float(returns.max() - returns.min()) if returns.size else 0.0
        if spread <= 0.0:
            raise ValueError(f"reward scaling needs episodes with different returns; got {returns.size} episode(s) with a range of {spread}")
        self.scale.fill_(target_range / spread)

    def forward(self, rewards: Tensor) -> Tensor:
        return rewards * self.scale
