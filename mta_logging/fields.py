"""The field catalogue: how each accounting field's text is taken from an Outcome.

Each field's text is a pure expression of the outcome and the time the record was logged
(``_EXPRESSIONS``); None means "not known" and is written as the configured placeholder.
``compile_fields`` turns a field list into one function returning all values of a record in
order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

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


class TimeText:
    """Formats POSIX timestamps with a strftime format, in UTC or local time.

    The text of the last second is cached: many records share a second, and strftime is the
    most expensive step of formatting a record.
    """

    __slots__ = ("time_format", "utc", "_convert", "_cache")

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
        self._cache: tuple[int, str] = (-1, "")

    def text(self, timestamp: float) -> str:
        """The text of a POSIX timestamp (the instance is also callable for this)."""
        second = int(timestamp)
        cached = self._cache
        if cached[0] == second:
            return cached[1]
        text = time.strftime(self.time_format, self._convert(second))
        self._cache = (second, text)
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
    return None if value is None else str(value)


def _plain_text(attribute: str) -> str:
    """The expression of ``text(outcome.<attribute>)`` with the call left out when the value
    is None or already a ``str`` (nearly always): a function call per field was a tenth of the
    time of formatting a record."""
    return (f"(v if (v := outcome.{attribute}) is None or v.__class__ is str else text(v))")


# How each field's text is taken from ``outcome`` (and ``time_logged``), as an expression over
# the helpers that compile_fields puts in its namespace. None means "not known".
_EXPRESSIONS = {
    "type": "outcome.kind.value",
    "timeLogged": "logged(time_logged)",
    "timeQueued": "queued.of(outcome.time_queued)",
    "rcpt": _plain_text("rcpt"),
    "srcMta": _plain_text("src_mta"),
    "srcIp": _plain_text("src_ip"),
    "destIp": _plain_text("dest_ip"),
    "vmta": _plain_text("vmta"),
    "jobId": _plain_text("job_id"),
    "dsnStatus": _plain_text("dsn_status"),
    "dsnMsg": _plain_text("dsn_msg"),
    "delay": "format_delay(outcome.delay)",
    "bounceCat": _plain_text("bounce_cat"),
}


def compile_fields(fields: Sequence[str], times: TimeText | None = None) -> Extractor:
    """One function that returns the values of ``fields`` for an outcome, in order.

    The function is generated as a single list display (``[outcome.kind.value,
    logged(time_logged), text(outcome.rcpt), ...]``), the way ``dataclasses`` generates
    ``__init__``: formatting a record then costs no call per field beyond the conversions.
    Only the constant expressions above become code; header names are passed as values.
    """
    names = parse_fields(fields)
    times = times or TimeText()
    namespace: dict[str, Any] = {
        "logged": times.text,  # a bound method: quicker to call than the instance
        # its own one-second cache: the queued time is rarely in the logged time's second
        "queued": TimeText(times.time_format, times.utc),
        "text": _text,
        "format_delay": format_delay,
    }
    expressions = []
    for number, name in enumerate(names):
        if name.startswith(CUSTOM_PREFIX):
            namespace[f"header_{number}"] = name[len(CUSTOM_PREFIX):]
            expressions.append(f"outcome.header(header_{number})")
        else:
            expressions.append(_EXPRESSIONS[name])
    source = "def extract(outcome, time_logged):\n    return [" + ", ".join(expressions) + "]\n"
    exec(source, namespace)
    extract: Extractor = namespace["extract"]
    return extract
