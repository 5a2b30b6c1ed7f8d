"""Free space on the file systems the relay writes to (the spool, the accounting files).

Below ``min_free_space`` the relay takes no new mail (``452 4.3.1`` at MAIL), so the space that
is left goes to what it already promised: the journals and the records of queued mail.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from mta_logging.relay.faults import FaultLog

INSUFFICIENT_STORAGE = "452 4.3.1 Insufficient system storage"
CHECK_EVERY = 1.0  # seconds a free-space answer is reused (a statvfs per MAIL is wasted work)


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged process may still write on the file system of ``directory``."""
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


class FreeSpace:
    """Whether every one of ``directories`` has at least ``minimum`` bytes free.

    The answer is looked up at most once per :data:`CHECK_EVERY` seconds. A directory that
    cannot be looked at (not there yet) does not count as full. Going below the minimum and
    back is logged once each way, through ``faults``. ``minimum`` 0: never low.
    """

    def __init__(self, directories: Iterable[Path], minimum: int, faults: FaultLog, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directories = tuple(dict.fromkeys(directories))
        self.minimum = minimum
        self.faults = faults
        self.clock = clock
        self._low = False
        self._next_check = 0.0

    def low(self) -> bool:
        """True while some directory has less than the minimum free."""
        if not self.minimum:
            return False
        now = self.clock()
        if now >= self._next_check:
            self._next_check = now + CHECK_EVERY
            self._low = self._look()
        return self._low

    def _look(self) -> bool:
        for directory in self.directories:
            try:
                free = free_bytes(directory)
            except OSError:
                continue
            if free < self.minimum:
                self.faults.failed("free space check",
                                   f"{directory} has {free} bytes free, less than "
                                   f"min_free_space {self.minimum}; new mail gets "
                                   f"\"{INSUFFICIENT_STORAGE}\"")
                return True
        self.faults.succeeded("free space check")
        return False
