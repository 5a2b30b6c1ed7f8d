"""``mta-logging relay``: run the relay until SIGTERM/SIGINT (then drain and exit 0).

SIGHUP reads the config file again and applies it (see ``server``); the command-line
overrides (``--listen``, ``--spool-dir``, ``--accounting-path``, ``--log-level``) stay in force.
``--check`` validates everything the relay checks before it serves, and exits.
With ``workers`` > 1 this process is the supervisor (see ``workers``) and starts each worker as
this command again with the hidden ``--worker K --listen-fd FD --supervisor-fd FD``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import getpass
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mta_logging
from mta_logging.errors import ConfigError, MtaLoggingError
from mta_logging.logger import AccountingLogger
from mta_logging.relay.config import LOG_LEVELS, RelaySettings, load_settings, parse_host_port
from mta_logging.relay.operator_log import FORMATS
from mta_logging.relay.operator_log import setup as setup_log
from mta_logging.relay.passwords import hash_password
from mta_logging.relay.preflight import accounting_settings, check
from mta_logging.relay.server import Relay, event_loop_factory, serve
from mta_logging.relay.spool import use_worker_tag
from mta_logging.relay.workers import Supervisor, ready_message

READY = "mta-logging relay: listening on"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="RELAY_YAML",
                        help="relay settings (YAML); without it the defaults: listen on "
                             "127.0.0.1:2525, relay for loopback clients, spool in ./spool, "
                             "accounting files in ./accounting_files")
    parser.add_argument("--listen", metavar="HOST:PORT", help="overrides listen from the config")
    parser.add_argument("--spool-dir", metavar="DIR", help="overrides spool_dir from the config")
    parser.add_argument("--accounting-path", metavar="DIR",
                        help="overrides the accounting files' path")
    parser.add_argument("--check", action="store_true",
                        help="check the settings, the spool, the accounting directories and "
                             "the listen address as the relay would, print OK, and exit")
    parser.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper,
                        help="overrides log_level from the config")
    parser.add_argument("--log-format", choices=FORMATS, default="text",
                        help="the relay's log as text lines (the default) or JSON lines")
    parser.add_argument("--log-file", metavar="PATH",
                        help="write the relay's log to PATH instead of stderr (reopened when "
                             "logrotate moves it)")
    parser.add_argument("--hash-password", action="store_true",
                        help="read a password (stdin, or a prompt on a terminal), print its "
                             "hash for auth_users, and exit")
    # a worker of a supervisor (workers > 1): its number, the shared listening socket, its link
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--supervisor-fd", type=int, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.hash_password:
        password = getpass.getpass("password: ") if sys.stdin.isatty() else \
            sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise MtaLoggingError("--hash-password: the password read is empty; expected at "
                                  "least one character (one line on stdin, or at the prompt)")
        print(hash_password(password))
        return 0
    settings = _settings(args)
    accounting_files = accounting_settings(settings, args.accounting_path, args.config)
    check(settings, accounting_files, listening=args.worker is not None)
    if args.check:
        print(f"mta-logging relay: {args.config or 'the default settings'}: OK (listen "
              f"{settings.listen_host}:{settings.listen_port}, spool {settings.spool_dir}, "
              f"accounting {'off' if accounting_files is None else accounting_files.path}"
              f"{'' if settings.workers == 1 else f', workers {settings.workers}'})")
        return 0
    try:
        setup_log(args.log_level or settings.log_level, args.log_format, args.log_file)
    except OSError as exc:
        raise MtaLoggingError(f"--log-file {args.log_file}: cannot open it ({exc.strerror})"
                              ) from None
    if settings.workers > 1 and args.worker is None:
        return Supervisor(settings, functools.partial(_worker_command, args)).run(
            functools.partial(_announce_workers, settings))
    if args.worker is not None:
        use_worker_tag(args.worker)
    accounting = None
    accounting_dirs: list[Path] = []
    if accounting_files is not None:
        configured = mta_logging.configure(accounting_files)
        accounting = AccountingLogger(configured.logger)
        accounting_dirs = [configured.directory(kind) for kind in configured.records]
    supervisor = None if args.supervisor_fd is None else socket.socket(
        fileno=args.supervisor_fd)
    relay = Relay(settings, accounting=accounting, accounting_dirs=accounting_dirs,
                  worker=args.worker,
                  listen_socket=None if args.listen_fd is None else socket.socket(
                      fileno=args.listen_fd))

    def reload() -> None:
        new = _settings(args)
        new_accounting = accounting_settings(new, args.accounting_path, args.config)
        try:
            check(new, new_accounting, listening=True)
            relay.check_reload(new)
        except ConfigError as exc:
            raise exc.located(args.config) from None  # a refused reload names the file
        if new_accounting is not None and new_accounting != accounting_settings(
                relay.settings, args.accounting_path, args.config):
            mta_logging.configure(new_accounting)
        relay.reconfigure(new)
        logging.getLogger("mta_logging").setLevel(args.log_level or new.log_level)

    with asyncio.Runner(loop_factory=event_loop_factory(settings.event_loop)) as runner:
        runner.run(serve(relay, on_ready=_announce if supervisor is None else functools.partial(
            _tell_supervisor, supervisor), reload=reload if args.config else None,
            supervisor=supervisor))
    return 0


def _worker_command(args: argparse.Namespace, index: int, listen_fd: int, link_fd: int
                    ) -> list[str]:
    """This command again, as worker ``index`` of the supervisor."""
    command = [sys.executable, "-m", "mta_logging.cli", "relay", "--log-format",
               args.log_format]
    for option, value in (("--config", args.config), ("--listen", args.listen),
                          ("--spool-dir", args.spool_dir),
                          ("--accounting-path", args.accounting_path),
                          ("--log-level", args.log_level), ("--log-file", args.log_file)):
        if value is not None:
            command += [option, value]
    return [*command, "--worker", str(index), "--listen-fd", str(listen_fd),
            "--supervisor-fd", str(link_fd)]


def _tell_supervisor(link: socket.socket, relay: Relay) -> None:
    link.sendall(ready_message(relay))


def _settings(args: argparse.Namespace) -> RelaySettings:
    """The config file's settings with the command line's overrides."""
    settings = load_settings(args.config)
    overrides: dict[str, Any] = {}
    if args.listen is not None:
        host, port = parse_host_port("--listen", args.listen, default_port=None)
        if port is None:
            raise ConfigError("--listen", args.listen, "expected host:port such as "
                                                       "127.0.0.1:2525")
        overrides.update(listen_host=host, listen_port=port)
    if args.spool_dir is not None:
        overrides["spool_dir"] = Path(args.spool_dir)
    if args.worker is not None and settings.metrics is not None and settings.metrics[1]:
        host, port = settings.metrics  # worker K: the metrics port plus K-1
        overrides["metrics"] = (host, port + args.worker - 1)
    return dataclasses.replace(settings, **overrides)


def _announce(relay: Relay) -> None:
    loop = "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") \
        else "asyncio"
    metrics = relay.metrics_server.address
    _print_ready(relay.settings, relay.address, loop, [] if metrics is None else [metrics])


def _announce_workers(settings: RelaySettings, address: tuple[str, int],
                      ready: Sequence[dict[str, Any]]) -> None:
    metrics = [(str(r["metrics"][0]), int(r["metrics"][1])) for r in ready if r["metrics"]]
    _print_ready(settings, address, settings.event_loop, metrics, f", workers {len(ready)}")


def _print_ready(settings: RelaySettings, address: tuple[str, int], loop: str,
                 metrics: Sequence[tuple[str, int]], workers: str = "") -> None:
    accounting = "on" if settings.accounting_enabled else "off"
    metrics_text = "" if not metrics else ", metrics on " + ", ".join(
        f"{host}:{port}" for host, port in metrics)
    print(f"{READY} {address[0]}:{address[1]} (hostname {settings.hostname}, spool "
          f"{settings.spool_dir}, accounting {accounting}, event loop {loop}{workers}"
          f"{metrics_text})", file=sys.stderr, flush=True)
