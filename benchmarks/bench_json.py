"""Records/s writing the delivered record as one JSON line per call, flushed each time.

    .venv/bin/python benchmarks/bench_json.py           # 20 rounds of 0.25 s each, ~30 s
    .venv/bin/python benchmarks/bench_json.py --quick   # 3 short rounds

Rows: the stdlib RotatingFileHandler writing the TSV line (the column every table shares),
python-json-logger's own ``JsonFormatter`` on a RotatingFileHandler (the JSON baseline: the
values passed as ``extra``), ours end to end (``AccountingLogger.delivered`` with
``format: json``, archiving on), and our ``AccountingJsonFormatter`` alone on a
RotatingFileHandler. All write the same keys and values.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from collections.abc import Callable
from pathlib import Path

from _common import (
    BASELINE,
    BIG_FILE,
    DSN_MSG,
    DSN_STATUS,
    FIELDS,
    JOB_IDS,
    JOBS,
    RCPTS,
    RECIPIENTS,
    SRC_IP,
    SRC_MTA,
    VMTA,
    Writer,
    delivered_writer,
    run_comparison,
    stdlib_logger,
    time_queued,
)
from bench_write import ours_accounting_logger, stdlib_rotating

from mta_logging.fields import TimeText

PJL = "python-json-logger JsonFormatter + RotatingFileHandler"
OURS = "ours: AccountingLogger.delivered, format json"
OURS_FORMATTER = "ours: AccountingJsonFormatter + RotatingFileHandler"


def _rotating(directory: Path) -> logging.Handler:
    return logging.handlers.RotatingFileHandler(
        directory / "d.jsonl", maxBytes=BIG_FILE * 10**6, backupCount=5)


def python_json_logger(directory: Path) -> Writer:
    from pythonjsonlogger.json import JsonFormatter

    handler = _rotating(directory)
    logger = stdlib_logger(handler)
    handler.setFormatter(JsonFormatter(list(FIELDS)))
    logged, queued = TimeText().text, TimeText().text(time_queued())

    def write(i: int) -> None:
        logger.info("delivered", extra={
            "type": "d", "timeLogged": logged(time.time()), "timeQueued": queued,
            "rcpt": RECIPIENTS[i % RCPTS], "srcMta": SRC_MTA, "srcIp": SRC_IP, "vmta": VMTA,
            "jobId": JOB_IDS[i % JOBS], "dsnStatus": DSN_STATUS, "dsnMsg": DSN_MSG})

    return write


def ours_end_to_end(directory: Path) -> Writer:
    return ours_accounting_logger(directory, format="json", extension="jsonl")


def ours_formatter_on_rotating(directory: Path) -> Writer:
    from mta_logging import AccountingJsonFormatter, AccountingLogger

    handler = _rotating(directory)
    stdlib_logger(handler)
    handler.setFormatter(AccountingJsonFormatter(kind="delivered"))
    return delivered_writer(AccountingLogger("bench").delivered)


IMPLEMENTATIONS: dict[str, Callable[[Path], Writer]] = {
    BASELINE + " (TSV line)": stdlib_rotating,
    PJL: python_json_logger,
    OURS: ours_end_to_end,
    OURS_FORMATTER: ours_formatter_on_rotating,
}


def main() -> None:
    run_comparison(__file__, __doc__.splitlines()[0], IMPLEMENTATIONS, BASELINE + " (TSV line)",
                   [(OURS, PJL, 1.5), (OURS_FORMATTER, PJL, 1.5)])


if __name__ == "__main__":
    main()
