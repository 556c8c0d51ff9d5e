"""`stamp_by_template` stamps a top Via exactly as `stamp_via_value` does.

The first Via of a shape teaches the template; every later one with another
branch (a token or anything else) must come out as `stamp_via_value` gives
it, or raise the same way.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsock.sip.errors import SipParseError
from sipsock.sip.via import stamp_by_template, stamp_via_value

SHAPES = [
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b};rport",
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b}",
    "SIP/2.0/UDP 192.0.2.9:5061;rport;branch={b}",
    "SIP/2.0/UDP 192.0.2.9;branch={b};received=1.2.3.4",
    "SIP/2.0/UDP [2001:db8::7]:5099;branch={b};rport=7",
    "SIP/2.0/TCP host.example.com;branch={b};rport;received=10.0.0.1",
    "SIP / 2.0 / UDP 127.0.0.1 : 5061 ;branch={b} ; rport",
    "SIP/2.0/udp 127.0.0.1:05061;branch={b};rport",
    "SIP/2.0/UDP 127.0.0.1:99999;branch={b};rport",
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b};rport;branch=x",
    'SIP/2.0/UDP 127.0.0.1:5061;branch={b};maddr="a;b"',
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b} ;rport",
]
PEERS = [("127.0.0.1", 5061), ("192.0.2.9", 4000), ("2001:db8::7", 5099), ("10.0.0.1", 1)]
branches = st.one_of(
    st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,20}", fullmatch=True),
    st.sampled_from(["", " ", "a b", "a,b", '"q"', "é", "a=b", "rport", "x;rport"]),
    st.text(max_size=8),
)


def outcome(stamp: object, value: str, host: str, port: int) -> object:
    try:
        return stamp(value, host, port)  # type: ignore[operator]
    except (SipParseError, ValueError) as exc:
        return type(exc)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("peer", PEERS)
def test_known_shapes_stamp_alike(shape: str, peer: tuple[str, int]) -> None:
    for branch in ["z9hG4bK-1", "z9hG4bK-2", "abc", "z9hG4bK.x~y", "z9hG4bK-3"]:
        value = shape.format(b=branch)
        assert outcome(stamp_by_template, value, *peer) == outcome(stamp_via_value, value, *peer)


@settings(max_examples=300, deadline=None)
@given(
    shape=st.sampled_from(SHAPES),
    peer=st.sampled_from(PEERS),
    first=branches,
    second=branches,
)
def test_any_branch_after_a_template_stamps_alike(
    shape: str, peer: tuple[str, int], first: str, second: str
) -> None:
    for branch in (first, second, "z9hG4bK-fixed", second):
        value = shape.format(b=branch)
        assert outcome(stamp_by_template, value, *peer) == outcome(stamp_via_value, value, *peer)


def test_a_peers_requests_are_stamped_by_their_template() -> None:
    from sipsock.sip import via

    via._TEMPLATES.clear()
    first = stamp_by_template("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport", "10.0.0.1", 7)
    assert len(via._TEMPLATES) == 1
    second = stamp_by_template("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2;rport", "10.0.0.1", 7)
    assert first == "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport=7;received=10.0.0.1"
    assert second == "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2;rport=7;received=10.0.0.1"
    assert len(via._TEMPLATES) == 1
