"""Dataset recipes: the tiers (``smoke``, ``lite``, ``paper``) as TOML files under ``datasets/``.

A recipe file holds the defaults of a tier plus optional per-task tables (``[tasks.ant.expert]``)
that override them. :func:`load_recipe` reads and checks a file; :meth:`RecipeFile.for_task`
gives the resolved :class:`Recipe` of one task, whose :attr:`Recipe.fingerprint` identifies the
data it makes: a dataset or an expert made by another fingerprint is never reused.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mabcq_bench.errors import UserError
from mabcq_bench.util import read_tier_file

#: Bump when the generation code changes the datasets a recipe produces (invalidates them).
#: 2: SAC actors evaluated with torch's functional ops during collection.
#: 3: actors evaluated with exact, CPU-independent arithmetic; the early part re-enacted.
DATA_FORMAT_VERSION = 3
#: Bump when the expert training changes (invalidates cached experts and, with them, datasets).
#: 2: checkpoints evaluated as they are saved; expert and intermediate chosen by their returns.
EXPERT_FORMAT_VERSION = 2

#: The four parts of every agent's dataset (paper §4.1), in the order they are written.
PARTS = ("early", "self_intermediate", "self_expert", "all_expert")

#: Where the shipped tier files live (the repository's ``datasets/``); override with
#: ``MABCQ_BENCH_RECIPES``.
RECIPES_DIR = Path(os.environ.get("MABCQ_BENCH_RECIPES", Path(__file__).resolve().parents[2] / "datasets"))


@dataclass(frozen=True)
class ExpertRecipe:
    """How the joint SAC expert is trained (Stable-Baselines3 SAC, MlpPolicy) and chosen.

    Training stops at the first checkpoint past ``early_steps`` whose deterministic policy
    returns ``target_return`` on the evaluation seeds, or at ``total_steps``; see
    :mod:`mabcq_bench.data.experts`.
    """

    name: str  # the published expert's folder: datasets/experts/<name>/<task>/
    total_steps: int  # at most this many environment steps of SAC training
    checkpoint_every: int  # a checkpoint is saved and evaluated every this many steps
    early_steps: int  # the early part re-enacts SAC's experience over its first early_steps steps
    early_snapshot_every: int  # actors kept for that (multiples of checkpoint_every)
    target_return: float | None = None  # stop at the first checkpoint reaching it (None: train total_steps, keep the best)
    intermediate_fraction: float = 1 / 3  # the intermediate is the checkpoint nearest this fraction of the expert's return
    seed: int = 0  # SAC's seed (network init, exploration, replay sampling)
    learning_starts: int = 10_000  # SB3: uniform random steps before the first update (zoo: 10k)
    buffer_size: int = 0  # SB3 replay buffer (0: total_steps)
    net_arch: tuple[int, ...] = (256, 256)  # SB3 actor and critic hidden sizes
    batch_size: int = 256  # SB3 SAC minibatch
    learning_rate: float = 3e-4  # SB3 SAC learning rate (actor, critic, entropy)
    torch_threads: int = 1  # fixed so a recipe gives the same numbers on any machine; >1 collapses when another job shares the cores


@dataclass(frozen=True)
class Recipe:
    """Everything that determines one task's expert and its agents' datasets."""

    tier: str  # name of the tier, part of the dataset ids (mabcq/<task>/<tier>-agent<i>-v<version>)
    task: str  # task name in the registry
    seed: int  # master seed: expert training, rollouts and noise derive from it
    transitions_per_agent: int  # size of every agent's dataset
    mixture: dict[str, float]  # fraction of each part (PARTS), summing to 1
    policy_noise: float  # std of the Gaussian noise added to the policies of the last three parts
    num_envs: int  # environments stepped as one batch during collection
    eval_episodes: int  # episodes (one per seed) each checkpoint is evaluated on to choose the expert
    eval_seed: int  # first checkpoint-selection seed: eval_seed, ..., eval_seed + eval_episodes - 1
    expert: ExpertRecipe
    description: str = ""  # one paragraph about the tier, copied into the dataset card
    dataset_version: int = 0  # the -v<N> of the dataset ids; bumped whenever the data change
    reference_episodes: int = 100  # episodes (one per seed) of the reference returns (datasets' metadata and card)
    reference_seed: int = 1_000_000  # first reference seed; never one that chose a checkpoint (checked)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def fingerprint(self) -> str:
        """Hash of everything that changes the datasets (not the description)."""
        d = self.as_dict()
        d.pop("description")
        return _digest({"data_format": DATA_FORMAT_VERSION, **d})

    def fingerprint_at(self, version: int) -> str:
        """The fingerprint this recipe's datasets of ``version`` would have without the reference
        fields (``reference_episodes``, ``reference_seed``): what datasets made before those
        fields existed (v1) recorded. A recorded fingerprint equal to ``fingerprint_at(v)`` means
        those datasets were made by every field that makes transitions here, so they hold the
        transitions this recipe makes (the version and references change the metadata only)."""
        d = self.as_dict()
        for key in ("description", "reference_episodes", "reference_seed"):
            d.pop(key)
        d["dataset_version"] = version
        return _digest({"data_format": DATA_FORMAT_VERSION, **d})

    def expert_dict(self) -> dict[str, Any]:
        """The expert's recipe: its own fields and the evaluation seeds it is measured on."""
        return {**dataclasses.asdict(self.expert), "task": self.task, "eval_episodes": self.eval_episodes, "eval_seed": self.eval_seed}

    @property
    def expert_fingerprint(self) -> str:
        """Hash of everything that changes the expert: shared by tiers of any dataset size."""
        return _digest({"expert_format": EXPERT_FORMAT_VERSION, **self.expert_dict()})

    @property
    def selection_seeds(self) -> range:
        """The seeds every checkpoint is evaluated on, to choose the expert and the intermediate."""
        return range(self.eval_seed, self.eval_seed + self.eval_episodes)

    @property
    def reference_seeds(self) -> range:
        """The seeds of the reference returns: fresh ones, so that 100 means what the expert does
        and not how well it did on the episodes that chose it.

        Raises:
            UserError: they overlap the checkpoint-selection seeds.
        """
        fresh = range(self.reference_seed, self.reference_seed + self.reference_episodes)
        check_disjoint(fresh, self.selection_seeds, f"recipe {self.tier} (task {self.task})")
        return fresh

    def part_sizes(self) -> dict[str, int]:
        """Transitions of each part; rounding by largest remainder so they sum exactly."""
        exact = {p: self.mixture[p] * self.transitions_per_agent for p in PARTS}
        sizes = {p: int(v) for p, v in exact.items()}
        short = self.transitions_per_agent - sum(sizes.values())
        for p in sorted(PARTS, key=lambda p: (sizes[p] - exact[p], PARTS.index(p)))[:short]:
            sizes[p] += 1
        return sizes

    def dataset_id(self, agent: int) -> str:
        return dataset_id(self.task, self.tier, agent, self.dataset_version)

    @property
    def joint_dataset_id(self) -> str:
        return joint_dataset_id(self.task, self.tier, self.dataset_version)

    def joint_transitions(self, n_agents: int) -> int:
        """Size of the joint-action dataset: every agent's transitions, the early part once (it is
        one SAC's experience, the same in every agent's dataset)."""
        early = self.part_sizes()["early"]
        return early + n_agents * (self.transitions_per_agent - early)


