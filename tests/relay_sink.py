"""Test servers and fakes for the relay tests: an SMTP sink, a server that never answers,
a fake DNS resolver.

The sink runs aiosmtpd on 127.0.0.1 (an ephemeral port) in its own thread and event loop, so
tests can drive it from plain synchronous code. What it does with a recipient depends on the
recipient's local part:

    tempfail*   RCPT → 451 4.2.0          reject*    RCPT → 550 5.1.1
    datadefer*  DATA → 451 4.3.0          datafail*  DATA → 554 5.6.0
    drop*       the connection is dropped after the message data, before the reply
    slow*       DATA reply delayed by ``slow_seconds`` (a destination that hangs)
    anything else: accepted (250 2.0.0)

``tempfail_all = True`` makes it answer 451 to every RCPT, and ``defer`` (a set of addresses)
to those recipients (a destination that is down for a while); change them to let queued mail
through. An accepted message gets ``250 2.0.0 Ok: delivered to <n> recipient(s)``.
``dsn=True`` makes it offer the DSN extension (with the relay's own protocol) and keep the DSN
parameters of each message. It offers PIPELINING (RFC 2920) unless ``pipelining=False``;
``reads`` counts the reads of its sockets that brought the clients' bytes (pipelined
commands arrive together).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from mta_logging import Outcome
from mta_logging.relay.dsn_params import MailDsn, RcptDsn
from mta_logging.relay.resolve import NoSuchDomain
from mta_logging.relay.smtpd import DsnEnvelope, RelaySMTP


@dataclass(frozen=True)
class SinkMessage:
    mail_from: str
    rcpts: tuple[str, ...]
    content: bytes
    helo: str | None
    tls: bool
    mail_options: tuple[str, ...]
    cipher: tuple[str, str, int] | None = None  # (name, protocol, bits) under TLS
    mail_dsn: MailDsn | None = None  # the DSN parameters, from a sink with dsn=True
    rcpt_dsn: tuple[RcptDsn, ...] = ()


class _SinkHandler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        local = address.partition("@")[0].lower()
        if self.sink.tempfail_all or local.startswith("tempfail") or address in self.sink.defer:
            return f"451 4.2.0 <{address}>: Mailbox busy, try again later"
        if local.startswith("reject"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        locals_ = [r.partition("@")[0].lower() for r in envelope.rcpt_tos]
        if any(local.startswith("drop") for local in locals_):
            assert server.transport is not None
            server.transport.abort()
            return "421 4.4.2 dropped"
        if any(local.startswith("slow") for local in locals_):
            await asyncio.sleep(self.sink.slow_seconds)
        if any(local.startswith("datadefer") for local in locals_):
            return "451 4.3.0 Error: queue file write error"
        if any(local.startswith("datafail") for local in locals_):
            return "554 5.6.0 Error: message content rejected"
        self.sink.add(SinkMessage(
            mail_from=str(envelope.mail_from), rcpts=tuple(envelope.rcpt_tos),
            content=envelope.original_content or b"", helo=session.host_name,
            tls=session.ssl is not None, mail_options=tuple(envelope.mail_options),
            cipher=(session.ssl or {}).get("cipher"),
            mail_dsn=envelope.mail_dsn if isinstance(envelope, DsnEnvelope) else None,
            rcpt_dsn=tuple(envelope.rcpt_dsn) if isinstance(envelope, DsnEnvelope) else ()))
        return f"250 2.0.0 Ok: delivered to {len(envelope.rcpt_tos)} recipient(s)"


def _sink_protocol(base: type[SMTP]) -> type[SMTP]:
    """``base`` whose EHLO also offers PIPELINING (aiosmtpd takes pipelined commands in turn
    from its buffer), counting the reads that bring the client's bytes."""

    class SinkSMTP(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, sink: Sink, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sink = sink
            if sink.pipelining and self._ehlo_hook_ver is None:
                self._ehlo_hook_ver = "new"

        def data_received(self, data: bytes) -> None:
            self.sink.reads += 1
            super().data_received(data)

        async def _call_handler_hook(self, command: str, *args: Any) -> Any:
            result = await super()._call_handler_hook(command, *args)
            if command != "EHLO" or not self.sink.pipelining:
                return result
            hostname, responses = args
            if result is MISSING:  # no hook below: what aiosmtpd does without one
                self.session.host_name = hostname
                result = responses
            return [*result[:-1], "250-PIPELINING", result[-1]]

    return SinkSMTP


_PlainSink = _sink_protocol(SMTP)
_DsnSink = _sink_protocol(RelaySMTP)


class _LoopThread:
    """An event loop in a daemon thread, for servers the synchronous tests start and stop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_tasks() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Sink:
    """An SMTP sink on 127.0.0.1; ``with Sink() as sink: ... sink.port``."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None,
                 slow_seconds: float = 30.0, smtputf8: bool = True, dsn: bool = False,
                 pipelining: bool = True) -> None:
        self.tls_context = tls_context
        self.dsn = dsn
        self.pipelining = pipelining
        self.reads = 0
        self.slow_seconds = slow_seconds
        self.smtputf8 = smtputf8
        self.tempfail_all = False
        self.defer: set[str] = set()
        self.connections = 0
        self._protocols: list[SMTP] = []
        self.messages: list[SinkMessage] = []
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    def add(self, message: SinkMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def start(self) -> Sink:
        self._runner = _LoopThread()
        handler = _SinkHandler(self)
        loop = self._runner.loop

        def factory() -> SMTP:
            self.connections += 1
            options = {"hostname": "sink.test", "enable_SMTPUTF8": self.smtputf8,
                       "tls_context": self.tls_context, "loop": loop}
            protocol = (_DsnSink(handler, sink=self, dsn=True, **options) if self.dsn
                        else _PlainSink(handler, sink=self, **options))
            self._protocols.append(protocol)
            return protocol

        async def open_server() -> asyncio.base_events.Server:
            return await loop.create_server(factory, "127.0.0.1", 0)

        self._server = self._runner.run(open_server())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close the listener and every client connection, then the loop."""
        if self._runner is None:
            return

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for protocol in self._protocols:
                if protocol.transport is not None:
                    protocol.transport.close()
            await asyncio.sleep(0.05)  # let the sessions see the close and end

        self._runner.run(close())
        self._runner.close()
        self._runner = None

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def delivered(self) -> list[str]:
        """Every recipient of every accepted message, in order."""
        with self._lock:
            return [rcpt for message in self.messages for rcpt in message.rcpts]

    def wait_for_recipients(self, count: int, timeout: float = 20.0) -> list[str]:
        """Wait until ``count`` recipients have been accepted (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while len(self.delivered()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.delivered()


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never says a word (a hung destination)."""

    def __init__(self) -> None:
        self._runner: _LoopThread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    def __enter__(self) -> SilentServer:
        self._runner = _LoopThread()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)
            with contextlib.suppress(ConnectionError):
                await reader.read()

        async def open_server() -> asyncio.base_events.Server:
            return await asyncio.start_server(hold, "127.0.0.1", 0)

        self._server = self._runner.run(open_server())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None and self._server is not None
        runner = self._runner

        async def close() -> None:
            for writer in self._writers:
                writer.close()
            assert self._server is not None
            self._server.close()

        runner.run(close())
        runner.close()



def make_certificate(directory: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate and key for 127.0.0.1 (None when openssl is not installed)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class FakeResolver:
    """MX and address records from dicts; a value that is an exception class is raised."""

    def __init__(self, mx: dict[str, object], addresses: dict[str, object]) -> None:
        self.mx_records = mx
        self.address_records = addresses
        self.asked: list[str] = []

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        self.asked.append(f"MX {domain}")
        return self._answer(self.mx_records, domain)  # type: ignore[return-value]

    async def addresses(self, host: str) -> list[str]:
        self.asked.append(f"A {host}")
        return self._answer(self.address_records, host)  # type: ignore[return-value]

    @staticmethod
    def _answer(records: dict[str, object], name: str) -> object:
        answer = records.get(name, NoSuchDomain)
        if isinstance(answer, type) and issubclass(answer, Exception):
            raise answer(name)
        return answer


class Outcomes(logging.Handler):
    """Keeps the outcome of every accounting record it handles, for assertions."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[Outcome] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.outcomes.append(record.outcome)  # type: ignore[attr-defined]


def full_disk_once(monkeypatch: Any, needle: bytes, times: int = 1) -> list[bytes]:
    """The first ``os.write`` (the first ``times``) whose bytes hold ``needle`` (an accounting
    record's line) fails as on a full disk (ENOSPC); the writes that failed."""
    real_write = os.write
    failed: list[bytes] = []

    def full(fd: int, data: bytes) -> int:
        if needle in data and len(failed) < times:
            failed.append(bytes(data))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    return failed
