"""Reading accounting files back, one :class:`Record` at a time.

Input is any mix of active files, archived files and ``.gz`` archives (detected by content, not
name), each read with the field list of its own header line. Separated-values files (any
one-character separator, detected from the header) are split with the writer's own
``split_line``, so escaping is undone exactly; JSON lines files (first character ``{``) carry
their field names in every record. Files written by the Haraka ``accounting_files`` plugin read
the same way: a trailing separator, CRLF line ends, `` - `` / ``undefined`` for unknown values
and its old field names (``dsnDiag``, ``dlvSourceIp``, ``dlvDestinationIp``, in a file of only
the plugin's fields, without the field of today's name) are understood. Header fields
(``custom_<Name>``, also spelled ``header_<Name>``) are found in any case, under either
spelling, as the writer looks headers up.
JSON values are unescaped as separated values are (``\\xNN`` back to the byte it stands for).

Everything streams: memory does not grow with the number of lines read. Input that cannot be
read (a line with the wrong number of fields, a truncated ``.gz``, a file with no header) is
skipped and reported as an :class:`Issue` naming the file and line; with ``strict=True`` it
raises :class:`~mta_logging.errors.FormatError` instead.
"""

from __future__ import annotations

import csv
import gzip
import heapq
import io
import itertools
import json
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, cast, overload

from mta_logging.address import domain_of
from mta_logging.archive import visible_name
from mta_logging.errors import FormatError
from mta_logging.fields import DEFAULT_TIME_FORMAT, FIELD_NAMES, header_name
from mta_logging.formatters import header_fields, split_line, unescape
from mta_logging.outcome import KIND_NAMES, Kind
from mta_logging.report.filters import Filters
from mta_logging.report.times import TimeParser, wall_time
from mta_logging.spares import is_spare

log = logging.getLogger("mta_logging.report")

# Field names of the Haraka plugin that this project renamed.
LEGACY_FIELD_NAMES = {"dsnDiag": "dsnMsg", "dlvSourceIp": "srcIp", "dlvDestinationIp": "destIp"}
# Every field the Haraka plugin could write (its catalogue, srcType and the old names above);
# a header naming any other field is this project's, whose dsnDiag is a field of its own.
HARAKA_FIELD_NAMES = frozenset((
    "type", "timeLogged", "timeQueued", "rcpt", "srcType", "srcMta", "srcIp", "destIp", "vmta",
    "jobId", "dsnStatus", "dsnMsg", "delay", "bounceCat", *LEGACY_FIELD_NAMES))
# What the Haraka plugin wrote for a value it did not know (compared after stripping spaces).
LEGACY_UNKNOWN = frozenset({"", "-", "undefined", "null"})

