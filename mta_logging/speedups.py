"""Every speed trick of the write path, each beside the plain code it stands in for.

A trick here gives exactly what the plain version next to it gives, with fewer Python calls
per record; most reproduce what some stdlib or third-party code does, and say which code, in
which versions. They are used only on the Pythons they were verified on
(:data:`VERIFIED_PYTHONS`); elsewhere the plain version is. The choice is made once, never
per record, by the ``*_for`` function of each section: when a logger or formatter is made,
and for ``Outcome.__init__`` when this module is imported (the package imports it).
``tests/test_speedups.py`` checks each trick against its plain version, both ways.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

from pythonjsonlogger.core import BaseJsonFormatter
from pythonjsonlogger.json import JsonEncoder, JsonFormatter

from mta_logging.activefile import write_whole
from mta_logging.eventid import new_event_id
from mta_logging.fields import (
    DSN_ACTIONS,
    NUMBER_FIELDS,
    Extractor,
    TimeText,
    dsn_diag,
    field_text,
    format_delay,
    header_name,
    json_number,
    parse_fields,
    seconds_queued,
)
from mta_logging.outcome import DETAIL_NAMES, Kind, Outcome

__all__ = [
    "VERIFIED_PYTHONS", "enabled",
    "DATACLASS_INIT", "one_step_init", "outcome_init_for",
    "RECORD_MESSAGE", "RECORD_PATHNAME",
    "plain_record", "template_record", "record_maker_for",
    "plain_extractor", "plain_line", "compiled_extractor", "compiled_line",
    "compiled_json_object", "extractor_for", "line_for", "json_objects_for",
    "jsonify_with_one_encoder", "json_written_directly",
    "FILTER", "FORMAT", "RoutedHandler", "handle_plain", "handle_routed", "handle_for",
    "finish_routed",
    "WRITE_FAILED", "message_args", "emit_plain", "emit_direct", "write_directly",
    "ACCELERATOR", "accelerated", "accelerated_line", "builder_for", "emit_accelerated",
    "finish_accelerated", "EMIT_IN_C", "entry_for",
    "emitter_for",
]

VERIFIED_PYTHONS: frozenset[tuple[int, int]] = frozenset({(3, 11)})


def enabled() -> bool:
    """True if this Python (major, minor) is one the tricks were verified on."""
    return sys.version_info[:2] in VERIFIED_PYTHONS


# == The C accelerator (mta_logging/_accel.c) =====================================================
# Built by setup.py where a C compiler is found (``optional``: without one the install still
# succeeds, and ACCELERATOR is None). ``MTA_LOGGING_REQUIRE_ACCELERATOR=1`` (set by .ci/run)
# makes tests/test_accel.py fail when it was not built.


def _accelerator() -> Any:
    """The C accelerator module, or None where it was not built."""
    try:
        return importlib.import_module("mta_logging._accel")
    except ImportError:
        return None


ACCELERATOR = _accelerator()


def accelerated() -> bool:
    """True if the C accelerator is built and used: on a verified Python (:func:`enabled`)."""
    return ACCELERATOR is not None and enabled()


# == Outcome.__init__ in one step (outcome.py) ====================================================


class _Factory:
    """The default of a field with a default factory (shown as the dataclass shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def one_step_init(cls: type, optional: Collection[str] = ()) -> Callable[..., None]:
    """``cls.__init__`` (a frozen dataclass without slots) with the dataclass's signature,
    setting all fields at once.

    The frozen dataclass ``__init__`` that CPython 3.11's ``Lib/dataclasses.py`` generates
    sets each field with ``object.__setattr__(self, name, value)``: for an Outcome thirty
    calls, the larger part of the cost of building one, for every record. This one sets the
    instance's ``__dict__`` once, to a dict display of the fields in order; same signature,
    defaults and default factories (a new dict per instance). The fields named in
    ``optional`` (their default must be None) are added after the others, in order, only when
    given another value: left out, the class attribute the dataclass makes of the default
    stands for them, so that a dict of thirty fields is not built for every record when most
    are None (three times the cost of the fourteen others). The class stays the dataclass it
    is (fields, equality, hash, repr, frozen, pickling: they read attributes)."""
    namespace: dict[str, Any] = {"FACTORY": _FACTORY, "set_attribute": object.__setattr__}
    parameters = []
    entries = []
    later = []
    for item in dataclasses.fields(cls):
        name = item.name
        if name in optional:
            if item.default is not None:
                raise ValueError(f"{cls.__qualname__}.{name}: an optional field defaults to None")
            parameters.append(f"{name}=None")
            later.append(f"    if {name} is not None:\n        values[{name!r}] = {name}\n")
        elif item.default_factory is dict:  # a dict display: no call of the type
            parameters.append(f"{name}=FACTORY")
            entries.append(f"{name!r}: {{}} if {name} is FACTORY else {name}")
        elif item.default_factory is not dataclasses.MISSING:
            namespace[f"factory_{name}"] = item.default_factory
            parameters.append(f"{name}=FACTORY")
            entries.append(f"{name!r}: factory_{name}() if {name} is FACTORY else {name}")
        elif item.default is not dataclasses.MISSING:
            namespace[f"default_{name}"] = item.default
            parameters.append(f"{name}=default_{name}")
            entries.append(f"{name!r}: {name}")
        else:
            parameters.append(name)
            entries.append(f"{name!r}: {name}")
    source = (f"def __init__(self, {', '.join(parameters)}):\n"
              f"    values = {{{', '.join(entries)}}}\n"
              + "".join(later)
              + "    set_attribute(self, '__dict__', values)\n")
    exec(source, namespace)
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


DATACLASS_INIT: Callable[..., None] = Outcome.__init__  # the plain version: the dataclass's own


def outcome_init_for() -> Callable[..., None]:
    """:func:`one_step_init` of Outcome (the details optional) on a verified Python, in C
    where the accelerator is built (:func:`init_in_c`), else :data:`DATACLASS_INIT`."""
    if not enabled():
        return DATACLASS_INIT
    init = one_step_init(Outcome, DETAIL_NAMES)
    return init if ACCELERATOR is None else init_in_c(init, Outcome, DETAIL_NAMES)


def init_in_c(init: Callable[..., None], cls: type, optional: Collection[str]
              ) -> Callable[..., None]:
    """``init`` (:func:`one_step_init` of ``cls`` with ``optional``) as an ``_accel.Init``:
    the usual call (keywords spelt in code, every required field given) made in C, the
    instance's ``__dict__`` the one ``init`` makes; every other call is ``init``'s. ``init``
    itself where a field has a default factory other than ``dict``."""
    names: list[str] = []
    defaults: list[Any] = []
    kinds = bytearray()
    for item in dataclasses.fields(cls):
        names.append(item.name)
        defaults.append(None)
        if item.name in optional:
            kinds.append(3)
        elif item.default_factory is dict:
            defaults[-1] = _FACTORY  # passed back in (the signature shows it): a new dict
            kinds.append(2)
        elif item.default_factory is not dataclasses.MISSING:
            return init
        elif item.default is not dataclasses.MISSING:
            defaults[-1] = item.default
            kinds.append(1)
        else:
            kinds.append(0)
    in_c: Callable[..., None] = ACCELERATOR.Init(init, tuple(names), tuple(defaults),
                                                 bytes(kinds), cls)
    return in_c


Outcome.__init__ = outcome_init_for()  # type: ignore[method-assign]
if ACCELERATOR is not None and isinstance(Outcome.__dict__["__init__"], ACCELERATOR.Init):
    # Outcome(...) made in C: no dict of its keywords (see _accel.construct_in_c)
    ACCELERATOR.construct_in_c(Outcome)


# == LogRecord from a template (AccountingLogger.record) ==========================================

RECORD_MESSAGE = "%s %s job %s: %s"  # formatted only if a handler asks for the message
RECORD_PATHNAME = "(accounting)"  # a record's pathname: there is no caller's frame to name

RecordMaker = Callable[[logging.Logger, int, tuple[str, ...], Outcome], logging.LogRecord]


def plain_record(logger: logging.Logger, level: int, args: tuple[str, ...],
                 outcome: Outcome) -> logging.LogRecord:
    """The accounting record as ``logger.makeRecord`` makes it (the application's record
    factory and ``makeRecord`` included), with ``record.outcome`` set."""
    record = logger.makeRecord(logger.name, level, RECORD_PATHNAME, 0, RECORD_MESSAGE, args,
                               None)
    record.outcome = outcome  # what extra={"outcome": ...} does, without its checks
    return record


def _record_template() -> dict[str, Any] | None:
    """The attributes of an accounting LogRecord, in the order ``LogRecord.__init__`` sets
    them, if this Python's LogRecord sets the ones ``template_record`` reproduces (with the
    ``msecs`` of gh-89047); else None."""
    sample = logging.LogRecord("", logging.INFO, RECORD_PATHNAME, 0, RECORD_MESSAGE, None, None)
    template = sample.__dict__
    known = {"name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
             "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
             "relativeCreated", "thread", "threadName", "processName", "process"}
    created = sample.created
    if (set(template) != known
            or sample.msecs != int((created - int(created)) * 1000) + 0.0
            or sample.relativeCreated != (created - logging._startTime) * 1000):  # type: ignore[attr-defined]
        return None
    return {**template, "outcome": None}  # where makeRecord(extra=) would put it: last


_TEMPLATE = _record_template()
_LogRecord = logging.LogRecord
_MAKE_RECORD = logging.Logger.makeRecord
_new_object = object.__new__


# The process id, read once and again in a forked child: os.getpid() is a system call on
# Linux since glibc 2.25, which cached it before, and it was ~6 calls per relayed message.
_pid = [os.getpid()]


def _reread_pid() -> None:
    _pid[0] = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reread_pid)


