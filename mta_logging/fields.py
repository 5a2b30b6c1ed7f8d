"""The field catalogue: how each accounting field's text is taken from an Outcome.

Each field's text is a function of the outcome and the time the record was logged
(:func:`field_text`); None means "not known" and is written as the configured placeholder.
``speedups.extractor_for`` turns a field list into one function returning all values of a
record in order. The one field that is not a pure function is ``eventId``: unless the outcome
carries one, each record written gets a new id (:mod:`mta_logging.eventid`).

Field names follow PowerMTA's where it has one (``orig``, ``orcpt``, ``envId``, ``dsnAction``,
``dsnDiag``, ``dsnMta``, ``dlvSize``, ``timeFirstAttempt``, ``totalSecondsQueued``,
``header_<Name>``, which is ``custom_<Name>``). A complaint's fields (``feedbackType``,
``userAgent``, ``arrivalDate``, ``sourceIp``, ``reportedDomain``) are RFC 5965's
Feedback-Type, User-Agent, Arrival-Date, Source-IP (the address that sent the reported
message, not ``srcIp``) and Reported-Domain, as the report gives them. A field list may hold
``*`` (every field of the catalogue not listed yet) and ``!name`` (leave that field out).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from mta_logging.errors import ConfigError
from mta_logging.eventid import new_event_id
from mta_logging.outcome import Kind, Outcome
from mta_logging.reply import parse_reply

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
    "orig",
    "orcpt",
    "envId",
    "dsnAction",
    "dsnDiag",
    "dsnMta",
    "dlvSize",
    "dlvTlsProtocol",
    "dlvTlsCipher",
    "timeFirstAttempt",
    "totalSecondsQueued",
    "eventId",
    "rcvSourceIp",
    "rcvHelo",
    "rcvAuthUser",
    "rcvTlsProtocol",
    "rcvTlsCipher",
    "feedbackType",
    "userAgent",
    "arrivalDate",
    "sourceIp",
    "reportedDomain",
)
CUSTOM_PREFIX = "custom_"
HEADER_PREFIX = "header_"  # PowerMTA's spelling of custom_
# fields whose value is a number: JSON lines write them as JSON numbers
NUMBER_FIELDS = frozenset({"delay", "dlvSize", "totalSecondsQueued"})

_COMMON = ("type", "timeLogged", "timeQueued", "rcpt", "srcMta", "srcIp", "vmta", "jobId",
           "dsnStatus", "dsnMsg")
DEFAULT_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.DELIVERED: _COMMON,
    Kind.DEFERRED: (*_COMMON, "delay"),
    Kind.BOUNCE: (*_COMMON, "bounceCat"),
    Kind.RECEIVED: ("type", "timeLogged", "orig", "rcpt", "orcpt", "envId", "jobId",
                    "rcvSourceIp", "rcvHelo", "rcvAuthUser", "dlvSize", "rcvTlsProtocol",
                    "rcvTlsCipher"),
    Kind.REMOTE_BOUNCE: ("type", "timeLogged", "orig", "rcpt", "orcpt", "jobId", "dsnAction",
                         "dsnStatus", "dsnDiag", "dsnMta", "bounceCat"),
    Kind.FEEDBACK: ("type", "timeLogged", "orig", "rcpt", "jobId", "feedbackType", "userAgent",
                    "arrivalDate", "sourceIp", "reportedDomain"),
}
DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

Extractor = Callable[[Outcome, float], list["str | None"]]

ALLOWED_FIELDS_TEXT = ("allowed fields: " + ", ".join(FIELD_NAMES)
                       + ", custom_<Header> (or header_<Header>), * for every field, "
                       "!<field> to leave one out")


def header_name(field_name: str) -> str | None:
    """The message header a ``custom_<Name>``/``header_<Name>`` field writes; None for others."""
    for prefix in (CUSTOM_PREFIX, HEADER_PREFIX):
        if field_name.startswith(prefix) and len(field_name) > len(prefix):
            return field_name[len(prefix):]
    return None


def parse_fields(value: str | Iterable[str], *, key: str = "fields") -> tuple[str, ...]:
    """Validate a field list (a comma-separated string or a sequence); return it as a tuple.

    ``*`` stands for every catalogue field not named before it; ``!name`` leaves ``name`` out
    (wherever it is listed, ``*`` included): ``*,!eventId`` is every field but the event id.
    Raises ConfigError naming the first unknown field, or a list that leaves no field.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(item).strip() for item in items if str(item).strip()]
    if not names:
        raise ConfigError(key, value, "expected at least one field; " + ALLOWED_FIELDS_TEXT)
    listed: list[str] = []
    left_out: set[str] = set()
    for name in names:
        if name == "*":
            listed.extend(known for known in FIELD_NAMES if known not in listed)
            continue
        excluded = name[1:].strip() if name.startswith("!") else None
        field_name = name if excluded is None else excluded
        if field_name not in FIELD_NAMES and header_name(field_name) is None:
            raise ConfigError(key, name, f"unknown field; {ALLOWED_FIELDS_TEXT}")
        if excluded is None:
            listed.append(field_name)
        else:
            left_out.add(field_name)
    selected = tuple(name for name in listed if name not in left_out)
    if not selected:
        raise ConfigError(key, value, "leaves no field; " + ALLOWED_FIELDS_TEXT)
    return selected


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


