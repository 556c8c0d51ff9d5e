"""StreamFramer: messages out of a TCP/TLS byte stream."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsock.sip import (
    KEEPALIVE_PING,
    FramingKind,
    SipFramingError,
    SipParseError,
    StreamFramer,
    parse,
)


def message(body: bytes = b"", call_id: str = "1") -> bytes:
    return (
        f"OPTIONS sip:x SIP/2.0\r\nCall-ID: {call_id}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_one_read_with_many_messages_gives_them_in_order() -> None:
    stream = message(b"a", "1") + message(b"bb", "2") + message(b"", "3")
    out = StreamFramer().feed(stream)
    assert out == [message(b"a", "1"), message(b"bb", "2"), message(b"", "3")]
    assert [parse(m, datagram=False).call_id for m in out] == ["1", "2", "3"]


def test_message_split_across_reads_is_returned_when_complete() -> None:
    framer = StreamFramer()
    data = message(b"hello body")
    assert framer.feed(data[:10]) == []
    assert framer.feed(data[10:-3]) == []
    assert framer.feed(data[-3:]) == [data]
    assert framer.pending == 0


def test_keepalive_ping_is_reported_and_pong_ignored() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [KEEPALIVE_PING]
    assert framer.feed(b"\r\n" + message()) == [message()]
    assert KEEPALIVE_PING == b"\r\n\r\n"


def test_partial_ping_waits_for_more() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r") == []
    assert framer.feed(b"\n") == [KEEPALIVE_PING]


def test_header_section_above_limit_raises_framing_error() -> None:
    with pytest.raises(SipFramingError):
        StreamFramer(max_header_size=100).feed(b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 30)


def test_message_above_limit_raises_framing_error() -> None:
    with pytest.raises(SipFramingError):
        StreamFramer(max_message_size=100).feed(message(b"x" * 200)[:80])


def test_missing_content_length_raises_framing_error() -> None:
    with pytest.raises(SipFramingError):
        StreamFramer().feed(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n")


@pytest.mark.parametrize("value", [b"-999", b"abc", b"5\r\nl: 6"])
def test_bad_content_length_raises_framing_error(value: bytes) -> None:
    with pytest.raises(SipFramingError):
        StreamFramer().feed(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: " + value + b"\r\n\r\n")


def test_garbage_start_line_raises_framing_error() -> None:
    with pytest.raises(SipFramingError):
        StreamFramer().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_a_message_above_the_limit_carries_its_header_section_and_513() -> None:
    header = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 5000\r\n\r\n"
    with pytest.raises(SipFramingError) as raised:
        StreamFramer(max_message_size=1000).feed(b"\r\n" + header + b"xx")
    assert (raised.value.status, raised.value.header) == (513, header)


@pytest.mark.parametrize("lines", [b"", b"Content-Length: abc\r\n", b"l: 1\r\nl: 2\r\n"])
def test_a_broken_content_length_carries_the_header_section_and_400(lines: bytes) -> None:
    header = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n" + lines + b"\r\n"
    with pytest.raises(SipFramingError) as raised:
        StreamFramer().feed(header)
    assert (raised.value.status, raised.value.header) == (400, header)


def test_errors_before_a_whole_header_section_carry_no_header() -> None:
    with pytest.raises(SipFramingError) as raised:
        StreamFramer(max_header_size=100).feed(b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 30)
    assert (raised.value.status, raised.value.header) == (None, None)
    with pytest.raises(SipFramingError) as raised:
        StreamFramer().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raised.value.header is None


@pytest.mark.parametrize(
    ("framer", "data", "kind"),
    [
        (
            StreamFramer(max_header_size=100),
            b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 30,
            FramingKind.OVERSIZE_HEADER,
        ),
        (
            StreamFramer(max_header_size=100),
            b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 30 + b"\r\n",
            FramingKind.OVERSIZE_HEADER,
        ),
        (
            StreamFramer(max_message_size=100),
            b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 500\r\n\r\n",
            FramingKind.OVERSIZE_MESSAGE,
        ),
        (StreamFramer(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", FramingKind.NOT_SIP),
        (StreamFramer(), b"OPTIONS sip:x SIP/2.0\r\n\r\n", FramingKind.NO_CONTENT_LENGTH),
        (
            StreamFramer(),
            b"OPTIONS sip:x SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\n",
            FramingKind.CONFLICTING_CONTENT_LENGTH,
        ),
        (
            StreamFramer(),
            b"OPTIONS sip:x SIP/2.0\r\nContent-Length: abc\r\n\r\n",
            FramingKind.BAD_CONTENT_LENGTH,
        ),
    ],
)
def test_every_framing_error_says_its_kind(
    framer: StreamFramer, data: bytes, kind: FramingKind
) -> None:
    with pytest.raises(SipFramingError) as raised:
        framer.feed(data)
    assert raised.value.kind is kind


def test_framing_error_is_a_parse_error() -> None:
    assert issubclass(SipFramingError, SipParseError)


def test_compact_content_length_frames_the_body() -> None:
    data = b"OPTIONS sip:x SIP/2.0\r\nl: 3\r\n\r\nabc"
    assert StreamFramer().feed(data + data) == [data, data]


STREAM_ITEMS = st.lists(
    st.one_of(
        st.binary(max_size=30).map(message),
        st.just(KEEPALIVE_PING),
    ),
    max_size=6,
)


@given(STREAM_ITEMS, st.lists(st.integers(1, 40), max_size=30))
def test_any_chunking_gives_the_same_messages(items: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(items)
    chunks: list[bytes] = []
    position = 0
    for size in cuts:
        chunks.append(stream[position : position + size])
        position += size
    chunks.append(stream[position:])
    framer = StreamFramer()
    out = [item for chunk in chunks for item in framer.feed(chunk)]
    assert out == items
    assert framer.pending == 0


def test_messages_cut_before_an_unframeable_one_travel_with_the_error() -> None:
    good = [message(b"", str(n)) for n in range(5)]
    bad = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: bad\r\n\r\n"  # no Content-Length
    framer = StreamFramer()
    with pytest.raises(SipFramingError) as caught:
        framer.feed(b"".join(good) + b"\r\n\r\n" + bad)
    assert caught.value.messages == [*good[:5], KEEPALIVE_PING]
    assert caught.value.status == 400
    assert framer.pending == 0


def test_rfc4475_dblreq_on_a_stream_gives_both_requests_before_the_trailing_bytes() -> None:
    data = (Path(__file__).parents[2] / "data" / "rfc4475" / "dblreq.dat").read_bytes()
    with pytest.raises(SipFramingError) as caught:
        StreamFramer().feed(data)
    methods = [parse(m, datagram=False).start_line().split(" ")[0] for m in caught.value.messages]
    assert methods == ["REGISTER", "INVITE"]


def test_body_longer_than_content_length_is_read_as_the_next_message() -> None:
    first = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 2\r\n\r\nab"
    second = message(b"", "2")
    assert StreamFramer().feed(first + second) == [first, second]


def test_a_read_of_exactly_one_message_comes_back_without_a_copy() -> None:
    data = message(b"body")
    framer = StreamFramer()
    out = framer.feed(data)
    assert out == [data] and out[0] is data
    assert framer.pending == 0


def test_the_rest_of_a_read_waits_for_the_next_one_whatever_was_pending() -> None:
    framer = StreamFramer()
    first, second = message(b"a", "1"), message(b"bb", "2")
    assert framer.feed(first + second[:7]) == [first]
    assert framer.pending == 7
    assert framer.feed(second[7:] + first[:3]) == [second]
    assert framer.feed(first[3:]) == [first]
    assert framer.pending == 0


@pytest.mark.parametrize(
    ("start_line", "kind"),
    [
        (b"l: x SIP/2.0", FramingKind.BAD_CONTENT_LENGTH),
        (b"Content-Length: 9 SIP/2.0\r\nContent-Length: 4", FramingKind.CONFLICTING_CONTENT_LENGTH),
    ],
)
def test_a_start_line_shaped_like_a_content_length_is_read_as_one(
    start_line: bytes, kind: FramingKind
) -> None:
    data = start_line + b"\r\nCall-ID: 1\r\n\r\nbody"
    with pytest.raises(SipFramingError) as caught:
        StreamFramer().feed(data)
    assert caught.value.kind is kind


def test_content_length_lines_are_found_whatever_their_spelling() -> None:
    head = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n"
    for line in (b"content-LENGTH :  4 ", b"L:4", b"l:\t0004"):
        data = head + line + b"\r\n\r\nbody"
        assert StreamFramer().feed(data) == [data]
    with pytest.raises(SipFramingError) as caught:
        StreamFramer().feed(head + b"l: 4\r\nContent-Length: 5\r\n\r\nbody!")
    assert caught.value.kind is FramingKind.CONFLICTING_CONTENT_LENGTH