def template_record(logger: logging.Logger, level: int, args: tuple[str, ...],
                    outcome: Outcome) -> logging.LogRecord:
    """What :func:`plain_record` makes with the default record factory and ``makeRecord``:
    the same class, the same attributes in the same order with the same values, computed as
    CPython 3.11's ``LogRecord.__init__`` (``Lib/logging/__init__.py``) computes them. The
    constant ones are copied from a template instead of being derived again (file name and
    module from the path name, ...): a third of the cost of making the record. An application
    that set its own record factory or ``makeRecord`` gets :func:`plain_record`."""
    if (logging.getLogRecordFactory() is not _LogRecord
            or getattr(logger.makeRecord, "__func__", None) is not _MAKE_RECORD):
        return plain_record(logger, level, args, outcome)
    created = time.time()  # looked up at each call, as LogRecord does (clock patching)
    record = _new_object(_LogRecord)
    record.__dict__ = values = _TEMPLATE.copy()  # type: ignore[union-attr]
    values["name"] = logger.name
    values["args"] = args
    values["levelname"] = logging.getLevelName(level)
    values["levelno"] = level
    values["created"] = created
    values["msecs"] = int((created - int(created)) * 1000) + 0.0
    values["relativeCreated"] = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
    if logging.logThreads:
        values["thread"] = threading.get_ident()
        values["threadName"] = threading.current_thread().name
    else:
        values["thread"] = values["threadName"] = None
    if logging.logMultiprocessing:
        values["processName"] = "MainProcess"
        multiprocessing = sys.modules.get("multiprocessing")
        if multiprocessing is not None:
            try:  # noqa: SIM105 - suppress() would cost a context manager per record
                values["processName"] = multiprocessing.current_process().name
            except Exception:  # as LogRecord: multiprocessing may be half imported
                pass
    else:
        values["processName"] = None
    values["process"] = _pid[0] if logging.logProcesses else None
    values["outcome"] = outcome
    return record


