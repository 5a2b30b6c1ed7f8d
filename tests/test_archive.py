"""Finished files: exclusive moves, compression that survives crashes, retention, and the
Archiver that does them for one handler."""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import gzip
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mta_logging import archive as archive_module
from mta_logging.archive import (
    PRUNE_EVERY,
    Archiver,
    compress_pending,
    finish_staged,
    link_exclusive,
    pending_name,
    prune,
    staged_name,
)
from mta_logging.faults import Faults
from mta_logging.naming import FileNamer

T = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))
NAMER = FileNamer("{kind}.{time}.{ext}", "d", "tsv")
CONTENT = b"type\trcpt\nd\ta@example.com\n"


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# -- exclusive links -----------------------------------------------------------------------------

def test_link_exclusive_never_replaces_a_file(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(CONTENT)
    (tmp_path / "d.X.tsv").write_text("taken")
    (tmp_path / "d.X.1.tsv").write_text("taken")
    target, number = link_exclusive(source, tmp_path, "d.X.tsv", NAMER)
    assert (target.name, number) == ("d.X.2.tsv", 2) and target.read_bytes() == CONTENT
    assert (tmp_path / "d.X.tsv").read_text() == "taken"


def test_link_exclusive_prefers_a_given_name_and_can_hide(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(CONTENT)
    assert link_exclusive(source, tmp_path, "d.X.tsv", NAMER, prefer="d.X.7.tsv") == (
        tmp_path / "d.X.7.tsv", -1)
    assert link_exclusive(source, tmp_path, "d.X.tsv", NAMER, prefer="d.X.7.tsv", start=3) == (
        tmp_path / "d.X.3.tsv", 3)
    assert link_exclusive(source, tmp_path, "d.X.tsv", NAMER, hidden=True) == (
        tmp_path / ".pending-d%2EX%2Etsv", 0)


# -- compression ---------------------------------------------------------------------------------

@pytest.fixture
def pending(tmp_path: Path) -> Path:
    path = tmp_path / pending_name("d.X.tsv")
    path.write_bytes(CONTENT)
    os.utime(path, (T, T))
    return path


def test_compress_pending_publishes_a_complete_gz_and_removes_the_rest(
        pending: Path, tmp_path: Path) -> None:
    target = compress_pending(pending, NAMER)
    assert target == tmp_path / "d.X.tsv.gz" and listing(tmp_path) == ["d.X.tsv.gz"]
    assert gzip.decompress(target.read_bytes()) == CONTENT
    assert target.stat().st_mtime == T  # the archive's age is its records' age


def test_a_taken_gz_name_gets_a_suffix(pending: Path, tmp_path: Path) -> None:
    (tmp_path / "d.X.tsv.gz").write_bytes(b"older")
    assert compress_pending(pending, NAMER) == tmp_path / "d.X.1.tsv.gz"
    assert (tmp_path / "d.X.tsv.gz").read_bytes() == b"older"


def test_a_suffixed_file_whose_gz_name_is_taken_gets_another_suffix_not_a_second_one(
        tmp_path: Path) -> None:
    """``d.<time>.1.1.tsv.gz`` would be a name that retention does not recognise."""
    stem = "d.2024-05-01-120000"
    pending = tmp_path / pending_name(f"{stem}.1.tsv")
    pending.write_bytes(CONTENT)
    for taken in (f"{stem}.tsv.gz", f"{stem}.1.tsv.gz"):
        (tmp_path / taken).write_bytes(b"older")
    assert compress_pending(pending, NAMER) == tmp_path / f"{stem}.2.tsv.gz"


def test_compression_cut_short_leaves_no_visible_file(
        pending: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(archive_module.shutil, "copyfileobj", crash)
    with pytest.raises(OSError):
        compress_pending(pending, NAMER)
    assert [n for n in listing(tmp_path) if not n.startswith(".")] == []
    assert pending.read_bytes() == CONTENT
    monkeypatch.undo()
    compress_pending(pending, NAMER)
    assert listing(tmp_path) == ["d.X.tsv.gz"]


def test_a_crash_after_publishing_does_not_publish_twice(
        pending: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_unlink = os.unlink

    def crash_on_pending(path: object, *args: object, **kwargs: object) -> None:
        if Path(str(path)) == pending:
            raise KeyboardInterrupt  # the process dies right after the .gz got its name
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(archive_module.os, "unlink", crash_on_pending)
    with pytest.raises(KeyboardInterrupt):
        compress_pending(pending, NAMER)
    monkeypatch.undo()
    assert listing(tmp_path) == [".pending-d%2EX%2Etsv", ".staged-d%2EX%2Etsv", "d.X.tsv.gz"]
    assert compress_pending(pending, NAMER) == tmp_path / "d.X.tsv.gz"
    assert listing(tmp_path) == ["d.X.tsv.gz"]


def test_a_published_staged_file_left_alone_is_removed(pending: Path, tmp_path: Path) -> None:
    staged = tmp_path / staged_name(pending.name)
    compress_pending(pending, NAMER)
    os.link(tmp_path / "d.X.tsv.gz", staged)  # as if the last unlink had not happened
    assert finish_staged(staged) is True
    assert listing(tmp_path) == ["d.X.tsv.gz"]


def test_a_pending_file_someone_else_holds_is_left_to_them(pending: Path) -> None:
    with open(pending, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert compress_pending(pending, NAMER) is None
    assert pending.read_bytes() == CONTENT


def test_a_pending_file_still_linked_in_an_active_directory_waits_for_recovery(
        pending: Path, tmp_path: Path) -> None:
    (tmp_path / "active").mkdir()
    os.link(pending, tmp_path / "active" / "d.X.tsv")
    assert compress_pending(pending, NAMER) is None
    assert pending.exists()


def test_a_vanished_pending_file_is_nothing_to_do(tmp_path: Path) -> None:
    assert compress_pending(tmp_path / pending_name("d.gone.tsv"), NAMER) is None


# -- retention -----------------------------------------------------------------------------------

def test_prune_by_age_and_count_touches_only_matching_files(tmp_path: Path) -> None:
    ages = {"d.2024-04-01-000000.tsv.gz": 30, "d.2024-04-20-000000.tsv": 11,
            "d.2024-04-28-000000.tsv": 3, "d.2024-04-30-000000.1.tsv": 1,
            "d.2024-04-30-000000.tsv": 1.5, "notes.txt": 100,
            ".pending-d%2E2024-04-01-000000%2Etsv": 90}
    for name, days in ages.items():
        (tmp_path / name).write_text(name)
        os.utime(tmp_path / name, (T - days * 86400,) * 2)
    deleted = prune(tmp_path, NAMER.pattern(), max_age_days=10, max_files=None, now=T)
    assert sorted(p.name for p in deleted) == ["d.2024-04-01-000000.tsv.gz",
                                               "d.2024-04-20-000000.tsv"]
    prune(tmp_path, NAMER.pattern(), max_age_days=None, max_files=2, now=T)
    assert listing(tmp_path) == [".pending-d%2E2024-04-01-000000%2Etsv",
                                 "d.2024-04-30-000000.1.tsv", "d.2024-04-30-000000.tsv",
                                 "notes.txt"]


# -- the Archiver of one handler -----------------------------------------------------------------

@pytest.fixture
def active_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "delivered"
    directory.mkdir()
    return directory


def make_archiver(tmp_path: Path, **options: Any) -> Archiver:
    settings: dict[str, Any] = {"compress": False, "fsync": False, "retention_days": None,
                                "retention_files": None}
    settings.update(options)
    faults = Faults(logging.Handler(), "accounting file handler for delivered records")
    return Archiver(tmp_path / "delivered" / "archive", NAMER, faults, **settings)


def finished(directory: Path, name: str, content: bytes = CONTENT) -> tuple[int, Path]:
    """A finished file in the active directory, open and locked as its handler holds it."""
    path = directory / name
    path.write_bytes(content)
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, path


def test_the_archiver_moves_a_file_under_its_name_or_a_free_one(
        tmp_path: Path, active_dir: Path) -> None:
    archiver = make_archiver(tmp_path)
    moved = []
    for content in (b"first\n", b"second\n"):
        fd, path = finished(active_dir, "d.X.tsv", content)
        moved.append(archiver.move(fd, path, "d.X.tsv"))
        os.close(fd)
    archive = archiver.archive_dir
    assert moved == [archive / "d.X.tsv", archive / "d.X.1.tsv"]
    assert listing(active_dir) == ["archive"]
    assert [(archive / n).read_bytes() for n in ("d.X.tsv", "d.X.1.tsv")] == [b"first\n",
                                                                             b"second\n"]


def test_a_file_already_linked_in_the_archive_is_not_moved_twice(
        tmp_path: Path, active_dir: Path) -> None:
    """A crash came between linking the file into the archive and unlinking it here."""
    archiver = make_archiver(tmp_path)
    archiver.archive_dir.mkdir()
    fd, path = finished(active_dir, "d.X.tsv")
    os.link(path, archiver.archive_dir / "d.X.3.tsv")
    assert archiver.move(fd, path, "d.X.tsv") is None
    os.close(fd)
    assert listing(active_dir) == ["archive"] and listing(archiver.archive_dir) == ["d.X.3.tsv"]


def test_with_compression_a_moved_file_waits_hidden_until_compressed(
        tmp_path: Path, active_dir: Path) -> None:
    archiver = make_archiver(tmp_path, compress=True)
    fd, path = finished(active_dir, "d.X.tsv")
    assert archiver.move(fd, path, "d.X.tsv") == archiver.archive_dir / ".pending-d%2EX%2Etsv"
    os.close(fd)
    archiver.compress_pending()
    assert listing(archiver.archive_dir) == ["d.X.tsv.gz"]
    assert gzip.decompress((archiver.archive_dir / "d.X.tsv.gz").read_bytes()) == CONTENT


def test_a_file_still_locked_when_compression_runs_is_compressed_the_next_time(
        tmp_path: Path, active_dir: Path) -> None:
    """The handler closes its descriptor (and with it the lock) after the move; the maintenance
    thread may run compression in between. The file is not dropped: the next run compresses
    it, and no hidden file (which readers skip) is left behind."""
    archiver = make_archiver(tmp_path, compress=True)
    fd, path = finished(active_dir, "d.X.tsv")
    archiver.move(fd, path, "d.X.tsv")
    archiver.compress_pending()
    assert listing(archiver.archive_dir) == [".pending-d%2EX%2Etsv"]
    os.close(fd)
    archiver.compress_pending()
    assert listing(archiver.archive_dir) == ["d.X.tsv.gz"]
    assert gzip.decompress((archiver.archive_dir / "d.X.tsv.gz").read_bytes()) == CONTENT


def test_a_failed_compression_is_reported_once_and_tried_again(
        tmp_path: Path, active_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    archiver = make_archiver(tmp_path, compress=True)
    fd, path = finished(active_dir, "d.X.tsv")
    archiver.move(fd, path, "d.X.tsv")
    os.close(fd)

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as failing:
        failing.setattr(archive_module, "compress_pending", disk_full)
        archiver.compress_pending()
        archiver.compress_pending()
    errors = capsys.readouterr().err
    assert errors.count("--- Logging error ---") == 1
    assert ("accounting file handler for delivered records failed while compressing "
            f"{archiver.archive_dir / '.pending-d%2EX%2Etsv'}: OSError: [Errno 28] No space left "
            "on device") in errors
    archiver.compress_pending()
    assert listing(archiver.archive_dir) == ["d.X.tsv.gz"]


def test_a_move_whose_durability_is_in_doubt_is_done_and_reported(
        tmp_path: Path, active_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    archiver = make_archiver(tmp_path, fsync=True)

    def broken(directory: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(archive_module, "fsync_directory", broken)
    fd, path = finished(active_dir, "d.X.tsv")
    assert archiver.move(fd, path, "d.X.tsv") == archiver.archive_dir / "d.X.tsv"
    os.close(fd)
    assert f"failed while saving the move of {path} to disk: OSError" in capsys.readouterr().err


def test_retention_left_for_later_runs_when_due(tmp_path: Path, active_dir: Path) -> None:
    archiver = make_archiver(tmp_path, retention_files=1)
    archiver.archive_dir.mkdir()
    for age, name in ((2, "d.2024-04-29-000000.tsv"), (1, "d.2024-04-30-000000.tsv")):
        (archiver.archive_dir / name).write_text(name)
        os.utime(archiver.archive_dir / name, (T - age * 86400,) * 2)
    archiver.prune_if_left(T)  # nothing was left for later
    assert len(listing(archiver.archive_dir)) == 2
    archiver.prune_later()
    archiver.prune_if_left(T)
    assert listing(archiver.archive_dir) == ["d.2024-04-30-000000.tsv"]
    (archiver.archive_dir / "d.2024-04-28-000000.tsv").write_text("old")
    os.utime(archiver.archive_dir / "d.2024-04-28-000000.tsv", (T - 3 * 86400,) * 2)
    archiver.prune_when_due(T + PRUNE_EVERY / 2)  # ran at T: not due yet
    assert len(listing(archiver.archive_dir)) == 2
    archiver.prune_when_due(T + PRUNE_EVERY)
    assert listing(archiver.archive_dir) == ["d.2024-04-30-000000.tsv"]


def test_files_a_dead_process_left_waiting_are_taken_over(
        tmp_path: Path, active_dir: Path) -> None:
    archiver = make_archiver(tmp_path, compress=True)
    archiver.archive_dir.mkdir()
    name = "d.2024-04-30-235959.tsv"
    (archiver.archive_dir / pending_name(name)).write_bytes(CONTENT)
    (archiver.archive_dir / pending_name("other.log")).write_bytes(b"not ours")
    archiver.take_over_pending()
    archiver.compress_pending()
    assert listing(archiver.archive_dir) == [pending_name("other.log"), f"{name}.gz"]


def test_files_an_older_version_left_waiting_are_taken_over_once(
        tmp_path: Path, active_dir: Path) -> None:
    """A site upgrading after a crash: the older version's ``.NAME.pending`` files are
    compressed, one it had already published (its ``.NAME.pending.gz`` linked to ``NAME.gz``)
    is not published twice, and a published staged copy left alone is removed."""
    archiver = make_archiver(tmp_path, compress=True)
    archive = archiver.archive_dir
    archive.mkdir()
    (archive / ".d.2024-04-30-000000.tsv.pending").write_bytes(CONTENT)
    (archive / ".d.2024-04-30-000001.tsv.pending").write_bytes(CONTENT + b"more\n")
    (archive / "d.2024-04-30-000001.tsv.gz").write_bytes(gzip.compress(CONTENT + b"more\n"))
    os.link(archive / "d.2024-04-30-000001.tsv.gz", archive / ".d.2024-04-30-000001.tsv.pending.gz")
    (archive / "d.2024-04-30-000002.tsv.gz").write_bytes(gzip.compress(CONTENT))
    os.link(archive / "d.2024-04-30-000002.tsv.gz", archive / ".d.2024-04-30-000002.tsv.pending.gz")
    archiver.take_over_pending()
    archiver.compress_pending()
    assert listing(archive) == ["d.2024-04-30-000000.tsv.gz", "d.2024-04-30-000001.tsv.gz",
                                "d.2024-04-30-000002.tsv.gz"]
    assert gzip.decompress((archive / "d.2024-04-30-000000.tsv.gz").read_bytes()) == CONTENT
    assert gzip.decompress((archive / "d.2024-04-30-000001.tsv.gz").read_bytes()) == (
        CONTENT + b"more\n")


def test_no_glob_for_visible_files_matches_a_working_file(
        tmp_path: Path, active_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each hidden file a compression makes on its way, caught as it is created: none has a
    name that ``*.tsv*``, ``*.gz`` or ``*.jsonl*`` match, and each names the file it is for."""
    archiver = make_archiver(tmp_path, compress=True)
    fd, path = finished(active_dir, "d.X.tsv")
    archiver.move(fd, path, "d.X.tsv")
    os.close(fd)
    made = listing(archiver.archive_dir)
    real_open = open

    def noting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int):  # (the pending file is read through its descriptor)
            made.append(Path(file).name)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", noting_open)
    real_replace, real_link = os.replace, os.link
    monkeypatch.setattr(archive_module.os, "replace",
                        lambda a, b: (made.append(Path(b).name), real_replace(a, b))[1])
    monkeypatch.setattr(archive_module.os, "link",
                        lambda a, b: (made.append(Path(b).name), real_link(a, b))[1])
    archiver.compress_pending()
    monkeypatch.undo()
    hidden = sorted({name for name in made if name.startswith(".")})
    assert hidden == [".gzipping-d%2EX%2Etsv", ".pending-d%2EX%2Etsv", ".staged-d%2EX%2Etsv"]
    for name in hidden:
        assert not any(fnmatch.fnmatch(name, glob) for glob in ("*.tsv*", "*.gz", "*.jsonl*"))
    assert listing(archiver.archive_dir) == ["d.X.tsv.gz"]


def test_a_file_archived_under_a_pending_name_just_freed_is_compressed_too(
        tmp_path: Path, active_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compression removes a pending file, then takes it off its queue; a rollover (or close())
    that archives the next file of that name in between gets the pending name just freed. That
    file is queued too, and compressed: not left hidden (the leftover pending file after a
    clean shutdown of issue 20)."""
    archiver = make_archiver(tmp_path, compress=True)
    fd, path = finished(active_dir, "d.X.tsv", b"first\n")
    archiver.move(fd, path, "d.X.tsv")
    os.close(fd)
    real_compress = archive_module.compress_pending

    def rollover_meanwhile(pending: Path, *args: Any, **kwargs: Any) -> Path | None:
        compressed = real_compress(pending, *args, **kwargs)
        monkeypatch.undo()
        fd, path = finished(active_dir, "d.X.tsv", b"second\n")
        assert archiver.move(fd, path, "d.X.tsv") == pending  # the name just freed
        os.close(fd)
        return compressed

    monkeypatch.setattr(archive_module, "compress_pending", rollover_meanwhile)
    archiver.compress_pending()
    archiver.compress_pending()
    archive = archiver.archive_dir
    assert listing(archive) == ["d.X.1.tsv.gz", "d.X.tsv.gz"]
    assert [gzip.decompress((archive / n).read_bytes()) for n in ("d.X.tsv.gz", "d.X.1.tsv.gz")
            ] == [b"first\n", b"second\n"]
