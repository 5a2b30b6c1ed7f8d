"""Summaries of accounting records, in memory that does not grow with the number of records.

Counts are exact. Memory grows only with the number of distinct keys (domains, vmtas, source
IPs, reasons, hours, distinct delay seconds), and each keyed table stops taking new keys at
``max_keys``: later new keys are counted under ``(other)`` and the report says how many
records that concerned. Queue-delay percentiles come from a histogram of whole seconds, so
p50/p90/p99 are exact (nearest-rank) without keeping every value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mta_logging.address import domain_of
from mta_logging.outcome import Kind
from mta_logging.reply import parse_reply
from mta_logging.report.reader import ReadStats, Record, Schema
from mta_logging.report.times import wall_time

OTHER = "(other)"
UNKNOWN = "(unknown)"
KINDS = (Kind.DELIVERED, Kind.DEFERRED, Kind.BOUNCE)
_LABELS = tuple(kind.label for kind in KINDS)
_INDEX = {kind: index for index, kind in enumerate(KINDS)}
PERCENTILES = (50, 90, 99)
_OTHER_REASON = (OTHER, "")
_SUMMARY_FIELDS = ("rcpt", "vmta", "srcIp", "dsnStatus", "dsnMsg", "bounceCat", "timeQueued")
DEFAULT_MAX_KEYS = 100_000

_EDGES = "<>()[]{}\"',;:."  # punctuation around a word that is kept as it is
_DIGIT = re.compile(r"\d")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}\Z")
_IPV6 = re.compile(r"[0-9a-fA-F]*:[0-9a-fA-F]*:[0-9a-fA-F:.]*\Z")
REASON_LENGTH = 160


def normalize_reason(message: str | None) -> str:
    """A DSN message with its variable parts replaced, so that equal reasons count together.

    The leading SMTP code and enhanced status stay; in the rest, words that are addresses
    become ``<addr>``, IPs ``<ip>``, URLs ``<url>``, and other words holding a digit (queue
    ids, counts, times) ``#``; runs of white space become one space.
    """
    if not message:
        return ""
    reply = parse_reply(message)
    rest = " ".join(_normalize_word(word) for word in reply.text.split())
    text = f"{reply.head} {rest}".strip() if reply.head else rest
    if len(text) > REASON_LENGTH:
        text = text[: REASON_LENGTH - 1] + "…"
    return text


def _normalize_word(word: str) -> str:
    core = word.strip(_EDGES)
    if not core:
        return word
    if "://" in core:
        replacement = "<url>"
    elif "@" in core:
        replacement = "<addr>"
    elif _DIGIT.search(core) is None:
        return word
    elif _IPV4.match(core) or _IPV6.match(core):
        replacement = "<ip>"
    else:
        replacement = "#"
    start = word.index(core)
    before, after = word[:start], word[start + len(core):]
    if replacement == "<addr>" and before.endswith("<") and after.startswith(">"):
        before, after = before[:-1], after[1:]  # <bob@example.com> → <addr>
    return before + replacement + after


class KeyedCounts:
    """Counts per key and kind (delivered, deferred, bounced); at most ``max_keys`` keys."""

    __slots__ = ("max_keys", "counts", "overflow")

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self.counts: dict[Any, list[int]] = {}
        self.overflow = 0  # records counted under OTHER because the table was full

    def add(self, key: Any, index: int) -> None:
        counts = self.counts.get(key)
        if counts is None:
            if len(self.counts) >= self.max_keys:
                self.overflow += 1
                key = OTHER
                counts = self.counts.get(key)
            if counts is None:
                counts = self.counts[key] = [0, 0, 0]
        counts[index] += 1

    def top(self, limit: int | None) -> list[tuple[Any, list[int]]]:
        """Keys by total count (highest first, then by name); all when ``limit`` is None."""
        items = sorted(self.counts.items(), key=lambda item: (-sum(item[1]), str(item[0])))
        return items if limit is None else items[:limit]


def _count(table: KeyedCounts, key: Any, index: int) -> None:
    counts = table.counts.get(key)
    if counts is None:
        table.add(key, index)
    else:
        counts[index] += 1


class Counts:
    """Plain counts per key; at most ``max_keys`` keys (then ``(other)``)."""

    __slots__ = ("max_keys", "counts", "overflow")

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self.counts: dict[Any, int] = {}
        self.overflow = 0

    def add(self, key: Any, other: Any = OTHER) -> None:
        counts = self.counts
        if key not in counts and len(counts) >= self.max_keys:
            self.overflow += 1
            key = other
        counts[key] = counts.get(key, 0) + 1

    def top(self, limit: int | None) -> list[tuple[Any, int]]:
        items = sorted(self.counts.items(), key=lambda item: (-item[1], str(item[0])))
        return items if limit is None else items[:limit]


class Histogram:
    """Counts of whole-second values: exact percentiles in memory bounded by the value range."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0

    def add(self, value: int) -> None:
        buckets = self.buckets
        buckets[value] = buckets.get(value, 0) + 1
        self.count += 1
        self.total += value

    def percentile(self, percent: int) -> int | None:
        """Nearest rank: the smallest value with at least ``percent`` % of values ≤ it."""
        if not self.count:
            return None
        rank = max(1, -(-self.count * percent // 100))  # ceil, in integers
        seen = 0
        for value in sorted(self.buckets):
            seen += self.buckets[value]
            if seen >= rank:
                return value
        return max(self.buckets)  # pragma: no cover (rank ≤ count)

    def summary(self) -> dict[str, int | float | None]:
        result: dict[str, int | float | None] = {"count": self.count}
        for percent in PERCENTILES:
            result[f"p{percent}"] = self.percentile(percent)
        result["min"] = min(self.buckets) if self.buckets else None
        result["max"] = max(self.buckets) if self.buckets else None
        result["mean"] = round(self.total / self.count, 1) if self.count else None
        return result


class Summary:
    """Aggregates records into the numbers of ``mta-logging report``.

    ``add`` takes one record; ``add_all`` a stream of them. ``report(top)`` gives the result as
    plain data (what ``--json`` prints): every list section limited to ``top`` rows, except the
    per-hour table.
    """

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.totals = [0, 0, 0]
        self.unknown_kind = 0
        self.domains = KeyedCounts(max_keys)
        self.vmtas = KeyedCounts(max_keys)
        self.src_ips = KeyedCounts(max_keys)
        self.hours = KeyedCounts(max_keys)
        self.bounce_cats = Counts(max_keys)
        self.deferral_reasons = Counts(max_keys)
        self.bounce_reasons = Counts(max_keys)
        self.queue_delay = Histogram()
        self.first_logged: int | None = None  # wall_seconds
        self.last_logged: int | None = None
        self._reasons: dict[str, str] = {}  # dsnMsg → normalized, for the most recent messages
        self._positions: dict[Schema, tuple[int | None, ...]] = {}

    def add(self, record: Record) -> None:
        index = _INDEX.get(record.kind)  # type: ignore[arg-type]
        if index is None:
            self.unknown_kind += 1
            return
        self.totals[index] += 1
        schema = record.schema
        positions = self._positions.get(schema)
        if positions is None:
            positions = self._positions[schema] = tuple(
                schema.index.get(name) for name in _SUMMARY_FIELDS)
        values, unknown = record.values, schema.unknown
        rcpt, vmta, src_ip, status, message, category, queued = [
            None if position is None or values[position] in unknown else values[position]
            for position in positions]
        _count(self.domains, domain_of(rcpt) or UNKNOWN, index)
        _count(self.vmtas, vmta or UNKNOWN, index)
        _count(self.src_ips, src_ip or UNKNOWN, index)
        logged = record.logged
        if logged is not None:
            _count(self.hours, logged - logged % 3600, index)
            if self.first_logged is None or logged < self.first_logged:
                self.first_logged = logged
            if self.last_logged is None or logged > self.last_logged:
                self.last_logged = logged
        if index == 0:
            if logged is not None and queued is not None:
                queued_at = schema.times.seconds(queued)
                if queued_at is not None:
                    self.queue_delay.add(logged - queued_at)
            return
        reason = (status or "", self._normalized(message))
        if index == 1:
            self.deferral_reasons.add(reason, _OTHER_REASON)
        else:
            self.bounce_reasons.add(reason, _OTHER_REASON)
            self.bounce_cats.add(category or UNKNOWN)

    def add_all(self, records: Iterable[Record]) -> Summary:
        for record in records:
            self.add(record)
        return self

    def _normalized(self, message: str | None) -> str:
        if not message:
            return ""
        cache = self._reasons
        text = cache.get(message)
        if text is None:
            if len(cache) >= 10_000:
                cache.clear()
            text = cache[message] = normalize_reason(message)
        return text

    @property
    def records(self) -> int:
        return sum(self.totals) + self.unknown_kind

    @property
    def delivery_rate(self) -> float | None:
        """delivered / (delivered + bounced): the share of final outcomes that were deliveries."""
        final = self.totals[0] + self.totals[2]
        return round(self.totals[0] / final, 4) if final else None

    def report(self, top: int = 10, stats: ReadStats | None = None) -> dict[str, Any]:
        """The summary as plain data (dicts, lists, strings, numbers)."""
        report: dict[str, Any] = {}
        if stats is not None:
            report["input"] = {
                "files": stats.files,
                "lines": stats.lines,
                "records": stats.records,
                "matched": stats.matched,
                "skipped_lines": stats.skipped_lines,
                "skipped_files": stats.skipped_files,
                "damaged_files": stats.damaged_files,
                "issues": stats.issues,
            }
        report["period"] = {
            "first": _time_text(self.first_logged),
            "last": _time_text(self.last_logged),
        }
        report["totals"] = {
            **dict(zip(_LABELS, self.totals, strict=True)),
            "unknown": self.unknown_kind,
            "total": self.records,
        }
        report["delivery_rate"] = self.delivery_rate
        report["domains"] = _keyed_rows("domain", self.domains.top(top))
        report["bounce_categories"] = [
            {"category": key, "count": count} for key, count in self.bounce_cats.top(top)
        ]
        report["deferral_reasons"] = _reason_rows(self.deferral_reasons.top(top))
        report["bounce_reasons"] = _reason_rows(self.bounce_reasons.top(top))
        report["queue_delay"] = self.queue_delay.summary()
        report["vmtas"] = _keyed_rows("vmta", self.vmtas.top(top))
        report["src_ips"] = _keyed_rows("srcIp", self.src_ips.top(top))
        report["hours"] = _keyed_rows("hour", [
            (_hour_text(hour), counts) for hour, counts in sorted(
                self.hours.counts.items(), key=_hour_order)
        ])
        report["distinct"] = {
            "domains": len(self.domains.counts),
            "bounce_categories": len(self.bounce_cats.counts),
            "deferral_reasons": len(self.deferral_reasons.counts),
            "bounce_reasons": len(self.bounce_reasons.counts),
            "vmtas": len(self.vmtas.counts),
            "src_ips": len(self.src_ips.counts),
        }
        overflow = {
            name: table.overflow
            for name, table in (
                ("domains", self.domains), ("vmtas", self.vmtas), ("src_ips", self.src_ips),
                ("hours", self.hours), ("bounce_categories", self.bounce_cats),
                ("deferral_reasons", self.deferral_reasons),
                ("bounce_reasons", self.bounce_reasons),
            )
            if table.overflow
        }
        if overflow:
            report["counted_as_other"] = overflow
        return report


def _keyed_rows(name: str, items: list[tuple[str, list[int]]]) -> list[dict[str, Any]]:
    return [{name: key, **dict(zip(_LABELS, counts, strict=True)), "total": sum(counts)}
            for key, counts in items]


def _reason_rows(items: list[tuple[tuple[str, str], int]]) -> list[dict[str, Any]]:
    return [
        {"dsnStatus": status, "dsnMsg": message, "count": count}
        for (status, message), count in items
    ]


def _hour_order(item: tuple[int | str, list[int]]) -> tuple[bool, int]:
    key = item[0]
    return (True, 0) if isinstance(key, str) else (False, key)  # (other) last


def _hour_text(hour: int | str) -> str:
    return hour if isinstance(hour, str) else wall_time(hour).strftime("%Y-%m-%d %H:00")


def _time_text(seconds: int | None) -> str | None:
    return None if seconds is None else wall_time(seconds).strftime("%Y-%m-%d %H:%M:%S")
