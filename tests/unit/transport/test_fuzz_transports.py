# mypy: disable-error-code="no-untyped-call"
"""Hostile payloads through the real transport protocols and the real dispatcher.

WebSocket: arbitrary text and binary messages, fragmented or not, and
arbitrary bytes in place of frames, go through the real autobahn server
protocol (`WebSocketListener`, in memory: `StringTransport` and
`MemoryReactorClock`) into the real `Dispatcher` and `Responder`. Nothing
may raise out of ``dataReceived`` or be logged as a failure; malformed SIP is
dropped or answered (400, 416, 501, 505); the connection stays open and
answers a valid OPTIONS afterwards (after broken framing: the connection
closes and the socket serves a new one). UDP and TCP: arbitrary datagrams
and arbitrarily cut streams, same rules; the OPTIONS shortcut of UDP
sockets answers exactly as the general path does, or declines.
"""

from __future__ import annotations

import base64
import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import provider

from sipsock.apps import Dispatcher, Responder
from sipsock.config import WebSocketSettings
from sipsock.sip import Response, parse
from sipsock.sockdef import parse_row
from sipsock.transport.stream import StreamListener
from sipsock.transport.ws import WebSocketListener
from tests.fuzz_targets import ANSWER_CODES, VALID_OPTIONS, fuzz_datagram, fuzz_options
from tests.sip_inputs import STREAM_ITEMS, mutated

FUZZ = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PEER = IPv4Address("TCP", "192.0.2.9", 40000)
OPTIONS_WS = VALID_OPTIONS.replace(b"SIP/2.0/UDP", b"SIP/2.0/WS")


@contextmanager
def no_failures_logged() -> Iterator[list[LogEvent]]:
    """Collect every event logged with a failure; fail if there was one."""
    failures: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield failures
    finally:
        globalLogPublisher.removeObserver(observe)
    if failures:
        failures[0]["log_failure"].raiseException()


# -- WebSocket ----------------------------------------------------------------------------


class TcpTransport(StringTransport):
    """`StringTransport` that, like a real TCP transport, lets autobahn unregister no producer."""

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


def ws_listener() -> WebSocketListener:
    return WebSocketListener(
        parse_row(3, "ws:10.0.0.1:8080"),
        7,
        Dispatcher(Responder()),
        reactor=MemoryReactorClock(),
        idle_timeout=60.0,
        websocket=WebSocketSettings(ping_interval=0),
    )


def ws_connect(listener: WebSocketListener) -> tuple[Any, StringTransport]:
    """A new connection through the opening handshake; the transport is cleared."""
    proto = listener.build_protocol()
    transport = TcpTransport(peerAddress=PEER)
    proto.makeConnection(transport)
    key = base64.b64encode(os.urandom(16)).decode()
    proto.dataReceived(
        (
            "GET / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: sip\r\nOrigin: https://phone.example.com\r\n\r\n"
        ).encode()
    )
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    transport.clear()
    return proto, transport


def frame(opcode: int, payload: bytes, *, final: bool = True) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    first = (0x80 if final else 0) | opcode
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + mask + masked


def fragments(opcode: int, payload: bytes, sizes: list[int]) -> bytes:
    """``payload`` as one message cut in frames of ``sizes`` (a first frame, continuations)."""
    pieces: list[bytes] = []
    position = 0
    for size in sizes:
        if position >= len(payload):
            break
        pieces.append(payload[position : position + size])
        position += size
    pieces.append(payload[position:])
    out = b""
    for index, piece in enumerate(pieces):
        out += frame(opcode if index == 0 else 0x0, piece, final=index == len(pieces) - 1)
    return out


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while len(data) >= 2:
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, offset = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return frames


def check_replies(data: bytes) -> list[Response]:
    """Every frame the server sent is a SIP response we may send; return them."""
    responses = []
    for opcode, payload in server_frames(data):
        assert opcode in (0x1, 0x2), f"server sent opcode {opcode:#x}: {payload!r}"
        if payload == b"\r\n":
            continue
        response = parse(payload)
        assert isinstance(response, Response)
        assert response.code in ANSWER_CODES
        responses.append(response)
    return responses


def still_serves(proto: Any, transport: StringTransport) -> None:
    """The connection is open and answers a valid OPTIONS with 200."""
    assert not transport.disconnecting
    transport.clear()
    proto.dataReceived(frame(0x1, OPTIONS_WS))
    [response] = check_replies(transport.value())
    assert response.code == 200


def text_or_binary(payload: bytes) -> int:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return 0x2
    return 0x1


WS_PAYLOADS = st.one_of(
    st.text(max_size=300).map(str.encode),
    st.binary(max_size=300),
    mutated(),
    mutated().map(lambda data: data.replace(b"SIP/2.0/UDP", b"SIP/2.0/WS")),
)


@FUZZ
@given(st.lists(WS_PAYLOADS, min_size=1, max_size=4), st.booleans())
def test_any_websocket_message_is_dropped_or_answered_and_the_connection_serves_on(
    payloads: list[bytes], binary: bool
) -> None:
    listener = ws_listener()
    with no_failures_logged():
        proto, transport = ws_connect(listener)
        for payload in payloads:
            opcode = 0x2 if binary else text_or_binary(payload)
            proto.dataReceived(frame(opcode, payload))
            replies = check_replies(transport.value())
            transport.clear()
            assert len(replies) <= 1
            assert not transport.disconnecting
        still_serves(proto, transport)


