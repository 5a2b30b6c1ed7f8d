"""The durable queue: one file per message, one journal per message with progress.

Layout under ``spool_dir``::

    queue/<id>   envelope (one JSON line, with the length and CRC-32 of what follows) then
                 the message bytes; written in place and fsync'd
    tmp/<id>     a message being written by a relay before version 2 of the queue file, which
                 wrote it here and renamed it into queue/ (deleted on start: never acknowledged)
    state/<id>   journal of progress, appended: "d <n>" / "b <n>" = recipient n delivered /
                 bounced (final), "a <failures> <next_try>" = attempts failed so far, next try,
                 "e <text>" = the last temporary error, "h 1" / "h 0" = held / released,
                 "w 1" = the sender was sent a delay notice
    lock         locked (``flock``) by the running relay, or by a ``queue`` command working
                 on the spool of a stopped relay
    control.sock the running relay's control socket (mode 0600), for ``mta-logging queue``
    worker-<K>/  the spool of worker K of a relay with ``workers`` > 1, laid out as above; the
                 supervisor holds ``lock`` here, and the spool of every other worker count is
                 moved (:func:`move_messages`) into the one in use when the relay starts

A message is accepted (the client hears 250) only once ``queue/<id>`` and its directory are
fsync'd. A queue file that a crash cut short (shorter than its length, or failing its CRC-32
with a block all zeros: a crash can leave a file its full length with blocks never written)
was never acknowledged: :meth:`Spool.load` removes it with a log line, and the readers that
change nothing skip it. A file that fails its checks otherwise may hold accepted mail: it is
left in place with an error (see :func:`read_queue_file`).
Version 1 queue files (no length, no CRC: they were complete before their rename) still load.

Final recipient states are journaled only after they are recorded in the accounting
files (see ``queue``), so a crash can make a restart deliver again to a recipient that is
recorded, never leave a delivered recipient without a record. When every recipient is final
the message's files are removed (after their records, likewise).

A delivery status notification (``dsn``) is a message of its own, stored before the journal
entries it reports on (its envelope names the message and the entries: ``report_of``,
``report_entries``); :meth:`Spool.load` completes the journal of a message whose report is
queued but whose entries are missing (a crash between the two), so a restart neither loses
the report nor sends it again.

All methods here do blocking file I/O: the relay calls them in a thread executor.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mta_logging.errors import ConfigError, MtaLoggingError
from mta_logging.fsutil import create_file, fsync_directory, write_all
from mta_logging.outcome import Kind, Outcome
from mta_logging.relay.config import MAX_WORKERS
from mta_logging.relay.dsn_params import NO_MAIL_DSN, NO_RCPT_DSN, MailDsn, RcptDsn

_log = logging.getLogger("mta_logging.relay.spool")

DELIVERED = "d"
BOUNCED = "b"
DELAY_NOTIFIED = "w 1"
_FINAL = (DELIVERED, BOUNCED)
_TAGS = 4096
_PROCESS_TAG = secrets.randbelow(_TAGS)
_last_micros = 0
WORKER_PREFIX = "worker-"


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the client said around the message: sender, recipients, and who it was.

    ``mail_dsn``/``rcpt_dsn``: the DSN parameters (RFC 3461) of MAIL FROM and of each
    recipient (empty: none given for any). A delivery status notification names the message
    it reports on (``report_of``) and the journal entries of that message it stands for.
    """

    mail_from: str
    rcpts: tuple[str, ...]
    time_queued: float
    client_ip: str | None = None
    client_helo: str | None = None
    smtputf8: bool = False
    body_8bit: bool = False
    mail_dsn: MailDsn = NO_MAIL_DSN
    rcpt_dsn: tuple[RcptDsn, ...] = ()
    report_of: str | None = None
    report_entries: tuple[str, ...] = ()

    def dsn_of(self, index: int) -> RcptDsn:
        """The DSN parameters of recipient ``index``."""
        return self.rcpt_dsn[index] if self.rcpt_dsn else NO_RCPT_DSN

    def to_json(self, content: bytes) -> bytes:
        """The envelope line of a queue file holding ``content`` (version 2: with the length
        and CRC-32 of ``content``)."""
        data: dict[str, Any] = {
            "v": 2, "len": len(content), "crc": zlib.crc32(content), "from": self.mail_from,
            "rcpts": list(self.rcpts), "t": self.time_queued,
            "ip": self.client_ip, "helo": self.client_helo, "utf8": self.smtputf8,
            "8bit": self.body_8bit}
        if self.mail_dsn.ret is not None:
            data["ret"] = self.mail_dsn.ret
        if self.mail_dsn.envid is not None:
            data["envid"] = self.mail_dsn.envid
        if any(dsn != NO_RCPT_DSN for dsn in self.rcpt_dsn):
            data["rdsn"] = [[None if d.notify is None else list(d.notify), d.orcpt]
                            for d in self.rcpt_dsn]
        if self.report_of is not None:
            data["report_of"] = [self.report_of, list(self.report_entries)]
        # ensure_ascii keeps the line 7-bit and carries lone surrogates (8-bit bytes decoded
        # with surrogateescape) through unchanged.
        return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_fields(cls, data: dict[str, Any]) -> Envelope:
        """The envelope of a queue file's envelope line (version 1 or 2), parsed."""
        if data.get("v") not in (1, 2):
            raise ValueError(f"unknown envelope version {data.get('v')!r}")
        report_of, report_entries = data.get("report_of") or (None, ())
        return cls(mail_from=data["from"], rcpts=tuple(data["rcpts"]), time_queued=data["t"],
                   client_ip=data.get("ip"), client_helo=data.get("helo"),
                   smtputf8=bool(data.get("utf8")), body_8bit=bool(data.get("8bit")),
                   mail_dsn=MailDsn(ret=data.get("ret"), envid=data.get("envid")),
                   rcpt_dsn=tuple(RcptDsn(notify=None if notify is None else tuple(notify),
                                          orcpt=orcpt)
                                  for notify, orcpt in data.get("rdsn") or ()),
                   report_of=report_of, report_entries=tuple(report_entries))


