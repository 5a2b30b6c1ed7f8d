"""The fast paths of the write path give exactly what the plain, value-by-value way gives.

Behaviour only: nothing here measures time (benchmarks/ does that).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pythonjsonlogger.json import JsonFormatter

import mta_logging
from mta_logging import (
    AccountingFormatter,
    AccountingJsonFormatter,
    AccountingLogger,
    Kind,
    Outcome,
)
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
    assert [(k.value, k.code, k.level, k.directory, k.label) for k in Kind] == [
        ("d", "d", logging.INFO, "delivered", "delivered"),
        ("df", "df", logging.WARNING, "deferred", "deferred"),
        ("b", "b", logging.ERROR, "bounce", "bounced")]
    assert Kind("df") is Kind.DEFERRED is Kind.parse("t")
    assert [Kind.find(text) for text in (" Bounced ", "bounce", "b", "t", "x", "", None)] == [
        Kind.BOUNCE, Kind.BOUNCE, Kind.BOUNCE, Kind.DEFERRED, None, None, None]


def test_outcome_puts_every_argument_in_its_own_field() -> None:
    headers, extra = {"X-Campaign": "spring"}, {"app": 1}
    built = AccountingLogger.outcome(
        "b", "rcpt@example.com", time_queued=1.0, src_mta="src_mta", src_ip="src_ip",
        dest_ip="dest_ip", vmta="vmta", job_id=7,  # made text
        dsn_status="dsn_status", dsn_msg="dsn_msg", delay=2.0, bounce_cat="bounce_cat",
        headers=headers, extra=extra)
    assert built == Outcome(
        kind=Kind.BOUNCE, rcpt="rcpt@example.com", time_queued=1.0, src_mta="src_mta",
        src_ip="src_ip", dest_ip="dest_ip", vmta="vmta", job_id="7", dsn_status="dsn_status",
        dsn_msg="dsn_msg", delay=2.0, bounce_cat="bounce_cat", headers=headers, extra=extra)
    assert list(vars(built)) == [f.name for f in dataclasses.fields(Outcome)]  # in field order
    bare = AccountingLogger.outcome(Kind.DELIVERED, "a@example.com")
    assert (bare.headers, bare.extra) == ({}, {}) and bare.headers is not bare.extra
    assert vars(bare) == vars(Outcome(Kind.DELIVERED, "a@example.com"))


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


field_value = maybe_text | st.integers(-5, 5)


@given(st.lists(st.sampled_from(
           ["type", "timeLogged", "timeQueued", "rcpt", "srcMta", "srcIp", "destIp", "vmta",
            "jobId", "dsnStatus", "dsnMsg", "delay", "bounceCat", "custom_X-Tag"]),
           min_size=1, max_size=8),
       st.fixed_dictionaries({
           "src_mta": field_value, "src_ip": field_value, "vmta": field_value,
           "dsn_msg": field_value, "dsn_status": field_value, "bounce_cat": field_value,
           "time_queued": st.none() | st.sampled_from([T0 - 5, T0, 1_000_000_000, T0 + 0.5]),
           "delay": st.none() | st.sampled_from([0, 2.5, 300])}),
       st.one_of(st.none(), any_text), any_text.filter(lambda t: t != ""),
       st.sampled_from(["\t", ",", ";", "|"]), st.sampled_from(["", "-", "undefined", "é"]))
def test_format_is_the_values_escaped_one_by_one(
        fields: list[str], values: dict[str, Any], tag: str | None, rcpt: str, separator: str,
        placeholder: str) -> None:
    """The formatter joins the values as they are when none needs escaping; whatever the
    values, the line is what escaping each value on its own gives."""
    if separator in placeholder:
        placeholder = ""
    formatter = mta_logging.AccountingFormatter(fields, separator=separator,
                                                placeholder=placeholder, utc=True)
    outcome = Outcome(Kind.BOUNCE, rcpt, headers={} if tag is None else {"x-tag": tag},
                      **values)
    record = json_record(outcome)
    expected = escaped_one_by_one(formatter.values(record), separator, placeholder)
    for _ in range(2):  # the second time from the time caches
        assert formatter.format(record) == expected


def test_a_record_of_ours_is_the_record_makerecord_makes(kept: Keep) -> None:
    logger = logging.getLogger("test.perf.paths")
    outcome = AccountingLogger("test.perf.paths").deferred(
        "bob@example.com", job_id="7", dsn_msg="451 4.7.1 later", delay=60)
    ours = kept.records[0]
    theirs = logger.makeRecord(
        logger.name, logging.WARNING, "(accounting)", 0, "%s %s job %s: %s",
        ("deferred", "bob@example.com", "7", "451 4.7.1 later"), None,
        extra={"outcome": outcome})
    assert type(ours) is logging.LogRecord
    if sys.version_info[:2] == (3, 11):  # the Python whose LogRecord the fast path reproduces
        assert mta_logging.logger._TEMPLATE is not None
    formatted = {"message", "asctime"}  # added by a Formatter that formatted the record
    assert [k for k in vars(ours) if k not in formatted] == list(vars(theirs))  # same order
    timed = {"created", "msecs", "relativeCreated"} | formatted
    assert {k: v for k, v in vars(ours).items() if k not in timed} == {
        k: v for k, v in vars(theirs).items() if k not in timed}
    assert theirs.created - 5 < ours.created <= theirs.created
    assert ours.msecs == int((ours.created - int(ours.created)) * 1000)
    assert ours.relativeCreated == pytest.approx(
        (ours.created - logging._startTime) * 1000)  # type: ignore[attr-defined]


def test_records_name_the_thread_that_made_them(kept: Keep) -> None:
    import threading

    thread = threading.Thread(
        target=lambda: AccountingLogger("test.perf.paths").delivered("a@example.com"),
        name="sender-7")
    thread.start()
    thread.join()
    (record,) = kept.records
    assert (record.threadName, record.thread) == ("sender-7", thread.ident)


def test_a_record_factory_of_the_application_is_used(kept: Keep) -> None:
    class Tagged(logging.LogRecord):
        pass

    logging.setLogRecordFactory(Tagged)
    try:
        AccountingLogger("test.perf.paths").delivered("a@example.com")
    finally:
        logging.setLogRecordFactory(logging.LogRecord)
    (record,) = kept.records
    assert type(record) is Tagged
    assert record.outcome.rcpt == "a@example.com"  # type: ignore[attr-defined]


def test_a_makerecord_of_the_application_is_used(
        kept: Keep, monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("test.perf.paths")
    made: list[str] = []

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(args[0])
        return logging.Logger.makeRecord(logger, *args, **kwargs)

    monkeypatch.setattr(logger, "makeRecord", make_record)
    AccountingLogger(logger).bounced("a@example.com", dsn_msg="550 5.1.1 no such user")
    assert made == ["test.perf.paths"]
    (record,) = kept.records
    assert record.outcome.bounce_cat == "bad-mailbox"  # type: ignore[attr-defined]


def test_a_keyword_that_is_not_a_field_is_named() -> None:
    acct = AccountingLogger("test.perf.paths")
    with pytest.raises(TypeError, match="unexpected keyword argument 'dsn_mesage'"):
        acct.delivered("a@example.com", dsn_mesage="250 OK")  # type: ignore[call-arg]


def test_outcomes_stay_frozen_values() -> None:
    import copy
    import dataclasses
    import pickle

    outcome = Outcome(Kind.DELIVERED, "a@example.com", job_id="1", headers={"X-A": "b"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.rcpt = "b@example.com"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del outcome.job_id
    assert pickle.loads(pickle.dumps(outcome)) == outcome == copy.deepcopy(outcome)
    changed = dataclasses.replace(outcome, job_id="2")
    assert (changed.job_id, changed.rcpt, changed.headers) == ("2", "a@example.com", {"X-A": "b"})
    assert repr(Outcome(Kind.BOUNCE, "c@example.com")).startswith(
        "Outcome(kind=<Kind.BOUNCE: 'b'>, rcpt='c@example.com', time_queued=None")
    assert [f.name for f in dataclasses.fields(Outcome)][:3] == ["kind", "rcpt", "time_queued"]
    assert Outcome(Kind.DELIVERED, "a@example.com").headers is not Outcome(
        Kind.DELIVERED, "a@example.com").headers


@given(st.fixed_dictionaries({
           "src_mta": field_value, "src_ip": field_value, "vmta": field_value,
           "dsn_msg": field_value, "bounce_cat": field_value,
           "time_queued": st.none() | st.sampled_from([T0 - 5, 1_000_000_000])}),
       any_text.filter(lambda t: t != ""), st.one_of(st.none(), any_text), st.booleans(),
       st.sampled_from(["", "acct: "]))
def test_json_objects_written_directly_are_what_json_dumps_writes(
        values: dict[str, Any], rcpt: str, tag: str | None, ascii_only: bool,
        prefix: str) -> None:
    fields = ["type", "timeLogged", "timeQueued", "rcpt", "srcMta", "srcIp", "vmta", "dsnMsg",
              "delay", "bounceCat", "custom_X-Tag"]
    outcome = Outcome(Kind.BOUNCE, rcpt, headers={} if tag is None else {"x-tag": tag},
                      **values)
    ours = AccountingJsonFormatter(fields, utc=True, json_ensure_ascii=ascii_only,
                                   prefix=prefix)
    plain = AccountingJsonFormatter(fields, utc=True, json_ensure_ascii=ascii_only,
                                    prefix=prefix)
    plain.jsonify_log_record = functools.partial(  # type: ignore[method-assign]
        JsonFormatter.jsonify_log_record, plain)
    assert ours.format(json_record(outcome)) == plain.format(json_record(outcome))


def test_json_with_a_field_twice_is_what_json_dumps_writes() -> None:
    formatter = AccountingJsonFormatter(["rcpt", "jobId", "rcpt"])
    outcome = Outcome(Kind.DELIVERED, "a@example.com", job_id="9")
    assert formatter.format(json_record(outcome)) == '{"rcpt": "a@example.com", "jobId": "9"}'


# -- what the fast paths must still honour (from a review of them) ----------------------------

def test_a_subclass_outcome_method_is_used_by_delivered(kept: Keep) -> None:
    class Pooled(AccountingLogger):
        @staticmethod
        def outcome(kind: Kind | str, rcpt: str, **fields: Any) -> Outcome:
            fields["vmta"] = fields.get("vmta") or "pool-a"
            return AccountingLogger.outcome(kind, rcpt, **fields)

    Pooled("test.perf.paths").delivered("a@example.com", job_id="1")
    assert kept.records[0].outcome.vmta == "pool-a"  # type: ignore[attr-defined]


def test_records_take_the_time_from_time_time_at_each_call(
        kept: Keep, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: T0 + 0.25)
    AccountingLogger("test.perf.paths").delivered("a@example.com")
    (record,) = kept.records
    assert (record.created, record.msecs) == (T0 + 0.25, 250.0)


def test_separator_and_placeholder_changed_later_are_used_for_every_line() -> None:
    formatter = mta_logging.AccountingFormatter(["type", "rcpt", "vmta", "dsnMsg"],
                                                separator=",")
    formatter.placeholder = "-"
    plain = Outcome(Kind.DELIVERED, "a@example.com")
    needs_quoting = Outcome(Kind.DELIVERED, "a@example.com", dsn_msg='250 "ok"')
    assert formatter.format(json_record(plain)) == "d,a@example.com,-,-"
    assert formatter.format(json_record(needs_quoting)) == 'd,a@example.com,-,"250 ""ok"""'
    formatter.separator = ";"
    assert formatter.format(json_record(plain)) == "d;a@example.com;-;-"
    with pytest.raises(mta_logging.ConfigError, match="must not contain the separator"):
        formatter.placeholder = "a;b"
    assert formatter.format(json_record(plain)) == "d;a@example.com;-;-"


