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
    kind: delivered, deferred, bounce; ``label`` the word reports use: delivered, deferred,
    bounced; ``code`` the value again. All are plain attributes, not properties (as ``value``
    is): they are read for every record.
    """

    level: int  # set below, for every member
    directory: str
    label: str
    code: str

    DELIVERED = "d"
    DEFERRED = "df"
    BOUNCE = "b"

    @classmethod
    def find(cls, text: str | None) -> Kind | None:
        """The kind ``text`` names (see :data:`KIND_NAMES`; case and surrounding white space
        ignored); None when it names none."""
        if text is None:
            return None
        return KIND_NAMES.get(str(text).strip().lower())

    @classmethod
    def parse(cls, value: str | Kind) -> Kind:
        """Accept a Kind, its code (``d``/``df``/``b``) or its name (``delivered``/...)."""
        if isinstance(value, Kind):
            return value
        kind = cls.find(value)
        if kind is None:
            from mta_logging.errors import ConfigError

            raise ConfigError(
                "kind", value, "expected one of d, df, b, delivered, deferred, bounce"
            )
        return kind


# every text that names a kind, lower case: its code, directory name and label, and ``t``
# (the Haraka plugin named deferred files t.*)
_names = {"t": Kind.DEFERRED}
for _kind, _level, _directory, _label in (
        (Kind.DELIVERED, logging.INFO, "delivered", "delivered"),
        (Kind.DEFERRED, logging.WARNING, "deferred", "deferred"),
        (Kind.BOUNCE, logging.ERROR, "bounce", "bounced")):
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
