"""`SipUdpPort`: the read loop of a UDP SIP socket, on a real loopback socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from zope.interface import provider

from sipsock.transport.base import MAX_DATAGRAM_SIZE
from sipsock.transport.udp import READS_PER_WAKE, SipUdpPort

reactor: Any = _reactor


class Recorder(DatagramProtocol):
    """Keeps what it is given; raises for the datagram ``b"boom"``."""

    noisy = False

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, Any]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if datagram == b"boom":
            raise RuntimeError("handler bug")
        self.datagrams.append((datagram, addr))


@pytest.fixture
def port_and_sender() -> Iterator[tuple[SipUdpPort, Recorder, socket.socket]]:
    """A port on 127.0.0.1 that the test reads by hand, and a client socket."""
    bound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bound.bind(("127.0.0.1", 0))
    bound.setblocking(False)
    bound.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    protocol = Recorder()
    port = SipUdpPort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
        reactor, bound.fileno(), socket.AF_INET, protocol, maxPacketSize=MAX_DATAGRAM_SIZE
    )
    port.label = "udp:127.0.0.1:test"
    port.startListening()
    port.stopReading()  # the test calls doRead itself
    bound.close()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(port.socket.getsockname())
    try:
        yield port, protocol, sender
    finally:
        sender.close()
        port.connectionLost()


def test_one_wake_up_reads_at_most_reads_per_wake_datagrams(
    port_and_sender: tuple[SipUdpPort, Recorder, socket.socket],
) -> None:
    port, protocol, sender = port_and_sender
    for number in range(READS_PER_WAKE + 44):
        sender.send(b"%d" % number)
    port.doRead()
    assert len(protocol.datagrams) == READS_PER_WAKE
    port.doRead()
    assert [data for data, _ in protocol.datagrams] == [
        b"%d" % number for number in range(READS_PER_WAKE + 44)
    ]
    assert protocol.datagrams[0][1] == sender.getsockname()
    port.doRead()  # nothing left: returns quietly
    assert len(protocol.datagrams) == READS_PER_WAKE + 44


def test_a_datagram_whose_handling_raises_is_logged_and_the_next_ones_are_read(
    port_and_sender: tuple[SipUdpPort, Recorder, socket.socket],
) -> None:
    port, protocol, sender = port_and_sender
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        for data in (b"one", b"boom", b"two"):
            sender.send(data)
        port.doRead()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert [data for data, _ in protocol.datagrams] == [b"one", b"two"]
    [failure] = [event for event in events if "log_failure" in event]
    assert failure["socket"] == "udp:127.0.0.1:test"
    assert failure["log_failure"].check(RuntimeError)


def test_an_icmp_refusal_of_an_earlier_send_ends_the_read_quietly(
    port_and_sender: tuple[SipUdpPort, Recorder, socket.socket],
) -> None:
    port, protocol, _ = port_and_sender
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        address = gone.getsockname()
    port.socket.connect(address)  # a connected socket receives the ICMP error
    port.socket.send(b"to nobody")
    port.doRead()  # ECONNREFUSED: nothing to read, no exception
    assert protocol.datagrams == []


class CountingSocket:
    """The port's real socket, counting the ``recvfrom`` calls and those that fail."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reads = 0
        self.failed = 0

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        self.reads += 1
        try:
            return self.sock.recvfrom(size)
        except OSError:
            self.failed += 1
            raise

    def fileno(self) -> int:
        return self.sock.fileno()


def test_a_wake_up_with_one_datagram_reads_once_without_a_failing_read(
    port_and_sender: tuple[SipUdpPort, Recorder, socket.socket],
) -> None:
    port, protocol, sender = port_and_sender
    real = port.socket
    counting = CountingSocket(real)
    port.socket = counting  # type: ignore[assignment]
    try:
        sender.send(b"one")
        port.doRead()
        assert (counting.reads, counting.failed) == (1, 0)
        for data in (b"two", b"three", b"four"):
            sender.send(data)
        port.doRead()  # more queued: read until the kernel has none (one failing read)
        assert (counting.reads, counting.failed) == (5, 1)
    finally:
        port.socket = real
    assert [data for data, _ in protocol.datagrams] == [b"one", b"two", b"three", b"four"]


def test_an_empty_datagram_after_the_first_is_read_on_the_next_wake_up(
    port_and_sender: tuple[SipUdpPort, Recorder, socket.socket],
) -> None:
    port, protocol, sender = port_and_sender
    for data in (b"first", b"", b"last"):
        sender.send(data)
    port.doRead()  # the kernel gives 0 as the next length: the read stops there
    assert [data for data, _ in protocol.datagrams] == [b"first"]
    port.doRead()
    assert [data for data, _ in protocol.datagrams] == [b"first", b"", b"last"]


@pytest.mark.parametrize("given", [False, True], ids=["family-from-socket", "family-given"])
@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_an_adopted_port_knows_what_twisteds_adopted_port_knows(
    family: socket.AddressFamily, host: str, given: bool
) -> None:
    """`SipUdpPort.adopting` reads the address once, the family from the socket
    (or as the caller made it): the port reads, reports its address and closes
    as Twisted's own would."""
    bound = socket.socket(family, socket.SOCK_DGRAM)
    bound.bind((host, 0))
    bound.setblocking(False)
    twisted_port = SipUdpPort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
        reactor, bound.fileno(), family, Recorder(), maxPacketSize=MAX_DATAGRAM_SIZE
    )
    protocol = Recorder()
    port: Any = SipUdpPort.adopting(
        reactor, bound, protocol, MAX_DATAGRAM_SIZE, *((family,) if given else ())
    )
    port.label = "udp:test"
    port.startListening()
    port.stopReading()
    twisted_port.startListening()
    twisted_port.stopReading()
    try:
        for name in ("interface", "addressFamily", "maxPacketSize", "port", "logstr"):
            assert getattr(port, name) == getattr(twisted_port, name), name
        assert port.getHost() == twisted_port.getHost()
        assert port._realPortNumber == bound.getsockname()[1]
        sender = socket.socket(family, socket.SOCK_DGRAM)
        sender.sendto(b"hello", port.socket.getsockname())
        sender.close()
        port.doRead()
        assert [data for data, _ in protocol.datagrams] == [b"hello"]
    finally:
        port.connectionLost()
        twisted_port.connectionLost()
    assert bound.fileno() == -1  # the port owned it


def test_closing_a_port_logs_no_legacy_line() -> None:
    """The socket's listener logs its closing; Twisted's "(UDP Port N Closed)" is not made."""
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    bound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bound.bind(("127.0.0.1", 0))
    bound.setblocking(False)
    port: Any = SipUdpPort.adopting(reactor, bound, Recorder(), MAX_DATAGRAM_SIZE)
    port.label = "udp:test"
    port.startListening()
    globalLogPublisher.addObserver(observe)
    try:
        port.connectionLost()  # what stopListening has the reactor run next
    finally:
        globalLogPublisher.removeObserver(observe)
    assert bound.fileno() == -1
    assert not [e for e in events if "log_legacy" in e or e.get("log_namespace") == "log_legacy"]
