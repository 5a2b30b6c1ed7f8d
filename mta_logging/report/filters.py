"""Which records a report or query looks at: kind, time range, domain, job, vmta, DSN, category."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol

from mta_logging.errors import ConfigError
from mta_logging.outcome import Kind
from mta_logging.report.times import wall_seconds


class RecordView(Protocol):
    """What filters read of a record (``mta_logging.report.reader.Record`` is one): the reader
    imports the filters, so the filters name only this much of it."""

    @property
    def kind(self) -> Kind | None: ...

    @property
    def logged(self) -> int | None: ...

    @property
    def domain(self) -> str | None: ...

    def get(self, name: str) -> str | None: ...


Check = Callable[[RecordView], bool]


@dataclass(frozen=True, slots=True)
class Filters:
    """A record matches when it passes every filter that is set (an empty set = any).

    ``since`` is inclusive and ``until`` exclusive, compared with timeLogged (a record whose
    timeLogged is unknown fails a time filter). Domains, vmtas, job ids and bounce categories
    match exactly (domains and categories ignoring case); ``dsn_status`` holds prefixes
    (``5.1`` matches ``5.1.1``). ``rcpts`` are addresses, matched exactly except for the case
    of the domain part; ``rcpt_like`` are SQL ``LIKE`` patterns over the whole address
    (``%`` any run of characters, ``_`` one character), ignoring case.
    """

    kinds: frozenset[Kind] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    domains: frozenset[str] = frozenset()
    job_ids: frozenset[str] = frozenset()
    vmtas: frozenset[str] = frozenset()
    dsn_status: tuple[str, ...] = ()
    bounce_cats: frozenset[str] = frozenset()
    rcpts: frozenset[str] = frozenset()
    rcpt_like: tuple[str, ...] = ()
    _checks: tuple[Check, ...] = field(init=False, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        *,
        kinds: Iterable[str | Kind] = (),
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        domains: Iterable[str] = (),
        job_ids: Iterable[str] = (),
        vmtas: Iterable[str] = (),
        dsn_status: Iterable[str] = (),
        bounce_cats: Iterable[str] = (),
        rcpts: Iterable[str] = (),
        rcpt_like: Iterable[str] = (),
    ) -> Filters:
        """Filters from loose input (as typed on a command line); ConfigError on bad values.

        Text values may hold several comma-separated items (``--kind d,b``).
        """
        return cls(
            kinds=frozenset(Kind.parse(item) for item in _items(kinds)),
            since=parse_time_bound("since", since),
            until=parse_time_bound("until", until),
            domains=frozenset(item.lower().lstrip("@").rstrip(".") for item in _items(domains)),
            job_ids=frozenset(_items(job_ids)),
            vmtas=frozenset(_items(vmtas)),
            dsn_status=tuple(_items(dsn_status)),
            bounce_cats=frozenset(item.lower() for item in _items(bounce_cats)),
            rcpts=frozenset(normalize_address("rcpt", item) for item in _items(rcpts)),
            rcpt_like=tuple(dict.fromkeys(_items(rcpt_like))),
        )

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigError("until", str(self.until),
                              f"must be later than since ({self.since})")
        object.__setattr__(self, "_checks", tuple(self._compile()))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by value (for worker processes); the compiled checks are rebuilt."""
        return (Filters, tuple(getattr(self, item.name) for item in fields(self) if item.init))

    @property
    def active(self) -> bool:
        """True when at least one filter is set."""
        return bool(self._checks)

    def matches(self, record: RecordView) -> bool:
        """True when ``record`` passes every filter."""
        return all(check(record) for check in self._checks)

    def needles(self) -> tuple[bytes, ...]:
        """Byte strings of which every matching line holds at least one, ASCII lower case.

        A reader may pass over a line (compared in lower case) that holds none of them without
        splitting it into fields. Empty when no filter gives such a guarantee.
        """
        if self.rcpts:
            candidates = list(self.rcpts)
        elif self.rcpt_like:
            candidates = [max(re.split("[%_]", pattern), key=len) for pattern in self.rcpt_like]
        else:
            return ()
        needles = tuple(text.lower().encode("ascii") for text in candidates
                        if _LITERAL_SAFE.fullmatch(text))
        return needles if len(needles) == len(candidates) else ()

    def _compile(self) -> Iterable[Check]:
        if self.kinds:
            kinds = self.kinds
            yield lambda record: record.kind in kinds
        if self.since is not None:
            since = wall_seconds(self.since)
            yield lambda record: record.logged is not None and record.logged >= since
        if self.until is not None:
            until = wall_seconds(self.until)
            yield lambda record: record.logged is not None and record.logged < until
        if self.domains:
            domains = self.domains
            yield lambda record: record.domain in domains
        if self.job_ids:
            job_ids = self.job_ids
            yield lambda record: record.get("jobId") in job_ids
        if self.vmtas:
            vmtas = self.vmtas
            yield lambda record: record.get("vmta") in vmtas
        if self.dsn_status:
            prefixes = self.dsn_status
            yield lambda record: (record.get("dsnStatus") or "").startswith(prefixes)
        if self.bounce_cats:
            categories = self.bounce_cats
            yield lambda record: (record.get("bounceCat") or "").lower() in categories
        if self.rcpts:
            rcpts = self.rcpts
            yield lambda record: _address(record.get("rcpt")) in rcpts
        if self.rcpt_like:
            like = re.compile("|".join(_like_regex(pattern) for pattern in self.rcpt_like),
                              re.IGNORECASE | re.DOTALL)
            yield lambda record: like.fullmatch(record.get("rcpt") or "") is not None


# text that every writer (TSV, CSV, JSON) writes as these very bytes: printable ASCII without
# the characters an escape or quoting could change
_LITERAL_SAFE = re.compile(r"[!#-\[\]-~]+")


def normalize_address(key: str, address: str) -> str:
    """``Bob@Example.COM`` → ``Bob@example.com`` (``<>`` and a trailing dot removed)."""
    normalized = _address(address)
    if normalized is None:
        raise ConfigError(key, address, "expected an address such as bob@example.com, with a "
                          "local part and a domain")
    return normalized


def _address(rcpt: str | None) -> str | None:
    if not rcpt:
        return None
    local, at, domain = rcpt.strip().strip("<>").rpartition("@")
    domain = domain.rstrip(".").lower()
    if not at or not local or not domain:
        return None
    return f"{local}@{domain}"


def _like_regex(pattern: str) -> str:
    return "".join(".*" if char == "%" else "." if char == "_" else re.escape(char)
                   for char in pattern)


def parse_time_bound(key: str, value: str | datetime | None) -> datetime | None:
    """``2026-11-26``, ``2026-11-26 06:00``, ``2026-11-26T06:00:00`` … → naive datetime."""
    if value is None or isinstance(value, datetime):
        return value
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(key, value, "expected a time such as 2026-11-26, "
                          "'2026-11-26 06:00' or 2026-11-26T06:00:00") from None
    if moment.tzinfo is not None:
        raise ConfigError(key, value, "expected a time without a zone, in the files' time")
    return moment


def _items(values: Iterable[str | Kind] | str) -> list[str]:
    if isinstance(values, str | Kind):
        values = [values]
    out: list[str] = []
    for value in values:
        if isinstance(value, Kind):
            out.append(value.value)
            continue
        out.extend(part.strip() for part in str(value).split(",") if part.strip())
    return out
