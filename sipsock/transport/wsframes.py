"""The messages of a SIP WebSocket connection, framed without autobahn where autobahn allows.

`MessageTransport` is what a `StreamConnection` writes to on a WebSocket:
one write, one message. `frame_limit` says whether a connection's frames
may be read by `sipsock.transport.wsrules.read_frame` (autobahn's default
options) and up to what size. `sipsock.transport.ws` drives both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from autobahn.exception import PayloadExceededError
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IAddress, ITransport
from zope.interface import implementer

from sipsock.transport.socketwrite import send_now
from sipsock.transport.wsrules import CLOSE_NORMAL, is_text, server_frame

#: The largest single-frame message read without autobahn when autobahn has no limit.
UNLIMITED_FRAME = 65535


def frame_limit(protocol: Any, server: bool) -> int:
    """The largest message `read_frame` may read on ``protocol``; 0: autobahn reads every frame.

    Only with autobahn's defaults (masking as RFC 6455 says, no compression,
    no frame logging) are the frames `read_frame` takes and `server_frame`
    builds the ones autobahn would read and write. The limit is the smaller
    of autobahn's frame and message limits (0 there means none).
    """
    if (
        protocol._perMessageCompress is not None
        or not protocol.applyMask
        or protocol.logFrames
        or protocol.logOctets
        or getattr(protocol, "trackedTimings", None)
    ):
        return 0
    if server and (not protocol.requireMaskedClientFrames or protocol.maskServerFrames):
        return 0
    if not server and protocol.acceptMaskedServerFrames:
        return 0
    limits = [
        limit
        for limit in (protocol.maxFramePayloadSize, protocol.maxMessagePayloadSize)
        if limit > 0
    ]
    return min(limits, default=UNLIMITED_FRAME)


@implementer(ITransport)
class MessageTransport:
    """What a `StreamConnection` writes to on a WebSocket: one write, one message.

    Text frames for UTF-8 messages, binary frames otherwise. Writing before
    the opening handshake is done, or after the close started, raises
    ConnectionError; closing starts the WebSocket closing handshake.

    A server connection frames its messages itself (`server_frame`, the
    frame autobahn would build) and writes them straight to the socket when
    nothing is queued (`send_now`), or to the TLS layer under it; the frames
    written while one read is delivered (`hold` ... `release`) leave in one
    write. A client connection (its frames are masked) writes through
    autobahn's ``sendMessage``.
    """

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        #: Frames written during the read being delivered (None outside one).
        self.held: list[bytes] | None = None
        #: Whether this side frames its messages itself (set when the WebSocket opens).
        self.frames_itself = False

    def write(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol.state != WebSocketProtocol.STATE_OPEN:
            raise ConnectionError("the WebSocket is not open")
        if not self.frames_itself:
            protocol.sendMessage(data, isBinary=not is_text(data))
            return
        limit = protocol.maxMessagePayloadSize
        if 0 < limit < len(data):
            # As autobahn's sendMessage refuses it.
            protocol.wasMaxMessagePayloadSizeExceeded = True
            raise PayloadExceededError(
                f"tried to send WebSocket message with size {len(data)} exceeding payload "
                f"limit of {limit} octets"
            )
        frame = server_frame(data)
        held = self.held
        if held is not None:
            held.append(frame)
        else:
            self._send(frame)

    def _send(self, data: bytes) -> None:
        protocol = self.protocol
        transport = protocol.transport
        if protocol.send_queue:
            # autobahn has writes of its own queued: after them.
            protocol.sendData(data)
        elif isinstance(transport, FileDescriptor):
            send_now(transport, data)
        else:
            transport.write(data)

    def hold(self) -> None:
        """Hold the frames written from now on until `release` (the messages of one read)."""
        self.held = []

    def release(self) -> None:
        """Send the frames `hold` held, in one write."""
        held = self.held
        self.held = None
        if held:
            self._send(held[0] if len(held) == 1 else b"".join(held))

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.release()
        protocol = self.protocol
        if protocol.state == WebSocketProtocol.STATE_OPEN:
            protocol.sendClose(CLOSE_NORMAL)
        elif protocol.state != WebSocketProtocol.STATE_CLOSED:
            protocol.dropConnection(abort=False)

    def abortConnection(self) -> None:
        self.held = None
        transport = self.protocol.transport
        if transport is not None:
            transport.abortConnection()

    def getPeer(self) -> IAddress:
        peer: IAddress = self.protocol.transport.getPeer()
        return peer

    def getHost(self) -> IAddress:
        host: IAddress = self.protocol.transport.getHost()
        return host

    def getHandle(self) -> Any:
        return self.protocol.transport.getHandle()
