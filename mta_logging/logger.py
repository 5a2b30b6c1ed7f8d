"""The front door: build Outcomes and emit them as LogRecords on a standard logger."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypedDict, Unpack

from mta_logging import speedups
from mta_logging.outcome import DETAIL_NAMES, Kind, Outcome
from mta_logging.reply import find_reply
from mta_logging.speedups import WRITE_FAILED as WRITE_FAILED  # (importable from here too)

DEFAULT_LOGGER = "mta.accounting"
_new_object = object.__new__
_set_attribute = object.__setattr__


class Details(TypedDict, total=False):
    """The keywords beyond the Haraka plugin's fields (see :class:`Outcome` for each)."""

    orig: str | None
    orcpt: str | None
    env_id: str | None
    dsn_action: str | None
    dsn_diag: str | None
    dsn_mta: str | None
    size: int | None
    tls_protocol: str | None
    tls_cipher: str | None
    time_first_attempt: datetime | float | None
    event_id: str | None
    rcv_ip: str | None
    rcv_helo: str | None
    rcv_auth_user: str | None
    rcv_tls_protocol: str | None
    rcv_tls_cipher: str | None
    feedback_type: str | None
    feedback_user_agent: str | None
    feedback_arrival_date: str | None
    feedback_source_ip: str | None
    feedback_reported_domain: str | None


_DETAILS = frozenset(DETAIL_NAMES)


