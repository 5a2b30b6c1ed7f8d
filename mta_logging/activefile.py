"""Active files: the file a handler writes its records to, created exclusively and locked.

A process creates each of its active files with ``O_EXCL`` and holds an advisory lock
(``flock``) on it for as long as it has it open, so no two writers share a file and a file whose
owner died is recognised (nobody holds its lock). The size of a file is kept in memory, never
read back per record; a write that fails half-way is cut back to that size, so a torn line is
never glued to the next record.
"""

from __future__ import annotations

import fcntl
import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mta_logging.fsutil import fsync_directory, write_all
from mta_logging.naming import FileNamer

OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
ORPHAN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
MAX_SUFFIX = 100_000  # names tried before giving up


@dataclass(slots=True, eq=False)
class ActiveFile:
    """An open accounting file this process holds the lock of. The write path reads and
    updates ``fd``, ``size``, ``records``, ``rollover_at`` and ``torn`` directly."""

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


def write_whole(file: ActiveFile, data: bytes, done: int = 0) -> None:
    """Append ``data`` to ``file`` whole, or not at all: a partial write is cut back before the
    error goes up (and, if even that fails, before anything else is written to the file).
    ``done``: how much of ``data`` a first write of the caller's wrote already."""
    fd = file.fd
    if file.torn:
        os.ftruncate(fd, file.size)
        file.torn = False
    try:
        write_all(fd, data[done:] if done else data)
    except BaseException:
        try:
            os.ftruncate(fd, file.size)  # whatever part of data was written
        except OSError:
            file.torn = True
        raise
    file.size += len(data)


def begin(file: ActiveFile, header: bytes) -> None:
    """Write the header into a new file; on failure remove the file and close it."""
    try:
        if header:
            write_whole(file, header)
    except BaseException:
        file.path.unlink(missing_ok=True)
        os.close(file.fd)
        raise
    file.header_size = file.size


class ActiveDirectory:
    """The directory one handler's active files live in: creates them under free names.

    A name that is taken (by a file, or by another process's lock) gets the first free
    collision suffix. Without archiving, finished files keep their names, so the suffixes
    taken before are skipped next time; with archiving they leave and free their names.
    """

    def __init__(self, directory: Path, namer: FileNamer, *, archiving: bool,
                 fsync: bool) -> None:
        self.directory = directory
        self.namer = namer
        self.archiving = archiving
        self.fsync = fsync  # fsync the directory after each new name (policy not "never")
        self._hint = ("", 0)  # (name, suffix) last used: skip names known to be taken

    def create(self, name: str, header: bytes, rollover_at: float,
               first: Path | None = None) -> ActiveFile:
        """A new, exclusively created and locked file for ``name`` with ``header`` written
        (``first``: a path to try before the free names for ``name``)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = create_locked(first) if first is not None else None
        if fd is not None and first is not None:
            path = first
        else:
            path, _number, fd = self.free_name(name, create_locked)
        file = ActiveFile(fd, path, name, rollover_at=rollover_at)
        begin(file, header)
        if self.fsync:
            try:
                fsync_directory(self.directory)
            except BaseException:
                path.unlink(missing_ok=True)
                os.close(fd)
                raise
        return file

    def free_name(self, name: str, take: Callable[[Path], int | None]) -> tuple[Path, int, int]:
        """The first path (``name``, then with suffixes) that ``take`` succeeds with: the path,
        the suffix number and what ``take`` returned."""
        hint_name, hint = self._hint
        start = hint if hint_name == name and not self.archiving else 0
        for number in range(start, start + MAX_SUFFIX):
            candidate = self.directory / self.namer.suffixed(name, number)
            result = take(candidate)
            if result is not None:
                self._hint = (name, number + 1)
                return candidate, number, result
        raise FileExistsError(f"no free file name for {name} in {self.directory}")

    def give_name(self, file: ActiveFile) -> None:
        """Link a spare in use to its visible name (a free one) and drop the hidden one."""
        hidden = file.path
        file.name = file.name or self.namer.render(file.started, file.seq)
        target, _number, _ = self.free_name(file.name, functools.partial(link, hidden))
        file.path, file.named = target, True
        hidden.unlink(missing_ok=True)
        if self.fsync:
            fsync_directory(self.directory)

    def copy_anew(self, old: ActiveFile, header: bytes) -> ActiveFile:
        """A new file (under ``old``'s name if that is free) holding the records that ``old``,
        deleted under us, still holds; its deadline is ``old``'s."""
        name = old.name = old.name or self.namer.render(old.started, old.seq)
        first = self.directory / (old.path.name if old.named else name)
        new = self.create(name, header, old.rollover_at, first=first)
        try:
            offset = old.header_size
            while offset < old.size:
                chunk = os.pread(old.fd, min(1 << 20, old.size - offset), offset)
                if not chunk:
                    break
                write_whole(new, chunk)
                offset += len(chunk)
        except BaseException:
            new.path.unlink(missing_ok=True)
            os.close(new.fd)
            raise
        new.records = old.records
        return new


def create_locked(path: Path) -> int | None:
    """Create ``path`` exclusively and lock it; None if it is taken (by a file or a lock)."""
    try:
        fd = os.open(path, OPEN_FLAGS, 0o644)
    except FileExistsError:
        return None
    # a starting process may have taken our new, empty file for an orphan and removed it
    return locked_at(path, fd)


def link(source: Path, target: Path) -> int | None:
    """Hard-link ``source`` as ``target``: 0, or None if ``target`` exists."""
    try:
        os.link(source, target)
    except FileExistsError:
        return None
    return 0


def lock_orphan(path: Path) -> int | None:
    """Open and lock an existing active file if no live process holds it."""
    try:
        fd = os.open(path, ORPHAN_FLAGS)
    except (FileNotFoundError, IsADirectoryError):
        return None
    # its owner may have archived it and a new file taken the name between open and lock
    return locked_at(path, fd)


def locked_at(path: Path, fd: int) -> int | None:
    """Lock ``fd`` without waiting; keep it only if it is still the file named ``path``.
    Otherwise (locked by someone else, or no longer at that name) close it and return None."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if names(path, fd):
            return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def names(path: Path, fd: int) -> bool:
    """True if ``path`` names the (still linked) file open as ``fd``."""
    mine = os.fstat(fd)
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    return mine.st_nlink > 0 and (mine.st_ino, mine.st_dev) == (there.st_ino, there.st_dev)


def cut_torn_line(fd: int) -> int:
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
