"""The suppression list: recipients no mail is sent to any more, kept in an SQLite file, and
the logging handler that adds the hard bounces and complaints it sees.

An entry is keyed by the recipient's address, normalized: surrounding ``<>`` and white space
removed, then lower-cased, the local part too. RFC 5321 lets a receiving system treat
``Bob@`` and ``bob@`` as two mailboxes, but next to none do; keeping the local part's case
would let ``Bob@example.com`` through after ``bob@example.com`` bounced, which is the
reputation damage the list exists to prevent (the big senders' suppression lists compare
without case too). An entry holds its reason (a bounce category, ``complaint``, or an
operator's word such as ``manual``), when it was added, when it expires (None: never), its
source (:data:`SOURCES`) and the ``eventId`` of the record that caused it.

Expiry, per reason (:data:`DEFAULT_EXPIRY`): ``bad-mailbox`` and ``inactive-mailbox`` 90 days
(mailboxes are rarely re-created, but an address can come back to life: a returning employee,
a re-registered domain), ``bad-domain`` 30 days (a domain that fails to resolve is often a DNS
mistake put right within days), ``complaint`` never (a person asked for no more mail), and
every other reason never. An expired entry stays in the file (``list --all`` shows it) but
suppresses nothing; the next add of the address replaces it.

The file is in WAL mode, so that readers (the relay's lookup at each RCPT) never wait for a
writer (the handler, the ``suppression`` command); writers wait for each other up to
``timeout`` seconds. Every failure raises :class:`SuppressionError`, naming the file and what
is wrong with it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mta_logging.checks import seconds
from mta_logging.errors import ConfigError, MtaLoggingError
from mta_logging.eventid import new_event_id
from mta_logging.faults import Faults

_log = logging.getLogger("mta_logging.suppression")

__all__ = [
    "COMPLAINT", "DAY", "DB_NAME", "DEFAULT_EXPIRY", "HARD_BOUNCES", "NEVER", "REASON_RULE",
    "SOURCES", "Entry", "SuppressionError", "SuppressionHandler", "SuppressionList",
    "checked_expiry", "expires_at", "expiry_text", "normalize_address", "put_first",
    "time_text", "valid_reason",
]

DB_NAME = "suppression.db"  # the file's name beside the spool (``spool_dir/suppression.db``)
HARD_BOUNCES = ("bad-mailbox", "bad-domain", "inactive-mailbox")
COMPLAINT = "complaint"
SOURCES = ("bounce", "remote-bounce", "complaint", "manual", "import")
DAY = 86400
DEFAULT_EXPIRY: Mapping[str, float | None] = MappingProxyType({
    "bad-mailbox": 90 * DAY, "inactive-mailbox": 90 * DAY, "bad-domain": 30 * DAY,
    COMPLAINT: None})
DEFAULT_TIMEOUT = 5.0  # seconds a writer waits for another writer
NEVER = "never"
REASON_RULE = "expected a reason such as bad-mailbox, complaint or manual (a-z, 0-9, '.', '_', " \
              "'-'; at most 64 characters)"

# the record kinds the handler watches, by their code (so that it knows the remote bounce and
# complaint kinds of mail that comes back without importing them) → the entry's source
_WATCHED = {"b": "bounce", "rb": "remote-bounce", "f": COMPLAINT}
_REASON = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_BAD_ADDRESS_CHARACTER = re.compile(r"[\x00-\x20\x7f<>]")
_RETRY = 1.0  # seconds the handler's writer waits before it tries a failed write again
_SCHEMA_VERSION = 1
_COLUMNS = "address, reason, added, expires, source, event_id"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppression (
    address TEXT PRIMARY KEY,   -- normalized (normalize_address)
    reason TEXT NOT NULL,
    added INTEGER NOT NULL,     -- POSIX seconds
    expires INTEGER,            -- POSIX seconds; NULL: never
    source TEXT NOT NULL,
    event_id TEXT               -- NULL: none (added by hand)
) WITHOUT ROWID
"""
# an add that does not replace (the handler's) keeps an active entry that lasts longer
_UPSERT = f"""
INSERT INTO suppression ({_COLUMNS}) VALUES (:address, :reason, :added, :expires, :source,
    :event_id)
ON CONFLICT (address) DO UPDATE SET reason = excluded.reason, added = excluded.added,
    expires = excluded.expires, source = excluded.source, event_id = excluded.event_id
WHERE :replace OR (suppression.expires IS NOT NULL AND (suppression.expires <= :now
    OR excluded.expires IS NULL OR excluded.expires > suppression.expires))
"""


class SuppressionError(MtaLoggingError):
    """The suppression list cannot be used (a file that is not one, locked, a bad address or
    CSV row): the message names the file or the value and what is wrong."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One suppressed address. Times are POSIX seconds; ``expires`` None: never."""

    address: str
    reason: str
    added: int
    expires: int | None
    source: str
    event_id: str | None = None


