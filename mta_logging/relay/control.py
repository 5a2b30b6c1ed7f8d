"""The running relay's control socket: ``mta-logging queue`` talks to the relay through it.

An AF_UNIX socket, ``control.sock`` in the spool directory, mode 0600 (only the relay's user,
and root, may connect). One JSON request line per connection, one JSON answer line
(see ``admin``). The relay's in-memory queue is the authority while it runs, so every change
goes through it: a message being attempted right now cannot be bounced or deleted (hold it,
then try again once the attempt ends); everything else takes effect at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from mta_logging.errors import MtaLoggingError
from mta_logging.relay.admin import (
    REMOVALS,
    QueueEntry,
    dispatch,
    entry_of,
    record_removal,
    show_result,
    unknown,
)
from mta_logging.relay.config import RelaySettings
from mta_logging.relay.queue import DeliveryQueue
from mta_logging.relay.spool import QueuedMessage, Spool

_log = logging.getLogger("mta_logging.relay.control")

MAX_REQUEST = 1 << 20


class LiveQueue:
    """The queue operations on the running relay's queue (see ``admin``)."""

    def __init__(self, settings: RelaySettings, spool: Spool, queue: DeliveryQueue,
                 executor: Executor | None) -> None:
        self.settings = settings
        self.spool = spool
        self.queue = queue
        self.executor = executor

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def entries(self) -> list[QueueEntry]:
        messages: list[QueuedMessage] = await self._in_thread(self.spool.scan)
        attempting = self.queue.attempting
        return [entry_of(self.spool, m, attempting=m.queue_id in attempting)
                for m in messages if m.queue_id in self.queue.messages]

    def _message(self, queue_id: str) -> QueuedMessage:
        message = self.queue.messages.get(queue_id)
        if message is None:
            raise unknown(queue_id)
        return message

    async def show(self, queue_id: str) -> dict[str, Any]:
        message = self._message(queue_id)
        result: dict[str, Any] = await self._in_thread(
            show_result, self.spool, message, queue_id in self.queue.attempting)
        return result

    async def act(self, action: str, queue_id: str) -> str:
        message = self._message(queue_id)
        if action in REMOVALS:
            return await self._remove(message, action)
        if action == "flush":
            if message.held:
                raise MtaLoggingError(f"{queue_id}: held; release it to deliver it")
            return "will be tried now" if self.queue.flush(queue_id) else \
                "already due or being attempted"
        if action == "hold":
            await self._journal(queue_id, "h 1")
            self.queue.hold(message)
            return "held"
        if not message.held:
            raise MtaLoggingError(f"{queue_id}: not held")
        await self._journal(queue_id, "h 0")
        self.queue.release(message)
        return "released; will be tried now"

    async def _journal(self, queue_id: str, entry: str) -> None:
        try:
            await self._in_thread(self.spool.journal, queue_id, [entry])
        except OSError as exc:
            raise MtaLoggingError(f"{queue_id}: cannot write its journal ({exc})") from None
        message = self.queue.messages.get(queue_id)
        if message is not None:
            message.journaled = True

    async def _remove(self, message: QueuedMessage, action: str) -> str:
        queue_id = message.queue_id
        if self.queue.withdraw(queue_id) is None:
            raise MtaLoggingError(f"{queue_id}: being attempted right now; hold it and try "
                                  "again when the attempt has ended")
        try:
            notice = await self._in_thread(record_removal, self.spool, self.settings,
                                           self.queue.accounting, message, action,
                                           self.queue.suppressed)
        except (MtaLoggingError, OSError) as exc:
            self.queue.submit(message)
            if isinstance(exc, OSError):
                raise MtaLoggingError(f"{queue_id}: {exc}; the message stays queued") from None
            raise
        if notice is not None:
            self.queue.submit(notice)
        return f"{REMOVALS[action][0]}: recorded and removed"


class ControlServer:
    """Serves :class:`LiveQueue` on ``spool.control_path`` while the relay runs."""

    def __init__(self, operations: LiveQueue, path: os.PathLike[str] | str) -> None:
        self.operations = operations
        self.path = os.fspath(path)
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        """Listen; the socket is made 0600 before it has its public name (no window)."""
        staging = f"{self.path}.new"
        for leftover in (staging, self.path):  # a dead relay's (the spool lock says so)
            if os.path.lexists(leftover):
                os.unlink(leftover)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(staging)
            os.chmod(staging, 0o600)
            os.rename(staging, self.path)
        except OSError as exc:
            sock.close()
            raise MtaLoggingError(f"cannot create the control socket {self.path}: {exc}"
                                  ) from None
        self._server = await asyncio.start_unix_server(self._serve, sock=sock,
                                                       limit=MAX_REQUEST)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            if os.path.lexists(self.path):
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                answer: dict[str, Any] = {"ok": False, "error": f"bad request: {exc}"}
            else:
                answer = await dispatch(self.operations, request)
                if request.get("op") not in ("list", "show"):
                    _log.info("queue %s: %s", request.get("op"),
                              "; ".join(r["text"] if not r["ok"] else f"{r['id']}: {r['text']}"
                                        for r in answer.get("result") or []) or "nothing to do")
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, ValueError) as exc:  # the client went away, or sent too much
            _log.warning("control socket: %s", exc)
        finally:
            writer.close()
