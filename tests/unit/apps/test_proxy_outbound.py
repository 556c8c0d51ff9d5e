# mypy: disable-error-code="no-untyped-call"
"""The outbound connection pool the proxy sends through (StreamListener.send)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from sipsock.sockdef import parse_row
from sipsock.testing import RecordingSink
from sipsock.transport.stream import OutboundLimitError, StreamListener, peer_key


def listener(sock: str = "tcp:10.0.0.1:5060") -> tuple[StreamListener, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    return StreamListener(parse_row(1, sock, tag="b"), 2, RecordingSink(), reactor=reactor), reactor


def connect(reactor: MemoryReactorClock, index: int, peer: Any) -> tuple[Any, StringTransport]:
    """Complete the ``index``-th connect the listener asked the reactor for."""
    factory = reactor.tcpClients[index][2]
    protocol = factory.buildProtocol(None)
    assert protocol is not None
    transport = StringTransport(peerAddress=peer)
    protocol.makeConnection(transport)
    return protocol, transport


def failure_of(results: list[Any]) -> BaseException:
    [result] = results
    assert isinstance(result, Failure)
    assert result.value is not None
    return result.value


def test_one_connection_per_peer_is_reused() -> None:
    lst, reactor = listener()
    lst.send(b"INVITE", ("192.0.2.20", 5060))
    _, transport = connect(reactor, 0, IPv4Address("TCP", "192.0.2.20", 5060))
    lst.send(b"ACK", ("192.0.2.20", 5060))
    assert transport.value() == b"INVITEACK"
    assert len(reactor.tcpClients) == 1


def test_ipv6_peers_are_matched_in_canonical_form() -> None:
    lst, reactor = listener("tcp:[::1]:5060")
    lst.send(b"INVITE", ("0:0::1", 5080))
    assert reactor.tcpClients[0][:2] == ("::1", 5080)
    _, transport = connect(reactor, 0, IPv6Address("TCP", "::1", 5080))
    lst.send(b"BYE", ("[::1]", 5080))
    assert transport.value() == b"INVITEBYE"
    assert peer_key(("[0::1]", 1)) == ("::1", 1)
    assert peer_key(("Host.Example", 1)) == ("host.example", 1)


def test_a_connection_opened_for_a_name_is_reused_for_that_name() -> None:
    lst, reactor = listener()
    lst.send(b"INVITE", ("uas.example", 5061))
    assert reactor.tcpClients[0][:2] == ("uas.example", 5061)
    protocol, transport = connect(reactor, 0, IPv4Address("TCP", "192.0.2.30", 5061))
    lst.send(b"ACK", ("uas.example", 5061))
    assert transport.value() == b"INVITEACK"
    assert len(reactor.tcpClients) == 1
    protocol.connectionLost(Failure(ConnectionError("closed")))
    lst.send(b"BYE", ("uas.example", 5061))
    assert len(reactor.tcpClients) == 2


def test_the_pool_is_bounded_and_a_closed_connection_frees_its_place() -> None:
    lst, reactor = listener()
    lst.max_outbound = 2
    results: list[Any] = []
    lst.send(b"1", ("192.0.2.1", 5060))
    lst.send(b"2", ("192.0.2.2", 5060))
    lst.send(b"3", ("192.0.2.3", 5060)).addBoth(results.append)
    error = failure_of(results)
    assert isinstance(error, OutboundLimitError)
    assert "outbound connection limit reached (2)" in str(error)
    assert "tcp:10.0.0.1:5060" in str(error)
    assert lst.counters.drops == 1
    # Connected ones count too; accepted connections do not.
    protocol, _ = connect(reactor, 0, IPv4Address("TCP", "192.0.2.1", 5060))
    results.clear()
    lst.send(b"3", ("192.0.2.3", 5060)).addBoth(results.append)
    assert isinstance(failure_of(results), OutboundLimitError)
    protocol.connectionLost(Failure(ConnectionError("closed")))
    lst.send(b"3", ("192.0.2.3", 5060))
    assert len(reactor.tcpClients) == 3


def test_refused_and_timed_out_connects_fail_every_waiting_send() -> None:
    lst, reactor = listener()
    for index, error in enumerate([ConnectionRefusedError(), TimeoutError()]):
        results: list[Any] = []
        lst.send(b"INVITE", ("192.0.2.20", 5060)).addBoth(results.append)
        lst.send(b"CANCEL", ("192.0.2.20", 5060)).addBoth(results.append)
        factory: Any = reactor.tcpClients[index][2]
        factory.clientConnectionFailed(None, Failure(error))
        assert [type(r.value) for r in results] == [type(error), type(error)]
    # A failed connect leaves no trace in the pool.
    lst.max_outbound = 1
    lst.send(b"INVITE", ("192.0.2.21", 5060))
    assert len(reactor.tcpClients) == 3
