"""The one exception hierarchy of mta-logging."""

from __future__ import annotations

from typing import Any


class MtaLoggingError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(MtaLoggingError, ValueError):
    """A configuration value is missing, malformed or out of range.

    The message always names the key, the value that was given and what is allowed, e.g.
    ``max_size: 'big' is not a number; expected a size in megabytes such as 200 or 0.5``.
    """

    def __init__(self, key: str, value: Any, allowed: str, *, source: str | None = None) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {value!r} is not valid; {allowed}")


class FormatError(MtaLoggingError, ValueError):
    """An accounting file (or line) cannot be read: names the file and line."""
