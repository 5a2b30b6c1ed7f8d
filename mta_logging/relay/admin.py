"""The operator's queue operations (``mta-logging queue``), on a running or a stopped relay.

A request is one JSON object (``{"op": "hold", "ids": [...]}``) and gets one JSON answer; the
running relay answers on its control socket (``control``), a stopped relay's spool is changed
by :class:`StoppedQueue` while the command holds the spool's lock. Both answer through
:func:`dispatch`, so the two give the same results.

States: ``held`` (no attempts until released), ``deferred`` (an attempt failed; waiting for the
next), ``active`` (being attempted, or not tried yet). ``bounce`` and ``delete`` record every
recipient not yet delivered or bounced as a bounce (category ``admin-bounce`` /
``admin-delete``) before the message leaves the spool: nothing vanishes unrecorded; ``bounce``
also tells the sender (a delivery status notification, stored before the message is removed:
see ``dsn``), unless the sender is on the suppression list (then the sender is recorded as a
``suppressed`` bounce instead, as the queue does: see ``suppression``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from mta_logging.address import domain_of
from mta_logging.errors import MtaLoggingError
from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Kind, Outcome
from mta_logging.relay.config import RelaySettings
from mta_logging.relay.dsn import FAILED, RecipientReport, notice_wanted, notification
from mta_logging.relay.message import MessageHeaders, header_section
from mta_logging.relay.spool import BOUNCED, QueuedMessage, Spool, new_queue_id
from mta_logging.relay.suppression import SuppressedSenders, suppressed_senders

_log = logging.getLogger("mta_logging.relay.admin")

STATES = ("active", "deferred", "held")
ACTIONS = ("flush", "hold", "release", "bounce", "delete")
# category and text of each administrative removal
REMOVALS = {
    "bounce": ("admin-bounce", "returned to the sender by the administrator"),
    "delete": ("admin-delete", "deleted from the queue by the administrator"),
}
ADMIN_STATUS = "5.0.0"


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """What ``queue list`` shows of one message; ``size``: its bytes as received (the log's
    ``size=``; the queue file without its envelope line); ``recipients``: the ones still
    pending."""

    queue_id: str
    state: str
    queued_at: float
    size: int
    sender: str
    recipients: tuple[str, ...]
    attempts: int
    last_error: str
    next_try: float | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.queue_id, "state": self.state, "queued_at": self.queued_at,
                "size": self.size, "sender": self.sender, "recipients": list(self.recipients),
                "attempts": self.attempts, "last_error": self.last_error,
                "next_try": self.next_try}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueueEntry:
        return cls(data["id"], data["state"], data["queued_at"], data["size"], data["sender"],
                   tuple(data["recipients"]), data["attempts"], data["last_error"],
                   data["next_try"])


def entry_of(spool: Spool, message: QueuedMessage, *, attempting: bool) -> QueueEntry:
    """The entry of a message read from ``spool``; ``attempting``: under way right now."""
    if message.held:
        state = "held"
    elif attempting or message.failures == 0:
        state = "active"
    else:
        state = "deferred"
    try:
        size = spool.content_size(message.queue_id)
    except FileNotFoundError:
        size = 0
    envelope = message.envelope
    return QueueEntry(
        message.queue_id, state, envelope.time_queued, size, envelope.mail_from,
        tuple(envelope.rcpts[i] for i in message.pending()), message.failures,
        message.last_error, None if message.held or message.failures == 0 else message.next_try)


def headers_text(spool: Spool, queue_id: str) -> str:
    """The message's header section as text (bytes that are not UTF-8 shown escaped)."""
    return header_section(spool.read_content(queue_id)).decode("utf-8", "backslashreplace")


