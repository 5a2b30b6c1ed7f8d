"""mta-logging report / grep on accounting files written by the library itself.

The data set: delivered records (TSV, rotated by size into the archive, one active file left),
deferred records (rotated and gzipped), bounce records with a different field list (custom
headers), a CSV site, a JSON lines file, a Haraka plugin file, and damage: a line with the
wrong number of fields, a .gz cut short, a file with no header. Every number below is counted
by hand from the records listed here.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mta_logging.cli import main
from mta_logging.formatters import AccountingFormatter, AccountingJsonFormatter
from mta_logging.handlers import AccountingFileHandler
from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Kind
from mta_logging.report import Filters, Reader
from mta_logging.report.summary import Summary

DATA = Path(__file__).parent / "data" / "report"
DAY = datetime(2026, 11, 26)
TRICKY = 'tab\there, newline\nthere, back\\slash, "quotes", ünïcødé'
DELAYS = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 3601]  # queue delays of the TSV deliveries


def emit(handler: logging.Handler, kind: Kind, when: datetime, rcpt: str, **fields: object
         ) -> None:
    """Hand the handler one record logged at ``when`` (what AccountingLogger would emit)."""
    record = logging.LogRecord("mta.accounting", kind.level, "test", 0, "%s", (rcpt,), None)
    record.created = when.timestamp()
    record.outcome = AccountingLogger.outcome(kind, rcpt, **fields)  # type: ignore[arg-type]
    handler.handle(record)


def delivered(handler: logging.Handler) -> None:
    """12 deliveries: example.com ×6, example.org ×4, gmail.com ×2; 5 at 06h, 7 at 07h."""
    domains = ["example.com"] * 6 + ["example.org"] * 4 + ["Gmail.COM"] * 2
    for index, (domain, delay) in enumerate(zip(domains, DELAYS, strict=True)):
        when = DAY.replace(hour=6 if index < 5 else 7, minute=index)
        emit(handler, Kind.DELIVERED, when, f"user{index}@{domain}",
             time_queued=when - timedelta(seconds=delay),
             vmta="pool-a" if index < 8 else "pool-b",
             src_ip="192.0.2.1" if index % 2 == 0 else "192.0.2.2",
             job_id=f"job-{index % 3}", dsn_status="2.0.0",
             dsn_msg=TRICKY if index == 0 else f"250 2.0.0 OK queued as Q{index}X",
             src_mta="mx.local")


def deferred(handler: logging.Handler) -> None:
    """6 deferrals, two per hour 06h/07h/08h: mailbox full ×3, throttled ×2, timeout ×1."""
    rows = [
        ("a@example.com", "4.2.2", "452 4.2.2 <a@example.com> Mailbox full"),
        ("b@example.com", "4.2.2", "452 4.2.2 <b@example.com> Mailbox full"),
        ("c@example.org", "4.2.2", "452 4.2.2 <c@example.org> Mailbox full"),
        ("d@gmail.com", "4.7.0", "421 4.7.0 Try again later, 10.0.0.1 throttled"),
        ("e@gmail.com", "4.7.0", "421 4.7.0 Try again later, 10.0.0.2 throttled"),
        ("f@example.net", "4.4.1", "connection timed out"),
    ]
    for index, (rcpt, status, message) in enumerate(rows):
        when = DAY.replace(hour=6 + index // 2, minute=30 + index)
        emit(handler, Kind.DEFERRED, when, rcpt, time_queued=when - timedelta(minutes=5),
             vmta="pool-a", src_ip="192.0.2.1", job_id="job-9", dsn_status=status,
             dsn_msg=message, delay=300)


BOUNCE_FIELDS = "type,timeLogged,rcpt,destIp,vmta,jobId,dsnStatus,dsnMsg,bounceCat," \
                "custom_X-Campaign"


def bounced(handler: logging.Handler) -> None:
    """5 bounces at 08h: user unknown ×3 (bad-mailbox), spam ×1, quota ×1."""
    rows = [
        ("x1@example.com", "5.1.1", "550 5.1.1 <x1@example.com>: user unknown", "bad-mailbox"),
        ("x2@example.com", "5.1.1", "550 5.1.1 <x2@example.com>: user unknown", "bad-mailbox"),
        ("x3@example.org", "5.1.1", "550 5.1.1 <x3@example.org>: user unknown", "bad-mailbox"),
        ("x4@gmail.com", "5.7.1", "550 5.7.1 message looks like spam", "spam-related"),
        ("x5@example.org", "5.2.2", "552 5.2.2 mailbox over quota", "quota-issues"),
    ]
    for index, (rcpt, status, message, category) in enumerate(rows):
        emit(handler, Kind.BOUNCE, DAY.replace(hour=8, minute=index), rcpt,
             dest_ip="198.51.100.7", vmta="pool-b", src_ip="192.0.2.9", job_id="job-7",
             dsn_status=status, dsn_msg=message, bounce_cat=category,
             headers={"X-Campaign": "winter"})


def build_dataset(root: Path) -> Path:
    """Write the data set under ``root/acct``; returns that directory."""
    acct = root / "acct"
    # delivered: TSV, archived by size (about 3 records per file), one file left active
    handler = AccountingFileHandler(Kind.DELIVERED, path=acct, archiving=True,
                                    max_size=0.0005)
    delivered(handler)
    handler.flush()  # the active file under its visible name (path moves no file)
    active = handler.path
    handler.close()  # archives the active file too ...
    assert active is not None
    (newest,) = [path for path in (acct / "delivered" / "archive").iterdir()
                 if "user11@" in path.read_text(encoding="utf-8")]
    shutil.move(newest, active)  # ... so put it back where a live one would be
    # deferred: archived and gzipped
    handler = AccountingFileHandler(Kind.DEFERRED, path=acct, archiving=True, compress=True,
                                    max_size=0.0006)
    deferred(handler)
    handler.close()
    # bounce: its own field list (custom header, destIp, no timeQueued), still active
    handler = AccountingFileHandler(Kind.BOUNCE, path=acct)
    handler.setFormatter(AccountingFormatter(fields=BOUNCE_FIELDS))
    bounced(handler)
    handler.close()
    # a CSV site: 3 deliveries to example.net without timeQueued
    handler = AccountingFileHandler(Kind.DELIVERED, path=acct / "csv-site", extension="csv")
    handler.setFormatter(AccountingFormatter(
        fields="type,timeLogged,rcpt,vmta,jobId,dsnStatus,dsnMsg", separator=","))
    for index in range(3):
        emit(handler, Kind.DELIVERED, DAY.replace(hour=9, minute=index),
             f"n{index}@example.net", vmta="pool-c", job_id="job-csv", dsn_status="2.0.0",
             dsn_msg='250 ok, "queued"; thanks' if index == 0 else "250 ok")
    handler.close()
    # JSON lines: 2 bounces to example.net
    handler = AccountingFileHandler(Kind.BOUNCE, path=acct / "json-site", extension="jsonl")
    handler.setFormatter(AccountingJsonFormatter(kind=Kind.BOUNCE))
    for index in range(2):
        emit(handler, Kind.BOUNCE, DAY.replace(hour=9, minute=10 + index),
             f"j{index}@example.net", vmta="pool-c", dsn_status="5.1.1",
             dsn_msg=f"550 5.1.1 <j{index}@example.net>: user unknown",
             bounce_cat="bad-mailbox")
    handler.close()
    # the Haraka plugin's files: 2 deferrals (t.* file)
    shutil.copytree(DATA / "haraka", acct / "haraka")
    damage(acct)
    return acct


def damage(acct: Path) -> None:
    """A line with the wrong field count, a .gz missing its end, a file with no header."""
    archive = acct / "delivered" / "archive"
    first = sorted(archive.iterdir())[0]
    with open(first, "a", encoding="utf-8") as file:
        file.write("d\t2026-11-26 06:59:59\tbroken line\n")
    gz = sorted((acct / "deferred" / "archive").glob("*.gz"))[0]
    gz.write_bytes(gz.read_bytes()[:-8])  # the data is whole; the CRC and size are gone
    (archive / "d.2026-11-25-000000.tsv").write_text(
        "d\t2026-11-25 23:00:00\t\tlost@example.com\n", encoding="utf-8")


@pytest.fixture
def acct(tmp_path: Path) -> Path:
    return build_dataset(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- the data set is what it claims to be ------------------------------------------------------

def test_dataset_has_rotated_gzipped_active_and_damaged_files(acct: Path) -> None:
    names = sorted(str(p.relative_to(acct)) for p in acct.rglob("*") if p.is_file())
    assert len([n for n in names if n.startswith("delivered/archive/d.")]) >= 3
    assert any(re.fullmatch(r"delivered/archive/d\.[\d-]+\.\d+\.tsv", n) for n in names), names
    assert len([n for n in names if re.fullmatch(r"delivered/d\.[^/]+\.tsv", n)]) == 1
    assert len([n for n in names if n.startswith("deferred/archive/df.")
                and n.endswith(".gz")]) >= 2
    assert any(n.startswith("bounce/b.") for n in names)
    assert any(n.startswith("haraka/deferred/t.") for n in names)


# -- mta-logging report -------------------------------------------------------------------------

def test_report_json_numbers(acct: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "--json", str(acct))
    assert code == 0
    report = json.loads(out)
    assert report["input"] == {"files": report["input"]["files"], "lines": 31, "records": 30,
                               "matched": 30, "skipped_lines": 1, "skipped_files": 1,
                               "damaged_files": 1, "issues": 3}
    assert report["totals"] == {"delivered": 15, "deferred": 8, "bounced": 7, "unknown": 0,
                                "total": 30}
    assert report["delivery_rate"] == round(15 / 22, 4)
    assert report["period"] == {"first": "2026-11-20 10:15:00", "last": "2026-11-26 09:11:00"}
    assert report["domains"][:4] == [
        {"domain": "example.com", "delivered": 6, "deferred": 2, "bounced": 2, "total": 10},
        {"domain": "example.net", "delivered": 3, "deferred": 3, "bounced": 2, "total": 8},
        {"domain": "example.org", "delivered": 4, "deferred": 1, "bounced": 2, "total": 7},
        {"domain": "gmail.com", "delivered": 2, "deferred": 2, "bounced": 1, "total": 5},
    ]
    assert report["bounce_categories"] == [
        {"category": "bad-mailbox", "count": 5},
        {"category": "quota-issues", "count": 1},
        {"category": "spam-related", "count": 1},
    ]
    assert report["deferral_reasons"] == [
        {"dsnStatus": "4.2.2", "dsnMsg": "452 4.2.2 <addr> Mailbox full", "count": 3},
        {"dsnStatus": "4.4.1", "dsnMsg": "", "count": 2},  # Haraka wrote "undefined"
        {"dsnStatus": "4.7.0", "dsnMsg": "421 4.7.0 Try again later, <ip> throttled",
         "count": 2},
        {"dsnStatus": "4.4.1", "dsnMsg": "connection timed out", "count": 1},
    ]
    assert report["bounce_reasons"] == [
        {"dsnStatus": "5.1.1", "dsnMsg": "550 5.1.1 <addr>: user unknown", "count": 5},
        {"dsnStatus": "5.2.2", "dsnMsg": "552 5.2.2 mailbox over quota", "count": 1},
        {"dsnStatus": "5.7.1", "dsnMsg": "550 5.7.1 message looks like spam", "count": 1},
    ]
    # DELAYS, nearest rank over 12 values: p50 = 6th, p90 = 11th, p99 = 12th
    assert report["queue_delay"] == {"count": 12, "p50": 8, "p90": 89, "p99": 3601, "min": 0,
                                     "max": 3601, "mean": 319.3}
    assert report["vmtas"] == [
        {"vmta": "pool-a", "delivered": 8, "deferred": 6, "bounced": 0, "total": 14},
        {"vmta": "pool-b", "delivered": 4, "deferred": 0, "bounced": 5, "total": 9},
        {"vmta": "pool-c", "delivered": 3, "deferred": 0, "bounced": 2, "total": 5},
        {"vmta": "(unknown)", "delivered": 0, "deferred": 2, "bounced": 0, "total": 2},
    ]
    assert report["src_ips"] == [
        {"srcIp": "(unknown)", "delivered": 3, "deferred": 2, "bounced": 7, "total": 12},
        {"srcIp": "192.0.2.1", "delivered": 6, "deferred": 6, "bounced": 0, "total": 12},
        {"srcIp": "192.0.2.2", "delivered": 6, "deferred": 0, "bounced": 0, "total": 6},
    ]
    assert report["hours"] == [
        {"hour": "2026-11-20 10:00", "delivered": 0, "deferred": 2, "bounced": 0, "total": 2},
        {"hour": "2026-11-26 06:00", "delivered": 5, "deferred": 2, "bounced": 0, "total": 7},
        {"hour": "2026-11-26 07:00", "delivered": 7, "deferred": 2, "bounced": 0, "total": 9},
        {"hour": "2026-11-26 08:00", "delivered": 0, "deferred": 2, "bounced": 5, "total": 7},
        {"hour": "2026-11-26 09:00", "delivered": 3, "deferred": 0, "bounced": 2, "total": 5},
    ]
    # the three problems, each named with its file and line
    assert re.search(r"warning: \S+/delivered/archive/d\.\S+\.tsv:\d+: 3 values where the "
                     r"header has 10 fields; line skipped", err), err
    assert re.search(r"warning: \S+/deferred/archive/df\.\S+\.tsv\.gz:\d+: damaged compressed "
                     r"file", err), err
    assert re.search(r"warning: \S+/d\.2026-11-25-000000\.tsv:1: no header line", err), err


def test_report_filters(acct: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "report", "--json", "--kind", "b,df", "--since",
                          "2026-11-26 07:00", "--until", "2026-11-26 09:00", str(acct))
    report = json.loads(out)
    assert report["totals"] == {"delivered": 0, "deferred": 4, "bounced": 5, "unknown": 0,
                                "total": 9}
    _code, out, _err = run(capsys, "report", "--json", "--domain", "EXAMPLE.net",
                           "--dsn-status", "5.1", str(acct))
    assert json.loads(out)["totals"]["bounced"] == 2


def test_report_csv_is_long_format(acct: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "report", "--csv", str(acct))
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["section", "key", "detail", "metric", "value"]
    assert ["totals", "", "", "delivered", "15"] in rows
    assert ["totals", "", "", "delivery_rate", "0.6818"] in rows
    assert ["queue_delay", "", "", "p90", "89"] in rows
    assert ["domains", "gmail.com", "", "deferred", "2"] in rows
    assert ["bounce_categories", "bad-mailbox", "", "count", "5"] in rows
    assert ["deferral_reasons", "4.2.2", "452 4.2.2 <addr> Mailbox full", "count", "3"] in rows
    assert ["hours", "2026-11-26 08:00", "", "bounced", "5"] in rows


def test_report_table(acct: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "report", "--top", "2", str(acct))
    assert code == 0
    assert ("Read 30 records from 11 files; skipped 1 malformed line; skipped 1 file without a "
            "header; 1 damaged file read up to the damage.") in out
    assert re.search(r"delivery rate\s+68\.18%", out)
    assert re.search(r"12\s+8s\s+1m29s\s+1h00m01s\s+5m19s\s+1h00m01s", out), out
    assert "Recipient domains (top 2 of 4)" in out
    assert re.search(r"example\.com\s+6\s+2\s+2\s+10", out)
    assert "example.org" not in out.split("Virtual MTAs")[0]  # --top 2


def test_report_html_says_top_n_of_m_as_the_table_does(acct: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    code, _out, _err = run(capsys, "report", "--top", "2", "--html", str(page), str(acct))
    assert code == 0
    html = page.read_text(encoding="utf-8")
    assert "<h2>Recipient domains (top 2 of 4)</h2>" in html
    code, _out, _err = run(capsys, "report", "--html", str(page), str(acct))
    assert "<h2>Recipient domains</h2>" in page.read_text(encoding="utf-8")


def test_report_html_to_a_path_that_cannot_be_written_is_refused_before_reading(
        acct: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("")
    for target in (tmp_path, tmp_path / "a-file" / "report.html"):
        code, out, err = run(capsys, "report", "--html", str(target), str(tmp_path / "none"))
        assert code == 2 and out == ""
        # the missing input is never looked at: the output is refused first
        assert err.startswith(f"mta-logging report: --html: '{target}' is not valid; cannot "
                              "write that file ("), err
    code, _out, err = run(capsys, "report", "--html", str(tmp_path / "new.html"),
                          str(tmp_path / "none"))
    assert code == 2 and "--html" not in err  # the input's error, and no file left behind
    assert not (tmp_path / "new.html").exists()


def test_report_html_contains_chart_data(acct: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    code, _out, err = run(capsys, "report", "--html", str(page), str(acct))
    assert code == 0 and "wrote" in err
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?https?:""", html)  # nothing fetched when viewed
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)'
                                r"</script>", html, re.DOTALL).group(1))  # type: ignore[union-attr]
    assert data["totals"]["total"] == 30
    # the per-hour chart: one stacked bar per hour from the first to the last (gaps included)
    bars = re.findall(r'<g class="bar" data-hour="([^"]+)">(.*?)</g>', html)
    assert len(bars) == 6 * 24 - 10 + 9 + 1
    by_hour = dict(bars)
    assert re.findall(r'data-kind="(\w+)" data-count="(\d+)"', by_hour["2026-11-26 08:00"]) == [
        ("deferred", "2"), ("bounced", "5")]
    assert "<title>2026-11-26 07:00: delivered 7, deferred 2, bounced 0</title>" in html
    categories = re.findall(r'data-category="([^"]+)" data-count="(\d+)"', html)
    assert categories == [("bad-mailbox", "5"), ("quota-issues", "1"), ("spam-related", "1")]


