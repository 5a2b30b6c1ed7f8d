"""Spare files: the next active file of a handler, made ahead off the logging path.

A spare is a hidden file ``.spare-<kind>%2E<pid>%2E<n>%2E<ext>`` beside the active file (see
``naming.hidden_name``; an older version named it ``.<kind>.<pid>.<n>.<ext>.spare``), created
exclusively, locked, with the header written. A logging call that rolls over takes it (no
file system call) instead of creating a file; the maintenance thread makes the next one.

Locks: ``PREPARING`` (one per process) is held while a spare is made and put in place; forking
takes it, so that a spare in the making is either in place (seen by the forked child to close
its descriptor) or not begun. Closing does not take it (``os.fork`` takes it before the logging
module's lock, and dictConfig closes handlers under that lock): a spare that a close overtook
while it was made is removed by its maker. A ``Spares``' own lock is a leaf, held for no I/O.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from pathlib import Path

from mta_logging.activefile import MAX_SUFFIX, ActiveFile, begin, create_locked
from mta_logging.faults import Faults
from mta_logging.naming import escape_dots, hidden_name

SPARE = "spare"  # the role in a spare file's hidden name (naming.hidden_name)
LEGACY_SPARE = ".spare"  # the ending of an older version's spare file names
SPARE_AHEAD = 2.0  # seconds before its interval ends that a file gets a spare ready
PREPARING = threading.Lock()
_numbers = itertools.count(1)


def spare_name(kind: str, pid: int, number: int, extension: str) -> str:
    """The hidden name of spare ``number`` of ``kind`` made by process ``pid``."""
    return hidden_name(SPARE, f"{kind}.{pid}.{number}.{extension}")


def spare_pattern(kind: str, extension: str) -> re.Pattern[str]:
    """Matches the hidden names of spares of ``kind`` (group ``pid``: the pid of their maker),
    also an older version's (group ``legacy_pid``)."""
    dot = re.escape(escape_dots("."))
    return re.compile(
        re.escape(hidden_name(SPARE, kind + ".")) + r"(?P<pid>\d+)" + dot + r"\d+"
        + re.escape(escape_dots("." + extension)) + r"\Z"
        + r"|\." + re.escape(kind) + r"\.(?P<legacy_pid>\d+)\.\d+\." + re.escape(extension)
        + re.escape(LEGACY_SPARE) + r"\Z")


def spare_maker(match: re.Match[str]) -> int:
    """The pid of the process that made the spare a ``spare_pattern`` matched."""
    return int(match["pid"] or match["legacy_pid"])


def is_spare(name: str) -> bool:
    """True for the hidden name of any spare (of any kind, this version's or an older one's)."""
    return (name.startswith(hidden_name(SPARE, ""))
            or (name.startswith(".") and name.endswith(LEGACY_SPARE)
                and len(name) > len(LEGACY_SPARE) + 1))


def wants_spare(file: ActiveFile | None, rolled: bool, max_bytes: int, now: float) -> bool:
    """True if the active ``file`` will need a spare soon: it is half full, its interval ends
    within ``SPARE_AHEAD`` seconds, or its handler has ``rolled`` over before."""
    return file is not None and (rolled or 2 * file.size >= max_bytes
                                 or now + SPARE_AHEAD >= file.rollover_at)


class Spares:
    """The spare of one handler: at most one, ready in ``directory``.

    A failure to make or remove one goes to ``faults``.
    """

    def __init__(self, directory: Path, kind: str, extension: str, faults: Faults) -> None:
        self.directory = directory
        self.kind = kind
        self.extension = extension
        self.faults = faults
        self._spare: ActiveFile | None = None
        self._lock = threading.Lock()
        self._closed = False

    def take(self, header: bytes) -> ActiveFile | None:
        """The spare, if one is ready that holds ``header`` (one with another header, made
        before the formatter changed, is removed). No file system call when one is ready."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.header != header:
            self._discard(spare)
            return None
        return spare

    def prepare(self, wanted: bool, header: bytes) -> None:
        """Have a spare holding ``header`` ready if one is ``wanted``; a spare deleted
        meanwhile (a cleanup job, the directory removed) is replaced."""
        with PREPARING:
            with self._lock:  # (a logging call may take the spare meanwhile)
                if self._closed:
                    return
                spare = self._spare
                deleted = spare is not None and os.fstat(spare.fd).st_nlink == 0
                if deleted:
                    self._spare = None
            if spare is not None:
                if not deleted:
                    return
                self._discard(spare)
            if not wanted:
                return
            doing = f"preparing the next file in {self.directory}"
            try:
                spare = self._create(header)
            except Exception:
                self.faults.report(doing)
                return
            self.faults.clear(doing)
            with self._lock:
                closed = self._closed
                if not closed:
                    self._spare = spare
            if closed:  # closed while it was made
                self._discard(spare)

    def close(self) -> None:
        """Remove the spare and make no more (one in the making is removed by its maker)."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            self._discard(spare)

    def after_fork_in_child(self) -> None:
        """In a forked child: the parent's spare is the parent's (our descriptor is closed)."""
        if self._spare is not None:
            os.close(self._spare.fd)
        self._spare = None
        self._lock = threading.Lock()

    def _create(self, header: bytes) -> ActiveFile:
        """A new hidden file, created exclusively and locked, with ``header`` written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for _attempt in range(MAX_SUFFIX):
            path = self.directory / spare_name(self.kind, os.getpid(), next(_numbers),
                                               self.extension)
            fd = create_locked(path)
            if fd is not None:
                break
        else:
            raise FileExistsError(f"no free name for a spare file in {self.directory}")
        spare = ActiveFile(fd, path, "", named=False, header=header)
        begin(spare, header)
        return spare

    def _discard(self, spare: ActiveFile) -> None:
        try:
            spare.path.unlink(missing_ok=True)
        except OSError:
            self.faults.report(f"removing the unused file {spare.path}")
        os.close(spare.fd)
