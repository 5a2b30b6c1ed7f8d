"""SMTP AUTH: hashing off the event loop, the same cost for unknown users, backoff per client
address, RFC 4616's authorization identity, and a failure limit per connection."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import aiosmtplib
import pytest
from relay_sink import FakeResolver, make_certificate

from mta_logging.relay import passwords as passwords_module
from mta_logging.relay.config import load_settings
from mta_logging.relay.passwords import PasswordChecker, hash_password, verify_password
from mta_logging.relay.server import Relay

ALICE = hash_password("s3cret", iterations=1000)
ROOT = Path(__file__).resolve().parent.parent


def hash_command(stdin: str) -> subprocess.CompletedProcess[str]:
    """``mta-logging relay --hash-password`` with ``stdin`` piped in (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "mta_logging.cli", "relay", "--hash-password"],
                          input=stdin, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_hash_password_prints_a_hash_of_the_line_read():
    done = hash_command("correct horse\n")
    assert (done.returncode, done.stderr) == (0, "")
    hashed = done.stdout.rstrip("\n")
    assert hashed.startswith("pbkdf2_sha256$200000$") and verify_password("correct horse", hashed)


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"])
def test_hash_password_refuses_an_empty_password(stdin):
    done = hash_command(stdin)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("mta-logging relay: --hash-password: the password read is empty; "
                           "expected at least one character (one line on stdin, or at the "
                           "prompt)\n")


class Sleeps:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


async def test_passwords_are_hashed_in_a_thread_and_unknown_users_hash_a_dummy(monkeypatch):
    hashed_with: list[tuple[str, str]] = []  # (thread, iteration count of the hash)
    real_verify = passwords_module.verify_password

    def verify(password: str, hashed: str) -> bool:
        hashed_with.append((threading.current_thread().name, hashed.split("$")[1]))
        return real_verify(password, hashed)

    monkeypatch.setattr(passwords_module, "verify_password", verify)
    checker = PasswordChecker({"alice": ALICE}, sleep=Sleeps())
    assert await checker.check("192.0.2.1", b"alice", b"s3cret") == "alice"
    assert await checker.check("192.0.2.1", b"mallory", b"s3cret") is None
    assert await checker.check("192.0.2.1", b"alice", b"wrong") is None
    assert [iterations for _, iterations in hashed_with] == ["1000"] * 3  # unknown: one too
    assert threading.main_thread().name not in {thread for thread, _ in hashed_with}


async def test_failures_from_an_address_back_off_until_a_success_or_ten_quiet_minutes():
    sleeps = Sleeps()
    now = [1000.0]
    checker = PasswordChecker({"alice": ALICE}, sleep=sleeps, clock=lambda: now[0])
    for _ in range(6):
        await checker.check("192.0.2.1", b"alice", b"wrong")
    await checker.check("192.0.2.2", b"alice", b"wrong")  # another address: its own count
    assert sleeps.seconds == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 0.5]
    assert await checker.check("192.0.2.2", b"alice", b"s3cret") == "alice"
    await checker.check("192.0.2.2", b"alice", b"wrong")
    now[0] += 601
    await checker.check("192.0.2.1", b"alice", b"wrong")
    assert sleeps.seconds[7:] == [0.5, 0.5]


async def test_plain_may_not_act_as_another_user():
    checker = PasswordChecker({"alice": ALICE, "bob": ALICE}, sleep=Sleeps())
    assert await checker.check("192.0.2.1", b"alice", b"s3cret", authzid=b"bob") is None
    assert await checker.check("192.0.2.1", b"alice", b"s3cret", authzid=b"alice") == "alice"
    assert await checker.check("192.0.2.1", b"alice", b"s3cret", authzid=b"bob") is None  # cached


async def test_the_third_auth_failure_on_a_connection_is_answered_421_and_closed(
        tmp_path, monkeypatch):
    monkeypatch.setattr(passwords_module, "BACKOFF_FIRST", 0.01)  # the backoff: tested above
    files = make_certificate(tmp_path)
    if files is None:
        pytest.skip("openssl is not installed")
    cert, key = files
    settings = load_settings({
        "listen": "127.0.0.1:0", "hostname": "relay.example.test",
        "spool_dir": str(tmp_path / "spool"), "tls": {"cert": str(cert), "key": str(key)},
        "auth_users": {"alice": ALICE}, "shutdown_timeout": 1})
    relay = Relay(settings, accounting=None, resolver=FakeResolver({}, {}))
    await relay.start()
    try:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.address[1], timeout=10,
                               validate_certs=False, start_tls=False)
        await smtp.connect()
        await smtp.ehlo()
        await smtp.starttls()
        await smtp.ehlo()
        replies = []
        for password in ("one", "two", "three"):
            try:
                await smtp.auth_plain("alice", password)
            except aiosmtplib.SMTPResponseException as exc:
                replies.append((exc.code, exc.message))
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await smtp.noop()
    finally:
        await relay.stop()
    assert replies == [(535, "5.7.8 Authentication credentials invalid")] * 2 + [
        (421, "4.7.0 relay.example.test Too many authentication failures")]


async def test_without_users_every_attempt_fails_and_backs_off():
    sleeps = Sleeps()
    checker = PasswordChecker({}, sleep=sleeps)
    assert await checker.check("192.0.2.1", b"alice", b"s3cret") is None
    assert sleeps.seconds == [0.5]
