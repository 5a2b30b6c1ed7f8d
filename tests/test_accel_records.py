"""Two C steps of the accelerator for code that uses the standard logger (``dictConfig``'s
path, ``logger.info(..., extra={"outcome": ...})``): ``Outcome.__init__`` in C (``_accel.Init``)
sets what the Python ``__init__`` sets, and raises what it raises; a record that a logger made
is written by ``_accel.write_record`` with the bytes ``emit`` writes, and handed to ``emit``
whenever something it stands in for has been changed."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import inspect
import logging
import os
import pickle
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta_logging import AccountingFileHandler, AccountingFormatter, Kind, Outcome, speedups
from mta_logging.outcome import DETAIL_NAMES

T0 = 1_764_138_000.0
accel = speedups.ACCELERATOR
pytestmark = pytest.mark.skipif(accel is None or not speedups.enabled(),
                                reason="the C accelerator is not built or not used here")
PYTHON_INIT = speedups.one_step_init(Outcome, DETAIL_NAMES)
FIELDS = [name for name in Outcome.__dataclass_fields__]


def by_python(*args: Any, **kwargs: Any) -> Outcome:
    made = object.__new__(Outcome)
    PYTHON_INIT(made, *args, **kwargs)
    return made


def error_of(make: Any, *args: Any, **kwargs: Any) -> tuple[type, str]:
    with pytest.raises(Exception) as caught:
        make(*args, **kwargs)
    return type(caught.value), str(caught.value)


# == Outcome.__init__ =============================================================================

def test_outcome_init_is_the_c_one_wrapping_the_python_one() -> None:
    assert type(Outcome.__init__) is accel.Init
    assert Outcome.__init__.__qualname__ == "Outcome.__init__"
    assert Outcome.__init__.__wrapped__.__qualname__ == "Outcome.__init__"
    assert str(inspect.signature(Outcome)).startswith(
        "(kind, rcpt, time_queued=None, src_mta=None,")


values = st.one_of(st.none(), st.text(max_size=5), st.integers(0, 9), st.just({"X-A": "b"}))


@settings(max_examples=300, deadline=None)
@given(positional=st.integers(0, 6), named=st.dictionaries(
    st.sampled_from(FIELDS[2:]), values, max_size=12))
def test_the_c_init_sets_the_dict_the_python_init_sets(positional: int,
                                                      named: dict[str, Any]) -> None:
    args: list[Any] = [Kind.BOUNCE, "b@example.com", T0, "mta", "192.0.2.1", "v"][:positional]
    kwargs = {name: value for name, value in named.items() if name not in FIELDS[:positional]}
    if positional < 1:
        kwargs["kind"] = Kind.DELIVERED
    if positional < 2:
        kwargs["rcpt"] = "a@example.com"
    made, expected = Outcome(*args, **kwargs), by_python(*args, **kwargs)
    assert list(vars(made).items()) == list(vars(expected).items())
    assert made == expected and repr(made) == repr(expected)
    assert pickle.loads(pickle.dumps(made)) == expected
    if "headers" not in kwargs:
        assert made.headers == {} and made.headers is not Outcome(Kind.BOUNCE, "x").headers


@pytest.mark.parametrize("args, kwargs", [
    ((), {"kind": Kind.DELIVERED}),
    ((Kind.DELIVERED,), {}),
    ((Kind.DELIVERED, "a@example.com"), {"rcpt": "b@example.com"}),
    ((Kind.DELIVERED, "a@example.com"), {"rcpt_to": "b@example.com"}),
    ((Kind.DELIVERED, "a@example.com", *([None] * 40)), {}),
])
def test_a_call_the_c_init_does_not_take_raises_the_python_init_s_error(
        args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert error_of(Outcome, *args, **kwargs) == error_of(by_python, *args, **kwargs)


def test_a_keyword_made_at_run_time_and_a_subclass_get_the_python_init_s_dict() -> None:
    name = "".join(["src", "_mta"])  # not interned: compared by value, in Python
    made = Outcome(Kind.DELIVERED, "a@example.com", **{name: "m"}, size=3)
    assert list(vars(made).items()) == list(
        vars(by_python(Kind.DELIVERED, "a@example.com", src_mta="m", size=3)).items())

    class Tagged(Outcome):
        pass

    tagged = Tagged(Kind.DELIVERED, "a@example.com", vmta="v")
    assert type(tagged) is Tagged and tagged.vmta == "v" and tagged.size is None
    with pytest.raises(AttributeError):
        Outcome.__init__(object(), Kind.DELIVERED, "a@example.com")


def test_outcome_is_made_in_c_unless_its_init_or_new_is_set_or_it_is_a_subclass(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``Outcome(...)`` is called in C (``construct_in_c``: no dict of its keywords), giving
    what the type's call gives; an ``__init__`` or ``__new__`` set on the class, and a
    subclass, are called as the type calls them."""
    made = Outcome(Kind.DELIVERED, "a@example.com", vmta="v", size=3)
    assert type(made) is Outcome and list(vars(made).items()) == list(
        vars(by_python(Kind.DELIVERED, "a@example.com", vmta="v", size=3)).items())
    assert dataclasses.replace(made, vmta="w").vmta == "w"
    calls: list[str] = []

    def init(self: Outcome, *args: Any, **kwargs: Any) -> None:
        calls.append("init")
        PYTHON_INIT(self, *args, **kwargs)

    def new(cls: type, *args: Any, **kwargs: Any) -> Any:
        calls.append("new")
        return object.__new__(cls)

    with monkeypatch.context() as patched:
        patched.setattr(Outcome, "__init__", init)
        assert Outcome(Kind.BOUNCE, "b@example.com").rcpt == "b@example.com"

    # a __new__ set on a class made in C (not on Outcome: CPython's class that had __new__
    # set and deleted again calls object.__new__ with the arguments, which refuses them)
    @dataclasses.dataclass(frozen=True)
    class Pair:
        left: str
        right: str | None = None

    Pair.__init__ = speedups.init_in_c(  # type: ignore[method-assign]
        speedups.one_step_init(Pair), Pair, ())
    accel.construct_in_c(Pair)
    assert vars(Pair("a", right="b")) == {"left": "a", "right": "b"}
    Pair.__new__ = staticmethod(new)  # type: ignore[assignment]
    assert vars(Pair(left="c")) == {"left": "c", "right": None}
    assert calls == ["init", "new"]

    class Tagged(Outcome):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            calls.append("subclass")
            super().__init__(*args, **kwargs)

    assert type(Tagged(Kind.DELIVERED, "d@example.com")) is Tagged
    assert calls[-1] == "subclass" and type(Outcome.__init__) is accel.Init
    assert Outcome(Kind.DELIVERED, "e@example.com") == by_python(Kind.DELIVERED, "e@example.com")


