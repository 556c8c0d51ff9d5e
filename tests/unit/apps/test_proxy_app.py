# mypy: disable-error-code="no-untyped-call"
"""StatelessProxy end to end through the Dispatcher, with recording sockets."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from sipsock.apps import Dispatcher, ISipApplication, RouteError, StatelessProxy
from sipsock.apps.interface import MessageContext
from sipsock.apps.proxy import RejectedError
from sipsock.apps.proxyrules import proxy_branch
from sipsock.apps.resolver import ResolveError
from sipsock.sip import Request, Response, parse, parse_via
from sipsock.sockdef import parse_row
from sipsock.testing import FakeDirectory, FakeListener
from sipsock.transport import Origin

SECRET = "unit"
UAC = ("192.0.2.1", 5060)
UAS = ("127.0.0.1", 5080)
A = parse_row(1, "udp:127.0.0.1:5070", advertised="192.0.2.10:5070", tag="a")
B = parse_row(2, "tcp:127.0.0.1:5071", advertised="198.51.100.7:5999", tag="b")
U = parse_row(3, "udp:127.0.0.1:5072", tag="u")
V6 = parse_row(4, "udp:[::1]:5073", tag="v6")


class Resolver:
    """Answers from a table; records what it was asked."""

    def __init__(self, **answers: list[str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def resolve(self, host: str) -> Deferred[list[str]]:
        self.asked.append(host)
        if host not in self.answers:
            return defer.fail(ResolveError(host, "Name or service not known"))
        return defer.succeed(self.answers[host])


class World:
    """A proxy with sockets a (UDP), b (TCP), u (UDP) and v6 (UDP over IPv6)."""

    def __init__(self, routes: list[dict[str, Any]], **options: Any) -> None:
        self.a, self.b, self.u, self.v6 = (
            FakeListener(A, 1),
            FakeListener(B, 2),
            FakeListener(U, 3),
            FakeListener(V6, 4),
        )
        self.sockets = FakeDirectory(self.a, self.b, self.u, self.v6)
        self.resolver = options.pop("resolver", Resolver())
        proxy_class = options.pop("proxy_class", StatelessProxy)
        self.proxy = proxy_class(
            routes,
            secret=SECRET,
            resolver=self.resolver,
            reactor=MemoryReactorClock(),
            **options,
        )
        self.dispatcher = Dispatcher(self.proxy, self.sockets)
        self.replies: list[bytes] = []

    def receive(
        self,
        data: bytes,
        on: FakeListener,
        peer: tuple[str, int] = UAC,
        connection: int | None = None,
    ) -> None:
        origin = Origin(
            on.sdef,
            on.slot,
            peer,
            self.replies.append,
            connection_id=connection,
            listener=on,
        )
        self.dispatcher.message_received(data, origin)

    def reply(self) -> Response:
        [data] = self.replies
        message = parse(data)
        assert isinstance(message, Response)
        return message


TO_UAS = {
    "in_tag": "a",
    "destination": "sip:127.0.0.1:5080;transport=tcp",
    "out_tag": "b",
}


def invite(
    *, method: str = "INVITE", extra: str = "", max_forwards: str = "70", branch: str = "abc"
) -> bytes:
    lines = [
        f"{method} sip:svc@192.0.2.10:5070 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{branch};rport",
        "From: <sip:alice@192.0.2.1>;tag=f1",
        "To: <sip:svc@192.0.2.10>",
        "Call-ID: call-1@192.0.2.1",
        f"CSeq: 1 {method}",
        "Contact: <sip:alice@192.0.2.1:5060>",
    ]
    if max_forwards:
        lines.append(f"Max-Forwards: {max_forwards}")
    return ("\r\n".join(lines) + "\r\n" + extra + "Content-Length: 0\r\n\r\n").encode()


def response_to(request: Request, code: int = 200, reason: str = "OK") -> bytes:
    """What a UAS answers: every Via and Record-Route copied, a To tag added."""
    lines = [f"SIP/2.0 {code} {reason}"]
    for name, value in request.headers:
        if name.lower() in ("via", "record-route", "from", "call-id", "cseq"):
            lines.append(f"{name}: {value}")
        elif name.lower() == "to":
            lines.append(f"{name}: {value};tag=uas1")
    lines.append("Contact: <sip:uas@127.0.0.1:5080;transport=tcp>")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def forwarded(sock: FakeListener, index: int = -1) -> Request:
    message = sock.message(index)
    assert isinstance(message, Request)
    return message


# --- requests -----------------------------------------------------------------------------


def test_the_proxy_provides_the_interface() -> None:
    assert verifyObject(ISipApplication, World([]).proxy)


def test_invite_goes_out_of_the_route_socket_with_via_record_route_and_max_forwards() -> None:
    world = World([TO_UAS])
    world.receive(invite(), world.a)
    assert world.replies == []
    [(_, destination)] = world.b.sent
    assert destination == UAS
    request = forwarded(world.b)
    assert request.uri == "sip:svc@192.0.2.10:5070"
    vias = request.get_all("via")
    assert len(vias) == 2
    top = parse_via(vias[0])
    assert (top.transport, top.host, top.port) == ("TCP", "198.51.100.7", 5999)
    assert top.param("sipsock-in") == "s1"
    assert parse_via(vias[1]).received == "192.0.2.1"
    assert parse_via(vias[1]).rport == 5060
    assert request.get("max-forwards") == "69"
    assert request.get_all("record-route") == [
        "<sip:198.51.100.7:5999;transport=tcp;lr;sipsock=s2>",
        "<sip:192.0.2.10:5070;lr;sipsock=s1>",
    ]
    assert world.proxy.counters.requests == 1


def test_a_retransmission_gets_the_same_branch_and_a_cancel_too() -> None:
    world = World([TO_UAS])
    world.receive(invite(), world.a)
    world.receive(invite(), world.a)
    world.receive(invite(method="CANCEL"), world.a)
    branches = [forwarded(world.b, i).top_via.branch for i in range(3)]
    assert branches[0] == branches[1] == branches[2]
    # The CANCEL gets no Record-Route.
    assert forwarded(world.b).get_all("record-route") == []


def test_one_record_route_when_both_legs_use_the_same_socket() -> None:
    world = World([{"destination": "sip:127.0.0.1:5080"}])
    world.receive(invite(), world.a)
    [(_, destination)] = world.a.sent
    assert destination == UAS
    assert forwarded(world.a).get_all("record-route") == ["<sip:192.0.2.10:5070;lr;sipsock=s1>"]


def test_record_route_can_be_turned_off() -> None:
    world = World([TO_UAS], record_route=False)
    world.receive(invite(), world.a)
    assert forwarded(world.b).get_all("record-route") == []


def test_max_forwards_absent_becomes_70() -> None:
    world = World([TO_UAS])
    world.receive(invite(max_forwards=""), world.a)
    assert forwarded(world.b).get("max-forwards") == "70"


class Gatekeeper(StatelessProxy):
    """An operator's proxy written in Python over the built-in one (compiled or not)."""

    def plan(self, request: Request, context: MessageContext) -> Any:
        if "mallory" in (request.get("from") or ""):
            raise RejectedError(403, "caller barred")
        return super().plan(request, context)