@FUZZ
@given(WS_PAYLOADS, st.lists(st.integers(0, 120), max_size=6), st.lists(st.integers(1, 90)))
def test_fragmented_and_cut_messages_get_the_answer_of_the_whole_message(
    payload: bytes, sizes: list[int], cuts: list[int]
) -> None:
    listener = ws_listener()
    with no_failures_logged():
        proto, transport = ws_connect(listener)
        opcode = text_or_binary(payload)
        proto.dataReceived(frame(opcode, payload))
        whole = [(r.code, r.call_id) for r in check_replies(transport.value())]
        transport.clear()
        stream = fragments(opcode, payload, sizes)
        position = 0
        for size in [*cuts, len(stream)]:
            proto.dataReceived(stream[position : position + size])
            position += size
        assert [(r.code, r.call_id) for r in check_replies(transport.value())] == whole
        still_serves(proto, transport)


@FUZZ
@given(st.binary(min_size=1, max_size=200), st.booleans())
def test_broken_framing_closes_only_that_connection(garbage: bytes, after_message: bool) -> None:
    listener = ws_listener()
    with no_failures_logged():
        proto, transport = ws_connect(listener)
        if after_message:
            proto.dataReceived(frame(0x1, OPTIONS_WS))
        proto.dataReceived(garbage)
        if transport.disconnecting:
            proto.connectionLost(Failure(ConnectionError("closed")))
        else:
            proto.dataReceived(frame(0x1, OPTIONS_WS))
        other, other_transport = ws_connect(listener)
        still_serves(other, other_transport)


# -- UDP ------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=300)
@given(st.one_of(st.binary(max_size=600), mutated()))
def test_any_datagram_is_dropped_or_answered_once_and_the_socket_serves_on(data: bytes) -> None:
    with no_failures_logged():
        fuzz_datagram(data)


OPTIONS_LINES = VALID_OPTIONS.split(b"\r\n")[1:-2]
SPELLINGS = {b"Via": b"v", b"From": b"f", b"To": b"t", b"Call-ID": b"i", b"Content-Length": b"l"}
VARIANTS = [
    b"Via: SIP/2.0/UDP [2001:db8::7]:5070;branch=z9hG4bK-6;received=192.0.2.1",
    b"Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK-a, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-b",
    b'From: "Alice \\"A\\"" <sip:a@example.com>;tag=9',
    b"To: <sip:svc@127.0.0.1>;tag=given",
    b"Contact: <sip:a@192.0.2.7:5070>;expires=60, <sip:b@example.com>",
    b"Route: <sip:p1.example.com;lr>",
    b"X-Extra: anything, at all",
    b"Max-Forwards: 0",
    b"CSeq: 4294967295 OPTIONS",
    b"Content-Type: application/sdp",
]


@st.composite
def options_variants(draw: st.DrawFn) -> bytes:
    """A well-formed OPTIONS, its headers reordered, respelled and mixed with other valid ones."""
    lines = list(draw(st.permutations(OPTIONS_LINES)))
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(VARIANTS)))
    respelled = []
    for line in lines:
        name, _, value = line.partition(b": ")
        if draw(st.booleans()):
            name = SPELLINGS.get(name, name.lower())
        respelled.append(name + draw(st.sampled_from([b": ", b":", b" : ", b":\t"])) + value)
    if draw(st.integers(0, 9)) == 0:
        del respelled[draw(st.integers(0, len(respelled) - 1))]
    return b"\r\n".join([VALID_OPTIONS.split(b"\r\n")[0], *respelled, b"", b""])


@settings(FUZZ, max_examples=300)
@given(st.one_of(mutated(), options_variants()))
def test_the_options_shortcut_sends_what_the_general_path_sends_or_declines(data: bytes) -> None:
    with no_failures_logged():
        fuzz_options(data)


# -- TCP ------------------------------------------------------------------------------------


@FUZZ
@given(st.lists(STREAM_ITEMS, min_size=1, max_size=5), st.lists(st.integers(1, 200)))
def test_any_tcp_stream_is_answered_or_closed_and_the_socket_serves_on(
    items: list[bytes], cuts: list[int]
) -> None:
    listener = StreamListener(
        parse_row(2, "tcp:10.0.0.1:5060"),
        5,
        Dispatcher(Responder()),
        reactor=MemoryReactorClock(),
        idle_timeout=60.0,
    )
    stream = b"".join(items)
    with no_failures_logged():
        proto = listener.build_protocol()
        transport = StringTransport(peerAddress=PEER)
        proto.makeConnection(transport)
        position = 0
        for size in [*cuts, len(stream)]:
            if transport.disconnecting:
                break
            proto.dataReceived(stream[position : position + size])
            position += size
        written = transport.value()
        # Status lines only: a 400's reason may quote a request line ending in "SIP/2.0 ".
        for code in re.findall(rb"(?:\A|\r\n)SIP/2\.0 (\d{3}) ", written):
            assert int(code) in ANSWER_CODES
        if transport.disconnecting:
            proto.connectionLost(Failure(ConnectionError("closed")))
        proto = listener.build_protocol()
        transport = StringTransport(peerAddress=PEER)
        proto.makeConnection(transport)
        proto.dataReceived(VALID_OPTIONS.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
        assert transport.value().startswith(b"SIP/2.0 200 ")
