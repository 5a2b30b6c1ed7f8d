"""The per-kind accounting file handler.

One handler writes one kind of record (delivered, deferred or bounce) to its own active file,
``<directory>/<file_name>``, whose first line is the formatter's header. It starts a new file
when the next record would take the active one past ``max_size`` and, with archiving on, when
``archive_interval`` seconds have passed since the file was opened (also when no record comes: a
maintenance thread looks once a second). With archiving on, a finished file is moved into
``archive_to``; without, it stays where it is and the new file gets a new name.

Guarantees (see the README's "Nothing lost" section):

* every record is handed to the OS (one ``os.write``) before ``emit`` returns; ``fsync`` policy
  ``never`` / ``rollover`` / ``always``; the size of the active file is kept in memory, never
  read back per record;
* a process creates its active files exclusively and holds a lock on each for its lifetime
  (``activefile``), so no two writers share a file and a file whose owner died is recognised
  by the next process that starts: its cut-short last line (if any) is cut off and the file is
  archived (``recovery``);
* a write that fails half-way is cut back, so a torn line is never glued to the next record;
* every failure goes through ``handleError`` (stderr, never into the caller), once per
  episode (records that fail the same way after the first are counted: ``RecordFaults``),
  and the handler recovers once the fault clears: directories and files are created again, a
  file deleted under it is written anew with what it held, a file that could not be archived
  is archived later, and a record that was not written is never counted as written.

A rollover made by a logging call touches no file but the one it writes its record to. The
maintenance thread (``maintenance``) keeps a spare ready (``spares``) once the active file is
half full, near its interval's end, or the handler has rolled over before; the logging call
swaps it in and hands the finished file to that thread, which then (within a tenth of a second)
gives the new file its visible name (rendered with the time of the swap), fsyncs (policy) and
archives the finished one (``archive``), and prepares the next spare. Without a spare ready,
the logging call finishes the old file and creates the new one itself; so it does when
finished files pile up (``MAX_RETIRED``) or the handler is closed.

Locks, in the order they are taken: the handler lock (``Handler.lock``, held by ``handle``
while a record is written), then ``_settling`` (naming, archiving, retention; an RLock). The
spares' lock is a leaf, held for no I/O; ``spares.PREPARING`` is held while a spare is made and
is taken at fork (not by ``close()``, which may run under the logging module's lock).
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from mta_logging import settings as _settings
from mta_logging.activefile import ActiveDirectory, ActiveFile, write_whole
from mta_logging.archive import Archiver
from mta_logging.faults import FAULT, Faults, RecordFaults
from mta_logging.formatters import AccountingFormatter
from mta_logging.logger import WRITE_FAILED
from mta_logging.maintenance import MAINTENANCE_THREAD, maintenance
from mta_logging.naming import DEFAULT_FILE_NAME, FileNamer
from mta_logging.outcome import Kind
from mta_logging.recovery import recover
from mta_logging.settings import FSYNC_POLICIES as FSYNC_POLICIES  # (importable from here too)
from mta_logging.settings import parse_flag as parse_flag  # (importable from here too)
from mta_logging.spares import Spares, wants_spare
from mta_logging.speedups import FORMAT, RoutedHandler, handle_for, write_directly

MEGABYTE = 1_000_000
MAX_RETIRED = 32  # finished files waiting for the thread before a logging call settles them


class KindFilter(logging.Filter):
    """Passes only records whose outcome is of one kind (routing by type)."""

    def __init__(self, kind: str | Kind) -> None:
        super().__init__()
        self.kind = Kind.parse(kind)

    def filter(self, record: logging.LogRecord) -> bool:
        outcome = getattr(record, "outcome", None)
        return outcome is not None and getattr(outcome, "kind", None) is self.kind


class AccountingFileHandler(RoutedHandler):
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
    maintenance tick, whichever comes first (``recover()``). The names of the files come from
    ``file_names`` (a ``FileNamer``).

    As in the stdlib's rotating handlers, ``shouldRollover(record)`` decides whether a record
    starts a new file and ``doRollover()`` finishes the active one.
    """

    # routing by kind, then Handler.handle (written out on the Python it was checked against)
    handle = handle_for()  # type: ignore[assignment]  # a function, bound as a method
    _rollover_hooked = False  # a subclass's shouldRollover is asked at each record

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._rollover_hooked = cls.shouldRollover is not AccountingFileHandler.shouldRollover
        cls._writes_directly = False  # speedups.emit_direct writes for this class only

    def __init__(
        self,
        kind: str | Kind = Kind.DELIVERED,
        directory: str | os.PathLike[str] | None = None,
        *,
        path: str | os.PathLike[str] = "accounting_files",
        extension: str = "tsv",
        file_name: str = DEFAULT_FILE_NAME,
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
        # every argument is checked before Handler.__init__ makes the handler known to logging:
        # a refused one leaves no half-built handler for dictConfig or shutdown() to flush
        self.kind = Kind.parse(kind)
        self.directory = Path(_settings.path(directory, "directory")) if directory is not None \
            else Path(_settings.path(path)) / self.kind.directory
        self.file_names = FileNamer(_settings.file_name(file_name), self.kind.value,
                                    _settings.extension(extension))
        self.archiving = _settings.archiving(archiving)
        # an absolute archive_to stays absolute
        self.archive_dir = self.directory / _settings.directory_name(archive_to, "archive_to")
        self.archive_interval = _settings.archive_interval(archive_interval)
        self.max_bytes = round(_settings.max_size(max_size) * MEGABYTE) or sys.maxsize
        self.compress = _settings.compress(compress)
        self.retention_days = _settings.retention_days(retention_days)
        self.retention_files = _settings.retention_files(retention_files)
        self.archive_empty = _settings.archive_empty(archive_empty)
        self.fsync = _settings.fsync(fsync)
        super().__init__(level)
        self.formatter = AccountingFormatter(kind=self.kind)
        durable = self.fsync != "never"
        described = f"accounting file handler for {self.kind.directory} records in {self.directory}"
        self._faults = Faults(self, described)
        self._record_faults = RecordFaults(described, self._written_since)
        self._files = ActiveDirectory(self.directory, self.file_names, archiving=self.archiving,
                                      fsync=durable)
        self._spares = Spares(self.directory, self.kind.value, self.file_names.extension,
                              self._faults)
        self._archiver = Archiver(self.archive_dir, self.file_names, self._faults,
                                  compress=self.compress, fsync=durable,
                                  retention_days=self.retention_days,
                                  retention_files=self.retention_files)
        self._file: ActiveFile | None = None
        self._retired: collections.deque[ActiveFile] = collections.deque()  # written no more
        self._settling = threading.RLock()  # naming, archiving, retention; inside self.lock
        self._finished: list[ActiveFile] = []  # retired files not settled yet (oldest first)
        self._rolled = False  # a logging call rolled over: keep a spare ready from now on
        self._closed = False
        self._recovered = False
        self._seq = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.archiving:
            self.archive_dir.mkdir(parents=True, exist_ok=True)
        maintenance.register(self)

    @property
    def path(self) -> Path | None:
        """The active file, or None while none is open. Reading it moves no file: right after
        a rollover that swapped in a spare, until the maintenance thread (within a tenth of a
        second) or ``flush()`` gives the new file its visible name, this is the spare's hidden
        name (``.spare-<kind>%2E<pid>%2E<n>%2E<ext>``)."""
        file = self._file
        return file.path if file is not None else None

    # -- the write path ------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` as one line with one ``os.write`` (starting a new file first if
        ``shouldRollover``); a failure goes to ``handleError`` and the record is not counted."""
        try:
            formatter = self.formatter
            if formatter and not self._format_set and self.__class__.format is FORMAT:
                text = formatter.format(record)  # what Handler.format does, one call less
            else:
                text = self.format(record)
            self.write_line(text, record.created, record)
        except Exception:
            self.handleError(record)

    def write_line(self, text: str, created: float, record: logging.LogRecord | None) -> None:
        """``emit``'s write (lock held): ``text`` and a line end with one ``os.write``, starting
        a new file first if the record (``record``, made at ``created``) starts one; raises
        what fails, with nothing written and nothing counted. Without the record (``None``:
        ``speedups.emit_direct`` writes without one, for this class only) a subclass's
        ``shouldRollover`` is not asked."""
        data = (text + "\n").encode("utf-8")
        file = self._file
        rolled = False
        if file is None:
            file = self._open()
        elif (self.shouldRollover(record) if self._rollover_hooked and record is not None
              else file.records and (file.size + len(data) > self.max_bytes
                                     or created >= file.rollover_at)):
            file = self._roll()
            rolled = True
        if file.torn:
            write_whole(file, data)
        else:  # write_whole's usual case, inline: one whole write
            written = os.write(file.fd, data)  # raising, it wrote nothing
            if written == len(data):
                file.size += written
            else:
                write_whole(file, data, written)
        if self.fsync == "always":
            os.fsync(file.fd)
        file.records += 1  # (after the fsync: a record whose fsync failed is not counted)
        if rolled:
            self._rolled_over()

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - stdlib's name
        """True if ``record`` starts a new file: the active file holds records, and this one
        would take it past ``max_size`` or comes at or after the end of its interval.
        ``write_line`` makes the same check inline (it has the record's bytes at hand); a
        subclass that overrides this method is asked instead, for every record."""
        file = self._file
        if file is None or not file.records:
            return False
        size = len((self.format(record) + "\n").encode("utf-8"))
        return file.size + size > self.max_bytes or record.created >= file.rollover_at

    def handleError(self, record: logging.LogRecord) -> None:
        """A record could not be written: marked ``write_failed`` (the signal that
        ``AccountingLogger(on_write_error=...)`` passes to its caller) and counted in
        :attr:`records_not_written`; the first of an episode goes on to
        ``Handler.handleError`` (the cause, the record's message and arguments), the next
        ones that fail the same way are counted, with a line a minute while they go on and one
        when a record is written again (see :class:`~mta_logging.faults.RecordFaults`). A
        failure of the handler's other work (naming, archiving...) is reported as it is."""
        if FAULT in record.__dict__:
            super().handleError(record)
            return
        record.__dict__[WRITE_FAILED] = True
        file = self._file
        if self._record_faults.failed((file, 0 if file is None else file.records)):
            super().handleError(record)

    @property
    def records_not_written(self) -> int:
        """How many records this handler could not write since it was made."""
        return self._record_faults.total

    def _written_since(self, mark: object) -> bool:
        """Whether a record was written since ``mark`` (the active file and its count of
        records, when a record failed)."""
        file, records = cast("tuple[ActiveFile | None, int]", mark)
        current = self._file
        if current is None:
            return False
        return current.records > (records if current is file else 0)

    def header(self) -> str | None:
        """The first line of every new file (the formatter's ``header()``), or None."""
        make_header: Callable[[], str | None] | None = getattr(self.formatter, "header", None)
        return make_header() if make_header is not None else None

    def _header_bytes(self) -> bytes:
        header = self.header()
        return b"" if header is None else (header + "\n").encode("utf-8")

    def open(self) -> Path:
        """Create the active file now (normally done by the first record) and give it its
        visible name; returns its path."""
        self.acquire()
        try:
            file = self._file if self._file is not None else self._open()
        finally:
            self.release()
        if not file.named:
            self._settle()
        return file.path

    def _open(self) -> ActiveFile:
        if not self._recovered:
            try:
                self._recover()
            except Exception:
                self._faults.report("taking care of files left behind")
        return self._new_file()

    def _new_file(self) -> ActiveFile:
        now = time.time()
        self._seq += 1
        self._file = self._files.create(self.file_names.render(now, self._seq),
                                        self._header_bytes(), self._deadline(now))
        return self._file

    def _deadline(self, now: float) -> float:
        return now + self.archive_interval if self.archiving else math.inf

    # -- rollover: a spare swapped in, the finished file settled off the write path ---------

    def doRollover(self) -> None:  # noqa: N802 - the name the stdlib's rotating handlers use
        """Finish the active file now (archive it when archiving); the next record starts a new
        one."""
        self.acquire()
        try:
            self._retire()
            self._settle()
        finally:
            self.release()

    def _roll(self) -> ActiveFile:
        """Start a new active file in place of the current one (lock held). With a spare ready
        this makes no file system call; the finished file is left for ``_settle``."""
        spare = self._spares.take(self._header_bytes())
        if spare is None:
            # none ready (the first rollover, or files filling faster than the thread looks):
            # finish the old file and start the new one here, as a handler without the thread
            self._retire()
            self._settle(prune=False)
            return self._new_file()
        now = time.time()
        self._seq += 1
        spare.started, spare.seq = now, self._seq  # its name is rendered off the write path
        spare.rollover_at = self._deadline(now)
        self._retire()
        self._file = spare
        return spare

    def _retire(self) -> None:
        """Hand the active file (if any) to ``_settle``: nothing is written to it any more."""
        if self._file is not None:
            self._record_faults.moved((None, 0))
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
            maintenance.wake(self)

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
                    self._faults.attempt(f"naming {file.path}",
                                         functools.partial(self._files.give_name, file))
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
                    self._faults.report(doing)
                    break
                self._faults.clear(doing)
                self._finished.pop(0)
                os.close(file.fd)
                if target is not None:
                    archived.append(target)
            if archived:
                if prune:
                    self._archiver.prune(time.time())
                else:
                    self._archiver.prune_later()
        return archived

    def _finish(self, file: ActiveFile) -> Path | None:
        """Finish a file nobody writes to any more: cut back a failed write, drop it if it holds
        only its header (unless ``archive_empty``), write it anew if it was deleted under us,
        name it, fsync (policy) and archive it (when archiving). Returns the archived path."""
        if file.torn:
            try:
                os.ftruncate(file.fd, file.size)
                file.torn = False
            except OSError:
                self._faults.report(f"cutting a failed write back out of {file.path}")
        if file.size <= file.header_size and not self.archive_empty:
            file.path.unlink(missing_ok=True)  # nothing but a header: nothing to keep
            return None
        if os.fstat(file.fd).st_nlink == 0:
            anew = self._files.copy_anew(file, self._header_bytes())
            os.close(file.fd)
            file.fd, file.path, file.named = anew.fd, anew.path, True
            file.size, file.header_size = anew.size, anew.header_size
        if not file.named:
            self._files.give_name(file)
        if self.fsync != "never":
            try:
                os.fsync(file.fd)
            except OSError:
                self._faults.report(f"saving {file.path} to disk")
        return self._archiver.move(file.fd, file.path, file.name) if self.archiving else None

    # -- recovery, maintenance -----------------------------------------------------------------

    def recover(self) -> list[Path]:
        """Take care of files that dead processes left behind (see ``mta_logging.recovery``);
        returns what was archived. Archived files waiting for compression are compressed by
        the next maintenance tick."""
        self.acquire()
        try:
            return self._recover()
        finally:
            self.release()

    def _recover(self) -> list[Path]:
        with self._settling:
            recover(self._files, self._header_bytes(),
                    self._finished if self.archiving else None)
            self._recovered = True
            archived = self._archive_finished() if self._finished else []
        if self.archiving:
            self._archiver.take_over_pending()
        return archived

    def maintain(self, now: float | None = None, stop: threading.Event | None = None) -> None:
        """Interval rollover, recovery of a file deleted under us, archiving what could not be
        archived before, retention, compression (the maintenance thread calls this once a
        second, and at once after a rollover by a logging call). Once ``stop`` is set it gives
        up waiting for the handler lock. Never raises: failures go to handleError."""
        now = time.time() if now is None else now
        try:
            self._maintain(now, stop)
        except Exception:  # a bug here must not end maintenance for every handler
            self._faults.report("maintenance")

    def _maintain(self, now: float, stop: threading.Event | None) -> None:
        self.prepare_spare(now)  # first: an interval rollover below then creates no file
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
            if self.archiving:
                self._archiver.prune_when_due(now)
        self.prepare_spare(now)
        self._archiver.compress_pending()

    def _maintain_locked(self, now: float) -> None:
        self._record_faults.check(now)
        if not self._recovered:
            self._faults.attempt("taking care of files left behind", self._recover)
        file = self._file
        if file is None:
            return
        if os.fstat(file.fd).st_nlink == 0:
            self._faults.attempt(f"writing anew {file.path}, deleted under us",
                                 self._rewrite_deleted)
        file = self._file
        if file is not None and now >= file.rollover_at:
            if file.records or self.archive_empty:
                self._faults.attempt("rolling over", self._roll)
            else:
                file.rollover_at = now + self.archive_interval  # reuse the empty file

    def prepare_spare(self, now: float | None = None) -> None:
        """Have a spare ready if the active file will need one soon (the maintenance thread
        calls this ten times a second). Never raises: failures go to handleError."""
        now = time.time() if now is None else now
        try:
            self._spares.prepare(wants_spare(self._file, self._rolled, self.max_bytes, now),
                                 self._header_bytes())
        except Exception:
            self._faults.report("maintenance")

    def _rewrite_deleted(self) -> None:
        """The active file was deleted under us: write what it held to a new file. If that
        fails, the deleted file stays the active one (its records are still readable through
        our descriptor) and the next attempt tries again."""
        with self._settling:  # not while the maintenance thread names it
            old = self._file
            assert old is not None
            new = self._files.copy_anew(old, self._header_bytes())
            self._record_faults.moved((new, new.records))  # (the records it copied)
            self._file = new
            os.close(old.fd)

    def close(self) -> None:
        """Finish the active file (fsync per policy, archive it when archiving, compress it
        when compressing) and stop. A file that cannot be archived now is left in place for
        the next start to archive."""
        maintenance.unregister(self)
        self.acquire()
        try:
            self._closed = True
            self._record_faults.check(closing=True)
            self._spares.close()  # (a spare in the making is removed by its maker)
            self._retire()
            with self._settling:
                self._settle()
                self._archiver.prune_if_left(time.time())  # retention a rollover left
                for file in self._finished:
                    os.close(file.fd)  # unlocked: the next start archives it
                self._finished.clear()
        finally:
            self.release()
        self._archiver.compress_pending()
        super().close()

    def after_fork_in_child(self) -> None:
        """In a forked child: leave the parent's files to the parent, start our own."""
        for file in [self._file, *self._retired, *self._finished]:
            if file is not None:
                os.close(file.fd)
        self._file = None
        self._retired = collections.deque()
        self._finished = []
        self._record_faults.forget()
        self._spares.after_fork_in_child()
        self._archiver.after_fork_in_child()
        self._settling = threading.RLock()
        self._rolled = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind.directory} {self.directory}>"


write_directly(AccountingFileHandler, AccountingFormatter)

__all__ = ["AccountingFileHandler", "KindFilter", "FSYNC_POLICIES", "MAINTENANCE_THREAD",
           "parse_flag"]
