"""With VERP on, a DSN from beyond the next hop comes back to the relay's bounce domain; the
relay passes it on to the original sender as a notification of its own (issue 15), when the
recipient's NOTIFY asks for it, and never about a report. End to end on 127.0.0.1, with the
harness of test_issue15_together."""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from pathlib import Path

from relay_sink import Sink
from test_issue15_together import (
    BOUNCE_DOMAIN,
    MESSAGE,
    SENDER,
    VERP,
    config,
    job_of,
    of_kind,
    per_recipient,
    remote_dsn,
    report,
    returned,
)
from test_relay_e2e import relay, wait_until

from mta_logging.relay.config import DsnSettings
from mta_logging.relay.dsn import passed_back
from mta_logging.returns.parse import BounceReport, FailedRecipient
from mta_logging.returns.sent import Sent
from mta_logging.suppression import Entry, SuppressionList

SAMPLE_MESSAGE_ID = b"<campaign-42.alice@example.com>"
# a sitecustomize.py: the first os.write of a suppressed bounce record fails (a full disk)
FULL_DISK_ONCE = """import errno, os
_write, _failed = os.write, []
def _full_once(fd, data):
    if b"\\tsuppressed\\n" in data and not _failed:
        _failed.append(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _write(fd, data)
os.write = _full_once
"""


def send_with(port: int, sender: str, rcpt: str, mail_options: list[str],
              rcpt_options: list[str]) -> str:
    """One message with DSN parameters and the Message-ID ``<rcpt>``; its job id."""
    message = MESSAGE.replace(b"<together-1@example.test>", f"<{rcpt}>".encode())
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail(sender, mail_options)[0] == 250
        assert client.rcpt(rcpt, rcpt_options)[0] == 250
        return job_of({"DATA": client.data(message)})


def delay_report(verp_address: str, rcpt: str) -> bytes:
    """Postfix's DSN for ``rcpt`` turned into a delay report (4.4.1, still being tried)."""
    return remote_dsn(verp_address, rcpt).replace(b"Action: failed", b"Action: delayed").replace(
        b"Status: 5.1.1", b"Status: 4.4.1").replace(
        b"Diagnostic-Code: smtp; 550 5.1.1", b"Diagnostic-Code: smtp; 451 4.4.1")


def queued(tmp_path: Path) -> list[str]:
    return sorted(path.name for path in (tmp_path / "spool" / "queue").iterdir())


def test_a_downstream_failure_reaches_the_sender_once_with_its_fields(tmp_path: Path) -> None:
    with Sink() as dest, Sink() as home, relay(tmp_path, config(tmp_path, dest, home)
                                               ) as running:
        job = send_with(running.port, SENDER, "gone@a.test", ["ENVID=env+2D1"],
                        ["NOTIFY=FAILURE", "ORCPT=rfc822;Gone@a.test"])
        never = send_with(running.port, SENDER, "quiet@a.test", [], ["NOTIFY=NEVER"])
        null = send_with(running.port, "<>", "null@a.test", [], [])
        dest.wait_for_recipients(3)
        assert {m.rcpts: m.mail_from for m in dest.messages if m.mail_from != "<>"} == {
            ("gone@a.test",): VERP.encode(job, 0), ("quiet@a.test",): VERP.encode(never, 0)}

        assert returned(running.port, VERP.encode(job, 0),
                        remote_dsn(VERP.encode(job, 0), "gone@a.test")) == (
            250, b"2.0.0 Ok: bounce, 1 records")
        wait_until(lambda: len(home.messages) == 1, what="the notification passed back")
        assert returned(running.port, VERP.encode(never, 0),
                        remote_dsn(VERP.encode(never, 0), "quiet@a.test")) == (
            250, b"2.0.0 Ok: bounce, 1 records")
        # a report about the message from <> (traced by its Message-ID): a report about a report
        about_null = remote_dsn(f"postmaster@{BOUNCE_DOMAIN}", "null@a.test").replace(
            SAMPLE_MESSAGE_ID, b"<null@a.test>")
        assert returned(running.port, f"postmaster@{BOUNCE_DOMAIN}", about_null) == (
            250, b"2.0.0 Ok: bounce, 1 records")
        forged = VERP.encode(job, 0).replace("bounces+", "bounces+x", 1)
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10,
                          source_address=("127.0.0.2", 0)) as client:
            client.ehlo("mx.remote.test")
            client.mail("<>")
            assert client.rcpt(forged) == (
                550, f"5.1.1 <{forged}>: no such bounce address".encode())
        wait_until(lambda: len(of_kind(tmp_path, "d")) == 4, what="the delivered records")
        assert running.stop() == 0

    assert queued(tmp_path) == []
    (notification,) = home.messages
    assert (notification.mail_from, notification.rcpts) == ("<>", (SENDER,))
    parsed, parts = report(notification)
    assert parsed["From"] == "Mail Delivery System <MAILER-DAEMON@relay.example.test>"
    per_message = parts[1].get_payload()[0]
    assert (per_message["Reporting-MTA"], per_message["Original-Envelope-Id"]) == (
        "dns; relay.example.test", "env-1")
    assert [{key: group[key] for key in ("Original-Recipient", "Final-Recipient", "Action",
                                         "Status", "Remote-MTA", "Diagnostic-Code")}
            for group in per_recipient(parts[1])] == [{
        "Original-Recipient": "rfc822;Gone@a.test", "Final-Recipient": "rfc822; gone@a.test",
        "Action": "failed", "Status": "5.1.1", "Remote-MTA": "dns; mx.example.org",
        "Diagnostic-Code": "smtp; 550 5.1.1 <gone@a.test>: Recipient address rejected: User "
                           "unknown in virtual mailbox table"}]
    assert "Message-ID: <campaign-42.alice@example.com>" in parts[2].get_payload()
    # the records are those of a remote bounce without passing back, and the notice's own
    assert [(r["rcpt"], r["orig"], r["jobId"], r["dsnStatus"], r["bounceCat"])
            for r in of_kind(tmp_path, "rb")] == [
        ("gone@a.test", SENDER, job, "5.1.1", "bad-mailbox"),
        ("quiet@a.test", SENDER, never, "5.1.1", "bad-mailbox"),
        ("null@a.test", "", null, "5.1.1", "bad-mailbox")]
    assert [(r["rcpt"], r["orig"]) for r in of_kind(tmp_path, "d")][-1] == (SENDER, "")


