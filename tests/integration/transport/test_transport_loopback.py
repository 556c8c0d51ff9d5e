# mypy: disable-error-code="no-untyped-call"
"""UDP and TCP listeners on real loopback sockets, answered by the Responder.

SIPp is the client for the OPTIONS keep-alive runs; hand-written TCP and UDP
clients check framing, keep-alive pings, limits, idle timeout and closing.
"""

from __future__ import annotations

import csv
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from zope.interface import implementer

from sipsock.apps import Dispatcher, ISipApplication, MessageContext, Responder
from sipsock.sip import Request, Response
from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport import Listener, ListenError, open_listener
from sipsock.transport.sockopts import IP_PMTUDISC_DONT, get_mtu_discover, get_tos
from tests.net import free_port
from tests.polling import wait_until

reactor: Any = _reactor
SCENARIO = Path(__file__).parents[2] / "scenarios" / "options_uac.xml"
TIMEOUT = 10.0


def options(port: int, call: str = "c1", transport: str = "TCP", extra: str = "") -> bytes:
    """An OPTIONS request with Content-Length, as a client would send it."""
    return (
        f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bK-{call};rport\r\n"
        f"From: <sip:t@127.0.0.1>;tag=f-{call}\r\n"
        f"To: <sip:ping@127.0.0.1>\r\n"
        f"Call-ID: {call}@test\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Max-Forwards: 70\r\n"
        f"{extra}"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


@implementer(ISipApplication)
class Recorder:
    """Records every context, then lets the Responder answer."""

    def __init__(self) -> None:
        self.contexts: list[MessageContext] = []
        self.responder = Responder()

    def message_received(self, message: Request | Response, context: MessageContext) -> None:
        self.contexts.append(context)
        self.responder.message_received(message, context)


class Client(Protocol):
    """A TCP client that keeps everything it receives."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[None] = Deferred()
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed = True
        self.lost.callback(None)

    def count(self, marker: bytes = b"SIP/2.0 200 OK") -> int:
        return self.received.count(marker)


class UdpClient(DatagramProtocol):
    """A UDP client that keeps every datagram it receives."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append(datagram)


@dataclass
class Sockets:
    """Listeners opened by a test; all stopped at the end."""

    recorder: Recorder = field(default_factory=Recorder)
    listeners: list[Listener] = field(default_factory=list)

    def open(self, text: str, **kwargs: Any) -> tuple[SocketDef, Listener]:
        row = {
            key: kwargs.pop(key) for key in ("advertised", "tag", "flags", "tos") if key in kwargs
        }
        sdef = parse_row(len(self.listeners) + 1, text, **row)
        dispatcher = Dispatcher(
            self.recorder, max_message_size=kwargs.get("max_message_size", 65535)
        )
        listener = open_listener(
            sdef, len(self.listeners) + 1, dispatcher, reactor=reactor, **kwargs
        )
        self.listeners.append(listener)
        return sdef, listener


@pytest_twisted.async_yield_fixture()
async def sockets() -> AsyncIterator[Sockets]:
    opened = Sockets()
    yield opened
    for listener in opened.listeners:
        await listener.stop()


async def connect(port: int) -> Client:
    client = Client()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), client)
    return client


async def sipp(port: int, transport: str, calls: int, rate: int, workdir: Path) -> tuple[int, int]:
    """Run the OPTIONS scenario with SIPp (non-blocking); returns (successful, failed)."""
    binary = shutil.which("sipp")
    assert binary is not None, "SIPp is not installed (apt-get install sip-tester)"
    stat = workdir / "stat.csv"
    args = [
        f"127.0.0.1:{port}",
        "-sf",
        str(SCENARIO),
        "-t",
        transport,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-nostdin",
        "-buff_size",
        "4194304",
        "-timeout",
        "20s",
        "-timeout_error",
        "-trace_stat",
        "-stf",
        str(stat),
    ]
    out, err, code = await getProcessOutputAndValue(binary, args, path=str(workdir))
    assert code == 0, (code, out[-2000:], err[-2000:])
    with stat.open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    values = dict(zip(rows[0], rows[-1], strict=False))
    return int(values["SuccessfulCall(C)"]), int(values["FailedCall(C)"])


# -- SIPp -----------------------------------------------------------------------


