"""The one exception hierarchy of mta-logging."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

_YAML_SUFFIXES = (".yaml", ".yml")


class MtaLoggingError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(MtaLoggingError, ValueError):
    """A configuration value is missing, malformed or out of range.

    The message always names the key, the value that was given and what is allowed, e.g.
    ``max_size: 'big' is not a number; expected a size in megabytes such as 200 or 0.5``.
    The value is spelt as the source spells it: as YAML when ``source`` is a YAML file
    (``true``, ``null``; see :func:`spell_value`), else as Python (a mapping given in code, an
    INI file's text).
    """

    def __init__(self, key: str, value: Any, allowed: str, *, source: str | None = None) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {spell_value(value, source)} is not valid; {allowed}")

    def located(self, source: str) -> ConfigError:
        """This error, naming ``source`` (the file) unless it names one already."""
        if self.source is not None:
            return self
        return ConfigError(self.key, self.value, self.allowed, source=source)


def spell_value(value: Any, source: str | None) -> str:
    """``value`` as the source it came from spells it: YAML's ``true``/``false``/``null`` and
    ``.inf`` when ``source`` names a YAML file (``r6.yaml``, ``logging.yml``), Python's
    ``repr`` otherwise; text is quoted (``'perhaps'``) either way, so it reads apart from the
    rest."""
    if source is not None and source.lower().endswith(_YAML_SUFFIXES):
        return _yaml(value)
    return repr(value)


def _yaml(value: Any) -> str:
    """A value as it is written in YAML's flow style (text in quotes)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_yaml(k)}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(item) for item in value) + "]"
    return repr(value)


class FormatError(MtaLoggingError, ValueError):
    """An accounting file (or line) cannot be read: names the file and line."""


_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")  # postgresql://user:PASSWORD@host/...
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*")  # postgresql://host/db?password=...


def without_password(dsn: str) -> str:
    """``dsn`` with its password (``user:PASSWORD@`` or a ``password=`` parameter) as
    ``***``: how a DSN is shown in output and error messages."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", dsn))
