"""mta-logging grep --rcpt / --rcpt-like, and the byte-level pre-filter under them.

The pre-filter looks for the address in blocks of raw (decompressed) bytes and splits only the
lines that hold it; the answers must be exactly those of splitting every line.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mta_logging.cli import main
from mta_logging.errors import ConfigError
from mta_logging.report import Filters, Reader

HEADER = "type\ttimeLogged\trcpt\tdsnMsg\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Bob's records among others, in a plain file, a .gz, a CSV and JSON lines."""
    lines = []
    for index in range(3000):
        rcpt = ["bob@Example.COM", "other@example.com", "bob@example.org",
                "BOB@example.com"][index % 4]
        # the address also appears in another field: a line is split only to be sure
        lines.append(f"d\t2026-11-26 06:{index % 60:02d}:00\t{rcpt}\t250 ok for bob@example.net\n")
    (tmp_path / "d.2026-11-26-060000.tsv").write_text(HEADER + "".join(lines), encoding="utf-8")
    with gzip.open(tmp_path / "d.2026-11-26-070000.tsv.gz", "wt", encoding="utf-8") as gz:
        gz.write(HEADER + "".join(lines[:8]))
    (tmp_path / "d.2026-11-26-080000.tsv").write_text(
        HEADER + "d\t2026-11-26 08:00:00\t<bob@example.com>\t\xe9\nd\t2026-11-26 08:01:00\t"
        "bob@example.com.\tlast, no line end", encoding="utf-8")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "d.2026-11-26-090000.csv").write_text(
        'type,timeLogged,rcpt,dsnMsg\nd,2026-11-26 09:00:00,bob@example.com,"250 ok, sent"\n'
        "d,2026-11-26 09:01:00,carol@example.com,250 ok\n", encoding="utf-8")
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "d.2026-11-26-100000.jsonl").write_text(
        json.dumps({"type": "d", "timeLogged": "2026-11-26 10:00:00", "rcpt": "bob@example.com"})
        + "\n" + json.dumps({"type": "d", "timeLogged": "2026-11-26 10:01:00",
                             "rcpt": "dave@example.com"}) + "\n", encoding="utf-8")
    return tmp_path


def every_line(files: Path, filters: Filters) -> list[tuple[str, int, str | None]]:
    """The answer without the pre-filter: every record read, then the filter applied."""
    return [(record.path, record.line, record.rcpt) for record in Reader([files])
            if filters.matches(record)]


@pytest.mark.parametrize("options", [
    {"rcpts": ["bob@example.com"]},
    {"rcpts": ["BOB@EXAMPLE.COM"]},
    {"rcpts": ["bob@example.com", "carol@example.com"]},
    {"rcpt_like": ["bob@%"]},
    {"rcpt_like": ["%@example.c_m"]},
    {"rcpt_like": ["%"]},
])
def test_prefilter_finds_exactly_what_splitting_every_line_finds(
        files: Path, options: dict[str, list[str]]) -> None:
    filters = Filters.build(**options)  # type: ignore[arg-type]
    reader = Reader([files], filters=filters)
    found = [(record.path, record.line, record.rcpt) for record in reader]
    assert found == every_line(files, filters)
    plain = Reader([files])
    assert sum(1 for _record in plain) == 3000 + 8 + 2 + 2 + 2
    assert reader.stats.lines == plain.stats.lines  # every line counted, split or not
    if filters.needles():
        assert reader.stats.passed_over > 0


def test_rcpt_matches_the_local_part_exactly_and_the_domain_in_any_case(
        files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "grep", "--fields", "rcpt", "--no-header", "--rcpt",
                          "bob@EXAMPLE.com", str(files))
    assert code == 0
    lines = out.splitlines()
    assert set(lines) == {"bob@Example.COM", "<bob@example.com>", "bob@example.com.",
                          "bob@example.com"}
    assert lines.count("bob@Example.COM") == 750 + 2  # 3000/4 in the .tsv, 2 of 8 in the .gz
    assert "BOB@example.com" not in lines


def test_rcpt_like_ignores_case(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "grep", "--count", "--rcpt-like", "bob@example.%", str(files))
    assert code == 0
    # bob@Example.COM, bob@example.org, BOB@example.com: 3 of 4 lines of the .tsv, 6 of 8 of
    # the .gz; "bob@example.com." (not "<bob@example.com>": the pattern is the whole value),
    # the CSV's and the JSON file's
    assert int(out) == 2250 + 6 + 1 + 1 + 1


def test_rcpt_that_matches_nothing_exits_1(files: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "grep", "--count", "--rcpt", "nobody@example.com", str(files))
    assert (code, out) == (1, "0\n")


def test_rcpt_without_local_part_is_an_error(files: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "grep", "--rcpt", "@example.com", str(files))
    assert code == 2
    assert "rcpt: '@example.com' is not valid; expected an address such as bob@example.com" \
        in err


def test_addresses_with_escaped_characters_are_still_found(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text(HEADER + 'd\t2026-11-26 06:00:00\t"a\\\\b"@example.com\tx\n',
                    encoding="utf-8")
    filters = Filters.build(rcpts=['"a\\b"@example.com'])
    assert filters.needles() == ()  # the file holds it escaped: no byte-level shortcut
    assert [record.rcpt for record in Reader([path], filters=filters)] == ['"a\\b"@example.com']


def test_normalized_address() -> None:
    assert Filters.build(rcpts=["<Bob@Example.COM.>"]).rcpts == frozenset({"Bob@example.com"})
    with pytest.raises(ConfigError):
        Filters.build(rcpts=["bob"])


@pytest.mark.parametrize("style", [[], ["--json"], ["--count"], ["--no-header"]])
def test_worker_processes_print_the_same_in_the_same_order(
        files: Path, style: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _code, one, _err = run(capsys, "grep", "--jobs", "1", *style, "--rcpt-like", "bob@%",
                           str(files))
    code, two, _err = run(capsys, "grep", "--jobs", "2", *style, "--rcpt-like", "bob@%",
                          str(files))
    assert code == 0
    assert two == one
    assert len(one.splitlines()) > 1000 if style != ["--count"] else int(one) > 1000
