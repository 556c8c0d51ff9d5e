# mypy: disable-error-code="no-untyped-call"
"""WS and WSS sockets on real loopback connections (RFC 7118).

Clients: the `websockets` library (an implementation nobody here wrote) and a
raw client for frames a good client never sends; both block, so they run in
the reactor's thread pool while the listener serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet import threads
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sipsock.apps import Dispatcher
from sipsock.config import TLSDomainSettings, WebSocketSettings
from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport import Listener, open_listener
from sipsock.transport.tls import TLSDomains
from tests.integration.transport.test_transport_loopback import Recorder, options
from tests.net import free_port
from tests.polling import wait_until
from tests.tlsfiles import TestPKI
from tests.wsclient import RawWebSocket, options_over_raw, ws_connect, ws_options

reactor: Any = _reactor
T = TypeVar("T")


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking client call without blocking the reactor that serves it."""
    result: T = await threads.deferToThread(call)
    return result


@dataclass
class WsSockets:
    """WS/WSS listeners opened by a test; all stopped at the end."""

    pki: TestPKI
    recorder: Recorder = field(default_factory=Recorder)
    listeners: list[Listener] = field(default_factory=list)
    domains: TLSDomains | None = None

    def open(self, text: str, **kwargs: Any) -> tuple[SocketDef, Listener]:
        sdef = parse_row(len(self.listeners) + 1, text)
        if sdef.proto == "wss" and self.domains is None:
            files = self.pki.issue("server", "localhost", "127.0.0.1")
            self.domains = TLSDomains(
                [
                    TLSDomainSettings(
                        name="web",
                        certificate=files.certificate,
                        private_key=files.private_key,
                        ca_list=self.pki.ca_file,
                    )
                ]
            )
        listener = open_listener(
            sdef,
            len(self.listeners) + 1,
            Dispatcher(self.recorder),
            reactor=reactor,
            tls=self.domains,
            **kwargs,
        )
        self.listeners.append(listener)
        return sdef, listener


@pytest_twisted.async_yield_fixture()
async def ws(tmp_path: Path) -> AsyncIterator[WsSockets]:
    opened = WsSockets(TestPKI(tmp_path / "pki"))
    yield opened
    for listener in opened.listeners:
        await listener.stop()


def one_options(port: int, **kwargs: Any) -> tuple[int | None, str, str | None]:
    """Connect, send one OPTIONS, close; (status, answer, negotiated subprotocol)."""
    binary = kwargs.pop("binary", False)
    with ws_connect(port, **kwargs) as client:
        status, answer = ws_options(client, port, binary=binary)
        return status, answer, client.subprotocol


# -- serving -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ws_options_gets_200_with_the_sip_subprotocol(ws: WsSockets) -> None:
    port = free_port()
    _, listener = ws.open(f"ws:127.0.0.1:{port}")
    status, answer, subprotocol = await in_thread(lambda: one_options(port))
    assert (status, subprotocol) == (200, "sip")
    assert "Via: SIP/2.0/WS 127.0.0.1:" in answer
    assert f"Contact: <sip:127.0.0.1:{port};transport=ws>" in answer
    context = ws.recorder.contexts[-1]
    assert (context.socket.proto, context.socket.via_transport) == ("ws", "WS")
    assert context.connection_id is not None
    assert listener.counters.received == 1
    assert listener.counters.sent == 1


@pytest_twisted.ensureDeferred
async def test_binary_message_is_one_sip_message_too(ws: WsSockets) -> None:
    port = free_port()
    ws.open(f"ws:127.0.0.1:{port}")
    status, _, _ = await in_thread(lambda: one_options(port, binary=True))
    assert status == 200


@pytest_twisted.ensureDeferred
async def test_wss_options_gets_200_and_says_wss(ws: WsSockets) -> None:
    port = free_port()
    ws.open(f"wss:127.0.0.1:{port}")
    status, answer, subprotocol = await in_thread(
        lambda: one_options(port, tls=ws.pki.client_context())
    )
    assert (status, subprotocol) == (200, "sip")
    assert "Via: SIP/2.0/WSS 127.0.0.1:" in answer
    assert f"Contact: <sip:127.0.0.1:{port};transport=wss>" in answer


@pytest_twisted.ensureDeferred
async def test_keepalive_crlf_gets_crlf(ws: WsSockets) -> None:
    port = free_port()
    ws.open(f"ws:127.0.0.1:{port}")

    def ping() -> str | bytes:
        with ws_connect(port) as client:
            client.send("\r\n\r\n")
            return client.recv(timeout=5)

    assert await in_thread(ping) == "\r\n"