def test_a_subclass_in_python_changes_what_the_proxy_does() -> None:
    world = World([TO_UAS], proxy_class=Gatekeeper)
    assert verifyObject(ISipApplication, world.proxy)
    world.receive(invite(), world.a)
    assert forwarded(world.b).method == "INVITE"
    world.receive(invite(branch="m1").replace(b"alice", b"mallory"), world.a)
    assert (world.reply().code, world.reply().reason) == (403, "Forbidden (caller barred)")
    assert len(world.b.sent) == 1
    assert world.proxy.counters.answered == {403: 1}


def test_max_forwards_zero_is_answered_483() -> None:
    world = World([TO_UAS])
    world.receive(invite(max_forwards="0"), world.a)
    assert world.b.sent == []
    reply = world.reply()
    assert (reply.code, reply.reason) == (483, "Too Many Hops")
    assert ";tag=" in (reply.get("to") or "")


def test_a_request_that_comes_back_is_answered_482() -> None:
    world = World([TO_UAS])
    world.receive(invite(), world.a)
    looped = forwarded(world.b)
    world.receive(bytes(looped), world.b, peer=("127.0.0.1", 40000))
    reply = world.reply()
    assert (reply.code, reply.reason) == (482, "Loop Detected")
    assert len(world.b.sent) == 1


