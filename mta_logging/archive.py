"""Finished accounting files: naming, moving into the archive, compressing, pruning.

Everything here works on paths and is safe against other processes doing the same at the same
time: a file appears under its final name only when it is complete (link, never overwrite), and
a name that is taken gets a ``.N`` suffix before the extension instead.

Compression works on hidden ``.NAME.pending`` files in the archive directory. A process
compresses one only while it holds an advisory lock on it; the compressed data is staged as
``.NAME.pending.gz``, linked to its visible name ``NAME.gz`` (or ``NAME.N.gz``), and only then
are the two hidden files removed. A crash at any step leaves the records in exactly one visible
file, or in the pending file, which the next start compresses (a staged file that was already
linked is recognised by its link count and not published twice).
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import itertools
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from mta_logging.errors import ConfigError

DEFAULT_FILE_NAME = "{kind}.{time}.{ext}"
TIME_IN_NAME = "%Y-%m-%d-%H%M%S"
PENDING = ".pending"  # hidden name of a file waiting in the archive directory to be compressed
STAGED = PENDING + ".gz"  # its compressed copy, before it gets its visible name
_PLACEHOLDERS = ("ext", "host", "kind", "pid", "seq", "time")
_PLACEHOLDER = re.compile(r"\{(\w*)\}")
_MAX_SUFFIX = 100_000


def check_template(template: str) -> str:
    """Validate a file name template; ConfigError naming an unknown placeholder."""
    if not isinstance(template, str) or not template.strip():
        raise ConfigError("file_name", template, "expected a template such as {kind}.{time}.{ext}")
    for name in _PLACEHOLDER.findall(template):
        if name not in _PLACEHOLDERS:
            raise ConfigError(
                "file_name", template,
                f"unknown placeholder {{{name}}}; allowed: "
                + ", ".join("{" + p + "}" for p in _PLACEHOLDERS),
            )
    if "/" in template or template.startswith("."):
        raise ConfigError("file_name", template,
                          "must be a plain file name (no '/', not starting with '.')")
    if not any(p in template for p in ("{time}", "{seq}", "{pid}")):
        raise ConfigError("file_name", template,
                          "must contain {time}, {seq} or {pid} so that new files get new names")
    return template


@dataclass(frozen=True, slots=True)
class FileNamer:
    """Renders file names from a template with ``{kind} {time} {host} {pid} {seq} {ext}``."""

    template: str
    kind: str
    extension: str

    def __post_init__(self) -> None:
        check_template(self.template)

    def render(self, timestamp: float, seq: int, pid: int | None = None) -> str:
        return self.template.format(
            kind=self.kind,
            time=time.strftime(TIME_IN_NAME, time.localtime(timestamp)),
            host=socket.gethostname().split(".")[0],
            pid=os.getpid() if pid is None else pid,
            seq=seq,
            ext=self.extension,
        )

    def suffixed(self, name: str, number: int) -> str:
        """The name to use when ``name`` is taken: ``d.X.tsv`` → ``d.X.1.tsv`` (``.N`` goes
        before the extension when the template ends with ``.{ext}``, else at the end)."""
        if number == 0:
            return name
        stem, gz = (name[:-3], ".gz") if name.endswith(".gz") else (name, "")
        tail = "." + self.extension
        if self.template.endswith(".{ext}") and stem.endswith(tail):
            return f"{stem[: -len(tail)]}.{number}{tail}{gz}"
        return f"{stem}.{number}{gz}"

    def pattern(self) -> re.Pattern[str]:
        """Matches every name this namer can produce, with a collision suffix and ``.gz``."""
        parts = {
            "kind": re.escape(self.kind),
            "time": r"\d{4}-\d{2}-\d{2}-\d{6}",
            "host": r"[^/]+?",
            "pid": r"\d+",
            "seq": r"\d+",
            "ext": re.escape(self.extension),
        }
        template = self.template
        ends_with_ext = template.endswith(".{ext}")
        if ends_with_ext:
            template = template[: -len(".{ext}")]
        out, last = [], 0
        for match in _PLACEHOLDER.finditer(template):
            out.append(re.escape(template[last:match.start()]))
            out.append(parts[match.group(1)])
            last = match.end()
        out.append(re.escape(template[last:]))
        out.append(r"(?:\.\d+)?")
        if ends_with_ext:
            out.append(r"\." + parts["ext"])
        return re.compile("".join(out) + r"(?:\.gz)?\Z")


def pending_name(name: str) -> str:
    """The hidden name under which ``name`` waits in the archive directory for compression."""
    return f".{name}{PENDING}"


def visible_name(pending: str) -> str:
    """``.NAME.pending`` → ``NAME``."""
    return pending[1: -len(PENDING)]


def link_exclusive(source: Path, directory: Path, name: str, namer: FileNamer, *,
                   start: int = 0, hidden: bool = False, prefer: str | None = None,
                   ) -> tuple[Path, int]:
    """Give ``source`` a name in ``directory`` that nobody else has: ``prefer`` if given and
    free, else ``name`` with the first free suffix from ``start`` on (``hidden``: the pending
    name of that). Returns the new path and the suffix number used (-1 for ``prefer``).

    Hard links make the new name appear atomically and never replace an existing file. Across
    file systems (EXDEV) the content is copied to a hidden name first.
    """
    suffixed = ((namer.suffixed(name, n), n) for n in range(start, start + _MAX_SUFFIX))
    candidates = itertools.chain([(prefer, -1)] if prefer is not None else [], suffixed)
    for visible, number in candidates:
        target = directory / (pending_name(visible) if hidden else visible)
        try:
            os.link(source, target)
            return target, number
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            staged = directory / f".{visible}.{os.getpid()}.tmp"
            shutil.copyfile(source, staged)
            try:
                return link_exclusive(staged, directory, name, namer, start=max(number, 0),
                                      hidden=hidden, prefer=prefer if number < 0 else None)
            finally:
                staged.unlink(missing_ok=True)
    raise FileExistsError(errno.EEXIST, f"no free name for {name} in {directory}")


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def compress_pending(pending: Path, namer: FileNamer, fsync: bool = True) -> Path | None:
    """Compress a hidden ``.NAME.pending`` file to ``NAME.gz`` (or ``NAME.N.gz``) next to it.

    Returns the new .gz path, or None when there is nothing to do here: the file is gone, another
    process or thread is compressing it (it holds its lock), or it still has a second link (a
    crash left it in an active directory too; recovery there settles it first).
    """
    directory = pending.parent
    name = visible_name(pending.name)
    try:
        fd = os.open(pending, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        source = os.fstat(fd)
        if source.st_nlink != 1 or not _is(pending, source):
            return None
        staged = directory / (pending.name + ".gz")
        target = _published(staged)
        if target is None:
            _write_gzip(fd, staged, name, source, fsync)
            target, _number = link_exclusive(staged, directory, name + ".gz", namer)
        os.unlink(pending)
        staged.unlink(missing_ok=True)
        if fsync:
            fsync_directory(directory)
        return target
    finally:
        os.close(fd)


def finish_staged(staged: Path) -> bool:
    """Remove a ``.NAME.pending.gz`` left without its pending file once it has been published
    (a crash between the last two steps of ``compress_pending``). True if it was removed."""
    if (staged.parent / staged.name[: -len(".gz")]).exists() or _published(staged) is None:
        return False
    staged.unlink(missing_ok=True)
    return True


def _published(staged: Path) -> Path | None:
    """The visible name a staged .gz was already linked to, if any."""
    try:
        info = os.stat(staged)
    except FileNotFoundError:
        return None
    if info.st_nlink < 2:
        return None
    with os.scandir(staged.parent) as scan:
        for entry in scan:
            if entry.inode() == info.st_ino and not entry.name.startswith("."):
                return Path(entry.path)
    return None


def _write_gzip(fd: int, staged: Path, name: str, source: os.stat_result, fsync: bool) -> None:
    """Compress what ``fd`` holds into ``staged`` (whole, or not at all), keeping its mtime."""
    scratch = staged.with_name(staged.name + ".tmp")
    with open(fd, "rb", closefd=False) as src, open(scratch, "wb") as raw:
        src.seek(0)
        with gzip.GzipFile(filename=name, mode="wb", fileobj=raw,
                           mtime=int(source.st_mtime)) as gz:
            shutil.copyfileobj(src, gz, 1 << 20)
        if fsync:
            raw.flush()
            os.fsync(raw.fileno())
    # the archive's age is the age of its records, not of the compression run
    os.utime(scratch, ns=(source.st_atime_ns, source.st_mtime_ns))
    os.replace(scratch, staged)


def _is(path: Path, info: os.stat_result) -> bool:
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    return (there.st_ino, there.st_dev) == (info.st_ino, info.st_dev)


# The retention interlock with ``mta-logging ship``: in a directory holding HOLD_MARKER, an
# archived file is deleted by retention only once the shipper marked it shipped, i.e. wrote its
# size (the size it had when every sink had acknowledged all of it) to shipped_marker(file).
HOLD_MARKER = ".ship-hold"


def shipped_marker(file: Path) -> Path:
    """The hidden file by which the shipper marks ``file`` shipped (it holds the file's size)."""
    return file.with_name(f".{file.name}.shipped")


def held_for_shipping(file: Path, size: int) -> bool:
    """True when retention must keep ``file`` (of ``size`` bytes): its directory is held by a
    shipper and the file is not marked shipped at that size."""
    if not (file.parent / HOLD_MARKER).exists():
        return False
    try:
        return shipped_marker(file).read_text(encoding="ascii").strip() != str(size)
    except (OSError, UnicodeDecodeError):
        return True


def prune(directory: Path, pattern: re.Pattern[str], *, max_age_days: float | None,
          max_files: int | None, now: float | None = None) -> list[Path]:
    """Delete archived files (matching ``pattern``) older than ``max_age_days`` or beyond the
    ``max_files`` newest, except those held for shipping (``held_for_shipping``). Returns what
    was deleted."""
    if max_age_days is None and max_files is None:
        return []
    entries: list[tuple[float, str, int, Path]] = []
    with os.scandir(directory) as scan:
        for entry in scan:
            if pattern.match(entry.name) and entry.is_file(follow_symlinks=False):
                info = entry.stat()
                entries.append((info.st_mtime, entry.name, info.st_size, Path(entry.path)))
    entries.sort(reverse=True)
    now = time.time() if now is None else now
    doomed = []
    for index, (mtime, _name, size, file) in enumerate(entries):
        too_old = max_age_days is not None and now - mtime > max_age_days * 86400
        too_many = max_files is not None and index >= max_files
        if (too_old or too_many) and not held_for_shipping(file, size):
            file.unlink(missing_ok=True)
            shipped_marker(file).unlink(missing_ok=True)
            doomed.append(file)
    return doomed
