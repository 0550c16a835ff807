"""The ``mabcq-bench`` command line: it parses options and calls library functions, nothing more.

A :class:`~mabcq_bench.errors.UserError` raised by the library becomes one line on stderr and
exit status 1; click's own usage errors exit with status 2.
"""

from __future__ import annotations

import json

import click

from mabcq_bench.algos import matrix_game as _matrix_game
from mabcq_bench.algos import matrix_game_io as _matrix_game_io
from mabcq_bench.errors import UserError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mabcq-bench")
def main() -> None:
    """Datasets and benchmark for offline, fully decentralized multi-agent RL (MABCQ)."""


# --- data: datasets, experts, collection benchmark -------------------------------------------

_ENV_HELP = "Task name, a comma-separated list, or 'all' (halfcheetah, walker, hopper, ant)."
_PRESET_HELP = "Tier (smoke, lite, paper: datasets/<tier>.toml) or a path to a recipe .toml."


def _plan(env: str, preset: str):
    """Resolve tasks and recipes up front, so bad input fails before any work starts."""
    from mabcq_bench.data.recipes import load_recipe
    from mabcq_bench.data.tasks import resolve_tasks

    tasks = resolve_tasks(env)
    recipe_file = load_recipe(preset)
    return [recipe_file.for_task(t.name) for t in tasks]


