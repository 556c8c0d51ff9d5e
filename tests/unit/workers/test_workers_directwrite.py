# mypy: disable-error-code="no-untyped-call"
"""`write_at_once`: an AMP connection's bytes go out at once, in order, when nothing waits."""

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols import amp

from sipsock.workers.directwrite import write_at_once

reactor: Any = _reactor


class Ping(amp.Command):
    arguments = [(b"text", amp.Unicode())]
    response = [(b"text", amp.Unicode())]


class Answering(amp.AMP):
    @Ping.responder
    def ping(self, text: str) -> dict[str, str]:
        return {"text": text.upper()}


class Direct(amp.AMP):
    def connectionMade(self) -> None:
        super().connectionMade()
        write_at_once(self.transport)


def adopt(sock: socket.socket, protocol: Protocol) -> None:
    sock.setblocking(False)
    reactor.adoptStreamConnection(
        sock.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: protocol)
    )
    sock.close()  # the reactor holds its own copy


@pytest_twisted.ensureDeferred
async def test_a_box_leaves_in_the_write_itself_and_the_answers_come_in_order() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    direct, answering = Direct(), Answering()
    adopt(left, direct)
    adopt(right, answering)
    try:
        transport: Any = direct.transport
        calls = [direct.callRemote(Ping, text=f"m{i}") for i in range(20)]
        # Sent in the call, not on a later reactor turn: nothing waits for writing.
        assert transport._tempDataLen == 0
        assert transport.offset == len(transport.dataBuffer)
        # More than the kernel takes at once (nobody reads yet): the rest is queued, in order.
        calls += [direct.callRemote(Ping, text=f"m{i}") for i in range(20, 3000)]
        answers = [await call for call in calls]
        assert [a["text"] for a in answers] == [f"M{i}" for i in range(3000)]
    finally:
        for protocol in (direct, answering):
            ending: Any = protocol.transport
            ending.loseConnection()


class Recorder:
    """A transport's parts `write_at_once` reads: what went straight out, what was queued."""

    def __init__(self, takes: int | Exception | None = None) -> None:
        self._tempDataLen = 0
        self.offset = 0
        self.dataBuffer = b""
        self._sendmsgQueue: list[int] = []
        self.connected = True
        self.disconnecting = False
        self._writeDisconnected = False
        self.takes = takes
        self.direct: list[bytes] = []
        self.queued: list[bytes] = []

    def writeSomeData(self, data: bytes) -> int | Exception:
        self.direct.append(data)
        if isinstance(self.takes, Exception):
            return self.takes
        return len(data) if self.takes is None else self.takes

    def write(self, data: bytes) -> None:
        self.queued.append(data)
        self._tempDataLen += len(data)


def test_what_the_kernel_does_not_take_is_queued_and_later_bytes_wait_behind_it() -> None:
    transport = Recorder(takes=3)
    write_at_once(transport)
    transport.write(b"abcdef")
    transport.write(b"gh")
    assert transport.direct == [b"abcdef"]
    assert transport.queued == [b"def", b"gh"]


def test_an_error_or_a_waiting_descriptor_leaves_the_bytes_to_the_queue() -> None:
    failing = Recorder(takes=ConnectionError("gone"))
    write_at_once(failing)
    failing.write(b"abc")
    assert failing.queued == [b"abc"]
    with_fd = Recorder()
    with_fd._sendmsgQueue.append(7)
    write_at_once(with_fd)
    with_fd.write(b"abc")
    assert with_fd.direct == [] and with_fd.queued == [b"abc"]
    closing = Recorder()
    closing.disconnecting = True
    write_at_once(closing)
    closing.write(b"abc")
    assert closing.direct == [] and closing.queued == [b"abc"]
