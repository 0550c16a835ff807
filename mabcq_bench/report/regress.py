"""Score regression check for CI: today's smoke-tier scores against a committed reference.

The reference (``leaderboard/regress-reference.json``) is a JSON object::

    {"tier": "smoke", "tasks": ["hopper"], "algos": ["mabcq", "bcq"], "seeds": [0, 1],
     "tolerance": 10.0, "tolerance_note": "why this tolerance",
     "scores": {"hopper/mabcq": 12.3, "hopper/bcq": 8.1},
     "fingerprints": {"hopper/mabcq": "0123456789abcdef", ...}}

``scores`` maps ``"<task>/<variant>"`` to the mean final normalized score over ``seeds``;
``tolerance`` is the largest allowed ``|now − reference|``, in normalized-score points.

``metrics`` (optional) holds, per entry, the training metrics of :data:`GATE_METRICS` at the end
of training (mean over ``seeds``), and ``metric_tolerance`` the largest allowed relative change.
They make the gate sharp: a score is a few MuJoCo episodes, where a last-bit difference in a
learner (another CPU's kernels) becomes another trajectory, so its tolerance must be wide; the
critic's values and losses after the same updates on the same data move far less between CPUs,
and a bug in the update (a flipped weight, a wrong target) moves them by much more.
``fingerprints`` (optional) holds each entry's config fingerprint: a changed one is reported
beside the table as the likely reason of a drift, but does not fail the check by itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mabcq_bench.errors import UserError
from mabcq_bench.report.records import group_runs
from mabcq_bench.report.tables import DASH
from mabcq_bench.util import atomic_path


#: The committed reference, found from the package as the protocol files are
#: (:data:`mabcq_bench.runs.protocol.BASELINES_DIR`), so `mabcq-bench regress` works from any folder.
REFERENCE_PATH = Path(__file__).resolve().parents[2] / "leaderboard" / "regress-reference.json"

#: Training metrics the gate compares (those a learner logs), from the last metrics interval.
GATE_METRICS = ("values/q_mean", "values/target_mean", "losses/q", "weights/lambda_vd_mean", "weights/lambda_tn_mean", "losses/vae")


def final_metrics(recs: Sequence[dict]) -> dict[str, float]:
    """The :data:`GATE_METRICS` every record logs, at its last interval, averaged over records."""
    lasts = [r["metrics"][-1] for r in recs if r.get("metrics")]
    if len(lasts) != len(recs) or not lasts:
        return {}
    return {m: float(np.mean([last[m] for last in lasts])) for m in GATE_METRICS if all(m in last for last in lasts)}


def _relative_change(now: float, ref: float) -> float:
    return abs(now - ref) / max(abs(ref), 1e-3)


def _key(task: str, algo: str) -> str:
    return f"{task}/{algo}"


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _reference_problem(ref: Any) -> str | None:
    """What is wrong with a parsed reference, or None."""
    if not isinstance(ref, dict):
        return "is not a JSON object"
    missing = [k for k in ("tier", "tasks", "algos", "seeds", "tolerance", "tolerance_note", "scores") if k not in ref]
    if missing:
        return f"lacks required keys {', '.join(missing)}"
    if not isinstance(ref["tier"], str) or not ref["tier"]:
        return "has no tier name"
    for key in ("tasks", "algos"):
        if not isinstance(ref[key], list) or not ref[key] or not all(isinstance(x, str) and x for x in ref[key]):
            return f"has {key} {ref[key]!r}; expected a non-empty list of names"
    if not isinstance(ref["seeds"], list) or not ref["seeds"] or not all(isinstance(s, int) and not isinstance(s, bool) for s in ref["seeds"]):
        return f"has seeds {ref['seeds']!r}; expected a non-empty list of integers"
    if not _is_number(ref["tolerance"]) or ref["tolerance"] < 0:
        return f"has tolerance {ref['tolerance']!r}; expected a number >= 0"
    if not isinstance(ref["tolerance_note"], str):
        return "has a tolerance_note that is not a string"
    scores = ref["scores"]
    if not isinstance(scores, dict) or not scores:
        return "has no scores"
    for key, value in scores.items():
        if "/" not in key or not _is_number(value):
            return f"has score entry {key!r}: {value!r}; expected \"<task>/<algo>\": number"
    if not isinstance(ref.get("fingerprints", {}), dict):
        return "has fingerprints that are not an object"
    metrics = ref.get("metrics", {})
    if not isinstance(metrics, dict) or not all(isinstance(v, dict) and all(_is_number(x) for x in v.values()) for v in metrics.values()):
        return "has metrics that are not an object of {metric: number} objects"
    if metrics and not (_is_number(ref.get("metric_tolerance")) and ref["metric_tolerance"] >= 0):
        return f"has metrics but metric_tolerance {ref.get('metric_tolerance')!r}; expected a number >= 0"
    return None


def load_reference(path: str | Path) -> dict:
    """Read and check a regression reference file.

    Raises:
        UserError: the file is missing, unreadable, not JSON, or lacks/mistypes a field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"regression reference {path} not found; make one from a finished sweep of its tier first") from None
    except OSError as exc:
        raise UserError(f"cannot read regression reference {path}: {exc.strerror or exc}") from None
    try:
        ref = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"regression reference {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    problem = _reference_problem(ref)
    if problem:
        raise UserError(f"regression reference {path} {problem}")
    return ref


