"""Processes for tests/test_handlers.py: writers that run beside each other, die, or shut down.

Run as ``python tests/handler_workers.py MODE DIRECTORY [options]``:

``write``     log ``--count`` records ``w<worker>-<n>@example.com`` through the accounting
              logger, then exit normally (``logging.shutdown`` at exit closes the handler).
``stream``    log records ``s-<n>@example.com`` until killed; after every 100 it prints the
              number written so far (a line on stdout) so that the parent knows what to expect.
``lifecycle`` print the maintenance threads alive: after the handler is created, after it is
              closed, after a second handler is created and after ``logging.shutdown()``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mta_logging import AccountingFileHandler, AccountingLogger  # noqa: E402
from mta_logging.handlers import MAINTENANCE_THREAD  # noqa: E402


def handler_for(args: argparse.Namespace) -> AccountingFileHandler:
    return AccountingFileHandler("delivered", args.directory, archiving=args.archiving,
                                 max_size=args.max_size, compress=args.compress)


def accounting(handler: AccountingFileHandler) -> AccountingLogger:
    logger = logging.getLogger("mta.accounting")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return AccountingLogger(logger)


def maintenance_threads() -> str:
    names = [t.name for t in threading.enumerate() if t.name == MAINTENANCE_THREAD]
    return ",".join(names) or "-"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("write", "stream", "lifecycle"))
    parser.add_argument("directory", type=Path)
    parser.add_argument("--worker", default="0")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--max-size", type=float, default=200)
    parser.add_argument("--archiving", action="store_true")
    parser.add_argument("--compress", action="store_true")
    args = parser.parse_args()
    if args.mode == "write":
        acct = accounting(handler_for(args))
        for number in range(args.count):
            acct.delivered(f"w{args.worker}-{number}@example.com", job_id=args.worker)
        return 0
    if args.mode == "stream":
        acct = accounting(handler_for(args))
        number = 0
        while True:
            acct.delivered(f"s-{number}@example.com", job_id="s")
            number += 1
            if number % 100 == 0:
                print(number, flush=True)
    first = handler_for(args)
    print("created:", maintenance_threads())
    first.close()
    print("closed:", maintenance_threads())
    acct = accounting(handler_for(args))
    acct.delivered("last@example.com", job_id="1")
    print("created again:", maintenance_threads())
    logging.shutdown()
    print("after shutdown:", maintenance_threads())
    return 0


if __name__ == "__main__":
    sys.exit(main())
