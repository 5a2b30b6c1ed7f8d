"""``mta-logging export --parquet OUT PATH...``: accounting records as Parquet, for analysts.

Built on the :class:`~mta_logging.report.reader.Reader`, so the numbers agree with ``report``
and ``grep`` by construction: values are unescaped text, times are typed timestamps, numbers
are numbers, and every row has the columns ``kind``, ``domain`` and ``reason`` (for deferrals
and bounces: the normalised dsnMsg that ``report`` counts by), plus ``file`` and ``line``
saying where it was read. Large input is written by one worker process per core.

OUT is a directory holding one Parquet file per accounting file (see :func:`part_name`) and
``_exported.json``, which says what was exported from where. Exporting again is incremental:
a file already exported with the same size and modification time is left alone; a file that
grew (an active one), or was moved and compressed into the archive, is exported again in place
of its earlier copy (same part name), so no record is there twice. A part whose file has gone
(pruned from the archive) is kept. A file without a complete record yet is left for later.
Parts are written under a hidden temporary name and renamed when complete, so
``OUT/*.parquet`` only ever matches whole files.

Time columns are ``timestamp[s]`` on the files' own clock, or ``timestamp[s, UTC]`` when the
file's times carry a UTC offset. Files with different fields give parts with different
columns: read them with ``union_by_name`` (DuckDB) or a unified schema (pyarrow).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mta_logging.address import domain_of
from mta_logging.errors import ConfigError
from mta_logging.fsutil import replace_file
from mta_logging.outcome import Kind
from mta_logging.report import parallel
from mta_logging.report.options import add_input_arguments, finish, reader_from_args
from mta_logging.report.reader import (
    Reader,
    ReadStats,
    Record,
    Schema,
    Seen,
    base_name,
    is_pending,
    open_text,
    shown_name,
)
from mta_logging.report.summary import normalize_reason
from mta_logging.report.text import visible

if TYPE_CHECKING:
    import pyarrow

MANIFEST = "_exported.json"
MANIFEST_VERSION = 1
BATCH_ROWS = 65_536
TIME_FIELDS = ("timeLogged", "timeQueued")
INTEGER_FIELDS = frozenset({"dlvSize"})
FLOAT_FIELDS = frozenset({"delay"})
DERIVED = ("kind", "domain", "reason", "file", "line")
_REASON_KINDS = frozenset({Kind.DEFERRED, Kind.BOUNCE})  # the kinds report counts reasons of
_OFFSET = re.compile(r"(?:[+-]\d\d:?\d\d|Z)\s*\Z")
_INSTALL = "pip install 'mta-logging[analytics]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parquet", required=True, metavar="OUT",
                        help="directory of Parquet files to create or bring up to date")
    add_input_arguments(parser)
    parser.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="worker processes (default: one per core for large input)")


def run(args: argparse.Namespace) -> int:
    if args.jobs < 0:
        raise ConfigError("--jobs", args.jobs, "expected a number of processes, 0 for one per "
                          "core")
    reader, warnings = reader_from_args(args, "export")
    try:
        result = export_parquet(reader, Path(args.parquet),
                                jobs=args.jobs or parallel.default_jobs(reader))
    finally:
        finish(reader, warnings)
    print(f"mta-logging export: {result.exported} files exported ({result.records:,} records), "
          f"{result.unchanged} unchanged, to {args.parquet}", file=sys.stderr)
    return 0


def import_pyarrow() -> Any:
    """pyarrow, or a ConfigError saying how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 (the submodule the writer needs)
    except ImportError:
        raise ConfigError("--parquet", "pyarrow", f"is not installed; {_INSTALL}") from None
    return pyarrow


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What one export did: files written, records in them, files left as they were."""

    exported: int
    records: int
    unchanged: int
    parts: tuple[Path, ...]  # every part the manifest lists, after this run


def export_parquet(reader: Reader, out: Path, jobs: int = 1) -> ExportResult:
    """Bring the Parquet export in ``out`` up to date with the reader's files, written by
    ``jobs`` worker processes (1: by this one).

    The reader's filters apply; a change of filters, time format or placeholder since the
    last run exports every file again. ``reader.stats`` counts what was read this time.
    """
    pa = import_pyarrow()
    if out.exists() and not out.is_dir():
        raise ConfigError("--parquet", str(out), "expected a directory (it is a file)")
    out.mkdir(parents=True, exist_ok=True)
    settings = {"version": MANIFEST_VERSION, "time_format": reader.time_format,
                "placeholder": reader.placeholder, "filters": repr(reader.filters)}
    manifest = _load_manifest(out)
    entries: dict[str, dict[str, Any]] = (
        manifest.get("files", {}) if manifest.get("settings") == settings else {})
    unchanged = 0
    todo: list[tuple[int, tuple[str, str]]] = []  # (size, (file, part name))
    sources: dict[str, dict[str, Any]] = {}
    seen: set[tuple[int, int]] = set()
    for path in reader.files():
        try:
            info = path.stat()
        except OSError:
            continue  # gone (moved into the archive, where it is found too)
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        if path.name.startswith(".") and not is_pending(path.name):
            continue  # a spare not yet named: exported under its name next time
        name = part_name(path)
        if name is None:
            continue
        entry = entries.get(name)
        if (entry is not None and entry["source"] == str(path)
                and entry["size"] == info.st_size and entry["mtime_ns"] == info.st_mtime_ns):
            unchanged += 1
            continue
        todo.append((info.st_size, (str(path), name)))
        sources[name] = {"source": str(path), "size": info.st_size,
                         "mtime_ns": info.st_mtime_ns}
    stats = ReadStats()
    counts: dict[str, int] = {}
    if jobs > 1 and len(todo) > 1:
        settings_for_workers = parallel.settings_of(reader)
        with parallel.pool(min(jobs, len(todo))) as workers:
            futures = [workers.submit(_export_share, settings_for_workers, group, out)
                       for group in parallel.balanced(todo, jobs)]
            for future in futures:
                share_counts, share_stats, collected = future.result()
                counts.update(share_counts)
                stats.add(share_stats)
                for issue in collected.issues:
                    reader.on_issue(issue)
    else:
        counts, stats = _write_parts(pa, reader, [file for _size, file in todo], out)
    for name, count in counts.items():
        entries[name] = {**sources[name], "records": count}
    _save_manifest(out, {"settings": settings, "files": entries})
    reader.stats = stats
    exported, records = len(counts), sum(counts.values())
    return ExportResult(exported, records, unchanged,
                        tuple(out / name for name in entries))


def part_name(path: Path) -> str | None:
    """The name of a file's part: its first name (without ``.N`` and ``.gz``) and a hash of
    its first record line, the same before and after the file was archived and compressed.
    None while the file has no complete record line (nothing to export yet)."""
    try:
        with open_text(path) as stream:
            stream.readline()
            first = stream.readline()
    except (OSError, EOFError, zlib.error):
        return None
    if not first.endswith("\n"):
        return None
    digest = hashlib.sha256(first.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{base_name(shown_name(path.name))}.{digest}.parquet"


def _export_share(settings: tuple[Any, ...], files: list[tuple[str, str]], out: Path
                  ) -> tuple[dict[str, int], ReadStats, parallel.Collected]:
    """A worker's share: (file, part name) pairs; returns records per part, counters, issues."""
    collected = parallel.Collected()
    counts, stats = _write_parts(import_pyarrow(), parallel.worker_reader(settings, collected),
                                 files, out)
    return counts, stats, collected


