"""The quarantine keeps each message byte for byte, durably, and never drops one silently."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mta_logging.returns.quarantine import Quarantine


def test_each_message_is_its_own_file_byte_for_byte(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "q" / "returns")
    first = quarantine.keep(b"From: a\r\n\r\n\xff raw bytes\r\n")
    second = quarantine.keep(b"From: a\r\n\r\n\xff raw bytes\r\n")
    assert first != second and first.suffix == ".eml"
    assert first.read_bytes() == second.read_bytes() == b"From: a\r\n\r\n\xff raw bytes\r\n"
    assert sorted(p.name for p in (tmp_path / "q" / "returns").iterdir()) == sorted(
        [first.name, second.name])


def test_a_failed_write_raises_and_leaves_no_partial_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        Quarantine(tmp_path).keep(b"message")
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_the_directory_must_be_raises(tmp_path: Path) -> None:
    (tmp_path / "q").write_text("not a directory")
    with pytest.raises(OSError):
        Quarantine(tmp_path / "q").keep(b"message")
