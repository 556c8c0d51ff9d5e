"""The fast paths of the SIP core give the same answers as the general code.

``parse_via`` tries a strict pattern before the general grammar, header lookups
use canonical names remembered from the parse, ``serialize`` joins the fields
when Content-Length is already right, and ``find_header_end`` is one search.
Each is checked here against the slow, obvious way.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsock.sip import (
    Request,
    Response,
    SipParseError,
    Via,
    canonical_name,
    make_response,
    parse,
)
from sipsock.sip.parser import find_header_end
from sipsock.sip.response import response_bytes
from sipsock.sip.via import _parse_any_via, parse_via

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"From: <sip:alice@example.com>;tag=1\r\n"
    b"Call-ID: c1@example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 3\r\n"
    b"\r\n"
    b"v=0"
)


def invite() -> Request:
    message = parse(INVITE)
    assert isinstance(message, Request)
    return message


def first_value(headers: list[tuple[str, str]], name: str) -> str | None:
    """``Message.get`` done the obvious way."""
    key = canonical_name(name)
    return next((value for field, value in headers if canonical_name(field) == key), None)


# -- lookups follow every change of ``headers`` ---------------------------------


def test_get_sees_a_field_inserted_in_place() -> None:
    message = invite()
    assert message.call_id == "c1@example.com"
    message.headers.insert(0, ("i", "c2@example.com"))
    assert message.call_id == "c2@example.com"


def test_get_sees_a_field_replaced_in_place() -> None:
    message = invite()
    index = [name for name, _ in message.headers].index("CSeq")
    message.headers[index] = ("CSeq", "2 INVITE")
    assert message.cseq == (2, "INVITE")


def test_get_sees_a_new_headers_list() -> None:
    message = invite()
    message.headers = [("Call-ID", "other")]
    assert message.call_id == "other"
    assert message.get("Via") is None


def test_get_sees_a_removed_field() -> None:
    message = invite()
    message.remove("Max-Forwards")
    assert message.max_forwards is None


HEADER_NAMES = st.sampled_from(
    ["Via", "v", "VIA", "Call-ID", "i", "call-id", "Content-Length", "l", "X-Extra", "x-extra"]
)
FIELDS = st.lists(st.tuples(HEADER_NAMES, st.sampled_from(["1", "2", "3"])), max_size=8)


@given(FIELDS, FIELDS, st.sampled_from(["via", "V", "Call-ID", "I", "l", "X-EXTRA", "To"]))
def test_get_equals_a_scan_after_any_edit(
    before: list[tuple[str, str]], after: list[tuple[str, str]], name: str
) -> None:
    message = Request("OPTIONS", "sip:a", before)
    assert message.get(name) == first_value(before, name)
    message.headers[:] = after
    assert message.get(name) == first_value(after, name)


# -- serialize -------------------------------------------------------------------


def test_serialize_of_an_unchanged_message_gives_the_bytes_back() -> None:
    assert bytes(invite()) == INVITE


def test_serialize_fixes_a_content_length_edited_in_place() -> None:
    message = invite()
    index = [name for name, _ in message.headers].index("Content-Length")
    message.headers[index] = ("Content-Length", "99")
    assert b"\r\nContent-Length: 3\r\n\r\nv=0" in bytes(message)


def test_serialize_follows_a_new_body() -> None:
    message = invite()
    message.body = b"v=0\r\n"
    assert bytes(message).endswith(b"\r\nContent-Length: 5\r\n\r\nv=0\r\n")


def test_serialize_keeps_one_content_length_of_two() -> None:
    message = invite()
    message.headers.append(("l", "3"))
    assert bytes(message).count(b"Content-Length") == 1
    assert b"\r\nl:" not in bytes(message)


# -- make_response hands its canonical names over ---------------------------------


def test_response_lookups_follow_edits() -> None:
    response = make_response(invite(), 200, "OK", to_tag="t1")
    assert response.get("to") == "<sip:bob@example.com>;tag=t1"
    assert response.get("content-length") == "0"
    response.headers.insert(0, ("t", "<sip:x@example.com>"))
    assert response.get("To") == "<sip:x@example.com>"


def test_response_with_extra_headers_serializes_them() -> None:
    response = make_response(invite(), 486, "Busy Here", to_tag="t", headers=[("Retry-After", "5")])
    assert response.get("retry-after") == "5"
    again = parse(bytes(response))
    assert isinstance(again, Response)
    assert again == response


def test_a_to_tag_function_is_called_only_when_the_to_has_no_tag() -> None:
    calls: list[int] = []

    def tag() -> str:
        calls.append(1)
        return "made"

    response = make_response(invite(), 501, "Not Implemented", to_tag=tag)
    assert (response.get("to"), calls) == ("<sip:bob@example.com>;tag=made", [1])
    in_dialog = invite()
    in_dialog.set("To", "<sip:bob@example.com>;tag=theirs")
    response = make_response(in_dialog, 501, "Not Implemented", to_tag=tag)
    assert (response.get("to"), calls) == ("<sip:bob@example.com>;tag=theirs", [1])
    assert make_response(invite(), 100, "Trying", to_tag=tag).get("to") == "<sip:bob@example.com>"
    assert calls == [1]


def test_a_parsed_or_made_message_keeps_its_own_copy_of_the_remembered_fields() -> None:
    message = invite()
    response = make_response(message, 200, "OK", to_tag="t")
    for built in (message, response):
        assert built._keys_of == built.headers
        assert built._keys_of is not built.headers
        built.headers.append(("Subject", "later"))  # edited in place: lookups follow
        assert built.get("subject") == "later"


@pytest.mark.parametrize("code", [100, 200, 420, 501])
@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Server", "sipsock/1")],
        [("Allow", "OPTIONS, INVITE"), ("Server", "x")],
        [("Content-Length", "99")],
        [("l", "7"), ("Subject", "\udcff surrogate")],
    ],
)
@pytest.mark.parametrize("body", [b"", b"v=0\r\n"])
@pytest.mark.parametrize("to", ["<sip:bob@example.com>", "<sip:bob@example.com>;tag=t0"])
def test_response_bytes_are_the_bytes_of_make_response(
    code: int, headers: list[tuple[str, str]], body: bytes, to: str
) -> None:
    request = invite()
    request.set("To", to)
    request.headers.insert(1, ("v", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKsecond"))
    made = make_response(request, code, "Some Reason", to_tag="t1", headers=headers, body=body)
    given = response_bytes(request, code, "Some Reason", to_tag="t1", headers=headers, body=body)
    assert given == bytes(made)


# -- parse_via: strict pattern first, general grammar otherwise -------------------

TOKENS = st.text(st.sampled_from("abcXYZ019-.!%*_+`'~"), min_size=1, max_size=6)
HOSTS = st.text(st.sampled_from("abz.-09"), min_size=1, max_size=12)
PARAM_VALUES = st.text(st.sampled_from("ab9-.:[]"), min_size=1, max_size=6)


@st.composite
def plain_vias(draw: st.DrawFn) -> str:
    value = f"{draw(TOKENS)}/{draw(TOKENS)}/{draw(TOKENS)} {draw(HOSTS)}"
    if draw(st.booleans()):
        value += f":{draw(st.integers(0, 999999))}"
    for _ in range(draw(st.integers(0, 3))):
        value += ";" + draw(TOKENS)
        if draw(st.booleans()):
            value += "=" + draw(PARAM_VALUES)
    return value


def via_or_error(parser: Callable[[str], Via], value: str) -> Via | tuple[str, str, int | None]:
    try:
        return parser(value)
    except SipParseError as error:
        return ("error", error.reason, error.status)


@given(plain_vias())
def test_parse_via_equals_the_general_grammar(value: str) -> None:
    assert via_or_error(parse_via, value) == via_or_error(_parse_any_via, value)


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/udp host.example.com:5060;branch=z9hG4bK1;rport",
        "SIP / 2.0 / UDP host;branch=z9hG4bK1",
        "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1",
        'SIP/2.0/UDP host;x="a;b=c"',
        "SIP/2.0/UDP host:0",
        "SIP/2.0/UDP host:123456",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP  host",
    ],
)
def test_parse_via_of_unusual_values_equals_the_general_grammar(value: str) -> None:
    assert via_or_error(parse_via, value) == via_or_error(_parse_any_via, value)


# -- find_header_end ---------------------------------------------------------------


def find_header_end_by_two_finds(data: bytes, start: int = 0) -> tuple[int, int]:
    """The earlier definition: first LF LF or LF CR LF, whichever comes first."""
    crlf = data.find(b"\n\r\n", start)
    limit = crlf + 1 if crlf >= 0 else len(data)
    lf = data.find(b"\n\n", start, limit)
    if lf >= 0:
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 3
    return -1, -1


@given(st.binary(max_size=30).map(lambda b: bytes(b"\r\na"[x % 3] for x in b)), st.integers(0, 5))
def test_find_header_end_equals_two_finds(data: bytes, start: int) -> None:
    assert find_header_end(data, start) == find_header_end_by_two_finds(data, start)
    assert find_header_end(bytearray(data), start) == find_header_end_by_two_finds(data, start)


# -- validation: one pass, the usual address shape by one pattern ---------------

from sipsock.sip.checks import _match_plain_address, check_address_rules  # noqa: E402

ADDRESS_PIECES = ['"', "<", ">", " ", ";", "=", "sip:", "a", "b@c", "\\", ",", "\t", "x y", "1:"]


@given(st.lists(st.sampled_from(ADDRESS_PIECES), max_size=12).map("".join))
def test_address_pattern_accepts_only_what_the_rules_accept(text: str) -> None:
    candidates = [text, f"<sip:{text}>", f'"{text}" <sip:a@b>', f"{text} <sip:a@b>;tag={text}"]
    for value in candidates:
        if _match_plain_address(value) is not None:
            check_address_rules(value)  # raises if the pattern let a bad value through


@pytest.mark.parametrize(
    "value",
    [
        "<sip:bob@example.com>",
        "Bob <sip:bob@example.com>;tag=1",
        '"Bob B" <sip:bob@example.com>;tag=1;x',
        "sipp <sip:sipp@127.0.0.1:5061;transport=UDP>",
    ],
)
def test_usual_addresses_take_the_pattern(value: str) -> None:
    assert _match_plain_address(value) is not None
    check_address_rules(value)


def with_headers(*lines: str) -> bytes:
    return (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        + "".join(f"{line}\r\n" for line in lines)
        + "Content-Length: 0\r\n\r\n"
    ).encode()


GOOD = [
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc",
    "From: <sip:alice@example.com>;tag=1",
    "To: <sip:bob@example.com>",
    "Call-ID: c1@example.com",
    "CSeq: 1 INVITE",
]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        # Several faults: the first rule in the documented order names the fault.
        (["CSeq: 2 INVITE", "Max-Forwards: x", "Contact: bad uri"], "more than one cseq header"),
        (["Via: nonsense", "Max-Forwards: x"], "malformed Via value 'nonsense'"),
        (["Max-Forwards: x", "Contact: <nope>"], "malformed Max-Forwards 'x'"),
        (["Contact: <nope>", "Route: <sip:a>, <also>"], "URI without a scheme in '<nope>'"),
        (["Route: <sip:a>, <also>"], "URI without a scheme in '<also>'"),
        (["Bad Name: 1", "CSeq: 3 INVITE"], "malformed header name 'Bad Name'"),
    ],
)
def test_validation_refuses_for_the_first_fault_in_order(extra: list[str], reason: str) -> None:
    request = parse(with_headers(*GOOD, *extra))
    with pytest.raises(SipParseError) as caught:
        request.validate()
    assert caught.value.reason == reason
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["Contact: <nope>"], "URI without a scheme in '<nope>'"),
        (["CSeq: 99999999999 INVITE"], "CSeq number 99999999999 above 2**32-1"),
        (["Route: <sip:a>, bad uri"], "URI with ? , or spaces must be in <> in 'bad uri'"),
    ],
)
def test_remembered_good_values_change_no_verdict(extra: list[str], reason: str) -> None:
    from sipsock.sip import checks

    for memo in (checks._GOOD_URIS, checks._GOOD_ADDRESSES, checks._CSEQS):
        memo.clear()
    lines = [line for line in GOOD if not (extra[0].startswith("CSeq") and line.startswith("CSeq"))]
    for _ in range(3):  # cold, then with every good value remembered
        parse(with_headers(*GOOD)).validate()
        with pytest.raises(SipParseError) as caught:
            parse(with_headers(*lines, *extra)).validate()
        assert caught.value.reason == reason
    assert "<sip:bob@example.com>" in checks._GOOD_ADDRESSES
    assert "sip:bob@example.com" in checks._GOOD_URIS
    assert checks._CSEQS.get("1 INVITE") == (1, "INVITE")
    # A value with a tag is new with every call: never remembered.
    assert not any("tag" in value for value in checks._GOOD_ADDRESSES)
    assert not any(key.startswith(("<nope>", "bad")) for key in checks._GOOD_ADDRESSES)


def test_stamping_the_top_via_keeps_the_remembered_header_names() -> None:
    from sipsock.sip import apply_received

    request = parse(INVITE)
    assert isinstance(request, Request)
    apply_received(request, "198.51.100.7", 5099)
    # The names did not change: no recomputation on the next lookup.
    assert request._keys_of == request.headers
    assert request.get("via") == (
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport=5099;received=198.51.100.7"
    )
    assert request.top_via.received == "198.51.100.7"


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport",
        "SIP/2.0/UDP 192.0.2.1:0;branch=x",
        "SIP/2.0/UDP 192.0.2.1:65536",
        "SIP/2.0/UDP [::1]:5060 ; branch = x",
        "SIP/2.0/UDP",
        'SIP/2.0/tcp host;received=1.2.3.4;x="q"',
        "",
    ],
)
def test_check_via_refuses_what_parse_via_refuses(value: str) -> None:
    from sipsock.sip.via import check_via

    try:
        parse_via(value)
    except SipParseError as exc:
        with pytest.raises(SipParseError) as caught:
            check_via(value)
        assert (caught.value.reason, caught.value.status) == (exc.reason, exc.status)
    else:
        check_via(value)


@given(st.text(alphabet="aBvVlLiI-x", min_size=0, max_size=6), FIELDS)
def test_get_with_any_spelling_seen_or_not_equals_a_scan(
    name: str, fields: list[tuple[str, str]]
) -> None:
    from sipsock.sip.grammar import KNOWN_NAMES

    KNOWN_NAMES.pop(name, None)  # a spelling not seen yet, then seen
    message = Request("OPTIONS", "sip:a", [*fields, (name, "mine")])
    for _ in range(2):
        assert message.get(name) == first_value([*fields, (name, "mine")], name)
