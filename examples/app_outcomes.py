"""An application that sends mail itself and records the outcomes through its own logger.

    python examples/app_outcomes.py            # writes under ./accounting_files

The application keeps its usual log (here: the console); the accounting records go to the
per-kind files *and* show in that log, because they are ordinary LogRecords.
"""

from __future__ import annotations

import logging
import smtplib
import time

import mta_logging


def send_report(acct: mta_logging.AccountingLogger, rcpts: list[str]) -> None:
    queued = time.time()
    for rcpt in rcpts:
        # a real application would call smtplib here; we show each kind of result
        if rcpt.startswith("bob"):
            acct.delivered(rcpt, job_id="report-1", time_queued=queued, dsn_status="2.0.0",
                           dsn_msg="250 2.0.0 OK queued as 4XyZ", headers={"X-Campaign": "q4"})
        elif rcpt.startswith("carol"):
            acct.deferred(rcpt, job_id="report-1", time_queued=queued, dsn_status="4.2.0",
                          dsn_msg="451 4.2.0 mailbox busy, try later", delay=300)
        else:
            error = smtplib.SMTPRecipientsRefused(
                {rcpt: (550, b"5.1.1 <dave@example.net>: Recipient address rejected")})
            code, text = error.recipients[rcpt]
            # no bounce_cat given: the classifier fills it in from the reply
            acct.bounced(rcpt, job_id="report-1", time_queued=queued, dsn_status="5.1.1",
                         dsn_msg=f"{code} {text.decode()}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    mta_logging.configure()  # defaults: ./accounting_files/{delivered,deferred,bounce}/
    acct = mta_logging.AccountingLogger("mta.accounting")
    send_report(acct, ["bob@example.com", "carol@example.org", "dave@example.net"])
    logging.shutdown()


if __name__ == "__main__":
    main()
