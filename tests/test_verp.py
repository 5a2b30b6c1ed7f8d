"""VERP return paths: what encode writes is what decode reads back, and nothing else decodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta_logging.errors import ConfigError
from mta_logging.verp import Verp, VerpToken, read_secret

SECRET = b"a test secret of some length"
VERP = Verp(SECRET, "bounces.example.com")


def test_the_documented_form_and_its_round_trip() -> None:
    address = VERP.encode("0006123456789ABC", 0)
    assert address == "bounces+gaydanrrgiztinjwg44dsqkcim-0-jpiebiqqj6whw@bounces.example.com"
    assert VERP.decode(address) == VerpToken("0006123456789ABC", 0)
    assert VERP.decode(f"<{address}>") == VerpToken("0006123456789ABC", 0)
    assert VERP.decode(VERP.encode("job/7 é", 12)) == VerpToken("job/7 é", 12)


def test_a_change_of_case_on_the_way_back_is_harmless() -> None:
    assert VERP.decode(VERP.encode("q1", 3).upper()) == VerpToken("q1", 3)


@pytest.mark.parametrize("address", [
    # another job or index under the same mac: the mac covers both
    "bounces+gaydanrrgiztinjwg44dsqkcim-1-jpiebiqqj6whw@bounces.example.com",
    "bounces+gaydanrrgiztinjwg44dsqkcia-0-jpiebiqqj6whw@bounces.example.com",
    # a mac made up, cut short, or left out
    "bounces+gaydanrrgiztinjwg44dsqkcim-0-aaaaaaaaaaaaa@bounces.example.com",
    "bounces+gaydanrrgiztinjwg44dsqkcim-0-jpiebiqqj6wh@bounces.example.com",
    "bounces+gaydanrrgiztinjwg44dsqkcim-0@bounces.example.com",
    # another domain or prefix, no token, not an address
    "bounces+gaydanrrgiztinjwg44dsqkcim-0-jpiebiqqj6whw@example.com",
    "returns+gaydanrrgiztinjwg44dsqkcim-0-jpiebiqqj6whw@bounces.example.com",
    "bounces@bounces.example.com", "bounces+@bounces.example.com", "nobody",
])
def test_nothing_else_decodes(address: str) -> None:
    assert VERP.decode(address) is None


def test_another_secret_makes_another_mac() -> None:
    other = Verp(b"another secret, as long as needed", "bounces.example.com")
    assert other.decode(VERP.encode("0006123456789ABC", 0)) is None


def test_is_ours_tells_the_domain_and_prefix_apart_from_validity() -> None:
    assert VERP.is_ours("bounces+forged-0-aaaa@Bounces.Example.com")
    assert not VERP.is_ours("bounces@bounces.example.com")
    assert not VERP.is_ours("bounces+x@example.com")


def test_bad_settings_and_a_job_id_too_long_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="verp.secret: '\\(hidden\\)' is not valid; expected "
                                          "at least 16 bytes"):
        Verp(b"short", "bounces.example.com")
    with pytest.raises(ConfigError, match="verp.prefix: 'a\\+b'"):
        Verp(SECRET, "bounces.example.com", "a+b")
    with pytest.raises(ConfigError, match="job id: 'x{30}' is not valid; too long for a VERP "
                                          "local part of at most 64 octets"):
        VERP.encode("x" * 30, 0)
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    assert read_secret(secret) == SECRET
    with pytest.raises(ConfigError, match="verp.secret_file: .* cannot be read"):
        read_secret(tmp_path / "missing")
