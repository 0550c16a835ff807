"""The returns of an expert's reference policies (random, zero actions, intermediate, expert).

Two sets are measured, on two disjoint sets of seeds. The *selection returns* (expert.json's
``returns``, beside every checkpoint's ``checkpoint_returns``) are on the checkpoint-selection
seeds (:attr:`Recipe.selection_seeds`): the record of how the checkpoints were chosen, biased
upwards for the expert, which training stopped at because it passed its target on those very
episodes. The *references* (expert.json's ``references``, :func:`measure_references`) are the
four policies evaluated together on ``reference_episodes`` fresh seeds
(:attr:`Recipe.reference_seeds`, checked disjoint from the selection seeds): the returns every
dataset's metadata and card give, and the 0 and 100 of the normalized score.
"""

from __future__ import annotations

import time
from typing import Callable

from mabcq_bench.data.recipes import Recipe, check_disjoint
from mabcq_bench.data.rollout import PolicyFn, evaluate, random_policy, zero_policy
from mabcq_bench.data.tasks import Task
from mabcq_bench.util import derive_seed, versions

#: Reference policies whose returns every expert records, in the order they are shown.
REFERENCES = ("random", "zero_action", "intermediate", "expert")


def normalized(returns: dict) -> dict[str, float]:
    """Each policy's mean return on the 0 (random) to 100 (expert) scale, rounded to 0.1."""
    lo, hi = returns["random"]["mean"], returns["expert"]["mean"]
    return {p: round(100 * (returns[p]["mean"] - lo) / (hi - lo), 1) for p in REFERENCES}


def selection_returns(task: Task, recipe: Recipe, policies: dict[str, PolicyFn]) -> dict:
    """Returns of the random, zero-action and given policies on the checkpoint-selection seeds
    (``returns`` in expert.json: the record of the choice, not the references)."""

    def summary(policy: PolicyFn) -> dict:
        r = evaluate(task, policy, recipe.eval_episodes, recipe.eval_seed)
        return {"mean": float(r.mean()), "std": float(r.std()), "returns": [float(x) for x in r]}

    out = {"random": summary(random_policy(task, derive_seed(recipe.expert.seed, task.name, "random-policy")))}
    out["zero_action"] = summary(zero_policy(task))
    out.update({name: summary(policy) for name, policy in policies.items()})
    return out


def reference_settings(recipe: Recipe) -> dict:
    """How the recipe's reference returns are measured: episodes and the (inclusive) seed span."""
    seeds = recipe.reference_seeds
    return {"episodes": len(seeds), "seeds": _span(seeds)}


def _span(seeds: range) -> dict[str, int]:
    return {"first": seeds.start, "last": seeds.stop - 1}


def measure_references(
    task: Task, recipe: Recipe, policies: dict[str, PolicyFn], selection_seeds: list[int], done: dict | None = None, save: Callable[[dict], None] | None = None, log: Callable[[str], None] | None = None
) -> dict:
    """The four reference policies (:data:`REFERENCES`) evaluated together on the recipe's
    reference seeds, one episode each, deterministic expert and intermediate actions.

    Args:
        policies: the ``intermediate`` and ``expert`` joint policies.
        selection_seeds: the seeds that chose the checkpoints (expert.json's ``eval_seeds``);
            the reference seeds must not contain any of them.
        done: policies already measured (a resumed measurement), by name.
        save: called with every policy's result as soon as it is measured (to resume from).
        log: called with one line per policy measured.

    Returns:
        The ``references`` block of expert.json: ``episodes``, ``seeds`` (first and last, inclusive),
        ``selection_seeds`` (likewise), ``returns`` by policy (mean, std, n, seeds, every return,
        wall_s), ``normalized`` (0 = random, 100 = expert), ``versions``.

    Raises:
        UserError: the reference seeds overlap the selection seeds.
    """
    seeds = recipe.reference_seeds  # raises if they overlap the recipe's selection seeds
    chosen = range(min(selection_seeds), max(selection_seeds) + 1) if selection_seeds else range(0)
    check_disjoint(seeds, chosen, f"expert of {task.name}")  # and the seeds expert.json says chose it
    makers: dict[str, Callable[[], PolicyFn]] = {
        "random": lambda: random_policy(task, derive_seed(recipe.expert.seed, task.name, "reference-random-policy")),
        "zero_action": lambda: zero_policy(task),
        **{name: (lambda pi=pi: pi) for name, pi in policies.items()},
    }
    out = dict(done or {})
    for name in REFERENCES:
        if name in out:
            continue
        started = time.perf_counter()
        r = evaluate(task, makers[name](), len(seeds), seeds.start)
        out[name] = {"mean": float(r.mean()), "std": float(r.std()), "n": len(r), "seeds": _span(seeds), "returns": [float(x) for x in r], "wall_s": round(time.perf_counter() - started, 1)}
        if save is not None:
            save(out)
        if log is not None:
            log(f"[{task.name}] {name}: {out[name]['mean']:.1f} ± {out[name]['std']:.1f} over {len(r)} episodes ({out[name]['wall_s']:.0f}s)")
    returns = {p: out[p] for p in REFERENCES}
    return {
        **reference_settings(recipe),
        "selection_seeds": _span(chosen),
        "returns": returns,
        "normalized": normalized(returns),
        "versions": versions(),
    }
