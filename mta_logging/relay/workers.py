"""The relay with ``workers`` > 1: a supervisor process and its workers.

The supervisor takes the lock of ``spool_dir``, moves into worker 1's spool the mail of every
spool no worker will use (``spool_dir``'s own queue, left by a relay of one process, and
``worker-<K>/`` for K above ``workers``), binds the listen address (one socket per worker,
all bound here with ``SO_REUSEPORT``, so a port in use is one error before any worker starts)
and starts ``workers`` processes, each a full relay (``server.Relay``) on its socket with its
own spool ``spool_dir/worker-<K>/`` (its lock, control socket and journals). The kernel spreads
new connections over the sockets by a hash of their addresses: one socket shared by every
worker would let the first worker to wake take a whole burst of them (asyncio accepts up to
``listen_backlog`` at a time), and a worker's socket stays open here while the worker is
started again, its connections waiting in its queue.

Each worker holds one end of a socket pair: it sends one line there once it serves
(:func:`ready_message`), and drains when the other end closes (the supervisor is gone). The
supervisor passes SIGTERM and SIGINT (drain) and SIGHUP (reload) on to every worker, starts
again a worker that exits while the relay runs (logged once, with its exit status; the new
one loads that worker's spool, so nothing accepted is lost), and exits once every worker has
stopped after a stop signal: 0, or 1 when a worker exited before it served (then the others
are stopped too: a worker that cannot start needs the operator).
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from mta_logging.errors import MtaLoggingError
from mta_logging.relay.config import RelaySettings
from mta_logging.relay.server import LOCK_WAIT, Relay
from mta_logging.relay.spool import (
    WORKER_PREFIX,
    Spool,
    SpoolLock,
    locked,
    move_messages,
    move_spools,
    open_spool_dir,
    worker_dir,
    worker_dirs,
)

_log = logging.getLogger("mta_logging.relay.workers")

POLL = 0.1  # seconds between looks at the workers (signals are handled within it)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# the command line of worker K: (K, the listening socket's fd, the fd of its link) -> argv
WorkerCommand = Callable[[int, int, int], Sequence[str]]
# called once every worker serves: the listening address, the workers' ready messages
ReadyCallback = Callable[[tuple[str, int], Sequence[dict[str, Any]]], None]


def ready_message(relay: Relay) -> bytes:
    """The line a worker sends its supervisor once it serves: its pid and metrics address."""
    return json.dumps({"pid": os.getpid(), "metrics": relay.metrics_server.address}
                      ).encode() + b"\n"


@dataclass
class _Worker:
    """A running worker process and what the supervisor has read from its link."""

    index: int
    process: subprocess.Popen[bytes]
    link: socket.socket
    restarted: bool
    received: bytes = b""
    ready: dict[str, Any] | None = None
    link_open: bool = True


def exit_text(returncode: int) -> str:
    """A process's exit as a person says it: ``exit status 3``, ``killed by SIGKILL``."""
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


