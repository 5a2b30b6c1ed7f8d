"""The relay and its suppression list, end to end on 127.0.0.1: a sink that answers 550 5.1.1,
the relay in the test's event loop with real accounting files, aiosmtplib as the client and
``mta-logging suppression`` in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import yaml
from relay_sink import FakeResolver, Sink, full_disk_once
from test_relay_e2e import base_config, records, relay, wait_until

import mta_logging
from mta_logging.check_config import relay_mapping
from mta_logging.errors import ConfigError
from mta_logging.formatters import header_fields, split_line
from mta_logging.logger import AccountingLogger
from mta_logging.relay.config import SuppressionSettings, load_settings
from mta_logging.relay.server import Relay
from mta_logging.relay.suppression import refusal_text
from mta_logging.suppression import DAY, DEFAULT_EXPIRY, Entry, SuppressionList, time_text

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = b"Subject: suppression\r\n\r\nHello.\r\n"
BOUNCE_FIELDS = ["type", "rcpt", "orig", "jobId", "dsnStatus", "dsnMsg", "bounceCat", "eventId"]


def settings_for(tmp_path: Path, sink_port: int, **overrides: Any) -> Any:
    """The relay's settings: the list on; notifications to senders off, so the sink holds only
    the mail sent (tests/test_relay_dsn.py covers them)."""
    return load_settings({
        "listen": "127.0.0.1:0", "hostname": "relay.example.test", "vmta": "vmta-1",
        "spool_dir": str(tmp_path / "spool"), "routes": {"*": f"127.0.0.1:{sink_port}"},
        "retry": {"intervals": [60]}, "timeouts": {"connect": 5, "command": 5, "data": 5},
        "shutdown_timeout": 5, "suppression": {}, "dsn": {"enabled": False}, **overrides})


def configure_accounting(tmp_path: Path, logger_name: str) -> None:
    mta_logging.configure({"path": str(tmp_path / "accounting"), "logger": logger_name,
                           "fields": {"bounce": BOUNCE_FIELDS}})


@contextlib.asynccontextmanager
async def running_relay(tmp_path: Path, sink_port: int, **overrides: Any
                        ) -> AsyncIterator[Relay]:
    name = f"test.relay.suppression.{tmp_path.name}"
    configure_accounting(tmp_path, name)
    logger = logging.getLogger(name)
    logger.propagate = False
    relay = Relay(settings_for(tmp_path, sink_port, **overrides),
                  accounting=AccountingLogger(logger), resolver=FakeResolver({}, {}))
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def bounce_lines(tmp_path: Path) -> list[bytes]:
    [path] = (tmp_path / "accounting" / "bounce").glob("*.tsv")
    return path.read_bytes().splitlines()


def bounce_records(tmp_path: Path) -> list[dict[str, str]]:
    lines = [line.decode() for line in bounce_lines(tmp_path)]
    fields = header_fields(lines[0], "\t")
    return [dict(zip(fields, split_line(line, "\t"), strict=True)) for line in lines[1:]]


async def until(condition: Callable[[], object], timeout: float = 20) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def send(relay: Relay, rcpts: list[str]) -> dict[str, tuple[int, str]]:
    """One message from sender@client.test; each recipient's RCPT reply (the message is sent
    when any was accepted)."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.address[1], timeout=10,
                           local_hostname="client.test", start_tls=False)
    await smtp.connect()
    await smtp.ehlo()
    await smtp.mail("sender@client.test")
    replies = {}
    for rcpt in rcpts:
        try:
            reply = await smtp.rcpt(rcpt)
            replies[rcpt] = (reply.code, reply.message)
        except aiosmtplib.SMTPRecipientRefused as refused:
            replies[rcpt] = (refused.code, refused.message)
    if any(code == 250 for code, _ in replies.values()):
        await smtp.data(MESSAGE)
    await smtp.quit()
    return replies


def suppression_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mta_logging.cli", "suppression", *args], capture_output=True,
        text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