_KNOWN_NAMES = frozenset(FIELD_NAMES) | frozenset(LEGACY_FIELD_NAMES)
_FIELD_NAME = re.compile(r"[A-Za-z_][\w.-]*\Z")
_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY = 8192  # lines between two progress callbacks
_BLOCK = 1 << 20  # bytes read (and searched by the pre-filter) at a time
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
class Rows:
    """Consecutive records of one tab-separated file, as written: what :meth:`Reader.rows`
    gives consumers that count (the report) instead of a :class:`Record` per line.

    ``values`` holds the records' values one record after the other (field ``j`` of record
    ``i`` at ``i * len(schema.names) + j``; :meth:`column` gives one field's), as the file has
    them: the writer's escaping *not* undone (a value holding a backslash is passed through
    :func:`~mta_logging.formatters.unescape` by whoever uses it), the empty text for unknown.
    ``logged`` holds each record's timeLogged as ``wall_seconds`` (None when unknown), ``kind``
    the kind of records whose ``type`` names none (the file's, from its name or directory).
    """

    schema: Schema
    kind: Kind | None
    values: list[str]
    logged: list[int | None]

    def column(self, position: int) -> list[str]:
        """The values of field ``position`` (see ``schema.index``), one per record."""
        return self.values[position::len(self.schema.names)]


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
    passed_over: int = 0  # lines (in ``lines``) the byte-level pre-filter ruled out unsplit

    def add(self, other: ReadStats) -> None:
        """Add the counters of another pass (over other files)."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


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
        try:
            names = header_fields(line, char)
        except csv.Error:  # not a line of values split by this character (binary data)
            continue
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
    """The names, the Haraka plugin's old ones renamed in a file the plugin could have
    written (no field but its own and header fields) that lacks the new name: ``dsnDiag`` is
    also a field of its own now, the only place of the diagnostic in ``rb`` records."""
    stripped = [name.strip() for name in names]
    if not all(name in HARAKA_FIELD_NAMES or header_name(name) is not None for name in stripped):
        return tuple(stripped)
    return tuple(name if LEGACY_FIELD_NAMES.get(name, name) in stripped
                 else LEGACY_FIELD_NAMES[name] for name in stripped)


def find_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """The files to read: each file named, and every file under each directory named.

    Directories are searched recursively, subdirectories (archives: the older files) before
    the files beside them, files in the order they were written (by name, a collision suffix
    ``.N`` after the name without it). Hidden files and directories (leading ``.``: the
    writer's working files) are left out, except those that can hold records no other file
    holds yet: files waiting in an archive to be compressed (``.pending-NAME``) and the
    spare a writer has swapped in as its active file and not yet named (``.spare-...``), under
    this version's names or an older one's, which come after the visible files of their
    directory.
    """
    return (path for path, _inode in found_files(paths))


def found_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[Path, int | None]]:
    """:func:`find_files` with the inode each file found in a directory had when listed
    (None for a file named): a reader that then finds another file under that name knows
    the one listed has moved."""
    for item in paths:
        path = Path(item)
        if path.is_dir():
            yield from _walk(path)
        else:
            yield path, None


def _walk(directory: Path) -> Iterator[tuple[Path, int | None]]:
    entries = _listing(directory)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))
    for entry in entries:
        if entry.is_file():
            yield Path(entry.path), entry.inode()


def _listing(directory: Path) -> list[os.DirEntry[str]]:
    """The entries of a directory that may hold records, in the order they were written."""
    try:
        with os.scandir(directory) as scan:
            entries = [entry for entry in scan if _hidden_rank(entry.name) is not None]
    except OSError as exc:
        log.warning("%s: cannot list the directory (%s)", directory, exc.strerror or exc)
        return []
    entries.sort(key=lambda entry: (_hidden_rank(entry.name),
                                    _written_order(shown_name(entry.name))))
    return entries


def _hidden_rank(name: str) -> int | None:
    """0 for a visible name, 1 for a pending file, 2 for a spare; None: not to be read."""
    if not name.startswith("."):
        return 0
    if is_pending(name):
        return 1
    if is_spare(name):
        return 2
    return None


def is_pending(name: str) -> bool:
    """True for the hidden name of a file waiting in an archive to be compressed."""
    return visible_name(name) is not None


def shown_name(name: str) -> str:
    """The name a file is known by: a pending file's visible name, else its own."""
    return visible_name(name) or name


def file_identity(raw: IO[bytes], path: Path) -> tuple[str, bytes] | None:
    """What stays the same when a file is archived and compressed: its first name (see
    :func:`base_name`) and its first two lines (header and first record), decompressed;
    None while it has no whole record line (or ``raw`` cannot seek: a pipe). ``raw`` is read
    from its start and left there.
    """
    if not raw.seekable():
        return None
    raw.seek(0)
    head = b""
    try:
        if raw.read(2) == _GZIP_MAGIC:
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw, mode="rb") as unpacked:
                head = unpacked.readline() + unpacked.readline()
        else:
            raw.seek(0)
            head = raw.readline() + raw.readline()
    except (OSError, EOFError, zlib.error):
        pass  # damaged: the read that follows reports it
    raw.seek(0)
    if head.count(b"\n") < 2:
        return None
    return base_name(shown_name(path.name)), head


