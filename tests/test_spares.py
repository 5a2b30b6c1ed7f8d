"""Spare files: made ahead when wanted, hidden and locked with the header written, taken with
no file system call, replaced when deleted, removed on close."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta_logging.activefile import ActiveFile
from mta_logging.faults import Faults
from mta_logging.spares import SPARE_AHEAD, Spares, spare_pattern, wants_spare

HEADER = b"type\trcpt\n"


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture
def spares(tmp_path: Path) -> Iterator[Spares]:
    faults = Faults(logging.Handler(), "accounting file handler for delivered records")
    made = Spares(tmp_path / "delivered", "d", "tsv", faults)
    yield made
    made.close()


def test_a_spare_is_made_only_when_wanted(spares: Spares, tmp_path: Path) -> None:
    spares.prepare(False, HEADER)
    assert not (tmp_path / "delivered").exists()
    spares.prepare(True, HEADER)
    (name,) = listing(tmp_path / "delivered")
    match = spare_pattern("d", "tsv").match(name)
    assert match is not None and match[1] == str(os.getpid())
    assert (tmp_path / "delivered" / name).read_bytes() == HEADER


def test_a_taken_spare_is_the_file_that_was_made(spares: Spares, tmp_path: Path) -> None:
    spares.prepare(True, HEADER)
    (name,) = listing(tmp_path / "delivered")
    spare = spares.take(HEADER)
    assert spare is not None
    try:
        assert (spare.path.name, spare.named, spare.size, spare.header_size) == (
            name, False, len(HEADER), len(HEADER))
        assert spares.take(HEADER) is None  # one spare, taken once
    finally:
        os.close(spare.fd)


def test_a_spare_with_another_header_is_removed_instead_of_used(
        spares: Spares, tmp_path: Path) -> None:
    spares.prepare(True, HEADER)
    assert spares.take(b"type\trcpt\tjobId\n") is None
    assert listing(tmp_path / "delivered") == []


def test_a_deleted_spare_is_replaced(spares: Spares, tmp_path: Path) -> None:
    spares.prepare(True, HEADER)
    (first,) = listing(tmp_path / "delivered")
    (tmp_path / "delivered" / first).unlink()
    spares.prepare(True, HEADER)
    (second,) = listing(tmp_path / "delivered")
    assert second != first


def test_close_removes_the_spare_and_no_more_are_made(spares: Spares, tmp_path: Path) -> None:
    spares.prepare(True, HEADER)
    spares.close()
    spares.prepare(True, HEADER)
    assert listing(tmp_path / "delivered") == [] and spares.take(HEADER) is None


def test_a_spare_that_cannot_be_made_is_reported_once_per_episode(
        spares: Spares, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "delivered").write_text("a file where the directory must be")
    spares.prepare(True, HEADER)
    spares.prepare(True, HEADER)
    errors = capsys.readouterr().err
    assert errors.count("--- Logging error ---") == 1
    assert (f"accounting file handler for delivered records failed while preparing the next "
            f"file in {tmp_path / 'delivered'}: FileExistsError") in errors
    (tmp_path / "delivered").unlink()
    spares.prepare(True, HEADER)  # the fault cleared: a spare is made
    spare = spares.take(HEADER)
    assert spare is not None
    os.close(spare.fd)
    spare.path.unlink()
    (tmp_path / "delivered").rmdir()
    (tmp_path / "delivered").write_text("blocked again")
    spares.prepare(True, HEADER)
    assert capsys.readouterr().err.count("--- Logging error ---") == 1  # a new episode


@pytest.mark.parametrize("size, rolled, now, wanted", [
    (10, False, 0.0, False),  # a fresh file far from its deadline
    (50, False, 0.0, True),  # half full
    (10, True, 0.0, True),  # its handler rolled over before
    (10, False, 100 - SPARE_AHEAD, True),  # its interval ends soon
])
def test_a_spare_is_wanted_half_full_near_the_deadline_or_after_a_rollover(
        size: int, rolled: bool, now: float, wanted: bool) -> None:
    file = ActiveFile(-1, Path("d.tsv"), "d.tsv", size=size, rollover_at=100.0)
    assert wants_spare(file, rolled, 100, now) is wanted
    assert wants_spare(None, True, 100, now) is False
    assert wants_spare(ActiveFile(-1, Path("d.tsv"), "d.tsv", rollover_at=math.inf),
                       False, 100, 1e9) is False
