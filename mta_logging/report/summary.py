"""Summaries of accounting records, in memory that does not grow with the number of records.

Counts are exact. Memory grows only with the number of distinct keys (domains, vmtas, source
IPs, reasons, hours, distinct delay seconds), and each keyed table stops taking new keys at
``max_keys``: later new keys are counted under ``(other)`` and the report says how many
records that concerned. Queue-delay percentiles come from a histogram of whole seconds, so
p50/p90/p99 are exact (nearest-rank) without keeping every value.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from mta_logging.address import domain_of
from mta_logging.errors import ConfigError
from mta_logging.formatters import unescape
from mta_logging.outcome import KIND_NAMES, Kind
from mta_logging.reply import parse_reply, parse_status
from mta_logging.report.reader import ReadStats, Record, Rows, Schema, written_seconds
from mta_logging.report.text import visible_data
from mta_logging.report.times import offset_changes, wall_time

OTHER = "(other)"
UNKNOWN = "(unknown)"
KINDS = (Kind.DELIVERED, Kind.DEFERRED, Kind.BOUNCE)
_LABELS = tuple(kind.label for kind in KINDS)
COUNTED_KINDS = tuple(kind for kind in Kind if kind not in KINDS)  # counted, not outcomes
_INDEX = {kind: index for index, kind in enumerate(KINDS)}
PERCENTILES = (50, 90, 99)
_OTHER_REASON = (OTHER, "")
_SUMMARY_FIELDS = ("rcpt", "vmta", "srcIp", "dsnStatus", "dsnMsg", "bounceCat", "timeQueued")
DEFAULT_MAX_KEYS = 100_000
# --bucket: width of the time series' buckets, in seconds
BUCKETS = {"15m": 900, "1h": 3600, "1d": 86400}
DEFAULT_BUCKET = "1h"

_EDGES = "<>()[]{}\"',;:."  # punctuation around a word that is kept as it is
_DIGIT = re.compile(r"\d")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}\Z")
_IPV6 = re.compile(r"[0-9a-fA-F]*:[0-9a-fA-F]*:[0-9a-fA-F:.]*\Z")
REASON_LENGTH = 160


def normalize_reason(message: str | None) -> str:
    """A DSN message with its variable parts replaced, so that equal reasons count together.

    The leading SMTP code and enhanced status stay (an enhanced status alone too, as in
    ``5.0.0 returned to the sender``); in the rest, words that are addresses become
    ``<addr>``, IPs ``<ip>``, URLs ``<url>``, and other words holding a digit (queue ids,
    counts, times) ``#``; runs of white space become one space.
    """
    if not message:
        return ""
    reply = parse_reply(message)
    head, words = reply.head, reply.text.split()
    if not head and words and parse_status(words[0]) is not None:
        head, words = words[0], words[1:]
    if len(_WORDS) >= _WORD_CACHE_SIZE:
        _WORDS.clear()
    rest = " ".join(map(_WORDS.__getitem__, words))
    text = f"{head} {rest}".strip() if head else rest
    if len(text) > REASON_LENGTH:
        text = text[: REASON_LENGTH - 1] + "…"
    return text


class _Words(dict[str, str]):
    """Words of reasons → their normalised form, each worked out once (until cleared)."""

    def __missing__(self, word: str) -> str:
        normal = self[word] = _normalize_word(word)
        return normal


_WORD_CACHE_SIZE = 65_536
_WORDS = _Words()


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

    def add(self, key: Any, index: int, count: int = 1) -> None:
        """Count ``count`` records of kind ``index`` under ``key`` (as ``count`` calls of one
        record each would: a key that is OTHER itself overflows once, then it is there)."""
        counts = self.counts.get(key)
        if counts is None:
            if len(self.counts) >= self.max_keys:
                self.overflow += 1 if key == OTHER else count
                key = OTHER
                counts = self.counts.get(key)
            if counts is None:
                counts = self.counts[key] = [0, 0, 0]
        counts[index] += count

    def merge(self, other: KeyedCounts) -> None:
        """Add the counts of ``other`` (new keys beyond ``max_keys`` go to ``(other)``)."""
        self.overflow += other.overflow
        for key, counts in other.counts.items():
            mine = self.counts.get(key)
            if mine is None and len(self.counts) >= self.max_keys and key != OTHER:
                self.overflow += sum(counts)
                key = OTHER
                mine = self.counts.get(key)
            if mine is None:
                mine = self.counts[key] = [0, 0, 0]
            for index, count in enumerate(counts):
                mine[index] += count

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

    def add(self, key: Any, other: Any = OTHER, count: int = 1) -> None:
        """Count ``count`` records under ``key`` (``other`` once the table is full), as
        ``count`` calls of one record each would."""
        counts = self.counts
        if key not in counts and len(counts) >= self.max_keys:
            self.overflow += 1 if key == other else count
            key = other
        counts[key] = counts.get(key, 0) + count

    def merge(self, other: Counts, other_key: Any = OTHER) -> None:
        """Add the counts of ``other`` (new keys beyond ``max_keys`` go to ``other_key``)."""
        self.overflow += other.overflow
        counts = self.counts
        for key, count in other.counts.items():
            if key not in counts and len(counts) >= self.max_keys and key != other_key:
                self.overflow += count
                key = other_key
            counts[key] = counts.get(key, 0) + count

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

    def add(self, value: int, count: int = 1) -> None:
        """Count ``value`` ``count`` times."""
        buckets = self.buckets
        buckets[value] = buckets.get(value, 0) + count
        self.count += count
        self.total += value * count

    def merge(self, other: Histogram) -> None:
        """Add the values counted by ``other``."""
        buckets = self.buckets
        for value, count in other.buckets.items():
            buckets[value] = buckets.get(value, 0) + count
        self.count += other.count
        self.total += other.total

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

    ``add`` takes one record; ``add_rows`` the records of a :class:`Rows` (the same counts,
    column by column); ``add_all`` a stream of either (:meth:`Reader.rows`); ``merge`` adds
    another summary's counts (one per worker process). Kinds that are no outcome
    (received, remote bounce, feedback) are counted in ``counted`` and reported under
    ``totals`` by their directory name.
    ``report(top)`` gives the result as plain data (what ``--json`` prints): every list
    section limited to ``top`` rows, except the time series.
    ``by`` names fields to count records by (any field, ``custom_X-Campaign`` too) and
    ``bucket`` (``15m``, ``1h``, ``1d``) the width of the time series' buckets.
    """

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS, *, by: Iterable[str] = (),
                 bucket: str = DEFAULT_BUCKET) -> None:
        if bucket not in BUCKETS:
            raise ConfigError("bucket", bucket, f"expected one of {', '.join(BUCKETS)}")
        self.bucket = bucket
        self._width = BUCKETS[bucket]
        self.totals = [0, 0, 0]
        self.unknown_kind = 0
        # records that are not outcomes of a delivery (received, remote bounce, feedback),
        # by kind: counted only
        self.counted: dict[Kind, int] = {}
        self.domains = KeyedCounts(max_keys)
        self.vmtas = KeyedCounts(max_keys)
        self.src_ips = KeyedCounts(max_keys)
        self.hours = KeyedCounts(max_keys)  # the time series, by bucket start
        self.by = {name: KeyedCounts(max_keys) for name in dict.fromkeys(by)}
        self.bounce_cats = Counts(max_keys)
        self.deferral_reasons = Counts(max_keys)
        self.bounce_reasons = Counts(max_keys)
        self.queue_delay = Histogram()
        self.first_logged: int | None = None  # wall_seconds
        self.last_logged: int | None = None
        self.naive_times = False  # some times were read without a UTC offset
        self._reasons: dict[str, str] = {}  # dsnMsg → normalized, for the most recent messages
        self._raw_reasons: dict[str, str] = {}  # the same for dsnMsg as written (Rows)
        self._domains: dict[str, str] = {}  # "@" + text after a recipient's last "@" → domain
        self._positions: dict[Schema, tuple[int | None, ...]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """The counts only (what a worker process sends back), not the per-file caches."""
        state = dict(self.__dict__)
        state["naive_times"] = self._saw_naive_times()
        state["_reasons"] = {}
        state["_raw_reasons"] = {}
        state["_domains"] = {}
        state["_positions"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def add(self, record: Record) -> None:
        index = _INDEX.get(record.kind)  # type: ignore[arg-type]
        if index is None:
            self._add_other(record.kind)
            return
        self.totals[index] += 1
        schema = record.schema
        positions = self._positions_of(schema)
        values, unknown = record.values, schema.unknown
        rcpt, vmta, src_ip, status, message, category, queued = [
            None if position is None or values[position] in unknown else values[position]
            for position in positions]
        _count(self.domains, domain_of(rcpt) or UNKNOWN, index)
        _count(self.vmtas, vmta or UNKNOWN, index)
        _count(self.src_ips, src_ip or UNKNOWN, index)
        for name, table in self.by.items():
            _count(table, record.get(name) or UNKNOWN, index)
        logged = record.logged
        if logged is not None:
            _count(self.hours, logged - logged % self._width, index)
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

    def _add_other(self, kind: Kind | None, count: int = 1) -> None:
        """Count records that are no outcome: of another kind (received, ...), or of none."""
        if kind is None:
            self.unknown_kind += count
        else:
            self.counted[kind] = self.counted.get(kind, 0) + count

    def _positions_of(self, schema: Schema) -> tuple[int | None, ...]:
        positions = self._positions.get(schema)
        if positions is None:
            positions = self._positions[schema] = tuple(
                schema.index.get(name) for name in _SUMMARY_FIELDS)
        return positions

    def add_rows(self, rows: Rows) -> None:
        """Count the records of ``rows`` exactly as :meth:`add` counts their Records.

        Column by column: each table counts the distinct (type, value) pairs of the rows
        (``Counter``, in C) and then takes each pair's count once, in the order the pairs
        first occur, so a full table takes the same keys as record by record; values are
        unescaped and made into keys once per distinct text."""
        schema = rows.schema
        count = len(rows.logged)
        if not count:
            return
        rcpt_at, vmta_at, src_ip_at, status_at, message_at, category_at, queued_at = (
            self._positions_of(schema))
        type_at = schema.index.get("type")

        def column(position: int | None) -> list[str]:
            return rows.column(position) if position is not None else [""] * count

        types: list[str] | list[None] = column(type_at) if type_at is not None else [None] * count
        index_of = {text: _INDEX.get(self._kind_of(text, rows.kind))  # type: ignore[arg-type]
                    for text in set(types)}
        for text, number in Counter(types).items():
            index = index_of[text]
            if index is None:
                self._add_other(self._kind_of(text, rows.kind), number)
            else:
                self.totals[index] += number
        outcomes = {index for index in index_of.values() if index is not None}
        if not outcomes:
            return
        logged = rows.logged
        self._add_domains(types, column(rcpt_at), index_of)
        for table, position in ((self.vmtas, vmta_at), (self.src_ips, src_ip_at),
                                *((table, schema.position(name))
                                  for name, table in self.by.items())):
            _fold(table, Counter(zip(types, column(position), strict=True)), index_of, _plain)
        kinds: Sequence[str | None] = types
        known = cast(list[int], logged)
        if None in logged or None in index_of.values():  # outcomes with a known time only
            timed = [(text, when) for text, when in zip(types, logged, strict=True)
                     if when is not None and index_of[text] is not None]
            kinds, known = [text for text, _when in timed], [when for _text, when in timed]
        if known:
            width = self._width
            starts = map(operator.sub, known, map(operator.mod, known, itertools.repeat(width)))
            _fold(self.hours, Counter(zip(kinds, starts, strict=False)), index_of, _same)
            low, high = min(known), max(known)
            if self.first_logged is None or low < self.first_logged:
                self.first_logged = low
            if self.last_logged is None or high > self.last_logged:
                self.last_logged = high
        if 0 in outcomes and queued_at is not None:
            self._add_delays(types, logged, written_seconds(schema.times, column(queued_at)),
                             index_of)
        if outcomes - {0}:
            messages = column(message_at)
            if rcpt_at is not None:
                messages = without_recipients(messages, column(rcpt_at))
            reasons: Iterable[tuple[str | None, str, str]] = zip(
                types, column(status_at), messages, strict=True)
            if not set(index_of.values()) <= {1, 2}:
                wanted = {text: index in (1, 2) for text, index in index_of.items()}
                reasons = itertools.compress(reasons, map(wanted.__getitem__, types))
            self._add_reasons(Counter(reasons), index_of)
        if 2 in outcomes:
            bounces = {text: index == 2 for text, index in index_of.items()}
            categories = itertools.compress(zip(types, column(category_at), strict=True),
                                            map(bounces.__getitem__, types))
            for (_text, category), number in Counter(categories).items():
                self.bounce_cats.add(_plain(category), count=number)

    @staticmethod
    def _kind_of(text: str | None, file_kind: Kind | None) -> Kind | None:
        """The kind of a record whose type is ``text`` as written (None: the file has no type
        field), as a Record has it."""
        if text is None:
            return file_kind
        return KIND_NAMES.get(text) or KIND_NAMES.get(unescape(text)) or file_kind

    def _add_domains(self, types: Sequence[str | None], rcpts: list[str],
                     index_of: dict[str | None, int | None]) -> None:
        """Count the recipients' domains: by the text from each one's last ``@`` (its domain
        depends on that alone; in lower case when all are ASCII), or by the whole address
        when one has a backslash (an escape may stand for an ``@``)."""
        written = "".join(rcpts)
        if "\\" in written:
            keys: Iterable[str] = map(_unescaped, rcpts)
        else:
            keys = map(operator.getitem, rcpts, map(
                slice, map(str.rfind, rcpts, itertools.repeat("@")), itertools.repeat(None)))
            if written.isascii():  # lower case first, as the domain is (fewer keys)
                keys = map(str.lower, keys)
        known = self._domains

        def domain(key: str) -> str:
            found = known.get(key)
            if found is None:
                if len(known) >= 10_000:
                    known.clear()
                found = known[key] = domain_of(key) or UNKNOWN
            return found

        _fold(self.domains, Counter(zip(types, keys, strict=False)), index_of, domain)

    def _add_delays(self, types: Sequence[str | None], logged: list[int | None],
                    queued: list[int | None], index_of: dict[str | None, int | None]) -> None:
        """Count the queue delays of the delivered records that have both times."""
        if None not in logged and None not in queued and set(index_of.values()) == {0}:
            delays: Iterable[int] = map(operator.sub, logged, queued)
        else:
            delays = [when - at for text, when, at in zip(types, logged, queued, strict=True)
                      if when is not None and at is not None and index_of[text] == 0]
        add = self.queue_delay.add
        for delay, number in Counter(delays).items():
            add(delay, number)

    def _add_reasons(self, reasons: Counter[tuple[str | None, str, str]],
                     index_of: dict[str | None, int | None]) -> None:
        """Count (type, dsnStatus, dsnMsg) as written into the reasons of deferrals and
        bounces."""
        for (text, status, message), number in reasons.items():
            reason = (_plain(status, ""), self._raw_normalized(message))
            if index_of[text] == 1:
                self.deferral_reasons.add(reason, _OTHER_REASON, number)
            else:
                self.bounce_reasons.add(reason, _OTHER_REASON, number)

    def add_all(self, records: Iterable[Record | Rows]) -> Summary:
        """Count each record (a :class:`Record`, or many of them as :class:`Rows`)."""
        for record in records:
            if type(record) is Rows:
                self.add_rows(record)
            else:
                self.add(record)  # type: ignore[arg-type]
        return self

    def merge(self, other: Summary) -> Summary:
        """Add the counts of ``other`` (a summary of other records, same ``by`` and bucket)."""
        if other.bucket != self.bucket or list(other.by) != list(self.by):
            raise ConfigError("bucket/by", f"{other.bucket}/{','.join(other.by)}",
                              f"summaries to merge must agree: {self.bucket}/"
                              f"{','.join(self.by)}")
        for index, count in enumerate(other.totals):
            self.totals[index] += count
        self.unknown_kind += other.unknown_kind
        for kind, count in other.counted.items():
            self._add_other(kind, count)
        for mine, theirs in ((self.domains, other.domains), (self.vmtas, other.vmtas),
                             (self.src_ips, other.src_ips), (self.hours, other.hours),
                             *((self.by[name], table) for name, table in other.by.items())):
            mine.merge(theirs)
        self.bounce_cats.merge(other.bounce_cats)
        self.deferral_reasons.merge(other.deferral_reasons, _OTHER_REASON)
        self.bounce_reasons.merge(other.bounce_reasons, _OTHER_REASON)
        self.queue_delay.merge(other.queue_delay)
        firsts = [t for t in (self.first_logged, other.first_logged) if t is not None]
        lasts = [t for t in (self.last_logged, other.last_logged) if t is not None]
        self.first_logged = min(firsts) if firsts else None
        self.last_logged = max(lasts) if lasts else None
        self.naive_times = self._saw_naive_times() or other._saw_naive_times()
        return self

    def _saw_naive_times(self) -> bool:
        return self.naive_times or any(schema.times.naive for schema in self._positions)

    def warnings(self) -> list[str]:
        """What the reader of the numbers must know: local times across a UTC offset change."""
        if not self._saw_naive_times() or self.first_logged is None or self.last_logged is None:
            return []
        changes = offset_changes(self.first_logged, self.last_logged)
        if not changes:
            return []
        return [f"the times have no UTC offset and the period crosses a change of the local "
                f"zone's offset ({', '.join(changes)}; the zone of this machine, TZ, is "
                "assumed): hours and queue delays around it are off by the change; write "
                "times with an offset (%z in the time format) or in UTC"]

    def _raw_normalized(self, message: str) -> str:
        """:meth:`_normalized` of a dsnMsg as written (escapes not undone)."""
        if not message:
            return ""
        cache = self._raw_reasons
        text = cache.get(message)
        if text is None:
            if len(cache) >= 10_000:
                cache.clear()
            text = cache[message] = normalize_reason(unescape(message))
        return text

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
    def received(self) -> int:
        """Received records (kind ``r``): counted, not outcomes."""
        return self.counted.get(Kind.RECEIVED, 0)

    @property
    def records(self) -> int:
        return sum(self.totals) + self.unknown_kind + sum(self.counted.values())

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
            **{kind.directory: self.counted[kind] for kind in COUNTED_KINDS
               if kind in self.counted},
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
        report["bucket"] = self.bucket
        report["hours"] = _keyed_rows("hour", [
            (_bucket_text(start, self.bucket), counts) for start, counts in sorted(
                self.hours.counts.items(), key=_hour_order)
        ])
        if self.by:
            report["by"] = {name: _keyed_rows(name, table.top(top))
                            for name, table in self.by.items()}
        report["distinct"] = {
            "domains": len(self.domains.counts),
            "bounce_categories": len(self.bounce_cats.counts),
            "deferral_reasons": len(self.deferral_reasons.counts),
            "bounce_reasons": len(self.bounce_reasons.counts),
            "vmtas": len(self.vmtas.counts),
            "src_ips": len(self.src_ips.counts),
            **{f"by.{name}": len(table.counts) for name, table in self.by.items()},
        }
        tables: list[tuple[str, KeyedCounts | Counts]] = [
            ("domains", self.domains), ("vmtas", self.vmtas), ("src_ips", self.src_ips),
            ("hours", self.hours), ("bounce_categories", self.bounce_cats),
            ("deferral_reasons", self.deferral_reasons), ("bounce_reasons", self.bounce_reasons),
            *((f"by.{name}", table) for name, table in self.by.items()),
        ]
        overflow = {name: table.overflow for name, table in tables if table.overflow}
        if overflow:
            report["counted_as_other"] = overflow
        warnings = self.warnings()
        if warnings:
            report["warnings"] = warnings
        visible: dict[str, Any] = visible_data(report)
        return visible


# a recipient that can stand in a reason for any other such (see without_recipients)
_PLAIN_ADDRESS = re.compile(r"[A-Za-z][\w.+-]*@[\w.-]*\w", re.ASCII)
RECIPIENT_STAND_IN = "a@a"


def without_recipients(messages: list[str], rcpts: list[str]) -> list[str]:
    """dsnMsg texts as written, each with its own record's recipient replaced by
    :data:`RECIPIENT_STAND_IN` (most replies quote it), so that equal reasons of different
    recipients are normalised once. Done only when it cannot change a normalised reason
    (:func:`normalize_reason` of the unescaped text): when every recipient is a plain
    address (a letter first, a letter or digit last, no white space, backslash, ``:`` or
    ``/``: the word it is in becomes ``<addr>`` with the same punctuation around it, and the
    reply's code is read the same), and no text has a backslash right before its recipient
    (an escape would take the address's first letter). Else the texts as they are."""
    if all(map(_PLAIN_ADDRESS.fullmatch, rcpts)) and not any(map(
            operator.contains, messages, map(operator.add, itertools.repeat("\\"), rcpts))):
        return list(map(str.replace, messages, rcpts, itertools.repeat(RECIPIENT_STAND_IN)))
    return messages


def _plain(value: str, unknown: str = UNKNOWN) -> str:
    """A value as written, unescaped; ``unknown`` when empty."""
    if not value:
        return unknown
    return value if "\\" not in value else unescape(value)


def _unescaped(value: str) -> str:
    return value if "\\" not in value else unescape(value)


def _same(value: Any) -> Any:
    return value


def _fold(table: KeyedCounts, pairs: Counter[tuple[str | None, Any]],
          index_of: dict[str | None, int | None], key: Callable[[Any], Any]) -> None:
    """Add counted (type, value) pairs to ``table`` under ``key(value)``, in the order the
    pairs were first counted; pairs of a type that is no outcome are left out."""
    add = table.add
    for (text, value), number in pairs.items():
        index = index_of[text]
        if index is not None:
            add(key(value), index, number)


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


def _bucket_text(start: int | str, bucket: str) -> str:
    """A bucket's start as ``2026-11-26 06:15`` (``2026-11-26`` for days); (other) as is."""
    if isinstance(start, str):
        return start
    return wall_time(start).strftime(BUCKET_FORMATS[bucket])


BUCKET_FORMATS = {"15m": "%Y-%m-%d %H:%M", "1h": "%Y-%m-%d %H:%M", "1d": "%Y-%m-%d"}


def _time_text(seconds: int | None) -> str | None:
    return None if seconds is None else wall_time(seconds).strftime("%Y-%m-%d %H:%M:%S")
