"""Summaries and their renderings: exact numbers in bounded memory, safe HTML, readable text."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from mta_logging.formatters import join_values
from mta_logging.report import Reader
from mta_logging.report.html import hours_chart, time_buckets, to_html
from mta_logging.report.options import Progress
from mta_logging.report.render import duration, to_csv, to_table
from mta_logging.report.summary import Histogram, KeyedCounts, Summary, normalize_reason

FIELDS = ["type", "timeLogged", "timeQueued", "rcpt", "vmta", "srcIp", "dsnStatus", "dsnMsg",
          "bounceCat"]


def summary_of(tmp_path: Path, rows: list[list[str | None]], **options: int) -> Summary:
    path = tmp_path / "x.tsv"
    path.write_text("".join(join_values(row) + "\n" for row in [FIELDS, *rows]),
                    encoding="utf-8")
    return Summary(**options).add_all(Reader([path]))


def row(kind: str, logged: str, rcpt: str, *, queued: str = "", vmta: str = "",
        status: str = "", message: str = "", category: str = "") -> list[str | None]:
    return [kind, logged, queued, rcpt, vmta, "", status, message, category]


# -- percentiles ----------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "expected"), [
    (list(range(1, 101)), (50, 90, 99)),
    ([7], (7, 7, 7)),
    ([1, 2], (1, 2, 2)),
    ([0] * 98 + [500, 86400], (0, 0, 500)),
    ([5, 1, 3, 2, 4] * 1000, (3, 5, 5)),
])
def test_percentiles_are_exact_nearest_rank(values: list[int],
                                            expected: tuple[int, int, int]) -> None:
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    assert (histogram.percentile(50), histogram.percentile(90),
            histogram.percentile(99)) == expected
    assert histogram.summary()["count"] == len(values)


def test_histogram_of_nothing() -> None:
    assert Histogram().summary() == {"count": 0, "p50": None, "p90": None, "p99": None,
                                     "min": None, "max": None, "mean": None}


def test_a_million_delays_take_one_bucket_per_distinct_second() -> None:
    histogram = Histogram()
    for value in range(1_000_000):
        histogram.add(value % 3600)
    assert len(histogram.buckets) == 3600
    assert histogram.percentile(50) == 1798 and histogram.percentile(99) == 3563


# -- bounded tables -------------------------------------------------------------------------

def test_keyed_counts_stop_taking_keys_at_the_limit() -> None:
    table = KeyedCounts(max_keys=3)
    for key in ["a", "b", "c", "d", "e", "a"]:
        table.add(key, 0)
    assert table.counts == {"a": [2, 0, 0], "b": [1, 0, 0], "c": [1, 0, 0],
                            "(other)": [2, 0, 0]}
    assert table.overflow == 2


def test_report_says_what_was_counted_as_other(tmp_path: Path) -> None:
    rows = [row("d", "2026-11-26 06:00:00", f"u@d{i}.example") for i in range(5)]
    report = summary_of(tmp_path, rows, max_keys=2).report()
    assert report["counted_as_other"] == {"domains": 3}
    assert report["domains"][0] == {"domain": "(other)", "delivered": 3, "deferred": 0,
                                    "bounced": 0, "total": 3}


# -- reasons --------------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "normalized"), [
    ("452 4.2.2 <a@example.com> Mailbox full", "452 4.2.2 <addr> Mailbox full"),
    ("550-5.1.1 The email account that you tried to reach does not exist. "
     "d75a77b69052e-4f2b3a3b0e5si123456qtb.42 - gsmtp",
     "550-5.1.1 The email account that you tried to reach does not exist. # - gsmtp"),
    ("421 4.7.0 [192.0.2.7   15] Our system has detected an unusual rate",
     "421 4.7.0 [<ip> #] Our system has detected an unusual rate"),
    ("connect to 2001:db8::25: Connection timed out",
     "connect to <ip>: Connection timed out"),
    ("554 5.7.1 see https://example.com/policy?id=99 blocked",
     "554 5.7.1 see <url> blocked"),
    ("550-5.7.1 spam\r\n550 5.7.1 bye", "550-5.7.1 spam # # bye"),
    ("1234 messages queued", "# messages queued"),  # not a reply code: a number like others
    ("", ""),
])
def test_normalized_reasons(message: str, normalized: str) -> None:
    assert normalize_reason(message) == normalized


def test_long_reasons_are_cut() -> None:
    assert len(normalize_reason("550 " + "word " * 100)) == 160


# -- summary --------------------------------------------------------------------------------

def test_summary_numbers(tmp_path: Path) -> None:
    rows = [
        row("d", "2026-11-26 06:10:00", "a@x.example", queued="2026-11-26 06:09:00",
            vmta="v1"),
        row("d", "2026-11-26 06:20:00", "b@x.example", queued="2026-11-26 06:20:00"),
        row("df", "2026-11-26 07:00:00", "c@y.example", status="4.2.2",
            message="452 4.2.2 <c@y.example> full"),
        row("b", "2026-11-26 07:59:59", "d@y.example", status="5.1.1",
            message="550 5.1.1 <d@y.example> unknown", category="bad-mailbox"),
        row("b", "2026-11-26 09:00:00", "e@y.example", status="5.1.1",
            message="550 5.1.1 <e@y.example> unknown"),
        row("x", "2026-11-26 09:00:00", "f@y.example"),
    ]
    report = summary_of(tmp_path, rows).report(top=1)
    assert report["totals"] == {"delivered": 2, "deferred": 1, "bounced": 2, "unknown": 1,
                                "total": 6}
    assert report["delivery_rate"] == 0.5
    assert report["domains"] == [
        {"domain": "y.example", "delivered": 0, "deferred": 1, "bounced": 2, "total": 3}]
    assert report["distinct"]["domains"] == 2
    assert report["queue_delay"] == {"count": 2, "p50": 0, "p90": 60, "p99": 60, "min": 0,
                                     "max": 60, "mean": 30.0}
    assert report["bounce_categories"] == [{"category": "(unknown)", "count": 1}]
    assert report["bounce_reasons"] == [
        {"dsnStatus": "5.1.1", "dsnMsg": "550 5.1.1 <addr> unknown", "count": 2}]
    assert [h["hour"] for h in report["hours"]] == ["2026-11-26 06:00", "2026-11-26 07:00",
                                                    "2026-11-26 09:00"]
    assert report["period"] == {"first": "2026-11-26 06:10:00", "last": "2026-11-26 09:00:00"}


def test_nothing_to_summarize(tmp_path: Path) -> None:
    report = summary_of(tmp_path, []).report()
    assert report["delivery_rate"] is None and report["hours"] == []
    assert "delivery rate        -" in to_table(report)
    assert 'data-rendered' not in hours_chart([])  # the page script adds that, not the chart
    assert "no records" in to_html(report)


# -- renderings -----------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0, "0s"), (59, "59s"), (61, "1m01s"), (3601, "1h00m01s"),
    (90061, "1d01h01m"), (-5, "-5s"), (12.7, "12s"),
])
def test_durations(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_csv_has_one_number_per_row(tmp_path: Path) -> None:
    rows = [row("b", "2026-11-26 07:00:00", "a@x.example", status="5.1.1",
                message='550 "quoted", with comma', category="bad-mailbox")]
    report = summary_of(tmp_path, rows).report()
    parsed = list(csv.reader(io.StringIO(to_csv(report))))
    assert all(len(line) == 5 for line in parsed)
    assert ["bounce_reasons", "5.1.1", '550 "quoted", with comma', "count", "1"] in parsed
    assert ["totals", "", "", "delivery_rate", "0.0"] in parsed


def test_html_escapes_what_remote_servers_wrote(tmp_path: Path) -> None:
    hostile = "550 5.7.1 </script><script>alert('x')</script> <img src=x onerror=alert()> &amp;"
    rows = [row("b", "2026-11-26 07:00:00", "a@x.example", status="5.7.1", message=hostile,
                category='<b>"cat"</b>')]
    page = to_html(summary_of(tmp_path, rows).report())
    assert "<script>alert" not in page and "<img" not in page and '<b>"cat"' not in page
    assert "&lt;b&gt;&quot;cat&quot;&lt;/b&gt;" in page
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page,
                      re.DOTALL)
    assert match is not None
    data = json.loads(match.group(1))
    assert data["bounce_reasons"][0]["dsnMsg"] == hostile  # nothing to normalize in it
    assert data["bounce_categories"][0]["category"] == '<b>"cat"</b>'
    assert page.count("<script") == 2  # the data block and the page's own script


def test_long_periods_are_charted_per_day() -> None:
    hours = [{"hour": f"2026-{month:02d}-01 00:00", "delivered": 1, "deferred": 0,
              "bounced": 0, "total": 1} for month in (1, 6, 12)]
    unit, buckets = time_buckets(hours)
    assert unit == "day" and len(buckets) == 335 and buckets[0] == ("2026-01-01", [1, 0, 0])
    assert sum(values[0] for _label, values in buckets) == 3


def test_progress_bar_draws_on_one_line() -> None:
    out = io.StringIO()
    progress = Progress(2_000_000, out)
    progress(1_000_000)
    progress(2_000_000)
    progress.finish()
    text = out.getvalue()
    assert "\r[###############...............]  50.0%" in text
    assert "100.0%" in text and "\n" not in text and text.endswith("\r")