def _write_parts(pa: Any, reader: Reader, files: list[tuple[str, str]], out: Path
                 ) -> tuple[dict[str, int], ReadStats]:
    """Write each (file, part name) pair's part into ``out``; returns records per part and
    what the reads counted."""
    stats = ReadStats()
    counts: dict[str, int] = {}
    for source, name in files:
        counts[name] = _write_part(pa, reader, Path(source), out / name)
        stats.add(reader.stats)
    return counts, stats


def _write_part(pa: Any, reader: Reader, path: Path, part: Path) -> int:
    """Write the records of one file as the Parquet file ``part``; returns how many."""
    import pyarrow.parquet as pq

    staged = part.with_name(f".{part.name}.tmp")
    writer: pq.ParquetWriter | None = None
    count = 0
    try:
        # one file per part: a file that moved meanwhile is exported at its new place next time
        for batch in _batches(pa, reader.read([path], Seen(follow=False))):
            if writer is None:
                writer = pq.ParquetWriter(staged, batch.schema, compression="zstd")
            writer.write_batch(batch)
            count += batch.num_rows
        if writer is None:  # no records: an empty part marks the file as exported
            writer = pq.ParquetWriter(staged, _schema(pa, (), False), compression="zstd")
        writer.close()
        writer = None
        _fsync_file(staged)  # on disk before the manifest (fsync'd) lists it
        os.replace(staged, part)
    finally:
        if writer is not None:
            writer.close()
        staged.unlink(missing_ok=True)
    return count


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _batches(pa: Any, records: Iterator[Record]) -> Iterator[pyarrow.RecordBatch]:
    """Record batches of at most BATCH_ROWS rows, all with the columns of the first record."""
    names: tuple[str, ...] = ()
    schema: pyarrow.Schema | None = None
    rows: list[list[Any]] = []
    positions: dict[Schema, list[int | None]] = {}
    for record in records:
        if schema is None:
            names = tuple(name for name in record.names if name not in DERIVED)
            logged_text = record.get("timeLogged")
            schema = _schema(pa, names, logged_text is not None
                             and _OFFSET.search(logged_text) is not None)
        where = positions.get(record.schema)
        if where is None:
            where = positions[record.schema] = [record.schema.index.get(n) for n in names]
        rows.append(_row(record, names, where))
        if len(rows) >= BATCH_ROWS:
            yield _batch(pa, schema, rows)
            rows = []
    if schema is not None and rows:
        yield _batch(pa, schema, rows)


