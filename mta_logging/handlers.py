"""The per-kind accounting file handler.

One handler writes one kind of record (delivered, deferred or bounce) to its own active file,
``<directory>/<file_name>``, whose first line is the formatter's header. It starts a new file
when the next record would take the active one past ``max_size`` and, with archiving on, when
``archive_interval`` seconds have passed since the file was opened (also when no record comes: a
maintenance thread looks once a second). With archiving on, a finished file is moved into
``archive_to``; without, it stays where it is and the new file gets a new name.

Guarantees (see the README's "Nothing lost" section):

* every record is handed to the OS (``os.write``) before ``emit`` returns; ``fsync`` policy
  ``never`` / ``rollover`` / ``always``; the size of the active file is kept in memory, never
  read back per record;
* a process creates its active files exclusively (``O_EXCL``) and holds an advisory lock
  (``flock``) on each for its lifetime, so no two writers share a file and a file whose owner
  died is recognised by the next process that starts: its cut-short last line (if any) is cut
  off and the file is archived;
* a write that fails half-way is cut back, so a torn line is never glued to the next record;
* every failure goes through ``handleError`` (stderr, never into the caller) and the handler
  recovers once the fault clears: directories and files are created again, a file deleted
  under it is written anew with what it held, a file that could not be archived is archived
  later, and a record that was not written is never counted as written.
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
from dataclasses import dataclass
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
MAINTENANCE_THREAD = "mta-logging-maintenance"
PRUNE_EVERY = 60.0  # seconds between retention runs while no file is archived
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
_ORPHAN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
_MAX_SUFFIX = 100_000


class KindFilter(logging.Filter):
    """Passes only records whose outcome is of one kind (routing by type)."""

    def __init__(self, kind: str | Kind) -> None:
        super().__init__()
        self.kind = Kind.parse(kind)

    def filter(self, record: logging.LogRecord) -> bool:
        outcome = getattr(record, "outcome", None)
        return outcome is not None and getattr(outcome, "kind", None) is self.kind


@dataclass(slots=True, eq=False)
class _File:
    """An open accounting file this process holds the lock of."""

    fd: int
    path: Path
    name: str  # the rendered name without a collision suffix: what the archive is named after
    size: int = 0
    records: int = 0
    header_size: int = 0
    rollover_at: float = math.inf
    torn: bool = False  # a failed write could not be cut back yet


def _number(key: str, value: Any, allowed: str, *, minimum: float = 0.0,
            strict: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, allowed) from None
    if isinstance(value, bool) or not math.isfinite(number) or number < minimum or (
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
    (archiving only; fractions allowed). ``max_size``: megabytes (10**6 bytes, decimals
    allowed) after which a new file is started; 0 = no limit. ``compress``: gzip archived
    files. ``retention_days`` / ``retention_files``: delete archived files older than N days /
    beyond the N newest. ``archive_empty``: archive a file holding only its header (at the
    interval and on close; default: reuse it at the interval, remove it on close). ``fsync``:
    ``never``, ``rollover`` or ``always``.

    Without a formatter, records are written by ``AccountingFormatter(kind=kind)``. Files left
    behind by dead processes are taken care of when the first file is opened or at the first
    maintenance tick, whichever comes first (``recover()``).
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
        self.archiving = parse_flag("archiving", archiving)
        self.archive_dir = self.directory / archive_to  # an absolute archive_to stays absolute
        self.archive_interval = _number(
            "archive_interval", archive_interval,
            "expected a number of seconds greater than 0, such as 86400", strict=True)
        self.max_bytes = round(_number(
            "max_size", max_size,
            "expected a size in megabytes (10^6 bytes) such as 200 or 0.5; 0 = no limit")
            * MEGABYTE) or sys.maxsize
        self.compress = parse_flag("compress", compress)
        self.retention_days = None if retention_days is None else _number(
            "retention_days", retention_days, "expected a number of days greater than 0",
            strict=True)
        self.retention_files = None if retention_files is None else int(_number(
            "retention_files", retention_files, "expected a whole number of files, at least 1",
            minimum=1))
        self.archive_empty = parse_flag("archive_empty", archive_empty)
        if fsync not in FSYNC_POLICIES:
            raise ConfigError("fsync", fsync, "expected one of " + ", ".join(FSYNC_POLICIES))
        self.fsync = fsync
        self.formatter = AccountingFormatter(kind=self.kind)
        self._own_filter = type(self).filter is not logging.Filterer.filter
        self._pattern = self.namer.pattern()
        self._file: _File | None = None
        self._finished: list[_File] = []  # finished files that could not be archived yet
        self._pending: list[Path] = []  # archived files waiting for compression
        self._pending_lock = threading.Lock()  # guards _pending only; held for no I/O
        self._compressing = threading.Lock()  # one compression run at a time in this process
        self._closed = False
        self._recovered = False
        self._seq = 0
        self._open_hint = ("", 0)  # (name, suffix) last used: skip names known to be taken
        self._archive_hint = ("", 0)
        self._next_prune = 0.0
        self._prune_due = False  # a rollover left retention to the next tick
        self._reported: dict[str, str] = {}  # what failed → the error last reported for it
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.archiving:
            self.archive_dir.mkdir(parents=True, exist_ok=True)
        _maintenance.register(self)

    @property
    def path(self) -> Path | None:
        """The active file, or None while none is open."""
        file = self._file
        return file.path if file is not None else None

    # -- the write path ------------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """Routing by kind: records of other kinds (and records without an outcome) are turned
        away here, before the filter chain and the lock.

        A logger set up by ``configure`` has one handler per kind, so two out of three records
        reaching a handler are not its own. Filters added to the handler still run for the
        records that pass; ``KindFilter`` does the same routing for other handlers.
        """
        try:
            if record.outcome.kind is not self.kind:  # type: ignore[attr-defined]
                return False
        except AttributeError:  # no outcome: not an accounting record
            return False
        # Handler.handle, with the filter chain run only when there are filters (or a
        # subclass filters by itself), and the lock taken by its own context manager (two
        # Python-level calls fewer per record)
        if self.filters or self._own_filter:
            passed = self.filter(record)
            if not passed:
                return False
            if isinstance(passed, logging.LogRecord):  # Python 3.12+: a filter may replace it
                record = passed
        lock = self.lock
        if lock is None:  # a subclass that wants no lock (Handler.acquire allows it)
            self.emit(record)
        else:
            with lock:
                self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8")
            file = self._file
            if file is None:
                file = self._open()
            elif file.records and (file.size + len(data) > self.max_bytes
                                   or record.created >= file.rollover_at):
                file = self._rollover(prune=False)  # retention: at the next tick
            self._write(file, data)
            file.records += 1
            if self.fsync == "always":
                os.fsync(file.fd)
        except Exception:
            self.handleError(record)

    def _write(self, file: _File, data: bytes) -> None:
        """Append ``data`` to ``file`` whole, or not at all: a partial write is cut back before
        the error goes up (and, if even that fails, before anything else is written)."""
        fd = file.fd
        if file.torn:
            os.ftruncate(fd, file.size)
            file.torn = False
        written = 0
        try:
            written = os.write(fd, data)
            if written < len(data):
                view = memoryview(data)
                while written < len(data):
                    written += os.write(fd, view[written:])
        except BaseException:
            if written:
                try:
                    os.ftruncate(fd, file.size)
                except OSError:
                    file.torn = True
            raise
        file.size += written

    def header(self) -> str | None:
        make_header: Callable[[], str | None] | None = getattr(self.formatter, "header", None)
        return make_header() if make_header is not None else None

    def _header_bytes(self) -> bytes:
        header = self.header()
        return b"" if header is None else (header + "\n").encode("utf-8")

    # -- files ---------------------------------------------------------------------------------

    def open(self) -> Path:
        """Create the active file now (normally done by the first record); returns its path."""
        self.acquire()
        try:
            file = self._file if self._file is not None else self._open()
            return file.path
        finally:
            self.release()

    def _open(self) -> _File:
        if not self._recovered:
            try:
                self._recover()
            except Exception:
                self._report("taking care of files left behind")
        self._file = self._create_file()
        return self._file

    def _create_file(self, again: _File | None = None) -> _File:
        """A new, exclusively created and locked file with the header written (``again``: a
        file deleted under us, whose name is tried first)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        if again is not None:
            name = again.name
            fd = _create_locked(self.directory / again.path.name)
            if fd is not None:
                return self._start_file(fd, self.directory / again.path.name, name, now)
        else:
            self._seq += 1
            name = self.namer.render(now, self._seq)
        # names taken before are skipped; with archiving, finished files leave the directory
        # and free their names again
        hint_name, hint = self._open_hint
        start = hint if hint_name == name and not self.archiving else 0
        for number in range(start, start + _MAX_SUFFIX):
            candidate = self.directory / self.namer.suffixed(name, number)
            fd = _create_locked(candidate)
            if fd is not None:
                break
        else:
            raise FileExistsError(f"no free file name for {name} in {self.directory}")
        self._open_hint = (name, number + 1)
        return self._start_file(fd, candidate, name, now)

    def _start_file(self, fd: int, path: Path, name: str, now: float) -> _File:
        file = _File(fd, path, name,
                     rollover_at=now + self.archive_interval if self.archiving else math.inf)
        try:
            header = self._header_bytes()
            if header:
                self._write(file, header)
            if self.fsync != "never":
                _archive.fsync_directory(self.directory)
        except BaseException:
            path.unlink(missing_ok=True)
            os.close(fd)
            raise
        file.header_size = file.size
        return file

    def _rollover(self, prune: bool = True) -> _File:
        self._finish_current(prune)
        return self._open()

    def doRollover(self) -> None:  # noqa: N802 - the name the stdlib's rotating handlers use
        """Finish the active file now (archive it when archiving); the next record starts a new
        one."""
        self.acquire()
        try:
            self._finish_current()
        finally:
            self.release()

    def _finish_current(self, prune: bool = True) -> None:
        """Finish the active file: fsync (policy), archive it (if on), release it. A file
        holding only its header is removed instead, unless ``archive_empty``. A failure to
        archive is reported and the file kept (locked) to be archived later. ``prune=False``
        leaves retention to the next maintenance tick (listing the archive can take
        milliseconds: not on the write path)."""
        file = self._file
        if file is None:
            return
        if os.fstat(file.fd).st_nlink == 0:
            self._rewrite_deleted()  # raises if that fails: then the file stays current
            file = self._file
            assert file is not None
        self._file = None
        if file.torn:
            try:
                os.ftruncate(file.fd, file.size)
                file.torn = False
            except OSError:
                self._report(f"cutting a failed write back out of {file.path}")
        if not file.records and not self.archive_empty:
            file.path.unlink(missing_ok=True)  # nothing but a header: nothing to keep
            os.close(file.fd)
            return
        if self.fsync != "never":
            try:
                os.fsync(file.fd)
            except OSError:
                self._report(f"saving {file.path} to disk")
        if self.archiving:
            self._finished.append(file)
            self._archive_finished(prune)
        else:
            os.close(file.fd)

    def _archive_finished(self, prune: bool = True) -> list[Path]:
        """Archive the finished files, oldest first; stop at the first failure (reported);
        then apply retention (``prune``), or have the next maintenance tick apply it."""
        archived: list[Path] = []
        while self._finished:
            file = self._finished[0]
            doing = f"archiving {file.path}"
            try:
                target = self._archive(file)
            except Exception:
                self._report(doing)
                break
            self._reported.pop(doing, None)
            self._finished.pop(0)
            os.close(file.fd)
            if target is not None:
                archived.append(target)
                if self.compress:
                    self._add_pending(target)
        if archived:
            if prune:
                self._prune(time.time())
            else:
                self._prune_due = True
        return archived

    def _archive(self, file: _File) -> Path | None:
        """Move a file whose lock we hold into the archive; None if it was there already."""
        self.archive_dir.mkdir(parents=True, exist_ok=True)
        if os.fstat(file.fd).st_nlink > 1 and _linked_in(self.archive_dir, file.fd):
            os.unlink(file.path)  # a crash came between linking it there and unlinking it here
            return None
        hint_name, hint = self._archive_hint
        target, number = _archive.link_exclusive(  # under the name it had, if that is free
            file.path, self.archive_dir, file.name, self.namer, prefer=file.path.name,
            start=hint if hint_name == file.name else 0, hidden=self.compress)
        if number >= 0:
            self._archive_hint = (file.name, number + 1)
        file.path.unlink(missing_ok=True)  # (missing: someone removed it meanwhile; it is moved)
        if self.fsync != "never":
            try:
                _archive.fsync_directory(self.archive_dir)
                _archive.fsync_directory(file.path.parent)
            except OSError:  # the move is done; only its durability is in doubt
                self._report(f"saving the move of {file.path} to disk")
        return target

    def _prune(self, now: float) -> None:
        self._prune_due = False
        if self.retention_days is None and self.retention_files is None:
            return
        self._next_prune = now + PRUNE_EVERY
        try:
            _archive.prune(self.archive_dir, self._pattern, max_age_days=self.retention_days,
                           max_files=self.retention_files, now=now)
        except FileNotFoundError:
            pass  # no archive directory (yet): nothing to prune
        except Exception:
            self._report(f"deleting old files in {self.archive_dir}")

    def recover(self) -> list[Path]:
        """Take care of files that dead processes left behind; returns what was archived.

        An active file nobody holds a lock on has no live owner: a last line cut short (by a
        crash mid-write, whose record was never acknowledged) is cut off; a file holding
        nothing but a header is removed; any other is archived (archiving on) or left where it
        is. Archived files waiting for compression are compressed by the next maintenance tick.
        """
        self.acquire()
        try:
            return self._recover()
        finally:
            self.release()

    def _recover(self) -> list[Path]:
        self.directory.mkdir(parents=True, exist_ok=True)
        header = self._header_bytes()
        for entry in sorted(self.directory.iterdir()):
            if not self._pattern.match(entry.name) or entry.name.endswith(".gz"):
                continue
            fd = _lock_orphan(entry)
            if fd is None:
                continue
            try:
                size = _cut_torn_line(fd)
                if size == 0 or (size == len(header) and os.pread(fd, size, 0) == header):
                    entry.unlink()
                    os.close(fd)
                    continue
            except BaseException:
                os.close(fd)
                raise
            if self.archiving:
                self._finished.append(_File(fd, entry, entry.name, size=size))
            else:
                os.close(fd)
        self._recovered = True
        archived = self._archive_finished() if self._finished else []
        if self.archiving and self.compress and self.archive_dir.is_dir():
            for hidden in self.archive_dir.glob(".*" + _archive.PENDING):
                if self._pattern.match(_archive.visible_name(hidden.name)):
                    self._add_pending(hidden)
            for staged in self.archive_dir.glob(".*" + _archive.STAGED):
                _archive.finish_staged(staged)
        return archived

    # -- maintenance (called once a second by the maintenance thread) ------------------------

    def maintain(self, now: float | None = None) -> None:
        """Interval rollover, recovery of a file deleted under us, archiving what could not be
        archived before, retention, compression. Never raises: failures go to handleError."""
        self._maintain(time.time() if now is None else now, None)

    def _maintain(self, now: float, stop: threading.Event | None) -> None:
        lock = self.lock  # None: a subclass without a lock serialises its calls itself
        # the thread gives up waiting when it is told to stop: close() may hold our lock and
        # wait for the thread (logging.shutdown calls close with the handler lock held)
        while lock is not None and not lock.acquire(timeout=0.05):
            if stop is not None and stop.is_set():
                return
        try:
            if not self._closed:
                self._maintain_locked(now)
        finally:
            if lock is not None:
                lock.release()
        self._compress()

    def _maintain_locked(self, now: float) -> None:
        if not self._recovered:
            self._attempt("taking care of files left behind", self._recover)
        file = self._file
        if file is not None:
            if os.fstat(file.fd).st_nlink == 0:
                self._attempt(f"writing anew {file.path}, deleted under us",
                              self._rewrite_deleted)
            file = self._file
            if file is not None and now >= file.rollover_at:
                if file.records or self.archive_empty:
                    self._attempt("rolling over", self._rollover)
                else:
                    file.rollover_at = now + self.archive_interval  # reuse the empty file
        if self._finished:
            self._archive_finished()
        if (now >= self._next_prune or self._prune_due) and self.archiving:
            self._prune(now)

    def _attempt(self, doing: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception:
            self._report(doing)
        else:
            self._reported.pop(doing, None)

    def _add_pending(self, file: Path) -> None:
        with self._pending_lock:
            if file not in self._pending:
                self._pending.append(file)

    def _compress(self) -> None:
        """Compress the archived files waiting for it (outside the handler lock: records keep
        being written meanwhile)."""
        with self._pending_lock:
            pending = self._pending[:]
        if not pending:
            return
        with self._compressing:
            for file in pending:
                doing = f"compressing {file}"
                try:
                    _archive.compress_pending(file, self.namer, fsync=self.fsync != "never")
                except FileNotFoundError:
                    pass  # compressed and removed by another process meanwhile
                except Exception:
                    self._report(doing)
                    continue
                self._reported.pop(doing, None)
                with self._pending_lock:
                    if file in self._pending:
                        self._pending.remove(file)

    def _rewrite_deleted(self) -> None:
        """The active file was deleted under us: write what it held to a new file. If that
        fails, the deleted file stays the active one (its records are still readable through
        our descriptor) and the next attempt tries again."""
        old = self._file
        assert old is not None
        new = self._create_file(again=old)
        try:
            offset = old.header_size
            while offset < old.size:
                chunk = os.pread(old.fd, min(1 << 20, old.size - offset), offset)
                if not chunk:
                    break
                self._write(new, chunk)
                offset += len(chunk)
        except BaseException:
            new.path.unlink(missing_ok=True)
            os.close(new.fd)
            raise
        new.records, new.rollover_at = old.records, old.rollover_at
        self._file = new
        os.close(old.fd)

    def _report(self, doing: str) -> None:
        """handleError for a failure outside a record's write (call from an except block). The
        same failure repeating (each maintenance tick retries) is reported once."""
        error = repr(sys.exc_info()[1])
        if self._reported.get(doing) == error:
            return
        self._reported[doing] = error
        self.handleError(_maintenance_record(self, doing))

    def flush(self) -> None:
        """Records are written to the OS one by one; nothing is buffered here."""

    def close(self) -> None:
        """Finish the active file (fsync per policy, archive it when archiving, compress it
        when compressing) and stop. A file that cannot be archived now is left in place for
        the next start to archive."""
        _maintenance.unregister(self)
        self.acquire()
        try:
            self._closed = True
            try:
                self._finish_current()
            except Exception:
                self._report("closing")
                if self._file is not None:
                    os.close(self._file.fd)
                    self._file = None
            if self._finished:
                self._archive_finished()
            if self._prune_due:
                self._prune(time.time())  # retention a rollover left for a tick that never came
            for file in self._finished:
                os.close(file.fd)  # unlocked: the next start archives it
            self._finished.clear()
        finally:
            self.release()
        self._compress()
        super().close()

    def _after_fork(self) -> None:
        """In a forked child: leave the parent's files to the parent, start our own."""
        for file in [self._file, *self._finished]:
            if file is not None:
                os.close(file.fd)
        self._file = None
        self._finished = []
        self._pending = []
        self._pending_lock = threading.Lock()
        self._compressing = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind.directory} {self.directory}>"


