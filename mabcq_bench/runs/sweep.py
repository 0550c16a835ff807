"""A sweep: every run without a record, on an executor, with progress and a summary."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from mabcq_bench.errors import UserError
from mabcq_bench.runs.executors import EXECUTORS
from mabcq_bench.runs.plan import PreparedRun, existing_record
from mabcq_bench.util import ensure_writable, lock_holder


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
) -> SweepResult:
    """Run every run without a record; skip the finished ones, and those another live process
    is training (their lock is held: ``busy``, neither run nor failed).

    Args:
        executor: a name in :data:`EXECUTORS`: ``local`` (a process pool of ``workers`` on this
            machine) or ``ray`` (one Ray task per run, on the cluster at ``address``, or on a local
            Ray instance with ``workers`` CPUs when ``address`` is None).

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
    total = sum(r.protocol["updates"] for r in pending)
    bar = tqdm(total=total, desc=f"{len(pending)} runs", unit="upd", disable=None if progress else True, dynamic_ncols=True)
    new_records = []
    outcomes = EXECUTORS[executor](pending, results, workers, bar.update, address)
    lines = progress and bar.disable  # no terminal (a log, nohup, a cluster job): a line per run
    try:
        for key, record, error in outcomes:
            if error is not None:
                failures[key] = error
                log(f"FAILED {key}: {error}")
            else:
                new_records.append(record)
                bar.set_postfix_str(f"{key} {record['final']['normalized_score']:.1f}")
            if lines:
                log(_progress_line(key, record, len(new_records) + len(failures), len(pending), time.perf_counter() - started))
    finally:
        outcomes.close()
        bar.close()
    for run in pending:  # refused because another process took its lock after the check above
        if run.spec.key in failures and (holder := lock_holder(run.spec.lock_path(results))) is not None:
            del failures[run.spec.key]
            busy[run.spec.key] = holder
    return SweepResult(done_records + new_records, len(done_records), failures, time.perf_counter() - started, busy)


def _progress_line(key: str, record: dict | None, done: int, total: int, elapsed: float) -> str:
    """``[3/18] hopper/mabcq/seed0  score 59.4  612 s  15 left, ETA 41 min``."""
    what = f"score {record['final']['normalized_score']:.1f}  {record['wall_s']:.0f} s" if record is not None else "FAILED"
    left = total - done
    eta = f", ETA {elapsed / done * left / 60:.0f} min" if left else ""
    return f"[{done}/{total}] {key}  {what}  {left} left{eta}"


def default_workers() -> int:
    return os.cpu_count() or 1