async def test_a_hard_bounce_is_listed_and_the_next_message_to_it_is_refused_at_rcpt(tmp_path):
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port) as relay:
            await send(relay, ["reject-gone@x.test", "first@x.test"])
            await until(lambda: len(sink.messages) == 1 and relay.queue.messages == {})
            assert relay.suppression is not None
            relay.suppression.handler.flush()
            with SuppressionList(tmp_path / "spool" / "suppression.db") as suppression:
                [entry] = suppression.entries()
            replies = await send(relay, ["Reject-Gone@X.test", "second@x.test"])
            await until(lambda: len(sink.messages) == 2)
    first_bounce = bounce_records(tmp_path)[0]
    assert (entry.address, entry.reason, entry.source, entry.event_id) == (
        "reject-gone@x.test", "bad-mailbox", "bounce", first_bounce["eventId"])
    assert entry.expires == entry.added + 90 * DAY
    since = time_text(entry.added)
    reply = (f"5.7.1 <Reject-Gone@X.test>: Recipient address rejected: on the suppression list "
             f"since {since}, reason bad-mailbox")
    assert replies == {"Reject-Gone@X.test": (550, reply), "second@x.test": (250, "2.1.5 Ok")}
    assert sink.messages[1].rcpts == ("second@x.test",)
    lines = bounce_lines(tmp_path)
    assert len(lines) == 3
    assert lines[2].rsplit(b"\t", 1)[0] == (
        f"b\tReject-Gone@X.test\tsender@client.test\t\t5.7.1\t550 {reply}\tsuppressed"
    ).encode()
    with SuppressionList(tmp_path / "spool" / "suppression.db") as suppression:
        assert suppression.entries() == [entry]  # the refusal's bounce adds nothing


async def test_an_expired_entry_lets_mail_through_and_the_expiry_is_configurable(tmp_path):
    now = int(time.time())
    path = tmp_path / "spool" / "suppression.db"
    path.parent.mkdir()
    with SuppressionList(path) as suppression:
        suppression.add([Entry("old@x.test", "bad-mailbox", now - 2 * DAY, now - 60, "bounce"),
                         Entry("recent@x.test", "bad-domain", now - 60, now + DAY, "bounce")])
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port,
                                 suppression={"expiry": {"bad-mailbox": 120}}) as relay:
            replies = await send(relay, ["old@x.test", "recent@x.test", "reject-new@x.test"])
            await until(lambda: relay.queue.messages == {})
            assert relay.suppression is not None
            relay.suppression.handler.flush()
        assert [m.rcpts for m in sink.messages] == [("old@x.test",)]
    assert replies["old@x.test"][0] == 250
    assert replies["recent@x.test"] == (550, refusal_text(
        "recent@x.test", Entry("recent@x.test", "bad-domain", now - 60, now + DAY, "bounce")
    ).removeprefix("550 "))
    with SuppressionList(path) as suppression:
        new = suppression.find("reject-new@x.test")
    assert new is not None and new.expires == new.added + 120


async def test_a_refusal_whose_record_cannot_be_written_is_a_451_until_it_can(
        tmp_path, monkeypatch):
    """No refusal goes unrecorded: the first RCPT to a listed address meets a full disk for
    its record and gets a 451 (the client tries again); the next is refused and recorded."""
    now = int(time.time())
    path = tmp_path / "spool" / "suppression.db"
    path.parent.mkdir()
    entry = Entry("gone@x.test", "bad-mailbox", now - 60, now + DAY, "bounce")
    with SuppressionList(path) as suppression:
        suppression.add([entry])
    failed = full_disk_once(monkeypatch, b"\tsuppressed\t")
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port) as relay:
            first = await send(relay, ["gone@x.test"])
            second = await send(relay, ["gone@x.test"])
    assert first == {"gone@x.test": (451, "4.3.0 Error: accounting write error, try again "
                                          "later")}
    assert second == {"gone@x.test": (550, refusal_text("gone@x.test", entry).removeprefix(
        "550 "))}
    assert len(failed) == 1
    assert [(r["rcpt"], r["bounceCat"]) for r in bounce_records(tmp_path)] == [
        ("gone@x.test", "suppressed")]


async def test_an_address_added_by_the_command_while_the_relay_runs_is_refused_at_once(tmp_path):
    db = str(tmp_path / "spool" / "suppression.db")
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port) as relay:
            assert (await send(relay, ["late@x.test"]))["late@x.test"][0] == 250
            added = await asyncio.to_thread(suppression_command, "add", "--db", db,
                                            "Late@X.test", "--reason", "complaint")
            replies = await send(relay, ["late@x.test"])
            listed = await asyncio.to_thread(suppression_command, "list", "--db", db)
            removed = await asyncio.to_thread(suppression_command, "remove", "--db", db,
                                              "late@x.test")
            again = await send(relay, ["late@x.test"])
            await until(lambda: len(sink.messages) == 2)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added late@x.test (reason complaint, expires never)")
    assert replies["late@x.test"][0] == 550
    assert "reason complaint" in replies["late@x.test"][1]
    assert listed.stdout.splitlines()[1].split()[:2] == ["late@x.test", "complaint"]
    assert removed.returncode == 0
    assert again["late@x.test"][0] == 250


