"""``mta-logging suppression``: list, add, remove, import and export, and their errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from mta_logging.cli import main
from mta_logging.suppression import DAY, Entry, SuppressionList, time_text

HEADER = "address,reason,added,expires,source,event_id"
EVENT = "0191d2a6-5f00-7000-8000-3a9f0c1b2d4e"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["suppression", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def listed(tmp_path: Path) -> Path:
    """A list with an entry of each kind of source."""
    path = tmp_path / "list.db"
    with SuppressionList(path) as suppression:
        suppression.add([
            Entry("gone@x.test", "bad-mailbox", 1_700_000_000, 2_000_000_000, "bounce", EVENT),
            Entry("angry@x.test", "complaint", 1_700_000_100, None, "complaint", EVENT),
            Entry("old@x.test", "bad-domain", 1_600_000_000, 1_600_086_400, "bounce", None),
        ])
    return path


def test_export_then_import_gives_the_same_rows(tmp_path, capsys, listed):
    code, exported, _ = run(capsys, "export", "--db", str(listed))
    assert code == 0
    assert exported.splitlines() == [
        HEADER,
        f"angry@x.test,complaint,2023-11-14T22:15:00Z,never,complaint,{EVENT}",
        f"gone@x.test,bad-mailbox,2023-11-14T22:13:20Z,2033-05-18T03:33:20Z,bounce,{EVENT}",
        "old@x.test,bad-domain,2020-09-13T12:26:40Z,2020-09-14T12:26:40Z,bounce,",
    ]
    (tmp_path / "export.csv").write_text(exported)
    copy = tmp_path / "copy.db"
    code, out, _ = run(capsys, "import", "--db", str(copy), str(tmp_path / "export.csv"))
    assert (code, out) == (0, f"imported 3 entries into {copy}\n")
    with SuppressionList(listed) as original, SuppressionList(copy) as imported:
        assert imported.entries(include_expired=True) == original.entries(include_expired=True)
    assert run(capsys, "export", "--db", str(copy), str(tmp_path / "again.csv"))[0] == 0
    assert (tmp_path / "again.csv").read_text() == exported


def test_list_shows_the_active_entries_and_with_all_the_expired_ones(capsys, listed):
    code, out, _ = run(capsys, "list", "--db", str(listed))
    assert code == 0
    assert out.splitlines() == [
        "address       reason       added                 expires               source     "
        "event_id",
        "angry@x.test  complaint    2023-11-14T22:15:00Z  never                 complaint  "
        f"{EVENT}",
        "gone@x.test   bad-mailbox  2023-11-14T22:13:20Z  2033-05-18T03:33:20Z  bounce     "
        f"{EVENT}",
    ]
    code, out, _ = run(capsys, "list", "--db", str(listed), "--all")
    assert out.splitlines()[3] == ("old@x.test    bad-domain   2020-09-13T12:26:40Z  "
                                   "2020-09-14T12:26:40Z  bounce")


def test_add_normalizes_and_takes_the_reasons_expiry_unless_told(tmp_path, capsys):
    db = str(tmp_path / "list.db")
    before = int(time.time())
    code, out, _ = run(capsys, "add", "--db", db, "<Bob@Example.TEST>", "--reason",
                       "bad-mailbox")
    assert code == 0
    code, out2, _ = run(capsys, "add", "--db", db, "ann@example.test", "--expires",
                        "2030-01-02T03:04:05Z")
    code, out3, _ = run(capsys, "add", "--db", db, "cy@example.test", "--expires", "never",
                        "--reason", "legal")
    with SuppressionList(db) as suppression:
        bob, ann, cy = (suppression.find(a) for a in ("bob@example.test", "ann@example.test",
                                                       "cy@example.test"))
    assert bob is not None and ann is not None and cy is not None
    assert before <= bob.added <= time.time()
    assert (bob.reason, bob.source, bob.expires) == ("bad-mailbox", "manual", bob.added + 90 * DAY)
    assert out == f"added bob@example.test (reason bad-mailbox, expires " \
                  f"{time_text(bob.added + 90 * DAY)})\n"
    assert (ann.reason, ann.expires) == ("manual", 1893553445)
    assert out2 == "added ann@example.test (reason manual, expires 2030-01-02T03:04:05Z)\n"
    assert (cy.reason, cy.expires) == ("legal", None)
    assert out3 == "added cy@example.test (reason legal, expires never)\n"


def test_the_relay_config_names_the_list_and_its_expiry(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spool").mkdir()
    (tmp_path / "relay.yaml").write_text(yaml.safe_dump(
        {"spool_dir": "spool", "suppression": {"expiry": {"manual": 3600}}}))
    code, _, _ = run(capsys, "add", "--config", "relay.yaml", "a@x.test")
    assert code == 0
    with SuppressionList(tmp_path / "spool" / "suppression.db") as suppression:
        entry = suppression.find("a@x.test")
    assert entry is not None and entry.expires == entry.added + 3600


@pytest.mark.parametrize("section", [None, False, {"enabled": False}])
@pytest.mark.parametrize("command", [["add", "a@x.test"], ["list"], ["export"]])
def test_a_relay_config_without_the_list_is_refused_and_no_file_is_made(
        tmp_path, capsys, monkeypatch, section, command):
    """The relay would never read a list it keeps none of: nothing is written, and the
    operator is told how to turn it on."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spool").mkdir()
    config = {"spool_dir": "spool"} if section is None else {
        "spool_dir": "spool", "suppression": section}
    (tmp_path / "relay.yaml").write_text(yaml.safe_dump(config))
    code, out, err = run(capsys, command[0], "--config", "relay.yaml", *command[1:])
    assert (code, out) == (2, "")
    assert err == ("mta-logging suppression: relay.yaml: suppression: null is not valid; this "
                   "relay keeps no suppression list, so it would never read one: turn it on "
                   "with 'suppression: true' (then restart the relay), or name a list with "
                   "--db\n")
    assert list((tmp_path / "spool").iterdir()) == []


