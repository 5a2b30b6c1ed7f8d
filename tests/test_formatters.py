"""One record, one line: escaping, headers, CSV and JSON output."""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mta_logging
from mta_logging import AccountingFormatter, AccountingJsonFormatter, ConfigError, Kind, Outcome
from mta_logging.formatters import escape_tsv, header_fields, join_values, split_line, unescape

T0 = 1_764_138_000.0  # 2025-11-26 06:20:00 UTC


def record(outcome: Outcome, created: float = T0) -> logging.LogRecord:
    rec = logging.LogRecord("mta.accounting", logging.INFO, __file__, 1, "x", None, None)
    rec.created = created
    rec.outcome = outcome
    return rec


def delivered(**kw: object) -> Outcome:
    return Outcome(kind=Kind.DELIVERED, rcpt=str(kw.pop("rcpt", "bob@example.com")), **kw)  # type: ignore[arg-type]


# any text, including lone surrogates (undecodable bytes) and every control character
any_text = st.text(st.characters(codec=None, categories=None), max_size=40) | st.sampled_from(
    ["", "\\", "\\t", "\t", "\n", "\r\n", '"', '""', ",", ";", "a\udcffb", "\ud800", "\\x41"]
)


@given(st.lists(any_text, min_size=1, max_size=8), st.sampled_from(["\t", ",", ";", "|", " "]))
def test_any_values_round_trip_through_one_line(values: list[str], separator: str) -> None:
    line = join_values(values, separator)
    assert "\n" not in line and "\r" not in line
    line.encode("utf-8")  # always valid UTF-8: no lone surrogate reaches the file
    assert split_line(line + "\n", separator) == values


@given(st.lists(st.text(st.characters(exclude_characters="\\\r\n", exclude_categories=["Cs"]),
                        max_size=30), min_size=1, max_size=8),
       st.sampled_from([",", ";", "|"]))
def test_csv_module_reads_values_without_backslash_or_line_breaks_unchanged(
        values: list[str], separator: str) -> None:
    line = join_values(values, separator)
    assert next(csv.reader(io.StringIO(line), delimiter=separator)) == values