def parse_flag(key: str, value: Any) -> bool:
    """A boolean setting: a bool, or true/false, yes/no, on/off, 1/0 in any case."""
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
    # a starting process may have taken our new, empty file for an orphan and removed it
    return _locked_at(path, fd)


def _lock_orphan(path: Path) -> int | None:
    """Open and lock an existing active file if no live process holds it."""
    try:
        fd = os.open(path, _ORPHAN_FLAGS)
    except (FileNotFoundError, IsADirectoryError):
        return None
    # its owner may have archived it and a new file taken the name between open and lock
    return _locked_at(path, fd)


def _locked_at(path: Path, fd: int) -> int | None:
    """Lock ``fd`` without waiting; keep it only if it is still the file named ``path``.
    Otherwise (locked by someone else, or no longer at that name) close it and return None."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _is(path, fd):
            return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _is(path: Path, fd: int) -> bool:
    """True if ``path`` names the (still linked) file open as ``fd``."""
    mine = os.fstat(fd)
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    return mine.st_nlink > 0 and (mine.st_ino, mine.st_dev) == (there.st_ino, there.st_dev)


def _linked_in(directory: Path, fd: int) -> bool:
    """True if ``directory`` holds a link to the file open as ``fd``."""
    mine = os.fstat(fd)
    with os.scandir(directory) as scan:
        return any(entry.inode() == mine.st_ino
                   and entry.stat(follow_symlinks=False).st_dev == mine.st_dev for entry in scan)


def _cut_torn_line(fd: int) -> int:
    """Cut off a last line that has no line end (its write was cut short); returns the size."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end != size:
        os.ftruncate(fd, end)
    return end


