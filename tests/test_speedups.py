"""Every speed trick gives exactly what the plain version beside it gives, and each is used
only where it was verified: both ways are tested, the tricks on (this Python counted as
verified) and off (``speedups.VERIFIED_PYTHONS`` emptied, as on any other Python).

Behaviour only: nothing here measures time (benchmarks/ does that).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import logging
import os
import pickle
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pythonjsonlogger.json import JsonFormatter

from mta_logging import (
    AccountingFormatter,
    AccountingJsonFormatter,
    AccountingLogger,
    Kind,
    Outcome,
    fields,
    speedups,
)
from mta_logging.fields import FIELD_NAMES, TimeText
from mta_logging.formatters import escape_csv, escape_tsv
from mta_logging.outcome import DETAIL_NAMES

T0 = 1_764_138_000.0  # 2025-11-26 06:20:00 UTC
BOTH = pytest.mark.parametrize("on", [True, False], ids=["speedups", "plain"])

any_text = st.text(st.characters(codec=None, categories=None), max_size=30) | st.sampled_from(
    ["", "\\", "\t", "\n", "\r", '"', ",", ";", "a\udcffb", "\ud800", "é", "plain"])
maybe_text = st.none() | any_text
field_value = maybe_text | st.integers(-5, 5)
some_fields = st.lists(st.sampled_from([*FIELD_NAMES, "custom_X-Tag", "header_x-TAG"]),
                       min_size=1, max_size=8)
some_time = st.none() | st.sampled_from([T0 - 5, T0, 1_000_000_000, T0 + 0.5])
outcome_values = st.fixed_dictionaries({
    "src_mta": field_value, "src_ip": field_value, "vmta": field_value,
    "dsn_msg": field_value | st.sampled_from(["550 5.1.1 no", "421-4.4.2 wait"]),
    "dsn_status": field_value, "bounce_cat": field_value,
    "time_queued": some_time,
    "delay": st.none() | st.sampled_from([0, 2.5, 300]),
    "orig": field_value, "orcpt": field_value, "env_id": field_value,
    "dsn_action": field_value, "dsn_diag": field_value, "dsn_mta": field_value,
    "size": st.none() | st.integers(0, 10**9), "tls_protocol": field_value,
    "tls_cipher": field_value, "time_first_attempt": some_time,
    "event_id": any_text,  # a given id: a generated one differs at each call (tested apart)
    "rcv_ip": field_value, "rcv_helo": field_value, "rcv_auth_user": field_value,
    "rcv_tls_protocol": field_value, "rcv_tls_cipher": field_value})


@contextlib.contextmanager
def tricks(on: bool) -> Iterator[None]:
    """Loggers and formatters made inside use the speedups (``on``) or the plain versions."""
    verified = frozenset({sys.version_info[:2]}) if on else frozenset()
    with mock.patch.object(speedups, "VERIFIED_PYTHONS", verified):
        yield


def test_the_tricks_are_on_only_where_verified() -> None:
    assert {(3, 11)} == speedups.VERIFIED_PYTHONS
    assert speedups.enabled() is (sys.version_info[:2] == (3, 11))
    with tricks(False):
        assert not speedups.enabled()
        assert AccountingLogger("test.speedups")._make_record is speedups.plain_record


def record_of(outcome: Outcome) -> logging.LogRecord:
    record = logging.LogRecord("mta.accounting", logging.INFO, __file__, 1, "x", None, None)
    record.created = T0
    record.outcome = outcome
    return record


# == Outcome.__init__ in one step =================================================================

@pytest.mark.parametrize("arguments", [
    ((Kind.DELIVERED, "a@example.com"), {}),
    ((Kind.BOUNCE, "b@example.com", 1.5, "mta", "192.0.2.1", "192.0.2.2", "v", "7", "5.1.1",
      "550 no", 2.5, "bad-mailbox", {"X-A": "b"}, {"app": 1}), {}),
    ((Kind.DEFERRED,), {"rcpt": "c@example.com", "delay": 60, "extra": {"k": "v"}}),
    ((Kind.RECEIVED, "d@example.com"), {"size": 0, "orig": "", "rcv_helo": "h", "orcpt": None}),
])
def test_one_step_init_sets_what_the_dataclass_init_sets(
        arguments: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
    args, kwargs = arguments
    fast, plain = object.__new__(Outcome), object.__new__(Outcome)
    speedups.one_step_init(Outcome, DETAIL_NAMES)(fast, *args, **kwargs)
    speedups.DATACLASS_INIT(plain, *args, **kwargs)
    # the same values; a detail left at None is the class's attribute, not in the dict
    assert list(vars(fast).items()) == [(name, value) for name, value in vars(plain).items()
                                        if name not in DETAIL_NAMES or value is not None]
    assert fast == plain and repr(fast) == repr(plain)
    assert pickle.loads(pickle.dumps(fast)) == plain
    every = object.__new__(Outcome)
    speedups.one_step_init(Outcome)(every, *args, **kwargs)  # nothing optional: every field
    assert list(vars(every).items()) == list(vars(plain).items())
    with pytest.raises(TypeError, match="unexpected keyword argument 'rcpt_to'"):
        speedups.one_step_init(Outcome)(object.__new__(Outcome), Kind.DELIVERED, rcpt_to="x")


def test_an_optional_field_must_default_to_none() -> None:
    with pytest.raises(ValueError, match="Outcome.kind: an optional field defaults to None"):
        speedups.one_step_init(Outcome, ["kind"])


def test_each_outcome_gets_its_own_default_mappings() -> None:
    first, second = (Outcome(Kind.DELIVERED, "a@example.com") for _ in range(2))
    assert first.headers is not second.headers and first.extra is not second.extra


@BOTH
def test_the_outcome_init_is_chosen_only_where_verified(on: bool) -> None:
    with tricks(on):
        init = speedups.outcome_init_for()
    assert (init is speedups.DATACLASS_INIT) is not on
    assert Outcome.__init__.__qualname__ == "Outcome.__init__"
    assert (Outcome.__init__ is speedups.DATACLASS_INIT) is not speedups.enabled()


# == LogRecord from a template ====================================================================

class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[Keep]:
    logger = logging.getLogger("test.speedups")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)


def test_the_template_is_used_on_the_verified_python() -> None:
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the LogRecord template is verified on Python 3.11")
    assert speedups._TEMPLATE is not None
    assert AccountingLogger("test.speedups")._make_record is speedups.template_record


@BOTH
def test_a_record_of_ours_is_the_record_makerecord_makes(kept: Keep, on: bool) -> None:
    logger = logging.getLogger("test.speedups")
    with tricks(on):
        acct = AccountingLogger(logger)
    outcome = acct.deferred("bob@example.com", job_id="7", dsn_msg="451 4.7.1 later", delay=60)
    (ours,) = kept.records
    theirs = logger.makeRecord(
        logger.name, logging.WARNING, "(accounting)", 0, "%s %s job %s: %s",
        ("deferred", "bob@example.com", "7", "451 4.7.1 later"), None,
        extra={"outcome": outcome})
    assert type(ours) is logging.LogRecord
    formatted = {"message", "asctime"}  # added by a Formatter that formatted the record
    assert [k for k in vars(ours) if k not in formatted] == list(vars(theirs))  # same order
    timed = {"created", "msecs", "relativeCreated"} | formatted
    assert {k: v for k, v in vars(ours).items() if k not in timed} == {
        k: v for k, v in vars(theirs).items() if k not in timed}
    assert theirs.created - 5 < ours.created <= theirs.created
    assert ours.msecs == int((ours.created - int(ours.created)) * 1000)
    assert ours.relativeCreated == pytest.approx(
        (ours.created - logging._startTime) * 1000)  # type: ignore[attr-defined]
    assert ours.getMessage() == "deferred bob@example.com job 7: 451 4.7.1 later"


@BOTH
def test_record_reads_like_a_log_line(kept: Keep, on: bool) -> None:
    with tricks(on):
        acct = AccountingLogger("test.speedups")
    acct.delivered("bob@example.com", job_id=42, dsn_msg="250 2.0.0 OK")
    (record,) = kept.records
    assert record.getMessage() == "delivered bob@example.com job 42: 250 2.0.0 OK"
    assert record.outcome.job_id == "42" and record.levelno == logging.INFO  # type: ignore[attr-defined]
    assert (record.pathname, record.lineno) == ("(accounting)", 0)


@BOTH
def test_a_subclass_outcome_method_is_used_by_delivered(kept: Keep, on: bool) -> None:
    class Pooled(AccountingLogger):
        @staticmethod
        def outcome(kind: Kind | str, rcpt: str, **fields: Any) -> Outcome:
            fields["vmta"] = fields.get("vmta") or "pool-a"
            return AccountingLogger.outcome(kind, rcpt, **fields)

    with tricks(on):
        acct = Pooled("test.speedups")
    acct.delivered("a@example.com", job_id="1")
    assert kept.records[0].outcome.vmta == "pool-a"  # type: ignore[attr-defined]


@pytest.mark.parametrize("switches", [
    {"logThreads": False}, {"logProcesses": False}, {"logMultiprocessing": False}, {},
])
def test_template_record_is_plain_record(switches: dict[str, bool],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in switches.items():
        monkeypatch.setattr(logging, name, value)
    monkeypatch.setattr(time, "time", lambda: T0 + 0.125)
    logger = logging.getLogger("test.speedups")
    outcome = Outcome(Kind.BOUNCE, "a@example.com")
    args = ("bounce", "a@example.com", "-", "-")
    fast = speedups.template_record(logger, logging.ERROR, args, outcome)
    plain = speedups.plain_record(logger, logging.ERROR, args, outcome)
    assert list(vars(fast).items()) == list(vars(plain).items())



@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_records_its_own_process_id() -> None:
    logger = logging.getLogger("test.speedups")
    outcome = Outcome(Kind.BOUNCE, "a@example.com")
    args = ("bounce", "a@example.com", "-", "-")
    assert speedups.template_record(logger, logging.ERROR, args, outcome).process == os.getpid()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            record = speedups.template_record(logger, logging.ERROR, args, outcome)
            os.write(writer, f"{record.process} {os.getpid()}".encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as answer:
        recorded, actual = answer.read().split()
    os.waitpid(child, 0)
    assert recorded == actual != str(os.getpid())

@BOTH
def test_records_name_the_thread_that_made_them(kept: Keep, on: bool) -> None:
    with tricks(on):
        acct = AccountingLogger("test.speedups")
    thread = threading.Thread(target=lambda: acct.delivered("a@example.com"), name="sender-7")
    thread.start()
    thread.join()
    (record,) = kept.records
    assert (record.threadName, record.thread) == ("sender-7", thread.ident)


@BOTH
def test_a_record_factory_of_the_application_is_used(kept: Keep, on: bool) -> None:
    class Tagged(logging.LogRecord):
        pass

    with tricks(on):
        acct = AccountingLogger("test.speedups")
    logging.setLogRecordFactory(Tagged)
    try:
        acct.delivered("a@example.com")
    finally:
        logging.setLogRecordFactory(logging.LogRecord)
    (record,) = kept.records
    assert type(record) is Tagged
    assert record.outcome.rcpt == "a@example.com"  # type: ignore[attr-defined]


@BOTH
def test_a_makerecord_of_the_application_is_used(
        kept: Keep, monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    logger = logging.getLogger("test.speedups")
    made: list[str] = []

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(args[0])
        return logging.Logger.makeRecord(logger, *args, **kwargs)

    monkeypatch.setattr(logger, "makeRecord", make_record)
    with tricks(on):
        acct = AccountingLogger(logger)
    acct.bounced("a@example.com", dsn_msg="550 5.1.1 no such user")
    assert made == ["test.speedups"]
    (record,) = kept.records
    assert record.outcome.bounce_cat == "bad-mailbox"  # type: ignore[attr-defined]


@BOTH
def test_records_take_the_time_from_time_time_at_each_call(
        kept: Keep, monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    with tricks(on):
        acct = AccountingLogger("test.speedups")
    monkeypatch.setattr(time, "time", lambda: T0 + 0.25)
    acct.delivered("a@example.com")
    (record,) = kept.records
    assert (record.created, record.msecs) == (T0 + 0.25, 250.0)


# == Field values compiled into one function ======================================================

def test_every_field_of_the_catalogue_has_its_compiled_expression() -> None:
    assert list(speedups._EXPRESSIONS) == list(FIELD_NAMES) == list(fields._FIELD_TEXT)


def test_time_text_shows_the_second_it_formatted_last_which_the_compiled_times_read() -> None:
    times = TimeText("%H:%M:%S", utc=True)
    assert times.text(3600.25) == "01:00:00"
    assert times.last_second == (3600.0, 3601.0, "01:00:00")


@given(some_fields, outcome_values, st.one_of(st.none(), any_text),
       any_text.filter(lambda t: t != ""), st.sampled_from(["\t", ",", "|"]),
       st.sampled_from(["", "-", "é"]))
def test_the_compiled_functions_give_what_the_plain_ones_give(
        fields: list[str], values: dict[str, Any], tag: str | None, rcpt: str,
        separator: str, placeholder: str) -> None:
    outcome = Outcome(Kind.BOUNCE, rcpt, headers={} if tag is None else {"x-tag": tag},
                      **values)
    compiled = speedups.compiled_extractor(fields, TimeText(utc=True))
    plain = speedups.plain_extractor(fields, TimeText(utc=True))
    compiled_line = speedups.compiled_line(fields, TimeText(utc=True), separator, placeholder)
    plain_line = speedups.plain_line(fields, TimeText(utc=True), separator, placeholder)
    for logged in (T0, T0 + 0.5, T0 + 3):  # the second time from the time caches
        assert compiled(outcome, logged) == plain(outcome, logged)
        assert compiled_line(outcome, logged) == plain_line(outcome, logged)


def test_the_compiled_functions_are_chosen_only_where_verified() -> None:
    with tricks(False):
        line = speedups.line_for(["rcpt"], None, "\t", "")
        assert AccountingFormatter("rcpt")._line.__qualname__ == line.__qualname__
    assert line.__qualname__ == "plain_line.<locals>.line"
    with tricks(True):
        line = speedups.line_for(["rcpt"], None, "\t", "")
        assert speedups.line_for(["eventId"], None, "\t", "").__qualname__ == "extract"
        assert speedups.extractor_for(["rcpt"]).__qualname__ == "extract"
    # the C accelerator's line where it is built and makes the fields
    accelerator = speedups.ACCELERATOR
    assert type(line) is accelerator.Line if accelerator else line.__qualname__ == "extract"


@BOTH
def test_logged_and_queued_times_in_different_seconds_are_both_right(on: bool) -> None:
    with tricks(on):
        extract = speedups.extractor_for(["timeLogged", "timeQueued"], TimeText(utc=True))
    for step in range(3):  # alternate, so that neither time can be served from the other's cache
        outcome = Outcome(kind=Kind.DELIVERED, rcpt="a@example.com", time_queued=T0 - 60 - step)
        assert extract(outcome, T0 + step) == [
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T0 + step)),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T0 - 60 - step)),
        ]


@BOTH
def test_header_names_are_values_not_code(on: bool) -> None:
    odd = 'X-Odd"); import os #'
    with tricks(on):
        extract = speedups.extractor_for(["rcpt", "custom_" + odd, "custom_x-campaign"])
    outcome = Outcome(kind=Kind.DELIVERED, rcpt="a@example.com",
                      headers={odd: "yes", "X-Campaign": "spring"})
    assert extract(outcome, T0) == ["a@example.com", "yes", "spring"]


@BOTH
def test_values_that_are_not_text_are_written_as_text(on: bool) -> None:
    with tricks(on):
        extract = speedups.extractor_for(["srcIp", "jobId", "delay", "type"])
    outcome = Outcome(kind=Kind.DEFERRED, rcpt="a@example.com", src_ip=3232235777,  # type: ignore[arg-type]
                      job_id=None, delay=2.5)
    assert extract(outcome, T0) == ["3232235777", None, "2.5", "df"]


@BOTH
def test_the_type_of_an_outcome_whose_kind_is_another_enum_is_its_value(on: bool) -> None:
    class Code(enum.Enum):
        DELIVERED = "d"

    outcome = Outcome(Code.DELIVERED, "a@example.com")  # type: ignore[arg-type]
    with tricks(on):
        formatter = AccountingFormatter(fields="type,rcpt")
    assert formatter.format(record_of(outcome)) == "d\ta@example.com"


def escaped_one_by_one(values: list[str | None], separator: str, placeholder: str) -> str:
    """The definition: every value escaped on its own, then joined."""
    def escape(value: str) -> str:
        return escape_tsv(value) if separator == "\t" else escape_csv(value, separator)

    line = separator.join(placeholder if v is None else escape(v) for v in values)
    return line if line or separator == "\t" else '""'


@BOTH
@given(some_fields, outcome_values, st.one_of(st.none(), any_text),
       any_text.filter(lambda t: t != ""), st.sampled_from(["\t", ",", ";", "|"]),
       st.sampled_from(["", "-", "undefined", "é"]))
def test_format_is_the_values_escaped_one_by_one(
        on: bool, fields: list[str], values: dict[str, Any], tag: str | None, rcpt: str,
        separator: str, placeholder: str) -> None:
    """The formatter joins the values as they are when none needs escaping; whatever the
    values, the line is what escaping each value on its own gives."""
    if separator in placeholder:
        placeholder = ""
    with tricks(on):
        formatter = AccountingFormatter(fields, separator=separator, placeholder=placeholder,
                                        utc=True)
    outcome = Outcome(Kind.BOUNCE, rcpt, headers={} if tag is None else {"x-tag": tag},
                      **values)
    record = record_of(outcome)
    expected = escaped_one_by_one(formatter.values(record), separator, placeholder)
    for _ in range(2):  # the second time from the time caches
        assert formatter.format(record) == expected


# == JSON lines without python-json-logger's steps ================================================

class Point:
    def __init__(self, x: int) -> None:
        self.x = x


class TaggedEncoder(json.JSONEncoder):
    def default(self, o: object) -> object:
        return {"point": o.x} if isinstance(o, Point) else super().default(o)


def python_json_logger_way(formatter: AccountingJsonFormatter) -> AccountingJsonFormatter:
    """``formatter`` with python-json-logger's own jsonify_log_record: no trick applies."""
    formatter.jsonify_log_record = functools.partial(  # type: ignore[method-assign]
        JsonFormatter.jsonify_log_record, formatter)
    return formatter


