"""``mta-logging check-config``: validate a config file and print the settings it resolves to.

The file is an accounting config (``accounting_files.ini`` or accounting YAML), read by
:mod:`mta_logging.config`, or a relay config (YAML with relay keys), read by
:mod:`mta_logging.relay.config` together with its accounting source. This command is the one
place that knows both, so that the accounting core knows nothing of the relay.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mta_logging.config import SETTING_KEYS, AccountingSettings, describe, load
from mta_logging.errors import ConfigError
from mta_logging.outcome import Kind
from mta_logging.relay.config import TOP_LEVEL_KEYS, RelaySettings, load_settings
from mta_logging.relay.preflight import accounting_settings, check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``mta-logging check-config``: one config file."""
    parser.add_argument("config", help="accounting_files.ini, an accounting YAML file, or a "
                                       "relay YAML file (configs/relay.yaml)")


def run(args: argparse.Namespace) -> int:
    """Print ``<file>: OK`` and the resolved settings (0); a bad file raises ConfigError."""
    path = Path(args.config)
    if _relay_keys(path):
        # a relay config: the relay validates its own keys and its accounting source, and
        # checks the directories it will write to, as it does before it starts
        relay = load_settings(path)
        settings = accounting_settings(relay, None, str(path))
        check(relay, settings, listening=True)
        print(f"{path}: OK (relay config)")
        print(yaml.safe_dump(relay_mapping(relay, settings), sort_keys=False,
                             allow_unicode=True), end="")
        return 0
    settings = load(path)
    print(f"{path}: OK")
    print(describe(settings), end="")
    return 0


def _relay_keys(path: Path) -> bool:
    """True when ``path`` is a YAML file with keys that only a relay config has; ConfigError
    when it is a mapping none of whose keys a relay or an accounting config knows."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        return False
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # load() reports it with the file named
    if not isinstance(data, Mapping) or not data:
        return False
    relay_only = set(TOP_LEVEL_KEYS) - set(SETTING_KEYS)
    if any(key in relay_only for key in data):
        return True
    if any(key in SETTING_KEYS for key in data) or "version" in data:  # dictConfig: load()
        return False
    key = next(iter(data))
    raise ConfigError(str(key), data[key], "neither a relay nor an accounting setting (no key "
                      f"of this file is); a relay config takes {', '.join(TOP_LEVEL_KEYS)}; an "
                      f"accounting config takes {', '.join(SETTING_KEYS)}", source=str(path))


def relay_mapping(relay: RelaySettings, accounting: AccountingSettings | None
                  ) -> dict[str, Any]:
    """The relay's settings as a relay config file says them (valid input again), with the
    accounting settings resolved inline (``false`` when off)."""
    data: dict[str, Any] = {"listen": f"{relay.listen_host}:{relay.listen_port}"}
    skipped = ("listen_host", "listen_port", "accounting_enabled", "accounting", "routes",
               "metrics", "bounces")
    data.update((name, _plain(getattr(relay, name))) for name in relay.__dataclass_fields__
                if name not in skipped)
    data["routes"] = {domain: str(route) for domain, route in relay.routes.items()}
    if relay.metrics is not None:
        data["metrics"] = f"{relay.metrics[0]}:{relay.metrics[1]}"
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


def _plain(value: Any) -> Any:
    """Settings objects as YAML-friendly data (dataclasses, mappings, paths, networks)."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Kind):
        return value.code
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
