"""``mta-logging ingest``: a durable JetStream pull consumer that writes records into PostgreSQL.

Messages are fetched in batches, copied (``COPY``) into a temporary table and inserted into the
records table with ``ON CONFLICT (event_id) DO NOTHING``; only after ``COMMIT`` are they
acknowledged. A crash between the two makes JetStream deliver the batch again, and the unique
``event_id`` keeps every record once. A database that goes away is waited for (the batch is
written again once it is back); a NATS node that goes away is left for another.

The schema (one table for every kind, ``type`` says which; see the README, "Many hosts"):
columns for what the report and the usual queries need, and ``fields`` (jsonb) with the whole
record as shipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import nats.errors
import psycopg
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from psycopg import sql

from mta_logging.address import domain_of
from mta_logging.outcome import Kind
from mta_logging.report.summary import normalize_reason
from mta_logging.report.times import TimeParser
from mta_logging.ship.config import (
    IngestSettings,
    NatsSettings,
    ingest_sections,
    load_ship_settings,
)
from mta_logging.ship.nats_sink import connect, ensure_stream, when_ready

log = logging.getLogger("mta_logging.ship")

RETRY_MAX = 5.0
# (column, SQL type) in table order; event_id is the primary key
COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "text PRIMARY KEY"),
    ("type", "text"),  # d, df, b (None: a kind this version does not know; see fields)
    ("host", "text"),
    ("time_logged", "timestamp"),  # the files' wall-clock time, as written
    ("logged_seconds", "bigint"),  # the same as seconds from 1970-01-01 00:00 on that clock
    ("queued_seconds", "bigint"),
    ("rcpt", "text"),
    ("rcpt_domain", "text"),  # lower case, no brackets, no trailing dot
    ("job_id", "text"),
    ("vmta", "text"),
    ("src_ip", "text"),
    ("dest_ip", "text"),
    ("dsn_status", "text"),
    ("dsn_msg", "text"),
    ("reason", "text"),  # dsn_msg with variable parts replaced (as the report counts reasons)
    ("bounce_cat", "text"),
    ("fields", "jsonb NOT NULL"),  # every field of the record as shipped, and host
    ("stream_seq", "bigint"),
)
INDEXED = ("time_logged", "rcpt_domain", "job_id")


def schema_statements(table: str) -> list[sql.Composed]:
    """CREATE TABLE and CREATE INDEX statements of the records table (idempotent)."""
    name = sql.Identifier(table)
    columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(kind))
                                 for column, kind in COLUMNS)
    statements = [sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(name, columns)]
    for column in INDEXED:
        statements.append(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(f"{table}_{column}"), name, sql.Identifier(column)))
    return statements


def row_for(fields: dict[str, Any], kind_token: str | None, stream_seq: int | None,
            times: TimeParser) -> tuple[Any, ...]:
    """The table row of one shipped record (the JSON object of a message); the kind is the
    subject's kind token (how the shipper's reader took the record), else the ``type``. NUL
    characters, which PostgreSQL text cannot hold, are left out."""
    fields = {name: value.replace("\0", "") if isinstance(value, str) else value
              for name, value in fields.items()}

    def text(name: str) -> str | None:
        value = fields.get(name)
        return None if value is None or value == "" else str(value)

    kind = Kind.find(kind_token) or Kind.find(text("type"))
    logged = times.seconds(text("timeLogged"))
    return (
        text("eventId"), kind.code if kind is not None else None, text("host"),
        times(text("timeLogged")), logged, times.seconds(text("timeQueued")),
        text("rcpt"), domain_of(text("rcpt")), text("jobId"), text("vmta"), text("srcIp"),
        text("destIp"), text("dsnStatus"), text("dsnMsg"), normalize_reason(text("dsnMsg")),
        text("bounceCat"), json.dumps(fields, ensure_ascii=False), stream_seq,
    )


class Database:
    """One connection to PostgreSQL that is made again when it breaks."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._connection: psycopg.AsyncConnection[Any] | None = None

    async def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (conflicting event ids ignored) and COMMIT; retries until done."""
        delay = 0.1
        while True:
            try:
                connection = await self._connect()
                await self._insert(connection, rows)
                return
            except psycopg.OperationalError as exc:
                log.warning("ingest: PostgreSQL unavailable (%s); writing the batch again",
                            str(exc).strip() or type(exc).__name__)
                await self.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._connection is None or self._connection.closed:
            connection = await psycopg.AsyncConnection.connect(self.settings.dsn,
                                                               connect_timeout=5)
            table = self.settings.table
            async with connection.transaction():
                for statement in schema_statements(table):
                    await connection.execute(statement)
                await connection.execute(sql.SQL(
                    "CREATE TEMP TABLE staging (LIKE {} INCLUDING DEFAULTS) "
                    "ON COMMIT DELETE ROWS").format(sql.Identifier(table)))
            self._connection = connection
        return self._connection

    async def _insert(self, connection: psycopg.AsyncConnection[Any],
                      rows: Sequence[tuple[Any, ...]]) -> None:
        names = sql.SQL(", ").join(sql.Identifier(column) for column, _kind in COLUMNS)
        async with connection.transaction(), connection.cursor() as cursor:
            async with cursor.copy(sql.SQL("COPY staging ({}) FROM STDIN").format(names)) as copy:
                for row in rows:
                    await copy.write_row(row)
            await cursor.execute(sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM staging ON CONFLICT (event_id) DO NOTHING"
            ).format(sql.Identifier(self.settings.table), names, names))


class Ingester:
    """Fetches from the durable consumer, writes, commits, then acknowledges."""

    def __init__(self, nats_settings: NatsSettings, settings: IngestSettings,
                 time_format: str) -> None:
        self.nats = nats_settings
        self.settings = settings
        self.times = TimeParser(time_format)
        self.database = Database(settings)

    async def run(self, once: bool = False) -> None:
        """Ingest until cancelled; with ``once``, until the consumer has nothing pending."""
        client = await connect(self.nats, "mta-logging ingest")
        try:
            js = client.jetstream()
            await ensure_stream(js, self.nats)
            # a restarted cluster may not answer for its consumers yet: wait, do not exit
            subscription = await when_ready(lambda: js.pull_subscribe(
                f"{self.nats.subject_prefix}.>", durable=self.settings.durable,
                stream=self.nats.stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                      ack_wait=self.settings.ack_wait,
                                      max_ack_pending=self.settings.batch * 4)))
            # the next batch is fetched while this one is written (both within max_ack_pending)
            fetching = asyncio.create_task(self._fetch(subscription, once))
            try:
                while (messages := await fetching) is not None:
                    fetching = asyncio.create_task(self._fetch(subscription, once))
                    await self.database.write([self._row(message) for message in messages])
                    for message in messages:  # buffered publishes: no round trip each
                        await message.ack()
            finally:
                fetching.cancel()  # a batch fetched but not written is delivered again
        finally:
            await self.database.close()
            await client.close()

    async def _fetch(self, subscription: Any, once: bool) -> list[Msg] | None:
        """The next batch; None (with ``once``) when the consumer has nothing pending."""
        while True:
            try:
                messages: list[Msg] = await subscription.fetch(self.settings.batch, timeout=1.0)
                return messages
            except TimeoutError:  # nats-py raises its own and asyncio's
                if once and await self._drained(subscription):
                    return None
            except nats.errors.Error as exc:
                log.warning("ingest: fetch failed (%s); trying again", exc or type(exc).__name__)
                await asyncio.sleep(1.0)

    def _row(self, message: Msg) -> tuple[Any, ...]:
        try:
            fields = json.loads(message.data)
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            fields = {"raw": message.data.decode("utf-8", "replace")}
        if not fields.get("eventId"):  # not from mta-logging ship: the message id will do
            fields["eventId"] = ((message.headers or {}).get("Nats-Msg-Id")
                                 or f"{self.nats.stream}:{message.metadata.sequence.stream}")
        tokens = message.subject.split(".")
        kind_token = tokens[-2] if len(tokens) >= 3 else None  # <prefix>.<kind>.<host>
        return row_for(fields, kind_token, message.metadata.sequence.stream, self.times)

    @staticmethod
    async def _drained(subscription: Any) -> bool:
        try:
            info = await subscription.consumer_info()
        except (nats.errors.Error, TimeoutError):
            return False
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="the ship config (YAML) with nats: and ingest: sections")
    parser.add_argument("--once", action="store_true",
                        help="ingest what the stream holds, then exit")


def run(args: argparse.Namespace) -> int:
    settings = load_ship_settings(args.config)
    nats, ingest = ingest_sections(settings, args.config)
    logging.basicConfig(level=logging.INFO, format="mta-logging ingest: %(message)s")
    ingester = Ingester(nats, ingest, settings.time_format)
    asyncio.run(ingester.run(once=args.once))
    return 0