def record_removal(spool: Spool, settings: RelaySettings, accounting: AccountingLogger | None,
                   message: QueuedMessage, action: str,
                   suppressed: SuppressedSenders | None = None) -> QueuedMessage | None:
    """Record each pending recipient as an administrative bounce, store the sender's
    notification (``bounce``; none to a sender ``suppressed`` lists, who is recorded instead),
    then remove the message; the notification, to be queued.

    Raises :class:`MtaLoggingError` (the message stays queued) if a record could not be
    written (a recipient's, or the suppressed sender's), ``OSError`` if the notification could
    not be stored; recipients recorded before stay recorded. Blocking I/O: run it in a thread.
    """
    category, text = REMOVALS[action]
    envelope = message.envelope
    # delivered or bounced already, their records waiting to be written (the live queue's):
    # those records are written, not an administrative bounce
    kept = message.unrecorded
    removed = [i for i in message.pending() if i not in kept]
    pending = [envelope.rcpts[i] for i in removed]
    content = spool.read_content(message.queue_id)
    if accounting is not None:
        unwritten: list[Outcome] = []
        logger = AccountingLogger(accounting.logger, on_write_error=unwritten.append)
        waiting = []
        for outcome in message.received_unwritten:
            logger.record(outcome)
            if unwritten:
                waiting.append(outcome)
                unwritten.clear()
        message.received_unwritten = waiting
        headers = MessageHeaders(content)
        done: list[int] = []  # recorded: final, whatever happens to the others
        for index in message.pending():
            rcpt = envelope.rcpts[index]
            if index in kept:
                logger.record(kept[index].outcome)
            else:
                logger.bounced(rcpt, time_queued=envelope.time_queued,
                               src_mta=settings.hostname, src_ip=settings.source_ip,
                               vmta=settings.vmta, job_id=message.queue_id,
                               dsn_status=ADMIN_STATUS, dsn_msg=f"{ADMIN_STATUS} {text}",
                               bounce_cat=category, headers=headers, orig=envelope.mail_from,
                               orcpt=envelope.dsn_of(index).orcpt,
                               env_id=envelope.mail_dsn.envid)
            if unwritten:
                record = kept[index].outcome.kind.directory if index in kept else "bounce"
                raise MtaLoggingError(f"{message.queue_id}: the {record} record of <{rcpt}> "
                                      "could not be written; the message stays queued"
                                      f"{_finish_recorded(spool, message, done)}")
            done.append(index)
        if message.received_unwritten:  # the message goes: a loss, said
            _log.error("%s: %d received record(s) could not be written before the message was"
                       " removed; they are lost", message.queue_id,
                       len(message.received_unwritten))
            message.received_unwritten = []
    now = time.time()
    reports = [RecipientReport(i, FAILED, ADMIN_STATUS, f"{ADMIN_STATUS} {text}", None, now)
               for i in removed
               if action == "bounce" and notice_wanted(settings.dsn, envelope, i, FAILED)]
    notice = None
    skipped = False
    if reports and suppressed is not None:
        try:
            skipped = suppressed.skips(message.queue_id, envelope.mail_from, settings)
        except MtaLoggingError as exc:
            raise MtaLoggingError(f"{exc}; the message stays queued") from None
    if reports and not skipped:
        notice_envelope, data = notification(
            settings.dsn, message.queue_id, envelope, content, reports, when=now,
            entries=[f"{BOUNCED} {r.index}" for r in reports])
        notice = QueuedMessage(new_queue_id(), notice_envelope, content=data)
        spool.store(notice.queue_id, notice_envelope, data)
    for rcpt in pending:
        _log.info("%s: to=<%s>, status=bounced (%s: %s)", message.queue_id, rcpt, category,
                  text)
    spool.remove(message.queue_id, journaled=message.journaled)
    return notice


def _finish_recorded(spool: Spool, message: QueuedMessage, done: list[int]) -> str:
    """The recipients of a removal that failed part-way whose records were written: journaled
    final (so they are not delivered, nor recorded, again); what to add to the error."""
    if not done:
        return ""
    kept = message.unrecorded
    entries = [kept[i].entry if i in kept else f"{BOUNCED} {i}" for i in done]
    try:
        spool.journal(message.queue_id, entries)
    except OSError as exc:
        return (f" (the {len(done)} recipient(s) recorded before it stay queued too: their"
                f" final states could not be journaled: {exc})")
    message.journaled = True
    for index in done:
        message.final[index] = True
        kept.pop(index, None)
    return f" (the {len(done)} recipient(s) recorded before it are done)"


class QueueOperations(Protocol):
    """The operations behind ``mta-logging queue``; each id's result is a one-line text,
    its failure a :class:`MtaLoggingError`."""

    async def entries(self) -> list[QueueEntry]: ...

    async def show(self, queue_id: str) -> dict[str, Any]: ...

    async def act(self, action: str, queue_id: str) -> str: ...


