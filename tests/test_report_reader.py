"""The reader: every layout the writers produce, damage, filters, streaming."""

from __future__ import annotations

import gzip
import json
import logging
import os
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta_logging.errors import ConfigError, FormatError
from mta_logging.formatters import join_values
from mta_logging.outcome import Kind
from mta_logging.report import Filters, Issue, Reader, Record
from mta_logging.report.reader import detect_layout, kind_from_path
from mta_logging.report.summary import Summary

DATA = Path(__file__).parent / "data" / "report"
HEADER = ["type", "timeLogged", "timeQueued", "rcpt", "vmta", "jobId", "dsnStatus", "dsnMsg"]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def accounting_file(path: Path, rows: list[list[str | None]], separator: str = "\t",
                    fields: list[str] = HEADER) -> Path:
    lines = [join_values(fields, separator)] + [join_values(row, separator) for row in rows]
    return write(path, "".join(line + "\n" for line in lines))


def read(*paths: Path, **options: object) -> tuple[list[Record], list[Issue]]:
    issues: list[Issue] = []
    records = list(Reader(paths, on_issue=issues.append, **options))  # type: ignore[arg-type]
    return records, issues


ROW = ["d", "2026-11-26 06:00:05", "2026-11-26 06:00:00", "bob@example.com", "pool-a", "42",
       "2.0.0", "250 2.0.0 OK"]


# -- layouts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("separator", ["\t", ",", ";", "|", ":"])
def test_separator_is_found_from_the_header(tmp_path: Path, separator: str) -> None:
    path = accounting_file(tmp_path / "d.2026-11-26-060000.txt", [ROW], separator)
    (record,), issues = read(path)
    assert issues == [] and dict(record.fields) == dict(zip(HEADER, ROW, strict=True))
    assert record.kind is Kind.DELIVERED and record.line == 2
    assert record.time_logged == datetime(2026, 11, 26, 6, 0, 5)
    assert record.queue_seconds == 5 and record.domain == "example.com"


def test_header_with_custom_fields_and_dashes(tmp_path: Path) -> None:
    layout = detect_layout("type,rcpt,custom_X-Mailer,custom_List-Id\n")
    assert layout is not None and layout.separator == ","
    assert layout.fields == ("type", "rcpt", "custom_X-Mailer", "custom_List-Id")
    assert detect_layout("d\t2026-11-26 06:00:00\tbob@example.com\n") is None
    assert detect_layout("hello world\n") is None
    assert detect_layout('{"type": "d"}\n') is not None


text_values = st.one_of(st.none(), st.text(alphabet=st.characters(
    blacklist_categories=("Cs",)) | st.sampled_from("\t\n\r\\\",;\udcff"), max_size=30))


TEXT_FIELDS = ["type", "rcpt", "srcMta", "vmta", "jobId", "dsnStatus", "dsnMsg", "custom_X-Y"]


@settings(max_examples=150, deadline=None)
@given(values=st.lists(text_values, min_size=len(TEXT_FIELDS), max_size=len(TEXT_FIELDS)),
       separator=st.sampled_from(["\t", ",", ";", "|"]))
def test_escaping_is_undone_exactly(tmp_path_factory: pytest.TempPathFactory,
                                    values: list[str | None], separator: str) -> None:
    values[0] = "b"
    path = accounting_file(tmp_path_factory.mktemp("x") / "b.tsv", [values], separator,
                           TEXT_FIELDS)
    (record,), issues = read(path)
    assert issues == []
    assert list(record.fields.values()) == [v or None for v in values]  # empty = unknown


def test_haraka_tsv_file(tmp_path: Path) -> None:
    records, issues = read(DATA / "haraka")
    assert issues == [] and len(records) == 2
    first = records[0]
    assert first.kind is Kind.DEFERRED  # t.* file, type df
    assert first.get("srcIp") is None and first.vmta is None and first.dsn_msg is None
    assert first.get("delay") == "600" and first.dsn_status == "4.4.1"
    assert first.rcpt == "h1@example.net" and records[1].domain == "example.net"
    assert list(first.fields) == ["type", "timeLogged", "timeQueued", "rcpt", "srcMta", "srcIp",
                                  "vmta", "jobId", "dsnStatus", "dsnMsg", "delay"]


