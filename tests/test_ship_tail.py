"""The shipper's file side, without servers: identity, offsets, message ids, checkpoints,
config errors and the retention interlock."""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
from pathlib import Path
from unittest import mock

import pytest

from mta_logging import archive
from mta_logging.errors import ConfigError
from mta_logging.formatters import join_values
from mta_logging.report.reader import Reader
from mta_logging.ship import interlock
from mta_logging.ship.checkpoint import Checkpoint, CheckpointStore
from mta_logging.ship.config import ship_settings
from mta_logging.ship.message import derived_id, message_for
from mta_logging.ship.tail import identify, read_entries

HEADER = ["type", "timeLogged", "rcpt", "jobId"]


def lines(fields: list[str], rows: list[list[str]]) -> bytes:
    return "".join(join_values(row) + "\n" for row in [fields, *rows]).encode()


def rows(count: int, start: int = 0) -> list[list[str]]:
    return [["d", "2026-12-01 10:00:00", f"u{n}@example.com", f"j{n}"]
            for n in range(start, start + count)]


def test_files_with_the_same_header_are_different_files(tmp_path: Path) -> None:
    first = tmp_path / "d.1.tsv"
    second = tmp_path / "d.2.tsv"
    first.write_bytes(lines(HEADER, rows(2)))
    second.write_bytes(lines(HEADER, rows(2, start=5)))
    one, two = identify(first), identify(second)
    assert one is not None and two is not None
    assert one.fingerprint != two.fingerprint


def test_the_archived_gzip_of_a_file_has_its_fingerprint_and_offsets(tmp_path: Path) -> None:
    active = tmp_path / "d.1.tsv"
    active.write_bytes(lines(HEADER, rows(5)))
    packed = tmp_path / "archive" / "d.1.tsv.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(active.read_bytes()))
    plain, compressed = identify(active), identify(packed)
    assert plain is not None and compressed is not None
    assert compressed.fingerprint == plain.fingerprint and compressed.compressed
    reader = Reader([])
    middle = list(read_entries(active, reader, 0, 0))[2]
    rest = [e.record.rcpt for e in read_entries(packed, reader, middle.end, middle.line)
            if e.record is not None]
    assert rest == ["u3@example.com", "u4@example.com"]
    assert middle.line == 4  # the header is line 1


def test_a_line_still_being_written_is_left_for_later(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_bytes(lines(HEADER, rows(2)) + b"d\t2026-12-01 10:00:00\tpart")
    entries = list(read_entries(path, Reader([]), 0, 0))
    assert [e.record.rcpt for e in entries if e.record] == ["u0@example.com", "u1@example.com"]
    assert entries[-1].end == len(lines(HEADER, rows(2)))


def test_a_file_without_a_complete_first_record_has_no_identity_yet(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_bytes(lines(HEADER, []))
    assert identify(path) is None
    path.write_bytes(lines(HEADER, []) + b"d\t2026")
    assert identify(path) is None


def test_json_lines_start_at_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('{"type":"d","rcpt":"a@x.org"}\n{"type":"b","rcpt":"b@x.org"}\n')
    entries = list(read_entries(path, Reader([]), 0, 0))
    assert [(e.offset, e.line, e.record.rcpt) for e in entries if e.record] == [
        (0, 1, "a@x.org"), (30, 2, "b@x.org")]


def test_message_id_is_the_files_event_id_when_it_has_one(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_bytes(lines(["eventId", *HEADER], [["ev-1", *rows(1)[0]]]))
    identity = identify(path)
    assert identity is not None
    entry = next(read_entries(path, Reader([]), 0, 0))
    assert entry.record is not None
    message = message_for(entry.record, "relay1", identity.fingerprint, entry.offset)
    assert message.id == "ev-1"
    assert json.loads(message.body) == {"eventId": "ev-1", "type": "d",
                                        "timeLogged": "2026-12-01 10:00:00",
                                        "rcpt": "u0@example.com", "jobId": "j0",
                                        "host": "relay1"}


def test_message_id_without_event_id_is_derived_from_where_the_record_is(
        tmp_path: Path) -> None:
    path = tmp_path / "delivered" / "d.tsv"
    path.parent.mkdir()
    path.write_bytes(lines(["timeLogged", "rcpt"], [["2026-12-01 10:00:00", "a@x.org"]] * 2))
    identity = identify(path)
    assert identity is not None
    first, second = [message_for(e.record, "relay1", identity.fingerprint, e.offset)
                     for e in read_entries(path, Reader([]), 0, 0) if e.record]
    again = [message_for(e.record, "relay1", identity.fingerprint, e.offset)
             for e in read_entries(path, Reader([]), 0, 0) if e.record]
    assert first.id != second.id  # the same text at two places: two records
    assert [first.id, second.id] == [m.id for m in again]
    assert first.id == derived_id("relay1", identity.fingerprint, len(b"timeLogged\trcpt\n"))
    body = json.loads(first.body)
    assert (body["type"], body["eventId"], first.kind) == ("d", first.id, "d")


def test_checkpoints_survive_a_restart_and_a_failed_write_keeps_the_old_one(
        tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "nats")
    store.save(Checkpoint("abc", 100, 5, 1, 2, -1, 0, "d.tsv"))
    with mock.patch("os.fsync", side_effect=OSError(errno.ENOSPC, "No space left")), \
            pytest.raises(OSError):
        store.save(Checkpoint("abc", 200, 9, 1, 2, -1, 0, "d.tsv"))
    reloaded = CheckpointStore(tmp_path, "nats")
    assert reloaded.get("abc") == Checkpoint("abc", 100, 5, 1, 2, -1, 0, "d.tsv")
    assert reloaded.by_inode(1, 2) == reloaded.get("abc")
    assert [p.name for p in (tmp_path / "nats").iterdir() if not p.name.startswith(".")] == [
        "abc.json"]


def test_config_errors_name_key_value_and_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match=r"nats\.replicas: 7 is not valid; expected 1 to 5"):
        ship_settings({"paths": ["a"], "nats": {"replicas": 7}})
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.url: 'ftp://x' is not valid"):
        ship_settings({"paths": ["a"], "webhooks": [{"url": "ftp://x", "secret": "s"}]})
    with pytest.raises(ConfigError, match=r"nats\.subjects: .*unknown setting; allowed: servers"):
        ship_settings({"nats": {"subjects": "x"}})
    settings = ship_settings({"paths": "acct", "host": "relay1", "nats": {},
                              "webhooks": [{"url": "http://127.0.0.1/h", "secret": "s"}]})
    assert settings.sink_names() == ("nats", "webhook1")
    assert settings.webhooks[0].retry_for == 7 * 86400


def test_retention_keeps_archived_files_until_they_are_marked_shipped(tmp_path: Path) -> None:
    pattern = re.compile(r"d\..*\.tsv\Z")
    old = []
    for number in range(3):
        path = tmp_path / f"d.{number}.tsv"
        path.write_bytes(lines(HEADER, rows(1, start=number)))
        os.utime(path, (1_000_000 + number, 1_000_000 + number))
        old.append(path)
    interlock.hold([tmp_path])
    assert archive.prune(tmp_path, pattern, max_age_days=1, max_files=None) == []
    interlock.mark_shipped(old[0], old[0].stat().st_size)
    interlock.mark_shipped(old[1], 1)  # marked at another size: it has grown since
    assert archive.prune(tmp_path, pattern, max_age_days=1, max_files=None) == [old[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".ship-hold", ".shipped-d%2E1%2Etsv", "d.1.tsv", "d.2.tsv"]
    old[1].unlink()
    interlock.remove_orphans(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ship-hold", "d.2.tsv"]
