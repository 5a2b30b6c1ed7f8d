"""The relay's fast paths give exactly what aiosmtpd's own code gives."""

from __future__ import annotations

import asyncio

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given
from hypothesis import strategies as st

from mta_logging.relay.smtpd import _PLAIN_ADDRESS, DataScanner, RelaySMTP

line_bytes = st.binary(max_size=30).filter(lambda b: b"\r\n" not in b)
# Lines from an alphabet that makes dots, bare CR and bare LF common.
tricky_lines = st.lists(st.sampled_from([b".", b"\r", b"\n", b"a", b" "]), max_size=8).map(
    b"".join).filter(lambda b: b"\r\n" not in b)


def stuffed(lines: list[bytes]) -> bytes:
    """What a client sends after DATA: dot-stuffed lines, then the end marker."""
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                    for line in lines) + b".\r\n"


def scan(stream: bytes, cuts: list[int], size_limit: int = 0, line_limit: int = 1001
         ) -> tuple[bytes | None, str | None, bytes]:
    scanner = DataScanner(size_limit, line_limit)
    points = sorted({min(c, len(stream)) for c in cuts}) + [len(stream)]
    start = 0
    for point in points:
        after = scanner.feed(stream[start:point]) if point > start else None
        start = point
        if after is not None:
            content, error = scanner.result()
            return content, error, after + stream[point:]
    raise AssertionError("end of data not found")


@given(lines=st.lists(line_bytes | tricky_lines, max_size=12),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
       extra=st.sampled_from([b"", b"QUIT\r\n", b"MAIL FROM:<a@b>\r\n"]))
def test_any_chunking_gives_back_the_message_and_what_followed(lines, cuts, extra):
    content, error, after = scan(stuffed(lines) + extra, cuts)
    assert error is None
    assert content == b"".join(line + b"\r\n" for line in lines)
    assert after == extra


@given(lines=st.lists(line_bytes, max_size=10), limit=st.integers(min_value=1, max_value=200),
       cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=4))
def test_size_limit_counts_the_bytes_sent(lines, limit, cuts):
    sent = stuffed(lines)
    _, error, _ = scan(sent, cuts, size_limit=limit)
    too_much = len(sent) - 3 > limit  # the end marker does not count
    assert (error == "552 Error: Too much mail data") == too_much


def test_line_length_limit():
    assert scan(stuffed([b"x" * 998]), [])[1] is None
    assert scan(stuffed([b"x" * 1000]), [500])[1] == "500 Line too long (see RFC5321 4.5.3.1.6)"


def test_an_empty_message():
    assert scan(b".\r\n", []) == (b"", None, b"")
    assert scan(b".\r\nQUIT\r\n", [1, 2]) == (b"", None, b"QUIT\r\n")


@given(st.from_regex(_PLAIN_ADDRESS, fullmatch=True))
def test_plain_addresses_parse_as_aiosmtpd_parses_them(arg):
    fast = RelaySMTP.__new__(RelaySMTP)
    fast.local_part_limit = 0
    assert fast._getaddr(arg) == SMTP._getaddr(fast, arg)


@pytest.mark.parametrize("arg", ["<>", '<"quoted local"@example.com>', "user@example.com",
                                 "<@route:a@b.test>", "<a@[192.0.2.1]>", "<a@b..c>",
                                 "<0@0> (", "<a@b.test> (comment) SIZE=10"])
def test_other_addresses_still_use_the_full_parser(arg):
    fast = RelaySMTP.__new__(RelaySMTP)
    fast.local_part_limit = 0
    assert fast._getaddr(arg) == SMTP._getaddr(fast, arg)


@pytest.mark.parametrize("arg", ["<a b@x.test>", "<a\tb@x.test>", "<a@x.test", "<a@x.test SIZE=1"])
def test_a_path_the_full_parser_would_read_as_another_mailbox_is_refused(arg):
    """aiosmtpd's parser reads ``<a b@x.test>`` as ``"a b"@x.test``: a mailbox the client
    did not write. None is what aiosmtpd's own ``_getaddr`` gives for a bad path (553 5.1.3)."""
    fast = RelaySMTP.__new__(RelaySMTP)
    fast.local_part_limit = 0
    assert SMTP._getaddr(fast, arg)[0] is not None
    assert fast._getaddr(arg) == (None, None)