@pytest.mark.parametrize(("proto", "sipp_transport"), [("udp", "u1"), ("tcp", "t1")])
@pytest_twisted.ensureDeferred
async def test_sipp_options_get_200(
    sockets: Sockets, tmp_path: Path, proto: str, sipp_transport: str
) -> None:
    port = free_port()
    _, listener = sockets.open(f"{proto}:127.0.0.1:{port}")
    successful, failed = await sipp(port, sipp_transport, calls=200, rate=200, workdir=tmp_path)
    assert (successful, failed) == (200, 0)
    assert listener.counters.received == 200
    assert listener.counters.sent == 200
    context = sockets.recorder.contexts[0]
    assert context.socket.socket_text == f"{proto}:127.0.0.1:{port}"
    assert context.slot == 1


# -- TCP framing -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tcp_two_messages_in_one_segment_get_two_answers(sockets: Sockets) -> None:
    port = free_port()
    sockets.open(f"tcp:127.0.0.1:{port}")
    client = await connect(port)
    assert client.transport is not None
    client.transport.write(options(port, "a") + options(port, "b"))
    await wait_until(lambda: client.count() == 2)
    assert b"Call-ID: a@test" in client.received
    assert b"Call-ID: b@test" in client.received
    client.transport.loseConnection()
    await client.lost


@pytest_twisted.ensureDeferred
async def test_tcp_message_split_in_two_writes_gets_one_answer(sockets: Sockets) -> None:
    port = free_port()
    _, listener = sockets.open(f"tcp:127.0.0.1:{port}")
    client = await connect(port)
    assert client.transport is not None
    data = options(port, "split")
    client.transport.write(data[:40])
    await wait_until(lambda: listener.counters.bytes_in == 40)
    assert client.received == b""
    client.transport.write(data[40:])
    await wait_until(lambda: client.count() == 1)
    client.transport.loseConnection()
    await client.lost


@pytest_twisted.ensureDeferred
async def test_tcp_keepalive_ping_gets_pong(sockets: Sockets) -> None:
    port = free_port()
    sockets.open(f"tcp:127.0.0.1:{port}")
    client = await connect(port)
    assert client.transport is not None
    client.transport.write(b"\r\n\r\n")
    await wait_until(lambda: client.received == b"\r\n")
    client.transport.loseConnection()
    await client.lost


@pytest_twisted.ensureDeferred
async def test_tcp_oversize_message_closes_connection_but_listener_keeps_serving(
    sockets: Sockets,
) -> None:
    port = free_port()
    _, listener = sockets.open(f"tcp:127.0.0.1:{port}", max_message_size=4096)
    bad = await connect(port)
    assert bad.transport is not None
    bad.transport.write(options(port, "big", extra="X-Pad: " + "x" * 8000 + "\r\n"))
    await bad.lost
    assert bad.received == b""  # the header section itself is too large: nothing to answer
    assert (listener.counters.limit_oversize, listener.counters.parse_errors) == (1, 0)
    good = await connect(port)
    assert good.transport is not None
    good.transport.write(options(port, "after"))
    await wait_until(lambda: good.count() == 1)
    good.transport.loseConnection()
    await good.lost


@pytest_twisted.ensureDeferred
async def test_tcp_request_announcing_a_body_above_the_limit_gets_513_then_the_close(
    sockets: Sockets,
) -> None:
    port = free_port()
    _, listener = sockets.open(f"tcp:127.0.0.1:{port}", max_message_size=4096)
    client = await connect(port)
    assert client.transport is not None
    client.transport.write(
        options(port, "huge").replace(b"Content-Length: 0", b"Content-Length: 100000")
    )
    await client.lost
    assert client.received.startswith(b"SIP/2.0 513 Message Too Large (message of 100"), (
        client.received[:80]
    )
    assert b"Call-ID: huge@test" in client.received
    assert b"received=127.0.0.1" in client.received
    assert (listener.counters.limit_oversize, listener.counters.sent) == (1, 1)


@pytest_twisted.ensureDeferred
async def test_tcp_request_without_content_length_gets_400_then_the_close(
    sockets: Sockets,
) -> None:
    port = free_port()
    _, listener = sockets.open(f"tcp:127.0.0.1:{port}")
    client = await connect(port)
    assert client.transport is not None
    client.transport.write(options(port, "nolength").replace(b"Content-Length: 0\r\n", b""))
    await client.lost
    assert client.received.startswith(
        b"SIP/2.0 400 Bad Request (no Content-Length on a stream transport)\r\n"
    ), client.received[:80]
    assert listener.counters.parse_errors == 1


