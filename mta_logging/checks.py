"""Checks of single values read from a YAML settings file (the relay's, the shipper's): known
keys, flags, non-empty text, seconds, counts. Each error names the dotted key, the value as
written and what is allowed (``ConfigError``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mta_logging.errors import ConfigError

__all__ = ["check_keys", "count", "flag", "seconds", "text"]


def check_keys(prefix: str, data: Any, allowed: tuple[str, ...], *, what: str = "settings"
               ) -> None:
    """``data`` is a mapping whose keys are all in ``allowed``; ``prefix`` (``"nats."``, or
    ``""`` at the top) names where it is, ``what`` the whole file when ``prefix`` is empty."""
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or what, data, "expected a mapping")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{prefix}{key}", data[key],
                              "unknown setting; allowed: " + ", ".join(allowed))


def flag(key: str, value: Any, default: bool) -> bool:
    """``true`` or ``false`` (a YAML boolean, nothing else); ``default`` when not given."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(key, value, "expected true or false")
    return value


def text(key: str, value: Any) -> str:
    """Non-empty text, surrounding white space removed."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, value, "expected a non-empty text")
    return value.strip()


def seconds(key: str, value: Any, default: float, *, allow_zero: bool = False) -> float:
    """A number of seconds, greater than 0 (or at least 0 with ``allow_zero``); ``default``
    when not given."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(key, value, "expected a number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, value, "expected a number of seconds greater than 0")
    return float(value)


def count(key: str, value: Any, default: int) -> int:
    """A whole number of at least 1; ``default`` when not given."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "expected a whole number of at least 1")
    return value
