"""The suppression list (SQLite) and the handler that adds hard bounces and complaints to it."""

from __future__ import annotations

import logging
import logging.config
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import mta_logging
from mta_logging.errors import ConfigError
from mta_logging.formatters import header_fields, split_line
from mta_logging.logger import AccountingLogger
from mta_logging.suppression import (
    DAY,
    Entry,
    SuppressionError,
    SuppressionHandler,
    SuppressionList,
    checked_expiry,
    normalize_address,
    put_first,
)

ROOT = Path(__file__).resolve().parent.parent
BOUNCE_FIELDS = ["type", "rcpt", "dsnStatus", "bounceCat", "eventId"]


@pytest.fixture
def accounting(tmp_path: Path) -> Iterator[AccountingLogger]:
    """An accounting logger of this test writing bounce files into tmp_path/accounting."""
    name = f"test.suppression.{tmp_path.name}"
    mta_logging.configure({"path": str(tmp_path / "accounting"), "logger": name,
                           "fields": {"bounce": BOUNCE_FIELDS}})
    logger = logging.getLogger(name)
    logger.propagate = False
    yield AccountingLogger(logger)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def bounce_records(tmp_path: Path) -> list[dict[str, str]]:
    [path] = (tmp_path / "accounting" / "bounce").glob("*.tsv")
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = header_fields(lines[0], "\t")
    return [dict(zip(fields, split_line(line, "\t"), strict=True)) for line in lines[1:]]


def entry(address: str, reason: str = "bad-mailbox", added: int = 1_000,
          expires: int | None = None, source: str = "bounce") -> Entry:
    return Entry(address, reason, added, expires, source, None)


@pytest.mark.parametrize(("given", "key"), [
    ("bob@example.com", "bob@example.com"),
    ("  <Bob.Smith@Example.COM.>  ", "bob.smith@example.com"),
    ('"odd@local"@example.com', '"odd@local"@example.com'),
    ("JÖRG@Bücher.example", "jörg@bücher.example"),
])
def test_addresses_are_keyed_without_case_brackets_or_a_trailing_dot(given, key):
    assert normalize_address(given) == key


@pytest.mark.parametrize("given", ["", "bob", "@example.com", "bob@", "bob smith@example.com",
                                   "bob@exa\nmple.com", "a" * 250 + "@b.com"])
def test_a_text_that_is_no_address_is_refused_with_what_is_allowed(given):
    with pytest.raises(SuppressionError) as caught:
        normalize_address(given)
    assert str(caught.value) == (f"address {given!r} is not valid; expected local-part@domain, "
                                 f"at most 254 characters, no spaces or control characters")


def test_an_entry_suppresses_its_address_until_it_expires(tmp_path):
    with SuppressionList(tmp_path / "s.db") as suppression:
        suppression.add([entry("a@x.test", expires=2_000), entry("b@x.test", "complaint")])
        assert suppression.find("A@X.test", now=1_999) == entry("a@x.test", expires=2_000)
        assert suppression.find("a@x.test", now=2_000) is None
        assert suppression.find("b@x.test", now=10**10) == entry("b@x.test", "complaint")
        assert suppression.find("not an address", now=0) is None
        assert [e.address for e in suppression.entries(now=2_000)] == ["b@x.test"]
        assert [e.address for e in suppression.entries(include_expired=True, now=2_000)] == [
            "a@x.test", "b@x.test"]


def test_the_file_is_sqlite_in_wal_mode_and_entries_outlive_the_connection(tmp_path):
    with SuppressionList(tmp_path / "s.db") as suppression:
        suppression.add([entry("a@x.test")])
    with SuppressionList(tmp_path / "s.db") as suppression:
        assert suppression.find("a@x.test") == entry("a@x.test")
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_an_add_that_does_not_replace_keeps_the_entry_that_lasts_longer(tmp_path):
    with SuppressionList(tmp_path / "s.db") as suppression:
        suppression.add([entry("never@x.test", "complaint"),
                         entry("short@x.test", expires=5_000),
                         entry("gone@x.test", expires=1_500)])
        suppression.add([entry("never@x.test", added=2_000, expires=9_000),
                         entry("short@x.test", "bad-domain", added=2_000, expires=9_000),
                         entry("gone@x.test", "bad-domain", added=2_000, expires=3_000)],
                        replace=False, now=2_000)
        assert suppression.entries(now=2_000) == [
            entry("gone@x.test", "bad-domain", added=2_000, expires=3_000),
            entry("never@x.test", "complaint"),
            entry("short@x.test", "bad-domain", added=2_000, expires=9_000)]
        suppression.add([entry("never@x.test", "manual", added=3_000, source="manual")])
        assert suppression.find("never@x.test", now=3_000) == entry(
            "never@x.test", "manual", added=3_000, source="manual")
        assert suppression.remove("Never@X.test") is True
        assert suppression.remove("never@x.test") is False