# -- opening handshake ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_handshake_without_the_sip_subprotocol_is_refused(ws: WsSockets) -> None:
    port = free_port()
    _, listener = ws.open(f"ws:127.0.0.1:{port}")
    for offered in (None, ("chat",)):
        with pytest.raises(InvalidStatus) as caught:
            await in_thread(lambda offered=offered: ws_connect(port, subprotocols=offered))  # type: ignore[misc]
        assert caught.value.response.status_code == 400
    await wait_until(lambda: listener.counters.handshake_failures == 2)
    assert listener.counters.received == 0
    # The refusal says why.
    raw = await in_thread(lambda: RawWebSocket(port, protocol=None))
    assert raw.status == 400
    assert "sip WebSocket subprotocol" in raw.response
    raw.close()


@pytest_twisted.ensureDeferred
async def test_origin_is_required_and_checked(ws: WsSockets) -> None:
    port = free_port()
    settings = WebSocketSettings(
        allowed_origins=("https://phone.example.com", "https://*.sip.test")
    )
    ws.open(f"ws:127.0.0.1:{port}", websocket=settings)
    for origin in (None, "https://evil.example", "http://phone.example.com"):
        with pytest.raises(InvalidStatus) as caught:
            await in_thread(lambda origin=origin: ws_connect(port, origin=origin))  # type: ignore[misc]
        assert caught.value.response.status_code == 403
    for origin in ("https://phone.example.com", "https://a.sip.test:443"):
        status, _, _ = await in_thread(lambda origin=origin: one_options(port, origin=origin))  # type: ignore[misc]
        assert status == 200


@pytest_twisted.ensureDeferred
async def test_origin_may_be_left_out_when_not_required(ws: WsSockets) -> None:
    port = free_port()
    ws.open(f"ws:127.0.0.1:{port}", websocket=WebSocketSettings(require_origin=False))
    status, _, _ = await in_thread(lambda: one_options(port, origin=None))
    assert status == 200


# -- bad frames and limits -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_oversize_message_closes_that_connection_with_1009(ws: WsSockets) -> None:
    port = free_port()
    _, listener = ws.open(
        f"ws:127.0.0.1:{port}", websocket=WebSocketSettings(max_message_size=4096)
    )

    def oversize() -> int | None:
        with ws_connect(port) as client:
            client.send(options(port, "big", "WS", extra="X-Pad: " + "x" * 8000 + "\r\n").decode())
            with pytest.raises(ConnectionClosed) as caught:
                client.recv(timeout=5)
            return caught.value.rcvd.code if caught.value.rcvd else None

    assert await in_thread(oversize) == 1009
    await wait_until(lambda: listener.counters.limit_oversize == 1)
    assert listener.counters.parse_errors == 0
    status, _, _ = await in_thread(lambda: one_options(port))
    assert status == 200


@pytest_twisted.ensureDeferred
async def test_fragmented_message_above_the_limit_is_refused_too(ws: WsSockets) -> None:
    port = free_port()
    ws.open(f"ws:127.0.0.1:{port}", websocket=WebSocketSettings(max_message_size=4096))

    def fragments() -> int | None:
        raw = RawWebSocket(port)
        try:
            raw.send_frame(0x1, b"x" * 3000, fin=False)
            raw.send_frame(0x0, b"x" * 3000, fin=True)
            return raw.close_code()
        finally:
            raw.close()

    assert await in_thread(fragments) == 1009


@pytest_twisted.ensureDeferred
async def test_garbage_frames_close_that_connection_while_others_are_served(
    ws: WsSockets,
) -> None:
    port = free_port()
    _, listener = ws.open(f"ws:127.0.0.1:{port}")

    def garbage(data: bytes) -> int | None:
        raw = RawWebSocket(port)
        try:
            assert raw.status == 101
            raw.send_raw(data)
            return raw.close_code()
        finally:
            raw.close()

    # Unmasked frame, reserved opcode, reserved bits: protocol errors (1002).
    assert await in_thread(lambda: garbage(b"\x81\x05hello")) == 1002
    assert await in_thread(lambda: garbage(b"\x8b\x80\x00\x00\x00\x00")) == 1002
    assert await in_thread(lambda: garbage(b"\xf1\x80\x00\x00\x00\x00")) == 1002

    # Invalid UTF-8 in a text message: 1007.
    def bad_text() -> int | None:
        raw = RawWebSocket(port)
        try:
            raw.send_frame(0x1, b"OPTIONS \xff\xfe")
            return raw.close_code()
        finally:
            raw.close()

    assert await in_thread(bad_text) == 1007
    await wait_until(lambda: listener.counters.parse_errors == 4)
    status, _, _ = await in_thread(lambda: one_options(port))
    assert status == 200


