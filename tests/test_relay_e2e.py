"""End to end: `mta-logging relay` as a subprocess, a sink, smtplib, the accounting files.

Everything runs on 127.0.0.1; the relay listens on a port it picks (``listen: ...:0``) and
announces on stderr. Every wait has a deadline, and every relay started here is killed by its
PID at the end of its test.
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
import re
import resource
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from relay_sink import Sink, make_certificate, server_tls_context

from mta_logging.classify import bounce_category
from mta_logging.formatters import header_fields, split_line
from mta_logging.relay.passwords import hash_password

ROOT = Path(__file__).resolve().parent.parent
READY = "mta-logging relay: listening on"
MESSAGE = (b"From: sender@example.test\r\nTo: list@example.test\r\nSubject: e2e\r\n"
           b"X-Campaign: spring-sale\r\n\r\nHello.\r\n.A line with a leading dot.\r\n")


class RelayProcess:
    """The relay in a subprocess, working in ``workdir`` with ``config`` as its relay.yaml;
    ``site``: a directory put first on its path (a ``sitecustomize.py`` there injects a
    fault)."""

    def __init__(self, workdir: Path, config: dict[str, Any], *,
                 max_open_files: int | None = None, args: Sequence[str] = (),
                 site: Path | None = None) -> None:
        self.workdir = workdir
        self.log = workdir / "relay.log"
        (workdir / "relay.yaml").write_text(yaml.safe_dump(config))
        path = str(ROOT) if site is None else os.pathsep.join([str(site), str(ROOT)])
        env = {**os.environ, "PYTHONPATH": path}
        self._log_start = self.log.stat().st_size if self.log.exists() else 0  # a restart
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mta_logging.cli", "relay", "--config", "relay.yaml", *args],
                cwd=workdir, stdout=subprocess.DEVNULL, stderr=log, env=env,
                preexec_fn=None if max_open_files is None else functools.partial(
                    resource.setrlimit, resource.RLIMIT_NOFILE,
                    (max_open_files, max_open_files)))
        self.port = self._wait_ready(timeout=30)

    def _wait_ready(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log.read_bytes()[self._log_start:].decode().splitlines():
                if line.startswith(READY):
                    return int(line.split()[4].rsplit(":", 1)[1])
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.process.kill()
        raise AssertionError(f"the relay did not start:\n{self.log.read_text()}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)
        return self.process.wait(timeout)


@contextmanager
def relay(workdir: Path, config: dict[str, Any], *, max_open_files: int | None = None,
          args: Sequence[str] = (), site: Path | None = None) -> Iterator[RelayProcess]:
    process = RelayProcess(workdir, config, max_open_files=max_open_files, args=args, site=site)
    try:
        yield process
    finally:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait(10)


def base_config(sink_port: int, **overrides: Any) -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:0", "hostname": "relay.example.test",
        "relay_networks": ["127.0.0.0/8"], "spool_dir": "./spool", "vmta": "vmta-1",
        "routes": {"*": f"127.0.0.1:{sink_port}"},
        "retry": {"intervals": [60], "max_queue_lifetime": 432000},
        "timeouts": {"connect": 5, "command": 5, "data": 5},
        "accounting": {"path": "./accounting", "fields": {"delivered": [
            "type", "timeLogged", "timeQueued", "rcpt", "srcMta", "srcIp", "destIp", "vmta",
            "jobId", "dsnStatus", "dsnMsg", "custom_X-Campaign"]}},
        **overrides,
    }


def send(port: int, rcpts: list[str], message: bytes = MESSAGE) -> str:
    """Send one message; the relay's job id (from "250 ... queued as <id>")."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        client.mail("sender@example.test")
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            assert code == 250, (rcpt, code, text)
        code, text = client.data(message)
    assert code == 250, text
    match = re.search(rb"queued as ([0-9A-F]+)", text)
    assert match, text
    return match.group(1).decode()