def test_report_strict_stops_at_first_problem(acct: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "--strict", str(acct))
    assert code == 2 and out == ""
    assert re.search(r"mta-logging report: \S+:\d+: ", err), err


def test_report_missing_path_is_an_error(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "report", str(tmp_path / "nope"))
    assert code == 2 and "no such file or directory" in err


def test_a_binary_file_and_a_line_with_a_lone_cr_are_skipped_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a program's bytes: a first "line" with a quote and a CR between NULs made csv raise
    (tmp_path / "a.bin").write_bytes(b"\x7fELF\x02\x01\x00,\x00\"\x00\r\x00@\x00\n\x00\x01")
    (tmp_path / "d.csv").write_bytes(b"type,timeLogged,rcpt\n"
                                     b"d,2026-11-26 06:00:00\r,\"a@example.com\"\n"
                                     b"d,2026-11-26 06:00:01,ok@example.com\n")
    code, out, err = run(capsys, "grep", "--fields", "rcpt", str(tmp_path))
    assert (code, out) == (0, "rcpt\nok@example.com\n")
    assert err == (
        f"mta-logging grep: warning: {tmp_path / 'a.bin'}:1: no header line (expected field "
        "names such as 'type<TAB>timeLogged<TAB>rcpt...' or a JSON object); file skipped\n"
        f"mta-logging grep: warning: {tmp_path / 'd.csv'}:2: not a line of values (new-line "
        "character seen in unquoted field); line skipped\n")
    code, out, _err = run(capsys, "report", "--json", str(tmp_path))
    assert code == 0 and json.loads(out)["totals"]["delivered"] == 1


