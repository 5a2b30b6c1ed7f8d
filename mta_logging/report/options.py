"""Command-line options shared by ``mta-logging report`` and ``mta-logging grep``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from mta_logging.errors import ConfigError
from mta_logging.fields import DEFAULT_TIME_FORMAT
from mta_logging.report.filters import Filters
from mta_logging.report.reader import Issue, Reader
from mta_logging.stdout import stdout_reader_may_leave as stdout_reader_may_leave

MAX_WARNINGS = 20  # warnings printed one by one; the rest are only counted


def add_input_arguments(parser: argparse.ArgumentParser, paths_required: bool = True) -> None:
    parser.add_argument("paths", nargs="+" if paths_required else "*", metavar="PATH",
                        help="accounting files or directories (searched recursively, archives "
                             "and .gz included)")
    group = parser.add_argument_group("filters (repeat an option or separate values by commas)")
    group.add_argument("--kind", action="append", default=[], metavar="KIND",
                       help="d/delivered, df/deferred, b/bounce, r/received, "
                            "rb/remote_bounce, f/feedback")
    group.add_argument("--since", metavar="TIME",
                       help="timeLogged at or after TIME (2026-11-26 or '2026-11-26 06:00')")
    group.add_argument("--until", metavar="TIME", help="timeLogged before TIME")
    group.add_argument("--domain", action="append", default=[], metavar="DOMAIN",
                       help="recipient domain")
    group.add_argument("--rcpt", action="append", default=[], metavar="ADDR",
                       help="recipient address (exact; the domain part in any case)")
    group.add_argument("--rcpt-like", action="append", default=[], metavar="PATTERN",
                       help="recipient address like PATTERN, in any case: %% any run of "
                            "characters, _ one character ('%%@example.%%')")
    group.add_argument("--job-id", action="append", default=[], metavar="ID", help="jobId")
    group.add_argument("--vmta", action="append", default=[], metavar="NAME", help="vmta")
    group.add_argument("--dsn-status", action="append", default=[], metavar="PREFIX",
                       help="dsnStatus starting with PREFIX (5.1 matches 5.1.1)")
    group.add_argument("--bounce-cat", action="append", default=[], metavar="CATEGORY",
                       help="bounceCat")
    reading = parser.add_argument_group("reading")
    reading.add_argument("--time-format", default=DEFAULT_TIME_FORMAT, metavar="FORMAT",
                         help="strftime format of timeLogged/timeQueued "
                              "(default: %(default)s)")
    reading.add_argument("--placeholder", metavar="TEXT",
                         help="the writer's placeholder for unknown values (besides empty)")
    reading.add_argument("--strict", action="store_true",
                         help="stop with an error at the first malformed line or file")
    reading.add_argument("--no-progress", action="store_true",
                         help="no progress bar (shown on a terminal only, for large inputs)")


def filters_from_args(args: argparse.Namespace) -> Filters:
    return Filters.build(
        kinds=args.kind, since=args.since, until=args.until, domains=args.domain,
        job_ids=args.job_id, vmtas=args.vmta, dsn_status=args.dsn_status,
        bounce_cats=args.bounce_cat, rcpts=args.rcpt, rcpt_like=args.rcpt_like,
    )


class Warnings:
    """Prints the first warnings on stderr, counts the rest."""

    def __init__(self, command: str, stream: TextIO | None = None,
                 limit: int = MAX_WARNINGS) -> None:
        self.command = command
        self.stream = stream
        self.limit = limit
        self.count = 0

    def __call__(self, issue: Issue) -> None:
        self.count += 1
        if self.count <= self.limit:
            print(f"mta-logging {self.command}: warning: {issue}", file=self.stream or sys.stderr)

    def finish(self, total: int = 0) -> None:
        """Say how many warnings were not shown, of ``total`` (or of those received)."""
        total = max(total, self.count)
        if total > self.limit:
            print(f"mta-logging {self.command}: {total - self.limit} more warnings not "
                  "shown", file=self.stream or sys.stderr)


class Progress:
    """A one-line progress bar on a terminal: bytes read of the total, redrawn ≤ 10×/s."""

    WIDTH = 30
    MIN_BYTES = 4_000_000  # smaller input is read before a bar would be worth drawing

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.started = time.monotonic()
        self.drawn_at = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.drawn_at < 0.1 and done < self.total:
            return
        self.drawn_at = now
        share = min(done / self.total, 1.0)
        filled = int(share * self.WIDTH)
        rate = done / max(now - self.started, 1e-6) / 1e6
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:6.1%} "
                          f"{done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB {rate:,.1f} MB/s ")
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\r" + " " * (self.WIDTH + 50) + "\r")
        self.stream.flush()


def reader_from_args(args: argparse.Namespace, command: str) -> tuple[Reader, Warnings]:
    """A Reader for the parsed options (ConfigError for a path that does not exist)."""
    for path in args.paths:
        if not Path(path).exists():
            raise ConfigError("PATH", path, "no such file or directory")
    warnings = Warnings(command)
    reader = Reader(args.paths, filters=filters_from_args(args), time_format=args.time_format,
                    placeholder=args.placeholder, strict=args.strict, on_issue=warnings)
    if not args.no_progress and sys.stderr.isatty():
        total = reader.total_bytes()
        if total >= Progress.MIN_BYTES:
            reader.on_progress = Progress(total, sys.stderr)
    return reader, warnings


def finish(reader: Reader, warnings: Warnings) -> None:
    if isinstance(reader.on_progress, Progress):
        reader.on_progress.finish()
    warnings.finish(reader.stats.issues)
