"""Outbound delivery against a real SMTP sink on 127.0.0.1: one result per recipient."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Sequence

import pytest
from aiosmtpd.controller import Controller
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st
from relay_sink import FakeResolver, SilentServer, Sink, make_certificate, server_tls_context

from mta_logging.outcome import Kind
from mta_logging.relay.config import load_settings
from mta_logging.relay.dsn_params import MailDsn, RcptDsn
from mta_logging.relay.faults import FaultLog
from mta_logging.relay.outbound import Deliverer, Reply, reply_of, transparent
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


@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"\xff\x80",
                                  b"\x00", b"\n.\r\n", b"x" * 1200])).map(b"".join))
def test_the_message_goes_as_aiosmtplib_sends_it(message):
    assert transparent(message) == (PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message))
                                    + b".\r\n")


@pytest.mark.parametrize(("message", "sent"), [
    (CONTENT, CONTENT.replace(b"\n.leading", b"\n..leading") + b".\r\n"),
    (b"", b"\r\n.\r\n"),
    (b".\r\nbare\nend", b"..\r\nbare\r\nend\r\n.\r\n"),
])
def test_message_lines_ended_and_dots_doubled(message, sent):
    assert transparent(message) == sent


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
    """An SMTP server on 127.0.0.1 offering ``extensions`` (PIPELINING) whose replies ``answer``
    makes from each command line (and from the final ``.`` of a message, after a 354; ``None``:
    the server answers nothing from then on); each reply in a write of its own, after ``pause``
    seconds. ``together``: the replies to the commands before a DATA are held and go in one
    write with the reply to the DATA; ``split``: each reply in two writes a moment apart.
    After a 421 it closes the connection; with ``tls_context`` it offers STARTTLS until it is
    under TLS (``<TLS>`` in ``received`` then). ``received`` holds what it was sent, line by
    line; ``connections`` counts them."""

    def __init__(self, answer: Callable[[str], str | None], pause: float = 0.0, *,
                 extensions: Sequence[str] = ("PIPELINING",), together: bool = False,
                 split: bool = False, tls_context: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.pause = pause
        self.extensions = extensions
        self.together = together
        self.split = split
        self.tls_context = tls_context
        self.received: list[str] = []
        self.connections = 0
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
        self.connections += 1
        writer.write(b"220 scripted ESMTP\r\n")
        in_data = False
        held: list[str] = []
        under_tls = False
        silent = False
        try:
            while raw := await reader.readline():
                line = raw.decode().rstrip("\r\n")
                self.received.append(line)
                if silent or (in_data and line != "."):
                    continue
                if line.startswith("EHLO"):
                    offered = [*self.extensions] + (
                        ["STARTTLS"] if self.tls_context and not under_tls else [])
                    reply = "\r\n".join(
                        f"250{'-' if i < len(offered) else ' '}{keyword}"
                        for i, keyword in enumerate(["scripted", *offered]))
                elif line == "QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                elif line == "STARTTLS" and self.tls_context is not None:
                    writer.write(b"220 go ahead\r\n")
                    await writer.drain()
                    await writer.start_tls(self.tls_context)
                    under_tls = True
                    self.received.append("<TLS>")
                    continue
                else:
                    answered = self.answer(line)
                    if answered is None:
                        silent = True
                        continue
                    reply = answered
                in_data = reply.startswith("354")
                await asyncio.sleep(self.pause)
                if self.together and line.split(" ")[0] in ("MAIL", "RCPT"):
                    held.append(reply)
                    continue
                data = "".join(f"{r}\r\n" for r in [*held, reply]).encode()
                held.clear()
                if self.split:
                    writer.write(data[:len(data) // 2])
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    data = data[len(data) // 2:]
                writer.write(data)
                if reply.startswith("421"):
                    break
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


def multi_line_answer(line: str) -> str:
    """Multi-line replies to RCPT (RFC 2920 does not keep a server from them)."""
    if line.startswith("RCPT TO:<reject"):
        return "550-5.1.1 no such user\r\n550 5.1.1 here"
    if line.startswith("RCPT"):
        return "250-2.1.5 recipient\r\n250 2.1.5 ok"
    return {"DATA": "354 go ahead", ".": "250 2.0.0 queued"}.get(line, "250 ok")


@pytest.mark.parametrize(("together", "split"), [(True, False), (False, True), (True, True)])
async def test_pipelined_replies_in_one_read_or_split_across_reads(together, split):
    """The replies to MAIL, the RCPTs and DATA in one write of the server, or each cut in two
    writes (a multi-line reply cut inside a line): each command gets its own reply."""
    async with ScriptedServer(multi_line_answer, together=together, split=split) as server:
        outbound = deliverer(server.port)
        results = await outbound.deliver(
            "x.test", envelope("ok@x.test", "reject@x.test", "ok2@x.test"), [0, 1, 2],
            b"Hello.\r\n")
        await outbound.close()
    assert [(r.kind, r.dsn_status, r.dsn_msg) for r in results] == [
        (Kind.DELIVERED, "2.0.0", "250 2.0.0 queued"),
        (Kind.BOUNCE, "5.1.1", "550 5.1.1 no such user 5.1.1 here"),
        (Kind.DELIVERED, "2.0.0", "250 2.0.0 queued")]
    assert server.received[1:] == [
        "MAIL FROM:<sender@example.test>", "RCPT TO:<ok@x.test>", "RCPT TO:<reject@x.test>",
        "RCPT TO:<ok2@x.test>", "DATA", "Hello.", ".", "QUIT"]
    assert server.connections == 1


async def test_a_421_in_the_middle_of_a_group_defers_with_its_text():
    """RFC 5321 §3.8: a server that says 421 and closes answers every command after with it;
    the next message goes on a new connection."""
    rcpts = 0

    def answer(line: str) -> str:
        nonlocal rcpts
        if line.startswith("RCPT"):
            rcpts += 1
            return "421 4.3.2 shutting down" if rcpts == 2 else "250 ok"
        return {"DATA": "354 go ahead", ".": "250 2.0.0 queued"}.get(line, "250 ok")

    async with ScriptedServer(answer) as server:
        outbound = deliverer(server.port)
        results = await outbound.deliver(
            "x.test", envelope("ok@x.test", "two@x.test", "three@x.test"), [0, 1, 2],
            b"Hello.\r\n")
        [later] = await outbound.deliver("x.test", envelope("ok@x.test"), [0], b"Hello.\r\n")
        await outbound.close()
    assert [(r.kind, r.dsn_status, r.dsn_msg) for r in results] == [
        (Kind.DEFERRED, "4.3.2", "421 4.3.2 shutting down")] * 3
    assert (later.kind, later.dsn_msg) == (Kind.DELIVERED, "250 2.0.0 queued")
    assert server.connections == 2
    assert server.received[1:4] == [
        "MAIL FROM:<sender@example.test>", "RCPT TO:<ok@x.test>", "RCPT TO:<two@x.test>"]


async def test_a_421_to_a_pipelined_mail_on_a_reused_connection_retries_on_a_new_one():
    mails = 0

    def answer(line: str) -> str:
        nonlocal mails
        if line.startswith("MAIL"):
            mails += 1
            return "421 4.4.2 idle too long" if mails == 2 else "250 ok"
        return {"DATA": "354 go ahead", ".": "250 2.0.0 queued"}.get(line, "250 ok")

    async with ScriptedServer(answer) as server:
        outbound = deliverer(server.port)
        first = await outbound.deliver("x.test", envelope("ok@x.test"), [0], b"Hello.\r\n")
        second = await outbound.deliver("x.test", envelope("ok@x.test"), [0], b"Hello.\r\n")
        await outbound.close()
    assert [r.kind for r in [*first, *second]] == [Kind.DELIVERED, Kind.DELIVERED]
    assert (server.connections, mails) == (2, 3)


async def test_each_pipelined_reply_has_the_command_time_out_of_its_own():
    """A server that takes its time over every reply (a tarpit): the group of five commands
    takes longer than one command's time-out, but no reply does; the message goes."""
    async with ScriptedServer(multi_line_answer, pause=0.5) as server:
        outbound = deliverer(server.port, timeouts={"connect": 5, "command": 1.5, "data": 5})
        results = await outbound.deliver(
            "x.test", envelope("ok@x.test", "ok2@x.test", "ok3@x.test"), [0, 1, 2],
            b"Hello.\r\n")
        await outbound.close()
    assert [(r.kind, r.dsn_msg) for r in results] == [(Kind.DELIVERED, "250 2.0.0 queued")] * 3


