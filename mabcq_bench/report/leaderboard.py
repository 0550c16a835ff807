"""The leaderboard: run records of a results store -> per-tier tables (Markdown, CSV) and plots.

:func:`write_leaderboard` writes, for every tier present, ``<tier>.md`` (the table of
:mod:`~mabcq_bench.report.tables`, the plots of :mod:`~mabcq_bench.report.plots`, the probability
of improvement of the compared pairs, :mod:`~mabcq_bench.report.improvement`, where the
algorithms separate over training, :mod:`~mabcq_bench.report.separation`, and where training
converges, :mod:`~mabcq_bench.report.budget`), ``<tier>.csv`` (a row per variant) and
``<tier>.long.csv`` (a row per variant and task; a dot, not a dash, so that it never takes the
name of another tier's csv: ``lite-long.csv`` is the ``lite-long`` tier's). A decentralized board
whose centralized reference is among the records gets what decentralization costs,
:mod:`~mabcq_bench.report.decentralization`: a section of its page and
``<tier>.decentralization.csv``; the reference's page links to that section.
The pairs are :data:`~mabcq_bench.report.separation.PAIRS` and the ε variants against ε = 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from mabcq_bench.errors import UserError
from mabcq_bench.report import budget, decentralization, improvement, separation
from mabcq_bench.report.plots import write_plots
from mabcq_bench.report.records import _file, check_record
from mabcq_bench.report.tables import EPSILON_ALGO, EPSILON_ZERO, Leaderboard, build_tables, format_csv, format_long_csv, format_markdown
from mabcq_bench.util import atomic_path, ensure_writable


#: Order in which tiers are written (others follow by name).
TIER_ORDER = ("smoke", "lite", "paper")


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


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_leaderboard(records: Iterable[dict], out_dir: str | Path, reps: int = 2000, ci: float = 0.95, seed: int = 0) -> list[Path]:
    """Write the tables and plots of every tier present in ``records`` into ``out_dir``.

    Per tier: ``<tier>.md``, ``<tier>.csv``, ``<tier>.long.csv``, ``<tier>.decentralization.csv`` where
    the tier has a centralized reference with runs of a learner it has too, and the plots (see the
    module docstring). Every file is written atomically (a temporary file in ``out_dir``, then
    renamed); an optional file with nothing to show is not written, and an old copy is removed.

    Args:
        records: run records, e.g. ``load_records(results_dir)``.
        out_dir: folder for the files (created if needed).
        reps, ci, seed: settings of the aggregate's stratified bootstrap.

    Returns:
        The written paths: per tier the .md, the .csv, the .long.csv, the .decentralization.csv
        (where written), then the PNGs.

    Raises:
        UserError: no records, a malformed record, mixed fingerprints in one cell, or an
            ``out_dir`` that cannot be written.
    """
    records = list(records)
    if not records:
        raise UserError("no finished runs to put on the leaderboard (the results store is empty)")
    for rec in records:
        check_record(rec, _file(rec))
    tiers = {r["tier"] for r in records}
    order = [t for t in TIER_ORDER if t in tiers] + sorted(tiers - set(TIER_ORDER))
    boards = {tier: build_tables(records, tier, reps=reps, ci=ci, seed=seed) for tier in order}  # every refusal before any file
    costs = decentralization.comparisons(boards)  # each board's table stays its own: the reference is only set beside it
    out = Path(out_dir)
    ensure_writable(out, "leaderboard folder")
    written: list[Path] = []
    for tier, board in boards.items():
        plots = write_plots(board, out)
        pairs = separation.PAIRS + tuple(epsilon_pairs(board))
        sections = [
            format_markdown(board, plots),
            decentralization.format_markdown(tier, costs),
            improvement.format_markdown(improvement.improvements(board, pairs), board),
            separation.format_markdown(separation.separations(board, pairs)),
            budget.format_markdown(budget.plateaus(board)),
            budget.format_spreads(budget.spreads(board)),
            budget.format_costs(board),
        ]
        text = "\n".join(s for s in sections if s)
        written.append(_write_text(out / f"{tier}.md", text.rstrip("\n") + "\n"))
        written.append(_write_text(out / f"{tier}.csv", format_csv(board)))
        written.append(_write_text(out / f"{tier}.long.csv", format_long_csv(board)))
        cost_csv = out / f"{tier}.decentralization.csv"
        if tier in costs and costs[tier].rows:
            written.append(_write_text(cost_csv, decentralization.format_csv(costs[tier])))
        else:
            cost_csv.unlink(missing_ok=True)  # an old one, from a store that had the reference, would mislead
        written.extend(plots)
    return written
