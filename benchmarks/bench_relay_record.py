"""Instructions per accounting record of the relay, next to a plain record (callgrind).

    .venv/bin/python benchmarks/bench_relay_record.py           # 10,000 records a row, ~2 min
    .venv/bin/python benchmarks/bench_relay_record.py --quick   # 2,000 records a row

Each row runs in a fresh interpreter under ``valgrind --tool=callgrind`` twice, writing N and
then N + EXTRA records after the same warm-up, into accounting files with the relay's default
settings (``mta_logging.configure()``: the default fields, a temporary path); the difference
of the two instruction counts divided by EXTRA is one record's cost (as in
``bench_instructions.py``). The rows:

* **plain**: ``AccountingLogger.delivered`` with the nine keywords of ``bench_write.py``'s
  line (an application's record);
* **relay delivered / deferred / bounce / expired**: ``DeliveryQueue._record``, what the relay
  does for one recipient's result after a transaction, every relay field set (envelope sender,
  size, remote MTA, TLS, ORCPT, ENVID), the operator log off; the bounce's category is
  classified from its reply as the relay's are.

The relay passes values that the default fields do not write (``orig``, ``size``, ...): they
cost what it takes to carry them, which is what this measures. Needs ``valgrind``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _common import (
    DEST_IP,
    DSN_MSG,
    DSN_STATUS,
    RECIPIENTS,
    SRC_IP,
    SRC_MTA,
    VMTA,
    instructions_per_record,
    machine,
    write_counted,
)

PLAIN = "plain: AccountingLogger.delivered"
ROWS = (PLAIN, "relay delivered", "relay deferred", "relay bounce", "relay expired")
CONTENT = b"From: a@sender.example\r\nSubject: hello\r\n\r\n" + b"x" * 2000 + b"\r\n"


def writer(name: str, directory: Path) -> Callable[[int], None]:
    """The function that writes record ``i`` of row ``name`` into ``directory``."""
    import time

    import mta_logging
    from mta_logging.logger import AccountingLogger
    from mta_logging.outcome import Kind
    from mta_logging.relay.config import load_settings
    from mta_logging.relay.dsn_params import MailDsn, RcptDsn
    from mta_logging.relay.message import MessageHeaders
    from mta_logging.relay.outbound import RcptResult
    from mta_logging.relay.queue import DeliveryQueue
    from mta_logging.relay.spool import Envelope, QueuedMessage, Spool

    configured = mta_logging.configure(path=str(directory / "accounting"))
    accounting = AccountingLogger(configured.logger)
    queued_at = float(int(time.time()) - 42)
    if name == PLAIN:
        def plain(i: int) -> None:
            accounting.delivered(RECIPIENTS[i % 1000], time_queued=queued_at, src_mta=SRC_MTA,
                                 src_ip=SRC_IP, dest_ip=DEST_IP, vmta=VMTA, job_id="4XyZ1AbC",
                                 dsn_status=DSN_STATUS, dsn_msg=DSN_MSG)
        return plain
    settings = load_settings({"hostname": SRC_MTA, "vmta": VMTA, "spool_dir": str(directory),
                              "dsn": {"enabled": False}})
    queue = DeliveryQueue(settings, Spool.open(directory / "spool"), None,  # type: ignore[arg-type]
                          accounting)
    kind = {"delivered": Kind.DELIVERED, "deferred": Kind.DEFERRED}.get(
        name.split()[-1], Kind.BOUNCE)
    status, reply = {Kind.DELIVERED: (DSN_STATUS, DSN_MSG),
                     Kind.DEFERRED: ("4.2.0", "451 4.2.0 Mailbox busy, try again later"),
                     Kind.BOUNCE: ("5.1.1", "550 5.1.1 <user> User unknown")}[kind]
    if name == "relay expired":
        kind, status, reply = Kind.DEFERRED, "4.4.1", "421 4.4.1 Connection timed out"
        queued_at -= settings.retry.max_queue_lifetime
    result = RcptResult(0, kind, status, reply, dest_ip=DEST_IP, src_ip=SRC_IP,
                        dsn_mta="mx.example0.com", tls_protocol="TLSv1.3",
                        tls_cipher="TLS_AES_256_GCM_SHA384")
    messages = [QueuedMessage(f"4XyZ{i:04d}", Envelope(
        "a@sender.example", (rcpt,), queued_at, mail_dsn=MailDsn("HDRS", "env-1"),
        rcpt_dsn=(RcptDsn(("FAILURE",), f"rfc822;{rcpt}"),))) for i, rcpt in enumerate(RECIPIENTS)]
    headers = MessageHeaders(CONTENT)
    expired = name == "relay expired"

    def relay(i: int) -> None:
        queue._record(messages[i % 1000], result, 300.0, headers, expired, len(CONTENT))
    return relay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    parser.add_argument("--count", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count:
        write_counted(partial(writer, args.count), args.records)
        return
    counts, extra = instructions_per_record(__file__, ROWS, args.quick)
    print(machine() + f"; {extra:,} records counted per row")
    print()
    print("| record | instructions/record | ÷ plain |")
    print("|---|---:|---:|")
    for name in ROWS:
        print(f"| {name} | {counts[name]:,.0f} | {counts[name] / counts[PLAIN]:.2f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
