"""Inbound SMTP, with the relay running in the test's event loop and aiosmtplib as the client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from relay_sink import FakeResolver, Outcomes, Sink, full_disk_once
from tmpfs import small_tmpfs

from mta_logging.errors import MtaLoggingError
from mta_logging.handlers import AccountingFileHandler
from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Kind
from mta_logging.relay.addresses import address_problem, recipient_problem
from mta_logging.relay.config import load_settings
from mta_logging.relay.message import hop_count
from mta_logging.relay.server import Relay
from mta_logging.relay.spool import Envelope as SpoolEnvelope
from mta_logging.relay.spool import Spool
from mta_logging.relay.storage import FreeSpace

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
    ("a\0b@x.test", False, "553 5.1.7 Error: address contains a control character"),
    ('"a\tb"@x.test', False, "553 5.1.7 Error: address contains a control character"),
    ("a\x7f@x.test", False, "553 5.1.7 Error: address contains a control character"),
    ("l" * 64 + "@x.test", False, None),
    ("l" * 65 + "@x.test", False, "553 5.1.7 Error: local part longer than 64 octets"),
    ("é" * 33 + "@x.test", True, "553 5.1.7 Error: local part longer than 64 octets"),
    ("a@" + "d" * 250, False, None),
    ("a@" + "d" * 253, False, "501 5.1.7 Error: path longer than 256 octets"),
])
def test_address_checks(address, smtputf8, reply):
    assert address_problem(address, smtputf8) == reply


@pytest.mark.parametrize("address", ["nodomain", "@b.test", "a@", "a@.b", "a@b..c"])
def test_recipients_need_a_domain(address):
    assert recipient_problem(address, False).startswith("501 5.1.3")  # type: ignore[union-attr]


def test_a_recipient_with_a_control_character_is_refused_as_a_recipient():
    assert recipient_problem("acceptev\0il@y.test", False) == (
        "553 5.1.3 Error: address contains a control character")


async def talk(relay: Relay, lines: list[bytes]) -> list[bytes]:
    """Send each line raw (what aiosmtplib would refuse to send) and read its reply's last line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.address[1])
    replies = [await reader.readline()]
    for line in lines:
        writer.write(line + b"\r\n")
        reply = await reader.readline()
        while reply[3:4] == b"-":
            reply = await reader.readline()
        replies.append(reply.rstrip())
    writer.close()
    return replies[1:]


