"""Total records/s of one process and of two processes writing at the same time.

    .venv/bin/python benchmarks/bench_procs.py           # 3 interleaved rounds
    .venv/bin/python benchmarks/bench_procs.py --quick   # one short round

Each process is a fresh interpreter writing the delivered line as fast as it can; the processes
of one run share one configuration and one directory, as two workers of one application would
(ours gives each its own active file). They start together at an agreed moment and each runs
for the same time; the total is the sum of their rates. The stdlib RotatingFileHandler is
shown for comparison (each process with its own file: it cannot share one safely).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _common import (
    BASELINE,
    ROOT,
    Writer,
    arguments,
    machine,
    measure,
    report_child,
)
from bench_write import ours_accounting_logger, stdlib_rotating

OURS = "ours: AccountingLogger.delivered"
IMPLEMENTATIONS: dict[str, Callable[[Path], Writer]] = {
    OURS: ours_accounting_logger,
    BASELINE: stdlib_rotating,
}
START_DELAY = 1.5  # seconds for every child to start and set up before the agreed moment


def child(name: str, seconds: float, directory: Path, start_at: float) -> None:
    if name == BASELINE:  # a file of its own
        directory = directory / str(os.getpid())
        directory.mkdir()
    write = IMPLEMENTATIONS[name](directory)
    time.sleep(max(0.0, start_at - time.time()))
    report_child(measure(write, seconds))
    logging.shutdown()


@dataclass
class Run:
    name: str
    processes: int
    rate: float  # total records/s of all processes
    rss_mb: float  # the largest peak RSS of one process


def run(script: str, name: str, processes: int, seconds: float) -> Run:
    directory = Path(tempfile.mkdtemp(prefix="bench-procs-"))
    start_at = time.time() + START_DELAY
    try:
        children = [subprocess.Popen(
            [sys.executable, script, "--child", name, "--seconds", str(seconds),
             "--dir", str(directory), "--start-at", repr(start_at)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(processes)]
        results = []
        for process in children:
            out, _ = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"{name} child failed")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return Run(name, processes, sum(r["count"] / r["elapsed"] for r in results),
               max(r["rss_mb"] for r in results))


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rounds=3, seconds=2.0,
                     child_options=("dir", "start_at"))
    if args.child:
        child(args.child, args.seconds, Path(args.dir), float(args.start_at))
        return
    best: dict[tuple[str, int], Run] = {}
    for round_number in range(1, args.rounds + 1):
        for name in IMPLEMENTATIONS:
            for processes in (1, 2):
                result = run(__file__, name, processes, args.seconds)
                print(f"  round {round_number}: {name:<36} × {processes}: "
                      f"{result.rate:>10,.0f} records/s", file=sys.stderr)
                key = (name, processes)
                if key not in best or result.rate > best[key].rate:
                    best[key] = result
    print(machine())
    print()
    print("| implementation | processes | total records/s | × one process | peak RSS per "
          "process (MB) |")
    print("|---|---:|---:|---:|---:|")
    for (name, processes), result in best.items():
        single = best[(name, 1)].rate
        print(f"| {name} | {processes} | {result.rate:,.0f} | {result.rate / single:.2f} | "
              f"{result.rss_mb:.1f} |")
    print()
    ratio = best[(OURS, 2)].rate / best[(OURS, 1)].rate
    print(f"- {OURS}: two processes / one = {ratio:.2f} (target ≥ 1.6): "
          f"{'met' if ratio >= 1.6 else 'NOT met'}")


if __name__ == "__main__":
    main()
