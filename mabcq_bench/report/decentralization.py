"""What decentralization costs: a board's centralized reference against its decentralized runs.

A centralized run (one learner owning every joint, trained on the joint-action dataset of the same
transitions) is filed on the board named after the decentralized one with :data:`SUFFIX`
(``lite-v2-p3`` → ``lite-v2-p3-centralized``; the rule of
:func:`mabcq_bench.runs.plan.board_name`), so it is never ranked with the decentralized runs.
This module sets the two boards side by side without merging them: for every task and learner
(variant) with finished runs on both boards, the centralized mean final normalized score minus
the decentralized one, with the percentile interval of a bootstrap that resamples each setting's
seeds separately (:func:`~mabcq_bench.report.aggregate.bootstrap_mean_difference`), and the same
difference of the critic's end-of-training Q̂ (``values/q_mean``) and squared TD error
(``losses/q``), read as the regression gate reads them
(:func:`~mabcq_bench.report.regress.final_metrics`: each run's last logged interval, a
decentralized run's already the mean over its agents; the mean over seeds).

Each setting runs at its own budget (a one-agent learner with the joint action may plateau at
another number of updates), so the rows give both budgets; a pair whose two settings ran other
hyperparameters, overrides or protocols in anything else is not a difference of settings: it is
left out of the rows and named beside the table.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from mabcq_bench.report.aggregate import bootstrap_mean_difference
from mabcq_bench.report.regress import final_metrics
from mabcq_bench.report.tables import DASH

if TYPE_CHECKING:
    from mabcq_bench.report.tables import Leaderboard

#: What a centralized board's name adds to its decentralized board's.
SUFFIX = "-centralized"

#: The critic's diagnostics compared: (record metric, column of the Markdown table, csv column).
DIAGNOSTICS = (
    ("values/q_mean", "Q̂ C − D", "q_mean_difference"),
    ("losses/q", "TD error C − D", "td_error_difference"),
)

#: Columns of ``<board>.decentralization.csv``, one row per task and learner with runs in both settings.
CSV_COLUMNS = (
    "task",
    "variant",
    "n_centralized",
    "n_decentralized",
    "updates_centralized",
    "updates_decentralized",
    "centralized_mean",
    "decentralized_mean",
    "difference",
    "ci_low",
    "ci_high",
    *(column for _, _, column in DIAGNOSTICS),
)


@dataclass(frozen=True)
class Difference:
    """Centralized minus decentralized, for one learner on one task."""

    task: str
    variant: str
    n_centralized: int  # runs (seeds) of each setting
    n_decentralized: int
    centralized: float  # mean final normalized score over seeds
    decentralized: float
    difference: float  # centralized − decentralized, normalized points
    low: float  # percentile interval of the two-stratum bootstrap
    high: float
    diagnostics: tuple[float | None, ...]  # per DIAGNOSTICS: C − D of the end-of-training value; None without a critic
    updates: tuple[int, int]  # each setting's budget (updates per agent): centralized, decentralized


@dataclass(frozen=True)
class Comparison:
    """A decentralized board against its centralized reference."""

    decentralized: str  # board names
    centralized: str
    rows: tuple[Difference, ...]  # tasks in column order, learners in the decentralized ranking's order
    mismatched: tuple[tuple[str, str], ...]  # (task, variant) run with another config or protocol in each setting
    reps: int  # bootstrap settings (the decentralized board's)
    ci: float
    boot_seed: int


def _setup(recs: list[dict]) -> tuple:
    """What must agree between the settings for their difference to be the setting's alone: all
    but the budget, which each setting sets at its own plateau."""
    rec = recs[0]  # one cell's records share their fingerprint, hence all of this
    protocol = {k: v for k, v in (rec.get("protocol") or {}).items() if k != "updates"}
    return rec.get("config"), protocol, rec.get("overrides")


def _diagnostics(central: list[dict], decentral: list[dict]) -> tuple[float | None, ...]:
    c, d = final_metrics(central), final_metrics(decentral)
    return tuple(c[m] - d[m] if m in c and m in d else None for m, _, _ in DIAGNOSTICS)


def compare(decentralized: "Leaderboard", centralized: "Leaderboard") -> Comparison:
    """Centralized minus decentralized for every (task, variant) with runs on both boards.

    Args:
        decentralized: a decentralized board's table; its ``reps``, ``ci`` and ``boot_seed`` set
            the bootstrap (every pair is resampled with that seed, so the rows are a function of
            the records).
        centralized: the table of its centralized reference.

    Returns:
        The :class:`Comparison`; a learner with runs in one setting only has no row.
    """
    reference = {row.variant: row for row in centralized.rows}
    rows, mismatched = [], []
    for task in decentralized.tasks:
        for row in decentralized.rows:
            d = row.cells[task]
            c = reference[row.variant].cells.get(task) if row.variant in reference else None
            if d is None or c is None:
                continue
            central, decentral = centralized.runs[task, row.variant], decentralized.runs[task, row.variant]
            if _setup(central) != _setup(decentral):
                mismatched.append((task, row.variant))
                continue
            diff, low, high = bootstrap_mean_difference(c.scores, d.scores, reps=decentralized.reps, ci=decentralized.ci, seed=decentralized.boot_seed)
            updates = (int(central[0]["updates"]), int(decentral[0]["updates"]))
            rows.append(Difference(task, row.variant, c.n, d.n, c.mean, d.mean, diff, low, high, _diagnostics(central, decentral), updates))
    return Comparison(
        decentralized.tier, centralized.tier, tuple(rows), tuple(mismatched), decentralized.reps, decentralized.ci, decentralized.boot_seed
    )


def comparisons(boards: Mapping[str, "Leaderboard"]) -> dict[str, Comparison]:
    """The :class:`Comparison` of every board in ``boards`` whose centralized reference is there
    too, by the decentralized board's name."""
    return {name: compare(board, boards[name + SUFFIX]) for name, board in boards.items() if name + SUFFIX in boards}


