"""Small file-system helpers shared by the parts that write files (handlers, archive, spool)."""

from __future__ import annotations

import os

__all__ = ["fsync_directory", "write_all"]


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the entries of ``directory`` (files created, renamed, linked or removed in it)
    durable: ``fsync`` of the directory itself."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, however many ``os.write`` calls it takes. An error goes
    up with part of ``data`` possibly written (callers that must not leave a torn write cut it
    back themselves)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
