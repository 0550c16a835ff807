"""The documentation names only commands, options, files and boards that exist.

A newcomer copies what README.md and docs/*.md show. So every ``mabcq-bench`` command they show
(in code blocks and inline code) must be a verb of the command line with options it has; every
relative link and every repository path they name must exist (anchors included); a board named in
a user's output (``runs/<board>/``, ``<board>.md``) must be one `mabcq-bench run` files runs under
today or a published one; a concrete dataset id must carry its tier's ``dataset_version``. And the
README's first code block keeps the contract with CI (``.ci/run`` runs the line after
``# run the tests``).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest

from mabcq_bench.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

#: Repository paths the pages may name that are not in the repository, and why.
SKIP = {
    "mabcq_bench/algos/mlp_bc.py": "the file docs/adding-an-algorithm.md's example asks the reader to create",
}

#: Folders a repository path starts with (paths under runs/ or ~/ are a user's outputs).
ROOTS = ("leaderboard", "baselines", "datasets", "docs", "mabcq_bench", "tools", "tests", r"\.ci")
PATH = re.compile(rf"(?<![\w./~$<>-])((?:{'|'.join(ROOTS)})/[^\s`'\"),;]*)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")
DATASET_ID = re.compile(r"mabcq/([a-z]+)/([\w-]+?)-agent(\d+)-v(\d+)\b")
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[test]' && .venv/bin/python -m pytest"
FIRST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e . && .venv/bin/mabcq-bench "


def _name(page: Path) -> str:
    return str(page.relative_to(REPO))


def _code(text: str) -> tuple[list[str], list[str]]:
    """The lines of the page's fenced code blocks, and its inline code spans (outside them)."""
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
    return lines, INLINE.findall(FENCE.sub("", text))


def _segments(line: str) -> list[list[str]]:
    """A shell line's simple commands (split at ``&&``, ``||``, ``;``, ``|``), as words, without comments."""
    out = []
    for part in re.split(r"&&|\|\||;|\|", line):
        try:
            words = shlex.split(part, comments=True)
        except ValueError:  # an unbalanced quote in prose: words up to a comment
            words = part.split("#")[0].split()
        if words:
            out.append(words)
    return out


def _commands(text: str) -> list[list[str]]:
    """Every command the page shows, as the words after ``mabcq-bench``: in code blocks and inline
    code, and inline code that starts with a verb (``run --stack-agents``)."""
    lines, spans = _code(text)
    out = []
    for source in [*lines, *spans]:
        for words in _segments(source):
            for i, word in enumerate(words):
                if word.rsplit("/", 1)[-1] == "mabcq-bench":
                    out.append(words[i + 1 :])
                    break
    for span in spans:
        words = span.split()
        if words and words[0] in main.commands and any(w.startswith("--") for w in words[1:]):
            out.append(words)
    return out


def _options(command: click.Command) -> set[str]:
    params = command.get_params(click.Context(command))
    return {opt for p in params for opt in (*p.opts, *p.secondary_opts)}


def _command_problems(words: list[str]) -> list[str]:
    """What is wrong with ``mabcq-bench <words>``: an unknown verb or option."""
    command: click.Command = main
    rest = words
    verbs = [w for w in words if not w.startswith("-")]
    if verbs:
        verb = verbs[0]
        if verb.startswith("<"):  # a placeholder: `mabcq-bench <command> --help`
            return []
        if verb not in main.commands:
            return [f"no command {verb!r} in `mabcq-bench {' '.join(words)}`"]
        command = main.commands[verb]
        rest = words[words.index(verb) + 1 :]
    known = _options(command)
    return [
        f"`mabcq-bench {command.name if command is not main else ''}` has no option {w.split('=')[0]} (in `mabcq-bench {' '.join(words)}`)"
        for w in rest
        if w.startswith("-") and w != "-" and w.split("=")[0] not in known
    ]


def _exists(path: str) -> bool:
    """Whether a repository path exists; ``<placeholder>`` parts match any name, and a path cut
    short by an ellipsis needs only the part before it."""
    path = re.split(r"…|\.\.\.", path)[0].rstrip(".:")
    if not path:
        return True
    pattern = re.sub(r"<[^>/]*>", "*", path)
    if "*" not in pattern:
        return (REPO / path).exists()
    return any(REPO.glob(pattern.rstrip("/"))) if pattern.strip("/") else True


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE):
        slug = _slug(heading)
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def _link_problems(page: Path, text: str) -> list[str]:
    problems = []
    for target in LINK.findall(FENCE.sub("", text)):
        if "://" in target or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            problems.append(f"link {target} in {_name(page)}: {where.relative_to(REPO) if where.is_relative_to(REPO) else where} does not exist")
        elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
            problems.append(f"link {target} in {_name(page)}: {_name(where)} has no heading #{anchor}")
    return problems


