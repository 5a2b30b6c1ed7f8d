"""Inbound SMTP, with the relay running in the test's event loop and aiosmtplib as the client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest
from relay_sink import FakeResolver, Outcomes, Sink

from mta_logging.errors import MtaLoggingError
from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Kind
from mta_logging.relay.config import load_settings
from mta_logging.relay.inbound import address_problem, recipient_problem
from mta_logging.relay.message import hop_count
from mta_logging.relay.server import Relay

MESSAGE = b"Subject: inbound\r\n\r\nHello.\r\n"


@contextlib.asynccontextmanager
async def running_relay(tmp_path: Any, sink_port: int, **overrides: Any
                        ) -> AsyncIterator[tuple[Relay, Outcomes]]:
    logger = logging.getLogger(f"test.relay.inbound.{id(tmp_path)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    records = Outcomes()
    logger.addHandler(records)
    settings = load_settings({
        "listen": "127.0.0.1:0", "hostname": "relay.example.test",
        "spool_dir": str(tmp_path / "spool"), "routes": {"*": f"127.0.0.1:{sink_port}"},
        "timeouts": {"connect": 5, "command": 5, "data": 5}, "shutdown_timeout": 5,
        **overrides})
    relay = Relay(settings, accounting=AccountingLogger(logger), resolver=FakeResolver({}, {}))
    await relay.start()
    try:
        yield relay, records
    finally:
        await relay.stop()
        logger.removeHandler(records)


async def until(condition: Any, timeout: float = 10) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def client(relay: Relay) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.address[1], timeout=10,
                           local_hostname="client.test", start_tls=False)
    await smtp.connect()
    await smtp.ehlo()
    return smtp


async def test_the_reply_names_the_queue_id_and_the_null_sender_is_relayed(tmp_path):
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port) as (relay, records):
            smtp = await client(relay)
            await smtp.execute_command(b"MAIL", b"FROM:<>")
            await smtp.rcpt("bounce-target@x.test")
            reply = await smtp.data(MESSAGE)
            await smtp.quit()
            await until(lambda: records.outcomes)
        [received] = sink.messages
    queue_id = re.fullmatch(r"2\.0\.0 Ok: queued as ([0-9A-F]{16})", reply.message)
    assert queue_id, reply
    assert records.outcomes[0].job_id == queue_id.group(1)
    assert received.mail_from == "<>"
    assert received.content.startswith(b"Received: from client.test ([127.0.0.1])\r\n")
    assert hop_count(received.content) == 1
    assert received.content.endswith(MESSAGE)


async def test_a_looping_message_is_refused(tmp_path):
    looping = b"Received: from a by b\r\n" * 100 + MESSAGE
    async with running_relay(tmp_path, 9) as (relay, _):
        smtp = await client(relay)
        await smtp.mail("a@example.test")
        await smtp.rcpt("b@x.test")
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await smtp.data(looping)
        await smtp.quit()
    assert caught.value.code == 554
    assert relay.spool_ids() == []


async def test_too_many_recipients(tmp_path):
    async with running_relay(tmp_path, 9, max_recipients=2) as (relay, _):
        smtp = await client(relay)
        await smtp.mail("a@example.test")
        await smtp.rcpt("one@x.test")
        await smtp.rcpt("two@x.test")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as caught:
            await smtp.rcpt("three@x.test")
        await smtp.quit()
    assert caught.value.code == 452


async def test_while_draining_new_mail_is_told_to_come_back(tmp_path):
    async with running_relay(tmp_path, 9) as (relay, _):
        smtp = await client(relay)
        relay.handler.draining = True
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await smtp.mail("a@example.test")
        smtp.close()
    assert caught.value.code == 421


async def test_mail_is_accepted_while_the_destination_is_down(tmp_path):
    with Sink() as sink:
        sink.tempfail_all = True
        async with running_relay(tmp_path, sink.port,
                                 retry={"intervals": [0.2]}) as (relay, records):
            smtp = await client(relay)
            await smtp.sendmail("a@example.test", ["b@x.test"], MESSAGE)
            await smtp.quit()
            await until(lambda: records.outcomes)
            sink.tempfail_all = False
            await until(lambda: sink.delivered() == ["b@x.test"])
            await until(lambda: len(records.outcomes) == 2)
    assert [o.kind for o in records.outcomes] == [Kind.DEFERRED, Kind.DELIVERED]
    assert records.outcomes[0].delay == 0.2


async def test_a_busy_port_is_a_clear_error(tmp_path):
    async with running_relay(tmp_path, 9) as (relay, _):
        taken = relay.address[1]
        second = Relay(load_settings({"listen": f"127.0.0.1:{taken}",
                                      "spool_dir": str(tmp_path / "spool2")}), accounting=None)
        with pytest.raises(MtaLoggingError, match=f"cannot listen on 127.0.0.1:{taken}"):
            await second.start()


@pytest.mark.parametrize(("address", "smtputf8", "reply"), [
    ("a@b.test", False, None),
    ("josé@b.test", True, None),
    ("josé@b.test", False, "553 5.6.7 Error: non-ASCII address requires the SMTPUTF8 parameter"),
    ("\udcff@b.test", True, "553 5.6.7 Error: address is not valid UTF-8"),
])
def test_address_checks(address, smtputf8, reply):
    assert address_problem(address, smtputf8) == reply


@pytest.mark.parametrize("address", ["nodomain", "@b.test", "a@", "a@.b", "a@b..c"])
def test_recipients_need_a_domain(address):
    assert recipient_problem(address, False).startswith("501 5.1.3")  # type: ignore[union-attr]
