"""parse() and the message model: framing rules, header access, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsock.sip import Request, Response, SipParseError, make_response, parse

OPTIONS = (
    b"OPTIONS sip:a.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n"
    b"v: SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKdef, SIP/2.0/UDP 192.0.2.3\r\n"
    b"To: <sip:a.example.com>\r\n"
    b'f: "Me, Myself" <sip:me@example.com>;tag=1\r\n'
    b"i: call-1@example.com\r\n"
    b"CSeq: 7 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def options() -> Request:
    message = parse(OPTIONS)
    assert isinstance(message, Request)
    return message


def test_request_fields_are_read() -> None:
    message = options()
    assert (message.method, message.uri, message.version) == (
        "OPTIONS",
        "sip:a.example.com",
        "SIP/2.0",
    )
    assert message.call_id == "call-1@example.com"
    assert message.cseq == (7, "OPTIONS")
    assert message.max_forwards == 70
    assert message.error_response is None


def test_lookup_is_case_insensitive_and_knows_compact_forms() -> None:
    message = options()
    assert message.get("CALL-ID") == message.get("i") == "call-1@example.com"
    assert message.get("From") == '"Me, Myself" <sip:me@example.com>;tag=1'
    assert message.get("X-Absent") is None


def test_get_all_splits_multi_value_headers_outside_quotes() -> None:
    message = options()
    assert len(message.get_all("Via")) == 3
    assert message.get_all("From") == ['"Me, Myself" <sip:me@example.com>;tag=1']


def test_set_add_remove_keep_order_and_spelling() -> None:
    message = options()
    message.add("Via", "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKtop", first=True)
    assert message.top_via.host == "198.51.100.1"
    assert message.remove_first("Via") == "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKtop"
    assert message.remove_first("v") == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport"
    assert message.top_via.host == "192.0.2.2"
    message.set("Max-Forwards", "69")
    assert message.max_forwards == 69
    message.add("X-Tail", "1")
    assert message.headers[-1] == ("X-Tail", "1")
    assert message.remove("via") == 1
    with pytest.raises(SipParseError):
        _ = message.top_via


def test_serialize_fixes_content_length() -> None:
    message = options()
    message.body = b"hello"
    wire = bytes(message)
    assert b"Content-Length: 5\r\n\r\nhello" in wire
    assert parse(wire).body == b"hello"


def test_serialize_adds_missing_content_length() -> None:
    message = Request("OPTIONS", "sip:x", [("Call-ID", "1")])
    assert bytes(message) == b"OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 0\r\n\r\n"


def test_lf_only_line_ends_and_folding_are_accepted() -> None:
    data = OPTIONS.replace(b"\r\n", b"\n").replace(b"CSeq: 7", b"CSeq:\n  7\n\t")
    message = parse(data)
    assert message.cseq == (7, "OPTIONS")
    assert len(message.headers) == 8


@pytest.mark.parametrize("empty_line", [b"\n\n", b"\n\r\n", b"\r\n\n"])
def test_the_first_empty_line_ends_the_header_section_before_a_later_crlf_crlf(
    empty_line: bytes,
) -> None:
    # The usual end is found with one search for CRLF CRLF; an earlier empty
    # line made with a bare LF ends the section first, and the rest is body.
    head, _, _ = OPTIONS.partition(b"\r\n\r\n")
    first, _, rest = head.partition(b"\r\n")
    data = first + b"\r\n" + rest.replace(b"Content-Length: 0", b"X-A: 1") + empty_line
    data += b"Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKlate\r\n\r\n"
    message = parse(data)
    assert message.body.startswith(b"Via: SIP/2.0/UDP 192.0.2.9")
    assert [name for name, _ in message.headers][-1] == "X-A"


@pytest.mark.parametrize("lf_only", [False, True], ids=["crlf", "lf-only"])
@pytest.mark.parametrize(
    ("was", "now"),
    [
        (b"i: call-1@example.com", b"i: call-1@example.com\rContact: <sip:evil@203.0.113.9>"),
        (b"Max-Forwards: 70", b"X-Note: \r\rtwo\r\nMax-Forwards: 70"),
        (b"To: <sip:a.example.com>", b"To: <sip:a.\rexample.com>"),
        (b"sip:a.example.com SIP", b"sip:a.example.com\r SIP"),
    ],
)
def test_a_cr_without_lf_in_the_header_section_is_dropped(
    was: bytes, now: bytes, lf_only: bool
) -> None:
    # A peer that takes a lone CR for a line end would read an injected header
    # in an answer or a forwarded copy: no status, so nothing is sent back.
    data = OPTIONS.replace(was, now, 1)
    assert data != OPTIONS
    if lf_only:
        data = data.replace(b"\r\n", b"\n")
    with pytest.raises(SipParseError, match="CR without LF in the header section") as raised:
        parse(data)
    assert raised.value.status is None


def test_a_cr_in_the_body_and_in_crlf_line_ends_is_kept() -> None:
    body = b"v=0\ra=x\r\r\n"
    data = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: %d" % len(body)) + body
    message = parse(data)
    assert message.body == body
    assert parse(data.replace(b"\r\n", b"\n", 3)).body == body


def test_leading_crlf_before_start_line_is_ignored() -> None:
    assert parse(b"\r\n\r\n" + OPTIONS) == options()


def test_missing_content_length_on_datagram_takes_rest_as_body() -> None:
    data = OPTIONS.replace(b"Content-Length: 0\r\n", b"") + b"abc"
    assert parse(data).body == b"abc"


def test_missing_content_length_on_stream_is_an_error() -> None:
    with pytest.raises(SipParseError):
        parse(OPTIONS.replace(b"Content-Length: 0\r\n", b""), datagram=False)


def test_content_length_larger_than_datagram_asks_for_400() -> None:
    with pytest.raises(SipParseError) as raised:
        parse(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 9999"))
    assert raised.value.status == 400


@pytest.mark.parametrize("value", [b"-999", b"abc", b"1 2", b""])
def test_malformed_content_length_asks_for_400(value: bytes) -> None:
    with pytest.raises(SipParseError) as raised:
        parse(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: " + value))
    assert raised.value.status == 400


def test_size_limit_is_enforced_before_parsing() -> None:
    with pytest.raises(SipParseError, match="above the limit"):
        parse(OPTIONS, max_size=10)


def test_error_reason_is_its_string() -> None:
    error = SipParseError("bad thing", status=400)
    assert (str(error), error.reason, error.status) == ("bad thing", "bad thing", 400)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"OPTIONS sip:x SIP/2.0\r\nno colon here\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\r\n continuation\r\n\r\n",
        b"SIP/2.0 99 Too Small\r\n\r\n",
        b"SIP/3.0 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ],
)
def test_unparseable_bytes_raise_sip_parse_error(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse(data)


def test_other_sip_version_in_request_asks_for_505() -> None:
    message = parse(OPTIONS.replace(b"SIP/2.0\r\nVia", b"SIP/7.0\r\nVia"))
    assert isinstance(message, Request)
    assert message.error_response == (505, "Version Not Supported")


def test_cseq_method_mismatch_of_known_method_asks_for_400() -> None:
    message = parse(OPTIONS.replace(b"7 OPTIONS", b"7 INVITE"))
    assert isinstance(message, Request)
    assert message.error_response == (400, "Bad Request")


# -- Hypothesis ---------------------------------------------------------------

TOKEN = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"),
    min_size=1,
    max_size=12,
)
VALUE = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"),
    max_size=40,
).map(lambda text: text.strip(" \t"))
HEADERS = st.lists(
    st.tuples(TOKEN.filter(lambda n: n.lower() not in ("content-length", "l")), VALUE),
    max_size=8,
)


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    body = draw(st.binary(max_size=64))
    headers = draw(HEADERS)
    headers.insert(draw(st.integers(0, len(headers))), ("Content-Length", str(len(body))))
    if draw(st.booleans()):
        uri = "sip:" + draw(TOKEN) + "@example.com"
        return Request(draw(TOKEN), uri, headers, body)
    reason = draw(VALUE)
    return Response(draw(st.integers(100, 699)), reason, headers, body)


@given(messages())
def test_parse_of_serialize_gives_the_same_message(message: Request | Response) -> None:
    assert parse(bytes(message)) == message
    assert parse(bytes(message), datagram=False) == message


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_sip_parse_error(data: bytes) -> None:
    try:
        message = parse(data)
    except SipParseError:
        return
    if isinstance(message, Request):
        assert message.error_response is None or message.error_response[0] >= 400
    bytes(message)


@given(messages(), st.binary(max_size=40))
def test_arbitrary_header_bytes_never_crash_validation(
    message: Request | Response, junk: bytes
) -> None:
    wire = bytes(message)
    cut = wire.index(b"\r\n") + 2
    try:
        parsed = parse(wire[:cut] + b"X: " + junk.replace(b"\n", b" ") + b"\r\n" + wire[cut:])
        parsed.validate()
    except SipParseError:
        pass


def test_make_response_copies_dialog_headers_and_adds_to_tag() -> None:
    response = make_response(options(), 200, "OK", to_tag="abc", headers=[("Allow", "OPTIONS")])
    assert (response.code, response.reason) == (200, "OK")
    names = [name for name, _ in response.headers]
    assert names == ["Via", "v", "To", "f", "i", "CSeq", "Allow", "Content-Length"]
    assert response.get("To") == "<sip:a.example.com>;tag=abc"
    assert response.get("Content-Length") == "0"
    assert parse(bytes(response)) == response


def test_make_response_keeps_existing_to_tag() -> None:
    request = options()
    request.set("To", "<sip:a.example.com>;tag=old")
    assert make_response(request, 486, "Busy Here").get("To") == "<sip:a.example.com>;tag=old"


def test_make_response_100_gets_no_to_tag() -> None:
    assert make_response(options(), 100, "Trying").get("To") == "<sip:a.example.com>"


def test_make_response_generates_to_tag_when_not_given() -> None:
    assert ";tag=" in (make_response(options(), 404, "Not Found").get("To") or "")


def test_make_response_with_body_sets_content_length() -> None:
    response = make_response(options(), 200, "OK", body=b"v=0\r\n")
    assert response.content_length == 5
    assert bytes(response).endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")
