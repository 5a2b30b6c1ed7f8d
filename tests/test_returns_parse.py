"""Returned mail read as common MTAs write it: the samples in tests/data/returns/ are written
from the MTAs' documented formats and the RFCs' examples (RFC 3464 appendix, RFC 5965 B)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mta_logging.returns.parse import BounceReport, Complaint, FailedRecipient, parse_return

SAMPLES = Path(__file__).parent / "data" / "returns"
VERP_RETURN = "bounces+gaydanrrgiztinjwg44dsqkcim-0-jpiebiqqj6whw@bounces.example.com"


def parsed(name: str) -> BounceReport | Complaint | None:
    return parse_return((SAMPLES / name).read_bytes())


@pytest.mark.parametrize(("name", "expected"), [
    ("postfix.eml", BounceReport(
        (FailedRecipient("alice@example.org", "alice@example.org", "failed", "5.1.1",
                         "smtp; 550 5.1.1 <alice@example.org>: Recipient address rejected: "
                         "User unknown in virtual mailbox table", "dns; mx.example.org"),),
        "dns; mail.example.org", "<campaign-42.alice@example.com>", (VERP_RETURN,))),
    ("exim.eml", BounceReport(
        (FailedRecipient("bob@example.net", None, "failed", "5.0.0",
                         "smtp; 550 5.2.1 The email account that you tried to reach is "
                         "disabled", "dns; mail.example.net"),),
        "dns; mx1.example.net", "<order-7781@shop.example.com>",
        ("bounces@bounces.example.com",))),
    ("sendmail.eml", BounceReport(
        (FailedRecipient("carol@example.edu", None, "failed", "5.1.1",
                         "SMTP; 550 5.1.1 <carol@example.edu>... User unknown",
                         "DNS; mailhost.example.edu"),),
        "dns; smtp.example.edu", "<alumni-2026-12@example.com>",
        ("bounces@bounces.example.com",))),
    ("exchange.eml", BounceReport(
        (FailedRecipient("dave@corp.example.com", "dave@corp.example.com", "failed", "5.1.10",
                         "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found "
                         "by SMTP address lookup", None),),
        "dns;EXCH01.corp.example.local", "<invoice-2026-118@billing.example.com>",
        ("bounces@bounces.example.com",))),
    ("gmail.eml", BounceReport(
        (FailedRecipient("erin.nosuchuser@gmail.com", None, "failed", "5.1.1",
                         "smtp; 550-5.1.1 The email account that you tried to reach does not "
                         "exist. Please try 550-5.1.1 double-checking the recipient's email "
                         "address for typos or 550-5.1.1 unnecessary spaces. For more "
                         "information, go to 550 5.1.1 https://support.google.com/mail/"
                         "?p=NoSuchUser a1si2207 - gsmtp", None),),
        "dns; googlemail.com", "<welcome-991@app.example.com>",
        ("bounces@bounces.example.com",))),
    # RFC 3464 appendix: one recipient failed, one delayed (not a bounce); no headers returned
    ("rfc3464_multi.eml", BounceReport(
        (FailedRecipient("louisl@larry.slip.umd.edu", "louisl@larry.slip.umd.edu", "failed",
                         "4.0.0", "smtp; 426 connection timed out", None),),
        "dns; cs.utk.edu", None, ("owner-info-mime@cs.utk.edu",))),
])
def test_delivery_status_notifications(name: str, expected: BounceReport) -> None:
    report = parsed(name)
    assert isinstance(report, BounceReport)
    assert report.recipients == tuple(r for r in report.reported if r.action == "failed")
    assert replace(report, reported=(), envelope_id=None, returned_headers=b"") == expected


def test_a_dsn_gives_every_recipient_it_reports_and_the_returned_header_section() -> None:
    multi = parsed("rfc3464_multi.eml")
    postfix = parsed("postfix.eml")
    assert isinstance(multi, BounceReport) and isinstance(postfix, BounceReport)
    assert [(r.rcpt, r.action, r.status) for r in multi.reported] == [
        ("louisl@larry.slip.umd.edu", "failed", "4.0.0"),
        ("owner-info-mime@cs.utk.edu", "delayed", "4.0.0")]
    assert (multi.envelope_id, postfix.envelope_id) == (None, None)
    assert postfix.returned_headers.startswith(b"Return-Path: <" + VERP_RETURN.encode())
    assert b"Message-ID: <campaign-42.alice@example.com>\n" in postfix.returned_headers


@pytest.mark.parametrize(("name", "expected"), [
    ("rfc5965_arf.eml", Complaint(
        "abuse", "SomeGenerator/1.0", "1", "somespammer@example.net", ("user@example.com",),
        "Thu, 8 Mar 2005 14:00:00 EDT", "192.0.2.1", "example.net",
        "8787KJKJ3K4J3K4J3K4J3.mail@example.net", ("abuse@example.net",))),
    # Yahoo's: the recipient given, Received-Date for Arrival-Date, no Source-IP
    ("yahoo_arf.eml", Complaint(
        "abuse", "Yahoo!-Mail-Feedback/2.0", "0.1", "bounces@bounces.example.com",
        ("frank@yahoo.com",), "Tue, 1 Dec 2026 15:29:40 +0000", None, "example.com",
        "<spring-sale-5@example.com>", ("fbl@example.com",))),
    # Microsoft's JMRP: no Original-Rcpt-To; the recipient is in the returned message's
    # X-HmXmrOriginalRecipient (the report's own is the feedback address)
    ("hotmail_jmrp.eml", Complaint(
        "abuse", "Hotmail FBL", "1", "bounces@bounces.example.com", ("grace@hotmail.com",),
        "Tue, 01 Dec 2026 16:40:02 -0800", "198.51.100.7", "example.com",
        "<weekly-digest-49@example.com>", ("fbl@example.com",))),
])
def test_feedback_reports(name: str, expected: Complaint) -> None:
    assert parsed(name) == expected


# Plain-text bounces of MTAs that send no DSN. Without flufl.bounce none of the five is
# recognised (none has a message/delivery-status part); with it three are.
@pytest.mark.parametrize(("name", "expected"), [
    ("plain/qmail.eml", BounceReport(
        (FailedRecipient("henry@example.info", None, "failed", "5.1.1",
                         "smtp; 550 5.1.1 <henry@example.info>: Recipient address rejected: "
                         "User unknown"),),
        None, "<promo-17@example.com>", ("bounces@bounces.example.com",), "plain")),
    ("plain/exim_text.eml", BounceReport(
        (FailedRecipient("ivan@example.biz", None, "failed", "5.1.1",
                         "smtp; 550 5.1.1 No such user here"),),
        None, "<invite-88@example.com>", ("bounces@bounces.example.com",), "plain")),
    ("plain/yahoo_text.eml", BounceReport(
        (FailedRecipient("karl.gone@yahoo.com"),),
        None, "<report-3@example.com>", ("bounces@bounces.example.com",), "plain")),
    ("plain/exchange2003_text.eml", None),
    ("plain/smtp32_text.eml", None),
])
def test_plain_text_bounces_through_flufl_bounce(name: str, expected: BounceReport | None) -> None:
    assert parsed(name) == expected


@pytest.mark.parametrize("data", [
    b"", b"Subject: hello\n\njust a message\n", b"\xff\xfe\x00garbage",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n",
    b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; a\n\nAction: failed\n",
])
def test_what_is_neither_is_none_and_nothing_raises(data: bytes) -> None:
    result = parse_return(data)
    assert result is None or result == BounceReport((), "dns; a", None, ())


def mime_bomb(depth: int) -> bytes:
    """A DSN-looking message whose multipart parts nest ``depth`` levels deep."""
    opens = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                     for i in range(depth))
    closes = b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth + 1)))
    return (b"From: MAILER-DAEMON@x.test\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=b0\r\n\r\n"
            + opens + b"x\r\n" + closes)


def test_parts_nested_too_deep_for_the_email_package_are_none_not_recursion_error() -> None:
    assert parse_return(mime_bomb(3000)) is None