def records(workdir: Path) -> list[dict[str, str]]:
    """Every accounting record written under workdir/accounting, as field → value."""
    found = []
    for path in sorted((workdir / "accounting").rglob("*.tsv")):
        lines = path.read_text(encoding="utf-8").splitlines()
        names = header_fields(lines[0])
        found += [dict(zip(names, split_line(line), strict=True)) for line in lines[1:]]
    return found


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def journaled(workdir: Path, job: str, entry: str) -> bool:
    """Whether the spool's journal of ``job`` holds the line ``entry``."""
    path = workdir / "spool" / "state" / job
    return path.exists() and entry in path.read_text().splitlines()


def without_times(record: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in record.items() if k not in ("timeLogged", "timeQueued")}


def test_mixed_outcomes_each_recipient_recorded_exactly(tmp_path):
    # notifications to the sender off: the records of the mail sent (tests/test_relay_dsn.py)
    with Sink() as sink, relay(tmp_path, base_config(sink.port, dsn={"enabled": False})
                               ) as running:
        job1 = send(running.port, ["ok1@a.test", "tempfail@a.test", "reject@a.test",
                                   "ok2@b.test"])
        job2 = send(running.port, ["ok3@a.test", "reject2@b.test"])
        wait_until(lambda: len(records(tmp_path)) == 6, what="six accounting records")
        assert running.stop() == 0  # SIGTERM drains and exits cleanly
        delivered_to = sorted(sink.delivered())
        received = list(sink.messages)

    assert delivered_to == ["ok1@a.test", "ok2@b.test", "ok3@a.test"]
    for message in received:
        assert message.helo == "relay.example.test"
        assert message.content.startswith(b"Received: from client.test ([127.0.0.1])\r\n"
                                          b"\tby relay.example.test (mta-logging) with ESMTP id ")
        assert message.content.endswith(MESSAGE)

    found = records(tmp_path)
    for record in found:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", record["timeQueued"])
        assert record["timeLogged"] >= record["timeQueued"]
    common = {"srcMta": "relay.example.test", "srcIp": "127.0.0.1", "vmta": "vmta-1"}
    delivered = {"type": "d", "destIp": "127.0.0.1", "dsnStatus": "2.0.0",
                 "custom_X-Campaign": "spring-sale", **common}

    def bounce(rcpt: str, job: str) -> dict[str, str]:
        text = f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
        return {"type": "b", "rcpt": rcpt, "jobId": job, "dsnStatus": "5.1.1", "dsnMsg": text,
                "bounceCat": bounce_category(550, "5.1.1", text), **common}

    expected = [
        {**delivered, "rcpt": "ok1@a.test", "jobId": job1,
         "dsnMsg": "250 2.0.0 Ok: delivered to 1 recipient(s)"},
        {**delivered, "rcpt": "ok2@b.test", "jobId": job1,
         "dsnMsg": "250 2.0.0 Ok: delivered to 1 recipient(s)"},
        {**delivered, "rcpt": "ok3@a.test", "jobId": job2,
         "dsnMsg": "250 2.0.0 Ok: delivered to 1 recipient(s)"},
        {"type": "df", "rcpt": "tempfail@a.test", "jobId": job1, "dsnStatus": "4.2.0",
         "dsnMsg": "451 4.2.0 <tempfail@a.test>: Mailbox busy, try again later", "delay": "60",
         **common},
        bounce("reject@a.test", job1),
        bounce("reject2@b.test", job2),
    ]
    def by_kind_and_rcpt(record: dict[str, str]) -> tuple[str, str]:
        return record["type"], record["rcpt"]

    assert (sorted(map(without_times, found), key=by_kind_and_rcpt)
            == sorted(expected, key=by_kind_and_rcpt))
    # the deferred recipient stays queued across the clean shutdown
    assert [p.name for p in (tmp_path / "spool" / "queue").iterdir()] == [job1]


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_the_relay_runs_the_same_on_either_event_loop(tmp_path, event_loop):
    # no report to the sender of the bounce, so the spool is empty at the end
    with Sink() as sink, relay(tmp_path, base_config(
            sink.port, event_loop=event_loop, dsn={"enabled": False})) as running:
        job = send(running.port, ["ok@a.test", "reject@a.test"])
        wait_until(lambda: len(records(tmp_path)) == 2, what="two accounting records")
        assert running.stop() == 0
        delivered_to = sink.delivered()

    announced = next(line for line in running.log.read_text().splitlines()
                     if line.startswith(READY))
    assert announced.endswith(f"accounting on, event loop {event_loop})")
    assert delivered_to == ["ok@a.test"]
    assert sorted((r["type"], r["rcpt"], r["jobId"]) for r in records(tmp_path)) == [
        ("b", "reject@a.test", job), ("d", "ok@a.test", job)]
    assert list((tmp_path / "spool" / "queue").iterdir()) == []


