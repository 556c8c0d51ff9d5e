"""TLS domain rules (pure) and domain loading from files made by trustme."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from sipsock.config import TLSDomainSettings, parse_config
from sipsock.sockdef import parse_row
from sipsock.transport.tls import (
    TLSDomains,
    TLSError,
    TLSReloadReport,
    canonical_address,
    choose_domain,
    group_of,
    sni_matches,
    verify_mode,
)
from tests.tlsfiles import CertFiles, TestPKI


def settings(name: str, **kwargs: Any) -> TLSDomainSettings:
    files = kwargs.pop("files", None)
    return TLSDomainSettings(
        name=name,
        certificate=files.certificate if files else Path(f"/nonexistent/{name}.crt"),
        private_key=files.private_key if files else Path(f"/nonexistent/{name}.key"),
        **kwargs,
    )


# -- rules -------------------------------------------------------------------------


def test_canonical_address_compresses_ipv6_and_brackets_it() -> None:
    assert canonical_address("127.0.0.1", 5061) == "127.0.0.1:5061"
    assert canonical_address("0:0:0:0:0:0:0:1", 443) == "[::1]:443"
    assert canonical_address("[::1]", 443) == "[::1]:443"


def test_group_is_the_sockets_address_else_star_else_none() -> None:
    domains = [
        settings("a", match_address="10.0.0.1:5061"),
        settings("b", match_address="*"),
    ]
    assert group_of(domains, "10.0.0.1", 5061) == "10.0.0.1:5061"
    assert group_of(domains, "10.0.0.1", 5062) == "*"
    assert group_of(domains[:1], "10.0.0.2", 5061) is None
    assert group_of([settings("v6", match_address="[::1]:443")], "::1", 443) == "[::1]:443"


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*", "anything.example", True),
        ("sip.example.com", "sip.example.com", True),
        ("sip.example.com", "www.example.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", ".example.com", False),
    ],
)
def test_sni_patterns(pattern: str, name: str, matches: bool) -> None:
    assert sni_matches(pattern, name) is matches


def test_exact_name_beats_wildcard_beats_star_and_no_name_gets_the_star_domain() -> None:
    group = [
        settings("fallback", match_sni=("*",)),
        settings("wild", match_sni=("*.example.com",)),
        settings("exact", match_sni=("sip.example.com",)),
    ]
    assert choose_domain(group, "sip.example.com").name == "exact"
    assert choose_domain(group, "SIP.Example.COM.").name == "exact"
    assert choose_domain(group, "www.example.com").name == "wild"
    assert choose_domain(group, "other.test").name == "fallback"
    assert choose_domain(group, None).name == "fallback"


def test_without_a_star_domain_the_first_one_answers_unknown_names() -> None:
    group = [settings("one", match_sni=("one.test",)), settings("two", match_sni=("two.test",))]
    assert choose_domain(group, "three.test").name == "one"
    assert choose_domain(group, "two.test").name == "two"


def test_verify_modes() -> None:
    assert verify_mode(settings("a")) == SSL.VERIFY_NONE
    optional = settings("b", verify_client=True, ca_list=Path("ca.pem"))
    assert verify_mode(optional) == SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
    required = settings("c", verify_client=True, require_client_cert=True, ca_list=Path("ca"))
    assert verify_mode(required) & SSL.VERIFY_FAIL_IF_NO_PEER_CERT


# -- loading -------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI(tmp_path)


@pytest.fixture
def server(pki: TestPKI) -> CertFiles:
    return pki.issue("server", "sip.example.com")


def load_error(*domains: TLSDomainSettings) -> TLSError:
    with pytest.raises(TLSError) as caught:
        TLSDomains(domains)
    return caught.value


def test_domains_load_and_describe_their_certificates(server: CertFiles, pki: TestPKI) -> None:
    domains = TLSDomains([settings("main", files=server, ca_list=pki.ca_file)])
    [described] = domains.list_domains()
    assert described["name"] == "main"
    assert described["subject"].startswith("CN=sip.example.com,")
    assert len(described["sha256"].split(":")) == 32
    assert domains.names == ["main"]


def test_missing_certificate_file_names_the_domain_and_the_path(tmp_path: Path) -> None:
    error = load_error(settings("edge"))
    assert error.domain == "edge"
    assert str(error) == "TLS domain 'edge': certificate /nonexistent/edge.crt: no such file"


def test_file_that_is_not_pem_is_named(server: CertFiles) -> None:
    server.certificate.write_text("hello\n")
    error = load_error(settings("edge", files=server))
    assert error.reason == f"certificate {server.certificate}: no PEM certificate in the file"
    server.certificate.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    error = load_error(settings("edge", files=server))
    assert error.reason == (
        f"certificate {server.certificate}: cannot read the certificate (not a valid certificate)"
    )


def test_key_of_another_certificate_is_refused(server: CertFiles, pki: TestPKI) -> None:
    other = pki.issue("other", "other.example")
    mixed = CertFiles(server.certificate, other.private_key)
    error = load_error(settings("edge", files=mixed))
    assert "does not belong to the certificate" in error.reason


def test_encrypted_key_is_refused_with_a_reason(server: CertFiles) -> None:
    key = serialization.load_pem_private_key(server.private_key.read_bytes(), password=None)
    server.private_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    assert "encrypted" in load_error(settings("edge", files=server)).reason


def test_directory_instead_of_a_key_is_named(server: CertFiles, tmp_path: Path) -> None:
    error = load_error(settings("edge", files=CertFiles(server.certificate, tmp_path)))
    assert "is a directory" in error.reason


def test_unreadable_ca_list_is_named(server: CertFiles, tmp_path: Path) -> None:
    error = load_error(settings("edge", files=server, ca_list=tmp_path / "none.pem"))
    assert error.reason == f"ca_list {tmp_path / 'none.pem'}: no such file"


def test_ciphers_with_no_usable_cipher_are_refused(server: CertFiles) -> None:
    error = load_error(settings("edge", files=server, ciphers="NO-SUCH-CIPHER"))
    assert "ciphers 'NO-SUCH-CIPHER'" in error.reason


def test_huge_file_is_refused_before_parsing(server: CertFiles) -> None:
    with server.certificate.open("wb") as handle:
        handle.truncate(5 * 1024 * 1024)
    assert "larger than" in load_error(settings("edge", files=server)).reason


def test_socket_outside_every_group_gets_a_reason(server: CertFiles) -> None:
    domains = TLSDomains([settings("a", files=server, match_address="10.0.0.1:5061")])
    with pytest.raises(TLSError) as caught:
        domains.context_for(parse_row(1, "tls:10.0.0.2:5061"))
    assert caught.value.domain is None
    assert "no TLS domain matches 10.0.0.2:5061" in caught.value.reason
    assert domains.context_for(parse_row(2, "tls:10.0.0.1:5061")).domain_names == ["a"]


def test_no_domain_at_all_is_its_own_reason() -> None:
    with pytest.raises(TLSError, match="no TLS domain is configured"):
        TLSDomains([]).context_for(parse_row(1, "wss:10.0.0.2"))


# -- reload --------------------------------------------------------------------------


def test_reload_swaps_good_domains_and_keeps_failed_ones(pki: TestPKI) -> None:
    first, second = pki.issue("first", "one.example"), pki.issue("second", "two.example")
    domains = TLSDomains(
        [
            settings("one", files=first, match_sni=("one.example",)),
            settings("two", files=second, match_sni=("two.example",)),
        ]
    )
    old_one, old_two = domains.loaded("one"), domains.loaded("two")
    replacement = pki.issue("new", "one.example", "new.example")
    os.replace(replacement.certificate, first.certificate)
    os.replace(replacement.private_key, first.private_key)
    key = ec.generate_private_key(ec.SECP256R1())
    second.private_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    report = domains.reload()
    assert report.reloaded == ["one"]
    assert report.failed == [
        (
            "two",
            f"private_key {second.private_key} does not belong to the certificate "
            f"{second.certificate}",
        )
    ]
    assert domains.loaded("one") is not old_one
    assert domains.loaded("two") is old_two
    assert not report.ok
    assert report.as_dict() == {
        "reloaded": ["one"],
        "failed": [{"domain": "two", "reason": report.failed[0][1]}],
    }
    assert report.summary().startswith("TLS reload failed for domain 'two': private_key")
    assert report.summary().endswith("(old certificate kept); reloaded: 'one'")


def test_report_of_a_clean_reload() -> None:
    report = TLSReloadReport(reloaded=["a"])
    assert report.ok
    assert report.as_dict() == {"reloaded": ["a"], "failed": []}


# -- config ----------------------------------------------------------------------------


def test_config_domains_become_settings(tmp_path: Path) -> None:
    parsed = parse_config(
        {
            "tls": {
                "domain": [
                    {
                        "name": "edge",
                        "match_address": "[0:0::1]:5061",
                        "match_sni": ["SIP.example.com.", "*.example.org"],
                        "certificate": "a.crt",
                        "private_key": "a.key",
                        "ca_list": "ca.pem",
                        "require_client_cert": True,
                        "min_version": "1.3",
                    }
                ]
            }
        }
    )
    [edge] = parsed.tls.domains
    assert edge.match_address == "[::1]:5061"
    assert edge.match_sni == ("sip.example.com", "*.example.org")
    assert edge.verify_client and edge.require_client_cert
    assert edge.min_version == "1.3"
    assert edge.verify_server is True
