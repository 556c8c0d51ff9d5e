"""The request's header scan and the proxy's branch pinned to the rules they replace.

`scan_headers` finds the fields by the parser's names instead of walking
every field, and `proxy_branch` hashes the usual request in one go instead
of calling `transaction_id` and `loop_key`: for any fields (compact names,
repeated and multi-valued Via, Route, Proxy-Require, Proxy-Authorization,
odd From tags) they give what the field-by-field rules give, or the same error.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipsock.apps.proxyrules import (
    HeaderScan,
    loop_key,
    proxy_branch,
    route_values,
    scan_headers,
    transaction_id,
)
from sipsock.sip import Request, SipParseError
from sipsock.sip.grammar import split_values

_LOOP_HEADERS = ("proxy-require", "proxy-authorization")
_FIRST_OF = ("from", "to", "call-id", "cseq", "max-forwards")


def _scan_field_by_field(request: Request) -> HeaderScan:
    """`scan_headers` as it was: one walk over every field."""
    vias: list[str] = []
    routes: list[str] = []
    loop_fields: list[str] = []
    first: dict[str, str] = {}
    proxy_require: list[str] = []
    keys = request._header_keys().copy()
    for (_, value), key in zip(request.headers, keys, strict=True):
        if key == "via":
            vias.append(value)
        elif key in _FIRST_OF:
            if key not in first:
                first[key] = value
        elif key == "route":
            routes += route_values(value)
        elif key in _LOOP_HEADERS:
            loop_fields.append(f"{key}:{value}")
            if key == "proxy-require":
                proxy_require += split_values(value)
    return HeaderScan(vias, routes, loop_fields, keys, first, proxy_require)


_VIAS = [
    "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;rport",
    "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK-2, SIP/2.0/TCP h.example:5070;branch=z9hG4bK-3",
    "SIP/2.0/UDP 192.0.2.3;branch=old-style",
    "SIP/2.0/UDP 192.0.2.4 ; branch = z9hG4bK-6",
    "SIP/2.0/UDP h:99999;branch=z9hG4bK-7",
    "not a via",
]
_FROMS = [
    "<sip:alice@example.com>;tag=f1",
    "<sip:alice@example.com;transport=udp>;tag=f1",
    "<sip:alice@example.com>;TAG=f1",
    "<sip:alice@example.com> ; tag = f1",
    "<sip:alice@example.com>;tag=",
    "<sip:alice@example.com>;tag=f1;x=y",
    "<sip:alice@example.com>;tag=f1 x",
    "<sip:alice@example.com>;tag=f\u00a0\u00e91",
    "<sip:alice@example.com>;tag=f\udcff",
    "<sip:alice@example.com>;tagx=1;tag=f2",
    '"a;tag=q" <sip:alice@example.com>;tag=f1',
    "<sip:alice@example.com;TAG=u>;tag=f1",
    "<sip:alice@example.com; tag=u>;tag=f1",
    "<sip:alice@example.com>",
    "",
]
_FIELDS = st.one_of(
    st.tuples(st.sampled_from(["Via", "v"]), st.sampled_from(_VIAS)),
    st.tuples(
        st.sampled_from(["Route", "route"]),
        st.sampled_from(["<sip:p1;lr>", "<sip:p1;lr>, <sip:p2;lr>", '"a,b" <sip:p3;lr>', ""]),
    ),
    st.tuples(
        st.sampled_from(["Proxy-Require", "Proxy-Authorization"]),
        st.sampled_from(["foo", "foo, bar", 'Digest a="b,c"']),
    ),
    st.tuples(st.sampled_from(["From", "f"]), st.sampled_from(_FROMS)),
    st.tuples(st.sampled_from(["To", "t"]), st.sampled_from(["<sip:b@c>", "<sip:b@c>;tag=t"])),
    st.tuples(st.sampled_from(["Call-ID", "i"]), st.sampled_from(["c1@h", "c2@h", ""])),
    st.tuples(st.just("CSeq"), st.sampled_from(["1 INVITE", "2 BYE", "x"])),
    st.tuples(st.just("Max-Forwards"), st.sampled_from(["70", "0", "x"])),
    st.tuples(st.sampled_from(["Contact", "l"]), st.sampled_from(["<sip:a@b>", "0"])),
)
_USUAL = [
    ("Via", _VIAS[0]),
    ("From", _FROMS[0]),
    ("To", "<sip:b@c>"),
    ("Call-ID", "c1@h"),
    ("CSeq", "1 INVITE"),
    ("Max-Forwards", "70"),
]


def _outcome(rule, request: Request):  # type: ignore[no-untyped-def]
    try:
        return rule(request)
    except (SipParseError, ValueError, IndexError) as error:
        return type(error)


@settings(max_examples=800)
@example(headers=_USUAL)
@example(headers=[*_USUAL, ("Via", _VIAS[1])])
@example(headers=[("v", _VIAS[1]), *_USUAL[1:], ("Route", "<sip:p1;lr>"), ("route", "")])
@example(headers=[*_USUAL, ("Proxy-Require", "foo, bar"), ("Proxy-Authorization", "x")])
@example(headers=[("From", _FROMS[0]), ("f", _FROMS[1]), ("Via", _VIAS[0])])
@example(headers=[])
@given(headers=st.lists(_FIELDS, max_size=10))
def test_the_scan_is_the_field_by_field_scan(headers: list[tuple[str, str]]) -> None:
    request = Request("INVITE", "sip:b@example.com", headers)
    assert scan_headers(request) == _scan_field_by_field(request)


def _branch_in_two_parts(request: Request) -> str:
    """`proxy_branch` as it was: the transaction id, ``.``, the loop key."""
    scan = _scan_field_by_field(request)
    return f"{transaction_id(request, 's3cret', scan)}.{loop_key(request, 's3cret', scan)}"


@settings(max_examples=800)
@example(headers=_USUAL)
@example(headers=[("Via", _VIAS[3]), *_USUAL[1:]])
@example(headers=[("Via", _VIAS[2]), *_USUAL[1:]])
@example(headers=[*_USUAL[:4], ("CSeq", "x")])
@example(headers=[("Via", _VIAS[0]), ("From", _FROMS[7]), *_USUAL[2:]])
@example(headers=[("Via", _VIAS[0]), ("From", _FROMS[10]), *_USUAL[2:]])
@example(headers=[("Via", _VIAS[0]), ("From", _FROMS[11]), *_USUAL[2:]])
@example(headers=[("Via", _VIAS[0]), ("f", _FROMS[3]), *_USUAL[2:], ("Route", "<sip:p;lr>")])
@given(headers=st.lists(_FIELDS, max_size=10))
def test_the_branch_is_the_transaction_id_and_the_loop_key(
    headers: list[tuple[str, str]],
) -> None:
    request = Request("INVITE", "sip:b@example.com", headers)
    expected = _outcome(_branch_in_two_parts, request)
    assert _outcome(lambda r: proxy_branch(r, "s3cret"), request) == expected
    assert _outcome(lambda r: proxy_branch(r, "s3cret", scan_headers(r)), request) == expected


@given(st.sampled_from(_FROMS), st.text(max_size=12))
def test_every_from_tag_gives_the_branch_in_two_parts(from_value: str, tag: str) -> None:
    for value in (from_value, f"<sip:a@b>;tag={tag}", f"<sip:a@b>;tag={tag};x"):
        request = Request("INVITE", "sip:b@example.com", [*_USUAL[:1], ("From", value)])
        request.add("CSeq", "3 INVITE")
        assert proxy_branch(request, "s3cret") == _branch_in_two_parts(request)
