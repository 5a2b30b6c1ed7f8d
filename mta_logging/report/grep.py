"""``mta-logging grep PATH...``: print the accounting records that match the filters.

Output is an accounting file (a header, then one escaped line per record, the way the writer
writes them, so the output is valid input again), or JSON lines with ``--json``. Like grep,
the exit status is 0 when something matched, 1 when nothing did, 2 on error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from mta_logging.fields import parse_fields
from mta_logging.formatters import check_separator, join_values
from mta_logging.report.options import (
    add_input_arguments,
    finish,
    reader_from_args,
    stdout_reader_may_leave,
)
from mta_logging.report.reader import Reader, Record
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


def run(args: argparse.Namespace) -> int:
    reader, warnings = reader_from_args(args, "grep")
    separator = check_separator(args.separator)
    fields = output_fields(reader, args.fields)
    try:
        with stdout_reader_may_leave():
            if args.count:
                print(sum(1 for _record in reader))
            elif args.json:
                write_json(reader, fields, sys.stdout)
            else:
                write_separated(reader, fields, separator, sys.stdout,
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


def output_fields(reader: Reader, chosen: str | None) -> list[str]:
    """The fields to print: ``chosen``, or every field of the input with ``type`` first."""
    if chosen:
        return list(parse_fields(chosen, key="--fields"))
    names = reader.field_names()
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
