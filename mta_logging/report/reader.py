"""Reading accounting files back, one :class:`Record` at a time.

Input is any mix of active files, archived files and ``.gz`` archives (detected by content, not
name), each read with the field list of its own header line. Separated-values files (any
one-character separator, detected from the header) are split with the writer's own
``split_line``, so escaping is undone exactly; JSON lines files (first character ``{``) carry
their field names in every record. Files written by the Haraka ``accounting_files`` plugin read
the same way: a trailing separator, CRLF line ends, `` - `` / ``undefined`` for unknown values
and its old field names (``dsnDiag``, ``dlvSourceIp``, ``dlvDestinationIp``, in a file without
the field of today's name) are understood. Header fields (``custom_<Name>``, also spelled
``header_<Name>``) are found in any case, under either spelling, as the writer looks headers up.
JSON values are unescaped as separated values are (``\\xNN`` back to the byte it stands for).

Everything streams: memory does not grow with the number of lines read. Input that cannot be
read (a line with the wrong number of fields, a truncated ``.gz``, a file with no header) is
skipped and reported as an :class:`Issue` naming the file and line; with ``strict=True`` it
raises :class:`~mta_logging.errors.FormatError` instead.
"""

from __future__ import annotations

import gzip
import heapq
import io
import json
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from mta_logging.address import domain_of
from mta_logging.errors import FormatError
from mta_logging.fields import DEFAULT_TIME_FORMAT, FIELD_NAMES, header_name
from mta_logging.formatters import header_fields, split_line, unescape
from mta_logging.outcome import KIND_NAMES, Kind
from mta_logging.report.filters import Filters
from mta_logging.report.times import TimeParser, wall_time

log = logging.getLogger("mta_logging.report")

# Field names of the Haraka plugin that this project renamed.
LEGACY_FIELD_NAMES = {"dsnDiag": "dsnMsg", "dlvSourceIp": "srcIp", "dlvDestinationIp": "destIp"}
# What the Haraka plugin wrote for a value it did not know (compared after stripping spaces).
LEGACY_UNKNOWN = frozenset({"", "-", "undefined", "null"})

_KNOWN_NAMES = frozenset(FIELD_NAMES) | frozenset(LEGACY_FIELD_NAMES)
_FIELD_NAME = re.compile(r"[A-Za-z_][\w.-]*\Z")
_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY = 8192  # lines between two progress callbacks
_SCHEMA_CACHE_SIZE = 64


class Schema:
    """The field names of one file (or of one JSON key set), shared by its records."""

    __slots__ = ("names", "index", "headers", "unknown", "times")

    def __init__(self, names: Sequence[str], unknown: frozenset[str | None],
                 times: TimeParser) -> None:
        self.names = tuple(names)
        self.index = {name: position for position, name in enumerate(self.names)}
        # header fields by their header's name in lower case (the first of a name)
        self.headers: dict[str, int] = {}
        for position, name in enumerate(self.names):
            header = header_name(name)
            if header is not None:
                self.headers.setdefault(header.lower(), position)
        self.unknown = unknown  # values that mean "not known": None, "", the placeholder
        self.times = times

    def position(self, name: str) -> int | None:
        """Where field ``name`` is in this file's records; a header field in any case and
        spelling (``custom_X-Id`` finds ``header_x-id``); None when the file has none."""
        position = self.index.get(name)
        if position is None:
            header = header_name(name)
            if header is not None:
                return self.headers.get(header.lower())
        return position


