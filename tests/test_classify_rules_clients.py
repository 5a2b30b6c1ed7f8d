"""The built-in bounce rules on the failure texts a sending application records, and on the
other phrasings added with set E (issue 18).

A sending application (a client library, a small relay, a mail command) records its own words
when it cannot hand a message to its relay: a socket error, a resolver error, a TLS library's
verdict, a failed login. Each case is written in the words such software uses (the texts the
rules were measured on stay outside the repository: ``benchmarks/classify_crossval.py
--extra``), next to a near phrasing that must keep its own category, so that a rule cannot
grow past what it means.
"""

from __future__ import annotations

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


def test_a_client_that_cannot_connect_to_the_port_it_names_goes_by_the_socket_error() -> None:
    check([
        (None, None, "mailer: cannot connect to smtp.example.org, port 587: Connection refused",
         "bad-connection"),
        (None, None, "Could not connect to SMTP host: smtp.example.org, port: 465; nested "
         "exception is: java.net.ConnectException: Network is unreachable", "bad-connection"),
        (None, None, "mailer: cannot connect to smtp.example.org, port 587: Connection timed out",
         "no-answer-from-host"),
        # a receiver's advice to use the submission port stays a relaying refusal
        (530, None, "Relaying requires authentication, use port 587", "relaying-issues"),
        # and a remote server that timed out before the queue lifetime ran out: expired
        (None, None, "unable to connect to remote server [192.0.2.9:25]: Operation timed out; "
         "this message has been in the queue too long", "message-expired"),
    ])


def test_socket_errors_in_a_librarys_words_are_bad_connections() -> None:
    check([
        (None, None, "Error: connect ECONNREFUSED 192.0.2.4:2525", "bad-connection"),
        (None, None, "SocketException: No connection could be made because the target machine "
         "actively refused it", "bad-connection"),
        (None, None, "IOException: Unable to read data from the transport connection: "
         "net_io_connectionclosed.", "bad-connection"),
        (None, None, "Error: socket hang up", "bad-connection"),
        (None, None, "SMTP connect() failed.", "bad-connection"),
        (None, None, "Error: Greeting never received", "no-answer-from-host"),
        (None, None, "Error: Connection timeout", "no-answer-from-host"),
    ])


def test_name_lookups_that_fail_for_now_are_routing_errors_and_for_good_bad_domains() -> None:
    check([
        (None, None, "gaierror: [Errno -3] Temporary failure in name resolution",
         "routing-errors"),
        (None, None, "Temporary failure in MX lookup for example.org", "routing-errors"),
        (None, None, "lookup smtp.example.org on 127.0.0.53:53: server misbehaving",
         "routing-errors"),
        (None, None, "lookup smtp.example.org on 127.0.0.53:53: no such host", "bad-domain"),
        (None, None, "Error: getaddrinfo ENOTFOUND smtp.example.org", "bad-domain"),
        (None, None, "java.net.UnknownHostException: smtp.example.org", "bad-domain"),
        # a temporary failure that names no lookup stays a generic failure
        (451, None, "Temporary failure, please try again", "other"),
    ])


def test_a_relay_certificate_the_client_does_not_trust_is_bad_configuration() -> None:
    check([
        (None, None, "SSLHandshakeException: PKIX path building failed: unable to find valid "
         "certification path to requested target", "bad-configuration"),
        (None, None, "x509: certificate signed by unknown authority", "bad-configuration"),
        (None, None, "certificate verify failed: unable to get local issuer certificate",
         "bad-configuration"),
        # a handshake that fails without a word about the certificate is the connection's
        (None, None, "SSLHandshakeException: Remote host terminated the handshake",
         "bad-connection"),
    ])


