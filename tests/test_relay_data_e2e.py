"""DATA end to end, byte for byte: what a client sends after the 354, in any segmentation,
is what the relay stores (after its Received field) and what the next hop receives (with the
line ends SMTP gives it); hostile bodies (dot-stuffing, bare CR and LF, NUL, 8-bit, a line
at the length limit and one byte over, an empty message, commands pipelined behind the end,
a client that leaves mid-DATA, a message of several MiB) against the relay in a subprocess
and a sink, both on 127.0.0.1.

The same sessions cut at every offset against aiosmtpd's own DATA are
``tests/test_relay_smtpd.py``'s; here the bytes go through the real sockets, the spool and
the outbound client."""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

from aiosmtplib.protocol import normalize_message_line_endings
from relay_sink import Sink
from test_relay_e2e import base_config, relay, wait_until

from mta_logging.relay.spool import Spool

# (name, the lines of the message as the client means them): each line is sent
# dot-stuffed and CRLF-ended
BODIES: list[tuple[str, list[bytes]]] = [
    ("dots", [b"Subject: dots", b"", b".", b"..", b"...", b".leading", b"", b". ", b"end."]),
    ("bare-cr-lf", [b"Subject: bare", b"", b"a\rb", b"c\nd", b"\n.", b"x\r", b"\r\r\n\n",
                    b"tail\n", b"\r.\r"]),
    ("nul-8bit", [b"Subject: =?utf-8?q?x?=", b"", b"\x00", b"nul\x00in\x00line",
                  "ol\u00e1 \u00fcber".encode(), b"\xff\xfe\x80", b"\x1b[0m"]),
    ("limit", [b"Subject: limit", b"", b"x" * 998, b"." + b"y" * 997]),  # 1000 with CRLF
    ("terminator-like", [b"Subject: t", b"", b".\r\n", b"\r\n.\r\n", b"a.\r\n.", b"..\r\n"]),
    ("empty", []),
]


def stuffed(lines: list[bytes]) -> bytes:
    """What a client sends after the 354 for ``lines``: each CRLF-ended, a leading dot
    doubled, then the end marker. (A line holding CRLF itself is two lines.)"""
    text = b"".join(line + b"\r\n" for line in lines)
    return re.sub(rb"(?<=\r\n)\.|\A\.", b"..", text) + b".\r\n"


