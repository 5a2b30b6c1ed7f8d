"""Bounce classification: which PowerMTA-style category a failed delivery belongs to.

A failure is described by the SMTP reply code (``None`` when it happened before any reply: a
refused connection, a DNS failure, a time-out), the RFC 3463 enhanced status code (``"5.1.1"``;
``None`` or ``""`` when absent) and the reply text, the local description of the failure, or a
mail system's bounce text around the remote server's reply (pulled out first by
:func:`mta_logging.reply.find_reply`). Ordered rules, read from tab-separated files, map them to
one of :data:`CATEGORIES`; the built-in rules ship in ``mta_logging/data/bounce_rules.tsv``,
whose header documents the format and the order in which rules are tried (in tiers: the reply's
own words, then the wrapper's, then the statuses; see :class:`Classifier`). A user's own rules
file goes in front of the built-in one, and its rules are tried first::

    classifier = Classifier.from_files(["/etc/mta-logging/bounce_rules.tsv"])
    classifier.classify(550, "5.7.1", "Message rejected: listed at example-rbl.org")
    classifier.explain(550, "5.7.1", "...")  # the category, the rule, what was read

:func:`bounce_category` classifies with the built-in rules alone. The search for phrases is
:mod:`mta_logging.prefilter`'s.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Final

from mta_logging.errors import ConfigError
from mta_logging.prefilter import PatternIndex, Selection
from mta_logging.reply import (
    WRAPPER_MARKERS,
    EmbeddedReply,
    find_reply,
    has_status,
    may_be_wrapped,
    parse_reply,
    parse_status,
    reply_codes,
    single_spaced,
    without_continuations,
)

__all__ = [
    "CATEGORIES",
    "PARTS",
    "RELAY_CATEGORIES",
    "Classifier",
    "Rule",
    "Verdict",
    "bounce_category",
    "builtin_rules",
    "default_classifier",
    "failure_category",
    "load_rules",
    "normalise_text",
]

CATEGORIES: Final[tuple[str, ...]] = (
    "bad-mailbox",
    "bad-domain",
    "inactive-mailbox",
    "invalid-sender",
    "quota-issues",
    "spam-related",
    "virus-related",
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
"""Every category :func:`bounce_category` can return (PowerMTA's 17); ``other`` when no rule
applies."""

RELAY_CATEGORIES: Final[tuple[str, ...]] = ("suppressed", "admin-bounce", "admin-delete")
"""Categories that no reply gives: the relay writes them for recipients it bounces itself (on
its suppression list, bounced or deleted by an operator). Rules cannot name them."""

OTHER: Final = "other"

PARTS: Final[tuple[str, ...]] = ("reply", "wrapper", "status", "code", "any")
"""What decided a :class:`Verdict` (its ``part``): a text rule that matched the embedded reply's
own words (``reply``; the whole text when no wrapper is found) or only the wrapper's words
around it (``wrapper``), a rule without a text condition on the enhanced status (``status``), on
the reply code alone (``code``) or on neither (``any``)."""

_BUILTIN_RULES: Final = "bounce_rules.tsv"
_FIELDS: Final = ("category", "code", "enhanced", "text")
_ANY: Final = "-"
_NO_REPLY: Final = "none"

# A status pattern is (class, subject, detail), None standing for the wildcard "x"; or None for
# "none", a failure without a status.
_StatusPattern = tuple[str | None, str | None, str | None] | None
_Status = tuple[str, str, str]

_FIELD_SEPARATOR = re.compile(r"\t+")
_CODE_PATTERN = re.compile(r"[2-5x][0-9x]{2}")
_STATUS_PATTERN = re.compile(r"([245x])\.([0-9]{1,3}|x)\.([0-9]{1,3}|x)")
# What may_be_wrapped looks for, as a pattern of the index (case-insensitive, as the rules' are:
# the same answer as lower() gives on an ASCII text)
_MARKERS = re.compile("|".join(map(re.escape, WRAPPER_MARKERS)), re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of a rules file: when it applies, the failure belongs to ``category``.

    ``codes`` and ``statuses`` are ``None`` when the line said ``-`` (any); ``text`` is ``None``
    likewise. A status pattern ``None`` stands for ``none``: the failure has no status.
    ``origin`` names the file and line, for error messages and debugging; ``line`` is the rule
    as written; ``source`` the file it was read from (the rules of each file start a tier of
    their own, see :class:`Classifier`).
    """

    category: str
    codes: tuple[str, ...] | None
    statuses: tuple[_StatusPattern, ...] | None
    text: re.Pattern[str] | None
    origin: str
    line: str = ""
    source: str = ""

    def applies_to_status(self, code: str | None, status: _Status | None) -> bool:
        """Whether the code and enhanced-status fields of this rule accept the given ones."""
        if self.codes is not None and not any(_code_matches(p, code) for p in self.codes):
            return False
        return self.statuses is None or any(_status_matches(p, status) for p in self.statuses)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a failure got its category: the ``rule`` that applied (``None``: no rule did, the
    category is ``other``), the reply ``found`` in the text (see
    :func:`mta_logging.reply.find_reply`), the ``code`` and ``enhanced`` status the rules were
    given, the ``text`` the rule's pattern was searched in (the embedded reply's words, or the
    whole text on one line; ``""`` for a rule without a text condition, or when no rule
    applied) and the ``part`` that decided, one of :data:`PARTS` (``""`` when no rule
    applied)."""

    category: str
    rule: Rule | None
    found: EmbeddedReply
    code: int | None
    enhanced: str | None
    text: str
    part: str


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which rules can apply for one reply code and status: the text rules among them (those
    before the first rule without a text condition that applies), that rule, which applies
    when none of those does, and for each tier number ``t`` the text rules of the tiers before
    ``t`` (``earlier[t]``; the wrapper's words are searched by those alone once the reply's own
    words matched a rule of tier ``t``)."""

    text_rules: Selection
    fallback: int | None
    earlier: tuple[Selection, ...]


