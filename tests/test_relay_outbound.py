"""Outbound delivery against a real SMTP sink on 127.0.0.1: one result per recipient."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
from relay_sink import FakeResolver, SilentServer, Sink, make_certificate, server_tls_context

from mta_logging.outcome import Kind
from mta_logging.relay.config import load_settings
from mta_logging.relay.outbound import Deliverer, Reply, reply_of
from mta_logging.relay.resolve import Hop
from mta_logging.relay.spool import Envelope

CONTENT = b"Subject: test\r\nX-Campaign: c1\r\n\r\nHello.\r\n.leading dot\r\n"


def envelope(*rcpts: str, smtputf8: bool = False) -> Envelope:
    return Envelope("sender@example.test", rcpts, 1700000000.0, smtputf8=smtputf8)


def deliverer(port: int, **settings: object) -> Deliverer:
    config = {"hostname": "relay.example.test", "routes": {"*": f"127.0.0.1:{port}"},
              "timeouts": {"connect": 5, "command": 5, "data": 5}, **settings}
    return Deliverer(load_settings(config), FakeResolver({}, {}))


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_reply_parsing():
    assert reply_of(250, "2.0.0 Ok: queued as X") == Reply(Kind.DELIVERED, "2.0.0",
                                                           "250 2.0.0 Ok: queued as X")
    assert reply_of(451, "Try\nagain later") == Reply(Kind.DEFERRED, "4.0.0",
                                                      "451 Try again later")
    assert reply_of(550, "5.1.1 unknown") == Reply(Kind.BOUNCE, "5.1.1", "550 5.1.1 unknown")
    assert reply_of(354, "odd").kind is Kind.DEFERRED


@pytest.mark.parametrize("pipelining", [True, False])
async def test_one_result_per_recipient(pipelining):
    with Sink(pipelining=pipelining) as sink:
        outbound = deliverer(sink.port)
        results = await outbound.deliver(
            "x.test", envelope("ok@x.test", "tempfail@x.test", "reject@x.test", "ok2@x.test"),
            [0, 1, 2, 3], CONTENT)
        await outbound.close()
        [received] = sink.messages
    assert [(r.index, r.kind, r.dsn_status) for r in results] == [
        (0, Kind.DELIVERED, "2.0.0"), (1, Kind.DEFERRED, "4.2.0"), (2, Kind.BOUNCE, "5.1.1"),
        (3, Kind.DELIVERED, "2.0.0")]
    assert results[0].dsn_msg == "250 2.0.0 Ok: delivered to 2 recipient(s)"
    assert results[2].dsn_msg.startswith("550 5.1.1 <reject@x.test>: Recipient address rejected")
    assert {r.dest_ip for r in results} == {"127.0.0.1"}
    assert received.rcpts == ("ok@x.test", "ok2@x.test")
    assert received.helo == "relay.example.test"
    assert received.content == CONTENT


@pytest.mark.parametrize(("rcpt", "kind", "status"), [
    ("datadefer@x.test", Kind.DEFERRED, "4.3.0"),
    ("datafail@x.test", Kind.BOUNCE, "5.6.0"),
])
@pytest.mark.parametrize("pipelining", [True, False])
async def test_the_reply_to_the_data_decides_for_every_accepted_recipient(rcpt, kind, status,
                                                                         pipelining):
    with Sink(pipelining=pipelining) as sink:
        outbound = deliverer(sink.port)
        results = await outbound.deliver("x.test", envelope("ok@x.test", rcpt), [0, 1], CONTENT)
        await outbound.close()
    assert [(r.kind, r.dsn_status) for r in results] == [(kind, status)] * 2


async def test_connections_are_reused():
    with Sink() as sink:
        outbound = deliverer(sink.port)
        for n in range(3):
            await outbound.deliver("x.test", envelope(f"ok{n}@x.test"), [0], CONTENT)
        await outbound.close()
        assert len(sink.messages) == 3
        assert sink.connections == 1


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_reused_connection_that_the_server_closed_is_replaced(pipelining):
    sink = Sink(pipelining=pipelining).start()
    outbound = deliverer(sink.port)
    await outbound.deliver("x.test", envelope("ok@x.test"), [0], CONTENT)
    port = sink.port
    sink.stop()  # closes the idle connection from the server side
    with Sink() as second:
        outbound.settings = load_settings({"routes": {"*": f"127.0.0.1:{second.port}"}})
        outbound.pool.settings = outbound.settings
        [result] = await outbound.deliver("x.test", envelope("ok@x.test"), [0], CONTENT)
        await outbound.close()
    assert result.kind is Kind.DELIVERED, result
    assert port != second.port


@pytest.mark.parametrize(("pipelining", "reads"), [(True, 2), (False, 6)])
async def test_pipelined_commands_reach_the_server_together(pipelining, reads):
    """MAIL, the RCPTs and DATA in one read of the server's socket, the message in another;
    one read per command without PIPELINING."""
    with Sink(pipelining=pipelining) as sink:
        outbound = deliverer(sink.port)
        await outbound.deliver("x.test", envelope("ok@x.test"), [0], CONTENT)
        before = sink.reads
        results = await outbound.deliver(
            "x.test", envelope("ok1@x.test", "reject@x.test", "ok2@x.test"), [0, 1, 2], CONTENT)
        transaction_reads = sink.reads - before
        await outbound.close()
        assert sink.messages[1].rcpts == ("ok1@x.test", "ok2@x.test")
    assert [r.kind for r in results] == [Kind.DELIVERED, Kind.BOUNCE, Kind.DELIVERED]
    assert transaction_reads == reads


class ScriptedServer:
    """An SMTP server on 127.0.0.1 offering PIPELINING whose replies ``answer`` makes from each
    command line (and from the final ``.`` of a message, after a 354); each reply in a write of
    its own, after ``pause`` seconds. ``received`` holds what it was sent, line by line."""

    def __init__(self, answer: Callable[[str], str], pause: float = 0.0) -> None:
        self.answer = answer
        self.pause = pause
        self.received: list[str] = []
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        in_data = False
        try:
            while raw := await reader.readline():
                line = raw.decode().rstrip("\r\n")
                self.received.append(line)
                if in_data and line != ".":
                    continue
                if line.startswith("EHLO"):
                    reply = "250-scripted\r\n250 PIPELINING"
                elif line == "QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    reply = self.answer(line)
                in_data = reply.startswith("354")
                await asyncio.sleep(self.pause)
                writer.write(reply.encode() + b"\r\n")
        finally:
            writer.close()


async def test_pipelined_replies_that_come_one_by_one():
    def answer(line: str) -> str:
        if line.startswith("RCPT TO:<reject"):
            return "550 5.1.1 unknown"
        return {"DATA": "354 go ahead", ".": "250 2.0.0 queued"}.get(line, "250 ok")

    async with ScriptedServer(answer, pause=0.02) as server:
        outbound = deliverer(server.port)
        results = await outbound.deliver(
            "x.test", envelope("ok@x.test", "reject@x.test"), [0, 1], b"Hello.\r\n")
        await outbound.close()
    assert [(r.kind, r.dsn_msg) for r in results] == [
        (Kind.DELIVERED, "250 2.0.0 queued"), (Kind.BOUNCE, "550 5.1.1 unknown")]
    assert server.received[1:] == [
        "MAIL FROM:<sender@example.test>", "RCPT TO:<ok@x.test>", "RCPT TO:<reject@x.test>",
        "DATA", "Hello.", ".", "QUIT"]


async def test_a_data_taken_after_every_recipient_was_refused_gets_an_empty_message():
    """RFC 2920: the server answers the pipelined DATA with 354 although it refused every
    RCPT; the client ends it with an empty message, RSETs, and keeps the refusals."""
    def answer(line: str) -> str:
        if line.startswith("RCPT"):
            return "450 4.2.0 busy"
        return {"DATA": "354 go ahead", ".": "554 5.5.1 no valid recipients"}.get(line, "250 ok")

    async with ScriptedServer(answer) as server:
        outbound = deliverer(server.port)
        [result] = await outbound.deliver("x.test", envelope("ok@x.test"), [0], b"Hello.\r\n")
        await outbound.close()
    assert (result.kind, result.dsn_msg) == (Kind.DEFERRED, "450 4.2.0 busy")
    assert server.received[1:] == ["MAIL FROM:<sender@example.test>", "RCPT TO:<ok@x.test>",
                                   "DATA", "", ".", "RSET", "QUIT"]


async def test_a_pipelined_reply_that_never_ends_defers():
    """A reply longer than aiosmtplib takes (continuation lines without end): the connection
    is given up, the recipients deferred."""
    def answer(line: str) -> str:
        return "\r\n".join(["250-" + "x" * 70] * 600)

    async with ScriptedServer(answer) as server:
        outbound = deliverer(server.port)
        [result] = await outbound.deliver("x.test", envelope("ok@x.test"), [0], b"Hello.\r\n")
        await outbound.close()
    assert (result.kind, result.dsn_status) == (Kind.DEFERRED, "4.4.2")
    assert result.dsn_msg == (f"lost connection with 127.0.0.1[127.0.0.1]:{server.port} while "
                              "sending MAIL FROM")


async def test_connection_refused_defers():
    port = free_port()
    outbound = deliverer(port)
    [result] = await outbound.deliver("x.test", envelope("ok@x.test"), [0], CONTENT)
    assert (result.kind, result.dsn_status) == (Kind.DEFERRED, "4.4.1")
    assert result.dsn_msg == f"connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused"


async def test_a_silent_server_times_out_and_defers():
    with SilentServer() as silent:
        outbound = deliverer(silent.port, timeouts={"connect": 0.5})
        [result] = await outbound.deliver("x.test", envelope("ok@x.test"), [0], CONTENT)
    assert (result.kind, result.dsn_status) == (Kind.DEFERRED, "4.4.2")
    assert "timed out" in result.dsn_msg


async def test_a_server_that_hangs_in_data_times_out_and_defers():
    with Sink(slow_seconds=10) as sink:
        outbound = deliverer(sink.port, timeouts={"data": 0.5})
        [result] = await outbound.deliver("x.test", envelope("slow@x.test"), [0], CONTENT)
        await outbound.close()
    assert (result.kind, result.dsn_status) == (Kind.DEFERRED, "4.4.2")
    assert result.dsn_msg.endswith("timed out while sending the message")


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_connection_dropped_mid_data_defers(pipelining):
    with Sink(pipelining=pipelining) as sink:
        outbound = deliverer(sink.port)
        results = await outbound.deliver("x.test", envelope("drop@x.test", "ok@x.test"), [0, 1],
                                         CONTENT)
        await outbound.close()
    assert {(r.kind, r.dsn_status) for r in results} == {(Kind.DEFERRED, "4.4.2")}
    assert results[0].dsn_msg == (f"lost connection with 127.0.0.1[127.0.0.1]:{sink.port} "
                                  f"while sending the message")


async def test_the_next_hop_is_tried_when_one_refuses():
    dead = free_port()
    with Sink() as sink:
        outbound = deliverer(sink.port)
        hops = [Hop("mx1.test", "127.0.0.1", dead), Hop("mx2.test", "127.0.0.1", sink.port)]
        [result] = await outbound.deliver_via(hops, envelope("ok@x.test"), [0], CONTENT)
        await outbound.close()
    assert result.kind is Kind.DELIVERED


async def test_null_mx_and_missing_domains_bounce_without_connecting():
    resolver = FakeResolver({"nomail.test": [(0, ".")]}, {})
    outbound = Deliverer(load_settings({}), resolver)
    [null_mx] = await outbound.deliver("nomail.test", envelope("a@nomail.test"), [0], CONTENT)
    [missing] = await outbound.deliver("missing.test", envelope("a@missing.test"), [0], CONTENT)
    assert (null_mx.kind, null_mx.dsn_status) == (Kind.BOUNCE, "5.1.10")
    assert (missing.kind, missing.dsn_status) == (Kind.BOUNCE, "5.1.2")


async def test_smtputf8_addresses_need_a_server_that_offers_it():
    with Sink(smtputf8=False) as plain, Sink() as modern:
        rcpt = "josé@x.test"
        [refused] = await deliverer(plain.port).deliver(
            "x.test", envelope(rcpt, smtputf8=True), [0], CONTENT)
        outbound = deliverer(modern.port)
        [accepted] = await outbound.deliver("x.test", envelope(rcpt, smtputf8=True), [0],
                                            CONTENT)
        await outbound.close()
        assert (refused.kind, refused.dsn_status) == (Kind.BOUNCE, "5.6.7")
        assert accepted.kind is Kind.DELIVERED
        assert modern.messages[0].rcpts == (rcpt,)
        assert "SMTPUTF8" in modern.messages[0].mail_options


async def test_opportunistic_starttls(tmp_path):
    files = make_certificate(tmp_path)
    if files is None:
        pytest.skip("openssl is not installed")
    with Sink(tls_context=server_tls_context(*files)) as sink:
        outbound = deliverer(sink.port)
        [result] = await outbound.deliver("x.test", envelope("ok@x.test"), [0], CONTENT)
        await outbound.close()
        assert result.kind is Kind.DELIVERED
        assert sink.messages[0].tls
        without = deliverer(sink.port, starttls="off")
        await without.deliver("x.test", envelope("ok@x.test"), [0], CONTENT)
        await without.close()
        assert not sink.messages[1].tls


async def test_a_queued_address_with_a_control_character_bounces_alone():
    """Mail queued before such addresses were refused at RCPT: that recipient bounces, the
    others of its domain are delivered; a sender like that bounces the message."""
    with Sink() as sink:
        outbound = deliverer(sink.port)
        results = await outbound.deliver("y.test", envelope("bad\0one@y.test", "good@y.test"),
                                         [0, 1], CONTENT)
        bad_sender = Envelope("a\tb@example.test", ("good2@y.test",), 1700000000.0)
        [from_bad] = await outbound.deliver("y.test", bad_sender, [0], CONTENT)
        await outbound.close()
    assert [(r.kind, r.dsn_status, r.dsn_msg) for r in results] == [
        (Kind.BOUNCE, "5.1.3",
         "the recipient address contains a control character; no SMTP client can send it"),
        (Kind.DELIVERED, "2.0.0", "250 2.0.0 Ok: delivered to 1 recipient(s)")]
    assert (from_bad.kind, from_bad.dsn_status) == (Kind.BOUNCE, "5.1.7")
    assert sink.delivered() == ["good@y.test"]
