"""What the command line answers to bad input (issue 27): one line and a non-zero exit, never a
traceback, and nothing already written lost or changed. One test per finding."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mabcq_bench.cli import main

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
