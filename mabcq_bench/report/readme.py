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

The block machinery takes the marker's name, so other generated sections use it too: the claims
table of :mod:`~mabcq_bench.report.claims` fills ``<!-- claims:<board> -->`` blocks the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mabcq_bench.errors import UserError
from mabcq_bench.report.tables import AGGREGATE_HEADER, GAP_HEADER, GPU_NOTE, NOT_PLATEAUED_NOTE, Leaderboard, all_plateaued, any_gpu, build_tables, markdown_table
from mabcq_bench.util import atomic_path

#: The name of the README's table markers, ``<!-- leaderboard:<board> -->``.
LEADERBOARD = "leaderboard"


def _markers(kind: str) -> tuple[re.Pattern, re.Pattern]:
    """The begin and end marker lines of ``kind``'s blocks, the board name as the group."""
    return re.compile(rf"<!-- {re.escape(kind)}:(\S+) -->"), re.compile(rf"<!-- /{re.escape(kind)}:(\S+) -->")


BEGIN, END = _markers(LEADERBOARD)


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


def find_blocks(text: str, where: str, kind: str = LEADERBOARD) -> list[Block]:
    """The ``kind`` blocks of ``text`` (``<!-- kind:<board> -->`` … ``<!-- /kind:<board> -->``),
    in file order (none when it has no marker).

    A marker is a whole line (surrounding spaces aside). Blocks do not nest.

    Args:
        text: the Markdown text.
        where: how to name it in an error (its path).
        kind: the markers' name: ``leaderboard`` (the board's table) or ``claims``.

    Raises:
        UserError: a begin marker without its end marker, an end marker that closes no block or
            another board's block.
    """
    begin_re, end_re = _markers(kind)
    blocks: list[Block] = []
    open_: tuple[str, int] | None = None  # (board, line index) of the block being read
    for i, line in enumerate(_lines(text)):
        begin, end = begin_re.fullmatch(line.strip()), end_re.fullmatch(line.strip())
        if begin:
            if open_ is not None:
                board, j = open_
                raise UserError(f"{where}, line {j + 1}: <!-- {kind}:{board} --> has no end marker <!-- /{kind}:{board} --> before the next block starts (line {i + 1}); the file is left as it was")
            open_ = (begin.group(1), i)
        elif end:
            if open_ is None or open_[0] != end.group(1):
                inside = "" if open_ is None else f" (the block open since line {open_[1] + 1} is {open_[0]}'s)"
                raise UserError(f"{where}, line {i + 1}: {line.strip()} closes no block of board {end.group(1)}{inside}; the file is left as it was")
            blocks.append(Block(open_[0], open_[1], i))
            open_ = None
    if open_ is not None:
        board, i = open_
        raise UserError(f"{where}, line {i + 1}: <!-- {kind}:{board} --> has no end marker <!-- /{kind}:{board} --> after it; the file is left as it was")
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
    if not all_plateaued(board):
        note += f" {NOT_PLATEAUED_NOTE}"
    if any_gpu(board):
        note += f" {GPU_NOTE}"
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
    return fill_kind(text, records, lambda board: render_block(board, f"{pages}/{board.tier}.md"), where, LEADERBOARD, reps=reps, ci=ci, seed=seed)


def splice(text: str, blocks: list[Block], content: Mapping[str, list[str]]) -> str:
    """``text`` with the lines of each block whose board ``content`` has replaced by its lines
    (given without line endings; each gets the ending of the block's begin marker); every other
    byte of ``text`` as it was."""
    lines = _lines(text)
    out: list[str] = []
    done = 0  # lines[:done] are in out
    for blk in blocks:
        out += lines[done : blk.begin + 1]
        if blk.board in content:
            marker = lines[blk.begin]
            eol = marker[len(marker.rstrip("\r\n")) :]  # the file's own line ending
            out += [line + eol for line in content[blk.board]]
        else:
            out += lines[blk.begin + 1 : blk.end]
        done = blk.end
    out += lines[done:]
    return "".join(out)


def fill_kind(text: str, records: Iterable[dict], render: Callable[[Leaderboard], list[str]], where: str, kind: str, reps: int = 2000, ci: float = 0.95, seed: int = 0) -> Filled:
    """``text`` with every ``kind`` block whose board has records replaced by ``render`` of the
    board's tables (see :func:`fill_blocks`, the ``leaderboard`` kind)."""
    blocks = find_blocks(text, where, kind)
    records = list(records)
    named = list(dict.fromkeys(blk.board for blk in blocks))  # each board once, in file order
    present = {r["tier"] for r in records}
    content = {b: render(build_tables(records, b, reps=reps, ci=ci, seed=seed)) for b in named if b in present}
    new = splice(text, blocks, content)
    return Filled(new, [b for b in named if b in content], [b for b in named if b not in content], changed=new != text)


def read_markdown(path: Path, option: str = "--readme") -> str:
    """The text of the Markdown file ``option`` names; a UserError naming the option if it cannot be read."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{option} {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{option} {path} is a folder; give a Markdown file") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{option} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def write_markdown(path: Path, filled: Filled, option: str = "--readme") -> None:
    """Write ``filled``'s text to ``path`` atomically, only when it changed."""
    if filled.changed:
        try:
            with atomic_path(path) as tmp:
                tmp.write_bytes(filled.text.encode("utf-8"))
        except OSError as exc:
            raise UserError(f"cannot write {option} {path}: {exc.strerror or exc}") from None


def readme_blocks(path: str | Path) -> list[Block]:
    """The blocks of the file at ``path`` (check a README before anything is written).

    Raises:
        UserError: a missing or unreadable file, a file without a block, or as :func:`find_blocks`.
    """
    return some_blocks(read_markdown(Path(path)), str(path))


def some_blocks(text: str, where: str, kind: str = LEADERBOARD) -> list[Block]:
    """The ``kind`` blocks of ``text``; a UserError when it has none (or as :func:`find_blocks`)."""
    blocks = find_blocks(text, where, kind)
    if not blocks:
        raise UserError(f"{where} has no {kind} block: put a line <!-- {kind}:<board> --> and a line <!-- /{kind}:<board> --> where <board>'s table goes")
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
    text = read_markdown(path)
    some_blocks(text, str(path))
    pages = Path(os.path.relpath(Path(pages_dir).resolve(), path.resolve().parent)).as_posix()
    result = fill_blocks(text, records, pages, str(path), reps=reps, ci=ci, seed=seed)
    write_markdown(path, result)
    return result
