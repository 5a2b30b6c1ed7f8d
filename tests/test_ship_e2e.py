"""Many hosts, one stream, everything real: 2 writer processes, a shipper (JetStream and a
webhook), an ingester into PostgreSQL; a NATS node, the shipper and the ingester SIGKILLed and
restarted, PostgreSQL restarted — and every record is in PostgreSQL exactly once and at the
webhook at least once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from ship_servers import (
    NatsCluster,
    Postgres,
    WebhookReceiver,
    mta_logging_command,
    ship_config,
)
from test_ship_nats import expected_ids

from mta_logging.report.reader import Reader

WORKERS = Path(__file__).parent / "ship_workers.py"
RECORDS_PER_WRITER = 2500
DEADLINE = 120.0


def stored_count(server: Postgres) -> int:
    try:
        with psycopg.connect(server.dsn, connect_timeout=5) as connection:
            return int(connection.execute("SELECT count(*) FROM e2e_records").fetchone()[0])
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return 0


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_every_record_of_every_writer_reaches_postgresql_once_through_failures(
        nats_cluster: NatsCluster, postgres: Postgres, tmp_path: Path) -> None:
    accounting = tmp_path / "acct"
    receiver = WebhookReceiver("s3cret")
    config = ship_config(
        tmp_path, paths=[str(accounting)], state_dir=str(tmp_path / "state"), host="relay1",
        poll_interval=0.2,
        nats={"servers": nats_cluster.urls, "stream": "E2E", "subject_prefix": "e2e",
              "replicas": 3, "window": 128},
        webhooks=[{"url": receiver.url, "secret": "s3cret", "batch": 200,
                   "backoff_initial": 0.05, "backoff_max": 0.5}],
        ingest={"dsn": postgres.dsn, "table": "e2e_records", "batch": 200, "ack_wait": 2})
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(list(args), stderr=subprocess.DEVNULL)
        processes.append(process)
        return process

    def kill(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    release = tmp_path / "release"  # the writers wait for it half-way: failures come mid-stream
    try:
        writers = [start(sys.executable, str(WORKERS), str(accounting), "--worker", str(n),
                         "--count", str(RECORDS_PER_WRITER), "--pause", "0.004",
                         "--hold", str(release))
                   for n in (1, 2)]
        shipper = start(*mta_logging_command("ship", "--config", str(config)))
        ingester = start(*mta_logging_command("ingest", "--config", str(config)))
        wait_until(lambda: stored_count(postgres) > 0, "the first records in PostgreSQL")
        nats_cluster.kill(2)
        time.sleep(0.5)
        kill(shipper)
        shipper = start(*mta_logging_command("ship", "--config", str(config)))
        nats_cluster.start(2)
        kill(ingester)
        assert all(writer.poll() is None for writer in writers)  # mid-stream, all of it
        ingester = start(*mta_logging_command("ingest", "--config", str(config)))
        postgres.restart()
        release.touch()
        for writer in writers:
            assert writer.wait(timeout=DEADLINE) == 0
        total = 2 * RECORDS_PER_WRITER
        wait_until(lambda: stored_count(postgres) >= total, "every record in PostgreSQL")
        wait_until(lambda: len({r["eventId"] for r in receiver.records}) >= total,
                   "every record at the webhook")
    finally:
        for process in processes:
            if process.poll() is None:
                kill(process)
        receiver.close()

    assert len(list(Reader([accounting]))) == 2 * RECORDS_PER_WRITER
    expected = expected_ids(accounting, "relay1")
    with psycopg.connect(postgres.dsn) as connection:
        stored = [event_id for (event_id,) in connection.execute(
            "SELECT event_id FROM e2e_records").fetchall()]
    assert len(stored) == len(set(stored)) and set(stored) == expected
    received = [record["eventId"] for record in receiver.records]
    assert len(received) >= len(expected) and set(received) == expected
