"""Finished accounting files: moving into the archive, compressing, pruning.

Everything here works on paths and is safe against other processes doing the same at the same
time: a file appears under its final name only when it is complete (link, never overwrite), and
a name that is taken gets a ``.N`` suffix before the extension instead.

Compression works on hidden pending files in the archive directory (``.pending-NAME``, see
``naming.hidden_name``). A process compresses one only while it holds an advisory lock on it;
the compressed data is written to ``.gzipping-NAME``, renamed to ``.staged-NAME`` once whole,
linked to its visible name ``NAME.gz`` (or ``NAME.N.gz``), and only then are the pending and the
staged file removed. A crash at any step leaves the records in exactly one visible file, or in
the pending file, which the next start compresses (a staged file that was already linked is
recognised by its link count and not published twice). Files that an older version left under
its names (``.NAME.pending``, ``.NAME.pending.gz``) are taken over the same way.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import itertools
import os
import re
import shutil
import threading
import time
from pathlib import Path

from mta_logging.faults import Faults
from mta_logging.fsutil import fsync_directory
from mta_logging.naming import DEFAULT_FILE_NAME, FileNamer, check_template, hidden_name, unhidden

# roles of hidden names (naming.hidden_name) in the archive directory
PENDING = "pending"  # a file waiting to be compressed
GZIPPING = "gzipping"  # its compressed copy being written
STAGED = "staged"  # its compressed copy, whole, before it gets its visible name
COPYING = "copying"  # a copy from another file system, before it gets its name
LEGACY_PENDING = ".pending"  # an older version's pending file: .NAME.pending
LEGACY_STAGED = LEGACY_PENDING + ".gz"  # ... and its staged copy: .NAME.pending.gz
PRUNE_EVERY = 60.0  # seconds between retention runs while no file is archived
_MAX_SUFFIX = 100_000


class Archiver:
    """Moves one handler's finished files into ``archive_dir`` (under the name each had, or a
    free one), compresses them (``compress``: off the handler lock, one run at a time) and
    deletes old ones (``retention_days`` / ``retention_files``). ``fsync``: make each move
    durable. Failures that do not undo a move go to ``faults``."""

    def __init__(self, archive_dir: Path, namer: FileNamer, faults: Faults, *, compress: bool,
                 fsync: bool, retention_days: float | None, retention_files: int | None,
                 ) -> None:
        self.archive_dir = archive_dir
        self.namer = namer
        self.faults = faults
        self.compress = compress
        self.fsync = fsync
        self.retention_days = retention_days
        self.retention_files = retention_files
        self.pattern = namer.pattern()
        self._hint = ("", 0)  # (name, suffix) last used: skip names known to be taken
        self._next_prune = 0.0
        self._prune_due = False  # a rollover left retention for later
        self._pending: list[Path] = []  # archived files waiting for compression (a name may
        # be there twice: a file of a name just compressed was archived under it again)
        self._pending_lock = threading.Lock()  # guards _pending only; held for no I/O
        self._compressing = threading.Lock()  # one compression run at a time in this process

    def move(self, fd: int, path: Path, name: str) -> Path | None:
        """Move the file at ``path`` (open as ``fd``, its lock held) into the archive, named
        after ``name``; returns where it went, or None if it was there already (a crash came
        between linking it there and unlinking it here)."""
        self.archive_dir.mkdir(parents=True, exist_ok=True)
        if os.fstat(fd).st_nlink > 1 and _linked_in(self.archive_dir, fd):
            os.unlink(path)
            return None
        hint_name, hint = self._hint
        target, number = link_exclusive(  # under the name it had, if that is free
            path, self.archive_dir, name, self.namer, prefer=path.name,
            start=hint if hint_name == name else 0, hidden=self.compress)
        if number >= 0:
            self._hint = (name, number + 1)
        path.unlink(missing_ok=True)  # (missing: someone removed it meanwhile; it is moved)
        if self.fsync:
            try:
                fsync_directory(self.archive_dir)
                fsync_directory(path.parent)
            except OSError:  # the move is done; only its durability is in doubt
                self.faults.report(f"saving the move of {path} to disk")
        if self.compress:
            # queued even if its name is queued already: compression may have removed a file
            # of that name and not yet taken it off the queue (each run takes off one entry)
            with self._pending_lock:
                self._pending.append(target)
        return target

    def prune(self, now: float) -> None:
        """Apply retention now (``now``: the time ages are measured from)."""
        self._prune_due = False
        if self.retention_days is None and self.retention_files is None:
            return
        self._next_prune = now + PRUNE_EVERY
        try:
            prune(self.archive_dir, self.pattern, max_age_days=self.retention_days,
                  max_files=self.retention_files, now=now)
        except FileNotFoundError:
            pass  # no archive directory (yet): nothing to prune
        except Exception:
            self.faults.report(f"deleting old files in {self.archive_dir}")

    def prune_later(self) -> None:
        """Files were archived: leave retention to the next ``prune_when_due`` or
        ``prune_if_left`` (off the logging call that archived them)."""
        self._prune_due = True

    def prune_when_due(self, now: float) -> None:
        """Apply retention if it was left for later or ``PRUNE_EVERY`` seconds have passed."""
        if self._prune_due or now >= self._next_prune:
            self.prune(now)

    def prune_if_left(self, now: float) -> None:
        """Apply retention if it was left for later."""
        if self._prune_due:
            self.prune(now)

    def take_over_pending(self) -> None:
        """Queue for compression the files that a dead process left waiting (pending files of
        this namer's names, under this version's names or an older one's) and remove staged
        files it published already."""
        if not (self.compress and self.archive_dir.is_dir()):
            return
        with os.scandir(self.archive_dir) as scan:
            names = sorted(entry.name for entry in scan if entry.name.startswith("."))
        for name in names:
            visible = visible_name(name)
            if visible is not None and self.pattern.match(visible):
                self._add_pending(self.archive_dir / name)
            elif _staged_for(name) is not None:
                finish_staged(self.archive_dir / name)

    def compress_pending(self) -> None:
        """Compress the archived files waiting for it, oldest first. A failure is reported and
        the file tried again next time; so is a file that is still locked (its handler closes
        its descriptor after the move) or still linked in an active directory."""
        with self._pending_lock:
            pending = self._pending[:]
        if not pending:
            return
        with self._compressing:
            for file in pending:
                doing = f"compressing {file}"
                try:
                    compressed = compress_pending(file, self.namer, fsync=self.fsync)
                except FileNotFoundError:
                    compressed = None  # compressed and removed by another process meanwhile
                except Exception:
                    self.faults.report(doing)
                    continue
                self.faults.clear(doing)
                if compressed is None and os.path.lexists(file):
                    continue  # not compressed, not gone: next time
                with self._pending_lock:
                    if file in self._pending:
                        self._pending.remove(file)  # (one entry: see move)

    def after_fork_in_child(self) -> None:
        """In a forked child: the parent compresses what it archived."""
        self._pending = []
        self._pending_lock = threading.Lock()
        self._compressing = threading.Lock()

    def _add_pending(self, file: Path) -> None:
        with self._pending_lock:
            if file not in self._pending:
                self._pending.append(file)


def _linked_in(directory: Path, fd: int) -> bool:
    """True if ``directory`` holds a link to the file open as ``fd``."""
    mine = os.fstat(fd)
    with os.scandir(directory) as scan:
        return any(entry.inode() == mine.st_ino
                   and entry.stat(follow_symlinks=False).st_dev == mine.st_dev for entry in scan)


def pending_name(name: str) -> str:
    """The hidden name under which ``name`` waits in the archive directory for compression."""
    return hidden_name(PENDING, name)


def visible_name(pending: str) -> str | None:
    """The visible name of a pending file (``pending_name``'s, or an older version's
    ``.NAME.pending``); None if ``pending`` is no pending file's name."""
    name = unhidden(PENDING, pending)
    if name is None and pending.startswith(".") and pending.endswith(LEGACY_PENDING):
        name = pending[1: -len(LEGACY_PENDING)] or None
    return name


def staged_name(pending: str) -> str:
    """The name of the compressed copy of the pending file ``pending`` before it is published
    (an older version's pending file: that version's, so that a copy it published already is
    recognised)."""
    if unhidden(PENDING, pending) is None and pending.endswith(LEGACY_PENDING):
        return pending + ".gz"
    name = visible_name(pending)
    assert name is not None, pending
    return hidden_name(STAGED, name)


def _staged_for(staged: str) -> str | None:
    """The name of the pending file whose staged copy is named ``staged``; None if none."""
    name = unhidden(STAGED, staged)
    if name is not None:
        return pending_name(name)
    if staged.startswith(".") and staged.endswith(LEGACY_STAGED):
        return staged[: -len(".gz")]
    return None


def link_exclusive(source: Path, directory: Path, name: str, namer: FileNamer, *,
                   start: int = 0, hidden: bool = False, prefer: str | None = None,
                   ) -> tuple[Path, int]:
    """Give ``source`` a name in ``directory`` that nobody else has: ``prefer`` if given and
    free, else ``name`` with the first free suffix from ``start`` on (``hidden``: the pending
    name of that). Returns the new path and the suffix number used (-1 for ``prefer``).

    Hard links make the new name appear atomically and never replace an existing file. Across
    file systems (EXDEV) the content is copied to a hidden name first.
    """
    suffixed = ((namer.suffixed(name, n), n) for n in range(start, start + _MAX_SUFFIX))
    candidates = itertools.chain([(prefer, -1)] if prefer is not None else [], suffixed)
    for visible, number in candidates:
        target = directory / (pending_name(visible) if hidden else visible)
        try:
            os.link(source, target)
            return target, number
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            staged = directory / hidden_name(COPYING, f"{visible}.{os.getpid()}")
            shutil.copyfile(source, staged)
            try:
                return link_exclusive(staged, directory, name, namer, start=max(number, 0),
                                      hidden=hidden, prefer=prefer if number < 0 else None)
            finally:
                staged.unlink(missing_ok=True)
    raise FileExistsError(errno.EEXIST, f"no free name for {name} in {directory}")


def compress_pending(pending: Path, namer: FileNamer, fsync: bool = True) -> Path | None:
    """Compress a pending file (``pending_name(NAME)``, or an older version's) to ``NAME.gz``
    (or ``NAME.N.gz``) next to it.

    Returns the new .gz path, or None when there is nothing to do here: the file is gone, another
    process or thread is compressing it (it holds its lock), or it still has a second link (a
    crash left it in an active directory too; recovery there settles it first).
    """
    directory = pending.parent
    name = visible_name(pending.name)
    assert name is not None, pending
    try:
        fd = os.open(pending, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        source = os.fstat(fd)
        if source.st_nlink != 1 or not _is(pending, source):
            return None
        staged = directory / staged_name(pending.name)
        target = _published(staged)
        if target is None:
            _write_gzip(fd, staged, name, source, fsync)
            # a suffixed name that is taken gets another suffix, not a second one
            target, _number = link_exclusive(staged, directory, namer.unsuffixed(name + ".gz"),
                                             namer, prefer=name + ".gz")
        os.unlink(pending)
        staged.unlink(missing_ok=True)
        if fsync:
            fsync_directory(directory)
        return target
    finally:
        os.close(fd)


def finish_staged(staged: Path) -> bool:
    """Remove a staged copy left without its pending file once it has been published (a crash
    between the last two steps of ``compress_pending``). True if it was removed."""
    pending = _staged_for(staged.name)
    if pending is None or (staged.parent / pending).exists() or _published(staged) is None:
        return False
    staged.unlink(missing_ok=True)
    return True


def _published(staged: Path) -> Path | None:
    """The visible name a staged .gz was already linked to, if any."""
    try:
        info = os.stat(staged)
    except FileNotFoundError:
        return None
    if info.st_nlink < 2:
        return None
    with os.scandir(staged.parent) as scan:
        for entry in scan:
            if entry.inode() == info.st_ino and not entry.name.startswith("."):
                return Path(entry.path)
    return None


def _write_gzip(fd: int, staged: Path, name: str, source: os.stat_result, fsync: bool) -> None:
    """Compress what ``fd`` holds into ``staged`` (whole, or not at all), keeping its mtime."""
    scratch = staged.with_name(hidden_name(GZIPPING, name))
    with open(fd, "rb", closefd=False) as src, open(scratch, "wb") as raw:
        src.seek(0)
        with gzip.GzipFile(filename=name, mode="wb", fileobj=raw,
                           mtime=int(source.st_mtime)) as gz:
            shutil.copyfileobj(src, gz, 1 << 20)
        if fsync:
            raw.flush()
            os.fsync(raw.fileno())
    # the archive's age is the age of its records, not of the compression run
    os.utime(scratch, ns=(source.st_atime_ns, source.st_mtime_ns))
    os.replace(scratch, staged)


def _is(path: Path, info: os.stat_result) -> bool:
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    return (there.st_ino, there.st_dev) == (info.st_ino, info.st_dev)


# The retention interlock with ``mta-logging ship``: in a directory holding HOLD_MARKER, an
# archived file is deleted by retention only once the shipper marked it shipped, i.e. wrote its
# size (the size it had when every sink had acknowledged all of it) to shipped_marker(file).
HOLD_MARKER = ".ship-hold"


SHIPPED = "shipped"  # role of the hidden file by which the shipper marks a file shipped


def shipped_marker(file: Path) -> Path:
    """The hidden file by which the shipper marks ``file`` shipped (it holds the file's size):
    ``.shipped-<name>``, named as the other hidden working files (no glob of visible files
    matches it)."""
    return file.with_name(hidden_name(SHIPPED, file.name))


def held_for_shipping(file: Path, size: int) -> bool:
    """True when retention must keep ``file`` (of ``size`` bytes): its directory is held by a
    shipper and the file is not marked shipped at that size."""
    if not (file.parent / HOLD_MARKER).exists():
        return False
    try:
        return shipped_marker(file).read_text(encoding="ascii").strip() != str(size)
    except (OSError, UnicodeDecodeError):
        return True


def prune(directory: Path, pattern: re.Pattern[str], *, max_age_days: float | None,
          max_files: int | None, now: float | None = None) -> list[Path]:
    """Delete archived files (matching ``pattern``) older than ``max_age_days`` or beyond the
    ``max_files`` newest, except those held for shipping (``held_for_shipping``). Returns what
    was deleted."""
    if max_age_days is None and max_files is None:
        return []
    entries: list[tuple[float, str, int, Path]] = []
    with os.scandir(directory) as scan:
        for entry in scan:
            if pattern.match(entry.name) and entry.is_file(follow_symlinks=False):
                info = entry.stat()
                entries.append((info.st_mtime, entry.name, info.st_size, Path(entry.path)))
    entries.sort(reverse=True)
    now = time.time() if now is None else now
    doomed = []
    for index, (mtime, _name, size, file) in enumerate(entries):
        too_old = max_age_days is not None and now - mtime > max_age_days * 86400
        too_many = max_files is not None and index >= max_files
        if (too_old or too_many) and not held_for_shipping(file, size):
            file.unlink(missing_ok=True)
            shipped_marker(file).unlink(missing_ok=True)
            doomed.append(file)
    return doomed


__all__ = ["DEFAULT_FILE_NAME", "PENDING", "PRUNE_EVERY", "STAGED", "Archiver", "FileNamer",
           "check_template", "compress_pending", "finish_staged", "link_exclusive",
           "pending_name", "prune", "staged_name", "visible_name"]
