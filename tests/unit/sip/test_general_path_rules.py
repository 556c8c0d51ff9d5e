"""Rules of the general path written inline for speed, pinned to the rules they replace.

Each test keeps the old rule as the reference and checks the inline form
gives the same answer for any input (issue 19: fewer calls per message).
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from sipsock.sip import SipParseError, checks, parse, parser, response
from sipsock.sip.grammar import KNOWN_NAMES, canonical_name, parse_number

#: Text made of the characters these rules look at, and a few others.
_texts = st.text(alphabet=st.sampled_from(" \t\r\n0123456789a:٣²０"), max_size=40)


@given(_texts)
@example("0")
@example("٣")
@example("²")
@example("")
def test_max_forwards_digits_rule_is_parse_number(text: str) -> None:
    """`_check_headers` refuses a Max-Forwards exactly when `parse_number` gives None."""
    inline = text.isascii() and text.isdigit()
    assert inline == (parse_number(text) is not None)


_HEAD = (
    "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
    "To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
)


@given(
    lengths=st.lists(st.sampled_from(["0", "00", " 0", "0 ", "1", "x", "", "-0"]), max_size=3),
    spelling=st.sampled_from(["Content-Length", "l", "content-length"]),
    body=st.sampled_from([b"", b"a", b"\r\n"]),
    datagram=st.booleans(),
)
def test_the_usual_empty_body_is_read_as_before(
    lengths: list[str], spelling: str, body: bytes, datagram: bool
) -> None:
    """Content-Length: 0 (one field) gives an empty body; anything else goes through `_body`."""
    head = _HEAD + "".join(f"{spelling}: {value}\r\n" for value in lengths)
    data = head.encode() + b"\r\n" + body
    try:
        message = parse(data, datagram=datagram)
    except SipParseError as error:
        got: object = ("fault", error.reason, error.status)
    else:
        got = message.body
    # The reference: the body rule as parse called it before.
    try:
        headers = [
            (name, value.strip(" \t"))
            for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:-1])
        ]
        keys = [KNOWN_NAMES.get(n) or canonical_name(n) for n, _ in headers]
        start = len(head) + 2
        want: object = parser._body(data, start, parser._content_lengths(headers, keys), datagram)
    except SipParseError as error:
        want = ("fault", error.reason, error.status)
    assert got == want


@given(
    salt=st.text(max_size=20),
    call_id=st.text(max_size=30),
    from_value=st.none() | st.text(max_size=30),
)
@example(salt="0f1e2d3c4b5a6978", call_id="1-1234@127.0.0.1", from_value="<sip:a@b>;tag=1")
@example(salt="s", call_id="\udc80\udcff", from_value="\U0001f600")
def test_the_responders_tag_is_stable_tag(salt: str, call_id: str, from_value: str | None) -> None:
    """`stable_tag_from(salted_hash(salt), ...)` is `stable_tag(salt, ...)`, faults alike."""
    try:
        want: object = response.stable_tag(salt, call_id, from_value)
    except UnicodeError as error:
        want = type(error)
    try:
        got: object = response.stable_tag_from(response.salted_hash(salt), call_id, from_value)
    except UnicodeError as error:
        got = type(error)
    assert got == want


@given(st.text(alphabet=st.sampled_from(" \t;=tagTAG<>:@x"), max_size=30))
@example("<sip:a@b>")
@example("<sip:a@b>;tag=1")
@example("<sip:a@b> ;TAG =1")
def test_the_to_tag_test_skips_the_expression_only_without_an_equals_sign(value: str) -> None:
    """`_copied_fields` reads a To without ``=`` as tagless, as the expression does."""
    inline = "=" in value and response._has_tag(value) is not None
    assert inline == response.has_tag(value)


def _split_fields_reference(lines: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """`parser._split_fields` as it was before it remembered repeated lines."""
    headers: list[tuple[str, str]] = []
    keys: list[str] = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not (colon and name):
            raise SipParseError("header line without a colon or without a name")
        name = name.rstrip(" \t")
        headers.append((name, value.strip(" \t")))
        keys.append(KNOWN_NAMES.get(name) or canonical_name(name))
    return headers, keys


_header_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
                "v:x",
                "Call-ID: 1@h",
                "i : 2",
                "From: <sip:a@b>;tag=1",
                "f:<sip:a@b>",
                "To: <sip:c@d>",
                "t:\t<sip:c@d> ",
                "Max-Forwards: 70",
                "l: 0",
                "Content-Length:0",
                "X-Odd :\t y",
                " : x",
                "NoColon",
                ":value",
            ]
        ),
        st.text(alphabet=st.sampled_from(" \t:aVvIiFfTtlL-0\udc80٣"), max_size=20),
    ),
    max_size=8,
)


@given(_header_lines)
@example(["Max-Forwards: 70", "Max-Forwards: 70"])
@example(["Via: a", "NoColon"])
@example([" :x"])
def test_split_fields_with_its_memo_of_lines_is_the_old_loop(lines: list[str]) -> None:
    """`_split_fields` gives the old loop's fields and keys, or its fault, also from its memo."""
    try:
        want: object = _split_fields_reference(lines)
    except SipParseError as error:
        want = ("fault", error.reason, error.status)
    for _ in range(2):  # the second time, the lines remembered the first time come from the memo
        try:
            got: object = parser._split_fields(lines)
        except SipParseError as error:
            got = ("fault", error.reason, error.status)
        assert got == want


