"""SIP URIs, destinations and host matching (sipsock.sip.uri)."""

from __future__ import annotations

import pytest

from sipsock.sip.uri import (
    Destination,
    SipUri,
    UriError,
    destination_of,
    host_matches,
    parse_uri,
    request_uri_host,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:127.0.0.1:5080", SipUri("sip", "127.0.0.1", 5080)),
        ("SIP:Host.Example.com", SipUri("sip", "Host.Example.com")),
        (
            "sip:bob@[::1]:5062;transport=TCP;lr",
            SipUri("sip", "::1", 5062, "bob", (("transport", "TCP"), ("lr", None))),
        ),
        (
            '"Proxy" <sips:p.example.com;lr>;x=1',
            SipUri("sips", "p.example.com", None, None, (("lr", None),)),
        ),
        ("sip:u;phone=1@h?Subject=x", SipUri("sip", "h", None, "u;phone=1")),
    ],
)
def test_uris_are_parsed(text: str, expected: SipUri) -> None:
    assert parse_uri(text) == expected


@pytest.mark.parametrize(
    "text", ["tel:+123", "http://x", "sip:", "sip:host:99999", "sip:[zz::1]", "<sip:x", "sip:a b"]
)
def test_bad_uris_are_refused(text: str) -> None:
    with pytest.raises(UriError):
        parse_uri(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:10.0.0.2", Destination("10.0.0.2", None, None)),
        ("sip:10.0.0.2:5080;transport=TCP", Destination("10.0.0.2", 5080, "tcp")),
        ("sips:example.com", Destination("example.com", None, "tls")),
        ("sips:example.com;transport=tcp", Destination("example.com", None, "tls")),
        ("sip:h;transport=ws", Destination("h", None, "ws")),
        ("sip:x@h;maddr=10.1.1.1;transport=udp", Destination("10.1.1.1", None, "udp")),
        ("sip:[2001:db8::1]:5070", Destination("2001:db8::1", 5070, None)),
    ],
)
def test_destination_of_a_uri(text: str, expected: Destination) -> None:
    assert destination_of(parse_uri(text)) == expected


def test_destination_defaults_the_port_by_transport() -> None:
    assert Destination("h").address("udp") == ("h", 5060)
    assert Destination("h").address("tls") == ("h", 5061)
    assert Destination("h", 7000).address("wss") == ("h", 7000)
    assert str(Destination("::1", 5070, "tcp")) == "sip:[::1]:5070;transport=tcp"


def test_a_transport_sipsock_does_not_speak_is_refused() -> None:
    with pytest.raises(UriError, match="sctp"):
        destination_of(parse_uri("sip:h;transport=sctp"))


def test_request_uri_host() -> None:
    assert request_uri_host("sip:svc@Example.COM:5060") == "Example.COM"
    assert request_uri_host("tel:+1234") is None


# --- routes ---------------------------------------------------------------------------


def test_host_matching() -> None:
    assert host_matches("example.com", "Example.Com")
    assert host_matches("::1", "[0:0::1]")
    assert host_matches("*.example.com", "a.b.example.com")
    assert not host_matches("*.example.com", "example.com")
    assert not host_matches("example.com", None)


# --- Max-Forwards, branch and loops ------------------------------------------------------
