"""The small file-system helpers."""

import errno
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from tmpfs import small_tmpfs

from mta_logging import fsutil
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


# create_file and fsync_directory go through the C extension while os.open, os.write, os.fsync
# and os.close are the os module's own, and through their Python code when one is patched (a
# fault injected). Both ways must give the same files and the same errors.

needs_accelerator = pytest.mark.skipif(fsutil._accel is None,
                                       reason="the C accelerator was not built")


@pytest.fixture(params=["c", "python"])
def way(request, monkeypatch):
    """Each test once through the C extension and once through the Python code (os.write
    replaced by a function that calls it: patched, so the Python code runs)."""
    if request.param == "c":
        if fsutil._accel is None:
            pytest.skip("the C accelerator was not built")
        calls: list[str] = []
        monkeypatch.setattr(fsutil, "_accel", _Recording(fsutil._accel, calls))
        yield calls
        assert calls, "the C extension was not called"
    else:
        real_write = os.write
        monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data))
        yield None


class _Recording:
    """The C extension, its calls noted (to check that the C way was the one taken)."""

    def __init__(self, accel, calls):
        self._accel, self._calls = accel, calls

    def __getattr__(self, name):
        function = getattr(self._accel, name)

        def recorded(*args):
            self._calls.append(name)
            return function(*args)
        return recorded


def error_of(call, *args) -> tuple[type, int, object, str]:
    with pytest.raises(OSError) as caught:
        call(*args)
    return type(caught.value), caught.value.errno, caught.value.filename, str(caught.value)


def test_create_file_writes_the_bytes_with_the_mode_either_way(tmp_path, way):
    data = bytes(range(256)) * 1000
    create_file(tmp_path / "f", data, 0o640)
    assert (tmp_path / "f").read_bytes() == data
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640
    create_file(str(tmp_path / "empty"), b"")
    assert (tmp_path / "empty").read_bytes() == b""
    assert (tmp_path / "empty").stat().st_mode & 0o777 == 0o600


def test_create_file_refuses_an_existing_file_alike_either_way(tmp_path, way):
    (tmp_path / "f").write_bytes(b"other")
    assert error_of(create_file, tmp_path / "f", b"message") == (
        FileExistsError, errno.EEXIST, str(tmp_path / "f"),
        f"[Errno 17] File exists: '{tmp_path / 'f'}'")
    assert (tmp_path / "f").read_bytes() == b"other"


def test_create_file_in_a_removed_directory_fails_alike_either_way(tmp_path, way):
    gone = tmp_path / "gone"
    gone.mkdir()
    gone.rmdir()
    assert error_of(create_file, gone / "f", b"message") == (
        FileNotFoundError, errno.ENOENT, str(gone / "f"),
        f"[Errno 2] No such file or directory: '{gone / 'f'}'")
    assert error_of(fsync_directory, gone) == (
        FileNotFoundError, errno.ENOENT, str(gone),
        f"[Errno 2] No such file or directory: '{gone}'")


def test_fsync_directory_of_a_file_fails_alike_either_way(tmp_path, way):
    (tmp_path / "file").write_text("x")
    fsync_directory(tmp_path)
    assert error_of(fsync_directory, tmp_path / "file") == (
        NotADirectoryError, errno.ENOTDIR, str(tmp_path / "file"),
        f"[Errno 20] Not a directory: '{tmp_path / 'file'}'")


def test_create_file_on_a_full_file_system_fails_alike_and_leaves_nothing(tmp_path, way):
    """ENOSPC from a real write (a 1 MiB tmpfs): the error as os.write raises it (no file
    name), and no file left behind."""
    with small_tmpfs(tmp_path / "small", "1m") as small:
        create_file(small / "fits", b"x" * 1000)
        assert error_of(create_file, small / "too-big", b"x" * (2 << 20)) == (
            OSError, errno.ENOSPC, None, "[Errno 28] No space left on device")
        assert sorted(p.name for p in small.iterdir()) == ["fits"]


