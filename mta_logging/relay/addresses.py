"""Envelope addresses the relay can accept: only what it can also send on (pure functions).

Anything the outbound side would refuse is refused at MAIL or RCPT, so nothing undeliverable
is ever queued: control characters and NUL (aiosmtplib, like every SMTP client, will not put
them on the wire), and the limits of RFC 5321 §4.5.3.1 (local part 64 octets, domain 255,
path 256 including the angle brackets).
"""

from __future__ import annotations

import re

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_LOCAL_PART = 64  # octets, RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255  # octets, §4.5.3.1.2
MAX_PATH = 256  # octets with "<" and ">", §4.5.3.1.3
SENDER_STATUS = "5.1.7"  # bad sender's mailbox address syntax (RFC 3463)
RECIPIENT_STATUS = "5.1.3"  # bad destination mailbox address syntax


def address_problem(address: str, smtputf8: bool, status: str = SENDER_STATUS) -> str | None:
    """Why an envelope address cannot be accepted, as an SMTP reply; None if it can.

    ``status``: the enhanced status of the refusals that are about the address's syntax.
    """
    if CONTROL.search(address):
        return f"553 {status} Error: address contains a control character"
    ascii_only = address.isascii()
    if not ascii_only:
        try:
            address.encode("utf-8")
        except UnicodeEncodeError:
            return "553 5.6.7 Error: address is not valid UTF-8"
        if not smtputf8:
            return "553 5.6.7 Error: non-ASCII address requires the SMTPUTF8 parameter"
    if ascii_only and len(address) <= MAX_LOCAL_PART:
        return None  # every part fits, and an ASCII address has as many octets as characters
    local, _, domain = address.rpartition("@")
    if _octets(address, ascii_only) + 2 > MAX_PATH:
        return f"501 {status} Error: path longer than {MAX_PATH} octets"
    if _octets(local, ascii_only) > MAX_LOCAL_PART:
        return f"553 {status} Error: local part longer than {MAX_LOCAL_PART} octets"
    if _octets(domain, ascii_only) > MAX_DOMAIN:
        return f"553 {status} Error: domain longer than {MAX_DOMAIN} octets"
    return None


def _octets(text: str, ascii_only: bool) -> int:
    """Length of ``text`` in UTF-8 octets (its length when the address is ASCII)."""
    return len(text) if ascii_only else len(text.encode("utf-8"))


def recipient_problem(address: str, smtputf8: bool) -> str | None:
    """Why a recipient cannot be accepted (it needs ``local@domain``); None if it can."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or domain.startswith(".") or ".." in domain:
        return "501 5.1.3 Error: bad recipient address syntax (expected local@domain)"
    return address_problem(address, smtputf8, RECIPIENT_STATUS)
