"""The classifier's fast paths against a plain slow path: the same decision for every text."""

from __future__ import annotations

import re

import classify_golden
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mta_logging.classify as classify_module
from mta_logging.classify import Classifier, builtin_rules
from mta_logging.reply import WRAPPER_MARKERS, find_reply, may_hold_code, reply_codes

_NO_CODE_DIGIT = re.compile("[^2-5]*")

# Wrapper markers and phrases, codes and statuses and words without a digit 2 to 5, to make
# texts that hold markers with and without what a reply needs.
_PIECES = (*WRAPPER_MARKERS, "Remote host said:", "host mx.example.org[192.0.2.1] said:",
           "SMTP error from remote mail server after RCPT TO:<a@b>:", "<<<", "smtp;", "#",
           "550", "5.1.1", "421-4.7.0", "550-5.7.1", "450 4.2.2", "10.0.0.1", "1.6.9", "mailbox",
           "user unknown", "spam", "blocked", "rejected", "quota", "ip", "refused", "ß", "\u212a",
           "İ", "é", "'", ">", "(in reply to RCPT TO command)", "[RCPT_TO]", "  ", "\n", "-")
_TEXTS = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=12).map(" ".join),
    st.text(max_size=40),
)
_CODES = st.sampled_from((None, 421, 450, 550, 554))
_STATUSES = st.sampled_from((None, "", "5.0.0", "4.0.0", "5.1.1", "5.7.1", "4.7.1"))


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(builtin_rules(), remember=0)


def _slow(classifier: Classifier, code: int | None, enhanced: str | None,
          text: str) -> tuple[object, ...]:
    """The decision with every text searched for wrapper markers, as before the digit test."""
    fast = classify_module.may_hold_code
    classify_module.may_hold_code = lambda text: True  # type: ignore[assignment]
    try:
        return classifier._decide(code, enhanced, text)
    finally:
        classify_module.may_hold_code = fast


@given(st.text(max_size=60))
def test_a_text_without_a_digit_2_to_5_is_told_apart_by_may_hold_code(text: str) -> None:
    assert may_hold_code(text) is (_NO_CODE_DIGIT.fullmatch(text) is None)


@given(st.lists(st.sampled_from(_PIECES), max_size=12).map(" ".join))
def test_find_reply_finds_no_wrapper_and_no_code_in_a_text_without_a_digit_2_to_5(
    text: str,
) -> None:
    text = text.translate(str.maketrans("", "", "2345"))
    found = find_reply(text)
    assert (found.wrapper, found.reply.code, found.reply.enhanced) == ("", None, None)
    assert reply_codes(text) == (None, None)


@settings(max_examples=300)
@given(_CODES, _STATUSES, _TEXTS)
def test_the_fast_decision_is_the_slow_one(
    classifier: Classifier, code: int | None, enhanced: str | None, text: str
) -> None:
    assert classifier._decide(code, enhanced, text) == _slow(classifier, code, enhanced, text)


def test_the_fast_decision_is_the_slow_one_on_every_golden_case(classifier: Classifier) -> None:
    for case in classify_golden.cases():
        assert classifier._decide(*case) == _slow(classifier, *case), case
