"""AccountingLogger's direct write (``speedups.emit_direct``: no LogRecord made where nothing
but plain accounting file handlers would see it) gives what the plain way (``emit_plain``: the
record made and handed to ``logger.handle``) gives: the same files, byte for byte, the same
answer (could every handler write?), the same records seen by anything else that is set up.

Each setup is built twice, in two directories, and the same outcomes are sent through each
emitter; the clock is frozen, so that file names and times agree.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mta_logging import (
    AccountingFileHandler,
    AccountingFormatter,
    AccountingLogger,
    Outcome,
    speedups,
)
from mta_logging.outcome import Kind

T0 = time.mktime((2025, 11, 26, 6, 20, 0, 0, 0, -1))
EMITTERS = {"direct": speedups.emit_direct, "plain": speedups.emit_plain}
# the C accelerator's, where it was built (tests/test_accel.py says where it must be)
DIRECT_EMITTERS = {"direct": speedups.emit_direct}
if speedups.ACCELERATOR is not None:
    EMITTERS["accelerated"] = DIRECT_EMITTERS["accelerated"] = speedups.emit_accelerated
    EMITTERS["in C"] = DIRECT_EMITTERS["in C"] = speedups.EMIT_IN_C  # type: ignore[assignment]


class Kept(logging.Handler):
    """Another application's handler: keeps the messages of what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class Tagged(AccountingFileHandler):
    """A subclass that writes every line with a tag."""

    def emit(self, record: logging.LogRecord) -> None:
        record.outcome = record.outcome.__class__(  # type: ignore[attr-defined]
            record.outcome.kind, "tagged-" + record.outcome.rcpt)  # type: ignore[attr-defined]
        super().emit(record)


class Upper(AccountingFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).upper()


class Setup:
    """A logger ``test.emit.<n>.app`` under a parent ``test.emit.<n>`` that does not
    propagate, three accounting file handlers (one per kind) on the logger, and whatever a
    setup adds; ``close()`` takes down what it added."""

    count = 0

    def __init__(self, directory: Path) -> None:
        Setup.count += 1
        self.directory = directory
        self.parent = logging.getLogger(f"test.emit.{Setup.count}")
        self.parent.propagate = False
        self.logger = logging.getLogger(f"test.emit.{Setup.count}.app")
        self.logger.setLevel(logging.INFO)
        self.added: list[tuple[logging.Logger, logging.Handler]] = []
        self.handlers = [self.add(self.logger, kind) for kind in ("delivered", "deferred",
                                                                 "bounce")]
        self.kept = Kept()

    def add(self, logger: logging.Logger, kind: str, cls: type[AccountingFileHandler]
            = AccountingFileHandler, where: str = "") -> AccountingFileHandler:
        handler = cls(kind, path=self.directory / where)
        self.attach(logger, handler)
        return handler

    def attach(self, logger: logging.Logger, handler: logging.Handler) -> None:
        logger.addHandler(handler)
        self.added.append((logger, handler))

    def files(self) -> dict[str, bytes]:
        return {str(path.relative_to(self.directory)): path.read_bytes()
                for path in sorted(self.directory.rglob("*")) if path.is_file()}

    def close(self) -> None:
        for logger, handler in self.added:
            logger.removeHandler(handler)
            handler.close()
        self.logger.filters.clear()


def nothing(setup: Setup) -> None:
    pass


def propagating_to_a_second_writer(setup: Setup) -> None:
    setup.add(setup.parent, "delivered", where="parent")


def propagating_to_another_handler(setup: Setup) -> None:
    setup.attach(setup.parent, setup.kept)


def another_handler_beside(setup: Setup) -> None:
    setup.attach(setup.logger, setup.kept)


def a_handler_filter(setup: Setup) -> None:
    setup.handlers[0].addFilter(lambda record: "skip" not in record.outcome.rcpt)


def a_logger_filter(setup: Setup) -> None:
    setup.logger.addFilter(lambda record: "skip" not in record.outcome.rcpt)


