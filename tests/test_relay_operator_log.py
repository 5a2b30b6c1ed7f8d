"""The relay's own log: a line per accepted message and per recipient outcome at INFO, as
text or JSON lines, on stderr or in a file that logrotate can move away."""

from __future__ import annotations

import json
import re

from relay_sink import Sink
from test_relay_e2e import base_config, relay, send, wait_until


def test_at_info_every_message_and_every_outcome_has_a_line(tmp_path):
    with Sink() as sink, relay(tmp_path, base_config(sink.port)) as running:
        job = send(running.port, ["ok@a.test", "reject@a.test", "tempfail@b.test"])
        wait_until(lambda: "tempfail@b.test" in running.log.read_text(), what="outcome lines")
        assert running.stop() == 0
    log = running.log.read_text()
    assert re.search(rf" INFO mta_logging.relay.inbound: {job}: from=<sender@example.test>, "
                     rf"size=\d+, nrcpt=3, client=client.test\[127.0.0.1\]\n", log)
    assert re.search(rf": {job}: to=<ok@a.test>, relay=127.0.0.1, delay=\d+\.\d, dsn=2.0.0, "
                     r"status=sent \(250 2.0.0 Ok: delivered to 1 recipient\(s\)\)\n", log)
    assert re.search(rf": {job}: to=<reject@a.test>, relay=127.0.0.1, delay=\d+\.\d, "
                     r"dsn=5.1.1, status=bounced \(550 5.1.1 <reject@a.test>: Recipient "
                     r"address rejected: User unknown\)\n", log)
    assert re.search(rf": {job}: to=<tempfail@b.test>, relay=127.0.0.1, delay=\d+\.\d, "
                     r"dsn=4.2.0, status=deferred \(451 4.2.0 ", log)


def test_json_lines_in_a_log_file_that_logrotate_moves(tmp_path):
    log_file = tmp_path / "relay-ops.log"
    with Sink() as sink, relay(tmp_path, base_config(sink.port, accounting=False),
                               args=["--log-format", "json", "--log-file", str(log_file)]
                               ) as running:
        first = send(running.port, ["one@a.test"])
        wait_until(lambda: log_file.exists() and '"status": "sent"' in log_file.read_text(),
                   what="the first outcome")
        log_file.rename(tmp_path / "relay-ops.log.1")  # what logrotate does
        second = send(running.port, ["two@a.test"])
        wait_until(lambda: log_file.exists() and '"status": "sent"' in log_file.read_text(),
                   what="the second outcome, in a new file")
        assert running.stop() == 0
    rotated = [json.loads(line) for line in
               (tmp_path / "relay-ops.log.1").read_text().splitlines()]
    current = [json.loads(line) for line in log_file.read_text().splitlines()]
    sent = [r for r in rotated + current if r.get("status") == "sent"]
    assert [(r["queue_id"], r["rcpt"], r["relay"], r["dsn"], r["level"], r["logger"])
            for r in sent] == [
        (first, "one@a.test", "127.0.0.1", "2.0.0", "INFO", "mta_logging.relay.queue"),
        (second, "two@a.test", "127.0.0.1", "2.0.0", "INFO", "mta_logging.relay.queue")]
    assert sent[0] in rotated and sent[1] in current
    assert sent[1]["reply"] == "250 2.0.0 Ok: delivered to 1 recipient(s)"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", sent[1]["time"])
    accepted = [r for r in current if r.get("queue_id") == second and "nrcpt" in r]
    assert accepted and accepted[0]["message"].startswith(f"{second}: from=<sender@")
    assert "mta-logging relay: listening on" in running.log.read_text()  # still on stderr
