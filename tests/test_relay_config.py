"""Relay settings: defaults, the documented example, and errors that name key, value and rule."""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import socket
import sys
from pathlib import Path

import pytest

from mta_logging.errors import ConfigError
from mta_logging.relay.config import (
    MX_ROUTE,
    TOP_LEVEL_KEYS,
    DsnSettings,
    Route,
    load_settings,
    parse_host_port,
)
from mta_logging.relay.passwords import hash_password, verify_password
from mta_logging.relay.server import event_loop_factory

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_need_nothing_else():
    settings = load_settings(None)
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 2525)
    assert settings.spool_dir == Path("spool")
    assert settings.accounting_enabled and settings.accounting is None
    assert settings.may_relay("127.0.0.1") and settings.may_relay("::1")
    assert not settings.may_relay("192.0.2.1")
    assert settings.route_for("example.com") is MX_ROUTE


def test_the_minimal_config_of_the_issue(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text(
        "listen: 127.0.0.1:2525\n"
        "hostname: relay.example.test\n"
        "relay_networks: [127.0.0.0/8]\n"
        "spool_dir: ./spool\n"
        'routes: {"*": "127.0.0.1:2526"}\n'
        "retry: {intervals: [60, 300, 900, 3600], max_queue_lifetime: 432000}\n"
        "accounting: configs/accounting_files.ini\n")
    settings = load_settings(path)
    assert settings.hostname == "relay.example.test"
    assert settings.relay_networks == (ipaddress.ip_network("127.0.0.0/8"),)
    assert settings.route_for("anything.example") == Route("127.0.0.1", 2526)
    assert settings.retry.intervals == (60, 300, 900, 3600)
    assert [settings.retry.interval(n) for n in (1, 2, 4, 5, 9)] == [60, 300, 3600, 3600, 3600]
    assert settings.retry.max_queue_lifetime == 432000
    assert settings.accounting == "configs/accounting_files.ini"


def test_the_documented_config_file_loads_and_documents_every_key():
    path = ROOT / "configs" / "relay.yaml"
    settings = load_settings(path)
    assert settings.listen_port == 2525
    text = path.read_text()
    for key in TOP_LEVEL_KEYS:
        assert f"\n{key}:" in text or f"\n# {key}:" in text, key


def test_the_event_loop_is_asyncio_unless_uvloop_is_named():
    assert load_settings(None).event_loop == "asyncio"
    assert load_settings({"event_loop": "uvloop"}).event_loop == "uvloop"


def test_uvloop_is_refused_when_it_is_not_installed(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "uvloop" else real_find_spec(name,
                                                                                         *args))
    with pytest.raises(ConfigError) as caught:
        load_settings({"event_loop": "uvloop"})
    assert str(caught.value) == (
        "relay settings: event_loop: 'uvloop' is not valid; uvloop is not installed (pip "
        "install 'mta-logging[uvloop]'); expected asyncio without it")
    assert load_settings({"event_loop": "asyncio"}).event_loop == "asyncio"


def test_the_relay_runs_on_the_loop_named(monkeypatch):
    uvloop = pytest.importorskip("uvloop")
    for name, loop_class in (("asyncio", asyncio.AbstractEventLoop), ("uvloop", uvloop.Loop)):
        loop = event_loop_factory(name)()
        try:
            assert isinstance(loop, loop_class)
        finally:
            loop.close()
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    with pytest.raises(ConfigError) as caught:
        event_loop_factory("uvloop")
    assert str(caught.value) == "event_loop: 'uvloop' is not valid; uvloop is not installed"


def test_routes_exact_parent_wildcard_and_mx():
    settings = load_settings({"routes": {
        "example.com": "[::1]:2600", ".example.org": "10.0.0.1", "mx.test": "mx",
        "*": "smarthost.test:587"}})
    assert settings.route_for("Example.COM.") == Route("::1", 2600)
    assert settings.route_for("a.b.example.org") == Route("10.0.0.1", 25)
    assert settings.route_for("example.org") == Route("smarthost.test", 587)
    assert settings.route_for("mx.test") is MX_ROUTE
    assert str(settings.route_for("example.com")) == "[::1]:2600"


def test_accounting_forms():
    assert load_settings({"accounting": False}).accounting_enabled is False
    inline = load_settings({"accounting": {"path": "/tmp/acct", "separator": ","}})
    assert dict(inline.accounting) == {"path": "/tmp/acct", "separator": ","}  # type: ignore[arg-type]
    assert load_settings({"accounting": None}).accounting is None


def test_ipv4_mapped_clients_match_ipv4_networks():
    settings = load_settings({"relay_networks": ["10.1.0.0/16"]})
    assert settings.may_relay("::ffff:10.1.2.3")
    assert not settings.may_relay("not-an-ip")


def test_dsn_defaults_and_values():
    defaults = load_settings(None).dsn
    assert defaults == DsnSettings(enabled=True, reporting_mta=socket.gethostname(),
                                   delay_notice_after=None, max_full_size=1024 * 1024)
    assert load_settings({"dsn": {}}).dsn == defaults
    assert load_settings({}).dsn == defaults
    given = load_settings({"dsn": {"enabled": False, "reporting_mta": "mx.example.test",
                                   "delay_notice_after": 14400, "max_full_size": "64K"}}).dsn
    assert given == DsnSettings(enabled=False, reporting_mta="mx.example.test",
                                delay_notice_after=14400.0, max_full_size=65536)
    for off in ("off", False, None):
        assert load_settings({"dsn": {"delay_notice_after": off}}).dsn.delay_notice_after is None


def test_the_reporting_mta_is_the_hostname_setting_unless_given():
    for dsn in ({}, {"dsn": None}, {"dsn": {}}, {"dsn": {"enabled": True}}):
        settings = load_settings({"hostname": "relay.example.test", **dsn})
        assert settings.dsn.reporting_mta == "relay.example.test"
    given = load_settings({"hostname": "relay.example.test",
                           "dsn": {"reporting_mta": "mx.example.test"}})
    assert given.dsn.reporting_mta == "mx.example.test"


def test_sizes_accept_units():
    assert load_settings({"max_message_size": "25M"}).max_message_size == 25 * 1024 * 1024
    assert load_settings({"min_free_space": "1G"}).min_free_space == 1024**3
    assert load_settings({"max_message_size": 0}).max_message_size == 0


@pytest.mark.parametrize(("data", "key", "fragment"), [
    ({"listen": "localhost"}, "listen", "host:port"),
    ({"listen": "127.0.0.1:99999"}, "listen", "0 to 65535"),
    ({"relay_networks": ["10.0.0.0/33"]}, "relay_networks", "CIDR"),
    ({"routes": {"*": "host:port"}}, "routes.*", "port"),
    ({"routes": ["a"]}, "routes", "mapping"),
    ({"retry": {"intervals": []}}, "retry.intervals", "list of seconds"),
    ({"retry": {"intervals": [60, -1]}}, "retry.intervals", "greater than 0"),
    ({"retry": {"backoff": 2}}, "retry.backoff", "unknown setting"),
    ({"concurrency": 0}, "concurrency", "at least 1"),
    ({"max_message_size": "big"}, "max_message_size", "size in bytes"),
    ({"source_ip": "eth0"}, "source_ip", "IP address"),
    ({"starttls": "required"}, "starttls", "opportunistic"),
    ({"accounting": 5}, "accounting", "path to an INI or YAML"),
    ({"auth_users": {"alice": "secret"}}, "auth_users.alice", "pbkdf2_sha256"),
    ({"tls": {"cert": "/nonexistent.pem", "key": "/nonexistent.key"}}, "tls.cert", "PEM"),
    ({"listn": "127.0.0.1:25"}, "listn", "unknown setting; allowed: listen"),
    ({"min_free_space": "lots"}, "min_free_space", "size in bytes"),
    ({"listen_backlog": 0}, "listen_backlog", "at least 1"),
    ({"max_connections": 1.5}, "max_connections", "whole number"),
    ({"max_connections_per_ip": "ten"}, "max_connections_per_ip", "whole number"),
    ({"max_per_destination": 0}, "max_per_destination", "at least 1"),
    ({"dsn": {"enabled": "yes"}}, "dsn.enabled", "true or false"),
    ({"dsn": {"reporting_mta": "mail server"}}, "dsn.reporting_mta", "host name"),
    ({"dsn": {"delay_notice_after": "soon"}}, "dsn.delay_notice_after", "seconds greater "
                                                                        "than 0, or off"),
    ({"dsn": {"delay_notice_after": 0}}, "dsn.delay_notice_after", "or off"),
    ({"dsn": {"max_full_size": "huge"}}, "dsn.max_full_size", "size in bytes"),
    ({"dsn": {"notify": "always"}}, "dsn.notify", "unknown setting; allowed: enabled"),
    ({"dsn": True}, "dsn", "expected a mapping"),
    ({"bounces": {}}, "bounces", "expected domains or complaint_addresses"),
    ({"bounces": {"domains": ["*"]}}, "bounces.domains", "a domain such as"),
    ({"bounces": {"complaint_addresses": ["fbl"]}}, "bounces.complaint_addresses",
     "an address such as"),
    ({"bounces": {"domains": ["b.example"], "verp": {"enabled": True}}}, "bounces.verp.secret",
     "at least 16 bytes"),
    ({"bounces": {"complaint_addresses": ["f@x.example"], "verp": {
        "enabled": True, "secret": "0123456789abcdef"}}}, "bounces.verp.enabled",
     "needs a bounce domain"),
    ({"bounces": {"domains": ["b.example"], "verp": {"enabled": "yes"}}},
     "bounces.verp.enabled", "true or false"),
    ({"bounces": {"domains": ["b.example"], "verp": {"secret": "x" * 16,
                                                     "secret_file": "/s"}}},
     "bounces.verp.secret", "not both"),
    ({"bounces": {"domains": ["b.example"], "verp": {"secret_file": "/nonexistent/s"}}},
     "bounces.verp.secret_file", "cannot be read"),
    ({"bounces": {"domains": ["b.example"], "dsn": True}}, "bounces.dsn", "unknown setting"),
    ({"event_loop": "tokio"}, "event_loop", "expected one of asyncio, uvloop"),
])
def test_bad_values_name_key_value_and_rule(data, key, fragment):
    with pytest.raises(ConfigError) as caught:
        load_settings(data)
    assert caught.value.key == key
    assert fragment in str(caught.value)


def test_the_bounces_section(tmp_path):
    (tmp_path / "verp.secret").write_bytes(b"0123456789abcdef0123\n")
    settings = load_settings({"spool_dir": str(tmp_path / "spool"), "bounces": {
        "domains": ["Bounces.Example.com."], "complaint_addresses": ["FBL@example.com"],
        "verp": {"enabled": True, "secret_file": str(tmp_path / "verp.secret")}}})
    bounces = settings.bounces
    assert (bounces.domains, bounces.complaint_addresses) == (("bounces.example.com",),
                                                              ("fbl@example.com",))
    assert bounces.accepts("<anyone@BOUNCES.example.com>") and bounces.accepts("fbl@Example.com")
    assert not bounces.accepts("other@example.com")
    verp = bounces.verp_codec()
    assert verp is not None and verp.secret == b"0123456789abcdef0123"
    assert verp.decode(verp.encode("Q1", 0)) is not None
    assert settings.quarantine_dir == tmp_path / "spool" / "quarantine"
    assert "0123456789abcdef" not in repr(settings)
    assert load_settings(None).bounces.verp_codec() is None
    assert not load_settings(None).bounces.enabled


def test_a_password_is_never_echoed_in_an_error():
    with pytest.raises(ConfigError) as caught:
        load_settings({"auth_users": {"alice": "hunter2"}})
    assert "hunter2" not in str(caught.value)


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text("concurrency: many\n")
    with pytest.raises(ConfigError, match=r"relay\.yaml: concurrency: 'many'"):
        load_settings(path)
    path.write_text("listen: [unclosed\n")
    with pytest.raises(ConfigError, match="expected a YAML file"):
        load_settings(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:2525", ("127.0.0.1", 2525)),
    ("[::1]:25", ("::1", 25)),
    ("mail.example.com", ("mail.example.com", 25)),
    ("[::1]", ("::1", 25)),
])
def test_host_port(text, expected):
    assert parse_host_port("routes.x", text) == expected


