"""TLS failures are described in a few words, whoever reports them."""

from __future__ import annotations

from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.exceptions import DNSMismatch
from service_identity.hazmat import DNS_ID

from sipsock.transport.tlserrors import describe_tls_error, describe_tls_failure


def test_openssl_reasons_are_listed_once_each() -> None:
    error = SSL.Error(
        [
            ("SSL routines", "", "certificate verify failed"),
            ("SSL routines", "", "certificate verify failed"),
            ("SSL routines", "", "unknown ca"),
        ]
    )
    assert describe_tls_error(error) == "certificate verify failed, unknown ca"


def test_an_openssl_error_without_reasons_is_still_described() -> None:
    assert describe_tls_error(SSL.Error()) == "TLS error"
    assert describe_tls_error(SSL.Error("handshake aborted")) == "handshake aborted"


def test_a_host_name_mismatch_names_the_host_as_text() -> None:
    error = VerificationError(errors=[DNSMismatch(mismatched_id=DNS_ID("sip.example.com"))])
    assert describe_tls_failure(error) == "the server certificate does not name sip.example.com"


def test_other_errors_are_not_tls_failures() -> None:
    assert describe_tls_failure(ConnectionRefusedError()) is None
    assert describe_tls_failure(None) is None
