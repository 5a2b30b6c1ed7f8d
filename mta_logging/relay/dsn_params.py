"""The SMTP parameters of the DSN extension (RFC 3461): parsing, checking, encoding. Pure.

``MAIL FROM`` takes ``RET=FULL|HDRS`` and ``ENVID=<xtext>`` (at most 100 characters, §4.4);
``RCPT TO`` takes ``NOTIFY=NEVER`` or a list of ``SUCCESS``, ``FAILURE``, ``DELAY`` and
``ORCPT=<addr-type>;<xtext>`` (at most 500 characters, §4.2). Values are kept decoded (the
ENVID and the original address as the client meant them) and encoded again to be passed on.
A malformed value raises :class:`ParameterError`, whose text is what is wrong (the server
answers ``501 5.5.4 <text>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mta_logging.errors import MtaLoggingError

RET_VALUES = ("FULL", "HDRS")
NOTIFY_VALUES = ("SUCCESS", "FAILURE", "DELAY")
NEVER = "NEVER"
MAX_ENVID = 100
MAX_ORCPT = 500
MAIL_KEYWORDS = ("RET", "ENVID")
RCPT_KEYWORDS = ("NOTIFY", "ORCPT")
_HEXCHAR = re.compile(r"\+([0-9A-F]{2})")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")


class ParameterError(MtaLoggingError, ValueError):
    """A DSN parameter that is malformed, repeated or too long; the text says which and why."""


@dataclass(frozen=True, slots=True)
class MailDsn:
    """The DSN parameters of ``MAIL FROM``: ``ret`` FULL/HDRS, ``envid`` decoded (None: not
    given)."""

    ret: str | None = None
    envid: str | None = None

    def options(self) -> list[str]:
        """The parameters as a ``MAIL FROM`` to the next hop carries them."""
        options = [] if self.ret is None else [f"RET={self.ret}"]
        if self.envid:  # an empty value is no esmtp-value (RFC 5321 §4.1.2)
            options.append(f"ENVID={xtext_encode(self.envid)}")
        return options


@dataclass(frozen=True, slots=True)
class RcptDsn:
    """The DSN parameters of one ``RCPT TO``: ``notify`` (None: not given, which means
    FAILURE, and DELAY at the relay's choice; ``("NEVER",)``; or some of SUCCESS, FAILURE,
    DELAY), ``orcpt`` as ``addr-type;address`` with the address decoded (None: not given)."""

    notify: tuple[str, ...] | None = None
    orcpt: str | None = None

    def wants(self, event: str) -> bool:
        """Whether the sender asked to hear about ``event`` (SUCCESS, FAILURE, DELAY) for this
        recipient; DELAY when NOTIFY was not given is the relay's choice, so False here."""
        if self.notify is None:
            return event == "FAILURE"
        return event in self.notify

    def options(self) -> list[str]:
        """The parameters as a ``RCPT TO`` to the next hop carries them."""
        options = [] if self.notify is None else ["NOTIFY=" + ",".join(self.notify)]
        if self.orcpt is not None:
            addr_type, _, address = self.orcpt.partition(";")
            options.append(f"ORCPT={addr_type};{xtext_encode(address)}")
        return options


NO_MAIL_DSN = MailDsn()
NO_RCPT_DSN = RcptDsn()


def xtext_encode(text: str) -> str:
    """``text`` as RFC 3461 xtext: ``+``, ``=``, controls, space and non-ASCII as ``+XX``
    (non-ASCII characters by their UTF-8 bytes)."""
    return "".join(
        char if "!" <= char <= "~" and char not in "+=" else
        "".join(f"+{byte:02X}" for byte in char.encode("utf-8", "surrogateescape"))
        for char in text)


