"""One validation of every accounting setting, whichever way it is given.

``configure()``, the INI and YAML readers (:mod:`mta_logging.config`), ``logging.dictConfig``
and code that builds :class:`~mta_logging.handlers.AccountingFileHandler` or the formatters
itself all pass a setting's value through the function here named after its key, so a key is
accepted or refused, and means the same value, on every path. Each function takes the value as
the user wrote it and returns the value the handler or formatter uses, or raises
``ConfigError(key, value, allowed)`` with the value as given.

The rules, the same everywhere:

* text (``path``, ``extension``, ``file_name``, ``logger``, ``placeholder``, ``separator``,
  ``time_format``, directories): a string, or a number, which stands for its text (an INI file
  has only text, so ``extension: 2026`` in YAML means what ``extension=2026`` means in INI);
  names, paths and ``file_name`` lose surrounding white space and must not be empty
  (``placeholder`` and ``time_format`` are taken as they are);
* flags (``archiving``, ``compress``, ``archive_empty``, ``utc``, ``propagate``): a bool, or
  ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0`` in any case;
* numbers (``archive_interval``, ``max_size``, ``retention_days``): a number or its text,
  finite, not a bool; ``retention_days`` and ``retention_files`` may be empty (None) for none;
* ``retention_files``: a whole number written as one (``10``, not ``10.0`` or ``2.5``), at
  least 1;
* choices (``fsync``, ``format``): in any case and with surrounding white space, returned in
  lower case (``fsync: ALWAYS`` is ``always``);
* ``records``: the kinds to write (PowerMTA's setting), comma-separated text or a list of
  codes or names (``d,df,b``, ``delivered, received``, ``rb,f``), each once.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from mta_logging.errors import ConfigError
from mta_logging.fields import TimeText, parse_fields
from mta_logging.naming import check_template
from mta_logging.outcome import Kind

FSYNC_POLICIES = ("never", "rollover", "always")
FORMATS = ("separated", "json")
_FORMAT_ALIASES = {"tsv": "separated", "csv": "separated", "text": "separated"}
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_WHOLE = re.compile(r"\+?[0-9]+")


def _as_text(value: Any) -> str | None:
    """The text a value stands for (a number stands for its text); None if it is not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _name(key: str, value: Any, allowed: str) -> str:
    """Non-empty text (or a path object) without NUL, surrounding white space removed."""
    fspath = os.fspath(value) if isinstance(value, os.PathLike) else value
    text = _as_text(fspath)
    if text is None or not text.strip() or "\0" in text:
        raise ConfigError(key, value, allowed)
    return text.strip()


def parse_flag(key: str, value: Any) -> bool:
    """A boolean setting: a bool, or true/false, yes/no, on/off, 1/0 in any case."""
    if isinstance(value, bool):
        return value
    text = _as_text(value)
    if text is not None and text.strip().lower() in _TRUE:
        return True
    if text is not None and text.strip().lower() in _FALSE:
        return False
    raise ConfigError(key, value, "expected true or false")


def _choice(key: str, value: Any, allowed: tuple[str, ...],
            aliases: Mapping[str, str] | None = None) -> str:
    text = _as_text(value)
    choice = "" if text is None else text.strip().lower()
    choice = (aliases or {}).get(choice, choice)
    if choice not in allowed:
        raise ConfigError(key, value, "expected one of " + ", ".join(allowed))
    return choice


