"""Header validation decides the name rules once per sequence of header names.

`sipsock.sip.checks._PLANS` remembers, per sequence of header names, that
the names are tokens, that no single header repeats and that every required
header is there, and where the values the other rules read are. Checked
here against the rules read field by field (the code it replaced): the same
verdict, the same first fault and reason, cold and with the plan remembered.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsock.sip import Message, Request, SipParseError, checks
from sipsock.sip.grammar import canonical_name, is_token, parse_number, split_values
from sipsock.sip.via import check_via


def field_by_field(message: Message) -> tuple[int, str]:
    """`checks._check_headers` as it was: one pass collecting values, then the rules."""
    keys = [canonical_name(field) for field, _ in message.headers]
    first: dict[str, str] = {}
    repeated: set[str] = set()
    vias: list[str] = []
    addresses: list[str] = []
    for (field, value), key in zip(message.headers, keys, strict=True):
        if not is_token(field):
            raise SipParseError(f"malformed header name {field!r}", status=400)
        if key in first:
            repeated.add(key)
        else:
            first[key] = value
        if key == "via":
            vias.append(value)
        elif key in ("contact", "route", "record-route"):
            addresses.append(value)
    for key in checks._SINGLE_HEADERS:
        if key in repeated:
            raise SipParseError(f"more than one {key} header", status=400)
    for key in checks._REQUIRED_HEADERS:
        if key not in first:
            raise SipParseError(f"no {key} header", status=400)
    for value in vias:
        for item in split_values(value):
            check_via(item)
    cseq = checks.parse_cseq(first["cseq"])
    call_id = first["call-id"]
    if not call_id:
        raise SipParseError("no Call-ID header", status=400)
    if not call_id.strip():
        raise SipParseError("empty Call-ID", status=400)
    max_forwards = first.get("max-forwards")
    if max_forwards is not None and parse_number(max_forwards) is None:
        raise SipParseError(f"malformed Max-Forwards {max_forwards!r}", status=400)
    checks.check_address_rules(first["from"])
    checks.check_address_rules(first["to"])
    for value in addresses:
        for item in split_values(value):
            if item != "*":
                checks.check_address_rules(item)
    return cseq


NAMES = st.sampled_from(
    [
        "Via", "v", "VIA", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Max-Forwards",
        "Contact", "m", "Route", "Record-Route", "Content-Length", "l", "Content-Type",
        "c", "Accept", "X-Foo", "Bad Name", "Bad@Name", "",
    ]
)  # fmt: skip
VALUES = st.sampled_from(
    [
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", "SIP/2.0/UDP a, SIP/2.0/TCP b",
        "SIP/2.0/UDP", "<sip:a@b>;tag=1", "sipp <sip:a@b>", "<sip:a@b>, <sip:c@d>", "*",
        "<nope>", "1 INVITE", "2 BYE", "x INVITE", "abc@host", "", " ", "70", "seventy",
        "0", "application/sdp", "\"q\" <sip:x>;p=v",
    ]
)  # fmt: skip
FIELDS = st.lists(st.tuples(NAMES, VALUES), max_size=12)
REQUIRED = [
    ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"),
    ("From", "<sip:a@b>;tag=1"),
    ("To", "<sip:c@d>"),
    ("Call-ID", "abc@host"),
    ("CSeq", "1 INVITE"),
]


def verdict(check: object, message: Message) -> object:
    try:
        return check(message)  # type: ignore[operator]
    except SipParseError as error:
        return error.reason, error.status


@settings(max_examples=400)
@given(FIELDS, st.booleans(), st.randoms())
def test_the_plan_gives_the_field_by_field_verdict(
    fields: list[tuple[str, str]], with_required: bool, random: object
) -> None:
    if with_required:
        fields = fields + REQUIRED
        random.shuffle(fields)  # type: ignore[attr-defined]
    message = Request("INVITE", "sip:a@b", fields)
    expected = verdict(field_by_field, message)
    checks._PLANS.clear()
    assert verdict(checks._check_headers, message) == expected  # cold
    assert verdict(checks._check_headers, message) == expected  # the plan remembered
    same_names = Request("INVITE", "sip:a@b", [(name, value) for name, value in fields])
    assert verdict(checks._check_headers, same_names) == expected


def test_a_plan_is_kept_once_per_sequence_of_names_and_only_when_the_names_pass() -> None:
    checks._PLANS.clear()
    for tag in range(3):
        fields = [*REQUIRED, ("Contact", f"<sip:a@b:{tag}>")]
        checks._check_headers(Request("INVITE", "sip:a@b", fields))
    assert list(checks._PLANS) == [("Via", "From", "To", "Call-ID", "CSeq", "Contact")]
    with pytest.raises(SipParseError, match="more than one cseq header"):
        checks._check_headers(Request("INVITE", "sip:a@b", [*REQUIRED, ("CSeq", "1 INVITE")]))
    assert len(checks._PLANS) == 1
