"""The base of the learners here: seeding, device, step counter, checkpoints and stacking."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mabcq_bench.algos.common import stacking
from mabcq_bench.algos.common.batch import Batch
from mabcq_bench.algos.common.configs import config_dict, plain
from mabcq_bench.algos.common.optim import Adam
from mabcq_bench.algos.common.params import rebind


def derived_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent 63-bit seeds from one seed (init, training noise, acting noise...)."""
    words = np.random.SeedSequence(seed).generate_state(count, dtype=np.uint64)
    return [int(w) >> 1 for w in words]


def to_floats(logs: dict[str, Tensor]) -> dict[str, float]:
    """Scalar tensors to floats with one device sync."""
    values = torch.stack(list(logs.values())).tolist()
    return dict(zip(logs.keys(), values))


def group_floats(logs: dict[str, Tensor]) -> list[dict[str, float]]:
    """Per-group metrics, tensors ``(G,)``, to one dict of floats per group, with one device sync."""
    values = torch.stack(list(logs.values())).tolist()  # (metrics, G)
    return [dict(zip(logs.keys(), column)) for column in zip(*values)]


class TorchLearner:
    """Base of the learners here: seeding, device, step counter, and checkpoints.

    A subclass fills :attr:`modules`, :attr:`optimizers` and :attr:`generators` in ``__init__``;
    :meth:`state_dict` / :meth:`load_state_dict` then cover all of them.

    Four random streams, derived from the seed: ``init`` (initial weights, drawn on the CPU so
    they are the same on every device), ``train`` (the noise of updates), ``act`` (the noise of
    acting) and ``value`` (the noise of :meth:`value`, the coordination diagnostic). Acting and
    valuing never touch ``train``, so evaluating does not change the training trajectory, and
    neither touches the other, so the diagnostic does not change what is evaluated.

    Stacking. A subclass whose update is written for a leading group dim (``stacks = True``;
    ``mabcq.MABCQ``) can train G agents' learners as one (:mod:`mabcq_bench.algos.common.stacking`):
    :meth:`stack` builds a learner of G groups from G lone ones, :meth:`train_stacked` updates
    every group on its own batch, and :meth:`unstack` writes the values back into the lone
    learners, which act, value and checkpoint as always. A lone learner is the case G = 1.
    """

    has_value = True
    trains = True

    #: Whether :meth:`train_stacked` takes G groups, so that :meth:`stack` applies (the registry
    #: reads it: ``AlgoSpec.stacks``).
    stacks = False

    #: Whether the update can be captured in a CUDA graph (:mod:`mabcq_bench.algos.common.graphs`): its
    #: kernels and their shapes do not depend on values, and it syncs nothing with the host.
    captures = False

    def __init__(self, config: Any, seed: int, device: torch.device | str) -> None:
        self.config = config
        self.seed = seed
        self.device = torch.device(device)
        init_seed, train_seed, act_seed, value_seed = derived_seeds(seed, 4)  # the first three as before
        self.init_generator = torch.Generator().manual_seed(init_seed)
        self.generators: dict[str, torch.Generator] = {
            "train": torch.Generator(device=self.device).manual_seed(train_seed),
            "act": torch.Generator(device=self.device).manual_seed(act_seed),
            "value": torch.Generator(device=self.device).manual_seed(value_seed),
        }
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, Adam] = {}
        self.updates = 0
        self.members: list[TorchLearner] | None = None  # the lone learners of a stack (see stack)
        self.cuda_graph = False  # replay the update from a CUDA graph (where it captures, on a GPU)
        self._captured: Any = None  # the graph, once captured (graphs.CapturedUpdate)
        self._warmups = 0  # eager updates before capture (graphs.run_update)
        self._stacked_nets: dict[str, list[nn.Module]] = {}  # a stack's: per optimizer, the net of each flat it steps

    def _finish_init(self) -> None:
        """Move the modules to the device (call after creating them, before the optimizers)."""
        for module in self.modules.values():
            module.to(self.device)
            rebind(module)

    def eager_updates(self) -> int:
        """The first updates, which run eagerly: until the update takes the form it keeps (none
        here; MABCQ's pretraining of its VAEs)."""
        return 0

    @property
    def groups(self) -> int:
        """The agents this learner updates at once: 1, or a stack's G."""
        return 1 if self.members is None else len(self.members)

    def group_generators(self, stream: str) -> list[torch.Generator]:
        """Each group's generator of ``stream``: a lone learner's own, or each member's of a stack."""
        if self.members is None:
            return [self.generators[stream]]
        return [member.generators[stream] for member in self.members]

    def train_stacked(self, batches: Sequence[Batch]) -> list[dict[str, float]]:
        """One update of every group, group g on ``batches[g]``; its metrics per group."""
        raise NotImplementedError(f"{type(self).__name__} does not stack")

    @classmethod
    def stack(cls, learners: Sequence["TorchLearner"]) -> "TorchLearner":
        """One learner whose update is the G = ``len(learners)`` lone learners' updates (of this
        class, one config, the same sizes) as one batched computation, each group on its own
        batch; see :func:`mabcq_bench.algos.common.stacking.stack`.

        Raises:
            ValueError: a class that does not stack, or learners that cannot be stacked together.
        """
        if not cls.stacks:
            raise ValueError(f"{cls.__name__} does not stack")
        return stacking.stack(cls, learners)

    def unstack(self) -> None:
        """Write a stack's values back into its members (:func:`mabcq_bench.algos.common.stacking.unstack`)."""
        if self.members is None:
            raise ValueError("unstack: not a stack")
        stacking.unstack(self)

    def _lone(self, what: str) -> None:
        if self.members is not None:
            raise ValueError(f"{what} of a stacked learner: unstack() it and use its members")

    def reseed(self, stream: str, seed: int) -> None:
        """Restart the random stream ``act`` or ``value`` from ``seed``.

        The trainer calls it before every evaluation with a seed derived from the run's seed, the
        agent and the update count, so the policy evaluated at update u is the same whatever was
        evaluated before it (the evaluation schedule, the diagnostic).
        """
        if stream not in ("act", "value"):
            raise ValueError(f"reseed: stream must be 'act' or 'value', got {stream!r}")
        self._lone("reseed")
        self.generators[stream].manual_seed(seed)

    def prepare(self, data: Batch, episode_returns: np.ndarray | None = None) -> None:
        """Nothing to take from the dataset (see :meth:`~mabcq_bench.algos.common.batch.Learner.prepare`)."""

    def _states(self, states: np.ndarray) -> Tensor:
        self._lone("act and value")
        return torch.as_tensor(np.asarray(states, dtype=np.float32), device=self.device)

    def state_dict(self) -> dict[str, Any]:
        self._lone("state_dict")  # checkpoints stay per agent
        return {
            "config": config_dict(self.config),
            "updates": self.updates,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generators": {k: g.get_state() for k, g in self.generators.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._lone("load_state_dict")
        mine = config_dict(self.config)
        if plain(state["config"]) != mine:
            raise ValueError(f"checkpoint config {state['config']} differs from this learner's {mine}")
        self.updates = int(state["updates"])
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, g in self.generators.items():
            g.set_state(state["generators"][k].cpu())
