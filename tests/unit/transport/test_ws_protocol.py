# mypy: disable-error-code="no-untyped-call"
"""WebSocket rules (pure) and the WS protocol over StringTransport with a fake clock."""

from __future__ import annotations

import base64
import os
import struct
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from sipsock.config import WebSocketSettings
from sipsock.sockdef import parse_row
from sipsock.testing import RecordingSink
from sipsock.transport.ws import (
    WebSocketListener,
    handshake_refusal,
    is_text,
    origin_allowed,
    split_origin,
)

MESSAGE = (
    b"OPTIONS sip:a@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bK1\r\n"
    b"Content-Length: 0\r\n\r\n"
)


# -- rules -------------------------------------------------------------------------


def test_split_origin_fills_in_the_default_port() -> None:
    assert split_origin("https://Phone.Example.com") == ("https", "phone.example.com", "443")
    assert split_origin("http://a.test:8080/") == ("http", "a.test", "8080")
    assert split_origin("https://[::1]:8443") == ("https", "[::1]", "8443")
    assert split_origin("null") is None
    assert split_origin("https://") is None


@pytest.mark.parametrize(
    ("origin", "allowed", "result"),
    [
        ("https://evil.example", ("*",), True),
        ("https://phone.example.com", ("https://phone.example.com",), True),
        ("https://phone.example.com:443", ("https://phone.example.com",), True),
        ("https://phone.example.com:8443", ("https://phone.example.com",), False),
        ("https://phone.example.com:8443", ("https://phone.example.com:*",), True),
        ("http://phone.example.com", ("https://phone.example.com",), False),
        ("https://a.sip.test", ("https://*.sip.test",), True),
        ("https://a.b.sip.test", ("https://*.sip.test",), True),
        ("https://sip.test", ("https://*.sip.test",), False),
        ("https://evilsip.test", ("https://*.sip.test",), False),
        ("null", ("https://phone.example.com",), False),
    ],
)
def test_origin_patterns(origin: str, allowed: tuple[str, ...], result: bool) -> None:
    assert origin_allowed(origin, allowed) is result


def test_handshake_refusals() -> None:
    strict = WebSocketSettings(allowed_origins=("https://phone.example.com",))
    assert handshake_refusal(["sip"], "https://phone.example.com", strict) is None
    assert handshake_refusal(["chat", "sip"], "https://phone.example.com", strict) is None
    code, reason = handshake_refusal([], "https://phone.example.com", strict) or (0, "")
    assert code == 400
    assert "offered: none" in reason
    code, reason = handshake_refusal(["sip"], None, strict) or (0, "")
    assert (code, reason) == (403, "an Origin header is required")
    code, reason = handshake_refusal(["sip"], "https://x.test", strict) or (0, "")
    assert (code, reason) == (403, "origin 'https://x.test' is not allowed")
    assert handshake_refusal(["sip"], None, WebSocketSettings(require_origin=False)) is None


def test_text_or_binary() -> None:
    assert is_text("é".encode())
    assert not is_text(b"\xff\xfe")


# -- protocol ------------------------------------------------------------------------


