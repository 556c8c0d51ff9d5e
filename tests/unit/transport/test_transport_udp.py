# mypy: disable-error-code="no-untyped-call"
"""UDP listener: datagrams to the sink with their origin, replies, counters."""

from __future__ import annotations

import socket

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, MemoryReactorClock

from sipsock.sockdef import SocketDef, parse_row
from sipsock.testing import RecordingSink
from sipsock.transport.base import MAX_DATAGRAM_SIZE
from sipsock.transport.udp import UdpListener, open_udp_listener
from tests.net import free_port


def make_listener(sink: RecordingSink, **row: str) -> tuple[UdpListener, FakeDatagramTransport]:
    listener = UdpListener(parse_row(7, "udp:10.0.0.1:5060", **row), 3, sink, reactor=Clock())
    transport = FakeDatagramTransport()
    listener.protocol.makeConnection(transport)
    return listener, transport


def test_open_adopts_the_bound_descriptor_with_a_65535_byte_packet_size() -> None:
    reactor = MemoryReactorClock()
    port = free_port()
    listener = open_udp_listener(
        parse_row(1, f"udp:127.0.0.1:{port}"), 1, RecordingSink(), reactor=reactor
    )
    [(fd, family, protocol, size)] = reactor.adoptedPorts
    assert (family, protocol, size) == (socket.AF_INET, listener.protocol, MAX_DATAGRAM_SIZE)
    # the listener's own copy is closed: the port is free again for the kernel
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))
    assert isinstance(fd, int)


def test_datagram_reaches_sink_with_socket_slot_and_peer() -> None:
    sink = RecordingSink()
    listener, _ = make_listener(sink, tag="edge")
    listener.protocol.datagramReceived(b"OPTIONS x", ("192.0.2.5", 5070))
    [(data, origin)] = sink.messages
    assert data == b"OPTIONS x"
    assert origin.sdef.tag == "edge"
    assert origin.slot == 3
    assert origin.peer == ("192.0.2.5", 5070)
    assert origin.connection_id is None
    assert origin.listener is listener
    assert listener.counters.received == 1
    assert listener.counters.bytes_in == 9


def test_reply_goes_to_the_source_address_and_is_counted() -> None:
    sink = RecordingSink()
    listener, transport = make_listener(sink)
    listener.protocol.datagramReceived(b"OPTIONS x", ("192.0.2.5", 5070))
    sink.messages[0][1].reply(b"SIP/2.0 200 OK")
    assert transport.written == [(b"SIP/2.0 200 OK", ("192.0.2.5", 5070))]
    assert (listener.counters.sent, listener.counters.bytes_out) == (1, 14)


def test_blank_keepalive_datagrams_are_not_messages() -> None:
    sink = RecordingSink()
    listener, _ = make_listener(sink)
    listener.protocol.datagramReceived(b"\r\n\r\n", ("192.0.2.5", 5070))
    assert sink.messages == []
    assert listener.counters.received == 0


def test_sink_error_is_counted_and_the_next_datagram_still_arrives() -> None:
    sink = RecordingSink(fail=True)
    listener, _ = make_listener(sink)
    listener.protocol.datagramReceived(b"A", ("192.0.2.5", 5070))
    listener.protocol.datagramReceived(b"B", ("192.0.2.5", 5070))
    assert [data for data, _ in sink.messages] == [b"A", b"B"]
    assert listener.counters.drops == 2


def test_update_applies_new_tag_to_the_next_message() -> None:
    sink = RecordingSink()
    listener, _ = make_listener(sink, tag="old")
    listener.update(parse_row(7, "udp:10.0.0.1:5060", "pub.example.com", "new"))
    listener.protocol.datagramReceived(b"X", ("192.0.2.5", 5070))
    origin = sink.messages[0][1]
    assert origin.sdef.tag == "new"
    assert origin.sdef.public_host == "pub.example.com"


def test_send_fails_after_stop() -> None:
    sink = RecordingSink()
    listener, transport = make_listener(sink)
    stopped = listener.stop()
    assert stopped.called
    failures: list[object] = []
    listener.send(b"X", ("192.0.2.5", 5070)).addErrback(failures.append)
    assert len(failures) == 1
    assert transport.written == []
    assert listener.counters.drops == 1


class Answering(RecordingSink):
    """Answers datagrams starting with ``PING`` at once (raises for ``BUG``)."""

    def __init__(self) -> None:
        super().__init__()
        self.offered: list[tuple[bytes, tuple[str, int], str]] = []

    def answer_datagram(self, data: bytes, peer: tuple[str, int], sdef: SocketDef) -> bytes | None:
        self.offered.append((data, peer, sdef.socket_text))
        if data.startswith(b"BUG"):
            raise RuntimeError("sink bug")
        return b"SIP/2.0 200 PONG\r\n\r\n" if data.startswith(b"PING") else None


def test_a_datagram_the_sink_answers_at_once_is_sent_back_and_goes_no_further() -> None:
    sink = Answering()
    listener, transport = make_listener(sink)
    listener.protocol.datagramReceived(b"PING sip:x SIP/2.0\r\n\r\n", ("192.0.2.5", 5070))
    assert sink.offered == [
        (b"PING sip:x SIP/2.0\r\n\r\n", ("192.0.2.5", 5070), "udp:10.0.0.1:5060")
    ]
    assert transport.written == [(b"SIP/2.0 200 PONG\r\n\r\n", ("192.0.2.5", 5070))]
    assert sink.messages == []
    counters = listener.counters
    assert (counters.received, counters.replies_in) == (1, 0)
    assert (counters.sent, counters.replies_out) == (1, 1)


def test_a_declined_or_failed_datagram_reaches_message_received() -> None:
    sink = Answering()
    listener, transport = make_listener(sink)
    listener.protocol.datagramReceived(b"INVITE x", ("192.0.2.5", 5070))
    listener.protocol.datagramReceived(b"BUG x", ("192.0.2.5", 5070))
    assert [data for data, _ in sink.messages] == [b"INVITE x", b"BUG x"]
    assert transport.written == []
    assert (listener.counters.received, listener.counters.drops) == (2, 0)
