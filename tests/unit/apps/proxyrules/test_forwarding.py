"""The proxy's forwarding rules: Max-Forwards, branch, loops, Record-Route, the copy."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipsock.apps.proxyrules import (
    DEFAULT_MAX_FORWARDS,
    forward_copy,
    is_loop,
    is_own_branch,
    loop_key,
    max_forwards_of,
    next_max_forwards,
    proxy_branch,
    proxy_via,
    route_values,
    scan_headers,
    transaction_id,
    wants_record_route,
)
from sipsock.sip import Request, SipParseError, stateless_branch
from sipsock.sip.checks import parse_cseq
from sipsock.sip.grammar import split_values
from tests.unit.apps.proxyrules.messages import SECRET, A, as_method, invite


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


@pytest.mark.parametrize(
    ("via", "extra"),
    [
        ("", ""),
        ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-abc, SIP/2.0/UDP 192.0.2.9", ""),
        ("SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx;received=1.2.3.4", ""),
        ("SIP/2.0/UDP 192.0.2.1:5060;branch=1234", ""),  # RFC 2543: no magic cookie
        ("SIP/2.0/UDP 192.0.2.1", "Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2\r\n"),
        ("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK", "To: <sip:other@x>;TAG=t2\r\n"),
    ],
)
def test_the_transaction_id_is_the_stateless_branch_from_one_scan(via: str, extra: str) -> None:
    request = invite(via=via, extra=extra, to_tag="t1")
    scan = scan_headers(request)
    assert transaction_id(request, SECRET, scan) == stateless_branch(request, SECRET)
    assert proxy_branch(request, SECRET).startswith(stateless_branch(request, SECRET) + ".")


def test_max_forwards_is_read_from_the_scan() -> None:
    assert max_forwards_of(scan_headers(invite())) == 70
    assert max_forwards_of(scan_headers(invite(extra="Max-Forwards: 3\r\n"))) == 70
    request = invite()
    request.remove("Max-Forwards")
    assert max_forwards_of(scan_headers(request)) is None
    request.add("Max-Forwards", "many")
    with pytest.raises(SipParseError, match="malformed Max-Forwards"):
        max_forwards_of(scan_headers(request))


def test_proxy_require_tags_are_scanned_split() -> None:
    scan = scan_headers(invite(extra="Proxy-Require: foo, bar\r\nProxy-Require: baz\r\n"))
    assert scan.proxy_require == ["foo", "bar", "baz"]
    assert scan.loop_fields == ["proxy-require:foo, bar", "proxy-require:baz"]


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


def test_record_route_only_for_dialog_creating_requests() -> None:
    assert wants_record_route(invite())
    assert not wants_record_route(invite(to_tag="t1"))
    assert not wants_record_route(as_method(invite(), "OPTIONS"))


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


def test_route_values_are_split_like_any_field_and_remembered() -> None:
    value = '<sip:a@x;lr>, "b, c" <sip:b@y;lr>,<sip:z>'
    assert route_values(value) == tuple(split_values(value))
    assert route_values(value) is route_values(value)
    request = invite(extra=f"Route: {value}\r\n")
    assert scan_headers(request).routes == split_values(value)
    copy = forward_copy(request, via="SIP/2.0/UDP h;branch=z9hG4bKx", max_forwards=1, drop_routes=1)
    assert copy.get_all("route") == split_values(value)[1:]


# --- the branch computed without parsing the usual top Via ----------------------------------

_via_token = st.sampled_from(["SIP", "sip", "2.0", "UDP", "tcp", "TLS", "x-y", "a!b"])
_via_host = st.sampled_from(
    ["192.0.2.1", "host.example", "[2001:db8::1]", "2001:db8::1", "a_b", "", "h-1.EX"]
)
_via_port = st.sampled_from(["", ":5060", ":05060", ":0", ":65535", ":65536", ":99999", ": 5060"])
_via_param = st.sampled_from(
    [
        ";branch=z9hG4bK-abc",
        ";BRANCH=z9hG4bKx",
        ";Branch=z9hG4bK",
        ";branch=abc",
        ";branch",
        ";branch=",
        ";rport",
        ";rport=5060",
        ";received=192.0.2.9",
        ";branchx=z9hG4bKy",
        ';x="a;b"',
        " ;branch=z9hG4bKs",
        "; branch = z9hG4bKt",
        ";maddr=[2001:db8::2]",
        ";br\u00e4nch=z9hG4bKu",
    ]
)


@settings(max_examples=500)
@example(("SIP", "2.0", "UDP"), " ", "192.0.2.1", ":05060", [";branch=z9hG4bK-abc"], "")
@example(("SIP", "2.0", "UDP"), " ", "192.0.2.1", "", [";rport", ";BRANCH=z9hG4bKx"], "")
@example(("SIP", "2.0", "UDP"), " ", "192.0.2.1", ":65536", [";branch=z9hG4bK-abc"], "")
@example(("SIP", "2.0", "UDP"), " ", "host.example", "", [";Branch=z9hG4bK"], "")
@example(("SIP", "2.0", "UDP"), " ", "h", "", [";BRANCH=z9hG4bKx", ";branch=z9hG4bK-abc"], "")
@example(("SIP", "2.0", "UDP"), " ", "[2001:db8::1]", ":0", [";branch=z9hG4bKx"], "")
@given(
    st.tuples(_via_token, _via_token, _via_token),
    st.sampled_from([" ", " ", " ", "  ", "\t"]),
    _via_host,
    _via_port,
    st.lists(_via_param, max_size=4),
    st.sampled_from(["", " ", ", SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKz"]),
)
def test_the_transaction_id_is_the_stateless_branch_for_every_top_via(
    protocol: tuple[str, str, str],
    blank: str,
    host: str,
    port: str,
    params: list[str],
    tail: str,
) -> None:
    """The plain-Via reading gives `stateless_branch`'s value, and its error, for every Via."""
    via = f"{'/'.join(protocol)}{blank}{host}{port}{''.join(params)}{tail}"
    request = invite()
    request.set("Via", via)
    try:
        expected: str | type[Exception] = stateless_branch(request, SECRET)
    except (SipParseError, ValueError) as error:
        expected = type(error)
    try:
        got: str | type[Exception] = transaction_id(request, SECRET, scan_headers(request))
    except (SipParseError, ValueError) as error:
        got = type(error)
    assert got == expected


