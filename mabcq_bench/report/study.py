"""Learners' own budgets from the budget study: per task and learner, where its longest run converged.

The budget study (docs/protocol.md, "The budget study") runs every learner far longer than its
tier on the tier's datasets, on boards of different lengths (:data:`STUDIES`). For each (task,
learner) this module takes the :class:`~mabcq_bench.report.budget.Plateau` of the longest study
board that has the cell (most updates; ties: more runs, then the first in the study's order). Every
seed measured counts too: a seed that only shorter boards ran is judged alone, on its own longest
run, and where it needs a later budget than the longest board's (or has not stopped moving by the
end of its run), it decides; a late climb on a second seed outweighs a first seed that settled
early. (Pooling it with the longest board's runs cut to its length would not do: a cut run leaves
too little of its plateau to be seen.)
It proposes as its budget:

- the first budget from which both the score and Q̂ have stopped moving (``Plateau.budget``),
  rounded up to the target tier's evaluation grid (its ``eval_every``), so that the evaluations
  the score is taken from fall on the budget;
- never fewer than the evaluations the target's score needs at the end of a run (protocol 3's
  ``final_checkpoints``, and the ``score_window`` mean), so that they exist;
- where the two have not stopped within the board's run: its last evaluation point, the longest
  budget measured, flagged as not plateaued.

Variants made with ``--set`` are not budgeted (the budget is the learner's), nor learners that
train nothing (the reference rows: the caller leaves them out). An ablation without a study cell
of its own follows the algorithm it ablates (``AlgoSpec.ablation_of``), and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from mabcq_bench.report.budget import Plateau, plateau
from mabcq_bench.report.records import group_runs, ordered_tasks
from mabcq_bench.util import NOT_PLATEAUED

#: The boards of each tier's budget study. Lite's ran on version 1 of its datasets: the same
#: transitions as lite's version 2, whose reference returns (and so normalized scores) differ.
STUDIES: dict[str, tuple[str, ...]] = {"lite": ("plateau60-v1-p2", "plateau120-v1-p2", "plateau200-v1-p2")}


@dataclass(frozen=True)
class Proposal:
    """One (task, learner)'s budget, from the study (updates per agent)."""

    task: str
    learner: str
    budget: int  # the proposed updates: on the target's evaluation grid, at least its last evaluations
    board: str  # the study board it comes from (the longest that has the cell, or the board of the seed that decides)
    runs: int  # the runs it is judged on
    measured: int  # the cell's last evaluation point: the longest budget measured
    score_from: int | None  # where the score stops moving (None: not within ``measured``)
    q_from: int | None  # where Q̂ stops moving (None: not within ``measured``, or no Q̂)
    has_q: bool  # whether the learner has a Q̂ (without one the score alone decides)
    follows: str = ""  # the algorithm whose cell this is, for an ablation the study did not run
    seed: int | None = None  # the seed that decides, judged alone, where one the longest board lacks settles later

    @property
    def both_from(self) -> int | None:
        """Where the score and Q̂ have both stopped moving; None where not within ``measured``."""
        if self.score_from is None or (self.has_q and self.q_from is None):
            return None
        return max(self.score_from, self.q_from or 0)

    @property
    def plateaued(self) -> bool:
        return self.both_from is not None