def test_no_matching_route_is_answered_404() -> None:
    world = World([{"in_tag": "zz", "destination": "request-uri"}])
    world.receive(invite(), world.a)
    reply = world.reply()
    assert (reply.code, reply.reason) == (404, "Not Found (no route)")


def test_an_ack_is_never_answered() -> None:
    world = World([])
    world.receive(invite(method="ACK"), world.a)
    assert world.replies == []
    assert world.proxy.counters.answered == {404: 1}


def test_an_out_tag_with_no_open_socket_is_answered_503_naming_the_tag() -> None:
    world = World([{**TO_UAS, "out_tag": "gone"}])
    world.receive(invite(), world.a)
    reply = world.reply()
    assert reply.code == 503
    assert reply.reason == "Service Unavailable (socket tag gone is not open)"


def test_a_transport_the_out_socket_does_not_speak_is_answered_503() -> None:
    world = World([{**TO_UAS, "destination": "sip:127.0.0.1:5080;transport=udp"}])
    world.receive(invite(), world.a)
    assert "socket tag b is tcp" in world.reply().reason


def test_without_transport_the_out_socket_decides_and_the_port_defaults() -> None:
    world = World([{**TO_UAS, "destination": "sip:127.0.0.1"}])
    world.receive(invite(), world.a)
    [(_, destination)] = world.b.sent
    assert destination == ("127.0.0.1", 5060)


def test_without_out_tag_the_receiving_socket_then_the_first_of_the_protocol() -> None:
    world = World([{"destination": "sip:127.0.0.1:5080"}])
    world.receive(invite(), world.u)
    assert [d for _, d in world.u.sent] == [UAS]
    world = World([{"destination": "sip:127.0.0.1:5080;transport=tcp"}])
    world.receive(invite(), world.a)
    assert [d for _, d in world.b.sent] == [UAS]


def test_a_failed_send_is_answered_503() -> None:
    world = World([TO_UAS])
    world.b.fail = ConnectionRefusedError("Connection was refused by other side")
    world.receive(invite(), world.a)
    reply = world.reply()
    assert reply.code == 503
    assert "cannot reach sip:127.0.0.1:5080;transport=tcp" in reply.reason
    assert world.proxy.counters.failed_sends == 1


def test_host_names_are_resolved_in_the_family_of_the_out_socket() -> None:
    resolver = Resolver(**{"uas.example": ["2001:db8::5", "10.0.0.5"]})
    world = World(
        [
            {"in_tag": "a", "destination": "sip:uas.example:5080", "out_tag": "u"},
            {"in_tag": "u", "destination": "sip:uas.example:5080", "out_tag": "v6"},
        ],
        resolver=resolver,
    )
    world.receive(invite(), world.a)
    world.receive(invite(branch="two"), world.u)
    assert [d for _, d in world.u.sent] == [("10.0.0.5", 5080)]
    assert [d for _, d in world.v6.sent] == [("2001:db8::5", 5080)]
    assert resolver.asked == ["uas.example", "uas.example"]


def test_an_unresolvable_destination_is_answered_503() -> None:
    world = World([{"destination": "sip:nowhere.invalid"}])
    world.receive(invite(), world.a)
    reply = world.reply()
    assert reply.code == 503
    assert "nowhere.invalid: Name or service not known" in reply.reason


def test_the_request_uri_as_destination() -> None:
    world = World([{"destination": "request-uri", "out_tag": "u"}])
    world.receive(invite(), world.a)
    assert [d for _, d in world.u.sent] == [("192.0.2.10", 5070)]