def record_maker_for() -> RecordMaker:
    """:func:`template_record` on a verified Python whose LogRecord matches the template,
    else :func:`plain_record`."""
    return template_record if enabled() and _TEMPLATE is not None else plain_record


# == Field values compiled into one function (fields.py, formatters.py) ===========================
#
# The plain version asks fields.field_text for each field in turn. The compiled one is the
# ``dataclasses`` technique (its generated ``__init__``, CPython 3.11 Lib/dataclasses.py
# ``_create_fn``): one function generated per field list whose body holds every field's
# expression, so that a record costs no call per field beyond the conversions.


def plain_extractor(fields: Sequence[str], times: TimeText | None = None) -> Extractor:
    """The values of ``fields`` for an outcome and its logging time, in order, as text
    (None = not known), one :func:`~mta_logging.fields.field_text` per field."""
    names = parse_fields(fields)
    times = times or TimeText()

    def extract(outcome: Outcome, time_logged: float) -> list[str | None]:
        return [field_text(name, outcome, time_logged, times) for name in names]

    return extract


def plain_line(fields: Sequence[str], times: TimeText | None, separator: str,
               placeholder: str) -> Callable[[Outcome, float], str]:
    """The values of ``fields`` joined by ``separator``, unknown values as ``placeholder``,
    nothing escaped."""
    extract = plain_extractor(fields, times)

    def line(outcome: Outcome, time_logged: float) -> str:
        return separator.join(placeholder if value is None else value
                              for value in extract(outcome, time_logged))

    return line


def _as_text(expression: str) -> str:
    """The value of ``expression`` as field_text makes it text: no call for the usual case
    (text already), ``missing`` for None, else ``str()``."""
    return f"(v if (v := {expression}).__class__ is str else missing if v is None else str(v))"


# Each field's expression over the names ``_compile`` puts in its namespace; ``missing`` is
# what an unknown value becomes (None, or the placeholder when the line is joined right away).
# The two times read their TimeText's one-second cache (``last_second``) inline and call it
# only when the second changes.
_EXPRESSIONS = {
    # Kind.code, not .value (an enum property, six times the cost); .value for another enum
    "type": "(k.code if (k := outcome.kind).__class__ is Kind else k.value)",
    "timeLogged": ("(c[2] if (c := logged.last_second)[0] <= time_logged < c[1] "
                   "else logged.text(time_logged))"),
    "timeQueued": ("(c[2] if (v := outcome.time_queued).__class__ is float "
                   "and (c := queued.last_second)[0] <= v < c[1] "
                   "else missing if v is None else queued.of(v))"),
    "rcpt": _as_text("outcome.rcpt"),
    "srcMta": _as_text("outcome.src_mta"),
    "srcIp": _as_text("outcome.src_ip"),
    "destIp": _as_text("outcome.dest_ip"),
    "vmta": _as_text("outcome.vmta"),
    "jobId": _as_text("outcome.job_id"),
    "dsnStatus": _as_text("outcome.dsn_status"),
    "dsnMsg": _as_text("outcome.dsn_msg"),
    "delay": "(missing if (v := outcome.delay) is None else format_delay(v))",
    "bounceCat": _as_text("outcome.bounce_cat"),
    "orig": _as_text("outcome.orig"),
    "orcpt": _as_text("(outcome.rcpt if (o := outcome.orcpt) is None else o)"),
    "envId": _as_text("outcome.env_id"),
    "dsnAction": _as_text("(actions.get(outcome.kind) if (a := outcome.dsn_action) is None "
                          "else a)"),
    "dsnDiag": "(missing if (v := dsn_diag(outcome)) is None else v)",
    "dsnMta": _as_text("outcome.dsn_mta"),
    "dlvSize": _as_text("outcome.size"),
    "dlvTlsProtocol": _as_text("outcome.tls_protocol"),
    "dlvTlsCipher": _as_text("outcome.tls_cipher"),
    "timeFirstAttempt": ("(missing if (v := outcome.time_first_attempt) is None "
                         "else first.of(v))"),
    "totalSecondsQueued": ("(missing if outcome.time_queued is None "
                           "else seconds_queued(outcome, time_logged))"),
    "eventId": ("(new_event_id(time_logged) if (v := outcome.event_id) is None "
                "else v if v.__class__ is str else str(v))"),
    "rcvSourceIp": _as_text("outcome.rcv_ip"),
    "rcvHelo": _as_text("outcome.rcv_helo"),
    "rcvAuthUser": _as_text("outcome.rcv_auth_user"),
    "rcvTlsProtocol": _as_text("outcome.rcv_tls_protocol"),
    "rcvTlsCipher": _as_text("outcome.rcv_tls_cipher"),
    "feedbackType": _as_text("outcome.feedback_type"),
    "userAgent": _as_text("outcome.feedback_user_agent"),
    "arrivalDate": _as_text("outcome.feedback_arrival_date"),
    "sourceIp": _as_text("outcome.feedback_source_ip"),
    "reportedDomain": _as_text("outcome.feedback_reported_domain"),
}


