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


def test_terse_blocklist_and_open_relay_checks_are_spam_related() -> None:
    check([
        (550, None, "black ip", "spam-related"),
        (554, None, "Black sender address", "spam-related"),
        (554, None, "openrelay check", "spam-related"),
        (555, None, "helohost error.", "spam-related"),
        (550, None, "Transaction failed (SPAM_SUSPECT:IP_CONTROL)", "spam-related"),
        (550, None, "Open relay not allowed", "relaying-issues"),
        (550, None, "blackberry.example: user unknown", "bad-mailbox"),
    ])


def test_a_host_that_denies_relaying_or_the_sender_and_an_unvalidated_sender() -> None:
    check([
        (553, None, "host denies relay.", "relaying-issues"),
        (550, "5.7.1", "Relaying is denied", "relaying-issues"),
        (550, None, "mailbox unavailable or is not local", "relaying-issues"),
        (553, None, "host denies the sender.", "spam-related"),
        (554, None, "sender is unvalidated.", "invalid-sender"),
        (550, None, "mailbox unavailable", "bad-mailbox"),
    ])


def test_loops_are_routing_errors() -> None:
    check([
        (552, None, "looping message.", "routing-errors"),
        (554, "5.4.6", "Mail loop detected", "routing-errors"),
        (550, None, "This message is looping: it already has my Delivered-To line",
         "routing-errors"),
        (550, None, "<jane@loopback.example>: user unknown", "bad-mailbox"),
    ])


def test_a_message_or_attachment_too_long_is_content_and_a_command_line_a_protocol_error() -> None:
    check([
        (552, None, "message is too long.", "content-related"),
        (554, None, "attachment is too long", "content-related"),
        (501, "5.7.1", "Message is too long", "content-related"),
        (500, None, "Line too long", "protocol-errors"),
        (554, None, "message header line too long", "content-related"),
        (550, None, "Message contained unsafe content", "content-related"),
    ])


def test_certificate_failures_and_repeated_failed_logins_are_bad_configuration() -> None:
    check([
        (None, "4.7.5", "remote node SSL certificate not signed by a valid CA",
         "bad-configuration"),
        (None, "4.7.5", "SSL certificate subject does not match host", "bad-configuration"),
        (451, None, "too much fail authentication", "bad-configuration"),
        (None, "4.7.5", "TLS handshake failed", "bad-connection"),
    ])


def test_many_messages_in_a_short_time_is_throttling_not_a_full_mailbox() -> None:
    check([
        (451, None, "This account has sent too many messages in a short amount of time",
         "policy-related"),
        (450, "4.2.1", "Mailbox received too much email in a short period of time (G30)",
         "policy-related"),
        (451, None, "out of allow RCPT numbers.", "policy-related"),
        (452, None, "Too many messages in the mailbox", "quota-issues"),
    ])


def test_recipients_refused_as_not_fully_qualified_or_none_correct_are_bad_mailbox() -> None:
    check([
        (None, None, "Recipient address rejected: need fully-qualified address", "bad-mailbox"),
        (None, None, "No correct recipients", "bad-mailbox"),
        (None, None, "Sender address rejected: need fully-qualified address", "invalid-sender"),
    ])


def test_bare_try_again_later_on_450_or_451_is_greylisting_and_busy_a_bad_connection() -> None:
    check([
        (451, None, "Please try again later.", "policy-related"),
        (450, None, "[S09] Try Again Later", "policy-related"),
        (450, None, "busy--Please try again later", "bad-connection"),
        (421, None, "Please try again later", "bad-connection"),
        (451, None, "Temporary local problem - please try later", "other"),
    ])


def test_tagged_bare_refusals_and_policy_in_other_languages() -> None:
    check([
        (550, "5.7.1", "[NR] Message rejected", "spam-related"),
        (550, "5.1.0", "Naruszenie zasad 0aBc1d, zobacz https://support.example/kb/1",
         "policy-related"),
        (550, "5.1.0", "Address rejected", "bad-mailbox"),
        (451, None, "stray newline", "protocol-errors"),
    ])


