"""Relay settings: read once from YAML or a mapping, validated, frozen.

Every key is documented, with its default and unit, in ``configs/relay.yaml``. A bad value
raises :class:`~mta_logging.errors.ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mta_logging.checks import check_keys as _check_keys
from mta_logging.checks import count as _count
from mta_logging.checks import flag as _flag
from mta_logging.checks import seconds as _seconds
from mta_logging.checks import text as _text
from mta_logging.config import SETTING_KEYS, read_yaml_mapping
from mta_logging.errors import ConfigError
from mta_logging.suppression import DB_NAME, DEFAULT_EXPIRY, checked_expiry
from mta_logging.verp import Verp, read_secret

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
AccountingSource = str | Mapping[str, Any] | None

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_DOMAIN = re.compile(r"^(\*|\.?[^\s@:/\[\]]+)$")
DEFAULT_MAX_FULL_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Route:
    """Next hop for a destination domain: ``host:port``, or MX lookup when ``host`` is None."""

    host: str | None = None
    port: int = 25

    def __str__(self) -> str:
        if self.host is None:
            return "mx"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


MX_ROUTE = Route()


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """When to try again after a temporary failure, and when to give up."""

    intervals: tuple[float, ...] = (60, 120, 240, 480, 960, 1920, 3600)
    max_queue_lifetime: float = 432000.0

    def interval(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based); the last repeats."""
        return self.intervals[min(max(failures, 1), len(self.intervals)) - 1]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait on the remote side (RFC 5321 §4.5.3.2 suggests minutes)."""

    connect: float = 30.0
    command: float = 300.0
    data: float = 600.0
    inbound: float = 300.0


@dataclass(frozen=True, slots=True)
class ConnectionReuse:
    """Idle outbound connections kept per next hop and reused for later messages."""

    idle_timeout: float = 5.0
    max_messages: int = 100


@dataclass(frozen=True, slots=True)
class DsnSettings:
    """Delivery status notifications (RFC 3461 in, RFC 3464 out).

    ``enabled``: DSN offered at EHLO, and reports sent to envelope senders (RFC 5321 §4.5.5:
    a relay MUST tell the sender about mail it accepted and cannot deliver). ``reporting_mta``:
    the name in ``Reporting-MTA`` and in the report's ``From`` (from a config: the relay's
    ``hostname`` setting unless given; the default here is the default ``hostname``).
    ``delay_notice_after``: seconds in the queue after which a recipient without a NOTIFY
    parameter gets a delay notice (None: only those that asked with NOTIFY=DELAY, at their
    first deferral). ``max_full_size``: RET=FULL returns the whole message up to this many
    bytes, the headers only above it.
    """

    enabled: bool = True
    reporting_mta: str = field(default_factory=socket.gethostname)
    delay_notice_after: float | None = None
    max_full_size: int = DEFAULT_MAX_FULL_SIZE


@dataclass(frozen=True, slots=True)
class SuppressionSettings:
    """The suppression list: off unless configured; ``path`` None: ``spool_dir/suppression.db``;
    ``expiry``: seconds an entry lasts, per reason (None: never)."""

    enabled: bool = False
    path: Path | None = None
    expiry: Mapping[str, float | None] = field(default_factory=lambda: DEFAULT_EXPIRY)

    def file(self, spool_dir: Path) -> Path:
        """The list's file for a relay whose spool is ``spool_dir``."""
        return spool_dir / DB_NAME if self.path is None else self.path


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class VerpSettings:
    """VERP return paths under the first bounce domain (see :mod:`mta_logging.verp`)."""

    enabled: bool = False
    prefix: str = "bounces"
    secret_file: Path | None = None
    secret: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class BounceSettings:
    """Mail that comes back: the bounce domains and complaint addresses the relay accepts mail
    for (recorded as ``rb``/``f`` records, never relayed), VERP, and the quarantine for what
    parses as neither (None: ``<spool_dir>/quarantine``)."""

    domains: tuple[str, ...] = ()
    complaint_addresses: tuple[str, ...] = ()
    verp: VerpSettings = VerpSettings()
    quarantine_dir: Path | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.domains or self.complaint_addresses)

    def accepts(self, address: str) -> bool:
        """Whether mail to ``address`` is returned mail (any case)."""
        lowered = address.strip().strip("<>").lower()
        return lowered in self.complaint_addresses or (
            lowered.rpartition("@")[2] in self.domains)

    def verp_codec(self) -> Verp | None:
        """The VERP codec when VERP is on; None otherwise."""
        if not self.verp.enabled:
            return None
        return Verp(self.verp.secret, self.domains[0], self.verp.prefix)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Validated relay settings (see ``configs/relay.yaml``)."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 2525
    hostname: str = field(default_factory=socket.gethostname)
    relay_networks: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    auth_users: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    tls: TlsFiles | None = None
    max_message_size: int = 10 * 1024 * 1024
    max_recipients: int = 1000
    source_ip: str | None = None
    vmta: str | None = None
    spool_dir: Path = Path("spool")
    routes: Mapping[str, Route] = field(default_factory=lambda: _EMPTY)
    retry: RetrySettings = RetrySettings()
    concurrency: int = 40
    max_per_destination: int = 20
    timeouts: Timeouts = Timeouts()
    connection_reuse: ConnectionReuse = ConnectionReuse()
    starttls: str = "opportunistic"
    accounting_enabled: bool = True
    accounting: AccountingSource = None
    shutdown_timeout: float = 30.0
    log_level: str = "INFO"
    min_free_space: int = 50 * 1024 * 1024
    listen_backlog: int = 1024
    max_connections: int = 200
    max_connections_per_ip: int = 50
    metrics: tuple[str, int] | None = None
    dsn: DsnSettings = field(default_factory=DsnSettings)
    suppression: SuppressionSettings = SuppressionSettings()
    bounces: BounceSettings = BounceSettings()
    event_loop: str = "asyncio"
    workers: int = 1

    @property
    def quarantine_dir(self) -> Path:
        """Where returned mail that parses as neither a bounce nor a complaint is kept."""
        configured = self.bounces.quarantine_dir
        return self.spool_dir / "quarantine" if configured is None else configured

    @property
    def sent_index_path(self) -> Path:
        """The sent index (Message-ID → job) the relay keeps while bounces are configured."""
        return self.spool_dir / "sent.sqlite"

    def route_for(self, domain: str) -> Route:
        """The route of ``domain``: exact match, then ``.parent`` suffixes, then ``*``, else MX."""
        routes = self.routes
        if not routes:
            return MX_ROUTE
        domain = domain.lower().rstrip(".")
        route = routes.get(domain)
        if route is not None:
            return route
        labels = domain.split(".")
        for start in range(1, len(labels)):
            route = routes.get("." + ".".join(labels[start:]))
            if route is not None:
                return route
        return routes.get("*", MX_ROUTE)

    def may_relay(self, client_ip: str) -> bool:
        """True if a client at ``client_ip`` may relay without authenticating."""
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.relay_networks)


