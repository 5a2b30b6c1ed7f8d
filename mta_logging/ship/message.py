"""One record as one message: a JSON object of the record's fields plus ``host``.

The message id (``Nats-Msg-Id``, and the ``eventId`` of the message) is the record's own
``eventId`` when its file has that field; otherwise it is derived from where the record is —
SHA-256 of the host, the file's fingerprint (its first record) and the record's byte offset —
so that reading the same record again after a crash gives the same id, and JetStream (within
its duplicate window) and the database (always) keep it once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from mta_logging.report.reader import Record

EVENT_ID = "eventId"
_SUBJECT_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class Message:
    """What a sink sends for one record: id, kind token (the subject's second-last token)
    and JSON body."""

    id: str
    kind: str
    body: bytes


def derived_id(host: str, fingerprint: str, offset: int) -> str:
    """The id of a record whose file has no ``eventId``: stable across re-reads."""
    return hashlib.sha256(f"{host}\0{fingerprint}\0{offset}".encode()).hexdigest()[:32]


def message_for(record: Record, host: str, fingerprint: str, offset: int) -> Message:
    """The message of ``record``: its fields (unknown values as null), ``type`` from the
    record's kind when the file has no such field, ``eventId`` (its own or derived) and
    ``host``. The kind token is the kind as the reader takes it (the ``type`` value, or the
    file's name or directory when that is not a known kind): the report counts it so."""
    fields: dict[str, str | None] = record.fields
    kind = record.kind.code if record.kind is not None else fields.get("type")
    if "type" not in fields:
        fields["type"] = kind
    event_id = fields.get(EVENT_ID) or derived_id(host, fingerprint, offset)
    fields[EVENT_ID] = event_id
    fields["host"] = host
    # bytes that are not UTF-8 (read as surrogates) become U+FFFD: the message stays valid JSON
    body = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8",
                                                                              "replace")
    return Message(event_id, _SUBJECT_UNSAFE.sub("_", kind or "unknown"), body)