def _number(x: float | None, digits: int = 4) -> str:
    return "" if x is None else repr(round(x, digits))


def _text(x: float | None) -> str:
    return DASH if x is None else f"{x:+.1f}"


def _table(comp: Comparison) -> list[str]:
    """Markdown lines of the table (or of why there is none), then the note on the pairs left out."""
    lines = [
        "| task | learner | centralized | decentralized | C − D [low, high] | seeds C / D | updates C / D | "
        + " | ".join(h for _, h, _ in DIAGNOSTICS)
        + " |",
        "|---|---|" + "---:|" * (5 + len(DIAGNOSTICS)),
    ]
    for r in comp.rows:
        cells = [
            r.task,
            r.variant.replace("|", "\\|"),
            f"{r.centralized:.1f}",
            f"{r.decentralized:.1f}",
            f"{r.difference:+.1f} [{r.low:+.1f}, {r.high:+.1f}]",
            f"{r.n_centralized} / {r.n_decentralized}",
            f"{r.updates[0]:,} / {r.updates[1]:,}",
            *(_text(x) for x in r.diagnostics),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if not comp.rows:
        lines = ["No learner has comparable finished runs in both settings on one task yet."]
    if comp.mismatched:
        pairs = ", ".join(f"{task} {variant}" for task, variant in comp.mismatched)
        lines += ["", f"Left out, their two settings ran other hyperparameters or another protocol: {pairs}."]
    return lines


def format_markdown(board: str, comps: Mapping[str, Comparison]) -> str:
    """The "what decentralization costs" section of ``<board>.md``: on a decentralized board with
    its centralized reference among the records, the table; on the reference's page, what the
    board is and a link to that table; "" on any other board."""
    base = board.removesuffix(SUFFIX)
    if board != base:
        where = (
            f"Centralized minus decentralized, per task and learner, is on that board's page: "
            f"[What decentralization costs]({base}.md#what-decentralization-costs)."
            if base in comps
            else "That board has no runs among these records, so there is nothing to set these runs against yet."
        )
        return "\n".join([
            "## What decentralization costs",
            "",
            f"This board is the centralized reference of `{base}`: one learner owning every joint, trained on the joint-action "
            f"dataset of the same transitions, so its scores are not those of a decentralized policy. {where}",
        ]) + "\n"
    comp = comps.get(board)
    if comp is None:
        return ""
    lines = [
        "## What decentralization costs",
        "",
        f"The same learners trained as one agent owning every joint, on the joint-action dataset of the same transitions "
        f"(the centralized reference, board [`{comp.centralized}`]({comp.centralized}.md)), against this board's decentralized runs. "
        "C − D is the centralized mean final normalized score minus the decentralized one: positive is what the agents lose by "
        "each learning from its own data alone, negative what they gain. These rows are not part of the ranking above.",
        "",
        f"- [low, high]: {comp.ci * 100:g}% percentile interval of a bootstrap that resamples each setting's seeds separately "
        f"({comp.reps} resamples, generator seed {comp.boot_seed}).",
        "- Q̂ and TD error: the critic's batch mean Q̂ (`values/q_mean`) and its squared TD error (`losses/q`) at the end of "
        f"training (the last logged interval; a decentralized run's is the mean over its agents), mean over seeds, centralized "
        f"minus decentralized (Q̂ in value units, the TD error in squared value units); {DASH} for a learner without a critic.",
        "",
    ]
    return "\n".join(lines + _table(comp)) + "\n"


def format_csv(comp: Comparison) -> str:
    """``<board>.decentralization.csv``: a row per task and learner with runs in both settings,
    in the table's order (columns :data:`CSV_COLUMNS`; ``ci_low``/``ci_high`` the interval of
    ``difference``; a diagnostic's column is empty for a learner without a critic). Numbers are
    rounded to 4 decimals."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in comp.rows:
        numbers = (r.centralized, r.decentralized, r.difference, r.low, r.high, *r.diagnostics)
        writer.writerow([r.task, r.variant, r.n_centralized, r.n_decentralized, *r.updates, *(_number(x) for x in numbers)])
    return buf.getvalue()
