"""The delivery queue: workers, attempts, retries with backoff, and the accounting records.

One attempt delivers a message to each destination domain of its pending recipients.

The accounting contract: after each domain's transaction every result is recorded first (the
``AccountingLogger`` call returns once the record is handed to the OS), and only then are the
final states (delivered, bounced) written to the spool journal, or the message removed when
every recipient is final. So a crash between the two leaves a recipient recorded and still
queued: it is delivered again after the restart and recorded again (SMTP is at-least-once
after a crash; both records are true), but never delivered without a record. A recipient
whose record could not be written is not marked final: it stays queued, and its record (not
its delivery) is tried again at its next try; one whose final state could not be journaled
stays queued and is delivered again. Recipients that failed temporarily are tried
again after the next retry interval; past ``max_queue_lifetime`` they bounce as
``message-expired``, with RFC 3463's ``5.4.7`` (delivery time expired) and the last error.

Senders are told (see ``dsn``): the recipients of one transaction that bounced, or that were
passed on to a next hop without DSN when they asked for SUCCESS, get one notification, stored
in the spool after their records and before their journal entries; a recipient whose
notification could not be stored is not marked final (tried again, reported again). One delay
notice per message at most, stored before the attempt's journal entries, which remember it.
A notification to a sender on the suppression list is not stored (see ``suppression``): the
journal entries it would have stood for are written directly.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

from mta_logging.address import domain_of
from mta_logging.classify import failure_category
from mta_logging.errors import MtaLoggingError
from mta_logging.eventid import new_event_id
from mta_logging.fields import diagnostic_of
from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Kind, Outcome
from mta_logging.relay.config import RelaySettings
from mta_logging.relay.dsn import (
    DELAYED,
    FAILED,
    RELAYED,
    RecipientReport,
    notice_wanted,
    notification,
)
from mta_logging.relay.faults import FaultLog
from mta_logging.relay.message import MessageHeaders
from mta_logging.relay.outbound import Deliverer, RcptResult
from mta_logging.relay.removals import Removals
from mta_logging.relay.spool import (
    BOUNCED,
    DELAY_NOTIFIED,
    DELIVERED,
    KeptRecord,
    QueuedMessage,
    Spool,
    error_entry,
    new_queue_id,
)
from mta_logging.relay.suppression import SUPPRESSED_RECORD, suppressed_senders

_log = logging.getLogger("mta_logging.relay.queue")

EXPIRED = "message-expired"
EXPIRED_STATUS = "5.4.7"
STATUS = {Kind.DELIVERED: "sent", Kind.DEFERRED: "deferred", Kind.BOUNCE: "bounced"}
BOUNCED_STATUS = STATUS[Kind.BOUNCE]
# Messages waiting beyond this many are read back from the spool when their turn comes,
# instead of being held in memory.
MAX_CACHED = 1000


class DeliveryQueue:
    """Runs ``settings.concurrency`` delivery workers over the messages of the spool.

    At most ``settings.max_per_destination`` of them deliver to one destination domain at a
    time, so a destination that hangs holds that many workers, never all of them: an attempt
    skips a destination at its limit, and a message left with nothing but such recipients
    waits (no retry counted) until a delivery there ends.

    Every message it knows (waiting, due, parked, being attempted, held) is in ``messages``
    until it is finished or withdrawn; a message is attempted by one worker at a time, and a
    held or withdrawn one not at all (the operator's ``queue`` commands, see ``control``).
    """

    def __init__(self, settings: RelaySettings, spool: Spool, deliverer: Deliverer,
                 accounting: AccountingLogger | None, *, executor: Executor | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.executor = executor
        self.spool = spool
        self.deliverer = deliverer
        self._unwritten: list[Outcome] = []  # outcomes the accounting call could not write
        # the caller's logger, with the write-failure signal the contract needs
        self.accounting = None if accounting is None else AccountingLogger(
            accounting.logger, on_write_error=self._unwritten.append)
        self.clock = clock
        self.faults = FaultLog(_log)
        # its file needs a restart, as the relay's lookups
        self.suppressed = suppressed_senders(settings, accounting, clock=clock)
        self._in_progress: dict[str, int] = {}  # destination domain → deliveries under way
        # messages whose only pending recipients are at busy destinations, by destination
        self._parked: dict[str, collections.deque[QueuedMessage]] = {}
        self._ready: asyncio.Queue[QueuedMessage] = asyncio.Queue()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.messages: dict[str, QueuedMessage] = {}
        self.attempting: set[str] = set()
        self._ready_ids: set[str] = set()  # in _ready; an entry not in here is skipped
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._removals = Removals(spool, executor, self.faults)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work(), name=f"delivery-{n}")
                         for n in range(self.settings.concurrency)]

    def submit(self, message: QueuedMessage) -> None:
        """Queue a message for an attempt now (just received, or found due on start)."""
        self.messages[message.queue_id] = message
        self._requeue(message)

    def _requeue(self, message: QueuedMessage) -> None:
        """Make a known message due now, unless it is held, withdrawn, due or under way."""
        queue_id = message.queue_id
        if (message.held or self.messages.get(queue_id) is not message
                or queue_id in self._ready_ids or queue_id in self.attempting):
            return
        self._cancel_timer(queue_id)
        if self._ready.qsize() >= MAX_CACHED:
            message.content = None
        self._ready_ids.add(queue_id)
        self._ready.put_nowait(message)

    def schedule(self, message: QueuedMessage) -> None:
        """Queue a message for an attempt at ``message.next_try`` (none while it is held)."""
        self.messages[message.queue_id] = message
        message.content = None
        if message.held:
            return
        delay = max(0.0, message.next_try - self.clock())
        self._timers[message.queue_id] = asyncio.get_running_loop().call_later(
            delay, self._due, message)

    def _due(self, message: QueuedMessage) -> None:
        self._timers.pop(message.queue_id, None)
        if not self._stopping:
            self._requeue(message)

    def deliveries_in_progress(self) -> dict[str, int]:
        """Transactions under way, per destination domain."""
        return dict(self._in_progress)

    def _cancel_timer(self, queue_id: str) -> bool:
        timer = self._timers.pop(queue_id, None)
        if timer is None:
            return False
        timer.cancel()
        return True

    def flush(self, queue_id: str) -> bool:
        """Attempt a waiting message now; False if it is not waiting for a later try."""
        message = self.messages.get(queue_id)
        if message is None or message.held or not self._cancel_timer(queue_id):
            return False
        self._requeue(message)
        return True

    def hold(self, message: QueuedMessage) -> None:
        """No further attempts of ``message`` (one under way finishes) until :meth:`release`."""
        message.held = True
        self.messages[message.queue_id] = message
        self._cancel_timer(message.queue_id)
        self._ready_ids.discard(message.queue_id)

    def release(self, message: QueuedMessage) -> None:
        """Attempt a held message again now (or when its attempt under way ends)."""
        message.held = False
        message.next_try = 0.0
        self._requeue(message)  # after the attempt under way, if any: it reschedules

    def withdraw(self, queue_id: str) -> QueuedMessage | None:
        """Take a message out of the queue (no more attempts); None if it is unknown here or
        being attempted right now."""
        message = self.messages.get(queue_id)
        if message is None or queue_id in self.attempting:
            return None
        del self.messages[queue_id]
        self._cancel_timer(queue_id)
        self._ready_ids.discard(queue_id)
        return message

    async def stop(self, timeout: float) -> None:
        """Stop taking work; let attempts in progress finish for up to ``timeout`` seconds."""
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for worker in self._workers:
            if worker not in self._busy:
                worker.cancel()
        busy = [w for w in self._workers if w in self._busy]
        if busy:
            _, unfinished = await asyncio.wait(busy, timeout=timeout)
            for worker in unfinished:
                _log.warning("delivery still running after %.0f s; cancelled (the message "
                             "stays queued)", timeout)
                worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        # a cancelled worker's message may have been recorded and be on its way out of the
        # spool: removed now, not delivered again after the next start
        await self._removals.settled()
        self._removals.close()
        await self._write_waiting_records()
        await self.deliverer.close()
        if self.suppressed is not None:
            self.suppressed.close()

    async def _write_waiting_records(self) -> None:
        """At stop: a last try of the records still waiting to be written (kept in memory
        only). A delivered or bounced recipient whose record is written now, and whose sender
        is not to be told, is journaled final (not delivered again after the next start);
        what is still unwritten is said."""
        if self.accounting is None:
            return
        resent = lost = 0
        for message in list(self.messages.values()):
            if message.queue_id in self.attempting:
                continue  # its attempt was cancelled mid-way: left as the spool has it
            if message.received_unwritten:
                self._record_received_again(message)
                lost += len(message.received_unwritten)
            # (one whose sender is to be told is left to the next start's attempt, notice and
            # all)
            entries = [kept.entry for index, kept in list(message.unrecorded.items())
                       if self._report(message, kept.result, kept.expired) is None
                       and self._record_again(message, index)]
            resent += len(message.unrecorded)
            if entries and not await self._journal(message, entries):
                resent += len(entries)
        if resent or lost:
            _log.error("stopping with records that could not be written: %d recipient(s) are"
                       " delivered and recorded again after the next start, %d received"
                       " record(s) are lost", resent, lost)

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not self._stopping:
            message = await self._ready.get()
            queue_id = message.queue_id
            if queue_id not in self._ready_ids or self.messages.get(queue_id) is not message:
                continue  # held or withdrawn while it waited
            self._ready_ids.discard(queue_id)
            self.attempting.add(queue_id)
            self._busy.add(task)
            # an episode per message: another message's success does not end this one's
            operation = f"queue {message.queue_id}: delivery attempt"
            try:
                await self.attempt(message)
                self.faults.succeeded(operation)
            except Exception as exc:
                self.faults.failed(operation, f"{exc!r}; will try again", exc_info=True)
                self._retry_later(message)
            finally:
                self._busy.discard(task)
                self.attempting.discard(queue_id)
                if message.complete:
                    self.messages.pop(queue_id, None)

    def _retry_later(self, message: QueuedMessage) -> None:
        if not self._stopping:
            message.next_try = self.clock() + self.settings.retry.interval(message.failures + 1)
            self.schedule(message)

    async def attempt(self, message: QueuedMessage) -> None:
        """Try every pending recipient once; journal, record, and reschedule or finish."""
        if message.received_unwritten:  # not written at the 250: before any other record
            self._record_received_again(message)
        by_domain: dict[str, list[int]] = {}
        unrecorded = message.unrecorded
        for index in message.pending():
            if index not in unrecorded:  # (delivered or bounced already: only its record is due)
                by_domain.setdefault(domain_of(message.envelope.rcpts[index]) or "",
                                     []).append(index)
        limit = self.settings.max_per_destination
        if by_domain and all(self._in_progress.get(domain, 0) >= limit for domain in by_domain):
            self._park(message, next(iter(by_domain)))  # before reading it: kept as it is
            return
        content = message.content
        if content is None:
            try:
                content = await self._in_thread(self.spool.read_content, message.queue_id)
            except FileNotFoundError:
                _log.error("queue %s: the queue file is gone (removed by hand?); message "
                           "dropped", message.queue_id)
                self.messages.pop(message.queue_id, None)
                return
        message.content = None
        headers = MessageHeaders(content)
        retry = self.settings.retry
        remaining = message.envelope.time_queued + retry.max_queue_lifetime - self.clock()
        expired = remaining <= 0
        # The last retry is due when the lifetime ends (whole seconds), never after it.
        delay = 0.0 if expired else min(retry.interval(message.failures + 1),
                                        float(math.ceil(remaining)))
        busy = []
        deferred: list[RcptResult] = []
        for was_expired in (False, True):  # the records that could not be written before
            again = [kept.result for kept in unrecorded.values() if kept.expired is was_expired]
            if again:
                await self._settle(message, again, 0.0, was_expired, headers, content)
        for domain, indexes in by_domain.items():
            if self._in_progress.get(domain, 0) >= limit:
                busy.append(domain)
                continue
            results = await self._deliver(domain, message, indexes, content)
            await self._settle(message, results, delay, expired, headers, content)
            deferred += [r for r in results if r.kind is Kind.DEFERRED and not expired]
            message.last_error = next((r.dsn_msg for r in results if r.kind is Kind.DEFERRED),
                                      message.last_error)
        if message.complete:
            return
        if busy and all((domain_of(message.envelope.rcpts[i]) or "") in busy
                        for i in message.pending()):
            self._park(message, busy[0])  # nothing failed: no retry counted, no backoff
            return
        if expired:  # what is left waits for a record or a notice: the next interval
            delay = retry.interval(message.failures + 1)
        message.failures += 1
        message.next_try = self.clock() + delay
        entries = [f"a {message.failures} {message.next_try:.3f}",
                   error_entry(message.last_error)]
        notice = await self._delay_notice(message, content, deferred)
        # Without these lines a restart tries again sooner and counts fewer failures: no loss.
        if await self._journal(message, entries + ([DELAY_NOTIFIED] if notice else [])):
            if notice is not None:
                message.delay_notified = True
                self.submit(notice)
        elif notice is not None:
            await self._withdraw_notice(notice)
        if not self._stopping:
            self.schedule(message)

    async def _deliver(self, domain: str, message: QueuedMessage, indexes: list[int],
                       content: bytes) -> list[RcptResult]:
        """One transaction to ``domain``, counted against ``max_per_destination``; when it
        ends, a message parked for that destination gets its turn."""
        self._in_progress[domain] = self._in_progress.get(domain, 0) + 1
        try:
            verp = self.settings.bounces.verp_codec()
            if verp is None or not message.envelope.mail_from:
                return await self.deliverer.deliver(domain, message.envelope, indexes, content)
            # VERP: each recipient's own return path, so one transaction per recipient
            results = []
            for index in indexes:
                envelope = dataclasses.replace(
                    message.envelope, mail_from=verp.encode(message.queue_id, index))
                results += await self.deliverer.deliver(domain, envelope, [index], content)
            return results
        finally:
            left = self._in_progress[domain] - 1
            if left:
                self._in_progress[domain] = left
            else:
                del self._in_progress[domain]
            parked = self._parked.get(domain)
            if parked:
                waiting = parked.popleft()
                if not parked:
                    del self._parked[domain]
                if not self._stopping:
                    self._requeue(waiting)

    def _park(self, message: QueuedMessage, domain: str) -> None:
        """Hold ``message`` until a delivery to ``domain`` ends (it stays in the spool)."""
        if self._stopping:
            return
        if self._in_progress.get(domain, 0) < self.settings.max_per_destination:
            # the destination freed up while the rest was delivered; due once this attempt ends
            asyncio.get_running_loop().call_soon(self._requeue, message)
            return
        if sum(map(len, self._parked.values())) >= MAX_CACHED:
            message.content = None  # read back from the spool when its turn comes
        self._parked.setdefault(domain, collections.deque()).append(message)

    async def _journal(self, message: QueuedMessage, entries: list[str]) -> bool:
        """Append ``entries`` to the message's journal; False (reported) if the write failed."""
        try:
            await self._in_thread(self.spool.journal, message.queue_id, entries)
        except OSError as exc:
            self.faults.failed("journal write", f"queue {message.queue_id}: {exc}")
            return False
        self.faults.succeeded("journal write")
        message.journaled = True
        return True

    async def _remove(self, message: QueuedMessage, entries: list[str]) -> bool:
        """Remove a finished message from the spool, or journal ``entries`` (the final states
        that finish it) if that fails; False (reported) if neither could be done."""
        return await self._removals.remove(message.queue_id, message.journaled, entries)

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def _settle(self, message: QueuedMessage, results: list[RcptResult], delay: float,
                      expired: bool, headers: Mapping[str, str], content: bytes) -> None:
        """Record every result, store the sender's notification about them, then journal the
        final ones that were recorded (or remove the message when that makes every recipient
        final); only then are they final in memory, and the notification queued."""
        entries: dict[int, str] = {}
        reports = []
        for result in results:
            recorded = (self._record_again(message, result.index)
                        if result.index in message.unrecorded
                        else self._record(message, result, delay, headers, expired, len(content)))
            if result.kind is Kind.DELIVERED:
                state = DELIVERED
            elif result.kind is Kind.BOUNCE or expired:
                state = BOUNCED
            else:
                continue
            if recorded:
                if self.faults.failing:
                    self.faults.succeeded(_record_write(state))
                entries[result.index] = f"{state} {result.index}"
                report = self._report(message, result, expired)
                if report is not None:
                    reports.append(report)
            else:  # logged once per episode, not at each recipient's retry
                operation = _record_write(state)  # "delivered record write", "bounce ..."
                self.faults.failed(operation, f"queue {message.queue_id}: the"
                                   f" {operation.split()[0]} record of"
                                   f" <{message.envelope.rcpts[result.index]}> could not be"
                                   " written; the recipient stays queued, and its record is"
                                   " written again at its next try (it is not sent again,"
                                   " unless the relay restarts first)")
        notice = None
        if reports:
            suppressed = self._sender_suppressed(message)
            if suppressed is False:
                notice = await self._store_notice(message, content, reports,
                                                  [entries[r.index] for r in reports])
            # not final without it (not stored, or the skip not recorded): tried again
            if notice is None and not suppressed:
                for report in reports:
                    del entries[report.index]
        if not entries:
            return
        complete = len(entries) == len(message.pending())
        if complete and message.received_unwritten:  # a last chance before it is forgotten
            self._record_received_again(message, last=True)
        # a message that cannot be removed gets its last recipients journaled as final instead
        # (its file then goes at the next start): not delivered again for a failed unlink
        if await (self._remove(message, list(entries.values())) if complete
                  else self._journal(message, list(entries.values()))):
            for index in entries:
                message.final[index] = True
            if notice is not None:
                self.submit(notice)
        elif notice is not None:
            await self._withdraw_notice(notice)

    def _report(self, message: QueuedMessage, result: RcptResult, expired: bool
                ) -> RecipientReport | None:
        """What the sender is told about a final result; None if nothing (see ``dsn``).
        A recipient passed on with its DSN parameters is reported by the next hop."""
        if result.kind is Kind.DELIVERED:
            if result.next_hop_dsn:
                return None
            action = RELAYED
        else:
            action = FAILED
        if not notice_wanted(self.settings.dsn, message.envelope, result.index, action):
            return None
        status = EXPIRED_STATUS if expired and result.kind is Kind.DEFERRED else (
            result.dsn_status)
        return RecipientReport(result.index, action, status, result.dsn_msg, result.dsn_mta,
                               self.clock())

    async def _delay_notice(self, message: QueuedMessage, content: bytes,
                            deferred: list[RcptResult]) -> QueuedMessage | None:
        """The stored delay notice about ``deferred``, when one is due (once per message)."""
        if message.delay_notified:
            return None
        envelope = message.envelope
        now = self.clock()
        age = now - envelope.time_queued
        give_up = envelope.time_queued + self.settings.retry.max_queue_lifetime
        reports = [RecipientReport(r.index, DELAYED, r.dsn_status, r.dsn_msg, r.dsn_mta, now,
                                   retry_until=give_up)
                   for r in deferred
                   if notice_wanted(self.settings.dsn, envelope, r.index, DELAYED, age=age)]
        if not reports:
            return None
        suppressed = self._sender_suppressed(message)
        if suppressed:  # remembered as if sent: skipped once
            if await self._journal(message, [DELAY_NOTIFIED]):
                message.delay_notified = True
            return None
        if suppressed is None:  # not recorded: due again at the next deferral
            return None
        return await self._store_notice(message, content, reports, [DELAY_NOTIFIED])

    def _sender_suppressed(self, message: QueuedMessage) -> bool | None:
        """Whether the notification to the sender of ``message`` is not to be sent (the
        sender is on the suppression list; logged and recorded); None when it is not to be
        sent but the record could not be written (a fault, logged once per episode): then
        nothing the notification stood for is final, as when it cannot be stored."""
        if self.suppressed is None:
            return False
        try:
            skipped = self.suppressed.skips(message.queue_id, message.envelope.mail_from,
                                            self.settings)
        except MtaLoggingError as exc:
            self.faults.failed(SUPPRESSED_RECORD, f"{exc}; the notification's recipients stay "
                                                  "queued and are tried again")
            return None
        if skipped:
            self.faults.succeeded(SUPPRESSED_RECORD)
        return skipped

    async def _store_notice(self, message: QueuedMessage, content: bytes,
                            reports: list[RecipientReport], entries: list[str]
                            ) -> QueuedMessage | None:
        """Write the sender's notification about ``reports`` to the spool, standing for the
        journal ``entries`` of ``message``; None (reported) if it could not be written."""
        envelope, data = notification(self.settings.dsn, message.queue_id, message.envelope,
                                      content, reports, when=self.clock(), entries=entries)
        queue_id = new_queue_id()
        try:
            await self._in_thread(self.spool.store, queue_id, envelope, data)
        except OSError as exc:
            self.faults.failed("notification write", f"queue {message.queue_id}: {exc}")
            return None
        self.faults.succeeded("notification write")
        _log.info("%s: sender notification: %s (%s)", message.queue_id, queue_id,
                  ", ".join(f"{message.envelope.rcpts[r.index]} {r.action}" for r in reports))
        return QueuedMessage(queue_id, envelope, content=data)

    async def _withdraw_notice(self, notice: QueuedMessage) -> None:
        """Take back a stored notification whose journal entries could not be written."""
        try:
            await self._in_thread(self.spool.remove, notice.queue_id)
        except OSError as exc:
            _log.error("queue %s: the notification could not be taken back (%s); the sender "
                       "may be told twice", notice.queue_id, exc)

    def _record(self, message: QueuedMessage, result: RcptResult, delay: float,
                headers: Mapping[str, str], expired: bool, size: int) -> bool:
        """Write the accounting record of one result; False if the logger could not write it.

        The Outcome is made here, as ``AccountingLogger.delivered``/``deferred``/``bounced``
        would make it from the same values, and handed to ``AccountingLogger.record``: the
        keywords of those methods, packed and checked for every recipient, cost as much as
        writing the record (``benchmarks/bench_relay_record.py``)."""
        envelope = message.envelope
        rcpt = envelope.rcpts[result.index]
        kind = result.kind
        now = self.clock()
        age = now - envelope.time_queued
        if _log.isEnabledFor(logging.INFO):
            log_outcome(message, rcpt, result, age,
                        BOUNCED_STATUS if expired else STATUS[kind])
        accounting = self.accounting
        if accounting is None:
            return True
        dsn_status = result.dsn_status
        dsn_msg = result.dsn_msg
        dsn_diag = bounce_cat = None
        if kind is Kind.DEFERRED:
            if expired:
                kind = Kind.BOUNCE
                bounce_cat = EXPIRED
                dsn_status = EXPIRED_STATUS
                dsn_msg = (f"message expired after {age:.0f} s in the queue; "
                           f"last error: {result.dsn_msg}")
                dsn_diag = diagnostic_of(result.dsn_msg)
        elif kind is Kind.BOUNCE:
            bounce_cat = failure_category(dsn_status, dsn_msg)
        settings = self.settings
        outcome = Outcome(
            kind, rcpt, envelope.time_queued, settings.hostname,
            settings.source_ip or result.src_ip, result.dest_ip, settings.vmta,
            message.queue_id, dsn_status, dsn_msg, delay if kind is Kind.DEFERRED else None,
            bounce_cat, headers, orig=envelope.mail_from, size=size, dsn_mta=result.dsn_mta,
            tls_protocol=result.tls_protocol, tls_cipher=result.tls_cipher,
            orcpt=envelope.dsn_of(result.index).orcpt, env_id=envelope.mail_dsn.envid,
            dsn_diag=dsn_diag,
            # a final record may be written again (its write reported failed, an fsync that
            # failed after the bytes went out): both lines then carry one eventId
            event_id=None if kind is Kind.DEFERRED else new_event_id(now))
        if self.record(outcome):
            return True
        if kind is not Kind.DEFERRED:  # final: kept, to be recorded (not delivered) again
            message.unrecorded[result.index] = KeptRecord(result, outcome, expired)
        return False

    def _record_received_again(self, message: QueuedMessage, last: bool = False) -> None:
        """Write again the received records that could not be written when the message was
        accepted; ``last``: the message is done, those still unwritten are lost (logged)."""
        if self.accounting is None:
            return
        message.received_unwritten = [outcome for outcome in message.received_unwritten
                                      if not self.record(outcome)]
        if last and message.received_unwritten:  # a loss: said each time
            _log.error("queue %s: %d received record(s) could not be written before the"
                       " message was done; they are lost", message.queue_id,
                       len(message.received_unwritten))
            message.received_unwritten = []

    def _record_again(self, message: QueuedMessage, index: int) -> bool:
        """Write again the record of a final result that could not be written at its try."""
        if self.record(message.unrecorded[index].outcome):
            del message.unrecorded[index]
            return True
        return False

    def record(self, outcome: Outcome) -> bool:
        """Write ``outcome`` through the accounting logger (there must be one); False if a
        handler could not write it. Only this call's failure counts: one reported by an
        earlier record (another caller's) is not taken for it."""
        assert self.accounting is not None
        unwritten = self._unwritten
        if unwritten:
            unwritten.clear()
        self.accounting.record(outcome)
        if unwritten:
            unwritten.clear()
            return False
        return True


def _record_write(state: str) -> str:
    """The fault-log operation of writing a final record (``d``/``b``: an expiry is a bounce)."""
    return "delivered record write" if state == DELIVERED else "bounce record write"


def log_outcome(message: QueuedMessage, rcpt: str, result: RcptResult, delay: float,
                status: str) -> None:
    """The operator's line for one recipient's outcome (INFO), Postfix-style."""
    relay = result.dest_ip or "none"
    _log.info("%s: to=<%s>, relay=%s, delay=%.1f, dsn=%s, status=%s (%s)", message.queue_id,
              rcpt, relay, delay, result.dsn_status, status, result.dsn_msg,
              extra={"queue_id": message.queue_id, "rcpt": rcpt, "relay": relay,
                     "delay": round(delay, 3), "dsn": result.dsn_status, "status": status,
                     "reply": result.dsn_msg})
