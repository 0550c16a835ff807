"""Commands of runs and reports: the scoring harness, leaderboards, the regression gate, protocol files."""

from __future__ import annotations

import click

from mabcq_bench.cli.app import _ENV_HELP, _check_folder, main
from mabcq_bench.errors import UserError


_ALGO_HELP = "Algorithm name, a comma-separated list, or 'all' (their hyperparameters: `mabcq-bench baselines --preset lite`: mabcq, its ablations mabcq-no-tn, mabcq-no-vd, bcq; the baselines ddpg, td3bc, iql, cql, omar, bc, behavior; the reference rows zero-action, random)."


def _seeds(text: str) -> list[int]:
    """``3`` means seeds 0, 1, 2; ``0,4,7`` lists them."""
    try:
        if "," in text:
            seeds = sorted({int(x) for x in text.split(",") if x.strip()})
            if not seeds:  # only commas
                raise ValueError(text)
            return seeds
        count = int(text)
    except ValueError:
        raise UserError(f"--seeds takes a count (3) or a list (0,4,7), got {text!r}") from None
    if count < 1:
        raise UserError(f"--seeds must be at least 1, got {count}")
    return list(range(count))


def _specs(env, algo, seeds, preset, overrides, stack_agents=None, setting="decentralized", stack_seeds=None):
    """The sweep's runs and its protocol, every name checked; says which overrides it drops."""
    from mabcq_bench.algos import resolve_algos
    from mabcq_bench.runs.plan import RunSpec, parse_overrides
    from mabcq_bench.runs.protocol import load_protocol
    from mabcq_bench.data.tasks import resolve_tasks

    tasks = resolve_tasks(env)
    algos = resolve_algos(algo, setting)
    protocol = load_protocol(preset)
    extra = parse_overrides(overrides)
    per_algo = {}
    for a in algos:  # an override that changes nothing for an algorithm is not applied to it
        dead = a.inert(dict(extra))
        if dead:
            click.echo(f"--set {', '.join(dead)} does not change {a.name}: its runs are made without {'it' if len(dead) == 1 else 'them'}")
        per_algo[a.name] = tuple((k, v) for k, v in extra if k not in dead)
    unstacked = [a.name for a in algos if not a.stacks]
    if stack_agents and unstacked:
        click.echo(f"--stack-agents: {', '.join(unstacked)} cannot stack; {'its' if len(unstacked) == 1 else 'their'} agents update one after the other")
    if stack_seeds and unstacked:
        click.echo(f"--stack-seeds: {', '.join(unstacked)} cannot stack; {'its' if len(unstacked) == 1 else 'their'} seeds run one by one")
    return [RunSpec(protocol.tier, t.name, a.name, s, per_algo[a.name], setting) for t in tasks for a in algos for s in seeds], protocol


def _sweep(
    env, algo, seeds, preset, results, workers, overrides, progress, executor="local", address=None, device="cpu", stack_agents=None, cuda_graph=None,
    setting="decentralized", stack_seeds=None,
):  # fmt: skip
    from pathlib import Path

    from mabcq_bench.runs.plan import prepare
    from mabcq_bench.runs.sweep import default_workers, run_sweep
    from mabcq_bench.util import check_device

    _check_folder(Path(results), "--results")
    check_device(device, here=not (executor == "ray" and address))  # a cluster's GPUs are checked there
    specs, protocol = _specs(env, algo, seeds, preset, overrides, stack_agents, setting, stack_seeds)
    runs = prepare(specs, protocol, protocol.datasets, device=device, stack_agents=stack_agents, cuda_graph=cuda_graph, stack_seeds=stack_seeds)
    result = run_sweep(runs, Path(results), workers or default_workers(), progress=progress, log=click.echo, executor=executor, address=address)
    return result, protocol


