"""The delivery queue: workers, attempts, retries with backoff, and the accounting records.

One attempt delivers a message to each destination domain of its pending recipients. After
each domain's transaction the final states (delivered, bounced) are written to the spool
journal, and only then recorded in the accounting files, so a crash can never make the relay
deliver again to a recipient it has recorded. Recipients that failed temporarily are tried
again after the next retry interval; past ``max_queue_lifetime`` they bounce as
``message-expired``, with RFC 3463's ``5.4.7`` (delivery time expired) and the last error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

from mta_logging.address import domain_of
from mta_logging.fields import diagnostic_of
from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Kind
from mta_logging.relay.config import RelaySettings
from mta_logging.relay.message import MessageHeaders
from mta_logging.relay.outbound import Deliverer, RcptResult
from mta_logging.relay.spool import BOUNCED, DELIVERED, QueuedMessage, Spool

_log = logging.getLogger("mta_logging.relay.queue")

EXPIRED = "message-expired"
EXPIRED_STATUS = "5.4.7"
# Messages waiting beyond this many are read back from the spool when their turn comes,
# instead of being held in memory.
MAX_CACHED = 1000


class DeliveryQueue:
    """Runs ``settings.concurrency`` delivery workers over the messages of the spool."""

    def __init__(self, settings: RelaySettings, spool: Spool, deliverer: Deliverer,
                 accounting: AccountingLogger | None, *, executor: Executor | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.executor = executor
        self.spool = spool
        self.deliverer = deliverer
        self.accounting = accounting
        self.clock = clock
        self._ready: asyncio.Queue[QueuedMessage] = asyncio.Queue()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[Any]] = set()
        self._stopping = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work(), name=f"delivery-{n}")
                         for n in range(self.settings.concurrency)]

    def submit(self, message: QueuedMessage) -> None:
        """Queue a message for an attempt now (just received, or found due on start)."""
        if self._ready.qsize() >= MAX_CACHED:
            message.content = None
        self._ready.put_nowait(message)

    def schedule(self, message: QueuedMessage) -> None:
        """Queue a message for an attempt at ``message.next_try``."""
        message.content = None
        delay = max(0.0, message.next_try - self.clock())
        self._timers[message.queue_id] = asyncio.get_running_loop().call_later(
            delay, self._due, message)

    def _due(self, message: QueuedMessage) -> None:
        self._timers.pop(message.queue_id, None)
        if not self._stopping:
            self._ready.put_nowait(message)

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
        await self.deliverer.close()

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not self._stopping:
            message = await self._ready.get()
            self._busy.add(task)
            try:
                await self.attempt(message)
            except Exception:
                _log.exception("queue %s: attempt failed; will try again", message.queue_id)
                self._retry_later(message)
            finally:
                self._busy.discard(task)

    def _retry_later(self, message: QueuedMessage) -> None:
        if not self._stopping:
            message.next_try = self.clock() + self.settings.retry.interval(message.failures + 1)
            self.schedule(message)

    async def attempt(self, message: QueuedMessage) -> None:
        """Try every pending recipient once; journal, record, and reschedule or finish."""
        content = message.content
        if content is None:
            try:
                content = await self._in_thread(self.spool.read_content, message.queue_id)
            except FileNotFoundError:
                _log.error("queue %s: the queue file is gone (removed by hand?); message "
                           "dropped", message.queue_id)
                return
        message.content = None
        headers = MessageHeaders(content)
        retry = self.settings.retry
        remaining = message.envelope.time_queued + retry.max_queue_lifetime - self.clock()
        expired = remaining <= 0
        # The last retry is due when the lifetime ends (whole seconds), never after it.
        delay = 0.0 if expired else min(retry.interval(message.failures + 1),
                                        float(math.ceil(remaining)))
        by_domain: dict[str, list[int]] = {}
        for index in message.pending():
            by_domain.setdefault(domain_of(message.envelope.rcpts[index]) or "", []).append(index)
        for domain, indexes in by_domain.items():
            results = await self.deliverer.deliver(domain, message.envelope, indexes, content)
            await self._settle(message, results, delay, expired, headers, len(content))
        if message.complete:
            return
        message.failures += 1
        message.next_try = self.clock() + delay
        await self._journal(message, [f"a {message.failures} {message.next_try:.3f}"])
        if not self._stopping:
            self.schedule(message)

    async def _journal(self, message: QueuedMessage, entries: list[str]) -> None:
        await self._in_thread(self.spool.journal, message.queue_id, entries)
        message.journaled = True

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def _settle(self, message: QueuedMessage, results: list[RcptResult], delay: float,
                      expired: bool, headers: Mapping[str, str], size: int) -> None:
        """Journal the final results (or remove a finished message), then record them all."""
        entries = []
        for result in results:
            if result.kind is Kind.DELIVERED:
                entries.append(f"{DELIVERED} {result.index}")
            elif result.kind is Kind.BOUNCE or expired:
                entries.append(f"{BOUNCED} {result.index}")
            else:
                continue
            message.final[result.index] = True
        if message.complete:
            if message.journaled:
                await self._in_thread(self.spool.remove, message.queue_id)
            else:
                self.spool.remove(message.queue_id, journaled=False)
        elif entries:
            await self._journal(message, entries)
        for result in results:
            self._record(message, result, delay, headers, expired, size)

    def _record(self, message: QueuedMessage, result: RcptResult, delay: float,
                headers: Mapping[str, str], expired: bool, size: int) -> None:
        rcpt = message.envelope.rcpts[result.index]
        _log.debug("queue %s: %s %s %s", message.queue_id, result.kind.directory, rcpt,
                   result.dsn_msg)
        accounting = self.accounting
        if accounting is None:
            return
        fields: dict[str, Any] = {
            "time_queued": message.envelope.time_queued,
            "src_mta": self.settings.hostname,
            "src_ip": self.settings.source_ip or result.src_ip,
            "dest_ip": result.dest_ip,
            "vmta": self.settings.vmta,
            "job_id": message.queue_id,
            "dsn_status": result.dsn_status,
            "dsn_msg": result.dsn_msg,
            "headers": headers,
            "orig": message.envelope.mail_from,
            "size": size,
            "dsn_mta": result.dsn_mta,
            "tls_protocol": result.tls_protocol,
            "tls_cipher": result.tls_cipher,
        }
        if result.kind is Kind.DELIVERED:
            accounting.delivered(rcpt, **fields)
        elif result.kind is Kind.BOUNCE:
            accounting.bounced(rcpt, **fields)
        elif expired:
            age = self.clock() - message.envelope.time_queued
            fields["dsn_status"] = EXPIRED_STATUS
            fields["dsn_msg"] = (f"message expired after {age:.0f} s in the queue; "
                                 f"last error: {result.dsn_msg}")
            fields["dsn_diag"] = diagnostic_of(result.dsn_msg)
            accounting.bounced(rcpt, bounce_cat=EXPIRED, **fields)
        else:
            accounting.deferred(rcpt, delay=delay, **fields)
