"""The leaderboard: run records of a results store -> per-tier tables (Markdown, CSV) and plots.

A results store holds one JSON record per *finished* run at
``<results>/<tier>/<task>/<variant>/seed<k>.json`` (schema 1, written by the run harness).
:func:`load_records` reads them all and refuses, with the file's name, any record it cannot
trust; it never skips or modifies one. :func:`build_tables` turns the records of one tier into
rows (one per variant: an algorithm plus its overrides) and columns (one per task);
:func:`write_leaderboard` writes, for every tier present:

- ``<tier>.md`` / ``<tier>.csv``: per task "mean ± std (n)" of the final normalized score over
  seeds, the aggregate "IQM [low, high]" over all runs of all tasks (stratified bootstrap, see
  :func:`mabcq_bench.report.aggregate.stratified_bootstrap_iqm`) and the coordination diagnostic;
  rows by aggregate IQM, best first. ``<tier>.md`` ends with where the algorithms separate
  over training (:mod:`mabcq_bench.report.separation`).
- ``<tier>-curves.png``: normalized score over training, per task on a grid (the paper's
  Figure 2), the main algorithms; ``<tier>-ablations.png``: the same for MABCQ's ablations and
  ε variants beside MABCQ and BCQ.
- ``<tier>-coordination.png``: coordination gap over training, per task (Figure 3); only
  variants with a Q-function.
- ``<tier>-training.png``: the learners' training metrics (Q̂, critic loss, λ_vd and λ_tn batch
  means) over training, a row per task.
- ``<tier>-epsilon.png``: final normalized score against MABCQ's ε, for tasks with runs of at
  least two ε (Figure 4).

A table cell only ever pools runs of one configuration: records of the same (tier, task,
variant) with different ``config_fingerprint`` are an error, never averaged together.
"""

from __future__ import annotations

import csv
import io
import json
import re
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mabcq_bench.report import separation
from mabcq_bench.report.aggregate import mean_std, stratified_bootstrap_iqm
from mabcq_bench.errors import UserError
from mabcq_bench.util import atomic_path

#: The run-record schema this module reads.
SCHEMA = 1

#: Column order of the tables: the paper's tasks (the order of ``mabcq_bench.data.tasks.TASKS``, kept
#: here so that tables need not import the simulator stack), then any other task by name.
TASK_ORDER = ("halfcheetah", "walker", "hopper", "ant")

#: Order in which tiers are written (others follow by name).
TIER_ORDER = ("smoke", "lite", "paper")

#: The algorithm whose ε sweeps make the ε plot.
EPSILON_ALGO = "mabcq"
EPSILON_ZERO = "mabcq-no-vd"  # ε = 0 of the ε sweep

_REQUIRED = ("schema", "status", "tier", "task", "algo", "variant", "epsilon", "seed", "config_fingerprint", "final", "curve")
_REQUIRED_FINAL = ("normalized_score", "coordination_gap")

#: Shown in a table cell without runs, and as the coordination gap of algorithms without a Q.
DASH = "–"

AGGREGATE_HEADER = "IQM [low, high]"
GAP_HEADER = "coord. gap"


# --------------------------------------------------------------------------------------------
# Reading and checking records
# --------------------------------------------------------------------------------------------


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
    if rec["schema"] != SCHEMA:
        return f"has schema {rec['schema']!r}; this mabcq-bench reads schema {SCHEMA}"
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


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """The runs of one variant on one task."""

    scores: np.ndarray  # (n,) final normalized score of each run, by seed
    seeds: tuple[int, ...]
    mean: float
    std: float  # sample std over seeds, 0.0 for one run
    gap: float | None  # mean final coordination gap over the runs that have one (value units)
    fingerprint: str

    @property
    def n(self) -> int:
        return int(self.scores.size)

    def __str__(self) -> str:
        return f"{self.mean:.1f} ± {self.std:.1f} ({self.n})"


@dataclass(frozen=True)
class Row:
    """One variant's line of a table."""

    variant: str
    algo: str
    cells: dict[str, Cell | None]  # every task column in column order; None: no runs
    iqm: float  # aggregate over all runs of the tasks it has, normalized-score units
    low: float
    high: float
    gap: float | None  # mean over tasks of the cells' gaps; None when no task has one

    @property
    def complete(self) -> bool:
        """Whether the row has runs on every task column (else its IQM covers fewer tasks)."""
        return all(c is not None for c in self.cells.values())

    def texts(self) -> list[str]:
        """The row as display strings: variant, one per task, aggregate, coordination gap."""
        partial = "" if self.complete else " *"  # both aggregates then cover fewer tasks
        aggregate = f"{self.iqm:.1f} [{self.low:.1f}, {self.high:.1f}]" + partial
        gap = DASH if self.gap is None else f"{self.gap:.2f}" + partial
        return [self.variant, *(DASH if c is None else str(c) for c in self.cells.values()), aggregate, gap]


