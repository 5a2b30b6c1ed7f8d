"""File names: rendering a name template, the suffix a taken name gets, the pattern that
recognises every name a template can produce (collision suffix and ``.gz`` included), and the
hidden names of the writer's working files.

A working file (a file waiting for compression, its compressed copy in the making, a spare) has
a hidden name with a leading ``.`` and no other: ``.<role>-<name>``, the name it stands for
written with ``%`` as ``%25`` and ``.`` as ``%2E`` (``.pending-d%2E2026-11-26-063531%2Etsv``).
No glob for the visible files (``*.tsv``, ``*.tsv.gz``, ``**/*.tsv*``, ``*.jsonl*``) matches
one, not even where dot files are not left out (DuckDB), and the name stays derivable.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass

from mta_logging.errors import ConfigError

DEFAULT_FILE_NAME = "{kind}.{time}.{ext}"
TIME_IN_NAME = "%Y-%m-%d-%H%M%S"
_PLACEHOLDERS = ("ext", "host", "kind", "pid", "seq", "time")
_PLACEHOLDER = re.compile(r"\{(\w*)\}")
_ESCAPED = re.compile(r"(?:[^%.]|%25|%2E)+")
_ESCAPE = re.compile(r"%25|%2E")


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

    def unsuffixed(self, name: str) -> str:
        """The name ``suffixed`` made ``name`` from: ``d.X.1.tsv`` → ``d.X.tsv`` (``name``
        itself if it has no suffix or is not a name of this namer's)."""
        match = self.pattern().match(name)
        if match is None or match["suffix"] is None:
            return name
        return name[: match.start("suffix")] + name[match.end("suffix"):]

    def pattern(self) -> re.Pattern[str]:
        """Matches every name this namer can produce, with a collision suffix (group
        ``suffix``) and ``.gz``."""
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
        out.append(r"(?P<suffix>\.\d+)?")
        if ends_with_ext:
            out.append(r"\." + parts["ext"])
        return re.compile("".join(out) + r"(?:\.gz)?\Z")


def escape_dots(name: str) -> str:
    """``name`` with ``%`` written as ``%25`` and ``.`` as ``%2E``: no dot left."""
    return name.replace("%", "%25").replace(".", "%2E")


def hidden_name(role: str, name: str) -> str:
    """The hidden name of the working file of ``role`` that stands for ``name``:
    ``.<role>-<name, dots escaped>``."""
    return f".{role}-{escape_dots(name)}"


def unhidden(role: str, hidden: str) -> str | None:
    """The name ``hidden_name(role, name)`` made ``hidden`` from; None if it is no such name."""
    prefix = f".{role}-"
    if not hidden.startswith(prefix) or _ESCAPED.fullmatch(hidden, len(prefix)) is None:
        return None
    return _ESCAPE.sub(lambda escape: "%" if escape[0] == "%25" else ".", hidden[len(prefix):])


__all__ = ["DEFAULT_FILE_NAME", "TIME_IN_NAME", "FileNamer", "check_template", "escape_dots",
           "hidden_name", "unhidden"]
