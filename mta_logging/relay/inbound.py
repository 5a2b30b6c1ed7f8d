"""Inbound SMTP: the aiosmtpd handler that decides who may relay and spools what it accepts.

The client hears ``250 ... queued as <id>`` only after the message and its envelope are
fsync'd in the spool; the id is the queue id, which becomes ``jobId`` in the accounting files.
Just before the 250, each recipient gets a received (``r``) record, when ``records`` has ``r``.

Mail for the configured bounce domains and complaint addresses (``bounces:``) is returned mail:
accepted from anyone, never relayed or spooled, but recorded as ``rb``/``f`` records (or
quarantined) by :class:`~mta_logging.returns.recorder.ReturnRecorder` before the 250. With VERP
on, a return path under the VERP prefix whose token does not verify is refused at RCPT with
``550 5.1.1`` (no such mailbox: the address was never handed out, and a 5xx at RCPT makes the
reporting MTA give up without bouncing the bounce). Returned mail goes in a transaction of its
own (``452 4.5.3`` to a recipient of the other sort, which the client sends again later). While
bounces are configured each accepted message's Message-ID goes into the sent index, with its
sender's DSN parameters.

A DSN that comes back about a message the relay sent (traced by its VERP token or the sent
index) is passed on to that message's sender as a notification of the relay's own
(:func:`~mta_logging.relay.dsn.passed_back`), stored in the spool after the records and
before the 250: a failure to store it answers 451 (sent again: the records may be doubled,
and the notification is then sent once).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mta_logging.errors import MtaLoggingError
from mta_logging.eventid import new_event_id
from mta_logging.outcome import Kind, Outcome
from mta_logging.relay.addresses import address_problem, recipient_problem
from mta_logging.relay.config import RelaySettings
from mta_logging.relay.dsn import passed_back
from mta_logging.relay.faults import FaultLog
from mta_logging.relay.limits import ConnectionLimits
from mta_logging.relay.message import hop_count, parse_headers, protocol_name, received_header
from mta_logging.relay.passwords import PasswordChecker
from mta_logging.relay.queue import DeliveryQueue
from mta_logging.relay.smtpd import DsnEnvelope, RelaySMTP
from mta_logging.relay.spool import Envelope as SpoolEnvelope
from mta_logging.relay.spool import QueuedMessage, Spool, new_queue_id
from mta_logging.relay.spooler import SpoolWriter
from mta_logging.relay.storage import INSUFFICIENT_STORAGE, FreeSpace
from mta_logging.relay.suppression import (
    SUPPRESSED_RECORD,
    UNRECORDED_REFUSAL,
    RelaySuppression,
)
from mta_logging.returns.quarantine import Quarantine
from mta_logging.returns.recorder import ReturnRecorder
from mta_logging.returns.sent import Sent, SentIndex

_log = logging.getLogger("mta_logging.relay.inbound")

NULL_SENDER = "<>"
MAX_HOPS = 100  # Received fields a message may already have (RFC 5321 §6.3 suggests 100)


class RelayHandler:
    """aiosmtpd handler: relay permission, address checks, free space, durable spooling.

    ``free_space``: below its minimum, MAIL gets ``452 4.3.1`` (None: no check).
    ``suppression``: a recipient on it gets ``550 5.7.1`` at RCPT (None: no list).
    """

    def __init__(self, settings: RelaySettings, spool: Spool, queue: DeliveryQueue, *,
                 executor: Executor | None = None, free_space: FreeSpace | None = None,
                 suppression: RelaySuppression | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.executor = executor
        self.spool = spool
        self.queue = queue
        self.free_space = free_space
        self.suppression = suppression
        self.faults = FaultLog(_log)
        self.clock = clock
        self.draining = False
        # messages read to their final "." and not yet stored and queued (or refused): a
        # draining relay waits for them
        self.accepting: set[asyncio.Future[str]] = set()
        self.writer = SpoolWriter(spool)  # stores accepted mail from threads of its own
        self._relay_cache: dict[str, bool] = {}
        self.sent: SentIndex | None = None
        self.returns: ReturnRecorder | None = None
        self._set_up_returns()

    def reconfigure(self, settings: RelaySettings) -> None:
        """Use ``settings`` for every command from now on (a reload)."""
        self.settings = settings
        self._relay_cache.clear()
        self._set_up_returns()

    def _set_up_returns(self) -> None:
        """The recorder of returned mail (and the sent index) while bounces are configured."""
        settings = self.settings
        accounting = self.queue.accounting
        if not settings.bounces.enabled or accounting is None:
            self.returns = None
            return
        if self.sent is None:
            self.sent = SentIndex(settings.sent_index_path)
        self.returns = ReturnRecorder(accounting.logger, Quarantine(settings.quarantine_dir),
                                      verp=settings.bounces.verp_codec(), sent=self.sent)

    def close(self) -> None:
        """Stop the spool writer (after what it was asked to store) and close the sent index
        (the relay has stopped)."""
        self.writer.close()
        if self.sent is not None:
            self.sent.close()
            self.sent = None

    def _may_relay(self, client_ip: str) -> bool:
        allowed = self._relay_cache.get(client_ip)
        if allowed is None:
            if len(self._relay_cache) >= 4096:
                self._relay_cache.clear()
            allowed = self._relay_cache[client_ip] = self.settings.may_relay(client_ip)
        return allowed

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.draining:
            return f"421 4.3.2 {self.settings.hostname} Service shutting down, try again later"
        if self.free_space is not None and self.free_space.low():
            return INSUFFICIENT_STORAGE
        problem = address_problem(address, envelope.smtp_utf8)
        if problem is not None:
            return problem
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        client_ip = str(session.peer[0]) if session.peer else ""
        if self.returns is not None:
            returned = self.settings.bounces.accepts(address)
            refusal = self._returned_mail_refusal(envelope, address, returned, client_ip)
            if refusal is not None:
                return refusal
            if returned:
                problem = recipient_problem(address, envelope.smtp_utf8)
                if problem is not None:
                    return problem
                envelope.rcpt_tos.append(address)
                envelope.rcpt_options.extend(rcpt_options)
                return "250 2.1.5 Ok"
        if not (session.authenticated or self._may_relay(client_ip)):
            _log.info("relay denied: client %s, recipient %s", client_ip, address)
            return f"550 5.7.1 <{address}>: Relay access denied"
        problem = recipient_problem(address, envelope.smtp_utf8)
        if problem is not None:
            return problem
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return "452 4.5.3 Error: too many recipients"
        if self.suppression is not None:
            refusal = self.suppression.refusal(address, str(envelope.mail_from), self.settings)
            if refusal is not None:
                return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    def _returned_mail_refusal(self, envelope: Envelope, address: str, returned: bool,
                               client_ip: str) -> str | None:
        """The reply refusing ``address`` (``returned``: whether it is a bounce or complaint
        address) as returned mail (see the module's description); None when it is accepted or
        is no returned mail."""
        if envelope.rcpt_tos and self.settings.bounces.accepts(envelope.rcpt_tos[0]) != returned:
            return "452 4.5.3 Error: returned mail goes in a transaction of its own"
        if not returned:
            return None
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return "452 4.5.3 Error: too many recipients"
        verp = self.returns.verp if self.returns is not None else None
        if verp is not None and verp.is_ours(address) and verp.decode(address) is None:
            _log.warning("refused a VERP address whose token does not verify: %s (client %s)",
                         address, client_ip)
            return f"550 5.1.1 <{address}>: no such bounce address"
        return None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """The message, once read to its final ".", is stored, recorded and queued (or, sent
        to the bounce address, recorded as returned mail) in a task of its own: a client that
        hangs up before it reads the reply cancels this coroutine, not that task, so mail
        already fsync'd into the spool is never left there unrecorded and unqueued (it goes,
        as RFC 5321 section 6.1 wants of mail the server has taken responsibility for; the
        client, not having read a 250, may send it again)."""
        accepting = asyncio.ensure_future(self._accept(session, envelope))
        self.accepting.add(accepting)
        accepting.add_done_callback(self.accepting.discard)
        try:
            return await asyncio.shield(accepting)
        except asyncio.CancelledError:
            accepting.add_done_callback(_log_unexpected_failure)
            raise

    async def _accept(self, session: Session, envelope: Envelope) -> str:
        if hop_count(envelope.original_content or b"") >= MAX_HOPS:
            _log.warning("refused a message with %d or more Received fields (a mail loop?)",
                         MAX_HOPS)
            return "554 5.4.6 Error: too many hops, this message is looping"
        if self.returns is not None and self.settings.bounces.accepts(envelope.rcpt_tos[0]):
            return await self._record_returned(self.returns, envelope)
        queue_id = new_queue_id()
        now = self.clock()
        client_ip = str(session.peer[0]) if session.peer else None
        rcpts = tuple(envelope.rcpt_tos)
        spool_envelope = SpoolEnvelope(
            mail_from="" if envelope.mail_from == NULL_SENDER else str(envelope.mail_from),
            rcpts=rcpts, time_queued=now, client_ip=client_ip, client_helo=session.host_name,
            smtputf8=envelope.smtp_utf8, body_8bit="BODY=8BITMIME" in envelope.mail_options,
            **dsn_parameters(envelope))
        received = received_header(
            hostname=self.settings.hostname, queue_id=queue_id, client_ip=client_ip,
            client_helo=session.host_name, rcpts=rcpts, when=now,
            protocol=protocol_name(esmtp=session.extended_smtp, tls=session.ssl is not None,
                                   authenticated=bool(session.authenticated),
                                   smtputf8=envelope.smtp_utf8))
        content = received + (envelope.original_content or b"")
        try:
            await self.writer.store(
                queue_id, spool_envelope, content,
                None if self.sent is None else functools.partial(self._remember_sent, self.sent))
        except OSError as exc:
            self.faults.failed("queue file write", f"{queue_id}: {exc}")
            return "451 4.3.0 Error: queue file write error, try again later"
        self.faults.succeeded("queue file write")
        unwritten = self._record_received(queue_id, spool_envelope, session,
                                          len(envelope.original_content or b""))
        if unwritten:
            self.faults.failed("received record write",
                               f"queue {queue_id}: the received record of <{unwritten[0].rcpt}>"
                               " could not be written; the message is queued and goes on, and"
                               " the record is written again at its delivery attempts")
        elif self.faults.failing:
            self.faults.succeeded("received record write")
        self.queue.submit(QueuedMessage(queue_id, spool_envelope, content=content,
                                        received_unwritten=unwritten))
        _log.info("%s: from=<%s>, size=%d, nrcpt=%d, client=%s[%s]", queue_id,
                  spool_envelope.mail_from, len(content), len(rcpts), session.host_name,
                  client_ip, extra={"queue_id": queue_id, "sender": spool_envelope.mail_from,
                                    "size": len(content), "nrcpt": len(rcpts),
                                    "client_ip": client_ip})
        return f"250 2.0.0 Ok: queued as {queue_id}"

    async def _record_returned(self, returns: ReturnRecorder, envelope: Envelope) -> str:
        """Record (or quarantine) returned mail; 451 when the quarantine cannot keep it or a
        record could not be written (the sender tries again: a record may then be doubled,
        none lost)."""
        try:
            handled = await asyncio.get_running_loop().run_in_executor(
                self.executor, returns.handle, envelope.original_content or b"",
                tuple(envelope.rcpt_tos))
        except OSError as exc:
            self.faults.failed("quarantine write", str(exc))
            return "451 4.3.0 Error: quarantine write error, try again later"
        self.faults.succeeded("quarantine write")
        if handled.unwritten:
            return "451 4.3.0 Error: accounting write error, try again later"
        if handled.bounce is not None and handled.sent is not None:
            notice = passed_back(self.settings.dsn, handled.sent, handled.bounce,
                                 handled.rcpt_index, when=self.clock())
            if notice is not None:
                refusal = await self._queue_passed_back(handled.sent, *notice)
                if refusal is not None:
                    return refusal
        return f"250 2.0.0 Ok: {handled.what}, {handled.records} records"

    async def _queue_passed_back(self, sent: Sent, envelope: SpoolEnvelope,
                                 content: bytes) -> str | None:
        """Store the notification passing a downstream report on, and queue it; the 451 for
        the returning server (a fault, logged once per episode) when it could not be stored.
        None is stored for a sender on the suppression list (the skip is logged and the sender
        recorded, as the queue does for its own notifications; a 451 when that record could not
        be written)."""
        queue_id = new_queue_id()
        suppressed = self.queue.suppressed
        loop = asyncio.get_running_loop()
        if suppressed is not None:
            try:
                skipped = await loop.run_in_executor(
                    self.executor, suppressed.skips, queue_id, envelope.rcpts[0], self.settings)
            except MtaLoggingError as exc:
                self.faults.failed(SUPPRESSED_RECORD, str(exc))
                return UNRECORDED_REFUSAL
            if skipped:
                self.faults.succeeded(SUPPRESSED_RECORD)
                return None
        try:
            await loop.run_in_executor(self.executor, self.spool.store, queue_id, envelope,
                                       content)
        except OSError as exc:
            self.faults.failed("notification write", f"{queue_id}: {exc}")
            return "451 4.3.0 Error: queue file write error, try again later"
        self.faults.succeeded("notification write")
        _log.info("%s: downstream report passed back to the sender of %s: %s", queue_id,
                  sent.job_id, ", ".join(envelope.rcpts))
        self.queue.submit(QueuedMessage(queue_id, envelope, content=content))
        return None

    @staticmethod
    def _remember_sent(sent: SentIndex, queue_id: str, envelope: SpoolEnvelope,
                       content: bytes) -> None:
        """In the spool writer's thread, once the message is durable: put its Message-ID into
        the sent index (a failure is logged: the mail is spooled, and only a bounce without
        VERP token will not be traced)."""
        message_id = next((value for name, value in parse_headers(content).items()
                           if name.lower() == "message-id" and value), None)
        if message_id is None:
            return
        try:
            sent.add(message_id, Sent(
                queue_id, envelope.mail_from, envelope.rcpts,
                time_queued=envelope.time_queued, envid=envelope.mail_dsn.envid,
                notify=tuple(envelope.dsn_of(i).notify for i in range(len(envelope.rcpts))),
                orcpt=tuple(envelope.dsn_of(i).orcpt for i in range(len(envelope.rcpts)))))
        except sqlite3.Error as exc:
            _log.warning("%s: not put into the sent index %s: %s", queue_id, sent.path, exc)

    def _record_received(self, queue_id: str, envelope: SpoolEnvelope, session: Session,
                         size: int) -> list[Outcome]:
        """A received record per recipient: sender, size, the client and its connection; the
        Outcomes whose records could not be written (for the queue to write again).

        Each Outcome is made here as ``AccountingLogger.received`` would make it, and handed
        to the queue's ``record``: cheaper than the method's keywords (see the queue's
        ``_record``)."""
        queue = self.queue
        accounting = queue.accounting
        if accounting is None or not accounting.logger.isEnabledFor(Kind.RECEIVED.level):
            return []  # no accounting, or ``records`` without ``r``: no Outcome for nothing
        # aiosmtpd keeps the TLS transport's extra info; "cipher" is (name, protocol, bits)
        cipher = (session.ssl or {}).get("cipher") or (None, None)
        user = session.auth_data if isinstance(session.auth_data, str) else None
        settings = self.settings
        unwritten = []
        for index, rcpt in enumerate(envelope.rcpts):
            outcome = Outcome(
                Kind.RECEIVED, rcpt, envelope.time_queued, settings.hostname,
                vmta=settings.vmta, job_id=queue_id, orig=envelope.mail_from, size=size,
                rcv_ip=envelope.client_ip, rcv_helo=envelope.client_helo,
                rcv_auth_user=user, rcv_tls_protocol=cipher[1], rcv_tls_cipher=cipher[0],
                orcpt=envelope.dsn_of(index).orcpt, env_id=envelope.mail_dsn.envid,
                event_id=new_event_id(envelope.time_queued))  # (one id if written again)
            if not queue.record(outcome):
                unwritten.append(outcome)
        return unwritten


def _log_unexpected_failure(accepting: asyncio.Future[str]) -> None:
    """The failure of a message's storing whose client hung up (nobody else will see it)."""
    if not accepting.cancelled() and accepting.exception() is not None:
        _log.error("storing a message whose client hung up failed",
                   exc_info=accepting.exception())