def test_tsv_escapes_are_backslash_sequences() -> None:
    assert escape_tsv("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert escape_tsv("caf\udce9") == "caf\\xe9"  # the byte 0xE9 that was not UTF-8
    assert unescape("caf\\xe9").encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_unknown_escapes_from_other_writers_are_kept() -> None:
    assert unescape("C:\\path\\q") == "C:\\path\\q"


def test_reply_text_cannot_forge_a_field_or_a_record() -> None:
    fmt = AccountingFormatter(kind="delivered")
    evil = "250 ok\nd\t2025-01-01 00:00:00\t\tforged@example.com"
    line = fmt.format(record(delivered(dsn_msg=evil)))
    assert line.count("\t") == len(fmt.fields) - 1
    assert "\n" not in line
    assert split_line(line)[-1] == evil


def test_default_delivered_line_and_header() -> None:
    fmt = AccountingFormatter(kind=Kind.DELIVERED, utc=True)
    outcome = delivered(time_queued=T0 - 65, src_mta="relay.example", src_ip="192.0.2.1",
                        dest_ip="203.0.113.7", vmta="pool1", job_id="42", dsn_status="2.0.0",
                        dsn_msg="250 2.0.0 OK")
    assert fmt.header() == ("type\ttimeLogged\ttimeQueued\trcpt\tsrcMta\tsrcIp\tvmta\tjobId\t"
                            "dsnStatus\tdsnMsg")
    assert fmt.format(record(outcome)) == (
        "d\t2025-11-26 06:20:00\t2025-11-26 06:18:55\tbob@example.com\trelay.example\t"
        "192.0.2.1\tpool1\t42\t2.0.0\t250 2.0.0 OK")


def test_unknown_values_use_the_placeholder() -> None:
    fmt = AccountingFormatter(fields="type,rcpt,vmta,delay", placeholder=" - ")
    assert fmt.format(record(delivered())) == "d\tbob@example.com\t - \t - "


def test_csv_separator_quotes_values_that_contain_it() -> None:
    fmt = AccountingFormatter(fields=["type", "rcpt", "dsnMsg"], separator=",")
    line = fmt.format(record(delivered(dsn_msg='550 "no", really')))
    assert line == 'd,bob@example.com,"550 ""no"", really"'
    assert fmt.header() == "type,rcpt,dsnMsg"


def test_separator_spelled_tab_or_backslash_t() -> None:
    assert AccountingFormatter(kind="b", separator="tab").separator == "\t"
    assert AccountingFormatter(kind="b", separator="\\t").separator == "\t"


@pytest.mark.parametrize("bad", ["", "||", '"', "\\", "\n"])
def test_bad_separator_is_named(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"separator: .* is not valid; expected one character"):
        AccountingFormatter(kind="d", separator=bad)


def test_unknown_field_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        AccountingFormatter(fields="type,rcpt,recipient")
    assert str(err.value).startswith("fields: 'recipient' is not valid; unknown field; allowed")


def test_record_without_outcome_is_a_clear_error() -> None:
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", None, None)
    with pytest.raises(TypeError, match="carries no accounting outcome"):
        AccountingFormatter(kind="d").format(rec)


def test_header_fields_drop_haraka_trailing_separator() -> None:
    assert header_fields("type\trcpt\t\r\n") == ["type", "rcpt"]


def test_json_lines_use_the_same_field_names() -> None:
    fmt = AccountingJsonFormatter(kind="deferred", utc=True)
    outcome = Outcome(kind=Kind.DEFERRED, rcpt="carol@example.org", dsn_status="4.2.0",
                      dsn_msg="451 4.2.0 try\nlater", delay=300)
    line = fmt.format(record(outcome))
    assert "\n" not in line
    assert json.loads(line) == {
        "type": "df", "timeLogged": "2025-11-26 06:20:00", "timeQueued": None,
        "rcpt": "carol@example.org", "srcMta": None, "srcIp": None, "vmta": None,
        "jobId": None, "dsnStatus": "4.2.0", "dsnMsg": "451 4.2.0 try\nlater", "delay": 300,
    }
    assert fmt.header() is None


# -- the fields beyond the Haraka plugin's -------------------------------------------------------

ALL_DETAILS = {
    "orig": "alice@example.com", "orcpt": "rfc822;Bob@Example.com", "env_id": "env-1",
    "dsn_mta": "mx.example.net", "size": 2048, "tls_protocol": "TLSv1.3",
    "tls_cipher": "TLS_AES_256_GCM_SHA384", "time_first_attempt": T0 - 60,
    "event_id": "0192f1c0-0000-7000-8000-000000000001", "rcv_ip": "192.0.2.7",
    "rcv_helo": "client.example.com", "rcv_auth_user": "alice",
    "rcv_tls_protocol": "TLSv1.2", "rcv_tls_cipher": "ECDHE-RSA-AES128-GCM-SHA256"}
NEW_FIELDS = ("orig,orcpt,envId,dsnAction,dsnDiag,dsnMta,dlvSize,dlvTlsProtocol,dlvTlsCipher,"
              "timeFirstAttempt,totalSecondsQueued,eventId,rcvSourceIp,rcvHelo,rcvAuthUser,"
              "rcvTlsProtocol,rcvTlsCipher")


def test_every_new_field_is_written_byte_for_byte() -> None:
    fmt = AccountingFormatter(fields=NEW_FIELDS, utc=True)
    outcome = delivered(time_queued=T0 - 90, dsn_msg="250 2.0.0 Ok: queued as 4XyZ",
                        **ALL_DETAILS)
    assert fmt.header() == NEW_FIELDS.replace(",", "\t")
    assert fmt.format(record(outcome)) == (
        "alice@example.com\trfc822;Bob@Example.com\tenv-1\tdelivered\t"
        "smtp; 250 2.0.0 Ok: queued as 4XyZ\tmx.example.net\t2048\tTLSv1.3\t"
        "TLS_AES_256_GCM_SHA384\t2025-11-26 06:19:00\t90\t"
        "0192f1c0-0000-7000-8000-000000000001\t192.0.2.7\tclient.example.com\talice\t"
        "TLSv1.2\tECDHE-RSA-AES128-GCM-SHA256")


@pytest.mark.parametrize(("kind", "action"), [
    (Kind.DELIVERED, "delivered"), (Kind.DEFERRED, "delayed"), (Kind.BOUNCE, "failed"),
    (Kind.RECEIVED, "")])
def test_fields_not_given_are_taken_from_the_outcome_or_left_empty(
        kind: Kind, action: str) -> None:
    fmt = AccountingFormatter(fields="rcpt,orig,orcpt,dsnAction,dsnDiag,dlvSize,"
                                     "dlvTlsProtocol,totalSecondsQueued", placeholder="-")
    outcome = Outcome(kind=kind, rcpt="bob@example.com", dsn_msg="connect to mx: timed out")
    assert fmt.format(record(outcome)).split("\t") == [
        "bob@example.com", "-", "bob@example.com", action or "-", "-", "-", "-", "-"]


def test_the_null_sender_is_an_empty_orig_not_an_unknown_one() -> None:
    fmt = AccountingFormatter(fields="rcpt,orig", placeholder="-")
    assert fmt.format(record(delivered(orig=""))) == "bob@example.com\t"
    assert fmt.format(record(delivered())) == "bob@example.com\t-"


def test_each_record_gets_its_own_event_id_unless_the_outcome_carries_one() -> None:
    fmt = AccountingFormatter(fields="eventId")
    outcome = delivered()
    first, second = fmt.format(record(outcome)), fmt.format(record(outcome))
    assert first != second
    assert [uuid.UUID(text).version for text in (first, second)] == [7, 7]
    assert int(first[:8] + first[9:13], 16) == int(T0 * 1000)  # UUIDv7: logging time in ms
    assert fmt.format(record(delivered(event_id="mine"))) == "mine"


def test_header_fields_are_custom_fields_by_their_powermta_name() -> None:
    fmt = AccountingFormatter(fields="rcpt,header_X-Campaign,custom_x-campaign")
    outcome = delivered(headers={"X-CAMPAIGN": "spring"})
    assert fmt.header() == "rcpt\theader_X-Campaign\tcustom_x-campaign"
    assert fmt.format(record(outcome)) == "bob@example.com\tspring\tspring"


def test_a_star_is_every_field_and_a_bang_leaves_one_out() -> None:
    every = AccountingFormatter(fields="*").fields
    assert every == mta_logging.FIELD_NAMES
    assert AccountingFormatter(fields="*,!eventId,!destIp").fields == tuple(
        name for name in mta_logging.FIELD_NAMES if name not in ("eventId", "destIp"))
    assert AccountingFormatter(fields="rcpt,custom_X-A,*,!type").fields[:3] == (
        "rcpt", "custom_X-A", "timeLogged")
    assert AccountingFormatter(fields=["jobId", "*"]).fields.count("jobId") == 1


@pytest.mark.parametrize(("fields", "error"), [
    ("!rcpt", "fields: '!rcpt' is not valid; leaves no field"),
    ("*,!sender", "fields: '!sender' is not valid; unknown field"),
    ("rcpt,header_", "fields: 'header_' is not valid; unknown field"),
])
def test_bad_star_and_bang_lists_are_clear_errors(fields: str, error: str) -> None:
    with pytest.raises(ConfigError) as err:
        AccountingFormatter(fields=fields)
    assert str(err.value).startswith(error)


def test_json_lines_write_numbers_as_numbers_and_bad_bytes_as_in_tsv() -> None:
    fields = "rcpt,delay,dlvSize,totalSecondsQueued,dsnMsg"
    outcome = Outcome(kind=Kind.DEFERRED, rcpt="b\\ob@example.com", time_queued=T0 - 30.5,
                      dsn_msg="451 caf\udce9 \\x41", delay=2.5, size=10)
    line = AccountingJsonFormatter(fields=fields).format(record(outcome))
    assert line == ('{"rcpt": "b\\\\\\\\ob@example.com", "delay": 2.5, "dlvSize": 10, '
                    '"totalSecondsQueued": 30, "dsnMsg": "451 caf\\\\xe9 \\\\\\\\x41"}')
    assert line.encode("utf-8").decode("ascii")  # strict JSON: no lone surrogate
    tsv = AccountingFormatter(fields=fields).format(record(outcome))
    assert [unescape(json.loads(line)[name]) for name in ("rcpt", "dsnMsg")] == [
        split_line(tsv)[0], split_line(tsv)[4]] == ["b\\ob@example.com", "451 caf\udce9 \\x41"]


def test_json_formatter_keeps_python_json_logger_options() -> None:
    fmt = AccountingJsonFormatter(fields="type,rcpt", static_fields={"site": "eu1"},
                                  rename_fields={"rcpt": "recipient"})
    assert json.loads(fmt.format(record(delivered()))) == {
        "type": "d", "recipient": "bob@example.com", "site": "eu1"}
    with pytest.raises(ConfigError, match="json_indent"):
        AccountingJsonFormatter(kind="d", json_indent=2)
