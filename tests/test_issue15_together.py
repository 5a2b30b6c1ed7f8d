"""Issue 15 as one product: delivery status notifications out, returned mail in (VERP, rb and
f records) and the suppression list, all three configured at once in `mta-logging relay` as a
subprocess, with two sinks on 127.0.0.1: the destination (``*``) and the senders' own domain
(``example.test``), which receives the notifications.

What is right where the parts meet:

- a remote bounce (``rb``, a hard category) or a complaint (``f``) lists the recipient; the
  next message to it is refused at RCPT (``550 5.7.1``), recorded as ``suppressed``, and the
  sender gets no notification about it: the client heard the 550 (RFC 5321 §4.5.5);
- a notification goes from ``<>``, never VERP-rewritten, and its records have ``orig`` empty;
- a notification that bounces is recorded and dropped (no notification about a notification);
  its recipient, the original sender, is listed only when that bounce is a hard one (the
  address does not take mail), like any recipient, and may still send: the list is looked up
  at RCPT only;
- ``queue bounce`` sends one notification and lists nobody (``admin-bounce`` is no hard
  bounce);
- after SIGHUP all three go on.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml
from relay_sink import Sink, SinkMessage
from test_relay_e2e import ROOT, base_config, records, relay, wait_until

from mta_logging.relay.suppression import refusal_text
from mta_logging.suppression import Entry, SuppressionList
from mta_logging.verp import Verp

SAMPLES = Path(__file__).parent / "data" / "returns"
SECRET = b"issue fifteen, all parts at once"
BOUNCE_DOMAIN = "bounces.example.test"
VERP = Verp(SECRET, BOUNCE_DOMAIN)
SENDER = "news@example.test"
MESSAGE = (b"From: news@example.test\r\nTo: list@a.test\r\nSubject: together\r\n"
           b"Message-ID: <together-1@example.test>\r\n\r\nHello.\r\n")
SAMPLE_VERP = b"bounces+gaydanrrgiztinjwg44dsqkcim-0-jpiebiqqj6whw@bounces.example.com"


def config(tmp_path: Path, dest: Sink, home: Sink) -> dict[str, Any]:
    """DSNs (the default), returned mail with VERP and the suppression list, all on."""
    (tmp_path / "verp.secret").write_bytes(SECRET + b"\n")
    settings = base_config(dest.port, suppression=True, bounces={
        "domains": [BOUNCE_DOMAIN], "complaint_addresses": ["fbl@example.test"],
        "verp": {"enabled": True, "secret_file": "verp.secret"}})
    settings["dsn"] = {"reporting_mta": "relay.example.test"}
    settings["routes"] = {"example.test": f"127.0.0.1:{home.port}", "*": f"127.0.0.1:{dest.port}"}
    settings["relay_networks"] = ["127.0.0.1/32"]  # 127.0.0.2 is a remote MTA
    settings["accounting"] = {"path": "./accounting", "records": "d,df,b,rb,f", "fields": {
        "delivered": ["type", "rcpt", "orig", "jobId", "dsnStatus"],
        "deferred": ["type", "rcpt", "orig", "jobId", "dsnStatus"],
        "bounce": ["type", "rcpt", "orig", "jobId", "dsnStatus", "dsnMsg", "bounceCat"],
        "remote_bounce": ["type", "rcpt", "orig", "jobId", "dsnStatus", "bounceCat", "eventId"]}}
    return settings


def send(port: int, sender: str, rcpts: list[str]) -> dict[str, tuple[int, bytes]]:
    """One message from ``sender``; each recipient's RCPT reply and, under ``DATA``, the
    reply to the data (when any recipient was accepted)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail(sender)[0] == 250
        replies = {rcpt: client.rcpt(rcpt) for rcpt in rcpts}
        if any(code == 250 for code, _ in replies.values()):
            replies["DATA"] = client.data(MESSAGE)
    return replies


def job_of(replies: dict[str, tuple[int, bytes]]) -> str:
    code, text = replies["DATA"]
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[1]


