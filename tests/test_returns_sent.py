"""The sent index: a Message-ID or a job id back to what was sent, kept for retention_days."""

from __future__ import annotations

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
