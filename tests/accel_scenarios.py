"""Processes for tests/test_accel_caches.py: one scenario of changes made between records, run
once with the C accelerator and once with it blocked, so that the files can be compared.

Run as ``python tests/accel_scenarios.py c|python DIRECTORY SCENARIO``. The clock is frozen
(every record, line and file name gets T0); each scenario logs through loggers of its own and
changes one thing (or several) between two records, the change the C path must notice."""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if sys.argv[1] == "python":
    sys.modules["mta_logging._accel"] = None  # type: ignore[assignment]

T0 = time.mktime((2025, 11, 26, 6, 20, 0, 0, 0, -1))
time.time = lambda: T0

from mta_logging import (  # noqa: E402
    AccountingFileHandler,
    AccountingFormatter,
    AccountingLogger,
    speedups,
)
from mta_logging.outcome import Kind  # noqa: E402

OUT = Path(sys.argv[2])
SCENARIOS: dict[str, Callable[[], None]] = {}
_count = 0


def scenario(function: Callable[[], None]) -> Callable[[], None]:
    SCENARIOS[function.__name__] = function
    return function


def made(name: str, directory: str = "a", propagate: bool = False
         ) -> tuple[logging.Logger, list[AccountingFileHandler]]:
    logger = logging.getLogger(name)
    logger.propagate = propagate
    logger.setLevel(logging.INFO)
    handlers = [AccountingFileHandler(kind, path=OUT / directory)
                for kind in ("delivered", "deferred")]
    for handler in handlers:
        logger.addHandler(handler)
    return logger, handlers


def record(acct: AccountingLogger, tag: str) -> None:
    global _count
    _count += 1
    acct.delivered(f"{tag}-{_count}@example.com")


@scenario
def parent_and_module_switches() -> None:
    parent, _ = made("scenario.P", "p")
    child = logging.getLogger("scenario.P.c")
    child.propagate = True
    acct = AccountingLogger(child)
    record(acct, "x")
    record(acct, "x")
    parent.setLevel(logging.ERROR)
    child.setLevel(logging.NOTSET)
    record(acct, "parent-error")
    parent.setLevel(logging.INFO)
    record(acct, "parent-info")
    logging.disable(logging.CRITICAL)
    record(acct, "disabled")
    logging.disable(logging.NOTSET)
    record(acct, "enabled")
    parent.disabled = True
    record(acct, "parent-disabled")  # (a parent's disabled is not asked by callHandlers)
    parent.disabled = False
    child.disabled = True
    record(acct, "child-disabled")
    child.disabled = False
    record(acct, "end")


@scenario
def handlers_replaced_at_reused_addresses() -> None:
    logger, _ = made("scenario.S")
    acct = AccountingLogger(logger)
    record(acct, "a")
    record(acct, "a")
    for index in range(30):
        old = logger.handlers[0]
        logger.removeHandler(old)
        old.close()
        del old
        gc.collect()  # the new handler may take the old one's address
        new = AccountingFileHandler("deferred" if index % 2 else "delivered",
                                    path=OUT / f"r{index}")
        if index % 3 == 0:
            new.setLevel(logging.ERROR)
        logger.handlers.insert(0, new)
        del new
        record(acct, f"i{index}")


@scenario
def formatter_changes() -> None:
    logger, handlers = made("scenario.F")
    acct = AccountingLogger(logger)
    record(acct, "a")
    record(acct, "a")
    formatter: Any = handlers[0].formatter
    formatter.datefmt = "%Y"
    record(acct, "datefmt")
    formatter.converter = time.gmtime
    record(acct, "converter")
    formatter.default_msec_format = "%s;%03d"
    record(acct, "msec")
    handlers[0].terminator = "\r\n"
    record(acct, "terminator")
    for index in range(10):
        handlers[0].setFormatter(AccountingFormatter(kind="delivered",
                                                     separator=";" if index % 2 else "|"))
        gc.collect()  # the new formatter may take the old one's address
        record(acct, f"formatter{index}")
    handlers[0].formatter._separator = ":"  # type: ignore[union-attr]
    record(acct, "separator")


