"""Finished accounting files: naming, moving into the archive, compressing, pruning.

Everything here works on paths and is safe against other processes doing the same at the same
time: a file appears under its final name only when it is complete (link, never overwrite), and
a name that is taken gets a ``.N`` suffix before the extension instead.
"""

from __future__ import annotations

import errno
import gzip
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
_PLACEHOLDERS = ("ext", "host", "kind", "pid", "seq", "time")
_PLACEHOLDER = re.compile(r"\{(\w*)\}")
_MAX_SUFFIX = 10_000


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


def link_exclusive(source: Path, directory: Path, name: str, namer: FileNamer) -> Path:
    """Give ``source`` a name in ``directory`` that nobody else has; returns it.

    Hard links make the new name appear atomically and never replace an existing file. Across
    file systems (EXDEV) the content is copied to a hidden name first.
    """
    for number in range(_MAX_SUFFIX):
        target = directory / namer.suffixed(name, number)
        try:
            os.link(source, target)
            return target
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            staged = directory / f".{target.name}.{os.getpid()}.tmp"
            shutil.copyfile(source, staged)
            try:
                return link_exclusive(staged, directory, name, namer)
            finally:
                staged.unlink(missing_ok=True)
    raise FileExistsError(errno.EEXIST, f"no free name for {name} in {directory}")


def move_exclusive(source: Path, directory: Path, name: str, namer: FileNamer) -> Path:
    """Move ``source`` into ``directory`` under ``name`` (or ``name`` with a suffix)."""
    target = link_exclusive(source, directory, name, namer)
    os.unlink(source)
    return target


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pending_name(name: str) -> str:
    return f".{name}{PENDING}"


def compress_pending(pending: Path, namer: FileNamer, fsync: bool = True) -> Path:
    """Compress a hidden ``.NAME.pending`` file to ``NAME.gz`` next to it; returns the .gz path.

    The .gz name appears only when the compressed file is complete; the pending file is removed
    after that, so a crash at any point leaves the records in exactly one visible file or in the
    pending file (which the next start compresses).
    """
    directory = pending.parent
    name = pending.name[1: -len(PENDING)]
    staged = directory / f".{name}.gz.{os.getpid()}.tmp"
    with open(pending, "rb") as src, open(staged, "wb") as raw:
        with gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=int(time.time())) as gz:
            shutil.copyfileobj(src, gz, 1 << 20)
        if fsync:
            raw.flush()
            os.fsync(raw.fileno())
    try:
        target = link_exclusive(staged, directory, name + ".gz", namer)
    finally:
        staged.unlink(missing_ok=True)
    pending.unlink()
    if fsync:
        fsync_directory(directory)
    return target


def prune(directory: Path, pattern: re.Pattern[str], *, max_age_days: float | None,
          max_files: int | None, now: float | None = None) -> list[Path]:
    """Delete archived files (matching ``pattern``) older than ``max_age_days`` or beyond the
    ``max_files`` newest. Returns what was deleted."""
    if max_age_days is None and max_files is None:
        return []
    entries: list[tuple[float, str, Path]] = []
    with os.scandir(directory) as scan:
        for entry in scan:
            if pattern.match(entry.name) and entry.is_file(follow_symlinks=False):
                entries.append((entry.stat().st_mtime, entry.name, Path(entry.path)))
    entries.sort(reverse=True)
    now = time.time() if now is None else now
    doomed = []
    for index, (mtime, _name, file) in enumerate(entries):
        too_old = max_age_days is not None and now - mtime > max_age_days * 86400
        too_many = max_files is not None and index >= max_files
        if too_old or too_many:
            file.unlink(missing_ok=True)
            doomed.append(file)
    return doomed
