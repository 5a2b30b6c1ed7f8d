"""The DSN extension's parameters (RFC 3461): xtext both ways, and what MAIL and RCPT take."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta_logging.relay.dsn_params import (
    MAIL_KEYWORDS,
    RCPT_KEYWORDS,
    MailDsn,
    ParameterError,
    RcptDsn,
    mail_dsn,
    rcpt_dsn,
    split_parameters,
    xtext_decode,
    xtext_encode,
)

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(texts)
def test_xtext_round_trip(text):
    encoded = xtext_encode(text)
    assert xtext_decode(encoded) == text
    assert all("!" <= char <= "~" and char != "=" for char in encoded)


@given(texts)
def test_passed_on_parameters_read_back_as_given(text):
    mail = MailDsn(ret="FULL", envid=text)
    found, others = split_parameters(mail.options(), MAIL_KEYWORDS)
    assert others == []
    if text and len(xtext_encode(text)) <= 100:
        assert mail_dsn(found) == mail
    rcpt = RcptDsn(notify=("SUCCESS", "DELAY"), orcpt=f"rfc822;{text or 'x'}")
    found, _ = split_parameters(rcpt.options(), RCPT_KEYWORDS)
    assert rcpt_dsn(found) == rcpt


def test_xtext_examples_of_the_rfc():
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext_decode("a+2Bb+3Dc+20d") == "a+b=c d"
    assert xtext_encode("jörg@x.test") == "j+C3+B6rg@x.test"
    assert xtext_decode("j+C3+B6rg@x.test") == "jörg@x.test"


@pytest.mark.parametrize("bad", ["a=b", "a+", "a+4", "a+zz", "a b", "é"])
def test_what_is_not_xtext(bad):
    with pytest.raises(ParameterError, match="is not xtext"):
        xtext_decode(bad)


def test_split_keeps_the_other_parameters_in_order():
    found, others = split_parameters(["SIZE=10", "ret=hdrs", "BODY=8BITMIME", "Envid=X+2B"],
                                     MAIL_KEYWORDS)
    assert found == {"RET": "hdrs", "ENVID": "X+2B"}
    assert others == ["SIZE=10", "BODY=8BITMIME"]
    assert mail_dsn(found) == MailDsn(ret="HDRS", envid="X+")


def test_notify_defaults_and_wants():
    assert RcptDsn().wants("FAILURE") and not RcptDsn().wants("SUCCESS")
    assert not RcptDsn().wants("DELAY")  # the relay's choice (delay_notice_after)
    never = rcpt_dsn({"NOTIFY": "never"})
    assert never.notify == ("NEVER",) and not never.wants("FAILURE")
    assert rcpt_dsn({"NOTIFY": "success"}).wants("SUCCESS")
    assert RcptDsn().options() == [] and MailDsn().options() == []


def test_orcpt_keeps_the_address_type_and_decodes_the_address():
    assert rcpt_dsn({"ORCPT": "RFC822;A+2BB@x.test"}).orcpt == "rfc822;A+B@x.test"
    assert RcptDsn(orcpt="rfc822;A+B@x.test").options() == ["ORCPT=rfc822;A+2BB@x.test"]
    with pytest.raises(ParameterError, match="ORCPT: 'a=b' is not xtext"):
        rcpt_dsn({"ORCPT": "rfc822;a=b"})
    with pytest.raises(ParameterError, match="expected addr-type;xtext"):
        rcpt_dsn({"ORCPT": ";a@x.test"})
