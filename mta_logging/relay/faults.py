"""Faults reported once per episode, not once per retry; warnings at most once a minute.

A full disk makes every spool write, journal write and accounting record fail until space is
freed; logging each failure would bury the one line that matters (and fill the disk that holds
the log). :class:`FaultLog` logs the first failure of each kind of operation at ERROR (or a
level of its own: a next hop that cannot be reached is a WARNING), counts the ones that
follow, and logs the first success after them ("... works again after N failure(s)").
:class:`Throttled` is for warnings that are not about an operation that succeeds again (a
connection refused past a limit): at most one line a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class FaultLog:
    """One fault episode per operation name (``"journal write"``, ``"queue file write"``, ...).

    Call :meth:`failed` at each failure and :meth:`succeeded` after each success of that
    operation; both are cheap when nothing is failing. Single-threaded: call from the event loop.
    """

    def __init__(self, logger: logging.Logger, *, level: int = logging.ERROR,
                 limit: int | None = None) -> None:
        self.logger = logger
        self.level = level  # of the line that starts an episode
        self.limit = limit  # episodes kept at most: the oldest is forgotten (names from peers)
        self._failures: dict[str, int] = {}  # operation → failures in the current episode

    def failed(self, operation: str, detail: str, *, exc_info: bool = False) -> None:
        """Report a failure of ``operation``: logged if it starts an episode, else counted."""
        count = self._failures.get(operation, 0)
        if count == 0 and self.limit is not None and len(self._failures) >= self.limit:
            del self._failures[next(iter(self._failures))]
        self._failures[operation] = count + 1
        if count == 0:
            self.logger.log(self.level, "%s failed: %s (further failures of this kind are "
                            "counted, not logged, until one succeeds)", operation, detail,
                            exc_info=exc_info)

    @property
    def failing(self) -> bool:
        """Whether an episode of any operation is running (so :meth:`succeeded` may log)."""
        return bool(self._failures)

    def succeeded(self, operation: str) -> None:
        """End the episode of ``operation``, if one is running, with a line saying so."""
        if self._failures:
            count = self._failures.pop(operation, 0)
            if count:
                self.logger.warning("%s works again after %d failure(s)", operation, count)


class Throttled:
    """A warning that may happen many times a second, logged at most once per ``interval``
    seconds with how many times it happened since the last line."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._count = 0
        self._next = 0.0

    def warn(self, message: str) -> None:
        self._count += 1
        now = self.clock()
        if now >= self._next:
            self.logger.warning("%s (%d time(s) since the last report; reported at most once "
                                "every %.0f s)", message, self._count, self.interval)
            self._count = 0
            self._next = now + self.interval
