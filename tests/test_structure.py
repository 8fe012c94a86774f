"""The house: ``inspector/`` shows its architecture in folders, and nothing imports back up.

These tests read the source (``ast``), run nothing, and guard what issue 19 set up: at most 8 modules directly in
``inspector/``, no module over 1,000 lines, every package saying in its ``__init__`` what lives there, no import
circle anywhere in ``inspector/`` or ``pages/`` (imports inside functions count: a circle that only closes at run
time is still a circle), modules inside ``inspector/`` importing from the module that defines a name (never through
a package's lazy exports), and a core that never imports Streamlit.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "inspector"
MAX_TOP_MODULES = 8
MAX_LINES = 1000


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(*folders: str) -> dict[str, Path]:
    return {_module_name(p): p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))}


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module ``name`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            if t in known and t != name:
                out.add(t)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_at_most_eight_modules_directly_in_inspector():
    top = sorted(p.name for p in CORE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


def test_no_module_over_a_thousand_lines():
    long = {str(p.relative_to(ROOT)): n for p in CORE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_every_package_says_what_lives_there():
    for init in CORE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()) >= 2, f"{init.relative_to(ROOT)} has no docstring saying what is there"


def test_package_exports_resolve():
    """Every name a package exports lazily is really defined where its ``__init__`` says."""
    for init in sorted(CORE.rglob("__init__.py")):
        package = importlib.import_module(_module_name(init))
        for name in getattr(package, "__all__", []):
            assert getattr(package, name) is not None, (package.__name__, name)


@pytest.mark.parametrize("folders", [("inspector",), ("pages", "app.py")], ids=["inspector", "pages"])
def test_no_import_circle(folders):
    known = _modules("inspector", "pages")
    known["app"] = ROOT / "app.py"
    mine = {n: p for n, p in known.items() if n.split(".")[0] in {f.removesuffix(".py") for f in folders}}
    graph = {n: _imports(n, p, known) & set(mine) for n, p in mine.items()}
    # a package's __init__ importing its own submodules is how packages work, not a circle
    for n in graph:
        graph[n] = {m for m in graph[n] if not (known[n].name == "__init__.py" and m.startswith(n + "."))}
    assert _cycles(graph) == []


def test_core_modules_import_from_where_a_name_is_defined():
    """Inside ``inspector/``, ``from inspector.labels import LabelEngine`` (a lazy export) is for users; the core
    names the module (``inspector.labels.engine``), so the import graph above sees every real edge."""
    known = _modules("inspector")
    packages = {n for n, p in known.items() if p.name == "__init__.py"}
    bad = []
    for name, path in known.items():
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in packages and node.module != "inspector":
                bad += [f"{name}: from {node.module} import {a.name}" for a in node.names
                        if f"{node.module}.{a.name}" not in known]
    assert not bad, bad


def test_core_never_imports_streamlit():
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "streamlit" not in names, path