class _Capture:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.contents.append(envelope.original_content)
        return "250 OK"


async def _connect(protocol: type[SMTP], handler: _Capture
                   ) -> tuple[asyncio.Server, asyncio.StreamReader, asyncio.StreamWriter]:
    """``protocol`` serving ``handler`` on a port of 127.0.0.1 (200-byte data limit), and a
    connection to it."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: protocol(handler, hostname="t", data_size_limit=200, loop=loop), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return server, reader, writer


async def _session(protocol: type[SMTP], payload: bytes) -> tuple[list[bytes], list[bytes]]:
    """Send a whole SMTP session (as raw bytes) to ``protocol``; the replies and contents."""
    handler = _Capture()
    server, reader, writer = await _connect(protocol, handler)

    async def reply() -> bytes:
        lines = [await asyncio.wait_for(reader.readline(), 5)]
        while lines[-1][3:4] == b"-":
            lines.append(await asyncio.wait_for(reader.readline(), 5))
        return b"".join(lines)

    replies = [await reply()]
    for command in payload.split(b"\x00"):
        writer.write(command)
        replies.append(await reply())
    writer.close()
    server.close()
    return replies, handler.contents


@pytest.mark.parametrize("body", [
    b"Subject: hi\r\n\r\nplain\r\n",
    b"..leading dots\r\n.\r\n".replace(b"\r\n.\r\n", b"\r\n..\r\n"),
    b"",
    b"x" * 300 + b"\r\n",            # too much data for the 200-byte limit
    b"y" * 150 + b"\r\n" + b"z" * 10 + b"\r\n",
])
async def test_same_replies_and_content_as_aiosmtpd(body):
    session = (b"EHLO c\r\n\x00MAIL FROM:<a@b.test>\r\n\x00RCPT TO:<c@d.test>\r\n\x00DATA\r\n\x00"
               + body + b".\r\n\x00NOOP\r\n")
    ours = await _session(RelaySMTP, session)
    theirs = await _session(SMTP, session)
    assert ours == theirs
    assert ours[0][-1] == b"250 OK\r\n"  # the session goes on normally after DATA


async def _unwaited_session(protocol: type[SMTP], writes: list[bytes]) -> tuple[bytes, list[bytes]]:
    """Send ``writes`` to ``protocol`` one after the other without waiting for a reply (the
    last one ends with QUIT); every byte the server replied until it closed, and the
    contents."""
    handler = _Capture()
    server, reader, writer = await _connect(protocol, handler)
    for data in writes:
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(0.01)  # each write its own segment, mostly
    replies = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    server.close()
    return replies, handler.contents


_UNWAITED = (b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
             b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nNOOP\r\nMAIL FROM:<e@f.test>\r\n"
             b"RCPT TO:<g@h.test>\r\nDATA\r\nsecond\r\n.\r\nQUIT\r\n")


@pytest.mark.parametrize("size", [len(_UNWAITED), 7])
async def test_a_client_that_does_not_wait_for_replies_hears_what_aiosmtpd_says(size):
    # the message in the same segments as the commands around it, or cut anywhere
    writes = [_UNWAITED[i:i + size] for i in range(0, len(_UNWAITED), size)]
    ours = await _unwaited_session(RelaySMTP, writes)
    assert ours == await _unwaited_session(SMTP, writes)
    assert ours[1] == [b"Subject: hi\r\n\r\n.dot\r\nbody\r\n", b"second\r\n"]
    assert ours[0].endswith(b"250 OK\r\n250 OK\r\n250 OK\r\n354 End data with <CR><LF>.<CR><LF>"
                            b"\r\n250 OK\r\n221 Bye\r\n")


class _Transport(asyncio.Transport):
    """A connection whose bytes the test hands to the protocol itself, in the pieces it
    chooses (TCP may cut a stream anywhere); what the protocol writes is kept."""

    def __init__(self, protocol: SMTP) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 2525), "sockname": ("127.0.0.1", 25)}.get(
            name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _pieces_session(protocol: type[SMTP], pieces: list[bytes], *, eof: bool = False,
                          size_limit: int = 200) -> tuple[bytes, list[bytes]]:
    """``pieces`` handed to ``protocol`` one by one, the session's task run between them (the
    client's end of the connection after them when ``eof``); every reply and the contents."""
    handler = _Capture()
    server = protocol(handler, hostname="t", data_size_limit=size_limit,
                      loop=asyncio.get_running_loop())
    transport = _Transport(server)
    server.connection_made(transport)

    async def run_session() -> None:
        for _ in range(8):
            await asyncio.sleep(0)

    await run_session()
    for piece in pieces:
        if transport.closed:
            break
        server.data_received(piece)
        await run_session()
    if eof and not transport.closed:
        server.eof_received()
    await run_session()
    transport.close()
    await run_session()
    return bytes(transport.written), handler.contents


