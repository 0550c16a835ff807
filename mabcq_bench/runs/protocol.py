"""Protocol files: one run protocol and every algorithm's hyperparameters per tier, as data.

``baselines/<tier>.toml`` holds the ``[protocol]`` (updates, evaluation schedule, checkpoints,
threads; per task under ``[protocol.tasks.<task>]``; a learner's own budget under
``[protocol.budgets.<algo>]``, and in the centralized setting under
``[protocol.centralized_budgets.<algo>]``) and an ``[algos.<name>]`` table per registered algorithm. A tier may train on another
tier's datasets (``datasets = "lite"``: lite-long). ``mabcq-bench baselines --write`` regenerates
the shipped files from :data:`DEFAULT_PROTOCOLS` and the algorithm registry.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from mabcq_bench.errors import UserError
from mabcq_bench.util import NOT_PLATEAUED, read_tier_file

#: Where the shipped protocol files live (the repository's ``baselines/``).
BASELINES_DIR = Path(os.environ.get("MABCQ_BENCH_BASELINES", Path(__file__).resolve().parents[2] / "baselines"))
PROTOCOL_KEYS = {
    "version": int,  # the scoring protocol's version: records of different versions are never tabulated together
    "updates": int,  # updates per agent
    "eval_every": int,  # learning-curve evaluation every this many updates
    "eval_episodes": int,  # joint episodes per learning-curve evaluation (one per evaluation seed)
    "final_eval_episodes": int,  # joint episodes of the final evaluation, whose mean is the run's score
    "score_window": int,  # the mean of this many last learning-curve evaluations is reported beside the score
    "diag_states": int,  # states of the coordination diagnostic
    "checkpoint_every": int,  # resumable checkpoint every this many updates
    "threads": int,  # torch threads per run
}

#: The newest protocol version the code implements. Version 1 (records without ``version``): the
#: score was the last learning-curve evaluation (5 episodes at lite), and evaluations shared the
#: acting noise with the coordination diagnostic. Version 2: a separate final evaluation of
#: ``final_eval_episodes`` episodes after the last update, the ``score_window`` mean, and
#: per-evaluation random streams. Version 3: the final evaluation's episodes in equal shares at
#: the last ``final_checkpoints`` evaluation points, so that a lucky checkpoint cannot make a
#: score (a learner whose policy swings between checkpoints more than between episodes).
PROTOCOL_VERSION = 3

#: The versions a protocol file may have (records of different versions are never tabulated together).
PROTOCOL_VERSIONS = (2, 3)

#: Keys only a version-3 file has (and must have).
V3_KEYS = {
    "final_checkpoints": int,  # the final episodes are spread over this many last evaluation points (each takes an equal share)
}

#: Keys a ``[protocol.tasks.<task>]`` table may set for one task.
PER_TASK_KEYS = ("updates", "eval_every", "checkpoint_every")

#: In a ``[protocol.budgets.<algo>]`` table, the key that sets the learner's updates on every
#: task; a task's name sets them on that task (it wins over ``updates``).
ALL_TASKS = "updates"

#: The ``[protocol.<section>.<algo>]`` tables of learners' own budgets, by setting.
BUDGETS = {"decentralized": "budgets", "centralized": "centralized_budgets"}


@dataclass(frozen=True)
class Protocol:
    """A tier's run protocol and per-algorithm hyperparameters (``baselines/<tier>.toml``)."""

    tier: str
    path: Path
    protocol: dict[str, Any]  # [protocol] values; per-task ones under "tasks" (see for_task)
    algos: dict[str, dict[str, Any]]  # algo -> {field: value, "tasks": {task: {field: value}}}
    datasets: str = ""  # the tier of the datasets it trains on (``datasets = "lite"``); default: its own

    def __post_init__(self) -> None:
        if not self.datasets:
            object.__setattr__(self, "datasets", self.tier)

    def for_task(self, task: str) -> dict[str, int]:
        """The protocol of ``task``'s runs: ``[protocol]`` with its ``[protocol.tasks.<task>]`` values."""
        values = {k: v for k, v in self.protocol.items() if k not in ("tasks", *BUDGETS.values())}
        values.update(self.protocol.get("tasks", {}).get(task, {}))
        return values

    def for_run(self, task: str, algo: str, setting: str = "decentralized") -> tuple[dict[str, int], str]:
        """The protocol of ``algo``'s runs on ``task`` in ``setting`` and where its ``updates`` come from.

        The learner's own budget replaces the task's: in the centralized setting its
        ``[protocol.centralized_budgets.<algo>]`` (one agent with the joint action may plateau
        elsewhere), then, and in the decentralized setting first, its ``[protocol.budgets.<algo>]``
        (in each table the task's key, else ``updates``); without one the runs have
        :meth:`for_task`'s values.

        Returns:
            The protocol values, and the budget's source, e.g. ``protocol.budgets.td3bc.hopper``.
        """
        values = self.for_task(task)
        own = self._own_budget(task, algo, setting)
        if own is not None:
            section, key = own
            values["updates"] = self.protocol[section][algo][key]
            return values, f"protocol.{section}.{algo}.{key}"
        return values, f"protocol.tasks.{task}.updates" if "updates" in self.protocol.get("tasks", {}).get(task, {}) else "protocol.updates"

    def plateaued(self, task: str, algo: str, setting: str = "decentralized") -> bool:
        """Whether ``algo``'s budget on ``task`` is one where the study saw it plateau: False where
        its own budget's table lists the budget's key under ``not_plateaued`` (the longest budget
        measured, still moving there); True otherwise, a tier's own choice included."""
        own = self._own_budget(task, algo, setting)
        return own is None or own[1] not in self.protocol[own[0]][algo].get(NOT_PLATEAUED, [])

    def _own_budget(self, task: str, algo: str, setting: str) -> tuple[str, str] | None:
        """The (section, key) of the learner's own budget that :meth:`for_run` uses, if any."""
        sections = (BUDGETS[setting], BUDGETS["decentralized"]) if setting != "decentralized" else (BUDGETS[setting],)
        for section in sections:
            own = self.protocol.get(section, {}).get(algo, {})
            for key in (task, ALL_TASKS):
                if key in own:
                    return section, key
        return None

    def config(self, algo: str, task: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Hyperparameters of ``algo`` on ``task``: the file's values, its per-task table, then ``overrides``."""
        table = self.algos.get(algo)
        if table is None:
            raise UserError(f"{self.path} has no [algos.{algo}] table; add one (see `mabcq-bench baselines --write`)")
        values = {k: v for k, v in table.items() if k != "tasks"}
        values.update(table.get("tasks", {}).get(task, {}))
        values.update(overrides or {})
        return values


class TierProtocol(NamedTuple):
    protocol: dict[str, Any]  # [protocol] values, per-task ones under "tasks", learners' budgets under "budgets"
    note: str  # the file's first line
    datasets: str | None = None  # the datasets' tier, when not the tier itself
    budget_notes: dict[str, str] | None = None  # algo ("<algo> centralized" for its centralized budget) -> where its budget comes from (a comment in the file)


def _protocol(
    updates: int, eval_every: int, eval_episodes: int, final_eval_episodes: int, score_window: int, checkpoint_every: int, diag_states: int = 1000,
    budgets: dict[str, dict[str, int]] | None = None, final_checkpoints: int | None = None,
    centralized_budgets: dict[str, dict[str, int]] | None = None, **tasks: dict[str, int],
) -> dict[str, Any]:
    """A tier's [protocol]: version 3 with ``final_checkpoints``, else version 2."""
    values: dict[str, Any] = {
        "version": 3 if final_checkpoints else 2, "updates": updates, "eval_every": eval_every, "eval_episodes": eval_episodes,
        "final_eval_episodes": final_eval_episodes, "score_window": score_window, "diag_states": diag_states,
        "checkpoint_every": checkpoint_every, "threads": 1,
    }  # fmt: skip
    if final_checkpoints:
        values["final_checkpoints"] = final_checkpoints
    if tasks:
        values["tasks"] = tasks
    if budgets:
        values["budgets"] = budgets
    if centralized_budgets:
        values["centralized_budgets"] = centralized_budgets
    return values


#: The shipped tiers' protocols (what `mabcq-bench baselines --write` puts in baselines/).
DEFAULT_PROTOCOLS: dict[str, TierProtocol] = {
    "smoke": TierProtocol(
        _protocol(200, 100, 2, 10, 2, 100, diag_states=256),
        "smoke: CI only (the regression gate). A few hundred updates on the smoke datasets; the scores test the pipeline, not the algorithms.",
    ),
    "lite": TierProtocol(
        _protocol(
            60000, 2000, 10, 50, 5, 2000, final_checkpoints=5, hopper={"updates": 40000}, halfcheetah={"updates": 120000},
            budgets={
                "mabcq": {"hopper": 44000, "walker": 48000}, "mabcq-no-tn": {"hopper": 42000, "walker": 60000, "not_plateaued": ["walker"]},
                "mabcq-no-vd": {"hopper": 56000, "walker": 120000, "not_plateaued": ["walker"]},
                "bcq": {"hopper": 60000, "walker": 46000, "not_plateaued": ["hopper"]},
                "ddpg": {"hopper": 200000, "walker": 200000, "not_plateaued": ["hopper", "walker"]}, "td3bc": {"hopper": 60000, "walker": 64000},
                "iql": {"hopper": 44000, "walker": 48000}, "cql": {"hopper": 66000, "walker": 74000},
                "omar": {"hopper": 120000, "walker": 120000, "not_plateaued": ["hopper", "walker"]},
                "bc": {"hopper": 200000, "walker": 132000, "not_plateaued": ["hopper"]},
                "behavior": {"hopper": 200000, "walker": 20000, "not_plateaued": ["hopper"]},
            },
        ),  # fmt: skip
        "lite: a 2-core laptop. Table 6 hyperparameters; each learner's updates from the budget study (leaderboard/plateau60-v1-p2.md, plateau120-v1-p2.md, plateau200-v1-p2.md; docs/protocol.md): on hopper and walker every learner has its own budget (the [protocol.budgets.<algo>] tables); halfcheetah and ant keep the task's updates from BCQ's and MABCQ's curves (halfcheetah 120k, ant 60k) until the study's runs there end; the score is 50 final episodes, 10 at each of the last 5 evaluation points (protocol 3).",
        budget_notes={
            "mabcq": "budget study: walker from plateau120-v1-p2 (1 run); hopper from plateau200-v1-p2 (1 run)",
            "mabcq-no-tn": "budget study: walker from plateau60-v1-p2 (1 run; not within 60,000, the longest measured); hopper from plateau60-v1-p2 (1 run)",
            "mabcq-no-vd": "budget study: walker from plateau120-v1-p2 (1 run; not within 120,000, the longest measured); hopper from plateau200-v1-p2 (2 runs)",
            "bcq": "budget study: walker from plateau120-v1-p2 (2 runs); hopper from plateau60-v1-p2 (its seed 1 alone, which the longest board lacks; not within 60,000, the end of its run)",
            "ddpg": "budget study: walker from plateau200-v1-p2 (1 run; not within 200,000, the longest measured); hopper from plateau200-v1-p2 (1 run; not within 200,000, the longest measured)",
            "td3bc": "budget study: walker from plateau200-v1-p2 (1 run); hopper from plateau200-v1-p2 (2 runs)",
            "iql": "budget study: walker from plateau200-v1-p2 (2 runs); hopper from plateau200-v1-p2 (2 runs)",
            "cql": "budget study: walker from plateau120-v1-p2 (1 run); hopper from plateau120-v1-p2 (1 run)",
            "omar": "budget study: walker from plateau120-v1-p2 (1 run; not within 120,000, the longest measured); hopper from plateau120-v1-p2 (1 run; not within 120,000, the longest measured)",
            "bc": "budget study: walker from plateau200-v1-p2 (2 runs); hopper from plateau200-v1-p2 (2 runs; not within 200,000, the longest measured)",
            "behavior": "budget study: walker from plateau200-v1-p2 (1 run); hopper from plateau200-v1-p2 (2 runs; not within 200,000, the longest measured)",
        },
    ),
    "lite-long": TierProtocol(
        _protocol(50000, 2500, 10, 50, 5, 2500),
        "lite-long: the lite datasets with 50k updates per agent: the first budget search (v0 datasets, leaderboard/FINDINGS.md); plateau60 now sets lite's budget.",
        "lite",
    ),
    "plateau60": TierProtocol(
        _protocol(60000, 2000, 10, 50, 5, 2000),
        "plateau60: the budget study. 60k updates on the lite datasets, to find where the score and Q̂ stop moving (leaderboard/plateau60-v1-p2.md) and set lite's updates there; MABCQ's ablations beside MABCQ on hopper and walker, to check that their curves track it.",
        "lite",
    ),
    "plateau120": TierProtocol(
        _protocol(120000, 2000, 10, 50, 5, 2000),
        "plateau120: the budget study continued. 120k updates on the lite datasets, for the tasks whose score or Q̂ still moves at 60k in plateau60 (walker, halfcheetah), and for CQL and OMAR on every task.",
        "lite",
    ),
    "plateau200": TierProtocol(
        _protocol(200000, 4000, 10, 50, 5, 4000),
        "plateau200: the budget study of every learner that trains (ddpg, td3bc, iql, bc, behavior; bcq and mabcq again on hopper, where bc climbs after 60k; mabcq-no-vd on hopper, which climbs past 60k where mabcq does not; cql and omar run 120k in plateau120). 200k updates on the lite datasets, to find where their score and Q̂ stop moving (leaderboard/plateau200-v1-p2.md).",
        "lite",
    ),
    "paper": TierProtocol(
        _protocol(300000, 10000, 10, 50, 5, 5000, final_checkpoints=5),
        "paper: Table 6 hyperparameters on the 1M-transition datasets. The paper does not state its number of updates; 300k is ours.",
    ),
}


def load_protocol(preset: str) -> Protocol:
    """Load ``baselines/<tier>.toml`` (or a path), checking it. One-line errors."""
    path, data = read_tier_file(preset, BASELINES_DIR, "protocol")
    proto = data.get("protocol")
    if not isinstance(data.get("tier"), str) or not isinstance(proto, dict) or not isinstance(data.get("algos"), dict):
        raise UserError(f"malformed protocol {path}: it needs tier = '...', a [protocol] table and [algos.<name>] tables")
    for key in PROTOCOL_KEYS:
        if key not in proto:
            raise UserError(f"malformed protocol {path}: [protocol] has no {key} (regenerate the file with `mabcq-bench baselines --write`, or add it)")
        _check_key(path, "[protocol]", key, proto[key])
    if proto["version"] not in PROTOCOL_VERSIONS:
        raise UserError(f"{path} is protocol version {proto['version']}; this mabcq-bench runs versions {', '.join(map(str, PROTOCOL_VERSIONS))}")
    for key in V3_KEYS if proto["version"] >= 3 else ():
        if key not in proto:
            raise UserError(f"malformed protocol {path}: version 3 needs [protocol] {key}")
        _check_key(path, "[protocol]", key, proto[key])
    if proto["version"] >= 3 and proto["final_eval_episodes"] % proto["final_checkpoints"]:
        raise UserError(f"malformed protocol {path}: final_eval_episodes must be a multiple of final_checkpoints (equal shares)")
    unknown = set(proto) - set(PROTOCOL_KEYS) - (set(V3_KEYS) if proto["version"] >= 3 else set()) - {"tasks", *BUDGETS.values()}
    if unknown:
        raise UserError(f"malformed protocol {path}: unknown [protocol] key(s) {', '.join(sorted(unknown))}")
    from mabcq_bench.algos import ALGOS
    from mabcq_bench.data.tasks import TASKS

    _check_tables(path, proto, "tasks", ("a task", "tasks", list(TASKS)), set(PER_TASK_KEYS), ", ".join(PER_TASK_KEYS))
    may_set = f"{ALL_TASKS} (every task), task names ({', '.join(TASKS)}) and {NOT_PLATEAUED}"
    _check_tables(path, proto, "budgets", ("an algorithm", "algorithms", list(ALGOS)), {ALL_TASKS, NOT_PLATEAUED, *TASKS}, may_set)
    centralized = [name for name, a in ALGOS.items() if not a.not_centralized]
    _check_tables(path, proto, "centralized_budgets", ("a centralized learner", "centralized learners", centralized), {ALL_TASKS, NOT_PLATEAUED, *TASKS}, may_set)
    for name in data["algos"]:
        if name not in ALGOS:
            raise UserError(f"malformed protocol {path}: [algos.{name}] is not an algorithm; valid algorithms: {', '.join(ALGOS)}")
    datasets = data.get("datasets", data["tier"])
    if not isinstance(datasets, str) or not datasets:
        raise UserError(f"malformed protocol {path}: datasets = '<tier>' names the tier of the datasets it runs on")
    return Protocol(data["tier"], path, dict(proto), data["algos"], datasets)


def protocol_list() -> str:
    """The protocol files in ``baselines/`` as a table (the shipped tiers first): tier, the datasets
    it trains on, updates per agent (per-task values in parentheses), the first sentence of its note."""
    import tomllib

    rows = [("tier", "datasets", "updates", "note")]
    shipped = list(DEFAULT_PROTOCOLS)
    for path in sorted(BASELINES_DIR.glob("*.toml"), key=lambda p: (shipped.index(p.stem) if p.stem in shipped else len(shipped), p.stem)):
        text = path.read_text()
        try:
            data = tomllib.loads(text)
            proto = data["protocol"]
            tasks = ", ".join(f"{t} {v['updates']:,}" for t, v in proto.get("tasks", {}).items() if "updates" in v)
            updates = f"{proto['updates']:,}" + (f" ({tasks})" if tasks else "")
            datasets = str(data.get("datasets", data["tier"]))
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError):
            updates, datasets = "?", "?"  # `run --preset` says what is wrong with it
        first = text.splitlines()[0] if text else ""
        note = first.removeprefix("#").strip().removeprefix(f"{path.stem}:").strip() if first.startswith("#") else ""
        rows.append((path.stem, datasets, updates, note.split(". ")[0].rstrip(".") + "." if note else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows).rstrip()


def _check_tables(path: Path, proto: dict[str, Any], section: str, names: tuple[str, str, list[str]], allowed: set[str], may_set: str) -> None:
    """Check the ``[protocol.<section>.<name>]`` tables: each ``name`` one of ``names`` (what it
    must be, the plural, the valid ones), setting only ``allowed`` keys, each to a positive integer."""
    what, plural, valid = names
    tables = proto.get(section, {})
    if not isinstance(tables, dict):
        raise UserError(f"malformed protocol {path}: [protocol.{section}] holds one table per name ([protocol.{section}.<name>])")
    for name, values in tables.items():
        where = f"[protocol.{section}.{name}]"
        if name not in valid:
            raise UserError(f"malformed protocol {path}: {where} is not {what}; valid {plural}: {', '.join(valid)}")
        if not isinstance(values, dict) or set(values) - allowed:
            raise UserError(f"malformed protocol {path}: {where} may set only {may_set}")
        for key, value in values.items():
            if key == NOT_PLATEAUED:
                if not isinstance(value, list) or any(v not in values or v == NOT_PLATEAUED for v in value):
                    raise UserError(f"malformed protocol {path}: {where} {NOT_PLATEAUED} must list keys the table sets (task names or {ALL_TASKS}), e.g. [\"hopper\"]")
                continue
            _check_key(path, where, key, value)


def _check_key(path: Path, where: str, key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "eval_every" else 1):
        raise UserError(f"malformed protocol {path}: {where} {key} must be a positive integer")


def protocol_text(tier: str, protocol: dict[str, Any], note: str, datasets: str | None = None, budget_notes: dict[str, str] | None = None) -> str:
    """A complete protocol file: the protocol plus every registered algorithm's resolved config
    and its per-task values (ε), so a user sees every hyperparameter without reading code.
    ``datasets`` names the datasets' tier when it is not ``tier`` itself; ``budget_notes`` say
    where each learner's own budget comes from."""
    from mabcq_bench.algos import ALGOS
    from mabcq_bench.data.tasks import TASKS

    lines = [f"# {note}", "# Generated by `mabcq-bench baselines --write`; edit freely: runs record the values they used.", f'tier = "{tier}"']
    if datasets and datasets != tier:
        lines.append(f'datasets = "{datasets}"  # trains on the {datasets} datasets')
    lines += ["", "[protocol]"]
    lines += [f"{k} = {protocol[k]}" for k in [*PROTOCOL_KEYS, *V3_KEYS] if k in protocol]
    for task, values in protocol.get("tasks", {}).items():
        lines += [f"[protocol.tasks.{task}]"] + [f"{k} = {v}" for k, v in values.items()]
    for setting, section in BUDGETS.items():
        lines += budget_text(protocol.get(section, {}), budget_notes, setting)
    for name, spec in ALGOS.items():
        base = dataclasses.asdict(spec.config())
        lines += ["", f"[algos.{name}]  # {spec.summary}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in base.items() if v is not None]
        for task in TASKS.values():
            cfg = dataclasses.asdict(spec.config(task))
            diff = {k: v for k, v in cfg.items() if base[k] != v}
            if diff:
                lines += [f"[algos.{name}.tasks.{task.name}]"] + [f"{k} = {_toml_value(v)}" for k, v in diff.items()]
    return "\n".join(lines) + "\n"


def budget_text(budgets: dict[str, dict[str, int]], notes: dict[str, str] | None = None, setting: str = "decentralized") -> list[str]:
    """The lines of learners' own budgets in a protocol file: a ``[protocol.budgets.<algo>]`` table
    per learner (``centralized_budgets`` in the centralized setting), its note (where the budget
    comes from; :class:`TierProtocol`'s ``budget_notes``) a comment on its first line."""
    lines = []
    for algo, values in budgets.items():
        note = (notes or {}).get(algo if setting == "decentralized" else f"{algo} {setting}")
        lines += [f"[protocol.{BUDGETS[setting]}.{algo}]" + (f"  # {note}" if note else "")] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return lines


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)