def dataset_id(task: str, tier: str, agent: int, version: int) -> str:
    """The Minari id of agent ``agent``'s dataset of ``task`` at ``tier``, version ``version``."""
    return f"mabcq/{task}/{tier}-agent{agent}-v{version}"


def joint_dataset_id(task: str, tier: str, version: int) -> str:
    """The Minari id of the joint-action dataset of ``task`` at ``tier`` (the centralized
    reference's data: every agent's transitions with the joint action)."""
    return f"mabcq/{task}/{tier}-joint-v{version}"


def check_disjoint(reference: range, selection: range, where: str) -> None:
    """Raise if a reference seed is one that chose a checkpoint (both are ``range``s of seeds).

    Raises:
        UserError: they overlap.
    """
    problem = seed_overlap(reference, selection)
    if problem:
        raise UserError(f"{where}: {problem}")


def seed_overlap(reference: range, selection: range) -> str | None:
    """What is wrong when the reference seeds overlap the checkpoint-selection seeds, else ``None``."""
    common = range(max(reference.start, selection.start), min(reference.stop, selection.stop))
    if not len(common):
        return None
    return (
        f"the reference seeds {_span(reference)} overlap the checkpoint-selection seeds {_span(selection)} "
        f"(e.g. {common.start}); give reference_seed a value past {selection.stop - 1}"
    )


