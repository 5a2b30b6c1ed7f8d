"""Returned mail into records: a bounce becomes one ``rb`` record per failed recipient, a
complaint one ``f`` record per complaining recipient, anything else goes to the quarantine.

The job a report is about is found, in this order, from a valid VERP token (see
:mod:`mta_logging.verp`) in the addresses the report was sent to (the SMTP recipients the
relay saw, else the delivery headers of a stored message) or, for a complaint, in its
Original-Mail-From; else from the Message-ID of the returned headers and the recipients the
report names in the sent index (see :mod:`mta_logging.returns.sent`: of the messages sent
with that Message-ID, the one sent to those recipients). The sent index also gives ``orig``,
the original envelope sender, and, with a VERP token's recipient index, the recipient of a
complaint whose report leaves it out (RFC 6590 redaction). A complaint whose recipient
cannot be found is recorded with ``rcpt`` :data:`UNKNOWN_RCPT`. Records go through an
:class:`AccountingLogger` only; a record a handler could not write is counted in
:attr:`Handled.unwritten`, so that the relay can answer 451 and have the message sent again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mta_logging.logger import AccountingLogger
from mta_logging.returns.parse import BounceReport, Complaint, parse_return
from mta_logging.returns.quarantine import Quarantine
from mta_logging.returns.sent import Sent, SentIndex
from mta_logging.verp import Verp, VerpToken

UNKNOWN_RCPT = "(unknown)"
BOUNCE = "bounce"
COMPLAINT = "complaint"
NO_FAILURE = "no failure"  # a DSN that reports no failed recipient (a delay notice, ...)
QUARANTINED = "quarantined"
_log = logging.getLogger("mta_logging.returns")


@dataclass(frozen=True, slots=True)
class Handled:
    """What became of one returned message: ``what`` (:data:`BOUNCE`, :data:`COMPLAINT`,
    :data:`NO_FAILURE` or :data:`QUARANTINED`), how many records were written, the job it
    was traced to (None: not traced), when quarantined where it is kept, and how many of its
    records a handler could not write (reported through ``handleError``). Of a bounce (or a
    DSN without failures) also the report, the sent message it was traced to in the sent
    index (None: not found) and the recipient index of its VERP token (None: no token): what
    the relay needs to pass the report on, not part of what became of the message, so left
    out of comparisons."""

    what: str
    records: int = 0
    job_id: str | None = None
    path: Path | None = None
    unwritten: int = 0
    bounce: BounceReport | None = field(default=None, compare=False)
    sent: Sent | None = field(default=None, compare=False)
    rcpt_index: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class _Trace:
    job_id: str | None
    sent: Sent | None
    token: VerpToken | None


class ReturnRecorder:
    """Parses returned messages and records them on ``logger`` (through an
    :class:`AccountingLogger`); ``verp`` decodes return paths, ``sent`` traces Message-IDs
    (either may be None), ``quarantine`` keeps the rest. Safe to use from several threads."""

    def __init__(self, logger: logging.Logger, quarantine: Quarantine, *,
                 verp: Verp | None = None, sent: SentIndex | None = None) -> None:
        self.logger = logger
        self.quarantine = quarantine
        self.verp = verp
        self.sent = sent

    def handle(self, data: bytes, rcpts: Sequence[str] = ()) -> Handled:
        """Record the message ``data`` that was sent to ``rcpts`` (the SMTP recipients; for a
        stored message none, and its delivery headers are read instead). Raises OSError only
        when a message to quarantine cannot be stored."""
        report = parse_return(data)
        unwritten: list[object] = []
        accounting = AccountingLogger(self.logger, on_write_error=unwritten.append)
        if isinstance(report, BounceReport):
            handled = self._bounce(accounting, report, tuple(rcpts) or report.delivered_to)
            return dataclasses.replace(handled, unwritten=len(unwritten))
        if isinstance(report, Complaint):
            handled = self._complaint(accounting, report, tuple(rcpts) or report.delivered_to)
            return dataclasses.replace(handled, unwritten=len(unwritten))
        path = self.quarantine.keep(data)
        _log.warning("returned mail quarantined as %s: neither a delivery status notification "
                     "nor a feedback report (%d bytes)", path, len(data))
        return Handled(QUARANTINED, path=path)

    def _bounce(self, accounting: AccountingLogger, report: BounceReport,
                addresses: Sequence[str]) -> Handled:
        named = [address for reported in report.reported or report.recipients
                 for address in (reported.rcpt, reported.original_rcpt)]
        trace = self._trace(addresses, report.message_id, named)
        orig = None if trace.sent is None else trace.sent.orig
        headers = {} if report.message_id is None else {"Message-ID": report.message_id}
        for failed in report.recipients:
            accounting.remote_bounce(
                failed.rcpt, job_id=trace.job_id, dsn_status=failed.status, headers=headers,
                orig=orig, orcpt=failed.original_rcpt, dsn_action=failed.action,
                dsn_diag=failed.diagnostic, dsn_mta=failed.remote_mta)
        if report.recipients:
            _log.info("remote bounce (%s) of job %s: %s", report.source,
                      trace.job_id or "not traced", ", ".join(r.rcpt for r in report.recipients))
        else:
            _log.info("returned mail reports no failed recipient (job %s); nothing recorded",
                      trace.job_id or "not traced")
        return Handled(BOUNCE if report.recipients else NO_FAILURE, len(report.recipients),
                       trace.job_id, bounce=report, sent=trace.sent,
                       rcpt_index=None if trace.token is None else trace.token.index)

    def _complaint(self, accounting: AccountingLogger, report: Complaint,
                   addresses: Sequence[str]) -> Handled:
        from_verp = () if report.original_mail_from is None else (report.original_mail_from,)
        trace = self._trace((*addresses, *from_verp), report.message_id, report.recipients)
        recipients = report.recipients or (self._traced_rcpt(trace),)
        orig = report.original_mail_from if trace.sent is None else trace.sent.orig
        headers = {} if report.message_id is None else {"Message-ID": report.message_id}
        for rcpt in recipients:
            accounting.feedback(
                rcpt, job_id=trace.job_id, headers=headers, orig=orig,
                feedback_type=report.feedback_type or None,
                feedback_user_agent=report.user_agent,
                feedback_arrival_date=report.arrival_date,
                feedback_source_ip=report.source_ip,
                feedback_reported_domain=report.reported_domain)
        _log.info("complaint (%s) about job %s: %s", report.feedback_type or "no type",
                  trace.job_id or "not traced", ", ".join(recipients))
        return Handled(COMPLAINT, len(recipients), trace.job_id)

    def _trace(self, addresses: Sequence[str], message_id: str | None,
               named: Sequence[str | None]) -> _Trace:
        """The job of a report delivered to ``addresses`` (a VERP token among them), else of
        the message sent with ``message_id`` to one of the recipients ``named``."""
        if self.verp is not None:
            for address in addresses:
                token = self.verp.decode(address)
                if token is not None:
                    sent = None if self.sent is None else self.sent.by_job_id(token.job_id)
                    return _Trace(token.job_id, sent, token)
        if self.sent is not None and message_id is not None:
            sent = self.sent.by_message_id(message_id, named)
            if sent is not None:
                return _Trace(sent.job_id, sent, None)
        return _Trace(None, None, None)

    @staticmethod
    def _traced_rcpt(trace: _Trace) -> str:
        """The recipient a VERP token's index names in the sent index; else UNKNOWN_RCPT."""
        if trace.token is not None and trace.sent is not None and (
                0 <= trace.token.index < len(trace.sent.rcpts)):
            return trace.sent.rcpts[trace.token.index]
        return UNKNOWN_RCPT