def _compile(fields: Sequence[str], times: TimeText | None, missing: str | None,
             assemble: Callable[[list[str]], str],
             helpers: Mapping[str, Any] | None = None) -> Callable[[Outcome, float], Any]:
    """``def extract(outcome, time_logged): return <assemble(the field expressions)>``. Only
    the constant expressions above become code; header names, the placeholder and ``helpers``
    are passed as values."""
    names = parse_fields(fields)
    times = times or TimeText()
    namespace: dict[str, Any] = {
        "logged": times,
        # its own one-second cache: the queued time is rarely in the logged time's second
        "queued": TimeText(times.time_format, times.utc),
        "first": TimeText(times.time_format, times.utc),
        "format_delay": format_delay,
        "actions": DSN_ACTIONS,
        "dsn_diag": dsn_diag,
        "seconds_queued": seconds_queued,
        "new_event_id": new_event_id,
        "missing": missing,
        "Kind": Kind,
        **(helpers or {}),
    }
    expressions = []
    for number, name in enumerate(names):
        header = header_name(name) if name not in _EXPRESSIONS else None
        if header is not None:
            namespace[f"header_{number}"] = header
            expressions.append(_as_text(f"outcome.header(header_{number})"))
        else:
            expressions.append(_EXPRESSIONS[name])
    exec(f"def extract(outcome, time_logged):\n    return {assemble(expressions)}\n", namespace)
    extract: Callable[[Outcome, float], Any] = namespace["extract"]
    return extract


def compiled_extractor(fields: Sequence[str], times: TimeText | None = None) -> Extractor:
    """What :func:`plain_extractor` gives, from one generated function."""
    return _compile(fields, times, None, lambda values: "[" + ", ".join(values) + "]")


def compiled_line(fields: Sequence[str], times: TimeText | None, separator: str,
                  placeholder: str) -> Callable[[Outcome, float], str]:
    """What :func:`plain_line` gives, from one generated function."""
    return _compile(fields, times, placeholder,
                    lambda values: f"{separator!r}.join((" + ", ".join(values) + ",))")


def compiled_json_object(fields: Sequence[str], times: TimeText | None,
                         quote: Callable[[str], str]) -> Callable[[Outcome, float], str]:
    """One function that returns the JSON object text ``json.dumps`` gives for the dict of
    ``fields`` (in order) to their values, unknown values ``null``, number fields as numbers
    (:func:`~mta_logging.fields.json_number`); ``quote`` is the JSON string encoder to use
    (``json.encoder.encode_basestring_ascii`` or ``encode_basestring``). Field names must be
    unique (as dict keys are). Values are written as they are: see :func:`json_written_directly`
    for those that need escaping first."""
    names = parse_fields(fields)
    keys = [("{" if number == 0 else ", ") + quote(name) + ": "
            for number, name in enumerate(names)]

    def assemble(values: list[str]) -> str:
        items = [f"{key!r}, ('null' if (w := {value}) is None else number(w, quote))"
                 if name in NUMBER_FIELDS else
                 f"{key!r}, (quote(w) if (w := {value}) is not None else 'null')"
                 for name, key, value in zip(names, keys, values, strict=True)]
        return "''.join((" + ", ".join(items) + ", '}'))"

    return _compile(names, times, None, assemble, {"quote": quote, "number": _number_json})


def _number_json(text: str, quote: Callable[[str], str]) -> str:
    """The JSON text ``json.dumps`` gives for :func:`~mta_logging.fields.json_number` of
    ``text`` (a float as ``float.__repr__``, as the stdlib encoder writes it)."""
    number = json_number(text)
    if number.__class__ is str:
        return quote(text)
    return str(number) if number.__class__ is int else repr(number)


def extractor_for(fields: Sequence[str], times: TimeText | None = None) -> Extractor:
    """:func:`compiled_extractor` on a verified Python, else :func:`plain_extractor`."""
    return (compiled_extractor if enabled() else plain_extractor)(fields, times)


# the fields whose value is an attribute of the outcome as text (_as_text), by name; those,
# the type and the two times are the fields ``_accel.Line`` makes
_ATTRIBUTE_FIELDS = {name: item.name for name, expression in _EXPRESSIONS.items()
                     for item in dataclasses.fields(Outcome)
                     if expression == _as_text(f"outcome.{item.name}")}
_TYPE, _LOGGED, _QUEUED = 1, 2, 3  # (0: an attribute) what each field of a Line's spec is


def accelerated_line(fields: Sequence[str], times: TimeText | None, separator: str,
                     placeholder: str) -> Callable[[Outcome, float], str] | None:
    """What :func:`compiled_line` gives, from one ``_accel.Line``, if the C accelerator is
    built and makes every one of ``fields`` (the type, the two times and the fields in
    ``_ATTRIBUTE_FIELDS``); else None."""
    if ACCELERATOR is None:
        return None
    times = times or TimeText()
    spec: list[tuple[int, Any]] = []
    for name in parse_fields(fields):
        if name in _ATTRIBUTE_FIELDS:
            spec.append((0, sys.intern(_ATTRIBUTE_FIELDS[name])))
        elif name == "type":
            spec.append((_TYPE, None))
        elif name == "timeLogged":
            spec.append((_LOGGED, times))
        elif name == "timeQueued":  # its own one-second cache, as compiled_line's
            spec.append((_QUEUED, TimeText(times.time_format, times.utc)))
        else:
            return None
    line: Callable[[Outcome, float], str] = ACCELERATOR.Line(
        tuple(spec), separator, placeholder, Kind, Outcome)
    return line


def line_for(fields: Sequence[str], times: TimeText | None, separator: str,
             placeholder: str) -> Callable[[Outcome, float], str]:
    """:func:`accelerated_line` where the accelerator is used (:func:`accelerated`) and makes
    the fields, else :func:`compiled_line` on a verified Python, else :func:`plain_line`."""
    line = accelerated_line(fields, times, separator, placeholder) if accelerated() else None
    if line is not None:
        return line
    return (compiled_line if enabled() else plain_line)(fields, times, separator, placeholder)


# == JSON lines without python-json-logger's steps (AccountingJsonFormatter) ======================
#
# Both reproduce python-json-logger (``pythonjsonlogger/json.py``
# ``JsonFormatter.jsonify_log_record``; ``core.py`` ``BaseJsonFormatter``'s
# ``process_log_record`` and ``serialize_log_record``), verified with 4.2 and the stdlib
# ``json`` encoder of CPython 3.11; pyproject.toml bounds python-json-logger below 4.3.
# The formatter is passed as ``self: Any``: these are its methods, defined here.

