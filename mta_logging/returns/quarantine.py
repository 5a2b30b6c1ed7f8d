"""The quarantine: returned mail that parses as neither a bounce nor a complaint, kept.

Each message is written byte for byte to ``<directory>/<time>-<random>.eml`` (a temporary
name, ``fsync``, rename, ``fsync`` of the directory), so that once :meth:`Quarantine.keep`
returns the message survives a crash; an operator reads it, and may feed it to
``mta-logging ingest-bounce --again`` (which handles messages it handled before). Nothing is
ever dropped: a failure to write raises.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from mta_logging.fsutil import fsync_directory, write_new_file


class Quarantine:
    """The quarantine directory (created, with its parents, on first use)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def keep(self, data: bytes) -> Path:
        """Store ``data`` durably; return its path. Raises OSError when it cannot."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(6)}.eml"
        temporary = self.directory / f".{name}.tmp"
        path = self.directory / name
        write_new_file(temporary, path, data)
        fsync_directory(self.directory)
        return path
