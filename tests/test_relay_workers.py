"""`workers: N`: one supervisor, N relay processes on one listening socket, each with its own
spool under ``spool_dir/worker-<K>/``; seen through the sink, the records, the spool, the log
and ``mta-logging queue``.

Which worker took a message shows in its queue id: worker K's ids end in a tag equal to K-1
modulo 64. Every relay is a subprocess this module starts and kills by its PID; every wait has
a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import socket
import time
from pathlib import Path

import pytest
import yaml
from relay_sink import Sink
from test_relay_e2e import (
    MESSAGE,
    Clients,
    RelayProcess,
    base_config,
    records,
    relay,
    send,
    wait_until,
)
from test_relay_metrics import scrape

from mta_logging.cli import main
from mta_logging.relay.spool import Envelope, Spool

WORKERS = 2


def worker_of(queue_id: str) -> int:
    """The worker (1-based) that gave out ``queue_id``."""
    return int(queue_id[-3:], 16) % 64 + 1


def worker_pids(running: RelayProcess) -> dict[int, int]:
    """The pid of each worker serving now, from the supervisor's log (the latest of each)."""
    found = re.findall(r"worker (\d+) serving \(pid (\d+)\)", running.log.read_text())
    return {int(index): int(pid) for index, pid in found}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def config_of(sink: Sink, **overrides: object) -> dict[str, object]:
    return base_config(sink.port, **{"workers": WORKERS, "log_level": "INFO", **overrides})


def send_until_both_workers(port: int, first: int = 0) -> list[str]:
    """Messages, one connection each, until both workers have taken some; their ids."""
    ids: list[str] = []
    deadline = time.monotonic() + 30
    while {worker_of(i) for i in ids} != {1, 2}:
        assert time.monotonic() < deadline, f"one worker took every message: {ids}"
        ids.append(send(port, [f"r{first + len(ids)}@x.test"]))
    return ids


def test_two_workers_share_the_connections_and_every_message_is_delivered(tmp_path):
    with Sink() as sink, relay(tmp_path, config_of(sink)) as running:
        announced = running.log.read_text()
        assert f"listening on 127.0.0.1:{running.port} (" in announced
        assert ", workers 2" in announced
        clients = Clients(running.port, first=0, threads=6)
        wait_until(lambda: clients.count() >= 200, what="mail flowing in")
        clients.stop()
        ids = send_until_both_workers(running.port, first=10_000)
        acknowledged = [*clients.acknowledged, *(f"r{10_000 + n}@x.test"
                                                 for n in range(len(ids)))]
        wait_until(lambda: len(sink.delivered()) == len(acknowledged),
                   what="every message delivered")
        assert running.stop() == 0
    assert sorted(sink.delivered()) == sorted(acknowledged)
    delivered = [r for r in records(tmp_path) if r["type"] == "d"]
    assert sorted(r["rcpt"] for r in delivered) == sorted(acknowledged)
    assert {worker_of(r["jobId"]) for r in delivered} == {1, 2}
    spool = tmp_path / "spool"
    assert sorted(p.name for p in spool.iterdir() if p.is_dir()) == [
        "queue", "state", "tmp", "worker-1", "worker-2"]
    assert [p.name for p in (spool / "worker-1" / "queue").iterdir()] == []


def test_sessions_opened_at_once_are_spread_over_the_workers(tmp_path):
    """16 connections open before any sends (as ``smtp-source -s 16`` does): each worker gets
    some (one socket shared by both would let the first to wake take them all)."""
    with Sink() as sink, relay(tmp_path, config_of(sink)) as running:
        clients = [smtplib.SMTP("127.0.0.1", running.port, timeout=10) for _ in range(16)]
        ids = []
        for number, client in enumerate(clients):
            client.ehlo("client.test")
            client.mail("sender@example.test")
            assert client.rcpt(f"s{number}@x.test")[0] == 250
            code, text = client.data(MESSAGE)
            assert code == 250, text
            ids.append(text.decode().rpartition(" ")[2])
            client.quit()
        wait_until(lambda: len(sink.delivered()) == 16, what="the 16 messages")
        assert running.stop() == 0
    assert {worker_of(queue_id) for queue_id in ids} == {1, 2}


