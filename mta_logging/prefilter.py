"""A pre-filter for an ordered list of regular expressions: which of them match a text, fast.

Python's ``re`` tries every alternative of a pattern at every position of the text, so hundreds
of phrases cost about a millisecond a text. :class:`PatternIndex` splits each pattern into its
top-level alternatives and finds, by a plain scan of each one's syntax, the literals every match
of it must contain (runs of literal characters; one of the branches of a required group); a
text is searched only by the alternatives whose required literals all occur in it, in the
patterns' order. Alternatives with no such literal of three characters or more, and patterns
whose splitting could change their meaning, are tried on every text. The literals are found
through the words of a text (see :class:`PatternIndex`), which literals each distinct word can
hold worked out once. The answer is always the one the patterns themselves give.
"""

from __future__ import annotations

import functools
import importlib
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = ["PatternIndex", "Selection"]


class PatternIndex:
    """Numbered regular expressions, searched in the order of their numbers.

    ``patterns`` maps a number the caller chooses (a rule's position, say) to a compiled
    pattern; :meth:`first_match` gives the smallest number whose pattern matches a text,
    among all of them or among those a :meth:`select` chose.

    Every alternative needs some literals (each of a set of them) in a text to match it;
    two sets are looked for through the words of a text (its runs of what ``\\w``
    matches in ASCII: letters, digits, ``_``). Each literal is filed under one of its own runs
    of word characters, its *key*, which a text holding the literal must hold as a whole word
    (the key has a non-word character on both sides in the literal), as the start of a word
    (before it only), the end of a word (after it only) or inside a word. Which keys a word
    holds is worked out once per distinct word and remembered (up to :attr:`WORDS` words, then
    all forgotten at once), as a bit mask of the alternatives; of a literal without white
    space the look-up also tests that the word holds it, so that such literals need no test
    of the text. A set of one literal, in an alternative with no second set to look for, is
    looked for by two of its keys. A text costs a split into words, a look-up per word, an OR
    of their masks, and for each alternative the masks leave, in order, an ``in`` test of the
    text for the literals the words do not decide (phrases, and sets beyond the two) before
    its pattern is tried.
    """

    WORDS = 65536
    """How many distinct words an index remembers the keys of."""

    def __init__(self, patterns: Mapping[int, re.Pattern[str]]) -> None:
        self._probes = tuple(
            probe for key in sorted(patterns) for probe in _probes(key, patterns[key])
        )
        # Bit n of a mask: the first of the probe's indexed literals (see _Probe) is in the
        # text; bit n + count: the second is.
        self._count = len(self._probes)
        self._all = (1 << self._count) - 1
        table = _KeyTable()
        self._always = 0  # what no word can rule out
        self._unicode = 0  # what no word of a non-ASCII text can rule out
        for number, probe in enumerate(self._probes):
            for which in range(2):
                bit = 1 << number + which * self._count
                if which < len(probe.indexed):
                    literals, rank = probe.indexed[which]
                    # A literal with a non-ASCII character is in no ASCII text: it is not
                    # filed, and its set is taken as found in every other text.
                    for literal in literals:
                        if literal.isascii():
                            table.add(literal, bit, rank)
                        else:
                            self._unicode |= bit
                else:
                    self._always |= bit
        self._words = _WordHits(table, self.WORDS)

    def select(self, keys: Iterable[int]) -> Selection:
        """The patterns numbered ``keys``, for :meth:`first_match` to consider alone (worth
        keeping when the same choice comes back: making it costs a pass over the patterns)."""
        wanted = frozenset(keys)
        return Selection(sum(
            1 << number for number, probe in enumerate(self._probes) if probe.key in wanted
        ))

    def scan(self, text: str) -> int:
        """What the words of ``text`` say of the patterns: a mask for :meth:`first_match`'s
        ``scanned``, worth keeping when several selections are searched in the same text
        (working it out is most of the cost of a search)."""
        self._words.limit = self.WORDS
        if text.isascii():
            found = _or_words(self._words, text, self._always)
        elif _FOLDS_TO_ASCII.search(text):
            # Case-insensitive matching pairs these with ASCII letters (the Kelvin sign with
            # "k"), which lower() does not reproduce: every probe is tried.
            return self._all
        else:
            found = _python_or_words(self._words, text, self._always | self._unicode)
        return found & found >> self._count

    def first_match(
        self, text: str, selection: Selection | None = None, scanned: int | None = None
    ) -> int | None:
        """The smallest number whose pattern searches ``text`` with success, among the
        patterns of ``selection`` (all when ``None``); ``None`` when there is none.
        ``scanned``: what :meth:`scan` gave for this text, if it was called."""
        left = self._all if selection is None else selection.probes
        left &= self.scan(text) if scanned is None else scanned
        return self._first(left, text)

    def _first(self, left: int, text: str) -> int | None:
        """The key of the first probe of the mask ``left`` that matches ``text``, tested for
        the probe's literals that the mask does not vouch for first (but in a text with
        letters that lower() does not pair as case-insensitive matching does)."""
        probes = self._probes
        ascii_text = text.isascii()
        if not ascii_text and _FOLDS_TO_ASCII.search(text):
            while left:
                bit = left & -left
                left ^= bit
                probe = probes[bit.bit_length() - 1]
                if probe.pattern.search(text):
                    return probe.key
            return None
        lowered = text.lower()
        holds = lowered.__contains__
        while left:
            bit = left & -left
            left ^= bit
            probe = probes[bit.bit_length() - 1]
            for literals in probe.checks:
                if not any(map(holds, literals)):
                    break
            else:
                if probe.literal or (probe.lowered.search(lowered)
                                     if ascii_text and probe.lowered is not None
                                     else probe.pattern.search(text)):
                    return probe.key
        return None


