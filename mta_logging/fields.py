"""The field catalogue: how each accounting field's text is taken from an Outcome.

Each field's text is a pure expression of the outcome and the time the record was logged
(``_EXPRESSIONS``); None means "not known" and is written as the configured placeholder.
``compile_fields`` turns a field list into one function returning all values of a record in
order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
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


_NO_SECOND = (math.inf, -math.inf, "")  # a cache that holds no second


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
        # (start, end, text): the text of the timestamps from start up to end, one second;
        # compared as floats, which costs less than int() of the timestamp at each record
        self._cache: tuple[float, float, str] = _NO_SECOND

    def text(self, timestamp: float) -> str:
        """The text of a POSIX timestamp (the instance is also callable for this)."""
        cached = self._cache
        if cached[0] <= timestamp < cached[1]:
            return cached[2]
        second = int(timestamp)
        text = time.strftime(self.time_format, self._convert(second))
        # the second of timestamps t with int(t) == second (before 1970, int() rounds up:
        # not cached)
        self._cache = (float(second), second + 1.0, text) if second > 0 else _NO_SECOND
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


def _plain_text(attribute: str) -> str:
    """The expression of a field whose value is text already (nearly always), or None, or
    anything else made text by ``str``: no call for the usual case (a function call per field
    was a tenth of the time of formatting a record)."""
    return _as_text(f"outcome.{attribute}")


def _as_text(expression: str) -> str:
    return f"(v if (v := {expression}).__class__ is str else missing if v is None else str(v))"


# How each field's text is taken from ``outcome`` (and ``time_logged``), as an expression over
# the names that ``_compile`` puts in its namespace; ``missing`` is what an unknown value
# becomes (None, or the placeholder when the line is joined right away). The two times read
# their TimeText's one-second cache inline and call it only when the second changes.
_EXPRESSIONS = {
    # Kind.code, not .value (an enum property, six times the cost); .value for another enum
    "type": "(k.code if (k := outcome.kind).__class__ is Kind else k.value)",
    "timeLogged": ("(c[2] if (c := logged._cache)[0] <= time_logged < c[1] "
                   "else logged.text(time_logged))"),
    "timeQueued": ("(c[2] if (v := outcome.time_queued).__class__ is float "
                   "and (c := queued._cache)[0] <= v < c[1] "
                   "else missing if v is None else queued.of(v))"),
    "rcpt": _plain_text("rcpt"),
    "srcMta": _plain_text("src_mta"),
    "srcIp": _plain_text("src_ip"),
    "destIp": _plain_text("dest_ip"),
    "vmta": _plain_text("vmta"),
    "jobId": _plain_text("job_id"),
    "dsnStatus": _plain_text("dsn_status"),
    "dsnMsg": _plain_text("dsn_msg"),
    "delay": "(missing if (v := outcome.delay) is None else format_delay(v))",
    "bounceCat": _plain_text("bounce_cat"),
}


def _compile(fields: Sequence[str], times: TimeText | None, missing: str | None,
             assemble: Callable[[list[str]], str],
             helpers: Mapping[str, Any] | None = None) -> Callable[[Outcome, float], Any]:
    """``def extract(outcome, time_logged): return <assemble(the field expressions)>``,
    generated the way ``dataclasses`` generates ``__init__``: formatting a record then costs
    no call per field beyond the conversions. Only the constant expressions above become code;
    header names, the placeholder and ``helpers`` are passed as values."""
    names = parse_fields(fields)
    times = times or TimeText()
    namespace: dict[str, Any] = {
        "logged": times,
        # its own one-second cache: the queued time is rarely in the logged time's second
        "queued": TimeText(times.time_format, times.utc),
        "format_delay": format_delay,
        "missing": missing,
        "Kind": Kind,
        **(helpers or {}),
    }
    expressions = []
    for number, name in enumerate(names):
        if name.startswith(CUSTOM_PREFIX):
            namespace[f"header_{number}"] = name[len(CUSTOM_PREFIX):]
            expressions.append(_as_text(f"outcome.header(header_{number})"))
        else:
            expressions.append(_EXPRESSIONS[name])
    exec(f"def extract(outcome, time_logged):\n    return {assemble(expressions)}\n", namespace)
    extract: Callable[[Outcome, float], Any] = namespace["extract"]
    return extract


def compile_fields(fields: Sequence[str], times: TimeText | None = None) -> Extractor:
    """One function that returns the values of ``fields`` for an outcome, in order, as text
    (None = not known)."""
    return _compile(fields, times, None, lambda values: "[" + ", ".join(values) + "]")


def compile_line(fields: Sequence[str], times: TimeText | None, separator: str,
                 placeholder: str) -> Callable[[Outcome, float], str]:
    """One function that returns the values of ``fields`` joined by ``separator``, unknown
    values as ``placeholder``, nothing escaped (the caller checks whether anything needs to
    be)."""
    return _compile(fields, times, placeholder,
                    lambda values: f"{separator!r}.join((" + ", ".join(values) + ",))")


def compile_json_object(fields: Sequence[str], times: TimeText | None,
                        quote: Callable[[str], str]) -> Callable[[Outcome, float], str]:
    """One function that returns the JSON object text ``json.dumps`` gives for the dict of
    ``fields`` (in order) to their values, unknown values ``null``; ``quote`` is the JSON
    string encoder to use (``json.encoder.encode_basestring_ascii`` or ``encode_basestring``).
    Field names must be unique (as dict keys are)."""
    names = parse_fields(fields)
    keys = [("{" if number == 0 else ", ") + quote(name) + ": "
            for number, name in enumerate(names)]

    def assemble(values: list[str]) -> str:
        items = [f"{key!r}, (quote(w) if (w := {value}) is not None else 'null')"
                 for key, value in zip(keys, values, strict=True)]
        return "''.join((" + ", ".join(items) + ", '}'))"

    return _compile(names, times, None, assemble, {"quote": quote})
