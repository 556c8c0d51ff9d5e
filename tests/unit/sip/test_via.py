"""Via values: parsing, building, branches and RFC 3261 18.2.1 / RFC 3581 stamping."""

from __future__ import annotations

import pytest

from sipsock.sip import (
    MAGIC_COOKIE,
    Request,
    SipParseError,
    Via,
    apply_received,
    make_via,
    parse,
    parse_via,
    stateless_branch,
)


def request(via: str) -> Request:
    data = (
        f"INVITE sip:b@example.com SIP/2.0\r\nVia: {via}\r\nTo: <sip:b@example.com>\r\n"
        "From: <sip:a@example.com>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse(data)
    assert isinstance(message, Request)
    return message


def test_parse_reads_sent_by_transport_and_params() -> None:
    via = parse_via("SIP/2.0/udp host.example.com:5070;branch=z9hG4bK1;rport;maddr=239.1.1.1;ttl=3")
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "UDP",
        "host.example.com",
        5070,
    )
    assert (via.branch, via.rport, via.maddr, via.ttl, via.received) == (
        "z9hG4bK1",
        True,
        "239.1.1.1",
        3,
        None,
    )


def test_parse_reads_ipv6_sent_by_and_rport_value() -> None:
    via = parse_via("SIP/2.0/TCP [2001:db8::1]:5060;received=2001:db8::2;rport=4000")
    assert (via.host, via.port, via.received, via.rport) == (
        "2001:db8::1",
        5060,
        "2001:db8::2",
        4000,
    )
    assert str(via) == "SIP/2.0/TCP [2001:db8::1]:5060;received=2001:db8::2;rport=4000"


def test_missing_port_is_none() -> None:
    assert parse_via("SIP/2.0/UDP 192.0.2.1").port is None


@pytest.mark.parametrize(
    "value",
    ["", "SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDP host;;", "SIP/2.0/UDP host:99999", "x y z"],
)
def test_malformed_via_raises(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(value)


def test_make_via_has_fresh_magic_cookie_branch() -> None:
    first, second = make_via("udp", "192.0.2.1", 5060), make_via("udp", "192.0.2.1", 5060)
    via = parse_via(first)
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.1", 5060)
    assert via.branch is not None
    assert via.branch.startswith(MAGIC_COOKIE)
    assert first != second


def test_make_via_brackets_ipv6_and_keeps_given_branch() -> None:
    value = make_via("WSS", "2001:db8::1", 443, "z9hG4bKx", rport=True)
    assert value == "SIP/2.0/WSS [2001:db8::1]:443;branch=z9hG4bKx;rport"


def test_stateless_branch_is_stable_for_retransmissions() -> None:
    first = stateless_branch(request("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc"), "salt")
    again = stateless_branch(request("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc"), "salt")
    other = stateless_branch(request("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabd"), "salt")
    assert first == again != other
    assert first.startswith(MAGIC_COOKIE)
    assert first != stateless_branch(request("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc"), "pepper")


def test_stateless_branch_of_rfc2543_request_uses_transaction_key() -> None:
    first = stateless_branch(request("SIP/2.0/UDP 192.0.2.1"))
    assert first == stateless_branch(request("SIP/2.0/UDP 192.0.2.1"))
    assert first.startswith(MAGIC_COOKIE)


def test_received_added_when_source_differs_from_sent_by() -> None:
    message = request("SIP/2.0/UDP client.example.com:5060;branch=z9hG4bK1")
    apply_received(message, "192.0.2.9", 5060)
    assert message.top_via.received == "192.0.2.9"
    assert message.top_via.rport is None


def test_nothing_added_when_source_equals_sent_by() -> None:
    message = request("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1")
    apply_received(message, "192.0.2.9", 5070)
    assert message.get("Via") == "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1"


def test_ipv6_source_equal_in_another_spelling_adds_nothing() -> None:
    message = request("SIP/2.0/UDP [2001:db8:0::9];branch=z9hG4bK1")
    apply_received(message, "2001:db8::9", 5060)
    assert message.top_via.received is None


def test_empty_rport_is_filled_and_received_always_added() -> None:
    message = request("SIP/2.0/UDP 192.0.2.9:5060;rport;branch=z9hG4bK1, SIP/2.0/UDP 192.0.2.1")
    apply_received(message, "192.0.2.9", 40000)
    via = message.top_via
    assert (via.received, via.rport) == ("192.0.2.9", 40000)
    assert str(via) == "SIP/2.0/UDP 192.0.2.9:5060;rport=40000;branch=z9hG4bK1;received=192.0.2.9"
    assert message.get_all("Via")[1] == "SIP/2.0/UDP 192.0.2.1"


def test_existing_received_is_replaced() -> None:
    message = request("SIP/2.0/UDP a.example.com;received=192.0.2.1;branch=z9hG4bK1")
    apply_received(message, "192.0.2.2", 5060)
    assert message.top_via.params == (("received", "192.0.2.2"), ("branch", "z9hG4bK1"))


def test_via_is_an_immutable_value() -> None:
    via = Via("SIP/2.0", "UDP", "h", 1, (("branch", "z9hG4bKq"),))
    assert via.with_param("branch", "z9hG4bKr").branch == "z9hG4bKr"
    assert via.branch == "z9hG4bKq"
