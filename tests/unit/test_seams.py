"""The seam types: socket counters tell requests from replies; a sink declines by default."""

from __future__ import annotations

from sipsock.seams import ListenError, MessageSink, Origin, SocketCounters
from sipsock.sip.errors import SipParseError
from sipsock.sockdef import parse_row

OPTIONS = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
OK = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_received_messages_count_replies_apart() -> None:
    counters = SocketCounters()
    counters.count_in(OPTIONS)
    counters.count_in(OK)
    counters.count_in(OPTIONS)
    assert (counters.received, counters.replies_in) == (3, 1)


def test_sent_messages_count_replies_and_bytes() -> None:
    counters = SocketCounters()
    counters.count_out(OK)
    counters.count_out(OPTIONS)
    assert (counters.sent, counters.replies_out) == (2, 1)
    assert counters.bytes_out == len(OK) + len(OPTIONS)
    assert counters.as_dict()["replies_out"] == 1


class OnlyReceives(MessageSink):
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def message_received(self, data: bytes, origin: Origin) -> None:
        self.messages.append(data)


def test_a_sink_that_subclasses_the_seam_declines_the_optional_calls() -> None:
    sink = OnlyReceives()
    sdef = parse_row(1, "udp:127.0.0.1:5060")
    origin = Origin(sdef, 1, ("127.0.0.1", 5070), lambda data: None)
    assert sink.answer_datagram(OPTIONS, ("127.0.0.1", 5070), sdef) is None
    assert sink.message_unframeable(OPTIONS, SipParseError("too big", status=513), origin) is False
    assert sink.messages == []


def test_listen_error_names_the_socket_and_the_reason() -> None:
    error = ListenError(parse_row(1, "udp:127.0.0.1:5060"), "address already in use")
    assert str(error) == "udp:127.0.0.1:5060: address already in use"
    assert error.reason == "address already in use"