def test_grep_prints_a_remote_bounce_diagnostic_as_dsn_diag(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handler = AccountingFileHandler("rb", tmp_path / "remote_bounce")
    logger = AccountingLogger("test.report.rb")
    logger.logger.addHandler(handler)
    logger.logger.propagate = False
    try:
        logger.remote_bounce("gone@example.org", dsn_status="5.1.1", job_id="Q1",
                             dsn_diag="smtp; 550 5.1.1 mailbox gone")
    finally:
        logger.logger.removeHandler(handler)
        handler.close()
    code, out, _err = run(capsys, "grep", "--fields", "rcpt,dsnMsg,dsnDiag", str(tmp_path))
    assert (code, out) == (0, "rcpt\tdsnMsg\tdsnDiag\n"
                              "gone@example.org\t\tsmtp; 550 5.1.1 mailbox gone\n")


def test_a_bounce_reason_led_by_a_status_alone_keeps_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "b.tsv").write_text(
        "type\ttimeLogged\trcpt\tdsnStatus\tdsnMsg\tbounceCat\n"
        "b\t2026-11-26 06:00:00\ta@example.com\t5.0.0\t5.0.0 returned to the sender by the "
        "administrator\tadmin-bounce\n", encoding="utf-8")
    code, out, _err = run(capsys, "report", "--json", str(tmp_path))
    assert code == 0
    assert json.loads(out)["bounce_reasons"] == [
        {"dsnStatus": "5.0.0", "dsnMsg": "5.0.0 returned to the sender by the administrator",
         "count": 1}]


