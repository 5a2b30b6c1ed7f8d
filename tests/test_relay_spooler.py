"""The spool writer: messages stored durably from its threads, errors to their waiters.

A store without ``then`` goes to the C threads of ``mta_logging.relay._spoolwriter`` where it
is built, and to Python threads otherwise (and with ``then``, or while an os call is patched):
each test runs both ways, and both must give the same files and the same errors.
"""

from __future__ import annotations

import asyncio
import errno
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tmpfs import small_tmpfs

from mta_logging.relay import spool as spool_module
from mta_logging.relay import spooler as spooler_module
from mta_logging.relay.spool import Envelope, Spool
from mta_logging.relay.spooler import SpoolWriter

ENVELOPE = Envelope("sender@example.test", ("a@one.test",), time.time())


@pytest.fixture(params=["c", "python"])
def way(request, monkeypatch) -> str:
    if request.param == "c":
        if not spooler_module.IN_C:
            if os.environ.get("MTA_LOGGING_REQUIRE_ACCELERATOR") == "1":
                pytest.fail("mta_logging.relay._spoolwriter did not import: was it built?")
            pytest.skip("mta_logging.relay._spoolwriter was not built")
    else:
        monkeypatch.setattr(spooler_module, "_C", None)
    return request.param


def threads_of_this_process() -> set[str]:
    """The ids of this process's threads (other tests' threads among them)."""
    return set(os.listdir("/proc/self/task"))


def threads_become(condition: Callable[[set[str]], bool]) -> bool:
    """True once the set of this process's threads meets ``condition``, within 5 s (a joined
    thread leaves /proc/self/task a moment after ``join`` returns)."""
    deadline = time.monotonic() + 5
    while not condition(threads_of_this_process()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition(threads_of_this_process())


def took(writer: SpoolWriter, way: str) -> None:
    """The store went the way the test runs."""
    assert (writer._c_writer is not None) == (way == "c")
    assert bool(writer._threads) == (way == "python")


async def test_messages_stored_at_once_are_each_in_the_spool_when_their_waiter_wakes(
        tmp_path, way):
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=4)
    try:
        ids = [f"Q{n:03d}" for n in range(40)]
        seen: list[tuple[str, bool]] = []  # (id, its file there) as each waiter wakes
        stored = [asyncio.ensure_future(writer.store(queue_id, ENVELOPE,
                                                     b"m " + queue_id.encode()))
                  for queue_id in ids]
        for queue_id, store in zip(ids, stored, strict=True):
            store.add_done_callback(
                lambda _, queue_id=queue_id: seen.append(
                    (queue_id, (spool.queue_dir / queue_id).exists())))
        await asyncio.gather(*stored)
        took(writer, way)
        assert sorted(seen) == [(queue_id, True) for queue_id in ids]
        for queue_id in ids:
            content = b"m " + queue_id.encode()
            assert (spool.queue_dir / queue_id).read_bytes() == \
                ENVELOPE.to_json(content) + b"\n" + content
            assert (spool.queue_dir / queue_id).stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in spool.queue_dir.iterdir()) == ids
    finally:
        writer.close()


async def test_then_runs_in_a_python_thread_once_the_message_is_stored(tmp_path, way):
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=2)
    seen: list[tuple[str, bool]] = []

    def then(queue_id: str, envelope: Envelope, content: bytes) -> None:
        seen.append((queue_id, (spool.queue_dir / queue_id).exists()))

    try:
        await asyncio.gather(*(writer.store(f"Q{n}", ENVELOPE, b"x", then) for n in range(5)))
        assert sorted(seen) == [(f"Q{n}", True) for n in range(5)]
        assert writer._threads and writer._c_writer is None
    finally:
        writer.close()


