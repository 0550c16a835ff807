"""What the command line answers to bad input (issue 27): one line and a non-zero exit, never a
traceback, and nothing already written lost or changed. One test per finding."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mabcq_bench.cli import main
from mabcq_bench.errors import UserError

from test_leaderboard import fake_records, write_store


def _fails(args: list[str]) -> str:
    """Run the CLI; it must exit 1 with one line and no traceback. Returns that line."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash caught by the runner
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (to show nothing was changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder (created if missing) read-only: ``chmod 0o555``, or, where that does not bind (root may write
    anyway), a read-only file system simulated at the calls that create files and folders in it."""
    made: list[Path] = []

    def make(folder: Path) -> Path:
        folder.mkdir(exist_ok=True)
        folder.chmod(0o555)
        made.append(folder)
        if not os.access(folder, os.W_OK):
            return folder
        inside = str(folder.resolve())
        real_open, real_mkdir = os.open, os.mkdir

        def under(path) -> bool:
            p = os.path.abspath(os.fsdecode(path))
            return p == inside or p.startswith(inside + os.sep)

        def read_only_open(path, flags, mode=0o777, *, dir_fd=None):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
            return real_open(path, flags, mode, dir_fd=dir_fd)

        def read_only_mkdir(path, mode=0o777, *, dir_fd=None):
            if under(path):
                code = errno.EEXIST if os.path.exists(path) else errno.EROFS
                raise (FileExistsError if code == errno.EEXIST else OSError)(code, os.strerror(code), os.fsdecode(path))
            return real_mkdir(path, mode, dir_fd=dir_fd)

        monkeypatch.setattr(os, "open", read_only_open)
        monkeypatch.setattr(os, "mkdir", read_only_mkdir)
        return folder

    yield make
    for folder in made:
        folder.chmod(0o755)


# 1. a read-only location is one line naming it


@pytest.mark.parametrize("where", ["results", "out"])
def test_leaderboard_into_a_read_only_folder_is_one_line_naming_it(tmp_path, read_only, where):
    store = write_store(tmp_path / "runs", fake_records())
    before = _tree(store)
    if where == "results":
        read_only(store)
        args, target = ["--results", str(store)], store / "leaderboard"
    else:
        read_only(tmp_path / "ro")
        args, target = ["--results", str(store), "--out", str(tmp_path / "ro" / "lb")], tmp_path / "ro" / "lb"
    line = _fails(["leaderboard", *args])
    assert line.startswith(f"Error: cannot write to the leaderboard folder {target}: "), line
    assert _tree(store) == before


@pytest.mark.parametrize("new", [True, False], ids=["new-store", "existing-store"])
def test_run_into_a_read_only_store_is_one_line_before_any_run(store, tmp_path, read_only, new):
    ro = read_only(tmp_path / "ro")
    results = ro / "new" if new else ro
    line = _fails(["run", "--algo", "bcq", "--preset", "tiny", "--seeds", "1", "--results", str(results), "--no-progress"])
    assert line.startswith(f"Error: cannot write to the results store {results}: "), line
    assert "delete" not in line and not list(ro.iterdir())


# 2. a run another live process trains: say which process, and to wait; never to delete its checkpoints


@pytest.mark.parametrize("race", [False, True], ids=["held-before-the-sweep", "taken-after-its-check"])
def test_a_run_another_process_trains_is_left_to_it_and_named(store, monkeypatch, race):
    from mabcq_bench.runs import plan, sweep
    from mabcq_bench.runs.protocol import load_protocol
    from mabcq_bench.util import exclusive_lock, lock_holder

    results = store["results"]
    (run,) = plan.prepare([plan.RunSpec("tiny", "hopper", "bcq", 0)], load_protocol("tiny"), "tiny")
    ckpt = run.spec.checkpoint_path(results)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"the other process's work")
    checks = []

    def free_at_the_first_check(path):  # the other process takes the lock between the sweep's check and the run's start
        checks.append(path)
        return None if len(checks) == 1 else lock_holder(path)

    if race:
        monkeypatch.setattr(sweep, "lock_holder", free_at_the_first_check)
    with exclusive_lock(run.spec.lock_path(results), "a run"):  # as another sweep training it holds it
        result = CliRunner().invoke(main, ["run", "--algo", "bcq", "--preset", "tiny", "--seeds", "1", "--results", str(results), "--workers", "1", "--no-progress"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    line = result.output.strip().splitlines()[-1]
    assert f"hopper/bcq/seed0 (pid {os.getpid()} on {os.uname().nodename})" in line and "Wait for it to finish, or stop it" in line, line
    assert "delete" not in result.output
    assert ckpt.read_bytes() == b"the other process's work" and not run.spec.record_path(results).exists()
    assert len(checks) == (2 if race else 0)  # raced: started, refused by the lock, then found held


# 3. a name given twice is scheduled once


def test_a_repeated_algorithm_or_task_is_run_once(store, monkeypatch):
    from mabcq_bench.runs import sweep

    scheduled = []

    def record_the_runs(runs, *args, **kwargs):
        scheduled.extend(run.spec.key for run in runs)
        return sweep.SweepResult([], 0, {}, 0.0)

    monkeypatch.setattr(sweep, "run_sweep", record_the_runs)
    result = CliRunner().invoke(main, ["run", "--algo", "bc,bcq,bc", "--env", "hopper,hopper", "--preset", "tiny", "--seeds", "2", "--results", str(store["results"])])
    assert result.exit_code == 0, result.output
    assert scheduled == ["hopper/bc/seed0", "hopper/bc/seed1", "hopper/bcq/seed0", "hopper/bcq/seed1"]


# 4. an empty list is an error, not "0 runs finished"


@pytest.mark.parametrize(
    "option, value, message",
    [("--algo", "", "no algorithm given ('')"), ("--algo", " , ", "no algorithm given (' , ')"), ("--env", "", "no task given ('')"), ("--seeds", ",", "--seeds takes a count (3) or a list (0,4,7), got ','")],
)
def test_an_empty_list_is_one_line_and_runs_nothing(store, option, value, message):
    line = _fails(["run", "--preset", "tiny", "--results", str(store["results"]), "--algo", "bcq", option, value])
    assert message in line
    assert not store["results"].exists()


# 5. the device is checked once, before any run starts


@pytest.mark.parametrize(
    "device, cuda_devices, message",
    [
        ("foo", 0, "--device 'foo' is not a torch device; give cpu, cuda or cuda:<index>"),
        ("meta", 0, "--device 'meta': the learners run on cpu, cuda or mps, not meta"),
        ("cuda", 0, "--device cuda: no CUDA device is usable here"),
        ("cuda:1", 1, "--device cuda:1: this machine has 1 CUDA device(s), cuda:0 to cuda:0"),
    ],
)
def test_a_device_this_machine_lacks_is_one_line_before_any_run(store, monkeypatch, device, cuda_devices, message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_devices > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_devices)
    line = _fails(["run", "--algo", "bcq", "--preset", "tiny", "--seeds", "1", "--results", str(store["results"]), "--no-progress", "--device", device])
    assert message in line
    assert not store["results"].exists()


def test_a_clusters_gpus_are_not_looked_for_here(monkeypatch):
    import torch

    from mabcq_bench.util import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check_device("cuda", here=False)  # `run --executor ray --address ...`: the cluster's workers have them
    with pytest.raises(UserError, match="not a torch device"):
        check_device("gpu", here=False)


# 6. options that contradict each other are a usage error


def _usage_error(args: list[str]) -> str:
    """Run the CLI; it must stop with a usage error (exit 2) of one line. Returns that line."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--executor", "local", "--address", "auto"], "--address names a Ray cluster: it needs --executor ray"),
        (["run", "--cuda-graph"], "--cuda-graph needs a cuda --device (cpu has no CUDA graphs)"),
        (["run", "--cuda-graph", "--device", "cpu", "--executor", "ray"], "--cuda-graph needs a cuda --device"),
        (["make-data", "--workers", "2"], "--workers needs --executor ray"),
        (["make-data", "--address", "auto"], "--address needs --executor ray"),
        (["make-data", "--executor", "ray", "--address", "auto", "--workers", "2"], "--workers sets the CPUs of a local Ray: with --address the cluster has its own"),
    ],
)
def test_contradicting_options_are_a_usage_error_before_any_work(tmp_path, args, message):
    results = tmp_path / "runs"
    extra = ["--results", str(results)] if args[0] == "run" else []
    assert message in _usage_error([*args, *extra])
    assert not results.exists() and not (tmp_path / "minari").exists()  # nothing started