def json_number(text: str) -> int | float | str:
    """The JSON value of a number field's text (see :data:`NUMBER_FIELDS`): the whole or
    decimal number it writes, or the text itself when it is not a finite number."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _text(value: object) -> str | None:
    """A value as field text: None stays None (not known), anything else is made text."""
    return None if value is None else str(value)


# the RFC 3464 action of a record whose outcome names none, by kind
DSN_ACTIONS: dict[Kind, str] = {
    Kind.DELIVERED: "delivered", Kind.DEFERRED: "delayed", Kind.BOUNCE: "failed",
    Kind.REMOTE_BOUNCE: "failed"}


def dsn_action(outcome: Outcome) -> str | None:
    """``dsnAction``: the outcome's, else the action of its kind (none for received and
    feedback records)."""
    action = outcome.dsn_action
    return DSN_ACTIONS.get(outcome.kind) if action is None else str(action)


def dsn_diag(outcome: Outcome) -> str | None:
    """``dsnDiag``: the outcome's, else ``smtp; <dsn_msg>`` when ``dsn_msg`` is an SMTP reply
    (RFC 3464's Diagnostic-Code of a remote server's answer); None otherwise."""
    diag = outcome.dsn_diag
    if diag is not None:
        return str(diag)
    return None if outcome.dsn_msg is None else diagnostic_of(str(outcome.dsn_msg))


def diagnostic_of(message: str) -> str | None:
    """RFC 3464's Diagnostic-Code of a server's reply, ``smtp; <reply>``; None for a text that
    is not an SMTP reply (a local error)."""
    return f"smtp; {message}" if parse_reply(message).code is not None else None


def seconds_queued(outcome: Outcome, time_logged: float) -> str | None:
    """``totalSecondsQueued``: whole seconds from ``time_queued`` to the logging time."""
    queued = outcome.time_queued
    if queued is None:
        return None
    start = queued.timestamp() if isinstance(queued, datetime) else float(queued)
    return str(int(time_logged - start))


def event_id(outcome: Outcome, time_logged: float) -> str:
    """``eventId``: the outcome's, else a new one for this record."""
    given = outcome.event_id
    return new_event_id(time_logged) if given is None else str(given)


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
    "orig": lambda outcome, logged, times: _text(outcome.orig),
    "orcpt": lambda outcome, logged, times: _text(
        outcome.rcpt if outcome.orcpt is None else outcome.orcpt),
    "envId": lambda outcome, logged, times: _text(outcome.env_id),
    "dsnAction": lambda outcome, logged, times: dsn_action(outcome),
    "dsnDiag": lambda outcome, logged, times: dsn_diag(outcome),
    "dsnMta": lambda outcome, logged, times: _text(outcome.dsn_mta),
    "dlvSize": lambda outcome, logged, times: _text(outcome.size),
    "dlvTlsProtocol": lambda outcome, logged, times: _text(outcome.tls_protocol),
    "dlvTlsCipher": lambda outcome, logged, times: _text(outcome.tls_cipher),
    "timeFirstAttempt": lambda outcome, logged, times: times.of(outcome.time_first_attempt),
    "totalSecondsQueued": lambda outcome, logged, times: seconds_queued(outcome, logged),
    "eventId": lambda outcome, logged, times: event_id(outcome, logged),
    "rcvSourceIp": lambda outcome, logged, times: _text(outcome.rcv_ip),
    "rcvHelo": lambda outcome, logged, times: _text(outcome.rcv_helo),
    "rcvAuthUser": lambda outcome, logged, times: _text(outcome.rcv_auth_user),
    "rcvTlsProtocol": lambda outcome, logged, times: _text(outcome.rcv_tls_protocol),
    "rcvTlsCipher": lambda outcome, logged, times: _text(outcome.rcv_tls_cipher),
    "feedbackType": lambda outcome, logged, times: _text(outcome.feedback_type),
    "userAgent": lambda outcome, logged, times: _text(outcome.feedback_user_agent),
    "arrivalDate": lambda outcome, logged, times: _text(outcome.feedback_arrival_date),
    "sourceIp": lambda outcome, logged, times: _text(outcome.feedback_source_ip),
    "reportedDomain": lambda outcome, logged, times: _text(outcome.feedback_reported_domain),
}


def field_text(name: str, outcome: Outcome, time_logged: float, times: TimeText) -> str | None:
    """The text of field ``name`` (a valid field name, see :func:`parse_fields`) of the record
    of ``outcome`` logged at ``time_logged``, times written by ``times``; None = not known."""
    text = _FIELD_TEXT.get(name)
    if text is None:  # custom_<Name> or header_<Name>
        return _text(outcome.header(name.partition("_")[2]))
    return text(outcome, time_logged, times)