class CutShort(ValueError):
    """A queue file written in place that a crash cut short: it was never acknowledged."""


_BLOCK = 4096  # the file-system block a crash can leave unwritten (read back as zeros)


def read_queue_file(data: bytes) -> tuple[Envelope, bytes]:
    """The envelope and the content of a queue file's bytes.

    :class:`CutShort` for what only a crash before the fsync can leave: no end to the envelope
    line, less content than its ``len``, or content that fails its CRC-32 with a block of the
    file never written (all zeros). ValueError, KeyError or TypeError for anything else that
    does not match: an unreadable envelope line, more content than ``len``, content that
    fails its CRC-32 otherwise (changed after it was accepted: a disk error, an edit). Those
    files may hold accepted mail, so they are never taken for cut short."""
    line, newline, content = data.partition(b"\n")
    if not newline:
        raise CutShort(f"no end to its envelope line after {len(data)} bytes")
    fields: dict[str, Any] = json.loads(line)
    envelope = Envelope.from_fields(fields)
    if fields["v"] >= 2:
        if len(content) < fields["len"]:
            raise CutShort(f"{len(content)} bytes of content, not {fields['len']}")
        if len(content) > fields["len"]:
            raise ValueError(f"{len(content)} bytes of content, more than the {fields['len']}"
                             " it was written with")
        crc = zlib.crc32(content)
        if crc != fields["crc"]:
            if _has_unwritten_block(data):
                raise CutShort(f"content with CRC-32 {crc}, not {fields['crc']}, and a block"
                               " never written")
            raise ValueError(f"content with CRC-32 {crc}, not the {fields['crc']} it was"
                             " written with: changed since")
    return envelope, content


def _has_unwritten_block(data: bytes) -> bool:
    """Whether a file-system block of ``data`` (at its offset in the file) is all zeros."""
    zeros = bytes(_BLOCK)
    return any(data[offset:offset + _BLOCK] == zeros[:len(data) - offset]
               for offset in range(0, len(data), _BLOCK))


@dataclass(frozen=True, slots=True)
class KeptRecord:
    """A recipient's final result (delivered or bounced) whose record could not be written:
    kept, to be written again rather than delivered again."""

    result: Any  # the outbound.RcptResult
    outcome: Outcome  # the record (its kind delivered or bounce; an expiry is a bounce)
    expired: bool  # the message had expired when the result came

    @property
    def entry(self) -> str:
        """Its journal line once its record is written: ``d N`` or ``b N``."""
        state = DELIVERED if self.outcome.kind is Kind.DELIVERED else BOUNCED
        return f"{state} {self.result.index}"


