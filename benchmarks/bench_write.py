"""Records/s writing one 10-field delivered line per call, flushed to the OS each time.

    .venv/bin/python benchmarks/bench_write.py           # 20 rounds of 0.25 s each, under a minute
    .venv/bin/python benchmarks/bench_write.py --quick   # 3 short rounds

Rows: the standard library's RotatingFileHandler (the baseline) and FileHandler,
picologging's FileHandler and RotatingFileHandler (its C logger, formatter and handlers, as
``import picologging as logging`` uses them; and its FileHandler under a stdlib logger and
Formatter), concurrent-log-handler and loguru (rotation on: size and time), ours through
``AccountingLogger.delivered`` (also with an ``eventId`` field after the ten, to measure what
a new id per record costs) and through a plain logger set up by ``dictConfig``, a bare
``os.write`` loop formatting the line with one ``strftime`` per record, and a bare
``file.write`` + ``flush`` of preformatted lines (the ceiling).
"""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    BASELINE,
    BIG_FILE,
    BRACE_LINE,
    DEST_IP,
    DSN_MSG,
    DSN_STATUS,
    JOB_IDS,
    JOBS,
    PERCENT_LINE,
    RCPTS,
    RECIPIENTS,
    ROTATE_EVERY,
    SRC_IP,
    SRC_MTA,
    VMTA,
    Writer,
    configure_ours,
    delivered_writer,
    run_comparison,
    stdlib_logger,
    time_queued,
)

from mta_logging.fields import TimeText


def _percent_writer(logger: Any) -> Writer:
    logged, queued = TimeText().text, TimeText().text(time_queued())

    def write(i: int) -> None:
        logger.info(PERCENT_LINE, "d", logged(time.time()), queued, RECIPIENTS[i % RCPTS],
                    SRC_MTA, SRC_IP, VMTA, JOB_IDS[i % JOBS], DSN_STATUS, DSN_MSG)

    return write


def stdlib_rotating(directory: Path) -> Writer:
    handler = logging.handlers.RotatingFileHandler(
        directory / "d.tsv", maxBytes=BIG_FILE * 10**6, backupCount=5)
    return _percent_writer(stdlib_logger(handler))


def stdlib_file(directory: Path) -> Writer:
    return _percent_writer(stdlib_logger(logging.FileHandler(directory / "d.tsv")))


def picologging_file(directory: Path) -> Writer:
    import picologging

    return _percent_writer(stdlib_logger(picologging.FileHandler(directory / "d.tsv"),
                                         picologging))


def picologging_under_stdlib(directory: Path) -> Writer:
    """picologging's FileHandler on a stdlib logger, with the stdlib's Formatter."""
    import picologging

    return _percent_writer(stdlib_logger(picologging.FileHandler(directory / "d.tsv")))


def picologging_rotating(directory: Path) -> Writer:
    import picologging
    from picologging.handlers import RotatingFileHandler

    handler = RotatingFileHandler(directory / "d.tsv", maxBytes=BIG_FILE * 10**6, backupCount=5)
    return _percent_writer(stdlib_logger(handler, picologging))


def concurrent_log_handler(directory: Path) -> Writer:
    from concurrent_log_handler import ConcurrentTimedRotatingFileHandler

    handler = ConcurrentTimedRotatingFileHandler(
        str(directory / "d.tsv"), when="s", interval=ROTATE_EVERY, maxBytes=BIG_FILE * 10**6,
        backupCount=5)
    return _percent_writer(stdlib_logger(handler))


def loguru_file(directory: Path) -> Writer:
    from loguru import logger

    limit, deadline = BIG_FILE * 10**6, time.time() + ROTATE_EVERY

    def size_or_time(message: str, file: Any) -> bool:
        # what loguru's own size rotation does (seek to the end, tell), plus a time limit
        file.seek(0, os.SEEK_END)
        return bool(file.tell() + len(message) > limit or time.time() >= deadline)

    logger.remove()
    logger.add(directory / "d.tsv", format="{message}", rotation=size_or_time, catch=True,
               backtrace=False, diagnose=False)
    logged, queued = TimeText().text, TimeText().text(time_queued())

    def write(i: int) -> None:
        logger.info(BRACE_LINE, "d", logged(time.time()), queued, RECIPIENTS[i % RCPTS],
                    SRC_MTA, SRC_IP, VMTA, JOB_IDS[i % JOBS], DSN_STATUS, DSN_MSG)

    return write


