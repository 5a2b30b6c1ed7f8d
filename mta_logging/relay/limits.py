"""How many inbound connections the relay takes: in all, and per client address.

Past a limit a new connection hears ``421 4.7.0`` and is closed before any SMTP state exists;
refusals are logged at most once a minute. ``max_connections`` keeps the relay below its file
descriptor limit, so it never runs out of descriptors for the spool, the accounting files and
outbound connections; should ``accept`` still fail (EMFILE), the listener pauses a second (as
asyncio does) and that, too, is logged at most once a minute, never with a traceback each time.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from typing import Any

from mta_logging.relay.faults import Throttled

_log = logging.getLogger("mta_logging.relay.limits")
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


class ConnectionLimits:
    """Counts the open inbound connections; :meth:`admit` one, :meth:`release` it when it ends.

    ``open`` and ``refused`` (connections refused so far) are read by the metrics; a reload
    sets the limits anew on the same object, so the connections already open still count.
    """

    def __init__(self, max_connections: int, max_per_ip: int, hostname: str) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.hostname = hostname
        self.open = 0
        self.refused = 0
        self._per_ip: dict[str, int] = {}
        self._refusals = Throttled(_log)

    def admit(self, client_ip: str) -> str | None:
        """Count a new connection from ``client_ip``; or, past a limit, the reply refusing it
        (then it is not counted)."""
        from_ip = self._per_ip.get(client_ip, 0)
        if self.open >= self.max_connections or from_ip >= self.max_per_ip:
            self.refused += 1
        if self.open >= self.max_connections:
            self._refusals.warn(f"refused a connection from {client_ip}: max_connections "
                                f"({self.max_connections}) are open")
            return f"421 4.7.0 {self.hostname} Too many connections, try again later"
        if from_ip >= self.max_per_ip:
            self._refusals.warn(f"refused a connection from {client_ip}: "
                                f"max_connections_per_ip ({self.max_per_ip}) are open from it")
            return (f"421 4.7.0 {self.hostname} Too many connections from your address, "
                    f"try again later")
        self.open += 1
        self._per_ip[client_ip] = from_ip + 1
        return None

    def release(self, client_ip: str) -> None:
        """A connection that :meth:`admit` counted has ended."""
        self.open -= 1
        left = self._per_ip[client_ip] - 1
        if left:
            self._per_ip[client_ip] = left
        else:
            del self._per_ip[client_ip]


def quiet_accept_errors(previous: ExceptionHandler | None) -> ExceptionHandler:
    """An event loop exception handler that reports ``accept`` running out of descriptors at
    most once a minute, without a traceback, and hands everything else to ``previous`` (or the
    loop's default handler)."""
    throttled = Throttled(_log)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if (isinstance(exc, OSError) and exc.errno in _OUT_OF_DESCRIPTORS
                and str(context.get("message", "")).startswith("socket.accept()")):
            throttled.warn(f"cannot accept connections: {exc.strerror}; the listener pauses "
                           f"1 s (lower max_connections, or raise the file descriptor limit)")
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    return handle
