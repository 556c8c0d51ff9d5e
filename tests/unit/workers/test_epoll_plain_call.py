# mypy: disable-error-code="no-untyped-call"
"""The workers' reactor calls SIP UDP ports without Twisted's legacy log context."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.python import context
from twisted.python.log import ILogContext

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
