"""Outbound delivery: one SMTP transaction per destination domain, a result per recipient.

Connections are opened with the configured EHLO name and source address, upgraded with
STARTTLS when the server offers it (opportunistic: certificates are not verified, and a failed
handshake falls back to plain text, as MTAs do), and kept open for a few seconds after a
transaction so the next message to the same address reuses them. The DSN parameters of the
message (RFC 3461: RET, ENVID, NOTIFY, ORCPT) go on to a server that offers DSN.

To a server that offers PIPELINING (RFC 2920) MAIL, every RCPT and DATA go in one write and
their replies are read together; the message follows a 354. Measured: fewer writes and reads
on the event loop (which spends most of its time in socket calls) and a round trip per command
less.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    LINE_ENDINGS_REGEX,
    MAX_RESPONSE_LENGTH,
    PERIOD_REGEX,
    SMTPProtocol,
)
from aiosmtplib.response import SMTPResponse

from mta_logging.outcome import Kind
from mta_logging.relay.addresses import CONTROL, RECIPIENT_STATUS, SENDER_STATUS
from mta_logging.relay.config import RelaySettings, Timeouts
from mta_logging.relay.faults import FaultLog
from mta_logging.relay.resolve import Hop, Resolver, Unroutable, next_hops
from mta_logging.relay.spool import Envelope
from mta_logging.reply import one_line, parse_reply

_log = logging.getLogger("mta_logging.relay.outbound")

_CONNECTION_ERRORS = (aiosmtplib.SMTPException, OSError, EOFError)
UNREACHABLE_KEPT = 10_000  # next hops whose unreachability is remembered (logged once each)
UNSENDABLE = "the {} address contains a control character; no SMTP client can send it"


@dataclass(frozen=True, slots=True)
class RcptResult:
    """What happened to one recipient (by its index in the envelope) in one attempt."""

    index: int
    kind: Kind
    dsn_status: str
    dsn_msg: str
    dest_ip: str | None = None
    src_ip: str | None = None
    dsn_mta: str | None = None  # the name in the server's greeting, else the host connected to
    tls_protocol: str | None = None  # the connection's TLS, None when plain
    tls_cipher: str | None = None
    next_hop_dsn: bool = False  # the server offered DSN, and took the DSN parameters


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply, or a local failure written like one."""

    kind: Kind
    dsn_status: str
    dsn_msg: str


def reply_of(code: int, message: str) -> Reply:
    """Kind, enhanced status and one-line text of a server reply (``250 2.0.0 Ok``)."""
    text = one_line(message)
    enhanced = parse_reply(f"{code} {text}").enhanced  # aiosmtplib hands the code over apart
    kind = Kind.DELIVERED if 200 <= code < 300 else (
        Kind.BOUNCE if 500 <= code < 600 else Kind.DEFERRED)
    if enhanced is not None:
        status = enhanced
    elif kind is Kind.DEFERRED and not 400 <= code < 500:
        status = "4.0.0"
    else:
        status = f"{code // 100}.0.0"
    return Reply(kind, status, f"{code} {text}".rstrip())


def transparent(message: bytes) -> bytes:
    """``message`` as it goes after the 354, as aiosmtplib's ``data`` sends it: every line end
    CRLF (a lone CR or LF made one), the last line ended, leading dots doubled (RFC 5321
    §4.5.2), then the final ``.`` line. aiosmtplib runs a regular expression over the message
    for each; here they run only when there is something for them to do (a relayed message
    came in over SMTP: CRLF line ends, seldom a leading dot), found by counting bytes."""
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = LINE_ENDINGS_REGEX.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b".") or b"\n." in message:
        message = PERIOD_REGEX.sub(b"..", message)
    return message + b".\r\n"


