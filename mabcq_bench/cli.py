"""The ``mabcq-bench`` command line: it parses options and calls library functions, nothing more.

A :class:`~mabcq_bench.errors.UserError` raised by the library becomes one line on stderr and
exit status 1; click's own usage errors exit with status 2.
"""

from __future__ import annotations

import click

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
    from mabcq_bench.recipes import load_recipe
    from mabcq_bench.tasks import resolve_tasks

    tasks = resolve_tasks(env)
    recipe_file = load_recipe(preset)
    return [recipe_file.for_task(t.name) for t in tasks]


@main.command("make-data")
@click.option("--env", "env", default="hopper", show_default=True, help=_ENV_HELP)
@click.option("--preset", default="lite", show_default=True, help=_PRESET_HELP)
@click.option("--progress/--no-progress", default=True, help="Progress bars (shown on a terminal only).")
def make_data_cmd(env: str, preset: str, progress: bool) -> None:
    """Train the SAC joint expert (if not cached) and write every agent's Minari dataset.

    Datasets go to Minari's store (MINARI_DATASETS_PATH, default ~/.minari/datasets) as
    mabcq/<task>/<tier>-agent<i>-v0; experts are cached in MABCQ_BENCH_HOME (default
    ~/.mabcq-bench). Rerunning resumes an interrupted job and skips what is finished.
    """
    from mabcq_bench.datasets import make_data

    for recipe in _plan(env, preset):
        for status in make_data(recipe, progress=progress, log=click.echo):
            click.echo(f"{status.dataset_id}\t{status.total_steps} transitions\tsha256 {status.checksum[:16]}\t{'new' if status.created else 'kept'}")


@main.command("train-expert")
@click.option("--env", "env", default="hopper", show_default=True, help=_ENV_HELP)
@click.option("--preset", default="lite", show_default=True, help=_PRESET_HELP)
@click.option("--progress/--no-progress", default=True, help="Progress bars (shown on a terminal only).")
def train_expert_cmd(env: str, preset: str, progress: bool) -> None:
    """Train (or resume) only the SAC joint expert and print its reference returns."""
    from mabcq_bench.experts import train_expert

    for recipe in _plan(env, preset):
        expert = train_expert(recipe, progress=progress, log=click.echo)
        r = expert.returns
        click.echo(
            f"{recipe.task}\t{expert.dir}\trandom {r['random']['mean']:.1f}\t"
            f"intermediate {r['intermediate']['mean']:.1f}\texpert {r['expert']['mean']:.1f}"
        )


@main.command("bench-data")
@click.option("--env", "env", default="hopper", show_default=True, help="One task name.")
@click.option("--preset", default="lite", show_default=True, help=_PRESET_HELP)
@click.option("--transitions", default=20_000, show_default=True, type=click.IntRange(min=1000), help="Transitions per measurement.")
@click.option("--num-envs", default=None, type=click.IntRange(min=1), help="Batch size of the vector env (default: the recipe's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_data_cmd(env: str, preset: str, transitions: int, num_envs: int | None, as_json: bool) -> None:
    """Measure dataset collection (transitions/s) beside raw stepping of the same task."""
    import json as _json

    from mabcq_bench.bench_data import bench_collection

    if "," in env or env == "all":
        raise UserError("bench-data measures one task: give --env with a single task name")
    (recipe,) = _plan(env, preset)
    result = bench_collection(recipe, transitions=transitions, num_envs=num_envs)
    click.echo(_json.dumps(result) if as_json else result["table"])


# --- algorithms: matrix game, update benchmark -----------------------------------------------

import json  # noqa: E402  (imports kept in this section; others edit the top of the file)

from mabcq_bench import matrix_game as _matrix_game  # noqa: E402


@main.command("matrix-game")
@click.option(
    "--payoff",
    required=True,
    help="Nested JSON list, one dimension per agent, e.g. '[[1,5],[6,1]]' (the paper's Table 1).",
)
@click.option(
    "--behavior",
    "behaviors",
    multiple=True,
    help="Behaviour policy of one agent as comma-separated probabilities, e.g. 0.8,0.2; "
    "give it once per agent, in axis order.",
)
@click.option(
    "--algo",
    default="mabcq",
    show_default=True,
    help=f"One of: {', '.join(_matrix_game.ALGOS)}.",
)
@click.option(
    "--epsilon",
    type=float,
    default=None,
    help="Clip lambda_vd to [1-E, 1+E] (the paper's optimism level); unclipped if not given.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def matrix_game(
    payoff: str, behaviors: tuple[str, ...], algo: str, epsilon: float | None, as_json: bool
) -> None:
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
    payoff_array = _matrix_game.parse_payoff(payoff)
    behavior = [_matrix_game.parse_behavior(text, i) for i, text in enumerate(behaviors)]
    result = _matrix_game.solve(payoff_array, behavior, algo, epsilon)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(_matrix_game.format_table(result))



if __name__ == "__main__":
    main()
