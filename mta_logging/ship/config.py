"""The shipper's and the ingester's settings: one YAML file, validated once into frozen values.

```yaml
paths: [./accounting_files]          # accounting paths to tail (files or directories)
state_dir: ./ship-state              # checkpoints, one per sink and file
host: relay1                         # default: the short host name
nats: {servers: ["nats://127.0.0.1:4222"], stream: ACCT, subject_prefix: acct, replicas: 3}
webhooks: [{url: "http://127.0.0.1:8080/hook", secret: "s3cret"}]
ingest: {dsn: "postgresql://127.0.0.1/mail", durable: ingest}
```

Every key is described in the README ("Many hosts"); a bad value raises ConfigError naming the
key, the value and what is allowed.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mta_logging.checks import check_keys as _check_keys
from mta_logging.checks import count as _count
from mta_logging.checks import seconds as _seconds
from mta_logging.checks import text as _text
from mta_logging.config import read_yaml_mapping
from mta_logging.errors import ConfigError, without_password
from mta_logging.fields import DEFAULT_TIME_FORMAT

RETENTIONS = ("limits", "interest", "workqueue")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\Z")
_SINK_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """Where records go in JetStream, and how the stream is created when it is missing."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    stream: str = "ACCT"
    subject_prefix: str = "acct"
    replicas: int = 1
    retention: str = "limits"
    max_age: float = 0.0  # seconds a message is kept; 0 = no limit
    duplicate_window: float = 120.0  # seconds the server remembers a Nats-Msg-Id
    window: int = 1024  # unacknowledged publishes at most (and the batch size)
    ack_timeout: float = 5.0  # seconds to wait for one acknowledgement before publishing again


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """One URL that receives batches of records as signed JSON POSTs."""

    url: str
    secret: str
    name: str
    batch: int = 100
    timeout: float = 10.0
    retry_for: float = 7 * DAY  # give a batch up after retrying it this long
    backoff_initial: float = 1.0
    backoff_max: float = 300.0


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """The JetStream pull consumer that writes records into PostgreSQL."""

    dsn: str
    durable: str = "ingest"
    table: str = "accounting_records"
    batch: int = 500
    ack_wait: float = 30.0


@dataclass(frozen=True, slots=True)
class ShipSettings:
    """Validated settings of ``mta-logging ship`` and ``mta-logging ingest``."""

    paths: tuple[Path, ...]  # empty for a host that only ingests
    state_dir: Path
    host: str
    nats: NatsSettings | None = None
    webhooks: tuple[WebhookSettings, ...] = ()
    ingest: IngestSettings | None = None
    time_format: str = DEFAULT_TIME_FORMAT
    poll_interval: float = 1.0
    hold_archives: bool = True  # keep archived files that a sink has not acknowledged yet

    def sink_names(self) -> tuple[str, ...]:
        """The names under which each sink's checkpoints are kept."""
        return (("nats",) if self.nats is not None else ()) + tuple(w.name for w in self.webhooks)


_NATS_DEFAULTS = NatsSettings()
_HOOK_DEFAULTS = WebhookSettings(url="", secret="", name="")
_INGEST_DEFAULTS = IngestSettings(dsn="")


def load_ship_settings(path: str | Path) -> ShipSettings:
    """Read and validate a ship config file (YAML)."""
    file = Path(path)
    return ship_settings(read_yaml_mapping(file, "ship settings"), str(file))


def ship_settings(data: Mapping[str, Any], source: str = "ship settings") -> ShipSettings:
    """Validate a mapping of ship settings; ConfigError names the key, value and rule."""
    try:
        return _build(data)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.value, exc.allowed, source=source) from None


def check_shipping(settings: ShipSettings, source: str) -> None:
    """What ``mta-logging ship`` needs to start: paths to ship from and at least one sink
    (``nats`` or ``webhooks``); ConfigError when one is missing."""
    if not settings.paths:
        raise ConfigError("paths", [], "expected a list of accounting files or directories",
                          source=source)
    if not settings.sink_names():
        raise ConfigError("nats", None, "expected at least one sink: nats or webhooks",
                          source=source)


def ingest_sections(settings: ShipSettings, source: str) -> tuple[NatsSettings, IngestSettings]:
    """What ``mta-logging ingest`` needs to start: the ``nats`` and ``ingest`` sections;
    ConfigError when one is missing."""
    if settings.nats is None or settings.ingest is None:
        missing = "nats" if settings.nats is None else "ingest"
        raise ConfigError(missing, None, "expected a mapping (ingest needs nats: and ingest:)",
                          source=source)
    return settings.nats, settings.ingest


SHIP_KEYS = ("paths", "state_dir", "host", "nats", "webhooks", "ingest", "time_format",
             "poll_interval", "hold_archives")
_NATS_KEYS = ("servers", "stream", "subject_prefix", "replicas", "retention", "max_age",
              "duplicate_window", "window", "ack_timeout")
_WEBHOOK_KEYS = ("url", "secret", "name", "batch", "timeout", "retry_for", "backoff_initial",
                 "backoff_max")
_INGEST_KEYS = ("dsn", "durable", "table", "batch", "ack_wait")