def _loop_key_before(request: Request, secret: str) -> str:
    """`loop_key` as it was computed before the keyed hasher was copied (a new one per call)."""
    tag = re.search(r"(?i);\s*tag\s*=\s*([^;\s]+)", request.get("from") or "")
    routes = [entry for value in request.get_all("route") for entry in route_values(value)]
    loop_fields = [
        f"{name.lower()}:{value}"
        for name, value in request.headers
        if name.lower() in ("proxy-require", "proxy-authorization")
    ]
    parts = [
        request.uri,
        tag.group(1) if tag else "",
        request.get("call-id") or "",
        str(parse_cseq(request.get("cseq"))[0]),
        "\x1f".join(routes),
        "\x1f".join(loop_fields),
    ]
    data = "\x00".join(parts).encode("utf-8", "surrogateescape")
    key = secret.encode("utf-8", "surrogateescape")[:64]
    return hashlib.blake2b(data, digest_size=5, key=key).hexdigest()


@given(
    st.text(max_size=80),
    st.sampled_from(["", "Route: <sip:p1;lr>, <sip:p2;lr>\r\n", "Proxy-Require: foo\r\n"]),
    st.text(alphabet="abc\u00e9\udcff", max_size=6),
)
def test_the_loop_key_is_the_keyed_hash_as_before(secret: str, extra: str, tag: str) -> None:
    request = invite(extra=extra)
    if tag:
        request.set("From", f"<sip:alice@example.com>;tag={tag}")
    assert loop_key(request, secret) == _loop_key_before(request, secret)