def test_an_init_set_while_the_instance_is_made_is_the_one_called() -> None:
    """A collection started by making the instance (inside the C call) runs finalizers,
    which run any code: an ``Outcome.__init__`` one sets is the one called, as type_call,
    which looks ``__init__`` up after ``__new__``, calls it (construct_in_c looks it up again
    after making the instance: the C Init it found first may have been freed). The collection
    is made due at the call's first allocation; which allocation that is depends on the
    build, so a few thresholds are tried: at one, the finalizer runs within the call, when the
    instance is made (at a later one, when __init__ makes the dict: that call goes on)."""
    import gc
    import sys

    original = Outcome.__dict__["__init__"]
    state: dict[str, Any] = {"armed": False, "line": None}
    called: list[str] = []

    def python_init(self: Outcome, *args: Any, **kwargs: Any) -> None:
        called.append("python")
        PYTHON_INIT(self, *args, **kwargs)

    class Trigger:
        def __del__(self) -> None:
            if state["armed"]:
                state["armed"], state["line"] = False, sys._getframe(1).f_lineno
                Outcome.__init__ = python_init  # type: ignore[method-assign]

    def attempt(offset: int) -> tuple[Outcome, int]:
        gc.collect()
        trigger = Trigger()
        trigger.cycle = trigger  # type: ignore[attr-defined]
        del trigger
        state["armed"], state["line"] = True, None
        kind, make, set_threshold = Kind.DELIVERED, Outcome, gc.set_threshold
        set_threshold(gc.get_count()[0] + offset)
        made, line = make(kind, "a@example.com", vmta="v"), sys._getframe().f_lineno
        return made, line

    threshold = gc.get_threshold()
    within = []
    try:
        for offset in range(16):
            called.clear()
            made, line = attempt(offset)
            gc.set_threshold(*threshold)
            if state["line"] == line and called == ["python"]:
                within.append(offset)  # it ran within Outcome(...), before __init__ was called
            assert vars(made) == vars(by_python(Kind.DELIVERED, "a@example.com", vmta="v"))
            Outcome.__init__ = original  # type: ignore[method-assign]
    finally:
        gc.set_threshold(*threshold)
        state["armed"] = False
        Outcome.__init__ = original  # type: ignore[method-assign]
    assert within, "no threshold had the finalizer run within the call, before __init__"


def test_construct_in_c_takes_only_a_class_with_an_init_made_for_it() -> None:
    with pytest.raises(ValueError, match=r"construct_in_c: <class 'int'>.__init__ is not an "
                                         r"Init made for it"):
        accel.construct_in_c(int)
    with pytest.raises(TypeError, match="construct_in_c: a class whose metaclass is type"):
        accel.construct_in_c(Outcome(Kind.DELIVERED, "a@example.com"))