async def test_a_store_that_fails_raises_to_its_waiter_and_the_others_are_stored(
        tmp_path, way):
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=2)
    try:
        await writer.store("TAKEN", ENVELOPE, b"first")
        results = await asyncio.gather(writer.store("TAKEN", ENVELOPE, b"second"),
                                       writer.store("OTHER", ENVELOPE, b"other"),
                                       return_exceptions=True)
        took(writer, way)
        taken = spool.queue_dir / "TAKEN"
        assert isinstance(results[0], FileExistsError) and results[1] is None
        assert (results[0].errno, results[0].filename, str(results[0])) == (
            errno.EEXIST, str(taken), f"[Errno 17] File exists: '{taken}'")
        assert spool.read_content("TAKEN") == b"first"
        assert spool.read_content("OTHER") == b"other"
        shutil.rmtree(spool.queue_dir)
        with pytest.raises(FileNotFoundError) as gone:
            await writer.store("GONE", ENVELOPE, b"x")
        assert str(gone.value) == \
            f"[Errno 2] No such file or directory: '{spool.queue_dir / 'GONE'}'"
    finally:
        writer.close()


async def test_a_full_disk_fails_the_store_with_enospc_and_leaves_no_file(tmp_path, way):
    with small_tmpfs(tmp_path / "small", "1m") as small:
        spool = Spool.open(small)
        writer = SpoolWriter(spool, threads=2)
        try:
            await writer.store("FITS", ENVELOPE, b"x" * 1000)
            with pytest.raises(OSError) as full:
                await writer.store("TOO-BIG", ENVELOPE, b"x" * (2 << 20))
            took(writer, way)
            assert (type(full.value), full.value.errno, full.value.filename,
                    str(full.value)) == (OSError, errno.ENOSPC, None,
                                         "[Errno 28] No space left on device")
            assert sorted(p.name for p in spool.queue_dir.iterdir()) == ["FITS"]
        finally:
            writer.close()


async def test_while_an_os_call_is_patched_the_python_threads_store(tmp_path, way, monkeypatch):
    """A fault injected at os.write is the one the store meets, even where the C threads
    exist: they would not call the patched function."""
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=2)
    try:
        await writer.store("BEFORE", ENVELOPE, b"x")

        def full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(OSError, match="No space left on device"):
            await writer.store("DURING", ENVELOPE, b"y")
        monkeypatch.undo()
        await writer.store("AFTER", ENVELOPE, b"z")
        assert sorted(p.name for p in spool.queue_dir.iterdir()) == ["AFTER", "BEFORE"]
    finally:
        writer.close()


async def test_a_cancelled_waiter_leaves_its_message_stored(tmp_path, way):
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=1)
    try:
        store = asyncio.ensure_future(writer.store("Q1", ENVELOPE, b"x"))
        await asyncio.sleep(0)
        store.cancel()
        await writer.store("Q2", ENVELOPE, b"y")  # done after Q1: one thread, in order
        assert spool.read_content("Q1") == b"x" and spool.read_content("Q2") == b"y"
    finally:
        writer.close()


async def test_an_error_of_then_goes_to_the_waiter_with_the_message_stored(tmp_path, way):
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool)

    def then(queue_id: str, envelope: Envelope, content: bytes) -> None:
        raise ValueError("index broken")

    try:
        with pytest.raises(ValueError, match="index broken"):
            await writer.store("Q1", ENVELOPE, b"x", then)
        assert spool.read_content("Q1") == b"x"
    finally:
        writer.close()


async def test_close_stores_what_was_asked_stops_the_threads_and_refuses_more(tmp_path, way):
    spool = Spool.open(tmp_path)
    before = threads_of_this_process()
    writer = SpoolWriter(spool, threads=3)
    await writer.store("Q1", ENVELOPE, b"x")
    # the writer's three threads are among those that came with the first store (a thread of
    # another test that starts or ends meanwhile is not counted against it)
    assert threads_become(lambda now: len(now - before) >= 3)
    started = threads_of_this_process() - before
    asked = [writer.store(f"L{n}", ENVELOPE, b"late") for n in range(10)]
    writer.close()
    assert threads_become(lambda now: len(started - now) >= 3)  # at least its three ended
    assert all(store.done() and store.exception() is None for store in asked)
    assert sorted(p.name for p in spool.queue_dir.iterdir()) == \
        sorted(["Q1"] + [f"L{n}" for n in range(10)])
    with pytest.raises(RuntimeError, match="the spool writer is closed"):
        writer.store("Q2", ENVELOPE, b"y")
    assert not (spool.queue_dir / "Q2").exists()
    writer.close()  # again: nothing to do


