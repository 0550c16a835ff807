"""A sweep: every run without a record, on an executor, with progress and a summary."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from mabcq_bench.errors import UserError
from mabcq_bench.runs.executors import EXECUTORS
from mabcq_bench.runs.plan import PreparedRun, describe_plan, existing_record, work_units
from mabcq_bench.util import bars_fit, duration, ensure_writable, lock_holder

#: Seconds between two plain progress lines (no terminal, a 0-column one, or --no-progress).
LINE_EVERY = 60.0


@dataclass
class SweepResult:
    records: list[dict]
    skipped: int
    failures: dict[str, str]  # run key -> one-line error
    wall_s: float
    busy: dict[str, str] = field(default_factory=dict)  # run key -> the live process training it (``pid 123 on host``)


def run_sweep(
    runs: Sequence[PreparedRun],
    results: Path,
    workers: int,
    progress: bool = True,
    log: Callable[[str], None] = print,
    executor: str = "local",
    address: str | None = None,
    line_every: float = LINE_EVERY,
) -> SweepResult:
    """Run every run without a record; skip the finished ones, and those another live process
    is training (their lock is held: ``busy``, neither run nor failed).

    Progress: a bar with ETA on a terminal (with ``progress``); otherwise (a log file, a pipe, a
    0-column terminal, or ``progress`` off) plain lines through ``log``: one per finished run,
    and one at most every ``line_every`` seconds while runs train (runs and updates done, ETA).

    Args:
        executor: a name in :data:`EXECUTORS`: ``local`` (a process pool of ``workers`` on this
            machine) or ``ray`` (one Ray task per run, on the cluster at ``address``, or on a local
            Ray instance with ``workers`` CPUs when ``address`` is None).
        line_every: seconds between two progress lines (0: one per progress report).

    Raises:
        UserError: an unknown executor, or runs to make in a results store that cannot be written.
    """
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
    from tqdm.auto import tqdm

    started = time.perf_counter()
    done_records, pending, busy = [], [], {}
    for run in runs:
        record = existing_record(run, results)
        if record is not None:
            done_records.append(record)
        elif (holder := lock_holder(run.spec.lock_path(results))) is not None:
            busy[run.spec.key] = holder
        else:
            pending.append(run)
    if done_records:
        log(f"{len(done_records)} of {len(runs)} runs already finished in {results}; skipping them")
    if busy:
        log(f"{len(busy)} of {len(runs)} runs are being trained by another process; not starting them")
    failures: dict[str, str] = {}
    if not pending:
        return SweepResult(done_records, len(done_records), failures, time.perf_counter() - started, busy)

    ensure_writable(results, "results store")  # one line now, not a failure per run (a read-only store)
    log(f"plan: {describe_plan(runs)}")  # the whole sweep, said before any run starts
    total = sum(r.protocol["updates"] for r in pending)
    lines = not bars_fit(progress)  # a log, nohup, a cluster job, a 0-column terminal: plain lines
    bar = tqdm(total=total, desc=f"{len(pending)} runs", unit="upd", disable=lines, dynamic_ncols=True)
    ticker = ProgressLines(len(pending), total, log, line_every) if lines else None

    def on_progress(n: int, resumed: bool = False) -> None:  # called from the executor's progress thread
        if resumed:  # a checkpoint's updates move the bar, not its rate (they were made before)
            bar.n += n
            bar.last_print_n = bar.n
            bar.refresh()
        else:
            bar.update(n)
        if ticker is not None:
            ticker.updated(n, resumed)

    new_records = []
    outcomes = EXECUTORS[executor](work_units(pending), results, workers, on_progress, address)
    try:
        for key, record, error in outcomes:
            if error is not None:
                failures[key] = error
                log(f"FAILED {key}: {error}")
            else:
                new_records.append(record)
                bar.set_postfix_str(f"{key} {record['final']['normalized_score']:.1f}")
            if ticker is not None:
                ticker.run_done()
                log(_progress_line(key, record, len(new_records) + len(failures), len(pending), time.perf_counter() - started))
    finally:
        outcomes.close()
        bar.close()
    for run in pending:  # refused because another process took its lock after the check above
        if run.spec.key in failures and (holder := lock_holder(run.spec.lock_path(results))) is not None:
            del failures[run.spec.key]
            busy[run.spec.key] = holder
    return SweepResult(done_records + new_records, len(done_records), failures, time.perf_counter() - started, busy)


class ProgressLines:
    """Plain progress lines for a sweep without bars, at most one every ``every`` seconds:
    ``progress: 1 of 13 runs finished, 24,000 of 520,000 updates (4.6%), 9 min elapsed, ETA 3 h 05 min``.

    The ETA is priced at the rate of the updates made since the sweep started: those a resumed run's
    checkpoint already had count as done, not as speed. ``updated`` may be called from another
    thread (the executor's progress pump) than ``run_done``; ``clock`` is for tests."""

    def __init__(self, runs: int, updates: int, log: Callable[[str], None], every: float = LINE_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.runs, self.updates, self.log, self.every, self.clock = runs, updates, log, every, clock
        self.started = self.last = clock()
        self.done_updates = self.done_runs = self.resumed_updates = 0
        self._lock = threading.Lock()

    def updated(self, n: int, resumed: bool = False) -> None:
        """``n`` more updates were made (``resumed``: found in a checkpoint); prints a line if the
        last one is ``every`` seconds old."""
        with self._lock:
            self.done_updates += n
            if resumed:
                self.resumed_updates += n
            now = self.clock()
            if now - self.last < self.every:
                return
            self.last = now
            line = self.line(now)
        self.log(line)

    def run_done(self) -> None:
        with self._lock:
            self.done_runs += 1

    def line(self, now: float) -> str:
        elapsed = now - self.started
        done, total = min(self.done_updates, self.updates), self.updates
        made = done - min(self.resumed_updates, done)  # in this sweep, at the rate the ETA assumes
        eta = f", ETA {duration(elapsed / made * (total - done))}" if 0 < made and done < total else ""
        return (
            f"progress: {self.done_runs} of {self.runs} runs finished, {done:,} of {total:,} updates "
            f"({100 * done / max(total, 1):.1f}%), {duration(elapsed)} elapsed{eta}"
        )


def _progress_line(key: str, record: dict | None, done: int, total: int, elapsed: float) -> str:
    """``[3/18] hopper/mabcq/seed0  score 59.4  612 s  15 left, ETA 41 min``."""
    what = f"score {record['final']['normalized_score']:.1f}  {record['wall_s']:.0f} s" if record is not None else "FAILED"
    left = total - done
    eta = f", ETA {duration(elapsed / done * left)}" if left else ""
    return f"[{done}/{total}] {key}  {what}  {left} left{eta}"


def default_workers() -> int:
    return os.cpu_count() or 1