def test_after_a_crash_queued_mail_is_delivered_once(tmp_path):
    with Sink() as sink:
        config = base_config(sink.port, retry={"intervals": [0.5], "max_queue_lifetime": 3600})
        sink.defer = {f"later{n}@x.test" for n in range(3)}
        with relay(tmp_path, config) as first:
            jobs = [send(first.port, [f"now{n}@x.test", f"later{n}@x.test"]) for n in range(3)]
            wait_until(lambda: len(sink.delivered()) == 3, what="the first deliveries")
            wait_until(lambda: sum(r["type"] == "df" for r in records(tmp_path)) >= 3,
                       what="deferred records")
            # the deliveries journaled (after their records): a crash before that would have
            # them delivered again, as the relay promises (at least once, never lost)
            wait_until(lambda: all(journaled(tmp_path, job, "d 0") for job in jobs),
                       what="the deliveries journaled")
            first.stop(signal.SIGKILL)  # a crash: no draining, nothing flushed on purpose
        assert sorted(p.name for p in (tmp_path / "spool" / "queue").iterdir()) == sorted(jobs)

        sink.defer = set()
        with relay(tmp_path, config) as second:
            wait_until(lambda: len(sink.delivered()) == 6, what="delivery after the restart")
            assert second.stop() == 0
        delivered_to = sink.delivered()

    assert sorted(delivered_to) == sorted(
        [f"now{n}@x.test" for n in range(3)] + [f"later{n}@x.test" for n in range(3)])
    delivered_records = [r["rcpt"] for r in records(tmp_path) if r["type"] == "d"]
    assert sorted(delivered_records) == sorted(delivered_to)  # once each, nothing twice
    assert list((tmp_path / "spool" / "queue").iterdir()) == []


def test_clients_outside_the_relay_networks_are_refused(tmp_path):
    config = base_config(9, relay_networks=["10.0.0.0/8"])
    with relay(tmp_path, config) as running, \
            smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        client.ehlo("outsider.test")
        client.mail("spammer@example.test")
        code, text = client.rcpt("victim@example.org")
        assert (code, text) == (550, b"5.7.1 <victim@example.org>: Relay access denied")
        assert "auth" not in client.esmtp_features  # no TLS configured: no AUTH either
        assert client.noop()[0] == 250
    assert not (tmp_path / "spool" / "queue").exists() or \
        list((tmp_path / "spool" / "queue").iterdir()) == []


def test_authenticated_clients_relay_from_anywhere_over_tls_only(tmp_path):
    files = make_certificate(tmp_path)
    if files is None:
        pytest.skip("openssl is not installed")
    cert, key = files
    with Sink() as sink:
        config = base_config(sink.port, relay_networks=["10.0.0.0/8"],
                             tls={"cert": str(cert), "key": str(key)},
                             auth_users={"alice": hash_password("s3cret", iterations=1000)})
        with relay(tmp_path, config) as running, \
                smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
            client.ehlo("roaming.test")
            assert "auth" not in client.esmtp_features  # not before STARTTLS
            client.starttls(context=ssl._create_unverified_context())
            client.ehlo("roaming.test")
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "wrong")
            client.login("alice", "s3cret")
            client.sendmail("alice@example.test", ["friend@example.org"], MESSAGE)
            wait_until(lambda: sink.delivered() == ["friend@example.org"], what="delivery")
        assert b" with ESMTPSA id " in sink.messages[0].content


