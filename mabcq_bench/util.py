"""Small shared helpers: atomic files, locks, derived seeds, package versions, device checks, a
record's times."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np

from mabcq_bench.errors import UserError

#: Packages whose versions every artifact records (scores are comparable only on equal versions).
TRACKED_PACKAGES = (
    "mabcq-bench",
    "torch",
    "numpy",
    "gymnasium",
    "gymnasium-robotics",
    "mujoco",
    "stable-baselines3",
    "minari",
    "h5py",
)


_UMASK = os.umask(0)
os.umask(_UMASK)


def home() -> Path:
    """mabcq-bench's own cache (experts, staging): ``$MABCQ_BENCH_HOME`` or ``~/.mabcq-bench``."""
    return Path(os.environ.get("MABCQ_BENCH_HOME", Path.home() / ".mabcq-bench"))


def derive_seed(*keys: int | str) -> int:
    """A 32-bit seed derived from a tuple of ints and strings (stable across runs and machines)."""
    words = [k if isinstance(k, int) else int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "little") for k in keys]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.

    On any error the temporary file is removed and ``target`` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix or ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_json(target: Path, obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path``, or fail at once if another process has it.

    The holder writes ``<pid> <host>`` into the file, so that a process refused can name it.
    The OS releases the lock when its holder dies, however it dies.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise UserError(f"another mabcq-bench process is working on {what} ({_holder(path)}, lock {path}); wait for it to finish or stop it") from None
            raise
        fh.truncate(0)
        fh.write(f"{os.getpid()} {os.uname().nodename}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_holder(path: Path) -> str | None:
    """Who holds the :func:`exclusive_lock` at ``path`` (``pid 123 on host``), or ``None`` when
    no live process holds it (no file, or a lock its dead holder left)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None
    with fh:
        try:  # a shared lock: it waits for no one and keeps no writer out for longer than this call
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return _holder(path)
            raise
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def _holder(path: Path) -> str:
    """``pid 123 on host`` from a held lock file (``pid unknown`` while its holder writes it)."""
    try:
        pid, host = path.read_text().split()
    except (OSError, ValueError):
        return "pid unknown"
    return f"pid {pid} on {host}"


def ensure_writable(folder: Path, what: str) -> None:
    """Fail with one line if ``folder`` cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to the {what} {folder}: {exc.strerror or exc}") from None


def check_device(device: str, here: bool = True) -> None:
    """Fail with one line unless ``device`` is a torch device the learners can use: ``cpu``,
    ``cuda[:N]`` or ``mps``; with ``here``, one this machine has (a Ray cluster's GPUs are not
    this machine's: pass ``here=False`` for them).

    Raises:
        UserError: not a torch device, another kind of device, or (``here``) no such device here.
    """
    import torch

    try:
        kind = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"--device {device!r} is not a torch device; give cpu, cuda or cuda:<index>") from None
    if kind.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {device!r}: the learners run on cpu, cuda or mps, not {kind.type}")
    if not here or kind.type == "cpu":
        return
    if kind.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"--device {device}: no MPS device is usable here; use --device cpu")
        return
    if not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", built without CUDA")
        raise UserError(f"--device {device}: no CUDA device is usable here ({build}); use --device cpu")
    if kind.index is not None and kind.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")


#: Narrowest terminal that gets progress bars; a narrower one (some IDE consoles and CI
#: pseudo-terminals report 0 columns, where tqdm draws blank bars) gets plain progress lines.
MIN_BAR_COLUMNS = 20


def bars_fit(progress: bool, stream=None) -> bool:
    """Whether to draw progress bars: ``progress`` asked for, and ``stream`` (default: stderr,
    where tqdm draws) a terminal at least :data:`MIN_BAR_COLUMNS` wide. Where this is False a
    long job prints plain lines instead (a log file, a pipe, a 0-column terminal)."""
    stream = sys.stderr if stream is None else stream
    if not progress:
        return False
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns >= MIN_BAR_COLUMNS
    except (AttributeError, OSError, ValueError):  # no file descriptor (a test's stream), or not a terminal after all
        return False


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``: a wall time as a person reads it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class RunTimes(NamedTuple):
    """A finished run's recorded times in seconds, all on one clock (:func:`run_times`)."""

    clock: str  # "cpu": the process's CPU time; "wall": wall time, which also counts pauses and a shared core
    train_s: float  # training over every call of the run, its evaluations included
    curve_s: tuple[float, ...]  # each learning-curve evaluation, in order
    final_s: float  # the final evaluation (all its shares in protocol 3)


def run_times(record: Mapping[str, Any]) -> RunTimes | None:
    """A run record's training and evaluation times: CPU times where it keeps them for the training
    and every evaluation (``train_cpu_s``, ``cpu_s``), else wall times (``train_wall_s``,
    ``wall_s``); never the two mixed. None where it has neither in full (a record from before
    evaluations were timed)."""
    curve, final = record.get("curve") or [], record.get("final") or {}
    for clock in ("cpu", "wall"):
        train, key = record.get(f"train_{clock}_s"), f"{clock}_s"
        if curve and train and key in final and all(key in p for p in curve):
            return RunTimes(clock, float(train), tuple(float(p[key]) for p in curve), float(final[key]))
    return None


#: In a protocol file's ``[protocol.budgets.<algo>]`` table, the key that lists the tasks (names,
#: or ``updates`` for the table's every-task budget) where the budget is the longest the budget
#: study measured and the learner's score or Q̂ had not stopped moving there: its runs' records
#: and the board say so. Here because runs (which read the file) and report (which proposes it)
#: both name it.
NOT_PLATEAUED = "not_plateaued"


def read_tier_file(preset: str, folder: Path, kind: str) -> tuple[Path, dict[str, Any]]:
    """A tier's TOML file, by name (``<folder>/<name>.toml``) or by path, parsed.

    Raises:
        UserError: an unknown tier (listing the valid ones), a missing, unreadable or malformed file.
    """
    path = Path(preset)
    if not (preset.endswith(".toml") or path.exists()):
        path = folder / f"{preset}.toml"
        if not path.exists():
            valid = ", ".join(sorted(p.stem for p in folder.glob("*.toml")))
            raise UserError(f"unknown tier {preset!r}; valid tiers: {valid} (or a path to a .toml {kind})")
    try:
        return path, tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{kind} file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"malformed {kind} {path}: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read {kind} {path}: {exc.strerror}") from None