_COLLISION_SUFFIX = re.compile(r"(.+?)(?:\.(\d+))?(\.[^.]+(?:\.gz)?)\Z")


def base_name(name: str) -> str:
    """A file's name without a collision suffix ``.N`` and without ``.gz`` (``d.T.2.tsv.gz``
    → ``d.T.tsv``): the same for a file before and after it was archived and compressed."""
    return _written_order(name)[0]


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
        self.placeholder = placeholder
        self.unknown: frozenset[str | None] = frozenset(
            {None, ""} if placeholder is None else {None, "", placeholder})
        self.strict = strict
        self.on_issue = on_issue if on_issue is not None else _log_issue
        self.on_progress = on_progress
        self.stats = ReadStats()
        self._times = TimeParser(time_format)
        self._needles = self.filters.needles()

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
                with open_text(path) as stream:
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
        return self.read(found_files(self.paths))

    def rows(self) -> Iterator[Record | Rows]:
        """The records of iterating, in the same order, for a consumer that counts: tab-separated
        files are given as :class:`Rows` (values as written, split but neither unescaped nor
        made into a Record each), other input as Records. Only without filters and without a
        placeholder (else every record is a Record); ``stats`` counts the same as iterating."""
        return self.read(found_files(self.paths), rows=True)

    @overload
    def read(self, files: Iterable[Path | tuple[Path, int | None]],
             seen: Seen | None = None, *, rows: Literal[False] = False) -> Iterator[Record]: ...

    @overload
    def read(self, files: Iterable[Path | tuple[Path, int | None]],
             seen: Seen | None = None, *, rows: bool) -> Iterator[Record | Rows]: ...

    def read(self, files: Iterable[Path | tuple[Path, int | None]],
             seen: Seen | None = None, *, rows: bool = False) -> Iterator[Record | Rows]:
        """The matching records of ``files``: those of :meth:`files`, or a share of them (what
        one worker process reads), each a path or a ``(path, inode)`` of
        :func:`found_files`; with ``rows``, as :meth:`rows` gives them. ``stats`` starts
        again from zero.

        Each file is read once even when the writer moves it meanwhile: a file is known by
        device and inode (an archived file is briefly under two names) and by
        :func:`file_identity` (its compressed copy), and a file that is gone when its turn
        comes is looked for where it went (beside it, or in a directory below: the archive),
        unless ``seen`` (what the pass has read so far) says not to follow: then it is only
        noted in ``seen.vanished``, for :meth:`read_vanished`.
        """
        self.stats = ReadStats()
        yield from self._read_files(files, Seen() if seen is None else seen,
                                    rows and self._rows_possible)

    def in_time_order(self) -> Iterator[Record]:
        """The records of iterating, in timeLogged order (unknown times first).

        The files of one kind are read one after the other (they were written in time order),
        the kinds side by side and merged (``heapq.merge``): memory and open files do not grow
        with the input. Records of one time keep the order of their kinds' first files.
        """
        self.stats = ReadStats()
        by_kind: dict[Kind | None, list[tuple[Path, int | None]]] = {}
        for item in found_files(self.paths):
            by_kind.setdefault(kind_from_path(item[0]), []).append(item)
        seen = Seen()
        return heapq.merge(*(self._read_files(items, seen) for items in by_kind.values()),
                           key=_time_logged)

    @property
    def _rows_possible(self) -> bool:
        """Whether :class:`Rows` can stand for records: no filter looks at each one, no
        placeholder is to be read as unknown."""
        return not self.filters.active and self.placeholder is None

    def _read_files(self, files: Iterable[Path | tuple[Path, int | None]], seen: Seen,
                    rows: bool = False) -> Iterator[Any]:
        for item in files:
            path, inode = item if isinstance(item, tuple) else (item, None)
            yield from self._matching(self._read_file(path, seen, listed=inode, rows=rows))

    @overload
    def read_vanished(self, seen: Seen, *, rows: Literal[False] = False
                      ) -> Iterator[Record]: ...

    @overload
    def read_vanished(self, seen: Seen, *, rows: bool) -> Iterator[Record | Rows]: ...

    def read_vanished(self, seen: Seen, *, rows: bool = False) -> Iterator[Record | Rows]:
        """The matching records of the files noted in ``seen.vanished`` (by passes that did
        not follow them, in worker processes), read where they went, once (with ``rows``, as
        :meth:`rows` gives them). ``stats`` starts again from zero."""
        self.stats = ReadStats()
        seen.follow = True
        rows = rows and self._rows_possible
        for path in seen.vanished:
            yield from self._matching(self._read_moved(path, seen, 1, rows))

    def _matching(self, records: Iterator[Record | Rows]) -> Iterator[Any]:
        stats = self.stats
        if not self.filters.active:
            for record in records:
                stats.matched += len(record.logged) if type(record) is Rows else 1
                yield record
            return
        matches = self.filters.matches
        for record in cast(Iterator[Record], records):  # no Rows when filters are set
            if matches(record):
                stats.matched += 1
                yield record

    def line_parser(self, path: Path, first_line: str) -> LineParser | None:
        """Records from the lines of one file that the caller reads itself (a tailer that keeps
        byte offsets): the function returned turns line ``number`` (text with its line end)
        into a Record, or None for a blank line or one skipped as an :class:`Issue`. Returns
        None when ``first_line`` is not a header. In a JSON lines file line 1 is a record too.
        """
        layout = detect_layout(first_line)
        if layout is None:
            return None
        name = str(path)
        parse = (self._json_parser(name) if layout.separator is None
                 else self._separated_parser(name, layout))
        file_kind = kind_from_path(path)
        times = self._times

        def record(number: int, line: str) -> Record | None:
            parsed = parse(number, line)
            if parsed is None:
                return None
            schema, values = parsed
            position = schema.index.get("type")
            kind = (KIND_NAMES.get(values[position] or "") if position is not None
                    else None) or file_kind
            position = schema.index.get("timeLogged")
            logged = times.seconds(values[position] if position is not None else None)
            return Record(kind, logged, name, number, values, schema)

        return record

    def issue(self, path: Path | str, line: int, message: str) -> None:
        """Report input that cannot be read (raises FormatError when strict)."""
        found = Issue(str(path), line, message)
        self.stats.issues += 1
        if self.strict:
            raise FormatError(str(found))
        self.on_issue(found)

    def _read_file(self, path: Path, seen: Seen, moves: int = 0,
                   listed: int | None = None, rows: bool = False) -> Iterator[Record | Rows]:
        try:
            raw = open(path, "rb")  # noqa: SIM115 (closed by the with below)
        except FileNotFoundError:
            if path in self.paths:
                self.issue(path, 0, "no such file")
            else:  # archived or compressed while we looked: read it there
                yield from self._moved(path, seen, moves, rows)
            return
        except OSError as exc:
            self.issue(path, 0, f"cannot open: {exc.strerror or exc}")
            return
        with raw:
            info = os.fstat(raw.fileno())
            if listed is not None and info.st_ino != listed:
                raw.close()  # the file listed moved, and another one took its name
                yield from self._moved(path, seen, moves, rows)
                return
            inode = (info.st_dev, info.st_ino)
            if inode in seen.inodes:
                return
            seen.inodes.add(inode)
            identity = file_identity(raw, path)
            if identity is not None and seen.is_copy(identity, path.parent):
                return  # the compressed copy of a file already read
            # a file without a whole record yet may have one once read: look again then
            again = None if identity is not None else os.dup(raw.fileno())
            self.stats.files += 1
            done_before = self.stats.bytes_done
            try:
                with _binary_stream(raw) as binary:
                    yield from self._read_stream(path, binary, raw, done_before, rows)
                if again is not None:
                    with open(again, "rb", closefd=False) as reopened:
                        identity = file_identity(reopened, path)
            finally:
                if again is not None:
                    os.close(again)
        if identity is not None:
            seen.remember(identity, path.parent)
        self.stats.bytes_done = done_before + info.st_size
        if self.on_progress is not None:
            self.on_progress(self.stats.bytes_done)

    def _moved(self, path: Path, seen: Seen, moves: int, rows: bool
               ) -> Iterator[Record | Rows]:
        if not seen.follow:
            seen.vanished.append(path)
        elif moves < _MAX_MOVES:
            yield from self._read_moved(path, seen, moves + 1, rows)
        else:
            log.debug("%s: gone before it was read", path)

    def _read_moved(self, path: Path, seen: Seen, moves: int, rows: bool = False
                    ) -> Iterator[Record | Rows]:
        """The records of a file that left ``path`` (archived, compressed, or a spare given its
        name): every file not read yet beside it or one directory below (the archive); each
        file is still read once, known by inode and identity."""
        directories = [path.parent] + [Path(entry.path) for entry in _listing(path.parent)
                                       if entry.is_dir(follow_symlinks=False)]
        for directory in directories:
            for entry in _listing(directory):
                if entry.is_file():
                    yield from self._read_file(Path(entry.path), seen, moves, rows=rows)

    def _read_stream(self, path: Path, binary: IO[bytes], raw: IO[bytes],
                     done_before: int, rows: bool) -> Iterator[Record | Rows]:
        number = 1
        try:
            first = binary.readline().decode("utf-8", "surrogateescape")
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
            if rows and layout.separator == "\t" and not layout.legacy:
                batches = self._row_batches(name, binary, layout, file_kind)
                for number, batch in batches:  # noqa: B007 (the damage's line, if one comes)
                    if on_progress := self.on_progress:
                        on_progress(done_before + raw.tell())
                    yield batch
                return
            needles = self._needles
            lines: Iterable[tuple[int, str]]
            if needles:
                lines = _lines_holding(binary, needles, self.stats)
            else:
                lines = enumerate(_text(binary), start=2)
            if layout.separator is None:
                lines = itertools.chain([(1, first)], lines)
                parse = self._json_parser(name)
            else:
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

    def _row_batches(self, name: str, binary: IO[bytes], layout: Layout,
                     file_kind: Kind | None) -> Iterator[tuple[int, Rows]]:
        """The records of a tab-separated file after its header, as :class:`Rows` of a block
        of lines each, with the number of the last line read. A line that :meth:`Reader.read`
        would not make a record of (a blank line, a wrong number of values) is left out and
        counted or reported as there."""
        schema = Schema(layout.fields, self.unknown, self._times)
        count = len(layout.fields)
        position = schema.index.get("timeLogged")
        parse = self._separated_parser(name, layout)
        stats = self.stats
        time_ok = True
        number = 1  # of the last line read
        for block in _line_blocks(binary):
            text = block.decode("utf-8", "surrogateescape")
            if "\r\n" in text:  # a CRLF line end is a line end, as split_line takes it
                text = text.replace("\r\n", "\n")
            if text.endswith("\n"):
                text = text[:-1]
            lines = text.split("\n")
            stats.lines += len(lines)
            first = number + 1
            number += len(lines)
            logged: list[int | None]
            if set(map(str.count, lines, itertools.repeat("\t"))) != {count - 1}:
                values, logged, time_ok = self._whole_lines(name, lines, first, parse,
                                                            position, time_ok)
            else:  # every line has its fields: one split for the block
                values = text.replace("\n", "\t").split("\t")
                if position is None:
                    logged = [None] * len(lines)
                else:
                    times = values[position::count]
                    logged = written_seconds(self._times, times)
                    if time_ok and None in logged:
                        time_ok = self._check_times(name, times, logged, first)
            stats.records += len(logged)
            yield number, Rows(schema, file_kind, values, logged)

    def _whole_lines(self, name: str, lines: list[str], first: int, parse: Parser,
                     position: int | None, time_ok: bool
                     ) -> tuple[list[str], list[int | None], bool]:
        """The values (one record after the other) and times of the lines of a block that
        :meth:`read` makes records of, line by line, with their issues in line order (a
        line that is none goes through its parser, which counts a blank line apart and
        reports a wrong number of values); and whether the times are still all right."""
        values: list[str] = []
        logged: list[int | None] = []
        for number, line in enumerate(lines, start=first):
            if parse(number, line) is None:
                continue
            row = line.split("\t")
            values += row
            if position is None:
                logged.append(None)
                continue
            (seconds,) = written_seconds(self._times, [row[position]])
            logged.append(seconds)
            if time_ok and seconds is None:
                time_ok = self._check_times(name, [row[position]], [seconds], number)
        return values, logged, time_ok

    def _check_times(self, name: str, times: list[str], logged: list[int | None],
                     first: int) -> bool:
        """Report the first timeLogged of lines ``first``... that is not in the time format
        (once per file, as :meth:`read` does); False once reported."""
        for number, (text, seconds) in enumerate(zip(times, logged, strict=True), start=first):
            if seconds is None and text:
                self.issue(name, number, f"timeLogged {unescape(text)!r} does not match the "
                           f"time format {self.time_format!r} (see --time-format); read as "
                           "unknown")
                return False
        return True

    def _separated_parser(self, name: str, layout: Layout) -> Parser:
        separator = layout.separator or "\t"
        count = len(layout.fields)
        legacy = layout.legacy
        schema = Schema(layout.fields, self.unknown, self._times)
        stats = self.stats

        def parse(number: int, line: str) -> tuple[Schema, list[str | None]] | None:
            try:
                values: list[str | None] = split_line(line, separator)  # type: ignore[assignment]
            except csv.Error as exc:  # a quote left open around a lone CR: no writer's line
                stats.skipped_lines += 1
                problem = str(exc).partition(" - ")[0]
                self.issue(name, number, f"not a line of values ({problem}); line skipped")
                return None
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
_MAX_MOVES = 3  # a file looked for where it went, and that one too, ... at most this often