def test_attachments_refused_for_their_file_type_are_content_not_a_blocklist() -> None:
    check([
        (554, None, "Blocked attachment: high-risk file extension .scr", "content-related"),
        (550, None, "Blacklisted file type in message (.js)", "content-related"),
        (554, "5.7.1", "Policy match: BANNED_FILE_EXTENSION", "content-related"),
        (550, None, "Message refused: attachment not accepted", "content-related"),
        (550, None, "Password-protected archives are not delivered here", "content-related"),
        (550, None, "Sending host 192.0.2.8 is blacklisted", "spam-related"),
    ])


def test_a_message_that_does_not_conform_to_the_standards_is_content_related() -> None:
    check([
        (554, None, "Message does not comply with RFC 5322", "content-related"),
        (550, None, "The mail failed to conform to internet standards", "content-related"),
        (550, None, "Message contains prohibited phrases", "content-related"),
        (501, None, "Syntax error in parameters", "protocol-errors"),
    ])


def test_relaying_refusals_in_their_other_words_are_relaying_issues() -> None:
    check([
        (553, None, "this host isn't permitted to be relayed through", "relaying-issues"),
        (550, None, "We don't relay mail for other domains", "relaying-issues"),
        (554, None, "Relay attempt rejected", "relaying-issues"),
        (530, None, "SMTP AUTH is required for outgoing mail", "relaying-issues"),
        (553, "5.3.0", "POP before SMTP: check your mail before sending", "relaying-issues"),
        (501, "5.1.8", "Please use the mail submission port for outgoing mail",
         "relaying-issues"),
        (550, "5.7.2", "You are not permitted to send to external destinations",
         "relaying-issues"),
        (None, None, "Envelope sender is not authorised on this relay", "relaying-issues"),
        (550, None, "Sender is not authorized to send on behalf of example.com",
         "policy-related"),
        (501, "5.1.8", "Bad sender address syntax", "invalid-sender"),
    ])


def test_send_rates_and_concurrency_over_their_limit_are_policy_related() -> None:
    check([
        (None, None, "Daily message rate exceeded, try again tomorrow", "policy-related"),
        (421, None, "Concurrency limit exceeded for your host", "policy-related"),
        (421, None, "Service unavailable, closing transmission channel", "bad-connection"),
    ])


def test_a_busy_network_is_a_bad_connection_and_a_remote_host_without_tls_our_setting() -> None:
    check([
        (421, "4.4.1", "Network is busy, try again", "bad-connection"),
        (421, "4.4.1", "No answer from host", "no-answer-from-host"),
        (None, None, "TLS was not advertised by mx.example.net", "bad-configuration"),
        (None, None, "TLS negotiation with mx.example.net failed", "bad-connection"),
    ])


def test_mx_and_dns_failures_no_server_reached_and_attempts_used_up() -> None:
    check([
        (450, None, "Cannot find an MX host for example.net", "bad-domain"),
        (None, None, "DNS server returned a server failure for example.net", "routing-errors"),
        (None, None, "Unable to reach any MX for example.net", "no-answer-from-host"),
        (None, None, "No mail servers were reachable for example.net", "no-answer-from-host"),
        (None, None, "No mail servers for example.net", "bad-domain"),
        (None, None, "Max retries (12) exceeded for this message", "message-expired"),
        (None, None, "Retry limit reached", "message-expired"),
    ])


def test_an_address_that_bounced_before_is_bad_mailbox() -> None:
    check([
        (None, None, "Address previously hard-bounced, not sending", "bad-mailbox"),
        (None, None, "Recipient bounced before: skipped", "bad-mailbox"),
        # an address that unsubscribed did not bounce: the recipient's own choice (Mailgun's 606)
        (None, None, "Not delivering to unsubscribed address", "policy-related"),
    ])


def test_a_sender_refused_with_a_pointer_and_a_scanner_out_of_service() -> None:
    check([
        (550, None, "Envelope from refused. Please go to postmaster.example/errors",
         "spam-related"),
        (451, "4.7.1", "Unable to scan the message at this time, try again later", "other"),
        (451, "4.7.1", "Greylisted, please try again later", "policy-related"),
    ])


