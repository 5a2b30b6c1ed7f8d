"""``mta-logging relay``: run the relay until SIGTERM/SIGINT (then drain and exit 0)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

import mta_logging
from mta_logging.errors import MtaLoggingError
from mta_logging.logger import AccountingLogger
from mta_logging.outcome import Kind
from mta_logging.relay.config import LOG_LEVELS, RelaySettings, load_settings
from mta_logging.relay.operator_log import FORMATS
from mta_logging.relay.operator_log import setup as setup_log
from mta_logging.relay.passwords import hash_password
from mta_logging.relay.server import Relay, serve

READY = "mta-logging relay: listening on"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="RELAY_YAML",
                        help="relay settings (YAML); without it the defaults: listen on "
                             "127.0.0.1:2525, relay for loopback clients, spool in ./spool, "
                             "accounting files in ./accounting_files")
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


def run(args: argparse.Namespace) -> int:
    if args.hash_password:
        password = getpass.getpass("password: ") if sys.stdin.isatty() else \
            sys.stdin.readline().rstrip("\r\n")
        print(hash_password(password))
        return 0
    settings = load_settings(args.config)
    try:
        setup_log(args.log_level or settings.log_level, args.log_format, args.log_file)
    except OSError as exc:
        raise MtaLoggingError(f"--log-file {args.log_file}: cannot open it ({exc.strerror})"
                              ) from None
    accounting = None
    accounting_dirs: list[Path] = []
    if settings.accounting_enabled:
        configured = mta_logging.configure(settings.accounting)
        accounting = AccountingLogger(configured.logger)
        accounting_dirs = [configured.directory(kind) for kind in Kind]
    asyncio.run(serve(Relay(settings, accounting=accounting, accounting_dirs=accounting_dirs),
                      on_ready=_announce))
    return 0


def _announce(relay: Relay) -> None:
    settings: RelaySettings = relay.settings
    host, port = relay.address
    accounting = "on" if settings.accounting_enabled else "off"
    metrics = relay.metrics_server.address
    metrics_text = "" if metrics is None else f", metrics on {metrics[0]}:{metrics[1]}"
    print(f"{READY} {host}:{port} (hostname {settings.hostname}, spool {settings.spool_dir}, "
          f"accounting {accounting}{metrics_text})", file=sys.stderr, flush=True)