JsonObjects = tuple[Callable[[Outcome, float], str], Callable[[Outcome, float], str]]


def json_objects_for(fields: Sequence[str], times: TimeText | None) -> JsonObjects | None:
    """The object functions of :func:`json_written_directly` (``ensure_ascii`` off, on), on a
    verified Python and for fields named once each; else None (the plain path)."""
    if not enabled() or len(set(fields)) != len(fields):
        return None
    return (compiled_json_object(fields, times, encode_basestring),
            compiled_json_object(fields, times, encode_basestring_ascii))


def jsonify_with_one_encoder(self: Any, log_data: dict[str, Any]) -> str:
    """python-json-logger 4.2's ``JsonFormatter.jsonify_log_record``, with one encoder for all
    records.

    ``json.dumps(data, cls=..., ...)`` makes a new encoder for every record; the text depends
    only on the encoder class and the options, so one encoder made for the current options
    (kept in ``self._encoder``, None at first) writes the same. Any other serializer, or a
    formatter made on a Python the trick was not verified on (``self._speedups`` false), goes
    to python-json-logger's own method."""
    if not self._speedups or self.json_serializer is not json.dumps:
        return JsonFormatter.jsonify_log_record(self, log_data)
    cached = self._encoder
    options = (self.json_encoder, self.json_default, self.json_indent, self.json_ensure_ascii)
    if cached is None or cached[0] != options:
        encoder_class = self.json_encoder or json.JSONEncoder
        cached = self._encoder = (options, encoder_class(
            default=self.json_default, indent=self.json_indent,
            ensure_ascii=self.json_ensure_ascii))
    return cached[1].encode(log_data)


_PLAIN_ENCODERS = (None, json.JSONEncoder, JsonEncoder)  # encode strings as JSONEncoder does
_HOOKS = frozenset(("process_log_record", "serialize_log_record", "jsonify_log_record"))
_PROCESS = BaseJsonFormatter.process_log_record
_SERIALIZE = BaseJsonFormatter.serialize_log_record

JsonFormat = Callable[[Any, logging.LogRecord], str]
_MAY_NEED_ESCAPING = re.compile("\\\\\\\\|\\\\ud[89a-f]|[\ud800-\udfff]")


def json_written_directly(plain: JsonFormat) -> JsonFormat:
    """The formatter's ``format``: the JSON object text written directly when python-json-logger
    (4.2, with CPython 3.11's ``json``) would give exactly that text, else ``plain`` (the
    python-json-logger way).

    That is when the formatter has its object functions (``self._objects``, see
    :func:`json_objects_for`) and none of ``rename_fields``, ``static_fields``, another
    serializer, an indent, an encoder that may encode strings otherwise, or a replaced
    ``process_log_record``/``serialize_log_record``/``jsonify_log_record`` (on the instance or
    its class, checked at each record: they may be set later): every value is text or None,
    so the encoder's ``default()`` is never asked and ``json.dumps`` of the values' dict would
    give this text, at a third of the cost."""

    @functools.wraps(plain)
    def format(self: Any, record: logging.LogRecord) -> str:
        objects = self._objects
        cls = self.__class__
        outcome = getattr(record, "outcome", None)
        if (objects is not None and outcome.__class__ is Outcome and not self.rename_fields
                and not self.static_fields and self.json_serializer is json.dumps
                and self.json_indent is None and self.json_encoder in _PLAIN_ENCODERS
                and self.__dict__.keys().isdisjoint(_HOOKS)  # no step of format replaced
                and cls.process_log_record is _PROCESS and cls.serialize_log_record is _SERIALIZE
                and cls.jsonify_log_record is jsonify_with_one_encoder):
            text = objects[bool(self.json_ensure_ascii)](outcome, record.created)
            # a value with a backslash or text that is not Unicode is written escaped
            # (AccountingJsonFormatter.format): the JSON text shows it as \\, \udcXX or the
            # surrogate itself
            if ("\\" not in text and text.isascii()) or _MAY_NEED_ESCAPING.search(text) is None:
                return self.prefix + text
        return plain(self, record)

    return format

# == Handler.handle for a handler of one kind (AccountingFileHandler) ==============================
# ``handle_routed`` is ``logging.Handler.handle`` of CPython 3.11 for a handler that takes only
# records of its own kind; ``handle_plain`` is the same routing in front of the stdlib's own
# ``Handler.handle``. ``RoutedHandler`` notices ``filter``/``format`` set on an instance (as
# ``mock.patch.object`` does), so that the tricks, here and in the handler's ``emit``, step
# aside for them.

FILTER = logging.Filterer.filter  # a subclass or a patched class that filters differs
FORMAT = logging.Handler.format  # a subclass or a patched class that formats differs


# the handler methods a handler may not have set on it for a direct write (see RoutedHandler)
_HANDLER_HOOKS = ("handle", "emit", "filter", "format", "write_line")
_HOOKS_OF_HANDLE = frozenset(_HANDLER_HOOKS)


class RoutedHandler(logging.Handler):
    """A handler for records of one ``kind`` (``record.outcome.kind``)."""

    kind: Kind
    # ``filter``/``format`` set on the instance are noticed here; a subclass's or a patched
    # class's are noticed by comparing the class attribute with FILTER/FORMAT at each record
    _filter_set = False
    _format_set = False
    # True for the class write_directly names (not for its subclasses, see there), and for its
    # instances until ``handle``, ``emit``, ``filter``, ``format`` or ``write_line`` is set on one
    _writes_directly = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOOKS_OF_HANDLE:
            object.__setattr__(self, "_writes_directly", False)
            if name == "filter" or name == "format":
                object.__setattr__(self, f"_{name}_set", True)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        if name in _HOOKS_OF_HANDLE:
            if name == "filter" or name == "format":
                object.__setattr__(self, f"_{name}_set", False)
            if _HOOKS_OF_HANDLE.isdisjoint(self.__dict__):  # the class's value again
                self.__dict__.pop("_writes_directly", None)


