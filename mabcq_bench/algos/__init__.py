"""The algorithm layer and its registry: every learner the benchmark runs, by name.

``common`` (what the learners share, a layer below them that imports none of them: the batch
type and the learner interface, the networks, Adam, the ``TorchLearner`` base with seeding and
checkpoints, ``stacking``, which makes G agents' learners one batched learner, CUDA graphs and
normalization) → ``weights`` (λ_vd, λ_tn) → one file per
learner (``mabcq``, with its ablations as config flags; ``ddpg``; ``td3bc``; ``iql``; ``cql``;
``omar``, which reuses cql's conservative gap and td3bc's state normalization; ``behavior``,
whose two entries are ``bc`` and ``behavior``; ``reference``); ``matrix_game``
(the paper's tabular game, with ``matrix_game_io`` for the CLI) and ``bench`` (update timings).

Adding an algorithm is one entry in :data:`ALGOS`: a learner class implementing
:class:`~mabcq_bench.algos.common.batch.Learner`, its config dataclass, and the config values
that make this entry what it is (the ablations are MABCQ with a weight switched off, not copies).

May import: ``mabcq_bench.data`` (the task registry, agent data), ``mabcq_bench.errors``,
``mabcq_bench.util`` and modules of this package. Never the runs, reports or the CLI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from mabcq_bench.algos.common.batch import Batch, Learner
from mabcq_bench.algos.common.learner import TorchLearner
from mabcq_bench.algos.behavior import Behavior, BehaviorConfig
from mabcq_bench.algos.cql import CQL, CQLConfig
from mabcq_bench.algos.ddpg import DDPG, DDPGConfig
from mabcq_bench.algos.iql import IQL, IQLConfig
from mabcq_bench.algos.mabcq import MABCQ, MABCQConfig
from mabcq_bench.algos.omar import OMAR, OMARConfig
from mabcq_bench.algos.reference import RandomAction, ReferenceConfig, ZeroAction
from mabcq_bench.algos.td3bc import TD3BC, TD3BCConfig
from mabcq_bench.errors import UserError
from mabcq_bench.data.tasks import Task


@dataclass(frozen=True)
class AlgoSpec:
    """One registered algorithm.

    Attributes:
        name: registry key (``mabcq-no-tn``).
        learner: class built as ``learner(state_dim, action_dim, config, seed=..., device=...)``.
        config_cls: its config dataclass.
        preset: config values that define this entry (e.g. ``use_tn=False``).
        summary: one line for listings.
        not_centralized: why this entry does not run in the centralized setting (one agent
            owning every joint; ``run --setting centralized``), or ``""`` where it does: every
            single-agent offline RL method does.
        ablation_of: the algorithm this entry ablates (``mabcq`` for ``mabcq-no-tn``), whose
            studied budget it shares where the budget study did not run it
            (:mod:`mabcq_bench.report.study`); ``""`` for an algorithm of its own.
    """

    name: str
    learner: Callable[..., Learner]
    config_cls: type
    preset: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    not_centralized: str = ""
    ablation_of: str = ""

    def check_setting(self, setting: str) -> None:
        """Raise, in one line, where this algorithm does not run in ``setting``.

        Raises:
            UserError: e.g. mabcq in the centralized setting.
        """
        if setting == "centralized" and self.not_centralized:
            allowed = ", ".join(a.name for a in ALGOS.values() if not a.not_centralized)
            raise UserError(f"{self.name} does not run centralized: {self.not_centralized} (centralized learners: {allowed})")

    def config(self, task: Task | None = None, **overrides: Any) -> Any:
        """The resolved config: class defaults, then the preset, then the task's ε (where the
        config has that field), then ``overrides``, each checked against its field's type and
        range (:func:`check_value`)."""
        fields = {f.name: f for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise UserError(f"{self.name} has no option {', '.join(unknown)}; its options: {', '.join(sorted(fields))}")
        for name, value in overrides.items():
            check_value(self.name, name, value, fields[name].type)
        values = dict(self.preset)
        if task is not None and "epsilon" in fields:
            values["epsilon"] = task.epsilon
        values.update(overrides)
        try:
            return self.config_cls(**values)
        except ValueError as exc:
            raise UserError(f"{self.name}: {exc}") from None

    @property
    def stacks(self) -> bool:
        """Whether a run may stack this algorithm's agents into one batched update (its learner's
        ``stacks``: the mabcq family). A run asked to stack any other algorithm updates its
        agents one after the other, as it always does."""
        return bool(getattr(self.learner, "stacks", False))

    def stacks_on(self, task: Task) -> bool:
        """Whether this algorithm's agents on ``task`` can be stacked: it :attr:`stacks`, and the
        task has several agents whose actions have one size (a stack's nets share one shape)."""
        return self.stacks and task.n_agents > 1 and len(set(task.action_dims)) == 1

    def inert(self, overrides: Mapping[str, Any]) -> list[str]:
        """The names among ``overrides`` that do not change what this algorithm computes (ε
        for an algorithm without λ_vd), per its config's ``inert_fields()``."""
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        cfg = self.config(None, **{k: v for k, v in overrides.items() if k in names})
        dead = set(cfg.inert_fields()) if hasattr(cfg, "inert_fields") else set()
        return sorted(k for k in overrides if k in dead)


#: Ranges of hyperparameters by name, wherever they appear: (low, high, low included, high included).
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "gamma": (0.0, 1.0, False, True),
    "tau": (0.0, 1.0, False, True),
    "epsilon": (0.0, 1.0, True, True),  # λ_vd is clipped to [1 − ε, 1 + ε]: ε > 1 allows negative weights
    "soft_clip": (0.0, 1.0, True, True),
    "phi": (0.0, float("inf"), True, False),
    "kl_weight": (0.0, float("inf"), True, False),
    "vd_e_floor": (0.0, float("inf"), False, False),
    "batch_size": (1, float("inf"), True, False),
    "n_actions": (1, float("inf"), True, False),
    "latent_dim": (1, float("inf"), True, False),
    "vae_pretrain_updates": (0, float("inf"), True, False),
    "alpha": (0.0, float("inf"), True, False),  # TD3+BC: 0 is pure behaviour cloning
    "policy_noise": (0.0, float("inf"), True, False),
    "noise_clip": (0.0, float("inf"), True, False),
    "policy_delay": (1, float("inf"), True, False),
    "norm_eps": (0.0, float("inf"), False, False),
    "expectile": (0.0, 1.0, False, False),  # IQL: 0.5 is the mean, → 1 the maximum
    "beta": (0.0, float("inf"), False, False),
    "max_weight": (0.0, float("inf"), False, False),
    "cql_alpha": (0.0, float("inf"), True, False),  # 0: no conservative term (SAC, or TD3 for omar)
    "cql_temperature": (0.0, float("inf"), False, False),
    "cql_noise": (0.0, float("inf"), False, False),
    "bc_warmup_updates": (0, float("inf"), True, False),
    "omar_coef": (0.0, 1.0, True, True),  # τ_omar mixes the policy gradient (0) and the regression onto â (1)
    "search_iters": (1, float("inf"), True, False),
    "search_samples": (1, float("inf"), True, False),
    "search_elites": (1, float("inf"), True, False),
    "search_std": (0.0, float("inf"), True, False),
    "action_l2": (0.0, float("inf"), True, False),
    "grad_clip": (0.0, float("inf"), True, False),  # 0: no clipping
}