def _span(seeds: range) -> str:
    return f"{seeds.start}–{seeds.stop - 1}" if len(seeds) else "(none)"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RecipeFile:
    """A parsed recipe file: tier defaults plus per-task overrides."""

    path: Path
    data: dict[str, Any]

    @property
    def tier(self) -> str:
        return self.data["tier"]

    def for_task(self, task: str) -> Recipe:
        merged = copy.deepcopy({k: v for k, v in self.data.items() if k != "tasks"})
        _deep_merge(merged, self.data.get("tasks", {}).get(task, {}))
        return _build(merged, task, self.path)


def load_recipe(preset: str) -> RecipeFile:
    """Load a tier by name (``lite``) or a recipe file by path, checking every field.

    Raises:
        UserError: unknown tier, unreadable or malformed file.
    """
    path, data = read_tier_file(preset, RECIPES_DIR, "recipe")
    if not isinstance(data.get("tier"), str) or not data["tier"].replace("_", "").replace("-", "").isalnum():
        raise UserError(f"malformed recipe {path}: 'tier' must be a name of letters, digits, '-' or '_'")
    recipe = RecipeFile(path, data)
    tasks = data.get("tasks", {})
    if not isinstance(tasks, dict):
        raise UserError(f"malformed recipe {path}: [tasks] must be a table of per-task overrides")
    from mabcq_bench.data.tasks import TASKS

    for name in tasks:
        if name not in TASKS:
            raise UserError(f"malformed recipe {path}: [tasks.{name}] is not a task; valid tasks: {', '.join(TASKS)}")
    for name in TASKS:  # check every task's resolved recipe now, not halfway through a run
        recipe.for_task(name)
    return recipe


def _deep_merge(base: dict, override: dict) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _build(d: dict[str, Any], task: str, path: Path) -> Recipe:
    def bad(msg: str) -> UserError:
        return UserError(f"malformed recipe {path} (task {task}): {msg}")

    def take(table: dict, cls, context: str) -> dict[str, Any]:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(table) - set(fields) - {"tier", "tasks", "expert", "task"}
        if unknown:
            raise bad(f"unknown key(s) {', '.join(sorted(unknown))} in {context}")
        out = {}
        for name, f in fields.items():
            if name in ("task", "expert"):
                continue
            if name not in table:
                if f.default is dataclasses.MISSING:
                    raise bad(f"missing key {name!r} in {context}")
                continue
            out[name] = _check_type(table[name], f.type, f"{context}.{name}", bad)
        return out

    expert_table = d.get("expert")
    if not isinstance(expert_table, dict):
        raise bad("missing table [expert]")
    expert = ExpertRecipe(**take(expert_table, ExpertRecipe, "expert"))
    fields = take(d, Recipe, "recipe")
    recipe = Recipe(task=task, expert=expert, **fields)
    _validate(recipe, bad)
    return recipe


