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

A rollover made by a logging call touches no file but the one it writes its record to. The
maintenance thread keeps a *spare* ready — a hidden, locked, exclusively created file
(``.<kind>.<pid>.<n>.<ext>.spare``) holding the header — once the active file is half full,
near its interval's end, or the handler has rolled over before; the logging call swaps it in
and hands the finished file to that thread, which then (within a tenth of a second) gives the
new file its visible name (rendered with the time of the swap), fsyncs (policy) and archives
the finished one, and prepares the next spare. Without a spare ready, the logging call
finishes the old file and creates the new one itself, as before; so it does when finished
files pile up (``MAX_RETIRED``) or the handler is closed.
"""

from __future__ import annotations

import collections
import fcntl
import functools
import itertools
import logging
import math
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import schedule

from mta_logging import archive as _archive
from mta_logging.archive import FileNamer
from mta_logging.errors import ConfigError
from mta_logging.formatters import AccountingFormatter, outcome_of
from mta_logging.logger import WRITE_FAILED
from mta_logging.outcome import Kind

FSYNC_POLICIES = ("never", "rollover", "always")
MEGABYTE = 1_000_000
MAINTENANCE_THREAD = "mta-logging-maintenance"
PRUNE_EVERY = 60.0  # seconds between retention runs while no file is archived
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
_ORPHAN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
_MAX_SUFFIX = 100_000
SPARE = ".spare"  # ending of a spare file's hidden name
SPARE_AHEAD = 2.0  # seconds before its interval ends that a file gets a spare ready
MAX_RETIRED = 32  # finished files waiting for the thread before a logging call settles them
_spare_numbers = itertools.count(1)
# held while a spare is made and put in place: close() and fork() wait for one in the making
# (so that close removes it and a forked child sees its descriptor to close)
_preparing = threading.Lock()


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
    named: bool = True  # False: a spare (hidden name)
    header: bytes = b""  # a spare's header, to check it is still the formatter's
    started: float = 0.0  # a spare in use: when (its name's {time}) ...
    seq: int = 0  # ... and its {seq}


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


_FILTER = logging.Filterer.filter
_FORMAT = logging.Handler.format


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
        self._filter_set = self._format_set = False  # (instance attributes: read per record)
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
        self._pattern = self.namer.pattern()
        self._spare_pattern = re.compile(  # .<kind>.<pid>.<n>.<ext>.spare
            r"\." + re.escape(self.kind.value) + r"\.(\d+)\.\d+\." + re.escape(self.namer.extension)
            + re.escape(SPARE) + r"\Z")
        self._file: _File | None = None
        self._spare: _File | None = None  # the next active file, ready (guarded by _spare_lock)
        self._spare_lock = threading.Lock()  # held for no I/O
        self._retired: collections.deque[_File] = collections.deque()  # written no more
        self._settling = threading.RLock()  # naming, archiving, retention; inside self.lock
        self._finished: list[_File] = []  # retired files not settled yet (oldest first)
        self._rolled = False  # a logging call rolled over: keep a spare ready from now on
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

    # ``filter``/``format`` set on the instance (``mock.patch.object`` does it) are noticed
    # here, so that handle() and emit() use them; a subclass's or a patched class's are
    # noticed by comparing the class attribute at each record
    _filter_set = False
    _format_set = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "filter" or name == "format":
            object.__setattr__(self, f"_{name}_set", True)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        if name == "filter" or name == "format":
            object.__setattr__(self, f"_{name}_set", False)

    @property
    def path(self) -> Path | None:
        """The active file, or None while none is open (a file started by a rollover gets its
        visible name here if the maintenance thread has not given it yet)."""
        file = self._file
        if file is not None and not file.named:
            self._settle()
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
        if self.filters or self._filter_set or self.__class__.filter is not _FILTER:
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
            formatter = self.formatter
            if formatter and not self._format_set and self.__class__.format is _FORMAT:
                text = formatter.format(record)  # what Handler.format does, one call less
            else:
                text = self.format(record)
            data = (text + "\n").encode("utf-8")
            file = self._file
            rolled = False
            if file is None:
                file = self._open()
            elif file.records and (file.size + len(data) > self.max_bytes
                                   or record.created >= file.rollover_at):
                file = self._roll()
                rolled = True
            if file.torn:
                self._write(file, data)
            else:  # _write's usual case, inline: one whole write
                written = os.write(file.fd, data)  # raising, it wrote nothing
                if written == len(data):
                    file.size += written
                else:
                    self._write(file, data, written)
            file.records += 1
            if self.fsync == "always":
                os.fsync(file.fd)
            if rolled:
                self._rolled_over()
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """``Handler.handleError``, after marking the record ``write_failed`` (the signal that
        ``AccountingLogger(on_write_error=...)`` passes to its caller)."""
        record.__dict__[WRITE_FAILED] = True
        super().handleError(record)

    def _write(self, file: _File, data: bytes, done: int = 0) -> None:
        """Append ``data`` to ``file`` whole, or not at all: a partial write is cut back before
        the error goes up (and, if even that fails, before anything else is written).
        ``done``: how much of ``data`` a first write of the caller's wrote already."""
        fd = file.fd
        if file.torn:
            os.ftruncate(fd, file.size)
            file.torn = False
        written = done
        try:
            if not written:
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
        finally:
            self.release()
        if not file.named:
            self._settle()
        return file.path

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
            name = again.name = again.name or self.namer.render(again.started, again.seq)
            first = self.directory / (again.path.name if again.named else name)
            fd = _create_locked(first)
            if fd is not None:
                return self._start_file(fd, first, name, now)
        else:
            self._seq += 1
            name = self.namer.render(now, self._seq)
        candidate, number, fd = self._free_name(name, _create_locked)
        return self._start_file(fd, candidate, name, now)

    def _free_name(self, name: str, take: Callable[[Path], int | None]) -> tuple[Path, int, int]:
        """The first name (``name``, then with suffixes) that ``take`` succeeds with."""
        # names taken before are skipped; with archiving, finished files leave the directory
        # and free their names again
        hint_name, hint = self._open_hint
        start = hint if hint_name == name and not self.archiving else 0
        for number in range(start, start + _MAX_SUFFIX):
            candidate = self.directory / self.namer.suffixed(name, number)
            result = take(candidate)
            if result is not None:
                self._open_hint = (name, number + 1)
                return candidate, number, result
        raise FileExistsError(f"no free file name for {name} in {self.directory}")

    def _start_file(self, fd: int, path: Path, name: str, now: float) -> _File:
        file = _File(fd, path, name,
                     rollover_at=now + self.archive_interval if self.archiving else math.inf)
        self._begin(file, self._header_bytes())
        if self.fsync != "never":
            try:
                _archive.fsync_directory(self.directory)
            except BaseException:
                path.unlink(missing_ok=True)
                os.close(fd)
                raise
        return file

    def _begin(self, file: _File, header: bytes) -> None:
        """Write the header into a new file; on failure remove the file and close it."""
        try:
            if header:
                self._write(file, header)
        except BaseException:
            file.path.unlink(missing_ok=True)
            os.close(file.fd)
            raise
        file.header_size = file.size

    # -- rollover: a spare swapped in, the finished file settled off the write path ---------

    def _roll(self) -> _File:
        """Start a new active file in place of the current one (lock held). With a spare ready
        this makes no file system call; the finished file is left for ``_settle``."""
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.header != self._header_bytes():  # formatter changed
            self._discard(spare)
            spare = None
        if spare is None:
            # none ready (the first rollover, or files filling faster than the thread looks):
            # finish the old file and start the new one here, as a handler without the thread
            self._retire()
            self._settle(prune=False)
            self._file = self._create_file()
            return self._file
        now = time.time()
        self._seq += 1
        spare.started, spare.seq = now, self._seq  # its name is rendered off the write path
        spare.rollover_at = now + self.archive_interval if self.archiving else math.inf
        self._retire()
        self._file = spare
        return spare

    def _retire(self) -> None:
        """Hand the active file (if any) to ``_settle``: nothing is written to it any more."""
        if self._file is not None:
            self._retired.append(self._file)
            self._file = None

    def _take_retired(self) -> None:
        while self._retired:
            self._finished.append(self._retired.popleft())

    def _rolled_over(self) -> None:
        """After a logging call's rollover and its record's write (lock held): the thread
        settles the finished file and prepares the next spare within a tenth of a second."""
        self._rolled = True
        if self._closed or len(self._retired) > MAX_RETIRED:
            self._settle(prune=False)  # no thread to do it, or it lags behind: do it here
        else:
            _maintenance.wake(self)

    def _create_spare(self) -> _File:
        """A new hidden file, created exclusively and locked, with the header written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        header = self._header_bytes()
        for _attempt in range(_MAX_SUFFIX):
            path = self.directory / (f".{self.kind.value}.{os.getpid()}.{next(_spare_numbers)}"
                                     f".{self.namer.extension}{SPARE}")
            fd = _create_locked(path)
            if fd is not None:
                break
        else:
            raise FileExistsError(f"no free name for a spare file in {self.directory}")
        spare = _File(fd, path, "", named=False, header=header)
        self._begin(spare, header)
        return spare

    def _wants_spare(self, now: float) -> bool:
        file = self._file
        return file is not None and (self._rolled or 2 * file.size >= self.max_bytes
                                     or now + SPARE_AHEAD >= file.rollover_at)

    def _prepare_spare(self, now: float) -> None:
        """Have a spare ready if the active file will need one soon (maintenance thread); a
        spare deleted meanwhile (a cleanup job, the directory removed) is replaced."""
        with _preparing:
            if self._closed:
                return
            with self._spare_lock:  # (a logging call may take the spare meanwhile)
                spare = self._spare
                deleted = spare is not None and os.fstat(spare.fd).st_nlink == 0
                if deleted:
                    self._spare = None
            if spare is not None:
                if not deleted:
                    return
                self._discard(spare)
            if not self._wants_spare(now):
                return
            doing = f"preparing the next file in {self.directory}"
            try:
                spare = self._create_spare()
            except Exception:
                self._report(doing)
                return
            self._reported.pop(doing, None)
            with self._spare_lock:
                self._spare = spare

    def _discard(self, spare: _File) -> None:
        try:
            spare.path.unlink(missing_ok=True)
        except OSError:
            self._report(f"removing the unused file {spare.path}")
        os.close(spare.fd)

    def _give_name(self, file: _File) -> None:
        """Link a spare in use to its visible name (a free one) and drop the hidden one."""
        hidden = file.path
        file.name = file.name or self.namer.render(file.started, file.seq)
        target, _number, _ = self._free_name(file.name, functools.partial(_link, hidden))
        file.path, file.named = target, True
        hidden.unlink(missing_ok=True)
        if self.fsync != "never":
            _archive.fsync_directory(self.directory)

    def doRollover(self) -> None:  # noqa: N802 - the name the stdlib's rotating handlers use
        """Finish the active file now (archive it when archiving); the next record starts a new
        one."""
        self.acquire()
        try:
            self._retire()
            self._settle()
        finally:
            self.release()

    def flush(self) -> None:
        """Records are written to the OS one by one; nothing is buffered here. What a rollover
        left to the maintenance thread (naming the new file, archiving the finished one) is
        done now."""
        file = self._file
        if self._retired or self._finished or (file is not None and not file.named):
            self._settle()

    def _settle(self, prune: bool = True) -> list[Path]:
        """Finish the retired files, oldest first (stop at the first failure, reported), then
        apply retention (``prune``, or leave it to the next tick); name the files that have no
        visible name yet."""
        with self._settling:
            self._take_retired()
            archived = self._archive_finished(prune)
            # what could not be finished yet is given its visible name all the same, in the
            # order the files were started (a file retired meanwhile before the active one)
            active = self._file
            self._take_retired()
            for file in (*self._finished, active):
                if file is not None and not file.named:
                    self._attempt(f"naming {file.path}", functools.partial(self._give_name, file))
            return archived

    def _archive_finished(self, prune: bool = True) -> list[Path]:
        archived: list[Path] = []
        with self._settling:
            while self._finished:
                file = self._finished[0]
                doing = f"archiving {file.path}" if self.archiving else f"finishing {file.path}"
                try:
                    target = self._finish(file)
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

    def _finish(self, file: _File) -> Path | None:
        """Finish a file nobody writes to any more: cut back a failed write, drop it if it holds
        only its header (unless ``archive_empty``), write it anew if it was deleted under us,
        name it, fsync (policy) and archive it (when archiving). Returns the archived path."""
        if file.torn:
            try:
                os.ftruncate(file.fd, file.size)
                file.torn = False
            except OSError:
                self._report(f"cutting a failed write back out of {file.path}")
        if file.size <= file.header_size and not self.archive_empty:
            file.path.unlink(missing_ok=True)  # nothing but a header: nothing to keep
            return None
        if os.fstat(file.fd).st_nlink == 0:
            anew = self._copy_anew(file)
            os.close(file.fd)
            file.fd, file.path, file.named = anew.fd, anew.path, True
            file.size, file.header_size = anew.size, anew.header_size
        if not file.named:
            self._give_name(file)
        if self.fsync != "never":
            try:
                os.fsync(file.fd)
            except OSError:
                self._report(f"saving {file.path} to disk")
        return self._archive(file) if self.archiving else None

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
        is. A dead process's spare that had records (it crashed before naming it) gets its
        visible name first, with the time of its last record. Archived files waiting for
        compression are compressed by the next maintenance tick.
        """
        self.acquire()
        try:
            return self._recover()
        finally:
            self.release()

    def _recover(self) -> list[Path]:
        self.directory.mkdir(parents=True, exist_ok=True)
        header = self._header_bytes()
        with self._settling:
            for entry in sorted(self.directory.iterdir()):
                spare = self._spare_pattern.match(entry.name)
                if spare is None and (not self._pattern.match(entry.name)
                                      or entry.name.endswith(".gz")):
                    continue
                fd = _lock_orphan(entry)
                if fd is None:
                    continue
                try:
                    info = os.fstat(fd)
                    if spare is not None and info.st_nlink > 1:
                        # it died between naming it and removing the hidden name: the visible
                        # name (listed after this one) is taken care of as any other file
                        entry.unlink()
                        os.close(fd)
                        continue
                    size = _cut_torn_line(fd)
                    if (size == 0 or (spare is not None and _one_line(fd, size))
                            or (size == len(header) and os.pread(fd, size, 0) == header)):
                        entry.unlink()  # nothing but a header
                        os.close(fd)
                        continue
                    name = entry.name
                    if spare is not None:  # named after its last record's time
                        name = self.namer.render(info.st_mtime, 0, pid=int(spare[1]))
                        entry, _number, _ = self._free_name(name, functools.partial(_link, entry))
                        os.unlink(self.directory / spare[0])
                except BaseException:
                    os.close(fd)
                    raise
                if self.archiving:
                    self._finished.append(_File(fd, entry, name, size=size))
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
        self._prepare_spare(now)  # first: an interval rollover below then creates no file
        lock = self.lock  # None: a subclass without a lock serialises its calls itself
        # the thread gives up waiting when it is told to stop: close() may hold our lock and
        # wait for the thread (logging.shutdown calls close with the handler lock held)
        while lock is not None and not lock.acquire(timeout=0.05):
            if stop is not None and stop.is_set():
                return
        try:
            if self._closed:
                return
            self._maintain_locked(now)
        finally:
            if lock is not None:
                lock.release()
        # the rest without the handler lock: records are written meanwhile
        self._settle()
        with self._settling:
            if (now >= self._next_prune or self._prune_due) and self.archiving:
                self._prune(now)
        self._prepare_spare(now)
        self._compress()

    def _maintain_locked(self, now: float) -> None:
        if not self._recovered:
            self._attempt("taking care of files left behind", self._recover)
        file = self._file
        if file is None:
            return
        if os.fstat(file.fd).st_nlink == 0:
            self._attempt(f"writing anew {file.path}, deleted under us", self._rewrite_deleted)
        file = self._file
        if file is not None and now >= file.rollover_at:
            if file.records or self.archive_empty:
                self._attempt("rolling over", self._roll)
            else:
                file.rollover_at = now + self.archive_interval  # reuse the empty file


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
        with self._settling:  # not while the maintenance thread names it
            old = self._file
            assert old is not None
            new = self._copy_anew(old)
            new.records, new.rollover_at = old.records, old.rollover_at
            self._file = new
            os.close(old.fd)

    def _copy_anew(self, old: _File) -> _File:
        """A new file (under ``old``'s name if that is free) holding the records that ``old``,
        deleted under us, still holds."""
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
        return new

    def _report(self, doing: str) -> None:
        """handleError for a failure outside a record's write (call from an except block). The
        same failure repeating (each maintenance tick retries) is reported once."""
        error = repr(sys.exc_info()[1])
        if self._reported.get(doing) == error:
            return
        self._reported[doing] = error
        self.handleError(_maintenance_record(self, doing))

    def close(self) -> None:
        """Finish the active file (fsync per policy, archive it when archiving, compress it
        when compressing) and stop. A file that cannot be archived now is left in place for
        the next start to archive."""
        _maintenance.unregister(self)
        self.acquire()
        try:
            with _preparing:  # a spare in the making is put in place first, then removed here
                self._closed = True
                with self._spare_lock:
                    spare, self._spare = self._spare, None
            if spare is not None:
                self._discard(spare)
            self._retire()
            with self._settling:
                self._settle()
                if self._prune_due:
                    self._prune(time.time())  # retention a rollover left for a tick
                for file in self._finished:
                    os.close(file.fd)  # unlocked: the next start archives it
                self._finished.clear()
        finally:
            self.release()
        self._compress()
        super().close()

    def _after_fork(self) -> None:
        """In a forked child: leave the parent's files to the parent, start our own."""
        for file in [self._file, self._spare, *self._retired, *self._finished]:
            if file is not None:
                os.close(file.fd)
        self._file = self._spare = None
        self._retired = collections.deque()
        self._finished = []
        self._pending = []
        self._pending_lock = threading.Lock()
        self._compressing = threading.Lock()
        self._spare_lock = threading.Lock()
        self._settling = threading.RLock()
        self._rolled = False

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


