"""Recovery: taking over the active files and spares that dead processes left behind.

An active file nobody holds a lock on has no live owner. A last line cut short (by a crash
mid-write, whose record was never acknowledged) is cut off; a file holding nothing but a header
is removed; any other is handed back to be archived (or left where it is). A dead process's
spare that had records (it crashed before naming it) gets its visible name first, with the time
of its last record; an unused one is removed.
"""

from __future__ import annotations

import functools
import os

from mta_logging.activefile import ActiveDirectory, ActiveFile, cut_torn_line, link, lock_orphan
from mta_logging.spares import spare_maker, spare_pattern


def recover(files: ActiveDirectory, header: bytes, found: list[ActiveFile] | None) -> None:
    """Take over the orphans in ``files``' directory whose names its namer (or a spare of its
    kind) can produce. ``header``: the header a file holding nothing else carries. ``found``:
    where the orphans that hold records go, still locked, to be archived (None: they are left
    where they are, unlocked). Each is added as soon as it is taken over, so that a failure
    part-way loses none of those."""
    namer = files.namer
    pattern = namer.pattern()
    spares = spare_pattern(namer.kind, namer.extension)
    files.directory.mkdir(parents=True, exist_ok=True)
    for entry in sorted(files.directory.iterdir()):
        spare = spares.match(entry.name)
        if spare is None and (not pattern.match(entry.name) or entry.name.endswith(".gz")):
            continue
        fd = lock_orphan(entry)
        if fd is None:
            continue
        try:
            info = os.fstat(fd)
            if spare is not None and info.st_nlink > 1:
                # it died between naming it and removing the hidden name: the visible name
                # (listed after this one) is taken care of as any other file
                entry.unlink()
                os.close(fd)
                continue
            size = cut_torn_line(fd)
            if (size == 0 or (spare is not None and _one_line(fd, size))
                    or (size == len(header) and os.pread(fd, size, 0) == header)):
                entry.unlink()  # nothing but a header
                os.close(fd)
                continue
            name = namer.unsuffixed(entry.name)  # what the archive is named after
            if spare is not None:  # named after its last record's time
                hidden = entry
                name = namer.render(info.st_mtime, 0, pid=spare_maker(spare))
                entry, _number, _ = files.free_name(name, functools.partial(link, hidden))
                os.unlink(hidden)
        except BaseException:
            os.close(fd)
            raise
        if found is not None:
            found.append(ActiveFile(fd, entry, name, size=size))
        else:
            os.close(fd)


def _one_line(fd: int, size: int) -> bool:
    """True if the file holds one line (a spare's first line is its header), not more."""
    head = os.pread(fd, min(size, 1 << 16), 0)
    return head.find(b"\n") + 1 == size
