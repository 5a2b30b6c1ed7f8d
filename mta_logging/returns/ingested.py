"""Which returned messages ``mta-logging ingest-bounce`` has handled: so that a run over the
same Maildir, mbox or files (a cron job) records each message once.

A text file of one line per message handled (recorded, or quarantined): the SHA-256 of its
bytes in hex. A line is appended after the message's records reached the OS, and the file is
fsync'd when the run ends, so a message is skipped by later runs only once it was handled; a
run cut short (a crash, a power cut) may record its last messages again, never skip one that
was not recorded. A line that is not a whole digest (the end of a file cut short) is ignored.
A run holds an exclusive ``flock`` on the file for as long as it works: a second run at the
same time is refused rather than recording the same messages twice. The same bytes found in
two places are one message. Delete the file to have everything recorded again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
from pathlib import Path
from types import TracebackType

from mta_logging.errors import MtaLoggingError
from mta_logging.fsutil import write_all

_DIGEST = re.compile(rb"[0-9a-f]{64}")


class IngestedMessages:
    """The file at ``path`` (made, with its directory, when missing), locked until
    :meth:`close`. Raises :class:`MtaLoggingError` when another run holds it or it cannot be
    read."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                               0o644)
        except OSError as exc:
            raise MtaLoggingError(f"{self.path}: cannot open the list of messages ingested "
                                  f"({exc.strerror})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise MtaLoggingError(f"{self.path}: another ingest-bounce is using it; try "
                                      "again when it has finished") from None
            raise MtaLoggingError(f"{self.path}: cannot lock it ({exc.strerror})") from None
        with open(self._fd, "rb", closefd=False) as stream:
            self._done = {line for line in (raw.rstrip(b"\n") for raw in stream)
                          if _DIGEST.fullmatch(line)}
        self._tail_checked = False

    def __enter__(self) -> IngestedMessages:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def seen(self, digest: bytes) -> bool:
        """Whether the message of this :func:`digest` was handled by an earlier run (or this
        one)."""
        return digest in self._done

    def add(self, digest: bytes) -> None:
        """Remember the message of this :func:`digest` as handled (handed to the OS at once)."""
        if digest in self._done:
            return
        if not self._tail_checked:  # a file cut short mid-line: the next line starts afresh
            self._tail_checked = True
            size = os.fstat(self._fd).st_size
            if size and os.pread(self._fd, 1, size - 1) != b"\n":
                write_all(self._fd, b"\n")
        write_all(self._fd, digest + b"\n")
        self._done.add(digest)

    def close(self) -> None:
        """Make what was added durable, and give the file up."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def digest(data: bytes) -> bytes:
    """The key of a message with these bytes: its SHA-256 in hex, as a line of the file holds
    it (reckoned once per message, for :meth:`IngestedMessages.seen` and ``add``)."""
    return hashlib.sha256(data).hexdigest().encode("ascii")