def a_handler_level_above(setup: Setup) -> None:
    setup.handlers[2].setLevel(logging.CRITICAL)


def no_handler_of_the_kind(setup: Setup) -> None:
    setup.logger.removeHandler(setup.handlers[1])


def a_subclass(setup: Setup) -> None:
    setup.add(setup.logger, "delivered", Tagged, where="tagged")


def another_formatter(setup: Setup) -> None:
    setup.handlers[0].setFormatter(Upper(kind="delivered"))


def a_formatter_separator(setup: Setup) -> None:
    setup.handlers[0].formatter.separator = ","  # type: ignore[union-attr]


def emit_set_on_a_handler(setup: Setup) -> None:
    handler = setup.handlers[0]
    plain_emit = handler.emit

    def emit(record: logging.LogRecord) -> None:
        setup.kept.messages.append("emit: " + record.getMessage())
        plain_emit(record)

    handler.emit = emit  # type: ignore[method-assign]


def format_set_on_a_formatter(setup: Setup) -> None:
    formatter = setup.handlers[0].formatter
    assert formatter is not None
    formatter.format = lambda record: "formatted"  # type: ignore[method-assign]


def a_disabled_logger(setup: Setup) -> None:
    setup.logger.disabled = True


def outcome_line_set_on_a_formatter(setup: Setup) -> None:
    formatter = setup.handlers[0].formatter
    assert isinstance(formatter, AccountingFormatter)
    formatter.outcome_line = functools.partial(  # type: ignore[method-assign]
        shouted_line, formatter)


SETUPS: dict[str, Callable[[Setup], None]] = {
    "plain": nothing,
    "propagating to a second writer": propagating_to_a_second_writer,
    "propagating to another handler": propagating_to_another_handler,
    "another handler beside": another_handler_beside,
    "a handler filter": a_handler_filter,
    "a logger filter": a_logger_filter,
    "a handler level above": a_handler_level_above,
    "no handler of the kind": no_handler_of_the_kind,
    "a subclass": a_subclass,
    "another formatter": another_formatter,
    "a formatter separator": a_formatter_separator,
    "emit set on a handler": emit_set_on_a_handler,
    "format set on a formatter": format_set_on_a_formatter,
    "a disabled logger": a_disabled_logger,
    "outcome_line set on a formatter": outcome_line_set_on_a_formatter,
}
DIRECT_SETUPS = {"plain", "propagating to a second writer", "a formatter separator"}
# the setups each direct emitter writes without a record (emit_direct calls a formatter's own
# outcome_line; the accelerator, which writes without it, steps aside)
WRITTEN_DIRECTLY = {"direct": DIRECT_SETUPS | {"outcome_line set on a formatter"},
                    "accelerated": DIRECT_SETUPS, "in C": DIRECT_SETUPS}

