"""The delivery queue: retries with backoff, expiry, records, and no second delivery."""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from relay_sink import FakeResolver, Outcomes, Sink, full_disk_once

import mta_logging
from mta_logging.fields import FIELD_NAMES, diagnostic_of
from mta_logging.handlers import AccountingFileHandler
from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Kind
from mta_logging.relay import spool as spool_module
from mta_logging.relay.config import load_settings
from mta_logging.relay.dsn_params import MailDsn, RcptDsn
from mta_logging.relay.message import MessageHeaders
from mta_logging.relay.outbound import Deliverer, RcptResult
from mta_logging.relay.queue import DeliveryQueue
from mta_logging.relay.spool import Envelope, QueuedMessage, Spool

CONTENT = b"Subject: hello\r\nX-Campaign: spring\r\n\r\nbody\r\n"
_names = itertools.count()


def accounting() -> tuple[AccountingLogger, Outcomes]:
    logger = logging.getLogger(f"test.relay.queue.{next(_names)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = Outcomes()
    logger.addHandler(handler)
    return AccountingLogger(logger), handler


def file_accounting(tmp_path: Path, *kinds: str) -> tuple[AccountingLogger,
                                                          list[AccountingFileHandler]]:
    """A logger writing the records of ``kinds`` to real files under ``tmp_path`` (received
    ones too: the logger lets records below INFO through); close the handlers after."""
    logger = logging.getLogger(f"test.relay.queue.{next(_names)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handlers = [AccountingFileHandler(kind, tmp_path / kind) for kind in kinds]
    for handler in handlers:
        logger.addHandler(handler)
    return AccountingLogger(logger), handlers


async def tried_once(spool: Spool, deliverer: ScriptedDeliverer, logger: AccountingLogger,
                     *rcpts: str, interval: float = 30, received: bool = False
                     ) -> tuple[DeliveryQueue, QueuedMessage, Any]:
    """A started queue, its message Q1 to ``rcpts`` after its first try (the next one
    ``interval`` seconds away), and the queue's settings; ``received``: the message comes
    with its first recipient's received record still to write (as the 250 leaves it when the
    record could not be written)."""
    relay_settings = settings(retry={"intervals": [interval], "max_queue_lifetime": 600})
    queue = DeliveryQueue(relay_settings, spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    message = queued(spool, *rcpts)
    if received:
        message.received_unwritten = [AccountingLogger.outcome("received", rcpts[0],
                                                               job_id="Q1")]
    queue.submit(message)
    await until(lambda: message.failures == 1 and "Q1" not in queue.attempting)
    return queue, message, relay_settings


class ScriptedDeliverer:
    """Answers per recipient from a script: a list of (kind, status) per attempt, by address."""

    def __init__(self, script: dict[str, list[tuple[Kind, str]]]) -> None:
        self.script = script
        self.asked: list[str] = []

    async def deliver(self, domain: str, envelope: Envelope, indexes: Sequence[int],
                      content: bytes) -> list[RcptResult]:
        results = []
        for index in indexes:
            rcpt = envelope.rcpts[index]
            self.asked.append(rcpt)
            answers = self.script[rcpt]
            kind, status = answers.pop(0) if len(answers) > 1 else answers[0]
            code = {"2": 250, "4": 451, "5": 550}[status[0]]
            results.append(RcptResult(index, kind, status, f"{code} {status} scripted",
                                      dest_ip="192.0.2.1", src_ip="192.0.2.2"))
        return results

    async def close(self) -> None:
        pass


def settings(**overrides: object):  # type: ignore[no-untyped-def]
    """The queue's settings; notifications to senders off (tests/test_relay_dsn.py)."""
    return load_settings({"hostname": "relay.example.test", "vmta": "pool1", "concurrency": 2,
                          "retry": {"intervals": [0.05, 0.1], "max_queue_lifetime": 60},
                          "dsn": {"enabled": False}, **overrides})


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def queued(spool: Spool, *rcpts: str, queue_id: str = "Q1", age: float = 0.0
           ) -> QueuedMessage:
    """A message from sender@example.test to ``rcpts`` in ``spool``, queued ``age`` seconds
    ago."""
    envelope = Envelope("sender@example.test", rcpts, round(time.time() - age, 3))
    spool.store(queue_id, envelope, CONTENT)
    return QueuedMessage(queue_id, envelope, content=CONTENT)


async def test_every_recipient_gets_its_record_and_retries_skip_finished_ones(tmp_path):
    spool = Spool.open(tmp_path)
    logger, records = accounting()
    deliverer = ScriptedDeliverer({
        "a@one.test": [(Kind.DELIVERED, "2.0.0")],
        "b@two.test": [(Kind.DEFERRED, "4.2.0"), (Kind.DELIVERED, "2.0.0")],
        "c@one.test": [(Kind.BOUNCE, "5.1.1")],
    })
    queue = DeliveryQueue(settings(), spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    message = queued(spool, "a@one.test", "b@two.test", "c@one.test")
    queue.submit(message)
    await until(lambda: len(records.outcomes) == 4)
    await queue.stop(5)
    assert [(o.kind, o.rcpt) for o in records.outcomes] == [
        (Kind.DELIVERED, "a@one.test"), (Kind.BOUNCE, "c@one.test"),
        (Kind.DEFERRED, "b@two.test"), (Kind.DELIVERED, "b@two.test")]
    assert deliverer.asked == ["a@one.test", "c@one.test", "b@two.test", "b@two.test"]
    first = records.outcomes[0]
    assert (first.job_id, first.src_mta, first.vmta) == ("Q1", "relay.example.test", "pool1")
    assert first.time_queued == message.envelope.time_queued  # spool time
    assert (first.dest_ip, first.src_ip, first.dsn_status, first.dsn_msg) == (
        "192.0.2.1", "192.0.2.2", "2.0.0", "250 2.0.0 scripted")
    assert (first.orig, first.size) == ("sender@example.test", len(CONTENT))
    assert first.header("x-campaign") == "spring"
    assert records.outcomes[1].bounce_cat  # filled in by the classifier
    assert records.outcomes[2].delay == 0.05
    assert list(spool.queue_dir.iterdir()) == [] and list(spool.state_dir.iterdir()) == []


async def test_backoff_then_expiry(tmp_path):
    spool = Spool.open(tmp_path)
    logger, records = accounting()
    deliverer = ScriptedDeliverer({"x@down.test": [(Kind.DEFERRED, "4.4.1")]})
    queue = DeliveryQueue(settings(retry={"intervals": [0.05, 0.1], "max_queue_lifetime": 0.6}),
                          spool, deliverer, logger)  # type: ignore[arg-type]
    message = queued(spool, "x@down.test")
    queue.start()
    queue.submit(message)
    await until(lambda: any(o.kind is Kind.BOUNCE for o in records.outcomes))
    await queue.stop(5)
    *deferred, expired = records.outcomes
    assert [o.delay for o in deferred[:3]] == [0.05, 0.1, 0.1]
    assert {o.kind for o in deferred} == {Kind.DEFERRED}
    assert (expired.bounce_cat, expired.dsn_status) == ("message-expired", "5.4.7")
    assert expired.dsn_diag == "smtp; 451 4.4.1 scripted"
    assert expired.dsn_msg.startswith("message expired after ")
    assert expired.dsn_msg.endswith("last error: 451 4.4.1 scripted")
    assert list(spool.queue_dir.iterdir()) == []


async def test_after_a_restart_only_unfinished_recipients_are_tried(tmp_path):
    spool = Spool.open(tmp_path)
    logger, records = accounting()
    first = ScriptedDeliverer({"a@x.test": [(Kind.DELIVERED, "2.0.0")],
                               "b@x.test": [(Kind.DEFERRED, "4.2.0")]})
    queue = DeliveryQueue(settings(retry={"intervals": [3600]}), spool, first,
                          logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "a@x.test", "b@x.test"))
    await until(lambda: len(records.outcomes) == 2)
    await queue.stop(5)

    [reloaded] = Spool.open(tmp_path).load()
    assert reloaded.pending() == [1] and reloaded.failures == 1
    second = ScriptedDeliverer({"b@x.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(), spool, second, logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(reloaded)  # as Relay.start does for mail that is due
    await until(lambda: len(records.outcomes) == 3)
    await queue.stop(5)
    assert second.asked == ["b@x.test"]
    assert records.outcomes[-1].kind is Kind.DELIVERED


async def test_an_unexpected_error_keeps_the_message_queued_and_is_logged_once(
        tmp_path, caplog):
    spool = Spool.open(tmp_path)
    logger, records = accounting()

    class Broken(ScriptedDeliverer):
        async def deliver(self, *args: object) -> list[RcptResult]:  # type: ignore[override]
            self.asked.append("boom")
            raise RuntimeError("bug")

    broken = Broken({})
    queue = DeliveryQueue(settings(), spool, broken, logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "a@x.test"))
    await until(lambda: len(broken.asked) >= 3)  # tried again after each interval
    await queue.stop(5)
    assert records.outcomes == []
    assert [m.queue_id for m in spool.load()] == ["Q1"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "queue Q1: delivery attempt failed: RuntimeError('bug'); will try again (further "
        "failures of this kind are counted, not logged, until one succeeds)"]
    assert errors[0].exc_info is not None  # the traceback, once


async def test_accounting_off_still_delivers(tmp_path):
    spool = Spool.open(tmp_path)
    deliverer = ScriptedDeliverer({"a@x.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer, None)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "a@x.test"))
    await until(lambda: not list(spool.queue_dir.iterdir()))
    await queue.stop(5)
    assert deliverer.asked == ["a@x.test"]


class Snapshots(Outcomes):
    """Outcomes, and what the spool held about the message when each record was written."""

    def __init__(self, spool: Spool) -> None:
        super().__init__()
        self.spool = spool
        self.seen: list[tuple[str, bool, str]] = []  # (rcpt, queue file there, journal)

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        outcome = record.outcome  # type: ignore[attr-defined]
        journal = self.spool.state_dir / outcome.job_id
        self.seen.append((outcome.rcpt, (self.spool.queue_dir / outcome.job_id).exists(),
                          journal.read_text() if journal.exists() else ""))


async def test_a_recipient_is_recorded_before_it_is_journaled_or_its_message_removed(tmp_path):
    spool = Spool.open(tmp_path)
    logger, _ = accounting()
    snapshots = Snapshots(spool)
    logger.logger.addHandler(snapshots)
    deliverer = ScriptedDeliverer({"a@one.test": [(Kind.DELIVERED, "2.0.0")],
                                   "b@two.test": [(Kind.BOUNCE, "5.1.1")]})
    queue = DeliveryQueue(settings(), spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "a@one.test", "b@two.test"))
    await until(lambda: not list(spool.queue_dir.iterdir()))
    await queue.stop(5)
    # a's record came before its "d 0"; b's (the last) before the message was removed
    assert snapshots.seen == [("a@one.test", True, ""), ("b@two.test", True, "d 0\n")]


async def test_removals_at_the_same_time_each_meet_their_own_error(tmp_path, monkeypatch, caplog):
    spool = Spool.open(tmp_path)
    logger, records = accounting()
    real_remove = spool.remove
    failed: list[str] = []

    def remove(queue_id: str, journaled: bool = True) -> None:
        if queue_id == "Q3" and not failed:
            failed.append(queue_id)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_remove(queue_id, journaled)

    monkeypatch.setattr(spool, "remove", remove)
    rcpts = [f"r{n}@x{n}.test" for n in range(6)]
    deliverer = ScriptedDeliverer({rcpt: [(Kind.DELIVERED, "2.0.0")] for rcpt in rcpts})
    queue = DeliveryQueue(settings(concurrency=6), spool, deliverer,
                          logger)  # type: ignore[arg-type]
    queue.start()
    for n, rcpt in enumerate(rcpts):
        queue.submit(queued(spool, rcpt, queue_id=f"Q{n}"))
    await until(lambda: not queue.messages)
    await queue.stop(5)
    assert failed == ["Q3"]
    assert ("queue file removal failed: queue Q3: [Errno 5] Input/output error; its recipients"
            " are journaled as final instead, and the file is removed at the next start"
            ) in caplog.text
    # the message that could not be removed was delivered and recorded once, journaled final
    assert sorted(deliverer.asked) == sorted(rcpts)
    assert sorted(o.rcpt for o in records.outcomes) == sorted(rcpts)
    assert [p.name for p in spool.queue_dir.iterdir()] == ["Q3"]
    assert [(p.name, p.read_text()) for p in spool.state_dir.iterdir()] == [("Q3", "d 0\n")]
    # the next start takes it for the finished message it is
    assert Spool.open(tmp_path).load() == []
    assert not list(spool.queue_dir.iterdir()) and not list(spool.state_dir.iterdir())


async def test_a_removal_failing_while_stop_cancels_its_worker_still_leaves_it_final(
        tmp_path, caplog):
    """The journal written instead of a failed removal is written in the removal's own trip
    to the thread: a worker cancelled at stop while it waits does not leave it undone."""
    import threading

    spool = Spool.open(tmp_path)
    logger, records = accounting()
    begun, may_go = threading.Event(), threading.Event()

    def remove(queue_id: str, journaled: bool = True) -> None:
        begun.set()
        may_go.wait(10)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    spool.remove = remove  # type: ignore[method-assign]
    deliverer = ScriptedDeliverer({"a@one.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "a@one.test", queue_id="Q0"))
    await until(begun.is_set)
    asyncio.get_running_loop().call_later(0.2, may_go.set)
    await queue.stop(0)  # the worker waits for its removal: cancelled
    assert [o.rcpt for o in records.outcomes] == ["a@one.test"]
    assert [(p.name, p.read_text()) for p in spool.state_dir.iterdir()] == [("Q0", "d 0\n")]
    assert "queue file removal failed: queue Q0: [Errno 5] Input/output error" in caplog.text
    assert Spool.open(tmp_path).load() == []  # the next start does not send it again


async def test_a_removal_and_its_journal_both_failing_keep_the_recipient_queued(
        tmp_path, caplog):
    spool = Spool.open(tmp_path)
    logger, records = accounting()
    real_remove, real_journal = spool.remove, spool.journal
    failing = [True]

    def remove(queue_id: str, journaled: bool = True) -> None:
        if failing[0]:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_remove(queue_id, journaled)

    def journal(queue_id: str, entries: Sequence[str], **options: bool) -> None:
        if failing[0] and any(entry.startswith("d ") for entry in entries):
            failing[0] = False  # the disk works again from here on
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_journal(queue_id, entries, **options)

    spool.remove = remove  # type: ignore[method-assign]
    spool.journal = journal  # type: ignore[method-assign]
    deliverer = ScriptedDeliverer({"a@one.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "a@one.test", queue_id="Q0"))
    await until(lambda: not queue.messages)
    await queue.stop(5)
    # neither made it final: sent (and recorded) again, then removed
    assert deliverer.asked == ["a@one.test", "a@one.test"]
    assert [o.rcpt for o in records.outcomes] == ["a@one.test", "a@one.test"]
    assert not list(spool.queue_dir.iterdir()) and not list(spool.state_dir.iterdir())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "queue file removal failed: queue Q0: [Errno 5] Input/output error; its recipients"
        " stay queued (their final states could not be journaled either) (further failures of"
        " this kind are counted, not logged, until one succeeds)",
        "journal write failed: queue Q0: [Errno 5] Input/output error (further failures of"
        " this kind are counted, not logged, until one succeeds)",
        "journal write works again after 1 failure(s)",
        "queue file removal works again after 1 failure(s)"]


async def test_stop_finishes_the_removals_asked_for_even_of_workers_it_cancels(tmp_path):
    """A delivered, recorded message whose removal waits behind another's (batched) when stop
    cancels its worker is still removed before stop returns: else the next start would
    deliver it again (the relay shuts its spool's thread down right after stop, and a batch
    not begun by then never is)."""
    import threading

    spool = Spool.open(tmp_path)
    logger, records = accounting()
    real_remove = spool.remove
    first_begun, first_may_go = threading.Event(), threading.Event()

    def remove(queue_id: str, journaled: bool = True) -> None:
        if queue_id == "Q0":
            first_begun.set()
            first_may_go.wait(10)
        real_remove(queue_id, journaled)

    spool.remove = remove  # type: ignore[method-assign]
    deliverer = ScriptedDeliverer({"a@one.test": [(Kind.DELIVERED, "2.0.0")],
                                   "b@two.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "a@one.test", queue_id="Q0"))
    await until(first_begun.is_set)
    queue.submit(queued(spool, "b@two.test", queue_id="Q1"))  # its removal waits for Q0's
    await until(lambda: len(records.outcomes) == 2)
    asyncio.get_running_loop().call_later(0.2, first_may_go.set)
    await queue.stop(0)  # both workers are waiting for their removal: cancelled
    assert list(spool.queue_dir.iterdir()) == []
    assert [o.rcpt for o in records.outcomes] == ["a@one.test", "b@two.test"]


def file_records(directory: Path) -> list[str]:
    return [line for path in sorted(directory.glob("*.tsv"))
            for line in path.read_text().splitlines()[1:]]


async def test_a_record_that_cannot_be_written_keeps_its_recipient_queued(
        tmp_path, monkeypatch, caplog):
    spool = Spool.open(tmp_path / "spool")
    logger, [handler] = file_accounting(tmp_path, "delivered")
    failed = full_disk_once(monkeypatch, b"once@x.test")
    deliverer = ScriptedDeliverer({"once@x.test": [(Kind.DELIVERED, "2.0.0")],
                                   "other@x.test": [(Kind.DEFERRED, "4.2.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer,
                          logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "once@x.test", "other@x.test"))
    await until(lambda: "d 0\n" in (spool.state_dir / "Q1").read_text()
                if (spool.state_dir / "Q1").exists() else False)
    await queue.stop(5)
    handler.close()
    assert failed  # the first record of once@x.test met a full disk
    assert deliverer.asked.count("once@x.test") == 1  # not delivered again: only recorded
    [record] = file_records(tmp_path / "delivered")  # at the next try: one record
    assert "\tonce@x.test\t" in record
    assert ("queue Q1: the delivered record of <once@x.test> could not be written; the "
            "recipient stays queued, and its record is written again at its next try (it is"
            " not sent again, unless the relay restarts first)") in caplog.text


async def test_a_record_failing_at_every_retry_is_logged_once_until_it_is_written(
        tmp_path, monkeypatch, caplog):
    spool = Spool.open(tmp_path / "spool")
    logger, [handler] = file_accounting(tmp_path, "delivered")
    failed = full_disk_once(monkeypatch, b"thrice@x.test", times=3)
    deliverer = ScriptedDeliverer({"thrice@x.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer,
                          logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "thrice@x.test"))
    await until(lambda: not queue.messages)
    await queue.stop(5)
    handler.close()
    assert len(failed) == 3
    assert deliverer.asked == ["thrice@x.test"]  # delivered once, recorded at the 4th try
    [record] = file_records(tmp_path / "delivered")
    assert "\tthrice@x.test\t" in record
    lines = [r.getMessage() for r in caplog.records if "record write" in r.getMessage()]
    assert lines == [
        "delivered record write failed: queue Q1: the delivered record of <thrice@x.test> could"
        " not be written; the recipient stays queued, and its record is written again at its"
        " next try (it is not sent again, unless the relay restarts first) (further failures"
        " of this kind are counted, not logged, until one succeeds)",
        "delivered record write works again after 3 failure(s)"]
    assert not list(spool.queue_dir.iterdir())
    assert handler.records_not_written == 3


async def test_the_bounce_record_of_an_expired_recipient_that_fails_is_named_a_bounce(
        tmp_path, monkeypatch, caplog):
    spool = Spool.open(tmp_path / "spool")
    logger, [handler] = file_accounting(tmp_path, "bounce")
    failed = full_disk_once(monkeypatch, b"old@x.test")
    deliverer = ScriptedDeliverer({"old@x.test": [(Kind.DEFERRED, "4.2.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer,
                          logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "old@x.test", age=120))  # past max_queue_lifetime (60 s)
    await until(lambda: not queue.messages)
    await queue.stop(5)
    handler.close()
    assert len(failed) == 1
    assert [r.getMessage() for r in caplog.records if "record write" in r.getMessage()] == [
        "bounce record write failed: queue Q1: the bounce record of <old@x.test> could not be"
        " written; the recipient stays queued, and its record is written again at its next try"
        " (it is not sent again, unless the relay restarts first) (further failures of this"
        " kind are counted, not logged, until one succeeds)",
        "bounce record write works again after 1 failure(s)"]


@pytest.mark.parametrize("failures", [1, 2])
async def test_a_received_record_not_written_at_the_250_is_written_again_by_the_queue(
        tmp_path, monkeypatch, caplog, failures):
    """The Outcome of a received record that failed at the 250 comes with the message; the
    queue writes it at its attempts, the last time just before the message is done."""
    spool = Spool.open(tmp_path / "spool")
    logger, handlers = file_accounting(tmp_path, "received", "delivered")
    failed = full_disk_once(monkeypatch, b"r\t", times=failures)
    deliverer = ScriptedDeliverer({"late@x.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer,
                          logger)  # type: ignore[arg-type]
    message = queued(spool, "late@x.test")
    message.received_unwritten = [AccountingLogger.outcome("received", "late@x.test",
                                                           job_id="Q1")]
    queue.start()
    queue.submit(message)
    await until(lambda: not queue.messages)
    await queue.stop(5)
    for handler in handlers:
        handler.close()
    assert len(failed) == failures
    assert deliverer.asked == ["late@x.test"]
    assert len(file_records(tmp_path / "delivered")) == 1
    lost = [r.getMessage() for r in caplog.records if "received record" in r.getMessage()]
    if failures == 1:  # the attempt's try failed, the last one before the end did not
        assert [line.split("\t")[3] for line in file_records(tmp_path / "received")] == [
            "late@x.test"]
        assert lost == []
    else:
        assert file_records(tmp_path / "received") == []
        assert lost == ["queue Q1: 1 received record(s) could not be written before the"
                        " message was done; they are lost"]


async def test_every_message_that_loses_a_received_record_says_so(
        tmp_path, monkeypatch, caplog):
    spool = Spool.open(tmp_path / "spool")
    logger, handlers = file_accounting(tmp_path, "received", "delivered")
    full_disk_once(monkeypatch, b"r\t", times=1000)
    deliverer = ScriptedDeliverer({"a@x.test": [(Kind.DELIVERED, "2.0.0")],
                                   "b@x.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    for queue_id, rcpt in (("Q1", "a@x.test"), ("Q2", "b@x.test")):
        message = queued(spool, rcpt, queue_id=queue_id)
        message.received_unwritten = [AccountingLogger.outcome("received", rcpt,
                                                               job_id=queue_id)]
        queue.submit(message)
        await until(lambda: not queue.messages)
    await queue.stop(5)
    for handler in handlers:
        handler.close()
    assert [r.getMessage() for r in caplog.records if "lost" in r.getMessage()] == [
        f"queue {queue_id}: 1 received record(s) could not be written before the message was"
        " done; they are lost" for queue_id in ("Q1", "Q2")]


async def test_an_expired_message_waiting_for_a_record_waits_the_retry_interval(
        tmp_path, monkeypatch):
    spool = Spool.open(tmp_path / "spool")
    logger, handlers = file_accounting(tmp_path, "delivered")
    full_disk_once(monkeypatch, b"spin@x.test", times=10**6)
    deliverer = ScriptedDeliverer({"spin@x.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(retry={"intervals": [5], "max_queue_lifetime": 1}), spool,
                          deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    message = queued(spool, "spin@x.test", age=0.5)
    queue.submit(message)
    await asyncio.sleep(1.5)  # past its lifetime, the record still failing
    await queue.stop(5)
    for handler in handlers:
        handler.close()
    assert deliverer.asked == ["spin@x.test"]
    assert message.failures <= 2  # not tried again at once, over and over


async def test_a_record_written_again_after_a_failed_fsync_keeps_its_event_id(
        tmp_path, monkeypatch):
    """With ``fsync: always`` a failed fsync reports a record whose bytes are in the file:
    written again, both lines carry the same eventId (for a reader to count it once)."""
    spool = Spool.open(tmp_path / "spool")
    logger = logging.getLogger(f"test.relay.queue.{next(_names)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = AccountingFileHandler("delivered", tmp_path / "delivered", fsync="always")
    handler.setFormatter(mta_logging.AccountingFormatter("rcpt,eventId"))
    logger.addHandler(handler)
    real_write, real_fsync = os.write, os.fsync
    written: list[bytes] = []
    failed: list[int] = []

    def write(fd: int, data: bytes) -> int:
        written.append(bytes(data))
        return real_write(fd, data)

    def fsync_failing_once(fd: int) -> None:  # the one after the record's bytes went out
        if not failed and written and written[-1].startswith(b"one@x.test\t"):
            failed.append(fd)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync_failing_once)
    deliverer = ScriptedDeliverer({"one@x.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer,
                          AccountingLogger(logger))  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "one@x.test"))
    await until(lambda: not queue.messages)
    await queue.stop(5)
    handler.close()
    assert failed
    assert deliverer.asked == ["one@x.test"]
    records = file_records(tmp_path / "delivered")
    assert len(records) == 2
    assert len({record.split("\t")[1] for record in records}) == 1  # one eventId


async def test_queue_bounce_writes_the_kept_record_of_a_delivered_recipient(
        tmp_path, monkeypatch):
    """``mta-logging queue bounce`` of a message with a delivered recipient whose record
    waits: that recipient gets its delivered record, the other one the operator's bounce."""
    from mta_logging.relay.control import LiveQueue

    spool = Spool.open(tmp_path / "spool")
    logger, handlers = file_accounting(tmp_path, "delivered", "bounce")
    failed = full_disk_once(monkeypatch, b"once@x.test")
    deliverer = ScriptedDeliverer({"once@x.test": [(Kind.DELIVERED, "2.0.0")],
                                   "other@x.test": [(Kind.DEFERRED, "4.2.0")]})
    queue, message, relay_settings = await tried_once(spool, deliverer, logger, "once@x.test",
                                                      "other@x.test")
    assert failed and list(message.unrecorded) == [0]
    live = LiveQueue(relay_settings, spool, queue, None)
    shown = await live.show("Q1")  # what ``mta-logging queue show`` prints
    assert shown["all_recipients"] == [
        {"address": "once@x.test", "state": "delivered, record to write"},
        {"address": "other@x.test", "state": "pending"}]
    assert await live.act("bounce", "Q1")
    await queue.stop(5)
    for handler in handlers:
        handler.close()
    assert [r.split("\t")[3] for r in file_records(tmp_path / "delivered")] == ["once@x.test"]
    assert [r.split("\t")[3] for r in file_records(tmp_path / "bounce")] == ["other@x.test"]
    assert deliverer.asked == ["once@x.test", "other@x.test"]
    assert not list(spool.queue_dir.iterdir())


async def test_a_queue_bounce_failing_part_way_keeps_what_it_recorded_and_what_waits(
        tmp_path, monkeypatch):
    """The operator's bounce writes other's bounce record, then meets the full disk at once's
    kept delivered record: other is journaled final (never delivered, nor bounced again), the
    received record still waits, and both are written once the disk has room."""
    from mta_logging.relay.control import LiveQueue

    spool = Spool.open(tmp_path / "spool")
    logger, handlers = file_accounting(tmp_path, "received", "delivered", "bounce")
    real_write = os.write
    failures = {b"once@x.test": 2, b"r\t": 2}  # the first two writes of each fail

    def full_for_some(fd: int, data: bytes) -> int:
        for needle, left in failures.items():
            if needle in data and bytes(data)[:2] in (b"d\t", b"r\t") and left:
                failures[needle] = left - 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_for_some)
    deliverer = ScriptedDeliverer({"other@x.test": [(Kind.DEFERRED, "4.2.0")],
                                   "once@x.test": [(Kind.DELIVERED, "2.0.0")]})
    queue, message, relay_settings = await tried_once(
        spool, deliverer, logger, "other@x.test", "once@x.test", interval=0.3, received=True)
    with pytest.raises(mta_logging.MtaLoggingError) as refused:
        await LiveQueue(relay_settings, spool, queue, None).act("bounce", "Q1")
    assert str(refused.value) == (
        "Q1: the delivered record of <once@x.test> could not be written; the message stays"
        " queued (the 1 recipient(s) recorded before it are done)")
    assert (spool.state_dir / "Q1").read_text().endswith("\nb 0\n")  # other is final
    await until(lambda: not queue.messages)
    await queue.stop(5)
    for handler in handlers:
        handler.close()
    assert [r.split("\t")[3] for r in file_records(tmp_path / "bounce")] == ["other@x.test"]
    assert [r.split("\t")[3] for r in file_records(tmp_path / "delivered")] == ["once@x.test"]
    assert [r.split("\t")[3] for r in file_records(tmp_path / "received")] == ["other@x.test"]
    assert sorted(deliverer.asked) == ["once@x.test", "other@x.test"]  # neither sent again


@pytest.mark.parametrize("failing_at_stop", [False, True])
async def test_stop_writes_the_records_still_waiting_or_says_what_is_left(
        tmp_path, monkeypatch, caplog, failing_at_stop):
    spool = Spool.open(tmp_path / "spool")
    logger, handlers = file_accounting(tmp_path, "received", "delivered")
    real_write = os.write
    failed: list[bytes] = []
    # the d record fails at the try (and at the stop), the r record at its tries (and stop)
    left = {b"d\t": 2 if failing_at_stop else 1, b"r\t": 2 if failing_at_stop else 1}

    def full_for_records(fd: int, data: bytes) -> int:
        kind = bytes(data)[:2]
        if left.get(kind):
            left[kind] -= 1
            failed.append(bytes(data))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_for_records)
    deliverer = ScriptedDeliverer({"once@x.test": [(Kind.DELIVERED, "2.0.0")]})
    queue, message, _ = await tried_once(spool, deliverer, logger, "once@x.test",
                                         received=True)
    await queue.stop(5)  # the next try was 30 s away
    for handler in handlers:
        handler.close()
    assert deliverer.asked == ["once@x.test"]
    errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopping")]
    if not failing_at_stop:
        assert [r.split("\t")[3] for r in file_records(tmp_path / "delivered")] == [
            "once@x.test"]
        assert [r.split("\t")[3] for r in file_records(tmp_path / "received")] == [
            "once@x.test"]
        assert (spool.state_dir / "Q1").read_text().endswith("\nd 0\n")
        assert errors == []
        assert Spool.open(tmp_path / "spool").load() == []  # not delivered again
    else:
        assert len(failed) == 4  # r and d: at the try, at the stop
        assert file_records(tmp_path / "delivered") == []
        assert errors == ["stopping with records that could not be written: 1 recipient(s) are"
                          " delivered and recorded again after the next start, 1 received"
                          " record(s) are lost"]
        assert [m.queue_id for m in Spool.open(tmp_path / "spool").load()] == ["Q1"]


async def test_queue_delete_writes_a_received_record_that_waits(tmp_path, monkeypatch):
    from mta_logging.relay.control import LiveQueue

    spool = Spool.open(tmp_path / "spool")
    logger, handlers = file_accounting(tmp_path, "received", "bounce")
    failed = full_disk_once(monkeypatch, b"r\t")  # the queue's first try of it fails
    deliverer = ScriptedDeliverer({"late@x.test": [(Kind.DEFERRED, "4.2.0")]})
    queue, message, relay_settings = await tried_once(spool, deliverer, logger, "late@x.test",
                                                      received=True)
    assert failed and message.received_unwritten
    assert await LiveQueue(relay_settings, spool, queue, None).act("delete", "Q1")
    await queue.stop(5)
    for handler in handlers:
        handler.close()
    assert [r.split("\t")[3] for r in file_records(tmp_path / "received")] == ["late@x.test"]
    assert [r.split("\t")[3] for r in file_records(tmp_path / "bounce")] == ["late@x.test"]


async def test_a_journal_write_on_a_full_disk_never_marks_done_and_is_reported_once(
        tmp_path, monkeypatch, caplog):
    spool = Spool.open(tmp_path)
    logger, records = accounting()
    deliverer = ScriptedDeliverer({"a@one.test": [(Kind.DELIVERED, "2.0.0")],
                                   "b@two.test": [(Kind.DEFERRED, "4.2.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer, logger)  # type: ignore[arg-type]
    message = queued(spool, "a@one.test", "b@two.test")
    real_write_all = spool_module.write_all
    faults = iter(range(3))  # the first three journal writes meet a full disk

    def full_at_first(fd: int, data: bytes) -> None:
        if next(faults, None) is not None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(fd, data)

    monkeypatch.setattr(spool_module, "write_all", full_at_first)
    queue.start()
    queue.submit(message)
    await until(lambda: deliverer.asked.count("b@two.test") >= 5)
    await queue.stop(5)
    delivered = [o.rcpt for o in records.outcomes if o.kind is Kind.DELIVERED]
    # attempt 1: "d 0" and "a 1" fail; attempt 2: "d 0" fails; attempt 3: "d 0" is journaled
    assert deliverer.asked.count("a@one.test") == 3
    assert delivered == ["a@one.test"] * 3  # every delivery has its record
    assert (spool.state_dir / "Q1").read_text().count("d 0\n") == 1
    [reloaded] = Spool.open(tmp_path).load()
    assert reloaded.pending() == [1]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["journal write failed: queue Q1: [Errno 28] No space left on device "
                      "(further failures of this kind are counted, not logged, until one "
                      "succeeds)"]
    assert "journal write works again after 3 failure(s)" in caplog.text


async def test_a_hanging_destination_holds_its_share_of_workers_and_the_rest_flows(tmp_path):
    spool = Spool.open(tmp_path)
    logger, records = accounting()
    with Sink(slow_seconds=30) as sink:
        relay_settings = settings(concurrency=4, max_per_destination=2,
                                  routes={"*": f"127.0.0.1:{sink.port}"},
                                  timeouts={"connect": 5, "command": 5, "data": 20})
        queue = DeliveryQueue(relay_settings, spool, Deliverer(relay_settings, FakeResolver(
            {}, {})), logger)
        queue.start()
        for n in range(6):  # first in line: six messages to a sink that hangs after DATA
            queue.submit(queued(spool, f"slow{n}@tarpit.test", queue_id=f"T{n}"))
        healthy = [f"ok{n}@healthy.test" for n in range(12)]
        for n, rcpt in enumerate(healthy):
            queue.submit(queued(spool, rcpt, queue_id=f"H{n:02}"))
        await until(lambda: len(sink.delivered()) == 12)
        await queue.stop(0)  # the tarpit's transactions are cut off; their mail stays queued
        assert sorted(sink.delivered()) == sorted(healthy)
    assert sorted(o.rcpt for o in records.outcomes) == sorted(healthy)
    assert sorted(m.queue_id for m in spool.load()) == [f"T{n}" for n in range(6)]


# every field a relay record can fill, but the one that differs for each record written
EVERY_FIELD = [name for name in FIELD_NAMES if name != "eventId"] + ["custom_X-Campaign"]
RESULTS = [  # delivered, deferred, bounced, and a deferral past the queue lifetime: expired
    (RcptResult(0, Kind.DELIVERED, "2.0.0", "250 2.0.0 Ok: queued as 4XyZ"), False),
    (RcptResult(1, Kind.DEFERRED, "4.2.0", "451 4.2.0 Mailbox busy, try again later"), False),
    (RcptResult(2, Kind.BOUNCE, "5.1.1", "550 5.1.1 <c@one.test>: User unknown"), False),
    (RcptResult(3, Kind.DEFERRED, "4.4.1", "421 4.4.1 Connection timed out"), True),
]


def every_field_logger(path: Path, name: str, file_format: str) -> AccountingLogger:
    configured = mta_logging.configure(
        path=str(path), logger=name, format=file_format, propagate=False,
        fields={kind: EVERY_FIELD for kind in ("delivered", "deferred", "bounce")})
    return AccountingLogger(configured.logger)


def logged_by_the_methods(logger: AccountingLogger, message: QueuedMessage,
                          result: RcptResult, delay: float, expired: bool, age: float) -> None:
    """The record as the relay wrote it before it made its Outcomes itself: through
    ``delivered``/``deferred``/``bounced``, every value as a keyword."""
    envelope = message.envelope
    fields = {
        "time_queued": envelope.time_queued, "src_mta": "relay.example.test",
        "src_ip": result.src_ip, "dest_ip": result.dest_ip, "vmta": "pool1",
        "job_id": message.queue_id, "dsn_status": result.dsn_status, "dsn_msg": result.dsn_msg,
        "headers": MessageHeaders(CONTENT), "orig": envelope.mail_from, "size": len(CONTENT),
        "dsn_mta": result.dsn_mta, "tls_protocol": result.tls_protocol,
        "tls_cipher": result.tls_cipher, "orcpt": envelope.dsn_of(result.index).orcpt,
        "env_id": envelope.mail_dsn.envid,
    }
    if result.kind is Kind.DELIVERED:
        logger.delivered(envelope.rcpts[result.index], **fields)
    elif result.kind is Kind.BOUNCE:
        logger.bounced(envelope.rcpts[result.index], **fields)
    elif expired:
        fields["dsn_status"] = "5.4.7"
        fields["dsn_msg"] = (f"message expired after {age:.0f} s in the queue; "
                             f"last error: {result.dsn_msg}")
        fields["dsn_diag"] = diagnostic_of(result.dsn_msg)
        logger.bounced(envelope.rcpts[result.index], bounce_cat="message-expired", **fields)
    else:
        logger.deferred(envelope.rcpts[result.index], delay=delay, **fields)


def tree(path: Path) -> dict[str, bytes]:
    return {str(file.relative_to(path)): file.read_bytes()
            for file in sorted(path.rglob("*")) if file.is_file()}


@pytest.mark.parametrize("file_format", ["tsv", "json"])
@pytest.mark.parametrize("connection", ["every detail", "plain, no DSN parameters"])
def test_the_records_are_byte_for_byte_those_of_the_logger_methods(
        tmp_path, monkeypatch, file_format, connection):
    now = 1_800_000_000.25
    monkeypatch.setattr(time, "time", lambda: now)  # timeLogged: the same in both trees
    dsn = connection == "every detail"
    rcpts = ("a@one.test", "b@one.test", "c@one.test", "d@one.test")
    envelope = Envelope(
        "sender@example.test", rcpts, now - 7200.5,
        mail_dsn=MailDsn("HDRS", "env-7") if dsn else MailDsn(),
        rcpt_dsn=tuple(RcptDsn(("FAILURE",), f"rfc822;{r}") for r in rcpts) if dsn else ())
    message = QueuedMessage("Q7", envelope)
    connected = {"dest_ip": "192.0.2.1", "src_ip": "192.0.2.2", "dsn_mta": "mx.one.test"}
    if dsn:
        connected |= {"tls_protocol": "TLSv1.3", "tls_cipher": "TLS_AES_256_GCM_SHA384"}
    settings_used = settings(retry={"intervals": [300], "max_queue_lifetime": 3600})
    names = f"test.relay.queue.bytes.{next(_names)}"
    relay_logger = every_field_logger(tmp_path / "relay", names + ".relay", file_format)
    reference = every_field_logger(tmp_path / "methods", names + ".methods", file_format)
    queue = DeliveryQueue(settings_used, Spool.open(tmp_path / "spool"), None,  # type: ignore[arg-type]
                          relay_logger, clock=lambda: now)
    try:
        for bare, expired in RESULTS:
            result = RcptResult(bare.index, bare.kind, bare.dsn_status, bare.dsn_msg,
                                **connected)  # type: ignore[arg-type]
            assert queue._record(message, result, 300.0, MessageHeaders(CONTENT), expired,
                                 len(CONTENT))
            logged_by_the_methods(reference, message, result, 300.0, expired, 7200.5)
    finally:
        for logger in (relay_logger, reference):
            for handler in list(logger.logger.handlers):
                logger.logger.removeHandler(handler)
                handler.close()
    written = tree(tmp_path / "relay")
    assert sorted(written) == sorted(tree(tmp_path / "methods"))
    assert written == tree(tmp_path / "methods")
    text = b"".join(written.values()).decode()
    assert text.count("message expired after 7200 s in the queue") == 1
    assert ("TLSv1.3" in text, "env-7" in text, "rfc822;a@one.test" in text) == (dsn, dsn, dsn)