@BOTH
@pytest.mark.parametrize("options", [
    {},
    {"json_ensure_ascii": False},
    {"static_fields": {"where": Point(3)}, "json_default": lambda o: f"<{o.x}>"},
    {"static_fields": {"where": Point(3)}, "json_encoder": TaggedEncoder},
    {"json_serializer": lambda data, **kw: json.dumps(data, sort_keys=True, **kw)},
    {"prefix": "acct: ", "rename_fields": {"rcpt": "to"}},
])
def test_json_lines_are_what_python_json_logger_would_write(
        options: dict[str, Any], on: bool) -> None:
    outcome = Outcome(kind=Kind.DELIVERED, rcpt="zoë@example.com", dsn_msg='250 "ok"\n')
    with tricks(on):
        ours = AccountingJsonFormatter(kind="delivered", utc=True, **options)
    plain = python_json_logger_way(AccountingJsonFormatter(kind="delivered", utc=True,
                                                           **options))
    for _ in range(2):  # the second record uses the encoder made for the first
        assert ours.format(record_of(outcome)) == plain.format(record_of(outcome))


def test_without_the_tricks_python_json_logger_writes_every_line() -> None:
    with tricks(False):
        formatter = AccountingJsonFormatter(["rcpt"])
    assert formatter._objects is None
    assert formatter.format(record_of(Outcome(Kind.DELIVERED, "a@example.com"))) == (
        '{"rcpt": "a@example.com"}')
    assert formatter._encoder is None  # no encoder of ours was made


