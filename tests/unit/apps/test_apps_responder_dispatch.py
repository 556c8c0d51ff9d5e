# mypy: disable-error-code="no-untyped-call"
"""Dispatcher and Responder: bytes in, responses out, through a fake origin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sipsock.apps import (
    ApplicationError,
    Dispatcher,
    ISipApplication,
    MessageContext,
    NoSockets,
    Responder,
)
from sipsock.sip import FramingKind, Request, Response, SipFramingError, parse
from sipsock.sockdef import SocketDef, parse_row
from sipsock.testing import FakeDirectory, FakeListener
from sipsock.transport import Origin

UDP = parse_row(1, "udp:10.0.0.1:5060")
PEER = ("192.0.2.7", 5099)


def request(method: str = "OPTIONS", *, extra: str = "", drop: str = "", cseq: str = "") -> bytes:
    lines = [
        f"{method} sip:svc@10.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-1;rport",
        "From: <sip:a@example.com>;tag=abc",
        "To: <sip:svc@10.0.0.1>",
        "Call-ID: call-1@example.com",
        f"CSeq: {cseq or '1 ' + method}",
        "Max-Forwards: 70",
    ]
    lines = [line for line in lines if not (drop and line.startswith(drop))]
    return ("\r\n".join(lines) + "\r\n" + extra + "Content-Length: 0\r\n\r\n").encode()


@implementer(ISipApplication)
class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.seen: list[tuple[Request | Response, MessageContext]] = []
        self.fail = fail

    def message_received(self, message: Request | Response, context: MessageContext) -> None:
        self.seen.append((message, context))
        if self.fail:
            raise RuntimeError("bug")


def deliver(
    app: Any, data: bytes, sdef: SocketDef = UDP, directory: Any = None
) -> tuple[list[bytes], FakeListener]:
    replies: list[bytes] = []
    listener = FakeListener(sdef, 1)
    origin = Origin(sdef, 1, PEER, replies.append, listener=listener)
    Dispatcher(app, directory).message_received(data, origin)
    return replies, listener


def answer(replies: list[bytes]) -> Response:
    [data] = replies
    message = parse(data)
    assert isinstance(message, Response)
    return message


# -- Responder -----------------------------------------------------------------


def test_responder_provides_the_interface() -> None:
    assert verifyObject(ISipApplication, Responder())


def test_options_gets_200_with_capabilities_and_contact() -> None:
    replies, _ = deliver(Responder(), request())
    response = answer(replies)
    assert (response.code, response.reason) == (200, "OK")
    assert response.get("allow") == "OPTIONS"
    assert response.get("accept") == "application/sdp"
    assert response.get("supported") == ""
    assert response.get("server") == "sipsock/0.1.0"
    assert response.get("contact") == "<sip:10.0.0.1:5060>"
    assert "tag=" in (response.get("to") or "")
    assert response.call_id == "call-1@example.com"
    assert response.top_via.param("received") == "192.0.2.7"
    assert response.top_via.param("rport") == "5099"


def test_options_contact_uses_the_advertised_address_and_transport() -> None:
    sdef = parse_row(2, "tcp:10.0.0.1:5060", advertised="sip.example.com:5080")
    replies, _ = deliver(Responder(), request(), sdef=sdef)
    assert answer(replies).get("contact") == "<sip:sip.example.com:5080;transport=tcp>"


def test_retransmission_gets_the_same_to_tag() -> None:
    responder = Responder()
    first = answer(deliver(responder, request())[0]).get("to")
    second = answer(deliver(responder, request())[0]).get("to")
    assert first == second


def test_the_to_tag_is_made_only_for_a_request_whose_to_has_none() -> None:
    made: list[str] = []

    class Counting(Responder):
        def to_tag(self, request: Request) -> str:
            made.append(request.method)
            return super().to_tag(request)

    responder = Counting()
    bye = request("BYE").replace(b"To: <sip:svc@10.0.0.1>", b"To: <sip:svc@10.0.0.1>;tag=t9")
    assert answer(deliver(responder, bye)[0]).get("to") == "<sip:svc@10.0.0.1>;tag=t9"
    assert made == []
    tagged = answer(deliver(responder, request("INVITE"))[0]).get("to")
    assert tagged == f"<sip:svc@10.0.0.1>;tag={Responder.to_tag(responder, parse_request())}"
    assert made == ["INVITE"]


def parse_request(method: str = "INVITE") -> Request:
    message = parse(request(method))
    assert isinstance(message, Request)
    return message


def test_other_requests_get_the_configured_status() -> None:
    assert answer(deliver(Responder(), request("INVITE"))[0]).code == 501
    custom = answer(deliver(Responder(403, "Forbidden"), request("REGISTER"))[0])
    assert (custom.code, custom.reason) == (403, "Forbidden")


def test_ack_and_responses_are_absorbed() -> None:
    assert deliver(Responder(), request("ACK"))[0] == []
    response = b"SIP/2.0 200 OK\r\n" + request().split(b"\r\n", 1)[1]
    assert deliver(Responder(), response)[0] == []


def test_responder_rejects_a_non_error_status() -> None:
    with pytest.raises(ValueError, match="300-699"):
        Responder(status=200)


# -- Dispatcher ----------------------------------------------------------------


def test_request_reaches_the_app_with_received_and_the_socket_facts() -> None:
    app = Recorder()
    deliver(app, request())
    [(message, context)] = app.seen
    assert isinstance(message, Request)
    assert message.top_via.param("received") == "192.0.2.7"
    assert context.socket == UDP
    assert (context.slot, context.peer) == (1, PEER)


def test_unreadable_request_gets_400_with_the_reason() -> None:
    app = Recorder()
    replies, listener = deliver(app, request(cseq="1 INVITE"))
    response = answer(replies)
    assert response.code == 400
    assert "does not match" in response.reason
    assert app.seen == []
    assert listener.counters.parse_errors == 1


def test_bad_content_length_request_still_gets_400() -> None:
    data = request(extra="Content-Length: 99\r\n")
    replies, _ = deliver(Recorder(), data)
    response = answer(replies)
    assert response.code == 400
    assert "Content-Length" in response.reason


def unframeable(data: bytes, error: SipFramingError) -> tuple[bool, list[bytes]]:
    replies: list[bytes] = []
    origin = Origin(parse_row(3, "tcp:10.0.0.1:5060"), 3, ("192.0.2.4", 40000), replies.append)
    answered = Dispatcher(Recorder()).message_unframeable(data, error, origin)
    return answered, replies


def test_a_request_too_large_for_the_stream_gets_513_naming_the_limit() -> None:
    answered, replies = unframeable(
        request(extra="Content-Length: 90000\r\n").replace(b"Content-Length: 0\r\n", b""),
        SipFramingError(
            "message of 90123 bytes above 65535", kind=FramingKind.OVERSIZE_MESSAGE, status=513
        ),
    )
    response = answer(replies)
    assert answered
    assert (response.code, response.reason) == (
        513,
        "Message Too Large (message of 90123 bytes above 65535)",
    )
    assert "received=192.0.2.4" in (response.get("via") or "")


def test_a_stream_request_without_content_length_gets_400() -> None:
    answered, replies = unframeable(
        request().replace(b"Content-Length: 0\r\n", b""),
        SipFramingError(
            "no Content-Length on a stream transport",
            kind=FramingKind.NO_CONTENT_LENGTH,
            status=400,
        ),
    )
    assert answered
    assert answer(replies).code == 400


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (request(drop="Call-ID"), 513),
        (request("ACK", cseq="1 INVITE"), 513),
        (b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n", 513),
        (request(), None),
    ],
)
def test_unframeable_messages_that_cannot_be_answered_get_nothing(
    data: bytes, status: int | None
) -> None:
    assert unframeable(
        data, SipFramingError("message above", kind=FramingKind.OVERSIZE_MESSAGE, status=status)
    ) == (False, [])


@pytest.mark.parametrize(
    "data",
    [
        request(drop="Call-ID"),
        request(drop="Via"),
        request("ACK", cseq="1 INVITE"),
        b"garbage without structure\r\n\r\n",
        b"SIP/2.0 200 OK\r\nCSeq: broken\r\n\r\n",
    ],
)
def test_unanswerable_message_is_dropped_and_counted(data: bytes) -> None:
    app = Recorder()
    replies, listener = deliver(app, data)
    assert replies == []
    assert app.seen == []
    assert listener.counters.parse_errors == 1


def test_application_error_is_counted_and_does_not_escape() -> None:
    replies, listener = deliver(Recorder(fail=True), request())
    assert replies == []
    assert listener.counters.drops == 1


def test_context_send_picks_the_socket_by_tag_slot_or_the_receiving_one() -> None:
    app = Recorder()
    edge = FakeListener(parse_row(3, "udp:10.0.0.3:5060", tag="edge"), 1)
    edge.slot = 3
    _, receiving = deliver(app, request(), directory=FakeDirectory(edge))
    context = app.seen[0][1]
    message = app.seen[0][0]
    context.send(message, ("198.51.100.1", 5060), via_socket="edge")
    context.send(message, ("198.51.100.2", 5060), via_socket=3)
    context.send(message, ("198.51.100.3", 5060))
    assert [peer for _, peer in edge.sent] == [("198.51.100.1", 5060), ("198.51.100.2", 5060)]
    assert [peer for _, peer in receiving.sent] == [("198.51.100.3", 5060)]
    failures: list[Failure] = []
    context.send(message, ("198.51.100.4", 5060), via_socket="nope").addErrback(failures.append)
    assert failures[0].check(ApplicationError)
    assert "via_socket 'nope'" in str(failures[0].value)


def test_no_sockets_directory_finds_nothing() -> None:
    empty = NoSockets()
    assert (empty.by_tag("x"), empty.by_slot(1), empty.first("udp")) == (None, None, None)


@pytest.mark.parametrize("socket", ["ws:10.0.0.1:8080", "wss:10.0.0.1:8443", "udp:10.0.0.1"])
def test_content_length_is_optional_on_message_transports(socket: str) -> None:
    """RFC 7118 5.1 / RFC 3261 18.3: one message per WebSocket message or datagram."""
    data = request().replace(b"Content-Length: 0\r\n", b"")
    replies, _ = deliver(Responder(), data, sdef=parse_row(3, socket))
    assert answer(replies).code == 200


def test_content_length_is_required_on_tcp() -> None:
    data = request().replace(b"Content-Length: 0\r\n", b"")
    replies, _ = deliver(Responder(), data, sdef=parse_row(3, "tcp:10.0.0.1"))
    assert answer(replies).code == 400


# -- log lines about unreadable messages ------------------------------------------


def test_a_garbage_flood_logs_one_line_then_one_summary_per_period() -> None:
    from twisted.internet.task import Clock
    from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
    from zope.interface import provider

    clock = Clock()
    dispatcher = Dispatcher(Recorder(), clock=clock, log_interval=60.0)
    listener = FakeListener(UDP, 1)
    replies: list[bytes] = []
    origin = Origin(UDP, 1, PEER, replies.append, listener=listener)
    lines: list[str] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        if event.get("log_namespace", "").startswith("sipsock.apps.dispatch"):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        for _ in range(1000):
            dispatcher.message_received(b"garbage without structure\r\n\r\n", origin)
            dispatcher.message_received(request(cseq="1 INVITE"), origin)
        assert len(lines) == 1 and "dropped" in lines[0], lines
        clock.advance(60.0)
        assert len(lines) == 2 and "1999 more unreadable messages" in lines[1], lines
        clock.advance(60.0)  # a quiet period: nothing more, and the next one is logged again
        dispatcher.message_received(request(cseq="1 INVITE"), origin)
        assert len(lines) == 3 and "answered 400" in lines[2], lines
    finally:
        globalLogPublisher.removeObserver(observe)
    assert listener.counters.parse_errors == 2001
    assert len(replies) == 1001  # every answerable one was still answered


def test_a_huge_bad_value_is_cut_in_the_log_line() -> None:
    from sipsock.apps.dispatch import MAX_LOGGED_REASON, loggable_reason

    reason = "bad CSeq " + "9" * 10_000
    cut = loggable_reason(reason)
    assert len(cut) < MAX_LOGGED_REASON + 40
    assert cut.startswith(reason[:MAX_LOGGED_REASON]) and "10009 characters" in cut
    assert loggable_reason("short") == "short"


# -- Require (RFC 3261 8.2.2.3, RFC 4475 bext01) ----------------------------------


def test_rfc4475_bext01_gets_420_listing_the_unsupported_extensions() -> None:
    data = (Path(__file__).parents[2] / "data" / "rfc4475" / "bext01.dat").read_bytes()
    response = answer(deliver(Responder(), data)[0])
    assert (response.code, response.reason) == (420, "Bad Extension")
    assert response.get("unsupported") == "nothingSupportsThis, nothingSupportsThisEither"
    assert response.call_id == "bext01.0ha0isndaksdj"


@pytest.mark.parametrize("method", ["OPTIONS", "INVITE", "REGISTER"])
def test_require_of_an_unsupported_extension_gets_420(method: str) -> None:
    data = request(method, extra="Require: 100rel\r\nRequire: timer, 100REL\r\n")
    response = answer(deliver(Responder(403, "Forbidden", supported=["timer"]), data)[0])
    assert response.code == 420
    assert response.get("unsupported") == "100rel"


@pytest.mark.parametrize("status", [405, 501])
def test_a_refused_method_is_refused_before_its_require_is_read(status: int) -> None:
    data = request("INVITE", extra="Require: 100rel\r\n")
    assert answer(deliver(Responder(status, "No"), data)[0]).code == status
    assert answer(deliver(Responder(status, "No"), request(extra="Require: x\r\n"))[0]).code == 420


def test_require_of_supported_extensions_is_served() -> None:
    data = request(extra="Require: timer\r\n")
    assert answer(deliver(Responder(supported=["Timer"]), data)[0]).code == 200


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_ack_and_cancel_are_never_answered_420(method: str) -> None:
    replies, _ = deliver(Responder(403, "F"), request(method, extra="Require: nothing\r\n"))
    assert [parse(reply).code for reply in replies] == ([] if method == "ACK" else [403])  # type: ignore[union-attr]


def test_a_malformed_option_tag_gets_400() -> None:
    response = answer(deliver(Responder(), request(extra="Require: a b\r\n"))[0])
    assert response.code == 400
    assert response.get("unsupported") is None
