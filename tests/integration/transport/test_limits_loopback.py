# mypy: disable-error-code="no-untyped-call"
"""Every limit of `[limits]` hit for real, on loopback sockets.

Connection caps per socket and per IP (TCP and TLS, refused before any
handshake), the header timeout (slowloris, TCP and WebSocket), WebSocket
frame and message sizes with the `websockets` client, a peer that stops
reading while the server writes large replies (TCP and TLS), the outbound
pool, and oversize UDP datagrams. Blocking clients run in the reactor's
thread pool while the listener serves.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from websockets.exceptions import ConnectionClosed

from sipsock.apps import Dispatcher
from sipsock.config import LimitSettings, TLSDomainSettings
from sipsock.seams import MessageSink
from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport import Listener, Origin, open_listener
from sipsock.transport.stream import OutboundLimitError, StreamListener, pending_output
from sipsock.transport.tls import TLSDomains
from tests.integration.transport.test_transport_loopback import Recorder
from tests.net import free_port
from tests.polling import wait_until
from tests.sip_probe import TcpClient, options_request, options_udp, status_of
from tests.tlsfiles import TestPKI
from tests.wsclient import ws_connect, ws_options

reactor: Any = _reactor
T = TypeVar("T")
#: A reply large enough that a few of them fill the kernel buffers.
BIG_REPLY_BODY = 60000


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking client without blocking the reactor that serves it."""
    result: T = await threads.deferToThread(call)
    return result


class FloodSink(MessageSink):
    """Answers every request with one large reply (a peer that asks a lot)."""

    def __init__(self) -> None:
        self.received = 0

    def message_received(self, data: bytes, origin: Origin) -> None:
        self.received += 1
        reply = (
            f"SIP/2.0 200 OK\r\nContent-Length: {BIG_REPLY_BODY}\r\n\r\n".encode()
            + b"x" * BIG_REPLY_BODY
        )
        origin.reply(reply)


@dataclass
class LimitSockets:
    """Listeners opened by a test (TLS ones with a trustme certificate); stopped at the end."""

    pki: TestPKI
    recorder: Recorder = field(default_factory=Recorder)
    listeners: list[Listener] = field(default_factory=list)
    domains: TLSDomains | None = None

    def open(
        self, text: str, limits: LimitSettings, sink: Any = None
    ) -> tuple[SocketDef, Listener]:
        sdef = parse_row(len(self.listeners) + 1, text)
        if sdef.proto in ("tls", "wss") and self.domains is None:
            files = self.pki.issue("server", "localhost", "127.0.0.1")
            self.domains = TLSDomains(
                [
                    TLSDomainSettings(
                        name="edge", certificate=files.certificate, private_key=files.private_key
                    )
                ]
            )
        listener = open_listener(
            sdef,
            len(self.listeners) + 1,
            sink if sink is not None else Dispatcher(self.recorder),
            reactor=reactor,
            tls=self.domains,
            limits=limits,
        )
        self.listeners.append(listener)
        return sdef, listener

    def client_tls(self) -> ssl.SSLContext:
        return self.pki.client_context()


@pytest_twisted.async_yield_fixture()
async def limited(tmp_path: Path) -> AsyncIterator[LimitSockets]:
    opened = LimitSockets(TestPKI(tmp_path / "pki"))
    yield opened
    for listener in opened.listeners:
        await listener.stop()


