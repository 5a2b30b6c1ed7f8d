"""File names: what a template renders, the suffix a taken name gets, the pattern of names."""

from __future__ import annotations

import socket
import time

import pytest

from mta_logging import ConfigError
from mta_logging.naming import FileNamer, check_template, hidden_name, unhidden

T = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))
NAMER = FileNamer("{kind}.{time}.{ext}", "d", "tsv")


def test_render_fills_every_placeholder() -> None:
    namer = FileNamer("{kind}_{host}_{pid}_{seq}_{time}.{ext}", "df", "csv")
    host = socket.gethostname().split(".")[0]
    assert namer.render(T, 7, pid=42) == f"df_{host}_42_7_2024-05-01-120000.csv"


def test_suffix_goes_before_the_extension() -> None:
    assert [NAMER.suffixed("d.2024-05-01-120000.tsv", n) for n in (0, 1, 12)] == [
        "d.2024-05-01-120000.tsv", "d.2024-05-01-120000.1.tsv", "d.2024-05-01-120000.12.tsv"]
    assert NAMER.suffixed("d.2024-05-01-120000.tsv.gz", 2) == "d.2024-05-01-120000.2.tsv.gz"
    assert FileNamer("{kind}-{seq}", "d", "tsv").suffixed("d-3", 1) == "d-3.1"


def test_unsuffixed_gives_back_the_name_a_suffix_was_added_to() -> None:
    for name in ("d.2024-05-01-120000.tsv", "d.2024-05-01-120000.tsv.gz"):
        assert [NAMER.unsuffixed(NAMER.suffixed(name, n)) for n in (0, 1, 12)] == [name] * 3
    seq = FileNamer("{kind}-{seq}", "d", "tsv")
    assert [seq.unsuffixed("d-3"), seq.unsuffixed("d-3.1")] == ["d-3", "d-3"]  # 3 is the seq
    assert NAMER.unsuffixed("notes.txt") == "notes.txt"


def test_pattern_matches_what_the_namer_writes_and_nothing_else() -> None:
    pattern = NAMER.pattern()
    for name in ("d.2024-05-01-120000.tsv", "d.2024-05-01-120000.3.tsv",
                 "d.2024-05-01-120000.tsv.gz", "d.2024-05-01-120000.3.tsv.gz"):
        assert pattern.match(name), name
    for name in ("df.2024-05-01-120000.tsv", ".pending-d%2E2024-05-01-120000%2Etsv",
                 "d.2024-05-01-120000.csv", "d.2024-05-01-120000.tsv.tmp", "notes.txt"):
        assert not pattern.match(name), name


@pytest.mark.parametrize("template, complaint", [
    ("{kind}.{date}.{ext}", "unknown placeholder {date}"),
    ("logs/{kind}.{time}", "must be a plain file name"),
    (".{kind}.{time}", "must be a plain file name"),
    ("{kind}.{ext}", "must contain {time}, {seq} or {pid}"),
    ("", "expected a template"),
])
def test_bad_templates_are_named(template: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match="file_name") as caught:
        check_template(template)
    assert complaint in str(caught.value)


def test_the_names_moved_here_are_still_importable_from_archive() -> None:
    from mta_logging import archive

    assert (archive.FileNamer, archive.check_template, archive.DEFAULT_FILE_NAME) == (
        FileNamer, check_template, "{kind}.{time}.{ext}")


@pytest.mark.parametrize("name", ["d.2024-05-01-120000.tsv", "d.2024-05-01-120000.3.tsv",
                                  "tsv.d.4242.jsonl", "100%.2E.%25.x"])
def test_a_hidden_name_has_no_dot_but_its_first_and_gives_back_its_name(name: str) -> None:
    hidden = hidden_name("pending", name)
    assert hidden.startswith(".pending-") and "." not in hidden[1:]
    assert unhidden("pending", hidden) == name
    assert unhidden("staged", hidden) is None


def test_names_that_no_hidden_name_has_are_not_unhidden() -> None:
    for name in (".pending-", ".pending-d.X.tsv", ".pending-d%2Fx", "pending-d", ".d.X.pending"):
        assert unhidden("pending", name) is None, name
    assert hidden_name("pending", "d.2024-05-01-120000.tsv") == (
        ".pending-d%2E2024-05-01-120000%2Etsv")