async def dispatch(operations: QueueOperations, request: dict[str, Any]) -> dict[str, Any]:
    """The answer to one request: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error"}``.

    ``list`` gives the entries; ``show`` one message; an action gives ``[{"id", "ok",
    "text"}]`` for the ids named, and for every message not held (``all``) or every one with a
    pending recipient at ``domain``.
    """
    op = request.get("op")
    try:
        if op == "list":
            return {"ok": True, "result": [e.to_json() for e in await operations.entries()]}
        if op == "show":
            return {"ok": True, "result": await operations.show(str(request.get("id")))}
        if op not in ACTIONS:
            raise MtaLoggingError(f"unknown operation {op!r}; expected list, show or one of "
                                  f"{', '.join(ACTIONS)}")
        ids = [str(i) for i in request.get("ids") or []]
        domain = request.get("domain")
        if request.get("all") or domain:  # held messages stay held
            ids += [e.queue_id for e in await operations.entries() if e.state != "held"
                    and (not domain or has_domain(e.recipients, str(domain)))]
        results = []
        for queue_id in ids:
            try:
                results.append({"id": queue_id, "ok": True,
                                "text": await operations.act(op, queue_id)})
            except MtaLoggingError as exc:
                results.append({"id": queue_id, "ok": False, "text": str(exc)})
        return {"ok": True, "result": results}
    except MtaLoggingError as exc:
        return {"ok": False, "error": str(exc)}


def has_domain(recipients: Iterable[str], domain: str) -> bool:
    wanted = domain.lower()
    return any((domain_of(rcpt) or "").lower() == wanted for rcpt in recipients)


def unknown(queue_id: str) -> MtaLoggingError:
    return MtaLoggingError(f"{queue_id}: no such message in the queue")


class StoppedQueue:
    """The operations on the spool of a stopped relay; the caller holds the spool's lock.

    ``flush`` makes a message due at once when the relay starts; ``release`` likewise.
    """

    def __init__(self, spool: Spool, settings: RelaySettings,
                 accounting: Callable[[], AccountingLogger | None]) -> None:
        """``accounting``: gives the logger for ``bounce``/``delete`` (made when needed)."""
        self.spool = spool
        self.settings = settings
        self._accounting = accounting

    async def entries(self) -> list[QueueEntry]:
        return [entry_of(self.spool, m, attempting=False) for m in self.spool.scan()]

    def _message(self, queue_id: str) -> QueuedMessage:
        message = self.spool.read_message(queue_id)
        if message is None or message.complete:
            raise unknown(queue_id)
        return message

    async def show(self, queue_id: str) -> dict[str, Any]:
        return show_result(self.spool, self._message(queue_id), False)

    async def act(self, action: str, queue_id: str) -> str:
        message = self._message(queue_id)
        if action in REMOVALS:
            accounting = self._accounting()
            suppressed = suppressed_senders(self.settings, accounting)
            try:
                record_removal(self.spool, self.settings, accounting, message, action,
                               suppressed)
            finally:
                if suppressed is not None:
                    suppressed.close()
            return f"{REMOVALS[action][0]}: recorded and removed"
        if action == "flush":
            if message.held:
                raise MtaLoggingError(f"{queue_id}: held; release it to deliver it")
            self.spool.journal(queue_id, [f"a {message.failures} 0"])
            return "due at once when the relay starts"
        if action == "hold":
            self.spool.journal(queue_id, ["h 1"])
            return "held"
        if not message.held:
            raise MtaLoggingError(f"{queue_id}: not held")
        self.spool.journal(queue_id, ["h 0", f"a {message.failures} 0"])
        return "released; due at once when the relay starts"


def _recipient_state(message: QueuedMessage, index: int, pending: set[int]) -> str:
    """``done``, ``pending``, or for a recipient delivered or bounced whose record the live
    queue still has to write (it is not tried again), ``delivered, record to write`` or
    ``bounced, record to write``."""
    if index not in pending:
        return "done"
    kept = message.unrecorded.get(index)
    if kept is None:
        return "pending"
    return f"{'delivered' if kept.outcome.kind is Kind.DELIVERED else 'bounced'}, record to write"


def show_result(spool: Spool, message: QueuedMessage, attempting: bool) -> dict[str, Any]:
    """``queue show``: the entry, every recipient with its state, and the header section."""
    result = entry_of(spool, message, attempting=attempting).to_json()
    pending = set(message.pending())
    result["all_recipients"] = [
        {"address": rcpt, "state": _recipient_state(message, i, pending)}
        for i, rcpt in enumerate(message.envelope.rcpts)]
    result["client_ip"] = message.envelope.client_ip
    result["client_helo"] = message.envelope.client_helo
    result["headers"] = headers_text(spool, message.queue_id)
    return result
