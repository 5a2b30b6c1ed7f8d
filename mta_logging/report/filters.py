"""Which records a report or query looks at: kind, time range, domain, job, vmta, DSN, category."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

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
    (``5.1`` matches ``5.1.1``).
    """

    kinds: frozenset[Kind] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    domains: frozenset[str] = frozenset()
    job_ids: frozenset[str] = frozenset()
    vmtas: frozenset[str] = frozenset()
    dsn_status: tuple[str, ...] = ()
    bounce_cats: frozenset[str] = frozenset()
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
        )

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigError("until", str(self.until),
                              f"must be later than since ({self.since})")
        object.__setattr__(self, "_checks", tuple(self._compile()))

    @property
    def active(self) -> bool:
        """True when at least one filter is set."""
        return bool(self._checks)

    def matches(self, record: RecordView) -> bool:
        """True when ``record`` passes every filter."""
        return all(check(record) for check in self._checks)

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
