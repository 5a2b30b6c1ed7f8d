"""How fast the report reader reads accounting files.

Generates a set of accounting files (default 1,000,000 records in each layout: TSV, the same
TSV gzipped, CSV with ``;``, JSON lines), then reads each layout in a fresh process (so peak
RSS is that of one read) and prints: input, records, seconds, records/s, CPU seconds,
records per CPU second, peak RSS.
The "report" row is the whole ``mta-logging report`` pipeline (reader + summary) on the TSV.

    .venv/bin/python benchmarks/bench_reader.py [--records N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mta_logging.fields import DEFAULT_FIELDS
from mta_logging.formatters import join_values
from mta_logging.outcome import Kind

PER_FILE = 250_000  # records per file, as after size rotation
LAYOUTS = ("tsv", "tsv.gz", "csv", "jsonl")
DOMAINS = [f"example{i}.com" for i in range(200)] + ["gmail.com", "yahoo.com", "outlook.com"]
REPLIES = {
    Kind.DELIVERED: ("2.0.0", "250 2.0.0 OK queued as {id}"),
    Kind.DEFERRED: ("4.2.2", "452 4.2.2 <{rcpt}> Mailbox full, try again later"),
    Kind.BOUNCE: ("5.1.1", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"),
}


def records(count: int, seed: int = 1) -> Iterator[tuple[Kind, dict[str, str | None]]]:
    """Deterministic records: 85% delivered, 10% deferred, 5% bounced, over 24 hours."""
    rng = random.Random(seed)
    start = time.mktime((2026, 11, 26, 0, 0, 0, 0, 0, -1))
    for index in range(count):
        roll = rng.random()
        kind = Kind.DELIVERED if roll < 0.85 else Kind.DEFERRED if roll < 0.95 else Kind.BOUNCE
        logged = start + index * 86400 / count
        rcpt = f"user{rng.randrange(10**6)}@{rng.choice(DOMAINS)}"
        status, reply = REPLIES[kind]
        yield kind, {
            "type": kind.value,
            "timeLogged": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(logged)),
            "timeQueued": time.strftime("%Y-%m-%d %H:%M:%S",
                                        time.localtime(logged - rng.randrange(600))),
            "rcpt": rcpt,
            "srcMta": "mx1.example.net",
            "srcIp": f"192.0.2.{rng.randrange(1, 9)}",
            "vmta": f"pool-{rng.randrange(4)}",
            "jobId": f"job-{index // 1000}",
            "dsnStatus": status,
            "dsnMsg": reply.format(id=f"{index:X}", rcpt=rcpt),
            "delay": "300" if kind is Kind.DEFERRED else None,
            "bounceCat": "bad-mailbox" if kind is Kind.BOUNCE else None,
        }


class RotatingFiles:
    """Per-kind files of one layout, a new file every PER_FILE records (as size rotation does)."""

    def __init__(self, directory: Path, layout: str) -> None:
        self.directory = directory
        self.layout = layout
        self.files: dict[Kind, tuple[IO[str], int]] = {}
        self.made = 0

    def write(self, kind: Kind, line: str) -> None:
        current = self.files.get(kind)
        if current is None or current[1] >= PER_FILE:
            if current is not None:
                current[0].close()
            current = (self._open(kind), 0)
        file, written = current
        file.write(line)
        self.files[kind] = (file, written + 1)

    def _open(self, kind: Kind) -> IO[str]:
        self.made += 1
        sub = self.directory / kind.directory
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{kind.value}.2026-11-26-{self.made:06d}.{self.layout}"
        file: IO[str] = (
            gzip.open(path, "wt", encoding="utf-8", compresslevel=6)  # noqa: SIM115
            if self.layout == "tsv.gz" else open(path, "w", encoding="utf-8"))  # noqa: SIM115
        if self.layout != "jsonl":
            file.write(join_values(DEFAULT_FIELDS[kind], ";" if self.layout == "csv" else "\t")
                       + "\n")
        return file

    def close(self) -> None:
        for file, _written in self.files.values():
            file.close()


def generate(root: Path, count: int) -> dict[str, Path]:
    """One directory per layout, each holding ``count`` records in per-kind rotated files."""
    outputs = {layout: RotatingFiles(root / layout.replace(".", "-"), layout)
               for layout in LAYOUTS}
    try:
        for kind, values in records(count):
            fields = DEFAULT_FIELDS[kind]
            row = [values[name] for name in fields]
            tsv_line = join_values(row) + "\n"
            outputs["tsv"].write(kind, tsv_line)
            outputs["tsv.gz"].write(kind, tsv_line)
            outputs["csv"].write(kind, join_values(row, ";") + "\n")
            outputs["jsonl"].write(kind, json.dumps(dict(zip(fields, row, strict=True))) + "\n")
    finally:
        for output in outputs.values():
            output.close()
    return {layout: output.directory for layout, output in outputs.items()}


def measure(directory: Path, summary: bool) -> dict[str, float]:
    """Read (and summarize) one directory in this process; returns the numbers."""
    from mta_logging.report import Reader
    from mta_logging.report.summary import Summary

    reader = Reader([directory])
    started, cpu_started = time.perf_counter(), time.process_time()
    count = sum(Summary().add_all(reader).totals) if summary else sum(1 for _ in reader)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"records": count, "seconds": seconds, "cpu": cpu, "peak_rss_mb": peak_kib / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path,
                        help="generate into (and keep) this directory; reuse what it holds")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--summary", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.summary)))
        return 0
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-reader-"))
    try:
        directories = {layout: root / layout.replace(".", "-") for layout in LAYOUTS}
        if args.keep is not None and all(d.is_dir() for d in directories.values()):
            print(f"reading the records generated before under {root}", file=sys.stderr)
        else:
            started = time.perf_counter()
            directories = generate(root, args.records)
            print(f"generated {args.records:,} records per layout in "
                  f"{time.perf_counter() - started:.1f} s under {root}", file=sys.stderr)
        runs = [(layout, directory, False) for layout, directory in directories.items()]
        runs.append(("report (tsv)", directories["tsv"], True))
        # CPU seconds too: on a shared machine they say more than the wall clock
        print(f"{'input':<14} {'records':>10} {'seconds':>8} {'records/s':>10} "
              f"{'CPU s':>7} {'rec/CPU s':>10} {'peak RSS':>9}")
        for name, directory, summary in runs:
            command = [sys.executable, __file__, "--measure", str(directory)]
            if summary:
                command.append("--summary")
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout)
            print(f"{name:<14} {result['records']:>10,} {result['seconds']:>8.2f} "
                  f"{result['records'] / result['seconds']:>10,.0f} {result['cpu']:>7.2f} "
                  f"{result['records'] / result['cpu']:>10,.0f} "
                  f"{result['peak_rss_mb']:>6.0f} MB", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
