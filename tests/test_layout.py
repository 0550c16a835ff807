"""The layout shows the layers: data -> algos -> runs -> report -> cli, and the code keeps to it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mabcq_bench"
#: Layer of each top-level part; a module may import its own layer or a lower one.
LAYERS = {"errors": 0, "util": 0, "data": 1, "algos": 2, "runs": 3, "report": 3, "cli": 4}
#: runs and report share a rank but are independent of each other (the CLI joins them).
SEPARATE = {("runs", "report"), ("report", "runs")}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom, mods: dict[str, Path]) -> set[str]:
    """The mabcq_bench modules one import statement of ``module`` names: relative imports
    resolved, and ``from package import module`` counted as the module."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.startswith("mabcq_bench")}
    base = node.module or ""
    if node.level:  # "from .x import y" in package p: p.x; each further dot one package up
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    if not base.startswith("mabcq_bench"):
        return set()
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names}


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The import statements under ``if TYPE_CHECKING:``, which only the type checker runs."""
    blocks = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    return {m for b in blocks for n in b.body for m in ast.walk(n) if isinstance(m, (ast.Import, ast.ImportFrom))}


def _imports(path: Path, type_checking: bool = True) -> set[str]:
    """The mabcq_bench modules ``path`` imports, at module level and in functions; with
    ``type_checking``, also those under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    nodes = list(ast.walk(tree))
    skip = set() if type_checking else _type_checking_only(tree)
    mods = _modules()
    module = next(m for m, p in mods.items() if p == path)
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in skip:
            out |= _imported(module, path, node, mods)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles of ``graph`` (module -> modules it imports), one per edge back to a module
    still being visited, each as the modules around it: ``[a, b, a]``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                path = trail + [m]
                found.append(path[path.index(n) :] + [n])
            elif n not in state:
                visit(n, trail + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return found


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


def test_what_the_learners_share_imports_no_learner():
    """``algos.common`` is a layer below the learners: it imports no learner and not the registry
    (not even for types), only its own modules and the layers below."""
    below = ("mabcq_bench.algos.common", "mabcq_bench.data", "mabcq_bench.errors", "mabcq_bench.util")
    bad = [
        f"{module} imports {imported}"
        for module, path in _modules().items()
        if module.startswith("mabcq_bench.algos.common")
        for imported in _imports(path)
        if not imported.startswith(below)
    ]
    assert not bad, bad


def test_no_import_cycles_anywhere():
    """Issue 27 (4): no module imports itself through others, at module level or inside a
    function (a lazy import that dodges a cycle is still one). Imports under
    ``if TYPE_CHECKING:`` name types for the checker and never run, so they are no edges."""
    mods = _modules()
    graph = {m: _imports(p, type_checking=False) - {m} for m, p in mods.items()}
    cycles = _cycles(graph)
    assert cycles == [], f"import cycles (each a list of modules): {cycles}"


def test_the_cycle_check_finds_a_cycle_and_resolves_relative_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    mods = _modules()
    module, path = "mabcq_bench.algos.common.learner", mods["mabcq_bench.algos.common.learner"]
    resolved = lambda code: _imported(module, path, ast.parse(code).body[0], mods)  # noqa: E731
    assert resolved("from .params import rebind") == {"mabcq_bench.algos.common.params"}
    assert resolved("from . import stacking") == {"mabcq_bench.algos.common.stacking"}
    assert resolved("from .. import weights, ALGOS") == {"mabcq_bench.algos.weights", "mabcq_bench.algos"}
    assert resolved("import mabcq_bench.errors, numpy") == {"mabcq_bench.errors"}


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
