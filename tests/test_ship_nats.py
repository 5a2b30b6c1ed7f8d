"""``mta-logging ship`` into a real 3-node JetStream cluster: what the stream holds, message
ids, checkpoints, and a shipper and a NATS node SIGKILLed while records stream."""

from __future__ import annotations

import asyncio
import gzip
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats.errors
from ship_servers import (
    NatsCluster,
    mta_logging_command,
    ship_config,
    stream_messages,
)

from mta_logging.formatters import join_values
from mta_logging.report.reader import Reader
from mta_logging.ship import nats_sink
from mta_logging.ship.message import message_for
from mta_logging.ship.tail import identify, read_entries

WORKERS = Path(__file__).parent / "ship_workers.py"
HEADER = ["type", "timeLogged", "rcpt", "jobId"]


def expected_ids(root: Path, host: str) -> set[str]:
    """The message id of every record under ``root``, as the shipper derives them."""
    ids = set()
    reader = Reader([])
    for path in Reader([root]).files():
        identity = identify(path)
        assert identity is not None, path
        for entry in read_entries(path, reader, 0, 0):
            assert entry.record is not None
            ids.add(message_for(entry.record, host, identity.fingerprint, entry.offset).id)
    return ids


def nats_section(cluster: NatsCluster, name: str, **more: object) -> dict[str, object]:
    return {"servers": cluster.urls, "stream": name.upper(), "subject_prefix": name,
            "replicas": 3, **more}


def ship_once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mta_logging_command("ship", "--config", str(config), "--once"),
                          capture_output=True, text=True, timeout=90)


def test_ship_once_sends_each_record_once_with_its_event_id(
        nats_cluster: NatsCluster, tmp_path: Path) -> None:
    accounting = tmp_path / "acct"
    (accounting / "delivered" / "archive").mkdir(parents=True)
    (accounting / "bounce").mkdir()
    rows = [join_values(["d", "2026-12-01 10:00:00", f"u{n}@x.org", "j1"]) for n in range(6)]
    header = join_values(HEADER)
    (accounting / "delivered" / "archive" / "d.1.tsv.gz").write_bytes(
        gzip.compress("".join(f"{line}\n" for line in [header, *rows[:3]]).encode()))
    (accounting / "delivered" / "d.2.tsv").write_text(
        "".join(f"{line}\n" for line in [header, *rows[3:]]))
    (accounting / "bounce" / "b.1.tsv").write_text(
        join_values(["eventId", *HEADER]) + "\n"
        + join_values(["ev-7", "b", "2026-12-01 10:00:01", "z@x.org", "j1"]) + "\n")
    config = ship_config(tmp_path, paths=[str(accounting)], state_dir=str(tmp_path / "state"),
                         host="relay1", nats=nats_section(nats_cluster, "once"))

    done = ship_once(config)
    assert done.returncode == 0, done.stderr
    messages = asyncio.run(stream_messages(nats_cluster.urls, "ONCE"))
    assert sorted(subject for subject, _id, _body in messages) == (
        ["once.b.relay1"] + ["once.d.relay1"] * 6)
    assert sorted(body["rcpt"] for _s, _id, body in messages) == sorted(
        [f"u{n}@x.org" for n in range(6)] + ["z@x.org"])
    assert {message_id for _s, message_id, _b in messages} == expected_ids(accounting, "relay1")
    assert ("once.b.relay1", "ev-7") in {(s, message_id) for s, message_id, _b in messages}
    assert all(body["eventId"] == message_id and body["host"] == "relay1"
               for _s, message_id, body in messages)

    assert ship_once(config).returncode == 0  # checkpoints: nothing is sent again
    assert len(asyncio.run(stream_messages(nats_cluster.urls, "ONCE"))) == 7
    for checkpoint in (tmp_path / "state" / "nats").iterdir():
        checkpoint.unlink()  # lost checkpoints: everything is sent again, the server drops it
    assert ship_once(config).returncode == 0
    assert len(asyncio.run(stream_messages(nats_cluster.urls, "ONCE"))) == 7


def test_kill_9_of_the_shipper_and_of_a_nats_node_loses_and_doubles_nothing(
        nats_cluster: NatsCluster, tmp_path: Path) -> None:
    accounting = tmp_path / "acct"
    config = ship_config(tmp_path, paths=[str(accounting)], state_dir=str(tmp_path / "state"),
                         host="relay1", poll_interval=0.2,
                         nats=nats_section(nats_cluster, "kill", window=64))
    writer = subprocess.Popen([sys.executable, str(WORKERS), str(accounting), "--count", "3000",
                               "--pause", "0.002"])
    shipper = subprocess.Popen(mta_logging_command("ship", "--config", str(config)),
                               stderr=subprocess.DEVNULL)
    try:
        checkpoints = tmp_path / "state" / "nats"
        deadline = time.monotonic() + 60
        while not (checkpoints.is_dir() and any(checkpoints.glob("*.json"))):
            assert time.monotonic() < deadline, "the shipper took no checkpoint"
            time.sleep(0.05)
        nats_cluster.kill(1)
        time.sleep(0.5)
        shipper.send_signal(signal.SIGKILL)
        shipper.wait(timeout=10)
        nats_cluster.start(1)
        shipped_before = len(asyncio.run(stream_messages(nats_cluster.urls, "KILL")))
        assert writer.wait(timeout=60) == 0
    finally:
        for process in (writer, shipper):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    done = ship_once(config)
    assert done.returncode == 0, done.stderr
    records = list(Reader([accounting]))
    assert 0 < shipped_before < len(records) == 3000  # the shipper died mid-stream
    messages = asyncio.run(stream_messages(nats_cluster.urls, "KILL"))
    ids = [message_id for _s, message_id, _b in messages]
    assert len(ids) == len(set(ids)) == 3000  # duplicates were dropped by Nats-Msg-Id
    assert set(ids) == expected_ids(accounting, "relay1")
    assert sorted(body["rcpt"] for _s, _i, body in messages) == sorted(
        record.rcpt for record in records)


def test_jetstream_not_ready_is_waited_for_and_logged_once_an_episode(monkeypatch, caplog):
    """A cluster electing its leaders answers a consumer's look-up with a time-out: the
    ingester started then waits for it (it exited with a traceback, and nothing more reached
    PostgreSQL), logging the episode once."""
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)

    monkeypatch.setattr(nats_sink.asyncio, "sleep", nap)
    answers: list[object] = [nats.errors.TimeoutError(), nats.errors.NoRespondersError(),
                             nats.errors.TimeoutError(), "subscribed"]

    async def attempt() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with caplog.at_level(logging.WARNING, "mta_logging.ship"):
        assert asyncio.run(nats_sink.when_ready(attempt)) == "subscribed"
    assert naps == [1.0, 1.0, 1.0]
    assert [r.getMessage() for r in caplog.records] == [
        "nats: JetStream not ready (nats: timeout); trying again every second"]
