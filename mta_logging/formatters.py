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
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

from pythonjsonlogger.core import BaseJsonFormatter
from pythonjsonlogger.json import JsonEncoder, JsonFormatter

from mta_logging.errors import ConfigError
from mta_logging.fields import (
    DEFAULT_FIELDS,
    DEFAULT_TIME_FORMAT,
    TimeText,
    compile_fields,
    compile_json_object,
    compile_line,
    parse_fields,
)
from mta_logging.outcome import Kind, Outcome

TAB = "\t"

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_TSV_SPECIAL = re.compile("[\\\\\t\n\r\ud800-\udfff]")
_CSV_SPECIAL = re.compile("[\\\\\n\r\ud800-\udfff]")
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


def check_separator(separator: Any) -> str:
    """Validate a separator: one character, not a quote, backslash, CR or LF."""
    if isinstance(separator, str) and separator.lower() in ("\\t", "tab"):
        return TAB
    if not isinstance(separator, str) or len(separator) != 1 or separator in '"\\\r\n':
        raise ConfigError(
            "separator", separator,
            "expected one character such as ',' or ';', or '\\t'/'tab' for a tab "
            "(not a quote, backslash or line break)",
        )
    return separator


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
    if fields is not None:
        return parse_fields(fields)
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
        self.times = TimeText(time_format, utc)
        self._extract = compile_fields(self.fields, self.times)
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
        if not isinstance(placeholder, str) or any(c in placeholder for c in "\r\n\\"):
            raise ConfigError("placeholder", placeholder, "expected text without line breaks")
        if separator in placeholder:
            raise ConfigError("placeholder", placeholder, "must not contain the separator")
        self._line = compile_line(self.fields, self.times, separator, placeholder)
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
        line = self._line(outcome, record.created)
        separator = self._separator
        # the values joined as they are, if none needs escaping (join_values checks the same)
        if line.count(separator) == self._separators and (
            ("\\" not in line and "\n" not in line and "\r" not in line
             and (separator == TAB or ('"' not in line and line)))
            if line.isascii() else _is_plain(line, separator)
        ):
            return line
        return join_values(self._extract(outcome, record.created), separator, self._placeholder)


_PLAIN_ENCODERS = (None, json.JSONEncoder, JsonEncoder)  # encode strings as JSONEncoder does
_HOOKS = frozenset(("process_log_record", "serialize_log_record", "jsonify_log_record"))


class AccountingJsonFormatter(JsonFormatter):
    """JSON lines with the same field names (unknown values are ``null``).

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
        self.times = TimeText(time_format, utc)
        self._extract = compile_fields(self.fields, self.times)
        self._encoder: tuple[tuple[Any, ...], json.JSONEncoder] | None = None
        # the object text json.dumps would give, written directly (see format)
        self._objects = (
            compile_json_object(selected, self.times, encode_basestring),
            compile_json_object(selected, self.times, encode_basestring_ascii),
        ) if len(set(selected)) == len(selected) else None

    def header(self) -> None:
        """JSON lines files carry their field names in every record: no header line."""
        return None

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        """As python-json-logger does it, but with one encoder for all records.

        ``json.dumps(data, cls=..., ...)`` makes a new encoder for every record; the text
        depends only on the encoder class and the options, so one encoder made for the current
        options writes the same. Any other serializer is called as python-json-logger calls it.
        """
        if self.json_serializer is not json.dumps:
            return super().jsonify_log_record(log_data)
        options = (self.json_encoder, self.json_default, self.json_indent,
                   self.json_ensure_ascii)
        cached = self._encoder
        if cached is None or cached[0] != options:
            encoder_class = self.json_encoder or json.JSONEncoder
            cached = self._encoder = (options, encoder_class(
                default=self.json_default, indent=self.json_indent,
                ensure_ascii=self.json_ensure_ascii))
        return cached[1].encode(log_data)

    def format(self, record: logging.LogRecord) -> str:
        outcome = outcome_of(record)
        objects = self._objects
        cls = self.__class__
        if (objects is not None and not self.rename_fields
                and not self.static_fields and self.json_serializer is json.dumps
                and self.json_indent is None and self.json_encoder in _PLAIN_ENCODERS
                and _HOOKS.isdisjoint(self.__dict__)  # no step of format replaced
                and cls.process_log_record is _PROCESS and cls.serialize_log_record is _SERIALIZE
                and cls.jsonify_log_record is _JSONIFY):
            # Every value is text or None, so the encoder's default() is never asked and
            # json.dumps of the dict below would give exactly this, at a third of the cost.
            return self.prefix + objects[bool(self.json_ensure_ascii)](outcome, record.created)
        values = self._extract(outcome, record.created)
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


_PROCESS = BaseJsonFormatter.process_log_record
_SERIALIZE = BaseJsonFormatter.serialize_log_record
_JSONIFY = AccountingJsonFormatter.jsonify_log_record