def test_a_downstream_delay_reaches_the_sender_only_when_notify_asked_for_it(
        tmp_path: Path) -> None:
    with Sink() as dest, Sink() as home, relay(tmp_path, config(tmp_path, dest, home)
                                               ) as running:
        asked = send_with(running.port, SENDER, "late@a.test", [], ["NOTIFY=DELAY,FAILURE"])
        default = send_with(running.port, SENDER, "later@a.test", [], [])
        dest.wait_for_recipients(2)
        for job, rcpt in ((asked, "late@a.test"), (default, "later@a.test")):
            assert returned(running.port, VERP.encode(job, 0),
                            delay_report(VERP.encode(job, 0), rcpt)) == (
                250, b"2.0.0 Ok: no failure, 0 records")
        wait_until(lambda: len(home.messages) == 1, what="the delay notice passed back")
        wait_until(lambda: len(of_kind(tmp_path, "d")) == 3, what="the delivered records")
        assert running.stop() == 0

    assert queued(tmp_path) == []
    (notification,) = home.messages
    parsed, parts = report(notification)
    assert parsed["Subject"] == "Delayed Mail (still being retried)"
    assert [(group["Final-Recipient"], group["Action"], group["Status"],
             group["Diagnostic-Code"]) for group in per_recipient(parts[1])] == [
        ("rfc822; late@a.test", "delayed", "4.4.1",
         "smtp; 451 4.4.1 <late@a.test>: Recipient address rejected: User unknown in virtual "
         "mailbox table")]
    assert of_kind(tmp_path, "rb") == []


def sender_listed(tmp_path: Path) -> None:
    """SENDER on the suppression list of the relay's spool (a hard bounce, an hour ago)."""
    (tmp_path / "spool").mkdir()
    with SuppressionList(tmp_path / "spool" / "suppression.db") as suppression:
        suppression.add([Entry(SENDER, "bad-mailbox", int(time.time()) - 3600, None, "bounce")])


def the_skip_is_recorded_once(tmp_path: Path) -> None:
    """Nothing left queued, and the sender recorded once as a suppressed bounce."""
    assert queued(tmp_path) == []
    assert [(r["rcpt"], r["orig"], r["bounceCat"]) for r in of_kind(tmp_path, "b")] == [
        (SENDER, "", "suppressed")]


