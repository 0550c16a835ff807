"""Executors: how a sweep's pending runs are carried out. One interface, several engines.

An executor is a function ``(pending, results, workers, on_progress, address) -> iterator of
Outcome``: it runs every unit of ``pending`` (a tuple of
:class:`~mabcq_bench.runs.plan.PreparedRun`: one run, or the seeds of one (task, algorithm) that
train as one stack, :func:`~mabcq_bench.runs.plan.work_units`) through
:func:`~mabcq_bench.runs.execute.run_unit` wherever it likes, calls ``on_progress(n, resumed)`` as updates
are done (``resumed``: the ``n`` updates a run's checkpoint already had, which its progress skips), and yields each run's outcome as its unit finishes. ``local`` is a pool of spawned processes
on this machine; ``ray`` one Ray task per run (:mod:`mabcq_bench.runs.ray`, an optional extra).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import queue
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator, Sequence

from mabcq_bench.runs.execute import Outcome, run_unit
from mabcq_bench.runs.plan import PreparedRun

_EVENTS = None  # a pool worker's end of the progress queue (set by _init_worker)


def _init_worker(events) -> None:
    """Pool worker start: Ctrl-C is the parent's to handle (it stops the workers itself), and a
    worker whose parent dies, however it dies, is sent SIGTERM by the kernel (Linux), so no
    orphan goes on training behind the user's back."""
    global _EVENTS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _EVENTS = events


def _die_with_parent() -> None:
    """``prctl(PR_SET_PDEATHSIG, SIGTERM)`` where the C library offers it (Linux); else nothing."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _terminate_as_interrupt(signum, frame) -> None:
    """SIGTERM to the sweep's process: stop the way Ctrl-C stops it (workers terminated,
    checkpoints kept)."""
    raise KeyboardInterrupt


def _pool_task(unit: tuple[PreparedRun, ...], results: str) -> list[Outcome]:
    events = _EVENTS
    return run_unit(unit, Path(results), progress=(lambda n, resumed: events.put((n, resumed))) if events is not None else None)


def local_pool(
    pending: Sequence[tuple[PreparedRun, ...]], results: Path, workers: int, on_progress: Callable[[int, bool], None], address: str | None = None
) -> Iterator[Outcome]:
    """Run the units of ``pending`` on a pool of ``workers`` spawned processes on this machine."""
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            try:
                on_progress(*events.get(timeout=0.2))
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):
                return

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    pool = cf.ProcessPoolExecutor(max_workers=max(1, min(workers, len(pending))), mp_context=ctx, initializer=_init_worker, initargs=(events,))
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt) if main else None
    try:
        futures = [pool.submit(_pool_task, unit, str(results)) for unit in pending]
        for future in cf.as_completed(futures):
            yield from future.result()
        pool.shutdown()
    except BaseException:
        # Ctrl-C (or the consumer stopping): stop now. Killing a worker mid-run is safe:
        # checkpoints and records are written atomically, so a rerun resumes every unfinished run.
        workers_alive = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers_alive:
            proc.terminate()
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        stop.set()
        pumper.join(timeout=2)


def _ray_pool(*args, **kwargs) -> Iterator[Outcome]:
    from mabcq_bench.runs.ray import ray_pool  # Ray is an optional extra, imported only when asked for

    return ray_pool(*args, **kwargs)


#: How runs are executed: name -> generator of outcomes (see :func:`local_pool`).
EXECUTORS: dict[str, Callable[..., Iterator[Outcome]]] = {"local": local_pool, "ray": _ray_pool}