@pytest_twisted.ensureDeferred
async def test_unparsable_sip_in_a_frame_is_dropped_and_the_connection_stays(
    ws: WsSockets,
) -> None:
    port = free_port()
    _, listener = ws.open(f"ws:127.0.0.1:{port}")

    def junk_then_options() -> int | None:
        raw = RawWebSocket(port)
        try:
            raw.send_frame(0x1, b"this is not SIP\r\n\r\n")
            return options_over_raw(raw, port)
        finally:
            raw.close()

    assert await in_thread(junk_then_options) == 200
    assert listener.counters.parse_errors == 1


@pytest_twisted.ensureDeferred
async def test_http_garbage_instead_of_a_handshake_closes_the_connection(ws: WsSockets) -> None:
    port = free_port()
    _, listener = ws.open(f"ws:127.0.0.1:{port}")

    def sip_over_tcp() -> bool:
        raw = RawWebSocket.__new__(RawWebSocket)
        import socket

        raw.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.buffer = b""
        raw.sock.sendall(options(port, "tcp", "TCP"))
        return raw.closed_by_server()

    assert await in_thread(sip_over_tcp)
    await wait_until(lambda: listener.counters.handshake_failures == 1)


# -- keep-alive, idle, stop -----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_peer_that_does_not_answer_pings_is_dropped(ws: WsSockets) -> None:
    port = free_port()
    _, listener = ws.open(
        f"ws:127.0.0.1:{port}",
        websocket=WebSocketSettings(ping_interval=0.2, ping_timeout=0.5),
    )

    def silent() -> tuple[int, bool]:
        raw = RawWebSocket(port)
        try:
            frame = raw.read_frame()
            assert frame is not None
            return frame[0], raw.closed_by_server(timeout=10)
        finally:
            raw.close()

    opcode, dropped = await in_thread(silent)
    assert opcode == 0x9  # a ping
    assert dropped
    await wait_until(lambda: listener.counters.connections == 0)


@pytest_twisted.ensureDeferred
async def test_peer_that_answers_pings_stays_connected(ws: WsSockets) -> None:
    port = free_port()
    ws.open(
        f"ws:127.0.0.1:{port}",
        websocket=WebSocketSettings(ping_interval=0.2, ping_timeout=0.5),
    )

    def patient() -> int | None:
        # websockets answers pings by itself while it waits.
        with ws_connect(port) as client:
            with pytest.raises(TimeoutError):
                client.recv(timeout=1.5)
            status, _ = ws_options(client, port)
            return status

    assert await in_thread(patient) == 200


@pytest_twisted.ensureDeferred
async def test_idle_ws_connection_is_closed(ws: WsSockets) -> None:
    port = free_port()
    _, listener = ws.open(
        f"ws:127.0.0.1:{port}", idle_timeout=0.3, websocket=WebSocketSettings(ping_interval=0)
    )

    def idle() -> int | None:
        raw = RawWebSocket(port)
        try:
            return raw.close_code()
        finally:
            raw.close()

    assert await in_thread(idle) == 1000
    await wait_until(lambda: listener.counters.connections == 0)


@pytest_twisted.ensureDeferred
async def test_stop_closes_ws_connections(ws: WsSockets) -> None:
    port = free_port()
    _, listener = ws.open(f"ws:127.0.0.1:{port}")
    raw = await in_thread(lambda: RawWebSocket(port))
    assert await in_thread(lambda: options_over_raw(raw, port)) == 200
    stopping = listener.stop()
    code = await in_thread(raw.close_code)
    raw.close()
    await stopping
    assert code == 1000
    assert listener.counters.connections == 0


# -- outbound --------------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["ws", "wss"])
@pytest_twisted.ensureDeferred
async def test_send_opens_a_websocket_to_the_peer(ws: WsSockets, proto: str) -> None:
    sender_port, receiver_port = free_port(), free_port()
    _, sender = ws.open(f"{proto}:127.0.0.1:{sender_port}")
    _, receiver = ws.open(f"{proto}:127.0.0.1:{receiver_port}")
    await sender.send(
        options(receiver_port, "out", transport=proto.upper()), ("127.0.0.1", receiver_port)
    )
    await wait_until(lambda: receiver.counters.received == 1)
    await wait_until(lambda: sender.counters.received == 1)  # the 200 came back
    assert sender.counters.connections == 1


@pytest_twisted.ensureDeferred
async def test_send_to_a_server_refusing_the_handshake_fails(ws: WsSockets) -> None:
    receiver_port = free_port()
    _, sender = ws.open(f"ws:127.0.0.1:{free_port()}")
    # The sender's origin (http://127.0.0.1:PORT) is not on the receiver's list.
    _, receiver = ws.open(
        f"ws:127.0.0.1:{receiver_port}",
        websocket=WebSocketSettings(allowed_origins=("https://only.example",)),
    )
    with pytest.raises(ConnectionError):
        await sender.send(options(receiver_port, "x", "WS"), ("127.0.0.1", receiver_port))
    assert sender.counters.drops == 1
    await wait_until(lambda: receiver.counters.handshake_failures == 1)
