"""SMTP replies: the reply code, the RFC 3463 enhanced status and the text, parsed in one place.

Every part that reads a reply (the logger classifying a bounce, the relay turning a server's
answer into an outcome, the report normalising reasons, the classifier) takes it apart with
:func:`parse_reply`, so that "550-5.1.1 user unknown", "550 5.1.1 user unknown" and a
multi-line reply all mean the same code, status and text everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "WRAPPERS",
    "WRAPPER_MARKERS",
    "EmbeddedReply",
    "Reply",
    "find_reply",
    "has_status",
    "may_be_wrapped",
    "one_line",
    "parse_reply",
    "parse_status",
    "reply_codes",
    "single_spaced",
    "without_continuations",
]

# a reply starts with its code, then (optionally) the enhanced status, each followed by a space,
# a hyphen (a continuation line) or the end; "550 5.1.1" but not "550 5.1.10.2" (an address)
_START = re.compile(
    r"\s*(?P<code>[2-5][0-9]{2})(?![0-9])(?:[ -]+(?P<status>[245]\.[0-9]{1,3}\.[0-9]{1,3})"
    r"(?![0-9]|\.[0-9]))?"
)
_STATUS = re.compile(r"\s*([245])\.([0-9]{1,3})\.([0-9]{1,3})\s*\Z")

# A reply's parts, as a Reply holds them: built into one only at the end (a frozen dataclass
# costs about as much to build as parsing the reply does).
_Parts = tuple[int | None, str | None, str, str]


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply taken apart: ``code`` (``None`` when the text does not start with one),
    ``enhanced`` (``"5.1.1"``, ``None`` when absent) and ``text``, the rest of the reply on one
    line. ``head`` is the code and status exactly as written (``"550-5.1.1"``), ``""`` when the
    text starts with neither."""

    code: int | None
    enhanced: str | None
    text: str
    head: str = ""

    @property
    def kind_code(self) -> str:
        """``2``, ``4`` or ``5``: the reply's class, ``""`` when it has no code."""
        return str(self.code // 100) if self.code is not None else ""


def one_line(message: str) -> str:
    """A (possibly multi-line) reply on one line: the lines stripped and joined by one space."""
    if "\n" not in message and "\r" not in message:
        return message.strip()
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def single_spaced(text: str) -> str:
    """``text`` with its white space runs collapsed to one space and none at either end:
    ``" ".join(text.split())``, without the split for a text that is so already (no white
    space but single spaces between other characters: every other white space character is
    one that ``isprintable`` refuses)."""
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text
    return " ".join(text.split())


def parse_reply(message: str | None) -> Reply:
    """The code, the enhanced status and the text of a reply that starts with its code
    (``"550 5.1.1 <bob@example.org>: user unknown"``); a text that does not start with a code
    gives ``Reply(None, None, text)``. Never raises."""
    return Reply(*_parse(message))


def _parse(message: str | None) -> _Parts:
    if not message:
        return None, None, "", ""
    matched = _START.match(message)
    if matched is None:
        return None, None, one_line(message), ""
    rest = message[matched.end():]
    if rest[:1] == "-":  # "550-5.1.1-..." is unusual but a continuation marker all the same
        rest = rest[1:]
    code, status, head = matched.group("code", "status", 0)
    return int(code), status, one_line(rest), head.strip()


def parse_status(enhanced: str | None) -> tuple[str, str, str] | None:
    """An RFC 3463 status (``"5.1.1"``, surrounding white space allowed) as its three parts with
    leading zeros dropped (``("5", "1", "1")``); ``None`` when it is empty or not a status."""
    if not enhanced:
        return None
    matched = _STATUS.match(str(enhanced))
    if matched is None:
        return None
    klass, subject, detail = matched.groups()
    return klass, str(int(subject)), str(int(detail))


# "550-5.7.1 " at the start of each continuation line of a multi-line reply, once the reply has
# been joined into one line, splits phrases apart: "this message is 550-5.7.1 likely spam".
# (The look-behind after the first digit lets the search skip to the digits 2, 4 and 5.)
_CONTINUATION = re.compile(r"[245](?<![\w.-][245])[0-9]{2}-(?:[245]\.[0-9]{1,3}\.[0-9]{1,3} )?")


def without_continuations(text: str) -> str:
    """``text`` without the ``550-5.7.1`` prefixes of a multi-line reply's continuation lines,
    once its lines are joined: ``"this message is 550-5.7.1 likely spam"`` becomes ``"this
    message is likely spam"``."""
    return _CONTINUATION.sub("", text) if "-" in text else text


@dataclass(frozen=True, slots=True)
class EmbeddedReply:
    """A remote server's reply found in the text a mail system wrapped around it.

    ``reply`` is the remote server's reply (its ``text`` on one line, without continuation
    prefixes and without the wrapper's own words). ``wrapper`` names the shape it was found in
    (see :data:`WRAPPERS`); ``""`` when the text is the reply itself, or holds no reply at all
    (then ``reply.code`` is ``None`` and ``reply.text`` is the whole text). ``command`` is the
    SMTP step the reply answered, as the wrapper says it, in one vocabulary: ``connect``,
    ``helo``, ``mail``, ``rcpt``, ``data``; ``""`` when the wrapper does not say. ``host`` is
    the remote host the wrapper names, ``""`` when none.
    """

    reply: Reply
    wrapper: str = ""
    command: str = ""
    host: str = ""


@dataclass(frozen=True, slots=True)
class _Wrapper:
    name: str
    markers: tuple[str, ...]  # lower-case literals, one of which every text of this shape
    # contains: a cheap first test, so that most texts are searched by no pattern at all
    pattern: re.Pattern[str]  # its match ends where the reply starts


_REPLY_START = r"(?=[2-5][0-9]{2}(?![0-9])|[245]\.[0-9]{1,3}\.[0-9]{1,3}\b)"
_HOST = r"(?P<host>[\w.-]+)"

_WRAPPERS: tuple[_Wrapper, ...] = (
    # Exim: "SMTP error from remote mail server after RCPT TO:<jane@example.org>: host
    # mx.example.org [192.0.2.1]: 550 ...", the host line first in newer versions, also
    # quoted in a delay warning ("Delay reason: SMTP error ...").
    _Wrapper("exim", ("smtp error from remote",), re.compile(
        r"(?:host " + _HOST + r" \[[^\]]*\]:? )?SMTP error from remote (?:mail server|mailer"
        r"|server) after (?P<command>.+?):? (?:host (?P<host2>[\w.-]+) \[[^\]]*\]: )?"
        + _REPLY_START, re.IGNORECASE)),
    # Postfix: "host mx.example.org[192.0.2.1] said: 550 ... (in reply to RCPT TO command)",
    # "host mx.example.org[192.0.2.1] refused to talk to me: 554 ...".
    _Wrapper("postfix", ("] said: ", "] refused to talk to me: "), re.compile(
        r"\bhost " + _HOST + r"\[[^\]]*\] (?:said|(?P<greeting>refused to talk to me)): "
        + _REPLY_START, re.IGNORECASE)),
    # qmail: "192.0.2.1 does not like recipient. Remote host said: 550 ... Giving up on
    # 192.0.2.1."; Yahoo's DSN texts alike: "Remote host said: 550 ... [RCPT_TO]".
    _Wrapper("qmail", ("remote host said: ",), re.compile(
        # (possessive: each name is followed by a space, which it cannot hold; not trying its
        # shorter starts saves the backtracking at every position of a text. A name starts
        # where the characters it can hold start: a match from inside a run of them would
        # match from the run's start as well, earlier, so the search never gives it)
        r"(?:(?:(?<![\w.-])(?P<host>[\w.-]++) (?P<recipient>does not like recipient)|Connected"
        r" to (?P<host2>\S++) but (?:(?P<sender>sender was rejected)|(?P<greeting>greeting"
        r" failed)|(?P<helo>my name was rejected))|(?<!\S)(?P<host3>\S++) (?P<data>failed after"
        r" I sent the message))\. )?Remote host said: " + _REPLY_START, re.IGNORECASE)),
    # Exchange and Office 365: "Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound;
    # not found'", "Remote Server returned '<mx.example.org #5.0.0 smtp; 550 ...>'", and the
    # older "<mx.example.org #5.1.1 smtp;550 5.1.1 User unknown>", "#550 5.1.1 ... ##".
    _Wrapper("exchange", ("returned '",), re.compile(
        r"Remote Server returned '(?:<" + _HOST + r" #[245]\.[0-9]{1,3}\.[0-9]{1,3} \w+; ?)?"
        + _REPLY_START, re.IGNORECASE)),
    _Wrapper("exchange", (" smtp;", " #"), re.compile(
        r"<" + _HOST + r" #[245]\.[0-9]{1,3}\.[0-9]{1,3} smtp; ?" + _REPLY_START
        + r"|(?<![\w#])#(?=[2-5][0-9]{2} [245]\.)", re.IGNORECASE)),
    # Gmail and Google Workspace: "The error that the other server returned was: 550 ...",
    # "The response from the remote server was: 550 ...", "The response was: 550 ...".
    _Wrapper("gmail", (" was: ",), re.compile(
        r"The (?:error that the other server returned|response from the remote server"
        r"|response) was: " + _REPLY_START, re.IGNORECASE)),
    # Sendmail's transcript: ">>> RCPT To:<jane@example.org> <<< 550 5.1.1 ...".
    _Wrapper("sendmail", ("<<< ",), re.compile(
        r"(?:>>> (?P<command>[A-Za-z]+(?: (?:To|From))?)\S* )?<<< " + _REPLY_START)),
    # RFC 3464 Diagnostic-Code, as most DSN texts quote it: "smtp; 550 5.1.1 ...".
    _Wrapper("diagnostic-code", ("smtp;",), re.compile(
        r"(?:Diagnostic-Code: ?)?\bsmtp; ?" + _REPLY_START, re.IGNORECASE)),
    # Any other "...said: 550 ...", "... replied: 550 ...".
    _Wrapper("said", ("said: ", "says: ", "replied: ", "responded: ", "answered: ", "returned: ",
                      "reported: ", "response: ", "response was: "), re.compile(
        r"\b(?:said|says|replied|responded|answered|returned|reported|response)(?: was)?: "
        + _REPLY_START, re.IGNORECASE)),
)


def _fewest(markers: set[str]) -> tuple[str, ...]:
    """The markers that hold none of the others: a text holds one of ``markers`` exactly when
    it holds one of these."""
    return tuple(sorted(marker for marker in markers
                        if not any(other != marker and other in marker for other in markers)))


WRAPPER_MARKERS: tuple[str, ...] = _fewest(
    {marker for wrapper in _WRAPPERS for marker in wrapper.markers}
)
"""Lower-case literals, one of which every text that :func:`find_reply` finds a wrapper in
holds (see :func:`may_be_wrapped`)."""

WRAPPERS: tuple[str, ...] = tuple(dict.fromkeys(wrapper.name for wrapper in _WRAPPERS))
"""The names :func:`find_reply` gives the wrapper shapes it knows, in the order it tries them."""

# Where a reply ends inside a wrapper: Postfix's "(in reply to RCPT TO command)", qmail's
# "Giving up on 192.0.2.1.", Yahoo's "[RCPT_TO]", Exchange's closing quote, ">" or "##".
_TRAILER = re.compile(
    r" ?\(in reply to (?P<command>.+?) command\)| Giving up on \S+| I'm not going to try again"
    r"| ?\[(?P<stage>RCPT_TO|MAIL_FROM|DATA|BODY|CONNECT|HELO|EHLO)\] ?\Z|'\. | ##"
    r"|(?:>'?|'>?)\.? ?\Z")
# A reply code inside prose: "... connect to 10.4.2.1: 550 Rejected" but not an IP address,
# a port or "after 450 seconds".
_CODE_IN_TEXT = re.compile(
    r"[45](?<![\w.:/\[#-][45])[0-9]{2}(?:-| (?=[45]\.[0-9]|[A-Z<#(\[]))")
# An enhanced status anywhere: qmail's "(#5.1.1)", Exchange's "#5.0.0"; not part of an IP
# address ("10.4.2.1").
_STATUS_IN_TEXT = re.compile(r"([45])(?<![\w.][45])\.([0-9]{1,3})\.([0-9]{1,3})(?!\.?[0-9])")
# What every pattern that reads a code or a status (_START, _CONTINUATION, _CODE_IN_TEXT,
# _STATUS_IN_TEXT) needs in a text: a text without one holds no code, no status and no
# continuation prefix, and is searched by none of them.
_CODE_DIGIT = re.compile("[2-5]")
_COMMANDS: tuple[tuple[str, str], ...] = (
    ("initial connection", "connect"), ("connect", "connect"), ("greeting", "connect"),
    ("banner", "connect"), ("helo", "helo"), ("ehlo", "helo"), ("lhlo", "helo"),
    ("mail", "mail"), ("rcpt", "rcpt"), ("data", "data"), ("body", "data"),
    ("end of data", "data"), ("sending data", "data"),
)


def find_reply(text: str | None) -> EmbeddedReply:
    """The remote server's reply in ``text``: a reply itself (``"550 5.1.1 ..."``), a reply
    wrapped by a mail system's bounce text (Exim, Postfix, qmail, Sendmail, Exchange and
    Office 365, Gmail, Yahoo, RFC 3464 ``smtp;`` diagnostic codes), or prose with a code or an
    enhanced status in it (``"... (#5.1.2)"``). Never raises; a text with no code and no
    status gives ``EmbeddedReply(Reply(None, None, text))``, the text on one line."""
    line = single_spaced(str(text or ""))
    # (each wrapper's pattern ends where the reply starts, at a code or a status)
    lowered = line.lower() if _CODE_DIGIT.search(line) is not None else ""
    wrappers = _WRAPPERS if any(map(lowered.__contains__, WRAPPER_MARKERS)) else ()
    for wrapper in wrappers:
        if not any(marker in lowered for marker in wrapper.markers):
            continue
        matched = wrapper.pattern.search(line)
        if matched is None:
            continue
        code, enhanced, reply, head = _reply_at(line[matched.end():])
        command = _command_named(matched)
        trailer = _TRAILER.search(reply)
        if trailer is not None:
            command = command or _normal_command(trailer.group("command") or
                                                 trailer.group("stage") or "")
            reply = reply[:trailer.start()].rstrip()
        if enhanced is None:
            enhanced = _status_in(reply)
        return EmbeddedReply(Reply(code, enhanced, reply, head), wrapper.name, command,
                             _host_named(matched))
    return EmbeddedReply(Reply(*_unwrapped(line)))


def reply_codes(text: str) -> tuple[int | None, str | None]:
    """The code and the enhanced status of ``text`` as :func:`find_reply` finds them when the
    text holds no marker of a wrapper (see :func:`may_be_wrapped`): what it finds, without the
    search for wrappers and without building the reply."""
    code, enhanced, _, _ = _unwrapped(single_spaced(text))
    return code, enhanced


def _unwrapped(line: str) -> _Parts:
    """The reply that ``line`` is, or the prose with a code or a status in it that it is."""
    if _CODE_DIGIT.search(line) is None:  # no code, no status, no continuation prefix
        return None, None, one_line(line), ""
    code, enhanced, text, head = _reply_at(line)
    if code is None:
        found = _CODE_IN_TEXT.search(text)
        code = None if found is None else int(found.group(0)[:3])
    return code, enhanced or _status_in(text), text, head


def has_status(text: str) -> bool:
    """Whether ``text`` holds something that reads as an enhanced status (``5.1.1``, not part
    of an IP address): a cheap test before :func:`find_reply`, which finds none without it."""
    return _STATUS_IN_TEXT.search(text) is not None


def may_be_wrapped(line: str) -> bool:
    """Whether ``line`` (white space already single) holds a marker of a wrapper shape that
    :func:`find_reply` knows: a cheap test; without one, the text is the reply itself."""
    return any(map(line.lower().__contains__, WRAPPER_MARKERS))


def _reply_at(line: str) -> _Parts:
    """The reply that starts ``line``, its text without continuation prefixes and without a
    repetition of its head (``"550 5.1.1 550 5.1.1 <x>: ..."``, as some DSN texts quote it)."""
    code, enhanced, text, head = _parse(line)
    if code is not None and text[:3] == str(code):
        inner_code, inner_enhanced, inner_text, _ = _parse(text)
        if inner_code == code:
            enhanced, text = enhanced or inner_enhanced, inner_text
    text = without_continuations(text)
    if "-" in head:  # the last line of a multi-line reply: "550 5.7.1 " in the text
        last = re.escape(str(code)) + (f" {re.escape(enhanced)}" if enhanced else "")
        text = re.sub(rf"(?<![\w.-]){last} ", "", text)
    return code, enhanced, text, head


def _status_in(text: str) -> str | None:
    found = _STATUS_IN_TEXT.search(text)
    return None if found is None else found.group(0)


def _command_named(matched: re.Match[str]) -> str:
    groups = matched.groupdict()
    for stage, flag in (("rcpt", "recipient"), ("mail", "sender"), ("connect", "greeting"),
                        ("helo", "helo"), ("data", "data")):
        if groups.get(flag):
            return stage
    return _normal_command(groups.get("command") or "")


def _normal_command(words: str) -> str:
    lowered = words.lower().removeprefix("pipelined ")
    return next((stage for word, stage in _COMMANDS if lowered.startswith(word)), "")


def _host_named(matched: re.Match[str]) -> str:
    groups = matched.groupdict()
    return next((groups[name] for name in ("host", "host2", "host3") if groups.get(name)), "")
