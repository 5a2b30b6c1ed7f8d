"""Pure functions on message bytes: reading the header fields, writing a ``Received:`` field."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from email.utils import formatdate

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_RECEIVED = re.compile(rb"^received:", re.IGNORECASE | re.MULTILINE)
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_UNSAFE = re.compile(r"[^\x21-\x7e]")


def parse_headers(content: bytes) -> dict[str, str]:
    """The header fields of a message: name → unfolded value of its first occurrence.

    Bytes that are not UTF-8 are kept as lone surrogates (``surrogateescape``), which the
    accounting formatters write as ``\\xNN``; nothing here can fail on what a sender sent.
    """
    block = header_section(content)
    headers: dict[str, str] = {}
    for line in _FOLD.sub("", block.decode("utf-8", "surrogateescape")).splitlines():
        name, colon, value = line.partition(":")
        name = name.strip()
        if colon and name and name not in headers:
            headers[name] = value.strip()
    return headers


def header_section(content: bytes) -> bytes:
    """The message's header section, without the empty line that ends it."""
    end = _HEADER_END.search(content)
    return content[: end.start()] if end else content


class MessageHeaders(Mapping[str, str]):
    """A message's header fields as a read-only mapping, parsed on first use.

    Accounting records carry the headers for ``custom_<Header>`` fields, which most
    configurations do not use; then the header block is never parsed at all.
    """

    __slots__ = ("_block", "_fields")

    def __init__(self, content: bytes) -> None:
        self._block = header_section(content)
        self._fields: dict[str, str] | None = None

    def _parsed(self) -> dict[str, str]:
        if self._fields is None:
            self._fields = parse_headers(self._block)
            self._block = b""
        return self._fields

    def __getitem__(self, name: str) -> str:
        return self._parsed()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())


def hop_count(content: bytes) -> int:
    """How many ``Received:`` fields the message carries (RFC 5321 §6.3 loop detection)."""
    end = _HEADER_END.search(content)
    return len(_RECEIVED.findall(content, 0, end.start() if end else len(content)))


def protocol_name(*, esmtp: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """The ``with`` keyword of a Received field (RFC 3848, RFC 6531)."""
    if not esmtp:
        return "SMTP"
    return ("UTF8SMTP" if smtputf8 else "ESMTP") + ("S" if tls else "") + (
        "A" if authenticated else "")


def received_header(*, hostname: str, queue_id: str, client_ip: str | None,
                    client_helo: str | None, protocol: str, rcpts: tuple[str, ...],
                    when: float) -> bytes:
    """A ``Received:`` field (RFC 5321 §4.4) for the top of an accepted message."""
    helo = _safe(client_helo or "unknown")
    text = (f"Received: from {helo} ([{client_ip or 'unknown'}])\r\n"
            f"\tby {hostname} (mta-logging) with {protocol} id {queue_id}")
    if len(rcpts) == 1:
        text += f"\r\n\tfor <{_safe(rcpts[0])}>"
    text += f"; {_date(int(when))}\r\n"
    return text.encode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=2)
def _date(second: int) -> str:
    """RFC 5322 date-time of ``second`` in local time (``formatdate`` drops the fraction):
    one ``formatdate`` a second rather than one a message."""
    return formatdate(second, localtime=True)


def _safe(text: str) -> str:
    """Printable ASCII only: a HELO name or address cannot break the header's structure."""
    return _UNSAFE.sub("?", text)