def returned(port: int, rcpt: str, message: bytes) -> tuple[int, bytes]:
    """``message`` sent from <> to ``rcpt`` by a remote MTA (127.0.0.2, outside
    relay_networks); the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0)) as client:
        client.ehlo("mx.remote.test")
        client.mail("<>")
        code, text = client.rcpt(rcpt)
        assert code == 250, text
        return client.data(message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def remote_dsn(verp_address: str, rcpt: str) -> bytes:
    """Postfix's DSN for ``rcpt`` (550 5.1.1), sent to ``verp_address``."""
    return (SAMPLES / "postfix.eml").read_bytes().replace(
        SAMPLE_VERP, verp_address.encode()).replace(b"alice@example.org", rcpt.encode())


def complaint(verp_address: str, rcpt: str) -> bytes:
    """Yahoo's ARF report about a message to ``rcpt`` whose return path was ``verp_address``."""
    return (SAMPLES / "yahoo_arf.eml").read_bytes().replace(
        b"bounces@bounces.example.com", verp_address.encode()).replace(
        b"frank@yahoo.com", rcpt.encode())


def of_kind(tmp_path: Path, kind: str) -> list[dict[str, str]]:
    return [record for record in records(tmp_path) if record["type"] == kind]


def listed(tmp_path: Path) -> dict[str, Entry]:
    db = tmp_path / "spool" / "suppression.db"
    if not db.exists():
        return {}
    with SuppressionList(db) as suppression:
        return {entry.address: entry for entry in suppression.entries()}


