"""A board's table in the README (issue 26, 3): `mabcq-bench leaderboard --readme` puts between
``<!-- leaderboard:<board> -->`` and ``<!-- /leaderboard:<board> -->`` the main table of the
board's page, made from the records, and the repository's README holds what its committed records
give."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mabcq_bench.cli import main
from mabcq_bench.errors import UserError
from mabcq_bench.report.readme import fill_blocks, find_blocks, update_readme
from mabcq_bench.report.records import load_records

from test_leaderboard import _first_results_table, fake_records, make_record, write_store

REPO = Path(__file__).resolve().parents[1]

#: Text around the block: CRLF lines, a table of its own, non-ASCII, no final newline.
BEFORE = "# A project\r\n\r\nIts own table:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
AFTER = "\nMore text, é and ±,\r\nand no final newline"
PLACEHOLDER = "No run of the board has finished yet.\n"


def readme_text(*boards: str, content: str = PLACEHOLDER) -> str:
    blocks = "".join(f"<!-- leaderboard:{b} -->\n{content}<!-- /leaderboard:{b} -->\n" for b in boards)
    return BEFORE + blocks + AFTER


def block(text: str, board: str) -> list[str]:
    """The lines between ``board``'s first pair of markers."""
    lines = text.splitlines()
    begin = lines.index(f"<!-- leaderboard:{board} -->")
    return lines[begin + 1 : lines.index(f"<!-- /leaderboard:{board} -->", begin)]


def readme_problems(text: str, records: list[dict], pages: Path) -> list[str]:
    """What in the README's leaderboard blocks is not what ``records`` give, the README lying
    beside the pages' folder ``pages`` (as README.md and leaderboard/ in the repository): a block
    whose board has records must be what ``leaderboard --readme`` writes there, a table equal to
    the published page's; a block whose board has none must hold no table (a stale one)."""
    blocks = find_blocks(text, "README.md")
    want = fill_blocks(text, records, pages.name)  # bootstrap settings: the pages' (the defaults)
    problems = []
    for blk, new in zip(blocks, find_blocks(want.text, "README.md")):
        got = text.splitlines()[blk.begin + 1 : blk.end]
        if blk.board in want.left:
            if any(line.startswith("|") for line in got):
                problems.append(f"line {blk.begin + 1}: the block of {blk.board} holds a table, but the records hold no run of {blk.board}")
            continue
        rendered = want.text.splitlines()[new.begin + 1 : new.end]
        if got != rendered:
            problems.append(f"line {blk.begin + 1}: the block of {blk.board} is not what `mabcq-bench leaderboard --readme` makes from the records")
        page = pages / f"{blk.board}.md"
        if not page.exists() or _first_results_table(page.read_text(encoding="utf-8")) != _first_results_table("\n".join(rendered)):
            problems.append(f"line {blk.begin + 1}: the table of {blk.board} is not the one of {page.name}")
    return problems


# --- the command ---------------------------------------------------------------------------------


def test_the_block_gets_the_pages_table_and_the_rest_is_kept_byte_for_byte(tmp_path):
    store = write_store(tmp_path / "store", fake_records())  # board lite, 1 to 3 seeds a cell
    readme = tmp_path / "README.md"
    original = readme_text("lite", "lite-v2-p3").encode("utf-8")
    readme.write_bytes(original)
    result = CliRunner().invoke(main, ["leaderboard", "--results", str(store), "--out", str(tmp_path / "leaderboard"), "--readme", str(readme)])
    assert result.exit_code == 0, result.output

    text = readme.read_bytes().decode("utf-8")
    page = (tmp_path / "leaderboard" / "lite.md").read_text(encoding="utf-8")
    table = _first_results_table(page)
    *rows, blank, note = block(text, "lite")
    assert rows == table and blank == ""  # the page's own table, the same bootstrap interval included
    assert rows[2].startswith("| mabcq | 80.0 ± 10.0 (3) | 50.0 ± 10.0 (3) | 65.0 [")
    assert "[`leaderboard/lite.md`](leaderboard/lite.md)" in note and "number of seeds of the cell in parentheses" in note
    assert "`*`" in note  # the ε = 0.4 row has runs on hopper only
    # outside the block, byte for byte: everything up to its begin marker and from its end marker on
    head, tail = original.split(b"<!-- leaderboard:lite -->\n"), text.encode("utf-8").split(b"<!-- leaderboard:lite -->\n")
    assert tail[0] == head[0]
    assert tail[1].split(b"<!-- /leaderboard:lite -->\n")[1] == head[1].split(b"<!-- /leaderboard:lite -->\n")[1]
    assert block(text, "lite-v2-p3") == [PLACEHOLDER.strip()]  # no records of that board: left alone
    left = [line for line in result.output.splitlines() if "lite-v2-p3" in line]
    assert left == [f"{readme}: the block of board lite-v2-p3 is left as it is: {store} holds no records of lite-v2-p3"]
    assert f"{readme}: wrote the table of lite" in result.output
    assert readme_problems(text, load_records(store), tmp_path / "leaderboard") == []