def test_haraka_csv_file_with_old_field_names(tmp_path: Path) -> None:
    (ann, ben), issues = read(DATA / "haraka-custom")
    assert issues == []
    assert ann.get("srcIp") == "192.0.2.10" and ann.get("destIp") == "203.0.113.5"
    assert ann.get("srcType") == "smtp" and ann.get("custom_X-Mailer") == "Mailer 1.0"
    assert ann.dsn_msg is None and ann.dsn_status is None and ann.vmta is None
    assert ben.get("destIp") is None and ben.get("custom_X-Mailer") is None
    assert ben.queue_seconds == 6


def test_json_lines(tmp_path: Path) -> None:
    lines = [
        {"type": "b", "timeLogged": "2026-11-26 06:00:00", "rcpt": "a@example.com",
         "dsnMsg": None, "delay": 30, "bounceCat": "bad-mailbox"},
        {"type": "d", "timeLogged": "2026-11-26 06:00:01", "rcpt": "b@example.com"},
    ]
    path = write(tmp_path / "x.jsonl", "".join(json.dumps(line) + "\n" for line in lines)
                 + "[1, 2]\n\n{not json\n")
    records, issues = read(path)
    assert [r.kind for r in records] == [Kind.BOUNCE, Kind.DELIVERED]
    assert records[0].get("delay") == "30" and records[0].dsn_msg is None
    assert records[0].bounce_cat == "bad-mailbox" and records[0].line == 1
    assert [(i.line, i.message.split(" (")[0]) for i in issues] == [
        (3, "not a JSON record"), (5, "not a JSON record")]


def test_kind_from_name_or_directory_when_no_type_field(tmp_path: Path) -> None:
    fields = ["timeLogged", "rcpt"]
    row: list[str | None] = ["2026-11-26 06:00:00", "a@example.com"]
    accounting_file(tmp_path / "b.2026-11-26-060000.tsv", [row], fields=fields)
    accounting_file(tmp_path / "deferred" / "archive" / "x.tsv", [row], fields=fields)
    accounting_file(tmp_path / "misc" / "x.tsv", [row], fields=fields)
    records, _ = read(tmp_path)
    assert [r.kind for r in records] == [Kind.DEFERRED, None, Kind.BOUNCE]  # dirs first
    assert kind_from_path(Path("a/bounce/archive/whatever.tsv.gz")) is Kind.BOUNCE
    assert kind_from_path(Path("t.2026-11-20-101500.tsv")) is Kind.DEFERRED


def test_type_field_wins_over_file_name(tmp_path: Path) -> None:
    path = accounting_file(tmp_path / "d.2026-11-26-060000.tsv", [["b", *ROW[1:]]])
    (record,), _ = read(path)
    assert record.kind is Kind.BOUNCE


def test_placeholder_and_time_format_options(tmp_path: Path) -> None:
    row = ["d", "26/11/2026 06:00:05", "N/A", "bob@example.com", "N/A", "42", "2.0.0", "ok"]
    path = accounting_file(tmp_path / "d.tsv", [row])
    (record,), issues = read(path, placeholder="N/A", time_format="%d/%m/%Y %H:%M:%S")
    assert issues == [] and record.vmta is None and record.get("timeQueued") is None
    assert record.time_logged == datetime(2026, 11, 26, 6, 0, 5)


def test_time_not_in_the_format_is_unknown_with_one_warning_per_file(tmp_path: Path) -> None:
    row = ["d", "26/11/2026 06:00:05", "", "bob@example.com", "", "", "", ""]
    path = accounting_file(tmp_path / "d.tsv", [row, row, row])
    records, issues = read(path)
    assert len(records) == 3 and all(r.time_logged is None for r in records)
    assert [str(i) for i in issues] == [
        f"{path}:2: timeLogged '26/11/2026 06:00:05' does not match the time format "
        "'%Y-%m-%d %H:%M:%S' (see --time-format); read as unknown"]


# -- damage -------------------------------------------------------------------------------------