# == A record a logger made, written in C ======================================================

@contextlib.contextmanager
def accounting_logger(directory: Path) -> Iterator[logging.Logger]:
    """A standard logger with accounting file handlers for delivered and bounce records in
    ``directory``."""
    made = logging.getLogger(f"test.accel.records.{directory}")
    made.propagate = False
    made.setLevel(logging.INFO)
    handlers = [AccountingFileHandler(kind, path=directory) for kind in ("delivered", "bounce")]
    for each in handlers:
        made.addHandler(each)
    try:
        yield made
    finally:
        for each in handlers:
            made.removeHandler(each)
            each.close()


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records, lines and file names all get T0."""
    monkeypatch.setattr(time, "time", lambda: T0)


@pytest.fixture
def logger(tmp_path: Path, frozen_clock: None) -> Iterator[logging.Logger]:
    with accounting_logger(tmp_path) as made:
        yield made


def log(logger: logging.Logger, rcpt: str, kind: Kind = Kind.DELIVERED, **fields: Any) -> None:
    logger.info("outcome %s", rcpt, extra={"outcome": Outcome(kind, rcpt, job_id="j", **fields)})


def written(directory: Path) -> dict[str, bytes]:
    """Each file under ``directory`` (by its path there) and its bytes."""
    return {str(path.relative_to(directory)): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def delivered_rcpts(directory: Path) -> list[str]:
    (text,) = (data.decode() for name, data in written(directory).items()
               if name.startswith("delivered/"))
    return [line.split("\t")[3] for line in text.splitlines()[1:]]


def delivered_handler(logger: logging.Logger) -> AccountingFileHandler:
    return next(each for each in logger.handlers
                if isinstance(each, AccountingFileHandler) and each.kind is Kind.DELIVERED)


RECORDS = [("plain@example.com", Kind.DELIVERED, {}),
           ("bounced@example.com", Kind.BOUNCE, {"dsn_msg": "550 5.1.1 no such user"}),
           ("tab@example.com", Kind.DELIVERED, {"dsn_msg": "250\tok"}),  # escaped: by emit
           ("é@example.com", Kind.DELIVERED, {}),  # not ASCII: by emit
           ("last@example.com", Kind.DELIVERED, {"size": 5})]


@pytest.mark.usefixtures("frozen_clock")
def test_records_of_a_logger_are_written_in_c_with_the_bytes_emit_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = accel.write_record

    def spied(*args: Any) -> Any:
        calls.append(real(*args))
        return calls[-1]

    monkeypatch.setattr(accel, "write_record", spied)
    with accounting_logger(tmp_path / "c") as logger:
        for rcpt, kind, fields in RECORDS:
            log(logger, rcpt, kind, **fields)
    # the first record of each file opens it and the non-ASCII line is not written here: their
    # lines come back for write_line; the escaped one is left to emit
    assert [call if call in (None, True) else "line" for call in calls] == [
        "line", "line", None, "line", True]
    monkeypatch.setattr(speedups, "_OS_WRITE", None)  # write_record not called: emit writes
    with accounting_logger(tmp_path / "emit") as logger:
        for rcpt, kind, fields in RECORDS:
            log(logger, rcpt, kind, **fields)
    assert len(calls) == 5
    in_c = written(tmp_path / "c")
    assert in_c == written(tmp_path / "emit")
    assert delivered_rcpts(tmp_path / "c") == [
        "plain@example.com", "tab@example.com", "é@example.com", "last@example.com"]


@pytest.mark.parametrize("change", ["format on the formatter", "outcome_line of the class",
                                    "emit on the handler", "created an int"])
def test_what_write_record_stands_in_for_changed_is_used_at_the_next_record(
        tmp_path: Path, logger: logging.Logger, change: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    log(logger, "first@example.com")
    log(logger, "second@example.com")
    handler = delivered_handler(logger)
    formatter = handler.formatter
    assert isinstance(formatter, AccountingFormatter)
    with monkeypatch.context() as changed:
        if change == "format on the formatter":
            plain = formatter.format
            changed.setattr(formatter, "format", lambda record: plain(record).upper(),
                            raising=False)
        elif change == "outcome_line of the class":
            plain_line = AccountingFormatter.outcome_line
            changed.setattr(AccountingFormatter, "outcome_line",
                            lambda self, outcome, at: plain_line(self, outcome, at).upper())
        elif change == "emit on the handler":
            changed.setattr(handler, "emit", lambda record: handler.write_line(
                formatter.format(record).upper(), record.created, record), raising=False)
        else:
            original = logging.LogRecord.__init__

            def whole_seconds(self: logging.LogRecord, *args: Any, **kwargs: Any) -> None:
                original(self, *args, **kwargs)
                self.created = int(self.created)  # type: ignore[assignment]

            changed.setattr(logging.LogRecord, "__init__", whole_seconds)
        log(logger, "third@example.com")
    log(logger, "fourth@example.com")
    third = "third@example.com" if change == "created an int" else "THIRD@EXAMPLE.COM"
    assert delivered_rcpts(tmp_path) == [
        "first@example.com", "second@example.com", third, "fourth@example.com"]


def test_a_write_that_fails_in_c_goes_to_handle_error_once_with_nothing_written(
        tmp_path: Path, logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    log(logger, "first@example.com")
    log(logger, "second@example.com")
    handler = delivered_handler(logger)
    fd = handler._file.fd  # type: ignore[union-attr]
    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", reported.append, raising=False)
    calls = []
    real = accel.write_record

    def spied(*args: Any) -> Any:
        try:
            calls.append(real(*args))
        except OSError as error:
            calls.append(error.errno)
            raise
        return calls[-1]

    monkeypatch.setattr(accel, "write_record", spied)
    monkeypatch.setattr(handler, "emit", lambda record: pytest.fail("emit called"),
                        raising=False)
    monkeypatch.setattr(handler, "_writes_directly", True, raising=False)
    spare = os.dup(fd)
    os.close(fd)  # EBADF at the next write
    try:
        log(logger, "lost@example.com")
    finally:
        os.dup2(spare, fd)
        os.close(spare)
    assert calls == [errno.EBADF]
    assert [record.outcome.rcpt for record in reported] == [  # type: ignore[attr-defined]
        "lost@example.com"]
    assert handler._file.records == 2  # type: ignore[union-attr]
    monkeypatch.undo()
    log(logger, "after@example.com")
    assert delivered_rcpts(tmp_path) == [
        "first@example.com", "second@example.com", "after@example.com"]


# == Found by review: the signature's <factory>, the init as a function, a line made once ==========

def test_passing_the_signatures_factory_default_back_gives_a_fresh_dict() -> None:
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(Outcome).parameters.items()
                if parameter.default is not parameter.empty}  # headers=<factory>, extra=...
    made = Outcome(Kind.DELIVERED, "a@example.com", **defaults)
    expected = by_python(Kind.DELIVERED, "a@example.com", **defaults)
    assert type(expected.headers) is dict and expected.headers == {}
    assert list(vars(made).items()) == list(vars(expected).items())
    assert made.header("X-Any") is None
    factory = inspect.signature(Outcome).parameters["headers"].default
    args = (Kind.DELIVERED, "a@example.com", *([None] * 10), factory, factory)
    assert list(vars(Outcome(*args)).items()) == list(vars(by_python(*args)).items())


@pytest.mark.parametrize("use", ["pickle", "deepcopy", "get_type_hints"])
def test_outcome_init_pickles_copies_and_is_inspected_as_the_python_one(
        use: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for init in (Outcome.__init__.__wrapped__, Outcome.__init__):
        with monkeypatch.context() as installed:
            installed.setattr(Outcome, "__init__", init)
            if use == "pickle":
                assert pickle.loads(pickle.dumps(Outcome.__init__)) is init
            elif use == "deepcopy":
                assert copy.deepcopy(Outcome.__init__) is init
            else:
                assert typing.get_type_hints(Outcome.__init__) == {}


class Counted:
    """A value whose text is made as often as ``str()`` is called on it."""

    calls = 0

    def __str__(self) -> str:
        Counted.calls += 1
        return "vmta-1"


@pytest.mark.parametrize("fsync, rcpt", [("always", "a@example.com"),
                                         ("never", "é@example.com")])
def test_the_line_of_a_record_write_record_hands_back_is_made_once(
        tmp_path: Path, fsync: str, rcpt: str) -> None:
    """A line append_line makes but leaves to write_line (``fsync: always``, not ASCII) is
    written as it was made, each value's ``str()`` called once, as emit alone calls it."""
    logger = logging.getLogger(f"test.accel.records.once.{fsync}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = AccountingFileHandler("delivered", path=tmp_path, fsync=fsync)
    logger.addHandler(handler)
    try:
        logger.info("first", extra={"outcome": Outcome(Kind.DELIVERED, "first@example.com")})
        Counted.calls = 0
        for _ in range(5):
            logger.info("x", extra={"outcome": Outcome(Kind.DELIVERED, rcpt, vmta=Counted())})
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert Counted.calls == 5
    assert delivered_rcpts(tmp_path) == ["first@example.com"] + [rcpt] * 5