def _number(key: str, value: Any, allowed: str, *, positive: bool = False) -> float:
    """A finite number (or its text), at least 0; greater than 0 when ``positive``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Number | str):
        raise ConfigError(key, value, allowed)
    try:
        number = float(value)  # type: ignore[arg-type]  # a complex number: TypeError
    except (TypeError, ValueError):
        raise ConfigError(key, value, allowed) from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ConfigError(key, value, allowed)
    return number


def _empty(value: Any) -> bool:
    """None or blank text: an optional setting that is not set."""
    return value is None or (isinstance(value, str) and not value.strip())


def path(value: Any, key: str = "path") -> str:
    """A directory path (``path``; the handler's ``directory``): text, surrounding white space
    removed, not empty."""
    return _name(key, value, "expected a directory path such as accounting_files")


def directory_name(value: Any, key: str) -> str:
    """A kind's directory (``location.<kind>``, ``archive_to`` / ``archive_to.<kind>``): a name
    or path, relative to its parent unless absolute."""
    return _name(key, value, "expected a directory name or path")


def extension(value: Any) -> str:
    """A file extension, without leading dots (``.tsv`` is ``tsv``); no ``/``."""
    allowed = "expected a file extension such as tsv (no '/')"
    text = _name("extension", value, allowed).lstrip(".")
    if not text or "/" in text:
        raise ConfigError("extension", value, allowed)
    return text


def file_name(value: Any) -> str:
    """A file name template (see :func:`mta_logging.naming.check_template`)."""
    text = _as_text(value)
    try:
        return check_template("" if text is None else text.strip())
    except ConfigError as exc:  # named with the value as written
        raise ConfigError("file_name", value, exc.allowed) from None


def logger(value: Any) -> str:
    """The name of the logger the handlers are installed on."""
    return _name("logger", value, "expected a logger name such as mta.accounting")


def separator(value: Any) -> str:
    """One character, not a quote, backslash, CR or LF; ``\\t`` (two characters) or ``tab``
    (any case) for a tab."""
    text = _as_text(value)
    if text is not None and text.lower() in ("\\t", "tab"):
        return "\t"
    if text is None or len(text) != 1 or text in '"\\\r\n':
        raise ConfigError(
            "separator", value,
            "expected one character such as ',' or ';', or '\\t'/'tab' for a tab "
            "(not a quote, backslash or line break)",
        )
    return text


def placeholder(value: Any, *, beside: str | None = None) -> str:
    """What is written for an unknown value: text without CR, LF or backslash (kept as it is,
    white space included), and without the separator ``beside`` when one is given."""
    text = _as_text(value)
    if text is None or any(c in text for c in "\r\n\\"):
        raise ConfigError("placeholder", value, "expected text without line breaks or backslash")
    if beside is not None and beside in text:
        raise ConfigError("placeholder", value, "must not contain the separator")
    return text


def time_format(value: Any) -> str:
    """A strftime format (as :class:`~mta_logging.fields.TimeText` takes it)."""
    text = _as_text(value)
    if text is None:
        raise ConfigError("time_format", value, "expected a strftime format")
    TimeText(text)  # raises ConfigError for a bad format
    return text


def fields(value: Any, key: str = "fields") -> tuple[str, ...] | None:
    """A field list: comma-separated text or a list of names; None (not given) stands for the
    kind's default list."""
    if value is None:
        return None
    if not isinstance(value, str | list | tuple):
        raise ConfigError(key, value, "expected field names, comma-separated or as a list")
    return parse_fields(value, key=key)


DEFAULT_RECORDS = (Kind.DELIVERED, Kind.DEFERRED, Kind.BOUNCE)


def records(value: Any) -> tuple[Kind, ...]:
    """``records``: the kinds written, in the order given; ``d,df,b`` by default, ``d,df,b,r``
    adds received records, ``rb`` remote bounces and ``f`` complaints (mail that came back)."""
    allowed = ("expected kinds such as d,df,b or d,df,b,r,rb,f (each once, of d delivered, "
               "df deferred, b bounce, r received, rb remote bounce, f feedback)")
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError("records", value, allowed)
    kinds = [item if isinstance(item, Kind) else Kind.find(_as_text(item)) for item in items]
    if not kinds or None in kinds or len(set(kinds)) != len(kinds):
        raise ConfigError("records", value, allowed)
    return tuple(kind for kind in kinds if kind is not None)


DEFAULT_EXTENSIONS = {"separated": "tsv", "json": "jsonl"}


def output_format(value: Any) -> str:
    """``format``: ``separated`` (also ``tsv``, ``csv``, ``text``) or ``json``, in any case."""
    return _choice("format", value, FORMATS, _FORMAT_ALIASES)


def fsync(value: Any) -> str:
    """``never``, ``rollover`` or ``always``, in any case."""
    return _choice("fsync", value, FSYNC_POLICIES)


def archive_interval(value: Any) -> float:
    """Seconds a file stays active (archiving on): greater than 0, fractions allowed."""
    return _number("archive_interval", value,
                   "expected a number of seconds greater than 0, such as 86400", positive=True)


def max_size(value: Any) -> float:
    """Megabytes (10^6 bytes) before a new file is started, decimals allowed; 0 = no limit."""
    return _number("max_size", value,
                   "expected a size in megabytes (10^6 bytes) such as 200 or 0.5; 0 = no limit")


def retention_days(value: Any) -> float | None:
    """Days an archived file is kept: greater than 0, or empty (None) for no limit."""
    if _empty(value):
        return None
    return _number("retention_days", value,
                   "expected a number of days greater than 0, or empty for no limit",
                   positive=True)


def retention_files(value: Any) -> int | None:
    """Archived files kept per kind: a whole number, at least 1, or empty (None) for no limit."""
    if _empty(value):
        return None
    whole = (isinstance(value, numbers.Integral) and not isinstance(value, bool)
             or isinstance(value, str) and _WHOLE.fullmatch(value.strip()) is not None)
    count = int(value) if whole else 0
    if count < 1:
        raise ConfigError("retention_files", value,
                          "expected a whole number of files such as 10, at least 1, "
                          "or empty for no limit")
    return count


def _flag(key: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return parse_flag(key, value)

    check.__doc__ = f"``{key}``: see :func:`parse_flag`."
    return check


archiving = _flag("archiving")
compress = _flag("compress")
archive_empty = _flag("archive_empty")
utc = _flag("utc")
propagate = _flag("propagate")

# key → its check, for every key that holds one value (the per-kind keys ``location``,
# ``archive_to`` and ``fields`` hold one per kind: :func:`directory_name` and :func:`fields`)
VALIDATORS: Mapping[str, Callable[[Any], Any]] = {
    "path": path,
    "extension": extension,
    "separator": separator,
    "format": output_format,
    "archiving": archiving,
    "archive_interval": archive_interval,
    "max_size": max_size,
    "compress": compress,
    "retention_days": retention_days,
    "retention_files": retention_files,
    "archive_empty": archive_empty,
    "fsync": fsync,
    "file_name": file_name,
    "placeholder": placeholder,
    "time_format": time_format,
    "utc": utc,
    "logger": logger,
    "propagate": propagate,
    "records": records,
}
