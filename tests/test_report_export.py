"""mta-logging export --parquet and mta-logging sql: the reader's records, typed, for analysts.

The numbers must agree with ``mta-logging report`` on the same files, values must be the
original text (escapes undone, bytes that were not UTF-8 as \\xNN), and exporting again must
only read what changed, never count a file twice when it moved into the archive.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil
from pathlib import Path
from unittest import mock

import pytest

from mta_logging.cli import main

duckdb = pytest.importorskip("duckdb")
pq = pytest.importorskip("pyarrow.parquet")

from test_report import TRICKY, build_dataset  # noqa: E402 (after the skips)

HEADER = "type\ttimeLogged\ttimeQueued\trcpt\tdsnMsg\tdelay\tcustom_X-Campaign\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def query(out: Path, sql: str) -> list[tuple[object, ...]]:
    connection = duckdb.connect()
    connection.execute("CREATE VIEW records AS SELECT * FROM read_parquet("
                       f"'{out}/*.parquet', union_by_name = true)")
    rows: list[tuple[object, ...]] = connection.execute(sql).fetchall()
    return rows


@pytest.fixture
def acct(tmp_path: Path) -> Path:
    return build_dataset(tmp_path)


def test_export_agrees_with_the_report(acct: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pq"
    code, _out, err = run(capsys, "export", "--parquet", str(out), str(acct))
    assert code == 0
    assert "files exported (30 records), 0 unchanged" in err
    _code, text, _err = run(capsys, "report", "--json", "--top", "100", str(acct))
    report = json.loads(text)
    kinds = dict(query(out, "SELECT kind, count(*) FROM records GROUP BY kind"))
    assert kinds == {"d": report["totals"]["delivered"], "df": report["totals"]["deferred"],
                     "b": report["totals"]["bounced"]}
    domains = query(out, "SELECT domain, count(*) FROM records GROUP BY domain "
                         "ORDER BY 2 DESC, 1")
    assert domains == [(row["domain"], row["total"]) for row in report["domains"]]
    reasons = query(out, "SELECT dsnStatus, reason, count(*) FROM records WHERE kind = 'b' "
                         "GROUP BY ALL ORDER BY 3 DESC, 1, 2")
    assert reasons == [(row["dsnStatus"], row["dsnMsg"], row["count"])
                       for row in report["bounce_reasons"]]


def test_values_are_unescaped_and_typed(acct: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pq"
    run(capsys, "export", "--parquet", str(out), str(acct))
    ((message, logged, queued, line),) = query(
        out, "SELECT dsnMsg, timeLogged, timeQueued, line FROM records "
             "WHERE rcpt = 'user0@example.com'")
    assert message == TRICKY
    assert logged == dt.datetime(2026, 11, 26, 6, 0)
    assert queued == logged  # delay 0
    assert isinstance(line, int)
    delays = query(out, "SELECT DISTINCT delay FROM records WHERE kind = 'df' AND "
                        "delay IS NOT NULL")
    assert (300.0,) in delays and all(isinstance(delay, float) for (delay,) in delays)
    ((campaign,),) = query(out, "SELECT DISTINCT \"custom_X-Campaign\" FROM records "
                                "WHERE kind = 'b' AND domain = 'example.com'")
    assert campaign == "winter"


def test_zones_and_undecodable_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    source = tmp_path / "acct"
    source.mkdir()
    (source / "d.2026-11-26-060000.tsv").write_bytes(
        HEADER.encode() + b"d\t2026-11-26 07:00:05+01:00\t2026-11-26 07:00:00+01:00\t"
        b"a@example.com\t250 caf\xe9\t\t\n")
    out = tmp_path / "pq"
    run(capsys, "export", "--parquet", str(out), str(source))
    (part,) = out.glob("*.parquet")
    table = pq.read_table(part)
    assert table.schema.field("timeLogged").type.tz == "UTC"
    row = table.to_pylist()[0]
    assert row["timeLogged"] == dt.datetime(2026, 11, 26, 6, 0, 5, tzinfo=dt.UTC)
    assert row["dsnMsg"] == "250 caf\\xe9"
    assert (row["delay"], row["custom_X-Campaign"]) == (None, None)


def test_export_is_incremental_and_never_counts_a_file_twice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "acct" / "delivered"
    (source / "archive").mkdir(parents=True)
    active = source / "d.2026-11-26-060000.tsv"
    active.write_text(HEADER + "d\t2026-11-26 06:00:00\t\ta@example.com\tok\t\t\n",
                      encoding="utf-8")
    out = tmp_path / "pq"

    def export() -> str:
        code, _out, err = run(capsys, "export", "--parquet", str(out), str(tmp_path / "acct"))
        assert code == 0
        return err.strip().removeprefix("mta-logging export: ")

    def count() -> int:
        ((total,),) = query(out, "SELECT count(*) FROM records")
        return int(total)  # type: ignore[call-overload]

    assert export().startswith("1 files exported (1 records), 0 unchanged")
    assert export().startswith("0 files exported (0 records), 1 unchanged")
    with open(active, "a", encoding="utf-8") as file:  # the active file grows
        file.write("d\t2026-11-26 06:01:00\t\tb@example.com\tok\t\t\n")
    assert export().startswith("1 files exported (2 records), 0 unchanged")
    assert count() == 2
    # archived under a collision suffix and compressed: the same records, not new ones
    archived = source / "archive" / "d.2026-11-26-060000.1.tsv.gz"
    with gzip.open(archived, "wb") as gz:
        gz.write(active.read_bytes())
    active.unlink()
    assert export().startswith("1 files exported (2 records), 0 unchanged")
    assert count() == 2
    assert len(list(out.glob("*.parquet"))) == 1
    # a new active file of the same name, with other records: a second part
    active.write_text(HEADER + "d\t2026-11-26 07:00:00\t\tc@example.com\tok\t\t\n",
                      encoding="utf-8")
    assert export().startswith("1 files exported (1 records), 1 unchanged")
    assert count() == 3
    # pruned from the archive: its records stay in the export
    archived.unlink()
    export()
    assert count() == 3
    assert not [name for name in os.listdir(out) if name.startswith(".")]


def test_export_into_a_file_is_an_error(acct: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken"
    taken.write_text("x", encoding="utf-8")
    code, _out, err = run(capsys, "export", "--parquet", str(taken), str(acct))
    assert code == 2
    assert f"--parquet: '{taken}' is not valid; expected a directory (it is a file)" in err


def test_sql_over_accounting_files(acct: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "sql", "SELECT kind, count(*) AS n FROM records "
                          "GROUP BY kind ORDER BY kind", str(acct))
    assert code == 0
    assert out == "kind   n\n----  --\nb      7\nd     15\ndf     8\n"
    _code, out, _err = run(capsys, "sql", "--csv", "SELECT domain, count(*) AS n FROM records "
                           "WHERE kind = 'd' GROUP BY 1 ORDER BY 2 DESC, 1", str(acct))
    assert out.splitlines()[:3] == ["domain,n", "example.com,6", "example.org,4"]
    _code, out, _err = run(capsys, "sql", "--json", "SELECT rcpt, timeLogged FROM records "
                           "WHERE rcpt = 'x1@example.com'", str(acct))
    assert json.loads(out) == {"rcpt": "x1@example.com", "timeLogged": "2026-11-26 08:00:00"}


def test_sql_with_a_cache_and_over_an_export(acct: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    _code, first, _err = run(capsys, "sql", "--cache", str(cache), "SELECT count(*) AS n "
                             "FROM records", str(acct))
    assert (cache / "_exported.json").is_file()
    _code, again, _err = run(capsys, "sql", "SELECT count(*) AS n FROM records", str(cache))
    assert first == again == " n\n--\n30\n"


def test_sql_error_names_the_query(acct: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "sql", "SELECT nope FROM records", str(acct))
    assert code == 2
    assert "SQL: 'SELECT nope FROM records' is not valid; DuckDB says: Binder Error" in err


def test_sql_over_an_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    (tmp_path / "empty").mkdir()
    code, out, _err = run(capsys, "sql", "SELECT count(*) AS n FROM records",
                          str(tmp_path / "empty"))
    assert (code, out) == (0, "n\n-\n0\n")


def readme_recipe(tool: str) -> str:
    """The code block after ``TOOL:`` in the README's section on other tools."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Reading the files with other tools", 1)[1]
    return section.split(f"\n{tool}:\n\n```", 1)[1].split("\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``accounting_files`` in the working directory, written by the library: archived and
    gzipped files, an active one, replies with tabs, newlines, backslashes, quotes and a byte
    that was not UTF-8, a hidden pending file; returns rcpt → dsnMsg as the reader gives it."""
    from test_report import DAY, emit

    from mta_logging.handlers import AccountingFileHandler
    from mta_logging.outcome import Kind
    from mta_logging.report import Reader
    from mta_logging.report.text import visible

    monkeypatch.chdir(tmp_path)
    handler = AccountingFileHandler(Kind.DELIVERED, path=Path("accounting_files"),
                                    archiving=True, compress=True, max_size=0.002)
    for index in range(40):
        emit(handler, Kind.DELIVERED, DAY.replace(minute=index), f"u{index}@Example.COM",
             dsn_msg=TRICKY + "\udce9 \\t" if index % 2 else f"250 ok {index}", vmta="p")
    handler.close()
    handler = AccountingFileHandler(Kind.DELIVERED, path=Path("accounting_files"))
    emit(handler, Kind.DELIVERED, DAY.replace(hour=1), "active@example.com", dsn_msg="a\tb")
    handler.close()
    archive = Path("accounting_files/delivered/archive")
    assert len(list(archive.glob("*.gz"))) >= 2
    shutil.copy(next(archive.glob("*.gz")), archive / ".staged-d%2E2026-11-26-000000%2Etsv")
    expected = {record.rcpt or "": visible(record.dsn_msg or "")
                for record in Reader(["accounting_files"])}
    assert len(expected) == 41
    return expected


def test_readme_duckdb_recipe(written: dict[str, str]) -> None:
    connection = duckdb.connect()
    connection.execute(readme_recipe("DuckDB"))
    rows = connection.execute("SELECT rcpt, dsnMsg FROM records").fetchall()
    assert dict(rows) == written and len(rows) == 41


def test_readme_pandas_recipe(written: dict[str, str]) -> None:
    pytest.importorskip("pandas")
    scope: dict[str, object] = {}
    exec(readme_recipe("pandas"), scope)  # noqa: S102 (the README's own code)
    frame = scope["frame"]
    assert dict(zip(frame["rcpt"], frame["dsnMsg"], strict=True)) == written  # type: ignore[index]
    assert len(frame) == 41  # type: ignore[arg-type]


def test_readme_polars_recipe(written: dict[str, str]) -> None:
    pytest.importorskip("polars")
    scope: dict[str, object] = {}
    exec(readme_recipe("polars"), scope)  # noqa: S102 (the README's own code)
    frame = scope["frame"]
    rows = frame.select("rcpt", "dsnMsg").rows()  # type: ignore[attr-defined]
    assert dict(rows) == written and len(rows) == 41


def test_export_in_worker_processes_writes_the_same_parts(acct: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    run(capsys, "export", "--jobs", "1", "--parquet", str(one), str(acct))
    code, _out, err = run(capsys, "export", "--jobs", "2", "--parquet", str(two), str(acct))
    assert code == 0 and "(30 records)" in err
    assert sorted(p.name for p in one.glob("*.parquet")) == sorted(
        p.name for p in two.glob("*.parquet"))
    for part in one.glob("*.parquet"):
        assert pq.read_table(part).equals(pq.read_table(two / part.name))
    assert err.count("warning:") == 2  # the damaged files' warnings come back from workers


def test_a_file_waiting_for_compression_is_exported_once(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    archive = tmp_path / "acct" / "delivered" / "archive"
    archive.mkdir(parents=True)
    content = HEADER + "d\t2026-11-26 06:00:00\t\ta@example.com\tok\t\t\n"
    pending = archive / ".pending-d%2E2026-11-26-060000%2Etsv"
    pending.write_text(content, encoding="utf-8")
    (archive.parent / ".spare-d%2E123%2E1%2Etsv").write_text(content.replace("a@", "s@"),
                                                        encoding="utf-8")
    out = tmp_path / "pq"
    run(capsys, "export", "--parquet", str(out), str(tmp_path / "acct"))
    with gzip.open(archive / "d.2026-11-26-060000.tsv.gz", "wb") as gz:  # compressed now
        gz.write(content.encode())
    pending.unlink()
    run(capsys, "export", "--parquet", str(out), str(tmp_path / "acct"))
    assert query(out, "SELECT rcpt FROM records") == [("a@example.com",)]
    (part,) = out.glob("*.parquet")
    assert part.name.startswith("d.2026-11-26-060000.tsv.")


def test_every_part_is_on_disk_before_the_manifest_lists_it(
        acct: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pq"
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    with mock.patch("os.fsync", fsync):
        code, _out, _err = run(capsys, "export", "--parquet", str(out), str(acct))
    assert code == 0
    parts = sorted(p.name for p in out.glob("*.parquet"))
    assert parts
    assert "._exported.json.tmp" in synced, synced
    before_manifest = synced[:synced.index("._exported.json.tmp")]
    assert sorted(name for name in before_manifest if name.endswith(".parquet.tmp")) == [
        f".{name}.tmp" for name in parts]
