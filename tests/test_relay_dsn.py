"""Delivery status notifications end to end: the relay in the test's event loop, two sinks on
127.0.0.1 (the destination ``x.test`` and the sender's domain ``example.test``, by routes),
aiosmtplib as the client; the reports read back with the ``email`` package."""

from __future__ import annotations

import contextlib
import email
import errno
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml
from relay_sink import FakeResolver, Outcomes, Sink, SinkMessage, full_disk_once
from test_relay_e2e import READY, base_config, relay, wait_until
from test_relay_e2e import records as file_records
from test_relay_e2e import send as send_smtplib
from test_relay_inbound import client, running_relay, until
from test_relay_queue import ScriptedDeliverer, accounting, queued
from test_relay_queue import settings as queue_settings

from mta_logging.errors import MtaLoggingError
from mta_logging.handlers import AccountingFileHandler
from mta_logging.outcome import Kind
from mta_logging.relay.admin import StoppedQueue
from mta_logging.relay.config import DsnSettings
from mta_logging.relay.control import LiveQueue
from mta_logging.relay.dsn import (
    DELAYED,
    FAILED,
    RELAYED,
    RecipientReport,
    notice_wanted,
    notification,
)
from mta_logging.relay.dsn_params import MailDsn, RcptDsn
from mta_logging.relay.queue import DeliveryQueue
from mta_logging.relay.server import Relay
from mta_logging.relay.spool import Envelope, Spool
from mta_logging.suppression import Entry, SuppressionList, time_text

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = (b"From: sender@example.test\r\nTo: someone@x.test\r\nSubject: dsn test\r\n"
           b"Message-ID: <m1@example.test>\r\n\r\nThe body of the message.\r\n")


@contextlib.asynccontextmanager
async def two_sinks(tmp_path: Path, dest: Sink, home: Sink, **overrides: Any
                    ) -> AsyncIterator[tuple[Relay, Outcomes]]:
    routes = {"x.test": f"127.0.0.1:{dest.port}", "example.test": f"127.0.0.1:{home.port}"}
    settings = {"routes": routes, "dsn": {"reporting_mta": "relay.example.test"}, **overrides}
    async with running_relay(tmp_path, dest.port, **settings) as running:
        yield running


async def send(relay: Relay, rcpts: Sequence[str | tuple[str, bytes]], *,
               mail: bytes = b"", sender: str = "sender@example.test",
               message: bytes = MESSAGE) -> str:
    """Send one message, with raw MAIL and RCPT parameters; the queue id."""
    smtp = await client(relay)
    reply = await smtp.execute_command(b"MAIL", f"FROM:<{sender}>".encode(), *mail.split())
    assert reply.code == 250, reply
    for item in rcpts:
        rcpt, params = (item, b"") if isinstance(item, str) else item
        reply = await smtp.execute_command(b"RCPT", f"TO:<{rcpt}>".encode(), *params.split())
        assert reply.code == 250, reply
    reply = await smtp.data(message)
    await smtp.quit()
    return reply.message.rsplit(" ", 1)[1]


def parsed(message: SinkMessage) -> Message:
    return email.message_from_bytes(message.content)


def parts(report: Message) -> tuple[Message, list[Message], Message]:
    """The human-readable part, the delivery-status blocks (per message first), the third."""
    human, status, original = report.get_payload()
    return human, status.get_payload(), original


def outcomes(records: Outcomes, kind: Kind) -> list[Any]:
    return [o for o in records.outcomes if o.kind is kind]


async def test_without_a_reporting_mta_the_report_names_the_relays_hostname(tmp_path):
    with Sink() as dest, Sink() as home:
        async with two_sinks(tmp_path, dest, home, hostname="mx1.example.test", dsn={}
                             ) as (relay, _):
            await send(relay, ["reject@x.test"])
            await until(lambda: home.delivered() == ["sender@example.test"])
    [notice] = home.messages
    report = parsed(notice)
    assert report["From"] == "Mail Delivery System <MAILER-DAEMON@mx1.example.test>"
    assert report["Message-ID"].endswith("@mx1.example.test>")
    _, (per_message, _), _ = parts(report)
    assert per_message["Reporting-MTA"] == "dns; mx1.example.test"


async def test_a_550_gives_one_report_to_the_sender_from_the_null_sender(tmp_path):
    with Sink() as dest, Sink() as home:
        async with two_sinks(tmp_path, dest, home) as (relay, records):
            job = await send(relay, [("reject@x.test", b"ORCPT=rfc822;Reject+2BMe@x.test"),
                                     "ok@x.test", "reject2@x.test"],
                             mail=b"ENVID=QQ+3D314 RET=HDRS")
            await until(lambda: home.delivered() == ["sender@example.test"])
            await until(lambda: len(records.outcomes) == 4)
    assert dest.delivered() == ["ok@x.test"]
    [notice] = home.messages
    assert notice.mail_from == "<>"
    report = parsed(notice)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["From"] == "Mail Delivery System <MAILER-DAEMON@relay.example.test>"
    assert report["To"] == "<sender@example.test>"
    assert report["Subject"] == "Undelivered Mail Returned to Sender"
    assert report["Auto-Submitted"] == "auto-replied"
    human, status, headers = parts(report)
    assert human.get_content_type() == "text/plain"
    text = human.get_payload()
    assert "could not be delivered" in text
    assert ("<reject@x.test>: 550 5.1.1 <reject@x.test>: Recipient address rejected: User "
            "unknown") in text
    assert "ok@x.test" not in text
    assert report.get_payload()[1].get_content_type() == "message/delivery-status"
    per_message, first, second = status
    assert per_message["Reporting-MTA"] == "dns; relay.example.test"
    assert per_message["Original-Envelope-Id"] == "QQ=314"
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"])
    assert first["Original-Recipient"] == "rfc822;Reject+Me@x.test"
    assert first["Final-Recipient"] == "rfc822; reject@x.test"
    assert (first["Action"], first["Status"], first["Remote-MTA"]) == (
        "failed", "5.1.1", "dns; sink.test")
    assert first["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 <reject@x.test>: Recipient address rejected: User unknown")
    assert email.utils.parsedate_to_datetime(first["Last-Attempt-Date"])
    assert second["Original-Recipient"] is None
    assert (second["Final-Recipient"], second["Action"]) == ("rfc822; reject2@x.test", "failed")
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: dsn test" in headers.get_payload()
    assert "The body of the message." not in notice.content.decode()
    bounces = outcomes(records, Kind.BOUNCE)
    assert [(b.rcpt, b.job_id, b.env_id, b.orcpt) for b in bounces] == [
        ("reject@x.test", job, "QQ=314", "rfc822;Reject+Me@x.test"),
        ("reject2@x.test", job, "QQ=314", None)]
    [notice_record] = [o for o in outcomes(records, Kind.DELIVERED)
                       if o.rcpt == "sender@example.test"]
    assert notice_record.orig == "" and notice_record.job_id != job