class _PipeliningProtocol(SMTPProtocol):
    """aiosmtplib's protocol, which also takes the replies to a group of commands sent in one
    write (RFC 2920): aiosmtplib's own completes a read with the first reply in its buffer and
    drops what arrives before the next read."""

    # while a group is under way: the replies read so far (None: no group)
    _group: list[SMTPResponse] | None = None
    # how many commands of the last group got their reply (what a failure cut short)
    answered = 0

    async def execute_group(self, commands: Sequence[bytes], timeout: float | None
                            ) -> list[SMTPResponse]:
        """Send ``commands`` (command lines without CRLF) in one write; their replies, in
        order, each within ``timeout`` of the one before (as one command at a time would
        wait). A server that says 421 and closes answers every command after with that 421
        (RFC 5321 §3.8). ValueError for a command with a control character (as aiosmtplib's
        own)."""
        for command in commands:
            if COMMAND_INJECTION_REGEX.search(command):
                raise ValueError("Command arg contains a prohibited control character")
        if self._command_lock is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        async with self._command_lock:
            group: list[SMTPResponse] = []
            self._group = group
            try:
                self._response_pending = True
                self.write(b"".join(command + b"\r\n" for command in commands))
                while self._take_replies(len(commands)) < len(commands):
                    try:
                        await self.read_response(timeout=timeout)
                    except aiosmtplib.SMTPServerDisconnected:
                        self._take_replies(len(commands))
                        if not group or group[-1].code != 421:
                            raise
                        group += [group[-1]] * (len(commands) - len(group))
            finally:
                self._group = None
                self.answered = len(group)
            return group

    def _take_replies(self, expected: int) -> int:
        """Move the complete replies in the buffer to the group, up to ``expected``; how many
        the group has. SMTPResponseException for a reply too long (as aiosmtplib's own)."""
        group = self._group
        assert group is not None
        while len(group) < expected:
            response = self._read_response_from_buffer()
            if response is None:
                if len(self._buffer) > MAX_RESPONSE_LENGTH:
                    del self._buffer[:]
                    raise aiosmtplib.SMTPResponseException(
                        aiosmtplib.SMTPStatus.invalid_response.value, "Response too long")
                break
            group.append(response)
        return len(group)

    async def send_content(self, message: bytes, timeout: float | None) -> SMTPResponse:
        """The message after the server's 354 (line ends made CRLF, leading dots doubled, the
        final dot), and the server's reply to it; aiosmtplib's ``data`` sends DATA first."""
        if self._command_lock is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        async with self._command_lock:
            self._response_pending = True
            self.write(transparent(message))
            return await self.read_response(timeout=timeout)

    def data_received(self, data: bytes) -> None:
        group = self._group
        if group is None:
            super().data_received(data)
            return
        self._buffer.extend(data)
        waiter = self._response_waiter
        if waiter is None or waiter.done():  # taken by execute_group when it next looks
            return
        before = len(group)
        try:
            self._take_replies(before + 1)
        except aiosmtplib.SMTPResponseException as exc:
            self._set_response_exception(waiter, exc)
            return
        if len(group) > before:  # a reply more: execute_group's wait for the next begins
            waiter.set_result(group[-1])


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, with the pipelined commands of :class:`_PipeliningProtocol`."""

    async def _create_connection(self, timeout: float | None) -> SMTPResponse:
        response = await super()._create_connection(timeout)
        # aiosmtplib has no hook for its protocol's class: the one it made (greeting read,
        # nothing pending) becomes the subclass, whose methods and class defaults leave
        # aiosmtplib's state as it is, and is handed to the transport again (uvloop keeps the
        # methods it was given)
        assert self.protocol is not None and self.transport is not None
        self.protocol.__class__ = _PipeliningProtocol
        self.transport.set_protocol(self.protocol)
        return response

    def _pipelining(self) -> _PipeliningProtocol:
        if not isinstance(self.protocol, _PipeliningProtocol):
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        return self.protocol

    async def execute_group(self, commands: Sequence[bytes], timeout: float | None
                            ) -> list[SMTPResponse]:
        """See :meth:`_PipeliningProtocol.execute_group`; a lost or timed-out connection is
        closed, as aiosmtplib's ``execute_command`` does; :attr:`answered` then says how many
        of ``commands`` got their reply before."""
        protocol = self._pipelining()
        try:
            return await protocol.execute_group(commands, timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()
            raise
        finally:
            self.answered = protocol.answered

    # how many commands of the last execute_group got their reply
    answered = 0

    async def send_content(self, message: bytes, timeout: float | None) -> SMTPResponse:
        """See :meth:`_PipeliningProtocol.send_content`; closed on a lost connection."""
        try:
            return await self._pipelining().send_content(message, timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()
            raise


class _Connection:
    __slots__ = ("smtp", "hop", "local_ip", "remote_name", "tls_protocol", "tls_cipher", "uses",
                 "expiry")

    def __init__(self, smtp: _Client, hop: Hop, greeting: str) -> None:
        self.smtp = smtp
        self.hop = hop
        sockname = smtp.get_transport_info("sockname")
        self.local_ip: str | None = str(sockname[0]) if sockname else None
        self.remote_name = greeting.split(None, 1)[0] if greeting.strip() else hop.host
        tls = smtp.get_transport_info("ssl_object")
        cipher = tls.cipher() if isinstance(tls, ssl.SSLObject | ssl.SSLSocket) else None
        self.tls_protocol: str | None = cipher[1] if cipher else None
        self.tls_cipher: str | None = cipher[0] if cipher else None
        self.uses = 0
        self.expiry: asyncio.TimerHandle | None = None

    @property
    def label(self) -> str:
        return f"{self.hop.host}[{self.hop.ip}]:{self.hop.port}"


class _StaleConnection(Exception):
    """A reused connection turned out to be closed before the transaction began."""


class ConnectionPool:
    """Idle connections per (ip, port), closed after ``idle_timeout`` or ``max_messages``."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def take_idle(self, hop: Hop) -> _Connection | None:
        idle = self._idle.get((hop.ip, hop.port))
        while idle:
            conn = idle.pop()
            if conn.expiry is not None:
                conn.expiry.cancel()
            if conn.smtp.is_connected:
                return conn
        return None

    async def connect(self, hop: Hop) -> _Connection:
        """A new connection to ``hop``, greeted, EHLO'd and (if offered) under TLS."""
        try:
            return await self._connect(hop, opportunistic=self.settings.starttls != "off")
        except (ssl.SSLError, aiosmtplib.SMTPResponseException, aiosmtplib.SMTPNotSupported,
                aiosmtplib.SMTPServerDisconnected) as exc:
            if self.settings.starttls == "off" or isinstance(exc, aiosmtplib.SMTPConnectError):
                raise
            _log.info("STARTTLS with %s:%s failed (%s); retrying without TLS",
                      hop.ip, hop.port, exc)
            return await self._connect(hop, opportunistic=False)

    async def _connect(self, hop: Hop, *, opportunistic: bool) -> _Connection:
        settings = self.settings
        smtp = _Client(
            hostname=hop.ip, port=hop.port, local_hostname=settings.hostname,
            source_address=(settings.source_ip, 0) if settings.source_ip else None,
            timeout=settings.timeouts.command, start_tls=None if opportunistic else False,
            validate_certs=False,
        )
        greeting = await smtp.connect(timeout=settings.timeouts.connect)
        if smtp.is_ehlo_or_helo_needed:
            try:
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                await smtp.helo()
        return _Connection(smtp, hop, greeting.message)

    def release(self, conn: _Connection, *, reusable: bool) -> None:
        reuse = self.settings.connection_reuse
        if (reusable and conn.smtp.is_connected and conn.uses < reuse.max_messages
                and reuse.idle_timeout > 0):
            self._idle.setdefault((conn.hop.ip, conn.hop.port), []).append(conn)
            conn.expiry = asyncio.get_running_loop().call_later(
                reuse.idle_timeout, self._expire, conn)
        else:
            self._quit(conn)

    def _expire(self, conn: _Connection) -> None:
        idle = self._idle.get((conn.hop.ip, conn.hop.port))
        if idle and conn in idle:
            idle.remove(conn)
        self._quit(conn)

    def _quit(self, conn: _Connection) -> None:
        if not conn.smtp.is_connected:
            return
        task = asyncio.get_running_loop().create_task(self._polite_close(conn.smtp))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _polite_close(smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.quit(timeout=5)
        except _CONNECTION_ERRORS as exc:
            _log.debug("QUIT failed: %s", exc)
            smtp.close()

    async def close(self) -> None:
        """Close every idle connection (QUIT) and wait for the closing to finish."""
        for idle in self._idle.values():
            for conn in idle:
                if conn.expiry is not None:
                    conn.expiry.cancel()
                self._quit(conn)
        self._idle.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class Deliverer:
    """Delivers one message to the recipients of one domain and reports per recipient."""

    def __init__(self, settings: RelaySettings, resolver: Resolver) -> None:
        self.settings = settings
        self.resolver = resolver
        self.pool = ConnectionPool(settings)
        # a next hop that cannot be reached: logged once until a connection to it succeeds
        self.unreachable = FaultLog(_log, level=logging.WARNING, limit=UNREACHABLE_KEPT)

    async def deliver(self, domain: str, envelope: Envelope, indexes: Sequence[int],
                      content: bytes) -> list[RcptResult]:
        """Results for ``indexes``; never raises for a remote or local failure (deferred)."""
        try:
            return await self._deliver(domain, envelope, indexes, content)
        except Exception as exc:
            _log.exception("delivery to %s failed unexpectedly", domain)
            text = f"local error while delivering to {domain}: {type(exc).__name__}: {exc}"
            return [RcptResult(i, Kind.DEFERRED, "4.3.0", text) for i in indexes]

    async def _deliver(self, domain: str, envelope: Envelope, indexes: Sequence[int],
                       content: bytes) -> list[RcptResult]:
        hops = await next_hops(domain, self.settings.route_for(domain), self.resolver)
        if isinstance(hops, Unroutable):
            kind = Kind.BOUNCE if hops.permanent else Kind.DEFERRED
            return [RcptResult(i, kind, hops.dsn_status, hops.dsn_msg) for i in indexes]
        return await self.deliver_via(hops, envelope, indexes, content)

    async def deliver_via(self, hops: Sequence[Hop], envelope: Envelope, indexes: Sequence[int],
                          content: bytes) -> list[RcptResult]:
        """Try ``hops`` in order until one accepts a connection; one transaction there."""
        failure = Reply(Kind.DEFERRED, "4.4.1", "no address to deliver to")
        for hop in hops:
            conn = self.pool.take_idle(hop)
            if conn is not None:
                try:
                    return await self._transaction(conn, envelope, indexes, content, reused=True)
                except _StaleConnection:
                    _log.debug("idle connection to %s was closed; reconnecting", conn.label)
            try:
                conn = await self.pool.connect(hop)
            except _CONNECTION_ERRORS as exc:
                failure = _connect_failure(hop, exc)
                self.unreachable.failed(f"connecting to {hop.host}[{hop.ip}]:{hop.port}",
                                        failure.dsn_msg)
                continue
            if self.unreachable.failing:
                self.unreachable.succeeded(f"connecting to {hop.host}[{hop.ip}]:{hop.port}")
            return await self._transaction(conn, envelope, indexes, content, reused=False)
        return [RcptResult(i, failure.kind, failure.dsn_status, failure.dsn_msg)
                for i in indexes]

    async def _transaction(self, conn: _Connection, envelope: Envelope, indexes: Sequence[int],
                           content: bytes, *, reused: bool) -> list[RcptResult]:
        """MAIL, RCPT per recipient, DATA (pipelined when the server offers it); the
        connection goes back to the pool after."""
        conn.uses += 1
        smtp = conn.smtp
        timeouts = self.settings.timeouts
        results: dict[int, Reply] = {}
        stage = "sending MAIL FROM"
        reusable = False
        try:
            options, encoding, refusal = _mail_options(smtp, envelope, len(content), conn.label)
            if CONTROL.search(envelope.mail_from):  # queued before such senders were refused
                refusal = Reply(Kind.BOUNCE, SENDER_STATUS, UNSENDABLE.format("sender"))
            if refusal is not None:
                results = dict.fromkeys(indexes, refusal)
                reusable = True
                return self._finish(conn, indexes, results)
            # command lines made here rather than by mail()/rcpt(): those re-parse every
            # address with email.utils, the largest cost of a transaction; ours are addr-specs.
            mail = b" ".join([b"MAIL FROM:<" + envelope.mail_from.encode(encoding) + b">",
                              *options])
            sendable = []
            rcpt_commands = []
            for index in indexes:
                if CONTROL.search(envelope.rcpts[index]):  # the others of the domain still go
                    results[index] = Reply(Kind.BOUNCE, RECIPIENT_STATUS,
                                           UNSENDABLE.format("recipient"))
                    continue
                sendable.append(index)
                rcpt_options = [option.encode("ascii") for option in (
                    envelope.dsn_of(index).options() if smtp.supports_extension("dsn") else ())]
                rcpt_commands.append(b" ".join(
                    [b"RCPT TO:<" + envelope.rcpts[index].encode(encoding) + b">",
                     *rcpt_options]))
            data_reply: SMTPResponse | None = None  # None: DATA not sent yet
            if smtp.supports_extension("pipelining"):
                stage = _PIPELINED
                *replies, data_reply = await smtp.execute_group(
                    [mail, *rcpt_commands, b"DATA"], timeouts.command)
                stage = "sending MAIL FROM"
                mail_reply, *rcpt_replies = replies
            else:
                mail_reply = await smtp.execute_command(mail, timeout=timeouts.command)
                rcpt_replies = []
                if mail_reply.code == 250:
                    stage = "sending RCPT TO"
                    for command in rcpt_commands:
                        rcpt_replies.append(
                            await smtp.execute_command(command, timeout=timeouts.command))
            if mail_reply.code != 250:
                if reused and mail_reply.code == 421:  # the server timed the idle connection out
                    raise _StaleConnection(mail_reply.message)
                results = dict.fromkeys(indexes, reply_of(mail_reply.code, mail_reply.message))
                reusable = await _end_transaction(smtp, data_reply, timeouts)
                return self._finish(conn, indexes, results)
            accepted = []
            for index, response in zip(sendable, rcpt_replies, strict=True):
                if response.code in (250, 251):
                    accepted.append(index)
                else:
                    results[index] = reply_of(response.code, response.message)
            if not accepted:
                reusable = await _end_transaction(smtp, data_reply, timeouts)
                return self._finish(conn, indexes, results)
            stage = "sending the message"
            if data_reply is None:
                try:
                    response = await smtp.data(content, timeout=timeouts.data)
                except aiosmtplib.SMTPResponseException as exc:
                    response = SMTPResponse(exc.code, exc.message)
            elif data_reply.code == 354:
                response = await smtp.send_content(content, timeouts.data)
            else:
                response = data_reply
            reply = reply_of(response.code, response.message)
            reusable = True if response.code == 250 else await _rset(smtp, timeouts.command)
            results.update(dict.fromkeys(accepted, reply))
            return self._finish(conn, indexes, results)
        except asyncio.CancelledError:
            smtp.close()  # cut off mid-transaction (shutdown): no QUIT to wait for
            raise
        except _CONNECTION_ERRORS as exc:
            if stage == _PIPELINED:  # named by the first command whose reply did not come
                stage = _awaited(smtp.answered, len(rcpt_commands))
            if reused and stage == "sending MAIL FROM":
                raise _StaleConnection(str(exc)) from exc
            lost = _lost(conn, stage, exc)
            for index in indexes:
                results.setdefault(index, lost)
            return self._finish(conn, indexes, results)
        finally:
            self.pool.release(conn, reusable=reusable)

    @staticmethod
    def _finish(conn: _Connection, indexes: Sequence[int], results: dict[int, Reply]
                ) -> list[RcptResult]:
        next_hop_dsn = conn.smtp.supports_extension("dsn")
        return [RcptResult(i, results[i].kind, results[i].dsn_status, results[i].dsn_msg,
                           dest_ip=conn.hop.ip, src_ip=conn.local_ip, dsn_mta=conn.remote_name,
                           tls_protocol=conn.tls_protocol, tls_cipher=conn.tls_cipher,
                           next_hop_dsn=next_hop_dsn)
                for i in indexes]

    async def close(self) -> None:
        await self.pool.close()


def _mail_options(smtp: aiosmtplib.SMTP, envelope: Envelope, size: int, label: str
                  ) -> tuple[list[bytes], str, Reply | None]:
    """MAIL FROM parameters and address encoding, or a refusal when SMTPUTF8 is missing."""
    options: list[str] = []
    needs_utf8 = envelope.smtputf8 and not (
        envelope.mail_from.isascii() and all(r.isascii() for r in envelope.rcpts))
    if envelope.smtputf8 and smtp.supports_extension("smtputf8"):
        options.append("SMTPUTF8")
    elif needs_utf8:
        return [], "ascii", Reply(Kind.BOUNCE, "5.6.7",
                                  f"SMTPUTF8 is required, but was not offered by host {label}")
    if envelope.body_8bit and smtp.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if smtp.supports_extension("size"):
        options.append(f"SIZE={size}")
    if smtp.supports_extension("dsn"):
        options += envelope.mail_dsn.options()
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    return [option.encode("ascii") for option in options], encoding, None


async def _end_transaction(smtp: _Client, data_reply: SMTPResponse | None,
                           timeouts: Timeouts) -> bool:
    """End a transaction that delivers nothing: a DATA that the server took anyway (354,
    pipelined after refused commands) gets an empty message, then RSET; False if the
    connection is no good any more."""
    if data_reply is not None and data_reply.code == 354:
        try:
            await smtp.send_content(b"", timeouts.data)
        except _CONNECTION_ERRORS:
            return False
    return await _rset(smtp, timeouts.command)


async def _rset(smtp: aiosmtplib.SMTP, timeout: float) -> bool:
    """RSET after a failed transaction; False if the connection is no good any more."""
    try:
        await smtp.rset(timeout=timeout)
    except _CONNECTION_ERRORS:
        return False
    return True


def _connect_failure(hop: Hop, exc: BaseException) -> Reply:
    label = f"{hop.host}[{hop.ip}]:{hop.port}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = reply_of(exc.code, exc.message)
        return Reply(Kind.DEFERRED, reply.dsn_status if reply.kind is Kind.DEFERRED else "4.4.1",
                     f"host {label} refused to talk to me: {reply.dsn_msg}")
    if isinstance(exc, TimeoutError):
        return Reply(Kind.DEFERRED, "4.4.2", f"connect to {label}: timed out")
    reason = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    if isinstance(reason, OSError) and reason.errno:
        text = os.strerror(reason.errno)
    else:
        text = str(reason) or type(reason).__name__
    return Reply(Kind.DEFERRED, "4.4.1", f"connect to {label}: {text}")


_PIPELINED = "sending the pipelined commands"


def _awaited(answered: int, rcpts: int) -> str:
    """The stage of a pipelined MAIL, ``rcpts`` RCPTs and DATA cut short after ``answered``
    replies, named by the command whose reply was awaited as one command at a time names it."""
    if answered == 0:
        return "sending MAIL FROM"
    return "sending RCPT TO" if answered <= rcpts else "sending DATA"


def _lost(conn: _Connection, stage: str, exc: BaseException) -> Reply:
    if isinstance(exc, TimeoutError):
        return Reply(Kind.DEFERRED, "4.4.2", f"conversation with {conn.label} timed out "
                                             f"while {stage}")
    return Reply(Kind.DEFERRED, "4.4.2", f"lost connection with {conn.label} while {stage}")
