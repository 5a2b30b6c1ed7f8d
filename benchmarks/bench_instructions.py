"""Instructions per record, counted by valgrind (callgrind): a measure other work cannot move.

    .venv/bin/python benchmarks/bench_instructions.py          # bench_write's rows, ~3 minutes
    .venv/bin/python benchmarks/bench_instructions.py --json   # bench_json's rows
    .venv/bin/python benchmarks/bench_instructions.py --classify  # bench_classify's rows
    .venv/bin/python benchmarks/bench_instructions.py --quick  # fewer records, ~1 minute

Each implementation of ``bench_write.py`` (or ``bench_json.py``, or each row of
``bench_classify.py``, its calls counted as records are) runs in a fresh interpreter
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
import sys

from _common import BASELINE, instructions_per_record, machine, write_counted


def _implementations(suite: str) -> dict[str, object]:
    if suite == "classify":
        import bench_classify

        return dict(bench_classify.IMPLEMENTATIONS)
    if suite == "json":
        import bench_json

        return dict(bench_json.IMPLEMENTATIONS)
    import bench_write

    return dict(bench_write.IMPLEMENTATIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="bench_json.py's rows")
    parser.add_argument("--classify", action="store_true", help="bench_classify.py's rows")
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    parser.add_argument("--count", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--suite", default="write", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count:
        write_counted(_implementations(args.suite)[args.count],  # type: ignore[arg-type]
                      args.records)
        return
    suite = "classify" if args.classify else "json" if args.json else "write"
    names = list(_implementations(suite))
    counts, extra = instructions_per_record(__file__, names, args.quick, "--suite", suite)
    if suite == "classify":
        _classify_table(counts, extra)
        return
    baseline = next(name for name in names if name.startswith(BASELINE))
    print(machine() + f"; {extra:,} records counted per implementation")
    print()
    print(f"| implementation | instructions/record | × {baseline} (its count ÷ this) |")
    print("|---|---:|---:|")
    for name in names:
        print(f"| {name} | {counts[name]:,.0f} | {counts[baseline] / counts[name]:.2f} |")
    sys.stdout.flush()


def _classify_table(counts: dict[str, float], extra: int) -> None:
    """bench_classify.py's rows, each next to the cost of writing the bounce record."""
    import bench_classify

    record = counts[bench_classify.WRITE]
    print(machine() + f"; {extra:,} calls counted per row")
    print()
    print("| row | instructions/call | × writing the record |")
    print("|---|---:|---:|")
    for name, count in counts.items():
        print(f"| {name} | {count:,.0f} | {count / record:.2f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
