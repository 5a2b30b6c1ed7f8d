"""The front door: build Outcomes and emit them as LogRecords on a standard logger."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mta_logging.outcome import Kind, Outcome

DEFAULT_LOGGER = "mta.accounting"
_MESSAGE = "%s %s job %s: %s"  # formatted only if a handler asks for the message

_REPLY_CODE = re.compile(r"^\s*([245]\d\d)(?:[\s-]+([245]\.\d{1,3}\.\d{1,3}))?")


def _reply_parts(dsn_status: str | None, dsn_msg: str | None) -> tuple[int | None, str | None]:
    """SMTP code and enhanced status, from the reply text and/or the DSN status."""
    code: int | None = None
    enhanced = dsn_status or None
    if dsn_msg:
        match = _REPLY_CODE.match(dsn_msg)
        if match:
            code = int(match.group(1))
            enhanced = enhanced or match.group(2)
    return code, enhanced


class AccountingLogger:
    """Records delivery outcomes on a ``logging.Logger`` (default ``"mta.accounting"``).

    Each call builds an :class:`Outcome`, attaches it to a ``LogRecord`` as ``record.outcome``
    at the kind's level (delivered INFO, deferred WARNING, bounce ERROR) and hands it to the
    logger's handlers; it returns the Outcome. The record's message reads like an ordinary log
    line (``delivered bob@example.com job 42: 250 2.0.0 OK``) so the outcome is also readable in
    any application log the record propagates to.
    """

    __slots__ = ("logger",)

    def __init__(self, name: str | logging.Logger = DEFAULT_LOGGER) -> None:
        self.logger = name if isinstance(name, logging.Logger) else logging.getLogger(name)

    def record(self, outcome: Outcome) -> Outcome:
        """Emit an outcome built elsewhere."""
        logger = self.logger
        kind = outcome.kind
        if logger.isEnabledFor(kind.level):
            # makeRecord + handle instead of logger.log: the caller's frame is never wanted in
            # an accounting record, and looking it up costs more than formatting the line.
            record = logger.makeRecord(
                logger.name, kind.level, "(accounting)", 0, _MESSAGE,
                (kind.directory, outcome.rcpt, outcome.job_id or "-",
                 outcome.dsn_msg or outcome.dsn_status or "-"), None)
            record.outcome = outcome  # what extra={"outcome": ...} does, without its checks
            logger.handle(record)
        return outcome

    def delivered(self, rcpt: str, **fields: Any) -> Outcome:
        """Record that ``rcpt`` was delivered. Keywords: see :meth:`outcome`."""
        return self.record(self.outcome(Kind.DELIVERED, rcpt, **fields))

    def deferred(self, rcpt: str, **fields: Any) -> Outcome:
        """Record that delivery to ``rcpt`` was deferred (``delay`` = seconds to next try)."""
        return self.record(self.outcome(Kind.DEFERRED, rcpt, **fields))

    def bounced(self, rcpt: str, **fields: Any) -> Outcome:
        """Record a bounce; ``bounce_cat`` is classified from dsn_status/dsn_msg when not given."""
        if fields.get("bounce_cat") is None:
            from mta_logging.classify import bounce_category

            code, enhanced = _reply_parts(fields.get("dsn_status"), fields.get("dsn_msg"))
            fields["bounce_cat"] = bounce_category(code, enhanced, fields.get("dsn_msg") or "")
        return self.record(self.outcome(Kind.BOUNCE, rcpt, **fields))

    @staticmethod
    def outcome(
        kind: Kind | str,
        rcpt: str,
        *,
        time_queued: datetime | float | None = None,
        src_mta: str | None = None,
        src_ip: str | None = None,
        dest_ip: str | None = None,
        vmta: str | None = None,
        job_id: str | None = None,
        dsn_status: str | None = None,
        dsn_msg: str | None = None,
        delay: float | None = None,
        bounce_cat: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Build an Outcome, checking the arguments a caller is most likely to get wrong."""
        if not isinstance(rcpt, str) or not rcpt:
            raise TypeError(f"rcpt must be a non-empty string, not {rcpt!r}")
        if delay is not None and not isinstance(delay, (int, float)):
            raise TypeError(f"delay must be a number of seconds, not {delay!r}")
        if time_queued is not None and not isinstance(time_queued, (datetime, int, float)):
            raise TypeError(
                f"time_queued must be a datetime or a POSIX timestamp, not {time_queued!r}"
            )
        if headers is not None and not isinstance(headers, Mapping):
            raise TypeError(f"headers must be a mapping of header name to value, not {headers!r}")
        # positional, in field order: binding 14 keywords costs more than the checks above;
        # a Kind is taken as it is (the call to parse costs more than the test)
        return Outcome(
            kind if kind.__class__ is Kind else Kind.parse(kind), rcpt, time_queued, src_mta,
            src_ip, dest_ip, vmta,
            None if job_id is None else str(job_id), dsn_status, dsn_msg, delay, bounce_cat,
            {} if headers is None else headers, {} if extra is None else extra,
        )