@dataclass(frozen=True, slots=True)
class Record:
    """One line of an accounting file, read back.

    ``get(name)`` / ``fields`` give the values of the file's fields with the writer's escaping
    undone; None means unknown (or not a field of this file). ``kind`` comes from the ``type``
    field, or when the file has none, from the file name (``d.``/``df.``/``t.``/``b.``) or its
    directory. Times are the file's wall-clock times (naive ``datetime``), None when unknown.
    ``path`` and ``line`` say where the record was read.
    """

    kind: Kind | None
    logged: int | None  # timeLogged as wall_seconds: what filters and summaries compare
    path: str
    line: int
    values: Sequence[str | None]
    schema: Schema = field(repr=False, compare=False)

    def get(self, name: str) -> str | None:
        """The value of field ``name``; None when unknown or not in this file."""
        index = self.schema.position(name)
        if index is None:
            return None
        value = self.values[index]
        return None if value in self.schema.unknown else value

    @property
    def names(self) -> tuple[str, ...]:
        """The field names of the record's file, in order."""
        return self.schema.names

    @property
    def fields(self) -> dict[str, str | None]:
        """Field name → value (None = unknown), in the file's order."""
        unknown = self.schema.unknown
        return {name: None if value in unknown else value
                for name, value in zip(self.schema.names, self.values, strict=True)}

    @property
    def time_logged(self) -> datetime | None:
        return None if self.logged is None else wall_time(self.logged)

    @property
    def time_queued(self) -> datetime | None:
        return self.schema.times(self.get("timeQueued"))

    @property
    def rcpt(self) -> str | None:
        return self.get("rcpt")

    @property
    def domain(self) -> str | None:
        """The recipient's domain, lower case, without angle brackets or a trailing dot."""
        return domain_of(self.get("rcpt"))

    @property
    def job_id(self) -> str | None:
        return self.get("jobId")

    @property
    def vmta(self) -> str | None:
        return self.get("vmta")

    @property
    def src_ip(self) -> str | None:
        return self.get("srcIp")

    @property
    def dsn_status(self) -> str | None:
        return self.get("dsnStatus")

    @property
    def dsn_msg(self) -> str | None:
        return self.get("dsnMsg")

    @property
    def bounce_cat(self) -> str | None:
        return self.get("bounceCat")

    @property
    def queue_seconds(self) -> int | None:
        """timeLogged − timeQueued in whole seconds; None unless both are known."""
        if self.logged is None:
            return None
        queued = self.schema.times.seconds(self.get("timeQueued"))
        return None if queued is None else self.logged - queued


@dataclass(frozen=True, slots=True)
class Issue:
    """Input that was skipped (or, for a bad time, read as unknown): where and why."""

    path: str
    line: int  # 0: the file as a whole
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass(slots=True)
class ReadStats:
    """Counters of one pass over the input (updated while records stream)."""

    files: int = 0
    lines: int = 0
    records: int = 0
    matched: int = 0
    skipped_lines: int = 0
    skipped_files: int = 0  # no header
    damaged_files: int = 0  # read up to a damage (a cut-short or corrupt .gz, a read error)
    issues: int = 0
    bytes_done: int = 0


@dataclass(frozen=True, slots=True)
class Layout:
    """How one file is written: separator (None for JSON lines), fields, Haraka style."""

    separator: str | None
    fields: tuple[str, ...]
    legacy: bool = False


def detect_layout(first_line: str) -> Layout | None:
    """The layout of a file from its first line; None when that line is not a header.

    The separator is the first character that is not part of a field name and splits the line
    into plausible field names (identifiers, at least one of them a known field).
    """
    line = first_line.lstrip("\ufeff").rstrip("\r\n")
    if line.startswith("{"):
        return Layout(None, ())
    tried: set[str] = set()
    for char in line:
        if char.isalnum() or char == "_" or char in tried:
            continue
        tried.add(char)
        names = header_fields(line, char)
        if _plausible_header(names):
            return Layout(char, _modern_names(names), legacy=line.endswith(char))
    names = [line.strip()]
    if _plausible_header(names):  # a file with a single field
        return Layout("\t", _modern_names(names))
    return None


def _plausible_header(names: list[str]) -> bool:
    stripped = [name.strip() for name in names]
    return (
        bool(stripped)
        and all(_FIELD_NAME.match(name) for name in stripped)
        and any(name in _KNOWN_NAMES or header_name(name) is not None for name in stripped)
    )


def _modern_names(names: list[str]) -> tuple[str, ...]:
    """The names, the Haraka plugin's old ones renamed unless the file has the new name too
    (``dsnDiag`` is also a field of its own now, beside ``dsnMsg``)."""
    stripped = [name.strip() for name in names]
    return tuple(name if LEGACY_FIELD_NAMES.get(name, name) in stripped
                 else LEGACY_FIELD_NAMES[name] for name in stripped)


