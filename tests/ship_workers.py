"""A writer process for the ship tests: accounting records through the library, rotated often.

Run as ``python tests/ship_workers.py DIRECTORY --worker N --count C [--pause S] [--hold FILE]``:
logs ``C``
records (every 7th a bounce, every 5th deferred; the rest delivered) through one handler per
kind with archiving, a 10 kB ``max_size`` and compression, so that files rotate, move into the
archive and turn into ``.gz`` while a shipper tails them; then exits normally. With ``--hold``,
it stops after half of the records until FILE exists (exit 3 if it does not within 300 s), so
that a test can make its failures while every writer is mid-stream, however slow the machine.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mta_logging import AccountingFileHandler, AccountingLogger  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--hold", type=Path)
    args = parser.parse_args()
    logger = logging.getLogger("mta.accounting")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for kind in ("delivered", "deferred", "bounce"):
        logger.addHandler(AccountingFileHandler(
            kind, args.directory / kind, archiving=True, max_size=0.01, compress=True))
    accounting = AccountingLogger(logger)
    queued = time.time() - 30
    for number in range(args.count):
        if args.hold is not None and number == args.count // 2:
            deadline = time.monotonic() + 300
            while not args.hold.exists():
                if time.monotonic() > deadline:
                    sys.exit(3)
                time.sleep(0.05)
        rcpt = f"w{args.worker}-{number}@d{number % 4}.example"
        common = {"job_id": f"job{number % 3}", "vmta": f"pool{number % 2}",
                  "time_queued": queued}
        if number % 7 == 6:
            accounting.bounced(rcpt, dsn_status="5.1.1",
                               dsn_msg=f"550 5.1.1 <{rcpt}> unknown user {number}", **common)
        elif number % 5 == 4:
            accounting.deferred(rcpt, dsn_status="4.2.0", dsn_msg="451 4.2.0 try later",
                                **common)
        else:
            accounting.delivered(rcpt, dsn_status="2.0.0", **common)
        if args.pause:
            time.sleep(args.pause)
    logging.shutdown()


if __name__ == "__main__":
    main()
