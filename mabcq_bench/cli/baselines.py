"""``mabcq-bench baselines``: the protocol files of the tiers, and the learner budgets a tier's
budget study proposes for its file."""

from __future__ import annotations

import click

from mabcq_bench.cli.app import main
from mabcq_bench.errors import UserError


@main.command("baselines")
@click.option("--preset", default=None, help="Show one protocol file: a tier (see the list) or a path to a .toml. With --budgets-from: the tier whose budgets to propose [default: lite].")
@click.option("--write", is_flag=True, help="Regenerate baselines/<tier>.toml from the algorithm registry's defaults (every shipped tier, or the one --preset names).")
@click.option(
    "--budgets-from", "budgets_from", default=None, metavar="RECORDS",
    help="Print the learners' own budgets that the budget study's records in this folder (e.g. leaderboard/records) propose "
    "for the --preset tier: a table per task and learner, then the [protocol.budgets.<algo>] tables for its file, each "
    "commented with the boards it comes from. Writes nothing.",
)  # fmt: skip
def baselines_cmd(preset: str | None, write: bool, budgets_from: str | None) -> None:
    """List the protocol files (run protocol and every algorithm's hyperparameters, one per tier),
    show one with --preset, regenerate the shipped ones with --write, or propose a tier's learner
    budgets from its budget study's records with --budgets-from."""
    from mabcq_bench.runs.protocol import BASELINES_DIR, DEFAULT_PROTOCOLS, protocol_list, protocol_text
    from mabcq_bench.util import atomic_path, read_tier_file

    if budgets_from is not None:
        if write:
            raise click.BadOptionUsage("budgets_from", "--budgets-from prints proposed budgets and writes nothing; run --write on its own")
        return _proposed_budgets(budgets_from, preset or "lite")
    if write:
        if preset is not None and preset not in DEFAULT_PROTOCOLS:
            raise UserError(f"--write regenerates the shipped tiers ({', '.join(DEFAULT_PROTOCOLS)}); {preset!r} is not one")
        for tier, (proto, note, datasets, budget_notes) in DEFAULT_PROTOCOLS.items():
            if preset in (None, tier):
                path = BASELINES_DIR / f"{tier}.toml"
                with atomic_path(path) as tmp:
                    tmp.write_text(protocol_text(tier, proto, note, datasets, budget_notes))
                click.echo(f"wrote {path}")
    elif preset is not None:
        path, _ = read_tier_file(preset, BASELINES_DIR, "protocol")
        click.echo(f"# --- {path}\n{path.read_text()}", nl=False)
    else:
        click.echo(protocol_list())
        click.echo("\nshow one: mabcq-bench baselines --preset <tier>; run one: mabcq-bench run --preset <tier or path to a copy>")


def _learners() -> list[str]:
    """The learners a budget study budgets: every algorithm that trains (the reference rows train nothing)."""
    from mabcq_bench.algos import ALGOS

    return [a.name for a in ALGOS.values() if getattr(a.learner, "trains", True)]


def _study_boards(protocol) -> tuple[str, ...]:
    """The boards of ``protocol``'s tier's budget study (:data:`mabcq_bench.report.study.STUDIES`).

    Raises:
        UserError: the tier has none.
    """
    from mabcq_bench.report.study import STUDIES

    if protocol.tier not in STUDIES:
        studied = "; ".join(f"{t} ({', '.join(b)})" for t, b in STUDIES.items())
        raise UserError(f"tier {protocol.tier} has no budget study to read budgets from; tiers with one: {studied}")
    return STUDIES[protocol.tier]


def _last_points(protocol) -> int:
    """The evaluations a run's score needs at its end: protocol 3's ``final_checkpoints`` and the ``score_window`` mean."""
    return max(protocol.protocol.get("final_checkpoints", 1), protocol.protocol["score_window"])


def study_proposals(protocol, records):
    """Every (task, learner)'s budget that ``protocol``'s tier's budget study proposes from
    ``records`` (:func:`mabcq_bench.report.study.propose`): on the tier's evaluation grid, at
    least its :func:`_last_points` evaluations, ablations following what they ablate where not
    studied themselves.

    Raises:
        UserError: the tier has no budget study.
    """
    from mabcq_bench.algos import ALGOS
    from mabcq_bench.data.tasks import TASKS
    from mabcq_bench.report import study

    eval_every = {task: protocol.for_task(task)["eval_every"] for task in TASKS}
    ablations = {a.name: a.ablation_of for a in ALGOS.values() if a.ablation_of}
    return study.propose(records, _study_boards(protocol), _learners(), eval_every, _last_points(protocol), ablations)


def _proposed_budgets(folder_name: str, preset: str) -> None:
    """``baselines --budgets-from``: the study's proposals for ``preset`` (:mod:`mabcq_bench.report.study`)."""
    from pathlib import Path

    from mabcq_bench.data.tasks import TASKS
    from mabcq_bench.report import study
    from mabcq_bench.report.records import load_records
    from mabcq_bench.runs.protocol import BASELINES_DIR, DEFAULT_PROTOCOLS, budget_text, load_protocol

    protocol = load_protocol(preset)
    boards = _study_boards(protocol)
    folder = Path(folder_name)
    if not folder.is_dir():
        raise UserError(f"--budgets-from {folder} is not a folder of run records (<board>/<task>/<variant>/seed<k>.json)")
    proposals = study_proposals(protocol, load_records(folder))
    if not proposals:
        raise UserError(f"--budgets-from {folder} holds no records of {protocol.tier}'s budget study (boards {', '.join(boards)})")
    grids = sorted({protocol.for_task(task)["eval_every"] for task in TASKS})
    grid = f"{grids[0]:,}" if len(grids) == 1 else "its per-task eval_every"
    learners = _learners()
    click.echo(
        f"{protocol.tier}'s learner budgets from the budget study in {folder} ({', '.join(boards)}). Per task and learner, the longest "
        f"board with its runs (ties: more runs): where the score and Q̂ have both stopped moving, rounded up to {protocol.tier}'s "
        f"evaluation grid ({grid}), at least its last {_last_points(protocol)} evaluations; where they have not within that board's "
        f"run, its last evaluation (the longest measured). Variants made with --set and the reference rows are not budgeted.\n"
    )
    click.echo(study.format_proposals(proposals, study.unstudied(proposals, TASKS, learners)))
    tables, notes = study.budget_tables(proposals, learners)
    click.echo(f"\n# [protocol.budgets.<algo>] tables for {protocol.path}:")
    click.echo("\n".join(budget_text(tables, notes)))
    shipped = protocol.protocol.get("budgets", {})
    differ = study.disagreements(shipped, proposals, TASKS)
    now = "sets no learner budgets" if not shipped else ("agrees with the study" if not differ else "differs: " + "; ".join(differ))
    if protocol.tier in DEFAULT_PROTOCOLS and protocol.path == BASELINES_DIR / f"{protocol.tier}.toml":
        how = f"budgets= and budget_notes= of DEFAULT_PROTOCOLS[{protocol.tier!r}] in mabcq_bench/runs/protocol.py, then `mabcq-bench baselines --write`"
    else:
        how = f"paste the tables into {protocol.path}"
    click.echo(f"\nnothing written. {protocol.path} {now}. To set them: {how}.")