class Classifier:
    """Classifies failed deliveries with an ordered list of rules, read as a postmaster reads a
    bounce: the remote server's own words first, then what the mail system that wrapped them
    says, then the status codes.

    The reply is pulled out of the text first (:func:`mta_logging.reply.find_reply`: the
    remote server's reply inside an Exim, Postfix, qmail, Exchange... bounce text): a code or
    status the caller does not give, or gives only as a generic ``x.0.0``, is the one found
    there. The rules fall into *tiers*: a tier is a run of rules with a text condition, from
    one file, and the rules without one that follow it. Tier by tier, the text rules are
    searched in the embedded reply's own words (the whole text when no wrapper is found), then
    in the whole text, which adds the wrapper's words ("refused to talk to me", "retry timeout
    exceeded": telling when the reply itself says nothing the tier knows); the first rule that
    matches wins, else the first of the tier's rules without a text condition that accepts the
    code and status; else the next tier. So the built-in rules put the words that name a
    reason first, then the statuses that decide whatever weaker words say, then the words that
    only introduce a refusal ("Sender address rejected", "Access denied"), then the other
    statuses and the codes; and each rules file in front of them is a tier of its own, tried
    before them, as a whole.
    """

    def __init__(self, rules: Iterable[Rule], *, remember: int = 4096) -> None:
        """``remember``: how many of the last distinct failures (code, status, text) keep their
        answer, so that the same reply for many recipients is classified once; ``0`` for
        none."""
        self._rules = tuple(rules)
        self._tier = _tiers(self._rules)
        patterns = {index: rule.text for index, rule in enumerate(self._rules)
                    if rule.text is not None}
        # the wrapper markers are looked for through the same words as the rules' phrases
        patterns[len(self._rules)] = _MARKERS
        self._index = PatternIndex(patterns)
        self._markers = self._index.select([len(self._rules)])
        self._plan_for = functools.lru_cache(maxsize=4096)(self._make_plan)
        self._given = functools.lru_cache(maxsize=4096, typed=True)(self._make_given)
        self._decided = (functools.lru_cache(maxsize=remember)(self._decide) if remember > 0
                         else self._decide)

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

    def explain(self, code: int | None, enhanced: str | None, text: str) -> Verdict:
        """The category of this failure, the rule that gave it and what was read from the
        text. Never raises."""
        number, code, status, searched, part = self._decided(code, enhanced, text)
        rule = None if number is None else self._rules[number]
        return Verdict(OTHER if rule is None else rule.category, rule, find_reply(text), code,
                       None if status is None else ".".join(status), searched, part)

    def rule_for(self, code: int | None, enhanced: str | None, text: str) -> Rule | None:
        """The first rule that applies to this failure, or ``None`` when none does."""
        number = self._decided(code, enhanced, text)[0]
        return None if number is None else self._rules[number]

    def classify(self, code: int | None, enhanced: str | None, text: str) -> str:
        """The category of this failure: one of :data:`CATEGORIES`."""
        number = self._decided(code, enhanced, text)[0]
        return OTHER if number is None else self._rules[number].category

    def _decide(
        self, code: int | None, enhanced: str | None, text: str
    ) -> tuple[int | None, int | None, _Status | None, str, str]:
        """The number of the rule that applies (``None``: none does), the code and status the
        rules were given, the text the rule was searched in and the part that decided (see
        :data:`PARTS`). The text is searched for an embedded reply only when it may hold a
        wrapper, or for what the caller did not give and the text can have: the usual cases,
        a reply without a wrapper with its code and a specific status given, cost no search.
        The whole text is searched a second time only when a wrapper was found, and then only
        by the rules of the tiers before the one the reply's own words matched."""
        status, generic, plan = self._given(code, enhanced)
        whole = normalise_text(text)
        scanned = self._index.scan(whole)
        own, own_scanned = whole, scanned
        # (the index's case-insensitive search differs from lower() on some non-ASCII letters)
        marked = (self._index.first_match(whole, self._markers, scanned) is not None
                  if whole.isascii() else may_be_wrapped(whole))
        if code is None or (generic and has_status(text)) or marked:
            if marked:
                found = find_reply(text)
                found_code, found_status = found.reply.code, found.reply.enhanced
            else:  # what find_reply would find: no wrapper (whole holds every marker text does)
                found_code, found_status = reply_codes(text)
            if code is None:
                code = found_code
            embedded = parse_status(found_status)
            if embedded is not None and generic:
                status = embedded
            plan = self._plan_for(None if code is None else str(code), status)
            if marked and found.wrapper:
                own = normalise_text(found.reply.text)
                own_scanned = self._index.scan(own)
        number = self._index.first_match(own, plan.text_rules, own_scanned)
        if own is not whole:
            earlier = plan.text_rules if number is None else plan.earlier[self._tier[number]]
            around = (self._index.first_match(whole, earlier, scanned) if earlier.probes
                      else None)
            if around is not None:
                return around, code, status, whole, "wrapper"
        if number is not None:
            return number, code, status, own, "reply"
        if plan.fallback is None:
            return None, code, status, "", ""
        rule = self._rules[plan.fallback]
        part = "status" if rule.statuses is not None else "code" if rule.codes else "any"
        return plan.fallback, code, status, "", part

    def _make_given(
        self, code: int | None, enhanced: str | None
    ) -> tuple[_Status | None, bool, _Plan]:
        """The status ``enhanced`` gives, whether it is none or a generic ``x.0.0`` (one in the
        text then replaces it), and the plan for the code and that status."""
        status = parse_status(enhanced)
        return (status, status is None or status[1:] == ("0", "0"),
                self._plan_for(None if code is None else str(code), status))

    def _make_plan(self, code: str | None, status: _Status | None) -> _Plan:
        text_rules: list[int] = []
        fallback = None
        for index, rule in enumerate(self._rules):
            if rule.applies_to_status(code, status):
                if rule.text is None:
                    fallback = index
                    break
                text_rules.append(index)
        tiers = (self._tier[-1] + 1) if self._tier else 0
        earlier = tuple(self._index.select(i for i in text_rules if self._tier[i] < tier)
                        for tier in range(tiers))
        return _Plan(self._index.select(text_rules), fallback, earlier)


