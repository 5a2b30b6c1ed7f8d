"""What was sent, by Message-ID: how a bounce or complaint without a VERP token is traced
back to its job.

An SQLite database (stdlib ``sqlite3``, WAL) of one row per message sent: its Message-ID, job
id, envelope sender and recipients, when it was added, and the DSN parameters the sender gave
(RFC 3461: ENVID, and NOTIFY and ORCPT of each recipient), which the relay needs to pass a
downstream report on to the sender (an index written before they were kept has none). The
relay adds a row for every message it accepts that has a Message-ID;
``mta-logging ingest-bounce --sent-index`` reads it.
Rows older than ``retention_days`` are removed when the index is opened. A Message-ID is
compared as written, angle brackets included.

A Message-ID is not always unique (mail sent again, a broken generator): every message sent
with it is kept, and a returned message is traced to the one that had a recipient the report
names (an address compared in lower case), the newest of them when several had (or, when
none had, of all sent with that Message-ID); that choice among several is logged (WARNING,
once per lookup). An index of an earlier version, which kept one row per Message-ID, is
rebuilt when opened.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mta_logging.errors import ConfigError

DEFAULT_RETENTION_DAYS = 30.0
_COLUMNS = "message_id, job_id, orig, rcpts, added, dsn"
_log = logging.getLogger("mta_logging.returns")


@dataclass(frozen=True, slots=True)
class Sent:
    """A message that was sent: its job id, envelope sender and recipients; when it was
    queued (None: not known), its ``envid`` (None: not given) and per recipient
    its ``notify`` (None: not given, else ``("NEVER",)`` or some of SUCCESS, FAILURE, DELAY)
    and ``orcpt`` (``addr-type;address``), in ``rcpts``' order (empty: none given for any)."""

    job_id: str
    orig: str
    rcpts: tuple[str, ...]
    time_queued: float | None = None
    envid: str | None = None
    notify: tuple[tuple[str, ...] | None, ...] = ()
    orcpt: tuple[str | None, ...] = ()

    def index_of(self, addresses: Iterable[str | None]) -> int | None:
        """The position in ``rcpts`` of the first recipient that is one of ``addresses``
        (compared in lower case; None ignored); None when none is."""
        wanted = _lower(addresses)
        return next((i for i, rcpt in enumerate(self.rcpts) if rcpt.lower() in wanted), None)


def _lower(addresses: Iterable[str | None]) -> set[str]:
    return {address.lower() for address in addresses if address}


OPEN_TIMEOUT = 30.0
"""Seconds an index being opened waits for another process (the rebuild of an index of an
earlier version holds the write lock while it copies every row) before it fails."""


