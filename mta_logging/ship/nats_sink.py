"""The NATS JetStream sink: one message per record, acknowledged by the stream.

Subjects are ``<subject_prefix>.<kind>.<host>``; the stream (``<subject_prefix>.>``) is created
with the configured replicas, retention and duplicate window when it does not exist. Records
are published asynchronously, at most ``window`` of them unacknowledged; each carries
``Nats-Msg-Id`` = its ``eventId``, so the server drops a record published again (after a
timeout, a reconnect or a restart of the shipper) within the duplicate window. A publish that
fails or times out is retried, with the same id, until the stream acknowledges it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck, RetentionPolicy, StorageType, StreamConfig

from mta_logging.ship.config import NatsSettings
from mta_logging.ship.message import Message

log = logging.getLogger("mta_logging.ship")

RETRY_MAX = 5.0  # seconds between two attempts at most

T = TypeVar("T")


async def connect(settings: NatsSettings, name: str) -> Client:
    """A client of the configured servers that reconnects for ever (the cluster's other nodes
    are learnt from the server)."""
    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc or type(exc).__name__)

    return await nats.connect(
        servers=list(settings.servers), name=name, max_reconnect_attempts=-1,
        reconnect_time_wait=0.5, connect_timeout=5, error_cb=on_error,
        allow_reconnect=True)


async def when_ready(attempt: Callable[[], Awaitable[T]]) -> T:
    """What ``attempt()`` gives, tried again every second while JetStream cannot answer (no
    server up, or a cluster electing its leaders after a node restarted): the first failure of
    an episode is logged, not every try."""
    failing = False
    while True:
        try:
            return await attempt()
        except (TimeoutError, nats.js.errors.ServiceUnavailableError,
                nats.errors.NoRespondersError) as exc:
            if not failing:
                log.warning("nats: JetStream not ready (%s); trying again every second",
                            exc or type(exc).__name__)
                failing = True
            await asyncio.sleep(1.0)


async def ensure_stream(js: JetStreamContext, settings: NatsSettings) -> None:
    """Create the stream when it is missing (an existing stream is used as it is); waits for
    JetStream to be ready (:func:`when_ready`)."""
    async def attempt() -> None:
        try:
            await js.stream_info(settings.stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(StreamConfig(
                name=settings.stream, subjects=[f"{settings.subject_prefix}.>"],
                num_replicas=settings.replicas,
                retention=RetentionPolicy(settings.retention), storage=StorageType.FILE,
                max_age=settings.max_age or None,
                duplicate_window=settings.duplicate_window))
            log.info("nats: created stream %s (%s.>, %d replicas)", settings.stream,
                     settings.subject_prefix, settings.replicas)

    await when_ready(attempt)


class NatsSink:
    """Publishes messages to the stream and returns once every one is acknowledged."""

    name = "nats"

    def __init__(self, settings: NatsSettings, host: str) -> None:
        self.settings = settings
        self.host = host
        self._client: Client | None = None
        self._js: JetStreamContext | None = None

    @property
    def batch(self) -> int:
        return self.settings.window

    async def start(self) -> None:
        self._client = await connect(self.settings, f"mta-logging ship {self.host}")
        self._js = self._client.jetstream(
            publish_async_max_pending=self.settings.window)
        await ensure_stream(self._js, self.settings)

    async def send(self, messages: Sequence[Message]) -> None:
        """Publish ``messages`` (at most ``window``) without waiting for each other; return
        when all are acknowledged. Those not acknowledged within ``ack_timeout`` (or refused:
        no responders, a leader election) are published again, with the same ids."""
        assert self._js is not None, "start() first"
        pending = list(messages)
        delay = 0.1
        while True:
            acks: list[asyncio.Future[PubAck]] = []
            problem: BaseException | None = None
            try:
                for message in pending:
                    acks.append(await self._js.publish_async(
                        f"{self.settings.subject_prefix}.{message.kind}.{self.host}",
                        message.body, headers={"Nats-Msg-Id": message.id}))
                done, _waiting = await asyncio.wait(acks, timeout=self.settings.ack_timeout)
            except nats.errors.Error as exc:  # the connection is down: reconnecting
                done, problem = set(), exc
            failed = []
            for message, ack in itertools.zip_longest(pending, acks):
                if ack in done and not ack.cancelled() and ack.exception() is None:
                    continue
                failed.append(message)
                if ack is not None and ack not in done:
                    ack.cancel()  # frees its place in the window; published again below
                elif ack is not None and not ack.cancelled():
                    problem = ack.exception()
            if not failed:
                return
            log.warning("nats: %d of %d publishes not acknowledged (%s); publishing them again",
                        len(failed), len(pending), problem or "no acknowledgement in time")
            pending = failed
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
