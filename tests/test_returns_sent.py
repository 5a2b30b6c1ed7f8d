"""The sent index: a Message-ID (and the recipients a report names) or a job id back to what was
sent, kept for retention_days."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
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


OPEN_AT = """\
import sys, time
from mta_logging.returns.sent import SentIndex
while time.time() < float(sys.argv[2]):  # the processes open the index together
    time.sleep(0.001)
SentIndex(sys.argv[1]).close()
"""


def test_an_index_of_the_previous_version_opened_by_four_processes_at_once_is_rebuilt_once(
        tmp_path: Path) -> None:
    path = tmp_path / "sent.sqlite"
    with sqlite3.connect(path) as db:  # one row per Message-ID (its primary key), dsn kept
        db.execute("CREATE TABLE sent (message_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, "
                   "orig TEXT NOT NULL, rcpts TEXT NOT NULL, added REAL NOT NULL, dsn TEXT)")
        db.execute("CREATE INDEX sent_job ON sent (job_id)")
        db.executemany("INSERT INTO sent VALUES (?, ?, 's@example.com', '[\"r@example.org\"]', "
                       "?, NULL)", [(f"<m{n}@example.com>", f"Q{n}", time.time())
                                    for n in range(20000)])
    db.close()
    start = f"{time.time() + 1.0:.3f}"
    openers = [subprocess.Popen([sys.executable, "-c", OPEN_AT, str(path), start],
                                stderr=subprocess.PIPE) for _ in range(4)]
    ended = [(opener.communicate(timeout=60)[1].decode(), opener.returncode)
             for opener in openers]
    assert ended == [("", 0)] * 4
    index = SentIndex(path)  # opened once more: nothing to rebuild
    index.add("<m7@example.com>", Sent("R7", "again@example.com", ("r@example.org",)))
    assert index.by_message_id("<m7@example.com>", ["r@example.org"]) == Sent(
        "R7", "again@example.com", ("r@example.org",))
    assert index.by_job_id("Q7") == Sent("Q7", "s@example.com", ("r@example.org",))
    index.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*), count(DISTINCT job_id) FROM sent").fetchone() == (
            20001, 20001)
        assert db.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall() == [
            ("sent",), ("sent_job",), ("sent_message",)]
        assert [(row[1], row[5]) for row in db.execute("PRAGMA table_info(sent)")] == [
            ("message_id", 0), ("job_id", 0), ("orig", 0), ("rcpts", 0), ("added", 0),
            ("dsn", 0)]
    db.close()
