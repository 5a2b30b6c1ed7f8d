"""``mta-logging report --from postgresql://...``: the numbers of the file report, from SQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ship_servers import (
    NatsCluster,
    Postgres,
    mta_logging_command,
    ship_config,
)

WORKERS = Path(__file__).parent / "ship_workers.py"


def output(*args: str) -> str:
    done = subprocess.run(mta_logging_command(*args), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_report_from_postgresql_equals_the_file_report(
        nats_cluster: NatsCluster, postgres: Postgres, tmp_path: Path) -> None:
    accounting = tmp_path / "acct"
    for worker in (1, 2):
        subprocess.run([sys.executable, str(WORKERS), str(accounting), "--worker", str(worker),
                        "--count", "400"], check=True, timeout=60)
    (accounting / "json").mkdir()
    (accounting / "json" / "d.1.json").write_text("".join(json.dumps(record) + "\n" for record in [
        {"type": "b", "timeLogged": "2026-11-30 23:59:59", "rcpt": "<A@Example.ORG.>",
         "dsnStatus": "5.7.1", "dsnMsg": "550 5.7.1 blocked 10.0.0.1", "bounceCat": "policy"},
        {"type": "x", "timeLogged": "2026-11-30 23:00:00", "rcpt": "odd@kind.example"},
        {"type": "d", "timeLogged": "2026-12-01 00:00:00", "timeQueued": "2026-11-30 22:00:00",
         "rcpt": "late@example.org", "vmta": "", "srcIp": "192.0.2.1"},
        # no outcomes: counted by kind, in no table and outside the period
        {"type": "r", "timeLogged": "2020-01-01 00:00:00", "rcpt": "in@received.example"},
        {"type": "rb", "timeLogged": "2026-11-30 12:00:00", "rcpt": "back@returned.example",
         "vmta": "returns", "dsnStatus": "5.1.1", "dsnMsg": "550 5.1.1 no such user"},
        {"type": "f", "timeLogged": "2030-01-01 00:00:00", "rcpt": "who@complained.example"},
    ]))
    config = ship_config(
        tmp_path, paths=[str(accounting)], state_dir=str(tmp_path / "state"), host="relay1",
        nats={"servers": nats_cluster.urls, "stream": "REPORT", "subject_prefix": "report"},
        ingest={"dsn": postgres.dsn, "table": "report_records"})
    output("ship", "--config", str(config), "--once")
    output("ingest", "--config", str(config), "--once")

    from_files = json.loads(output("report", "--json", "--top", "3", str(accounting)))
    from_sql = json.loads(output("report", "--json", "--top", "3", "--from", postgres.dsn,
                                 "--table", "report_records"))
    del from_files["input"]
    assert from_sql == from_files
    # per worker: 57 of 400 bounce (n % 7 == 6), 69 deferred (n % 5 == 4, not bounces);
    # the "x" record is counted by its file's name (d.), as the reader takes it
    assert from_sql["totals"] == {"delivered": 2 * 274 + 2, "deferred": 2 * 69,
                                  "bounced": 2 * 57 + 1, "received": 1, "remote_bounce": 1,
                                  "feedback": 1, "unknown": 0, "total": 806}
    assert from_sql["period"]["first"] != "2020-01-01 00:00:00"
    assert from_sql["period"]["last"] != "2030-01-01 00:00:00"
    assert from_sql["queue_delay"]["count"] == 2 * 274 + 1


def test_report_from_postgresql_takes_no_paths_or_filters() -> None:
    done = subprocess.run(mta_logging_command("report", "--from", "postgresql://127.0.0.1:1/x",
                                              "--domain", "example.org"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == ("mta-logging report: --from: 'postgresql://127.0.0.1:1/x' is not "
                           "valid; the report from PostgreSQL takes no domain (it covers the "
                           "whole table)\n")
    done = subprocess.run(mta_logging_command("report"), capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("mta-logging report: no PATH given: name the accounting files or "
                           "directories to report on, or --from URL for the PostgreSQL table\n")


def test_a_database_that_cannot_be_reached_is_named_without_its_password() -> None:
    """Nothing listens on port 1: the error names the URL as given, its password hidden."""
    for dsn, shown in (("postgresql://mail:pa55@127.0.0.1:1/x",
                        "postgresql://mail:***@127.0.0.1:1/x"),
                       ("postgresql://mail@127.0.0.1:1/x?password=pa55",
                        "postgresql://mail@127.0.0.1:1/x?password=***")):
        done = subprocess.run(mta_logging_command("report", "--from", dsn), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.startswith(f"mta-logging report: --from: '{shown}' is not valid; "
                                      "cannot connect (connection ")
        assert "pa55" not in done.stderr