@dataclass(slots=True)
class Seen:
    """The files one pass has read: by device and inode, and by :func:`file_identity`.

    ``follow``: look for a file that moved where it went at once; else note it in
    ``vanished`` (a worker process does, so that two workers never read one file: the
    caller merges what they saw and reads the vanished files afterwards).
    """

    follow: bool = True
    inodes: set[tuple[int, int]] = field(default_factory=set)
    contents: dict[tuple[str, bytes], list[Path]] = field(default_factory=dict)
    vanished: list[Path] = field(default_factory=list)

    def merge(self, other: Seen) -> None:
        """Add what another pass (a worker's, over other files) saw."""
        self.inodes |= other.inodes
        for identity, directories in other.contents.items():
            self.contents.setdefault(identity, []).extend(directories)
        self.vanished += other.vanished

    def is_copy(self, identity: tuple[str, bytes], directory: Path) -> bool:
        """True if a file of this identity was read in ``directory``, the one above it or one
        below it (where the writer moves files: into the archive)."""
        return any(directory in (seen, seen.parent) or seen == directory.parent
                   for seen in self.contents.get(identity, ()))

    def remember(self, identity: tuple[str, bytes], directory: Path) -> None:
        self.contents.setdefault(identity, []).append(directory)


LineParser = Callable[[int, str], "Record | None"]