def closed_by_server(sock: socket.socket, wait: float = 2.0) -> bool:
    """Whether the server closed ``sock`` (EOF or reset) within ``wait`` seconds."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


def open_connections(port: int, sources: list[str]) -> list[socket.socket]:
    opened = []
    for source in sources:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        opened.append(sock)
    return opened


# -- connection caps ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tcp_connections_over_the_per_ip_cap_are_closed_at_once(
    limited: LimitSockets,
) -> None:
    port = free_port()
    _, listener = limited.open(
        f"tcp:127.0.0.1:{port}",
        LimitSettings(max_connections_per_ip=3, max_connections_per_socket=100),
    )

    def scenario() -> tuple[list[bool], list[bool], int | None]:
        first = open_connections(port, ["127.0.0.1"] * 5)
        other = open_connections(port, ["127.0.0.2"] * 2)
        try:
            # The refused ones are closed as soon as they are accepted.
            refused = [closed_by_server(s, 1.0) for s in first]
            served = [closed_by_server(s, 0.2) for s in other]
            # One of the three held connections still gets its answer.
            first[0].sendall(options_request("127.0.0.1", port, first[0].getsockname()[1], "TCP"))
            first[0].settimeout(5)
            status = status_of(first[0].recv(65535))
            return refused, served, status
        finally:
            for sock in first + other:
                sock.close()

    refused, served, status = await in_thread(scenario)
    assert sorted(refused) == [False, False, False, True, True]
    assert served == [False, False]
    assert status == 200
    assert listener.counters.limit_connections == 2


@pytest_twisted.ensureDeferred
async def test_tcp_connections_over_the_per_socket_cap_are_closed_and_slots_come_back(
    limited: LimitSockets,
) -> None:
    port = free_port()
    _, listener = limited.open(
        f"tcp:127.0.0.1:{port}",
        LimitSettings(max_connections_per_ip=4, max_connections_per_socket=4),
    )

    def fill() -> tuple[list[bool], bool]:
        held = open_connections(port, ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"])
        extra = open_connections(port, ["127.0.0.5"])
        try:
            states = [closed_by_server(s, 0.3) for s in held]
            return states, closed_by_server(extra[0], 1.0)
        finally:
            for sock in held + extra:
                sock.close()

    held_closed, extra_closed = await in_thread(fill)
    assert held_closed == [False] * 4
    assert extra_closed
    assert isinstance(listener, StreamListener)
    await wait_until(lambda: listener.counters.connections == 0)

    def after() -> int | None:
        client = TcpClient(port)
        try:
            return client.options()
        finally:
            client.close()

    assert await in_thread(after) == 200
    assert listener.counters.limit_connections == 1


@pytest_twisted.ensureDeferred
async def test_tls_connection_over_the_cap_is_closed_before_any_handshake(
    limited: LimitSockets,
) -> None:
    port = free_port()
    _, listener = limited.open(
        f"tls:127.0.0.1:{port}",
        LimitSettings(max_connections_per_ip=1, max_connections_per_socket=10),
    )
    context = limited.client_tls()

    def scenario() -> tuple[bool, bytes]:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        held = context.wrap_socket(raw, server_hostname="localhost")
        try:
            extra = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                extra.sendall(b"\x16\x03\x01\x00\x05hello")  # the start of a ClientHello
                extra.settimeout(2)
                try:
                    answer = extra.recv(100)
                except ConnectionResetError:
                    answer = b""
            finally:
                extra.close()
            return held.version() is not None, answer
        finally:
            held.close()

    handshaken, answer = await in_thread(scenario)
    assert handshaken
    assert answer == b""  # no ServerHello, no alert: closed unread
    await wait_until(lambda: listener.counters.limit_connections == 1)
    assert listener.counters.handshake_failures == 0


# -- header timeout (slowloris) ---------------------------------------------------------


def trickle(port: int, data: bytes, every: float, limit: float = 10.0) -> float | None:
    """Send ``data`` one byte every ``every`` s; seconds until the server cut (None: never)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(every)
    start = time.monotonic()
    try:
        for byte in data:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1) == b"":
                    return time.monotonic() - start
            except TimeoutError:
                pass
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - start
            if time.monotonic() - start > limit:
                break
        return None
    finally:
        sock.close()


@pytest_twisted.ensureDeferred
async def test_trickled_header_is_cut_at_the_header_timeout_while_others_are_served(
    limited: LimitSockets,
) -> None:
    port = free_port()
    _, listener = limited.open(f"tcp:127.0.0.1:{port}", LimitSettings(header_timeout=1.0))
    request = options_request("127.0.0.1", port, 5999, "TCP")
    slow: Deferred[float | None] = threads.deferToThread(trickle, port, request, 0.2)

    def normal() -> int | None:
        client = TcpClient(port)
        try:
            return client.options()
        finally:
            client.close()

    assert await in_thread(normal) == 200
    cut_after = await slow
    assert cut_after is not None and 0.9 <= cut_after <= 3.0
    assert listener.counters.limit_header_timeout == 1