def _boards() -> tuple[set[str], re.Pattern]:
    """The boards a page may name: those `mabcq-bench run` files runs under today (one per
    protocol file in baselines/), the published ones (leaderboard/), and a pattern that finds a
    board name (a tier, then -v<N> and/or -p<M>)."""
    from mabcq_bench.runs.plan import board_name

    tiers, boards = [], set()
    for path in sorted((REPO / "baselines").glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        recipe = tomllib.loads((REPO / "datasets" / f"{data.get('datasets', data['tier'])}.toml").read_text(encoding="utf-8"))
        tiers.append(data["tier"])
        boards.add(board_name(data["tier"], int(recipe.get("dataset_version", 0)), int(data["protocol"]["version"])))
    boards |= {p.name for p in (REPO / "leaderboard" / "records").iterdir() if p.is_dir()}
    tier = "|".join(re.escape(t) for t in sorted(tiers, key=len, reverse=True))
    is_board = re.compile(rf"^(?:{tier})(?:-v\d+)?(?:-p\d+)?$")
    boards |= {p.stem for p in (REPO / "leaderboard").glob("*.md") if is_board.match(p.stem)}
    return boards, is_board


def _board_problems(page: Path, text: str) -> list[str]:
    """Boards named in a user's outputs (``runs/<board>/``, ``runs/leaderboard/<board>.md``) and
    as file names (``<board>.md``, ``.csv``) or names (``lite-v1-p3``) in inline code."""
    boards, is_board = _boards()
    lines, spans = _code(text)
    named = []
    for source in [*lines, *spans]:
        for token in re.findall(r"(?:^|[\s(`'\"])(?:\S*/)?runs/([^\s/`'\")]+)", source):
            named.append(token)
        for token in re.findall(r"(?:^|[\s(`'\"/])([\w-]+?)(?:\.long\.csv|\.csv|\.md|-[a-z]+\.png)\b", source):
            named.append(token)
    named += [s for s in spans if re.fullmatch(r"[\w]+(?:-[\w]+)*-(?:v\d+|p\d+)", s)]
    return [
        f"{_name(page)} names the board {name!r}, which no protocol file files runs under today and leaderboard/ does not publish"
        for name in named
        if is_board.match(name) and name not in boards
    ]


def _id_problems(page: Path, text: str) -> list[str]:
    from mabcq_bench.data.tasks import TASKS

    problems = []
    for task, tier, agent, version in DATASET_ID.findall(text):
        recipe = REPO / "datasets" / f"{tier}.toml"
        if task not in TASKS or not recipe.exists():
            problems.append(f"{_name(page)}: mabcq/{task}/{tier}-agent{agent}-v{version} names no task or tier")
            continue
        current = int(tomllib.loads(recipe.read_text(encoding="utf-8")).get("dataset_version", 0))
        if int(version) != current or int(agent) >= TASKS[task].n_agents:
            problems.append(f"{_name(page)}: mabcq/{task}/{tier}-agent{agent}-v{version}, but {tier}'s datasets are -v{current} and {task} has {TASKS[task].n_agents} agents")
    return problems


def _lone_option_problems(page: Path, spans: list[str]) -> list[str]:
    """An option shown on its own in inline code (`--no-cuda-graph`) must be some command's."""
    known = set().union(*(_options(c) for c in main.commands.values()))
    return [
        f"{_name(page)} names the option {span.split()[0].split('=')[0]}, which no command has"
        for span in spans
        if span.startswith("--") and span.split()[0].split("=")[0] not in known
    ]


def page_problems(page: Path, text: str | None = None) -> list[str]:
    """Everything :mod:`test_docs` finds wrong in one page (``text``: its text, default the file's)."""
    text = page.read_text(encoding="utf-8") if text is None else text
    problems = [p for words in _commands(text) for p in _command_problems(words)]
    lines, spans = _code(text)
    problems += _lone_option_problems(page, spans)
    for source in [*lines, *spans]:
        for path in PATH.findall(source):
            path = path.rstrip(".")
            if path not in SKIP and not _exists(path):
                problems.append(f"{_name(page)} names {path}, which does not exist")
    return problems + _link_problems(page, text) + _board_problems(page, text) + _id_problems(page, text)


@pytest.mark.parametrize("page", DOCS, ids=_name)
def test_every_command_path_link_and_board_a_page_names_exists(page):
    assert page_problems(page) == []


def test_the_checks_find_what_they_look_for():
    page = REPO / "README.md"
    text = "\n".join(
        [
            "```",
            "mabcq-bench run --algo all --seeds 2 --no-such-option",
            ".venv/bin/mabcq-bench make-dat --env hopper && mabcq-bench leaderboard --results runs --out elsewhere",
            "```",
            "Runs go to `runs/lite-v1/…` and the board to `lite-v1.md`; see `leaderboard/nothing.md`,",
            "[a page](docs/nothing.md), [a heading](docs/protocol.md#no-such-heading), `run --stack-agent`, `--no-cuda-graphs`",
            "and `mabcq/hopper/lite-agent0-v7`; `runs/leaderboard/plateau60-v1-p2.md` is fine.",
        ]
    )
    problems = "\n".join(page_problems(page, text))
    for expected in (
        "has no option --no-such-option",
        "no command 'make-dat'",
        "has no option --stack-agent (",
        "names the board 'lite-v1'",
        "leaderboard/nothing.md, which does not exist",
        "docs/nothing.md does not exist",
        "has no heading #no-such-heading",
        "lite-agent0-v7",
        "the option --no-cuda-graphs, which no command has",
    ):
        assert expected in problems, expected
    assert problems.count("names the board 'lite-v1'") == 2 and len(page_problems(page, text)) == 10, problems


def test_the_readme_keeps_the_commands_ci_and_a_newcomer_run():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250  # a front page, read in five minutes
    assert lines[lines.index("# run the tests") + 1] == TEST_COMMAND  # .ci/run runs it verbatim
    first = lines.index("```bash")
    assert lines[first + 1].startswith("# set up and run") and lines[first + 2].startswith(FIRST_COMMAND)
    assert lines[first + 3 : first + 5] == ["# run the tests", TEST_COMMAND]
    assert "# run the tests" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