def _current(records: Iterable[dict], tier: str, seeds: Sequence[int]) -> dict[str, list[dict]]:
    """"task/algo" -> the records of ``tier`` whose seed is among ``seeds`` (fingerprint-checked)."""
    wanted = set(seeds)
    return {
        _key(task, algo): [r for r in recs if r["seed"] in wanted]
        for (task, algo), recs in group_runs(records, tier).items()
    }


def reference_from_records(
    records: Iterable[dict],
    tier: str,
    tasks: Sequence[str],
    algos: Sequence[str],
    seeds: Sequence[int],
    tolerance: float,
    note: str,
    metric_tolerance: float | None = None,
    board: str | None = None,
) -> dict:
    """A reference from the runs of a finished sweep: every (task, algo) over every seed.

    Args:
        records: run records (e.g. ``records.load_records(results)``).
        tier: the sweep's tier.
        tasks, algos, seeds: what the reference covers; ``algos`` are variant names.
        tolerance: largest allowed ``|now − reference|`` in normalized-score points.
        note: why this tolerance (e.g. the spread seen between machines).
        metric_tolerance: largest allowed relative change of a training metric; ``None``: the
            reference holds no metrics.
        board: the records' tier name when it is not ``tier`` (runs on version-N datasets are
            filed as ``<tier>-v<N>``, see :func:`mabcq_bench.runs.plan.board_name`).

    Raises:
        UserError: a (task, algo, seed) without a finished run, mixed fingerprints, bad tolerance.
    """
    if not _is_number(tolerance) or tolerance < 0:
        raise UserError(f"tolerance must be a number >= 0, got {tolerance!r}")
    current = _current(records, board or tier, seeds)
    scores, fingerprints, metrics = {}, {}, {}
    for task in tasks:
        for algo in algos:
            key = _key(task, algo)
            recs = current.get(key, [])
            missing = sorted(set(seeds) - {r["seed"] for r in recs})
            if missing:
                raise UserError(f"cannot make the reference: no finished {tier} run of {key} for seed(s) {', '.join(map(str, missing))}")
            scores[key] = float(np.mean([r["final"]["normalized_score"] for r in recs]))
            fingerprints[key] = recs[0]["config_fingerprint"]
            if metric_tolerance is not None and (m := final_metrics(recs)):
                metrics[key] = m
    extra = {"metrics": metrics, "metric_tolerance": float(metric_tolerance)} if metric_tolerance is not None else {}
    return {
        "tier": tier,
        "tasks": list(tasks),
        "algos": list(algos),
        "seeds": [int(s) for s in seeds],
        "tolerance": float(tolerance),
        "tolerance_note": note,
        "scores": scores,
        "fingerprints": fingerprints,
        **extra,
    }