class Supervisor:
    """Runs ``settings.workers`` workers until a stop signal (see the module docstring)."""

    def __init__(self, settings: RelaySettings, command: WorkerCommand) -> None:
        self.settings = settings
        self.command = command
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.failed = False
        self._signals: list[int] = []
        self._listeners: list[socket.socket] = []
        self.address = (settings.listen_host, settings.listen_port)

    def run(self, on_ready: ReadyCallback) -> int:
        """Serve until every worker has stopped; ``on_ready`` with the listening address and
        the workers' ready messages (by K) once all serve. The exit status (see the module
        docstring)."""
        root = open_spool_dir(self.settings.spool_dir)
        lock = SpoolLock(root)
        deadline = time.monotonic() + LOCK_WAIT
        while not lock.acquire():
            if time.monotonic() >= deadline:
                raise lock.in_use()
            time.sleep(0.1)
        try:
            self._gather(root)
            self._listeners = _bind(self.settings)
            host, port = self._listeners[0].getsockname()[:2]
            self.address = (str(host), int(port))
            previous = {signum: signal.signal(signum, self._on_signal)
                        for signum in (*STOP_SIGNALS, signal.SIGHUP)}
            try:
                for index in range(1, self.settings.workers + 1):
                    self._start(index, restarted=False)
                return self._supervise(on_ready)
            finally:
                self._stop_all(signal.SIGTERM)
                for worker in self.workers.values():
                    worker.process.wait()
                    worker.link.close()
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
                self._close_listeners()
        finally:
            lock.release()

    def _gather(self, root: Spool) -> None:
        """Mail of the spools no worker will use moved into worker 1's."""
        extra = [path for path in worker_dirs(root.root)
                 if int(path.name.removeprefix(WORKER_PREFIX)) > self.settings.workers]
        with locked(Spool.open(worker_dir(root.root, 1))) as first:
            move_messages(root, first)
            move_spools(extra, first)

    def _start(self, index: int, *, restarted: bool) -> None:
        listener = self._listeners[index - 1]
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                self.command(index, listener.fileno(), theirs.fileno()),
                pass_fds=(listener.fileno(), theirs.fileno()))
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.workers[index] = _Worker(index, process, ours, restarted)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _supervise(self, on_ready: ReadyCallback) -> int:
        announced = False
        while self.workers:
            while self._signals:
                self._handle(self._signals.pop(0))
            self._read_links()
            for worker in list(self.workers.values()):
                returncode = worker.process.poll()
                if returncode is not None:
                    self._exited(worker, returncode)
            if not announced and not self.stopping and all(
                    w.ready is not None for w in self.workers.values()):
                on_ready(self.address,
                         [self.workers[k].ready or {} for k in sorted(self.workers)])
                announced = True
        return 1 if self.failed else 0

    def _handle(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            _log.info("SIGHUP received: passed on to the %d worker(s)", len(self.workers))
            self._signal_all(signal.SIGHUP)
            return
        if not self.stopping:
            _log.info("signal received; stopping the %d worker(s)", len(self.workers))
        self._stop_all(signal.Signals(signum))

    def _stop_all(self, signum: signal.Signals) -> None:
        self.stopping = True
        self._close_listeners()
        self._signal_all(signum)

    def _signal_all(self, signum: signal.Signals) -> None:
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signum)

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners = []

    def _read_links(self) -> None:
        links = {w.link: w for w in self.workers.values() if w.link_open}
        for link in select.select(list(links), [], [], POLL)[0]:  # no links: a sleep of POLL
            worker = links[link]
            data = link.recv(4096)
            if not data:
                worker.link_open = False
                continue
            worker.received += data
            line, newline, rest = worker.received.partition(b"\n")
            if newline and worker.ready is None:
                worker.ready = json.loads(line)
                worker.received = rest
                _log.info("worker %d serving (pid %d)", worker.index, worker.process.pid)

    def _exited(self, worker: _Worker, returncode: int) -> None:
        del self.workers[worker.index]
        worker.link.close()
        if self.stopping:
            return
        where = worker_dir(self.settings.spool_dir, worker.index)
        if worker.ready is None:
            again = " again" if worker.restarted else ""
            _log.error("worker %d (pid %d) exited (%s) before it served%s; stopping the "
                       "relay (its mail stays in %s)", worker.index, worker.process.pid,
                       exit_text(returncode), again, where)
            self.failed = True
            self._stop_all(signal.SIGTERM)
            return
        _log.warning("worker %d (pid %d) exited (%s); starting it again (it loads %s)",
                     worker.index, worker.process.pid, exit_text(returncode), where)
        self._start(worker.index, restarted=True)


def _bind(settings: RelaySettings) -> list[socket.socket]:
    """A listening socket per worker on the listen address (``SO_REUSEPORT``; with port 0 the
    port the first one got); MtaLoggingError when the address cannot be bound."""
    host, port = settings.listen_host, settings.listen_port
    listeners: list[socket.socket] = []
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        for _ in range(settings.workers):
            listener = socket.socket(family, socket.SOCK_STREAM)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((host, port))
            listener.listen(settings.listen_backlog)
            port = listener.getsockname()[1]
    except OSError as exc:
        for listener in listeners:
            listener.close()
        raise MtaLoggingError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                              ) from None
    return listeners
