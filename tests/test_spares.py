"""Spare files: made ahead when wanted, hidden and locked with the header written, taken with
no file system call, replaced when deleted, removed on close."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta_logging import spares as spares_module
from mta_logging.activefile import ActiveFile
from mta_logging.faults import Faults
from mta_logging.spares import PREPARING, SPARE_AHEAD, Spares, spare_pattern, wants_spare

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


def test_close_does_not_wait_for_the_lock_a_fork_holds(spares: Spares, tmp_path: Path) -> None:
    """``os.fork`` takes PREPARING and then the logging module's lock; dictConfig closes the
    old handlers under that lock. A close that waited for PREPARING deadlocked the two."""
    spares.prepare(True, HEADER)
    closing = threading.Thread(target=spares.close)
    with PREPARING:  # as a fork in another thread holds it
        closing.start()
        closing.join(timeout=30)
        waited = closing.is_alive()
    closing.join()
    assert not waited
    assert listing(tmp_path / "delivered") == []


def test_a_spare_that_close_overtook_while_it_was_made_is_removed_by_its_maker(
        spares: Spares, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_header = spares_module.begin

    def closed_meanwhile(file: ActiveFile, header: bytes) -> None:
        write_header(file, header)
        spares.close()

    monkeypatch.setattr(spares_module, "begin", closed_meanwhile)
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