def meant(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


def session(port: int, body: bytes, *, pieces: int, rcpt: str,
            after: bytes = b"QUIT\r\n") -> bytes:
    """A raw SMTP session to ``port``: the envelope, then DATA's bytes and ``after`` (the next
    commands, pipelined behind the end) in ``pieces`` writes of their own; every byte the
    relay said until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies = _read_until(sock, b"220 ")
        sock.sendall(b"EHLO client.test\r\nMAIL FROM:<sender@example.test>\r\n"
                     b"RCPT TO:<" + rcpt.encode() + b">\r\nDATA\r\n")
        replies += _read_until(sock, b"354 ")
        stream = body + after
        size = max(1, -(-len(stream) // pieces))
        for start in range(0, len(stream), size):
            sock.sendall(stream[start:start + size])
            time.sleep(0.005)  # each write in a segment of its own, mostly
        sock.settimeout(20)
        while chunk := sock.recv(65536):
            replies += chunk
    return replies


def _read_until(sock: socket.socket, code: bytes) -> bytes:
    data = b""
    while not re.search(rb"(?m)^" + re.escape(code), data):
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def queue_ids(replies: bytes) -> list[str]:
    return [match.decode() for match in re.findall(rb"queued as ([0-9A-F]+)", replies)]


def after_received(content: bytes) -> bytes:
    """The message without the relay's Received field (its first line and the folded ones)."""
    assert content.startswith(b"Received: from client.test ([127.0.0.1])\r\n"), content[:80]
    return re.sub(rb"\AReceived:.*?\r\n(?:[ \t].*?\r\n)*", b"", content, count=1, flags=re.S)


def test_what_the_client_sent_is_stored_and_delivered_byte_for_byte(tmp_path: Path) -> None:
    config = base_config(0, retry={"intervals": [0.3], "max_queue_lifetime": 3600})
    sent: dict[str, tuple[str, bytes]] = {}  # queue id → (recipient, the message meant)
    with Sink() as sink:
        config["routes"] = {"*": f"127.0.0.1:{sink.port}"}
        sink.tempfail_all = True  # kept in the spool until read there
        with relay(tmp_path, config) as running:
            for number, (name, lines) in enumerate(BODIES):
                for pieces in (1, 3, 40):
                    rcpt = f"{name}-{pieces}@x{number}.test"
                    replies = session(running.port, stuffed(lines), pieces=pieces, rcpt=rcpt)
                    (queue_id,) = queue_ids(replies)
                    assert replies.endswith(
                        f"250 2.0.0 Ok: queued as {queue_id}\r\n221 Bye\r\n".encode()), replies
                    sent[queue_id] = (rcpt, meant(lines))
            spool = Spool.open(tmp_path / "spool")
            stored = {queue_id: spool.read_content(queue_id) for queue_id in sent}
            assert {q: after_received(c) for q, c in stored.items()} == {
                q: message for q, (_, message) in sent.items()}
            sink.tempfail_all = False
            wait_until(lambda: len(sink.messages) == len(sent), what="every delivery")
            assert running.stop() == 0
        received = {message.rcpts: message.content for message in sink.messages}
    # the next hop gets the stored bytes as SMTP carries them: every line end CRLF
    assert received == {(rcpt,): normalize_message_line_endings(stored[queue_id])
                        for queue_id, (rcpt, _) in sent.items()}
    assert list((tmp_path / "spool" / "queue").iterdir()) == []


def test_pipelined_transactions_behind_the_end_and_one_over_the_line_limit(
        tmp_path: Path) -> None:
    """A client that sends its next transaction (RFC 2920) behind DATA's end, in the same
    segment: both stored; a line one byte over the limit refused with 500 and the session
    going on; an empty message stored as the Received field alone."""
    second = (b"MAIL FROM:<sender@example.test>\r\nRCPT TO:<two@x.test>\r\nDATA\r\n"
              b"Subject: two\r\n\r\n..two\r\n.\r\n")
    too_long = (b"MAIL FROM:<sender@example.test>\r\nRCPT TO:<three@x.test>\r\nDATA\r\n"
                + b"z" * 1000 + b"\r\n.\r\n")  # 1002 bytes with its CRLF: over 1001
    empty = b"MAIL FROM:<sender@example.test>\r\nRCPT TO:<four@x.test>\r\nDATA\r\n.\r\n"
    with Sink() as sink:
        sink.tempfail_all = True
        with relay(tmp_path, base_config(sink.port)) as running:
            replies = session(running.port, b"Subject: one\r\n\r\none\r\n.\r\n", pieces=1,
                              rcpt="one@x.test", after=second + too_long + empty + b"QUIT\r\n")
            spool = Spool.open(tmp_path / "spool")
            contents = [after_received(spool.read_content(q)) for q in queue_ids(replies)]
            running.stop(signal.SIGKILL)
    assert replies.count(b"354 End data") == 4
    assert b"500 Line too long (see RFC5321 4.5.3.1.6)\r\n" in replies
    assert replies.endswith(b"221 Bye\r\n")
    assert contents == [b"Subject: one\r\n\r\none\r\n", b"Subject: two\r\n\r\n.two\r\n", b""]


def test_a_client_that_leaves_mid_data_leaves_nothing_and_a_large_message_goes_whole(
        tmp_path: Path) -> None:
    big_lines = [b"Subject: big", b""] + [
        (b".%07d " % n) + bytes(range(32, 127)) * 9 for n in range(6000)]  # about 5.3 MiB
    with Sink() as sink, relay(tmp_path, base_config(
            sink.port, max_message_size=8 * 1024 * 1024)) as running:
        with socket.create_connection(("127.0.0.1", running.port), timeout=20) as sock:
            _read_until(sock, b"220 ")
            sock.sendall(b"EHLO client.test\r\nMAIL FROM:<s@example.test>\r\n"
                         b"RCPT TO:<gone@x.test>\r\nDATA\r\n")
            _read_until(sock, b"354 ")
            sock.sendall(b"Subject: half\r\n\r\nno end\r\n.")  # no CRLF after the dot
        replies = session(running.port, stuffed(big_lines), pieces=7, rcpt="big@x.test")
        assert len(queue_ids(replies)) == 1, replies[-200:]
        wait_until(lambda: len(sink.messages) == 1, what="the large message delivered")
        assert running.stop() == 0
    (message,) = sink.messages
    assert message.rcpts == ("big@x.test",)
    assert after_received(message.content) == meant(big_lines)
    assert "gone@x.test" not in (tmp_path / "relay.log").read_text()
