"""Hostile WebSocket peers against WS and WSS sockets, on real loopback connections.

A ping flood from a peer that never reads its pongs, an opening handshake
that never ends, and plain HTTP requests aimed at autobahn's status page
(version disclosure, open redirect). Blocking clients run in the reactor's
thread pool while the listener serves.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from zope.interface import provider

from sipsock.config import LimitSettings, WebSocketSettings
from sipsock.transport.stream import StreamListener
from tests.integration.transport.test_limits_loopback import watch_backlog
from tests.integration.transport.test_transport_loopback import options
from tests.integration.transport.test_ws_transport import WsSockets, in_thread, one_options, reactor
from tests.net import free_port
from tests.polling import wait_until
from tests.sip_probe import options_request, status_of
from tests.tlsfiles import TestPKI


@pytest_twisted.async_yield_fixture()
async def ws(tmp_path: Path) -> AsyncIterator[WsSockets]:
    opened = WsSockets(TestPKI(tmp_path / "pki"))
    yield opened
    for listener in opened.listeners:
        await listener.stop()


#: Enough pings that their pongs overflow every kernel buffer on the way (4 MB
#: of client frames), bounded in count and time.
PING_BATCH = 1000
MAX_PINGS = 400_000
FLOOD_SECONDS = 30.0


def _connect(port: int, tls: ssl.SSLContext | None) -> socket.socket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(5.0)
    raw.connect(("127.0.0.1", port))
    if tls is not None:
        return tls.wrap_socket(raw, server_hostname="localhost")
    return raw


def _upgrade(port: int, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: sip\r\nOrigin: https://phone.example.com\r\n{extra}\r\n"
    ).encode()


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def ping_flood(port: int, tls: ssl.SSLContext | None) -> tuple[int, float | None]:
    """Open a WebSocket, then send pings and never read; (pings sent, seconds until cut)."""
    sock = _connect(port, tls)
    try:
        sock.sendall(_upgrade(port))
        head = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 101"), head[:100]
        mask = os.urandom(4)
        payload = os.urandom(125)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        frame = struct.pack("!BB", 0x89, 0x80 | len(payload)) + mask + masked
        batch = frame * PING_BATCH
        sent = 0
        start = time.monotonic()
        while sent < MAX_PINGS and time.monotonic() - start < FLOOD_SECONDS:
            try:
                sock.sendall(batch)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                return sent, time.monotonic() - start
            except TimeoutError:
                # The server stopped reading us: it cut (or will cut) the connection.
                return sent, time.monotonic() - start
            sent += PING_BATCH
        return sent, None
    finally:
        sock.close()


@pytest.mark.parametrize(("proto", "interval"), [("ws", 0.0), ("wss", 0.0), ("ws", 30.0)])
@pytest_twisted.ensureDeferred
async def test_ping_flood_from_a_peer_that_never_reads_is_cut(
    ws: WsSockets, proto: str, interval: float
) -> None:
    port = free_port()
    limit = 65536
    _, listener = ws.open(
        f"{proto}:127.0.0.1:{port}",
        websocket=WebSocketSettings(require_origin=False, ping_interval=interval),
        limits=LimitSettings(max_pending_send=limit),
    )
    assert isinstance(listener, StreamListener)
    tls = ws.pki.client_context() if proto == "wss" else None
    flood: Deferred[tuple[int, float | None]] = threads.deferToThread(ping_flood, port, tls)
    peak = await watch_backlog(listener, flood)
    sent, cut_after = await flood
    print(f"\n{proto}: {sent} pings, cut after {cut_after} s, peak queued pongs {peak} bytes")
    await wait_until(lambda: listener.counters.limit_send_buffer == 1, what="send_buffer hit")
    # Past the limit once the kernel refuses output, past twice it in any case.
    assert peak <= 2 * limit + 200
    await wait_until(lambda: listener.counters.connections == 0)
    # The socket still serves.
    assert (await in_thread(lambda: one_options(port, tls=tls)))[0] == 200


def _answer_so_far(sock: socket.socket) -> bytes:
    """What the server sent so far (b"" for nothing yet); b"<closed>" once it hung up.

    (TLS 1.3 session tickets make the socket readable without any answer.)
    """
    if not select.select([sock], [], [], 0)[0]:
        return b""
    sock.setblocking(False)
    try:
        return sock.recv(4096) or b"<closed>"
    except (ssl.SSLWantReadError, BlockingIOError):
        return b""
    finally:
        sock.settimeout(5.0)


def endless_handshake(port: int, tls: ssl.SSLContext | None, total: int) -> tuple[bytes, float]:
    """Send an opening handshake whose headers never end (at most ``total`` bytes).

    Returns the server's answer and the seconds until it hung up.
    """
    sock = _connect(port, tls)
    start = time.monotonic()
    sent = 0
    answer = b""
    try:
        sock.sendall(_upgrade(port).rstrip(b"\r\n") + b"\r\n")
        line = b"X-Padding: " + b"a" * 1000 + b"\r\n"
        try:
            # Until the server answers or hangs up.
            while sent < total and not (answer := _answer_so_far(sock)):
                sock.sendall(line)
                sent += len(line)
            sock.settimeout(20.0)
            while chunk := sock.recv(4096):
                answer += chunk
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, TimeoutError) as exc:
            print(f"handshake flood: {exc!r} after {sent} bytes")
        return answer, time.monotonic() - start
    finally:
        sock.close()


@pytest.mark.parametrize("proto", ["ws", "wss"])
@pytest_twisted.ensureDeferred
async def test_opening_handshake_is_capped_like_a_tcp_header_section(
    ws: WsSockets, proto: str
) -> None:
    port = free_port()
    _, listener = ws.open(f"{proto}:127.0.0.1:{port}")
    tls = ws.pki.client_context() if proto == "wss" else None
    answer, seconds = await in_thread(lambda: endless_handshake(port, tls, 8_000_000))
    print(f"\n{proto}: answer {answer[:40]!r}, closed after {seconds:.2f} s")
    # Refused on the spot, long before the 10 s header timeout.
    assert seconds < 5.0
    assert listener.counters.limit_oversize == 1
    assert listener.counters.limit_header_timeout == 0
    if answer:  # (a peer still sending may see a reset before the answer)
        assert answer.startswith((b"HTTP/1.1 431", b"<closed>")), answer[:200]
    await wait_until(lambda: listener.counters.connections == 0)
    # A handshake with large (but bounded) headers, with a message sent right
    # behind it in the same write, still works.
    assert await in_thread(lambda: big_handshake_then_options(port, tls)) == 200


def big_handshake_then_options(port: int, tls: ssl.SSLContext | None) -> int | None:
    sock = _connect(port, tls)
    try:
        request = options_request("127.0.0.1", port, sock.getsockname()[1], "WS")
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(request))
        frame = struct.pack("!BBH", 0x81, 0x80 | 126, len(request)) + mask + masked
        sock.sendall(_upgrade(port, f"X-Cookie: {'c' * 12000}\r\n") + frame * 5)
        head = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 101"), head[:100]
        data = head.partition(b"\r\n\r\n")[2]
        while len(data) < 4 or len(data) < 4 + (
            data[1] & 0x7F if data[1] & 0x7F < 126 else struct.unpack("!H", data[2:4])[0]
        ):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        length = data[1] & 0x7F
        offset = 2
        if length == 126:
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        return status_of(data[offset : offset + length])
    finally:
        sock.close()


def plain_get(port: int, tls: ssl.SSLContext | None, target: str) -> bytes:
    sock = _connect(port, tls)
    try:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        answer = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
        return answer
    finally:
        sock.close()


@pytest.mark.parametrize("proto", ["ws", "wss"])
@pytest_twisted.ensureDeferred
async def test_plain_http_gets_a_bare_refusal_no_status_page_no_redirect(
    ws: WsSockets, proto: str
) -> None:
    port = free_port()
    ws.open(f"{proto}:127.0.0.1:{port}")
    tls = ws.pki.client_context() if proto == "wss" else None
    for target in (
        "/",
        "/?redirect=https%3A%2F%2Fevil.example%2F",
        "/?redirect=https%3A%2F%2Fevil.example%2F&after=0",
    ):
        answer = await in_thread(lambda: plain_get(port, tls, target))  # noqa: B023
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert status in (400, 426), head
        lowered = answer.lower()
        assert b"location:" not in lowered and b"evil.example" not in lowered, answer
        assert b"autobahn" not in lowered and b"<html" not in lowered, answer
        assert body == b"", body[:200]

    def server_header() -> bytes:
        sock = _connect(port, tls)
        try:
            sock.sendall(_upgrade(port))
            return _read_head(sock)
        finally:
            sock.close()

    head = await in_thread(server_header)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"autobahn" not in head.lower(), head


@pytest_twisted.ensureDeferred
async def test_refused_handshakes_are_logged_folded(ws: WsSockets) -> None:
    port = free_port()
    _, listener = ws.open(f"ws:127.0.0.1:{port}")
    lines: list[str] = []

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        lines.append(formatEvent(event) or "")

    globalLogPublisher.addObserver(observe)
    try:
        for _ in range(5):
            await in_thread(lambda: endless_handshake(port, None, 1_000_000))
            await in_thread(lambda: plain_get(port, None, "/"))
        await wait_until(lambda: listener.counters.limit_oversize == 5)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert sum("handshake above" in line for line in lines) == 1, lines
    # autobahn's own per-connection lines are off.
    assert not [
        line for line in lines if "dropping connection" in line or "failing WebSocket" in line
    ]


class _EndlessHead(Protocol):
    """A 'WebSocket server' whose answer head never ends."""

    started = False

    def dataReceived(self, data: bytes) -> None:
        if self.transport is not None and not self.started:
            self.started = True
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\n")
            self.pump()

    def pump(self) -> None:
        if self.transport is not None and self.connected:
            self.transport.write(b"X-Padding: " + b"a" * 4000 + b"\r\n")
            reactor.callLater(0.001, self.pump)


@pytest_twisted.ensureDeferred
async def test_outbound_handshake_answer_is_capped_too(ws: WsSockets) -> None:
    factory = Factory.forProtocol(_EndlessHead)
    server = reactor.listenTCP(0, factory, interface="127.0.0.1")
    peer_port = server.getHost().port
    try:
        _, sender = ws.open(f"ws:127.0.0.1:{free_port()}")
        started = reactor.seconds()
        with pytest.raises(ConnectionError):
            await sender.send(options(peer_port, "x", "WS"), ("127.0.0.1", peer_port))
        # Refused at the cap, long before the 10 s handshake timeout.
        assert reactor.seconds() - started < 5.0
        assert sender.counters.limit_oversize == 1
    finally:
        await server.stopListening()