def find_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """The files to read: each file named, and every file under each directory named.

    Directories are searched recursively, subdirectories (archives: the older files) before
    the files beside them, files in the order they were written (by name, a collision suffix
    ``.N`` after the name without it). Hidden files and directories (leading ``.``:
    temporaries such as pending compressions) are left out.
    """
    for item in paths:
        path = Path(item)
        if path.is_dir():
            yield from _walk(path)
        else:
            yield path


def _walk(directory: Path) -> Iterator[Path]:
    try:
        with os.scandir(directory) as scan:
            entries = [entry for entry in scan if not entry.name.startswith(".")]
    except OSError as exc:
        log.warning("%s: cannot list the directory (%s)", directory, exc.strerror or exc)
        return
    entries.sort(key=lambda entry: _written_order(entry.name))
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))
    for entry in entries:
        if entry.is_file():
            yield Path(entry.path)


_COLLISION_SUFFIX = re.compile(r"(.+?)(?:\.(\d+))?(\.[^.]+(?:\.gz)?)\Z")


def _written_order(name: str) -> tuple[str, int, str]:
    """``d.T.tsv`` before ``d.T.1.tsv`` before ``d.T.2.tsv.gz`` (a taken name got ``.N``)."""
    match = _COLLISION_SUFFIX.match(name)
    if match is None:
        return (name, 0, "")
    return (match.group(1) + match.group(3).removesuffix(".gz"), int(match.group(2) or 0), name)


def kind_from_path(path: Path) -> Kind | None:
    """The kind a file holds by its name (``d.``, ``df.``, ``t.``, ``b.``) or directory."""
    kind = Kind.find(path.name.partition(".")[0])
    if kind is not None:
        return kind
    for parent in path.parents[:3]:
        kind = Kind.find(parent.name)
        if kind is not None:
            return kind
    return None


