"""aiosmtpd's SMTP protocol with the DSN extension and two fast paths; replies and limits are
otherwise aiosmtpd's.

* DSN (RFC 3461, when enabled): EHLO advertises ``DSN``; the ``RET``/``ENVID`` parameters of
  ``MAIL FROM`` and ``NOTIFY``/``ORCPT`` of ``RCPT TO`` are taken out of the command before
  aiosmtpd sees it (it upper-cases parameters, and xtext is case-sensitive), checked
  (``501 5.5.4 <what is wrong>``), and kept in the :class:`DsnEnvelope`.

* ``_getaddr``: aiosmtpd runs the email package's full RFC 5322 parser on every MAIL and RCPT
  address. A plain ``<local@domain>`` (then parameters) gives the same result with one regular
  expression; anything else still goes to the full parser. A property test checks both agree.
* ``smtp_DATA``: aiosmtpd reads the message one line per ``readuntil`` call. Here the chunks
  the socket delivers go from ``data_received`` straight into a :class:`DataScanner`, which
  looks for the end (``CRLF . CRLF``); the session's task wakes once, at the end. (Through the
  StreamReader every chunk was copied twice, and a message longer than twice its line limit
  paused and resumed the socket's reading: two ``epoll_ctl`` calls a message.) The size limit
  (552), the line length limit (500) and dot-unstuffing are applied to the whole message at
  the end, as aiosmtpd does line by line.

Both measured as the largest costs of the relay's inbound side.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import re
from base64 import b64decode
from collections.abc import Callable
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, TypeVar

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, syntax

from mta_logging.relay.dsn_params import (
    MAIL_KEYWORDS,
    NO_MAIL_DSN,
    RCPT_KEYWORDS,
    MailDsn,
    ParameterError,
    RcptDsn,
    mail_dsn,
    rcpt_dsn,
    split_parameters,
)
from mta_logging.relay.limits import ConnectionLimits
from mta_logging.relay.passwords import PasswordChecker

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# parameters may not start with "(": the full parser reads that as a comment and drops it
_PLAIN_ADDRESS = re.compile(
    rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    r"(?:[ \t]+([^\s(](?:.*\S)?))?")
# the parser's defects for a path it read as another mailbox than the client wrote
_REWRITING_DEFECTS = frozenset({"missing '.' between words", "missing trailing '>' on angle-addr"})
_DSN_KEYWORD = re.compile(r"\s(?:RET|ENVID|NOTIFY|ORCPT)=", re.IGNORECASE)
END_OF_DATA = b"\r\n.\r\n"
# Bytes asked of one recv() on asyncio's transport: its own 256 KiB is above glibc's mmap
# threshold, so every read was an mmap, an mremap (the bytes cut to what came) and a munmap.
RECV_SIZE = 64 * 1024

# More than the StreamReader ever buffers (it pauses the socket past twice its line limit plus
# one receive), so one read drains it.
_READ_SIZE = 1 << 20
_Dsn = TypeVar("_Dsn", MailDsn, RcptDsn)
MAX_AUTH_FAILURES = 3  # per connection; the last one is answered 421 and the connection closed


class DataScanner:
    """Collects the bytes of DATA until ``CRLF . CRLF``; keeps nothing past ``size_limit``.

    ``feed`` returns None while the end has not been seen, then the bytes that followed it.
    ``result`` gives (content, None) with dot-stuffing undone, or (None, error reply).
    """

    def __init__(self, size_limit: int | None, line_limit: int) -> None:
        self.size_limit = size_limit or 0
        self.line_limit = line_limit
        self._parts: list[bytes] = []
        self._size = 0
        self._tail = b"\r\n"  # the end marker's first CRLF may be the one before DATA's body
        self._too_much = False
        self._trim = 0

    def feed(self, chunk: bytes) -> bytes | None:
        window = self._tail + chunk
        end = window.find(END_OF_DATA)
        if end < 0:
            self._keep(chunk)
            self._tail = window[-4:]
            return None
        cut = end + 2 - len(self._tail)  # the CRLF before the dot belongs to the message
        if cut >= 0:
            self._keep(chunk[:cut])
        else:
            self._trim = -cut  # part of the end marker ("." or ".\r") was kept already
            self._size += cut
        return chunk[end + 5 - len(self._tail):]

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._too_much:
            return
        if self.size_limit and self._size > self.size_limit + 4:
            self._too_much = True
            self._parts.clear()
        else:
            self._parts.append(data)

    def result(self) -> tuple[bytes | None, str | None]:
        if self._too_much or (self.size_limit and self._size > self.size_limit):
            return None, "552 Error: Too much mail data"
        raw = b"".join(self._parts)
        if self._trim:
            raw = raw[: -self._trim]
        if raw and max(map(len, raw.split(b"\r\n"))) + 2 > self.line_limit:
            return None, "500 Line too long (see RFC5321 4.5.3.1.6)"
        if raw.startswith(b"."):
            raw = raw[1:]
        return raw.replace(b"\r\n.", b"\r\n"), None


class DsnEnvelope(Envelope):
    """aiosmtpd's envelope with the DSN parameters: ``mail_dsn`` of MAIL FROM, ``rcpt_dsn``
    one per accepted recipient (in the order of ``rcpt_tos``)."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_dsn = NO_MAIL_DSN
        self.rcpt_dsn: list[RcptDsn] = []


