"""Memory while writing many records: the resident set size must stay flat.

    .venv/bin/python benchmarks/bench_memory.py                  # 10 million records
    .venv/bin/python benchmarks/bench_memory.py --records 500000
    .venv/bin/python benchmarks/bench_memory.py --quick          # 200,000 records

Writes delivered records through ``AccountingLogger.delivered`` with archiving on and a small
``max_size``, so that files roll over into the archive many times (``retention_files`` keeps
the disk bounded), and prints the resident set size (RSS, from /proc/self/statm) at 20 points.
"Flat" means: after the first checkpoint, RSS grows by less than 1 MB in total.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import current_rss_mb, machine
from bench_write import ours_accounting_logger

CHECKPOINTS = 20
FLAT_MB = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    args = parser.parse_args()
    records = 200_000 if args.quick else args.records
    directory = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        write = ours_accounting_logger(directory, max_size=20, retention_files=2)
        step = max(1, records // CHECKPOINTS)
        points: list[tuple[int, float]] = []
        start = time.perf_counter()
        for i in range(records):
            write(i)
            if (i + 1) % step == 0:
                points.append((i + 1, current_rss_mb()))
        elapsed = time.perf_counter() - start
        archived = sum(1 for _ in (directory / "delivered" / "archive").iterdir())
        logging.shutdown()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(machine())
    print(f"{records:,} records in {elapsed:,.0f} s ({records / elapsed:,.0f} records/s); "
          f"max_size 20 MB: a rollover into the archive every ~130,000 records "
          f"({archived} archived files left by retention_files=2)")
    print()
    print("| records written | RSS (MB) |")
    print("|---:|---:|")
    for count, rss in points:
        print(f"| {count:,} | {rss:.1f} |")
    growth = points[-1][1] - points[0][1]
    print()
    highest = max(rss for _, rss in points)
    print(f"- RSS from the first checkpoint to the last: {growth:+.2f} MB (highest "
          f"{highest:.1f} MB): {'flat' if growth < FLAT_MB else 'GROWING'}")


if __name__ == "__main__":
    main()
