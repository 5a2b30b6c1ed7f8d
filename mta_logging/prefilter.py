"""A pre-filter for an ordered list of regular expressions: which of them match a text, fast.

Python's ``re`` tries every alternative of a pattern at every position of the text, so hundreds
of phrases cost about a millisecond a text. :class:`PatternIndex` splits each pattern into its
top-level alternatives and files each alternative under a literal that every match of it must
contain (its *anchor*, found by a plain scan of the pattern's syntax); a text is matched only
against the alternatives whose anchor occurs in it, in the patterns' order. Alternatives with
no anchor of three characters or more, and patterns whose splitting could change their meaning,
are tried on every text. Anchors are found through the words of a text (see
:class:`PatternIndex`), which rule phrases each distinct word holds worked out once. The answer
is always the one the patterns themselves give.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = ["PatternIndex", "Selection"]


class PatternIndex:
    """Numbered regular expressions, searched in the order of their numbers.

    ``patterns`` maps a number the caller chooses (a rule's position, say) to a compiled
    pattern; :meth:`first_match` gives the smallest number whose pattern matches a text,
    among all of them or among those a :meth:`select` chose.

    Anchors are looked for through the words of a text (its runs of what ``\\w`` matches in
    ASCII: letters, digits, ``_``). Each anchor is filed under one of its own runs of word
    characters, its *key*, which a text holding the anchor must hold as a whole word (the key
    has a non-word character on both sides in the anchor), as the start of a word (before it
    only), the end of a word (after it only) or inside a word. Which keys a word holds is
    worked out once per distinct word and remembered (up to :attr:`WORDS` words, then all
    forgotten at once), so a text costs a split into words, a look-up per word and an ``in``
    test of the text for each anchor whose key one of its words holds.
    """

    WORDS = 65536
    """How many distinct words an index remembers the keys of."""

    def __init__(self, patterns: Mapping[int, re.Pattern[str]]) -> None:
        self._probes = tuple(
            probe for key in sorted(patterns) for probe in _probes(key, patterns[key])
        )
        self._keys = _KeyTable()
        unanchored = set()
        for number, probe in enumerate(self._probes):
            # An anchor with a non-ASCII character is in no ASCII text, the only texts that
            # are looked up (see _candidates).
            for anchor in probe.anchors or ():
                if anchor.isascii() and not self._keys.add(anchor, number):
                    unanchored.add(number)
            if probe.anchors is None:
                unanchored.add(number)
        self._unanchored = frozenset(unanchored)
        self._all = frozenset(range(len(self._probes)))
        self._words: dict[str, _Hits] = {}

    def select(self, keys: Iterable[int]) -> Selection:
        """The patterns numbered ``keys``, for :meth:`first_match` to consider alone (worth
        keeping when the same choice comes back: making it costs a pass over the patterns)."""
        wanted = frozenset(keys)
        return Selection(frozenset(
            number for number, probe in enumerate(self._probes) if probe.key in wanted
        ))

    def first_match(self, text: str, selection: Selection | None = None) -> int | None:
        """The smallest number whose pattern searches ``text`` with success, among the
        patterns of ``selection`` (all when ``None``); ``None`` when there is none."""
        probes = self._all if selection is None else selection.probes
        lowered = text.lower() if text.isascii() else None
        for number in self._candidates(lowered, probes):
            probe = self._probes[number]
            if lowered is not None and probe.lowered is not None:
                matched = probe.lowered.search(lowered)
            else:
                matched = probe.pattern.search(text)
            if matched:
                return probe.key
        return None

    def _candidates(self, lowered: str | None, probes: frozenset[int]) -> list[int]:
        """Numbers of the ``probes`` that can match a text, in order, given the text in lower
        case, or ``None`` if it is not ASCII: case-insensitive matching pairs some non-ASCII
        letters with ASCII ones (the Kelvin sign with "k"), which lower() does not reproduce,
        so such a text is tried against every probe."""
        if lowered is None:
            return sorted(probes)
        remembered = self._words
        found = set(self._unanchored)
        for word in set(lowered.translate(_SEPARATORS).split()):
            hits = remembered.get(word)
            if hits is None:
                if len(remembered) >= self.WORDS:
                    remembered.clear()
                hits = remembered[word] = self._keys.hits(word)
            found.update(hits.proven)
            for anchor, number in hits.pending:
                if anchor in lowered:
                    found.add(number)
        found &= probes
        return sorted(found)


# Each ASCII character "\w" does not match, to a space: str.split() then gives the words.
_SEPARATORS = {code: " " for code in range(128) if not re.fullmatch(r"\w", chr(code), re.ASCII)}
_WORD = re.compile(r"\w+", re.ASCII)

_Entry = tuple[str, int]  # an anchor and the number of its probe


@dataclass(frozen=True, slots=True)
class _Hits:
    """What one word says of the anchors: the probes it shows one anchor of is in the text
    (the anchor is a part of the word), and the anchors whose key it holds, to look for in
    the text."""

    proven: tuple[int, ...]
    pending: tuple[_Entry, ...]


class _KeyTable:
    """Anchors by their keys: of each anchor's runs of word characters, a whole word rather
    than the start or end of one, rather than a part of one (three characters at least); the
    longest among equals."""

    def __init__(self) -> None:
        self._whole: dict[str, list[_Entry]] = {}
        self._starts: dict[str, list[_Entry]] = {}
        self._ends: dict[str, list[_Entry]] = {}
        self._inside: dict[str, list[_Entry]] = {}  # by the anchor's first three characters
        self._lengths: set[int] = set()  # of the keys in _starts and _ends

    def add(self, anchor: str, number: int) -> bool:
        """File ``anchor`` (ASCII, lower case) of probe ``number``; ``False`` when it has no
        key."""
        options = []
        for run in _WORD.finditer(anchor):
            before, after = run.start() > 0, run.end() < len(anchor)
            if before and after:
                options.append((0, -len(run.group()), run.group(), self._whole))
            elif before or after:
                options.append((1, -len(run.group()), run.group(),
                                self._starts if before else self._ends))
            elif len(anchor) >= 3:  # the anchor is one run
                options.append((2, 0, anchor[:3], self._inside))
        if not options:
            return False
        _, _, key, table = min(options, key=lambda option: option[:2])
        if table is self._starts or table is self._ends:
            self._lengths.add(len(key))
        table.setdefault(key, []).append((anchor, number))
        return True

    def hits(self, word: str) -> _Hits:
        """The anchors whose key ``word`` holds (see :class:`_Hits`)."""
        pending = list(self._whole.get(word, ()))
        for length in self._lengths:
            if length <= len(word):
                pending.extend(self._starts.get(word[:length], ()))
                pending.extend(self._ends.get(word[-length:], ()))
        proven = {
            number
            for trigram in {word[i : i + 3] for i in range(len(word) - 2)}
            for anchor, number in self._inside.get(trigram, ())
            if anchor in word
        }
        return _Hits(tuple(sorted(proven)),
                     tuple(sorted({entry for entry in pending if entry[1] not in proven})))


@dataclass(frozen=True, slots=True)
class Selection:
    """Some of a :class:`PatternIndex`'s patterns, as :meth:`PatternIndex.select` chose them."""

    probes: frozenset[int]


@dataclass(frozen=True, slots=True)
class _Probe:
    """One top-level alternative of a numbered pattern, with literals its matches contain.

    Every match contains one of the ``anchors`` (lower case); ``None`` when no such literals of
    three characters or more were found, and the probe is tried on every text.
    """

    key: int
    pattern: re.Pattern[str]
    anchors: frozenset[str] | None
    lowered: re.Pattern[str] | None
    """The alternative in lower case, matched case-sensitively against lower-cased ASCII text:
    several times faster than ``re.IGNORECASE``. ``None`` when lowering could change what the
    pattern means (non-ASCII, character codes such as ``\\x41``, upper case in a class)."""


def _probes(key: int, pattern: re.Pattern[str]) -> list[_Probe]:
    """The pattern as separately compiled top-level alternatives, with their anchors.

    Keeps the pattern whole, unanchored, where splitting could change its meaning (global
    flags such as ``(?x)`` apply to every alternative, group numbers shift) or does not give
    patterns that compile (the split is a plain scan, not a full parse).
    """
    whole = [_Probe(key, pattern, None, None)]
    if _UNSPLITTABLE.search(pattern.pattern):
        return whole
    alternatives = _top_level_alternatives(pattern.pattern)
    try:
        compiled = [re.compile(part, pattern.flags) for part in alternatives]
    except re.error:
        return whole
    return [
        _Probe(key, part, _anchors(source), _lower_case(source, pattern.flags))
        for part, source in zip(compiled, alternatives, strict=True)
    ]


def _lower_case(source: str, flags: int) -> re.Pattern[str] | None:
    """``source`` with its literal letters in lower case (escapes such as ``\\S`` kept),
    compiled without ``re.IGNORECASE``; ``None`` if lowering could change its meaning."""
    if not source.isascii() or _CASE_SENSITIVE_SYNTAX.search(source):
        return None
    lowered = []
    position = 0
    while position < len(source):
        if source[position] == "\\":
            lowered.append(source[position : position + 2])
            position += 2
        else:
            lowered.append(source[position].lower())
            position += 1
    try:
        return re.compile("".join(lowered), flags & ~re.IGNORECASE)
    except re.error:
        return None


def _structure(source: str, position: int = 0) -> Iterator[tuple[int, str, int]]:
    """``(position, character, depth)`` of each ``(``, ``)`` and ``|`` of a pattern from
    ``position`` on, skipping escapes and character classes; depth is counted after the
    character (a ``(`` at the top level has depth 1, its ``)`` depth 0)."""
    depth = 0
    while position < len(source):
        char = source[position]
        if char == "\\":
            position += 2
            continue
        if char == "[":
            position = _end_of_class(source, position)
            continue
        if char in "()|":
            depth += 1 if char == "(" else -1 if char == ")" else 0
            yield position, char, depth
        position += 1


def _top_level_alternatives(source: str) -> list[str]:
    """The pattern split at each ``|`` outside groups and character classes."""
    parts = []
    start = 0
    for position, char, depth in _structure(source):
        if char == "|" and depth == 0:
            parts.append(source[start:position])
            start = position + 1
    parts.append(source[start:])
    return parts


def _end_of_class(source: str, position: int) -> int:
    """The position after the character class that starts at ``position``."""
    position += 1
    if source[position : position + 1] == "^":
        position += 1
    if source[position : position + 1] == "]":
        position += 1
    while position < len(source) and source[position] != "]":
        position += 2 if source[position] == "\\" else 1
    return position + 1


def _end_of_group(source: str, position: int) -> int:
    """The position after the group that starts at ``position``."""
    for at, char, depth in _structure(source, position):
        if char == ")" and depth == 0:
            return at + 1
    return len(source)


def _end_of_escape(source: str, position: int) -> int:
    """The position after the escape sequence (``\\b``, ``\\.``, ``\\x41``...) at ``position``."""
    arguments = _ESCAPE_ARGUMENTS.match(source, position + 2)
    return position + 2 if arguments is None else arguments.end()


# Global flags at the start, backreferences and conditional groups (by number or name).
_UNSPLITTABLE = re.compile(r"^\(\?[aiLmsux]+\)|(?<!\\)(?:\\\\)*\\[1-9]|\(\?P=|\(\?\(")
# Character codes (\x41 is "A"), case-sensitive groups and other "(?X" syntax, upper case in a
# character class.
_CASE_SENSITIVE_SYNTAX = re.compile(r"\\[xuUN0-7]|\(\?[a-zA-Z]*[-A-Z]|\[(?:\\.|[^\]])*[A-Z]")
_ESCAPE_ARGUMENTS = re.compile(
    r"(?<=\\x)[0-9a-fA-F]{2}|(?<=\\u)[0-9a-fA-F]{4}|(?<=\\U)[0-9a-fA-F]{8}"
    r"|(?<=\\N)\{[^}]*\}|(?<=\\0)[0-7]{0,2}"
)
_QUANTIFIER = re.compile(r"(?:[?*+]|\{(\d*)(?:,\d*)?\})[?+]?")


def _anchors(alternative: str) -> frozenset[str] | None:
    """Lower-case literals one of which every match of ``alternative`` contains.

    Candidates are the runs of literal characters the alternative requires, and its required
    groups of alternatives (``(?:user|mailbox) unknown``), each giving one literal a branch.
    The best is the one whose shortest literal is longest; ``None`` when that is shorter than
    three characters, or has non-ASCII letters (see :meth:`PatternIndex._candidates`).
    """
    options: list[frozenset[str]] = []
    run: list[str] = []
    position = 0
    while position < len(alternative):
        char = alternative[position]
        literal: str | None = None
        group: frozenset[str] | None = None
        if char == "\\":
            escaped = alternative[position + 1 : position + 2]
            literal = escaped if escaped and not escaped.isalnum() else None
            position = _end_of_escape(alternative, position)
        elif char == "[":
            position = _end_of_class(alternative, position)
        elif char == "(":
            end = _end_of_group(alternative, position)
            group = _group_anchors(alternative[position:end])
            position = end
        elif char in ".^$":
            position += 1
        else:
            literal = char
            position += 1
        quantifier = _QUANTIFIER.match(alternative, position)
        if quantifier is not None:
            position = quantifier.end()
            if quantifier.group(0)[0] in "?*" or quantifier.group(1) in ("", "0"):
                literal = group = None
            elif literal is not None:
                run.append(literal)
                literal = None
        if group is not None:
            options.append(group)
        if literal is None:
            options.append(frozenset(["".join(run)]))
            run = []
        else:
            run.append(literal)
    options.append(frozenset(["".join(run)]))
    best = max(options, key=lambda anchors: (min(map(len, anchors)), -len(anchors)))
    if min(map(len, best)) < 3 or not all(map(_ascii_or_caseless, best)):
        return None
    return frozenset(anchor.lower() for anchor in best)


def _ascii_or_caseless(anchor: str) -> bool:
    """Whether lower() of a text finds ``anchor`` wherever case-insensitive matching would."""
    return all(char.isascii() or char.lower() == char.upper() for char in anchor)


def _group_anchors(group: str) -> frozenset[str] | None:
    """Anchors of a group such as ``(?:a|b)``: one from each of its branches, if all have one.

    Look-arounds, inline flags and comments give none.
    """
    if group.startswith("(?:"):
        inner = group[3:-1]
    elif group.startswith("(") and not group.startswith("(?"):
        inner = group[1:-1]
    else:
        return None
    anchors: set[str] = set()
    for branch in _top_level_alternatives(inner):
        found = _anchors(branch)
        if found is None:
            return None
        anchors |= found
    return frozenset(anchors)
