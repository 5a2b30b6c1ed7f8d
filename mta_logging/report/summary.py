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
from datetime import datetime
from typing import Any

from mta_logging.outcome import Kind
from mta_logging.report.reader import ReadStats, Record

OTHER = "(other)"
UNKNOWN = "(unknown)"
KINDS = (Kind.DELIVERED, Kind.DEFERRED, Kind.BOUNCE)
KIND_LABELS = {Kind.DELIVERED: "delivered", Kind.DEFERRED: "deferred", Kind.BOUNCE: "bounced"}
_INDEX = {kind: index for index, kind in enumerate(KINDS)}
PERCENTILES = (50, 90, 99)
DEFAULT_MAX_KEYS = 100_000

_REPLY_START = re.compile(r"\s*(\d{3}(?:[ -]+\d\.\d{1,3}\.\d{1,3})?)?(.*)\Z", re.DOTALL)
_VOLATILE = (
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"<?[\w.+=-]+@[\w-]+(?:\.[\w-]+)+>?"), "<addr>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "<ip>"),
    (re.compile(r"\b(?=[0-9a-fA-F:]*:[0-9a-fA-F:]*:)[0-9a-fA-F:]{6,}\b"), "<ip>"),
    (re.compile(r"[\w.-]*\d[\w.-]*"), "#"),
    (re.compile(r"\s+"), " "),
)
REASON_LENGTH = 160


def normalize_reason(message: str | None) -> str:
    """A DSN message with its variable parts replaced, so that equal reasons count together.

    The leading SMTP code and enhanced status stay; addresses become ``<addr>``, IPs ``<ip>``,
    URLs ``<url>``, and any other word holding a digit (queue ids, counts, times) ``#``.
    """
    if not message:
        return ""
    match = _REPLY_START.match(message)
    code, rest = (match.group(1) or "", match.group(2)) if match else ("", message)
    for pattern, replacement in _VOLATILE:
        rest = pattern.sub(replacement, rest)
    text = (code + " " + rest.strip()).strip() if code else rest.strip()
    if len(text) > REASON_LENGTH:
        text = text[: REASON_LENGTH - 1] + "…"
    return text


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
        self.first_logged: datetime | None = None
        self.last_logged: datetime | None = None
        self._reasons: dict[str, str] = {}  # dsnMsg → normalized, for the most recent messages
        self._max_keys = max_keys

    def add(self, record: Record) -> None:
        index = _INDEX.get(record.kind) if record.kind is not None else None
        if index is None:
            self.unknown_kind += 1
            return
        self.totals[index] += 1
        fields = record.fields
        self.domains.add(record.domain or UNKNOWN, index)
        self.vmtas.add(fields.get("vmta") or UNKNOWN, index)
        self.src_ips.add(fields.get("srcIp") or UNKNOWN, index)
        logged = record.time_logged
        if logged is not None:
            self.hours.add(logged.replace(minute=0, second=0, microsecond=0), index)
            if self.first_logged is None or logged < self.first_logged:
                self.first_logged = logged
            if self.last_logged is None or logged > self.last_logged:
                self.last_logged = logged
        if index == 0:
            seconds = record.queue_seconds
            if seconds is not None:
                self.queue_delay.add(seconds)
            return
        reason = (fields.get("dsnStatus") or "", self._normalized(fields.get("dsnMsg")))
        if index == 1:
            self.deferral_reasons.add(reason, (OTHER, ""))
        else:
            self.bounce_reasons.add(reason, (OTHER, ""))
            self.bounce_cats.add(fields.get("bounceCat") or UNKNOWN)

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
        delivered, deferred, bounced = self.totals
        report: dict[str, Any] = {}
        if stats is not None:
            report["input"] = {
                "files": stats.files,
                "lines": stats.lines,
                "records": stats.records,
                "matched": stats.matched,
                "skipped_lines": stats.skipped_lines,
                "skipped_files": stats.skipped_files,
                "issues": stats.issues,
            }
        report["period"] = {
            "first": _time_text(self.first_logged),
            "last": _time_text(self.last_logged),
        }
        report["totals"] = {
            "delivered": delivered,
            "deferred": deferred,
            "bounced": bounced,
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
                self.hours.counts.items(), key=lambda item: str(item[0]))
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
    return [
        {name: key, "delivered": d, "deferred": df, "bounced": b, "total": d + df + b}
        for key, (d, df, b) in items
    ]


def _reason_rows(items: list[tuple[tuple[str, str], int]]) -> list[dict[str, Any]]:
    return [
        {"dsnStatus": status, "dsnMsg": message, "count": count}
        for (status, message), count in items
    ]


def _hour_text(hour: datetime | str) -> str:
    return hour if isinstance(hour, str) else hour.strftime("%Y-%m-%d %H:00")


def _time_text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")