def test_what_a_message_holds_or_lacks_refused_is_content_related() -> None:
    check([
        (550, None, "Disallowed MIME type application/x-msdownload", "content-related"),
        (554, None, "Message rejected: it contains an executable", "content-related"),
        (550, None, "Macro-enabled documents are not accepted here", "content-related"),
        (550, None, "Empty message body refused", "content-related"),
        (554, None, "Too many links in the message", "content-related"),
        (550, None, "Empty envelope sender refused", "invalid-sender"),
    ])


def test_a_relay_asking_to_log_in_first_is_relaying_and_a_failed_login_our_setting() -> None:
    check([
        (550, None, "Please enable SMTP authentication in your mail client", "relaying-issues"),
        (553, None, "Login is required to send to this domain", "relaying-issues"),
        (550, None, "Sign in with your user name before sending", "relaying-issues"),
        (535, "5.7.8", "Authentication failed: login rejected", "bad-configuration"),
    ])


def test_giving_up_after_days_is_an_expired_message() -> None:
    check([
        (None, None, "Giving up after 5 days of retries", "message-expired"),
        (None, None, "Giving up on 192.0.2.8", "other"),
    ])


def test_relaying_without_logging_in_and_a_protocol_not_followed() -> None:
    check([
        (550, None, "You may not relay mail through us without SMTP authentication",
         "relaying-issues"),
        (550, None, "Relaying denied", "relaying-issues"),
        (550, None, "Sending without authentication is fine here, but your host is listed",
         "spam-related"),
        (554, None, "Your client is not following the ESMTP protocol", "protocol-errors"),
        (554, None, "Your client is not following our rules", "other"),
    ])


def test_a_recipient_without_its_domain_or_missing_from_the_list_is_a_bad_mailbox() -> None:
    check([
        (553, None, "Incomplete recipient address: please supply a domain name", "bad-mailbox"),
        (550, "5.7.1", "Recipient address rejected: not on our list of valid recipients",
         "bad-mailbox"),
        (550, "5.7.1", "Recipient address rejected: not in the recipient table", "bad-mailbox"),
        (550, "5.7.1", "Recipient address rejected: rate limit", "policy-related"),
    ])


def test_a_delay_by_a_greylisting_daemon_is_policy_related() -> None:
    check([
        (450, "4.2.0", "Recipient address rejected: Delayed by postgrey", "policy-related"),
        (450, "4.2.0", "Delayed by greylisting filter, come back in 5 minutes", "policy-related"),
        (450, "4.2.0", "Delayed by the recipient mailbox being full", "quota-issues"),
    ])


def test_too_many_connections_from_your_ip_is_throttling_a_bare_refusal_of_it_a_block() -> None:
    check([
        (421, None, "Too many connections from your IP, slow down", "policy-related"),
        (450, "4.2.0", "Delivery delayed: too many connections from your IP", "policy-related"),
        (554, None, "Mail from your IP is not accepted", "spam-related"),
        (550, None, "Connections by your network are refused", "spam-related"),
    ])



# --- Vendor codes: each decides by the meaning its vendor's documentation gives -------------------
# (mta_logging/data/bounce_rules.tsv names the page of each block; docs/categories.md the
# convention). The replies are worded so that only the code tells the reason ("Not delivered" is
# no reason: 554 alone says nothing, 550 alone a missing mailbox). Next to them, near texts: the
# code's letters inside another word, or a number its vendor does not document, which go by
# their other words.


def test_microsoft_outlook_and_exchange_online_codes() -> None:
    check([
        (554, None, "Not delivered (SC-002)", "spam-related"),
        (554, None, "Not delivered (DY-001)", "spam-related"),
        (554, None, "Not delivered [192.0.2.8] (S3140)", "spam-related"),
        (550, "5.7.1", "Access denied. AS(201806281)", "bad-mailbox"),
        (550, "5.7.513", "Service unavailable, client host [192.0.2.8] refused", "spam-related"),
        (550, "5.7.705", "Access denied, tenant has exceeded threshold", "spam-related"),
        (554, None, "Not delivered (DESC-001)", "other"),
        (554, None, "Not delivered (SC-005)", "other"),
        (550, "5.7.1", "Access denied. AS(2018062)", "policy-related"),
    ])