def _python_or_words(words: dict[str, int], text: str, found: int) -> int:
    """``found`` OR'ed with what ``words`` says of each word of ``text``, lower-cased."""
    return functools.reduce(operator.or_, map(words.__getitem__, text.lower().split()), found)


def _accelerated_or_words() -> Callable[[dict[str, int], str, int], int]:
    """:func:`_python_or_words` for an ASCII text, in C (``mta_logging/_accel.c``, ``or_words``)
    where the accelerator was built; else the Python one."""
    try:
        return importlib.import_module("mta_logging._accel").or_words
    except ImportError:
        return _python_or_words


_or_words = _accelerated_or_words()

_WORD = re.compile(r"\w+", re.ASCII)
# The non-ASCII characters that case-insensitive matching pairs with an ASCII letter (İ, ı,
# the long s and the Kelvin sign: tests/test_prefilter.py checks the list against re itself).
# In a text without them, lower() finds every ASCII literal that a case-insensitive match
# holds, as it does in an ASCII text.
_FOLDS_TO_ASCII = re.compile("[\u0130\u0131\u017f\u212a]")

# A literal, the bit of its probe and whether the literal is *word-local*: no white space in
# it, so that a text holds it exactly when one of its words (runs of non-space characters)
# does, which the word's look-up tests.
_Entry = tuple[str, int, bool]


class _WordHits(dict[str, int]):
    """What each word of a text (a run of non-space characters) says of the probes: the bits
    of the literals whose key one of its runs of word characters holds (see
    :class:`_KeyTable`) and, of a word-local literal, that the word holds it. Worked out at a
    word's first look-up and remembered, as are the
    runs', up to ``limit`` words and runs, then all forgotten at once."""

    def __init__(self, table: _KeyTable, limit: int) -> None:
        super().__init__()
        self.table = table
        self.limit = limit
        self.runs: dict[str, tuple[_Entry, ...]] = {}

    def __missing__(self, word: str) -> int:
        if len(self) >= self.limit or len(self.runs) >= self.limit:
            self.clear()
            self.runs.clear()
        hits = 0
        # (a word of ASCII letters and digits alone is its one run)
        for run in (word,) if word.isalnum() and word.isascii() else _WORD.findall(word):
            entries = self.runs.get(run)
            if entries is None:
                entries = self.runs[run] = self.table.entries(run)
            for literal, bit, local in entries:
                if not local or literal in word:
                    hits |= bit
        self[word] = hits
        return hits


