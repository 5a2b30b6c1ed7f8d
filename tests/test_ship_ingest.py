"""``mta-logging ingest`` from a real JetStream cluster into a real PostgreSQL: every record once,
through a SIGKILLed ingester and a restarted database."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psycopg
from ship_servers import (
    NatsCluster,
    Postgres,
    mta_logging_command,
    ship_config,
)

from mta_logging.report.reader import Reader
from mta_logging.report.times import TimeParser
from mta_logging.ship.ingest import COLUMNS, row_for

WORKERS = Path(__file__).parent / "ship_workers.py"


def run(config: Path, command: str) -> None:
    done = subprocess.run(mta_logging_command(command, "--config", str(config), "--once"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def rows(server: Postgres, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(server.dsn) as connection:
        return connection.execute(query).fetchall()


def test_ingest_writes_every_record_once_through_crashes(
        nats_cluster: NatsCluster, postgres: Postgres, tmp_path: Path) -> None:
    accounting = tmp_path / "acct"
    subprocess.run([sys.executable, str(WORKERS), str(accounting), "--count", "2000"],
                   check=True, timeout=60)
    config = ship_config(
        tmp_path, paths=[str(accounting)], state_dir=str(tmp_path / "state"), host="relay1",
        nats={"servers": nats_cluster.urls, "stream": "INGEST", "subject_prefix": "ingest",
              "replicas": 3},
        ingest={"dsn": postgres.dsn, "table": "ingest_records", "batch": 100, "ack_wait": 2})
    run(config, "ship")
    ingester = subprocess.Popen(mta_logging_command("ingest", "--config", str(config)),
                                stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # wait for the first batches, then kill it in the middle of its work
            assert time.monotonic() < deadline, "the ingester wrote nothing"
            try:
                if rows(postgres, "SELECT count(*) FROM ingest_records")[0][0]:
                    break
            except psycopg.errors.UndefinedTable:
                pass
            time.sleep(0.05)
        ingester.send_signal(signal.SIGKILL)
        ingester.wait(timeout=10)
    finally:
        if ingester.poll() is None:
            ingester.kill()
            ingester.wait(timeout=10)
    written = rows(postgres, "SELECT count(*) FROM ingest_records")[0][0]
    postgres.restart()
    run(config, "ingest")

    records = list(Reader([accounting]))
    assert 0 < written < len(records) == 2000  # it died mid-stream
    count, distinct = rows(postgres, "SELECT count(*), count(DISTINCT event_id) "
                                     "FROM ingest_records")[0]
    assert count == distinct == 2000
    stored = rows(postgres, "SELECT rcpt, type, rcpt_domain, host FROM ingest_records")
    assert sorted(stored) == sorted(
        (r.rcpt, r.kind.code if r.kind else None, r.domain, "relay1") for r in records)
    indexes = {name for (name,) in rows(
        postgres, "SELECT indexname FROM pg_indexes WHERE tablename = 'ingest_records'")}
    assert {"ingest_records_pkey", "ingest_records_time_logged", "ingest_records_rcpt_domain",
            "ingest_records_job_id"} <= indexes


def test_a_row_takes_the_kind_from_the_subject_and_leaves_out_nul() -> None:
    row = dict(zip([name for name, _type in COLUMNS], row_for(
        {"eventId": "e1", "type": "x", "timeLogged": "2026-12-01 10:00:05",
         "timeQueued": "2026-12-01 10:00:00", "rcpt": "<Bob@Example.ORG.>", "dsnMsg":
         "451 4.2.0 queue 8F3A1 full\0", "host": "relay1"}, "df", 7, TimeParser()),
        strict=True))
    assert (row["type"], row["rcpt_domain"], row["dsn_msg"], row["reason"]) == (
        "df", "example.org", "451 4.2.0 queue 8F3A1 full", "451 4.2.0 queue # full")
    assert row["logged_seconds"] - row["queued_seconds"] == 5
    assert row["time_logged"] == datetime(2026, 12, 1, 10, 0, 5)
    assert json.loads(row["fields"])["dsnMsg"] == "451 4.2.0 queue 8F3A1 full"