def test_yahoo_deferral_blocklist_and_content_codes() -> None:
    check([
        (421, None, "Not delivered [TSS07]", "spam-related"),
        (421, "4.7.0", "Try again later [TS03]", "spam-related"),
        (553, "5.7.1", "Not delivered [BL22]", "spam-related"),
        (554, None, "Message not allowed - [PH02] not accepted for policy reasons",
         "content-related"),
        (554, None, "Message not allowed - [PHONE] not accepted for policy reasons",
         "policy-related"),
        (421, "4.7.0", "Try again later, queue TSS04X full", "policy-related"),
    ])


def test_comcast_and_att_codes() -> None:
    check([
        (554, None, "Not delivered, see BL000101", "spam-related"),
        (554, None, "Not delivered, see ES000010", "spam-related"),
        (554, None, "Not delivered, see BL006", "spam-related"),
        (554, None, "Not delivered, ldap:ou=rblmx,dc=example,dc=net", "spam-related"),
        (554, None, "Not delivered, unauthorized interface for <192.0.2.8>", "spam-related"),
        (550, None, "Error. Blocked for status: <unknown sender>", "policy-related"),
        (421, None, "failure in DNS look-up.", "policy-related"),
        (554, None, "Not delivered, see BL000200", "other"),
        (554, None, "Not delivered, see TABLE000101", "other"),
    ])


def test_sophos_email_codes() -> None:
    check([
        (554, None, "XGEMAIL_0011 not delivered", "bad-mailbox"),
        (550, None, "XGEMAIL_0010 rejected", "relaying-issues"),
        (550, None, "XGEMAIL_0002 rejected", "policy-related"),
        (550, None, "XGEMAIL_0009 rejected", "spam-related"),
        (552, None, "XGEMAIL_0012 rejected", "content-related"),
        (550, None, "XGEMAIL_0007 rejected", "bad-configuration"),
        # a code Sophos does not list, and a Sophos scanner named alone
        (554, None, "XGEMAIL_0099 not delivered", "other"),
        (550, None, "Scanned by Sophos: rejected", "virus-related"),
    ])


def test_trellix_email_security_codes() -> None:
    check([
        (554, None, "ETP101 not delivered", "bad-mailbox"),
        (550, None, "ETP105 Bad domain mode", "relaying-issues"),
        (451, None, "ETP103 Recipient check pending", "no-answer-from-host"),
        (554, None, "ETP104 not delivered", "routing-errors"),
        (554, None, "NETP101 not delivered", "other"),
    ])


def test_mimecast_reasons() -> None:
    check([
        (451, None, "Internal resource temporarily unavailable - https://community.mimecast.com",
         "policy-related"),
        (550, "5.7.1", "Unable to process connection at this time", "bad-connection"),
        (421, None, "Account service is temporarily unavailable", "policy-related"),
        (550, None, "Journal message past expiration", "message-expired"),
        (451, None, "Resources temporarily unavailable", "other"),
    ])


def test_trend_micro_reputation_codes() -> None:
    check([
        (450, "4.7.1", "<jane@example.org>: Recipient address rejected: ERS-DUL", "spam-related"),
        (450, "4.7.1", "<jane@example.org>: Recipient address rejected: PERS-QIL",
         "policy-related"),
        (550, None, "Scanned by Trend Micro: rejected", "virus-related"),
    ])


def test_netease_codes() -> None:
    check([
        (554, None, "DT:SPM 163 mx3,abc123 1700000000", "spam-related"),
        (550, None, "MI:NHD 163 mx3", "spam-related"),
        (451, None, "MI:SFQ 163 smtp2 please try again", "policy-related"),
        (550, None, "MI:IMF 163 mx3", "invalid-sender"),
        (550, None, "RP:FRL 163 mx3", "relaying-issues"),
        (554, None, "DT:SUM 163 mx3", "policy-related"),
        (554, None, "UDT:SPMX not delivered", "other"),
        (550, None, "HTML:ICC not found", "bad-mailbox"),
    ])


