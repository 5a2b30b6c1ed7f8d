"""The front door: build Outcomes and emit them as LogRecords on a standard logger."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from mta_logging.outcome import Kind, Outcome

DEFAULT_LOGGER = "mta.accounting"
_MESSAGE = "%s %s job %s: %s"  # formatted only if a handler asks for the message
_PATHNAME = "(accounting)"  # a record's pathname: there is no caller's frame to name
WRITE_FAILED = "write_failed"  # attribute a handler sets on a record it could not write


def _record_template() -> dict[str, Any] | None:
    """The attributes of an accounting LogRecord, in the order ``LogRecord.__init__`` sets
    them, if this Python's LogRecord is the one ``_new_record`` reproduces (3.11, with the
    ``msecs`` of gh-89047); else None."""
    sample = logging.LogRecord("", logging.INFO, _PATHNAME, 0, _MESSAGE, None, None)
    template = sample.__dict__
    known = {"name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
             "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
             "relativeCreated", "thread", "threadName", "processName", "process"}
    created = sample.created
    if (sys.version_info[:2] != (3, 11) or set(template) != known
            or sample.msecs != int((created - int(created)) * 1000) + 0.0
            or sample.relativeCreated != (created - logging._startTime) * 1000):  # type: ignore[attr-defined]
        return None
    return {**template, "outcome": None}  # where makeRecord(extra=) would put it: last


_TEMPLATE = _record_template()
_LogRecord = logging.LogRecord
_new_object = object.__new__
_set_attribute = object.__setattr__
_MAKE_RECORD = logging.Logger.makeRecord


def _new_record(name: str, level: int, args: tuple[str, ...], outcome: Outcome,
                template: dict[str, Any]) -> logging.LogRecord:
    """What ``Logger.makeRecord(name, level, "(accounting)", 0, _MESSAGE, args, None,
    extra={"outcome": outcome})`` makes with the default record factory: the same class, the
    same attributes in the same order with the same values, computed as Python 3.11's
    ``LogRecord.__init__`` computes them. It copies the constant ones from a template instead
    of deriving them again (file name and module from the path name, ...): a third of the cost
    of making the record."""
    created = time.time()  # looked up at each call, as LogRecord does (clock patching)
    record = _new_object(_LogRecord)
    record.__dict__ = values = template.copy()
    values["name"] = name
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
    values["process"] = os.getpid() if logging.logProcesses else None
    values["outcome"] = outcome
    return record


_REPLY_CODE = re.compile(r"^\s*([245]\d\d)(?:[\s-]+([245]\.\d{1,3}\.\d{1,3}))?")


def _reply_parts(dsn_status: str | None, dsn_msg: str | None) -> tuple[int | None, str | None]:
    """SMTP code and enhanced status, from the reply text and/or the DSN status."""
    code: int | None = None
    enhanced = dsn_status or None
    if dsn_msg:
        match = _REPLY_CODE.match(dsn_msg)
        if match:
            code = int(match.group(1))
            enhanced = enhanced or match.group(2)
    return code, enhanced


class AccountingLogger:
    """Records delivery outcomes on a ``logging.Logger`` (default ``"mta.accounting"``).

    Each call builds an :class:`Outcome`, attaches it to a ``LogRecord`` as ``record.outcome``
    at the kind's level (delivered INFO, deferred WARNING, bounce ERROR) and hands it to the
    logger's handlers; it returns the Outcome. The record's message reads like an ordinary log
    line (``delivered bob@example.com job 42: 250 2.0.0 OK``) so the outcome is also readable in
    any application log the record propagates to.

    ``on_write_error``: called with the Outcome, after the handlers ran, when a handler
    reported that it could not write the record (an :class:`~mta_logging.AccountingFileHandler`
    whose write failed marks the record ``write_failed`` in ``handleError``). A program that
    must not forget what it could not record (the relay) learns it here; the failure itself
    still goes to ``handleError`` and never into the caller.
    """

    __slots__ = ("logger", "on_write_error")

    # what delivered/deferred/bounced build their Outcome with: _build directly, or, in a
    # subclass that overrides outcome(), that method (see __init_subclass__)
    _outcome: Callable[..., Outcome]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.outcome is not AccountingLogger.outcome:
            cls._outcome = _through_outcome

    def __init__(self, name: str | logging.Logger = DEFAULT_LOGGER, *,
                 on_write_error: Callable[[Outcome], None] | None = None) -> None:
        self.logger = name if isinstance(name, logging.Logger) else logging.getLogger(name)
        self.on_write_error = on_write_error

    def record(self, outcome: Outcome) -> Outcome:
        """Emit an outcome built elsewhere."""
        logger = self.logger
        kind = outcome.kind
        level = kind.level
        if logger.isEnabledFor(level):
            # not logger.log: the caller's frame is never wanted in an accounting record, and
            # looking it up costs more than formatting the line
            args = (kind.directory, outcome.rcpt, outcome.job_id or "-",
                    outcome.dsn_msg or outcome.dsn_status or "-")
            if (_TEMPLATE is not None and logging.getLogRecordFactory() is _LogRecord
                    and getattr(logger.makeRecord, "__func__", None) is _MAKE_RECORD):
                record = _new_record(logger.name, level, args, outcome, _TEMPLATE)
            else:  # a record factory or makeRecord of the application's own: use it
                record = logger.makeRecord(logger.name, level, _PATHNAME, 0, _MESSAGE, args,
                                           None)
                record.outcome = outcome  # what extra={"outcome": ...} does, without checks
            logger.handle(record)
            if self.on_write_error is not None and WRITE_FAILED in record.__dict__:
                self.on_write_error(outcome)
        return outcome

    # delivered/deferred/bounced spell out their keywords (the same as ``outcome``'s) instead
    # of passing **fields on: packing and unpacking a dict of keywords cost as much as building
    # the Outcome itself

    def delivered(
        self, rcpt: str, *, time_queued: datetime | float | None = None,
        src_mta: str | None = None, src_ip: str | None = None, dest_ip: str | None = None,
        vmta: str | None = None, job_id: str | int | None = None, dsn_status: str | None = None,
        dsn_msg: str | None = None, delay: float | None = None, bounce_cat: str | None = None,
        headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Record that ``rcpt`` was delivered. Keywords: see :meth:`outcome`."""
        return self.record(self._outcome(
            Kind.DELIVERED, rcpt, time_queued, src_mta, src_ip, dest_ip, vmta, job_id,
            dsn_status, dsn_msg, delay, bounce_cat, headers, extra))

    def deferred(
        self, rcpt: str, *, time_queued: datetime | float | None = None,
        src_mta: str | None = None, src_ip: str | None = None, dest_ip: str | None = None,
        vmta: str | None = None, job_id: str | int | None = None, dsn_status: str | None = None,
        dsn_msg: str | None = None, delay: float | None = None, bounce_cat: str | None = None,
        headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Record that delivery to ``rcpt`` was deferred (``delay`` = seconds to next try)."""
        return self.record(self._outcome(
            Kind.DEFERRED, rcpt, time_queued, src_mta, src_ip, dest_ip, vmta, job_id,
            dsn_status, dsn_msg, delay, bounce_cat, headers, extra))

    def bounced(
        self, rcpt: str, *, time_queued: datetime | float | None = None,
        src_mta: str | None = None, src_ip: str | None = None, dest_ip: str | None = None,
        vmta: str | None = None, job_id: str | int | None = None, dsn_status: str | None = None,
        dsn_msg: str | None = None, delay: float | None = None, bounce_cat: str | None = None,
        headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Record a bounce; ``bounce_cat`` is classified from dsn_status/dsn_msg when not given."""
        if bounce_cat is None:
            from mta_logging.classify import bounce_category

            code, enhanced = _reply_parts(dsn_status, dsn_msg)
            bounce_cat = bounce_category(code, enhanced, dsn_msg or "")
        return self.record(self._outcome(
            Kind.BOUNCE, rcpt, time_queued, src_mta, src_ip, dest_ip, vmta, job_id,
            dsn_status, dsn_msg, delay, bounce_cat, headers, extra))

    @staticmethod
    def outcome(
        kind: Kind | str,
        rcpt: str,
        *,
        time_queued: datetime | float | None = None,
        src_mta: str | None = None,
        src_ip: str | None = None,
        dest_ip: str | None = None,
        vmta: str | None = None,
        job_id: str | int | None = None,
        dsn_status: str | None = None,
        dsn_msg: str | None = None,
        delay: float | None = None,
        bounce_cat: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Build an Outcome, checking the arguments a caller is most likely to get wrong."""
        return _build(Kind.parse(kind), rcpt, time_queued, src_mta, src_ip, dest_ip, vmta,
                      job_id, dsn_status, dsn_msg, delay, bounce_cat, headers, extra)


def _build(
    kind: Kind, rcpt: str, time_queued: datetime | float | None, src_mta: str | None,
    src_ip: str | None, dest_ip: str | None, vmta: str | None, job_id: str | int | None,
    dsn_status: str | None, dsn_msg: str | None, delay: float | None, bounce_cat: str | None,
    headers: Mapping[str, str] | None, extra: Mapping[str, Any] | None,
) -> Outcome:
    """The Outcome of ``AccountingLogger.outcome`` and friends, arguments checked.

    It is made as ``Outcome(...)`` makes it (see ``outcome._compile_init``: the same dict of
    the fields, in order, set as the instance's ``__dict__``), without the call of the class
    and of ``__init__`` with fourteen arguments: a fifth of the cost of an Outcome."""
    if (rcpt.__class__ is not str and not isinstance(rcpt, str)) or not rcpt:
        raise TypeError(f"rcpt must be a non-empty string, not {rcpt!r}")
    if delay is not None and not isinstance(delay, (int, float)):
        raise TypeError(f"delay must be a number of seconds, not {delay!r}")
    if (time_queued is not None and time_queued.__class__ is not float
            and not isinstance(time_queued, (datetime, int, float))):
        raise TypeError(
            f"time_queued must be a datetime or a POSIX timestamp, not {time_queued!r}"
        )
    if headers is not None and not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping of header name to value, not {headers!r}")
    outcome = _new_object(Outcome)
    _set_attribute(outcome, "__dict__", {
        "kind": kind, "rcpt": rcpt, "time_queued": time_queued, "src_mta": src_mta,
        "src_ip": src_ip, "dest_ip": dest_ip, "vmta": vmta,
        "job_id": job_id if job_id is None or job_id.__class__ is str else str(job_id),
        "dsn_status": dsn_status, "dsn_msg": dsn_msg, "delay": delay, "bounce_cat": bounce_cat,
        "headers": {} if headers is None else headers, "extra": {} if extra is None else extra,
    })
    return outcome


AccountingLogger._outcome = staticmethod(_build)


def _through_outcome(
    self: AccountingLogger, kind: Kind, rcpt: str, time_queued: datetime | float | None,
    src_mta: str | None, src_ip: str | None, dest_ip: str | None, vmta: str | None,
    job_id: str | int | None, dsn_status: str | None, dsn_msg: str | None,
    delay: float | None, bounce_cat: str | None, headers: Mapping[str, str] | None,
    extra: Mapping[str, Any] | None,
) -> Outcome:
    """``_outcome`` of a subclass that overrides ``outcome()``: its method, with keywords."""
    return self.outcome(
        kind, rcpt, time_queued=time_queued, src_mta=src_mta, src_ip=src_ip, dest_ip=dest_ip,
        vmta=vmta, job_id=job_id, dsn_status=dsn_status, dsn_msg=dsn_msg, delay=delay,
        bounce_cat=bounce_cat, headers=headers, extra=extra)