def _keys(anchor: str) -> list[tuple[str, str]]:
    """The keys ``anchor`` (ASCII, lower case) can be filed under, the best first: its runs of
    word characters, each with where a text holding the anchor holds it: as a whole word
    (``whole``: the run has a non-word character on both sides in the anchor), as the start
    of one (``starts``: a non-word character before it only), as the end of one (``ends``)
    or, when the anchor is one run of three characters or more, inside one (``inside``, by
    its first three characters). The longest run first (a long word is a rare one), a whole
    word first among equals."""
    options = []
    for run in _WORD.finditer(anchor):
        before, after = run.start() > 0, run.end() < len(anchor)
        if before and after:
            options.append((-len(run.group()), 0, "whole", run.group()))
        elif before or after:
            options.append((-len(run.group()), 1, "starts" if before else "ends", run.group()))
        elif len(anchor) >= 3:
            options.append((0, 2, "inside", anchor[:3]))
    return [(kind, key) for _, _, kind, key in sorted(options)]


class _KeyTable:
    """Anchors by their keys (see :func:`_keys`)."""

    def __init__(self) -> None:
        self._whole: dict[str, list[_Entry]] = {}
        self._starts: dict[str, list[_Entry]] = {}
        self._ends: dict[str, list[_Entry]] = {}
        self._inside: dict[str, list[_Entry]] = {}  # by the anchor's first three characters
        # the lengths of the keys in _starts by their first character, in _ends by their last
        self._start_lengths: dict[str, set[int]] = {}
        self._end_lengths: dict[str, set[int]] = {}

    def add(self, anchor: str, bit: int, rank: int) -> None:
        """File ``anchor`` (ASCII, lower case, with ``len(_keys(anchor)) > rank``) with its
        probe's ``bit`` under the key of that rank."""
        kind, key = _keys(anchor)[rank]
        if kind == "starts":
            self._start_lengths.setdefault(key[0], set()).add(len(key))
        elif kind == "ends":
            self._end_lengths.setdefault(key[-1], set()).add(len(key))
        table = {"whole": self._whole, "starts": self._starts, "ends": self._ends,
                 "inside": self._inside}[kind]
        table.setdefault(key, []).append((anchor, bit, _word_local(anchor)))

    def entries(self, word: str) -> tuple[_Entry, ...]:
        """The literals whose key ``word`` holds, with the bits of their probes: they can be
        in a text with this word."""
        entries = list(self._whole.get(word, ()))
        for length in self._start_lengths.get(word[:1], ()):
            if length <= len(word):
                entries.extend(self._starts.get(word[:length], ()))
        for length in self._end_lengths.get(word[-1:], ()):
            if length <= len(word):
                entries.extend(self._ends.get(word[-length:], ()))
        for trigram in self._inside.keys() & map(word.__getitem__, _trigrams(len(word))):
            entries.extend(entry for entry in self._inside[trigram] if entry[0] in word)
        return tuple(entries)


@functools.lru_cache(maxsize=64)
def _trigrams(length: int) -> tuple[slice, ...]:
    """The slices that cut the runs of three characters out of a word of ``length``."""
    return tuple(slice(at, at + 3) for at in range(length - 2))


@dataclass(frozen=True, slots=True)
class Selection:
    """Some of a :class:`PatternIndex`'s patterns, as :meth:`PatternIndex.select` chose them:
    ``probes`` has a bit set for each of their alternatives."""

    probes: int


@dataclass(frozen=True, slots=True)
class _Probe:
    """One top-level alternative of a numbered pattern, with literals its matches contain.

    ``required`` holds sets of lower-case literals (the best first), every match containing
    one literal of each set; empty when no such literals of three characters or more were
    found, and the probe is tried on every text.

    ``indexed`` holds the two sets (at most) that the words of a text are looked up for,
    each with the rank of the key its literals are filed under (see :func:`_keys`): the best
    sets by their best keys, and a set of one literal by its second best key too, as the
    literal's two runs of word characters are each required. ``checks`` holds the sets that
    an ASCII text is tested for with ``in`` before the pattern is tried: all but the indexed
    sets that are word-local (:func:`_word_local`), whose bits in a text's mask are set
    exactly when the text holds one of their literals.
    """

    key: int
    pattern: re.Pattern[str]
    required: tuple[tuple[str, ...], ...]
    indexed: tuple[tuple[tuple[str, ...], int], ...]
    checks: tuple[tuple[str, ...], ...]
    lowered: re.Pattern[str] | None
    """The alternative in lower case, matched case-sensitively against lower-cased ASCII text:
    several times faster than ``re.IGNORECASE``. ``None`` when lowering could change what the
    pattern means (non-ASCII, character codes such as ``\\x41``, upper case in a class)."""
    literal: bool = False
    """Whether the alternative is nothing but one literal, ASCII, matched case-insensitively
    (``mail loop``, ``quota exceeded``; one shorter than three characters, such as a wrapper
    marker's `` #``, is then the probe's one check): a text that holds the literal, as the mask
    and the checks vouch, matches it, without the pattern being tried."""


