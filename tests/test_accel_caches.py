"""The C path's kept reads (writer4: the Plan, the entry's reads, append_line's, the module
checks) against the pure-Python path: each scenario of tests/accel_scenarios.py changes
between two records what a kept read rests on (a logger's, a parent's, a handler's or a
formatter's attributes, their classes, the module functions, objects freed and made again at
the same address), once with the accelerator and once with it blocked; the files must be the
same bytes. And records in C keep no reference and no memory per record."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mta_logging import AccountingFileHandler, AccountingLogger, speedups

needs_accelerator = pytest.mark.skipif(speedups.ACCELERATOR is None,
                                       reason="the C accelerator was not built")
SCRIPT = Path(__file__).with_name("accel_scenarios.py")
SCENARIOS = [
    "parent_and_module_switches", "handlers_replaced_at_reused_addresses", "formatter_changes",
    "classes_changed", "factory_filters_and_order", "logger_replaced_and_alternating",
    "files_moved_closed_and_reset", "level_flipped_by_another_thread",
]


def run(mode: str, directory: Path, name: str) -> dict[str, bytes]:
    directory.mkdir()
    done = subprocess.run([sys.executable, str(SCRIPT), mode, str(directory), name],
                          capture_output=True, text=True, timeout=120,
                          env={"TZ": "Europe/Paris", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return {str(path.relative_to(directory)): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


@needs_accelerator
@pytest.mark.parametrize("name", SCENARIOS)
def test_the_c_path_writes_the_python_path_s_bytes_whatever_changes_between_records(
        tmp_path: Path, name: str) -> None:
    in_c = run("c", tmp_path / "c", name)
    in_python = run("python", tmp_path / "python", name)
    assert in_c == in_python
    if name != "level_flipped_by_another_thread":
        assert in_c  # something was written to compare


def test_every_scenario_is_run() -> None:
    source = SCRIPT.read_text()
    assert sorted(SCENARIOS) == sorted(
        line.split("(")[0][4:] for line in source.split("@scenario\n")[1:])


def resident_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4


@needs_accelerator
def test_records_in_c_keep_no_reference_and_no_memory(tmp_path: Path) -> None:
    logger = logging.getLogger("test.accel.caches.leak")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = AccountingFileHandler("delivered", path=tmp_path)
    logger.addHandler(handler)
    try:
        acct = AccountingLogger(logger)
        for index in range(5000):
            acct.delivered(f"warm{index}@example.com")
        held = [logger, handler, handler.formatter, logger.handlers, logger._cache]  # type: ignore[attr-defined]
        gc.collect()
        counts, before = [sys.getrefcount(each) for each in held], resident_kb()
        for index in range(50000):
            acct.delivered(f"r{index}@example.com")
            if index % 1000 == 0:
                handler.setLevel(logging.NOTSET)  # what was kept is read again
        gc.collect()
        assert [sys.getrefcount(each) for each in held] == counts
        assert resident_kb() - before < 1024
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert sum(1 for path in tmp_path.rglob("*.tsv")
               for _ in path.open()) == 55000 + 1
