"""Finished files: names, exclusive moves, compression that survives crashes, retention."""

from __future__ import annotations

import fcntl
import gzip
import os
import socket
import time
from pathlib import Path

import pytest

from mta_logging import ConfigError
from mta_logging import archive as archive_module
from mta_logging.archive import (
    FileNamer,
    check_template,
    compress_pending,
    finish_staged,
    link_exclusive,
    pending_name,
    prune,
)

T = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))
NAMER = FileNamer("{kind}.{time}.{ext}", "d", "tsv")
CONTENT = b"type\trcpt\nd\ta@example.com\n"


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# -- names ---------------------------------------------------------------------------------------

def test_render_fills_every_placeholder() -> None:
    namer = FileNamer("{kind}_{host}_{pid}_{seq}_{time}.{ext}", "df", "csv")
    host = socket.gethostname().split(".")[0]
    assert namer.render(T, 7, pid=42) == f"df_{host}_42_7_2024-05-01-120000.csv"


def test_suffix_goes_before_the_extension() -> None:
    assert [NAMER.suffixed("d.2024-05-01-120000.tsv", n) for n in (0, 1, 12)] == [
        "d.2024-05-01-120000.tsv", "d.2024-05-01-120000.1.tsv", "d.2024-05-01-120000.12.tsv"]
    assert NAMER.suffixed("d.2024-05-01-120000.tsv.gz", 2) == "d.2024-05-01-120000.2.tsv.gz"
    assert FileNamer("{kind}-{seq}", "d", "tsv").suffixed("d-3", 1) == "d-3.1"


def test_pattern_matches_what_the_namer_writes_and_nothing_else() -> None:
    pattern = NAMER.pattern()
    for name in ("d.2024-05-01-120000.tsv", "d.2024-05-01-120000.3.tsv",
                 "d.2024-05-01-120000.tsv.gz", "d.2024-05-01-120000.3.tsv.gz"):
        assert pattern.match(name), name
    for name in ("df.2024-05-01-120000.tsv", ".d.2024-05-01-120000.tsv.pending",
                 "d.2024-05-01-120000.csv", "d.2024-05-01-120000.tsv.tmp", "notes.txt"):
        assert not pattern.match(name), name


@pytest.mark.parametrize("template, complaint", [
    ("{kind}.{date}.{ext}", "unknown placeholder {date}"),
    ("logs/{kind}.{time}", "must be a plain file name"),
    (".{kind}.{time}", "must be a plain file name"),
    ("{kind}.{ext}", "must contain {time}, {seq} or {pid}"),
    ("", "expected a template"),
])
def test_bad_templates_are_named(template: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match="file_name") as caught:
        check_template(template)
    assert complaint in str(caught.value)


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
        tmp_path / ".d.X.tsv.pending", 0)


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
    assert listing(tmp_path) == [pending.name, pending.name + ".gz", "d.X.tsv.gz"]
    assert compress_pending(pending, NAMER) == tmp_path / "d.X.tsv.gz"
    assert listing(tmp_path) == ["d.X.tsv.gz"]


def test_a_published_staged_file_left_alone_is_removed(pending: Path, tmp_path: Path) -> None:
    staged = tmp_path / (pending.name + ".gz")
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
            ".d.2024-04-01-000000.tsv.pending": 90}
    for name, days in ages.items():
        (tmp_path / name).write_text(name)
        os.utime(tmp_path / name, (T - days * 86400,) * 2)
    deleted = prune(tmp_path, NAMER.pattern(), max_age_days=10, max_files=None, now=T)
    assert sorted(p.name for p in deleted) == ["d.2024-04-01-000000.tsv.gz",
                                               "d.2024-04-20-000000.tsv"]
    prune(tmp_path, NAMER.pattern(), max_age_days=None, max_files=2, now=T)
    assert listing(tmp_path) == [".d.2024-04-01-000000.tsv.pending", "d.2024-04-30-000000.1.tsv",
                                 "d.2024-04-30-000000.tsv", "notes.txt"]
