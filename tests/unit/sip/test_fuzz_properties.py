"""Hypothesis properties of the SIP core under hostile input.

`parse` and everything done with what it returns (checks, Via, routing,
`make_response`) may only ever raise `SipParseError`; `StreamFramer.feed`
only `SipFramingError`, with the same messages for any cutting of a stream
and a buffer bounded by its limits. The properties themselves live in
`tests.fuzz_targets`, shared with the atheris runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipsock.sip import (
    Request,
    Response,
    SipFramingError,
    SipParseError,
    StreamFramer,
    Via,
    make_response,
    parse,
    parse_via,
    route_response,
    split_values,
)
from sipsock.sip.checks import check_address, parse_cseq
from sipsock.sip.grammar import HUGE_NUMBER, NUMBER_DIGITS, parse_number
from sipsock.sip.routing import RELIABLE_TRANSPORTS
from tests.fuzz_targets import (
    FRAMER_MAX_MESSAGE,
    VALID_OPTIONS,
    check_chunking,
    exercise_message,
    feed_all,
    fuzz_parse,
)
from tests.fuzzer import RFC4475_DATA
from tests.sip_inputs import NUMBERS, SIP_NOISE, STREAM_ITEMS, mutated, sip_message

#: Slow shared machine: no per-example deadline; the example counts bound the time.
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- parse and the checks ------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_raise_sip_parse_error(data: bytes) -> None:
    fuzz_parse(data)


@FUZZ
@given(SIP_NOISE)
def test_sip_shaped_noise_parses_or_raises_sip_parse_error(data: bytes) -> None:
    fuzz_parse(b"OPTIONS sip:x SIP/2.0\r\n" + data + b"\r\n\r\n")
    fuzz_parse(b"SIP/2.0 200 OK\r\n" + data + b"\r\n\r\n")
    fuzz_parse(data)


@settings(FUZZ, max_examples=300)
@given(mutated())
def test_mutated_messages_parse_or_raise_sip_parse_error(data: bytes) -> None:
    fuzz_parse(data)


@pytest.mark.parametrize("path", sorted(RFC4475_DATA.glob("*.dat")), ids=lambda path: path.stem)
def test_torture_messages_keep_every_property(path: Path) -> None:
    fuzz_parse(path.read_bytes())


@FUZZ
@given(NUMBERS)
def test_numbers_of_any_length_are_answered_not_crashed_on(number: str) -> None:
    wire = (
        VALID_OPTIONS.replace(b"CSeq: 1 ", f"CSeq: {number} ".encode())
        .replace(b"Max-Forwards: 70", f"Max-Forwards: {number}".encode())
        .replace(b";rport", f";rport={number};ttl={number}".encode())
    )
    message = parse(wire)
    assert isinstance(message, Request)
    error = message.error_response
    digits = number.lstrip("0") or "0"
    value = int(digits) if len(digits) <= NUMBER_DIGITS else HUGE_NUMBER
    assert (error is None) == (value <= 2**32 - 1)
    assert message.max_forwards == value
    via = message.top_via
    assert via.rport == (value if 0 < value <= 65535 else None)
    assert via.ttl == (value if value <= 255 else None)
    exercise_message(message)
    for length in (number, "0"):
        body = VALID_OPTIONS.replace(b"Content-Length: 0", f"Content-Length: {length}".encode())
        try:
            parse(body, datagram=False)
        except SipParseError as exc:
            assert exc.status == 400


@given(st.text(max_size=40))
def test_parse_number_reads_ascii_digits_only(text: str) -> None:
    value = parse_number(text)
    if text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"
        assert value == (int(digits) if len(digits) <= NUMBER_DIGITS else HUGE_NUMBER)
    else:
        assert value is None


@given(st.text(max_size=60))
def test_cseq_of_any_text_is_read_or_refused_with_400(text: str) -> None:
    try:
        number, method = parse_cseq(text)
    except SipParseError as exc:
        assert exc.status == 400
    else:
        assert 0 <= number <= 2**32 - 1
        assert method


@given(st.text(max_size=80))
def test_address_of_any_text_is_accepted_or_refused_with_400(text: str) -> None:
    try:
        check_address(text)
    except SipParseError as exc:
        assert exc.status == 400


@given(st.text(st.sampled_from('ab,"<>\\ ;'), max_size=40))
def test_split_values_never_loses_a_character_that_is_not_a_separator(text: str) -> None:
    values = split_values(text)
    assert values
    assert len(values) == len(split_values(", ".join(values)))
    if not any(ch in text for ch in '"<\\'):
        assert values == [part.strip() for part in text.split(",")]


# -- Via and routing ------------------------------------------------------------------

TOKEN = st.text(st.sampled_from("abcXYZ019-.!%*_+`'~"), min_size=1, max_size=8)
HOSTS = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,20}", fullmatch=True),
)
PARAM_NAMES = st.one_of(st.sampled_from(["branch", "received", "rport", "maddr", "ttl"]), TOKEN)
PARAM_VALUES = st.one_of(
    st.none(),
    TOKEN,
    HOSTS.filter(lambda host: ":" not in host),
    st.integers(0, 70000).map(str),
    st.from_regex(r'"[a-z ;,=]{0,10}"', fullmatch=True),
)
VIAS = st.builds(
    Via,
    protocol=st.just("SIP/2.0"),
    transport=st.sampled_from(["UDP", "TCP", "TLS", "WS", "WSS", "SCTP", "X-NEW"]),
    host=HOSTS,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    params=st.lists(st.tuples(PARAM_NAMES, PARAM_VALUES), max_size=5).map(tuple),
)


@FUZZ
@given(VIAS)
def test_via_text_parses_back_to_the_same_via(via: Via) -> None:
    assert parse_via(str(via)) == via


@FUZZ
@given(st.text(max_size=80))
def test_via_of_any_text_is_read_or_refused_with_400(text: str) -> None:
    try:
        via = parse_via(text)
    except SipParseError as exc:
        assert exc.status == 400
    else:
        assert parse_via(str(via)) == via


@FUZZ
@given(VIAS, st.booleans())
def test_every_via_has_a_route_with_a_valid_port(via: Via, connection_open: bool) -> None:
    route = route_response(via, connection_open=connection_open)
    assert 0 < route.port <= 65535
    assert route.transport == via.transport
    if via.transport in RELIABLE_TRANSPORTS and connection_open:
        assert route.reuse_connection
    if route.reuse_connection or route.drop:
        assert via.transport in RELIABLE_TRANSPORTS


# -- make_response ----------------------------------------------------------------------


@FUZZ
@given(VIAS, st.integers(100, 699), st.text(max_size=12).filter(str.isprintable))
def test_a_response_to_any_readable_request_parses_and_routes(
    via: Via, code: int, tag: str
) -> None:
    request = parse(VALID_OPTIONS)
    assert isinstance(request, Request)
    request.set("Via", str(via))
    if tag:
        request.set("To", f"<sip:svc@127.0.0.1>;tag={tag}")
    response = make_response(request, code, "Reason")
    parsed = parse(bytes(response))
    assert isinstance(parsed, Response)
    assert parsed.code == code
    assert parsed.top_via == via
    assert parsed.call_id == request.call_id
    assert parsed.cseq == request.cseq
    assert (";tag=" in (parsed.get("to") or "")) == (bool(tag) or code != 100)
    assert route_response(parsed).transport == via.transport


# -- the stream framer -------------------------------------------------------------------


@settings(FUZZ, max_examples=300)
@given(st.lists(STREAM_ITEMS, max_size=8), st.lists(st.integers(1, 300), max_size=40))
def test_any_cutting_of_any_stream_gives_the_messages_and_error_of_one_feed(
    items: list[bytes], sizes: list[int]
) -> None:
    stream = b"".join(items)
    chunks: list[bytes] = []
    position = 0
    for size in sizes:
        chunks.append(stream[position : position + size])
        position += size
    chunks.append(stream[position:])
    check_chunking(stream, [chunk for chunk in chunks if chunk] or [b""])


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=200), max_size=30))
def test_framer_buffer_stays_within_its_limits_on_garbage(chunks: list[bytes]) -> None:
    feed_all(chunks)  # checks the bound after every feed


@FUZZ
@given(st.integers(1, 20), st.integers(1, 50))
def test_endless_header_is_cut_at_the_header_limit(step: int, count: int) -> None:
    framer = StreamFramer(max_message_size=4096, max_header_size=256)
    data = b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 200
    with pytest.raises(SipFramingError, match="header section above 256 bytes"):
        for start in range(0, len(data), step * count):
            framer.feed(data[start : start + step * count])
            assert framer.pending <= 256


def test_valid_stream_frames_exactly_at_the_limits() -> None:
    size = FRAMER_MAX_MESSAGE - len(sip_message(b"")) - 3  # Content-Length grows by 3 digits
    message = sip_message(b"z" * size)
    assert len(message) == FRAMER_MAX_MESSAGE
    messages, error_at, pending = feed_all([message, message + message[:10]])
    assert (messages, error_at, pending) == ([message, message], None, 10)
