"""``mta-logging ingest-bounce``: files, an mbox and a Maildir into rb and f records, a summary
line, and the exit status that says whether anything was quarantined."""

from __future__ import annotations

import fcntl
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
    """The records of ``kind``, every run's file (each process writes a file of its own)."""
    return [line for path in sorted((tmp_path / "acct" / kind).glob("*.tsv"))
            for line in path.read_text().splitlines()[1:]]


def quarantined(tmp_path: Path) -> list[Path]:
    """The messages in the quarantine (not its hidden list of messages ingested)."""
    return sorted(p for p in (tmp_path / "quarantine").iterdir() if not p.name.startswith("."))


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
    (kept,) = quarantined(tmp_path)
    assert kept.read_bytes() == (SAMPLES / "plain/smtp32_text.eml").read_bytes()


def test_everything_recorded_is_exit_status_0(tmp_path: Path) -> None:
    done = ingest(str(SAMPLES / "sendmail.eml"), "--config", str(config(tmp_path)),
                  "--quarantine", str(tmp_path / "quarantine"))
    assert (done.returncode, done.stdout.split(": ", 1)[1]) == (0, (
        "1 messages: 1 bounces (1 rb records), 0 complaints (0 f records), 0 without a failed "
        f"recipient, 0 quarantined in {tmp_path / 'quarantine'}\n"))
    assert quarantined(tmp_path) == []


def test_a_message_without_from_is_quarantined_without_a_traceback(tmp_path: Path) -> None:
    message = tmp_path / "away.eml"
    message.write_bytes(b"Subject: out of office\n\nI am away.\n")
    done = ingest(str(message), "--config", str(config(tmp_path)),
                  "--quarantine", str(tmp_path / "quarantine"))
    (kept,) = quarantined(tmp_path)
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


def maildir_of_returns(tmp_path: Path) -> Path:
    """A Maildir with two bounces and a message that is neither (quarantined)."""
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    for name in ("gmail.eml", "sendmail.eml", "plain/smtp32_text.eml"):
        maildir.add((SAMPLES / name).read_bytes())
    return tmp_path / "Maildir"


def test_a_second_run_over_the_same_maildir_records_nothing_again(tmp_path: Path) -> None:
    """A cron job: each message is recorded (or quarantined) by the first run only; a new
    message is recorded by the next; ``--again`` handles them all once more."""
    maildir = maildir_of_returns(tmp_path)
    arguments = [str(maildir), "--config", str(config(tmp_path)),
                 "--quarantine", str(tmp_path / "quarantine")]
    first = ingest(*arguments)
    assert (first.returncode, first.stdout) == (1, (
        "ingest-bounce: 3 messages: 2 bounces (2 rb records), 0 complaints (0 f records), "
        f"0 without a failed recipient, 1 quarantined in {tmp_path / 'quarantine'}\n"))
    second = ingest(*arguments)
    assert (second.returncode, second.stdout) == (0, (
        "ingest-bounce: 0 messages: 0 bounces (0 rb records), 0 complaints (0 f records), "
        f"0 without a failed recipient, 0 quarantined in {tmp_path / 'quarantine'}; 3 ingested "
        "before, skipped\n"))
    assert len(lines(tmp_path, "remote_bounce")) == 2
    assert len(quarantined(tmp_path)) == 1
    mailbox.Maildir(maildir).add((SAMPLES / "postfix.eml").read_bytes())
    third = ingest(*arguments)
    assert (third.returncode, third.stdout.split(": ", 1)[1]) == (0, (
        "1 messages: 1 bounces (1 rb records), 0 complaints (0 f records), 0 without a failed "
        f"recipient, 0 quarantined in {tmp_path / 'quarantine'}; 3 ingested before, skipped\n"))
    again = ingest(*arguments, "--again")
    assert again.stdout.split(": ", 1)[1].startswith("4 messages: 3 bounces (3 rb records)")
    assert len(lines(tmp_path, "remote_bounce")) == 6
    digests = (tmp_path / "quarantine" / ".ingested").read_text().splitlines()
    assert len(digests) == 4 and all(len(d) == 64 for d in digests)


def test_a_run_while_another_holds_the_list_is_refused_before_anything(tmp_path: Path) -> None:
    listed = tmp_path / "ingested.list"
    with open(listed, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = ingest(str(maildir_of_returns(tmp_path)), "--config", str(config(tmp_path)),
                      "--quarantine", str(tmp_path / "quarantine"), "--ingested", str(listed))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"mta-logging ingest-bounce: {listed}: another ingest-bounce is "
                           "using it; try again when it has finished\n")
    assert not (tmp_path / "acct").exists() and not (tmp_path / "quarantine").exists()


def test_a_list_cut_short_mid_line_loses_only_that_line(tmp_path: Path) -> None:
    """The last line cut short (a crash while it was written): ignored, and the next digest
    starts a line of its own; the message is recorded again, at most once more."""
    listed = tmp_path / "ingested.list"
    arguments = [str(SAMPLES / "sendmail.eml"), "--config", str(config(tmp_path)),
                 "--quarantine", str(tmp_path / "quarantine"), "--ingested", str(listed)]
    assert ingest(*arguments).returncode == 0
    whole = listed.read_bytes()
    listed.write_bytes(whole[:30])  # the only line, cut short
    assert ingest(*arguments).stdout.split(": ", 1)[1].startswith("1 messages: 1 bounces")
    assert listed.read_bytes() == whole[:30] + b"\n" + whole
    assert ingest(*arguments).stdout.endswith("; 1 ingested before, skipped\n")
    assert len(lines(tmp_path, "remote_bounce")) == 2