@dataclass(slots=True, eq=False)
class QueuedMessage:
    """A message in the queue and its delivery progress (kept in memory, journaled on disk)."""

    queue_id: str
    envelope: Envelope
    final: list[bool] = field(default_factory=list)
    failures: int = 0
    next_try: float = 0.0
    content: bytes | None = None
    journaled: bool = False
    held: bool = False
    last_error: str = ""
    delay_notified: bool = False
    # by recipient index: a final result whose record could not be written; the queue writes
    # the record again at the next try instead of delivering again (in memory only: after a
    # restart the recipient is tried again)
    unrecorded: dict[int, KeptRecord] = field(default_factory=dict)
    # the received records (Outcomes) that could not be written when the message was accepted:
    # written again at each delivery attempt until they are (in memory only)
    received_unwritten: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.final:
            self.final = [False] * len(self.envelope.rcpts)

    def pending(self) -> list[int]:
        """Indexes of the recipients not yet delivered or bounced."""
        return [i for i, done in enumerate(self.final) if not done]

    @property
    def complete(self) -> bool:
        return all(self.final)


def new_queue_id() -> str:
    """A queue id: microseconds since the epoch (strictly increasing in this process), then
    three hex digits drawn at start so that two processes never pick the same id."""
    global _last_micros
    _last_micros = max(time.time_ns() // 1000, _last_micros + 1)
    return f"{_last_micros:013X}{_PROCESS_TAG:03X}"


def use_worker_tag(index: int) -> None:
    """Make this process's queue ids unlike those of every other worker of its relay: worker
    ``index`` (1-based) of at most ``MAX_WORKERS`` draws its tag among those equal to
    ``index - 1`` modulo ``MAX_WORKERS``."""
    global _PROCESS_TAG
    _PROCESS_TAG = secrets.randbelow(_TAGS // MAX_WORKERS) * MAX_WORKERS + index - 1


def worker_dir(spool_dir: Path, index: int) -> Path:
    """The spool of worker ``index`` (1-based) of a relay whose ``spool_dir`` is given."""
    return spool_dir / f"{WORKER_PREFIX}{index}"


def worker_dirs(spool_dir: Path) -> list[Path]:
    """The worker spools under ``spool_dir`` (``worker-<K>/``), by K."""
    if not spool_dir.is_dir():
        return []
    found = [(int(path.name.removeprefix(WORKER_PREFIX)), path) for path in spool_dir.iterdir()
             if path.name.startswith(WORKER_PREFIX)
             and path.name.removeprefix(WORKER_PREFIX).isdigit() and path.is_dir()]
    return [path for _, path in sorted(found)]


class Spool:
    """The spool directory. Create it with :meth:`open` (makes the subdirectories)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.queue_dir = root / "queue"
        self.state_dir = root / "state"
        self.lock_path = root / "lock"
        self.control_path = root / "control.sock"
        self._queue_dir_sync = DirectorySync(self.queue_dir)

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Spool:
        spool = cls(Path(root))
        for directory in (spool.tmp_dir, spool.queue_dir, spool.state_dir):
            directory.mkdir(parents=True, exist_ok=True)
        return spool

    def store(self, queue_id: str, envelope: Envelope, content: bytes) -> None:
        """Write the message durably: ``queue/<id>`` created, written and fsync'd in place (one
        file-system commit), then ``queue/`` fsync'd (shared by the threads storing at the same
        time). On an error the file is removed and the error goes up (the client is refused and
        sends the message again: a file left behind would be delivered twice)."""
        path, data = self.queue_file(queue_id, envelope, content)
        create_file(path, data)
        try:
            self._queue_dir_sync.sync()
        except OSError:
            path.unlink(missing_ok=True)
            raise

    def queue_file(self, queue_id: str, envelope: Envelope, content: bytes) -> tuple[Path, bytes]:
        """Where :meth:`store` puts a message, and the bytes it writes there (the envelope
        line, then the message)."""
        return self.queue_dir / queue_id, envelope.to_json(content) + b"\n" + content

    def read_content(self, queue_id: str) -> bytes:
        """The message bytes (after the envelope line)."""
        data = (self.queue_dir / queue_id).read_bytes()
        return data[data.index(b"\n") + 1:]

    def content_size(self, queue_id: str) -> int:
        """The size in bytes of the message (after the envelope line): the ``size=`` of the
        relay's log line for it; FileNotFoundError if it is not queued."""
        with (self.queue_dir / queue_id).open("rb") as file:
            envelope_line = file.readline()
            return os.fstat(file.fileno()).st_size - len(envelope_line)

    def journal(self, queue_id: str, entries: Iterable[str], *, sync: bool = True) -> None:
        """Append progress entries (``d 0``, ``b 1``, ``a 2 1700000000.0``) in one write.

        All or nothing: a write that fails part-way (ENOSPC, EIO) is cut back before the error
        goes up, and a line cut short anyway (a crash mid-write) is ignored when loaded.
        """
        data = "".join(f"{entry}\n" for entry in entries).encode("ascii")
        fd = os.open(self.state_dir / queue_id, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            try:
                write_all(fd, data)
            except OSError:
                os.ftruncate(fd, size)
                raise
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, queue_id: str, journaled: bool = True) -> None:
        """Forget a finished message: the message first, then its journal (if it has one)."""
        (self.queue_dir / queue_id).unlink(missing_ok=True)
        if journaled:
            (self.state_dir / queue_id).unlink(missing_ok=True)

    def read_message(self, queue_id: str) -> QueuedMessage | None:
        """One message with its progress, as the journal has it; None if it is not queued (or
        its file is cut short, see :func:`read_queue_file`)."""
        path = self.queue_dir / queue_id
        if not queue_id or "/" in queue_id or not path.is_file():
            return None
        return self._load_one(path, remove_cut_short=False)

    def scan(self) -> list[QueuedMessage]:
        """Every readable message with its progress, oldest first, changing nothing (a file
        cut short is skipped)."""
        messages = (self._load_one(path, remove_cut_short=False)
                    for path in sorted(self.queue_dir.iterdir()))
        return [m for m in messages if m is not None and not m.complete]

    def load(self) -> list[QueuedMessage]:
        """Every message in the queue, with its progress, oldest first; tidies leftovers.

        Temp files and queue files cut short (never acknowledged to a client), journals
        without a message and messages whose recipients are all final are removed.
        """
        for leftover in self.tmp_dir.iterdir():
            _log.info("removing unacknowledged temp file %s", leftover)
            leftover.unlink(missing_ok=True)
        messages = []
        for path in sorted(self.queue_dir.iterdir()):
            message = self._load_one(path, remove_cut_short=True)
            if message is None:
                continue
            if message.complete:
                self.remove(message.queue_id)
            else:
                messages.append(message)
        messages = self._complete_reported(messages)
        queued = {m.queue_id for m in messages}
        for journal in self.state_dir.iterdir():
            if journal.name not in queued and not (self.queue_dir / journal.name).exists():
                journal.unlink(missing_ok=True)
        return messages

    def _complete_reported(self, messages: list[QueuedMessage]) -> list[QueuedMessage]:
        """Journal the entries that a queued report stands for but its message's journal
        lacks (a crash after the report was stored); the messages still unfinished."""
        by_id = {m.queue_id: m for m in messages}
        for report in messages:
            original = by_id.get(report.envelope.report_of or "")
            if original is None:
                continue
            missing = [e for e in report.envelope.report_entries if not _applied(original, e)]
            if not missing:
                continue
            _log.info("queue %s: completing the journal from its report %s: %s",
                      original.queue_id, report.queue_id, ", ".join(missing))
            self.journal(original.queue_id, missing)
            original.journaled = True
            _apply_journal(original, "".join(f"{entry}\n" for entry in missing))
            if original.complete:
                self.remove(original.queue_id)
        return [m for m in messages if not m.complete]

    def _load_one(self, path: Path, *, remove_cut_short: bool) -> QueuedMessage | None:
        """The message of ``path`` with its progress; None for a file cut short (removed when
        ``remove_cut_short``) or unreadable (left in place)."""
        try:
            envelope, _ = read_queue_file(path.read_bytes())
        except CutShort as exc:
            if remove_cut_short:
                _log.warning("removing queue file %s, cut short by a crash before it was "
                             "acknowledged (%s)", path, exc)
                path.unlink(missing_ok=True)
            else:
                _log.info("skipping queue file %s: cut short (%s)", path, exc)
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Kept on disk for a human to look at; never deleted on a guess.
            _log.error("cannot read queue file %s (%s); left in place", path, exc)
            return None
        message = QueuedMessage(path.name, envelope)
        state_path = self.state_dir / path.name
        if state_path.exists():
            message.journaled = True
            _apply_journal(message, state_path.read_text("ascii", errors="replace"))
        return message