async def send_and_hang_up(relay: Relay) -> None:
    """A client that sends a message to b@x.test and closes the connection right after its
    final ".", without reading the reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.address[1])
    await reader.readline()
    writer.write(b"HELO client.test\r\nMAIL FROM:<a@example.test>\r\n"
                 b"RCPT TO:<b@x.test>\r\nDATA\r\n")
    for _ in range(4):
        await reader.readline()
    writer.write(MESSAGE + b".\r\n")
    writer.close()


async def test_a_client_hanging_up_right_after_the_final_dot_still_has_its_mail_sent(
        tmp_path, monkeypatch):
    """The client closes the connection without reading the reply to its "." while the
    message is being fsync'd: the session is cancelled, yet the stored message is queued and
    delivered at once (not left in the spool until a restart)."""
    stored = threading.Event()
    real_store = Spool.store

    def slow_store(self: Spool, *args: Any) -> None:
        stored.wait(10)
        real_store(self, *args)

    monkeypatch.setattr(Spool, "store", slow_store)
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port) as (relay, records):
            hung_up = asyncio.Event()
            handle_data = relay.handler.handle_DATA

            async def watched(*args: Any) -> str:
                try:
                    return await handle_data(*args)
                except asyncio.CancelledError:
                    hung_up.set()
                    raise

            relay.handler.handle_DATA = watched  # type: ignore[method-assign]
            await send_and_hang_up(relay)
            await asyncio.wait_for(hung_up.wait(), 10)
            stored.set()
            await until(lambda: sink.delivered() == ["b@x.test"])
            await until(lambda: len(records.outcomes) == 1)
    assert [(o.kind, o.rcpt) for o in records.outcomes] == [(Kind.DELIVERED, "b@x.test")]
    assert sink.messages[0].content.endswith(MESSAGE)
    assert list((tmp_path / "spool" / "queue").iterdir()) == []


async def test_a_message_still_being_stored_at_the_shutdown_deadline_stays_in_the_spool(
        tmp_path, monkeypatch, caplog):
    """Its client hung up and its store outlasts ``shutdown_timeout``: stop() waits for the
    store, says so once, and leaves the message in the spool unqueued (not submitted to a
    stopped queue once the stop is over)."""
    stored = threading.Event()
    real_store = Spool.store

    def slow_store(self: Spool, *args: Any) -> None:
        stored.set()
        time.sleep(1.0)
        real_store(self, *args)

    monkeypatch.setattr(Spool, "store", slow_store)
    caplog.set_level(logging.WARNING, logger="mta_logging.relay")
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port, shutdown_timeout=0.2) as (relay, records):
            await send_and_hang_up(relay)
            await until(stored.is_set)
        assert not relay.handler.accepting
        await asyncio.sleep(0.2)
    assert [r.getMessage() for r in caplog.records if r.name == "mta_logging.relay"
            and r.levelno == logging.WARNING] == [
        "1 message(s) still being stored at the shutdown deadline; they stay in the spool for "
        "the next start"]
    assert records.outcomes == [] and sink.delivered() == []
    (left,) = (tmp_path / "spool" / "queue").iterdir()
    assert Spool.open(tmp_path / "spool").read_content(left.name).endswith(MESSAGE)


async def test_addresses_the_relay_could_not_send_on_are_refused_and_the_rest_go(tmp_path):
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port) as (relay, records):
            replies = await talk(relay, [
                b"EHLO client.test", b"MAIL FROM:<a\0b@x.test>", b"MAIL FROM:<a@x.test>",
                b"RCPT TO:<acceptev\0il@y.test>", b'RCPT TO:<"tab\there"@y.test>',
                b"RCPT TO:<good@y.test>", b"DATA", MESSAGE + b".", b"QUIT"])
            await until(lambda: records.outcomes)
    assert replies[1:6] == [
        b"553 5.1.7 Error: address contains a control character", b"250 2.1.0 Ok",
        b"553 5.1.3 Error: address contains a control character",
        b"553 5.1.3 Error: address contains a control character", b"250 2.1.5 Ok"]
    assert replies[7].startswith(b"250 2.0.0 Ok: queued as ")
    assert sink.delivered() == ["good@y.test"]
    assert [(o.kind, o.rcpt) for o in records.outcomes] == [(Kind.DELIVERED, "good@y.test")]


async def test_a_path_with_words_apart_is_refused_not_read_as_another_mailbox(tmp_path):
    """``<a<TAB>b@y.test>`` and ``<a b@y.test>`` are no RFC 5321 paths; the RFC 5322 parser
    would make them ``"a b"@y.test``, another mailbox. Refused, the good recipient goes."""
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port) as (relay, records):
            replies = await talk(relay, [
                b"EHLO client.test", b"MAIL FROM:<a b@x.test>", b"MAIL FROM:<a@x.test>",
                b"RCPT TO:<tab\there@y.test>", b"RCPT TO:<space here@y.test>",
                b"RCPT TO:<unclosed@y.test", b"RCPT TO:<good@y.test>", b"DATA",
                MESSAGE + b".", b"QUIT"])
            await until(lambda: records.outcomes)
    malformed = b"553 5.1.3 Error: malformed address"
    assert replies[1:7] == [malformed, b"250 2.1.0 Ok", malformed, malformed, malformed,
                            b"250 2.1.5 Ok"]
    assert replies[8].startswith(b"250 2.0.0 Ok: queued as ")
    assert sink.delivered() == ["good@y.test"]


async def test_a_received_record_that_cannot_be_written_is_reported_once_and_nothing_doubles(
        tmp_path, monkeypatch, caplog):
    """The disk holding the received records is full for one write: the message is still
    accepted and delivered once (the failure is not taken for its delivered record's, which
    would deliver it again); the fault is logged once, and once when it clears."""
    logger = logging.getLogger(f"test.relay.inbound.received.{id(tmp_path)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handlers = [AccountingFileHandler(kind, tmp_path / kind) for kind in ("received", "delivered")]
    for handler in handlers:
        logger.addHandler(handler)
    failed = full_disk_once(monkeypatch, b"first@x.test")
    caplog.set_level(logging.WARNING, logger="mta_logging.relay")
    try:
        with Sink() as sink:
            settings = load_settings({
                "listen": "127.0.0.1:0", "hostname": "relay.example.test",
                "spool_dir": str(tmp_path / "spool"), "routes": {"*": f"127.0.0.1:{sink.port}"},
                "timeouts": {"connect": 5, "command": 5, "data": 5}, "shutdown_timeout": 5})
            relay = Relay(settings, accounting=AccountingLogger(logger),
                          resolver=FakeResolver({}, {}))
            await relay.start()
            try:
                smtp = await client(relay)
                for rcpt in ("first@x.test", "second@x.test"):
                    response = await smtp.sendmail("a@example.test", [rcpt], MESSAGE)
                    assert response[1].startswith("2.0.0 Ok: queued as ")
                await smtp.quit()
                await until(lambda: sorted(sink.delivered()) == ["first@x.test",
                                                                 "second@x.test"])
                await until(lambda: len(file_lines(tmp_path / "delivered")) == 2)
            finally:
                await relay.stop()
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
    assert failed and failed[0].startswith(b"r\t")
    assert sorted(sink.delivered()) == ["first@x.test", "second@x.test"]  # once each
    assert list((tmp_path / "spool" / "queue").iterdir()) == []  # none kept to send again
    # the record that met the full disk was written again at the message's delivery attempt
    assert sorted(line.split("\t")[3] for line in file_lines(tmp_path / "received")) == [
        "first@x.test", "second@x.test"]
    assert sorted(line.split("\t")[3] for line in file_lines(tmp_path / "delivered")) == [
        "first@x.test", "second@x.test"]
    [queue_id] = {line.split("\t")[7] for line in file_lines(tmp_path / "delivered")
                  if "first@x.test" in line}
    assert [r.getMessage() for r in caplog.records if "received record" in r.getMessage()] == [
        f"received record write failed: queue {queue_id}: the received record of "
        "<first@x.test> could not be written; the message is queued and goes on, and the record"
        " is written again at its delivery attempts (further failures of this kind are"
        " counted, not logged, until one succeeds)",
        "received record write works again after 1 failure(s)"]


def file_lines(directory: Path) -> list[str]:
    """The records (not the header) of the accounting files in ``directory``."""
    return [line for path in sorted(directory.glob("*.tsv"))
            for line in path.read_text().splitlines()[1:]]


async def test_below_min_free_space_new_mail_waits_and_queued_mail_still_goes(tmp_path, caplog):
    spool = Spool.open(tmp_path / "spool")
    spool.store("0000000000001ABC", SpoolEnvelope("a@example.test", ("queued@x.test",),
                                                  time.time()), MESSAGE)
    more_than_there_is = shutil.disk_usage(tmp_path).free + 1024**3
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port, min_free_space=more_than_there_is) as (
                relay, records):
            smtp = await client(relay)
            refusals = []
            for _ in range(3):
                with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
                    await smtp.mail("a@example.test")
                refusals.append((caught.value.code, caught.value.message))
            await smtp.quit()
            await until(lambda: records.outcomes)
    assert refusals == [(452, "4.3.1 Insufficient system storage")] * 3
    assert sink.delivered() == ["queued@x.test"]
    assert [(o.kind, o.rcpt) for o in records.outcomes] == [(Kind.DELIVERED, "queued@x.test")]
    assert caplog.text.count("free space check failed: ") == 1


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; the file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


async def test_a_full_spool_disk_gets_451_reported_once_then_452_then_mail_again(
        tmp_path, caplog):
    with small_tmpfs(tmp_path / "small", "1m") as small, Sink() as sink:
        async with running_relay(small, sink.port, min_free_space=0) as (relay, records):
            filler = fill(small)
            smtp = await client(relay)
            codes = []
            for _ in range(3):
                with pytest.raises(aiosmtplib.SMTPDataError) as caught:
                    await smtp.sendmail("a@example.test", ["b@x.test"], MESSAGE * 200)
                codes.append((caught.value.code, caught.value.message))
            assert codes == [(451, "4.3.0 Error: queue file write error, try again later")] * 3
            assert caplog.text.count("queue file write failed: ") == 1
            assert "No space left on device" in caplog.text
            relay.handler.free_space = FreeSpace([small], 256 * 1024, relay.handler.faults)
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await smtp.mail("a@example.test")
            assert refused.value.code == 452
            await smtp.rset()
            filler.unlink()
            relay.handler.free_space = None
            await smtp.sendmail("a@example.test", ["b@x.test"], MESSAGE)
            await smtp.quit()
            await until(lambda: records.outcomes)
        assert sink.delivered() == ["b@x.test"]
    assert "queue file write works again after 3 failure(s)" in caplog.text


async def greeting(relay: Relay) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.address[1])
    return (await asyncio.wait_for(reader.readline(), 5)).rstrip(), reader, writer


async def test_connections_past_the_limits_hear_421_and_are_closed(tmp_path, caplog):
    async with running_relay(tmp_path, 9, max_connections=3, max_connections_per_ip=2) as (
            relay, _):
        first, second = [await greeting(relay) for _ in range(2)]
        third_from_the_same_ip, reader, _ = await greeting(relay)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the relay
        first[2].close()
        await asyncio.sleep(0.1)
        again, _, writer = await greeting(relay)
        writer.close()
        second[2].close()
    assert first[0].startswith(b"220 relay.example.test ") and again.startswith(b"220 ")
    assert third_from_the_same_ip == (b"421 4.7.0 relay.example.test Too many connections "
                                      b"from your address, try again later")
    assert caplog.text.count("refused a connection from 127.0.0.1") == 1


async def test_all_connections_past_max_connections_hear_421(tmp_path, caplog):
    async with running_relay(tmp_path, 9, max_connections=2) as (relay, _):
        opened = [await greeting(relay) for _ in range(5)]
        for _, _, writer in opened:
            writer.close()
    assert [line for line, _, _ in opened][2:] == [
        b"421 4.7.0 relay.example.test Too many connections, try again later"] * 3
    warnings = [r.getMessage() for r in caplog.records if "refused a connection" in r.message]
    assert warnings == ["refused a connection from 127.0.0.1: max_connections (2) are open "
                        "(1 time(s) since the last report; reported at most once every 60 s)"]


async def test_an_idle_client_is_disconnected_at_the_inbound_timeout(tmp_path):
    async with running_relay(tmp_path, 9, timeouts={"inbound": 0.3}) as (relay, _):
        line, reader, writer = await greeting(relay)
        started = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), 10)
        waited = time.monotonic() - started
        writer.close()
    assert line.startswith(b"220 ")
    assert rest == b"" and waited >= 0.25  # closed, and not before the timeout


async def test_the_listen_backlog_is_the_configured_one(tmp_path):
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    async with running_relay(tmp_path, 9, listen_backlog=777) as (relay, _):
        shown = subprocess.run(["ss", "-ltnH", f"sport = :{relay.address[1]}"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
    assert shown.split()[2] == "777"  # a listening socket's Send-Q is its backlog
