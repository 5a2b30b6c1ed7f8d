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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
from collections.abc import Callable

from mta_logging.relay.spool import Envelope, Spool

WRITER_THREADS = 16  # stores at once: fsyncs in parallel let the file system commit them together

Then = Callable[[str, Envelope, bytes], None]  # run in the thread once the message is durable
_Request = tuple[str, Envelope, bytes, "Then | None", asyncio.AbstractEventLoop,
                 "asyncio.Future[None]"]
_Done = tuple["asyncio.Future[None]", "BaseException | None"]


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

    def store(self, queue_id: str, envelope: Envelope, content: bytes,
              then: Then | None = None) -> asyncio.Future[None]:
        """:meth:`Spool.store` of the message, then ``then(queue_id, envelope, content)``, in
        a thread; done when both are (an error of either goes up: an OSError of the store
        with the store undone). RuntimeError once closed."""
        if self._closed:
            raise RuntimeError("the spool writer is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._threads:
            for index in range(self.threads):
                thread = threading.Thread(target=self._run, daemon=True,
                                          name=f"relay-spool-writer-{index + 1}")
                thread.start()
                self._threads.append(thread)
        self._requests.put((queue_id, envelope, content, then, loop, future))
        return future

    def close(self) -> None:
        """Store what was asked for so far, then stop the threads (and wait for them)."""
        self._closed = True
        threads, self._threads = self._threads, []
        for _ in threads:
            self._requests.put(None)  # one each: a thread stops at the first it takes
        for thread in threads:
            thread.join()

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
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
