"""``mta-logging grep PATH...``: print the accounting records that match the filters.

Output is an accounting file (a header, then one escaped line per record, the way the writer
writes them, so the output is valid input again), or JSON lines with ``--json``. Like grep,
the exit status is 0 when something matched, 1 when nothing did, 2 on error. With a filter
the reader can search for as bytes (``--rcpt``, ``--rcpt-like``), large input is read by
worker processes, each a run of the files in order, their output printed in order.
``--sort time`` (the default for the history of one job or one recipient: one ``--job-id`` or
one ``--rcpt``) merges the kinds in time order instead; ``--sort file`` prints file by file.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from mta_logging.errors import ConfigError
from mta_logging.fields import header_name, parse_fields
from mta_logging.formatters import check_separator, join_values
from mta_logging.report import parallel
from mta_logging.report.options import (
    Warnings,
    add_input_arguments,
    finish,
    reader_from_args,
    stdout_reader_may_leave,
)
from mta_logging.report.reader import Issue, Reader, ReadStats, Record, Seen
from mta_logging.report.text import visible


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    output = parser.add_argument_group("output (default: an accounting file with a header)")
    output.add_argument("--json", action="store_true",
                        help="JSON lines: one object per record, null for unknown values")
    output.add_argument("--fields", metavar="LIST",
                        help="fields to print, comma-separated (default: every field of the "
                             "input, catalogue order first)")
    output.add_argument("--separator", default="\t", metavar="SEP",
                        help="separator of the printed lines (default: tab)")
    output.add_argument("--no-header", action="store_true", help="leave out the header line")
    output.add_argument("--count", action="store_true",
                        help="print only the number of matching records")
    output.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="worker processes for --rcpt/--rcpt-like (default: one per core "
                             "for large input)")
    output.add_argument("--sort", choices=("time", "file"),
                        help="time: the kinds merged in timeLogged order (the default with one "
                             "--job-id or one --rcpt); file: file by file, as stored (the "
                             "default otherwise)")


def run(args: argparse.Namespace) -> int:
    if args.jobs < 0:
        raise ConfigError("--jobs", args.jobs, "expected a number of processes, 0 for one per "
                          "core")
    reader, warnings = reader_from_args(args, "grep")
    separator = check_separator(args.separator)
    fields = [] if args.count else output_fields(reader, args.fields, warnings)
    style = "count" if args.count else "json" if args.json else "separated"
    filters = reader.filters
    one_history = len(filters.job_ids) == 1 or len(filters.rcpts) == 1
    by_time = (args.sort or ("time" if one_history else "file")) == "time"
    # workers only for a byte-level search: few matches, so little output to send back
    jobs = args.jobs or (parallel.default_jobs(reader) if filters.needles() else 1)
    try:
        with stdout_reader_may_leave():
            if style == "separated" and not args.no_header:
                sys.stdout.write(join_values(fields, separator) + "\n")
            if by_time:
                count = write(reader.in_time_order(), style, fields, separator, sys.stdout)
            elif jobs > 1:
                count = _in_workers(reader, jobs, style, fields, separator, sys.stdout)
            else:
                count = write(reader, style, fields, separator, sys.stdout)
            if style == "count":
                print(count)
            sys.stdout.flush()
    finally:
        finish(reader, warnings)
    return 0 if reader.stats.matched else 1


def write(records: Iterable[Record], style: str, fields: Sequence[str], separator: str,
          out: TextIO) -> int:
    """Write records in ``style`` (``separated`` without header, ``json``, or nothing for
    ``count``); returns how many there were."""
    if style == "count":
        return sum(1 for _record in records)
    if style == "json":
        return write_json(records, fields, out)
    return write_separated(records, fields, separator, out, header=False)


def _in_workers(reader: Reader, jobs: int, style: str, fields: Sequence[str], separator: str,
                out: TextIO) -> int:
    runs = parallel.in_order(parallel.sized_files(reader), jobs)
    settings = parallel.settings_of(reader)
    stats = ReadStats()
    seen = Seen()
    count = 0
    with parallel.pool(len(runs)) as workers:
        futures = [workers.submit(_grep_run, settings, files, style, fields, separator)
                   for files in runs]
        for future in futures:
            text, run_count, run_stats, collected, run_seen = future.result()
            out.write(text)
            count += run_count
            stats.add(run_stats)
            seen.merge(run_seen)
            for issue in collected.issues:
                reader.on_issue(issue)
    count += write(reader.read_vanished(seen), style, fields, separator, out)  # moved meanwhile
    stats.add(reader.stats)
    reader.stats = stats
    return count


def _grep_run(settings: tuple[Any, ...], files: list[tuple[str, int | None]], style: str,
              fields: Sequence[str], separator: str
              ) -> tuple[str, int, ReadStats, parallel.Collected, Seen]:
    collected = parallel.Collected()
    reader = parallel.worker_reader(settings, collected)
    out = io.StringIO()
    seen = Seen(follow=False)
    count = write(reader.read(((Path(name), listed) for name, listed in files), seen), style,
                  fields, separator, out)
    return out.getvalue(), count, reader.stats, collected, seen


def value_of(record: Record, name: str) -> str | None:
    """A field of a record; ``type`` falls back to the kind its file name or directory gave."""
    value = record.get(name)
    if value is None and name == "type" and record.kind is not None:
        return record.kind.value
    return value


def output_fields(reader: Reader, chosen: str | None, warnings: Warnings | None = None,
                  ) -> list[str]:
    """The fields to print: ``chosen``, or every field of the input with ``type`` first.
    Each chosen field that no input file has is named in a warning (its values are empty);
    header fields are compared in any case and spelling, as the reader finds them."""
    names = reader.field_names()
    if chosen:
        fields = list(parse_fields(chosen, key="--fields"))
        if warnings is not None:
            headers = {header.lower() for header in map(header_name, names) if header}
            for name in fields:
                header = header_name(name)
                if name != "type" and name not in names and (
                        header is None or header.lower() not in headers):
                    warnings(Issue("--fields", 0, f"{name!r} is a field of no input file; its "
                                                  "values are empty"))
        return fields
    return names if "type" in names else ["type", *names]


def write_separated(records: Iterable[Record], fields: Sequence[str], separator: str,
                    out: TextIO, *, header: bool = True) -> int:
    """Write records as an accounting file with ``fields``; returns how many were written."""
    if header:
        out.write(join_values(fields, separator) + "\n")
    count = 0
    for record in records:
        out.write(join_values([value_of(record, name) for name in fields], separator) + "\n")
        count += 1
    return count


def write_json(records: Iterable[Record], fields: Sequence[str], out: TextIO) -> int:
    """Write records as JSON lines (every field of ``fields``, null when unknown).

    The output is valid UTF-8 that any JSON parser accepts: a byte of the input that was not
    UTF-8 is written as the text ``\\xNN``.
    """
    count = 0
    for record in records:
        values = {name: value_of(record, name) for name in fields}
        line = json.dumps({name: None if value is None else visible(value)
                           for name, value in values.items()}, ensure_ascii=False)
        out.write(line + "\n")
        count += 1
    return count
