"""Returned mail into records: the bytes of the rb and f records each sample gives, traced to
its job by VERP token or Message-ID; what is neither is kept in the quarantine."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import mta_logging
from mta_logging.returns.quarantine import Quarantine
from mta_logging.returns.recorder import (
    BOUNCE,
    COMPLAINT,
    NO_FAILURE,
    QUARANTINED,
    Handled,
    ReturnRecorder,
)
from mta_logging.returns.sent import Sent, SentIndex
from mta_logging.verp import Verp

SAMPLES = Path(__file__).parent / "data" / "returns"
VERP = Verp(b"a test secret of some length", "bounces.example.com")


@pytest.fixture
def acct(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "acct"
    mta_logging.configure({"path": str(path), "utc": True, "records": "rb,f"})
    yield path
    logger = logging.getLogger("mta.accounting")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def records(acct: Path, kind: str) -> list[list[str]]:
    """The records of the kind's active file, each without its timeLogged (the second field),
    after checking the header."""
    (active,) = (acct / kind).glob("*.tsv")
    header, *lines = active.read_text(encoding="utf-8").split("\n")[:-1]
    assert header.split("\t")[:2] == ["type", "timeLogged"]
    return [line.split("\t")[:1] + line.split("\t")[2:] for line in lines]


def recorder(tmp_path: Path, sent: SentIndex | None = None) -> ReturnRecorder:
    return ReturnRecorder(logging.getLogger("mta.accounting"),
                          Quarantine(tmp_path / "quarantine"), verp=VERP, sent=sent)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the returns side logged (the accounting records propagate to caplog too)."""
    return [r.getMessage() for r in caplog.records if r.name == "mta_logging.returns"]


def handle(tmp_path: Path, name: str, sent: SentIndex | None = None) -> Handled:
    return recorder(tmp_path, sent).handle((SAMPLES / name).read_bytes())


# type, orig, rcpt, orcpt, jobId, dsnAction, dsnStatus, dsnDiag, dsnMta, bounceCat
@pytest.mark.parametrize(("name", "record"), [
    ("exim.eml", ["rb", "", "bob@example.net", "bob@example.net", "", "failed", "5.0.0",
                  "smtp; 550 5.2.1 The email account that you tried to reach is disabled",
                  "dns; mail.example.net", "inactive-mailbox"]),
    ("sendmail.eml", ["rb", "", "carol@example.edu", "carol@example.edu", "", "failed",
                      "5.1.1", "SMTP; 550 5.1.1 <carol@example.edu>... User unknown",
                      "DNS; mailhost.example.edu", "bad-mailbox"]),
    ("exchange.eml", ["rb", "", "dave@corp.example.com", "dave@corp.example.com", "",
                      "failed", "5.1.10", "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
                      "Recipient not found by SMTP address lookup", "", "bad-mailbox"]),
    ("gmail.eml", ["rb", "", "erin.nosuchuser@gmail.com", "erin.nosuchuser@gmail.com", "",
                   "failed", "5.1.1", "smtp; 550-5.1.1 The email account that you tried to "
                   "reach does not exist. Please try 550-5.1.1 double-checking the "
                   "recipient's email address for typos or 550-5.1.1 unnecessary spaces. For "
                   "more information, go to 550 5.1.1 https://support.google.com/mail/"
                   "?p=NoSuchUser a1si2207 - gsmtp", "", "bad-mailbox"]),
    ("plain/qmail.eml", ["rb", "", "henry@example.info", "henry@example.info", "", "failed",
                         "5.1.1", "smtp; 550 5.1.1 <henry@example.info>: Recipient address "
                         "rejected: User unknown", "", "bad-mailbox"]),
])
def test_each_bounce_gives_its_rb_record(acct: Path, tmp_path: Path, name: str,
                                         record: list[str]) -> None:
    assert handle(tmp_path, name) == Handled(BOUNCE, 1)
    assert records(acct, "remote_bounce") == [record]


