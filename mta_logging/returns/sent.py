"""What was sent, by Message-ID: how a bounce or complaint without a VERP token is traced
back to its job.

An SQLite database (stdlib ``sqlite3``, WAL) of one row per message: its Message-ID, job id,
envelope sender and recipients, when it was added, and the DSN parameters the sender gave
(RFC 3461: ENVID, and NOTIFY and ORCPT of each recipient), which the relay needs to pass a
downstream report on to the sender (an index written before they were kept has none). The
relay adds a row for every message it accepts that has a Message-ID;
``mta-logging ingest-bounce --sent-index`` reads it.
Rows older than ``retention_days`` are removed when the index is opened. A Message-ID is
compared as written, angle brackets included.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass

from mta_logging.errors import ConfigError

DEFAULT_RETENTION_DAYS = 30.0


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


class SentIndex:
    """The index at ``path`` (created when missing). Safe to use from several threads."""

    def __init__(self, path: str | os.PathLike[str],
                 retention_days: float = DEFAULT_RETENTION_DAYS) -> None:
        self.path = os.fspath(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS sent (message_id TEXT PRIMARY KEY, "
                             "job_id TEXT NOT NULL, orig TEXT NOT NULL, rcpts TEXT NOT NULL, "
                             "added REAL NOT NULL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS sent_job ON sent (job_id)")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(sent)")}
            if "dsn" not in columns:  # an index of an earlier version
                self._db.execute("ALTER TABLE sent ADD COLUMN dsn TEXT")
            self._db.execute("DELETE FROM sent WHERE added < ?",
                             (time.time() - retention_days * 86400,))
        except sqlite3.Error as exc:
            raise ConfigError("sent_index", self.path, f"cannot be opened as an SQLite "
                              f"database ({exc})") from None
        self._lock = threading.Lock()

    def add(self, message_id: str, sent: Sent) -> None:
        """Remember ``sent`` under ``message_id`` (a later message with the same id wins)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO sent (message_id, job_id, orig, rcpts, added, dsn) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (message_id.strip(), sent.job_id, sent.orig, json.dumps(list(sent.rcpts)),
                 time.time(), json.dumps({
                     "t": sent.time_queued, "envid": sent.envid,
                     "notify": [None if n is None else list(n) for n in sent.notify],
                     "orcpt": list(sent.orcpt)})))

    def by_message_id(self, message_id: str) -> Sent | None:
        """The message sent with ``message_id``; None when not known."""
        return self._one("SELECT job_id, orig, rcpts, dsn FROM sent WHERE message_id = ?",
                         message_id.strip())

    def by_job_id(self, job_id: str) -> Sent | None:
        """The message of job ``job_id``; None when not known."""
        return self._one("SELECT job_id, orig, rcpts, dsn FROM sent WHERE job_id = ? "
                         "ORDER BY added DESC LIMIT 1", job_id)

    def _one(self, query: str, key: str) -> Sent | None:
        with self._lock:
            row = self._db.execute(query, (key,)).fetchone()
        if row is None:
            return None
        dsn = json.loads(row[3]) if row[3] else {}
        return Sent(row[0], row[1], tuple(json.loads(row[2])), time_queued=dsn.get("t"),
                    envid=dsn.get("envid"),
                    notify=tuple(None if n is None else tuple(n) for n in dsn.get("notify", ())),
                    orcpt=tuple(dsn.get("orcpt", ())))

    def close(self) -> None:
        with self._lock:
            self._db.close()