def test_remove_says_which_addresses_were_not_listed(capsys, listed):
    code, out, err = run(capsys, "remove", "--db", str(listed), "GONE@x.test", "nobody@x.test")
    assert (code, out, err) == (1, "removed gone@x.test\n",
                                "mta-logging suppression: nobody@x.test is not on the list\n")


def test_import_fills_in_what_a_file_leaves_out(tmp_path, capsys):
    (tmp_path / "in.csv").write_text("address,reason\nA@x.test,bad-mailbox\nb@x.test,\n")
    before = int(time.time())
    code, _, _ = run(capsys, "import", "--db", str(tmp_path / "l.db"), str(tmp_path / "in.csv"))
    assert code == 0
    with SuppressionList(tmp_path / "l.db") as suppression:
        a, b = suppression.entries()
    assert (a.address, a.reason, a.source, a.event_id) == ("a@x.test", "bad-mailbox", "import",
                                                          None)
    assert before <= a.added <= time.time() and a.expires == a.added + 90 * DAY
    assert (b.address, b.reason, b.expires) == ("b@x.test", "manual", None)


@pytest.mark.parametrize(("content", "message"), [
    (f"{HEADER}\nok@x.test,manual,,,,\nnot an address,manual,,,,\n",
     "line 3: address 'not an address' is not valid; expected local-part@domain, at most 254 "
     "characters, no spaces or control characters"),
    ("address,reason\nok@x.test,Bad Reason\n",
     "line 2: reason 'Bad Reason' is not valid; expected a reason such as bad-mailbox, "
     "complaint or manual (a-z, 0-9, '.', '_', '-'; at most 64 characters)"),
    ("address,added\nok@x.test,yesterday\n",
     "line 2: added 'yesterday' is not valid; expected an ISO 8601 time such as "
     "2026-03-01T12:00:00Z"),
    ("address,expires\nok@x.test,soon\n",
     "line 2: expires 'soon' is not valid; expected an ISO 8601 time such as "
     "2026-03-01T12:00:00Z or never"),
    ("address,source\nok@x.test,robot\n",
     "line 2: source 'robot' is not valid; expected one of bounce, remote-bounce, complaint, "
     "manual, import"),
    ("address\nok@x.test,extra\n", "line 2: more fields than the 1 columns of the header"),
    ("email,reason\nok@x.test,manual\n",
     "line 1: the header row 'email,reason' is not valid; expected the columns "
     "address,reason,added,expires,source,event_id (address required)"),
])
def test_a_bad_csv_row_names_its_line_and_nothing_is_imported(tmp_path, capsys, content,
                                                              message):
    (tmp_path / "in.csv").write_text(content)
    code, out, err = run(capsys, "import", "--db", str(tmp_path / "l.db"),
                         str(tmp_path / "in.csv"))
    assert (code, out, err) == (2, "", f"mta-logging suppression: {message}\n")
    assert not (tmp_path / "l.db").exists()


def test_errors_name_the_value_or_file_and_exit_2(tmp_path, capsys):
    db = str(tmp_path / "l.db")
    assert run(capsys, "add", "--db", db, "nobody")[1:] == ("", (
        "mta-logging suppression: address 'nobody' is not valid; expected local-part@domain, "
        "at most 254 characters, no spaces or control characters\n"))
    assert run(capsys, "add", "--db", db, "a@x.test", "--expires", "tomorrow")[2] == (
        "mta-logging suppression: --expires 'tomorrow' is not valid; expected an ISO 8601 time "
        "such as 2026-03-01T12:00:00Z or never\n")
    assert run(capsys, "import", "--db", db, str(tmp_path / "missing.csv")) == (
        2, "", f"mta-logging suppression: {tmp_path / 'missing.csv'}: cannot open it (No such "
               f"file or directory)\n")
    (tmp_path / "junk.db").write_text("junk\n" * 100)
    code, _, err = run(capsys, "list", "--db", str(tmp_path / "junk.db"))
    assert code == 2
    assert err.startswith(f"mta-logging suppression: suppression list {tmp_path / 'junk.db'}: "
                          f"not an SQLite database")
    code, _, err = run(capsys, "export", "--db", str(tmp_path))
    assert (code, err) == (2, f"mta-logging suppression: suppression list {tmp_path}: is a "
                              f"directory; expected an SQLite file, or no file yet (one is "
                              f"made)\n")