def test_a_worker_killed_mid_load_is_started_again_and_its_mail_delivered(tmp_path):
    with Sink() as sink:
        config = config_of(sink, retry={"intervals": [0.5], "max_queue_lifetime": 3600})
        with relay(tmp_path, config) as running:
            killed = worker_pids(running)[1]
            clients = Clients(running.port, first=0, threads=6)
            sink.tempfail_all = True  # mail piles up in both spools
            wait_until(lambda: clients.count() >= 200, what="mail flowing in")
            queued = list((tmp_path / "spool" / "worker-1" / "queue").iterdir())
            assert queued, "worker 1 took no message"
            os.kill(killed, signal.SIGKILL)
            wait_until(lambda: worker_pids(running)[1] != killed, what="worker 1 again")
            clients.stop()
            sink.tempfail_all = False
            wait_until(lambda: set(clients.acknowledged) <= set(sink.delivered()), timeout=60,
                       what="every acknowledged recipient delivered")
            log = running.log.read_text()
            assert running.stop() == 0
    assert log.count("exited (killed by SIGKILL); starting it again") == 1
    assert f"worker 1 (pid {killed}) exited (killed by SIGKILL); starting it again (it loads " \
           f"spool/worker-1)" in log
    # also delivered: mail stored before the kill whose client never heard its 250
    assert [rcpt for rcpt in clients.acknowledged if rcpt not in sink.delivered()] == []
    assert {r["rcpt"] for r in records(tmp_path) if r["type"] == "d"} == set(sink.delivered())


def test_sigterm_drains_every_worker_and_one_process_then_delivers_their_spools(tmp_path):
    retry = {"intervals": [0.5], "max_queue_lifetime": 3600}
    with Sink() as sink:
        sink.tempfail_all = True
        with relay(tmp_path, config_of(sink, retry=retry)) as running:
            pids = worker_pids(running)
            ids = send_until_both_workers(running.port)
            assert running.stop() == 0
            log = running.log.read_text()
        assert not any(alive(pid) for pid in pids.values())
        assert log.count("stopped; ") == 2 and "signal received; stopping the 2 worker(s)" in log
        for index in (1, 2):
            assert sorted(p.name for p in (tmp_path / "spool" / f"worker-{index}" / "queue"
                                           ).iterdir()) == sorted(i for i in ids
                                                                  if worker_of(i) == index)

        sink.tempfail_all = False
        with relay(tmp_path, config_of(sink, workers=1, retry=retry)) as single:
            wait_until(lambda: len(sink.delivered()) == len(ids), what="the workers' mail")
            assert single.stop() == 0
    assert sorted(sink.delivered()) == [f"r{n}@x.test" for n in range(len(ids))]
    for index in (1, 2):
        assert list((tmp_path / "spool" / f"worker-{index}" / "queue").iterdir()) == []
    assert "moved" in single.log.read_text()


def test_mail_of_a_relay_of_one_process_is_delivered_by_the_workers(tmp_path):
    spool = Spool.open(tmp_path / "spool")
    spool.store("6619F51011670AAA", Envelope("a@src.test", ("left@x.test",), time.time()),
                b"Subject: left\r\n\r\nbody\r\n")
    spool.journal("6619F51011670AAA", [f"a 1 {time.time():.3f}"])
    with Sink() as sink, relay(tmp_path, config_of(sink)) as running:
        wait_until(lambda: sink.delivered() == ["left@x.test"], what="the left mail")
        assert running.stop() == 0
    assert sink.delivered() == ["left@x.test"]
    assert "moved 1 message(s) from the spool spool into spool/worker-1" in \
        running.log.read_text()
    assert list((tmp_path / "spool" / "queue").iterdir()) == []


def test_sighup_reloads_every_worker(tmp_path):
    with Sink() as first, Sink() as second, relay(tmp_path, config_of(first)) as running:
        (tmp_path / "relay.yaml").write_text(yaml.safe_dump(config_of(second)))
        os.kill(running.process.pid, signal.SIGHUP)
        wait_until(lambda: running.log.read_text().count(
            "reloaded: the new settings are in use") == 2, what="both workers reloaded")
        ids = send_until_both_workers(running.port)
        wait_until(lambda: len(second.delivered()) == len(ids), what="the new route")

        (tmp_path / "relay.yaml").write_text(yaml.safe_dump(config_of(second, workers=3)))
        os.kill(running.process.pid, signal.SIGHUP)
        wait_until(lambda: running.log.read_text().count("reload refused") == 2,
                   what="both workers refusing")
        log = running.log.read_text()
        assert running.stop() == 0
    assert first.delivered() == []
    assert "relay.yaml: workers: 3 is not valid; cannot change while the relay runs (it is " \
           "2); restart the relay" in log


