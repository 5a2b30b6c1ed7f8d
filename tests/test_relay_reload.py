"""Reload on SIGHUP (under load, nothing lost; a bad config refused and the old one kept),
`relay --check`, and the command line's overrides."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
from pathlib import Path

import yaml
from relay_sink import Sink
from test_relay_e2e import ROOT, base_config, records, relay, send, wait_until


def test_reload_under_load_changes_routes_and_refuses_a_bad_config(tmp_path):
    with Sink() as first, Sink() as second:
        config = base_config(first.port)
        with relay(tmp_path, config) as running:
            def hup(config: dict[str, object]) -> None:
                (tmp_path / "relay.yaml").write_text(yaml.safe_dump(config))
                os.kill(running.process.pid, signal.SIGHUP)

            held_open = smtplib.SMTP("127.0.0.1", running.port, timeout=10)
            held_open.ehlo("client.test")
            sent: list[str] = []
            stop = threading.Event()

            def load() -> None:
                n = 0
                while not stop.is_set() and n < 200:
                    send(running.port, [f"load{n}@x.test"])
                    sent.append(f"load{n}@x.test")
                    n += 1

            sender = threading.Thread(target=load)
            sender.start()
            wait_until(lambda: len(sent) >= 5, what="load under way")
            hup({**config, "max_recipients": 0})
            wait_until(lambda: running.log.read_text().count("reload refused") == 1,
                       what="a bad value refused")
            hup({**config, "listen": "127.0.0.1:1"})
            wait_until(lambda: running.log.read_text().count("reload refused") == 2,
                       what="a change that needs a restart refused")
            hup({**config, "routes": {"*": f"127.0.0.1:{second.port}"}, "log_level": "WARNING"})
            wait_until(lambda: len(second.delivered()) >= 3, what="mail by the new route")
            stop.set()
            sender.join(60)
            # the connection opened before the reloads still works
            assert held_open.sendmail("s@example.test", ["held@x.test"], b"Subject: x\r\n\r\n"
                                      ) == {}
            held_open.quit()
            expected = sorted([*sent, "held@x.test"])
            wait_until(lambda: sorted(first.delivered() + second.delivered()) == expected,
                       what="every message delivered")
            assert running.stop() == 0
        log = running.log.read_text()
    assert sorted(first.delivered() + second.delivered()) == expected  # each exactly once
    assert sorted(r["rcpt"] for r in records(tmp_path)) == expected
    assert "held@x.test" in second.delivered()
    assert ("ERROR mta_logging.relay: reload refused, the relay goes on with its current "
            "settings: relay.yaml: max_recipients: 0 is not valid;") in log
    assert ("ERROR mta_logging.relay: reload refused, the relay goes on with its current "
            "settings: relay.yaml: listen: '127.0.0.1:1' is not valid; cannot change while the "
            "relay runs (it is '127.0.0.1:0'); restart the relay\n") in log
    # log_level WARNING is in force after the good reload: no INFO line for the new route's
    for rcpt in second.delivered():
        assert f"to=<{rcpt}>" not in log


def check(workdir: Path, config: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    (workdir / "relay.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "mta_logging.cli", "relay", "--config", "relay.yaml", *args],
        cwd=workdir, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_check_validates_as_the_relay_would_and_creates_nothing(tmp_path):
    config = base_config(2600, listen="127.0.0.1:0")
    done = check(tmp_path, config, "--check")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == ("mta-logging relay: relay.yaml: OK (listen 127.0.0.1:0, spool spool, "
                           "accounting ./accounting)\n")
    assert not (tmp_path / "spool").exists() and not (tmp_path / "accounting").exists()

    (tmp_path / "a-file").write_text("")
    done = check(tmp_path, {**config, "spool_dir": "a-file/spool"}, "--check")
    assert done.returncode == 2
    assert done.stderr == ("mta-logging relay: spool_dir: 'a-file/spool' is not valid; must be "
                           "a directory (or to be made one), but a-file is not a directory\n")
    done = check(tmp_path, config, "--check", "--accounting-path", "a-file")
    assert done.returncode == 2
    assert done.stderr.startswith("mta-logging relay: accounting.path: 'a-file/delivered' is "
                                  "not valid; must be a directory")


def test_a_port_conflict_is_found_before_any_accounting_file_is_made(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = check(tmp_path, base_config(2600, listen=f"127.0.0.1:{port}"))
    assert done.returncode == 2
    assert done.stderr.startswith(f"mta-logging relay: listen: '127.0.0.1:{port}' is not "
                                  "valid; cannot listen there (")
    assert not (tmp_path / "accounting").exists() and not (tmp_path / "spool").exists()


def test_command_line_overrides_the_config(tmp_path):
    with Sink() as sink, relay(tmp_path, base_config(sink.port, listen="127.0.0.1:1"),
                               args=["--listen", "127.0.0.1:0", "--spool-dir", "other-spool",
                                     "--accounting-path", "other-accounting"]) as running:
        send(running.port, ["ok@x.test"])
        wait_until(lambda: sink.delivered() == ["ok@x.test"], what="delivery")
        assert running.stop() == 0
    assert (tmp_path / "other-spool" / "queue").is_dir()
    assert list((tmp_path / "other-accounting" / "delivered").glob("*.tsv"))
    assert not (tmp_path / "spool").exists()
