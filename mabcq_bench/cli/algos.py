"""Commands of the algorithm layer: the paper's matrix game and the update benchmark.

Nothing of ``mabcq_bench.algos`` is imported here at the top: the package imports torch, and
``mabcq-bench --help`` must not wait for it.
"""

from __future__ import annotations

import json

import click

from mabcq_bench.cli.app import main

#: The solvers of ``matrix_game.ALGOS``, for the help text (tested to be the registry's names).
_MATRIX_GAME_ALGOS = ("bcq", "mabcq-no-tn", "mabcq-no-vd", "mabcq")


@main.command("matrix-game")
@click.option("--payoff", required=True, help="Nested JSON list, one dimension per agent, e.g. '[[1,5],[6,1]]' (the paper's Table 1).")
@click.option("--behavior", "behaviors", multiple=True, help="Behaviour policy of one agent as comma-separated probabilities, e.g. 0.8,0.2; give it once per agent, in axis order.")
@click.option("--algo", default="mabcq", show_default=True, help=f"One of: {', '.join(_MATRIX_GAME_ALGOS)}.")
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
    from mabcq_bench.algos import matrix_game as _matrix_game
    from mabcq_bench.algos import matrix_game_io as _matrix_game_io

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
    analytically), this machine's measured fp32 matmul peak, the joint table (per task and
    algorithm), and beside it the same step with the agents stacked into one batched update for
    the algorithms that stack (joint_stacked; `run --stack-agents`), timed alternately with the
    joint one. On a cuda device, also the updates replayed from CUDA graphs, as a cuda run makes
    them (graphed_ms, joint_graphed). The paper: 10 ms / 18 ms on a GTX 1080Ti.
    """
    from mabcq_bench.algos.bench import bench_update, format_report
    from mabcq_bench.data.tasks import resolve_tasks

    result = bench_update(device=device, repeats=repeats, updates=updates, threads=threads, tasks=resolve_tasks(env))
    click.echo(json.dumps(result) if as_json else format_report(result))