def test_the_spool_removed_under_the_relay_gets_451_and_a_clean_stop(tmp_path):
    """The whole spool directory removed while the relay runs (an operator's mistake, a
    cleanup job): a client hears 451, the fault is logged once, and SIGTERM still drains and
    exits cleanly, saying what it could not count."""
    with Sink() as sink, relay(tmp_path, base_config(sink.port)) as running:
        send(running.port, ["first@x.test"])
        wait_until(lambda: sink.delivered() == ["first@x.test"], what="the first delivery")
        wait_until(lambda: not list((tmp_path / "spool" / "queue").iterdir()),
                   what="the first message removed")
        shutil.rmtree(tmp_path / "spool")
        replies = []
        for number in range(2):
            with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
                client.ehlo("client.test")
                assert client.mail("sender@example.test")[0] == 250
                assert client.rcpt(f"later{number}@x.test")[0] == 250
                replies.append(client.data(MESSAGE))
        assert running.stop() == 0
    assert replies == [(451, b"4.3.0 Error: queue file write error, try again later")] * 2
    log = running.log.read_text()
    assert log.count("queue file write failed") == 1
    assert "stopped; the spool's queue directory cannot be read" in log
    assert "Traceback" not in log


def test_bad_input_gets_clear_replies_and_the_relay_keeps_going(tmp_path):
    config = base_config(0, max_message_size=2000)
    with Sink() as sink, relay(tmp_path, {**config, "routes": {"*": f"127.0.0.1:{sink.port}"}}) \
            as running, smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        assert client.docmd("HELO")[0] == 501
        assert client.docmd("FROBNICATE")[0] == 500
        client.ehlo("client.test")
        assert client.docmd("MAIL TO:<x@y.test>")[0] == 501
        assert client.docmd("RCPT TO:<x@y.test>")[0] == 503
        client.command_encoding = "utf-8"
        assert client.docmd("MAIL FROM:<josé@example.test>") == (
            553, b"5.6.7 Error: non-ASCII address requires the SMTPUTF8 parameter")
        client.send(b"MAIL FROM:<\xff\xfe@example.test> SMTPUTF8\r\n")  # not UTF-8 at all
        assert client.getreply() == (553, b"5.6.7 Error: address is not valid UTF-8")
        assert client.docmd("MAIL FROM:<a@example.test> SIZE=999999")[0] == 552
        client.mail("a@example.test")
        assert client.rcpt("no-domain")[0] == 501
        assert client.rcpt("ok@x.test")[0] == 250
        code, _ = client.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40)
        assert code == 552
        client.rset()
        client.mail("a@example.test", ["SMTPUTF8"])
        client.rcpt("josé@x.test")
        assert client.data(b"Subject: utf8\r\n\r\nol\xc3\xa1\r\n")[0] == 250
        wait_until(lambda: sink.delivered() == ["josé@x.test"], what="the SMTPUTF8 delivery")
        assert client.noop()[0] == 250


