"""Next hops (RFC 5321 §5.1) with a fake resolver: no test here asks real DNS."""

from __future__ import annotations

import pytest
from relay_sink import FakeResolver

from mta_logging.relay.config import MX_ROUTE, Route
from mta_logging.relay.resolve import Hop, LookupFailed, Unroutable, next_hops


async def test_mx_by_preference_then_their_addresses():
    resolver = FakeResolver(
        mx={"example.test": [(20, "backup.example.test."), (10, "mx1.example.test.")]},
        addresses={"mx1.example.test": ["192.0.2.1", "2001:db8::1"],
                   "backup.example.test": ["192.0.2.9"]})
    hops = await next_hops("example.test", MX_ROUTE, resolver)
    assert hops == [Hop("mx1.example.test", "192.0.2.1", 25),
                    Hop("mx1.example.test", "2001:db8::1", 25),
                    Hop("backup.example.test", "192.0.2.9", 25)]


async def test_no_mx_means_the_domain_itself():
    resolver = FakeResolver(mx={"plain.test": []}, addresses={"plain.test": ["192.0.2.7"]})
    assert await next_hops("plain.test", MX_ROUTE, resolver) == [
        Hop("plain.test", "192.0.2.7", 25)]


async def test_null_mx_bounces():
    resolver = FakeResolver(mx={"nomail.test": [(0, "")]}, addresses={})
    result = await next_hops("nomail.test", MX_ROUTE, resolver)
    assert result == Unroutable(True, "5.1.10", "Domain nomail.test does not accept mail (null MX)")


async def test_nxdomain_bounces_and_servfail_defers():
    resolver = FakeResolver(mx={"down.test": LookupFailed}, addresses={})
    missing = await next_hops("missing.test", MX_ROUTE, resolver)
    assert isinstance(missing, Unroutable) and missing.permanent and missing.dsn_status == "5.1.2"
    down = await next_hops("down.test", MX_ROUTE, resolver)
    assert isinstance(down, Unroutable) and not down.permanent and down.dsn_status == "4.4.3"


async def test_mx_hosts_without_addresses():
    resolver = FakeResolver(mx={"a.test": [(10, "gone.a.test")], "b.test": [(10, "flaky.b.test")]},
                            addresses={"flaky.b.test": LookupFailed})
    gone = await next_hops("a.test", MX_ROUTE, resolver)
    assert isinstance(gone, Unroutable) and gone.permanent and gone.dsn_status == "5.4.4"
    flaky = await next_hops("b.test", MX_ROUTE, resolver)
    assert isinstance(flaky, Unroutable) and not flaky.permanent


@pytest.mark.parametrize(("route", "expected"), [
    (Route("127.0.0.1", 2526), [Hop("127.0.0.1", "127.0.0.1", 2526)]),
    (Route("smarthost.test", 587), [Hop("smarthost.test", "192.0.2.50", 587)]),
])
async def test_routes_skip_mx(route, expected):
    resolver = FakeResolver(mx={}, addresses={"smarthost.test": ["192.0.2.50"]})
    assert await next_hops("anywhere.test", route, resolver) == expected
    assert not any(q.startswith("MX") for q in resolver.asked)