OUTCOMES = [
    Outcome(Kind.DELIVERED, "a@example.com", job_id="1", dsn_msg="250 2.0.0 OK"),
    Outcome(Kind.BOUNCE, "b@example.com", dsn_status="5.1.1", dsn_msg="550 5.1.1 no such\tuser"),
    Outcome(Kind.DEFERRED, "skip@example.com", delay=60.0, dsn_msg="451 4.7.1\r\nlater"),
    Outcome(Kind.DELIVERED, "skip@example.com", src_ip="192.0.2.1"),
    Outcome(Kind.DELIVERED, "c@example.com", vmta="p\\ool", time_queued=T0 - 42),
]


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records, lines and file names all get T0."""
    monkeypatch.setattr(time, "time", lambda: T0)


@pytest.fixture
def spied() -> Iterator[mock.MagicMock]:
    """``speedups.emit_plain``, spied on: emit_direct calls it when it steps aside."""
    with mock.patch.object(speedups, "emit_plain", wraps=speedups.emit_plain) as spy:
        yield spy


def run(emit: speedups.Emitter, setup_name: str, directory: Path,
        outcomes: list[Outcome]) -> tuple[list[bool], dict[str, bytes], list[str]]:
    """The answers, the files and what the other handler saw, for ``outcomes`` sent by
    ``emit`` through the setup."""
    setup = Setup(directory)
    try:
        SETUPS[setup_name](setup)
        answers = [emit(setup.logger, outcome.kind.level, outcome, speedups.template_record)
                   for outcome in outcomes]
    finally:
        setup.close()
    return answers, setup.files(), setup.kept.messages


@pytest.mark.parametrize("emitter", sorted(DIRECT_EMITTERS))
@pytest.mark.parametrize("setup_name", sorted(SETUPS))
def test_direct_writes_what_the_record_would_have_written(
        setup_name: str, emitter: str, tmp_path: Path, spied: mock.MagicMock) -> None:
    direct = run(DIRECT_EMITTERS[emitter], setup_name, tmp_path / "direct", OUTCOMES)
    took_direct_way = not spied.called
    spied.reset_mock()
    plain = run(speedups.emit_plain, setup_name, tmp_path / "plain", OUTCOMES)
    assert direct == plain
    assert took_direct_way is (setup_name in WRITTEN_DIRECTLY[emitter])
    answers, files, _seen = direct
    assert answers == [False] * len(OUTCOMES)
    if setup_name != "a disabled logger":
        assert files  # something was written to compare


@pytest.mark.parametrize("emitter", sorted(DIRECT_EMITTERS))
def test_the_plain_setup_writes_the_lines_a_reader_expects(emitter: str, tmp_path: Path) -> None:
    _answers, files, _seen = run(DIRECT_EMITTERS[emitter], "plain", tmp_path, OUTCOMES)
    delivered = next(data for name, data in files.items() if name.startswith("delivered/"))
    assert delivered.decode().splitlines()[1:] == [
        "d\t2025-11-26 06:20:00\t\ta@example.com\t\t\t\t1\t\t250 2.0.0 OK",
        "d\t2025-11-26 06:20:00\t\tskip@example.com\t\t192.0.2.1\t\t\t\t",
        "d\t2025-11-26 06:20:00\t2025-11-26 06:19:18\tc@example.com\t\t\tp\\\\ool\t\t\t",
    ]


texts = st.text(max_size=12) | st.sampled_from(["\t", "\\", "\n", "a\udcffb", "é", ",", '"'])
outcome_lists = st.lists(st.builds(
    Outcome, st.sampled_from([Kind.DELIVERED, Kind.DEFERRED, Kind.BOUNCE]),
    st.text(min_size=1, max_size=12), dsn_msg=st.none() | texts, vmta=st.none() | texts,
    job_id=st.none() | texts, headers=st.just({})), min_size=1, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outcome_lists, st.sampled_from(sorted(DIRECT_SETUPS)))
def test_any_outcomes_are_written_the_same_both_ways(outcomes: list[Outcome],
                                                      setup_name: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        results = [run(emit, setup_name, Path(directory) / name, outcomes)
                   for name, emit in EMITTERS.items()]
    assert all(result == results[0] for result in results[1:])


@pytest.mark.parametrize("emitter", sorted(EMITTERS))
def test_a_write_that_fails_is_answered_and_reported_with_its_record(
        emitter: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    setup = Setup(tmp_path)
    lost: list[Outcome] = []
    acct = AccountingLogger(setup.logger, on_write_error=lost.append)
    acct._emit = EMITTERS[emitter]
    acct.delivered("first@example.com")  # the file is open

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    try:
        with monkeypatch.context() as patched:
            patched.setattr(os, "write", full)
            outcome = acct.delivered("lost@example.com", job_id="7")
        acct.delivered("after@example.com")
    finally:
        setup.close()
    assert lost == [outcome]
    error = capsys.readouterr().err
    assert "No space left on device" in error
    assert "Message: '%s %s job %s: %s'" in error
    assert "Arguments: ('delivered', 'lost@example.com', '7', '-')" in error
    delivered = next(data for name, data in setup.files().items()
                     if name.startswith("delivered/"))
    assert [line.split("\t")[3] for line in delivered.decode().splitlines()[1:]] == [
        "first@example.com", "after@example.com"]


@pytest.mark.parametrize("emitter", sorted(DIRECT_EMITTERS))
def test_a_patched_logger_class_method_is_called(
        emitter: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        spied: mock.MagicMock) -> None:
    """As a monitoring library patches ``Logger.callHandlers``: the record is made for it."""
    seen: list[str] = []
    plain_call_handlers = logging.Logger.callHandlers

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        seen.append(record.getMessage())
        plain_call_handlers(self, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", call_handlers)
    _answers, files, _kept = run(DIRECT_EMITTERS[emitter], "plain", tmp_path, OUTCOMES[:1])
    assert seen == ["delivered a@example.com job 1: 250 2.0.0 OK"]
    assert spied.called and list(files) == ["delivered/d.2025-11-26-062000.tsv"]


@pytest.mark.parametrize("emitter", sorted(DIRECT_EMITTERS))
def test_a_patched_handler_class_method_is_called(
        emitter: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handled: list[str] = []
    plain_handle = AccountingFileHandler.handle

    def handle(self: AccountingFileHandler, record: logging.LogRecord) -> bool:
        handled.append(record.getMessage())
        return bool(plain_handle(self, record))

    monkeypatch.setattr(AccountingFileHandler, "handle", handle)
    run(DIRECT_EMITTERS[emitter], "plain", tmp_path, OUTCOMES[:1])
    assert len(handled) == 3  # each of the three handlers is asked


def shouted_line(self: AccountingFormatter, outcome: Outcome, created: float) -> str:
    return PLAIN_OUTCOME_LINE(self, outcome, created).upper()


def shouted_write(self: AccountingFileHandler, text: str, created: float,
                  record: logging.LogRecord | None) -> None:
    PLAIN_WRITE_LINE(self, text.upper(), created, record)


PLAIN_OUTCOME_LINE = AccountingFormatter.outcome_line
PLAIN_WRITE_LINE = AccountingFileHandler.write_line


@pytest.mark.parametrize("emitter", sorted(DIRECT_EMITTERS))
@pytest.mark.parametrize(("cls", "name", "method"), [
    (AccountingFormatter, "outcome_line", shouted_line),
    (AccountingFileHandler, "write_line", shouted_write)], ids=["outcome_line", "write_line"])
def test_a_patched_line_or_write_method_is_what_writes(
        emitter: str, cls: type, name: str, method: Callable[..., Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cls, name, method)
    _answers, files, _kept = run(DIRECT_EMITTERS[emitter], "plain", tmp_path, OUTCOMES[:1])
    assert list(files.values())[0].decode().splitlines()[1:] == [
        "D\t2025-11-26 06:20:00\t\tA@EXAMPLE.COM\t\t\t\t1\t\t250 2.0.0 OK"]


def test_a_handler_writes_directly_until_a_step_is_set_on_it(tmp_path: Path) -> None:
    handler = AccountingFileHandler("delivered", path=tmp_path)
    try:
        assert handler._writes_directly
        handler.emit = handler.emit  # type: ignore[method-assign]
        handler.filter = handler.filter  # type: ignore[method-assign]
        assert not handler._writes_directly
        del handler.emit
        assert not handler._writes_directly  # filter is still set
        del handler.filter
        assert handler._writes_directly and not handler._filter_set
    finally:
        handler.close()
    assert not Tagged._writes_directly
    assert not speedups.RoutedHandler._writes_directly


@pytest.mark.parametrize("on", [True, False], ids=["speedups", "plain"])
def test_the_direct_way_is_taken_only_where_verified(on: bool) -> None:
    verified = frozenset({sys.version_info[:2]}) if on else frozenset()
    with mock.patch.object(speedups, "VERIFIED_PYTHONS", verified):
        acct = AccountingLogger("test.emit.choice")
    direct = speedups.emit_direct if speedups.ACCELERATOR is None else speedups.EMIT_IN_C
    assert acct._emit is (direct if on else speedups.emit_plain)