class AccountingLogger:
    """Records delivery outcomes on a ``logging.Logger`` (default ``"mta.accounting"``).

    Each call builds an :class:`Outcome`, attaches it to a ``LogRecord`` as ``record.outcome``
    at the kind's level (delivered INFO, deferred WARNING, bounce ERROR) and hands it to the
    logger's handlers; it returns the Outcome. The record's message reads like an ordinary log
    line (``delivered bob@example.com job 42: 250 2.0.0 OK``) so the outcome is also readable in
    any application log the record propagates to.

    Beyond the Haraka plugin's fields, every method takes the keywords of :class:`Details`
    (``orig=``, ``size=``, ``tls_protocol=``, ...); an outcome holds only those given.

    ``on_write_error``: called with the Outcome, after the handlers ran, when a handler
    reported that it could not write the record (an :class:`~mta_logging.AccountingFileHandler`
    whose write failed marks the record ``write_failed`` in ``handleError``). A program that
    must not forget what it could not record (the relay) learns it here; the failure itself
    still goes to ``handleError`` and never into the caller.
    """

    __slots__ = ("logger", "_make_record", "_emit", "on_write_error")

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
        self._make_record = speedups.record_maker_for()
        self._emit = speedups.emitter_for()
        self.on_write_error = on_write_error

    def record(self, outcome: Outcome) -> Outcome:
        """Emit an outcome built elsewhere."""
        logger = self.logger
        level = outcome.kind.level
        # not logger.log: the caller's frame is never wanted in an accounting record, and
        # looking it up costs more than formatting the line (speedups.emit_plain: the record
        # made and handled; emit_direct: written without one where nothing else would see it)
        if (logger.isEnabledFor(level) and self._emit(logger, level, outcome, self._make_record)
                and self.on_write_error is not None):
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
        **details: Unpack[Details],
    ) -> Outcome:
        """Record that ``rcpt`` was delivered. Keywords: see :meth:`outcome`."""
        return self.record(self._outcome(
            Kind.DELIVERED, rcpt, time_queued, src_mta, src_ip, dest_ip, vmta, job_id,
            dsn_status, dsn_msg, delay, bounce_cat, headers, extra, details))

    def deferred(
        self, rcpt: str, *, time_queued: datetime | float | None = None,
        src_mta: str | None = None, src_ip: str | None = None, dest_ip: str | None = None,
        vmta: str | None = None, job_id: str | int | None = None, dsn_status: str | None = None,
        dsn_msg: str | None = None, delay: float | None = None, bounce_cat: str | None = None,
        headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
        **details: Unpack[Details],
    ) -> Outcome:
        """Record that delivery to ``rcpt`` was deferred (``delay`` = seconds to next try)."""
        return self.record(self._outcome(
            Kind.DEFERRED, rcpt, time_queued, src_mta, src_ip, dest_ip, vmta, job_id,
            dsn_status, dsn_msg, delay, bounce_cat, headers, extra, details))

    def bounced(
        self, rcpt: str, *, time_queued: datetime | float | None = None,
        src_mta: str | None = None, src_ip: str | None = None, dest_ip: str | None = None,
        vmta: str | None = None, job_id: str | int | None = None, dsn_status: str | None = None,
        dsn_msg: str | None = None, delay: float | None = None, bounce_cat: str | None = None,
        headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
        **details: Unpack[Details],
    ) -> Outcome:
        """Record a bounce; ``bounce_cat`` is classified from dsn_status/dsn_msg when not given."""
        if bounce_cat is None:
            from mta_logging.classify import failure_category

            bounce_cat = failure_category(dsn_status, dsn_msg)
        return self.record(self._outcome(
            Kind.BOUNCE, rcpt, time_queued, src_mta, src_ip, dest_ip, vmta, job_id,
            dsn_status, dsn_msg, delay, bounce_cat, headers, extra, details))

    def received(
        self, rcpt: str, *, time_queued: datetime | float | None = None,
        src_mta: str | None = None, src_ip: str | None = None, vmta: str | None = None,
        job_id: str | int | None = None, headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None, **details: Unpack[Details],
    ) -> Outcome:
        """Record that ``rcpt`` was accepted (the relay's 250): ``orig``, ``size``, ``rcv_ip``,
        ``rcv_helo``, ``rcv_auth_user``, ``rcv_tls_protocol``/``rcv_tls_cipher`` describe the
        message and the inbound connection."""
        return self.record(self._outcome(
            Kind.RECEIVED, rcpt, time_queued, src_mta, src_ip, None, vmta, job_id, None, None,
            None, None, headers, extra, details))

    def remote_bounce(
        self, rcpt: str, *, time_queued: datetime | float | None = None,
        src_mta: str | None = None, src_ip: str | None = None, vmta: str | None = None,
        job_id: str | int | None = None, dsn_status: str | None = None,
        dsn_msg: str | None = None, bounce_cat: str | None = None,
        headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
        **details: Unpack[Details],
    ) -> Outcome:
        """Record a bounce that came back from a remote MTA (an RFC 3464 report about a
        message sent earlier): ``rcpt`` its Final-Recipient, ``dsn_status`` its Status,
        ``dsn_diag`` its Diagnostic-Code, ``dsn_mta`` its Remote-MTA, ``job_id``/``orig``
        those of the message it reports. ``bounce_cat`` is classified from the status and the
        diagnostic (or ``dsn_msg``) when not given."""
        if bounce_cat is None:
            from mta_logging.classify import bounce_category

            text = details.get("dsn_diag") or dsn_msg or ""
            reply = find_reply(text).reply
            bounce_cat = bounce_category(reply.code, dsn_status or reply.enhanced, text)
        return self.record(self._outcome(
            Kind.REMOTE_BOUNCE, rcpt, time_queued, src_mta, src_ip, None, vmta, job_id,
            dsn_status, dsn_msg, None, bounce_cat, headers, extra, details))

    def feedback(
        self, rcpt: str, *, src_mta: str | None = None, src_ip: str | None = None,
        vmta: str | None = None, job_id: str | int | None = None,
        headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
        **details: Unpack[Details],
    ) -> Outcome:
        """Record a feedback-loop complaint (an RFC 5965 ARF report): ``rcpt`` the recipient
        who complained (Original-Rcpt-To or Removal-Recipient), ``feedback_type``,
        ``feedback_user_agent``, ``feedback_arrival_date``, ``feedback_source_ip`` and
        ``feedback_reported_domain`` the report's fields, ``job_id``/``orig`` those of the
        message complained about."""
        return self.record(self._outcome(
            Kind.FEEDBACK, rcpt, None, src_mta, src_ip, None, vmta, job_id, None, None, None,
            None, headers, extra, details))

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
        **details: Unpack[Details],
    ) -> Outcome:
        """Build an Outcome, checking the arguments a caller is most likely to get wrong."""
        return _build(Kind.parse(kind), rcpt, time_queued, src_mta, src_ip, dest_ip, vmta,
                      job_id, dsn_status, dsn_msg, delay, bounce_cat, headers, extra, details)


