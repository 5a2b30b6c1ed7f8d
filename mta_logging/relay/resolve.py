"""Where to deliver a domain's mail: a configured route, or MX lookup (RFC 5321 §5.1).

DNS is behind the small :class:`Resolver` protocol, so tests pass a fake and never touch the
network; :class:`DnsResolver` is the real one (dnspython for MX, the system resolver for
addresses, so ``/etc/hosts`` names work in routes).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Protocol

from mta_logging.relay.config import Route


class NoSuchDomain(Exception):
    """The name does not exist (NXDOMAIN): a permanent failure."""


class LookupFailed(Exception):
    """The lookup could not be completed (timeout, SERVFAIL): try again later."""


class Resolver(Protocol):
    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs; [] when the domain exists but has no MX records.

        A null MX (RFC 7505) is returned as ``[(0, "")]``. Raises NoSuchDomain or LookupFailed.
        """
        ...

    async def addresses(self, host: str) -> list[str]:
        """IPv4/IPv6 addresses of ``host``. Raises NoSuchDomain or LookupFailed."""
        ...


@dataclass(frozen=True, slots=True)
class Hop:
    """One address to try: the host name it came from, the IP to connect to, the port."""

    host: str
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class Unroutable:
    """No address to try: ``permanent`` decides bounce (True) or defer (False)."""

    permanent: bool
    dsn_status: str
    dsn_msg: str


async def next_hops(domain: str, route: Route, resolver: Resolver) -> list[Hop] | Unroutable:
    """The addresses to try for ``domain``, most preferred first, or why there are none."""
    if route.host is not None:
        return await _host_hops(route.host, route.port, resolver, domain)
    try:
        records = await resolver.mx(domain)
    except NoSuchDomain:
        return Unroutable(True, "5.1.2", f"Host or domain name not found. Name service error "
                                         f"for name={domain} type=MX: Host not found")
    except LookupFailed as exc:
        return Unroutable(False, "4.4.3", f"Host or domain name not found. Name service error "
                                          f"for name={domain} type=MX: {exc or 'try again'}")
    if len(records) == 1 and records[0][1].rstrip(".") == "":
        return Unroutable(True, "5.1.10", f"Domain {domain} does not accept mail (null MX)")
    hosts = [host.rstrip(".") for _, host in sorted(records, key=lambda r: r[0])] or [domain]
    hops: list[Hop] = []
    temporary = False
    for host in dict.fromkeys(hosts):
        found = await _host_hops(host, 25, resolver, domain)
        if isinstance(found, Unroutable):
            temporary = temporary or not found.permanent
        else:
            hops.extend(found)
    if hops:
        return hops
    if temporary:
        return Unroutable(False, "4.4.3", f"no address found for the mail hosts of {domain} "
                                          f"({', '.join(hosts)}); DNS lookup failed, try again")
    return Unroutable(True, "5.4.4", f"Unable to route: no address found for the mail hosts "
                                     f"of {domain} ({', '.join(hosts)})")


async def _host_hops(host: str, port: int, resolver: Resolver, domain: str
                     ) -> list[Hop] | Unroutable:
    if _is_ip(host):
        return [Hop(host, host, port)]
    try:
        addresses = await resolver.addresses(host)
    except NoSuchDomain:
        addresses = []
    except LookupFailed as exc:
        return Unroutable(False, "4.4.3", f"Name service error for name={host} type=A: "
                                          f"{exc or 'try again'}")
    if not addresses:
        return Unroutable(True, "5.4.4", f"Unable to route to {domain}: host {host} has no "
                                         f"address")
    return [Hop(host, ip, port) for ip in dict.fromkeys(addresses)]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class DnsResolver:
    """The real resolver: MX from DNS (dnspython), addresses from the system resolver."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._dns: object | None = None

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        import dns.asyncresolver
        import dns.exception
        import dns.name
        import dns.resolver

        if self._dns is None:
            self._dns = dns.asyncresolver.Resolver()
        resolver: dns.asyncresolver.Resolver = self._dns  # type: ignore[assignment]
        try:
            answer = await resolver.resolve(domain, "MX", lifetime=self.timeout)
        except dns.resolver.NXDOMAIN:
            raise NoSuchDomain(domain) from None
        except dns.resolver.NoAnswer:
            return []
        except dns.exception.DNSException as exc:
            raise LookupFailed(str(exc)) from None
        return [(int(r.preference), "" if r.exchange == dns.name.root
                 else r.exchange.to_text(omit_final_dot=True)) for r in answer]

    async def addresses(self, host: str) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), self.timeout)
        except TimeoutError:
            raise LookupFailed(f"timed out looking up {host}") from None
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)):
                raise NoSuchDomain(host) from None
            raise LookupFailed(str(exc)) from None
        return [str(info[4][0]) for info in infos]
