"""Text that any output can carry: bytes that were not UTF-8 shown as ``\\xNN``.

The reader decodes files as UTF-8 with ``surrogateescape``, so a byte that is not UTF-8 (an
8-bit reply from a remote server) reaches the report as a lone surrogate ``U+DC80``–``U+DCFF``.
Such a value cannot be encoded as UTF-8, JSON parsers refuse it as ``\\udcXX``, and an HTML
page or a terminal would fail on it. Every output of the report and of ``grep --json`` passes
its text through :func:`visible` first: the byte is written as the four characters ``\\xNN``
(what the TSV writer writes for it too), everything else is unchanged.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def _byte_text(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"  # a surrogate that no byte decodes to (a JSON \ud800 escape)


def visible(text: str) -> str:
    """``text`` with each undecodable byte (a lone surrogate) replaced by ``\\xNN``."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(_byte_text, text)


def visible_data(data: Any) -> Any:
    """``data`` (dicts, lists, tuples, strings, numbers) with every string made visible."""
    if isinstance(data, str):
        return visible(data)
    if isinstance(data, dict):
        return {visible_data(key): visible_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [visible_data(item) for item in data]
    return data
