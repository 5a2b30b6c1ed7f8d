"""``mta-logging suppression list|add|remove|import|export``: the suppression list by hand.

The list is named by ``--db PATH`` or by the relay's config (``--config RELAY_YAML``: its
``suppression.path``, else ``spool_dir/suppression.db``, and its expiry times). It may be used
while the relay runs. CSV (import and export) has a header row with the columns of
:data:`COLUMNS`; times are ISO 8601 (UTC when no offset is given), ``expires`` ``never`` or
empty for an entry that never expires. Exit status: 0 done, 1 an address to remove was not on
the list, 2 an error (a bad address, a bad CSV row, a file that cannot be read).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from mta_logging.errors import ConfigError
from mta_logging.relay.config import load_settings
from mta_logging.suppression import (
    DEFAULT_EXPIRY,
    NEVER,
    REASON_RULE,
    SOURCES,
    Entry,
    SuppressionError,
    SuppressionList,
    expires_at,
    expiry_text,
    normalize_address,
    time_text,
    valid_reason,
)

COLUMNS = ("address", "reason", "added", "expires", "source", "event_id")
MANUAL = "manual"
IMPORT = "import"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = argparse.ArgumentParser(add_help=False)
    named = where.add_mutually_exclusive_group(required=True)
    named.add_argument("--db", metavar="PATH", help="the suppression list's SQLite file")
    named.add_argument("--config", "-c", metavar="RELAY_YAML",
                       help="the relay's config: its suppression list and expiry times")
    commands = parser.add_subparsers(dest="suppression_command", metavar="SUBCOMMAND",
                                     required=True)
    listing = commands.add_parser("list", parents=[where], help="the suppressed addresses")
    listing.add_argument("--all", action="store_true", help="expired entries too")
    add = commands.add_parser("add", parents=[where], help="suppress addresses (source manual)")
    add.add_argument("addresses", metavar="ADDRESS", nargs="+")
    add.add_argument("--reason", default=MANUAL, help="the reason (default manual)")
    add.add_argument("--expires", metavar="TIME",
                     help="an ISO 8601 time, or never; default: the reason's expiry time")
    remove = commands.add_parser("remove", parents=[where], help="suppress addresses no more")
    remove.add_argument("addresses", metavar="ADDRESS", nargs="+")
    importing = commands.add_parser("import", parents=[where],
                                    help="add the entries of a CSV file (listed ones replaced)")
    importing.add_argument("file", metavar="CSV", help="the file, or - for standard input")
    exporting = commands.add_parser("export", parents=[where],
                                    help="every entry, expired ones too, as CSV")
    exporting.add_argument("file", metavar="CSV", nargs="?", default="-",
                           help="the file to write (default: standard output)")


def run(args: argparse.Namespace) -> int:
    path, expiry = _where(args)
    command = args.suppression_command
    if command == "import":  # the whole file is checked before the list is opened
        with _opened(args.file, "r") as source:
            entries = read_csv(source, expiry, time.time())
        with SuppressionList(path) as suppression:
            suppression.add(entries)
        print(f"imported {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} into {path}")
        return 0
    with SuppressionList(path) as suppression:
        if command == "list":
            _print_table(suppression.entries(include_expired=args.all))
        elif command == "add":
            return _add(suppression, args, expiry)
        elif command == "remove":
            return _remove(suppression, args.addresses)
        else:
            with _opened(args.file, "w") as out:
                write_csv(out, suppression.entries(include_expired=True))
    return 0


def _where(args: argparse.Namespace) -> tuple[Path, Mapping[str, float | None]]:
    """The list's file and the expiry times to add entries with. ConfigError for a relay
    config without the list: the relay would never read what is written."""
    if args.db is not None:
        return Path(args.db), DEFAULT_EXPIRY
    settings = load_settings(args.config)
    if not settings.suppression.enabled:
        raise ConfigError("suppression", None, "this relay keeps no suppression list, so it "
                          "would never read one: turn it on with 'suppression: true' (then "
                          "restart the relay), or name a list with --db", source=args.config)
    return settings.suppression.file(settings.spool_dir), settings.suppression.expiry


def _add(suppression: SuppressionList, args: argparse.Namespace,
         expiry: Mapping[str, float | None]) -> int:
    if not valid_reason(args.reason):
        raise SuppressionError(f"--reason {args.reason!r} is not valid; {REASON_RULE}")
    now = int(time.time())
    expires = (expires_at(args.reason, now, expiry) if args.expires is None
               else parse_expires("--expires", args.expires))
    entries = [Entry(normalize_address(address), args.reason, now, expires, MANUAL)
               for address in args.addresses]
    suppression.add(entries)
    for entry in entries:
        print(f"added {entry.address} (reason {entry.reason}, expires {expiry_text(entry)})")
    return 0


def _remove(suppression: SuppressionList, addresses: list[str]) -> int:
    missing = 0
    for address in addresses:
        if suppression.remove(address):
            print(f"removed {normalize_address(address)}")
        else:
            print(f"mta-logging suppression: {address} is not on the list", file=sys.stderr)
            missing += 1
    return 1 if missing else 0


def _print_table(entries: list[Entry]) -> None:
    rows = [COLUMNS] + [_fields(entry) for entry in entries]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS) - 1)]
    for row in rows:
        print("  ".join([*(text.ljust(width) for text, width in zip(row, widths, strict=False)),
                         row[-1]]).rstrip())


def _fields(entry: Entry) -> tuple[str, ...]:
    return (entry.address, entry.reason, time_text(entry.added), expiry_text(entry),
            entry.source, entry.event_id or "")


def write_csv(out: IO[str], entries: list[Entry]) -> None:
    """``entries`` as CSV with a header row (:data:`COLUMNS`)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_fields(entry) for entry in entries)


