"""Tables of one tier: a row per variant (an algorithm plus its overrides), a column per task.

Per task "mean ± std (n)" of the final normalized score over seeds, the aggregate "IQM [low,
high]" over all runs of all tasks (stratified bootstrap, see
:func:`mabcq_bench.report.aggregate.stratified_bootstrap_iqm`) and the coordination diagnostic;
rows by aggregate IQM, best first. As plain text (a terminal), Markdown and CSV (with numeric
columns; and in long form, a row per variant and task). A table cell only ever pools runs of one configuration: records of the same (tier,
task, variant) with different ``config_fingerprint`` are an error, never averaged together.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mabcq_bench.errors import UserError
from mabcq_bench.report.aggregate import bootstrap_mean, mean_std, stratified_bootstrap_iqm
from mabcq_bench.report.records import _optional_number, group_runs, ordered_tasks


#: The algorithm whose ε sweeps make the ε plot.
EPSILON_ALGO = "mabcq"


EPSILON_ZERO = "mabcq-no-vd"  # ε = 0 of the ε sweep


#: Shown in a table cell without runs, and as the coordination gap of algorithms without a Q.
DASH = "–"


#: After a cell whose runs ran the longest budget the study measured, the learner still moving there.
NOT_PLATEAUED_MARK = "†"

#: What the mark means, for a page's or a README's notes.
NOT_PLATEAUED_NOTE = (
    f"`{NOT_PLATEAUED_MARK}`: the learner's score or Q̂ had not stopped moving at the longest budget the budget study "
    "measured for it on that task; its runs train that budget."
)


#: After a cell whose runs trained on a GPU (their records' ``device``; a cell's runs share one).
GPU_MARK = "‡"

#: What that mark means.
GPU_NOTE = (
    f"`{GPU_MARK}`: its runs trained on a GPU (`run --device cuda`), the same maths in other rounding; every run of a "
    "cell trains on one device (a run's device is part of its fingerprint)."
)


AGGREGATE_HEADER = "IQM [low, high]"


GAP_HEADER = "coord. gap"


@dataclass(frozen=True)
class Cell:
    """The runs of one variant on one task."""

    scores: np.ndarray  # (n,) final normalized score of each run, by seed
    seeds: tuple[int, ...]
    mean: float
    std: float  # sample std over seeds, 0.0 for one run
    gap: float | None  # mean final coordination gap over the runs that have one (value units)
    fingerprint: str
    windows: np.ndarray | None = None  # (n,) each run's mean of its last score_window curve scores; None before protocol 2
    plateaued: bool = True  # False: its runs' budget is the longest measured, the learner still moving there
    device: str = "cpu"  # where its runs trained (records from before they said: the CPU, as every such run did)

    @property
    def n(self) -> int:
        return int(self.scores.size)

    def __str__(self) -> str:
        marks = ("" if self.plateaued else NOT_PLATEAUED_MARK) + ("" if self.device == "cpu" else GPU_MARK)
        return f"{self.mean:.1f} ± {self.std:.1f} ({self.n})" + (f" {marks}" if marks else "")


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
        gap = DASH if self.gap is None else f"{self.gap:,.2f}" + partial
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
    has_window = all(isinstance(r.get("window"), dict) for r in recs)
    return Cell(
        scores=scores,
        seeds=tuple(r["seed"] for r in recs),
        mean=mean,
        std=std,
        gap=float(gaps.mean()) if gaps.size else None,
        fingerprint=recs[0]["config_fingerprint"],
        windows=np.array([r["window"]["normalized_score"] for r in recs], dtype=np.float64) if has_window else None,
        plateaued=all(r.get("budget", {}).get("plateaued", True) for r in recs),
        device=str(recs[0].get("device", "cpu")),
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


def markdown_table(board: Leaderboard) -> list[str]:
    """The board's main table as Markdown lines (header, alignment row, a row per variant): the
    table of ``<tier>.md``, and the one :mod:`~mabcq_bench.report.readme` copies into a README."""
    header, body = _columns(board)
    return [
        "| " + " | ".join(_md_escape(h) for h in header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        *("| " + " | ".join(_md_escape(c) for c in b) + " |" for b in body),
    ]


def format_markdown(board: Leaderboard, plots: Sequence[Path] = ()) -> str:
    """``<tier>.md``: a short header saying what the numbers are, the table, links to the plots."""
    seeds = ", ".join(str(s) for s in board.seeds)
    lines = [
        f"# mabcq-bench leaderboard: tier `{board.tier}`",
        "",
        f"Final normalized score of the {'centralized' if board.tier.endswith('-centralized') else 'joint decentralized'} policy "
        "(0 = random policy, 100 = the expert that made "
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
    if not all_plateaued(board):
        lines.append(f"- {NOT_PLATEAUED_NOTE}")
    if any_gpu(board):
        lines.append(f"- {GPU_NOTE}")
    lines += ["", *markdown_table(board)]
    lines += _window_table(board)
    if plots:
        lines += ["", *(f"![{p.stem}]({p.name})" for p in plots)]
    return "\n".join(lines) + "\n"


def all_plateaued(board: Leaderboard) -> bool:
    """Whether every cell's runs trained a budget where the study saw their learner plateau."""
    return all(c.plateaued for r in board.rows for c in r.cells.values() if c is not None)