def _apply_journal(message: QueuedMessage, text: str) -> None:
    *lines, unfinished = text.split("\n")
    if unfinished:
        _log.warning("queue %s: ignoring a journal line cut short %r", message.queue_id,
                     unfinished)
    for line in lines:
        parts = line.split()
        try:
            if len(parts) == 2 and parts[0] in _FINAL:
                message.final[int(parts[1])] = True
            elif len(parts) == 3 and parts[0] == "a":
                message.failures = int(parts[1])
                message.next_try = float(parts[2])
            elif parts and parts[0] == "e":
                message.last_error = line[2:]
            elif len(parts) == 2 and parts[0] == "h" and parts[1] in ("0", "1"):
                message.held = parts[1] == "1"
            elif line == DELAY_NOTIFIED:
                message.delay_notified = True
            else:
                raise ValueError(line)
        except (ValueError, IndexError):
            _log.warning("queue %s: ignoring unreadable journal line %r", message.queue_id, line)


def _applied(message: QueuedMessage, entry: str) -> bool:
    """Whether the journal entry ``entry`` (a final state, or the delay notice) is in effect;
    one that names no recipient of ``message`` counts as in effect (nothing to complete)."""
    if entry == DELAY_NOTIFIED:
        return message.delay_notified
    state, _, index = entry.partition(" ")
    if state not in _FINAL or not index.isdigit() or int(index) >= len(message.final):
        return True
    return message.final[int(index)]