TOP_LEVEL_KEYS = (
    "listen", "hostname", "relay_networks", "auth_users", "tls", "max_message_size",
    "max_recipients", "source_ip", "vmta", "spool_dir", "routes", "retry", "concurrency",
    "timeouts", "connection_reuse", "starttls", "accounting", "shutdown_timeout", "log_level",
    "min_free_space", "listen_backlog", "max_connections", "max_connections_per_ip",
    "max_per_destination", "metrics", "dsn", "suppression", "bounces", "event_loop",
    "workers",
)
STARTTLS_MODES = ("opportunistic", "off")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EVENT_LOOPS = ("asyncio", "uvloop")
MAX_WORKERS = 64


def load_settings(source: str | os.PathLike[str] | Mapping[str, Any] | None = None
                  ) -> RelaySettings:
    """Settings from a YAML file, a mapping, or all defaults (None)."""
    if source is None:
        return RelaySettings()
    if isinstance(source, Mapping):
        return from_mapping(source, "relay settings")
    path = Path(source)
    return from_mapping(read_yaml_mapping(path, "relay settings"), str(path))


def from_mapping(data: Mapping[str, Any], source: str = "relay settings") -> RelaySettings:
    """Validate a mapping of relay settings (the YAML form)."""
    try:
        return _build(data)
    except ConfigError as exc:
        if exc.source is None:
            raise ConfigError(exc.key, exc.value, exc.allowed, source=source) from None
        raise