def ours_accounting_logger(directory: Path, **settings: Any) -> Writer:
    from mta_logging import AccountingLogger

    configure_ours(directory, **settings)
    return delivered_writer(AccountingLogger().delivered)


def ours_with_event_id(directory: Path) -> Writer:
    """Ours, with ``eventId`` after the ten fields: the cost of a new id per record."""
    from mta_logging import DEFAULT_FIELDS, Kind

    return ours_accounting_logger(
        directory, fields={"delivered": [*DEFAULT_FIELDS[Kind.DELIVERED], "eventId"]})


def ours_plain_logger(directory: Path) -> Writer:
    """The "reuse in any app logger" path: dictConfig, then ``logger.info(..., extra=...)``."""
    from mta_logging import Kind, Outcome, load, to_dict_config

    logging.config.dictConfig(to_dict_config(load({
        "path": str(directory), "archiving": True, "archive_interval": ROTATE_EVERY,
        "max_size": BIG_FILE})))
    logger = logging.getLogger("mta.accounting")
    queued = time_queued()

    def write(i: int) -> None:
        rcpt = RECIPIENTS[i % RCPTS]
        outcome = Outcome(kind=Kind.DELIVERED, rcpt=rcpt, time_queued=queued, src_mta=SRC_MTA,
                          src_ip=SRC_IP, dest_ip=DEST_IP, vmta=VMTA, job_id=JOB_IDS[i % JOBS],
                          dsn_status=DSN_STATUS, dsn_msg=DSN_MSG)
        logger.info("delivered %s", rcpt, extra={"outcome": outcome})

    return write


def bare_os_write(directory: Path) -> Writer:
    """One ``os.write`` of the line per record, the time text made by ``strftime`` each time."""
    fd = os.open(directory / "d.tsv", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    queued = TimeText().text(time_queued())

    def write(i: int) -> None:
        os.write(fd, (PERCENT_LINE % (
            "d", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()), queued,
            RECIPIENTS[i % RCPTS], SRC_MTA, SRC_IP, VMTA, JOB_IDS[i % JOBS], DSN_STATUS,
            DSN_MSG) + "\n").encode())

    return write


def bare_write(directory: Path) -> Writer:
    file = open(directory / "d.tsv", "a", encoding="utf-8")  # noqa: SIM115 - closed at exit
    logged, queued = TimeText().text, TimeText().text(time_queued())

    def write(i: int) -> None:
        file.write(PERCENT_LINE % ("d", logged(time.time()), queued, RECIPIENTS[i % RCPTS],
                                   SRC_MTA, SRC_IP, VMTA, JOB_IDS[i % JOBS], DSN_STATUS,
                                   DSN_MSG) + "\n")
        file.flush()

    return write


OURS = "ours: AccountingLogger.delivered"
PLAIN = "ours: dictConfig + logger.info(extra=)"
PICO_FILE = "picologging FileHandler"
PICO_ROTATING = "picologging RotatingFileHandler"
PICO_UNDER_STDLIB = "picologging FileHandler on a stdlib logger"
BARE_OS_WRITE = "bare os.write, strftime per line"
IMPLEMENTATIONS: dict[str, Callable[[Path], Writer]] = {
    BASELINE: stdlib_rotating,
    "stdlib FileHandler": stdlib_file,
    PICO_FILE: picologging_file,
    PICO_ROTATING: picologging_rotating,
    PICO_UNDER_STDLIB: picologging_under_stdlib,
    "concurrent-log-handler (size+time)": concurrent_log_handler,
    "loguru (size+time)": loguru_file,
    OURS: ours_accounting_logger,
    "ours: AccountingLogger.delivered + eventId": ours_with_event_id,
    PLAIN: ours_plain_logger,
    BARE_OS_WRITE: bare_os_write,
    "bare file.write + flush (ceiling)": bare_write,
}


def main() -> None:
    run_comparison(__file__, __doc__.splitlines()[0], IMPLEMENTATIONS, BASELINE, [
        (OURS, BASELINE, 2.0),
        (OURS, "stdlib FileHandler", 1.0),
        (OURS, PICO_FILE, 1.3),
        (OURS, PICO_ROTATING, 1.3),
        (OURS, PICO_UNDER_STDLIB, 1.3),
        (OURS, "concurrent-log-handler (size+time)", 1.0),
        (OURS, "loguru (size+time)", 1.0),
        (PLAIN, BASELINE, 1.5),
    ])


if __name__ == "__main__":
    main()
