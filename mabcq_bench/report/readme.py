"""A board's table in a README, kept equal to what the records give.

A Markdown file (the repository's front page) marks where a board's table goes with two lines of
their own::

    <!-- leaderboard:lite-v2-p3 -->
    <!-- /leaderboard:lite-v2-p3 -->

:func:`update_readme` (``mabcq-bench leaderboard --readme README.md``) replaces what lies between
them by the board page's main table (:func:`~mabcq_bench.report.tables.markdown_table`: per
variant each task's mean ± std with the number of seeds in parentheses, the IQM with its
interval, the coordination gap) and one line linking the page. A block whose board has no records
is left as it is, so a hand-written placeholder stands until the board's first record lands.
Everything outside the blocks is kept byte for byte; the file is written atomically, and only
when it changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mabcq_bench.errors import UserError
from mabcq_bench.report.tables import AGGREGATE_HEADER, GAP_HEADER, Leaderboard, build_tables, markdown_table
from mabcq_bench.util import atomic_path

BEGIN = re.compile(r"<!-- leaderboard:(\S+) -->")
END = re.compile(r"<!-- /leaderboard:(\S+) -->")


def _lines(text: str) -> list[str]:
    """``text`` cut after every newline, each line keeping its ending (``str.splitlines`` would also
    cut at characters such as U+2028 that a Markdown line may hold)."""
    return [line for line in re.split(r"(?<=\n)", text) if line]


@dataclass(frozen=True)
class Block:
    """One board's block: the lines strictly between ``begin`` and ``end`` are its content."""

    board: str
    begin: int  # 0-based index of the line `<!-- leaderboard:<board> -->`
    end: int  # 0-based index of the line `<!-- /leaderboard:<board> -->`


@dataclass(frozen=True)
class Filled:
    """What :func:`fill_blocks` made of a text."""

    text: str
    filled: list[str] = field(default_factory=list)  # boards whose blocks now hold their table, in file order
    left: list[str] = field(default_factory=list)  # boards with a block but no records: their blocks are as they were
    changed: bool = False  # whether ``text`` differs from the text given


def find_blocks(text: str, where: str) -> list[Block]:
    """The leaderboard blocks of ``text``, in file order (none when it has no marker).

    A marker is a whole line (surrounding spaces aside). Blocks do not nest.

    Args:
        text: the Markdown text.
        where: how to name it in an error (its path).

    Raises:
        UserError: a begin marker without its end marker, an end marker that closes no block or
            another board's block.
    """
    blocks: list[Block] = []
    open_: tuple[str, int] | None = None  # (board, line index) of the block being read
    for i, line in enumerate(_lines(text)):
        begin, end = BEGIN.fullmatch(line.strip()), END.fullmatch(line.strip())
        if begin:
            if open_ is not None:
                board, j = open_
                raise UserError(f"{where}, line {j + 1}: <!-- leaderboard:{board} --> has no end marker <!-- /leaderboard:{board} --> before the next block starts (line {i + 1}); the file is left as it was")
            open_ = (begin.group(1), i)
        elif end:
            if open_ is None or open_[0] != end.group(1):
                inside = "" if open_ is None else f" (the block open since line {open_[1] + 1} is {open_[0]}'s)"
                raise UserError(f"{where}, line {i + 1}: {line.strip()} closes no block of board {end.group(1)}{inside}; the file is left as it was")
            blocks.append(Block(open_[0], open_[1], i))
            open_ = None
    if open_ is not None:
        board, i = open_
        raise UserError(f"{where}, line {i + 1}: <!-- leaderboard:{board} --> has no end marker <!-- /leaderboard:{board} --> after it; the file is left as it was")
    return blocks


def render_block(board: Leaderboard, page: str) -> list[str]:
    """The content of ``board``'s block: its page's main table, a blank line, one line of notes.

    Args:
        board: the tables of one board, as :func:`~mabcq_bench.report.tables.build_tables` makes them.
        page: the link to the board's page, relative to the README (``leaderboard/<board>.md``).
    """
    note = (
        "Per task the final normalized score, mean ± std over seeds, with the number of seeds of the cell in parentheses; "
        f"what {AGGREGATE_HEADER} and {GAP_HEADER} are, and the plots: [`{page}`]({page})."
    )
    if not all(r.complete for r in board.rows):
        note += " `*`: an aggregate over fewer tasks than the table has."
    return [*markdown_table(board), "", note]


