# mypy: disable-error-code="no-untyped-call"
"""StreamConnection: replies, framing errors, the idle and header timeouts, unread output."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from sipsock.config import LimitSettings
from tests.unit.transport.streamkit import (
    BARE_MESSAGE,
    MESSAGE,
    AnsweringSink,
    Backlog,
    accept,
    admit,
    limited,
    lose,
    make_listener,
)


def test_reply_goes_on_the_same_connection() -> None:
    listener, sink, _ = make_listener()
    protocol, transport = accept(listener)
    protocol.dataReceived(MESSAGE)
    sink.messages[0][1].reply(b"SIP/2.0 200 OK\r\n\r\n")
    assert transport.value() == b"SIP/2.0 200 OK\r\n\r\n"
    assert listener.counters.sent == 1


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


# -- the header timeout -----------------------------------------------------------------


def test_connection_without_a_first_message_is_cut_at_the_header_timeout() -> None:
    listener, reactor = limited(header_timeout=2)
    accepted = admit(listener)
    assert accepted is not None
    protocol, transport = accepted
    for second in range(3):
        if second < 2:
            protocol.dataReceived(BARE_MESSAGE[second : second + 1])
        reactor.advance(0.99)
    assert transport.disconnected  # aborted at 2 s, although a byte came every second
    assert listener.counters.limit_header_timeout == 1


def test_a_header_section_started_later_must_finish_in_time() -> None:
    listener, reactor = limited(header_timeout=2)
    accepted = admit(listener)
    assert accepted is not None
    protocol, transport = accepted
    protocol.dataReceived(BARE_MESSAGE)
    reactor.advance(30)
    assert not transport.disconnected  # quiet between messages: the idle timeout's business
    protocol.dataReceived(BARE_MESSAGE[:10])
    reactor.advance(1.9)
    open_at_1_9 = not transport.disconnected
    reactor.advance(0.2)
    assert (open_at_1_9, transport.disconnected) == (True, True)
    assert listener.counters.limit_header_timeout == 1


def test_a_header_finished_in_time_stops_the_timer() -> None:
    listener, reactor = limited(header_timeout=2)
    accepted = admit(listener)
    assert accepted is not None
    protocol, transport = accepted
    protocol.dataReceived(BARE_MESSAGE[:10])
    reactor.advance(1.5)
    protocol.dataReceived(BARE_MESSAGE[10:])
    reactor.advance(10)
    assert not transport.disconnected
    assert listener.counters.limit_header_timeout == 0
    protocol.connectionLost()
    assert [c for c in reactor.getDelayedCalls() if c.active()] == []


# -- output the peer does not read -----------------------------------------------------


def test_peer_that_does_not_read_is_aborted_past_the_pending_send_limit() -> None:
    listener, _ = limited(max_pending_send=65536)
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


def test_traffic_stamps_the_time_instead_of_rescheduling_the_idle_timer() -> None:
    listener, _, reactor = make_listener(idle_timeout=10, limits=LimitSettings(header_timeout=3600))
    protocol, transport = accept(listener)
    connection = next(iter(listener.connections.values()))

    def idle_timers() -> list[tuple[object, float]]:
        return [
            (call, call.getTime())
            for call in reactor.getDelayedCalls()
            if call.func.__name__ == "_idle_timeout"  # type: ignore[attr-defined]
        ]

    timers = idle_timers()
    reactor.advance(4)
    for _ in range(3):
        protocol.dataReceived(BARE_MESSAGE)
        connection.reply(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    # Three messages each way moved no timer: the idle one is the one armed at
    # the accept, due at 10 s, and re-arms itself then for the time left.
    assert idle_timers() == timers == [(timers[0][0], 10.0)]
    reactor.advance(6)
    assert not transport.disconnecting
    reactor.advance(3.9)
    assert not transport.disconnecting
    reactor.advance(0.1)
    assert transport.disconnecting


def test_the_origin_is_built_once_per_connection_and_again_after_an_update() -> None:
    listener, sink, _ = make_listener()
    protocol, _ = accept(listener)
    protocol.dataReceived(BARE_MESSAGE + BARE_MESSAGE)
    first, second = (origin for _, origin in sink.messages)
    assert first is second
    listener.update(dataclasses.replace(listener.sdef, tag="other"))
    protocol.dataReceived(BARE_MESSAGE)
    third = sink.messages[2][1]
    assert third is not first
    assert (first.sdef.tag, third.sdef.tag) == ("core", "other")
    assert (third.peer, third.connection_id) == (first.peer, first.connection_id)


# -- writes on a plain TCP connection ------------------------------------------------------


class _Writes:
    """Records each call a plain TCP transport makes to send (socket or transport queue)."""

    def __init__(self, tcp: Any) -> None:
        self.calls: list[tuple[str, bytes]] = []
        send, write = tcp.writeSomeData, tcp.write

        def send_now(data: bytes) -> Any:
            self.calls.append(("socket", bytes(data)))
            return send(data)

        def queue(data: bytes) -> None:
            self.calls.append(("queue", bytes(data)))
            write(data)

        tcp.writeSomeData, tcp.write = send_now, queue


class _Answering(AnsweringSink):
    """Answers every message with the same bytes."""

    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self.answer = answer

    def message_received(self, data: bytes, origin: Any) -> None:
        super().message_received(data, origin)
        origin.reply(self.answer)


def _tcp_pair() -> tuple[Any, socket.socket, Any]:
    from twisted.internet import reactor
    from twisted.internet.tcp import Server

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    listener, sink, _ = make_listener(limits=LimitSettings(header_timeout=3600))
    protocol = listener.build_protocol()
    tcp = Server(ours, protocol, ("192.0.2.9", 40000), None, 1, reactor)  # type: ignore[arg-type]
    tcp.getPeer = lambda: IPv4Address("TCP", "192.0.2.9", 40000)  # type: ignore[method-assign]
    protocol.makeConnection(tcp)
    return protocol, theirs, (listener, sink, tcp)


def test_the_answers_to_one_read_leave_in_one_piece_straight_to_the_socket() -> None:
    protocol, theirs, (listener, _, tcp) = _tcp_pair()
    try:
        writes = _Writes(tcp)
        answer = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
        listener.sink = _Answering(answer)
        protocol.dataReceived(BARE_MESSAGE + b"\r\n\r\n" + BARE_MESSAGE)
        assert writes.calls == [("socket", answer + b"\r\n" + answer)]
        assert theirs.recv(4096) == answer + b"\r\n" + answer
        # An answer given later (not while a read is delivered) leaves at once too.
        next(iter(listener.connections.values())).reply(answer)
        assert writes.calls[1:] == [("socket", answer)]
        assert listener.counters.sent == 3
    finally:
        tcp.connectionLost(Failure(ConnectionDone()))
        theirs.close()


def test_output_the_kernel_does_not_take_is_queued_behind_and_counts_for_the_limit() -> None:
    _, theirs, (listener, _, tcp) = _tcp_pair()
    try:
        listener.limits = LimitSettings(max_pending_send=1 << 20, header_timeout=3600)
        writes = _Writes(tcp)
        connection = next(iter(listener.connections.values()))
        big = b"x" * (4 << 20)
        connection.write(big)
        (kind, offered), (queued_kind, rest) = writes.calls
        assert (kind, queued_kind, offered) == ("socket", "queue", big)
        assert 0 < len(rest) < len(big) and big.endswith(rest)
        # The peer reads nothing: more than twice the limit is left: cut.
        assert listener.counters.limit_send_buffer == 1
        assert not connection.open
    finally:
        tcp.connectionLost(Failure(ConnectionDone()))
        theirs.close()


def test_nothing_goes_straight_to_the_socket_of_an_aborted_connection() -> None:
    from sipsock.transport.socketwrite import send_now

    _, theirs, (_, _, tcp) = _tcp_pair()
    try:
        writes = _Writes(tcp)
        tcp.abortConnection()
        send_now(tcp, b"late")
        assert writes.calls == [("queue", b"late")]  # dropped there, as Twisted does
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing reached the peer
            theirs.recv(100)
    finally:
        tcp.connectionLost(Failure(ConnectionDone()))
        theirs.close()
