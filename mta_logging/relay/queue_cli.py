"""``mta-logging queue``: look at and act on the relay's queue, running or stopped.

The spool is found by ``--config`` (the relay's config: its ``spool_dir``) or ``--spool-dir``.
If the spool's lock is free the relay is stopped, and the command works on the spool itself
while holding the lock (a relay starting meanwhile waits for it); otherwise it asks the
running relay on its control socket. A relay with ``workers`` > 1 has a spool per worker
(``spool_dir/worker-<K>/``): the command asks each (running or stopped, as above) and merges
the answers (queue ids are unique across the workers). See ``admin`` for what each operation
does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mta_logging
from mta_logging.errors import MtaLoggingError
from mta_logging.logger import AccountingLogger
from mta_logging.relay.admin import ACTIONS, STATES, QueueEntry, StoppedQueue, dispatch, has_domain
from mta_logging.relay.config import RelaySettings, load_settings
from mta_logging.relay.spool import Spool, SpoolLock, worker_dirs

CONTROL_TIMEOUT = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--config", "-c", metavar="RELAY_YAML",
                       help="the relay's config (its spool_dir and accounting settings)")
    where.add_argument("--spool-dir", metavar="DIR", help="the spool (overrides the config's)")
    commands = parser.add_subparsers(dest="queue_command", metavar="QUEUE_COMMAND",
                                     required=True)
    listing = commands.add_parser("list", parents=[where], help="the messages in the queue")
    listing.add_argument("--json", action="store_true", help="one JSON array of objects")
    listing.add_argument("--domain", help="only messages with a recipient pending there")
    listing.add_argument("--state", choices=STATES, help="only messages in this state")
    show = commands.add_parser("show", parents=[where], help="one message in detail")
    show.add_argument("queue_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="one JSON object")
    helps = {"flush": "try now", "hold": "no attempts until released",
             "release": "end a hold; try now",
             "bounce": "administrative bounce: every pending recipient recorded as a bounce "
                       "(category admin-bounce), the message removed",
             "delete": "removed without delivery; every pending recipient recorded as a bounce "
                       "(category admin-delete)"}
    for action in ACTIONS:
        sub = commands.add_parser(action, parents=[where], help=helps[action])
        sub.add_argument("ids", metavar="ID", nargs="+" if action != "flush" else "*")
        if action == "flush":
            sub.add_argument("--domain", help="every message with a recipient pending there")
            sub.add_argument("--all", action="store_true", help="every message")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config) if args.config else None
    if args.spool_dir:
        root = Path(args.spool_dir)
    elif settings is not None:
        root = settings.spool_dir
    else:
        raise MtaLoggingError("name the relay with --config RELAY_YAML or --spool-dir DIR")
    spools = spools_of(root)
    if not spools:
        raise MtaLoggingError(f"no spool at {root} (it has no queue/ directory)")
    request = _request(args)
    answer = merged(request, [ask(spool, settings, request) for spool in spools])
    if not answer["ok"] and request["op"] == "show":
        # failed for its id, as an action fails for one of its ids: said on stderr, exit 1
        print(f"mta-logging queue show: {answer['error']}", file=sys.stderr)
        return 1
    if not answer["ok"]:
        raise MtaLoggingError(answer["error"])
    return _print(args, answer["result"])


def spools_of(root: Path) -> list[Spool]:
    """The spools of the relay whose ``spool_dir`` is ``root``: each worker's
    (``worker-<K>/``) and ``root``'s own; ``root``'s own, when there are workers, only while
    its queue holds mail (a relay of one process left it, a relay with workers moves it)."""
    spools = [Spool(path) for path in worker_dirs(root)]
    own = Spool(root)
    if own.queue_dir.is_dir() and (not spools or any(own.queue_dir.iterdir())):
        spools.insert(0, own)
    return spools


def merged(request: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One answer from the answers of several spools to ``request``: the first failure; else
    the lists joined (oldest first); ``show`` the spool that has the message; an action's
    result per id from the spool that has it (else the first refusal)."""
    if len(answers) == 1:
        return answers[0]
    if request["op"] == "show":
        return next((a for a in answers if a["ok"]), answers[0])
    failed = next((a for a in answers if not a["ok"]), None)
    if failed is not None:
        return failed
    if request["op"] == "list":
        entries = [entry for answer in answers for entry in answer["result"]]
        return {"ok": True, "result": sorted(entries, key=lambda e: e["queued_at"])}
    by_id: dict[str, dict[str, Any]] = {}
    for outcome in (o for answer in answers for o in answer["result"]):
        if outcome["id"] not in by_id or (outcome["ok"] and not by_id[outcome["id"]]["ok"]):
            by_id[outcome["id"]] = outcome
    return {"ok": True, "result": list(by_id.values())}


