# mypy: disable-error-code="no-untyped-call"
"""OutboundConnector: connections a stream socket opens to send, one per peer, bounded."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from sipsock.transport.outbound import OutboundLimitError
from tests.unit.transport.streamkit import BARE_MESSAGE, limited, make_listener


def test_send_to_a_new_peer_connects_from_the_socket_address() -> None:
    listener, _, reactor = make_listener()
    results: list[Any] = []
    listener.send(b"INVITE", ("192.0.2.20", 5060)).addBoth(results.append)
    listener.send(b"INFO", ("192.0.2.20", 5060)).addBoth(results.append)
    clients: list[Any] = reactor.tcpClients
    [(host, port, factory, _timeout, bind)] = clients
    assert (host, port, bind) == ("192.0.2.20", 5060, ("10.0.0.1", 0))
    protocol = factory.buildProtocol(None)
    assert protocol is not None
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.20", 5060))
    protocol.makeConnection(transport)
    assert transport.value() == b"INVITEINFO"
    assert results == [None, None]
    assert listener.counters.connections == 1


def test_failed_connect_fails_the_send() -> None:
    listener, _, reactor = make_listener()
    results: list[Any] = []
    listener.send(b"INVITE", ("192.0.2.20", 5060)).addBoth(results.append)
    clients: list[Any] = reactor.tcpClients
    [(_, _, factory, _, _)] = clients
    connector: Any = None
    factory.clientConnectionFailed(
        connector,
        Failure(ConnectionRefusedError("refused")),
    )
    assert isinstance(results[0], Failure)
    assert listener.counters.drops == 1


def test_full_outbound_pool_fails_the_send_and_counts_it() -> None:
    listener, reactor = limited(max_outbound_connections=2)
    for port in (1, 2):
        listener.send(BARE_MESSAGE, ("192.0.2.1", port))
    failed = listener.send(BARE_MESSAGE, ("192.0.2.1", 3))
    errors: list[Any] = []
    failed.addErrback(errors.append)
    assert errors and isinstance(errors[0].value, OutboundLimitError)
    assert listener.counters.limit_outbound == 1
    assert len(reactor.tcpClients) == 2