def make_listener(**settings: Any) -> tuple[WebSocketListener, RecordingSink, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    sink = RecordingSink()
    listener = WebSocketListener(
        parse_row(3, "ws:10.0.0.1:8080"),
        7,
        sink,
        reactor=reactor,
        idle_timeout=60.0,
        websocket=WebSocketSettings(**settings),
    )
    return listener, sink, reactor


def handshake(
    listener: WebSocketListener,
    *,
    protocol: str | None = "sip",
    origin: str | None = "https://phone.example.com",
) -> tuple[Any, StringTransport]:
    proto = listener.build_protocol()
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 40000))
    proto.makeConnection(transport)
    lines = [
        "GET / HTTP/1.1",
        "Host: 10.0.0.1:8080",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    if origin:
        lines.append(f"Origin: {origin}")
    proto.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
    return proto, transport


def frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, 0x80 | length) + mask + masked
    return struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length) + mask + masked


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while len(data) >= 2:
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        frames.append((opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return frames


def test_handshake_answers_with_the_sip_subprotocol() -> None:
    listener, _, _ = make_listener()
    _, transport = handshake(listener)
    head = transport.value().decode()
    assert head.startswith("HTTP/1.1 101 ")
    assert "Sec-WebSocket-Protocol: sip\r\n" in head
    assert listener.counters.connections == 1


def test_handshake_without_sip_is_refused_and_counted() -> None:
    listener, _, _ = make_listener()
    _, transport = handshake(listener, protocol=None)
    assert transport.value().startswith(b"HTTP/1.1 400 ")
    assert listener.counters.handshake_failures == 1


def test_handshake_without_origin_is_refused_by_default() -> None:
    listener, _, _ = make_listener()
    _, transport = handshake(listener, origin=None)
    assert transport.value().startswith(b"HTTP/1.1 403 ")


def test_one_frame_is_one_message_and_replies_are_text_frames() -> None:
    listener, sink, _ = make_listener()
    proto, transport = handshake(listener)
    transport.clear()
    proto.dataReceived(frame(0x1, MESSAGE) + frame(0x2, MESSAGE))
    assert [data for data, _ in sink.messages] == [MESSAGE, MESSAGE]
    origin = sink.messages[0][1]
    assert origin.peer == ("192.0.2.9", 40000)
    assert (origin.slot, origin.sdef.proto) == (7, "ws")
    origin.reply(b"SIP/2.0 200 OK\r\n\r\n")
    origin.reply(b"SIP/2.0 200 OK\r\n\r\n\xff")
    assert server_frames(transport.value()) == [
        (0x1, b"SIP/2.0 200 OK\r\n\r\n"),
        (0x2, b"SIP/2.0 200 OK\r\n\r\n\xff"),
    ]
    assert listener.counters.received == 2
    assert listener.counters.sent == 2


def test_connection_is_not_picked_by_send_before_the_handshake() -> None:
    listener, _, reactor = make_listener()
    proto = listener.build_protocol()
    proto.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 40000)))
    listener.send(b"INVITE", ("192.0.2.9", 40000))
    assert len(reactor.tcpClients) == 1  # a new connection, not the handshaking one


def test_server_pings_and_drops_a_peer_without_pong() -> None:
    listener, _, clock = make_listener(ping_interval=30.0, ping_timeout=10.0)
    proto, transport = handshake(listener)
    transport.clear()
    clock.advance(30)
    [(opcode, payload)] = server_frames(transport.value())
    assert opcode == 0x9
    proto.dataReceived(frame(0xA, payload))  # the pong
    clock.advance(10)
    assert not transport.disconnecting
    transport.clear()
    clock.advance(30)
    [(opcode, _)] = server_frames(transport.value())
    assert opcode == 0x9
    clock.advance(10)
    assert transport.disconnecting


def test_crlf_keepalive_gets_crlf() -> None:
    listener, sink, _ = make_listener()
    proto, transport = handshake(listener)
    transport.clear()
    proto.dataReceived(frame(0x1, b"\r\n\r\n"))
    assert server_frames(transport.value()) == [(0x1, b"\r\n")]
    assert sink.messages == []


def test_oversize_message_fails_the_connection_and_counts_a_limit_hit() -> None:
    listener, sink, _ = make_listener(max_message_size=1024)
    proto, transport = handshake(listener)
    transport.clear()
    proto.dataReceived(frame(0x1, b"x" * 2000))
    [(opcode, payload)] = server_frames(transport.value())
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1009)
    proto.connectionLost(Failure(ConnectionError("closed")))
    assert (listener.counters.limit_oversize, listener.counters.parse_errors) == (1, 0)
    assert listener.counters.connections == 0
    assert sink.messages == []
