"""Recovery: files that dead processes left in an active directory are cut back, removed,
named or handed over for archiving; files that live writers hold are left alone."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta_logging.activefile import ActiveDirectory, ActiveFile
from mta_logging.naming import FileNamer
from mta_logging.recovery import recover

T = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))
NAMER = FileNamer("{kind}.{time}.{ext}", "d", "tsv")
HEADER = b"type\trcpt\n"
RECORD = b"d\ta@example.com\n"
ORPHAN = "d.2024-04-30-235959.tsv"


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "delivered"
    path.mkdir()
    return path


@pytest.fixture
def found() -> Iterator[list[ActiveFile]]:
    taken: list[ActiveFile] = []
    yield taken
    for file in taken:
        os.close(file.fd)


def run(directory: Path, found: list[ActiveFile] | None) -> None:
    recover(ActiveDirectory(directory, NAMER, archiving=True, fsync=False), HEADER, found)


def test_an_orphan_with_records_is_handed_over_locked_with_its_torn_line_cut(
        directory: Path, found: list[ActiveFile]) -> None:
    (directory / ORPHAN).write_bytes(HEADER + RECORD + b"d\tb@exam")
    run(directory, found)
    (file,) = found
    assert (file.path, file.name, file.size) == (directory / ORPHAN, ORPHAN,
                                                 len(HEADER + RECORD))
    assert (directory / ORPHAN).read_bytes() == HEADER + RECORD
    with pytest.raises(BlockingIOError), open(directory / ORPHAN, "rb") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # recovery holds it now


def test_an_orphan_with_a_collision_suffix_is_archived_after_its_name_without_it(
        directory: Path, found: list[ActiveFile]) -> None:
    """The archive names it after ``name``: with the suffix kept, a taken name there became
    ``d.X.1.1.tsv``, a name retention and the pickup of pending files do not recognise."""
    suffixed = NAMER.suffixed(ORPHAN, 1)
    (directory / suffixed).write_bytes(HEADER + RECORD)
    run(directory, found)
    (file,) = found
    assert (file.path.name, file.name) == (suffixed, ORPHAN)


def test_without_archiving_an_orphan_stays_where_it_is(directory: Path) -> None:
    (directory / ORPHAN).write_bytes(HEADER + RECORD + b"d\tb@exam")
    run(directory, None)
    assert listing(directory) == [ORPHAN]
    assert (directory / ORPHAN).read_bytes() == HEADER + RECORD


def test_orphans_holding_only_our_header_are_removed_and_others_kept(
        directory: Path, found: list[ActiveFile]) -> None:
    (directory / "d.2024-04-30-235957.tsv").write_bytes(HEADER)
    (directory / "d.2024-04-30-235958.tsv").write_bytes(b"")
    (directory / "d.2024-04-30-235959.tsv").write_bytes(b"type\tjobId\n")  # not our header
    (directory / "notes.txt").write_bytes(HEADER)  # not a name of ours
    run(directory, found)
    assert listing(directory) == ["d.2024-04-30-235959.tsv", "notes.txt"]
    assert [file.path.name for file in found] == ["d.2024-04-30-235959.tsv"]


def test_a_file_a_live_writer_holds_is_left_alone(
        directory: Path, found: list[ActiveFile]) -> None:
    (directory / ORPHAN).write_bytes(HEADER + b"d\tb@exam")
    with open(directory / ORPHAN, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run(directory, found)
    assert found == [] and (directory / ORPHAN).read_bytes() == HEADER + b"d\tb@exam"


def test_a_dead_processes_spare_with_records_is_named_after_its_last_record(
        directory: Path, found: list[ActiveFile]) -> None:
    spare = directory / ".spare-d%2E4242%2E7%2Etsv"
    spare.write_bytes(HEADER + RECORD)
    os.utime(spare, (T, T))
    (directory / ".spare-d%2E4243%2E1%2Etsv").write_bytes(HEADER)  # never used
    run(directory, found)
    assert listing(directory) == ["d.2024-05-01-120000.tsv"]
    assert [(file.path.name, file.name) for file in found] == [
        ("d.2024-05-01-120000.tsv", "d.2024-05-01-120000.tsv")]
    assert (directory / "d.2024-05-01-120000.tsv").read_bytes() == HEADER + RECORD


def test_a_spare_that_died_while_being_named_is_taken_over_once(
        directory: Path, found: list[ActiveFile]) -> None:
    spare = directory / ".spare-d%2E4242%2E7%2Etsv"
    spare.write_bytes(HEADER + RECORD)
    os.link(spare, directory / ORPHAN)
    run(directory, found)
    assert listing(directory) == [ORPHAN]
    assert [file.path.name for file in found] == [ORPHAN]