@pytest.mark.parametrize(("silent_at", "stage"), [
    ("MAIL", "MAIL FROM"), ("RCPT TO:<ok2@", "RCPT TO"), ("DATA", "DATA")])
async def test_a_pipelined_group_cut_short_names_the_command_whose_reply_did_not_come(
        silent_at, stage):
    """The server answers the pipelined commands up to one, then falls silent: the time-out
    names that command, as one command at a time would."""
    def answer(line: str) -> str | None:
        return None if line.startswith(silent_at) else "250 ok"

    async with ScriptedServer(answer) as server:
        outbound = deliverer(server.port, timeouts={"connect": 5, "command": 0.5, "data": 5})
        results = await outbound.deliver(
            "x.test", envelope("ok@x.test", "ok2@x.test"), [0, 1], b"Hello.\r\n")
        await outbound.close()
    assert [(r.kind, r.dsn_status, r.dsn_msg) for r in results] == [
        (Kind.DEFERRED, "4.4.2", f"conversation with 127.0.0.1[127.0.0.1]:{server.port} timed "
                                 f"out while sending {stage}")] * 2


@pytest.mark.parametrize(("data", "sent"), [
    ("503 5.5.1 no valid recipients", ["DATA", "RSET"]),
    ("354 go ahead", ["DATA", "", ".", "RSET"])])