def test_no_downstream_report_is_passed_back_to_a_sender_on_the_suppression_list(
        tmp_path: Path) -> None:
    sender_listed(tmp_path)
    with Sink() as dest, Sink() as home, relay(tmp_path, config(tmp_path, dest, home)
                                               ) as running:
        job = send_with(running.port, SENDER, "gone@a.test", [], ["NOTIFY=FAILURE"])
        dest.wait_for_recipients(1)
        assert returned(running.port, VERP.encode(job, 0),
                        remote_dsn(VERP.encode(job, 0), "gone@a.test")) == (
            250, b"2.0.0 Ok: bounce, 1 records")
        wait_until(lambda: [r["rcpt"] for r in of_kind(tmp_path, "b")] == [SENDER],
                   what="the suppressed sender's record")
        assert running.stop() == 0

    assert home.messages == []
    the_skip_is_recorded_once(tmp_path)
    assert [(r["rcpt"], r["jobId"]) for r in of_kind(tmp_path, "rb")] == [("gone@a.test", job)]


def test_a_skip_whose_record_cannot_be_written_gets_a_451_and_is_recorded_on_the_retry(
        tmp_path: Path) -> None:
    """The suppressed sender's record meets a full disk (ENOSPC injected at its first
    ``os.write`` in the relay's process): the remote server gets a 451 and sends again; then
    the skip is recorded, once, and the remote bounce each time it was taken."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FULL_DISK_ONCE)
    sender_listed(tmp_path)
    with Sink() as dest, Sink() as home, relay(tmp_path, config(tmp_path, dest, home),
                                               site=site) as running:
        job = send_with(running.port, SENDER, "gone@a.test", [], ["NOTIFY=FAILURE"])
        dest.wait_for_recipients(1)
        report = remote_dsn(VERP.encode(job, 0), "gone@a.test")
        assert returned(running.port, VERP.encode(job, 0), report) == (
            451, b"4.3.0 Error: accounting write error, try again later")
        assert returned(running.port, VERP.encode(job, 0), report) == (
            250, b"2.0.0 Ok: bounce, 1 records")
        wait_until(lambda: [r["rcpt"] for r in of_kind(tmp_path, "b")] == [SENDER],
                   what="the suppressed sender's record")
        assert running.stop() == 0
    assert home.messages == []
    the_skip_is_recorded_once(tmp_path)
    assert [r["rcpt"] for r in of_kind(tmp_path, "rb")] == ["gone@a.test", "gone@a.test"]


def test_each_recipient_is_matched_by_address_and_its_fields_are_carried_over() -> None:
    sent = Sent("Q1", "s@example.com", ("a@x.test", "b@x.test", "c@x.test"),
                time_queued=1.7e9, notify=(None, ("SUCCESS",), ("NEVER",)),
                orcpt=(None, "rfc822;B@x.test", None))
    bounce = BounceReport((), "dns; mx.x.test", None, (), reported=(
        # b@x.test forwarded: known by its Original-Recipient, delivered (asked for)
        FailedRecipient("b@y.test", "b@x.test", "delivered", "2.0.0", None, None),
        FailedRecipient("a@x.test", None, "failed", None, "X-Postfix; mailbox full",
                        "dns; mx.x.test"),
        FailedRecipient("c@x.test", None, "failed", "5.1.1", None, None),  # NOTIFY=NEVER
        FailedRecipient("a@x.test", None, "expanded", "2.0.0", None, None)),
        envelope_id="from-the-report", returned_headers=b"Subject: hi\n")
    notice = passed_back(DsnSettings(reporting_mta="relay.test"), sent, bounce, None,
                         when=1.7e9 + 60)
    assert notice is not None
    envelope, data = notice
    assert (envelope.mail_from, envelope.rcpts, envelope.report_of) == ("", ("s@example.com",),
                                                                         "Q1")
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    status = list(parsed.iter_parts())[1].get_payload()
    assert status[0]["Original-Envelope-Id"] == "from-the-report"
    assert [dict(group.items()) for group in status[1:]] == [
        {"Original-Recipient": "rfc822;B@x.test", "Final-Recipient": "rfc822; b@y.test",
         "Action": "delivered", "Status": "2.0.0",
         "Last-Attempt-Date": status[1]["Last-Attempt-Date"]},
        {"Final-Recipient": "rfc822; a@x.test", "Action": "failed", "Status": "5.0.0",
         "Remote-MTA": "dns; mx.x.test", "Diagnostic-Code": "X-Postfix; mailbox full",
         "Last-Attempt-Date": status[2]["Last-Attempt-Date"]}]
    assert passed_back(DsnSettings(enabled=False), sent, bounce, None, when=0.0) is None
    from_null = Sent("Q2", "", sent.rcpts)
    assert passed_back(DsnSettings(), from_null, bounce, None, when=0.0) is None