@main.command("run")
@click.option("--algo", default="all", show_default=True, help=_ALGO_HELP)
@click.option("--env", "env", default="hopper", show_default=True, help=_ENV_HELP)
@click.option("--seeds", default="5", show_default=True, help="Number of seeds (5 = 0,1,2,3,4) or a list (0,4,7).")
@click.option("--preset", default="lite", show_default=True, help="Tier (baselines/<tier>.toml: protocol and hyperparameters; `mabcq-bench baselines` lists them) or a path to a protocol .toml of your own; it trains on the datasets its datasets = \"<tier>\" key names (default: its own tier's).")
@click.option(
    "--setting", type=click.Choice(["decentralized", "centralized"]), default="decentralized", show_default=True,
    help="decentralized: one learner per agent, each on its own dataset (the benchmark). centralized: the reference of what "
    "decentralization costs, one learner owning every joint, trained on the joint-action dataset (the same transitions, "
    "made by make-data) under the same protocol and normalization; single-agent learners only (bc, behavior, bcq, ddpg, td3bc, "
    "iql, cql). Its records are filed apart (board <tier>-...-centralized), never ranked with the decentralized ones.",
)  # fmt: skip
@click.option("--results", default="runs", show_default=True, help="Results store: one record per (tier, task, algorithm, seed).")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Parallel runs (default: all cores).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a hyperparameter, e.g. --set epsilon=0.4 (part of the run's name).")
@click.option("--progress/--no-progress", default=True, help="Progress bar with ETA on a terminal; otherwise (a log file, a 0-column terminal, or --no-progress) a line per finished run and one a minute (runs and updates done, ETA).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="local: a process pool here; ray: one Ray task per run.")
@click.option("--address", default=None, help="With --executor ray: the cluster (e.g. auto, or ray://head:10001); default: a local Ray.")
@click.option("--device", default="cpu", show_default=True, help="Torch device of the learners (cuda asks Ray for one GPU per run).")
@click.option(
    "--stack-agents/--no-stack-agents", default=None,
    help="Update all agents of a run as one batched computation (same maths per agent), for the algorithms that support it "
    "(mabcq, its ablations, bcq); the others update agent by agent. [default: on with a cuda device, off on the CPU]",
)  # fmt: skip
@click.option(
    "--stack-seeds/--no-stack-seeds", default=None,
    help="Train the seeds of each (task, algorithm) together: every agent of every seed one group of a single batched update "
    "(each keeps its own data, parameters, random streams, checkpoint and record), for the algorithms that stack; one "
    "worker per (task, algorithm). [default: on with a cuda device, off on the CPU]",
)  # fmt: skip
@click.option(
    "--cuda-graph/--no-cuda-graph", default=None,
    help="On a cuda device, capture the update (stacked or not) in a CUDA graph once and replay it, for the algorithms "
    "that support it (mabcq, its ablations, bcq). [default: on with a cuda device; the CPU has none]",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print the plan and what it costs (CPU-hours per task and learner, the total, the wall time at --workers runs at once), priced from recorded runs; train nothing, write nothing, need no dataset.")
@click.option("--cost-records", default=None, help="With --dry-run: the run records whose wall times price the plan [default: the repository's committed leaderboard/records, from any folder].")
def run_cmd(algo, env, seeds, preset, setting, results, workers, overrides, progress, executor, address, device, stack_agents, stack_seeds, cuda_graph, dry_run, cost_records) -> None:
    """Train and score algorithms on the per-agent datasets, one record per run
    (with --setting centralized: one learner per task on its joint-action dataset).

    Finished runs are skipped, interrupted ones resume from their checkpoint. Ends with the table.
    With --dry-run: the plan and its CPU-hours, priced from recorded runs, and nothing else.
    """
    from mabcq_bench.report.tables import build_tables, format_table

    if cost_records is not None and not dry_run:
        raise click.BadOptionUsage("cost_records", "--cost-records names the records that price a --dry-run: it needs --dry-run")
    if dry_run:
        return _dry_run(env, algo, _seeds(seeds), preset, setting, workers, overrides, device, cost_records)
    if address is not None and executor != "ray":
        raise click.BadOptionUsage("address", "--address names a Ray cluster: it needs --executor ray")
    if cuda_graph and not device.startswith("cuda"):
        raise click.BadOptionUsage("cuda_graph", f"--cuda-graph needs a cuda --device ({device} has no CUDA graphs)")
    if stack_seeds and stack_agents is False:
        raise click.BadOptionUsage("stack_seeds", "--stack-seeds puts every agent of every seed in one stack: it cannot keep the agents apart (--no-stack-agents)")
    sweep, protocol = _sweep(env, algo, _seeds(seeds), preset, results, workers, overrides, progress, executor, address, device, stack_agents, cuda_graph, setting, stack_seeds)
    if sweep.records:
        for board in sorted({r["tier"] for r in sweep.records}):
            click.echo(format_table(build_tables(sweep.records, board)))
    busy = f", {len(sweep.busy)} being trained by another process" if sweep.busy else ""
    click.echo(f"{len(sweep.records)} runs finished ({sweep.skipped} reused), {len(sweep.failures)} failed{busy}, {sweep.wall_s:.0f}s")
    problems = []
    if sweep.busy:  # its checkpoints are the other process's work in progress: nothing to delete
        problems.append(
            f"{len(sweep.busy)} run(s) are being trained by another process: {'; '.join(f'{k} ({v})' for k, v in sweep.busy.items())}. "
            "Wait for it to finish, or stop it, then rerun the same command."
        )
    if sweep.failures:
        problems.append(
            f"{len(sweep.failures)} run(s) failed: {'; '.join(f'{k}: {v}' for k, v in sweep.failures.items())}. "
            "Rerun the same command to resume them from their checkpoints, or delete their seed<k>.ckpt* files to start them over"
        )
    if problems:
        raise UserError(" ".join(problems))


def _dry_run(env, algo, seeds, preset, setting, workers, overrides, device, cost_records) -> None:
    """``run --dry-run``: the plan the run prints, then its cost table (:mod:`mabcq_bench.runs.cost`)."""
    from pathlib import Path

    from mabcq_bench.report.records import load_records
    from mabcq_bench.runs import cost
    from mabcq_bench.runs.plan import describe_plan, plan_runs
    from mabcq_bench.runs.sweep import default_workers

    if device != "cpu":
        raise UserError(f"--dry-run prices CPU runs from CPU runs' records; it has no measurement of runs on {device}")
    specs, protocol = _specs(env, algo, seeds, preset, overrides, setting=setting)
    folder = Path(cost_records) if cost_records is not None else cost.RECORDS_PATH
    if not folder.is_dir():
        raise UserError(f"--cost-records {folder} is not a folder of run records (<board>/<task>/<variant>/seed<k>.json)")
    runs = plan_runs(specs, protocol)
    priced = cost.estimate(runs, cost.measure(load_records(folder)))
    if not any(c.measured is not None for c in priced):
        raise UserError(f"none of the {len(runs)} planned runs is measured by the records in {folder} (no timed record of their tasks and learners)")
    where = "the repository's leaderboard/records" if cost_records is None else folder
    click.echo(f"plan: {describe_plan(runs)}")
    click.echo(f"dry run: nothing is trained or written. Every run of the plan priced at one thread from the timed records in {where} (those finished in --results too, which the run would reuse):")
    click.echo(cost.format_estimate(priced, workers or default_workers()))


@main.command("leaderboard")
@click.option("--results", default="runs", show_default=True, help="Results store written by `run`.")
@click.option("--out", default=None, help="Folder for <tier>.md, <tier>.csv and the plots [default: <results>/leaderboard, never the repository's published leaderboard/].")
@click.option(
    "--readme",
    default=None,
    help="Also put each board's table into this Markdown file, between the lines <!-- leaderboard:<board> --> and <!-- /leaderboard:<board> --> (a block whose board has no records is left as it is).",
)
@click.option(
    "--findings",
    default=None,
    help="Also put each board's claims table (the paper's claims tested on its records) into this Markdown file, between the lines <!-- claims:<board> --> and <!-- /claims:<board> -->.",
)
def leaderboard_cmd(results: str, out: str | None, readme: str | None, findings: str | None) -> None:
    """Tables (markdown, csv) and plots from a results store, one set per tier.

    Unfinished runs (running, interrupted or failed: a checkpoint without a record) are skipped
    and counted; a rerun of the same `mabcq-bench run` completes them.
    """
    from pathlib import Path

    from mabcq_bench.report.leaderboard import write_leaderboard
    from mabcq_bench.report.readme import readme_blocks, update_readme
    from mabcq_bench.report.records import load_records, unfinished_runs
    from mabcq_bench.report.tables import build_tables, format_table

    from mabcq_bench.report.claims import check_findings, update_findings

    if readme is not None:
        readme_blocks(readme)  # a README without its markers is refused before anything is written
    if findings is not None:
        check_findings(findings)
    records = load_records(results)
    skipped = unfinished_runs(results)
    if skipped:
        click.echo(f"skipping {len(skipped)} unfinished run(s) without a record (e.g. {skipped[0]}); rerun `mabcq-bench run` to complete them")
    if not records:
        raise UserError(f"results folder {results} holds no finished runs")
    target = Path(out) if out is not None else Path(results) / "leaderboard"
    _check_folder(target, "--out")
    for path in write_leaderboard(records, target):
        click.echo(f"wrote {path}")
    for tier in sorted({r["tier"] for r in records}):
        click.echo(f"\n{tier}:\n" + format_table(build_tables(records, tier)))
    click.echo(f"\nthe tables and plots are in {target}/")
    if readme is not None:
        filled = update_readme(readme, records, target)
        for board in filled.left:
            click.echo(f"{readme}: the block of board {board} is left as it is: {results} holds no records of {board}")
        if filled.filled:
            boards = ", ".join(filled.filled)
            click.echo(f"{readme}: wrote the table of {boards}" if filled.changed else f"{readme}: the table of {boards} is already the records' (unchanged)")
    if findings is not None:
        filled = update_findings(findings, records)
        for board in filled.left:
            click.echo(f"{findings}: the claims block of board {board} is left as it is: {results} holds no records of {board}")
        if filled.filled:
            boards = ", ".join(filled.filled)
            click.echo(f"{findings}: wrote the claims of {boards}" if filled.changed else f"{findings}: the claims of {boards} are already the records' (unchanged)")


@main.command("regress")
@click.option("--reference", default=None, help="Reference scores and tolerance [default: the repository's committed leaderboard/regress-reference.json, from any folder].")
@click.option("--results", default=None, help="Results store for the sweep (default: a fresh temporary folder, so nothing is reused).")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Parallel runs (default: all cores).")
@click.option("--update", is_flag=True, help="Write the reference from this sweep instead of comparing (explicit; never automatic).")
@click.option("--tolerance", default=None, type=click.FloatRange(min=0), help="With --update: the score tolerance to store (normalized-score points).")
@click.option("--metric-tolerance", default=None, type=click.FloatRange(min=0), help="With --update: the relative tolerance of the training metrics to store (e.g. 0.02).")
@click.option("--progress/--no-progress", default=True, help="Progress bars on a terminal.")
def regress_cmd(reference, results, workers, update, tolerance, metric_tolerance, progress) -> None:
    """Regenerate the smoke sweep and compare its scores and training metrics with the committed reference.

    Runs on the shipped smoke datasets (identical on every x86-64 CPU); the tolerances cover the
    spread measured across CPU-dispatch settings (see the reference's tolerance_note).
    """
    import tempfile
    from pathlib import Path

    from mabcq_bench.report import regress
    from mabcq_bench.runs.plan import board_name, dataset_version
    from mabcq_bench.data.datasets import make_data
    from mabcq_bench.data.recipes import load_recipe

    ref_path = Path(reference) if reference is not None else regress.REFERENCE_PATH
    if ref_path.exists() or not update:
        ref = regress.load_reference(ref_path)
    else:
        ref = {"tier": "smoke", "tasks": ["hopper"], "algos": ["mabcq", "mabcq-no-tn", "mabcq-no-vd", "bcq", "ddpg", "behavior", "bc"], "seeds": [0, 1], "tolerance": 10.0, "tolerance_note": ""}
    recipe_file = load_recipe(ref["tier"])
    for task in ref["tasks"]:
        make_data(recipe_file.for_task(task), progress=progress, log=click.echo)
    with tempfile.TemporaryDirectory(prefix="mabcq-regress-") as tmp:
        store = Path(results) if results else Path(tmp)
        sweep, protocol = _sweep(",".join(ref["tasks"]), ",".join(ref["algos"]), [int(s) for s in ref["seeds"]], ref["tier"], store, workers, (), progress)
    board = board_name(ref["tier"], dataset_version(ref["tasks"][0], ref["tier"]), protocol.protocol["version"])
    failures = {k.rsplit("/seed", 1)[0]: v for k, v in sweep.failures.items()}
    failures.update({k.rsplit("/seed", 1)[0]: f"being trained by another process ({v})" for k, v in sweep.busy.items()})
    if update:
        if failures:
            raise UserError(f"not writing a reference from a sweep with failed runs: {'; '.join(failures)}")
        tol = tolerance if tolerance is not None else float(ref["tolerance"])
        mtol = metric_tolerance if metric_tolerance is not None else ref.get("metric_tolerance")
        new = regress.reference_from_records(sweep.records, ref["tier"], ref["tasks"], ref["algos"], ref["seeds"], tol, ref.get("tolerance_note", ""), mtol, board=board)
        regress.write_reference(ref_path, new)
        click.echo(f"wrote {ref_path}")
        return
    table, ok = regress.compare(ref, sweep.records, failures, board=board)
    click.echo(table)
    if not ok:
        raise UserError("scores moved beyond the tolerance or runs failed (see the table)")
    metrics = f" and their training metrics within ±{ref['metric_tolerance']:.1%}" if ref.get("metrics") else ""
    click.echo(f"regress: all {len(ref['scores'])} scores within ±{ref['tolerance']:g} of the reference{metrics}")
