"""What to run and where its record goes: run specs resolved against a protocol and the datasets.

A :class:`RunSpec` is one (tier, task, algorithm variant, seed); :func:`prepare` resolves every
spec's configuration, checks the agents' datasets and fingerprints the run, before any work
starts. A finished run's record is ``<results>/<board>/<task>/<variant>/seed<k>.json``, where the
board (:func:`board_name`) names the tier, the datasets' version and the scoring protocol's
version (``lite-v1-p2``), so runs on different datasets or scored differently never share a
folder or a table. A centralized run (one learner owning every joint, on the joint-action
dataset: the reference of what decentralization costs) is filed on a board of its own,
``<board>-centralized``, so it is never averaged into the decentralized ranking.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from mabcq_bench.errors import UserError
from mabcq_bench.runs.protocol import Protocol


@dataclass(frozen=True)
class RunSpec:
    """One (tier, task, algorithm variant, seed), in a setting (``decentralized`` or
    ``centralized``: :data:`mabcq_bench.data.tasks.SETTINGS`)."""

    tier: str
    task: str
    algo: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()
    setting: str = "decentralized"

    @property
    def variant(self) -> str:
        """Display name: the algorithm plus its overrides (``mabcq epsilon=0.4``)."""
        return " ".join([self.algo] + [f"{k}={v}" for k, v in self.overrides])

    @property
    def key(self) -> str:
        """The run's name in a sweep's report: ``hopper/mabcq epsilon=0.4/seed3``."""
        return f"{self.task}/{self.variant}/seed{self.seed}"

    def folder(self, results: Path) -> Path:
        slug = self.variant.replace(" ", "_").replace("/", "-")
        return results / self.tier / self.task / slug

    def record_path(self, results: Path) -> Path:
        return self.folder(results) / f"seed{self.seed}.json"

    def checkpoint_path(self, results: Path) -> Path:
        return self.folder(results) / f"seed{self.seed}.ckpt"

    def lock_path(self, results: Path) -> Path:
        """Held by the process training the run (:func:`mabcq_bench.util.exclusive_lock`)."""
        return self.folder(results) / f"seed{self.seed}.lock"


def parse_overrides(items: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """``key=value`` pairs (values parsed as TOML/JSON scalars or lists) into sorted overrides."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes key=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key.strip()] = tuple(value) if isinstance(value, list) else value
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class PreparedRun:
    """A run with everything resolved: the spec, its config, datasets and fingerprint."""

    spec: RunSpec
    config: dict[str, Any]
    protocol: dict[str, int]
    datasets: tuple[tuple[str, str], ...]  # (id, checksum) per agent
    ref_min: float
    ref_max: float
    epsilon: float | None
    fingerprint: str
    device: str = "cpu"  # torch device of the learners (cuda runs ask Ray for a GPU)
    stack_agents: bool | None = None  # one batched update of all agents where the algorithm stacks; None: on a GPU only
    cuda_graph: bool | None = None  # replay updates from CUDA graphs where the algorithm captures; None: on a GPU
    budget: str = "protocol.updates"  # where protocol["updates"] comes from (Protocol.for_run), e.g. protocol.budgets.td3bc.hopper
    plateaued: bool = True  # False: the budget is the longest the study measured, the learner still moving there (Protocol.plateaued)
    stack_seeds: bool | None = None  # train with the other seeds of its (task, algorithm) as one stack where it stacks; None: on a GPU only