async def test_a_null_mx_gives_a_report_with_the_relay_s_own_diagnostic(tmp_path):
    with Sink() as dest, Sink() as home:
        async with two_sinks(tmp_path, dest, home) as (relay, _):
            relay.queue.deliverer.resolver = FakeResolver({"nullmx.test": [(0, ".")]}, {})
            await send(relay, ["a@nullmx.test"])
            await until(lambda: len(home.messages) == 1)
    _, (_, block), _ = parts(parsed(home.messages[0]))
    assert (block["Final-Recipient"], block["Action"], block["Status"]) == (
        "rfc822; a@nullmx.test", "failed", "5.1.10")
    assert block["Diagnostic-Code"] == (
        "X-mta-logging; Domain nullmx.test does not accept mail (null MX)")
    assert block["Remote-MTA"] is None


async def test_ret_full_returns_the_whole_message_within_the_size_limit(tmp_path):
    big = MESSAGE + (b"x" * 50 + b"\r\n") * 60
    with Sink() as dest, Sink() as home:
        async with two_sinks(tmp_path, dest, home,
                             dsn={"reporting_mta": "relay.example.test",
                                  "max_full_size": 2048}) as (relay, _):
            await send(relay, ["reject@x.test"], mail=b"RET=FULL")
            await send(relay, ["reject@x.test"], mail=b"RET=FULL", message=big)
            await until(lambda: len(home.messages) == 2)
    small_report, big_report = sorted((parsed(m) for m in home.messages),
                                      key=lambda r: len(r.as_bytes()))
    *_, returned = parts(small_report)
    assert returned.get_content_type() == "message/rfc822"
    [original] = returned.get_payload()
    assert original["Subject"] == "dsn test"
    assert original.get_payload() == "The body of the message.\r\n"
    *_, headers = parts(big_report)
    assert headers.get_content_type() == "text/rfc822-headers"  # above max_full_size
    assert "x" * 50 not in big_report.as_string()


async def test_a_report_that_bounces_gives_no_second_report(tmp_path):
    with Sink() as dest, Sink() as home:
        async with two_sinks(tmp_path, dest, home) as (relay, records):
            await send(relay, ["reject@x.test"], sender="rejected-sender@example.test")
            await until(lambda: len(outcomes(records, Kind.BOUNCE)) == 2)
            spool = relay.spool
            await until(lambda: not list(spool.queue_dir.iterdir()))
    assert home.messages == [] and dest.messages == []
    first, second = outcomes(records, Kind.BOUNCE)
    assert (first.rcpt, first.orig) == ("reject@x.test", "rejected-sender@example.test")
    assert (second.rcpt, second.orig) == ("rejected-sender@example.test", "")
    assert len(records.outcomes) == 2


async def test_notify_never_and_dsn_off_give_no_report(tmp_path):
    with Sink() as dest, Sink() as home:
        async with two_sinks(tmp_path / "never", dest, home) as (relay, records):
            await send(relay, [("reject@x.test", b"NOTIFY=NEVER")])
            await until(lambda: len(outcomes(records, Kind.BOUNCE)) == 1)
            await until(lambda: not list(relay.spool.queue_dir.iterdir()))
        async with two_sinks(tmp_path / "off", dest, home,
                             dsn={"enabled": False}) as (relay, records):
            smtp = await client(relay)
            assert "dsn" not in smtp.esmtp_extensions
            reply = await smtp.execute_command(b"MAIL", b"FROM:<sender@example.test>",
                                               b"RET=FULL")
            assert reply.code == 555  # not offered, so not taken
            await smtp.quit()
            await send(relay, ["reject@x.test"])
            await until(lambda: len(outcomes(records, Kind.BOUNCE)) == 1)
            await until(lambda: not list(relay.spool.queue_dir.iterdir()))
        async with two_sinks(tmp_path / "from-null", dest, home) as (relay, records):
            await send(relay, ["reject@x.test"], sender="")
            await until(lambda: len(outcomes(records, Kind.BOUNCE)) == 1)
            await until(lambda: not list(relay.spool.queue_dir.iterdir()))
    assert home.messages == []


async def test_expiry_gives_one_report_with_5_4_7_and_the_last_reply(tmp_path):
    with Sink() as dest, Sink() as home:
        async with two_sinks(tmp_path, dest, home,
                             retry={"intervals": [0.2], "max_queue_lifetime": 1}
                             ) as (relay, records):
            await send(relay, ["tempfail@x.test"])
            await until(lambda: len(home.messages) == 1)
            await until(lambda: not list(relay.spool.queue_dir.iterdir()))
    [notice] = home.messages
    _, (_, block), _ = parts(parsed(notice))
    assert (block["Action"], block["Status"]) == ("failed", "5.4.7")
    assert block["Diagnostic-Code"] == (
        "smtp; 451 4.2.0 <tempfail@x.test>: Mailbox busy, try again later")
    [expired] = outcomes(records, Kind.BOUNCE)
    assert (expired.rcpt, expired.dsn_status, expired.bounce_cat) == (
        "tempfail@x.test", "5.4.7", "message-expired")


