"""The threads that store the messages the relay accepts, waking the event loop once a batch.

``WRITER_THREADS`` long-lived threads take the messages to store from one queue (a
``queue.SimpleQueue``: a put wakes a waiting thread, nothing more), each one message at a
time: :meth:`Spool.store` (the queue file written and fsync'd, then ``queue/`` fsync'd once for
the threads that ask at the same time), then the message's ``then`` (the sent index). The
durability is :meth:`Spool.store`'s: a message's future is done only after both fsyncs.
What it saves against ``loop.run_in_executor`` is hand-offs between threads: no
``concurrent.futures`` future (its condition, its callbacks), no idle-thread semaphore, and
the finished messages wait in one deque for the event loop, which is woken once for all
that finish before it runs (not once a message).

Where the C extension ``mta_logging.relay._spoolwriter`` is built (:data:`IN_C`), a store
without ``then`` goes to its threads instead: POSIX threads that never take the GIL (the
file's creation, write, fsync and close, then ``queue/``'s fsync shared as
:class:`~mta_logging.relay.spool.DirectorySync` shares it), announcing finished stores on a
pipe the event loop reads. A Python thread takes the GIL back after each os call and lock it
waited on, and while the event loop holds it, each costs futex calls and context switches on
both sides. The Python threads still take a store with ``then`` (the sent index, sqlite), and
every store while the os calls, :meth:`Spool.store` or the spool module's file calls
(``create_file``, ``fsync_directory``, ``DirectorySync.sync``) are not their own (a fault
injected by a test), so that what was injected is what fails.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from mta_logging import fsutil
from mta_logging.relay import spool as _spool_module
from mta_logging.relay.spool import DirectorySync, Envelope, Spool

WRITER_THREADS = 16  # stores at once: fsyncs in parallel let the file system commit them together

Then = Callable[[str, Envelope, bytes], None]  # run in the thread once the message is durable
_Request = tuple[str, Envelope, bytes, "Then | None", asyncio.AbstractEventLoop,
                 "asyncio.Future[None]"]
_Done = tuple["asyncio.Future[None]", "BaseException | None"]


def c_writer_module() -> Any:
    """``mta_logging.relay._spoolwriter``, or None where it was not built."""
    try:
        return importlib.import_module("mta_logging.relay._spoolwriter")
    except ImportError:
        return None


_C = c_writer_module()
IN_C = _C is not None  # stores without ``then`` go to the C threads
_SPOOL_STORE = Spool.store
_SPOOL_CALLS = (fsutil.create_file, fsutil.fsync_directory, DirectorySync.sync)
QUEUE_FILE_MODE = 0o600  # as fsutil.create_file makes it

# a C store's outcome (see _spoolwriter.c)
_STORED, _FILE_OPEN, _FILE_WRITE, _DIRECTORY_OPEN, _DIRECTORY_SYNC = range(5)


class SpoolWriter:
    """Stores messages in ``spool`` from ``threads`` threads, started at the first
    :meth:`store`; for the coroutines of one event loop."""

    def __init__(self, spool: Spool, threads: int = WRITER_THREADS) -> None:
        self.spool = spool
        self.threads = threads
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._done: collections.deque[_Done] = collections.deque()  # for the event loop
        self._wake_pending = False  # the event loop is called to wake the waiters of _done
        self._c_writer: Any = None  # the C threads' Writer, made at the first store they take
        self._c_loop: asyncio.AbstractEventLoop | None = None  # whose reader wakes their waiters

    def store(self, queue_id: str, envelope: Envelope, content: bytes,
              then: Then | None = None) -> asyncio.Future[None]:
        """:meth:`Spool.store` of the message, then ``then(queue_id, envelope, content)``, in
        a thread; done when both are (an error of either goes up: an OSError of the store
        with the store undone). RuntimeError once closed."""
        if self._closed:
            raise RuntimeError("the spool writer is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if then is None and self._c_takes(loop):
            path, data = self.spool.queue_file(queue_id, envelope, content)
            self._c_writer.submit((future, path), path, data, QUEUE_FILE_MODE)
            return future
        if not self._threads:
            for index in range(self.threads):
                thread = threading.Thread(target=self._run, daemon=True,
                                          name=f"relay-spool-writer-{index + 1}")
                thread.start()
                self._threads.append(thread)
        self._requests.put((queue_id, envelope, content, then, loop, future))
        return future

    def _c_takes(self, loop: asyncio.AbstractEventLoop) -> bool:
        """True if the C threads store the next message (started on the first; see the
        module docstring for when they do not)."""
        if _C is None or not fsutil.os_calls_are_the_os_modules() \
                or type(self.spool).store is not _SPOOL_STORE or "store" in vars(self.spool) \
                or (_spool_module.create_file, _spool_module.fsync_directory,
                    type(self.spool._queue_dir_sync).sync) != _SPOOL_CALLS:
            return False
        if self._c_writer is None:
            self._c_writer = _C.Writer(os.fspath(self.spool.queue_dir), self.threads)
            self._c_loop = loop
            loop.add_reader(self._c_writer.fileno(), self._c_wake)
        return loop is self._c_loop

    def _c_wake(self) -> None:
        """In the event loop: every waiter whose message the C threads are done with, with
        the OSError the Python path's os calls would have raised (the path named by a failed
        open, as they name it)."""
        assert self._c_writer is not None
        for (future, path), stage, error in self._c_writer.completed():
            # cancelled, or its loop closed: the message stays in the spool for the next start
            if future.done() or future.get_loop().is_closed():
                continue
            if stage == _STORED:
                future.set_result(None)
            elif stage == _FILE_OPEN:
                future.set_exception(OSError(error, os.strerror(error), os.fspath(path)))
            elif stage == _DIRECTORY_OPEN:
                future.set_exception(OSError(error, os.strerror(error),
                                             os.fspath(self.spool.queue_dir)))
            else:
                future.set_exception(OSError(error, os.strerror(error)))

    def close(self) -> None:
        """Store what was asked for so far, then stop the threads (and wait for them); in the
        event loop's thread, whose waiters are then woken (their stores are all done)."""
        self._closed = True
        threads, self._threads = self._threads, []
        for _ in threads:
            self._requests.put(None)  # one each: a thread stops at the first it takes
        if self._c_writer is not None:
            self._c_writer.close()
            self._c_wake()
            assert self._c_loop is not None
            with contextlib.suppress(RuntimeError, ValueError, OSError):  # the loop is closed
                self._c_loop.remove_reader(self._c_writer.fileno())
        for thread in threads:
            thread.join()
        self._wake()

    def _run(self) -> None:
        requests = self._requests
        while True:
            request = requests.get()
            if request is None:
                return
            queue_id, envelope, content, then, loop, future = request
            error: BaseException | None = None
            try:
                self.spool.store(queue_id, envelope, content)
                if then is not None:
                    then(queue_id, envelope, content)
            except Exception as exc:  # noqa: BLE001 (it goes to the message's waiter)
                error = exc
            self._done.append((future, error))
            # the flag is read after the append, and cleared by _wake before it empties
            # _done: a message is never left in _done without a call of _wake to come
            if not self._wake_pending:
                self._wake_pending = True
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        """In the event loop: every waiter whose message is done, with its error (a cancelled
        one is left alone)."""
        self._wake_pending = False
        done = self._done
        while done:
            future, error = done.popleft()
            if future.done() or future.get_loop().is_closed():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