def prepare(
    specs: Iterable[RunSpec],
    protocol: Protocol,
    dataset_tier: str,
    device: str = "cpu",
    stack_agents: bool | None = None,
    cuda_graph: bool | None = None,
    stack_seeds: bool | None = None,
) -> list[PreparedRun]:
    """Resolve configs and check datasets for every run, before any work starts.

    ``stack_agents``, ``stack_seeds`` and ``cuda_graph`` are how the runs compute, not what: they
    are not part of a run's fingerprint (see :func:`mabcq_bench.runs.learn.train_seeds`)."""
    from mabcq_bench.algos import get_algo
    from mabcq_bench.data.tasks import get_task

    specs = list(specs)
    for setting in dict.fromkeys(s.setting for s in specs):
        names = [s.task for s in specs if s.setting == setting]
        _check_all_present(sorted(set(names), key=names.index), dataset_tier, protocol, setting)
    # runs on another version of the datasets are filed and tabulated apart (never mixed)
    pv = int(protocol.protocol["version"])
    specs = [dataclasses.replace(s, tier=board_name(s.tier, dataset_version(s.task, dataset_tier), pv, s.setting)) for s in specs]
    datasets_of: dict[tuple[str, str], tuple[tuple[tuple[str, str], ...], float, float]] = {}
    out = []
    for spec in specs:
        task = get_task(spec.task).in_setting(spec.setting)
        algo = get_algo(spec.algo)
        algo.check_setting(spec.setting)
        if (spec.task, spec.setting) not in datasets_of:
            datasets_of[spec.task, spec.setting] = check_datasets(task, dataset_tier)
        values = protocol.config(spec.algo, spec.task, dict(spec.overrides))
        cfg = dataclasses.asdict(algo.config(task, **values))
        cfg = json.loads(json.dumps(cfg))  # tuples as lists: what a record holds
        ids, ref_min, ref_max = datasets_of[spec.task, spec.setting]
        proto, budget = protocol.for_run(spec.task, spec.algo, spec.setting)
        identity = {"task": spec.task, "algo": spec.algo, "config": cfg, "protocol": proto, "datasets": ids}
        if spec.setting != "decentralized":  # decentralized runs keep the fingerprints they always had
            identity["setting"] = spec.setting
        if device != "cpu":  # other devices give other numbers: never mixed with CPU runs
            identity["device"] = device
        fp = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        out.append(PreparedRun(spec, cfg, proto, ids, ref_min, ref_max, cfg.get("epsilon") if cfg.get("use_vd", False) else None, fp, device, stack_agents, cuda_graph, budget, protocol.plateaued(spec.task, spec.algo, spec.setting), stack_seeds))
    return out


def work_units(runs: Sequence[PreparedRun]) -> list[tuple[PreparedRun, ...]]:
    """What an executor hands one worker: each run alone, except runs that stack seeds
    (:func:`mabcq_bench.runs.learn.will_stack_seeds`), which go together with the runs that
    differ from them only in their seed (same board, task, setting, learner, overrides and
    fingerprint, and asked to compute the same way: device, stacking, CUDA graphs), in the order
    the runs came."""
    from mabcq_bench.data.tasks import get_task
    from mabcq_bench.runs.learn import will_stack_seeds

    units: dict[Any, list[PreparedRun]] = {}
    for run in runs:
        s = run.spec
        task = get_task(s.task).in_setting(s.setting)
        together = will_stack_seeds(task, s.algo, run.device, run.stack_seeds, run.stack_agents)
        how = (run.device, run.stack_agents, run.stack_seeds, run.cuda_graph)
        key = (s.tier, s.task, s.setting, s.algo, s.overrides, run.fingerprint, how) if together else ("alone", s.key)
        units.setdefault(key, []).append(run)
    return [tuple(unit) for unit in units.values()]


@dataclass(frozen=True)
class PlannedRun:
    """A run resolved against its protocol without reading its datasets: what ``run --dry-run``
    shows and prices (:mod:`mabcq_bench.runs.cost`)."""

    spec: RunSpec
    protocol: dict[str, int]
    budget: str  # where protocol["updates"] comes from (Protocol.for_run)


def plan_runs(specs: Iterable[RunSpec], protocol: Protocol) -> list[PlannedRun]:
    """Each run's protocol values and budget, its algorithm, setting and hyperparameters checked
    as :func:`prepare` checks them, with no dataset read (they need not exist yet)."""
    from mabcq_bench.algos import get_algo
    from mabcq_bench.data.tasks import get_task

    out = []
    for spec in specs:
        algo = get_algo(spec.algo)
        algo.check_setting(spec.setting)
        algo.config(get_task(spec.task).in_setting(spec.setting), **protocol.config(spec.algo, spec.task, dict(spec.overrides)))
        out.append(PlannedRun(spec, *protocol.for_run(spec.task, spec.algo, spec.setting)))
    return out