@dataclass
class Leaderboard:
    """The table of one tier (rows best first) and what the plots need."""

    tier: str
    tasks: list[str]
    rows: list[Row]
    seeds: list[int]  # every seed that occurs in the tier
    reps: int  # bootstrap settings of the aggregate column
    ci: float
    boot_seed: int
    runs: dict[tuple[str, str], list[dict]] = field(repr=False, default_factory=dict)  # (task, variant) -> records

    def header(self) -> list[str]:
        return ["variant", *self.tasks, AGGREGATE_HEADER, GAP_HEADER]


def _cell(recs: list[dict]) -> Cell:
    scores = np.array([r["final"]["normalized_score"] for r in recs], dtype=np.float64)
    mean, std = mean_std(scores)
    gaps = np.array([_optional_number(r["final"]["coordination_gap"]) for r in recs])
    gaps = gaps[np.isfinite(gaps)]
    return Cell(
        scores=scores,
        seeds=tuple(r["seed"] for r in recs),
        mean=mean,
        std=std,
        gap=float(gaps.mean()) if gaps.size else None,
        fingerprint=recs[0]["config_fingerprint"],
    )


def build_tables(records: Iterable[dict], tier: str, reps: int = 2000, ci: float = 0.95, seed: int = 0) -> Leaderboard:
    """The leaderboard of one tier: a row per variant, a column per task.

    Args:
        records: run records (from :func:`load_records`, or dicts of the same schema); records
            of other tiers are ignored.
        tier: the tier to tabulate.
        reps, ci, seed: settings of the stratified bootstrap behind the aggregate column.

    Returns:
        A :class:`Leaderboard` whose rows are sorted by aggregate IQM, best first (ties by name).
        A variant without runs on some task gets ``None`` there, and its IQM covers only its
        tasks (``Row.complete`` is False; tables mark both aggregates, IQM and gap, with ``*``).

    Raises:
        UserError: no run of ``tier``, a malformed record, or mixed fingerprints in one cell.
    """
    records = list(records)
    runs = group_runs(records, tier)
    if not runs:
        raise UserError(f"no finished runs of tier {tier!r} among {len(records)} run records")
    tasks = ordered_tasks({task for task, _ in runs})
    rows = []
    for variant in sorted({v for _, v in runs}):
        cells = {t: _cell(runs[t, variant]) if (t, variant) in runs else None for t in tasks}
        present = {t: c.scores for t, c in cells.items() if c is not None}
        point, low, high = stratified_bootstrap_iqm(present, reps=reps, ci=ci, seed=seed)
        gaps = [c.gap for c in cells.values() if c is not None and c.gap is not None]
        algo = next(recs[0]["algo"] for (_, v), recs in runs.items() if v == variant)
        rows.append(Row(variant, algo, cells, point, low, high, float(np.mean(gaps)) if gaps else None))
    rows.sort(key=lambda r: (-r.iqm, r.variant))
    seeds = sorted({r["seed"] for recs in runs.values() for r in recs})
    return Leaderboard(tier, tasks, rows, seeds, reps, ci, seed, runs)


