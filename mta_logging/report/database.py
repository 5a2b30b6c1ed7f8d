"""``mta-logging report --from postgresql://...``: the report's numbers computed in PostgreSQL.

Each table of the report is one ``GROUP BY`` over the records table that ``mta-logging
ingest`` fills; the grouped counts go into the same :class:`~mta_logging.report.summary.Summary`
the file report uses, so ranking, rounding and output (table, JSON, CSV, HTML) are the same and
so are the numbers, for the same records. Records of a kind the report does not count (``type``
NULL) are counted as unknown only, as in the file report. Unlike the file report, the tables
are not capped at ``max_keys`` keys (the database holds them all).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from mta_logging.errors import ConfigError
from mta_logging.report.summary import KINDS, UNKNOWN, Summary

_KIND_CODES = tuple(kind.code for kind in KINDS)
_PER_KIND = sql.SQL(", ").join(
    sql.SQL("count(*) FILTER (WHERE type = {})").format(sql.Literal(code))
    for code in _KIND_CODES)


def summary_from_database(dsn: str, table: str) -> Summary:
    """A Summary of every record in ``table`` (ConfigError when it cannot be read)."""
    try:
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            return _summary(connection, sql.Identifier(table))
    except psycopg.OperationalError as exc:
        raise ConfigError("--from", dsn, f"cannot connect ({str(exc).strip()})") from None
    except psycopg.errors.UndefinedTable:
        raise ConfigError("--table", table, "no such table in the database (mta-logging "
                          "ingest creates it)") from None


def _summary(connection: psycopg.Connection[Any], table: sql.Identifier) -> Summary:
    def query(template: str, **parts: sql.Composable) -> list[tuple[Any, ...]]:
        statement = sql.SQL(template).format(table=table, per_kind=_PER_KIND, **parts)
        return connection.execute(statement).fetchall()

    summary = Summary()
    known = "type IS NOT NULL"
    ((*totals, unknown, first, last),) = query(
        "SELECT {per_kind}, count(*) FILTER (WHERE type IS NULL), "
        f"min(logged_seconds) FILTER (WHERE {known}), max(logged_seconds) FILTER (WHERE {known}) "
        "FROM {table}")
    summary.totals = list(totals)
    summary.unknown_kind = unknown
    summary.first_logged, summary.last_logged = first, last
    for target, column in ((summary.domains, "rcpt_domain"), (summary.vmtas, "vmta"),
                           (summary.src_ips, "src_ip")):
        for key, *counts in query(
                "SELECT coalesce({column}, {unknown}), {per_kind} FROM {table} "
                f"WHERE {known} GROUP BY 1",
                column=sql.Identifier(column), unknown=sql.Literal(UNKNOWN)):
            target.counts[key] = list(counts)
    for hour, *counts in query(
            "SELECT logged_seconds - logged_seconds % 3600, {per_kind} FROM {table} "
            f"WHERE {known} AND logged_seconds IS NOT NULL GROUP BY 1"):
        summary.hours.counts[hour] = list(counts)
    for delay, count in query(
            "SELECT logged_seconds - queued_seconds, count(*) FROM {table} WHERE type = 'd' "
            "AND logged_seconds IS NOT NULL AND queued_seconds IS NOT NULL GROUP BY 1"):
        histogram = summary.queue_delay
        histogram.buckets[delay] = count
        histogram.count += count
        histogram.total += delay * count
    for category, count in query(
            "SELECT coalesce(bounce_cat, {unknown}), count(*) FROM {table} WHERE type = 'b' "
            "GROUP BY 1", unknown=sql.Literal(UNKNOWN)):
        summary.bounce_cats.counts[category] = count
    for kind, reasons in (("df", summary.deferral_reasons), ("b", summary.bounce_reasons)):
        for status, reason, count in query(
                "SELECT coalesce(dsn_status, ''), coalesce(reason, ''), count(*) FROM {table} "
                "WHERE type = {kind} GROUP BY 1, 2", kind=sql.Literal(kind)):
            reasons.counts[(status, reason)] = count
    return summary
