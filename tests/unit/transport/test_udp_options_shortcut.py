# mypy: disable-error-code="no-untyped-call"
"""A UDP listener answers plain OPTIONS itself, byte for byte as the application would.

The listener asks its sink (the `Dispatcher`) for the application's
`OptionsReply`; with the built-in `Responder` a well-formed OPTIONS is
answered without reaching the application, counted exactly as before, and
anything else still goes through the general path.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from zope.interface import implementer

from sipsock.apps import Dispatcher, ISipApplication, MessageContext, Responder
from sipsock.sip import Request, Response, parse
from sipsock.sip.options_answer import OptionsReply
from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport import Origin
from sipsock.transport.udp import UdpListener

PEER = ("192.0.2.5", 5070)
OPTIONS = (
    b"OPTIONS sip:svc@10.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.5:5070;branch=z9hG4bK-1;rport\r\n"
    b"From: <sip:probe@192.0.2.5>;tag=1\r\n"
    b"To: <sip:svc@10.0.0.1>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class CountingResponder(Responder):
    """A Responder that records the messages that reach it (its own options_reply)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Request | Response] = []

    def message_received(self, message: Request | Response, context: MessageContext) -> None:
        self.seen.append(message)
        super().message_received(message, context)

    def options_reply(self, sdef: SocketDef) -> OptionsReply | None:
        return Responder.options_reply(_Plain(self), sdef)


class _Plain(Responder):
    """A view of a `CountingResponder` as a plain Responder (same salt and headers)."""

    def __init__(self, other: Responder) -> None:
        self.__dict__.update(other.__dict__)


def listen(app: Any, **row: str) -> tuple[UdpListener, FakeDatagramTransport, Dispatcher]:
    dispatcher = Dispatcher(app)
    listener = UdpListener(parse_row(7, "udp:10.0.0.1:5060", **row), 3, dispatcher, reactor=Clock())
    transport = FakeDatagramTransport()
    listener.protocol.makeConnection(transport)
    return listener, transport, dispatcher


def general_answer(app: Responder, data: bytes, sdef: SocketDef) -> list[bytes]:
    replies: list[bytes] = []
    Dispatcher(app).message_received(data, Origin(sdef, 3, PEER, replies.append))
    return replies


def test_plain_options_is_answered_without_reaching_the_application() -> None:
    app = CountingResponder()
    listener, transport, _ = listen(app)
    listener.protocol.datagramReceived(OPTIONS, PEER)
    assert app.seen == []
    [(data, peer)] = transport.written
    assert peer == PEER
    assert [data] == general_answer(app, OPTIONS, listener.sdef)
    assert b"rport=5070;received=192.0.2.5" in data


def test_counters_are_those_of_the_general_path() -> None:
    listener, transport, dispatcher = listen(Responder())
    listener.protocol.datagramReceived(OPTIONS, PEER)
    [(data, _)] = transport.written
    counters = listener.counters.as_dict()
    assert counters["received"] == 1
    assert counters["replies_in"] == 0
    assert counters["sent"] == 1
    assert counters["replies_out"] == 1
    assert counters["bytes_in"] == len(OPTIONS)
    assert counters["bytes_out"] == len(data)
    assert counters["parse_errors"] == counters["drops"] == 0
    assert dispatcher.parse_errors == dispatcher.app_errors == 0


def test_malformed_options_still_gets_400_and_is_counted() -> None:
    app = CountingResponder()
    listener, transport, dispatcher = listen(app)
    bad = OPTIONS.replace(b"1 OPTIONS", b"1 INVITE")
    listener.protocol.datagramReceived(bad, PEER)
    [(data, _)] = transport.written
    response = parse(data)
    assert isinstance(response, Response)
    assert response.code == 400
    assert listener.counters.parse_errors == 1
    assert dispatcher.parse_errors == 1
    assert app.seen == []


def test_other_requests_still_reach_the_application() -> None:
    app = CountingResponder()
    listener, transport, _ = listen(app)
    invite = OPTIONS.replace(b"OPTIONS sip", b"INVITE sip").replace(b"1 OPTIONS", b"1 INVITE")
    listener.protocol.datagramReceived(invite, PEER)
    assert [m.method for m in app.seen if isinstance(m, Request)] == ["INVITE"]
    [(data, _)] = transport.written
    assert data.startswith(b"SIP/2.0 501 Not Implemented\r\n")


def test_update_in_place_changes_the_contact_of_the_next_answer() -> None:
    listener, transport, _ = listen(Responder())
    listener.protocol.datagramReceived(OPTIONS, PEER)
    listener.update(parse_row(7, "udp:10.0.0.1:5060", "pub.example.com:5099"))
    listener.protocol.datagramReceived(OPTIONS, PEER)
    first, second = (parse(data) for data, _ in transport.written)
    assert first.get("Contact") == "<sip:10.0.0.1:5060>"
    assert second.get("Contact") == "<sip:pub.example.com:5099>"


@implementer(ISipApplication)
class Echo:
    """An application that answers every OPTIONS itself, its own way."""

    def message_received(self, message: Request | Response, context: MessageContext) -> None:
        assert isinstance(message, Request)
        context.reply(Response(299, "Mine"))


def test_application_without_the_shortcut_sees_every_options() -> None:
    listener, transport, dispatcher = listen(Echo())
    assert dispatcher.options_reply(listener.sdef) is None
    listener.protocol.datagramReceived(OPTIONS, PEER)
    [(data, _)] = transport.written
    assert data.startswith(b"SIP/2.0 299 Mine\r\n")


class Raising(Responder):
    def options_reply(self, sdef: SocketDef) -> OptionsReply | None:
        raise RuntimeError("bug")


def test_a_failing_options_reply_leaves_every_options_to_the_application() -> None:
    listener, transport, _ = listen(Raising())
    listener.protocol.datagramReceived(OPTIONS, PEER)
    listener.protocol.datagramReceived(OPTIONS, PEER)
    assert len(transport.written) == 2
    assert listener.counters.drops == 0


class SendFails(FakeDatagramTransport):
    def write(self, packet: bytes, addr: Any = None) -> None:
        raise OSError(105, "No buffer space available")


def test_a_refused_send_is_logged_and_counted_as_a_drop() -> None:
    dispatcher = Dispatcher(Responder())
    listener = UdpListener(parse_row(7, "udp:10.0.0.1:5060"), 3, dispatcher, reactor=Clock())
    listener.protocol.makeConnection(SendFails())
    listener.protocol.datagramReceived(OPTIONS, PEER)
    assert (listener.counters.received, listener.counters.sent) == (1, 0)
    assert listener.counters.drops == 1


def test_options_with_require_is_never_answered_200_by_the_shortcut() -> None:
    app = CountingResponder()
    listener, transport, _ = listen(app)
    listener.protocol.datagramReceived(OPTIONS, PEER)  # its layout is recorded
    required = OPTIONS.replace(b"\r\n\r\n", b"\r\nRequire: nothingSupportsThis\r\n\r\n", 1)
    listener.protocol.datagramReceived(required, PEER)
    listener.protocol.datagramReceived(required, PEER)  # and again, once seen
    answers = [parse(data) for data, _ in transport.written]
    assert [response.code for response in answers] == [200, 420, 420]  # type: ignore[union-attr]
    assert len(app.seen) == 2
