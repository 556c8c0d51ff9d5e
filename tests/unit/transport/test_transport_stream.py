# mypy: disable-error-code="no-untyped-call"
"""Stream listener and connections over StringTransport and a fake clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from sipsock.config import LimitSettings
from sipsock.sockdef import parse_row
from sipsock.testing import RecordingSink
from sipsock.transport import Origin
from sipsock.transport.stream import SipStreamProtocol, StreamListener

MESSAGE = (
    b"OPTIONS sip:a@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK1\r\n"
    b"Content-Length: 4\r\n\r\nbody"
)


def make_listener(
    idle_timeout: float = 30.0, max_message_size: int = 65535, limits: LimitSettings | None = None
) -> tuple[StreamListener, RecordingSink, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    sink = RecordingSink()
    listener = StreamListener(
        parse_row(4, "tcp:10.0.0.1:5060", tag="core"),
        2,
        sink,
        reactor=reactor,
        idle_timeout=idle_timeout,
        max_message_size=max_message_size,
        flush_timeout=5.0,
        limits=limits,
    )
    return listener, sink, reactor


def accept(
    listener: StreamListener, peer: tuple[str, int] = ("192.0.2.9", 40000)
) -> tuple[SipStreamProtocol, StringTransport]:
    protocol = listener.build_protocol()
    assert isinstance(protocol, SipStreamProtocol)
    transport = StringTransport(peerAddress=IPv4Address("TCP", *peer))
    protocol.makeConnection(transport)
    return protocol, transport


def lose(protocol: SipStreamProtocol) -> None:
    protocol.connectionLost(Failure(ConnectionError("closed")))


def test_two_messages_in_one_read_are_delivered_in_order() -> None:
    listener, sink, _ = make_listener()
    protocol, _ = accept(listener)
    protocol.dataReceived(MESSAGE + MESSAGE.replace(b"body", b"BODY"))
    assert [data[-4:] for data, _ in sink.messages] == [b"body", b"BODY"]
    origin = sink.messages[0][1]
    assert origin.peer == ("192.0.2.9", 40000)
    assert origin.slot == 2
    assert origin.sdef.tag == "core"
    assert origin.connection_id is not None
    assert listener.counters.received == 2


def test_split_message_is_delivered_once_complete() -> None:
    listener, sink, _ = make_listener()
    protocol, _ = accept(listener)
    protocol.dataReceived(MESSAGE[:30])
    assert sink.messages == []
    protocol.dataReceived(MESSAGE[30:])
    assert [data for data, _ in sink.messages] == [MESSAGE]


def test_keepalive_ping_gets_a_pong() -> None:
    listener, sink, _ = make_listener()
    protocol, transport = accept(listener)
    protocol.dataReceived(b"\r\n\r\n")
    assert transport.value() == b"\r\n"
    assert sink.messages == []


def test_reply_goes_on_the_same_connection() -> None:
    listener, sink, _ = make_listener()
    protocol, transport = accept(listener)
    protocol.dataReceived(MESSAGE)
    sink.messages[0][1].reply(b"SIP/2.0 200 OK\r\n\r\n")
    assert transport.value() == b"SIP/2.0 200 OK\r\n\r\n"
    assert listener.counters.sent == 1


class AnsweringSink(RecordingSink):
    """A sink that answers unframeable messages, as the Dispatcher does."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.unframeable: list[tuple[bytes, int | None]] = []
        self.fail = fail

    def message_unframeable(self, header: bytes, error: Any, origin: Origin) -> bool:
        self.unframeable.append((header, error.status))
        if self.fail:
            raise RuntimeError("sink bug")
        origin.reply(b"SIP/2.0 %d Answered\r\n\r\n" % error.status)
        return True


def test_an_unframeable_message_is_answered_by_the_sink_before_the_close() -> None:
    listener, _, _ = make_listener(max_message_size=1024)
    sink = listener.sink = AnsweringSink()
    protocol, transport = accept(listener)
    header = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 5000\r\n\r\n"
    protocol.dataReceived(header)
    assert sink.unframeable == [(header, 513)]
    assert transport.value() == b"SIP/2.0 513 Answered\r\n\r\n"
    assert transport.disconnecting
    assert (listener.counters.limit_oversize, listener.counters.sent) == (1, 1)


def test_a_sink_that_fails_to_answer_does_not_keep_the_connection_open() -> None:
    listener, _, _ = make_listener()
    sink = listener.sink = AnsweringSink(fail=True)
    protocol, transport = accept(listener)
    protocol.dataReceived(b"OPTIONS sip:a SIP/2.0\r\nCall-ID: 1\r\n\r\n")
    assert [status for _, status in sink.unframeable] == [400]
    assert transport.disconnecting
    assert listener.counters.parse_errors == 1


def test_a_stream_that_is_not_sip_is_closed_without_asking_the_sink() -> None:
    listener, _, _ = make_listener()
    sink = listener.sink = AnsweringSink()
    protocol, transport = accept(listener)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sink.unframeable == []
    assert transport.value() == b""
    assert transport.disconnecting


def test_oversize_message_closes_the_connection_and_counts_a_limit_hit() -> None:
    listener, sink, _ = make_listener(max_message_size=1024)
    protocol, transport = accept(listener)
    protocol.dataReceived(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
    assert transport.disconnecting
    assert (listener.counters.limit_oversize, listener.counters.parse_errors) == (1, 0)
    protocol.dataReceived(MESSAGE)  # ignored: framing is lost
    assert sink.messages == []


def test_idle_connection_is_closed_after_the_timeout_and_traffic_restarts_it() -> None:
    listener, _, reactor = make_listener(idle_timeout=10, limits=LimitSettings(header_timeout=3600))
    protocol, transport = accept(listener)
    reactor.advance(8)
    protocol.dataReceived(b"\r\n\r\n")
    reactor.advance(8)
    still_open = not transport.disconnecting
    reactor.advance(3)
    assert still_open
    assert transport.disconnecting
    lose(protocol)
    assert listener.counters.connections == 0
    # No timer of the connection is left; the log's period (repeats folded) runs on.
    assert [call.func.__name__ for call in reactor.getDelayedCalls()] == ["_flush"]  # type: ignore[attr-defined]


def test_reply_after_the_connection_closed_is_dropped_and_counted() -> None:
    listener, sink, _ = make_listener()
    protocol, _ = accept(listener)
    protocol.dataReceived(MESSAGE)
    lose(protocol)
    sink.messages[0][1].reply(b"late")
    assert listener.counters.drops == 1


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


def test_messages_before_an_unframeable_one_in_the_same_read_are_delivered() -> None:
    listener, _, _ = make_listener()
    sink = listener.sink = AnsweringSink()
    protocol, transport = accept(listener)
    good = [MESSAGE.replace(b"body", b"%04d" % n) for n in range(5)]
    bad = b"OPTIONS sip:a SIP/2.0\r\nCall-ID: 1\r\n\r\n"
    protocol.dataReceived(b"".join(good) + bad)
    assert [data for data, _ in sink.messages] == good
    assert sink.unframeable == [(bad, 400)]
    assert transport.value() == b"SIP/2.0 400 Answered\r\n\r\n"
    assert transport.disconnecting


def test_a_sink_closing_the_connection_stops_delivery_before_the_framing_error() -> None:
    listener, sink, _ = make_listener()
    protocol, transport = accept(listener)
    protocol.dataReceived(MESSAGE + b"GET / HTTP/1.1\r\n\r\n")
    assert [data for data, _ in sink.messages] == [MESSAGE]
    assert transport.disconnecting
    assert listener.counters.parse_errors == 1
