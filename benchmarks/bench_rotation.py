"""Records/s of rotating handlers while they actually rotate: 1 MB files, one line per call.

    .venv/bin/python benchmarks/bench_rotation.py           # 3 interleaved rounds, ~40 s
    .venv/bin/python benchmarks/bench_rotation.py --quick   # one short round

Every implementation writes the same 10-field delivered line (the default delivered fields,
same values), flushed to the OS per record, and starts a new file every 1 MB (about 7,000
records), so a run rolls over dozens of times:

* the standard library's ``RotatingFileHandler`` (maxBytes 1 MB, 5 backups: it renames the
  whole chain at each rollover and deletes the oldest) — the baseline;
* concurrent-log-handler's ``ConcurrentRotatingFileHandler`` (same limits; it locks a lock
  file around every record so that processes can share one file);
* ours through ``AccountingLogger.delivered``: archiving on (each file moved into
  ``archive/``), archiving off (new files beside the old ones), and archiving with gzip (done
  by the maintenance thread, off the logging path).

The others get the line's values ready-made as ``%`` arguments (ours builds them from an
Outcome). Each implementation runs in a fresh interpreter, so peak RSS is its own; rounds are
interleaved and each one's best round is reported (on a shared machine, the least disturbed).
"records/CPU s" divides by the CPU time of the whole process (all threads), which other work on
the machine disturbs less than wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mta_logging.fields import TimeText  # noqa: E402

BASELINE = "stdlib RotatingFileHandler"
FILE_MB = 1
BACKUPS = 5
BATCH = 1000
SRC_MTA, SRC_IP, VMTA = "mx1.sender.example", "192.0.2.10", "pool-a"
DSN_STATUS, DSN_MSG = "2.0.0", "250 2.0.0 OK queued as 4XyZ1AbCdEfGhIjK"
RECIPIENTS = tuple(f"user{i:04d}@example{i % 17}.com" for i in range(1000))
JOB_IDS = tuple(f"job-{i:06d}" for i in range(100))
QUEUED = float(int(time.time()) - 42)

Writer = Callable[[int], None]
Rollovers = Callable[[], int]


def _percent_writer(handler: logging.handlers.BaseRotatingHandler) -> tuple[Writer, Rollovers]:
    """A logger writing the delivered line through ``handler``; counts its rollovers."""
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("bench")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    rolled = [0]
    roll = handler.doRollover

    def counted() -> None:
        rolled[0] += 1
        roll()

    handler.doRollover = counted  # type: ignore[method-assign]
    line = "\t".join(["%s"] * 10)
    logged, queued = TimeText(), TimeText()(QUEUED)

    def write(i: int) -> None:
        logger.info(line, "d", logged(time.time()), queued, RECIPIENTS[i % 1000], SRC_MTA,
                    SRC_IP, VMTA, JOB_IDS[i % 100], DSN_STATUS, DSN_MSG)

    return write, lambda: rolled[0]


def stdlib_rotating(directory: Path) -> tuple[Writer, Rollovers]:
    return _percent_writer(logging.handlers.RotatingFileHandler(
        directory / "d.tsv", maxBytes=FILE_MB * 10**6, backupCount=BACKUPS))


def concurrent_rotating(directory: Path) -> tuple[Writer, Rollovers]:
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    return _percent_writer(ConcurrentRotatingFileHandler(
        str(directory / "d.tsv"), maxBytes=FILE_MB * 10**6, backupCount=BACKUPS))


def _ours(directory: Path, **settings: Any) -> tuple[Writer, Rollovers]:
    import mta_logging
    from mta_logging import AccountingLogger

    mta_logging.configure({"path": str(directory), "max_size": FILE_MB, **settings})
    delivered = AccountingLogger().delivered
    archiving = bool(settings.get("archiving"))
    finished = directory / "delivered" / ("archive" if archiving else "")

    def write(i: int) -> None:
        delivered(RECIPIENTS[i % 1000], time_queued=QUEUED, src_mta=SRC_MTA, src_ip=SRC_IP,
                  vmta=VMTA, job_id=JOB_IDS[i % 100], dsn_status=DSN_STATUS, dsn_msg=DSN_MSG)

    def rollovers() -> int:
        files = sum(1 for path in finished.iterdir() if path.is_file())
        return files if archiving else files - 1  # without archiving, one is still active

    return write, rollovers


IMPLEMENTATIONS: dict[str, Callable[[Path], tuple[Writer, Rollovers]]] = {
    BASELINE: stdlib_rotating,
    "concurrent-log-handler ConcurrentRotatingFileHandler": concurrent_rotating,
    "ours: archiving into archive/": lambda d: _ours(d, archiving=True),
    "ours: archiving off (new file beside)": lambda d: _ours(d, archiving=False),
    "ours: archiving + compress": lambda d: _ours(d, archiving=True, compress=True),
}


def child(name: str, seconds: float) -> None:
    """Run one implementation for ``seconds``; print its result as one JSON line."""
    directory = Path(tempfile.mkdtemp(prefix="bench-rotation-"))
    try:
        write, rollovers = IMPLEMENTATIONS[name](directory)
        for i in range(BATCH):  # warm-up: files open, caches filled
            write(i)
        count, cpu_start, start = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - start < seconds:
            for i in range(count, count + BATCH):
                write(i)
            count += BATCH
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        result = {"count": count, "elapsed": elapsed, "cpu": cpu, "rollovers": rollovers(),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        logging.shutdown()
        print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_child(name: str, seconds: float) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", name, "--seconds", str(seconds)],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0 or done.stderr.strip():
        raise RuntimeError(f"{name} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=None, help="default 3")
    parser.add_argument("--seconds", type=float, default=None,
                        help="per implementation and round (default 2.5)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = args.seconds or (0.5 if args.quick else 2.5)
    if args.child:
        child(args.child, seconds)
        return
    best: dict[str, dict[str, Any]] = {}
    for round_number in range(1, (args.rounds or (1 if args.quick else 3)) + 1):
        for name in IMPLEMENTATIONS:
            result = run_child(name, seconds)
            result["rate"] = result["count"] / result["elapsed"]
            print(f"  round {round_number}: {name:<54} {result['rate']:>9,.0f} records/s",
                  file=sys.stderr)
            if name not in best or result["rate"] > best[name]["rate"]:
                best[name] = result
    base = best[BASELINE]["rate"]
    print(f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}; {FILE_MB} MB files, best of each")
    print()
    print(f"| implementation | records/s | × {BASELINE} | records/CPU s | peak RSS (MB) "
          "| rollovers |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, result in best.items():
        print(f"| {name} | {result['rate']:,.0f} | {result['rate'] / base:.2f} | "
              f"{result['count'] / result['cpu']:,.0f} | {result['rss_mb']:.1f} | "
              f"{result['rollovers']} |")


if __name__ == "__main__":
    main()