def check_value(algo: str, name: str, value: Any, annotation: Any) -> None:
    """One line naming the option when ``value`` does not fit its field's type or range.

    Raises:
        UserError: e.g. ``mabcq: epsilon must be a number, got 'abc'``.
    """
    ann = str(annotation)
    bad = lambda what: UserError(f"{algo}: {name} must be {what}, got {value!r}")  # noqa: E731
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann.startswith("Literal["):
        choices = [c.strip().strip("'\"") for c in ann[len("Literal[") : -1].split(",")]
        if value not in choices:
            raise bad("one of " + ", ".join(choices))
        return
    if ann.endswith("| None") and value is None:
        return
    if ann.startswith("tuple["):
        if not isinstance(value, (tuple, list)) or not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise bad("a list of numbers, e.g. [64, 64]")
        if "int" in ann and not all(isinstance(v, int) and v > 0 for v in value):
            raise bad("a list of positive integers")
        return
    if ann == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return
    if ann == "int" and not (number and float(value).is_integer()):
        raise bad("an integer")
    if ann == "float" and not number:
        raise bad("a number")
    if name.startswith("lr_") and not value > 0:
        raise bad("positive")
    if name in RANGES:
        low, high, low_in, high_in = RANGES[name]
        if not ((value >= low if low_in else value > low) and (value <= high if high_in else value < high)):
            raise bad(f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}")


#: Why the mabcq family does not run centralized.
_MABCQ_WEIGHTS = (
    "its weights λ_vd and λ_tn correct for the other agents' actions being hidden from each agent's data; "
    "one agent owning every joint sees the whole joint action, so they have no meaning (its centralized counterpart is bcq)"
)

