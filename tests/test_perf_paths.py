"""The fast paths that stay in their modules (escaping, the time cache, the Outcome built
without a call of its class) give exactly what the plain, value-by-value way gives; the
tricks of mta_logging/speedups.py are tested in test_speedups.py.

Behaviour only: nothing here measures time (benchmarks/ does that).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_speedups import T0, escaped_one_by_one, maybe_text, record_of

import mta_logging
from mta_logging import AccountingLogger, Kind, Outcome
from mta_logging.fields import TimeText
from mta_logging.formatters import join_values
from mta_logging.outcome import DETAIL_NAMES


@given(st.lists(maybe_text, max_size=8), st.sampled_from(["\t", ",", ";", "|"]),
       st.sampled_from(["", "-", "undefined", '"', "é"]))
def test_joining_a_line_equals_escaping_value_by_value(
        values: list[str | None], separator: str, placeholder: str) -> None:
    assert join_values(values, separator, placeholder) == escaped_one_by_one(
        values, separator, placeholder)


def test_join_values_takes_any_iterable() -> None:
    assert join_values((v for v in ["a\tb", None, "c"]), "\t", "-") == "a\\tb\t-\tc"


def test_kind_attributes() -> None:
    assert [(k.value, k.code, k.level, k.directory, k.label) for k in Kind] == [
        ("d", "d", logging.INFO, "delivered", "delivered"),
        ("df", "df", logging.WARNING, "deferred", "deferred"),
        ("b", "b", logging.ERROR, "bounce", "bounced"),
        ("r", "r", 15, "received", "received"),
        ("rb", "rb", logging.ERROR, "remote_bounce", "remote bounce"),
        ("f", "f", logging.WARNING, "feedback", "complaint")]
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
    # in field order; the details (none given) are the class's defaults
    assert list(vars(built)) == [f.name for f in dataclasses.fields(Outcome)
                                 if f.name not in DETAIL_NAMES]
    assert (built.orig, built.size, built.event_id) == (None, None, None)
    bare = AccountingLogger.outcome(Kind.DELIVERED, "a@example.com")
    assert (bare.headers, bare.extra) == ({}, {}) and bare.headers is not bare.extra
    assert bare == Outcome(Kind.DELIVERED, "a@example.com")
    detailed = AccountingLogger.outcome("r", "a@example.com", size=5, orig="")
    assert list(vars(detailed))[-2:] == ["size", "orig"]  # as given
    assert detailed == Outcome(Kind.RECEIVED, "a@example.com", size=5, orig="")


@pytest.mark.parametrize(("details", "error"), [
    ({"sender": "a@example.com"}, "unexpected keyword argument 'sender'"),
    ({"size": "12"}, "size must be a whole number of bytes, not '12'"),
    ({"size": True}, "size must be a whole number of bytes, not True"),
    ({"orig": 5}, "orig must be text, not 5"),
    ({"time_first_attempt": "soon"}, "time_first_attempt must be a datetime"),
])
def test_outcome_details_are_checked(details: dict[str, object], error: str) -> None:
    with pytest.raises(TypeError, match=error):
        AccountingLogger.outcome("d", "a@example.com", **details)  # type: ignore[arg-type]


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


def test_a_keyword_that_is_not_a_field_is_named() -> None:
    acct = AccountingLogger("test.perf_paths")
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


def test_separator_and_placeholder_changed_later_are_used_for_every_line() -> None:
    formatter = mta_logging.AccountingFormatter(["type", "rcpt", "vmta", "dsnMsg"],
                                                separator=",")
    formatter.placeholder = "-"
    plain = Outcome(Kind.DELIVERED, "a@example.com")
    needs_quoting = Outcome(Kind.DELIVERED, "a@example.com", dsn_msg='250 "ok"')
    assert formatter.format(record_of(plain)) == "d,a@example.com,-,-"
    assert formatter.format(record_of(needs_quoting)) == 'd,a@example.com,-,"250 ""ok"""'
    formatter.separator = ";"
    assert formatter.format(record_of(plain)) == "d;a@example.com;-;-"
    with pytest.raises(mta_logging.ConfigError, match="must not contain the separator"):
        formatter.placeholder = "a;b"
    assert formatter.format(record_of(plain)) == "d;a@example.com;-;-"


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