async def test_a_writer_holding_the_lock_does_not_hold_up_the_relay(tmp_path):
    path = tmp_path / "spool" / "suppression.db"
    path.parent.mkdir()
    with SuppressionList(path) as suppression:
        suppression.add([Entry("listed@x.test", "complaint", int(time.time()), None,
                               "complaint")])

    def listed() -> list[str]:
        with SuppressionList(path) as suppression:
            return [e.address for e in suppression.entries()]

    with Sink() as sink:
        async with running_relay(tmp_path, sink.port) as relay:
            writer = sqlite3.connect(path, isolation_level=None)
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("DELETE FROM suppression")  # not committed: readers still see it
            try:
                # a lookup that waited for the lock would fail (after 0.05 s) and let it through
                replies = await send(relay, ["listed@x.test", "reject-gone@x.test"])
                await until(lambda: relay.queue.messages == {})
            finally:
                writer.execute("ROLLBACK")
                writer.close()
            await until(lambda: len(listed()) == 2)  # the bounce's entry, once the lock is free
    assert replies["listed@x.test"][0] == 550
    assert replies["reject-gone@x.test"][0] == 250
    assert listed() == ["listed@x.test", "reject-gone@x.test"]


@pytest.mark.parametrize("damage", ["not sqlite", "a directory"])
async def test_a_list_that_cannot_be_read_is_logged_and_mail_is_still_delivered(
        tmp_path, caplog, capsys, damage):
    path = tmp_path / "spool" / "suppression.db"
    path.parent.mkdir()
    if damage == "a directory":
        path.mkdir()
    else:
        path.write_bytes(b"this is no database\n" * 200)
    caplog.set_level(logging.ERROR, logger="mta_logging.relay.suppression")
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port) as relay:
            replies = await send(relay, ["anyone@x.test", "reject-gone@x.test"])
            await until(lambda: relay.queue.messages == {})
            again = await send(relay, ["reject-gone@x.test", "someone@x.test"])
            await until(lambda: len(sink.messages) == 2)
    assert [code for code, _ in replies.values()] == [250, 250]
    assert [code for code, _ in again.values()] == [250, 250]
    assert [m.rcpts for m in sink.messages] == [("anyone@x.test",), ("someone@x.test",)]
    errors = [r.getMessage() for r in caplog.records
              if r.name == "mta_logging.relay.suppression"]
    assert len(errors) == 1  # once per episode, not once per recipient
    why = ("is a directory" if damage == "a directory" else "not an SQLite database")
    assert errors[0].startswith(f"suppression list lookup failed: suppression list {path}: ")
    assert why in errors[0]
    assert "mail is accepted for every recipient until it can be read" in errors[0]
    assert f"the suppression list {path} failed while adding entries" in capsys.readouterr().err
    # accepted again (fail open): the destination's 550 bounces it a second time
    assert [r["bounceCat"] for r in bounce_records(tmp_path)] == ["bad-mailbox", "bad-mailbox"]


async def test_a_reload_keeps_the_list_working_with_the_new_expiry(tmp_path):
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port) as relay:
            configure_accounting(tmp_path, relay.accounting.logger.name)  # type: ignore[union-attr]
            relay.reconfigure(settings_for(tmp_path, sink.port,
                                           suppression={"expiry": {"bad-mailbox": 600}}))
            await send(relay, ["reject-gone@x.test"])
            await until(lambda: relay.queue.messages == {})
            assert relay.suppression is not None
            relay.suppression.handler.flush()
            replies = await send(relay, ["reject-gone@x.test"])
            moved = settings_for(tmp_path, sink.port,
                                 suppression={"path": str(tmp_path / "elsewhere.db")})
            with pytest.raises(ConfigError) as caught:
                relay.check_reload(moved)
    with SuppressionList(tmp_path / "spool" / "suppression.db") as suppression:
        [entry] = suppression.entries()
    assert entry.expires == entry.added + 600
    assert entry.event_id == bounce_records(tmp_path)[0]["eventId"]
    assert replies["reject-gone@x.test"][0] == 550
    assert str(caught.value) == (
        f"suppression: {str(tmp_path / 'elsewhere.db')!r} is not valid; cannot change while "
        f"the relay runs (it is {str(tmp_path / 'spool' / 'suppression.db')!r}); restart the "
        f"relay")


