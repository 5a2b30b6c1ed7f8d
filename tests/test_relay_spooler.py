"""The spool writer: messages stored durably from its threads, errors to their waiters."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from mta_logging.relay.spool import Envelope, Spool
from mta_logging.relay.spooler import SpoolWriter

ENVELOPE = Envelope("sender@example.test", ("a@one.test",), time.time())


async def test_messages_stored_at_once_are_each_in_the_spool_when_their_waiter_wakes(tmp_path):
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=4)
    seen: list[tuple[str, bool]] = []

    def then(queue_id: str, envelope: Envelope, content: bytes) -> None:
        seen.append((queue_id, (spool.queue_dir / queue_id).exists()))

    try:
        ids = [f"Q{n:03d}" for n in range(40)]
        await asyncio.gather(*(writer.store(queue_id, ENVELOPE, b"m " + queue_id.encode(), then)
                               for queue_id in ids))
        assert [spool.read_content(queue_id) for queue_id in ids] == [
            b"m " + queue_id.encode() for queue_id in ids]
        assert sorted(seen) == [(queue_id, True) for queue_id in ids]
    finally:
        writer.close()


async def test_a_store_that_fails_raises_to_its_waiter_and_the_others_are_stored(tmp_path):
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=2)
    try:
        await writer.store("TAKEN", ENVELOPE, b"first")
        results = await asyncio.gather(writer.store("TAKEN", ENVELOPE, b"second"),
                                       writer.store("OTHER", ENVELOPE, b"other"),
                                       return_exceptions=True)
        assert isinstance(results[0], FileExistsError) and results[1] is None
        assert spool.read_content("TAKEN") == b"first"
        assert spool.read_content("OTHER") == b"other"
        shutil.rmtree(spool.queue_dir)
        with pytest.raises(FileNotFoundError):
            await writer.store("GONE", ENVELOPE, b"x")
    finally:
        writer.close()


async def test_an_error_of_then_goes_to_the_waiter_with_the_message_stored(tmp_path):
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


async def test_close_stops_the_threads_and_a_store_after_it_is_refused(tmp_path):
    spool = Spool.open(tmp_path)
    writer = SpoolWriter(spool, threads=3)
    await writer.store("Q1", ENVELOPE, b"x")
    threads = list(writer._threads)
    writer.close()
    assert len(threads) == 3 and not any(thread.is_alive() for thread in threads)
    with pytest.raises(RuntimeError):
        writer.store("Q2", ENVELOPE, b"y")
    assert not (spool.queue_dir / "Q2").exists()
