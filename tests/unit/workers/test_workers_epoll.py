# mypy: disable-error-code="no-untyped-call"
"""EPOLLEXCLUSIVE registrations, checked on a real epoll descriptor.

The kernel shows each registration's event mask in /proc/self/fdinfo of the
epoll descriptor; the wake-up test blocks real threads in epoll_wait.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.protocol import DatagramProtocol

from sipsock.workers.epoll import EPOLLEXCLUSIVE, ExclusiveEPollReactor, make_exclusive

assert EPOLLEXCLUSIVE is not None, "this Python has no select.EPOLLEXCLUSIVE"
EXCLUSIVE: int = EPOLLEXCLUSIVE


def registered(epoll_fd: int) -> dict[int, int]:
    """Every descriptor registered with an epoll instance, with its event mask."""
    masks: dict[int, int] = {}
    with open(f"/proc/self/fdinfo/{epoll_fd}") as info:
        for line in info:
            if line.startswith("tfd:"):
                fields = line.split()
                masks[int(fields[1])] = int(fields[3], 16)
    return masks


@pytest.fixture
def reactor() -> Iterator[ExclusiveEPollReactor]:
    """A reactor that is never run: registrations are all we look at."""
    made = ExclusiveEPollReactor()
    yield made
    for selectable in made.removeAll():
        selectable.connectionLost(None)
    made._poller.close()


@pytest.fixture
def udp_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def adopt(reactor: ExclusiveEPollReactor, sock: socket.socket) -> Any:
    return reactor.adoptDatagramPort(sock.fileno(), socket.AF_INET, DatagramProtocol(), 65535)


def test_adopted_port_is_registered_plainly_until_made_exclusive(
    reactor: ExclusiveEPollReactor, udp_socket: socket.socket
) -> None:
    port = adopt(reactor, udp_socket)
    epfd = reactor._poller.fileno()
    assert registered(epfd)[port.fileno()] & EXCLUSIVE == 0

    assert make_exclusive(reactor, port) is True
    mask = registered(epfd)[port.fileno()]
    assert mask & EXCLUSIVE
    assert mask & select.EPOLLIN
    assert reactor.isExclusive(port)


def test_a_port_made_exclusive_before_reading_is_added_exclusive(
    reactor: ExclusiveEPollReactor, udp_socket: socket.socket
) -> None:
    port = adopt(reactor, udp_socket)
    port.stopReading()
    assert port.fileno() not in registered(reactor._poller.fileno())
    assert reactor.setExclusive(port) is True
    port.startReading()
    assert registered(reactor._poller.fileno())[port.fileno()] & EXCLUSIVE


def test_writing_and_stopping_re_register_instead_of_modifying(
    reactor: ExclusiveEPollReactor, udp_socket: socket.socket
) -> None:
    # EPOLL_CTL_MOD on an exclusive registration is EINVAL: the reactor must
    # delete and add again each time the set of events changes.
    port = adopt(reactor, udp_socket)
    reactor.setExclusive(port)
    epfd = reactor._poller.fileno()
    fd = port.fileno()

    reactor.addWriter(port)
    assert registered(epfd)[fd] & (EXCLUSIVE | select.EPOLLIN | select.EPOLLOUT) == (
        EXCLUSIVE | select.EPOLLIN | select.EPOLLOUT
    )
    reactor.removeReader(port)
    mask = registered(epfd)[fd]
    assert mask & EXCLUSIVE
    assert mask & select.EPOLLOUT
    assert not mask & select.EPOLLIN
    reactor.removeWriter(port)
    assert fd not in registered(epfd)
    assert not reactor.isExclusive(port)


def test_closing_the_port_unregisters_it(
    reactor: ExclusiveEPollReactor, udp_socket: socket.socket
) -> None:
    port = adopt(reactor, udp_socket)
    fd = port.fileno()
    reactor.setExclusive(port)
    port.stopListening()
    assert fd not in registered(reactor._poller.fileno())
    assert fd not in reactor._exclusive


def test_plain_reactor_without_the_extension_is_left_alone(udp_socket: socket.socket) -> None:
    class PlainReactor:
        pass

    assert make_exclusive(PlainReactor(), udp_socket) is False


def test_without_python_support_it_falls_back_to_plain_registration(
    reactor: ExclusiveEPollReactor, udp_socket: socket.socket
) -> None:
    port = adopt(reactor, udp_socket)
    reactor.exclusiveSupported = False
    assert make_exclusive(reactor, port) is False
    assert registered(reactor._poller.fileno())[port.fileno()] & EXCLUSIVE == 0


class RefusingPoller:
    """An epoll that answers EINVAL to EPOLLEXCLUSIVE, like a kernel older than 4.5."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def register(self, fd: int, flags: int) -> None:
        if flags & EXCLUSIVE:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self.real.register(fd, flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_kernel_that_refuses_the_flag_gets_a_plain_registration_for_good(
    reactor: ExclusiveEPollReactor, udp_socket: socket.socket
) -> None:
    port = adopt(reactor, udp_socket)
    real = reactor._poller
    reactor._poller = RefusingPoller(real)
    try:
        assert make_exclusive(reactor, port) is False
        assert reactor.exclusiveSupported is False
        assert registered(real.fileno())[port.fileno()] & EXCLUSIVE == 0
        assert make_exclusive(reactor, port) is False
    finally:
        reactor._poller = real


WAITERS = 4


def wakeups(flags: int) -> int:
    """How many of ``WAITERS`` threads, each blocked in its own epoll on one shared
    UDP socket, wake up for a single datagram."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    polls = [select.epoll() for _ in range(WAITERS)]
    for poll in polls:
        poll.register(receiver.fileno(), flags)
    woken: list[int] = []
    thread_ids: list[int] = []
    lock = threading.Lock()

    def wait(poll: select.epoll) -> None:
        with lock:
            thread_ids.append(threading.get_native_id())
        if poll.poll(1.0):
            with lock:
                woken.append(1)

    threads = [threading.Thread(target=wait, args=(poll,)) for poll in polls]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    # Send only once every thread sleeps in epoll_wait.
    while time.monotonic() < deadline:
        with lock:
            ids = list(thread_ids)
        if len(ids) == WAITERS and all(_sleeping(tid) for tid in ids):
            break
        time.sleep(0.01)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"x", receiver.getsockname())
    for thread in threads:
        thread.join(5)
    for poll in polls:
        poll.close()
    receiver.close()
    return len(woken)


def _sleeping(tid: int) -> bool:
    try:
        with open(f"/proc/self/task/{tid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "S"
    except OSError:
        return False


def test_one_datagram_wakes_one_exclusive_waiter_but_every_plain_one() -> None:
    assert wakeups(select.EPOLLIN) == WAITERS
    assert wakeups(select.EPOLLIN | EXCLUSIVE) == 1


def test_time_waiting_in_epoll_is_counted_as_idle(reactor: ExclusiveEPollReactor) -> None:
    """The auto-scaler's load: the time a worker is not waiting here is its busy time."""
    assert reactor.idleSeconds == 0.0
    reactor.doPoll(0.05)  # nothing registered: waits the whole timeout
    waited = reactor.idleSeconds
    assert 0.04 <= waited < 5.0
    reader = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    writer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        reader.bind(("127.0.0.1", 0))
        reader.setblocking(False)
        writer.sendto(b"x", reader.getsockname())
        protocol = DatagramProtocol()
        port = reactor.adoptDatagramPort(reader.fileno(), socket.AF_INET, protocol)
        reactor.doPoll(5.0)  # ready at once: no time idle to speak of
        assert reactor.idleSeconds - waited < 1.0
        port.stopListening()
    finally:
        reader.close()
        writer.close()


class RecordingPoller:
    """The reactor's epoll object, with every register/unregister call recorded."""

    def __init__(self, poller: Any) -> None:
        self.poller = poller
        self.calls: list[tuple[str, int, int]] = []

    def register(self, fd: int, mask: int) -> None:
        self.calls.append(("register", fd, mask))
        self.poller.register(fd, mask)

    def unregister(self, fd: int) -> None:
        self.calls.append(("unregister", fd, 0))
        self.poller.unregister(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.poller, name)


def test_a_worker_registers_a_shared_socket_once_and_exclusive_from_the_start(
    reactor: ExclusiveEPollReactor,
) -> None:
    """Adopting a shared UDP descriptor costs one epoll_ctl ADD with EPOLLEXCLUSIVE,
    not a plain ADD, a DEL and an exclusive ADD (a reload adopts hundreds)."""
    from twisted.internet import defer

    from sipsock.sockdef import parse_row
    from sipsock.testing import RecordingSink
    from sipsock.workers.worker import UdpWorker

    poller = RecordingPoller(reactor._poller)
    reactor._poller = poller
    worker = UdpWorker(RecordingSink(), reactor=reactor, relay=lambda *_: defer.succeed(None))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    worker.adopt(1, 0, sock.detach(), parse_row(1, "udp:127.0.0.1:5070"), shared=True)
    fd = worker.listeners[1].fileno()
    assert [call for call in poller.calls if call[1] == fd] == [
        ("register", fd, select.EPOLLIN | EXCLUSIVE)
    ]
    assert registered(poller.poller.fileno())[fd] & EXCLUSIVE
    reactor._poller = poller.poller