def test_a_verp_token_names_the_job_and_the_sent_index_the_sender(
        acct: Path, tmp_path: Path) -> None:
    sent = SentIndex(tmp_path / "sent.sqlite")
    sent.add("<other@example.com>", Sent("0006123456789ABC", "news@example.com",
                                         ("alice@example.org",)))
    assert handle(tmp_path, "postfix.eml", sent) == Handled(BOUNCE, 1, "0006123456789ABC")
    assert records(acct, "remote_bounce") == [[
        "rb", "news@example.com", "alice@example.org", "alice@example.org", "0006123456789ABC",
        "failed", "5.1.1", "smtp; 550 5.1.1 <alice@example.org>: Recipient address rejected: "
        "User unknown in virtual mailbox table", "dns; mx.example.org", "bad-mailbox"]]


def test_without_a_token_the_message_id_traces_the_job(acct: Path, tmp_path: Path) -> None:
    sent = SentIndex(tmp_path / "sent.sqlite")
    sent.add("<order-7781@shop.example.com>", Sent("Q7781", "shop@example.com",
                                                   ("bob@example.net",)))
    assert handle(tmp_path, "exim.eml", sent) == Handled(BOUNCE, 1, "Q7781")
    assert records(acct, "remote_bounce")[0][1:5] == [
        "shop@example.com", "bob@example.net", "bob@example.net", "Q7781"]


