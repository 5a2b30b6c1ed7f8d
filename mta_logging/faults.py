"""Failures reported once per episode through a handler's ``handleError``.

:class:`Faults`: failures outside a record's write (naming, archiving, compressing, making a
spare): the same failure repeating (each maintenance tick retries) is reported once, and again
only after it has cleared. :class:`RecordFaults`: records that could not be written: the first
of an episode is reported with its message and the cause, the others that fail the same way are
counted, with a line a minute while it lasts and one line when records are written again."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

FAULT = "mta_logging_fault"
"""Set in the ``__dict__`` of the records :class:`Faults` makes for ``handleError``: a report
of a failure, not a record that failed."""

REMIND_EVERY = 60.0
"""Seconds between the lines that count the records an episode of :class:`RecordFaults` has
lost so far (while it goes on)."""


class Faults:
    """The failures of one handler, ``described`` in each report (which records, where)."""

    def __init__(self, handler: logging.Handler, described: str) -> None:
        self.handler = handler
        self.described = described
        self._reported: dict[str, str] = {}  # what failed → the error last reported for it

    def report(self, doing: str) -> None:
        """handleError for the exception being handled (call from an except block) while
        ``doing``, unless it is the error last reported for ``doing``."""
        error = repr(sys.exc_info()[1])
        if self._reported.get(doing) == error:
            return
        self._reported[doing] = error
        self.handler.handleError(self.record(doing))

    def clear(self, doing: str) -> None:
        """``doing`` succeeded: its next failure is a new episode, reported again."""
        self._reported.pop(doing, None)

    def attempt(self, doing: str, action: Callable[[], object]) -> None:
        """Run ``action``; report its failure (an Exception) or clear ``doing``."""
        try:
            action()
        except Exception:
            self.report(doing)
        else:
            self.clear(doing)

    def record(self, doing: str) -> logging.LogRecord:
        """A record for handleError about a failure that is not one record's: its message names
        the handler, what it was doing and the error, readable as it is printed."""
        error = sys.exc_info()[1]
        reason = f": {type(error).__name__}: {error}" if error is not None else ""
        record = logging.LogRecord(
            "mta_logging.handlers", logging.ERROR, __file__, 0,
            f"{self.described} failed while {doing}{reason}", None, None,
        )
        record.__dict__[FAULT] = True
        return record


@dataclass(slots=True)
class _Episode:
    error: str  # the cause, as printed
    key: str  # repr of the exception: the same key, the same failure
    since: float  # when its first record failed
    failed: int  # records that failed, the first among them
    told: int  # how many of them the last line printed counted
    told_at: float  # when that line was printed
    mark: object  # what says whether a record was written since (see RecordFaults.failed)


class RecordFaults:
    """The records a handler could not write, ``described`` in each report.

    The handler calls :meth:`failed` from its ``handleError`` (an exception being handled)
    with ``mark``, whatever tells, given to :meth:`written` later, whether a record was
    written since; and :meth:`check` now and then (it prints what is due). The first record of
    an episode goes on to ``Handler.handleError`` (``failed`` answers True): the traceback, the
    record's message and arguments. The next ones that fail with the same error are counted
    without a traceback: a line every :data:`REMIND_EVERY` seconds while they go on, and one
    when a record is written again (or the handler closes). Another error starts an episode of
    its own. Lines go where ``handleError`` prints (``sys.stderr``, when
    ``logging.raiseExceptions``).
    """

    def __init__(self, described: str, written: Callable[[object], bool]) -> None:
        self.described = described
        self.written = written
        self.total = 0  # records that could not be written, over the handler's life
        self._episode: _Episode | None = None

    def failed(self, mark: object) -> bool:
        """A record could not be written (call while its exception is handled): True if it is
        the first of an episode, to be reported in full."""
        self.total += 1
        error = sys.exc_info()[1]
        key = repr(error)
        episode = self._going_on()
        now = time.time()
        if episode is not None and episode.key == key:
            episode.failed += 1
            episode.mark = mark
            self._remind(episode, now)  # (also where no maintenance thread calls check)
            return False
        if episode is not None:
            self._end(episode, "fails another way now")
        cause = f"{type(error).__name__}: {error}" if error is not None else "an unknown error"
        self._episode = _Episode(cause, key, now, 1, 1, now, mark)
        return True

    def check(self, now: float | None = None, *, closing: bool = False) -> None:
        """End the episode if a record was written since its last failure; else print its
        count if a minute has passed since the last line (or ``closing``)."""
        episode = self._going_on()
        if episode is None:
            return
        if closing:
            self._end(episode, "closed")
        else:
            self._remind(episode, time.time() if now is None else now)

    def moved(self, mark: object) -> None:
        """The handler's active file changes (a rollover, a file written anew): the episode
        ends if a record was written since its last failure, else goes on from ``mark``."""
        episode = self._going_on()
        if episode is not None:
            episode.mark = mark

    def forget(self) -> None:
        """Start afresh (a forked child: the parent's episode and count are the parent's)."""
        self.total = 0
        self._episode = None

    def _going_on(self) -> _Episode | None:
        """The episode, unless a record was written since its last failure (then it ends,
        with its line)."""
        episode = self._episode
        if episode is not None and self.written(episode.mark):
            self._end(episode, "writes again")
            return None
        return episode

    def _remind(self, episode: _Episode, now: float) -> None:
        if episode.failed > episode.told and now - episode.told_at >= REMIND_EVERY:
            self._say(f"still failing; {episode.failed} record(s) could not be written since"
                      f" {_clock(episode.since)} ({episode.error}; the first one is reported"
                      " above)")
            episode.told, episode.told_at = episode.failed, now

    def _end(self, episode: _Episode, how: str) -> None:
        self._episode = None
        self._say(f"{how}; {episode.failed} record(s) could not be written since"
                  f" {_clock(episode.since)} ({episode.error}; the first one is reported"
                  " above)")

    def _say(self, text: str) -> None:
        stream = sys.stderr
        if logging.raiseExceptions and stream:
            with contextlib.suppress(Exception):  # as Handler.handleError: never into the caller
                stream.write(f"mta_logging: {self.described}: {text}\n")


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
