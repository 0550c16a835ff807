"""What every learner shares: the batch type, the learner interface, seeding and checkpoints.

A *learner* is one agent's algorithm. It sees only its own dataset B_i (batches of
``(s, a_i, r, s', terminal)``), never another agent's actions or parameters.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import platform
from typing import Any, Iterator, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from mabcq_bench.algos.optim import Adam, adam  # noqa: F401  (the learners import them from here)
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


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run a block with ``torch.set_num_threads(threads)`` (``None``: as it is), then restore it.

    Yields the thread count in force. CPU results are bitwise reproducible for a fixed count.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def tune_malloc() -> bool:
    """Keep freed memory in the process instead of returning it to the OS (glibc only).

    An update allocates and frees the same few-MB activations every step. With glibc's defaults
    blocks of that size come from ``mmap`` and go back on ``free``, so every step touches fresh
    pages, and page faults cost more than the update's arithmetic on some machines (measured:
    one 10240-row decoder pass 4.2 ms with the defaults, 1.8 ms with this). Sets
    ``M_MMAP_THRESHOLD`` to its maximum (32 MiB) and ``M_TRIM_THRESHOLD`` to 256 MiB, for the whole
    process. Returns whether it applied (False off glibc).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 256 << 20))


def derived_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent 63-bit seeds from one seed (init, training noise, acting noise...)."""
    words = np.random.SeedSequence(seed).generate_state(count, dtype=np.uint64)
    return [int(w) >> 1 for w in words]


def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging θ' ← (1 − τ)θ' + τθ, one fused call over the nets' flat parameters."""
    targets, onlines = flat_params([target]), flat_params([online])
    torch._foreach_lerp_([t for t, _ in targets], [o for o, _ in onlines], tau)


def target_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to serve as its target network."""
    target = copy.deepcopy(module)
    rebind(target)
    target.requires_grad_(False)
    return target


def rebind(module: nn.Module) -> None:
    """Re-create the flat parameter storage of every ``nets.MLP`` in ``module`` (after a copy or
    a move, which give each parameter its own storage)."""
    from mabcq_bench.algos.common.nets import MLP

    for m in module.modules():
        if isinstance(m, MLP):
            m.rebind()


def flat_params(modules: list[nn.Module]) -> list[tuple[Tensor, Tensor]]:
    """``(flat, flat_grad)`` of every ``nets.MLP`` in ``modules``: what the optimizer steps."""
    from mabcq_bench.algos.common.nets import MLP

    return [(m.flat, m.flat_grad) for module in modules for m in module.modules() if isinstance(m, MLP)]


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
    ``mabcq.MABCQ``) can train G agents' learners as one (:mod:`mabcq_bench.algos.stacking`):
    :meth:`stack` builds a learner of G groups from G lone ones, :meth:`train_stacked` updates
    every group on its own batch, and :meth:`unstack` writes the values back into the lone
    learners, which act, value and checkpoint as always. A lone learner is the case G = 1.
    """

    has_value = True
    trains = True

    #: Whether :meth:`train_stacked` takes G groups, so that :meth:`stack` applies (the registry
    #: reads it: ``AlgoSpec.stacks``).
    stacks = False

    #: Whether the update can be captured in a CUDA graph (:mod:`mabcq_bench.algos.graphs`): its
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
        batch; see :func:`mabcq_bench.algos.stacking.stack`.

        Raises:
            ValueError: a class that does not stack, or learners that cannot be stacked together.
        """
        from mabcq_bench.algos import stacking

        if not cls.stacks:
            raise ValueError(f"{cls.__name__} does not stack")
        return stacking.stack(cls, learners)

    def unstack(self) -> None:
        """Write a stack's values back into its members (:func:`mabcq_bench.algos.stacking.unstack`)."""
        from mabcq_bench.algos import stacking

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
        """Nothing to take from the dataset (see :meth:`Learner.prepare`)."""

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


def plain(obj: Any) -> Any:
    """Tuples as lists (recursively), so a config compares equal after a checkpoint round trip."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a dict of plain values (what checkpoints and results store)."""
    return plain(dataclasses.asdict(config))
