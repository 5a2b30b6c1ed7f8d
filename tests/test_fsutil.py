"""The small file-system helpers."""

import errno
import os
from unittest import mock

import pytest

from mta_logging.fsutil import (
    create_file,
    fsync_directory,
    replace_file,
    write_all,
    write_new_file,
)


def test_write_all_completes_short_writes(tmp_path):
    real_write = os.write
    calls = []

    def short_write(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:3]))

    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        with mock.patch("os.write", short_write):
            write_all(fd, b"0123456789")
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"0123456789"
    assert calls == [10, 7, 4, 1]


def test_write_all_raises_the_error(tmp_path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        failing = mock.patch("os.write", side_effect=OSError(errno.ENOSPC, "No space left"))
        with failing, pytest.raises(OSError, match="No space left"):
            write_all(fd, b"x")
    finally:
        os.close(fd)


def test_fsync_directory(tmp_path):
    fsync_directory(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        fsync_directory(tmp_path / "file")


def test_create_file_writes_in_place_and_never_over_a_file(tmp_path):
    create_file(tmp_path / "f", b"message")
    assert (tmp_path / "f").read_bytes() == b"message"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        create_file(tmp_path / "f", b"other")
    assert (tmp_path / "f").read_bytes() == b"message"


def test_create_file_removes_the_file_on_error(tmp_path):
    failing = mock.patch("os.write", side_effect=OSError(errno.ENOSPC, "No space left"))
    with failing, pytest.raises(OSError, match="No space left"):
        create_file(tmp_path / "f", b"message")
    assert list(tmp_path.iterdir()) == []


def test_write_new_file_writes_then_renames(tmp_path):
    write_new_file(tmp_path / ".f.tmp", tmp_path / "f", b"message")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    assert (tmp_path / "f").read_bytes() == b"message"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o600


def test_write_new_file_removes_the_temporary_on_error(tmp_path):
    failing = mock.patch("os.fsync", side_effect=OSError(errno.ENOSPC, "No space left"))
    with failing, pytest.raises(OSError, match="No space left"):
        write_new_file(tmp_path / ".f.tmp", tmp_path / "f", b"message")
    assert list(tmp_path.iterdir()) == []


def test_write_new_file_refuses_an_existing_temporary(tmp_path):
    (tmp_path / ".f.tmp").write_bytes(b"other")
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / ".f.tmp", tmp_path / "f", b"message")
    assert (tmp_path / ".f.tmp").read_bytes() == b"other"


def test_replace_file_puts_the_data_whole_or_leaves_the_old_file(tmp_path):
    target, scratch = tmp_path / "f.json", tmp_path / ".f.json.tmp"
    replace_file(target, scratch, b"old")
    with mock.patch("os.fsync", side_effect=OSError(errno.EIO, "I/O error")), \
            pytest.raises(OSError, match="I/O error"):
        replace_file(target, scratch, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
    assert target.read_bytes() == b"old"
    replace_file(target, scratch, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
