"""What a sweep costs before it runs: each planned run's CPU time, priced from recorded runs.

A run's record times its training (``train_cpu_s``), each learning-curve evaluation
(``curve[k].cpu_s``) and its final evaluation (``final.cpu_s``) in the process's CPU time, and
each beside in wall time (``train_wall_s``, ``wall_s``); records from before CPU time was kept
have wall times only. A record is read on one clock (:func:`mabcq_bench.util.run_times`): CPU
time where it has it, what the run took of a core whatever else the machine did; else wall time,
which also counts the time a run was paused or shared its core. From the records of one
(setting, task, algorithm) :func:`measure` takes

- **ms per update** of all the task's agents: the training time with every evaluation taken out,
  over the updates (checkpoint writes stay in; loading the datasets is not training time);
- **s per evaluation episode** at each curve point: the evaluation's time (its episodes, run
  as one batch of environments, and the coordination diagnostic) over its episodes. Episodes
  lengthen as a policy learns to stay up, so it is kept per point and read off by the update,
  linearly between points and held at the last one beyond a record's end. Per episode, so that a
  protocol with other ``eval_episodes`` is priced from the same records.

:func:`estimate` prices a planned run as updates × ms per update plus, over every evaluation it
makes (:func:`evaluation_points`), its episodes × s per episode at that update. Which records
price it:

- those of its own setting, task and algorithm, made as a sweep makes CPU runs (one torch thread,
  agents or seeds not stacked, no CUDA graphs) and without ``--set`` overrides, on any board (a study
  board measures the same learner on the same data); several: the mean ms per update and the mean
  of their s per episode. Those with CPU times where any has them, else those with wall times,
  and the table says which (``cpu`` or ``wall`` in the priced-from column);
- a variant (``--set epsilon=0.2``) is priced as its algorithm: an override of the batch size or
  the networks changes the cost, and the estimate does not see it;
- an algorithm without timed records of its own that is another entry's learner with switches
  (its registry preset: mabcq-no-tn, mabcq-no-vd and bcq are mabcq's learner, behavior is bc's)
  is priced as that entry, and says so;
- a reference row (zero-action, random: its learner trains nothing) costs its evaluations only;
- anything else is not measured: its runs are left out of the total, which says how many runs it
  covers. Records from before evaluations were timed measure nothing (they are named).

CPU time is one thread's, as the records were made (``threads = 1``, each run in a worker process
of its own): a record's CPU time is what its run took of a core, its wall time is that only where
nothing else shared the core (the sweep's own condition, two runs at a time on two cores). The wall
time at W runs at once assumes W free cores.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from mabcq_bench.runs.plan import PlannedRun, PreparedRun, counted
from mabcq_bench.util import duration, run_times

#: The committed records (``leaderboard/records``), found from the package as the protocol files
#: are, so ``run --dry-run`` prices from them from any folder.
RECORDS_PATH = Path(__file__).resolve().parents[2] / "leaderboard" / "records"

#: (setting, task, algorithm): what a measurement is of.
Key = tuple[str, str, str]


@dataclass(frozen=True, eq=False)
class Measured:
    """The cost of one (setting, task, algorithm), from its timed records."""

    setting: str
    task: str
    algo: str
    boards: tuple[str, ...]  # the boards of the records it comes from
    update_ms: float  # one update of all the task's agents, evaluations taken out (mean over records)
    curves: tuple[tuple[np.ndarray, np.ndarray], ...]  # per record: curve updates, s per episode there
    clock: str  # what the records' times are: "cpu" (the process's CPU time) or "wall"

    @property
    def runs(self) -> int:
        return len(self.curves)

    def episode_s(self, update: float) -> float:
        """Seconds per evaluation episode at ``update``: each record's, read off its curve, averaged."""
        return float(np.mean([np.interp(update, u, s) for u, s in self.curves]))

    def source(self) -> str:
        return f"{', '.join(self.boards)} ({self.runs} run{'' if self.runs == 1 else 's'}, {self.clock})"


@dataclass(frozen=True)
class Costs:
    """What a folder of records measures."""

    measured: dict[Key, Measured]
    untimed: dict[Key, tuple[str, ...]]  # cells whose records predate per-evaluation wall times: their boards


def _setting(rec: Mapping) -> str:
    return str(rec.get("setting") or ("centralized" if str(rec.get("tier", "")).endswith("-centralized") else "decentralized"))