def _json_text(value: object) -> str:
    """A JSON value as the text a separated file holds: a string unescaped, a number as
    written."""
    return unescape(value) if isinstance(value, str) else json.dumps(value)


def _time_logged(record: Record) -> int:
    return -1 if record.logged is None else record.logged


def written_seconds(times: TimeParser, texts: list[str]) -> list[int | None]:
    """The ``wall_seconds`` of times as a separated file has them (:meth:`TimeParser.many`),
    those with a backslash read with the writer's escapes undone, as a Record's are."""
    seconds = times.many(texts)
    if None in seconds:
        for index, text in enumerate(texts):
            if seconds[index] is None and "\\" in text:
                seconds[index] = times.seconds(unescape(text))
    return seconds


def _line_blocks(binary: IO[bytes]) -> Iterator[bytes]:
    """The bytes of ``binary`` in blocks of whole lines of about ``_BLOCK`` bytes (the last
    may end without a line end). Read with ``read1`` (decompressed data comes a piece at a
    time), so that when a read fails (a damaged ``.gz``) the whole lines read before it are
    given, then the error raised."""
    read = getattr(binary, "read1", binary.read)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = read(_BLOCK)
        except (OSError, EOFError, zlib.error):
            data = b"".join(chunks)
            end = data.rfind(b"\n") + 1
            if end:
                yield data[:end]
            raise
        chunks.append(chunk)
        size += len(chunk)
        if chunk and size < _BLOCK:
            continue
        data = b"".join(chunks)
        if not chunk:
            if data:
                yield data
            return
        end = data.rfind(b"\n") + 1
        if end:
            yield data[:end]
        chunks = [data[end:]]
        size = len(chunks[0])


