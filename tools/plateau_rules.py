"""Which rule finds where a score curve stops moving: both rules on curves of known shape.

``python tools/plateau_rules.py [--draws 200] [--variants]`` prints, per evaluation grid (200k
updates evaluated every 4k, 60k every 2k), curve shape, noise sd and number of seeds, how each
rule places the budget over ``--draws`` noisy draws: the median U, the share of draws placed
early (before the shape has stopped moving) and late (see the legend it prints). The rules:

- *old*: the trailing window ``[0.8 u, u]`` within ``max(2, 2σ√(1/n + 1/n_L))`` of the final
  level L at u and at every later point (the rule ``report/budget.py`` used before);
- *trend*: the first U where a line fitted from U to the end predicts a change within
  ``max(2, 2 SE)``, and nothing else (over the same candidates as the next);
- *level + trend*: :func:`mabcq_bench.report.budget.stops_moving`, both checks at the first U,
  the window's at U alone.

``--variants`` adds the choices inside the last: the old rule at 3σ, the level check at U alone,
σ from the line's residuals instead of successive differences, and candidates U in the last
fifth too (lines over fewer points than the final level's).
The draws are seeded, so the table is the same on every machine. Noise is independent and
normal at every checkpoint and seed; the curve is the seed mean, as on a board. This is not a
test: it is the evidence for the choice of rule in docs/protocol.md.
"""

from __future__ import annotations

import argparse
from typing import Callable

import numpy as np

from mabcq_bench.report.budget import MIN_POINTS, SCORE_POINTS, SDS, SMOOTH, _holds_from, _line_change, _noise_sd, _trailing_windows, stops_moving

Rule = Callable[[np.ndarray, np.ndarray], "int | None"]


def shapes(T: float) -> dict[str, tuple[Callable[[np.ndarray], np.ndarray], float, float | None, str]]:
    """Per shape on a run of T updates: the noise-free curve, the U before which a budget is early
    (inf: any budget is), the U from which it is late (None: no such U) and what those mean."""

    def rise(u):  # 0 to 50 by T/5, then flat
        return 50.0 * np.minimum(1.0, u / (0.2 * T))

    def climb(u):  # 0 to 60, straight, to the end
        return 60.0 * u / T

    def second(u):  # 20 by T/10, flat to 0.3T, 60 by T/2, flat
        return np.where(u <= 0.3 * T, 20.0 * np.minimum(1.0, u / (0.1 * T)), np.minimum(60.0, 20.0 + 40.0 * (u - 0.3 * T) / (0.2 * T)))

    def dip(u):  # 50 by T/10, 40 from T/2 to 0.6T, 50 again
        return 50.0 * np.minimum(1.0, u / (0.1 * T)) - 10.0 * ((u >= 0.5 * T) & (u <= 0.6 * T))

    def descent(u):  # 60 by T/5, flat to 0.6T, down to 40 at the end
        return np.where(u <= 0.6 * T, 60.0 * np.minimum(1.0, u / (0.2 * T)), 60.0 - 20.0 * (u - 0.6 * T) / (0.4 * T))

    return {
        "rise, flat": (rise, 0.2 * T, 0.5 * T, "early: before the rise ends (T/5); late: at T/2 or later, or none"),
        "straight climb": (climb, np.inf, None, "early: accepted at all"),
        "second climb": (second, 0.5 * T, 0.75 * T, "early: before the second climb ends (T/2); late: at 0.75T or later, or none"),
        "dip": (dip, 0.1 * T, 0.6 * T + 1, "early: before the rise ends (T/10); late: past the dip (after 0.6T), or none"),
        "descent": (descent, np.inf, None, "early: accepted at all (the descent lasts to the end)"),
    }


def level_at_every_later(updates: np.ndarray, values: np.ndarray, sds: float = SDS) -> int | None:
    """The old rule: the first U from which the trailing window is within its tolerance of L at
    every later point."""
    last_fifth = 5 * updates >= 4 * updates[-1]
    level, n_level = values[last_fifth].mean(), last_fifth.sum()
    windows, counts = _trailing_windows(updates, values)
    ok = np.abs(windows - level) <= np.maximum(SCORE_POINTS, sds * _noise_sd(values) * np.sqrt(1.0 / counts + 1.0 / n_level))
    return _holds_from(updates, ok)


