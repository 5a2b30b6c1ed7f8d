"""Summaries and their renderings: exact numbers in bounded memory, safe HTML, readable text."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta_logging.formatters import join_values, unescape
from mta_logging.report import Issue, Reader
from mta_logging.report import reader as reader_module
from mta_logging.report.html import hours_chart, time_buckets, to_html
from mta_logging.report.options import Progress
from mta_logging.report.render import duration, to_csv, to_table
from mta_logging.report.summary import (
    Histogram,
    KeyedCounts,
    Summary,
    normalize_reason,
    without_recipients,
)

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
    # an enhanced status with no reply code (queue bounce, a timed-out connection) stays
    ("5.0.0 returned to the sender by the administrator",
     "5.0.0 returned to the sender by the administrator"),
    ("4.4.1 connection to 192.0.2.7 timed out", "4.4.1 connection to <ip> timed out"),
    ("sent 5.0.0 back", "sent # back"),  # a status after the first word is a word like others
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


# -- the report from Rows (values as written) is the report from Records --------------------

RAW_FIELDS = ["type", "timeLogged", "timeQueued", "rcpt", "srcIp", "vmta", "jobId", "dsnStatus",
              "dsnMsg", "bounceCat"]
RCPT_HERE = "{rcpt}"  # in a generated dsnMsg: the record's own recipient, as written


def _raw(*fragments: str) -> st.SearchStrategy[str]:
    """Text as a file holds it: fragments joined, escapes included (never a tab or line end)."""
    return st.lists(st.sampled_from(fragments), max_size=4).map("".join)


RAW_VALUES = {
    "type": st.sampled_from(["d", "df", "b", "r", "delivered", "bounce", "x", "", "\\u0064",
                             "d\\\\"]),
    "timeLogged": st.sampled_from([
        "2026-10-25 02:30:00", "2026-10-25 02:59:60", "2026-10-25 03:15:07", "2026-10-26 23:59:59",
        "2026-10-25 02:30:61", "2026-10-25 2:30:00", "2026-10-25 02:30:0x", "2026-10-25\\t02:30:00",
        "2026-10-25 02:30:00+01:00", "2026-13-25 02:30:00", "soon", ""]),
    "timeQueued": st.sampled_from(["2026-10-25 02:00:00", "2026-10-25 01:59:59", "", "never",
                                   "2026-10-25 02:00:00+02:00", "2026-10-25\\t02:00:00"]),
    "rcpt": _raw("bob", "Al.ice", "@", "Example.COM", "example.com", ".", ">", "<", "1",
                 "\\u0040", "\\t", "\\\\", "\\", " ", "a:b", "_"),
    "srcIp": st.sampled_from(["192.0.2.1", "", "\\\\x", "(other)"]),
    "vmta": st.sampled_from(["pool-1", "pool-2", "", "(unknown)", "p\\tq", "p\\\\q", "\\x41"]),
    "jobId": st.sampled_from(["j1", "j2", "", "j\\n"]),
    "dsnStatus": st.sampled_from(["5.1.1", "4.2.2", "", "5.1.1\\t", "2.0.0"]),
    "dsnMsg": _raw("550", "250", " ", "5.1.1", "-", "<", ">", ":", RCPT_HERE, RCPT_HERE,
                   "\\", "\\t", "\\\\", "\\n", "user", "unknown", "id=42", "1.2.3.4",
                   "http://x", "caf\\xe9"),
    "bounceCat": st.sampled_from(["bad-mailbox", "", "spam\\\\", "(other)"]),
}


@st.composite
def raw_files(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    """A file name (its kind for records without a type), a header and lines as written:
    records, and now and then a blank line or one with a wrong number of values."""
    names = draw(st.lists(st.sampled_from(RAW_FIELDS), min_size=1, unique=True))
    lines = []
    for _ in range(draw(st.integers(0, 30))):
        shape = draw(st.sampled_from(["record"] * 8 + ["blank", "short", "long"]))
        if shape == "blank":
            lines.append("")
            continue
        values = {name: draw(RAW_VALUES[name]) for name in names}
        if "dsnMsg" in values:
            values["dsnMsg"] = values["dsnMsg"].replace(RCPT_HERE, values.get("rcpt", "x@y"))
        row = [values[name] for name in names]
        if shape == "short":
            row = row[:-1]
        elif shape == "long":
            row.append("extra")
        lines.append("\t".join(row))
    file_name = draw(st.sampled_from(["d.1.tsv", "df.1.tsv", "b.1.tsv", "x.tsv"]))
    return file_name, names, lines


@settings(max_examples=300, deadline=None)
@given(files=st.lists(raw_files(), min_size=1, max_size=3),
       block=st.sampled_from([16, 300, 1 << 21]),
       bucket=st.sampled_from(["15m", "1h", "1d"]), max_keys=st.sampled_from([2, 5, 100_000]),
       compressed=st.booleans(), line_end=st.sampled_from(["\n", "\r\n"]),
       last_line_end=st.booleans())
def test_rows_give_the_report_that_records_give(
        tmp_path_factory: pytest.TempPathFactory, files: list[tuple[str, list[str], list[str]]],
        block: int, bucket: str, max_keys: int, compressed: bool, line_end: str,
        last_line_end: bool) -> None:
    directory = tmp_path_factory.mktemp("rows")
    for number, (file_name, names, lines) in enumerate(files):
        text = line_end.join(["\t".join(names), *lines]) + (line_end if last_line_end else "")
        data = text.encode("utf-8", "surrogateescape")
        target = directory / str(number) / file_name
        target.parent.mkdir()
        if compressed:
            target.with_name(file_name + ".gz").write_bytes(gzip.compress(data))
        else:
            target.write_bytes(data)
    results = []
    for rows in (False, True):
        issues: list[Issue] = []
        reader = Reader([directory], on_issue=issues.append)
        summary = Summary(max_keys, by=["jobId", "custom_X-None"], bucket=bucket)
        with mock.patch.object(reader_module, "_BLOCK", block):
            summary.add_all(reader.rows() if rows else reader)
        results.append((json.dumps(summary.report(100, reader.stats)), issues))
    assert results[1] == results[0]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_taking_out_each_recipient_leaves_every_reason_as_it_was(data: st.DataObject) -> None:
    rcpts = data.draw(st.lists(RAW_VALUES["rcpt"], min_size=1, max_size=5))
    messages = [data.draw(RAW_VALUES["dsnMsg"]).replace(RCPT_HERE, rcpt) for rcpt in rcpts]
    shaped = without_recipients(messages, rcpts)
    assert [normalize_reason(unescape(text)) for text in shaped] == [
        normalize_reason(unescape(text)) for text in messages]


def test_replies_that_quote_their_recipient_are_normalised_once_per_reason() -> None:
    rcpts = ["bob@example.com", "Al.ice@Example.COM", "carol_1@mx.example.org"]
    messages = [f"550 5.1.1 <{rcpt}>: user unknown" for rcpt in rcpts]
    assert without_recipients(messages, rcpts) == ["550 5.1.1 <a@a>: user unknown"] * 3
    assert without_recipients(["452 \\bob@example.com full"], ["bob@example.com"]) == [
        "452 \\bob@example.com full"]  # \b: an escape would take the address's first letter
    assert without_recipients(["550 <bob@example.com.>"], ["bob@example.com."]) == [
        "550 <bob@example.com.>"]  # a dot last: not replaced (it is punctuation by the word)
