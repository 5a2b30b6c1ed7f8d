"""Metrics (Prometheus text format) and health checks on the listener named by ``metrics``.

``GET /metrics``: every metric below; ``GET /healthz``: 200 while the process serves;
``GET /readyz``: 200 when the SMTP listener is up, the spool and accounting directories are
writable directories with at least ``min_free_space`` free, 503 with the failed checks otherwise.

Each metric is documented (name, type, labels, unit) in the README's "Metrics and health".

Everything is read on the event loop (the listener is served there), so a scrape sees the
queue as the relay does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from mta_logging.logger import WRITE_FAILED
from mta_logging.outcome import Kind
from mta_logging.relay.limits import ConnectionLimits
from mta_logging.relay.queue import DeliveryQueue
from mta_logging.relay.storage import free_bytes

_log = logging.getLogger("mta_logging.relay.metrics")

LATENCY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 5 * 24 * 3600)
MAX_REQUEST_HEAD = 8192


class RelayMetrics:
    """The relay's counters and its collector of the queue's state (one registry per relay)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = Counter("mta_logging_records", "accounting records written",
                               ["kind", "bounce_category"], registry=self.registry)
        self.write_errors = Counter("mta_logging_accounting_write_errors",
                                    "accounting records that could not be written",
                                    registry=self.registry)
        self.latency = Histogram("mta_logging_delivery_latency_seconds",
                                 "seconds from queued to the delivered record, per recipient",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.received = Counter("mta_logging_messages_received", "messages accepted",
                                registry=self.registry)
        self.refused = Counter("mta_logging_messages_refused",
                               "MAIL, RCPT or DATA refused, by reply code and enhanced status",
                               ["reason"], registry=self.registry)

    def count_reply(self, verb: str, reply: str) -> None:
        """Count one reply to MAIL, RCPT or DATA: an acceptance of DATA or a refusal."""
        if reply.startswith("250"):
            if verb == "DATA":
                self.received.inc()
            return
        self.refused.labels(" ".join(reply.split()[:2])).inc()


class RecordCounter(logging.Handler):
    """Counts the records on the accounting logger; added after the file handlers, it sees
    whether one of them failed to write the record."""

    def __init__(self, metrics: RelayMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        outcome = getattr(record, "outcome", None)
        if outcome is None:
            return
        if WRITE_FAILED in record.__dict__:
            self.metrics.write_errors.inc()
            return
        # the kind as --kind, the config and the directories spell it (remote_bounce)
        self.metrics.records.labels(outcome.kind.directory, outcome.bounce_cat or "").inc()
        if outcome.kind is Kind.DELIVERED and outcome.time_queued is not None:
            queued = outcome.time_queued
            since = queued.timestamp() if isinstance(queued, datetime) else float(queued)
            self.metrics.latency.observe(max(0.0, record.created - since))


class MeteredHandler:
    """The inbound handler with its replies to MAIL, RCPT and DATA counted; everything else
    is the wrapped handler's."""

    def __init__(self, handler: Any, metrics: RelayMetrics) -> None:
        self._handler = handler
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)

    async def handle_MAIL(self, *args: Any) -> str:
        return self._counted("MAIL", await self._handler.handle_MAIL(*args))

    async def handle_RCPT(self, *args: Any) -> str:
        return self._counted("RCPT", await self._handler.handle_RCPT(*args))

    async def handle_DATA(self, *args: Any) -> str:
        return self._counted("DATA", await self._handler.handle_DATA(*args))

    def _counted(self, verb: str, reply: str) -> str:
        self._metrics.count_reply(verb, reply)
        return reply


class StateCollector:
    """The gauges, read when scraped: the queue, the connections, the free space."""

    def __init__(self, queue: DeliveryQueue, limits: ConnectionLimits,
                 directories: Iterable[Path], clock: Callable[[], float] = time.time) -> None:
        self.queue = queue
        self.limits = limits
        self.directories = tuple(dict.fromkeys(directories))
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        queue = self.queue
        states = dict.fromkeys(("active", "deferred", "held"), 0)
        oldest = None
        for message in queue.messages.values():
            if message.held:
                states["held"] += 1
            elif message.failures and message.queue_id not in queue.attempting:
                states["deferred"] += 1
            else:
                states["active"] += 1
            queued = message.envelope.time_queued
            oldest = queued if oldest is None else min(oldest, queued)
        by_state = GaugeMetricFamily("mta_logging_queue_messages", "messages queued, by state",
                                     labels=["state"])
        for state, count in states.items():
            by_state.add_metric([state], count)
        yield by_state
        yield GaugeMetricFamily("mta_logging_queue_oldest_message_age_seconds",
                                "age of the oldest queued message (0: none)",
                                value=0.0 if oldest is None else self.clock() - oldest)
        in_progress = GaugeMetricFamily("mta_logging_deliveries_in_progress",
                                        "transactions under way, per destination domain",
                                        labels=["destination"])
        for destination, count in queue.deliveries_in_progress().items():
            in_progress.add_metric([destination], count)
        yield in_progress
        yield GaugeMetricFamily("mta_logging_connections_open", "inbound SMTP connections",
                                value=self.limits.open)
        yield CounterMetricFamily("mta_logging_connections_refused",
                                  "inbound connections refused past max_connections or "
                                  "max_connections_per_ip", value=self.limits.refused)
        free = GaugeMetricFamily("mta_logging_free_space_bytes",
                                 "free space of the spool and accounting directories",
                                 labels=["directory"])
        for directory in self.directories:
            try:
                free.add_metric([str(directory)], free_bytes(directory))
            except OSError:
                continue
        yield free


def readiness_problems(listening: bool, directories: Iterable[Path], minimum: int) -> list[str]:
    """What keeps the relay from being ready (empty: ready)."""
    problems = [] if listening else ["the SMTP listener is not up"]
    for directory in dict.fromkeys(directories):
        if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
            problems.append(f"{directory} is not a writable directory")
            continue
        free = free_bytes(directory)
        if free < minimum:
            problems.append(f"{directory} has {free} bytes free, less than min_free_space "
                            f"{minimum}")
    return problems


class MetricsServer:
    """HTTP/1.0 on ``host:port``: ``/metrics``, ``/healthz``, ``/readyz``; one request per
    connection."""

    def __init__(self, metrics: RelayMetrics, ready: Callable[[], list[str]]) -> None:
        self.metrics = metrics
        self.ready = ready
        self._server: asyncio.base_events.Server | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a GET of ``path``."""
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/readyz":
            problems = self.ready()
            if problems:
                return 503, "text/plain; charset=utf-8", "".join(
                    f"{problem}\n" for problem in problems).encode()
            return 200, "text/plain; charset=utf-8", b"ready\n"
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /readyz\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, _, rest = head[:MAX_REQUEST_HEAD].decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            if method not in ("GET", "HEAD"):
                status, content_type, body = 405, "text/plain; charset=utf-8", b"GET only\n"
            else:
                status, content_type, body = self.answer(path)
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                      503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + (body if method == "GET" else b""))
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            _log.debug("metrics listener: %s", exc)
        finally:
            writer.close()
