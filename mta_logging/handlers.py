"""The per-kind accounting file handler.

One handler writes one kind of record (delivered, deferred or bounce) to its own active file,
``<directory>/<file_name>``, whose first line is the formatter's header. It rolls the file over
when the next record would take it past ``max_size`` or, with archiving on, when
``archive_interval`` seconds have passed since the file was opened (also when no record comes: a
maintenance thread looks once a second). Rollover moves the file into ``archive_to``.

Guarantees (see the README's "Nothing lost" section):

* every record is handed to the OS (one ``os.write``) before ``emit`` returns; ``fsync`` policy
  ``never`` / ``rollover`` / ``always``;
* a process creates its active files exclusively (``O_EXCL``) and holds an advisory lock on each
  for its lifetime, so no two writers share a file and a file whose owner died is recognised
  (and archived) by the next process that starts;
* a write that fails half-way is cut back, so a torn line is never glued to the next record;
* every failure goes through ``handleError`` (stderr, never into the caller) and the handler
  recovers once the fault clears: directories and files are created again, a file deleted
  under it is written anew with what it held.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import schedule

from mta_logging import archive as _archive
from mta_logging.archive import FileNamer
from mta_logging.errors import ConfigError
from mta_logging.formatters import AccountingFormatter, outcome_of
from mta_logging.outcome import Kind

FSYNC_POLICIES = ("never", "rollover", "always")
MEGABYTE = 1_000_000
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
_ORPHAN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC


class KindFilter(logging.Filter):
    """Passes only records whose outcome is of one kind (routing by type)."""

    def __init__(self, kind: str | Kind) -> None:
        super().__init__()
        self.kind = Kind.parse(kind)

    def filter(self, record: logging.LogRecord) -> bool:
        outcome = getattr(record, "outcome", None)
        return outcome is not None and getattr(outcome, "kind", None) is self.kind


def _number(key: str, value: Any, allowed: str, *, minimum: float = 0.0,
            strict: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, allowed) from None
    if isinstance(value, bool) or math.isnan(number) or number < minimum or (
            strict and number == minimum):
        raise ConfigError(key, value, allowed)
    return number


class AccountingFileHandler(logging.Handler):
    """Writes one kind of accounting record to size-and-time rotated files.

    Arguments (all usable as ``dictConfig`` keys):

    ``kind``: ``delivered``/``deferred``/``bounce`` (or ``d``/``df``/``b``).
    ``directory``: where the active file lives; default ``<path>/<kind's directory name>``.
    ``path``: base directory when ``directory`` is not given (default ``accounting_files``).
    ``extension``: file extension (``tsv``). ``file_name``: template with ``{kind}``,
    ``{time}``, ``{host}``, ``{pid}``, ``{seq}``, ``{ext}`` (default ``{kind}.{time}.{ext}``).
    ``archiving``: move finished files into ``archive_to`` (a directory name inside
    ``directory``, or an absolute path). ``archive_interval``: seconds a file stays active
    (archiving only). ``max_size``: megabytes (10**6 bytes, decimals allowed) after which a new
    file is started; 0 = no limit. ``compress``: gzip archived files. ``retention_days`` /
    ``retention_files``: delete archived files older than N days / beyond the N newest.
    ``archive_empty``: archive a file holding only its header at the interval (default: reuse
    it). ``fsync``: ``never``, ``rollover`` or ``always``.

    Without a formatter, records are written by ``AccountingFormatter(kind=kind)``.
    """

    def __init__(
        self,
        kind: str | Kind = Kind.DELIVERED,
        directory: str | os.PathLike[str] | None = None,
        *,
        path: str | os.PathLike[str] = "accounting_files",
        extension: str = "tsv",
        file_name: str = _archive.DEFAULT_FILE_NAME,
        archiving: bool = False,
        archive_to: str | os.PathLike[str] = "archive",
        archive_interval: float = 86400,
        max_size: float = 200,
        compress: bool = False,
        retention_days: float | None = None,
        retention_files: int | None = None,
        archive_empty: bool = False,
        fsync: str = "never",
        level: int | str = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self.kind = Kind.parse(kind)
        self.directory = Path(directory) if directory is not None else (
            Path(path) / self.kind.directory)
        if not isinstance(extension, str) or "/" in extension or not extension.strip("."):
            raise ConfigError("extension", extension, "expected a file extension such as tsv")
        self.namer = FileNamer(file_name, self.kind.value, extension.lstrip("."))
        self.archiving = _flag("archiving", archiving)
        self.archive_dir = self.directory / archive_to  # an absolute archive_to stays absolute
        self.archive_interval = _number(
            "archive_interval", archive_interval,
            "expected a number of seconds greater than 0, such as 86400", strict=True)
        self.max_bytes = int(_number(
            "max_size", max_size,
            "expected a size in megabytes (10^6 bytes) such as 200 or 0.5; 0 = no limit")
            * MEGABYTE) or sys.maxsize
        self.compress = _flag("compress", compress)
        self.retention_days = None if retention_days is None else _number(
            "retention_days", retention_days, "expected a number of days greater than 0",
            strict=True)
        self.retention_files = None if retention_files is None else int(_number(
            "retention_files", retention_files, "expected a whole number of files, at least 1",
            minimum=1))
        self.archive_empty = _flag("archive_empty", archive_empty)
        if fsync not in FSYNC_POLICIES:
            raise ConfigError("fsync", fsync, "expected one of " + ", ".join(FSYNC_POLICIES))
        self.fsync = fsync
        self.formatter = AccountingFormatter(kind=self.kind)
        self.addFilter(KindFilter(self.kind))
        self._pattern = self.namer.pattern()
        self._fd: int | None = None
        self.path: Path | None = None  # the active file
        self._size = 0
        self._records = 0
        self._header_size = 0
        self._seq = 0
        self._rollover_at = math.inf
        self._pending: list[Path] = []
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.archiving:
            self.archive_dir.mkdir(parents=True, exist_ok=True)
        self.recover()
        _maintenance.register(self)

    # -- the write path ------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8")
            if self._fd is None:
                self._open()
            elif self._records and (self._size + len(data) > self.max_bytes
                                    or record.created >= self._rollover_at):
                self._rollover()
            self._write(data)
            self._records += 1
            if self.fsync == "always":
                os.fsync(self._fd)  # type: ignore[arg-type]
        except Exception:
            self.handleError(record)

    def _write(self, data: bytes) -> None:
        """One record, all or nothing: a partial write is cut back before the error goes up."""
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, view[written:])
        except BaseException:
            if written:
                try:
                    os.ftruncate(fd, self._size)
                except OSError:
                    os.write(fd, b"\n")  # could not cut it: at least end the torn line
                    self._size += written + 1
            raise
        self._size += written

    def header(self) -> str | None:
        make_header: Callable[[], str | None] | None = getattr(self.formatter, "header", None)
        return make_header() if make_header is not None else None

    # -- files ---------------------------------------------------------------------------------

    def open(self) -> Path:
        """Create the active file now (normally done by the first record); returns its path."""
        self.acquire()
        try:
            if self._fd is None:
                self._open()
            assert self.path is not None
            return self.path
        finally:
            self.release()

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self._seq += 1
        name = self.namer.render(now, self._seq)
        for number in range(10_000):
            candidate = self.directory / self.namer.suffixed(name, number)
            fd = _create_locked(candidate)
            if fd is not None:
                break
        else:
            raise FileExistsError(f"no free file name for {name} in {self.directory}")
        self._fd, self.path = fd, candidate
        self._size = self._records = 0
        header = self.header()
        if header is not None:
            try:
                self._write((header + "\n").encode("utf-8"))
            except BaseException:
                self._discard_current()
                raise
        self._header_size = self._size
        self._rollover_at = now + self.archive_interval if self.archiving else math.inf

    def _discard_current(self) -> None:
        fd, path = self._fd, self.path
        self._fd = self.path = None
        if path is not None:
            path.unlink(missing_ok=True)
        if fd is not None:
            os.close(fd)

    def _close_current(self) -> None:
        """Finish the active file: fsync (policy), archive it (if on), release it. A file
        holding only its header is removed instead, unless ``archive_empty``."""
        fd, path = self._fd, self.path
        if fd is None or path is None:
            return
        self._fd = self.path = None
        try:
            if self.fsync != "never":
                os.fsync(fd)
            if not self._records and not self.archive_empty:
                path.unlink(missing_ok=True)  # nothing but a header: nothing to keep
            elif self.archiving:
                self._archive(path)  # while we still hold the lock: nobody else moves it
        finally:
            os.close(fd)

    def _rollover(self) -> None:
        self._close_current()
        self._open()

    def doRollover(self) -> None:  # noqa: N802 - the name the stdlib's rotating handlers use
        """Finish the active file now and start a new one (at the next record)."""
        self.acquire()
        try:
            self._close_current()
        finally:
            self.release()

    def _archive(self, path: Path) -> Path:
        self.archive_dir.mkdir(parents=True, exist_ok=True)
        if self.compress:
            target = _archive.move_exclusive(
                path, self.archive_dir, _archive.pending_name(path.name), self.namer)
            self._pending.append(target)
        else:
            target = _archive.move_exclusive(path, self.archive_dir, path.name, self.namer)
        if self.fsync != "never":
            _archive.fsync_directory(self.archive_dir)
        if self.retention_days is not None or self.retention_files is not None:
            _archive.prune(self.archive_dir, self._pattern, max_age_days=self.retention_days,
                           max_files=self.retention_files)
        return target

    def recover(self) -> list[Path]:
        """Take care of files that a dead process left behind; returns what was archived.

        An active file nobody holds a lock on has no live owner: its torn last line (if any) is
        ended, and it is archived (archiving on) or left where it is; a file holding only a
        header is removed. Files waiting for compression are compressed.
        """
        found: list[Path] = []
        for entry in sorted(self.directory.iterdir()):
            if not self._pattern.match(entry.name) or entry.name.endswith(".gz"):
                continue
            fd = _lock_orphan(entry)
            if fd is None:
                continue
            try:
                if _holds_no_record(fd):
                    entry.unlink(missing_ok=True)
                    continue
                _end_torn_line(fd)
                if self.archiving:
                    found.append(self._archive(entry))
            except FileNotFoundError:
                continue
            finally:
                os.close(fd)
        if self.archiving and self.compress:
            self._pending.extend(p for p in self.archive_dir.glob(".*" + _archive.PENDING)
                                 if p not in self._pending)
        return found

    # -- maintenance (called once a second by the maintenance thread) ------------------------

    def maintain(self, now: float | None = None) -> None:
        """Interval rollover, recovery of a file deleted under us, pending compression."""
        now = time.time() if now is None else now
        self.acquire()
        try:
            if self._fd is not None:
                if os.fstat(self._fd).st_nlink == 0:
                    self._rewrite_deleted()
                if now >= self._rollover_at:
                    if self._records or self.archive_empty:
                        self._rollover()
                    else:
                        self._rollover_at = now + self.archive_interval
            pending = self._pending[:]
        except Exception:
            self.handleError(_maintenance_record(self, "rolling over"))
            return
        finally:
            self.release()
        self._compress(pending)

    def _compress(self, pending: list[Path]) -> None:
        for file in pending:
            try:
                if file.exists():
                    _archive.compress_pending(file, self.namer, fsync=self.fsync != "never")
                with self.lock:  # type: ignore[union-attr]
                    if file in self._pending:
                        self._pending.remove(file)
            except Exception:
                self.handleError(_maintenance_record(self, f"compressing {file}"))

    def _rewrite_deleted(self) -> None:
        """The active file was deleted under us: write what it held to a new file."""
        old_fd = self._fd
        assert old_fd is not None
        records, header_size = self._records, self._header_size
        self._fd = self.path = None
        try:
            self._open()
            offset = header_size
            while chunk := os.pread(old_fd, 1 << 20, offset):
                self._write(chunk)
                offset += len(chunk)
            self._records = records
        finally:
            os.close(old_fd)

    def flush(self) -> None:
        """Records are written to the OS one by one; nothing is buffered here."""

    def close(self) -> None:
        """Finish the active file (fsync per policy, archive it when archiving) and stop."""
        self.acquire()
        try:
            _maintenance.unregister(self)
            try:
                if self._fd is not None:
                    self._close_current()
            except Exception:
                self.handleError(_maintenance_record(self, "closing"))
            pending = self._pending[:]
        finally:
            self.release()
        self._compress(pending)
        super().close()

    def _after_fork(self) -> None:
        """In a forked child: leave the parent's file to the parent, start our own."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self.path = None
        self._pending = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind.directory} {self.directory}>"


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ConfigError(key, value, "expected true or false")


