# mypy: disable-error-code="no-untyped-call"
"""A stream connection offers each whole message to the sink's answer at once, as UDP does.

With the built-in `Responder` behind the `Dispatcher`, a well-formed OPTIONS
on a TCP, TLS, WS or WSS socket is answered without reaching the
application, with the bytes the general path sends and the same counters;
anything else still goes through the general path.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from sipsock.apps import Dispatcher, Responder
from sipsock.seams import MessageSink, Origin
from sipsock.sip import Response, parse
from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport.stream import StreamListener
from sipsock.transport.stream_protocol import SipStreamProtocol
from tests.unit.transport.test_udp_options_shortcut import CountingResponder

PEER = ("192.0.2.5", 40001)


def options(branch: str = "1", transport: str = "TCP") -> bytes:
    return (
        "OPTIONS sip:svc@10.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 192.0.2.5:5070;branch=z9hG4bK-{branch};rport\r\n"
        f"From: <sip:probe@192.0.2.5>;tag={branch}\r\n"
        "To: <sip:svc@10.0.0.1>\r\n"
        f"Call-ID: c{branch}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def connect(
    app: Responder, text: str = "tcp:10.0.0.1:5060"
) -> tuple[StreamListener, SipStreamProtocol, StringTransport]:
    listener = StreamListener(parse_row(7, text), 3, Dispatcher(app), reactor=MemoryReactorClock())
    protocol = SipStreamProtocol(listener)
    transport = StringTransport(peerAddress=IPv4Address("TCP", *PEER))
    protocol.makeConnection(transport)
    return listener, protocol, transport


def general_answer(app: Responder, data: bytes, sdef: SocketDef) -> list[bytes]:
    replies: list[bytes] = []
    Dispatcher(app).message_received(data, Origin(sdef, 3, PEER, replies.append, 1))
    return replies


@pytest.mark.parametrize("text", ["tcp:10.0.0.1:5060", "tls:10.0.0.1:5061", "ws:10.0.0.1:80"])
def test_plain_options_is_answered_without_the_application_as_the_general_path_would(
    text: str,
) -> None:
    app = CountingResponder()
    listener, protocol, transport = connect(app, text)
    first, second = options("1"), options("2")  # the second by the layout the first left
    protocol.dataReceived(first + second)
    assert app.seen == []
    expected = general_answer(app, first, listener.sdef) + general_answer(
        app, second, listener.sdef
    )
    assert transport.value() == b"".join(expected)
    assert b"rport=40001;received=192.0.2.5" in expected[0]
    assert f";transport={listener.sdef.proto}>".encode() in expected[0]


def test_counters_are_those_of_the_general_path() -> None:
    listener, protocol, transport = connect(Responder())
    protocol.dataReceived(options())
    counters = listener.counters.as_dict()
    assert (counters["received"], counters["replies_in"]) == (1, 0)
    assert (counters["sent"], counters["replies_out"]) == (1, 1)
    assert counters["bytes_in"] == len(options())
    assert counters["bytes_out"] == len(transport.value())
    assert counters["parse_errors"] == counters["drops"] == 0


def test_other_and_malformed_requests_still_take_the_general_path() -> None:
    app = CountingResponder()
    listener, protocol, transport = connect(app)
    invite = options().replace(b"OPTIONS", b"INVITE")
    bad = options("3").replace(b"1 OPTIONS", b"1 INVITE")
    protocol.dataReceived(invite)
    assert [getattr(m, "method", None) for m in app.seen] == ["INVITE"]
    assert transport.value().startswith(b"SIP/2.0 501 Not Implemented\r\n")
    transport.clear()
    protocol.dataReceived(bad)
    response = parse(transport.value(), datagram=False)
    assert isinstance(response, Response) and response.code == 400
    assert listener.counters.parse_errors == 1


def test_a_failing_answer_at_once_leaves_the_message_to_the_general_path() -> None:
    app = CountingResponder()
    listener, protocol, transport = connect(app)
    listener.sink = BrokenShortcut(listener.sink)
    protocol.dataReceived(options())
    assert [getattr(m, "method", None) for m in app.seen] == ["OPTIONS"]
    assert transport.value().startswith(b"SIP/2.0 200 OK\r\n")
    assert listener.counters.drops == 0


class BrokenShortcut:
    """A sink whose ``answer_datagram`` raises; everything else is the dispatcher's.

    (A wrapper: the compiled `Dispatcher` takes no method assigned to it.)
    """

    def __init__(self, dispatcher: MessageSink) -> None:
        self._dispatcher = dispatcher

    def answer_datagram(self, data: bytes, peer: tuple[str, int], sdef: SocketDef) -> bytes | None:
        raise RuntimeError("shortcut bug")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dispatcher, name)
