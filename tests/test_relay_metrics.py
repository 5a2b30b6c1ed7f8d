"""Metrics and health on the relay's `metrics` listener: a real scrape parsed with
prometheus_client's parser, the values checked against the records written."""

from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import urllib.error
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families
from relay_sink import Sink
from test_relay_e2e import base_config, records, relay, send, wait_until

from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Kind, Outcome
from mta_logging.relay.metrics import MetricsServer, RecordCounter, RelayMetrics


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(f"{base}/metrics")
    assert status == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_scrape_matches_the_records_written(tmp_path):
    with Sink() as sink:
        config = base_config(sink.port, metrics="127.0.0.1:0", max_recipients=3,
                             max_connections_per_ip=2, dsn={"enabled": False})
        with relay(tmp_path, config) as running:
            match = re.search(r"metrics on (127\.0\.0\.1:\d+)\)", running.log.read_text())
            assert match, running.log.read_text()
            base = f"http://{match.group(1)}"
            send(running.port, ["ok1@a.test", "reject@a.test", "tempfail@b.test"])
            send(running.port, ["ok2@a.test"])
            with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
                client.ehlo("client.test")
                client.mail("sender@example.test")
                for n in range(3):
                    assert client.rcpt(f"r{n}@c.test")[0] == 250
                assert client.rcpt("r3@c.test")[0] == 452
                client.rset()
            wait_until(lambda: len(records(tmp_path)) == 4, what="four records")
            wait_until(lambda: scrape(base)[("mta_logging_connections_open", ())] == 0,
                       what="the clients' connections closed")
            held = [smtplib.SMTP("127.0.0.1", running.port, timeout=10) for _ in range(2)]
            with pytest.raises(smtplib.SMTPConnectError):
                smtplib.SMTP("127.0.0.1", running.port, timeout=10)  # a third from the address
            samples = scrape(base)
            for client in held:
                client.quit()
            assert get(f"{base}/healthz") == (200, "ok\n")
            assert get(f"{base}/readyz") == (200, "ready\n")
            assert get(f"{base}/nothing")[0] == 404
            assert running.stop() == 0

    written = Counter((r["type"], r.get("bounceCat", "")) for r in records(tmp_path))
    label = {"d": "delivered", "df": "deferred", "b": "bounce"}
    for (kind, category), count in written.items():
        key = ("mta_logging_records_total",
               (("bounce_category", category), ("kind", label[kind])))
        assert samples[key] == count
    assert sum(v for (name, _), v in samples.items() if name == "mta_logging_records_total") == 4
    assert samples[("mta_logging_delivery_latency_seconds_count", ())] == written[("d", "")]
    assert samples[("mta_logging_messages_received_total", ())] == 2
    assert samples[("mta_logging_messages_refused_total", (("reason", "452 4.5.3"),))] == 1
    assert samples[("mta_logging_accounting_write_errors_total", ())] == 0
    assert samples[("mta_logging_queue_messages", (("state", "deferred"),))] == 1
    assert samples[("mta_logging_queue_messages", (("state", "held"),))] == 0
    assert samples[("mta_logging_queue_oldest_message_age_seconds", ())] > 0
    assert samples[("mta_logging_connections_open", ())] == 2
    assert samples[("mta_logging_connections_refused_total", ())] == 1
    assert samples[("mta_logging_free_space_bytes", (("directory", "spool"),))] > 0
    assert samples[("mta_logging_free_space_bytes",
                    (("directory", "accounting/delivered"),))] > 0


async def test_every_kind_label_is_spelt_as_kind_options_and_directories_spell_it(tmp_path):
    metrics = RelayMetrics()
    logger = logging.getLogger(f"test.relay.metrics.{tmp_path.name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    counter = RecordCounter(metrics)
    logger.addHandler(counter)
    try:
        accounting = AccountingLogger(logger)
        for kind in Kind:
            accounting.record(Outcome(kind, f"{kind.code}@x.test"))
    finally:
        logger.removeHandler(counter)
    server = MetricsServer(metrics, lambda: [])
    await server.start("127.0.0.1", 0)
    try:
        assert server.address is not None
        samples = await asyncio.to_thread(scrape, f"http://127.0.0.1:{server.address[1]}")
    finally:
        await server.stop()
    labels = [dict(labels)["kind"] for (name, labels), value in samples.items()
              if name == "mta_logging_records_total" and value == 1]
    # the kinds' directory names: what --kind, the config's kind keys and the file tree say
    assert sorted(labels) == ["bounce", "deferred", "delivered", "feedback", "received",
                              "remote_bounce"]
