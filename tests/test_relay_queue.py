"""The delivery queue: retries with backoff, expiry, records, and no second delivery."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence

from relay_sink import Outcomes

from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Kind
from mta_logging.relay.config import load_settings
from mta_logging.relay.outbound import RcptResult
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
    return load_settings({"hostname": "relay.example.test", "vmta": "pool1", "concurrency": 2,
                          "retry": {"intervals": [0.05, 0.1], "max_queue_lifetime": 60},
                          **overrides})


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def queued(spool: Spool, *rcpts: str, queue_id: str = "Q1") -> QueuedMessage:
    envelope = Envelope("sender@example.test", rcpts, round(time.time(), 3))
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


async def test_an_unexpected_error_keeps_the_message_queued(tmp_path):
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
    await until(lambda: len(broken.asked) >= 2)  # tried again after the first interval
    await queue.stop(5)
    assert records.outcomes == []
    assert [m.queue_id for m in spool.load()] == ["Q1"]


async def test_accounting_off_still_delivers(tmp_path):
    spool = Spool.open(tmp_path)
    deliverer = ScriptedDeliverer({"a@x.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(settings(), spool, deliverer, None)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "a@x.test"))
    await until(lambda: not list(spool.queue_dir.iterdir()))
    await queue.stop(5)
    assert deliverer.asked == ["a@x.test"]