def test_routes_given_as_tables_are_checked() -> None:
    with pytest.raises(RouteError, match="1: out_tag"):
        StatelessProxy([{"destination": "request-uri", "out_tag": "no good"}])


# --- in-dialog requests (Record-Route) ---------------------------------------------------------


def in_dialog(method: str, routes: list[str], uri: str) -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-dlg;rport",
        "From: <sip:alice@192.0.2.1>;tag=f1",
        "To: <sip:svc@192.0.2.10>;tag=uas1",
        "Call-ID: call-1@192.0.2.1",
        f"CSeq: 2 {method}",
        "Max-Forwards: 70",
        *(f"Route: {route}" for route in routes),
    ]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def test_in_dialog_request_follows_the_record_route_to_the_contact() -> None:
    world = World([])  # no route at all: the route set decides
    recorded = [
        "<sip:198.51.100.7:5999;transport=tcp;lr;sipsock=s2>",
        "<sip:192.0.2.10:5070;lr;sipsock=s1>",
    ]
    # From the UAC: the route set reversed, the Request-URI the UAS's Contact.
    world.receive(
        in_dialog("BYE", list(reversed(recorded)), "sip:uas@127.0.0.1:5080;transport=tcp"),
        world.a,
    )
    [(_, destination)] = world.b.sent
    assert destination == UAS
    bye = forwarded(world.b)
    assert bye.get_all("route") == []
    assert bye.get_all("record-route") == []
    # From the UAS: the route set in order, back out of socket a to the UAC's Contact.
    world.receive(
        in_dialog("BYE", recorded, "sip:alice@192.0.2.1:5060"), world.b, peer=("127.0.0.1", 5080)
    )
    [(_, destination)] = world.a.sent
    assert destination == UAC


def test_a_route_left_after_ours_is_the_next_hop() -> None:
    world = World([])
    routes = ["<sip:192.0.2.10:5070;lr;sipsock=s1>", "<sip:10.0.0.7:5090;lr>"]
    world.receive(in_dialog("BYE", routes, "sip:alice@192.0.2.99"), world.a)
    [(_, destination)] = world.a.sent
    assert destination == ("10.0.0.7", 5090)
    assert forwarded(world.a).get_all("route") == ["<sip:10.0.0.7:5090;lr>"]


def test_a_malformed_route_is_answered_400() -> None:
    world = World([])
    world.receive(in_dialog("BYE", ["<sip:192.0.2.10:5070;lr>", "<tel:+1>"], "sip:x@h"), world.a)
    assert world.reply().code == 400


def test_remembered_destinations_answer_as_the_first_time() -> None:
    # Destinations are remembered by URI text: a bad one is refused every
    # time, a good one sends to the same place every time.
    world = World([])
    for _ in range(2):
        world.replies.clear()
        world.receive(
            in_dialog("BYE", ["<sip:192.0.2.10:5070;lr>", "<tel:+1>"], "sip:x@h"), world.a
        )
        assert world.reply().code == 400
        assert "tel" in world.reply().reason
    for _ in range(2):
        routes = ["<sip:192.0.2.10:5070;lr;sipsock=s1>", "<sip:10.0.0.7:5090;lr>"]
        world.receive(in_dialog("BYE", routes, "sip:alice@192.0.2.99"), world.a)
        assert world.a.sent[-1][1] == ("10.0.0.7", 5090)


# --- responses ----------------------------------------------------------------------------


def test_a_response_loses_our_via_and_goes_back_through_the_receiving_socket() -> None:
    world = World([TO_UAS])
    world.receive(invite(), world.a)
    request = forwarded(world.b)
    world.receive(response_to(request, 180, "Ringing"), world.b, peer=UAS, connection=7)
    world.receive(response_to(request), world.b, peer=UAS, connection=7)
    assert [d for _, d in world.a.sent] == [UAC, UAC]
    ok = world.a.message()
    assert isinstance(ok, Response)
    assert ok.code == 200
    vias = ok.get_all("via")
    assert len(vias) == 1
    assert vias[0].startswith("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-abc")
    assert len(ok.get_all("record-route")) == 2
    assert world.proxy.counters.responses == 2


