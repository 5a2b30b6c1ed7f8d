"""The built-in bounce rules on phrasings of mail systems that the labelled files do not hold.

Each case is written in the words such replies use (the third-party texts the rules were
measured on stay outside the repository: ``benchmarks/classify_crossval.py --extra``), next to
a near phrasing that must keep its own category, so that a rule cannot grow past what it means.
"""

from __future__ import annotations

import pytest

from mta_logging.classify import bounce_category

Case = tuple[int | None, str | None, str, str]


def check(cases: list[Case]) -> None:
    """Every case gets its category; the message names the ones that do not."""
    wrong = [
        f"{code} {enhanced} {text!r}: {bounce_category(code, enhanced, text)}, want {want}"
        for code, enhanced, text, want in cases
        if bounce_category(code, enhanced, text) != want
    ]
    assert not wrong, "\n".join(wrong)


def test_spf_named_as_the_reason_is_policy_related() -> None:
    check([
        (550, "5.1.0", "0aBc1d00 blocked by SPF", "policy-related"),
        (550, None, "Rejected due to the domain's SPF", "policy-related"),
        (550, None, "[SPF] 192.0.2.8 is not allowed to send mail from example.com.",
         "policy-related"),
        (550, "5.7.0", "host 192.0.2.8 is not allowed to send mail from domain example.com",
         "policy-related"),
        (550, None, "Host 192.0.2.8 is not allowed to send mail here", "spam-related"),
    ])


def test_a_sending_ip_said_to_be_filtered_or_harvesting_addresses_is_spam_related() -> None:
    check([
        (421, "4.3.2", "Your IP(192.0.2.8) is filtered and this connection will be closed",
         "spam-related"),
        (None, None, "Rejected: 192.0.2.8 seems to be running a dictionary attack",
         "spam-related"),
        (550, "5.7.1", "Directory harvest attack detected", "spam-related"),
        (None, None, "mx.example is not a valid HELO name", "spam-related"),
    ])


def test_a_5xx_security_refusal_saying_connection_refused_is_a_block_of_the_sender() -> None:
    check([
        (550, "5.7.1", "Connection refused ELNK_0", "spam-related"),
        (None, None, "connect to mx.example.net[192.0.2.7]:25: Connection refused",
         "bad-connection"),
        (421, "4.3.2", "Connection refused. Server is busy, try again later", "bad-connection"),
        (421, "4.2.1", "Connection deferred", "policy-related"),
        (None, None, "Failed three attempts to connect to the recipient's mail server",
         "bad-connection"),
    ])


def test_a_bare_access_denied_is_a_block_and_one_with_a_reason_goes_by_it() -> None:
    check([
        (None, None, "Access denied", "spam-related"),
        (550, None, "Access denied.", "spam-related"),
        (550, "5.7.520", "Access denied, your organization does not allow external forwarding",
         "policy-related"),
    ])


def test_the_senders_domain_required_to_be_valid_is_invalid_sender() -> None:
    check([
        (550, None, "[permfail] example.net requires a valid sender domain", "invalid-sender"),
        (550, "5.7.1", "sender <bob@example.zz> from unknown TLD #1", "invalid-sender"),
        (550, "5.7.1", "Connections not accepted from servers without a valid sender domain. "
         "## Fix reverse DNS for 192.0.2.8", "policy-related"),
    ])


def test_relaying_authentication_and_routing_phrasings() -> None:
    check([
        (550, None, "Relay disabled", "relaying-issues"),
        (550, "5.7.1", "Authentication refused", "bad-configuration"),
        (None, None, "ROUTING SERVER FAILURE", "routing-errors"),
    ])


def test_sizes_of_a_domain_or_account_are_quota_and_of_a_message_content() -> None:
    check([
        (None, None, "The domain size limit has been exceeded", "quota-issues"),
        (None, None, "exceeded mailsize limit", "content-related"),
        (552, None, "Message size limit exceeded", "content-related"),
    ])


def test_an_unavailable_mailbox_goes_by_a_telling_status() -> None:
    check([
        (550, "5.2.1", "Mailbox not available", "inactive-mailbox"),
        (550, "5.1.1", "Mailbox not available", "bad-mailbox"),
        (550, None, "Requested action not taken: mailbox unavailable", "bad-mailbox"),
        (550, "5.7.1", "Recipient address rejected: the address is marked as invalid",
         "bad-mailbox"),
    ])


@pytest.mark.parametrize("text", ["Relaying denied", "Relay access denied"])
def test_the_relay_refusals_of_before_still_hold(text: str) -> None:
    assert bounce_category(554, "5.7.1", text) == "relaying-issues"