def _create_locked(path: Path) -> int | None:
    """Create ``path`` exclusively and lock it; None if it is taken (by a file or a lock)."""
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o644)
    except FileExistsError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # a starting process may have taken our new, empty file for an orphan and removed it
        mine, there = os.fstat(fd), os.stat(path)
        if mine.st_nlink and (mine.st_ino, mine.st_dev) == (there.st_ino, there.st_dev):
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _lock_orphan(path: Path) -> int | None:
    """Open and lock an existing active file if no live process holds it."""
    try:
        fd = os.open(path, _ORPHAN_FLAGS)
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_nlink:
            return fd
    except BlockingIOError:
        pass
    os.close(fd)
    return None


def _holds_no_record(fd: int) -> bool:
    """True for an empty file or one holding only a header line."""
    size = os.fstat(fd).st_size
    head = os.pread(fd, 65536, 0)
    newline = head.find(b"\n")
    if size == 0:
        return True
    return newline == size - 1 and not head.lstrip().startswith(b"{")


def _end_torn_line(fd: int) -> None:
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")


def _maintenance_record(handler: AccountingFileHandler, doing: str) -> logging.LogRecord:
    return logging.LogRecord(
        "mta_logging.handlers", logging.ERROR, __file__, 0,
        "accounting file handler for %s in %s failed while %s",
        (handler.kind.directory, handler.directory, doing), None,
    )


class _Maintenance:
    """One background thread per process that calls ``maintain()`` on every live handler once a
    second, driven by a private ``schedule.Scheduler``. It starts with the first handler and
    stops when the last one is closed (``logging.shutdown()`` closes them all)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: weakref.WeakSet[AccountingFileHandler] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._scheduler = schedule.Scheduler()
        self._scheduler.every(1).seconds.do(self._tick)

    def register(self, handler: AccountingFileHandler) -> None:
        with self._lock:
            self._handlers.add(handler)
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="mta-logging-maintenance",
                    daemon=True)
                self._thread.start()

    def unregister(self, handler: AccountingFileHandler) -> None:
        with self._lock:
            self._handlers.discard(handler)
            if not self._handlers and self._thread is not None:
                self._stop.set()
                self._thread = None

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(0.25):
            self._scheduler.run_pending()

    def _tick(self) -> None:
        now = time.time()
        for handler in list(self._handlers):
            handler.maintain(now)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._thread = None
        for handler in list(self._handlers):
            handler._after_fork()


_maintenance = _Maintenance()
os.register_at_fork(after_in_child=_maintenance.after_fork_in_child)

__all__ = ["AccountingFileHandler", "KindFilter", "FSYNC_POLICIES", "outcome_of"]
