"""A summary report (``Summary.report()``) as a text table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

# (report key, title, key column, key title) of the sections keyed by a name, in table order
KEYED_SECTIONS = (
    ("domains", "Recipient domains", "domain", "domain"),
    ("vmtas", "Virtual MTAs", "vmta", "vmta"),
    ("src_ips", "Source IPs", "srcIp", "source IP"),
    ("hours", "Per hour (timeLogged)", "hour", "hour"),
)
KIND_COLUMNS = ("delivered", "deferred", "bounced", "total")
REASON_WIDTH = 72
# --bucket → (title of the time series, title of its key column)
SERIES_TITLES = {"15m": ("Per 15 minutes (timeLogged)", "from"),
                 "1h": ("Per hour (timeLogged)", "hour"), "1d": ("Per day (timeLogged)", "day")}


def series_title(report: dict[str, Any]) -> tuple[str, str]:
    """The titles of the time series and of its key column for the report's bucket."""
    return SERIES_TITLES.get(report.get("bucket", "1h"), SERIES_TITLES["1h"])


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def csv_rows(report: dict[str, Any]) -> Iterator[list[Any]]:
    """Rows of ``section,key,detail,metric,value`` (long format: one number per row)."""
    yield ["section", "key", "detail", "metric", "value"]
    for metric, value in report.get("input", {}).items():
        yield ["input", "", "", metric, value]
    for metric, value in report["period"].items():
        yield ["period", "", "", metric, value]
    for metric, value in report["totals"].items():
        yield ["totals", "", "", metric, value]
    yield ["totals", "", "", "delivery_rate", report["delivery_rate"]]
    for metric, value in report["queue_delay"].items():
        yield ["queue_delay", "", "", metric, value]
    for section, _title, key, _key_title in KEYED_SECTIONS:
        for row in report[section]:
            for metric in KIND_COLUMNS:
                yield [section, row[key], "", metric, row[metric]]
    for name, rows in report.get("by", {}).items():
        for row in rows:
            for metric in KIND_COLUMNS:
                yield ["by", row[name], name, metric, row[metric]]
    for row in report["bounce_categories"]:
        yield ["bounce_categories", row["category"], "", "count", row["count"]]
    for section in ("deferral_reasons", "bounce_reasons"):
        for row in report[section]:
            yield [section, row["dsnStatus"], row["dsnMsg"], "count", row["count"]]
    for warning in report.get("warnings", []):
        yield ["warnings", "", warning, "", ""]


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(("" if value is None else value for value in row)
                     for row in csv_rows(report))
    return out.getvalue()


def duration(seconds: int | float | None) -> str:
    """Seconds as ``45s``, ``12m05s``, ``3h04m05s`` or ``2d03h04m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    sign, value = ("-", -int(seconds)) if seconds < 0 else ("", int(seconds))
    days, rest = divmod(value, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}%"


def number(value: int) -> str:
    return f"{value:,}"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def shorten(text: str, width: int = REASON_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
          numeric: Sequence[bool] | None = None) -> list[str]:
    """Lines of an aligned text table (numbers right-aligned)."""
    numeric = numeric or [False] * len(headers)
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(row) for row in cells)]


def input_summary(source: dict[str, int]) -> str:
    """``Read 30 records from 11 files; skipped 1 malformed line; ...``"""
    parts = [f"Read {plural(source['records'], 'record')} from {plural(source['files'], 'file')}"
             + (f", {number(source['matched'])} matched the filters"
                if source["matched"] != source["records"] else "")]
    if source["skipped_lines"]:
        parts.append(f"skipped {plural(source['skipped_lines'], 'malformed line')}")
    if source["skipped_files"]:
        parts.append(f"skipped {plural(source['skipped_files'], 'file')} without a header")
    if source["damaged_files"]:
        parts.append(f"{plural(source['damaged_files'], 'damaged file')} read up to the damage")
    return "; ".join(parts) + "."


def to_table(report: dict[str, Any]) -> str:
    """The report as readable text: one titled table per section."""
    out: list[str] = []
    totals = report["totals"]
    source = report.get("input")
    if source is not None:
        out.append(input_summary(source))
    period = report["period"]
    if period["first"]:
        out.append(f"Logged from {period['first']} to {period['last']}.")
    out += [f"Warning: {warning}" for warning in report.get("warnings", [])]
    out.append("")
    out.append("Totals")
    rows = [[name, number(totals[name])] for name in ("delivered", "deferred", "bounced")]
    rows += [[name, number(value)] for name, value in totals.items()  # received, ...
             if name not in ("delivered", "deferred", "bounced", "unknown", "total")]
    if totals["unknown"]:
        rows.append(["unknown kind", number(totals["unknown"])])
    rows.append(["total", number(totals["total"])])
    rows.append(["delivery rate", percent(report["delivery_rate"])])
    out += table(["outcome", "records"], rows, [False, True])

    delay = report["queue_delay"]
    out += ["", "Queue delay of delivered mail (timeLogged - timeQueued)"]
    out += table(
        ["records", "p50", "p90", "p99", "mean", "max"],
        [[number(delay["count"]), *(duration(delay[k]) for k in ("p50", "p90", "p99", "mean",
                                                                    "max"))]],
        [True] * 6,
    )
    for section, title, key, key_title in KEYED_SECTIONS:
        if section == "hours":
            continue
        out += _keyed(report, section, title, key, key_title)
    for name in report.get("by", {}):
        out += _keyed_rows(report["by"][name], f"By {name}", name, name,
                           report.get("distinct", {}).get(f"by.{name}"))
    out += ["", "Bounce categories"]
    out += table(["category", "bounces"],
                 [[row["category"], number(row["count"])] for row in report["bounce_categories"]],
                 [False, True])
    for section, title in (("deferral_reasons", "Top deferral reasons"),
                           ("bounce_reasons", "Top bounce reasons")):
        out += ["", title]
        out += table(["count", "dsnStatus", "dsnMsg (normalized)"],
                     [[number(row["count"]), row["dsnStatus"] or "-",
                       shorten(row["dsnMsg"]) or "-"] for row in report[section]],
                     [True, False, False])
    out += _keyed(report, "hours", series_title(report)[0], "hour", series_title(report)[1])
    return "\n".join(out) + "\n"


def _keyed(report: dict[str, Any], section: str, title: str, key: str,
           key_title: str) -> list[str]:
    return _keyed_rows(report[section], title, key, key_title,
                       report.get("distinct", {}).get(section))


def top_title(title: str, shown: int, distinct: int | None) -> str:
    """``title (top N of M)`` when the rows shown are fewer than the distinct keys seen."""
    if distinct is not None and distinct > shown:
        return f"{title} (top {shown} of {number(distinct)})"
    return title


def _keyed_rows(rows: list[dict[str, Any]], title: str, key: str, key_title: str,
                distinct: int | None) -> list[str]:
    title = top_title(title, len(rows), distinct)
    return ["", title, *table(
        [key_title, *KIND_COLUMNS],
        [[row[key], *(number(row[c]) for c in KIND_COLUMNS)] for row in rows],
        [False, True, True, True, True],
    )]
