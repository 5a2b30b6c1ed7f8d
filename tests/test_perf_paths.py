"""The fast paths of the write path give exactly what the plain, value-by-value way gives.

Behaviour only: nothing here measures time (benchmarks/ does that).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pythonjsonlogger.json import JsonFormatter

import mta_logging
from mta_logging import AccountingJsonFormatter, AccountingLogger, Kind, Outcome
from mta_logging.fields import TimeText, compile_fields
from mta_logging.formatters import escape_csv, escape_tsv, join_values

T0 = 1_764_138_000.0  # 2025-11-26 06:20:00 UTC

any_text = st.text(st.characters(codec=None, categories=None), max_size=30) | st.sampled_from(
    ["", "\\", "\t", "\n", "\r", '"', ",", ";", "a\udcffb", "\ud800", "é", "plain"])
maybe_text = st.none() | any_text


def escaped_one_by_one(values: list[str | None], separator: str, placeholder: str) -> str:
    """The definition: every value escaped on its own, then joined."""
    def escape(value: str) -> str:
        return escape_tsv(value) if separator == "\t" else escape_csv(value, separator)

    line = separator.join(placeholder if v is None else escape(v) for v in values)
    return line if line or separator == "\t" else '""'


@given(st.lists(maybe_text, max_size=8), st.sampled_from(["\t", ",", ";", "|"]),
       st.sampled_from(["", "-", "undefined", '"', "é"]))
def test_joining_a_line_equals_escaping_value_by_value(
        values: list[str | None], separator: str, placeholder: str) -> None:
    assert join_values(values, separator, placeholder) == escaped_one_by_one(
        values, separator, placeholder)


def test_join_values_takes_any_iterable() -> None:
    assert join_values((v for v in ["a\tb", None, "c"]), "\t", "-") == "a\\tb\t-\tc"


def test_logged_and_queued_times_in_different_seconds_are_both_right() -> None:
    extract = compile_fields(["timeLogged", "timeQueued"], TimeText(utc=True))
    for step in range(3):  # alternate, so that neither time can be served from the other's cache
        outcome = Outcome(kind=Kind.DELIVERED, rcpt="a@example.com", time_queued=T0 - 60 - step)
        assert extract(outcome, T0 + step) == [
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T0 + step)),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T0 - 60 - step)),
        ]


def test_header_names_are_values_not_code() -> None:
    odd = 'X-Odd"); import os #'
    extract = compile_fields(["rcpt", "custom_" + odd, "custom_x-campaign"])
    outcome = Outcome(kind=Kind.DELIVERED, rcpt="a@example.com",
                      headers={odd: "yes", "X-Campaign": "spring"})
    assert extract(outcome, T0) == ["a@example.com", "yes", "spring"]


def test_values_that_are_not_text_are_written_as_text() -> None:
    extract = compile_fields(["srcIp", "jobId", "delay", "type"])
    outcome = Outcome(kind=Kind.DEFERRED, rcpt="a@example.com", src_ip=3232235777,  # type: ignore[arg-type]
                      job_id=None, delay=2.5)
    assert extract(outcome, T0) == ["3232235777", None, "2.5", "df"]


def test_kind_attributes() -> None:
    assert [(k.value, k.level, k.directory) for k in Kind] == [
        ("d", logging.INFO, "delivered"), ("df", logging.WARNING, "deferred"),
        ("b", logging.ERROR, "bounce")]
    assert Kind("df") is Kind.DEFERRED is Kind.parse("t")


def test_outcome_puts_every_argument_in_its_own_field() -> None:
    headers, extra = {"X-Campaign": "spring"}, {"app": 1}
    built = AccountingLogger.outcome(
        "b", "rcpt@example.com", time_queued=1.0, src_mta="src_mta", src_ip="src_ip",
        dest_ip="dest_ip", vmta="vmta", job_id=7,  # type: ignore[arg-type] # made text
        dsn_status="dsn_status", dsn_msg="dsn_msg", delay=2.0, bounce_cat="bounce_cat",
        headers=headers, extra=extra)
    assert built == Outcome(
        kind=Kind.BOUNCE, rcpt="rcpt@example.com", time_queued=1.0, src_mta="src_mta",
        src_ip="src_ip", dest_ip="dest_ip", vmta="vmta", job_id="7", dsn_status="dsn_status",
        dsn_msg="dsn_msg", delay=2.0, bounce_cat="bounce_cat", headers=headers, extra=extra)
    bare = AccountingLogger.outcome(Kind.DELIVERED, "a@example.com")
    assert (bare.headers, bare.extra) == ({}, {}) and bare.headers is not bare.extra


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


class TaggedEncoder(json.JSONEncoder):
    def default(self, o: object) -> object:
        return {"point": o.x} if isinstance(o, Point) else super().default(o)


def json_record(outcome: Outcome) -> logging.LogRecord:
    record = logging.LogRecord("mta.accounting", logging.INFO, __file__, 1, "x", None, None)
    record.created = T0
    record.outcome = outcome
    return record


@pytest.mark.parametrize("options", [
    {},
    {"json_ensure_ascii": False},
    {"static_fields": {"where": Point(3)}, "json_default": lambda o: f"<{o.x}>"},
    {"static_fields": {"where": Point(3)}, "json_encoder": TaggedEncoder},
    {"json_serializer": lambda data, **kw: json.dumps(data, sort_keys=True, **kw)},
    {"prefix": "acct: ", "rename_fields": {"rcpt": "to"}},
])
def test_json_lines_are_what_python_json_logger_would_write(options: dict[str, Any]) -> None:
    outcome = Outcome(kind=Kind.DELIVERED, rcpt="zoë@example.com", dsn_msg='250 "ok"\n')
    ours = AccountingJsonFormatter(kind="delivered", utc=True, **options)
    plain = AccountingJsonFormatter(kind="delivered", utc=True, **options)
    plain.jsonify_log_record = functools.partial(  # type: ignore[method-assign]
        JsonFormatter.jsonify_log_record, plain)
    for _ in range(2):  # the second record uses the encoder made for the first
        assert ours.format(json_record(outcome)) == plain.format(json_record(outcome))


def test_json_options_changed_after_construction_are_used() -> None:
    formatter = AccountingJsonFormatter(kind="delivered", utc=True)
    outcome = Outcome(kind=Kind.DELIVERED, rcpt="zoë@example.com")
    assert "zo\\u00eb" in formatter.format(json_record(outcome))
    formatter.json_ensure_ascii = False
    assert "zoë" in formatter.format(json_record(outcome))


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[Keep]:
    logger = logging.getLogger("test.perf.paths")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)


def test_record_reads_like_a_log_line(kept: Keep) -> None:
    AccountingLogger("test.perf.paths").delivered("bob@example.com", job_id=42,
                                                  dsn_msg="250 2.0.0 OK")
    (record,) = kept.records
    assert record.getMessage() == "delivered bob@example.com job 42: 250 2.0.0 OK"
    assert record.outcome.job_id == "42" and record.levelno == logging.INFO  # type: ignore[attr-defined]
    assert (record.pathname, record.lineno) == ("(accounting)", 0)


def test_written_line_has_every_value_escaped(tmp_path: Path) -> None:
    mta_logging.configure({"path": str(tmp_path), "utc": True, "archiving": True})
    try:
        AccountingLogger().delivered("a@example.com", dsn_msg="550\tforged\nd\tx", job_id="1")
        AccountingLogger().delivered("b@example.com", dsn_msg="250 OK", job_id="2")
    finally:
        logger = logging.getLogger("mta.accounting")
        handlers = list(logger.handlers)
        (active,) = [p for p in (tmp_path / "delivered").iterdir() if p.is_file()]
        lines = active.read_text(encoding="utf-8").splitlines()
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
    assert [line.split("\t")[9] for line in lines[1:]] == ["550\\tforged\\nd\\tx", "250 OK"]
