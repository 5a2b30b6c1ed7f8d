"""The C accelerator (``mta_logging/_accel.c``): built where CI requires it; its
``build_outcome`` makes the Outcome (or raises the error) that ``logger._build`` makes, and its
``append_line`` writes what ``write_line(outcome_line(...))`` writes, or hands the work back
unwritten; ``AccountingLogger.delivered``/``.deferred`` entered in C (``Entry``) return, raise
and write what the Python methods do, and notice what is changed between two records. That the
accelerated emitters (``emit_accelerated``, ``EMIT_IN_C``) write the same files as the plain
ways in every setup is ``tests/test_speedups_emit.py``'s (parametrized over them)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta_logging import (
    AccountingFileHandler,
    AccountingFormatter,
    AccountingLogger,
    Outcome,
    speedups,
)
from mta_logging.activefile import ActiveFile, write_whole
from mta_logging.logger import _BUILT, _build
from mta_logging.outcome import Kind

T0 = time.mktime((2025, 11, 26, 6, 20, 0, 0, 0, -1))
accel = speedups.ACCELERATOR
needs_accelerator = pytest.mark.skipif(accel is None, reason="the C accelerator was not built")


def test_the_accelerator_is_built_where_ci_requires_it() -> None:
    if os.environ.get("MTA_LOGGING_REQUIRE_ACCELERATOR") != "1":
        pytest.skip("MTA_LOGGING_REQUIRE_ACCELERATOR is not 1 (.ci/run sets it)")
    assert accel is not None, "mta_logging._accel did not import: was it built?"
    assert speedups.accelerated()


@pytest.fixture
def handler(tmp_path: Path) -> Iterator[AccountingFileHandler]:
    handler = AccountingFileHandler("delivered", path=tmp_path)
    handler.open()
    yield handler
    handler.close()


def written(handler: AccountingFileHandler) -> bytes:
    assert handler.path is not None
    return handler.path.read_bytes()


def append(handler: AccountingFileHandler, outcome: Outcome, created: float = T0) -> Any:
    with handler.lock:
        return accel.append_line(handler, handler.formatter, outcome, created, write_whole)


OUTCOME = Outcome(Kind.DELIVERED, "a@example.com", job_id="7", dsn_msg="250 2.0.0 OK")


@needs_accelerator
def test_a_plain_line_is_written_and_counted_as_write_line_does(
        handler: AccountingFileHandler, tmp_path: Path) -> None:
    reference = AccountingFileHandler("delivered", path=tmp_path / "reference")
    try:
        formatter = reference.formatter
        assert isinstance(formatter, AccountingFormatter)
        with reference.lock:
            reference.write_line(formatter.outcome_line(OUTCOME, T0), T0, None)
        assert append(handler, OUTCOME) is True
        assert written(handler) == written(reference)
        assert written(handler).endswith(b"\ta@example.com\t\t\t\t7\t\t250 2.0.0 OK\n")
        file, other = handler._file, reference._file
        assert file is not None and other is not None
        assert (file.size, file.records) == (other.size, other.records) == (
            len(written(handler)), 1)
    finally:
        reference.close()


@needs_accelerator
@pytest.mark.parametrize("value", ["tab\there", "back\\slash", "é\tà", "a\udcffb", "cr\r",
                                   "é\u2028\\"])
def test_a_line_that_needs_escaping_is_left_to_the_formatter(
        handler: AccountingFileHandler, value: str) -> None:
    before = written(handler)
    assert append(handler, Outcome(Kind.DELIVERED, "a@example.com", dsn_msg=value)) is None
    assert written(handler) == before


@needs_accelerator
@pytest.mark.parametrize("value", ["é", "réponse \u2028 \U0001f600", "ü\x00"])
def test_a_line_that_is_not_ascii_and_needs_no_escaping_comes_back_unwritten(
        handler: AccountingFileHandler, value: str) -> None:
    """(``write_line`` encodes and writes it: made once, as ``outcome_line`` makes it.)"""
    before = written(handler)
    outcome = Outcome(Kind.DELIVERED, "a@example.com", dsn_msg=value)
    formatter = handler.formatter
    assert isinstance(formatter, AccountingFormatter)
    assert append(handler, outcome) == formatter.outcome_line(outcome, T0)
    assert append(handler, outcome).endswith("\t" + value)
    assert written(handler) == before


@needs_accelerator
@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab\t,"\\\r\n\x00é\u2028\ud800\U0001f600')),
               max_size=8), st.sampled_from(["\t", ","]))
def test_what_comes_back_unwritten_is_the_formatter_s_line_or_none_when_it_escapes(
        value: str, separator: str) -> None:
    """Given no file (every line comes back): the line outcome_line gives when that is the
    line as it is, None when outcome_line escapes it."""
    formatter = AccountingFormatter(kind="delivered", separator=separator)
    holder = type("Holder", (), {"_file": None})()
    outcome = Outcome(Kind.DELIVERED, "a@example.com", dsn_msg=value)
    line = formatter.outcome_line(outcome, T0)
    expected = line if line == formatter._line(outcome, T0) else None
    assert accel.append_line(holder, formatter, outcome, T0, write_whole) == expected


@needs_accelerator
def test_a_csv_line_with_a_quote_is_left_to_the_formatter(handler: AccountingFileHandler) -> None:
    handler.formatter = AccountingFormatter(kind="delivered", separator=",")
    assert append(handler, Outcome(Kind.DELIVERED, 'a"b@example.com')) is None
    assert append(handler, Outcome(Kind.DELIVERED, "a@example.com")) is True
    assert written(handler).endswith(b"\nd,2025-11-26 06:20:00,,a@example.com,,,,,,\n")


def no_file(handler: AccountingFileHandler) -> None:
    handler._retire()


def fsync_always(handler: AccountingFileHandler) -> None:
    handler.fsync = "always"


def torn(handler: AccountingFileHandler) -> None:
    assert handler._file is not None
    handler._file.torn = True


def interval_over(handler: AccountingFileHandler) -> None:
    assert handler._file is not None
    handler._file.records, handler._file.rollover_at = 1, T0


def size_reached(handler: AccountingFileHandler) -> None:
    assert handler._file is not None
    handler._file.records, handler.max_bytes = 1, handler._file.size + 10


@needs_accelerator
@pytest.mark.parametrize("state", [no_file, fsync_always, torn, interval_over, size_reached])
def test_a_file_not_to_append_to_here_gets_the_line_back_unwritten(
        handler: AccountingFileHandler, state: Any) -> None:
    path, file = handler.path, handler._file
    assert path is not None and file is not None
    before = path.read_bytes()
    state(handler)
    records = file.records
    line = append(handler, OUTCOME)
    formatter = handler.formatter
    assert isinstance(formatter, AccountingFormatter)
    assert line == formatter.outcome_line(OUTCOME, T0)
    assert (path.read_bytes(), file.records) == (before, records)


@needs_accelerator
def test_a_failed_write_raises_what_os_write_raises_and_counts_nothing(
        handler: AccountingFileHandler, tmp_path: Path) -> None:
    file = handler._file
    assert file is not None
    readable = os.open(tmp_path / "read-only", os.O_RDONLY | os.O_CREAT, 0o644)
    writable, file.fd = file.fd, readable
    try:
        with pytest.raises(OSError) as expected:
            os.write(readable, b"x")
        with pytest.raises(OSError) as raised:
            append(handler, OUTCOME)
    finally:
        file.fd = writable
        os.close(readable)
    assert raised.value.errno == errno.EBADF
    assert (type(raised.value), str(raised.value)) == (type(expected.value), str(expected.value))
    assert (file.records, file.size) == (0, file.header_size)


@needs_accelerator
def test_a_partial_write_is_finished_by_write_whole(tmp_path: Path) -> None:
    """A non-blocking pipe with less room than the line: write(2) takes a part of it."""
    reading, writing = os.pipe()
    fcntl.fcntl(writing, fcntl.F_SETFL, os.O_NONBLOCK)
    try:
        page = 4096  # a pipe holds whole pages: one left free takes 4096 bytes of the line
        for _page in range(fcntl.fcntl(writing, fcntl.F_GETPIPE_SZ) // page - 1):
            os.write(writing, b"." * page)
        formatter = AccountingFormatter(kind="delivered")
        file = ActiveFile(writing, tmp_path / "pipe", "pipe")
        finished: list[tuple[int, int]] = []

        def finish(target: ActiveFile, data: bytes, done: int) -> None:
            finished.append((len(data), done))
            target.size += len(data)

        holder = type("Holder", (), {"_file": file, "fsync": "never", "max_bytes": 10**9})()
        outcome = Outcome(Kind.DELIVERED, "a@example.com", dsn_msg="x" * 5000)
        line = formatter.outcome_line(outcome, T0)
        assert accel.append_line(holder, formatter, outcome, T0, finish) is True
    finally:
        os.close(reading)
        os.close(writing)
    assert finished == [(len(line) + 1, page)]
    assert (file.records, file.size) == (1, len(line) + 1)


BUILT_ARGUMENTS = st.tuples(
    st.sampled_from([Kind.DELIVERED, Kind.BOUNCE]),
    st.sampled_from(["a@example.com", "", 7, "é@example.com"]),  # rcpt
    st.sampled_from([None, T0, int(T0), datetime(2025, 11, 26), "soon"]),  # time_queued
    *[st.none() | st.text(max_size=4)] * 4,  # src_mta, src_ip, dest_ip, vmta
    st.sampled_from([None, "42", 42]),  # job_id
    *[st.none() | st.text(max_size=4)] * 2,  # dsn_status, dsn_msg
    st.sampled_from([None, 60, 60.5, True, "60"]),  # delay
    st.none() | st.text(max_size=4),  # bounce_cat
    st.sampled_from([None, {"X-Job": "1"}, MappingProxyType({"X-Job": "2"}), ["X-Job"]]),
    st.sampled_from([None, {"k": "v"}]),  # extra
    st.sampled_from([{}, {"size": 10}, {"size": "10"}, {"unknown": 1}]),  # details
)


def built(build: Any, arguments: tuple[Any, ...]) -> Any:
    """The Outcome's fields, in order, or the error's type and text."""
    try:
        return list(vars(build(*arguments[:-1], dict(arguments[-1]))).items())
    except TypeError as error:
        return (type(error), str(error))


@needs_accelerator
@settings(max_examples=300, deadline=None)
@given(BUILT_ARGUMENTS)
def test_the_accelerated_build_makes_the_outcome_and_errors_of_build(
        arguments: tuple[Any, ...]) -> None:
    assert built(speedups.builder_for(_build, _BUILT), arguments) == built(_build, arguments)


@needs_accelerator
def test_the_logger_builds_through_the_accelerator(tmp_path: Path) -> None:
    assert isinstance(AccountingLogger._outcome, functools.partial)
    assert AccountingLogger._outcome.args[:1] == (_build,)
    outcome = AccountingLogger("test.accel.build").delivered(
        "a@example.com", time_queued=T0, job_id="7", delay=1.5)
    assert outcome == Outcome(Kind.DELIVERED, "a@example.com", time_queued=T0, job_id="7",
                              delay=1.5)
    assert outcome.headers == {} and outcome.headers is not outcome.extra


LINE_FIELDS = ["type", "timeLogged", "timeQueued", *speedups._ATTRIBUTE_FIELDS]
values = st.none() | st.text(max_size=6) | st.integers() | st.sampled_from(["\t", "é", "a\udcffb"])
outcomes = st.builds(
    Outcome, st.sampled_from(list(Kind)), st.text(min_size=1, max_size=8),
    time_queued=st.none() | st.floats(T0 - 5, T0 + 5) | st.just(datetime(2025, 11, 26, 6, 19))
    | st.integers(int(T0) - 2, int(T0) + 2),
    src_mta=values, vmta=values, job_id=values, dsn_msg=values, size=st.none() | st.integers(),
    rcv_helo=values, feedback_type=values)


class Later(Outcome):
    """A subclass: its values are read through the attribute protocol."""

    @property
    def vmta(self) -> str:  # type: ignore[override]
        return "from a property"


@needs_accelerator
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(LINE_FIELDS), min_size=1, max_size=12),
       st.sampled_from(["\t", ",", ";"]), st.sampled_from(["", "-"]),
       st.lists(st.tuples(outcomes, st.floats(T0 - 3, T0 + 3) | st.integers(
           int(T0) - 3, int(T0) + 3)), min_size=1, max_size=5))
def test_the_accelerated_line_is_the_compiled_line(
        fields: list[str], separator: str, placeholder: str,
        records: list[tuple[Outcome, float]]) -> None:
    compiled = speedups.compiled_line(fields, None, separator, placeholder)
    accelerated = speedups.accelerated_line(fields, None, separator, placeholder)
    assert accelerated is not None
    for outcome, time_logged in records:  # the one-second caches kept from record to record
        assert accelerated(outcome, time_logged) == compiled(outcome, time_logged)


@needs_accelerator
def test_the_accelerated_line_reads_a_subclass_through_its_attributes() -> None:
    fields = ["type", "rcpt", "vmta"]
    outcome = Later(Kind.DELIVERED, "a@example.com", vmta="from the field")
    line = speedups.accelerated_line(fields, None, "\t", "")
    assert line is not None
    assert line(outcome, T0) == speedups.compiled_line(fields, None, "\t", "")(outcome, T0) == (
        "d\ta@example.com\tfrom a property")


@needs_accelerator
def test_a_field_the_accelerator_does_not_make_leaves_the_compiled_line() -> None:
    assert speedups.accelerated_line(["type", "eventId"], None, "\t", "") is None
    assert speedups.accelerated_line(["type", "custom_X-Job"], None, "\t", "") is None
    assert type(AccountingFormatter(kind="deferred")._line) is not accel.Line  # delay
    assert type(AccountingFormatter(kind="delivered")._line) is accel.Line


# == AccountingLogger.delivered/deferred entered in C (_accel.Entry) and the C emitter =======

_logger_count = 0


@contextlib.contextmanager
def accounting_logger(directory: Path) -> Iterator[logging.Logger]:
    """A logger of its own with an accounting file handler per kind written in C (delivered,
    deferred) in ``directory``. (Made in the test itself: pytest gives the loggers that do not
    propagate, when a test starts, a handler of its own, which no direct write passes.)"""
    global _logger_count
    _logger_count += 1
    logger = logging.getLogger(f"test.accel.entry.{_logger_count}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handlers = [AccountingFileHandler(kind, path=directory) for kind in ("delivered", "deferred")]
    for each in handlers:
        logger.addHandler(each)
    try:
        yield logger
    finally:
        for each in handlers:
            logger.removeHandler(each)
            each.close()


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records, lines and file names all get T0."""
    monkeypatch.setattr(time, "time", lambda: T0)


