"""mta-logging report: output that is always valid, --by, --bucket, worker processes, DST.

A byte that is not UTF-8 in a value (an 8-bit reply from a remote server) must come out as
the text ``\\xNN`` in every format, never as a crash or as bytes a parser refuses.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_report import build_dataset

from mta_logging.cli import main
from mta_logging.report import Reader
from mta_logging.report.parallel import shares, sized_files, summarize
from mta_logging.report.summary import Summary

HEADER = b"type\ttimeLogged\ttimeQueued\trcpt\tvmta\tdsnStatus\tdsnMsg\tcustom_X-Campaign\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def eight_bit(tmp_path: Path) -> Path:
    """Two bounces whose reply holds the byte 0xff, one from a vmta named with 0xe9."""
    path = tmp_path / "b.2026-11-26-080000.tsv"
    path.write_bytes(
        HEADER
        + b"b\t2026-11-26 08:00:00\t\tx@example.com\tpool-\xe9\t5.1.1\t550 5.1.1 caf\xff\tw\n"
        + b"b\t2026-11-26 08:01:00\t\ty@example.com\tpool-a\t5.1.1\t550 5.1.1 caf\xff\tw\n")
    return path


def test_json_report_is_valid_utf8_with_bytes_as_escapes(
        eight_bit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "report", "--json", str(eight_bit))
    assert code == 0
    out.encode("utf-8")  # no lone surrogate: encodes strictly
    report = json.loads(out)
    assert [row["vmta"] for row in report["vmtas"]] == ["pool-a", "pool-\\xe9"]
    assert report["bounce_reasons"] == [
        {"dsnStatus": "5.1.1", "dsnMsg": "550 5.1.1 caf\\xff", "count": 2}]


def test_csv_and_table_show_bytes_as_escapes(eight_bit: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _code, out, _err = run(capsys, "report", "--csv", str(eight_bit))
    rows = list(csv.reader(io.StringIO(out)))
    assert ["bounce_reasons", "5.1.1", "550 5.1.1 caf\\xff", "count", "2"] in rows
    assert ["vmtas", "pool-\\xe9", "", "total", "1"] in rows
    _code, out, _err = run(capsys, "report", str(eight_bit))
    assert "550 5.1.1 caf\\xff" in out and "pool-\\xe9" in out


def test_html_report_is_written_whole(eight_bit: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    code, _out, _err = run(capsys, "report", "--html", str(page), str(eight_bit))
    assert code == 0
    text = page.read_bytes().decode("utf-8")  # strictly
    assert "550 5.1.1 caf\\xff" in text and text.endswith("</html>\n")


def test_strictly_encoded_stdout_does_not_crash(eight_bit: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "ascii:strict"}
    for extra in ([], ["--csv"], ["--json"]):
        done = subprocess.run([sys.executable, "-m", "mta_logging.cli", "report", *extra,
                               str(eight_bit)], capture_output=True, env=env, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        assert b"caf\\xff" in done.stdout.replace(b"\\\\", b"\\")  # JSON doubles the \\


def test_grep_json_is_valid_utf8(eight_bit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _code, out, _err = run(capsys, "grep", "--json", str(eight_bit))
    out.encode("utf-8")
    assert [json.loads(line)["dsnMsg"] for line in out.splitlines()] == [
        "550 5.1.1 caf\\xff", "550 5.1.1 caf\\xff"]


def test_report_by_any_field(eight_bit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _code, out, _err = run(capsys, "report", "--json", "--by", "custom_X-Campaign,rcpt",
                           str(eight_bit))
    report = json.loads(out)
    assert report["by"]["custom_X-Campaign"] == [
        {"custom_X-Campaign": "w", "delivered": 0, "deferred": 0, "bounced": 2, "total": 2}]
    assert [row["rcpt"] for row in report["by"]["rcpt"]] == ["x@example.com", "y@example.com"]
    _code, out, _err = run(capsys, "report", "--by", "custom_X-Campaign", str(eight_bit))
    assert "By custom_X-Campaign\ncustom_X-Campaign  delivered  deferred  bounced  total\n" in out


def test_report_by_a_field_that_does_not_exist_is_refused(
        eight_bit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "--by", "jobId", "--by", "campaign", str(eight_bit))
    assert (code, out) == (2, "")
    assert err.startswith("mta-logging report: --by: 'campaign' is not valid; unknown field; "
                          "allowed fields: type, timeLogged, ")
    assert err.endswith(", custom_<Header> (or header_<Header>), * for every field, !<field> to "
                        "leave one out\n")


@pytest.fixture
def acct(tmp_path: Path) -> Path:
    return build_dataset(tmp_path)


@pytest.mark.parametrize(("bucket", "starts"), [
    ("15m", ["2026-11-20 10:15", "2026-11-26 06:00", "2026-11-26 06:30", "2026-11-26 07:00"]),
    ("1d", ["2026-11-20", "2026-11-26"]),
])
def test_report_bucket(acct: Path, bucket: str, starts: list[str],
                       capsys: pytest.CaptureFixture[str]) -> None:
    _code, out, _err = run(capsys, "report", "--json", "--bucket", bucket, str(acct))
    report = json.loads(out)
    assert report["bucket"] == bucket
    assert [row["hour"] for row in report["hours"]][:len(starts)] == starts
    assert sum(row["total"] for row in report["hours"]) == report["totals"]["total"]


def test_report_bucket_in_table_and_html(acct: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _code, out, _err = run(capsys, "report", "--bucket", "1d", str(acct))
    assert "Per day (timeLogged)\nday " in out
    page = tmp_path / "r.html"
    run(capsys, "report", "--bucket", "15m", "--html", str(page), str(acct))
    text = page.read_text(encoding="utf-8")
    assert "<h2>Outcomes per 15 minutes</h2>" in text
    assert 'data-hour="2026-11-26 06:15"' in text


def test_bad_bucket_is_refused(acct: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--bucket", "2h", str(acct)])
    assert "invalid choice: '2h'" in capsys.readouterr().err


def test_worker_processes_give_the_same_report(acct: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _code, one, one_err = run(capsys, "report", "--json", "--jobs", "1", "--by", "jobId",
                              str(acct))
    _code, two, two_err = run(capsys, "report", "--json", "--jobs", "2", "--by", "jobId",
                              str(acct))
    assert json.loads(two) == json.loads(one)
    assert sorted(two_err.splitlines()) == sorted(one_err.splitlines())


def test_shares_hold_each_file_once_balanced_by_size(acct: Path) -> None:
    reader = Reader([acct])
    files = [str(path) for path in reader.files()]
    groups = shares(reader, 2)
    assert sorted(name for group in groups for name, _inode in group) == sorted(files)
    size_of = {name: size for size, (name, _inode) in sized_files(reader)}
    sizes = [sum(size_of[name] for name, _inode in group) for group in groups]
    assert abs(sizes[0] - sizes[1]) <= max(size_of.values())


def test_a_gz_weighs_as_its_content_when_files_are_shared(tmp_path: Path) -> None:
    content = HEADER + b"d\t2026-11-26 06:00:00\t\tbob@example.com\t\t2.0.0\tok\t\n" * 500
    (tmp_path / "d.2026-11-26-060000.tsv.gz").write_bytes(gzip.compress(content))
    (tmp_path / "d.2026-11-26-070000.tsv").write_bytes(content[:1000])
    assert sorted(size for size, _file in sized_files(Reader([tmp_path]))) == [1000,
                                                                               len(content)]
    cut = tmp_path / "d.2026-11-26-060000.tsv.gz"
    cut.write_bytes(gzip.compress(content)[:-8] + b"\xff" * 8)  # no trailer: a bounded guess
    assert max(size for size, _file in sized_files(Reader([tmp_path]))) <= 1032 * cut.stat(
    ).st_size


def test_summarize_in_workers_raises_when_strict(acct: Path) -> None:
    from mta_logging.errors import FormatError

    with pytest.raises(FormatError, match="damaged|no header|values where"):
        summarize(Reader([acct], strict=True), 2)


def test_merge_refuses_summaries_of_other_buckets() -> None:
    from mta_logging.errors import ConfigError

    with pytest.raises(ConfigError, match="bucket/by"):
        Summary(bucket="1h").merge(Summary(bucket="1d"))


# -- times with an offset, local times across a DST change ---------------------------------

@pytest.fixture
def berlin() -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def write_deliveries(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["type\ttimeLogged\ttimeQueued\trcpt"]
    lines += [f"d\t{logged}\t{queued}\tu@example.com" for logged, queued in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_times_with_offset_are_compared_in_utc(tmp_path: Path, berlin: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # queued before the change (+02:00), delivered after it (+01:00): 30 minutes later
    path = write_deliveries(tmp_path / "d.tsv", [
        ("2026-10-25 02:10:00+01:00", "2026-10-25 02:40:00+02:00")])
    _code, out, err = run(capsys, "report", "--json", str(path))
    report = json.loads(out)
    assert report["queue_delay"]["max"] == 1800
    assert report["period"]["first"] == "2026-10-25 01:10:00"  # in UTC
    assert "warning" not in err and "warnings" not in report


def test_percent_z_time_format_is_read(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = write_deliveries(tmp_path / "d.tsv", [("26/11/2026 07:00:05 +0100",
                                                  "26/11/2026 06:59:00 +0100")])
    _code, out, _err = run(capsys, "report", "--json", "--time-format", "%d/%m/%Y %H:%M:%S %z",
                           str(path))
    report = json.loads(out)
    assert report["queue_delay"]["max"] == 65
    assert report["period"]["first"] == "2026-11-26 06:00:05"


def test_local_times_across_a_dst_change_are_warned_about(
        tmp_path: Path, berlin: None, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_deliveries(tmp_path / "d.tsv", [
        ("2026-10-24 12:00:00", "2026-10-24 11:59:00"),
        ("2026-10-25 02:10:00", "2026-10-25 02:40:00"),  # 30 min after queueing, reads −30
        ("2026-10-25 12:00:00", "2026-10-25 11:00:00")])
    _code, out, err = run(capsys, "report", "--json", str(path))
    report = json.loads(out)
    assert report["queue_delay"]["min"] == -1800
    (warning,) = report["warnings"]
    assert "no UTC offset" in warning and "2026-10-25" in warning
    assert f"mta-logging report: warning: {warning}" in err
    _code, out, _err = run(capsys, "report", str(path))
    assert f"Warning: {warning}" in out


def test_local_times_within_one_offset_are_not_warned_about(
        tmp_path: Path, berlin: None, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_deliveries(tmp_path / "d.tsv", [
        ("2026-11-24 12:00:00", "2026-11-24 11:59:00"),
        ("2026-11-26 02:10:00", "2026-11-26 02:00:00")])
    _code, out, _err = run(capsys, "report", "--json", str(path))
    assert "warnings" not in json.loads(out)
