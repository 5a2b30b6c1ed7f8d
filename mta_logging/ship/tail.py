"""Reading accounting files from a byte offset on, and knowing a file by its content.

Every file of a kind starts with the same header line, so a file is known by a fingerprint of
its *first record* (SHA-256 of that line's bytes), never by its name or its header: the active
file, the same file moved into the archive and its ``.gz`` all have one fingerprint, and byte
offsets count uncompressed bytes, so a checkpoint taken on the active file holds for the
archive too. Device and inode are kept beside the fingerprint to recognise a file that is
already done without opening it.

Only complete lines (ending in ``\\n``) are read: a line being written is left for the next
look.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mta_logging.report.reader import Reader, Record

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What a file is, whatever its name: fingerprint of the first record, device, inode."""

    fingerprint: str
    device: int
    inode: int
    size: int  # bytes on disk when it was looked at
    mtime_ns: int  # and its modification time then
    compressed: bool


@dataclass(frozen=True, slots=True)
class Entry:
    """One complete line read from a file: the record (None for a blank or unreadable line,
    which is passed over), the byte offset where the line starts and where the next one does,
    and its line number."""

    record: Record | None
    offset: int
    end: int
    line: int


def _open(path: Path) -> tuple[IO[bytes], IO[bytes], bool]:
    """The file, a binary stream of its content (decompressed) and whether it is gzip."""
    raw = open(path, "rb")  # noqa: SIM115 (the caller closes it)
    if raw.read(2) == _GZIP_MAGIC:
        raw.seek(0)
        content: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        return raw, content, True
    raw.seek(0)
    return raw, raw, False


def _first_record(stream: IO[bytes]) -> tuple[bytes, bytes, int] | None:
    """(first line, first record line, offset of the first record) when both are complete."""
    first = stream.readline()
    if not first.endswith(b"\n"):
        return None
    if first.lstrip(b"\xef\xbb\xbf").startswith(b"{"):  # JSON lines: no header line
        return first, first, 0
    record = stream.readline()
    if not record.endswith(b"\n"):
        return None
    return first, record, len(first)


def identify(path: Path) -> FileIdentity | None:
    """The identity of the file at ``path``; None while it has no complete first record yet
    (or it is gone)."""
    try:
        raw, stream, compressed = _open(path)
    except FileNotFoundError:
        return None
    with raw, stream:
        info = os.fstat(raw.fileno())
        try:
            head = _first_record(stream)
        except (EOFError, gzip.BadGzipFile):
            return None  # a .gz still being written, or damaged: nothing to ship from it yet
    if head is None:
        return None
    return FileIdentity(hashlib.sha256(head[1]).hexdigest()[:32], info.st_dev, info.st_ino,
                        info.st_size, info.st_mtime_ns, compressed)


def read_entries(path: Path, reader: Reader, offset: int, line: int) -> Iterator[Entry]:
    """The complete lines of ``path`` from byte ``offset`` on (0: from the first record),
    numbered from ``line`` + 1 (``line``: the number of the line that ends at ``offset``).
    Stops at the end of the file or at a line still being written."""
    raw, stream, _compressed = _open(path)
    with raw, stream:
        head = _first_record(stream)
        if head is None:
            return
        first, _first, start = head
        parse = reader.line_parser(path, first.decode("utf-8", "surrogateescape"))
        if parse is None:
            reader.issue(path, 1, "no header line; file not shipped")
            return
        if offset < start:
            offset, line = start, 0 if start == 0 else 1
        stream.seek(offset)  # a gzip stream seeks forward by decompressing
        while True:
            text = stream.readline()
            if not text.endswith(b"\n"):
                return
            line += 1
            end = offset + len(text)
            yield Entry(parse(line, text.decode("utf-8", "surrogateescape")), offset, end, line)
            offset = end