def ask(spool: Spool, settings: RelaySettings | None, request: dict[str, Any]
        ) -> dict[str, Any]:
    """The answer to ``request``: from the running relay, or worked out on its stopped spool."""
    lock = SpoolLock(spool)
    if not lock.acquire():
        return _ask_relay(spool, request)
    try:
        with _accounting(settings) as accounting:
            return asyncio.run(dispatch(StoppedQueue(spool, settings or RelaySettings(),
                                                     accounting), request))
    finally:
        lock.release()


def _request(args: argparse.Namespace) -> dict[str, Any]:
    command = args.queue_command
    if command == "list":
        return {"op": "list"}
    if command == "show":
        return {"op": "show", "id": args.queue_id}
    request: dict[str, Any] = {"op": command, "ids": args.ids}
    if command == "flush":
        if not (args.ids or args.domain or args.all):
            raise MtaLoggingError("queue flush: name message IDs, --domain D or --all")
        request.update(domain=args.domain, all=args.all)
    return request


def _ask_relay(spool: Spool, request: dict[str, Any]) -> dict[str, Any]:
    path = spool.control_path
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONTROL_TIMEOUT)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            with sock.makefile("rb") as answer:
                line = answer.readline()
        except OSError as exc:
            raise MtaLoggingError(
                f"the spool {spool.root} is in use (its lock is held) but the relay does not "
                f"answer on {path} ({exc.strerror or exc}); is it starting or stopping?"
            ) from None
    if not line:
        raise MtaLoggingError(f"the relay closed {path} without an answer")
    result: dict[str, Any] = json.loads(line)
    return result


@contextmanager
def _accounting(settings: RelaySettings | None
                ) -> Iterator[Callable[[], AccountingLogger | None]]:
    """A maker of the relay's accounting logger, set up the first time it is needed and
    closed (its files finished) at the end."""
    made: list[logging.Logger] = []

    def make() -> AccountingLogger | None:
        if settings is None:
            raise MtaLoggingError("on a stopped relay, bounce and delete need --config: the "
                                  "relay's accounting settings say where the records go")
        if not settings.accounting_enabled:
            return None
        if not made:
            configured = mta_logging.configure(settings.accounting)
            made.append(logging.getLogger(configured.logger))
        return AccountingLogger(made[0])

    try:
        yield make
    finally:
        for logger in made:
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()


def _print(args: argparse.Namespace, result: Any) -> int:
    command = args.queue_command
    if command == "list":
        entries = [QueueEntry.from_json(e) for e in result]
        entries = [e for e in entries
                   if (not args.domain or has_domain(e.recipients, args.domain))
                   and (not args.state or e.state == args.state)]
        if args.json:
            print(json.dumps([e.to_json() for e in entries]))
        else:
            _print_table(entries, time.time())
        return 0
    if command == "show":
        if args.json:
            print(json.dumps(result))
        else:
            _print_message(result)
        return 0
    failed = 0
    for outcome in result:
        if outcome["ok"]:
            print(f"{outcome['id']}: {outcome['text']}")
        else:
            failed += 1
            print(f"mta-logging queue {command}: {outcome['text']}", file=sys.stderr)
    return 1 if failed else 0


def _print_table(entries: list[QueueEntry], now: float) -> None:
    """Like ``mailq``: a line per message, its pending recipients and last error below."""
    for entry in entries:
        next_try = "-" if entry.next_try is None else f"in {_age(entry.next_try - now)}"
        print(f"{entry.queue_id}  {entry.state:<8}  age {_age(now - entry.queued_at):>5}  "
              f"{entry.size:>8} bytes  attempts {entry.attempts}  next {next_try}  "
              f"from <{entry.sender}>")
        if entry.last_error:
            print(f"    ({entry.last_error})")
        for rcpt in entry.recipients:
            print(f"    {rcpt}")
    print(f"-- {len(entries)} message(s), {sum(len(e.recipients) for e in entries)} "
          "recipient(s) pending")


def _print_message(result: dict[str, Any]) -> None:
    entry = QueueEntry.from_json(result)
    now = time.time()
    print(f"id: {entry.queue_id}\nstate: {entry.state}\nage: {_age(now - entry.queued_at)}\n"
          f"size: {entry.size}\nsender: <{entry.sender}>\nclient: {result['client_ip']} "
          f"({result['client_helo']})\nattempts: {entry.attempts}")
    if entry.next_try is not None:
        print(f"next try: in {_age(entry.next_try - now)}")
    if entry.last_error:
        print(f"last error: {entry.last_error}")
    for rcpt in result["all_recipients"]:
        print(f"recipient: <{rcpt['address']}> {rcpt['state']}")
    print()
    print(result["headers"])


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
