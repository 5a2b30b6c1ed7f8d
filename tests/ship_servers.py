"""Real servers for the ship tests: a 3-node nats-server JetStream cluster and a PostgreSQL
cluster from ``initdb``, each on 127.0.0.1 ports in a temporary directory, started by the test
(session fixtures) and stopped by the PIDs they were started with. PostgreSQL refuses to run
as root, so as root it runs as the ``postgres`` user (``setpriv``) in a directory chowned to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a server we started, by its PID."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class NatsNode:
    name: str
    port: int
    cluster_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@dataclass
class NatsCluster:
    """Three JetStream nodes; ``kill(i)`` SIGKILLs one, ``start(i)`` brings it back."""

    nodes: list[NatsNode]
    binary: str
    log: list[Path] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, index: int) -> None:
        node = self.nodes[index]
        routes = ", ".join(f"nats-route://127.0.0.1:{other.cluster_port}"
                           for other in self.nodes if other is not node)
        config = node.directory / "nats.conf"
        config.write_text(
            f'server_name: {node.name}\nlisten: "127.0.0.1:{node.port}"\n'
            f'jetstream {{ store_dir: "{node.directory / "js"}", max_memory_store: 64MB, '
            f"max_file_store: 2GB }}\n"
            f'cluster {{ name: testc, listen: "127.0.0.1:{node.cluster_port}", '
            f"routes: [{routes}] }}\n")
        log = open(node.directory / "nats.log", "ab")  # noqa: SIM115 (the server owns it)
        node.process = subprocess.Popen([self.binary, "-c", str(config)], stdout=log,
                                        stderr=subprocess.STDOUT)
        log.close()
        wait_for_port(node.port)

    def kill(self, index: int) -> None:
        process = self.nodes[index].process
        assert process is not None
        stop(process, signal.SIGKILL)

    def stop_all(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                stop(node.process)


def start_nats_cluster(directory: Path) -> NatsCluster:
    binary = shutil.which("nats-server")
    if binary is None:
        pytest.skip("nats-server is not installed (Debian package nats-server; .ci/run "
                    "installs it)")
    nodes = []
    for number in range(3):
        node_dir = directory / f"n{number}"
        node_dir.mkdir(parents=True)
        nodes.append(NatsNode(f"n{number}", free_port(), free_port(), node_dir))
    cluster = NatsCluster(nodes, binary)
    try:
        for index in range(3):
            cluster.start(index)
    except BaseException:
        cluster.stop_all()
        raise
    return cluster


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    cluster = start_nats_cluster(tmp_path_factory.mktemp("nats"))
    try:
        yield cluster
    finally:
        cluster.stop_all()


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@dataclass
class Postgres:
    """A PostgreSQL cluster in a temporary directory; ``restart()`` stops and starts it."""

    bin_dir: Path
    directory: Path
    port: int
    user: str | None  # run as this user (we are root), or as ourselves
    process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _command(self, *argv: str) -> list[str]:
        if self.user is None:
            return list(argv)
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups",
                "--", *argv]

    def initdb(self) -> None:
        subprocess.run(self._command(str(self.bin_dir / "initdb"), "-D",
                                     str(self.directory / "data"), "-U", "postgres", "-A",
                                     "trust", "--no-sync", "-E", "UTF8"),
                       check=True, capture_output=True)

    def start(self) -> None:
        log = open(self.directory / "postgres.log", "ab")  # noqa: SIM115 (the server owns it)
        self.process = subprocess.Popen(
            self._command(str(self.bin_dir / "postgres"), "-D", str(self.directory / "data"),
                          "-p", str(self.port), "-k", str(self.directory), "-c",
                          "listen_addresses=127.0.0.1", "-c", "fsync=off"),
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready = subprocess.run([str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(self.port)], capture_output=True)
            if ready.returncode == 0:
                return
            if self.process.poll() is not None:
                raise RuntimeError("postgres exited: "
                                   + (self.directory / "postgres.log").read_text())
            time.sleep(0.1)
        raise TimeoutError("postgres did not become ready")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown

    def restart(self) -> None:
        self.stop()
        self.start()


def start_postgres() -> Postgres:
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; .ci/run "
                    "installs it)")
    user = None
    directory = Path(tempfile.mkdtemp(prefix="mta-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: hand the directory to postgres (or nobody)
        user = "postgres" if _has_user("postgres") else "nobody"
        entry = pwd.getpwnam(user)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    server = Postgres(bin_dir, directory, free_port(), user)
    server.initdb()
    server.start()
    return server


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


async def stream_messages(urls: list[str], stream: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every message the stream holds: (subject, Nats-Msg-Id, JSON body), in order (waiting,
    within START_TIMEOUT, for a stream that is electing a leader)."""
    import nats
    import nats.errors

    client = await nats.connect(urls)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        js = client.jetstream(timeout=5)
        while True:
            try:
                info = await js.stream_info(stream)
                found = []
                for sequence in range(info.state.first_seq, info.state.last_seq + 1):
                    message = await js.get_msg(stream, sequence)
                    found.append((message.subject,
                                  (message.headers or {}).get("Nats-Msg-Id", ""),
                                  json.loads(message.data or b"{}")))
                return found
            except (nats.errors.Error, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await client.close()


def ship_config(directory: Path, **sections: Any) -> Path:
    """A ship config file in ``directory`` with the given top-level sections."""
    path = directory / "ship.yaml"
    path.write_text(yaml.safe_dump(sections), encoding="utf-8")
    return path


def mta_logging_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mta_logging.cli", *args]


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 (its own thread) that checks each POST's signature and
    keeps the records of every batch it acknowledged. ``fail_first`` requests get a 503, and
    a request whose signature is wrong a 401."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from mta_logging.ship.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

        self.records: list[dict[str, Any]] = []
        self.requests = 0
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server hook's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = signature(secret, self.headers[TIMESTAMP_HEADER] or "", body)
                with lock:
                    receiver.requests += 1
                    if self.headers[SIGNATURE_HEADER] != expected:
                        receiver.bad_signatures += 1
                        status = 401
                    elif receiver.requests <= fail_first:
                        status = 503
                    else:
                        receiver.records.extend(json.loads(body))
                        status = 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