def test_tencent_qq_codes() -> None:
    check([
        (550, None, "Mail content denied. https://service.mail.qq.com/detail/122/171",
         "spam-related"),
        (550, None, "Rejected. https://service.mail.qq.com/detail/122/66", "spam-related"),
        (550, None, "Sender frequency limited. https://service.mail.qq.com/detail/122/174",
         "policy-related"),
        (550, None, "Too busy. https://service.mail.qq.com/detail/122/17", "bad-connection"),
        (550, None, "Recipient content denied", "content-related"),
    ])


def test_alibaba_mail_replies() -> None:
    check([
        (505, None, "the total of RCPTs is achieved the maximum threshold", "policy-related"),
        (510, None, "The number of attachments is achieved the maximum threshold",
         "content-related"),
        (503, None, "Rcptto account isn't a local account", "bad-mailbox"),
        (502, None, "Mailfrom account is a local account", "relaying-issues"),
        (502, None, "Mailfrom account is unknown here", "bad-mailbox"),
    ])


def test_orange_and_la_poste_codes() -> None:
    check([
        (554, None, "Not delivered. OFR_999 [999]", "spam-related"),
        (554, None, "Not delivered LPNAAA_101", "spam-related"),
        (554, None, "Not delivered. OFR004_104 [104]", "policy-related"),
        (554, None, "Not delivered. OFR_416 [416]", "bad-mailbox"),
        (554, None, "Not delivered. LPN007_417", "quota-issues"),
        (554, None, "Not delivered. LPN007_420", "inactive-mailbox"),
        (554, None, "Not delivered. OFR004_405", "invalid-sender"),
        (554, None, "Not delivered. WOFR_999", "other"),
        (554, None, "Not delivered. OFR_998", "other"),
    ])


def test_a_deferral_with_a_trailing_tag_is_greylisting_a_busy_service_a_bad_connection() -> None:
    # docs/categories.md: "4.2.1 try again later" is a deferral, not a disabled mailbox
    check([
        (451, "4.2.1", "Please try again later. (#id-5.9.4)", "policy-related"),
        (450, "4.2.1", "Try again later [mx3]", "policy-related"),
        (421, "4.2.1", "Service busy, try again later", "bad-connection"),
        (450, "4.2.1", "Mailbox disabled, try again later", "inactive-mailbox"),
        (451, "4.2.1", "Please try again later (the mailbox is over quota)", "quota-issues"),
    ])


def test_a_recipient_that_blocked_the_sender_is_its_policy_and_a_blocked_mailbox_inactive() -> None:
    check([
        (550, None, "The recipient has blocked you", "policy-related"),
        (550, "5.2.1", "The user has blocked mail from this sender", "policy-related"),
        (550, None, "Recipient mailbox has been blocked", "inactive-mailbox"),
        (550, None, "Recipient account is blocked", "inactive-mailbox"),
    ])


def test_cox_codes() -> None:
    check([
        (554, None, "Not delivered. AUP#CXBL", "spam-related"),
        (554, None, "Not delivered. AUP#IPBL1010", "spam-related"),
        (554, None, "Not delivered. AUP#CXDNS", "policy-related"),
        (554, None, "Not delivered. AUP#CXSMTP", "protocol-errors"),
        (554, None, "Not delivered. AUP#CXFOO", "other"),
        (554, None, "Not delivered. CXBL", "other"),
    ])


def test_spectrum_codes() -> None:
    check([
        (554, None, "Not delivered. AUP#In-1020", "spam-related"),
        (554, None, "Not delivered. AUP#I-1220", "spam-related"),
        (554, None, "Not delivered. AUP#I-1300", "policy-related"),
        (554, None, "Not delivered. AUP#O-1530", "content-related"),
        (554, None, "Not delivered. AUP#1090", "other"),
        (554, None, "Not delivered. AUP#I-999", "other"),
    ])


