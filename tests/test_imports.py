"""No import cycles in mta_logging: the parts depend on each other in one direction only.

Every import counts, wherever it is written: at module level, inside a function, or under
``if TYPE_CHECKING:``. Relative imports are resolved; ``from pkg import name`` counts as
importing the submodule ``pkg.name`` when there is one, else as importing ``pkg``. Importing a
submodule does not count as importing its parent package (Python runs the parent's
``__init__`` first, but the parent does not depend on the child for that).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import mta_logging

PACKAGE_DIR = Path(mta_logging.__file__).parent


def module_files(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Module name → source file, for every module of the package (packages by __init__)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The package modules that module ``name`` (source ``path``) imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    return {module for module in found if module in known and module != name}


def _resolve(module: str | None, level: int, package: str) -> str:
    if level == 0:
        assert module is not None
        return module
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None when the graph has none."""
    state: dict[str, str] = {}  # "active" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "active"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "active":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    known = module_files(root)
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def _write(root: Path, files: Mapping[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def _edges(graph: Mapping[str, set[str]]) -> Iterator[tuple[str, str]]:
    for source, targets in graph.items():
        for target in targets:
            yield source, target


def test_mta_logging_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_the_core_imports_nothing_from_the_relay() -> None:
    """Only the command line (``cli`` and ``check-config``, which reads relay configs too)
    knows the relay."""
    graph = import_graph()
    core = [name for name in graph if not name.startswith("mta_logging.relay")
            and name not in ("mta_logging.cli", "mta_logging.check_config")]
    assert [(source, target) for source, target in _edges(graph)
            if source in core and target.startswith("mta_logging.relay")] == []


def test_every_kind_of_import_is_an_edge(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "pkg/__init__.py": "from pkg import sub\n",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "def f():\n    from . import c\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from .sub.d import thing\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/d.py": "from ..e import name\nfrom pkg.sub import e2\nthing = 1\n",
        "pkg/e.py": "name = 1\n",
        "pkg/sub/e2.py": "from .. import e\n",
    })
    assert import_graph(root) == {
        "pkg": {"pkg.sub"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.c"},
        "pkg.c": {"pkg.sub.d"},
        "pkg.sub": set(),
        "pkg.sub.d": {"pkg.e", "pkg.sub.e2"},
        "pkg.e": set(),
        "pkg.sub.e2": {"pkg.e"},
    }


def test_a_cycle_is_named_in_order(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "def later():\n    from pkg.c import x\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    import pkg.a\nx = 1\n",
    })
    assert find_cycle(import_graph(root)) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_a_name_that_is_not_a_submodule_is_an_import_of_the_package(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "pkg/__init__.py": "from pkg.a import VALUE\n",
        "pkg/a.py": "from pkg import helper\n",  # helper is defined in pkg/__init__.py
    })
    assert find_cycle(import_graph(root)) == ["pkg", "pkg.a", "pkg"]
