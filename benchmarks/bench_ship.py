"""Many hosts, one stream: files → 3-replica JetStream → PostgreSQL, end to end.

Starts a 3-node nats-server cluster and a PostgreSQL cluster (the test servers of
``tests/ship_servers.py``: temporary directories, 127.0.0.1 ports, stopped by PID), then:

1. **local write rate**: ``--records`` delivered records written through ``AccountingLogger``
   (TSV, archiving on) in one process: records/s;
2. **end to end**: those files shipped (``mta-logging ship --once``) into a stream with 3
   replicas while ``mta-logging ingest`` writes them into PostgreSQL: records/s from the start
   of the shipper until the last record is committed, and its ratio to (1);
3. **lag under load**: a writer process paced at ``--rate`` records/s for ``--seconds`` while
   a following shipper and ingester run; every 0.2 s the newest committed record (its jobId
   is its sequence number) gives the lag = now − when the writer wrote it; median, p90, max.

Goal: the pipeline keeps up with one relay at full speed, lag under 2 s.

    .venv/bin/python benchmarks/bench_ship.py [--records N] [--rate R] [--seconds S]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import psycopg  # noqa: E402
from ship_servers import (  # noqa: E402
    mta_logging_command,
    ship_config,
    start_nats_cluster,
    start_postgres,
)

from mta_logging import AccountingFileHandler, AccountingLogger  # noqa: E402


def write(directory: Path, count: int, rate: float | None) -> float:
    """Write ``count`` records (jobId = sequence number), paced at ``rate`` per second if given;
    return the seconds it took."""
    logger = logging.getLogger("mta.accounting")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = AccountingFileHandler("delivered", directory / "delivered", archiving=True,
                                    max_size=20, compress=True)
    logger.addHandler(handler)
    accounting = AccountingLogger(logger)
    started = time.perf_counter()
    for number in range(count):
        if rate is not None:
            due = started + number / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        accounting.delivered(f"user{number % 1000}@example{number % 17}.com", job_id=number,
                             vmta="pool-a", dsn_status="2.0.0",
                             dsn_msg="250 2.0.0 OK queued as 4XyZ1AbCdEfGhIjK")
    took = time.perf_counter() - started
    handler.close()
    logger.removeHandler(handler)
    return took


def stored(dsn: str, table: str) -> tuple[int, int | None]:
    """(rows, highest jobId) in the table, (0, None) before it exists."""
    try:
        with psycopg.connect(dsn) as connection:
            count, highest = connection.execute(
                f"SELECT count(*), max(job_id::bigint) FROM {table}").fetchone()  # type: ignore[misc]
            return int(count), highest
    except psycopg.errors.UndefinedTable:
        return 0, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--writer", nargs=3, metavar=("DIR", "COUNT", "RATE"),
                        help=argparse.SUPPRESS)  # the paced writer process of step 3
    args = parser.parse_args()
    if args.writer:
        directory, count, rate = args.writer
        write(Path(directory), int(count), float(rate))
        return

    work = Path(tempfile.mkdtemp(prefix="bench-ship-"))
    cluster = start_nats_cluster(work / "nats")
    database = start_postgres()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        local = work / "local"
        write_seconds = write(local, args.records, None)
        local_rate = args.records / write_seconds

        def config(name: str, paths: list[Path]) -> Path:
            directory = work / name
            directory.mkdir()
            return ship_config(
                directory, paths=[str(p) for p in paths], state_dir=str(directory / "state"),
                host="bench", poll_interval=0.1,
                nats={"servers": cluster.urls, "stream": name.upper(), "subject_prefix": name,
                      "replicas": 3, "window": 2048},
                ingest={"dsn": database.dsn, "table": f"{name}_records", "batch": 1000})

        bulk = config("bulk", [local])
        processes.append(subprocess.Popen(mta_logging_command("ingest", "--config", str(bulk)),
                                          stderr=subprocess.DEVNULL))
        started = time.perf_counter()
        subprocess.run(mta_logging_command("ship", "--config", str(bulk), "--once"),
                       check=True, stderr=subprocess.DEVNULL)
        shipped = time.perf_counter() - started
        while stored(database.dsn, "bulk_records")[0] < args.records:
            time.sleep(0.05)
        end_to_end = time.perf_counter() - started

        steady_dir = work / "steady-files"
        steady = config("steady", [steady_dir])
        count = int(args.rate * args.seconds)
        for command in ("ingest", "ship"):
            processes.append(subprocess.Popen(
                mta_logging_command(command, "--config", str(steady)),
                stderr=subprocess.DEVNULL))
        time.sleep(2)  # both connected and the stream created
        writer_started = time.perf_counter()
        processes.append(subprocess.Popen(
            [sys.executable, __file__, "--writer", str(steady_dir), str(count), str(args.rate)]))
        lags = []
        while True:
            time.sleep(0.2)
            rows, highest = stored(database.dsn, "steady_records")
            now = time.perf_counter()
            if highest is not None:
                lags.append(max(0.0, now - (writer_started + (highest + 1) / args.rate)))
            if rows >= count:
                break
        lags.sort()
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=20)
        cluster.stop_all()
        database.stop()
        shutil.rmtree(database.directory, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    print("| step | records | seconds | records/s | ratio to local write |")
    print("|---|---:|---:|---:|---:|")
    print(f"| local write (AccountingLogger, TSV) | {args.records:,} | {write_seconds:.2f} | "
          f"{local_rate:,.0f} | 1.00 |")
    print(f"| ship --once into 3 replicas (acknowledged) | {args.records:,} | {shipped:.2f} | "
          f"{args.records / shipped:,.0f} | {args.records / shipped / local_rate:.2f} |")
    print(f"| files → JetStream (R3) → PostgreSQL (committed) | {args.records:,} | "
          f"{end_to_end:.2f} | {args.records / end_to_end:,.0f} | "
          f"{args.records / end_to_end / local_rate:.2f} |")
    print()
    print(f"steady load {args.rate:,.0f} records/s for {args.seconds:.0f} s: lag median "
          f"{statistics.median(lags):.2f} s, p90 {lags[int(len(lags) * 0.9)]:.2f} s, "
          f"max {lags[-1]:.2f} s ({len(lags)} samples)")


if __name__ == "__main__":
    main()