def _build(
    kind: Kind, rcpt: str, time_queued: datetime | float | None, src_mta: str | None,
    src_ip: str | None, dest_ip: str | None, vmta: str | None, job_id: str | int | None,
    dsn_status: str | None, dsn_msg: str | None, delay: float | None, bounce_cat: str | None,
    headers: Mapping[str, str] | None, extra: Mapping[str, Any] | None, details: Details,
) -> Outcome:
    """The Outcome of ``AccountingLogger.outcome`` and friends, arguments checked.

    It is made as ``Outcome(...)`` makes it (see ``speedups.one_step_init``: the dict of the
    fields, in order, set as the instance's ``__dict__``), without the call of the class
    and of ``__init__`` with thirty arguments: a fifth of the cost of an Outcome. Of the
    :class:`Details`, the dict holds those given (after the others, in the order given); the
    rest are the class's defaults (None), which costs nothing when none is given."""
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
    values = {  # the keys of _BUILT, in its order
        "kind": kind, "rcpt": rcpt, "time_queued": time_queued, "src_mta": src_mta,
        "src_ip": src_ip, "dest_ip": dest_ip, "vmta": vmta,
        "job_id": job_id if job_id is None or job_id.__class__ is str else str(job_id),
        "dsn_status": dsn_status, "dsn_msg": dsn_msg, "delay": delay, "bounce_cat": bounce_cat,
        "headers": {} if headers is None else headers, "extra": {} if extra is None else extra,
    }
    if details:
        values.update(_checked(details))
    outcome = _new_object(Outcome)
    _set_attribute(outcome, "__dict__", values)
    return outcome


def _checked(details: Details) -> Details:
    """``details``, each checked: a known keyword, a value of the type it holds."""
    unknown = details.keys() - _DETAILS
    if unknown:
        raise TypeError(f"unexpected keyword argument {sorted(unknown)[0]!r}; the outcome "
                        f"details are {', '.join(DETAIL_NAMES)}")
    size = details.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise TypeError(f"size must be a whole number of bytes, not {size!r}")
    first = details.get("time_first_attempt")
    if first is not None and not isinstance(first, (datetime, int, float)):
        raise TypeError(
            f"time_first_attempt must be a datetime or a POSIX timestamp, not {first!r}")
    for name, value in details.items():
        if value is not None and name not in ("size", "time_first_attempt") and not isinstance(
                value, str):
            raise TypeError(f"{name} must be text, not {value!r}")
    return details


_BUILT = ("kind", "rcpt", "time_queued", "src_mta", "src_ip", "dest_ip", "vmta", "job_id",
          "dsn_status", "dsn_msg", "delay", "bounce_cat", "headers", "extra")
# the C accelerator's build in front of _build where it is used (see speedups.builder_for)
AccountingLogger._outcome = staticmethod(speedups.builder_for(_build, _BUILT))
# delivered and deferred entered in C where the accelerator is used (see speedups.entry_for)
AccountingLogger.delivered = speedups.entry_for(  # type: ignore[method-assign]
    AccountingLogger.delivered, Kind.DELIVERED, AccountingLogger, _BUILT)
AccountingLogger.deferred = speedups.entry_for(  # type: ignore[method-assign]
    AccountingLogger.deferred, Kind.DEFERRED, AccountingLogger, _BUILT)


def _through_outcome(
    self: AccountingLogger, kind: Kind, rcpt: str, time_queued: datetime | float | None,
    src_mta: str | None, src_ip: str | None, dest_ip: str | None, vmta: str | None,
    job_id: str | int | None, dsn_status: str | None, dsn_msg: str | None,
    delay: float | None, bounce_cat: str | None, headers: Mapping[str, str] | None,
    extra: Mapping[str, Any] | None, details: Details,
) -> Outcome:
    """``_outcome`` of a subclass that overrides ``outcome()``: its method, with keywords."""
    return self.outcome(
        kind, rcpt, time_queued=time_queued, src_mta=src_mta, src_ip=src_ip, dest_ip=dest_ip,
        vmta=vmta, job_id=job_id, dsn_status=dsn_status, dsn_msg=dsn_msg, delay=delay,
        bounce_cat=bounce_cat, headers=headers, extra=extra, **details)
