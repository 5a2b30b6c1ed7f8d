"""Removals of finished messages: by the C threads, or by a Python thread while a call is
patched; the same files left and the same lines logged either way."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mta_logging.relay import removals as removals_module
from mta_logging.relay.faults import FaultLog
from mta_logging.relay.removals import Removals
from mta_logging.relay.spool import Envelope, Spool

ENVELOPE = Envelope("sender@example.test", ("a@one.test", "b@two.test"), time.time())
LOG = "mta_logging.relay.test_removals"


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that counts the work it was given."""

    def __init__(self) -> None:
        super().__init__(1)
        self.given = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        self.given += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture(params=["c", "python"])
def way(request, monkeypatch) -> str:
    if request.param == "c":
        if removals_module._C is None:
            if os.environ.get("MTA_LOGGING_REQUIRE_ACCELERATOR") == "1":
                pytest.fail("mta_logging.relay._spoolwriter did not import: was it built?")
            pytest.skip("mta_logging.relay._spoolwriter was not built")
    else:
        real_unlink = os.unlink
        # a call patched (as a test injecting a fault would): the Python path takes over
        monkeypatch.setattr(os, "unlink", lambda *a, **k: real_unlink(*a, **k))
    return request.param


@pytest.fixture
def executor():
    pool = CountingExecutor()
    yield pool
    pool.shutdown(wait=True)


def stored(spool: Spool, queue_id: str, *journal: str) -> None:
    spool.store(queue_id, ENVELOPE, b"Subject: x\r\n\r\nbody\r\n")
    if journal:
        spool.journal(queue_id, journal)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG]


def names(directory: Path) -> list[tuple[str, str]]:
    return sorted((p.name, p.read_text() if p.is_file() else "<directory>")
                  for p in directory.iterdir())


async def test_finished_messages_are_removed_with_their_journals(tmp_path, way, executor,
                                                                 caplog):
    spool = Spool.open(tmp_path)
    stored(spool, "Q0")
    stored(spool, "Q1", "d 0")
    stored(spool, "Q2", "b 1")  # journaled, yet told it is not: its journal stays
    removals = Removals(spool, executor, FaultLog(logging.getLogger(LOG)))
    finals = await asyncio.gather(removals.remove("Q0", False, ["d 0", "d 1"]),
                                  removals.remove("Q1", True, ["d 1"]),
                                  removals.remove("Q2", False, ["d 0"]),
                                  removals.remove("Q9", True, ["d 0"]))  # already gone
    await removals.settled()
    removals.close()
    assert finals == [True, True, True, True]
    assert names(spool.queue_dir) == []
    assert names(spool.state_dir) == [("Q2", "b 1\n")]
    assert lines(caplog) == []
    # the C threads remove without the executor; the Python path takes one trip at least
    assert (executor.given == 0) == (way == "c")


async def test_a_queue_file_that_cannot_be_removed_is_journaled_final_instead(
        tmp_path, way, executor, caplog):
    spool = Spool.open(tmp_path)
    (spool.queue_dir / "Q0").mkdir()  # a directory where the queue file is: unlink fails
    (spool.queue_dir / "Q0" / "inside").write_text("x")
    stored(spool, "Q1")
    removals = Removals(spool, executor, FaultLog(logging.getLogger(LOG)))
    assert await removals.remove("Q0", False, ["d 0", "b 1"]) is True
    assert await removals.remove("Q1", False, ["d 0"]) is True
    await removals.settled()
    removals.close()
    assert names(spool.queue_dir) == [("Q0", "<directory>")]
    assert names(spool.state_dir) == [("Q0", "d 0\nb 1\n")]
    assert lines(caplog) == [
        f"queue file removal failed: queue Q0: [Errno 21] Is a directory: "
        f"'{spool.queue_dir}/Q0'; its recipients are journaled as final instead, and the"
        " file is removed at the next start (further failures of this kind are counted, not"
        " logged, until one succeeds)",
        "queue file removal works again after 1 failure(s)"]


