"""Instructions per record, counted by valgrind (callgrind): a measure other work cannot move.

    .venv/bin/python benchmarks/bench_instructions.py          # bench_write's rows, ~3 minutes
    .venv/bin/python benchmarks/bench_instructions.py --json   # bench_json's rows
    .venv/bin/python benchmarks/bench_instructions.py --quick  # fewer records, ~1 minute

Each implementation of ``bench_write.py`` (or ``bench_json.py``) runs in a fresh interpreter
under ``valgrind --tool=callgrind`` twice, writing N and then N + EXTRA records after the same
warm-up; the difference of the two instruction counts divided by EXTRA is what one record costs,
start-up and warm-up cancelled out. Hash randomisation is off, so reruns agree to a fraction of
a per cent.

What it does not count: the kernel's side of system calls. Every row writes each record with
one ``write`` call, so that cost is the same for all, except the stdlib RotatingFileHandler,
which also asks the kernel about the file for every record (``seek``/``tell`` and, since Python
3.11.7, two ``stat`` calls): its instruction count understates its cost. ``bench_write.py``
measures everything, in time; this script says where the time goes, steadily.

Needs ``valgrind`` (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import BASELINE, ROOT, machine

WARM_UP = 1000
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def count_child(suite: str, name: str, records: int) -> None:
    """Under valgrind: warm up, then write ``records`` records with one implementation."""
    import logging

    implementations = _implementations(suite)
    directory = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        write = implementations[name](directory)
        for i in range(WARM_UP):
            write(i)
        for i in range(records):
            write(i)
        logging.shutdown()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _implementations(suite: str) -> dict[str, object]:
    if suite == "json":
        import bench_json

        return dict(bench_json.IMPLEMENTATIONS)
    import bench_write

    return dict(bench_write.IMPLEMENTATIONS)


def instructions(suite: str, name: str, records: int) -> int:
    """User-space instructions of one run under callgrind."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--count", name, "--records", str(records), "--suite", suite],
        capture_output=True, text=True, check=False, cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0"})
    found = REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{name} under valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_record(suite: str, name: str, base: int, extra: int) -> float:
    return (instructions(suite, name, base + extra) - instructions(suite, name, base)) / extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="bench_json.py's rows")
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    parser.add_argument("--count", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--suite", default="write", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count:
        count_child(args.suite, args.count, args.records)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    suite = "json" if args.json else "write"
    names = list(_implementations(suite))
    base, extra = (500, 2000) if args.quick else (2000, 10000)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(zip(names, pool.map(lambda n: per_record(suite, n, base, extra), names),
                          strict=True))
    baseline = next(name for name in names if name.startswith(BASELINE))
    print(machine() + f"; {extra:,} records counted per implementation")
    print()
    print(f"| implementation | instructions/record | × {baseline} (its count ÷ this) |")
    print("|---|---:|---:|")
    for name in names:
        print(f"| {name} | {counts[name]:,.0f} | {counts[baseline] / counts[name]:.2f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
