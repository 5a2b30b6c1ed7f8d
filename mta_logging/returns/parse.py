"""Reading a message that came back: an RFC 3464 delivery status notification, an RFC 5965
feedback report (ARF), or a plain-text bounce of an MTA that sends no DSN.

Pure functions of the message bytes, with the stdlib ``email`` package. A DSN
(``multipart/report; report-type=delivery-status``) gives a :class:`BounceReport` holding its
failed recipients (``Action: failed``; delayed, delivered, relayed and expanded recipients are
not bounces); an ARF report (a ``message/feedback-report`` part) a :class:`Complaint`; a
message that is neither but in which :mod:`flufl.bounce`'s detectors find permanently failed
addresses (qmail, Exim's and Exchange's text, Yahoo, ...) a BounceReport of those recipients
with what the text says about them; anything else None.
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import scan_message

from mta_logging.reply import find_reply, one_line

# where a message's (claimed) envelope recipient is written by the MTA that delivered it
ENVELOPE_HEADERS = ("X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To", "To")
_ORIGINAL_TYPES = ("text/rfc822-headers", "message/rfc822", "message/rfc822-headers",
                   "text/rfc822")
_PARSER = email.parser.BytesParser(policy=email.policy.compat32)
_HEADERS = email.parser.HeaderParser(policy=email.policy.compat32)
_log = logging.getLogger("mta_logging.returns")


class _HandledDetectorFailure(logging.Filter):
    """Drops the traceback flufl.bounce logs (``Exception in detector``) before it re-raises
    a detector's failure: :func:`_plain_failures` handles that failure and logs it on one
    line, so a message without ``From:`` gives no traceback on stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


logging.getLogger("flufl.bounce").addFilter(_HandledDetectorFailure())
_ADDRESS = re.compile(r"<?([^<>\s;,]+@[^<>\s;,]+?)>?\s*$")


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """One recipient of a report (a failed one, unless ``action`` says otherwise): ``rcpt``
    (Final-Recipient, the address only),
    ``original_rcpt`` (Original-Recipient), ``action``, ``status`` (the RFC 3463 code),
    ``diagnostic`` (Diagnostic-Code, ``smtp; 550 ...``) and ``remote_mta`` (Remote-MTA), each
    on one line, None when the report does not give it."""

    rcpt: str
    original_rcpt: str | None = None
    action: str = "failed"
    status: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None


@dataclass(frozen=True, slots=True)
class BounceReport:
    """A bounce: its failed recipients, the Reporting-MTA, the Message-ID of the message it
    returns (None when it returns no headers, or they have none), the addresses it was
    delivered to (see :data:`ENVELOPE_HEADERS`) and ``source``: ``dsn`` (RFC 3464) or
    ``plain`` (found by flufl.bounce in a text bounce). Of a DSN also: ``reported``, every
    recipient it reports on whatever the action (failed, delayed, delivered, relayed,
    expanded), its Original-Envelope-Id, and the returned message's header section."""

    recipients: tuple[FailedRecipient, ...]
    reporting_mta: str | None
    message_id: str | None
    delivered_to: tuple[str, ...]
    source: str = "dsn"
    reported: tuple[FailedRecipient, ...] = ()
    envelope_id: str | None = None
    returned_headers: bytes = b""


@dataclass(frozen=True, slots=True)
class Complaint:
    """An ARF report: RFC 5965's fields as given (on one line; lists joined by ``, ``), the
    complaining recipients (Original-Rcpt-To, else Removal-Recipient, else the returned
    message's ``X-HmXmrOriginalRecipient`` that Microsoft's JMRP adds), the Message-ID of
    the message complained about and the addresses the report was delivered to."""

    feedback_type: str
    user_agent: str | None
    version: str | None
    original_mail_from: str | None
    recipients: tuple[str, ...]
    arrival_date: str | None
    source_ip: str | None
    reported_domain: str | None
    message_id: str | None
    delivered_to: tuple[str, ...]


def parse_return(data: bytes) -> BounceReport | Complaint | None:
    """What the message ``data`` reports (see the module's description); None when it is
    neither a bounce nor a complaint (so also for MIME parts nested deeper than the stdlib
    ``email`` package can parse or walk). Never raises on malformed mail."""
    try:
        message = _PARSER.parsebytes(data)
        parts = list(message.walk())
    except RecursionError:
        _log.info("a returned message nests its MIME parts too deeply to parse (%d bytes); "
                  "taken as neither bounce nor complaint", len(data))
        return None
    delivered_to = _envelope_recipients(message)
    for part in parts:
        content_type = part.get_content_type()
        if content_type == "message/feedback-report":
            return _complaint(message, part, delivered_to)
        if content_type == "message/delivery-status":
            return _bounce(message, part, delivered_to)
    recipients = _plain_failures(message)
    if not recipients:
        return None
    return BounceReport(recipients, None, _returned_message_id(message), delivered_to, "plain")


def _bounce(message: Message, status_part: Message,
            delivered_to: tuple[str, ...]) -> BounceReport:
    groups = _field_groups(status_part)
    per_message = groups[0] if groups else Message()
    reported = []
    for group in groups[1:]:
        action = (_one(group, "Action") or "").lower()
        rcpt = _address(_one(group, "Final-Recipient"))
        if rcpt is None:
            continue
        status = _one(group, "Status")
        reported.append(FailedRecipient(
            rcpt=rcpt, original_rcpt=_address(_one(group, "Original-Recipient")),
            action=action, status=status.split()[0] if status else None,
            diagnostic=_one(group, "Diagnostic-Code"), remote_mta=_one(group, "Remote-MTA")))
    original = _original_headers(message)
    return BounceReport(
        tuple(r for r in reported if r.action == "failed"), _one(per_message, "Reporting-MTA"),
        _returned_message_id(message), delivered_to, reported=tuple(reported),
        envelope_id=_one(per_message, "Original-Envelope-Id"),
        returned_headers=b"" if original is None
        else original.as_string().encode("utf-8", "surrogateescape"))