async def test_a_removal_whose_journal_fails_too_keeps_the_message_queued(
        tmp_path, way, executor, caplog):
    spool = Spool.open(tmp_path)
    stored(spool, "Q0")
    (spool.state_dir / "Q0").mkdir()  # the journal: neither removed nor written to
    (spool.state_dir / "Q0" / "inside").write_text("x")
    removals = Removals(spool, executor, FaultLog(logging.getLogger(LOG)))
    assert await removals.remove("Q0", True, ["d 0"]) is False
    await removals.settled()
    removals.close()
    assert names(spool.queue_dir) == []  # the queue file went first, as Spool.remove does it
    assert lines(caplog) == [
        f"queue file removal failed: queue Q0: [Errno 21] Is a directory: "
        f"'{spool.state_dir}/Q0'; its recipients stay queued (their final states could not be"
        " journaled either) (further failures of this kind are counted, not logged, until one"
        " succeeds)",
        f"journal write failed: queue Q0: [Errno 21] Is a directory: '{spool.state_dir}/Q0'"
        " (further failures of this kind are counted, not logged, until one succeeds)"]


async def test_a_waiter_cancelled_leaves_its_removal_to_finish_before_settled_returns(
        tmp_path, way, executor, caplog):
    spool = Spool.open(tmp_path)
    (spool.queue_dir / "Q0").mkdir()
    (spool.queue_dir / "Q0" / "inside").write_text("x")
    stored(spool, "Q1", "d 0")
    removals = Removals(spool, executor, FaultLog(logging.getLogger(LOG)))
    waiters = [asyncio.ensure_future(removals.remove("Q0", False, ["d 0"])),
               asyncio.ensure_future(removals.remove("Q1", True, ["d 1"]))]
    await asyncio.sleep(0)  # both asked for
    for waiter in waiters:
        waiter.cancel()
    await removals.settled()
    removals.close()
    assert all(waiter.cancelled() for waiter in waiters)
    # Q0 could not be removed: journaled final all the same; Q1 is gone
    assert names(spool.queue_dir) == [("Q0", "<directory>")]
    assert names(spool.state_dir) == [("Q0", "d 0\n")]
    assert Spool.open(tmp_path).load() == []  # the next start takes it for finished


async def test_removals_after_close_go_to_the_executor(tmp_path, executor):
    if removals_module._C is None:
        pytest.skip("mta_logging.relay._spoolwriter was not built")
    spool = Spool.open(tmp_path)
    stored(spool, "Q0")
    stored(spool, "Q1")
    removals = Removals(spool, executor, FaultLog(logging.getLogger(LOG)))
    assert await removals.remove("Q0", False, ["d 0"]) is True
    removals.close()
    assert executor.given == 0
    assert await removals.remove("Q1", False, ["d 0"]) is True
    assert executor.given == 1 and names(spool.queue_dir) == []


def test_the_c_writer_removes_and_reports_each_unlink(tmp_path: Path) -> None:
    if removals_module._C is None:
        pytest.skip("mta_logging.relay._spoolwriter was not built")
    import select

    writer = removals_module._C.Writer(str(tmp_path), 1)
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
    (tmp_path / "dir").mkdir()
    writer.remove("both", str(tmp_path / "a"), str(tmp_path / "b"))
    writer.remove("missing", str(tmp_path / "nothing"), None)
    writer.remove("first fails", tmp_path / "dir", None)  # os.PathLike taken
    writer.remove("second fails", str(tmp_path / "nothing"), str(tmp_path / "dir"))
    got: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + 10
    while len(got) < 4 and time.monotonic() < deadline:
        select.select([writer.fileno()], [], [], 1)
        got += writer.completed()
    assert got == [("both", 0, 0), ("missing", 0, 0), ("first fails", 5, 21),
                   ("second fails", 6, 21)]  # one thread: in the order asked for
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]
    with pytest.raises(TypeError, match="remove takes 3 arguments"):
        writer.remove("x", str(tmp_path / "a"))
    with pytest.raises(TypeError, match="expected str, bytes or os.PathLike object, not int"):
        writer.remove("x", 7, None)
    writer.close()
    with pytest.raises(RuntimeError, match="the spool writer is closed"):
        writer.remove("x", str(tmp_path / "a"), None)
    shutil.rmtree(tmp_path / "dir")
