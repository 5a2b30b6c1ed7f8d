"""`mta-logging queue`: the queue listed and acted on, on a stopped relay's spool and through a
running relay's control socket (under load: nothing lost, nothing delivered twice)."""

from __future__ import annotations

import json
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from relay_sink import Sink
from test_relay_e2e import base_config, records, relay, send, wait_until

from mta_logging.cli import main
from mta_logging.relay.config import load_settings
from mta_logging.relay.server import Relay
from mta_logging.relay.spool import Envelope, Spool, SpoolLock

CONTENT = b"Subject: queued\r\nX-Campaign: autumn\r\n\r\nbody\r\n"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["queue", *args])
    out, err = capsys.readouterr()
    return code, out, err


def stopped_spool(tmp_path: Path) -> tuple[Path, Spool]:
    """A relay config and its spool with two messages: Q1 deferred twice (one recipient of
    three delivered), Q2 never tried."""
    config = tmp_path / "relay.yaml"
    config.write_text(yaml.safe_dump({"spool_dir": str(tmp_path / "spool"), "accounting": {
        "path": str(tmp_path / "accounting")}}))
    spool = Spool.open(tmp_path / "spool")
    spool.store("Q1", Envelope("a@src.test", ("x@one.test", "y@two.test", "z@one.test"),
                               time.time() - 600), CONTENT)
    spool.journal("Q1", ["d 1", f"a 2 {time.time() + 300:.3f}",
                         "e 451 4.2.0 <x@one.test>: Mailbox busy"])
    spool.store("Q2", Envelope("", ("w@two.test",), time.time()), CONTENT)
    return config, spool


