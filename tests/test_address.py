"""A recipient's domain: one rule for the relay and the reports."""

import pytest

from mta_logging.address import domain_of


@pytest.mark.parametrize(("address", "domain"), [
    ("bob@example.com", "example.com"),
    ("Bob@Example.COM", "example.com"),
    ("<bob@example.com>", "example.com"),
    ("bob@example.com.", "example.com"),
    (" bob@example.com ", "example.com"),
    ('"a@b"@example.org', "example.org"),  # the last @ separates the domain
])
def test_domain_after_the_last_at(address: str, domain: str) -> None:
    assert domain_of(address) == domain


@pytest.mark.parametrize("address", [None, "", "postmaster", "bob@", "bob@.", "bob@ >"])
def test_no_domain(address: str | None) -> None:
    assert domain_of(address) is None