@main.command("make-data")
@click.option("--env", "env", default="hopper", show_default=True, help=_ENV_HELP)
@click.option("--preset", default="lite", show_default=True, help=_PRESET_HELP)
@click.option("--progress/--no-progress", default=True, help="Progress bars (shown on a terminal only).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="local: here, one task after another; ray: experts, then agents' datasets, as Ray tasks.")
@click.option("--address", default=None, help="With --executor ray: the cluster (e.g. auto); default: a local Ray.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="With --executor ray and no --address: CPUs of the local Ray (default: all).")
@click.option("--retrain", is_flag=True, help="Train the SAC experts here instead of using the ones shipped in datasets/experts (hours per task for lite/paper).")
def make_data_cmd(env: str, preset: str, progress: bool, executor: str, address: str | None, workers: int | None, retrain: bool) -> None:
    """Write every agent's Minari dataset from the task's SAC joint expert.

    The experts ship with the repository (datasets/experts/<name>/<task>/, checksummed), so by
    default no SAC is trained and the datasets are the published bits on any x86-64 CPU. SAC is
    trained only with --retrain or for a recipe no shipped expert was made by; trained experts
    are cached in MABCQ_BENCH_HOME (default ~/.mabcq-bench). Datasets go to Minari's store
    (MINARI_DATASETS_PATH, default ~/.minari/datasets) as mabcq/<task>/<tier>-agent<i>-v<N>.
    Rerunning resumes an interrupted job and skips what is finished.
    """
    from mabcq_bench.data.datasets import make_data

    recipes = _plan(env, preset)
    if executor == "ray":
        from mabcq_bench.runs.ray import make_data_ray

        statuses = make_data_ray(recipes, address=address, workers=workers, retrain=retrain, log=click.echo)
    else:
        statuses = [status for recipe in recipes for status in make_data(recipe, retrain=retrain, progress=progress, log=click.echo)]
    for status in statuses:
        click.echo(f"{status.dataset_id}\t{status.total_steps} transitions\tsha256 {status.checksum[:16]}\t{'new' if status.created else 'kept'}")
    _echo_manifest_checks(recipes, only_listed=True)


def _echo_manifest_checks(recipes, only_listed: bool) -> bool:
    """Print each dataset's comparison with its tier's committed manifest; True if all are the same."""
    from mabcq_bench.data import manifest

    ok = True
    for tier in sorted({r.tier for r in recipes}):
        path = manifest.manifest_path(tier)
        listed = manifest.read_manifest(path)
        if not listed:
            if only_listed:
                continue
            raise UserError(f"tier {tier!r} has no published manifest ({path} does not exist); write one with --write")
        for c in manifest.check([r for r in recipes if r.tier == tier], listed):
            if only_listed and c.verdict == "unlisted":
                continue
            ok &= c.ok
            click.echo(f"{c.dataset_id}\t{'matches the manifest' if c.verdict == 'identical' else c.verdict}\t{c.detail}")
    return ok


@main.command("manifest")
@click.option("--env", "env", default="all", show_default=True, help=_ENV_HELP)
@click.option("--preset", default="lite", show_default=True, help=_PRESET_HELP)
@click.option("--write", is_flag=True, help="Add the local datasets to datasets/<tier>.manifest.json instead of checking them.")
def manifest_cmd(env: str, preset: str, write: bool) -> None:
    """Check the local datasets against the tier's committed manifest (id, size, checksum, returns).

    Each dataset is identical (the published bits), equivalent (other bits, per-part returns
    within 5% of the expert-random span) or differs. Exits 1 if any differs or is missing.
    """
    from mabcq_bench.data import manifest

    recipes = _plan(env, preset)
    if not write:
        if not _echo_manifest_checks(recipes, only_listed=False):
            raise UserError("the local datasets differ from the manifest (see above)")
        return
    from mabcq_bench.data.tasks import get_task

    entries = [e for r in recipes for i in range(get_task(r.task).n_agents) if (e := manifest.entry(r.dataset_id(i), r))]
    if not entries:
        raise UserError("no local datasets of these tasks to write into the manifest; make them with make-data")
    path = manifest.manifest_path(recipes[0].tier)
    manifest.write_manifest(path, recipes[0].tier, entries)
    click.echo(f"wrote {len(entries)} datasets into {path}")


@main.command("train-expert")
@click.option("--env", "env", default="hopper", show_default=True, help=_ENV_HELP)
@click.option("--preset", default="lite", show_default=True, help=_PRESET_HELP)
@click.option("--progress/--no-progress", default=True, help="Progress bar on a terminal, else one line per checkpoint.")
@click.option("--ship", is_flag=True, help="Then copy the finished expert into datasets/experts/<name>/<task>/ (for maintainers).")
def train_expert_cmd(env: str, preset: str, progress: bool, ship: bool) -> None:
    """Train (or resume) the SAC joint expert here and print its reference returns.

    Checkpoints are evaluated as they are saved; training stops at the recipe's target return.
    """
    from mabcq_bench.data.experts import REFERENCES, ship_expert, train_expert

    for recipe in _plan(env, preset):
        expert = train_expert(recipe, progress=progress, log=click.echo)
        r = expert.returns
        click.echo(f"{recipe.task}\t{expert.dir}\t" + "\t".join(f"{p} {r[p]['mean']:.1f}" for p in REFERENCES))
        if ship:
            ship_expert(recipe, log=click.echo)


@main.command("bench-data")
@click.option("--env", "env", default="hopper", show_default=True, help="One task name.")
@click.option("--preset", default="lite", show_default=True, help=_PRESET_HELP)
@click.option("--transitions", default=20_000, show_default=True, type=click.IntRange(min=1000), help="Transitions per measurement.")
@click.option("--num-envs", default=None, type=click.IntRange(min=1), help="Batch size of the vector env (default: the recipe's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_data_cmd(env: str, preset: str, transitions: int, num_envs: int | None, as_json: bool) -> None:
    """Measure dataset collection (transitions/s) beside raw stepping of the same task."""
    from mabcq_bench.data.bench import bench_collection

    if "," in env or env == "all":
        raise UserError("bench-data measures one task: give --env with a single task name")
    (recipe,) = _plan(env, preset)
    result = bench_collection(recipe, transitions=transitions, num_envs=num_envs)
    click.echo(json.dumps(result) if as_json else result["table"])


# --- runs: scoring harness, leaderboard, regression ------------------------------------------

_ALGO_HELP = "Algorithm name, a comma-separated list, or 'all' (mabcq, mabcq-no-tn, mabcq-no-vd, bcq, ddpg, behavior; the reference rows zero-action, random)."


def _seeds(text: str) -> list[int]:
    """``3`` means seeds 0, 1, 2; ``0,4,7`` lists them."""
    try:
        if "," in text:
            return sorted({int(x) for x in text.split(",") if x.strip()})
        count = int(text)
    except ValueError:
        raise UserError(f"--seeds takes a count (3) or a list (0,4,7), got {text!r}") from None
    if count < 1:
        raise UserError(f"--seeds must be at least 1, got {count}")
    return list(range(count))


def _sweep(env, algo, seeds, preset, results, workers, overrides, progress, executor="local", address=None, device="cpu"):
    from pathlib import Path

    from mabcq_bench.algos import resolve_algos
    from mabcq_bench.runs.plan import RunSpec, parse_overrides, prepare
    from mabcq_bench.runs.protocol import load_protocol
    from mabcq_bench.runs.sweep import default_workers, run_sweep
    from mabcq_bench.data.tasks import resolve_tasks

    _check_folder(Path(results), "--results")
    tasks = resolve_tasks(env)
    algos = resolve_algos(algo)
    protocol = load_protocol(preset)
    extra = parse_overrides(overrides)
    per_algo = {}
    for a in algos:  # an override that changes nothing for an algorithm is not applied to it
        dead = a.inert(dict(extra))
        if dead:
            click.echo(f"--set {', '.join(dead)} does not change {a.name}: its runs are made without {'it' if len(dead) == 1 else 'them'}")
        per_algo[a.name] = tuple((k, v) for k, v in extra if k not in dead)
    specs = [RunSpec(protocol.tier, t.name, a.name, s, per_algo[a.name]) for t in tasks for a in algos for s in seeds]
    runs = prepare(specs, protocol, protocol.datasets, device=device)
    result = run_sweep(runs, Path(results), workers or default_workers(), progress=progress, log=click.echo, executor=executor, address=address)
    return result, protocol


@main.command("run")
@click.option("--algo", default="all", show_default=True, help=_ALGO_HELP)
@click.option("--env", "env", default="hopper", show_default=True, help=_ENV_HELP)
@click.option("--seeds", default="3", show_default=True, help="Number of seeds (3 = 0,1,2) or a list (0,4,7).")
@click.option("--preset", default="lite", show_default=True, help="Tier: baselines/<tier>.toml (protocol and hyperparameters) on the <tier> datasets.")
@click.option("--results", default="runs", show_default=True, help="Results store: one record per (tier, task, algorithm, seed).")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Parallel runs (default: all cores).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a hyperparameter, e.g. --set epsilon=0.4 (part of the run's name).")
@click.option("--progress/--no-progress", default=True, help="Progress bar with ETA (on a terminal).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="local: a process pool here; ray: one Ray task per run.")
@click.option("--address", default=None, help="With --executor ray: the cluster (e.g. auto, or ray://head:10001); default: a local Ray.")
@click.option("--device", default="cpu", show_default=True, help="Torch device of the learners (cuda asks Ray for one GPU per run).")
def run_cmd(algo, env, seeds, preset, results, workers, overrides, progress, executor, address, device) -> None:
    """Train and score algorithms on the per-agent datasets, one record per run.

    Finished runs are skipped, interrupted ones resume from their checkpoint. Ends with the table.
    """
    from mabcq_bench.report.tables import build_tables, format_table

    sweep, protocol = _sweep(env, algo, _seeds(seeds), preset, results, workers, overrides, progress, executor, address, device)
    if sweep.records:
        for board in sorted({r["tier"] for r in sweep.records}):
            click.echo(format_table(build_tables(sweep.records, board)))
    click.echo(f"{len(sweep.records)} runs finished ({sweep.skipped} reused), {len(sweep.failures)} failed, {sweep.wall_s:.0f}s")
    if sweep.failures:
        raise UserError(
            f"{len(sweep.failures)} run(s) failed: {'; '.join(f'{k}: {v}' for k, v in sweep.failures.items())}. "
            "Rerun the same command to resume them from their checkpoints, or delete their seed<k>.ckpt* files to start them over"
        )


@main.command("leaderboard")
@click.option("--results", default="runs", show_default=True, help="Results store written by `run`.")
@click.option("--out", default=None, help="Folder for <tier>.md, <tier>.csv and the plots [default: <results>/leaderboard, never the repository's published leaderboard/].")
def leaderboard_cmd(results: str, out: str | None) -> None:
    """Tables (markdown, csv) and plots from a results store, one set per tier.

    Unfinished runs (running, interrupted or failed: a checkpoint without a record) are skipped
    and counted; a rerun of the same `mabcq-bench run` completes them.
    """
    from pathlib import Path

    from mabcq_bench.report.leaderboard import write_leaderboard
    from mabcq_bench.report.records import load_records, unfinished_runs
    from mabcq_bench.report.tables import build_tables, format_table

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


def _check_folder(path, option: str) -> None:
    """One line when a folder option names an existing file."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; give a folder")


@main.command("regress")
@click.option("--reference", default="leaderboard/regress-reference.json", show_default=True, help="Committed reference scores and tolerance.")
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

    ref_path = Path(reference)
    if ref_path.exists() or not update:
        ref = regress.load_reference(ref_path)
    else:
        ref = {"tier": "smoke", "tasks": ["hopper"], "algos": ["mabcq", "mabcq-no-tn", "mabcq-no-vd", "bcq", "ddpg", "behavior"], "seeds": [0, 1], "tolerance": 10.0, "tolerance_note": ""}
    recipe_file = load_recipe(ref["tier"])
    for task in ref["tasks"]:
        make_data(recipe_file.for_task(task), progress=progress, log=click.echo)
    with tempfile.TemporaryDirectory(prefix="mabcq-regress-") as tmp:
        store = Path(results) if results else Path(tmp)
        sweep, _ = _sweep(",".join(ref["tasks"]), ",".join(ref["algos"]), [int(s) for s in ref["seeds"]], ref["tier"], store, workers, (), progress)
    failures = {k.rsplit("/seed", 1)[0]: v for k, v in sweep.failures.items()}
    if update:
        if failures:
            raise UserError(f"not writing a reference from a sweep with failed runs: {'; '.join(failures)}")
        tol = tolerance if tolerance is not None else float(ref["tolerance"])
        mtol = metric_tolerance if metric_tolerance is not None else ref.get("metric_tolerance")
        board = board_name(ref["tier"], dataset_version(ref["tasks"][0], ref["tier"]))
        new = regress.reference_from_records(sweep.records, ref["tier"], ref["tasks"], ref["algos"], ref["seeds"], tol, ref.get("tolerance_note", ""), mtol, board=board)
        regress.write_reference(ref_path, new)
        click.echo(f"wrote {ref_path}")
        return
    board = board_name(ref["tier"], dataset_version(ref["tasks"][0], ref["tier"]))
    table, ok = regress.compare(ref, sweep.records, failures, board=board)
    click.echo(table)
    if not ok:
        raise UserError("scores moved beyond the tolerance or runs failed (see the table)")
    metrics = f" and their training metrics within ±{ref['metric_tolerance']:.1%}" if ref.get("metrics") else ""
    click.echo(f"regress: all {len(ref['scores'])} scores within ±{ref['tolerance']:g} of the reference{metrics}")


@main.command("baselines")
@click.option("--write", is_flag=True, help="Regenerate baselines/<tier>.toml from the algorithm registry's defaults.")
def baselines_cmd(write: bool) -> None:
    """Show (or regenerate) the protocol files: run protocol and every algorithm's hyperparameters."""
    from mabcq_bench.runs.protocol import BASELINES_DIR, DEFAULT_PROTOCOLS, protocol_text
    from mabcq_bench.util import atomic_path

    for tier, (proto, note, datasets) in DEFAULT_PROTOCOLS.items():
        text = protocol_text(tier, proto, note, datasets)
        path = BASELINES_DIR / f"{tier}.toml"
        if write:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            click.echo(f"wrote {path}")
        else:
            click.echo(f"# --- {path}\n{text}")


# --- algorithms: matrix game, update benchmark -----------------------------------------------


@main.command("matrix-game")
@click.option("--payoff", required=True, help="Nested JSON list, one dimension per agent, e.g. '[[1,5],[6,1]]' (the paper's Table 1).")
@click.option("--behavior", "behaviors", multiple=True, help="Behaviour policy of one agent as comma-separated probabilities, e.g. 0.8,0.2; give it once per agent, in axis order.")
@click.option("--algo", default="mabcq", show_default=True, help=f"One of: {', '.join(_matrix_game.ALGOS)}.")
@click.option("--epsilon", type=float, default=None, help="Clip lambda_vd to [1-E, 1+E] (the paper's optimism level); unclipped if not given.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def matrix_game(payoff: str, behaviors: tuple[str, ...], algo: str, epsilon: float | None, as_json: bool) -> None:
    """Solve the paper's one-step matrix game exactly, as each agent sees its own dataset.

    Each next state is a joint-action cell (equal payoffs are still distinct states) whose value
    is its payoff. Agent i's dataset weighs a cell by the other agents' behaviour probabilities;
    bcq takes the expected payoff under those, the mabcq variants first apply transition
    normalization (uniform over next states) and/or value deviation
    lambda_vd = 1 + (V - E)/|E|, then renormalize.

    Rules: E == 0 means no deviation (lambda_vd = 1); a negative lambda_vd (negative payoffs)
    is clamped to 0 before renormalizing. Actions with behaviour probability 0 are out of
    distribution: no value, never chosen. Each agent picks its highest value, ties to the
    lowest index. Indices are 0-based.
    """
    payoff_array = _matrix_game_io.parse_payoff(payoff)
    behavior = [_matrix_game_io.parse_behavior(text, i) for i, text in enumerate(behaviors)]
    result = _matrix_game.solve(payoff_array, behavior, algo, epsilon)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(_matrix_game_io.format_table(result))


@main.command("bench")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda.")
@click.option("--repeats", type=click.IntRange(min=1), default=7, show_default=True, help="Timed blocks per algorithm; the median is reported.")
@click.option("--updates", type=click.IntRange(min=1), default=10, show_default=True, help="Updates per timed block.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch CPU threads [default: torch's, all cores].")
@click.option("--env", default="all", show_default=True, help="Tasks of the joint table: a name, a comma-separated list or 'all'.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
def bench(device: str, repeats: int, updates: int, threads: int | None, env: str, as_json: bool) -> None:
    """Time one training update of bcq and mabcq at the paper's Table 6 sizes, and one update of
    all a task's agents for every algorithm.

    Prints ms per update, the MABCQ/BCQ ratio, the update's achieved GFLOP/s (its matmuls counted
    analytically), this machine's measured fp32 matmul peak, and the joint table (per task and
    algorithm). The paper: 10 ms / 18 ms on a GTX 1080Ti.
    """
    from mabcq_bench.algos.bench import bench_update, format_report
    from mabcq_bench.data.tasks import resolve_tasks

    result = bench_update(device=device, repeats=repeats, updates=updates, threads=threads, tasks=resolve_tasks(env))
    click.echo(json.dumps(result) if as_json else format_report(result))


if __name__ == "__main__":
    main()
