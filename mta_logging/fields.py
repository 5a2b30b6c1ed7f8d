"""The field catalogue: how each accounting field's text is taken from an Outcome.

Each field's text is a pure function of the outcome and the time the record was logged
(:func:`field_text`); None means "not known" and is written as the configured placeholder.
``speedups.extractor_for`` turns a field list into one function returning all values of a
record in order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from mta_logging.errors import ConfigError
from mta_logging.outcome import Kind, Outcome

FIELD_NAMES: tuple[str, ...] = (
    "type",
    "timeLogged",
    "timeQueued",
    "rcpt",
    "srcMta",
    "srcIp",
    "destIp",
    "vmta",
    "jobId",
    "dsnStatus",
    "dsnMsg",
    "delay",
    "bounceCat",
)
CUSTOM_PREFIX = "custom_"

_COMMON = ("type", "timeLogged", "timeQueued", "rcpt", "srcMta", "srcIp", "vmta", "jobId",
           "dsnStatus", "dsnMsg")
DEFAULT_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.DELIVERED: _COMMON,
    Kind.DEFERRED: (*_COMMON, "delay"),
    Kind.BOUNCE: (*_COMMON, "bounceCat"),
}
DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

Extractor = Callable[[Outcome, float], list["str | None"]]

ALLOWED_FIELDS_TEXT = "allowed fields: " + ", ".join(FIELD_NAMES) + ", custom_<Header>"


def parse_fields(value: str | Iterable[str], *, key: str = "fields") -> tuple[str, ...]:
    """Validate a field list (a comma-separated string or a sequence); return it as a tuple.

    Raises ConfigError naming the first unknown field.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(item).strip() for item in items if str(item).strip())
    if not names:
        raise ConfigError(key, value, "expected at least one field; " + ALLOWED_FIELDS_TEXT)
    for name in names:
        if name in FIELD_NAMES:
            continue
        if name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX):
            continue
        raise ConfigError(key, name, f"unknown field; {ALLOWED_FIELDS_TEXT}")
    return names


_NO_SECOND = (math.inf, -math.inf, "")  # a cache that holds no second


class TimeText:
    """Formats POSIX timestamps with a strftime format, in UTC or local time.

    The text of the last second is cached: many records share a second, and strftime is the
    most expensive step of formatting a record. ``last_second`` is that cache, ``(start, end,
    text)``: the text of the timestamps from start up to end (``speedups``' compiled line
    functions read it inline, and call ``text`` only when the second changes). ``%z`` in the
    format writes the UTC offset of each timestamp's own second (``+0000`` with ``utc``), so
    the text is right on both sides of a daylight-saving change.
    """

    __slots__ = ("time_format", "utc", "_convert", "last_second")

    def __init__(self, time_format: str = DEFAULT_TIME_FORMAT, utc: bool = False) -> None:
        if not isinstance(time_format, str) or not time_format:
            raise ConfigError("time_format", time_format, "expected a strftime format")
        try:
            time.strftime(time_format, time.gmtime(0))
        except ValueError as exc:
            raise ConfigError(
                "time_format", time_format, f"expected a strftime format ({exc})"
            ) from None
        self.time_format = time_format
        self.utc = bool(utc)
        self._convert = time.gmtime if self.utc else time.localtime
        # (start, end, text): the text of the timestamps from start up to end, one second;
        # compared as floats, which costs less than int() of the timestamp at each record
        self.last_second: tuple[float, float, str] = _NO_SECOND

    def text(self, timestamp: float) -> str:
        """The text of a POSIX timestamp (the instance is also callable for this)."""
        cached = self.last_second
        if cached[0] <= timestamp < cached[1]:
            return cached[2]
        second = int(timestamp)
        text = time.strftime(self.time_format, self._convert(second))
        # the second of timestamps t with int(t) == second (before 1970, int() rounds up:
        # not cached)
        self.last_second = (float(second), second + 1.0, text) if second > 0 else _NO_SECOND
        return text

    __call__ = text

    def of(self, value: datetime | float | None) -> str | None:
        """Format a datetime (naive = local time) or a timestamp; None stays None."""
        if value is None:
            return None
        if isinstance(value, datetime):
            value = value.timestamp()
        return self.text(float(value))


def format_delay(delay: float | None) -> str | None:
    """Seconds as text: whole numbers without a decimal point, others to the millisecond."""
    if delay is None:
        return None
    number = float(delay)
    if number.is_integer():
        return str(int(number))
    return f"{number:.3f}".rstrip("0")


def _text(value: object) -> str | None:
    """A value as field text: None stays None (not known), anything else is made text."""
    return None if value is None else str(value)


# How each field's text is taken from an outcome, the time it was logged and the TimeText of
# the file (speedups.py compiles the same into one function per field list)
_FIELD_TEXT: dict[str, Callable[[Outcome, float, TimeText], str | None]] = {
    "type": lambda outcome, logged, times: outcome.kind.value,
    "timeLogged": lambda outcome, logged, times: times.text(logged),
    "timeQueued": lambda outcome, logged, times: times.of(outcome.time_queued),
    "rcpt": lambda outcome, logged, times: _text(outcome.rcpt),
    "srcMta": lambda outcome, logged, times: _text(outcome.src_mta),
    "srcIp": lambda outcome, logged, times: _text(outcome.src_ip),
    "destIp": lambda outcome, logged, times: _text(outcome.dest_ip),
    "vmta": lambda outcome, logged, times: _text(outcome.vmta),
    "jobId": lambda outcome, logged, times: _text(outcome.job_id),
    "dsnStatus": lambda outcome, logged, times: _text(outcome.dsn_status),
    "dsnMsg": lambda outcome, logged, times: _text(outcome.dsn_msg),
    "delay": lambda outcome, logged, times: format_delay(outcome.delay),
    "bounceCat": lambda outcome, logged, times: _text(outcome.bounce_cat),
}


def field_text(name: str, outcome: Outcome, time_logged: float, times: TimeText) -> str | None:
    """The text of field ``name`` (a valid field name, see :func:`parse_fields`) of the record
    of ``outcome`` logged at ``time_logged``, times written by ``times``; None = not known."""
    if name.startswith(CUSTOM_PREFIX):
        return _text(outcome.header(name[len(CUSTOM_PREFIX):]))
    return _FIELD_TEXT[name](outcome, time_logged, times)