def test_a_file_that_is_not_sqlite_gives_a_clear_error(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"address,reason\n" * 100)
    with pytest.raises(SuppressionError) as caught:
        SuppressionList(path)
    assert str(caught.value) == (
        f"suppression list {path}: not an SQLite database, or a damaged one (file is not a "
        f"database); move it away (a new list is made) and import a CSV export into the new "
        f"one (while opening it)")


def test_a_directory_where_the_file_must_be_gives_a_clear_error(tmp_path):
    (tmp_path / "s.db").mkdir()
    with pytest.raises(SuppressionError) as caught:
        SuppressionList(tmp_path / "s.db")
    assert str(caught.value) == (f"suppression list {tmp_path / 's.db'}: is a directory; "
                                 f"expected an SQLite file, or no file yet (one is made)")


def test_a_missing_directory_gives_a_clear_error(tmp_path):
    with pytest.raises(SuppressionError) as caught:
        SuppressionList(tmp_path / "nowhere" / "s.db")
    assert "cannot open it (unable to open database file): its directory must exist" in str(
        caught.value)


def test_a_writer_waits_for_another_then_says_the_file_is_locked(tmp_path):
    path = tmp_path / "s.db"
    SuppressionList(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with SuppressionList(path, timeout=0.2) as suppression:
            assert suppression.find("a@x.test") is None  # a reader does not wait in WAL mode
            with pytest.raises(SuppressionError) as caught:
                suppression.add([entry("a@x.test")])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert str(caught.value) == (f"suppression list {path}: locked by another process, still "
                                 f"after 0.2 s (database is locked) (while adding entries)")


WRITER = textwrap.dedent("""
    import sys
    from mta_logging.suppression import Entry, SuppressionList
    with SuppressionList(sys.argv[1], timeout=30) as suppression:
        for n in range(150):
            suppression.add([Entry(f"{sys.argv[2]}{n}@x.test", "manual", n, None, "manual")])
""")


def test_two_processes_add_at_the_same_time_and_no_entry_is_lost(tmp_path):
    path = tmp_path / "s.db"
    SuppressionList(path).close()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), prefix], cwd=ROOT)
               for prefix in ("first", "second")]
    assert [writer.wait(120) for writer in writers] == [0, 0]
    with SuppressionList(path) as suppression:
        addresses = {e.address for e in suppression.entries()}
    assert addresses == {f"{prefix}{n}@x.test" for prefix in ("first", "second")
                         for n in range(150)}


def test_expiry_is_the_defaults_with_the_reasons_given_replaced():
    expiry = checked_expiry({"bad-mailbox": 60, "complaint": 3600, "legal": "never"})
    assert dict(expiry) == {"bad-mailbox": 60.0, "inactive-mailbox": 90 * DAY,
                            "bad-domain": 30 * DAY, "complaint": 3600.0, "legal": None}
    with pytest.raises(ConfigError, match=r"expiry.bad-mailbox: 'soon' is not valid; expected "
                                          r"a number of seconds"):
        checked_expiry({"bad-mailbox": "soon"})
    with pytest.raises(ConfigError, match=r"expiry: 'Bad Reason' is not valid; expected a "
                                          r"reason such as"):
        checked_expiry({"Bad Reason": 60})