def _maintenance_record(handler: AccountingFileHandler, doing: str) -> logging.LogRecord:
    """A record for handleError about a failure that is not one record's: its message names the
    handler, what it was doing and the error, readable as it is printed."""
    error = sys.exc_info()[1]
    reason = f": {type(error).__name__}: {error}" if error is not None else ""
    return logging.LogRecord(
        "mta_logging.handlers", logging.ERROR, __file__, 0,
        f"accounting file handler for {handler.kind.directory} records in {handler.directory} "
        f"failed while {doing}{reason}", None, None,
    )


class _Maintenance:
    """One background thread per process that calls ``maintain()`` on every live handler once a
    second, driven by a ``schedule.Scheduler``. It starts with the first handler and stops (and
    is joined) when the last one is closed (``logging.shutdown()`` closes them all)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: weakref.WeakSet[AccountingFileHandler] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def register(self, handler: AccountingFileHandler) -> None:
        with self._lock:
            self._handlers.add(handler)
            if self._thread is None:
                self._start()

    def unregister(self, handler: AccountingFileHandler) -> None:
        with self._lock:
            self._handlers.discard(handler)
            thread = self._thread
            if self._handlers or thread is None:
                return
            self._thread = None
            self._stop.set()
        if thread is not threading.current_thread():
            thread.join()

    def _start(self) -> None:
        self._stop = stop = threading.Event()
        scheduler = schedule.Scheduler()
        scheduler.every(1).seconds.do(self._tick, stop)
        self._thread = threading.Thread(target=self._run, args=(scheduler, stop),
                                        name=MAINTENANCE_THREAD, daemon=True)
        self._thread.start()

    @staticmethod
    def _run(scheduler: schedule.Scheduler, stop: threading.Event) -> None:
        while not stop.wait(0.1):
            scheduler.run_pending()

    def _tick(self, stop: threading.Event) -> None:
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            if stop.is_set():
                return
            try:
                handler._maintain(time.time(), stop)
            except Exception:  # a bug here must not end maintenance for every handler
                handler._report("maintenance")

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._thread = None
        handlers = list(self._handlers)
        for handler in handlers:
            handler._after_fork()
        if handlers:
            self._start()


_maintenance = _Maintenance()
os.register_at_fork(after_in_child=_maintenance.after_fork_in_child)

__all__ = ["AccountingFileHandler", "KindFilter", "FSYNC_POLICIES", "MAINTENANCE_THREAD",
           "outcome_of"]