def test_a_message_id_sent_twice_traces_the_bounce_to_the_message_sent_to_its_recipient(
        acct: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sent = SentIndex(tmp_path / "sent.sqlite")
    sent.add("<order-7781@shop.example.com>", Sent("Q1", "shop@example.com",
                                                   ("Bob@Example.NET", "ann@example.net")))
    sent.add("<order-7781@shop.example.com>", Sent("Q2", "news@example.com",
                                                   ("carol@example.net",)))
    with caplog.at_level(logging.WARNING, "mta_logging.returns"):
        assert handle(tmp_path, "exim.eml", sent) == Handled(BOUNCE, 1, "Q1")
    assert records(acct, "remote_bounce")[0][1:5] == [
        "shop@example.com", "bob@example.net", "bob@example.net", "Q1"]
    assert warnings(caplog) == []


def test_a_message_id_sent_twice_to_the_recipient_traces_the_newest_and_says_so(
        acct: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sent = SentIndex(tmp_path / "sent.sqlite")
    for job_id, orig in (("Q1", "shop@example.com"), ("Q2", "resent@example.com")):
        sent.add("<order-7781@shop.example.com>", Sent(job_id, orig, ("bob@example.net",)))
    with caplog.at_level(logging.WARNING, "mta_logging.returns"):
        assert handle(tmp_path, "exim.eml", sent) == Handled(BOUNCE, 1, "Q2")
    assert records(acct, "remote_bounce")[0][1:5] == [
        "resent@example.com", "bob@example.net", "bob@example.net", "Q2"]
    assert warnings(caplog) == [
        "2 messages were sent with Message-ID <order-7781@shop.example.com> to a recipient "
        "it names; the returned message is taken to be about the newest, job Q2"]


def test_a_forged_token_traces_nothing(acct: Path, tmp_path: Path) -> None:
    forged = (SAMPLES / "postfix.eml").read_bytes().replace(b"-0-jpiebiqqj6whw",
                                                            b"-0-aaaaaaaaaaaaa")
    assert recorder(tmp_path).handle(forged) == Handled(BOUNCE, 1)
    assert records(acct, "remote_bounce")[0][4] == ""


def test_only_failed_recipients_are_bounces(acct: Path, tmp_path: Path) -> None:
    assert handle(tmp_path, "rfc3464_multi.eml") == Handled(BOUNCE, 1)
    assert [r[2] for r in records(acct, "remote_bounce")] == ["louisl@larry.slip.umd.edu"]
    delayed = (SAMPLES / "rfc3464_multi.eml").read_bytes().replace(
        b"Action: failed", b"Action: delayed")
    assert recorder(tmp_path).handle(delayed) == Handled(NO_FAILURE)


# type, orig, rcpt, jobId, feedbackType, userAgent, arrivalDate, sourceIp, reportedDomain
@pytest.mark.parametrize(("name", "record"), [
    ("rfc5965_arf.eml", ["f", "somespammer@example.net", "user@example.com", "", "abuse",
                         "SomeGenerator/1.0", "Thu, 8 Mar 2005 14:00:00 EDT", "192.0.2.1",
                         "example.net"]),
    ("yahoo_arf.eml", ["f", "bounces@bounces.example.com", "frank@yahoo.com", "", "abuse",
                       "Yahoo!-Mail-Feedback/2.0", "Tue, 1 Dec 2026 15:29:40 +0000", "",
                       "example.com"]),
    ("hotmail_jmrp.eml", ["f", "bounces@bounces.example.com", "grace@hotmail.com", "", "abuse",
                          "Hotmail FBL", "Tue, 01 Dec 2026 16:40:02 -0800", "198.51.100.7",
                          "example.com"]),
])
def test_each_complaint_gives_its_f_record(acct: Path, tmp_path: Path, name: str,
                                           record: list[str]) -> None:
    assert handle(tmp_path, name) == Handled(COMPLAINT, 1)
    assert records(acct, "feedback") == [record]


def test_a_redacted_complaint_finds_its_recipient_through_the_verp_token(
        acct: Path, tmp_path: Path) -> None:
    sent = SentIndex(tmp_path / "sent.sqlite")
    sent.add("<spring-sale-5@example.com>", Sent("Q5", "shop@example.com",
                                                 ("zoe@yahoo.com", "frank@yahoo.com")))
    report = (SAMPLES / "yahoo_arf.eml").read_bytes().replace(
        b"Original-Rcpt-To: <frank@yahoo.com>\n", b"").replace(
        b"Original-Mail-From: <bounces@bounces.example.com>",
        f"Original-Mail-From: <{VERP.encode('Q5', 1)}>".encode())
    assert recorder(tmp_path, sent).handle(report) == Handled(COMPLAINT, 1, "Q5")
    assert records(acct, "feedback")[0][1:4] == ["shop@example.com", "frank@yahoo.com", "Q5"]
    untraced = report.replace(VERP.encode("Q5", 1).encode(), b"someone@example.com")
    assert recorder(tmp_path).handle(untraced) == Handled(COMPLAINT, 1)
    assert records(acct, "feedback")[1][1:4] == ["someone@example.com", "(unknown)", ""]


@pytest.mark.parametrize("name", ["plain/exchange2003_text.eml", "plain/smtp32_text.eml"])
def test_what_is_neither_is_quarantined_byte_for_byte(
        acct: Path, tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture) -> None:
    data = (SAMPLES / name).read_bytes()
    with caplog.at_level(logging.WARNING, logger="mta_logging.returns"):
        handled = recorder(tmp_path).handle(data)
    assert handled.what == QUARANTINED and handled.records == 0 and handled.path is not None
    assert handled.path.parent == tmp_path / "quarantine"
    assert handled.path.read_bytes() == data
    assert [p.name for p in (tmp_path / "quarantine").iterdir()] == [handled.path.name]
    assert caplog.messages == [
        f"returned mail quarantined as {handled.path}: neither a delivery status notification "
        f"nor a feedback report ({len(data)} bytes)"]
    assert records(acct, "remote_bounce") == [] and records(acct, "feedback") == []


def test_a_record_that_cannot_be_written_is_counted(
        acct: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def full_for_bounces(fd: int, data: bytes) -> int:
        if data.startswith(b"rb\t"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_for_bounces)
    assert handle(tmp_path, "exim.eml") == Handled(BOUNCE, 1, unwritten=1)


def test_a_mime_bomb_is_quarantined_byte_for_byte(acct: Path, tmp_path: Path) -> None:
    opens = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                     for i in range(3000))
    data = (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
            + opens + b"x\r\n" + b"".join(b"--b%d--\r\n" % i for i in reversed(range(3001))))
    handled = recorder(tmp_path).handle(data)
    assert handled.what == QUARANTINED and handled.records == 0 and handled.path is not None
    assert handled.path.read_bytes() == data
    assert records(acct, "remote_bounce") == [] and records(acct, "feedback") == []
