"""The front door: AccountingLogger → LogRecords → per-kind files."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import mta_logging
from mta_logging import AccountingFileHandler, AccountingLogger, Kind, Outcome
from mta_logging.logger import Details
from mta_logging.outcome import DETAIL_NAMES

QUEUED = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC)


@pytest.fixture
def acct_dir(tmp_path: Path) -> Iterator[Path]:
    mta_logging.configure({"path": str(tmp_path), "utc": True})
    yield tmp_path
    logger = logging.getLogger("mta.accounting")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def lines_of(directory: Path) -> list[str]:
    (active,) = [p for p in directory.iterdir() if p.is_file()]
    return active.read_text(encoding="utf-8").splitlines()


def test_the_issue_example_writes_one_line_per_kind(acct_dir: Path) -> None:
    acct = AccountingLogger()
    acct.delivered("bob@example.com", job_id="42", src_mta="relay.example", src_ip="192.0.2.1",
                   dest_ip="203.0.113.7", vmta="pool1", dsn_status="2.0.0",
                   dsn_msg="250 2.0.0 OK", time_queued=QUEUED, headers={"X-Campaign": "spring"})
    acct.deferred("carol@example.org", dsn_status="4.2.0", dsn_msg="451 4.2.0 try later",
                  delay=300)
    acct.bounced("dave@example.net", dsn_status="5.1.1", dsn_msg="550 5.1.1 user unknown",
                 bounce_cat="bad-mailbox")
    delivered = lines_of(acct_dir / "delivered")
    assert delivered[0] == ("type\ttimeLogged\ttimeQueued\trcpt\tsrcMta\tsrcIp\tvmta\tjobId\t"
                            "dsnStatus\tdsnMsg")
    values = delivered[1].split("\t")
    assert values[0] == "d" and values[2] == "2026-11-26 06:00:00"
    assert values[3:] == ["bob@example.com", "relay.example", "192.0.2.1", "pool1", "42",
                          "2.0.0", "250 2.0.0 OK"]
    assert len(delivered) == 2
    deferred = lines_of(acct_dir / "deferred")[1].split("\t")
    assert deferred[0] == "df" and deferred[3] == "carol@example.org"
    assert deferred[8:] == ["4.2.0", "451 4.2.0 try later", "300"]
    bounce = lines_of(acct_dir / "bounce")[1].split("\t")
    assert bounce[0] == "b" and bounce[8:] == ["5.1.1", "550 5.1.1 user unknown", "bad-mailbox"]


def test_every_field_and_custom_headers(tmp_path: Path) -> None:
    every = ("type,timeLogged,timeQueued,rcpt,srcMta,srcIp,destIp,vmta,jobId,dsnStatus,dsnMsg,"
             "delay,bounceCat,custom_X-Campaign,custom_list-id,custom_Missing")
    mta_logging.configure({"path": str(tmp_path), "utc": True,
                           "fields": {"deferred": every}, "placeholder": "-"})
    try:
        AccountingLogger().deferred(
            "carol@example.org", time_queued=QUEUED.timestamp() - 0.5, src_mta="relay.example",
            src_ip="192.0.2.1", dest_ip="2001:db8::7", vmta="pool2", job_id=99,
            dsn_status="4.7.0", dsn_msg="421 4.7.0 slow down", delay=12.25, bounce_cat=None,
            headers={"x-campaign": "spring", "List-ID": "<news.example.com>"})
        line = lines_of(tmp_path / "deferred")
    finally:
        mta_logging.configure({"path": str(tmp_path / "after")})
    assert line[0] == every.replace(",", "\t")
    values = line[1].split("\t")
    assert values[0] == "df"
    assert values[2] == "2026-11-26 05:59:59"
    assert values[3:] == ["carol@example.org", "relay.example", "192.0.2.1", "2001:db8::7",
                          "pool2", "99", "4.7.0", "421 4.7.0 slow down", "12.25", "-", "spring",
                          "<news.example.com>", "-"]


def test_levels_by_kind_and_records_also_reach_application_logs(
        acct_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    acct = AccountingLogger()
    with caplog.at_level(logging.INFO, logger="mta.accounting"):
        acct.delivered("a@example.com", job_id="1", dsn_msg="250 ok")
        acct.deferred("b@example.com", dsn_msg="451 later")
        acct.bounced("c@example.com", dsn_msg="550 5.1.1 unknown", bounce_cat="bad-mailbox")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "delivered a@example.com job 1: 250 ok"),
        (logging.WARNING, "deferred b@example.com job -: 451 later"),
        (logging.ERROR, "bounce c@example.com job -: 550 5.1.1 unknown"),
    ]
    assert all(isinstance(r.outcome, Outcome) for r in caplog.records)  # type: ignore[attr-defined]


def test_two_handlers_on_one_logger_receive_only_their_kind(tmp_path: Path) -> None:
    logger = logging.getLogger("my.app.mail")
    logger.setLevel(logging.INFO)
    delivered = AccountingFileHandler("delivered", tmp_path / "ok")
    bounced = AccountingFileHandler("bounce", tmp_path / "bad")
    logger.addHandler(delivered)
    logger.addHandler(bounced)
    try:
        acct = AccountingLogger(logger)
        acct.delivered("a@example.com")
        acct.bounced("b@example.com", bounce_cat="bad-mailbox")
        acct.deferred("c@example.com", delay=60)
        logger.info("a plain application line, no outcome")
        ok, bad = lines_of(tmp_path / "ok"), lines_of(tmp_path / "bad")
    finally:
        for handler in (delivered, bounced):
            logger.removeHandler(handler)
            handler.close()
    assert [line.split("\t")[0] for line in ok] == ["type", "d"]
    assert [line.split("\t")[0] for line in bad] == ["type", "b"]


def test_plain_logger_with_extra_outcome(acct_dir: Path) -> None:
    outcome = Outcome(kind=Kind.DELIVERED, rcpt="x@example.com", job_id="7")
    logging.getLogger("mta.accounting").info("sent", extra={"outcome": outcome})
    assert lines_of(acct_dir / "delivered")[1].split("\t")[3] == "x@example.com"


def test_naive_datetime_is_local_time(tmp_path: Path) -> None:
    mta_logging.configure({"path": str(tmp_path)})
    try:
        AccountingLogger().delivered("a@example.com", time_queued=datetime(2026, 1, 2, 3, 4, 5))
        values = lines_of(tmp_path / "delivered")[1].split("\t")
    finally:
        mta_logging.configure({"path": str(tmp_path / "after")})
    assert values[2] == "2026-01-02 03:04:05"


def test_bounced_classifies_when_no_category_is_given(acct_dir: Path) -> None:
    outcome = AccountingLogger().bounced(
        "d@example.net", dsn_msg="550 5.1.1 <d@example.net>: Recipient address rejected: "
                                 "User unknown in virtual mailbox table")
    assert outcome.bounce_cat == "bad-mailbox"
    assert lines_of(acct_dir / "bounce")[1].endswith("\tbad-mailbox")


@pytest.mark.parametrize(("call", "message"), [
    (lambda a: a.delivered(""), "rcpt must be a non-empty string"),
    (lambda a: a.delivered(None), "rcpt must be a non-empty string"),
    (lambda a: a.deferred("a@b", delay="soon"), "delay must be a number of seconds"),
    (lambda a: a.delivered("a@b", time_queued="yesterday"), "time_queued must be a datetime"),
    (lambda a: a.delivered("a@b", headers=["X-A: 1"]), "headers must be a mapping"),
    (lambda a: a.delivered("a@b", recipient="x"), "unexpected keyword argument 'recipient'"),
])
def test_bad_arguments_are_clear_type_errors(acct_dir: Path, call: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call(AccountingLogger())  # type: ignore[operator]


def test_disabled_logger_builds_no_record(acct_dir: Path) -> None:
    logging.getLogger("mta.accounting").setLevel(logging.CRITICAL)
    try:
        outcome = AccountingLogger().delivered("a@example.com")
    finally:
        logging.getLogger("mta.accounting").setLevel(logging.INFO)
    assert outcome.rcpt == "a@example.com"
    assert lines_of(acct_dir / "delivered") == [
        "type\ttimeLogged\ttimeQueued\trcpt\tsrcMta\tsrcIp\tvmta\tjobId\tdsnStatus\tdsnMsg"]


def test_kind_parse_names_and_codes() -> None:
    assert [Kind.parse(x) for x in ("d", "df", "b", "delivered", "DEFERRED", "bounced", "t")] == [
        Kind.DELIVERED, Kind.DEFERRED, Kind.BOUNCE, Kind.DELIVERED, Kind.DEFERRED, Kind.BOUNCE,
        Kind.DEFERRED]
    with pytest.raises(mta_logging.ConfigError, match="kind: 'x' is not valid; expected one of"):
        Kind.parse("x")


def test_kind_filter_routes_records_to_any_handler(tmp_path: Path) -> None:
    """KindFilter gives a stdlib handler the same routing the accounting handlers have."""
    logger = logging.getLogger("my.app.bounces")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(tmp_path / "bounces.log")
    handler.addFilter(mta_logging.KindFilter("bounce"))
    handler.setFormatter(mta_logging.AccountingFormatter(fields="type,rcpt,bounceCat"))
    logger.addHandler(handler)
    try:
        acct = AccountingLogger(logger)
        acct.delivered("a@example.com")
        acct.bounced("b@example.com", bounce_cat="quota-issues")
        logger.info("no outcome at all")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert (tmp_path / "bounces.log").read_text() == "b\tb@example.com\tquota-issues\n"


# -- the Outcome fields, spelled out for speed, stay the dataclass's --------------------------

def _field_defaults() -> list[tuple[str, object]]:
    """(name, default) of each Outcome field up to the details; a default factory's default is
    None (what the signatures take for "an empty mapping"), a field without a default has
    Parameter.empty."""
    import dataclasses
    import inspect

    return [(item.name, None if item.default_factory is not dataclasses.MISSING
             else inspect.Parameter.empty if item.default is dataclasses.MISSING
             else item.default)
            for item in dataclasses.fields(Outcome) if item.name not in DETAIL_NAMES]


def test_the_details_are_the_outcome_fields_after_extra() -> None:
    import dataclasses
    import typing

    names = [item.name for item in dataclasses.fields(Outcome)]
    assert names[names.index("extra") + 1:] == list(DETAIL_NAMES)
    assert list(typing.get_type_hints(Details)) == list(DETAIL_NAMES)
    assert {item.default for item in dataclasses.fields(Outcome)
            if item.name in DETAIL_NAMES} == {None}


@pytest.mark.parametrize("function", [
    AccountingLogger.delivered, AccountingLogger.deferred, AccountingLogger.bounced,
])
def test_the_kind_methods_take_the_outcome_fields_after_the_kind(function: object) -> None:
    import inspect

    parameters = list(inspect.signature(function).parameters.values())[1:]  # after self
    assert [(p.name, p.default) for p in parameters[:-1]] == _field_defaults()[1:]
    assert parameters[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert {p.kind for p in parameters[1:-1]} == {inspect.Parameter.KEYWORD_ONLY}
    assert (parameters[-1].name, parameters[-1].kind) == (
        "details", inspect.Parameter.VAR_KEYWORD)


def test_outcome_takes_the_outcome_fields() -> None:
    import inspect

    parameters = list(inspect.signature(AccountingLogger.outcome).parameters.values())
    assert [(p.name, p.default) for p in parameters[:-1]] == _field_defaults()
    assert parameters[-1].kind is inspect.Parameter.VAR_KEYWORD


@pytest.mark.parametrize(("function", "skip"), [
    (mta_logging.logger._build, 0), (mta_logging.logger._through_outcome, 1),
])
def test_the_internal_builders_take_every_field_in_order(function: object, skip: int) -> None:
    import inspect

    parameters = list(inspect.signature(function).parameters.values())[skip:]
    assert [p.name for p in parameters] == [name for name, _ in _field_defaults()] + ["details"]
    assert {p.default for p in parameters} == {inspect.Parameter.empty}


@pytest.mark.parametrize("method", ["delivered", "deferred", "bounced"])
def test_every_keyword_lands_in_its_own_field(method: str) -> None:
    import dataclasses

    class Keep(logging.Handler):
        outcomes: list[Outcome] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.outcomes.append(record.outcome)  # type: ignore[attr-defined]

    logger = logging.getLogger("test.logger.fields")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = Keep()
    logger.addHandler(handler)
    values: dict[str, object] = {
        name: f"{name}-value" for name in [n for n, _ in _field_defaults()[2:]] + [
            *DETAIL_NAMES]}
    values.update(time_queued=1.5, delay=2.5, headers={"X-A": "b"}, extra={"app": 1},
                  size=1234, time_first_attempt=2.0)
    try:
        returned = getattr(AccountingLogger(logger), method)("rcpt@example.com", **values)
    finally:
        logger.removeHandler(handler)
    assert handler.outcomes == [returned]
    assert dataclasses.asdict(returned) == {
        "kind": Kind.parse(method), "rcpt": "rcpt@example.com", **values}