async def test_notify_delay_sends_one_delay_notice_per_message(tmp_path):
    with Sink() as dest, Sink() as home:
        async with two_sinks(tmp_path, dest, home,
                             retry={"intervals": [0.1], "max_queue_lifetime": 1.5}
                             ) as (relay, records):
            await send(relay, [("tempfail@x.test", b"NOTIFY=DELAY,FAILURE"),
                               ("tempfail2@x.test", b"NOTIFY=DELAY")])
            await until(lambda: len(outcomes(records, Kind.BOUNCE)) == 2)
            await until(lambda: not list(relay.spool.queue_dir.iterdir()))
    assert len(outcomes(records, Kind.DEFERRED)) >= 4  # several attempts, one notice
    delayed, failed = (parsed(m) for m in home.messages)
    assert delayed["Subject"] == "Delayed Mail (still being retried)"
    human, (_, first, second), _ = parts(delayed)
    assert "still being tried" in human.get_payload()
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in (first, second)] == [
        ("rfc822; tempfail@x.test", "delayed", "4.2.0"),
        ("rfc822; tempfail2@x.test", "delayed", "4.2.0")]
    assert email.utils.parsedate_to_datetime(first["Will-Retry-Until"])
    _, (_, only), _ = parts(failed)  # tempfail2 did not ask to hear of its failure
    assert (only["Final-Recipient"], only["Action"]) == ("rfc822; tempfail@x.test", "failed")


async def test_a_restart_sends_no_second_delay_notice(tmp_path):
    retry = {"intervals": [0.1], "max_queue_lifetime": 3600}
    with Sink() as dest, Sink() as home:
        dest.defer = {"later@x.test"}
        async with two_sinks(tmp_path, dest, home, retry=retry) as (relay, records):
            await send(relay, [("later@x.test", b"NOTIFY=DELAY")])
            await until(lambda: len(home.messages) == 1)
        async with two_sinks(tmp_path, dest, home, retry=retry) as (relay, records):
            await until(lambda: len(outcomes(records, Kind.DEFERRED)) >= 3)  # tried again
            dest.defer = set()
            await until(lambda: dest.delivered() == ["later@x.test"])
    assert len(home.messages) == 1


async def test_delay_notice_after_reports_recipients_that_gave_no_notify(tmp_path):
    with Sink() as dest, Sink() as home:
        dest.defer = {"later@x.test", "quiet@x.test"}
        async with two_sinks(tmp_path, dest, home,
                             retry={"intervals": [0.2], "max_queue_lifetime": 3600},
                             dsn={"delay_notice_after": 0.5}) as (relay, records):
            await send(relay, ["later@x.test", ("quiet@x.test", b"NOTIFY=FAILURE")])
            await until(lambda: len(home.messages) == 1)
            deferrals = len(outcomes(records, Kind.DEFERRED))
            await until(lambda: len(outcomes(records, Kind.DEFERRED)) >= deferrals + 4)
            dest.defer = set()
            await until(lambda: sorted(dest.delivered()) == ["later@x.test", "quiet@x.test"])
    [notice] = home.messages
    _, (_, block), _ = parts(parsed(notice))
    assert (block["Final-Recipient"], block["Action"]) == ("rfc822; later@x.test", "delayed")


async def test_notify_success_a_next_hop_without_dsn_gives_relayed(tmp_path):
    with Sink() as dest, Sink() as home:
        async with two_sinks(tmp_path, dest, home) as (relay, _):
            await send(relay, [("ok@x.test", b"NOTIFY=SUCCESS,FAILURE"), "ok2@x.test"])
            await until(lambda: len(home.messages) == 1)
            await until(lambda: not list(relay.spool.queue_dir.iterdir()))
    [notice] = home.messages
    report = parsed(notice)
    assert report["Subject"] == "Successful Mail Delivery Report"
    human, (_, block), _ = parts(report)
    assert "do not report its delivery status" in human.get_payload()
    assert (block["Final-Recipient"], block["Action"], block["Status"]) == (
        "rfc822; ok@x.test", "relayed", "2.0.0")
    assert block["Diagnostic-Code"] == "smtp; 250 2.0.0 Ok: delivered to 2 recipient(s)"


async def test_the_parameters_go_on_to_a_next_hop_with_dsn_and_not_to_one_without(tmp_path):
    rcpts = [("ok@x.test", b"NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Ok+2Bme@x.test"), "ok2@x.test"]
    with Sink(dsn=True) as dest, Sink() as home:
        async with two_sinks(tmp_path, dest, home) as (relay, records):
            await send(relay, rcpts, mail=b"RET=FULL ENVID=abc+2Bdef")
            await until(lambda: len(dest.messages) == 1)
            await until(lambda: not list(relay.spool.queue_dir.iterdir()))
    [passed] = dest.messages
    assert passed.mail_dsn == MailDsn(ret="FULL", envid="abc+def")
    assert passed.rcpt_dsn == (RcptDsn(notify=("SUCCESS", "DELAY"), orcpt="rfc822;Ok+me@x.test"),
                               RcptDsn())
    assert home.messages == []  # the next hop reports the delivery, not the relay
    [delivered, _] = outcomes(records, Kind.DELIVERED)
    assert (delivered.env_id, delivered.orcpt) == ("abc+def", "rfc822;Ok+me@x.test")
    with Sink() as plain, Sink() as home:
        async with two_sinks(tmp_path / "plain", plain, home) as (relay, _):
            await send(relay, rcpts, mail=b"RET=FULL ENVID=abc+2Bdef")
            await until(lambda: len(plain.messages) == 1)
            await until(lambda: len(home.messages) == 1)  # relayed, asked with SUCCESS
    [plain_message] = plain.messages  # aiosmtpd would have refused them with 555
    assert not any(option.startswith(("RET=", "ENVID=")) for option in plain_message.mail_options)
    _, (_, block), _ = parts(parsed(home.messages[0]))
    assert (block["Original-Recipient"], block["Action"]) == ("rfc822;Ok+me@x.test", "relayed")


