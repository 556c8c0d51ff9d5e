# mypy: disable-error-code="no-untyped-call"
"""A stream listener over StringTransport and a fake clock, for the stream unit tests."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from sipsock.config import LimitSettings
from sipsock.seams import Origin
from sipsock.sockdef import parse_row
from sipsock.testing import RecordingSink
from sipsock.transport.stream import StreamListener
from sipsock.transport.stream_protocol import SipStreamProtocol

#: A request with a four-byte body.
MESSAGE = (
    b"OPTIONS sip:a@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK1\r\n"
    b"Content-Length: 4\r\n\r\nbody"
)
#: A request without a body.
BARE_MESSAGE = (
    b"OPTIONS sip:a@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK1\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class AnsweringSink(RecordingSink):
    """A sink that answers unframeable messages, as the Dispatcher does."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.unframeable: list[tuple[bytes, int | None]] = []
        self.fail = fail

    def message_unframeable(self, header: bytes, error: Any, origin: Origin) -> bool:
        self.unframeable.append((header, error.status))
        if self.fail:
            raise RuntimeError("sink bug")
        origin.reply(b"SIP/2.0 %d Answered\r\n\r\n" % error.status)
        return True


def make_listener(
    idle_timeout: float = 30.0, max_message_size: int = 65535, limits: LimitSettings | None = None
) -> tuple[StreamListener, RecordingSink, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    sink = RecordingSink()
    listener = StreamListener(
        parse_row(4, "tcp:10.0.0.1:5060", tag="core"),
        2,
        sink,
        reactor=reactor,
        idle_timeout=idle_timeout,
        max_message_size=max_message_size,
        flush_timeout=5.0,
        limits=limits,
    )
    return listener, sink, reactor


def limited(**limits: Any) -> tuple[StreamListener, MemoryReactorClock]:
    """A listener with these `LimitSettings` and a long idle timeout."""
    listener, _, reactor = make_listener(idle_timeout=600, limits=LimitSettings(**limits))
    return listener, reactor


def accept(
    listener: StreamListener, peer: tuple[str, int] = ("192.0.2.9", 40000)
) -> tuple[SipStreamProtocol, StringTransport]:
    protocol = listener.build_protocol()
    assert isinstance(protocol, SipStreamProtocol)
    transport = StringTransport(peerAddress=IPv4Address("TCP", *peer))
    protocol.makeConnection(transport)
    return protocol, transport


def admit(
    listener: StreamListener, peer: tuple[str, int] = ("192.0.2.9", 40000)
) -> tuple[SipStreamProtocol, StringTransport] | None:
    """What the listening port does: admit, build, connect (None when refused)."""
    if not listener.admit(IPv4Address("TCP", *peer)):
        return None
    return accept(listener, peer)


def lose(protocol: SipStreamProtocol) -> None:
    protocol.connectionLost(Failure(ConnectionError("closed")))


class Backlog(StringTransport):
    """A transport whose kernel buffer is full: everything written stays queued."""

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "192.0.2.9", 40000))
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.dataBuffer += data

    def abortConnection(self) -> None:
        self.aborted = True


def runtime_imports(module: ModuleType) -> set[str]:
    """The modules ``module`` imports at run time (not under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(Path(str(module.__file__)).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names
