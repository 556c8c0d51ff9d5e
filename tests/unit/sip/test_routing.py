"""route_response: every branch of RFC 3261 18.2.2 and RFC 3581 section 4."""

from __future__ import annotations

import pytest

from sipsock.sip import Response, ResponseRoute, default_port, parse_via, route_response


def route(via: str, connection_open: bool = False) -> ResponseRoute:
    return route_response(parse_via(via), connection_open=connection_open)


@pytest.mark.parametrize(
    ("via", "connection_open", "expected"),
    [
        # reliable, connection still open: reuse it
        (
            "SIP/2.0/TCP 192.0.2.1:5080;branch=z9hG4bK1;received=192.0.2.9",
            True,
            ResponseRoute("TCP", "192.0.2.9", 5080, reuse_connection=True),
        ),
        # reliable, connection gone: received + sent-by port
        (
            "SIP/2.0/TCP a.example.com:5080;branch=z9hG4bK1;received=192.0.2.9",
            False,
            ResponseRoute("TCP", "192.0.2.9", 5080),
        ),
        # reliable, connection gone, no received: sent-by name resolved, default port
        (
            "SIP/2.0/TLS a.example.com;branch=z9hG4bK1",
            False,
            ResponseRoute("TLS", "a.example.com", 5061, resolve=True),
        ),
        # reliable: rport does not change the port (RFC 3581 applies to unreliable only)
        (
            "SIP/2.0/TCP 192.0.2.1;rport=4000;received=192.0.2.1;branch=z9hG4bK1",
            False,
            ResponseRoute("TCP", "192.0.2.1", 5060),
        ),
        # WebSocket, connection gone: cannot connect back (RFC 7118), drop
        (
            "SIP/2.0/WSS abc.invalid;branch=z9hG4bK1;received=192.0.2.9",
            False,
            ResponseRoute("WSS", "192.0.2.9", 443, drop=True),
        ),
        (
            "SIP/2.0/WS abc.invalid;branch=z9hG4bK1",
            True,
            ResponseRoute("WS", "abc.invalid", 80, reuse_connection=True),
        ),
        # maddr, multicast: sent-by port, ttl from the Via
        (
            "SIP/2.0/UDP 192.0.2.1:5070;maddr=239.255.255.1;ttl=16;received=192.0.2.9",
            False,
            ResponseRoute("UDP", "239.255.255.1", 5070, ttl=16),
        ),
        # maddr, multicast, no ttl: TTL 1, port 5060
        (
            "SIP/2.0/UDP 192.0.2.1;maddr=239.255.255.1",
            False,
            ResponseRoute("UDP", "239.255.255.1", 5060, ttl=1),
        ),
        # maddr, unicast name: resolved, no ttl
        (
            "SIP/2.0/UDP 192.0.2.1;maddr=relay.example.com",
            False,
            ResponseRoute("UDP", "relay.example.com", 5060, resolve=True),
        ),
        # unreliable, received + rport value (RFC 3581)
        (
            "SIP/2.0/UDP 10.0.0.1:5060;rport=40000;received=192.0.2.9;branch=z9hG4bK1",
            False,
            ResponseRoute("UDP", "192.0.2.9", 40000),
        ),
        # unreliable, received only: sent-by port
        (
            "SIP/2.0/UDP a.example.com:5070;received=192.0.2.9",
            False,
            ResponseRoute("UDP", "192.0.2.9", 5070),
        ),
        # unreliable, received only, no port: default 5060
        (
            "SIP/2.0/UDP a.example.com;received=192.0.2.9",
            False,
            ResponseRoute("UDP", "192.0.2.9", 5060),
        ),
        # unreliable, empty rport never filled: sent-by
        (
            "SIP/2.0/UDP 192.0.2.1:5070;rport",
            False,
            ResponseRoute("UDP", "192.0.2.1", 5070),
        ),
        # unreliable, rport value without received: sent-by host at rport
        (
            "SIP/2.0/UDP 192.0.2.1:5070;rport=6000",
            False,
            ResponseRoute("UDP", "192.0.2.1", 6000),
        ),
        # unreliable, sent-by name: resolved (RFC 3263 section 5)
        (
            "SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
            False,
            ResponseRoute("UDP", "a.example.com", 5060, resolve=True),
        ),
        # IPv6 sent-by
        (
            "SIP/2.0/UDP [2001:db8::1]:5062",
            False,
            ResponseRoute("UDP", "2001:db8::1", 5062),
        ),
    ],
)
def test_route_response_follows_rfc3261_18_2_2_and_rfc3581(
    via: str, connection_open: bool, expected: ResponseRoute
) -> None:
    assert route(via, connection_open) == expected


def test_route_response_reads_the_top_via_of_a_response() -> None:
    response = Response(
        200, "OK", [("Via", "SIP/2.0/UDP 10.0.0.1;rport=5000;received=192.0.2.9, SIP/2.0/UDP x")]
    )
    assert route_response(response) == ResponseRoute("UDP", "192.0.2.9", 5000)


@pytest.mark.parametrize(
    ("transport", "port"), [("UDP", 5060), ("TCP", 5060), ("TLS", 5061), ("WS", 80), ("WSS", 443)]
)
def test_default_ports_per_transport(transport: str, port: int) -> None:
    assert default_port(transport) == port