def test_godaddy_codes() -> None:
    check([
        (554, None, "Not delivered. IB104", "spam-related"),
        (554, None, "Not delivered. IB705", "virus-related"),
        (554, None, "Not delivered. IB508", "policy-related"),
        (554, None, "Not delivered. IB506", "invalid-sender"),
        (554, None, "Not delivered. IB501", "content-related"),
        (554, None, "Not delivered. IB401", "bad-configuration"),
        (554, None, "Not delivered. IB101", "bad-connection"),
        (554, None, "Not delivered. LIB508", "other"),
        (554, None, "Not delivered. IB999", "other"),
    ])


def test_gmail_help_link_cases() -> None:
    link = "https://support.google.com/mail/?p="
    check([
        (550, "5.7.1", f"Not delivered. Learn more at {link}NoSuchUser x1-gsmtp", "bad-mailbox"),
        (452, "4.2.2", f"Not delivered. {link}OverQuotaTemp x1-gsmtp", "quota-issues"),
        (550, "5.7.1", f"Not delivered. {link}DisabledUser x1-gsmtp", "inactive-mailbox"),
        (550, "5.7.1", f"Not delivered. {link}UnsolicitedIPError x1-gsmtp", "spam-related"),
        (421, "4.7.0", f"Try again later. {link}UnsolicitedRateLimitError x1", "spam-related"),
        (450, "4.2.1", f"Try again later. {link}ReceivingRate x1-gsmtp", "policy-related"),
        (552, "5.7.0", f"Not delivered. {link}BlockedMessage x1-gsmtp", "content-related"),
        (530, "5.7.0", f"Not delivered. {link}WantAuthError x1-gsmtp", "relaying-issues"),
        (535, "5.7.8", f"Not delivered. {link}BadCredentials x1-gsmtp", "bad-configuration"),
        # a case Google does not name goes by the status
        (550, "5.7.1", f"Not delivered. {link}SomethingElse x1-gsmtp", "policy-related"),
    ])


def test_proofpoint_united_internet_and_mail_ru_links() -> None:
    check([
        (554, None, "Not delivered - see https://ipcheck.proofpoint.com/?ip=192.0.2.8",
         "spam-related"),
        (550, "5.7.0", "See https://support.proofpoint.com/dnsbl-lookup.cgi?ip=192.0.2.8",
         "spam-related"),
        (554, None, "gmx.net (mxgmx104) Nemesis ESMTP Service not available. For explanation "
         "visit https://postmaster.gmx.net/en/case?c=r0201&i=ip&v=192.0.2.8", "spam-related"),
        (554, None, "Not delivered. For explanation visit "
         "http://postmaster.1and1.com/en/error-messages?ip=192.0.2.8&c=bip", "spam-related"),
        (554, None, "Not delivered. For explanation visit "
         "https://postmaster.web.de/en/error-messages?c=rdns&ip=192.0.2.8", "policy-related"),
        (550, None, "Not delivered. Please visit http://help.mail.ru/notspam-support/id?c=x",
         "spam-related"),
        # another case of the same page goes by its words and code
        (554, None, "Not delivered. For explanation visit "
         "https://postmaster.gmx.net/en/case?c=zz99", "other"),
    ])


def test_sending_services_that_refuse_an_address_on_their_suppression_list() -> None:
    check([
        (550, "5.1.1", "Amazon SES has suppressed sending to this address because it has a "
         "recent history of bouncing as an invalid address.", "bad-mailbox"),
        (554, None, "Amazon SES did not send the message to this address because it is on "
         "the suppression list for your account.", "bad-mailbox"),
        (554, None, "Not delivering to previously bounced address", "bad-mailbox"),
        (554, None, "Not delivering to unsubscribed address", "policy-related"),
        (554, None, "Not delivering to a user who marked your messages as spam",
         "spam-related"),
        (554, None, "Dropped: Bounced Address", "bad-mailbox"),
        (554, None, "Dropped: Unsubscribed Address", "policy-related"),
        (554, None, "Dropped: Spam Reporting Address", "spam-related"),
    ])