def test_a_response_whose_top_via_is_not_ours_is_dropped() -> None:
    world = World([TO_UAS])
    world.receive(invite(), world.a)
    request = forwarded(world.b)
    # Arriving on another socket than the one whose address is in the Via.
    world.receive(response_to(request), world.u, peer=UAS)
    # A Via of the right address but not a branch of ours.
    request.replace_top_via("SIP/2.0/TCP 198.51.100.7:5999;branch=z9hG4bKforged")
    world.receive(response_to(request), world.b, peer=UAS)
    assert world.a.sent == []
    assert world.proxy.counters.dropped_responses == 2


def test_a_response_for_a_removed_socket_is_dropped() -> None:
    world = World([TO_UAS])
    world.receive(invite(), world.a)
    request = forwarded(world.b)
    world.sockets.listeners.remove(world.a)
    world.receive(response_to(request), world.b, peer=UAS)
    assert world.proxy.counters.dropped_responses == 1


def stream_invite(world: World) -> Request:
    """An INVITE from a TCP client on port 40122 of 192.0.2.1, forwarded out of u."""
    text = invite().replace(b"SIP/2.0/UDP 192.0.2.1:5060", b"SIP/2.0/TCP 192.0.2.1:5060")
    world.receive(text, world.b, peer=("192.0.2.1", 40122), connection=3)
    request = forwarded(world.u)
    assert request.top_via.param("sipsock-in") == "s2.40122"
    return request


def test_a_response_to_a_stream_request_goes_back_on_its_connection() -> None:
    world = World([{"in_tag": "b", "destination": "sip:127.0.0.1:5080", "out_tag": "u"}])
    request = stream_invite(world)
    world.receive(response_to(request), world.u, peer=UAS)
    assert [d for _, d in world.b.sent] == [("192.0.2.1", 40122)]


def test_when_that_connection_is_gone_a_new_one_goes_to_the_via_port() -> None:
    world = World([{"in_tag": "b", "destination": "sip:127.0.0.1:5080", "out_tag": "u"}])
    request = stream_invite(world)
    world.b.fail_to = {("192.0.2.1", 40122)}
    world.receive(response_to(request), world.u, peer=UAS)
    assert [d for _, d in world.b.sent] == [("192.0.2.1", 5060)]
    assert world.proxy.counters.responses == 1


def test_branch_helper_matches_what_the_proxy_sends() -> None:
    world = World([TO_UAS])
    world.receive(invite(), world.a)
    received = parse(invite())
    assert isinstance(received, Request)
    received.replace_top_via(
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-abc;rport=5060;received=192.0.2.1"
    )
    assert forwarded(world.b).top_via.branch == proxy_branch(received, SECRET)


def test_proxy_require_is_answered_420_listing_what_the_proxy_lacks() -> None:
    world = World([TO_UAS])
    world.receive(invite(extra="Proxy-Require: sec-agree, foo\r\n"), world.a)
    assert world.b.sent == []
    reply = world.reply()
    assert (reply.code, reply.reason) == (420, "Bad Extension")
    assert reply.get("unsupported") == "sec-agree, foo"


def test_require_alone_is_for_the_uas_and_the_proxy_forwards_it() -> None:
    world = World([TO_UAS])
    world.receive(invite(extra="Require: nothingSupportsThis\r\n"), world.a)
    assert forwarded(world.b).get("require") == "nothingSupportsThis"
    assert world.replies == []


def test_log_throttle_keys_are_bounded_in_length() -> None:
    from sipsock.apps.proxy import LOG_KEY_TEXT, _LogThrottle

    throttle = _LogThrottle(MemoryReactorClock())
    assert throttle.allow("x" * 100_000) == 0
    assert all(len(key) <= LOG_KEY_TEXT for key in throttle._last)