def dsn_parameters(envelope: Envelope) -> dict[str, Any]:
    """The spool envelope's DSN fields (``mail_dsn``, ``rcpt_dsn``) from what the client gave
    (none from an envelope of plain aiosmtpd)."""
    if not isinstance(envelope, DsnEnvelope):
        return {}
    return {"mail_dsn": envelope.mail_dsn, "rcpt_dsn": tuple(envelope.rcpt_dsn)}


def tls_context(settings: RelaySettings) -> ssl.SSLContext | None:
    """The server-side context for STARTTLS, when a certificate is configured."""
    if settings.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls.cert, settings.tls.key)
    return context


def smtp_factory(settings: RelaySettings, handler: object,
                 context: ssl.SSLContext | None, limits: ConnectionLimits
                 ) -> Callable[[], SMTP]:
    """Builds one aiosmtpd protocol per client connection, within ``limits``;
    ``handler``: a :class:`RelayHandler`, or a wrapper of one."""
    passwords = PasswordChecker(settings.auth_users)

    def factory() -> SMTP:
        return RelaySMTP(
            handler, limits=limits, passwords=passwords, dsn=settings.dsn.enabled,
            data_size_limit=settings.max_message_size, enable_SMTPUTF8=True,
            decode_data=False, hostname=settings.hostname, ident="mta-logging relay",
            tls_context=context, timeout=settings.timeouts.inbound, auth_require_tls=True,
            loop=asyncio.get_running_loop(),
        )

    return factory