ALGOS: dict[str, AlgoSpec] = {
    "mabcq": AlgoSpec("mabcq", MABCQ, MABCQConfig, {}, "BCQ with value deviation and transition normalization", _MABCQ_WEIGHTS),
    "mabcq-no-tn": AlgoSpec("mabcq-no-tn", MABCQ, MABCQConfig, {"use_tn": False}, "MABCQ without transition normalization (λ_tn = 1)", _MABCQ_WEIGHTS, "mabcq"),
    "mabcq-no-vd": AlgoSpec("mabcq-no-vd", MABCQ, MABCQConfig, {"use_vd": False}, "MABCQ without value deviation (λ_vd = 1)", _MABCQ_WEIGHTS, "mabcq"),
    "bcq": AlgoSpec("bcq", MABCQ, MABCQConfig, {"use_vd": False, "use_tn": False}, "independent BCQ (both weights 1)"),
    "ddpg": AlgoSpec("ddpg", DDPG, DDPGConfig, {}, "independent DDPG, no action constraint"),
    "td3bc": AlgoSpec("td3bc", TD3BC, TD3BCConfig, {}, "independent TD3+BC: TD3 plus a behaviour-cloning term, states normalized"),
    "iql": AlgoSpec("iql", IQL, IQLConfig, {}, "independent IQL: expectile V, in-sample Q targets, advantage-weighted policy"),
    "cql": AlgoSpec("cql", CQL, CQLConfig, {}, "independent CQL(H) on SAC: the conservative gap on Q, α_cql = 5"),
    "omar": AlgoSpec(
        "omar", OMAR, OMARConfig, {}, "independent OMAR: CQL critic, actor rectified toward a zeroth-order search on Q",
        "OMAR is a multi-agent method (offline multi-agent actor rectification), not a single-agent one; its single-agent core is cql",
    ),
    "bc": AlgoSpec("bc", Behavior, BehaviorConfig, {}, "deterministic behaviour cloning: G¹ decodes the prior's mode z = 0"),
    "behavior": AlgoSpec("behavior", Behavior, BehaviorConfig, {"sample_latent": True}, "the behaviour policy as BCQ samples it: G¹ decodes z ~ clip(N(0, I), ±0.5)"),
    "zero-action": AlgoSpec(
        "zero-action", ZeroAction, ReferenceConfig, {}, "reference row: sends zero actions, trains nothing",
        "a reference row acts the same in both settings (the decentralized row is the reference)",
    ),
    "random": AlgoSpec(
        "random", RandomAction, ReferenceConfig, {}, "reference row: uniform random actions, trains nothing",
        "a reference row acts the same in both settings (the decentralized row is the reference)",
    ),
}


def get_algo(name: str) -> AlgoSpec:
    """Look an algorithm up by name, with a one-line error listing the valid names."""
    try:
        return ALGOS[name]
    except KeyError:
        raise UserError(f"unknown algorithm {name!r}; valid algorithms: {', '.join(ALGOS)}") from None


def resolve_algos(spec: str, setting: str = "decentralized") -> list[AlgoSpec]:
    """Parse ``all`` or a comma-separated list of algorithm names (a repeated name counts once);
    in the centralized setting ``all`` is every algorithm that runs there.

    Raises:
        UserError: an unknown name, no name at all (``""``), or a name that does not run in
            ``setting`` (:meth:`AlgoSpec.check_setting`).
    """
    if spec == "all":
        return [a for a in ALGOS.values() if setting != "centralized" or not a.not_centralized]
    names = dict.fromkeys(name.strip() for name in spec.split(",") if name.strip())  # in order, once each
    if not names:
        raise UserError(f"no algorithm given ({spec!r}); give a name, a comma-separated list or 'all' (valid algorithms: {', '.join(ALGOS)})")
    algos = [get_algo(name) for name in names]
    for algo in algos:
        algo.check_setting(setting)
    return algos


def make_learner(
    name: str,
    state_dim: int,
    action_dim: int,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    task: Task | None = None,
    **overrides: Any,
) -> Learner:
    """Build one agent's learner of algorithm ``name`` (config as in :meth:`AlgoSpec.config`)."""
    spec = get_algo(name)
    return spec.learner(state_dim, action_dim, spec.config(task, **overrides), seed=seed, device=device)


__all__ = [
    "ALGOS",
    "AlgoSpec",
    "Batch",
    "Behavior",
    "BehaviorConfig",
    "CQL",
    "CQLConfig",
    "DDPG",
    "DDPGConfig",
    "IQL",
    "IQLConfig",
    "Learner",
    "MABCQ",
    "MABCQConfig",
    "TD3BC",
    "TD3BCConfig",
    "OMAR",
    "OMARConfig",
    "TorchLearner",
    "get_algo",
    "make_learner",
    "resolve_algos",
]