def read_csv(source: IO[str], expiry: Mapping[str, float | None], now: float) -> list[Entry]:
    """The entries of a CSV file with a header row that names ``address`` and any other of
    :data:`COLUMNS`. A column left out, or a value left empty: reason ``manual``, added
    ``now``, source ``import``, no event id, and the reason's expiry time when there is no
    ``expires`` column (an empty ``expires`` is never). SuppressionError names the line."""
    reader = csv.DictReader(source)
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in COLUMNS]
    if unknown or "address" not in header:
        raise SuppressionError(f"line 1: the header row {','.join(header)!r} is not valid; "
                               f"expected the columns {','.join(COLUMNS)} (address required)")
    entries = []
    for row in reader:
        try:
            entries.append(_entry(row, expiry, now, "expires" in header))
        except SuppressionError as exc:
            raise SuppressionError(f"line {reader.line_num}: {exc}") from None
    return entries


def _entry(row: Mapping[str, Any], expiry: Mapping[str, float | None], now: float,
           has_expires: bool) -> Entry:
    if None in row:
        raise SuppressionError(f"more fields than the {len(row) - 1} columns of the header")
    address = normalize_address(row.get("address") or "")
    reason = row.get("reason") or MANUAL
    if not valid_reason(reason):
        raise SuppressionError(f"reason {reason!r} is not valid; {REASON_RULE}")
    added_text = row.get("added")
    added = parse_time("added", added_text) if added_text else int(now)
    expires_text = row.get("expires") or ""
    if has_expires:
        expires = parse_expires("expires", expires_text) if expires_text else None
    else:
        expires = expires_at(reason, added, expiry)
    source = row.get("source") or IMPORT
    if source not in SOURCES:
        raise SuppressionError(f"source {source!r} is not valid; expected one of "
                               f"{', '.join(SOURCES)}")
    return Entry(address, reason, added, expires, source, row.get("event_id") or None)


def parse_expires(name: str, text: str) -> int | None:
    """:func:`parse_time`, or None for ``never``."""
    if text.strip().lower() == NEVER:
        return None
    return parse_time(name, text, " or never")


def parse_time(name: str, text: str, alternative: str = "") -> int:
    """POSIX seconds of an ISO 8601 time (UTC when it has no offset); ``alternative`` names
    what else the error message allows."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SuppressionError(f"{name} {text!r} is not valid; expected an ISO 8601 time such "
                               f"as 2026-03-01T12:00:00Z{alternative}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


@contextlib.contextmanager
def _opened(name: str, mode: str) -> Iterator[IO[str]]:
    """The file ``name`` (``-``: standard input or output) as text for the csv module."""
    if name == "-":
        yield sys.stdin if mode == "r" else sys.stdout
        return
    try:
        file = open(name, mode, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SuppressionError(f"{name}: cannot open it ({exc.strerror})") from None
    with file:
        yield file
