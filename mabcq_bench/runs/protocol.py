"""Protocol files: one run protocol and every algorithm's hyperparameters per tier, as data.

``baselines/<tier>.toml`` holds the ``[protocol]`` (updates, evaluation schedule, checkpoints,
threads) and an ``[algos.<name>]`` table per registered algorithm. A tier may train on another
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
from mabcq_bench.util import read_tier_file

#: Where the shipped protocol files live (the repository's ``baselines/``).
BASELINES_DIR = Path(os.environ.get("MABCQ_BENCH_BASELINES", Path(__file__).resolve().parents[2] / "baselines"))
PROTOCOL_KEYS = {
    "updates": int,  # updates per agent
    "eval_every": int,  # learning-curve evaluation every this many updates
    "eval_episodes": int,  # joint episodes per evaluation (one per evaluation seed)
    "diag_states": int,  # states of the coordination diagnostic
    "checkpoint_every": int,  # resumable checkpoint every this many updates
    "threads": int,  # torch threads per run
}


@dataclass(frozen=True)
class Protocol:
    """A tier's run protocol and per-algorithm hyperparameters (``baselines/<tier>.toml``)."""

    tier: str
    path: Path
    protocol: dict[str, int]
    algos: dict[str, dict[str, Any]]  # algo -> {field: value, "tasks": {task: {field: value}}}
    datasets: str = ""  # the tier of the datasets it trains on (``datasets = "lite"``); default: its own

    def __post_init__(self) -> None:
        if not self.datasets:
            object.__setattr__(self, "datasets", self.tier)

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
    protocol: dict[str, int]
    note: str  # the file's first line
    datasets: str | None = None  # the datasets' tier, when not the tier itself


#: The shipped tiers' protocols (what `mabcq-bench baselines --write` puts in baselines/).
DEFAULT_PROTOCOLS: dict[str, TierProtocol] = {
    "smoke": TierProtocol(
        {"updates": 200, "eval_every": 100, "eval_episodes": 2, "diag_states": 256, "checkpoint_every": 100, "threads": 1},
        "smoke: CI only (the regression gate). A few hundred updates on the smoke datasets; the scores test the pipeline, not the algorithms.",
    ),
    "lite": TierProtocol(
        {"updates": 10000, "eval_every": 1000, "eval_episodes": 5, "diag_states": 1000, "checkpoint_every": 1000, "threads": 1},
        "lite: a 2-core laptop, the committed leaderboard. Table 6 hyperparameters, 10k updates per agent.",
    ),
    "lite-long": TierProtocol(
        {"updates": 50000, "eval_every": 2500, "eval_episodes": 5, "diag_states": 1000, "checkpoint_every": 2500, "threads": 1},
        "lite-long: the lite datasets with 5x lite's training budget (50k updates per agent), to see where the algorithms separate (leaderboard/FINDINGS.md).",
        "lite",
    ),
    "paper": TierProtocol(
        {"updates": 300000, "eval_every": 10000, "eval_episodes": 10, "diag_states": 1000, "checkpoint_every": 5000, "threads": 1},
        "paper: Table 6 hyperparameters on the 1M-transition datasets. The paper does not state its number of updates; 300k is ours.",
    ),
}


def load_protocol(preset: str) -> Protocol:
    """Load ``baselines/<tier>.toml`` (or a path), checking it. One-line errors."""
    path, data = read_tier_file(preset, BASELINES_DIR, "protocol")
    proto = data.get("protocol")
    if not isinstance(data.get("tier"), str) or not isinstance(proto, dict) or not isinstance(data.get("algos"), dict):
        raise UserError(f"malformed protocol {path}: it needs tier = '...', a [protocol] table and [algos.<name>] tables")
    for key, kind in PROTOCOL_KEYS.items():
        if not isinstance(proto.get(key), kind) or isinstance(proto.get(key), bool) or proto[key] < (0 if key == "eval_every" else 1):
            raise UserError(f"malformed protocol {path}: [protocol] {key} must be a positive integer")
    unknown = set(proto) - set(PROTOCOL_KEYS)
    if unknown:
        raise UserError(f"malformed protocol {path}: unknown [protocol] key(s) {', '.join(sorted(unknown))}")
    from mabcq_bench.algos import ALGOS

    for name in data["algos"]:
        if name not in ALGOS:
            raise UserError(f"malformed protocol {path}: [algos.{name}] is not an algorithm; valid algorithms: {', '.join(ALGOS)}")
    datasets = data.get("datasets", data["tier"])
    if not isinstance(datasets, str) or not datasets:
        raise UserError(f"malformed protocol {path}: datasets = '<tier>' names the tier of the datasets it runs on")
    return Protocol(data["tier"], path, dict(proto), data["algos"], datasets)


def protocol_text(tier: str, protocol: dict[str, int], note: str, datasets: str | None = None) -> str:
    """A complete protocol file: the protocol plus every registered algorithm's resolved config
    and its per-task values (ε), so a user sees every hyperparameter without reading code.
    ``datasets`` names the datasets' tier when it is not ``tier`` itself."""
    from mabcq_bench.algos import ALGOS
    from mabcq_bench.data.tasks import TASKS

    lines = [f"# {note}", "# Generated by `mabcq-bench baselines --write`; edit freely: runs record the values they used.", f'tier = "{tier}"']
    if datasets and datasets != tier:
        lines.append(f'datasets = "{datasets}"  # trains on the {datasets} datasets')
    lines += ["", "[protocol]"]
    lines += [f"{k} = {protocol[k]}" for k in PROTOCOL_KEYS]
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


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)