def _on_grid(updates: int, every: int) -> int:
    """``updates`` rounded up to a multiple of ``every``."""
    return -(-updates // every) * every


def propose(
    records: Iterable[dict], boards: Sequence[str], learners: Sequence[str], eval_every: Mapping[str, int], last_points: int,
    ablations: Mapping[str, str] | None = None,
) -> list[Proposal]:  # fmt: skip
    """Every (task, learner)'s budget from the study's records.

    Args:
        records: run records of any boards; those of ``boards`` are read.
        boards: the study's boards (:data:`STUDIES`).
        learners: the algorithms to budget, in the order to list them (those that train).
        eval_every: the target tier's evaluation interval per task: the tasks to budget.
        last_points: evaluations the target's score needs at the end of a run; no budget is
            below ``last_points × eval_every``.
        ablations: ablation -> the algorithm it ablates, whose budget it follows where the study
            has no cell of its own.

    Returns:
        The proposals, tasks in column order, learners in ``learners`` order; a (task, learner)
        the study has no cell of (nor, for an ablation, of what it ablates) has none.
    """
    records = list(records)
    cells: dict[tuple[str, str], list[tuple[str, list[dict]]]] = {}
    for board in boards:
        for (task, variant), recs in group_runs(records, board).items():
            if variant != recs[0]["algo"] or variant not in learners or task not in eval_every:
                continue  # a --set variant, a learner not budgeted, a task of no interest
            cells.setdefault((task, variant), []).append((board, recs))
    decided = {cell: found for cell, runs in cells.items() if (found := _decide(runs)) is not None}
    out = []
    for task in ordered_tasks(eval_every):
        every = max(1, eval_every[task])
        for learner in learners:
            follows = ""
            if (task, learner) not in decided and (ablations or {}).get(learner) in learners:
                follows = ablations[learner]
            found = decided.get((task, follows or learner))
            if found is None:
                continue
            board, p, seed = found
            budget = max(_on_grid(_needed(p), every), last_points * every)
            out.append(Proposal(task, learner, budget, board, p.runs, p.last, p.score_from, p.q_from, p.q_move is not None, follows, seed))
    return out


def _needed(p: Plateau) -> int:
    """What one judgement asks for: where score and Q̂ stop moving, else all it measured."""
    return p.last if p.budget is None else p.budget


def _decide(runs: Sequence[tuple[str, list[dict]]]) -> tuple[str, Plateau, int | None] | None:
    """One cell's judgement from its runs on each study board: (board, plateau, the seed that
    decides alone or None); None when no board has curves enough to judge."""
    judged = [(board, p, recs) for board, recs in runs if (p := plateau(recs, recs[0]["task"], recs[0]["algo"])) is not None]
    if not judged:
        return None
    board, best, recs = max(judged, key=lambda j: (j[1].last, j[1].runs))  # max keeps the first of equals: the study's order
    decided: tuple[str, Plateau, int | None] = (board, best, None)
    have = {rec["seed"] for rec in recs}
    lone: dict[int, tuple[str, dict]] = {}  # each seed the longest board lacks: its longest run
    for name, cell in runs:
        for rec in cell:
            if rec["seed"] not in have and (rec["seed"] not in lone or rec["updates"] > lone[rec["seed"]][1]["updates"]):
                lone[rec["seed"]] = (name, rec)
    for seed, (name, rec) in sorted(lone.items()):
        p = plateau([rec], rec["task"], rec["algo"])
        if p is not None and _needed(p) > _needed(decided[1]):
            decided = (name, p, seed)
    return decided


def unstudied(proposals: Sequence[Proposal], tasks: Iterable[str], learners: Sequence[str]) -> dict[str, list[str]]:
    """Per task, the learners without a proposal (the study has not run them there yet)."""
    have = {(p.task, p.learner) for p in proposals}
    missing = {task: [a for a in learners if (task, a) not in have] for task in ordered_tasks(tasks)}
    return {task: names for task, names in missing.items() if names}


def _source(p: Proposal, follows: bool = True) -> str:
    """Where one proposal comes from, in a few words (with ``follows``: whose cell it is)."""
    runs = f"{p.runs} run{'' if p.runs == 1 else 's'}" if p.seed is None else f"its seed {p.seed} alone, which the longest board lacks"
    longest = "the longest measured" if p.seed is None else "the end of its run"
    limit = "" if p.plateaued else f"; not within {p.measured:,}, {longest}"
    whose = f"as {p.follows} (not studied itself) " if p.follows and follows else ""
    return f"{p.task} {whose}from {p.board} ({runs}{limit})"


def budget_tables(proposals: Sequence[Proposal], learners: Sequence[str] = ()) -> tuple[dict[str, dict[str, int | list[str]]], dict[str, str]]:
    """The proposals as a tier's ``[protocol.budgets.<algo>]`` tables (a key per task, and
    ``not_plateaued`` listing the tasks whose budget is the longest measured without a plateau;
    learners in ``learners`` order, the others after them) and each table's note: which board
    (and how many runs) each task's budget comes from."""
    tables: dict[str, dict[str, int | list[str]]] = {}
    mine: dict[str, list[Proposal]] = {}
    rank = {name: i for i, name in enumerate(learners)}
    for p in sorted(proposals, key=lambda p: rank.get(p.learner, len(rank))):  # stable: tasks stay in order
        tables.setdefault(p.learner, {})[p.task] = p.budget
        mine.setdefault(p.learner, []).append(p)
    for learner, ps in mine.items():
        if still := [p.task for p in ps if not p.plateaued]:
            tables[learner][NOT_PLATEAUED] = still
    notes = {}
    for learner, ps in mine.items():
        follows = {p.follows for p in ps}
        whole = f", as {ps[0].follows} (not studied itself)" if len(follows) == 1 and ps[0].follows else ""
        notes[learner] = f"budget study{whole}: " + "; ".join(_source(p, follows=not whole) for p in ps)
    return tables, notes


def disagreements(budgets: Mapping[str, Mapping[str, int]], proposals: Sequence[Proposal], tasks: Iterable[str]) -> list[str]:
    """Where a tier's ``[protocol.budgets.<algo>]`` tables differ from the study's proposals, one
    line each: a task's key against that task's proposal, ``updates`` against every other task's."""
    proposed = {(p.task, p.learner): p for p in proposals}
    out = []
    for learner, table in budgets.items():
        for task in ordered_tasks(tasks):
            key = task if task in table else "updates"
            if key not in table:
                continue
            p = proposed.get((task, learner))
            if p is None:
                out.append(f"protocol.budgets.{learner}.{key} = {table[key]} on {task}: the study has no cell of {learner} on {task}")
            elif p.budget != table[key]:
                out.append(f"protocol.budgets.{learner}.{key} = {table[key]} on {task}: the study proposes {p.budget} ({_source(p)})")
            elif (key in table.get(NOT_PLATEAUED, [])) == p.plateaued:
                said = "lists" if p.plateaued else "does not list"
                out.append(f"protocol.budgets.{learner}.{NOT_PLATEAUED} {said} {key} on {task}: the study {'saw' if p.plateaued else 'did not see'} it plateau ({_source(p)})")
    return out


def format_proposals(proposals: Sequence[Proposal], missing: Mapping[str, Sequence[str]] | None = None) -> str:
    """The proposals as a text table: task, learner, budget, its board and runs, where the score
    and Q̂ stop moving, and whether the learner plateaued; then the learners not studied yet."""

    def at(u: int | None, measured: int) -> str:
        return f"{u:,}" if u is not None else f"not within {measured:,}"

    rows = [("task", "learner", "budget", "from board", "runs", "score from", "Q̂ from", "plateaued")]
    for p in proposals:
        state = "yes" if p.plateaued else f"not within {p.measured:,} ({'longest measured' if p.seed is None else 'the end of its run'})"
        if p.seed is not None:
            state += f"; its seed {p.seed} alone, which the longest board lacks"
        rows.append(
            (
                p.task, p.learner, f"{p.budget:,}", p.board, str(p.runs), at(p.score_from, p.measured),
                at(p.q_from, p.measured) if p.has_q else "– (no Q̂)", state + (f"; as {p.follows}, not studied itself" if p.follows else ""),
            )
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    for task, names in (missing or {}).items():
        lines.append(f"not studied yet on {task}: {', '.join(names)}")
    return "\n".join(lines)
