"""Socket references in the proxy's Via, Record-Route and Route entries."""

from __future__ import annotations

from sipsock.apps.proxyrules import (
    OwnRoutes,
    ViaMarker,
    is_own_via,
    own_routes,
    parse_socket_ref,
    proxy_branch,
    proxy_via,
    record_route_values,
    route_entry,
    socket_ref,
    via_marker,
)
from sipsock.sip import parse_via
from sipsock.sockdef import SocketDef, parse_row
from tests.unit.apps.proxyrules.messages import SECRET, A, invite

B = parse_row(2, "tcp:127.0.0.1:5080", advertised="198.51.100.7:5999", tag="b")
C = parse_row(3, "udp:[::1]:5090", tag="c")


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