def _sweep_made(rec: Mapping) -> bool:
    """Made as a sweep makes a CPU run of the algorithm itself: on the CPU, one thread, unstacked (agents
    and seeds), no graphs, no overrides."""
    return (
        rec.get("protocol", {}).get("threads") == 1
        and rec.get("device", "cpu") == "cpu"
        and not rec.get("stacked_agents")
        and rec.get("stacked_seeds", 1) == 1
        and not rec.get("cuda_graph")
        and not rec.get("overrides")
        and rec.get("variant", rec.get("algo")) == rec.get("algo")
    )


class Timing(NamedTuple):
    """One record's timing, on the clock of :func:`mabcq_bench.util.run_times`."""

    clock: str  # "cpu" or "wall"
    update_ms: float  # one update of all the task's agents, evaluations taken out
    updates: np.ndarray  # the curve's points (updates)
    episode_s: np.ndarray  # s per evaluation episode at each


def _timing(rec: Mapping) -> Timing | None:
    """One record's timing, on its clock; None if it does not time its evaluations."""
    times, updates, curve = run_times(rec), rec.get("updates"), rec.get("curve") or []
    if times is None or not updates:
        return None
    episodes = [len(p.get("returns") or ()) or rec.get("protocol", {}).get("eval_episodes", 0) for p in curve]
    if not all(episodes):
        return None
    per_episode = np.array([s / n for s, n in zip(times.curve_s, episodes)], dtype=np.float64)
    update_ms = 1000.0 * (times.train_s - sum(times.curve_s) - times.final_s) / updates
    return Timing(times.clock, update_ms, np.array([p["updates"] for p in curve], dtype=np.float64), per_episode)


def measure(records: Iterable[Mapping]) -> Costs:
    """Every (setting, task, algorithm) the records time, and those whose records do not.

    Args:
        records: run records (``mabcq_bench.report.records.load_records``), of any boards.
    """
    timed: dict[Key, list[tuple[str, Timing]]] = {}
    untimed: dict[Key, list[str]] = {}
    for rec in records:
        if not _sweep_made(rec):
            continue
        key = (_setting(rec), str(rec["task"]), str(rec["algo"]))
        t = _timing(rec)
        if t is None:
            untimed.setdefault(key, []).append(str(rec["tier"]))
        else:
            timed.setdefault(key, []).append((str(rec["tier"]), t))
    measured = {}
    for key, runs in timed.items():
        runs = [(b, t) for b, t in runs if t.clock == "cpu"] or runs  # CPU times where any record has them: never the clocks mixed
        boards = tuple(dict.fromkeys(b for b, _ in runs))
        curves = tuple((t.updates, t.episode_s) for _, t in runs)
        measured[key] = Measured(*key, boards, float(np.mean([t.update_ms for _, t in runs])), curves, runs[0][1].clock)
    return Costs(measured, {k: tuple(dict.fromkeys(v)) for k, v in untimed.items() if k not in measured})