def listed(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    code, out, err = run(capsys, "list", "--json", *args)
    assert code == 0, err
    result: list[dict[str, Any]] = json.loads(out)
    return result


def test_list_on_a_stopped_relay_shows_what_is_pending(tmp_path, capsys):
    config, _ = stopped_spool(tmp_path)
    entries = listed(capsys, "--config", str(config))
    assert [(e["id"], e["state"], e["sender"], e["recipients"], e["attempts"],
             e["last_error"]) for e in entries] == [
        ("Q1", "deferred", "a@src.test", ["x@one.test", "z@one.test"], 2,
         "451 4.2.0 <x@one.test>: Mailbox busy"),
        ("Q2", "active", "", ["w@two.test"], 0, ""),
    ]
    assert entries[0]["size"] == len(CONTENT) and entries[0]["next_try"] > time.time()
    assert [e["id"] for e in listed(capsys, "--spool-dir", str(tmp_path / "spool"),
                                    "--domain", "TWO.test")] == ["Q2"]
    assert [e["id"] for e in listed(capsys, "--config", str(config), "--state", "deferred")
            ] == ["Q1"]

    code, out, _ = run(capsys, "list", "--config", str(config))
    assert code == 0
    assert "Q1  deferred  age   10m" in out
    assert "    (451 4.2.0 <x@one.test>: Mailbox busy)\n    x@one.test\n    z@one.test\n" in out
    assert out.endswith("-- 2 message(s), 3 recipient(s) pending\n")

    code, out, _ = run(capsys, "show", "Q1", "--config", str(config))
    assert code == 0
    assert "recipient: <y@two.test> done\n" in out and "Subject: queued\r\nX-Campaign" in out


def test_the_size_listed_is_the_size_the_relay_logged_not_the_queue_files(tmp_path, capsys):
    with Sink() as sink, relay(tmp_path, base_config(sink.port)) as running:
        job = send(running.port, ["tempfail@x.test"])
        wait_until(lambda: len(records(tmp_path)) == 1, what="the deferral recorded")
        where = ("--config", str(tmp_path / "relay.yaml"), "--spool-dir",
                 str(tmp_path / "spool"))
        running_list = run(capsys, "list", *where)
        running_show = run(capsys, "show", job, *where)
        assert run(capsys, "show", "NOSUCH", *where) == (
            1, "", "mta-logging queue show: NOSUCH: no such message in the queue\n")
        assert running.stop() == 0
        logged = re.search(rf"{job}: from=<sender@example.test>, size=(\d+),",
                           running.log.read_text())
    assert logged is not None
    size = int(logged.group(1))
    queue_file = tmp_path / "spool" / "queue" / job
    assert queue_file.stat().st_size > size
    assert [e["size"] for e in listed(capsys, *where)] == [size]
    for code, out, _ in (running_list, run(capsys, "list", *where)):
        assert code == 0 and f"{size:>8} bytes  attempts 1" in out
    for code, out, _ in (running_show, run(capsys, "show", job, *where)):
        assert code == 0 and f"\nsize: {size}\n" in out


def test_show_ends_the_headers_at_an_empty_line_of_bare_newlines_too(tmp_path, capsys):
    config, spool = stopped_spool(tmp_path)
    spool.store("Q3", Envelope("a@src.test", ("x@one.test",), time.time()),
                b"Subject: bare\nX-Campaign: lf\n\nthe body\n")
    code, out, _ = run(capsys, "show", "Q3", "--config", str(config))
    assert code == 0
    assert "Subject: bare\nX-Campaign: lf" in out and "the body" not in out


def test_hold_release_and_flush_on_a_stopped_relay_are_journaled(tmp_path, capsys):
    _, spool = stopped_spool(tmp_path)
    where = ("--spool-dir", str(spool.root))
    assert run(capsys, "hold", "Q1", "Q9", *where) == (
        1, "Q1: held\n", "mta-logging queue hold: Q9: no such message in the queue\n")
    assert [e["state"] for e in listed(capsys, *where)] == ["held", "active"]
    code, _, err = run(capsys, "flush", "Q1", *where)
    assert (code, err) == (1, "mta-logging queue flush: Q1: held; release it to deliver it\n")
    assert run(capsys, "release", "Q1", *where)[:2] == (
        0, "Q1: released; due at once when the relay starts\n")
    message = spool.read_message("Q1")
    assert message is not None and not message.held and message.next_try == 0
    assert run(capsys, "flush", "--all", *where)[:2] == (
        0, "Q1: due at once when the relay starts\nQ2: due at once when the relay starts\n")


@pytest.mark.parametrize("command", ["show", "flush", "hold", "release", "bounce", "delete"])
def test_every_subcommand_given_an_unknown_id_says_so_and_exits_1(tmp_path, capsys, command):
    config, _ = stopped_spool(tmp_path)
    assert run(capsys, command, "NOSUCH", "--config", str(config)) == (
        1, "", f"mta-logging queue {command}: NOSUCH: no such message in the queue\n")


def test_delete_and_bounce_record_every_pending_recipient_first(tmp_path, capsys):
    config, spool = stopped_spool(tmp_path)
    code, _, err = run(capsys, "delete", "Q1", "--spool-dir", str(spool.root))
    assert code == 1 and "bounce and delete need --config" in err
    assert run(capsys, "delete", "Q1", "--config", str(config))[:2] == (
        0, "Q1: admin-delete: recorded and removed\n")
    assert run(capsys, "bounce", "Q2", "--config", str(config))[:2] == (
        0, "Q2: admin-bounce: recorded and removed\n")
    assert list(spool.queue_dir.iterdir()) == [] and list(spool.state_dir.iterdir()) == []
    lines = sorted(line for path in (tmp_path / "accounting").rglob("*.tsv")
                   for line in path.read_text().splitlines()[1:])
    assert len(lines) == 3
    assert sum("x@one.test" in line and "admin-delete" in line for line in lines) == 1
    assert sum("z@one.test" in line and "admin-delete" in line for line in lines) == 1
    assert sum("w@two.test" in line and "admin-bounce" in line for line in lines) == 1
    assert not any("y@two.test" in line for line in lines)  # delivered before: not again


def test_without_a_spool_the_error_names_it(tmp_path, capsys):
    code, _, err = run(capsys, "list", "--spool-dir", str(tmp_path / "nowhere"))
    assert code == 2
    assert err == f"mta-logging queue: no spool at {tmp_path / 'nowhere'} (it has no queue/ " \
                  "directory)\n"


def test_on_a_running_relay_under_load_nothing_is_lost_or_delivered_twice(tmp_path, capsys):
    with Sink() as sink:
        sink.defer = {f"later{n}@x.test" for n in range(12)}
        config = base_config(sink.port, retry={"intervals": [3600],
                                               "max_queue_lifetime": 86400})
        with relay(tmp_path, config) as running:
            control = tmp_path / "spool" / "control.sock"
            assert stat.S_IMODE(control.stat().st_mode) == 0o600
            assert not SpoolLock(Spool(tmp_path / "spool")).acquire()  # the relay holds it
            jobs = [send(running.port, [f"now{n}@x.test", f"later{n}@x.test"])
                    for n in range(12)]
            wait_until(lambda: len(records(tmp_path)) == 24, what="first attempts recorded")
            where = ("--config", str(tmp_path / "relay.yaml"), "--spool-dir",
                     str(tmp_path / "spool"))
            entries = listed(capsys, *where)
            assert sorted(e["id"] for e in entries) == sorted(jobs)
            assert all(e["state"] == "deferred" and e["attempts"] == 1 for e in entries)

            more: list[str] = []
            sender = threading.Thread(target=lambda: more.extend(
                send(running.port, [f"load{n}@y.test"]) for n in range(20)))
            sender.start()
            assert run(capsys, "hold", jobs[0], *where)[:2] == (0, f"{jobs[0]}: held\n")
            assert run(capsys, "delete", jobs[1], *where)[:2] == (
                0, f"{jobs[1]}: admin-delete: recorded and removed\n")
            assert run(capsys, "bounce", jobs[2], *where)[0] == 0
            sink.defer = set()
            code, out, _ = run(capsys, "flush", "--domain", "x.test", *where)
            assert code == 0 and out.count("will be tried now") == 9
            sender.join(30)
            wait_until(lambda: sorted(sink.delivered()).count("later3@x.test") == 1,
                       what="flushed mail delivered")
            wait_until(lambda: len(listed(capsys, *where)) == 1, what="all but the held one")
            assert [(e["id"], e["state"]) for e in listed(capsys, *where)] == [
                (jobs[0], "held")]
            assert run(capsys, "release", jobs[0], *where)[0] == 0
            wait_until(lambda: not listed(capsys, *where), what="the released one delivered")
            assert running.stop() == 0

        delivered = sink.delivered()
    expected = ([f"now{n}@x.test" for n in range(12)] + [f"later{n}@x.test" for n in range(12)
                                                          if n not in (1, 2)]
                + [f"load{n}@y.test" for n in range(20)])
    notified = ["sender@example.test"]  # the bounce's notification to the sender
    assert sorted(delivered) == sorted(expected + notified)  # each once
    final = [(r["type"], r["rcpt"], r.get("bounceCat", "")) for r in records(tmp_path)
             if r["type"] in ("d", "b")]
    assert sorted(final) == sorted(
        [("d", rcpt, "") for rcpt in expected + notified]
        + [("b", "later1@x.test", "admin-delete"), ("b", "later2@x.test", "admin-bounce")])
    assert len(more) == 20
    assert not (tmp_path / "spool" / "control.sock").exists()


async def test_a_relay_whose_control_socket_cannot_be_made_still_serves(tmp_path, caplog):
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # longer than a socket's name may be
    relay = Relay(load_settings({"listen": "127.0.0.1:0", "spool_dir": str(deep)}),
                  accounting=None)
    await relay.start()
    try:
        assert relay.address[1] > 0
        assert "cannot create the control socket" in caplog.text
        assert "the relay runs without it: mta-logging queue cannot reach it" in caplog.text
    finally:
        await relay.stop()
