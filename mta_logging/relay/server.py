"""The relay process: spool, queue, inbound server and outbound delivery, started and stopped.

Start: the spool's lock is taken (one relay per spool; a ``queue`` command working on the
spool is waited for), the mail of worker spools left by a relay with ``workers`` > 1 is moved
in (a relay of one process only), the spool is loaded (mail left by a stopped or crashed relay
is queued again, due messages first, held ones kept aside), delivery workers start, the
control socket (``mta-logging queue``) and then the SMTP listener open. Stop (SIGTERM/SIGINT):
the listener closes, clients still talking are told 421 at their next MAIL, messages being
spooled and deliveries in progress get ``shutdown_timeout`` seconds to finish (a message
still being spooled then is left to its writer thread, not queued), open client connections
close; everything not delivered stays in the spool.

Reload (SIGHUP): the settings are read again and, if valid, used from then on without dropping
a connection or a queued message: routes, relay networks, AUTH users, limits, TLS certificate
and key, timeouts, retries, log level, accounting settings and the suppression list's expiry
times. New connections get the new TLS, AUTH and connection limits; a connection already open
keeps what it started with (and counts against the limits it was admitted under). Settings
that need a restart (:func:`restart_settings`) or a bad new config are refused with a log
line; the old ones stay.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiosmtpd.smtp import SMTP

from mta_logging.errors import ConfigError, MtaLoggingError
from mta_logging.logger import AccountingLogger
from mta_logging.relay.config import RelaySettings
from mta_logging.relay.control import ControlServer, LiveQueue
from mta_logging.relay.faults import FaultLog
from mta_logging.relay.inbound import RelayHandler, smtp_factory, tls_context
from mta_logging.relay.limits import ConnectionLimits, ExceptionHandler, quiet_accept_errors
from mta_logging.relay.metrics import (
    MeteredHandler,
    MetricsServer,
    RecordCounter,
    RelayMetrics,
    StateCollector,
    readiness_problems,
)
from mta_logging.relay.outbound import Deliverer
from mta_logging.relay.queue import DeliveryQueue
from mta_logging.relay.resolve import DnsResolver, Resolver
from mta_logging.relay.spool import (
    SpoolLock,
    move_spools,
    open_spool_dir,
    worker_dir,
    worker_dirs,
)
from mta_logging.relay.storage import FreeSpace
from mta_logging.relay.suppression import RelaySuppression

_log = logging.getLogger("mta_logging.relay")

SPOOL_THREADS = 16
LOCK_WAIT = 10.0  # seconds a start waits for a queue command to let go of the spool


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """How to make the relay's event loop for the ``event_loop`` setting: uvloop's for
    ``uvloop`` (ConfigError when it is not installed), asyncio's own for ``asyncio``."""
    if name != "uvloop":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        raise ConfigError("event_loop", name, "uvloop is not installed") from None
    return uvloop.new_event_loop


def restart_settings(settings: RelaySettings) -> dict[str, object]:
    """The settings a reload cannot change (listeners, spool, workers, accounting on or off,
    the suppression list on or off and its file, the event loop), by config key, spelt as in the
    config file."""
    metrics = settings.metrics
    return {"listen": f"{settings.listen_host}:{settings.listen_port}",
            "listen_backlog": settings.listen_backlog, "spool_dir": str(settings.spool_dir),
            "concurrency": settings.concurrency,
            "metrics": None if metrics is None else f"{metrics[0]}:{metrics[1]}",
            "accounting": settings.accounting_enabled, "event_loop": settings.event_loop,
            "suppression": _suppression_file(settings), "workers": settings.workers}


def _suppression_file(settings: RelaySettings) -> str | None:
    """The suppression list's file; None when the list is off."""
    suppression = settings.suppression
    return str(suppression.file(settings.spool_dir)) if suppression.enabled else None