def first_passing(
    updates: np.ndarray, values: np.ndarray, level: bool = True, trend: bool = True, residual: bool = False, last_fifth_span: bool = True
) -> int | None:
    """The first candidate U passing the checks asked for; with the defaults, what
    :func:`stops_moving` computes (the script checks that it does, draw by draw)."""
    last_fifth = 5 * updates >= 4 * updates[-1]
    final, n_level = values[last_fifth].mean(), last_fifth.sum()
    sigma = _noise_sd(values)
    windows, counts = _trailing_windows(updates, values)
    at_level = np.abs(windows - final) <= np.maximum(SCORE_POINTS, SDS * sigma * np.sqrt(1.0 / counts + 1.0 / n_level))
    for i in range(SMOOTH - 1, len(values) - MIN_POINTS + 1):
        if last_fifth_span and 5 * updates[i] > 4 * updates[-1]:
            break
        if level and not at_level[i]:
            continue
        if trend:
            u, v = updates[i:].astype(np.float64), values[i:]
            noise = sigma
            if residual:  # the sd of the points about the line itself
                slope = np.polyfit(u, v, 1)[0]
                noise = float(np.std(v - slope * u - (v.mean() - slope * u.mean()), ddof=2))
            change, se = _line_change(u, v, noise)
            if abs(change) > max(SCORE_POINTS, SDS * se):
                continue
        return int(updates[i])
    return None


RULES: dict[str, Rule] = {
    "old": level_at_every_later,
    "trend": lambda u, m: first_passing(u, m, level=False),
    "level + trend": lambda u, m: stops_moving(u, m).score_from,
}
VARIANTS: dict[str, Rule] = {
    "old at 3σ": lambda u, m: level_at_every_later(u, m, sds=3.0),
    "level at U alone": lambda u, m: first_passing(u, m, trend=False),
    "level + trend, residual σ": lambda u, m: first_passing(u, m, residual=True),
    "level + trend, U also in last fifth": lambda u, m: first_passing(u, m, last_fifth_span=False),
}
GRIDS = {"200k updates, evaluated every 4k": np.arange(4000, 200_001, 4000), "60k updates, evaluated every 2k": np.arange(2000, 60_001, 2000)}
NOISE_SDS = (3.0, 8.0, 15.0)
SEEDS = (1, 3)


def summary(budgets: list[int | None], early_before: float, late_from: float | None) -> str:
    """Median U (none: no budget in most draws), share early, share late, of one rule's draws."""
    u = np.array([np.inf if b is None else b for b in budgets], dtype=np.float64)
    median = np.median(u)
    late = "–" if late_from is None else f"{np.mean(u >= late_from):.0%}"
    return f"{'none' if np.isinf(median) else f'{median / 1000:.0f}k'} · {np.mean(u < early_before):.0%} · {late}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=200, help="noisy draws per shape, noise and seeds")
    parser.add_argument("--variants", action="store_true", help="also the variants of the chosen rule")
    args = parser.parse_args()
    rules = {**RULES, **(VARIANTS if args.variants else {})}
    rng = np.random.default_rng(2024)
    for grid_name, updates in GRIDS.items():
        T = float(updates[-1])
        print(f"\n### {grid_name}\n\nEach cell: median U · share early · share late, over {args.draws} draws.\n")
        print("| shape | noise sd | seeds | noise-free | " + " | ".join(rules) + " |")
        print("|---|---:|---:|---|" + "---|" * len(rules))
        legend = []
        for name, (shape, early_before, late_from, meaning) in shapes(T).items():
            clean = shape(updates.astype(np.float64))
            free = ", ".join(f"{r(updates, clean) or 'none'}" for r in RULES.values())
            legend.append(f"- {name}: {meaning}")
            for sd in NOISE_SDS:
                for seeds in SEEDS:
                    curves = clean + rng.normal(0.0, sd, (args.draws, seeds, len(updates))).mean(axis=1)
                    for c in curves:
                        assert first_passing(updates, c) == stops_moving(updates, c).score_from
                    cells = [summary([r(updates, c) for c in curves], early_before, late_from) for r in rules.values()]
                    print(f"| {name} | {sd:g} | {seeds} | {free} | " + " | ".join(cells) + " |", flush=True)
                    free = ""
        print("\n" + "\n".join(legend))


if __name__ == "__main__":
    main()
