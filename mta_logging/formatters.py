"""Formatters: one accounting record → one line of text.

Escaping contract (what every reader relies on; ``split_line`` undoes it exactly):

* Tab-separated files (separator ``\\t``): in each value, backslash, tab, LF and CR become
  ``\\\\``, ``\\t``, ``\\n``, ``\\r``.
* Any other separator: backslash, LF and CR are escaped as above, then a value that contains
  the separator or a double quote is quoted the CSV way (``"a ""b"", c"``), so Python's ``csv``
  module splits the line; values with no backslash, CR or LF read back unchanged with ``csv``
  alone.
* Either way, text that is not valid Unicode (a lone surrogate, as left by
  ``surrogateescape`` decoding of 8-bit header bytes) is written as ``\\xNN`` (the original byte)
  or ``\\uXXXX``, so files are always valid UTF-8 and one record is always exactly one line.
* A value that is not known is written as the placeholder (default: empty).

JSON lines (``AccountingJsonFormatter``): the JSON encoder escapes quotes and control
characters; before it, a backslash becomes ``\\\\`` and text that is not valid Unicode
``\\xNN``/``\\uXXXX``, as in separated files (so JSON files are strict JSON, and the reader's
``unescape`` gives back the same value from either). Number fields are JSON numbers.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from mta_logging import settings as _settings
from mta_logging import speedups
from mta_logging.errors import ConfigError
from mta_logging.fields import (
    DEFAULT_FIELDS,
    DEFAULT_TIME_FORMAT,
    NUMBER_FIELDS,
    TimeText,
    json_number,
)
from mta_logging.outcome import Kind, Outcome
from mta_logging.settings import separator as check_separator  # (importable from here too)

TAB = "\t"

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_TSV_SPECIAL = re.compile("[\\\\\t\n\r\ud800-\udfff]")
_CSV_SPECIAL = re.compile("[\\\\\n\r\ud800-\udfff]")
_JSON_SPECIAL = re.compile("[\\\\\ud800-\udfff]")
_ESCAPED = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)", re.DOTALL)


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    escaped = _ESCAPES.get(char)
    if escaped is not None:
        return escaped
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def _unescape_sequence(match: re.Match[str]) -> str:
    body = match.group(1)
    plain = _UNESCAPES.get(body)
    if plain is not None:
        return plain
    if body[0] == "x" and len(body) == 3:
        return chr(0xDC00 + int(body[1:], 16))
    if body[0] == "u" and len(body) == 5:
        return chr(int(body[1:], 16))
    return match.group()  # not ours (e.g. a Haraka file): keep it as it is


def escape_tsv(value: str) -> str:
    """Escape one value for a tab-separated line."""
    if _TSV_SPECIAL.search(value) is None:
        return value
    return _TSV_SPECIAL.sub(_escape_char, value)


def escape_csv(value: str, separator: str) -> str:
    """Escape one value for a line whose separator is not a tab (CSV quoting)."""
    if _CSV_SPECIAL.search(value) is not None:
        value = _CSV_SPECIAL.sub(_escape_char, value)
    if separator in value or '"' in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def escape_json(value: str) -> str:
    """Escape one value for a JSON lines record (the encoder escapes the rest)."""
    if _JSON_SPECIAL.search(value) is None:
        return value
    return _JSON_SPECIAL.sub(_escape_char, value)


def unescape(value: str) -> str:
    """Undo the backslash escapes of ``escape_tsv``/``escape_csv`` (after CSV unquoting)."""
    if "\\" not in value:
        return value
    return _ESCAPED.sub(_unescape_sequence, value)


def split_line(line: str, separator: str = TAB) -> list[str]:
    """Split one line of an accounting file into its original values.

    Accepts ``\\n`` or ``\\r\\n`` line ends. Does not drop a trailing empty value: callers that read
    Haraka files (which end every line with the separator) compare with the header's length.
    """
    if line.endswith("\n"):
        line = line[:-2] if line.endswith("\r\n") else line[:-1]
    if separator == TAB or (line and '"' not in line):
        parts = line.split(separator)  # no quoting on the line: csv would split it the same way
    else:
        parts = next(csv.reader([line], delimiter=separator, quotechar='"', doublequote=True,
                                strict=False))
    if "\\" not in line:
        return parts
    return [unescape(part) if "\\" in part else part for part in parts]


def outcome_of(record: logging.LogRecord) -> Outcome:
    """The Outcome attached to a record; TypeError if the record carries none."""
    try:
        outcome = record.outcome  # type: ignore[attr-defined]
    except AttributeError:
        outcome = None
    return _checked(outcome)


def _checked(outcome: object) -> Outcome:
    """``outcome`` if it is an Outcome; else the TypeError of a record that carries none."""
    if outcome.__class__ is not Outcome and not isinstance(outcome, Outcome):
        raise TypeError(
            "this log record carries no accounting outcome (record.outcome); log through "
            "AccountingLogger or pass extra={'outcome': Outcome(...)}"
        )
    return outcome


def _resolve_fields(fields: str | Sequence[str] | None, kind: str | Kind | None) -> tuple[str, ...]:
    selected = _settings.fields(fields)
    if selected is not None:
        return selected
    return DEFAULT_FIELDS[Kind.parse(kind) if kind is not None else Kind.BOUNCE]


class AccountingFormatter(logging.Formatter):
    """Writes the configured fields of a record's outcome, joined by the separator.

    ``fields`` (a list or comma-separated string) defaults to the default field list of
    ``kind``. ``header()`` gives the first line of every file. Usable from ``dictConfig`` with
    ``(): mta_logging.AccountingFormatter``.
    """

    def __init__(
        self,
        fields: str | Sequence[str] | None = None,
        kind: str | Kind | None = None,
        separator: str = TAB,
        placeholder: str = "",
        time_format: str = DEFAULT_TIME_FORMAT,
        utc: bool = False,
    ) -> None:
        super().__init__()
        self.fields = _resolve_fields(fields, kind)
        self.times = TimeText(_settings.time_format(time_format), _settings.utc(utc))
        self._extract = speedups.extractor_for(self.fields, self.times)
        self._separators = len(self.fields) - 1
        self._separator = TAB
        self._placeholder = ""
        self._compile(check_separator(separator), placeholder)

    @property
    def separator(self) -> str:
        return self._separator

    @separator.setter
    def separator(self, value: str) -> None:
        self._compile(check_separator(value), self._placeholder)

    @property
    def placeholder(self) -> str:
        return self._placeholder

    @placeholder.setter
    def placeholder(self, value: str) -> None:
        self._compile(self._separator, value)

    def _compile(self, separator: str, placeholder: str) -> None:
        """Check the placeholder against the separator; make the line function for both."""
        placeholder = _settings.placeholder(placeholder, beside=separator)
        self._line = speedups.line_for(self.fields, self.times, separator, placeholder)
        self._separator, self._placeholder = separator, placeholder

    def header(self) -> str:
        """The header line (without line end): field names joined by the separator."""
        return self.separator.join(self.fields)

    def values(self, record: logging.LogRecord) -> list[str | None]:
        """The field values of a record, unescaped (None = not known)."""
        return self._extract(outcome_of(record), record.created)

    def format(self, record: logging.LogRecord) -> str:
        try:  # outcome_of(record), its usual case inline
            outcome = record.outcome  # type: ignore[attr-defined]
        except AttributeError:
            outcome = None
        if outcome.__class__ is not Outcome:
            outcome = _checked(outcome)
        return self.outcome_line(outcome, record.created)

    def outcome_line(self, outcome: Outcome, time_logged: float) -> str:
        """The line of ``outcome`` logged at ``time_logged``: what ``format`` gives for a
        record carrying it, created then."""
        line = self._line(outcome, time_logged)
        separator = self._separator
        # the values joined as they are, if none needs escaping (join_values checks the same)
        if line.count(separator) == self._separators and (
            ("\\" not in line and "\n" not in line and "\r" not in line
             and (separator == TAB or ('"' not in line and line)))
            if line.isascii() else _is_plain(line, separator)
        ):
            return line
        return self._escaped_line(outcome, time_logged)

    def _escaped_line(self, outcome: Outcome, time_logged: float) -> str:
        """``outcome_line`` when the values joined as they are would not do: each value
        escaped as it needs (``join_values``)."""
        return join_values(self._extract(outcome, time_logged), self._separator,
                           self._placeholder)


class AccountingJsonFormatter(JsonFormatter):
    """JSON lines with the same field names (unknown values are ``null``, number fields
    numbers; escaping: see the module's docstring).

    A python-json-logger ``JsonFormatter``: its options (``json_indent`` aside, which would
    break one-record-one-line), ``static_fields``, ``rename_fields``, ``prefix`` and its
    ``process_log_record`` hook work as documented there.
    """

    def __init__(
        self,
        fields: str | Sequence[str] | None = None,
        kind: str | Kind | None = None,
        time_format: str = DEFAULT_TIME_FORMAT,
        utc: bool = False,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("json_indent") is not None:
            raise ConfigError("json_indent", kwargs["json_indent"],
                              "must be unset: one record is one line")
        selected = _resolve_fields(fields, kind)
        super().__init__(list(selected), **kwargs)
        self.fields = selected
        self.times = TimeText(_settings.time_format(time_format), _settings.utc(utc))
        self._extract = speedups.extractor_for(self.fields, self.times)
        # the state of the speedups of jsonify_log_record and format
        self._speedups = speedups.enabled()
        self._encoder: tuple[tuple[Any, ...], json.JSONEncoder] | None = None
        self._objects = speedups.json_objects_for(selected, self.times)

    def header(self) -> None:
        """JSON lines files carry their field names in every record: no header line."""
        return None

    jsonify_log_record = speedups.jsonify_with_one_encoder

    @speedups.json_written_directly
    def format(self, record: logging.LogRecord) -> str:
        """The record's values as a python-json-logger ``JsonFormatter`` writes a dict of them:
        renamed, with the static fields, through its ``process_log_record`` and
        ``serialize_log_record``."""
        outcome = outcome_of(record)
        values: list[Any] = [
            None if text is None else json_number(text) if name in NUMBER_FIELDS
            else escape_json(text)
            for name, text in zip(self.fields, self._extract(outcome, record.created),
                                  strict=True)]
        rename = self.rename_fields
        if rename:
            pairs = zip(self.fields, values, strict=True)
            data: dict[str, Any] = {rename.get(k, k): v for k, v in pairs}
        else:
            data = dict(zip(self.fields, values, strict=True))
        if self.static_fields:
            data.update(self.static_fields)
        return self.serialize_log_record(self.process_log_record(data))


def header_fields(header_line: str, separator: str = TAB) -> list[str]:
    """Field names of a header line, without the empty name after a trailing separator."""
    names = split_line(header_line, separator)
    while names and names[-1] == "":
        names.pop()
    return names


def join_values(values: Iterable[str | None], separator: str = TAB, placeholder: str = "") -> str:
    """Escape and join values the way AccountingFormatter does (for tools that rewrite files)."""
    if not isinstance(values, (list, tuple)):
        values = list(values)  # read twice when a value needs escaping
    line = separator.join([placeholder if v is None else v for v in values])
    if line.count(separator) != len(values) - 1 or not _is_plain(line, separator):
        line = separator.join(  # some value needs escaping (most lines take the way above)
            placeholder if v is None else _escape(v, separator) for v in values)
    if separator == TAB or line:
        return line
    return '""'  # as the csv module writes a row of one empty value: not a blank line


def _escape(value: str, separator: str) -> str:
    return escape_tsv(value) if separator == TAB else escape_csv(value, separator)


def _is_plain(line: str, separator: str) -> bool:
    """True if no value in ``line`` needs escaping, given that it holds no extra separator."""
    if line.isascii():  # O(1), and rules out surrogates: three quick scans are enough
        plain = "\\" not in line and "\n" not in line and "\r" not in line
    else:
        plain = _CSV_SPECIAL.search(line) is None
    return plain and (separator == TAB or '"' not in line)