def _build(data: Mapping[str, Any]) -> ShipSettings:
    _check_keys("", data, SHIP_KEYS, what="ship settings")
    paths = data.get("paths", [])
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list):
        raise ConfigError("paths", paths, "expected a list of accounting files or directories")
    hold = data.get("hold_archives", True)
    if not isinstance(hold, bool):
        raise ConfigError("hold_archives", hold, "expected true or false")
    settings = ShipSettings(
        paths=tuple(Path(_text("paths[]", p)) for p in paths),
        state_dir=Path(_text("state_dir", data.get("state_dir", "./ship-state"))),
        host=_token("host", data.get("host") or socket.gethostname().split(".")[0]),
        nats=None if data.get("nats") is None else _nats(data["nats"]),
        webhooks=_webhooks(data.get("webhooks")),
        ingest=None if data.get("ingest") is None else _ingest(data["ingest"]),
        time_format=_text("time_format", data.get("time_format", DEFAULT_TIME_FORMAT)),
        poll_interval=_seconds("poll_interval", data.get("poll_interval"), 1.0),
        hold_archives=hold,
    )
    names = settings.sink_names()
    if len(set(names)) != len(names):
        raise ConfigError("webhooks[].name", names, "expected a different name for each sink")
    return settings


def _nats(data: Any) -> NatsSettings:
    _check_keys("nats.", data, _NATS_KEYS)
    servers = data.get("servers", list(_NATS_DEFAULTS.servers))
    if isinstance(servers, str):
        servers = [servers]
    if not isinstance(servers, list) or not servers:
        raise ConfigError("nats.servers", servers, "expected a list of URLs such as "
                          "nats://127.0.0.1:4222")
    for server in servers:
        if not isinstance(server, str) or urlsplit(server).scheme not in ("nats", "tls"):
            raise ConfigError("nats.servers", server, "expected a URL such as "
                              "nats://127.0.0.1:4222")
    retention = data.get("retention", "limits")
    if retention not in RETENTIONS:
        raise ConfigError("nats.retention", retention, "expected one of " + ", ".join(RETENTIONS))
    replicas = _count("nats.replicas", data.get("replicas"), 1)
    if replicas > 5:
        raise ConfigError("nats.replicas", replicas, "expected 1 to 5 (JetStream's limit)")
    return NatsSettings(
        servers=tuple(servers),
        stream=_token("nats.stream", data.get("stream", _NATS_DEFAULTS.stream)),
        subject_prefix=_subject_prefix(data.get("subject_prefix", _NATS_DEFAULTS.subject_prefix)),
        replicas=replicas,
        retention=retention,
        max_age=_seconds("nats.max_age", data.get("max_age"), 0.0, allow_zero=True),
        duplicate_window=_seconds("nats.duplicate_window", data.get("duplicate_window"),
                                  _NATS_DEFAULTS.duplicate_window),
        window=_count("nats.window", data.get("window"), _NATS_DEFAULTS.window),
        ack_timeout=_seconds("nats.ack_timeout", data.get("ack_timeout"),
                             _NATS_DEFAULTS.ack_timeout),
    )


def _webhooks(data: Any) -> tuple[WebhookSettings, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError("webhooks", data, "expected a list of {url, secret} mappings")
    hooks = []
    for index, item in enumerate(data):
        where = f"webhooks[{index}]"  # which one of the list, counted from 0
        _check_keys(f"{where}.", item, _WEBHOOK_KEYS)
        url = item.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"{where}.url", url, "expected an http:// or https:// URL")
        name = item.get("name", f"webhook{index + 1}")
        if not isinstance(name, str) or not _SINK_NAME.match(name) or name == "nats":
            raise ConfigError(f"{where}.name", name, "expected letters, digits, '.', '_' or "
                              "'-' (and not 'nats')")
        hooks.append(WebhookSettings(
            url=url,
            secret=_text(f"{where}.secret", item.get("secret")),
            name=name,
            batch=_count(f"{where}.batch", item.get("batch"), _HOOK_DEFAULTS.batch),
            timeout=_seconds(f"{where}.timeout", item.get("timeout"), _HOOK_DEFAULTS.timeout),
            retry_for=_seconds(f"{where}.retry_for", item.get("retry_for"),
                               _HOOK_DEFAULTS.retry_for),
            backoff_initial=_seconds(f"{where}.backoff_initial", item.get("backoff_initial"),
                                     _HOOK_DEFAULTS.backoff_initial),
            backoff_max=_seconds(f"{where}.backoff_max", item.get("backoff_max"),
                                 _HOOK_DEFAULTS.backoff_max),
        ))
    return tuple(hooks)


def _ingest(data: Any) -> IngestSettings:
    _check_keys("ingest.", data, _INGEST_KEYS)
    dsn = data.get("dsn")
    if not isinstance(dsn, str) or urlsplit(dsn).scheme not in ("postgresql", "postgres"):
        raise ConfigError("ingest.dsn", without_password(dsn) if isinstance(dsn, str) else dsn,
                          "expected a URL such as "
                          "postgresql://user@127.0.0.1:5432/mail")
    table = data.get("table", _INGEST_DEFAULTS.table)
    if not isinstance(table, str) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", table):
        raise ConfigError("ingest.table", table, "expected a lower-case SQL name such as "
                          "accounting_records")
    return IngestSettings(
        dsn=dsn,
        durable=_token("ingest.durable", data.get("durable", _INGEST_DEFAULTS.durable)),
        table=table,
        batch=_count("ingest.batch", data.get("batch"), _INGEST_DEFAULTS.batch),
        ack_wait=_seconds("ingest.ack_wait", data.get("ack_wait"), _INGEST_DEFAULTS.ack_wait),
    )


def _token(key: str, value: Any) -> str:
    text = _text(key, value)
    if not _TOKEN.match(text):
        raise ConfigError(key, value, "expected letters, digits, '_' or '-' only (it becomes "
                          "part of a NATS subject or name)")
    return text


def _subject_prefix(value: Any) -> str:
    text = _text("nats.subject_prefix", value)
    if not all(_TOKEN.match(part) for part in text.split(".")):
        raise ConfigError("nats.subject_prefix", value, "expected dot-separated tokens of "
                          "letters, digits, '_' or '-', such as acct or mail.acct")
    return text