class Clients:
    """Client threads sending messages of 1-3 recipients (each address used once) until told to
    stop or until the relay goes away; ``acknowledged`` = recipients of messages that got 250."""

    def __init__(self, port: int, first: int, threads: int = 6) -> None:
        self.port = port
        self.acknowledged: list[str] = []
        self._numbers = itertools.count(first)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                client.ehlo("client.test")
                while not self._stop.is_set():
                    with self._lock:
                        number = next(self._numbers)
                    rcpts = [f"m{number}r{k}@x.test" for k in range(number % 3 + 1)]
                    refused = client.sendmail("sender@example.test", rcpts, MESSAGE)
                    assert refused == {}
                    with self._lock:
                        self.acknowledged += rcpts
        except (OSError, smtplib.SMTPException):
            return  # the relay was killed under this client

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def test_repeated_sigkill_never_leaves_a_delivery_without_a_record(tmp_path):
    """Three SIGKILLs while clients send and the relay delivers, each restart on the same spool:
    every recipient acknowledged with 250 reaches the sink, and every recipient the sink got has
    at least one delivered record and no more than the sink's deliveries of it."""
    with Sink() as sink:
        config = base_config(sink.port, retry={"intervals": [0.2], "max_queue_lifetime": 3600})
        acknowledged: list[str] = []

        def kill_while_busy(first: int) -> None:
            with relay(tmp_path, config) as running:
                clients = Clients(running.port, first)
                out = len(sink.delivered()) + 300
                wait_until(lambda: clients.count() >= 400 and len(sink.delivered()) >= out,
                           timeout=30, what="mail flowing in and out")
                running.stop(signal.SIGKILL)
                clients.stop()
                acknowledged.extend(clients.acknowledged)

        for round_number in range(3):
            kill_while_busy(first=round_number * 100_000)
        with relay(tmp_path, config) as last:
            wait_until(lambda: not list((tmp_path / "spool" / "queue").iterdir()), timeout=60,
                       what="the spool to empty after the last restart")
            assert last.stop() == 0
        at_sink = collections.Counter(sink.delivered())

    missing = [rcpt for rcpt in acknowledged if rcpt not in at_sink]
    assert missing == []
    found = records(tmp_path)  # every line splits into the header's fields: none torn
    recorded = collections.Counter(r["rcpt"] for r in found if r["type"] == "d")
    assert [r for r in at_sink if recorded[r] == 0] == []  # delivered, never recorded: none
    assert [r for r in recorded if recorded[r] > at_sink[r]] == []  # every record true
    assert {r["type"] for r in found} == {"d"}


def test_sigkill_at_any_moment_loses_nothing_and_every_record_is_true(tmp_path):
    """SIGKILL a moment after the start (while the spool is loaded and the first messages go
    in and out, removals batched), at four moments from 0.05 s to 1.2 s: every recipient
    acknowledged reaches the sink, every one the sink got has a delivered record, no more
    records than deliveries, no line torn, and the spool empties."""
    with Sink() as sink:
        config = base_config(sink.port, retry={"intervals": [0.2], "max_queue_lifetime": 3600})
        acknowledged: list[str] = []
        for round_number, moment in enumerate((0.05, 0.3, 0.7, 1.2)):
            with relay(tmp_path, config) as running:
                clients = Clients(running.port, round_number * 100_000, threads=4)
                time.sleep(moment)
                running.stop(signal.SIGKILL)
                clients.stop()
                acknowledged.extend(clients.acknowledged)
        with relay(tmp_path, config) as last:
            wait_until(lambda: not list((tmp_path / "spool" / "queue").iterdir()), timeout=60,
                       what="the spool to empty after the last restart")
            assert last.stop() == 0
        at_sink = collections.Counter(sink.delivered())
    assert acknowledged and [rcpt for rcpt in acknowledged if rcpt not in at_sink] == []
    found = records(tmp_path)  # every line splits into the header's fields: none torn
    recorded = collections.Counter(r["rcpt"] for r in found if r["type"] == "d")
    assert [r for r in at_sink if not 1 <= recorded[r] <= at_sink[r]] == []
    assert set(recorded) == set(at_sink)
    assert not list((tmp_path / "spool" / "state").iterdir())


def test_out_of_file_descriptors_the_relay_pauses_accepting_and_logs_once(tmp_path):
    """With 64 descriptors and no connection limit that protects them, 100 idle clients make
    accept fail (EMFILE): one line in the log, no tracebacks, and mail flows once they go."""
    config = base_config(9, max_connections=1000, max_connections_per_ip=1000)
    idle: list[socket.socket] = []
    with relay(tmp_path, config, max_open_files=64) as running:
        try:
            for _ in range(100):
                idle.append(socket.create_connection(("127.0.0.1", running.port), timeout=10))
            time.sleep(1.5)  # accept is retried once a second: at least once more here
        finally:
            for sock in idle:
                sock.close()
        wait_until(lambda: _greets(running.port), timeout=10, what="a greeting again")
        assert running.process.poll() is None
        log = running.log.read_text()
    assert log.count("cannot accept connections: Too many open files") == 1
    assert "Traceback" not in log