def handle_plain(handler: RoutedHandler, record: logging.LogRecord) -> bool:
    """Routing by kind: records of other kinds (and records without an outcome) are turned
    away, before the filter chain and the lock; the rest go to ``logging.Handler.handle``."""
    try:
        if record.outcome.kind is not handler.kind:  # type: ignore[attr-defined]
            return False
    except AttributeError:  # no outcome: not an accounting record
        return False
    return bool(logging.Handler.handle(handler, record))


def handle_routed(handler: RoutedHandler, record: logging.LogRecord) -> bool:
    """``handle_plain`` with ``logging.Handler.handle`` of CPython 3.11 written out: the filter
    chain is run only when there are filters (or the handler filters by itself), and the lock
    is taken by its own context manager (two Python-level calls fewer per record). Written
    after, and checked against, ``Handler.handle`` and ``Filterer.filter`` of CPython 3.11.7;
    the handler uses it on Python 3.11 only (3.12 changed ``Handler.handle``: a filter may
    return a record to emit in place of the one it was given)."""
    try:
        if record.outcome.kind is not handler.kind:  # type: ignore[attr-defined]
            return False
    except AttributeError:  # no outcome: not an accounting record
        return False
    if (handler.filters or handler._filter_set or handler.__class__.filter is not FILTER) and (
            not handler.filter(record)):
        return False
    lock = handler.lock
    if lock is None:  # a subclass that wants no lock (Handler.acquire allows it)
        handler.emit(record)
    else:
        with lock:
            direct = _direct
            if direct is None or ACCELERATOR is None or os.write is not _OS_WRITE:
                handler.emit(record)
            else:
                _emit_in_c(handler, record, direct)
    return True


def _emit_in_c(handler: RoutedHandler, record: logging.LogRecord, direct: _Direct) -> None:
    """``handler.emit(record)`` (lock held), its line made and written by
    ``_accel.write_record`` when the handler and formatter are the classes and methods
    :func:`write_directly` allows (see there), else by ``emit``; a line it made and left to
    ``write_line`` (a file to open, a rollover, ``fsync: always``, not ASCII) is written by
    it as it was made (not made again); a failure goes to ``handleError`` as emit's does."""
    written: str | Exception | bool | None
    try:
        written = ACCELERATOR.write_record(
            handler, record, direct.handler_class, direct.formatter_class, _ACCELERATED_NAMES,
            direct.accelerated_methods, Outcome, write_whole)
    except Exception as error:
        written = error
    if written is not True:
        finish_routed(handler, record, written)  # type: ignore[arg-type]


def finish_routed(handler: RoutedHandler, record: logging.LogRecord,
                  written: str | Exception | None) -> None:
    """The rest of ``_emit_in_c`` (lock held) when ``write_record`` did not write the record:
    ``emit`` when it made nothing (None); the line it made and left to ``write_line`` (a file
    to open, a rollover, ``fsync: always``...) written by it as made; the Exception it raised
    (or write_line's) to ``handleError``, raised here so that handleError sees it."""
    if written is None:
        handler.emit(record)
        return
    try:
        if isinstance(written, Exception):
            raise written
        handler.write_line(written, record.created, record)  # type: ignore[attr-defined]
    except Exception:
        handler.handleError(record)


def handle_for() -> Callable[[RoutedHandler, logging.LogRecord], bool]:
    """The ``handle`` of a handler of one kind: ``handle_routed`` where the tricks are verified
    (an ``_accel.Handle`` in front of it where the accelerator is built: its usual case done
    in C), else ``handle_plain``."""
    if not enabled():
        return handle_plain
    if ACCELERATOR is None:
        return handle_routed
    in_c: Callable[[RoutedHandler, logging.LogRecord], bool] = ACCELERATOR.Handle(
        handle_routed, finish_routed, globals())
    return in_c



# == An outcome written without its LogRecord (AccountingLogger.record) ==========================
# ``emit_plain`` is what ``AccountingLogger.record`` does with an outcome its logger is enabled
# for: make the record, ``logger.handle`` it. CPython 3.11's ``Logger.handle`` and
# ``Logger.callHandlers`` hand the record to every handler of the logger and of its parents
# (while they propagate) whose level it reaches. When all of them are accounting file handlers
# of the class registered by :func:`write_directly`, nothing of which is replaced, the handlers
# of the outcome's kind only turn the outcome and the record's time into their line and write
# it, and the others turn the record away: ``emit_direct`` does just that, without making the
# record (half the cost of writing one). Written after, and checked against, ``Logger.handle``,
# ``Logger.callHandlers`` and ``Filterer.filter`` of CPython 3.11.7. ``emit_accelerated`` is
# ``emit_direct`` with the line's making and writing done by the C accelerator
# (``mta_logging/_accel.c``) where it can.

WRITE_FAILED = "write_failed"  # attribute a handler sets on a record it could not write

Emitter = Callable[[logging.Logger, int, Outcome, RecordMaker], bool]


def message_args(outcome: Outcome) -> tuple[str, ...]:
    """The arguments of :data:`RECORD_MESSAGE` for ``outcome``: kind, recipient, job, reply."""
    return (outcome.kind.directory, outcome.rcpt, outcome.job_id or "-",
            outcome.dsn_msg or outcome.dsn_status or "-")