def report(message: SinkMessage) -> tuple[EmailMessage, list[EmailMessage]]:
    """A notification as the email package reads it: the message and its three parts."""
    parsed = email.message_from_bytes(message.content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    return parsed, parts  # type: ignore[return-value]


def per_recipient(status_part: EmailMessage) -> list[dict[str, str]]:
    """The per-recipient field groups of a message/delivery-status part (after the
    per-message one)."""
    groups = status_part.get_payload()
    assert isinstance(groups, list)
    return [dict(group.items()) for group in groups[1:]]


def without_job(record: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in record.items() if key != "jobId"}


def reply_text(address: str, entry: Entry) -> bytes:
    return refusal_text(address, entry).removeprefix("550 ").encode()


def test_returned_mail_lists_the_recipient_the_next_message_is_refused_also_after_sighup(
        tmp_path: Path) -> None:
    with Sink() as dest, Sink() as home, relay(tmp_path, config(tmp_path, dest, home)
                                               ) as running:
        first = job_of(send(running.port, SENDER, ["gone@a.test", "angry@a.test", "ok@a.test"]))
        assert sorted(dest.wait_for_recipients(3)) == ["angry@a.test", "gone@a.test", "ok@a.test"]
        assert {m.rcpts: m.mail_from for m in dest.messages} == {
            ("gone@a.test",): VERP.encode(first, 0), ("angry@a.test",): VERP.encode(first, 1),
            ("ok@a.test",): VERP.encode(first, 2)}

        # (a) a remote DSN to the VERP address lists its recipient
        assert returned(running.port, VERP.encode(first, 0),
                        remote_dsn(VERP.encode(first, 0), "gone@a.test")) == (
            250, b"2.0.0 Ok: bounce, 1 records")
        wait_until(lambda: "gone@a.test" in listed(tmp_path), what="the remote bounce listed")

        # (f) a reload with the three sections configured
        settings = yaml.safe_load((tmp_path / "relay.yaml").read_text())
        settings["suppression"] = {"expiry": {"complaint": 86400}}
        (tmp_path / "relay.yaml").write_text(yaml.safe_dump(settings))
        os.kill(running.process.pid, signal.SIGHUP)
        wait_until(lambda: "reloaded: the new settings are in use" in running.log.read_text(),
                   what="the reload")

        # (b) a complaint, its job found by the VERP token in Original-Mail-From
        assert returned(running.port, "fbl@example.test",
                        complaint(VERP.encode(first, 1), "angry@a.test")) == (
            250, b"2.0.0 Ok: complaint, 1 records")
        wait_until(lambda: "angry@a.test" in listed(tmp_path), what="the complaint listed")

        # the next message: the listed two refused at RCPT, the others go on
        second = send(running.port, SENDER,
                      ["gone@a.test", "Angry@A.test", "ok@a.test", "reject@a.test"])
        job = job_of(second)
        # the remote DSN passed back to the sender, and the notification about reject@a.test
        wait_until(lambda: len(home.messages) == 2, what="the two notifications")
        wait_until(lambda: len(of_kind(tmp_path, "d")) == 6, what="the delivered records")
        assert running.stop() == 0
    entries = listed(tmp_path)

    gone, angry = entries["gone@a.test"], entries["angry@a.test"]
    assert (gone.reason, gone.source, gone.expires) == (
        "bad-mailbox", "remote-bounce", gone.added + 90 * 86400)
    assert (angry.reason, angry.source, angry.expires) == (
        "complaint", "complaint", angry.added + 86400)  # the reloaded expiry
    assert second["gone@a.test"] == (550, reply_text("gone@a.test", gone))
    assert second["Angry@A.test"] == (550, reply_text("Angry@A.test", angry))
    assert second["ok@a.test"][0] == second["reject@a.test"][0] == 250

    (remote_bounce,) = of_kind(tmp_path, "rb")
    assert (remote_bounce["rcpt"], remote_bounce["orig"], remote_bounce["jobId"],
            remote_bounce["dsnStatus"], remote_bounce["bounceCat"]) == (
        "gone@a.test", SENDER, first, "5.1.1", "bad-mailbox")
    assert remote_bounce["eventId"] == gone.event_id
    (feedback,) = of_kind(tmp_path, "f")
    assert (feedback["rcpt"], feedback["orig"], feedback["jobId"], feedback["feedbackType"]) == (
        "angry@a.test", SENDER, first, "abuse")

    # (e) the refusals are bounces of their own, and the sender hears of reject@a.test only
    assert [without_job(r) for r in of_kind(tmp_path, "b")] == [
        {"type": "b", "rcpt": "gone@a.test", "orig": SENDER, "dsnStatus": "5.7.1",
         "dsnMsg": refusal_text("gone@a.test", gone), "bounceCat": "suppressed"},
        {"type": "b", "rcpt": "Angry@A.test", "orig": SENDER, "dsnStatus": "5.7.1",
         "dsnMsg": refusal_text("Angry@A.test", angry), "bounceCat": "suppressed"},
        {"type": "b", "rcpt": "reject@a.test", "orig": SENDER, "dsnStatus": "5.1.1",
         "dsnMsg": "550 5.1.1 <reject@a.test>: Recipient address rejected: User unknown",
         "bounceCat": "bad-mailbox"}]
    assert [r["jobId"] for r in of_kind(tmp_path, "b")] == ["", "", job]
    assert [[(group["Final-Recipient"], group["Action"], group["Status"])
             for group in per_recipient(report(notification)[1][1])]
            for notification in home.messages] == [[("rfc822; gone@a.test", "failed", "5.1.1")],
                                                   [("rfc822; reject@a.test", "failed", "5.1.1")]]
    # after the reload the mail sent is still VERP'd; the refused two are not in the message,
    # so ok@a.test is its recipient 0
    assert [(m.rcpts, m.mail_from) for m in dest.messages[3:]] == [
        (("ok@a.test",), VERP.encode(job, 0))]


def test_with_verp_a_local_550_is_reported_from_the_null_sender_with_records_of_its_own(
        tmp_path: Path) -> None:
    with Sink() as dest, Sink() as home, relay(tmp_path, config(tmp_path, dest, home)
                                               ) as running:
        job = job_of(send(running.port, SENDER, ["reject@a.test", "ok@a.test"]))
        wait_until(lambda: len(home.messages) == 1, what="the notification")
        wait_until(lambda: len(of_kind(tmp_path, "d")) == 2, what="the delivered records")
        assert running.stop() == 0

    (notification,) = home.messages
    assert (notification.mail_from, notification.rcpts) == ("<>", (SENDER,))
    parsed, parts = report(notification)
    assert parsed["From"] == "Mail Delivery System <MAILER-DAEMON@relay.example.test>"
    assert parts[2].get_payload().startswith("Received: from client.test")
    ((group,),) = [per_recipient(parts[1])]
    assert (group["Final-Recipient"], group["Action"], group["Status"],
            group["Diagnostic-Code"]) == (
        "rfc822; reject@a.test", "failed", "5.1.1",
        "smtp; 550 5.1.1 <reject@a.test>: Recipient address rejected: User unknown")
    delivered = {r["rcpt"]: r for r in of_kind(tmp_path, "d")}
    assert delivered["ok@a.test"]["orig"] == SENDER
    assert delivered["ok@a.test"]["jobId"] == job
    # the notification's own record: orig empty, a job of its own
    assert delivered[SENDER]["orig"] == ""
    assert delivered[SENDER]["jobId"] not in ("", job)
    assert [(r["rcpt"], r["orig"], r["bounceCat"]) for r in of_kind(tmp_path, "b")] == [
        ("reject@a.test", SENDER, "bad-mailbox")]
    assert list(listed(tmp_path)) == ["reject@a.test"]


def test_a_notification_that_bounces_gives_none_and_lists_its_recipient_only_when_hard(
        tmp_path: Path) -> None:
    with Sink() as dest, Sink() as home, relay(tmp_path, config(tmp_path, dest, home)
                                               ) as running:
        # the sender's own address does not exist (550 5.1.1), or refuses the report (554 5.6.0)
        send(running.port, "reject-sender@example.test", ["reject1@a.test"])
        send(running.port, "datafail-sender@example.test", ["reject2@a.test"])
        wait_until(lambda: len(of_kind(tmp_path, "b")) == 4, what="four bounce records")
        wait_until(lambda: "reject-sender@example.test" in listed(tmp_path),
                   what="the sender listed")
        # the listed sender still sends: the list is looked up at RCPT only
        again = send(running.port, "reject-sender@example.test", ["ok@a.test"])
        dest.wait_for_recipients(1)
        assert running.stop() == 0  # the list has every entry once the relay has stopped
    entries = listed(tmp_path)

    assert home.messages == []  # each notification was refused; nothing about them was sent
    assert [m.rcpts for m in dest.messages] == [("ok@a.test",)]
    assert again["DATA"][0] == 250
    bounces = of_kind(tmp_path, "b")
    assert sorted((r["rcpt"], r["orig"], r["bounceCat"]) for r in bounces) == [
        ("datafail-sender@example.test", "", "content-related"),
        ("reject-sender@example.test", "", "bad-mailbox"),
        ("reject1@a.test", "reject-sender@example.test", "bad-mailbox"),
        ("reject2@a.test", "datafail-sender@example.test", "bad-mailbox")]
    assert sorted(entries) == ["reject-sender@example.test", "reject1@a.test", "reject2@a.test"]
    assert entries["reject-sender@example.test"].source == "bounce"


def test_queue_bounce_sends_one_notification_and_lists_nobody(tmp_path: Path) -> None:
    with Sink() as dest, Sink() as home, relay(tmp_path, config(tmp_path, dest, home)
                                               ) as running:
        job = job_of(send(running.port, SENDER, ["tempfail@a.test"]))
        wait_until(lambda: of_kind(tmp_path, "df") != [], what="the deferral")
        done = subprocess.run(
            [sys.executable, "-m", "mta_logging.cli", "queue", "bounce", job, "--config",
             "relay.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        wait_until(lambda: len(home.messages) == 1, what="the notification")
        wait_until(lambda: len(of_kind(tmp_path, "d")) == 1, what="its delivered record")
        assert running.stop() == 0

    assert done.returncode == 0, done.stderr
    (notification,) = home.messages
    assert notification.mail_from == "<>"
    _, parts = report(notification)
    assert [(group["Final-Recipient"], group["Action"], group["Status"])
            for group in per_recipient(parts[1])] == [("rfc822; tempfail@a.test", "failed",
                                                      "5.0.0")]
    assert [(r["rcpt"], r["orig"], r["jobId"], r["bounceCat"]) for r in of_kind(tmp_path, "b")
            ] == [("tempfail@a.test", SENDER, job, "admin-bounce")]
    assert listed(tmp_path) == {}
