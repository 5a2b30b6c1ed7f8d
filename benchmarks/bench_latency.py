"""How long one logging call blocks its caller, at a rollover and otherwise, at a relay's pace.

    .venv/bin/python benchmarks/bench_latency.py            # 10,000 records each, ~1 min
    .venv/bin/python benchmarks/bench_latency.py --quick    # 2,000 records each

An event loop (the relay's) writes its accounting records from the loop thread: while a call
runs, nothing else on the loop does. This measures every call's wall-clock time, one record at
a time with a pause between records (``--pace``, default 1 ms: the loop waiting for the
network; the pause releases the GIL as ``select`` does). Files are small (``--max-size``,
default 0.05 MB, a few hundred records), so each run rolls over dozens of times.

* ``os.write`` — the same line, preformatted, written to an ``O_APPEND`` file: one write, the
  reference;
* the standard library's ``RotatingFileHandler`` (maxBytes the same, 5 backups);
* ours through ``AccountingLogger.delivered``, archiving on, fsync ``never`` and ``rollover``.

Each runs in a fresh interpreter. The table gives, for the calls that started a new file and
for the others, the median and the slowest; for ours also how many rollovers found a spare
file ready (then the call writes its record and touches no other file: the maintenance thread
names the new file and archives the old one; without one — the first rollover, or files that
fill faster than the thread looks, ten times a second — the call does that work itself).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from mta_logging.fields import TimeText  # noqa: E402

# one call: (nanoseconds, started a new file?, a spare was ready?)
Call = tuple[int, bool, bool]


def _arguments() -> Callable[[int], tuple[str, ...]]:
    """The i-th delivered line's values, as ``%`` arguments (logged now)."""
    logged, queued = TimeText().text, TimeText().text(_common.time_queued())

    def arguments(i: int) -> tuple[str, ...]:
        return ("d", logged(time.time()), queued, _common.RECIPIENTS[i % _common.RCPTS],
                _common.SRC_MTA, _common.SRC_IP, _common.VMTA,
                _common.JOB_IDS[i % _common.JOBS], _common.DSN_STATUS, _common.DSN_MSG)
    return arguments


def run_bare(directory: Path, count: int, pace: float, max_mb: float) -> list[Call]:
    fd = os.open(directory / "bare.tsv", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    arguments = _arguments()
    lines = [(_common.PERCENT_LINE % arguments(i) + "\n").encode() for i in range(100)]
    calls = []
    for i in range(count):
        time.sleep(pace)
        start = time.perf_counter_ns()
        os.write(fd, lines[i % 100])
        calls.append((time.perf_counter_ns() - start, False, False))
    return calls


def run_stdlib(directory: Path, count: int, pace: float, max_mb: float) -> list[Call]:
    handler = logging.handlers.RotatingFileHandler(
        directory / "d.tsv", maxBytes=int(max_mb * 1e6), backupCount=5)
    logger = _common.stdlib_logger(handler)
    arguments = _arguments()
    calls = []
    for i in range(count):
        args = arguments(i)
        time.sleep(pace)
        stream = handler.stream
        start = time.perf_counter_ns()
        logger.info(_common.PERCENT_LINE, *args)
        calls.append((time.perf_counter_ns() - start, handler.stream is not stream, False))
    return calls


def run_ours(fsync: str) -> Callable[[Path, int, float, float], list[Call]]:
    def run(directory: Path, count: int, pace: float, max_mb: float) -> list[Call]:
        from mta_logging import AccountingLogger

        _common.configure_ours(directory, max_size=max_mb, fsync=fsync)
        write = _common.delivered_writer(AccountingLogger().delivered)
        handler = next(h for h in logging.getLogger("mta.accounting").handlers
                       if getattr(getattr(h, "kind", None), "value", None) == "d")
        calls = []
        for i in range(count):
            time.sleep(pace)
            before = handler._file  # type: ignore[attr-defined]
            start = time.perf_counter_ns()
            write(i)
            took = time.perf_counter_ns() - start
            after = handler._file  # type: ignore[attr-defined]
            rolled = before is not None and after is not before
            calls.append((took, rolled, rolled and not getattr(after, "named", True)))  # spare
        logging.shutdown()
        return calls
    return run


IMPLEMENTATIONS: dict[str, Callable[[Path, int, float, float], list[Call]]] = {
    "os.write (one write)": run_bare,
    "stdlib RotatingFileHandler": run_stdlib,
    "ours, fsync never": run_ours("never"),
    "ours, fsync rollover": run_ours("rollover"),
}


def summary(calls: list[Call]) -> dict[str, Any]:
    def us(values: list[int], how: Callable[[list[int]], float]) -> float | None:
        return how(values) / 1000 if values else None

    normal = [ns for ns, rolled, _ in calls if not rolled]
    rolls = [ns for ns, rolled, _ in calls if rolled]
    return {
        "calls": len(calls),
        "normal_median": us(normal, statistics.median),
        "normal_p99": us(normal, lambda v: statistics.quantiles(v, n=100)[98]),
        "normal_max": us(normal, max),
        "rollovers": len(rolls),
        "roll_median": us(rolls, statistics.median),
        "roll_max": us(rolls, max),
        "spare_ready": sum(1 for _, rolled, spare in calls if rolled and spare),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:,.1f}"

    head = ("| implementation | calls | other calls: median µs | p99 µs | max µs | rollovers "
            "| rollover calls: median µs | max µs | spare ready |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        spare = f"{r['spare_ready']} of {r['rollovers']}" if name.startswith("ours") else "—"
        lines.append(
            f"| {name} | {r['calls']:,} | {cell(r['normal_median'])} | {cell(r['normal_p99'])} "
            f"| {cell(r['normal_max'])} | {r['rollovers']} | {cell(r['roll_median'])} "
            f"| {cell(r['roll_max'])} | {spare} |")
    return "\n".join(lines)


def main() -> None:
    args = _common.arguments(__doc__.splitlines()[0], rounds=1, seconds=0,
                             child_options=["count", "pace", "max_mb"])
    count = int(args.count or (2000 if args.quick else 10_000))
    pace, max_mb = float(args.pace or 0.001), float(args.max_mb or 0.05)
    if args.child:
        directory = Path(tempfile.mkdtemp(prefix="bench-"))
        try:
            calls = IMPLEMENTATIONS[args.child](directory, count, pace, max_mb)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        print(json.dumps(summary(calls)))
        return
    results = {}
    for name in IMPLEMENTATIONS:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--count", str(count),
             "--pace", str(pace), "--max-mb", str(max_mb)],
            check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.splitlines()[-1])
    print(_common.machine())
    print(f"{count:,} records each, {pace * 1000:g} ms apart; files of {max_mb:g} MB")
    print()
    print(table(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