def test_split_fields_remembers_repeated_lines_but_not_per_call_ones() -> None:
    """Lines that change per request or call (Via, Call-ID, a tag) are not kept."""
    parser._LINES.clear()
    lines = [
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        "Call-ID: 1@h",
        "f: <sip:a@b>;tag=1",
        "To: <sip:c@d>;tag=2",
        "l: 0",
        "t: <sip:c@d>",
    ]
    parser._split_fields(lines)
    assert list(parser._LINES) == ["l: 0", "t: <sip:c@d>"]
    assert parser._LINES["l: 0"] == (("l", "0"), "content-length")


def _address_fault(value: str) -> object:
    """`check_address`'s fault for ``value`` (None when it passes), its memo cleared first."""
    checks._GOOD_ADDRESSES.clear()
    try:
        checks.check_address(value)
    except SipParseError as error:
        return ("fault", error.reason, error.status)
    return None


_address_texts = st.text(alphabet=st.sampled_from(' \t\x85<>"\\;=:@,?sipabtg-'), max_size=24)
_tags = st.text(alphabet=st.sampled_from("az09-.!%*_+`'~"), min_size=1, max_size=6)


@given(_address_texts, _tags)
@example("<sip:a@b>", "1")
@example("sip:a@b", "1")
@example("<sip:a@b> ", "x")
@example('"a;b" <sip:a@b>;p="q"', "1")
@example("sip:a@b;p", "1")
def test_a_good_address_followed_by_a_token_tag_is_good(untagged: str, tag: str) -> None:
    """What lets `_check_headers` take a From/To whose untagged part is remembered good."""
    if _address_fault(untagged) is None:
        assert _address_fault(f"{untagged};tag={tag}") is None


@given(st.lists(st.tuples(_address_texts, st.none() | _tags), min_size=1, max_size=4))
@example([("<sip:a@b>", "1"), ("<sip:a@b>", "2")])
@example([("sip:a@b", "1"), ("sip:a@b", ";")])
def test_from_and_to_with_tags_are_refused_as_the_rule_refuses_them(
    values: list[tuple[str, str | None]],
) -> None:
    """A request's From and To are refused (with the same reason) or taken as `check_address`
    alone decides, also when the untagged part of an earlier one is remembered."""
    checks._GOOD_ADDRESSES.clear()
    for untagged, tag in values:
        value = untagged if tag is None else f"{untagged};tag={tag}"
        for from_value, to_value in ((value, "<sip:c@d>"), ("<sip:c@d>;tag=9", value)):
            request = (
                "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1\r\n"
                f"From: {from_value}\r\nTo: {to_value}\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
            )
            memo = list(checks._GOOD_ADDRESSES)
            want = _address_fault(value.strip(" \t"))
            checks._GOOD_ADDRESSES.clear()
            for key in memo:
                checks._GOOD_ADDRESSES.remember(key, True, len(key))
            try:
                parsed = parse(request.encode("utf-8", "surrogateescape"))
            except SipParseError:
                continue  # not a request line and fields the parser reads
            try:
                parsed.validate()
            except SipParseError as error:
                got: object = ("fault", error.reason, error.status)
            else:
                got = None
            assert got == want


@given(_address_texts, _tags)
@example("<sip:a@b>", "1")
@example('"a" <sip:a@b>;x=y', "1")
@example("<sip:a;tag=b>", "c")
def test_a_usual_address_without_its_last_token_tag_is_good(untagged: str, tag: str) -> None:
    """What lets `check_address` remember the untagged part of a usual tagged address unread."""
    value = f"{untagged};tag={tag}"
    if checks._match_plain_address(value) is not None and value.rfind(";tag=") == len(untagged):
        assert _address_fault(untagged) is None