def _probes(key: int, pattern: re.Pattern[str]) -> list[_Probe]:
    """The pattern as separately compiled top-level alternatives, with their anchors.

    Keeps the pattern whole, unanchored, where splitting could change its meaning (global
    flags such as ``(?x)`` apply to every alternative, group numbers shift) or does not give
    patterns that compile (the split is a plain scan, not a full parse).
    """
    whole = [_Probe(key, pattern, (), (), (), None)]
    if _UNSPLITTABLE.search(pattern.pattern):
        return whole
    alternatives = _top_level_alternatives(pattern.pattern)
    try:
        compiled = [re.compile(part, pattern.flags) for part in alternatives]
    except re.error:
        return whole
    probes = []
    for part, source in zip(compiled, alternatives, strict=True):
        required = tuple(tuple(sorted(literals)) for literals in _required_literals(source))
        indexed = _indexed(required)
        exact = {literals for literals, _ in indexed if all(map(_word_local, literals))}
        checks = tuple(literals for literals in required if literals not in exact)
        literal = (pattern.flags & (re.IGNORECASE | re.VERBOSE) == re.IGNORECASE
                   and source.isascii() and _LITERAL.fullmatch(source) is not None)
        if literal:
            value = _ESCAPE.sub(r"\1", source).lower()
            if not required:  # shorter than three characters (" #"): tested with ``in`` alone
                checks = ((value,),)
            literal = required in ((), ((value,),))
        probes.append(_Probe(key, part, required, indexed, checks,
                             _lower_case(source, pattern.flags), literal))
    return probes


def _word_local(literal: str) -> bool:
    """Whether a text holds ``literal`` exactly when one of its words (runs of non-space
    characters) does: the literal has no white space."""
    return not any(map(str.isspace, literal))


def _indexed(
    required: tuple[tuple[str, ...], ...]
) -> tuple[tuple[tuple[str, ...], int], ...]:
    """The two best conditions of :attr:`_Probe.indexed` among ``required``: each set by the
    best key of its literals, a set of one literal by its second best key as well; only sets
    whose ASCII literals all have a key of that rank (a non-ASCII literal is in no ASCII
    text, the only texts that are looked up)."""
    options = [(literals, 0) for literals in required]
    options += [(literals, 1) for literals in required if len(literals) == 1]
    return tuple([
        (literals, rank) for literals, rank in options
        if all(len(_keys(literal)) > rank for literal in literals if literal.isascii())
    ][:2])


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
# An alternative of literal characters alone (escapes of punctuation among them), and an escape
_LITERAL = re.compile(r"(?:[^\\.^$*+?{}\[\]()|]|\\[^0-9A-Za-z])+")
_ESCAPE = re.compile(r"\\(.)")
_QUANTIFIER = re.compile(r"(?:[?*+]|\{(\d*)(?:,\d*)?\})[?+]?")


def _required_literals(alternative: str) -> list[frozenset[str]]:
    """Sets of lower-case literals, every match of ``alternative`` containing one of each.

    They are the runs of literal characters the alternative requires, and its required
    groups of alternatives (``(?:user|mailbox) unknown``), each giving one literal a branch;
    those with a literal shorter than three characters or with non-ASCII letters (see
    :meth:`PatternIndex.first_match`) left out. The best anchors come first: the set whose
    shortest literal is longest, then the set with fewer literals.
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
    usable = [anchors for anchors in options
              if min(map(len, anchors)) >= 3 and all(map(_ascii_or_caseless, anchors))]
    usable.sort(key=lambda anchors: (-min(map(len, anchors)), len(anchors)))
    return list(dict.fromkeys(frozenset(anchor.lower() for anchor in anchors)
                              for anchors in usable))


def _anchors(alternative: str) -> frozenset[str] | None:
    """The best of the :func:`_required_literals` of ``alternative``; ``None`` when it has
    none."""
    required = _required_literals(alternative)
    return required[0] if required else None


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
