"""``mta-logging report PATH...``: totals, rates, domains, reasons, delays, per vmta and hour."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

from mta_logging.errors import ConfigError, MtaLoggingError, without_password
from mta_logging.fields import parse_fields
from mta_logging.report import parallel, render
from mta_logging.report.options import (
    add_input_arguments,
    finish,
    reader_from_args,
    stdout_reader_may_leave,
)
from mta_logging.report.summary import BUCKETS, DEFAULT_BUCKET, Summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser, paths_required=False)
    database = parser.add_argument_group("from PostgreSQL instead of files (mta-logging ingest)")
    database.add_argument("--from", dest="from_dsn", metavar="URL",
                          help="compute the report in PostgreSQL, e.g. "
                               "postgresql://user@127.0.0.1/mail (no PATH, no filters)")
    database.add_argument("--table", default="accounting_records",
                          help="the records table (default: %(default)s)")
    output = parser.add_argument_group("output (default: readable tables)")
    formats = output.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="the report as one JSON object")
    formats.add_argument("--csv", action="store_true",
                         help="the report as CSV rows: section,key,detail,metric,value")
    formats.add_argument("--html", metavar="FILE",
                         help="write a self-contained HTML page with charts to FILE")
    output.add_argument("--top", type=int, default=10, metavar="N",
                        help="rows per ranked table: domains, reasons, vmtas... (default: 10)")
    output.add_argument("--by", action="append", default=[], metavar="FIELD",
                        help="add a table of records per value of FIELD (any field, e.g. "
                             "jobId or custom_X-Campaign; repeat for more)")
    output.add_argument("--bucket", choices=list(BUCKETS), default=DEFAULT_BUCKET,
                        help="width of the time series' buckets (default: %(default)s)")
    output.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="worker processes that read the files (default: one per core "
                             "for large input)")


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ConfigError("--top", args.top, "expected a number of rows, at least 1")
    if args.html:
        _check_writable(args.html)
    if args.from_dsn is not None:
        report = _database_report(args)
    elif not args.paths:
        raise MtaLoggingError("no PATH given: name the accounting files or directories to "
                              "report on, or --from URL for the PostgreSQL table")
    else:
        if args.jobs < 0:
            raise ConfigError("--jobs", args.jobs, "expected a number of processes, 0 for one per "
                              "core")
        reader, warnings = reader_from_args(args, "report")
        by = list(parse_fields(",".join(args.by), key="--by")) if args.by else []
        try:
            jobs = args.jobs or parallel.default_jobs(reader)
            if jobs > 1:
                summary = parallel.summarize(reader, jobs, by=by, bucket=args.bucket)
            else:
                summary = Summary(by=by, bucket=args.bucket).add_all(reader.rows())
        finally:
            finish(reader, warnings)
        report = summary.report(args.top, reader.stats)
        for warning in report.get("warnings", []):
            print(f"mta-logging report: warning: {warning}", file=sys.stderr)
    if args.html:
        from mta_logging.report.html import to_html

        try:
            Path(args.html).write_text(to_html(report), encoding="utf-8")
        except OSError as exc:
            raise ConfigError("--html", args.html, f"cannot write that file ({exc.strerror})"
                              ) from None
        print(f"mta-logging report: wrote {args.html}", file=sys.stderr)
    else:
        text = (render.to_json(report) if args.json else render.to_csv(report) if args.csv
                else render.to_table(report))
        if isinstance(sys.stdout, io.TextIOWrapper):  # an ASCII terminal: \u escapes, no crash
            sys.stdout.reconfigure(errors="backslashreplace")
        with stdout_reader_may_leave():
            sys.stdout.write(text)
            sys.stdout.flush()
    return 0


def _check_writable(path: str) -> None:
    """Refuse an output file that cannot be written before any input is read; nothing is left
    behind by the check."""
    target = Path(path)
    existed = target.exists()
    try:
        with target.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError("--html", path, f"cannot write that file ({exc.strerror})") from None
    if not existed:
        target.unlink()


def _database_report(args: argparse.Namespace) -> dict[str, Any]:
    given = [name for name in ("paths", "kind", "since", "until", "domain", "job_id", "vmta",
                               "dsn_status", "bounce_cat") if getattr(args, name)]
    if given:
        raise ConfigError("--from", without_password(args.from_dsn),
                          f"the report from PostgreSQL takes no {given[0].replace('_', '-')} "
                          "(it covers the whole table)")
    from mta_logging.report.database import summary_from_database

    return summary_from_database(args.from_dsn, args.table).report(args.top)