def _build(data: Mapping[str, Any]) -> RelaySettings:
    _check_nesting(data)
    _check_keys("", data, TOP_LEVEL_KEYS)
    defaults = RelaySettings(hostname="localhost")
    host, port = defaults.listen_host, defaults.listen_port
    if data.get("listen") is not None:
        host, listen_port = parse_host_port("listen", data["listen"], default_port=None)
        if listen_port is None:
            raise ConfigError("listen", data["listen"], "expected host:port such as 127.0.0.1:2525")
        port = listen_port
    accounting_enabled, accounting = _accounting(data.get("accounting"))
    given_hostname = data.get("hostname")
    hostname = socket.gethostname() if given_hostname is None else _hostname(given_hostname)
    settings = RelaySettings(
        listen_host=host,
        listen_port=port,
        hostname=hostname,
        relay_networks=_networks(data.get("relay_networks", None), defaults.relay_networks),
        auth_users=_auth_users(data.get("auth_users")),
        tls=_tls(data.get("tls")),
        max_message_size=_size("max_message_size", data.get("max_message_size"),
                               defaults.max_message_size),
        max_recipients=_count("max_recipients", data.get("max_recipients"),
                              defaults.max_recipients),
        source_ip=_optional_ip("source_ip", data.get("source_ip")),
        vmta=_optional_text("vmta", data.get("vmta")),
        spool_dir=Path(_text("spool_dir", data.get("spool_dir", str(defaults.spool_dir)))),
        routes=_routes(data.get("routes")),
        retry=_retry(data.get("retry")),
        concurrency=_count("concurrency", data.get("concurrency"), defaults.concurrency),
        max_per_destination=_count("max_per_destination", data.get("max_per_destination"),
                                   defaults.max_per_destination),
        timeouts=_timeouts(data.get("timeouts")),
        connection_reuse=_reuse(data.get("connection_reuse")),
        starttls=_choice("starttls", data.get("starttls"), STARTTLS_MODES, defaults.starttls),
        accounting_enabled=accounting_enabled,
        accounting=accounting,
        shutdown_timeout=_seconds("shutdown_timeout", data.get("shutdown_timeout"),
                                  defaults.shutdown_timeout, allow_zero=True),
        log_level=_choice("log_level", _upper(data.get("log_level")), LOG_LEVELS,
                          defaults.log_level),
        min_free_space=_size("min_free_space", data.get("min_free_space"),
                             defaults.min_free_space),
        listen_backlog=_count("listen_backlog", data.get("listen_backlog"),
                              defaults.listen_backlog),
        max_connections=_count("max_connections", data.get("max_connections"),
                               defaults.max_connections),
        max_connections_per_ip=_count("max_connections_per_ip",
                                      data.get("max_connections_per_ip"),
                                      defaults.max_connections_per_ip),
        metrics=_metrics(data.get("metrics")),
        dsn=_dsn(data.get("dsn"), hostname),
        suppression=_suppression(data.get("suppression")),
        bounces=_bounces(data.get("bounces")),
        event_loop=_event_loop(data.get("event_loop"), defaults.event_loop),
        workers=_workers(data.get("workers"), defaults.workers),
    )
    if settings.metrics is not None and settings.metrics[1] + settings.workers - 1 > 65535:
        host, port = settings.metrics
        raise ConfigError("metrics", f"{host}:{port}", f"worker K listens on the port plus K-1: "
                          f"with workers {settings.workers} expected a port up to "
                          f"{65536 - settings.workers}")
    return settings