async def test_every_malformed_parameter_gets_501_5_5_4_saying_what_is_wrong(tmp_path):
    mail_cases = {
        b"RET=ALL": "501 5.5.4 RET=ALL is not valid; expected RET=FULL or RET=HDRS",
        b"RET=FULL RET=HDRS": "501 5.5.4 duplicate RET parameter",
        b"ENVID=a=b": "501 5.5.4 ENVID: 'a=b' is not xtext (RFC 3461 section 4): '=' must be "
                      "written as +XX, + as two upper-case hex digits",
        b"ENVID=ab+4": "501 5.5.4 ENVID: 'ab+4' is not xtext (RFC 3461 section 4): '+' must be "
                       "written as +XX, + as two upper-case hex digits",
        b"ENVID=" + b"e" * 101: "501 5.5.4 ENVID is 101 characters long; at most 100 are "
                                "allowed (RFC 3461 section 4.4)",
        b"ENVID=": "501 5.5.4 ENVID needs a value",
        "ENVID=é".encode(): "501 5.5.4 ENVID: '\\xe9' is not xtext (RFC 3461 section 4): "
                            "'\\xe9' must be written as +XX, + as two upper-case hex digits",
        b"ENVID=a ENVID=b": "501 5.5.4 duplicate ENVID parameter",
    }
    rcpt_cases = {
        b"NOTIFY=NEVER,SUCCESS": "501 5.5.4 NOTIFY=NEVER,SUCCESS is not valid; NEVER cannot "
                                 "be combined with other values",
        b"NOTIFY=SOMETIMES": "501 5.5.4 NOTIFY=SOMETIMES is not valid; expected NEVER or a "
                             "list of SUCCESS, FAILURE, DELAY",
        b"NOTIFY=DELAY,DELAY": "501 5.5.4 NOTIFY=DELAY,DELAY is not valid; a value is repeated",
        b"NOTIFY=DELAY NOTIFY=NEVER": "501 5.5.4 duplicate NOTIFY parameter",
        b"ORCPT=a@x.test": "501 5.5.4 ORCPT=a@x.test is not valid; expected addr-type;xtext "
                           "such as rfc822;user@example.com",
        b"ORCPT=rfc822;a b": None,  # two tokens: "b" is an unknown parameter (aiosmtpd's 555)
        b"ORCPT=rfc822;" + b"a" * 500: "501 5.5.4 ORCPT is 507 characters long; at most 500 "
                                       "are allowed (RFC 3461 section 4.2)",
    }
    with Sink() as dest, Sink() as home:
        async with two_sinks(tmp_path, dest, home) as (relay, _):
            smtp = await client(relay)
            assert "dsn" in smtp.esmtp_extensions
            for params, expected in mail_cases.items():
                reply = await smtp.execute_command(b"MAIL", b"FROM:<s@example.test>",
                                                   *params.split(b" "))
                assert f"{reply.code} {reply.message}" == expected, params
            reply = await smtp.execute_command(b"MAIL", b"FROM:<s@example.test>", b"ret=full")
            assert reply.code == 250  # keywords and RET's values in any case
            for params, expected in rcpt_cases.items():
                reply = await smtp.execute_command(b"RCPT", b"TO:<r@x.test>",
                                                   *params.split(b" "))
                if expected is None:
                    assert reply.code == 555, params
                else:
                    assert f"{reply.code} {reply.message}" == expected, params
            reply = await smtp.execute_command(b"RCPT", b"TO:<r@x.test>", b"notify=never")
            assert reply.code == 250
            longest = b"ORCPT=rfc822;" + b"a" * 487  # RFC 3461 lengthens RCPT for it
            reply = await smtp.execute_command(b"RCPT", b"TO:<r2@x.test>",
                                               b"NOTIFY=SUCCESS,FAILURE,DELAY", longest)
            assert reply.code == 250, reply
            await smtp.quit()


CRASHING_RELAY = """\
import os, sys
from mta_logging.relay import spool

journal = spool.Spool.journal


def crash_before_final_entries(self, queue_id, entries, *, sync=True):
    entries = list(entries)
    if any(entry.startswith("b ") for entry in entries):
        os._exit(9)  # the report is in the spool; its entries are not in the journal
    journal(self, queue_id, entries, sync=sync)


spool.Spool.journal = crash_before_final_entries
from mta_logging.cli import main

sys.exit(main(sys.argv[1:]))
"""


def start_crashing_relay(workdir: Path, config: dict[str, Any]) -> tuple[subprocess.Popen[bytes],
                                                                          int]:
    """The relay with its journal write replaced by a crash (``os._exit``) when it is about to
    journal a bounce: the process and the port it listens on."""
    (workdir / "relay.yaml").write_text(yaml.safe_dump(config))
    (workdir / "crashing_relay.py").write_text(CRASHING_RELAY)
    log = workdir / "crash.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "crashing_relay.py", "relay", "--config", "relay.yaml"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=stderr,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith(READY):
                return process, int(line.split()[4].rsplit(":", 1)[1])
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the relay did not start:\n{log.read_text()}")


def test_a_crash_between_storing_the_report_and_the_journal_loses_and_repeats_nothing(
        tmp_path):
    with Sink() as dest, Sink() as home:
        config = base_config(dest.port, routes={"x.test": f"127.0.0.1:{dest.port}",
                                                "example.test": f"127.0.0.1:{home.port}"})
        # the bounce's recipient and one that waits (the journal, not a removal, records it)
        dest.defer = {"later@x.test"}
        crashing, port = start_crashing_relay(tmp_path, config)
        try:
            job = send_smtplib(port, ["reject@x.test", "later@x.test"])
            assert crashing.wait(30) == 9
        finally:
            if crashing.poll() is None:
                crashing.kill()
                crashing.wait(10)
        queued = sorted(p.name for p in (tmp_path / "spool" / "queue").iterdir())
        assert len(queued) == 2 and queued[0] == job  # the message and its report
        assert not (tmp_path / "spool" / "state" / job).exists()  # no entry for the bounce
        dest.defer = set()
        with relay(tmp_path, config) as running:
            wait_until(lambda: home.delivered() == ["sender@example.test"], what="the report")
            wait_until(lambda: dest.delivered() == ["later@x.test"], what="the other one")
            wait_until(lambda: not list((tmp_path / "spool" / "queue").iterdir()),
                       what="an empty queue")
            assert running.stop() == 0
        assert "completing the journal from its report" in running.log.read_text()
    assert len(home.messages) == 1  # not lost, not sent twice
    assert dest.delivered() == ["later@x.test"]  # the bounced one not tried again
    kinds = sorted((r["type"], r["rcpt"]) for r in file_records(tmp_path))
    assert kinds == [("b", "reject@x.test"), ("d", "later@x.test"),
                     ("d", "sender@example.test"), ("df", "later@x.test")]