def test_password_hashes_verify():
    hashed = hash_password("correct horse", iterations=1000)
    assert hashed.startswith("pbkdf2_sha256$1000$")
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong", hashed)
    settings = load_settings({"auth_users": {"alice": hashed}})
    assert settings.auth_users["alice"] == hashed


def test_workers_default_to_one_process():
    assert load_settings(None).workers == 1
    assert load_settings({"workers": 2}).workers == 2
    assert load_settings({"workers": 64}).workers == 64


@pytest.mark.parametrize(("value", "allowed"), [
    (0, "expected a whole number of at least 1"),
    (-1, "expected a whole number of at least 1"),
    ("two", "expected a whole number of at least 1"),
    (True, "expected a whole number of at least 1"),
    (65, "expected a whole number from 1 to 64 (relay processes; more than the machine's "
         "cores rarely helps)"),
])
def test_a_bad_number_of_workers_is_refused(value, allowed):
    with pytest.raises(ConfigError) as caught:
        load_settings({"workers": value})
    assert str(caught.value) == f"relay settings: workers: {value!r} is not valid; {allowed}"


def test_the_metrics_ports_of_every_worker_must_exist():
    assert load_settings({"workers": 4, "metrics": "127.0.0.1:65532"}).workers == 4
    with pytest.raises(ConfigError) as caught:
        load_settings({"workers": 4, "metrics": "127.0.0.1:65534"})
    assert str(caught.value) == (
        "relay settings: metrics: '127.0.0.1:65534' is not valid; worker K listens on the "
        "port plus K-1: with workers 4 expected a port up to 65532")
