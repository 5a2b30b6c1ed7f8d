"""The one background thread per process that maintains the accounting file handlers.

Once a second (a ``schedule.Scheduler`` job) it calls ``maintain()`` on every live handler;
ten times a second it maintains the handlers a logging call rolled over (``wake``) and has each
handler prepare its spare. It starts with the first handler registered and stops (and is
joined) when the last one is unregistered (``logging.shutdown()`` closes them all). After a
fork the child gets a thread of its own, and each handler leaves its parent's files alone.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Protocol

import schedule

from mta_logging.spares import PREPARING

MAINTENANCE_THREAD = "mta-logging-maintenance"


class Maintained(Protocol):
    """What the thread asks of a handler. None of these raises: failures are reported."""

    def maintain(self, now: float | None = None, stop: threading.Event | None = None) -> None:
        """The once-a-second work; give up waiting for the handler's lock once ``stop`` is
        set."""

    def prepare_spare(self, now: float | None = None) -> None:
        """Have the next active file ready if it will be needed soon."""

    def after_fork_in_child(self) -> None:
        """In a forked child: leave the parent's files to the parent."""


class Maintenance:
    """The thread's schedule and the handlers it serves (held weakly: a handler nobody holds
    any more is not kept alive by it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: weakref.WeakSet[Maintained] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._woken: collections.deque[Maintained] = collections.deque()

    def register(self, handler: Maintained) -> None:
        """Serve ``handler`` from now on (the thread starts with the first)."""
        with self._lock:
            self._handlers.add(handler)
            if self._thread is None:
                self._start()

    def unregister(self, handler: Maintained) -> None:
        """Serve ``handler`` no more; with the last one gone, stop the thread and wait for it
        (unless that could deadlock, see below)."""
        with self._lock:
            self._handlers.discard(handler)
            thread = self._thread
            if self._handlers or thread is None:
                return
            self._thread = None
            self._stop.set()
        # told to stop, it ends within a tenth of a second; wait for it, except when this
        # thread holds the logging module's lock (dictConfig and fileConfig close the old
        # handlers under it): the garbage collector running in the maintenance thread may
        # need that lock to drop a handler's weak reference (CPython gh-96727's kind of
        # deadlock), so waiting could be forever
        if thread is not threading.current_thread() and not _holds_logging_lock():
            thread.join()

    def wake(self, handler: Maintained) -> None:
        """Have the thread maintain ``handler`` at its next look (a tenth of a second at most),
        not at the next tick. No system call: the thread looks for itself."""
        self._woken.append(handler)

    def after_fork_in_child(self) -> None:
        """In a forked child (``PREPARING`` was taken before the fork): a thread of its own."""
        PREPARING.release()
        self._lock = threading.Lock()
        self._thread = None
        handlers = list(self._handlers)
        for handler in handlers:
            handler.after_fork_in_child()
        if handlers:
            self._start()

    def _start(self) -> None:
        self._stop = stop = threading.Event()
        self._woken = collections.deque()
        scheduler = schedule.Scheduler()
        scheduler.every(1).seconds.do(self._tick, stop)
        self._thread = threading.Thread(target=self._run, args=(scheduler, stop),
                                        name=MAINTENANCE_THREAD, daemon=True)
        self._thread.start()

    def _run(self, scheduler: schedule.Scheduler, stop: threading.Event) -> None:
        while not stop.wait(0.1):
            self._look(stop)
            scheduler.run_pending()

    def _look(self, stop: threading.Event) -> None:
        """Ten times a second: maintain the handlers a logging call rolled over, and have each
        handler prepare a spare."""
        if self._woken:
            woken: dict[int, Maintained] = {}
            while self._woken:
                handler = self._woken.popleft()
                woken[id(handler)] = handler
            _each(woken.values(), stop, lambda handler: handler.maintain(None, stop))
        _each(self._registered(), stop, lambda handler: handler.prepare_spare())

    def _tick(self, stop: threading.Event) -> None:
        _each(self._registered(), stop, lambda handler: handler.maintain(None, stop))

    def _registered(self) -> list[Maintained]:
        with self._lock:
            return list(self._handlers)


def _each(handlers: Iterable[Maintained], stop: threading.Event,
          work: Callable[[Maintained], None]) -> None:
    for handler in handlers:
        if stop.is_set():
            return
        work(handler)


def _holds_logging_lock() -> bool:
    """True if this thread holds the logging module's lock (a configuration is running)."""
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    return bool(is_owned()) if is_owned is not None else False


maintenance = Maintenance()
os.register_at_fork(before=PREPARING.acquire, after_in_parent=PREPARING.release,
                    after_in_child=maintenance.after_fork_in_child)