# -- mta-logging grep ---------------------------------------------------------------------------

def test_grep_json_lines_restore_values_exactly(acct: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "grep", "--json", "--job-id", "job-0", "--vmta", "pool-a",
                          str(acct))
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["rcpt"] for r in records] == [
        "user0@example.com", "user3@example.com", "user6@example.org"]
    assert records[0]["dsnMsg"] == TRICKY
    assert records[0]["type"] == "d" and records[0]["bounceCat"] is None


def test_grep_file_format_is_readable_again(acct: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "grep", "--bounce-cat", "BAD-mailbox", str(acct))
    lines = out.splitlines()
    assert lines[0].split("\t")[:4] == ["type", "timeLogged", "timeQueued", "rcpt"]
    assert "custom_X-Campaign" in lines[0] and len(lines) == 1 + 5
    copy = tmp_path / "copy" / "b.2026-11-26-000000.tsv"
    copy.parent.mkdir()
    copy.write_text(out, encoding="utf-8")
    again = [(r.rcpt, r.get("custom_X-Campaign"), r.dsn_msg) for r in Reader([copy])]
    original = [(r.rcpt, r.get("custom_X-Campaign"), r.dsn_msg)
                for r in Reader([acct], filters=Filters.build(bounce_cats=["bad-mailbox"]))]
    assert again == original