async def test_a_refused_pipelined_mail_decides_for_every_recipient(data, sent):
    """MAIL refused, the RCPTs after it answered (503) and DATA answered too: every
    recipient has the reply to MAIL; a 354 gets an empty message; then RSET."""
    def answer(line: str) -> str:
        if line.startswith("MAIL"):
            return "550 5.7.1 sender refused"
        if line.startswith("RCPT"):
            return "503 5.5.1 need MAIL first"
        return {"DATA": data, ".": "554 5.5.1 no valid recipients"}.get(line, "250 ok")

    async with ScriptedServer(answer) as server:
        outbound = deliverer(server.port)
        results = await outbound.deliver(
            "x.test", envelope("ok@x.test", "ok2@x.test"), [0, 1], b"Hello.\r\n")
        await outbound.close()
    assert [(r.kind, r.dsn_status, r.dsn_msg) for r in results] == [
        (Kind.BOUNCE, "5.7.1", "550 5.7.1 sender refused")] * 2
    assert server.received[1:] == ["MAIL FROM:<sender@example.test>", "RCPT TO:<ok@x.test>",
                                   "RCPT TO:<ok2@x.test>", *sent, "QUIT"]


async def test_a_connection_is_reused_after_a_pipelined_transaction_that_failed():
    """Every RCPT refused, a 354 anyway, the empty message refused, RSET: the next message
    goes on the same connection."""
    mails = 0

    def answer(line: str) -> str:
        nonlocal mails
        if line.startswith("MAIL"):
            mails += 1
        if line.startswith("RCPT") and mails == 1:
            return "550 5.1.1 unknown"
        return {"DATA": "354 go ahead",
                ".": "554 5.5.1 no valid recipients" if mails == 1 else "250 2.0.0 queued"
                }.get(line, "250 ok")

    async with ScriptedServer(answer) as server:
        outbound = deliverer(server.port)
        [refused] = await outbound.deliver("x.test", envelope("no@x.test"), [0], b"Hello.\r\n")
        [taken] = await outbound.deliver("x.test", envelope("ok@x.test"), [0], b"Hello.\r\n")
        await outbound.close()
    assert (refused.kind, refused.dsn_msg) == (Kind.BOUNCE, "550 5.1.1 unknown")
    assert (taken.kind, taken.dsn_msg) == (Kind.DELIVERED, "250 2.0.0 queued")
    assert server.connections == 1
    assert server.received[1:] == [
        "MAIL FROM:<sender@example.test>", "RCPT TO:<no@x.test>", "DATA", "", ".", "RSET",
        "MAIL FROM:<sender@example.test>", "RCPT TO:<ok@x.test>", "DATA", "Hello.", ".", "QUIT"]