def test_block_lists_and_reputation_services_named_alone_are_spam_related() -> None:
    check([
        (554, None, "Not delivered: listed by UCEPROTECT level 2", "spam-related"),
        (554, None, "Refused: poor SenderBase score (SBRS -3.5)", "spam-related"),
        (550, None, "Rejected by Mailspike", "spam-related"),
        (550, None, "Your Sender Score is too low", "spam-related"),
        (554, None, "Rejected: see invaluement ivmSIP", "spam-related"),
        (550, None, "Rejected, see psbl.org", "spam-related"),
        # a word that merely holds one of the names
        (554, None, "Not delivered to the lashbacks department", "other"),
    ])


def test_the_receiving_sides_setup_broken_is_bad_configuration() -> None:
    # PowerMTA's bad-configuration: "configuration issues with remote host"; a domain whose DNS
    # is broken (malformed MX, an MX on a loopback address, as Exim words it) exists, so it is
    # not bad-domain; a loop stays a routing error and "not configured to relay" relaying
    check([
        (550, "5.4.4", "No route configured for the domain example.net", "bad-configuration"),
        (451, None, "Mail server not configured for domain example.net", "bad-configuration"),
        (550, None, "Host mx.example.net is not properly configured", "bad-configuration"),
        (553, "5.3.0", "example.net: malformed MX record", "bad-configuration"),
        (None, None, "lowest numbered MX record points to local host", "bad-configuration"),
        (554, None, "MX for example.net points to localhost", "bad-configuration"),
        (None, None, "the MX host of example.net is a loopback address", "bad-configuration"),
        (554, "5.4.6", "mail for example.net loops back to myself", "routing-errors"),
        (554, None, "Too many hops (30 Received: lines)", "routing-errors"),
        (550, None, "This server is not configured to relay mail for you", "relaying-issues"),
        (None, None, "MX record points to non-existent host", "bad-domain"),
    ])


def test_smtp_sequence_and_chunking_errors_are_protocol_errors() -> None:
    check([
        (503, "5.5.1", "Error: nested MAIL command", "protocol-errors"),
        (503, None, "sender already given", "protocol-errors"),
        (503, "5.5.0", "Recipient already specified", "protocol-errors"),
        (503, None, "valid RCPT command must precede DATA", "protocol-errors"),
        (554, None, "SMTP synchronization error", "protocol-errors"),
        (501, None, "<jane@example.org>: syntactically invalid argument(s)", "protocol-errors"),
        (555, "5.5.4", "Unsupported SMTP parameter BODY=BINARYMIME", "protocol-errors"),
        (554, "5.5.0", "Error: BDAT command not permitted here", "protocol-errors"),
        (503, None, "STARTTLS command used when not advertised", "protocol-errors"),
        # a bare "not permitted" with a protocol status is the command's refusal; without a
        # status, or with a policy one, it stays the receiver's policy
        (550, "5.5.1", "Command not permitted now", "protocol-errors"),
        (550, "5.7.1", "Sending to this list is not permitted", "policy-related"),
        (550, None, "Not permitted", "policy-related"),
    ])


def test_sender_addresses_refused_in_mtas_own_words_are_invalid_sender() -> None:
    check([
        (501, None, "<jane>: sender address must contain a domain", "invalid-sender"),
        (553, "5.5.4", "<jane>... Domain name required for sender address jane",
         "invalid-sender"),
        (553, None, "The sender address <jane@example.org> is not a valid address",
         "invalid-sender"),
        (451, None, "Could not complete sender verify", "invalid-sender"),
        (553, "5.1.8", "<jane@nowhere.example>: Sender address rejected: Domain not found",
         "invalid-sender"),
        (553, None, "sorry, your envelope sender domain must exist (#5.7.1)",
         "invalid-sender"),
    ])


def test_malicious_content_and_spyware_found_are_virus_related() -> None:
    check([
        (554, "5.7.1", "Message rejected: malicious attachment detected", "virus-related"),
        (550, None, "Malicious content found in the message", "virus-related"),
        (554, None, "Spyware detected in attachment report.doc", "virus-related"),
        (554, None, "AV scanner found Eicar-Signature", "virus-related"),
        (550, None, "Message refused: suspicious links", "content-related"),
    ])