@scenario
def classes_changed() -> None:
    logger, handlers = made("scenario.C")
    acct = AccountingLogger(logger)
    record(acct, "a")
    record(acct, "a")
    original = AccountingFileHandler.emit
    seen: list[str] = []

    def emit(self: AccountingFileHandler, log_record: logging.LogRecord) -> None:
        seen.append(log_record.getMessage())
        original(self, log_record)

    AccountingFileHandler.emit = emit  # type: ignore[method-assign]
    record(acct, "emit-patched")
    AccountingFileHandler.emit = original  # type: ignore[method-assign]
    record(acct, "emit-back")
    assert len(seen) == 1, seen

    class Refusing(AccountingFileHandler):
        def handle(self, log_record: logging.LogRecord) -> bool:
            return False

    handlers[0].__class__ = Refusing
    record(acct, "handler-subclass")
    handlers[0].__class__ = AccountingFileHandler
    record(acct, "handler-back")

    class Fixed(AccountingFormatter):
        def format(self, log_record: logging.LogRecord) -> str:
            return "fixed"

    formatter: Any = handlers[0].formatter
    formatter.__class__ = Fixed
    record(acct, "formatter-subclass")
    formatter.__class__ = AccountingFormatter
    record(acct, "formatter-back")

    class Silent(logging.Logger):
        def callHandlers(self, log_record: logging.LogRecord) -> None:  # noqa: N802
            pass

    logger.__class__ = Silent
    record(acct, "logger-subclass")
    logger.__class__ = logging.Logger
    record(acct, "logger-back")
    enabled_for = logging.Logger.isEnabledFor
    logging.Logger.isEnabledFor = lambda self, level: False  # type: ignore[method-assign]
    record(acct, "never-enabled")
    logging.Logger.isEnabledFor = enabled_for  # type: ignore[method-assign]
    record(acct, "end")


@scenario
def factory_filters_and_order() -> None:
    logger, handlers = made("scenario.R")
    acct = AccountingLogger(logger)
    record(acct, "a")
    record(acct, "a")
    old = logging.getLogRecordFactory()

    def factory(*arguments: Any, **keywords: Any) -> logging.LogRecord:
        made_record = old(*arguments, **keywords)
        made_record.created, made_record.msecs = 1e9, 0.0
        return made_record

    logging.setLogRecordFactory(factory)
    record(acct, "factory")
    logging.setLogRecordFactory(old)
    record(acct, "factory-back")
    handlers[0].addFilter(lambda log_record: False)
    record(acct, "handler-filter")
    handlers[0].filters.clear()
    record(acct, "handler-filter-gone")
    logger.addFilter(lambda log_record: False)
    record(acct, "logger-filter")
    logger.filters.clear()
    record(acct, "logger-filter-gone")
    logger.handlers.reverse()
    record(acct, "reversed")
    logger.handlers[0], logger.handlers[1] = logger.handlers[1], logger.handlers[0]
    record(acct, "swapped")


@scenario
def logger_replaced_and_alternating() -> None:
    first, _ = made("scenario.A1", "one")
    second, _ = made("scenario.A2", "two")
    one, two = AccountingLogger(first), AccountingLogger(second)
    for index in range(20):
        record(one if index % 2 else two, "alternating")
        if index == 7:
            first.setLevel(logging.ERROR)
        if index == 13:
            first.setLevel(logging.INFO)
            second.handlers[0].setLevel(60)
    new = logging.Logger("scenario.A1")
    new.propagate = False
    new.addHandler(AccountingFileHandler("delivered", path=OUT / "new"))
    logging.Logger.manager.loggerDict["scenario.A1"] = new
    record(one, "old-after-replacement")
    record(AccountingLogger(logging.getLogger("scenario.A1")), "new")
    Kind.DELIVERED.level = logging.DEBUG
    record(one, "kind-debug")
    Kind.DELIVERED.level = logging.INFO
    record(one, "kind-info")


@scenario
def files_moved_closed_and_reset() -> None:
    logger, handlers = made("scenario.M")
    acct = AccountingLogger(logger)
    record(acct, "a")
    record(acct, "a")
    for path in sorted((OUT / "a").rglob("*.tsv")):
        os.rename(path, f"{path}.moved")
    record(acct, "moved")
    handlers[0].max_bytes = 1
    record(acct, "max-bytes")
    record(acct, "max-bytes")
    handlers[0].fsync = "always"
    record(acct, "always")
    handlers[0].fsync = "never"
    record(acct, "never")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    record(acct, "tz")
    handlers[0].close()
    record(acct, "closed")


@scenario
def level_flipped_by_another_thread() -> None:
    """Not comparable line by line (the thread's timing): every line written is whole."""
    logger, handlers = made("scenario.T", "t")
    acct = AccountingLogger(logger)
    stop = threading.Event()

    def flip() -> None:
        count = 0
        while not stop.is_set():
            handlers[0].setLevel(logging.ERROR if count % 2 else logging.NOTSET)
            count += 1

    thread = threading.Thread(target=flip)
    thread.start()
    for index in range(3000):
        acct.delivered(f"t{index}@example.com")
    stop.set()
    thread.join()
    logging.shutdown()
    for path in sorted((OUT / "t").rglob("*.tsv")):
        for line in path.read_text().splitlines()[1:]:
            assert re.fullmatch(r"d\t[0-9: -]+\t\tt\d+@example.com\t+", line), line
        path.unlink()


if __name__ == "__main__":
    assert (speedups.ACCELERATOR is None) == (sys.argv[1] == "python")
    SCENARIOS[sys.argv[3]]()
    logging.shutdown()
