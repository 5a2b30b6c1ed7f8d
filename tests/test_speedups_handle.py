"""The handler's handle() fast path gives what the plain path (routing by kind in front of the
stdlib's Handler.handle) gives: the same answer, the same records emitted, the same files."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mta_logging import AccountingFileHandler, AccountingLogger, speedups
from mta_logging.outcome import Kind
from mta_logging.speedups import RoutedHandler, finish_routed, handle_plain, handle_routed

# the fast paths, each against the plain one (the last): handle_routed, and its C Handle where
# the accelerator is built
HANDLES = [handle_routed, handle_plain]
if speedups.ACCELERATOR is not None:
    HANDLES.insert(1, speedups.ACCELERATOR.Handle(handle_routed, finish_routed,
                                                  vars(speedups)))
T = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))


class Kept(RoutedHandler):
    """Keeps what it is given to emit."""

    def __init__(self) -> None:
        super().__init__()
        self.kind = Kind.DELIVERED
        self.emitted: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.emitted.append(record)


class Picky(Kept):
    def filter(self, record: logging.LogRecord) -> bool:
        return "skip" not in record.outcome.rcpt  # type: ignore[attr-defined]


class Replacing(Kept):
    """A filter that hands back another record (3.12's Handler.handle would emit that)."""

    def filter(self, record: logging.LogRecord) -> logging.LogRecord:  # type: ignore[override]
        return logging.makeLogRecord({"msg": "replaced", "outcome": record.outcome})


class Lockless(Kept):
    def createLock(self) -> None:  # noqa: N802 - the stdlib's name
        self.lock = None  # type: ignore[assignment]


def record(rcpt: str, kind: str = "delivered") -> logging.LogRecord:
    made = logging.makeLogRecord({"msg": rcpt})
    made.outcome = AccountingLogger.outcome(kind, rcpt, job_id="j1")
    return made


def no_outcome() -> logging.LogRecord:
    return logging.makeLogRecord({"msg": "not an accounting record"})


def odd_outcome() -> logging.LogRecord:
    made = logging.makeLogRecord({"msg": "an outcome without a kind"})
    made.outcome = object()
    return made


def rejecting(handler: Kept) -> None:
    handler.addFilter(lambda r: "skip" not in r.getMessage())


def on_the_instance(handler: Kept) -> None:
    handler.filter = lambda r: "skip" not in r.getMessage()  # type: ignore[method-assign]


SETUPS: dict[str, tuple[Callable[[], Kept], Callable[[Kept], None]]] = {
    "plain": (Kept, lambda handler: None),
    "filter added": (Kept, rejecting),
    "filter set on the instance": (Kept, on_the_instance),
    "subclass filters": (Picky, lambda handler: None),
    "filter returns a record": (Replacing, lambda handler: None),
    "no lock": (Lockless, lambda handler: None),
}


def outcome_of_handling(handle: Callable[[RoutedHandler, logging.LogRecord], bool],
                        setup: str) -> tuple[list[bool], list[str]]:
    make, prepare = SETUPS[setup]
    handler = make()
    prepare(handler)
    records = [record("a@example.com"), record("b@example.com", "bounce"), no_outcome(),
               odd_outcome(), record("skip@example.com"), record("c@example.com")]
    answers = [handle(handler, r) for r in records]
    return answers, [r.getMessage() for r in handler.emitted]


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_the_fast_path_answers_and_emits_as_the_plain_one(setup: str) -> None:
    *fast, plain = (outcome_of_handling(handle, setup) for handle in HANDLES)
    assert fast == [plain] * len(fast)
    answers, _emitted = plain
    assert answers[1:4] == [False, False, False]  # other kinds and non-accounting records


def test_both_paths_write_the_same_files(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch (the class's ``handle``) set either way: the files a user reads agree."""
    monkeypatch.setattr(time, "time", lambda: T)  # file names are stamped to the second
    written = []
    for handle in HANDLES:
        with monkeypatch.context() as switched:
            switched.setattr(AccountingFileHandler, "handle", handle)
            directory = tmp_path / f"{handle.__name__}{HANDLES.index(handle)}"
            handler = AccountingFileHandler("delivered", directory)
            handler.addFilter(lambda r: "skip" not in r.outcome.rcpt)
            for rcpt, kind in [("a@example.com", "delivered"), ("b@example.com", "deferred"),
                               ("skip@example.com", "delivered"), ("c@example.com", "delivered")]:
                made = record(rcpt, kind)
                made.created = T
                handler.handle(made)
            handler.close()
        (path,) = directory.iterdir()
        written.append((path.name, path.read_text()))
    assert written[1:] == [written[0]] * (len(HANDLES) - 1)
    assert [line.split("\t")[3] for line in written[0][1].splitlines()[1:]] == [
        "a@example.com", "c@example.com"]


# == The lock entered and left as `with` does, by both paths ======================================

class Suppressing:
    """A lock whose __exit__ swallows the exception of the step under it."""

    def __init__(self) -> None:
        self.left: list[Any] = []

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> bool:
        self.left.append(exc[0])
        return True


class EnterOnly:
    def __enter__(self) -> None:
        pass


class ExitRaising(Suppressing):
    def __exit__(self, *exc: Any) -> bool:
        raise RuntimeError("exit failed")


class OnTheInstance:
    """__enter__/__exit__ set on the instance: `with` looks them up on the class."""

    def __init__(self) -> None:
        self.__enter__ = lambda: None
        self.__exit__ = lambda *exc: None


class Failing(Kept):
    def emit(self, record: logging.LogRecord) -> None:
        raise ValueError("emit failed")


def handled_with(handle: Callable[[RoutedHandler, logging.LogRecord], bool],
                 lock: Callable[[], Any], handler_class: type[Kept]) -> tuple[Any, ...]:
    handler = handler_class()
    handler.lock = lock()  # type: ignore[assignment]
    try:
        answer: Any = handle(handler, record("a@example.com"))
    except Exception as error:
        context = error.__context__
        answer = (type(error).__name__, str(error), None if context is None else str(context))
    left = getattr(handler.lock, "left", None)
    return answer, [r.getMessage() for r in handler.emitted], left


@pytest.mark.parametrize("lock", [Suppressing, EnterOnly, ExitRaising, OnTheInstance, object])
@pytest.mark.parametrize("handler_class", [Kept, Failing])
def test_an_odd_lock_is_entered_and_left_by_both_paths_as_with_does(
        lock: Callable[[], Any], handler_class: type[Kept]) -> None:
    """Missing or instance-set __enter__/__exit__ raise the interpreter's TypeError, an
    __exit__ returning True swallows the failure of emit (the record handled), one that
    raises has the failure as its context. (handle_plain is the stdlib's Handler.handle, which
    calls the lock's acquire and release: it is not compared.)"""
    plain, *fast = (handled_with(handle, lock, handler_class) for handle in HANDLES[:-1])
    assert fast == [plain] * len(fast)
    if lock is Suppressing and handler_class is Failing:
        assert plain == (True, [], [ValueError])
    if lock is EnterOnly:
        assert plain[0] == ("TypeError", "'EnterOnly' object does not support the context "
                            "manager protocol (missed __exit__ method)", None)
    if lock is ExitRaising and handler_class is Failing:
        assert plain[0] == ("RuntimeError", "exit failed", "emit failed")


def test_a_step_of_handle_routed_patched_in_speedups_is_used_by_the_c_handle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A global handle_routed reads (here _emit_in_c) patched: the C Handle calls
    handle_routed, which uses it; put back, the C Handle writes without it again."""
    calls: list[str] = []
    real_emit_in_c = speedups._emit_in_c

    def spied(*args: Any) -> None:
        calls.append("_emit_in_c")
        real_emit_in_c(*args)

    handler = AccountingFileHandler("delivered", path=tmp_path)
    with monkeypatch.context() as patched:
        patched.setattr(speedups, "_emit_in_c", spied)
        assert handler.handle(record("a@example.com")) is True
    assert handler.handle(record("b@example.com")) is True
    handler.close()
    assert calls == ["_emit_in_c"]
    (path,) = (each for each in tmp_path.rglob("*") if each.is_file())
    assert [line.split("\t")[3] for line in path.read_text().splitlines()[1:]] == [
        "a@example.com", "b@example.com"]