def failing_once(function: Any, when: Any) -> Any:
    """``function``, raising ENOSPC the first time ``when(*args)`` is true."""
    failed: list[object] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if not failed and when(*args):
            failed.append(args)
            raise OSError(errno.ENOSPC, "No space left on device")
        return function(*args, **kwargs)

    return call


async def test_a_report_that_cannot_be_stored_keeps_its_recipient_queued(tmp_path):
    spool = Spool.open(tmp_path)
    spool.store = failing_once(  # type: ignore[method-assign]
        spool.store, lambda queue_id, envelope, content: envelope.report_of is not None)
    logger, records = accounting()
    deliverer = ScriptedDeliverer({"c@one.test": [(Kind.BOUNCE, "5.1.1")],
                                   "sender@example.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(queue_settings(dsn={}), spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "c@one.test"))
    await until(lambda: "sender@example.test" in deliverer.asked)
    await until(lambda: not list(spool.queue_dir.iterdir()))
    await queue.stop(5)
    # bounced, not reported, so still queued; bounced again (recorded again) and reported
    assert deliverer.asked == ["c@one.test", "c@one.test", "sender@example.test"]
    assert [(o.kind, o.rcpt) for o in records.outcomes] == [
        (Kind.BOUNCE, "c@one.test"), (Kind.BOUNCE, "c@one.test"),
        (Kind.DELIVERED, "sender@example.test")]


async def test_a_journal_write_that_fails_takes_the_report_back(tmp_path):
    spool = Spool.open(tmp_path)
    spool.journal = failing_once(  # type: ignore[method-assign]
        spool.journal, lambda queue_id, entries: "b 0" in entries)
    logger, records = accounting()
    deliverer = ScriptedDeliverer({
        "c@one.test": [(Kind.BOUNCE, "5.1.1")],
        "b@two.test": [(Kind.DEFERRED, "4.2.0"), (Kind.DELIVERED, "2.0.0")],
        "sender@example.test": [(Kind.DELIVERED, "2.0.0")]})
    queue = DeliveryQueue(queue_settings(dsn={}), spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "c@one.test", "b@two.test"))
    await until(lambda: "sender@example.test" in deliverer.asked)
    await until(lambda: not list(spool.queue_dir.iterdir()))
    await queue.stop(5)
    assert deliverer.asked.count("sender@example.test") == 1  # the first report taken back
    assert deliverer.asked.count("c@one.test") == 2
    assert [o.rcpt for o in records.outcomes if o.kind is Kind.DELIVERED] == [
        "b@two.test", "sender@example.test"]


def listed(path: Path, address: str) -> Entry:
    """``address`` put on the suppression list at ``path`` (a hard bounce, an hour ago)."""
    entry = Entry(address, "bad-mailbox", int(time.time()) - 3600, None, "bounce")
    with SuppressionList(path) as suppression:
        suppression.add([entry])
    return entry


def suppression_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mta_logging.relay.suppression"]


def bounced_and_deferred(tmp_path: Path, spool: Spool
                         ) -> tuple[DeliveryQueue, ScriptedDeliverer, Any]:
    """A started queue with the suppression list at ``tmp_path`` and DSNs on, delivering
    ``c@one.test`` to a bounce and ``b@two.test`` after one deferral; its deliverer and
    records."""
    logger, records = accounting()
    deliverer = ScriptedDeliverer({
        "c@one.test": [(Kind.BOUNCE, "5.1.1")],
        "b@two.test": [(Kind.DEFERRED, "4.2.0"), (Kind.DELIVERED, "2.0.0")],
        "sender@example.test": [(Kind.DELIVERED, "2.0.0")]})
    settings = queue_settings(dsn={}, suppression={"path": str(tmp_path / "suppression.db")})
    queue = DeliveryQueue(settings, spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    return queue, deliverer, records


async def test_no_report_goes_to_a_sender_on_the_suppression_list_the_sender_is_recorded(
        tmp_path, caplog):
    spool = Spool.open(tmp_path / "spool")
    entry = listed(tmp_path / "suppression.db", "sender@example.test")
    queue, deliverer, records = bounced_and_deferred(tmp_path, spool)
    with caplog.at_level(logging.INFO, "mta_logging.relay.suppression"):
        queue.submit(queued(spool, "c@one.test", "b@two.test"))
        await until(lambda: not list(spool.queue_dir.iterdir()))
        await queue.stop(5)
    # the bounce journaled without a report: not tried again; no report delivered
    assert deliverer.asked == ["c@one.test", "b@two.test", "b@two.test"]
    since = time_text(entry.added)
    assert [(o.kind, o.rcpt, o.bounce_cat, o.orig) for o in records.outcomes] == [
        (Kind.BOUNCE, "c@one.test", "bad-mailbox", "sender@example.test"),
        (Kind.BOUNCE, "sender@example.test", "suppressed", ""),
        (Kind.DEFERRED, "b@two.test", None, "sender@example.test"),
        (Kind.DELIVERED, "b@two.test", None, "sender@example.test")]
    skipped = records.outcomes[1]
    assert (skipped.dsn_status, skipped.dsn_msg, skipped.vmta, skipped.job_id) == (
        "5.7.1", f"550 5.7.1 <sender@example.test>: Recipient address rejected: on the "
        f"suppression list since {since}, reason bad-mailbox", "pool1", None)
    assert suppression_lines(caplog) == [
        f"Q1: sender notification to <sender@example.test> not sent: on the suppression list "
        f"since {since}, reason bad-mailbox"]


async def test_a_journal_write_that_fails_after_a_skipped_report_keeps_the_recipient_queued(
        tmp_path):
    spool = Spool.open(tmp_path / "spool")
    spool.journal = failing_once(  # type: ignore[method-assign]
        spool.journal, lambda queue_id, entries: "b 0" in entries)
    listed(tmp_path / "suppression.db", "sender@example.test")
    queue, deliverer, records = bounced_and_deferred(tmp_path, spool)
    queue.submit(queued(spool, "c@one.test", "b@two.test"))
    await until(lambda: not list(spool.queue_dir.iterdir()))
    await queue.stop(5)
    # not final without its journal entry: bounced and recorded again, the skip too; no report
    assert deliverer.asked == ["c@one.test", "b@two.test", "c@one.test", "b@two.test"]
    assert [(o.kind, o.rcpt, o.bounce_cat) for o in records.outcomes] == [
        (Kind.BOUNCE, "c@one.test", "bad-mailbox"),
        (Kind.BOUNCE, "sender@example.test", "suppressed"),
        (Kind.DEFERRED, "b@two.test", None),
        (Kind.BOUNCE, "c@one.test", "bad-mailbox"),
        (Kind.BOUNCE, "sender@example.test", "suppressed"),
        (Kind.DELIVERED, "b@two.test", None)]


def suppressed_record_fails_once(monkeypatch: pytest.MonkeyPatch, logger: logging.Logger,
                                 directory: Path) -> list[bytes]:
    """Bounce files for ``logger`` in ``directory``, where the first write of a ``suppressed``
    record meets a full disk; the writes that failed."""
    logger.addHandler(AccountingFileHandler("bounce", directory))
    return full_disk_once(monkeypatch, b"\tsuppressed\n")


def bounce_file_rcpts(directory: Path) -> list[str]:
    return [line.split("\t")[3] for path in sorted(directory.glob("*.tsv"))
            for line in path.read_text().splitlines()[1:]]


async def test_a_skipped_report_whose_record_cannot_be_written_keeps_its_recipient_queued(
        tmp_path, monkeypatch, caplog):
    """The sender's ``suppressed`` record meets a full disk: like a report that cannot be
    stored, the bounce it stood for is not final; bounced, recorded and skipped again, with
    the fault logged once and its end."""
    spool = Spool.open(tmp_path / "spool")
    listed(tmp_path / "suppression.db", "sender@example.test")
    queue, deliverer, records = bounced_and_deferred(tmp_path, spool)
    assert queue.accounting is not None
    failed = suppressed_record_fails_once(monkeypatch, queue.accounting.logger, tmp_path / "b")
    with caplog.at_level(logging.WARNING, "mta_logging.relay.queue"):
        queue.submit(queued(spool, "c@one.test", "b@two.test"))
        await until(lambda: not list(spool.queue_dir.iterdir()))
        await queue.stop(5)
    assert len(failed) == 1
    assert deliverer.asked == ["c@one.test", "b@two.test", "c@one.test", "b@two.test"]
    assert bounce_file_rcpts(tmp_path / "b") == ["c@one.test", "c@one.test",
                                                 "sender@example.test"]
    assert [r.getMessage() for r in caplog.records if r.name == "mta_logging.relay.queue"] == [
        "suppressed sender record write failed: Q1: the suppressed record of "
        "<sender@example.test> could not be written; the notification's recipients stay "
        "queued and are tried again (further failures of this kind are counted, not logged, "
        "until one succeeds)",
        "suppressed sender record write works again after 1 failure(s)"]


async def test_a_skipped_delay_notice_whose_record_cannot_be_written_is_skipped_next_time(
        tmp_path, monkeypatch):
    spool = Spool.open(tmp_path / "spool")
    listed(tmp_path / "suppression.db", "sender@example.test")
    logger, records = accounting()
    failed = suppressed_record_fails_once(monkeypatch, logger.logger, tmp_path / "b")
    deliverer = ScriptedDeliverer({
        "b@two.test": [(Kind.DEFERRED, "4.2.0"), (Kind.DEFERRED, "4.2.0"),
                       (Kind.DEFERRED, "4.2.0"), (Kind.DELIVERED, "2.0.0")],
        "sender@example.test": [(Kind.DELIVERED, "2.0.0")]})
    settings = queue_settings(dsn={"delay_notice_after": 5},
                              suppression={"path": str(tmp_path / "suppression.db")})
    queue = DeliveryQueue(settings, spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    queue.submit(queued(spool, "b@two.test", age=10))
    await until(lambda: not list(spool.queue_dir.iterdir()))
    await queue.stop(5)
    # the first skip unrecorded: not remembered; the second recorded and remembered
    assert len(failed) == 1
    assert deliverer.asked == ["b@two.test"] * 4
    assert bounce_file_rcpts(tmp_path / "b") == ["sender@example.test"]
    assert [(o.kind, o.rcpt) for o in records.outcomes] == [
        (Kind.DEFERRED, "b@two.test"), (Kind.BOUNCE, "sender@example.test"),
        (Kind.DEFERRED, "b@two.test"), (Kind.BOUNCE, "sender@example.test"),
        (Kind.DEFERRED, "b@two.test"), (Kind.DELIVERED, "b@two.test")]


async def test_a_delay_notice_to_a_suppressed_sender_is_skipped_once(tmp_path, caplog):
    spool = Spool.open(tmp_path / "spool")
    listed(tmp_path / "suppression.db", "sender@example.test")
    logger, records = accounting()
    deliverer = ScriptedDeliverer({
        "b@two.test": [(Kind.DEFERRED, "4.2.0"), (Kind.DEFERRED, "4.2.0"),
                       (Kind.DELIVERED, "2.0.0")],
        "sender@example.test": [(Kind.DELIVERED, "2.0.0")]})
    settings = queue_settings(dsn={"delay_notice_after": 5},
                              suppression={"path": str(tmp_path / "suppression.db")})
    queue = DeliveryQueue(settings, spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    with caplog.at_level(logging.INFO, "mta_logging.relay.suppression"):
        # queued 10 s ago: the first deferral is past delay_notice_after, however soon it comes
        queue.submit(queued(spool, "b@two.test", age=10))
        await until(lambda: not list(spool.queue_dir.iterdir()))
        await queue.stop(5)
    assert deliverer.asked == ["b@two.test"] * 3
    assert [(o.kind, o.rcpt, o.bounce_cat) for o in records.outcomes] == [
        (Kind.DEFERRED, "b@two.test", None), (Kind.BOUNCE, "sender@example.test", "suppressed"),
        (Kind.DEFERRED, "b@two.test", None), (Kind.DELIVERED, "b@two.test", None)]
    assert len(suppression_lines(caplog)) == 1


async def test_a_suppression_list_that_cannot_be_read_lets_the_report_go_to_the_sender(
        tmp_path, caplog):
    spool = Spool.open(tmp_path / "spool")
    (tmp_path / "suppression.db").mkdir()  # a directory where the list's file must be
    logger, records = accounting()
    deliverer = ScriptedDeliverer({"c@one.test": [(Kind.BOUNCE, "5.1.1")],
                                   "sender@example.test": [(Kind.DELIVERED, "2.0.0")]})
    settings = queue_settings(dsn={}, suppression={"path": str(tmp_path / "suppression.db")})
    queue = DeliveryQueue(settings, spool, deliverer, logger)  # type: ignore[arg-type]
    queue.start()
    with caplog.at_level(logging.INFO, "mta_logging.relay.suppression"):
        queue.submit(queued(spool, "c@one.test"))
        await until(lambda: not list(spool.queue_dir.iterdir())
                    and "sender@example.test" in deliverer.asked)
        await queue.stop(5)
    assert deliverer.asked == ["c@one.test", "sender@example.test"]  # failed open: reported
    assert [(o.kind, o.rcpt, o.bounce_cat) for o in records.outcomes] == [
        (Kind.BOUNCE, "c@one.test", "bad-mailbox"),
        (Kind.DELIVERED, "sender@example.test", None)]
    assert suppression_lines(caplog) == [
        f"suppression list lookup failed: suppression list {tmp_path / 'suppression.db'}: is a "
        "directory; expected an SQLite file, or no file yet (one is made); notifications are "
        "sent to every sender until it can be read (tried again every 10 s) (further failures "
        "of this kind are counted, not logged, until one succeeds)"]


def bounced_by_the_operator(records: Outcomes, since: str) -> None:
    """The records and log of ``queue bounce`` of Q1 (b@one.test pending) whose sender,
    sender@example.test, is on the suppression list: the recipient, then the sender."""
    assert [(o.kind, o.rcpt, o.bounce_cat, o.orig) for o in records.outcomes] == [
        (Kind.BOUNCE, "b@one.test", "admin-bounce", "sender@example.test"),
        (Kind.BOUNCE, "sender@example.test", "suppressed", "")]
    assert records.outcomes[1].dsn_msg == (
        f"550 5.7.1 <sender@example.test>: Recipient address rejected: on the suppression list "
        f"since {since}, reason bad-mailbox")


async def test_queue_bounce_on_a_stopped_relay_sends_no_report_to_a_suppressed_sender(
        tmp_path, caplog):
    spool = Spool.open(tmp_path / "spool")
    entry = listed(tmp_path / "suppression.db", "sender@example.test")
    logger, records = accounting()
    queued(spool, "a@one.test", "b@one.test", queue_id="Q1")
    spool.journal("Q1", ["d 0"])
    settings = queue_settings(dsn={}, suppression={"path": str(tmp_path / "suppression.db")})
    with caplog.at_level(logging.INFO, "mta_logging.relay.suppression"):
        assert await StoppedQueue(spool, settings, lambda: logger).act("bounce", "Q1") == (
            "admin-bounce: recorded and removed")
    assert spool.load() == []  # no report to send, and Q1 is gone
    bounced_by_the_operator(records, time_text(entry.added))
    assert suppression_lines(caplog) == [
        f"Q1: sender notification to <sender@example.test> not sent: on the suppression list "
        f"since {time_text(entry.added)}, reason bad-mailbox"]


async def test_queue_bounce_whose_suppressed_record_cannot_be_written_keeps_the_message(
        tmp_path, monkeypatch):
    spool = Spool.open(tmp_path / "spool")
    listed(tmp_path / "suppression.db", "sender@example.test")
    logger, records = accounting()
    failed = suppressed_record_fails_once(monkeypatch, logger.logger, tmp_path / "b")
    queued(spool, "a@one.test", "b@one.test", queue_id="Q1")
    spool.journal("Q1", ["d 0"])
    settings = queue_settings(dsn={}, suppression={"path": str(tmp_path / "suppression.db")})
    stopped = StoppedQueue(spool, settings, lambda: logger)
    with pytest.raises(MtaLoggingError) as refused:
        await stopped.act("bounce", "Q1")
    assert str(refused.value) == ("Q1: the suppressed record of <sender@example.test> could "
                                  "not be written; the message stays queued")
    assert len(failed) == 1
    assert [m.queue_id for m in spool.load()] == ["Q1"]
    # the operator tries again: the recipient is recorded again, the sender this time
    assert await stopped.act("bounce", "Q1") == "admin-bounce: recorded and removed"
    assert spool.load() == []
    assert bounce_file_rcpts(tmp_path / "b") == ["b@one.test", "b@one.test",
                                                 "sender@example.test"]


async def test_queue_bounce_on_a_running_relay_sends_no_report_to_a_suppressed_sender(
        tmp_path, caplog):
    spool = Spool.open(tmp_path / "spool")
    entry = listed(tmp_path / "suppression.db", "sender@example.test")
    logger, records = accounting()
    message = queued(spool, "a@one.test", "b@one.test", queue_id="Q1")
    spool.journal("Q1", ["d 0"])
    message.final[0] = True
    settings = queue_settings(dsn={}, suppression={"path": str(tmp_path / "suppression.db")})
    queue = DeliveryQueue(settings, spool, ScriptedDeliverer({}), logger)  # type: ignore[arg-type]
    queue.hold(message)  # known to the queue, not attempted
    with caplog.at_level(logging.INFO, "mta_logging.relay.suppression"):
        assert await LiveQueue(settings, spool, queue, None).act("bounce", "Q1") == (
            "admin-bounce: recorded and removed")
    await queue.stop(5)
    assert spool.load() == [] and queue.messages == {}  # no report queued, and Q1 is gone
    bounced_by_the_operator(records, time_text(entry.added))
    assert len(suppression_lines(caplog)) == 1


@pytest.mark.parametrize(("notify", "action", "age", "after", "wanted"), [
    (None, FAILED, 0, None, True),
    (("NEVER",), FAILED, 0, None, False),
    (("SUCCESS",), FAILED, 0, None, False),
    (None, RELAYED, 0, None, False),
    (("SUCCESS",), RELAYED, 0, None, True),
    (None, DELAYED, 10**6, None, False),  # no NOTIFY, no delay_notice_after: none
    (None, DELAYED, 99, 100, False),
    (None, DELAYED, 100, 100, True),
    (("DELAY",), DELAYED, 0, None, True),  # at the first deferral
    (("DELAY",), DELAYED, 99, 100, False),
    (("FAILURE",), DELAYED, 10**6, 100, False),
])
def test_which_notices_are_due(notify, action, age, after, wanted):
    settings = DsnSettings(reporting_mta="r.test", delay_notice_after=after)
    envelope = Envelope("s@example.test", ("a@x.test",), 0.0, rcpt_dsn=(RcptDsn(notify),))
    assert notice_wanted(settings, envelope, 0, action, age=age) is wanted
    from_null = Envelope("", ("a@x.test",), 0.0, rcpt_dsn=(RcptDsn(notify),))
    assert not notice_wanted(settings, from_null, 0, action, age=age)
    assert not notice_wanted(DsnSettings(enabled=False), envelope, 0, action, age=age)


def test_a_report_on_international_mail_is_8bit_and_names_the_address_as_utf_8():
    envelope = Envelope("jörg@example.test", ("zoë@x.test",), 1700000000.0, smtputf8=True)
    content = "Subject: grüße\r\n\r\nHallo\r\n".encode()
    report = RecipientReport(0, FAILED, "5.1.1", "550 5.1.1 unknown\r\n  user", None,
                             1700000100.0)
    notice, data = notification(DsnSettings(reporting_mta="r.test"), "Q1", envelope, content,
                                [report], when=1700000200.0, entries=["b 0"])
    assert (notice.mail_from, notice.rcpts, notice.smtputf8) == ("", ("jörg@example.test",), True)
    assert (notice.report_of, notice.report_entries) == ("Q1", ("b 0",))
    parsed_report = email.message_from_bytes(data)
    _, (_, block), headers = parts(parsed_report)
    assert block["Final-Recipient"] == "utf-8; zo\\x{EB}@x.test"  # RFC 6533 utf-8-addr-xtext
    assert block["Diagnostic-Code"] == "smtp; 550 5.1.1 unknown user"  # one line
    assert "grüße" in headers.get_payload(decode=True).decode()
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))



def test_ret_full_of_a_mime_bomb_returns_its_header_section_instead():
    opens = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                     for i in range(3000))
    content = (b"Message-ID: <bomb@example.test>\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + opens + b"x\r\n"
               + b"".join(b"--b%d--\r\n" % i for i in reversed(range(3001))))
    envelope = Envelope("a@example.test", ("b@x.test",), 1700000000.0, mail_dsn=MailDsn(ret="FULL"))
    report = RecipientReport(0, FAILED, "5.1.1", "550 5.1.1 unknown", None, 1700000100.0)
    notice, data = notification(DsnSettings(reporting_mta="r.test", max_full_size=1 << 20), "Q1",
                                envelope, content, [report], when=1700000200.0, entries=["b 0"])
    assert notice.rcpts == ("a@example.test",)
    _, (_, block), headers = parts(email.message_from_bytes(data))
    assert (block["Final-Recipient"], block["Action"]) == ("rfc822; b@x.test", "failed")
    assert headers.get_content_type() == "text/rfc822-headers"
    assert b"Message-ID: <bomb@example.test>" in headers.get_payload(decode=True)

async def test_queue_bounce_on_a_stopped_relay_leaves_a_report_to_send(tmp_path):
    spool = Spool.open(tmp_path)
    logger, records = accounting()
    queued(spool, "a@one.test", "b@one.test", queue_id="Q1")
    spool.journal("Q1", ["d 0"])
    stopped = StoppedQueue(spool, queue_settings(dsn={"reporting_mta": "r.test"}),
                           lambda: logger)
    assert await stopped.act("bounce", "Q1") == "admin-bounce: recorded and removed"
    [report] = spool.load()
    assert (report.envelope.mail_from, report.envelope.rcpts) == ("", ("sender@example.test",))
    assert (report.envelope.report_of, report.envelope.report_entries) == ("Q1", ("b 1",))
    _, (_, block), _ = parts(email.message_from_bytes(spool.read_content(report.queue_id)))
    assert (block["Final-Recipient"], block["Action"], block["Status"]) == (
        "rfc822; b@one.test", "failed", "5.0.0")
    assert block["Diagnostic-Code"] == (
        "X-mta-logging; 5.0.0 returned to the sender by the administrator")
    assert [(o.rcpt, o.bounce_cat) for o in records.outcomes] == [("b@one.test", "admin-bounce")]
    queued(spool, "c@one.test", queue_id="Q2")
    assert await stopped.act("delete", "Q2") == "admin-delete: recorded and removed"
    assert [m.queue_id for m in spool.load()] == [report.queue_id]  # no report for a delete