def _link(source: Path, target: Path) -> int | None:
    """Hard-link ``source`` as ``target``; None if ``target`` exists."""
    try:
        os.link(source, target)
    except FileExistsError:
        return None
    return 0


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


def _one_line(fd: int, size: int) -> bool:
    """True if the file holds one line (a spare's first line is its header), not more."""
    head = os.pread(fd, min(size, 1 << 16), 0)
    return head.find(b"\n") + 1 == size


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


def _holds_logging_lock() -> bool:
    """True if this thread holds the logging module's lock (a configuration is running)."""
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    return bool(is_owned()) if is_owned is not None else False


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
    second, driven by a ``schedule.Scheduler``; ten times a second it settles the handlers a
    logging call rolled over (``wake``) and prepares spares. It starts with the first handler
    and stops (and is joined) when the last one is closed (``logging.shutdown()`` closes them
    all)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: weakref.WeakSet[AccountingFileHandler] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._woken: collections.deque[AccountingFileHandler] = collections.deque()

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
        # told to stop, it ends within a tenth of a second; wait for it, except when this
        # thread holds the logging module's lock (dictConfig and fileConfig close the old
        # handlers under it): the garbage collector running in the maintenance thread may
        # need that lock to drop a handler's weak reference (CPython gh-96727's kind of
        # deadlock), so waiting could be forever
        if thread is not threading.current_thread() and not _holds_logging_lock():
            thread.join()

    def wake(self, handler: AccountingFileHandler) -> None:
        """Have the thread settle ``handler``'s rollover at its next look (a tenth of a second
        at most), not at the next tick. No system call: the thread looks for itself."""
        self._woken.append(handler)

    def _start(self) -> None:
        self._stop = stop = threading.Event()
        self._woken = collections.deque()
        scheduler = schedule.Scheduler()
        scheduler.every(1).seconds.do(self._tick, stop)
        self._thread = threading.Thread(target=self._run, args=(scheduler, stop),
                                        name=MAINTENANCE_THREAD, daemon=True)
        self._thread.start()

    def _run(self, scheduler: schedule.Scheduler, stop: threading.Event) -> None:
        while not stop.wait(0.1):
            self._look(stop)
            scheduler.run_pending()

    def _look(self, stop: threading.Event) -> None:
        """Ten times a second: settle the handlers a logging call rolled over, and prepare a
        spare for each handler whose active file will need one soon."""
        if self._woken:
            self._service(stop)
        now = time.time()
        self._each(self._registered(), stop, lambda handler: handler._prepare_spare(now))

    def _service(self, stop: threading.Event) -> None:
        woken: dict[int, AccountingFileHandler] = {}
        while self._woken:
            handler = self._woken.popleft()
            woken[id(handler)] = handler
        self._each(woken.values(), stop, lambda handler: handler._maintain(time.time(), stop))

    def _tick(self, stop: threading.Event) -> None:
        self._each(self._registered(), stop,
                   lambda handler: handler._maintain(time.time(), stop))

    def _registered(self) -> list[AccountingFileHandler]:
        with self._lock:
            return list(self._handlers)

    @staticmethod
    def _each(handlers: Iterable[AccountingFileHandler], stop: threading.Event,
              work: Callable[[AccountingFileHandler], None]) -> None:
        for handler in handlers:
            if stop.is_set():
                return
            try:
                work(handler)
            except Exception:  # a bug here must not end maintenance for every handler
                handler._report("maintenance")

    def after_fork_in_child(self) -> None:
        _preparing.release()  # taken before the fork
        self._lock = threading.Lock()
        self._thread = None
        handlers = list(self._handlers)
        for handler in handlers:
            handler._after_fork()
        if handlers:
            self._start()


_maintenance = _Maintenance()
os.register_at_fork(before=_preparing.acquire, after_in_parent=_preparing.release,
                    after_in_child=_maintenance.after_fork_in_child)

__all__ = ["AccountingFileHandler", "KindFilter", "FSYNC_POLICIES", "MAINTENANCE_THREAD",
           "outcome_of"]