@needs_accelerator
def test_the_c_extension_is_not_used_while_an_os_call_is_patched(tmp_path, monkeypatch):
    for name in ("open", "write", "fsync", "close"):
        with mock.patch(f"os.{name}", side_effect=OSError(errno.EIO, f"{name} failed")), \
                pytest.raises(OSError, match=f"{name} failed"):
            create_file(tmp_path / "f", b"message")
        assert list(tmp_path.iterdir()) == []
    for name in ("open", "fsync", "close"):
        with mock.patch(f"os.{name}", side_effect=OSError(errno.EIO, f"{name} failed")), \
                pytest.raises(OSError, match=f"{name} failed"):
            fsync_directory(tmp_path)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_create_file_refuses_a_mode_out_of_range_alike_either_way(tmp_path, way):
    """A mode os.open cannot take (past a C int) is refused, no file made: not cut down to
    its low bits (mode 0) by the C way."""
    fds = open_fds()
    for mode in (2**40, -(2**40)):
        with pytest.raises(OverflowError, match="^Python int too large to convert to C int$"):
            create_file(tmp_path / "f", b"x", mode)
        assert not (tmp_path / "f").exists()
    assert open_fds() == fds


@pytest.mark.parametrize("path", [3, None, 1.5])
def test_a_path_of_the_wrong_type_gets_os_open_s_error_either_way(tmp_path, way, path):
    fds = open_fds()
    message = f"open: path should be string, bytes or os.PathLike, not {type(path).__name__}"
    for call, args in ((create_file, (path, b"x")), (fsync_directory, (path,))):
        with pytest.raises(TypeError) as caught:
            call(*args)
        assert str(caught.value) == message
    assert open_fds() == fds


@pytest.mark.parametrize("data", ["text", 5, None])
def test_data_that_is_not_bytes_gets_the_same_error_and_leaves_no_file_either_way(
        tmp_path, way, data):
    fds = open_fds()
    with pytest.raises(TypeError) as caught:
        create_file(tmp_path / "f", data)
    assert str(caught.value) == (
        f"memoryview: a bytes-like object is required, not '{type(data).__name__}'")
    assert list(tmp_path.iterdir()) == []
    assert open_fds() == fds


@pytest.mark.parametrize("name", ["a\0b", "s\ud800", "x" * 300])
def test_a_name_os_open_refuses_gets_the_same_error_and_leaves_nothing_either_way(
        tmp_path, way, name):
    fds = open_fds()
    with pytest.raises((ValueError, UnicodeEncodeError, OSError)) as caught:
        create_file(f"{tmp_path}/{name}", b"x")
    expected = {"a\0b": (ValueError, "embedded null byte"),
                "s\ud800": (UnicodeEncodeError, "'utf-8' codec can't encode character "
                            f"'\\ud800' in position {len(str(tmp_path)) + 2}: surrogates "
                            "not allowed"),
                "x" * 300: (OSError, f"[Errno 36] File name too long: '{tmp_path}/{name}'")}
    assert (type(caught.value), str(caught.value)) == expected[name]
    assert list(tmp_path.iterdir()) == []
    assert open_fds() == fds


def test_undecodable_bytes_and_memoryview_data_make_the_same_file_either_way(tmp_path, way):
    create_file(os.fsencode(tmp_path) + b"/b\xff", memoryview(b"view"))
    create_file(f"{tmp_path}/s\udcff.2", bytearray(b"array"))
    assert sorted(os.listdir(os.fsencode(tmp_path))) == [b"b\xff", b"s\xff.2"]
    assert (Path(os.fsdecode(os.fsencode(tmp_path) + b"/b\xff"))).read_bytes() == b"view"


def test_an_os_call_patched_before_the_package_is_imported_is_noticed() -> None:
    """A sitecustomize that injects a fault patches os.write before mta_logging is imported:
    the C extension must still not stand in for it (nor the record writer for os.write)."""
    code = ("import os\nreal = os.write\nos.write = lambda fd, data: real(fd, data)\n"
            "from mta_logging import fsutil, speedups\n"
            "print(fsutil.os_calls_are_the_os_modules(), os.write is speedups._OS_WRITE)\n")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, check=True)
    assert shown.stdout == "False False\n"
