"""Records/s writing one 10-field delivered line per call, flushed to the OS each time.

    .venv/bin/python benchmarks/bench_write.py           # 3 interleaved rounds, ~1 minute
    .venv/bin/python benchmarks/bench_write.py --quick   # one short round

Rows: the standard library's RotatingFileHandler (the baseline) and FileHandler,
concurrent-log-handler and loguru (rotation on: size and time), ours through
``AccountingLogger.delivered`` and through a plain logger set up by ``dictConfig``, and a bare
``file.write`` + ``flush`` of preformatted lines (the ceiling).
"""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import (
    BASELINE,
    BIG_FILE,
    BRACE_LINE,
    PERCENT_LINE,
    ROTATE_EVERY,
    LineValues,
    Sample,
    Writer,
    arguments,
    compare,
    configure_ours,
    machine,
    measure,
    report_child,
    sample,
    stdlib_logger,
    table,
    target,
)


def _percent_writer(logger: logging.Logger, data: Sample) -> Writer:
    values = LineValues(data)

    def write(i: int) -> None:
        logger.info(PERCENT_LINE, *values(i))

    return write


def stdlib_rotating(directory: Path, data: Sample) -> Writer:
    handler = logging.handlers.RotatingFileHandler(
        directory / "d.tsv", maxBytes=BIG_FILE * 10**6, backupCount=5)
    return _percent_writer(stdlib_logger(handler), data)


def stdlib_file(directory: Path, data: Sample) -> Writer:
    return _percent_writer(stdlib_logger(logging.FileHandler(directory / "d.tsv")), data)


def concurrent_log_handler(directory: Path, data: Sample) -> Writer:
    from concurrent_log_handler import ConcurrentTimedRotatingFileHandler

    handler = ConcurrentTimedRotatingFileHandler(
        str(directory / "d.tsv"), when="s", interval=ROTATE_EVERY, maxBytes=BIG_FILE * 10**6,
        backupCount=5)
    return _percent_writer(stdlib_logger(handler), data)


def loguru_file(directory: Path, data: Sample) -> Writer:
    from loguru import logger

    limit, deadline = BIG_FILE * 10**6, time.time() + ROTATE_EVERY

    def size_or_time(message: str, file: object) -> bool:
        # what loguru's own size rotation does (seek to end, tell), plus a time limit
        file.seek(0, os.SEEK_END)  # type: ignore[attr-defined]
        return file.tell() + len(message) > limit or time.time() >= deadline  # type: ignore

    logger.remove()
    logger.add(directory / "d.tsv", format="{message}", rotation=size_or_time, catch=True,
               backtrace=False, diagnose=False)
    values = LineValues(data)

    def write(i: int) -> None:
        logger.info(BRACE_LINE, *values(i))

    return write


def ours_accounting_logger(directory: Path, data: Sample) -> Writer:
    from mta_logging import AccountingLogger

    configure_ours(directory)
    delivered = AccountingLogger().delivered

    def write(i: int) -> None:
        delivered(data.rcpt(i), **data.keywords(i))

    return write


def ours_plain_logger(directory: Path, data: Sample) -> Writer:
    """The "reuse in any app logger" path: dictConfig, then ``logger.info(..., extra=...)``."""
    from mta_logging import Kind, Outcome, load, to_dict_config

    logging.config.dictConfig(to_dict_config(load({
        "path": str(directory), "archiving": True, "archive_interval": ROTATE_EVERY,
        "max_size": BIG_FILE})))
    logger = logging.getLogger("mta.accounting")

    def write(i: int) -> None:
        rcpt = data.rcpt(i)
        outcome = Outcome(kind=Kind.DELIVERED, rcpt=rcpt, **data.keywords(i))
        logger.info("delivered %s", rcpt, extra={"outcome": outcome})

    return write


def bare_write(directory: Path, data: Sample) -> Writer:
    file = open(directory / "d.tsv", "a", encoding="utf-8")  # noqa: SIM115 - closed at exit
    values = LineValues(data)

    def write(i: int) -> None:
        file.write(PERCENT_LINE % values(i) + "\n")
        file.flush()

    return write


IMPLEMENTATIONS: dict[str, Callable[[Path, Sample], Writer]] = {
    BASELINE: stdlib_rotating,
    "stdlib FileHandler": stdlib_file,
    "concurrent-log-handler (size+time)": concurrent_log_handler,
    "loguru (size+time)": loguru_file,
    "ours: AccountingLogger.delivered": ours_accounting_logger,
    "ours: dictConfig + logger.info(extra=)": ours_plain_logger,
    "bare file.write + flush (ceiling)": bare_write,
}


def child(name: str, seconds: float) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-write-"))
    try:
        write = IMPLEMENTATIONS[name](directory, sample())
        report_child(measure(write, seconds))
        logging.shutdown()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rounds=3, seconds=2.0)
    if args.child:
        child(args.child, args.seconds)
        return
    rows = compare(__file__, list(IMPLEMENTATIONS), args.rounds, args.seconds)
    print(machine())
    print()
    print(table(rows))
    print()
    print(target(rows, "ours: AccountingLogger.delivered", BASELINE, 2.0))
    print(target(rows, "ours: AccountingLogger.delivered", "stdlib FileHandler", 1.0))
    for other in ("concurrent-log-handler (size+time)", "loguru (size+time)"):
        print(target(rows, "ours: AccountingLogger.delivered", other, 1.0))
    print(target(rows, "ours: dictConfig + logger.info(extra=)", BASELINE, 1.5))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