@pytest_twisted.ensureDeferred
async def test_connection_that_never_sends_is_cut_at_the_header_timeout(
    limited: LimitSockets,
) -> None:
    port = free_port()
    _, listener = limited.open(f"tcp:127.0.0.1:{port}", LimitSettings(header_timeout=0.5))

    def silent() -> float:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        start = time.monotonic()
        try:
            assert closed_by_server(sock, 3.0)
            return time.monotonic() - start
        finally:
            sock.close()

    assert 0.4 <= await in_thread(silent) <= 2.5
    assert listener.counters.limit_header_timeout == 1


@pytest_twisted.ensureDeferred
async def test_websocket_handshake_trickled_is_cut_at_the_header_timeout(
    limited: LimitSockets,
) -> None:
    port = free_port()
    _, listener = limited.open(f"ws:127.0.0.1:{port}", LimitSettings(header_timeout=1.0))
    upgrade = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n"
        "Origin: https://phone.example.com\r\n\r\n"
    ).encode()
    cut_after = await in_thread(lambda: trickle(port, upgrade, 0.2))
    assert cut_after is not None and 0.9 <= cut_after <= 3.0
    assert listener.counters.limit_header_timeout == 1


# -- WebSocket frame and message sizes --------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_websocket_frame_and_message_limits_with_the_websockets_client(
    limited: LimitSockets,
) -> None:
    port = free_port()
    _, listener = limited.open(
        f"ws:127.0.0.1:{port}", LimitSettings(max_ws_message_size=4096, max_ws_frame_size=1024)
    )

    def padded(size: int) -> str:
        request = options_request("127.0.0.1", port, 5999, "WS").decode()
        head, _, _ = request.partition("Content-Length")
        pad = "X-Pad: " + "x" * (size - len(request) - 9) + "\r\n"
        return head + pad + "Content-Length: 0\r\n\r\n"

    def close_code(send: Callable[[Any], None]) -> int | None:
        with ws_connect(port) as client:
            send(client)
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=5)
            return closed.value.rcvd.code if closed.value.rcvd else None

    def fragmented_ok() -> int | None:
        text = padded(3000)
        with ws_connect(port) as client:
            client.send([text[i : i + 1000] for i in range(0, len(text), 1000)])
            answer = client.recv(timeout=5)
            return status_of(answer.encode() if isinstance(answer, str) else answer)

    # One frame above max_ws_frame_size (the message itself would fit).
    assert await in_thread(lambda: close_code(lambda c: c.send(padded(2000)))) == 1009
    # A message above max_ws_message_size, every frame of it small enough.
    big = padded(5000)
    chunks = [big[i : i + 1000] for i in range(0, len(big), 1000)]
    assert await in_thread(lambda: close_code(lambda c: c.send(chunks))) == 1009
    # Within both: served.
    assert await in_thread(fragmented_ok) == 200
    await wait_until(lambda: listener.counters.limit_oversize == 2)
    assert await in_thread(lambda: _ws_status(port)) == 200


def _ws_status(port: int) -> int | None:
    with ws_connect(port) as client:
        return ws_options(client, port)[0]


# -- a peer that does not read ----------------------------------------------------------