async def test_without_a_suppression_section_there_is_no_list(tmp_path):
    with Sink() as sink:
        async with running_relay(tmp_path, sink.port, suppression=None) as relay:
            assert relay.suppression is None
            assert (await send(relay, ["anyone@x.test"]))["anyone@x.test"][0] == 250
            await until(lambda: sink.messages)
    assert not (tmp_path / "spool" / "suppression.db").exists()


def test_the_suppression_section_is_validated_once():
    assert load_settings({}).suppression == SuppressionSettings()
    assert load_settings({"suppression": False}).suppression.enabled is False
    assert load_settings({"suppression": True}).suppression == SuppressionSettings(enabled=True)
    on = load_settings({"suppression": {"path": "/var/lib/mta/list.db",
                                        "expiry": {"complaint": 86400, "bad-domain": "never"}}})
    assert on.suppression == SuppressionSettings(
        enabled=True, path=Path("/var/lib/mta/list.db"),
        expiry={**DEFAULT_EXPIRY, "complaint": 86400.0, "bad-domain": None})
    assert on.suppression.file(Path("spool")) == Path("/var/lib/mta/list.db")
    assert load_settings({"suppression": {"enabled": False}}).suppression.enabled is False
    assert dataclasses.replace(on.suppression, path=None).file(Path("spool")) == Path(
        "spool/suppression.db")
    for bad, message in [
        ({"enabeld": True}, "suppression.enabeld: True is not valid; unknown setting; allowed: "
                            "enabled, path, expiry"),
        ({"enabled": "yes"}, "suppression.enabled: 'yes' is not valid; expected true or false"),
        ({"path": ""}, "suppression.path: '' is not valid; expected a non-empty text"),
        ("on", "suppression: 'on' is not valid; expected a mapping"),
        ({"expiry": {"bad-mailbox": -1}}, "suppression.expiry.bad-mailbox: -1 is not valid; "
                                          "expected a number of seconds greater than 0"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_settings({"suppression": bad})
        assert str(caught.value) == f"relay settings: {message}"


def test_check_config_prints_the_section_as_valid_input_again():
    settings = load_settings({"suppression": {"path": "/var/lib/mta/list.db",
                                              "expiry": {"complaint": 86400}}})
    printed = relay_mapping(settings, None)["suppression"]
    assert printed["expiry"]["bad-domain"] == 30 * DAY
    assert load_settings({"suppression": printed}).suppression == settings.suppression


def test_mta_logging_relay_lists_a_bounce_refuses_the_next_and_keeps_doing_so_after_sighup(
        tmp_path):
    config = base_config(0, suppression={"expiry": {"bad-mailbox": 3600}})
    with Sink() as sink:
        config["routes"] = {"*": f"127.0.0.1:{sink.port}"}
        config["accounting"]["fields"]["bounce"] = ["type", "rcpt", "bounceCat", "eventId"]
        with relay(tmp_path, config) as running:
            db = tmp_path / "spool" / "suppression.db"

            def listed() -> list[Entry]:
                with SuppressionList(db) as suppression:
                    return suppression.entries()

            with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
                assert client.sendmail("sender@example.test", ["reject-a@x.test", "ok@x.test"],
                                       MESSAGE) == {}  # the destination refuses it later
            wait_until(lambda: len(listed()) == 1, what="the bounce listed")
            (tmp_path / "relay.yaml").write_text(yaml.safe_dump(
                {**config, "suppression": {"expiry": {"bad-mailbox": 7200}}}))
            os.kill(running.process.pid, signal.SIGHUP)
            wait_until(lambda: "reloaded: the new settings are in use" in running.log.read_text(),
                       what="the reload")
            with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
                client.ehlo("client.test")
                client.mail("sender@example.test")
                refused = client.rcpt("reject-a@x.test")
                assert client.rcpt("reject-b@x.test")[0] == 250
                assert client.data(MESSAGE)[0] == 250
            wait_until(lambda: len(listed()) == 2, what="the second bounce listed")
            assert running.stop() == 0
    first, second = listed()
    assert first.expires == first.added + 3600 and second.expires == second.added + 7200
    assert refused == (550, refusal_text("reject-a@x.test", first).removeprefix("550 ").encode())
    bounces = [r for r in records(tmp_path) if r["type"] == "b"]
    assert [(r["rcpt"], r["bounceCat"]) for r in bounces] == [
        ("reject-a@x.test", "bad-mailbox"), ("reject-a@x.test", "suppressed"),
        ("reject-b@x.test", "bad-mailbox")]
    assert [r["eventId"] for r in (bounces[0], bounces[2])] == [first.event_id, second.event_id]
