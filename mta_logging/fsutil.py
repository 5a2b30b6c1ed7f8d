"""Small file-system helpers shared by the parts that write files (handlers, archive, spool,
ship checkpoints, export manifest)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["create_file", "fsync_directory", "replace_file", "write_all", "write_new_file"]


def _accelerator() -> Any:
    """The C extension (``mta_logging/_accel.c``), or None where it was not built."""
    try:
        return importlib.import_module("mta_logging._accel")
    except ImportError:
        return None


# create_file and fsync_directory make their os calls in one call to the C extension, without
# the GIL in between (a thread that takes the GIL back after each os call, while the event loop
# holds it, costs futex calls and context switches on both sides). That is only done while
# these are the os module's own: with one patched (a fault injected), the Python code below
# calls it.
_accel = _accelerator()
# the os module's own functions (posix.open...), not whatever os.open was at import: a patch made
# before (a sitecustomize injecting a fault) must still be noticed
_OS_MODULE = sys.modules[os.name]
_OS_CALLS = (_OS_MODULE.open, _OS_MODULE.write, _OS_MODULE.fsync, _OS_MODULE.close)


def os_calls_are_the_os_modules() -> bool:
    """True while ``os.open``, ``os.write``, ``os.fsync`` and ``os.close`` are the os module's own
    (none patched to inject a fault): then C code may make these calls itself."""
    return (os.open, os.write, os.fsync, os.close) == _OS_CALLS


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the entries of ``directory`` (files created, renamed, linked or removed in it)
    durable: ``fsync`` of the directory itself."""
    if _accel is not None and os_calls_are_the_os_modules():
        _accel.fsync_directory(directory)
        return
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


def create_file(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (with ``mode``; it must not exist), write ``data`` to it and ``fsync`` it.
    On an error the file is removed and the error goes up. The directory is not ``fsync``'d:
    the caller does it (perhaps once for many files) before it relies on the new name."""
    if _accel is not None and os_calls_are_the_os_modules():
        _accel.create_synced(path, data, mode)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def write_new_file(temporary: str | os.PathLike[str], target: str | os.PathLike[str],
                   data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``temporary`` by :func:`create_file` and rename it to ``target``. On an
    error ``temporary`` is removed and the error goes up. The directory holding ``target`` is
    not ``fsync``'d: the caller does it (perhaps once for many files) before it relies on the
    new name."""
    create_file(temporary, data, mode)
    try:
        os.rename(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def replace_file(path: os.PathLike[str], scratch: os.PathLike[str], data: bytes,
                 mode: int = 0o644) -> None:
    """Put ``data`` at ``path`` whole or not at all, durably: written to ``scratch`` (a name in
    the same directory; one left by a crash is removed first) by :func:`write_new_file`,
    renamed over ``path``, the directory fsync'd. An error goes up with ``path`` as it was and
    ``scratch`` removed."""
    Path(scratch).unlink(missing_ok=True)
    write_new_file(scratch, path, data, mode)
    fsync_directory(os.path.dirname(os.fspath(path)) or ".")
