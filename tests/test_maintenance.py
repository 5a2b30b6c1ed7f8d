"""The maintenance thread: one per process, started by the first handler and stopped (joined)
with the last; once a second it maintains every handler, ten times a second it has each
prepare its spare and maintains those a logging call woke; a forked child gets its own."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from mta_logging import maintenance as maintenance_module
from mta_logging.maintenance import MAINTENANCE_THREAD, Maintenance


class Handler:
    """Stands in for a handler: records what the thread asked of it, and from which thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.stops: list[threading.Event | None] = []

    def maintain(self, now: float | None = None, stop: threading.Event | None = None) -> None:
        self.calls.append(("maintain", threading.current_thread().name))
        self.stops.append(stop)

    def prepare_spare(self, now: float | None = None) -> None:
        self.calls.append(("prepare_spare", threading.current_thread().name))

    def after_fork_in_child(self) -> None:
        self.calls.append(("after_fork_in_child", threading.current_thread().name))


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def maintenance_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == MAINTENANCE_THREAD]


class Busy(Handler):
    """A handler whose spare takes until the test says so: the thread waits in its look."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.done = threading.Event()

    def prepare_spare(self, now: float | None = None) -> None:
        self.inside.set()
        self.done.wait(10)


@pytest.fixture
def thread() -> Maintenance:
    return Maintenance()


def test_the_thread_runs_from_the_first_handler_to_the_last(thread: Maintenance) -> None:
    before = set(maintenance_threads())
    first, second = Handler(), Handler()
    thread.register(first)
    thread.register(second)
    (started,) = set(maintenance_threads()) - before
    thread.unregister(first)
    assert started.is_alive()
    thread.unregister(second)
    assert not started.is_alive()  # joined before unregister returned


def test_every_handler_is_maintained_and_asked_for_its_spare(thread: Maintenance) -> None:
    handler = Handler()
    thread.register(handler)
    try:
        assert wait_for(lambda: ("maintain", MAINTENANCE_THREAD) in handler.calls
                        and ("prepare_spare", MAINTENANCE_THREAD) in handler.calls)
    finally:
        thread.unregister(handler)
    assert all(stop is not None and stop.is_set() for stop in handler.stops)


def test_a_woken_handler_is_maintained_once_per_look(thread: Maintenance) -> None:
    handler, busy = Handler(), Busy()
    thread.register(busy)
    try:
        assert busy.inside.wait(10)  # the thread is in the middle of a look
        for _ in range(3):
            thread.wake(handler)  # woken, though never registered: maintained all the same
        busy.done.set()
        assert wait_for(lambda: ("maintain", MAINTENANCE_THREAD) in handler.calls)
    finally:
        busy.done.set()
        thread.unregister(busy)
    assert handler.calls == [("maintain", MAINTENANCE_THREAD)]


def test_a_forked_child_has_a_thread_of_its_own() -> None:
    handler = Handler()
    maintenance_module.maintenance.register(handler)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the handler was told, and a thread runs here too
            code = 1
            try:
                told = ("after_fork_in_child", "MainThread") in handler.calls
                code = 0 if told and wait_for(lambda: maintenance_threads() != []) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert ("after_fork_in_child", "MainThread") not in handler.calls  # not the parent
    finally:
        maintenance_module.maintenance.unregister(handler)