def test_hard_bounces_are_added_with_the_event_id_their_record_has(tmp_path, accounting):
    handler = SuppressionHandler(tmp_path / "s.db")
    put_first(accounting.logger, handler)
    try:
        accounting.bounced("Gone@Example.test", dsn_msg="550 5.1.1 <gone@example.test>: "
                                                        "Recipient address rejected: User unknown")
        accounting.bounced("full@example.test", dsn_msg="552 5.2.2 Mailbox full")
        accounting.bounced("nxdomain@nowhere.test", bounce_cat="bad-domain")
        accounting.delivered("fine@example.test")
        accounting.deferred("later@example.test", bounce_cat="bad-mailbox")
        handler.flush()
    finally:
        accounting.logger.removeHandler(handler)
        handler.close()
    records = bounce_records(tmp_path)
    assert [(r["rcpt"], r["bounceCat"]) for r in records] == [
        ("Gone@Example.test", "bad-mailbox"), ("full@example.test", "quota-issues"),
        ("nxdomain@nowhere.test", "bad-domain")]
    with SuppressionList(tmp_path / "s.db") as suppression:
        entries = suppression.entries()
    gone, nxdomain = entries
    assert (gone.address, gone.reason, gone.source, gone.event_id) == (
        "gone@example.test", "bad-mailbox", "bounce", records[0]["eventId"])
    assert gone.expires == gone.added + 90 * DAY
    assert (nxdomain.address, nxdomain.reason, nxdomain.event_id) == (
        "nxdomain@nowhere.test", "bad-domain", records[2]["eventId"])
    assert nxdomain.expires == nxdomain.added + 30 * DAY


def test_an_event_id_the_caller_gave_is_kept(tmp_path, accounting):
    handler = SuppressionHandler(tmp_path / "s.db")
    put_first(accounting.logger, handler)
    try:
        accounting.bounced("gone@example.test", bounce_cat="inactive-mailbox",
                           event_id="0191d2a6-5f00-7000-8000-3a9f0c1b2d4e")
        handler.flush()
    finally:
        accounting.logger.removeHandler(handler)
        handler.close()
    assert bounce_records(tmp_path)[0]["eventId"] == "0191d2a6-5f00-7000-8000-3a9f0c1b2d4e"
    with SuppressionList(tmp_path / "s.db") as suppression:
        assert suppression.find("gone@example.test").event_id == (  # type: ignore[union-attr]
            "0191d2a6-5f00-7000-8000-3a9f0c1b2d4e")


def test_the_handler_works_from_a_dict_config_in_yaml(tmp_path):
    name = f"test.suppression.yaml.{tmp_path.name}"
    # without disable_existing_loggers: false, every logger made so far (the relay's, which
    # later tests read with caplog) would be switched off for the rest of the run
    config = yaml.safe_load(textwrap.dedent(f"""
        version: 1
        disable_existing_loggers: false
        handlers:
          suppression:
            class: mta_logging.suppression.SuppressionHandler
            path: {tmp_path / 'list.db'}
            expiry: {{bad-mailbox: 3600}}
        loggers:
          {name}: {{handlers: [suppression], level: INFO, propagate: false}}
    """))
    logging.config.dictConfig(config)
    logger = logging.getLogger(name)
    [handler] = logger.handlers
    try:
        AccountingLogger(logger).bounced("gone@example.test", bounce_cat="bad-mailbox")
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    with SuppressionList(tmp_path / "list.db") as suppression:
        found = suppression.find("gone@example.test")
    assert found is not None and found.expires == found.added + 3600


def test_a_list_that_cannot_be_written_never_raises_and_is_tried_again(tmp_path, accounting,
                                                                       capsys):
    (tmp_path / "s.db").mkdir()
    handler = SuppressionHandler(tmp_path / "s.db")
    put_first(accounting.logger, handler)
    try:
        outcome = accounting.bounced("gone@example.test", bounce_cat="bad-mailbox")
        handler.flush()
        assert "the suppression list " + str(tmp_path / "s.db") + " failed while adding " \
               "entries: SuppressionError: suppression list" in capsys.readouterr().err
        (tmp_path / "s.db").rmdir()  # put right: the entry is written at the next try
        for _ in range(200):
            if (tmp_path / "s.db").is_file():
                break
            time.sleep(0.05)
        handler.flush()
        with SuppressionList(tmp_path / "s.db") as suppression:
            assert [e.address for e in suppression.entries()] == ["gone@example.test"]
    finally:
        accounting.logger.removeHandler(handler)
        handler.close()
    assert outcome.rcpt == "gone@example.test"
    assert bounce_records(tmp_path)[0]["rcpt"] == "gone@example.test"
