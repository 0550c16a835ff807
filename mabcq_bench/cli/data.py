"""Commands of the data layer: datasets, experts, manifests, the collection benchmark."""

from __future__ import annotations

import json

import click

from mabcq_bench.cli.app import _ENV_HELP, _PRESET_HELP, _plan, main
from mabcq_bench.errors import UserError


@main.command("make-data")
@click.option("--env", "env", default="hopper", show_default=True, help=_ENV_HELP)
@click.option("--preset", default="lite", show_default=True, help=_PRESET_HELP)
@click.option("--progress/--no-progress", default=True, help="Progress bars (shown on a terminal only).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="local: here, one task after another; ray: experts, then agents' datasets, as Ray tasks.")
@click.option("--address", default=None, help="With --executor ray: the cluster (e.g. auto); default: a local Ray.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="With --executor ray and no --address: CPUs of the local Ray (default: all).")
@click.option("--retrain", is_flag=True, help="Train the SAC experts here instead of using the ones shipped in datasets/experts (hours per task for lite/paper).")
@click.option(
    "--joint/--no-joint", default=True, show_default=True,
    help="Also write each task's joint-action dataset mabcq/<task>/<tier>-joint-v<N> (every agent's transitions with the joint action: "
    "the data of `run --setting centralized`); --no-joint skips it (paper: 3.4M transitions for ant).",
)  # fmt: skip
def make_data_cmd(env: str, preset: str, progress: bool, executor: str, address: str | None, workers: int | None, retrain: bool, joint: bool) -> None:
    """Write every agent's Minari dataset from the task's SAC joint expert.

    The experts ship with the repository (datasets/experts/<name>/<task>/, checksummed), so by
    default no SAC is trained and the datasets are the published bits on any x86-64 CPU. SAC is
    trained only with --retrain or for a recipe no shipped expert was made by; trained experts
    are cached in MABCQ_BENCH_HOME (default ~/.mabcq-bench). Datasets go to Minari's store
    (MINARI_DATASETS_PATH, default ~/.minari/datasets) as mabcq/<task>/<tier>-agent<i>-v<N>, and
    the joint-action dataset (the same transitions with the joint action, for the centralized
    reference) as mabcq/<task>/<tier>-joint-v<N>. Rerunning resumes an interrupted job and skips what is finished.
    """
    from mabcq_bench.data.datasets import make_data

    if executor != "ray" and (address is not None or workers is not None):
        option = "--address" if address is not None else "--workers"
        raise click.BadOptionUsage(option.lstrip("-"), f"{option} needs --executor ray (the local executor makes one dataset after another)")
    if address is not None and workers is not None:
        raise click.BadOptionUsage("workers", "--workers sets the CPUs of a local Ray: with --address the cluster has its own")
    recipes = _plan(env, preset)
    if executor == "ray":
        from mabcq_bench.runs.ray import make_data_ray

        statuses = make_data_ray(recipes, address=address, workers=workers, retrain=retrain, log=click.echo, joint=joint)
    else:
        statuses = [status for recipe in recipes for status in make_data(recipe, retrain=retrain, progress=progress, log=click.echo, joint=joint)]
    verdicts = _manifest_verdicts(recipes, joint)  # one line per dataset: what it is, how it compares, new or kept
    for status in statuses:
        verdict = f"\t{verdicts[status.dataset_id]}" if status.dataset_id in verdicts else ""
        click.echo(f"{status.dataset_id}\t{status.total_steps:,} transitions\tsha256 {status.checksum[:16]}{verdict}\t{'new' if status.created else 'kept'}")


def _manifest_verdicts(recipes, joint: bool = True) -> dict[str, str]:
    """Each dataset's comparison with its tier's committed manifest, by id (none for a tier without one)."""
    from mabcq_bench.data import manifest

    texts = {"identical": "matches the manifest", "unlisted": "not in the manifest", "missing": "missing"}
    out = {}
    for tier in sorted({r.tier for r in recipes}):
        listed = manifest.read_manifest(manifest.manifest_path(tier))
        if listed:
            for c in manifest.check([r for r in recipes if r.tier == tier], listed, joint):
                out[c.dataset_id] = texts.get(c.verdict) or f"{c.verdict} from the manifest: {c.detail}"
    return out


def _echo_manifest_checks(recipes, only_listed: bool, joint: bool = True) -> bool:
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
        for c in manifest.check([r for r in recipes if r.tier == tier], listed, joint):
            if only_listed and c.verdict == "unlisted":
                continue
            ok &= c.ok
            click.echo(f"{c.dataset_id}\t{'matches the manifest' if c.verdict == 'identical' else c.verdict}\t{c.detail}")
    return ok


@main.command("manifest")
@click.option("--env", "env", default="all", show_default=True, help=_ENV_HELP)
@click.option("--preset", default="lite", show_default=True, help=_PRESET_HELP)
@click.option("--write", is_flag=True, help="Add the local datasets to datasets/<tier>.manifest.json instead of checking them.")
@click.option(
    "--derive-from", type=click.IntRange(min=0), default=None, metavar="VERSION",
    help="Add entries for the recipe's datasets derived from the manifest's entries of VERSION, without making them: "
    "only where that version's recipe makes the same transitions (the references and the version differ).",
)  # fmt: skip
@click.option("--joint/--no-joint", default=True, show_default=True, help="Include the joint-action datasets (mabcq/<task>/<tier>-joint-v<N>).")
def manifest_cmd(env: str, preset: str, write: bool, derive_from: int | None, joint: bool) -> None:
    """Check the local datasets against the tier's committed manifest (id, size, checksum, returns).

    Each dataset is identical (the published bits), equivalent (other bits, per-part returns
    within 5% of the expert-random span) or differs. Exits 1 if any differs or is missing.
    """
    from mabcq_bench.data import manifest

    recipes = _plan(env, preset)
    if derive_from is not None:
        from mabcq_bench.data.experts import find_expert

        path = manifest.manifest_path(recipes[0].tier)
        listed = manifest.read_manifest(path)
        entries = []
        for r in recipes:
            expert = find_expert(r)
            if expert is None or not expert.has_references(r):
                raise UserError(f"the {r.task} expert of recipe {r.tier} or its reference returns are missing; see `mabcq-bench references --env {r.task} --preset {r.tier}`")
            entries += manifest.derive_entries(r, derive_from, listed, expert.references)
        version = recipes[0].dataset_version
        note = (
            f"The v{version} entries marked derived_from were not made: they were derived from the v{derive_from} entries, whose recipe makes "
            f"the same transitions (checksums, sizes and per-part returns are the v{derive_from} datasets'), with the v{version} recipe's "
            "fingerprint and reference returns. Making the datasets and `mabcq-bench manifest --write` replaces them with made entries."
        )
        manifest.write_manifest(path, recipes[0].tier, entries, note=note)
        click.echo(f"derived {len(entries)} entries from version {derive_from} into {path}")
        return
    if not write:
        if not _echo_manifest_checks(recipes, only_listed=False, joint=joint):
            raise UserError("the local datasets differ from the manifest (see above)")
        return
    entries = [e for r in recipes for dataset_id in manifest.dataset_ids(r, joint) if (e := manifest.entry(dataset_id, r))]
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
    from mabcq_bench.data.experts import REFERENCES, add_references, ship_expert, train_expert

    for recipe in _plan(env, preset):
        expert = add_references(recipe, train_expert(recipe, progress=progress, log=click.echo), log=click.echo)
        r = expert.references
        click.echo(f"{recipe.task}\t{expert.dir}\t" + "\t".join(f"{p} {r[p]['mean']:.1f}" for p in REFERENCES))
        if ship:
            ship_expert(recipe, log=click.echo)


@main.command("references")
@click.option("--env", "env", default="all", show_default=True, help=_ENV_HELP)
@click.option("--preset", default="lite", show_default=True, help=_PRESET_HELP)
def references_cmd(env: str, preset: str) -> None:
    """Measure the experts' reference returns on fresh seeds and write them into their expert.json.

    The random, zero-action, intermediate and expert policies each play the recipe's
    reference_episodes episodes, one per seed from reference_seed: seeds disjoint from those that
    chose the checkpoints (checked). These are the returns every dataset's metadata and card give.
    Experts that have them already are kept; an interrupted measurement resumes. A shipped expert's
    expert.json (datasets/experts/) is rewritten in place, its checkpoints untouched (for maintainers).
    """
    import time

    from mabcq_bench.data.experts import REFERENCES, add_references, find_expert

    for recipe in _plan(env, preset):
        expert = find_expert(recipe)
        if expert is None:
            raise UserError(f"no expert of {recipe.task} for recipe {recipe.tier} (expert {recipe.expert.name}); train it with `mabcq-bench train-expert --env {recipe.task} --preset {preset}`")
        kept = expert.has_references(recipe)
        started = time.perf_counter()
        expert = add_references(recipe, expert, log=click.echo)
        r = expert.references
        cells = "\t".join(f"{p} {r[p]['mean']:.1f} ± {r[p]['std']:.1f}" for p in REFERENCES)
        when = "kept" if kept else f"measured in {time.perf_counter() - started:.0f}s"
        click.echo(f"{recipe.task}\t{r['expert']['n']} episodes, seeds {r['expert']['seeds']['first']}–{r['expert']['seeds']['last']}\t{cells}\t{when}")


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
