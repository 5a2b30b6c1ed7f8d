"""Records/s writing the delivered record as one JSON line per call, flushed each time.

    .venv/bin/python benchmarks/bench_json.py           # 3 interleaved rounds
    .venv/bin/python benchmarks/bench_json.py --quick   # one short round

Rows: the stdlib RotatingFileHandler writing the TSV line (the column every table shares),
python-json-logger's own ``JsonFormatter`` on a RotatingFileHandler (the JSON baseline: the
values passed as ``extra``), ours end to end (``AccountingLogger.delivered`` with
``format: json``, archiving on), and our ``AccountingJsonFormatter`` alone on a
RotatingFileHandler. All write the same keys and values.
"""

from __future__ import annotations

import logging
import logging.handlers
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import (
    BASELINE,
    BIG_FILE,
    FIELDS,
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
from bench_write import stdlib_rotating

PJL = "python-json-logger JsonFormatter + RotatingFileHandler"
OURS = "ours: AccountingLogger.delivered, format json"


def _rotating(directory: Path) -> logging.Handler:
    return logging.handlers.RotatingFileHandler(
        directory / "d.jsonl", maxBytes=BIG_FILE * 10**6, backupCount=5)


def python_json_logger(directory: Path, data: Sample) -> Writer:
    from pythonjsonlogger.json import JsonFormatter

    handler = _rotating(directory)
    logger = stdlib_logger(handler)
    handler.setFormatter(JsonFormatter(list(FIELDS)))
    values = LineValues(data)

    def write(i: int) -> None:
        logger.info("delivered", extra=dict(zip(FIELDS, values(i), strict=True)))

    return write


def ours_end_to_end(directory: Path, data: Sample) -> Writer:
    from mta_logging import AccountingLogger

    configure_ours(directory, format="json", extension="jsonl")
    delivered = AccountingLogger().delivered

    def write(i: int) -> None:
        delivered(data.rcpt(i), **data.keywords(i))

    return write


def ours_formatter_on_rotating(directory: Path, data: Sample) -> Writer:
    from mta_logging import AccountingJsonFormatter, AccountingLogger

    handler = _rotating(directory)
    stdlib_logger(handler)
    handler.setFormatter(AccountingJsonFormatter(kind="delivered"))
    delivered = AccountingLogger("bench").delivered

    def write(i: int) -> None:
        delivered(data.rcpt(i), **data.keywords(i))

    return write


IMPLEMENTATIONS: dict[str, Callable[[Path, Sample], Writer]] = {
    BASELINE + " (TSV line)": stdlib_rotating,
    PJL: python_json_logger,
    OURS: ours_end_to_end,
    "ours: AccountingJsonFormatter + RotatingFileHandler": ours_formatter_on_rotating,
}


def child(name: str, seconds: float) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-json-"))
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
    print(table(rows, baseline=BASELINE + " (TSV line)"))
    print()
    print(target(rows, OURS, PJL, 1.5))
    print(target(rows, "ours: AccountingJsonFormatter + RotatingFileHandler", PJL, 1.5))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
