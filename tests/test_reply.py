"""The SMTP reply, taken apart once for every part that reads one."""

from hypothesis import given
from hypothesis import strategies as st

from mta_logging.reply import Reply, one_line, parse_reply, parse_status


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
