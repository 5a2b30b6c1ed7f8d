"""Messages per second through Postfix 3.7 and through ``mta-logging relay``, side by side.

    .venv/bin/python benchmarks/bench_postfix.py [--messages 3000] [--size 2000] [--rounds 3]
        [--rcpts 1 5] [--event-loops asyncio uvloop] [--workers 1 2]

Run as root (Postfix's ``master`` starts as root). Everything runs on 127.0.0.1, everything
lives under one temporary directory, and only Postfix's own C test programs make the load:

* Postfix: Debian's ``postfix`` package (``apt-get install -y postfix`` when missing, with
  "No configuration" preseeded), an instance of its own: its ``config_directory``,
  ``queue_directory``, ``data_directory`` and ``maillog_file`` are in the temporary directory,
  ``relayhost = [127.0.0.1]:<its sink>``, every other setting Postfix's default (so the queue
  file is fsync'd before the client hears 250). ``postfix -c DIR`` needs DIR in
  ``alternate_config_directories`` of the default ``/etc/postfix/main.cf``: the line is added
  for the run and the file put back as it was afterwards. Stopped with ``postfix -c DIR stop``.
* Ours: ``mta-logging relay`` with a route of ``*`` to its sink, accounting on (a received and
  a delivered record per recipient), the spool fsync'd before 250, operator log at WARNING;
  one instance per ``--event-loops`` and ``--workers`` value (its ``event_loop`` and
  ``workers`` settings; with workers its CPU is the supervisor's and every worker's).
* An ``smtp-sink`` behind each relay, counting messages (``-c``).
* The load: ``smtp-source -d -s 16`` (16 sessions, several messages each), ``--messages``
  messages of ``--size`` bytes, 1 and then 5 recipients per message.

All relays are up at once. In each round each relay gets the same load in turn (the order
rotating from round to round); a relay's time runs from the start of ``smtp-source`` until
its sink has counted the last message, and its CPU is the user + system time of its processes
(``/proc/<pid>/stat``; for Postfix the ``master`` and every process under it, including the
children it has reaped) over the same span. The load generators and sinks are not counted.
The ratio is the median of the rounds' ratios (both rates of a round taken within seconds of
each other: a slow spell of this shared machine slows both).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench_relay import cpu_seconds, start_relay

DEFAULT_MAIN_CF = Path("/etc/postfix/main.cf")
LISTEN = "127.0.0.1"
SESSIONS = 16
_SINK_COUNT = re.compile(rb"mesg=(\d+)")


class Sink:
    """Postfix's ``smtp-sink`` on a free port, its message count read from its ``-c`` output."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.count = 0
        self.process = subprocess.Popen(
            ["smtp-sink", "-c", "-u", "postfix", f"{LISTEN}:{port}", "256"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        while chunk := self.process.stdout.read1(65536):
            buffer = (buffer + chunk)[-256:]
            counts = _SINK_COUNT.findall(buffer)
            if counts:
                self.count = int(counts[-1])

    def wait_for(self, target: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"sink :{self.port} counted {self.count} of {target}")
            time.sleep(0.002)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LISTEN, 0))
        return int(probe.getsockname()[1])


def ensure_postfix() -> None:
    """Install Debian's postfix (with no configuration) when ``smtp-source`` is missing."""
    if shutil.which("smtp-source") and shutil.which("postfix"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["debconf-set-selections"], check=True, env=env,
                   input=b"postfix postfix/main_mailer_type select No configuration\n")
    subprocess.run(["apt-get", "install", "-y", "postfix"], check=True, env=env,
                   stdout=subprocess.DEVNULL)