def normalize_address(text: str) -> str:
    """The key of ``text`` in the list: without ``<>`` and surrounding white space, lower
    case; SuppressionError when it is not ``local-part@domain``."""
    address = text.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, domain = address.rpartition("@")
    domain = domain.rstrip(".")
    if (not at or not local or not domain or len(address) > 254
            or _BAD_ADDRESS_CHARACTER.search(address)):
        raise SuppressionError(f"address {text!r} is not valid; expected local-part@domain, "
                               f"at most 254 characters, no spaces or control characters")
    return f"{local}@{domain}".lower()


def valid_reason(text: Any) -> bool:
    """True for a reason an entry may have (see :data:`REASON_RULE`)."""
    return isinstance(text, str) and _REASON.fullmatch(text) is not None


def checked_expiry(given: Mapping[str, Any] | None, key: str = "expiry"
                   ) -> Mapping[str, float | None]:
    """:data:`DEFAULT_EXPIRY` with ``given``'s reasons replaced: each a number of seconds, or
    ``never`` (or null) for an entry that never expires. ConfigError names ``key.reason``."""
    if given is None:
        return DEFAULT_EXPIRY
    if not isinstance(given, Mapping):
        raise ConfigError(key, given, "expected a mapping of reason to seconds or never, such "
                                      "as {bad-mailbox: 7776000, complaint: never}")
    expiry = dict(DEFAULT_EXPIRY)
    for reason, value in given.items():
        if not valid_reason(reason):
            raise ConfigError(key, reason, REASON_RULE)
        never = value is None or value == NEVER
        expiry[reason] = None if never else seconds(f"{key}.{reason}", value, 0)
    return MappingProxyType(expiry)


def expires_at(reason: str, added: float, expiry: Mapping[str, float | None]) -> int | None:
    """When an entry for ``reason`` added at ``added`` expires (None: never)."""
    lasts = expiry.get(reason)
    return None if lasts is None else int(added + lasts)