def _columns(rows: Leaderboard | Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    rows = rows.rows if isinstance(rows, Leaderboard) else list(rows)
    if not rows:
        raise UserError("no rows to format")
    tasks = list(rows[0].cells)
    return ["variant", *tasks, AGGREGATE_HEADER, GAP_HEADER], [r.texts() for r in rows]


def format_table(rows: Leaderboard | Sequence[Row]) -> str:
    """The table as aligned plain text for a terminal (the same cells as the Markdown table).

    Args:
        rows: a :class:`Leaderboard` or its rows (all with the same task columns).
    """
    header, body = _columns(rows)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(b) for b in body)])


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(board: Leaderboard, plots: Sequence[Path] = ()) -> str:
    """``<tier>.md``: a short header saying what the numbers are, the table, links to the plots."""
    header, body = _columns(board)
    seeds = ", ".join(str(s) for s in board.seeds)
    lines = [
        f"# mabcq-bench leaderboard: tier `{board.tier}`",
        "",
        "Final normalized score of the joint decentralized policy (0 = random policy, 100 = the expert that made "
        "the datasets), mean ± std over seeds with the number of runs in parentheses (sample std; 0.0 for one run).",
        "",
        f"- Seeds: {len(board.seeds)} ({seeds}).",
        f"- {AGGREGATE_HEADER}: interquartile mean over all runs of all tasks, {board.ci * 100:g}% percentile interval "
        f"of a stratified bootstrap ({board.reps} resamples of the seeds within each task, generator seed {board.boot_seed}).",
        f"- {GAP_HEADER}: mean over tasks of the final coordination gap max_i V_i(s) − min_i V_i(s) on a fixed set of "
        f"states (value units; {DASH} for algorithms without a Q-function).",
    ]
    if not all(r.complete for r in board.rows):
        lines.append(f"- `*`: an aggregate (IQM or coord. gap) over fewer tasks than the table has (no runs where the cell shows {DASH}); not comparable with the other rows.")
    lines += [
        "",
        "| " + " | ".join(_md_escape(h) for h in header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        *("| " + " | ".join(_md_escape(c) for c in b) + " |" for b in body),
    ]
    if plots:
        lines += ["", *(f"![{p.stem}]({p.name})" for p in plots)]
    return "\n".join(lines) + "\n"


def format_csv(board: Leaderboard) -> str:
    """``<tier>.csv``: the table's display cells, then the same numbers as numeric columns
    (``<task>_mean``, ``<task>_std``, ``<task>_n``, ``iqm``, ``iqm_low``, ``iqm_high``,
    ``coordination_gap``; empty where there is no value), one row per variant."""
    header, body = _columns(board)
    numeric = [f"{t}_{k}" for t in board.tasks for k in ("mean", "std", "n")] + ["iqm", "iqm_low", "iqm_high", "coordination_gap"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header + numeric)
    for row, texts in zip(board.rows, body):
        values: list[Any] = []
        for task in board.tasks:
            c = row.cells[task]
            values += ["", "", 0] if c is None else [repr(round(c.mean, 4)), repr(round(c.std, 4)), c.n]
        values += [repr(round(x, 4)) for x in (row.iqm, row.low, row.high)] + ["" if row.gap is None else repr(round(row.gap, 4))]
        writer.writerow(texts + values)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def curve_stats(recs: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean and sample std over seeds of a curve quantity (``normalized_score``, ``coordination_gap``).

    Only evaluation points present, with a finite value, in every seed's curve are kept (runs of
    one configuration share their evaluation schedule; a point some seed lacks would average a
    different set of runs).

    Returns:
        ``(updates, mean, std)``, each of shape (points,), or None when no point qualifies.
    """
    per_seed = [{int(p["updates"]): _optional_number(p.get(key)) for p in rec["curve"]} for rec in recs]
    common = sorted(set.intersection(*(set(d) for d in per_seed))) if per_seed else []
    if not common:
        return None
    values = np.array([[d[u] for u in common] for d in per_seed])  # (seeds, points)
    keep = np.all(np.isfinite(values), axis=0)
    if not keep.any():
        return None
    values = values[:, keep]
    std = values.std(axis=0, ddof=1) if len(recs) > 1 else np.zeros(values.shape[1])
    return np.array(common)[keep], values.mean(axis=0), std


def _figure(n_panels: int, ncols: int = 2):
    """A figure with one panel per task on a grid (``ncols`` per line), drawn by Agg without pyplot."""
    from matplotlib.figure import Figure

    ncols = min(ncols, max(1, n_panels))
    nrows = math.ceil(max(1, n_panels) / ncols)
    # at least 7 inches wide: the title and the legend's row must fit even with one panel
    fig = Figure(figsize=(max(7.0, 4.6 * ncols), 3.4 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _colors(variants: Sequence[str]) -> dict[str, Any]:
    """One colour per variant, the same in every panel and plot of a tier."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(variants)}


#: Line styles cycled over the variants, so identical curves stay visible on top of each other.
_STYLES = ("-", "--", "-.", ":")


def _styles(variants: Sequence[str]) -> dict[str, str]:
    return {v: _STYLES[i % len(_STYLES)] for i, v in enumerate(variants)}


#: The ablations and ε variants of MABCQ get a figure of their own (with BCQ, both weights off).
def _is_ablation(variant: str) -> bool:
    return variant.startswith("mabcq-no-") or (variant.startswith("mabcq ") and "epsilon=" in variant)


def _save_png(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")  # never clip a title or legend
    return path


def _legend(fig, axes, order: Sequence[str]) -> None:
    """One legend for the figure, below the panels, with each variant once, in table order."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    entries = {label: handles[label] for label in order if label in handles}
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=min(4, len(entries)), frameon=False)


def _plot_over_training(board: Leaderboard, key: str, ylabel: str, title: str, path: Path, variants: Sequence[str] | None = None) -> Path | None:
    """Per task, one mean line and a light ±std band over seeds per variant; None if nothing to
    draw. The y-range follows the mean lines (a noisy algorithm's band may leave the panel
    rather than flatten everyone else's curves)."""
    order = [r.variant for r in board.rows]
    shown = [v for v in order if variants is None or v in variants]
    colors, styles = _colors(order), _styles(order)
    fig, axes = _figure(len(board.tasks))
    drawn = False
    for ax, task in zip(axes, board.tasks):
        lows, highs = [], []
        for variant in shown:
            recs = board.runs.get((task, variant))
            stats_ = curve_stats(recs, key) if recs else None
            if stats_ is None:
                continue
            updates, mean, std = stats_
            ax.plot(updates, mean, color=colors[variant], linestyle=styles[variant], linewidth=1.6, label=variant, marker="." if updates.size < 3 else None)
            ax.fill_between(updates, mean - std, mean + std, color=colors[variant], alpha=0.1, linewidth=0)
            lows.append(float(np.min(mean)))
            highs.append(float(np.max(mean)))
            drawn = True
        if lows:
            lo, hi = min(lows), max(highs)
            pad = 0.15 * (hi - lo) if hi > lo else max(1.0, abs(hi) * 0.1)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(task)
        ax.set_xlabel("updates")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if not drawn:
        return None
    fig.suptitle(f"{title} — tier {board.tier} (mean over seeds, band ±std)")
    _legend(fig, axes, shown)
    return _save_png(fig, path)


#: Training metrics drawn in ``<tier>-training.png`` (those a learner logs; others are skipped).
TRAINING_METRICS = (
    ("values/q_mean", "Q̂ batch mean"),
    ("losses/q", "critic loss"),
    ("weights/lambda_vd_mean", "λ_vd batch mean"),
    ("weights/lambda_tn_mean", "λ_tn batch mean"),
)


def metric_curve(recs: Sequence[dict], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean over seeds of a training metric at every logged interval all seeds share."""
    per_seed = [{int(m["update"]): float(m[metric]) for m in rec.get("metrics") or [] if metric in m} for rec in recs]
    common = sorted(set.intersection(*(set(d) for d in per_seed))) if per_seed else []
    if not common:
        return None
    return np.array(common), np.array([[d[u] for u in common] for d in per_seed]).mean(axis=0)


def _plot_training(board: Leaderboard, path: Path) -> Path | None:
    """Training metrics (rows: tasks, columns: metrics), a line per variant; None if none logged."""
    order = [r.variant for r in board.rows]
    colors, styles = _colors(order), _styles(order)
    metrics = [(m, label) for m, label in TRAINING_METRICS if any(metric_curve(recs, m) is not None for recs in board.runs.values())]
    if not metrics:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6 * len(metrics) + 0.5, 2.8 * len(board.tasks) + 0.8), layout="constrained")
    axes = fig.subplots(len(board.tasks), len(metrics), squeeze=False)
    for i, task in enumerate(board.tasks):
        for j, (metric, label) in enumerate(metrics):
            ax = axes[i, j]
            for variant in order:
                recs = board.runs.get((task, variant))
                curve = metric_curve(recs, metric) if recs else None
                if curve is not None:
                    ax.plot(*curve, color=colors[variant], linestyle=styles[variant], linewidth=1.4, label=variant)
            ax.set_title(f"{task}: {label}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(board.tasks) - 1:
                ax.set_xlabel("updates")
    fig.suptitle(f"Training metrics — tier {board.tier} (mean over seeds)")
    _legend(fig, axes.ravel(), order)
    return _save_png(fig, path)


def epsilon_points(board: Leaderboard, task: str) -> list[tuple[float, float, float, str]]:
    """(ε, mean, std, variant) of every ``mabcq`` variant with an ε on ``task``, by ε.

    The plain ``mabcq-no-vd`` ablation is the ε = 0 point: clipping λ_vd to [1, 1] is the same
    learner, parameter for parameter (tested), so its runs are not made twice.
    """
    points = []
    for row in board.rows:
        recs = board.runs.get((task, row.variant))
        if not recs:
            continue
        if row.algo == EPSILON_ALGO and recs[0]["epsilon"] is not None:
            eps = float(recs[0]["epsilon"])
        elif row.variant == EPSILON_ZERO:
            eps = 0.0
        else:
            continue
        cell = row.cells[task]
        points.append((eps, cell.mean, cell.std, row.variant))
    return sorted(points)


def epsilon_pairs(board: Leaderboard) -> list[tuple[str, str, str]]:
    """Figure 4's comparisons for the separation table: every ε variant of MABCQ (runs made with
    ``--set epsilon=…`` and no other override) against ε = 0, the ablation without λ_vd. The
    claim is that none is *below* it."""
    variants = {
        rec["variant"]
        for recs in board.runs.values()
        for rec in recs
        if rec["algo"] == EPSILON_ALGO and set(rec.get("overrides") or {}) == {"epsilon"}
    }
    return [(v, EPSILON_ZERO, separation.SCORE) for v in sorted(variants)]


def _plot_epsilon(board: Leaderboard, path: Path) -> Path | None:
    """Final normalized score against ε, one panel per task with ≥2 distinct ε; None if none."""
    panels = {}
    for task in board.tasks:
        points = epsilon_points(board, task)
        if len({e for e, *_ in points}) >= 2:
            panels[task] = points
    if not panels:
        return None
    fig, axes = _figure(len(panels))
    for ax, (task, points) in zip(axes, panels.items()):
        eps, mean, std, _ = zip(*points)
        ax.errorbar(eps, mean, yerr=std, fmt="o-", capsize=3)
        ax.set_title(task)
        ax.set_xlabel(r"$\epsilon$ (clip of $\lambda_{vd}$ to $[1-\epsilon, 1+\epsilon]$)")
        ax.set_ylabel("final normalized score")
        ax.grid(alpha=0.3)
    fig.suptitle(f"MABCQ's ε — tier {board.tier} (mean ± std over seeds)")
    return _save_png(fig, path)


def write_plots(board: Leaderboard, out_dir: Path) -> list[Path]:
    """Write the tier's PNGs into ``out_dir``; an optional plot with nothing to show is not
    written, and an old copy of it (from an earlier, different store) is removed."""
    written = []
    variants = [r.variant for r in board.rows]
    main = [v for v in variants if not _is_ablation(v)]
    ablations = [v for v in variants if _is_ablation(v) or v in ("mabcq", "bcq")] if any(map(_is_ablation, variants)) else []
    plots = [
        (f"{board.tier}-curves.png", lambda p: _plot_over_training(board, "normalized_score", "normalized score", "Learning curves", p, main)),
        (f"{board.tier}-ablations.png", lambda p: _plot_over_training(board, "normalized_score", "normalized score", "MABCQ's ablations and ε", p, ablations) if ablations else None),
        (f"{board.tier}-coordination.png", lambda p: _plot_over_training(board, "coordination_gap", r"$\max_i V_i(s) - \min_i V_i(s)$", "Coordination gap", p)),
        (f"{board.tier}-training.png", lambda p: _plot_training(board, p)),
        (f"{board.tier}-epsilon.png", lambda p: _plot_epsilon(board, p)),
    ]
    for name, draw in plots:
        path = out_dir / name
        if draw(path) is not None:
            written.append(path)
        else:
            path.unlink(missing_ok=True)
    return written


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_leaderboard(records: Iterable[dict], out_dir: str | Path, reps: int = 2000, ci: float = 0.95, seed: int = 0) -> list[Path]:
    """Write the tables and plots of every tier present in ``records`` into ``out_dir``.

    Per tier: ``<tier>.md``, ``<tier>.csv`` and the plots (see the module docstring). Every
    file is written atomically (a temporary file in ``out_dir``, then renamed).

    Args:
        records: run records, e.g. ``load_records(results_dir)``.
        out_dir: folder for the files (created if needed).
        reps, ci, seed: settings of the aggregate's stratified bootstrap.

    Returns:
        The written paths: per tier the .md, the .csv, then the PNGs.

    Raises:
        UserError: no records, a malformed record, or mixed fingerprints in one cell.
    """
    records = list(records)
    if not records:
        raise UserError("no finished runs to put on the leaderboard (the results store is empty)")
    for rec in records:
        check_record(rec, _file(rec))
    out = Path(out_dir)
    tiers = {r["tier"] for r in records}
    written: list[Path] = []
    for tier in [t for t in TIER_ORDER if t in tiers] + sorted(tiers - set(TIER_ORDER)):
        board = build_tables(records, tier, reps=reps, ci=ci, seed=seed)
        plots = write_plots(board, out)
        text = format_markdown(board, plots) + "\n" + separation.format_markdown(separation.separations(board, separation.PAIRS + tuple(epsilon_pairs(board))))
        written.append(_write_text(out / f"{tier}.md", text.rstrip("\n") + "\n"))
        written.append(_write_text(out / f"{tier}.csv", format_csv(board)))
        written.extend(plots)
    return written
