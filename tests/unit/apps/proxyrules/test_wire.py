"""The proxy's one-pass bytes (`proxyrules.wire`) pinned to the message-level rules they replace.

`forward_bytes` must give ``forward_copy(...).serialize()`` and
`response_bytes_without_top_via` what `split_top_via` and its copy's
``serialize()`` give, byte for byte, for any fields (compact names, repeated
and multi-valued Via, Max-Forwards, Route and Record-Route, any
Content-Length); `read_plain_via` what `parse_via` says of the facts the
response hop reads.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipsock.apps.proxyrules import (
    forward_copy,
    is_own_branch,
    is_own_via,
    is_socket_address,
    split_top_via,
    via_marker,
)
from sipsock.apps.proxyrules.references import ViaMarker, marker_of
from sipsock.apps.proxyrules.wire import (
    PlainVia,
    forward_bytes,
    read_plain_via,
    response_bytes_without_top_via,
)
from sipsock.sip import Request, Response, SipParseError, default_port, parse_via
from sipsock.sip.grammar import canonical_name
from sipsock.sockdef import parse_row

_VIAS = [
    "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;rport",
    "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK-2, SIP/2.0/TCP h.example:5070;branch=z9hG4bK-3",
    'SIP/2.0/UDP 192.0.2.3;x="a,b";branch=z9hG4bK-4',
    "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-5",
    "SIP/2.0/UDP 192.0.2.4 ; branch = z9hG4bK-6",
    "SIP/2.0/UDP h:99999;branch=z9hG4bK-7",
    "not a via",
    "SIP/2.0/UDP a,",
    ",SIP/2.0/UDP b",
]
_FIELDS = st.one_of(
    st.tuples(st.sampled_from(["Via", "v", "VIA"]), st.sampled_from(_VIAS)),
    st.tuples(
        st.sampled_from(["Route", "route"]),
        st.sampled_from(["<sip:p1;lr>", "<sip:p1;lr>, <sip:p2;lr>", '"a,b" <sip:p3;lr>', ""]),
    ),
    st.tuples(
        st.sampled_from(["Record-Route", "record-route"]),
        st.sampled_from(["<sip:r1;lr>", "<sip:r1;lr>,<sip:r2;lr>"]),
    ),
    st.tuples(st.sampled_from(["Max-Forwards", "max-forwards"]), st.sampled_from(["70", "0", "x"])),
    st.tuples(
        st.sampled_from(["Content-Length", "l", "content-length"]),
        st.sampled_from(["0", "4", "04", " 4", "x"]),
    ),
    st.tuples(
        st.sampled_from(["From", "To", "Call-ID", "CSeq", "X-Ü", "Contact"]),
        st.sampled_from(["<sip:a@b>;tag=1", "1 INVITE", "", "v\udcff", "a, b"]),
    ),
)
_BODIES = st.sampled_from([b"", b"abcd", b"v=0\r\n", b"\xff\x00"])
_RECORD_ROUTES = st.lists(st.sampled_from(["<sip:me;lr;sipsock=s1>", "<sip:me2;lr>"]), max_size=2)


@settings(max_examples=600)
@example(
    headers=[("Content-Length", "0")], body=b"", record_route=["<sip:me;lr>"], drop=0, known=True
)
@example(headers=[], body=b"", record_route=["<sip:me;lr>"], drop=1, known=False)
@example(
    headers=[("Route", "<sip:p1;lr>, <sip:p2;lr>"), ("Route", "<sip:p3;lr>"), ("l", "0")],
    body=b"",
    record_route=[],
    drop=3,
    known=True,
)
@example(
    headers=[("v", _VIAS[1]), ("Max-Forwards", "1"), ("Max-Forwards", "2"), ("l", "4")],
    body=b"abcd",
    record_route=["<sip:a;lr>", "<sip:b;lr>"],
    drop=0,
    known=True,
)
@example(
    headers=[("Max-Forwards", "70"), ("Record-Route", "<sip:r1;lr>"), ("l", "0")],
    body=b"",
    record_route=["<sip:a;lr>", "<sip:b;lr>"],
    drop=0,
    known=True,
)
@example(
    headers=[("Route", "<sip:p1;lr>"), ("To", "x"), ("Max-Forwards", "3"), ("l", "0")],
    body=b"",
    record_route=["<sip:a;lr>"],
    drop=1,
    known=True,
)
@example(
    headers=[("Record-Route", "<sip:r1;lr>"), ("Route", "<sip:p1;lr>, <sip:p2;lr>"), ("l", "0")],
    body=b"",
    record_route=["<sip:a;lr>"],
    drop=1,
    known=True,
)
@example(
    headers=[("Via", _VIAS[0]), ("Route", "<sip:p1;lr>, <sip:p2;lr>"), ("l", "0")],
    body=b"",
    record_route=["<sip:a;lr>", "<sip:b;lr>"],
    drop=2,
    known=True,
)
@given(
    headers=st.lists(_FIELDS, max_size=10),
    body=_BODIES,
    record_route=_RECORD_ROUTES,
    drop=st.integers(0, 3),
    known=st.booleans(),
)
def test_forwarded_bytes_are_the_serialised_copy(
    headers: list[tuple[str, str]],
    body: bytes,
    record_route: list[str],
    drop: int,
    known: bool,
) -> None:
    request = Request("INVITE", "sip:b@example.com", headers, body)
    keys = [canonical_name(name) for name, _ in headers] if known else None
    arguments = {
        "via": "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKx.y;sipsock-in=s1",
        "record_route": record_route,
        "max_forwards": 69,
        "drop_routes": drop,
        "keys": keys,
    }
    expected = forward_copy(request, **arguments).serialize()  # type: ignore[arg-type]
    assert forward_bytes(request, **arguments) == expected  # type: ignore[arg-type]


@settings(max_examples=600)
@example(headers=[("Via", _VIAS[0]), ("Content-Length", "0")], body=b"")
@example(headers=[("Via", _VIAS[1]), ("v", _VIAS[0]), ("l", "4")], body=b"abcd")
@example(headers=[("Via", _VIAS[2]), ("Via", _VIAS[1])], body=b"")
@example(headers=[("Via", "SIP/2.0/UDP a,"), ("Via", _VIAS[0]), ("l", "0")], body=b"")
@example(headers=[("To", "x")], body=b"")
@given(headers=st.lists(_FIELDS, max_size=10), body=_BODIES)
def test_a_response_loses_its_top_via_as_split_top_via_takes_it(
    headers: list[tuple[str, str]], body: bytes
) -> None:
    response = Response(200, "OK", headers, body)
    cut = response_bytes_without_top_via(response)
    try:
        split = split_top_via(response)
    except SipParseError as error:
        if error.reason == "no Via header":
            assert cut is None
        else:
            assert cut is not None
            assert read_plain_via(cut.top) is None
            with pytest.raises(SipParseError) as again:
                parse_via(cut.top)
            assert again.value.reason == error.reason
        return
    assert cut is not None
    assert parse_via(cut.top) == split.top
    assert cut.next_via == split.next_via
    assert cut.data == split.copy.serialize()


_transports = st.sampled_from(["UDP", "udp", "TCP", "tls", "WS", "x-y"])
_hosts = st.sampled_from(
    ["192.0.2.10", "192.0.2.1", "h.example", "[2001:db8::1]", "", "H-1.EX", "192.000.2.10"]
)
_ports = st.sampled_from(["", ":5070", ":05070", ":0", ":65536", ":5060", ": 5070"])
_params = st.sampled_from(
    [
        ";branch=z9hG4bK0123456789abcdef01234567.0123456789",
        ";BRANCH=z9hG4bK0123456789abcdef01234567.0123456789",
        ";branch=z9hG4bK-abc",
        ";branch",
        ";sipsock-in=s1",
        ";SIPSOCK-IN=s2.5061",
        ";sipsock-in=tcore.0",
        ";sipsock-in",
        ";received=192.0.2.9",
        ";rport",
        ';x="a;b"',
        " ;rport",
    ]
)
_SOCKET = parse_row(1, "udp:192.0.2.10:5070", advertised="198.51.100.1:5060", tag="a")


@settings(max_examples=800)
@example("UDP", "192.0.2.10", ":5070", [";branch=z9hG4bK0123456789abcdef01234567.0123456789"])
@example("UDP", "h.example", "", [";sipsock-in=s1", ";SIPSOCK-IN=s2.5061"])
@example("udp", "198.51.100.1", "", [";branch", ";BRANCH=z9hG4bK-abc", ";sipsock-in=s2.5061"])
@example("UDP", "192.0.2.10", ":65536", [";branch=z9hG4bK-abc"])
@given(_transports, _hosts, _ports, st.lists(_params, max_size=4))
def test_a_plain_via_is_read_as_parse_via_reads_it(
    transport: str, host: str, port: str, params: list[str]
) -> None:
    text = f"SIP/2.0/{transport} {host}{port}{''.join(params)}"
    plain = read_plain_via(text)
    try:
        via = parse_via(text)
    except SipParseError:
        assert plain is None
        return
    if plain is None:
        # Only a spelling the plain pattern leaves out is left to parse_via.
        assert " " in text.partition(" ")[2] or '"' in text or ":" in via.host or via.host == ""
        return
    assert plain == PlainVia(
        via.transport, via.host, via.port, via.param("branch"), via.param("sipsock-in")
    )
    own = is_own_branch(plain.branch) and is_socket_address(
        _SOCKET, plain.host, plain.port or default_port(plain.transport)
    )
    assert own == is_own_via(via, _SOCKET)
    assert marker_of(plain.marker or "") == via_marker(via)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3", ViaMarker(3, None)),
        ("s3.5061", ViaMarker(3, 5061)),
        ("tcore.0", ViaMarker("core", None)),
        ("s3.65536", ViaMarker(3, None)),
        ("", ViaMarker(None, None)),
        ("x1.7", ViaMarker(None, 7)),
    ],
)
def test_the_marker_is_read_the_same_when_remembered(text: str, expected: ViaMarker) -> None:
    assert marker_of(text) == expected
    assert marker_of(text) == expected