def _lines_holding(binary: IO[bytes], needles: Sequence[bytes], stats: ReadStats
                   ) -> Iterator[tuple[int, str]]:
    """The numbered lines (from 2) of ``binary`` that hold one of ``needles`` (compared in
    ASCII lower case), found in large blocks of bytes; the others are only counted."""
    number = 2  # of the first line of the block
    carry = b""
    while True:
        chunk = binary.read(_BLOCK)
        data = carry + chunk
        end = len(data) if not chunk else data.rfind(b"\n") + 1
        if not chunk and not data:
            return
        block, carry = data[:end], data[end:]
        if not block:
            continue
        lowered = block.lower()
        starts: set[int] = set()
        for needle in needles:
            found = lowered.find(needle)
            while found != -1:
                start = block.rfind(b"\n", 0, found) + 1
                stop = block.find(b"\n", found) + 1 or len(block)
                starts.add(start)
                found = lowered.find(needle, stop)
        done = 0
        for start in sorted(starts):
            skipped = block.count(b"\n", done, start)
            number += skipped
            stats.lines += skipped
            stats.passed_over += skipped
            stop = block.find(b"\n", start) + 1 or len(block)
            yield number, block[start:stop].decode("utf-8", "surrogateescape")
            number += 1
            done = stop
        rest = block.count(b"\n", done)
        if done < len(block) and not block.endswith(b"\n"):
            rest += 1  # a last line without a line end
        number += rest
        stats.lines += rest
        stats.passed_over += rest
        if not chunk:
            return


def _binary_stream(raw: IO[bytes]) -> IO[bytes]:
    """``raw``, or its decompressed content when it is gzip data."""
    peek = getattr(raw, "peek", None)
    head = peek(2)[:2] if peek is not None else b""
    if head == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    return raw


def _text(binary: IO[bytes]) -> io.TextIOWrapper:
    # newline="\n": split on LF only and keep line ends (a Haraka CR stays with its line)
    return io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="\n")


def open_text(path: Path) -> io.TextIOWrapper:
    """A file's text (gzip data decompressed), lines split on LF only, bytes that are not
    UTF-8 kept as lone surrogates."""
    return _text(_binary_stream(open(path, "rb")))  # noqa: SIM115 (the wrapper closes it)


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
    "Rows",
    "Schema",
    "Seen",
    "base_name",
    "is_pending",
    "detect_layout",
    "file_identity",
    "find_files",
    "found_files",
    "kind_from_path",
    "open_text",
    "read_records",
    "written_seconds",
    "shown_name",
]
