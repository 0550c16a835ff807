"""The scoring harness: one protocol for every algorithm, a resumable results store, a process pool.

For each (task, algorithm, seed) a run loads every agent's Minari dataset, trains each agent on
its own (:func:`mabcq_bench.runs.learn.train_agents`), evaluates the joint decentralized policy every
``eval_every`` updates and at the end on fixed evaluation seeds, and writes one record:

    <results>/<tier>/<task>/<variant>/seed<k>.json

A record is written atomically once the run has finished, so a crashed run never leaves one that
looks finished. While a run trains, its state is checkpointed next to where the record will be
(``seed<k>.ckpt``); an interrupted run resumes from it. A rerun skips runs that have a record.
Every record carries a fingerprint of its configuration (algorithm config, protocol, dataset
checksums): a results folder holding a run of another configuration under the same name is an
error, never silently mixed or overwritten.

The protocol and the hyperparameters of every algorithm are data: ``baselines/<tier>.toml``.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

from mabcq_bench.errors import UserError
from mabcq_bench.util import exclusive_lock, read_tier_file, versions, write_json

RECORD_SCHEMA = 1
#: Where the shipped protocol files live (the repository's ``baselines/``).
BASELINES_DIR = Path(os.environ.get("MABCQ_BENCH_BASELINES", Path(__file__).resolve().parents[2] / "baselines"))
PROTOCOL_KEYS = {
    "updates": int,  # updates per agent
    "eval_every": int,  # learning-curve evaluation every this many updates
    "eval_episodes": int,  # joint episodes per evaluation (one per evaluation seed)
    "diag_states": int,  # states of the coordination diagnostic
    "checkpoint_every": int,  # resumable checkpoint every this many updates
    "threads": int,  # torch threads per run
}


# --- protocol files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """A tier's run protocol and per-algorithm hyperparameters (``baselines/<tier>.toml``)."""

    tier: str
    path: Path
    protocol: dict[str, int]
    algos: dict[str, dict[str, Any]]  # algo -> {field: value, "tasks": {task: {field: value}}}
    datasets: str = ""  # the tier of the datasets it trains on (``datasets = "lite"``); default: its own

    def __post_init__(self) -> None:
        if not self.datasets:
            object.__setattr__(self, "datasets", self.tier)

    def config(self, algo: str, task: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Hyperparameters of ``algo`` on ``task``: the file's values, its per-task table, then ``overrides``."""
        table = self.algos.get(algo)
        if table is None:
            raise UserError(f"{self.path} has no [algos.{algo}] table; add one (see `mabcq-bench baselines --write`)")
        values = {k: v for k, v in table.items() if k != "tasks"}
        values.update(table.get("tasks", {}).get(task, {}))
        values.update(overrides or {})
        return values


class TierProtocol(NamedTuple):
    protocol: dict[str, int]
    note: str  # the file's first line
    datasets: str | None = None  # the datasets' tier, when not the tier itself


#: The shipped tiers' protocols (what `mabcq-bench baselines --write` puts in baselines/).
DEFAULT_PROTOCOLS: dict[str, TierProtocol] = {
    "smoke": TierProtocol(
        {"updates": 200, "eval_every": 100, "eval_episodes": 2, "diag_states": 256, "checkpoint_every": 100, "threads": 1},
        "smoke: CI only (the regression gate). A few hundred updates on the smoke datasets; the scores test the pipeline, not the algorithms.",
    ),
    "lite": TierProtocol(
        {"updates": 10000, "eval_every": 1000, "eval_episodes": 5, "diag_states": 1000, "checkpoint_every": 1000, "threads": 1},
        "lite: a 2-core laptop, the committed leaderboard. Table 6 hyperparameters, 10k updates per agent.",
    ),
    "lite-long": TierProtocol(
        {"updates": 50000, "eval_every": 2500, "eval_episodes": 5, "diag_states": 1000, "checkpoint_every": 2500, "threads": 1},
        "lite-long: the lite datasets with 5x lite's training budget (50k updates per agent), to see where the algorithms separate (leaderboard/FINDINGS.md).",
        "lite",
    ),
    "paper": TierProtocol(
        {"updates": 300000, "eval_every": 10000, "eval_episodes": 10, "diag_states": 1000, "checkpoint_every": 5000, "threads": 1},
        "paper: Table 6 hyperparameters on the 1M-transition datasets. The paper does not state its number of updates; 300k is ours.",
    ),
}


def load_protocol(preset: str) -> Protocol:
    """Load ``baselines/<tier>.toml`` (or a path), checking it. One-line errors."""
    path, data = read_tier_file(preset, BASELINES_DIR, "protocol")
    proto = data.get("protocol")
    if not isinstance(data.get("tier"), str) or not isinstance(proto, dict) or not isinstance(data.get("algos"), dict):
        raise UserError(f"malformed protocol {path}: it needs tier = '...', a [protocol] table and [algos.<name>] tables")
    for key, kind in PROTOCOL_KEYS.items():
        if not isinstance(proto.get(key), kind) or isinstance(proto.get(key), bool) or proto[key] < (0 if key == "eval_every" else 1):
            raise UserError(f"malformed protocol {path}: [protocol] {key} must be a positive integer")
    unknown = set(proto) - set(PROTOCOL_KEYS)
    if unknown:
        raise UserError(f"malformed protocol {path}: unknown [protocol] key(s) {', '.join(sorted(unknown))}")
    from mabcq_bench.algos import ALGOS

    for name in data["algos"]:
        if name not in ALGOS:
            raise UserError(f"malformed protocol {path}: [algos.{name}] is not an algorithm; valid algorithms: {', '.join(ALGOS)}")
    datasets = data.get("datasets", data["tier"])
    if not isinstance(datasets, str) or not datasets:
        raise UserError(f"malformed protocol {path}: datasets = '<tier>' names the tier of the datasets it runs on")
    return Protocol(data["tier"], path, dict(proto), data["algos"], datasets)


def protocol_text(tier: str, protocol: dict[str, int], note: str, datasets: str | None = None) -> str:
    """A complete protocol file: the protocol plus every registered algorithm's resolved config
    and its per-task values (ε), so a user sees every hyperparameter without reading code.
    ``datasets`` names the datasets' tier when it is not ``tier`` itself."""
    from mabcq_bench.algos import ALGOS
    from mabcq_bench.data.tasks import TASKS

    lines = [f"# {note}", "# Generated by `mabcq-bench baselines --write`; edit freely: runs record the values they used.", f'tier = "{tier}"']
    if datasets and datasets != tier:
        lines.append(f'datasets = "{datasets}"  # trains on the {datasets} datasets')
    lines += ["", "[protocol]"]
    lines += [f"{k} = {protocol[k]}" for k in PROTOCOL_KEYS]
    for name, spec in ALGOS.items():
        base = dataclasses.asdict(spec.config())
        lines += ["", f"[algos.{name}]  # {spec.summary}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in base.items() if v is not None]
        for task in TASKS.values():
            cfg = dataclasses.asdict(spec.config(task))
            diff = {k: v for k, v in cfg.items() if base[k] != v}
            if diff:
                lines += [f"[algos.{name}.tasks.{task.name}]"] + [f"{k} = {_toml_value(v)}" for k, v in diff.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


# --- runs and the results store ------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One (tier, task, algorithm variant, seed)."""

    tier: str
    task: str
    algo: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def variant(self) -> str:
        """Display name: the algorithm plus its overrides (``mabcq epsilon=0.4``)."""
        return " ".join([self.algo] + [f"{k}={v}" for k, v in self.overrides])

    def folder(self, results: Path) -> Path:
        slug = self.variant.replace(" ", "_").replace("/", "-")
        return results / self.tier / self.task / slug

    def record_path(self, results: Path) -> Path:
        return self.folder(results) / f"seed{self.seed}.json"

    def checkpoint_path(self, results: Path) -> Path:
        return self.folder(results) / f"seed{self.seed}.ckpt"


def parse_overrides(items: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """``key=value`` pairs (values parsed as TOML/JSON scalars or lists) into sorted overrides."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes key=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key.strip()] = tuple(value) if isinstance(value, list) else value
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class PreparedRun:
    """A run with everything resolved: the spec, its config, datasets and fingerprint."""

    spec: RunSpec
    config: dict[str, Any]
    protocol: dict[str, int]
    datasets: tuple[tuple[str, str], ...]  # (id, checksum) per agent
    ref_min: float
    ref_max: float
    epsilon: float | None
    fingerprint: str
    device: str = "cpu"  # torch device of the learners (cuda runs ask Ray for a GPU)


def prepare(specs: Iterable[RunSpec], protocol: Protocol, dataset_tier: str, device: str = "cpu") -> list[PreparedRun]:
    """Resolve configs and check datasets for every run, before any work starts."""
    from mabcq_bench.algos import get_algo
    from mabcq_bench.data.tasks import get_task

    specs = list(specs)
    _check_all_present(sorted({s.task for s in specs}, key=[s.task for s in specs].index), dataset_tier)
    # runs on another version of the datasets are filed and tabulated apart (never mixed)
    specs = [dataclasses.replace(s, tier=board_name(s.tier, dataset_version(s.task, dataset_tier))) for s in specs]
    datasets_of: dict[str, tuple[tuple[tuple[str, str], ...], float, float]] = {}
    out = []
    for spec in specs:
        task = get_task(spec.task)
        algo = get_algo(spec.algo)
        if spec.task not in datasets_of:
            datasets_of[spec.task] = check_datasets(task, dataset_tier)
        values = protocol.config(spec.algo, spec.task, dict(spec.overrides))
        cfg = dataclasses.asdict(algo.config(task, **values))
        cfg = json.loads(json.dumps(cfg))  # tuples as lists: what a record holds
        ids, ref_min, ref_max = datasets_of[spec.task]
        identity = {"task": spec.task, "algo": spec.algo, "config": cfg, "protocol": protocol.protocol, "datasets": ids}
        if device != "cpu":  # other devices give other numbers: never mixed with CPU runs
            identity["device"] = device
        fp = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        out.append(PreparedRun(spec, cfg, dict(protocol.protocol), ids, ref_min, ref_max, cfg.get("epsilon") if cfg.get("use_vd", False) else None, fp, device))
    return out


def _dataset_ids(task, tier: str) -> list[str]:
    from mabcq_bench.data.recipes import dataset_id

    version = dataset_version(task.name, tier)
    return [dataset_id(task.name, tier, i, version) for i in range(task.n_agents)]


def _check_all_present(task_names: Sequence[str], tier: str) -> None:
    """One line naming every task whose datasets are missing, with the command that makes them."""
    from mabcq_bench.data.datasets import dataset_path
    from mabcq_bench.data.tasks import get_task

    missing = [name for name in task_names if any(not dataset_path(i).exists() for i in _dataset_ids(get_task(name), tier))]
    if missing:
        raise UserError(f"the {tier} datasets of {', '.join(missing)} are missing; make them with `mabcq-bench make-data --env {','.join(missing)} --preset {tier}`")


def board_name(tier: str, version: int) -> str:
    """The name a run's records are filed and tabulated under: the protocol tier for runs on
    version-0 datasets (the first leaderboard's), ``<tier>-v<N>`` for runs on version N. Runs
    on different versions of the datasets are different experiments: their records live in
    different folders and tables, never in one cell."""
    return tier if version == 0 else f"{tier}-v{version}"


def dataset_version(task: str, tier: str) -> int:
    """The dataset version runs of ``tier`` use: the one its recipe (``datasets/<tier>.toml``)
    makes; for a tier without a recipe file there (a user's recipe passed by path), the newest
    version in the local Minari store."""
    import re

    from mabcq_bench.data.datasets import datasets_root
    from mabcq_bench.data.recipes import load_recipe

    try:
        return load_recipe(tier).for_task(task).dataset_version
    except UserError:
        found = [int(m.group(1)) for p in (datasets_root() / "mabcq" / task).glob(f"{tier}-agent0-v*") if (m := re.fullmatch(rf"{re.escape(tier)}-agent0-v(\d+)", p.name))]
        return max(found, default=0)


def check_datasets(task, tier: str) -> tuple[tuple[tuple[str, str], ...], float, float]:
    """Every agent's dataset of ``task`` at ``tier``: present, readable, and shaped for the task.

    Returns ((id, checksum) per agent, ref_min_score, ref_max_score).
    """
    from mabcq_bench.data.datasets import dataset_path, read_metadata

    ids = _dataset_ids(task, tier)
    missing = [i for i in ids if not dataset_path(i).exists()]
    if missing:
        raise UserError(f"datasets {', '.join(missing)} are missing; make them with `mabcq-bench make-data --env {task.name} --preset {tier}`")
    out, refs = [], set()
    for agent, dataset_id in enumerate(ids):
        md = read_metadata(dataset_id)
        shape_ok = (
            md.get("task") == task.name
            and md.get("agent") == agent
            and md.get("n_agents") == task.n_agents
            and tuple(md["observation_space"].shape) == (task.state_dim,)
            and tuple(md["action_space"].shape) == (task.action_dims[agent],)
        )
        if not shape_ok:
            raise UserError(f"dataset {dataset_id} does not match task {task.name} (agent {agent}: state {task.state_dim}, action {task.action_dims[agent]}); remake it with make-data")
        if md.get("computed_checksum") != md.get("checksum"):
            raise UserError(f"dataset {dataset_id} is corrupt (its data does not match its checksum); remake it with make-data")
        if md.get("ref_min_score") is None or md.get("ref_max_score") is None:
            raise UserError(f"dataset {dataset_id} has no reference scores; remake it with make-data")
        refs.add((float(md["ref_min_score"]), float(md["ref_max_score"]), md.get("recipe_fingerprint")))
        out.append((dataset_id, md["checksum"]))
    if len(refs) != 1:
        raise UserError(f"the {task.name} {tier} datasets come from different recipes; remake them with make-data")
    (ref_min, ref_max, _), = refs
    return tuple(out), ref_min, ref_max


def existing_record(run: PreparedRun, results: Path) -> dict | None:
    """The finished record of ``run``, ``None`` if absent; a record of another configuration
    under the same name, or an unreadable one, is an error."""
    path = run.spec.record_path(results)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"result record {path} is corrupt; move it away to rerun that run") from None
    if not isinstance(record, dict) or record.get("status") != "finished":
        raise UserError(f"result record {path} is corrupt; move it away to rerun that run")
    if record.get("config_fingerprint") != run.fingerprint:
        raise UserError(
            f"{results} holds {run.spec.task}/{run.spec.variant} seed {run.spec.seed} of another configuration "
            f"(fingerprint {record.get('config_fingerprint')}, now {run.fingerprint}); use another --results folder"
        )
    return record


# --- executing --------------------------------------------------------------------------------


def execute(run: PreparedRun, results: Path, progress: Callable[[int], None] | None = None) -> dict:
    """Train and evaluate one run (resuming from its checkpoint) and write its record.

    A run is locked while it trains (``seed<k>.lock``, released by the OS if the process dies):
    a second process given the same run, such as two sweeps over one store, fails it with one
    line instead of training it twice.
    """
    done = existing_record(run, results)
    if done is not None:  # a retry of a run whose worker died after writing its record
        return done
    lock = run.spec.checkpoint_path(results).with_suffix(".lock")
    with exclusive_lock(lock, f"run {run.spec.tier}/{run.spec.task}/{run.spec.variant}/seed{run.spec.seed}"):
        try:
            ckpt = run.spec.checkpoint_path(results)
            for debris in ckpt.parent.glob(f".{ckpt.name}*"):  # temp files of a writer that was killed
                debris.unlink(missing_ok=True)
            done = existing_record(run, results)  # finished by another process while we waited to start
            record = done if done is not None else _train_and_record(run, results, progress)
        finally:  # a failed run leaves its checkpoint (a rerun resumes it), not its lock
            lock.unlink(missing_ok=True)
    return record


def _train_and_record(run: PreparedRun, results: Path, progress: Callable[[int], None] | None) -> dict:
    import numpy as np

    from mabcq_bench.report.aggregate import normalized_score
    from mabcq_bench.runs.learn import train_agents
    from mabcq_bench.data.tasks import get_task

    spec, proto = run.spec, run.protocol
    task = get_task(spec.task)
    started = time.time()
    ckpt = spec.checkpoint_path(results)
    marker = ckpt.with_suffix(".ckpt.json")
    if ckpt.exists():
        saved = json.loads(marker.read_text()) if marker.exists() else {}
        if saved.get("config_fingerprint") != run.fingerprint:
            raise UserError(f"checkpoint {ckpt} belongs to another configuration; use another --results folder")
    # the marker names the process working on the run (for a person, or a test, looking in)
    write_json(marker, {"config_fingerprint": run.fingerprint, "pid": os.getpid(), "host": os.uname().nodename})
    datasets = [_agent_data(dataset_id, checksum) for dataset_id, checksum in run.datasets]
    last = [0]

    def on_update(done: int, _metrics) -> None:
        if progress is not None and (done - last[0] >= 25 or done == proto["updates"]):
            progress(done - last[0])
            last[0] = done

    values = {k: v for k, v in run.config.items()}
    result = train_agents(
        task,
        datasets,
        spec.algo,
        updates=proto["updates"],
        seed=spec.seed,
        eval_every=proto["eval_every"],
        eval_episodes=proto["eval_episodes"],
        diag_states=proto["diag_states"],
        checkpoint=ckpt,
        checkpoint_every=proto["checkpoint_every"],
        threads=proto["threads"],
        device=run.device,
        overrides=values,
        on_update=on_update,
    )

    def score(returns) -> float:
        return float(normalized_score(float(np.mean(returns)), run.ref_min, run.ref_max))

    final = result.evaluations[-1]
    record = {
        "schema": RECORD_SCHEMA,
        "status": "finished",
        "tier": spec.tier,
        "task": spec.task,
        "algo": spec.algo,
        "variant": spec.variant,
        "overrides": {k: v for k, v in spec.overrides},
        "epsilon": run.epsilon,
        "seed": spec.seed,
        "config_fingerprint": run.fingerprint,
        "config": run.config,
        "protocol": proto,
        "versions": versions(),
        "datasets": [{"id": i, "checksum": c} for i, c in run.datasets],
        "ref_min_score": run.ref_min,
        "ref_max_score": run.ref_max,
        "final": {
            "returns": final.returns,
            "return_mean": final.mean_return,
            "normalized_score": score(final.returns),
            "coordination_gap": final.coordination_gap,
        },
        "curve": [
            {"updates": e.update, "return_mean": e.mean_return, "normalized_score": score(e.returns), "coordination_gap": e.coordination_gap}
            for e in result.evaluations
        ],
        "metrics": result.metrics,
        "updates": result.updates,
        "wall_s": round(time.time() - started, 1),  # this call: loading, training, scoring
        "train_wall_s": round(result.total_wall_s, 1),  # training over every call of this run
    }
    write_json(spec.record_path(results), record)
    ckpt.unlink(missing_ok=True)
    marker.unlink(missing_ok=True)
    return record


_DATA_CACHE: dict[tuple[str, str], Any] = {}


def _agent_data(dataset_id: str, checksum: str):
    """Agent data, cached per worker process (a worker runs many seeds of one task)."""
    from mabcq_bench.data.datasets import load_agent_data

    key = (dataset_id, checksum)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_agent_data(dataset_id)
    return _DATA_CACHE[key]


_EVENTS = None  # the worker's end of the progress queue (set by _init_worker)


def _init_worker(events) -> None:
    """Pool worker start: Ctrl-C is the parent's to handle (it stops the workers itself)."""
    global _EVENTS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _EVENTS = events


def _worker(run: PreparedRun, results: str) -> tuple[str, dict | None, str | None]:
    """Pool entry point: never raises, reports (key, record, error line)."""
    key = f"{run.spec.task}/{run.spec.variant}/seed{run.spec.seed}"
    try:
        record = execute(run, Path(results), progress=_EVENTS.put if _EVENTS is not None else None)
        return key, record, None
    except UserError as exc:
        return key, None, str(exc)
    except Exception as exc:  # a crash: the run has no record and will be retried on rerun
        return key, None, f"{type(exc).__name__}: {exc}".splitlines()[0]


Outcome = tuple[str, "dict | None", "str | None"]  # (run key, record, one-line error)


def local_pool(pending: Sequence[PreparedRun], results: Path, workers: int, on_progress: Callable[[int], None], address: str | None = None) -> Iterator[Outcome]:
    """Run ``pending`` on a pool of ``workers`` spawned processes on this machine."""
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            try:
                on_progress(events.get(timeout=0.2))
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):
                return

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    pool = cf.ProcessPoolExecutor(max_workers=max(1, min(workers, len(pending))), mp_context=ctx, initializer=_init_worker, initargs=(events,))
    try:
        futures = [pool.submit(_worker, run, str(results)) for run in pending]
        for future in cf.as_completed(futures):
            yield future.result()
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
        stop.set()
        pumper.join(timeout=2)


def _ray_pool(*args, **kwargs) -> Iterator[Outcome]:
    from mabcq_bench.runs.ray import ray_pool  # Ray is an optional extra, imported only when asked for

    return ray_pool(*args, **kwargs)


#: How runs are executed: name -> generator of outcomes (see :func:`local_pool`).
EXECUTORS: dict[str, Callable[..., Iterator[Outcome]]] = {"local": local_pool, "ray": _ray_pool}


@dataclass
class SweepResult:
    records: list[dict]
    skipped: int
    failures: dict[str, str]
    wall_s: float


def run_sweep(
    runs: Sequence[PreparedRun],
    results: Path,
    workers: int,
    progress: bool = True,
    log: Callable[[str], None] = print,
    executor: str = "local",
    address: str | None = None,
) -> SweepResult:
    """Run every run without a record; skip the finished ones.

    Args:
        executor: a name in :data:`EXECUTORS`: ``local`` (a process pool of ``workers`` on this
            machine) or ``ray`` (one Ray task per run, on the cluster at ``address``, or on a local
            Ray instance with ``workers`` CPUs when ``address`` is None).
    """
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
    from tqdm.auto import tqdm

    started = time.perf_counter()
    done_records, pending = [], []
    for run in runs:
        record = existing_record(run, results)
        (done_records.append(record) if record is not None else pending.append(run))
    if done_records:
        log(f"{len(done_records)} of {len(runs)} runs already finished in {results}; skipping them")
    failures: dict[str, str] = {}
    if not pending:
        return SweepResult(done_records, len(done_records), failures, time.perf_counter() - started)

    results.mkdir(parents=True, exist_ok=True)
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
    return SweepResult(done_records + new_records, len(done_records), failures, time.perf_counter() - started)


def _progress_line(key: str, record: dict | None, done: int, total: int, elapsed: float) -> str:
    """``[3/18] hopper/mabcq/seed0  score 59.4  612 s  15 left, ETA 41 min``."""
    what = f"score {record['final']['normalized_score']:.1f}  {record['wall_s']:.0f} s" if record is not None else "FAILED"
    left = total - done
    eta = f", ETA {elapsed / done * left / 60:.0f} min" if left else ""
    return f"[{done}/{total}] {key}  {what}  {left} left{eta}"


def default_workers() -> int:
    return os.cpu_count() or 1