def xtext_decode(text: str) -> str:
    """The text that the xtext ``text`` encodes; :class:`ParameterError` if it is not xtext
    (a character outside ``!`` to ``~``, a bare ``=``, a ``+`` not followed by two upper-case
    hex digits)."""
    for char in _HEXCHAR.sub("", text):
        if not "!" <= char <= "~" or char in "+=":
            raise ParameterError(f"{text!a} is not xtext (RFC 3461 section 4): {char!a} must be "
                                 "written as +XX, + as two upper-case hex digits")
    data = _HEXCHAR.sub(lambda match: chr(int(match.group(1), 16)), text)
    return data.encode("latin-1").decode("utf-8", "surrogateescape")


def split_parameters(tokens: Iterable[str], keywords: Sequence[str]
                     ) -> tuple[dict[str, str], list[str]]:
    """The parameters named by ``keywords`` (keyword upper-cased → value as given) and the
    other tokens, in their order; :class:`ParameterError` if one of ``keywords`` appears twice
    or without a value."""
    found: dict[str, str] = {}
    others = []
    for token in tokens:
        keyword, equals, value = token.partition("=")
        keyword = keyword.upper()
        if keyword not in keywords:
            others.append(token)
            continue
        if keyword in found:
            raise ParameterError(f"duplicate {keyword} parameter")
        if not equals or not value:
            raise ParameterError(f"{keyword} needs a value")
        found[keyword] = value
    return found, others


def mail_dsn(found: dict[str, str]) -> MailDsn:
    """The ``MAIL FROM`` DSN parameters from :func:`split_parameters` (``MAIL_KEYWORDS``)."""
    if not found:
        return NO_MAIL_DSN  # the common case, at every MAIL
    ret = found.get("RET")
    if ret is not None and ret.upper() not in RET_VALUES:
        raise ParameterError(f"RET={ret} is not valid; expected RET=FULL or RET=HDRS")
    envid = found.get("ENVID")
    if envid is not None and len(envid) > MAX_ENVID:
        raise ParameterError(f"ENVID is {len(envid)} characters long; at most {MAX_ENVID} "
                             "are allowed (RFC 3461 section 4.4)")
    return MailDsn(ret=None if ret is None else ret.upper(),
                   envid=None if envid is None else _decoded("ENVID", envid))


def rcpt_dsn(found: dict[str, str]) -> RcptDsn:
    """The ``RCPT TO`` DSN parameters from :func:`split_parameters` (``RCPT_KEYWORDS``)."""
    if not found:
        return NO_RCPT_DSN  # the common case, at every RCPT
    notify = found.get("NOTIFY")
    orcpt = found.get("ORCPT")
    return RcptDsn(notify=None if notify is None else _notify(notify),
                   orcpt=None if orcpt is None else _orcpt(orcpt))


def _notify(value: str) -> tuple[str, ...]:
    items = [item.upper() for item in value.split(",")]
    if items == [NEVER]:
        return (NEVER,)
    if NEVER in items:
        raise ParameterError(f"NOTIFY={value} is not valid; NEVER cannot be combined with "
                             "other values")
    for item in items:
        if item not in NOTIFY_VALUES:
            raise ParameterError(f"NOTIFY={value} is not valid; expected NEVER or a list of "
                                 + ", ".join(NOTIFY_VALUES))
    if len(set(items)) != len(items):
        raise ParameterError(f"NOTIFY={value} is not valid; a value is repeated")
    return tuple(items)


def _orcpt(value: str) -> str:
    if len(value) > MAX_ORCPT:
        raise ParameterError(f"ORCPT is {len(value)} characters long; at most {MAX_ORCPT} are "
                             "allowed (RFC 3461 section 4.2)")
    addr_type, semicolon, address = value.partition(";")
    if not semicolon or not _ADDR_TYPE.fullmatch(addr_type) or not address:
        raise ParameterError(f"ORCPT={value} is not valid; expected addr-type;xtext such as "
                             "rfc822;user@example.com")
    return f"{addr_type.lower()};{_decoded('ORCPT', address)}"


def _decoded(keyword: str, value: str) -> str:
    try:
        return xtext_decode(value)
    except ParameterError as exc:
        raise ParameterError(f"{keyword}: {exc}") from None