def time_text(when: float) -> str:
    """A time as the list shows it: ISO 8601 in UTC, whole seconds (``2026-03-01T12:00:00Z``)."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry_text(entry: Entry) -> str:
    """When ``entry`` expires as the list shows it; ``never``."""
    return NEVER if entry.expires is None else time_text(entry.expires)


class SuppressionList:
    """One connection to the list's file, made (with its table) when missing. Safe to share
    between threads (calls take turns); other processes may use the file at the same time."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT
                 ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise SuppressionError(f"suppression list {self.path}: is a directory; expected "
                                   f"an SQLite file, or no file yet (one is made)")
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._failure(exc, "opening it") from None
        try:
            self._prepare()
        except sqlite3.Error as exc:
            self._db.close()
            raise self._failure(exc, "opening it") from None
        except SuppressionError:
            self._db.close()
            raise

    def _prepare(self) -> None:
        db = self._db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise SuppressionError(f"suppression list {self.path}: made by a newer mta-logging "
                                   f"(schema {version}; this one reads {_SCHEMA_VERSION})")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        if version < _SCHEMA_VERSION:
            with self._transaction():
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _failure(self, exc: sqlite3.Error, doing: str) -> SuppressionError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            why = f"locked by another process, still after {self.timeout:g} s ({text})"
        elif "not a database" in text or "malformed" in text:
            why = (f"not an SQLite database, or a damaged one ({text}); move it away (a new "
                   f"list is made) and import a CSV export into the new one")
        elif "unable to open" in text:
            why = f"cannot open it ({text}): its directory must exist and be writable"
        else:
            why = text
        return SuppressionError(f"suppression list {self.path}: {why} (while {doing})")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def find(self, address: str, now: float | None = None) -> Entry | None:
        """The active entry of ``address`` (as given; normalized here), else None (also for a
        text that is no address)."""
        try:
            key = normalize_address(address)
        except SuppressionError:
            return None
        now = time.time() if now is None else now
        with self._lock:
            try:
                row = self._db.execute(
                    f"SELECT {_COLUMNS} FROM suppression WHERE address = ? "
                    f"AND (expires IS NULL OR expires > ?)", (key, now)).fetchone()
            except sqlite3.Error as exc:
                raise self._failure(exc, "looking an address up") from None
        return None if row is None else Entry(*row)

    def add(self, entries: Iterable[Entry], *, replace: bool = True,
            now: float | None = None) -> None:
        """Add ``entries`` (addresses normalized already) in one transaction. An address that
        is listed already gets the new entry; with ``replace`` false only if the new one lasts
        longer, or the old one has expired."""
        now = time.time() if now is None else now
        rows = [{**_row(entry), "replace": replace, "now": now} for entry in entries]
        with self._lock:
            try:
                with self._transaction():
                    self._db.executemany(_UPSERT, rows)
            except sqlite3.Error as exc:
                raise self._failure(exc, "adding entries") from None

    def remove(self, address: str) -> bool:
        """Remove the entry of ``address`` (expired or not); False when there was none."""
        key = normalize_address(address)
        with self._lock:
            try:
                with self._transaction():
                    cursor = self._db.execute("DELETE FROM suppression WHERE address = ?",
                                              (key,))
            except sqlite3.Error as exc:
                raise self._failure(exc, "removing an entry") from None
        return cursor.rowcount > 0

    def entries(self, *, include_expired: bool = False, now: float | None = None
                ) -> list[Entry]:
        """Every active entry (and the expired ones with ``include_expired``), by address."""
        now = time.time() if now is None else now
        where = "" if include_expired else "WHERE expires IS NULL OR expires > ?"
        with self._lock:
            try:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM suppression {where} ORDER BY address",
                    () if include_expired else (now,)).fetchall()
            except sqlite3.Error as exc:
                raise self._failure(exc, "reading the entries") from None
        return [Entry(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SuppressionList:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an error): the write lock is taken
    at the start, so that two writers wait for each other instead of failing at the end."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _row(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in Entry.__dataclass_fields__}


class SuppressionHandler(logging.Handler):
    """Adds to the suppression list at ``path`` the recipient of every bounce (``b``) and
    remote bounce (``rb``) of a hard-bounce category (:data:`HARD_BOUNCES`) and of every
    complaint (``f``), with the reason's expiry (``expiry``: see :func:`checked_expiry`).

    Other records cost a look at their kind. The entries are written by a thread of the
    handler, so a record's caller never waits for the file; :meth:`flush` waits until the
    entries handed over so far are written (or a write failed). A failure (a file that is
    not a list, locked longer than ``timeout``) goes to ``handleError`` once per episode,
    never to the caller; the entries are tried again every second until :meth:`close`.

    An outcome without an ``eventId`` gets one here, on the record, so that the handlers
    after this one write the id that the entry keeps: list this handler before the file
    handlers (the relay does; with ``dictConfig``, first in the logger's ``handlers``).
    """

    def __init__(self, path: str | os.PathLike[str], level: int | str = logging.NOTSET, *,
                 expiry: Mapping[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT
                 ) -> None:
        super().__init__(level)
        self.path = Path(path)
        self.expiry = checked_expiry(expiry)
        self.timeout = seconds("timeout", timeout, DEFAULT_TIMEOUT)
        self.faults = Faults(self, f"the suppression list {self.path}")
        self._condition = threading.Condition()
        self._pending: list[Entry] = []
        self._writing = False
        self._failing = False
        self._closing = False
        self._writer: threading.Thread | None = None

    def handle(self, record: logging.LogRecord) -> bool:
        """The record's entry handed to the writer, when its outcome is one to suppress."""
        outcome = record.__dict__.get("outcome")
        if outcome is None:
            return False
        source = _WATCHED.get(outcome.kind.code)
        if source is None:
            return False
        if source == COMPLAINT:
            reason = COMPLAINT
        elif outcome.bounce_cat in HARD_BOUNCES:
            reason = outcome.bounce_cat
        else:
            return False
        if not self.filter(record):
            return False
        try:
            address = normalize_address(outcome.rcpt)
        except SuppressionError:
            self.handleError(record)
            return False
        event_id = outcome.event_id
        if event_id is None:
            event_id = new_event_id(record.created)
            record.outcome = dataclasses.replace(outcome, event_id=event_id)
        added = int(record.created)
        entry = Entry(address, reason, added, expires_at(reason, added, self.expiry), source,
                      event_id)
        with self._condition:
            self._pending.append(entry)
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write, daemon=True,
                                                name="suppression-writer")
                self._writer.start()
            self._condition.notify_all()
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def _write(self) -> None:
        """The writer thread: pending entries into the file, in batches, until closed."""
        store: SuppressionList | None = None
        condition = self._condition
        while True:
            with condition:
                while not self._pending and not self._closing:
                    condition.wait()
                if not self._pending:
                    break
                batch, self._pending = self._pending, []
                self._writing, self._failing = True, False
            try:
                if store is None:
                    store = SuppressionList(self.path, timeout=self.timeout)
                store.add(batch, replace=False)
            except SuppressionError:
                self.faults.report("adding entries")
                with condition:
                    self._failing = True
                    self._writing = False
                    condition.notify_all()
                    if self._closing:
                        _log.error("%d entr(ies) for the suppression list %s not written: %s",
                                   len(batch), self.path,
                                   ", ".join(entry.address for entry in batch))
                        break
                    self._pending[:0] = batch
                    condition.wait(_RETRY)
                continue
            self.faults.clear("adding entries")
            with condition:
                self._writing = False
                condition.notify_all()
        if store is not None:
            store.close()

    def flush(self) -> None:
        """Wait until every entry handed over is written, or a write has failed."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._failing or not (self._pending or self._writing),
                self.timeout + 1)

    def close(self) -> None:
        """Write what is pending (one try), then stop the writer."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
            writer = self._writer
        if writer is not None:
            writer.join(self.timeout + 1)
        super().close()


def put_first(logger: logging.Logger, handler: logging.Handler) -> None:
    """Attach ``handler`` to ``logger`` before the handlers it has (a record reaches it
    first)."""
    others = list(logger.handlers)
    for other in others:
        logger.removeHandler(other)
    logger.addHandler(handler)
    for other in others:
        logger.addHandler(other)