def test_grep_count_and_exit_status(acct: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "grep", "--count", "--kind", "deferred", str(acct))[:2] == (0, "8\n")
    assert run(capsys, "grep", "--count", "--domain", "nowhere.test", str(acct))[:2] == (
        1, "0\n")


def test_grep_stops_quietly_when_its_reader_goes_away(tmp_path: Path) -> None:
    handler = AccountingFileHandler(Kind.DELIVERED, path=tmp_path)
    for index in range(5000):
        emit(handler, Kind.DELIVERED, DAY, f"user{index}@example.com", dsn_msg="250 " + "x" * 80)
    handler.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    grep = subprocess.Popen([sys.executable, "-m", "mta_logging.cli", "grep", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert grep.stdout is not None and grep.stderr is not None
    assert grep.stdout.readline().startswith(b"type\t")
    grep.stdout.close()  # as `| head -1` does
    assert grep.wait(timeout=60) == 0
    assert grep.stderr.read() == b""


def test_configure_and_accounting_logger_output_reads_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import mta_logging

    accounting = logging.getLogger("mta.accounting")
    level, propagate = accounting.level, accounting.propagate
    settings = mta_logging.configure({"path": str(tmp_path / "live"), "separator": ";"})
    logger = AccountingLogger()
    try:
        logger.delivered("a@example.com", dsn_status="2.0.0", dsn_msg="250 ok; done")
        logger.deferred("b@example.com", dsn_status="4.2.2", delay=60)
        logger.bounced("c@example.com", dsn_msg="550 5.1.1 user unknown")
        code, out, _err = run(capsys, "grep", "--json", str(tmp_path / "live"))
    finally:
        for handler in list(logging.getLogger(settings.logger).handlers):
            logging.getLogger(settings.logger).removeHandler(handler)
            handler.close()
        accounting.setLevel(level)
        accounting.propagate = propagate
    records = sorted((json.loads(line) for line in out.splitlines()), key=lambda r: r["rcpt"])
    assert [(r["type"], r["rcpt"]) for r in records] == [
        ("d", "a@example.com"), ("df", "b@example.com"), ("b", "c@example.com")]
    assert records[0]["dsnMsg"] == "250 ok; done"
    assert records[2]["bounceCat"] == "bad-mailbox"


# -- the reader API on the same data ------------------------------------------------------------

def test_summary_of_reader_matches_cli(acct: Path) -> None:
    issues: list[str] = []
    reader = Reader([acct], on_issue=lambda issue: issues.append(str(issue)))
    summary = Summary().add_all(reader)
    assert summary.totals == [15, 8, 7] and len(issues) == 3
    assert reader.stats.skipped_lines == 1 and reader.stats.skipped_files == 1


# -- the HTML page in a real browser ------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--enable-logging=stderr", "--v=0", "--window-size=1100,1000"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([str(CHROMIUM), *HEADLESS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp_path)})


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", data[16:29])
    assert depth == 8 and color in (2, 6) and interlace == 0
    channels = 3 if color == 2 else 4
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        if data[offset + 4:offset + 8] == b"IDAT":
            chunks.append(data[offset + 8:offset + 8 + length])
        offset += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc
                                      else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian package: chromium)")
def test_html_page_renders_in_chromium_without_script_errors(
        acct: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    assert run(capsys, "report", "--html", str(page), str(acct))[0] == 0
    url = page.resolve().as_uri()
    dom = chromium(tmp_path, "--dump-dom", url)
    assert 'data-rendered="ok"' in dom.stdout, dom.stderr[-2000:]  # the script ran to its end
    assert 'data-records="30"' in dom.stdout  # ... after parsing the embedded report
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Error" in line], console
    shot = tmp_path / "report.png"
    done = chromium(tmp_path, f"--screenshot={shot}", url)
    assert shot.exists(), done.stderr[-2000:]
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (1100, 1000)
    channels = len(rows[0]) // width
    colors = {row[i:i + 3] for row in rows for i in range(0, len(row), channels * 3)}
    # the charts' colours are on the screen: delivered green, deferred amber, bounced red
    for rgb in ((0x2E, 0x7D, 0x32), (0xF9, 0xA8, 0x25), (0xC6, 0x28, 0x28)):
        assert bytes(rgb) in colors, rgb


def one_job_across_kinds(root: Path) -> Path:
    """Job J: deferred at 06:00 and 06:02, bounced (another recipient) at 06:01, delivered at
    06:03; the files of each kind in their own directory, as the writer puts them."""
    events = [(Kind.DEFERRED, 0, "a@example.com"), (Kind.BOUNCE, 1, "b@example.com"),
              (Kind.DEFERRED, 2, "a@example.com"), (Kind.DELIVERED, 3, "a@example.com")]
    handlers = {kind: AccountingFileHandler(kind, path=root) for kind in Kind}
    for handler in handlers.values():
        handler.setFormatter(AccountingFormatter(fields="type,timeLogged,rcpt,jobId,"
                                                        "custom_X-Campaign"))
    for kind, minute, rcpt in events:
        emit(handlers[kind], kind, DAY.replace(hour=6, minute=minute), rcpt, job_id="J",
             headers={"X-Campaign": "spring"})
    for handler in handlers.values():
        handler.close()
    return root


def test_grep_one_job_prints_its_history_in_time_order(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = one_job_across_kinds(tmp_path / "acct")
    code, out, _err = run(capsys, "grep", "--job-id", "J", "--fields", "type,timeLogged",
                          str(root))
    assert code == 0 and out.splitlines() == [
        "type\ttimeLogged", "df\t2026-11-26 06:00:00", "b\t2026-11-26 06:01:00",
        "df\t2026-11-26 06:02:00", "d\t2026-11-26 06:03:00"]
    code, out, _err = run(capsys, "grep", "--job-id", "J", "--sort", "file", "--fields",
                          "type", "--no-header", str(root))
    assert out.split() == ["b", "df", "df", "d"]  # bounce, deferred, delivered: by name
    code, out, _err = run(capsys, "grep", "--rcpt", "a@example.com", "--fields", "type",
                          "--no-header", str(root))
    assert out.split() == ["df", "df", "d"]  # one recipient's history: in time order too


def test_grep_names_a_requested_field_no_file_has(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = one_job_across_kinds(tmp_path / "acct")
    code, out, err = run(capsys, "grep", "--kind", "d", "--fields",
                         "rcpt,header_x-campaign,dsnDiag", str(root))
    assert code == 0 and out.splitlines() == [
        "rcpt\theader_x-campaign\tdsnDiag", "a@example.com\tspring\t"]
    assert err == ("mta-logging grep: warning: --fields: 'dsnDiag' is a field of no input "
                   "file; its values are empty\n")


def test_received_records_are_counted_apart_from_outcomes(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    import mta_logging

    accounting = logging.getLogger("mta.accounting")
    level, propagate = accounting.level, accounting.propagate
    mta_logging.configure({"path": str(tmp_path), "records": "d,df,b,r"})
    try:
        acct = AccountingLogger()
        acct.received("bob@example.com", job_id="1")
        acct.delivered("bob@example.com", job_id="1", dsn_status="2.0.0", dsn_msg="250 ok")
    finally:
        for handler in list(accounting.handlers):
            accounting.removeHandler(handler)
            handler.close()
        accounting.setLevel(level)
        accounting.propagate = propagate
    assert main(["report", "--json", str(tmp_path)]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals == {"delivered": 1, "deferred": 0, "bounced": 0, "received": 1, "unknown": 0,
                      "total": 2}
    assert main(["report", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"received\s+1\n", table) and "unknown kind" not in table


def test_remote_bounces_and_complaints_are_counted_apart_from_outcomes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import mta_logging

    accounting = logging.getLogger("mta.accounting")
    level, propagate = accounting.level, accounting.propagate
    mta_logging.configure({"path": str(tmp_path), "records": "d,df,b,rb,f"})
    try:
        acct = AccountingLogger()
        acct.delivered("bob@example.com", job_id="1", dsn_status="2.0.0", dsn_msg="250 ok")
        acct.remote_bounce("bob@example.com", job_id="1", dsn_status="5.1.1")
        acct.remote_bounce("eve@example.com", job_id="1", dsn_status="5.1.1")
        acct.feedback("ann@example.com", job_id="1", feedback_type="abuse")
    finally:
        for handler in list(accounting.handlers):
            accounting.removeHandler(handler)
            handler.close()
        accounting.setLevel(level)
        accounting.propagate = propagate
    assert main(["report", "--json", str(tmp_path)]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals == {"delivered": 1, "deferred": 0, "bounced": 0, "remote_bounce": 2,
                      "feedback": 1, "unknown": 0, "total": 4}
    assert main(["report", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"remote bounce\s+2\n", table) and re.search(r"complaint\s+1\n", table)
    assert main(["grep", "--kind", "rb", str(tmp_path)]) == 0
    assert [line.split("\t")[3] for line in capsys.readouterr().out.splitlines()[1:]] == [
        "bob@example.com", "eve@example.com"]
