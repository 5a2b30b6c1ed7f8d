"""The shipper's side of the retention interlock (the archive's side: ``archive.prune``).

The shipper puts ``.ship-hold`` into every directory it ships files from; from then on
retention (``retention_days``/``retention_files``) deletes an archived file there only when
the shipper has marked it shipped: ``.shipped-<name>`` (``archive.shipped_marker``) holding
the file's size, written once
every sink acknowledged all of the file at that size. Markers whose file is gone are removed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from mta_logging.archive import HOLD_MARKER, SHIPPED, shipped_marker
from mta_logging.naming import hidden_name, unhidden

log = logging.getLogger("mta_logging.ship")


def hold(directories: Iterable[Path]) -> None:
    """Make retention in ``directories`` wait for the shipper."""
    for directory in directories:
        marker = directory / HOLD_MARKER
        if not marker.exists():
            marker.touch()
            log.info("%s: retention now keeps files until they are shipped", directory)


def mark_shipped(file: Path, size: int) -> None:
    """Let retention delete ``file`` while it has ``size`` bytes."""
    marker = shipped_marker(file)
    text = str(size)
    try:
        if marker.read_text(encoding="ascii") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass  # no marker yet (or a bad one): write it
    scratch = marker.with_name(hidden_name(f"{SHIPPED}{os.getpid()}", file.name))
    scratch.write_text(text, encoding="ascii")
    os.replace(scratch, marker)


def remove_orphans(directory: Path) -> None:
    """Remove the shipped markers in ``directory`` whose file is gone."""
    with os.scandir(directory) as scan:
        names = {entry.name for entry in scan}
    for name in names:
        shipped = unhidden(SHIPPED, name)
        if shipped is not None and shipped not in names:
            (directory / name).unlink(missing_ok=True)