def emit_plain(logger: logging.Logger, level: int, outcome: Outcome,
               make_record: RecordMaker) -> bool:
    """Make the accounting record of ``outcome`` at ``level`` and let ``logger`` handle it;
    True if a handler marked it :data:`WRITE_FAILED` (it could not write it)."""
    record = make_record(logger, level, message_args(outcome), outcome)
    logger.handle(record)
    return WRITE_FAILED in record.__dict__


@dataclasses.dataclass(frozen=True, slots=True)
class _Direct:
    """The classes ``emit_direct`` writes through, and the methods it stands in for."""

    handler_class: type[RoutedHandler]
    formatter_class: type[logging.Formatter]
    # Logger's handle, callHandlers, filter and makeRecord, the handler class's handle, emit,
    # filter and format, the formatter class's format
    methods: tuple[Any, ...]
    # for emit_accelerated, which writes without them: those and the handler class's
    # write_line, the formatter class's outcome_line (in the order of _ACCELERATED_NAMES)
    accelerated_methods: tuple[Any, ...]


_direct: _Direct | None = None


def _methods(logger_class: Any, handler_class: Any, formatter_class: Any) -> tuple[Any, ...]:
    """The methods a class patched later would replace (see _Direct.methods)."""
    return (logger_class.handle, logger_class.callHandlers, logger_class.filter,
            logger_class.makeRecord, handler_class.handle, handler_class.emit,
            handler_class.filter, handler_class.format, formatter_class.format)


_LOGGER_HOOKS = ("handle", "callHandlers", "filter", "makeRecord")
_HOOKS_OF_LOGGER = frozenset(_LOGGER_HOOKS)
# the names of _Direct.accelerated_methods: the logger class's, the handler class's and the
# formatter class's (the logger's are also those that must not be set on a logger)
_ACCELERATED_NAMES = (_LOGGER_HOOKS, _HANDLER_HOOKS, ("format", "outcome_line"))


def write_directly(handler_class: type[RoutedHandler],
                   formatter_class: type[logging.Formatter]) -> None:
    """Let :func:`emit_direct` write through handlers of exactly ``handler_class`` (marked
    ``_writes_directly``; the class must unmark its subclasses) whose formatter is exactly
    ``formatter_class``, as long as the ``handle``/``emit``/``write_line`` of the one and the
    ``format``/``outcome_line`` of the other stay the methods they are now, and
    ``filter``/``format`` of the handler class stay ``Filterer.filter``/``Handler.format``.
    ``handler.write_line(text, created, None)`` must write (lock held) what ``emit`` writes for
    a record made at ``created`` whose formatted text is ``text``, raising instead of calling
    ``handleError``, and ``formatter.outcome_line(outcome, created)`` must give what ``format``
    gives for it."""
    global _direct
    handler_class._writes_directly = True
    owners = (logging.Logger, handler_class, formatter_class)
    _direct = _Direct(handler_class, formatter_class, _methods(*owners), tuple(
        getattr(owner, name) for owner, names in zip(owners, _ACCELERATED_NAMES, strict=True)
        for name in names))


def emit_direct(logger: logging.Logger, level: int, outcome: Outcome,
                make_record: RecordMaker) -> bool:
    """What :func:`emit_plain` writes and answers, without making a LogRecord when every
    handler the record would reach is one that :func:`write_directly` allows (no filters on
    those of the outcome's kind, nor ``handle``/``emit``/``filter``/``format`` set on any, nor
    a formatter of another class or with ``format`` set), at least one of them takes the
    outcome's kind, and the logger is a plain one: records made by
    :func:`template_record` with the default record factory, no filters, not disabled,
    ``handle``/``callHandlers``/``filter``/``makeRecord`` Logger's own. Otherwise it is
    :func:`emit_plain`. The time logged is ``time.time()`` at the call, as the record's would
    be; a record is made only for ``handleError`` when a write fails."""
    direct = _direct
    if (direct is None or make_record is not template_record or logger.disabled
            or logger.filters or logging._logRecordFactory is not _LogRecord  # type: ignore[attr-defined]
            or _methods(logger.__class__, direct.handler_class, direct.formatter_class)
            != direct.methods or not _HOOKS_OF_LOGGER.isdisjoint(logger.__dict__)):
        return emit_plain(logger, level, outcome, make_record)
    formatter_class = direct.formatter_class
    kind = outcome.kind
    targets = []
    current: logging.Logger | None = logger
    try:  # (an AttributeError: a handler of another class)
        while current is not None:
            for handler in current.handlers:
                if not handler._writes_directly:  # type: ignore[attr-defined]
                    return emit_plain(logger, level, outcome, make_record)
                if handler.kind is kind and level >= handler.level:  # type: ignore[attr-defined]
                    formatter = handler.formatter
                    if (handler.filters or formatter.__class__ is not formatter_class
                            or "format" in formatter.__dict__ or handler.lock is None):
                        return emit_plain(logger, level, outcome, make_record)
                    targets.append(handler)
            current = current.parent if current.propagate else None
    except AttributeError:
        return emit_plain(logger, level, outcome, make_record)
    if not targets:  # nothing to write (or the last resort's turn): as logging does it
        return emit_plain(logger, level, outcome, make_record)
    created = time.time()  # looked up at each call, as LogRecord does (clock patching)
    failed: logging.LogRecord | None = None
    for handler in targets:
        with handler.lock:  # type: ignore[union-attr]
            try:
                handler.write_line(  # type: ignore[attr-defined]
                    handler.formatter.outcome_line(outcome, created),  # type: ignore[union-attr]
                    created, None)
            except Exception:
                failed = _report(failed, handler, logger, level, outcome, make_record)
    return failed is not None and WRITE_FAILED in failed.__dict__


def _report(failed: logging.LogRecord | None, handler: logging.Handler, logger: logging.Logger,
            level: int, outcome: Outcome, make_record: RecordMaker) -> logging.LogRecord:
    """``handler.handleError`` (while the failure is handled) with the record of ``outcome``:
    ``failed``, or made now for the first failure."""
    if failed is None:
        failed = make_record(logger, level, message_args(outcome), outcome)
    handler.handleError(failed)
    return failed