async def test_the_group_goes_after_starttls_and_the_second_ehlo(tmp_path):
    files = make_certificate(tmp_path)
    if files is None:
        pytest.skip("openssl is not installed")
    async with ScriptedServer(multi_line_answer,
                              tls_context=server_tls_context(*files)) as server:
        outbound = deliverer(server.port)
        [result] = await outbound.deliver("x.test", envelope("ok@x.test"), [0], b"Hello.\r\n")
        await outbound.close()
    assert (result.kind, result.dsn_msg) == (Kind.DELIVERED, "250 2.0.0 queued")
    assert result.tls_protocol is not None
    assert server.received == [
        "EHLO relay.example.test", "STARTTLS", "<TLS>", "EHLO relay.example.test",
        "MAIL FROM:<sender@example.test>", "RCPT TO:<ok@x.test>", "DATA", "Hello.", ".", "QUIT"]


async def test_the_pipelined_mail_and_rcpt_carry_their_parameters():
    """SMTPUTF8, BODY=8BITMIME, SIZE and the DSN parameters in the group as one at a time."""
    utf8 = Envelope("sender@example.test", ("üser@x.test",), 1700000000.0, smtputf8=True,
                    body_8bit=True, mail_dsn=MailDsn(ret="HDRS", envid="e1"),
                    rcpt_dsn=(RcptDsn(notify=("FAILURE",), orcpt="rfc822;user@x.test"),))
    async with ScriptedServer(multi_line_answer, extensions=(
            "PIPELINING", "SMTPUTF8", "8BITMIME", "SIZE 1000", "DSN")) as server:
        outbound = deliverer(server.port)
        [result] = await outbound.deliver("x.test", utf8, [0], b"Hello.\r\n")
        await outbound.close()
    assert result.kind is Kind.DELIVERED
    assert server.received[1:4] == [
        "MAIL FROM:<sender@example.test> SMTPUTF8 BODY=8BITMIME SIZE=8 RET=HDRS ENVID=e1",
        "RCPT TO:<üser@x.test> NOTIFY=FAILURE ORCPT=rfc822;user@x.test", "DATA"]


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


class _Accepting:
    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        return "250 2.0.0 Ok"


async def test_a_next_hop_that_refuses_connections_is_logged_once_until_it_comes_back(caplog):
    """Each delivery to a hop that refuses connections is deferred with the reason, but the
    log says it once, at WARNING, then once when a connection to it works again."""
    caplog.set_level(logging.INFO, logger="mta_logging.relay")
    port = free_port()
    outbound = deliverer(port)
    label = f"127.0.0.1[127.0.0.1]:{port}"
    refused = f"connect to {label}: Connection refused"
    for _ in range(3):
        assert [(r.kind, r.dsn_status, r.dsn_msg) for r in await outbound.deliver(
            "x.test", envelope("a@x.test"), [0], b"Hello.\r\n")] == [
            (Kind.DEFERRED, "4.4.1", refused)]
    controller = Controller(_Accepting(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        [sent] = await outbound.deliver("x.test", envelope("a@x.test"), [0], b"Hello.\r\n")
    finally:
        controller.stop()
        await outbound.pool.close()
    assert sent.kind is Kind.DELIVERED
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"connecting to {label} failed: {refused} (further failures of this kind "
                    "are counted, not logged, until one succeeds)"),
        ("WARNING", f"connecting to {label} works again after 3 failure(s)")]


def test_episodes_of_more_hops_than_kept_forget_the_oldest(caplog):
    caplog.set_level(logging.WARNING)
    faults = FaultLog(logging.getLogger("test.faults"), level=logging.WARNING, limit=2)
    for hop in ("a", "b", "a", "c", "b", "a"):
        faults.failed(f"connecting to {hop}", "refused")
    assert [r.getMessage().partition(" failed")[0] for r in caplog.records] == [
        "connecting to a", "connecting to b", "connecting to c", "connecting to a"]
