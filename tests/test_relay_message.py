"""Header fields read from message bytes, and the Received field the relay adds."""

from __future__ import annotations

from email.utils import formatdate

from mta_logging.outcome import Kind, Outcome
from mta_logging.relay import message
from mta_logging.relay.message import hop_count, parse_headers, protocol_name, received_header


def test_headers_first_occurrence_unfolded():
    content = (b"Received: from a\r\nReceived: from b\r\nSubject: a long\r\n  folded subject\r\n"
               b"X-Campaign:  spring-sale \r\n\r\nX-Not-A-Header: body\r\n")
    assert parse_headers(content) == {
        "Received": "from a", "Subject": "a long  folded subject", "X-Campaign": "spring-sale"}


def test_bare_lf_messages_and_header_only_messages():
    assert parse_headers(b"Subject: hi\nX-Id: 7\n\nbody") == {"Subject": "hi", "X-Id": "7"}
    assert parse_headers(b"Subject: only headers\r\n") == {"Subject": "only headers"}


def test_eight_bit_headers_never_fail():
    headers = parse_headers(b"Subject: caf\xe9 \xc3\xa9t\xc3\xa9\r\n\r\n")
    assert headers["Subject"] == "caf\udce9 été"
    assert parse_headers(b"garbage without colon\r\n: empty name\r\n\r\n") == {}


def test_received_field():
    field = received_header(hostname="relay.example.test", queue_id="ABC", client_ip="127.0.0.1",
                            client_helo="client.test", protocol="ESMTPS", rcpts=("a@b.test",),
                            when=0)
    text = field.decode()
    assert text.startswith("Received: from client.test ([127.0.0.1])\r\n\tby relay.example.test "
                           "(mta-logging) with ESMTPS id ABC\r\n\tfor <a@b.test>; ")
    assert text.endswith("\r\n") and text.count("\r\n") == 3


def test_received_field_dates_the_second_of_its_time():
    def date_of(when: float) -> str:
        field = received_header(hostname="r", queue_id="Q", client_ip=None, client_helo=None,
                                protocol="SMTP", rcpts=("a@b",), when=when)
        return field.decode().rpartition("; ")[2]

    assert date_of(1700000000.9) == formatdate(1700000000, localtime=True) + "\r\n"
    assert date_of(1700000001.2) == formatdate(1700000001, localtime=True) + "\r\n"
    assert date_of(1700000000.1) == formatdate(1700000000, localtime=True) + "\r\n"


def test_received_field_cannot_be_forged_by_the_helo_name():
    field = received_header(hostname="r", queue_id="Q", client_ip=None,
                            client_helo="evil\r\nX-Injected: 1", protocol="SMTP",
                            rcpts=("a@b", "c@d"), when=0)
    assert b"\r\nX-Injected" not in field
    assert b"for <" not in field  # several recipients: no "for" clause


def test_protocol_names():
    assert protocol_name(esmtp=False, tls=False, authenticated=False, smtputf8=False) == "SMTP"
    assert protocol_name(esmtp=True, tls=True, authenticated=True, smtputf8=False) == "ESMTPSA"
    assert protocol_name(esmtp=True, tls=False, authenticated=False, smtputf8=True) == "UTF8SMTP"


def test_hop_count_reads_only_the_header():
    content = b"Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: in the body\r\n"
    assert hop_count(content) == 2


def test_message_headers_is_a_lazy_mapping_with_the_same_fields(monkeypatch):
    content = b"Subject: hi\r\nX-Campaign: c1\r\n\r\nX-Body: no\r\n"
    parsed = []
    real_parse = message.parse_headers

    def counting_parse(block: bytes) -> dict[str, str]:
        parsed.append(1)
        return real_parse(block)

    monkeypatch.setattr(message, "parse_headers", counting_parse)
    headers = message.MessageHeaders(content)
    assert parsed == []  # nothing parsed until someone looks
    assert Outcome(Kind.DELIVERED, "a@b", headers=headers).header("x-campaign") == "c1"
    assert dict(headers) == {"Subject": "hi", "X-Campaign": "c1"}
    assert parsed == [1]