def _row(record: Record, names: tuple[str, ...], where: list[int | None]) -> list[Any]:
    values, schema = record.values, record.schema
    unknown, times = schema.unknown, schema.times
    row: list[Any] = []
    for name, position in zip(names, where, strict=True):
        value = None if position is None or values[position] in unknown else values[position]
        if name == "timeLogged":
            row.append(record.logged)
        elif name in TIME_FIELDS:
            row.append(times.seconds(value))
        elif name in FLOAT_FIELDS or name in INTEGER_FIELDS:
            row.append(_number(value, name in INTEGER_FIELDS))
        else:
            row.append(value)
    kind = record.kind
    message = record.get("dsnMsg") if kind in _REASON_KINDS else None
    row += [None if kind is None else kind.value, domain_of(record.get("rcpt")),
            normalize_reason(message) if message else None, record.path, record.line]
    return row


def _number(text: str | None, integer: bool) -> int | float | None:
    if text is None:
        return None
    try:
        return int(text) if integer else float(text)
    except ValueError:
        return None


def _schema(pa: Any, names: tuple[str, ...], zoned: bool) -> pyarrow.Schema:
    """The columns of a part: the file's fields, typed, then ``DERIVED``."""
    stamp = pa.timestamp("s", tz="UTC" if zoned else None)
    columns = []
    for name in names:
        if name in TIME_FIELDS:
            kind = stamp
        elif name in INTEGER_FIELDS:
            kind = pa.int64()
        elif name in FLOAT_FIELDS:
            kind = pa.float64()
        else:
            kind = pa.string()
        columns.append(pa.field(name, kind))
    columns += [pa.field(name, pa.int64() if name == "line" else pa.string())
                for name in DERIVED]
    return pa.schema(columns)


def _batch(pa: Any, schema: pyarrow.Schema, rows: list[list[Any]]) -> pyarrow.RecordBatch:
    columns = zip(*rows, strict=True)
    return pa.RecordBatch.from_arrays(
        [_array(pa, list(column), field.type) for column, field in zip(columns, schema,
                                                                        strict=True)],
        schema=schema)


def _array(pa: Any, column: list[Any], kind: pyarrow.DataType) -> pyarrow.Array:
    try:
        return pa.array(column, type=kind)
    except UnicodeEncodeError:  # bytes that were not UTF-8: Parquet holds UTF-8 only
        return pa.array([None if value is None else visible(value) for value in column],
                        type=kind)


def _load_manifest(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError("--parquet", str(out / MANIFEST),
                          f"cannot be read ({exc}); remove it to export everything again"
                          ) from None
    return data if isinstance(data, dict) else {}


def _save_manifest(out: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
    replace_file(out / MANIFEST, out / f".{MANIFEST}.tmp",
                 text.encode("utf-8", errors="surrogateescape"))
