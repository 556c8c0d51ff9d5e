"""The proxy's branch pinned to the rule it replaces.

`proxy_branch` hashes the usual request in one go instead of calling
`transaction_id` and `loop_key`: for any fields (compact names, repeated and
multi-valued Via, Route, Proxy-Require, Proxy-Authorization, odd From tags)
it gives what the two did, or the same error.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipsock.apps.proxyrules import (
    loop_key,
    proxy_branch,
    scan_headers,
    transaction_id,
)
from sipsock.sip import Request, SipParseError

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


def _branch_in_two_parts(request: Request) -> str:
    """`proxy_branch` as it was: the transaction id, ``.``, the loop key."""
    scan = scan_headers(request)
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
