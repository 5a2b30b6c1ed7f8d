"""Failures outside a record's write (naming, archiving, compressing, making a spare), reported
through the handler's ``handleError`` once per episode: the same failure repeating (each
maintenance tick retries) is reported once, and again only after it has cleared."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


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
        return logging.LogRecord(
            "mta_logging.handlers", logging.ERROR, __file__, 0,
            f"{self.described} failed while {doing}{reason}", None, None,
        )