def error_entry(text: str) -> str:
    """The journal entry of a temporary error: one line, 7-bit (other characters escaped)."""
    return "e " + " ".join(text.split()).encode("ascii", "backslashreplace").decode("ascii")


def move_messages(source: Spool, target: Spool) -> int:
    """Move every message of ``source`` (queue files, journals, temp files) into ``target``,
    durably; the number of queue files moved. Both spools' locks must be held. Queue files
    move before journals and ``target`` is only loaded afterwards (a load drops journals
    without a message), so a crash midway leaves what the next move completes. A name
    already in ``target`` raises MtaLoggingError, moving nothing more."""
    moved = len(list(source.queue_dir.iterdir())) if source.queue_dir.is_dir() else 0
    for source_dir, target_dir in ((source.queue_dir, target.queue_dir),
                                   (source.state_dir, target.state_dir),
                                   (source.tmp_dir, target.tmp_dir)):
        if not source_dir.is_dir():
            continue
        for path in sorted(source_dir.iterdir()):
            destination = target_dir / path.name
            if destination.exists():
                raise MtaLoggingError(f"cannot move {path} into {target_dir}: "
                                      f"{destination} exists")
            path.rename(destination)
        fsync_directory(target_dir)
        fsync_directory(source_dir)
    if moved:
        _log.info("moved %d message(s) from the spool %s into %s", moved, source.root,
                  target.root)
    return moved


class SpoolLock:
    """The spool's lock file, held while a process works on the spool: the relay while it
    runs, a ``queue`` command while it changes a stopped relay's spool."""

    def __init__(self, spool: Spool) -> None:
        self.root = spool.root
        self.path = spool.lock_path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; False if another process (or holder) does."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def in_use(self) -> MtaLoggingError:
        """The error to raise when :meth:`acquire` keeps failing: the spool and its lock file."""
        return MtaLoggingError(f"the spool {self.root} is in use by another relay (its lock "
                               f"file {self.path} is held)")


def open_spool_dir(root: Path) -> Spool:
    """:meth:`Spool.open` for the relay's ``spool_dir`` (or a worker's spool under it): a
    directory it cannot make or write is the ConfigError on ``spool_dir`` naming it."""
    try:
        return Spool.open(root)
    except OSError as exc:
        raise ConfigError("spool_dir", str(root),
                          f"must be a directory the relay can write ({exc.strerror})") from None


def move_spools(directories: Iterable[Path], target: Spool) -> None:
    """:func:`move_messages` from the spool in each of ``directories`` (its lock taken
    meanwhile; MtaLoggingError if another process holds it) into ``target``, whose lock must
    be held."""
    for directory in directories:
        with locked(Spool.open(directory)) as source:
            move_messages(source, target)


@contextmanager
def locked(spool: Spool) -> Iterator[Spool]:
    """``spool`` with its lock held meanwhile; MtaLoggingError if another process holds it."""
    lock = SpoolLock(spool)
    if not lock.acquire():
        raise lock.in_use()
    try:
        yield spool
    finally:
        lock.release()


class DirectorySync:
    """fsync of a directory shared by the threads that need one (group commit).

    ``sync()`` returns once an fsync of the directory that *started after the call* has
    finished, so every rename the caller made before is on disk. Threads that arrive while an
    fsync is running wait for the next one, and one fsync then serves all of them.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._changed = threading.Condition()
        self._requested = 0  # sync() calls so far
        self._done = 0  # requests covered by a finished fsync
        self._running = False

    def sync(self) -> None:
        with self._changed:
            self._requested += 1
            ticket = self._requested
            while self._done < ticket:
                if self._running:
                    self._changed.wait()
                    continue
                self._running = True
                covered = self._requested
                try:
                    self._changed.release()
                    try:
                        fsync_directory(self.directory)
                    finally:
                        self._changed.acquire()
                finally:
                    self._running = False
                    self._changed.notify_all()
                self._done = max(self._done, covered)

