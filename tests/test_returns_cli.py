"""``mta-logging ingest-bounce``: files, an mbox and a Maildir into rb and f records, a summary
line, and the exit status that says whether anything was quarantined."""

from __future__ import annotations

import mailbox
import subprocess
import sys
from pathlib import Path

from mta_logging.suppression import DEFAULT_EXPIRY, SuppressionList

SAMPLES = Path(__file__).parent / "data" / "returns"


def ingest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mta_logging.cli", "ingest-bounce", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def config(tmp_path: Path, records: str = "d,df,b,rb,f") -> Path:
    path = tmp_path / "acct.ini"
    path.write_text(f"path={tmp_path / 'acct'}\nrecords={records}\nutc=true\n")
    return path


def lines(tmp_path: Path, kind: str) -> list[str]:
    (active,) = (tmp_path / "acct" / kind).glob("*.tsv")
    return active.read_text().splitlines()[1:]


def test_an_mbox_a_maildir_and_a_file(tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "returns.mbox")
    for name in ("exim.eml", "plain/smtp32_text.eml"):
        box.add((SAMPLES / name).read_bytes())
    box.close()
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    for name in ("gmail.eml", "yahoo_arf.eml"):
        maildir.add((SAMPLES / name).read_bytes())
    secret = tmp_path / "verp.secret"
    secret.write_text("a test secret of some length\n")
    done = ingest(str(tmp_path / "returns.mbox"), str(tmp_path / "Maildir"),
                  str(SAMPLES / "postfix.eml"), "--config", str(config(tmp_path)),
                  "--quarantine", str(tmp_path / "quarantine"),
                  "--verp-domain", "bounces.example.com", "--verp-secret-file", str(secret))
    assert done.returncode == 1, done.stderr
    assert done.stdout == (
        "ingest-bounce: 5 messages: 3 bounces (3 rb records), 1 complaints (1 f records), "
        f"0 without a failed recipient, 1 quarantined in {tmp_path / 'quarantine'}\n")
    assert [line.split("\t")[3] + " " + line.split("\t")[5]
            for line in lines(tmp_path, "remote_bounce")] == [
        "bob@example.net ", "erin.nosuchuser@gmail.com ", "alice@example.org 0006123456789ABC"]
    assert [line.split("\t")[3] for line in lines(tmp_path, "feedback")] == ["frank@yahoo.com"]
    (kept,) = (tmp_path / "quarantine").iterdir()
    assert kept.read_bytes() == (SAMPLES / "plain/smtp32_text.eml").read_bytes()


def test_everything_recorded_is_exit_status_0(tmp_path: Path) -> None:
    done = ingest(str(SAMPLES / "sendmail.eml"), "--config", str(config(tmp_path)),
                  "--quarantine", str(tmp_path / "quarantine"))
    assert (done.returncode, done.stdout.split(": ", 1)[1]) == (0, (
        "1 messages: 1 bounces (1 rb records), 0 complaints (0 f records), 0 without a failed "
        f"recipient, 0 quarantined in {tmp_path / 'quarantine'}\n"))
    assert not (tmp_path / "quarantine").exists()


def test_a_message_without_from_is_quarantined_without_a_traceback(tmp_path: Path) -> None:
    message = tmp_path / "away.eml"
    message.write_bytes(b"Subject: out of office\n\nI am away.\n")
    done = ingest(str(message), "--config", str(config(tmp_path)),
                  "--quarantine", str(tmp_path / "quarantine"))
    (kept,) = (tmp_path / "quarantine").iterdir()
    assert (done.returncode, done.stderr) == (1, (
        f"returned mail quarantined as {kept}: neither a delivery status notification nor a "
        "feedback report (35 bytes)\n"))
    assert kept.read_bytes() == message.read_bytes()


def test_records_without_rb_and_f_and_a_missing_path_are_exit_status_2(tmp_path: Path) -> None:
    done = ingest(str(SAMPLES / "sendmail.eml"), "--config", str(config(tmp_path, "d,df,b")),
                  "--quarantine", str(tmp_path / "quarantine"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"mta-logging ingest-bounce: {tmp_path / 'acct.ini'}: records: 'd,df,b' is not valid; "
        "ingest-bounce writes rb and f records: add them (records: d,df,b,rb,f)\n")
    done = ingest(str(tmp_path / "missing.eml"), "--config", str(config(tmp_path)),
                  "--quarantine", str(tmp_path / "quarantine"))
    assert (done.returncode, done.stderr) == (
        2, f"mta-logging ingest-bounce: {tmp_path / 'missing.eml'}: no such file or directory\n")
    done = ingest(str(SAMPLES / "sendmail.eml"), "--config", str(config(tmp_path)),
                  "--quarantine", str(tmp_path / "q"), "--verp-domain", "bounces.example.com")
    assert done.returncode == 2
    assert "expected both options, or neither" in done.stderr


def test_with_suppression_hard_bounces_and_complaints_are_listed(tmp_path: Path) -> None:
    db = tmp_path / "spool" / "suppression.db"
    db.parent.mkdir()
    done = ingest(*(str(SAMPLES / name) for name in (
        "postfix.eml", "exim.eml", "rfc3464_multi.eml", "yahoo_arf.eml")),
        "--config", str(config(tmp_path)), "--quarantine", str(tmp_path / "quarantine"),
        "--suppression", str(db))
    assert done.returncode == 0, done.stderr
    with SuppressionList(db) as suppression:
        entries = {entry.address: entry for entry in suppression.entries()}
    # the 4.0.0 of rfc3464_multi.eml (no-answer-from-host) is no hard bounce
    assert {address: (entry.reason, entry.source) for address, entry in entries.items()} == {
        "alice@example.org": ("bad-mailbox", "remote-bounce"),
        "bob@example.net": ("inactive-mailbox", "remote-bounce"),
        "frank@yahoo.com": ("complaint", "complaint")}
    alice = entries["alice@example.org"]
    assert alice.expires == alice.added + DEFAULT_EXPIRY["bad-mailbox"]


def test_a_suppression_list_that_cannot_be_opened_is_exit_status_2_before_anything(
        tmp_path: Path) -> None:
    (tmp_path / "list.db").mkdir()
    done = ingest(str(SAMPLES / "postfix.eml"), "--config", str(config(tmp_path)),
                  "--quarantine", str(tmp_path / "quarantine"),
                  "--suppression", str(tmp_path / "list.db"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"mta-logging ingest-bounce: suppression list {tmp_path / 'list.db'}: is a directory; "
        "expected an SQLite file, or no file yet (one is made)\n")
    assert not (tmp_path / "acct").exists()