class Postfix:
    """A Postfix instance of its own under ``root``, relaying everything to ``sink_port``."""

    def __init__(self, root: Path, sink_port: int) -> None:
        self.config_dir = root / "etc"
        self.queue_dir = root / "queue"
        self.maillog = root / "maillog"
        self.port = free_port()
        for directory in (self.config_dir, self.queue_dir, root / "data"):
            directory.mkdir(parents=True)
        shutil.chown(root / "data", "postfix")
        (self.config_dir / "main.cf").write_text(
            "compatibility_level = 3.6\n"
            f"queue_directory = {self.queue_dir}\n"
            f"data_directory = {root / 'data'}\n"
            "myhostname = postfix.bench.test\n"
            "mydestination =\n"
            f"inet_interfaces = {LISTEN}\n"
            "inet_protocols = ipv4\n"
            "mynetworks = 127.0.0.0/8\n"
            f"relayhost = [{LISTEN}]:{sink_port}\n"
            f"maillog_file = {self.maillog}\n"
            f"maillog_file_prefixes = {root}\n")
        master = Path("/etc/postfix/master.cf").read_text()
        master = re.sub(r"^smtp(\s+)inet", rf"{LISTEN}:{self.port}\1inet", master, count=1,
                        flags=re.MULTILINE)
        (self.config_dir / "master.cf").write_text(master)
        # no chroot: the chroot jail would need copies of /etc files in the queue directory
        self._postconf("-F", "*/*/chroot = n")
        self._saved_main_cf = DEFAULT_MAIN_CF.read_bytes() if DEFAULT_MAIN_CF.exists() else None
        DEFAULT_MAIN_CF.write_bytes((self._saved_main_cf or b"") + (
            f"\nalternate_config_directories = {self.config_dir}\n").encode())
        self.master_pid = 0

    def _postconf(self, *args: str) -> None:
        subprocess.run(["postconf", "-c", str(self.config_dir), *args], check=True)

    def start(self) -> None:
        # "check" makes the queue subdirectories with their owners (postfix, postdrop)
        subprocess.run(["postfix", "-c", str(self.config_dir), "check"], check=True)
        subprocess.run(["postfix", "-c", str(self.config_dir), "start"], check=True)
        pid_file = self.queue_dir / "pid" / "master.pid"
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not start:\n{self.maillog.read_text()}")
            time.sleep(0.05)
        self.master_pid = int(pid_file.read_text())
        _wait_listening(self.port)

    def stop(self) -> None:
        try:
            if self.master_pid:
                subprocess.run(["postfix", "-c", str(self.config_dir), "stop"], check=False)
        finally:
            if self._saved_main_cf is None:
                DEFAULT_MAIN_CF.unlink(missing_ok=True)
            else:
                DEFAULT_MAIN_CF.write_bytes(self._saved_main_cf)

    def cpu_seconds(self) -> float:
        """CPU time of the master and of every process under it, reaped children included."""
        return _tree_cpu_seconds(self.master_pid)


