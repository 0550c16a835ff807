"""Run records: reading a results store and checking every record before anything trusts it.

A results store holds one JSON record per *finished* run at
``<results>/<board>/<task>/<variant>/seed<k>.json`` (written by :mod:`mabcq_bench.runs.execute`;
schema 1 from protocol version 1, schema 2 from version 2, which adds the final evaluation's
episode count and the ``window`` mean; the two are filed on different boards and never mixed). :func:`load_records` reads them all and refuses, with the
file's name, any record it cannot trust; it never skips or modifies one. An unfinished run (a
checkpoint ``seed<k>.ckpt.json`` without a record) is not a record: :func:`unfinished_runs`
lists them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable

from mabcq_bench.errors import UserError


#: The run-record schemas this module reads.
SCHEMAS = (1, 2)


#: Column order of the tables: the paper's tasks (the order of ``mabcq_bench.data.tasks.TASKS``, kept
#: here so that tables need not import the simulator stack), then any other task by name.
TASK_ORDER = ("halfcheetah", "walker", "hopper", "ant")


_REQUIRED = ("schema", "status", "tier", "task", "algo", "variant", "epsilon", "seed", "config_fingerprint", "final", "curve")


_REQUIRED_FINAL = ("normalized_score", "coordination_gap")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _optional_number(x: Any) -> float:
    """A record's number-or-null (NaN in JSON also means "none") as a float, NaN for none."""
    return float(x) if _is_number(x) else math.nan


def _record_problem(rec: Any) -> str | None:
    """What is wrong with a run record, as the end of a sentence "run record X ...", or None."""
    if not isinstance(rec, dict):
        return "is not a JSON object"
    missing = [k for k in _REQUIRED if k not in rec]
    if missing:
        return f"lacks required keys {', '.join(missing)}"
    if rec["schema"] not in SCHEMAS:
        return f"has schema {rec['schema']!r}; this mabcq-bench reads schemas {', '.join(map(str, SCHEMAS))}"
    if rec["status"] != "finished":
        return f"has status {rec['status']!r}, not 'finished' (only finished runs belong in the store)"
    for key in ("tier", "task", "algo", "variant", "config_fingerprint"):
        if not isinstance(rec[key], str) or not rec[key]:
            return f"has {key} {rec[key]!r}; expected a non-empty string"
    if not isinstance(rec["seed"], int) or isinstance(rec["seed"], bool):
        return f"has seed {rec['seed']!r}; expected an integer"
    if rec["epsilon"] is not None and not _is_number(rec["epsilon"]):
        return f"has epsilon {rec['epsilon']!r}; expected a number or null"
    final = rec["final"]
    if not isinstance(final, dict) or any(k not in final for k in _REQUIRED_FINAL):
        return f"has no final {' and '.join(_REQUIRED_FINAL)}"
    if not _is_number(final["normalized_score"]) or not math.isfinite(final["normalized_score"]):
        return f"has final normalized_score {final['normalized_score']!r}; expected a finite number"
    if final["coordination_gap"] is not None and not _is_number(final["coordination_gap"]):
        return f"has final coordination_gap {final['coordination_gap']!r}; expected a number or null"
    if rec["schema"] >= 2:
        window = rec.get("window")
        if not isinstance(window, dict) or not _is_number(window.get("normalized_score")) or not math.isfinite(window["normalized_score"]):
            return "has no finite window normalized_score (schema 2)"
    curve = rec["curve"]
    if not isinstance(curve, list):
        return "has a curve that is not a list"
    for point in curve:
        if not isinstance(point, dict) or not _is_number(point.get("updates")) or "normalized_score" not in point:
            return f"has a malformed curve point {point!r}; expected updates and normalized_score"
    return None


def _file(rec: dict) -> str:
    return rec.get("_file", f"<record {rec.get('tier')}/{rec.get('task')}/{rec.get('variant')}/seed{rec.get('seed')}>")


def check_record(rec: Any, where: str = "in memory") -> None:
    """Raise a UserError naming ``where`` if ``rec`` is not a valid finished run record."""
    problem = _record_problem(rec)
    if problem:
        raise UserError(f"run record {where} {problem}")


