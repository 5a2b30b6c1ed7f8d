"""``mta-logging sql "SELECT ..." PATH...``: SQL over accounting records, with DuckDB.

The records are the view ``records``: one row per record, with the columns of the Parquet
export (:mod:`mta_logging.report.export`): unescaped values, typed times and numbers, and
``kind``, ``domain``, ``reason``, ``file``, ``line``. A PATH that is a Parquet export (a
directory with ``_exported.json``) or a ``.parquet`` file is queried as it is; accounting
files and directories are exported first, into ``--cache DIR`` (kept and brought up to date
incrementally, so the next query only reads new files) or into a temporary directory. So the
numbers are the reader's: no quoting rules or escapes to know, domains and reasons already
normalised as ``report`` counts them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from mta_logging.errors import ConfigError
from mta_logging.report import parallel
from mta_logging.report.export import DERIVED, MANIFEST, export_parquet
from mta_logging.report.options import (
    add_input_arguments,
    finish,
    reader_from_args,
    stdout_reader_may_leave,
)
from mta_logging.report.render import table

VIEW = "records"
_INSTALL = "pip install 'mta-logging[analytics]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", metavar="SQL",
                        help=f"the query; the records are the view {VIEW!r}")
    add_input_arguments(parser)
    parser.add_argument("--cache", metavar="DIR",
                        help="keep the Parquet export of accounting files in DIR between runs")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="the result as CSV")
    output.add_argument("--json", action="store_true",
                        help="the result as JSON lines, one object per row")


def run(args: argparse.Namespace) -> int:
    duckdb = _import_duckdb()
    parquet = [Path(p) for p in args.paths if _is_parquet(Path(p))]
    accounting = [p for p in args.paths if not _is_parquet(Path(p))]
    with tempfile.TemporaryDirectory(prefix="mta-logging-sql-") as scratch:
        if accounting:
            args.paths = accounting
            reader, warnings = reader_from_args(args, "sql")
            try:
                export_parquet(reader, Path(args.cache or scratch),
                               jobs=parallel.default_jobs(reader))
            finally:
                finish(reader, warnings)
            parquet.append(Path(args.cache or scratch))
        connection = duckdb.connect()
        connection.execute(view_sql(parquet_files(parquet)))
        try:
            result = connection.execute(args.query)
        except duckdb.Error as exc:
            raise ConfigError("SQL", args.query, f"DuckDB says: {exc}") from None
        names = [column[0] for column in result.description or []]
        rows = result.fetchall()
    with stdout_reader_may_leave():
        write_result(names, rows, sys.stdout, "csv" if args.csv else "json" if args.json
                     else "table")
        sys.stdout.flush()
    return 0


def parquet_files(paths: Sequence[Path]) -> list[Path]:
    """The Parquet files of ``paths`` (files, and the parts in export directories)."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    return files


def view_sql(files: Sequence[Path]) -> str:
    """``CREATE VIEW records`` over ``files`` (columns by name), or an empty one."""
    if not files:
        columns = ", ".join(f"CAST(NULL AS {'BIGINT' if name == 'line' else 'VARCHAR'}) AS "
                            f"{name}" for name in DERIVED)
        return f"CREATE VIEW {VIEW} AS SELECT {columns} WHERE false"
    listed = ", ".join("'" + str(path).replace("'", "''") + "'" for path in files)
    return f"CREATE VIEW {VIEW} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)"


def write_result(names: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO,
                 style: str) -> None:
    """Rows as an aligned table, CSV (a header first) or JSON lines; NULL is empty/null."""
    if style == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False,
                                 default=str) + "\n")
    elif style == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(["" if value is None else value for value in row] for row in rows)
    else:
        numeric = [bool(rows) and all(isinstance(row[i], int | float) or row[i] is None
                                      for row in rows) for i in range(len(names))]
        cells = [["" if value is None else value for value in row] for row in rows]
        out.write("\n".join(table(names, cells, numeric)) + "\n")


def _is_parquet(path: Path) -> bool:
    return (path / MANIFEST).is_file() if path.is_dir() else path.suffix == ".parquet"


def _import_duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise ConfigError("sql", "duckdb", f"is not installed; {_INSTALL}") from None
    return duckdb
