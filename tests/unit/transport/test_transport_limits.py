# mypy: disable-error-code="no-untyped-call"
"""Limits of stream and UDP listeners over StringTransport and a fake clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent

from sipsock.config import LimitSettings
from sipsock.seams import SocketCounters
from sipsock.sockdef import parse_row
from sipsock.testing import RecordingSink
from sipsock.transport.base import LimitReporter
from sipsock.transport.stream import (
    OutboundLimitError,
    SipStreamProtocol,
    StreamListener,
    pending_output,
)
from sipsock.transport.udp import UdpListener

MESSAGE = (
    b"OPTIONS sip:a@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK1\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def make_listener(**limits: Any) -> tuple[StreamListener, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    listener = StreamListener(
        parse_row(4, "tcp:10.0.0.1:5060"),
        2,
        RecordingSink(),
        reactor=reactor,
        idle_timeout=600,
        limits=LimitSettings(**limits),
    )
    return listener, reactor


def accept(
    listener: StreamListener, peer: tuple[str, int] = ("192.0.2.9", 40000)
) -> tuple[SipStreamProtocol, StringTransport] | None:
    """What the listening port does: admit, build, connect (None when refused)."""
    if not listener.admit(IPv4Address("TCP", *peer)):
        return None
    protocol = listener.build_protocol()
    assert isinstance(protocol, SipStreamProtocol)
    transport = StringTransport(peerAddress=IPv4Address("TCP", *peer))
    protocol.makeConnection(transport)
    return protocol, transport


def messages_of(events: Sequence[dict[str, Any]]) -> list[str]:
    return [formatEvent(event) for event in events]


# -- the reporter -----------------------------------------------------------------------


class Owner:
    def __init__(self) -> None:
        self.sdef = parse_row(1, "udp:10.0.0.1:5060")
        self.slot: int | None = 7
        self.counters = SocketCounters()


def test_reporter_counts_every_hit_and_logs_the_first_then_a_summary() -> None:
    clock, owner = MemoryReactorClock(), Owner()
    reporter = LimitReporter(owner, clock, interval=60)
    with capturedLogs() as events:
        for _ in range(500):
            reporter.hit("oversize", "datagram too big", ("192.0.2.1", 5060))
            clock.advance(0.01)
        clock.advance(55.001)  # the period ends 60 s after the first hit
    lines = messages_of(events)
    assert owner.counters.limit_oversize == 500
    assert len(lines) == 2
    assert "udp:10.0.0.1:5060 (slot 7): limit oversize hit by 192.0.2.1:5060" in lines[0]
    assert "datagram too big" in lines[0]
    assert "limit oversize hit 499 more times in the last 60 s" in lines[1]
    clock.advance(60)  # a quiet period: nothing more to say, the timer ends
    assert len(events) == 2
    assert clock.getDelayedCalls() == []


def test_reporter_stop_logs_what_is_left_and_leaves_no_timer() -> None:
    clock, owner = MemoryReactorClock(), Owner()
    reporter = LimitReporter(owner, clock, interval=60)
    with capturedLogs() as events:
        reporter.hit("connections", "refused")
        reporter.hit("connections", "refused")
        reporter.stop()
    assert "1 more times" in messages_of(events)[-1]
    assert clock.getDelayedCalls() == []


# -- connections per socket and per IP --------------------------------------------------


def test_connections_over_the_ip_cap_are_refused_and_counted() -> None:
    listener, _ = make_listener(max_connections_per_ip=2, max_connections_per_socket=10)
    first = accept(listener, ("192.0.2.1", 1))
    assert first is not None
    assert accept(listener, ("192.0.2.1", 2)) is not None
    assert accept(listener, ("192.0.2.1", 3)) is None
    assert accept(listener, ("192.0.2.2", 1)) is not None
    assert listener.counters.limit_connections == 1
    first[0].connectionLost()
    assert accept(listener, ("192.0.2.1", 4)) is not None


def test_connections_over_the_socket_cap_are_refused_and_counted() -> None:
    listener, _ = make_listener(max_connections_per_ip=3, max_connections_per_socket=3)
    accepted = [accept(listener, (f"192.0.2.{n}", 1)) for n in range(5)]
    assert [a is not None for a in accepted] == [True, True, True, False, False]
    assert listener.counters.limit_connections == 2


def test_ipv6_peers_of_one_64_share_the_per_ip_cap() -> None:
    listener, _ = make_listener(max_connections_per_ip=2, max_connections_per_socket=10)
    admitted = [
        listener.admit(IPv6Address("TCP", f"2001:db8:0:1::{n}", 5060))
        and listener.connection_made(StringTransport(), (f"2001:db8:0:1::{n}", 5060), inbound=True)
        is not None
        for n in range(1, 4)
    ]
    assert admitted == [True, True, False]
    assert listener.admit(IPv6Address("TCP", "2001:db8:0:2::1", 5060))


def test_outbound_connections_do_not_count_against_the_caps() -> None:
    listener, _ = make_listener(max_connections_per_ip=1, max_connections_per_socket=1)
    outbound = listener.build_protocol(on_connected=lambda c: None, outbound=("192.0.2.1", 5060))
    outbound.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 5060)))
    assert accept(listener, ("192.0.2.1", 1)) is not None


# -- the header timeout -----------------------------------------------------------------


def test_connection_without_a_first_message_is_cut_at_the_header_timeout() -> None:
    listener, reactor = make_listener(header_timeout=2)
    accepted = accept(listener)
    assert accepted is not None
    protocol, transport = accepted
    for second in range(3):
        if second < 2:
            protocol.dataReceived(MESSAGE[second : second + 1])
        reactor.advance(0.99)
    assert transport.disconnected  # aborted at 2 s, although a byte came every second
    assert listener.counters.limit_header_timeout == 1


def test_a_header_section_started_later_must_finish_in_time() -> None:
    listener, reactor = make_listener(header_timeout=2)
    accepted = accept(listener)
    assert accepted is not None
    protocol, transport = accepted
    protocol.dataReceived(MESSAGE)
    reactor.advance(30)
    assert not transport.disconnected  # quiet between messages: the idle timeout's business
    protocol.dataReceived(MESSAGE[:10])
    reactor.advance(1.9)
    open_at_1_9 = not transport.disconnected
    reactor.advance(0.2)
    assert (open_at_1_9, transport.disconnected) == (True, True)
    assert listener.counters.limit_header_timeout == 1


def test_a_header_finished_in_time_stops_the_timer() -> None:
    listener, reactor = make_listener(header_timeout=2)
    accepted = accept(listener)
    assert accepted is not None
    protocol, transport = accepted
    protocol.dataReceived(MESSAGE[:10])
    reactor.advance(1.5)
    protocol.dataReceived(MESSAGE[10:])
    reactor.advance(10)
    assert not transport.disconnected
    assert listener.counters.limit_header_timeout == 0
    protocol.connectionLost()
    assert [c for c in reactor.getDelayedCalls() if c.active()] == []


# -- pending output and the outbound pool ----------------------------------------------


class Backlog(StringTransport):
    """A transport whose kernel buffer is full: everything written stays queued."""

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "192.0.2.9", 40000))
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.dataBuffer += data

    def abortConnection(self) -> None:
        self.aborted = True


def test_pending_output_reads_the_tcp_buffer_through_tls_and_websocket_layers() -> None:
    tcp = Backlog()
    tcp.dataBuffer, tcp.offset, tcp._tempDataLen = b"x" * 100, 40, 7

    class Tls:
        transport = tcp
        _appSendBuffer = [b"abc"]

    class Ws:
        class protocol:  # noqa: N801 - the attribute autobahn's protocol has
            transport = Tls()

    assert pending_output(tcp) == (67, 60)
    assert pending_output(Tls()) == (70, 60)
    assert pending_output(Ws()) == (70, 60)
    assert pending_output(object()) == (0, 0)


def test_peer_that_does_not_read_is_aborted_past_the_pending_send_limit() -> None:
    listener, _ = make_listener(max_pending_send=65536)
    protocol = listener.build_protocol()
    transport = Backlog()
    protocol.makeConnection(transport)
    connection = next(iter(listener.connections.values()))
    reply = b"SIP/2.0 200 OK\r\nContent-Length: 30000\r\n\r\n" + b"x" * 30000
    connection.reply(reply)
    connection.reply(reply)
    aborted_at_two = transport.aborted
    connection.reply(reply)
    assert (aborted_at_two, transport.aborted) == (False, True)
    assert listener.counters.limit_send_buffer == 1
    connection.reply(reply)  # dropped: the connection is closed
    assert listener.counters.drops == 1


def test_full_outbound_pool_fails_the_send_and_counts_it() -> None:
    listener, reactor = make_listener(max_outbound_connections=2)
    for port in (1, 2):
        listener.send(MESSAGE, ("192.0.2.1", port))
    failed = listener.send(MESSAGE, ("192.0.2.1", 3))
    errors: list[Any] = []
    failed.addErrback(errors.append)
    assert errors and isinstance(errors[0].value, OutboundLimitError)
    assert listener.counters.limit_outbound == 1
    assert len(reactor.tcpClients) == 2


# -- UDP ------------------------------------------------------------------------------


def test_oversize_datagram_is_dropped_and_counted() -> None:
    sink = RecordingSink()
    listener = UdpListener(
        parse_row(1, "udp:10.0.0.1:5060"),
        1,
        sink,
        reactor=MemoryReactorClock(),
        max_message_size=1024,
    )
    listener.protocol.datagramReceived(MESSAGE + b"x" * 1024, ("192.0.2.1", 5060))
    listener.protocol.datagramReceived(MESSAGE, ("192.0.2.1", 5060))
    assert listener.counters.limit_oversize == 1
    assert [data for data, _ in sink.messages] == [MESSAGE]