def _tiers(rules: tuple[Rule, ...]) -> tuple[int, ...]:
    """The tier number of each rule: a new tier starts at a rule with a text condition that
    follows one without, or one from another file."""
    numbers = []
    tier = 0
    for index, rule in enumerate(rules):
        if index and rule.text is not None:
            previous = rules[index - 1]
            if previous.text is None or previous.source != rule.source:
                tier += 1
        numbers.append(tier)
    return tuple(numbers)


@functools.cache
def default_classifier() -> Classifier:
    """The classifier with the built-in rules, built on first use and shared."""
    return Classifier.builtin()


def bounce_category(code: int | None, enhanced: str | None, text: str) -> str:
    """The PowerMTA-style category of a failed delivery, by the built-in rules.

    ``code`` is the SMTP reply code, or ``None`` when the failure happened before any reply;
    ``enhanced`` the RFC 3463 status (``"5.1.1"``), or ``None``/``""``; ``text`` the reply text
    or local failure description, possibly wrapped in a mail system's bounce text. Returns one
    of :data:`CATEGORIES`; never raises.
    """
    return default_classifier().classify(code, enhanced, text)


def failure_category(dsn_status: str | None, dsn_msg: str | None) -> str:
    """The category of a failure recorded with status ``dsn_status`` and reply ``dsn_msg``
    (what ``AccountingLogger.bounced`` gives one it is not told a category for): the reply's
    code, the status (else the reply's enhanced status) and the reply text."""
    reply = parse_reply(dsn_msg)
    return bounce_category(reply.code, dsn_status or reply.enhanced, dsn_msg or "")


def normalise_text(text: str) -> str:
    """The whole text as rules see it: whitespace runs collapsed to one space and the
    ``550-5.7.1`` prefixes of a multi-line reply's continuation lines removed."""
    return without_continuations(single_spaced(str(text)))


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
        rules.append(_parse_rule(line, f"{source}, line {number}", source))
    return tuple(rules)


def _parse_rule(line: str, origin: str, source: str) -> Rule:
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
        line=line.strip(),
        source=source,
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
    patterns: list[_StatusPattern] = []
    for part in field.split(","):
        if part.strip().lower() == _NO_REPLY:
            patterns.append(None)
            continue
        matched = _STATUS_PATTERN.fullmatch(part.strip().lower())
        if matched is None:
            raise ConfigError(
                "enhanced",
                field,
                f"expected '{_ANY}' (any), '{_NO_REPLY}' (no status) or RFC 3463 status codes"
                " such as 5.1.1, x.1.1, 4.7.x, separated by commas",
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


def _code_matches(pattern: str, code: str | None) -> bool:
    if pattern == _NO_REPLY:
        return code is None
    if code is None or len(code) != 3:
        return False
    return all(p in ("x", c) for p, c in zip(pattern, code, strict=True))


def _status_matches(pattern: _StatusPattern, status: _Status | None) -> bool:
    if pattern is None or status is None:
        return pattern is None and status is None
    return all(p is None or p == s for p, s in zip(pattern, status, strict=True))