# two transactions, the first message empty; dot-stuffing, bare CR and LF, NUL, 8-bit, a
# line of 999 bytes (1001 with CRLF: the limit), the next commands pipelined behind each end
_PIPELINED = (b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n.\r\n"
              b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
              b"..\r\n.a\r\nb\r.\r\n\n.\r\nc\n..\r\n\x00\xff\r\n\r\n...\r\n.\r\nNOOP\r\n"
              b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n" + b"x" * 150
              + b"\r\n" + b"y" * 999 + b"\r\n.\r\nQUIT\r\n")


async def test_the_stream_cut_at_any_offset_gives_what_aiosmtpd_gives():
    """Every way of cutting the session in two, and byte by byte: the same replies and
    contents as aiosmtpd's own DATA (the third message is too big for the 200-byte limit,
    and its last line is at the line limit)."""
    cuts = [[_PIPELINED[:at], _PIPELINED[at:]] for at in range(1, len(_PIPELINED))
            if at < 260 or at > len(_PIPELINED) - 20 or at % 97 == 0]
    cuts.append([_PIPELINED[at:at + 1] for at in range(len(_PIPELINED))])
    expected = await _pieces_session(SMTP, [_PIPELINED])
    assert expected[1] == [b"", b".\r\na\r\nb\r.\r\n\n.\r\nc\n..\r\n\x00\xff\r\n\r\n..\r\n"]
    assert expected[0].endswith(b"250 OK\r\n250 OK\r\n354 End data with <CR><LF>.<CR><LF>"
                                b"\r\n552 Error: Too much mail data\r\n221 Bye\r\n")
    for pieces in cuts:
        assert await _pieces_session(RelaySMTP, pieces) == expected, [len(p) for p in pieces]
        assert await _pieces_session(SMTP, pieces) == expected


@pytest.mark.parametrize("line", [b"z" * 999, b"z" * 1000])
async def test_a_line_at_the_limit_and_one_byte_over_as_aiosmtpd(line):
    session = (b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
               + line + b"\r\n.\r\nQUIT\r\n")
    for size in (len(session), 500, 7):
        pieces = [session[at:at + size] for at in range(0, len(session), size)]
        ours = await _pieces_session(RelaySMTP, pieces, size_limit=5000)
        assert ours == await _pieces_session(SMTP, pieces, size_limit=5000)
        assert ours[0].endswith(b"221 Bye\r\n")
    over = b"500 Line too long (see RFC5321 4.5.3.1.6)\r\n" in ours[0]
    assert over == (len(line) == 1000)
    assert ours[1] == ([] if over else [line + b"\r\n"])


async def test_a_client_that_leaves_mid_data_stores_nothing():
    session = (b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
               b"Subject: cut\r\n\r\nno end\r\n.")
    for at in range(len(session) - 20, len(session)):
        ours = await _pieces_session(RelaySMTP, [session[:at], session[at:]], eof=True)
        assert ours == await _pieces_session(SMTP, [session[:at], session[at:]], eof=True)
        assert ours[1] == []
