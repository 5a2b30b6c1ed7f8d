"""docs/architecture.md tells the truth: every module is listed where it lives, and a module
imports only modules listed before it (the layering the page describes); the relay reaches the
accounting library only through the logger and the values it takes (never the handlers)."""

from __future__ import annotations

import re
from pathlib import Path

from test_imports import PACKAGE_DIR, imported_modules, module_files

PAGE = Path(__file__).parent.parent / "docs" / "architecture.md"
# "## The relay (`mta_logging/relay/`)" → the package the table below it lists
_SECTION = re.compile(r"^## .*\(`mta_logging/(?:([a-z_]+)/)?`\)", re.MULTILINE)
_ROW = re.compile(r"^\| ((?:`[a-z_]+`(?:, )?)+) \|", re.MULTILINE)
# what writes the accounting files: the relay records through the logger, never through these
FILE_WRITING = {f"mta_logging.{name}" for name in (
    "handlers", "activefile", "spares", "archive", "recovery", "maintenance", "faults",
    "formatters", "naming", "speedups")}


def listed_modules() -> list[str]:
    """The modules the page lists, in its order (tables of each section, top to bottom)."""
    text = PAGE.read_text(encoding="utf-8")
    sections = list(_SECTION.finditer(text))
    assert sections, "docs/architecture.md lists no package"
    order: list[str] = []
    for number, section in enumerate(sections):
        end = sections[number + 1].start() if number + 1 < len(sections) else len(text)
        package = "mta_logging" + (f".{section.group(1)}" if section.group(1) else "")
        for row in _ROW.finditer(text, section.end(), end):
            for name in re.findall(r"`([a-z_]+)`", row.group(1)):
                order.append(f"{package}.{name}")
    return order


def test_every_module_is_listed_once() -> None:
    listed = listed_modules()
    modules = {name for name, path in module_files().items() if path.name != "__init__.py"}
    assert sorted(set(listed)) == sorted(modules)
    assert len(listed) == len(set(listed))


def test_modules_import_only_what_is_listed_before_them() -> None:
    order = {name: number for number, name in enumerate(listed_modules())}
    known = module_files()
    wrong = []
    for name, number in order.items():
        for imported in imported_modules(name, known[name], known):
            if imported in order and order[imported] >= number:
                wrong.append(f"{name} imports {imported}, listed after it")
    assert wrong == []


def test_the_relay_uses_the_library_only_through_the_logger() -> None:
    known = module_files()
    reaching = [
        f"{name} imports {imported}"
        for name, path in known.items() if name.startswith("mta_logging.relay")
        for imported in imported_modules(name, path, known)
        if imported in FILE_WRITING
    ]
    assert reaching == []


def test_the_page_is_where_the_readme_says() -> None:
    readme = (PACKAGE_DIR.parent / "README.md").read_text(encoding="utf-8")
    assert "docs/architecture.md" in readme