def counted(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def describe_plan(runs: Sequence[PreparedRun | PlannedRun]) -> str:
    """What a sweep is, said before it starts: ``65 runs = 13 algorithms × 1 task × 5 seeds;
    hopper 40,000 updates per agent (3 agents)``.

    No time estimate: an update's cost varies about 7× over the algorithms and with the machine,
    and a protocol holds none; ``run --dry-run`` prices the plan from recorded runs
    (:mod:`mabcq_bench.runs.cost`)."""
    from mabcq_bench.data.tasks import get_task

    tasks = list(dict.fromkeys(r.spec.task for r in runs))
    variants = list(dict.fromkeys(r.spec.variant for r in runs))
    seeds = sorted({r.spec.seed for r in runs})
    kind = "algorithm" if all(r.spec.variant == r.spec.algo for r in runs) else "variant"
    grid = f"{counted(len(variants), kind)} × {counted(len(tasks), 'task')} × {counted(len(seeds), 'seed')}"
    shape = f" = {grid}" if len(tasks) * len(variants) * len(seeds) == len(runs) else f" ({grid})"
    budgets = {}
    for r in runs:
        budgets.setdefault(r.spec.task, set()).add(int(r.protocol["updates"]))
    agents = {r.spec.task: get_task(r.spec.task).in_setting(r.spec.setting).n_agents for r in runs}
    per_task = "; ".join(
        f"{task} {' or '.join(f'{u:,}' for u in sorted(budgets[task]))} updates per agent ({counted(agents[task], 'agent')})" for task in tasks
    )
    return f"{counted(len(runs), 'run')}{shape}; {per_task}"


def _dataset_ids(task, tier: str) -> list[str]:
    """The datasets a run of ``task`` trains on: every agent's, or in the centralized setting the
    joint-action dataset (its one agent's)."""
    from mabcq_bench.data.recipes import dataset_id, joint_dataset_id

    version = dataset_version(task.name, tier)
    if task.setting == "centralized":
        return [joint_dataset_id(task.name, tier, version)]
    return [dataset_id(task.name, tier, i, version) for i in range(task.n_agents)]


def _check_all_present(task_names: Sequence[str], tier: str, protocol: Protocol | None = None, setting: str = "decentralized") -> None:
    """One line naming every task whose datasets are missing, with the command that makes them.

    A protocol whose datasets' tier has no recipe in ``datasets/`` (a copied protocol file with a
    new ``tier`` and no ``datasets`` key) is told which key picks shipped datasets, never sent to
    a ``make-data --preset`` that cannot work."""
    from mabcq_bench.data import recipes
    from mabcq_bench.data.datasets import dataset_path
    from mabcq_bench.data.tasks import get_task

    missing = [name for name in task_names if any(not dataset_path(i).exists() for i in _dataset_ids(get_task(name).in_setting(setting), tier))]
    if not missing:
        return
    envs = ",".join(missing)
    if (recipes.RECIPES_DIR / f"{tier}.toml").exists():
        kind = "joint-action datasets (centralized runs train on them)" if setting == "centralized" else "datasets"
        raise UserError(f"the {tier} {kind} of {', '.join(missing)} are missing; make them with `mabcq-bench make-data --env {envs} --preset {tier}`")
    shipped = sorted(p.stem for p in recipes.RECIPES_DIR.glob("*.toml"))
    default = "lite" if "lite" in shipped else (shipped[0] if shipped else "lite")
    others = ", ".join(t for t in shipped if t != default)
    where = f"protocol {protocol.path} trains on" if protocol is not None else "these runs need"
    raise UserError(
        f"{where} the {tier} datasets (missing for {', '.join(missing)}), and no recipe in {recipes.RECIPES_DIR} makes a tier {tier!r}: "
        f'a protocol trains on the datasets its datasets = "<tier>" key names (default: its own tier). Add the line datasets = "{default}" '
        f"{'below its tier line ' if protocol is not None else ''}to train on the {default} datasets{f' (or {others})' if others else ''} "
        f"and make them with `mabcq-bench make-data --env {envs} --preset {default}`, or make {tier} datasets from a recipe of your own "
        f"with `mabcq-bench make-data --env {envs} --preset <recipe.toml>` (tier = \"{tier}\" in it)"
    )


def board_name(tier: str, version: int, protocol_version: int = 1, setting: str = "decentralized") -> str:
    """The name a run's records are filed and tabulated under: the protocol tier, then ``-v<N>``
    for runs on version-N datasets (version 0, the first leaderboard's, adds nothing), then
    ``-p<M>`` for runs scored by protocol version M ≥ 2 (version 1 adds nothing), then
    ``-centralized`` for centralized runs (the decentralized benchmark adds nothing). Runs on
    other datasets, scored another way or in another setting, are different experiments: their
    records live in different folders and tables, never in one cell."""
    name = tier if version == 0 else f"{tier}-v{version}"
    name = name if protocol_version == 1 else f"{name}-p{protocol_version}"
    return name if setting == "decentralized" else f"{name}-{setting}"


def dataset_version(task: str, tier: str) -> int:
    """The dataset version runs of ``tier`` use: the one its recipe (``datasets/<tier>.toml``)
    makes; for a tier without a recipe file there (a user's recipe passed by path), the newest
    version in the local Minari store."""
    import re

    from mabcq_bench.data.datasets import datasets_root
    from mabcq_bench.data.recipes import load_recipe

    try:
        return load_recipe(tier).for_task(task).dataset_version
    except UserError:
        found = [int(m.group(1)) for p in (datasets_root() / "mabcq" / task).glob(f"{tier}-agent0-v*") if (m := re.fullmatch(rf"{re.escape(tier)}-agent0-v(\d+)", p.name))]
        return max(found, default=0)


def check_datasets(task, tier: str) -> tuple[tuple[tuple[str, str], ...], float, float]:
    """Every agent's dataset of ``task`` at ``tier``: present, readable, and shaped for the task
    (in the centralized setting, the joint-action dataset: the one agent's).

    Returns ((id, checksum) per agent, ref_min_score, ref_max_score).
    """
    from mabcq_bench.data.datasets import dataset_path, read_metadata, remake_instruction

    ids = _dataset_ids(task, tier)
    command = f"`mabcq-bench make-data --env {task.name} --preset {tier}`"
    missing = [i for i in ids if not dataset_path(i).exists()]
    if missing:
        raise UserError(f"datasets {', '.join(missing)} are missing; make them with {command}")
    out, refs = [], set()
    for agent, dataset_id in enumerate(ids):
        md = read_metadata(dataset_id, command)
        remake = remake_instruction(dataset_id, command)  # make-data refuses to overwrite it: the same words as its own
        shape_ok = (
            md.get("task") == task.name
            and (md.get("agents") == len(task.agent_partition) if task.setting == "centralized" else md.get("agent") == agent)
            and md.get("n_agents") == len(task.agent_partition)
            and tuple(md["observation_space"].shape) == (task.state_dim,)
            and tuple(md["action_space"].shape) == (task.action_dims[agent],)
        )
        if not shape_ok:
            raise UserError(f"dataset {dataset_id} does not match task {task.name} (agent {agent}: state {task.state_dim}, action {task.action_dims[agent]}); {remake}")
        if md.get("computed_checksum") != md.get("checksum"):
            raise UserError(f"dataset {dataset_id} is corrupt (its data does not match its checksum); {remake}")
        if md.get("ref_min_score") is None or md.get("ref_max_score") is None:
            raise UserError(f"dataset {dataset_id} has no reference scores; {remake}")
        refs.add((float(md["ref_min_score"]), float(md["ref_max_score"]), md.get("recipe_fingerprint")))
        out.append((dataset_id, md["checksum"]))
    if len(refs) != 1:
        raise UserError(f"the {task.name} {tier} datasets come from different recipes; remake them with make-data")
    (ref_min, ref_max, _), = refs
    return tuple(out), ref_min, ref_max


def existing_record(run: PreparedRun, results: Path) -> dict | None:
    """The finished record of ``run``, ``None`` if absent; a record of another configuration
    under the same name, or an unreadable one, is an error."""
    path = run.spec.record_path(results)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"result record {path} is corrupt; move it away to rerun that run") from None
    if not isinstance(record, dict) or record.get("status") != "finished":
        raise UserError(f"result record {path} is corrupt; move it away to rerun that run")
    if record.get("config_fingerprint") != run.fingerprint:
        raise UserError(
            f"{results} holds {run.spec.task}/{run.spec.variant} seed {run.spec.seed} of another configuration "
            f"(fingerprint {record.get('config_fingerprint')}, now {run.fingerprint}); use another --results folder"
        )
    return record
