"""Faults outside a record's write: reported through handleError once per episode, with a
message naming the handler, what it was doing and the error."""

from __future__ import annotations

import errno
import logging

import pytest

from mta_logging.faults import Faults

WHO = "accounting file handler for delivered records in /var/acct/delivered"


def disk_full() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def reports(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The messages handleError printed on stderr since the last call."""
    return [line for line in capsys.readouterr().err.splitlines()
            if line.startswith("Message: ")]


def test_a_failure_repeating_is_reported_once(capsys: pytest.CaptureFixture[str]) -> None:
    faults = Faults(logging.Handler(), WHO)
    for _ in range(3):
        faults.attempt("compressing d.X.tsv", disk_full)
    assert reports(capsys) == [
        f"Message: '{WHO} failed while compressing d.X.tsv: OSError: [Errno 28] No space left "
        "on device'"]


def test_after_a_success_the_same_failure_is_a_new_episode(
        capsys: pytest.CaptureFixture[str]) -> None:
    faults = Faults(logging.Handler(), WHO)
    faults.attempt("archiving d.X.tsv", disk_full)
    faults.attempt("archiving d.X.tsv", lambda: None)
    faults.attempt("archiving d.X.tsv", disk_full)
    assert len(reports(capsys)) == 2


def test_another_error_or_another_task_is_reported_too(
        capsys: pytest.CaptureFixture[str]) -> None:
    faults = Faults(logging.Handler(), WHO)
    faults.attempt("archiving d.X.tsv", disk_full)
    faults.attempt("naming d.Y.tsv", disk_full)
    try:
        raise OSError(errno.EIO, "Input/output error")
    except OSError:
        faults.report("archiving d.X.tsv")
    assert [message.split(" failed while ")[1] for message in reports(capsys)] == [
        "archiving d.X.tsv: OSError: [Errno 28] No space left on device'",
        "naming d.Y.tsv: OSError: [Errno 28] No space left on device'",
        "archiving d.X.tsv: OSError: [Errno 5] Input/output error'"]
