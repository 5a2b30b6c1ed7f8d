"""Bounce classification: which PowerMTA-style category a failed delivery belongs to.

A failure is described by the SMTP reply code (``None`` when it happened before any reply: a refused
connection, a DNS failure, a time-out), the RFC 3463 enhanced status code (``"5.1.1"``; ``None`` or
``""`` when absent) and the reply text, or the local description of the failure. Ordered rules,
read from tab-separated files, map them to one of :data:`CATEGORIES`; the built-in rules ship in
``mta_logging/data/bounce_rules.tsv``, whose header documents the format. The first rule whose
fields all match wins, so a user's own rules file goes in front of the built-in one::

    classifier = Classifier.from_files(["/etc/mta-logging/bounce_rules.tsv"])
    classifier.classify(550, "5.7.1", "Message rejected: listed at example-rbl.org")

:func:`bounce_category` classifies with the built-in rules alone.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Final

from mta_logging.errors import ConfigError

__all__ = [
    "CATEGORIES",
    "Classifier",
    "Rule",
    "bounce_category",
    "builtin_rules",
    "default_classifier",
    "load_rules",
    "normalise_text",
]

CATEGORIES: Final[tuple[str, ...]] = (
    "bad-mailbox",
    "bad-domain",
    "inactive-mailbox",
    "quota-issues",
    "spam-related",
    "policy-related",
    "routing-errors",
    "message-expired",
    "no-answer-from-host",
    "bad-connection",
    "protocol-errors",
    "content-related",
    "relaying-issues",
    "bad-configuration",
    "other",
)
"""Every category :func:`bounce_category` can return; ``other`` when no rule applies."""

OTHER: Final = "other"

_BUILTIN_RULES: Final = "bounce_rules.tsv"
_FIELDS: Final = ("category", "code", "enhanced", "text")
_ANY: Final = "-"
_NO_REPLY: Final = "none"

# A status pattern is (class, subject, detail); None stands for the wildcard "x".
_StatusPattern = tuple[str | None, str | None, str | None]
_Status = tuple[str, str, str]

_FIELD_SEPARATOR = re.compile(r"\t+")
_CODE_PATTERN = re.compile(r"[2-5x][0-9x]{2}")
_STATUS_PATTERN = re.compile(r"([245x])\.([0-9]{1,3}|x)\.([0-9]{1,3}|x)")
_STATUS = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})")
# Where a caller has no enhanced status or reply code, the text often carries them
# ("... said: 550 5.1.1 <x@example.org>: Recipient address rejected"). The look-arounds keep
# the parts of IP addresses ("10.4.2.1") and numbers in prose ("after 450 seconds") out.
_STATUS_IN_TEXT = re.compile(r"(?<![\w.])([45])\.([0-9]{1,3})\.([0-9]{1,3})(?!\.?[0-9])")
_CODE_IN_TEXT = re.compile(r"(?<![\w.:/\[-])([45][0-9]{2})(?:-| (?=[45]\.[0-9]|[A-Z<#(\[]))")
# "550-5.7.1 " at the start of each continuation line of a multi-line reply, once the reply has
# been joined into one line, splits phrases apart: "this message is 550-5.7.1 likely spam".
_CONTINUATION = re.compile(r"(?<![\w.-])[245][0-9]{2}-(?:[245]\.[0-9]{1,3}\.[0-9]{1,3} )?")


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of a rules file: when it applies, the failure belongs to ``category``.

    ``codes`` and ``statuses`` are ``None`` when the line said ``-`` (any); ``text`` is ``None``
    likewise. ``origin`` names the file and line, for error messages and debugging.
    """

    category: str
    codes: tuple[str, ...] | None
    statuses: tuple[_StatusPattern, ...] | None
    text: re.Pattern[str] | None
    origin: str

    def applies_to_status(self, code: str | None, status: _Status | None) -> bool:
        """Whether the code and enhanced-status fields of this rule accept the given ones."""
        if self.codes is not None and not any(_code_matches(p, code) for p in self.codes):
            return False
        return self.statuses is None or any(_status_matches(p, status) for p in self.statuses)


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which rules can apply for one reply code and status: the text rules among them and the
    first rule without a text condition, which applies when none of those does."""

    text_rules: frozenset[int]
    fallback: int | None


class Classifier:
    """Classifies failed deliveries with an ordered list of rules; the first that applies wins.

    Python's ``re`` tries every alternative of a pattern at every position of the text, so
    hundreds of phrases cost about a millisecond a reply. The classifier therefore splits each
    text rule into its alternatives and indexes them by a literal each must contain: a reply is
    matched only against the few alternatives whose literal occurs in it, in rule order.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._rules = tuple(rules)
        self._probes = tuple(
            probe
            for index, rule in enumerate(self._rules)
            if rule.text is not None
            for probe in _probes(index, rule.text)
        )
        by_trigram: dict[str, list[tuple[str, int]]] = {}
        for number, probe in enumerate(self._probes):
            for anchor in probe.anchors or ():
                # File each anchor under its least crowded trigram: fewer anchors to check.
                trigram = min(
                    (anchor[i : i + 3] for i in range(len(anchor) - 2)),
                    key=lambda key: len(by_trigram.get(key, ())),
                )
                by_trigram.setdefault(trigram, []).append((anchor, number))
        self._by_trigram = {key: tuple(entries) for key, entries in by_trigram.items()}
        self._unanchored = tuple(
            number for number, probe in enumerate(self._probes) if probe.anchors is None
        )
        self._plan_for = functools.lru_cache(maxsize=4096)(self._make_plan)

    @classmethod
    def builtin(cls) -> Classifier:
        """A classifier with the rules shipped in ``mta_logging/data/bounce_rules.tsv``."""
        return cls(builtin_rules())

    @classmethod
    def from_files(
        cls, paths: Iterable[str | os.PathLike[str]], *, builtin: bool = True
    ) -> Classifier:
        """A classifier with the rules of ``paths``, in that order, then the built-in ones.

        Raises :class:`~mta_logging.errors.ConfigError` naming the file and line of a bad rule.
        """
        rules = [rule for path in paths for rule in load_rules(path)]
        if builtin:
            rules.extend(builtin_rules())
        return cls(rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules, in the order they are tried."""
        return self._rules

    def rule_for(self, code: int | None, enhanced: str | None, text: str) -> Rule | None:
        """The first rule that applies to this failure, or ``None`` when none does.

        A reply code or enhanced status not given is taken from the text when it has one
        ("... said: 550 5.1.1 <x@example.org>: ...").
        """
        text = normalise_text(text)
        if code is None:
            found = _CODE_IN_TEXT.search(text)
            code_text = found.group(1) if found else None
        else:
            code_text = str(code)
        status = _parse_status(enhanced)
        if status is None:
            found = _STATUS_IN_TEXT.search(text)
            status = (found.group(1), found.group(2), found.group(3)) if found else None
        plan = self._plan_for(code_text, status)
        last = len(self._rules) if plan.fallback is None else plan.fallback
        lowered = text.lower() if text.isascii() else None
        for number in self._candidates(lowered):
            probe = self._probes[number]
            if probe.rule_index >= last:
                break
            if probe.rule_index not in plan.text_rules:
                continue
            if lowered is not None and probe.lowered is not None:
                matched = probe.lowered.search(lowered)
            else:
                matched = probe.pattern.search(text)
            if matched:
                return self._rules[probe.rule_index]
        return None if plan.fallback is None else self._rules[plan.fallback]

    def classify(self, code: int | None, enhanced: str | None, text: str) -> str:
        """The category of this failure: one of :data:`CATEGORIES`."""
        rule = self.rule_for(code, enhanced, text)
        return OTHER if rule is None else rule.category

    def _candidates(self, lowered: str | None) -> Iterable[int]:
        """Numbers of the probes that can match a text, in rule order, given the text in lower
        case, or ``None`` if it is not ASCII: case-insensitive matching pairs some non-ASCII
        letters with ASCII ones (the Kelvin sign with "k"), which lower() does not reproduce,
        so such a text is tried against every probe."""
        if lowered is None:
            return range(len(self._probes))
        trigrams = set(map("".join, zip(lowered, lowered[1:], lowered[2:], strict=False)))
        found = set(self._unanchored)
        for trigram in trigrams & self._by_trigram.keys():
            for anchor, number in self._by_trigram[trigram]:
                if anchor in lowered:
                    found.add(number)
        return sorted(found)

    def _make_plan(self, code: str | None, status: _Status | None) -> _Plan:
        text_rules: set[int] = set()
        for index, rule in enumerate(self._rules):
            if rule.applies_to_status(code, status):
                if rule.text is None:
                    return _Plan(frozenset(text_rules), index)
                text_rules.add(index)
        return _Plan(frozenset(text_rules), None)


@functools.cache
def default_classifier() -> Classifier:
    """The classifier with the built-in rules, built on first use and shared."""
    return Classifier.builtin()


def bounce_category(code: int | None, enhanced: str | None, text: str) -> str:
    """The PowerMTA-style category of a failed delivery, by the built-in rules.

    ``code`` is the SMTP reply code, or ``None`` when the failure happened before any reply;
    ``enhanced`` the RFC 3463 status (``"5.1.1"``), or ``None``/``""``; ``text`` the reply text
    or local failure description. Returns one of :data:`CATEGORIES`; never raises.
    """
    return default_classifier().classify(code, enhanced, text)


def normalise_text(text: str) -> str:
    """The text as rules see it: whitespace runs collapsed to one space and the ``550-5.7.1``
    prefixes of a multi-line reply's continuation lines removed."""
    text = " ".join(str(text).split())
    return _CONTINUATION.sub("", text) if "-" in text else text


# Rules files ---------------------------------------------------------------------------------


@functools.cache
def builtin_rules() -> tuple[Rule, ...]:
    """The rules shipped with the package, parsed once."""
    resource = resources.files("mta_logging").joinpath("data").joinpath(_BUILTIN_RULES)
    return _parse_rules(resource.read_text(encoding="utf-8"), f"{_BUILTIN_RULES} (built-in)")


def load_rules(path: str | os.PathLike[str]) -> tuple[Rule, ...]:
    """Read a rules file (format: see the header of the built-in ``bounce_rules.tsv``).

    Raises :class:`~mta_logging.errors.ConfigError` naming the file, the line and the problem
    for a wrong number of fields, an unknown category, a malformed code or status pattern or a
    regular expression that does not compile; and naming the file if it cannot be read.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as stream:
            content = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError("rules file", name, f"it cannot be read: {reason}") from exc
    return _parse_rules(content, name)


def _parse_rules(content: str, source: str) -> tuple[Rule, ...]:
    rules = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rules.append(_parse_rule(line, f"{source}, line {number}"))
    return tuple(rules)


def _parse_rule(line: str, origin: str) -> Rule:
    fields = _FIELD_SEPARATOR.split(line.strip())
    if len(fields) != len(_FIELDS):
        raise ConfigError(
            "rule",
            line,
            f"expected {len(_FIELDS)} fields separated by TABs ({', '.join(_FIELDS)}),"
            f" found {len(fields)}",
            source=origin,
        )
    category, code, enhanced, text = (field.strip() for field in fields)
    if category not in CATEGORIES:
        raise ConfigError(
            "category", category, f"expected one of {', '.join(CATEGORIES)}", source=origin
        )
    return Rule(
        category=category,
        codes=_parse_codes(code, origin),
        statuses=_parse_statuses(enhanced, origin),
        text=_parse_text(text, origin),
        origin=origin,
    )


def _parse_codes(field: str, origin: str) -> tuple[str, ...] | None:
    if field == _ANY:
        return None
    codes = tuple(part.strip().lower() for part in field.split(","))
    if not all(code == _NO_REPLY or _CODE_PATTERN.fullmatch(code) for code in codes):
        raise ConfigError(
            "code",
            field,
            f"expected '{_ANY}' (any), '{_NO_REPLY}' (no reply) or reply codes such as"
            " 550, 55x, 5xx, separated by commas",
            source=origin,
        )
    return codes


def _parse_statuses(field: str, origin: str) -> tuple[_StatusPattern, ...] | None:
    if field == _ANY:
        return None
    patterns = []
    for part in field.split(","):
        matched = _STATUS_PATTERN.fullmatch(part.strip().lower())
        if matched is None:
            raise ConfigError(
                "enhanced",
                field,
                f"expected '{_ANY}' (any) or RFC 3463 status codes such as 5.1.1, x.1.1,"
                " 4.7.x, separated by commas",
                source=origin,
            )
        klass, subject, detail = (None if p == "x" else str(int(p)) for p in matched.groups())
        patterns.append((klass, subject, detail))
    return tuple(patterns)


def _parse_text(field: str, origin: str) -> re.Pattern[str] | None:
    if field == _ANY:
        return None
    try:
        return re.compile(field, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(
            "text", field, f"expected a Python regular expression ({exc})", source=origin
        ) from exc


# Codes and statuses ---------------------------------------------------------------------------


def _parse_status(enhanced: str | None) -> _Status | None:
    if not enhanced:
        return None
    matched = _STATUS.fullmatch(str(enhanced).strip())
    if matched is None:
        return None
    klass, subject, detail = matched.groups()
    return klass, str(int(subject)), str(int(detail))


def _code_matches(pattern: str, code: str | None) -> bool:
    if pattern == _NO_REPLY:
        return code is None
    if code is None or len(code) != 3:
        return False
    return all(p in ("x", c) for p, c in zip(pattern, code, strict=True))


def _status_matches(pattern: _StatusPattern, status: _Status | None) -> bool:
    if status is None:
        return False
    return all(p is None or p == s for p, s in zip(pattern, status, strict=True))


# The probe index: rules split into alternatives, each filed under a literal it must contain ----


@dataclass(frozen=True, slots=True)
class _Probe:
    """One top-level alternative of a rule's text pattern, with literals its matches contain.

    Every match contains one of the ``anchors`` (lower case); ``None`` when no such literals of
    three characters or more were found, and the probe is tried on every text.
    """

    rule_index: int
    pattern: re.Pattern[str]
    anchors: frozenset[str] | None
    lowered: re.Pattern[str] | None
    """The alternative in lower case, matched case-sensitively against lower-cased ASCII text:
    several times faster than ``re.IGNORECASE``. ``None`` when lowering could change what the
    pattern means (non-ASCII, character codes such as ``\\x41``, upper case in a class)."""


def _probes(rule_index: int, pattern: re.Pattern[str]) -> list[_Probe]:
    """The rule's pattern as separately compiled top-level alternatives, with their anchors.

    Keeps the pattern whole, unanchored, where splitting could change its meaning (global
    flags such as ``(?x)`` apply to every alternative, group numbers shift) or does not give
    patterns that compile (the split is a plain scan, not a full parse).
    """
    whole = [_Probe(rule_index, pattern, None, None)]
    if _UNSPLITTABLE.search(pattern.pattern):
        return whole
    alternatives = _top_level_alternatives(pattern.pattern)
    try:
        compiled = [re.compile(part, pattern.flags) for part in alternatives]
    except re.error:
        return whole
    return [
        _Probe(rule_index, part, _anchors(source), _lower_case(source, pattern.flags))
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
    three characters, or has non-ASCII letters (see :meth:`Classifier._candidates`).
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