def flood_without_reading(
    port: int, context: ssl.SSLContext | None, requests: int = 600, every: float = 0.01
) -> tuple[int, float | None]:
    """Send OPTIONS without ever reading; (requests sent, seconds until the server cut)."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(5)
    raw.connect(("127.0.0.1", port))
    sock: socket.socket = (
        context.wrap_socket(raw, server_hostname="localhost") if context is not None else raw
    )
    start = time.monotonic()
    sent = 0
    try:
        for _ in range(requests):
            try:
                sock.sendall(options_request("127.0.0.1", port, 5999, "TCP"))
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
                return sent, time.monotonic() - start
            sent += 1
            time.sleep(every)
        return sent, None
    finally:
        sock.close()


async def watch_backlog(listener: StreamListener, until: Deferred[Any]) -> int:
    """The largest output queued on any connection, sampled every 5 ms until ``until`` fires."""
    peak = 0
    while not until.called:
        for connection in list(listener.connections.values()):
            peak = max(peak, pending_output(connection.transport)[0])
        await deferLater(reactor, 0.005)
    return peak


@pytest.mark.parametrize("proto", ["tcp", "tls"])
@pytest_twisted.ensureDeferred
async def test_peer_that_stops_reading_is_disconnected_and_memory_stays_bounded(
    limited: LimitSockets, proto: str
) -> None:
    port = free_port()
    limit = 262144
    sink = FloodSink()
    _, listener = limited.open(
        f"{proto}:127.0.0.1:{port}", LimitSettings(max_pending_send=limit), sink=sink
    )
    assert isinstance(listener, StreamListener)
    context = limited.client_tls() if proto == "tls" else None
    flood: Deferred[tuple[int, float | None]] = threads.deferToThread(
        flood_without_reading, port, context
    )
    peak = await watch_backlog(listener, flood)
    sent, cut_after = await flood
    print(
        f"\n{proto}: {sink.received} large replies asked, cut after {cut_after} s, "
        f"peak queued output {peak} bytes (limit {limit})"
    )
    assert cut_after is not None, f"never disconnected after {sent} requests"
    assert listener.counters.limit_send_buffer == 1
    # Past the limit once the kernel refuses output, past twice it in any case.
    assert peak <= 2 * limit + BIG_REPLY_BODY + 100
    await wait_until(lambda: listener.counters.connections == 0)


# -- the outbound pool ------------------------------------------------------------------


class Peer(Protocol):
    def dataReceived(self, data: bytes) -> None:
        pass


@pytest_twisted.ensureDeferred
async def test_outbound_pool_is_bounded_and_a_freed_place_is_reused(
    limited: LimitSockets,
) -> None:
    peers = []
    for _ in range(3):
        port = free_port()
        peers.append(reactor.listenTCP(port, Factory.forProtocol(Peer), interface="127.0.0.1"))
    try:
        _, listener = limited.open(
            f"tcp:127.0.0.1:{free_port()}", LimitSettings(max_outbound_connections=2)
        )
        assert isinstance(listener, StreamListener)
        message = options_request("127.0.0.1", 5060, 5060, "TCP")
        addresses = [("127.0.0.1", p.getHost().port) for p in peers]
        await listener.send(message, addresses[0])
        await listener.send(message, addresses[1])
        failure: Failure | None = None
        try:
            await listener.send(message, addresses[2])
        except OutboundLimitError:
            failure = Failure()
        assert failure is not None
        assert listener.counters.limit_outbound == 1
        # One pooled connection goes away: its place is free again.
        first = next(c for c in listener.connections.values() if c.peer == addresses[0])
        first.close()
        await wait_until(lambda: len(listener.connections) == 1)
        await listener.send(message, addresses[2])
        assert listener.counters.limit_outbound == 1
    finally:
        for peer in peers:
            await peer.stopListening()


# -- UDP --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_oversize_udp_datagram_is_dropped_and_counted(limited: LimitSockets) -> None:
    port = free_port()
    _, listener = limited.open(f"udp:127.0.0.1:{port}", LimitSettings(max_udp_message_size=2000))

    def scenario() -> tuple[bytes | None, bytes | None]:
        request = options_request("127.0.0.1", port, 5999, "UDP")
        big = request.replace(b"Content-Length", b"X-Pad: " + b"x" * 3000 + b"\r\nContent-Length")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.sendto(big, ("127.0.0.1", port))
            try:
                dropped: bytes | None = sock.recv(65535)
            except TimeoutError:
                dropped = None
        return dropped, options_udp(port)

    dropped, answer = await in_thread(scenario)
    assert dropped is None
    assert answer is not None and status_of(answer) == 200
    assert listener.counters.limit_oversize == 1
