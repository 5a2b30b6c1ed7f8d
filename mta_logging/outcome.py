"""The delivery outcome of one recipient: the value every other part passes around."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Kind(enum.Enum):
    """What happened to a recipient. The value is the code written in the ``type`` field.

    This is the one place that names the kinds. ``level`` is the ``logging`` level records of
    this kind are emitted at; ``directory`` the default directory name (and config key) of the
    kind: delivered, deferred, bounce, received, remote_bounce, feedback; ``label`` the word
    reports use: delivered, deferred, bounced, received, remote bounce, complaint; ``code`` the
    value again. ``rb`` (a bounce that came back from a remote MTA as a DSN) and ``f`` (a
    feedback-loop complaint, an ARF report) are PowerMTA's codes. All are plain attributes,
    not properties (as ``value`` is): they are read for every record.
    """

    level: int  # set below, for every member
    directory: str
    label: str
    code: str

    DELIVERED = "d"
    DEFERRED = "df"
    BOUNCE = "b"
    RECEIVED = "r"
    REMOTE_BOUNCE = "rb"
    FEEDBACK = "f"

    @classmethod
    def find(cls, text: str | None) -> Kind | None:
        """The kind ``text`` names (see :data:`KIND_NAMES`; case and surrounding white space
        ignored); None when it names none."""
        if text is None:
            return None
        return KIND_NAMES.get(str(text).strip().lower())

    @classmethod
    def parse(cls, value: str | Kind) -> Kind:
        """Accept a Kind, its code (``d``/``df``/``b``/``r``/``rb``/``f``) or its name
        (``delivered``/...)."""
        if isinstance(value, Kind):
            return value
        kind = cls.find(value)
        if kind is None:
            from mta_logging.errors import ConfigError

            raise ConfigError("kind", value, "expected one of " + ", ".join(
                [kind.code for kind in Kind] + [kind.directory for kind in Kind]))
        return kind


RECEIVED_LEVEL = 15  # between DEBUG and INFO; no level name is registered for it

# every text that names a kind, lower case: its code, directory name and label, and ``t``
# (the Haraka plugin named deferred files t.*)
_names = {"t": Kind.DEFERRED}
for _kind, _level, _directory, _label in (
        (Kind.DELIVERED, logging.INFO, "delivered", "delivered"),
        (Kind.DEFERRED, logging.WARNING, "deferred", "deferred"),
        (Kind.BOUNCE, logging.ERROR, "bounce", "bounced"),
        (Kind.RECEIVED, RECEIVED_LEVEL, "received", "received"),
        (Kind.REMOTE_BOUNCE, logging.ERROR, "remote_bounce", "remote bounce"),
        (Kind.FEEDBACK, logging.WARNING, "feedback", "complaint")):
    _kind.level = _level
    _kind.directory = _directory
    _kind.label = _label
    _kind.code = _kind.value
    _names |= {_kind.value: _kind, _directory: _kind, _label: _kind}
KIND_NAMES: Mapping[str, Kind] = _names


@dataclass(frozen=True)
class Outcome:
    """One recipient, one result.

    Times are aware or naive ``datetime`` objects (naive = local time) or POSIX timestamps;
    ``delay`` is seconds until the next attempt (deferred) or any number the caller chooses.
    ``headers`` holds message headers for ``custom_<Header>`` fields (looked up
    case-insensitively); ``extra`` holds anything else an application wants to carry along.
    (``speedups`` gives it an ``__init__`` that sets the fields in one step.)

    The fields after ``extra`` (the envelope, DSN, delivery and reception details) are read
    only by the fields that write them; an Outcome that leaves them out holds their default
    (None) as a class attribute, not in its ``__dict__`` (see ``AccountingLogger``), so they
    cost nothing to a program that does not use them. ``orig`` is the envelope sender (``""``
    for the null sender ``<>``); ``orcpt`` the RFC 3461 ORCPT (None: the recipient as given);
    ``env_id`` the RFC 3461 ENVID; ``dsn_action``/``dsn_diag`` the RFC 3464 action and
    diagnostic (None: taken from the kind and ``dsn_msg``); ``dsn_mta`` the remote MTA;
    ``size`` the message size in bytes (sent, or for a received record received);
    ``tls_protocol``/``tls_cipher`` the outbound connection's TLS (None: plain or not known);
    ``time_first_attempt`` when delivery was first tried; ``event_id`` the record's unique id
    (None: a new one for each record written, see :mod:`mta_logging.eventid`); the ``rcv_*``
    fields describe the inbound connection of a received record: the client's address, its
    HELO/EHLO name, the AUTH user, its TLS protocol and cipher. The ``feedback_*`` fields
    hold an ARF complaint's (RFC 5965) Feedback-Type, User-Agent, Arrival-Date, Source-IP and
    Reported-Domain, as the report gives them.
    """

    kind: Kind
    rcpt: str
    time_queued: datetime | float | None = None
    src_mta: str | None = None
    src_ip: str | None = None
    dest_ip: str | None = None
    vmta: str | None = None
    job_id: str | None = None
    dsn_status: str | None = None
    dsn_msg: str | None = None
    delay: float | None = None
    bounce_cat: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    orig: str | None = None
    orcpt: str | None = None
    env_id: str | None = None
    dsn_action: str | None = None
    dsn_diag: str | None = None
    dsn_mta: str | None = None
    size: int | None = None
    tls_protocol: str | None = None
    tls_cipher: str | None = None
    time_first_attempt: datetime | float | None = None
    event_id: str | None = None
    rcv_ip: str | None = None
    rcv_helo: str | None = None
    rcv_auth_user: str | None = None
    rcv_tls_protocol: str | None = None
    rcv_tls_cipher: str | None = None
    feedback_type: str | None = None
    feedback_user_agent: str | None = None
    feedback_arrival_date: str | None = None
    feedback_source_ip: str | None = None
    feedback_reported_domain: str | None = None

    def header(self, name: str) -> str | None:
        """The value of message header ``name``, compared case-insensitively; None if absent."""
        headers = self.headers
        value = headers.get(name)
        if value is not None:
            return value
        wanted = name.lower()
        for key, value in headers.items():
            if key.lower() == wanted:
                return value
        return None


# the details an Outcome holds only when given (class defaults otherwise): the keywords that
# AccountingLogger's methods take beyond the Haraka plugin's fields
DETAIL_NAMES: tuple[str, ...] = tuple(
    name for name in Outcome.__dataclass_fields__ if name not in (
        "kind", "rcpt", "time_queued", "src_mta", "src_ip", "dest_ip", "vmta", "job_id",
        "dsn_status", "dsn_msg", "delay", "bounce_cat", "headers", "extra"))