def test_a_second_run_changes_nothing(tmp_path):
    records = fake_records() + [make_record("hopper", "bcq", s, 30.0 + s, 1.0, tier="lite-v2-p3") for s in range(2)]
    records.append(make_record("walker", "mabcq", 0, 20.0, 1.0, tier="lite-v2-p3"))
    readme = tmp_path / "README.md"
    readme.write_bytes(readme_text("lite-v2-p3", "lite").replace("\n<!-- /", "\r\n<!-- /").encode("utf-8"))
    first = update_readme(readme, records, tmp_path / "leaderboard", reps=300)
    assert first.changed and first.filled == ["lite-v2-p3", "lite"] and first.left == []
    once, stamp = readme.read_bytes(), os.stat(readme).st_mtime_ns
    assert once.startswith(BEFORE.encode()) and once.endswith(AFTER.encode())
    assert b"| bcq | \xe2\x80\x93 | 30.5 \xc2\xb1 0.7 (2) |" in once  # walker has no run: a dash
    second = update_readme(readme, records, tmp_path / "leaderboard", reps=300)
    assert not second.changed and second.text == once.decode("utf-8")
    assert readme.read_bytes() == once and os.stat(readme).st_mtime_ns == stamp  # not even rewritten
    assert fill_blocks(once.decode("utf-8"), records, "leaderboard", reps=300).text == once.decode("utf-8")


def test_a_block_keeps_the_line_endings_of_its_marker(tmp_path):
    text = BEFORE + "<!-- leaderboard:lite -->\r\nold\r\n<!-- /leaderboard:lite -->\r\n" + AFTER
    new = fill_blocks(text, fake_records(), "leaderboard", reps=300).text
    inside = new.split("<!-- leaderboard:lite -->\r\n")[1].split("<!-- /leaderboard:lite -->")[0]
    assert inside.count("\r\n") == inside.count("\n") == 8  # 6 table lines, a blank, the note


@pytest.mark.parametrize(
    "text, message",
    [
        (BEFORE + "<!-- leaderboard:lite -->\nold\n" + AFTER, ", line 9: <!-- leaderboard:lite --> has no end marker <!-- /leaderboard:lite --> after it; the file is left as it was"),
        (
            BEFORE + "<!-- leaderboard:lite -->\nold\n" + readme_text("paper")[len(BEFORE) :],
            ", line 9: <!-- leaderboard:lite --> has no end marker <!-- /leaderboard:lite --> before the next block starts (line 11); the file is left as it was",
        ),
        (
            readme_text("lite").replace("/leaderboard:lite", "/leaderboard:paper"),
            ", line 11: <!-- /leaderboard:paper --> closes no block of board paper (the block open since line 9 is lite's); the file is left as it was",
        ),
        (BEFORE + AFTER, " has no leaderboard block: put a line <!-- leaderboard:<board> --> and a line <!-- /leaderboard:<board> --> where <board>'s table goes"),
    ],
    ids=["no-end", "next-begins", "other-board", "no-marker"],
)
def test_a_readme_with_broken_markers_is_one_line_and_nothing_is_written(tmp_path, text, message):
    store = write_store(tmp_path / "store", fake_records())
    readme = tmp_path / "README.md"
    readme.write_bytes(text.encode("utf-8"))
    before = (readme.read_bytes(), os.stat(readme).st_mtime_ns)
    result = CliRunner().invoke(main, ["leaderboard", "--results", str(store), "--out", str(tmp_path / "out"), "--readme", str(readme)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.splitlines() == [f"Error: {readme}{message}"]
    assert (readme.read_bytes(), os.stat(readme).st_mtime_ns) == before
    assert not (tmp_path / "out").exists()  # refused before any page is written
    with pytest.raises(UserError, match="has no end marker|closes no block|no leaderboard block"):
        update_readme(readme, fake_records(), tmp_path / "out")
    assert (readme.read_bytes(), os.stat(readme).st_mtime_ns) == before


def test_a_missing_readme_is_named(tmp_path):
    store = write_store(tmp_path / "store", fake_records())
    result = CliRunner().invoke(main, ["leaderboard", "--results", str(store), "--readme", str(tmp_path / "nope.md")])
    assert result.exit_code == 1 and result.output.splitlines() == [f"Error: --readme {tmp_path / 'nope.md'} does not exist"]


# --- the repository's README ---------------------------------------------------------------------


def test_the_readme_blocks_are_what_the_committed_records_give():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "lite-v2-p3" in [b.board for b in find_blocks(text, "README.md")]  # the board being run
    assert readme_problems(text, load_records(REPO / "leaderboard" / "records"), REPO / "leaderboard") == []


def test_a_hand_edited_block_is_found():
    """The check above is no formality: on a copy of the README with a block of a published board,
    filled as the command fills it, it passes; edit one cell, or put a table where no record is,
    and it fails."""
    records = load_records(REPO / "leaderboard" / "records")
    text = (REPO / "README.md").read_text(encoding="utf-8") + "\n<!-- leaderboard:plateau60-v1-p2 -->\n<!-- /leaderboard:plateau60-v1-p2 -->\n"
    filled = fill_blocks(text, records, "leaderboard").text
    assert filled != text and readme_problems(filled, records, REPO / "leaderboard") == []

    lines = filled.splitlines(keepends=True)
    row = find_blocks(filled, "README.md")[-1].begin + 3  # the block's first variant
    lines[row] = re.sub(r"\((\d+)\) \|", lambda m: f"({int(m.group(1)) + 1}) |", lines[row], count=1)  # a seed more than ran
    (problem,) = readme_problems("".join(lines), records, REPO / "leaderboard")
    assert "the block of plateau60-v1-p2 is not what `mabcq-bench leaderboard --readme` makes" in problem

    rows = block(filled, "plateau60-v1-p2")
    stale = filled + "<!-- leaderboard:paper-v9-p9 -->\n" + "\n".join(rows[:3]) + "\n<!-- /leaderboard:paper-v9-p9 -->\n"
    (problem,) = readme_problems(stale, records, REPO / "leaderboard")
    assert "the block of paper-v9-p9 holds a table, but the records hold no run of paper-v9-p9" in problem
