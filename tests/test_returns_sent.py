"""The sent index: a Message-ID (and the recipients a report names) or a job id back to what was
sent, kept for retention_days."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from mta_logging.errors import ConfigError
from mta_logging.returns.sent import Sent, SentIndex


def test_found_by_message_id_and_by_job_id_after_a_reopen(tmp_path: Path) -> None:
    index = SentIndex(tmp_path / "sent.sqlite")
    index.add(" <a@example.com> ", Sent("Q1", "s@example.com", ("r1@example.org", "r2@x.org")))
    index.close()
    again = SentIndex(tmp_path / "sent.sqlite")
    expected = Sent("Q1", "s@example.com", ("r1@example.org", "r2@x.org"))
    assert again.by_message_id("<a@example.com>") == expected
    assert again.by_job_id("Q1") == expected
    assert again.by_message_id("<b@example.com>") is None and again.by_job_id("Q2") is None


def test_every_message_sent_with_a_message_id_is_kept_and_found_by_its_recipient(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    index = SentIndex(tmp_path / "sent.sqlite")
    first = Sent("Q1", "a@example.com", ("r1@example.org",))
    second = Sent("Q2", "b@example.com", ("R2@example.org", "r3@example.org"))
    third = Sent("Q3", "c@example.com", ("r1@example.org",))
    for sent in (first, second, third):
        index.add("<same@example.com>", sent)
    with caplog.at_level(logging.WARNING, "mta_logging.returns"):
        assert index.by_message_id("<same@example.com>", ["r2@EXAMPLE.org", None]) == second
        assert index.by_message_id("<same@example.com>", ["other@example.org"]) == third
        assert index.by_message_id("<same@example.com>", ["r1@example.org"]) == third
    assert caplog.messages == [
        "3 messages were sent with Message-ID <same@example.com>; the returned message is "
        "taken to be about the newest, job Q3",
        "2 messages were sent with Message-ID <same@example.com> to a recipient it names; "
        "the returned message is taken to be about the newest, job Q3"]
    assert [index.by_job_id(sent.job_id) for sent in (first, second, third)] == [
        first, second, third]


def test_rows_older_than_the_retention_are_removed_on_open(tmp_path: Path) -> None:
    index = SentIndex(tmp_path / "sent.sqlite")
    index.add("<old@example.com>", Sent("Q0", "", ()))
    index.add("<new@example.com>", Sent("Q1", "", ()))
    index.close()
    with sqlite3.connect(tmp_path / "sent.sqlite") as db:
        db.execute("UPDATE sent SET added = ? WHERE job_id = 'Q0'", (time.time() - 3 * 86400,))
    db.close()
    reopened = SentIndex(tmp_path / "sent.sqlite", retention_days=2)
    assert reopened.by_job_id("Q0") is None and reopened.by_job_id("Q1") == Sent("Q1", "", ())


def test_a_path_that_is_no_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sent.sqlite").mkdir()
    with pytest.raises(ConfigError, match="sent_index: .* cannot be opened as an SQLite"):
        SentIndex(tmp_path / "sent.sqlite")


def test_the_senders_dsn_parameters_are_kept_per_recipient(tmp_path: Path) -> None:
    sent = Sent("Q1", "s@example.com", ("r1@example.org", "r2@x.org"), time_queued=1.5e9,
                envid="env 1", notify=(("NEVER",), None), orcpt=(None, "rfc822;R2@x.org"))
    with_dsn = SentIndex(tmp_path / "sent.sqlite")
    with_dsn.add("<a@example.com>", sent)
    with_dsn.close()
    assert SentIndex(tmp_path / "sent.sqlite").by_job_id("Q1") == sent


def test_an_index_of_the_version_without_dsn_parameters_is_read_and_added_to(
        tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "sent.sqlite") as db:
        db.execute("CREATE TABLE sent (message_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, "
                   "orig TEXT NOT NULL, rcpts TEXT NOT NULL, added REAL NOT NULL)")
        db.execute("INSERT INTO sent VALUES ('<old@example.com>', 'Q0', 's@example.com', "
                   "'[\"r@example.org\"]', ?)", (time.time(),))
    db.close()
    index = SentIndex(tmp_path / "sent.sqlite")
    index.add("<new@example.com>", Sent("Q1", "", (), envid="e"))
    index.add("<old@example.com>", Sent("Q2", "s@example.com", ("r2@example.org",)))
    assert index.by_job_id("Q0") == Sent("Q0", "s@example.com", ("r@example.org",))
    assert index.by_message_id("<new@example.com>") == Sent("Q1", "", (), envid="e")
    assert index.by_message_id("<old@example.com>", ["r@example.org"]) == Sent(
        "Q0", "s@example.com", ("r@example.org",))
    index.close()
    with sqlite3.connect(tmp_path / "sent.sqlite") as db:
        assert db.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall() == [
            ("sent",), ("sent_job",), ("sent_message",)]
    db.close()