def test_a_json_hook_set_on_the_class_later_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tagged(AccountingJsonFormatter):
        pass

    formatter = Tagged(["rcpt"])
    record = json_record(Outcome(Kind.DELIVERED, "a@example.com"))
    assert formatter.format(record) == '{"rcpt": "a@example.com"}'
    monkeypatch.setattr(Tagged, "process_log_record",
                        lambda self, data: {**data, "app": "mailer"}, raising=False)
    assert formatter.format(record) == '{"rcpt": "a@example.com", "app": "mailer"}'


def test_the_second_before_the_epoch_is_not_mistaken_for_the_empty_cache() -> None:
    assert TimeText(utc=True).text(-1.5) == "1969-12-31 23:59:59"


@given(st.lists(st.floats(min_value=-4e9, max_value=4e9) | st.sampled_from(
    [0.0, -0.5, 0.5, 1.0, 0.999999, -1.0, T0, T0 + 0.999999, T0 + 1, T0 - 1e-6]),
    min_size=1, max_size=20), st.booleans())
def test_time_text_is_strftime_of_the_whole_second(stamps: list[float], utc: bool) -> None:
    """The cache of the last second gives what strftime gives, in any order of timestamps."""
    times = TimeText(utc=utc)
    convert = time.gmtime if utc else time.localtime
    for stamp in stamps:
        assert times.text(stamp) == time.strftime("%Y-%m-%d %H:%M:%S", convert(int(stamp)))


def test_the_type_of_an_outcome_whose_kind_is_another_enum_is_its_value() -> None:
    import enum

    class Code(enum.Enum):
        DELIVERED = "d"

    outcome = Outcome(Code.DELIVERED, "a@example.com")  # type: ignore[arg-type]
    record = json_record(outcome)
    assert AccountingFormatter(fields="type,rcpt").format(record) == "d\ta@example.com"
