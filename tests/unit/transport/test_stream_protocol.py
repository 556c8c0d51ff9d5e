# mypy: disable-error-code="no-untyped-call"
"""SipStreamProtocol: messages cut out of a TCP/TLS byte stream and handed on."""

from __future__ import annotations

from tests.unit.transport.streamkit import MESSAGE, AnsweringSink, accept, make_listener


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