@BOTH
def test_json_options_changed_after_construction_are_used(on: bool) -> None:
    with tricks(on):
        formatter = AccountingJsonFormatter(kind="delivered", utc=True)
    outcome = Outcome(kind=Kind.DELIVERED, rcpt="zoë@example.com")
    assert "zo\\u00eb" in formatter.format(record_of(outcome))
    formatter.json_ensure_ascii = False
    assert "zoë" in formatter.format(record_of(outcome))


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
    with tricks(True):
        ours = AccountingJsonFormatter(fields, utc=True, json_ensure_ascii=ascii_only,
                                       prefix=prefix)
    assert ours._objects is not None
    plain = python_json_logger_way(AccountingJsonFormatter(
        fields, utc=True, json_ensure_ascii=ascii_only, prefix=prefix))
    assert ours.format(record_of(outcome)) == plain.format(record_of(outcome))


@BOTH
def test_json_with_a_field_twice_is_what_json_dumps_writes(on: bool) -> None:
    with tricks(on):
        formatter = AccountingJsonFormatter(["rcpt", "jobId", "rcpt"])
    outcome = Outcome(Kind.DELIVERED, "a@example.com", job_id="9")
    assert formatter.format(record_of(outcome)) == '{"rcpt": "a@example.com", "jobId": "9"}'


@BOTH
def test_a_json_hook_set_on_the_class_later_is_used(
        monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    class Tagged(AccountingJsonFormatter):
        pass

    with tricks(on):
        formatter = Tagged(["rcpt"])
    record = record_of(Outcome(Kind.DELIVERED, "a@example.com"))
    assert formatter.format(record) == '{"rcpt": "a@example.com"}'
    monkeypatch.setattr(Tagged, "process_log_record",
                        lambda self, data: {**data, "app": "mailer"}, raising=False)
    assert formatter.format(record) == '{"rcpt": "a@example.com", "app": "mailer"}'


@BOTH
def test_a_record_without_an_outcome_is_named(on: bool) -> None:
    with tricks(on):
        formatter = AccountingJsonFormatter(["rcpt"])
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello", None, None)
    with pytest.raises(TypeError, match="carries no accounting outcome"):
        formatter.format(record)
