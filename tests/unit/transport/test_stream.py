# mypy: disable-error-code="no-untyped-call"
"""StreamListener: admission caps, sends on open connections, closing."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport

from tests.unit.transport.streamkit import accept, admit, limited, lose, make_listener


def test_stop_closes_every_connection_and_fires_when_they_are_gone() -> None:
    listener, _, reactor = make_listener()
    first, first_transport = accept(listener)
    second, second_transport = accept(listener, ("192.0.2.10", 40001))
    assert listener.counters.connections == 2
    done: list[None] = []
    listener.stop().addCallback(done.append)
    assert first_transport.disconnecting and second_transport.disconnecting
    lose(first)
    assert done == []
    lose(second)
    assert done == [None]
    assert reactor.getDelayedCalls() == []


def test_stop_aborts_connections_that_do_not_flush() -> None:
    listener, _, reactor = make_listener()
    _, transport = accept(listener)
    aborted: list[bool] = []
    transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
    listener.stop()
    reactor.advance(5)
    assert aborted == [True]


def test_send_uses_the_open_connection_to_the_peer() -> None:
    listener, _, reactor = make_listener()
    _, transport = accept(listener)
    sent = listener.send(b"BYE", ("192.0.2.9", 40000))
    assert sent.called
    assert transport.value() == b"BYE"
    assert reactor.tcpClients == []


# -- connections per socket and per IP --------------------------------------------------


def test_connections_over_the_ip_cap_are_refused_and_counted() -> None:
    listener, _ = limited(max_connections_per_ip=2, max_connections_per_socket=10)
    first = admit(listener, ("192.0.2.1", 1))
    assert first is not None
    assert admit(listener, ("192.0.2.1", 2)) is not None
    assert admit(listener, ("192.0.2.1", 3)) is None
    assert admit(listener, ("192.0.2.2", 1)) is not None
    assert listener.counters.limit_connections == 1
    first[0].connectionLost()
    assert admit(listener, ("192.0.2.1", 4)) is not None


def test_connections_over_the_socket_cap_are_refused_and_counted() -> None:
    listener, _ = limited(max_connections_per_ip=3, max_connections_per_socket=3)
    accepted = [admit(listener, (f"192.0.2.{n}", 1)) for n in range(5)]
    assert [a is not None for a in accepted] == [True, True, True, False, False]
    assert listener.counters.limit_connections == 2


def test_ipv6_peers_of_one_64_share_the_per_ip_cap() -> None:
    listener, _ = limited(max_connections_per_ip=2, max_connections_per_socket=10)
    admitted = [
        listener.admit(IPv6Address("TCP", f"2001:db8:0:1::{n}", 5060))
        and listener.connection_made(StringTransport(), (f"2001:db8:0:1::{n}", 5060), inbound=True)
        is not None
        for n in range(1, 4)
    ]
    assert admitted == [True, True, False]
    assert listener.admit(IPv6Address("TCP", "2001:db8:0:2::1", 5060))


def test_outbound_connections_do_not_count_against_the_caps() -> None:
    listener, _ = limited(max_connections_per_ip=1, max_connections_per_socket=1)
    outbound = listener.build_protocol(on_connected=lambda c: None, outbound=("192.0.2.1", 5060))
    outbound.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 5060)))
    assert admit(listener, ("192.0.2.1", 1)) is not None