def any_gpu(board: Leaderboard) -> bool:
    """Whether some cell's runs trained on a GPU."""
    return any(c.device != "cpu" for r in board.rows for c in r.cells.values() if c is not None)


def _window_table(board: Leaderboard) -> list[str]:
    """Markdown lines of the score-window table (protocol 2 records), or none."""
    cells = [c for r in board.rows for c in r.cells.values() if c is not None]
    if not cells or any(c.windows is None for c in cells):
        return []
    sizes = sorted({int(r["window"]["evaluations"]) for recs in board.runs.values() for r in recs})
    episodes = sorted({int(r["final"]["episodes"]) for recs in board.runs.values() for r in recs})
    lines = [
        "",
        f"The scores above are each run's final evaluation ({' or '.join(map(str, episodes))} episodes on evaluation seeds of "
        f"its own). Beside them, the mean of each run's last {' or '.join(map(str, sizes))} learning-curve evaluations "
        "(mean ± std over seeds): where the two differ by more than the spread, the final score is a lucky or unlucky point.",
        "",
        "| variant | " + " | ".join(board.tasks) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(board.tasks)) + "|",
    ]
    for row in board.rows:
        texts = []
        for task in board.tasks:
            c = row.cells[task]
            texts.append(DASH if c is None else "{:.1f} ± {:.1f}".format(*mean_std(c.windows)))
        lines.append(f"| {_md_escape(row.variant)} | " + " | ".join(texts) + " |")
    return lines


def format_csv(board: Leaderboard) -> str:
    """``<tier>.csv``: the table's display cells, then the same numbers as numeric columns
    (``<task>_mean``, ``<task>_std``, ``<task>_n``, ``<task>_window`` (the mean of the runs'
    score-window means, protocol 2), ``iqm``, ``iqm_low``, ``iqm_high``, ``coordination_gap``;
    empty where there is no value), one row per variant."""
    header, body = _columns(board)
    numeric = [f"{t}_{k}" for t in board.tasks for k in ("mean", "std", "n", "window")] + ["iqm", "iqm_low", "iqm_high", "coordination_gap"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header + numeric)
    for row, texts in zip(board.rows, body):
        values: list[Any] = []
        for task in board.tasks:
            c = row.cells[task]
            window = "" if c is None or c.windows is None else repr(round(float(c.windows.mean()), 4))
            values += ["", "", 0, ""] if c is None else [repr(round(c.mean, 4)), repr(round(c.std, 4)), c.n, window]
        values += [repr(round(x, 4)) for x in (row.iqm, row.low, row.high)] + ["" if row.gap is None else repr(round(row.gap, 4))]
        writer.writerow(texts + values)
    return buf.getvalue()


#: Columns of ``<board>.long.csv``, one row per variant and task with runs.
LONG_COLUMNS = ("variant", "task", "n", "mean", "std", "ci_low", "ci_high", "window_mean")


def format_long_csv(board: Leaderboard) -> str:
    """``<board>.long.csv``: the table in long form, one row per (variant, task) with runs, rows in
    table order (best variant first), tasks in column order; for pandas and R.

    Columns (:data:`LONG_COLUMNS`): ``n`` runs; ``mean`` and ``std`` (sample std, 0.0 for one run)
    of the final normalized score over seeds, as in the table's cells; ``ci_low``/``ci_high`` the
    bootstrap percentile interval of that mean with the table's settings (``board.ci``,
    ``board.reps`` resamples of the task's seeds, generator seed ``board.boot_seed``: see
    :func:`~mabcq_bench.report.aggregate.bootstrap_mean`); ``window_mean`` the mean of the runs'
    score-window means (protocol 2; empty before). Numbers are rounded to 4 decimals."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LONG_COLUMNS)
    for row in board.rows:
        for task in board.tasks:
            c = row.cells[task]
            if c is None:
                continue
            _, low, high = bootstrap_mean(c.scores, reps=board.reps, ci=board.ci, seed=board.boot_seed)
            window = "" if c.windows is None else repr(round(float(c.windows.mean()), 4))
            writer.writerow([row.variant, task, c.n, *(repr(round(x, 4)) for x in (c.mean, c.std, low, high)), window])
    return buf.getvalue()


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
