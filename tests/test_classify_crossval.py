"""``benchmarks/classify_crossval.py`` and held-out set F (``tests/data/bounce_heldout_f.tsv``).

Set F is the measure of mail systems the rules never saw, so it must last: the file is held to
the SHA-256 that ``tests/data/README.md`` records (taken before it was first scored), and the
script prints its counts on every run but none of its rows, mail systems or misses unless
``--misses --show-held-out`` asks for them. The checks below never print a row either: their
failure messages give counts only.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mta_logging.classify import CATEGORIES, default_classifier

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SET_F = DATA / "bounce_heldout_f.tsv"
COLUMNS = ["code", "enhanced", "text", "category", "source", "doubtful"]


def load_crossval() -> ModuleType:
    """The script as a module (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "classify_crossval", ROOT / "benchmarks" / "classify_crossval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


crossval = load_crossval()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert crossval.main(list(argv)) == 0
    return str(capsys.readouterr().out)


def set_f_rows() -> list[dict[str, str]]:
    with open(SET_F, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_set_f_is_the_file_its_readme_hashed() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    recorded = re.search(r"bounce_heldout_f\.tsv.*?SHA-256 `([0-9a-f]{64})`", readme, re.S)
    assert recorded, "tests/data/README.md gives no SHA-256 for bounce_heldout_f.tsv"
    assert hashlib.sha256(SET_F.read_bytes()).hexdigest() == recorded.group(1), (
        "bounce_heldout_f.tsv changed since it was hashed: set F is a held-out set, "
        "build a new set instead of editing this one")


def test_set_f_rows_are_labelled_with_the_project_categories() -> None:
    with open(SET_F, encoding="utf-8") as stream:
        assert stream.readline().rstrip("\n").split("\t") == COLUMNS
    rows = set_f_rows()
    systems = {crossval.system_of(row["source"]) for row in rows}
    assert len(rows) >= 150 and len(systems) >= 50, (len(rows), len(systems))
    bad = [n for n, row in enumerate(rows, 2) if (
        row["category"] not in CATEGORIES
        or not (row["doubtful"] == "no" or re.fullmatch(r"yes: \S.*", row["doubtful"]))
        or ":" not in row["source"]
        or not row["text"].strip()
        or not re.fullmatch(r"(\d{3})?", row["code"])
        or not re.fullmatch(r"([245]\.\d{1,3}\.\d{1,3})?", row["enhanced"]))]
    assert not bad, f"lines of bounce_heldout_f.tsv not in the file's format: {bad}"


def test_set_f_shares_no_mail_system_with_the_other_held_out_file() -> None:
    other = {crossval.system_of(row["source"]).casefold()
             for row in crossval.read_rows(DATA / crossval.HELD_OUT)}
    mine = {crossval.system_of(row["source"]).casefold() for row in set_f_rows()}
    assert not other & mine, "mail systems in both held-out files: " + ", ".join(other & mine)


def test_set_f_doubtful_column_is_read() -> None:
    cases = crossval.read_set_f()
    flags = [row["doubtful"].startswith("yes") for row in set_f_rows()]
    assert [case.doubtful for case in cases] == flags
    assert 0 < sum(flags) < len(flags)


def printed_rows(out: str, cases: list[object]) -> int:
    """How many of set F's rows show in ``out``: by text, or by mail system as a table row."""
    texts = sum(1 for case in cases if case.text in out)  # type: ignore[attr-defined]
    systems = sum(1 for system in {case.group for case in cases}  # type: ignore[attr-defined]
                  if f"| {system} |" in out)
    return texts + systems


def test_default_run_prints_set_f_counts_and_none_of_its_rows(
        capsys: pytest.CaptureFixture[str]) -> None:
    cases = crossval.read_set_f()
    classifier = default_classifier()
    right, total, _ = crossval.score(classifier, cases)
    out = run(capsys)
    systems = len({case.group for case in cases})
    assert f"| all | {systems} | {total} | {right} | {crossval.percent(right, total)} |" in out
    for half in (1, 2):
        part = [case for case in cases if crossval.half_of(case.group) == half]
        r, t, _ = crossval.score(classifier, part)
        assert f"| half {half} | {len({c.group for c in part})} | {t} | {r} |" in out
    sure = [case for case in cases if not case.doubtful]
    r, t, _ = crossval.score(classifier, sure)
    assert f"| not doubtful | {len({c.group for c in sure})} | {t} | {r} |" in out
    for category in {case.category for case in cases}:
        part = [case for case in cases if case.category == category]
        r, t, _ = crossval.score(classifier, part)
        assert f"| {category} | {t} | {r} | {crossval.percent(r, t)} |" in out
    leaked = printed_rows(out, cases)
    assert leaked == 0, f"{leaked} rows or mail systems of set F printed without being asked"


def test_misses_alone_print_none_of_set_f(capsys: pytest.CaptureFixture[str]) -> None:
    cases = crossval.read_set_f()
    out = run(capsys, "--misses")
    leaked = printed_rows(out, cases)
    assert leaked == 0, f"{leaked} rows or mail systems of set F printed by --misses"


def test_show_held_out_prints_set_f_systems_and_misses(
        capsys: pytest.CaptureFixture[str]) -> None:
    cases = crossval.read_set_f()
    _, _, misses = crossval.score(default_classifier(), cases)
    out = run(capsys, "--misses", "--show-held-out")
    lines = out.splitlines()
    missing = sum(1 for miss in misses if miss not in lines)
    assert missing == 0, f"{missing} of set F's {len(misses)} misses not printed"
    systems = {case.group for case in cases}
    unlisted = sum(1 for system in systems
                   if f"| {system} | {crossval.half_of(system)} |" not in out)
    assert unlisted == 0, f"{unlisted} of set F's {len(systems)} mail systems not listed"
    assert printed_rows(out, cases) >= len(systems)  # what the other tests look for does show


def test_extra_refuses_set_f(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        crossval.main(["--extra", str(SET_F), "--misses"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "bounce_heldout_f.tsv is scored on every run" in err
    assert not any(case.text in err for case in crossval.read_set_f())