def fill_blocks(text: str, records: Iterable[dict], pages: str, where: str = "README", reps: int = 2000, ci: float = 0.95, seed: int = 0) -> Filled:
    """``text`` with every block whose board has records replaced by :func:`render_block`
    (``text`` itself when it has no block).

    Args:
        text: the Markdown text.
        records: run records (every board's; a block takes those of its own).
        pages: the folder of the boards' pages, relative to the text's file (``leaderboard``).
        where: how to name the text in an error.
        reps, ci, seed: the bootstrap settings of the IQM column; the defaults are
            :func:`~mabcq_bench.report.leaderboard.write_leaderboard`'s, so the table is the page's.

    Raises:
        UserError: as :func:`find_blocks`, and as ``build_tables`` for a board's records.
    """
    lines = _lines(text)
    blocks = find_blocks(text, where)
    records = list(records)
    named = list(dict.fromkeys(blk.board for blk in blocks))  # each board once, in file order
    present = {r["tier"] for r in records}
    boards = {b: build_tables(records, b, reps=reps, ci=ci, seed=seed) for b in named if b in present}
    out: list[str] = []
    done = 0  # lines[:done] are in out
    for blk in blocks:
        out += lines[done : blk.begin + 1]
        if blk.board in boards:
            marker = lines[blk.begin]
            eol = marker[len(marker.rstrip("\r\n")) :]  # the file's own line ending
            out += [line + eol for line in render_block(boards[blk.board], f"{pages}/{blk.board}.md")]
        else:
            out += lines[blk.begin + 1 : blk.end]
        done = blk.end
    out += lines[done:]
    new = "".join(out)
    return Filled(new, [b for b in named if b in boards], [b for b in named if b not in boards], changed=new != text)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"--readme {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"--readme {path} is a folder; give a Markdown file") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"--readme {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def readme_blocks(path: str | Path) -> list[Block]:
    """The blocks of the file at ``path`` (check a README before anything is written).

    Raises:
        UserError: a missing or unreadable file, a file without a block, or as :func:`find_blocks`.
    """
    return _some_blocks(_read(Path(path)), str(path))


def _some_blocks(text: str, where: str) -> list[Block]:
    blocks = find_blocks(text, where)
    if not blocks:
        raise UserError(f"{where} has no leaderboard block: put a line <!-- leaderboard:<board> --> and a line <!-- /leaderboard:<board> --> where <board>'s table goes")
    return blocks


def update_readme(path: str | Path, records: Iterable[dict], pages_dir: str | Path, reps: int = 2000, ci: float = 0.95, seed: int = 0) -> Filled:
    """Fill the leaderboard blocks of the Markdown file at ``path`` in place (see :func:`fill_blocks`).

    Args:
        path: the README.
        records: run records.
        pages_dir: the folder the boards' pages are written to; the block links them relative to
            the README's folder.
        reps, ci, seed: the bootstrap settings of the pages.

    Returns:
        The :class:`Filled` text and which boards were filled or left. The file is rewritten
        (atomically) only when its text changes; on any error it is left untouched.

    Raises:
        UserError: as :func:`readme_blocks`, or a file that cannot be written.
    """
    path = Path(path)
    text = _read(path)
    _some_blocks(text, str(path))
    pages = Path(os.path.relpath(Path(pages_dir).resolve(), path.resolve().parent)).as_posix()
    result = fill_blocks(text, records, pages, str(path), reps=reps, ci=ci, seed=seed)
    if result.changed:
        try:
            with atomic_path(path) as tmp:
                tmp.write_bytes(result.text.encode("utf-8"))
        except OSError as exc:
            raise UserError(f"cannot write --readme {path}: {exc.strerror or exc}") from None
    return result