def evaluation_points(protocol: Mapping[str, int]) -> list[tuple[int, int]]:
    """(update, episodes) of every evaluation a run of ``protocol`` makes, as
    :func:`mabcq_bench.runs.learn.train_agents` makes them: ``eval_episodes`` every ``eval_every``
    updates and after the last; then the final's ``final_eval_episodes``, after the last update,
    or in equal shares at the last ``final_checkpoints`` evaluation points (protocol 3)."""
    updates, every = int(protocol["updates"]), int(protocol["eval_every"])
    curve = list(range(every, updates + 1, every)) if every else []
    if not curve or curve[-1] != updates:
        curve.append(updates)
    points = [(u, int(protocol["eval_episodes"])) for u in curve]
    final, k = int(protocol["final_eval_episodes"]), int(protocol.get("final_checkpoints", 1))
    if k > 1:
        points += [(updates - i * every, final // k) for i in range(k)]
    else:
        points.append((updates, final))
    return points


@dataclass(frozen=True)
class RunCost:
    """One planned run's estimated CPU time (seconds), or why it has none."""

    run: PlannedRun | PreparedRun
    measured: Measured | None  # the records that price it; None: not measured
    note: str  # how it is priced ("as mabcq", "evaluations only") or why it is not
    update_s: float = 0.0
    eval_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.update_s + self.eval_s


def _stand_in(algo: str) -> str | None:
    """The registry entry whose learner ``algo`` is with switches (its preset), or None."""
    from mabcq_bench.algos import ALGOS

    spec = ALGOS[algo]
    if not spec.preset:
        return None
    return next((a.name for a in ALGOS.values() if a.learner is spec.learner and not a.preset and a.name != algo), None)


def _price(run: PlannedRun | PreparedRun, costs: Costs) -> RunCost:
    from mabcq_bench.algos import ALGOS

    spec = run.spec
    own = (spec.setting, spec.task, spec.algo)
    trains = getattr(ALGOS[spec.algo].learner, "trains", True)
    measured, note = costs.measured.get(own), ""
    if measured is None and trains and (other := _stand_in(spec.algo)) is not None:
        measured = costs.measured.get((spec.setting, spec.task, other))
        note = f"as {other}, no timed {spec.algo} record"
    if measured is None:
        boards = costs.untimed.get(own)
        why = f"its records do not time their evaluations ({', '.join(boards)})" if boards else "no record"
        return RunCost(run, None, f"not measured: {why}")
    if not trains:
        note = "evaluations only"
    elif spec.overrides and not note:  # a variant: its algorithm's records
        note = f"as {spec.algo}"
    points = evaluation_points(run.protocol)
    update_s = run.protocol["updates"] * measured.update_ms / 1000.0 if trains else 0.0
    return RunCost(run, measured, note, update_s, sum(n * measured.episode_s(u) for u, n in points))


def estimate(runs: Sequence[PlannedRun | PreparedRun], costs: Costs) -> list[RunCost]:
    """Each planned run's CPU time from ``costs`` (see the module's doc for which records price it)."""
    return [_price(run, costs) for run in runs]


def wall_s(cpu_s: Sequence[float], workers: int) -> float:
    """The wall time of runs of ``cpu_s`` seconds each, in this order, ``workers`` at once: each
    starts when a worker is free, as the sweep's process pool takes them."""
    free = [0.0] * max(1, workers)
    for s in cpu_s:
        heapq.heappush(free, heapq.heappop(free) + s)
    return max(free)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f}" if seconds >= 36000 else f"{seconds / 3600:.2f}"


def format_estimate(costs: Sequence[RunCost], workers: int) -> str:
    """The table of ``run --dry-run``: per task and learner, the runs, updates per agent, ms per
    update, evaluation seconds per run, CPU-hours of all its runs and what prices them (the
    records' boards, their count and clock); then what the clocks mean, the total CPU-hours, the
    runs it covers, and the wall time at ``workers`` runs at once."""
    rows: dict[tuple[str, str], list[RunCost]] = {}
    for c in costs:
        rows.setdefault((c.run.spec.task, c.run.spec.variant), []).append(c)
    table = [("task", "learner", "runs", "updates", "ms/update", "eval s/run", "CPU-h", "priced from")]
    for (task, variant), items in rows.items():
        first = items[0]
        updates = " or ".join(f"{u:,}" for u in sorted({int(c.run.protocol["updates"]) for c in items}))
        if first.measured is None:
            table.append((task, variant, str(len(items)), updates, "–", "–", "–", first.note))
            continue
        per_update = f"{first.measured.update_ms:.1f}" if first.update_s else "–"
        source = f"{first.note}: {first.measured.source()}" if first.note else first.measured.source()
        eval_s = np.mean([c.eval_s for c in items])
        table.append((task, variant, str(len(items)), updates, per_update, f"{eval_s:.0f}", _hours(sum(c.cpu_s for c in items)), source))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + "  " + cells[-1]

    out = [line(table[0]), "  ".join("-" * w for w in widths) + "  " + "-" * len(table[0][-1]), *(line(r) for r in table[1:])]
    priced = [c for c in costs if c.measured is not None]
    if priced:
        out.append("(cpu: priced from the records' CPU time; wall: from their wall time, which also counts pauses and a shared core)")
    cpu = [c.cpu_s for c in priced]
    left = len(costs) - len(priced)
    cells = len({k for k, items in rows.items() if items[0].measured is None})
    out.append(
        f"total: {_hours(sum(cpu))} CPU-hours for {len(priced)} of {len(costs)} runs"
        + (f"; {counted(left, 'run')} ({counted(cells, 'task-learner cell')}) not measured, left out" if left else "")
    )
    out.append(f"wall time at {workers} runs at once, each on a core of its own: {duration(wall_s(cpu, workers))}" + (" (the measured runs)" if left else ""))
    return "\n".join(out)