def _check_type(value: Any, annotation: str, where: str, bad) -> Any:
    ann = str(annotation)
    if ann == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"{where} must be an integer, got {value!r}")
        return value
    if ann == "float | None":
        return None if value is None else _check_type(value, "float", where, bad)
    if ann == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"{where} must be a number, got {value!r}")
        return float(value)
    if ann == "str":
        if not isinstance(value, str):
            raise bad(f"{where} must be a string, got {value!r}")
        return value
    if ann.startswith("tuple"):
        if not isinstance(value, list) or not all(isinstance(v, int) and v > 0 for v in value):
            raise bad(f"{where} must be a list of positive integers, got {value!r}")
        return tuple(value)
    if ann.startswith("dict"):
        if not isinstance(value, dict):
            raise bad(f"{where} must be a table, got {value!r}")
        return dict(value)
    raise TypeError(ann)


def _validate(r: Recipe, bad) -> None:
    e = r.expert
    positive = {
        "transitions_per_agent": r.transitions_per_agent,
        "num_envs": r.num_envs,
        "eval_episodes": r.eval_episodes,
        "reference_episodes": r.reference_episodes,
        "expert.total_steps": e.total_steps,
        "expert.checkpoint_every": e.checkpoint_every,
        "expert.early_snapshot_every": e.early_snapshot_every,
        "expert.batch_size": e.batch_size,
        "expert.torch_threads": e.torch_threads,
    }
    for name, value in positive.items():
        if value <= 0:
            raise bad(f"{name} must be positive, got {value}")
    if set(r.mixture) != set(PARTS):
        raise bad(f"mixture must give exactly the parts {', '.join(PARTS)}, got {', '.join(r.mixture) or 'none'}")
    if any(not isinstance(v, float) and not isinstance(v, int) or v < 0 for v in r.mixture.values()):
        raise bad("mixture fractions must be non-negative numbers")
    if abs(sum(r.mixture.values()) - 1.0) > 1e-9:
        raise bad(f"mixture fractions must sum to 1, got {sum(r.mixture.values()):g}")
    if r.policy_noise < 0:
        raise bad(f"policy_noise must be >= 0, got {r.policy_noise}")
    if r.reference_seed < 0:
        raise bad(f"reference_seed must be >= 0, got {r.reference_seed}")
    overlap = seed_overlap(range(r.reference_seed, r.reference_seed + r.reference_episodes), r.selection_seeds)
    if overlap:
        raise bad(overlap)
    if r.dataset_version < 0:
        raise bad(f"dataset_version must be >= 0, got {r.dataset_version}")
    if not e.name.replace("_", "").replace("-", "").isalnum():
        raise bad(f"expert.name must be a name of letters, digits, '-' or '_', got {e.name!r}")
    if not 0 <= e.learning_starts < e.early_steps <= e.total_steps:
        raise bad(f"expert steps must satisfy 0 <= learning_starts < early_steps <= total_steps, got {e.learning_starts}, {e.early_steps}, {e.total_steps}")
    if e.total_steps % e.checkpoint_every or e.early_snapshot_every % e.checkpoint_every:
        raise bad(f"expert.total_steps and expert.early_snapshot_every must be multiples of expert.checkpoint_every ({e.checkpoint_every})")
    if e.early_snapshot_every >= e.early_steps:
        raise bad(f"expert.early_snapshot_every ({e.early_snapshot_every}) must be below expert.early_steps ({e.early_steps})")
    if not 0 < e.intermediate_fraction < 1:
        raise bad(f"expert.intermediate_fraction must be in (0, 1), got {e.intermediate_fraction}")
    if e.buffer_size < 0:
        raise bad(f"expert.buffer_size must be >= 0, got {e.buffer_size}")
    if e.learning_rate <= 0:
        raise bad(f"expert.learning_rate must be positive, got {e.learning_rate}")
