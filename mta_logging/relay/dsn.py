"""Delivery status notifications to envelope senders (RFC 3464, RFC 6522), built with the
stdlib ``email`` package. Pure: which recipients a notification is due for, and its bytes.

A notification is ``multipart/report; report-type=delivery-status`` with three parts: a text
for people; ``message/delivery-status`` (``Reporting-MTA``, ``Original-Envelope-Id``,
``Arrival-Date``, then per recipient ``Original-Recipient``, ``Final-Recipient``, ``Action``,
``Status``, ``Remote-MTA``, ``Diagnostic-Code``, ``Last-Attempt-Date``); and the original's
header section (``text/rfc822-headers``) or, for RET=FULL up to ``max_full_size`` bytes, the
whole message (``message/rfc822``). It goes from the null sender ``<>`` to the original's
envelope sender, and none is ever due for mail from ``<>`` (RFC 5321 §6.1: no notification
about a notification), for NOTIFY=NEVER, or with DSNs off.

How the queue keeps it (see ``queue`` and ``spool``): the notification is stored in the spool
as a message of its own, after the records of the recipients it reports on and *before* their
journal entries; its envelope names those entries (``report_of``, ``report_entries``). A crash
before it is stored leaves the recipients pending (tried again, reported again: nothing lost);
a crash after it is stored and before the journal write is completed at the next start from
the notification itself (``Spool.load``), so it is neither lost nor sent twice. A journal write
that fails takes the stored notification back out, and the recipients stay pending. A
notification to a sender on the suppression list is not stored at all (the sender is
recorded as a ``suppressed`` bounce instead, see ``suppression``): then the journal entries
are written directly after the records, and a crash before them reports (and records) again.

With VERP on, a DSN that a system beyond the next hop sends comes back to the relay's bounce
domain, not to the sender: :func:`passed_back` is the relay's own notification carrying that
report's recipients on to the sender (see ``inbound``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email.generator import BytesGenerator
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formatdate, make_msgid

from mta_logging.relay.config import DsnSettings
from mta_logging.relay.dsn_params import MailDsn, RcptDsn
from mta_logging.relay.message import header_section
from mta_logging.relay.spool import Envelope
from mta_logging.reply import parse_reply
from mta_logging.returns.parse import BounceReport, FailedRecipient
from mta_logging.returns.sent import Sent

FAILED = "failed"
DELAYED = "delayed"
DELIVERED = "delivered"
RELAYED = "relayed"
# the NOTIFY value (RFC 3461 §4.1) that asks for each action
_EVENT = {FAILED: "FAILURE", DELAYED: "DELAY", DELIVERED: "SUCCESS", RELAYED: "SUCCESS"}
# the Status of a passed-back recipient whose report gives none (RFC 3464 §2.3.4 needs one)
_CLASS_STATUS = {FAILED: "5.0.0", DELAYED: "4.0.0", DELIVERED: "2.0.0", RELAYED: "2.0.0"}
# the diagnostic type (RFC 3464 §2.3.6) of a failure that is no server's reply (no route,
# null MX, an administrator's bounce), as Postfix writes "X-Postfix"
LOCAL_DIAGNOSTIC = "X-mta-logging"
MAX_VALUE = 900  # characters of a reply or name in a field (SMTP lines end by 1000)
# compat32 writes the original's header fields back as they came
_CRLF = compat32.clone(linesep="\r\n", max_line_length=0)
_SUBJECTS = {
    FAILED: "Undelivered Mail Returned to Sender",
    DELAYED: "Delayed Mail (still being retried)",
    DELIVERED: "Successful Mail Delivery Report",
    RELAYED: "Successful Mail Delivery Report",
}
_EXPLAINED = {
    FAILED: "could not be delivered to the recipients below; it will not be tried again",
    DELAYED: "has not yet been delivered to the recipients below; delivery is still being "
             "tried, and you need not send it again",
    DELIVERED: "was delivered to the recipients below",
    RELAYED: "was passed on to the recipients' mail systems below, which do not report its "
             "delivery status; no further notice will come",
}


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """What a notification says about one recipient (by its index in the envelope).

    ``diagnostic``: the remote server's reply (``550 5.1.1 ...``) or a local error text;
    ``remote_mta``: the server's name; ``retry_until``: for ``delayed``, when the relay gives
    up; ``diagnostic_type``: the type of a Diagnostic-Code carried over from another report
    (None: ``smtp`` for a server's reply, else :data:`LOCAL_DIAGNOSTIC`)."""

    index: int
    action: str
    status: str
    diagnostic: str | None
    remote_mta: str | None
    last_attempt: float
    retry_until: float | None = None
    diagnostic_type: str | None = None


def notice_wanted(settings: DsnSettings, envelope: Envelope, index: int, action: str, *,
                  age: float = 0.0) -> bool:
    """Whether recipient ``index``'s sender is to hear about ``action`` (``age``: seconds the
    message has been queued, for ``delayed``).

    Failures are reported unless NOTIFY says otherwise; a delay when NOTIFY asks for DELAY,
    or when NOTIFY was not given and ``delay_notice_after`` is set; in both, not before the
    message has been queued ``delay_notice_after`` seconds. Never for mail from ``<>``."""
    if not settings.enabled or not envelope.mail_from or envelope.report_of is not None:
        return False
    parameters = envelope.dsn_of(index)
    if action != DELAYED:
        return parameters.wants(_EVENT[action])
    after = settings.delay_notice_after
    if parameters.notify is None:
        return after is not None and age >= after
    return parameters.wants("DELAY") and age >= (after or 0.0)


def notification(settings: DsnSettings, queue_id: str, envelope: Envelope, content: bytes,
                 reports: Sequence[RecipientReport], *, when: float,
                 entries: Sequence[str]) -> tuple[Envelope, bytes]:
    """The notification about ``reports`` of the message ``queue_id``: its envelope (from
    ``<>`` to the sender, standing for the journal ``entries`` of ``queue_id``) and bytes.
    RET=FULL returns the whole message up to ``max_full_size``; above it, or when its MIME
    parts nest deeper than the ``email`` package can parse, only its header section."""
    full = envelope.mail_dsn.ret == "FULL" and len(content) <= settings.max_full_size
    try:
        data = _flatten(_report(settings, queue_id, envelope, content, reports, when, full))
    except RecursionError:
        data = _flatten(_report(settings, queue_id, envelope, content, reports, when, False))
    notice = Envelope(mail_from="", rcpts=(envelope.mail_from,), time_queued=when,
                      smtputf8=not envelope.mail_from.isascii(), body_8bit=not data.isascii(),
                      report_of=queue_id, report_entries=tuple(entries))
    return notice, data


def passed_back(settings: DsnSettings, sent: Sent, report: BounceReport,
                rcpt_index: int | None, *, when: float) -> tuple[Envelope, bytes] | None:
    """The notification passing a downstream DSN ``report`` about the message ``sent`` on to
    its sender (``rcpt_index``: the recipient its VERP token names, None: no token), as
    :func:`notification` gives it; None when none is due.

    Each recipient the report names (by its address, else the token's index) keeps the
    report's Final-Recipient, Action, Status, Remote-MTA and Diagnostic-Code, and gets the
    Original-Recipient and Original-Envelope-Id the sender gave (from the sent index, else
    the report's); it is passed on when that recipient's NOTIFY asks for its action (failures
    unless NOTIFY says otherwise; a delay or success only when asked). None is due with DSNs
    off or for mail from ``<>``: a report about a report is never sent on (RFC 5321 §6.1,
    RFC 3461 §6.2). Only the returned message's header section goes with it."""
    if not settings.enabled or not sent.orig:
        return None
    rcpts: list[str] = []
    parameters: list[RcptDsn] = []
    reports: list[RecipientReport] = []
    for reported in report.reported:
        if reported.action not in _EVENT:  # "expanded" (RFC 3464 §2.3.3) asks for nothing
            continue
        index = _sent_index(sent, reported, rcpt_index)
        notify = sent.notify[index] if index is not None and index < len(sent.notify) else None
        if not RcptDsn(notify).wants(_EVENT[reported.action]):
            continue
        orcpt = sent.orcpt[index] if index is not None and index < len(sent.orcpt) else None
        if orcpt is None and reported.original_rcpt is not None:
            orcpt = f"rfc822;{reported.original_rcpt}"
        diagnostic_type, diagnostic = _typed(reported.diagnostic)
        reports.append(RecipientReport(
            len(rcpts), reported.action, reported.status or _CLASS_STATUS[reported.action],
            diagnostic, _typed(reported.remote_mta)[1], when, diagnostic_type=diagnostic_type))
        rcpts.append(reported.rcpt)
        parameters.append(RcptDsn(orcpt=orcpt))
    if not reports:
        return None
    original = Envelope(mail_from=sent.orig, rcpts=tuple(rcpts),
                        time_queued=when if sent.time_queued is None else sent.time_queued,
                        mail_dsn=MailDsn(envid=sent.envid or report.envelope_id),
                        rcpt_dsn=tuple(parameters))
    return notification(settings, sent.job_id, original, report.returned_headers, reports,
                        when=when, entries=())


def _sent_index(sent: Sent, reported: FailedRecipient, rcpt_index: int | None) -> int | None:
    """Which recipient of ``sent`` a report's recipient is: by its Final- or Original-Recipient,
    else the VERP token's; None when neither is one of them."""
    index = sent.index_of((reported.rcpt, reported.original_rcpt))
    if index is None and rcpt_index is not None and 0 <= rcpt_index < len(sent.rcpts):
        return rcpt_index
    return index


def _typed(value: str | None) -> tuple[str | None, str | None]:
    """A report field's type and text (``smtp; 550 ...``: ``smtp``, ``550 ...``)."""
    if value is None:
        return None, None
    kind, separator, text = value.partition(";")
    if not separator:
        return None, value
    return kind.strip(), text.strip() or None


def _human_text(settings: DsnSettings, envelope: Envelope,
                reports: Sequence[RecipientReport]) -> str:
    lines = [f"This is the mail system at {settings.reporting_mta}.", ""]
    for action in (FAILED, DELAYED, DELIVERED, RELAYED):
        about = [r for r in reports if r.action == action]
        if not about:
            continue
        lines += [f"Your message {_EXPLAINED[action]}:", ""]
        lines += [f"  <{envelope.rcpts[r.index]}>: {_one_line(r.diagnostic or r.status)}"
                  for r in about]
        lines.append("")
    lines.append("The delivery status report and the message (or its header section) are "
                 "attached.")
    return "\n".join(lines) + "\n"


def _status_part(settings: DsnSettings, envelope: Envelope,
                 reports: Sequence[RecipientReport]) -> MIMEBase:
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {settings.reporting_mta}"
    if envelope.mail_dsn.envid is not None:
        per_message["Original-Envelope-Id"] = _one_line(envelope.mail_dsn.envid)
    per_message["Arrival-Date"] = formatdate(envelope.time_queued, localtime=True)
    blocks: list[Message | str] = [per_message]
    for report in reports:
        rcpt = envelope.rcpts[report.index]
        block = Message()
        orcpt = envelope.dsn_of(report.index).orcpt
        if orcpt is not None:
            addr_type, _, address = orcpt.partition(";")
            block["Original-Recipient"] = _one_line(
                f"{addr_type};{address}" if address.isascii() else _utf8_address(address))
        block["Final-Recipient"] = f"rfc822; {rcpt}" if rcpt.isascii() else _utf8_address(rcpt)
        block["Action"] = report.action
        block["Status"] = report.status
        if report.remote_mta:
            block["Remote-MTA"] = f"dns; {_one_line(report.remote_mta)}"
        if report.diagnostic:
            kind = report.diagnostic_type or (
                "smtp" if parse_reply(report.diagnostic).code is not None else LOCAL_DIAGNOSTIC)
            block["Diagnostic-Code"] = f"{kind}; {_one_line(report.diagnostic)}"
        block["Last-Attempt-Date"] = formatdate(report.last_attempt, localtime=True)
        if report.retry_until is not None:
            block["Will-Retry-Until"] = formatdate(report.retry_until, localtime=True)
        blocks.append(block)
    part = MIMEBase("message", "delivery-status")
    del part["MIME-Version"]
    part.set_payload(blocks)
    return part


def _utf8_address(address: str) -> str:
    """An address with characters beyond ASCII as RFC 6533's ``utf-8`` address type, in
    utf-8-addr-xtext (``\\x{EB}``), which a ``message/delivery-status`` field can carry."""
    return "utf-8; " + "".join(
        char if "!" <= char <= "~" and char not in "\\+=" else f"\\x{{{ord(char):X}}}"
        for char in address)


def _report(settings: DsnSettings, queue_id: str, envelope: Envelope, content: bytes,
            reports: Sequence[RecipientReport], when: float, full: bool) -> MIMEMultipart:
    """The report :func:`notification` sends, returning the message whole when ``full``,
    else its header section."""
    report = MIMEMultipart("report", report_type="delivery-status")
    actions = {r.action for r in reports}
    headline = next(action for action in _SUBJECTS if action in actions)  # the gravest
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{settings.reporting_mta}>"
    report["To"] = f"<{envelope.mail_from}>"
    report["Subject"] = _SUBJECTS[headline]
    report["Date"] = formatdate(when, localtime=True)
    report["Message-ID"] = make_msgid(queue_id, domain=settings.reporting_mta)
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834: no automatic answer to this
    report.attach(_text_part(_human_text(settings, envelope, reports), "plain"))
    report.attach(_status_part(settings, envelope, reports))
    if full:
        original = MIMEMessage(message_from_bytes(content))
        del original["MIME-Version"]
        report.attach(original)
    else:
        report.attach(_text_part(header_section(content).decode("utf-8", "replace") + "\n",
                                 "rfc822-headers"))
    return report


def _text_part(text: str, subtype: str) -> MIMEText:
    part = MIMEText(text, subtype, "us-ascii" if text.isascii() else "utf-8")
    del part["MIME-Version"]
    return part


def _one_line(text: str) -> str:
    """A field value on one line (a reply or a name cannot add fields of its own), short
    enough for SMTP's line length limit."""
    return " ".join(text.split())[:MAX_VALUE]


def _flatten(message: MIMEMultipart) -> bytes:
    buffer = io.BytesIO()
    BytesGenerator(buffer, policy=_CRLF).flatten(message)
    return buffer.getvalue()
