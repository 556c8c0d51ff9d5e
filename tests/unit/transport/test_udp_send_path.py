# mypy: disable-error-code="no-untyped-call"
"""A UDP listener's sends: straight to the socket for an address, the reactor's checks otherwise."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import reactor as _reactor
from twisted.internet.error import InvalidAddressError

from sipsock.seams import SocketCounters
from sipsock.sockdef import parse_row
from sipsock.testing import RecordingSink
from sipsock.transport.udp import UdpListener, address_family, open_udp_listener
from tests.net import free_port

reactor: Any = _reactor


@pytest.fixture
def listener() -> Iterator[UdpListener]:
    opened = open_udp_listener(
        parse_row(1, f"udp:127.0.0.1:{free_port()}"), 1, RecordingSink(), reactor=reactor
    )
    yield opened
    opened.stop()


def test_address_family_is_the_reactors_verdict_remembered() -> None:
    assert address_family("127.0.0.1") == socket.AF_INET
    assert address_family("::1") == socket.AF_INET6
    assert address_family("2001:db8::1") == socket.AF_INET6
    for not_an_address in ("localhost", "<broadcast>", "1.2.3", "", "[::1]", "999.1.1.1"):
        assert address_family(not_an_address) == 0
    assert address_family("127.0.0.1") == socket.AF_INET  # remembered, same answer


def test_a_send_to_an_address_goes_straight_to_the_socket_and_is_counted(
    listener: UdpListener,
) -> None:
    written: list[Any] = []
    port: Any = listener.protocol.transport
    reactor_write = port.write

    def recording_write(*args: Any) -> Any:
        written.append(args)
        return reactor_write(*args)

    port.write = recording_write
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(5)
        for _ in range(3):
            listener.send(b"INVITE x", peer.getsockname())
        assert [peer.recv(100) for _ in range(3)] == [b"INVITE x"] * 3
    assert written == []  # the reactor's write (and its address parsing) was not needed
    assert (listener.counters.sent, listener.counters.drops) == (3, 0)


@pytest.mark.parametrize("host", ["localhost", "::1", "<bad>"])
def test_a_host_the_socket_cannot_send_to_fails_as_the_reactor_says_and_is_a_drop(
    listener: UdpListener, host: str
) -> None:
    failures: list[Any] = []
    listener.send(b"x", (host, 5060)).addErrback(failures.append)
    [failure] = failures
    assert failure.check(InvalidAddressError)
    assert (listener.counters.sent, listener.counters.drops) == (0, 1)


def test_the_datagram_path_counts_as_the_socket_counters_say(listener: UdpListener) -> None:
    # Every way in and out of the (compiled) path counts as SocketCounters says.
    expected = SocketCounters()
    messages = [b"INVITE sip:x@h SIP/2.0\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"SIP/2.0 100 x"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        for data in messages:
            listener.send(data, peer.getsockname())
            expected.count_out(data)
            listener.send_reply(data, peer.getsockname())
            expected.count_out(data)
            listener.protocol.datagramReceived(data, peer.getsockname())
            expected.count_in(data)
            expected.bytes_in += len(data)
    assert listener.counters == expected