class SentIndex:
    """The index at ``path`` (created when missing). Safe to use from several threads."""

    def __init__(self, path: str | os.PathLike[str],
                 retention_days: float = DEFAULT_RETENTION_DAYS) -> None:
        self.path = os.fspath(path)
        deadline = time.monotonic() + OPEN_TIMEOUT
        while True:
            try:
                self._db = self._open(retention_days)
                break
            except sqlite3.Error as exc:
                # SQLite answers some lock waits (the switch to WAL while another process
                # holds the file) at once, without its busy handler: tried again here.
                if (isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
                        and time.monotonic() < deadline):
                    time.sleep(0.05)
                    continue
                raise ConfigError("sent_index", self.path, f"cannot be opened as an SQLite "
                                  f"database ({exc})") from None
        self._lock = threading.Lock()

    def _open(self, retention_days: float) -> sqlite3.Connection:
        """A connection to the index, made or brought up to this version, old rows dropped;
        closed again when any of it fails."""
        db = sqlite3.connect(self.path, timeout=OPEN_TIMEOUT, check_same_thread=False,
                             isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # addresses in lower case as Python has them (SQLite's lower() is ASCII only)
            db.create_function("python_lower", 1, str.lower, deterministic=True)
            with db:
                db.execute("BEGIN IMMEDIATE")  # one process creates or rebuilds it
                self._create(db)
                db.execute("DELETE FROM sent WHERE added < ?",
                           (time.time() - retention_days * 86400,))
        except BaseException:
            db.close()
            raise
        return db

    def _create(self, db: sqlite3.Connection) -> None:
        """Create the table, or bring one of an earlier version up to this one: add the
        ``dsn`` column, and drop the uniqueness of Message-IDs (copy the rows into a new
        table)."""
        columns = {row[1]: row[5] for row in db.execute("PRAGMA table_info(sent)")}
        if columns and "dsn" not in columns:
            db.execute("ALTER TABLE sent ADD COLUMN dsn TEXT")
        if columns.get("message_id"):  # the primary key: one row per Message-ID
            db.execute("ALTER TABLE sent RENAME TO sent_unique")
        db.execute("CREATE TABLE IF NOT EXISTS sent (message_id TEXT NOT NULL, "
                   "job_id TEXT NOT NULL, orig TEXT NOT NULL, rcpts TEXT NOT NULL, "
                   "added REAL NOT NULL, dsn TEXT)")
        if columns.get("message_id"):
            db.execute(f"INSERT INTO sent ({_COLUMNS}) SELECT {_COLUMNS} "
                       "FROM sent_unique ORDER BY added")
            db.execute("DROP TABLE sent_unique")
        db.execute("CREATE INDEX IF NOT EXISTS sent_message ON sent (message_id)")
        db.execute("CREATE INDEX IF NOT EXISTS sent_job ON sent (job_id)")

    def add(self, message_id: str, sent: Sent) -> None:
        """Remember ``sent`` under ``message_id`` (beside any other message sent with it)."""
        with self._lock:
            self._db.execute(
                f"INSERT INTO sent ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (message_id.strip(), sent.job_id, sent.orig, json.dumps(list(sent.rcpts)),
                 time.time(), json.dumps({
                     "t": sent.time_queued, "envid": sent.envid,
                     "notify": [None if n is None else list(n) for n in sent.notify],
                     "orcpt": list(sent.orcpt)})))

    def by_message_id(self, message_id: str, rcpts: Iterable[str | None] = ()) -> Sent | None:
        """The message sent with ``message_id`` that a returned message naming the recipients
        ``rcpts`` is about: of those sent with it, the newest that had one of ``rcpts`` as a
        recipient, else the newest (a choice among several is logged); None when none was."""
        message_id = message_id.strip()
        with self._lock:
            row = self._db.execute(
                "SELECT job_id, orig, rcpts, dsn, named, count(*) OVER (PARTITION BY named) "
                "FROM (SELECT *, rowid AS sending, EXISTS (SELECT 1 FROM json_each(rcpts) "
                "WHERE python_lower(value) IN (SELECT value FROM json_each(?))) AS named "
                "FROM sent WHERE message_id = ?) "
                "ORDER BY named DESC, added DESC, sending DESC LIMIT 1",
                (json.dumps(sorted(_lower(rcpts))), message_id)).fetchone()
        if row is None:
            return None
        sent = _sent(row)
        named, alike = row[4], row[5]
        if alike > 1:
            _log.warning("%d messages were sent with Message-ID %s%s; the returned message is "
                         "taken to be about the newest, job %s", alike, message_id,
                         " to a recipient it names" if named else "", sent.job_id)
        return sent

    def by_job_id(self, job_id: str) -> Sent | None:
        """The message of job ``job_id``; None when not known."""
        with self._lock:
            row = self._db.execute("SELECT job_id, orig, rcpts, dsn FROM sent WHERE job_id = ? "
                                   "ORDER BY added DESC LIMIT 1", (job_id,)).fetchone()
        return None if row is None else _sent(row)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _sent(row: tuple[Any, ...]) -> Sent:
    """The Sent of a row that starts with job_id, orig, rcpts, dsn."""
    dsn = json.loads(row[3]) if row[3] else {}
    return Sent(row[0], row[1], tuple(json.loads(row[2])), time_queued=dsn.get("t"),
                envid=dsn.get("envid"),
                notify=tuple(None if n is None else tuple(n) for n in dsn.get("notify", ())),
                orcpt=tuple(dsn.get("orcpt", ())))