class Reader:
    """Streams the :class:`Record` objects of accounting files that match ``filters``.

    ``paths`` are files or directories (searched recursively). ``time_format`` is the strftime
    format of the time fields; ``placeholder`` the writer's placeholder for unknown values
    (besides the empty value). ``on_issue`` receives each :class:`Issue` (default: a warning on
    the ``mta_logging.report`` logger); with ``strict`` the first issue raises FormatError.
    ``on_progress`` is called now and then with the number of bytes read so far (compressed
    bytes for ``.gz``), for progress bars; ``stats`` counts what the last (or current) pass
    read. Iterating again reads the files again.
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        filters: Filters | None = None,
        time_format: str = DEFAULT_TIME_FORMAT,
        placeholder: str | None = None,
        strict: bool = False,
        on_issue: Callable[[Issue], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.filters = filters if filters is not None else Filters()
        self.time_format = time_format
        self.unknown: frozenset[str | None] = frozenset(
            {None, ""} if placeholder is None else {None, "", placeholder})
        self.strict = strict
        self.on_issue = on_issue if on_issue is not None else _log_issue
        self.on_progress = on_progress
        self.stats = ReadStats()
        self._times = TimeParser(time_format)

    def files(self) -> Iterator[Path]:
        """The files this reader reads, in order."""
        return find_files(self.paths)

    def total_bytes(self) -> int:
        """The size on disk of all input (what ``on_progress`` counts towards)."""
        total = 0
        for path in self.files():
            try:
                total += path.stat().st_size
            except OSError:
                continue
        return total

    def field_names(self) -> list[str]:
        """Every field name of the input, catalogue fields first (reads first lines only)."""
        seen: dict[str, None] = {}
        for path in self.files():
            try:
                with _open_text(path) as stream:
                    first = stream.readline()
            except (OSError, EOFError, zlib.error):
                continue
            layout = detect_layout(first)
            if layout is None:
                continue
            names = layout.fields
            if layout.separator is None:
                try:
                    data = json.loads(first)
                except ValueError:
                    continue
                names = tuple(data) if isinstance(data, dict) else ()
            seen.update(dict.fromkeys(names))
        ordered = [name for name in FIELD_NAMES if name in seen]
        return ordered + [name for name in seen if name not in FIELD_NAMES]

    def __iter__(self) -> Iterator[Record]:
        self.stats = ReadStats()
        return self._matching(self.files(), set())

    def in_time_order(self) -> Iterator[Record]:
        """The records of iterating, in timeLogged order (unknown times first).

        The files of one kind are read one after the other (they were written in time order),
        the kinds side by side and merged (``heapq.merge``): memory and open files do not grow
        with the input. Records of one time keep the order of their kinds' first files.
        """
        self.stats = ReadStats()
        by_kind: dict[Kind | None, list[Path]] = {}
        for path in self.files():
            by_kind.setdefault(kind_from_path(path), []).append(path)
        seen_inodes: set[tuple[int, int]] = set()
        return heapq.merge(*(self._matching(paths, seen_inodes) for paths in by_kind.values()),
                           key=_time_logged)

    def _matching(self, paths: Iterable[Path], seen_inodes: set[tuple[int, int]],
                  ) -> Iterator[Record]:
        matches = self.filters.matches if self.filters.active else None
        stats = self.stats
        for path in paths:
            for record in self._read_file(path, seen_inodes):
                if matches is None or matches(record):
                    stats.matched += 1
                    yield record

    def issue(self, path: Path | str, line: int, message: str) -> None:
        """Report input that cannot be read (raises FormatError when strict)."""
        found = Issue(str(path), line, message)
        self.stats.issues += 1
        if self.strict:
            raise FormatError(str(found))
        self.on_issue(found)

    def _read_file(self, path: Path, seen_inodes: set[tuple[int, int]]) -> Iterator[Record]:
        try:
            info = path.stat()
            raw = open(path, "rb")  # noqa: SIM115 (closed by the with below)
        except FileNotFoundError:
            if path in self.paths:
                self.issue(path, 0, "no such file")
            else:  # moved into the archive while we looked: read there
                log.debug("%s: gone before it was read", path)
            return
        except OSError as exc:
            self.issue(path, 0, f"cannot open: {exc.strerror or exc}")
            return
        # a file being archived is briefly under two names (hard link): read it once
        inode = (info.st_dev, info.st_ino)
        if inode in seen_inodes:
            raw.close()
            return
        seen_inodes.add(inode)
        self.stats.files += 1
        done_before = self.stats.bytes_done
        with raw, _text_stream(raw) as stream:
            yield from self._read_stream(path, stream, raw, done_before)
        self.stats.bytes_done = done_before + info.st_size
        if self.on_progress is not None:
            self.on_progress(self.stats.bytes_done)

    def _read_stream(self, path: Path, stream: IO[str], raw: IO[bytes],
                     done_before: int) -> Iterator[Record]:
        number = 1
        try:
            first = stream.readline()
            if not first:
                return  # an empty file: just created, nothing written yet
            layout = detect_layout(first)
            if layout is None:
                self.stats.skipped_files += 1
                self.issue(path, 1, "no header line (expected field names such as "
                           "'type<TAB>timeLogged<TAB>rcpt...' or a JSON object); file skipped")
                return
            file_kind = kind_from_path(path)
            name = str(path)
            times = self._times
            if layout.separator is None:
                lines: Iterable[tuple[int, str]] = _numbered(first, stream)
                parse = self._json_parser(name)
            else:
                lines = enumerate(stream, start=2)
                parse = self._separated_parser(name, layout)
            stats = self.stats
            on_progress = self.on_progress
            time_ok = True
            for number, line in lines:
                stats.lines += 1
                if number % _PROGRESS_EVERY == 0 and on_progress is not None:
                    on_progress(done_before + raw.tell())
                parsed = parse(number, line)
                if parsed is None:
                    continue
                schema, values = parsed
                stats.records += 1
                index = schema.index
                position = index.get("type")
                kind = (KIND_NAMES.get(values[position] or "") if position is not None
                        else None) or file_kind
                position = index.get("timeLogged")
                logged_text = values[position] if position is not None else None
                logged = times.seconds(logged_text)
                if logged is None and logged_text not in schema.unknown and time_ok:
                    time_ok = False  # once per file: a wrong --time-format hits every line
                    self.issue(path, number, f"timeLogged {logged_text!r} does not match the "
                               f"time format {self.time_format!r} (see --time-format); read as "
                               "unknown")
                yield Record(kind, logged, name, number, values, schema)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            self.stats.damaged_files += 1
            self.issue(path, number + 1, f"damaged compressed file ({exc}); the rest of the file "
                       "is skipped")
        except OSError as exc:
            self.stats.damaged_files += 1
            self.issue(path, number + 1, f"read error ({exc}); the rest of the file is skipped")

    def _separated_parser(self, name: str, layout: Layout) -> Parser:
        separator = layout.separator or "\t"
        count = len(layout.fields)
        legacy = layout.legacy
        schema = Schema(layout.fields, self.unknown, self._times)
        stats = self.stats

        def parse(number: int, line: str) -> tuple[Schema, list[str | None]] | None:
            values: list[str | None] = split_line(line, separator)  # type: ignore[assignment]
            if len(values) != count:
                if legacy and len(values) == count + 1 and values[-1] == "":
                    values.pop()
                elif len(values) == 1 and not (values[0] or "").strip():
                    stats.lines -= 1  # a blank line is not a record
                    return None
                else:
                    stats.skipped_lines += 1
                    self.issue(name, number, f"{len(values)} values where the header has "
                               f"{count} fields; line skipped")
                    return None
            if legacy:
                values = [None if value is None or value.strip() in LEGACY_UNKNOWN else value
                          for value in values]
            return schema, values

        return parse

    def _json_parser(self, name: str) -> Parser:
        stats = self.stats
        schemas: dict[tuple[str, ...], Schema] = {}

        def parse(number: int, line: str) -> tuple[Schema, list[str | None]] | None:
            if not line.strip():
                stats.lines -= 1
                return None
            try:
                data = json.loads(line)
            except ValueError as exc:
                data = exc
            if not isinstance(data, dict):
                stats.skipped_lines += 1
                reason = data if isinstance(data, ValueError) else "not a JSON object"
                self.issue(name, number, f"not a JSON record ({reason}); line skipped")
                return None
            names = tuple(data)
            schema = schemas.get(names)
            if schema is None:
                if len(schemas) >= _SCHEMA_CACHE_SIZE:
                    schemas.clear()
                schema = schemas[names] = Schema(names, self.unknown, self._times)
            return schema, [None if value is None else _json_text(value)
                            for value in data.values()]

        return parse


Parser = Callable[[int, str], "tuple[Schema, list[str | None]] | None"]


def _json_text(value: object) -> str:
    """A JSON value as the text a separated file holds: a string unescaped, a number as
    written."""
    return unescape(value) if isinstance(value, str) else json.dumps(value)


def _time_logged(record: Record) -> int:
    return -1 if record.logged is None else record.logged


def _numbered(first: str, rest: Iterable[str]) -> Iterator[tuple[int, str]]:
    yield 1, first
    yield from enumerate(rest, start=2)


def _text_stream(raw: IO[bytes]) -> io.TextIOWrapper:
    binary: IO[bytes] | gzip.GzipFile = raw
    peek = getattr(raw, "peek", None)
    head = peek(2)[:2] if peek is not None else b""
    if head == _GZIP_MAGIC:
        binary = gzip.GzipFile(fileobj=raw, mode="rb")
    # newline="\n": split on LF only and keep line ends (a Haraka CR stays with its line)
    return io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="\n")


def _open_text(path: Path) -> io.TextIOWrapper:
    return _text_stream(open(path, "rb"))  # noqa: SIM115 (the wrapper closes it)


def _log_issue(issue: Issue) -> None:
    log.warning("%s", issue)


def read_records(paths: Iterable[str | os.PathLike[str]], **options: Any) -> Iterator[Record]:
    """Shorthand for ``iter(Reader(paths, **options))``."""
    return iter(Reader(paths, **options))


__all__ = [
    "Issue",
    "Layout",
    "ReadStats",
    "Reader",
    "Record",
    "Schema",
    "detect_layout",
    "find_files",
    "kind_from_path",
    "read_records",
]
