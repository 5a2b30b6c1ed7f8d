"""A pre-filter for an ordered list of regular expressions: which of them match a text, fast.

Python's ``re`` tries every alternative of a pattern at every position of the text, so hundreds
of phrases cost about a millisecond a text. :class:`PatternIndex` splits each pattern into its
top-level alternatives and files each alternative under a literal that every match of it must
contain (its *anchor*, found by a plain scan of the pattern's syntax); a text is matched only
against the alternatives whose anchor occurs in it, in the patterns' order. Alternatives with
no anchor of three characters or more, and patterns whose splitting could change their meaning,
are tried on every text. The answer is always the one the patterns themselves give.
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
    """

    def __init__(self, patterns: Mapping[int, re.Pattern[str]]) -> None:
        self._probes = tuple(
            probe for key in sorted(patterns) for probe in _probes(key, patterns[key])
        )
        by_trigram: dict[str, list[tuple[str, int]]] = {}
        for number, probe in enumerate(self._probes):
            for anchor in probe.anchors or ():
                # File each anchor under the trigram least likely to be in a text (rare letters)
                # and least crowded: fewer anchors to check per text.
                trigram = min(
                    (anchor[i : i + 3] for i in range(len(anchor) - 2)),
                    key=lambda key: _commonness(key) * (1 + len(by_trigram.get(key, ()))),
                )
                by_trigram.setdefault(trigram, []).append((anchor, number))
        self._by_trigram = {key: tuple(entries) for key, entries in by_trigram.items()}
        # A frozenset, not the dict's keys view: "set & keys view" copies the view into a set
        # on every call, "set & frozenset" walks the smaller of the two.
        self._trigrams = frozenset(self._by_trigram)
        self._unanchored = frozenset(
            number for number, probe in enumerate(self._probes) if probe.anchors is None
        )
        self._all = frozenset(range(len(self._probes)))

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
        by_trigram = self._by_trigram
        trigrams = {lowered[i : i + 3] for i in range(len(lowered) - 2)}
        found = {
            number
            for trigram in trigrams & self._trigrams
            for anchor, number in by_trigram[trigram]
            if anchor in lowered
        }
        found |= self._unanchored
        found &= probes
        return sorted(found)


# How often each character occurs in English prose, in per cent (space and letters; anything
# else is rare in the words that rules look for).
_FREQUENCY: dict[str, float] = {
    " ": 18.0, "e": 10.0, "t": 7.5, "a": 6.5, "o": 6.2, "i": 5.7, "n": 5.7, "s": 5.3, "r": 5.0,
    "h": 4.1, "l": 3.3, "d": 3.4, "c": 2.3, "u": 2.3, "m": 2.0, "w": 1.6, "f": 1.8, "g": 1.6,
    "y": 1.4, "p": 1.6, "b": 1.2, "v": 0.8, "k": 0.6, "j": 0.1, "x": 0.2, "q": 0.1, "z": 0.1,
}


def _commonness(trigram: str) -> float:
    """How likely ``trigram`` is to occur in a text, roughly: the product of its characters'
    frequencies."""
    product = 1.0
    for char in trigram:
        product *= _FREQUENCY.get(char, 0.5)
    return product


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
