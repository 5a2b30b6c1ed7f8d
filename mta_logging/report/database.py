"""``mta-logging report --from postgresql://...``: the report's numbers computed in PostgreSQL.

Each table of the report is one ``GROUP BY`` over the records table that ``mta-logging
ingest`` fills; the grouped counts go into the same :class:`~mta_logging.report.summary.Summary`
the file report uses, so ranking, rounding and output (table, JSON, CSV, HTML) are the same and
so are the numbers, for the same records. Records of the kinds that are no outcome (received,
remote bounce, complaint) are counted by kind only, and records of a kind the report does not
know (``type`` NULL) as unknown only, as in the file report: neither is in any table or in the
period. Unlike the file report, the tables are not capped at ``max_keys`` keys (the database
holds them all).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from mta_logging.errors import ConfigError, without_password
from mta_logging.outcome import Kind
from mta_logging.report.summary import KINDS, UNKNOWN, Summary

_KIND_CODES = tuple(kind.code for kind in KINDS)
_PER_KIND = sql.SQL(", ").join(
    sql.SQL("count(*) FILTER (WHERE type = {})").format(sql.Literal(code))
    for code in _KIND_CODES)
# the records that are outcomes (the kinds the report's tables count)
_OUTCOME = sql.SQL("type IN ({})").format(sql.SQL(", ").join(map(sql.Literal, _KIND_CODES)))


def summary_from_database(dsn: str, table: str) -> Summary:
    """A Summary of every record in ``table`` (ConfigError when it cannot be read)."""
    try:
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            return _summary(connection, sql.Identifier(table))
    except psycopg.OperationalError as exc:
        raise ConfigError("--from", without_password(dsn),
                          f"cannot connect ({str(exc).strip()})") from None
    except psycopg.errors.UndefinedTable:
        raise ConfigError("--table", table, "no such table in the database (mta-logging "
                          "ingest creates it)") from None


def _summary(connection: psycopg.Connection[Any], table: sql.Identifier) -> Summary:
    def query(template: str, **parts: sql.Composable) -> list[tuple[Any, ...]]:
        statement = sql.SQL(template).format(table=table, per_kind=_PER_KIND,
                                             outcome=_OUTCOME, **parts)
        return connection.execute(statement).fetchall()

    summary = Summary()
    ((*totals, first, last),) = query(
        "SELECT {per_kind}, min(logged_seconds) FILTER (WHERE {outcome}), "
        "max(logged_seconds) FILTER (WHERE {outcome}) FROM {table}")
    summary.totals = list(totals)
    summary.first_logged, summary.last_logged = first, last
    for code, count in query(
            "SELECT type, count(*) FROM {table} WHERE {outcome} IS NOT TRUE GROUP BY 1"):
        kind = Kind.find(code)
        if kind is None:
            summary.unknown_kind += count
        else:
            summary.counted[kind] = count
    for target, column in ((summary.domains, "rcpt_domain"), (summary.vmtas, "vmta"),
                           (summary.src_ips, "src_ip")):
        for key, *counts in query(
                "SELECT coalesce({column}, {unknown}), {per_kind} FROM {table} "
                "WHERE {outcome} GROUP BY 1",
                column=sql.Identifier(column), unknown=sql.Literal(UNKNOWN)):
            target.counts[key] = list(counts)
    for hour, *counts in query(
            "SELECT logged_seconds - logged_seconds % 3600, {per_kind} FROM {table} "
            "WHERE {outcome} AND logged_seconds IS NOT NULL GROUP BY 1"):
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
    for code, reasons in (("df", summary.deferral_reasons), ("b", summary.bounce_reasons)):
        for status, reason, count in query(
                "SELECT coalesce(dsn_status, ''), coalesce(reason, ''), count(*) FROM {table} "
                "WHERE type = {kind} GROUP BY 1, 2", kind=sql.Literal(code)):
            reasons.counts[(status, reason)] = count
    return summary