def test_queue_commands_see_every_workers_messages(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's spool_dir is relative
    with Sink() as sink:
        sink.tempfail_all = True
        with relay(tmp_path, config_of(sink)) as running:
            ids = send_until_both_workers(running.port)
            config = str(tmp_path / "relay.yaml")
            assert main(["queue", "list", "--json", "--config", config]) == 0
            listed = json.loads(capsys.readouterr().out)
            assert sorted(e["id"] for e in listed) == sorted(ids)
            held = next(i for i in ids if worker_of(i) == 2)
            assert main(["queue", "hold", held, "--config", config]) == 0
            assert capsys.readouterr().out == f"{held}: held\n"
            assert main(["queue", "show", held, "--config", config]) == 0
            assert "state: held\n" in capsys.readouterr().out
            assert main(["queue", "hold", "0000000000000FFF", "--config", config]) == 1
            assert capsys.readouterr().err == \
                "mta-logging queue hold: 0000000000000FFF: no such message in the queue\n"
            assert running.stop() == 0
        assert main(["queue", "list", "--json", "--config", config]) == 0  # stopped: the spools
        stopped = {e["id"]: e["state"] for e in json.loads(capsys.readouterr().out)}
    assert sorted(stopped) == sorted(ids)
    assert stopped[held] == "held"


def test_each_worker_serves_its_metrics_on_its_own_port(tmp_path):
    with Sink() as sink, relay(tmp_path, config_of(sink, metrics="127.0.0.1:0")) as running:
        match = re.search(r"metrics on (127\.0\.0\.1:\d+), (127\.0\.0\.1:\d+)\)",
                          running.log.read_text())
        assert match, running.log.read_text()
        ids = send_until_both_workers(running.port)
        wait_until(lambda: len(sink.delivered()) == len(ids), what="the deliveries")
        samples = [scrape(f"http://{address}") for address in match.groups()]
        assert running.stop() == 0
    received = [s[("mta_logging_messages_received_total", ())] for s in samples]
    assert received == [sum(worker_of(i) == k for i in ids) for k in (1, 2)]


def test_a_worker_that_cannot_start_stops_the_relay(tmp_path):
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "worker-2").write_text("not a directory")
    with Sink() as sink:
        (tmp_path / "relay.yaml").write_text(yaml.safe_dump(config_of(sink)))
        with pytest.raises(AssertionError, match="the relay did not start"):
            RelayProcess(tmp_path, config_of(sink))
    log = (tmp_path / "relay.log").read_text()
    assert re.search(r"worker 2 \(pid \d+\) exited \(exit status 2\) before it served; "
                     r"stopping the relay \(its mail stays in spool/worker-2\)", log), log


def test_a_port_in_use_is_one_clear_error(tmp_path, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = tmp_path / "relay.yaml"
        config.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{port}", "workers": 2,
                                          "spool_dir": str(tmp_path / "spool"),
                                          "accounting": False}))
        assert main(["relay", "--config", str(config)]) == 2
    assert capsys.readouterr().err.startswith(
        f"mta-logging relay: listen: '127.0.0.1:{port}' is not valid; cannot listen there "
        "(Address already in use")


def test_the_workers_stop_when_the_supervisor_is_killed(tmp_path):
    with Sink() as sink, relay(tmp_path, config_of(sink)) as running:
        pids = worker_pids(running)
        assert running.stop(signal.SIGKILL) == -signal.SIGKILL
        wait_until(lambda: not any(alive(pid) for pid in pids.values()),
                   what="the workers gone")
    assert running.log.read_text().count("the supervisor is gone; draining") == 2


def test_check_names_the_workers(tmp_path, capsys):
    config = tmp_path / "relay.yaml"
    config.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "workers": 3,
                                      "spool_dir": str(tmp_path / "spool"),
                                      "accounting": False}))
    assert main(["relay", "--config", str(config), "--check"]) == 0
    assert capsys.readouterr().out.endswith(", workers 3)\n")
    assert not (tmp_path / "spool" / "worker-1").exists()


def test_workers_refuse_a_spool_a_relay_of_one_process_runs_on(tmp_path):
    shared = str(tmp_path / "spool")
    single_dir, workers_dir = tmp_path / "single", tmp_path / "workers"
    single_dir.mkdir()
    workers_dir.mkdir()
    with Sink() as sink, relay(single_dir, config_of(sink, workers=1, spool_dir=shared)
                               ) as single:
        with pytest.raises(AssertionError, match="the relay did not start"):
            RelayProcess(workers_dir, config_of(sink, spool_dir=shared))
        assert single.stop() == 0
    assert f"the spool {shared} is in use by another relay" in \
        (workers_dir / "relay.log").read_text()


def test_a_stopped_spool_path_lists_nothing_extra(tmp_path: Path, capsys):
    """A relay with workers leaves ``spool_dir/queue`` empty; ``queue list`` on it shows the
    workers' messages only."""
    root = tmp_path / "spool"
    for index in (1, 2):
        Spool.open(root / f"worker-{index}").store(
            f"6619F5101167{index - 1:04X}", Envelope("a@src.test", (f"w{index}@x.test",),
                                                     time.time()), b"Subject: s\r\n\r\nb\r\n")
    Spool.open(root)
    assert main(["queue", "list", "--json", "--spool-dir", str(root)]) == 0
    assert [e["recipients"] for e in json.loads(capsys.readouterr().out)] == [
        ["w1@x.test"], ["w2@x.test"]]