class Relay:
    """One relay instance on the running event loop: ``await start()``, later ``await stop()``."""

    def __init__(self, settings: RelaySettings, *, accounting: AccountingLogger | None,
                 resolver: Resolver | None = None, accounting_dirs: Iterable[Path] = (),
                 worker: int | None = None, listen_socket: socket.socket | None = None
                 ) -> None:
        """``accounting_dirs``: where the accounting files are written; with ``spool_dir``,
        the directories whose free space ``min_free_space`` is about. ``worker``: the relay is
        that worker of a supervisor (see ``workers``): its spool is ``spool_dir/worker-<K>/``
        and it serves ``listen_socket``, bound by the supervisor. Without it the relay binds
        ``listen`` itself and, on start, first moves into ``spool_dir`` the mail of worker
        spools left by a relay run with ``workers`` > 1."""
        self.settings = settings
        spool_root = settings.spool_dir if worker is None else worker_dir(settings.spool_dir,
                                                                          worker)
        self.spool = open_spool_dir(spool_root)
        self.worker = worker
        self.listen_socket = listen_socket
        # Spool writes wait on fsync; many in parallel let the file system commit them together.
        self.executor = ThreadPoolExecutor(SPOOL_THREADS, thread_name_prefix="relay-spool")
        self.deliverer = Deliverer(settings, resolver or DnsResolver())
        self.queue = DeliveryQueue(settings, self.spool, self.deliverer, accounting,
                                   executor=self.executor)
        self.free_space = FreeSpace((self.spool.root, *accounting_dirs),
                                    settings.min_free_space, FaultLog(_log))
        self.suppression = None if not settings.suppression.enabled else RelaySuppression(
            settings.suppression.file(settings.spool_dir), settings, accounting)
        self.handler = RelayHandler(settings, self.spool, self.queue, executor=self.executor,
                                    free_space=self.free_space, suppression=self.suppression)
        self.lock = SpoolLock(self.spool)
        self.accounting = accounting
        self.directories = (self.spool.root, *accounting_dirs)
        self.limits = ConnectionLimits(settings.max_connections,
                                       settings.max_connections_per_ip, settings.hostname)
        self.metrics = RelayMetrics()
        self.metrics.registry.register(StateCollector(self.queue, self.limits,
                                                      self.directories))
        self._record_counter = RecordCounter(self.metrics)
        self.metrics_server = MetricsServer(self.metrics, self._readiness)
        self.control = ControlServer(
            LiveQueue(settings, self.spool, self.queue, self.executor), self.spool.control_path)
        self._server: asyncio.base_events.Server | None = None
        self._previous_handler: ExceptionHandler | None = None
        self._clients: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._make_smtp = smtp_factory(settings, MeteredHandler(self.handler, self.metrics),
                                       tls_context(settings), self.limits)
        self.address: tuple[str, int] = (settings.listen_host, settings.listen_port)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(quiet_accept_errors(self._previous_handler))
        await self._lock_spool()
        if self.worker is None:
            try:
                await loop.run_in_executor(None, lambda: move_spools(
                    worker_dirs(self.settings.spool_dir), self.spool))
            except (MtaLoggingError, OSError) as exc:
                self.lock.release()
                loop.set_exception_handler(self._previous_handler)
                raise MtaLoggingError(f"{exc}; the spool was not loaded") from None
        messages = await loop.run_in_executor(None, self.spool.load)
        if self.suppression is not None:  # before any delivery records a bounce
            await loop.run_in_executor(None, self.suppression.open)
            self.suppression.attach()
        self.queue.start()
        now = time.time()
        for message in messages:
            if message.held:
                self.queue.hold(message)
            elif message.next_try <= now:
                self.queue.submit(message)
            else:
                self.queue.schedule(message)
        if messages:
            _log.info("%d message(s) found in the spool, queued again", len(messages))
        try:
            await self.control.start()
        except MtaLoggingError as exc:  # e.g. a spool path too long for a socket's name
            _log.error("%s; the relay runs without it: mta-logging queue cannot reach it", exc)
        # records are counted for the metrics listener only (a handler call per record), after
        # the file handlers (it sees their failures); a change of ``metrics`` needs a restart
        if self.accounting is not None and self.settings.metrics is not None:
            self.accounting.logger.addHandler(self._record_counter)
        if self.settings.metrics is not None:
            try:
                await self.metrics_server.start(*self.settings.metrics)
            except OSError as exc:
                await self._abandon_start()
                host, port = self.settings.metrics
                raise MtaLoggingError(f"metrics: cannot listen on {host}:{port}: "
                                      f"{exc.strerror or exc}") from None

        def factory() -> SMTP:
            protocol = self._make_smtp()
            self._clients.add(protocol)
            return protocol

        host, port = self.settings.listen_host, self.settings.listen_port
        try:
            if self.listen_socket is not None:
                self._server = await loop.create_server(factory, sock=self.listen_socket,
                                                        backlog=self.settings.listen_backlog)
            else:
                self._server = await loop.create_server(factory, host, port,
                                                        backlog=self.settings.listen_backlog)
        except OSError as exc:
            await self.metrics_server.stop()
            await self.control.stop()
            await self._abandon_start()
            raise MtaLoggingError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                                  ) from None
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))

    async def _lock_spool(self) -> None:
        deadline = time.monotonic() + LOCK_WAIT
        while not self.lock.acquire():
            if time.monotonic() >= deadline:
                asyncio.get_running_loop().set_exception_handler(self._previous_handler)
                raise self.lock.in_use()
            await asyncio.sleep(0.1)

    def check_reload(self, settings: RelaySettings) -> ssl.SSLContext | None:
        """The new TLS context if :meth:`reconfigure` can use ``settings``; ConfigError if a
        restart key changed or the TLS files cannot be loaded."""
        current = restart_settings(self.settings)
        for key, new in restart_settings(settings).items():
            old = current[key]
            if old != new:
                raise ConfigError(key, new, f"cannot change while the relay runs (it is "
                                            f"{old!r}); restart the relay")
        try:
            return tls_context(settings)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("tls", str(settings.tls),
                              f"the certificate and key must load ({exc})") from None

    def reconfigure(self, settings: RelaySettings) -> None:
        """Use ``settings`` from now on (see the module docstring); refused as by
        :meth:`check_reload`, changing nothing."""
        context = self.check_reload(settings)
        self._make_smtp = smtp_factory(settings, MeteredHandler(self.handler, self.metrics),
                                       context, self.limits)
        self.limits.max_connections = settings.max_connections
        self.limits.max_per_ip = settings.max_connections_per_ip
        self.limits.hostname = settings.hostname
        self.settings = settings
        self.queue.settings = settings
        self.deliverer.settings = settings
        self.deliverer.pool.settings = settings
        self.handler.reconfigure(settings)
        self.free_space.minimum = settings.min_free_space
        if self.suppression is not None:
            self.suppression.reconfigure(settings)
        if self.accounting is not None and self.settings.metrics is not None:  # after the new
            # file handlers of a reload
            self.accounting.logger.removeHandler(self._record_counter)
            self.accounting.logger.addHandler(self._record_counter)

    def _readiness(self) -> list[str]:
        listening = self._server is not None and self._server.is_serving()
        return readiness_problems(listening, self.directories, self.settings.min_free_space)

    async def _abandon_start(self) -> None:
        if self.accounting is not None:
            self.accounting.logger.removeHandler(self._record_counter)
        if self.suppression is not None:
            self.suppression.detach()
        await self.queue.stop(0)
        self.lock.release()
        asyncio.get_running_loop().set_exception_handler(self._previous_handler)

    async def stop(self) -> None:
        """Drain gracefully (see the module docstring)."""
        timeout = self.settings.shutdown_timeout
        if self._server is not None:
            self._server.close()
        await self.control.stop()
        self.handler.draining = True
        deadline = time.monotonic() + timeout
        while self.handler.accepting and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        late = list(self.handler.accepting)
        if late:
            # past the deadline: what is being stored stays in the spool (a store handed to
            # a writer thread still finishes) and is sent at the next start; nothing of it
            # runs on against a stopped queue or executor
            _log.warning("%d message(s) still being stored at the shutdown deadline; they stay "
                         "in the spool for the next start", len(late))
            for accepting in late:
                accepting.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for client in list(self._clients):
            if client.transport is not None:
                client.transport.close()
        await self.queue.stop(max(0.0, deadline - time.monotonic()))
        self.executor.shutdown(wait=True)
        self.handler.close()
        asyncio.get_running_loop().set_exception_handler(self._previous_handler)
        try:
            _log.info("stopped; %d message(s) left in the spool", len(self.spool_ids()))
        except OSError as exc:  # (the spool removed under the relay: the rest still stops)
            _log.error("stopped; the spool's queue directory cannot be read: %s", exc)
        await self.metrics_server.stop()
        if self.accounting is not None:
            self.accounting.logger.removeHandler(self._record_counter)
        if self.suppression is not None:
            self.suppression.detach()
        self.lock.release()

    def spool_ids(self) -> list[str]:
        return [path.name for path in self.spool.queue_dir.iterdir()]


