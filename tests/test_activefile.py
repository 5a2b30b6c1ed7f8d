"""Active files: exclusive creation under free names, the lock, whole-or-nothing writes,
cutting back a torn write, naming a spare in use, writing anew a file deleted under us."""

from __future__ import annotations

import errno
import fcntl
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mta_logging import activefile as activefile_module
from mta_logging.activefile import (
    ActiveDirectory,
    ActiveFile,
    cut_torn_line,
    lock_orphan,
    write_whole,
)
from mta_logging.naming import FileNamer

T = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))
NAMER = FileNamer("{kind}.{time}.{ext}", "d", "tsv")
NAME = "d.2024-05-01-120000.tsv"
HEADER = b"type\trcpt\n"


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def locked_by_someone(path: Path) -> bool:
    """True if a lock is held on ``path`` (tried from a descriptor of our own)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.fixture
def opened() -> Iterator[list[ActiveFile]]:
    """Files a test created; their descriptors are closed after it."""
    files: list[ActiveFile] = []
    yield files
    for file in files:
        os.close(file.fd)


@pytest.fixture
def make(tmp_path: Path, opened: list[ActiveFile]) -> Callable[..., ActiveFile]:
    def create(name: str = NAME, *, archiving: bool = False, fsync: bool = False,
               rollover_at: float = math.inf) -> ActiveFile:
        files = ActiveDirectory(tmp_path / "delivered", NAMER, archiving=archiving, fsync=fsync)
        file = files.create(name, HEADER, rollover_at)
        opened.append(file)
        return file
    return create


def test_a_new_file_is_created_with_its_header_and_locked(
        make: Callable[..., ActiveFile], tmp_path: Path) -> None:
    file = make(rollover_at=T + 60)
    assert file.path == tmp_path / "delivered" / NAME and file.path.read_bytes() == HEADER
    assert (file.name, file.size, file.header_size, file.records, file.rollover_at) == (
        NAME, len(HEADER), len(HEADER), 0, T + 60)
    assert locked_by_someone(file.path)


def test_a_taken_name_gets_a_suffix_and_is_never_shared(
        tmp_path: Path, opened: list[ActiveFile]) -> None:
    (tmp_path / "delivered").mkdir()
    (tmp_path / "delivered" / NAME).write_bytes(b"someone else's\n")
    files = ActiveDirectory(tmp_path / "delivered", NAMER, archiving=False, fsync=False)
    file = files.create(NAME, HEADER, math.inf)
    opened.append(file)
    assert file.path.name == "d.2024-05-01-120000.1.tsv" and file.name == NAME
    assert (tmp_path / "delivered" / NAME).read_bytes() == b"someone else's\n"


@pytest.mark.parametrize("archiving, third", [(False, "d.2024-05-01-120000.2.tsv"),
                                              (True, NAME)])
def test_names_taken_before_are_skipped_unless_archiving_frees_them(
        tmp_path: Path, opened: list[ActiveFile], archiving: bool, third: str) -> None:
    files = ActiveDirectory(tmp_path / "delivered", NAMER, archiving=archiving, fsync=False)
    for _ in range(2):
        opened.append(files.create(NAME, HEADER, math.inf))
    for file in opened:
        file.path.unlink()  # archived (or removed by someone)
    opened.append(files.create(NAME, HEADER, math.inf))
    assert listing(tmp_path / "delivered") == [third]


def test_a_new_file_whose_directory_cannot_be_synced_is_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(directory: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(activefile_module, "fsync_directory", broken)
    files = ActiveDirectory(tmp_path / "delivered", NAMER, archiving=False, fsync=True)
    with pytest.raises(OSError, match="Input/output error"):
        files.create(NAME, HEADER, math.inf)
    assert listing(tmp_path / "delivered") == []


def test_a_write_cut_short_by_a_full_disk_is_cut_back(
        make: Callable[..., ActiveFile], monkeypatch: pytest.MonkeyPatch) -> None:
    file = make()
    real_write = os.write
    calls = []

    def half_then_full(fd: int, data: Any) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as full:
        full.setattr(os, "write", half_then_full)
        with pytest.raises(OSError, match="No space left"):
            write_whole(file, b"d\ta@example.com\n")
    assert file.path.read_bytes() == HEADER and file.size == len(HEADER) and not file.torn
    write_whole(file, b"d\tb@example.com\n")
    assert file.path.read_bytes() == HEADER + b"d\tb@example.com\n"


def test_a_torn_write_that_cannot_be_cut_back_is_cut_before_the_next_one(
        make: Callable[..., ActiveFile], monkeypatch: pytest.MonkeyPatch) -> None:
    file = make()
    real_write = os.write

    def half(fd: int, data: Any) -> int:
        if len(data) == len(b"d\ta@example.com\n"):
            return real_write(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    def cannot(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as faulty:
        faulty.setattr(os, "write", half)
        faulty.setattr(os, "ftruncate", cannot)
        with pytest.raises(OSError, match="No space left"):
            write_whole(file, b"d\ta@example.com\n")
    assert file.torn and file.path.read_bytes() == HEADER + b"d\ta"
    write_whole(file, b"d\tb@example.com\n")
    assert not file.torn and file.path.read_bytes() == HEADER + b"d\tb@example.com\n"


def test_a_spare_in_use_gets_the_name_of_when_it_was_started(
        tmp_path: Path, opened: list[ActiveFile]) -> None:
    directory = tmp_path / "delivered"
    directory.mkdir()
    hidden = directory / ".spare-d%2E42%2E1%2Etsv"
    hidden.write_bytes(HEADER + b"d\ta@example.com\n")
    spare = ActiveFile(os.open(hidden, os.O_RDWR), hidden, "", named=False, started=T, seq=2)
    opened.append(spare)
    ActiveDirectory(directory, NAMER, archiving=True, fsync=True).give_name(spare)
    assert (spare.path, spare.name, spare.named) == (directory / NAME, NAME, True)
    assert listing(directory) == [NAME]
    assert spare.path.read_bytes() == HEADER + b"d\ta@example.com\n"


def test_a_file_deleted_under_us_is_written_anew_under_its_name(
        make: Callable[..., ActiveFile], opened: list[ActiveFile], tmp_path: Path) -> None:
    old = make(rollover_at=T + 60)
    write_whole(old, b"d\ta@example.com\n")
    old.records = 1
    old.path.unlink()
    files = ActiveDirectory(tmp_path / "delivered", NAMER, archiving=True, fsync=False)
    new = files.copy_anew(old, HEADER)
    opened.append(new)
    assert listing(tmp_path / "delivered") == [NAME]
    assert new.path.read_bytes() == HEADER + b"d\ta@example.com\n"
    assert (new.size, new.records, new.rollover_at) == (old.size, 1, T + 60)


def test_a_last_line_without_its_line_end_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(HEADER + b"d\ta@example.com\nd\tb@exa")
    fd = os.open(path, os.O_RDWR)
    try:
        assert cut_torn_line(fd) == len(HEADER + b"d\ta@example.com\n")
        assert cut_torn_line(fd) == len(HEADER + b"d\ta@example.com\n")  # nothing more to cut
    finally:
        os.close(fd)
    assert path.read_bytes() == HEADER + b"d\ta@example.com\n"


def test_only_a_file_nobody_holds_is_taken_as_an_orphan(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(HEADER)
    with open(path, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a live writer does
        assert lock_orphan(path) is None
    fd = lock_orphan(path)
    assert fd is not None
    os.close(fd)
    assert lock_orphan(tmp_path / "gone.tsv") is None and lock_orphan(tmp_path) is None
