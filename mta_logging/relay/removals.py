"""The removal of finished messages from the spool, off the event loop.

A message whose recipients are all final is removed: its queue file, then its journal. If
that fails, its last recipients' final states are journaled instead (so that the next start
takes it for the finished message it is, and removes it); a failure is reported once per
episode (``FaultLog``). Off the event loop even without a journal: an unlink waits for the
file system's journal commit that the spool's fsyncs keep running, and would stall it.

Where the C extension ``mta_logging.relay._spoolwriter`` is built, the unlinks are made by
its POSIX threads, which never take the GIL, and the event loop learns of them from its pipe:
a Python thread would take the GIL back after each unlink, and while the event loop holds it
each costs futex calls and context switches on both sides (measured: a tenth of the relay's
CPU). Only the journal written instead of a failed removal goes to ``executor``. The Python
path (below) is taken while :meth:`Spool.remove`, ``os.unlink`` or ``Path.unlink`` are not
their own (a fault injected by a test), so that what was injected is what fails: the removals
asked for while a trip is under way go together in the next one, one trip to a thread for all
of them rather than one a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from mta_logging.relay.faults import FaultLog
from mta_logging.relay.spool import Spool
from mta_logging.relay.spooler import c_writer_module

_C = c_writer_module()
C_THREADS = 2  # unlinks at once: one slow (a journal commit) does not hold up the rest
_PYTHON_CALLS = (Spool.remove, os.unlink, Path.unlink)
_REMOVED, _FIRST_UNLINK, _SECOND_UNLINK = 0, 5, 6  # a C removal's outcome (_spoolwriter.c)

# queue id, journaled, the entries that make it final (journaled if the removal fails), waiter
_Removal = tuple[str, bool, list[str], "asyncio.Future[bool]"]
# of one removal: its error (None: removed), then the error of the journal written instead
_Removed = tuple["OSError | None", "OSError | None"]


class Removals:
    """Removes finished messages from ``spool`` for the coroutines of one event loop; the
    journal written instead of a failed removal in ``executor``; failures reported to
    ``faults``."""

    def __init__(self, spool: Spool, executor: Executor | None, faults: FaultLog) -> None:
        self.spool = spool
        self.executor = executor
        self.faults = faults
        self._waiting: list[_Removal] = []
        self._under_way = False
        self._trip: asyncio.Future[list[_Removed]] | None = None  # the one under way
        self._c_writer: Any = None  # the C threads' Writer, made at the first removal
        self._c_loop: asyncio.AbstractEventLoop | None = None  # whose reader takes theirs
        self._c_dirs = ("", "")  # the queue and state directories, as the Python path names
        self._c_open = 0  # C removals (and journals written instead) not settled yet
        self._c_settled: asyncio.Future[None] | None = None  # done when _c_open gets to 0
        self._closed = False  # the C threads are stopped: what comes after takes the executor

    async def remove(self, queue_id: str, journaled: bool, entries: list[str]) -> bool:
        """:meth:`Spool.remove` of the message; if that fails, ``entries`` (its last
        recipients' final states) journaled instead, whether or not the waiter still waits
        (so that a removal whose waiter is cancelled, at stop, still leaves the message
        final). True if the message is final either way; failures are reported to
        ``faults``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if self._c_takes(loop):
            queue_dir, state_dir = self._c_dirs
            self._c_writer.remove((queue_id, entries, future), f"{queue_dir}/{queue_id}",
                                  f"{state_dir}/{queue_id}" if journaled else None)
            self._c_open += 1
            return await future
        self._waiting.append((queue_id, journaled, entries, future))
        if not self._under_way:
            self._start()
        return await future

    async def settled(self) -> None:
        """Return once every removal asked for so far is done, whether or not its waiter still
        waits (``DeliveryQueue.stop`` cancels workers that may be waiting for theirs)."""
        while self._under_way and self._trip is not None:
            await asyncio.wait([self._trip])  # (its _finished, called first, starts the next)
        while self._c_open:
            if self._c_settled is None:
                self._c_settled = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._c_settled)

    def close(self) -> None:
        """Stop the C threads, once :meth:`settled` has returned (nothing is left for them);
        a removal asked for after that goes to the executor."""
        self._closed = True
        if self._c_writer is not None:
            self._c_writer.close()
            assert self._c_loop is not None
            with contextlib.suppress(RuntimeError, ValueError, OSError):  # the loop is closed
                self._c_loop.remove_reader(self._c_writer.fileno())

    # -- the C threads

    def _c_takes(self, loop: asyncio.AbstractEventLoop) -> bool:
        """True if the C threads remove the next message (started at the first)."""
        spool = self.spool
        if _C is None or self._closed or "remove" in vars(spool) \
                or (type(spool).remove, os.unlink, Path.unlink) != _PYTHON_CALLS:
            return False
        if self._c_writer is None:
            self._c_writer = _C.Writer(os.fspath(spool.queue_dir), C_THREADS)
            self._c_loop = loop
            self._c_dirs = (str(spool.queue_dir), str(spool.state_dir))
            loop.add_reader(self._c_writer.fileno(), self._c_wake)
        return loop is self._c_loop

    def _c_wake(self) -> None:
        """In the event loop: each removal the C threads are done with reported and its
        waiter woken, or the journal written instead of a failed one sent to the executor."""
        for (queue_id, entries, future), stage, error in self._c_writer.completed():
            if stage == _REMOVED:
                self._report(queue_id, None, None)
                self._c_done(future, True)
                continue
            name = (f"{self._c_dirs[0]}/{queue_id}" if stage == _FIRST_UNLINK
                    else f"{self._c_dirs[1]}/{queue_id}")
            failure = OSError(error, os.strerror(error), name)
            try:
                trip = asyncio.get_running_loop().run_in_executor(
                    self.executor, self._journal_instead, queue_id, entries)
            except RuntimeError as exc:  # the executor is shut down
                self._c_done(future, exc)
                continue
            trip.add_done_callback(functools.partial(self._c_journaled, queue_id, failure,
                                                     future))

    def _journal_instead(self, queue_id: str, entries: list[str]) -> OSError | None:
        """In the thread: ``entries`` journaled for a message that could not be removed."""
        try:
            self.spool.journal(queue_id, entries)
        except OSError as exc:
            return exc
        return None

    def _c_journaled(self, queue_id: str, failure: OSError, future: asyncio.Future[bool],
                     trip: asyncio.Future[OSError | None]) -> None:
        if trip.cancelled():  # the executor was shut down with its work cancelled
            self._c_done(future, None)
            return
        problem = trip.exception()
        if problem is not None:
            self._c_done(future, problem)
            return
        journal_error = trip.result()
        self._report(queue_id, failure, journal_error)
        self._c_done(future, journal_error is None)

    def _c_done(self, future: asyncio.Future[bool], outcome: bool | BaseException | None
                ) -> None:
        """One C removal settled: its waiter woken (with its outcome; None: cancelled),
        unless it was cancelled meanwhile."""
        self._c_open -= 1
        if self._c_open == 0 and self._c_settled is not None:
            if not self._c_settled.done():
                self._c_settled.set_result(None)
            self._c_settled = None
        if future.done():
            return
        if outcome is None:
            future.cancel()
        elif isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    # -- the Python path: a thread of the executor, a batch a trip

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        try:
            trip = asyncio.get_running_loop().run_in_executor(
                self.executor, self._remove_all,
                [(q, journaled, entries) for q, journaled, entries, _ in batch])
        except RuntimeError as exc:  # the executor is shut down
            _wake(batch, exc, [])
            return
        self._under_way = True
        self._trip = trip
        trip.add_done_callback(functools.partial(self._finished, batch))

    def _remove_all(self, batch: list[tuple[str, bool, list[str]]]) -> list[_Removed]:
        """In the thread: each removal, or the journal written instead, and their errors."""
        results: list[_Removed] = []
        for queue_id, journaled, entries in batch:
            try:
                self.spool.remove(queue_id, journaled)
            except OSError as exc:
                results.append((exc, self._journal_instead(queue_id, entries)))
            else:
                results.append((None, None))
        return results

    def _finished(self, batch: list[_Removal], trip: asyncio.Future[list[_Removed]]) -> None:
        self._under_way = False
        if trip.cancelled():  # the executor was shut down with its work cancelled
            for *_, future in batch:
                future.cancel()
        else:
            failure = trip.exception()
            results = [] if failure is not None else trip.result()
            for (queue_id, *_), (error, journal_error) in zip(batch, results, strict=True):
                self._report(queue_id, error, journal_error)  # waited for or not
            _wake(batch, failure, results)
        if self._waiting:
            self._start()

    def _report(self, queue_id: str, error: OSError | None, journal_error: OSError | None
                ) -> None:
        if error is None:
            self.faults.succeeded("queue file removal")
            return
        if journal_error is None:
            self.faults.failed("queue file removal", f"queue {queue_id}: {error}; its"
                               " recipients are journaled as final instead, and the file is"
                               " removed at the next start")
            self.faults.succeeded("journal write")
        else:
            self.faults.failed("queue file removal", f"queue {queue_id}: {error}; its"
                               " recipients stay queued (their final states could not be"
                               " journaled either)")
            self.faults.failed("journal write", f"queue {queue_id}: {journal_error}")


def _wake(batch: list[_Removal], failure: BaseException | None,
          results: list[_Removed]) -> None:
    """Wake the waiters of ``batch``: each with whether its message is final, or all with
    ``failure`` (the trip itself failed); a waiter cancelled meanwhile is left alone."""
    for index, (*_, future) in enumerate(batch):
        if future.done():
            continue
        if failure is not None:
            future.set_exception(failure)
        else:
            future.set_result(results[index][1] is None)
