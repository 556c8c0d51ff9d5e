# mypy: disable-error-code="no-untyped-call"
"""The workers' reactor calls SIP UDP ports without Twisted's legacy log context or read wrapper."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import main
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python import context
from twisted.python.failure import Failure
from twisted.python.log import ILogContext
from zope.interface import provider

from sipsock.transport.base import MAX_DATAGRAM_SIZE
from sipsock.transport.udp import SipUdpPort
from sipsock.workers.epoll import ExclusiveEPollReactor


class Reader:
    """A readable descriptor that records the legacy log context of each doRead."""

    def __init__(self, sock: socket.socket, plain: bool) -> None:
        self.sock = sock
        self.sipsockPlainCall = plain
        self.systems: list[object] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "reader-prefix"

    def doRead(self) -> None:
        self.sock.recv(100)
        self.systems.append((context.get(ILogContext) or {}).get("system"))

    def connectionLost(self, reason: object) -> None:
        pass


@pytest.fixture
def reactor() -> Iterator[ExclusiveEPollReactor]:
    made = ExclusiveEPollReactor()
    try:
        yield made
    finally:
        made.removeAll()
        made._poller.close()


@pytest.mark.parametrize(("plain", "system"), [(True, "-"), (False, "reader-prefix")])
def test_plain_call_selectables_skip_the_log_context(
    reactor: ExclusiveEPollReactor, plain: bool, system: str
) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        reader = Reader(left, plain)
        reactor.addReader(reader)
        right.send(b"x")
        reactor.doPoll(1.0)
        reactor.removeReader(reader)
    assert reader.systems == [system]


def test_a_selectable_marked_no_log_context_is_handled_without_it(
    reactor: ExclusiveEPollReactor,
) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        reader = Reader(left, plain=False)
        reader.sipsockNoLogContext = True  # type: ignore[attr-defined]
        reactor.addReader(reader)
        right.send(b"x")
        reactor.doPoll(1.0)
        reactor.removeReader(reader)
    assert reader.systems == ["-"]


class LostBadly(Reader):
    """Marked no-log-context; its read ends the connection and its connectionLost raises."""

    sipsockNoLogContext = True

    def doRead(self) -> Any:
        super().doRead()
        return ConnectionDone()

    def connectionLost(self, reason: object) -> None:
        raise RuntimeError("connectionLost failed")


def test_what_escapes_a_no_log_context_handling_is_logged_and_the_poll_goes_on(
    reactor: ExclusiveEPollReactor,
) -> None:
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    first_pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    second_pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    globalLogPublisher.addObserver(observe)
    try:
        failing = LostBadly(first_pair[0], plain=False)
        other = Reader(second_pair[0], plain=False)
        reactor.addReader(failing)
        reactor.addReader(other)
        first_pair[1].send(b"x")
        second_pair[1].send(b"y")
        reactor.doPoll(1.0)
        reactor.removeReader(other)
    finally:
        globalLogPublisher.removeObserver(observe)
        for sock in (*first_pair, *second_pair):
            sock.close()
    assert failing.systems == ["-"]
    assert other.systems == ["reader-prefix"]  # the same poll's next event was handled
    # The legacy event ``callWithLogger``'s ``log.err`` makes, its system named.
    [failure] = [event for event in events if event.get("isError")]
    assert failure["failure"].check(RuntimeError)
    assert failure["system"] == "reader-prefix"


class Datagrams(DatagramProtocol):
    noisy = False

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append(datagram)


class FailingOnce:
    """A socket whose next ``recvfrom`` fails with ENOBUFS, then reads as the real one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.failed = False

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        if not self.failed:
            self.failed = True
            raise OSError(errno.ENOBUFS, "No buffer space available")
        return self.sock.recvfrom(size)

    def fileno(self) -> int:
        return self.sock.fileno()


def test_a_failing_read_of_a_udp_port_is_logged_with_its_socket_and_it_keeps_serving(
    reactor: ExclusiveEPollReactor,
) -> None:
    bound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bound.bind(("127.0.0.1", 0))
    bound.setblocking(False)
    protocol = Datagrams()
    port: Any = SipUdpPort.adopting(reactor, bound, protocol, MAX_DATAGRAM_SIZE)
    port.label = "udp:127.0.0.1:test"
    port.startListening()
    real = port.socket
    port.socket = FailingOnce(real)
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"first", real.getsockname())
            reactor.doPoll(5.0)  # recvfrom fails: logged, the port stays
            reactor.doPoll(5.0)  # the datagram is still queued: read now
            sender.sendto(b"second", real.getsockname())
            reactor.doPoll(5.0)
    finally:
        globalLogPublisher.removeObserver(observe)
        port.socket = real
        port.stopListening()
    assert protocol.received == [b"first", b"second"]
    [failure] = [event for event in events if "log_failure" in event]
    assert failure["socket"] == "udp:127.0.0.1:test"
    assert failure["log_failure"].check(OSError)


class Ending(Reader):
    """A plain-call reader whose ``doRead`` answers that the connection is done."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock, True)
        self.lost: list[object] = []

    def doRead(self) -> Any:
        self.sock.recv(100)
        return main.CONNECTION_DONE

    def connectionLost(self, reason: object) -> None:
        self.lost.append(reason)


def test_a_plain_call_read_that_ends_the_connection_disconnects_it_as_twisted_does(
    reactor: ExclusiveEPollReactor,
) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        reader = Ending(left)
        reactor.addReader(reader)
        right.send(b"x")
        reactor.doPoll(1.0)
        assert reader not in reactor.getReaders()
    [reason] = reader.lost
    assert isinstance(reason, Failure) and reason.check(ConnectionDone)