def write_reference(path: str | Path, ref: Mapping[str, Any]) -> Path:
    """Check ``ref`` and write it as JSON, atomically (sorted keys, so diffs stay small)."""
    problem = _reference_problem(dict(ref))
    if problem:
        raise UserError(f"refusing to write a regression reference that {problem}")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(ref, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def compare(reference: Mapping[str, Any], records: Iterable[dict], failures: Mapping[str, str], board: str | None = None) -> tuple[str, bool]:
    """Today's scores beside the reference's.

    Every reference entry gets a status: ``ok`` (|delta| ≤ tolerance and every reference metric
    within ``metric_tolerance``), ``DRIFT`` (the score's |delta| > tolerance), ``METRIC`` (a
    training metric moved by more than ``metric_tolerance``, relative), ``FAILED`` (its run failed: ``failures`` names it), or ``MISSING`` (no finished
    run for some of the reference's seeds; "now" is then the mean over the seeds there are, or
    "–"). A failure of an entry the reference lacks is listed as ``FAILED`` too.

    Args:
        reference: a reference (see :func:`load_reference`).
        records: today's run records; only the reference's tier and seeds are used.
        failures: "task/algo" -> one-line reason, for runs of today's sweep that failed.
        board: the records' tier name when it is not the reference's tier (``smoke-v2-p2``).

    Returns:
        ``(table, ok)``: the plain-text table (columns task/algo, reference, now, delta, status;
        then one line per failure reason and per changed config fingerprint), and whether every
        entry is ``ok``.
    """
    problem = _reference_problem(dict(reference))
    if problem:
        raise UserError(f"the regression reference {problem}")
    tol = float(reference["tolerance"])
    seeds = reference["seeds"]
    current = _current(records, board or reference["tier"], seeds)
    fingerprints = reference.get("fingerprints", {})
    ref_metrics = reference.get("metrics", {})
    mtol = float(reference.get("metric_tolerance", 0.0))

    lines = [["task/algo", "reference", "now", "delta", "worst metric", "status"]]
    notes = []
    ok = True
    for key in list(reference["scores"]) + sorted(set(failures) - set(reference["scores"])):
        ref_score = reference["scores"].get(key)
        recs = current.get(key, [])
        now = float(np.mean([r["final"]["normalized_score"] for r in recs])) if recs else None
        delta = now - ref_score if now is not None and ref_score is not None else None
        want = ref_metrics.get(key, {})
        got = final_metrics(recs) if recs and want else {}
        changes = {m: _relative_change(got[m], v) if m in got else float("inf") for m, v in want.items()}
        worst = max(changes, key=changes.get) if changes else None
        if key in failures:
            status = "FAILED"
            notes.append(f"{key} FAILED: {failures[key]}")
        elif len({r["seed"] for r in recs}) < len(set(seeds)):
            status = "MISSING"
            have = sorted({r["seed"] for r in recs})
            notes.append(f"{key} MISSING: finished runs for seed(s) {have or 'none'} of {sorted(set(seeds))}")
        elif abs(delta) > tol:
            status = "DRIFT"
        elif worst is not None and changes[worst] > mtol:
            status = "METRIC"
            notes.append(f"{key} METRIC: {worst} is {got.get(worst, float('nan')):.6g}, the reference's {want[worst]:.6g} ({changes[worst]:.2%} off, tolerance {mtol:.2%})")
        else:
            status = "ok"
        ok = ok and status == "ok"
        if recs and key in fingerprints and recs[0]["config_fingerprint"] != fingerprints[key]:
            notes.append(f"{key}: config fingerprint {recs[0]['config_fingerprint']} differs from the reference's {fingerprints[key]}")
        lines.append([
            key,
            DASH if ref_score is None else f"{ref_score:.1f}",
            DASH if now is None else f"{now:.1f}",
            DASH if delta is None else f"{delta:+.1f}",
            DASH if worst is None else f"{worst.split('/')[-1]} {changes[worst]:.2%}",
            status,
        ])

    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    text = [
        "  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    verdict = "ok" if ok else "FAILED"
    mnote = f", training metrics ±{mtol:.1%}" if ref_metrics else ""
    text.append(f"tier {reference['tier']}, seeds {', '.join(map(str, seeds))}, tolerance ±{tol:g} normalized-score points{mnote}: {verdict}")
    return "\n".join(text + notes), ok