def test_a_failed_login_to_the_relay_is_bad_configuration() -> None:
    check([
        (None, None, "Mailer Error: could not authenticate.", "bad-configuration"),
        (None, None, "Unable to log in to the SMTP server", "bad-configuration"),
        (None, None, "javax.mail.AuthenticationFailedException: 535 failed", "bad-configuration"),
        (None, None, "Incorrect authentication data", "bad-configuration"),
        (None, None, "Error: no form of authorization supported", "bad-configuration"),
        (None, None, "no suitable authentication mechanism found", "bad-configuration"),
        (None, None, "smtp: server doesn't support AUTH", "bad-configuration"),
        (None, None, "SMTP AUTH extension not supported by server.", "bad-configuration"),
        (None, None, "Your SMTP account is not yet activated", "bad-configuration"),
        (None, None, "Unable to initialize SMTP. Check your config.", "bad-configuration"),
        # the receiver asking senders to authenticate their domain is its policy
        (550, "5.7.26", "Please authenticate with SPF or DKIM", "policy-related"),
        # and a recipient's account not activated is an inactive mailbox
        (550, None, "This account is not yet activated", "inactive-mailbox"),
    ])


def test_a_sender_refused_for_what_it_is_is_invalid_sender() -> None:
    check([
        (553, None, "Sender is not the same as the SMTP authenticated user", "invalid-sender"),
        (None, None, "error: sender address is not valid", "invalid-sender"),
        (554, "5.7.1", "The sender has an unregistered domain", "invalid-sender"),
        # a sender refused with no reason stays a refusal of its reputation
        (554, "5.7.1", "Sender address rejected", "spam-related"),
    ])


def test_an_address_said_not_to_be_valid_is_a_bad_mailbox() -> None:
    check([
        (None, None, "The email address is not valid", "bad-mailbox"),
        (550, None, "Ontvanger bestaat niet", "bad-mailbox"),
        (550, None, "Dit adres is niet meer in gebruik", "inactive-mailbox"),
        (550, "5.1.1", "Disabled mbox", "inactive-mailbox"),
        (550, "5.1.1", "No such mbox", "bad-mailbox"),
    ])


def test_a_sending_site_policy_a_relay_operation_and_mass_mail() -> None:
    check([
        (550, None, "Unauthorized envelope sender", "policy-related"),
        (550, None, "Our addresses may only be sent through our own servers", "policy-related"),
        (554, None, "Relay request refused", "relaying-issues"),
        (550, None, "Mass mailing from your server is not accepted", "spam-related"),
        (550, None, "Blacklisted host name of client 192.0.2.8", "spam-related"),
        (550, None, "Host 192.0.2.8 is in jail", "spam-related"),
        # a reverse DNS that is only missing stays the receiver's policy
        (550, None, "No reverse DNS name for 192.0.2.8", "policy-related"),
    ])


def test_a_message_past_its_expiry_or_stuck_in_a_queue_has_expired() -> None:
    check([
        (None, None, "Message stuck in the delivery queue too long, giving up",
         "message-expired"),
        (551, None, "Next attempt would exceed the configured expiry time", "message-expired"),
        (None, None, "Retry time exceeded", "message-expired"),
        (None, None, "Message has been forwarded too many times", "routing-errors"),
        # a certificate past its date is not an expired message
        (None, None, "certificate has expired", "bad-configuration"),
    ])


def test_faults_of_the_message_of_the_reply_and_of_the_receivers_store() -> None:
    check([
        (554, "5.6.0", "Message data contains bare linefeeds", "content-related"),
        (500, None, "Bare LF in SMTP command", "protocol-errors"),
        (550, None, "Unrecognised header format", "content-related"),
        (None, None, "mailer: the server sent an empty reply", "protocol-errors"),
        (None, None, "Malformed SMTP response", "protocol-errors"),
        (451, "4.2.0", "Mailbox has an unsupported format", "other"),
        (451, None, "Mailbox is corrupted", "other"),
        (550, None, "Mailbox is invalid", "bad-mailbox"),
        (None, None, "Maildir quota of the user exceeded", "quota-issues"),
        (None, None, "User has overdrawn his diskspace", "quota-issues"),
    ])
