"""Behaviour cloning with BCQ's VAE: MABCQ's generative model G¹ alone, two registry entries.

Only G¹(s, a) is trained. ``bc`` acts by decoding the latent ``z = 0``, the mode of the prior
(and the centre of the clipped prior BCQ samples from): a deterministic cloned policy.
``behavior`` (``sample_latent``) decodes z ~ N(0, I) clipped to [-0.5, 0.5], an action sampled
from G¹ exactly as BCQ samples its candidates: the behaviour policy the paper compares with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mabcq_bench.algos.common.batch import Batch
from mabcq_bench.algos.common.learner import TorchLearner, to_floats
from mabcq_bench.algos.common.nets import VAE
from mabcq_bench.algos.common.optim import adam


@dataclass
class BehaviorConfig:
    """Hyperparameters of the behaviour-cloning baseline (G¹ of MABCQ alone)."""

    hidden: tuple[int, ...] = (64, 64)  # MLP units of encoder and decoder, ReLU (Table 6)
    latent_dim: int = 10  # size of the latent z (as MABCQ's G¹)
    batch_size: int = 1024  # transitions per update (Table 6)
    lr_vae: float = 1e-4  # Adam learning rate (Table 6's rate of G)
    kl_weight: float = 0.5  # weight of the KL term (BCQ)
    sample_latent: bool = False  # act with z ~ clip(N(0, I), ±0.5) instead of the prior's mode z = 0

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)


class Behavior(TorchLearner):
    """The action decoded by G¹: a ≈ D¹(s, z)."""

    has_value = False

    def __init__(self, state_dim: int, action_dim: int, config: BehaviorConfig | None = None, *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        config = config or BehaviorConfig()
        super().__init__(config, seed, device)
        self.modules = {"vae1": VAE(state_dim, action_dim, config.latent_dim, config.hidden, generator=self.init_generator)}
        self._finish_init()
        self.vae1 = self.modules["vae1"]
        self.optimizers = {"vae": adam(self.vae1, config.lr_vae)}

    def train(self, batch: Batch) -> dict[str, float]:
        self.updates += 1
        loss, _ = self.vae1.loss(batch.states, batch.actions, self.generators["train"], self.config.kl_weight)
        self.optimizers["vae"].zero_grad()
        loss.backward()
        self.optimizers["vae"].step()
        return to_floats({"losses/vae": loss.detach()})

    @torch.no_grad()
    def act(self, states: np.ndarray) -> np.ndarray:
        s = self._states(states)
        if self.config.sample_latent:
            return self.vae1.sample(s, 1, self.generators["act"])[:, 0].cpu().numpy()
        z = torch.zeros(len(s), 1, self.vae1.latent_dim, device=s.device)
        return self.vae1.decode(s, z)[:, 0].cpu().numpy()

    def value(self, states: np.ndarray) -> np.ndarray:
        """No Q-function: NaN for every state."""
        return np.full(len(states), np.nan, dtype=np.float32)
