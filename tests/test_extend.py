"""Adding an algorithm is one registry entry plus one file: docs/adding-an-algorithm.md's example, run for real."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mabcq_bench.runs import execute, plan, protocol
from mabcq_bench.runs.protocol import load_protocol
from mabcq_bench.algos import ALGOS, AlgoSpec


# --- docs/adding-an-algorithm.md's example: deterministic behaviour cloning ----------------
@dataclass
class BCConfig:
    hidden: int = 64  # units of the two hidden layers
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 256  # transitions per update


class BC:
    has_value = False  # no Q-function: the coordination diagnostic is skipped

    def __init__(self, state_dim, action_dim, config, *, seed=0, device="cpu"):
        torch.manual_seed(seed)
        self.config = config
        self.net = torch.nn.Sequential(
            torch.nn.Linear(state_dim, config.hidden), torch.nn.ReLU(),
            torch.nn.Linear(config.hidden, config.hidden), torch.nn.ReLU(),
            torch.nn.Linear(config.hidden, action_dim), torch.nn.Tanh(),
        ).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)

    def train(self, batch):
        loss = ((self.net(batch.states) - batch.actions) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"losses/bc": loss.item()}

    @torch.no_grad()
    def act(self, states):
        return self.net(torch.as_tensor(states, dtype=torch.float32)).numpy()

    def value(self, states):
        return np.full(len(states), np.nan, dtype=np.float32)

    def state_dict(self):
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "rng": torch.get_rng_state()}

    def load_state_dict(self, state):
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
# --- end of the example ----------------------------------------------------------------------


def test_a_new_algorithm_runs_through_the_harness(store, monkeypatch):
    monkeypatch.setitem(ALGOS, "mlp-bc", AlgoSpec("mlp-bc", BC, BCConfig, {}, "behaviour cloning with a plain MLP"))
    path = protocol.BASELINES_DIR / "tiny.toml"
    original = path.read_text()
    path.write_text(original + "\n[algos.mlp-bc]\nhidden = 32\nlr = 0.001\nbatch_size = 64\n")
    try:
        (run,) = plan.prepare([plan.RunSpec("tiny", "hopper", "mlp-bc", 0)], load_protocol("tiny"), "tiny")
        record = execute.execute(run, store["results"])
    finally:
        path.write_text(original)
    assert record["algo"] == "mlp-bc" and record["config"] == {"hidden": 32, "lr": 0.001, "batch_size": 64}
    assert np.isfinite(record["final"]["normalized_score"]) and record["final"]["coordination_gap"] is None