# == The C accelerator's emitter, builder and entry ===============================================
# ``emit_accelerated`` is emit_direct with the C accelerator's steps; ``EMIT_IN_C`` does its usual
# case wholly in C and is the logger's emitter; ``entry_for`` puts AccountingLogger.delivered and
# .deferred in C in front of their Python methods (the Outcome made, record()'s steps, EMIT_IN_C's
# work without a call). Each steps aside to the Python code for anything unusual.

# append_line's write is the os module's own (posix.write, whatever os.write was when this module
# was imported: a sitecustomize may have patched it already); a patched os.write is called instead
_OS_WRITE = sys.modules[os.name].write


def builder_for(build: Callable[..., Outcome], fields: Sequence[str]) -> Callable[..., Outcome]:
    """``build`` (``logger._build``: kind, rcpt, ... details), or where :func:`accelerated`
    ``_accel.build_outcome`` in front of it, which makes the same Outcome for the usual
    arguments and passes any other to ``build``. ``fields``: the keys of the dict that
    ``build`` makes the Outcome's ``__dict__``, in order."""
    if not accelerated():
        return build
    builder: Callable[..., Outcome] = functools.partial(
        ACCELERATOR.build_outcome, build, dict.fromkeys(fields), _new_object, Outcome)
    return builder


def emit_accelerated(logger: logging.Logger, level: int, outcome: Outcome,
                     make_record: RecordMaker) -> bool:
    """What :func:`emit_direct` writes and answers (its checks, its fallback to
    :func:`emit_plain`, its errors), with the handlers found by ``_accel.direct_targets`` and
    each line made and written by ``_accel.append_line`` where it can (``os.write`` the os
    module's; else the formatter and the handler make and write it, as in emit_direct). Its
    checks are emit_direct's, and the handler class's ``write_line`` and the formatter's
    ``outcome_line`` (class and instance) the ones this stands in for."""
    direct = _direct
    if (direct is None or make_record is not template_record
            or logging._logRecordFactory is not _LogRecord):  # type: ignore[attr-defined]
        return emit_plain(logger, level, outcome, make_record)
    targets = ACCELERATOR.direct_targets(
        logger, level, outcome.kind, direct.handler_class, direct.formatter_class,
        _ACCELERATED_NAMES, direct.accelerated_methods)
    if targets is None:
        return emit_plain(logger, level, outcome, make_record)
    created = time.time()  # looked up at each call, as LogRecord does (clock patching)
    in_c = os.write is _OS_WRITE
    failed: logging.LogRecord | None = None
    for handler in targets:
        with handler.lock:
            line: Any
            try:
                formatter = handler.formatter
                line = (ACCELERATOR.append_line(handler, formatter, outcome, created, write_whole)
                        if in_c else formatter.outcome_line(outcome, created))
            except Exception as error:
                line = error
            if line is not True:  # not written
                failed = finish_accelerated(handler, outcome, created, line, failed, logger,
                                            level, make_record)
    return failed is not None and WRITE_FAILED in failed.__dict__


def finish_accelerated(handler: logging.Handler, outcome: Outcome, created: float,
                       line: str | Exception | None, failed: logging.LogRecord | None,
                       logger: logging.Logger, level: int,
                       make_record: RecordMaker) -> logging.LogRecord | None:
    """The rest of :func:`emit_accelerated`'s step for ``handler`` (its lock held) when the
    line was not written: ``line`` written by ``handler.write_line`` (None: the formatter's
    ``_escaped_line``), or, for ``line`` the exception making or writing it raised (or one of
    write_line's), ``handleError`` (see ``_report``). Returns the record made for
    handleError: ``failed``, or the one made now for the first failure."""
    try:
        if isinstance(line, Exception):
            raise line
        handler.write_line(  # type: ignore[attr-defined]
            handler.formatter._escaped_line(outcome, created)  # type: ignore[union-attr]
            if line is None else line, created, None)
    except Exception:
        failed = _report(failed, handler, logger, level, outcome, make_record)
    return failed


# what emit_accelerated writes and answers, in C for its usual case (the others: its own)
EMIT_IN_C: Emitter | None = (None if ACCELERATOR is None else ACCELERATOR.Emitter(
    emit_accelerated, finish_accelerated, globals()))


def entry_for(method: Callable[..., Outcome], kind: Kind, owner: type,
              fields: Sequence[str]) -> Callable[..., Outcome]:
    """``method`` (``AccountingLogger.delivered`` or ``.deferred``, of ``kind``), or where
    :func:`accelerated` an ``_accel.Entry`` in front of it, entered in C: for the usual call
    (the recipient and keywords among ``fields``, the keys of ``logger._build``'s dict, with
    values it takes as they are) on an instance whose class's ``record`` and ``_outcome`` are
    ``owner``'s as they are now, it makes the Outcome ``_build`` makes and does what ``record``
    does with it (an :data:`EMIT_IN_C` emitter's work done without the call); every other
    call is ``method``'s. Same signature (``__wrapped__``)."""
    if not accelerated():
        return method
    entry: Callable[..., Outcome] = ACCELERATOR.Entry(
        method, kind, owner, owner.record, owner._outcome,  # type: ignore[attr-defined]
        tuple(fields), Outcome, logging.Logger.isEnabledFor)
    return entry


def emitter_for() -> Emitter:
    """:data:`EMIT_IN_C` where the C accelerator is :func:`accelerated`, else
    :func:`emit_direct` on a verified Python, else :func:`emit_plain`."""
    if accelerated() and EMIT_IN_C is not None:
        return EMIT_IN_C
    return emit_direct if enabled() else emit_plain