#: A finished run's record: ``seed<k>.json`` (``seed<k>.ckpt.json`` is an unfinished run's checkpoint).
RECORD_NAME = re.compile(r"seed\d+\.json")


def unfinished_runs(results_dir: str | Path) -> list[Path]:
    """Checkpoints of runs that have no record: running now, interrupted, or failed.

    A rerun of the same ``mabcq-bench run`` resumes them; deleting ``seed<k>.ckpt*`` starts one over.
    """
    root = Path(results_dir)
    out = []
    for ckpt in sorted(root.glob("*/*/*/seed*.ckpt.json")):
        record = ckpt.with_name(ckpt.name.replace(".ckpt.json", ".json"))
        if not record.exists():
            out.append(ckpt)
    return out


def load_records(results_dir: str | Path) -> list[dict]:
    """Read every run record of a results store.

    Records are the files ``<results_dir>/<tier>/<task>/<variant>/seed<k>.json`` (hidden files,
    such as a writer's temporary files, are not records). Each returned dict is the file's JSON
    plus ``"_file"``, the path it was read from (for error messages). The files are only read.

    Args:
        results_dir: the results store's root folder.

    Returns:
        The records, in path order (empty if the store has none yet).

    Raises:
        UserError: the folder does not exist, or a record is unreadable, not valid JSON, lacks a
            required key, is not ``status: finished``, or sits under another tier/task folder
            than it says; the message names the file.
    """
    root = Path(results_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"results folder {root} is a file, not a folder")
    if not root.is_dir():
        raise UserError(f"results folder {root} does not exist")
    records = []
    for path in sorted(p for p in root.glob("*/*/*/seed*.json") if RECORD_NAME.fullmatch(p.name)):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"cannot read run record {path}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = f"{exc.msg} at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            raise UserError(f"run record {path} is not valid JSON ({reason}); rerun that run or move the file away") from None
        check_record(rec, str(path))
        tier_dir, task_dir = path.parts[-4], path.parts[-3]
        if (rec["tier"], rec["task"]) != (tier_dir, task_dir):
            raise UserError(f"run record {path} says tier {rec['tier']!r}, task {rec['task']!r} but is filed under {tier_dir}/{task_dir}")
        rec["_file"] = str(path)
        records.append(rec)
    return records


def ordered_tasks(tasks: Iterable[str]) -> list[str]:
    """Tasks in table order: halfcheetah, walker, hopper, ant, then any others by name."""
    known = [t for t in TASK_ORDER if t in set(tasks)]
    return known + sorted(set(tasks) - set(TASK_ORDER))


def group_runs(records: Iterable[dict], tier: str) -> dict[tuple[str, str], list[dict]]:
    """The records of ``tier`` grouped into cells: (task, variant) -> records, by seed.

    Raises:
        UserError: a malformed record; two fingerprints in one cell (naming both); two records
            of the same seed in one cell.
    """
    cells: dict[tuple[str, str], list[dict]] = {}
    for rec in records:
        check_record(rec, _file(rec))
        if rec["tier"] == tier:
            cells.setdefault((rec["task"], rec["variant"]), []).append(rec)
    for (task, variant), recs in cells.items():
        first = recs[0]
        for rec in recs[1:]:
            if rec["config_fingerprint"] != first["config_fingerprint"]:
                raise UserError(
                    f"{tier}/{task}/{variant} mixes config fingerprints {first['config_fingerprint']} ({_file(first)}) "
                    f"and {rec['config_fingerprint']} ({_file(rec)}); keep one configuration's runs in this results folder"
                )
        by_seed: dict[int, dict] = {}
        for rec in recs:
            if rec["seed"] in by_seed:
                raise UserError(f"{tier}/{task}/{variant} has two records of seed {rec['seed']}: {_file(by_seed[rec['seed']])} and {_file(rec)}")
            by_seed[rec["seed"]] = rec
        recs.sort(key=lambda r: r["seed"])
    return cells