async def serve(relay: Relay, on_ready: Callable[[Relay], None] | None = None,
                reload: Callable[[], None] | None = None,
                supervisor: socket.socket | None = None) -> None:
    """Start, call ``on_ready``, run until SIGTERM or SIGINT, then drain. On SIGHUP call
    ``reload`` (which reads the settings again and applies them); a failure of it is logged
    and the relay goes on as it was. Without ``reload`` SIGHUP is logged and ignored.
    ``supervisor``: a worker's link to its supervisor; its closing drains the relay too."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, reload)
    await relay.start()
    if on_ready is not None:
        on_ready(relay)
    if supervisor is not None:
        supervisor.setblocking(False)
        loop.add_reader(supervisor.fileno(), _watch_supervisor, supervisor, stop)
    try:
        await stop.wait()
        _log.info("signal received; draining")
    finally:
        if supervisor is not None:
            loop.remove_reader(supervisor.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        await relay.stop()


def _watch_supervisor(link: socket.socket, stop: asyncio.Event) -> None:
    """The supervisor's end of ``link`` closed (it is gone): stop, as on SIGTERM."""
    try:
        data = link.recv(64)
    except BlockingIOError:
        return
    except OSError as exc:
        _log.warning("the link to the supervisor failed (%s); draining", exc)
        data = b""
    if not data:
        _log.warning("the supervisor is gone; draining")
        asyncio.get_running_loop().remove_reader(link.fileno())
        stop.set()


def _reload(reload: Callable[[], None] | None) -> None:
    if reload is None:
        _log.warning("SIGHUP received: there is no config file to read again; the relay goes "
                     "on with its current settings")
        return
    _log.info("SIGHUP received: reloading the settings")
    try:
        reload()
    except (MtaLoggingError, OSError) as exc:
        _log.error("reload refused, the relay goes on with its current settings: %s", exc)
        return
    _log.info("reloaded: the new settings are in use")
