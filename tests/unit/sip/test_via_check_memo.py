"""`check_via` with its memo of good Vias decides every value as the patterns alone do.

The first Via of a shape that passes is remembered with its branch cut out;
every later one with another branch (a token or anything else) must pass or
be refused exactly as `_check_via` (the patterns, no memo) decides it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsock.sip import via
from sipsock.sip.errors import SipParseError
from sipsock.sip.via import _check_via, check_via

SHAPES = [
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b};rport",
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b}",
    "SIP/2.0/UDP 192.0.2.9:5061;rport;branch={b}",
    "SIP/2.0/UDP 192.0.2.9;branch={b};received=1.2.3.4",
    "SIP/2.0/UDP [2001:db8::7]:5099;branch={b};rport=7",
    "SIP / 2.0 / UDP 127.0.0.1 : 5061 ;branch={b} ; rport",
    "SIP/2.0/UDP 127.0.0.1:99999;branch={b};rport",
    "SIP/2.0/UDP 127.0.0.1:0;branch={b}",
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b};rport;branch=x",
    'SIP/2.0/UDP 127.0.0.1:5061;branch={b};maddr="a;b"',
    'SIP/2.0/UDP 127.0.0.1:5061;x="a;branch={b};c"',
    'SIP/2.0/UDP 127.0.0.1:5061;x="a;branch={b}"',
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b} ;rport",
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b}=x",
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b}[x]",
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b} x",
    "SIP/2.0/UDP 127.0.0.1:5061;branch={b},SIP/2.0/UDP h",
    "SIP/2.0/UDP;branch={b}",
]
branches = st.one_of(
    st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,20}", fullmatch=True),
    st.sampled_from(["", " ", "a b", "a,b", '"q"', "é", "a=b", "[::1]", "a:b", "\\", "x;rport"]),
    st.text(max_size=8),
)


@pytest.fixture(autouse=True)
def empty_memo() -> Iterator[None]:
    via._GOOD_VIAS.clear()
    yield
    via._GOOD_VIAS.clear()


def outcome(check: object, value: str) -> object:
    try:
        check(value)  # type: ignore[operator]
    except SipParseError as exc:
        return (exc.reason, exc.status)
    return "passed"


@settings(max_examples=400)
@given(st.sampled_from(SHAPES), branches, branches)
def test_a_remembered_via_decides_another_branch_as_the_patterns_do(
    shape: str, first: str, second: str
) -> None:
    via._GOOD_VIAS.clear()
    taught = shape.replace("{b}", first)
    assert outcome(check_via, taught) == outcome(_check_via, taught)
    value = shape.replace("{b}", second)
    assert outcome(check_via, value) == outcome(_check_via, value)


def test_a_good_via_is_remembered_with_its_branch_cut_out() -> None:
    check_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;rport")
    assert ("SIP/2.0/UDP 192.0.2.1:5060;branch=", ";rport") in via._GOOD_VIAS
    check_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-2;rport")
    assert len(via._GOOD_VIAS) == 1


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP 192.0.2.1:0;branch=z9hG4bK-1",
        "SIP/2.0/UDP 192.0.2.1:5060;branch=a b",
        "SIP/2.0/UDP 192.0.2.1:5060",
    ],
)
def test_a_refused_or_unbranched_via_is_not_remembered(value: str) -> None:
    outcome(check_via, value)
    assert not via._GOOD_VIAS