def _tree_cpu_seconds(root: int) -> float:
    """CPU time of ``root`` and of every process under it, reaped children included."""
    return sum(cpu_seconds(pid, children=True) for pid in _tree(root))


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                    parents[int(entry)] = int(stat.read().rpartition(")")[2].split()[1])
            except OSError:
                continue  # gone meanwhile
    found = [root]
    for pid in found:
        found.extend(child for child, parent in parents.items() if parent == pid)
    return found


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((LISTEN, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class Side:
    """One relay under test: where the load goes, its sink, how to read its CPU time."""

    name: str
    port: int
    sink: Sink
    cpu: Callable[[], float]

    def run(self, messages: int, size: int, rcpts: int) -> tuple[float, float]:
        """Messages/s and CPU seconds per message of one load."""
        target = self.sink.count + messages
        cpu_before = self.cpu()
        started = time.perf_counter()
        subprocess.run(
            ["smtp-source", "-d", "-s", str(SESSIONS), "-m", str(messages), "-l", str(size),
             "-r", str(rcpts), "-f", "bench@example.test", "-t", "rcpt@example.test",
             "-M", "bench.test", f"{LISTEN}:{self.port}"], check=True)
        self.sink.wait_for(target, 300)
        elapsed = time.perf_counter() - started
        cpu = self.cpu() - cpu_before
        return messages / elapsed, cpu / messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="per relay and round")
    parser.add_argument("--size", type=int, default=2000, help="bytes of body per message")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rcpts", type=int, nargs="+", default=[1, 5],
                        help="recipients per message, one table row each")
    parser.add_argument("--event-loops", nargs="+", default=["asyncio"],
                        choices=["asyncio", "uvloop"],
                        help="our relay once with each (its event_loop setting)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="our relay once with each number of worker processes (its "
                             "workers setting)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_postfix.py runs Postfix's master, which must start as root")
    ensure_postfix()
    root = Path(tempfile.mkdtemp(prefix="bench-postfix-"))
    root.chmod(0o755)  # Postfix's daemons run as the postfix user
    sinks: list[Sink] = []
    postfix: Postfix | None = None
    relays: list[subprocess.Popen[bytes]] = []
    try:
        sinks.append(Sink(free_port()))
        postfix = Postfix(root, sinks[0].port)
        postfix.start()
        sides = [Side("Postfix 3.7", postfix.port, sinks[0], postfix.cpu_seconds)]
        for loop in args.event_loops:
            for workers in args.workers:
                sinks.append(Sink(free_port()))
                workdir = root / f"relay-{loop}-{workers}"
                workdir.mkdir()
                process, port, _ = start_relay(
                    workdir, sinks[-1].port, accounting=True,
                    settings=f"event_loop: {loop}\nworkers: {workers}\n")
                relays.append(process)
                name = loop if args.workers == [1] else f"{loop}, {workers} worker(s)"
                sides.append(Side(f"ours ({name})", port, sinks[-1],
                                  functools.partial(_tree_cpu_seconds, process.pid)))
        for side in sides:  # warm-up: processes started, connections open, caches filled
            side.run(SESSIONS * 10, args.size, 1)
        rows = [_measure(sides, args.messages, args.size, rcpts, args.rounds)
                for rcpts in args.rcpts]
    finally:
        for process in relays:
            process.terminate()
            process.wait(30)
        if postfix is not None:
            postfix.stop()
        for sink in sinks:
            sink.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"Postfix vs mta-logging relay: {args.messages} messages of {args.size} bytes per relay "
          f"and round, smtp-source -d -s {SESSIONS}, {args.rounds} rounds, each into its own "
          "smtp-sink")
    print()
    print("| recipients | relay | msg/s (median, range) | × Postfix (median of rounds, range) | "
          "CPU ms/msg (median, range) |")
    print("|---:|---|---:|---:|---:|")
    for rcpts, row in zip(args.rcpts, rows, strict=True):
        for line in row.lines(rcpts):
            print(line)
    print()
    for rcpts, row in zip(args.rcpts, rows, strict=True):
        for name in list(row.rates)[1:]:
            ratios = row.ratios(name)
            ratio = statistics.median(ratios)
            print(f"- {rcpts} recipient(s): {name} / Postfix = {ratio:.2f} (target ≥ 2.0): "
                  f"{'met' if ratio >= 2.0 else 'NOT met'}; reached in "
                  f"{sum(r >= 2.0 for r in ratios)} of {len(ratios)} rounds")


@dataclass
class Row:
    """The rounds of one load: each side's rates and CPU per message, Postfix first."""

    rates: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def ratios(self, name: str) -> list[float]:
        """``name``'s rate over Postfix's, round by round."""
        postfix = next(iter(self.rates.values()))
        return [o / p for p, o in zip(postfix, self.rates[name], strict=True)]

    def lines(self, rcpts: int) -> list[str]:
        lines = []
        for name, rates in self.rates.items():
            ratios = self.ratios(name)
            lines.append(
                f"| {rcpts} | {name} | {_spread(rates, '.0f')} | "
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) | "
                f"{_spread([c * 1e3 for c in self.cpu[name]], '.2f')} |")
        return lines


def _spread(values: list[float], spec: str) -> str:
    """The median, and the range in brackets."""
    return (f"{statistics.median(values):,{spec}} "
            f"({min(values):,{spec}}–{max(values):,{spec}})")


def _measure(sides: list[Side], messages: int, size: int, rcpts: int, rounds: int) -> Row:
    """``rounds`` rounds of the same load on every side, the order rotating from round to
    round."""
    row = Row({side.name: [] for side in sides}, {side.name: [] for side in sides})
    for round_number in range(rounds):
        shift = round_number % len(sides)
        for side in [*sides[shift:], *sides[:shift]]:
            rate, cpu = side.run(messages, size, rcpts)
            row.rates[side.name].append(rate)
            row.cpu[side.name].append(cpu)
            print(f"  {rcpts} rcpt, round {round_number + 1}: {side.name} {rate:,.0f} msg/s, "
                  f"CPU {cpu * 1e3:.2f} ms/msg", file=sys.stderr)
    return row


if __name__ == "__main__":
    main()
