"""Times of accounting records as whole seconds on the files' own clock.

Accounting files hold wall-clock times without a zone (local time by default), or times with
a UTC offset (``%z`` in the time format, or ISO text such as ``2026-11-26 06:00:00+01:00``),
which are taken in UTC. The report compares and subtracts times as written: ``wall_seconds``
counts seconds from 1970-01-01 00:00 on that clock, so differences are those of the written
times and hours start at multiples of 3600 whatever the zone. Local times without an offset
are off by an hour across a daylight-saving change: :func:`offset_changes` finds those.
"""

from __future__ import annotations

import operator
import time
from datetime import UTC, datetime, timedelta

from mta_logging.fields import DEFAULT_TIME_FORMAT

_CACHE_SIZE = 4096
# the default format's parts: the minute ("2026-11-26 06:15"), the colon, the second ("07")
_MINUTE = operator.itemgetter(slice(0, 16))
_COLON = operator.itemgetter(16)
_SECOND = operator.itemgetter(slice(17, None))
_SECONDS = {f"{second:02d}": second for second in range(61)}  # a leap second too

WALL_EPOCH = datetime(1970, 1, 1)


def wall_seconds(moment: datetime) -> int:
    """Whole seconds from 1970-01-01 00:00 to a naive ``moment``, on the files' own clock.

    No time zone is applied: differences are the differences of the written times, and hour
    boundaries fall on whole multiples of 3600, whatever zone the files were written in.
    """
    delta = moment - WALL_EPOCH
    return delta.days * 86400 + delta.seconds


def wall_time(seconds: int) -> datetime:
    """The naive ``datetime`` of ``wall_seconds``."""
    return WALL_EPOCH + timedelta(seconds=seconds)


def offset_changes(first: int, last: int) -> list[str]:
    """The days (``2026-03-29``) between two ``wall_seconds`` on which this machine's local
    zone (``TZ``) changes its UTC offset: where local times without an offset jump."""
    changes: list[str] = []
    previous = _local_offset(first)
    day = first - first % 86400 + 86400
    for moment in [*range(day, last + 1, 86400), last]:
        offset = _local_offset(moment)
        if offset != previous:
            changes.append(wall_time(moment - 1).strftime("%Y-%m-%d"))
            previous = offset
    return changes


def _local_offset(seconds: int) -> int:
    """The UTC offset of the local zone at a wall-clock time, in seconds."""
    moment = wall_time(seconds)
    return time.localtime(time.mktime(moment.timetuple())).tm_gmtoff


class TimeParser:
    """Text of a time field → ``wall_seconds`` (aware times are taken in UTC).

    For the default format the seconds of each minute's text are cached (bounded), so most
    records cost a slice and a dict lookup; other formats cache whole texts. ``naive`` turns
    True once a time without a UTC offset has been read.
    """

    __slots__ = ("time_format", "naive", "_cache", "_default")

    def __init__(self, time_format: str = DEFAULT_TIME_FORMAT) -> None:
        self.time_format = time_format
        self.naive = False
        self._default = time_format == DEFAULT_TIME_FORMAT
        self._cache: dict[str, int | None] = {}

    def __call__(self, text: str | None) -> datetime | None:
        """The time, or None when ``text`` is empty or does not match the format."""
        seconds = self.seconds(text)
        return None if seconds is None else wall_time(seconds)

    def seconds(self, text: str | None) -> int | None:
        """The ``wall_seconds`` of ``text``; None when empty or not in the format."""
        if not text:
            return None
        cache = self._cache
        if self._default and len(text) == 19 and text[16] == ":":
            second = text[17:19]
            if not (second.isascii() and second.isdigit()) or second > "60":
                return None
            key = text[:16]
            try:
                base = cache[key]
            except KeyError:
                base = self._store(key, key)
            return None if base is None else base + int(second)
        try:
            return cache[text]
        except KeyError:
            return self._store(text, text)

    def many(self, texts: list[str]) -> list[int | None]:
        """:meth:`seconds` of each of ``texts``, the same values; texts of the default format
        (all of them 19 characters, ``:`` before the second) are parsed a minute at a time,
        without a Python call per text."""
        if self._default and texts and set(map(len, texts)) == {19} and set(
                map(_COLON, texts)) == {":"}:
            minutes = list(map(_MINUTE, texts))
            cache = self._cache
            missing = set(minutes).difference(cache)
            if len(cache) + len(missing) > _CACHE_SIZE:
                cache.clear()
                missing = set(minutes)
            for minute in missing:
                self._store(minute, minute)
            try:
                return list(map(operator.add, map(cache.__getitem__, minutes),
                                map(_SECONDS.__getitem__, map(_SECOND, texts))))
            except (KeyError, TypeError):
                pass  # a second that is none, a minute that is no time, an evicted minute
        seconds = self.seconds
        return [seconds(text) for text in texts]

    def _store(self, key: str, text: str) -> int | None:
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        try:
            if self._default:
                moment = datetime.fromisoformat(text.strip())
            else:
                moment = datetime.strptime(text.strip(), self.time_format)
        except ValueError:
            value = None
        else:
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
            else:
                self.naive = True
            value = wall_seconds(moment)
        self._cache[key] = value
        return value
