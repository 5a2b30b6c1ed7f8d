"""``mta-logging ship`` to webhooks: signed batches, retried until a 2xx, given up when told."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ship_servers import WebhookReceiver, mta_logging_command, ship_config

from mta_logging.archive import HOLD_MARKER, shipped_marker
from mta_logging.report.reader import Reader
from mta_logging.ship.webhook import signature

WORKERS = Path(__file__).parent / "ship_workers.py"


def test_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    # printf "1764582000.[]" | openssl dgst -sha256 -hmac s3cret
    assert signature("s3cret", "1764582000", b"[]") == (
        "sha256=ebf171d2c0622291aeef030a3af644882091edb3b5acef841b4a94abc34b26a2")


def test_batches_are_retried_until_acknowledged_and_each_record_arrives(tmp_path: Path) -> None:
    accounting = tmp_path / "acct"
    subprocess.run([sys.executable, str(WORKERS), str(accounting), "--count", "300"],
                   check=True, timeout=60)
    receiver = WebhookReceiver("s3cret", fail_first=3)
    try:
        config = ship_config(tmp_path, paths=[str(accounting)], state_dir=str(tmp_path / "st"),
                             host="app1", webhooks=[
                                 {"url": receiver.url, "secret": "s3cret", "batch": 50,
                                  "backoff_initial": 0.05, "backoff_max": 0.2}])
        done = subprocess.run(mta_logging_command("ship", "--config", str(config), "--once"),
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        assert "webhook webhook1: batch not acknowledged (HTTP 503); again in" in done.stderr
        assert "HTTP Request:" not in done.stderr  # no line per POST from httpx
        assert receiver.bad_signatures == 0
        ids = [record["eventId"] for record in receiver.records]
        assert len(ids) == len(set(ids)) == 300
        assert {record["host"] for record in receiver.records} == {"app1"}
        assert sorted(r["rcpt"] for r in receiver.records) == sorted(
            f"w0-{n}@d{n % 4}.example" for n in range(300))
        files = list(Reader([accounting]).files())
        assert files and all((file.parent / HOLD_MARKER).exists() for file in files)
        assert all(shipped_marker(file).read_text() == str(file.stat().st_size)
                   for file in files)  # every file acknowledged to its end: retention may go
    finally:
        receiver.close()


def test_a_batch_is_given_up_after_retry_for(tmp_path: Path) -> None:
    accounting = tmp_path / "acct"
    subprocess.run([sys.executable, str(WORKERS), str(accounting), "--count", "5"],
                   check=True, timeout=60)
    receiver = WebhookReceiver("other secret")  # every signature is wrong: 401 for ever
    try:
        config = ship_config(tmp_path, paths=[str(accounting)], state_dir=str(tmp_path / "st"),
                             host="app1", webhooks=[
                                 {"url": receiver.url, "secret": "s3cret", "retry_for": 0.3,
                                  "backoff_initial": 0.05, "backoff_max": 0.1}])
        done = subprocess.run(mta_logging_command("ship", "--config", str(config), "--once"),
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        assert "gave up a batch of" in done.stderr and "(HTTP 401)" in done.stderr
        assert receiver.records == [] and receiver.bad_signatures >= 2
    finally:
        receiver.close()


def test_a_new_file_on_a_reused_inode_with_the_same_size_is_shipped(tmp_path: Path) -> None:
    accounting = tmp_path / "acct" / "delivered"
    accounting.mkdir(parents=True)
    path = accounting / "d.1.tsv"
    receiver = WebhookReceiver("s3cret")
    try:
        config = ship_config(tmp_path, paths=[str(accounting)], state_dir=str(tmp_path / "st"),
                             host="app1", webhooks=[{"url": receiver.url, "secret": "s3cret"}])
        for round_number, letter in enumerate("ab"):
            # the same inode and size, other records (as when a pruned file's inode is reused)
            with open(path, "r+b" if path.exists() else "wb") as file:
                file.write(f"rcpt\n{letter}1@x.org\n{letter}2@x.org\n".encode())
            os.utime(path, ns=(10**18 + round_number, 10**18 + round_number))
            done = subprocess.run(mta_logging_command("ship", "--config", str(config), "--once"),
                                  capture_output=True, text=True, timeout=90)
            assert done.returncode == 0, done.stderr
        assert [record["rcpt"] for record in receiver.records] == [
            "a1@x.org", "a2@x.org", "b1@x.org", "b2@x.org"]
    finally:
        receiver.close()
