"""Checkpoints: how far each sink has acknowledged each file.

One small JSON file per sink and file, ``<state_dir>/<sink>/<fingerprint>.json``, written to
a temporary name, fsync'd and renamed over the old one (then the directory fsync'd), so that a
crash at any moment leaves either the old or the new checkpoint, never a torn one. A checkpoint
only moves forward after the sink acknowledged every record before ``offset``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from mta_logging.fsutil import replace_file

log = logging.getLogger("mta_logging.ship")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything before byte ``offset`` (uncompressed) of the file with ``fingerprint`` is
    acknowledged; ``line`` is the number of the line that ends there. ``device``/``inode`` name
    the file last read; ``size`` and ``mtime_ns`` are its size on disk and modification time
    when it was read to its end with nothing unacknowledged (size -1 otherwise): such a file is
    done until it changes (the time tells a new file on a reused inode). ``path`` is for people.
    """

    fingerprint: str
    offset: int
    line: int
    device: int
    inode: int
    size: int
    mtime_ns: int
    path: str

    def done(self, info: os.stat_result) -> bool:
        """True when the file ``info`` describes was read to its end as it is now, all of it
        acknowledged."""
        return self.size >= 0 and (self.device, self.inode, self.size, self.mtime_ns) == (
            info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


class CheckpointStore:
    """The checkpoints of one sink, loaded at start and kept in memory."""

    def __init__(self, state_dir: Path, sink: str) -> None:
        self.directory = state_dir / sink
        self.directory.mkdir(parents=True, exist_ok=True)
        self._by_fingerprint: dict[str, Checkpoint] = {}
        self._by_inode: dict[tuple[int, int], Checkpoint] = {}
        for file in self.directory.glob("*.json"):
            try:
                checkpoint = Checkpoint(**json.loads(file.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("%s: unreadable checkpoint ignored (%s); its file is shipped "
                            "again from the start", file, exc)
                continue
            self._remember(checkpoint)

    def get(self, fingerprint: str) -> Checkpoint | None:
        return self._by_fingerprint.get(fingerprint)

    def by_inode(self, device: int, inode: int) -> Checkpoint | None:
        """The checkpoint last taken on the file (device, inode), if any."""
        return self._by_inode.get((device, inode))

    def save(self, checkpoint: Checkpoint) -> None:
        """Make ``checkpoint`` durable (fsync'd, atomically replacing the previous one)."""
        target = self.directory / f"{checkpoint.fingerprint}.json"
        scratch = self.directory / f".{checkpoint.fingerprint}.{os.getpid()}.tmp"
        replace_file(target, scratch, json.dumps(asdict(checkpoint)).encode())
        self._remember(checkpoint)

    def _remember(self, checkpoint: Checkpoint) -> None:
        old = self._by_fingerprint.get(checkpoint.fingerprint)
        if old is not None:
            self._by_inode.pop((old.device, old.inode), None)
        self._by_fingerprint[checkpoint.fingerprint] = checkpoint
        self._by_inode[(checkpoint.device, checkpoint.inode)] = checkpoint