@pytest.fixture
def plain_spied() -> Iterator[mock.MagicMock]:
    """``speedups.emit_plain``, spied on: called when the record must be made (every way
    that writes without it steps aside to it)."""
    with mock.patch.object(speedups, "emit_plain", wraps=speedups.emit_plain) as spy:
        yield spy


def files(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def lines(directory: Path) -> list[str]:
    return [line for data in files(directory).values() for line in data.decode().splitlines()
            if not line.startswith("type")]


@needs_accelerator
def test_delivered_and_deferred_are_entered_in_c_with_the_python_signature() -> None:
    import inspect

    for name in ("delivered", "deferred"):
        method = getattr(AccountingLogger, name)
        assert type(method) is accel.Entry
        assert method.__name__ == name and method.__doc__ == method.__wrapped__.__doc__
        assert inspect.signature(method) == inspect.signature(method.__wrapped__)
    assert AccountingLogger("test.accel.bound").delivered.__self__ is not None  # bound
    assert AccountingLogger("test.accel.choice")._emit is speedups.EMIT_IN_C


def outcome_or_error(call: Any, arguments: tuple[Any, ...]) -> Any:
    """What ``call(rcpt, keywords..., **details)`` returns (the Outcome's fields, in order)
    or raises (the error's type and text)."""
    keywords = dict(zip(_BUILT[2:], arguments[2:-1], strict=True))
    try:
        return list(vars(call(arguments[1], **keywords, **arguments[-1])).items())
    except TypeError as error:
        return (type(error), str(error))


@needs_accelerator
@settings(max_examples=300, deadline=None)
@given(BUILT_ARGUMENTS)
def test_the_c_entry_returns_and_raises_what_the_python_method_does(
        arguments: tuple[Any, ...]) -> None:
    logger = logging.getLogger("test.accel.entry.quiet")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    acct = AccountingLogger(logger)
    for name in ("delivered", "deferred"):
        python = functools.partial(getattr(AccountingLogger, name).__wrapped__, acct)
        kind = Kind.DELIVERED if name == "delivered" else Kind.DEFERRED
        assert outcome_or_error(getattr(acct, name), (kind, *arguments[1:])) == (
            outcome_or_error(python, (kind, *arguments[1:])))


CALLS: list[dict[str, Any]] = [
    {"time_queued": T0 - 42, "src_mta": "mx", "src_ip": "192.0.2.1", "dest_ip": "198.51.100.2",
     "vmta": "pool", "job_id": "7", "dsn_status": "2.0.0", "dsn_msg": "250 2.0.0 OK"},
    {"job_id": 42, "delay": 60},  # job_id converted: the Python method
    {"dsn_msg": "250 ok\twith a tab", "headers": {"X-Job": "1"}},  # escaped by the formatter
    {"vmta": "é", "extra": {"k": "v"}, "orig": "a@example.org"},  # a detail: the Python method
]


@needs_accelerator
@pytest.mark.parametrize("name", ["delivered", "deferred"])
def test_the_c_entry_writes_the_bytes_of_the_python_method(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        plain_spied: mock.MagicMock) -> None:
    monkeypatch.setattr(time, "time", lambda: T0)
    python = getattr(AccountingLogger, name).__wrapped__
    results = []
    for way in ("c", "python"):
        with accounting_logger(tmp_path / way) as logger:
            acct = AccountingLogger(logger)
            call = getattr(acct, name) if way == "c" else functools.partial(python, acct)
            returned = [call(f"r{number}@example.com", **keywords)
                        for number, keywords in enumerate(CALLS)]
        results.append((returned, files(tmp_path / way)))
    assert results[0] == results[1]
    assert len(lines(tmp_path / "c")) == len(CALLS)
    assert not plain_spied.called  # both ways wrote without a record


ENTRY_KEYWORDS = {"time_queued": T0 - 42, "src_mta": "mx", "src_ip": "192.0.2.1",
                  "dest_ip": "198.51.100.2", "vmta": "pool", "job_id": "7",
                  "dsn_status": "2.0.0", "dsn_msg": "250 2.0.0 OK", "delay": 3,
                  "bounce_cat": "other", "headers": {"X-Job": "1"}}


@needs_accelerator
@settings(max_examples=60, deadline=None)
@given(fields=st.lists(st.sampled_from([*LINE_FIELDS, "header_X-Job"]), min_size=1,
                       max_size=14),
       given=st.lists(st.sets(st.sampled_from(sorted(ENTRY_KEYWORDS))), min_size=1, max_size=4))
def test_the_line_of_an_outcome_made_in_c_reads_its_fields_as_the_python_method(
        fields: list[str], given: list[set[str]]) -> None:
    """The line of an outcome the C entry made is made of the values it was given (not read
    again from its dict): for any fields in any order, the bytes of the Python method."""
    results = []
    with tempfile.TemporaryDirectory() as temporary, mock.patch.object(time, "time",
                                                                       lambda: T0):
        for way in ("c", "python"):
            directory = Path(temporary) / way
            with accounting_logger(directory) as logger:
                for handler in logger.handlers:
                    handler.setFormatter(AccountingFormatter(
                        fields, kind=handler.kind))  # type: ignore[attr-defined]
                acct = AccountingLogger(logger)
                call = acct.delivered if way == "c" else functools.partial(
                    AccountingLogger.delivered.__wrapped__, acct)  # type: ignore[attr-defined]
                for number, names in enumerate(given):
                    call(f"r{number}@example.com", **{name: ENTRY_KEYWORDS[name]
                                                      for name in sorted(names)})
            results.append(files(directory))
    assert results[0] == results[1]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_an_outcome_changed_before_its_line_is_made_is_written_as_changed(
        tmp_path: Path) -> None:
    """A lock whose ``__enter__`` (Python code run before the line is made) sets a field of
    the outcome being written: the line shows the value set, not the one given."""
    import gc
    import threading

    class Lock(threading._PyRLock):  # type: ignore[name-defined,misc]
        def __enter__(self) -> Any:
            for each in gc.get_objects():
                if type(each) is Outcome and each.rcpt == "changed@example.com":
                    object.__setattr__(each, "vmta", "set-while-written")
            return super().__enter__()

    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com", vmta="pool")
        delivered = next(each for each in logger.handlers
                         if each.kind is Kind.DELIVERED)  # type: ignore[attr-defined]
        delivered.lock = Lock()
        returned = acct.delivered("changed@example.com", vmta="pool")
    assert returned.vmta == "set-while-written"
    assert [line.split("\t")[6] for line in lines(tmp_path)] == ["pool", "set-while-written"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_an_outcome_changed_while_its_line_is_made_is_written_as_changed(
        tmp_path: Path) -> None:
    """A value whose str() (called while the line is made) sets a later field of the outcome:
    that field is written as set, as the Python method writes it."""
    import gc

    class Sneaky:
        def __str__(self) -> str:
            for each in gc.get_objects():
                if type(each) is Outcome and each.rcpt.startswith("changed"):
                    object.__setattr__(each, "vmta", "set-by-str")
            return "sneaky"

    results = []
    for way in ("c", "python"):
        with accounting_logger(tmp_path / way) as logger:
            acct = AccountingLogger(logger)
            call = acct.delivered if way == "c" else functools.partial(
                AccountingLogger.delivered.__wrapped__, acct)  # type: ignore[attr-defined]
            call(f"changed-{way}@example.com", src_mta=Sneaky(), vmta="pool")
        results.append([line.split("\t")[4:7] for line in lines(tmp_path / way)])
    assert results == [[["sneaky", "", "set-by-str"]]] * 2


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_a_keyword_spelt_at_run_time_goes_to_the_python_method(tmp_path: Path) -> None:
    name = "".join(["job", "_id"])  # not the interned name a call in code passes
    with accounting_logger(tmp_path) as logger:
        outcome = AccountingLogger(logger).delivered("a@example.com", **{name: "7"})
    assert outcome == Outcome(Kind.DELIVERED, "a@example.com", job_id="7")
    assert lines(tmp_path) == ["d\t2025-11-26 06:20:00\t\ta@example.com\t\t\t\t7\t\t"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_record_or_outcome_replaced_after_a_record_is_used_at_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plain_spied: mock.MagicMock) -> None:
    seen: list[str] = []
    plain_record = AccountingLogger.record

    def record(self: AccountingLogger, outcome: Outcome) -> Outcome:
        seen.append(outcome.rcpt)
        return plain_record(self, outcome)

    class Shouting(AccountingLogger):
        @staticmethod
        def outcome(kind: Kind | str, rcpt: str, **fields: Any) -> Outcome:
            return AccountingLogger.outcome(kind, rcpt.upper(), **fields)

    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        with monkeypatch.context() as patched:
            patched.setattr(AccountingLogger, "record", record)
            acct.delivered("second@example.com")
        acct.delivered("third@example.com")
        shouted = Shouting(logger).deferred("fourth@example.com")
    assert seen == ["second@example.com"] and shouted.rcpt == "FOURTH@EXAMPLE.COM"
    assert [line.split("\t")[3] for line in lines(tmp_path)] == [  # deferred/, delivered/
        "FOURTH@EXAMPLE.COM", "first@example.com", "second@example.com", "third@example.com"]
    assert not plain_spied.called  # every line written without a record


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_a_logger_disabled_after_a_record_writes_nothing_more(tmp_path: Path) -> None:
    asked: list[int] = []
    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        logging.disable(logging.INFO)
        try:
            acct.delivered("while-disabled@example.com")
        finally:
            logging.disable(logging.NOTSET)
        logger.disabled = True
        acct.delivered("logger-disabled@example.com")
        logger.disabled = False
        logger.isEnabledFor = (  # type: ignore[method-assign]
            lambda level: asked.append(level) or False)
        acct.delivered("not-enabled@example.com")
        del logger.isEnabledFor
        acct.delivered("last@example.com")
    assert [line.split("\t")[3] for line in lines(tmp_path)] == [
        "first@example.com", "last@example.com"]
    assert asked == [logging.INFO]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("patched", ["Logger.callHandlers", "AccountingFileHandler.write_line"])
def test_a_class_method_patched_after_a_record_in_c_is_called_at_the_next(
        patched: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        plain_spied: mock.MagicMock) -> None:
    calls: list[str] = []
    owner: Any = logging.Logger if patched.startswith("Logger") else AccountingFileHandler
    name = patched.split(".")[1]
    plain = getattr(owner, name)

    def spy(self: Any, *arguments: Any) -> Any:
        calls.append(name)
        return plain(self, *arguments)

    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")  # (the file opened by write_line)
        calls_before, made_before = list(calls), plain_spied.call_count
        with monkeypatch.context() as context:
            context.setattr(owner, name, spy)
            acct.delivered("second@example.com")
            calls_during = list(calls)
        acct.delivered("third@example.com")
    assert (calls_before, made_before) == ([], 0)  # written in C
    assert calls_during == calls == [name]
    assert [line.split("\t")[3] for line in lines(tmp_path)] == [
        "first@example.com", "second@example.com", "third@example.com"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_an_instance_s_own_record_or_outcome_builder_is_called_as_the_python_method_calls_it(
        tmp_path: Path) -> None:
    """A subclass without ``__slots__`` has a ``__dict__``: ``record`` or ``_outcome`` set on
    one instance (as ``mock.patch.object(acct, "record")`` does) is what its delivered and
    deferred call, as bounced (written in Python) does."""
    seen: list[tuple[str, str]] = []

    class Instrumented(AccountingLogger):
        pass

    with accounting_logger(tmp_path) as logger:
        acct = Instrumented(logger)
        plain_record = acct.record
        acct.record = (  # type: ignore[method-assign]
            lambda outcome: seen.append(("record", outcome.rcpt)) or plain_record(outcome))
        acct.delivered("one@example.com")
        acct.deferred("two@example.com")
        acct.bounced("three@example.com")
        del acct.record
        plain_outcome = acct._outcome
        acct._outcome = (  # type: ignore[method-assign]
            lambda kind, rcpt, *rest: seen.append(("_outcome", rcpt))
            or plain_outcome(kind, rcpt.upper(), *rest))
        acct.delivered("four@example.com")
        acct.deferred("five@example.com")
        del acct._outcome
        acct.delivered("six@example.com")
    assert seen == [("record", "one@example.com"), ("record", "two@example.com"),
                    ("record", "three@example.com"), ("_outcome", "four@example.com"),
                    ("_outcome", "five@example.com")]
    assert sorted(line.split("\t")[3] for line in lines(tmp_path)) == [
        "FIVE@EXAMPLE.COM", "FOUR@EXAMPLE.COM", "one@example.com", "six@example.com",
        "two@example.com"]  # (no bounce handler here)


class _Counted(str):
    """A text whose ``str()`` counts the calls (an object that renders itself lazily)."""

    calls = 0

    def __str__(self) -> str:
        _Counted.calls += 1
        return f"{super().__str__()} {_Counted.calls}"


# == What the C path keeps between records (Plan, Entry's kept reads, append_line's) ==========
# Each is kept only while the dicts and classes it was read from are unchanged; what is read
# from a list (handlers, filters) or a slot (the active file's) is read at each record. Each
# test changes one thing after a record written in C and looks at the next record.


def rcpts(directory: Path) -> list[str]:
    return [line.split("\t")[3] for line in lines(directory)]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_a_handler_level_raised_after_a_record_in_c_stops_the_next(tmp_path: Path) -> None:
    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        acct.delivered("second@example.com")  # (written with the kept answer)
        delivered = next(each for each in logger.handlers
                         if each.kind is Kind.DELIVERED)  # type: ignore[attr-defined]
        delivered.setLevel(logging.WARNING)
        acct.delivered("above-its-level@example.com")
        delivered.setLevel(logging.NOTSET)
        acct.delivered("last@example.com")
    assert rcpts(tmp_path) == ["first@example.com", "second@example.com", "last@example.com"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_a_handler_added_to_the_list_after_a_record_in_c_gets_the_next(tmp_path: Path) -> None:
    second = AccountingFileHandler("delivered", path=tmp_path / "second")
    with accounting_logger(tmp_path / "first") as logger:
        acct = AccountingLogger(logger)
        acct.delivered("one@example.com")
        acct.delivered("two@example.com")
        logger.handlers.append(second)  # the list changed, not the logger's dict
        acct.delivered("three@example.com")
        logger.handlers.remove(second)
        acct.delivered("four@example.com")
    second.close()
    assert rcpts(tmp_path / "first") == [
        "one@example.com", "two@example.com", "three@example.com", "four@example.com"]
    assert rcpts(tmp_path / "second") == ["three@example.com"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_a_filter_appended_to_a_handler_after_a_record_in_c_is_asked_at_the_next(
        tmp_path: Path) -> None:
    asked: list[str] = []

    def refuse(record: logging.LogRecord) -> bool:
        asked.append(record.outcome.rcpt)  # type: ignore[attr-defined]
        return False

    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        acct.delivered("second@example.com")
        delivered = next(each for each in logger.handlers
                         if each.kind is Kind.DELIVERED)  # type: ignore[attr-defined]
        delivered.filters.append(refuse)  # the list changed, not the handler's dict
        acct.delivered("refused@example.com")
        delivered.filters.remove(refuse)
        acct.delivered("last@example.com")
    assert asked == ["refused@example.com"]
    assert rcpts(tmp_path) == ["first@example.com", "second@example.com", "last@example.com"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("value", ["r\u00e9ponse", "plain", "tab\there"])
def test_each_value_is_made_text_as_often_as_the_python_emitter_makes_it(
        value: str, tmp_path: Path) -> None:
    """A line that is not ASCII but needs no escaping is made once and written as it is, as
    the formatter does; one that needs escaping twice (the line, then each value escaped).
    The bytes written are the same either way."""
    made = {}
    for way, emitter in (("c", speedups.EMIT_IN_C), ("python", speedups.emit_direct)):
        _Counted.calls = 0
        with accounting_logger(tmp_path / way) as logger:
            acct = AccountingLogger(logger)
            acct._emit = emitter  # type: ignore[assignment]
            acct.delivered("a@example.com", dsn_msg=_Counted(value))
        made[way] = (_Counted.calls, lines(tmp_path / way))
    assert made["c"] == made["python"]
    assert made["c"][0] == (2 if "\t" in value else 1)


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_propagation_turned_on_after_a_record_in_c_reaches_the_parent_at_the_next(
        tmp_path: Path) -> None:
    with accounting_logger(tmp_path / "child") as logger:
        parent = logger.parent
        assert parent is not None
        above = AccountingFileHandler("delivered", path=tmp_path / "parent")
        parent.addHandler(above)
        try:
            acct = AccountingLogger(logger)
            acct.delivered("first@example.com")
            acct.delivered("second@example.com")
            logger.propagate = True
            acct.delivered("propagated@example.com")
            logger.propagate = False
        finally:
            parent.removeHandler(above)
            above.close()
    assert rcpts(tmp_path / "parent") == ["propagated@example.com"]
    assert rcpts(tmp_path / "child") == [
        "first@example.com", "second@example.com", "propagated@example.com"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_format_set_on_a_formatter_after_a_record_in_c_makes_the_next_record(
        tmp_path: Path, plain_spied: mock.MagicMock) -> None:
    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        acct.delivered("second@example.com")
        delivered = next(each for each in logger.handlers
                         if each.kind is Kind.DELIVERED)  # type: ignore[attr-defined]
        formatter = delivered.formatter
        assert formatter is not None
        plain_format = formatter.format
        formatter.format = lambda record: plain_format(record).upper()  # type: ignore[method-assign]
        acct.delivered("shouted@example.com")
        del formatter.format
        acct.delivered("last@example.com")
    assert rcpts(tmp_path) == [
        "first@example.com", "second@example.com", "SHOUTED@EXAMPLE.COM", "last@example.com"]
    assert plain_spied.call_count == 1


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_the_separator_changed_after_a_record_in_c_separates_the_next(tmp_path: Path) -> None:
    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com", job_id="1")
        acct.delivered("second@example.com", job_id="2")
        delivered = next(each for each in logger.handlers
                         if each.kind is Kind.DELIVERED)  # type: ignore[attr-defined]
        delivered.formatter.separator = ","  # type: ignore[union-attr]
        acct.delivered("third@example.com", job_id="3")
    written = files(tmp_path)
    assert [data.decode().splitlines()[-3:] for data in written.values()] == [[
        "d\t2025-11-26 06:20:00\t\tfirst@example.com\t\t\t\t1\t\t",
        "d\t2025-11-26 06:20:00\t\tsecond@example.com\t\t\t\t2\t\t",
        "d,2025-11-26 06:20:00,,third@example.com,,,,3,,"]]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("change", ["max_bytes", "rollover_at"])
def test_a_rollover_made_due_after_a_record_in_c_happens_at_the_next(
        change: str, tmp_path: Path) -> None:
    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        acct.delivered("second@example.com")
        delivered = next(each for each in logger.handlers
                         if each.kind is Kind.DELIVERED)  # type: ignore[attr-defined]
        if change == "max_bytes":  # the handler's (its dict)
            delivered.max_bytes = 1
        else:  # the active file's (a slot)
            delivered._file.rollover_at = T0  # type: ignore[attr-defined]
        acct.delivered("third@example.com")
    per_file = [[line.split("\t")[3] for line in data.decode().splitlines()
                 if not line.startswith("type")] for data in files(tmp_path).values()]
    assert sorted(per_file) == [["first@example.com", "second@example.com"],
                                ["third@example.com"]]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_fsync_always_set_after_a_record_in_c_syncs_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    plain_fsync = os.fsync
    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        acct.delivered("second@example.com")
        delivered = next(each for each in logger.handlers
                         if each.kind is Kind.DELIVERED)  # type: ignore[attr-defined]
        monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or plain_fsync(fd))
        delivered.fsync = "always"
        acct.delivered("synced@example.com")
    assert synced and rcpts(tmp_path) == [
        "first@example.com", "second@example.com", "synced@example.com"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_the_logger_or_emitter_replaced_after_a_record_in_c_is_used_at_the_next(
        tmp_path: Path) -> None:
    emitted: list[str] = []
    with accounting_logger(tmp_path / "first") as first, \
            accounting_logger(tmp_path / "second") as second:
        acct = AccountingLogger(first)
        acct.delivered("one@example.com")
        acct.delivered("two@example.com")
        acct.logger = second  # a slot of the AccountingLogger
        acct.delivered("three@example.com")
        plain_emit = acct._emit
        acct._emit = lambda *arguments: emitted.append(  # type: ignore[method-assign]
            arguments[2].rcpt) or plain_emit(*arguments)
        acct.delivered("four@example.com")
        second.setLevel(logging.WARNING)  # (the logger's cache cleared)
        acct.delivered("below-the-level@example.com")
    assert emitted == ["four@example.com"]
    assert rcpts(tmp_path / "first") == ["one@example.com", "two@example.com"]
    assert rcpts(tmp_path / "second") == ["three@example.com", "four@example.com"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_write_directly_called_again_after_a_record_in_c_is_heeded_at_the_next(
        tmp_path: Path, plain_spied: mock.MagicMock) -> None:
    """The emitter keeps what it read of ``speedups._direct``; another one, made by
    ``write_directly``, is read at the next record."""

    class Other(AccountingFormatter):
        pass

    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        acct.delivered("second@example.com")
        assert plain_spied.call_count == 0
        kept = speedups._direct
        assert kept is not None
        try:
            speedups.write_directly(kept.handler_class, Other)  # not the formatters' class
            acct.delivered("made@example.com")
            assert plain_spied.call_count == 1
        finally:
            speedups.write_directly(kept.handler_class, kept.formatter_class)
        acct.delivered("last@example.com")
        assert plain_spied.call_count == 1
    assert rcpts(tmp_path) == [
        "first@example.com", "second@example.com", "made@example.com", "last@example.com"]


@needs_accelerator
def test_the_clock_patched_after_a_record_in_c_times_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: T0)
    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        acct.delivered("second@example.com")
        monkeypatch.setattr(time, "time", lambda: T0 + 1)  # the time module's dict changed
        acct.delivered("a-second-later@example.com")
    assert [line.split("\t")[1] for line in lines(tmp_path)] == [
        "2025-11-26 06:20:00", "2025-11-26 06:20:00", "2025-11-26 06:20:01"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_a_record_factory_or_os_write_set_after_a_record_in_c_is_used_at_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    written: list[bytes] = []
    plain_factory, plain_write = logging.getLogRecordFactory(), os.write

    def factory(*arguments: Any, **keywords: Any) -> logging.LogRecord:
        made.append(arguments[0])
        return plain_factory(*arguments, **keywords)

    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        acct.delivered("second@example.com")
        logging.setLogRecordFactory(factory)
        try:
            acct.delivered("made@example.com")
        finally:
            logging.setLogRecordFactory(plain_factory)
        monkeypatch.setattr(os, "write", lambda fd, data: written.append(data)
                            or plain_write(fd, data))
        acct.delivered("through-os-write@example.com")
    assert made == [logger.name]
    assert [data.decode().split("\t")[3] for data in written] == ["through-os-write@example.com"]
    assert rcpts(tmp_path) == ["first@example.com", "second@example.com", "made@example.com",
                               "through-os-write@example.com"]


@needs_accelerator
@pytest.mark.usefixtures("frozen_clock")
def test_a_lock_of_another_class_set_after_a_record_in_c_is_entered_at_the_next(
        tmp_path: Path) -> None:
    import threading

    entered: list[str] = []

    class Lock(threading._PyRLock):  # type: ignore[name-defined,misc]
        def __enter__(self) -> Any:
            entered.append("enter")
            return super().__enter__()

    with accounting_logger(tmp_path) as logger:
        acct = AccountingLogger(logger)
        acct.delivered("first@example.com")
        acct.delivered("second@example.com")
        delivered = next(each for each in logger.handlers
                         if each.kind is Kind.DELIVERED)  # type: ignore[attr-defined]
        delivered.lock = Lock()
        acct.delivered("third@example.com")
    assert entered == ["enter"]
    assert rcpts(tmp_path) == ["first@example.com", "second@example.com", "third@example.com"]
