"""``mta-logging grep PATH...``: print the accounting records that match the filters.

Output is an accounting file (a header, then one escaped line per record, the way the writer
writes them, so the output is valid input again), or JSON lines with ``--json``. Like grep,
the exit status is 0 when something matched, 1 when nothing did, 2 on error. ``--sort time``
(the default for the history of one job, ``--job-id`` with one id) merges the kinds in time
order; ``--sort file`` prints the records file by file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from mta_logging.fields import header_name, parse_fields
from mta_logging.formatters import check_separator, join_values
from mta_logging.report.options import (
    Warnings,
    add_input_arguments,
    finish,
    reader_from_args,
    stdout_reader_may_leave,
)
from mta_logging.report.reader import Issue, Reader, Record

_SURROGATE = re.compile("[\ud800-\udfff]")


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
    output.add_argument("--sort", choices=("time", "file"),
                        help="time: the kinds merged in timeLogged order (the default with one "
                             "--job-id); file: file by file, as stored (the default otherwise)")


def run(args: argparse.Namespace) -> int:
    reader, warnings = reader_from_args(args, "grep")
    separator = check_separator(args.separator)
    fields = output_fields(reader, args.fields, warnings)
    sort = args.sort or ("time" if len(reader.filters.job_ids) == 1 else "file")
    records = reader.in_time_order() if sort == "time" else iter(reader)
    try:
        with stdout_reader_may_leave():
            if args.count:
                print(sum(1 for _record in records))
            elif args.json:
                write_json(records, fields, sys.stdout)
            else:
                write_separated(records, fields, separator, sys.stdout,
                                header=not args.no_header)
            sys.stdout.flush()
    finally:
        finish(reader, warnings)
    return 0 if reader.stats.matched else 1


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
    """Write records as JSON lines (every field of ``fields``, null when unknown)."""
    count = 0
    for record in records:
        line = json.dumps({name: value_of(record, name) for name in fields}, ensure_ascii=False)
        if _SURROGATE.search(line):  # bytes that were not UTF-8: keep them, as \udcXX escapes
            line = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", line)
        out.write(line + "\n")
        count += 1
    return count
