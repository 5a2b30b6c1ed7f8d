"""``mta-logging check-config``: validate a config file and print the settings it resolves to.

Four kinds of file, told apart by their keys: an accounting config (``accounting_files.ini``
or accounting YAML), read by :mod:`mta_logging.config`; a relay config (YAML with relay keys),
read by :mod:`mta_logging.relay.config` together with its accounting source; a ship config
(YAML with keys of ``mta-logging ship`` and ``ingest``), read by :mod:`mta_logging.ship.config`
and checked for what each of the two needs to start; a ``dictConfig`` file (YAML with
``version: 1``, such as ``logging.yaml``), put through a dry run
(:mod:`mta_logging.dry_dictconfig`). The directories either would write to are checked as the
relay checks its own (:mod:`mta_logging.relay.preflight`). This command is the one place that
knows every kind, so that the accounting core knows nothing of the relay.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from mta_logging.config import SETTING_KEYS, AccountingSettings, describe, load, read_yaml_mapping
from mta_logging.config import from_mapping as accounting_from_mapping
from mta_logging.dry_dictconfig import DryRun, dry_run
from mta_logging.errors import ConfigError, spell_value, without_password
from mta_logging.outcome import Kind
from mta_logging.relay.config import TOP_LEVEL_KEYS, RelaySettings, Route
from mta_logging.relay.config import from_mapping as relay_from_mapping
from mta_logging.relay.preflight import accounting_settings, check, directory_problem
from mta_logging.ship.config import (
    SHIP_KEYS,
    ShipSettings,
    check_shipping,
    ingest_sections,
    ship_settings,
)

YAML_SUFFIXES = (".yaml", ".yml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``mta-logging check-config``: one config file."""
    parser.add_argument("config", help="accounting_files.ini, an accounting YAML file, a relay "
                                       "YAML file (configs/relay.yaml), a ship YAML file "
                                       "(mta-logging ship and ingest), or a dictConfig YAML "
                                       "file (logging.yaml)")


def run(args: argparse.Namespace) -> int:
    """Print ``<file>: OK`` and the resolved settings (0); a bad file raises ConfigError."""
    path = Path(args.config)
    if path.suffix.lower() not in YAML_SUFFIXES:
        settings = load(path)
        _check_accounting_directories(settings, str(path))
        print(f"{path}: OK")
        print(describe(settings), end="")
        return 0
    data = read_yaml_mapping(path, "settings")
    checks = {"relay": _check_relay, "ship": _check_ship, "dictConfig": _check_dict_config,
              "accounting": _check_accounting}
    checks[config_kind(data, str(path))](path, data)
    return 0


def _check_relay(path: Path, data: Mapping[str, Any]) -> None:
    """The relay validates its own keys and its accounting source, and checks the directories
    it will write to, as it does before it starts."""
    source = str(path)
    relay = relay_from_mapping(data, source)
    accounting = accounting_settings(relay, None, source)
    try:
        check(relay, accounting, listening=True)
    except ConfigError as exc:
        raise exc.located(source) from None
    print(f"{path}: OK (relay config)")
    print(_yaml(relay_mapping(relay, accounting)), end="")


def _check_ship(path: Path, data: Mapping[str, Any]) -> None:
    """Validated as ``mta-logging ship`` and ``ingest`` validate it when they start; the file
    must hold what one of the two needs, and which is said. A file that suits neither gets the
    error ``ship`` gives followed by what ``ingest`` lacks, so that neither reading is hidden."""
    source = str(path)
    settings = ship_settings(data, source)
    commands: list[str] = []
    refusals: list[ConfigError] = []
    starts: tuple[tuple[str, Callable[[ShipSettings, str], object]], ...] = (
        ("ship", check_shipping), ("ingest", ingest_sections))
    for command, needs in starts:
        try:
            needs(settings, source)
        except ConfigError as exc:
            refusals.append(exc)
        else:
            commands.append(command)
    if not commands:
        ship, ingest = refusals
        raise ConfigError(ship.key, ship.value, f"{ship.allowed} — and for mta-logging ingest, "
                          f"{ingest.key}: {spell_value(ingest.value, source)} is not valid; "
                          f"{ingest.allowed}", source=source)
    print(f"{path}: OK (ship config, for {' and '.join(commands)})")
    print(_yaml(ship_mapping(settings)), end="")


def _check_dict_config(path: Path, data: Mapping[str, Any]) -> None:
    """A dry dictConfig run; the directories its handlers would make checked as the relay
    checks its own, the files they would open as opening them would; what dictConfig would
    take but probably not as meant, as warnings."""
    source = str(path)
    result = dry_run(data, source)
    planned = [(directory, directory_problem) for directory in result.directories]
    planned += [(file, file_problem) for file in result.files]
    for where, problem_of in planned:
        problem = problem_of(where.path)
        if problem:
            raise ConfigError(where.key, where.value, problem, source=source)
    for warning in result.warnings:
        print(f"mta-logging check-config: warning: {source}: {warning}", file=sys.stderr)
    print(f"{path}: OK (dictConfig)")
    print(_yaml(dict_config_mapping(result)), end="")