def _greets(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return sock.recv(100).startswith(b"220 ")


DETAIL_FIELDS = ("type,orig,rcpt,orcpt,envId,jobId,dsnStatus,dsnAction,dsnDiag,dsnMta,dlvSize,"
                 "dlvTlsProtocol,dlvTlsCipher,bounceCat")


def lines_of(workdir: Path, kind: str) -> list[str]:
    """The lines of ``kind``'s active files (header first)."""
    (path,) = (workdir / "accounting" / kind).glob("*.tsv")
    return path.read_text(encoding="utf-8").splitlines()


def test_records_carry_sender_remote_mta_size_and_tls_end_to_end(tmp_path):
    files = make_certificate(tmp_path)
    if files is None:
        pytest.skip("openssl is not installed")
    cert, key = files
    with Sink(tls_context=server_tls_context(cert, key)) as sink:
        config = base_config(
            sink.port, tls={"cert": str(cert), "key": str(key)},
            auth_users={"alice": hash_password("s3cret", iterations=1000)},
            retry={"intervals": [0.3], "max_queue_lifetime": 1},
            accounting={"path": "./accounting", "records": "d,df,b,r", "fields": {
                "delivered": DETAIL_FIELDS, "bounce": DETAIL_FIELDS,
                "deferred": "type,rcpt,dsnAction,dsnMta"}})
        with relay(tmp_path, config) as running, \
                smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
            client.ehlo("roaming.test")
            client.starttls(context=ssl._create_unverified_context())
            inbound = client.sock.cipher()
            client.ehlo("roaming.test")
            client.login("alice", "s3cret")
            client.mail("")
            for rcpt in ("ok@a.test", "tempfail@a.test"):
                assert client.rcpt(rcpt)[0] == 250
            code, text = client.data(MESSAGE)
            assert code == 250, text
            job = re.search(rb"queued as ([0-9A-F]+)", text).group(1).decode()  # type: ignore[union-attr]
            wait_until(lambda: (tmp_path / "accounting" / "bounce").is_dir()
                       and len(lines_of(tmp_path, "bounce")) == 2, what="the expiry bounce")
        (message,) = sink.messages
        outbound = message.cipher
        assert outbound is not None

    header, *received = lines_of(tmp_path, "received")
    assert header == ("type\ttimeLogged\torig\trcpt\torcpt\tenvId\tjobId\trcvSourceIp\trcvHelo\t"
                      "rcvAuthUser\tdlvSize\trcvTlsProtocol\trcvTlsCipher")
    # each line but its logging time, byte for byte (the null sender: an empty orig)
    assert [line.split("\t", 2)[::2] for line in received] == [
        ["r", "\t".join(["", rcpt, rcpt, "", job, "127.0.0.1", "roaming.test", "alice",
                         str(len(MESSAGE)), inbound[1], inbound[0]])]
        for rcpt in ("ok@a.test", "tempfail@a.test")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line.split("\t")[1])
               for line in received)
    delivered = "250 2.0.0 Ok: delivered to 1 recipient(s)"
    assert lines_of(tmp_path, "delivered") == [
        DETAIL_FIELDS.replace(",", "\t"),
        f"d\t\tok@a.test\tok@a.test\t\t{job}\t2.0.0\tdelivered\tsmtp; {delivered}\tsink.test\t"
        f"{len(message.content)}\t{outbound[1]}\t{outbound[0]}\t"]
    deferred = lines_of(tmp_path, "deferred")
    assert deferred[0] == "type\trcpt\tdsnAction\tdsnMta"
    assert set(deferred[1:]) == {"df\ttempfail@a.test\tdelayed\tsink.test"}
    busy = "451 4.2.0 <tempfail@a.test>: Mailbox busy, try again later"
    (expired,) = lines_of(tmp_path, "bounce")[1:]
    assert expired == (
        f"b\t\ttempfail@a.test\ttempfail@a.test\t\t{job}\t5.4.7\tfailed\tsmtp; {busy}\t"
        f"sink.test\t{len(message.content)}\t{outbound[1]}\t{outbound[0]}\tmessage-expired")
