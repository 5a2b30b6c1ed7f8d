"""The report as one self-contained HTML page: tables plus inline SVG charts.

Nothing is fetched when the page is viewed (no external scripts, styles or fonts). The charts
are drawn here, as SVG, so they show even with scripts off; a small inline script only makes
tables sortable and marks the page ``data-rendered="ok"`` (what the rendering test looks for).
The report itself is embedded as JSON in ``<script type="application/json" id="report-data">``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any

from mta_logging.report.render import (
    KEYED_SECTIONS,
    KIND_COLUMNS,
    duration,
    input_summary,
    number,
    percent,
    series_title,
    top_title,
)
from mta_logging.report.summary import BUCKET_FORMATS, BUCKETS

COLORS = {"delivered": "#2e7d32", "deferred": "#f9a825", "bounced": "#c62828"}
STACK = ("delivered", "deferred", "bounced")
MAX_BARS = 1500  # beyond this many buckets, the chart shows days

_STYLE = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2329; }
body { margin: 0 auto; max-width: 1040px; padding: 16px 24px 48px; background: #fafbfc; }
h1 { font-size: 1.5rem; margin: 8px 0 4px; } h2 { font-size: 1.1rem; margin: 28px 0 8px; }
p.meta { color: #59636e; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #d8dee4; border-radius: 6px; padding: 10px 12px;
        flex: 1 1 auto; min-width: 96px; }
.card b { display: block; font-size: 1.25rem; white-space: nowrap; }
.card span { color: #59636e; font-size: .85rem; white-space: nowrap; }
.chart { background: #fff; border: 1px solid #d8dee4; border-radius: 6px; padding: 8px; }
.chart svg { display: block; width: 100%; height: auto; }
.chart text { font-size: 11px; fill: #59636e; }
.legend span { display: inline-block; margin-right: 16px; font-size: .85rem; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
table { border-collapse: collapse; background: #fff; font-size: .85rem; width: 100%; }
th, td { border: 1px solid #d8dee4; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f3f6; cursor: pointer; user-select: none; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.msg { word-break: break-word; }
details summary { cursor: pointer; margin: 8px 0; }
"""

_SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  function cellValue(row, index) {
    var cell = row.cells[index];
    var raw = cell.getAttribute("data-v");
    return raw !== null ? parseFloat(raw) : cell.textContent;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, index) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var descending = th.getAttribute("data-order") !== "desc";
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          var order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
          return descending ? -order : order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
        th.setAttribute("data-order", descending ? "desc" : "asc");
      });
    });
  });
  document.documentElement.setAttribute("data-records", String(data.totals.total));
  document.documentElement.setAttribute("data-rendered", "ok");
})();
"""


def to_html(report: dict[str, Any], title: str = "Accounting report") -> str:
    """The whole page, as text."""
    totals = report["totals"]
    delay = report["queue_delay"]
    period = report["period"]
    meta = (f"{escape(period['first'])} to {escape(period['last'])}" if period["first"]
            else "no records")
    source = report.get("input")
    if source is not None:
        meta += " · " + escape(input_summary(source))
    cards = [
        ("delivered", number(totals["delivered"])),
        ("deferred", number(totals["deferred"])),
        ("bounced", number(totals["bounced"])),
        ("delivery rate", percent(report["delivery_rate"])),
        ("queue delay p50", duration(delay["p50"])),
        ("queue delay p90", duration(delay["p90"])),
        ("queue delay p99", duration(delay["p99"])),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{meta}</p>',
        '<div class="cards">',
        *(f'<div class="card"><b>{escape(value)}</b><span>{escape(label)}</span></div>'
          for label, value in cards),
        "</div>",
        *(f'<p class="warning">Warning: {escape(text)}</p>'
          for text in report.get("warnings", [])),
        f"<h2>Outcomes {escape(series_title(report)[0].split(' (')[0].lower())}</h2>",
        _legend(),
        f'<div class="chart" id="chart-hours">'
        f'{hours_chart(report["hours"], report.get("bucket", "1h"))}</div>',
        "<h2>Bounce categories</h2>",
        f'<div class="chart" id="chart-bounce-categories">'
        f'{bar_chart(report["bounce_categories"])}</div>',
    ]
    distinct = report.get("distinct", {})
    for section, heading, key, key_title in KEYED_SECTIONS:
        if section == "hours":
            continue
        rows = report[section]
        parts += [f"<h2>{escape(top_title(heading, len(rows), distinct.get(section)))}</h2>",
                  _keyed_table(rows, key, key_title)]
    for name, rows in report.get("by", {}).items():
        heading = top_title(f"By {name}", len(rows), distinct.get(f"by.{name}"))
        parts += [f"<h2>{escape(heading)}</h2>", _keyed_table(rows, name, name)]
    for section, heading in (("deferral_reasons", "Top deferral reasons"),
                             ("bounce_reasons", "Top bounce reasons")):
        parts += [f"<h2>{heading}</h2>", _table(
            ["count", "dsnStatus", "dsnMsg (normalized)"],
            [[(number(row["count"]), row["count"]), row["dsnStatus"] or "-",
              row["dsnMsg"] or "-"] for row in report[section]],
        )]
    title, column = series_title(report)
    parts += [
        f"<h2>{escape(title.split(' (')[0])}</h2><details><summary>the table</summary>",
        _keyed_table(report["hours"], "hour", column),
        "</details>",
        f'<script type="application/json" id="report-data">{_json_for_script(report)}</script>',
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _json_for_script(report: dict[str, Any]) -> str:
    text = json.dumps(report, ensure_ascii=False, separators=(",", ":"))
    # "</script>" or "<!--" inside a value (a remote server's reply) must not end the element
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _legend() -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{COLORS[name]}"></i>{name}</span>' for name in STACK
    ) + "</div>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A sortable table; a cell given as (text, number) is numeric."""
    numeric = [isinstance(cell, tuple) for cell in rows[0]] if rows else [False] * len(headers)
    head = "".join(f'<th class="n">{escape(h)}</th>' if num else f"<th>{escape(h)}</th>"
                   for h, num in zip(headers, numeric, strict=True))
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, tuple):
                cells.append(f'<td class="n" data-v="{cell[1]}">{escape(cell[0])}</td>')
            else:
                cells.append(f'<td class="msg">{escape(str(cell))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(headers)}">none</td></tr>')
    return (f'<table class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _keyed_table(rows: list[dict[str, Any]], key: str, key_title: str) -> str:
    return _table([key_title, *KIND_COLUMNS],
                  [[row[key], *((number(row[c]), row[c]) for c in KIND_COLUMNS)]
                   for row in rows])


def _nice_step(maximum: int, ticks: int = 5) -> int:
    """A round step (1, 2 or 5 × 10^k) giving about ``ticks`` gridlines up to ``maximum``."""
    raw = max(maximum / ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return int(factor * power)
    return int(10 * power)  # pragma: no cover


def time_buckets(hours: list[dict[str, Any]], bucket: str = "1h"
                 ) -> tuple[str, list[tuple[str, list[int]]]]:
    """Continuous buckets from the first to the last one (empty ones included); whole days
    when that would be more than MAX_BARS bars. Returns (unit, [(label, [d, df, b])]), the
    unit being ``hour`` (``--bucket`` 15m or 1h) or ``day``."""
    text_format = BUCKET_FORMATS[bucket]
    counts = {row["hour"]: [row[name] for name in STACK] for row in hours
              if row["hour"][:1].isdigit()}  # not (other)
    if not counts:
        return "hour", []
    start = datetime.strptime(min(counts), text_format)
    end = datetime.strptime(max(counts), text_format)
    width = timedelta(seconds=BUCKETS[bucket])
    span = (end - start) // width + 1
    if span <= MAX_BARS and bucket != "1d":
        buckets = []
        for step in range(span):
            label = (start + step * width).strftime(text_format)
            buckets.append((label, counts.get(label, [0, 0, 0])))
        return "hour", buckets
    days: dict[str, list[int]] = {}
    day = start.replace(hour=0, minute=0)
    while day <= end:
        days[day.strftime("%Y-%m-%d")] = [0, 0, 0]
        day += timedelta(days=1)
    for label, values in counts.items():
        total = days[label[:10]]
        for index, value in enumerate(values):
            total[index] += value
    return "day", list(days.items())


def hours_chart(hours: list[dict[str, Any]], bucket: str = "1h", width: int = 960,
                height: int = 280) -> str:
    """Stacked bars of delivered/deferred/bounced per bucket (per day for long periods)."""
    unit, buckets = time_buckets(hours, bucket)
    if not buckets:
        return '<svg viewBox="0 0 960 40" role="img"><text x="8" y="24">no records</text></svg>'
    left, right, top, bottom = 56, 12, 12, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(sum(values) for _label, values in buckets) or 1
    step = _nice_step(peak)
    y_max = step * math.ceil(peak / step)
    slot = plot_w / len(buckets)
    bar = max(slot * 0.8, 0.5)
    out = [f'<svg viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="outcomes per {unit}, stacked by kind">']
    for tick in range(0, y_max + 1, step):
        y = top + plot_h - tick / y_max * plot_h
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#e3e7eb"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:,}</text>')
    label_every = max(1, math.ceil(len(buckets) / 12))
    for index, (label, values) in enumerate(buckets):
        x = left + index * slot + (slot - bar) / 2
        y = top + plot_h
        tip = f"{label}: " + ", ".join(f"{name} {value:,}"
                                       for name, value in zip(STACK, values, strict=True))
        out.append(f'<g class="bar" data-{unit}="{escape(label)}"><title>{escape(tip)}</title>')
        for name, value in zip(STACK, values, strict=True):
            if not value:
                continue
            h = value / y_max * plot_h
            y -= h
            out.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{bar:.2f}" height="{h:.2f}" '
                       f'fill="{COLORS[name]}" data-kind="{name}" data-count="{value}"/>')
        out.append("</g>")
        if index % label_every == 0:
            short = label[5:] if unit == "hour" else label
            cx = left + index * slot + slot / 2
            out.append(f'<text x="{cx:.1f}" y="{height - bottom + 16}" '
                       f'text-anchor="middle">{escape(short)}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" '
               f'y2="{top + plot_h}" stroke="#8c959f"/>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(rows: list[dict[str, Any]], width: int = 960) -> str:
    """Horizontal bars of bounce categories."""
    if not rows:
        return '<svg viewBox="0 0 960 40" role="img"><text x="8" y="24">no bounces</text></svg>'
    row_h, left, right, top = 26, 200, 80, 8
    height = top * 2 + row_h * len(rows)
    peak = max(row["count"] for row in rows) or 1
    out = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="bounce categories">']
    for index, row in enumerate(rows):
        y = top + index * row_h
        w = row["count"] / peak * (width - left - right)
        name = escape(str(row["category"]))
        out.append(f'<g class="bar" data-category="{name}" data-count="{row["count"]}">'
                   f'<title>{name}: {row["count"]:,}</title>'
                   f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{name}</text>'
                   f'<rect x="{left}" y="{y + 4}" width="{max(w, 1):.2f}" height="{row_h - 8}" '
                   f'fill="{COLORS["bounced"]}"/>'
                   f'<text x="{left + w + 6:.2f}" y="{y + 17}">{row["count"]:,}</text></g>')
    out.append("</svg>")
    return "".join(out)
