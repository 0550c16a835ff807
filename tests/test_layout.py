"""The layout shows the layers: data -> algos -> runs -> report -> cli, and the code keeps to it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mabcq_bench"
#: Layer of each top-level part; a module may import its own layer or a lower one.
LAYERS = {"errors": 0, "util": 0, "data": 1, "algos": 2, "runs": 3, "report": 3, "cli": 4}
#: runs and report share a rank but are independent of each other (the CLI joins them).
SEPARATE = {("runs", "report"), ("report", "runs")}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The mabcq_bench modules ``path`` imports (all, or only those at module level)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    mods = _modules()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mabcq_bench"):
            for alias in node.names:  # "from mabcq_bench.runs import plan" imports a module
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in mods else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mabcq_bench")}
    return out


def test_every_layer_is_a_subpackage_with_its_rule():
    for part in ("data", "algos", "runs", "report", "cli"):
        doc = ast.get_docstring(ast.parse((PACKAGE / part / "__init__.py").read_text()))
        assert doc and "May import:" in doc, part
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "errors", "util"]


def test_no_lower_layer_imports_a_higher_one():
    bad = []
    for module, path in _modules().items():
        src = _part(module)
        for imported in _imports(path):
            dst = _part(imported)
            if not dst or dst == src:
                continue
            if LAYERS[dst] > LAYERS[src] or (src, dst) in SEPARATE:
                bad.append(f"{module} imports {imported}")
    assert not bad, bad


def test_no_import_cycles_between_modules():
    graph = {m: {i for i in _imports(p, top_level_only=True) if i != m} for m, p in _modules().items()}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in graph.get(m, ()):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail + [m, n]))
            if n not in state:
                visit(n, trail + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_importing_the_cli_imports_no_heavy_package():
    """Issue 27 (12): ``mabcq-bench --help`` took 4 s importing torch; commands import what they
    need when they run. A fresh interpreter, so nothing a test imported before counts."""
    import subprocess
    import sys

    heavy = ("torch", "minari", "gymnasium", "mujoco", "stable_baselines3", "matplotlib", "scipy")
    code = f"import sys, mabcq_bench.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "", out.stdout


def test_matrix_game_help_lists_the_registry():
    from click.testing import CliRunner

    from mabcq_bench.algos.matrix_game import ALGOS
    from mabcq_bench.cli import main

    text = " ".join(CliRunner().invoke(main, ["matrix-game", "--help"]).output.split())
    assert f"One of: {', '.join(ALGOS)}." in text


def test_no_module_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