def _dsn(value: Any, hostname: str) -> DsnSettings:
    """``dsn``; ``reporting_mta`` not given is the relay's ``hostname``."""
    if value is None:
        return DsnSettings(reporting_mta=hostname)
    _check_keys("dsn.", value, ("enabled", "reporting_mta", "delay_notice_after",
                                "max_full_size"))
    enabled = _flag("dsn.enabled", value.get("enabled"), True)
    reporting_mta = value.get("reporting_mta")
    delay = value.get("delay_notice_after")
    return DsnSettings(
        enabled=enabled,
        reporting_mta=hostname if reporting_mta is None else _hostname(
            reporting_mta, "dsn.reporting_mta"),
        delay_notice_after=_delay_notice_after(delay),
        max_full_size=_size("dsn.max_full_size", value.get("max_full_size"),
                            DEFAULT_MAX_FULL_SIZE),
    )


def _suppression(value: Any) -> SuppressionSettings:
    """null or false: off; true: on, with the defaults; a mapping: on unless ``enabled: false``."""
    if value is None or value is False:
        return SuppressionSettings()
    if value is True:
        return SuppressionSettings(enabled=True)
    _check_keys("suppression.", value, ("enabled", "path", "expiry"))
    enabled = _flag("suppression.enabled", value.get("enabled"), True)
    path = value.get("path")
    return SuppressionSettings(
        enabled=enabled,
        path=None if path is None else Path(_text("suppression.path", path)),
        expiry=checked_expiry(value.get("expiry"), "suppression.expiry"),
    )


def _bounces(value: Any) -> BounceSettings:
    if value is None:
        return BounceSettings()
    _check_keys("bounces.", value, ("domains", "complaint_addresses", "verp", "quarantine_dir"))
    domains = tuple(_text("bounces.domains", d).lower().rstrip(".")
                    for d in _list("bounces.domains", value.get("domains")))
    for domain in domains:
        if not _DOMAIN.match(domain) or domain == "*" or domain.startswith("."):
            raise ConfigError("bounces.domains", domain, "expected a domain such as "
                              "bounces.example.com")
    addresses = tuple(_text("bounces.complaint_addresses", a).lower()
                      for a in _list("bounces.complaint_addresses",
                                     value.get("complaint_addresses")))
    for address in addresses:
        if address.count("@") != 1 or address.startswith("@") or address.endswith("@"):
            raise ConfigError("bounces.complaint_addresses", address,
                              "expected an address such as fbl@example.com")
    if not domains and not addresses:
        raise ConfigError("bounces", value, "expected domains or complaint_addresses (or "
                          "leave bounces out)")
    quarantine = value.get("quarantine_dir")
    return BounceSettings(
        domains=domains, complaint_addresses=addresses, verp=_verp(value.get("verp"), domains),
        quarantine_dir=None if quarantine is None else Path(_text("bounces.quarantine_dir",
                                                                  quarantine)))


def _list(key: str, value: Any) -> list[Any]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(key, value, "expected a list")
    return list(items)


def _verp(value: Any, domains: tuple[str, ...]) -> VerpSettings:
    if value is None:
        return VerpSettings()
    _check_keys("bounces.verp.", value, ("enabled", "prefix", "secret", "secret_file"))
    enabled = _flag("bounces.verp.enabled", value.get("enabled"), False)
    prefix = _text("bounces.verp.prefix", value.get("prefix", "bounces"))
    secret_file = value.get("secret_file")
    if value.get("secret") is not None and secret_file is not None:
        raise ConfigError("bounces.verp.secret", "(hidden)", "expected secret or secret_file, "
                          "not both")
    if secret_file is not None:
        path = Path(_text("bounces.verp.secret_file", secret_file))
        secret = read_secret(path, "bounces.verp.secret_file")
    else:
        path = None
        given = value.get("secret")
        secret = b"" if given is None else _text("bounces.verp.secret", given).encode("utf-8")
    settings = VerpSettings(enabled, prefix, path, secret)
    if enabled:
        if not domains:
            raise ConfigError("bounces.verp.enabled", True, "VERP needs a bounce domain: "
                              "expected bounces.domains")
        try:
            Verp(secret, domains[0], prefix)  # the checks of its use: length, prefix
        except ConfigError as exc:
            raise ConfigError(f"bounces.{exc.key}", exc.value, exc.allowed) from None
    return settings