@pytest_twisted.ensureDeferred
async def test_tcp_idle_connection_is_closed(sockets: Sockets) -> None:
    port = free_port()
    _, listener = sockets.open(f"tcp:127.0.0.1:{port}", idle_timeout=0.3)
    client = await connect(port)
    await wait_until(lambda: listener.counters.connections == 1)
    started = reactor.seconds()
    await client.lost
    assert reactor.seconds() - started >= 0.25
    await wait_until(lambda: listener.counters.connections == 0)


@pytest_twisted.ensureDeferred
async def test_tcp_stop_flushes_closes_connections_and_port_refuses(sockets: Sockets) -> None:
    port = free_port()
    _, listener = sockets.open(f"tcp:127.0.0.1:{port}")
    client = await connect(port)
    assert client.transport is not None
    client.transport.write(options(port, "last"))
    await wait_until(lambda: listener.counters.received == 1)
    await listener.stop()
    assert client.count() == 1  # the answer was flushed before closing
    await client.lost
    assert listener.counters.connections == 0
    with pytest.raises(ConnectionRefusedError):
        await connect(port)


# -- UDP -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_udp_request_gets_answer_and_stop_frees_the_port(sockets: Sockets) -> None:
    port = free_port()
    _, listener = sockets.open(f"udp:127.0.0.1:{port}")
    client = UdpClient()
    client_port = reactor.listenUDP(0, client, interface="127.0.0.1")
    try:
        client.transport.write(  # type: ignore[union-attr]
            options(port, "u", transport="UDP"), ("127.0.0.1", port)
        )
        await wait_until(lambda: len(client.received) == 1)
        assert client.received[0].startswith(b"SIP/2.0 200 OK\r\n")
        assert b";rport=" in client.received[0]
        assert b";received=127.0.0.1" in client.received[0]
    finally:
        await client_port.stopListening()
    await listener.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))  # the port is really closed


# -- options, errors, updates --------------------------------------------------


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_bind_on_port_held_by_another_socket_is_port_already_in_use(
    sockets: Sockets, proto: str
) -> None:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        if proto == "tcp":
            holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(ListenError) as caught:
            sockets.open(f"{proto}:127.0.0.1:{port}")
    assert str(caught.value) == f"{proto}:127.0.0.1:{port}: port already in use"
    assert caught.value.reason == "port already in use"


def test_bind_on_address_not_on_this_host(sockets: Sockets) -> None:
    with pytest.raises(ListenError) as caught:
        sockets.open("udp:192.0.2.77:5060")
    assert caught.value.reason == "address not on this host"


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_tos_and_frag_are_set_on_the_descriptor(sockets: Sockets, proto: str) -> None:
    sdef, listener = sockets.open(
        f"{proto}:127.0.0.1:{free_port()}", tos="IPTOS_LOWDELAY", flags="frag"
    )
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.fromfd(listener.fileno(), socket.AF_INET, kind) as view:
        assert get_tos(view, sdef) == 0x10
        if proto == "udp":
            assert get_mtu_discover(view, sdef) == IP_PMTUDISC_DONT


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest_twisted.ensureDeferred
async def test_update_in_place_keeps_descriptor_and_applies_to_next_message(
    sockets: Sockets, proto: str
) -> None:
    port = free_port()
    _, listener = sockets.open(f"{proto}:127.0.0.1:{port}", tag="old", tos="8")
    fileno = listener.fileno()
    new = parse_row(1, f"{proto}:127.0.0.1:{port}", "sip.example.com:5080", "new", "frag", "16")
    listener.update(new)
    assert listener.fileno() == fileno
    assert listener.sdef == new
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.fromfd(fileno, socket.AF_INET, kind) as view:
        assert get_tos(view, new) == 16
        if proto == "udp":
            assert get_mtu_discover(view, new) == IP_PMTUDISC_DONT
    transport = proto.upper()
    if proto == "udp":
        client = UdpClient()
        client_port = reactor.listenUDP(0, client, interface="127.0.0.1")
        client.transport.write(  # type: ignore[union-attr]
            options(port, "n", transport), ("127.0.0.1", port)
        )
        await wait_until(lambda: len(client.received) == 1)
        answer = client.received[0]
        await client_port.stopListening()
    else:
        tcp = await connect(port)
        assert tcp.transport is not None
        tcp.transport.write(options(port, "n", transport))
        await wait_until(lambda: tcp.count() == 1)
        answer = tcp.received
        tcp.transport.loseConnection()
        await tcp.lost
    context = sockets.recorder.contexts[-1]
    assert context.socket.tag == "new"
    assert b"Contact: <sip:sip.example.com:5080" in answer
