"""`skip_log_context` marks the selectable under a transport, and only a selectable."""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.protocol import Protocol
from twisted.internet.unix import Server

from sipsock.transport.logcontext import MARK, skip_log_context
from sipsock.workers.epoll import NO_LOG_CONTEXT
from sipsock.workers.relaychannel import RelayChannel


class Wrapper:
    """A transport over another one, as a TLS wrapper is."""

    def __init__(self, transport: object) -> None:
        self.transport = transport


def test_the_selectable_itself_or_under_a_wrapper_is_marked_and_nothing_else() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        server = Server(left, Protocol(), None, None, 1, reactor)  # type: ignore[no-untyped-call]
        skip_log_context(Wrapper(server))
        assert getattr(server, MARK) is True
        lone = Wrapper(None)
        skip_log_context(lone)
        skip_log_context(object())
        assert not hasattr(lone, MARK)
        server.stopReading()  # type: ignore[no-untyped-call]
    assert MARK == NO_LOG_CONTEXT


def test_a_relay_channel_marks_its_socket_when_it_connects() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        left.setblocking(False)
        channel = RelayChannel(lambda _: None, "relay channel to test")  # type: ignore[arg-type,return-value]
        server = Server(left, channel, None, None, 1, reactor)  # type: ignore[no-untyped-call]
        channel.makeConnection(server)  # type: ignore[no-untyped-call]
        assert getattr(server, NO_LOG_CONTEXT) is True
        server.stopReading()  # type: ignore[no-untyped-call]