def _metrics(value: Any) -> tuple[str, int] | None:
    if value is None:
        return None
    host, port = parse_host_port("metrics", value, default_port=None)
    if port is None:
        raise ConfigError("metrics", value, "expected host:port such as 127.0.0.1:9025")
    return host, port


def _delay_notice_after(value: Any) -> float | None:
    """Seconds, or None for ``off`` (YAML reads an unquoted off as false)."""
    if value is None or value is False or value == "off":
        return None
    try:
        return _seconds("dsn.delay_notice_after", value, 0)
    except ConfigError:
        raise ConfigError("dsn.delay_notice_after", value,
                          "expected a number of seconds greater than 0, or off") from None


def _check_nesting(data: Mapping[str, Any]) -> None:
    """An accounting setting at the top of a relay config belongs under ``accounting:``."""
    for key, value in data.items():
        if key not in TOP_LEVEL_KEYS and key in SETTING_KEYS:
            raise ConfigError(key, value, f"an accounting setting, which a relay config "
                                          f"takes under accounting: (accounting: {{{key}: ...}})")


def parse_host_port(key: str, value: Any, default_port: int | None = 25
                    ) -> tuple[str, int | None]:
    """``host:port``, ``[ipv6]:port``, ``host`` (port = default_port) → (host, port)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, value, "expected host:port such as 127.0.0.1:2525")
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(key, value, "expected [ipv6-address]:port")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None
    if not host or any(c.isspace() for c in host):
        raise ConfigError(key, value, "expected host:port such as 127.0.0.1:2525")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(key, value, "the port must be a number from 0 to 65535")
    return host, int(port_text)






def _optional_text(key: str, value: Any) -> str | None:
    return None if value is None or value == "" else _text(key, value)


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _choice(key: str, value: Any, allowed: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value not in allowed:
        raise ConfigError(key, value, "expected one of " + ", ".join(allowed))
    return str(value)


def _event_loop(value: Any, default: str) -> str:
    name = _choice("event_loop", value, EVENT_LOOPS, default)
    if name == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ConfigError("event_loop", name, "uvloop is not installed (pip install "
                          "'mta-logging[uvloop]'); expected asyncio without it")
    return name


def _workers(value: Any, default: int) -> int:
    workers = _count("workers", value, default)
    if workers > MAX_WORKERS:
        raise ConfigError("workers", value, f"expected a whole number from 1 to {MAX_WORKERS} "
                          "(relay processes; more than the machine's cores rarely helps)")
    return workers


def _hostname(value: Any, key: str = "hostname") -> str:
    text = _text(key, value)
    if any(c in text for c in " \t\r\n<>[]@"):
        raise ConfigError(key, value, "expected a host name such as relay.example.com")
    return text






def _size(key: str, value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(key, value, "expected a size in bytes such as 10485760 or 10M "
                                      "(K, M, G = 1024-based units); 0 = no limit")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _optional_ip(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ConfigError(key, value, "expected an IP address of this host") from None


def _networks(value: Any, default: tuple[Network, ...]) -> tuple[Network, ...]:
    if value is None:
        return default
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError("relay_networks", value, "expected a list of CIDR networks")
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ConfigError("relay_networks", item,
                              "expected a CIDR network such as 127.0.0.0/8 or ::1/128") from None
    return tuple(networks)


def _auth_users(value: Any) -> Mapping[str, str]:
    if value is None:
        return _EMPTY
    from mta_logging.relay.passwords import check_hash

    if not isinstance(value, Mapping):
        raise ConfigError("auth_users", value, "expected a mapping of user name to password hash")
    users = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user:
            raise ConfigError("auth_users", user, "expected a user name")
        users[user] = check_hash(f"auth_users.{user}", hashed)
    return MappingProxyType(users)


def _tls(value: Any) -> TlsFiles | None:
    if value is None:
        return None
    _check_keys("tls.", value, ("cert", "key"))
    files = {}
    for key in ("cert", "key"):
        path = Path(_text(f"tls.{key}", value.get(key)))
        if not path.is_file():
            raise ConfigError(f"tls.{key}", str(path), "expected a readable PEM file")
        files[key] = path
    return TlsFiles(cert=files["cert"], key=files["key"])


def _routes(value: Any) -> Mapping[str, Route]:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise ConfigError("routes", value,
                          'expected a mapping of domain (or "*") to host:port or mx')
    routes = {}
    for domain, target in value.items():
        if not isinstance(domain, str) or not _DOMAIN.match(domain):
            raise ConfigError("routes", domain,
                              'expected a domain, ".parent.domain" or "*" as the key')
        key = f"routes.{domain}"
        if isinstance(target, str) and target.strip().lower() == "mx":
            route = MX_ROUTE
        else:
            host, port = parse_host_port(key, target)
            route = Route(host=host, port=port if port is not None else 25)
        routes[domain.lower().rstrip(".")] = route
    return MappingProxyType(routes)


def _retry(value: Any) -> RetrySettings:
    defaults = RetrySettings()
    if value is None:
        return defaults
    _check_keys("retry.", value, ("intervals", "max_queue_lifetime"))
    intervals = value.get("intervals")
    if intervals is None:
        parsed = defaults.intervals
    else:
        if not isinstance(intervals, list | tuple) or not intervals:
            raise ConfigError("retry.intervals", intervals,
                              "expected a list of seconds such as [60, 300, 900, 3600]")
        parsed = tuple(_seconds("retry.intervals", item, 0) for item in intervals)
    return RetrySettings(
        intervals=parsed,
        max_queue_lifetime=_seconds("retry.max_queue_lifetime", value.get("max_queue_lifetime"),
                                    defaults.max_queue_lifetime),
    )


def _timeouts(value: Any) -> Timeouts:
    defaults = Timeouts()
    if value is None:
        return defaults
    names = ("connect", "command", "data", "inbound")
    _check_keys("timeouts.", value, names)
    values = {name: _seconds(f"timeouts.{name}", value.get(name), getattr(defaults, name))
              for name in names}
    return Timeouts(**values)


def _reuse(value: Any) -> ConnectionReuse:
    defaults = ConnectionReuse()
    if value is None:
        return defaults
    if value is False:
        return ConnectionReuse(idle_timeout=0, max_messages=1)
    _check_keys("connection_reuse.", value, ("idle_timeout", "max_messages"))
    return ConnectionReuse(
        idle_timeout=_seconds("connection_reuse.idle_timeout", value.get("idle_timeout"),
                              defaults.idle_timeout, allow_zero=True),
        max_messages=_count("connection_reuse.max_messages", value.get("max_messages"),
                            defaults.max_messages),
    )


def _accounting(value: Any) -> tuple[bool, AccountingSource]:
    """(enabled, source): false = off; null = defaults; a path; or an inline mapping."""
    if value is False:
        return False, None
    if value is None or value is True:
        return True, None
    if isinstance(value, str) and value.strip():
        return True, value.strip()
    if isinstance(value, Mapping):
        return True, MappingProxyType(dict(value))
    raise ConfigError("accounting", value,
                      "expected a path to an INI or YAML file, an inline mapping of accounting "
                      "settings, null for the defaults, or false to turn accounting off")