def test_wrong_field_count_is_skipped_and_named(tmp_path: Path) -> None:
    path = accounting_file(tmp_path / "d.tsv", [ROW, ROW[:3], ROW])
    with open(path, "a", encoding="utf-8") as file:
        file.write("\n" + "\t".join(ROW) + "\textra\n")
    reader = Reader([path], on_issue=lambda issue: None)
    records = list(reader)
    assert [r.line for r in records] == [2, 4]
    assert reader.stats.skipped_lines == 2 and reader.stats.issues == 2
    assert reader.stats.lines == 4  # the blank line is not counted


def test_strict_turns_the_first_problem_into_an_error(tmp_path: Path) -> None:
    path = accounting_file(tmp_path / "d.tsv", [ROW, ROW[:3]])
    with pytest.raises(FormatError, match=rf"^{path}:3: 3 values where the header has 8"):
        list(Reader([path], strict=True))


def test_truncated_gzip_keeps_the_whole_lines_before_the_damage(tmp_path: Path) -> None:
    rows: list[list[str | None]] = [
        [*ROW[:3], f"user{i}@example.com", *ROW[4:7], f"250 ok {i} " + "x" * (i % 50)]
        for i in range(3000)]
    plain = accounting_file(tmp_path / "plain" / "d.tsv", rows)
    data = gzip.compress(plain.read_bytes())
    cut = write(tmp_path / "gz" / "d.2026-11-26-060000.tsv.gz", data[: len(data) // 2])
    records, issues = read(cut)
    assert 0 < len(records) < 3000
    assert [r.rcpt for r in records] == [f"user{i}@example.com" for i in range(len(records))]
    assert all(r.dsn_msg == rows[r.line - 2][7] for r in records)  # no torn last record
    (issue,) = issues
    assert issue.path == str(cut) and issue.line == len(records) + 2
    assert "damaged compressed file" in issue.message


def test_file_without_header_is_skipped_empty_file_is_not_a_problem(tmp_path: Path) -> None:
    write(tmp_path / "d.1.tsv", "d\t2026-11-26 06:00:00\tbob@example.com\n")
    write(tmp_path / "d.2.tsv", "")
    accounting_file(tmp_path / "d.3.tsv", [ROW])
    reader = Reader([tmp_path], on_issue=lambda issue: None)
    assert len(list(reader)) == 1
    assert reader.stats.skipped_files == 1 and reader.stats.issues == 1


def test_warnings_go_to_the_report_logger_by_default(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "d.tsv", "no header here\n")
    assert list(Reader([path])) == []
    assert f"{path}:1: no header line" in caplog.text


# -- which files --------------------------------------------------------------------------------

def test_directories_recursive_in_written_order_hidden_files_left_out(tmp_path: Path) -> None:
    names = ["d/d.T.1.tsv", "d/d.T.tsv", "d/b.tsv", "d/archive/d.S.2.tsv.gz", "d/archive/d.S.tsv",
             "d/archive/d.S.10.tsv", "d/.pending.tsv", "d/.tmp/e.tsv"]
    for name in names:
        accounting_file(tmp_path / name, [[*ROW[:3], name, *ROW[4:]]])
    records, _ = read(tmp_path / "d")
    assert [r.rcpt for r in records] == ["d/archive/d.S.tsv", "d/archive/d.S.2.tsv.gz",
                                         "d/archive/d.S.10.tsv", "d/b.tsv", "d/d.T.tsv",
                                         "d/d.T.1.tsv"]


def test_a_file_under_two_names_is_read_once(tmp_path: Path) -> None:
    path = accounting_file(tmp_path / "d.tsv", [ROW])
    (tmp_path / "archive").mkdir()
    os.link(path, tmp_path / "archive" / "d.tsv")  # the moment between link and unlink
    records, _ = read(tmp_path)
    assert len(records) == 1


def test_field_names_union_in_catalogue_order(tmp_path: Path) -> None:
    accounting_file(tmp_path / "a.tsv", [ROW])
    accounting_file(tmp_path / "b.tsv", [["b", "x@y.z", "cat", "v"]],
                    fields=["type", "rcpt", "bounceCat", "custom_X-Id"])
    write(tmp_path / "c.jsonl", json.dumps({"rcpt": "a@b.c", "destIp": "192.0.2.1"}) + "\n")
    assert Reader([tmp_path]).field_names() == [*HEADER[:4], "destIp", *HEADER[4:],
                                                "bounceCat", "custom_X-Id"]


# -- filters ------------------------------------------------------------------------------------

def rows_for_filters() -> list[list[str | None]]:
    return [
        ["d", "2026-11-26 05:59:59", "", "a@Example.COM", "pool-a", "1", "2.0.0", "ok", ""],
        ["df", "2026-11-26 06:00:00", "", "b@example.com", "pool-b", "2", "4.2.2", "full", ""],
        ["b", "2026-11-26 06:30:00", "", "c@example.org", "pool-a", "1", "5.1.1", "no",
         "Bad-Mailbox"],
        ["b", "2026-11-26 07:00:00", "", "d@example.org", "pool-b", "3", "5.7.1", "spam",
         "spam-related"],
        ["b", "", "", "e@example.org", "pool-b", "3", "5.1.2", "no", "bad-domain"],
    ]


@pytest.mark.parametrize(("options", "expected"), [
    ({}, "abcde"),
    ({"kinds": ["b"]}, "cde"),
    ({"kinds": "d,deferred"}, "ab"),
    ({"since": "2026-11-26 06:00"}, "bcd"),
    ({"until": "2026-11-26 06:30:00"}, "ab"),
    ({"since": "2026-11-26 06:00", "until": "2026-11-26T07:00"}, "bc"),
    ({"since": "2026-11-26"}, "abcd"),
    ({"domains": ["example.com"]}, "ab"),
    ({"domains": ["EXAMPLE.org", "@nowhere.test"]}, "cde"),
    ({"job_ids": ["1,3"]}, "acde"),
    ({"vmtas": ["pool-a"]}, "ac"),
    ({"dsn_status": ["5.1"]}, "ce"),
    ({"dsn_status": ["4", "2.0"]}, "ab"),
    ({"bounce_cats": ["bad-mailbox"]}, "c"),
    ({"kinds": ["b"], "vmtas": ["pool-b"], "dsn_status": ["5.1"]}, "e"),
])
def test_filters(tmp_path: Path, options: dict[str, object], expected: str) -> None:
    path = accounting_file(tmp_path / "x.tsv", rows_for_filters(), fields=[*HEADER,
                                                                           "bounceCat"])
    records, _ = read(path, filters=Filters.build(**options))  # type: ignore[arg-type]
    assert "".join((r.rcpt or "?")[0] for r in records) == expected


@pytest.mark.parametrize(("options", "message"), [
    ({"since": "yesterday"}, "since: 'yesterday' is not valid"),
    ({"until": "2026-11-26T00:00+01:00"}, "without a zone"),
    ({"since": "2026-11-27", "until": "2026-11-26"}, "must be later than since"),
    ({"kinds": ["delivered", "nope"]}, "kind: 'nope' is not valid"),
])
def test_bad_filters_name_the_option(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Filters.build(**options)  # type: ignore[arg-type]


# -- streaming ----------------------------------------------------------------------------------

def test_memory_stays_flat_on_a_large_input(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    with open(path, "w", encoding="utf-8") as file:
        file.write("\t".join(HEADER) + "\n")
        for i in range(50_000):
            file.write(f"d\t2026-11-26 06:{i // 60 % 60:02d}:{i % 60:02d}\t2026-11-26 06:00:00\t"
                       f"u{i}@d{i % 500}.example\tpool-{i % 7}\t{i}\t2.0.0\t250 ok id{i}\n")
    progress: list[int] = []
    reader = Reader([path], on_progress=progress.append)
    tracemalloc.start()
    try:
        summary = Summary().add_all(reader)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.totals == [50_000, 0, 0]
    assert peak < 8_000_000, peak  # a list of the 50k records alone would take over 40 MB
    assert progress[-1] == path.stat().st_size and progress == sorted(progress)
    assert len(progress) >= 50_000 // 8192


# -- the fields of today and PowerMTA's spellings ----------------------------------------------

def test_dsn_diag_is_its_own_field_beside_dsn_msg_and_the_old_name_alone(tmp_path: Path) -> None:
    both = accounting_file(tmp_path / "new" / "d.tsv", [["d", "250 Ok", "smtp; 250 Ok"]],
                           fields=["type", "dsnMsg", "dsnDiag"])
    old = accounting_file(tmp_path / "old" / "d.tsv", [["d", "250 Ok"]],
                          fields=["type", "dsnDiag"])
    (new_record,), _ = read(both)
    (old_record,), _ = read(old)
    assert (new_record.dsn_msg, new_record.get("dsnDiag")) == ("250 Ok", "smtp; 250 Ok")
    assert (old_record.dsn_msg, old_record.get("dsnDiag")) == ("250 Ok", None)


def test_the_diagnostic_of_a_remote_bounce_file_stays_dsn_diag(tmp_path: Path) -> None:
    # rb's default fields hold dsnDiag and no dsnMsg: the file is no Haraka file
    fields = ["type", "timeLogged", "orig", "rcpt", "orcpt", "jobId", "dsnAction", "dsnStatus",
              "dsnDiag", "dsnMta", "bounceCat"]
    path = accounting_file(tmp_path / "remote_bounce" / "rb.tsv", [[
        "rb", "2026-11-26 06:00:00", "s@example.test", "gone@example.org", "gone@example.org",
        "Q1", "failed", "5.1.1", "smtp; 550 5.1.1 mailbox gone", "dns; mx.example.org",
        "bad-mailbox"]], fields=fields)
    (record,), _ = read(path)
    assert (record.dsn_msg, record.get("dsnDiag")) == (None, "smtp; 550 5.1.1 mailbox gone")


def test_header_fields_are_found_in_any_case_and_either_spelling(tmp_path: Path) -> None:
    path = accounting_file(tmp_path / "d.tsv", [["d", "spring"]],
                           fields=["type", "custom_X-Campaign"])
    (record,), _ = read(path)
    assert [record.get(name) for name in ("custom_X-Campaign", "custom_x-campaign",
                                          "header_X-CAMPAIGN", "custom_X-Other")] == [
        "spring", "spring", "spring", None]


def test_json_values_are_unescaped_as_separated_values_are(tmp_path: Path) -> None:
    from mta_logging import AccountingFormatter, AccountingJsonFormatter, Outcome

    outcome = Outcome(Kind.DEFERRED, "b\\ob@example.com", dsn_msg="451 caf\udce9", delay=2.5,
                      size=7)
    fields = "type,rcpt,dsnMsg,delay,dlvSize"
    formatted = []
    for formatter, name in ((AccountingFormatter(fields), "df.tsv"),
                            (AccountingJsonFormatter(fields), "df.jsonl")):
        record = logging.LogRecord("x", logging.WARNING, "p", 0, "m", None, None)
        record.outcome = outcome
        header = formatter.header()
        text = "" if header is None else header + "\n"
        formatted.append(write(tmp_path / name, text + formatter.format(record) + "\n"))
    (tsv,), _ = read(formatted[0])
    (jsonl,), _ = read(formatted[1])
    assert tsv.fields == jsonl.fields == {
        "type": "df", "rcpt": "b\\ob@example.com", "dsnMsg": "451 caf\udce9", "delay": "2.5",
        "dlvSize": "7"}


def test_in_time_order_merges_the_kinds(tmp_path: Path) -> None:
    for kind, times in (("d", ["06:00:01", "06:00:04"]), ("df", ["06:00:00", "06:00:03"]),
                        ("b", ["06:00:02"])):
        rows = [[kind, f"2026-11-26 {when}", None, "a@example.com", None, "J", None, None]
                for when in times]
        accounting_file(tmp_path / kind / f"{kind}.2026-11-26-060000.tsv", rows)
    reader = Reader([tmp_path])
    merged = [(r.kind, r.time_logged.second if r.time_logged else None)
              for r in reader.in_time_order()]
    assert merged == [(Kind.DEFERRED, 0), (Kind.DELIVERED, 1), (Kind.BOUNCE, 2),
                      (Kind.DEFERRED, 3), (Kind.DELIVERED, 4)]
    assert reader.stats.matched == 5
