"""SMTP replies: the reply code, the RFC 3463 enhanced status and the text, parsed in one place.

Every part that reads a reply (the logger classifying a bounce, the relay turning a server's
answer into an outcome, the report normalising reasons, the classifier) takes it apart with
:func:`parse_reply`, so that "550-5.1.1 user unknown", "550 5.1.1 user unknown" and a
multi-line reply all mean the same code, status and text everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Reply", "one_line", "parse_reply", "parse_status"]

# a reply starts with its code, then (optionally) the enhanced status, each followed by a space,
# a hyphen (a continuation line) or the end; "550 5.1.1" but not "550 5.1.10.2" (an address)
_START = re.compile(
    r"\s*(?P<code>[2-5][0-9]{2})(?![0-9])(?:[ -]+(?P<status>[245]\.[0-9]{1,3}\.[0-9]{1,3})"
    r"(?![0-9]|\.[0-9]))?"
)
_STATUS = re.compile(r"\s*([245])\.([0-9]{1,3})\.([0-9]{1,3})\s*\Z")


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


def parse_reply(message: str | None) -> Reply:
    """The code, the enhanced status and the text of a reply that starts with its code
    (``"550 5.1.1 <bob@example.org>: user unknown"``); a text that does not start with a code
    gives ``Reply(None, None, text)``. Never raises."""
    if not message:
        return Reply(None, None, "")
    matched = _START.match(message)
    if matched is None:
        return Reply(None, None, one_line(message))
    rest = message[matched.end():]
    if rest[:1] == "-":  # "550-5.1.1-..." is unusual but a continuation marker all the same
        rest = rest[1:]
    return Reply(int(matched.group("code")), matched.group("status"), one_line(rest),
                 matched.group(0).strip())


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
