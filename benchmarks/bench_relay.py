"""Messages per second through the relay to a local sink, accounting on and off, in one run.

    .venv/bin/python benchmarks/bench_relay.py [--messages 3000] [--connections 16] [--rounds 3]

Three processes on 127.0.0.1: a lean SMTP sink (counts messages, keeps nothing), the relay
(``mta-logging relay`` as a subprocess with a route to the sink; spool on disk with fsync), and
this process as the client (several SMTP sessions, many messages per session). The time runs from
the first message sent until the sink has received the last one. Each configuration is run
``--rounds`` times, alternating (off, on, on, off, ...); the table shows each one's best and
median round, and the ratio is the median of the rounds' on/off ratios (each on round against
the off round next to it): three processes share two CPUs here, and a slow spell of the
machine slows both rounds of a pair.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = "mta-logging relay: listening on"
BODY = (b"From: bench@example.test\r\nTo: rcpt@example.test\r\nSubject: benchmark\r\n"
        b"Message-ID: <%d@bench>\r\n\r\n" + (b"x" * 76 + b"\r\n") * 25)  # about 2 kB


# -- the sink: a minimal SMTP server that counts messages -------------------------------------

class _SinkProtocol(asyncio.Protocol):
    def __init__(self, counter: Synchronized[int]) -> None:
        self.counter = counter
        self.buffer = b""
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.buffer = self.buffer[end + 5:]
                self.in_data = False
                with self.counter.get_lock():
                    self.counter.value += 1
                self.transport.write(b"250 2.0.0 Ok\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.transport.write(b"250-sink\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.buffer = b"\r\n" + self.buffer  # so a message's first "." line matches
                self.transport.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:
                self.transport.write(b"250 Ok\r\n")


def _run_sink(port_out: Synchronized[int], counter: Synchronized[int]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _SinkProtocol(counter), "127.0.0.1", 0)
        port_out.value = server.sockets[0].getsockname()[1]
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the client --------------------------------------------------------------------------------

async def _session(port: int, count: int, first: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply(expect: bytes) -> None:
        while True:
            line = await reader.readline()
            if not line.startswith(expect):
                raise RuntimeError(f"unexpected reply {line!r}")
            if line[3:4] != b"-":
                return

    await reply(b"220")
    writer.write(b"EHLO bench.test\r\n")
    await reply(b"250")
    for n in range(first, first + count):
        writer.write(b"MAIL FROM:<bench@example.test>\r\n")
        await reply(b"250")
        writer.write(b"RCPT TO:<rcpt%d@example.test>\r\n" % n)
        await reply(b"250")
        writer.write(b"DATA\r\n")
        await reply(b"354")
        writer.write(BODY % n + b".\r\n")
        await reply(b"250")
    writer.write(b"QUIT\r\n")
    await reply(b"221")
    writer.close()


async def _send(port: int, messages: int, connections: int, first: int) -> None:
    per = messages // connections
    await asyncio.gather(*(_session(port, per, first + i * per) for i in range(connections)))


# -- one measured run --------------------------------------------------------------------------

def start_relay(workdir: Path, sink_port: int, accounting: bool, settings: str = ""
                ) -> tuple[subprocess.Popen[bytes], int, Path]:
    """``mta-logging relay`` in ``workdir`` routing everything to ``sink_port`` (``settings``:
    more lines of its config); the process, its SMTP port and its log file."""
    config = workdir / "relay.yaml"
    accounting_line = "accounting: {path: ./accounting_files}" if accounting else \
        "accounting: false"
    config.write_text(
        "listen: 127.0.0.1:0\nhostname: relay.bench.test\nspool_dir: ./spool\n"
        f'routes: {{"*": "127.0.0.1:{sink_port}"}}\n{accounting_line}\nlog_level: WARNING\n'
        + settings)
    log = workdir / "relay.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "mta_logging.cli", "relay", "--config", str(config)],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=log_file, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith(READY):
                return process, int(line.split()[4].rsplit(":", 1)[1]), log
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"relay did not start:\n{log.read_text()}")


def _wait_count(counter: Synchronized[int], target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while counter.value < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"sink received {counter.value} of {target} messages")
        time.sleep(0.002)


def measure(accounting: bool, messages: int, connections: int, sink_port: int,
            counter: Synchronized[int]) -> tuple[float, float]:
    """Messages/s, and the relay's CPU seconds per message."""
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        workdir = Path(tmp)
        process, port, log = start_relay(workdir, sink_port, accounting)
        try:
            warmup = connections * 10
            start_count = counter.value
            asyncio.run(_send(port, warmup, connections, 0))
            _wait_count(counter, start_count + warmup, 60)
            start_count = counter.value
            cpu_before = cpu_seconds(process.pid)
            started = time.perf_counter()
            asyncio.run(_send(port, messages, connections, warmup))
            _wait_count(counter, start_count + messages, 300)
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(process.pid) - cpu_before
        finally:
            process.terminate()
            process.wait(30)
        if accounting:
            delivered = sum(len(p.read_text().splitlines()) - 1
                            for p in (workdir / "accounting_files" / "delivered").glob("*.tsv"))
            if delivered != messages + warmup:
                raise RuntimeError(f"expected {messages + warmup} delivered records, "
                                   f"found {delivered}; relay log:\n{log.read_text()}")
        return messages / elapsed, cpu / messages


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time of a process so far (Linux /proc); ``children``: plus that of
    its children it has waited for. 0 for a process that is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except FileNotFoundError:
        return 0.0
    ticks = sum(map(int, fields[11:15 if children else 13]))
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    messages = args.messages - args.messages % args.connections

    context = multiprocessing.get_context("spawn")
    port = context.Value("i", 0)
    counter = context.Value("q", 0)
    sink = context.Process(target=_run_sink, args=(port, counter), daemon=True)
    sink.start()
    names = ("accounting off", "accounting on")
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    try:
        while port.value == 0:
            time.sleep(0.01)
        for round_number in range(args.rounds):
            for name in names if round_number % 2 == 0 else reversed(names):
                rate, cpu_each = measure(name == "accounting on", messages, args.connections,
                                         port.value, counter)
                rates[name].append(rate)
                cpu[name].append(cpu_each)
                print(f"  round {round_number + 1}: {name} {rate:,.0f} messages/s, relay CPU "
                      f"{cpu_each * 1e6:,.0f} µs/message", file=sys.stderr)
    finally:
        sink.terminate()
        sink.join(10)
    ratios = [on / off for on, off in zip(rates["accounting on"], rates["accounting off"],
                                          strict=True)]
    print(f"relay benchmark: {messages} messages, 1 recipient each, {args.connections} client "
          f"connections, {args.rounds} rounds")
    print()
    print("| configuration | best round (messages/s) | median round (messages/s) | "
          "relay CPU per message (µs, median) |")
    print("|---|---:|---:|---:|")
    for name in names:
        print(f"| {name} | {max(rates[name]):,.0f} | {statistics.median(rates[name]):,.0f} | "
              f"{statistics.median(cpu[name]) * 1e6:,.0f} |")
    print()
    cost = 1 - statistics.median(ratios)
    print(f"- accounting on / off = {statistics.median(ratios):.3f} (median of the rounds' ratios, "
          f"{min(ratios):.3f}–{max(ratios):.3f}): accounting costs {cost:.1%} "
          f"(target < 5 %): {'met' if cost < 0.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
