# mypy: disable-error-code="no-untyped-call"
"""The OPTIONS shortcut on real loopback UDP sockets: the general path's bytes, straight back.

A listener whose application is the built-in Responder answers plain OPTIONS
from the receive path itself; each answer is compared with what the general
path (`Dispatcher` + `Responder`) builds for the same datagram and peer.
Malformed requests still get their 400, other methods their 501, and the
socket's receive buffer is the one ``[core] udp_receive_buffer`` asks for.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import DatagramProtocol

from sipsock.apps import Dispatcher, Responder
from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport import Listener, Origin, open_listener
from sipsock.transport.sockopts import set_udp_receive_buffer
from tests.net import free_port
from tests.polling import wait_until

reactor: Any = _reactor
TIMEOUT = 10.0


def options(host: str, port: int, call: str, client_port: int, *, method: str = "OPTIONS") -> bytes:
    sent_by = f"[{host}]" if ":" in host else host
    return (
        f"{method} sip:ping@{sent_by}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by}:{client_port};branch=z9hG4bK-{call};rport\r\n"
        f"From: probe <sip:probe@{sent_by}:{client_port}>;tag=f-{call}\r\n"
        f"To: <sip:ping@{sent_by}:{port}>\r\n"
        f"Call-ID: {call}@test\r\n"
        f"CSeq: 7 {method}\r\n"
        f"Contact: <sip:probe@{sent_by}:{client_port}>\r\n"
        f"Max-Forwards: 70\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


class UdpClient(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append(datagram)


def general_path(app: Responder, sdef: SocketDef, data: bytes, peer: tuple[str, int]) -> bytes:
    replies: list[bytes] = []
    Dispatcher(app).message_received(data, Origin(sdef, None, peer, replies.append))
    [reply] = replies
    return reply


def untagged(reply: bytes) -> bytes:
    """``reply`` with the tag of a 400 (random) taken out."""
    if reply.startswith(b"SIP/2.0 400 "):
        return re.sub(rb";tag=[0-9a-f]+\r\n", b"\r\n", reply)
    return reply


@pytest_twisted.async_yield_fixture()
async def listeners() -> AsyncIterator[list[Listener]]:
    opened: list[Listener] = []
    try:
        yield opened
    finally:
        set_udp_receive_buffer(0)
        for listener in opened:
            await listener.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest_twisted.ensureDeferred
async def test_options_answers_are_the_general_paths_bytes(
    listeners: list[Listener], host: str
) -> None:
    port = free_port(host=host)
    text = f"udp:[{host}]:{port}" if ":" in host else f"udp:{host}:{port}"
    sdef = parse_row(1, text, advertised="sip.example.com")
    app = Responder()
    listener = open_listener(sdef, 1, Dispatcher(app), reactor=reactor)
    listeners.append(listener)
    client = UdpClient()
    client_port = reactor.listenUDP(0, client, interface=host)
    mine = client_port.getHost().port
    try:
        sent = [
            options(host, port, "a", mine),
            options(host, port, "b", mine),
            options(host, port, "c", mine).replace(b"CSeq: 7 OPTIONS", b"CSeq: 7 INVITE"),
            options(host, port, "d", mine, method="INVITE"),
        ]
        for data in sent:
            client.transport.write(data, (host, port))  # type: ignore[union-attr]
            count = len(client.received) + 1
            await wait_until(lambda count=count: len(client.received) == count)  # type: ignore[misc]
    finally:
        await client_port.stopListening()
    peer = (host, mine)
    # The 400 carries a random To tag (make_response's): compare without it.
    expected = [untagged(general_path(app, sdef, data, peer)) for data in sent]
    assert [untagged(reply) for reply in client.received] == expected
    assert client.received[0] == general_path(app, sdef, sent[0], peer)
    assert [reply.split(b"\r\n")[0] for reply in client.received] == [
        b"SIP/2.0 200 OK",
        b"SIP/2.0 200 OK",
        b"SIP/2.0 400 Bad Request (CSeq method 'INVITE' does not match method 'OPTIONS')",
        b"SIP/2.0 501 Not Implemented",
    ]
    assert b"Contact: <sip:sip.example.com:" + str(port).encode() + b">" in client.received[0]
    counters = listener.counters
    assert (counters.received, counters.sent, counters.replies_out) == (4, 4, 4)
    assert counters.parse_errors == 1
    assert counters.bytes_out == sum(map(len, client.received))


@pytest_twisted.ensureDeferred
async def test_udp_socket_gets_the_configured_receive_buffer(listeners: list[Listener]) -> None:
    set_udp_receive_buffer(3 * 1024 * 1024)
    listener = open_listener(
        parse_row(1, f"udp:127.0.0.1:{free_port()}"), 1, Dispatcher(Responder()), reactor=reactor
    )
    listeners.append(listener)
    with socket.socket(fileno=socket.dup(listener.fileno())) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 3 * 1024 * 1024


@pytest_twisted.ensureDeferred
async def test_a_burst_with_empty_datagrams_in_it_is_answered_in_full(
    listeners: list[Listener],
) -> None:
    port = free_port()
    set_udp_receive_buffer(4 * 1024 * 1024)  # 200 datagrams overflow the kernel default
    listener = open_listener(
        parse_row(1, f"udp:127.0.0.1:{port}"), 1, Dispatcher(Responder()), reactor=reactor
    )
    listeners.append(listener)
    assert listener._port.sipsockPlainCall is True  # type: ignore[attr-defined]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        client.bind(("127.0.0.1", 0))
        client.setblocking(False)
        mine = client.getsockname()[1]
        # Sent before the reactor runs again: one wake-up finds them all queued.
        for call in range(200):
            if call % 50 == 0:
                client.sendto(b"", ("127.0.0.1", port))
            client.sendto(options("127.0.0.1", port, f"b{call}", mine), ("127.0.0.1", port))
        await wait_until(lambda: listener.counters.sent == 200)
        answers = 0
        while True:
            try:
                client.recv(65535)
            except BlockingIOError:
                break
            answers += 1
    assert answers == 200
    assert listener.counters.received == 200
    assert listener.counters.bytes_in == sum(
        len(options("127.0.0.1", port, f"b{call}", mine)) for call in range(200)
    )