def test_the_c_writer_checks_its_arguments(tmp_path: Path) -> None:
    if not spooler_module.IN_C:
        pytest.skip("mta_logging.relay._spoolwriter was not built")
    writer_type = spooler_module._C.Writer
    with pytest.raises(ValueError, match="threads must be at least 1"):
        writer_type(str(tmp_path), 0)
    writer = writer_type(str(tmp_path), 1)
    with pytest.raises(TypeError, match="data must be bytes, not str"):
        writer.submit(None, str(tmp_path / "f"), "text", 0o600)
    with pytest.raises(TypeError, match="submit takes 4 arguments"):
        writer.submit(None)
    writer.close()
    with pytest.raises(RuntimeError, match="the spool writer is closed"):
        writer.submit(None, str(tmp_path / "f"), b"x", 0o600)
    assert writer.completed() == [] and not (tmp_path / "f").exists()


@pytest.mark.parametrize("name", ["fsync_directory", "create_file"])
async def test_a_fault_injected_into_the_spool_module_is_met_either_way(
        tmp_path, way, monkeypatch, name):
    """Tests inject faults into the spool module's file calls: the C threads, which would
    not call them, step aside while they are patched."""
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=2)

    def failing(*args: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    try:
        with monkeypatch.context() as patched:
            patched.setattr(spool_module, name, failing)
            with pytest.raises(OSError, match="Input/output error"):
                await writer.store("Q1", ENVELOPE, b"x")
        assert os.listdir(spool.queue_dir) == []
        await writer.store("Q2", ENVELOPE, b"y")  # the fault undone: the C threads again
        assert (writer._c_writer is not None) == (way == "c")
        assert os.listdir(spool.queue_dir) == ["Q2"]
    finally:
        writer.close()


def test_close_wakes_the_waiters_of_a_running_loop_when_another_loop_is_closed(
        tmp_path, way):
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=1)
    first = asyncio.new_event_loop()

    async def on_first() -> asyncio.Future[None]:
        stored = writer.store("Q1", ENVELOPE, b"x")
        stored.add_done_callback(lambda _: None)  # a waiter that will never run
        return stored

    first.run_until_complete(on_first())
    first.close()  # before it learnt that Q1 is stored
    second = asyncio.new_event_loop()

    async def on_second() -> asyncio.Future[None]:
        stored = writer.store("Q2", ENVELOPE, b"y")
        await asyncio.sleep(0.2)
        writer.close()
        return stored

    try:
        assert second.run_until_complete(on_second()).done()
    finally:
        second.close()
    assert sorted(os.listdir(spool.queue_dir)) == ["Q1", "Q2"]


def _use_in_a_child(writer: SpoolWriter, path: str, answers: multiprocessing.Queue) -> None:
    c_writer = writer._c_writer
    try:
        c_writer.submit(None, path, b"child", 0o600)
        answers.put("submitted")
    except RuntimeError as error:
        answers.put(str(error))
    answers.put(repr(c_writer.completed()))
    c_writer.close()  # returns: the threads are the parent's
    answers.put("closed")


async def test_a_forked_child_cannot_use_the_parents_c_writer(tmp_path):
    if not spooler_module.IN_C:
        pytest.skip("mta_logging.relay._spoolwriter was not built")
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=2)
    try:
        await writer.store("Q1", ENVELOPE, b"x")
        answers: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(
            target=_use_in_a_child, args=(writer, str(spool.queue_dir / "C"), answers))
        child.start()
        child.join(10)
        assert child.exitcode == 0
        assert [answers.get(timeout=1) for _ in range(3)] == [
            "the spool writer belongs to the parent process", "[]", "closed"]
        await writer.store("Q2", ENVELOPE, b"y")  # the parent's pipe and threads still work
        assert sorted(os.listdir(spool.queue_dir)) == ["Q1", "Q2"]
    finally:
        writer.close()
