"""The stateless proxy's pure rules: routes, URIs, branches, loops, Via and Record-Route."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsock.proxyrules import (
    DEFAULT_MAX_FORWARDS,
    Destination,
    OwnRoutes,
    ProxyRoute,
    RouteError,
    SipUri,
    ViaMarker,
    destination_of,
    find_route,
    forward_copy,
    host_matches,
    is_loop,
    is_own_branch,
    is_own_via,
    loop_key,
    next_max_forwards,
    own_routes,
    parse_route,
    parse_routes,
    parse_socket_ref,
    parse_uri,
    proxy_branch,
    proxy_via,
    record_route_values,
    request_uri_host,
    route_entry,
    socket_ref,
    via_marker,
    wants_record_route,
)
from sipsock.sip import Request, parse, parse_via
from sipsock.sockdef import SocketDef, parse_row

SECRET = "s3cret"
A = parse_row(1, "udp:127.0.0.1:5070", advertised="192.0.2.10:5070", tag="a")
B = parse_row(2, "tcp:127.0.0.1:5080", advertised="198.51.100.7:5999", tag="b")
C = parse_row(3, "udp:[::1]:5090", tag="c")


def invite(
    *, uri: str = "sip:svc@example.com", via: str = "", extra: str = "", to_tag: str = ""
) -> Request:
    text = (
        f"INVITE {uri} SIP/2.0\r\n"
        f"Via: {via or 'SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-abc;rport=5060'}\r\n"
        "From: <sip:alice@example.com>;tag=f1\r\n"
        f"To: <sip:svc@example.com>{';tag=' + to_tag if to_tag else ''}\r\n"
        "Call-ID: call-1@example.com\r\n"
        "CSeq: 7 INVITE\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse(text.encode())
    assert isinstance(message, Request)
    return message


def as_method(request: Request, method: str, *, to_tag: str = "") -> Request:
    copy = Request(method, request.uri, request.headers, request.body)
    copy.set("CSeq", f"{request.cseq[0]} {method}")
    if to_tag:
        copy.set("To", f"{copy.get('to')};tag={to_tag}")
    return copy


# --- URIs and destinations -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:127.0.0.1:5080", SipUri("sip", "127.0.0.1", 5080)),
        ("SIP:Host.Example.com", SipUri("sip", "Host.Example.com")),
        (
            "sip:bob@[::1]:5062;transport=TCP;lr",
            SipUri("sip", "::1", 5062, "bob", (("transport", "TCP"), ("lr", None))),
        ),
        (
            '"Proxy" <sips:p.example.com;lr>;x=1',
            SipUri("sips", "p.example.com", None, None, (("lr", None),)),
        ),
        ("sip:u;phone=1@h?Subject=x", SipUri("sip", "h", None, "u;phone=1")),
    ],
)
def test_uris_are_parsed(text: str, expected: SipUri) -> None:
    assert parse_uri(text) == expected


@pytest.mark.parametrize(
    "text", ["tel:+123", "http://x", "sip:", "sip:host:99999", "sip:[zz::1]", "<sip:x", "sip:a b"]
)
def test_bad_uris_are_refused(text: str) -> None:
    with pytest.raises(RouteError):
        parse_uri(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:10.0.0.2", Destination("10.0.0.2", None, None)),
        ("sip:10.0.0.2:5080;transport=TCP", Destination("10.0.0.2", 5080, "tcp")),
        ("sips:example.com", Destination("example.com", None, "tls")),
        ("sips:example.com;transport=tcp", Destination("example.com", None, "tls")),
        ("sip:h;transport=ws", Destination("h", None, "ws")),
        ("sip:x@h;maddr=10.1.1.1;transport=udp", Destination("10.1.1.1", None, "udp")),
        ("sip:[2001:db8::1]:5070", Destination("2001:db8::1", 5070, None)),
    ],
)
def test_destination_of_a_uri(text: str, expected: Destination) -> None:
    assert destination_of(parse_uri(text)) == expected


def test_destination_defaults_the_port_by_transport() -> None:
    assert Destination("h").address("udp") == ("h", 5060)
    assert Destination("h").address("tls") == ("h", 5061)
    assert Destination("h", 7000).address("wss") == ("h", 7000)
    assert str(Destination("::1", 5070, "tcp")) == "sip:[::1]:5070;transport=tcp"


def test_a_transport_sipsock_does_not_speak_is_refused() -> None:
    with pytest.raises(RouteError, match="sctp"):
        destination_of(parse_uri("sip:h;transport=sctp"))


def test_request_uri_host() -> None:
    assert request_uri_host("sip:svc@Example.COM:5060") == "Example.COM"
    assert request_uri_host("tel:+1234") is None


# --- routes ---------------------------------------------------------------------------


def test_a_route_table_is_checked_and_normalised() -> None:
    route = parse_route(
        {
            "in_tag": "a",
            "uri_host": "Example.COM.",
            "methods": ["invite", "MESSAGE"],
            "destination": "sip:127.0.0.1:5080;transport=tcp",
            "out_tag": "b",
        },
        3,
    )
    assert route == ProxyRoute(
        number=3,
        destination=Destination("127.0.0.1", 5080, "tcp"),
        in_tag="a",
        uri_host="example.com",
        methods=frozenset({"INVITE", "MESSAGE"}),
        out_tag="b",
    )
    assert parse_route({"destination": "Request-URI"}, 1).destination is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "destination: missing"),
        ({"destination": "http://x"}, "destination: 'http://x' is not a sip: or sips: URI"),
        ({"destination": 5}, "destination: must be a non-empty string"),
        ({"destination": "request-uri", "out_tag": "b c"}, "out_tag: 'b c' is not a tag"),
        ({"destination": "request-uri", "in_tag": ""}, "in_tag: must be a non-empty string"),
        ({"destination": "request-uri", "methods": "INVITE"}, "methods: must be a non-empty list"),
        ({"destination": "request-uri", "methods": ["IN VITE"]}, "methods: 'IN VITE' is not"),
        ({"destination": "request-uri", "uri_host": "a..b"}, "uri_host: 'a..b' is not a host"),
        ({"destination": "request-uri", "to": "x"}, "to: unknown key"),
        ({"destination": "sip:h;transport=sctp"}, "destination: transport 'sctp'"),
    ],
)
def test_route_errors_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(RouteError) as info:
        parse_route(table, 1)
    assert str(info.value).startswith(message)


def test_route_list_errors_name_the_route_number() -> None:
    with pytest.raises(RouteError) as info:
        parse_routes(
            [{"destination": "request-uri"}, {"destination": "request-uri", "out_tag": "-?"}]
        )
    assert info.value.key == "2: out_tag"
    with pytest.raises(RouteError) as info:
        parse_routes(["not a table"])
    assert str(info.value).startswith("1: must be a table")


def test_the_first_matching_route_wins() -> None:
    routes = parse_routes(
        [
            {"in_tag": "a", "methods": ["MESSAGE"], "destination": "sip:10.0.0.1"},
            {"in_tag": "a", "uri_host": "*.example.com", "destination": "sip:10.0.0.2"},
            {"uri_host": "example.com", "destination": "sip:10.0.0.3"},
            {"in_tag": "b", "destination": "request-uri"},
        ]
    )

    def number(tag: str | None, host: str | None, method: str) -> int | None:
        route = find_route(routes, tag, host, method)
        return None if route is None else route.number

    assert number("a", "x", "MESSAGE") == 1
    assert number("a", "sip.example.com", "INVITE") == 2
    assert number("a", "example.com", "INVITE") == 3
    assert number(None, "EXAMPLE.com.", "OPTIONS") == 3
    assert number("b", None, "BYE") == 4
    assert number("c", "other.org", "INVITE") is None


def test_cancel_and_ack_follow_an_invite_route() -> None:
    [route] = parse_routes([{"methods": ["INVITE"], "destination": "request-uri"}])
    assert route.matches(None, None, "CANCEL")
    assert route.matches(None, None, "ACK")
    assert not route.matches(None, None, "BYE")


def test_host_matching() -> None:
    assert host_matches("example.com", "Example.Com")
    assert host_matches("::1", "[0:0::1]")
    assert host_matches("*.example.com", "a.b.example.com")
    assert not host_matches("*.example.com", "example.com")
    assert not host_matches("example.com", None)


# --- Max-Forwards, branch and loops ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(None, DEFAULT_MAX_FORWARDS), (70, 69), (1, 0), (0, None)]
)
def test_max_forwards(value: int | None, expected: int | None) -> None:
    assert next_max_forwards(value) == expected


def test_branch_is_stable_for_retransmission_cancel_and_non_2xx_ack() -> None:
    request = invite()
    branch = proxy_branch(request, SECRET)
    assert is_own_branch(branch)
    assert branch.startswith("z9hG4bK")
    assert proxy_branch(invite(), SECRET) == branch
    assert proxy_branch(as_method(request, "CANCEL"), SECRET) == branch
    assert proxy_branch(as_method(request, "ACK", to_tag="t9"), SECRET) == branch


def test_branch_differs_for_another_transaction_or_another_secret() -> None:
    branch = proxy_branch(invite(), SECRET)
    other = invite(via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-xyz")
    assert proxy_branch(other, SECRET) != branch
    assert proxy_branch(invite(), "another") != branch


def test_a_request_carrying_our_branch_has_looped() -> None:
    request = invite()
    assert not is_loop(request, SECRET)
    request.add("Via", proxy_via(A, proxy_branch(request, SECRET), "s1"), first=True)
    assert is_loop(request, SECRET)
    # Another proxy with another secret, or a changed Request-URI: a spiral.
    assert not is_loop(request, "other-secret")
    request.uri = "sip:svc@elsewhere.example.com"
    assert not is_loop(request, SECRET)


def test_loop_key_ignores_the_top_via_and_the_to_tag() -> None:
    request = invite()
    key = loop_key(request, SECRET)
    other_hop = invite(via="SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKhop")
    assert loop_key(other_hop, SECRET) == key
    assert loop_key(invite(to_tag="t1"), SECRET) == key
    assert loop_key(invite(extra="Route: <sip:x;lr>\r\n"), SECRET) != key


@given(st.text(alphabet="abcdef0123456789.zZ9hGbK-", max_size=60))
def test_only_our_branch_shape_is_ours(branch: str) -> None:
    if is_own_branch(branch):
        assert branch.startswith("z9hG4bK") and len(branch) == 7 + 24 + 1 + 10


# --- socket references, Via and Record-Route ----------------------------------------------


def test_socket_refs_round_trip() -> None:
    assert socket_ref(A, 4) == "s4"
    assert socket_ref(A, None) == "ta"
    assert socket_ref(parse_row(None, "udp:127.0.0.1:1"), None) is None
    assert parse_socket_ref("s4") == 4
    assert parse_socket_ref("ta") == "a"
    for bad in ("", "x1", "s", "s-1", "t", "t a", "s12345678901"):
        assert parse_socket_ref(bad) is None


def test_proxy_via_uses_the_advertised_address_and_carries_the_marker() -> None:
    via = proxy_via(B, "z9hG4bKbranch", "s1", 40122)
    assert via == "SIP/2.0/TCP 198.51.100.7:5999;branch=z9hG4bKbranch;sipsock-in=s1.40122"
    assert via_marker(parse_via(via)) == ViaMarker(1, 40122)
    plain = proxy_via(C, "z9hG4bKx", None)
    assert plain == "SIP/2.0/UDP [::1]:5090;branch=z9hG4bKx"
    assert via_marker(parse_via(plain)) == ViaMarker(None, None)
    assert via_marker(parse_via(proxy_via(A, "z9hG4bKx", "ta"))) == ViaMarker("a", None)


def test_own_via_needs_our_branch_and_our_address() -> None:
    branch = proxy_branch(invite(), SECRET)
    assert is_own_via(parse_via(proxy_via(B, branch, "s1")), B)
    # The socket's own address counts as well as the advertised one.
    assert is_own_via(parse_via(f"SIP/2.0/TCP 127.0.0.1:5080;branch={branch}"), B)
    assert not is_own_via(parse_via(proxy_via(B, branch, "s1")), A)
    assert not is_own_via(parse_via("SIP/2.0/TCP 198.51.100.7:5999;branch=z9hG4bK1"), B)


def test_record_route_is_single_for_one_socket_double_across_sockets() -> None:
    assert record_route_values(A, "s1", A, "s1") == ["<sip:192.0.2.10:5070;lr;sipsock=s1>"]
    assert record_route_values(A, "s1", B, "s2") == [
        "<sip:198.51.100.7:5999;transport=tcp;lr;sipsock=s2>",
        "<sip:192.0.2.10:5070;lr;sipsock=s1>",
    ]
    assert route_entry(C, None) == "<sip:[::1]:5090;lr>"


def test_record_route_only_for_dialog_creating_requests() -> None:
    assert wants_record_route(invite())
    assert not wants_record_route(invite(to_tag="t1"))
    assert not wants_record_route(as_method(invite(), "OPTIONS"))


def test_own_routes_are_found_by_address_and_by_reference() -> None:
    sockets = {1: A, 2: B}

    def lookup(ref: str | int) -> SocketDef | None:
        return sockets.get(ref) if isinstance(ref, int) else None

    double = record_route_values(A, "s1", B, "s2")
    # The UAS's in-dialog request reaches B with the route set as recorded.
    assert own_routes(double, B, lookup) == OwnRoutes(2, 1)
    # The UAC's reaches A with it reversed.
    assert own_routes(list(reversed(double)), A, lookup) == OwnRoutes(2, 2)
    # A route of someone else's stops the count; a foreign first entry means none.
    assert own_routes([double[1], "<sip:10.0.0.9;lr>"], A, lookup) == OwnRoutes(1, 1)
    assert own_routes(["<sip:10.0.0.9;lr>", double[1]], A, lookup) == OwnRoutes(0, None)
    # No reference (static socket without tag): the receiving socket by address.
    assert own_routes(["<sip:192.0.2.10:5070;lr>"], A, lookup) == OwnRoutes(1, None)
    # A reference to a socket that is not open (or is another's): not ours.
    assert own_routes(["<sip:198.51.100.7:5999;transport=tcp;lr;sipsock=s9>"], A, lookup) == (
        OwnRoutes(0, None)
    )
    assert own_routes(["<sip:10.0.0.1;lr;sipsock=s1>"], A, lookup) == OwnRoutes(0, None)


# --- the forwarded copy ----------------------------------------------------------------------


def test_forward_copy_puts_via_and_record_route_on_top_and_keeps_the_rest() -> None:
    request = invite(
        extra=(
            "Record-Route: <sip:upstream.example;lr>\r\n"
            "Route: <sip:192.0.2.10:5070;lr>, <sip:next.example;lr>\r\n"
            "Route: <sip:last.example;lr>\r\n"
            "Max-Forwards: 12\r\n"
        )
    )
    copy = forward_copy(
        request,
        via="SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx",
        record_route=["<sip:10.0.0.1;lr>", "<sip:10.0.0.2;lr>"],
        max_forwards=69,
        drop_routes=1,
    )
    assert copy.get_all("via") == [
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx",
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-abc;rport=5060",
    ]
    assert copy.get_all("record-route") == [
        "<sip:10.0.0.1;lr>",
        "<sip:10.0.0.2;lr>",
        "<sip:upstream.example;lr>",
    ]
    assert copy.get_all("route") == ["<sip:next.example;lr>", "<sip:last.example;lr>"]
    assert copy.get_all("max-forwards") == ["69"]
    assert (copy.method, copy.uri, copy.body) == (request.method, request.uri, request.body)
    assert copy.get("call-id") == request.get("call-id")
    # The request itself is untouched.
    assert len(request.get_all("via")) == 1
    assert request.get_all("max-forwards") == ["70", "12"]


def test_forward_copy_adds_what_is_missing() -> None:
    request = Request(
        "OPTIONS",
        "sip:x@h",
        [("v", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"), ("Call-ID", "c"), ("CSeq", "1 OPTIONS")],
    )
    copy = forward_copy(
        request,
        via="SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx",
        record_route=["<sip:10.0.0.1;lr>"],
        max_forwards=70,
        drop_routes=2,
    )
    assert [name for name, _ in copy.headers] == [
        "Via",
        "Record-Route",
        "v",
        "Call-ID",
        "CSeq",
        "Max-Forwards",
    ]