def _parsed_path(arg: str) -> tuple[str | None, str | None]:
    """The address and the rest of ``arg`` as aiosmtpd's ``_getaddr`` reads them (the email
    package's RFC 5322 parser), except that a path the parser had to rewrite into another
    mailbox is refused as malformed (None: aiosmtpd's ``553 5.1.3``): words apart (``<a b@x>``,
    ``<a<TAB>b@x>`` read as ``"a b"@x``) or no closing ``>``."""
    if not arg:
        return "", ""
    try:
        parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
        token, rest = parse(arg)
    except HeaderParseError:
        return None, None
    if any(str(defect) in _REWRITING_DEFECTS for defect in token.all_defects):
        return None, None
    address: str = token.addr_spec
    return address, rest


class RelaySMTP(SMTP):
    """The relay's SMTP protocol (see the module docstring).

    ``dsn``: offer the DSN extension (RFC 3461). ``limits``: a connection past them hears the
    refusal (``421 4.7.0``) and is closed at once, before a session exists. ``passwords``:
    checks AUTH credentials; after :data:`MAX_AUTH_FAILURES` failures the client hears
    ``421 4.7.0`` and is disconnected.
    """

    _refused = False
    _client_ip: str | None = None  # counted in limits while the connection is open
    _auth_failures = 0
    # while the bytes of DATA are read: the scanner data_received feeds, and the future it
    # completes at their end
    _scanner: DataScanner | None = None
    _data_end: asyncio.Future[None] | None = None

    def __init__(self, handler: Any, *, limits: ConnectionLimits | None = None,
                 passwords: PasswordChecker | None = None, dsn: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.passwords = passwords
        self.dsn = dsn
        # aiosmtpd keeps these in one dictionary for every connection (a class attribute that
        # each new connection clears); this connection's own
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        # aiosmtpd lets an EHLO hook replace its reply; the relay's handler has none, so the
        # hook here (see _call_handler_hook) adds DSN to the list.
        self._advertise_dsn = dsn and self._ehlo_hook_ver is None
        if self._advertise_dsn:
            self._ehlo_hook_ver = "new"

    def _create_envelope(self) -> DsnEnvelope:
        return DsnEnvelope()

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "EHLO" and self._advertise_dsn:
            hostname, responses = args
            assert self.session is not None
            self.session.host_name = hostname
            # RFC 3461 §4: RET and ENVID lengthen MAIL by up to 110, NOTIFY and ORCPT RCPT by 520
            self.command_size_limits["MAIL"] += 110
            self.command_size_limits["RCPT"] += 520
            return [*responses[:-1], "250-DSN", responses[-1]]
        return await super()._call_handler_hook(command, *args)

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        split = await self._split_dsn(arg, "FROM:", MAIL_KEYWORDS, mail_dsn)
        if split is None:
            return
        rest, parameters = split
        assert self.envelope is not None
        before = self.envelope.mail_from
        await super().smtp_MAIL(rest)
        if isinstance(self.envelope, DsnEnvelope) and self.envelope.mail_from and not before:
            self.envelope.mail_dsn = parameters

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        split = await self._split_dsn(arg, "TO:", RCPT_KEYWORDS, rcpt_dsn)
        if split is None:
            return
        rest, parameters = split
        assert self.envelope is not None
        before = len(self.envelope.rcpt_tos)
        await super().smtp_RCPT(rest)
        if isinstance(self.envelope, DsnEnvelope) and len(self.envelope.rcpt_tos) > before:
            self.envelope.rcpt_dsn.append(parameters)

    async def _split_dsn(self, arg: str | None, keyword: str, keywords: tuple[str, ...],
                         parse: Callable[[dict[str, str]], _Dsn]
                         ) -> tuple[str | None, _Dsn] | None:
        """The command's argument without its DSN parameters, and those as ``parse`` makes
        them; None when one is malformed, after the client heard ``501 5.5.4``."""
        try:
            rest, found = self._without_dsn(arg, keyword, keywords)
            return rest, parse(found)
        except ParameterError as exc:
            await self.push(f"501 5.5.4 {exc}")
            return None

    def _without_dsn(self, arg: str | None, keyword: str, keywords: tuple[str, ...]
                     ) -> tuple[str | None, dict[str, str]]:
        """The command's argument without its DSN parameters, and those (keyword → value);
        ``(arg, {})`` when there are none or DSN is off. :class:`ParameterError` for a
        repeated one."""
        if (not self.dsn or arg is None or self.session is None
                or not self.session.extended_smtp or not _DSN_KEYWORD.search(arg)):
            return arg, {}  # the address is parsed once, by aiosmtpd, in the common case
        stripped = self._strip_command_keyword(keyword, arg)
        if stripped is None:
            return arg, {}
        address, params = self._getaddr(stripped)
        if not address or not params or not stripped.endswith(params):
            return arg, {}
        found, others = split_parameters(params.split(), keywords)
        if not found:
            return arg, {}
        head = stripped[: len(stripped) - len(params)].rstrip()
        return " ".join([keyword + head, *others]), found

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if hasattr(transport, "max_size"):  # asyncio's socket transport; uvloop has none
            transport.max_size = RECV_SIZE
        if self.limits is not None and self.transport is None:  # not the STARTTLS hand-over
            peer = transport.get_extra_info("peername")
            client_ip = str(peer[0]) if peer else ""
            refusal = self.limits.admit(client_ip)
            if refusal is not None:
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(refusal.encode("ascii") + b"\r\n")
                transport.close()
                return
            self._client_ip = client_ip
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self.limits is not None and self._client_ip is not None:
            self.limits.release(self._client_ip)
            self._client_ip = None
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        scanner = self._scanner
        if scanner is None:
            super().data_received(data)
            return
        self._reset_timeout()
        after = scanner.feed(data)
        if after is None:
            return
        self._scanner = None
        if after:
            super().data_received(after)  # a client that did not wait for the reply
        if self._data_end is not None and not self._data_end.done():
            self._data_end.set_result(None)

    def eof_received(self) -> bool | None:
        return False if self._refused else super().eof_received()

    # AUTH: aiosmtpd's PLAIN and LOGIN exchanges, with the credentials checked by
    # ``passwords`` (off the event loop, see PasswordChecker) and MAX_AUTH_FAILURES per
    # connection; no checker: every attempt fails.

    async def auth_PLAIN(self, _: SMTP, args: list[str]) -> AuthResult:
        blob = await self._auth_response(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        return await self._check(login, password, authzid)

    async def auth_LOGIN(self, _: SMTP, args: list[str]) -> AuthResult:
        login = await self._auth_response(args, self.AuthLoginUsernameChallenge)
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self._auth_response(args[:1], self.AuthLoginPasswordChallenge)
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._check(login, password)

    async def _auth_response(self, args: list[str], challenge: str) -> bytes | None:
        """The client's decoded answer (the initial response, or one to ``challenge``); None
        when it was refused (aborted, not base64) and the reply is sent."""
        if len(args) == 1:
            answer = await self.challenge_auth(challenge)
            return None if answer is MISSING else answer
        try:
            return b64decode(args[1].encode(), validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 Can't decode base64")
            return None

    async def _check(self, login: bytes, password: bytes, authzid: bytes = b"") -> AuthResult:
        assert self.session is not None
        client_ip = str(self.session.peer[0]) if self.session.peer else ""
        user = None if self.passwords is None else await self.passwords.check(
            client_ip, login, password, authzid)
        if user is not None:
            return AuthResult(success=True, auth_data=user)
        self._auth_failures += 1
        if self._auth_failures < MAX_AUTH_FAILURES:
            return AuthResult(success=False, handled=False)  # 535 5.7.8
        await self.push(f"421 4.7.0 {self.hostname} Too many authentication failures")
        if self.transport is not None:  # None: the client left during the backoff
            self.transport.close()
        return AuthResult(success=False, handled=True)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _PLAIN_ADDRESS.fullmatch(arg)
        address, rest = (match.group(1), match.group(2) or "") if match else _parsed_path(arg)
        if (address and self.local_part_limit
                and len(address.rpartition("@")[0]) > self.local_part_limit):
            return None, None
        return address, rest

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        scanner = DataScanner(self.data_size_limit, self.line_length_limit)
        try:
            await self._read_data(scanner)
        except asyncio.CancelledError:
            self._writer.close()  # the connection was lost during DATA
            raise
        content, error = scanner.result()
        if error is not None:
            self._set_post_data_state()
            await self.push(error)
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self, scanner: DataScanner) -> None:
        """Feed ``scanner`` up to the end of DATA: first what the StreamReader holds already
        (a client that sent on without waiting for the 354), then the chunks data_received
        hands it; the bytes after the end go back to the StreamReader (the next commands)."""
        reader = self._reader
        if reader._buffer:  # type: ignore[attr-defined]  # asyncio's has no public length
            after = scanner.feed(await reader.read(_READ_SIZE))  # resumes a paused socket
            if after is not None:
                if after and not reader.at_eof():
                    reader.feed_data(after)
                return
        self._data_end = self.loop.create_future()
        self._scanner = scanner
        try:
            await self._data_end
        finally:
            self._scanner = None
            self._data_end = None
