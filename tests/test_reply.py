"""The SMTP reply, taken apart once for every part that reads one."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta_logging import reply
from mta_logging.reply import (
    EmbeddedReply,
    Reply,
    find_reply,
    one_line,
    parse_reply,
    parse_status,
    reply_codes,
    single_spaced,
    without_continuations,
)

# Every character str.split() splits at, and a few that look like white space but are not.
WHITE_SPACE = [chr(c) for c in range(0x3001) if chr(c).isspace()]
SPACED = st.lists(st.sampled_from(["a", "550", "é", "\u200b", "\ufeff", "-"] + WHITE_SPACE)
                  | st.text(max_size=5), max_size=20).map("".join)


def test_code_status_and_text():
    assert parse_reply("550 5.1.1 <bob@example.org>: user unknown") == Reply(
        550, "5.1.1", "<bob@example.org>: user unknown", "550 5.1.1")


def test_continuation_lines_are_one_reply():
    reply = parse_reply("550-5.7.1 this message is\r\n550-5.7.1 likely spam\r\n550 5.7.1 bye")
    assert (reply.code, reply.enhanced, reply.head) == (550, "5.7.1", "550-5.7.1")
    assert reply.text == "this message is 550-5.7.1 likely spam 550 5.7.1 bye"


def test_code_without_status():
    assert parse_reply("421 try again later") == Reply(421, None, "try again later", "421")
    assert parse_reply("250") == Reply(250, None, "", "250")


def test_no_code():
    assert parse_reply("connection refused") == Reply(None, None, "connection refused")
    assert parse_reply("") == Reply(None, None, "")
    assert parse_reply(None) == Reply(None, None, "")


def test_numbers_that_are_not_a_reply():
    assert parse_reply("5501 messages").code is None
    assert parse_reply("650 bogus class").code is None
    # an IP address after the code is text, not a status
    assert parse_reply("554 5.7.1.2 rejected") == Reply(554, None, "5.7.1.2 rejected", "554")
    assert parse_reply("554 5.7.1. rejected").enhanced == "5.7.1"


def test_kind_code():
    assert parse_reply("451 4.3.0 later").kind_code == "4"
    assert parse_reply("nothing").kind_code == ""


def test_parse_status():
    assert parse_status("5.01.001") == ("5", "1", "1")
    assert parse_status(" 4.4.1 ") == ("4", "4", "1")
    assert parse_status("5.1") is None
    assert parse_status("") is None
    assert parse_status(None) is None


def test_one_line():
    assert one_line("  a \r\n\r\n b\n") == "a b"
    assert one_line(" plain ") == "plain"


@given(st.text())
def test_never_raises_and_text_is_one_line(message):
    reply = parse_reply(message)
    assert "\n" not in reply.text and "\r" not in reply.text
    assert reply.code is None or 200 <= reply.code < 600


# --- The remote server's reply inside a mail system's bounce text ---------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("SMTP error from remote mail server after RCPT TO:<jane@example.org>: host "
         "mx.example.org [192.0.2.1]: 550 5.1.1 <jane@example.org>: Recipient address rejected",
         EmbeddedReply(Reply(550, "5.1.1", "<jane@example.org>: Recipient address rejected",
                             "550 5.1.1"), "exim", "rcpt", "mx.example.org")),
        ("host mx.example.org [192.0.2.1]\n    SMTP error from remote mail server after MAIL "
         "FROM:<bob@example.com> SIZE=1834:\n    550-5.7.1 Sender rejected\n    550 5.7.1 see "
         "https://mx.example.org/policy",
         EmbeddedReply(Reply(550, "5.7.1", "Sender rejected see https://mx.example.org/policy",
                             "550-5.7.1"), "exim", "mail", "mx.example.org")),
        ("Delay reason: SMTP error from remote mail server after initial connection: "
         "421 Too many connections",
         EmbeddedReply(Reply(421, None, "Too many connections", "421"), "exim", "connect")),
        ("host mx.example.org[192.0.2.5] said: 550 5.1.1 <jane@example.org>: User unknown "
         "(in reply to RCPT TO command)",
         EmbeddedReply(Reply(550, "5.1.1", "<jane@example.org>: User unknown", "550 5.1.1"),
                       "postfix", "rcpt", "mx.example.org")),
        ("host mx.example.org [192.0.2.1] SMTP error from remote mail server after end of "
         "data: 552 5.3.4 Message size exceeds fixed limit",
         EmbeddedReply(Reply(552, "5.3.4", "Message size exceeds fixed limit", "552 5.3.4"),
                       "exim", "data", "mx.example.org")),
        ("SMTP error from remote mail server after pipelined RCPT TO:<jane@example.org>: 550 "
         "5.1.1 No such user",
         EmbeddedReply(Reply(550, "5.1.1", "No such user", "550 5.1.1"), "exim", "rcpt")),
        ("host mx.example.org[192.0.2.5] said: 552 5.3.4 Message too big (in reply to end of "
         "DATA command)",
         EmbeddedReply(Reply(552, "5.3.4", "Message too big", "552 5.3.4"), "postfix", "data",
                       "mx.example.org")),
        ("host mx.example.org[192.0.2.5] refused to talk to me: 554 Access denied",
         EmbeddedReply(Reply(554, None, "Access denied", "554"), "postfix", "connect",
                       "mx.example.org")),
        ("192.0.2.135 does not like recipient. Remote host said: 550 5.1.1 <jane@example.jp>: "
         "No such user Giving up on 192.0.2.135.",
         EmbeddedReply(Reply(550, "5.1.1", "<jane@example.jp>: No such user", "550 5.1.1"),
                       "qmail", "rcpt", "192.0.2.135")),
        ("Connected to 192.0.2.7 but sender was rejected. Remote host said: 553 sorry, your "
         "envelope sender domain must exist (#5.7.1)",
         EmbeddedReply(Reply(553, "5.7.1", "sorry, your envelope sender domain must exist "
                             "(#5.7.1)", "553"), "qmail", "mail", "192.0.2.7")),
        ("Sorry, we were unable to deliver your message to the following address. "
         "<jane@yahoo.com>: Remote host said: 554 delivery error: dd Not a valid recipient - "
         "atlas117.free.mail.ne1.yahoo.com [RCPT_TO]",
         EmbeddedReply(Reply(554, None, "delivery error: dd Not a valid recipient - "
                             "atlas117.free.mail.ne1.yahoo.com", "554"), "qmail", "rcpt")),
        ("Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not "
         "found by SMTP address lookup'",
         EmbeddedReply(Reply(550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not "
                             "found by SMTP address lookup", "550 5.1.10"), "exchange")),
        ("Remote Server returned '<mx.example.org #5.0.0 smtp; 550 5.7.1 Access denied>'",
         EmbeddedReply(Reply(550, "5.7.1", "Access denied", "550 5.7.1"), "exchange", "",
                       "mx.example.org")),
        ("jane@example.com #550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##",
         EmbeddedReply(Reply(550, "5.1.1", "RESOLVER.ADR.RecipNotFound; not found",
                             "550 5.1.1"), "exchange")),
        ("The error that the other server returned was: 550 5.2.1 The email account that you "
         "tried to reach is disabled.",
         EmbeddedReply(Reply(550, "5.2.1", "The email account that you tried to reach is "
                             "disabled.", "550 5.2.1"), "gmail")),
        (">>> RCPT To:<jane@example.org> <<< 550 5.1.1 <jane@example.org>... User unknown",
         EmbeddedReply(Reply(550, "5.1.1", "<jane@example.org>... User unknown", "550 5.1.1"),
                       "sendmail", "rcpt")),
        ("Diagnostic-Code: smtp; 552 5.2.2 Quota exceeded",
         EmbeddedReply(Reply(552, "5.2.2", "Quota exceeded", "552 5.2.2"), "diagnostic-code")),
    ],
    ids=lambda value: value.wrapper if isinstance(value, EmbeddedReply) else "",
)
def test_the_reply_is_pulled_out_of_the_wrapper(text: str, found: EmbeddedReply) -> None:
    assert find_reply(text) == found


def test_a_text_that_is_a_reply_has_no_wrapper() -> None:
    assert find_reply("550 5.1.1 550 5.1.1 <jane@example.org>: inactive") == EmbeddedReply(
        Reply(550, "5.1.1", "<jane@example.org>: inactive", "550 5.1.1"))
    assert find_reply("550-5.7.1 this message is\n550-5.7.1 likely spam\n550 5.7.1 bye") == (
        EmbeddedReply(Reply(550, "5.7.1", "this message is likely spam bye", "550-5.7.1")))


def test_prose_gives_the_code_and_status_it_holds() -> None:
    found = find_reply("Sorry, I couldn't find any host named example.com. (#5.1.2)")
    assert found == EmbeddedReply(
        Reply(None, "5.1.2", "Sorry, I couldn't find any host named example.com. (#5.1.2)"))
    assert find_reply("connect to 10.4.2.1: Rejected after 450 seconds") == EmbeddedReply(
        Reply(None, None, "connect to 10.4.2.1: Rejected after 450 seconds"))
    assert find_reply(None) == EmbeddedReply(Reply(None, None, ""))


def test_without_continuations() -> None:
    assert without_continuations("this message is 550-5.7.1 likely spam") == (
        "this message is likely spam")
    assert without_continuations("see 10.0.0.1-550 here") == "see 10.0.0.1-550 here"


def test_single_spaced() -> None:
    assert single_spaced("  550 5.1.1\t user\r\n   unknown\u2028 ") == "550 5.1.1 user unknown"
    assert single_spaced("550 5.1.1 user unknown") == "550 5.1.1 user unknown"
    assert single_spaced("550\xa0user\u3000unknown") == "550 user unknown"


@given(SPACED)
def test_single_spaced_is_joining_the_words(text: str) -> None:
    assert single_spaced(text) == " ".join(text.split())


@given(st.text())
def test_find_reply_never_raises_and_its_text_is_one_line(text):
    found = find_reply(text)
    assert "\n" not in found.reply.text and "\r" not in found.reply.text
    assert found.reply.code is None or 200 <= found.reply.code < 600


# The pieces of wrapper texts, mixed: wrapper phrases, names, digits that are and are not codes.
WRAPPER_PIECES = ["Remote host said:", "does not like recipient.", "failed after I sent the",
                  "message.", "Connected to", "but sender was rejected.", "greeting failed.",
                  "192.0.2.1", "mx-1.example.org", "<a@b.example>", "a.b-c", "550", "5.1.1",
                  "550-5.7.1", "421", "(#5.1.2)", "said:", "smtp;", "#", "<<<", "'", ".", "-",
                  "x", "Giving up on", "host", "[192.0.2.9]", "18", "67", "0", "9", "é", "1.0.1"]
WRAPPER_TEXTS = st.lists(st.sampled_from(WRAPPER_PIECES) | st.text(max_size=4), max_size=14).map(
    lambda parts: " ".join(parts) if len(parts) % 2 else "".join(parts))
# qmail's pattern as it was written before its names were made to start only where a run of the
# characters they can hold starts
PLAIN_QMAIL = re.compile(
    r"(?:(?:(?P<host>[\w.-]++) (?P<recipient>does not like recipient)|Connected to"
    r" (?P<host2>\S++) but (?:(?P<sender>sender was rejected)|(?P<greeting>greeting failed)"
    r"|(?P<helo>my name was rejected))|(?P<host3>\S++) (?P<data>failed after I sent the"
    r" message))\. )?Remote host said: " + reply._REPLY_START, re.IGNORECASE)


@given(WRAPPER_TEXTS)
def test_qmail_names_found_from_their_start_give_the_plain_pattern_s_match(text: str) -> None:
    qmail = next(wrapper for wrapper in reply._WRAPPERS if wrapper.name == "qmail")
    fast, plain = qmail.pattern.search(text), PLAIN_QMAIL.search(text)
    assert (fast and (fast.span(), fast.groupdict())) == (plain and (plain.span(),
                                                                     plain.groupdict()))


@given(WRAPPER_TEXTS.map(lambda text: text.translate(str.maketrans("", "", "2345"))))
def test_a_text_without_the_digits_2_to_5_holds_no_reply_code_or_status(text: str) -> None:
    # find_reply and reply_codes search such a text for no wrapper, code or status: no pattern
    # that reads one finds one there
    patterns = [reply._START, reply._CONTINUATION, reply._CODE_IN_TEXT, reply._STATUS_IN_TEXT,
                *(wrapper.pattern for wrapper in reply._WRAPPERS)]
    line = single_spaced(text)
    assert [pattern.pattern for pattern in patterns if pattern.search(line)] == []
    assert find_reply(text) == EmbeddedReply(Reply(None, None, line))
    assert reply_codes(text) == (None, None)