def _complaint(message: Message, report_part: Message,
               delivered_to: tuple[str, ...]) -> Complaint:
    fields = _field_groups(report_part)
    report = fields[0] if fields else Message()
    original = _original_headers(message)
    recipients = [a for v in report.get_all("Original-Rcpt-To", []) if (a := _address(v))]
    if not recipients:
        recipients = [a for v in report.get_all("Removal-Recipient", []) if (a := _address(v))]
    if not recipients and original is not None:
        jmrp = _address(_one(original, "X-HmXmrOriginalRecipient"))
        recipients = [jmrp] if jmrp else []
    domains = [one_line(str(v)) for v in report.get_all("Reported-Domain", [])]
    return Complaint(
        feedback_type=(_one(report, "Feedback-Type") or "").lower(),
        user_agent=_one(report, "User-Agent"), version=_one(report, "Version"),
        original_mail_from=_address(_one(report, "Original-Mail-From")),
        recipients=tuple(recipients), arrival_date=_one(report, "Arrival-Date")
        or _one(report, "Received-Date"),
        source_ip=_one(report, "Source-IP"), reported_domain=", ".join(domains) or None,
        message_id=_message_id(original), delivered_to=delivered_to)


def _field_groups(part: Message) -> list[Message]:
    """The header blocks of a ``message/delivery-status`` or ``message/feedback-report`` part
    (the email package parses the first as a list of blocks, the second as text)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = part.get_payload(decode=True)
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(payload)
    blocks = re.split(r"\r?\n[ \t]*\r?\n", raw.strip())
    return [_HEADERS.parsestr(block.strip("\r\n") + "\n") for block in blocks if block.strip()]


def _original_headers(message: Message) -> Message | None:
    """The headers of the message a report returns (its last part of an rfc822 type)."""
    found: Message | None = None
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type not in _ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            found = payload[0]
        else:
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
            found = _HEADERS.parsestr(text.lstrip("\r\n"))
    return found


def _returned_message_id(message: Message) -> str | None:
    original = _original_headers(message)
    if original is None:  # a text bounce that quotes the message inline
        body = _text_of(message)
        quoted = re.search(r"^\s*Message-ID:\s*(<[^>\s]+>)", body, re.IGNORECASE | re.MULTILINE)
        return quoted.group(1) if quoted else None
    return _message_id(original)


def _message_id(headers: Message | None) -> str | None:
    value = None if headers is None else _one(headers, "Message-ID")
    return value.strip() if value else None


def _plain_failures(message: Message) -> tuple[FailedRecipient, ...]:
    """The permanently failed recipients flufl.bounce finds, with the reply the text gives
    for each (the line that names the address and the lines after it, up to a blank one)."""
    try:
        found = scan_message(message)
    except Exception as exc:  # noqa: BLE001 - heuristics of a third party, on any mail
        # (its Yale detector fails on a message without From:, for one)
        _log.info("flufl.bounce failed on a returned message (%s: %s); taken as no bounce",
                  type(exc).__name__, exc)
        return ()
    addresses = sorted(a.decode("utf-8", "replace") for a in found)
    body = _text_of(message)
    return tuple(_plain_recipient(address, body) for address in addresses)


def _plain_recipient(address: str, body: str) -> FailedRecipient:
    for paragraph in re.split(r"\n[ \t]*\n", body):
        if address.lower() not in paragraph.lower():
            continue
        found = find_reply(paragraph[paragraph.lower().index(address.lower()) + len(address):])
        if found.reply.code is not None or found.reply.enhanced is not None:
            reply = found.reply
            diagnostic = " ".join(part for part in (reply.head, reply.text) if part)
            return FailedRecipient(address, status=reply.enhanced,
                                   diagnostic=f"smtp; {diagnostic}" if reply.code else diagnostic)
    return FailedRecipient(address)


def _text_of(message: Message) -> str:
    """The text/plain parts of a message, decoded, joined."""
    texts = []
    for part in _text_parts(message):
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes):
            texts.append(raw.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n\n".join(texts).replace("\r\n", "\n")


def _text_parts(message: Message) -> Iterator[Message]:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            yield part


def _envelope_recipients(message: Message) -> tuple[str, ...]:
    found = []
    for name in ENVELOPE_HEADERS:
        for value in message.get_all(name, []):
            for candidate in re.split(r"[,\s]+", str(value)):
                address = _address(candidate)
                if address is not None and address not in found:
                    found.append(address)
    return tuple(found)


def _one(headers: Message, name: str) -> str | None:
    """A field's value on one line (folding undone); None when absent or empty."""
    value = headers.get(name)
    if value is None:
        return None
    text = one_line(str(value))
    return text or None


def _address(value: str | None) -> str | None:
    """The address of ``rfc822; a@b``, ``<a@b>`` or ``a@b``; None for none."""
    if not value:
        return None
    text = value.partition(";")[2] if ";" in value else value
    matched = _ADDRESS.search(text.strip())
    return matched.group(1) if matched else None