def _check_accounting(path: Path, data: Mapping[str, Any]) -> None:
    settings = accounting_from_mapping(data, str(path))
    _check_accounting_directories(settings, str(path))
    print(f"{path}: OK")
    print(describe(settings), end="")


def _check_accounting_directories(settings: AccountingSettings, source: str) -> None:
    """The directory of each kind written can be made or written, as the relay checks its
    own accounting directories (a file where a directory must be is refused)."""
    for kind in settings.records:
        directory = settings.directory(kind)
        problem = directory_problem(directory)
        if problem:
            raise ConfigError("path", str(directory), problem, source=source)


def config_kind(data: Mapping[str, Any], source: str) -> str:
    """``"dictConfig"`` (a ``version`` key), ``"relay"`` (a key only a relay config has),
    ``"ship"`` (a key only a ship config has) or ``"accounting"`` (any other file with a key of
    an accounting config, or none); ConfigError when no key of the file is known to any of
    them."""
    if "version" in data:
        return "dictConfig"
    if any(key in TOP_LEVEL_KEYS and key not in SETTING_KEYS for key in data):
        return "relay"
    if any(key in SHIP_KEYS and key not in SETTING_KEYS for key in data):
        return "ship"
    if not data or any(key in SETTING_KEYS for key in data):
        return "accounting"
    key = next(iter(data))
    raise ConfigError(str(key), data[key], "neither a relay, a ship nor an accounting setting "
                      f"(no key of this file is); a relay config takes {', '.join(TOP_LEVEL_KEYS)}"
                      f"; a ship config takes {', '.join(SHIP_KEYS)}; an accounting config takes "
                      f"{', '.join(SETTING_KEYS)}; a dictConfig file has version: 1",
                      source=source)


def file_problem(path: Path) -> str | None:
    """Why a ``logging.FileHandler`` could not open ``path`` to write to (None: it can); it
    makes no directory."""
    if path.is_dir():
        return f"must be a file to write to, but {path} is a directory"
    if not path.parent.is_dir():
        return (f"must be a file in an existing directory (a FileHandler makes none), but "
                f"{path.parent} is not a directory")
    writable = path if path.exists() else path.parent
    if not os.access(writable, os.W_OK):
        return f"must be a file the process can write, but {writable} is not writable"
    return None


def dict_config_mapping(result: DryRun) -> dict[str, Any]:
    """What a dictConfig file sets up: each handler's class and the directories or the file it
    writes, each logger's handlers (``root`` for the root logger)."""
    handlers: dict[str, Any] = {}
    for name, factory in result.handlers.items():
        handlers[name] = {"class": factory}
        directories = [str(p.path) for p in result.directories if p.handler == name]
        if directories:
            handlers[name]["directories"] = directories
        handlers[name].update(("file", str(p.path)) for p in result.files if p.handler == name)
    loggers = {name or "root": list(names) for name, names in result.loggers.items()}
    return {"handlers": handlers, "loggers": loggers}


def _yaml(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)


def relay_mapping(relay: RelaySettings, accounting: AccountingSettings | None
                  ) -> dict[str, Any]:
    """The relay's settings as a relay config file says them (valid input again), with the
    accounting settings resolved inline (``false`` when off)."""
    data: dict[str, Any] = {"listen": _host_port(relay.listen_host, relay.listen_port)}
    skipped = ("listen_host", "listen_port", "accounting_enabled", "accounting", "routes",
               "metrics", "bounces")
    data.update((name, _plain(getattr(relay, name))) for name in relay.__dataclass_fields__
                if name not in skipped)
    data["routes"] = {domain: str(route) for domain, route in relay.routes.items()}
    if relay.metrics is not None:
        data["metrics"] = _host_port(*relay.metrics)
    if relay.bounces.enabled:
        data["bounces"] = _plain(relay.bounces)
        verp = data["bounces"]["verp"]
        del verp["secret"]  # never printed: a secret given inline is left out, as if not given
        if verp["secret_file"] is None:
            del verp["secret_file"]
        if data["bounces"]["quarantine_dir"] is None:
            del data["bounces"]["quarantine_dir"]
    data["accounting"] = False if accounting is None else _plain(accounting)
    return data


def ship_mapping(settings: ShipSettings) -> dict[str, Any]:
    """The ship settings as a ship config file says them, without secrets: no webhook's
    ``secret``, and the password of the ingest ``dsn`` URL (``user:PASSWORD@`` or a
    ``password=`` parameter) as ``***``."""
    data: dict[str, Any] = _plain(settings)
    for hook in data["webhooks"]:
        del hook["secret"]
    if data["ingest"] is not None:
        data["ingest"]["dsn"] = without_password(data["ingest"]["dsn"])
    return data


def _host_port(host: str, port: int) -> str:
    """``host:port`` as a relay config writes it (``[::1]:2525``), as a route is written."""
    return str(Route(host=host, port=port))


def _plain(value: Any) -> Any:
    """Settings objects as YAML-friendly data (dataclasses, mappings, paths, networks); a
    whole number of seconds or megabytes as a whole number (``30``, not ``30.0``)."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Kind):
        return value.code
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
