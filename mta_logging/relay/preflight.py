"""What the relay checks before it creates anything, shared by the relay, ``relay --check``
and ``check-config``: the accounting settings it will use, the spool and accounting
directories, the listen address."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from mta_logging.config import AccountingSettings
from mta_logging.config import load as load_accounting
from mta_logging.errors import ConfigError
from mta_logging.outcome import Kind
from mta_logging.relay.config import RelaySettings


def accounting_settings(settings: RelaySettings, path: str | None, source: str | None = None
                        ) -> AccountingSettings | None:
    """The accounting settings the relay uses (None: accounting off); ``path`` overrides
    theirs. An error in settings inline in the relay config (``source``) names the key as
    ``accounting.<key>``; a file named by ``accounting`` that cannot be read (or parsed) is
    refused naming ``source`` and ``accounting``; an error inside that file names the file."""
    if not settings.accounting_enabled:
        return None
    try:
        loaded = load_accounting(settings.accounting)
    except ConfigError as exc:
        if isinstance(settings.accounting, Mapping):
            raise ConfigError(f"accounting.{exc.key}", exc.value, exc.allowed, source=source
                              ) from None
        if exc.key == "config file":
            raise ConfigError("accounting", settings.accounting, exc.allowed, source=source
                              ) from None
        raise
    return loaded if path is None else dataclasses.replace(loaded, path=path)


def check(settings: RelaySettings, accounting: AccountingSettings | None, *,
          listening: bool = False) -> None:
    """What the relay checks before it creates anything: the spool, the accounting
    directories and the suppression list's directory can be made or written, the listen
    address is free (unless ``listening``: the relay holds it). Raises ConfigError naming the
    key."""
    problem = directory_problem(settings.spool_dir)
    if problem:
        raise ConfigError("spool_dir", str(settings.spool_dir), problem)
    if settings.suppression.enabled:
        suppression_file = settings.suppression.file(settings.spool_dir)
        problem = directory_problem(suppression_file.parent)
        if problem:
            raise ConfigError("suppression.path", str(suppression_file), problem)
    if accounting is not None:
        for kind in accounting.records:
            directory = accounting.directory(kind)
            problem = directory_problem(directory)
            if problem:
                raise ConfigError("accounting.path", str(directory), problem)
    if settings.bounces.enabled:
        _check_bounces(settings, accounting)
    if not listening:
        host, port = settings.listen_host, settings.listen_port
        try:
            with socket.create_server((host, port)):
                pass
        except OSError as exc:
            raise ConfigError("listen", f"{host}:{port}",
                              f"cannot listen there ({exc.strerror or exc})") from None


def _check_bounces(settings: RelaySettings, accounting: AccountingSettings | None) -> None:
    """Returned mail becomes rb and f records, and what is neither goes to the quarantine."""
    if accounting is None:
        raise ConfigError("accounting", False, "bounces: records returned mail as rb and f "
                          "records: expected accounting on")
    missing = [kind.code for kind in (Kind.REMOTE_BOUNCE, Kind.FEEDBACK)
               if kind not in accounting.records]
    if missing:
        codes = [kind.code for kind in accounting.records]
        raise ConfigError("accounting.records", ",".join(codes), "bounces: records returned "
                          f"mail as rb and f records: expected {','.join([*codes, *missing])}")
    problem = directory_problem(settings.quarantine_dir)
    if problem:
        raise ConfigError("bounces.quarantine_dir", str(settings.quarantine_dir), problem)


def directory_problem(path: Path) -> str | None:
    """Why the relay could not use ``path`` as a directory it writes to (None: it can)."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return f"must be a directory (or to be made one), but {existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"must be a directory the relay can write, but {existing} is not writable"
    return None
