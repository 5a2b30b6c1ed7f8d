"""End to end: returned mail to `mta-logging relay`. A VERP'd message goes out through the relay
to a sink, one transaction per recipient; a DSN for it, sent to the relay's bounce domain from
another client address, becomes an rb record with the right jobId; a forged VERP token is
refused at RCPT; an ARF report becomes an f record; what is neither is quarantined byte for byte.
"""

from __future__ import annotations

import smtplib
from pathlib import Path

from relay_sink import Sink
from test_relay_e2e import base_config, records, relay, wait_until

from mta_logging.verp import Verp

SAMPLES = Path(__file__).parent / "data" / "returns"
SECRET = b"an end-to-end secret, long enough"
BOUNCE_DOMAIN = "bounces.example.test"
VERP = Verp(SECRET, BOUNCE_DOMAIN)
MESSAGE = (b"From: news@example.test\r\nTo: list@example.test\r\nSubject: returns\r\n"
           b"Message-ID: <issue-12@example.test>\r\n\r\nHello.\r\n")


def config(tmp_path: Path, sink_port: int) -> dict[str, object]:
    (tmp_path / "verp.secret").write_bytes(SECRET + b"\n")
    settings = base_config(sink_port, bounces={
        "domains": [BOUNCE_DOMAIN], "complaint_addresses": ["fbl@example.test"],
        "verp": {"enabled": True, "secret_file": "verp.secret"}})
    settings["relay_networks"] = ["127.0.0.1/32"]  # 127.0.0.2 is "anyone"
    settings["accounting"] = {"path": "./accounting", "records": "d,df,b,rb,f", "utc": True}
    return settings


def returned(port: int, rcpt: str, message: bytes) -> tuple[int, bytes]:
    """Send ``message`` (its lines ended with CRLF) from <> to ``rcpt`` as a remote MTA would,
    from 127.0.0.2: the reply to RCPT when it is refused, else to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0)) as client:
        client.ehlo("mx.remote.test")
        client.mail("<>")
        code, text = client.rcpt(rcpt)
        if code != 250:
            return code, text
        return client.data(message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def of_kind(tmp_path: Path, kind: str) -> list[dict[str, str]]:
    return [record for record in records(tmp_path) if record["type"] == kind]


def test_verp_out_and_the_dsn_back_become_an_rb_record(tmp_path: Path) -> None:
    with Sink() as sink, relay(tmp_path, config(tmp_path, sink.port)) as running:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
            client.sendmail("sender@example.test", ["ok1@a.test", "ok2@a.test"], MESSAGE)
        assert sorted(sink.wait_for_recipients(2)) == ["ok1@a.test", "ok2@a.test"]
        wait_until(lambda: len(of_kind(tmp_path, "d")) == 2, what="the delivered records")
        # one transaction per recipient, each with its own return path
        paths = {message.rcpts: message.mail_from for message in sink.messages}
        job = of_kind(tmp_path, "d")[0]["jobId"]
        assert paths == {("ok1@a.test",): VERP.encode(job, 0),
                         ("ok2@a.test",): VERP.encode(job, 1)}

        # anyone may send returned mail (127.0.0.2 may not relay)
        assert returned(running.port, "ok1@b.test", MESSAGE)[0] == 550
        dsn = (SAMPLES / "postfix.eml").read_bytes().replace(
            b"bounces+gaydanrrgiztinjwg44dsqkcim-0-jpiebiqqj6whw@bounces.example.com",
            VERP.encode(job, 1).encode()).replace(b"alice@example.org", b"ok2@a.test")
        assert returned(running.port, VERP.encode(job, 1), dsn) == (
            250, b"2.0.0 Ok: bounce, 1 records")
        wait_until(lambda: of_kind(tmp_path, "rb") != [], what="the rb record")
        (bounce,) = of_kind(tmp_path, "rb")
        assert {k: v for k, v in bounce.items() if k != "timeLogged"} == {
            "type": "rb", "orig": "sender@example.test", "rcpt": "ok2@a.test",
            "orcpt": "ok2@a.test", "jobId": job, "dsnAction": "failed", "dsnStatus": "5.1.1",
            "dsnDiag": "smtp; 550 5.1.1 <ok2@a.test>: Recipient address rejected: User unknown "
                       "in virtual mailbox table", "dsnMta": "dns; mx.example.org",
            "bounceCat": "bad-mailbox"}

        # a forged token is refused at RCPT; the bounce domain's plain addresses are not
        forged = VERP.encode(job, 1).replace("-1-", "-0-")
        assert returned(running.port, forged, dsn) == (
            550, f"5.1.1 <{forged}>: no such bounce address".encode())
        assert of_kind(tmp_path, "rb") == [bounce]
        assert running.stop() == 0
    assert "refused a VERP address whose token does not verify" in running.log.read_text()


def test_a_complaint_becomes_an_f_record_and_what_is_neither_is_quarantined(
        tmp_path: Path) -> None:
    with Sink() as sink, relay(tmp_path, config(tmp_path, sink.port)) as running:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
            client.sendmail("sender@example.test", ["frank@a.test"], MESSAGE)
        sink.wait_for_recipients(1)
        wait_until(lambda: of_kind(tmp_path, "d") != [], what="the delivered record")
        job = of_kind(tmp_path, "d")[0]["jobId"]
        # no VERP token in the report: the returned Message-ID traces the job
        arf = (SAMPLES / "yahoo_arf.eml").read_bytes().replace(
            b"<spring-sale-5@example.com>", b"<issue-12@example.test>").replace(
            b"frank@yahoo.com", b"frank@a.test")
        assert returned(running.port, "FBL@example.test", arf) == (
            250, b"2.0.0 Ok: complaint, 1 records")
        wait_until(lambda: of_kind(tmp_path, "f") != [], what="the f record")
        (complaint,) = of_kind(tmp_path, "f")
        assert {k: v for k, v in complaint.items() if k != "timeLogged"} == {
            "type": "f", "orig": "sender@example.test", "rcpt": "frank@a.test", "jobId": job,
            "feedbackType": "abuse", "userAgent": "Yahoo!-Mail-Feedback/2.0",
            "arrivalDate": "Tue, 1 Dec 2026 15:29:40 +0000", "sourceIp": "",
            "reportedDomain": "example.com"}

        unreadable = (SAMPLES / "plain" / "exchange2003_text.eml").read_bytes().replace(
            b"\n", b"\r\n")
        assert returned(running.port, f"bounces@{BOUNCE_DOMAIN}", unreadable) == (
            250, b"2.0.0 Ok: quarantined, 0 records")
        # a returned message and a message to relay do not share a transaction
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
            client.ehlo("client.test")
            client.mail("<>")
            assert client.rcpt(f"bounces@{BOUNCE_DOMAIN}")[0] == 250
            assert client.rcpt("someone@a.test") == (
                452, b"4.5.3 Error: returned mail goes in a transaction of its own")
        assert running.stop() == 0
    (kept,) = (tmp_path / "spool" / "quarantine").iterdir()
    assert kept.read_bytes() == unreadable
    assert (f"returned mail quarantined as spool/quarantine/{kept.name}: neither a delivery "
            f"status notification nor a feedback report ({len(unreadable)} bytes)"
            ) in running.log.read_text()
    assert len(sink.messages) == 1  # nothing returned was relayed
